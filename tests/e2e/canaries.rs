//! The canary suite (issue 62): canaries planted in the operator's world, which the test
//! controls (a home of its own at `$HOME` with an ssh key, AWS, gh and git credentials, a
//! browser profile's cookie token and a `.gitconfig`; an ssh-agent-like socket in `/tmp`, a
//! socket in `$XDG_RUNTIME_DIR`, an abstract socket, a listener on the host's 127.0.0.1, the
//! team's panes' ptys), then probed by one script from every context an agent influences: a
//! task command, a model's `bash`, a `[hooks]` command, a `[notify]` command and a CLI
//! teammate's own shell; on the process, tmux and in-process backends; as root and as a normal
//! user made for the test. Nothing may reach a canary: no `LEAK:` line, no connection at a
//! listener, no canary string in any output or stored state, the loopback destination only a
//! pending `network` request (denied, never approved); and, as root, nothing inside can unmount
//! or type into a terminal.
//!
//! The plant is proved first from outside the sandbox, with the same script as the same user,
//! so the suite cannot pass because a canary was never reachable.

use agent_team_e2e::sshd::{HOST, Sshd};
use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::PermRequest;
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEAM: &str = "canary";

/// How long the probes of one backend may take, all contexts together.
const T: Duration = Duration::from_secs(90);

/// The contexts a probe runs in, inside the sandbox.
const CONTEXTS: &[&str] = &["task", "model", "cli", "hook", "notify"];

/// The contexts whose probe reaches the network through an agent's own proxy, and that agent.
const ASKING: &[(&str, &str)] = &[("task", "n1"), ("model", "m1"), ("cli", "cc")];

/// The canaries, by the name a probe reports (`LEAK:<name>`).
const CANARIES: &[&str] = &[
    "ssh-key",
    "aws",
    "gh",
    "git-credentials",
    "browser-cookies",
    "gitconfig",
    "agent-socket",
    "agent-socket-env",
    "runtime-socket",
    "runtime-socket-env",
    "abstract-socket",
    "tcp",
    "tcp-proxy",
];

/// Held while a user is made or removed.
static USERS: Mutex<()> = Mutex::new(());

