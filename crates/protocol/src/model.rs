//! The team's data model as it appears on the wire: tasks, messages, agents, permission
//! requests, events and their envelopes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, written on the wire as an RFC 3339 UTC string. Reading
/// the clock is the caller's (`Timestamp::from(SystemTime::now())`, or the daemon's `Clock`):
/// this crate is data only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl From<SystemTime> for Timestamp {
    /// A time before the epoch is the epoch.
    fn from(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0
    }

    /// The RFC 3339 form with milliseconds, e.g. `2026-11-22T08:31:24.123Z`.
    pub fn to_rfc3339(self) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(self.0);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// Parses the RFC 3339 form.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = humantime::parse_rfc3339_weak(s).ok()?;
        Some(Timestamp(
            t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64
        ))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp {s:?}")))
    }
}

/// On the wire a timestamp is an RFC 3339 string, so that is its schema.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

/// A task's place in its lifecycle (SPEC §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting to be claimed or assigned.
    Pending,
    /// Owned by an agent that is working on it.
    InProgress,
    /// Finished successfully; its dependents may start.
    Completed,
    /// Finished unsuccessfully; `retry` puts it back to pending.
    Failed,
    /// Withdrawn by the leader before it started.
    Cancelled,
}

impl TaskStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether no further work will happen on the task without a retry.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => TaskStatus::Pending,
            "in_progress" => TaskStatus::InProgress,
            "completed" => TaskStatus::Completed,
            "failed" => TaskStatus::Failed,
            "cancelled" => TaskStatus::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the shared task board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Task {
    /// Sequential id, never reused, also across daemon restarts.
    pub id: u64,
    /// Optional stable key from the team file, unique in the team; makes creation idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Short title.
    pub title: String,
    /// Longer description for the agent doing it.
    #[serde(default)]
    pub description: String,
    /// Shell command the offline `exec` provider runs for this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// The agent working on it; on a pending task, the agent it is reserved for.
    #[serde(default)]
    pub owner: Option<String>,
    /// Tasks that must be completed before this one may start.
    #[serde(default)]
    pub blocked_by: Vec<u64>,
    /// The tasks whose `blocked_by` names this one (computed for readers from the whole
    /// board, never stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<u64>,
    /// Who created it (`operator`, `leader`, …).
    pub created_by: String,
    /// The outcome text (for `exec`: exit code and the tail of the output).
    #[serde(default)]
    pub result: Option<String>,
    /// How many times the task went to in_progress.
    #[serde(default)]
    pub attempts: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it last went to in_progress.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it reached completed, failed or cancelled.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
}

/// What a message is for (SPEC §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Free text between agents.
    #[default]
    Text,
    /// Asks the recipient to finish and exit.
    ShutdownRequest,
    /// The recipient's answer to a shutdown request.
    ShutdownResponse,
    /// A teammate has nothing left to do (coalesced: one per change).
    Idle,
    /// A task changed in a way the recipient should know about.
    TaskEvent,
    /// A permission request or decision.
    Permission,
}

impl MessageKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::ShutdownRequest => "shutdown_request",
            MessageKind::ShutdownResponse => "shutdown_response",
            MessageKind::Idle => "idle",
            MessageKind::TaskEvent => "task_event",
            MessageKind::Permission => "permission",
        }
    }
}

/// How far a message copy has travelled towards its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Durable in the daemon, not yet acknowledged by the recipient's process.
    Queued,
    /// The recipient's process acknowledged receiving it.
    Delivered,
    /// The recipient's agent took it into its work.
    Read,
}

impl DeliveryState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
        }
    }

    /// The small integer stored on disk.
    pub fn code(self) -> i64 {
        match self {
            DeliveryState::Queued => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Read => 2,
        }
    }

    /// The state for a stored integer.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => DeliveryState::Queued,
            1 => DeliveryState::Delivered,
            2 => DeliveryState::Read,
            _ => return None,
        })
    }
}

/// One recipient's copy of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Message {
    /// Unique id; per-recipient order follows it.
    pub id: u64,
    /// The sender, stamped by the daemon from the authenticated connection.
    pub from: String,
    /// The recipient of this copy.
    pub to: String,
    /// What the message is for.
    pub kind: MessageKind,
    /// The text (at most 64 KiB).
    pub body: String,
    /// A one-line summary for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// When the daemon accepted it.
    pub ts: Timestamp,
    /// Delivery state of this copy.
    pub state: DeliveryState,
}

impl Message {
    /// Its place in the order an agent reads what waits at an idle point (SPEC §5.3): 0 a
    /// shutdown request, 1 the leader, the operator or the daemon, 2 peers; FIFO within each.
    pub fn priority(&self) -> u8 {
        match (self.kind, self.from.as_str()) {
            (MessageKind::ShutdownRequest, _) => 0,
            (_, crate::names::LEADER) | (_, crate::names::OPERATOR) | (_, "daemon") => 1,
            _ => 2,
        }
    }
}

