//! The iTerm2 backend (macOS): one iTerm2 session (pane) per agent, driven with AppleScript via
//! `osascript`. It cannot run on Linux, so its tests check the exact scripts it would run
//! through a fake [`Osascript`].
//!
//! iTerm2 does not report a session's process id, so the agent's pid (and its process group)
//! is learned when the agent connects back; until then stopping it closes its session.

use crate::procs::{group_alive, stop_group};
use crate::{ExitInfo, LaunchSpec, Launched, Liveness, PaneBackend, PaneError, exec_line};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Runs one AppleScript and returns what it printed.
pub trait Osascript: Send + Sync {
    /// Runs `script`.
    fn run(&self, script: &str) -> Result<String, String>;
}

/// The real `osascript -e`.
pub struct RealOsascript;

impl Osascript for RealOsascript {
    fn run(&self, script: &str) -> Result<String, String> {
        let out = std::process::Command::new("osascript")
            .arg("-e")
            .arg(script)
            .output()
            .map_err(|e| format!("cannot run osascript: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

/// Quotes text for an AppleScript string literal.
pub fn applescript_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

const FIND_SESSION: &str = "on findSession(sid)
  tell application \"iTerm2\"
    repeat with w in windows
      repeat with t in tabs of w
        repeat with s in sessions of t
          if (id of s as text) is sid then return s
        end repeat
      end repeat
    end repeat
  end tell
  return missing value
end findSession
";

/// Agents in iTerm2 sessions: the first opens a window, the others split it.
pub struct ItermBackend<O: Osascript> {
    osa: O,
    secret_dir: PathBuf,
    first: Mutex<Option<String>>,
}

impl<O: Osascript> ItermBackend<O> {
    /// A backend that runs scripts with `osa`; agents' secret files go to `secret_dir`.
    pub fn new(osa: O, secret_dir: PathBuf) -> Self {
        ItermBackend {
            osa,
            secret_dir,
            first: Mutex::new(None),
        }
    }

    /// The script that starts `line` for an agent titled `title`.
    pub fn spawn_script(first: Option<&str>, line: &str, title: &str) -> String {
        let cmd = applescript_quote(&format!("/bin/sh -c {}", crate::shell_quote(line)));
        let title = applescript_quote(title);
        match first {
            None => format!(
                "tell application \"iTerm2\"\n  set w to (create window with default profile command {cmd})\n  tell current session of w\n    set name to {title}\n    return id as text\n  end tell\nend tell"
            ),
            Some(sid) => format!(
                "{FIND_SESSION}set s to findSession({})\ntell application \"iTerm2\"\n  tell s\n    set n to (split vertically with default profile command {cmd})\n  end tell\n  tell n\n    set name to {title}\n    return id as text\n  end tell\nend tell",
                applescript_quote(sid)
            ),
        }
    }

    /// The script that tells whether a session still exists (`true`/`false`).
    pub fn exists_script(sid: &str) -> String {
        format!(
            "{FIND_SESSION}return (findSession({}) is not missing value) as text",
            applescript_quote(sid)
        )
    }

    /// The script that closes a session.
    pub fn close_script(sid: &str) -> String {
        format!(
            "{FIND_SESSION}set s to findSession({})\nif s is not missing value then\n  tell application \"iTerm2\" to close s\nend if",
            applescript_quote(sid)
        )
    }
}

impl<O: Osascript> PaneBackend for ItermBackend<O> {
    fn kind(&self) -> &'static str {
        "iterm2"
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let line = exec_line(spec, &self.secret_dir)?;
        let first = self.first.lock().ok().and_then(|f| f.clone());
        let sid = match self
            .osa
            .run(&Self::spawn_script(first.as_deref(), &line, &spec.title))
        {
            Ok(s) => s,
            // The first session is gone: open a new window.
            Err(_) if first.is_some() => self
                .osa
                .run(&Self::spawn_script(None, &line, &spec.title))
                .map_err(PaneError::Tool)?,
            Err(e) => return Err(PaneError::Tool(e)),
        };
        if let Ok(mut f) = self.first.lock()
            && f.is_none()
        {
            *f = Some(sid.clone());
        }
        Ok(Launched {
            pid: 0,
            pgid: None,
            pane: Some(sid),
            host: None,
        })
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        match target.pgid {
            Some(pg) => stop_group(pg, grace, || {}),
            None => {
                if let Some(sid) = &target.pane {
                    self.osa
                        .run(&Self::close_script(sid))
                        .map_err(PaneError::Tool)?;
                }
                Ok(())
            }
        }
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        if let Some(pg) = target.pgid {
            return if group_alive(pg) {
                Liveness::Alive
            } else {
                Liveness::Exited(ExitInfo::default())
            };
        }
        let Some(sid) = &target.pane else {
            return Liveness::Unknown;
        };
        match self.osa.run(&Self::exists_script(sid)).as_deref() {
            Ok("true") => Liveness::Alive,
            Ok("false") => Liveness::Exited(ExitInfo::default()),
            _ => Liveness::Unknown,
        }
    }

    fn forget(&self, target: &Launched) {
        if let Some(sid) = &target.pane {
            let _ = self.osa.run(&Self::close_script(sid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Fake {
        scripts: Arc<Mutex<Vec<String>>>,
        answers: Arc<Mutex<Vec<Result<String, String>>>>,
    }

    impl Osascript for Fake {
        fn run(&self, script: &str) -> Result<String, String> {
            self.scripts.lock().unwrap().push(script.to_string());
            self.answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or(Ok(String::new()))
        }
    }

    fn spec(name: &str) -> LaunchSpec {
        LaunchSpec {
            name: name.into(),
            role: "worker".into(),
            argv: vec!["/opt/bin/agent-team-worker".into()],
            env: vec![
                ("AGENT_TEAM_NAME".into(), name.into()),
                ("AGENT_TEAM_SECRET".into(), "s3cr3t".into()),
            ],
            env_remove: vec!["TMUX".into()],
            secret_env: Vec::new(),
            cwd: "/w".into(),
            log: "/w/log".into(),
            title: format!("{name} · worker"),
            color: None,
            host: None,
        }
    }

    #[test]
    fn first_agent_opens_a_window_the_next_split_it() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        fake.answers
            .lock()
            .unwrap()
            .extend([Ok("SID-2".to_string()), Ok("SID-1".to_string())]);
        let b = ItermBackend::new(fake.clone(), dir.path().to_path_buf());
        let l1 = b.spawn(&spec("leader")).unwrap();
        let l2 = b.spawn(&spec("b1")).unwrap();
        assert_eq!(
            (l1.pane.as_deref(), l2.pane.as_deref()),
            (Some("SID-1"), Some("SID-2"))
        );
        let scripts = fake.scripts.lock().unwrap();
        let secret_file = dir.path().join(".leader.secret");
        let line = format!(
            "exec env -u TMUX AGENT_TEAM_NAME=leader AGENT_TEAM_SECRET_FILE={} /opt/bin/agent-team-worker",
            secret_file.display()
        );
        let cmd = applescript_quote(&format!("/bin/sh -c {}", crate::shell_quote(&line)));
        assert_eq!(
            scripts[0],
            format!(
                "tell application \"iTerm2\"\n  set w to (create window with default profile command {cmd})\n  tell current session of w\n    set name to \"leader · worker\"\n    return id as text\n  end tell\nend tell"
            )
        );
        assert!(
            scripts[1].contains("set s to findSession(\"SID-1\")"),
            "{}",
            scripts[1]
        );
        assert!(
            scripts[1].contains("split vertically with default profile command"),
            "{}",
            scripts[1]
        );
        assert!(
            !scripts.iter().any(|s| s.contains("s3cr3t")),
            "the secret never appears in a script"
        );
        assert_eq!(std::fs::read_to_string(secret_file).unwrap(), "s3cr3t");
    }

    #[test]
    fn liveness_and_stop_use_the_session_until_the_pid_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        fake.answers
            .lock()
            .unwrap()
            .extend([Ok("false".to_string()), Ok("true".to_string())]);
        let b = ItermBackend::new(fake.clone(), dir.path().to_path_buf());
        let t = Launched {
            pid: 0,
            pgid: None,
            pane: Some("SID-9".into()),
            host: None,
        };
        assert_eq!(b.liveness(&t), Liveness::Alive);
        assert!(matches!(b.liveness(&t), Liveness::Exited(_)));
        b.stop(&t, Duration::from_millis(10)).unwrap();
        let scripts = fake.scripts.lock().unwrap();
        assert!(
            scripts[0].ends_with("return (findSession(\"SID-9\") is not missing value) as text")
        );
        assert!(scripts[2].contains("tell application \"iTerm2\" to close s"));
    }
}
