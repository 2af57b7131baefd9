//! Bringing a crashed daemon back without anyone at the keyboard: an agent's worker, the relay
//! of a CLI teammate and the daemon's guardian each hold a [`Healer`]; when the daemon goes away
//! and its lock is free they start it again with the same race-safe start as the CLI (any
//! number may race, one daemon takes the lock). A daemon stopped on purpose (`down`, the end of
//! `run`, SIGTERM) leaves the clean-stop marker ([`TeamPaths::stopped`]), and then nobody brings
//! it back: the healer says [`Healed::Stopped`], and a daemon started by a healer checks the
//! marker again under the lock ([`ENV_HEAL`]), so a `down` racing a healer always wins.
//!
//! A team whose files were deleted (its state dir, its database or its runtime dir gone, or
//! replaced by others) is not brought back either: the healer compares what the paths resolve
//! to with the [`TeamFiles`] it knew and says [`Healed::Gone`], and a healer's daemon refuses to
//! start where the state dir or the database is missing (issue 70).

use crate::autostart::{StartError, daemon_running, start};
use agent_team_paths::{Paths, TeamPaths};
use std::path::PathBuf;

/// Set on a daemon a healer starts: it refuses to start (and leaves the marker) when the team
/// was stopped on purpose, checked once it holds the lock.
pub const ENV_HEAL: &str = "AGENT_TEAM_HEAL";

/// The `agent-team` executable a healer starts the daemon with (given to each agent's launch).
pub const ENV_DAEMON_EXE: &str = "AGENT_TEAM_DAEMON_EXE";

/// The variables of the daemon's own environment a healer hands to the daemon it starts, so it
/// runs with the same locations and settings (given to each agent's launch by the daemon).
pub const DAEMON_ENV: [&str; 7] = [
    agent_team_paths::ENV_HOME,
    agent_team_paths::ENV_RUNTIME_DIR,
    agent_team_paths::ENV_TMUX_SOCKET,
    "AGENT_TEAM_PERMISSION_TIMEOUT",
    "AGENT_TEAM_WORKER",
    "AGENT_TEAM_LOG",
    "AGENT_TEAM_LOG_CAP_BYTES",
];

/// Set in the guardian's environment by the daemon it guards: the daemon's [`TeamFiles`]
/// ([`TeamFiles::encode`]), so the guardian brings back only a team whose files are the ones
/// its daemon ran on.
pub const ENV_GUARDED_FILES: &str = "AGENT_TEAM_GUARDED_FILES";

/// Set on a daemon a healer starts, with the [`TeamFiles`] the healer knew: the daemon serves
/// those only (files deleted and made again since are another team's).
pub const ENV_HEAL_FILES: &str = "AGENT_TEAM_HEAL_FILES";

/// What a heal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Healed {
    /// A daemon answers (this healer's, another starter's, or one that never went away).
    Running,
    /// The team was stopped on purpose: nobody may bring it back.
    Stopped,
    /// The team's files were deleted (or replaced): there is no team to bring back.
    Gone,
}

/// Which files a team runs on: the identity (the device, and the file handle or else the inode)
/// of its state dir, its database and its runtime dir. A team whose paths resolve to others
/// (deleted, or deleted and made again) is not the team a daemon served: its daemon stops and
/// nobody brings it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamFiles {
    dir: (u64, u64),
    db: (u64, u64),
    runtime: (u64, u64),
}

impl TeamFiles {
    /// What `tp`'s state dir, database and runtime dir are now; `None` when one is missing.
    pub fn of(tp: &TeamPaths) -> Option<Self> {
        let runtime = tp.lock.parent()?;
        Some(TeamFiles {
            dir: file_id(&tp.dir)?,
            db: file_id(&tp.db)?,
            runtime: file_id(runtime)?,
        })
    }

    /// Whether `tp`'s paths still resolve to these files.
    pub fn still_there(&self, tp: &TeamPaths) -> bool {
        TeamFiles::of(tp) == Some(*self)
    }

    /// Whether `tp`'s runtime dir is still this one (its files may be cleaned up, its
    /// clean-stop marker written).
    pub fn runtime_still_there(&self, tp: &TeamPaths) -> bool {
        tp.lock.parent().and_then(file_id) == Some(self.runtime)
    }

    /// The form [`ENV_GUARDED_FILES`] carries: six numbers separated by `:`.
    pub fn encode(&self) -> String {
        let (a, b, c) = (self.dir, self.db, self.runtime);
        format!("{}:{}:{}:{}:{}:{}", a.0, a.1, b.0, b.1, c.0, c.1)
    }

    /// Reads [`TeamFiles::encode`]'s form; `None` when it is not that.
    pub fn parse(s: &str) -> Option<Self> {
        let n: Vec<u64> = s
            .split(':')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        match n[..] {
            [a, b, c, d, e, f] => Some(TeamFiles {
                dir: (a, b),
                db: (c, d),
                runtime: (e, f),
            }),
            _ => None,
        }
    }
}

