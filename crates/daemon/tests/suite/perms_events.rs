//! Permission requests and the event log through the socket.

use super::support::*;
use agent_team_protocol::*;
use std::time::Duration;

fn perm(c: &mut agent_team_client::Client, tool: &str, input: &str) -> PermRequest {
    match c
        .call(Request::PermRequest {
            tool: tool.into(),
            input: input.into(),
            reason: "needed".into(),
        })
        .unwrap()
    {
        Reply::Perm { request } => request,
        other => panic!("{other:?}"),
    }
}

#[test]
fn operator_decides_once_and_the_requester_hears_it() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut b1 = t.agent("b1");
    let req = perm(&mut b1, "bash", "make");
    assert_eq!(req.status, PermStatus::Pending);
    let mut op = t.operator();
    match op
        .call(Request::PermList {
            all: false,
            after: None,
        })
        .unwrap()
    {
        Reply::Perms { requests } => assert_eq!(
            requests.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![req.id]
        ),
        other => panic!("{other:?}"),
    }
    let agents = match op.call(Request::Agents).unwrap() {
        Reply::Agents { agents } => agents,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        agents.iter().find(|a| a.name == "b1").unwrap().status,
        AgentStatus::Waiting
    );
    op.call(Request::PermDecide {
        id: req.id,
        allow: false,
        always: false,
        pattern: None,
        reason: Some("no".into()),
    })
    .unwrap();
    let (code, _) = err_code(op.call(Request::PermDecide {
        id: req.id,
        allow: true,
        always: false,
        pattern: None,
        reason: None,
    }));
    assert_eq!(code, ErrorCode::InvalidState);
    loop {
        if let Push::PermissionDecided { request } =
            b1.next_push(Some(Duration::from_secs(10))).unwrap()
        {
            assert_eq!(request.status, PermStatus::Denied);
            assert_eq!(request.decision.unwrap().reason.as_deref(), Some("no"));
            break;
        }
    }
}

#[test]
fn always_becomes_a_rule_for_every_teammate() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut b1 = t.agent("b1");
    let mut b2 = t.agent("b2");
    let r1 = perm(&mut b1, "bash", "cargo test");
    let r2 = perm(&mut b2, "bash", "cargo test");
    let mut op = t.operator();
    op.call(Request::PermDecide {
        id: r1.id,
        allow: true,
        always: true,
        pattern: None,
        reason: None,
    })
    .unwrap();
    // b2's pending request was resolved by the new rule, and its next one needs no prompt.
    match op
        .call(Request::PermList {
            all: true,
            after: None,
        })
        .unwrap()
    {
        Reply::Perms { requests } => {
            let r2 = requests.iter().find(|r| r.id == r2.id).unwrap();
            assert_eq!(r2.status, PermStatus::Allowed);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        perm(&mut b2, "bash", "cargo test").status,
        PermStatus::Allowed
    );
}

#[test]
fn an_always_pattern_rule_allows_matches_only_and_survives_a_restart() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut b1 = t.agent("b1");
    let r = perm(&mut b1, "bash", "cargo test --lib");
    let mut op = t.operator();
    let decide = |op: &mut agent_team_client::Client, pattern: &str| {
        op.call(Request::PermDecide {
            id: r.id,
            allow: true,
            always: true,
            pattern: Some(pattern.into()),
            reason: None,
        })
    };
    // A pattern that does not cover the request is refused, and nothing is decided.
    assert_eq!(err_code(decide(&mut op, "make*")).0, ErrorCode::BadRequest);
    decide(&mut op, "cargo test*").unwrap();
    assert_eq!(
        perm(&mut b1, "bash", "cargo test --all").status,
        PermStatus::Allowed
    );
    assert_eq!(
        perm(&mut b1, "bash", "cargo build").status,
        PermStatus::Pending
    );
    drop((b1, op));
    t.restart();
    let mut b1 = t.agent("b1");
    assert_eq!(
        perm(&mut b1, "bash", "cargo test x").status,
        PermStatus::Allowed
    );
    assert_eq!(
        perm(&mut b1, "bash", "cargo tes").status,
        PermStatus::Pending
    );
}

#[test]
fn unanswered_requests_time_out_as_denied() {
    let t = TestTeam::start_with(|o| o.perm_timeout = Duration::from_millis(100))
        .with_agents(&["leader", "b1"]);
    let mut b1 = t.agent("b1");
    let r = perm(&mut b1, "bash", "rm -rf /");
    loop {
        if let Push::PermissionDecided { request } =
            b1.next_push(Some(Duration::from_secs(10))).unwrap()
        {
            assert_eq!(request.id, r.id);
            assert_eq!(request.status, PermStatus::Denied);
            assert_eq!(request.decision.unwrap().by, "timeout");
            break;
        }
    }
}

