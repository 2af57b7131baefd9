//! Upgrades keep teams: a store written by each older schema (the fixtures in
//! `tests/fixtures/`, written by the old builds themselves, see its README) opens, is migrated
//! in place to the current schema, and its team resumes with every task, message, permission
//! request, usage figure and memory entry it had; a store of a newer schema is refused and
//! left as it was, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agent_team_protocol::*;
use agent_team_state::tasks::NewTask;
use agent_team_state::{Actor, TeamState};
use agent_team_store::{SCHEMA_VERSION, Store, StoreError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// The team every fixture stores.
const TEAM: &str = "upgraded";

/// One fixture: its file's name and whether the build that wrote it counted usage and kept
/// memory and budgets (c1cedc2 did not yet).
struct Fixture {
    file: &'static str,
    has_usage: bool,
}

/// Every older schema still supported, the previous one last.
const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "v1-c1cedc2.db",
        has_usage: false,
    },
    Fixture {
        file: "v1-10bce61.db",
        has_usage: true,
    },
    Fixture {
        file: "v1-238aa06.db",
        has_usage: true,
    },
];

/// The fixtures' clock (as their generators): step `n` seconds after 2025-11-20 10:00 UTC.
fn at(step: u64) -> Timestamp {
    Timestamp(1_763_632_800_000 + step * 1000)
}

/// A copy of fixture `file` in a new temporary directory, and its path there.
fn copy_of(file: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    std::fs::copy(&from, &db).unwrap();
    (dir, db)
}

/// The `schema` row of the database at `path`, read without changing anything.
fn version_on_disk(path: &Path) -> String {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
        r.get(0)
    })
    .unwrap()
}

