//! A real OpenSSH server on loopback for the remote-teammate tests: its own host key,
//! authorized key and configuration in a temp dir, and a private client configuration naming
//! it `box`. It runs as the test's own user, so the "host" is this machine seen through ssh;
//! the agents' files there live under [`Sshd::remote_dir`].
//!
//! Where the test may make one (root, `unshare`, `nsenter`, `ip`, `nc`), sshd runs in a network
//! namespace of its own: its 127.0.0.1 is not ours, the client reaches it only through
//! `ProxyCommand nsenter … nc`, and the agents it starts there cannot reach anything of this
//! machine over the network (no model, no daemon port): the only way between the two sides is
//! the ssh link, whose Unix-socket forward is their `AGENT_TEAM_SOCKET`. [`Sshd::block`] takes
//! the namespace's loopback down (a pulled cable: packets vanish, nothing is reset). Elsewhere it
//! falls back to this machine's loopback and says so on stderr.

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
    /// The network namespace it runs in, when the test could make one.
    netns: Option<Netns>,
}

/// A network namespace of the test's own, held open by a sleeping process: everything started
/// in it (sshd, its sessions, the agents on the "host") is killed with it.
struct Netns {
    holder: Child,
}

impl Netns {
    /// A new namespace with its loopback up, or why there is none here.
    fn make() -> Result<Netns, String> {
        for tool in ["unshare", "nsenter", "ip", "nc"] {
            let found = std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
            if !found {
                return Err(format!("{tool} is not installed"));
            }
        }
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut ns = Netns { holder };
        // unshare makes the namespace, then execs sleep: wait until the holder is in it.
        let ours = std::fs::read_link("/proc/self/ns/net").ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = ns.holder.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = ns.holder.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("unshare --net: {status}: {}", err.trim()));
            }
            let theirs = std::fs::read_link(ns.path()).ok();
            let cmd =
                std::fs::read(format!("/proc/{}/cmdline", ns.holder.id())).unwrap_or_default();
            if theirs.is_some() && theirs != ours && cmd.starts_with(b"sleep") {
                break;
            }
            if Instant::now() > deadline {
                return Err("unshare --net did not make a namespace".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ns.ip_link("up")?;
        Ok(ns)
    }

    /// The namespace as `nsenter --net=` takes it.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// `cmd` run inside the namespace.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg(program);
        c
    }

    /// The namespace's loopback up or down.
    fn ip_link(&self, state: &str) -> Result<(), String> {
        let out = self
            .command(Path::new("ip"))
            .args(["link", "set", "lo", state])
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip link set lo {state}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Whether something in the namespace accepts on 127.0.0.1:`port`.
    fn accepts(&self, port: u16) -> bool {
        self.command(Path::new("nc"))
            .args(["-z", "127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The processes in the namespace, but its holder.
    fn members(&self) -> Vec<u32> {
        let Ok(ns) = std::fs::read_link(self.path()) else {
            return Vec::new();
        };
        all_pids()
            .into_iter()
            .filter(|&pid| {
                pid != self.holder.id()
                    && std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|n| n == ns)
            })
            .collect()
    }

    /// Ends every process in the namespace, then its holder. The sessions are given a few
    /// seconds to end by themselves first (their client is gone), as a real host's would; what
    /// is still there then is killed.
    fn kill_all(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.members().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.members() {
            kill9(pid);
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Every pid in /proc.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
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
        // The host's sessions get a home of their own (sshd's `SetEnv HOME`), so the shell
        // sshd runs every command with reads none of the test user's rc files: those are the
        // machine's, not the test's, and a pyenv in them left a stale lock once a session was
        // killed mid-rc, after which every login on this machine waited 60 s (all the remote
        // tests failed in CI with "ssh did not finish within 30s").
        std::fs::create_dir(d.join("home")).unwrap();
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let netns = match Netns::make() {
            Ok(ns) => Some(ns),
            Err(why) => {
                eprintln!(
                    "sshd harness: no network namespace here ({why}); sshd listens on this \
                     machine's loopback instead"
                );
                None
            }
        };
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
                 MaxSessions 50\nMaxStartups 50\nSetEnv HOME={d}/home\n",
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
        // In a namespace, the only way in is nc started there (-N: our end closing closes it).
        let proxy = netns
            .as_ref()
            .map(|ns| {
                format!(
                    "  ProxyCommand nsenter --net={} nc -N 127.0.0.1 {port}\n",
                    ns.path().display()
                )
            })
            .unwrap_or_default();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
                 IdentityFile {d}/userkey\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  \
                 UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n{proxy}",
                d = d.display()
            ),
        )
        .unwrap();
        let mut s = Sshd {
            dir,
            port,
            child: None,
            netns,
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
        let mut cmd = match &self.netns {
            Some(ns) => ns.command(&sshd_bin()),
            None => Command::new(sshd_bin()),
        };
        let child = cmd
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.accepts() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether sshd accepts connections now.
    fn accepts(&self) -> bool {
        match &self.netns {
            Some(ns) => ns.accepts(self.port),
            None => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        }
    }

    /// Runs `f` on a thread inside the host's network namespace (here, without one): a server
    /// it binds on 127.0.0.1 (a mock model) is what the agents on the host reach there.
    pub fn on_host<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.netns.as_ref().map(Netns::path);
        std::thread::scope(|s| {
            s.spawn(|| {
                if let Some(path) = ns {
                    let fd = std::fs::File::open(&path).unwrap();
                    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                }
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Whether sshd runs in a network namespace of its own (else on this machine's loopback).
    pub fn isolated(&self) -> bool {
        self.netns.is_some()
    }

    /// Pulls the cable: the namespace's loopback goes down, so packets of established
    /// connections vanish and new ones fail, until [`Sshd::unblock`]. Without a namespace, sshd
    /// stops listening instead (established connections go on).
    pub fn block(&mut self) {
        match &self.netns {
            Some(ns) => ns.ip_link("down").unwrap(),
            None => self.stop(),
        }
    }

    /// Plugs the cable back (or starts sshd again, without a namespace).
    pub fn unblock(&mut self) {
        match &self.netns {
            Some(ns) => ns.ip_link("up").unwrap(),
            None => self.launch(),
        }
    }

    /// Sets the environment of the host's sessions (`SetEnv`: the home and whatever else a
    /// login there would have, e.g. `SSH_AUTH_SOCK`) and restarts sshd with it; `HOME` replaces
    /// the harness's own.
    pub fn set_env(&mut self, vars: &[(String, String)]) {
        let config = self.dir.path().join("sshd_config");
        let text = std::fs::read_to_string(&config).unwrap();
        let mut line = String::from("SetEnv");
        if !vars.iter().any(|(k, _)| k == "HOME") {
            line.push_str(&format!(" HOME={}/home", self.dir.path().display()));
        }
        for (k, v) in vars {
            assert!(
                !v.contains(char::is_whitespace) && !v.contains('"'),
                "SetEnv {k}={v}: no blanks or quotes"
            );
            line.push_str(&format!(" {k}={v}"));
        }
        let text: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("SetEnv ") {
                    line.clone()
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&config, text.join("\n") + "\n").unwrap();
        self.restart();
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
    all_pids()
        .into_iter()
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
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        // Whatever a failed test left on the "host" goes too: never leave an agent behind.
        for (pid, _) in self.remote_processes() {
            kill9(pid);
        }
        for (pid, _) in processes_mentioning(&self.config().display().to_string()) {
            kill9(pid);
        }
        if let Some(ns) = &mut self.netns {
            ns.kill_all();
        }
    }
}
