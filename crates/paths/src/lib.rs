//! Where agent-team keeps things: the state root (`AGENT_TEAM_HOME`), the runtime dir for sockets
//! and locks (`AGENT_TEAM_RUNTIME_DIR`), and the per-team files inside them.
//!
//! Every path the daemon, the CLI and the workers agree on is computed here, once.

pub mod logfile;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable overriding the state root.
pub const ENV_HOME: &str = "AGENT_TEAM_HOME";
/// Environment variable overriding the runtime dir.
pub const ENV_RUNTIME_DIR: &str = "AGENT_TEAM_RUNTIME_DIR";
/// Environment variable holding `agent-team serve`'s bearer token: never passed on to a
/// daemon (whose agents' commands must not find it in `/proc/PID/environ`).
pub const ENV_API_TOKEN: &str = "AGENT_TEAM_API_TOKEN";
/// Environment variable naming the file descriptor (a pipe's writing end) on which a daemon
/// started by the client's autostart says it listens (it closes the pipe) or why it could not
/// start; no child of the daemon is given it.
pub const ENV_START_FD: &str = "AGENT_TEAM_START_FD";
/// Environment variable naming the file descriptor (a pipe's reading end) whose writing end the
/// daemon's starter holds while it follows the team and brings a crashed daemon back itself
/// (`run`): while it is open the daemon starts no guardian; at its end of file (the starter
/// gone, the team not stopped on purpose) the daemon starts one.
pub const ENV_STARTER_GUARD_FD: &str = "AGENT_TEAM_STARTER_GUARD_FD";
/// Environment variable overriding the tmux socket path of the team's private tmux server.
pub const ENV_TMUX_SOCKET: &str = "AGENT_TEAM_TMUX_SOCKET";

/// The longest path a Unix socket may have on Linux (`sun_path` minus the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why a path could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Neither the override nor the platform's base directories gave a location.
    #[error("cannot find a home directory for agent-team state (set {ENV_HOME})")]
    NoHome,
    /// A directory could not be created or secured.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying failure.
        source: io::Error,
    },
    /// The runtime dir belongs to someone else, so its sockets cannot be trusted.
    #[error(
        "{path} is owned by uid {owner}, not by you (uid {me}); set {ENV_RUNTIME_DIR} to a private directory"
    )]
    NotOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current uid.
        me: u32,
    },
    /// The socket path would not fit in a `sockaddr_un`.
    #[error(
        "socket path {0} is longer than {MAX_SOCKET_PATH} bytes; set {ENV_RUNTIME_DIR} to a shorter directory"
    )]
    SocketPathTooLong(PathBuf),
    /// The team name is not valid.
    #[error("{0}")]
    BadName(String),
}

/// The resolved locations for one machine user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Durable state root (one directory per team below `teams/`).
    pub home: PathBuf,
    /// Private runtime dir (0700) for sockets, locks and credentials.
    pub runtime: PathBuf,
}

/// The files of one team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamPaths {
    /// The team's name.
    pub team: String,
    /// The team's state directory.
    pub dir: PathBuf,
    /// The SQLite database.
    pub db: PathBuf,
    /// Per-agent output logs.
    pub logs: PathBuf,
    /// The daemon's own log.
    pub daemon_log: PathBuf,
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    /// The lock file the daemon holds for its whole life.
    pub lock: PathBuf,
    /// The operator credential (0600).
    pub operator_secret: PathBuf,
    /// The socket of the team's private tmux server.
    pub tmux_socket: PathBuf,
    /// The values of the team's secrets (0600, JSON), written by whoever starts the team and
    /// read by each agent as it starts; never in the state dir (docs/SECURITY.md).
    pub secrets: PathBuf,
    /// The clean-stop marker: written by a daemon that stops on purpose (`down`,
    /// the end of `run`, SIGTERM) before its socket goes away, removed by the next daemon that
    /// starts. Whoever would bring a crashed daemon back leaves a team that has it stopped.
    pub stopped: PathBuf,
}

/// The dir of `agent`'s egress proxy socket in team `team` whose runtime dir is `runtime`
/// (`<runtime>/<team>.net/<agent>`): the daemon serves the socket there, the agent's sandbox
/// binds the dir in (one dir per agent, so the daemon knows who asks).
pub fn net_dir(runtime: &Path, team: &str, agent: &str) -> PathBuf {
    runtime.join(format!("{team}.net")).join(agent)
}

/// The clean-stop marker of `team` whose runtime dir is `runtime` (see [`TeamPaths::stopped`]).
pub fn stopped_file(runtime: &Path, team: &str) -> PathBuf {
    runtime.join(format!("{team}.stopped"))
}

