//! The event log's requests: read a page, subscribe to the live stream (emitting is the
//! state's alone: [`super::dispatch`] calls it).

use super::{PAGE_ITEMS, page, store_error};
use crate::core::Core;
use crate::outbox::ConnId;
use agent_team_protocol::{EVENT_TYPES, ErrorBody, ErrorCode, Reply, cut_text};
use serde_json::json;

/// `events`: a page of the log from the store, after this batch's changes so far are in it.
pub(super) fn read(core: &mut Core, since: u64, limit: Option<u32>) -> Result<Reply, ErrorBody> {
    core.flush_for_read()?;
    let limit = limit.unwrap_or(PAGE_ITEMS as u32).min(PAGE_ITEMS as u32) as usize;
    let events = core.store.events_since(since, limit).map_err(store_error)?;
    Ok(Reply::Events {
        events: page(events.into_iter()),
    })
}

/// `subscribe`: the backlog (and anything newer) is sent after this batch commits; with
/// `types`, only events of those types (an unknown name is refused, naming the valid ones).
pub(super) fn subscribe(
    core: &mut Core,
    conn: ConnId,
    since: u64,
    types: Option<Vec<String>>,
) -> Result<Reply, ErrorBody> {
    let bits = match types {
        None => None,
        Some(names) => Some(names.iter().try_fold(0u32, |bits, name| {
            crate::core::type_bit(name)
                .map(|b| bits | b)
                .ok_or_else(|| {
                    ErrorBody::with_details(
                        ErrorCode::BadRequest,
                        format!("no event type {:?}", cut_text(name, 64)),
                        json!({"field": "types", "valid": EVENT_TYPES}),
                    )
                })
        })?),
    };
    let last_seq = core.state.last_seq();
    core.subscribe(conn, since.min(last_seq), bits);
    Ok(Reply::Subscribed { last_seq })
}