/// An agent's lifecycle state (SPEC §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Launched, not yet connected back.
    Starting,
    /// Connected and working.
    Running,
    /// Connected, nothing to do.
    Idle,
    /// Connected, waiting on a permission decision.
    Waiting,
    /// Died; a restart is scheduled after a backoff.
    Backoff,
    /// Stopped by the operator or by shutdown; not restarted.
    Stopped,
    /// Finished its work and exited.
    Exited,
    /// Gave up restarting; only a manual restart clears it.
    Failed,
    /// Runs on another host whose link is down: it keeps its task for the team's
    /// `[ssh] grace_secs` while the link is made again, then is `failed` (unreachable).
    Unreachable,
}

impl AgentStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Starting => "starting",
            AgentStatus::Running => "running",
            AgentStatus::Idle => "idle",
            AgentStatus::Waiting => "waiting",
            AgentStatus::Backoff => "backoff",
            AgentStatus::Stopped => "stopped",
            AgentStatus::Exited => "exited",
            AgentStatus::Failed => "failed",
            AgentStatus::Unreachable => "unreachable",
        }
    }

    /// Whether an agent in this state has (or should have) a live process.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            AgentStatus::Starting
                | AgentStatus::Running
                | AgentStatus::Idle
                | AgentStatus::Waiting
                | AgentStatus::Unreachable
        )
    }

    /// Whether the agent is finished for good unless the operator acts.
    pub fn is_down(self) -> bool {
        matches!(
            self,
            AgentStatus::Stopped | AgentStatus::Exited | AgentStatus::Failed
        )
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most other members an agent's prompt names: past it, the rest is a count and the tool
/// that lists them, so a prompt's roster does not grow with the team.
pub const ROSTER_NAMED: usize = 10;

impl AgentInfo {
    /// Where this member stands in the prompt roster of an agent of role `role` (lower first):
    /// the leader, then the agent's own collaborators (members of its role), then the rest.
    pub fn prompt_rank(&self, role: &str) -> (bool, bool) {
        (self.name != crate::names::LEADER, self.role != role)
    }
}

/// The members the prompt of agent `name` (of role `role`) names, in that order: the first
/// [`ROSTER_NAMED`] others by [`AgentInfo::prompt_rank`], roster order within a rank, and the
/// agent itself last (its own plan is read from it).
pub fn prompt_members<'a>(
    all: impl IntoIterator<Item = &'a AgentInfo>,
    name: &str,
    role: &str,
) -> Vec<&'a AgentInfo> {
    let mut me = None;
    let mut others: Vec<&AgentInfo> = Vec::new();
    for a in all {
        if a.name == name {
            me = Some(a);
        } else {
            others.push(a);
        }
    }
    others.sort_by_key(|a| a.prompt_rank(role));
    others.truncate(ROSTER_NAMED);
    others.extend(me);
    others
}

/// One member of the roster as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentInfo {
    /// Unique name in the team (`leader` for the leader).
    pub name: String,
    /// The role it was started from.
    pub role: String,
    /// Lifecycle state.
    pub status: AgentStatus,
    /// How its process is placed: `tmux`, `iterm2`, `process`, `in-process` or `external`.
    pub backend: String,
    /// The process id of the current incarnation, if it has one.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The process group that is killed to stop it.
    #[serde(default)]
    pub pgid: Option<u32>,
    /// The pane id (tmux `%N`, iTerm2 session id) if it has one.
    #[serde(default)]
    pub pane: Option<String>,
    /// Incremented at each start; events from older incarnations are ignored.
    pub incarnation: u64,
    /// How many times it was restarted after dying.
    pub restarts: u32,
    /// The task it holds in progress.
    #[serde(default)]
    pub current_task: Option<u64>,
    /// When it last did something.
    pub last_activity: Timestamp,
    /// Whether its process is connected to the daemon right now.
    #[serde(default)]
    pub connected: bool,
    /// How its last incarnation ended (`exit 1`, `signal 9`) or why it failed.
    #[serde(default)]
    pub last_exit: Option<String>,
    /// The last error it reported (e.g. a model API refusing its key).
    #[serde(default)]
    pub error: Option<String>,
    /// Its model usage so far (tokens, requests, spend); absent before its first model
    /// response. Filled in when the roster is read, not stored with the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::UsageFigures>,
    /// Its colour in panes, `ps` and the boards: a colour name (`cyan`) or `#rrggbb`, given in
    /// the team file or assigned from [`crate::PALETTE`] in roster order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Its own checklist as it last wrote it with `todo_write` (empty when it never did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub todos: Vec<TodoItem>,
    /// Its plan when it must have one approved before it changes anything (`plan_required`);
    /// absent for an agent that needs no plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanInfo>,
    /// The ssh destination it runs on; absent for an agent on the daemon's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The container it runs in and its limits; absent for an agent in no container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Box<ContainerSpec>>,
}

/// `container = { … }` on a role or a teammate (and `spawn --image`): the image a teammate's
/// worker runs in, with the caps that keep a runaway task from taking the machine (issue 66).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The image (`docker.io/library/debian:12`, `localhost/team:1`).
    pub image: String,
    /// The program that runs it: `podman` (the default) or `docker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Its memory cap as written (`2G`, `512M`); swap is not added to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Its CPU cap in CPUs as written (`1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// The most processes (and threads) it may hold at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// The OCI runtime it runs under (`runsc` for gVisor, `kata`); none: the runtime's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class: Option<String>,
}

