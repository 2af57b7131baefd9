//! The core: the one task that owns the team's state. Requests from every connection queue up
//! here; the core applies a whole batch of them in memory, commits their changes to SQLite in one
//! transaction (group commit), and only then releases the responses and pushes of that batch.
//!
//! Running on a single thread keeps the routing path free of thread hand-offs, and makes the
//! batch boundary the natural place for the one fsync the durability promise needs.

use crate::outbox::{ConnHandle, ConnId};
use crate::supervisor::{Action, Step, SupTimer, Supervisor};
use agent_team_paths::TeamPaths;
pub(crate) use agent_team_protocol::MAX_RID_LEN;
use agent_team_protocol::frame;
use agent_team_protocol::names::{LEADER, OPERATOR};
use agent_team_protocol::*;
use agent_team_state::{Actor, Change, TeamState};
use agent_team_store::Store;
use serde_json::json;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The queue into the core.
pub type CoreTx = mpsc::UnboundedSender<CoreMsg>;

/// Everything the core reacts to.
#[derive(Debug)]
pub enum CoreMsg {
    /// A connection sent its hello; the core answers on `reply`.
    Hello {
        /// The connection.
        conn: ConnId,
        /// The hello.
        hello: Hello,
        /// The peer's pid from the socket credentials.
        peer_pid: Option<u32>,
        /// Where to send frames.
        handle: ConnHandle,
        /// The verdict.
        reply: oneshot::Sender<Result<Welcome, ErrorBody>>,
    },
    /// An authenticated connection made a request.
    Request {
        /// The connection.
        conn: ConnId,
        /// The request id to answer on.
        id: u64,
        /// The request.
        req: Request,
        /// The client's request id, for answering a retry with the first reply.
        rid: Option<String>,
        /// The client waits for no answer: none is sent, and a batch of only such requests
        /// may wait for the next commit (at most 2 ms).
        no_reply: bool,
    },
    /// A connection closed.
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// SIGTERM, SIGINT or a `shutdown` request: stop cleanly.
    Shutdown,
    /// The team's files were deleted or replaced (`vanish.rs`): stop for good.
    Vanished {
        /// The runtime dir is still this daemon's (only the state went): the stop is then a
        /// stop on purpose, with its marker.
        runtime_intact: bool,
        /// The agents had their time: exit now, whatever is still stopping.
        force: bool,
    },
    /// A blocking supervisor operation finished.
    Sup(crate::supervisor::SupEvent),
    /// An agent ended (an in-process agent said so): check it now rather than at the next
    /// poll.
    Ended(String),
    /// SIGCHLD: one of our children exited. Only an agent when the backend's agents are our
    /// children; with tmux it is one of our own tmux commands, and polling on it would run
    /// another tmux command whose exit is the next SIGCHLD (a busy loop).
    ChildExited,
    /// The model gateway asks (issue 65).
    Gateway(crate::gateway::GatewayMsg),
    /// An agent's egress proxy asks about a destination off the team's list (`crate::net`).
    NetAsk {
        /// The agent whose proxy asks.
        agent: String,
        /// `host:port`.
        dest: String,
        /// The decision, once made.
        reply: oneshot::Sender<agent_team_egress::Answer>,
    },
    /// A worktree teammate's git work (`work_diff`, `work_finish`) ended.
    WorkDone {
        /// The connection that asked.
        conn: ConnId,
        /// The request id to answer on.
        id: u64,
        /// What it did.
        done: WorkDone,
    },
    /// A hook (`[hooks]`) ended.
    HookDone {
        /// The hook run.
        id: u64,
        /// What its process did.
        outcome: crate::hookrun::HookOutcome,
    },
}

/// What a finished piece of worktree git work (`work.rs`) reports.
#[derive(Debug)]
// One per git job, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum WorkDone {
    /// `work_diff` answered.
    Diff(Result<Reply, ErrorBody>),
    /// `work_finish` ended.
    Finish {
        /// The teammate.
        agent: String,
        /// What was done, or why nothing was.
        outcome: Result<agent_team_protocol::FinishOutcome, agent_team_worktree::WorktreeError>,
    },
}

/// Settings the core runs with.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The team's name.
    pub team: String,
    /// The team's files.
    pub paths: TeamPaths,
    /// The operator credential.
    pub operator_secret: String,
    /// How long a permission request waits before it is denied.
    pub perm_timeout: Duration,
    /// The unread-message bound per agent.
    pub inbox_limit: usize,
    /// Unread frames that pace a subscriber's catch-up (see
    /// [`crate::outbox::MAX_QUEUED_FRAMES`]).
    pub max_queued_frames: usize,
    /// The connection limits, updated when the team file changes.
    pub gate: std::sync::Arc<crate::gate::Gate>,
    /// The process ends when the core does ([`DaemonOptions::ends_process`]): the team's state
    /// is then left to the process's end instead of being freed piece by piece.
    ///
    /// [`DaemonOptions::ends_process`]: crate::DaemonOptions::ends_process
    pub ends_process: bool,
}

/// The most requests applied before a commit; bounds the latency one batch adds.
pub(crate) const MAX_BATCH: usize = 4096;
/// How long a batch made only of `no_reply` requests (agents' progress events and statuses)
/// may wait for the next commit: nobody is waiting for it, so it is synced with whatever comes
/// next instead of with an fsync of its own; this long after the first batch held it is
/// committed anyway, so what it changes reaches subscribers and `wait_for` promptly.
pub(crate) const HOLD_UNANSWERED: Duration = Duration::from_millis(2);
/// How many times a batch that welcomed an in-process agent lets the runtime turn before it
/// commits: enough for the agent to take its welcome, build its first model request and hand
/// it to the connection (a new connection's set-up takes a turn of its own), so the request
/// is out while the commit syncs. What the agent sends meanwhile joins the batch.
pub(crate) const WELCOME_TURNS: usize = 4;
/// How often the retention window is applied.
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(6 * 3600);

