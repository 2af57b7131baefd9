//! Replies remembered by request id, so a client's retry after a reconnect is answered with
//! the original outcome instead of being applied twice (exactly once across reconnects).
//!
//! Every mutating request with a request id passes through here, so the hot path is kept
//! cheap: [`TeamState::remember_outcome`] keeps the typed outcome (one shared copy for the
//! log and the [`Change`]), and it is turned into JSON only once, by the store at commit
//! ([`ReplyOutcome::write_json`]). Each identity keeps its last [`KEEP_PER_IDENTITY`] replies
//! and at most about [`KEEP_BYTES_PER_IDENTITY`] bytes of them; the oldest go first.

use crate::{Change, TeamState};
use agent_team_protocol::{ErrorBody, Reply, Task};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// How many recent request ids are kept per identity.
pub const KEEP_PER_IDENTITY: usize = 1024;
/// Ids are forgotten in steps of this many, so pruning the store is one statement now and then.
const PRUNE_STEP: usize = 256;
/// About how many bytes (as stored JSON) of remembered replies are kept per identity: a reply
/// can be as large as a frame (1 MiB), and 1024 of those would hold a gigabyte in memory and
/// on disk. At least the newest reply is always kept, whatever its size.
pub const KEEP_BYTES_PER_IDENTITY: usize = 4 << 20;
/// Bytes are forgotten in steps of at least this many (as ids are), for the same reason.
const PRUNE_BYTES_STEP: usize = 1 << 20;

/// A request's outcome as it is remembered and stored.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// The outcome as the daemon produced it (shared by the log and the change).
    Typed(Arc<Result<Reply, ErrorBody>>),
    /// The outcome as JSON (`{"Ok": reply}` or `{"Err": error}`): loaded from the store, or
    /// given to [`TeamState::remember_reply`].
    Json(String),
    /// A task reply (`task`, or `maybe_task` when `maybe`) whose task is the one in the
    /// `TASK_UPDATED` event `seq` of the same commit: the store writes only the reference
    /// (`{"TaskEvent":[seq,maybe]}`, a few bytes instead of the task) and resolves it on load.
    TaskEvent {
        /// The event holding the task.
        seq: u64,
        /// Whether the reply is `maybe_task` (a claim of the next task) rather than `task`.
        maybe: bool,
        /// The reply itself, for replays while the daemon runs.
        outcome: Arc<Result<Reply, ErrorBody>>,
    },
}

impl ReplyOutcome {
    /// Appends the outcome as it is stored to `out`: its JSON, or for
    /// [`ReplyOutcome::TaskEvent`] the reference `{"TaskEvent":[seq,maybe]}`.
    pub fn write_stored(&self, out: &mut Vec<u8>) {
        match self {
            ReplyOutcome::TaskEvent { seq, maybe, .. } => {
                use std::io::Write as _;
                let _ = write!(out, "{{\"TaskEvent\":[{seq},{maybe}]}}");
            }
            other => other.write_json(out),
        }
    }

    /// Appends the outcome as JSON (`{"Ok": reply}` or `{"Err": error}`) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            ReplyOutcome::Json(s) => out.extend_from_slice(s.as_bytes()),
            ReplyOutcome::Typed(o) | ReplyOutcome::TaskEvent { outcome: o, .. } => {
                if serde_json::to_writer(&mut *out, o.as_ref()).is_err() {
                    // Our own plain data always serialises; keep the row readable if not.
                    out.extend_from_slice(b"null");
                }
            }
        }
    }

    /// About how many bytes [`ReplyOutcome::write_json`] writes (exact for JSON; an estimate
    /// that errs on the large side for the common typed replies, so the byte budget holds).
    pub fn approx_len(&self) -> usize {
        match self {
            ReplyOutcome::Json(s) => s.len(),
            // The task is counted although only a reference is stored: it is kept in memory.
            ReplyOutcome::Typed(o) | ReplyOutcome::TaskEvent { outcome: o, .. } => match o.as_ref()
            {
                Ok(Reply::Done) => 24,
                Ok(Reply::MaybeTask { task: None }) => 40,
                Ok(Reply::MaybeTask { task: Some(t) }) | Ok(Reply::Task { task: t }) => task_len(t),
                Ok(Reply::Sent { ids, recipients }) => {
                    48 + ids.len() * 21 + recipients.iter().map(|r| r.len() * 6 + 3).sum::<usize>()
                }
                Err(e) => 48 + e.message.len() * 6 + value_len(&e.details),
                // Rare replies (registrations, spawns, decisions): measured exactly.
                Ok(other) => json_len(other) + 8,
            },
        }
    }
}

