//! The tools of plan approval (`plan_required`): a plan-required teammate submits its plan, the
//! leader approves or rejects it.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `submit_plan`: the whole plan, replacing an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitPlan {
    /// the plan: what you will change, where, and how you will check it
    pub plan: String,
}

impl Tool for SubmitPlan {
    const NAME: &'static str = "submit_plan";
    const DESCRIPTION: &'static str = "Submit your plan for approval (you must have one approved before you may write files or run the shell; a new plan replaces the last). Then wait: the decision reaches you as a message, and on approval you get your full tool set.";
    const AUDIENCE: Audience = Audience::Planner;
}

/// Arguments of `decide_plan`: the leader approves or rejects a teammate's submitted plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecidePlan {
    /// the teammate whose plan it is
    pub teammate: String,
    /// true to approve (it gets its full tool set), false to reject (it stays read-only)
    pub approve: bool,
    /// what to tell the teammate: required changes when rejecting
    pub feedback: Option<String>,
}

impl Tool for DecidePlan {
    const NAME: &'static str = "decide_plan";
    const DESCRIPTION: &'static str = "Approve or reject the plan a plan-required teammate submitted. Approved, it may write and run the shell; rejected, it stays read-only and gets your feedback to revise the plan.";
    const AUDIENCE: Audience = Audience::LEADER;
}
