//! Team memory through the real binaries: the `memory` commands with and without `--json`,
//! values surviving a SIGKILLed daemon, and a value written by one model-driven teammate's
//! `memory_set` reaching the leader's model through `memory_get`.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn parse(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs `agent-team ARGS`, expecting it to fail; returns its stderr.
fn fails(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "agent-team {args:?} should fail"
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn memory_cli_sets_gets_lists_and_deletes_with_and_without_json() {
    let sb = Sandbox::new();
    // Reads never create a team; a bad write is refused before a daemon is started.
    let err = fails(&sb, &["--team", "web", "memory", "list"]);
    assert!(err.contains("there is no team \"web\""), "{err}");
    let err = fails(&sb, &["--team", "web", "memory", "get", "plan"]);
    assert!(err.contains("no team"), "{err}");
    let err = fails(&sb, &["--team", "web", "memory", "set", "a/../b", "1"]);
    assert!(err.contains("`..` segment"), "{err}");
    let huge = "x".repeat(memory::MAX_MEMORY_VALUE_LEN + 1);
    let err = fails(&sb, &["--team", "web", "memory", "set", "big", &huge]);
    assert!(err.contains("the limit is 65536"), "{err}");
    assert!(!sb.team("web").dir.exists(), "nothing created a team");

    // set: JSON when VALUE parses as JSON, else a string; --string forces a string.
    let out = sb.run(&[
        "--team",
        "web",
        "memory",
        "set",
        "plan",
        r#"{"steps":[1,2]}"#,
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("started the daemon for team web"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "stored plan (version 1)\n"
    );
    sb.ok(&[
        "--team",
        "web",
        "memory",
        "set",
        "notes/greeting",
        "hello world",
    ]);
    let w = parse(&sb.ok(&["--team", "web", "memory", "set", "count", "42", "--json"]));
    assert_eq!(w, json!({"key": "count", "version": 1, "deleted": false}));
    let w = parse(&sb.ok(&[
        "--team", "web", "memory", "set", "count", "42", "--string", "--json",
    ]));
    assert_eq!(w["version"], 2);

    // get: the value for people (a string as it is), the entry with --json.
    assert_eq!(
        sb.ok(&["--team", "web", "memory", "get", "notes/greeting"]),
        "hello world\n"
    );
    assert_eq!(
        parse(&sb.ok(&["--team", "web", "memory", "get", "plan"])),
        json!({"steps": [1, 2]})
    );
    let e = parse(&sb.ok(&["--team", "web", "memory", "get", "count", "--json"]));
    assert_eq!(
        (&e["key"], &e["value"], &e["version"], &e["updated_by"]),
        (&json!("count"), &json!("42"), &json!(2), &json!("operator"))
    );
    assert!(e["updated_at"].as_str().unwrap().ends_with('Z'), "{e}");
    let err = fails(&sb, &["--team", "web", "memory", "get", "missing"]);
    assert!(err.contains("no memory key \"missing\""), "{err}");

    // list: a table, or every entry as JSON; --prefix narrows.
    let table = sb.ok(&["--team", "web", "memory", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("VERSION"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("count ") && lines[1].contains("operator"),
        "{table}"
    );
    assert!(lines[2].starts_with("notes/greeting"), "{table}");
    assert!(
        lines[3].starts_with("plan ") && lines[3].contains(r#"{"steps":[1,2]}"#),
        "{table}"
    );
    let all = parse(&sb.ok(&["--team", "web", "memory", "list", "--json"]));
    let keys: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["count", "notes/greeting", "plan"]);
    let notes = parse(&sb.ok(&[
        "--team", "web", "memory", "list", "--prefix", "notes/", "--json",
    ]));
    assert_eq!(notes.as_array().unwrap().len(), 1);
    assert_eq!(notes[0]["value"], "hello world");

    // delete: once; a second time is not_found.
    assert_eq!(
        sb.ok(&["--team", "web", "memory", "delete", "notes/greeting"]),
        "deleted notes/greeting\n"
    );
    let err = fails(
        &sb,
        &["--team", "web", "memory", "delete", "notes/greeting"],
    );
    assert!(err.contains("no memory key"), "{err}");
    let d = parse(&sb.ok(&["--team", "web", "memory", "delete", "count", "--json"]));
    assert_eq!(d, json!({"key": "count", "version": 3, "deleted": true}));

    // One MEMORY_UPDATED event per change: plan, greeting, count twice, two deletions.
    let events: Vec<Value> = sb
        .ok(&["--team", "web", "events"])
        .lines()
        .map(parse)
        .filter(|e| e["event"]["type"] == "MEMORY_UPDATED")
        .collect();
    let seen: Vec<(String, u64, bool)> = events
        .iter()
        .map(|e| {
            let ev = &e["event"];
            (
                ev["key"].as_str().unwrap().to_string(),
                ev["version"].as_u64().unwrap(),
                ev["deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    let s = |k: &str| k.to_string();
    assert_eq!(
        seen,
        [
            (s("plan"), 1, false),
            (s("notes/greeting"), 1, false),
            (s("count"), 1, false),
            (s("count"), 2, false),
            (s("notes/greeting"), 2, true),
            (s("count"), 3, true),
        ]
    );
    assert_eq!(events[0]["event"]["value"], json!({"steps": [1, 2]}));
    assert_eq!(events[0]["event"]["by"], "operator");

    // A stopped team's memory is read from its store, without starting a daemon.
    sb.ok(&["--team", "web", "down"]);
    let tp = sb.team("web");
    assert!(!agent_team_client::daemon_running(&tp));
    let out = sb.run(&["--team", "web", "memory", "list", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"));
    let stored = parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stored.as_array().unwrap().len(), 1);
    assert_eq!(stored[0]["key"], "plan");
    assert_eq!(
        parse(&sb.ok(&["--team", "web", "memory", "get", "plan"])),
        json!({"steps": [1, 2]})
    );
    assert!(
        !agent_team_client::daemon_running(&tp),
        "a read started a daemon"
    );
}

#[test]
fn memory_survives_a_sigkilled_daemon_and_the_next_command_sees_it() {
    let sb = Sandbox::new();
    sb.ok(&[
        "--team",
        "web",
        "memory",
        "set",
        "outputs/b1",
        r#"{"ok":true}"#,
    ]);
    sb.ok(&["--team", "web", "memory", "set", "gone", "1"]);
    sb.ok(&["--team", "web", "memory", "delete", "gone"]);
    let tp = sb.team("web");
    let pid = match sb.operator("web").call(Request::Ping).unwrap() {
        Reply::Pong { daemon_pid } => daemon_pid,
        other => panic!("{other:?}"),
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the daemon to die", T, || {
        !agent_team_client::daemon_running(&tp)
    });

    // The next write reaches a new daemon (started by it, or already brought back by the
    // daemon's guardian: issue 26), which has every acknowledged change.
    let out = sb.run(&["--team", "web", "memory", "set", "after", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = parse(&sb.ok(&["--team", "web", "memory", "get", "outputs/b1", "--json"]));
    assert_eq!(
        (&e["value"], &e["version"]),
        (&json!({"ok": true}), &json!(1))
    );
    let err = fails(&sb, &["--team", "web", "memory", "get", "gone"]);
    assert!(
        err.contains("no memory key"),
        "the deletion survived too: {err}"
    );
    let w = parse(&sb.ok(&[
        "--team",
        "web",
        "memory",
        "set",
        "outputs/b1",
        "false",
        "--json",
    ]));
    assert_eq!(w["version"], 2, "versions go on");
    let new_pid = match sb.operator("web").call(Request::Ping).unwrap() {
        Reply::Pong { daemon_pid } => daemon_pid,
        other => panic!("{other:?}"),
    };
    assert_ne!(new_pid, pid);
}

/// Tool names offered to the model in an OpenAI chat-completions request.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_teammate_stores_a_value_and_the_leaders_model_reads_it() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("spawn_teammate", json!({"role": "worker", "name": "b1"})),
                ("spawn_teammate", json!({"role": "explorer", "name": "x1"})),
            ]),
            Step::Text("Waiting for the team.".into()),
            Step::Until {
                needles: vec!["b1 stored it".into(), "x1 is here".into()],
                then: Box::new(Step::tools(&[("memory_get", json!({"key": "outputs/b1"}))])),
                meanwhile: Box::new(Step::Text("Still waiting.".into())),
            },
            Step::tools(&[(
                "finish_team",
                json!({"answer": "b1 answered 42", "force": true}),
            )]),
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::tools(&[(
                "memory_set",
                json!({"key": "outputs/b1", "value": {"answer": 42, "note": "from b1"}}),
            )]),
            Step::tools(&[(
                "send_message",
                json!({"to": "leader", "text": "b1 stored it"}),
            )]),
            Step::Text("Done.".into()),
        ],
    );
    mock.script(
        "x1",
        vec![
            Step::tools(&[(
                "send_message",
                json!({"to": "leader", "text": "x1 is here"}),
            )]),
            Step::Text("Nothing to do.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"mt\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("b1 answered 42"), "{out}");

    // b1's value, as b1 wrote it, is the result of the leader's memory_get in its next request.
    let leader = mock.requests("leader");
    let results: Vec<Value> = leader
        .iter()
        .filter_map(|r| r["messages"].as_array())
        .flat_map(|m| m.iter().filter(|m| m["role"] == "tool"))
        .filter_map(|m| m["content"].as_str())
        .filter(|c| c.contains("outputs/b1"))
        .filter_map(|c| serde_json::from_str(c).ok())
        .collect();
    assert!(
        !results.is_empty(),
        "the value never reached the leader's model: {leader:?}"
    );
    let entry = &results[0];
    assert_eq!(entry["key"], "outputs/b1");
    assert_eq!(entry["value"], json!({"answer": 42, "note": "from b1"}));
    assert_eq!(
        (&entry["version"], &entry["updated_by"]),
        (&json!(1), &json!("b1"))
    );
    // b1 was told its write was stored.
    assert!(
        mock.requests("b1")
            .iter()
            .any(|r| r.to_string().contains("stored outputs/b1 (version 1)")),
        "{:?}",
        mock.requests("b1")
    );
    // Every role reads the memory; the explorer is not offered the write.
    let x1 = offered(&mock.requests("x1")[0]);
    assert!(x1.contains(&"memory_get".to_string()) && x1.contains(&"memory_list".to_string()));
    assert!(!x1.contains(&"memory_set".to_string()), "{x1:?}");
    assert!(offered(&mock.requests("b1")[0]).contains(&"memory_set".to_string()));
    assert!(offered(&leader[0]).contains(&"memory_set".to_string()));

    // The change is in the event log once, by b1, and in the stopped team's store.
    let store = agent_team_store::Store::open_read_only(&sb.team("mt").db, "mt").unwrap();
    let updates: Vec<Envelope> = store
        .events_since(0, 100_000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event, Event::MemoryUpdated { .. }))
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].agent_id, "b1");
    let e = parse(&sb.ok(&["--team", "mt", "memory", "get", "outputs/b1", "--json"]));
    assert_eq!(e["value"], json!({"answer": 42, "note": "from b1"}));
    assert_eq!(e["updated_by"], "b1");
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}
