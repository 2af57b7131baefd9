//! Requests a client may make after the handshake, and the replies they get.

use crate::model::*;
use serde::{Deserialize, Serialize};

/// Whether a flag is off (left out of the wire).
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One operation on the team; the `op` field names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness check; answers with the daemon's pid.
    Ping,
    /// A worktree teammate's changes against the commit it started from, committed and not
    /// (operator and leader only).
    WorkDiff {
        /// The teammate.
        agent: String,
        /// With the patch itself, not only the files and line counts.
        #[serde(default, skip_serializing_if = "is_false")]
        patch: bool,
    },
    /// Land a worktree teammate's work: commit what is uncommitted, then merge, push for a pull
    /// request, or discard (operator and leader only; refused while the teammate is working).
    WorkFinish {
        /// The teammate.
        agent: String,
        /// What to do.
        action: crate::FinishAction,
        /// The branch to merge into (default: the one the team started from).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        into: Option<String>,
        /// Keep the branch after a merge.
        #[serde(default, skip_serializing_if = "is_false")]
        keep: bool,
        /// Merge even when the branch changes the team's control plane (the team file, hook
        /// scripts, agent CLIs' settings, workflows): the operator only, after seeing them.
        #[serde(default, skip_serializing_if = "is_false")]
        accept_control_changes: bool,
    },
    /// A summary of the team and its run.
    TeamInfo,
    /// Create a task (leader and operator only).
    TaskAdd {
        /// Short title.
        title: String,
        /// Longer description.
        #[serde(default)]
        description: String,
        /// Command for the exec provider.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<String>,
        /// Existing tasks that must complete first.
        #[serde(default)]
        blocked_by: Vec<u64>,
        /// Assign it at once to this agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assign: Option<String>,
        /// Stable key; adding a task whose key exists returns the existing task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// List tasks in id order, optionally of one status. Long lists come in pages: ask again
    /// with `after` = the last id received until a page comes back empty.
    TaskList {
        /// Only tasks in this status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<TaskStatus>,
        /// Only tasks with a higher id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    },
    /// One task.
    TaskShow {
        /// The task id.
        id: u64,
    },
    /// Claim a task for the calling agent (atomic; see SPEC §5.2 for the refusals).
    TaskClaim {
        /// The task id.
        id: u64,
    },
    /// Claim the lowest-id task the calling agent may claim now, if any.
    TaskClaimNext,
    /// Receive a `task` push for every task change from now on (how idle workers wake up).
    WatchTasks,
    /// Give a pending task to an agent (leader and operator only).
    TaskAssign {
        /// The task id.
        id: u64,
        /// The agent's name.
        to: String,
    },
    /// Put an in-progress task back to pending (its owner, the leader or the operator).
    TaskRelease {
        /// The task id.
        id: u64,
    },
    /// Complete or fail an in-progress task (its owner, the leader or the operator).
    TaskFinish {
        /// The task id.
        id: u64,
        /// `completed` or `failed`.
        status: TaskStatus,
        /// The outcome text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
    },
    /// Cancel a pending task (leader and operator only).
    TaskCancel {
        /// The task id.
        id: u64,
    },
    /// Put a failed task back to pending (leader and operator only).
    TaskRetry {
        /// The task id.
        id: u64,
    },
    /// Send a message to an agent, or to everyone else with `*`.
    Send {
        /// Recipient name or `*`.
        to: String,
        /// The text (at most 64 KiB).
        body: String,
        /// What the message is for.
        #[serde(default)]
        kind: MessageKind,
        /// One-line summary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// An idempotency key: a retried `send` with the same key from the same sender returns
        /// the first send's ids instead of sending again (workers retry across reconnects).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dedup: Option<String>,
    },
    /// An agent's messages with their delivery state (agents may read only their own).
    Inbox {
        /// Whose inbox; defaults to the caller's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Only messages not yet read.
        #[serde(default, skip_serializing_if = "is_false")]
        unread_only: bool,
        /// Only messages with a higher id (paging, as for `task_list`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    },
    /// Acknowledge messages pushed to the calling agent as delivered or read.
    Ack {
        /// Message ids, all addressed to the caller.
        ids: Vec<u64>,
        /// `delivered` or `read`.
        state: DeliveryState,
    },
    /// Ask for permission to run a tool (agents only).
    PermRequest {
        /// The tool's name.
        tool: String,
        /// The input the policy matched on.
        input: String,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// Permission requests: pending ones, or all with `all`.
    PermList {
        /// Include decided requests.
        #[serde(default, skip_serializing_if = "is_false")]
        all: bool,
        /// Only requests with a higher id (paging, as for `task_list`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    },
    /// Decide a pending permission request (operator, or the leader when it is the approver).
    PermDecide {
        /// The request id.
        id: u64,
        /// Allow or deny.
        allow: bool,
        /// Make the allowance a team rule.
        #[serde(default, skip_serializing_if = "is_false")]
        always: bool,
        /// With `always`: the rule allows every input matching this pattern (`*` matches any
        /// run of characters; it must match the request's own input) instead of exactly the
        /// request's input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pattern: Option<String>,
        /// Why it was denied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Events with a sequence number above `since` (one page; ask again after the last).
    Events {
        /// Return events after this sequence number.
        #[serde(default)]
        since: u64,
        /// At most this many.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Receive every event after `since` as pushes, then each new one as it is recorded.
    Subscribe {
        /// Start after this sequence number.
        #[serde(default)]
        since: u64,
        /// Only events of these types ([`EVENT_TYPES`]); none: every event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        types: Option<Vec<String>>,
    },
    /// Record an event from the calling agent (text deltas, tool calls, errors).
    Emit {
        /// The event.
        event: Event,
    },
    /// The roster.
    Agents,
    /// Add an agent whose process somebody else runs (operator only); returns its secret.
    Register {
        /// The new agent's name.
        name: String,
        /// Its role.
        role: String,
    },
    /// Start a new teammate from a role (leader and operator only).
    Spawn {
        /// The role to start it from (empty: the team's `default_role`).
        #[serde(default)]
        role: String,
        /// Its name; defaults to the role name with the next free number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Text appended to the role's system prompt for this member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
        /// The model this member uses instead of its role's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Its first input: a message from the caller, queued before it starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// The ssh destination it runs on (over its role's `host`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Its working directory on its host (a remote member only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<String>,
        /// The container it runs in, over its role's `container` (the operator's only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<crate::ContainerSpec>,
    },
    /// Start several teammates at once, all or nothing (leader and operator only): every
    /// member is checked first and none is started when one is refused (the error names it).
    /// Answered at once with the new roster entries (`starting`).
    SpawnTeam {
        /// The members, in order.
        members: Vec<SpawnMember>,
    },
    /// Wait until each named teammate is settled (`idle`, `exited`, `stopped`, `failed`) and
    /// each named task is finished (`completed`, `failed`, `cancelled`) — with `any`, until the
    /// first of them is — or until the timeout; answered with their states. Neither named:
    /// every teammate.
    WaitFor {
        /// Agents to wait for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        agents: Vec<String>,
        /// Tasks to wait for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tasks: Vec<u64>,
        /// How long to wait at most, in milliseconds (at most 600000).
        #[serde(default = "default_wait_ms")]
        timeout_ms: u64,
        /// Done at the first named teammate settled or task finished (pydantic's and Qwen's
        /// "first to finish"), not when all are.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        any: bool,
    },
    /// Change one setting at run time (leader and operator only): `defaults.model`,
    /// `max_teammates`, `role.NAME.model`, `role.NAME.max_steps`, `member.NAME.model`,
    /// `member.NAME.role`; kept with the team over the team file's value until reset; one
    /// `CONFIG_CHANGED` event.
    ConfigSet {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
    /// Reset one setting (or, without `key`, every one) to the team file's value.
    ConfigReset {
        /// The setting; none: all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Dissolve the team (leader and operator only): every teammate stopped, the tasks they
    /// hold back to pending (or, with `cancel_tasks`, every open task cancelled), their slots
    /// free; one `TEAM_DISSOLVED` event. The leader and the run go on (it may finish or spawn
    /// anew). Answered at once with what was stopped and cancelled.
    Dissolve {
        /// Why (recorded with each teammate's status and in the event).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Cancel every pending task too, instead of leaving them on the board.
        #[serde(default, skip_serializing_if = "is_false")]
        cancel_tasks: bool,
    },
    /// Stop one agent; it is not restarted and its task is released.
    Kill {
        /// The agent's name.
        name: String,
        /// Why (recorded with its status and told to the leader).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Start a stopped, exited or failed teammate again (leader and operator only), with its
    /// inbox; `message` is queued first from the caller. Answered once it has connected.
    Resume {
        /// The agent's name.
        name: String,
        /// A message for it, queued before it starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Restart one agent in place, keeping its identity, inbox and task; clears `failed`.
    Restart {
        /// The agent's name.
        name: String,
    },
    /// Report the calling agent's activity (`running`, `idle`, `waiting`) and any error.
    SetStatus {
        /// The new status.
        status: AgentStatus,
        /// An error to show in `ps` (e.g. the model API refused the key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Type `text` into the calling agent's own pane as one bracketed paste, then Enter (agents
    /// only): how an external CLI's MCP server gives an interactive CLI its first instruction
    /// once the team tools are listed. At most 64 KiB. `invalid_state` where the agent has no
    /// pane (the process and in-process backends).
    PaneInput {
        /// What to type.
        text: String,
    },
    /// Serve the calling agent's egress proxy (agents only): the one way its sandboxed
    /// processes reach the network (`agent_team_paths::net_dir`), asked for before each of
    /// them, so an agent that runs none costs the daemon no socket. `done` once it is served,
    /// or when there is none to serve (no sandbox, an open network, an agent on another host).
    ServeEgress,
    /// Replace the calling agent's own checklist (agents only; `todo_write`): at most
    /// [`crate::MAX_TODOS`] items, each content at most [`crate::MAX_TITLE_LEN`] bytes.
    SetTodos {
        /// The whole list, in order; empty clears it.
        #[serde(default)]
        items: Vec<crate::TodoItem>,
    },
    /// Submit the calling teammate's plan (agents whose plan is required, while not approved;
    /// `submit_plan`): replaces an earlier plan and waits for the leader's or the operator's
    /// decision. At most 64 KiB.
    PlanSubmit {
        /// The plan.
        plan: String,
    },
    /// Approve or reject a teammate's submitted plan (leader and operator only;
    /// `decide_plan`, `agent-team plan approve|reject`). The feedback reaches the teammate as
    /// a message; on approval it gets its full tool set.
    PlanDecide {
        /// The teammate.
        agent: String,
        /// Approve (true) or reject (false).
        approve: bool,
        /// What to tell the teammate (at most 64 KiB).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        feedback: Option<String>,
    },
    /// Store the resolved team configuration (operator only; `up` sends it before `start_run`).
    Configure {
        /// The configuration, as `agent-team-config` serializes a `TeamConfig`.
        config: serde_json::Value,
    },
    /// The stored team configuration (agents read their role from it); a teammate's has its
    /// own role only, the leader's and the operator's every role.
    GetConfig,
    /// Start a team run with a goal (operator only): starts the leader and the team file's teammates.
    StartRun {
        /// The goal given to the leader.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        goal: Option<String>,
        /// The configuration to store first, as `configure` does: one request and one commit
        /// where there were two; nothing starts when it is refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<serde_json::Value>,
    },
    /// End the run with the leader's answer (leader and operator only).
    Finish {
        /// The final answer.
        answer: String,
        /// Finish even with tasks pending or in progress.
        #[serde(default, skip_serializing_if = "is_false")]
        force: bool,
        /// Whether the run succeeded.
        #[serde(default = "default_true")]
        success: bool,
        /// How the run went (strategy, rounds, workers' outputs), kept with the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<crate::RunDetails>,
        /// The finish is the leader program's own reading of the board (the offline leader's
        /// summary), not a decision of a model or a person: it is a success only when a task
        /// was done during the run (a run that did nothing is not a success).
        #[serde(default, skip_serializing_if = "is_false")]
        auto: bool,
    },
    /// Stop every agent and the daemon (operator only); state stays on disk.
    Shutdown,
    /// Write one key of the team's memory (the operator, the leader, and agents whose role
    /// lists `memory_set`); creates it at version 1 or adds one to its version.
    MemorySet {
        /// The key: 1-256 printable bytes, `/`-separated segments, no `.` or `..` segment.
        key: String,
        /// Any JSON value, at most 64 KiB as compact JSON.
        value: serde_json::Value,
    },
    /// One key of the team's memory (anyone); `not_found` when it is not set.
    MemoryGet {
        /// The key.
        key: String,
    },
    /// Keys of the team's memory with their values, in key order. Long lists come in pages:
    /// ask again with `after` = the last key received until a page comes back empty.
    MemoryList {
        /// Only keys that start with this text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        /// Only keys after this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Delete one key of the team's memory (who may write it); `not_found` when it is not set.
    MemoryDelete {
        /// The key.
        key: String,
    },
    /// Count one model response of the calling agent (agents only; send it once per response,
    /// under a request id, so a retry is not counted twice).
    ReportUsage {
        /// The model that answered.
        model: String,
        /// Prompt tokens, cached ones included.
        #[serde(default)]
        input_tokens: u64,
        /// Completion tokens.
        #[serde(default)]
        output_tokens: u64,
        /// The part of `input_tokens` read from the prompt cache.
        #[serde(default)]
        cached_tokens: u64,
        /// The part of `input_tokens` written to the prompt cache (billed at the write price).
        #[serde(default, skip_serializing_if = "is_zero")]
        cache_write_tokens: u64,
        /// How the call went: given, the daemon records it as a `MODEL_CALL` event (issue 65).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<crate::CallTrace>,
    },
    /// Whether the calling agent may make its next model request (agents only): a spent
    /// budget of its role or of the team says `stop`. Otherwise the daemon reserves a lease of
    /// what the request may spend (its prompt plus the most output the role allows; without
    /// figures [`DEFAULT_LEASE_TOKENS`] of output) until the response's `report_usage`, and
    /// says `wait` while other requests in flight hold the rest of the budget.
    BudgetCheck {
        /// The model the request goes to (prices a dollar budget's lease).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The prompt's tokens, estimated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_tokens: Option<u64>,
        /// The most output tokens the response may have.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_tokens: Option<u64>,
    },
    /// The team's usage report: per agent, per role, totals and budgets.
    Usage,
    /// Set a budget at run time (operator only), over the team file's: a role's with `role`,
    /// else the team's. A limit not given stays as it was; 0 removes it.
    BudgetSet {
        /// The role; none for the team.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// The most input + output tokens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<u64>,
        /// The most US dollars.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usd: Option<f64>,
    },
    /// Remove what is done and older than `older_than_secs` (read messages, finished tasks no
    /// open task waits on, events) and give the space back to the system (operator only).
    Gc {
        /// Age in seconds; 0 removes everything done.
        #[serde(default)]
        older_than_secs: u64,
    },
}

impl Request {
    /// Checks the sizes the daemon accepts (SPEC §5): message bodies, goals, task texts,
    /// permission inputs, memory keys (and their other rules) and values. The CLI runs it before it starts or reaches a daemon, the daemon
    /// before it applies anything, so both refuse the same way (`bad_request` with `field`,
    /// `limit` and `size` in the details).
    pub fn check_sizes(&self) -> Result<(), crate::ErrorBody> {
        let body = crate::MAX_BODY_LEN;
        // (field, size, limit); no allocation: this runs on every request.
        let none = ("", 0, 0);
        let fields: [(&str, usize, usize); 3] = match self {
            Request::Send { body: b, .. } => [("body", b.len(), body), none, none],
            Request::Spawn {
                instructions,
                message,
                ..
            } => [
                (
                    "instructions",
                    instructions.as_ref().map_or(0, String::len),
                    body,
                ),
                ("message", message.as_ref().map_or(0, String::len), body),
                none,
            ],
            Request::Resume {
                message: Some(m), ..
            } => [("message", m.len(), body), none, none],
            Request::SpawnTeam { members } => {
                for m in members {
                    Request::Spawn {
                        container: None,
                        role: String::new(),
                        name: None,
                        instructions: m.instructions.clone(),
                        model: None,
                        message: m.message.clone(),
                        host: None,
                        workspace: None,
                    }
                    .check_sizes()?;
                }
                return Ok(());
            }
            Request::StartRun { goal: Some(g), .. } => [("goal", g.len(), body), none, none],
            Request::PlanSubmit { plan } => [("plan", plan.len(), body), none, none],
            Request::PlanDecide {
                feedback: Some(f), ..
            } => [("feedback", f.len(), body), none, none],
            Request::TaskAdd {
                title,
                description,
                run,
                ..
            } => [
                ("title", title.len(), crate::MAX_TITLE_LEN),
                ("description", description.len(), body),
                ("run", run.as_ref().map_or(0, String::len), body),
            ],
            Request::TaskFinish {
                result: Some(r), ..
            } => [("result", r.len(), body), none, none],
            Request::PaneInput { text } => [("text", text.len(), body), none, none],
            Request::PermRequest { input, reason, .. } => [
                ("input", input.len(), body),
                ("reason", reason.len(), body),
                none,
            ],
            Request::SetTodos { items } => {
                if items.len() > crate::MAX_TODOS {
                    return Err(crate::ErrorBody::with_details(
                        crate::ErrorCode::BadRequest,
                        format!(
                            "the checklist has {} items; the limit is {}",
                            items.len(),
                            crate::MAX_TODOS
                        ),
                        serde_json::json!({"field": "items", "limit": crate::MAX_TODOS, "size": items.len()}),
                    ));
                }
                let longest = items.iter().map(|i| i.content.len()).max().unwrap_or(0);
                [("content", longest, crate::MAX_TITLE_LEN), none, none]
            }
            Request::MemorySet { key, value } => {
                crate::memory::check_key(key)?;
                return crate::memory::check_value(value).map(|_| ());
            }
            _ => return Ok(()),
        };
        match fields.into_iter().find(|(_, size, limit)| size > limit) {
            None => Ok(()),
            Some((field, size, limit)) => Err(crate::ErrorBody::with_details(
                crate::ErrorCode::BadRequest,
                format!("the {field} has {size} bytes; the limit is {limit}"),
                serde_json::json!({"field": field, "limit": limit, "size": size}),
            )),
        }
    }

    /// Whether the request changes team state, so a retry of it must be answered from the
    /// daemon's record of its request id (`rid`) instead of being applied again.
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self,
            Request::Ping
                | Request::TeamInfo
                | Request::TaskList { .. }
                | Request::TaskShow { .. }
                | Request::WatchTasks
                | Request::Inbox { .. }
                | Request::PermList { .. }
                | Request::Events { .. }
                | Request::Subscribe { .. }
                | Request::Agents
                | Request::GetConfig
                | Request::MemoryGet { .. }
                | Request::MemoryList { .. }
                | Request::BudgetCheck { .. }
                | Request::Usage
                | Request::WaitFor { .. }
                | Request::WorkDiff { .. }
                // Served again, it is the same proxy.
                | Request::ServeEgress
                // An acknowledgement only moves a message forward: repeating it changes nothing.
                | Request::Ack { .. }
        )
    }
}

fn default_true() -> bool {
    true
}

/// The output tokens a `budget_check` without figures leases: the worker's own most output
/// per response.
pub const DEFAULT_LEASE_TOKENS: u64 = 4096;

/// How long `wait_for` waits when no timeout is given: 60 s.
pub const DEFAULT_WAIT_MS: u64 = 60_000;
/// The longest `wait_for`: 600 s.
pub const MAX_WAIT_MS: u64 = 600_000;

fn default_wait_ms() -> u64 {
    DEFAULT_WAIT_MS
}

/// One member of a `spawn_team` request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnMember {
    /// Its name.
    pub name: String,
    /// The role to start it from (empty: the team's `default_role`).
    #[serde(default)]
    pub role: String,
    /// Text appended to the role's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The model it uses instead of its role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider it uses instead of its role's (`openai`, `anthropic`, `exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Its colour (a colour name or `#rrggbb`); assigned from the palette when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Its first input, queued from the caller before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The ssh destination it runs on (over its role's `host`); none: its role's, else the
    /// daemon's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its working directory on its host (a remote member only), used as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The container it runs in (`spawn --image`; none: its teammate entry's or its role's
    /// `container`, else none). The operator's only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::ContainerSpec>,
}

/// A successful answer; the `kind` field names its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// What `gc` removed.
    Compacted {
        /// The counts and sizes.
        report: crate::Compacted,
    },
    /// Done, nothing to return.
    Done,
    /// Answer to `ping`.
    Pong {
        /// The daemon's process id.
        daemon_pid: u32,
    },
    /// Answer to `team_info`.
    Team {
        /// The summary.
        team: TeamInfo,
    },
    /// One task.
    Task {
        /// The task.
        task: Task,
    },
    /// Several tasks, by id.
    Tasks {
        /// The tasks.
        tasks: Vec<Task>,
        /// Whether more come after the last one (ask with `after`); absent (older daemons):
        /// unknown, ask until a page is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more: Option<bool>,
    },
    /// Answer to `task_claim_next`: the claimed task, or none when nothing is claimable.
    MaybeTask {
        /// The claimed task.
        task: Option<Task>,
    },
    /// Answer to `send`: one copy per recipient.
    Sent {
        /// The ids of the copies.
        ids: Vec<u64>,
        /// The recipients, in the same order.
        recipients: Vec<String>,
    },
    /// Messages, oldest first.
    Messages {
        /// The messages.
        messages: Vec<Message>,
        /// Whether more come after the last one, as for `Tasks`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more: Option<bool>,
    },
    /// One permission request.
    Perm {
        /// The request.
        request: PermRequest,
    },
    /// Several permission requests.
    Perms {
        /// The requests.
        requests: Vec<PermRequest>,
    },
    /// Event envelopes, oldest first.
    Events {
        /// The envelopes.
        events: Vec<Envelope>,
    },
    /// Answer to `subscribe`: pushes with every event after `since` follow.
    Subscribed {
        /// The newest sequence number when the subscription began.
        last_seq: u64,
    },
    /// The roster.
    Agents {
        /// The agents.
        agents: Vec<AgentInfo>,
    },
    /// One agent.
    Agent {
        /// The agent.
        agent: AgentInfo,
    },
    /// The stored team configuration (null when none was stored yet).
    Config {
        /// The configuration.
        config: serde_json::Value,
    },
    /// Answer to `memory_get`: one key of the team's memory.
    Memory {
        /// The entry.
        entry: MemoryEntry,
    },
    /// Answer to `memory_list`: entries in key order.
    MemoryEntries {
        /// The entries.
        entries: Vec<MemoryEntry>,
    },
    /// Answer to `memory_set` and `memory_delete`: the key's version after the change (the
    /// value is not echoed back, so a remembered reply stays small).
    MemoryWritten {
        /// The key.
        key: String,
        /// Its version after the change.
        version: u64,
        /// Whether the change deleted it.
        deleted: bool,
    },
    /// Answer to `usage` and `budget_set`: the team's usage report.
    Usage {
        /// The report.
        report: crate::UsageReport,
    },
    /// Answer to `budget_check`: why the agent must stop, or nothing when it may go on.
    Budget {
        /// The spent budget, in words; none when the agent may make its request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<String>,
        /// Other requests in flight hold what is left of the budget (in words): no lease was
        /// taken; ask again after a short wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait: Option<String>,
    },
    /// Answer to `config_set` / `config_reset`: the setting as it is now, and when it applies.
    ConfigChanged {
        /// The setting (`*`: every one, reset).
        key: String,
        /// Its value now (none: the team file's, after a reset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// `next_start` or `next_spawn`.
        applies: String,
    },
    /// Answer to `dissolve`: the teammates stopping and the tasks cancelled.
    Dissolved {
        /// The teammates stopped.
        stopped: Vec<String>,
        /// The tasks cancelled.
        cancelled: Vec<u64>,
    },
    /// Answer to `wait_for`: whether everything waited for got there (false: the timeout came
    /// first), and the states of the agents and tasks waited for.
    Waited {
        /// Everything waited for is settled or finished.
        done: bool,
        /// The agents waited for.
        agents: Vec<AgentInfo>,
        /// The tasks waited for.
        tasks: Vec<Task>,
    },
    /// Answer to `work_diff`: a worktree teammate's changes.
    WorkDiff {
        /// The changes.
        diff: crate::WorkDiff,
    },
    /// Answer to `work_finish`: what was done with a worktree teammate's work.
    WorkFinished {
        /// The outcome.
        outcome: crate::FinishOutcome,
    },
    /// Answer to `register`: the secret the new agent authenticates with.
    Registered {
        /// The agent.
        agent: AgentInfo,
        /// Its secret.
        secret: String,
    },
}

impl Reply {
    /// Whether a listing's page says nothing comes after it (`more: false`), so the page
    /// that would come back empty need not be asked for. Unknown (an older daemon) is no.
    pub fn is_last_page(&self) -> bool {
        matches!(
            self,
            Reply::Tasks {
                more: Some(false),
                ..
            } | Reply::Messages {
                more: Some(false),
                ..
            }
        )
    }
}
