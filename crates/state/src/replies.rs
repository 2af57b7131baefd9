//! Replies remembered by request id, so a client's retry after a reconnect is answered with
//! the original outcome instead of being applied twice (exactly once across reconnects).
//!
//! Every mutating request with a request id passes through here, so the hot path is kept
//! cheap (measured in docs/BENCHMARKS.md, issue 11): [`TeamState::remember_outcome`] writes
//! the reply's stored form once, straight into its identity's row of the batch (one
//! [`Change::Replies`] per identity per commit), and keeps in memory only what a replay needs:
//! nothing for `done`, the short stored form of a `sent` reply, the outcome itself otherwise.
//! Ids are hashed with foldhash, not SipHash. Each identity keeps its last
//! [`KEEP_PER_IDENTITY`] replies and at most about [`KEEP_BYTES_PER_IDENTITY`] bytes of them;
//! the oldest go first.
//!
//! Each identity also knows its stored rows (key and last `n`), so forgetting replies names
//! the rows to delete by key ([`Change::RepliesPruned`]): the store needs no index on
//! identity, whose entries cost a claim commit one more WAL page per claimer.
//!
//! The stored forms of an outcome (one JSON value each):
//! - `{"Ok": reply}` or `{"Err": error}`: the outcome as JSON;
//! - `{"Sent": [ids, recipients]}`: a `sent` reply, without its field names;
//! - `{"TaskEvent": [seq, maybe]}`: a task reply (`maybe_task` when `maybe`) whose task is the
//!   one in the `TASK_UPDATED` event `seq` of the same commit; the store resolves it on load.

use crate::{Change, TeamState};
use agent_team_protocol::{ErrorBody, Reply, Task};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

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

/// The stored form of `Ok(done)` (what serde writes for it; a test checks).
const DONE_JSON: &str = r#"{"Ok":{"kind":"done"}}"#;

/// A map keyed by request ids or identities: foldhash (seeded per process) is several times
/// cheaper than the default SipHash on these short keys, and every map here is bounded, so
/// a client choosing colliding ids can only slow its own lookups.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What is kept in memory of one remembered outcome.
#[derive(Debug)]
enum Kept {
    /// `Ok(done)`: nothing to hold.
    Done,
    /// The outcome in a stored form (module docs): a `sent` reply's short form, or JSON
    /// loaded from the store or given to [`TeamState::remember_reply`].
    Stored(Box<str>),
    /// The outcome as the daemon produced it (task replies, errors, the rarer replies).
    Typed(Box<Result<Reply, ErrorBody>>),
}

/// One remembered reply.
#[derive(Debug)]
struct Entry {
    /// Its place in the order replies were remembered.
    n: u64,
    /// What it counts against the identity's byte budget.
    bytes: usize,
    kept: Kept,
}

/// The replies of one identity's recent requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ReplyLog {
    order: VecDeque<(u64, Arc<str>)>,
    /// The identity's stored rows, oldest first: (key, the last `n` in it). A row goes once
    /// its last entry is forgotten.
    rows: VecDeque<(u64, u64)>,
    by_rid: FastMap<Arc<str>, Entry>,
    /// The sum of the kept replies' `bytes`.
    bytes: usize,
    /// This batch's entries as stored, `[rid,n,outcome]` separated by commas (no brackets),
    /// and the first and last `n` among them: the row [`TeamState::take_changes`] hands over.
    batch: String,
    batch_first: u64,
    batch_last: u64,
    /// How long the last batch's row was, to size the next one's buffer at once.
    last_batch_len: usize,
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

    /// Takes the keys of the rows whose entries all lie below `below` (all forgotten).
    fn forget_rows(&mut self, below: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        while let Some(&(key, last)) = self.rows.front() {
            if last >= below {
                break;
            }
            gone.push(key);
            self.rows.pop_front();
        }
        gone
    }

    /// Whether the log has grown past its bounds by a whole pruning step.
    fn over(&self) -> bool {
        self.order.len() >= KEEP_PER_IDENTITY + PRUNE_STEP
            || self.bytes > KEEP_BYTES_PER_IDENTITY + PRUNE_BYTES_STEP
    }
}

