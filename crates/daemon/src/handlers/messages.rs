//! The mailboxes' requests: send, read an inbox, acknowledge.

use super::{PAGE_ITEMS, page_more, store_error};
use crate::core::Core;
use agent_team_protocol::{ErrorBody, ErrorCode, Message, MessageKind, Reply, Timestamp};
use agent_team_state::{Actor, TeamState};
use std::collections::HashMap;

/// `send`: to one agent or to everyone; with a `dedup` key, once per key.
#[allow(clippy::too_many_arguments)]
pub(super) fn send(
    state: &mut TeamState,
    actor: &Actor,
    to: String,
    body: String,
    kind: MessageKind,
    summary: Option<String>,
    dedup: Option<String>,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    match dedup {
        Some(key) => state.send_once(actor, key, &to, body, kind, summary, now),
        None => state.send(actor, &to, body, kind, summary, now),
    }
    .map(|(ids, recipients)| Reply::Sent { ids, recipients })
}

/// One page of an inbox: unread messages from memory, or everything from the store with the
/// in-memory copies of unread ones (they are newer).
pub(super) fn inbox(
    core: &mut Core,
    actor: &Actor,
    agent: Option<String>,
    unread_only: bool,
    after: u64,
) -> Result<Reply, ErrorBody> {
    let whose = match (agent, actor) {
        (Some(a), _) => a,
        (None, Actor::Agent(n)) => n.clone(),
        _ => {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "name the agent whose inbox to show",
            ));
        }
    };
    core.state.check_inbox_access(actor, &whose)?;
    if unread_only {
        let unread = core
            .state
            .unread(&whose)
            .into_iter()
            .filter(|m| m.id > after);
        let (messages, more) = page_more(unread);
        return Ok(Reply::Messages {
            messages,
            more: Some(more),
        });
    }
    core.flush_for_read()?;
    let mut messages = core
        .store
        .inbox(&whose, after, PAGE_ITEMS)
        .map_err(store_error)?;
    let unread: HashMap<u64, Message> = core
        .state
        .unread(&whose)
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    for m in &mut messages {
        if let Some(u) = unread.get(&m.id) {
            *m = u.clone();
        }
    }
    // A store page as long as asked for may have more behind it.
    let full = messages.len() >= PAGE_ITEMS;
    let (messages, more) = page_more(messages.into_iter());
    Ok(Reply::Messages {
        messages,
        more: Some(more || full),
    })
}
