//! A real OpenSSH server on loopback for the remote-teammate tests: its own host key,
//! authorized key and configuration in a temp dir, and a private client configuration naming
//! it `box`. It runs as the test's own user, so the "host" is this machine seen through ssh;
//! the agents' files there live under [`Sshd::remote_dir`].
//!
//! No network namespace: sshd listens on 127.0.0.1 only and the agents reach the daemon only
//! through the link's Unix-socket forward (their `AGENT_TEAM_SOCKET` is the forwarded path).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ssh destination the client configuration defines.
pub const HOST: &str = "box";

/// A running sshd and the client side to reach it.
pub struct Sshd {
    /// Keys, configurations, logs and the host's agent-team directory.
    pub dir: tempfile::TempDir,
    /// The loopback port it listens on.
    pub port: u16,
    child: Option<Child>,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client) must be installed: .ci/run installs it");
    assert!(ok.success(), "ssh-keygen failed");
}

/// Where sshd is, or a panic saying how to install it.
fn sshd_bin() -> PathBuf {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("sshd is missing: install openssh-server (.ci/run does)");
}

impl Sshd {
    /// Starts sshd on a free loopback port and waits until it accepts.
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("at-ssh-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        keygen(&d.join("hostkey"));
        keygen(&d.join("userkey"));
        std::fs::copy(d.join("userkey.pub"), d.join("authorized_keys")).unwrap();
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "root".into());
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
                 AllowStreamLocalForwarding yes\nPidFile {d}/sshd.pid\nLogLevel VERBOSE\n\
                 MaxSessions 50\nMaxStartups 50\n",
                d = d.display()
            ),
        )
        .unwrap();
        let hostkey = std::fs::read_to_string(d.join("hostkey.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {hostkey}"),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
                 IdentityFile {d}/userkey\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  \
                 UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n",
                d = d.display()
            ),
        )
        .unwrap();
        let mut s = Sshd {
            dir,
            port,
            child: None,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))
            .unwrap();
        let child = Command::new(sshd_bin())
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The client configuration naming the server [`HOST`].
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The directory on the "host" for the team file's `[ssh] dir`.
    pub fn remote_dir(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    /// The team file's `[ssh]` table for this server (`worker`: where the host's worker is,
    /// none to have ours copied there).
    pub fn ssh_table(&self, worker: Option<&Path>) -> String {
        let mut s = format!(
            "[ssh]\ncommand = [\"ssh\", \"-F\", \"{}\"]\ndir = \"{}\"\n",
            self.config().display(),
            self.remote_dir().display()
        );
        if let Some(w) = worker {
            s.push_str(&format!("worker = \"{}\"\n", w.display()));
        }
        s
    }

    /// Stops the listening sshd (sessions it already serves go on, as with a real restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Live processes whose command line mentions the host's agent-team directory (agents,
    /// their run scripts): what `down` must leave none of.
    pub fn remote_processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(&self.remote_dir().display().to_string())
    }
}

/// Live processes (not zombies) whose command line contains `needle`, with that line.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != me)
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
                        .is_some_and(|r| !r.starts_with('Z'))
                })
                .filter_map(|pid| {
                    let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let line = String::from_utf8_lossy(&c).replace('\0', " ");
                    line.contains(needle).then_some((pid, line))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        // Whatever a failed test left on the "host" goes too: never leave an agent behind.
        for (pid, _) in self.remote_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for (pid, _) in processes_mentioning(&self.config().display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
