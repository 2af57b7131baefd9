//! Notifications (`[notify]` in the team file): when someone should look (a permission request,
//! an agent that failed, a budget warning, the end of the run), the team file's command runs
//! with the event's envelope as JSON on stdin; without one, the leader's pane rings its bell and
//! `notify-send` shows a desktop notification when it is on the PATH.
//!
//! The core only queues a job (never waits): one thread of its own runs them in order, each
//! bounded by the timeout. A full queue drops the job with a log line rather than hold the core.

use agent_team_pane::{Launched, PaneBackend};
use agent_team_protocol::{AgentStatus, Envelope, Event};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// Jobs waiting for a `JobThread` at most.
const QUEUE: usize = 256;

/// How long `notify-send` may take.
const DESKTOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether an event is one to notify about.
pub(crate) fn wanted(event: &Event) -> bool {
    matches!(
        event,
        Event::PermissionRequested { .. }
            | Event::BudgetWarning { .. }
            | Event::RunFinished { .. }
            | Event::AgentStatus {
                status: AgentStatus::Failed,
                ..
            }
    )
}

/// The event's kind as `[notify]` documents it (`permission_requested`, `agent_failed`,
/// `budget_warning`, `run_finished`).
pub(crate) fn kind(event: &Event) -> &'static str {
    match event {
        Event::PermissionRequested { .. } => "permission_requested",
        Event::BudgetWarning { .. } => "budget_warning",
        Event::RunFinished { .. } => "run_finished",
        Event::AgentStatus { .. } => "agent_failed",
        _ => "event",
    }
}

/// One line saying what happened, for the bell's status message and the desktop.
pub(crate) fn summary(env: &Envelope) -> String {
    let text = match &env.event {
        Event::PermissionRequested { request } => format!(
            "{} asks to run {}: {}",
            request.agent,
            request.tool,
            agent_team_protocol::text::printable(&short(&request.input, 120))
        ),
        Event::BudgetWarning { budget } => format!(
            "the budget of {} is at {} %",
            budget.scope(),
            budget.percent
        ),
        Event::RunFinished { success: true, .. } => "the run finished".to_string(),
        Event::RunFinished { answer, .. } => format!("the run failed: {}", short(answer, 120)),
        Event::AgentStatus { detail, .. } => format!(
            "{} failed{}",
            env.agent_id,
            detail
                .as_deref()
                .map(|d| format!(": {}", short(d, 120)))
                .unwrap_or_default()
        ),
        other => other.type_name().to_string(),
    };
    format!("agent-team {}: {text}", env.team_id)
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Where a notification goes.
pub(crate) enum Target {
    /// The team file's command, given the envelope on stdin.
    Command {
        /// The `sh -c` line.
        line: String,
        /// How long it may run.
        timeout: Duration,
        /// Where it runs (the team's workspace).
        dir: PathBuf,
        /// The team's sandbox (none: `sandbox = "off"`).
        sandbox: Option<std::sync::Arc<agent_team_sandbox::Boundary>>,
    },
    /// The leader's pane's bell (when it has one) and the desktop.
    Bell {
        /// The backend and the leader's pane.
        pane: Option<(Arc<dyn PaneBackend>, Launched)>,
    },
}

/// One notification to give.
pub(crate) struct Job {
    /// The event, as JSON.
    pub envelope: String,
    /// Its kind (see [`kind`]).
    pub kind: &'static str,
    /// One line about it.
    pub summary: String,
    /// Where it goes.
    pub target: Target,
}

/// A bounded queue to a thread of its own, started at the first job, that runs jobs in order
/// (`serve`) until the queue is dropped: the core hands work to it without ever waiting. One
/// home for the command/bell notifications and the chat sinks' posts. The queue holds boxes:
/// its slots are all allocated when the thread starts (256 jobs of ~200 bytes were 51 KB of
/// the daemon's heap from its first notification on).
pub(crate) struct JobThread<T> {
    name: &'static str,
    serve: fn(std::sync::mpsc::Receiver<Box<T>>),
    tx: Option<SyncSender<Box<T>>>,
    /// Says the thread has run every queued job and ended.
    done: Option<std::sync::mpsc::Receiver<()>>,
    /// Jobs dropped because the queue was full.
    pub(crate) dropped: u64,
}

impl<T: Send + 'static> JobThread<T> {
    /// A queue whose thread, `name`, runs `serve` over the jobs.
    pub(crate) fn new(name: &'static str, serve: fn(std::sync::mpsc::Receiver<Box<T>>)) -> Self {
        JobThread {
            name,
            serve,
            tx: None,
            done: None,
            dropped: 0,
        }
    }

    /// Queues a job without waiting; gives it back when the queue is full or the thread
    /// cannot be started (the caller says so in the log).
    pub(crate) fn send(&mut self, job: T) -> Result<(), T> {
        if self.tx.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            let (done_tx, done) = std::sync::mpsc::channel();
            let serve = self.serve;
            match std::thread::Builder::new()
                .name(self.name.into())
                .spawn(move || {
                    serve(rx);
                    let _ = done_tx.send(());
                }) {
                Ok(_) => {
                    self.tx = Some(tx);
                    self.done = Some(done);
                }
                Err(e) => {
                    tracing::warn!("cannot start the {} thread: {e}", self.name);
                    return Err(job);
                }
            }
        }
        let Some(tx) = &self.tx else {
            return Err(job);
        };
        match tx.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => {
                self.dropped += 1;
                Err(*job)
            }
            Err(TrySendError::Disconnected(job)) => {
                self.tx = None;
                Err(*job)
            }
        }
    }

    /// Lets the thread run what is queued, for at most `limit`.
    pub(crate) fn finish(&mut self, limit: Duration) {
        self.tx = None;
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(limit);
        }
    }
}

