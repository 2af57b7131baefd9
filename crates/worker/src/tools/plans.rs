//! The plan tools: `submit_plan` (a plan-required teammate) and `decide_plan` (the leader),
//! each one request to the daemon, which keeps the plan state and tells the other side.

use super::{ToolCtx, ToolOutcome, daemon, to_json};
use agent_team_protocol::*;
use agent_team_tools::{DecidePlan, SubmitPlan};

pub(super) async fn submit_plan(ctx: &ToolCtx, a: &SubmitPlan) -> Result<ToolOutcome, String> {
    let req = Request::PlanSubmit {
        plan: a.plan.clone(),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Agent { agent } => ToolOutcome::ok(format!(
            "plan submitted (submission {}): waiting for approval. You stay read-only until the \
             leader or the operator approves it; the decision reaches you as a message. End your \
             turn now.",
            agent.plan.map_or(1, |p| p.submissions)
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn decide_plan(ctx: &ToolCtx, a: &DecidePlan) -> Result<ToolOutcome, String> {
    let req = Request::PlanDecide {
        agent: a.teammate.clone(),
        approve: a.approve,
        feedback: a.feedback.clone(),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Agent { agent } => ToolOutcome::ok(format!(
            "the plan of {} is {}; it was told{}",
            agent.name,
            if a.approve { "approved" } else { "rejected" },
            if a.approve {
                " and now has its full tool set"
            } else {
                " and stays read-only until it submits a new plan"
            }
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}