/// Writes the clean-stop marker at `path`. Like every file of the runtime dir it is not synced:
/// it speaks to processes that run beside the daemon, which a crash of the daemon leaves running
/// (the file is in the OS cache) and a power cut ends (and the runtime dir is normally a tmpfs).
pub fn mark_stopped(path: &Path) -> Result<(), io::Error> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    Ok(())
}

/// Removes the clean-stop marker at `path` (a daemon is starting); a missing one is fine.
pub fn clear_stopped(path: &Path) -> Result<(), io::Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The secrets file of `team` whose runtime dir is `runtime` (see [`TeamPaths::secrets`]); an
/// agent finds it beside its daemon's socket.
pub fn secrets_file(runtime: &Path, team: &str) -> PathBuf {
    runtime.join(format!("{team}.secrets.json"))
}

/// Where a running `agent-team serve` writes its base address (`http://HOST:PORT`) in the
/// runtime dir `runtime`: the daemon links a permission request's notification to its board.
pub fn serve_url_file(runtime: &Path) -> PathBuf {
    runtime.join("serve.url")
}

/// The home dir every sandboxed command of the team whose state dir is `team_dir` gets, at
/// the operator's `$HOME` path (its package caches persist there between commands; nothing
/// of the operator's home is in it).
pub fn sandbox_home(team_dir: &Path) -> PathBuf {
    team_dir.join("sandbox-home")
}

impl Paths {
    /// Resolves the locations from the environment (see the module docs).
    pub fn from_env() -> Result<Self, PathError> {
        let home = match std::env::var_os(ENV_HOME) {
            Some(h) if !h.is_empty() => PathBuf::from(h),
            _ => {
                let base = directories::BaseDirs::new().ok_or(PathError::NoHome)?;
                base.state_dir()
                    .unwrap_or_else(|| base.data_local_dir())
                    .join("agent-team")
            }
        };
        let runtime = match std::env::var_os(ENV_RUNTIME_DIR) {
            Some(r) if !r.is_empty() => PathBuf::from(r),
            _ => match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(x) if !x.is_empty() => PathBuf::from(x).join("agent-team"),
                _ => PathBuf::from(format!("/tmp/agent-team-{}", current_uid())),
            },
        };
        Ok(Paths { home, runtime })
    }

    /// Explicit locations (tests, benches).
    pub fn new(home: impl Into<PathBuf>, runtime: impl Into<PathBuf>) -> Self {
        Paths {
            home: home.into(),
            runtime: runtime.into(),
        }
    }

    /// The directory holding every team's state.
    pub fn teams_dir(&self) -> PathBuf {
        self.home.join("teams")
    }

    /// The files of `team`; the name is validated so it can never escape the directories.
    pub fn team(&self, team: &str) -> Result<TeamPaths, PathError> {
        agent_team_protocol::names::validate("team", team).map_err(PathError::BadName)?;
        let dir = self.teams_dir().join(team);
        let socket = self.runtime.join(format!("{team}.sock"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(PathError::SocketPathTooLong(socket));
        }
        let tmux_socket = match std::env::var_os(ENV_TMUX_SOCKET) {
            Some(s) if !s.is_empty() => PathBuf::from(s),
            _ => self.runtime.join(format!("{team}.tmux")),
        };
        Ok(TeamPaths {
            team: team.to_string(),
            db: dir.join("state.db"),
            logs: dir.join("logs"),
            daemon_log: dir.join("daemon.log"),
            dir,
            lock: self.runtime.join(format!("{team}.lock")),
            operator_secret: self.runtime.join(format!("{team}.operator")),
            secrets: secrets_file(&self.runtime, team),
            stopped: stopped_file(&self.runtime, team),
            socket,
            tmux_socket,
        })
    }

    /// Creates the runtime dir with mode 0700, or checks and tightens an existing one.
    pub fn ensure_runtime(&self) -> Result<(), PathError> {
        ensure_private_dir(&self.runtime)
    }

    /// Names of teams that have a state directory, sorted.
    pub fn list_teams(&self) -> Vec<String> {
        let mut teams: Vec<String> = fs::read_dir(self.teams_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| agent_team_protocol::names::is_valid_team(n))
                    .collect()
            })
            .unwrap_or_default();
        teams.sort();
        teams
    }
}

impl TeamPaths {
    /// Creates the team's state and log directories (0700).
    pub fn ensure_dirs(&self) -> Result<(), PathError> {
        ensure_private_dir(&self.dir)?;
        ensure_private_dir(&self.logs)
    }

