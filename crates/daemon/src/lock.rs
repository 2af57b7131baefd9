//! The daemon's lock file: held exclusively for the daemon's whole life, so a second daemon for
//! the same team is refused and a crashed daemon's leftovers are recognised as stale.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live daemon holds it.
    #[error(
        "a daemon for this team is already running (pid {pid}); use it, or stop it with `agent-team down`"
    )]
    Held {
        /// The pid recorded by the holder, or 0 if unreadable.
        pid: u32,
    },
    /// The lock file could not be opened or written.
    #[error("cannot use lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// An exclusive lock on the team's lock file; released when dropped or when the process dies.
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// Takes the lock without waiting and records this process's pid in the file.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes its pid just after taking the lock: give it that moment,
                // so the refusal names a real process rather than "pid 0".
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
                let pid = loop {
                    let mut s = String::new();
                    let _ = file.seek(SeekFrom::Start(0));
                    let _ = file.read_to_string(&mut s);
                    match s.trim().parse::<u32>() {
                        Ok(pid) if pid != 0 => break pid,
                        _ if std::time::Instant::now() > deadline => break 0,
                        _ => std::thread::sleep(std::time::Duration::from_millis(1)),
                    }
                };
                return Err(LockError::Held { pid });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Written over what is there, padded to a fixed width, never truncated to nothing: a
        // file system mounted with `discard` and no journal discards a freed block at once (a
        // truncate to zero cost 60-100 µs here, docs/BENCHMARKS.md, stop 59). Readers trim.
        // Not synced: the pid is for live processes of this boot (see
        // `agent_team_paths::mark_stopped`).
        use std::os::unix::fs::FileExt as _;
        let pid = format!("{:<width$}", std::process::id(), width = PID_WIDTH);
        file.write_all_at(pid.as_bytes(), 0).map_err(io)?;
        file.set_len(PID_WIDTH as u64).map_err(io)?;
        Ok(DaemonLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Whether a live daemon holds the lock at `path` right now (without taking it for long).
    pub fn is_held(path: &Path) -> bool {
        agent_team_paths::lock_held(path)
    }

    /// The pid recorded in the lock file at `path`, if any.
    pub fn recorded_pid(path: &Path) -> Option<u32> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DaemonLock {
    /// Blanks the pid (spaces over it, see [`DaemonLock::acquire`]) and lets go of the lock.
    fn drop(&mut self) {
        use std::os::unix::fs::FileExt as _;
        let _ = self.file.write_all_at(&[b' '; PID_WIDTH], 0);
        let _ = self.file.unlock();
    }
}

/// The width the pid is written in: the most digits a `u32` has.
const PID_WIDTH: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.lock");
        let l = DaemonLock::acquire(&p).unwrap();
        assert!(DaemonLock::is_held(&p));
        match DaemonLock::acquire(&p) {
            Err(LockError::Held { pid }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(l);
        assert!(!DaemonLock::is_held(&p));
        assert_eq!(
            DaemonLock::recorded_pid(&p),
            None,
            "a released lock names nobody"
        );
        let _again = DaemonLock::acquire(&p).unwrap();
        assert_eq!(DaemonLock::recorded_pid(&p), Some(std::process::id()));
    }

    #[test]
    fn a_longer_pid_left_by_an_older_build_is_written_over_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.lock");
        std::fs::write(&p, "4294967295999\n").unwrap();
        let _l = DaemonLock::acquire(&p).unwrap();
        assert_eq!(DaemonLock::recorded_pid(&p), Some(std::process::id()));
    }
}
