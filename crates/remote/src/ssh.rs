//! The OS boundary to OpenSSH: every ssh process the remote backend starts goes through the
//! [`Ssh`] trait, so the backend's logic is tested with [`LocalSsh`] (scripts run here, the
//! forward a symlink) and the real [`OpenSsh`] only in the end-to-end tests against a real sshd.

use crate::RemoteError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What a finished command printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Its exit code (`None`: killed, or timed out).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The ssh operations the remote backend needs; real ([`OpenSsh`]) or local ([`LocalSsh`]).
pub trait Ssh: Send + Sync {
    /// Runs `script` with `sh -s` on `host` (through the master listening on `via` when
    /// given), the script's text on standard input so no command line on the host shows it.
    fn script(
        &self,
        host: &str,
        via: Option<&Path>,
        script: &str,
        timeout: Duration,
    ) -> Result<Output, RemoteError>;

    /// Runs the shell line `command` on `host` through `via` with the file `input` on its
    /// standard input (copying the worker there). `command` must hold no secret.
    fn upload(
        &self,
        host: &str,
        via: &Path,
        command: &str,
        input: &Path,
        timeout: Duration,
    ) -> Result<Output, RemoteError>;

    /// Starts the link's master connection, multiplexing on `control`, its diagnostics in
    /// `log` (this try's only).
    fn master(&self, host: &str, control: &Path, log: &Path) -> Result<Child, RemoteError>;

    /// Asks the master on `control` for the Unix-socket forward `remote_socket` (on the host)
    /// → `local_socket`.
    fn forward(
        &self,
        host: &str,
        control: &Path,
        remote_socket: &str,
        local_socket: &Path,
    ) -> Result<(), RemoteError>;

    /// Forwards TCP port `remote_port` on the host's loopback (0: one the host picks) to
    /// `local_port` on this machine's loopback, through the master on `control`; the host's
    /// port. (The team's model gateway for an agent CLI there: issue 65.)
    fn forward_port(
        &self,
        host: &str,
        control: &Path,
        remote_port: u16,
        local_port: u16,
    ) -> Result<u16, RemoteError>;

    /// Whether the master on `control` answers.
    fn check(&self, host: &str, control: &Path) -> bool;

    /// Ends the master listening on `control`, if one does (a previous daemon's).
    fn exit_master(&self, host: &str, control: &Path);

    /// The command line that runs `command` on `host` through `via` in a terminal on the host
    /// (a pane showing the remote agent).
    fn terminal_argv(&self, host: &str, via: &Path, command: &str) -> Vec<String>;
}

/// The real OpenSSH client: `command` is the argv prefix of every call (`["ssh"]`, or
/// `["ssh", "-F", "CONFIG"]`), so the user's `~/.ssh/config` applies.
#[derive(Debug, Clone)]
pub struct OpenSsh {
    command: Vec<String>,
}

/// Options of every call: never ask a question (a pane or a daemon has nobody to answer),
/// and give up on an unreachable host in bounded time.
const BATCH: [&str; 4] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"];

/// Options of every call made through the link's master: through it or not at all. With its
/// master gone, ssh would connect to the host anew (`ControlMaster=no` falls back to a direct
/// connection): on a host that does not answer, a call stalled for `ConnectTimeout` where the
/// link was known to be down; on one that does, a session the link knew nothing of. A proxy
/// command that fails at once makes that fallback fail at once (exit 255, unreachable); the
/// master, when there is one, needs no proxy. Given on the command line, it wins over a
/// `ProxyCommand` or `ProxyJump` of the user's configuration for this call only.
const LINK_ONLY: [&str; 2] = ["-o", "ProxyCommand=false"];

impl OpenSsh {
    /// A client running `command` (at least the program).
    pub fn new(command: Vec<String>) -> Self {
        let command = if command.is_empty() {
            vec!["ssh".to_string()]
        } else {
            command
        };
        OpenSsh { command }
    }

    fn base(&self) -> Command {
        let mut c = Command::new(&self.command[0]);
        c.args(&self.command[1..]).args(BATCH);
        c
    }

    fn via(c: &mut Command, via: Option<&Path>) {
        match via {
            Some(p) => {
                c.arg("-o")
                    .arg("ControlMaster=no")
                    .arg("-S")
                    .arg(p)
                    .args(LINK_ONLY);
            }
            None => {
                c.arg("-o")
                    .arg("ControlMaster=no")
                    .arg("-o")
                    .arg("ControlPath=none");
            }
        }
    }
}