/// The most backlog events sent to a catching-up subscriber per batch.
const BACKLOG_CHUNK: usize = 2000;
/// A subscriber gets more of its backlog only up to this many unread frames (or half the
/// frames that would cut it off, if fewer).
const SUBSCRIBER_ROOM: usize = 2 * BACKLOG_CHUNK;
/// How soon a subscriber with a full queue is looked at again.
const ROOM_RECHECK: Duration = Duration::from_millis(20);

/// One connection that said hello.
#[derive(Debug)]
pub(crate) struct Session {
    /// Where its frames go.
    pub(crate) handle: ConnHandle,
    /// Who it is.
    pub(crate) actor: Actor,
    /// For a subscriber: the newest sequence number it has been sent (or passed over).
    sub: Option<u64>,
    /// For a subscriber of some event types only: their bits ([`type_bit`]).
    sub_types: Option<u32>,
    watch_tasks: bool,
}

/// An event type's bit in a subscription's filter: its place in [`EVENT_TYPES`].
pub(crate) fn type_bit(name: &str) -> Option<u32> {
    EVENT_TYPES
        .iter()
        .position(|t| *t == name)
        .map(|i| 1u32 << i)
}

/// Whether a subscriber with the filter `types` is sent `event`.
fn wanted_by(types: Option<u32>, event: &Event) -> bool {
    types.is_none_or(|bits| type_bit(event.type_name()).is_some_and(|b| bits & b != 0))
}

/// Things that happen later, in the core's own time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A permission request's time is up.
    PermTimeout(u64),
    /// One the supervisor asked for.
    Sup(SupTimer),
    /// Compact what is older than the retention window.
    Retention,
    /// See whether a subscriber that was not reading has made room for more of its backlog.
    SubscriberRoom,
}

/// The core's state: the team, the store, and who is connected.
pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) state: TeamState,
    pub(crate) store: Store,
    /// Who is on each connection.
    pub(crate) sessions: HashMap<ConnId, Session>,
    /// Each agent's connection.
    agent_conn: HashMap<String, ConnId>,
    /// Connections that subscribed to events (`sub` set): routing an event, catching up and
    /// looking for backlog go through these, not through every connection (a thousand
    /// in-process agents' sessions were scanned for each event).
    subscribers: std::collections::BTreeSet<ConnId>,
    /// Connections that watch the whole board: every one that is not an agent's, and the
    /// leader's. An agent's watch gets only the tasks it concerns ([`Core::push_task`]).
    board_watchers: std::collections::BTreeSet<ConnId>,
    /// Agents whose last `task_claim_next` found nothing, oldest first: each task that opens
    /// is pushed to one of them, which then asks again.
    claim_waiters: std::collections::VecDeque<String>,
    /// Agents woken for an opened task that have not asked again yet, and that task: one that
    /// disconnects first hands its turn on.
    woken: HashMap<String, u64>,
    /// This batch's frames, sent once it is committed: (connection, the request id a response
    /// answers, the frame).
    pub(crate) responses: Vec<(ConnId, Option<u64>, Vec<u8>)>,
    /// The disk holding the state was found full: writes are refused until space returns.
    pub(crate) storage_full: bool,
    /// A [`Timer::SubscriberRoom`] is scheduled.
    pub(crate) room_timer: bool,
    /// What is due when.
    pub(crate) timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    pub(crate) sup: Supervisor,
    /// Teammates whose work a `work_finish` is landing now.
    pub(crate) finishing: std::collections::HashSet<String>,
    /// Held by each piece of worktree git work (a task's commit, a finish), one at a time.
    pub(crate) git_turn: std::sync::Arc<std::sync::Mutex<()>>,
    /// Its blocking work, counted: the daemon's end waits for it ([`crate::blocking`]).
    pub(crate) blocking: crate::blocking::Blocking,
    pub(crate) self_tx: CoreTx,
    /// The supervisor asked for the exit without waiting for every agent.
    pub(crate) force_exit: bool,
    pub(crate) daemon_pid: u32,
    /// Batches committed and core messages handled, for the log.
    pub(crate) stats: (u64, u64),
    /// Time spent committing, for the log.
    pub(crate) commit_time: Duration,
    /// Requests with a request id still waiting for their (asynchronous) answer, by the
    /// connection and frame id they will be answered on: whose request id it was.
    pub(crate) rid_pending: HashMap<(ConnId, u64), (String, String)>,
    /// Retries that arrived while their original was still in flight, answered with it.
    pub(crate) rid_retries: HashMap<(String, String), Vec<(ConnId, u64)>>,
    /// The time for timers and the restart policy (a fake one in tests).
    pub(crate) clock: std::sync::Arc<dyn crate::clock::Clock>,
    /// Runs `[notify]` off the core.
    pub(crate) notifier: crate::notify::Notifier,
    /// The hook runs under way and the completions waiting for them.
    pub(crate) hooks: crate::hooks::Hooks,
    /// Tasks this batch completed, for a worktree teammate's commit of its work once the
    /// batch is done.
    pub(crate) completed: Vec<Task>,
    /// `no_reply` requests that will be answered later (spawn, kill, …): their answer is
    /// dropped instead of sent.
    pub(crate) unanswered: std::collections::HashSet<(ConnId, u64)>,
    /// Batches held for the next commit ([`HOLD_UNANSWERED`]), for the log.
    pub(crate) held: u64,
    /// This batch started agents inside the daemon: what they send as they first run (their
    /// hellos) joins the batch before it commits (the batch loop's `drain`).
    pub(crate) started_inside: bool,
    /// This batch welcomed an in-process agent before its commit: it runs on to its first
    /// model request before the commit syncs ([`WELCOME_TURNS`]).
    pub(crate) welcomed_inside: bool,
    /// Paces the frames of in-process connections ([`crate::outbox::Pacer`]).
    pub(crate) pacer: std::sync::Arc<crate::outbox::Pacer>,
    /// The write end of the guardian's pipe (a copy), written once the stop is on purpose;
    /// filled when the guardian starts, which may be after the core.
    guardian: crate::GuardianSlot<std::fs::File>,
    /// The team's files were deleted (`vanish.rs`): the stop goes on whatever the store
    /// says (its files are gone; what it fails to write matters to nobody).
    pub(crate) vanished: bool,
    /// The agents' egress proxies and their questions (`crate::net`).
    pub(crate) net: crate::net::Net,
    /// OpenTelemetry export (`otel.rs`): off unless an endpoint is set.
    pub(crate) otel: crate::otel::Otel,
}