impl ContainerSpec {
    /// The program that runs it (`podman` unless `runtime` says `docker`).
    pub fn program(&self) -> &str {
        self.runtime.as_deref().unwrap_or("podman")
    }

    /// Its limits in words for `ps` and the boards: `memory 2G, cpus 1.5, pids 512`.
    pub fn limits(&self) -> String {
        let mut v = Vec::new();
        if let Some(m) = &self.memory {
            v.push(format!("memory {m}"));
        }
        if let Some(c) = &self.cpus {
            v.push(format!("cpus {c}"));
        }
        if let Some(p) = self.pids {
            v.push(format!("pids {p}"));
        }
        if v.is_empty() {
            "no limits".to_string()
        } else {
            v.join(", ")
        }
    }
}

impl AgentInfo {
    /// Whether it still works read-only: its plan is required and not yet approved (`ps`
    /// shows it as `planning`).
    pub fn is_planning(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|p| p.state != PlanState::Approved)
    }
}

/// Where the plan of a plan-required teammate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// No plan yet, or the last one was rejected: it works read-only and writes a plan.
    Planning,
    /// A plan waits for the leader's or the operator's decision; still read-only.
    Submitted,
    /// The plan was approved: it has its full tool set.
    Approved,
}

impl PlanState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::Planning => "planning",
            PlanState::Submitted => "submitted",
            PlanState::Approved => "approved",
        }
    }
}

impl std::fmt::Display for PlanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plan-required teammate's plan (`submit_plan`) and the last decision on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PlanInfo {
    /// Where it stands.
    pub state: PlanState,
    /// The plan as last submitted (kept after a decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// When it was last submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Timestamp>,
    /// The feedback of the last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    /// Who made the last decision (`leader`, `operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// How many plans were submitted so far.
    #[serde(default)]
    pub submissions: u32,
}

impl PlanInfo {
    /// A plan-required teammate's start: planning, no plan yet.
    pub fn required() -> Self {
        PlanInfo {
            state: PlanState::Planning,
            plan: None,
            submitted_at: None,
            feedback: None,
            decided_by: None,
            submissions: 0,
        }
    }
}

/// Where one item of an agent's checklist stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    /// Not started.
    Pending,
    /// Being worked on now.
    InProgress,
    /// Done.
    Completed,
}

/// One item of an agent's checklist (`todo_write`, `set_todos`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TodoItem {
    /// What is to be done.
    pub content: String,
    /// Where it stands.
    pub status: TodoStatus,
}

impl AgentInfo {
    /// A new roster entry: `starting`, incarnation `incarnation`, no process, no task yet.
    pub fn new(name: &str, role: &str, backend: &str, incarnation: u64, now: Timestamp) -> Self {
        AgentInfo {
            name: name.to_string(),
            role: role.to_string(),
            status: AgentStatus::Starting,
            backend: backend.to_string(),
            pid: None,
            pgid: None,
            pane: None,
            incarnation,
            restarts: 0,
            current_task: None,
            last_activity: now,
            connected: false,
            last_exit: None,
            error: None,
            usage: None,
            todos: Vec::new(),
            color: None,
            host: None,
            container: None,
            plan: None,
        }
    }
}

/// Where a permission request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PermStatus {
    /// Waiting for a decision.
    Pending,
    /// Allowed (once or always).
    Allowed,
    /// Denied by a decision, a timeout or a vanished approver.
    Denied,
    /// Its requester is gone (killed, exited, failed, or its incarnation over) before anyone
    /// decided: nobody waits for the answer any more, so it cannot be decided.
    Void,
}

/// A decision on a permission request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermDecision {
    /// Whether the tool call may go ahead.
    pub allow: bool,
    /// Whether this became a team rule applied to every teammate.
    #[serde(default)]
    pub always: bool,
    /// Who decided: `operator`, `leader`, `rule`, `timeout`, `approver-gone`.
    pub by: String,
    /// The reason given with a denial.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it was decided.
    pub ts: Timestamp,
}

/// A tool call waiting for a human (or the leader) to allow or deny it (SPEC §5.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermRequest {
    /// Sequential id.
    pub id: u64,
    /// The agent that wants to run the tool.
    pub agent: String,
    /// The tool's name, e.g. `bash`.
    pub tool: String,
    /// The tool's input as the policy pattern sees it (for `bash`, the command).
    pub input: String,
    /// Why the agent wants it.
    #[serde(default)]
    pub reason: String,
    /// When it was raised.
    pub ts: Timestamp,
    /// Where it stands.
    pub status: PermStatus,
    /// The decision, once made.
    #[serde(default)]
    pub decision: Option<PermDecision>,
}

