//! The core: the one task that owns the team's state. Requests from every connection queue up
//! here; the core applies a whole batch of them in memory, commits their changes to SQLite in one
//! transaction (group commit), and only then releases the responses and pushes of that batch.
//!
//! Running on a single thread keeps the routing path free of thread hand-offs, and makes the
//! batch boundary the natural place for the one fsync the durability promise needs.

use crate::outbox::{ConnHandle, ConnId};
use agent_team_paths::TeamPaths;
use agent_team_protocol::frame;
use agent_team_protocol::names::{LEADER, OPERATOR};
use agent_team_protocol::*;
use agent_team_state::tasks::NewTask;
use agent_team_state::{Actor, AgentRecord, Change, TeamState};
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
    },
    /// A connection closed.
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// SIGTERM, SIGINT or a `shutdown` request: stop cleanly.
    Shutdown,
    /// A blocking supervisor operation finished.
    Sup(crate::supervisor::SupEvent),
    /// An agent may have ended (an in-process agent said so): check now rather than at the
    /// next poll.
    Poll,
    /// SIGCHLD: one of our children exited. Only an agent when the backend's agents are our
    /// children; with tmux it is one of our own tmux commands, and polling on it would run
    /// another tmux command whose exit is the next SIGCHLD (a busy loop).
    ChildExited,
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
    /// Unread frames that cut a client off (see [`crate::outbox::MAX_QUEUED_FRAMES`]).
    pub max_queued_frames: usize,
}

/// A request's outcome as it is remembered for retries.
fn outcome_json(outcome: &Result<Reply, ErrorBody>) -> String {
    serde_json::to_string(outcome).unwrap_or_else(|_| "null".into())
}

/// The most requests applied before a commit; bounds the latency one batch adds.
const MAX_BATCH: usize = 4096;
/// The most items in one page of a listing.
const PAGE_ITEMS: usize = 5000;
/// The most bytes of items in one page, leaving room for the frame around them.
const PAGE_BYTES: usize = 900 * 1024;

/// Takes items while they fit in one reply frame; the client asks for the rest with `after`.
fn page<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut used = 0;
    let mut out = Vec::new();
    for item in items.take(PAGE_ITEMS) {
        used += serde_json::to_vec(&item).map(|v| v.len() + 1).unwrap_or(0);
        if used > PAGE_BYTES && !out.is_empty() {
            break;
        }
        out.push(item);
    }
    out
}

/// The most backlog events sent to a catching-up subscriber per batch.
const BACKLOG_CHUNK: usize = 2000;
/// A subscriber gets more of its backlog only up to this many unread frames (or half the
/// frames that would cut it off, if fewer).
const SUBSCRIBER_ROOM: usize = 2 * BACKLOG_CHUNK;
/// How soon a subscriber with a full queue is looked at again.
const ROOM_RECHECK: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct Session {
    handle: ConnHandle,
    actor: Actor,
    /// For a subscriber: the newest sequence number it has been sent.
    sub: Option<u64>,
    watch_tasks: bool,
}

/// Things that happen later, in the core's own time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A permission request's time is up.
    PermTimeout(u64),
    /// A spawned incarnation's connect-back deadline.
    Connect(String, u64),
    /// A backoff is over: start the next incarnation.
    Restart(String, u64),
    /// The grace after a shutdown request is over.
    StopGrace(String, u64),
    /// Check the agents' processes.
    Poll,
    /// Check once more soon after an agent's connection dropped (its pane may not have been
    /// marked dead yet at the first look).
    PollAfterDisconnect,
    /// Stop waiting for agents and exit.
    ShutdownDeadline,
    /// See whether a subscriber that was not reading has made room for more of its backlog.
    SubscriberRoom,
}

