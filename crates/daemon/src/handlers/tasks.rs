//! The task board's requests: add, list, show, claim, assign, release, finish, cancel, retry,
//! and watching the board.

use super::{misrouted, page};
use crate::core::Core;
use crate::outbox::ConnId;
use agent_team_config::TeamConfig;
use agent_team_protocol::{ErrorBody, ErrorCode, Reply, Request, Timestamp};
use agent_team_state::Actor;
use agent_team_state::tasks::NewTask;

impl Core {
    /// Applies a task request.
    pub(super) fn task_request(
        &mut self,
        conn: ConnId,
        actor: &Actor,
        req: Request,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        // A teammate on its way out takes nothing new (nor is given it): a task given back
        // meanwhile goes to one that stays.
        let taker = match (&req, actor) {
            (Request::TaskClaim { .. } | Request::TaskClaimNext, Actor::Agent(n)) => Some(n),
            (Request::TaskAssign { to, .. }, _) => Some(to),
            _ => None,
        };
        if let Some(n) = taker.filter(|n| self.sup.is_stopping(n)) {
            if matches!(req, Request::TaskClaimNext) {
                return Ok(Reply::MaybeTask { task: None });
            }
            return Err(ErrorBody::new(
                ErrorCode::InvalidState,
                format!("{n} is being stopped and takes no new task"),
            ));
        }
        let s = &mut self.state;
        match req {
            Request::TaskAdd {
                title,
                description,
                run,
                blocked_by,
                assign,
                key,
            } => {
                // Every task is filled here, whoever adds it (the team file's through the
                // leader, `task add`, `create_task`): `{{KEY}}` from the team's variables.
                let (title, description, run) = match &self.sup.config {
                    Some(cfg) => fill_task(cfg, title, description, run)?,
                    None => (title, description, run),
                };
                let new = NewTask {
                    title,
                    description,
                    run,
                    blocked_by,
                    assign,
                    key,
                };
                let before = s.last_seq();
                let task = s.task_add(actor, new, now)?;
                // A new task records one event (an existing key's task none): `task_created`.
                let seq = s.last_seq();
                if seq > before {
                    self.task_created_at(seq);
                }
                Ok(Reply::Task { task })
            }
            Request::TaskList { status, after } => {
                let after = after.unwrap_or(0);
                Ok(Reply::Tasks {
                    tasks: page(s.tasks_view(status).into_iter().filter(|t| t.id > after)),
                })
            }
            Request::TaskShow { id } => s.task_view(id).map(|task| Reply::Task { task }),
            Request::TaskClaim { id } => s
                .task_claim(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::TaskClaimNext => s
                .task_claim_next(actor, now)
                .map(|task| Reply::MaybeTask { task }),
            Request::TaskAssign { id, to } => s
                .task_assign(actor, id, &to, now)
                .map(|task| Reply::Task { task }),
            Request::TaskRelease { id } => s
                .task_release(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::TaskFinish { id, status, result } => s
                .task_finish(actor, id, status, result, now)
                .map(|task| Reply::Task { task }),
            Request::TaskCancel { id } => s
                .task_cancel(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::TaskRetry { id } => s
                .task_retry(actor, id, now)
                .map(|task| Reply::Task { task }),
            Request::WatchTasks => {
                self.watch_tasks(conn);
                Ok(Reply::Done)
            }
            other => Err(misrouted(&other)),
        }
    }
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