/// A team rule created by an "allow always" decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PermRule {
    /// The tool it applies to.
    pub tool: String,
    /// The input it allows: exactly this text, or, when `glob` is set, a pattern in which `*`
    /// matches any run of characters.
    pub input: String,
    /// Whether `input` is a pattern (see `agent_team_perms::pattern_allows`: for the shell, every
    /// command of the line must match it). An exact input is never read as one: allowing
    /// `echo *` always must not allow `echo $(rm -rf ~)`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub glob: bool,
    /// The request that created it.
    pub from_request: u64,
}

impl PermRule {
    /// Whether this rule allows `tool` with `input` (the rule is `agent_team_perms::rule_allows`:
    /// a pattern never allows a write to a protected path).
    pub fn allows(&self, tool: &str, input: &str) -> bool {
        self.tool == tool && agent_team_perms::rule_allows(&self.input, self.glob, tool, input)
    }
}

/// One entry of the team's event log (SPEC §5.6); the `type` tag names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// The team run began.
    RunStarted {
        /// The goal given to the leader.
        #[serde(default)]
        goal: Option<String>,
    },
    /// The team run ended.
    RunFinished {
        /// The leader's final answer.
        answer: String,
        /// Whether the team considers the run a success.
        success: bool,
    },
    /// A piece of an agent's model output.
    TextMessageContent {
        /// The text added.
        delta: String,
    },
    /// An agent started a tool call.
    ToolCallStart {
        /// Identifies the call within the agent.
        tool_call_id: String,
        /// The tool's name.
        tool_name: String,
        /// The arguments as given by the model.
        #[serde(default)]
        args: serde_json::Value,
    },
    /// A tool call finished.
    ToolCallResult {
        /// Identifies the call within the agent.
        tool_call_id: String,
        /// What came back (possibly shortened).
        content: String,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// An agent changed status.
    AgentStatus {
        /// The new status.
        status: AgentStatus,
        /// The incarnation it applies to.
        incarnation: u64,
        /// Extra words, e.g. the exit status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A task was created or changed.
    TaskUpdated {
        /// The task after the change.
        task: Task,
    },
    /// A message was accepted for delivery.
    MessageSent {
        /// The ids of the copies, one per recipient.
        ids: Vec<u64>,
        /// The sender.
        from: String,
        /// The recipient name or `*`.
        to: String,
        /// The kind of message.
        kind: MessageKind,
        /// Its summary, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// Its text (NexAU's message events carry it), cut at [`MESSAGE_EVENT_TEXT`] bytes
        /// with `…` after; the whole text is the message's in the inbox.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
    /// A permission request was raised.
    PermissionRequested {
        /// The request.
        request: PermRequest,
    },
    /// A permission request was resolved.
    PermissionDecided {
        /// The request with its decision.
        request: PermRequest,
    },
    /// Something went wrong that the operator should see.
    Error {
        /// What went wrong.
        message: String,
    },
    /// A key of the team's memory was written or deleted (once per change).
    MemoryUpdated {
        /// The key.
        key: String,
        /// Its version after the change (a deletion counts as a change).
        version: u64,
        /// Whether the key was deleted.
        deleted: bool,
        /// Who changed it.
        by: String,
        /// The new value when its JSON has at most 1 KiB (`MEMORY_EVENT_VALUE_LEN`); absent for
        /// a deletion and for larger values (read those with `memory_get`). A null value is
        /// present as `null`.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present_value"
        )]
        value: Option<serde_json::Value>,
    },
    /// A worker was given its part of a `coordinator` or `collaborate` run (recorded by the
    /// leader when it puts the worker's task on the board).
    WorkerStarted {
        /// The worker (a teammate).
        worker: String,
        /// The round, from 1 (`collaborate`: 1 in parallel, the worker's place in sequence).
        round: u32,
        /// What it was given to do (its task's description; lauren's `task`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        task: String,
    },
    /// A worker's task of a `coordinator` or `collaborate` run ended; `output` is its result.
    WorkerFinished {
        /// The worker.
        worker: String,
        /// The round, as in `WORKER_STARTED`.
        round: u32,
        /// The task's result (what the worker produced, or why it failed).
        output: String,
    },
    /// The coordinator's answer in a round: `route` (to `worker`), `done`, or `invalid` (an
    /// unknown worker or an answer that is neither `ROUTE:` nor `DONE:`).
    CoordinatorDecision {
        /// `route`, `done` or `invalid`.
        decision: String,
        /// The worker routed to (only for `route`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
        /// The round, from 1.
        round: u32,
        /// The coordinator's answer as it wrote it (lauren's `decision` text).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
    /// The final answer of a `coordinator` or `collaborate` run, just before `RUN_FINISHED`.
    FinalAnswer {
        /// The answer.
        answer: String,
        /// The rounds the run took (lauren's `rounds`).
        #[serde(default)]
        rounds: u32,
    },
    /// An agent's model response was counted (one per response; the envelope's `agent_id` is
    /// the agent).
    UsageUpdated {
        /// The model that answered.
        model: String,
        /// This response's figures (`requests` is 1).
        usage: crate::UsageFigures,
        /// The agent's figures so far, every model together.
        total: crate::UsageFigures,
    },
    /// One model call (issue 65), once its response ended: an agent CLI's through the team's
    /// model gateway (every call, counted or refused), or one of our own agents' (each answered
    /// call, from its `report_usage`). The envelope's `agent_id` is the agent.
    ModelCall {
        /// The model asked for.
        model: String,
        /// The API (`anthropic`, `openai-chat`, `openai-responses`, `gemini`).
        api: String,
        /// Whether the response was streamed.
        #[serde(default)]
        streamed: bool,
        /// The HTTP status the CLI was given.
        status: u16,
        /// Prompt tokens, cached ones included (0 when the response reported none).
        #[serde(default)]
        input_tokens: u64,
        /// Output tokens.
        #[serde(default)]
        output_tokens: u64,
        /// The part of `input_tokens` read from the prompt cache.
        #[serde(default)]
        cached_tokens: u64,
        /// The part of `input_tokens` written to the prompt cache.
        #[serde(default)]
        cache_write_tokens: u64,
        /// From the request's arrival at the gateway (or, our own agent's, its start) to the
        /// response's end, in ms.
        latency_ms: u64,
        /// From the request's arrival to the response's first bytes, in ms, when any came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_byte_ms: Option<u64>,
        /// Why it failed (a spent budget, the upstream unreachable), when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A plan-required teammate submitted a plan (`submit_plan`); it waits for a decision.
    PlanSubmitted {
        /// The teammate.
        agent: String,
        /// The plan.
        plan: String,
    },
    /// A setting was changed or reset at run time (`config set|reset`, `set_config`).
    ConfigChanged {
        /// The setting (`role.NAME.model`, …); `*` for a reset of every one.
        key: String,
        /// Its new value; none when reset to the team file's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// Who changed it (`operator`, `leader`).
        by: String,
        /// When it takes effect: `next_start` (of each agent it concerns) or `next_spawn`.
        applies: String,
    },
    /// The leader or the operator dissolved the team (`dissolve_team`): its teammates are
    /// stopping, their tasks went back to the board (or were cancelled).
    TeamDissolved {
        /// Why, as given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The teammates stopped.
        stopped: Vec<String>,
        /// The tasks cancelled (with `cancel_tasks`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cancelled: Vec<u64>,
    },
    /// The leader or the operator decided a submitted plan.
    PlanDecided {
        /// The teammate.
        agent: String,
        /// Approved (it gets its full tool set) or rejected (it stays read-only).
        approved: bool,
        /// What the decider said (sent to the teammate as a message).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        feedback: Option<String>,
        /// Who decided (`leader`, `operator`).
        by: String,
    },
    /// A budget passed 80 % (`level: warning`) or 100 % (`level: exceeded`) of what it allows;
    /// once per crossing (raising the budget rearms it). The leader gets a message too.
    BudgetWarning {
        /// The budget and what is spent.
        budget: crate::BudgetStatus,
    },
    /// A worktree teammate's work was landed or could not be: `merged` (into `into`, new tip
    /// `head`), `pr` (pushed for a pull request), `discarded`, or `conflict` (nothing moved;
    /// `paths` conflict).
    FinishedWork {
        /// `merged`, `pr`, `discarded` or `conflict`.
        outcome: String,
        /// The teammate's branch.
        branch: String,
        /// The base branch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        into: Option<String>,
        /// Commits made of its uncommitted changes first.
        #[serde(default)]
        committed: Vec<String>,
        /// The base branch's new tip after a merge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<String>,
        /// The conflicting paths of a `conflict`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
    },
    /// A hook (`[hooks]` in the team file) failed: it exited with a code other than 0 (or 2,
    /// which blocks, for `task_completed` and `teammate_idle`), was killed at its timeout,
    /// could not start, or was interrupted by a daemon restart (and is not run again).
    HookFailed {
        /// The hook's event (`task_completed`, `run_finished`, ...).
        hook: String,
        /// The event it ran for (none for `task_completed`, which runs before its event).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_seq: Option<u64>,
        /// The hook's command line.
        command: String,
        /// Its exit code, when it exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// The signal that ended it, when one did (9 after its timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// What happened, in words.
        reason: String,
        /// The end of its stderr (at most 2 KiB).
        #[serde(default)]
        stderr: String,
    },
}

/// A field that is present is `Some`, even when it is `null` (absent is `None` by `default`).
fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Every event type's name ([`Event::type_name`]), for what names types (a subscription's
/// filter): checked against the protocol's schema by a test.
pub const EVENT_TYPES: [&str; 25] = [
    "RUN_STARTED",
    "RUN_FINISHED",
    "TEXT_MESSAGE_CONTENT",
    "TOOL_CALL_START",
    "TOOL_CALL_RESULT",
    "AGENT_STATUS",
    "TASK_UPDATED",
    "MESSAGE_SENT",
    "PERMISSION_REQUESTED",
    "PERMISSION_DECIDED",
    "ERROR",
    "MEMORY_UPDATED",
    "WORKER_STARTED",
    "WORKER_FINISHED",
    "COORDINATOR_DECISION",
    "FINAL_ANSWER",
    "USAGE_UPDATED",
    "BUDGET_WARNING",
    "HOOK_FAILED",
    "FINISHED_WORK",
    "PLAN_SUBMITTED",
    "PLAN_DECIDED",
    "TEAM_DISSOLVED",
    "CONFIG_CHANGED",
    "MODEL_CALL",
];

impl Event {
    /// The SCREAMING_SNAKE_CASE type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "RUN_STARTED",
            Event::RunFinished { .. } => "RUN_FINISHED",
            Event::TextMessageContent { .. } => "TEXT_MESSAGE_CONTENT",
            Event::ToolCallStart { .. } => "TOOL_CALL_START",
            Event::ToolCallResult { .. } => "TOOL_CALL_RESULT",
            Event::AgentStatus { .. } => "AGENT_STATUS",
            Event::TaskUpdated { .. } => "TASK_UPDATED",
            Event::MessageSent { .. } => "MESSAGE_SENT",
            Event::PermissionRequested { .. } => "PERMISSION_REQUESTED",
            Event::PermissionDecided { .. } => "PERMISSION_DECIDED",
            Event::Error { .. } => "ERROR",
            Event::MemoryUpdated { .. } => "MEMORY_UPDATED",
            Event::WorkerStarted { .. } => "WORKER_STARTED",
            Event::WorkerFinished { .. } => "WORKER_FINISHED",
            Event::CoordinatorDecision { .. } => "COORDINATOR_DECISION",
            Event::FinalAnswer { .. } => "FINAL_ANSWER",
            Event::UsageUpdated { .. } => "USAGE_UPDATED",
            Event::BudgetWarning { .. } => "BUDGET_WARNING",
            Event::HookFailed { .. } => "HOOK_FAILED",
            Event::FinishedWork { .. } => "FINISHED_WORK",
            Event::PlanSubmitted { .. } => "PLAN_SUBMITTED",
            Event::PlanDecided { .. } => "PLAN_DECIDED",
            Event::TeamDissolved { .. } => "TEAM_DISSOLVED",
            Event::ConfigChanged { .. } => "CONFIG_CHANGED",
            Event::ModelCall { .. } => "MODEL_CALL",
        }
    }
}

