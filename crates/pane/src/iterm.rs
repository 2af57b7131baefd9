//! The iTerm2 backend (macOS): one iTerm2 session (pane) per agent, driven with AppleScript via
//! `osascript`. It cannot run on Linux, so its tests check the exact scripts it would run
//! through a fake [`Osascript`]; it has never been run against a real iTerm2 in CI.
//!
//! Each session runs the user's shell (iTerm2's default profile) and the agent is typed into
//! it as one short command (` /bin/sh FILE`, FILE a 0600 script holding the agent's command
//! line), so the session outlives the agent: its last output stays visible, and a restart
//! types the next incarnation into the same session instead of opening another pane. The
//! shell's job control gives the agent its own process group, which is what `stop` signals.
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

/// What [`select_script`] prints when the session no longer exists.
const MISSING: &str = "missing";

/// The script that brings session `sid` to the front: its window raised, its tab and the
/// session selected, iTerm2 activated. Prints `ok`, or `missing` when there is no such session.
pub fn select_script(sid: &str) -> String {
    format!(
        "tell application \"iTerm2\"\n  repeat with w in windows\n    repeat with t in tabs of w\n      repeat with s in sessions of t\n        if (id of s as text) is {} then\n          select w\n          select t\n          select s\n          activate\n          return \"ok\"\n        end if\n      end repeat\n    end repeat\n  end repeat\nend tell\nreturn \"{MISSING}\"",
        applescript_quote(sid)
    )
}

