//! Durable storage of one team's state in SQLite (WAL, `synchronous=FULL`).
//!
//! The daemon hands over the [`Change`]s of a whole batch of requests and [`Store::commit`]
//! writes them in one transaction: one fsync covers the batch (group commit), and nothing is
//! acknowledged before it returns. On start, [`Store::load`] rebuilds the in-memory state from
//! the tables; read messages and the event log stay on disk and are queried on demand.

use agent_team_protocol::*;
use agent_team_state::{AgentRecord, Change, RunRecord, Snapshot, replies::StoredReply};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// The schema version this build writes, kept in `meta` as the row `schema`: an older one on
/// disk is migrated in place when the store opens (`MIGRATIONS`), a newer one refused with
/// the file left as it is.
pub const SCHEMA_VERSION: i64 = 2;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}: {source}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The decoding failure.
        source: serde_json::Error,
    },
    /// The database was written by a newer agent-team (it is left as it is).
    #[error(
        "the team's state has schema version {found}, written by a newer agent-team; this one \
         reads versions up to {SCHEMA_VERSION}: upgrade agent-team to use this team (its state \
         was left untouched)"
    )]
    TooNew {
        /// The version found on disk.
        found: i64,
    },
    /// A step migrating an older database failed (nothing of the migration was kept).
    #[error("cannot migrate the team's state from schema version {from} ({name}): {source}")]
    Migration {
        /// The version the step starts from.
        from: i64,
        /// The step.
        name: &'static str,
        /// SQLite's refusal.
        source: rusqlite::Error,
    },
    /// The database belongs to another team.
    #[error("state database belongs to team {found:?}, not {expected:?}")]
    WrongTeam {
        /// The team recorded in the database.
        found: String,
        /// The team asked for.
        expected: String,
    },
    /// A file of the database could not be made, synced or moved in.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The database's path.
        path: std::path::PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether SQLite found the disk full (`SQLITE_FULL`): nothing of the commit was written,
    /// and writing may work again once space returns.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }

    /// Whether another connection holds the database (`SQLITE_BUSY`/`SQLITE_LOCKED`): a
    /// daemon that started meanwhile keeps its store locked while it runs, so a reader then
    /// asks the daemon instead.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Sqlite(e) if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ))
    }
}

/// The SQLite connection and the team it stores.
pub struct Store {
    conn: Connection,
    team: String,
    /// Whether `synchronous` is currently NORMAL (for a batch of changes none of which
    /// [needs a sync](Change::needs_sync)).
    relaxed: bool,
    /// The stored `next_task_id`, so it is written only when a new task raises it.
    next_task_id: u64,
    /// Commits since the WAL was last checkpointed.
    commits_since_checkpoint: u32,
    /// The frames the WAL holds that are not in the database yet, as SQLite says after each
    /// commit (its WAL hook) and zero after a checkpoint: what its close would copy back.
    wal_frames: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The database's page size: a WAL frame is a page and a 24-byte header.
    page_size: u32,
    /// Whether a commit of changes that [need a sync](Change::needs_sync) went unsynced
    /// ([`Store::commit_unsynced`]) and no sync has covered it since ([`Store::settle`]).
    owed: bool,
    /// Whether this new database's directory (its name) awaits a sync: until the first synced
    /// commit (SQLite syncs it then) or [`Store::settle`] ([`create_aside`]).
    dir_owed: bool,
}

impl Drop for Store {
    /// Decides whether closing copies the WAL into the database (at most `WAL_LEAVE_BYTES`
    /// not yet copied is left as it is); the connection closes after this.
    fn drop(&mut self) {
        if self.wal_bytes_to_copy() <= WAL_LEAVE_BYTES {
            let _ = self.conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            );
        }
    }
}

/// The statements every message, ack, event and task change runs, looked up once per commit,
/// not once per row (the cache lookup showed in profiles at ~3 %).
#[derive(Default)]
struct HotStatements<'c> {
    ins_task: Option<rusqlite::CachedStatement<'c>>,
    ins_msg: Option<rusqlite::CachedStatement<'c>>,
    set_state: Option<rusqlite::CachedStatement<'c>>,
    ins_event: Option<rusqlite::CachedStatement<'c>>,
}

/// Writes one change: the frequent ones through `hot`, the others by their table's kind.
fn write_change<'c>(
    tx: &'c Connection,
    hot: &mut HotStatements<'c>,
    change: &Change,
) -> Result<(), StoreError> {
    match change {
        Change::Task(t) => {
            stmt(
                tx,
                &mut hot.ins_task,
                "INSERT OR REPLACE INTO tasks (id, data) VALUES (?1, ?2)",
            )?
            .execute(params![t.id as i64, to_json(t)])?;
        }
        Change::MessageNew(m) => {
            stmt(
                tx,
                &mut hot.ins_msg,
                "INSERT INTO messages (id, sender, recipient, kind, body, summary, ts, state) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                m.id as i64,
                m.from,
                m.to,
                m.kind.as_str(),
                m.body,
                m.summary,
                m.ts.millis() as i64,
                m.state.code()
            ])?;
        }
        Change::MessageState { id, state } => {
            stmt(
                tx,
                &mut hot.set_state,
                "UPDATE messages SET state = ?2 WHERE id = ?1 AND state < ?2",
            )?
            .execute(params![*id as i64, state.code()])?;
        }
        Change::Event(e) => {
            stmt(
                tx,
                &mut hot.ins_event,
                "INSERT INTO events (seq, ts, agent, role, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                e.seq as i64,
                e.ts.millis() as i64,
                e.agent_id,
                e.role_name,
                to_json(&e.event)
            ])?;
        }
        Change::Agent(_) | Change::AgentActivity(_) | Change::AgentRemoved(_) => {
            write_agent(tx, change)?
        }
        Change::Perm(_)
        | Change::Rule(_)
        | Change::Dedup { .. }
        | Change::Replies { .. }
        | Change::RepliesPruned { .. } => write_request(tx, change)?,
        Change::Config(_)
        | Change::Run(_)
        | Change::Memory(_)
        | Change::MemoryDeleted(_)
        | Change::Usage(_)
        | Change::Budget(_)
        | Change::HookRun(_)
        | Change::HookRunDone(_) => write_team_state(tx, change)?,
    }
    Ok(())
}

/// An agent's row written or removed (with its messages).
fn write_agent(tx: &Connection, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::Agent(a) | Change::AgentActivity(a) => {
            tx.prepare_cached("INSERT OR REPLACE INTO agents (name, data) VALUES (?1, ?2)")?
                .execute(params![a.info.name, to_json(a.as_ref())])?;
        }
        Change::AgentRemoved(name) => {
            tx.prepare_cached("DELETE FROM agents WHERE name = ?1")?
                .execute([name])?;
            // Its messages may hold the highest id issued: remember it before they
            // go, so ids are not handed out again after a restart.
            tx.prepare_cached(
                "INSERT INTO meta (key, value) \
                 SELECT 'max_message_id', coalesce(max(id), 0) FROM messages WHERE true \
                 ON CONFLICT(key) DO UPDATE SET \
                 value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            )?
            .execute([])?;
            tx.prepare_cached("DELETE FROM messages WHERE recipient = ?1")?
                .execute([name])?;
        }
        // Written by the others (see `write_change`).
        _ => {}
    }
    Ok(())
}

/// What requests leave behind: permissions, rules, the dedup and reply tables.
fn write_request(tx: &Connection, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::Perm(p) => {
            tx.prepare_cached("INSERT OR REPLACE INTO perms (id, data) VALUES (?1, ?2)")?
                .execute(params![p.id as i64, to_json(p)])?;
        }
        Change::Rule(r) => {
            tx.prepare_cached("INSERT INTO rules (data) VALUES (?1)")?
                .execute([to_json(r)])?;
        }
        Change::Dedup {
            sender,
            key,
            ids,
            recipients,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO dedup (sender, key, data) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![sender, key, to_json(&(ids, recipients))])?;
        }
        Change::Replies {
            first,
            last,
            entries,
        } => {
            // One row per commit: a row per request cost a third of the message
            // throughput, a row per identity a tenth. The state wrote the JSON;
            // the row names no identity, its entries do.
            tx.prepare_cached(
                "INSERT OR REPLACE INTO reply_batches (n, identity, last_n, data) \
                 VALUES (?1, '', ?2, ?3)",
            )?
            .execute(params![*first as i64, *last as i64, entries])?;
        }
        Change::RepliesPruned { rows } => {
            // By key: the state knows which rows hold only forgotten replies.
            let mut del = tx.prepare_cached("DELETE FROM reply_batches WHERE n = ?1")?;
            for key in rows {
                del.execute([*key as i64])?;
            }
        }
        // Written by the others (see `write_change`).
        _ => {}
    }
    Ok(())
}

/// The team's own state: its config and run, memory, usage, budgets, hook runs.
fn write_team_state(tx: &Connection, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::Config(c) => {
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('config', ?1)")?
                .execute([to_json(c)])?;
        }
        Change::Run(r) => {
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('run', ?1)")?
                .execute([to_json(r)])?;
        }
        Change::Memory(e) => {
            tx.prepare_cached("INSERT OR REPLACE INTO memory (key, data) VALUES (?1, ?2)")?
                .execute(params![e.key, to_json(e)])?;
        }
        Change::MemoryDeleted(key) => {
            tx.prepare_cached("DELETE FROM memory WHERE key = ?1")?
                .execute([key])?;
        }
        Change::Usage(u) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO usage (agent, model, data) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![u.agent, u.model, to_json(u)])?;
        }
        Change::Budget(b) => {
            tx.prepare_cached("INSERT OR REPLACE INTO budgets (scope, data) VALUES (?1, ?2)")?
                .execute(params![b.role.as_deref().unwrap_or(""), to_json(b)])?;
        }
        Change::HookRun(r) => {
            tx.prepare_cached("INSERT OR REPLACE INTO hook_runs (id, data) VALUES (?1, ?2)")?
                .execute(params![r.id as i64, to_json(r)])?;
        }
        Change::HookRunDone(id) => {
            tx.prepare_cached("DELETE FROM hook_runs WHERE id = ?1")?
                .execute([*id as i64])?;
        }
        // Written by the others (see `write_change`).
        _ => {}
    }
    Ok(())
}

/// The statement in `slot`, prepared (through the connection's cache) on first use.
fn stmt<'s, 'c>(
    tx: &'c Connection,
    slot: &'s mut Option<rusqlite::CachedStatement<'c>>,
    sql: &str,
) -> Result<&'s mut rusqlite::CachedStatement<'c>, rusqlite::Error> {
    match slot {
        Some(s) => Ok(s),
        None => Ok(slot.insert(tx.prepare_cached(sql)?)),
    }
}

