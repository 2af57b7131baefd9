//! Request handlers, one module per area (tasks, messages, permissions, events, agents,
//! memory, usage), as pueue keeps one handler per request kind. The core owns the loop, the sessions
//! and the commit; a handler applies one request to the team state and says what to answer.

mod agents;
mod events;
mod memory;
mod messages;
mod perms;
mod tasks;
mod upkeep;
mod usage;

use crate::core::Core;
use crate::outbox::ConnId;
use agent_team_protocol::{ErrorBody, ErrorCode, Reply, Request, Timestamp};
use agent_team_state::Actor;

/// The most items in one page of a listing.
pub(crate) const PAGE_ITEMS: usize = 5000;
/// The most bytes of items in one page, leaving room for the frame around them.
const PAGE_BYTES: usize = 900 * 1024;

/// Takes items while they fit in one reply frame; the client asks for the rest with `after`.
pub(crate) fn page<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut used = 0;
    let mut out = Vec::new();
    for item in items.take(PAGE_ITEMS) {
        used += serde_json::to_vec(&item).map(|v| v.len() + 1).unwrap_or(0);
        if used > PAGE_BYTES && !out.is_empty() {
            break;
        }
        out.push(item);
    }
    out
}

/// Which handler module a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Tasks,
    Messages,
    Perms,
    Events,
    Agents,
    Memory,
    Usage,
    Upkeep,
}

/// Every request has one area; a new request kind must be given one here.
fn area(req: &Request) -> Area {
    match req {
        Request::TaskAdd { .. }
        | Request::TaskList { .. }
        | Request::TaskShow { .. }
        | Request::TaskClaim { .. }
        | Request::TaskClaimNext
        | Request::TaskAssign { .. }
        | Request::TaskRelease { .. }
        | Request::TaskFinish { .. }
        | Request::TaskCancel { .. }
        | Request::TaskRetry { .. }
        | Request::WatchTasks => Area::Tasks,
        Request::Send { .. } | Request::Inbox { .. } | Request::Ack { .. } => Area::Messages,
        Request::PermRequest { .. } | Request::PermList { .. } | Request::PermDecide { .. } => {
            Area::Perms
        }
        Request::Events { .. } | Request::Subscribe { .. } | Request::Emit { .. } => Area::Events,
        Request::Ping
        | Request::TeamInfo
        | Request::Agents
        | Request::Register { .. }
        | Request::SetStatus { .. }
        | Request::SetTodos { .. }
        | Request::PaneInput { .. }
        | Request::PlanSubmit { .. }
        | Request::PlanDecide { .. }
        | Request::StartRun { .. }
        | Request::Configure { .. }
        | Request::GetConfig
        | Request::Finish { .. }
        | Request::Shutdown
        | Request::Spawn { .. }
        | Request::SpawnTeam { .. }
        | Request::Dissolve { .. }
        | Request::ConfigSet { .. }
        | Request::ConfigReset { .. }
        | Request::Kill { .. }
        | Request::Resume { .. }
        | Request::WaitFor { .. }
        | Request::Restart { .. }
        | Request::WorkDiff { .. }
        | Request::WorkFinish { .. } => Area::Agents,
        Request::MemorySet { .. }
        | Request::MemoryGet { .. }
        | Request::MemoryList { .. }
        | Request::MemoryDelete { .. } => Area::Memory,
        Request::ReportUsage { .. }
        | Request::BudgetCheck { .. }
        | Request::Usage
        | Request::BudgetSet { .. } => Area::Usage,
        Request::Gc { .. } => Area::Upkeep,
    }
}

/// A request that reached a handler of another area (a bug in [`area`]).
fn misrouted(req: &Request) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Internal,
        format!(
            "request {} reached the wrong handler",
            serde_json::to_value(req)
                .ok()
                .and_then(|v| v.get("op").cloned())
                .unwrap_or_default()
        ),
    )
}

/// A storage failure while serving a read.
fn store_error(e: agent_team_store::StoreError) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("storage failed: {e}"))
}

/// An internal error with a message.
fn internal(msg: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, msg)
}

impl Core {
    /// Applies one request that is answered at once (spawn, kill and restart are answered by
    /// the supervisor later and never come here).
    pub(crate) fn request(
        &mut self,
        conn: ConnId,
        actor: &Actor,
        req: Request,
    ) -> Result<Reply, ErrorBody> {
        let now = Timestamp::now();
        match area(&req) {
            Area::Tasks => self.task_request(conn, actor, req, now),
            Area::Messages => self.message_request(actor, req, now),
            Area::Perms => self.perm_request(actor, req, now),
            Area::Events => self.event_request(conn, actor, req, now),
            Area::Agents => self.agent_request(actor, req, now),
            Area::Memory => self.memory_request(actor, req, now),
            Area::Usage => self.usage_request(actor, req, now),
            Area::Upkeep => self.upkeep_request(actor, req, now),
        }
    }

    /// Commits what this batch changed so far, so a read from the store sees it.
    fn flush_for_read(&mut self) -> Result<(), ErrorBody> {
        if self.state.has_changes() {
            let mut changes = self.state.take_changes();
            self.plan_hooks(&changes);
            changes.extend(self.state.take_changes());
            match self.store.commit(&changes) {
                // Responses wait for the batch's end; pushes of these changes go out now.
                Ok(()) => self.route(&changes),
                // The batch so far is refused and the state is what is stored: the read goes on.
                Err(e) if self.disk_is_full(&e) => {
                    self.refuse_batch_for_full_disk().map_err(store_error)?
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_at_the_byte_budget_but_never_come_back_empty() {
        let big = "x".repeat(PAGE_BYTES);
        assert_eq!(page([big.clone(), big.clone()].into_iter()).len(), 1);
        assert_eq!(
            page(std::iter::repeat_n(1u8, PAGE_ITEMS + 5)).len(),
            PAGE_ITEMS
        );
    }
}
