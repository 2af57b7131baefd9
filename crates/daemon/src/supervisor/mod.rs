//! Agent lifecycle (SPEC §5.1): spawn with a connect-back deadline and roster rollback, exit
//! detection, the restart policy with exponential backoff and `failed` after five quick
//! failures, kill, restart in place, and the shutdown of the whole team.
//!
//! The [`Supervisor`] owns the agents' runtimes, the backend and the restart policy. It never
//! touches a connection, a timer or a thread: each call goes through a [`Step`] (the supervisor
//! plus the team state it updates) and returns [`Action`]s (answer a waiter, schedule a timer,
//! run a blocking backend [`Job`]) that the core carries out. Requests and process events are
//! applied in order on the core's thread, and each incarnation is numbered so a late event from
//! an old process cannot touch its successor. Jobs report back as [`SupEvent`]s.

use crate::clock::Clock;
use crate::outbox::ConnId;
use agent_team_config::{BackendKind, RestartPolicy, TeamConfig};
use agent_team_pane::{ExitInfo, LaunchSpec, Launched, Liveness, PaneBackend, env};
use agent_team_paths::TeamPaths;
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use agent_team_state::{Actor, AgentRecord, TeamState};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a spawned agent has to connect back (`AGENT_TEAM_CONNECT_DEADLINE_MS` overrides it,
/// for tests of the deadline itself).
pub fn connect_timeout() -> Duration {
    std::env::var("AGENT_TEAM_CONNECT_DEADLINE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(15))
}
/// How long an agent gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long an agent asked to shut down gets to exit on its own.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often live agents are checked (exits of our own children are also noticed at SIGCHLD).
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// While every launched agent is connected, only every this many ticks of [`POLL_EVERY`] looks
/// at the processes: a connected agent's death drops its connection, which looks at once. On
/// tmux each look is a `tmux` client process, which is what an idle team's daemon spent its
/// CPU on.
pub const CONNECTED_POLL_TICKS: u32 = 10;
/// When to look again after an agent's connection dropped and the first look found it alive.
pub const RECHECK_AFTER_DISCONNECT: Duration = Duration::from_millis(50);

/// The environment variable naming an agent's own workspace when it is not the team's.
pub const WORKSPACE_ENV: &str = env::WORKSPACE;

/// What the blocking pool reports back.
#[derive(Debug)]
pub enum SupEvent {
    /// A launch finished.
    Launched {
        /// The agent.
        name: String,
        /// The incarnation launched.
        incarnation: u64,
        /// What happened.
        result: Result<Launched, String>,
    },
    /// A stop finished.
    Stopped {
        /// The agent.
        name: String,
        /// The incarnation stopped.
        incarnation: u64,
        /// What happened.
        result: Result<(), String>,
    },
    /// A liveness round finished.
    Polled {
        /// (agent, incarnation, finding)
        results: Vec<(String, u64, Liveness)>,
    },
}

/// Why an agent is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// `agent-team kill`.
    Operator,
    /// `agent-team down` or a signal to the daemon.
    Shutdown,
    /// The leader finished the team.
    Finished,
    /// `agent-team restart`: stop, then start again.
    Restart,
    /// The model gateway refused its call for a spent budget (issue 65): `failed: budget`.
    Budget,
}

/// A request answered only when the agent gets somewhere.
#[derive(Debug)]
pub(crate) struct Waiter {
    conn: ConnId,
    id: u64,
    until: Until,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Connected,
    Down,
}

/// The supervisor's view of one agent.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    /// The current process, if one runs.
    launched: Option<Launched>,
    /// The last place it ran (kept so a restart reuses its pane).
    place: Option<Launched>,
    /// A blocking launch or stop is in flight.
    busy: bool,
    stop: Option<StopReason>,
    failures: crate::policy::Failures,
    waiters: Vec<Waiter>,
    /// Not yet connected once: a failure now rolls the roster back.
    first_spawn: bool,
    /// The pane title last set.
    title: Option<String>,
    /// Why the leader or operator closed it (`kill` with a reason), for its status.
    close_reason: Option<String>,
    /// Since when its host has been unreachable (a remote agent whose link is down), and the
    /// status it had then (given back when the host answers again).
    unreachable: Option<(Instant, AgentStatus)>,
    /// The leader's process finished a run (`finish`): its end, once a newer run has started,
    /// is that earlier run's end, not a failure of the new one (it comes back for it).
    finished_run: bool,
}

