//! Log files rotated by size, the daemon's and the agents' alike: `daemon.log` (or
//! `logs/NAME.log`) grows to a cap, then becomes `daemon.log.1` (the older ones shift to `.2`,
//! `.3`; the oldest goes), so a log never takes more than (keep + 1) × cap bytes. A process
//! whose stderr (and stdout) is the log has them follow the current file, so a panic or a
//! stray `eprintln!` lands where the log is read.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The size at which a log is rotated.
pub const LOG_CAP_BYTES: u64 = 8 * 1024 * 1024;
/// How many rotated files are kept beside the current one.
pub const LOG_KEEP: u32 = 3;

/// A size-rotated log file, shared by every writer of the process.
#[derive(Debug, Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
    keep: u32,
    /// Whether fd 2 is the log and must follow each rotation.
    stderr: bool,
    /// Whether fd 1 is the log and must follow each rotation.
    stdout: bool,
    /// Bytes not written because the write failed (a full disk) since the last that was.
    dropped: u64,
}

impl RotatingLog {
    /// Opens (appending) the log at `path`, rotated at `cap` bytes with `keep` old files;
    /// `stderr` makes fd 2 follow the current file.
    pub fn open(path: &Path, cap: u64, keep: u32, stderr: bool) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file,
                size,
                cap: cap.max(1024),
                keep,
                stderr,
                stdout: false,
                dropped: 0,
            })),
        })
    }

    /// Makes fd 1 follow the current file too (a process whose stdout is its log).
    pub fn with_stdout(self) -> Self {
        if let Ok(mut inner) = self.inner.lock() {
            inner.stdout = true;
        }
        self
    }

    /// The size at which logs rotate: `AGENT_TEAM_LOG_CAP_BYTES` when set to a number, else
    /// [`LOG_CAP_BYTES`].
    pub fn cap_from_env() -> u64 {
        std::env::var("AGENT_TEAM_LOG_CAP_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(LOG_CAP_BYTES)
    }

    /// Whether this process's stderr is the file at `path` (the daemon was started by the CLI,
    /// which points its stderr at `daemon.log`; a worker by the process backend, which points
    /// both its stdout and stderr at `logs/NAME.log`).
    pub fn stderr_is(path: &Path) -> bool {
        let (Ok(log), Ok(err)) = (
            std::fs::metadata(path),
            nix::sys::stat::fstat(std::io::stderr()),
        ) else {
            return false;
        };
        log.dev() == err.st_dev && log.ino() == err.st_ino
    }
}

impl Inner {
    fn rotate(&mut self) -> std::io::Result<()> {
        for i in (1..self.keep).rev() {
            let from = numbered(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, i + 1))?;
            }
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        if self.stderr {
            let _ = nix::unistd::dup2_stderr(&self.file);
        }
        if self.stdout {
            let _ = nix::unistd::dup2_stdout(&self.file);
        }
        Ok(())
    }
}

fn numbered(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(buf.len());
        };
        if inner.size > 0 && inner.size + buf.len() as u64 > inner.cap {
            // A rotation that fails (a full disk) keeps writing to the current file.
            let _ = inner.rotate();
        }
        // A log is never why its process fails: a write that fails (a full disk) is dropped
        // and counted, and the next one that goes through says how much was lost.
        if inner.dropped > 0 {
            let note = format!(
                "[agent-team: {} bytes of log were dropped: the disk was full or failing]\n",
                inner.dropped
            );
            if inner.file.write_all(note.as_bytes()).is_err() {
                inner.dropped += buf.len() as u64;
                return Ok(buf.len());
            }
            inner.size += note.len() as u64;
            inner.dropped = 0;
        }
        match inner.file.write(buf) {
            Ok(n) => {
                inner.size += n as u64;
                Ok(n)
            }
            Err(_) => {
                inner.dropped += buf.len() as u64;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Ok(mut inner) = self.inner.lock() {
            let _ = inner.file.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_full_disk_drops_log_lines_and_counts_them_instead_of_failing_the_writer() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let mut log = RotatingLog::open(Path::new("/dev/full"), 1 << 20, 0, false).unwrap();
        assert_eq!(log.write(b"one\n").unwrap(), 4);
        log.write_all(b"two\n").unwrap();
        log.flush().unwrap();
        assert_eq!(log.inner.lock().unwrap().dropped, 8);
        // Room again (here: the file swapped for a writable one): the loss is said first.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        log.inner.lock().unwrap().file = File::create(&path).unwrap();
        log.write_all(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[agent-team: 8 bytes of log were dropped: the disk was full or failing]\nthree\n"
        );
        assert_eq!(log.inner.lock().unwrap().dropped, 0);
    }

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut log = RotatingLog::open(&path, 1024, 2, false).unwrap();
        let line = [b'x'; 100];
        for _ in 0..100 {
            log.write_all(&line).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 1024);
        assert!(size(&numbered(&path, 1)) > 0 && size(&numbered(&path, 2)) > 0);
        assert!(!numbered(&path, 3).exists(), "only two old files are kept");
        let total: u64 = [path.clone(), numbered(&path, 1), numbered(&path, 2)]
            .iter()
            .map(|p| size(p))
            .sum();
        assert!(total <= 3 * 1024, "{total}");
    }
}