/// How much of the WAL file a checkpoint keeps on disk. Commits that overwrite WAL space
/// already allocated wait less for their fsync than ones that grow the file (measured on ext4:
/// ~75 µs against ~108 µs), so the file is rewound rather than truncated, up to this size.
const WAL_KEEP_BYTES: i64 = 16 << 20;

/// Under sustained load a checkpoint comes once the WAL holds this much (~10 ms of the core's
/// time here, each one): a thousand agents at work wrote 30 MiB between two idle moments, which
/// the stop that came next had to copy back before the daemon could exit.
pub const WAL_BUSY_BYTES: u64 = 4 << 20;

/// A WAL holding at most this much since its last checkpoint is left as it is when the store
/// closes: every commit in it was synced, and the next open reads it back (as after a crash;
/// the next open takes ~15 ms longer with the whole 12 MiB here). More is copied into the
/// database first, as SQLite does at every close, so the WAL stays bounded over the many short
/// lives of a team's daemon (`run` after `run`). Skipping that copy saves a short run's end its fsyncs (about 0.7 ms here) and
/// a thousand agents' `down` its largest wait: the copy, its fsync, and the WAL file's removal
/// (50-90 ms on this machine's disk, whose removal discards the file's blocks). What counts is
/// what the WAL holds, not its file's size: a checkpoint rewinds the file without shrinking it.
const WAL_LEAVE_BYTES: u64 = 12 << 20;

const SCHEMA: &str = "
-- Tables keyed by text are WITHOUT ROWID (a new file's; older files keep theirs, read and
-- written the same way): a row replaced is one b-tree to change, not a table and its index,
-- so a commit writes fewer pages to the WAL (the usage and the run record change every turn).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
-- No index on recipient: each index costs every message twice (insert and read-ack), and
-- measured broadcast deliveries rose ~30 % without it. Inbox history is read by id range.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    summary TEXT,
    ts INTEGER NOT NULL,
    state INTEGER NOT NULL
);


