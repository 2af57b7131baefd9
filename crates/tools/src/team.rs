//! The team tools about the team itself: starting teammates (one or a whole team), waiting
//! for them, closing and resuming them, seeing who is there, ending the run, and the
//! approver-leader's permission decisions.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `spawn_teammate`: the leader grows the team.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnTeammate {
    /// a role of the team (e.g. worker, explorer, reviewer); none: the team's default role
    pub role: Option<String>,
    /// its name; lower-case letters, digits and '-'
    pub name: Option<String>,
    /// extra instructions appended to the role's system prompt for this teammate
    pub instructions: Option<String>,
    /// the model it uses instead of its role's
    pub model: Option<String>,
    /// its first input: a message from you it reads before anything else
    pub message: Option<String>,
    /// the ssh host it runs on (a name from ~/.ssh/config); none: its role's, else this machine
    pub host: Option<String>,
}

impl Tool for SpawnTeammate {
    const NAME: &'static str = "spawn_teammate";
    const DESCRIPTION: &'static str = "Start a new teammate from a role, optionally with its own instructions (appended to the role's prompt), its own model and a first message. Returns its name once it is connected.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// One member of a `spawn_team` call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMember {
    /// its name; lower-case letters, digits and '-'
    pub name: String,
    /// a role of the team (e.g. worker, explorer, reviewer); none: the team's default role
    pub role: Option<String>,
    /// extra instructions appended to the role's system prompt
    pub instructions: Option<String>,
    /// the model it uses instead of its role's
    pub model: Option<String>,
    /// the ssh host it runs on (a name from ~/.ssh/config); none: its role's, else this machine
    pub host: Option<String>,
}

/// Arguments of `spawn_team`: several teammates in one call, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnTeam {
    /// the teammates to start
    pub members: Vec<TeamMember>,
}

impl Tool for SpawnTeam {
    const NAME: &'static str = "spawn_team";
    const DESCRIPTION: &'static str = "Start several teammates in one call, all or nothing: if one member cannot be spawned (bad or taken name, unknown role, max_teammates exceeded) none is, and the error names it. Returns their names at once (they start in the background; use wait_for).";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `wait_for`: the leader waits for teammates or tasks to settle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// teammates to wait for until each is idle, exited, stopped or failed
    pub teammates: Option<Vec<String>>,
    /// task ids to wait for until each is completed, failed or cancelled
    pub tasks: Option<Vec<u64>>,
    /// give up after this many seconds (default 60, at most 600)
    pub timeout_s: Option<u64>,
    /// all (default): until every one is done; any: until the first one is
    pub mode: Option<WaitMode>,
}

/// Whether `wait_for` waits for all it names or the first of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// Every named teammate settled and every named task finished.
    All,
    /// The first named teammate settled or task finished.
    Any,
}

impl WaitFor {
    /// The timeout asked for, in milliseconds: 60 s when not given, at most 600 s.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_s.unwrap_or(60).min(600) * 1000
    }
}

impl Tool for WaitFor {
    const NAME: &'static str = "wait_for";
    const DESCRIPTION: &'static str = "Wait until each named teammate is idle/exited/stopped/failed and each named task is completed/failed/cancelled (mode any: until the first of them is), or until the timeout (default 60 s, at most 600 s); returns their states. With neither, waits for every teammate.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `dissolve_team`: the leader stops every teammate at once (pydantic's
/// `dissolve_team`); the run goes on (Qwen Code's `team_delete` ends it: see `aliases`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DissolveTeam {
    /// why, recorded with each teammate's status
    pub reason: Option<String>,
    /// cancel every pending task too instead of leaving them on the board
    pub cancel_tasks: Option<bool>,
}

impl Tool for DissolveTeam {
    const NAME: &'static str = "dissolve_team";
    const DESCRIPTION: &'static str = "Stop every teammate at once: the tasks they hold go back to pending (with cancel_tasks: every pending task is cancelled), their slots are free. You and the run go on: finish_team, or spawn anew.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `set_config`: the leader changes a setting while the team runs (Nyzhi's
/// `/teams-config`, `/subagent-config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// defaults.model, role.NAME.model, role.NAME.max_steps, member.NAME.model or member.NAME.role
    pub key: String,
    /// its new value; leave it out to reset the setting to the team file's
    pub value: Option<String>,
}

