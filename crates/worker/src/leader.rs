//! The leader. With the offline `exec` provider it starts the team file's teammates, puts the
//! team file's tasks on the board, cancels work whose blockers failed, waits until every task is
//! terminal, and finishes the team with a summary as its answer.

use crate::AgentError;
use crate::idle::{self, Taken, Woken};
use crate::link::{CallError, Link};
use crate::output::Output;
use crate::session::Session;
use agent_team_config::TeamConfig;
use agent_team_protocol::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Runs the leader until the team is finished.
pub async fn run(session: &Session) -> Result<(), AgentError> {
    let (link, config, out, inbox) = (
        session.link(),
        session.config(),
        session.out(),
        session.inbox(),
    );
    bootstrap(link, config, out).await?;
    let mut said_waiting = false;
    let mut approvals =
        crate::prompt::Approvals::new(config.approver == agent_team_config::Approver::Human);
    link.set_status(AgentStatus::Running).await;
    loop {
        // Idle point: what arrived (only messages matter here), then the messages in priority
        // order.
        inbox.poll()?;
        approvals.answer_pending(link, out).await;
        let taken = inbox
            .take(link.as_ref(), out, |m| {
                if m.kind == MessageKind::Permission && approvals.active() {
                    approvals.ask(m, out);
                } else {
                    idle::show(link.name(), m, out);
                    approvals.offer_plan(m, out);
                }
            })
            .await;
        match taken {
            Taken::Shutdown => return Ok(()),
            Taken::Work(acted) => acted.ack(link.as_ref()).await,
        }
        let tasks = all_tasks(link).await?;
        cancel_orphans(link, &tasks, out).await?;
        let tasks = all_tasks(link).await?;
        // An empty board is not finished work: the operator may still add tasks.
        if !tasks.is_empty() && tasks.iter().all(|t| t.status.is_terminal()) {
            last_turns(link, config.end_grace_secs, out).await;
            return finish(link, &tasks, out).await;
        }
        if tasks.is_empty() && !said_waiting {
            out.say("the board is empty; waiting for tasks (agent-team task add TITLE --run CMD)");
            said_waiting = true;
        }
        if let Woken::Line(line) = inbox.wait(Some(&mut approvals)).await? {
            approvals.take_line(line, link, out).await;
        }
    }
}

/// Starts the configured teammates and creates the configured tasks; safe to repeat after a
/// restart (a teammate already on the team answers `conflict`; keyed task creation is
/// idempotent).
pub async fn bootstrap(
    link: &Arc<Link>,
    config: &TeamConfig,
    out: &Output,
) -> Result<(), AgentError> {
    let mut spawns = tokio::task::JoinSet::new();
    for t in &config.teammates {
        let link = link.clone();
        let (name, role) = (t.name.clone(), t.role.clone());
        spawns.spawn(async move {
            let r = link
                .call_retry(Request::Spawn {
                    container: None,
                    role: role.clone(),
                    name: Some(name.clone()),
                    instructions: None,
                    model: None,
                    message: None,
                    host: None,
                    workspace: None,
                })
                .await;
            (name, role, r)
        });
    }
    while let Some(joined) = spawns.join_next().await {
        let Ok((name, role, r)) = joined else {
            continue;
        };
        match r {
            Ok(_) => out.say(&format!("started {name} ({role})")),
            Err(e) if e.code() == Some(ErrorCode::Conflict) => {
                out.say(&format!("{name} ({role}) is already on the team"))
            }
            Err(e) => out.say(&format!("could not start {name} ({role}): {e}")),
        }
    }
    let mut ids: HashMap<String, u64> = HashMap::new();
    for spec in &config.tasks {
        let blocked_by: Vec<u64> = spec
            .after
            .iter()
            .filter_map(|k| ids.get(k).copied())
            .collect();
        let req = Request::TaskAdd {
            title: spec.title.clone(),
            description: spec.description.clone(),
            run: spec.run.clone(),
            blocked_by,
            assign: spec.assign.clone(),
            key: Some(spec.key.clone()),
        };
        match link.call_retry(req).await {
            Ok(Reply::Task { task }) => {
                ids.insert(spec.key.clone(), task.id);
            }
            Ok(_) => {}
            Err(e) => {
                return Err(AgentError::Daemon(format!(
                    "cannot create task {:?}: {e}",
                    spec.key
                )));
            }
        }
    }
    if !config.tasks.is_empty() {
        out.say(&format!("{} tasks on the board", config.tasks.len()));
    }
    Ok(())
}