/// An upper bound of a task's JSON length (strings may be escaped, up to 6 bytes a byte).
fn task_len(t: &Task) -> usize {
    let strings = t.title.len()
        + t.description.len()
        + t.created_by.len()
        + t.key.as_ref().map_or(0, String::len)
        + t.run.as_ref().map_or(0, String::len)
        + t.owner.as_ref().map_or(0, String::len)
        + t.result.as_ref().map_or(0, String::len);
    // Field names, four timestamps, numbers and punctuation fit in 400 bytes.
    400 + strings * 6 + t.blocked_by.len() * 21
}

/// About how long a JSON value is when written (an upper bound for strings).
fn value_len(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(_) => 5,
        serde_json::Value::Number(_) => 24,
        serde_json::Value::String(s) => s.len() * 6 + 2,
        serde_json::Value::Array(a) => 2 + a.iter().map(|x| value_len(x) + 1).sum::<usize>(),
        serde_json::Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() * 6 + 4 + value_len(x))
                .sum::<usize>()
        }
    }
}

/// The exact JSON length of `v`, counted without keeping the text.
fn json_len<T: serde::Serialize>(v: &T) -> usize {
    agent_team_protocol::memory::json_len(v)
}

/// One remembered reply.
#[derive(Debug)]
struct Kept {
    /// Its place in the order replies were remembered.
    n: u64,
    outcome: ReplyOutcome,
    /// What it counts against the identity's byte budget.
    bytes: usize,
    /// The JSON of a typed outcome, made on the first [`TeamState::replay`] (rare: retries).
    json: OnceLock<String>,
}

/// The replies of one identity's recent requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ReplyLog {
    /// The identity, shared with every change that names it.
    identity: Option<Arc<str>>,
    order: VecDeque<(u64, Arc<str>)>,
    by_rid: HashMap<Arc<str>, Kept>,
    /// The sum of the kept replies' `bytes`.
    bytes: usize,
}

impl ReplyLog {
    /// Forgets the oldest replies while more than `keep` or more than `keep_bytes` are kept
    /// (never the newest one); returns the first sequence number still kept, if any went.
    fn trim(&mut self, keep: usize, keep_bytes: usize) -> Option<u64> {
        let mut below = None;
        while self.order.len() > keep.max(1) || (self.bytes > keep_bytes && self.order.len() > 1) {
            let Some((n, rid)) = self.order.pop_front() else {
                break;
            };
            if let Some(k) = self.by_rid.remove(&rid) {
                self.bytes = self.bytes.saturating_sub(k.bytes);
            }
            below = Some(n + 1);
        }
        below
    }

    /// Whether the log has grown past its bounds by a whole pruning step.
    fn over(&self) -> bool {
        self.order.len() >= KEEP_PER_IDENTITY + PRUNE_STEP
            || self.bytes > KEEP_BYTES_PER_IDENTITY + PRUNE_BYTES_STEP
    }
}

/// One remembered reply as stored: (identity, rid, sequence number, outcome as JSON).
pub type StoredReply = (String, String, u64, String);

impl TeamState {
    /// The outcome (as JSON, `{"Ok": reply}` or `{"Err": error}`) first given to `identity`'s
    /// request `rid`, if it is remembered.
    pub fn replay(&self, identity: &str, rid: &str) -> Option<&str> {
        let kept = self.replies.get(identity)?.by_rid.get(rid)?;
        Some(match &kept.outcome {
            ReplyOutcome::Json(s) => s.as_str(),
            typed => kept.json.get_or_init(|| {
                let mut out = Vec::new();
                typed.write_json(&mut out);
                String::from_utf8(out).unwrap_or_else(|_| "null".into())
            }),
        })
    }

