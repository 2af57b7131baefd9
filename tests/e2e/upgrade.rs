//! Upgrades keep teams: a stopped team's state written by the previous schema
//! (`crates/store/tests/fixtures/v1-238aa06.db`, see its README) is read by the CLI as it is,
//! then migrated by the daemon a write starts, and the team goes on; a state of a newer schema
//! is refused with what to do, and left as it was.

use agent_team_e2e::*;
use std::path::Path;

/// The team the fixtures store.
const TEAM: &str = "upgraded";

/// The fixture `file` copied in as the stopped team's `state.db`.
fn install(sb: &Sandbox, file: &str) -> std::path::PathBuf {
    let tp = sb.team(TEAM);
    std::fs::create_dir_all(&tp.dir).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/store/tests/fixtures")
        .join(file);
    std::fs::copy(from, &tp.db).unwrap();
    tp.db
}

/// `agent-team --team upgraded ARGS --json`, parsed.
fn json(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--team", TEAM];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&sb.ok(&all)).unwrap()
}

#[test]
fn a_stopped_team_of_the_previous_schema_is_read_then_migrated_and_runs_on() {
    let sb = Sandbox::new();
    install(&sb, "v1-238aa06.db");

    // Read as it is: no daemon starts for a read.
    let tasks = json(&sb, &["task", "list"]);
    let rows: Vec<(u64, &str, &str)> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_u64().unwrap(),
                t["title"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "design the grammar", "completed"),
            (2, "write the parser", "in_progress"),
            (3, "review the parser", "pending"),
            (4, "benchmark on big files", "failed"),
            (5, "port to the old API", "cancelled"),
        ]
    );
    assert_eq!(tasks[1]["owner"], "w2");
    assert_eq!(tasks[2]["blocked_by"], serde_json::json!([2]));
    let inbox = json(&sb, &["inbox", "leader"]);
    let states: Vec<(u64, &str, &str)> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["from"].as_str().unwrap(),
                m["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (2, "w1", "delivered"),
            (4, "daemon", "queued"),
            (5, "daemon", "queued")
        ]
    );
    assert_eq!(inbox[0]["body"], "grammar done");
    let w1 = json(&sb, &["inbox", "w1"]);
    assert_eq!(
        (w1[0]["body"].as_str(), w1[0]["state"].as_str()),
        (Some("start on the grammar"), Some("read"))
    );
    let perms = json(&sb, &["perms"]);
    assert_eq!(perms.as_array().unwrap().len(), 1, "{perms}");
    assert_eq!(
        (
            perms[0]["id"].as_u64(),
            perms[0]["agent"].as_str(),
            perms[0]["input"].as_str(),
            perms[0]["status"].as_str()
        ),
        (
            Some(2),
            Some("w2"),
            Some("cargo test --release"),
            Some("pending")
        )
    );
    assert!(
        !agent_team_client::daemon_running(&sb.team(TEAM)),
        "a read started the daemon"
    );

    // A write starts the daemon, which migrates the state, and the team goes on.
    let task = json(
        &sb,
        &["task", "add", "after the upgrade", "--blocked-by", "2"],
    );
    assert_eq!(task["id"], 6);
    let tasks = json(&sb, &["task", "list"]);
    assert_eq!(tasks.as_array().unwrap().len(), 6);
    assert_eq!(tasks[0]["result"], "grammar in docs/grammar.md");
    assert_eq!(tasks[5]["title"], "after the upgrade");
    let inbox = json(&sb, &["inbox", "leader"]);
    assert_eq!(inbox[0]["body"], "grammar done");
    sb.ok(&["--team", TEAM, "down"]);
    let store = agent_team_store::Store::open_read_only(&sb.team(TEAM).db, TEAM).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        agent_team_store::SCHEMA_VERSION,
        "migrated in place"
    );
}

#[test]
fn a_stopped_team_of_a_newer_schema_is_refused_with_what_to_do_and_left_as_it_was() {
    let sb = Sandbox::new();
    let db = install(&sb, "v1-238aa06.db");
    // A state a later agent-team wrote: the previous fixture with its version row's value
    // (the text "1" after the key "schema", one byte; SQLite keeps no checksum) made newer.
    let newer = agent_team_store::SCHEMA_VERSION + 1;
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes
        .windows(7)
        .position(|w| w == b"schema1")
        .expect("the version row");
    bytes[at + 6] = b'0' + u8::try_from(newer).unwrap();
    std::fs::write(&db, &bytes).unwrap();

    for args in [&["task", "list"][..], &["task", "add", "more work"]] {
        let mut all = vec!["--team", TEAM];
        all.extend_from_slice(args);
        let out = sb.run(&all);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for part in [
            format!("schema version {newer}"),
            format!("up to {}", agent_team_store::SCHEMA_VERSION),
            "upgrade agent-team".to_string(),
        ] {
            assert!(err.contains(&part), "{args:?}: {part:?} in {err}");
        }
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "{args:?}: the file changed"
        );
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        assert!(!Path::new(&wal).exists(), "{args:?}: a WAL was made");
    }
    assert!(!agent_team_client::daemon_running(&sb.team(TEAM)));
}
