//! The core's loop: it takes what reaches it in batches, applies each message (a request
//! through [`crate::handlers::dispatch`], a supervisor event, a hook's or git work's outcome),
//! fires the timers that are due and commits the batch. It sits above the core and the
//! modules that work on it, so the core itself calls none of them.

use crate::core::{
    Core, CoreMsg, HOLD_UNANSWERED, MAX_BATCH, MAX_RID_LEN, RETENTION_EVERY, Timer, WELCOME_TURNS,
    sleep_until,
};
use crate::outbox::ConnId;
use agent_team_protocol::frame;
use agent_team_protocol::*;
use agent_team_state::Actor;
use std::cmp::Reverse;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

impl Core {
    /// Commits the batch; then the tasks it completed have their worktree teammates' work
    /// committed (off the core).
    fn commit_batch(&mut self) -> Result<(), agent_team_store::StoreError> {
        self.flush()?;
        for task in std::mem::take(&mut self.completed) {
            self.commit_task_work(&task);
        }
        Ok(())
    }

    /// Runs until shutdown; returns after the last batch is committed.
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<CoreMsg>,
    ) -> Result<(), agent_team_store::StoreError> {
        // Persist the recovery fix-ups before serving anyone.
        self.commit_batch()?;
        // When a held batch ([`HOLD_UNANSWERED`]) must be committed at the latest.
        let mut hold_until: Option<Instant> = None;
        loop {
            // The frames the last batch held back for in-process agents go a slice at a time,
            // each after the runtime turned (the agents woken by the slice before run then).
            while self.pacer.holds() {
                tokio::task::yield_now().await;
                self.pacer.release();
            }
            // Nothing held: the batch to come has a whole slice to send at once.
            self.pacer.release();
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            // A subscriber reading its backlog keeps the loop turning without waiting.
            let backlog = self.has_backlog();
            let first = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => Some(m),
                    None => break,
                },
                _ = sleep_until(next_timer) => None,
                _ = sleep_until(hold_until), if hold_until.is_some() => None,
                _ = tokio::task::yield_now(), if backlog => None,
            };
            let fired = self.fire_timers();
            // Whether this batch is made only of requests nobody waits for (to commit).
            let mut unanswered = first.is_some() && !fired;
            if let Some(first) = first {
                unanswered &= is_unanswered(&first);
                self.handle(first);
                // Let the runtime poll the sockets once more before committing: requests that
                // arrived during the previous commit join this batch (group commit) instead of
                // each paying for an fsync of its own. `yield_now` resumes after that poll.
                tokio::task::yield_now().await;
            }
            let n = self.drain(&mut rx, 1, &mut unanswered);
            let n = self.run_inside_agents(&mut rx, n, &mut unanswered).await;
            self.stats.1 += n as u64;
            // Nobody waits for it and nothing is to be sent: it is synced with the next batch,
            // or HOLD_UNANSWERED after the first batch held (a steady stream of them too).
            let due = hold_until.is_some_and(|at| Instant::now() >= at);
            if unanswered && !due && self.responses.is_empty() && !self.sup.stopping() {
                self.held += 1;
                hold_until.get_or_insert_with(|| Instant::now() + HOLD_UNANSWERED);
                continue;
            }
            hold_until = None;
            self.stats.0 += 1;
            self.commit_vanishing(|core| core.commit_batch())?;
            if self.sup.stopping() && (self.sup.all_down() || self.force_exit) {
                break;
            }
            // The WAL is copied back when nothing waits, or under load once it holds enough
            // (`Store::checkpoint`). Not while the team stops: what it holds then is the
            // store's close to copy back or leave, on a thread of its own as the runtime ends
            // (copied here it held up the agents' stop on the disk: ~25 ms of a thousand
            // agents' `down`).
            if !self.sup.stopping()
                && let Err(e) = self.store.checkpoint(rx.is_empty())
            {
                // A full disk can keep the WAL from being copied back; it is tried again later.
                if !self.disk_is_full(&e) {
                    return Err(e);
                }
            }
        }
        self.pacer.release_all();
        let wound = self.wind_down();
        // The core goes on a blocking thread while the runtime ends: closing the store may copy
        // a large WAL back into the database (waiting on the disk) and a large team's state
        // takes a while to free. The runtime's end waits for it, and the daemon lets go of its
        // lock only after that (`end_then_let_go`). A state whose process ends next is not
        // freed at all: the process's end takes its memory back whole.
        let blocking = self.blocking.clone();
        blocking.spawn(move || {
            let core = self;
            if core.cfg.ends_process {
                std::mem::forget(core.state);
            }
        });
        wound
    }

    /// Lets the agents this batch started or welcomed inside the daemon run before it commits
    /// (their hellos and first model requests join it); how many messages the batch holds.
    async fn run_inside_agents(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<CoreMsg>,
        mut n: usize,
        unanswered: &mut bool,
    ) -> usize {
        // Agents this batch started inside the daemon run once before it commits: their
        // hellos join it, and one synced commit holds their spawns and their starts.
        if std::mem::take(&mut self.started_inside) && n < MAX_BATCH {
            tokio::task::yield_now().await;
            n = self.drain(rx, n, unanswered);
        }
        // In-process agents welcomed in this batch get to their first model request first.
        if std::mem::take(&mut self.welcomed_inside) {
            for _ in 0..WELCOME_TURNS {
                if n >= MAX_BATCH {
                    break;
                }
                tokio::task::yield_now().await;
                n = self.drain(rx, n, unanswered);
            }
            // Agents welcomed during those turns had them too.
            self.welcomed_inside = false;
        }
        n
    }

    /// After the loop: the last commit, the backend and notifications finished, the sessions
    /// closed and, for a team stopped on purpose, its sandboxes' leftovers cleared.
    fn wind_down(&mut self) -> Result<(), agent_team_store::StoreError> {
        self.commit_vanishing(|core| core.commit_batch())?;
        // What the stop committed without a sync of its own is on disk before the daemon ends.
        self.commit_vanishing(|core| core.store.settle())?;
        self.sup.backend_shutdown();
        // The last notifications (the run's end) run before the daemon exits, bounded by the
        // team's notify timeout.
        let limit = self
            .sup
            .config
            .as_ref()
            .map_or(5, |c| c.notify.timeout_secs.clamp(1, 30));
        self.notifier.finish(Duration::from_secs(limit));
        self.otel.close();
        tracing::info!(
            batches = self.stats.0,
            held = self.held,
            messages = self.stats.1,
            commit_ms = self.commit_time.as_millis() as u64,
            "core stopped"
        );
        for s in self.sessions.values() {
            s.handle.close();
        }
        if self.cfg.paths.stopped.exists() && self.sup.all_down() {
            self.clear_away();
        }
        Ok(())
    }

    /// A team stopped on purpose with every agent down leaves nothing of its sandboxes behind:
    /// the stand-ins that kept missing protected paths from being made in its workspace, and
    /// its agents' proxy sockets.
    fn clear_away(&self) {
        if let Some(cfg) = &self.sup.config {
            agent_team_sandbox::remove_blocks(&cfg.workspace);
        }
        if let Some(runtime) = self.cfg.paths.socket.parent() {
            let net = agent_team_paths::net_dir(runtime, &self.cfg.team, "x");
            if let Some(dir) = net.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Runs a commit step; once the team's files are gone ([`Core::vanished`]) a failure is
    /// only logged, so the agents are still stopped and the panes closed.
    fn commit_vanishing(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<(), agent_team_store::StoreError>,
    ) -> Result<(), agent_team_store::StoreError> {
        match step(self) {
            Err(e) if self.vanished => {
                tracing::debug!("the store's files are gone: {e}");
                Ok(())
            }
            other => other,
        }
    }

    /// Sends an in-process agent its welcome (queued at `mark`) and the pushes queued behind
    /// it now, not after the batch's commit: the agent then makes its first model request
    /// while the commit syncs, instead of after it. Nobody outside this process is told
    /// anything before the commit: the agent shares the daemon's process and thread, a crash
    /// before the commit ends it with the daemon, and what it did by then stands as an agent's
    /// work does when a crash loses its report. (A batch refused for a full disk sends its
    /// welcomes and pushes too, see `refuse_batch_for_full_disk`.) Agents over the socket are
    /// welcomed after the commit.
    fn welcome_in_process_now(&mut self, conn: ConnId, mark: usize) {
        if !self.in_process_agent(conn) {
            return;
        }
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        self.welcomed_inside = true;
        let mut i = mark;
        while i < self.responses.len() {
            if self.responses[i].0 == conn && self.responses[i].1.is_none() {
                let (_, _, bytes) = self.responses.remove(i);
                s.handle.send(bytes);
            } else {
                i += 1;
            }
        }
    }

    /// Whether `conn` is an in-process agent's in-memory connection ([`ConnHandle::in_process`]).
    ///
    /// [`ConnHandle::in_process`]: crate::outbox::ConnHandle::in_process
    fn in_process_agent(&self, conn: ConnId) -> bool {
        self.sessions
            .get(&conn)
            .is_some_and(|s| s.handle.in_process() && matches!(s.actor, Actor::Agent(_)))
    }

    /// Handles what is queued for the core, up to [`MAX_BATCH`] messages in the batch (`n`
    /// so far); returns the batch's count. `unanswered` stays true while every message is one
    /// nobody waits for.
    fn drain(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<CoreMsg>,
        mut n: usize,
        unanswered: &mut bool,
    ) -> usize {
        while n < MAX_BATCH && !self.sup.stopping() {
            match rx.try_recv() {
                Ok(m) => {
                    *unanswered &= is_unanswered(&m);
                    self.handle(m);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    /// Fires the timers that are due; returns whether any was.
    pub(crate) fn fire_timers(&mut self) -> bool {
        let now = self.clock.now();
        let mut fired = false;
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            fired = true;
            match timer {
                Timer::PermTimeout(id) => {
                    let reason = format!("no decision within {} s", self.perm_timeout().as_secs());
                    if let Some(req) =
                        self.state
                            .perm_expire(id, "timeout", reason, self.clock.wall())
                    {
                        self.after_perm_resolved(&[req]);
                    }
                }
                Timer::Sup(t) => self.supervise(|s| s.timer(t)),
                Timer::SubscriberRoom => self.room_timer = false,
                Timer::Retention => {
                    self.apply_retention();
                    self.schedule(RETENTION_EVERY, Timer::Retention);
                }
            }
        }
        fired
    }

    /// One message to the core: a hello, a request, a closed connection, a stop, a supervisor
    /// or hook event.
    pub(crate) fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Hello {
                conn,
                hello,
                peer_pid,
                handle,
                reply,
            } => self.on_hello(conn, hello, peer_pid, handle, reply),
            CoreMsg::Request {
                conn,
                id,
                req,
                rid,
                no_reply,
            } => self.on_request(conn, id, req, rid, no_reply),
            CoreMsg::Closed { conn } => self.closed(conn),
            CoreMsg::Shutdown => self.stop_on_purpose(),
            CoreMsg::Vanished {
                runtime_intact,
                force,
            } => self.stop_vanished(runtime_intact, force),
            CoreMsg::Sup(ev) => self.supervise(|s| s.sup_event(ev)),
            CoreMsg::Ended(name) => self.supervise(|s| s.poll_one(name)),
            CoreMsg::ChildExited => self.supervise(|s| s.child_exited()),
            CoreMsg::HookDone { id, outcome } => {
                let (hooks, cx) = self.hooks_with();
                let answers = hooks.done(cx, id, outcome);
                self.deliver(answers);
            }
            CoreMsg::WorkDone { conn, id, done } => self.work_done(conn, id, done),
            CoreMsg::NetAsk { agent, dest, reply } => self.net_ask(agent, dest, reply),
            CoreMsg::Gateway(msg) => self.gateway_msg(msg),
        }
    }

    /// A hello: its verdict, with the welcome (and a starting agent's first reads) queued
    /// ahead of any pushes behind it, and an agent's egress proxy served.
    fn on_hello(
        &mut self,
        conn: ConnId,
        hello: Hello,
        peer_pid: Option<u32>,
        handle: crate::outbox::ConnHandle,
        reply: tokio::sync::oneshot::Sender<Result<Welcome, ErrorBody>>,
    ) {
        // The welcome goes out with the batch, ahead of any pushes queued behind it.
        let mark = self.responses.len();
        let start = hello.start;
        let verdict = self.hello(conn, hello, peer_pid, handle);
        // The hello queued the agent's unread messages behind the welcome: a starting
        // agent is told how many, to take them in before its first turn.
        let pushed = self.responses[mark..]
            .iter()
            .filter(|(c, id, _)| *c == conn && id.is_none())
            .count();
        // An agent starting its loop gets its first reads with the welcome.
        let unread = u32::try_from(pushed).unwrap_or(u32::MAX);
        let reads = self
            .sessions
            .get(&conn)
            .map(|s| s.actor.clone())
            .filter(|a| start && verdict.is_ok() && matches!(a, Actor::Agent(_)))
            .and_then(|actor| crate::handlers::start_reads(self, conn, &actor, unread));
        if let Ok(w) = &verdict
            && let Ok(bytes) = frame::encode(&ServerFrame::Welcome(Welcome {
                start: reads,
                ..w.clone()
            }))
        {
            self.responses.insert(mark, (conn, None, bytes));
            self.welcome_in_process_now(conn, mark);
        }
        // Its egress proxy: served now when its sandbox is made as it starts, its policy brought
        // up to date when it is served already (`net_hello`).
        if let Some(Actor::Agent(name)) = self.sessions.get(&conn).map(|s| &s.actor)
            && verdict.is_ok()
        {
            let name = name.clone();
            self.net_hello(&name);
        }
        let _ = reply.send(verdict);
    }

    /// A request: applied (once per request id), and answered at once, after the batch's
    /// commit, or not at all.
    fn on_request(
        &mut self,
        conn: ConnId,
        id: u64,
        req: Request,
        rid: Option<String>,
        no_reply: bool,
    ) {
        let Some(actor) = self.sessions.get(&conn).map(|s| s.actor.clone()) else {
            return;
        };
        if no_reply {
            return self.apply_unanswered(conn, id, &actor, req);
        }
        // A mutating request with a request id is applied once: a retry is answered
        // with the first reply (remembered durably), or joins it while in flight.
        if let Some(e) = self.refusal(&req) {
            return self.answer(conn, id, Err(e));
        }
        let rid = rid.filter(|_| req.is_mutating());
        if let Some(r) = &rid {
            if r.is_empty() || r.len() > MAX_RID_LEN {
                let e = ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("a request id (rid) has 1-{MAX_RID_LEN} bytes"),
                );
                return self.answer(conn, id, Err(e));
            }
            if let Some(outcome) = self.state.replay_outcome(actor.name(), r) {
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
        // Answers that acknowledge nothing and show nothing uncommitted go out at
        // once, not after the batch's fsync: a granted lease (a model request waits
        // for it) and the configuration when it is on disk (a starting agent's).
        let lease = matches!(req, Request::BudgetCheck { .. });
        let config = matches!(req, Request::GetConfig) && !self.state.config_changed();
        let outcome = crate::handlers::dispatch(self, conn, id, &actor, req, rid.as_ref());
        match (outcome, rid) {
            (Some(outcome), None) if config || (lease && granted(&outcome)) => {
                self.answer_now(conn, id, outcome)
            }
            (Some(outcome), Some(rid)) => {
                // Answered first, then remembered: the outcome moves, not copied.
                let outcome = self.queue_response(conn, id, outcome);
                self.state.remember_outcome(actor.name(), rid, outcome);
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

    /// Why `req` is refused before it is applied: a field over its size limit, or a write
    /// while the disk is full.
    fn refusal(&self, req: &Request) -> Option<ErrorBody> {
        if let Err(e) = req.check_sizes() {
            return Some(e);
        }
        (self.storage_full && req.is_mutating() && self.low_disk())
            .then(|| self.storage_full_error())
    }

    /// A `no_reply` request: applied like any other, its answer dropped (an error only logged),
    /// and one answered later (spawn, kill, …) remembered so that answer is dropped too.
    fn apply_unanswered(&mut self, conn: ConnId, id: u64, actor: &Actor, req: Request) {
        let outcome = match self.refusal(&req) {
            Some(e) => Some(Err(e)),
            None => crate::handlers::dispatch(self, conn, id, actor, req, None),
        };
        match outcome {
            Some(Err(e)) => tracing::debug!("a request sent without waiting failed: {}", e.message),
            Some(Ok(_)) => {}
            None => {
                self.unanswered.insert((conn, id));
            }
        }
    }
}

/// Whether `msg` may need no commit of its own: a request its sender waits for no answer to, or
/// one that may be answered at once (a budget lease, the configuration). One that is not
/// answered at once leaves its answer in the batch's responses, and the batch commits.
fn is_unanswered(msg: &CoreMsg) -> bool {
    match msg {
        CoreMsg::Request { no_reply: true, .. } => true,
        CoreMsg::Request { req, .. } => {
            matches!(req, Request::BudgetCheck { .. } | Request::GetConfig)
        }
        // What the backends report (an agent started, ended, a poll) answers nobody by itself;
        // an answer it leads to (a spawn that failed) is in the batch's responses, and those
        // commit it at once.
        CoreMsg::Sup(_) | CoreMsg::Ended(_) | CoreMsg::ChildExited => true,
        _ => false,
    }
}

/// Whether a budget lease was granted (neither stop nor wait).
fn granted(outcome: &Result<Reply, ErrorBody>) -> bool {
    matches!(
        outcome,
        Ok(Reply::Budget {
            stop: None,
            wait: None
        })
    )
}