/// The most bytes of a message's text a `MESSAGE_SENT` event carries: the event log keeps a
/// copy of every event, and a message may be far longer.
pub const MESSAGE_EVENT_TEXT: usize = 4096;

/// `text` cut to at most `max` bytes at a character boundary, with `…` after when it was cut.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One key of the team's memory: a JSON value with who wrote it last, when, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MemoryEntry {
    /// The key (`outputs/builder`; see `memory::key_problem` for the rules).
    pub key: String,
    /// The value: any JSON, at most 64 KiB as compact JSON.
    pub value: serde_json::Value,
    /// 1 when the key was created, one more for each write since; a key deleted and written
    /// again starts at 1.
    pub version: u64,
    /// Who wrote it last (`operator`, an agent's name, `daemon`).
    pub updated_by: String,
    /// When it was written last.
    pub updated_at: Timestamp,
}

/// An event with its place in the log and who it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Envelope {
    /// Position in the team's log, from 1, without gaps.
    pub seq: u64,
    /// When the daemon recorded it.
    pub ts: Timestamp,
    /// The team's name.
    pub team_id: String,
    /// The agent it concerns (`operator` or `daemon` when no agent).
    pub agent_id: String,
    /// That agent's role.
    pub role_name: String,
    /// The event itself.
    pub event: Event,
}