impl Supervisor {
    /// The model gateway refused `name`'s call for a spent budget (issue 65): its end, however
    /// it comes, is a budget stop.
    pub(crate) fn mark_budget_stop(&mut self, name: &str) {
        if let Some(rt) = self.runtimes.get_mut(name)
            && rt.launched.is_some()
            && rt.stop.is_none()
        {
            rt.stop = Some(StopReason::Budget);
        }
    }

    /// Whether `name`'s end was marked a budget stop and has not come yet.
    pub(crate) fn marked_budget_stop(&self, name: &str) -> bool {
        self.runtimes
            .get(name)
            .is_some_and(|rt| rt.launched.is_some() && rt.stop == Some(StopReason::Budget))
    }

    /// Whether `name` is being stopped (a `kill`, a `dissolve`, a restart): it takes no new
    /// task, so a task given back meanwhile goes to someone who stays.
    pub(crate) fn is_stopping(&self, name: &str) -> bool {
        self.runtimes.get(name).is_some_and(|rt| rt.stop.is_some())
    }
}

/// One paste for the paste thread: where, and what.
pub(crate) type Paste = (Arc<dyn PaneBackend>, Launched, String);

/// The most pastes waiting for the paste thread.
pub(crate) const PASTE_QUEUE: usize = 64;

/// The agents' runtimes, the backend and the restart policy of one team.
pub struct Supervisor {
    pub(crate) runtimes: HashMap<String, Runtime>,
    pub(crate) backend: Option<Arc<dyn PaneBackend>>,
    pub(crate) config: Option<TeamConfig>,
    pub(crate) poll_busy: bool,
    /// A poll was asked for while one was running: run another when it ends.
    pub(crate) poll_again: bool,
    /// Agents that said they ended and are not looked at yet (the next poll looks at them).
    pub(crate) poll_named: std::collections::BTreeSet<String>,
    /// Ticks skipped since the last look while every launched agent was connected.
    pub(crate) quiet_ticks: u32,
    /// Feeds the thread that sets pane titles, in order.
    pub(crate) titles: Option<std::sync::mpsc::Sender<(Launched, String)>>,
    /// Feeds the thread that types into panes, one paste at a time (see [`Supervisor::paste`]).
    pub(crate) pastes: Option<std::sync::mpsc::SyncSender<Paste>>,
    /// How to build backends and launch agents.
    pub(crate) env: SupervisorEnv,
    /// The team is shutting down: nothing restarts.
    pub(crate) stopping: bool,
    /// The team's name.
    team: String,
    /// The team's files (socket, logs, tmux socket).
    paths: TeamPaths,
    /// The time for the failure window.
    clock: Arc<dyn Clock>,
    /// Wakes the core when an agent ends (given to backends that can tell).
    wake: agent_team_pane::ExitNotify,
    /// `wait_for` requests not answered yet, by key.
    pub(crate) waits: std::collections::BTreeMap<u64, team::Wait>,
    /// The key of the next `wait_for`.
    pub(crate) next_wait: u64,
    /// Members held back by a staggered start, by the member of their role started first:
    /// they start once its first model request is answered (its first usage report) or
    /// after the team's `spawn_stagger_ms`, whichever comes first.
    pub(crate) staggered: HashMap<String, Vec<String>>,
    /// By role: the member of it on our model loop started last whose first model request
    /// has not been answered yet, and when it started. A member of that role spawned within
    /// `spawn_stagger_ms` of it is held behind it (see [`Step::stagger`]).
    pub(crate) priming: HashMap<String, (String, Instant)>,
    /// The last incarnation of each teammate a new run took off the roster: a member spawned
    /// again under its name goes on from it, so a timer or a late process of the old one is
    /// never taken for the new one.
    pub(crate) retired: HashMap<String, u64>,
    /// The team's model gateway, for the agent CLIs that go through it (issue 65); none in a
    /// supervisor without a core.
    pub(crate) gateways: Option<Arc<crate::gateway::Gateways>>,
}

impl Supervisor {
    /// A supervisor for `team` with nothing running yet; `wake` asks the core to poll now.
    pub fn new(
        env: SupervisorEnv,
        team: String,
        paths: TeamPaths,
        clock: Arc<dyn Clock>,
        wake: agent_team_pane::ExitNotify,
    ) -> Self {
        Supervisor {
            runtimes: HashMap::new(),
            backend: None,
            config: None,
            poll_busy: false,
            poll_again: false,
            poll_named: Default::default(),
            quiet_ticks: 0,
            titles: None,
            pastes: None,
            env,
            stopping: false,
            team,
            paths,
            clock,
            wake,
            waits: Default::default(),
            next_wait: 0,
            staggered: HashMap::new(),
            priming: HashMap::new(),
            retired: HashMap::new(),
            gateways: None,
        }
    }

