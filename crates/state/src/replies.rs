//! Replies remembered by request id, so a client's retry after a reconnect is answered with
//! the original outcome instead of being applied twice (exactly once across reconnects).
//!
//! Every mutating request with a request id passes through here, so the hot path is kept
//! cheap (measured in docs/BENCHMARKS.md, issue 11): [`TeamState::remember_outcome`] writes
//! the reply's stored form once, straight into its identity's part of the batch's row (one
//! [`Change::Replies`] per commit), and keeps in memory only what a replay needs: nothing for
//! `done`, a one-recipient `sent` reply's id and recipient, the outcome itself otherwise,
//! moved in rather than copied, as is the request id. Ids are hashed with foldhash, not
//! SipHash, once, and an entry keeps its hash, so forgetting it needs no copy of the id.
//! Each identity keeps its last
//! [`KEEP_PER_IDENTITY`] replies and at most about [`KEEP_BYTES_PER_IDENTITY`] bytes of them;
//! the oldest go first.
//!
//! Each identity also knows the stored rows it has replies in (key and its last `n` there),
//! and each row how many identities do, so forgetting replies names the rows to delete by key
//! ([`Change::RepliesPruned`]): the store needs no index on identity.
//!
//! The stored forms of an outcome (one JSON value each):
//! - `{"Ok": reply}` or `{"Err": error}`: the outcome as JSON;
//! - `{"Sent": [ids, recipients]}`: a `sent` reply, without its field names;
//! - `{"TaskEvent": [seq, maybe]}`: a task reply (`maybe_task` when `maybe`) whose task is the
//!   one in the `TASK_UPDATED` event `seq` of the same commit; the store resolves it on load.
//!
//! One row per commit holds every identity's replies of that commit ([`Change::Replies`]),
//! written compactly, since each row is written twice (the WAL, then the checkpoint) and a
//! row per identity per commit, each with its half-filled last page, cost a tenth of the
//! sustained message rate: `[{"i": identity, "p": prefix, "e": [entry, ...]}, ...]`, each
//! entry `[rid, dn]` for `done`, `[rid, dn, [id, "to"]]` for a one-recipient `sent`,
//! `[rid, dn, [seq, maybe]]` for `{"TaskEvent": [seq, maybe]}`, `[rid, dn, stored]` otherwise.
//! `rid` is the request id without `prefix` (a client's ids share one), or `[rid]` whole when
//! it lacks it; `dn` is `n` less the identity's previous entry's (the first's, less the row's
//! key). [`decode_row`] reads these and the `[[rid, n, stored], ...]` rows of older builds
//! (one identity's, named by the row).
//!
//! A row is deleted once no identity remembers a reply in it, so an identity that stays quiet
//! keeps the rows of its last replies (at most one row per reply it still remembers).

use crate::{Change, TeamState};
use agent_team_protocol::{ErrorBody, Reply, Task};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::hash::BuildHasher as _;

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

/// The identities' reply logs. foldhash (seeded per process) is several times cheaper than
/// the default SipHash on these short keys, and every table here is bounded, so a client
/// choosing colliding ids can only slow its own lookups. The map's hasher also hashes the
/// request ids ([`Entry::hash`]).
pub(crate) type Logs = hashbrown::HashMap<String, ReplyLog, foldhash::fast::RandomState>;

/// What is kept in memory of one remembered outcome.
#[derive(Debug)]
enum Kept {
    /// `Ok(done)`: nothing to hold.
    Done,
    /// `Ok(sent)` to one recipient (the common send): its message id and the recipient's name,
    /// moved out of the reply.
    SentOne(u64, Box<str>),
    /// The outcome in a stored form (module docs), as loaded from the store or given to
    /// [`TeamState::remember_reply`].
    Stored(Box<str>),
    /// The outcome as the daemon produced it, moved in (not copied).
    Typed(Box<Result<Reply, ErrorBody>>),
}

/// One remembered reply.
#[derive(Debug)]
struct Entry {
    /// Its place in the order replies were remembered.
    n: u64,
    /// The request id's hash (the table's key), so forgetting needs no copy of the id.
    hash: u64,
    /// The request id, moved in from the request.
    rid: Box<str>,
    /// What it counts against the identity's byte budget.
    bytes: usize,
    kept: Kept,
}

/// The replies of one identity's recent requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ReplyLog {
    /// `(n, hash)` of each kept reply, oldest first.
    order: VecDeque<(u64, u64)>,
    /// The identity's stored rows, oldest first: (key, the last `n` in it). A row goes once
    /// its last entry is forgotten.
    rows: VecDeque<(u64, u64)>,
    by_rid: hashbrown::HashTable<Entry>,
    /// The sum of the kept replies' `bytes`.
    bytes: usize,
    /// This identity's part of this batch's row as written so far (module docs; without its
    /// closing `]}`), and the last `n` in it.
    batch: String,
    batch_last: u64,
    /// The prefix the part's request ids are written without.
    batch_prefix: String,
}