/// How the team run as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// No run has been started.
    Idle,
    /// The leader is working.
    Running,
    /// The leader finished the team with an answer.
    Finished,
    /// The run ended without success (leader failed, or finished with success = false).
    Failed,
}

/// A summary of the team as `teams show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TeamInfo {
    /// The team's name.
    pub name: String,
    /// The daemon's process id.
    pub daemon_pid: u32,
    /// The protocol version it speaks.
    pub protocol: u32,
    /// Where its state lives.
    pub state_dir: String,
    /// The socket path.
    pub socket: String,
    /// The goal of the current run.
    #[serde(default)]
    pub goal: Option<String>,
    /// How the run stands.
    pub run: RunState,
    /// The leader's final answer once finished.
    #[serde(default)]
    pub answer: Option<String>,
    /// How many agents of each status, as (status, count).
    pub agents: Vec<(AgentStatus, usize)>,
    /// How many tasks of each status, as (status, count).
    pub tasks: Vec<(TaskStatus, usize)>,
    /// The sequence number of the newest event.
    pub last_seq: u64,
    /// The pane backend the team uses.
    #[serde(default)]
    pub backend: Option<String>,
    /// How the finished run went (strategy, rounds, workers' outputs), once it has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<RunDetails>,
}

/// What a compaction removed, and the state dir's size around it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Compacted {
    /// Read messages removed.
    pub messages: u64,
    /// Finished tasks removed.
    pub tasks: u64,
    /// Events removed.
    pub events: u64,
    /// Bytes of the database files before.
    pub bytes_before: u64,
    /// Bytes of the database files after.
    pub bytes_after: u64,
}