    /// One step: the supervisor and the team state it updates; [`Step::finish`] says what the
    /// core must do next.
    pub fn step<'a>(&'a mut self, state: &'a mut TeamState) -> Step<'a> {
        Step {
            sup: self,
            state,
            out: Vec::new(),
        }
    }

    /// How long a permission request waits, from the configuration.
    pub fn perm_timeout(&self) -> Option<Duration> {
        self.config
            .as_ref()
            .map(|c| Duration::from_secs(c.permission_timeout_secs))
    }

    /// Whether the team is shutting down.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Whether an agent's end shows up as SIGCHLD of this process (process backend).
    pub fn agents_are_children(&self) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| b.agents_are_children())
    }

    /// Whether the shutdown may complete: no process left, nothing in flight.
    pub fn all_down(&self) -> bool {
        self.runtimes
            .values()
            .all(|r| r.launched.is_none() && !r.busy)
    }

    /// The backend and the place of an agent's process (its pane), for the notification bell.
    pub(crate) fn pane_of(&self, name: &str) -> Option<(Arc<dyn PaneBackend>, Launched)> {
        let rt = self.runtimes.get(name)?;
        let place = rt.launched.clone().or_else(|| rt.place.clone())?;
        Some((self.backend.clone()?, place))
    }

    /// The provider an agent runs with: its member's own (team file or spawn), else its
    /// role's. `None` without a configuration or with an unknown role.
    pub(crate) fn provider_of(&self, rec: &AgentRecord) -> Option<agent_team_config::Provider> {
        let role = self.config.as_ref()?.role(&rec.info.role)?;
        Some(
            rec.spec
                .get("provider")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or(role.provider),
        )
    }

    /// The model an agent was given for itself, which its launch hands it: `member.NAME.model`
    /// set at run time, else its member's own (team file or spawn). `None` leaves it its
    /// role's (the worker reads that from the configuration).
    pub(crate) fn own_model<'a>(&'a self, rec: &'a AgentRecord) -> Option<&'a str> {
        self.config
            .as_ref()
            .and_then(|c| c.member_override(&rec.info.name, "model"))
            .or_else(|| rec.spec.get("model").and_then(|v| v.as_str()))
    }

    /// The model an agent runs: [`Self::own_model`], else its role's. `None` without a
    /// configuration or with an unknown role and no model of its own.
    pub(crate) fn model_of(&self, rec: &AgentRecord) -> Option<String> {
        self.own_model(rec).map(str::to_string).or_else(|| {
            let role = self.config.as_ref()?.role(&rec.info.role)?;
            Some(role.model.clone())
        })
    }

    /// Whether the agent runs our model loop (OpenAI or Anthropic): the agents that take a
    /// budget lease before each model request and read a staggered start's cached prefix.
    pub(crate) fn on_model_loop(&self, rec: &AgentRecord) -> bool {
        matches!(
            self.provider_of(rec),
            Some(agent_team_config::Provider::Openai | agent_team_config::Provider::Anthropic)
        )
    }

    /// Types `text` into a pane on the one paste thread (each paste takes a moment: the
    /// text, a pause for the CLI to take it, then Enter), so pastes never overlap and never
    /// hold up the core. False when [`PASTE_QUEUE`] pastes are already waiting.
    pub(crate) fn paste(
        &mut self,
        backend: Arc<dyn PaneBackend>,
        target: Launched,
        text: String,
    ) -> bool {
        let tx = self.pastes.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Paste>(PASTE_QUEUE);
            std::thread::spawn(move || {
                while let Ok((backend, target, text)) = rx.recv() {
                    if let Err(e) = backend.paste(&target, &text) {
                        tracing::warn!("could not type into a pane: {e}");
                    }
                }
            });
            tx
        });
        tx.try_send((backend, target, text)).is_ok()
    }

    /// The budgets of the stored team configuration (none before one is stored).
    pub(crate) fn budgets(&self) -> agent_team_state::BudgetConfig {
        match &self.config {
            Some(c) => agent_team_state::BudgetConfig {
                team: c.budget,
                roles: c.role_budgets.clone(),
            },
            None => agent_team_state::BudgetConfig::default(),
        }
    }

    /// Tears down what the backend built (tmux server), after every agent is down.
    pub fn backend_shutdown(&self) {
        if let Some(b) = &self.backend {
            b.shutdown();
        }
    }

    /// Whether `name` has a launched process and nothing in flight.
    pub fn is_settled_running(&self, name: &str) -> bool {
        self.runtimes
            .get(name)
            .is_some_and(|r| r.launched.is_some() && !r.busy)
    }

    /// Whether `name` has no process (never launched, exited or stopped).
    pub fn has_no_process(&self, name: &str) -> bool {
        self.runtimes
            .get(name)
            .is_some_and(|r| r.launched.is_none())
    }

    /// Whether the leader decides permission requests.
    pub fn leader_approves(&self) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.approver == agent_team_config::Approver::Leader)
    }
}

