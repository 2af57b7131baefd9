//! The team's state and every rule that changes it (SPEC §5.1–§5.6), in memory and free of I/O.
//!
//! The daemon is the only caller. Each mutation checks its rule, changes the state, and appends
//! the [`Change`]s that the store must persist before anyone is told about them. Nothing here
//! reads a clock, a socket or a file, so the rules are tested directly and deterministically.

mod agents;
pub mod hooks;
mod memory;
mod messages;
mod perms;
mod plans;
pub mod replies;
pub mod tasks;
mod usage;

use agent_team_protocol::names::{LEADER, OPERATOR};
use agent_team_protocol::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

pub use agents::AgentRecord;
pub use hooks::{HeldCompletion, HookRun, HookRunState};
pub use usage::{BudgetConfig, BudgetRecord, Lease, LeaseOutcome, Response, UsageRecord, UsageSum};

/// The result of a rule check: the value, or the structured error the client gets.
pub type Outcome<T> = Result<T, ErrorBody>;

/// Who is asking: the operator (CLI) or one authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The socket's owner with the operator credential; may do anything the leader may.
    Operator,
    /// An agent, by name.
    Agent(String),
    /// The daemon itself (supervision, timeouts).
    Daemon,
}

impl Actor {
    /// The name stamped on what this actor does.
    pub fn name(&self) -> &str {
        match self {
            Actor::Operator => OPERATOR,
            Actor::Agent(n) => n,
            Actor::Daemon => "daemon",
        }
    }

    /// Whether the actor may perform leader-only operations.
    pub fn is_privileged(&self) -> bool {
        match self {
            Actor::Operator | Actor::Daemon => true,
            Actor::Agent(n) => n == LEADER,
        }
    }

    /// The agent name, when the actor is an agent.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Actor::Agent(n) => Some(n),
            _ => None,
        }
    }
}

/// The most entries' room [`TeamState::recycle_changes`] keeps (about 3 MiB).
pub const RECYCLED_CHANGES: usize = 8192;

/// One thing the store must persist; the list of them is the transaction's write set.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace a task.
    Task(Task),
    /// Insert or replace an agent.
    Agent(Box<AgentRecord>),
    /// Insert or replace an agent whose record changed in its activity only (connected; running,
    /// idle or waiting after starting or another of those): stored as [`Change::Agent`] is, but
    /// a batch of nothing else need not wait for an fsync (see [`Change::needs_sync`]).
    AgentActivity(Box<AgentRecord>),
    /// Delete an agent that was rolled back.
    AgentRemoved(String),
    /// A new message copy.
    MessageNew(Message),
    /// A message copy moved forward.
    MessageState {
        /// The message id.
        id: u64,
        /// Its new delivery state.
        state: DeliveryState,
    },
    /// Insert or replace a permission request.
    Perm(PermRequest),
    /// A new team permission rule.
    Rule(PermRule),
    /// A new event in the log.
    Event(Envelope),
    /// The run record changed.
    Run(RunRecord),
    /// The team configuration was replaced.
    Config(serde_json::Value),
    /// Insert or replace a key of the team's memory.
    Memory(MemoryEntry),
    /// A key of the team's memory was deleted.
    MemoryDeleted(String),
    /// Insert or replace one agent's usage of one model.
    Usage(UsageRecord),
    /// Insert or replace a budget's override and reported level.
    Budget(BudgetRecord),
    /// A `send` with an idempotency key, remembered so a retry is answered, not repeated.
    Dedup {
        /// The sender.
        sender: String,
        /// The key.
        key: String,
        /// The ids the first send produced.
        ids: Vec<u64>,
        /// Its recipients.
        recipients: Vec<String>,
    },
    /// The replies remembered in a batch (requests that carried a request id), every
    /// identity's, written as one row (its format is in the `replies` module docs).
    Replies {
        /// The lowest `n` among the entries (the row's key).
        first: u64,
        /// The highest `n` among them (stored beside the row, for older readers).
        last: u64,
        /// The entries as JSON.
        entries: String,
    },
    /// Insert or replace a hook run the daemon owes.
    HookRun(HookRun),
    /// A hook run's outcome was applied: it is forgotten.
    HookRunDone(u64),
    /// Rows of remembered replies that no identity remembers any more: delete them by key (the
    /// `first` of their [`Change::Replies`]), so a reload does not bring them back.
    RepliesPruned {
        /// The rows' keys.
        rows: Vec<u64>,
    },
}

