//! The team tools: requests to the daemon, answered in a line the model can read.

use super::{ToolCtx, ToolOutcome, daemon, to_json};
use agent_team_protocol::*;
use agent_team_tools::{
    AssignTask, BoardStatus, Broadcast, ClaimTask, CloseTeammate, CreateTask, DecidePermission,
    DiffTeammate, FinishTeam, FinishTeammateWork, ListTasks, ReleaseTask, ResumeTeammate,
    SendMessage, SpawnTeam, SpawnTeammate, StatusUpdate, UpdateTaskStatus, WaitFor, WorkAction,
};
use serde_json::{Value, json};

pub(super) async fn spawn_teammate(
    ctx: &ToolCtx,
    a: &SpawnTeammate,
) -> Result<ToolOutcome, String> {
    let req = Request::Spawn {
        container: None,
        role: a.role.clone().unwrap_or_default(),
        name: a.name.clone(),
        instructions: a.instructions.clone(),
        model: a.model.clone(),
        message: a.message.clone(),
        host: a.host.clone(),
        workspace: None,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Agent { agent } => ToolOutcome::ok(format!(
            "{} ({}) is {}",
            agent.name, agent.role, agent.status
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn spawn_team(ctx: &ToolCtx, a: &SpawnTeam) -> Result<ToolOutcome, String> {
    let members = a
        .members
        .iter()
        .map(|m| SpawnMember {
            name: m.name.clone(),
            role: m.role.clone().unwrap_or_default(),
            instructions: m.instructions.clone(),
            model: m.model.clone(),
            host: m.host.clone(),
            ..Default::default()
        })
        .collect();
    Ok(match daemon(ctx, Request::SpawnTeam { members }).await? {
        Reply::Agents { agents } => {
            let names: Vec<String> = agents
                .iter()
                .map(|a| format!("{} ({})", a.name, a.role))
                .collect();
            ToolOutcome::ok(format!(
                "spawned {}; they are starting (wait_for them to see when they are idle)",
                names.join(", ")
            ))
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn wait_for(ctx: &ToolCtx, a: &WaitFor) -> Result<ToolOutcome, String> {
    let req = Request::WaitFor {
        agents: a.teammates.clone().unwrap_or_default(),
        tasks: a.tasks.clone().unwrap_or_default(),
        timeout_ms: a.timeout_ms(),
        any: a.mode == Some(agent_team_tools::WaitMode::Any),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Waited {
            done,
            agents,
            tasks,
        } => {
            let agents: Vec<Value> = agents
                .iter()
                .map(
                    |a| json!({"name": a.name, "status": a.status, "current_task": a.current_task}),
                )
                .collect();
            let tasks: Vec<Value> = tasks
                .iter()
                .map(|t| json!({"id": t.id, "title": t.title, "status": t.status, "owner": t.owner, "result": t.result}))
                .collect();
            ToolOutcome::ok(to_json(&json!({
                "done": done,
                "timed_out": !done,
                "teammates": agents,
                "tasks": tasks,
            })))
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn set_config(
    ctx: &ToolCtx,
    a: &agent_team_tools::SetConfig,
) -> Result<ToolOutcome, String> {
    let req = match &a.value {
        Some(v) => Request::ConfigSet {
            key: a.key.clone(),
            value: v.clone(),
        },
        None => Request::ConfigReset {
            key: Some(a.key.clone()),
        },
    };
    Ok(match daemon(ctx, req).await? {
        Reply::ConfigChanged {
            key,
            value,
            applies,
        } => ToolOutcome::ok(format!(
            "{key} is {} from the {}",
            value.unwrap_or_else(|| "the team file's again".into()),
            applies.replace('_', " ")
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn dissolve_team(
    ctx: &ToolCtx,
    a: &agent_team_tools::DissolveTeam,
) -> Result<ToolOutcome, String> {
    let req = Request::Dissolve {
        reason: a.reason.clone(),
        cancel_tasks: a.cancel_tasks.unwrap_or(false),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Dissolved { stopped, cancelled } => {
            let mut text = if stopped.is_empty() {
                "no teammate was running".to_string()
            } else {
                format!(
                    "stopping {}; their tasks went back to pending and their slots are free",
                    stopped.join(", ")
                )
            };
            if !cancelled.is_empty() {
                let ids: Vec<String> = cancelled.iter().map(u64::to_string).collect();
                text.push_str(&format!("; cancelled tasks {}", ids.join(", ")));
            }
            ToolOutcome::ok(text)
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn close_teammate(
    ctx: &ToolCtx,
    a: &CloseTeammate,
) -> Result<ToolOutcome, String> {
    let req = Request::Kill {
        name: a.name.clone(),
        reason: a.reason.clone(),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Agent { agent } => ToolOutcome::ok(format!(
            "{} is {}; its slot is free and its task (if any) went back to pending",
            agent.name, agent.status
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn diff_teammate(ctx: &ToolCtx, a: &DiffTeammate) -> Result<ToolOutcome, String> {
    let req = Request::WorkDiff {
        agent: a.name.clone(),
        patch: true,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::WorkDiff { diff } => {
            let mut text = diff.stat_lines().join("\n");
            text.push('\n');
            if let Some(p) = &diff.patch {
                text.push('\n');
                text.push_str(p);
            }
            ToolOutcome::ok(text)
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn finish_teammate_work(
    ctx: &ToolCtx,
    a: &FinishTeammateWork,
) -> Result<ToolOutcome, String> {
    let action = match a.action {
        WorkAction::Merge => agent_team_protocol::FinishAction::Merge,
        WorkAction::Discard => agent_team_protocol::FinishAction::Discard,
        WorkAction::Pr => agent_team_protocol::FinishAction::Pr,
    };
    let req = Request::WorkFinish {
        agent: a.name.clone(),
        action,
        into: None,
        keep: false,
        // The leader can never land control-plane changes: the operator decides.
        accept_control_changes: false,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::WorkFinished { outcome } => ToolOutcome::ok(to_json(&outcome)),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn resume_teammate(
    ctx: &ToolCtx,
    a: &ResumeTeammate,
) -> Result<ToolOutcome, String> {
    let req = Request::Resume {
        name: a.name.clone(),
        message: a.message.clone(),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Agent { agent } => ToolOutcome::ok(format!(
            "{} ({}) is back: {}",
            agent.name, agent.role, agent.status
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn create_task(ctx: &ToolCtx, a: &CreateTask) -> Result<ToolOutcome, String> {
    let req = Request::TaskAdd {
        title: a.title.clone(),
        description: a.description.clone().unwrap_or_default(),
        run: None,
        blocked_by: a.blocked_by.clone().unwrap_or_default(),
        assign: a.assign.clone(),
        key: None,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Task { task } => ToolOutcome::ok(format!(
            "created task {} ({}), {}",
            task.id, task.title, task.status
        )),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn assign_task(ctx: &ToolCtx, a: &AssignTask) -> Result<ToolOutcome, String> {
    let req = Request::TaskAssign {
        id: a.id,
        to: a.to.clone(),
    };
    Ok(task_reply(daemon(ctx, req).await?))
}

pub(super) async fn claim_task(ctx: &ToolCtx, a: &ClaimTask) -> Result<ToolOutcome, String> {
    Ok(task_reply(
        daemon(ctx, Request::TaskClaim { id: a.id }).await?,
    ))
}

pub(super) async fn release_task(ctx: &ToolCtx, a: &ReleaseTask) -> Result<ToolOutcome, String> {
    Ok(task_reply(
        daemon(ctx, Request::TaskRelease { id: a.id }).await?,
    ))
}

pub(super) async fn update_task_status(
    ctx: &ToolCtx,
    a: &UpdateTaskStatus,
) -> Result<ToolOutcome, String> {
    let status = match a.status {
        StatusUpdate::InProgress => {
            return claim_task(ctx, &agent_team_tools::ClaimTask { id: a.id }).await;
        }
        StatusUpdate::Completed => TaskStatus::Completed,
        StatusUpdate::Failed => TaskStatus::Failed,
    };
    let req = Request::TaskFinish {
        id: a.id,
        status,
        result: a.result.clone(),
    };
    Ok(task_reply(daemon(ctx, req).await?))
}

pub(super) async fn send_message(ctx: &ToolCtx, a: &SendMessage) -> Result<ToolOutcome, String> {
    send(ctx, a.to.clone(), &a.text, a.summary.clone()).await
}

pub(super) async fn read_inbox(
    ctx: &ToolCtx,
    a: &agent_team_tools::ReadInbox,
) -> Result<ToolOutcome, String> {
    let req = Request::Inbox {
        agent: None,
        unread_only: a.unread_only.unwrap_or(true),
        after: None,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Messages { messages, .. } if messages.is_empty() => {
            ToolOutcome::ok("no messages".to_string())
        }
        Reply::Messages { messages, .. } => ToolOutcome::ok(
            messages
                .iter()
                .map(|m| {
                    let state = serde_json::to_value(m.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("[message {} from {}, {state}] {}", m.id, m.from, m.body)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn broadcast(ctx: &ToolCtx, a: &Broadcast) -> Result<ToolOutcome, String> {
    send(ctx, "*".to_string(), &a.text, None).await
}

async fn send(
    ctx: &ToolCtx,
    to: String,
    text: &str,
    summary: Option<String>,
) -> Result<ToolOutcome, String> {
    let req = Request::Send {
        to,
        body: text.to_string(),
        kind: MessageKind::Text,
        summary,
        dedup: None,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Sent { recipients, .. } => {
            ToolOutcome::ok(format!("sent to {}", recipients.join(", ")))
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn list_teammates(ctx: &ToolCtx) -> Result<ToolOutcome, String> {
    Ok(match daemon(ctx, Request::Agents).await? {
        Reply::Agents { agents } => {
            let rows: Vec<Value> = agents
                .iter()
                .map(|a| json!({"name": a.name, "role": a.role, "status": a.status, "current_task": a.current_task}))
                .collect();
            ToolOutcome::ok(to_json(&rows))
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn list_tasks(ctx: &ToolCtx, a: &ListTasks) -> Result<ToolOutcome, String> {
    let status = a.status.map(|s| match s {
        BoardStatus::Pending => TaskStatus::Pending,
        BoardStatus::InProgress => TaskStatus::InProgress,
        BoardStatus::Completed => TaskStatus::Completed,
        BoardStatus::Failed => TaskStatus::Failed,
        BoardStatus::Cancelled => TaskStatus::Cancelled,
    });
    let req = Request::TaskList {
        status,
        after: None,
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Tasks { tasks, .. } => {
            let rows: Vec<Value> = tasks
                .iter()
                .map(|t| json!({"id": t.id, "title": t.title, "status": t.status, "owner": t.owner, "blocked_by": t.blocked_by, "blocks": t.blocks, "description": t.description, "result": t.result}))
                .collect();
            ToolOutcome::ok(to_json(&rows))
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn finish_team(ctx: &ToolCtx, a: &FinishTeam) -> Result<ToolOutcome, String> {
    daemon(
        ctx,
        Request::Finish {
            answer: a.answer.clone(),
            force: a.force.unwrap_or(false),
            success: true,
            // The leader strategy: its rounds are the leader's model turns; the workers'
            // outputs are read from the board.
            details: Some(RunDetails {
                strategy: TeamStrategy::Leader,
                rounds: ctx.turns.load(std::sync::atomic::Ordering::SeqCst),
                worker_outputs: Default::default(),
            }),
            auto: false,
        },
    )
    .await?;
    Ok(ToolOutcome {
        content: "the team is finished".into(),
        is_error: false,
        finished: Some(a.answer.clone()),
    })
}

pub(super) async fn decide_permission(
    ctx: &ToolCtx,
    a: &DecidePermission,
) -> Result<ToolOutcome, String> {
    let req = Request::PermDecide {
        id: a.id,
        allow: a.allow,
        always: a.always.unwrap_or(false),
        pattern: a.pattern.clone(),
        reason: a.reason.clone(),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::Perm { request } => ToolOutcome::ok(
            format!("request {} is {:?}", request.id, request.status).to_lowercase(),
        ),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

fn task_reply(r: Reply) -> ToolOutcome {
    match r {
        Reply::Task { task } => ToolOutcome::ok(format!(
            "task {} ({}) is {}{}",
            task.id,
            task.title,
            task.status,
            task.owner
                .map(|o| format!(", owner {o}"))
                .unwrap_or_default()
        )),
        other => ToolOutcome::ok(to_json(&other)),
    }
}