/// A user made for the test (root only), removed when dropped, also when the test fails.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    /// A new user with no home dir and `sh` as its shell; none when this is not root or
    /// `useradd` is missing (said on stderr).
    fn make() -> Option<TestUser> {
        if !nix::unistd::getuid().is_root() {
            eprintln!("not root: the normal-user case runs as this test's own user");
            return None;
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("atc{}x{n}", std::process::id());
        // One at a time: useradd and userdel lock /etc/passwd and fail rather than wait.
        let _one = USERS.lock().unwrap_or_else(|e| e.into_inner());
        let made = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", &name])
            .output();
        match made {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("useradd {name}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => {
                eprintln!("useradd is not available ({e}): the normal-user case is skipped");
                return None;
            }
        }
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        Some(TestUser { name, uid, gid })
    }

    /// Makes `path` and everything in it this user's.
    fn own(&self, path: &Path) {
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "chown {}", path.display());
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Whatever of the user still runs (the sandbox's cleanup kills what names its dir).
        for pid in procs_of(self.uid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _one = USERS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").args(["-f", &self.name]).status();
    }
}

/// The live processes of `uid` (only ever the test's own user: all of them the test's).
fn procs_of(uid: u32) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                    (e.metadata().ok()?.uid() == uid).then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the listeners saw: (listener, first line of the connection).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Answers one connection: records its first line (3 s at most), then sends the canary as an
/// HTTP answer (which a raw read shows too).
fn answer<S: Read + Write>(mut s: S, name: &str, canary: &str, seen: &Seen) {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 512 {
        match s.read(&mut b) {
            Ok(1) if b[0] != b'\n' => line.push(b[0]),
            _ => break,
        }
    }
    seen.lock().unwrap().push((
        name.to_string(),
        String::from_utf8_lossy(&line).trim().to_string(),
    ));
    let body = format!("canary-listener {name} {canary}\n");
    let _ = s.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// The operator's world the test controls.
struct World {
    /// The operator's home, outside every temp dir (so the sandbox's own `/tmp` is not what
    /// hides it).
    home: tempfile::TempDir,
    /// `$XDG_RUNTIME_DIR`, also outside temp.
    xdg: tempfile::TempDir,
    /// The dir of the ssh-agent-like socket, in the real `/tmp`.
    _agent_dir: tempfile::TempDir,
    agent_sock: PathBuf,
    runtime_sock: PathBuf,
    abstract_name: String,
    port: u16,
    /// Every canary value by name.
    values: Vec<(String, String)>,
    seen: Seen,
}

impl World {
    /// The operator's world on this machine, made `user`'s (none: this test's own user).
    fn plant(user: Option<&TestUser>) -> World {
        World::plant_on(user, None)
    }

    /// A world planted for `host`'s side (none: this machine's): its abstract socket and its
    /// listener bound in the host's network namespace (where its sessions are), its files and
    /// path sockets on the one machine both sides share.
    fn plant_on(user: Option<&TestUser>, host: Option<&Sshd>) -> World {
        let in_host = |bind: &(dyn Fn() + Sync)| match host {
            Some(h) => h.on_host(bind),
            None => bind(),
        };
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&base).unwrap();
        let home = tempfile::Builder::new()
            .prefix("at-op-home-")
            .tempdir_in(&base)
            .unwrap();
        let xdg = tempfile::Builder::new()
            .prefix("at-op-xdg-")
            .tempdir_in(&base)
            .unwrap();
        let agent_dir = tempfile::Builder::new()
            .prefix("ssh-canary-")
            .tempdir_in("/tmp")
            .unwrap();
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        // Only the canaries' values hold `at-canary-` (what the probe looks for in files): the
        // names of the world's dirs and sockets do not, so a file that merely names one of them
        // (an agent CLI records its environment, its `$XDG_RUNTIME_DIR` among it, and the
        // script it ran) is not taken for a canary read.
        let value = |name: &str| format!("at-canary-{name}-{unique}");
        let mut values = Vec::new();
        for (name, rel, text) in [
            (
                "ssh-key",
                ".ssh/id_ed25519",
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n",
            ),
            (
                "aws",
                ".aws/credentials",
                "[default]\naws_secret_access_key = {}\n",
            ),
            (
                "gh",
                ".config/gh/hosts.yml",
                "github.com:\n    oauth_token: {}\n",
            ),
            (
                "git-credentials",
                ".git-credentials",
                "https://op:{}@github.com\n",
            ),
            (
                "browser-cookies",
                ".config/chromium/Default/Cookies",
                "SQLite format 3\0board_token={}\n",
            ),
            ("gitconfig", ".gitconfig", "[canary]\n\ttoken = {}\n"),
        ] {
            let p = home.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text.replace("{}", &value(name))).unwrap();
            values.push((name.to_string(), value(name)));
        }
        let seen: Seen = Arc::default();
        // The ssh-agent-like socket in /tmp and the one in the runtime dir.
        let agent_sock = agent_dir.path().join("agent.sock");
        let runtime_sock = xdg.path().join("canary.sock");
        for (name, path) in [
            ("agent-socket", &agent_sock),
            ("runtime-socket", &runtime_sock),
        ] {
            let l = std::os::unix::net::UnixListener::bind(path).unwrap();
            let (canary, seen) = (value(name), seen.clone());
            values.push((name.to_string(), canary.clone()));
            let name = name.to_string();
            std::thread::spawn(move || {
                for c in l.incoming().flatten() {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                    answer(c, &name, &canary, &seen);
                }
            });
        }
        // The abstract socket (no file, no permission: only a network namespace keeps it out).
        let abstract_name = format!("at-op-abstract-{unique}");
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .unwrap();
            let l = Mutex::new(None);
            in_host(&|| {
                *l.lock().unwrap() =
                    Some(std::os::unix::net::UnixListener::bind_addr(&addr).unwrap())
            });
            let l = l.into_inner().unwrap().unwrap();
            let (canary, seen) = (value("abstract-socket"), seen.clone());
            values.push(("abstract-socket".into(), canary.clone()));
            std::thread::spawn(move || {
                for c in l.incoming().flatten() {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                    answer(c, "abstract-socket", &canary, &seen);
                }
            });
        }
        // The operator's service on the host's loopback.
        let tcp = Mutex::new(None);
        in_host(&|| {
            *tcp.lock().unwrap() = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        });
        let tcp = tcp.into_inner().unwrap().unwrap();
        let port = tcp.local_addr().unwrap().port();
        {
            let (canary, seen) = (value("tcp"), seen.clone());
            values.push(("tcp".into(), canary.clone()));
            std::thread::spawn(move || {
                for c in tcp.incoming().flatten() {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                    answer(c, "tcp", &canary, &seen);
                }
            });
        }
        if let Some(u) = user {
            for d in [home.path(), xdg.path(), agent_dir.path()] {
                u.own(d);
            }
        }
        use std::os::unix::fs::PermissionsExt;
        for d in [home.path(), xdg.path(), agent_dir.path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        World {
            home,
            xdg,
            _agent_dir: agent_dir,
            agent_sock,
            runtime_sock,
            abstract_name,
            port,
            values,
            seen,
        }
    }

    /// The environment the operator runs the team with.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.home.path().display().to_string()),
            (
                "XDG_RUNTIME_DIR".into(),
                self.xdg.path().display().to_string(),
            ),
            (
                "SSH_AUTH_SOCK".into(),
                self.agent_sock.display().to_string(),
            ),
        ]
    }

    /// The listeners' connections from context `ctx`.
    fn connections_from(&self, ctx: &str) -> Vec<(String, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| {
                line.split_whitespace().next() == Some(ctx)
                    || line.contains(&format!("/{ctx}-proxy"))
            })
            .cloned()
            .collect()
    }

    /// The one probe script: tries every canary from where it runs and writes what got through
    /// as `LEAK:<name> …` lines (and what was refused as `OK:…`) to `probe/out-CTX.txt` and
    /// stdout. It waits for `probe/go` (the test writes the panes' ttys first).
    ///
    /// What it tries to unmount or type into is only ever the test's own: `umount` only the
    /// team's dirs and only where they are mounts (inside a namespace; outside they are plain
    /// dirs), `TIOCSTI` only its own descriptors, `/dev/tty` and the team's panes (never every
    /// `/dev/pts/N`: a probe that escaped would type into other people's terminals).
    fn probe(&self, probe: &Path, runtime: &Path, state: &Path) -> String {
        format!(
            r#"ctx=$1
p={probe}
out=$p/out-$ctx.txt
r() {{ echo "$1" >> "$out"; echo "$1"; }}
i=0; while [ ! -e $p/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -e $p/go ] || r "ERROR:no-go"
r "START:$ctx uid=$(id -u) home=$HOME"
r "CAPS:$ctx $(grep CapEff /proc/self/status | tr -d '\t')"
f() {{ if c=$(cat "$2" 2>/dev/null) && [ -n "$c" ]; then r "LEAK:$1 $(echo "$c" | tr '\n\0' '  ')"; else r "OK:$1-unreadable"; fi; }}
f ssh-key {h}/.ssh/id_ed25519
f aws {h}/.aws/credentials
f gh {h}/.config/gh/hosts.yml
f git-credentials {h}/.git-credentials
f browser-cookies {h}/.config/chromium/Default/Cookies
f gitconfig {h}/.gitconfig
t=$(git config --global --get canary.token 2>/dev/null) && r "LEAK:gitconfig-git $t"
for x in $(grep -rlas "at-cana""ry-" {h} "$HOME" 2>/dev/null); do r "LEAK:found-in:$x"; done
sock() {{
/usr/bin/python3 - "$ctx" "$@" <<'EOF'
import socket, sys
ctx, name, kind, addr = sys.argv[1:5]
try:
    if kind == 'tcp':
        s = socket.create_connection(('127.0.0.1', int(addr)), timeout=5)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect('\0' + addr if kind == 'abstract' else addr)
    s.sendall((ctx + ' ' + name + '\n').encode())
    data = s.recv(4096).decode(errors='replace')
    print('LEAK:%s %s' % (name, data.replace('\r\n', ' | ').replace('\n', ' ')))
except Exception as e:
    print('OK:%s-refused %s %s' % (name, type(e).__name__, e))
EOF
}}
r "$(sock agent-socket unix {agent})"
r "$(sock agent-socket-env unix "${{SSH_AUTH_SOCK:-/nonexistent}}")"
r "$(sock runtime-socket unix {rsock})"
r "$(sock runtime-socket-env unix "${{XDG_RUNTIME_DIR:-/nonexistent}}/canary.sock")"
r "$(sock abstract-socket abstract {abs})"
r "$(sock tcp tcp {port})"
r "ASKING:$ctx"
c=$(curl -s --max-time 40 --noproxy '' http://127.0.0.1:{port}/$ctx-proxy 2>&1)
e=$?
case "$c" in *canary-listener*) r "LEAK:tcp-proxy $c";; *) r "OK:tcp-proxy-refused exit=$e $(echo "$c" | head -c 300 | tr '\n' ' ')";; esac
if [ "$ctx" != outside ]; then
  for m in {runtime} {state} {h} $p; do
    grep -q " $m " /proc/self/mountinfo && r "OK:mounted:$m"
    grep -q " $m " /proc/self/mountinfo && umount -l "$m" 2>/dev/null && r "LEAK:umount:$m"
  done
  /usr/bin/python3 - $(cat $p/ttys 2>/dev/null) <<'EOF' | while read -r l; do r "$l"; done
import fcntl, os, sys, termios
targets = [('fd%d' % i, i) for i in range(3)]
for p in ['/dev/tty'] + sys.argv[1:]:
    try:
        targets.append((p, os.open(p, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)))
    except OSError as e:
        print('OK:tty-unopenable %s errno=%d' % (p, e.errno))
for name, fd in targets:
    if not os.isatty(fd):
        continue
    try:
        for b in b'TTYCANARY':
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([b]))
        print('LEAK:tiocsti %s' % name)
    except OSError as e:
        print('OK:tiocsti-refused %s errno=%d' % (name, e.errno))