impl Change {
    /// Whether a batch holding this change must be on disk before it is answered. What need
    /// not: a message moved to `delivered` or `read`, an agent's activity (its record and its
    /// status event), and its narration (text and tool calls it reports as it works). Such a batch survives a crash of the daemon (its WAL is in the
    /// operating system's cache) and the next batch that is synced syncs it too; a power cut
    /// could at worst deliver a message again or show an agent as still starting, which its
    /// next connection or turn corrects.
    pub fn needs_sync(&self) -> bool {
        match self {
            Change::MessageState { .. } | Change::AgentActivity(_) => false,
            Change::Event(env) => match &env.event {
                Event::AgentStatus { status, .. } => !is_activity(*status),
                // An agent's narration of its turn (what it says, the tools it calls).
                Event::TextMessageContent { .. }
                | Event::ToolCallStart { .. }
                | Event::ToolCallResult { .. } => false,
                _ => true,
            },
            _ => true,
        }
    }
}

/// The statuses an agent moves between as it works (and the ones it reaches them from
/// without anything stored changing but its activity).
pub(crate) fn is_activity(status: AgentStatus) -> bool {
    matches!(
        status,
        AgentStatus::Running | AgentStatus::Idle | AgentStatus::Waiting
    )
}

/// The team run as stored: its state, goal and answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// How the run stands.
    pub state: RunState,
    /// The goal.
    #[serde(default)]
    pub goal: Option<String>,
    /// The leader's answer once finished.
    #[serde(default)]
    pub answer: Option<String>,
    /// How the finished run went (strategy, rounds, workers' outputs), as the leader said
    /// with `finish`; the strategy of the stored configuration when it said nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<RunDetails>,
    /// The model usage since the run started.
    #[serde(default)]
    pub usage: UsageSum,
    /// When the run started (absent in a record of a version that did not keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
}

impl Default for RunRecord {
    fn default() -> Self {
        RunRecord {
            state: RunState::Idle,
            goal: None,
            answer: None,
            details: None,
            usage: UsageSum::default(),
            started_at: None,
        }
    }
}

/// Everything loaded from disk to rebuild the state after a restart.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// All tasks.
    pub tasks: Vec<Task>,
    /// All agents.
    pub agents: Vec<AgentRecord>,
    /// Message copies not yet read, in id order.
    pub unread: Vec<Message>,
    /// The highest message id ever issued.
    pub max_message_id: u64,
    /// All permission requests.
    pub perms: Vec<PermRequest>,
    /// The team rules.
    pub rules: Vec<PermRule>,
    /// The highest event sequence number.
    pub last_seq: u64,
    /// The highest task id ever issued (tasks are never deleted, but be safe).
    pub max_task_id: u64,
    /// The run record.
    pub run: RunRecord,
    /// The stored team configuration.
    pub config: Option<serde_json::Value>,
    /// Remembered idempotency keys of sends: (sender, key, ids, recipients).
    pub dedup: Vec<(String, String, Vec<u64>, Vec<String>)>,
    /// Remembered replies to requests with a request id, oldest first.
    pub replies: Vec<replies::StoredReply>,
    /// The team's memory.
    pub memory: Vec<MemoryEntry>,
    /// The agents' model usage, one record per agent and model.
    pub usage: Vec<UsageRecord>,
    /// Budget overrides and reported levels.
    pub budgets: Vec<BudgetRecord>,
    /// Hook runs not yet finished.
    pub hook_runs: Vec<HookRun>,
}

