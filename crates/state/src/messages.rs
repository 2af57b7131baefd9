//! Mailboxes (SPEC §5.3): one copy per recipient, FIFO, bounded, with the sender stamped from the
//! authenticated identity and delivery states that only move forward.

use crate::{Actor, Change, Outcome, TeamState, bad_request};
use agent_team_protocol::*;
use serde_json::json;

impl TeamState {
    /// Sends a message as `actor` to a name or to `*` (everyone else that is live).
    pub fn send(
        &mut self,
        actor: &Actor,
        to: &str,
        body: String,
        kind: MessageKind,
        summary: Option<String>,
        now: Timestamp,
    ) -> Outcome<(Vec<u64>, Vec<String>)> {
        if body.len() > MAX_BODY_LEN {
            return Err(ErrorBody::with_details(
                ErrorCode::BadRequest,
                format!(
                    "message body of {} bytes exceeds the limit of {MAX_BODY_LEN} bytes",
                    body.len()
                ),
                json!({"limit": MAX_BODY_LEN, "size": body.len()}),
            ));
        }
        if summary.as_ref().is_some_and(|s| s.len() > 1024) {
            return Err(bad_request("a message summary is limited to 1024 bytes"));
        }
        if matches!(kind, MessageKind::ShutdownRequest | MessageKind::Permission)
            && !actor.is_privileged()
        {
            return Err(ErrorBody::with_details(
                ErrorCode::PermissionDenied,
                format!(
                    "only the leader or the operator may send {} messages",
                    kind.as_str()
                ),
                json!({"agent": actor.name(), "kind": kind}),
            ));
        }
        let sender = actor.name().to_string();
        let recipients: Vec<String> = if to == "*" {
            self.live_names()
                .into_iter()
                .filter(|n| *n != sender)
                .collect()
        } else {
            // SPEC §5.3: a stopped or exited recipient is `not_found`, for everyone; what it
            // should hear when it comes back goes with `resume` (its `message`).
            // The leader of a run that has ended keeps its inbox open: the teammates' last
            // reports are stored for whoever reads it (`inbox leader`, the next run).
            if !self.can_receive(to) && !self.leader_after_run(to) {
                let live = self.live_names();
                let message = if live.is_empty() {
                    format!("no agent {to:?}: the team has no agent that can receive messages")
                } else {
                    format!(
                        "no agent {to:?} can receive messages; valid names: {}",
                        live.join(", ")
                    )
                };
                return Err(ErrorBody::with_details(
                    ErrorCode::NotFound,
                    message,
                    json!({"to": to, "valid": live}),
                ));
            }
            vec![to.to_string()]
        };
        if let Some(name) = actor.agent() {
            self.touch(name, now);
        }
        let ids = self.deliver(&sender, &recipients, kind, body, summary, now)?;
        Ok((ids, recipients))
    }