impl Core {
    /// `down`, the end of `run` or a signal: the clean-stop marker is written before anything
    /// stops, so whoever sees this daemon go away knows not to bring it back;
    /// then every agent is asked to exit.
    pub(crate) fn stop_on_purpose(&mut self) {
        if self.cfg.ends_process {
            agent_team_pane::inprocess::set_process_ends();
        }
        match agent_team_paths::mark_stopped(&self.cfg.paths.stopped) {
            // Nothing to bring back: the guardian goes now, beside the agents' stop, rather
            // than once everything else is done (the daemon still waits for its exit).
            Ok(()) => self.dismiss_guardian(),
            Err(e) => tracing::warn!(
                "cannot write the clean-stop marker {}: {e}",
                self.cfg.paths.stopped.display()
            ),
        }
        self.supervise(|s| s.begin_shutdown());
    }

    /// The team's files were deleted or replaced (`vanish.rs`): the team stops as on
    /// `down` and nothing brings it back. With the runtime dir still there it is a stop on
    /// purpose (its marker tells every healer); without it nothing is written where the files
    /// were, and the guardian is dismissed through its pipe. `force`: exit now.
    pub(crate) fn stop_vanished(&mut self, runtime_intact: bool, force: bool) {
        self.vanished = true;
        if runtime_intact && !self.sup.stopping() {
            self.stop_on_purpose();
        } else {
            self.dismiss_guardian();
            self.supervise(|s| s.begin_shutdown());
        }
        if force {
            tracing::warn!("the agents did not all stop in time; exiting anyway");
            self.force_exit = true;
        }
    }

    /// Tells the guardian (one byte on its pipe) that there is nothing to bring back.
    fn dismiss_guardian(&mut self) {
        let pipe = crate::lock(&self.guardian).take();
        if let Some(mut pipe) = pipe {
            use std::io::Write as _;
            let _ = pipe.write_all(b"s");
        }
    }

    /// Gives the core the slot of the write end of its guardian's pipe (a copy), so a stop on
    /// purpose dismisses the guardian as it begins.
    pub(crate) fn dismiss_guardian_through(&mut self, slot: crate::GuardianSlot<std::fs::File>) {
        self.guardian = slot;
    }

    /// Builds the core from the stored state.
    pub fn new(
        cfg: CoreConfig,
        store: Store,
        state: TeamState,
        env: crate::supervisor::SupervisorEnv,
        self_tx: CoreTx,
    ) -> Self {
        Self::with_clock(
            cfg,
            store,
            state,
            env,
            self_tx,
            std::sync::Arc::new(crate::clock::SystemClock),
        )
    }

