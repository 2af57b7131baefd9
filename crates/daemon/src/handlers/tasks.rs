//! The task board's requests: add, list, show, claim, assign, release, finish, cancel, retry,
//! and watching the board.

use super::{misrouted, page};
use crate::core::Core;
use crate::outbox::ConnId;
use agent_team_protocol::{ErrorBody, Reply, Request, Timestamp};
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
                let new = NewTask {
                    title,
                    description,
                    run,
                    blocked_by,
                    assign,
                    key,
                };
                s.task_add(actor, new, now).map(|task| Reply::Task { task })
            }
            Request::TaskList { status, after } => {
                let after = after.unwrap_or(0);
                Ok(Reply::Tasks {
                    tasks: page(s.tasks(status).into_iter().filter(|t| t.id > after)),
                })
            }
            Request::TaskShow { id } => s.task(id).cloned().map(|task| Reply::Task { task }),
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