/// How a run ended, as `agent-team run --json` prints it and as the last line of
/// `agent-team run --stream` (and the last event of the HTTP stream): one JSON object tagged by
/// `type`, `complete` with the leader's answer or `error` when the run stopped before finishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The leader finished the team: `{"type":"complete","result":…,"success":…,…}`.
    Complete(RunResult),
    /// The run ended without an answer (timeout, team stopped, daemon unreachable):
    /// `{"type":"error","error":{"code":…,"message":…}}`.
    Error {
        /// What went wrong.
        error: RunFailure,
    },
}

/// The leader's answer to a finished run. `result` and `success` are the NexAU names;
/// `answer`, `team` and `seconds` are what `run --json` printed before and stay for scripts
/// (`answer` is always equal to `result`). `strategy`, `rounds`, `worker_outputs` and `tasks`
/// say how the team got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunResult {
    /// The leader's final answer.
    pub result: String,
    /// Whether the leader finished the team as a success.
    pub success: bool,
    /// The same answer as `result` (the name `run --json` used first).
    pub answer: String,
    /// The team that ran.
    pub team: String,
    /// Seconds from the start of `run` to the answer.
    pub seconds: f64,
    /// How the team worked.
    #[serde(default)]
    pub strategy: TeamStrategy,
    /// `leader`: the leader's model turns; `coordinator`: the coordinator's rounds;
    /// `collaborate`: 1 in parallel, the number of workers in sequence.
    #[serde(default)]
    pub rounds: u32,
    /// Each worker's (last) output by name; for `leader`, each teammate's last completed
    /// task result.
    #[serde(default)]
    pub worker_outputs: BTreeMap<String, String>,
    /// The task board at the end, in id order.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// The team's model usage when the run ended: per agent, per role, the team's and the
    /// run's totals, the budgets (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Box<crate::UsageReport>>,
    /// Each teammate's last message to the leader during the run, by name (the run's end
    /// waits for the teammates' last turns so these are in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reports: BTreeMap<String, String>,
    /// What the run's end did with each worktree teammate's work (`finish = "merge"` or
    /// `"pr"` in the team file), a conflict included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished_work: Vec<crate::WorkResult>,
}

impl RunResult {
    /// The result of `team`'s run that ended with `answer` after `seconds` (strategy `leader`,
    /// no rounds, outputs or tasks: add them with [`RunResult::with_details`]).
    pub fn new(team: &str, answer: String, success: bool, seconds: f64) -> Self {
        RunResult {
            result: answer.clone(),
            success,
            answer,
            team: team.to_string(),
            seconds,
            strategy: TeamStrategy::Leader,
            rounds: 0,
            worker_outputs: BTreeMap::new(),
            tasks: Vec::new(),
            usage: None,
            reports: BTreeMap::new(),
            finished_work: Vec::new(),
        }
    }

    /// Adds what the finished run recorded (`TeamInfo::details`) and the board: for the
    /// `leader` strategy the workers' outputs come from the board
    /// ([`teammate_outputs`]), for the others from the run's record.
    pub fn with_details(mut self, details: Option<RunDetails>, tasks: Vec<Task>) -> Self {
        if let Some(d) = details {
            self.strategy = d.strategy;
            self.rounds = d.rounds;
            self.worker_outputs = d.worker_outputs;
        }
        if self.strategy == TeamStrategy::Leader && self.worker_outputs.is_empty() {
            self.worker_outputs = teammate_outputs(&tasks);
        }
        self.tasks = tasks;
        self
    }
}

/// Each teammate's last completed task result (by task id), the leader's own tasks left out:
/// the `worker_outputs` of a `leader` run.
pub fn teammate_outputs(tasks: &[Task]) -> BTreeMap<String, String> {
    let mut done: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Completed)
        .filter(|t| {
            t.owner
                .as_deref()
                .is_some_and(|o| o != crate::names::LEADER)
        })
        .collect();
    done.sort_by_key(|t| t.id);
    let mut out = BTreeMap::new();
    for t in done {
        if let Some(owner) = &t.owner {
            out.insert(owner.clone(), t.result.clone().unwrap_or_default());
        }
    }
    out
}

/// How a team works on its goal (`strategy` in the team file, `--strategy` of `up`/`run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TeamStrategy {
    /// The leader's model plans with tools (create_task, spawn_teammate, finish_team).
    #[default]
    Leader,
    /// Each round the leader's model routes the goal to one worker (`ROUTE: name`) or ends
    /// the run (`DONE: answer`).
    Coordinator,
    /// Every worker works on the goal, then the leader's model writes the answer from all
    /// their outputs.
    Collaborate,
}

impl TeamStrategy {
    /// The name as written in the team file.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamStrategy::Leader => "leader",
            TeamStrategy::Coordinator => "coordinator",
            TeamStrategy::Collaborate => "collaborate",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "leader" => TeamStrategy::Leader,
            "coordinator" => TeamStrategy::Coordinator,
            "collaborate" => TeamStrategy::Collaborate,
            _ => return None,
        })
    }
}