    /// [`Core::new`] on a given clock.
    pub fn with_clock(
        cfg: CoreConfig,
        store: Store,
        state: TeamState,
        env: crate::supervisor::SupervisorEnv,
        self_tx: CoreTx,
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> Self {
        let (team, paths) = (cfg.team.clone(), cfg.paths.clone());
        let hooks = crate::hooks::Hooks::new(std::sync::Arc::new(crate::hookrun::ShellRunner {
            team: team.clone(),
        }));
        // An agent that ends wakes the core at once (in-process agents; others need no help).
        let wake_tx = self_tx.clone();
        let wake: agent_team_pane::ExitNotify = std::sync::Arc::new(move |name: &str| {
            let _ = wake_tx.send(CoreMsg::Ended(name.to_string()));
        });
        let mut core = Core {
            cfg,
            state,
            store,
            sessions: HashMap::new(),
            agent_conn: HashMap::new(),
            board_watchers: Default::default(),
            subscribers: Default::default(),
            claim_waiters: Default::default(),
            woken: HashMap::new(),
            responses: Vec::new(),
            storage_full: false,
            room_timer: false,
            timers: BinaryHeap::new(),
            sup: Supervisor::new(env, team, paths, clock.clone(), wake),
            finishing: Default::default(),
            git_turn: Default::default(),
            blocking: Default::default(),
            self_tx,
            force_exit: false,
            daemon_pid: std::process::id(),
            stats: (0, 0),
            commit_time: Duration::ZERO,
            rid_pending: HashMap::new(),
            rid_retries: HashMap::new(),
            clock,
            notifier: crate::notify::Notifier::default(),
            hooks,
            completed: Vec::new(),
            unanswered: Default::default(),
            held: 0,
            started_inside: false,
            welcomed_inside: false,
            pacer: Default::default(),
            guardian: Default::default(),
            vanished: false,
            net: Default::default(),
            otel: crate::otel::Otel::from_env(),
        };
        core.state.set_inbox_limit(core.cfg.inbox_limit);
        core.sup.gateways = Some(std::sync::Arc::new(crate::gateway::Gateways::new(
            core.self_tx.clone(),
        )));
        core.recover();
        core
    }

    /// After a restart nobody is connected yet: fix up what the stored roster claims, and
    /// re-arm the timers of pending permission requests.
    fn recover(&mut self) {
        let now = self.clock.wall();
        let names: Vec<String> = self
            .state
            .agent_records()
            .map(|a| a.info.name.clone())
            .collect();
        for name in names {
            self.state.update_agent(&name, |a| a.info.connected = false);
        }
        for p in self.state.perms(false) {
            let age = Duration::from_millis(now.millis().saturating_sub(p.ts.millis()));
            let left = self.perm_timeout().saturating_sub(age);
            self.timers
                .push(Reverse((self.clock.now() + left, Timer::PermTimeout(p.id))));
        }
        self.supervise(|s| s.sup_recover());
        // Hook runs a crash left: pending ones start after the first commit, started ones
        // are reported and not run again.
        let (hooks, cx) = self.hooks_with();
        let answers = hooks.recover(cx);
        self.deliver(answers);
        // The first compaction a minute after start (not in the way of a start), then every
        // few hours.
        self.schedule(Duration::from_secs(60), Timer::Retention);
    }

    /// An agent whose last request was decided is running again.
    pub(crate) fn after_perm_resolved(&mut self, resolved: &[PermRequest]) {
        let now = self.clock.wall();
        for r in resolved {
            let still_waiting = self.state.perms(false).iter().any(|p| p.agent == r.agent);
            if !still_waiting
                && self
                    .state
                    .agent(&r.agent)
                    .is_some_and(|a| a.info.status == AgentStatus::Waiting)
            {
                self.state
                    .set_agent_status(&r.agent, AgentStatus::Running, None, now);
            }
        }
    }

    /// Runs `f` on the supervisor and carries out the actions it asks for.
    pub(crate) fn supervise<R>(&mut self, f: impl FnOnce(&mut Step<'_>) -> R) -> R {
        let mut step = self.sup.step(&mut self.state);
        let r = f(&mut step);
        let actions = step.finish();
        let mut cleanups = Vec::new();
        for action in actions {
            match action {
                Action::Schedule { after, timer } => self.schedule(after, Timer::Sup(timer)),
                Action::Answer { conn, id, outcome } => self.answer(conn, id, *outcome),
                // An in-process agent's start is a task and a log file: done here, it needs
                // no blocking thread (nor the hop to one and back).
                Action::Run(job) if job.is_quick() => {
                    self.started_inside = true;
                    let tx = self.self_tx.clone();
                    job.run(&|ev| {
                        let _ = tx.send(CoreMsg::Sup(ev));
                    });
                }
                Action::Run(job) if job.is_in_process_cleanup() => cleanups.push(job),
                Action::Run(job) => {
                    let tx = self.self_tx.clone();
                    self.blocking.spawn(move || {
                        job.run(&|ev| {
                            let _ = tx.send(CoreMsg::Sup(ev));
                        })
                    });
                }
                Action::ForceExit => self.force_exit = true,
            }
        }
        if !cleanups.is_empty() {
            let tx = self.self_tx.clone();
            self.blocking.spawn(move || {
                for job in cleanups {
                    job.run(&|ev| {
                        let _ = tx.send(CoreMsg::Sup(ev));
                    });
                }
            });
        }
        r
    }

    /// How long a permission request waits for a decision.
    pub(crate) fn perm_timeout(&self) -> Duration {
        self.sup.perm_timeout().unwrap_or(self.cfg.perm_timeout)
    }

    /// Arranges for `timer` to fire after `after`.
    pub(crate) fn schedule(&mut self, after: Duration, timer: Timer) {
        self.timers.push(Reverse((
            crate::clock::deadline(self.clock.now(), after),
            timer,
        )));
    }

    /// Queues the answer to request `id` of `conn` (sent when the batch commits).
    pub(crate) fn answer(&mut self, conn: ConnId, id: u64, outcome: Result<Reply, ErrorBody>) {
        if !self.unanswered.is_empty() && self.unanswered.remove(&(conn, id)) {
            return;
        }
        // Most answers have no request waiting on them by request id: skip hashing the key.
        let pending = if self.rid_pending.is_empty() {
            None
        } else {
            self.rid_pending.remove(&(conn, id))
        };
        let Some(key) = pending else {
            let _ = self.queue_response(conn, id, outcome);
            return;
        };
        for (c, i) in self.rid_retries.remove(&key).unwrap_or_default() {
            let _ = self.queue_response(c, i, outcome.clone());
        }
        let outcome = self.queue_response(conn, id, outcome);
        let (identity, rid) = key;
        self.state.remember_outcome(&identity, rid, outcome);
    }

    /// Sends the response to request `id` of `conn` now, ahead of the batch's commit: only for
    /// an answer that acknowledges no change (a granted budget lease, held in memory: a daemon
    /// that lost the batch to a crash would grant it as well).
    pub(crate) fn answer_now(&mut self, conn: ConnId, id: u64, outcome: Result<Reply, ErrorBody>) {
        match (
            frame::encode(&ServerFrame::response(id, outcome)),
            self.sessions.get(&conn),
        ) {
            (Ok(bytes), Some(s)) => {
                s.handle.send(bytes);
            }
            (Err(e), _) => tracing::warn!("cannot encode an answer: {e}"),
            (Ok(_), None) => {}
        }
    }

    /// Queues the response frame for request `id` of `conn` (sent when the batch commits) and
    /// gives the outcome back, so a caller can remember it by its request id without a copy.
    pub(crate) fn queue_response(
        &mut self,
        conn: ConnId,
        id: u64,
        outcome: Result<Reply, ErrorBody>,
    ) -> Result<Reply, ErrorBody> {
        let frame = ServerFrame::response(id, outcome);
        match frame::encode(&frame) {
            Ok(bytes) => self.responses.push((conn, Some(id), bytes)),
            Err(e) => {
                let err =
                    ErrorBody::new(ErrorCode::Internal, format!("reply too large to send: {e}"));
                if let Ok(bytes) = frame::encode(&ServerFrame::response(id, Err(err))) {
                    self.responses.push((conn, Some(id), bytes));
                }
            }
        }
        frame.into_outcome().unwrap_or_else(|| {
            Err(ErrorBody::new(
                ErrorCode::Internal,
                "a response frame without its outcome",
            ))
        })
    }

    /// Admits a connection's hello: the operator's or an agent's, checked, gets its welcome.
    pub(crate) fn hello(
        &mut self,
        conn: ConnId,
        hello: Hello,
        peer_pid: Option<u32>,
        handle: ConnHandle,
    ) -> Result<Welcome, ErrorBody> {
        self.check_hello(&hello)?;
        let team = self.cfg.team.clone();
        let daemon_pid = self.daemon_pid;
        let welcome = move |identity: &str, role: &str, incarnation: u64| Welcome {
            protocol: PROTOCOL_VERSION,
            team: team.clone(),
            identity: identity.to_string(),
            role: role.to_string(),
            incarnation,
            daemon_pid,
            start: None,
            secret: None,
        };
        match hello.auth {
            Auth::Operator { secret } => {
                if !secret_eq(&secret, &self.cfg.operator_secret) {
                    return Err(unauthorized("wrong operator credential"));
                }
                self.sessions.insert(
                    conn,
                    Session {
                        handle,
                        actor: Actor::Operator,
                        sub: None,
                        sub_types: None,
                        watch_tasks: false,
                    },
                );
                Ok(welcome(OPERATOR, OPERATOR, 0))
            }
            Auth::Agent {
                name,
                secret,
                incarnation,
            } => {
                let (role, current) = self.check_agent(&name, &secret, incarnation)?;
                self.connect_agent(conn, &name, peer_pid, handle);
                Ok(welcome(&name, &role, current))
            }
            Auth::Join { name, token } => {
                // The token is taken (once) for its name, and swapped for the agent's own
                // secret; no session: the connection ends with this welcome.
                let now = self.clock.wall().0 / 1000;
                let store = agent_team_client::join::TokenStore::of_team(&self.cfg.paths.dir);
                let name = store
                    .redeem(&token, name.as_deref(), now)
                    .map_err(|e| crate::join::refusal(&e))?;
                let Some(rec) = self.state.agent(&name) else {
                    return Err(unauthorized(&format!(
                        "{name} is not on the roster any more; make a new token with \
                         `agent-team join {name}`"
                    )));
                };
                let secret = rec.secret.clone();
                let (role, current) = self.check_agent(&name, &secret, 0)?;
                tracing::info!(agent = %name, "a worker joined over the network");
                Ok(Welcome {
                    secret: Some(secret),
                    ..welcome(&name, &role, current)
                })
            }
        }
    }

    /// Checks a hello's protocol version and team.
    fn check_hello(&self, hello: &Hello) -> Result<(), ErrorBody> {
        if hello.protocol != PROTOCOL_VERSION {
            return Err(ErrorBody::with_details(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this daemon speaks {PROTOCOL_VERSION}",
                    hello.protocol
                ),
                json!({"supported": [PROTOCOL_VERSION]}),
            ));
        }
        if hello.team != self.cfg.team {
            return Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!(
                    "this daemon serves team {:?}, not {:?}",
                    self.cfg.team, hello.team
                ),
                json!({"team": self.cfg.team}),
            ));
        }
        Ok(())
    }

    /// Checks an agent's credential and incarnation, and that it is not stopped: its role and
    /// current incarnation.
    fn check_agent(
        &self,
        name: &str,
        secret: &str,
        incarnation: u64,
    ) -> Result<(String, u64), ErrorBody> {
        let Some(rec) = self.state.agent(name) else {
            return Err(unauthorized("unknown agent or wrong secret"));
        };
        if !secret_eq(secret, &rec.secret) {
            return Err(unauthorized("unknown agent or wrong secret"));
        }
        let current = rec.info.incarnation;
        if incarnation != 0 && incarnation != current {
            return Err(ErrorBody::with_details(
                ErrorCode::Unauthorized,
                format!(
                    "incarnation {incarnation} of {name} is stale; the current one is {current}"
                ),
                json!({"agent": name, "incarnation": current}),
            ));
        }
        if matches!(
            rec.info.status,
            AgentStatus::Stopped | AgentStatus::Exited | AgentStatus::Failed
        ) {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!("{name} is {}; restart it first", rec.info.status),
                json!({"agent": name, "status": rec.info.status}),
            ));
        }
        Ok((rec.info.role.clone(), current))
    }

    /// Makes `conn` the agent's session (closing an older one), marks it connected and running,
    /// and sends again every message it has not read yet.
    fn connect_agent(
        &mut self,
        conn: ConnId,
        name: &str,
        peer_pid: Option<u32>,
        handle: ConnHandle,
    ) {
        // A reconnect replaces a half-dead older connection of the same agent.
        if let Some(old) = self.agent_conn.insert(name.to_string(), conn)
            && let Some(s) = self.sessions.remove(&old)
        {
            s.handle.close();
        }
        self.sessions.insert(
            conn,
            Session {
                handle,
                actor: Actor::Agent(name.to_string()),
                sub: None,
                sub_types: None,
                watch_tasks: false,
            },
        );
        let now = self.clock.wall();
        // A new connection (or incarnation) has no request in flight yet.
        self.state.drop_lease(name);
        self.state.mark_connected(name);
        if matches!(
            self.state.agent(name).map(|a| a.info.status),
            Some(AgentStatus::Starting | AgentStatus::Backoff)
        ) {
            self.state
                .set_agent_status(name, AgentStatus::Running, Some("connected".into()), now);
        }
        self.supervise(|s| s.on_connected(name, peer_pid));
        // Everything not yet read goes out again; the worker drops ids it has seen. Each says
        // whether the next request's lease is granted, as every push does (the last one's word
        // is the one the worker keeps).
        let lease = self.lease_needs_no_check(name, &self.sup.budgets());
        for m in self.state.unread(name) {
            if let Ok(bytes) =
                frame::encode(&ServerFrame::Push(Push::Message { message: m, lease }))
            {
                self.responses.push((conn, None, bytes));
            }
        }
    }

    pub(crate) fn closed(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        self.board_watchers.remove(&conn);
        self.subscribers.remove(&conn);
        if let Actor::Agent(name) = session.actor
            && self.agent_conn.get(&name) == Some(&conn)
        {
            self.agent_conn.remove(&name);
            self.claim_waiters.retain(|w| *w != name);
            // Woken for a task it never asked for: the next waiter gets the turn.
            if let Some(task) = self.woken.remove(&name)
                && let Ok(t) = self.state.task_view(task)
            {
                self.wake_claimer(&t);
            }
            // The request its lease was for is over with its connection.
            self.state.drop_lease(&name);
            self.state.update_agent(&name, |a| a.info.connected = false);
            self.supervise(|s| s.disconnected());
            if name == LEADER && self.sup.leader_approves() {
                // The approver is gone: nobody can answer, so every waiting request is denied.
                let now = self.clock.wall();
                for p in self.state.perms(false) {
                    if let Some(r) = self.state.perm_expire(
                        p.id,
                        "approver-gone",
                        "the leader, who decides permissions, disconnected".into(),
                        now,
                    ) {
                        self.after_perm_resolved(&[r]);
                    }
                }
            }
        }
    }

    /// Whether a store failure is the disk being full (SQLite says so, or hardly a byte is
    /// left), which the daemon survives, rather than a failure it must stop for.
    pub(crate) fn disk_is_full(&self, e: &agent_team_store::StoreError) -> bool {
        e.is_disk_full() || self.low_disk()
    }

    /// Whether the disk holding the state has less than [`agent_team_paths::LOW_DISK_BYTES`].
    pub(crate) fn low_disk(&self) -> bool {
        agent_team_paths::free_bytes(&self.cfg.paths.dir)
            .is_some_and(|free| free < agent_team_paths::LOW_DISK_BYTES)
    }

    /// The error a write gets while the disk is full.
    pub(crate) fn storage_full_error(&self) -> ErrorBody {
        let free = agent_team_paths::free_bytes(&self.cfg.paths.dir);
        let path = self.cfg.paths.db.display().to_string();
        ErrorBody::with_details(
            ErrorCode::StorageFull,
            format!(
                "the disk holding {path} is full ({} bytes free); nothing was changed",
                free.map_or("?".to_string(), |f| f.to_string())
            ),
            json!({"path": path, "free_bytes": free}),
        )
    }

    /// The batch could not be stored because the disk is full: the state goes back to what is
    /// stored, every request of the batch is answered `storage_full`, and the daemon goes on
    /// serving (reads work; writes are tried again once there is room).
    pub(crate) fn refuse_batch_for_full_disk(
        &mut self,
    ) -> Result<(), agent_team_store::StoreError> {
        if !self.storage_full {
            tracing::error!(
                "the disk holding {} is full: refusing writes until space returns",
                self.cfg.paths.db.display()
            );
        }
        self.storage_full = true;
        let error = self.storage_full_error();
        let snapshot = self.store.load()?;
        let mut state = TeamState::restore(&self.cfg.team, snapshot);
        state.set_inbox_limit(self.cfg.inbox_limit);
        // Who is connected is a fact of the sockets, not of the disk.
        for s in self.sessions.values() {
            if let Actor::Agent(name) = &s.actor {
                state.update_agent(name, |a| a.info.connected = true);
            }
        }
        // That flag is not news for the disk: left as a change, it made every later batch
        // (reads too) try a commit and be refused again.
        let _ = state.take_changes();
        self.state = state;
        let answers = self.hooks.drop_lost_holds(&self.state, &error);
        self.deliver(answers);
        for (conn, id, bytes) in std::mem::take(&mut self.responses) {
            let Some(s) = self.sessions.get(&conn) else {
                continue;
            };
            match id {
                Some(id) => {
                    s.handle
                        .send_frame(&ServerFrame::response(id, Err(error.clone())));
                }
                None => {
                    s.handle.send(bytes);
                }
            }
        }
        Ok(())
    }

    /// The hooks, and what a hook call may touch of the core (disjoint parts of it).
    pub(crate) fn hooks_with(&mut self) -> (&mut crate::hooks::Hooks, crate::hooks::HookCx<'_>) {
        let now = self.clock.wall();
        let cx = crate::hooks::HookCx {
            state: &mut self.state,
            config: self.sup.config.as_ref(),
            team: &self.cfg.team,
            now,
        };
        (&mut self.hooks, cx)
    }

    /// Answers the requests a component says to answer.
    pub(crate) fn deliver(&mut self, answers: crate::hooks::Answers) {
        for (conn, id, outcome) in answers {
            self.answer(conn, id, outcome);
        }
    }

    /// Marks the queued hook runs started, commits that, and only then spawns them.
    fn start_hooks(&mut self) -> Result<(), agent_team_store::StoreError> {
        let (runs, ids) = self.hooks.mark_started(&mut self.state);
        if ids.is_empty() {
            return Ok(());
        }
        let changes = self.state.take_changes();
        if let Err(e) = self.store.commit(&changes) {
            if !self.disk_is_full(&e) {
                return Err(e);
            }
            // Nothing started: they start at a later commit, when there is room.
            self.refuse_batch_for_full_disk()?;
            self.hooks.requeue(ids);
            return Ok(());
        }
        self.route(&changes);
        let network = self.hooks_network();
        let sandbox = self
            .sup
            .config
            .as_ref()
            .and_then(|cfg| crate::confine::boundary(cfg, &self.cfg.paths, network));
        for run in runs {
            let (id, tx) = (run.id, self.self_tx.clone());
            tracing::info!(hook = %run.hook, id, command = %run.command, "running a hook");
            self.hooks.runner.start(
                run,
                sandbox.clone(),
                Box::new(move |outcome| {
                    let _ = tx.send(CoreMsg::HookDone { id, outcome });
                }),
            );
        }
        Ok(())
    }

    /// Commits the batch, then releases its responses and pushes.
    pub(crate) fn flush(&mut self) -> Result<(), agent_team_store::StoreError> {
        // `wait_for`s this batch settled are answered with it.
        self.supervise(|s| s.check_waits());
        let mut changes = self.state.take_changes();
        // Hook runs for this batch's events are stored with them.
        let (hooks, cx) = self.hooks_with();
        hooks.plan(cx, &changes);
        changes.extend(self.state.take_changes());
        let t0 = Instant::now();
        // A stopping team's batch that answers nobody (its agents going down) is not waited
        // for: the batch that answers the stop, or the last one, syncs it.
        let committed = if self.sup.stopping() && self.responses.is_empty() {
            self.store.commit_unsynced(&changes)
        } else {
            self.store.commit(&changes)
        };
        self.commit_time += t0.elapsed();
        if let Err(e) = committed {
            if self.disk_is_full(&e) {
                return self.refuse_batch_for_full_disk();
            }
            // The in-memory state is now ahead of the disk: answer nobody with success, and stop,
            // so the restarted daemon serves what is really stored.
            tracing::error!("commit failed, stopping: {e}");
            for (conn, _, _) in self.responses.drain(..) {
                if let Some(s) = self.sessions.get(&conn) {
                    s.handle.send_frame(&ServerFrame::Error {
                        error: ErrorBody::new(ErrorCode::Internal, format!("storage failed: {e}")),
                    });
                }
            }
            return Err(e);
        }
        if std::mem::take(&mut self.storage_full) {
            tracing::warn!("the disk has room again: writes are accepted");
        }
        for (conn, _, bytes) in self.responses.drain(..) {
            if let Some(s) = self.sessions.get(&conn) {
                s.handle.send(bytes);
            }
        }
        self.otel
            .observe(self.sup.config.as_ref(), &self.cfg.paths, &changes);
        self.route(&changes);
        self.state.recycle_changes(changes);
        self.supervise(|s| s.refresh_titles());
        self.start_hooks()?;
        self.catch_up_subscribers()
    }

    /// Pushes what the committed changes mean to the connected parties.
    /// Hands a committed event to `[notify]`: the team file's command, or the leader's bell
    /// and the desktop. Only queues it; the notification thread does the work.
    fn notify(&mut self, env: &Envelope) {
        use crate::notify::{Job, Target};
        if let Some(cfg) = &self.sup.config {
            self.notifier.chat(&cfg.notify, env, &self.cfg.paths);
        }
        let commanded = self
            .sup
            .config
            .as_ref()
            .and_then(|c| c.notify.command.as_ref())
            .is_some_and(|line| !line.trim().is_empty());
        let network = if commanded {
            self.hooks_network()
        } else {
            None
        };
        let Some(cfg) = &self.sup.config else { return };
        let target = match &cfg.notify.command {
            Some(line) if !line.trim().is_empty() => Target::Command {
                line: line.clone(),
                timeout: Duration::from_secs(cfg.notify.timeout_secs.max(1)),
                dir: cfg.workspace.clone(),
                sandbox: crate::confine::boundary(cfg, &self.cfg.paths, network),
            },
            _ if cfg.notify.bell => Target::Bell {
                pane: self.sup.pane_of(agent_team_protocol::names::LEADER),
            },
            _ => return,
        };
        let Ok(envelope) = serde_json::to_string(env) else {
            return;
        };
        self.notifier.send(Job {
            envelope,
            kind: crate::notify::kind(&env.event),
            summary: crate::notify::summary(env),
            target,
        });
    }

    /// Whether `agent` may take its next model request's budget lease as granted, unasked
    /// ([`Push::Message`]'s `lease`): it runs our model loop (an exec agent or an agent CLI takes
    /// no lease) and no budget limits it. A broadcast to a thousand teammates then starts
    /// their turns without a thousand `budget_check` round trips through the core.
    pub(crate) fn lease_needs_no_check(
        &self,
        agent: &str,
        budgets: &agent_team_state::BudgetConfig,
    ) -> bool {
        self.state.agent(agent).is_some_and(|rec| {
            self.sup.on_model_loop(rec) && !self.state.budget_limits(agent, budgets)
        })
    }

    pub(crate) fn route(&mut self, changes: &[Change]) {
        // Read once for all of a batch's messages (a broadcast's are a thousand).
        let budgets = match changes.iter().any(|c| matches!(c, Change::MessageNew(_))) {
            true => self.sup.budgets(),
            false => agent_team_state::BudgetConfig::default(),
        };
        for change in changes {
            match change {
                Change::MessageNew(m) => {
                    if let Some(s) = self
                        .agent_conn
                        .get(&m.to)
                        .and_then(|c| self.sessions.get(c))
                    {
                        s.handle.send_frame(&ServerFrame::Push(Push::Message {
                            message: m.clone(),
                            lease: self.lease_needs_no_check(&m.to, &budgets),
                        }));
                    }
                }
                Change::Event(env) => {
                    if crate::notify::wanted(&env.event) {
                        self.notify(env);
                    }
                    if let Event::TaskUpdated { task } = &env.event
                        && task.status == TaskStatus::Completed
                    {
                        self.completed.push(task.clone());
                    }
                    let mut bytes = None;
                    for c in &self.subscribers {
                        let Some(s) = self.sessions.get_mut(c) else {
                            continue;
                        };
                        let Some(sent) = s.sub else { continue };
                        // A subscriber still reading its backlog gets this event from the store.
                        if env.seq != sent + 1 {
                            continue;
                        }
                        // One that did not ask for its type passes over it.
                        if !wanted_by(s.sub_types, &env.event) {
                            s.sub = Some(env.seq);
                            continue;
                        }
                        let b = bytes.get_or_insert_with(|| {
                            frame::encode(&ServerFrame::Push(Push::Event {
                                envelope: Box::new(env.clone()),
                            }))
                            .unwrap_or_default()
                        });
                        s.handle.send(b.clone());
                        s.sub = Some(env.seq);
                    }
                }
                Change::Perm(p) if p.status != PermStatus::Pending => {
                    self.net_decided(p);
                    if let Some(s) = self
                        .agent_conn
                        .get(&p.agent)
                        .and_then(|c| self.sessions.get(c))
                    {
                        s.handle
                            .send_frame(&ServerFrame::Push(Push::PermissionDecided {
                                request: Box::new(p.clone()),
                            }));
                    }
                }
                Change::Task(t) => self.push_task(t),
                _ => {}
            }
        }
    }

    /// Sends subscribers that are behind the next chunk of their backlog from the store.
    fn catch_up_subscribers(&mut self) -> Result<(), agent_team_store::StoreError> {
        let last = self.state.last_seq();
        let room = self.subscriber_room();
        // Each gets at most what fits in its room, so a catch-up alone never cuts a slow reader.
        let behind: Vec<(ConnId, u64, usize)> = self
            .subscribers
            .iter()
            .filter_map(|c| self.sessions.get(c).map(|s| (c, s)))
            .filter_map(|(c, s)| {
                let free = room.saturating_sub(s.handle.queued());
                s.sub
                    .filter(|sent| *sent < last && free > 0)
                    .map(|sent| (*c, sent, free.min(BACKLOG_CHUNK)))
            })
            .collect();
        if self.waiting_for_room() && !self.room_timer {
            // Someone is behind but has not read what it was sent: look again a little later
            // instead of spinning.
            self.room_timer = true;
            self.schedule(ROOM_RECHECK, Timer::SubscriberRoom);
        }
        for (conn, sent, chunk) in behind {
            let events = self.store.events_since(sent, chunk)?;
            let Some(s) = self.sessions.get_mut(&conn) else {
                continue;
            };
            for env in events {
                let seq = env.seq;
                if wanted_by(s.sub_types, &env.event)
                    && !s.handle.send_frame(&ServerFrame::Push(Push::Event {
                        envelope: Box::new(env),
                    }))
                {
                    break;
                }
                s.sub = Some(seq);
            }
        }
        Ok(())
    }

    /// Whether a subscriber with room in its queue is still behind, so the loop should come
    /// round again at once.
    pub fn has_backlog(&self) -> bool {
        let last = self.state.last_seq();
        self.subscribed().any(|s| {
            s.sub.is_some_and(|sent| sent < last) && s.handle.queued() < self.subscriber_room()
        })
    }

    /// How many unread frames a subscriber may have before it gets more of its backlog:
    /// a catch-up never pushes a slow reader past the limit that would cut it off.
    fn subscriber_room(&self) -> usize {
        SUBSCRIBER_ROOM.min(self.cfg.max_queued_frames / 2).max(1)
    }

    /// Sends this connection the board's changes from now on: all of them to the operator,
    /// a board and the leader; to any other agent the ones it concerns ([`Core::push_task`]).
    pub(crate) fn watch_tasks(&mut self, conn: ConnId) {
        if let Some(sess) = self.sessions.get_mut(&conn) {
            sess.watch_tasks = true;
            if !matches!(&sess.actor, Actor::Agent(n) if n != LEADER) {
                self.board_watchers.insert(conn);
            }
        }
    }

    /// A task changed. Pushing every change to every agent cost each change a frame per agent
    /// and woke every idle teammate to ask for work (claims and adds slowed with the square
    /// of the team). So it goes to the whole-board watchers, to its owner and its creator, and,
    /// for a task that is now open (or one it unblocks), to one agent waiting for work.
    fn push_task(&mut self, t: &agent_team_protocol::Task) {
        let mut to: Vec<ConnId> = self.board_watchers.iter().copied().collect();
        for name in [t.owner.as_deref(), Some(t.created_by.as_str())]
            .into_iter()
            .flatten()
        {
            if let Some(c) = self.agent_conn.get(name)
                && self.sessions.get(c).is_some_and(|s| s.watch_tasks)
                && !to.contains(c)
            {
                to.push(*c);
            }
        }
        self.send_task(t, &to);
        if self.state.is_open(t.id) {
            self.wake_claimer(t);
        }
        if t.status == TaskStatus::Completed {
            let opened: Vec<u64> = self
                .state
                .dependents_of(t.id)
                .iter()
                .copied()
                .filter(|d| self.state.is_open(*d))
                .collect();
            for d in opened {
                if let Ok(task) = self.state.task_view(d) {
                    self.wake_claimer(&task);
                }
            }
        }
    }

    /// Pushes `t` to the oldest agent waiting for work that is still connected and watching.
    fn wake_claimer(&mut self, t: &agent_team_protocol::Task) {
        while let Some(name) = self.claim_waiters.pop_front() {
            let Some(c) = self.agent_conn.get(&name).copied() else {
                continue;
            };
            if !self.sessions.get(&c).is_some_and(|s| s.watch_tasks) {
                continue;
            }
            if !self.board_watchers.contains(&c) {
                self.send_task(t, &[c]);
            }
            self.woken.insert(name, t.id);
            return;
        }
    }

    fn send_task(&self, t: &agent_team_protocol::Task, to: &[ConnId]) {
        if to.is_empty() {
            return;
        }
        let bytes = frame::encode(&ServerFrame::Push(Push::Task {
            task: Box::new(t.clone()),
        }))
        .unwrap_or_default();
        for c in to {
            if let Some(s) = self.sessions.get(c) {
                s.handle.send(bytes.clone());
            }
        }
    }

    /// An agent's `task_claim_next` was answered: it waits for the next opened task when it
    /// found nothing, and is no longer owed a wake-up either way.
    pub(crate) fn claim_next_answered(&mut self, name: &str, found: bool) {
        self.woken.remove(name);
        if !found && !self.claim_waiters.iter().any(|w| w == name) {
            self.claim_waiters.push_back(name.to_string());
        }
    }

    /// Makes this connection a subscriber that has been sent events up to `sent`, of the
    /// types whose bits `types` holds (all, without it).
    pub(crate) fn subscribe(&mut self, conn: ConnId, sent: u64, types: Option<u32>) {
        if let Some(sess) = self.sessions.get_mut(&conn) {
            sess.sub = Some(sent);
            self.subscribers.insert(conn);
            sess.sub_types = types;
        }
    }

    /// The sessions of [`Core::subscribers`].
    fn subscribed(&self) -> impl Iterator<Item = &Session> {
        self.subscribers.iter().filter_map(|c| self.sessions.get(c))
    }

    /// Whether a subscriber is behind but still has a full queue of events it has not read.
    fn waiting_for_room(&self) -> bool {
        let last = self.state.last_seq();
        self.subscribed().any(|s| {
            s.sub.is_some_and(|sent| sent < last) && s.handle.queued() >= self.subscriber_room()
        })
    }
}

pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Compares secrets without stopping at the first difference.
fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(msg: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Unauthorized, msg)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod hooks_tests;