/// One remembered reply as the store gives it back at load.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReply {
    /// Who made the request.
    pub identity: String,
    /// The key of the row it is stored in (the `first` of its [`Change::Replies`]), so a
    /// later prune can delete the row by key.
    pub row: u64,
    /// The request id.
    pub rid: String,
    /// Its place in the order replies were remembered.
    pub n: u64,
    /// The outcome in a stored form (module docs), a task reference already resolved to JSON
    /// by the store.
    pub outcome: String,
}

/// The stored forms as they are read back (a task reference is resolved by the store).
#[derive(serde::Deserialize)]
enum StoredForm {
    Ok(Box<Reply>),
    Err(ErrorBody),
    Sent(Vec<u64>, Vec<String>),
}

/// The outcome a stored form (module docs) stands for.
pub fn decode_stored(stored: &str) -> Result<Result<Reply, ErrorBody>, serde_json::Error> {
    Ok(match serde_json::from_str::<StoredForm>(stored)? {
        StoredForm::Ok(r) => Ok(*r),
        StoredForm::Err(e) => Err(e),
        StoredForm::Sent(ids, recipients) => Ok(Reply::Sent { ids, recipients }),
    })
}

/// Appends `s` as a JSON string (plain text, the usual case, is copied as it is).
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        match serde_json::to_string(s) {
            Ok(j) => out.push_str(&j),
            // A string always serialises; keep the row readable if not.
            Err(_) => out.push_str("\"\""),
        }
    }
}

/// Appends the stored form of `outcome` (module docs): `task_event` is the `TASK_UPDATED`
/// event of the same commit that holds a task reply's task.
fn write_stored(
    out: &mut String,
    outcome: &Result<Reply, ErrorBody>,
    task_event: Option<(u64, bool)>,
) {
    if let Some((seq, maybe)) = task_event {
        let _ = write!(out, "{{\"TaskEvent\":[{seq},{maybe}]}}");
        return;
    }
    match outcome {
        Ok(Reply::Done) => out.push_str(DONE_JSON),
        Ok(Reply::Sent { ids, recipients }) => {
            out.push_str("{\"Sent\":[[");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{id}");
            }
            out.push_str("],[");
            for (i, r) in recipients.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, r);
            }
            out.push_str("]]}");
        }
        other => match serde_json::to_string(other) {
            Ok(j) => out.push_str(&j),
            // Our own plain data always serialises; keep the row readable if not.
            Err(_) => out.push_str("null"),
        },
    }
}