CREATE TABLE IF NOT EXISTS perms (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rules (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup (
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (sender, key)
) WITHOUT ROWID;
-- Replies to requests that carried a request id, so a retry is answered, not applied again.
-- One row per commit holding every identity's replies (JSON, the state's `replies` module
-- says how; `identity` is '' — builds before it wrote one identity's row, named here): a row
-- per request cost a third of the message throughput, a row per identity a tenth. Rows are
-- keyed by their first n, so they land at the table's right edge; the state knows which
-- identities still remember a reply in each row and deletes it by key when none does. No
-- index on identity: its entries scattered over the index's leaf pages.
CREATE TABLE IF NOT EXISTS reply_batches (
    n INTEGER PRIMARY KEY,
    identity TEXT NOT NULL,
    -- The row's highest n (builds from before rows were pruned by key delete by it).
    last_n INTEGER NOT NULL,
    data TEXT NOT NULL
);
-- Databases written before rows were pruned by key have this index; nothing reads it now.
DROP INDEX IF EXISTS reply_batches_by_identity;
-- The team's memory: one row per key, the entry (key, value, version, writer, time) as JSON.
CREATE TABLE IF NOT EXISTS memory (key TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
-- Model usage: one row per agent and model (tokens, requests, picodollars) as JSON; never
-- compacted, so the figures and the budgets that count them survive a gc.
CREATE TABLE IF NOT EXISTS usage (
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (agent, model)
) WITHOUT ROWID;
-- Budgets set at run time and the level last reported, one row per role ('' for the team).
CREATE TABLE IF NOT EXISTS budgets (scope TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
-- Hook runs the daemon owes ([hooks]): recorded with their event (pending) and again before
-- the process starts (started), deleted once the outcome is applied; never compacted.
CREATE TABLE IF NOT EXISTS hook_runs (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    agent TEXT NOT NULL,
    role TEXT NOT NULL,
    data TEXT NOT NULL
);
";

/// One step of the schema, from version `from` to `from + 1`, run inside the transaction that
/// opens an older database. Its SQL is frozen: a later schema is a step of its own, never an
/// edit of an earlier one, so a file of any supported version arrives at the same schema.
struct Migration {
    /// The version the step starts from.
    from: i64,
    /// What it does, for errors and the tests.
    name: &'static str,
    /// The statements.
    sql: &'static str,
}

/// Every step from the oldest supported version to [`SCHEMA_VERSION`], in order; the file's
/// version goes up with each (tests: `upgrade.rs`, with a fixture written by each older schema).
const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    name: "v1 completed: the tables later builds of version 1 added, their dropped indexes gone",
    sql: MIGRATE_1_TO_2,
}];

/// Version 1 was written by every build before versions were counted; each build added the
/// tables it needed as it opened a file (`CREATE TABLE IF NOT EXISTS`), so a version 1 file
/// has the tables of the build that last opened it. This makes any of them version 2: every
/// table it lacks (as the last build of version 1 made it; the ones it has stay as they are,
/// rowids and all, read and written the same way), without the
/// indexes builds stopped making (each cost every message a second b-tree write) and the
/// per-request reply table no build has read since reply rows were batched.
const MIGRATE_1_TO_2: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    summary TEXT,
    ts INTEGER NOT NULL,
    state INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS perms (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rules (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    agent TEXT NOT NULL,
    role TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dedup (
    sender TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (sender, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reply_batches (
    n INTEGER PRIMARY KEY,
    identity TEXT NOT NULL,
    last_n INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memory (key TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (agent, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budgets (scope TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hook_runs (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
DROP INDEX IF EXISTS messages_by_recipient;
DROP INDEX IF EXISTS messages_unread;
DROP INDEX IF EXISTS reply_batches_by_identity;
DROP TABLE IF EXISTS replies;
";

/// The schema version of the database `conn` reads: the `schema` row of `meta`; `None` for a
/// database with no tables at all (a file left empty). A `meta` without the row is version 1
/// (every build wrote it, so none is expected).
fn stored_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    if !has_meta_table(conn)? {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        return Ok(if tables == 0 { None } else { Some(1) });
    }
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(Some(v.and_then(|v| v.trim().parse().ok()).unwrap_or(1)))
}

/// Refuses a database of a newer schema before the store touches it: the file and its WAL
/// stay as they are, byte for byte, and nothing is made beside them.
fn refuse_newer(path: &Path) -> Result<(), StoreError> {
    if !wal_path(path).exists() {
        return refuse_newer_file(path);
    }
    // With its WAL: read by a connection that may not write (`query_only`), never copies the
    // WAL in at its close, and keeps the WAL's index in the heap (no `-shm` file). Read-write,
    // not read-only: a read-only connection cannot hold the exclusive lock that takes.
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    match stored_version(&conn)? {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::TooNew { found }),
        _ => Ok(()),
    }
}

/// Refuses a database of a newer schema by its file alone (`immutable`: no lock taken, no
/// WAL read or made): for a file that has no WAL, whose content is then the file's.
fn refuse_newer_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    let conn = Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    match stored_version(&conn)? {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::TooNew { found }),
        _ => Ok(()),
    }
}

/// Brings the database of the open transaction `tx` to [`SCHEMA_VERSION`]: each step of
/// [`MIGRATIONS`] from its version on, then the version row; a newer version is refused
/// (nothing written: the caller drops the transaction). A database with no tables gets the
/// whole schema.
fn migrate(tx: &Connection) -> Result<(), StoreError> {
    let found = match stored_version(tx)? {
        Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew { found: v }),
        Some(v) if v == SCHEMA_VERSION => return Ok(()),
        Some(v) => v,
        None => {
            tx.execute_batch(SCHEMA)?;
            SCHEMA_VERSION
        }
    };
    for step in MIGRATIONS.iter().filter(|m| m.from >= found) {
        tx.execute_batch(step.sql)
            .map_err(|source| StoreError::Migration {
                from: step.from,
                name: step.name,
                source,
            })?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1)",
        [SCHEMA_VERSION.to_string()],
    )?;
    Ok(())
}

/// A row of the `dedup` table: a sender, its message key, and the ids and recipients it made.
type DedupRow = (String, String, Vec<u64>, Vec<String>);

impl Store {
    /// Opens (creating if needed) the database of `team` at `path`.
    pub fn open(path: &Path, team: &str) -> Result<Self, StoreError> {
        let created = !path.exists();
        if created {
            create_aside(path)?;
        } else {
            refuse_newer(path)?;
            preallocate_wal(path, false)?;
        }
        let mut store = Self::connect(path, team, created)?;
        store.dir_owed = created;
        Ok(store)
    }

    /// Opens the database at `path` (`created`: just moved in from the image).
    fn connect(path: &Path, team: &str, created: bool) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every statement the store runs again and again (rusqlite keeps 16 by
        // default, fewer than the commits alone use; an evicted one is parsed again).
        conn.set_prepared_statement_cache_capacity(64);
        // The daemon is the only user while it runs: keep the lock instead of taking and
        // releasing it around every transaction (saves several fcntl calls per commit). Set
        // before the first access, so the WAL's index lives in the heap (no `-shm` file).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // Small pages: a commit writes whole pages to the WAL, and a message's commit touches a
        // few tables; 1 KiB pages cut the bytes each fsync waits for (measured: p50 latency
        // about 20 % lower than with 4 KiB, same throughput). Only takes effect on a new file.
        conn.pragma_update(None, "page_size", "1024")?;
        // WAL: readers never block the writer; FULL: every commit is fsynced before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.pragma_update(None, "cache_size", "-4096")?;
        // Checkpoints run when the daemon is idle (see `checkpoint`), not inside a commit.
        conn.pragma_update(None, "wal_autocheckpoint", "0")?;
        // A checkpoint rewinds the WAL instead of truncating it (see `checkpoint`); this bounds
        // what stays on disk after a burst.
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
        // Set after `wal_autocheckpoint`, which would replace it.
        let wal_frames = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let frames = wal_frames.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            frames.store(
                u32::try_from(pages).unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            Ok(())
        }))?;
        let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let mut store = Store {
            conn,
            team: team.to_string(),
            relaxed: false,
            next_task_id: 0,
            commits_since_checkpoint: 0,
            wal_frames,
            page_size,
            owed: false,
            dir_owed: false,
        };
        // An older file's migration and its meta rows in one transaction: one fsync, not one
        // per table (a new team's daemon started ~15 fsyncs later without it). A file just
        // made from the image has the schema; its team's row is written with no sync at all:
        // nothing was acknowledged yet, the first synced commit covers it, and an open after a
        // crash before then writes it again. SQLite would sync a new WAL's header on its own
        // first (so that an older log's frames cannot count after a crash); this WAL is new,
        // zeros, so the first synced commit syncs the file once instead.
        if created {
            store.conn.pragma_update(None, "synchronous", "OFF")?;
            let tx = store.conn.transaction()?;
            check_meta(&tx, &store.team)?;
            tx.commit()?;
            store.conn.pragma_update(None, "synchronous", "FULL")?;
            store.owed = true;
        } else {
            // Whose it is first: another team's file is not migrated. The migration and the
            // team's row in one transaction: one fsync, and nothing of either if one fails.
            let tx = store.conn.transaction()?;
            if let Some(found) = stored_team(&tx)?.filter(|t| *t != store.team) {
                return Err(StoreError::WrongTeam {
                    found,
                    expected: store.team.clone(),
                });
            }
            migrate(&tx)?;
            check_meta(&tx, &store.team)?;
            tx.commit()?;
        }
        store.next_task_id = store
            .meta("next_task_id")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(store)
    }

    /// Opens an existing database for reading only (the CLI, when no daemon runs).
    pub fn open_read_only(path: &Path, team: &str) -> Result<Self, StoreError> {
        // A newer file with no WAL is refused before SQLite opens it for reading, which would
        // make a WAL and its index beside it.
        if !wal_path(path).exists() {
            refuse_newer_file(path)?;
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // An older version is read as it is (its daemon migrates it); a newer one may mean
        // anything.
        if let Some(found) = stored_version(&conn)?.filter(|v| *v > SCHEMA_VERSION) {
            return Err(StoreError::TooNew { found });
        }
        Ok(Store {
            conn,
            team: team.to_string(),
            relaxed: false,
            next_task_id: 0,
            commits_since_checkpoint: 0,
            wal_frames: Default::default(),
            page_size: 1024,
            owed: false,
            dir_owed: false,
        })
    }

    /// The schema version of the database as stored: [`SCHEMA_VERSION`] once opened for
    /// writing; an older one when a reader opened a file no daemon has migrated yet.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(stored_version(&self.conn)?.unwrap_or(SCHEMA_VERSION))
    }

    /// How long a statement waits for another connection's lock before it fails busy (5 s
    /// from [`Store::open_read_only`]).
    pub fn set_busy_timeout(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(wait)?)
    }

    /// Reads everything the in-memory state needs after a restart.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot {
            tasks: self.load_json("tasks", "SELECT data FROM tasks ORDER BY id")?,
            ..Default::default()
        };
        snap.max_task_id = self.max("SELECT max(id) FROM tasks")?;
        if let Some(v) = self
            .meta("next_task_id")?
            .and_then(|v| v.parse::<u64>().ok())
        {
            snap.max_task_id = snap.max_task_id.max(v.saturating_sub(1));
        }
        snap.agents =
            self.load_json::<AgentRecord>("agents", "SELECT data FROM agents ORDER BY name")?;
        snap.perms = self.load_json("perms", "SELECT data FROM perms ORDER BY id")?;
        snap.rules = self.load_json("rules", "SELECT data FROM rules ORDER BY id")?;
        snap.max_message_id = self.max("SELECT max(id) FROM messages")?;
        if let Some(v) = self
            .meta("max_message_id")?
            .and_then(|v| v.parse::<u64>().ok())
        {
            snap.max_message_id = snap.max_message_id.max(v);
        }
        snap.last_seq = self.max("SELECT max(seq) FROM events")?;
        if let Some(v) = self.meta("last_seq")?.and_then(|v| v.parse::<u64>().ok()) {
            snap.last_seq = snap.last_seq.max(v);
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, sender, recipient, kind, body, summary, ts, state FROM messages \
             WHERE state < 2 ORDER BY id",
        )?;
        snap.unread = stmt
            .query_map([], row_to_message)?
            .collect::<Result<Vec<_>, _>>()?;
        // A version 1 database read as it is (the CLI reading a stopped team whose daemon has
        // not migrated it yet) may lack any table later builds added: nothing of it was kept.
        if self.has_table("dedup")? {
            snap.dedup = self.load_dedup()?;
        }
        if self.has_table("reply_batches")? {
            snap.replies = self.load_replies()?;
        }
        // A database written before memory existed has no table for it; opened read-only (the
        // CLI reading a stopped team) it cannot get one, and its memory is simply empty.
        if self.has_table("memory")? {
            snap.memory = self.load_json("memory", "SELECT data FROM memory ORDER BY key")?;
        }
        // Older databases have no usage or budget tables: nothing was counted yet.
        if self.has_table("usage")? {
            snap.usage = self.load_json("usage", "SELECT data FROM usage ORDER BY agent, model")?;
        }
        if self.has_table("budgets")? {
            snap.budgets = self.load_json("budgets", "SELECT data FROM budgets ORDER BY scope")?;
        }
        if self.has_table("hook_runs")? {
            snap.hook_runs =
                self.load_json("hook_runs", "SELECT data FROM hook_runs ORDER BY id")?;
        }
        if let Some(cfg) = self.meta("config")? {
            snap.config =
                Some(
                    serde_json::from_str(&cfg).map_err(|source| StoreError::Corrupt {
                        table: "meta",
                        source,
                    })?,
                );
        }
        if let Some(run) = self.meta("run")? {
            snap.run =
                serde_json::from_str::<RunRecord>(&run).map_err(|source| StoreError::Corrupt {
                    table: "meta",
                    source,
                })?;
        }
        Ok(snap)
    }

    /// The `dedup` table: each sender's message keys and the ids and recipients they made.
    fn load_dedup(&self) -> Result<Vec<DedupRow>, StoreError> {
        let mut dedup = Vec::new();
        let mut stmt = self.conn.prepare("SELECT sender, key, data FROM dedup")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (sender, key, data) = row?;
            let (ids, recipients): (Vec<u64>, Vec<String>) =
                serde_json::from_str(&data).map_err(|source| StoreError::Corrupt {
                    table: "dedup",
                    source,
                })?;
            dedup.push((sender, key, ids, recipients));
        }
        Ok(dedup)
    }

    /// The remembered replies of the `reply_batches` table, a task's reply read back from the
    /// event that stores it.
    fn load_replies(&self) -> Result<Vec<StoredReply>, StoreError> {
        let mut replies = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT n, identity, data FROM reply_batches ORDER BY n")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (key, identity, data) = row?;
            let entries = agent_team_state::replies::decode_row(key as u64, &identity, &data)
                .map_err(|source| StoreError::Corrupt {
                    table: "reply_batches",
                    source,
                })?;
            for (identity, rid, n, outcome) in entries {
                let outcome = match task_event_ref(&outcome) {
                    Some((seq, maybe)) => self.task_reply_from_event(seq, maybe)?,
                    None => outcome.to_string(),
                };
                replies.push(StoredReply {
                    identity,
                    row: key as u64,
                    rid,
                    n,
                    outcome,
                });
            }
        }
        Ok(replies)
    }

    /// The remembered reply `{"Ok": task or maybe_task}` whose task is stored in event `seq`
    /// (see `ReplyOutcome::TaskEvent`), as JSON. An event that is no longer stored gives an
    /// `internal` error for that request id rather than applying its retry a second time.
    fn task_reply_from_event(&self, seq: u64, maybe: bool) -> Result<String, StoreError> {
        let data: Option<String> = self
            .conn
            .prepare_cached("SELECT data FROM events WHERE seq = ?1")?
            .query_row([seq as i64], |r| r.get(0))
            .optional()?;
        let task = match data {
            Some(d) => match serde_json::from_str::<Event>(&d) {
                Ok(Event::TaskUpdated { task }) => Some(task),
                Ok(_) => None,
                Err(source) => {
                    return Err(StoreError::Corrupt {
                        table: "events",
                        source,
                    });
                }
            },
            None => None,
        };
        let outcome: Result<Reply, ErrorBody> = match task {
            Some(task) if maybe => Ok(Reply::MaybeTask { task: Some(task) }),
            Some(task) => Ok(Reply::Task { task }),
            None => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!(
                    "the reply to this request id was in event {seq}, which is no longer stored"
                ),
            )),
        };
        Ok(to_json(&outcome))
    }

    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn max(&self, sql: &str) -> Result<u64, StoreError> {
        let v: Option<i64> = self.conn.query_row(sql, [], |r| r.get(0))?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    fn load_json<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        sql: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row?;
            out.push(
                serde_json::from_str(&text)
                    .map_err(|source| StoreError::Corrupt { table, source })?,
            );
        }
        Ok(out)
    }

    /// Writes a batch of changes in one transaction and returns once it is durable.
    ///
    /// A batch none of whose changes [needs a sync](Change::needs_sync) (messages moved to
    /// `delivered` or `read`, an agent's activity) is committed without its own fsync: it
    /// survives a crash of the process (the WAL is in the OS cache) and the next durable commit
    /// syncs it; a power cut could at worst deliver such a message again.
    pub fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let unsynced = changes.iter().all(|c| !c.needs_sync());
        self.commit_as(changes, unsynced)
    }

    /// Commits `changes` without waiting for the disk, whatever they are: for a batch that
    /// answers nobody (a stopping team's agents going down). It survives a crash of the
    /// process; the next synced commit, or [`Store::settle`], puts it on disk.
    pub fn commit_unsynced(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.commit_as(changes, true)?;
        self.owed |= changes.iter().any(Change::needs_sync);
        Ok(())
    }

    /// Puts on disk what [`Store::commit_unsynced`] left in the operating system's cache
    /// (one fsync of the WAL, and of a new database's directory when no synced commit did it),
    /// if anything.
    pub fn settle(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.owed) {
            return Ok(());
        }
        let Some(db) = self.conn.path().map(std::path::PathBuf::from) else {
            return Ok(());
        };
        std::fs::File::open(wal_path(&db))
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::Io {
                path: db.clone(),
                source,
            })?;
        if std::mem::take(&mut self.dir_owed) {
            sync_dir_of(&db)?;
        }
        Ok(())
    }

    fn commit_as(&mut self, changes: &[Change], unsynced: bool) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        if unsynced != self.relaxed {
            // Cached like every statement of a commit: `pragma_update` and `transaction()`
            // parse their SQL anew each time (~2 % of a team run's CPU in profiles).
            self.conn
                .prepare_cached(if unsynced {
                    "PRAGMA synchronous = NORMAL"
                } else {
                    "PRAGMA synchronous = FULL"
                })?
                .execute([])?;
            self.relaxed = unsynced;
        }
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let committed = self.write(changes).and_then(|next| {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(next)
        });
        let next_task_id = match committed {
            Ok(next) => next,
            Err(e) => {
                // Nothing of the batch stays (SQLite may have rolled it back itself already).
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                return Err(e);
            }
        };
        // Only what is stored moves the cached id on: a failed commit (a full disk) leaves it.
        if let Some(n) = next_task_id {
            self.next_task_id = n;
        }
        self.commits_since_checkpoint += 1;
        // A synced commit syncs the whole WAL, what went before it too, and SQLite syncs a new
        // WAL's directory with its first sync.
        self.owed &= unsynced;
        self.dir_owed &= unsynced;
        Ok(())
    }

    /// Writes `changes` inside the transaction [`Store::commit`] opened; returns the next
    /// task id to remember when the batch stored a task beyond it.
    fn write(&mut self, changes: &[Change]) -> Result<Option<u64>, StoreError> {
        let tx = &self.conn;
        let mut next_task_id = None;
        {
            let mut hot = HotStatements::default();
            let mut max_task = 0u64;
            for change in changes {
                if let Change::Task(t) = change {
                    max_task = max_task.max(t.id);
                }
                write_change(tx, &mut hot, change)?;
            }
            if max_task >= self.next_task_id {
                next_task_id = Some(max_task + 1);
                // Kept beside the rows so ids are never reused even if rows were ever removed.
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('next_task_id', ?1) \
                     ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(?1 AS INTEGER))",
                )?
                .execute([(max_task + 1).to_string()])?;
            }
        }
        Ok(next_task_id)
    }

    /// Copies the WAL back into the database when worthwhile: `idle` says nothing is waiting,
    /// so the work delays nobody; under sustained load it still runs once the WAL holds
    /// [`WAL_BUSY_BYTES`] (or every few thousand commits) to bound the WAL's size. It rewinds the WAL
    /// (`RESTART`) so the next commits overwrite it in place; `journal_size_limit` trims what
    /// is left beyond `WAL_KEEP_BYTES`.
    pub fn checkpoint(&mut self, idle: bool) -> Result<(), StoreError> {
        let due = (idle && self.commits_since_checkpoint >= 64)
            || self.commits_since_checkpoint >= 4096
            || self.wal_bytes_to_copy() >= WAL_BUSY_BYTES;
        if due {
            self.checkpoint_now("RESTART")?;
            self.commits_since_checkpoint = 0;
        }
        Ok(())
    }

    /// Runs a checkpoint of `mode` (`RESTART`, `TRUNCATE`); when it copied the whole WAL back,
    /// nothing is left for the close to copy.
    fn checkpoint_now(&mut self, mode: &str) -> Result<(), StoreError> {
        let busy: i64 =
            self.conn
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))?;
        if busy == 0 {
            self.wal_frames
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The bytes of the WAL's frames not yet copied into the database.
    fn wal_bytes_to_copy(&self) -> u64 {
        u64::from(self.wal_frames.load(std::sync::atomic::Ordering::Relaxed))
            * (u64::from(self.page_size) + 24)
    }

    /// Up to `limit` of an agent's messages with an id above `after`, oldest first.
    pub fn inbox(
        &self,
        recipient: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, sender, recipient, kind, body, summary, ts, state FROM messages \
             WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![recipient, after as i64, limit as i64],
            row_to_message,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Events with a sequence number above `since`, oldest first.
    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, ts, agent, role, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, ts, agent, role, data) = row?;
            let event: Event =
                serde_json::from_str(&data).map_err(|source| StoreError::Corrupt {
                    table: "events",
                    source,
                })?;
            out.push(Envelope {
                seq: seq as u64,
                ts: Timestamp(ts as u64),
                team_id: self.team.clone(),
                agent_id: agent,
                role_name: role,
                event,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// Removes what is done and older than `before`: read messages, the finished tasks named in
    /// `tasks` (the caller knows which ones nothing open depends on), and events; the team's
    /// memory is never compacted (it is kept until deleted, whatever its age). The highest
    /// message id and event sequence number are remembered first, so none is handed out again.
    /// With `vacuum` the file is rewritten to give the space back to the system (slow on a big
    /// file, and it needs free space as large as the file); without, SQLite reuses the freed
    /// pages and the file stops growing.
    pub fn compact(
        &mut self,
        path: &Path,
        before: Timestamp,
        tasks: &[u64],
        vacuum: bool,
    ) -> Result<Compacted, StoreError> {
        let mut out = Compacted {
            bytes_before: db_bytes(path),
            ..Default::default()
        };
        let tx = self.conn.transaction()?;
        for (key, sql) in [
            (
                "max_message_id",
                "SELECT coalesce(max(id), 0) FROM messages",
            ),
            ("last_seq", "SELECT coalesce(max(seq), 0) FROM events"),
        ] {
            tx.execute(
                &format!(
                    "INSERT INTO meta (key, value) SELECT '{key}', ({sql}) WHERE true \
                     ON CONFLICT(key) DO UPDATE SET \
                     value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))"
                ),
                [],
            )?;
        }
        let read = DeliveryState::Read.code();
        out.messages = tx.execute(
            "DELETE FROM messages WHERE state >= ?1 AND ts < ?2",
            params![read, before.0 as i64],
        )? as u64;
        // A remembered task reply points at its TASK_UPDATED event: those events stay (and so
        // does everything after the oldest of them), so a retry is still answered after a gc.
        let keep_from = {
            let mut stmt = tx.prepare("SELECT n, data FROM reply_batches")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let mut oldest = u64::MAX;
            for row in rows {
                let (key, data) = row?;
                // A row that cannot be read keeps every event (the load would refuse it too).
                let Ok(entries) = agent_team_state::replies::decode_row(key as u64, "", &data)
                else {
                    oldest = 0;
                    continue;
                };
                for (_, _, _, outcome) in &entries {
                    if let Some((seq, _)) = task_event_ref(outcome) {
                        oldest = oldest.min(seq);
                    }
                }
            }
            oldest
        };
        out.events = tx.execute(
            "DELETE FROM events WHERE ts < ?1 AND seq < ?2",
            params![
                before.0 as i64,
                i64::try_from(keep_from).unwrap_or(i64::MAX)
            ],
        )? as u64;
        {
            let mut del = tx.prepare("DELETE FROM tasks WHERE id = ?1")?;
            for id in tasks {
                out.tasks += del.execute([*id as i64])? as u64;
            }
        }
        tx.commit()?;
        if vacuum {
            self.checkpoint_now("TRUNCATE")?;
            self.conn.execute_batch("VACUUM")?;
            self.checkpoint_now("TRUNCATE")?;
        }
        out.bytes_after = db_bytes(path);
        Ok(out)
    }
}

/// Bytes of a database and its WAL and shared-memory files.
pub fn db_bytes(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(std::path::PathBuf::from(p)).map_or(0, |m| m.len())
        })
        .sum()
}