#[test]
fn events_follow_gets_backlog_then_live_without_gaps() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    for i in 0..5 {
        add_task(&mut op, &format!("t{i}"), &[]);
    }
    let mut sub = t.operator();
    let last = match sub
        .call(Request::Subscribe {
            since: 2,
            types: None,
        })
        .unwrap()
    {
        Reply::Subscribed { last_seq } => last_seq,
        other => panic!("{other:?}"),
    };
    for i in 0..5 {
        add_task(&mut op, &format!("u{i}"), &[]);
    }
    let mut seqs = Vec::new();
    while seqs.len() < (last as usize - 2) + 5 {
        if let Push::Event { envelope } = sub.next_push(Some(Duration::from_secs(10))).unwrap() {
            assert_eq!(envelope.team_id, "t");
            seqs.push(envelope.seq);
        }
    }
    let expect: Vec<u64> = (3..=last + 5).collect();
    assert_eq!(seqs, expect);
}

/// A subscription to some event types gets only those, from its backlog and live, with their
/// own sequence numbers (the others are passed over, not renumbered); an unknown type is
/// refused, naming the valid ones. Fails with the filter ignored (a text event comes).
#[test]
fn a_subscription_to_some_event_types_gets_only_those() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let mut b1 = t.agent("b1");
    let text = |b1: &mut agent_team_client::Client| {
        b1.call(Request::Emit {
            event: Event::TextMessageContent {
                delta: "thinking".into(),
            },
        })
        .unwrap();
    };
    add_task(&mut op, "before", &[]);
    text(&mut b1);
    let mut sub = t.operator();
    let refused = sub.call(Request::Subscribe {
        since: 0,
        types: Some(vec!["TASK_UPDATED".into(), "NO_SUCH_EVENT".into()]),
    });
    let (code, details) = err_code(refused);
    assert_eq!(code, ErrorCode::BadRequest);
    assert_eq!(
        details["valid"].as_array().map(Vec::len),
        Some(EVENT_TYPES.len())
    );
    // A huge unknown name is not echoed whole.
    match sub.call(Request::Subscribe {
        since: 0,
        types: Some(vec!["X".repeat(100_000)]),
    }) {
        Err(agent_team_client::ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.len() < 200, "{} bytes", e.message.len());
        }
        other => panic!("{other:?}"),
    }
    let last = match sub
        .call(Request::Subscribe {
            since: 0,
            types: Some(vec!["TASK_UPDATED".into()]),
        })
        .unwrap()
    {
        Reply::Subscribed { last_seq } => last_seq,
        other => panic!("{other:?}"),
    };
    text(&mut b1);
    add_task(&mut op, "after", &[]);
    text(&mut b1);
    add_task(&mut op, "last", &[]);
    let mut titles = Vec::new();
    let mut seqs = Vec::new();
    while titles.len() < 3 {
        if let Push::Event { envelope } = sub.next_push(Some(Duration::from_secs(10))).unwrap() {
            seqs.push(envelope.seq);
            match envelope.event {
                Event::TaskUpdated { task } => titles.push(task.title),
                other => panic!("only task events were asked for, got {other:?}"),
            }
        }
    }
    assert_eq!(titles, ["before", "after", "last"]);
    assert!(
        seqs[0] <= last && seqs[1] > last + 1,
        "{seqs:?} around {last}"
    );
    // Nothing else is queued for it: the next push is the next task's.
    text(&mut b1);
    add_task(&mut op, "next", &[]);
    match sub.next_push(Some(Duration::from_secs(10))).unwrap() {
        Push::Event { envelope } => match *envelope {
            Envelope {
                event: Event::TaskUpdated { task },
                ..
            } => assert_eq!(task.title, "next"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn agents_emit_their_own_events_tagged_with_their_identity() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut b1 = t.agent("b1");
    b1.call(Request::Emit {
        event: Event::TextMessageContent {
            delta: "thinking".into(),
        },
    })
    .unwrap();
    let (code, _) = err_code(b1.call(Request::Emit {
        event: Event::RunFinished {
            answer: "x".into(),
            success: true,
        },
    }));
    assert_eq!(code, ErrorCode::BadRequest);
    let mut op = t.operator();
    let events = match op
        .call(Request::Events {
            since: 0,
            limit: None,
        })
        .unwrap()
    {
        Reply::Events { events } => events,
        other => panic!("{other:?}"),
    };
    let e = events
        .iter()
        .find(|e| matches!(e.event, Event::TextMessageContent { .. }))
        .unwrap();
    assert_eq!(
        (e.agent_id.as_str(), e.role_name.as_str()),
        ("b1", "worker")
    );
}

#[test]
fn a_leader_approver_that_disconnects_denies_what_waits_and_what_comes() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/tmp"));
    cfg.backend = agent_team_config::BackendKind::Process;
    cfg.approver = agent_team_config::Approver::Leader;
    let mut op = t.operator();
    op.call(Request::Configure {
        config: serde_json::to_value(&cfg).unwrap(),
    })
    .unwrap();
    let leader = t.agent("leader");
    let mut b1 = t.agent("b1");
    let waiting = perm(&mut b1, "bash", "make");
    assert_eq!(waiting.status, PermStatus::Pending);
    // The approver goes away: the waiting request is denied, and the requester hears it.
    drop(leader);
    loop {
        if let Push::PermissionDecided { request } =
            b1.next_push(Some(Duration::from_secs(10))).unwrap()
        {
            assert_eq!(request.id, waiting.id);
            assert_eq!(request.status, PermStatus::Denied);
            assert_eq!(request.decision.unwrap().by, "approver-gone");
            break;
        }
    }
    // A request made while no approver is connected is denied at once, not left hanging.
    let late = perm(&mut b1, "bash", "make install");
    let all = match op.call(Request::PermList {
        all: true,
        after: None,
    }) {
        Ok(Reply::Perms { requests }) => requests,
        other => panic!("{other:?}"),
    };
    let late = all.iter().find(|r| r.id == late.id).unwrap();
    assert_eq!(late.status, PermStatus::Denied);
    assert_eq!(late.decision.as_ref().unwrap().by, "approver-gone");
}

/// Adds `n` tasks as the operator, pipelined 200 at a time (well under the cut-off).
fn add_many(op: &mut agent_team_client::Client, n: usize) {
    for _ in 0..n / 200 {
        for _ in 0..200 {
            op.send(Request::TaskAdd {
                title: "t".into(),
                description: String::new(),
                run: None,
                blocked_by: vec![],
                assign: None,
                key: None,
            })
            .unwrap();
        }
        op.flush().unwrap();
        for _ in 0..200 {
            assert!(op.next_response().unwrap().1.is_ok());
        }
    }
}

fn connected(op: &mut agent_team_client::Client, name: &str) -> bool {
    match op.call(Request::Agents).unwrap() {
        Reply::Agents { agents } => agents.iter().any(|a| a.name == name && a.connected),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_slow_subscriber_gets_its_backlog_and_a_client_that_stops_reading_is_cut() {
    // A small cut-off so the test needs few frames.
    let t = TestTeam::start_with(|o| {
        o.max_queued_frames = 1000;
        o.limits.max_unread_bytes = 512 * 1024;
    })
    .with_agents(&["leader", "b1", "b2"]);
    let mut op = t.operator();
    add_many(&mut op, 5000);
    // b1 asks for a backlog five times the cut-off and reads it only later: the daemon sends it
    // as b1 makes room, never enough at once to cut b1 off.
    let mut b1 = t.agent("b1");
    let last = match b1
        .call(Request::Subscribe {
            since: 0,
            types: None,
        })
        .unwrap()
    {
        Reply::Subscribed { last_seq } => last_seq,
        other => panic!("{other:?}"),
    };
    for _ in 0..20 {
        assert!(connected(&mut op, "b1"), "a catch-up cut b1 off");
    }
    let mut seen = 0;
    while seen < last {
        match b1.next_push(Some(Duration::from_secs(20))).unwrap() {
            Push::Event { envelope } => {
                assert_eq!(envelope.seq, seen + 1);
                seen = envelope.seq;
            }
            _ => continue,
        }
    }
    drop(b1);
    // b2 is caught up, then stops reading while thousands of live events come: it is cut at
    // once, without waiting for it to read what was queued.
    let mut b2 = t.agent("b2");
    b2.call(Request::Subscribe {
        since: last + 10_000,
        types: None,
    })
    .unwrap();
    assert!(connected(&mut op, "b2"));
    add_many(&mut op, 5000);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while connected(&mut op, "b2") {
        assert!(std::time::Instant::now() < deadline, "b2 was never cut off");
        std::thread::yield_now();
    }
    drop(b2);
    // Everyone else is served as before.
    assert!(matches!(
        op.call(Request::Ping).unwrap(),
        Reply::Pong { .. }
    ));
}
