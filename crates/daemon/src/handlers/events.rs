//! The event log's requests: read a page, subscribe to the live stream, emit an event.

use super::{PAGE_ITEMS, misrouted, page, store_error};
use crate::core::Core;
use crate::outbox::ConnId;
use agent_team_protocol::{ErrorBody, Reply, Request, Timestamp};
use agent_team_state::Actor;

impl Core {
    /// Applies an event request.
    pub(super) fn event_request(
        &mut self,
        conn: ConnId,
        actor: &Actor,
        req: Request,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        match req {
            Request::Events { since, limit } => {
                self.flush_for_read()?;
                let limit = limit.unwrap_or(PAGE_ITEMS as u32).min(PAGE_ITEMS as u32) as usize;
                let events = self.store.events_since(since, limit).map_err(store_error)?;
                Ok(Reply::Events {
                    events: page(events.into_iter()),
                })
            }
            Request::Subscribe { since } => {
                let last_seq = self.state.last_seq();
                // The backlog (and anything newer) is sent after this batch commits.
                self.subscribe(conn, since.min(last_seq));
                Ok(Reply::Subscribed { last_seq })
            }
            Request::Emit { event } => self.state.emit(actor, event, now).map(|_| Reply::Done),
            other => Err(misrouted(&other)),
        }
    }
}
