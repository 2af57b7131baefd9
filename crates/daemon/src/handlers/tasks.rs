//! The task board's requests: add, list, show, claim, assign, release, finish, cancel, retry,
//! and watching the board.

use super::{page_more, task_reply};
use crate::core::Core;
use crate::supervisor::Supervisor;
use agent_team_config::TeamConfig;
use agent_team_protocol::{ErrorBody, ErrorCode, Reply, TaskStatus, Timestamp};
use agent_team_state::tasks::NewTask;
use agent_team_state::{Actor, TeamState};

/// `task_add`: every task is filled here, whoever adds it (the team file's through the leader,
/// `task add`, `create_task`): `{{KEY}}` from the team's variables.
pub(super) fn add(
    core: &mut Core,
    actor: &Actor,
    mut new: NewTask,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    if let Some(cfg) = &core.sup.config {
        (new.title, new.description, new.run) =
            fill_task(cfg, new.title, new.description, new.run)?;
    }
    let s = &mut core.state;
    let before = s.last_seq();
    let task = s.task_add(actor, new, now)?;
    // A new task records one event (an existing key's task none): `task_created`.
    let seq = s.last_seq();
    if seq > before {
        core.hooks.task_created_at(seq);
    }
    Ok(task_reply(task))
}

/// `task_list`: one page of the board, from the task after `after`.
pub(super) fn list(state: &TeamState, status: Option<TaskStatus>, after: Option<u64>) -> Reply {
    let after = after.unwrap_or(0);
    let (tasks, more) = page_more(
        state
            .tasks_view(status)
            .into_iter()
            .filter(|t| t.id > after),
    );
    Reply::Tasks {
        tasks,
        more: Some(more),
    }
}

/// `task_claim`.
pub(super) fn claim(
    sup: &Supervisor,
    state: &mut TeamState,
    actor: &Actor,
    id: u64,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    if let Actor::Agent(n) = actor {
        not_stopping(sup, n)?;
    }
    state.task_claim(actor, id, now).map(task_reply)
}

/// `task_claim_next`: nothing for a teammate on its way out.
pub(super) fn claim_next(
    sup: &Supervisor,
    state: &mut TeamState,
    actor: &Actor,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    if let Actor::Agent(n) = actor
        && sup.is_stopping(n)
    {
        return Ok(Reply::MaybeTask { task: None });
    }
    state
        .task_claim_next(actor, now)
        .map(|task| Reply::MaybeTask { task })
}

/// `task_assign`.
pub(super) fn assign(
    sup: &Supervisor,
    state: &mut TeamState,
    actor: &Actor,
    id: u64,
    to: &str,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    not_stopping(sup, to)?;
    state.task_assign(actor, id, to, now).map(task_reply)
}

/// A teammate on its way out takes nothing new (nor is given it): a task given back meanwhile
/// goes to one that stays.
fn not_stopping(sup: &Supervisor, name: &str) -> Result<(), ErrorBody> {
    if sup.is_stopping(name) {
        return Err(ErrorBody::new(
            ErrorCode::InvalidState,
            format!("{name} is being stopped and takes no new task"),
        ));
    }
    Ok(())
}

/// A new task's title, description and `run` command with the team's variables filled; an
/// unknown placeholder or one naming a secret is a `bad_request` naming the field.
fn fill_task(
    cfg: &TeamConfig,
    title: String,
    description: String,
    run: Option<String>,
) -> Result<(String, String, Option<String>), ErrorBody> {
    let fill = |field: &str, text: &str| {
        agent_team_config::fill_task_text(cfg, field, text)
            .map_err(|m| ErrorBody::new(ErrorCode::BadRequest, m))
    };
    let title = fill("title", &title)?;
    let description = fill("description", &description)?;
    let run = match run {
        Some(r) => Some(fill("run", &r)?),
        None => None,
    };
    Ok((title, description, run))
}
