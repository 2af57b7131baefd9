//! Team memory over the socket: one agent writes, another reads; who may write; one
//! `MEMORY_UPDATED` event per change; exactly-once writes under a request id; limits; and
//! memory surviving a daemon restart.

use super::support::*;
use agent_team_client::Client;
use agent_team_protocol::*;
use serde_json::json;

fn set(
    c: &mut Client,
    key: &str,
    value: serde_json::Value,
) -> Result<Reply, agent_team_client::ClientError> {
    c.call(Request::MemorySet {
        key: key.into(),
        value,
    })
}

fn get(c: &mut Client, key: &str) -> Result<MemoryEntry, agent_team_client::ClientError> {
    match c.call(Request::MemoryGet { key: key.into() })? {
        Reply::Memory { entry } => Ok(entry),
        other => panic!("{other:?}"),
    }
}

/// The `MEMORY_UPDATED` events of the log as (key, version, deleted, by, value, agent_id).
fn memory_events(
    op: &mut Client,
) -> Vec<(String, u64, bool, String, Option<serde_json::Value>, String)> {
    op.all_events(0)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::MemoryUpdated {
                key,
                version,
                deleted,
                by,
                value,
            } => Some((key, version, deleted, by, value, e.agent_id)),
            _ => None,
        })
        .collect()
}

/// A configuration with the built-in roles (`worker` writes memory, `explorer` only reads).
fn configure(op: &mut Client) {
    let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/tmp"));
    cfg.backend = agent_team_config::BackendKind::Process;
    op.call(Request::Configure {
        config: serde_json::to_value(&cfg).unwrap(),
    })
    .unwrap();
}

#[test]
fn one_agent_writes_another_reads_and_each_change_is_one_event() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut op = t.operator();
    // x1 is an explorer: it reads but may not write (b1 and b2 are workers, which write).
    let Reply::Registered { secret, .. } = op
        .call(Request::Register {
            name: "x1".into(),
            role: "explorer".into(),
        })
        .unwrap()
    else {
        panic!()
    };
    configure(&mut op);
    let mut b1 = t.agent("b1");
    let mut b2 = t.agent("b2");
    let mut leader = t.agent("leader");

    let out = json!({"files": ["src/a.rs"], "tests": "pass"});
    assert_eq!(
        set(&mut b1, "outputs/b1", out.clone()).unwrap(),
        Reply::MemoryWritten {
            key: "outputs/b1".into(),
            version: 1,
            deleted: false
        }
    );
    let e = get(&mut b2, "outputs/b1").unwrap();
    assert_eq!(
        (&e.key, &e.value, e.version, e.updated_by.as_str()),
        (&"outputs/b1".to_string(), &out, 1, "b1")
    );
    let e = get(&mut leader, "outputs/b1").unwrap();
    assert_eq!(e.value, out);

    // A second writer bumps the version and becomes the writer.
    let Reply::MemoryWritten { version, .. } =
        set(&mut leader, "outputs/b1", json!("overridden")).unwrap()
    else {
        panic!()
    };
    assert_eq!(version, 2);
    let e = get(&mut b1, "outputs/b1").unwrap();
    assert_eq!((e.version, e.updated_by.as_str()), (2, "leader"));

    set(&mut op, "plan", json!({"steps": 2})).unwrap();
    match b2
        .call(Request::MemoryList {
            prefix: Some("outputs/".into()),
            after: None,
        })
        .unwrap()
    {
        Reply::MemoryEntries { entries } => {
            assert_eq!(
                entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
                ["outputs/b1"]
            );
        }
        other => panic!("{other:?}"),
    }
    let all = op.all_memory(None).unwrap();
    assert_eq!(
        all.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["outputs/b1", "plan"]
    );

    // An unknown key is not_found, for reads and deletes.
    let (code, details) = err_code(b2.call(Request::MemoryGet { key: "nope".into() }));
    assert_eq!(
        (code, &details["key"]),
        (ErrorCode::NotFound, &json!("nope"))
    );
    let (code, _) = err_code(op.call(Request::MemoryDelete { key: "nope".into() }));
    assert_eq!(code, ErrorCode::NotFound);

    // An explorer may read but not write; nothing changes.
    let mut x1 = Client::connect(
        &t.tp().socket,
        &agent_team_client::agent_hello("t", "x1", &secret, 0),
    )
    .unwrap();
    assert_eq!(get(&mut x1, "plan").unwrap().value, json!({"steps": 2}));
    let (code, details) = err_code(set(&mut x1, "plan", json!("mine")));
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert_eq!(
        (details["role"].as_str(), details["tool"].as_str()),
        (Some("explorer"), Some("memory_set"))
    );
    let (code, _) = err_code(x1.call(Request::MemoryDelete { key: "plan".into() }));
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert_eq!(get(&mut op, "plan").unwrap().version, 1);

    assert_eq!(
        op.call(Request::MemoryDelete { key: "plan".into() })
            .unwrap(),
        Reply::MemoryWritten {
            key: "plan".into(),
            version: 2,
            deleted: true
        }
    );
    let (code, _) = err_code(b1.call(Request::MemoryGet { key: "plan".into() }));
    assert_eq!(code, ErrorCode::NotFound);

    // Exactly one event per change, in order, stamped with who made it; refusals make none.
    let s = |x: &str| x.to_string();
    assert_eq!(
        memory_events(&mut op),
        [
            (s("outputs/b1"), 1, false, s("b1"), Some(out), s("b1")),
            (
                s("outputs/b1"),
                2,
                false,
                s("leader"),
                Some(json!("overridden")),
                s("leader")
            ),
            (
                s("plan"),
                1,
                false,
                s("operator"),
                Some(json!({"steps": 2})),
                s("operator")
            ),
            (s("plan"), 2, true, s("operator"), None, s("operator")),
        ]
    );
}