/// The `[seq, maybe]` of a stored reference `{"TaskEvent":[seq,maybe]}` to a task reply.
fn task_event_ref(outcome: &serde_json::Value) -> Option<(u64, bool)> {
    let r = outcome.as_object()?.get("TaskEvent")?.as_array()?;
    Some((r.first()?.as_u64()?, r.get(1)?.as_bool()?))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing our own plain data types cannot fail (no maps with non-string keys, no
    // custom serializers that error); an empty object keeps the row readable if it ever did.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string())
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let kind: String = r.get(3)?;
    let state: i64 = r.get(7)?;
    Ok(Message {
        id: r.get::<_, i64>(0)? as u64,
        from: r.get(1)?,
        to: r.get(2)?,
        kind: serde_json::from_value(serde_json::Value::String(kind)).unwrap_or_default(),
        body: r.get(4)?,
        summary: r.get(5)?,
        ts: Timestamp(r.get::<_, i64>(6)? as u64),
        state: DeliveryState::from_code(state).unwrap_or(DeliveryState::Queued),
    })
}

/// A new database as [`SCHEMA`] makes it: its tables, the schema version's row in `meta`,
/// 1 KiB pages and the WAL in its header. Every new store starts as a copy of it, not by
/// running the schema's SQL (~0.7 ms of each new team's start). Made by `build_image`; the
/// unit test `the_image_is_what_the_schema_makes` checks it, and writes it anew when run with
/// `AGENT_TEAM_WRITE_STORE_IMAGE=1` after the schema changed.
const IMAGE: &[u8] = include_bytes!("image.sqlite");

/// Makes a new database at `path` beside it and moves it in whole: [`IMAGE`] written to a
/// side file and synced, then renamed in. A crash before the rename leaves only the side file,
/// which the next creation replaces; SQLite's own way (a rollback journal to switch a new file
/// to WAL, then the schema through the WAL) took seven fsyncs and a journal made and deleted.
///
/// The directory is not synced for the rename: the new name must be on disk before anything
/// stored in the new database is acknowledged, not before. SQLite syncs the directory itself
/// at its first sync of a WAL it opened (`UNIXFILE_DIRSYNC`, seen under strace as the first
/// commit's second fsync), and [`Store::settle`] syncs it when no synced commit came first
/// ([`Store::dir_owed`](Store)). A crash before then leaves the side file or a new empty team,
/// made again at the next open. Only when an older database's WAL was removed is the directory
/// synced here, before the rename, so that the removal is on disk before the new name: a new
/// database beside the old WAL would have its frames replayed into it.
fn create_aside(path: &Path) -> Result<(), StoreError> {
    use std::io::Write as _;
    let mut aside = path.as_os_str().to_owned();
    aside.push(".new");
    let aside = PathBuf::from(aside);
    let io = |source: std::io::Error| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(&aside) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let image = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&aside)
        .and_then(|mut file| file.write_all(IMAGE).map(|()| file))
        .map_err(io)?;
    // Its pages go to disk while the WAL is made; the sync below then waits for less.
    start_writeback(&image, 0, IMAGE.len() as u64);
    if preallocate_wal(path, true)? {
        sync_dir_of(path)?;
    }
    image.sync_all().map_err(io)?;
    drop(image);
    std::fs::rename(&aside, path).map_err(io)
}

/// Syncs the directory holding the database at `path` (see [`create_aside`]).
fn sync_dir_of(path: &Path) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// How much of a WAL file is there, written with zeros, before SQLite uses it. A commit that
/// overwrites space the file has is synced without its inode; one that grows the file syncs
/// both (measured on ext4: ~0.10 ms against ~0.16 ms a commit). SQLite reads zeros where a
/// frame should start as the end of the log, so they hold nothing. A short run's WAL fits
/// (the bench's team run writes ~200 KB).
const WAL_PREALLOC_BYTES: u64 = 256 << 10;

