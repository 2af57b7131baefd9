//! `agent-team plan`: the plans of plan-required teammates. Reads (`list`, `show`) go through
//! the reader, so they never start a daemon; `approve` and `reject` are operator requests,
//! applied exactly once.

use crate::cli::PlanCmd;
use crate::ctx::Ctx;
use crate::output::{self, ago, short};
use agent_team_client::ClientError;
use agent_team_protocol::*;
use anyhow::{Result, bail};
use std::process::ExitCode;

/// `agent-team plan …`
pub fn plan(ctx: &Ctx, cmd: PlanCmd) -> Result<ExitCode> {
    match cmd {
        PlanCmd::List(j) => list_plans(ctx, j.json)?,
        PlanCmd::Show { name, json } => show_plan(ctx, &name, json)?,
        PlanCmd::Approve {
            name,
            feedback,
            json,
        } => decide(ctx, name, true, feedback, json)?,
        PlanCmd::Reject {
            name,
            feedback,
            json,
        } => decide(ctx, name, false, feedback, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `plan list`: every teammate that needs plan approval and where its plan stands.
fn list_plans(ctx: &Ctx, json: bool) -> Result<()> {
    let agents: Vec<AgentInfo> = ctx
        .reader()?
        .agents()?
        .into_iter()
        .filter(|a| a.plan.is_some())
        .collect();
    if json {
        output::json(&agents.iter().map(entry).collect::<Vec<_>>());
    } else if agents.is_empty() {
        eprintln!(
            "agent-team: no teammate of team {} needs plan approval (set plan_required = \
                     true on a [[teammates]] entry or a role)",
            ctx.team
        );
    } else {
        let rows: Vec<Vec<String>> = agents
            .iter()
            .filter_map(|a| a.plan.as_ref().map(|p| (a, p)))
            .map(|(a, p)| {
                vec![
                    a.name.clone(),
                    a.role.clone(),
                    p.state.to_string(),
                    p.submissions.to_string(),
                    p.submitted_at.map_or_else(|| "-".to_string(), ago),
                    p.plan
                        .as_deref()
                        .map_or_else(|| "-".to_string(), |t| short(&text::printable(t), 60)),
                ]
            })
            .collect();
        output::table(
            &["NAME", "ROLE", "PLAN", "SUBMISSIONS", "SUBMITTED", "TEXT"],
            &rows,
        );
    }
    Ok(())
}

/// `plan show`: one teammate's plan, its state and the last decision on it.
fn show_plan(ctx: &Ctx, name: &str, json: bool) -> Result<()> {
    let agents = ctx.reader()?.agents()?;
    let Some(a) = agents.iter().find(|a| a.name == name) else {
        let names: Vec<&str> = agents
            .iter()
            .filter(|a| a.plan.is_some())
            .map(|a| a.name.as_str())
            .collect();
        bail!(crate::Hinted::new(
            format!("no agent {name:?} in team {}", ctx.team),
            format!(
                "teammates with a plan: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        ));
    };
    let Some(p) = &a.plan else {
        bail!(crate::Hinted::new(
            format!("{name} needs no plan approval"),
            "set plan_required = true on its [[teammates]] entry or its role"
        ));
    };
    if json {
        output::json(&entry(a));
    } else {
        output::line(&format!(
            "{name} ({}): plan {}{}",
            a.role,
            p.state,
            p.submitted_at
                .map(|t| format!(", submitted {}", ago(t)))
                .unwrap_or_default()
        ));
        if let Some(by) = &p.decided_by {
            output::line(&format!(
                "last decision by {by}{}",
                p.feedback
                    .as_deref()
                    .map(|f| format!(": {}", text::printable(f)))
                    .unwrap_or_default()
            ));
        }
        output::line("");
        output::line(&p.plan.as_deref().map_or_else(
            || "(no plan submitted yet)".to_string(),
            |t| {
                t.lines()
                    .map(text::printable)
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        ));
    }
    Ok(())
}

/// One teammate's plan as `--json` prints it.
fn entry(a: &AgentInfo) -> serde_json::Value {
    serde_json::json!({"agent": a.name, "role": a.role, "status": a.status, "plan": a.plan})
}

/// `approve` / `reject`: the decision, with a hint fit for plans when the daemon refuses.
fn decide(
    ctx: &Ctx,
    name: String,
    approve: bool,
    feedback: Option<String>,
    json: bool,
) -> Result<()> {
    let req = Request::PlanDecide {
        agent: name.clone(),
        approve,
        feedback,
    };
    let reply = match ctx.call(req) {
        Ok(r) => r,
        Err(e) => {
            if let Some(ClientError::Server(body)) =
                e.chain().find_map(|c| c.downcast_ref::<ClientError>())
            {
                let hint = match body.code {
                    ErrorCode::Conflict => format!(
                        "`agent-team plan show {name}` says where its plan stands; a teammate \
                         must submit_plan before a decision"
                    ),
                    ErrorCode::NotFound => "`agent-team plan list` lists the teammates with a \
                                            plan"
                        .to_string(),
                    _ => return Err(e),
                };
                bail!(crate::Hinted::new(body.message.clone(), hint));
            }
            return Err(e);
        }
    };
    let Reply::Agent { agent } = reply else {
        bail!("unexpected reply {reply:?}");
    };
    if json {
        output::json(&entry(&agent));
    } else if approve {
        output::line(&format!(
            "approved the plan of {}: it now has its full tool set",
            agent.name
        ));
    } else {
        output::line(&format!(
            "rejected the plan of {}: it stays read-only and was sent the feedback",
            agent.name
        ));
    }
    Ok(())
}