/// The file `path` resolves to, if it exists: its device and its file handle's digest (the
/// inode number and the generation the file system gave that inode when it was made), or its
/// inode number where the file system gives no handles. An inode number alone is not enough:
/// a directory deleted and made again at once often gets the number back (ext4 did in CI).
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), handle_digest(path).unwrap_or(m.ino())))
}

/// The first 8 bytes of the SHA-256 of `path`'s file handle (`name_to_handle_at(2)`: its type
/// and bytes); `None` when the file system has none to give.
fn handle_digest(path: &std::path::Path) -> Option<u64> {
    use sha2::Digest as _;
    use std::os::unix::ffi::OsStrExt as _;
    /// `MAX_HANDLE_SZ`: the most bytes a file handle takes.
    const MAX_HANDLE: usize = 128;
    /// `struct file_handle` with room for the largest handle.
    #[repr(C)]
    struct Handle {
        bytes: libc::c_uint,
        kind: libc::c_int,
        data: [u8; MAX_HANDLE],
    }
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut handle = Handle {
        bytes: MAX_HANDLE as libc::c_uint,
        kind: 0,
        data: [0; MAX_HANDLE],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `name` is a NUL-terminated string; `handle` is a `struct file_handle` whose
    // `handle_bytes` says the room after its header (the kernel writes at most that many
    // bytes there), and `mount_id` a place for one int; all live across the call.
    #[allow(unsafe_code)]
    let done = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            name.as_ptr(),
            (&raw mut handle).cast::<libc::file_handle>(),
            &raw mut mount_id,
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    let len = usize::try_from(handle.bytes).ok()?;
    let data = handle.data.get(..len).filter(|_| done == 0)?;
    let mut hash = sha2::Sha256::new();
    hash.update(handle.kind.to_le_bytes());
    hash.update(data);
    let digest = hash.finalize();
    Some(u64::from_le_bytes(digest.get(..8)?.try_into().ok()?))
}

/// What a healer needs: where the team lives, the executable, the daemon's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healer {
    tp: TeamPaths,
    exe: PathBuf,
    env: Vec<(String, String)>,
    /// The team's files as this healer first saw them (`None`: they were not all there).
    files: Option<TeamFiles>,
}

impl Healer {
    /// A healer for `team` under `paths`, starting `exe`, with the daemon's environment `env`;
    /// it brings back only the team whose files are there now ([`TeamFiles`]).
    pub fn new(
        paths: &Paths,
        team: &str,
        exe: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<Self, agent_team_paths::PathError> {
        let tp = paths.team(team)?;
        let files = TeamFiles::of(&tp);
        Ok(Healer {
            tp,
            exe,
            env,
            files,
        })
    }

    /// This healer bringing back only the team that runs on `files` (a guardian is told them
    /// by its daemon: by the time it heals, the paths may name others).
    pub fn with_files(mut self, files: TeamFiles) -> Self {
        self.files = Some(files);
        self
    }

    /// Whether the team's files are still the ones this healer knew (or, when it knew none,
    /// whether the state dir and the database are there now).
    pub fn files_there(&self) -> bool {
        match &self.files {
            Some(f) => f.still_there(&self.tp),
            None => self.tp.dir.is_dir() && self.tp.db.is_file(),
        }
    }

    /// The variables a daemon gives each agent's launch so its worker can heal: the executable
    /// and the daemon's own [`DAEMON_ENV`], its locations always.
    pub fn launch_env(paths: &Paths, exe: Option<PathBuf>) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(exe) = exe {
            v.push((ENV_DAEMON_EXE.to_string(), exe.display().to_string()));
        }
        v.push((
            agent_team_paths::ENV_HOME.to_string(),
            paths.home.display().to_string(),
        ));
        v.push((
            agent_team_paths::ENV_RUNTIME_DIR.to_string(),
            paths.runtime.display().to_string(),
        ));
        for k in &DAEMON_ENV[2..] {
            if let Some(val) = std::env::var(k).ok().filter(|v| !v.is_empty()) {
                v.push((k.to_string(), val));
            }
        }
        v
    }

    /// The healer an agent's launch describes (see [`Healer::launch_env`]) for `team`; `None`
    /// when the launch carries no executable (an agent inside the daemon, an MCP server in the
    /// sandbox).
    pub fn from_lookup(team: &str, get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let exe = get(ENV_DAEMON_EXE).filter(|v| !v.is_empty())?;
        let home = get(agent_team_paths::ENV_HOME).filter(|v| !v.is_empty())?;
        let runtime = get(agent_team_paths::ENV_RUNTIME_DIR).filter(|v| !v.is_empty())?;
        let env: Vec<(String, String)> = DAEMON_ENV
            .iter()
            .filter_map(|k| get(k).filter(|v| !v.is_empty()).map(|v| (k.to_string(), v)))
            .collect();
        Healer::new(&Paths::new(home, runtime), team, PathBuf::from(exe), env).ok()
    }