/// Where SQLite keeps the WAL of the database at `db`: beside it, `-wal` appended.
fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Brings the WAL of the database at `path` up to [`WAL_PREALLOC_BYTES`] with zeros after
/// whatever it holds; `fresh`: a new database's, so any WAL already there is an older
/// database's and goes first. Called before SQLite opens the file. Not synced: SQLite's first
/// sync of the WAL (its header's, before any commit) makes the file durable. The zeros are
/// only a saving: a disk too full for them leaves the WAL as it is and the store opens.
/// Returns whether an older WAL was removed.
fn preallocate_wal(path: &Path, fresh: bool) -> Result<bool, StoreError> {
    use std::os::unix::fs::FileExt;
    let wal = wal_path(path);
    let io = |source: std::io::Error| StoreError::Io {
        path: wal.clone(),
        source,
    };
    let removed = fresh
        && match std::fs::remove_file(&wal) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(e)),
        };
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&wal)
    else {
        return Ok(removed);
    };
    if let Ok(len) = file.metadata().map(|m| m.len())
        && len < WAL_PREALLOC_BYTES
    {
        let zeros = vec![0u8; (WAL_PREALLOC_BYTES - len) as usize];
        if file.write_all_at(&zeros, len).is_ok() {
            // Their write to disk starts now, in the background: SQLite's first sync of the
            // WAL (at the team's first commit) then waits for little more than its own frames
            // (measured on ext4: that fsync ~0.39 -> ~0.21 ms, 2 ms after the zeros).
            start_writeback(&file, len, WAL_PREALLOC_BYTES - len);
        }
    }
    Ok(removed)
}