    /// The outcome first given to `identity`'s request `rid`, if it is remembered.
    pub fn replay_outcome(&self, identity: &str, rid: &str) -> Option<Result<Reply, ErrorBody>> {
        let kept = self.replies.get(identity)?.by_rid.get(rid)?;
        Some(match &kept.outcome {
            ReplyOutcome::Typed(o) | ReplyOutcome::TaskEvent { outcome: o, .. } => {
                o.as_ref().clone()
            }
            ReplyOutcome::Json(s) => serde_json::from_str(s).unwrap_or_else(|e| {
                Err(ErrorBody::new(
                    agent_team_protocol::ErrorCode::Internal,
                    format!("cannot read the remembered reply: {e}"),
                ))
            }),
        })
    }

    /// Remembers the outcome of `identity`'s request `rid` (persisted with the batch). The
    /// outcome is kept as it is and written as JSON only by the store, at commit.
    pub fn remember_outcome(
        &mut self,
        identity: &str,
        rid: &str,
        outcome: &Result<Reply, ErrorBody>,
    ) {
        let outcome = Arc::new(outcome.clone());
        let kept = match self.task_event_of(&outcome) {
            Some((seq, maybe)) => ReplyOutcome::TaskEvent {
                seq,
                maybe,
                outcome,
            },
            None => ReplyOutcome::Typed(outcome),
        };
        self.remember(identity, rid, kept);
    }

    /// For a task reply, the `TASK_UPDATED` event just recorded (among the last few changes,
    /// so in the same commit) that holds the same task, and whether the reply is `maybe_task`.
    fn task_event_of(&self, outcome: &Result<Reply, ErrorBody>) -> Option<(u64, bool)> {
        let (task, maybe) = match outcome {
            Ok(Reply::Task { task }) => (task, false),
            Ok(Reply::MaybeTask { task: Some(task) }) => (task, true),
            _ => return None,
        };
        self.changes.iter().rev().take(8).find_map(|c| match c {
            Change::Event(env) => match &env.event {
                agent_team_protocol::Event::TaskUpdated { task: t } if t == task => {
                    Some((env.seq, maybe))
                }
                _ => None,
            },
            _ => None,
        })
    }

    /// Remembers the outcome of `identity`'s request `rid`, given as JSON (`{"Ok": reply}` or
    /// `{"Err": error}`). [`TeamState::remember_outcome`] does the same without the JSON.
    pub fn remember_reply(&mut self, identity: &str, rid: &str, outcome: String) {
        self.remember(identity, rid, ReplyOutcome::Json(outcome));
    }

    fn remember(&mut self, identity: &str, rid: &str, outcome: ReplyOutcome) {
        self.next_reply_seq += 1;
        let n = self.next_reply_seq;
        if !self.replies.contains_key(identity) {
            self.replies
                .insert(identity.to_string(), ReplyLog::default());
        }
        let Some(log) = self.replies.get_mut(identity) else {
            return;
        };
        let who = log
            .identity
            .get_or_insert_with(|| Arc::from(identity))
            .clone();
        let rid: Arc<str> = Arc::from(rid);
        let bytes = outcome.approx_len() + rid.len() + 24;
        let kept = Kept {
            n,
            outcome: outcome.clone(),
            bytes,
            json: OnceLock::new(),
        };
        log.bytes += bytes;
        if let Some(old) = log.by_rid.insert(rid.clone(), kept) {
            // The same id again (only a caller that skipped `replay` does this): the newer
            // reply replaces the older in place, keeping the older's place in the order.
            log.bytes = log.bytes.saturating_sub(old.bytes);
            if let Some(k) = log.by_rid.get_mut(&rid) {
                k.n = old.n;
            }
        } else {
            log.order.push_back((n, rid.clone()));
        }
        self.changes.push(Change::Reply {
            identity: who.clone(),
            rid,
            n,
            outcome,
        });
        if log.over()
            && let Some(below) = log.trim(KEEP_PER_IDENTITY, KEEP_BYTES_PER_IDENTITY)
        {
            self.changes.push(Change::RepliesPruned {
                identity: who,
                below,
            });
        }
    }