/// How many agents and tasks are in each status.
pub type Counts = (Vec<(AgentStatus, usize)>, Vec<(TaskStatus, usize)>);

/// The whole team: the only copy of the truth, owned by the daemon.
#[derive(Debug)]
pub struct TeamState {
    team: String,
    tasks: BTreeMap<u64, Task>,
    task_keys: HashMap<String, u64>,
    /// Pending task ids, so `claim_next` does not scan finished work.
    pending: BTreeSet<u64>,
    /// Each task's dependents (the tasks whose `blocked_by` names it), so a completion finds
    /// what it unblocks and a read fills `blocks` without scanning the board.
    dependents: HashMap<u64, Vec<u64>>,
    next_task_id: u64,
    agents: BTreeMap<String, AgentRecord>,
    /// Unread (queued or delivered) copies per recipient, oldest first.
    inboxes: HashMap<String, VecDeque<Message>>,
    /// Whose inbox each unread copy is in, so an acknowledgement of an id not in the caller's
    /// own inbox finds its recipient without looking through every inbox (at `down` each of
    /// 1 024 teammates did, when its `delivered` came after its `read`). A hint: what it
    /// names is looked up in that inbox before it counts.
    unread_to: HashMap<u64, String>,
    next_message_id: u64,
    perms: BTreeMap<u64, PermRequest>,
    next_perm_id: u64,
    rules: Vec<PermRule>,
    last_seq: u64,
    run: RunRecord,
    config: Option<serde_json::Value>,
    dedup: HashMap<(String, String), (Vec<u64>, Vec<String>)>,
    replies: replies::Logs,
    next_reply_seq: u64,
    /// This batch's reply row and the stored rows' holders.
    reply_batch: replies::Batch,
    /// The team's memory by key (ordered, so a prefix is one range).
    memory: BTreeMap<String, MemoryEntry>,
    /// What the memory counts against its byte limit (see `memory::entry_bytes`).
    memory_bytes: usize,
    /// Model usage by (agent, model).
    usage: BTreeMap<(String, String), UsageRecord>,
    /// Budget overrides and reported levels by role (none: the team's).
    budgets: BTreeMap<Option<String>, BudgetRecord>,
    /// Budget leases of model requests in flight, by agent (one each; never stored).
    leases: BTreeMap<String, usage::Lease>,
    /// Hook runs not yet finished, by id.
    hook_runs: BTreeMap<u64, HookRun>,
    next_hook_run: u64,
    inbox_limit: usize,
    changes: Vec<Change>,
}

impl TeamState {
    /// An empty team.
    pub fn new(team: &str) -> Self {
        Self::restore(team, Snapshot::default())
    }