/// This batch's reply row, which the identities that remembered replies in it share, and how
/// many identities still remember a reply in each stored row.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The identities with replies remembered since the last `take_changes`, in order.
    identities: Vec<String>,
    /// The first `n` remembered since then: the row's key.
    first: Option<u64>,
    /// For each stored row, how many identities still remember a reply in it.
    holders: BTreeMap<u64, u32>,
    /// How long the last row was, to size the next one's buffer at once.
    last_len: usize,
}

impl Batch {
    /// Whether no reply was remembered since the last `take_changes`.
    pub(crate) fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Counts one identity's replies in the rows `keys` as forgotten; returns the rows no
    /// identity remembers a reply in any more.
    fn release(&mut self, keys: Vec<u64>) -> Vec<u64> {
        let mut gone = Vec::new();
        for key in keys {
            match self.holders.get_mut(&key) {
                Some(h) if *h > 1 => *h -= 1,
                _ => {
                    self.holders.remove(&key);
                    gone.push(key);
                }
            }
        }
        gone
    }
}

impl ReplyLog {
    /// The kept reply to request `rid` (hashed `hash`).
    fn get(&self, hash: u64, rid: &str) -> Option<&Entry> {
        self.by_rid.find(hash, |e| &*e.rid == rid)
    }

    /// Keeps `entry` (the newest), or, for an id already kept (only a caller that skipped
    /// `replay` does this), replaces the older reply in place, keeping its place in the order.
    fn keep(&mut self, entry: Entry) {
        self.bytes += entry.bytes;
        match self
            .by_rid
            .entry(entry.hash, |e| e.rid == entry.rid, |e| e.hash)
        {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let old = o.get_mut();
                self.bytes = self.bytes.saturating_sub(old.bytes);
                old.bytes = entry.bytes;
                old.kept = entry.kept;
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                self.order.push_back((entry.n, entry.hash));
                v.insert(entry);
            }
        }
    }

    /// Forgets the oldest replies while more than `keep` or more than `keep_bytes` are kept
    /// (never the newest one); returns the first sequence number still kept, if any went.
    fn trim(&mut self, keep: usize, keep_bytes: usize) -> Option<u64> {
        let mut below = None;
        while self.order.len() > keep.max(1) || (self.bytes > keep_bytes && self.order.len() > 1) {
            let Some((n, hash)) = self.order.pop_front() else {
                break;
            };
            if let Ok(e) = self.by_rid.find_entry(hash, |e| e.n == n) {
                let (gone, _) = e.remove();
                self.bytes = self.bytes.saturating_sub(gone.bytes);
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

/// The part of a request id that a client's ids share: up to and including its last `-`
/// (our clients' ids are `<random>-<counter>`), or nothing.
fn rid_prefix(rid: &str) -> &str {
    rid.rfind('-').map_or("", |i| &rid[..=i])
}

/// One entry of a stored row, read back: who made the request, the request id, its `n` and
/// its outcome in a stored form (module docs) as JSON.
pub type RowEntry = (String, String, u64, serde_json::Value);

/// Reads a stored row (module docs) whose key is `key`: its entries, each with its outcome in
/// a stored form. Reads the rows of this build and the one-identity rows of older builds
/// (`identity` is the row's, which this build leaves empty).
pub fn decode_row(
    key: u64,
    identity: &str,
    data: &str,
) -> Result<Vec<RowEntry>, serde_json::Error> {
    use serde_json::Value;
    #[derive(serde::Deserialize)]
    struct Part {
        i: String,
        p: String,
        e: Vec<Vec<Value>>,
    }
    let bad = |what: &str| <serde_json::Error as serde::de::Error>::custom(what);
    let body = data.trim_start().strip_prefix('[').unwrap_or("");
    if !body.trim_start().starts_with('{') {
        let old: Vec<(String, u64, Value)> = serde_json::from_str(data)?;
        return Ok(old
            .into_iter()
            .map(|(rid, n, o)| (identity.to_string(), rid, n, o))
            .collect());
    }
    let mut out = Vec::new();
    for part in serde_json::from_str::<Vec<Part>>(data)? {
        let mut n = key;
        for entry in part.e {
            let mut it = entry.into_iter();
            let rid = match it.next() {
                Some(Value::String(rest)) => format!("{}{rest}", part.p),
                Some(Value::Array(whole)) => match whole.into_iter().next() {
                    Some(Value::String(rid)) => rid,
                    _ => return Err(bad("a reply entry's whole id is not a string")),
                },
                _ => return Err(bad("a reply entry has no request id")),
            };
            let dn = it
                .next()
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad("a reply entry has no number"))?;
            n = n
                .checked_add(dn)
                .ok_or_else(|| bad("a reply entry's number is out of range"))?;
            let outcome = match it.next() {
                None => serde_json::json!({"Ok": {"kind": "done"}}),
                Some(Value::Array(short)) => match short.as_slice() {
                    [id @ Value::Number(_), to @ Value::String(_)] => {
                        serde_json::json!({"Sent": [[id], [to]]})
                    }
                    [seq @ Value::Number(_), maybe @ Value::Bool(_)] => {
                        serde_json::json!({"TaskEvent": [seq, maybe]})
                    }
                    _ => {
                        return Err(bad(
                            "a reply entry's short form is not [id, recipient] or [seq, maybe]",
                        ));
                    }
                },
                Some(stored) => stored,
            };
            out.push((part.i.clone(), rid, n, outcome));
        }
    }
    Ok(out)
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

/// Appends what an entry of a row (module docs) holds after its `dn`: nothing for `done`,
/// `,[id,"to"]` for a one-recipient `sent`, `,[seq,maybe]` for a task reply whose task is in
/// the `TASK_UPDATED` event `task_event`, a comma and the stored form otherwise.
fn write_entry_outcome(
    out: &mut String,
    outcome: &Result<Reply, ErrorBody>,
    task_event: Option<(u64, bool)>,
) {
    if let Some((seq, maybe)) = task_event {
        out.push_str(",[");
        out.push_str(itoa::Buffer::new().format(seq));
        out.push_str(if maybe { ",true]" } else { ",false]" });
        return;
    }
    match outcome {
        Ok(Reply::Done) => {}
        Ok(Reply::Sent { ids, recipients }) if ids.len() == 1 && recipients.len() == 1 => {
            out.push_str(",[");
            out.push_str(itoa::Buffer::new().format(ids[0]));
            out.push(',');
            push_json_str(out, &recipients[0]);
            out.push(']');
        }
        _ => {
            out.push(',');
            write_stored(out, outcome, None);
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
        let log = self.replies.get(identity)?;
        let entry = log.get(self.replies.hasher().hash_one(rid), rid)?;
        Some(match &entry.kept {
            Kept::Done => Ok(Reply::Done),
            Kept::SentOne(id, to) => Ok(Reply::Sent {
                ids: vec![*id],
                recipients: vec![to.to_string()],
            }),
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
    /// stored form is written into the identity's row of this batch now, and the outcome is
    /// moved in (`done` keeps nothing), so remembering copies neither it nor the id.
    pub fn remember_outcome(
        &mut self,
        identity: &str,
        rid: String,
        outcome: Result<Reply, ErrorBody>,
    ) {
        let task_event = self.task_event_of(&outcome);
        self.remember_with(identity, rid, |row| {
            write_entry_outcome(row, &outcome, task_event);
            // A task is counted whole although only a reference is stored: it is kept in memory.
            let bytes = approx_len(&outcome);
            let kept = match outcome {
                Ok(Reply::Done) => Kept::Done,
                Ok(Reply::Sent {
                    ids,
                    mut recipients,
                }) if ids.len() == 1 && recipients.len() == 1 => {
                    let to = recipients.pop().unwrap_or_default();
                    Kept::SentOne(ids[0], to.into_boxed_str())
                }
                other => Kept::Typed(Box::new(other)),
            };
            (kept, bytes)
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
        self.remember_with(identity, rid.to_owned(), |row| {
            if outcome != DONE_JSON {
                row.push(',');
                row.push_str(&outcome);
            }
            let bytes = outcome.len();
            (Kept::Stored(outcome.into_boxed_str()), bytes)
        });
    }

    /// Numbers the next reply of `identity`, appends its entry to the identity's row of this
    /// batch (module docs), `write` giving what follows the entry's `dn` and what to keep of
    /// the outcome (with what that counts against the byte budget), and keeps it.
    fn remember_with(
        &mut self,
        identity: &str,
        rid: String,
        write: impl FnOnce(&mut String) -> (Kept, usize),
    ) {
        self.next_reply_seq += 1;
        let n = self.next_reply_seq;
        let hash = self.replies.hasher().hash_one(rid.as_str());
        let first = *self.reply_batch.first.get_or_insert(n);
        let log = self.replies.entry_ref(identity).or_default();
        if log.batch.is_empty() {
            log.batch_last = first;
            log.batch_prefix.clear();
            log.batch_prefix.push_str(rid_prefix(&rid));
            log.batch.push_str("{\"i\":");
            push_json_str(&mut log.batch, identity);
            log.batch.push_str(",\"p\":");
            push_json_str(&mut log.batch, &log.batch_prefix);
            log.batch.push_str(",\"e\":[");
            self.reply_batch.identities.push(identity.to_string());
        } else {
            log.batch.push(',');
        }
        log.batch.push('[');
        match rid.strip_prefix(log.batch_prefix.as_str()) {
            Some(rest) => push_json_str(&mut log.batch, rest),
            None => {
                log.batch.push('[');
                push_json_str(&mut log.batch, &rid);
                log.batch.push(']');
            }
        }
        log.batch.push(',');
        log.batch
            .push_str(itoa::Buffer::new().format(n - log.batch_last));
        let (kept, bytes) = write(&mut log.batch);
        log.batch.push(']');
        log.batch_last = n;
        let bytes = bytes + rid.len() + 24;
        log.keep(Entry {
            n,
            hash,
            rid: rid.into_boxed_str(),
            bytes,
            kept,
        });
        if log.over()
            && let Some(below) = log.trim(KEEP_PER_IDENTITY, KEEP_BYTES_PER_IDENTITY)
        {
            let rows = self.reply_batch.release(log.forget_rows(below));
            if !rows.is_empty() {
                self.changes.push(Change::RepliesPruned { rows });
            }
        }
    }

    /// Hands the replies of this batch to the changes, one row for all identities.
    pub(crate) fn flush_replies(&mut self) {
        let Some(first) = self.reply_batch.first.take() else {
            return;
        };
        let mut row = String::with_capacity(self.reply_batch.last_len.max(64));
        row.push('[');
        let (mut last, mut holders) = (first, 0);
        for identity in std::mem::take(&mut self.reply_batch.identities) {
            let Some(log) = self.replies.get_mut(&identity) else {
                continue;
            };
            if holders > 0 {
                row.push(',');
            }
            row.push_str(&log.batch);
            row.push_str("]}");
            log.batch.clear();
            log.rows.push_back((first, log.batch_last));
            last = last.max(log.batch_last);
            holders += 1;
        }
        row.push(']');
        if holders == 0 {
            return;
        }
        self.reply_batch.last_len = row.len();
        self.reply_batch.holders.insert(first, holders);
        self.changes.push(Change::Replies {
            first,
            last,
            entries: row,
        });
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
            let hash = self.replies.hasher().hash_one(rid.as_str());
            let log = self.replies.entry(identity).or_default();
            match log.rows.back_mut() {
                Some((key, last)) if *key == row => *last = (*last).max(n),
                _ => {
                    log.rows.push_back((row, n));
                    *self.reply_batch.holders.entry(row).or_default() += 1;
                }
            }
            let bytes = outcome.len() + rid.len() + 24;
            let kept = if outcome == DONE_JSON {
                Kept::Done
            } else {
                Kept::Stored(outcome.into_boxed_str())
            };
            log.keep(Entry {
                n,
                hash,
                rid: rid.into_boxed_str(),
                bytes,
                kept,
            });
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
            blocks: Vec::new(),
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
            if let Change::Replies { first, entries, .. } = c {
                for (identity, rid, n, outcome) in decode_row(*first, "", entries).unwrap() {
                    stored.push(StoredReply {
                        identity,
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
            s.remember_outcome("leader", format!("x{i}"), Ok(Reply::Done));
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
    /// prune steps of interleaved identities: every row left holds a kept reply, no more rows
    /// are left than the slowest identity's kept replies span, and the rows restore every
    /// kept reply (and the rows of a restored state are pruned in turn).
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
                    s.remember_outcome(who, format!("r{rid}"), Ok(Reply::Done));
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
        // A row holds every identity's replies of its batch and goes when the last of them
        // is forgotten: the rows left are those of `a`'s kept replies (two a batch).
        assert!(prunes >= 2, "{prunes}");
        assert!(
            table.len() <= (KEEP_PER_IDENTITY + PRUNE_STEP).div_ceil(2),
            "{} rows",
            table.len()
        );
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
            for e in log.by_rid.iter() {
                let rid = &*e.rid;
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
            s.remember_outcome("w1", rid.clone(), o.clone());
            assert_eq!(s.replay_outcome("w1", &rid).as_ref(), Some(o));
            let json = s.replay("w1", &rid).unwrap();
            let parsed: Result<Reply, ErrorBody> = serde_json::from_str(&json).unwrap();
            assert_eq!(&parsed, o);
            assert_eq!(json, serde_json::to_string(o).unwrap());
            // The estimate that the byte budget counts is not below the real size.
            assert!(approx_len(o) >= json.len(), "{json}");
        }
        // One row for the batch, each entry in its stored form, which reads back as the same
        // outcome (after a restart, `restore_replies` gets these texts).
        let changes = s.take_changes();
        let rows: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Replies {
                    first,
                    last,
                    entries,
                } => Some((*first, *last, entries.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), 1, "{changes:?}");
        let (first, last, entries) = &rows[0];
        let entries = decode_row(*first, "", entries).unwrap();
        assert_eq!(entries.len(), outcomes.len());
        assert!(entries.iter().all(|e| e.0 == "w1"));
        assert_eq!((*first, *last), (entries[0].2, entries[5].2));
        for ((_, rid, _, stored), o) in entries.iter().zip(&outcomes) {
            assert_eq!(&decode_stored(&stored.to_string()).unwrap(), o, "{rid}");
        }
        // `done` and `sent` are stored short; the sent reply without its field names.
        assert_eq!(entries[0].3.to_string(), DONE_JSON);
        assert_eq!(
            entries[4].3,
            serde_json::json!({"Sent": [[7, 8], ["a", "b"]]})
        );
        assert_eq!(
            serde_json::to_string(&Ok::<Reply, ErrorBody>(Reply::Done)).unwrap(),
            DONE_JSON
        );
        assert!(!s.has_changes(), "the row went with the changes");
    }

    /// Rows written by older builds (`[[rid, n, stored], ...]`, one identity's) still read; a
    /// shared row's identities, ids without the prefix, whole ids and numbers read back as
    /// written.
    #[test]
    fn old_rows_and_shared_rows_decode_to_the_same_entries() {
        let old = r#"[["c1-5",7,{"Ok":{"kind":"done"}}],["c1-6",9,{"Sent":[[3],["w1"]]}]]"#;
        let compact = r#"[{"i":"a","p":"c1-","e":[["5",0],["6",2,[3,"w1"]],[["other"],1,{"Err":{"code":"conflict","message":"m"}}]]},{"i":"b","p":"","e":[["x",1],["y",1,[12,true]]]}]"#;
        let a = decode_row(7, "a", old).unwrap();
        let b = decode_row(7, "", compact).unwrap();
        assert_eq!(a, b[..2].to_vec());
        assert_eq!((b[2].1.as_str(), b[2].2), ("other", 10));
        // Each identity's numbers start from the row's key.
        assert_eq!((b[3].0.as_str(), b[3].1.as_str(), b[3].2), ("b", "x", 8));
        assert_eq!(b[4].3, serde_json::json!({"TaskEvent": [12, true]}));
        assert!(decode_row(7, "", r#"[{"i":"a","p":"","e":[[1,0]]}]"#).is_err());
        assert!(decode_row(7, "", r#"[{"i":"a","p":"","e":[["x",0,[1]]]}]"#).is_err());
        assert_eq!(decode_row(7, "a", "[]").unwrap(), vec![]);
        let huge = format!(r#"[{{"i":"a","p":"","e":[["x",{}]]}}]"#, u64::MAX);
        assert!(
            decode_row(7, "", &huge).is_err(),
            "a number out of range is an error"
        );
        // And what `remember_outcome` writes is such a row: a whole id where the prefix differs.
        let mut s = TeamState::new("t");
        s.remember_outcome("w1", "c1-5".into(), Ok(Reply::Done));
        s.remember_outcome("w1", "zz".into(), Ok(Reply::Done));
        let rows = stored_rows(&s.take_changes());
        let ids: Vec<(&str, u64)> = rows.iter().map(|r| (r.rid.as_str(), r.n)).collect();
        assert_eq!(ids, [("c1-5", 1), ("zz", 2)]);
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
            s.remember_outcome("w\"1", format!("r\"{i}"), o.clone());
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
                format!("r{i}"),
                Ok(Reply::Task {
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
        s.remember_outcome("w2", "r0".into(), Ok(Reply::Done));
        assert!(s.replay_outcome("w2", "r0").is_some());
    }

    #[test]
    fn one_reply_larger_than_the_budget_is_still_kept() {
        let mut s = TeamState::new("t");
        let huge = "y".repeat(KEEP_BYTES_PER_IDENTITY + PRUNE_BYTES_STEP);
        s.remember_outcome("w1", "a".into(), Ok(Reply::Done));
        s.remember_outcome(
            "w1",
            "b".into(),
            Ok(Reply::Task {
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
