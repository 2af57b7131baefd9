//! Ending the CLI once a shutdown request was carried out: the CLI may not end by itself (an
//! interactive one waits for its next input), so it is signalled; the marker tells the worker
//! that waits for the CLI that this end is the agent's finish, however the CLI took the signal.

use agent_team_worker::idle;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// How one launch of a CLI is ended.
#[derive(Debug, Default)]
pub(crate) struct CliEnd {
    /// The CLI's process (the bridge's parent; 0 until known).
    pub(crate) pid: AtomicI32,
    /// The CLI's private home, where [`idle::shutdown_marker`] goes.
    pub(crate) home: Option<std::path::PathBuf>,
    /// Ended already.
    done: AtomicBool,
}

impl CliEnd {
    /// The end of the CLI whose private home is `home`.
    pub(crate) fn new(home: &std::path::Path) -> Self {
        CliEnd {
            home: Some(home.to_path_buf()),
            ..CliEnd::default()
        }
    }

    /// Leaves the marker, then asks the CLI to end (`SIGTERM`); once.
    pub(crate) fn end(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(home) = &self.home {
            let marker = idle::shutdown_marker(home);
            if let Err(e) = std::fs::write(&marker, b"") {
                tracing::warn!("cannot write {}: {e}", marker.display());
            }
        }
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 1 {
            use nix::sys::signal::{Signal, kill};
            if let Err(e) = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM) {
                tracing::warn!("cannot end the CLI (pid {pid}): {e}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ending_the_cli_leaves_the_marker_and_signals_it_once() {
        use std::os::unix::process::ExitStatusExt;
        let home = tempfile::tempdir().unwrap();
        let mut cli = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let end = CliEnd::new(home.path());
        end.pid.store(cli.id() as i32, Ordering::SeqCst);
        end.end();
        let status = cli.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(nix::sys::signal::Signal::SIGTERM as i32)
        );
        assert!(idle::take_shutdown_marker(home.path()));
        end.end();
        assert!(
            !idle::take_shutdown_marker(home.path()),
            "ended once: no second marker"
        );
        // An end that knows no CLI ends nothing.
        CliEnd::default().end();
    }
}