    /// The output log of one agent.
    pub fn agent_log(&self, agent: &str) -> PathBuf {
        self.logs.join(format!("{agent}.log"))
    }

    /// The private home of an external agent CLI teammate (its `HOME` and config dir, seeded
    /// before each launch), so the user's own `~/.claude`, `~/.codex`, `~/.qwen` are never
    /// read or written.
    pub fn cli_home(&self, agent: &str) -> PathBuf {
        self.dir.join("clis").join(agent)
    }
}

/// The real uid of this process.
pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Creates `dir` (and parents) with mode 0700; an existing dir must be ours and is chmod'ed 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathError> {
    let io_err = |source| PathError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(io_err(e)),
    }
    let meta = fs::metadata(dir).map_err(io_err)?;
    let me = current_uid();
    if meta.uid() != me {
        return Err(PathError::NotOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    Ok(())
}

/// A fresh random secret: 32 bytes as 64 hex characters.
pub fn new_secret() -> Result<String, io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Below this many free bytes the disk holding a team's state counts as full.
pub const LOW_DISK_BYTES: u64 = 1024 * 1024;

/// Bytes an unprivileged writer may still use on the filesystem holding `path` (the nearest
/// existing ancestor's), or `None` if it cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = nix::sys::statvfs::statvfs(existing).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Whether some process holds the exclusive lock on the file at `path` right now (a team's
/// daemon running or starting). Takes the lock for an instant if it is free.
pub fn lock_held(path: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

/// Waits until nobody holds the lock at `path` (a daemon lets go of it as it ends), at most
/// `timeout`; true when let go. A thread blocks on a shared lock of its own, taken and let go
/// at once, so the wait ends the moment the holder lets go, not at a poll; on a timeout it is
/// left blocked and ends with the lock (or this process).
pub fn wait_lock_released(path: &Path, timeout: std::time::Duration) -> bool {
    let Ok(file) = fs::OpenOptions::new().read(true).open(path) else {
        return true;
    };
    // Let go already (the holder has exited): no thread to wait in.
    if file.try_lock_shared().is_ok() {
        let _ = file.unlock();
        return true;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("lock-wait".into())
        .spawn(move || {
            let free = file.lock_shared().is_ok();
            let _ = file.unlock();
            let _ = tx.send(free);
        });
    if spawned.is_err() {
        return !lock_held(path);
    }
    rx.recv_timeout(timeout).unwrap_or(false)
}

/// Writes a secret file readable only by the owner (0600), replacing any old one atomically.
/// Not synced: secret files live in the runtime dir, read only by processes of the same boot
/// (see [`mark_stopped`]).
pub fn write_secret_file(path: &Path, secret: &str) -> Result<(), io::Error> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    fs::rename(&tmp, path)
}

/// Reads a secret file written by [`write_secret_file`].
pub fn read_secret_file(path: &Path) -> Result<String, io::Error> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_wait_ends_when_the_holder_lets_go_and_not_before() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("daemon.lock");
        let holder = fs::File::create(&path).unwrap();
        holder.lock().unwrap();
        assert!(!wait_lock_released(
            &path,
            std::time::Duration::from_millis(50)
        ));
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                wait_lock_released(&path, std::time::Duration::from_secs(30))
            })
        };
        holder.unlock().unwrap();
        assert!(waiter.join().unwrap());
        assert!(wait_lock_released(
            &tmp.path().join("none"),
            std::time::Duration::ZERO
        ));
    }

    #[test]
    fn runtime_dir_is_private_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let p = Paths::new(tmp.path().join("home"), tmp.path().join("run"));
        p.ensure_runtime().unwrap();
        let mode = fs::metadata(&p.runtime).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&p.runtime, fs::Permissions::from_mode(0o755)).unwrap();
        p.ensure_runtime().unwrap();
        let mode = fs::metadata(&p.runtime).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn team_names_cannot_escape() {
        let p = Paths::new("/h", "/r");
        assert!(p.team("../x").is_err());
        assert!(p.team("a/b").is_err());
        let t = p.team("web").unwrap();
        assert_eq!(t.socket, PathBuf::from("/r/web.sock"));
        assert_eq!(t.db, PathBuf::from("/h/teams/web/state.db"));
    }

    #[test]
    fn secrets_are_random_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let a = new_secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_secret().unwrap());
        let f = tmp.path().join("s");
        write_secret_file(&f, &a).unwrap();
        assert_eq!(read_secret_file(&f).unwrap(), a);
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
