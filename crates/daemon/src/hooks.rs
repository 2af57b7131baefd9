//! Hooks (`[hooks]` in the team file, and per role): commands the daemon runs when something
//! happens in the team. Only the daemon runs hooks, because only it owns the events.
//!
//! A hook gets the event's envelope as JSON on stdin and `AGENT_TEAM_TEAM`, `AGENT_TEAM_AGENT`,
//! `AGENT_TEAM_TASK_ID`, `AGENT_TEAM_HOOK_EVENT` (and `AGENT_TEAM_EVENT_SEQ`) in its
//! environment, runs `sh -c` in the workspace in a process group of its own, and is killed
//! (the whole group) at its timeout. The core never waits for one: a hook runs on a thread of
//! its own and its outcome comes back as [`crate::core::CoreMsg::HookDone`].
//!
//! `Hooks` is a component of the core that is given the state it needs (`HookCx`: the team
//! state, the stored configuration, the time) and says whom to answer (`Answers`); the core
//! commits, answers and spawns. It knows nothing of the core.
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

use crate::hookrun::{HookOutcome, HookRunner, tail};
use crate::outbox::ConnId;
use agent_team_config::{Hook, HookEvent, TeamConfig};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use agent_team_state::{Actor, Change, HeldCompletion, HookRun, HookRunState, TeamState};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a hook call may touch: the team state, the stored configuration, and the time.
pub(crate) struct HookCx<'a> {
    /// The team state (hook runs live in it, and what a hook's outcome changes).
    pub state: &'a mut TeamState,
    /// The stored configuration (the team's and the roles' hooks), once there is one.
    pub config: Option<&'a TeamConfig>,
    /// The team's name, for the events a hook is given.
    pub team: &'a str,
    /// Now.
    pub now: Timestamp,
}

impl HookCx<'_> {
    /// The same view for one more call.
    fn reborrow(&mut self) -> HookCx<'_> {
        HookCx {
            state: &mut *self.state,
            config: self.config,
            team: self.team,
            now: self.now,
        }
    }
}

/// Requests to answer: connection, frame id, outcome.
pub(crate) type Answers = Vec<(ConnId, u64, Result<Reply, ErrorBody>)>;

/// The core's hooks: the runner, the runs to start after the next commit, the requests waiting
/// for a held completion, and the events of this batch that created a task.
pub(crate) struct Hooks {
    /// Runs hooks (a fake in the core's hook tests).
    pub(crate) runner: Arc<dyn HookRunner>,
    /// Runs to mark started and spawn once the batch that recorded them is committed.
    queue: Vec<u64>,
    /// Requests waiting for a held completion, by task.
    waiters: HashMap<u64, Vec<(ConnId, u64)>>,
    /// Sequence numbers of `TASK_UPDATED` events that created a task (this batch).
    created: HashSet<u64>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// Hooks run by `runner`.
    pub(crate) fn new(runner: Arc<dyn HookRunner>) -> Self {
        Hooks {
            runner,
            queue: Vec::new(),
            waiters: HashMap::new(),
            created: HashSet::new(),
        }
    }

    /// Notes that the event `seq` created a task (for `task_created`).
    pub(crate) fn task_created_at(&mut self, seq: u64) {
        self.created.insert(seq);
    }