    /// [`TeamState::send`] with an idempotency key: a repeat of `(sender, key)` returns the first
    /// send's ids and stores nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn send_once(
        &mut self,
        actor: &Actor,
        key: String,
        to: &str,
        body: String,
        kind: MessageKind,
        summary: Option<String>,
        now: Timestamp,
    ) -> Outcome<(Vec<u64>, Vec<String>)> {
        if key.is_empty() || key.len() > 256 {
            return Err(bad_request("a dedup key has 1-256 bytes"));
        }
        let k = (actor.name().to_string(), key);
        if let Some((ids, recipients)) = self.dedup.get(&k) {
            return Ok((ids.clone(), recipients.clone()));
        }
        let (ids, recipients) = self.send(actor, to, body, kind, summary, now)?;
        self.changes.push(Change::Dedup {
            sender: k.0.clone(),
            key: k.1.clone(),
            ids: ids.clone(),
            recipients: recipients.clone(),
        });
        self.dedup.insert(k, (ids.clone(), recipients.clone()));
        Ok((ids, recipients))
    }

    /// Stores one copy per recipient, all or nothing, and records one `MESSAGE_SENT` event.
    pub(crate) fn deliver(
        &mut self,
        sender: &str,
        recipients: &[String],
        kind: MessageKind,
        body: String,
        summary: Option<String>,
        now: Timestamp,
    ) -> Outcome<Vec<u64>> {
        // A permission request's notice and a shutdown request are never refused for a full
        // inbox: dropping them would leave an asker waiting for ever or a teammate running.
        let capped = !matches!(kind, MessageKind::Permission | MessageKind::ShutdownRequest);
        let full: Vec<&String> = recipients
            .iter()
            .filter(|r| {
                capped
                    && self
                        .inboxes
                        .get(r.as_str())
                        .is_some_and(|q| q.len() >= self.inbox_limit)
            })
            .collect();
        if !full.is_empty() {
            return Err(ErrorBody::with_details(
                ErrorCode::InboxFull,
                format!(
                    "inbox of {} is full ({} unread messages); nothing was sent",
                    full.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.inbox_limit
                ),
                json!({"recipients": full, "limit": self.inbox_limit}),
            ));
        }
        let mut ids = Vec::with_capacity(recipients.len());
        for r in recipients {
            let id = self.next_message_id;
            self.next_message_id += 1;
            let m = Message {
                id,
                from: sender.to_string(),
                to: r.clone(),
                kind,
                body: body.clone(),
                summary: summary.clone(),
                ts: now,
                state: DeliveryState::Queued,
            };
            self.changes.push(Change::MessageNew(m.clone()));
            self.unread_to.insert(id, r.clone());
            self.inboxes.entry(r.clone()).or_default().push_back(m);
            ids.push(id);
        }
        let to = if recipients.len() == 1 {
            recipients[0].clone()
        } else {
            "*".to_string()
        };
        self.record(
            sender,
            Event::MessageSent {
                ids: ids.clone(),
                from: sender.to_string(),
                to,
                kind,
                summary,
                text: cut_text(&body, MESSAGE_EVENT_TEXT),
            },
            now,
        );
        Ok(ids)
    }

    /// Moves the caller's own messages forward to `delivered` or `read`; other ids are ignored.
    /// Returns how many changed.
    pub fn ack(
        &mut self,
        actor: &Actor,
        ids: &[u64],
        state: DeliveryState,
        now: Timestamp,
    ) -> Outcome<usize> {
        let Some(name) = actor.agent().map(str::to_string) else {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only an agent acknowledges its messages",
            ));
        };
        if state == DeliveryState::Queued {
            return Err(bad_request(
                "messages are acknowledged as delivered or read",
            ));
        }
        // Someone else's unread message is not the caller's to acknowledge: refused, and
        // nothing changes. (An id already read, by anyone, is no longer known here and is let
        // through, so a retried acknowledgement of one's own read message still succeeds.)
        let own = self.inboxes.get(&name);
        let foreign: Vec<(u64, String)> = ids
            .iter()
            .filter(|id| own.is_none_or(|q| q.binary_search_by_key(*id, |m| m.id).is_err()))
            .filter_map(|id| {
                let who = self.unread_to.get(id)?;
                let q = self.inboxes.get(who)?;
                (*who != name && q.binary_search_by_key(id, |m| m.id).is_ok())
                    .then(|| (*id, who.clone()))
            })
            .collect();
        if let Some((id, whose)) = foreign.first() {
            return Err(ErrorBody::with_details(
                ErrorCode::PermissionDenied,
                format!("message {id} is for {whose}, not {name}; nothing was acknowledged"),
                json!({"agent": name, "message": id, "to": whose}),
            ));
        }
        let unknown: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| *id == 0 || *id >= self.next_message_id)
            .collect();
        if !unknown.is_empty() {
            return Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no message {unknown:?}; nothing was acknowledged"),
                json!({"missing": unknown}),
            ));
        }
        let mut changed = 0;
        if let Some(q) = self.inboxes.get_mut(&name) {
            for id in ids {
                // The queue is in id order, so a binary search finds the copy.
                let Ok(pos) = q.binary_search_by_key(id, |m| m.id) else {
                    continue;
                };
                if q[pos].state >= state {
                    continue;
                }
                q[pos].state = state;
                self.changes.push(Change::MessageState { id: *id, state });
                changed += 1;
                if state == DeliveryState::Read {
                    q.remove(pos);
                    self.unread_to.remove(id);
                }
            }
        }
        self.touch(&name, now);
        Ok(changed)
    }

    /// Marks `name`'s unread shutdown requests read: they were meant for an incarnation that has
    /// already stopped, and would make a fresh start exit at once. Returns how many.
    pub fn drop_stale_shutdowns(&mut self, name: &str) -> usize {
        let Some(q) = self.inboxes.get_mut(name) else {
            return 0;
        };
        let mut dropped = 0;
        q.retain(|m| {
            if m.kind == MessageKind::ShutdownRequest {
                self.unread_to.remove(&m.id);
                self.changes.push(Change::MessageState {
                    id: m.id,
                    state: DeliveryState::Read,
                });
                dropped += 1;
                false
            } else {
                true
            }
        });
        dropped
    }

    /// Drops `name`'s inbox (the agent is removed) and its copies from the recipients' index.
    pub(crate) fn forget_inbox(&mut self, name: &str) {
        for m in self.inboxes.remove(name).unwrap_or_default() {
            self.unread_to.remove(&m.id);
        }
    }

    /// Unread copies addressed to `name`, oldest first.
    pub fn unread(&self, name: &str) -> Vec<Message> {
        self.inboxes
            .get(name)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many unread copies `name` has.
    pub fn unread_count(&self, name: &str) -> usize {
        self.inboxes.get(name).map_or(0, |q| q.len())
    }

    /// Checks that `actor` may read `whose` inbox: its own, or any for the leader and operator.
    pub fn check_inbox_access(&self, actor: &Actor, whose: &str) -> Outcome<()> {
        if !self.agents.contains_key(whose) {
            return Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no agent {whose:?}"),
                json!({"agent": whose, "valid": self.agents.keys().collect::<Vec<_>>()}),
            ));
        }
        if actor.is_privileged() || actor.agent() == Some(whose) {
            return Ok(());
        }
        Err(ErrorBody::with_details(
            ErrorCode::PermissionDenied,
            format!("{} may not read the inbox of {whose}", actor.name()),
            json!({"agent": actor.name(), "inbox": whose}),
        ))
    }
}
