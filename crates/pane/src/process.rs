//! The headless backend: each agent is a child process in its own process group, its output
//! appended to a per-agent log file (`agent-team logs NAME`).

use crate::procs::{is_zombie, pid_alive, stop_group};
use crate::{ExitInfo, LaunchSpec, Launched, Liveness, PaneBackend, PaneError};
use std::collections::HashMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Children are kept so they can be reaped and their exit status read.
#[derive(Default)]
pub struct ProcessBackend {
    children: Mutex<HashMap<u32, Child>>,
}

impl ProcessBackend {
    /// A backend with no children yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn reap(&self, pid: u32) -> Option<ExitInfo> {
        let mut children = self.children.lock().ok()?;
        let child = children.get_mut(&pid)?;
        match child.try_wait() {
            Ok(Some(status)) => {
                children.remove(&pid);
                Some(ExitInfo {
                    code: status.code(),
                    signal: status.signal(),
                })
            }
            _ => None,
        }
    }
}

impl PaneBackend for ProcessBackend {
    fn agents_are_children(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "process"
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let io = |what: String| move |source| PaneError::Io { what, source };
        // The log's own directory only: the team's state dir deleted is not made again (its
        // daemon is stopping the team, issue 70).
        if let Some(dir) = spec.log.parent().filter(|d| !d.is_dir()) {
            std::fs::create_dir(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(io(format!("cannot open {}", spec.log.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io("cannot duplicate the log file".into()))?;
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| PaneError::Tool("empty command line".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        for k in &spec.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &spec.env {
            if k == crate::env::SECRET {
                // The secret goes in a 0600 file the agent removes once read, never in its
                // environment: its task commands could read that in /proc/PID/environ.
                let file = spec.log.with_file_name(format!(".{}.secret", spec.name));
                crate::write_private(&file, v)
                    .map_err(io(format!("cannot write {}", file.display())))?;
                cmd.env(crate::env::SECRET_FILE, &file);
            } else {
                cmd.env(k, v);
            }
        }
        let child = cmd.spawn().map_err(|source| PaneError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id();
        if let Ok(mut c) = self.children.lock() {
            c.insert(pid, child);
        }
        Ok(Launched {
            container: None,
            pid,
            pgid: Some(pid),
            pane: None,
            host: None,
        })
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        let pgid = target.pgid.unwrap_or(target.pid);
        let result = stop_group(pgid, grace, || {
            self.reap(target.pid);
        });
        self.reap(target.pid);
        result
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        if let Some(exit) = self.reap(target.pid) {
            return Liveness::Exited(exit);
        }
        let ours = self
            .children
            .lock()
            .map(|c| c.contains_key(&target.pid))
            .unwrap_or(false);
        if ours {
            return Liveness::Alive;
        }
        // Adopted after a daemon restart: not our child, so only existence can be checked.
        if pid_alive(target.pid) && !is_zombie(target.pid) {
            Liveness::Alive
        } else {
            Liveness::Exited(ExitInfo::default())
        }
    }

    fn forget(&self, target: &Launched) {
        self.reap(target.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::group_alive;

    fn spec(dir: &std::path::Path, script: &str) -> LaunchSpec {
        LaunchSpec {
            container: None,
            name: "a".into(),
            role: "r".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("X_TEST".into(), "42".into())],
            env_remove: vec![],
            secret_env: Vec::new(),
            cwd: dir.to_path_buf(),
            log: dir.join("logs/a.log"),
            title: "a".into(),
            color: None,
            host: None,
        }
    }

    #[test]
    fn output_goes_to_the_log_and_exit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let b = ProcessBackend::new();
        let l = b
            .spawn(&spec(dir.path(), "echo hello $X_TEST; exit 3"))
            .unwrap();
        let exit = loop {
            if let Liveness::Exited(e) = b.liveness(&l) {
                break e;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(exit.code, Some(3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("logs/a.log")).unwrap(),
            "hello 42\n"
        );
    }

    #[test]
    fn stop_kills_the_whole_group_even_when_term_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let b = ProcessBackend::new();
        // A child that ignores SIGTERM, with a grandchild in the same group.
        let l = b
            .spawn(&spec(dir.path(), "trap '' TERM; sleep 30 & sleep 30"))
            .unwrap();
        let pgid = l.pgid.unwrap();
        assert!(group_alive(pgid));
        b.stop(&l, Duration::from_millis(100)).unwrap();
        assert!(!group_alive(pgid));
        assert!(matches!(b.liveness(&l), Liveness::Exited(_)));
    }
}
