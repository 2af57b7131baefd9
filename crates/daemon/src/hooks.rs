//! Hooks (`[hooks]` in the team file, and per role): commands the daemon runs when something
//! happens in the team. Only the daemon runs hooks, because only it owns the events.
//!
//! A hook gets the event's envelope as JSON on stdin and `AGENT_TEAM_TEAM`, `AGENT_TEAM_AGENT`,
//! `AGENT_TEAM_TASK_ID`, `AGENT_TEAM_HOOK_EVENT` (and `AGENT_TEAM_EVENT_SEQ`) in its
//! environment, runs `sh -c` in the workspace in a process group of its own, and is killed
//! (the whole group) at its timeout. The core never waits for one: a hook runs on a thread of
//! its own and its outcome comes back as [`crate::core::CoreMsg::HookDone`].
//!
//! Exactly once: a run is stored `pending` in the batch that commits its event, stored
//! `started` (and committed) before its process is spawned, and deleted when its outcome is
//! applied. After a daemon restart a pending run starts; a started one is not run again but
//! reported as `HOOK_FAILED` ("interrupted by a daemon restart"), and a completion waiting for
//! it goes ahead.
//!
//! `task_completed` runs before the completion: the `task_finish` request is held (its answer
//! deferred, as `wait_for`'s is), the task stays in progress, and the hooks of the team and
//! then of the owner's role run one after another. Exit 0 (or a failure, which is logged as
//! `HOOK_FAILED`) lets the next run or the completion happen; exit 2 keeps the task in
//! progress, sends the hook's stderr to the owner as a message from `daemon`, and answers the
//! request `blocked` with the stderr in its message. For `teammate_idle`, exit 2 sends the
//! stderr to the teammate (which wakes it). Any other non-zero exit, a timeout or a failure to
//! start is a `HOOK_FAILED` event.

use crate::core::{Core, CoreMsg};
use crate::hookrun::{HookOutcome, tail};
use crate::outbox::ConnId;
use agent_team_config::{Hook, HookEvent};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use agent_team_state::{Actor, Change, HeldCompletion, HookRun, HookRunState};
use serde_json::json;
use std::collections::HashSet;

/// The most of a hook's stderr put into a `HOOK_FAILED` event (its end).
const STDERR_IN_EVENT: usize = 2 * 1024;

/// The actor a stored name stands for.
fn actor_named(name: &str) -> Actor {
    match name {
        names::OPERATOR => Actor::Operator,
        "daemon" => Actor::Daemon,
        n => Actor::Agent(n.to_string()),
    }
}

/// The hook event a committed event is, with the agent and task it is about.
fn hook_event(
    env: &Envelope,
    created: &HashSet<u64>,
) -> Option<(HookEvent, Option<String>, Option<u64>)> {
    let agent = Some(env.agent_id.clone());
    match &env.event {
        Event::AgentStatus {
            status: AgentStatus::Idle,
            ..
        } if env.agent_id != LEADER => Some((HookEvent::TeammateIdle, agent, None)),
        Event::AgentStatus {
            status: AgentStatus::Failed,
            ..
        } => Some((HookEvent::AgentFailed, agent, None)),
        Event::TaskUpdated { task } if created.contains(&env.seq) => {
            Some((HookEvent::TaskCreated, agent, Some(task.id)))
        }
        Event::PermissionRequested { request } => Some((
            HookEvent::PermissionRequested,
            Some(request.agent.clone()),
            None,
        )),
        Event::RunFinished { .. } => Some((HookEvent::RunFinished, agent, None)),
        _ => None,
    }
}

impl Core {
    /// Notes that the event `seq` created a task (for `task_created`).
    pub(crate) fn task_created_at(&mut self, seq: u64) {
        self.hooks.created.insert(seq);
    }

    /// Records a pending run for every hook of the events among `changes` (about to be
    /// committed with them); they start once that commit is done.
    pub(crate) fn plan_hooks(&mut self, changes: &[Change]) {
        let created = std::mem::take(&mut self.hooks.created);
        let Some(cfg) = &self.sup.config else { return };
        if cfg.hooks.is_empty() && cfg.role_hooks.is_empty() {
            return;
        }
        let dir = cfg.workspace.display().to_string();
        for change in changes {
            let Change::Event(env) = change else { continue };
            let Some((event, agent, task)) = hook_event(env, &created) else {
                continue;
            };
            let role = agent
                .as_deref()
                .and_then(|a| self.state.agent(a))
                .map(|a| a.info.role.clone());
            let hooks = cfg.hooks_for(event, role.as_deref());
            if hooks.is_empty() {
                continue;
            }
            let task = task.or_else(|| agent.as_deref().and_then(|a| self.state.held_task(a)));
            let input = serde_json::to_string(env).unwrap_or_default();
            for (index, hook) in hooks.iter().enumerate() {
                let id = self.state.next_hook_run_id();
                self.state.hook_run_put(HookRun {
                    id,
                    hook: event.as_str().to_string(),
                    event_seq: Some(env.seq),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    command: hook.command.clone(),
                    timeout_secs: hook.timeout_secs,
                    dir: dir.clone(),
                    input: input.clone(),
                    agent: agent.clone(),
                    task,
                    state: HookRunState::Pending,
                    held: None,
                });
                self.hooks.queue.push(id);
            }
        }
    }