    /// Rebuilds the state from what the store loaded.
    pub fn restore(team: &str, snap: Snapshot) -> Self {
        let mut s = TeamState {
            team: team.to_string(),
            tasks: BTreeMap::new(),
            task_keys: HashMap::new(),
            pending: BTreeSet::new(),
            dependents: HashMap::new(),
            next_task_id: snap.max_task_id + 1,
            agents: BTreeMap::new(),
            inboxes: HashMap::new(),
            unread_to: HashMap::new(),
            next_message_id: snap.max_message_id + 1,
            perms: BTreeMap::new(),
            next_perm_id: 1,
            rules: snap.rules,
            last_seq: snap.last_seq,
            run: snap.run,
            config: snap.config,
            dedup: snap
                .dedup
                .into_iter()
                .map(|(s, k, i, r)| ((s, k), (i, r)))
                .collect(),
            replies: replies::Logs::default(),
            next_reply_seq: 0,
            reply_batch: replies::Batch::default(),
            memory: BTreeMap::new(),
            memory_bytes: 0,
            usage: snap
                .usage
                .into_iter()
                .map(|r| ((r.agent.clone(), r.model.clone()), r))
                .collect(),
            budgets: snap
                .budgets
                .into_iter()
                .map(|b| (b.role.clone(), b))
                .collect(),
            leases: BTreeMap::new(),
            next_hook_run: snap.hook_runs.iter().map(|r| r.id + 1).max().unwrap_or(1),
            hook_runs: snap.hook_runs.into_iter().map(|r| (r.id, r)).collect(),
            inbox_limit: DEFAULT_INBOX_LIMIT,
            changes: Vec::new(),
        };
        s.restore_replies(snap.replies);
        for e in snap.memory {
            s.memory_bytes += memory::entry_bytes(&e);
            s.memory.insert(e.key.clone(), e);
        }
        for t in snap.tasks {
            s.next_task_id = s.next_task_id.max(t.id + 1);
            if let Some(k) = &t.key {
                s.task_keys.insert(k.clone(), t.id);
            }
            if t.status == TaskStatus::Pending {
                s.pending.insert(t.id);
            }
            for b in &t.blocked_by {
                s.dependents.entry(*b).or_default().push(t.id);
            }
            s.tasks.insert(t.id, t);
        }
        for mut a in snap.agents {
            a.info.current_task = None;
            s.agents.insert(a.info.name.clone(), a);
        }
        // Who holds what follows from the tasks; the agents' rows may be older.
        let held: Vec<(String, u64)> = s
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::InProgress)
            .filter_map(|t| t.owner.clone().map(|o| (o, t.id)))
            .collect();
        for (owner, id) in held {
            if let Some(a) = s.agents.get_mut(&owner) {
                a.info.current_task = Some(id);
            }
        }
        for m in snap.unread {
            s.next_message_id = s.next_message_id.max(m.id + 1);
            s.unread_to.insert(m.id, m.to.clone());
            s.inboxes.entry(m.to.clone()).or_default().push_back(m);
        }
        for p in snap.perms {
            s.next_perm_id = s.next_perm_id.max(p.id + 1);
            s.perms.insert(p.id, p);
        }
        s
    }

    /// The team's name.
    pub fn team(&self) -> &str {
        &self.team
    }

    /// Changes the unread-message bound (tests and configuration).
    pub fn set_inbox_limit(&mut self, limit: usize) {
        self.inbox_limit = limit;
    }

    /// Takes the changes accumulated since the last call; the caller persists them.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.flush_replies();
        std::mem::take(&mut self.changes)
    }

    /// Takes back a list [`TeamState::take_changes`] gave, emptied, so the next batch's
    /// changes go into its room instead of a list grown again from nothing (a `Change` is 368
    /// bytes: at `down` of 1 024 teammates the regrowing was 44 of 518 perf samples).
    /// Kept up to [`RECYCLED_CHANGES`] entries' room.
    pub fn recycle_changes(&mut self, mut used: Vec<Change>) {
        used.clear();
        if self.changes.is_empty()
            && used.capacity() > self.changes.capacity()
            && used.capacity() <= RECYCLED_CHANGES
        {
            self.changes = used;
        }
    }

    /// Whether a change of the team configuration waits for the next commit (until then, the
    /// configuration a reader is given would not be on disk yet).
    pub fn config_changed(&self) -> bool {
        self.changes.iter().any(|c| matches!(c, Change::Config(_)))
    }

    /// Whether mutations are waiting to be persisted.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || !self.reply_batch.is_empty()
    }

    /// The newest event sequence number.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The run record.
    pub fn run(&self) -> &RunRecord {
        &self.run
    }

    /// What a run that ends without the leader's details records: the strategy of the stored
    /// configuration, no rounds, no outputs.
    fn default_details(&self) -> RunDetails {
        let strategy = self
            .config
            .as_ref()
            .and_then(|c| c.get("strategy"))
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        RunDetails {
            strategy,
            ..RunDetails::default()
        }
    }

    /// Appends an event to the log as `actor_name` (whose role is looked up).
    pub fn record(&mut self, actor_name: &str, event: Event, now: Timestamp) -> u64 {
        let role_name = self.role_of(actor_name);
        self.last_seq += 1;
        let env = Envelope {
            seq: self.last_seq,
            ts: now,
            team_id: self.team.clone(),
            agent_id: actor_name.to_string(),
            role_name,
            event,
        };
        self.changes.push(Change::Event(env));
        self.last_seq
    }

    fn role_of(&self, name: &str) -> String {
        match self.agents.get(name) {
            Some(a) => a.info.role.clone(),
            None => name.to_string(),
        }
    }

    /// The stored team configuration.
    pub fn config(&self) -> Option<&serde_json::Value> {
        self.config.as_ref()
    }

    /// Replaces the team configuration (operator).
    pub fn set_config(&mut self, actor: &Actor, config: serde_json::Value) -> Outcome<()> {
        if *actor != Actor::Operator {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the operator configures the team",
            ));
        }
        self.config = Some(config.clone());
        self.changes.push(Change::Config(config));
        Ok(())
    }

    /// Sets (`Some`) or resets (`None`) one run-time setting in the stored configuration's
    /// `overrides`, or resets all with `key` `*` (leader or operator; the daemon checked the
    /// value against the configuration); one `CONFIG_CHANGED` event.
    pub fn set_override(
        &mut self,
        actor: &Actor,
        key: &str,
        value: Option<String>,
        applies: &str,
        now: Timestamp,
    ) -> Outcome<()> {
        require_privileged(actor, "change the team's settings")?;
        let Some(serde_json::Value::Object(config)) = self.config.as_mut() else {
            return Err(ErrorBody::new(
                ErrorCode::InvalidState,
                "the team has no configuration yet",
            ));
        };
        let overrides = config
            .entry("overrides")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !overrides.is_object() {
            *overrides = serde_json::Value::Object(Default::default());
        }
        if let serde_json::Value::Object(o) = overrides {
            match (&value, key) {
                (None, "*") => o.clear(),
                (None, k) => {
                    o.remove(k);
                }
                (Some(v), k) => {
                    o.insert(k.to_string(), serde_json::Value::String(v.clone()));
                }
            }
        }
        let stored = serde_json::Value::Object(config.clone());
        self.changes.push(Change::Config(stored));
        self.record(
            actor.name(),
            Event::ConfigChanged {
                key: key.to_string(),
                value,
                by: actor.name().to_string(),
                applies: applies.to_string(),
            },
            now,
        );
        Ok(())
    }

    /// Starts a run with a goal (operator).
    pub fn start_run(
        &mut self,
        actor: &Actor,
        goal: Option<String>,
        now: Timestamp,
    ) -> Outcome<()> {
        require_privileged(actor, "start a run")?;
        // A new run does the team file's tasks again: the key of a task an earlier run ended
        // names nothing any more, so a keyed creation in this run makes a new task.
        let tasks = &self.tasks;
        self.task_keys
            .retain(|_, id| tasks.get(id).is_none_or(|t| !t.status.is_terminal()));
        self.run = RunRecord {
            state: RunState::Running,
            goal: goal.clone(),
            answer: None,
            details: None,
            usage: UsageSum::default(),
            started_at: Some(now),
        };
        self.changes.push(Change::Run(self.run.clone()));
        self.record(actor.name(), Event::RunStarted { goal }, now);
        Ok(())
    }

    /// Ends the run with the leader's answer (SPEC §5.5); refused while work is open unless forced.
    pub fn finish(
        &mut self,
        actor: &Actor,
        answer: String,
        force: bool,
        success: bool,
        details: Option<RunDetails>,
        now: Timestamp,
    ) -> Outcome<()> {
        require_privileged(actor, "finish the team")?;
        if matches!(self.run.state, RunState::Finished | RunState::Failed) {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                "the run is already finished",
                json!({"run": self.run.state}),
            ));
        }
        let open: Vec<u64> = self
            .tasks
            .values()
            .filter(|t| matches!(t.status, TaskStatus::Pending | TaskStatus::InProgress))
            .map(|t| t.id)
            .collect();
        if !open.is_empty() && !force {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "{} task(s) are still pending or in progress (use force to finish anyway)",
                    open.len()
                ),
                json!({"open": open}),
            ));
        }
        self.run.state = if success {
            RunState::Finished
        } else {
            RunState::Failed
        };
        self.run.answer = Some(answer.clone());
        self.run.details = Some(details.unwrap_or_else(|| self.default_details()));
        self.changes.push(Change::Run(self.run.clone()));
        self.record(actor.name(), Event::RunFinished { answer, success }, now);
        Ok(())
    }

    /// Whether a task was completed since the run started (true for a run record that does not
    /// say when it started: nothing is held against a run of an older version).
    pub fn run_did_work(&self) -> bool {
        let Some(start) = self.run.started_at else {
            return true;
        };
        self.tasks
            .values()
            .any(|t| t.status == TaskStatus::Completed && t.finished_at.is_some_and(|f| f >= start))
    }

    /// Marks the run failed without an answer from the leader (e.g. the leader failed).
    pub fn fail_run(&mut self, why: String, now: Timestamp) {
        if self.run.state != RunState::Running {
            return;
        }
        self.run.state = RunState::Failed;
        self.run.answer = Some(why.clone());
        self.run.details = Some(self.default_details());
        self.changes.push(Change::Run(self.run.clone()));
        self.record(
            "daemon",
            Event::RunFinished {
                answer: why,
                success: false,
            },
            now,
        );
    }

    /// Records an event an agent reports about itself (text, tool calls, errors).
    pub fn emit(&mut self, actor: &Actor, event: Event, now: Timestamp) -> Outcome<u64> {
        // The events of a strategy run are the leader's account of its own loop.
        let strategy_event = matches!(
            event,
            Event::WorkerStarted { .. }
                | Event::WorkerFinished { .. }
                | Event::CoordinatorDecision { .. }
                | Event::FinalAnswer { .. }
        );
        let allowed = matches!(
            event,
            Event::TextMessageContent { .. }
                | Event::ToolCallStart { .. }
                | Event::ToolCallResult { .. }
                | Event::Error { .. }
        ) || (strategy_event && actor.is_privileged());
        if !allowed {
            return Err(ErrorBody::with_details(
                ErrorCode::BadRequest,
                format!(
                    "{} events are recorded by the daemon, not emitted by clients",
                    event.type_name()
                ),
                json!({"allowed": ["TEXT_MESSAGE_CONTENT", "TOOL_CALL_START", "TOOL_CALL_RESULT", "ERROR"],
                    "leader_only": ["WORKER_STARTED", "WORKER_FINISHED", "COORDINATOR_DECISION", "FINAL_ANSWER"]}),
            ));
        }
        if let Some(name) = actor.agent() {
            self.touch(name, now);
        }
        Ok(self.record(actor.name(), event, now))
    }

    /// A summary of the team.
    pub fn counts(&self) -> Counts {
        let mut agents: BTreeMap<&str, (AgentStatus, usize)> = BTreeMap::new();
        for a in self.agents.values() {
            agents
                .entry(a.info.status.as_str())
                .or_insert((a.info.status, 0))
                .1 += 1;
        }
        let mut tasks: BTreeMap<&str, (TaskStatus, usize)> = BTreeMap::new();
        for t in self.tasks.values() {
            tasks.entry(t.status.as_str()).or_insert((t.status, 0)).1 += 1;
        }
        (
            agents.into_values().collect(),
            tasks.into_values().collect(),
        )
    }
}

pub(crate) fn require_privileged(actor: &Actor, what: &str) -> Outcome<()> {
    if actor.is_privileged() {
        Ok(())
    } else {
        Err(ErrorBody::with_details(
            ErrorCode::PermissionDenied,
            format!("only the leader or the operator may {what}"),
            json!({"agent": actor.name()}),
        ))
    }
}

pub(crate) fn not_found_task(id: u64) -> ErrorBody {
    ErrorBody::with_details(
        ErrorCode::NotFound,
        format!("no task {id}"),
        json!({"task": id}),
    )
}

pub(crate) fn bad_request(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

#[cfg(test)]
mod tests;