/// The tables, their columns and the indexes (SQLite's own left out) of the database at `path`.
fn shape(path: &Path) -> Vec<String> {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut names = c
        .prepare(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap();
    let names: Vec<(String, String)> = names
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for (kind, name) in names {
        let mut cols = c
            .prepare(&format!(
                "SELECT name, type, pk FROM pragma_table_info('{name}')"
            ))
            .unwrap();
        let cols: Vec<String> = cols
            .query_map([], |r| {
                Ok(format!(
                    "{}:{}:{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.push(format!("{kind} {name} {}", cols.join(",")));
    }
    out
}

/// A task as the tests compare it: id, title, status, owner, result, blockers.
type TaskRow = (
    u64,
    &'static str,
    TaskStatus,
    Option<&'static str>,
    Option<&'static str>,
    Vec<u64>,
);

/// The tasks as the fixtures' team left them: id, title, status, owner, result, blockers.
fn expected_tasks() -> Vec<TaskRow> {
    vec![
        (
            1,
            "design the grammar",
            TaskStatus::Completed,
            Some("w1"),
            Some("grammar in docs/grammar.md"),
            vec![],
        ),
        (
            2,
            "write the parser",
            TaskStatus::InProgress,
            Some("w2"),
            None,
            vec![],
        ),
        (
            3,
            "review the parser",
            TaskStatus::Pending,
            None,
            None,
            vec![2],
        ),
        (
            4,
            "benchmark on big files",
            TaskStatus::Failed,
            Some("w1"),
            Some("no big files here"),
            vec![],
        ),
        (
            5,
            "port to the old API",
            TaskStatus::Cancelled,
            None,
            None,
            vec![],
        ),
    ]
}

/// Checks that what `store` holds is the fixtures' team, exactly.
fn assert_the_team_is_there(store: &Store, fixture: &Fixture) {
    let snap = store.load().unwrap();
    let tasks: Vec<_> = snap
        .tasks
        .iter()
        .map(|t| {
            (
                t.id,
                t.title.as_str(),
                t.status,
                t.owner.as_deref(),
                t.result.as_deref(),
                t.blocked_by.clone(),
            )
        })
        .collect();
    assert_eq!(tasks, expected_tasks(), "{}", fixture.file);
    assert_eq!(snap.tasks[0].created_at, at(3));
    assert_eq!(snap.tasks[0].finished_at, Some(at(12)));
    assert_eq!(snap.max_task_id, 5);

    // Messages in each delivery state: the read one is history, the others still unread.
    let read = store.inbox("w1", 0, 10).unwrap();
    assert_eq!(
        read.iter()
            .map(|m| (m.id, m.from.as_str(), m.body.as_str(), m.state, m.ts))
            .collect::<Vec<_>>(),
        [(
            1,
            "leader",
            "start on the grammar",
            DeliveryState::Read,
            at(16)
        )]
    );
    let mut unread: Vec<_> = snap
        .unread
        .iter()
        .map(|m| {
            (
                m.id,
                m.from.as_str(),
                m.to.as_str(),
                m.body.as_str(),
                m.summary.as_deref(),
                m.state,
            )
        })
        .collect();
    let budget_notes: Vec<_> = unread.split_off(2.min(unread.len()));
    assert_eq!(
        unread,
        [
            (
                2,
                "w1",
                "leader",
                "grammar done",
                Some("done"),
                DeliveryState::Delivered
            ),
            (
                3,
                "leader",
                "w2",
                "the parser next, please",
                None,
                DeliveryState::Queued
            ),
        ],
        "{}",
        fixture.file
    );
    if fixture.has_usage {
        // The daemon's notes of the workers' budget: at 85 %, then spent.
        assert_eq!(
            budget_notes
                .iter()
                .map(|m| (m.0, m.1, m.2, m.4, m.5))
                .collect::<Vec<_>>(),
            [
                (
                    4,
                    "daemon",
                    "leader",
                    Some("budget of role worker at 85 %"),
                    DeliveryState::Queued
                ),
                (
                    5,
                    "daemon",
                    "leader",
                    Some("budget of role worker spent"),
                    DeliveryState::Queued
                ),
            ]
        );
        assert_eq!(snap.max_message_id, 5);
    } else {
        assert!(budget_notes.is_empty());
        assert_eq!(snap.max_message_id, 3);
    }

    // One permission request decided, one still pending.
    let perms: Vec<_> = snap
        .perms
        .iter()
        .map(|p| {
            (
                p.id,
                p.agent.as_str(),
                p.tool.as_str(),
                p.input.as_str(),
                p.status,
            )
        })
        .collect();
    assert_eq!(
        perms,
        [
            (1, "w2", "bash", "cargo build", PermStatus::Allowed),
            (2, "w2", "bash", "cargo test --release", PermStatus::Pending),
        ],
        "{}",
        fixture.file
    );
    assert_eq!(snap.perms[1].reason, "run the tests");
    assert_eq!(snap.perms[1].ts, at(23));

    assert_eq!(snap.run.goal.as_deref(), Some("ship the parser"));
    let agents: Vec<_> = snap.agents.iter().map(|a| a.info.name.as_str()).collect();
    assert_eq!(agents, ["leader", "w1", "w2"]);

    if !fixture.has_usage {
        assert!(snap.usage.is_empty() && snap.memory.is_empty() && snap.budgets.is_empty());
        return;
    }
    let usage: Vec<_> = snap
        .usage
        .iter()
        .map(|u| {
            (
                u.agent.as_str(),
                u.role.as_str(),
                u.model.as_str(),
                u.sum.input_tokens,
                u.sum.output_tokens,
                u.sum.cached_tokens,
                u.sum.requests,
                u.sum.cost_pico,
            )
        })
        .collect();
    assert_eq!(
        usage,
        [
            ("leader", "leader", "mock-1", 200, 20, 100, 1, 500_000),
            ("w1", "worker", "mock-1", 700, 150, 100, 1, 2_000_000),
            ("w2", "worker", "mock-1", 300, 50, 100, 1, 1_000_000),
        ]
    );
    let memory: Vec<_> = snap
        .memory
        .iter()
        .map(|e| {
            (
                e.key.as_str(),
                e.value.clone(),
                e.version,
                e.updated_by.as_str(),
                e.updated_at,
            )
        })
        .collect();
    assert_eq!(
        memory,
        [
            (
                "notes/w1",
                serde_json::json!("the grammar is LL(1)"),
                1,
                "w1",
                at(25)
            ),
            (
                "plan",
                serde_json::json!({"steps": ["grammar", "parser"]}),
                1,
                "leader",
                at(24)
            ),
        ]
    );
    let budgets: Vec<_> = snap
        .budgets
        .iter()
        .map(|b| (b.role.as_deref(), b.set.tokens, b.set.usd, b.level))
        .collect();
    assert_eq!(
        budgets,
        [
            (None, Some(50_000), Some(2.5), BudgetLevel::Ok),
            (Some("worker"), None, None, BudgetLevel::Exceeded),
        ]
    );
}

#[test]
fn every_older_schema_opens_migrates_in_place_and_its_team_resumes() {
    let new = tempfile::tempdir().unwrap();
    let fresh = new.path().join("fresh.db");
    drop(Store::open(&fresh, TEAM).unwrap());
    for fixture in FIXTURES {
        let (_dir, db) = copy_of(fixture.file);
        assert_eq!(version_on_disk(&db), "1", "{}", fixture.file);

        // Read as it is first, as the CLI reads a stopped team whose daemon has not run since.
        let ro = Store::open_read_only(&db, TEAM).unwrap();
        assert_the_team_is_there(&ro, fixture);
        drop(ro);
        assert_eq!(version_on_disk(&db), "1", "a read does not migrate");

        let store = Store::open(&db, TEAM).unwrap();
        assert_the_team_is_there(&store, fixture);
        drop(store);
        assert_eq!(version_on_disk(&db), SCHEMA_VERSION.to_string());
        assert_eq!(
            shape(&db),
            shape(&fresh),
            "{}: the current schema",
            fixture.file
        );

        // The team runs on: a new task takes the next id, the pending request is decided, a
        // queued message is read; all of it there after a reopen.
        let mut store = Store::open(&db, TEAM).unwrap();
        let mut s = TeamState::restore(TEAM, store.load().unwrap());
        let task = s
            .task_add(
                &Actor::Operator,
                NewTask {
                    title: "after the upgrade".into(),
                    blocked_by: vec![2],
                    ..Default::default()
                },
                at(100),
            )
            .unwrap();
        assert_eq!(task.id, 6);
        s.perm_decide(&Actor::Operator, 2, true, false, None, None, at(101))
            .unwrap();
        s.ack(
            &Actor::Agent("w2".into()),
            &[3],
            DeliveryState::Read,
            at(102),
        )
        .unwrap();
        store.commit(&s.take_changes()).unwrap();
        drop(store);

        let store = Store::open(&db, TEAM).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.tasks.len(), 6);
        assert_eq!(
            (
                snap.tasks[5].title.as_str(),
                snap.tasks[5].blocked_by.as_slice()
            ),
            ("after the upgrade", &[2][..])
        );
        assert_eq!(snap.perms[1].status, PermStatus::Allowed);
        assert!(snap.unread.iter().all(|m| m.id != 3), "{:?}", snap.unread);
        assert_eq!(
            store.inbox("w2", 0, 10).unwrap()[0].state,
            DeliveryState::Read
        );
        assert!(snap.last_seq > 20, "events go on: {}", snap.last_seq);
    }
}

#[test]
fn a_failed_migration_keeps_nothing_of_it() {
    // A version 1 file on which the migration's last step fails (`replies` is a view, which
    // DROP TABLE refuses): the tables its earlier steps made are not there after.
    let (_dir, db) = copy_of("v1-c1cedc2.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE VIEW replies AS SELECT 1 AS x")
            .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    match Store::open(&db, TEAM) {
        Err(e @ StoreError::Migration { from: 1, .. }) => {
            assert!(e.to_string().contains("schema version 1"), "{e}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("migrated"),
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is as it was");
    assert_eq!(version_on_disk(&db), "1");
    let c = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let made: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('memory', 'usage', 'hook_runs')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(made, 0, "nothing of the failed migration stayed");
}

/// The files in `dir` with their bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Checks that `e` is the refusal of version `found`, saying both versions and what to do.
fn assert_refused(e: StoreError, found: i64) {
    let text = e.to_string();
    assert!(
        matches!(e, StoreError::TooNew { found: f } if f == found),
        "{text}"
    );
    for part in [
        format!("schema version {found}"),
        format!("up to {SCHEMA_VERSION}"),
        "upgrade agent-team".to_string(),
        "left untouched".to_string(),
    ] {
        assert!(text.contains(&part), "{part:?} in {text}");
    }
}

#[test]
fn a_store_of_a_newer_schema_is_refused_and_left_untouched() {
    let newer = SCHEMA_VERSION + 1;
    // Checkpointed into the file (its writer closed it as SQLite does)...
    let (dir, db) = copy_of("v1-238aa06.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema'",
            [newer.to_string()],
        )
        .unwrap();
    }
    let before = files(dir.path());
    assert_eq!(before.len(), 1, "one file, no WAL");
    assert_refused(Store::open(&db, TEAM).err().unwrap(), newer);
    assert!(
        files(dir.path()) == before,
        "nothing written, nothing made beside it"
    );
    assert_refused(Store::open_read_only(&db, TEAM).err().unwrap(), newer);
    assert_eq!(std::fs::read(&db).unwrap(), before[0].1);

    // ... and with the version only in the WAL its writer left (as a daemon's close does).
    let (dir, db) = copy_of("v1-238aa06.db");
    {
        let c = Connection::open(&db).unwrap();
        c.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema'",
            [newer.to_string()],
        )
        .unwrap();
    }
    let _ = std::fs::remove_file(dir.path().join("state.db-shm"));
    let before = files(dir.path());
    assert_eq!(before.len(), 2, "the file and its WAL");
    assert_refused(Store::open(&db, TEAM).err().unwrap(), newer);
    assert!(
        files(dir.path()) == before,
        "the file and its WAL as they were"
    );
}
