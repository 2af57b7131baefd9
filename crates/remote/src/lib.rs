//! Teammates on other machines over OpenSSH.
//!
//! One link per host and team: an ssh master connection (multiplexing on a control socket in
//! the team's runtime dir) carrying a Unix-socket forward of the daemon's socket to a fresh
//! path on the host, each generation its own (sshd does not unlink a stale socket), with the
//! stable name `daemon.sock` a symlink to the newest. Agents on the host are started headless
//! under `setsid` (their own process group), their secret written over ssh's standard input
//! into a 0600 file the worker deletes after reading; watched and stopped with one ssh call
//! per host. Nothing of ours listens on TCP. [`RemoteBackend`] is the pane backend for remote
//! agents and [`Routed`] puts it beside the team's local backend.
//!
//! The host's layout, under `[ssh] dir` (default `~/.cache/agent-team`): `run/TEAM/` (0700:
//! the forwarded sockets, the secrets, each agent's run script, pid and exit status),
//! `home/` (the agents' `AGENT_TEAM_HOME`: their logs), `bin/KEY/agent-team-worker` (a
//! copied worker, keyed by version and hash), `work/TEAM/NAME` (a member's default workspace).

mod backend;
mod link;
mod placement;
mod routing;
mod scripts;
pub mod ssh;
mod worktrees;

pub use backend::RemoteBackend;
pub use routing::Routed;
pub use ssh::{LocalSsh, OpenSsh, Ssh};

use std::path::PathBuf;
use std::time::Duration;

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// ssh could not reach or log in to the host (exit 255).
    #[error("cannot reach host {host} over ssh: {message}")]
    Unreachable {
        /// The ssh destination.
        host: String,
        /// What ssh said.
        message: String,
    },
    /// The host was reached but refused what was asked (a missing directory, no worker).
    #[error("host {host}: {message}")]
    Host {
        /// The ssh destination.
        host: String,
        /// What went wrong there.
        message: String,
    },
    /// A local file or process could not be used.
    #[error("{0}")]
    Io(String),
    /// A command did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// The program.
        what: String,
        /// The limit.
        after: Duration,
    },
}

/// What the remote backend knows of its team: where the daemon listens, where links keep
/// their control sockets, and the team file's `[ssh]`.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// The team's name (its directory on each host).
    pub team: String,
    /// The argv prefix of every ssh call.
    pub ssh: Vec<String>,
    /// `[ssh] worker`: the worker's path on the hosts.
    pub worker: Option<String>,
    /// `[ssh] dir`: where agent-team keeps its files on a host (`~/` is the host's home).
    pub dir: Option<String>,
    /// The daemon's socket, forwarded to each host.
    pub daemon_socket: PathBuf,
    /// A private (0700) local directory for the links' control sockets and logs.
    pub control_dir: PathBuf,
    /// The local worker, copied to a host without one when their `uname -sm` match.
    pub local_worker: Option<PathBuf>,
    /// The team's secrets file (0600, beside the daemon's socket), sent to each host once per
    /// link so its agents' commands get them as local ones do.
    pub secrets_file: Option<PathBuf>,
    /// The team's git repository (its workspace, when it is one): a remote member given no
    /// workspace works in a worktree of it on its host, fetched back here.
    pub repo: Option<PathBuf>,
    /// The team's agents live in tmux panes here: a remote one runs in a private tmux server
    /// on its host (when it has tmux), and its pane here attaches to it.
    pub panes: bool,
}

/// The default of `[ssh] dir`.
pub const DEFAULT_DIR: &str = "~/.cache/agent-team";

/// The environment variable telling a worker it runs on a remote host.
pub use agent_team_pane::env::HOST as ENV_HOST;

/// `dir` as a shell word that the host's shell expands (`~/x` → `"$HOME"/'x'`).
fn dir_word(dir: Option<&str>) -> String {
    let dir = dir.unwrap_or(DEFAULT_DIR);
    match dir.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", agent_team_pane::shell_quote(rest)),
        None if dir == "~" => "\"$HOME\"".to_string(),
        None => agent_team_pane::shell_quote(dir),
    }
}

/// What a host answered when its link was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// The absolute `[ssh] dir` there.
    pub root: String,
    /// `uname -sm` there.
    pub uname: String,
    /// The worker found there (configured or on `PATH`), if any.
    pub worker: Option<String>,
    /// tmux there, if it has one.
    pub tmux: Option<String>,
}

impl HostInfo {
    /// Parses the probe's `key=value` lines.
    fn parse(text: &str) -> HostInfo {
        let mut h = HostInfo::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k {
                "root" => h.root = v.to_string(),
                "uname" => h.uname = v.to_string(),
                "worker" if !v.is_empty() => h.worker = Some(v.to_string()),
                "tmux" if !v.is_empty() => h.tmux = Some(v.to_string()),
                _ => {}
            }
        }
        h
    }
}

/// The key of this build's worker on hosts: the version and the start of its SHA-256, so a
/// copy is made once per build and a different binary never hides behind a matching name.
pub fn worker_key(worker: &std::path::Path) -> Result<String, RemoteError> {
    use sha2::Digest;
    let mut f = std::fs::File::open(worker)
        .map_err(|e| RemoteError::Io(format!("cannot read {}: {e}", worker.display())))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        use std::io::Read;
        let n = f
            .read(&mut buf)
            .map_err(|e| RemoteError::Io(format!("cannot read {}: {e}", worker.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{hex}", env!("CARGO_PKG_VERSION")))
}

/// This machine's `uname -sm`, to tell whether its worker runs on a host.
pub fn local_uname() -> String {
    std::process::Command::new("uname")
        .arg("-sm")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Checks that every host in `hosts` can be reached and can run a worker, before anything of
/// the team starts (`up`): one clear error naming the host and what to do.
pub fn check_hosts(settings: &RemoteSettings, hosts: &[String]) -> Result<(), RemoteError> {
    let ssh = OpenSsh::new(settings.ssh.clone());
    let mine = local_uname();
    for host in hosts {
        let info = placement::probe(&ssh, settings, host)?;
        placement::choose_worker(settings, host, &info, &mine)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