    /// The team's files.
    pub fn team_paths(&self) -> &TeamPaths {
        &self.tp
    }

    /// Whether the team was stopped on purpose (its clean-stop marker is there).
    pub fn stopped(&self) -> bool {
        self.tp.stopped.exists()
    }

    /// Makes sure the daemon runs unless the team was stopped on purpose or its files are
    /// gone. Blocking (up to the start deadline of [`crate::ensure_daemon`]); `Err` when no
    /// daemon could be started.
    pub fn heal(&self) -> Result<Healed, StartError> {
        if self.stopped() {
            return Ok(Healed::Stopped);
        }
        if daemon_running(&self.tp) {
            return Ok(Healed::Running);
        }
        if !self.files_there() {
            return Ok(Healed::Gone);
        }
        let mut env = self.env.clone();
        env.push((ENV_HEAL.to_string(), "1".to_string()));
        if let Some(files) = &self.files {
            env.push((ENV_HEAL_FILES.to_string(), files.encode()));
        }
        match start(&self.tp, &self.exe, &env, true, false, None) {
            Ok(pid) => {
                if let Some(pid) = pid {
                    eprintln!(
                        "agent-team: brought the daemon of team {} back (pid {pid})",
                        self.tp.team
                    );
                }
                Ok(Healed::Running)
            }
            // A `down` won the race: its marker is there now.
            Err(_) if self.stopped() => Ok(Healed::Stopped),
            // The files went meanwhile (the daemon refused to start without them).
            Err(_) if !self.files_there() => Ok(Healed::Gone),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_team_stopped_on_purpose_is_never_brought_back() {
        let dir = std::env::temp_dir().join(format!("heal-test-{}", std::process::id()));
        let paths = Paths::new(dir.join("home"), dir.join("run"));
        paths.ensure_runtime().unwrap();
        let tp = paths.team("t").unwrap();
        tp.ensure_dirs().unwrap();
        std::fs::write(&tp.db, "").unwrap();
        // An executable that would fail loudly if it were started.
        let h = Healer::new(
            &paths,
            "t",
            PathBuf::from("/nonexistent/agent-team"),
            vec![],
        )
        .unwrap();
        agent_team_paths::mark_stopped(&h.team_paths().stopped).unwrap();
        assert_eq!(h.heal().unwrap(), Healed::Stopped);
        agent_team_paths::clear_stopped(&h.team_paths().stopped).unwrap();
        assert!(
            h.heal().is_err(),
            "without the marker it tries to start the daemon"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_team_whose_files_are_gone_or_replaced_is_never_brought_back() {
        let dir = std::env::temp_dir().join(format!("heal-gone-{}", std::process::id()));
        let paths = Paths::new(dir.join("home"), dir.join("run"));
        paths.ensure_runtime().unwrap();
        let tp = paths.team("t").unwrap();
        tp.ensure_dirs().unwrap();
        std::fs::write(&tp.db, "").unwrap();
        let files = TeamFiles::of(&tp).unwrap();
        assert_eq!(TeamFiles::parse(&files.encode()), Some(files));
        assert_eq!(TeamFiles::parse("1:2:3"), None);
        // An executable that would fail loudly if it were started.
        let exe = PathBuf::from("/nonexistent/agent-team");
        let h = Healer::new(&paths, "t", exe.clone(), vec![]).unwrap();
        assert!(h.files_there());
        assert!(h.heal().is_err(), "with its files there it tries to start");
        // The state dir deleted and made again (a new team of the same name): not this team.
        std::fs::remove_dir_all(&tp.dir).unwrap();
        assert_eq!(h.heal().unwrap(), Healed::Gone);
        tp.ensure_dirs().unwrap();
        std::fs::write(&tp.db, "").unwrap();
        assert!(!files.still_there(&tp));
        assert!(files.runtime_still_there(&tp));
        assert_eq!(h.heal().unwrap(), Healed::Gone);
        // A guardian told the new files heals them; the runtime dir deleted, it does not.
        let g = Healer::new(&paths, "t", exe, vec![])
            .unwrap()
            .with_files(TeamFiles::of(&tp).unwrap());
        assert!(g.heal().is_err());
        std::fs::remove_dir_all(&paths.runtime).unwrap();
        assert_eq!(g.heal().unwrap(), Healed::Gone);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_launch_describes_a_healer_with_the_daemons_locations() {
        let paths = Paths::new("/h", "/r");
        let env = Healer::launch_env(&paths, Some(PathBuf::from("/bin/agent-team")));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let h = Healer::from_lookup("t", get).unwrap();
        assert_eq!(h.team_paths().lock, PathBuf::from("/r/t.lock"));
        assert_eq!(h.team_paths().stopped, PathBuf::from("/r/t.stopped"));
        assert!(Healer::from_lookup("t", |_| None).is_none());
    }
}