/// Later events the supervisor asks the core's timer wheel for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SupTimer {
    /// A spawned incarnation's connect-back deadline.
    Connect(String, u64),
    /// A backoff is over: start the next incarnation.
    Restart(String, u64),
    /// The grace after a shutdown request is over.
    StopGrace(String, u64),
    /// Check the agents' processes (and schedule the next check).
    Poll,
    /// Check once more soon after an agent's connection dropped (its pane may not have been
    /// marked dead yet at the first look).
    PollAfterDisconnect,
    /// Stop waiting for agents and exit.
    ShutdownDeadline,
    /// A `wait_for`'s timeout.
    WaitDeadline(u64),
    /// A staggered start's longest wait is over: start the members held back behind this one.
    Stagger(String),
}

/// What the supervisor asks the core to do.
// A step makes a handful of actions and the core consumes each once: boxing the reply would
// cost an allocation per answer for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    /// Call [`Step::timer`] with `timer` after `after`.
    Schedule {
        /// How long from now.
        after: Duration,
        /// What then.
        timer: SupTimer,
    },
    /// Answer request `id` of connection `conn` (a spawn, kill or restart that waited).
    Answer {
        /// The connection.
        conn: ConnId,
        /// The request id.
        id: u64,
        /// The reply. Boxed: a reply is ~450 bytes, and the actions of a step are collected
        /// in a vector whose first room for four would then be a large allocation, which has
        /// the allocator gather every small chunk freed since the last one (~15 % of a
        /// thousand agents' `down`, a step at each agent's end).
        outcome: Box<Result<Reply, ErrorBody>>,
    },
    /// Run blocking backend work off the core's thread; it reports back through [`Job::run`].
    Run(Job),
    /// Stop the core: the agents did not all stop in time.
    ForceExit,
}

/// The supervisor at work on the team state; collects the actions its calls ask for.
pub struct Step<'a> {
    pub(crate) sup: &'a mut Supervisor,
    pub(crate) state: &'a mut TeamState,
    out: Vec<Action>,
}

impl Step<'_> {
    /// What the core must do for the calls made on this step.
    pub fn finish(self) -> Vec<Action> {
        self.out
    }

    fn schedule(&mut self, after: Duration, timer: SupTimer) {
        self.out.push(Action::Schedule { after, timer });
    }

    fn answer(&mut self, conn: ConnId, id: u64, outcome: Result<Reply, ErrorBody>) {
        self.out.push(Action::Answer {
            conn,
            id,
            outcome: Box::new(outcome),
        });
    }

    fn run(&mut self, job: Job) {
        self.out.push(Action::Run(job));
    }

    /// A timer the supervisor scheduled is due.
    pub fn timer(&mut self, timer: SupTimer) {
        match timer {
            SupTimer::Connect(name, inc) => self.connect_deadline(&name, inc),
            SupTimer::Restart(name, inc) => self.restart_due(&name, inc),
            SupTimer::StopGrace(name, inc) => self.stop_grace_over(&name, inc),
            SupTimer::Poll => {
                self.tick();
                self.schedule(POLL_EVERY, SupTimer::Poll);
            }
            SupTimer::PollAfterDisconnect => self.poll(),
            SupTimer::WaitDeadline(key) => self.wait_deadline(key),
            SupTimer::Stagger(first) => self.release_staggered(&first),
            SupTimer::ShutdownDeadline => {
                tracing::warn!("agents did not all stop in time; exiting anyway");
                self.out.push(Action::ForceExit);
            }
        }
    }

    /// An agent's connection dropped: look now, and once more shortly, rather than at the next
    /// periodic poll (a dropped connection is often a death).
    pub fn disconnected(&mut self) {
        if !self.sup.stopping {
            self.poll();
            self.schedule(RECHECK_AFTER_DISCONNECT, SupTimer::PollAfterDisconnect);
        }
    }

    /// SIGCHLD: poll if our children are the agents.
    pub fn child_exited(&mut self) {
        if self.sup.agents_are_children() {
            self.poll();
        }
    }
}