    /// Records a pending run for every hook of the events among `changes` (about to be
    /// committed with them); they start once that commit is done.
    pub(crate) fn plan(&mut self, cx: HookCx<'_>, changes: &[Change]) {
        let created = std::mem::take(&mut self.created);
        let Some(cfg) = cx.config else { return };
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
                .and_then(|a| cx.state.agent(a))
                .map(|a| a.info.role.clone());
            let hooks = cfg.hooks_for(event, role.as_deref());
            if hooks.is_empty() {
                continue;
            }
            let task = task.or_else(|| agent.as_deref().and_then(|a| cx.state.held_task(a)));
            let input = serde_json::to_string(env).unwrap_or_default();
            for (index, hook) in hooks.iter().enumerate() {
                let id = cx.state.next_hook_run_id();
                cx.state.hook_run_put(HookRun {
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
                self.queue.push(id);
            }
        }
    }

    /// The queued runs, marked `started` in `state` (the core commits that before it spawns
    /// them), with their ids to queue again should that commit be refused.
    pub(crate) fn mark_started(&mut self, state: &mut TeamState) -> (Vec<HookRun>, Vec<u64>) {
        let ids = std::mem::take(&mut self.queue);
        let mut runs = Vec::new();
        for id in &ids {
            if let Some(mut run) = state.hook_run(*id).cloned()
                && run.state == HookRunState::Pending
            {
                run.state = HookRunState::Started;
                state.hook_run_put(run.clone());
                runs.push(run);
            }
        }
        (runs, ids)
    }

    /// Runs whose start a refused commit took back: they start at a later commit.
    pub(crate) fn requeue(&mut self, ids: Vec<u64>) {
        self.queue = ids;
    }

    /// After a restart: pending runs start; runs that had started are not run again but
    /// reported, and what waited for them goes on.
    pub(crate) fn recover(&mut self, mut cx: HookCx<'_>) -> Answers {
        let runs: Vec<HookRun> = cx.state.hook_runs().cloned().collect();
        let mut answers = Answers::new();
        for run in runs {
            match run.state {
                HookRunState::Pending => self.queue.push(run.id),
                HookRunState::Started => {
                    let outcome = HookOutcome {
                        error: Some(
                            "interrupted by a daemon restart; it is not run again".to_string(),
                        ),
                        ..Default::default()
                    };
                    answers.extend(self.done(cx.reborrow(), run.id, outcome));
                }
            }
        }
        answers
    }

    /// Whether finishing `task` as completed waits for `task_completed` hooks (or a
    /// completion of it is already held).
    pub(crate) fn completion_is_hooked(
        state: &TeamState,
        config: Option<&TeamConfig>,
        task: u64,
    ) -> bool {
        if held_run(state, task).is_some() {
            return true;
        }
        let Some(cfg) = config else {
            return false;
        };
        !cfg.hooks_for(HookEvent::TaskCompleted, owner_role(state, task).as_deref())
            .is_empty()
    }

    /// `task_finish` as completed with hooks: checked now, held until the hooks have run.
    /// `None`: answered later (on `conn`, frame `id`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hold_completion(
        &mut self,
        cx: HookCx<'_>,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        task: u64,
        result: Option<String>,
        rid: Option<String>,
    ) -> Option<Result<Reply, ErrorBody>> {
        if let Some(h) = held_run(cx.state, task).and_then(|r| r.held.clone()) {
            // The same request again (its retry reached a restarted daemon): it waits too.
            if h.rid.is_some() && h.rid == rid && h.actor == actor.name() {
                self.waiters.entry(task).or_default().push((conn, id));
                return None;
            }
            return Some(Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                format!("task {task} is being checked by its task_completed hook; wait for it"),
                json!({"task": task}),
            )));
        }
        let after = match cx.state.task_finish_check(
            actor,
            task,
            TaskStatus::Completed,
            result.as_deref(),
            cx.now,
        ) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let role_name = cx
            .state
            .agent(actor.name())
            .map_or_else(|| actor.name().to_string(), |a| a.info.role.clone());
        // The event the completion would record; not in the log yet, so its seq is 0.
        let env = Envelope {
            seq: 0,
            ts: cx.now,
            team_id: cx.team.to_string(),
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
        self.waiters.entry(task).or_default().push((conn, id));
        let input = serde_json::to_string(&env).unwrap_or_default();
        // Answered at once only if no hook is left to run (the configuration changed).
        self.continue_completion(cx, held, 0, input)
            .into_iter()
            .find(|(c, i, _)| (*c, *i) == (conn, id))
            .map(|(_, _, outcome)| outcome)
    }

    /// Runs the held completion's hook number `index`, or, when there is none left, applies
    /// the completion and answers whoever waits for it.
    fn continue_completion(
        &mut self,
        cx: HookCx<'_>,
        held: HeldCompletion,
        index: usize,
        input: String,
    ) -> Answers {
        let hooks = completion_hooks(cx.state, cx.config, held.task);
        if let Some(hook) = hooks.get(index) {
            let owner = cx.state.task(held.task).ok().and_then(|t| t.owner.clone());
            let dir = cx
                .config
                .map(|c| c.workspace.display().to_string())
                .unwrap_or_default();
            let id = cx.state.next_hook_run_id();
            cx.state.hook_run_put(HookRun {
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
            self.queue.push(id);
            return Answers::new();
        }
        let outcome = cx
            .state
            .task_finish(
                &actor_named(&held.actor),
                held.task,
                TaskStatus::Completed,
                held.result.clone(),
                cx.now,
            )
            .map(|task| Reply::Task { task });
        self.resolve_held(cx.state, &held, outcome)
    }

    /// Answers the requests waiting for a held completion (or remembers the answer for the
    /// retry of one that nobody waits for any more).
    fn resolve_held(
        &mut self,
        state: &mut TeamState,
        held: &HeldCompletion,
        outcome: Result<Reply, ErrorBody>,
    ) -> Answers {
        let waiters = self.waiters.remove(&held.task).unwrap_or_default();
        if waiters.is_empty() {
            if let Some(rid) = &held.rid {
                state.remember_outcome(&held.actor, rid.clone(), outcome);
            }
            return Answers::new();
        }
        waiters
            .into_iter()
            .map(|(conn, id)| (conn, id, outcome.clone()))
            .collect()
    }

    /// Requests waiting for a held completion that a refused batch took back are answered
    /// with `error`.
    pub(crate) fn drop_lost_holds(&mut self, state: &TeamState, error: &ErrorBody) -> Answers {
        let lost: Vec<u64> = self
            .waiters
            .keys()
            .copied()
            .filter(|t| held_run(state, *t).is_none())
            .collect();
        let mut answers = Answers::new();
        for task in lost {
            for (conn, id) in self.waiters.remove(&task).unwrap_or_default() {
                answers.push((conn, id, Err(error.clone())));
            }
        }
        answers
    }

    /// Applies a hook's outcome.
    pub(crate) fn done(&mut self, cx: HookCx<'_>, id: u64, outcome: HookOutcome) -> Answers {
        let Some(run) = cx.state.hook_run_done(id) else {
            return Answers::new();
        };
        let now = cx.now;
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
                if let Err(e) = cx.state.send(
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
                return self.resolve_held(cx.state, h, Err(err));
            }
            return Answers::new();
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
            cx.state.record(
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
        match run.held {
            Some(held) => self.continue_completion(cx, held, run.index as usize + 1, run.input),
            None => Answers::new(),
        }
    }
}

/// The run a held completion of `task` waits for.
fn held_run(state: &TeamState, task: u64) -> Option<&HookRun> {
    state
        .hook_runs()
        .find(|r| r.held.as_ref().is_some_and(|h| h.task == task))
}

/// The role of the agent holding `task`.
fn owner_role(state: &TeamState, task: u64) -> Option<String> {
    let owner = state.task(task).ok()?.owner.clone()?;
    state.agent(&owner).map(|a| a.info.role.clone())
}

/// The `task_completed` hooks of `task` (the team's, then its owner's role's).
fn completion_hooks(state: &TeamState, config: Option<&TeamConfig>, task: u64) -> Vec<Hook> {
    config.map_or_else(Vec::new, |cfg| {
        cfg.hooks_for(HookEvent::TaskCompleted, owner_role(state, task).as_deref())
    })
}

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