impl Ssh for OpenSsh {
    fn script(
        &self,
        host: &str,
        via: Option<&Path>,
        script: &str,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        let mut c = self.base();
        Self::via(&mut c, via);
        c.arg("-T").arg("--").arg(host).arg("sh -s");
        run(c, Input::Text(script.as_bytes().to_vec()), timeout)
    }

    fn upload(
        &self,
        host: &str,
        via: &Path,
        command: &str,
        input: &Path,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        let mut c = self.base();
        Self::via(&mut c, Some(via));
        c.arg("-T")
            .arg("--")
            .arg(host)
            .arg(format!("sh -c {}", agent_team_pane::shell_quote(command)));
        run(c, Input::File(input.to_path_buf()), timeout)
    }

    fn master(&self, host: &str, control: &Path, log: &Path) -> Result<Child, RemoteError> {
        // Each try's own: a host down for days does not grow it.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(log)
            .map_err(|e| RemoteError::Io(format!("cannot open {}: {e}", log.display())))?;
        let mut c = self.base();
        c.arg("-M")
            .arg("-S")
            .arg(control)
            .arg("-N")
            .args(["-o", "ControlPersist=no"])
            .args(["-o", "ExitOnForwardFailure=yes"])
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
            .args(["-o", "StreamLocalBindMask=0177"])
            .arg("--")
            .arg(host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Its own process group: a signal meant for the daemon's group (a terminal's ^C)
        // does not cut the link of agents that outlive it.
        use std::os::unix::process::CommandExt;
        c.process_group(0);
        c.spawn()
            .map_err(|e| RemoteError::Io(format!("cannot start {}: {e}", self.command[0])))
    }

    fn forward(
        &self,
        host: &str,
        control: &Path,
        remote_socket: &str,
        local_socket: &Path,
    ) -> Result<(), RemoteError> {
        let mut c = self.base();
        c.arg("-S")
            .arg(control)
            .args(["-o", "ExitOnForwardFailure=yes", "-O", "forward", "-R"])
            .arg(format!("{remote_socket}:{}", local_socket.display()))
            .args(["--", host]);
        let out = run(c, Input::None, Duration::from_secs(30))?;
        if out.code == Some(0) {
            Ok(())
        } else {
            Err(RemoteError::Host {
                host: host.to_string(),
                message: format!(
                    "the forward of the daemon's socket was refused (AllowStreamLocalForwarding?): {}",
                    out.stderr.trim()
                ),
            })
        }
    }

    fn forward_port(
        &self,
        host: &str,
        control: &Path,
        remote_port: u16,
        local_port: u16,
    ) -> Result<u16, RemoteError> {
        let mut c = self.base();
        c.arg("-S")
            .arg(control)
            .args(["-o", "ExitOnForwardFailure=yes", "-O", "forward", "-R"])
            .arg(format!("127.0.0.1:{remote_port}:127.0.0.1:{local_port}"))
            .args(["--", host]);
        let out = run(c, Input::None, Duration::from_secs(30))?;
        // With port 0 the master prints the port the host picked.
        let picked = match remote_port {
            0 => out.stdout.trim().parse::<u16>().unwrap_or(0),
            p => p,
        };
        match picked {
            p if out.code == Some(0) && p != 0 => Ok(p),
            _ => Err(RemoteError::Host {
                host: host.to_string(),
                message: format!(
                    "the forward of the team's model gateway was refused \
                     (AllowTcpForwarding?): {}",
                    out.stderr.trim()
                ),
            }),
        }
    }

    fn check(&self, host: &str, control: &Path) -> bool {
        let mut c = self.base();
        c.arg("-S").arg(control).args(["-O", "check", "--", host]);
        run(c, Input::None, Duration::from_secs(5)).is_ok_and(|o| o.code == Some(0))
    }

    fn exit_master(&self, host: &str, control: &Path) {
        if !control.exists() {
            return;
        }
        let mut c = self.base();
        c.arg("-S").arg(control).args(["-O", "exit", "--", host]);
        let _ = run(c, Input::None, Duration::from_secs(5));
        let _ = std::fs::remove_file(control);
    }

    fn terminal_argv(&self, host: &str, via: &Path, command: &str) -> Vec<String> {
        let mut v = self.command.clone();
        v.extend(BATCH.iter().map(|s| s.to_string()));
        v.extend(["-o".into(), "ControlMaster=no".into(), "-S".into()]);
        v.push(via.display().to_string());
        v.extend(LINK_ONLY.iter().map(|s| s.to_string()));
        // A terminal on the host even when this side has none (a headless viewer): its
        // commands get SIGHUP when the session ends, so nothing of the view outlives it.
        v.extend([
            "-tt".into(),
            "--".into(),
            host.to_string(),
            command.to_string(),
        ]);
        v
    }
}