/// Starts writing `file`'s dirty pages in `len` bytes from `offset` to disk without waiting
/// for them (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`): nothing is durable by it, a later
/// fsync only finds less to do. A failure (another kernel, a file system without it) is
/// ignored. Linux only; elsewhere nothing.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the descriptor is `file`'s, open for this call's whole length; the call
        // reads no memory of this process and changes nothing but the pages' writeback.
        #[allow(unsafe_code)]
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Whether the database has its `meta` table (not one with no tables at all).
fn has_meta_table(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The team a database belongs to: its `team` row, if it has one (none in a database with
/// no tables yet).
fn stored_team(conn: &Connection) -> Result<Option<String>, StoreError> {
    if !has_meta_table(conn)? {
        return Ok(None);
    }
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'team'", [], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Checks the team a database belongs to, recording it when it is missing (a new database's).
fn check_meta(conn: &Connection, team: &str) -> Result<(), StoreError> {
    match stored_team(conn)? {
        Some(t) if t != team => Err(StoreError::WrongTeam {
            found: t,
            expected: team.to_string(),
        }),
        Some(_) => Ok(()),
        None => {
            conn.execute("INSERT INTO meta (key, value) VALUES ('team', ?1)", [team])?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_team_state::{Actor, TeamState, replies::KEEP_PER_IDENTITY, tasks::NewTask};

    /// Makes [`IMAGE`] at `path` from [`SCHEMA`]: written with no journal and no sync, then
    /// switched to WAL (stored in the header: every later open uses the WAL).
    fn build_image(path: &Path) {
        let conn = Connection::open(path).unwrap();
        // See `open` for the page size; it takes effect before the first write only.
        conn.pragma_update(None, "page_size", "1024").unwrap();
        conn.pragma_update(None, "journal_mode", "OFF").unwrap();
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute_batch(SCHEMA).unwrap();
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .unwrap();
        tx.commit().unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    }

    /// What a database holds that a new store relies on: its settings, its schema, its rows.
    fn describe_database(path: &Path) -> Vec<String> {
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut out = Vec::new();
        for pragma in [
            "page_size",
            "journal_mode",
            "encoding",
            "auto_vacuum",
            "user_version",
            "application_id",
            "integrity_check",
        ] {
            let v: String = conn
                .query_row(&format!("PRAGMA {pragma}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| format!("{v:?}"))
                .unwrap();
            out.push(format!("{pragma} = {v}"));
        }
        for sql in [
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
            "SELECT 'meta', key, value FROM meta ORDER BY key",
        ] {
            let mut stmt = conn.prepare(sql).unwrap();
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..columns)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            out.extend(rows.map(|r| r.unwrap().join(" ")));
        }
        out
    }

    #[test]
    fn the_image_is_what_the_schema_makes() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made.db");
        build_image(&made);
        let image_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/image.sqlite");
        if std::env::var_os("AGENT_TEAM_WRITE_STORE_IMAGE").is_some() {
            std::fs::copy(&made, &image_file).unwrap();
            return;
        }
        let stored = dir.path().join("stored.db");
        std::fs::write(&stored, IMAGE).unwrap();
        let want = describe_database(&made);
        assert!(
            want.contains(&"journal_mode = Text(\"wal\")".to_string()),
            "{want:?}"
        );
        assert!(
            want.contains(&"page_size = Integer(1024)".to_string()),
            "{want:?}"
        );
        assert_eq!(
            describe_database(&stored),
            want,
            "{} is not what the schema makes: write it anew with \
             AGENT_TEAM_WRITE_STORE_IMAGE=1 cargo test -p agent-team-store the_image",
            image_file.display()
        );
    }

    /// A checkpoint rewinds the WAL without shrinking its file: what decides the close is what
    /// the WAL holds since, not the file's size (a file grown by an earlier burst had every
    /// later close copy the WAL back and remove it, its fsync and removal `down`'s longest wait).
    #[test]
    fn a_large_wal_file_holding_little_since_its_checkpoint_is_left_at_the_close() {
        let (dir, db, mut store, mut s) = new_store();
        let wal = dir.path().join("s.db-wal");
        // A burst past what a close leaves, copied back by a checkpoint: the file keeps its size.
        commit_tasks(&mut store, &mut s, 2600, &"x".repeat(4000), false);
        store.commits_since_checkpoint = 64;
        store.checkpoint(true).unwrap();
        let len = std::fs::metadata(&wal).unwrap().len();
        assert!(len > WAL_LEAVE_BYTES, "{len}");
        assert_eq!(store.wal_bytes_to_copy(), 0);
        commit_tasks(&mut store, &mut s, 3, "small", false);
        assert!(store.wal_bytes_to_copy() > 0);
        // The commit after a checkpoint trims the file to `journal_size_limit`, no further.
        let len = std::fs::metadata(&wal).unwrap().len();
        assert!(len > WAL_LEAVE_BYTES, "{len}");
        drop(store);
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            len,
            "the WAL was copied back and removed at the close"
        );
        let store = Store::open(&db, "t").unwrap();
        assert_eq!(store.load().unwrap().tasks.len(), 2603);
    }

    /// Under load (nobody idle) a checkpoint still comes once the WAL holds `WAL_BUSY_BYTES`,
    /// and not before: a stop that comes after a long busy stretch finds little to copy back.
    #[test]
    fn a_busy_store_copies_its_wal_back_once_it_holds_enough() {
        let (_dir, _db, mut store, mut s) = new_store();
        let big = "x".repeat(4000);
        commit_tasks(&mut store, &mut s, 200, &big, false);
        let held = store.wal_bytes_to_copy();
        assert!(held > 0 && held < WAL_BUSY_BYTES, "{held}");
        store.checkpoint(false).unwrap();
        assert_eq!(
            store.wal_bytes_to_copy(),
            held,
            "copied back before it held enough"
        );
        commit_tasks(&mut store, &mut s, 1000, &big, false);
        assert!(store.wal_bytes_to_copy() >= WAL_BUSY_BYTES);
        store.checkpoint(false).unwrap();
        assert_eq!(store.wal_bytes_to_copy(), 0, "not copied back under load");
    }

    /// Adds `n` tasks described by `body` and commits them: a commit each (`each`) or one for
    /// all ([`add_tasks`]: short ones, a commit each).
    fn commit_tasks(store: &mut Store, s: &mut TeamState, n: u64, body: &str, each: bool) {
        for i in 0..n {
            s.task_add(
                &Actor::Operator,
                NewTask {
                    title: format!("task {i}"),
                    description: body.to_string(),
                    ..Default::default()
                },
                Timestamp(i),
            )
            .unwrap();
            if each {
                store.commit(&s.take_changes()).unwrap();
            }
        }
        if !each {
            store.commit(&s.take_changes()).unwrap();
        }
    }

    /// The commits in a WAL file: frames whose header's second word (the database's size
    /// after the commit) is not zero (SQLite's WAL format: a 32-byte file header, then frames
    /// of a 24-byte header and a page).
    fn wal_commits(wal: &Path, page_size: usize) -> usize {
        let bytes = std::fs::read(wal).unwrap_or_default();
        bytes
            .get(32..)
            .unwrap_or_default()
            .chunks(24 + page_size)
            .filter(|f| f.len() >= 8 && f[4..8] != [0, 0, 0, 0])
            .count()
    }

    /// A new store of team `t` in a temporary directory (kept while the first value lives),
    /// its path, and the state loaded from it.
    fn new_store() -> (tempfile::TempDir, PathBuf, Store, TeamState) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let store = Store::open(&db, "t").unwrap();
        let s = TeamState::restore("t", store.load().unwrap());
        (dir, db, store, s)
    }

    /// The connection's `synchronous` setting now (1 NORMAL, 2 FULL).
    fn synchronous(store: &Store) -> i64 {
        store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    /// Adds a worker `name` to the team, as the operator does.
    fn add_worker(s: &mut TeamState, name: &str, now: Timestamp) {
        s.add_agent(
            &Actor::Operator,
            AgentRecord {
                info: AgentInfo::new(name, "worker", "external", 1, now),
                secret: "s".into(),
                spec: serde_json::Value::Null,
            },
            now,
        )
        .unwrap();
    }

    #[test]
    fn an_agents_activity_is_committed_without_a_sync_and_stored_as_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let mut store = Store::open(&db, "t").unwrap();
        let now = Timestamp(5);
        let mut s = TeamState::new("t");
        add_worker(&mut s, "w1", now);
        store.commit(&s.take_changes()).unwrap();
        assert_eq!(synchronous(&store), 2, "a new agent is synced (FULL)");
        s.mark_connected("w1");
        let activity = s.take_changes();
        assert!(matches!(activity.as_slice(), [Change::AgentActivity(_)]));
        store.commit(&activity).unwrap();
        assert_eq!(
            synchronous(&store),
            1,
            "activity alone is not synced (NORMAL)"
        );
        let stored = store.load().unwrap().agents;
        assert!(stored[0].info.connected, "stored like the agent's record");
        s.set_agent_status("w1", AgentStatus::Stopped, None, now);
        store.commit(&s.take_changes()).unwrap();
        assert_eq!(
            synchronous(&store),
            2,
            "the next durable change is synced again"
        );
    }

    #[test]
    fn a_commit_left_unsynced_is_owed_until_a_synced_commit_or_a_settle() {
        let (_dir, db, mut store, mut s) = new_store();
        let now = Timestamp(5);
        add_worker(&mut s, "w1", now);
        store.commit_unsynced(&s.take_changes()).unwrap();
        assert_eq!(synchronous(&store), 1, "committed without a sync (NORMAL)");
        assert!(store.owed, "a change that needs a sync went without one");
        add_worker(&mut s, "w2", now);
        store.commit(&s.take_changes()).unwrap();
        assert_eq!(synchronous(&store), 2);
        assert!(!store.owed, "a synced commit syncs what went before it");
        s.set_agent_status("w1", AgentStatus::Stopped, None, now);
        store.commit_unsynced(&s.take_changes()).unwrap();
        assert!(store.owed);
        store.settle().unwrap();
        assert!(!store.owed, "settled: the WAL was synced");
        store.settle().unwrap();
        drop(store);
        let store = Store::open(&db, "t").unwrap();
        let agents = store.load().unwrap().agents;
        assert_eq!(agents.len(), 2);
        assert_eq!(
            agents[0].info.status,
            AgentStatus::Stopped,
            "stored all the same"
        );
    }

    #[test]
    fn a_store_whose_keyed_tables_have_rowids_is_read_and_written_as_before() {
        // A file made before the keyed tables were WITHOUT ROWID: its tables stay as they are.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let old = Connection::open(&db).unwrap();
            old.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE agents (name TEXT PRIMARY KEY, data TEXT NOT NULL);
                 CREATE TABLE usage (agent TEXT NOT NULL, model TEXT NOT NULL,
                     data TEXT NOT NULL, PRIMARY KEY (agent, model));",
            )
            .unwrap();
        }
        let mut store = Store::open(&db, "t").unwrap();
        let rowid_tables: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('meta', 'agents', 'usage') \
                 AND sql NOT LIKE '%WITHOUT ROWID%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            rowid_tables, 3,
            "an older file's tables are left as they were"
        );
        let mut s = TeamState::new("t");
        add_worker(&mut s, "w1", Timestamp(1));
        store.commit(&s.take_changes()).unwrap();
        s.set_agent_status("w1", AgentStatus::Stopped, None, Timestamp(2));
        store.commit(&s.take_changes()).unwrap();
        drop(store);
        let store = Store::open(&db, "t").unwrap();
        let agents = store.load().unwrap().agents;
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].info.status, AgentStatus::Stopped);
        // A new file's keyed tables have no rowid.
        let fresh = dir.path().join("fresh.db");
        let store = Store::open(&fresh, "t").unwrap();
        let without: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE sql LIKE '%WITHOUT ROWID%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(without, 6, "meta, agents, dedup, memory, usage, budgets");
    }

    #[test]
    fn a_new_store_is_made_aside_whole_and_reopening_it_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let aside = dir.path().join("state.db.new");
        // What a crash in the middle of an earlier creation left beside it.
        std::fs::write(&aside, b"not a database").unwrap();
        drop(Store::open(&db, "t").unwrap());
        assert!(!aside.exists(), "the side file was moved in");
        assert_eq!(
            wal_commits(&wal, 1024),
            1,
            "the schema is in the database file; the team's row is the WAL's one commit"
        );
        let again = Store::open(&db, "t").unwrap();
        assert_eq!(wal_commits(&wal, 1024), 1, "reopening commits nothing");
        assert!(again.load().unwrap().tasks.is_empty());
        let mode: String = again
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal", "the new file is in WAL mode");
        assert!(
            !dir.path().join("state.db-shm").exists(),
            "the WAL's index is in the heap: no shared-memory file"
        );
        drop(again);
        assert!(matches!(
            Store::open(&db, "other"),
            Err(StoreError::WrongTeam { .. })
        ));
    }

    #[test]
    fn a_new_stores_team_lost_before_its_first_sync_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let store = Store::open(&db, "t").unwrap();
        assert!(store.owed, "the team's row waits for a sync");
        drop(store);
        // A power cut before any sync: the WAL's one unsynced commit is gone.
        std::fs::write(&wal, b"").unwrap();
        let store = Store::open(&db, "t").unwrap();
        let team = store.meta("team").unwrap();
        assert_eq!(team.as_deref(), Some("t"));
        drop(store);
        assert!(matches!(
            Store::open(&db, "other"),
            Err(StoreError::WrongTeam { .. })
        ));
    }

    /// A new database's name (its rename in) is not synced as it is made: the sync is owed
    /// until the first synced commit (SQLite syncs the directory with the WAL's first sync)
    /// or `settle`; an unsynced commit leaves it owed, and an older database has none owed.
    #[test]
    fn a_new_stores_directory_sync_is_owed_until_a_synced_commit_or_settle() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let (mut store, mut s) = (Store::open(&db, "t").unwrap(), TeamState::new("t"));
        assert!(store.dir_owed, "a new database's name awaits a sync");
        store.commit_unsynced(&new_task(&mut s, 1)).unwrap();
        assert!(store.dir_owed, "an unsynced commit syncs nothing");
        store.settle().unwrap();
        assert!(
            !store.dir_owed && !store.owed,
            "settle syncs the WAL and the directory"
        );
        drop(store);
        assert!(
            !Store::open(&db, "t").unwrap().dir_owed,
            "an older database owes none"
        );
        let db = dir.path().join("b.db");
        let (mut store, mut s) = (Store::open(&db, "t").unwrap(), TeamState::new("t"));
        store.commit(&new_task(&mut s, 1)).unwrap();
        assert!(
            !store.dir_owed,
            "the first synced commit's WAL sync syncs the directory"
        );
        drop(store);
        // What the commits stored is there at the next open.
        let snap = Store::open(&db, "t").unwrap().load().unwrap();
        assert_eq!(snap.tasks.len(), 1);
    }

    /// The changes of adding task `i` to the team.
    fn new_task(s: &mut TeamState, i: u64) -> Vec<Change> {
        s.task_add(
            &Actor::Operator,
            NewTask {
                title: format!("task {i}"),
                ..Default::default()
            },
            Timestamp(i),
        )
        .unwrap();
        s.take_changes()
    }

    /// Adds `n` tasks to the team, each committed on its own.
    fn add_tasks(store: &mut Store, s: &mut TeamState, n: u64) {
        for i in 0..n {
            store.commit(&new_task(s, i)).unwrap();
        }
    }

    #[test]
    fn a_new_stores_commits_overwrite_its_preallocated_wal_instead_of_growing_it() {
        let (dir, db, mut store, mut s) = new_store();
        let wal = dir.path().join("s.db-wal");
        let len = || std::fs::metadata(&wal).unwrap().len();
        assert_eq!(
            len(),
            WAL_PREALLOC_BYTES,
            "the WAL is there before any commit"
        );
        add_tasks(&mut store, &mut s, 10);
        assert_eq!(len(), WAL_PREALLOC_BYTES, "the commits grew the WAL");
        // The team's row, then the tasks.
        assert_eq!(wal_commits(&wal, 1024), 11);
        drop(store);
        // The zeros after the last commit read as the log's end.
        let store = Store::open(&db, "t").unwrap();
        assert_eq!(store.load().unwrap().tasks.len(), 10);
    }

    #[test]
    fn a_wal_left_by_a_removed_database_is_not_replayed_into_a_new_one() {
        let (dir, db, mut store, mut s) = new_store();
        add_tasks(&mut store, &mut s, 3);
        drop(store);
        assert!(dir.path().join("s.db-wal").exists(), "a small WAL is left");
        std::fs::remove_file(&db).unwrap();
        let store = Store::open(&db, "t").unwrap();
        assert_eq!(
            store.load().unwrap().tasks.len(),
            0,
            "the old database's commits came back"
        );
    }

    #[test]
    fn closing_leaves_a_small_wal_for_the_next_open_and_copies_a_large_one_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let add = |store: &mut Store, s: &mut TeamState, n: u64, body: &str| {
            commit_tasks(store, s, n, body, true)
        };
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        add(&mut store, &mut s, 10, "small");
        drop(store);
        // Small: left as it is (each commit in it was synced), read back by the next open,
        // read-only or not.
        // The team's row, then the tasks.
        assert_eq!(wal_commits(&wal, 1024), 11, "the WAL was left");
        let ro = Store::open_read_only(&db, "t").unwrap();
        assert_eq!(ro.load().unwrap().tasks.len(), 10);
        drop(ro);
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.tasks(None).len(), 10);
        // Large: copied into the database at the close, as SQLite does. One commit of it all
        // (one fsync, not thousands).
        commit_tasks(&mut store, &mut s, 3200, &"x".repeat(4000), false);
        assert!(store.wal_bytes_to_copy() > WAL_LEAVE_BYTES);
        drop(store);
        assert!(
            std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
            "a large WAL is copied back and removed"
        );
        let store = Store::open(&db, "t").unwrap();
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            WAL_PREALLOC_BYTES,
            "the next open writes the WAL's space again"
        );
        assert_eq!(store.load().unwrap().tasks.len(), 3210);
    }

    #[test]
    fn a_full_disk_leaves_nothing_of_the_batch_and_the_next_commit_goes_through() {
        let (_dir, db, mut store, mut s) = new_store();
        let task = |s: &mut TeamState, title: &str, bytes: usize| {
            s.task_add(
                &Actor::Operator,
                NewTask {
                    title: title.into(),
                    description: "x".repeat(bytes),
                    ..Default::default()
                },
                Timestamp(5),
            )
            .unwrap();
            s.take_changes()
        };
        store.commit(&task(&mut s, "kept", 10)).unwrap();
        // The file may not grow: a batch that needs new pages fails as on a full disk.
        let pages: i64 = store
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        store
            .conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let err = store.commit(&task(&mut s, "lost", 64 * 1024)).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(
            store.conn.is_autocommit(),
            "the failed batch left a transaction open"
        );
        store
            .conn
            .pragma_update(None, "max_page_count", 1 << 30)
            .unwrap();
        store.commit(&task(&mut s, "after", 10)).unwrap();
        drop(store);
        let store = Store::open(&db, "t").unwrap();
        let titles: Vec<String> = TeamState::restore("t", store.load().unwrap())
            .tasks(None)
            .into_iter()
            .map(|t| t.title.clone())
            .collect();
        assert_eq!(titles, ["kept", "after"]);
    }

    #[test]
    fn state_survives_reopen_and_ids_continue() {
        let (_dir, db, mut store, mut s) = new_store();
        let now = Timestamp(5);
        s.task_add(
            &Actor::Operator,
            NewTask {
                title: "a".into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        s.task_add(
            &Actor::Operator,
            NewTask {
                title: "b".into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        store.commit(&s.take_changes()).unwrap();
        drop(store);

        let store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.tasks(None).len(), 2);
        let t = s
            .task_add(
                &Actor::Operator,
                NewTask {
                    title: "c".into(),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(t.id, 3);
        let events = store.events_since(0, 100).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].seq, 2);
    }

    #[test]
    fn an_idle_checkpoint_rewinds_the_wal_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let wal = dir.path().join("s.db-wal");
        let mut store = Store::open(&db, "t").unwrap();
        let limit: i64 = store
            .conn
            .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limit, WAL_KEEP_BYTES);
        let mut s = TeamState::restore("t", store.load().unwrap());
        add_tasks(&mut store, &mut s, 70);
        let grown = std::fs::metadata(&wal).unwrap().len();
        store.checkpoint(true).unwrap();
        assert_eq!(store.commits_since_checkpoint, 0, "the checkpoint ran");
        // Rewound, not truncated: the next commits overwrite the file in place.
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), grown);
        s.task_add(
            &Actor::Operator,
            NewTask {
                title: "after".into(),
                ..Default::default()
            },
            Timestamp(99),
        )
        .unwrap();
        store.commit(&s.take_changes()).unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), grown);
        drop(store);
        let store = Store::open(&db, "t").unwrap();
        let s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.tasks(None).len(), 71);
    }

    /// Issue 15 item 7: an agent's plan state (planning, the submitted plan, the decision) is
    /// stored with its record and comes back after the daemon reopens the store.
    #[test]
    fn a_plan_state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let now = Timestamp(5);
        for (name, plan) in [("leader", None), ("p1", Some(PlanInfo::required()))] {
            let info = AgentInfo {
                status: AgentStatus::Idle,
                plan,
                ..AgentInfo::new(name, "worker", "external", 1, now)
            };
            let rec = AgentRecord {
                info,
                secret: "s".into(),
                spec: serde_json::Value::Null,
            };
            s.add_agent(&Actor::Operator, rec, now).unwrap();
        }
        store.commit(&s.take_changes()).unwrap();
        let reopen = |store: Store| {
            drop(store);
            let store = Store::open(&db, "t").unwrap();
            let s = TeamState::restore("t", store.load().unwrap());
            (store, s)
        };
        let (mut store, mut s) = reopen(store);
        assert_eq!(
            s.agent("p1").unwrap().info.plan,
            Some(PlanInfo::required()),
            "planning after a restart"
        );
        s.submit_plan(&Actor::Agent("p1".into()), "read, then write".into(), now)
            .unwrap();
        store.commit(&s.take_changes()).unwrap();
        let (mut store, mut s) = reopen(store);
        let plan = s.agent("p1").unwrap().info.plan.clone().unwrap();
        assert_eq!(plan.state, PlanState::Submitted);
        assert_eq!(plan.plan.as_deref(), Some("read, then write"));
        s.decide_plan(&Actor::Operator, "p1", true, Some("fine".into()), now)
            .unwrap();
        store.commit(&s.take_changes()).unwrap();
        let (_store, s) = reopen(store);
        let plan = s.agent("p1").unwrap().info.plan.clone().unwrap();
        assert_eq!(
            (
                plan.state,
                plan.feedback.as_deref(),
                plan.decided_by.as_deref()
            ),
            (PlanState::Approved, Some("fine"), Some("operator"))
        );
        assert!(s.agent("leader").unwrap().info.plan.is_none());
    }

    /// Regression (found by `tests/prop_state.rs`): the messages of a rolled-back agent are
    /// deleted with it, and the next id was taken from what was left, so after a restart a
    /// new message got the id of one already acknowledged to its sender and in the event log.
    #[test]
    fn message_ids_of_a_rolled_back_agent_are_not_reused_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let now = Timestamp(5);
        for name in ["w1", "w4"] {
            let info = AgentInfo {
                name: name.into(),
                role: "worker".into(),
                status: AgentStatus::Starting,
                backend: "external".into(),
                pid: None,
                pgid: None,
                pane: None,
                incarnation: 1,
                restarts: 0,
                current_task: None,
                last_activity: now,
                connected: false,
                last_exit: None,
                error: None,
                usage: None,
                todos: Vec::new(),
                color: None,
                plan: None,
                host: None,
                container: None,
            };
            let rec = AgentRecord {
                info,
                secret: "s".into(),
                spec: serde_json::Value::Null,
            };
            s.add_agent(&Actor::Operator, rec, now).unwrap();
        }
        let (ids, _) = s
            .send(
                &Actor::Operator,
                "w4",
                "hi".into(),
                MessageKind::Text,
                None,
                now,
            )
            .unwrap();
        assert_eq!(ids, vec![1]);
        s.remove_agent("w4", "did not connect back", now);
        store.commit(&s.take_changes()).unwrap();
        drop(store);

        let store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let (ids, _) = s
            .send(
                &Actor::Operator,
                "w1",
                "hi".into(),
                MessageKind::Text,
                None,
                now,
            )
            .unwrap();
        assert_eq!(ids, vec![2], "message id 1 was already issued");
    }

    /// A task reply is stored as a reference to its `TASK_UPDATED` event and comes back whole
    /// after a restart, as it was then (not as the task is now); other replies are stored as
    /// they are; a pruned row is deleted by its key.
    #[test]
    fn remembered_replies_survive_reopen_and_task_replies_are_stored_by_reference() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let now = Timestamp(5);
        let op = Actor::Operator;
        let new = |title: &str| NewTask {
            title: title.into(),
            description: "d".repeat(2000),
            ..Default::default()
        };
        let added = s
            .task_add(&op, new("a"), now)
            .map(|task| Reply::Task { task });
        s.remember_outcome("operator", "r-add".into(), added.clone());
        let Ok(Reply::Task { task }) = &added else {
            panic!("{added:?}")
        };
        let claimed = s
            .task_claim(&op, task.id, now)
            .map(|t| Reply::MaybeTask { task: Some(t) });
        s.remember_outcome("operator", "r-claim".into(), claimed.clone());
        let failed = s.task_claim(&op, 999, now).map(|task| Reply::Task { task });
        assert!(failed.is_err());
        s.remember_outcome("operator", "r-fail".into(), failed.clone());
        // A send reply is stored short (its id and recipient, no field names).
        add_worker(&mut s, "w1", now);
        let sent = s
            .send(&op, "w1", "hi".into(), MessageKind::Text, None, now)
            .map(|(ids, recipients)| Reply::Sent { ids, recipients });
        assert!(sent.is_ok());
        s.remember_outcome("operator", "r-send".into(), sent.clone());
        s.remember_outcome("operator", "r-done".into(), Ok(Reply::Done));
        let changes = s.take_changes();
        store.commit(&changes).unwrap();
        let data: String = store
            .conn
            .query_row("SELECT group_concat(data) FROM reply_batches", [], |r| {
                r.get(0)
            })
            .unwrap();
        // Task replies as `[seq,maybe]`: the TASK_UPDATED event that holds the task.
        assert!(data.contains(r#"["add",0,[1,false]]"#), "{data}");
        // One-recipient send: `[id,"to"]`; done: nothing after the id and its `dn`; the ids
        // written without the prefix they share (`r-`).
        assert!(data.contains(r#",["send",1,["#), "{data}");
        assert!(data.contains(r#"["done",1]"#), "{data}");
        assert!(
            data.starts_with(r#"[{"i":"operator","p":"r-","e":[["add",0,"#),
            "{data}"
        );
        assert!(
            data.len() < 1000,
            "no task body is stored: {} bytes",
            data.len()
        );
        // The task moves on; the remembered replies still say what they said.
        s.task_cancel(&op, task.id, now).unwrap();
        store.commit(&s.take_changes()).unwrap();
        drop(store);

        let store = Store::open(&db, "t").unwrap();
        let s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.replay_outcome("operator", "r-add"), Some(added));
        assert_eq!(s.replay_outcome("operator", "r-claim"), Some(claimed));
        assert_eq!(s.replay_outcome("operator", "r-fail"), Some(failed));
        assert_eq!(s.replay_outcome("operator", "r-send"), Some(sent));
        assert_eq!(
            s.replay_outcome("operator", "r-done"),
            Some(Ok(Reply::Done))
        );
        let plan: String = store
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN DELETE FROM reply_batches WHERE n = ?1",
                params![5],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("INTEGER PRIMARY KEY"), "{plan}");
    }

    /// The rows of `reply_batches`: key, and the identities and request ids in it.
    fn reply_rows(store: &Store) -> Vec<(u64, Vec<(String, String)>)> {
        let mut stmt = store
            .conn
            .prepare("SELECT n, identity, data FROM reply_batches ORDER BY n")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap()
        .map(|row| {
            let (n, identity, data) = row.unwrap();
            let entries = agent_team_state::replies::decode_row(n, &identity, &data).unwrap();
            (n, entries.into_iter().map(|e| (e.0, e.1)).collect())
        })
        .collect()
    }

    /// Forgotten replies are deleted by row key: after several prune steps of identities
    /// interleaved in one commit stream (with a reload in between), every row left holds a
    /// reply still kept, a reload answers every kept id with its reply, and an id whose row
    /// went is not answered (no resurrected rows).
    #[test]
    fn pruned_reply_rows_are_deleted_by_key_and_stay_pruned_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let open = || {
            let store = Store::open(&db, "t").unwrap();
            // No fsync per commit: this test is about which rows are stored, not durability.
            store
                .conn
                .pragma_update(None, "synchronous", "OFF")
                .unwrap();
            let s = TeamState::restore("t", store.load().unwrap());
            (store, s)
        };
        let (mut store, mut s) = open();
        // Per commit: w1 two replies, w2 five, w3 nine but only in two commits of three.
        let shape = [("w1", 1usize, 2usize), ("w2", 1, 5), ("w3", 3, 9)];
        let mut issued: Vec<(&str, String)> = Vec::new();
        let mut prunes = 0;
        let mut rid = 0u64;
        let commits = 1100;
        for c in 0..commits {
            for (who, every, per) in shape {
                if c % every == every - 1 && every > 1 {
                    continue;
                }
                for _ in 0..per {
                    rid += 1;
                    let id = format!("r{rid}");
                    let outcome = Ok(Reply::Sent {
                        ids: vec![rid],
                        recipients: vec![who.to_string()],
                    });
                    s.remember_outcome(who, id.clone(), outcome.clone());
                    issued.push((who, id));
                }
            }
            let changes = s.take_changes();
            prunes += changes
                .iter()
                .filter(|c| matches!(c, Change::RepliesPruned { .. }))
                .count();
            store.commit(&changes).unwrap();
            if c == commits / 2 {
                drop(store);
                (store, s) = open();
            }
        }
        // w1 alone went through 3 prune steps (2200 replies: over 1280, then every 256); a
        // row goes with the prune of the last identity that still had a reply in it.
        assert!(prunes >= 3, "{prunes} prunes");
        let kept = |s: &TeamState| -> Vec<(&str, &str)> {
            issued
                .iter()
                .filter(|(who, id)| s.replay_outcome(who, id).is_some())
                .map(|(who, id)| (*who, id.as_str()))
                .collect()
        };
        let live = kept(&s);
        for who in ["w1", "w2", "w3"] {
            let n = live.iter().filter(|(w, _)| *w == who).count();
            assert!(
                (KEEP_PER_IDENTITY..KEEP_PER_IDENTITY + 256).contains(&n),
                "{who}: {n} kept"
            );
        }
        let rows = reply_rows(&store);
        let live_set: std::collections::HashSet<(&str, &str)> = live.iter().copied().collect();
        for (key, ids) in &rows {
            assert!(
                ids.iter()
                    .any(|(who, id)| live_set.contains(&(who.as_str(), id.as_str()))),
                "row {key} holds only forgotten replies: {ids:?}"
            );
        }
        let stored: std::collections::HashSet<(&str, &str)> = rows
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(|(who, id)| (who.as_str(), id.as_str())))
            .collect();
        drop(store);

        let (_store, reloaded) = open();
        for (who, id) in &live {
            assert_eq!(
                reloaded.replay_outcome(who, id),
                s.replay_outcome(who, id),
                "{who} {id} after a reload"
            );
        }
        for (who, id) in &issued {
            if reloaded.replay_outcome(who, id).is_some() {
                assert!(
                    stored.contains(&(*who, id.as_str())),
                    "{who} {id} answered but its row was deleted"
                );
            }
        }
        // Forgotten ids that come back are only those sharing a row with a kept one (one row
        // holds every identity's replies of a commit), and a reload keeps each identity within
        // its bounds all the same.
        let back = kept(&reloaded);
        assert!(back.len() >= live.len(), "{}", back.len());
        for who in ["w1", "w2", "w3"] {
            let n = back.iter().filter(|(w, _)| *w == who).count();
            assert!(n < KEEP_PER_IDENTITY + 256, "{who}: {n} after a reload");
        }
    }

    /// A database written before rows were pruned by key (with the identity index) loads as
    /// it is: the index is dropped on open and its old rows are pruned by key like new ones.
    #[test]
    fn a_database_with_the_old_reply_index_loads_and_prunes_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, "t").unwrap();
        store
            .conn
            .execute_batch(
                "CREATE INDEX reply_batches_by_identity ON reply_batches (identity, last_n); \
                 UPDATE meta SET value = '1' WHERE key = 'schema'",
            )
            .unwrap();
        // Rows as the code before wrote them (one row per identity per commit), fewer than
        // a prune step beyond the bounds.
        let mut s = TeamState::restore("t", store.load().unwrap());
        for i in 0..250u64 {
            for k in 0..5 {
                s.remember_outcome("w1", format!("a{i}-{k}"), Ok(Reply::Done));
            }
            store.commit(&s.take_changes()).unwrap();
        }
        drop(store);
        let ro = Store::open_read_only(&db, "t").unwrap();
        assert_eq!(
            ro.load().unwrap().replies.len(),
            1250,
            "read-only, index and all"
        );
        drop(ro);

        let mut store = Store::open(&db, "t").unwrap();
        let index: Option<String> = store
            .conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE name = 'reply_batches_by_identity'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        assert_eq!(index, None);
        let mut s = TeamState::restore("t", store.load().unwrap());
        assert!(s.replay("w1", "a0-0").is_some());
        assert!(s.replay("w1", "a249-4").is_some());
        // Going over the bounds forgets the oldest, and their rows go, by key.
        let mut pruned = Vec::new();
        for k in 0..30 {
            s.remember_outcome("w1", format!("b{k}"), Ok(Reply::Done));
            let changes = s.take_changes();
            for c in &changes {
                if let Change::RepliesPruned { rows } = c {
                    pruned.extend(rows.iter().copied());
                }
            }
            store.commit(&changes).unwrap();
        }
        assert_eq!(pruned.len(), 51, "{pruned:?}");
        let rows = reply_rows(&store);
        assert_eq!(rows.len(), 250 + 30 - 51);
        assert!(rows.iter().all(|(key, _)| !pruned.contains(key)));
        let s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.replay("w1", "a0-0"), None);
        assert_eq!(s.replay("w1", "a50-4"), None);
        assert!(s.replay("w1", "a51-4").is_some());
        assert!(s.replay("w1", "b29").is_some());
    }

    /// Team memory is stored with its batch: a value, its version and writer come back after a
    /// reopen, a deletion stays deleted, versions go on from where they were, a compaction
    /// (which removes what is old and done) leaves memory alone, and a database from before
    /// memory existed reads as an empty memory, also read-only.
    #[test]
    fn memory_survives_reopen_deletes_stay_deleted_and_gc_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let op = Actor::Operator;
        let b1 = Actor::Agent("b1".into());
        let big = serde_json::json!({"text": "x".repeat(2000)});
        s.memory_set(
            &op,
            "plan".into(),
            serde_json::json!({"steps": [1, 2]}),
            Timestamp(5),
        )
        .unwrap();
        s.memory_set(&b1, "outputs/b1".into(), big.clone(), Timestamp(6))
            .unwrap();
        s.memory_set(&b1, "outputs/b1".into(), big.clone(), Timestamp(7))
            .unwrap();
        s.memory_set(&op, "gone".into(), serde_json::json!(null), Timestamp(8))
            .unwrap();
        store.commit(&s.take_changes()).unwrap();
        s.memory_delete(&op, "gone", Timestamp(9)).unwrap();
        store.commit(&s.take_changes()).unwrap();
        drop(store);

        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let e = s.memory_get("outputs/b1").unwrap();
        assert_eq!(
            (&e.value, e.version, e.updated_by.as_str(), e.updated_at),
            (&big, 2, "b1", Timestamp(7))
        );
        assert_eq!(
            s.memory_get("plan").unwrap().value,
            serde_json::json!({"steps": [1, 2]})
        );
        assert_eq!(
            s.memory_get("gone").unwrap_err().code,
            ErrorCode::NotFound,
            "a deletion survives the reopen"
        );
        let keys: Vec<&str> = s.memory_list(None, None).map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["outputs/b1", "plan"]);
        let (n, bytes) = s.memory_usage();
        assert_eq!(n, 2);
        assert!(bytes > 2000, "the byte count is rebuilt: {bytes}");
        let e = s
            .memory_set(
                &op,
                "outputs/b1".into(),
                serde_json::json!(1),
                Timestamp(10),
            )
            .unwrap();
        assert_eq!(e.version, 3, "versions go on after a reopen");
        store.commit(&s.take_changes()).unwrap();

        let report = store
            .compact(&db, Timestamp(u64::MAX / 2), &[], true)
            .unwrap();
        assert!(report.events > 0, "{report:?}");
        let s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.memory_usage().0, 2, "gc keeps memory");
        assert_eq!(
            s.memory_get("outputs/b1").unwrap().value,
            serde_json::json!(1)
        );
        drop(store);

        // A database written before memory existed (no `memory` table), read-only and not.
        let old = dir.path().join("old.db");
        drop(Store::open(&old, "t").unwrap());
        let c = Connection::open(&old).unwrap();
        c.execute_batch("DROP TABLE memory; UPDATE meta SET value = '1' WHERE key = 'schema'")
            .unwrap();
        drop(c);
        let ro = Store::open_read_only(&old, "t").unwrap();
        assert!(ro.load().unwrap().memory.is_empty());
        drop(ro);
        let mut store = Store::open(&old, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        s.memory_set(&op, "k".into(), serde_json::json!("v"), Timestamp(1))
            .unwrap();
        store.commit(&s.take_changes()).unwrap();
        assert_eq!(store.load().unwrap().memory.len(), 1);
    }

    /// Usage and budgets are stored with their batch: per-agent figures, the run's, the
    /// levels already reported (no second warning after a restart) and a budget raised at run
    /// time all come back after a reopen, and a gc leaves them alone.
    #[test]
    fn usage_and_budgets_survive_reopen_and_gc() {
        use agent_team_state::{BudgetConfig, Response};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let op = Actor::Operator;
        for (n, role) in [("leader", "leader"), ("w1", "worker")] {
            let info = AgentInfo {
                status: AgentStatus::Idle,
                ..AgentInfo::new(n, role, "external", 1, Timestamp(1))
            };
            s.add_agent(
                &op,
                AgentRecord {
                    info,
                    secret: "s".into(),
                    spec: serde_json::Value::Null,
                },
                Timestamp(1),
            )
            .unwrap();
        }
        s.start_run(&op, None, Timestamp(1)).unwrap();
        let mut budgets = BudgetConfig::default();
        budgets.roles.insert(
            "worker".into(),
            BudgetLimit {
                tokens: Some(100),
                usd: None,
            },
        );
        let w1 = Actor::Agent("w1".into());
        let resp = |input, cost| Response {
            model: "m".into(),
            input_tokens: input,
            output_tokens: 5,
            cached_tokens: 3,
            cost_pico: cost,
        };
        s.record_usage(&w1, resp(80, Some(10)), &budgets, Timestamp(2))
            .unwrap();
        store.commit(&s.take_changes()).unwrap();
        s.set_budget(
            &op,
            None,
            BudgetLimit {
                tokens: Some(5000),
                usd: Some(1.5),
            },
            &budgets,
        )
        .unwrap();
        store.commit(&s.take_changes()).unwrap();
        let before = s.usage_report(&budgets);
        assert_eq!(before.budgets.len(), 2);
        drop(store);

        let mut store = Store::open(&db, "t").unwrap();
        let mut s = TeamState::restore("t", store.load().unwrap());
        let after = s.usage_report(&budgets);
        assert_eq!(after, before);
        assert_eq!(after.agents[0].usage.input_tokens, 80);
        assert_eq!(after.agents[0].usage.cost_usd, Some(1e-11));
        assert_eq!(after.run.requests, 1);
        assert_eq!(
            after.budgets[0].budget_usd,
            Some(1.5),
            "the team's override"
        );
        assert_eq!(after.budgets[1].level, BudgetLevel::Warning);
        // The warning was reported before the restart: staying above 80 % says nothing new.
        s.record_usage(&w1, resp(1, None), &budgets, Timestamp(3))
            .unwrap();
        let changes = s.take_changes();
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, Change::Event(e) if e.event.type_name() == "BUDGET_WARNING"))
        );
        store.commit(&changes).unwrap();
        store
            .compact(&db, Timestamp(u64::MAX / 2), &[], false)
            .unwrap();
        let s = TeamState::restore("t", store.load().unwrap());
        assert_eq!(s.agent_usage("w1").unwrap().requests, 2, "gc keeps usage");
        // A database from before usage existed reads as no usage, also read-only.
        drop(store);
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("DROP TABLE usage; DROP TABLE budgets")
            .unwrap();
        drop(c);
        let ro = Store::open_read_only(&db, "t").unwrap();
        let snap = ro.load().unwrap();
        assert!(snap.usage.is_empty() && snap.budgets.is_empty());
    }

    #[test]
    fn another_teams_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        drop(Store::open(&db, "a").unwrap());
        assert!(matches!(
            Store::open(&db, "b"),
            Err(StoreError::WrongTeam { .. })
        ));
    }
}
