//! The sandbox's network: a network namespace of its own whose only way out is the team's
//! egress proxy, reached through a Unix socket bound in (issue 62, "network by asking").
//!
//! Inside, the forwarder (`agent-team-bridge net`) runs first: it listens on the namespace's
//! own loopback (bubblewrap brings `lo` up) at [`PROXY_PORT`] and carries each connection to
//! the proxy's socket, forwards the loopback ports named in [`NetworkWiring::forward`] as
//! tunnels to the host's, and then becomes the program with the proxy variables set.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Where the network's pieces are inside the sandbox (a fresh `/run`, so bubblewrap can make
/// the mount points).
pub const INSIDE: &str = "/run/agent-team-net";

/// The file name of an agent's proxy socket in [`NetworkWiring::dir`].
pub const PROXY_SOCKET: &str = "proxy.sock";

/// The port the forwarder listens on inside (the proxy variables name it).
pub const PROXY_PORT: u16 = 3128;

/// Where a sandboxed process's network goes: the dir holding this agent's proxy socket
/// (bound in whole, so a socket made again after a daemon restart is still the one inside), and
/// the forwarder that runs first inside and carries the sandbox's loopback to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkWiring {
    /// The dir, outside, holding the agent's proxy socket.
    pub dir: PathBuf,
    /// The forwarder program (`agent-team-bridge`), outside.
    pub bridge: PathBuf,
    /// Loopback ports forwarded as they are (a model endpoint on the host's loopback).
    pub forward: Vec<u16>,
}

/// The proxy socket's dir inside.
fn dir_inside() -> PathBuf {
    PathBuf::from(INSIDE).join("proxy")
}

/// The forwarder's path inside.
fn bridge_inside() -> PathBuf {
    PathBuf::from(INSIDE).join("agent-team-bridge")
}

/// bubblewrap's arguments for `net`: a network namespace of its own (only `lo`), the proxy
/// socket's dir and the forwarder bound in read-only at fixed paths under [`INSIDE`] (a socket
/// on a read-only mount can still be connected to; nothing inside can replace it).
pub(crate) fn bwrap_args(net: &NetworkWiring) -> Vec<OsString> {
    vec![
        "--unshare-net".into(),
        "--ro-bind".into(),
        net.dir.clone().into(),
        dir_inside().into(),
        "--ro-bind".into(),
        net.bridge.clone().into(),
        bridge_inside().into(),
    ]
}

/// The program and arguments bubblewrap runs for `program args` under `net`: the forwarder,
/// which runs the program once it listens.
pub(crate) fn wrap(net: &NetworkWiring, program: &OsStr, args: &[OsString]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        bridge_inside().into(),
        "net".into(),
        "--socket".into(),
        dir_inside().join(PROXY_SOCKET).into(),
        "--listen".into(),
        PROXY_PORT.to_string().into(),
    ];
    for p in &net.forward {
        if *p != PROXY_PORT {
            v.push("--forward".into());
            v.push(p.to_string().into());
        }
    }
    v.push("--".into());
    v.push(program.to_os_string());
    v.extend(args.iter().cloned());
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wiring(dir: &std::path::Path, bridge: &std::path::Path) -> NetworkWiring {
        NetworkWiring {
            dir: dir.to_path_buf(),
            bridge: bridge.to_path_buf(),
            forward: vec![8080, PROXY_PORT, 9090],
        }
    }

    #[test]
    fn the_forwarder_runs_first_and_the_program_after_its_double_dash() {
        let net = wiring("/r/t.net/a".as_ref(), "/bin/agent-team-bridge".as_ref());
        let got = wrap(&net, "sh".as_ref(), &["-c".into(), "curl x".into()]);
        let want = [
            "/run/agent-team-net/agent-team-bridge",
            "net",
            "--socket",
            "/run/agent-team-net/proxy/proxy.sock",
            "--listen",
            "3128",
            "--forward",
            "8080",
            "--forward",
            "9090",
            "--",
            "sh",
            "-c",
            "curl x",
        ];
        assert_eq!(got, want.map(OsString::from));
        let args = bwrap_args(&net);
        assert_eq!(args[0], "--unshare-net");
        assert_eq!(
            args[1..],
            [
                "--ro-bind",
                "/r/t.net/a",
                "/run/agent-team-net/proxy",
                "--ro-bind",
                "/bin/agent-team-bridge",
                "/run/agent-team-net/agent-team-bridge",
            ]
            .map(OsString::from)
        );
    }

    /// The arguments in a real bubblewrap over a fresh `/run` (as the sandbox's root gives):
    /// the namespace has only its own loopback, the socket's dir and the forwarder are where the
    /// forwarder's arguments say, the socket's dir cannot be written, and the program runs.
    #[test]
    fn the_mounts_and_the_namespace_hold_in_a_real_bubblewrap() {
        let Some(bwrap) = crate::find_on_path("bwrap") else {
            eprintln!("no bwrap: skipped");
            return;
        };
        let probe = std::process::Command::new(&bwrap)
            .args(["--ro-bind", "/", "/", "--unshare-net", "--", "true"])
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            eprintln!("bwrap cannot make a network namespace here: skipped");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("net");
        std::fs::create_dir(&dir).unwrap();
        let sock = dir.join(PROXY_SOCKET);
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // A stand-in forwarder: says what it was given, checks what it can reach, runs the rest.
        let bridge = t.path().join("bridge");
        std::fs::write(
            &bridge,
            "#!/bin/sh\n\
             echo \"args: $*\"\n\
             test -S \"$3\" && echo socket-there\n\
             touch /run/agent-team-net/proxy/x 2>/dev/null || echo read-only\n\
             cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '; echo\n\
             while [ \"$1\" != -- ]; do shift; done; shift; exec \"$@\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bridge, std::fs::Permissions::from_mode(0o755)).unwrap();
        let net = NetworkWiring {
            forward: vec![],
            ..wiring(&dir, &bridge)
        };
        let out = std::process::Command::new(&bwrap)
            .args(["--ro-bind", "/", "/", "--tmpfs", "/run", "--proc", "/proc"])
            .args(["--dev", "/dev"])
            .args(bwrap_args(&net))
            .arg("--")
            .args(wrap(&net, "echo".as_ref(), &["the program".into()]))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("args: net --socket /run/agent-team-net/proxy/proxy.sock"),
            "{text}"
        );
        assert!(
            text.contains("socket-there\nread-only\nlo \nthe program\n"),
            "{text}"
        );
    }
}