EOF
fi
r "FINISHED:$ctx"
"#,
            probe = probe.display(),
            h = self.home.path().display(),
            agent = self.agent_sock.display(),
            rsock = self.runtime_sock.display(),
            abs = self.abstract_name,
            port = self.port,
            runtime = runtime.display(),
            state = state.display(),
        )
    }
}

/// Who runs the team: this test's user, or the user made for it.
struct Operator<'a> {
    sb: &'a Sandbox,
    user: Option<&'a TestUser>,
    env: Vec<(String, String)>,
}

impl Operator<'_> {
    /// `program args` as the operator, with exactly the environment the harness would pass.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        match self.user {
            None => {
                let mut c = if program == bin("agent-team") {
                    self.sb.cmd("agent-team")
                } else {
                    let mut c = Command::new(program);
                    c.current_dir(self.sb.dir.path());
                    c
                };
                for k in [
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "ALL_PROXY",
                    "http_proxy",
                    "https_proxy",
                    "all_proxy",
                ] {
                    c.env_remove(k);
                }
                c.envs(self.env.iter().map(|(k, v)| (k, v))).args(args);
                c
            }
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid",
                    &u.uid.to_string(),
                    "--regid",
                    &u.gid.to_string(),
                    "--clear-groups",
                    "--",
                    "env",
                    "-i",
                ]);
                c.arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                    .arg(format!("USER={}", u.name))
                    .arg(format!("LOGNAME={}", u.name))
                    .arg(format!("AGENT_TEAM_HOME={}", self.sb.paths.home.display()))
                    .arg(format!(
                        "AGENT_TEAM_RUNTIME_DIR={}",
                        self.sb.paths.runtime.display()
                    ))
                    .arg(format!("TMPDIR={}", self.sb.path("tmp").display()));
                for (k, v) in self.env.iter().chain(self.sb.env.iter()) {
                    c.arg(format!("{k}={v}"));
                }
                c.arg(program).args(args).current_dir(self.sb.dir.path());
                c
            }
        }
    }

    fn at(&self, args: &[&str]) -> Output {
        self.command(&bin("agent-team"), args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.at(args);
        assert!(
            out.status.success(),
            "agent-team {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn pending(&self) -> Vec<PermRequest> {
        let out = self.at(&["--team", TEAM, "perms", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

/// Whether agents' commands run in a namespace here (else why not, from `doctor`).
fn namespaced(sb: &Sandbox) -> Result<(), String> {
    sb.doctor_check("namespace")
}

/// The lines of a context's probe output.
fn out_of(probe: &Path, ctx: &str) -> String {
    std::fs::read_to_string(probe.join(format!("out-{ctx}.txt"))).unwrap_or_default()
}

/// Every file under `dir` holding one of the canary values, with the canary's name.
fn files_holding(dir: &Path, values: &[(String, String)]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(e.path())
            {
                for (name, v) in values {
                    if bytes.windows(v.len()).any(|w| w == v.as_bytes()) {
                        found.push((e.path(), name.clone()));
                    }
                }
            }
        }
    }
    found
}

/// The canary suite on `backend`, run by `user` (none: this test's own user).
fn canaries_on(backend: &str, user: Option<&TestUser>) {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no namespace sandbox here, skipped: {why}");
        return;
    }
    if let Some(u) = user {
        // The binaries must be the user's to run (they are under the build dir).
        let o = Command::new("setpriv")
            .args(["--reuid", &u.uid.to_string(), "--regid", &u.gid.to_string()])
            .args(["--clear-groups", "--"])
            .arg(bin("agent-team"))
            .arg("--version")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{} cannot be run by a normal user: {}",
            bin("agent-team").display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let world = World::plant(user);
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let probe = sb.path("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let script = probe.join("probe.sh");
    std::fs::write(
        &script,
        world.probe(&probe, &sb.paths.runtime, &sb.paths.home),
    )
    .unwrap();
    mock.script("leader", vec![Step::Text("Leading.".into())]);
    mock.script(
        "m1",
        vec![
            Step::tools(&[(
                "bash",
                json!({"command": format!("sh {} model", script.display()), "timeout_secs": 120}),
            )]),
            Step::Text("Probed.".into()),
            Step::Text("Noted.".into()),
            Step::Text("Noted.".into()),
        ],
    );
    let mut op = Operator {
        sb: &sb,
        user,
        env: world.env(),
    };
    op.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    let ws = sb.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("README"), "the workspace\n").unwrap();
    let outside_dir = tempfile::Builder::new()
        .prefix("at-op-outside-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    if let Some(u) = user {
        u.own(sb.dir.path());
        u.own(outside_dir.path());
    }

    // (1) The plant works: from outside the sandbox, as the operator, the same script reaches
    // every canary.
    let outside_script = outside_dir.path().join("probe.sh");
    std::fs::write(
        &outside_script,
        world.probe(outside_dir.path(), &sb.paths.runtime, &sb.paths.home),
    )
    .unwrap();
    std::fs::write(outside_dir.path().join("go"), "").unwrap();
    if let Some(u) = user {
        u.own(outside_dir.path());
    }
    let sh = PathBuf::from("/bin/sh");
    let o = op
        .command(&sh, &[&outside_script.display().to_string(), "outside"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let outside = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(outside.contains("FINISHED:outside"), "{outside}\n{o:?}");
    for name in CANARIES {
        assert!(
            outside
                .lines()
                .any(|l| l.starts_with(&format!("LEAK:{name} "))),
            "{backend}: the canary {name} is not reachable even from outside the sandbox: the \
             plant is broken\n{outside}"
        );
    }
    for (name, v) in &world.values {
        assert!(
            outside.contains(v.as_str()),
            "{backend}: {name}'s value not read from outside\n{outside}"
        );
    }
    assert!(!world.connections_from("outside").is_empty());

    // (2) The team: a task command (n1), a model's bash (m1), a CLI teammate's own shell (cc),
    // a hook on every completed task, and notify on every event.
    let sh_probe = |ctx: &str| format!("sh {} {ctx}", script.display());
    let team = format!(
        "name = \"{TEAM}\"\nboard = false\n\
         [sandbox]\nwrite = [\"{probe}\"]\n\
         [hooks]\ntask_completed = \"{hook}\"\n\
         [notify]\ncommand = \"{notify}\"\ntimeout_secs = 60\n\
         [defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{base}\"\napi_key_env = \"MOCK_API_KEY\"\n\
         [roles.leader]\nprovider = \"exec\"\n\
         [roles.worker]\nprovider = \"exec\"\npermissions = {{ bash = \"allow\" }}\n\
         [roles.modeller]\nstream = false\npermissions = {{ bash = \"allow\" }}\n\
         [roles.hostile]\ndescription = \"a CLI teammate turned against its operator\"\nprovider = \"cli\"\nmodel = \"none\"\n\
         command = [\"sh\", \"{script}\", \"cli\"]\nrestart = \"never\"\n\
         [[teammates]]\nname = \"n1\"\nrole = \"worker\"\n\
         [[teammates]]\nname = \"m1\"\nrole = \"modeller\"\n\
         [[teammates]]\nname = \"cc\"\nrole = \"hostile\"\n\
         [[tasks]]\nkey = \"probe\"\ntitle = \"probe\"\nrun = \"{task}\"\nassign = \"n1\"\n",
        probe = probe.display(),
        hook = sh_probe("hook"),
        notify = sh_probe("notify"),
        task = sh_probe("task"),
        base = mock.base_url(),
        script = script.display(),
    );
    std::fs::write(ws.join("agent-team.toml"), &team).unwrap();
    if let Some(u) = user {
        u.own(sb.dir.path());
    }
    let started = Instant::now();
    op.ok(&[
        "-f",
        "ws/agent-team.toml",
        "up",
        "--backend",
        backend,
        "--detach",
    ]);

    // The contexts run on the backend asked for (in-process: the task command and the model's
    // bash are the daemon's own children).
    wait_for("the teammates on their backend", T, || {
        let ps: Vec<agent_team_protocol::AgentInfo> =
            serde_json::from_str(&op.ok(&["--team", TEAM, "ps", "--json"])).unwrap_or_default();
        ["n1", "m1", "cc"]
            .iter()
            .all(|n| ps.iter().any(|a| a.name == *n && a.backend == backend))
    });

    // The panes' ptys (the leader's among them) are canaries too: written before the probes go.
    let mut ttys = Vec::new();
    if backend == "tmux" {
        let sock = sb.tmux_socket(TEAM).display().to_string();
        let list = || -> Vec<String> {
            let o = op
                .command(
                    Path::new("/usr/bin/tmux"),
                    &["-S", &sock, "list-panes", "-a", "-F", "#{pane_tty}"],
                )
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .filter(|l| l.starts_with("/dev/"))
                .collect()
        };
        wait_for("the team's panes", T, || list().len() >= 4);
        ttys = list();
        // The plant: each pane's pty (the leader's among them) is a terminal the operator can
        // write to from outside.
        let o = op
            .command(
                &sh,
                &[
                    "-c",
                    "for t in \"$@\"; do [ -c \"$t\" ] && [ -w \"$t\" ] || { echo \"$t\"; exit 1; }; done",
                    "sh",
                ],
            )
            .args(&ttys)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{backend}: a pane's pty is not the operator's: {o:?}"
        );
    }
    std::fs::write(probe.join("ttys"), ttys.join("\n")).unwrap();
    std::fs::write(probe.join("go"), "").unwrap();
    if let Some(u) = user {
        u.own(&probe);
    }

    // (3) Each asking context's loopback destination becomes a pending request: seen pending,
    // nothing at the listener, then denied (never approved).
    let mut asked: Vec<String> = Vec::new();
    let finished = |ctx: &str| out_of(&probe, ctx).contains(&format!("FINISHED:{ctx}"));
    wait_for_or(
        "every context's probe to finish",
        T,
        || {
            for p in op.pending() {
                assert_eq!(p.tool, "network", "{backend}: an unexpected request {p:?}");
                assert_eq!(p.input, format!("127.0.0.1:{}", world.port), "{p:?}");
                let ctx = ASKING
                    .iter()
                    .find(|(_, a)| *a == p.agent)
                    .map(|(c, _)| *c)
                    .unwrap_or_else(|| panic!("{backend}: a request of {}: {p:?}", p.agent));
                assert_eq!(p.status, agent_team_protocol::PermStatus::Pending);
                assert!(
                    world.connections_from(ctx).is_empty(),
                    "{backend}: {ctx} reached the listener before a decision: {:?}",
                    world.connections_from(ctx)
                );
                op.ok(&["--team", TEAM, "deny", &p.id.to_string()]);
                asked.push(p.agent.clone());
            }
            CONTEXTS.iter().all(|c| finished(c))
        },
        || {
            CONTEXTS
                .iter()
                .map(|c| format!("--- {c}:\n{}", out_of(&probe, c)))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    eprintln!(
        "{backend}{}: every context probed in {:?}",
        user.map(|u| format!(" as {}", u.name)).unwrap_or_default(),
        started.elapsed()
    );

    // (4) Nothing reached a canary.
    let mut report = Vec::new();
    let uid = user.map_or(nix::unistd::getuid().as_raw(), |u| u.uid);
    for ctx in CONTEXTS {
        let out = out_of(&probe, ctx);
        // As the operator (root keeps its uid in the namespace, without its capabilities).
        assert!(
            out.contains(&format!("START:{ctx} uid={uid} ")),
            "{backend}: {ctx} did not run as uid {uid}\n{out}"
        );
        report.extend(
            out.lines()
                .filter(|l| l.starts_with("LEAK:"))
                .map(|l| format!("{ctx}: {l}{}", found_in(l))),
        );
        // No capability inside, as root too, and no terminal took a key.
        report.extend(
            out.lines()
                .filter(|l| l.starts_with("CAPS:") && !l.ends_with("CapEff:0000000000000000"))
                .map(|l| format!("{ctx}: capabilities inside: {l}")),
        );
        // In a mount namespace of its own: the probe dir (bound in by `[sandbox] write`) is a
        // mount inside only, which `umount` was tried on. (The hidden runtime dir is no mount
        // inside any more: the sandbox mounts over a hidden dir only where something bound
        // would show it, and starts from nothing.)
        let probe_real = std::fs::canonicalize(&probe).unwrap();
        if !out.contains(&format!("OK:mounted:{}", probe.display()))
            && !out.contains(&format!("OK:mounted:{}", probe_real.display()))
        {
            report.push(format!(
                "{ctx}: the probe dir is not a mount inside (not in a namespace?)"
            ));
        }
        for c in world.connections_from(ctx) {
            report.push(format!("{ctx}: connection at {}: {}", c.0, c.1));
        }
    }
    if backend == "tmux" {
        // The CLI teammate's own pane is its terminal: typing into it is refused too.
        let cli = out_of(&probe, "cli");
        assert!(cli.contains("OK:tiocsti-refused"), "{cli}");
        let sock = sb.tmux_socket(TEAM).display().to_string();
        let o = op
            .command(
                Path::new("/usr/bin/tmux"),
                &["-S", &sock, "list-panes", "-a", "-F", "#{pane_id}"],
            )
            .output()
            .unwrap();
        for pane in String::from_utf8_lossy(&o.stdout).lines() {
            let o = op
                .command(
                    Path::new("/usr/bin/tmux"),
                    &["-S", &sock, "capture-pane", "-p", "-t", pane],
                )
                .output()
                .unwrap();
            let screen = String::from_utf8_lossy(&o.stdout).into_owned();
            if screen.contains("TTYCANARY") {
                report.push(format!("pane {pane} got typed keys:\n{screen}"));
            }
        }
    }
    for (ctx, agent) in ASKING {
        assert!(
            asked.iter().any(|a| a == agent),
            "{backend}: {ctx}'s loopback connection was never asked for\n{}",
            out_of(&probe, ctx)
        );
    }
    // The model read its probe's output (and no canary in it).
    let m1: String = mock.requests("m1").iter().map(|r| r.to_string()).collect();
    assert!(
        m1.contains("FINISHED:model"),
        "the model never read its probe"
    );
    op.ok(&["--team", TEAM, "down"]);
    // No canary value anywhere the team wrote: outputs, task results, logs, its database, the
    // team's sandbox home, temp.
    for (file, name) in files_holding(sb.dir.path(), &world.values) {
        report.push(format!("{name}'s value in {}", file.display()));
    }
    // Anything else that connected (from no context we know of).
    for c in world.seen.lock().unwrap().iter() {
        let from = c.1.split_whitespace().next().unwrap_or("");
        let known =
            from == "outside" || CONTEXTS.contains(&from) || c.1.starts_with("GET /outside-proxy");
        let proxied = CONTEXTS
            .iter()
            .any(|ctx| c.1.contains(&format!("/{ctx}-proxy")));
        if !known && !proxied {
            report.push(format!("an unknown connection at {}: {:?}", c.0, c.1));
        }
    }
    assert!(
        report.is_empty(),
        "{backend}{}: canaries reached:\n{}",
        user.map(|u| format!(" as {}", u.name)).unwrap_or_default(),
        report.join("\n")
    );
    drop(outside_dir);
}

#[test]
fn no_canary_is_reached_from_any_context_on_the_process_backend() {
    canaries_on("process", None);
}

#[test]
fn no_canary_is_reached_from_any_context_in_tmux() {
    if agent_team_pane::tmux::version().is_err() {
        eprintln!("skipped: tmux >= 3.2 not found");
        return;
    }
    canaries_on("tmux", None);
}

#[test]
fn no_canary_is_reached_from_any_context_on_the_in_process_backend() {
    canaries_on("in-process", None);
}

#[test]
fn no_canary_is_reached_from_any_context_as_a_normal_user() {
    let Some(user) = TestUser::make() else {
        // Not root: the cases above already ran as a normal user.
        return;
    };
    canaries_on("process", Some(&user));
}

#[test]
fn no_canary_is_reached_from_any_context_as_a_normal_user_in_tmux() {
    if agent_team_pane::tmux::version().is_err() {
        eprintln!("skipped: tmux >= 3.2 not found");
        return;
    }
    let Some(user) = TestUser::make() else {
        return;
    };
    canaries_on("tmux", Some(&user));
}

#[test]
fn no_canary_is_reached_from_any_context_as_a_normal_user_in_process() {
    let Some(user) = TestUser::make() else {
        return;
    };
    canaries_on("in-process", Some(&user));
}

/// Every canary of `world` answered the probe run outside the sandbox (`out`, context
/// `outside`): the plant `what` names works, so a probe inside that reaches none proves something.
fn assert_reachable_outside(world: &World, out: &str, what: &str) {
    assert!(out.contains("FINISHED:outside"), "{what}: {out}");
    for name in CANARIES {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("LEAK:{name} "))),
            "{what}: the canary {name} is not reachable even from outside the sandbox: the plant \
             is broken\n{out}"
        );
    }
    for (name, v) in &world.values {
        assert!(
            out.contains(v.as_str()),
            "{what}: {name}'s value not read from outside\n{out}"
        );
    }
    assert!(!world.connections_from("outside").is_empty(), "{what}");
}

/// For a probe's `LEAK:found-in:FILE` line, what FILE holds that looks like a canary (the
/// test reads it outside the sandbox, if it is still there).
fn found_in(line: &str) -> String {
    let Some(file) = line.strip_prefix("LEAK:found-in:") else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
    let hits: Vec<&str> = text
        .match_indices("at-canary-")
        .map(|(i, _)| {
            let end = text[i..]
                .find(|c: char| c.is_whitespace() || "\"',\\".contains(c))
                .map_or(text.len(), |e| i + e);
            &text[i..end]
        })
        .collect();
    format!(" (holding {hits:?})")
}

/// What a probe run as `ctx` found of `world` (its output in `probe`): each `LEAK:` line,
/// a capability, no namespace of its own (`mounted`, a dir that is a mount only inside one),
/// a connection at one of the world's listeners.
fn reached(world: &World, probe: &Path, ctx: &str, mounted: &Path) -> Vec<String> {
    let out = out_of(probe, ctx);
    let mut report: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("LEAK:"))
        .map(|l| format!("{ctx}: {l}{}", found_in(l)))
        .collect();
    report.extend(
        out.lines()
            .filter(|l| l.starts_with("CAPS:") && !l.ends_with("CapEff:0000000000000000"))
            .map(|l| format!("{ctx}: capabilities inside: {l}")),
    );
    if !out.contains(&format!("OK:mounted:{}", mounted.display())) {
        report.push(format!(
            "{ctx}: {} is not a mount inside (not in a namespace?)\n{out}",
            mounted.display()
        ));
    }
    for c in world.connections_from(ctx) {
        report.push(format!("{ctx}: connection at {}: {}", c.0, c.1));
    }
    for c in world.seen.lock().unwrap().iter() {
        let from = c.1.split_whitespace().next().unwrap_or("");
        let known = from == "outside" || from == ctx || c.1.starts_with("GET /outside-proxy");
        // The operator's own ssh (`up`'s check of the host, the daemon's link to it: outside
        // every sandbox) uses their agent, as any ssh of theirs does.
        let their_ssh = c.0 == "agent-socket" && c.1.contains("session-bind@openssh.com");
        if !known && !their_ssh && !c.1.contains(&format!("/{ctx}-proxy")) {
            report.push(format!("an unknown connection at {}: {:?}", c.0, c.1));
        }
    }
    report
}

/// The canary suite on a remote host's side: a teammate on the test's own sshd (`host =`)
/// runs the probe as its task command, in the host's sandbox, against the canaries of the
/// host's side (a home of its own that the host's sessions log in with, `SSH_AUTH_SOCK` and
/// `XDG_RUNTIME_DIR` sockets, an abstract socket and a listener on the host's loopback: its
/// network namespace) and the operator's on this machine (the same machine here: its files and
/// path sockets are beside the host's).
#[test]
fn no_canary_is_reached_from_a_remote_hosts_sandbox() {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no namespace sandbox here, skipped: {why}");
        return;
    }
    let mut sshd = Sshd::start();
    let here = World::plant(None);
    let there = World::plant_on(None, Some(&sshd));
    sshd.set_env(&there.env());
    let probe_here = sb.path("probe");
    let probe_there = sshd.dir.path().join("probe");
    let remote_run = sshd.remote_dir().join("run");
    for d in [&probe_here, &probe_there] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("go"), "").unwrap();
    }
    let script_here = probe_here.join("probe.sh");
    std::fs::write(
        &script_here,
        here.probe(&probe_here, &sb.paths.runtime, &sb.paths.home),
    )
    .unwrap();
    let script_there = probe_there.join("probe.sh");
    std::fs::write(
        &script_there,
        there.probe(&probe_there, &remote_run, &sshd.remote_dir()),
    )
    .unwrap();
    let op = Operator {
        sb: &sb,
        user: None,
        env: here.env(),
    };

    // (1) The plants work: the operator's from outside here, the host's from a session there.
    let outside = |world: &World, dir: &Path| {
        let script = dir.join("probe.sh");
        std::fs::write(&script, world.probe(dir, &remote_run, &sshd.remote_dir())).unwrap();
        std::fs::write(dir.join("go"), "").unwrap();
        script
    };
    let outside_here = tempfile::Builder::new()
        .prefix("at-op-outside-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let script = outside(&here, outside_here.path());
    let o = op
        .command(
            Path::new("/bin/sh"),
            &[&script.display().to_string(), "outside"],
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_reachable_outside(&here, &String::from_utf8_lossy(&o.stdout), "here");
    let outside_there = tempfile::Builder::new()
        .prefix("at-op-outside-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let script = outside(&there, outside_there.path());
    let o = Command::new("ssh")
        .arg("-F")
        .arg(sshd.config())
        .args([HOST, "sh", &script.display().to_string(), "outside"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_reachable_outside(
        &there,
        &String::from_utf8_lossy(&o.stdout),
        "on the host, from an ssh session",
    );

    // (2) The remote teammate's task command probes the host's world, then the operator's.
    let ws = sb.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let dirs = format!(
        "[\"{}\", \"{}\"]",
        probe_here.display(),
        probe_there.display()
    );
    std::fs::write(
        ws.join("agent-team.toml"),
        format!(
            "name = \"{TEAM}\"\nboard = false\n{ssh}\n\
             [sandbox]\nread = {dirs}\nwrite = {dirs}\n\
             [roles.leader]\nprovider = \"exec\"\n\
             [roles.worker]\nprovider = \"exec\"\npermissions = {{ bash = \"allow\" }}\n\
             [[teammates]]\nname = \"far\"\nrole = \"worker\"\nhost = \"{HOST}\"\n\
             [[tasks]]\nkey = \"probe\"\ntitle = \"probe\"\nrun = \"sh {there} remote; sh {here} remote\"\nassign = \"far\"\n",
            ssh = sshd.ssh_table(Some(&bin("agent-team-worker"))),
            there = script_there.display(),
            here = script_here.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    op.ok(&[
        "-f",
        "ws/agent-team.toml",
        "up",
        "--backend",
        "process",
        "--detach",
    ]);
    let finished = |p: &Path| out_of(p, "remote").contains("FINISHED:remote");
    let mut asked = Vec::new();
    wait_for_or(
        "the remote probes to finish",
        T,
        || {
            for p in op.pending() {
                assert_eq!(p.tool, "network", "an unexpected request {p:?}");
                assert_eq!(p.agent, "far", "{p:?}");
                assert!(
                    [here.port, there.port]
                        .iter()
                        .any(|port| p.input == format!("127.0.0.1:{port}")),
                    "{p:?}"
                );
                assert_eq!(p.status, agent_team_protocol::PermStatus::Pending);
                op.ok(&["--team", TEAM, "deny", &p.id.to_string()]);
                asked.push(p.input.clone());
            }
            finished(&probe_here) && finished(&probe_there)
        },
        || {
            format!(
                "--- the host's world:\n{}\n--- the operator's:\n{}\n--- far's log:\n{}",
                out_of(&probe_there, "remote"),
                out_of(&probe_here, "remote"),
                op.at(&["--team", TEAM, "logs", "far"])
                    .stdout
                    .escape_ascii()
            )
        },
    );
    eprintln!("remote: probed in {:?}", started.elapsed());

    // (3) Nothing reached a canary, of either side.
    let mut report = reached(&there, &probe_there, "remote", &probe_there);
    report.extend(reached(&here, &probe_here, "remote", &probe_here));
    for p in [&probe_here, &probe_there] {
        let out = out_of(p, "remote");
        assert!(out.contains("START:remote uid="), "{out}");
    }
    // No egress proxy serves a teammate on another host yet: its sandbox's network is shut (a
    // namespace with only its own loopback), so nothing is asked and nothing gets out.
    if !asked.is_empty() {
        report.push(format!("remote: a network request was raised: {asked:?}"));
    }
    op.ok(&["--team", TEAM, "down"]);
    for dir in [sb.dir.path(), &sshd.remote_dir()] {
        for (file, name) in
            files_holding(dir, &[here.values.clone(), there.values.clone()].concat())
        {
            report.push(format!("{name}'s value in {}", file.display()));
        }
    }
    assert!(
        report.is_empty(),
        "a remote host's sandbox: canaries reached:\n{}",
        report.join("\n")
    );
}

/// A real agent CLI as a teammate, for [`canaries_in_a_clis_shell`]: its `[roles.cli]`
/// section against `mock`, the key variable its role names, its shell tool's name and
/// arguments for a command, and what its model says first.
struct CliCase {
    /// The probe's context name (the CLI's).
    ctx: &'static str,
    role: String,
    mock: MockModel,
    key: (&'static str, &'static str),
    shell: &'static str,
    args: fn(&str) -> serde_json::Value,
}

/// `{"command": cmd}`: the shell tool's arguments of every CLI but Codex.
fn command_arg(cmd: &str) -> serde_json::Value {
    json!({ "command": cmd })
}

/// The canary suite in a real agent CLI's own shell tool: its model (the mock) calls the
/// tool with the probe script (granted by `[sandbox] read`/`write`), which the role allows
/// outright (`bash = "allow"`: no hook asks anyone), on the process backend. Nothing is
/// reached; the loopback destination is only a `network` request of the CLI's teammate,
/// denied; the model gets the probe's output and no canary in it.
fn canaries_in_a_clis_shell(case: CliCase) {
    let ctx = case.ctx;
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no namespace sandbox here, skipped: {why}");
        return;
    }
    let world = World::plant(None);
    let probe = sb.path("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let script = probe.join("probe.sh");
    std::fs::write(
        &script,
        world.probe(&probe, &sb.paths.runtime, &sb.paths.home),
    )
    .unwrap();
    std::fs::write(probe.join("ttys"), "").unwrap();
    std::fs::write(probe.join("go"), "").unwrap();
    let mut op = Operator {
        sb: &sb,
        user: None,
        env: world.env(),
    };
    op.env.push((case.key.0.into(), case.key.1.into()));
    let cmd = format!("sh {} {ctx}", script.display());
    case.mock.script(
        "cc",
        vec![
            Step::Tools(vec![(case.shell.into(), (case.args)(&cmd))]),
            Step::Text("Probed.".into()),
        ],
    );
    let ws = sb.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("agent-team.toml"),
        format!(
            "name = \"{TEAM}\"\nboard = false\n\
             [sandbox]\nread = [\"{probe}\"]\nwrite = [\"{probe}\"]\n\n\
             {role}permissions = {{ bash = \"allow\" }}\n\n\
             [[teammates]]\nname = \"cc\"\nrole = \"cli\"\n",
            probe = probe.display(),
            role = case.role,
        ),
    )
    .unwrap();
    let up = op.at(&[
        "-f",
        "ws/agent-team.toml",
        "up",
        "--backend",
        "process",
        "--detach",
    ]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let log = || std::fs::read_to_string(sb.team(TEAM).logs.join("cc.log")).unwrap_or_default();
    let mut asked = Vec::new();
    let started = Instant::now();
    wait_for_or(
        &format!("{ctx}'s probe to finish"),
        Duration::from_secs(120),
        || {
            for p in op.pending() {
                assert_eq!(p.tool, "network", "{ctx}: an unexpected request {p:?}");
                assert_eq!(p.agent, "cc", "{p:?}");
                assert_eq!(p.input, format!("127.0.0.1:{}", world.port), "{p:?}");
                assert_eq!(p.status, agent_team_protocol::PermStatus::Pending);
                assert!(
                    world.connections_from(ctx).is_empty(),
                    "{ctx} reached the listener before a decision: {:?}",
                    world.connections_from(ctx)
                );
                op.ok(&["--team", TEAM, "deny", &p.id.to_string()]);
                asked.push(p.id);
            }
            out_of(&probe, ctx).contains(&format!("FINISHED:{ctx}"))
        },
        || {
            format!(
                "--- probe:\n{}\n--- cc's log:\n{}\n--- unmatched: {:?}",
                out_of(&probe, ctx),
                log(),
                case.mock.unmatched()
            )
        },
    );
    eprintln!("{ctx}: probed in {:?}", started.elapsed());
    // The CLI's model got the probe's output back.
    wait_for_or(
        "the probe's output to reach the model",
        T,
        || {
            case.mock
                .requests("cc")
                .iter()
                .any(|r| r.to_string().contains(&format!("FINISHED:{ctx}")))
        },
        log,
    );
    let out = out_of(&probe, ctx);
    let uid = nix::unistd::getuid().as_raw();
    assert!(
        out.contains(&format!("START:{ctx} uid={uid} ")),
        "{ctx} did not run as uid {uid}\n{out}"
    );
    let mut report = reached(&world, &probe, ctx, &probe);
    let to_model: String = case
        .mock
        .requests("cc")
        .iter()
        .map(|r| r.to_string())
        .collect();
    for (name, v) in &world.values {
        if to_model.contains(v.as_str()) {
            report.push(format!("{name}'s value sent to the CLI's model"));
        }
    }
    assert!(
        !asked.is_empty(),
        "{ctx}: the loopback connection was never asked for\n{out}"
    );
    op.ok(&["--team", TEAM, "down"]);
    for (file, name) in files_holding(sb.dir.path(), &world.values) {
        report.push(format!("{name}'s value in {}", file.display()));
    }
    assert!(
        report.is_empty(),
        "{ctx}'s own shell: canaries reached:\n{}",
        report.join("\n")
    );
}

#[test]
fn no_canary_is_reached_from_claude_codes_bash() {
    use super::clis::{ANTHROPIC_KEY, CLAUDE_CODE_VERSION, cli_role, installed};
    let claude = installed("@anthropic-ai/claude-code", CLAUDE_CODE_VERSION, "claude");
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    let role = cli_role(
        "cli",
        "claude-code",
        "claude-sonnet-4-5",
        &mock.base_url(),
        ANTHROPIC_KEY.0,
        &claude,
    );
    canaries_in_a_clis_shell(CliCase {
        ctx: "claude-code",
        role,
        mock,
        key: ANTHROPIC_KEY,
        shell: "Bash",
        args: command_arg,
    });
}

#[test]
fn no_canary_is_reached_from_codexs_exec_command() {
    use super::clis::{CODEX_VERSION, OPENAI_KEY, cli_role, installed};
    let codex = installed("@openai/codex", CODEX_VERSION, "codex");
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let role = cli_role(
        "cli",
        "codex",
        "gpt-5-codex",
        &mock.base_url(),
        OPENAI_KEY.0,
        &codex,
    );
    canaries_in_a_clis_shell(CliCase {
        ctx: "codex",
        role,
        mock,
        key: OPENAI_KEY,
        shell: "exec_command",
        args: |cmd| json!({ "cmd": cmd }),
    });
}

#[test]
fn no_canary_is_reached_from_gemini_clis_run_shell_command() {
    use super::clis::{GEMINI_CLI_VERSION, GEMINI_KEY, cli_role, installed};
    let gemini = installed("@google/gemini-cli", GEMINI_CLI_VERSION, "gemini");
    let mock = MockModel::start_background(Wire::Gemini).unwrap();
    let role = cli_role(
        "cli",
        "gemini-cli",
        "gemini-2.5-pro",
        &mock.base_url(),
        GEMINI_KEY.0,
        &gemini,
    );
    canaries_in_a_clis_shell(CliCase {
        ctx: "gemini-cli",
        role,
        mock,
        key: GEMINI_KEY,
        shell: "run_shell_command",
        args: command_arg,
    });
}

#[test]
fn no_canary_is_reached_from_qwen_codes_run_shell_command() {
    use super::clis::{OPENAI_KEY, cli_role, qwen_code};
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let role = cli_role(
        "cli",
        "qwen-code",
        "qwen3-coder",
        &mock.base_url(),
        OPENAI_KEY.0,
        &qwen_code(),
    );
    canaries_in_a_clis_shell(CliCase {
        ctx: "qwen-code",
        role,
        mock,
        key: OPENAI_KEY,
        shell: "run_shell_command",
        args: command_arg,
    });
}

#[test]
fn no_canary_is_reached_from_copilots_bash() {
    use super::clis::{OPENAI_KEY, cli_role};
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let role = cli_role(
        "cli",
        "copilot",
        "gpt-4.1",
        &mock.base_url(),
        OPENAI_KEY.0,
        &super::copilot::copilot(),
    );
    canaries_in_a_clis_shell(CliCase {
        ctx: "copilot",
        role,
        mock,
        key: OPENAI_KEY,
        shell: "bash",
        args: command_arg,
    });
}

#[test]
fn no_canary_is_reached_from_opencodes_bash() {
    use super::clis::{OPENAI_KEY, cli_role};
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    // opencode asks for a session title first: answered aside.
    mock.answer_aside("You are a title generator", "Team work");
    let role = cli_role(
        "cli",
        "opencode",
        "qwen3-coder",
        &mock.base_url(),
        OPENAI_KEY.0,
        &super::opencode::opencode(),
    );
    canaries_in_a_clis_shell(CliCase {
        ctx: "opencode",
        role,
        mock,
        key: OPENAI_KEY,
        shell: "bash",
        args: command_arg,
    });
}