async fn all_tasks(link: &Link) -> Result<Vec<Task>, AgentError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        match link
            .call_retry(Request::TaskList {
                status: None,
                after,
            })
            .await
        {
            Ok(reply) => {
                let last_page = reply.is_last_page();
                match reply {
                    Reply::Tasks { tasks, .. } if !tasks.is_empty() => {
                        after = tasks.last().map(|t| t.id);
                        out.extend(tasks);
                    }
                    _ => return Ok(out),
                }
                if last_page {
                    return Ok(out);
                }
            }
            Err(e) => return Err(AgentError::Daemon(e.to_string())),
        }
    }
}

/// Cancels pending tasks that can never start because a blocker failed or was cancelled.
async fn cancel_orphans(link: &Link, tasks: &[Task], out: &Output) -> Result<(), AgentError> {
    let status: HashMap<u64, TaskStatus> = tasks.iter().map(|t| (t.id, t.status)).collect();
    for t in tasks.iter().filter(|t| t.status == TaskStatus::Pending) {
        let dead = t.blocked_by.iter().find(|b| {
            matches!(
                status.get(b),
                Some(TaskStatus::Failed | TaskStatus::Cancelled)
            )
        });
        if let Some(b) = dead {
            out.say(&format!(
                "cancelling task {} ({}): its blocker {b} did not complete",
                t.id, t.title
            ));
            match link.call_retry(Request::TaskCancel { id: t.id }).await {
                Ok(_) | Err(CallError::Server(_)) => {}
                Err(e) => return Err(AgentError::Daemon(e.to_string())),
            }
        }
    }
    Ok(())
}

/// The board is done: waits until every teammate has ended its turn (so its last report
/// reaches the leader's inbox), at most `grace_secs`, then goes ahead saying who was still
/// working.
async fn last_turns(link: &Link, grace_secs: u64, out: &Output) {
    out.say(&format!(
        "the board is done; waiting up to {grace_secs} s for the teammates' last turns"
    ));
    let timeout_ms = grace_secs.saturating_mul(1000).min(MAX_WAIT_MS);
    let req = Request::WaitFor {
        agents: Vec::new(),
        tasks: Vec::new(),
        timeout_ms,
        any: false,
    };
    match link.call_retry(req).await {
        Ok(Reply::Waited {
            done: false,
            agents,
            ..
        }) => {
            let busy: Vec<String> = agents
                .into_iter()
                .filter(|a| {
                    matches!(
                        a.status,
                        AgentStatus::Starting
                            | AgentStatus::Running
                            | AgentStatus::Waiting
                            | AgentStatus::Backoff
                            | AgentStatus::Unreachable
                    )
                })
                .map(|a| a.name)
                .collect();
            out.say(&format!(
                "the board is done; going ahead after {grace_secs} s while still working: {}",
                busy.join(", ")
            ));
        }
        Ok(_) => {}
        Err(e) => out.say(&format!(
            "cannot wait for the teammates' last turns ({e}); finishing"
        )),
    }
}

/// A summary of the board as the team's answer.
pub fn summary(tasks: &[Task]) -> (String, bool) {
    let count = |s: TaskStatus| tasks.iter().filter(|t| t.status == s).count();
    let ok = count(TaskStatus::Completed);
    let success = !tasks.is_empty() && ok == tasks.len();
    let mut s = format!(
        "{} task(s): {ok} completed, {} failed, {} cancelled",
        tasks.len(),
        count(TaskStatus::Failed),
        count(TaskStatus::Cancelled)
    );
    for t in tasks {
        let first = t
            .result
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or("");
        s.push_str(&format!(
            "\n- #{} {}: {}{}",
            t.id,
            t.title,
            t.status,
            if first.is_empty() {
                String::new()
            } else {
                format!(" ({first})")
            }
        ));
    }
    (s, success)
}

async fn finish(link: &Link, tasks: &[Task], out: &Output) -> Result<(), AgentError> {
    let (answer, success) = if tasks.is_empty() {
        ("nothing to do: the board is empty".to_string(), true)
    } else {
        summary(tasks)
    };
    out.say(&format!("finishing the team:\n{answer}"));
    match link
        .call_retry(Request::Finish {
            answer,
            force: false,
            success,
            // No model: no rounds; the workers' outputs are read from the board.
            details: Some(RunDetails::default()),
            // Its summary of the board, not a decision: a board that earlier runs did is
            // not this run's success.
            auto: true,
        })
        .await
    {
        Ok(_) => Ok(()),
        // Already finished before a restart.
        Err(CallError::Server(e))
            if e.code == ErrorCode::InvalidState && e.details.get("run").is_some() =>
        {
            Ok(())
        }
        Err(e) => Err(AgentError::Daemon(format!("cannot finish: {e}"))),
    }
}
