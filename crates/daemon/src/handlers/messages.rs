//! The mailboxes' requests: send, read an inbox, acknowledge.

use super::{PAGE_ITEMS, misrouted, page, store_error};
use crate::core::Core;
use agent_team_protocol::{ErrorBody, ErrorCode, Message, Reply, Request, Timestamp};
use agent_team_state::Actor;
use std::collections::HashMap;

impl Core {
    /// Applies a message request.
    pub(super) fn message_request(
        &mut self,
        actor: &Actor,
        req: Request,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        let s = &mut self.state;
        match req {
            Request::Send {
                to,
                body,
                kind,
                summary,
                dedup,
            } => match dedup {
                Some(key) => s.send_once(actor, key, &to, body, kind, summary, now),
                None => s.send(actor, &to, body, kind, summary, now),
            }
            .map(|(ids, recipients)| Reply::Sent { ids, recipients }),
            Request::Inbox {
                agent,
                unread_only,
                after,
            } => self.inbox(actor, agent, unread_only, after.unwrap_or(0)),
            Request::Ack { ids, state } => s.ack(actor, &ids, state, now).map(|_| Reply::Done),
            other => Err(misrouted(&other)),
        }
    }

    /// One page of an inbox: unread messages from memory, or everything from the store with
    /// the in-memory copies of unread ones (they are newer).
    fn inbox(
        &mut self,
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
        self.state.check_inbox_access(actor, &whose)?;
        if unread_only {
            let unread = self
                .state
                .unread(&whose)
                .into_iter()
                .filter(|m| m.id > after);
            return Ok(Reply::Messages {
                messages: page(unread),
            });
        }
        self.flush_for_read()?;
        let mut messages = self
            .store
            .inbox(&whose, after, PAGE_ITEMS)
            .map_err(store_error)?;
        let unread: HashMap<u64, Message> = self
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
        Ok(Reply::Messages {
            messages: page(messages.into_iter()),
        })
    }
}