#[test]
fn without_a_configuration_only_the_leader_and_the_operator_write() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut b1 = t.agent("b1");
    let (code, details) = err_code(set(&mut b1, "k", json!(1)));
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert_eq!(details["agent"], "b1");
    set(&mut t.agent("leader"), "k", json!(1)).unwrap();
    set(&mut t.operator(), "k", json!(2)).unwrap();
    assert_eq!(get(&mut b1, "k").unwrap().version, 2);
}

#[test]
fn a_repeated_request_id_replays_the_reply_without_a_new_version() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    configure(&mut op);
    let mut b1 = t.agent("b1");
    let req = Request::MemorySet {
        key: "outputs/b1".into(),
        value: json!({"n": 1}),
    };
    let first = b1.call_with_rid(req.clone(), Some("mem-1".into())).unwrap();
    assert_eq!(
        first,
        Reply::MemoryWritten {
            key: "outputs/b1".into(),
            version: 1,
            deleted: false
        }
    );
    // The same request id again, also with another value: the first reply, nothing applied.
    let again = b1.call_with_rid(req.clone(), Some("mem-1".into())).unwrap();
    assert_eq!(again, first);
    let other_value = Request::MemorySet {
        key: "outputs/b1".into(),
        value: json!({"n": 2}),
    };
    assert_eq!(
        b1.call_with_rid(other_value, Some("mem-1".into())).unwrap(),
        first
    );
    let e = get(&mut op, "outputs/b1").unwrap();
    assert_eq!((e.version, &e.value), (1, &json!({"n": 1})));
    assert_eq!(memory_events(&mut op).len(), 1);

    // A delete under a request id, repeated after a restart, is answered from the record.
    let del = Request::MemoryDelete {
        key: "outputs/b1".into(),
    };
    let deleted = b1
        .call_with_rid(del.clone(), Some("mem-del".into()))
        .unwrap();
    drop(b1);
    drop(op);
    t.restart();
    let mut b1 = t.agent("b1");
    assert_eq!(
        b1.call_with_rid(del, Some("mem-del".into())).unwrap(),
        deleted
    );
    assert_eq!(
        b1.call_with_rid(req, Some("mem-1".into())).unwrap(),
        first,
        "remembered across the restart"
    );
    let mut op = t.operator();
    let (code, _) = err_code(op.call(Request::MemoryGet {
        key: "outputs/b1".into(),
    }));
    assert_eq!(
        code,
        ErrorCode::NotFound,
        "the delete held; the retry did not set it again"
    );
    assert_eq!(memory_events(&mut op).len(), 2);
}

#[test]
fn memory_survives_a_restart_and_limits_are_refused_with_their_codes() {
    let mut t = TestTeam::start().with_agents(&["leader"]);
    let mut op = t.operator();
    let big = json!("x".repeat(memory::MAX_MEMORY_VALUE_LEN - 2));
    set(&mut op, "big", big.clone()).unwrap();
    set(&mut op, "notes/a", json!([1, 2, 3])).unwrap();
    // Too large: bad_request with the field and sizes, as every size limit.
    let over = json!("x".repeat(memory::MAX_MEMORY_VALUE_LEN - 1));
    let (code, details) = err_code(set(&mut op, "big", over));
    assert_eq!(code, ErrorCode::BadRequest);
    assert_eq!(
        (details["field"].as_str(), details["limit"].as_u64()),
        (Some("value"), Some(memory::MAX_MEMORY_VALUE_LEN as u64))
    );
    for key in ["", "a/../b", "bell\u{7}", "/abs"] {
        let (code, details) = err_code(set(&mut op, key, json!(1)));
        assert_eq!(
            (code, details["field"].as_str()),
            (ErrorCode::BadRequest, Some("key")),
            "{key:?}"
        );
    }
    drop(op);
    t.restart();
    let mut op = t.operator();
    let e = get(&mut op, "big").unwrap();
    assert_eq!((e.value, e.version), (big, 1));
    assert_eq!(get(&mut op, "notes/a").unwrap().value, json!([1, 2, 3]));
    // Pages: a listing larger than a frame comes in pages that `all_memory` joins.
    for i in 0..20 {
        set(&mut op, &format!("page/{i:02}"), json!("y".repeat(60_000))).unwrap();
    }
    let first_page = match op
        .call(Request::MemoryList {
            prefix: Some("page/".into()),
            after: None,
        })
        .unwrap()
    {
        Reply::MemoryEntries { entries } => entries,
        other => panic!("{other:?}"),
    };
    assert!(
        first_page.len() < 20,
        "{} entries in one page",
        first_page.len()
    );
    assert_eq!(op.all_memory(Some("page/")).unwrap().len(), 20);
}
