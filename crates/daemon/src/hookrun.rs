//! Running the team's hooks, apart from what they mean to the team ([`crate::hooks`]): what a
//! hook's process did ([`HookOutcome`]), the runner that starts one off the core
//! ([`HookRunner`]: the real [`ShellRunner`], a fake in the unit tests). It knows nothing of
//! the core or of what a hook means: `hooks::Hooks` holds the runner.

use agent_team_state::HookRun;
#[cfg(test)]
use agent_team_state::HookRunState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most of a hook's stderr kept (its end).
const STDERR_KEEP: usize = 16 * 1024;

/// What a hook's process did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookOutcome {
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// It ran past its timeout and its process group was killed.
    pub timed_out: bool,
    /// It did not run to an end: it could not start, or a daemon restart interrupted it.
    pub error: Option<String>,
    /// The end of its stderr.
    pub stderr: String,
}

/// Called once with a hook's outcome, on any thread.
pub type HookDone = Box<dyn FnOnce(HookOutcome) + Send>;

/// Runs hooks off the core; the core's unit tests use a fake.
pub trait HookRunner: Send + Sync {
    /// Starts `run` inside `sandbox` (none: `sandbox = "off"`) without waiting; `done` is
    /// called once with its outcome.
    fn start(
        &self,
        run: HookRun,
        sandbox: Option<Arc<agent_team_sandbox::Boundary>>,
        done: HookDone,
    );
}

/// The real runner: a thread per hook, `sh -c` in a process group of its own.
pub struct ShellRunner {
    /// The team, for `AGENT_TEAM_TEAM`.
    pub team: String,
}

impl HookRunner for ShellRunner {
    fn start(
        &self,
        run: HookRun,
        sandbox: Option<Arc<agent_team_sandbox::Boundary>>,
        done: HookDone,
    ) {
        let slot = Arc::new(Mutex::new(Some(done)));
        let theirs = slot.clone();
        let team = self.team.clone();
        let spawned = std::thread::Builder::new()
            .name("hook".into())
            .spawn(move || {
                // Whatever happens in here, the run ends with an outcome (a failure at worst),
                // so a held task is never left in progress.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_hook(&team, &run, sandbox.as_deref())
                }))
                .unwrap_or_else(|_| HookOutcome {
                    error: Some("the thread running it failed".into()),
                    ..Default::default()
                });
                if let Some(done) = theirs.lock().ok().and_then(|mut d| d.take()) {
                    done(outcome);
                }
            });
        if let Err(e) = spawned
            && let Some(done) = slot.lock().ok().and_then(|mut d| d.take())
        {
            done(HookOutcome {
                error: Some(format!("cannot start a thread for it: {e}")),
                ..Default::default()
            });
        }
    }
}

/// What a hook reads on stdin: the event's envelope, with the names Nyzhi's (and Claude
/// Code's) hooks read beside it: `hook_event_name` (the hook: `task_completed`, …),
/// `team_name`, and `teammate_name` when the event is about an agent. Added when the hook runs,
/// so a run stored by an older daemon gets them too.
fn hook_stdin(team: &str, run: &HookRun) -> Vec<u8> {
    match serde_json::from_str::<serde_json::Value>(&run.input) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.entry("hook_event_name")
                .or_insert_with(|| run.hook.clone().into());
            m.entry("team_name").or_insert_with(|| team.into());
            if let Some(agent) = &run.agent {
                m.entry("teammate_name")
                    .or_insert_with(|| agent.clone().into());
            }
            serde_json::to_vec(&m).unwrap_or_else(|_| run.input.clone().into_bytes())
        }
        _ => run.input.clone().into_bytes(),
    }
}