/// Brings an agent's session to the front (`agent-team attach` for an iTerm2 team).
pub fn select_session(osa: &dyn Osascript, sid: &str) -> Result<(), PaneError> {
    match osa.run(&select_script(sid)) {
        Ok(out) if out == MISSING => Err(PaneError::Tool(format!(
            "iTerm2 has no session {sid} (it was closed)"
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(PaneError::Tool(format!(
            "osascript (iTerm2's AppleScript): {e}"
        ))),
    }
}

/// Agents in iTerm2 sessions: the first opens a window, the others split it.
pub struct ItermBackend<O: Osascript> {
    osa: O,
    secret_dir: PathBuf,
    first: Mutex<Option<String>>,
}

impl<O: Osascript> ItermBackend<O> {
    /// A backend that runs scripts with `osa`; agents' secret and launch files go to
    /// `secret_dir`.
    pub fn new(osa: O, secret_dir: PathBuf) -> Self {
        ItermBackend {
            osa,
            secret_dir,
            first: Mutex::new(None),
        }
    }

    /// Writes `spec`'s command line to a 0600 file and returns what is typed into its
    /// session to run it: short, the same in every shell, with no value on screen. The leading
    /// space keeps it out of shells' history (bash `ignorespace`, zsh `HIST_IGNORE_SPACE`).
    fn typed_line(&self, spec: &LaunchSpec) -> Result<String, PaneError> {
        let line = exec_line(spec, &self.secret_dir)?;
        let file = self.secret_dir.join(format!(".{}.launch.sh", spec.name));
        crate::write_private(&file, &format!("{line}\n")).map_err(|source| PaneError::Io {
            what: format!("cannot write {}", file.display()),
            source,
        })?;
        Ok(format!(
            " /bin/sh {}",
            crate::shell_quote(&file.display().to_string())
        ))
    }

    /// The script that opens a session for an agent titled `title` and types `typed` into it:
    /// a new window without `first`, else a split of session `first`. Prints the session id.
    pub fn spawn_script(first: Option<&str>, typed: &str, title: &str) -> String {
        let typed = applescript_quote(typed);
        let title = applescript_quote(title);
        match first {
            None => format!(
                "tell application \"iTerm2\"\n  set w to (create window with default profile)\n  tell current session of w\n    set name to {title}\n    write text {typed}\n    return id as text\n  end tell\nend tell"
            ),
            Some(sid) => format!(
                "{FIND_SESSION}set s to findSession({})\ntell application \"iTerm2\"\n  tell s\n    set n to (split vertically with default profile)\n  end tell\n  tell n\n    set name to {title}\n    write text {typed}\n    return id as text\n  end tell\nend tell",
                applescript_quote(sid)
            ),
        }
    }

    /// The script that types `typed` into the existing session `sid` (a restart in the same
    /// pane). Prints the session id, or nothing when the session is gone.
    pub fn respawn_script(sid: &str, typed: &str, title: &str) -> String {
        format!(
            "{FIND_SESSION}set s to findSession({})\nif s is missing value then return \"\"\ntell application \"iTerm2\"\n  tell s\n    set name to {}\n    write text {}\n    return id as text\n  end tell\nend tell",
            applescript_quote(sid),
            applescript_quote(title),
            applescript_quote(typed)
        )
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

    fn launched(sid: String) -> Launched {
        Launched {
            container: None,
            pid: 0,
            pgid: None,
            pane: Some(sid),
            host: None,
        }
    }
}

impl<O: Osascript> PaneBackend for ItermBackend<O> {
    fn kind(&self) -> &'static str {
        "iterm2"
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let typed = self.typed_line(spec)?;
        let first = self.first.lock().ok().and_then(|f| f.clone());
        let sid = match self
            .osa
            .run(&Self::spawn_script(first.as_deref(), &typed, &spec.title))
        {
            Ok(s) => s,
            // The first session is gone: open a new window.
            Err(_) if first.is_some() => self
                .osa
                .run(&Self::spawn_script(None, &typed, &spec.title))
                .map_err(PaneError::Tool)?,
            Err(e) => return Err(PaneError::Tool(e)),
        };
        if let Ok(mut f) = self.first.lock()
            && f.is_none()
        {
            *f = Some(sid.clone());
        }
        Ok(Self::launched(sid))
    }

    /// The next incarnation is typed into the agent's own session (its shell outlived the old
    /// process); only when that session is gone does it get a new pane. A session whose shell
    /// was exited by hand ignores the text: that agent never connects back, is stopped (its
    /// session closed) and the restart after that opens a new pane.
    fn respawn(&self, spec: &LaunchSpec, previous: &Launched) -> Result<Launched, PaneError> {
        let Some(sid) = &previous.pane else {
            return self.spawn(spec);
        };
        let typed = self.typed_line(spec)?;
        match self
            .osa
            .run(&Self::respawn_script(sid, &typed, &spec.title))
        {
            Ok(out) if !out.is_empty() => Ok(Self::launched(out)),
            // Closed (by hand, or stopped before its pid was known): a new pane.
            _ => self.spawn(spec),
        }
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        match target.pgid {
            // The agent's job only: the session's shell stays for a restart.
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
            container: None,
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

    /// The text typed into a session for `name` under `dir`.
    fn typed(dir: &std::path::Path, name: &str) -> String {
        format!(
            " /bin/sh {}",
            dir.join(format!(".{name}.launch.sh")).display()
        )
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
        assert_eq!(
            scripts[0],
            format!(
                "tell application \"iTerm2\"\n  set w to (create window with default profile)\n  tell current session of w\n    set name to \"leader · worker\"\n    write text {}\n    return id as text\n  end tell\nend tell",
                applescript_quote(&typed(dir.path(), "leader"))
            )
        );
        // The command line is in a private file, not typed (nor in the shell's history).
        let launch = dir.path().join(".leader.launch.sh");
        assert_eq!(
            std::fs::read_to_string(&launch).unwrap(),
            format!("{line}\n")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&launch).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            scripts[1].contains("set s to findSession(\"SID-1\")"),
            "{}",
            scripts[1]
        );
        assert!(
            scripts[1].contains("split vertically with default profile)"),
            "{}",
            scripts[1]
        );
        assert!(
            scripts[1].contains(&format!(
                "write text {}",
                applescript_quote(&typed(dir.path(), "b1"))
            )),
            "{}",
            scripts[1]
        );
        assert!(
            !scripts.iter().any(|s| s.contains("s3cr3t")),
            "the secret never appears in a script"
        );
        assert_eq!(std::fs::read_to_string(secret_file).unwrap(), "s3cr3t");
    }

    /// What is typed runs the agent: a shell given the typed text (as iTerm2's shell would
    /// read it) starts the spec's program with its environment.
    #[test]
    fn the_typed_line_runs_the_agent_with_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut s = spec("b1");
        s.argv = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "printf '%s %s' \"$AGENT_TEAM_NAME\" \"$(cat \"$AGENT_TEAM_SECRET_FILE\")\" > '{}'",
                out.display()
            ),
        ];
        let b = ItermBackend::new(Fake::default(), dir.path().to_path_buf());
        b.spawn(&s).unwrap();
        let status = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(typed(dir.path(), "b1"))
            .env("TMUX", "/tmp/x")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "b1 s3cr3t");
    }

    #[test]
    fn restart_types_the_next_incarnation_into_the_agents_own_session() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        fake.answers.lock().unwrap().push(Ok("SID-7".to_string()));
        let b = ItermBackend::new(fake.clone(), dir.path().to_path_buf());
        let previous = Launched {
            container: None,
            pid: 4242,
            pgid: Some(4242),
            pane: Some("SID-7".into()),
            host: None,
        };
        let l = b.respawn(&spec("b1"), &previous).unwrap();
        assert_eq!(l.pane.as_deref(), Some("SID-7"));
        assert_eq!(
            (l.pid, l.pgid),
            (0, None),
            "the new pid is learned at connect"
        );
        let scripts = fake.scripts.lock().unwrap();
        assert_eq!(scripts.len(), 1, "{scripts:?}");
        assert_eq!(
            scripts[0],
            format!(
                "{FIND_SESSION}set s to findSession(\"SID-7\")\nif s is missing value then return \"\"\ntell application \"iTerm2\"\n  tell s\n    set name to \"b1 · worker\"\n    write text {}\n    return id as text\n  end tell\nend tell",
                applescript_quote(&typed(dir.path(), "b1"))
            )
        );
        assert!(!scripts[0].contains("split"), "no new pane: {}", scripts[0]);
        assert!(!scripts[0].contains("create window"), "{}", scripts[0]);
    }

    #[test]
    fn restart_of_a_closed_session_opens_a_new_pane() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        // Answers are popped from the end: the respawn finds no session, the spawn opens one.
        fake.answers
            .lock()
            .unwrap()
            .extend([Ok("SID-8".to_string()), Ok(String::new())]);
        let b = ItermBackend::new(fake.clone(), dir.path().to_path_buf());
        let previous = Launched {
            container: None,
            pid: 0,
            pgid: None,
            pane: Some("SID-7".into()),
            host: None,
        };
        let l = b.respawn(&spec("b1"), &previous).unwrap();
        assert_eq!(l.pane.as_deref(), Some("SID-8"));
        let scripts = fake.scripts.lock().unwrap();
        assert_eq!(scripts.len(), 2, "{scripts:?}");
        assert!(scripts[0].contains("findSession(\"SID-7\")"));
        assert!(scripts[1].contains("create window with default profile"));
    }

    /// A stop of an agent whose process group is known signals that group only: the session
    /// (and its shell) stays for the restart.
    #[test]
    fn stopping_a_known_agent_keeps_its_session() {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        let b = ItermBackend::new(fake.clone(), dir.path().to_path_buf());
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let t = Launched {
            container: None,
            pid: child.id(),
            pgid: Some(child.id()),
            pane: Some("SID-3".into()),
            host: None,
        };
        b.stop(&t, Duration::from_secs(5)).unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the agent's group was signalled: {status}"
        );
        assert!(
            fake.scripts.lock().unwrap().is_empty(),
            "no script closed the session"
        );
    }

    #[test]
    fn attach_selects_the_agents_session_and_activates_iterm2() {
        let fake = Fake::default();
        fake.answers
            .lock()
            .unwrap()
            .extend([Ok("missing".to_string()), Ok("ok".to_string())]);
        select_session(&fake, "SID-5").unwrap();
        let err = select_session(&fake, "SID-6").unwrap_err().to_string();
        assert!(err.contains("no session SID-6"), "{err}");
        let scripts = fake.scripts.lock().unwrap();
        assert_eq!(scripts[0], select_script("SID-5"));
        assert!(
            scripts[0].contains("if (id of s as text) is \"SID-5\" then\n          select w\n          select t\n          select s\n          activate\n          return \"ok\""),
            "{}",
            scripts[0]
        );
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
            container: None,
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