/// Builds a backend of a kind for a team (tmux, iTerm2 live outside the daemon crate).
pub type BackendFactory =
    Arc<dyn Fn(BackendKind, &TeamConfig) -> Result<Arc<dyn PaneBackend>, String> + Send + Sync>;

/// The backend of the team's members on other hosts, from the team file's `[ssh]` and the
/// team's paths (the daemon's, and a `down` cleaning up after a dead daemon).
pub fn remote_backend(
    cfg: &TeamConfig,
    paths: &TeamPaths,
    worker: Option<PathBuf>,
) -> agent_team_remote::RemoteBackend {
    let runtime = paths.socket.parent().map(PathBuf::from).unwrap_or_default();
    let settings = agent_team_remote::RemoteSettings {
        team: paths.team.clone(),
        ssh: cfg.ssh.command.clone(),
        worker: cfg.ssh.worker.clone(),
        dir: cfg.ssh.dir.clone(),
        daemon_socket: paths.socket.clone(),
        control_dir: runtime.join(format!("{}.ssh", paths.team)),
        local_worker: worker,
        secrets_file: Some(paths.secrets.clone()),
        // A remote member without a workspace works in a worktree of the team's repository.
        repo: cfg
            .workspace
            .join(".git")
            .exists()
            .then(|| cfg.workspace.clone()),
        // In tmux here, a remote member runs in a tmux server on its host, attached here.
        panes: cfg.backend == agent_team_config::BackendKind::Tmux,
    };
    agent_team_remote::RemoteBackend::new(
        settings,
        Arc::new(agent_team_remote::OpenSsh::new(cfg.ssh.command.clone())),
    )
}

/// The key of an agent record's `spec` holding its process's start time
/// (`agent_team_pane::procs::start_time`), recorded with its pid at each launch.
pub const PID_START: &str = "pid_start";

/// What the daemon was given to launch agents with.
#[derive(Clone, Default)]
pub struct SupervisorEnv {
    /// The worker executable.
    pub worker_exe: Option<PathBuf>,
    /// Runs agents inside the daemon for the in-process backend.
    pub runner: Option<Arc<dyn agent_team_pane::inprocess::AgentRunner>>,
    /// Builds backends the pane crate cannot build alone (tmux, iTerm2), by kind.
    pub factory: Option<BackendFactory>,
    /// Given to each agent process's launch so its worker can bring a crashed daemon back
    /// (`agent_team_client::heal::Healer::launch_env`); empty: agents do not heal.
    pub heal_env: Vec<(String, String)>,
    /// The `agent-team` executable whose `tmux-layout` the team window's hooks run to lay it
    /// out again on a resize or a split; `None`: tmux's own layout after each split only.
    pub layout_exe: Option<PathBuf>,
}

impl std::fmt::Debug for SupervisorEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorEnv")
            .field("worker_exe", &self.worker_exe)
            .finish_non_exhaustive()
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

/// Where team `team`'s tmux panes live: the place `up` recorded in its configuration (a
/// window in the user's own session, or a session on a socket), else a private server on
/// `tmux_socket` with a session named after the team. One rule for the daemon's backend and
/// for `down` when no daemon answers.
pub fn tmux_placement(
    cfg: &TeamConfig,
    tmux_socket: &std::path::Path,
    team: &str,
) -> agent_team_pane::tmux::Placement {
    use agent_team_pane::tmux::Placement;
    match &cfg.tmux {
        Some(t) => Placement {
            socket: t.socket.clone(),
            session: t.session.clone(),
            window: t.window.clone(),
            private_server: t.window.is_none(),
        },
        None => Placement {
            socket: tmux_socket.to_path_buf(),
            session: team.to_string(),
            window: None,
            private_server: true,
        },
    }
}

mod exit;
mod job;
mod recover;
mod run;
mod spawn;
mod stop;
mod team;

pub use job::Job;

#[cfg(test)]
#[path = "../supervisor_tests.rs"]
mod tests;

#[cfg(test)]
mod size_tests {
    /// A step's first four actions fit in an allocation below glibc's large requests (1 KiB),
    /// which would gather every small chunk freed since the last one.
    #[test]
    fn four_actions_are_a_small_allocation() {
        assert!(4 * std::mem::size_of::<super::Action>() < 1024);
    }
}