/// The queue to the notification thread, started at the first job.
pub(crate) struct Notifier {
    jobs: JobThread<Job>,
    /// The chat sinks' queue (`[notify] slack_webhook`, `discord_webhook`, `webhook`).
    chat: crate::chat::Chat,
    /// The webhook URLs the team file gave itself, by key: the stored configuration has
    /// `[hidden]` in their place (`agent_team_config::hide_notify_urls`).
    pub(crate) literals: std::collections::BTreeMap<&'static str, String>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            jobs: JobThread::new("notify", serve),
            chat: crate::chat::Chat::default(),
            literals: Default::default(),
        }
    }
}

impl Notifier {
    /// At the daemon's stop: lets the thread run what is queued (the run's end among it), for
    /// at most `limit`, so the last notifications are not lost to the exit.
    pub(crate) fn finish(&mut self, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        self.jobs.finish(limit);
        self.chat
            .finish(until.saturating_duration_since(std::time::Instant::now()));
    }

    /// Queues `env` for the chat sinks `notify` sets (none: nothing), without waiting.
    pub(crate) fn chat(
        &mut self,
        notify: &agent_team_config::Notify,
        env: &Envelope,
        paths: &agent_team_paths::TeamPaths,
    ) {
        let sinks = crate::chat::Sink::of(notify);
        if sinks.is_empty() {
            return;
        }
        self.chat.send(crate::chat::ChatJob {
            env: env.clone(),
            sinks,
            literals: self.literals.clone(),
            secrets_file: paths.secrets.clone(),
            board: notify.board_url.clone(),
            serve_file: paths.socket.parent().map(agent_team_paths::serve_url_file),
            timeout: Duration::from_secs(notify.timeout_secs.max(1)),
        });
    }

    /// Queues a job without waiting; drops it (with a log line) when the queue is full or the
    /// thread cannot be started.
    pub(crate) fn send(&mut self, job: Job) {
        if let Err(job) = self.jobs.send(job) {
            tracing::warn!(kind = job.kind, "notifications are backed up; one dropped");
        }
    }
}

/// The notification thread: runs jobs in order until the core goes away.
fn serve(rx: Receiver<Box<Job>>) {
    while let Ok(job) = rx.recv() {
        match &job.target {
            Target::Command {
                line,
                timeout,
                dir,
                sandbox,
            } => {
                if let Err(e) = run_command(line, &job, *timeout, dir, sandbox.as_deref()) {
                    tracing::warn!(kind = job.kind, "the [notify] command failed: {e}");
                }
            }
            Target::Bell { pane } => {
                if let Some((backend, leader)) = pane {
                    backend.bell(leader, &job.summary);
                }
                if let Some(exe) = on_path("notify-send") {
                    let mut cmd = Command::new(exe);
                    cmd.args(["-a", "agent-team", "agent-team", &job.summary]);
                    if let Err(e) = run_bounded(cmd, None, DESKTOP_TIMEOUT) {
                        tracing::debug!("notify-send failed: {e}");
                    }
                }
            }
        }
    }
}