impl Tool for SetConfig {
    const NAME: &'static str = "set_config";
    const DESCRIPTION: &'static str = "Change a setting of the team while it runs (or reset it without value): a role's model or max_steps, a member's model or role, the default model. A member's model and role, and a role's, apply when each agent concerned starts next (close_teammate and resume_teammate to apply at once). max_teammates is the operator's to change.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `close_teammate`: the leader stops a teammate and frees its slot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseTeammate {
    /// the teammate's name
    pub name: String,
    /// why, recorded with its status
    pub reason: Option<String>,
}

impl Tool for CloseTeammate {
    const NAME: &'static str = "close_teammate";
    const DESCRIPTION: &'static str = "Stop a teammate: its task in progress goes back to pending and its slot is free (it no longer counts toward max_teammates). It keeps its inbox; resume_teammate starts it again.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `resume_teammate`: the leader starts a closed or exited teammate again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeTeammate {
    /// the teammate's name
    pub name: String,
    /// a message for it, delivered first
    pub message: Option<String>,
}

impl Tool for ResumeTeammate {
    const NAME: &'static str = "resume_teammate";
    const DESCRIPTION: &'static str = "Start a stopped or exited teammate again with its unread messages, and `message` as what it reads first (messages cannot be sent to a stopped teammate). Returns once it is connected.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `diff_teammate`: the leader reviews a worktree teammate's work.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffTeammate {
    /// the teammate's name
    pub name: String,
}

impl Tool for DiffTeammate {
    const NAME: &'static str = "diff_teammate";
    const DESCRIPTION: &'static str = "Show a worktree teammate's changes (isolation = worktree) against the commit it started from, committed and not: the files with lines added and removed, and the patch (cut at 1 MiB). Review it before finish_teammate_work.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// What `finish_teammate_work` does with the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkAction {
    /// merge it into the branch the team started from
    Merge,
    /// drop the worktree and its branch
    Discard,
    /// push it and open a pull request (only when the team file says finish = "pr")
    Pr,
}

/// Arguments of `finish_teammate_work`: the leader lands (or drops) a teammate's work.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishTeammateWork {
    /// the teammate's name
    pub name: String,
    /// merge, discard, or pr (only when the team file says finish = "pr")
    pub action: WorkAction,
}

impl Tool for FinishTeammateWork {
    const NAME: &'static str = "finish_teammate_work";
    const DESCRIPTION: &'static str = "Land a worktree teammate's reviewed work: its uncommitted changes are committed, then merged into the base branch (a conflict changes nothing and names the files), or discarded. The teammate must be idle with its tasks done, or closed. Its worktree and branch are removed after.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `list_teammates` (none): anyone can see the roster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTeammates {}

impl Tool for ListTeammates {
    const NAME: &'static str = "list_teammates";
    const DESCRIPTION: &'static str =
        "The team's members with their role, status and current task.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}

/// Arguments of `finish_team`: the leader ends the run with the user's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishTeam {
    /// the final answer for the user
    pub answer: String,
    /// finish even though tasks are still pending or in progress
    pub force: Option<bool>,
}

impl Tool for FinishTeam {
    const NAME: &'static str = "finish_team";
    const DESCRIPTION: &'static str = "End the team's run with your final answer for the user. Refused while tasks are pending or in progress unless force is true.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `decide_permission`: the approver-leader answers a teammate's request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecidePermission {
    /// the permission request's id
    pub id: u64,
    /// true to allow, false to deny
    pub allow: bool,
    /// make the allowance a team rule
    pub always: Option<bool>,
    /// with always: the rule covers every input matching this pattern
    pub pattern: Option<String>,
    /// why, for the teammate
    pub reason: Option<String>,
}

impl Tool for DecidePermission {
    const NAME: &'static str = "decide_permission";
    const DESCRIPTION: &'static str = "Allow or deny a teammate's pending permission request (you are the approver). `always` makes the allowance a team rule for exactly this input, or, with `pattern`, for every input matching it (`*` matches any run of characters, e.g. `cargo test*`).";
    const AUDIENCE: Audience = Audience::Approver;
}