/// Runs one hook to its end or its timeout, inside `sandbox` with a clean environment (a hook
/// script is a workspace file, which agents write).
pub fn run_hook(
    team: &str,
    run: &HookRun,
    sandbox: Option<&agent_team_sandbox::Boundary>,
) -> HookOutcome {
    use std::os::unix::process::ExitStatusExt as _;
    let mut cmd = crate::confine::shell(&run.command, std::path::Path::new(&run.dir), sandbox);
    cmd.env("AGENT_TEAM_TEAM", team)
        .env("AGENT_TEAM_AGENT", run.agent.as_deref().unwrap_or(""))
        .env(
            "AGENT_TEAM_TASK_ID",
            run.task.map(|t| t.to_string()).unwrap_or_default(),
        )
        .env("AGENT_TEAM_HOOK_EVENT", &run.hook)
        .env(
            "AGENT_TEAM_EVENT_SEQ",
            run.event_seq.map(|s| s.to_string()).unwrap_or_default(),
        );
    // The one bounded runner: its own group, watched so it dies with the daemon even by
    // SIGKILL (a restarted daemon reports the interrupted hook and never runs it again, so
    // nothing may go on running), killed whole past its timeout.
    let timeout = Duration::from_secs(run.timeout_secs.max(1)).min(crate::clock::MAX_WAIT);
    let done = match agent_team_pane::procs::run_bounded(
        cmd,
        Some(hook_stdin(team, run)),
        timeout,
        STDERR_KEEP,
    ) {
        Ok(d) => d,
        Err(e) => {
            return HookOutcome {
                error: Some(format!("cannot start `sh -c`: {e}")),
                ..Default::default()
            };
        }
    };
    HookOutcome {
        exit_code: done.status.and_then(|s| s.code()),
        signal: done
            .status
            .and_then(|s| s.signal())
            .or(done.timed_out.then_some(9)),
        timed_out: done.timed_out,
        stderr: tail(&String::from_utf8_lossy(&done.stderr), STDERR_KEEP).to_string(),
        ..Default::default()
    }
}

/// The last `n` bytes of `s` (on a character boundary).
pub(crate) fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut at = s.len() - n;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// A runner for the core's unit tests: keeps what it was asked to run; the test ends each.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct FakeRunner {
    /// The runs started, with how to end each.
    pub(crate) started: Mutex<Vec<(HookRun, Option<HookDone>)>>,
}

#[cfg(test)]
impl HookRunner for FakeRunner {
    fn start(
        &self,
        run: HookRun,
        _sandbox: Option<Arc<agent_team_sandbox::Boundary>>,
        done: HookDone,
    ) {
        if let Ok(mut s) = self.started.lock() {
            s.push((run, Some(done)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(command: &str, timeout_secs: u64, dir: &std::path::Path) -> HookRun {
        HookRun {
            id: 1,
            hook: "run_finished".into(),
            event_seq: Some(7),
            index: 0,
            command: command.into(),
            timeout_secs,
            dir: dir.display().to_string(),
            input: "{\"seq\":7}".into(),
            agent: Some("w1".into()),
            task: Some(3),
            state: HookRunState::Started,
            held: None,
        }
    }

    #[test]
    fn a_hook_gets_stdin_env_and_cwd_and_its_stderr_and_code_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_hook(
            "t",
            &run(
                "cat > got; echo \"$AGENT_TEAM_TEAM $AGENT_TEAM_AGENT $AGENT_TEAM_TASK_ID \
                 $AGENT_TEAM_HOOK_EVENT $AGENT_TEAM_EVENT_SEQ\" > env; echo nope >&2; exit 2",
                5,
                dir.path(),
            ),
            None,
        );
        assert_eq!(out.exit_code, Some(2));
        assert_eq!(out.stderr, "nope\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("env")).unwrap(),
            "t w1 3 run_finished 7\n"
        );
        // The envelope, with the names Nyzhi's hooks read.
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("got")).unwrap())
                .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"seq": 7, "hook_event_name": "run_finished", "team_name": "t",
                "teammate_name": "w1"})
        );
    }

    #[test]
    fn a_slow_hook_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let out = run_hook("t", &run("sleep 30 & sleep 30", 1, dir.path()), None);
        assert!(out.timed_out, "{out:?}");
        assert_eq!(out.signal, Some(9));
        assert!(started.elapsed() < Duration::from_secs(10));
        let out = run_hook(
            "t",
            &run("exit 0", 1, std::path::Path::new("/nonexistent")),
            None,
        );
        assert_eq!(out.exit_code, Some(0));
    }
}