/// Runs the `[notify]` command in the team's sandbox (a script it names is a workspace file)
/// with a clean environment, the envelope on stdin and `AGENT_TEAM_NOTIFY` set to the event's
/// kind.
fn run_command(
    line: &str,
    job: &Job,
    timeout: Duration,
    dir: &Path,
    sandbox: Option<&agent_team_sandbox::Boundary>,
) -> std::io::Result<()> {
    let mut cmd = crate::confine::shell(line, dir, sandbox);
    cmd.env("AGENT_TEAM_NOTIFY", job.kind);
    run_bounded(cmd, Some(job.envelope.as_bytes()), timeout)
}

/// Runs a command with `input` on stdin through the one bounded runner
/// ([`agent_team_pane::procs::run_bounded`]): its own process group, killed past `timeout` or
/// with the daemon.
fn run_bounded(cmd: Command, input: Option<&[u8]>, timeout: Duration) -> std::io::Result<()> {
    let timeout = timeout.min(crate::clock::MAX_WAIT);
    let done = agent_team_pane::procs::run_bounded(cmd, input.map(<[u8]>::to_vec), timeout, 0)?;
    match done.status {
        _ if done.timed_out => Err(std::io::Error::other(format!(
            "it ran longer than {} s and was killed",
            timeout.as_secs()
        ))),
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(std::io::Error::other(format!("it ended with {status}"))),
        None => Err(std::io::Error::other("it could not be waited for")),
    }
}

/// A program's path when it is on the PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_protocol::Timestamp;

    fn env(event: Event) -> Envelope {
        Envelope {
            seq: 7,
            ts: Timestamp(1),
            team_id: "t".into(),
            agent_id: "w1".into(),
            role_name: "worker".into(),
            event,
        }
    }

    #[test]
    fn the_four_kinds_are_wanted_and_nothing_else() {
        let failed = Event::AgentStatus {
            status: AgentStatus::Failed,
            incarnation: 1,
            detail: Some("exit 1".into()),
        };
        assert!(wanted(&failed));
        assert_eq!(kind(&failed), "agent_failed");
        assert!(summary(&env(failed)).contains("w1 failed: exit 1"));
        let done = Event::RunFinished {
            answer: "42".into(),
            success: true,
        };
        assert!(wanted(&done));
        assert_eq!(kind(&done), "run_finished");
        assert!(!wanted(&Event::AgentStatus {
            status: AgentStatus::Idle,
            incarnation: 1,
            detail: None,
        }));
        assert!(!wanted(&Event::Error {
            message: "x".into()
        }));
    }

    #[test]
    fn a_command_gets_the_envelope_on_stdin_and_a_slow_one_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let job = |line: String| {
            Job {
                envelope: "{\"seq\":7}".into(),
                kind: "run_finished",
                summary: "s".into(),
                target: Target::Bell { pane: None },
            }
            .with_line(line)
        };
        let j = job(format!(
            "cat > {}; echo $AGENT_TEAM_NOTIFY >> {}",
            out.display(),
            out.display()
        ));
        let Target::Command { line, timeout, .. } = &j.target else {
            unreachable!()
        };
        run_command(line, &j, *timeout, dir.path(), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"seq\":7}run_finished\n"
        );
        let started = std::time::Instant::now();
        let e =
            run_command("sleep 30", &j, Duration::from_millis(200), dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(run_command("exit 3", &j, Duration::from_secs(5), dir.path(), None).is_err());
    }

    impl Job {
        fn with_line(mut self, line: String) -> Job {
            self.target = Target::Command {
                line,
                timeout: Duration::from_secs(5),
                dir: PathBuf::from("/"),
                sandbox: None,
            };
            self
        }
    }
}