    pub(crate) fn restore_replies(&mut self, stored: Vec<StoredReply>) {
        for (identity, rid, n, outcome) in stored {
            self.next_reply_seq = self.next_reply_seq.max(n);
            let log = self.replies.entry(identity).or_default();
            let rid: Arc<str> = Arc::from(rid);
            let bytes = outcome.len() + rid.len() + 24;
            let kept = Kept {
                n,
                outcome: ReplyOutcome::Json(outcome),
                bytes,
                json: OnceLock::new(),
            };
            if log.by_rid.insert(rid.clone(), kept).is_none() {
                log.order.push_back((n, rid));
                log.bytes += bytes;
            }
        }
        // Rows hold several replies, so a pruned store can give back a few beyond the bounds;
        // forget them here too (their rows go with the next prune).
        for log in self.replies.values_mut() {
            log.trim(
                KEEP_PER_IDENTITY + PRUNE_STEP - 1,
                KEEP_BYTES_PER_IDENTITY + PRUNE_BYTES_STEP,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_protocol::{ErrorCode, TaskStatus, Timestamp};

    fn task(id: u64, description: &str) -> Task {
        Task {
            id,
            key: None,
            title: format!("t{id}"),
            description: description.into(),
            run: None,
            status: TaskStatus::InProgress,
            owner: Some("w\"1".into()),
            blocked_by: vec![1, 2],
            created_by: "operator".into(),
            result: Some("exit 0\nline\u{1}".into()),
            attempts: 1,
            created_at: Timestamp(1_700_000_000_000),
            updated_at: Timestamp(1_700_000_000_123),
            started_at: Some(Timestamp(1_700_000_000_123)),
            finished_at: None,
        }
    }

    fn pruned(changes: &[Change]) -> Vec<u64> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::RepliesPruned { below, .. } => Some(*below),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_remembered_reply_is_found_per_identity_and_old_ones_are_pruned() {
        let mut s = TeamState::new("t");
        s.remember_reply("leader", "r1", "\"one\"".into());
        assert_eq!(s.replay("leader", "r1"), Some("\"one\""));
        assert_eq!(s.replay("operator", "r1"), None);
        let _ = s.take_changes();
        for i in 0..(KEEP_PER_IDENTITY + PRUNE_STEP) {
            s.remember_outcome("leader", &format!("x{i}"), &Ok(Reply::Done));
        }
        assert_eq!(
            s.replay("leader", "r1"),
            None,
            "the oldest ids are forgotten"
        );
        assert!(
            s.replay_outcome("leader", &format!("x{}", KEEP_PER_IDENTITY))
                .is_some()
        );
        assert_eq!(pruned(&s.take_changes()).len(), 1);
    }

    #[test]
    fn a_typed_outcome_replays_as_itself_and_as_the_json_the_store_writes() {
        let mut s = TeamState::new("t");
        let outcomes = [
            Ok(Reply::Done),
            Ok(Reply::MaybeTask { task: None }),
            Ok(Reply::MaybeTask {
                task: Some(task(3, "d")),
            }),
            Ok(Reply::Task { task: task(4, "") }),
            Ok(Reply::Sent {
                ids: vec![7, 8],
                recipients: vec!["a".into(), "b".into()],
            }),
            Err(ErrorBody::with_details(
                ErrorCode::InboxFull,
                "full",
                serde_json::json!({"recipients": ["a"], "limit": 1000}),
            )),
        ];
        for (i, o) in outcomes.iter().enumerate() {
            let rid = format!("r{i}");
            s.remember_outcome("w1", &rid, o);
            assert_eq!(s.replay_outcome("w1", &rid).as_ref(), Some(o));
            let json = s.replay("w1", &rid).unwrap();
            let parsed: Result<Reply, ErrorBody> = serde_json::from_str(json).unwrap();
            assert_eq!(&parsed, o);
            assert_eq!(json, serde_json::to_string(o).unwrap());
            // The estimate that the byte budget counts is not below the real size.
            let stored = ReplyOutcome::Typed(Arc::new(o.clone()));
            assert!(stored.approx_len() >= json.len(), "{json}");
        }
        // The change carries what the store writes.
        let changes = s.take_changes();
        let Some(Change::Reply { outcome, rid, .. }) = changes.last() else {
            panic!("{changes:?}");
        };
        let mut out = Vec::new();
        outcome.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&outcomes[5]).unwrap()
        );
        assert_eq!(&**rid, "r5");
    }

    #[test]
    fn remembered_replies_are_bounded_by_bytes_oldest_first() {
        let mut s = TeamState::new("t");
        // Replies of ~100 KiB each: the count bound (1024) is far away, the byte bound is not.
        let big = "x".repeat(100 * 1024);
        let per = ReplyOutcome::Typed(Arc::new(Ok(Reply::Task {
            task: task(1, &big),
        })))
        .approx_len();
        let fit = KEEP_BYTES_PER_IDENTITY / per;
        let mut prunes = Vec::new();
        for i in 0..(3 * fit) {
            s.remember_outcome(
                "w1",
                &format!("r{i}"),
                &Ok(Reply::Task {
                    task: task(i as u64 + 1, &big),
                }),
            );
            prunes.extend(pruned(&s.take_changes()));
            let log = &s.replies["w1"];
            assert!(
                log.bytes <= KEEP_BYTES_PER_IDENTITY + PRUNE_BYTES_STEP,
                "{} bytes kept",
                log.bytes
            );
        }
        assert!(!prunes.is_empty(), "the store is told to forget");
        assert!(prunes.windows(2).all(|w| w[0] < w[1]));
        // The oldest went, the newest stayed; another identity is not affected.
        assert!(s.replay_outcome("w1", "r0").is_none());
        let last = format!("r{}", 3 * fit - 1);
        assert!(s.replay_outcome("w1", &last).is_some());
        let kept = s.replies["w1"].order.len();
        assert!(kept >= fit - 1 && kept < 2 * fit, "{kept} kept, {fit} fit");
        s.remember_outcome("w2", "r0", &Ok(Reply::Done));
        assert!(s.replay_outcome("w2", "r0").is_some());
    }

    #[test]
    fn one_reply_larger_than_the_budget_is_still_kept() {
        let mut s = TeamState::new("t");
        let huge = "y".repeat(KEEP_BYTES_PER_IDENTITY + PRUNE_BYTES_STEP);
        s.remember_outcome("w1", "a", &Ok(Reply::Done));
        s.remember_outcome(
            "w1",
            "b",
            &Ok(Reply::Task {
                task: task(1, &huge),
            }),
        );
        assert!(
            s.replay_outcome("w1", "a").is_none(),
            "the older one made room"
        );
        assert!(s.replay_outcome("w1", "b").is_some(), "the newest is kept");
    }

    #[test]
    fn restored_replies_are_trimmed_to_the_bounds() {
        let stored: Vec<StoredReply> = (1..=(KEEP_PER_IDENTITY + PRUNE_STEP + 10) as u64)
            .map(|n| {
                (
                    "w1".into(),
                    format!("r{n}"),
                    n,
                    "{\"Ok\":{\"kind\":\"done\"}}".into(),
                )
            })
            .collect();
        let s = TeamState::restore(
            "t",
            crate::Snapshot {
                replies: stored,
                ..Default::default()
            },
        );
        assert!(s.replay("w1", "r1").is_none());
        let last = format!("r{}", KEEP_PER_IDENTITY + PRUNE_STEP + 10);
        assert_eq!(
            s.replay_outcome("w1", &last),
            Some(Ok(Reply::Done)),
            "the newest survive a restart"
        );
    }
}