    /// Marks the queued runs started, commits that, and only then spawns them.
    pub(crate) fn start_hooks(&mut self) -> Result<(), agent_team_store::StoreError> {
        if self.hooks.queue.is_empty() {
            return Ok(());
        }
        let ids = std::mem::take(&mut self.hooks.queue);
        let mut runs = Vec::new();
        for id in &ids {
            if let Some(mut run) = self.state.hook_run(*id).cloned()
                && run.state == HookRunState::Pending
            {
                run.state = HookRunState::Started;
                self.state.hook_run_put(run.clone());
                runs.push(run);
            }
        }
        let changes = self.state.take_changes();
        if let Err(e) = self.store.commit(&changes) {
            if !self.disk_is_full(&e) {
                return Err(e);
            }
            // Nothing started: they start at a later commit, when there is room.
            self.refuse_batch_for_full_disk()?;
            self.hooks.queue = ids;
            return Ok(());
        }
        self.route(&changes);
        let sandbox = self
            .sup
            .config
            .as_ref()
            .and_then(|cfg| crate::confine::boundary(cfg, &self.cfg.paths));
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

    /// After a restart: pending runs start; runs that had started are not run again but
    /// reported, and what waited for them goes on.
    pub(crate) fn recover_hooks(&mut self) {
        let runs: Vec<HookRun> = self.state.hook_runs().cloned().collect();
        for run in runs {
            match run.state {
                HookRunState::Pending => self.hooks.queue.push(run.id),
                HookRunState::Started => self.hook_done(
                    run.id,
                    HookOutcome {
                        error: Some(
                            "interrupted by a daemon restart; it is not run again".to_string(),
                        ),
                        ..Default::default()
                    },
                ),
            }
        }
    }

    /// Whether finishing `task` as completed waits for `task_completed` hooks (or a
    /// completion of it is already held).
    pub(crate) fn completion_is_hooked(&self, task: u64) -> bool {
        if self.held_run(task).is_some() {
            return true;
        }
        let Some(cfg) = &self.sup.config else {
            return false;
        };
        !cfg.hooks_for(HookEvent::TaskCompleted, self.owner_role(task).as_deref())
            .is_empty()
    }

    /// The run a held completion of `task` waits for.
    fn held_run(&self, task: u64) -> Option<&HookRun> {
        self.state
            .hook_runs()
            .find(|r| r.held.as_ref().is_some_and(|h| h.task == task))
    }

    /// The role of the agent holding `task`.
    fn owner_role(&self, task: u64) -> Option<String> {
        let owner = self.state.task(task).ok()?.owner.clone()?;
        self.state.agent(&owner).map(|a| a.info.role.clone())
    }

    /// The `task_completed` hooks of `task` (the team's, then its owner's role's).
    fn completion_hooks(&self, task: u64) -> Vec<Hook> {
        self.sup.config.as_ref().map_or_else(Vec::new, |cfg| {
            cfg.hooks_for(HookEvent::TaskCompleted, self.owner_role(task).as_deref())
        })
    }

    /// `task_finish` as completed with hooks: checked now, held until the hooks have run.
    /// `None`: answered later (on `conn`, frame `id`).
    pub(crate) fn hold_completion(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        task: u64,
        result: Option<String>,
        rid: Option<String>,
    ) -> Option<Result<Reply, ErrorBody>> {
        let now = self.clock.wall();
        if let Some(h) = self.held_run(task).and_then(|r| r.held.clone()) {
            // The same request again (its retry reached a restarted daemon): it waits too.
            if h.rid.is_some() && h.rid == rid && h.actor == actor.name() {
                self.hooks.waiters.entry(task).or_default().push((conn, id));
                return None;
            }
            return Some(Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                format!("task {task} is being checked by its task_completed hook; wait for it"),
                json!({"task": task}),
            )));
        }
        let after = match self.state.task_finish_check(
            actor,
            task,
            TaskStatus::Completed,
            result.as_deref(),
            now,
        ) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let role_name = self
            .state
            .agent(actor.name())
            .map_or_else(|| actor.name().to_string(), |a| a.info.role.clone());
        // The event the completion would record; not in the log yet, so its seq is 0.
        let env = Envelope {
            seq: 0,
            ts: now,
            team_id: self.cfg.team.clone(),
            agent_id: actor.name().to_string(),
            role_name,
            event: Event::TaskUpdated { task: after },
        };
        let held = HeldCompletion {
            actor: actor.name().to_string(),
            task,
            result,
            rid,
        };
        self.hooks.waiters.entry(task).or_default().push((conn, id));
        let input = serde_json::to_string(&env).unwrap_or_default();
        self.continue_completion(held, 0, input);
        None
    }

    /// Runs the held completion's hook number `index`, or, when there is none left, applies
    /// the completion and answers whoever waits for it.
    fn continue_completion(&mut self, held: HeldCompletion, index: usize, input: String) {
        let hooks = self.completion_hooks(held.task);
        if let Some(hook) = hooks.get(index) {
            let owner = self
                .state
                .task(held.task)
                .ok()
                .and_then(|t| t.owner.clone());
            let dir = self
                .sup
                .config
                .as_ref()
                .map(|c| c.workspace.display().to_string())
                .unwrap_or_default();
            let id = self.state.next_hook_run_id();
            self.state.hook_run_put(HookRun {
                id,
                hook: HookEvent::TaskCompleted.as_str().to_string(),
                event_seq: None,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                command: hook.command.clone(),
                timeout_secs: hook.timeout_secs,
                dir,
                input,
                agent: owner,
                task: Some(held.task),
                state: HookRunState::Pending,
                held: Some(held),
            });
            self.hooks.queue.push(id);
            return;
        }
        let outcome = self
            .state
            .task_finish(
                &actor_named(&held.actor),
                held.task,
                TaskStatus::Completed,
                held.result.clone(),
                self.clock.wall(),
            )
            .map(|task| Reply::Task { task });
        self.resolve_held(&held, outcome);
    }

    /// Answers the requests waiting for a held completion (or remembers the answer for the
    /// retry of one that nobody waits for any more).
    fn resolve_held(&mut self, held: &HeldCompletion, outcome: Result<Reply, ErrorBody>) {
        let waiters = self.hooks.waiters.remove(&held.task).unwrap_or_default();
        if waiters.is_empty() {
            if let Some(rid) = &held.rid {
                self.state
                    .remember_outcome(&held.actor, rid.clone(), outcome);
            }
            return;
        }
        for (conn, id) in waiters {
            self.answer(conn, id, outcome.clone());
        }
    }

    /// Requests waiting for a held completion that a refused batch took back are answered
    /// with `error`.
    pub(crate) fn drop_lost_holds(&mut self, error: &ErrorBody) {
        let lost: Vec<u64> = self
            .hooks
            .waiters
            .keys()
            .copied()
            .filter(|t| self.held_run(*t).is_none())
            .collect();
        for task in lost {
            for (conn, id) in self.hooks.waiters.remove(&task).unwrap_or_default() {
                self.answer(conn, id, Err(error.clone()));
            }
        }
    }

    /// Applies a hook's outcome.
    pub(crate) fn hook_done(&mut self, id: u64, outcome: HookOutcome) {
        let Some(run) = self.state.hook_run_done(id) else {
            return;
        };
        let now = self.clock.wall();
        let event = HookEvent::parse(&run.hook);
        let blocks = event.is_some_and(HookEvent::blocks) && outcome.exit_code == Some(2);
        let stderr = outcome.stderr.trim_end().to_string();
        if blocks {
            tracing::info!(hook = %run.hook, id, "the hook blocked (exit 2)");
            let (summary, body) = match &run.held {
                Some(h) => (
                    format!("task {} kept in progress by a hook", h.task),
                    format!(
                        "The task_completed hook kept task {} in progress:\n{stderr}",
                        h.task
                    ),
                ),
                None => (
                    "a hook sent you back to work".to_string(),
                    format!("The teammate_idle hook sent you back to work:\n{stderr}"),
                ),
            };
            if let Some(agent) = &run.agent {
                let body = tail(&body, MAX_BODY_LEN - 16).to_string();
                if let Err(e) = self.state.send(
                    &Actor::Daemon,
                    agent,
                    body,
                    MessageKind::Text,
                    Some(summary),
                    now,
                ) {
                    tracing::warn!(hook = %run.hook, "cannot tell {agent} what the hook said: {}", e.message);
                }
            }
            if let Some(h) = &run.held {
                let err = ErrorBody::with_details(
                    ErrorCode::Blocked,
                    format!(
                        "the task_completed hook kept task {} in progress: {stderr}",
                        h.task
                    ),
                    json!({"task": h.task, "hook": run.command, "exit_code": 2}),
                );
                self.resolve_held(h, Err(err));
            }
            return;
        }
        if outcome.exit_code != Some(0) {
            let reason = if let Some(e) = &outcome.error {
                e.clone()
            } else if outcome.timed_out {
                format!("it ran longer than {} s and was killed", run.timeout_secs)
            } else if let Some(code) = outcome.exit_code {
                format!("it exited with {code}")
            } else {
                format!("it was killed by signal {}", outcome.signal.unwrap_or(0))
            };
            tracing::warn!(hook = %run.hook, id, command = %run.command, "a hook failed: {reason}");
            self.state.record(
                "daemon",
                Event::HookFailed {
                    hook: run.hook.clone(),
                    event_seq: run.event_seq,
                    command: run.command.clone(),
                    exit_code: outcome.exit_code,
                    signal: outcome.signal,
                    reason,
                    stderr: tail(&stderr, STDERR_IN_EVENT).to_string(),
                },
                now,
            );
        }
        if let Some(held) = run.held {
            self.continue_completion(held, run.index as usize + 1, run.input);
        }
    }
}
