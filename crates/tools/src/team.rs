//! The team tools about the team itself: starting teammates, seeing who is there, ending the
//! run, and the approver-leader's permission decisions.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `spawn_teammate`: the leader grows the team.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnTeammate {
    /// a role of the team (e.g. worker, explorer, reviewer)
    pub role: String,
    /// its name; lower-case letters, digits and '-'
    pub name: Option<String>,
}

impl Tool for SpawnTeammate {
    const NAME: &'static str = "spawn_teammate";
    const DESCRIPTION: &'static str =
        "Start a new teammate from a role. Returns its name once it is connected.";
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