impl fmt::Display for TeamStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the leader records with `finish` about how the run went; kept with the run's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunDetails {
    /// The strategy the run used.
    #[serde(default)]
    pub strategy: TeamStrategy,
    /// Rounds (see [`RunResult::rounds`]).
    #[serde(default)]
    pub rounds: u32,
    /// Each worker's last output (empty for `leader`: taken from the board).
    #[serde(default)]
    pub worker_outputs: BTreeMap<String, String>,
}

/// Why a run ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunFailure {
    /// A snake_case code: `timeout`, `stopped`, a protocol [`crate::ErrorCode`] name, or
    /// `failed` for anything else.
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod message_order_tests {
    use super::*;

    #[test]
    fn shutdown_first_then_leader_operator_daemon_then_peers() {
        let m = |from: &str, kind| Message {
            id: 0,
            from: from.into(),
            to: "b1".into(),
            kind,
            body: String::new(),
            summary: None,
            ts: Timestamp::from(SystemTime::now()),
            state: DeliveryState::Queued,
        };
        assert_eq!(m("b2", MessageKind::ShutdownRequest).priority(), 0);
        for from in ["leader", "operator", "daemon"] {
            assert_eq!(m(from, MessageKind::Text).priority(), 1, "{from}");
        }
        assert_eq!(m("b2", MessageKind::Text).priority(), 2);
    }

    #[test]
    fn a_result_takes_the_run_details_and_for_a_leader_run_the_boards_outputs() {
        let task = |id: u64, owner: &str, status: TaskStatus, result: &str| Task {
            id,
            key: None,
            title: format!("t{id}"),
            description: String::new(),
            run: None,
            status,
            owner: Some(owner.into()),
            blocked_by: vec![],
            blocks: Vec::new(),
            created_by: "leader".into(),
            result: Some(result.into()),
            attempts: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            started_at: None,
            finished_at: None,
        };
        let board = vec![
            task(1, "b1", TaskStatus::Completed, "first"),
            task(2, "b2", TaskStatus::Failed, "broke"),
            task(3, "b1", TaskStatus::Completed, "second"),
            task(4, "leader", TaskStatus::Completed, "mine"),
        ];
        let leader = RunResult::new("t", "a".into(), true, 1.0).with_details(
            Some(RunDetails {
                strategy: TeamStrategy::Leader,
                rounds: 7,
                worker_outputs: BTreeMap::new(),
            }),
            board.clone(),
        );
        assert_eq!((leader.strategy, leader.rounds), (TeamStrategy::Leader, 7));
        assert_eq!(
            leader.worker_outputs,
            [("b1".to_string(), "second".to_string())].into()
        );
        assert_eq!(leader.tasks.len(), 4);
        let coord = RunResult::new("t", "a".into(), true, 1.0).with_details(
            Some(RunDetails {
                strategy: TeamStrategy::Coordinator,
                rounds: 2,
                worker_outputs: [("b2".to_string(), "x".to_string())].into(),
            }),
            board,
        );
        assert_eq!(
            coord.worker_outputs,
            [("b2".to_string(), "x".to_string())].into()
        );
        let v = serde_json::to_value(&coord).unwrap();
        assert_eq!(
            (v["strategy"].as_str(), v["rounds"].as_u64()),
            (Some("coordinator"), Some(2))
        );
    }

    #[test]
    fn a_run_outcome_is_one_object_tagged_by_type() {
        let done = RunOutcome::Complete(RunResult::new("web", "42".into(), true, 1.5));
        let v = serde_json::to_value(&done).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "complete", "result": "42", "success": true,
                "answer": "42", "team": "web", "seconds": 1.5, "strategy": "leader",
                "rounds": 0, "worker_outputs": {}, "tasks": []})
        );
        assert_eq!(serde_json::from_value::<RunOutcome>(v).unwrap(), done);
        let failed = RunOutcome::Error {
            error: RunFailure {
                code: "timeout".into(),
                message: "too slow".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"type": "error", "error": {"code": "timeout", "message": "too slow"}})
        );
    }
}

#[cfg(all(test, feature = "schema"))]
#[allow(clippy::unwrap_used)]
mod event_types_tests {
    use super::*;

    /// The `const` values of every `type` property in a schema.
    fn type_consts(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(c) = m
                    .get("properties")
                    .and_then(|p| p.get("type"))
                    .and_then(|t| t.get("const"))
                    .and_then(|c| c.as_str())
                {
                    out.push(c.to_string());
                }
                m.values().for_each(|x| type_consts(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| type_consts(x, out)),
            _ => {}
        }
    }

    /// [`EVENT_TYPES`] names every event type the protocol has, once: what a subscription's
    /// filter accepts is exactly what can be recorded.
    #[test]
    fn event_types_are_every_events_type_once() {
        let schema = serde_json::to_value(schemars::schema_for!(Event)).unwrap();
        let mut found = Vec::new();
        type_consts(&schema, &mut found);
        found.sort();
        found.dedup();
        let mut listed: Vec<String> = EVENT_TYPES.iter().map(|t| t.to_string()).collect();
        listed.sort();
        let n = listed.len();
        listed.dedup();
        assert_eq!(listed.len(), n, "a type is listed twice");
        assert_eq!(listed, found);
    }
}