/// The core's state: the team, the store, and who is connected.
pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) state: TeamState,
    store: Store,
    sessions: HashMap<ConnId, Session>,
    agent_conn: HashMap<String, ConnId>,
    responses: Vec<(ConnId, Vec<u8>)>,
    /// A [`Timer::SubscriberRoom`] is scheduled.
    room_timer: bool,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    pub(crate) stopping: bool,
    pub(crate) sup: crate::supervisor::Supervisor,
    pub(crate) self_tx: CoreTx,
    force_exit: bool,
    daemon_pid: u32,
    /// Batches committed and core messages handled, for the log.
    stats: (u64, u64),
    commit_time: Duration,
    /// Requests with a request id still waiting for their (asynchronous) answer, by the
    /// connection and frame id they will be answered on: whose request id it was.
    rid_pending: HashMap<(ConnId, u64), (String, String)>,
    /// Retries that arrived while their original was still in flight, answered with it.
    rid_retries: HashMap<(String, String), Vec<(ConnId, u64)>>,
    /// The time for timers and the restart policy (a fake one in tests).
    pub(crate) clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl Core {
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
        let mut core = Core {
            cfg,
            state,
            store,
            sessions: HashMap::new(),
            agent_conn: HashMap::new(),
            responses: Vec::new(),
            room_timer: false,
            timers: BinaryHeap::new(),
            stopping: false,
            sup: crate::supervisor::Supervisor {
                env,
                ..Default::default()
            },
            self_tx,
            force_exit: false,
            daemon_pid: std::process::id(),
            stats: (0, 0),
            commit_time: Duration::ZERO,
            rid_pending: HashMap::new(),
            rid_retries: HashMap::new(),
            clock,
        };
        core.state.set_inbox_limit(core.cfg.inbox_limit);
        core.recover();
        core
    }

    /// After a restart nobody is connected yet: fix up what the stored roster claims, and
    /// re-arm the timers of pending permission requests.
    fn recover(&mut self) {
        let now = Timestamp::now();
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
            let left = self.cfg.perm_timeout.saturating_sub(age);
            self.timers
                .push(Reverse((self.clock.now() + left, Timer::PermTimeout(p.id))));
        }
        self.sup_recover();
    }

    /// Arranges for `timer` to fire after `after`.
    pub(crate) fn schedule(&mut self, after: Duration, timer: Timer) {
        self.timers.push(Reverse((self.clock.now() + after, timer)));
    }

    /// Queues the answer to request `id` of `conn` (sent when the batch commits).
    pub(crate) fn answer(&mut self, conn: ConnId, id: u64, outcome: Result<Reply, ErrorBody>) {
        if let Some((identity, rid)) = self.rid_pending.remove(&(conn, id)) {
            self.state
                .remember_reply(&identity, &rid, outcome_json(&outcome));
            for (c, i) in self
                .rid_retries
                .remove(&(identity, rid))
                .unwrap_or_default()
            {
                self.queue_response(c, i, outcome.clone());
            }
        }
        self.queue_response(conn, id, outcome);
    }

    fn queue_response(&mut self, conn: ConnId, id: u64, outcome: Result<Reply, ErrorBody>) {
        let frame = ServerFrame::response(id, outcome);
        match frame::encode(&frame) {
            Ok(bytes) => self.responses.push((conn, bytes)),
            Err(e) => {
                let err =
                    ErrorBody::new(ErrorCode::Internal, format!("reply too large to send: {e}"));
                if let Ok(bytes) = frame::encode(&ServerFrame::response(id, Err(err))) {
                    self.responses.push((conn, bytes));
                }
            }
        }
    }

    /// Runs until shutdown; returns after the last batch is committed.
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<CoreMsg>,
    ) -> Result<(), agent_team_store::StoreError> {
        // Persist the recovery fix-ups before serving anyone.
        self.flush()?;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            // A subscriber reading its backlog keeps the loop turning without waiting.
            let backlog = self.has_backlog();
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => Some(m),
                    None => break,
                },
                _ = sleep_until(next_timer) => None,
                _ = tokio::task::yield_now(), if backlog => None,
            };
            self.fire_timers();
            if let Some(first) = first {
                self.handle(first);
                // Let the runtime poll the sockets once more before committing: requests that
                // arrived during the previous commit join this batch (group commit) instead of
                // each paying for an fsync of its own. `yield_now` resumes after that poll.
                tokio::task::yield_now().await;
            }
            let mut n = 1;
            while n < MAX_BATCH && !self.stopping {
                match rx.try_recv() {
                    Ok(m) => {
                        self.handle(m);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            self.stats.0 += 1;
            self.stats.1 += n as u64;
            self.flush()?;
            if self.stopping && (self.all_down() || self.force_exit) {
                break;
            }
            if rx.is_empty() {
                self.store.checkpoint(true)?;
            }
        }
        self.flush()?;
        self.backend_shutdown();
        tracing::info!(
            batches = self.stats.0,
            messages = self.stats.1,
            commit_ms = self.commit_time.as_millis() as u64,
            "core stopped"
        );
        for s in self.sessions.values() {
            s.handle.close();
        }
        Ok(())
    }

    pub(crate) fn fire_timers(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::PermTimeout(id) => {
                    let reason =
                        format!("no decision within {} s", self.cfg.perm_timeout.as_secs());
                    if let Some(req) =
                        self.state
                            .perm_expire(id, "timeout", reason, Timestamp::now())
                    {
                        self.after_perm_resolved(&[req]);
                    }
                }
                Timer::Connect(name, inc) => self.connect_deadline(&name, inc),
                Timer::Restart(name, inc) => self.restart_due(&name, inc),
                Timer::StopGrace(name, inc) => self.stop_grace_over(&name, inc),
                Timer::Poll => {
                    self.poll();
                    self.schedule(crate::supervisor::POLL_EVERY, Timer::Poll);
                }
                Timer::PollAfterDisconnect => self.poll(),
                Timer::SubscriberRoom => self.room_timer = false,
                Timer::ShutdownDeadline => {
                    tracing::warn!("agents did not all stop in time; exiting anyway");
                    self.force_exit = true;
                }
            }
        }
    }

    pub(crate) fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Hello {
                conn,
                hello,
                peer_pid,
                handle,
                reply,
            } => {
                // The welcome goes out with the batch, ahead of any pushes queued behind it.
                let mark = self.responses.len();
                let verdict = self.hello(conn, hello, peer_pid, handle);
                if let Ok(w) = &verdict
                    && let Ok(bytes) = frame::encode(&ServerFrame::Welcome(w.clone()))
                {
                    self.responses.insert(mark, (conn, bytes));
                }
                let _ = reply.send(verdict);
            }
            CoreMsg::Request { conn, id, req, rid } => {
                let Some(actor) = self.sessions.get(&conn).map(|s| s.actor.clone()) else {
                    return;
                };
                // A mutating request with a request id is applied once: a retry is answered
                // with the first reply (remembered durably), or joins it while in flight.
                let rid = rid.filter(|_| req.is_mutating());
                if let Some(r) = &rid {
                    if r.is_empty() || r.len() > MAX_RID_LEN {
                        let e = ErrorBody::new(
                            ErrorCode::BadRequest,
                            format!("a request id (rid) has 1-{MAX_RID_LEN} bytes"),
                        );
                        return self.answer(conn, id, Err(e));
                    }
                    if let Some(json) = self.state.replay(actor.name(), r) {
                        let outcome = serde_json::from_str(json).unwrap_or_else(|e| {
                            Err(internal(&format!("cannot read the remembered reply: {e}")))
                        });
                        return self.answer(conn, id, outcome);
                    }
                    if !self.rid_retries.is_empty() {
                        let key = (actor.name().to_string(), r.clone());
                        if let Some(retries) = self.rid_retries.get_mut(&key) {
                            retries.push((conn, id));
                            return;
                        }
                    }
                }
                let outcome = match req {
                    Request::Spawn { role, name } => {
                        self.spawn_request(&actor, conn, id, role, name).transpose()
                    }
                    Request::Kill { name } => {
                        self.kill_request(&actor, conn, id, &name).transpose()
                    }
                    Request::Restart { name } => {
                        self.restart_request(&actor, conn, id, &name).transpose()
                    }
                    other => Some(self.request(conn, &actor, other)),
                };
                match (outcome, rid) {
                    (Some(outcome), Some(rid)) => {
                        self.state
                            .remember_reply(actor.name(), &rid, outcome_json(&outcome));
                        self.answer(conn, id, outcome);
                    }
                    (Some(outcome), None) => self.answer(conn, id, outcome),
                    (None, Some(rid)) => {
                        let key = (actor.name().to_string(), rid);
                        self.rid_retries.insert(key.clone(), Vec::new());
                        self.rid_pending.insert((conn, id), key);
                    }
                    (None, None) => {}
                }
            }
            CoreMsg::Closed { conn } => self.closed(conn),
            CoreMsg::Shutdown => self.begin_shutdown(),
            CoreMsg::Sup(ev) => self.sup_event(ev),
            CoreMsg::Poll => self.poll(),
            CoreMsg::ChildExited => {
                if self
                    .sup
                    .backend
                    .as_ref()
                    .is_some_and(|b| b.agents_are_children())
                {
                    self.poll();
                }
            }
        }
    }

    fn hello(
        &mut self,
        conn: ConnId,
        hello: Hello,
        _peer_pid: Option<u32>,
        handle: ConnHandle,
    ) -> Result<Welcome, ErrorBody> {
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
        let team = self.cfg.team.clone();
        let daemon_pid = self.daemon_pid;
        let welcome = move |identity: &str, role: &str, incarnation: u64| Welcome {
            protocol: PROTOCOL_VERSION,
            team: team.clone(),
            identity: identity.to_string(),
            role: role.to_string(),
            incarnation,
            daemon_pid,
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
                let Some(rec) = self.state.agent(&name) else {
                    return Err(unauthorized("unknown agent or wrong secret"));
                };
                if !secret_eq(&secret, &rec.secret) {
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
                let role = rec.info.role.clone();
                // A reconnect replaces a half-dead older connection of the same agent.
                if let Some(old) = self.agent_conn.insert(name.clone(), conn)
                    && let Some(s) = self.sessions.remove(&old)
                {
                    s.handle.close();
                }
                self.sessions.insert(
                    conn,
                    Session {
                        handle: handle.clone(),
                        actor: Actor::Agent(name.clone()),
                        sub: None,
                        watch_tasks: false,
                    },
                );
                let now = Timestamp::now();
                self.state.update_agent(&name, |a| a.info.connected = true);
                if matches!(
                    self.state.agent(&name).map(|a| a.info.status),
                    Some(AgentStatus::Starting | AgentStatus::Backoff)
                ) {
                    self.state.set_agent_status(
                        &name,
                        AgentStatus::Running,
                        Some("connected".into()),
                        now,
                    );
                }
                self.on_connected(&name, _peer_pid);
                // Everything not yet read goes out again; the worker drops ids it has seen.
                for m in self.state.unread(&name) {
                    if let Ok(bytes) =
                        frame::encode(&ServerFrame::Push(Push::Message { message: m }))
                    {
                        self.responses.push((conn, bytes));
                    }
                }
                Ok(welcome(&name, &role, current))
            }
        }
    }

    fn closed(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        if let Actor::Agent(name) = session.actor
            && self.agent_conn.get(&name) == Some(&conn)
        {
            self.agent_conn.remove(&name);
            self.state.update_agent(&name, |a| a.info.connected = false);
            if !self.stopping {
                // A dropped connection is often a death: look now, and once more shortly, rather
                // than at the next periodic poll.
                self.poll();
                self.schedule(
                    crate::supervisor::RECHECK_AFTER_DISCONNECT,
                    Timer::PollAfterDisconnect,
                );
            }
            if name == LEADER && self.leader_approves() {
                // The approver is gone: nobody can answer, so every waiting request is denied.
                let now = Timestamp::now();
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

    fn leader_approves(&self) -> bool {
        self.sup
            .config
            .as_ref()
            .is_some_and(|c| c.approver == agent_team_config::Approver::Leader)
    }

    /// Shows a new request to whoever decides: a `permission` message to the leader (its pane
    /// prompts the human, or its model decides when it is the approver). With the leader as
    /// approver and not connected, the request is denied at once.
    fn route_to_approver(&mut self, req: &PermRequest) {
        let now = Timestamp::now();
        let leader_connected = self.state.agent(LEADER).is_some_and(|l| l.info.connected);
        if self.leader_approves() && !leader_connected {
            if let Some(r) = self.state.perm_expire(
                req.id,
                "approver-gone",
                "the leader, who decides permissions, is not connected".into(),
                now,
            ) {
                self.after_perm_resolved(&[r]);
            }
            return;
        }
        if self.state.live_names().iter().any(|n| n == LEADER) {
            let reason = if req.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", req.reason)
            };
            let body = format!(
                "request {}: {} wants to run {} `{}`{reason}",
                req.id, req.agent, req.tool, req.input
            );
            let _ = self.state.send(
                &Actor::Daemon,
                LEADER,
                body,
                MessageKind::Permission,
                Some(format!("permission request {}", req.id)),
                now,
            );
        }
    }

    /// Commits the batch, then releases its responses and pushes.
    pub(crate) fn flush(&mut self) -> Result<(), agent_team_store::StoreError> {
        let changes = self.state.take_changes();
        let t0 = Instant::now();
        let committed = self.store.commit(&changes);
        self.commit_time += t0.elapsed();
        if let Err(e) = committed {
            // The in-memory state is now ahead of the disk: answer nobody with success, and stop,
            // so the restarted daemon serves what is really stored.
            tracing::error!("commit failed, stopping: {e}");
            for (conn, _) in self.responses.drain(..) {
                if let Some(s) = self.sessions.get(&conn) {
                    s.handle.send_frame(&ServerFrame::Error {
                        error: ErrorBody::new(ErrorCode::Internal, format!("storage failed: {e}")),
                    });
                }
            }
            return Err(e);
        }
        for (conn, bytes) in self.responses.drain(..) {
            if let Some(s) = self.sessions.get(&conn) {
                s.handle.send(bytes);
            }
        }
        self.route(&changes);
        self.refresh_titles();
        self.catch_up_subscribers()
    }

    /// Pushes what the committed changes mean to the connected parties.
    fn route(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::MessageNew(m) => {
                    if let Some(s) = self
                        .agent_conn
                        .get(&m.to)
                        .and_then(|c| self.sessions.get(c))
                    {
                        s.handle
                            .send_frame(&ServerFrame::Push(Push::Message { message: m.clone() }));
                    }
                }
                Change::Event(env) => {
                    let mut bytes = None;
                    for s in self.sessions.values_mut() {
                        let Some(sent) = s.sub else { continue };
                        // A subscriber still reading its backlog gets this event from the store.
                        if env.seq != sent + 1 {
                            continue;
                        }
                        let b = bytes.get_or_insert_with(|| {
                            frame::encode(&ServerFrame::Push(Push::Event {
                                envelope: env.clone(),
                            }))
                            .unwrap_or_default()
                        });
                        s.handle.send(b.clone());
                        s.sub = Some(env.seq);
                    }
                }
                Change::Perm(p) if p.status != PermStatus::Pending => {
                    if let Some(s) = self
                        .agent_conn
                        .get(&p.agent)
                        .and_then(|c| self.sessions.get(c))
                    {
                        s.handle
                            .send_frame(&ServerFrame::Push(Push::PermissionDecided {
                                request: p.clone(),
                            }));
                    }
                }
                Change::Task(t) => {
                    let mut bytes = None;
                    for s in self.sessions.values().filter(|s| s.watch_tasks) {
                        let b = bytes.get_or_insert_with(|| {
                            frame::encode(&ServerFrame::Push(Push::Task { task: t.clone() }))
                                .unwrap_or_default()
                        });
                        s.handle.send(b.clone());
                    }
                }
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
            .sessions
            .iter()
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
                if !s
                    .handle
                    .send_frame(&ServerFrame::Push(Push::Event { envelope: env }))
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
        self.sessions.values().any(|s| {
            s.sub.is_some_and(|sent| sent < last) && s.handle.queued() < self.subscriber_room()
        })
    }

    /// How many unread frames a subscriber may have before it gets more of its backlog:
    /// a catch-up never pushes a slow reader past the limit that would cut it off.
    fn subscriber_room(&self) -> usize {
        SUBSCRIBER_ROOM.min(self.cfg.max_queued_frames / 2).max(1)
    }

    /// Whether a subscriber is behind but still has a full queue of events it has not read.
    fn waiting_for_room(&self) -> bool {
        let last = self.state.last_seq();
        self.sessions.values().any(|s| {
            s.sub.is_some_and(|sent| sent < last) && s.handle.queued() >= self.subscriber_room()
        })
    }

    fn request(&mut self, conn: ConnId, actor: &Actor, req: Request) -> Result<Reply, ErrorBody> {
        let now = Timestamp::now();
        let s = &mut self.state;
        match req {
            Request::Ping => Ok(Reply::Pong {
                daemon_pid: self.daemon_pid,
            }),
            Request::TeamInfo => Ok(Reply::Team {
                team: self.team_info(),
            }),
            Request::TaskAdd {
                title,
                description,
                run,
                blocked_by,
                assign,
                key,
            } => {
                let new = NewTask {
                    title,
                    description,
                    run,
                    blocked_by,
                    assign,
                    key,
                };
                s.task_add(actor, new, now).map(|task| Reply::Task { task })
            }
            Request::TaskList { status, after } => {
                let after = after.unwrap_or(0);
                Ok(Reply::Tasks {
                    tasks: page(s.tasks(status).into_iter().filter(|t| t.id > after)),
                })
            }
            Request::TaskShow { id } => s.task(id).cloned().map(|task| Reply::Task { task }),
            Request::TaskClaim { id } => s
                .task_claim(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::TaskClaimNext => s
                .task_claim_next(actor, now)
                .map(|task| Reply::MaybeTask { task }),
            Request::TaskAssign { id, to } => s
                .task_assign(actor, id, &to, now)
                .map(|task| Reply::Task { task }),
            Request::TaskRelease { id } => s
                .task_release(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::TaskFinish { id, status, result } => s
                .task_finish(actor, id, status, result, now)
                .map(|task| Reply::Task { task }),
            Request::TaskCancel { id } => s
                .task_cancel(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::TaskRetry { id } => s
                .task_retry(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::WatchTasks => {
                if let Some(sess) = self.sessions.get_mut(&conn) {
                    sess.watch_tasks = true;
                }
                Ok(Reply::Done)
            }
            Request::Send {
                to,
                body,
                kind,
                summary,
                dedup,
            } => match dedup {
                Some(key) => s.send_once(actor, key, &to, body, kind, summary, now),
                None => s.send(actor, &to, body, kind, summary, now),
            }
            .map(|(ids, recipients)| Reply::Sent { ids, recipients }),
            Request::Inbox {
                agent,
                unread_only,
                after,
            } => self.inbox(actor, agent, unread_only, after.unwrap_or(0)),
            Request::Ack { ids, state } => s.ack(actor, &ids, state, now).map(|_| Reply::Done),
            Request::PermRequest {
                tool,
                input,
                reason,
            } => {
                let req = s.perm_request(actor, tool, input, reason, now)?;
                if req.status == PermStatus::Pending {
                    s.set_agent_status(&req.agent, AgentStatus::Waiting, None, now);
                    let at = self.clock.now() + self.cfg.perm_timeout;
                    self.timers.push(Reverse((at, Timer::PermTimeout(req.id))));
                    self.route_to_approver(&req);
                }
                let request = self.state.perm(req.id).cloned().unwrap_or(req);
                Ok(Reply::Perm { request })
            }
            Request::PermList { all, after } => {
                let after = after.unwrap_or(0);
                Ok(Reply::Perms {
                    requests: page(s.perms(all).into_iter().filter(|p| p.id > after)),
                })
            }
            Request::PermDecide {
                id,
                allow,
                always,
                pattern,
                reason,
            } => {
                let resolved = s.perm_decide(actor, id, allow, always, pattern, reason, now)?;
                self.after_perm_resolved(&resolved);
                let request = resolved
                    .into_iter()
                    .next()
                    .ok_or_else(|| internal("decision resolved nothing"))?;
                Ok(Reply::Perm { request })
            }
            Request::Events { since, limit } => {
                self.flush_for_read()?;
                let limit = limit.unwrap_or(PAGE_ITEMS as u32).min(PAGE_ITEMS as u32) as usize;
                let events = self.store.events_since(since, limit).map_err(store_error)?;
                Ok(Reply::Events {
                    events: page(events.into_iter()),
                })
            }
            Request::Subscribe { since } => {
                let last_seq = s.last_seq();
                if let Some(sess) = self.sessions.get_mut(&conn) {
                    // The backlog (and anything newer) is sent after this batch commits.
                    sess.sub = Some(since.min(last_seq));
                }
                Ok(Reply::Subscribed { last_seq })
            }
            Request::Emit { event } => s.emit(actor, event, now).map(|_| Reply::Done),
            Request::Agents => Ok(Reply::Agents {
                agents: self.agents(),
            }),
            Request::Register { name, role } => self.register(actor, name, role, now),
            Request::SetStatus { status, error } => s
                .report_status(actor, status, error, now)
                .map(|agent| Reply::Agent { agent }),
            Request::StartRun { goal } => self.start_run(actor, goal),
            Request::Configure { config } => self.configure(actor, config),
            Request::GetConfig => Ok(Reply::Config {
                config: s.config().cloned().unwrap_or(serde_json::Value::Null),
            }),
            Request::Finish {
                answer,
                force,
                success,
            } => {
                s.finish(actor, answer, force, success, now)?;
                self.finish_team();
                Ok(Reply::Done)
            }
            Request::Shutdown => {
                if *actor != Actor::Operator {
                    return Err(ErrorBody::new(
                        ErrorCode::PermissionDenied,
                        "only the operator may shut the daemon down",
                    ));
                }
                self.begin_shutdown();
                Ok(Reply::Done)
            }
            Request::Spawn { .. } | Request::Kill { .. } | Request::Restart { .. } => {
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    "lifecycle requests are handled before dispatch",
                ))
            }
        }
    }

    fn after_perm_resolved(&mut self, resolved: &[PermRequest]) {
        let now = Timestamp::now();
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

    fn flush_for_read(&mut self) -> Result<(), ErrorBody> {
        if self.state.has_changes() {
            let changes = self.state.take_changes();
            self.store.commit(&changes).map_err(store_error)?;
            // Responses wait for the batch's end; pushes of these changes go out now.
            self.route(&changes);
        }
        Ok(())
    }

    fn inbox(
        &mut self,
        actor: &Actor,
        agent: Option<String>,
        unread_only: bool,
        after: u64,
    ) -> Result<Reply, ErrorBody> {
        let whose = match (agent, actor) {
            (Some(a), _) => a,
            (None, Actor::Agent(n)) => n.clone(),
            _ => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "name the agent whose inbox to show",
                ));
            }
        };
        self.state.check_inbox_access(actor, &whose)?;
        if unread_only {
            let unread = self
                .state
                .unread(&whose)
                .into_iter()
                .filter(|m| m.id > after);
            return Ok(Reply::Messages {
                messages: page(unread),
            });
        }
        self.flush_for_read()?;
        let mut messages = self
            .store
            .inbox(&whose, after, PAGE_ITEMS)
            .map_err(store_error)?;
        // The in-memory copy of an unread message is newer than the stored one.
        let unread: HashMap<u64, Message> = self
            .state
            .unread(&whose)
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        for m in &mut messages {
            if let Some(u) = unread.get(&m.id) {
                *m = u.clone();
            }
        }
        Ok(Reply::Messages {
            messages: page(messages.into_iter()),
        })
    }

    fn register(
        &mut self,
        actor: &Actor,
        name: String,
        role: String,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        if *actor != Actor::Operator {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the operator registers external agents",
            ));
        }
        if (name == LEADER) != (role == LEADER) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "the name `leader` is reserved for the leader role",
            ));
        }
        let secret = agent_team_paths::new_secret()
            .map_err(|e| internal(&format!("cannot make a secret: {e}")))?;
        let info = AgentInfo {
            name,
            role,
            status: AgentStatus::Starting,
            backend: "external".into(),
            pid: None,
            pgid: None,
            pane: None,
            incarnation: 1,
            restarts: 0,
            current_task: None,
            last_activity: now,
            connected: false,
            last_exit: None,
            error: None,
        };
        let agent = self.state.add_agent(
            actor,
            AgentRecord {
                info,
                secret: secret.clone(),
                spec: serde_json::Value::Null,
            },
            now,
        )?;
        Ok(Reply::Registered { agent, secret })
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.state.agents()
    }

    fn team_info(&self) -> TeamInfo {
        let (agents, tasks) = self.state.counts();
        let run = self.state.run();
        TeamInfo {
            name: self.cfg.team.clone(),
            daemon_pid: self.daemon_pid,
            protocol: PROTOCOL_VERSION,
            state_dir: self.cfg.paths.dir.display().to_string(),
            socket: self.cfg.paths.socket.display().to_string(),
            goal: run.goal.clone(),
            run: run.state,
            answer: run.answer.clone(),
            agents,
            tasks,
            last_seq: self.state.last_seq(),
            backend: None,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
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

fn internal(msg: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, msg)
}

fn store_error(e: agent_team_store::StoreError) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("storage failed: {e}"))
}