/// A stand-in for ssh that runs everything on this machine: scripts with `sh -s`, the forward
/// as a symlink from the "remote" socket path to the daemon's, the master as a `sleep`. For
/// the backend's unit tests (the real link is tested against a real sshd).
#[derive(Debug, Default, Clone)]
pub struct LocalSsh {
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LocalSsh {
    /// Makes the "host" unreachable (every call fails as ssh does, exit 255) or reachable.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn unreachable(&self) -> Option<Output> {
        self.down
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| Output {
                code: Some(255),
                stdout: String::new(),
                stderr: "ssh: connect to host box port 22: Connection refused".into(),
            })
    }
}

impl Ssh for LocalSsh {
    fn script(
        &self,
        _host: &str,
        _via: Option<&Path>,
        script: &str,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        if let Some(o) = self.unreachable() {
            return Ok(o);
        }
        let mut c = Command::new("sh");
        c.arg("-s");
        run(c, Input::Text(script.as_bytes().to_vec()), timeout)
    }

    fn upload(
        &self,
        _host: &str,
        _via: &Path,
        command: &str,
        input: &Path,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        let mut c = Command::new("sh");
        c.arg("-c").arg(command);
        run(c, Input::File(input.to_path_buf()), timeout)
    }

    fn master(&self, _host: &str, control: &Path, _log: &Path) -> Result<Child, RemoteError> {
        if self.unreachable().is_some() {
            return Err(RemoteError::Unreachable {
                host: "box".into(),
                message: "Connection refused".into(),
            });
        }
        std::fs::write(control, b"")
            .map_err(|e| RemoteError::Io(format!("cannot write {}: {e}", control.display())))?;
        Command::new("sleep")
            .arg("100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RemoteError::Io(format!("cannot start sleep: {e}")))
    }

    fn forward(
        &self,
        _host: &str,
        _control: &Path,
        remote_socket: &str,
        local_socket: &Path,
    ) -> Result<(), RemoteError> {
        let _ = std::fs::remove_file(remote_socket);
        std::os::unix::fs::symlink(local_socket, remote_socket)
            .map_err(|e| RemoteError::Io(format!("cannot link {remote_socket}: {e}")))
    }

    fn forward_port(
        &self,
        _host: &str,
        _control: &Path,
        _remote_port: u16,
        local_port: u16,
    ) -> Result<u16, RemoteError> {
        // The "host" is this machine: its loopback is ours.
        Ok(local_port)
    }

    fn check(&self, _host: &str, control: &Path) -> bool {
        control.exists()
    }

    fn exit_master(&self, _host: &str, control: &Path) {
        let _ = std::fs::remove_file(control);
    }

    fn terminal_argv(&self, _host: &str, _via: &Path, command: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), command.to_string()]
    }
}

enum Input {
    None,
    Text(Vec<u8>),
    File(PathBuf),
}

/// Runs `c` with `input` on its standard input, collecting its output, killed at `timeout`
/// with everything it started (its ProxyCommand, which holds its stderr): the one bounded
/// runner, [`agent_team_pane::procs::run_bounded_io`].
fn run(c: Command, input: Input, timeout: Duration) -> Result<Output, RemoteError> {
    let program = c.get_program().to_string_lossy().into_owned();
    let input: Option<Box<dyn Read + Send>> = match input {
        Input::None => None,
        Input::Text(t) => Some(Box::new(std::io::Cursor::new(t))),
        Input::File(p) => {
            Some(Box::new(std::fs::File::open(&p).map_err(|e| {
                RemoteError::Io(format!("cannot read {}: {e}", p.display()))
            })?))
        }
    };
    let done = agent_team_pane::procs::run_bounded_io(
        c,
        agent_team_pane::procs::BoundedIo {
            input,
            stdout: true,
            keep_stderr: STDERR_KEEP,
        },
        timeout,
    )
    .map_err(|e| RemoteError::Io(format!("cannot start {program}: {e}")))?;
    if done.timed_out {
        return Err(RemoteError::Timeout {
            what: program,
            after: timeout,
        });
    }
    Ok(Output {
        code: done.status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
    })
}

/// How much of an ssh call's stderr is kept: its last lines say why it failed.
const STDERR_KEEP: usize = 64 * 1024;