/// About how many bytes the JSON of a typed outcome takes (an estimate that errs on the large
/// side for the common replies, so the byte budget holds).
fn approx_len(o: &Result<Reply, ErrorBody>) -> usize {
    match o {
        Ok(Reply::Done) => DONE_JSON.len(),
        Ok(Reply::MaybeTask { task: None }) => 40,
        Ok(Reply::MaybeTask { task: Some(t) }) | Ok(Reply::Task { task: t }) => task_len(t),
        Ok(Reply::Sent { ids, recipients }) => {
            48 + ids.len() * 21 + recipients.iter().map(|r| r.len() * 6 + 3).sum::<usize>()
        }
        Err(e) => 48 + e.message.len() * 6 + value_len(&e.details),
        // Rare replies (registrations, spawns, decisions): measured exactly.
        Ok(other) => json_len(other) + 8,
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

impl TeamState {
    /// The outcome (as JSON, `{"Ok": reply}` or `{"Err": error}`) first given to `identity`'s
    /// request `rid`, if it is remembered.
    pub fn replay(&self, identity: &str, rid: &str) -> Option<String> {
        let outcome = self.replay_outcome(identity, rid)?;
        Some(serde_json::to_string(&outcome).unwrap_or_else(|_| "null".into()))
    }

    /// The outcome first given to `identity`'s request `rid`, if it is remembered.
    pub fn replay_outcome(&self, identity: &str, rid: &str) -> Option<Result<Reply, ErrorBody>> {
        let entry = self.replies.get(identity)?.by_rid.get(rid)?;
        Some(match &entry.kept {
            Kept::Done => Ok(Reply::Done),
            Kept::Typed(o) => o.as_ref().clone(),
            Kept::Stored(s) => decode_stored(s).unwrap_or_else(|e| {
                Err(ErrorBody::new(
                    agent_team_protocol::ErrorCode::Internal,
                    format!("cannot read the remembered reply: {e}"),
                ))
            }),
        })
    }

    /// Remembers the outcome of `identity`'s request `rid` (persisted with the batch): its
    /// stored form is written into the identity's row of this batch now, and only what a
    /// replay needs is kept (module docs).
    pub fn remember_outcome(
        &mut self,
        identity: &str,
        rid: &str,
        outcome: &Result<Reply, ErrorBody>,
    ) {
        let task_event = self.task_event_of(outcome);
        self.remember_with(identity, rid, |row| {
            let start = row.len();
            write_stored(row, outcome, task_event);
            match outcome {
                Ok(Reply::Done) => (Kept::Done, DONE_JSON.len()),
                Ok(Reply::Sent { .. }) => {
                    let stored = &row[start..];
                    (Kept::Stored(Box::from(stored)), stored.len())
                }
                // A task is counted although only a reference is stored: it is kept in memory.
                other => (Kept::Typed(Box::new(other.clone())), approx_len(other)),
            }
        });
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

    /// Remembers the outcome of `identity`'s request `rid`, given in a stored form (module
    /// docs; `{"Ok": reply}` or `{"Err": error}` as JSON). [`TeamState::remember_outcome`]
    /// does the same from the outcome itself.
    pub fn remember_reply(&mut self, identity: &str, rid: &str, outcome: String) {
        self.remember_with(identity, rid, |row| {
            row.push_str(&outcome);
            let bytes = outcome.len();
            (Kept::Stored(outcome.into_boxed_str()), bytes)
        });
    }

    /// Numbers the next reply of `identity`, appends its entry (`[rid,n,outcome]`) to the
    /// identity's row of this batch, `write` giving the outcome's stored form and what to keep
    /// of it (with what that counts against the byte budget), and keeps it.
    fn remember_with(
        &mut self,
        identity: &str,
        rid: &str,
        write: impl FnOnce(&mut String) -> (Kept, usize),
    ) {
        self.next_reply_seq += 1;
        let n = self.next_reply_seq;
        if !self.replies.contains_key(identity) {
            self.replies
                .insert(identity.to_string(), ReplyLog::default());
        }
        let Some(log) = self.replies.get_mut(identity) else {
            return;
        };
        if log.batch.is_empty() {
            log.batch.push('[');
            log.batch_first = n;
            self.replies_in_batch.push(identity.to_string());
        } else {
            log.batch.push(',');
        }
        log.batch.push('[');
        push_json_str(&mut log.batch, rid);
        let _ = write!(log.batch, ",{n},");
        let (kept, bytes) = write(&mut log.batch);
        log.batch.push(']');
        log.batch_last = n;
        let rid: Arc<str> = Arc::from(rid);
        let bytes = bytes + rid.len() + 24;
        log.bytes += bytes;
        if let Some(old) = log.by_rid.insert(rid.clone(), Entry { n, bytes, kept }) {
            // The same id again (only a caller that skipped `replay` does this): the newer
            // reply replaces the older in place, keeping the older's place in the order.
            log.bytes = log.bytes.saturating_sub(old.bytes);
            if let Some(k) = log.by_rid.get_mut(&rid) {
                k.n = old.n;
            }
        } else {
            log.order.push_back((n, rid));
        }
        if log.over()
            && let Some(below) = log.trim(KEEP_PER_IDENTITY, KEEP_BYTES_PER_IDENTITY)
        {
            let rows = log.forget_rows(below);
            if !rows.is_empty() {
                self.changes.push(Change::RepliesPruned { rows });
            }
        }
    }

    /// Hands each identity's replies of this batch to the changes, one row each.
    pub(crate) fn flush_replies(&mut self) {
        for identity in std::mem::take(&mut self.replies_in_batch) {
            let Some(log) = self.replies.get_mut(&identity) else {
                continue;
            };
            let mut entries = std::mem::replace(
                &mut log.batch,
                String::with_capacity(log.last_batch_len.max(64)),
            );
            entries.push(']');
            log.last_batch_len = entries.len();
            let (first, last) = (log.batch_first, log.batch_last);
            log.rows.push_back((first, last));
            self.changes.push(Change::Replies {
                identity,
                first,
                last,
                entries,
            });
        }
    }

    /// Rebuilds the remembered replies and each identity's rows from what the store loaded
    /// (in row order).
    pub(crate) fn restore_replies(&mut self, stored: Vec<StoredReply>) {
        for StoredReply {
            identity,
            row,
            rid,
            n,
            outcome,
        } in stored
        {
            self.next_reply_seq = self.next_reply_seq.max(n);
            let log = self.replies.entry(identity).or_default();
            match log.rows.back_mut() {
                Some((key, last)) if *key == row => *last = (*last).max(n),
                _ => log.rows.push_back((row, n)),
            }
            let rid: Arc<str> = Arc::from(rid);
            let bytes = outcome.len() + rid.len() + 24;
            let kept = if outcome == DONE_JSON {
                Kept::Done
            } else {
                Kept::Stored(outcome.into_boxed_str())
            };
            if log
                .by_rid
                .insert(rid.clone(), Entry { n, bytes, kept })
                .is_none()
            {
                log.order.push_back((n, rid));
                log.bytes += bytes;
            }
        }
        // Rows hold several replies, so a pruned store can give back a few beyond the bounds;
        // forget them here too (their rows stay listed and go with the next prune).
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

    /// The keys of the rows the changes delete.
    fn pruned(changes: &[Change]) -> Vec<u64> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::RepliesPruned { rows } => Some(rows.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The rows the changes write, as the store gives them back at load (in row order).
    fn stored_rows(changes: &[Change]) -> Vec<StoredReply> {
        let mut stored = Vec::new();
        for c in changes {
            if let Change::Replies {
                identity,
                first,
                entries,
                ..
            } = c
            {
                let entries: Vec<(String, u64, serde_json::Value)> =
                    serde_json::from_str(entries).unwrap();
                for (rid, n, outcome) in entries {
                    stored.push(StoredReply {
                        identity: identity.clone(),
                        row: *first,
                        rid,
                        n,
                        outcome: outcome.to_string(),
                    });
                }
            }
        }
        stored
    }

    #[test]
    fn a_remembered_reply_is_found_per_identity_and_old_ones_are_pruned() {
        let mut s = TeamState::new("t");
        s.remember_reply("leader", "r1", r#"{"Ok":{"kind":"done"}}"#.into());
        assert_eq!(
            s.replay("leader", "r1").as_deref(),
            Some(r#"{"Ok":{"kind":"done"}}"#)
        );
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

    /// The store's rows as the changes leave them (key to its stored replies) after several
    /// prune steps of interleaved identities: every row left holds a kept reply, and the
    /// rows restore every kept reply (and the rows of a restored state are pruned in turn).
    #[test]
    fn pruned_rows_are_named_by_key_and_no_row_outlives_its_replies() {
        use std::collections::BTreeMap;
        fn apply(table: &mut BTreeMap<u64, Vec<StoredReply>>, changes: &[Change]) -> usize {
            let mut prunes = 0;
            for c in changes {
                if let Change::RepliesPruned { rows } = c {
                    prunes += 1;
                    for key in rows {
                        assert!(table.remove(key).is_some(), "row {key} was stored");
                    }
                }
            }
            for r in stored_rows(changes) {
                table.entry(r.row).or_default().push(r);
            }
            prunes
        }
        let mut table = BTreeMap::new();
        let mut s = TeamState::new("t");
        let mut prunes = 0;
        let mut rid = 0;
        for batch in 0..900 {
            for (who, per) in [("a", 2), ("b", 3), ("c", 7)] {
                if who == "c" && batch % 2 == 1 {
                    continue;
                }
                for _ in 0..per {
                    rid += 1;
                    s.remember_outcome(who, &format!("r{rid}"), &Ok(Reply::Done));
                }
            }
            prunes += apply(&mut table, &s.take_changes());
            if batch == 450 {
                let stored = table.values().flatten().cloned().collect();
                s = TeamState::restore(
                    "t",
                    crate::Snapshot {
                        replies: stored,
                        ..Default::default()
                    },
                );
            }
        }
        assert!(prunes >= 9, "{prunes}");
        for (key, row) in &table {
            assert!(
                row.iter()
                    .any(|r| s.replay_outcome(&r.identity, &r.rid).is_some()),
                "row {key} holds only forgotten replies"
            );
        }
        let restored = TeamState::restore(
            "t",
            crate::Snapshot {
                replies: table.values().flatten().cloned().collect(),
                ..Default::default()
            },
        );
        for (who, log) in &s.replies {
            assert!(log.order.len() >= KEEP_PER_IDENTITY, "{who}");
            for (_, rid) in &log.order {
                assert_eq!(restored.replay_outcome(who, rid), Some(Ok(Reply::Done)));
            }
        }
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
            let parsed: Result<Reply, ErrorBody> = serde_json::from_str(&json).unwrap();
            assert_eq!(&parsed, o);
            assert_eq!(json, serde_json::to_string(o).unwrap());
            // The estimate that the byte budget counts is not below the real size.
            assert!(approx_len(o) >= json.len(), "{json}");
        }
        // One row for the identity's batch, each entry in its stored form, which reads back
        // as the same outcome (after a restart, `restore_replies` gets these texts).
        let changes = s.take_changes();
        let rows: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Replies {
                    identity,
                    first,
                    last,
                    entries,
                } => Some((identity.clone(), *first, *last, entries.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), 1, "{changes:?}");
        let (identity, first, last, entries) = &rows[0];
        assert_eq!(identity, "w1");
        let entries: Vec<(String, u64, serde_json::Value)> = serde_json::from_str(entries).unwrap();
        assert_eq!(entries.len(), outcomes.len());
        assert_eq!((*first, *last), (entries[0].1, entries[5].1));
        for ((rid, _, stored), o) in entries.iter().zip(&outcomes) {
            assert_eq!(&decode_stored(&stored.to_string()).unwrap(), o, "{rid}");
        }
        // `done` and `sent` are stored short; the sent reply without its field names.
        assert_eq!(entries[0].2.to_string(), DONE_JSON);
        assert_eq!(
            entries[4].2,
            serde_json::json!({"Sent": [[7, 8], ["a", "b"]]})
        );
        assert_eq!(
            serde_json::to_string(&Ok::<Reply, ErrorBody>(Reply::Done)).unwrap(),
            DONE_JSON
        );
        assert!(!s.has_changes(), "the row went with the changes");
    }

    #[test]
    fn a_sent_reply_stored_short_is_the_same_reply_after_a_restart() {
        let mut s = TeamState::new("t");
        // Names that need escaping take the slow path and still read back.
        let outcomes = [
            Ok(Reply::Sent {
                ids: vec![41],
                recipients: vec!["tp-r0".into()],
            }),
            Ok(Reply::Sent {
                ids: vec![1, 2, 3],
                recipients: vec!["a\"b".into(), "c\\d\n".into(), "é".into()],
            }),
            Ok(Reply::Sent {
                ids: vec![],
                recipients: vec![],
            }),
            Ok(Reply::Done),
        ];
        for (i, o) in outcomes.iter().enumerate() {
            s.remember_outcome("w\"1", &format!("r\"{i}"), o);
        }
        let changes = s.take_changes();
        // What the store keeps and gives back at load.
        let stored = stored_rows(&changes);
        assert_eq!(stored.len(), outcomes.len());
        assert!(stored[0].outcome.len() < 30, "short: {}", stored[0].outcome);
        let restored = TeamState::restore(
            "t",
            crate::Snapshot {
                replies: stored,
                ..Default::default()
            },
        );
        for (i, o) in outcomes.iter().enumerate() {
            let rid = format!("r\"{i}");
            assert_eq!(restored.replay_outcome("w\"1", &rid).as_ref(), Some(o));
            assert_eq!(
                restored.replay("w\"1", &rid).unwrap(),
                serde_json::to_string(o).unwrap()
            );
        }
    }

    #[test]
    fn remembered_replies_are_bounded_by_bytes_oldest_first() {
        let mut s = TeamState::new("t");
        // Replies of ~100 KiB each: the count bound (1024) is far away, the byte bound is not.
        let big = "x".repeat(100 * 1024);
        let per = approx_len(&Ok(Reply::Task {
            task: task(1, &big),
        }));
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
            .map(|n| StoredReply {
                identity: "w1".into(),
                row: n,
                rid: format!("r{n}"),
                n,
                outcome: "{\"Ok\":{\"kind\":\"done\"}}".into(),
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
