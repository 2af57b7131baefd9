//! Replies remembered by request id, so a client's retry after a reconnect is answered with
//! the original outcome instead of being applied twice (exactly once across reconnects).

use crate::{Change, TeamState};
use std::collections::{HashMap, VecDeque};

/// How many recent request ids are kept per identity.
pub const KEEP_PER_IDENTITY: usize = 1024;
/// Ids are forgotten in steps of this many, so pruning the store is one statement now and then.
const PRUNE_STEP: usize = 256;

/// The replies of one identity's recent requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ReplyLog {
    order: VecDeque<(u64, String)>,
    by_rid: HashMap<String, String>,
}

/// One remembered reply as stored: (identity, rid, sequence number, outcome as JSON).
pub type StoredReply = (String, String, u64, String);

impl TeamState {
    /// The outcome (as JSON) first given to `identity`'s request `rid`, if it is remembered.
    pub fn replay(&self, identity: &str, rid: &str) -> Option<&str> {
        self.replies
            .get(identity)
            .and_then(|l| l.by_rid.get(rid))
            .map(String::as_str)
    }

    /// Remembers the outcome of `identity`'s request `rid` (persisted with the batch).
    pub fn remember_reply(&mut self, identity: &str, rid: &str, outcome: String) {
        self.next_reply_seq += 1;
        let n = self.next_reply_seq;
        let log = self.replies.entry(identity.to_string()).or_default();
        if log
            .by_rid
            .insert(rid.to_string(), outcome.clone())
            .is_none()
        {
            log.order.push_back((n, rid.to_string()));
        }
        self.changes.push(Change::Reply {
            identity: identity.to_string(),
            rid: rid.to_string(),
            n,
            outcome,
        });
        if log.order.len() >= KEEP_PER_IDENTITY + PRUNE_STEP {
            let mut below = 0;
            for _ in 0..PRUNE_STEP {
                if let Some((n, old)) = log.order.pop_front() {
                    log.by_rid.remove(&old);
                    below = n + 1;
                }
            }
            self.changes.push(Change::RepliesPruned {
                identity: identity.to_string(),
                below,
            });
        }
    }

    pub(crate) fn restore_replies(&mut self, stored: Vec<StoredReply>) {
        for (identity, rid, n, outcome) in stored {
            self.next_reply_seq = self.next_reply_seq.max(n);
            let log = self.replies.entry(identity).or_default();
            if log.by_rid.insert(rid.clone(), outcome).is_none() {
                log.order.push_back((n, rid));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_reply_is_found_per_identity_and_old_ones_are_pruned() {
        let mut s = TeamState::new("t");
        s.remember_reply("leader", "r1", "\"one\"".into());
        assert_eq!(s.replay("leader", "r1"), Some("\"one\""));
        assert_eq!(s.replay("operator", "r1"), None);
        let _ = s.take_changes();
        for i in 0..(KEEP_PER_IDENTITY + PRUNE_STEP) {
            s.remember_reply("leader", &format!("x{i}"), "1".into());
        }
        assert_eq!(
            s.replay("leader", "r1"),
            None,
            "the oldest ids are forgotten"
        );
        assert!(
            s.replay("leader", &format!("x{}", KEEP_PER_IDENTITY))
                .is_some()
        );
        let pruned = s
            .take_changes()
            .into_iter()
            .filter(|c| matches!(c, Change::RepliesPruned { .. }))
            .count();
        assert_eq!(pruned, 1);
    }
}
