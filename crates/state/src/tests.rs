//! Rule tests straight on the state; the daemon's suite repeats the important ones over the socket.

use super::*;
use crate::tasks::NewTask;

fn now() -> Timestamp {
    Timestamp(1_000)
}

fn team_with(names: &[&str]) -> TeamState {
    let mut s = TeamState::new("t");
    for n in names {
        let role = if *n == "leader" { "leader" } else { "worker" };
        let info = AgentInfo {
            status: AgentStatus::Idle,
            ..AgentInfo::new(n, role, "external", 1, now())
        };
        s.add_agent(
            &Actor::Operator,
            AgentRecord {
                info,
                secret: "s".into(),
                spec: serde_json::Value::Null,
            },
            now(),
        )
        .unwrap();
    }
    s.take_changes();
    s
}

fn add(s: &mut TeamState, title: &str, blocked_by: &[u64]) -> u64 {
    s.task_add(
        &Actor::Operator,
        NewTask {
            title: title.into(),
            blocked_by: blocked_by.to_vec(),
            ..Default::default()
        },
        now(),
    )
    .unwrap()
    .id
}

fn a(n: &str) -> Actor {
    Actor::Agent(n.into())
}

#[test]
fn claim_rules_name_what_is_wrong() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let t1 = add(&mut s, "one", &[]);
    let t2 = add(&mut s, "two", &[t1]);
    let t3 = add(&mut s, "three", &[]);

    let e = s.task_claim(&a("b1"), t2, now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Blocked);
    assert_eq!(e.details["blockers"], serde_json::json!([t1]));

    s.task_claim(&a("b1"), t1, now()).unwrap();
    let e = s.task_claim(&a("b2"), t1, now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(e.details["owner"], "b1");

    let e = s.task_claim(&a("b1"), t3, now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy);
    assert_eq!(e.details["task"], t1);

    assert_eq!(
        s.task_claim(&a("b1"), 99, now()).unwrap_err().code,
        ErrorCode::NotFound
    );

    s.task_finish(
        &a("b1"),
        t1,
        TaskStatus::Completed,
        Some("ok".into()),
        now(),
    )
    .unwrap();
    assert_eq!(
        s.task_claim(&a("b2"), t2, now()).unwrap().owner.as_deref(),
        Some("b2")
    );
    let e = s.task_claim(&a("b1"), t1, now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
}

#[test]
fn failed_or_cancelled_blockers_keep_dependents_blocked() {
    let mut s = team_with(&["leader", "b1"]);
    let t1 = add(&mut s, "one", &[]);
    let t2 = add(&mut s, "two", &[t1]);
    let t3 = add(&mut s, "three", &[]);
    let t4 = add(&mut s, "four", &[t3]);
    s.task_claim(&a("b1"), t1, now()).unwrap();
    s.task_finish(&a("b1"), t1, TaskStatus::Failed, None, now())
        .unwrap();
    assert_eq!(
        s.task_claim(&a("b1"), t2, now()).unwrap_err().code,
        ErrorCode::Blocked
    );
    s.task_cancel(&Actor::Operator, t3, now()).unwrap();
    assert_eq!(
        s.task_claim(&a("b1"), t4, now()).unwrap_err().code,
        ErrorCode::Blocked
    );
    s.task_retry(&Actor::Operator, t1, now()).unwrap();
    assert_eq!(s.task(t1).unwrap().status, TaskStatus::Pending);
}

#[test]
fn transitions_outside_the_table_are_invalid_state() {
    let mut s = team_with(&["leader", "b1"]);
    let t = add(&mut s, "one", &[]);
    assert_eq!(
        s.task_release(&Actor::Operator, t, now()).unwrap_err().code,
        ErrorCode::InvalidState
    );
    assert_eq!(
        s.task_finish(&Actor::Operator, t, TaskStatus::Completed, None, now())
            .unwrap_err()
            .code,
        ErrorCode::InvalidState
    );
    assert_eq!(
        s.task_retry(&Actor::Operator, t, now()).unwrap_err().code,
        ErrorCode::InvalidState
    );
    s.task_claim(&a("b1"), t, now()).unwrap();
    assert_eq!(
        s.task_cancel(&Actor::Operator, t, now()).unwrap_err().code,
        ErrorCode::InvalidState
    );
    s.task_finish(&a("b1"), t, TaskStatus::Completed, None, now())
        .unwrap();
    assert_eq!(
        s.task_cancel(&Actor::Operator, t, now()).unwrap_err().code,
        ErrorCode::InvalidState
    );
}

#[test]
fn teammates_cannot_do_leader_things_and_nothing_changes() {
    let mut s = team_with(&["leader", "b1"]);
    let t = add(&mut s, "one", &[]);
    s.take_changes();
    let e = s
        .task_add(
            &a("b1"),
            NewTask {
                title: "x".into(),
                ..Default::default()
            },
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert_eq!(
        s.task_cancel(&a("b1"), t, now()).unwrap_err().code,
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        s.task_assign(&a("b1"), t, "b1", now()).unwrap_err().code,
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        s.finish(&a("b1"), "x".into(), true, true, None, now())
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    assert!(!s.has_changes());
    assert_eq!(s.tasks(None).len(), 1);
    // The leader may.
    s.task_add(
        &a("leader"),
        NewTask {
            title: "y".into(),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
}

#[test]
fn blocked_by_must_exist_and_nothing_is_stored() {
    let mut s = team_with(&["leader"]);
    let e = s
        .task_add(
            &Actor::Operator,
            NewTask {
                title: "x".into(),
                blocked_by: vec![5],
                ..Default::default()
            },
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(s.tasks(None).is_empty());
    // The id was not consumed either.
    assert_eq!(add(&mut s, "first", &[]), 1);
}

#[test]
fn assignment_starts_or_reserves() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let t1 = add(&mut s, "one", &[]);
    let t2 = add(&mut s, "two", &[t1]);
    let got = s.task_assign(&Actor::Operator, t1, "b1", now()).unwrap();
    assert_eq!(got.status, TaskStatus::InProgress);
    let got = s.task_assign(&Actor::Operator, t2, "b2", now()).unwrap();
    assert_eq!(
        (got.status, got.owner.as_deref()),
        (TaskStatus::Pending, Some("b2"))
    );
    assert_eq!(
        s.task_claim(&a("b1"), t2, now()).unwrap_err().code,
        ErrorCode::Conflict
    );
    // Its last blocker completed: the reserved task starts for b2 without anyone asking.
    s.task_finish(&a("b1"), t1, TaskStatus::Completed, None, now())
        .unwrap();
    let t2_now = s.task(t2).unwrap();
    assert_eq!(
        (t2_now.status, t2_now.owner.as_deref()),
        (TaskStatus::InProgress, Some("b2"))
    );
    assert_eq!(s.held_task("b2"), Some(t2));
    // Assigned while b2 is busy: reserved, and started when b2 finishes what it holds.
    let t3 = add(&mut s, "three", &[]);
    let got = s.task_assign(&Actor::Operator, t3, "b2", now()).unwrap();
    assert_eq!(
        (got.status, got.owner.as_deref()),
        (TaskStatus::Pending, Some("b2"))
    );
    s.task_finish(&a("b2"), t2, TaskStatus::Failed, None, now())
        .unwrap();
    assert_eq!(s.task(t3).unwrap().status, TaskStatus::InProgress);
    assert_eq!(s.held_task("b2"), Some(t3));
    // A failed blocker starts nothing.
    let t4 = add(&mut s, "four", &[]);
    let t5 = add(&mut s, "five", &[t4]);
    s.task_assign(&Actor::Operator, t4, "b1", now()).unwrap();
    s.task_assign(&Actor::Operator, t5, "b1", now()).unwrap();
    s.task_finish(&a("b1"), t4, TaskStatus::Failed, None, now())
        .unwrap();
    assert_eq!(s.task(t5).unwrap().status, TaskStatus::Pending);
    // What a completion unblocks is in its `blocks`.
    assert_eq!(s.task_view(t4).unwrap().blocks, vec![t5]);
    let e = s
        .task_assign(&Actor::Operator, t1, "nobody", now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn claim_next_takes_the_lowest_claimable() {
    let mut s = team_with(&["leader", "b1"]);
    let t1 = add(&mut s, "one", &[]);
    let _t2 = add(&mut s, "two", &[t1]);
    let t3 = add(&mut s, "three", &[]);
    s.task_assign(&Actor::Operator, t1, "leader", now())
        .unwrap();
    assert_eq!(s.task_claim_next(&a("b1"), now()).unwrap().unwrap().id, t3);
    assert_eq!(
        s.task_claim_next(&a("b1"), now()).unwrap_err().code,
        ErrorCode::Busy
    );
}

#[test]
fn ids_continue_after_restore() {
    let mut s = team_with(&["leader"]);
    add(&mut s, "a", &[]);
    add(&mut s, "b", &[]);
    let tasks = s.tasks(None);
    let s2 = TeamState::restore(
        "t",
        Snapshot {
            max_task_id: 2,
            tasks,
            ..Default::default()
        },
    );
    let mut s2 = s2;
    assert_eq!(add(&mut s2, "c", &[]), 3);
}

#[test]
fn messages_unknown_recipient_broadcast_fifo_and_full() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let e = s
        .send(
            &a("b1"),
            "nobody",
            "x".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(
        e.details["valid"],
        serde_json::json!(["leader", "b1", "b2"])
    );

    let (ids, to) = s
        .send(
            &a("b1"),
            "*",
            "hello".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    assert_eq!(to, vec!["leader", "b2"]);
    assert_eq!(ids.len(), 2);
    assert!(s.unread("b1").is_empty());
    assert_eq!(s.unread("b2")[0].from, "b1");

    for i in 0..5 {
        s.send(
            &a("leader"),
            "b2",
            format!("m{i}"),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    }
    let bodies: Vec<String> = s.unread("b2").into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, vec!["hello", "m0", "m1", "m2", "m3", "m4"]);

    s.set_inbox_limit(6);
    let e = s
        .send(&a("b1"), "*", "x".into(), MessageKind::Text, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InboxFull);
    assert_eq!(
        s.unread_count("leader"),
        1,
        "all or nothing: the leader got no copy"
    );
    let ids: Vec<u64> = s.unread("b2").iter().map(|m| m.id).collect();
    assert_eq!(
        s.ack(&a("b2"), &ids[..1], DeliveryState::Read, now())
            .unwrap(),
        1
    );
    s.send(
        &a("b1"),
        "b2",
        "fits".into(),
        MessageKind::Text,
        None,
        now(),
    )
    .unwrap();
}

#[test]
fn acks_only_move_forward_and_only_for_the_owner() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let (ids, _) = s
        .send(
            &a("leader"),
            "b1",
            "x".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    assert_eq!(
        s.ack(&a("b2"), &ids, DeliveryState::Read, now())
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied,
        "not b2's to acknowledge"
    );
    assert_eq!(
        s.ack(&a("b1"), &ids, DeliveryState::Delivered, now())
            .unwrap(),
        1
    );
    assert_eq!(
        s.ack(&a("b1"), &ids, DeliveryState::Delivered, now())
            .unwrap(),
        0
    );
    assert_eq!(s.unread("b1")[0].state, DeliveryState::Delivered);
    assert_eq!(
        s.ack(&a("b1"), &ids, DeliveryState::Read, now()).unwrap(),
        1
    );
    assert!(s.unread("b1").is_empty());
}

#[test]
fn a_read_copy_may_be_acknowledged_again_and_another_agents_unread_one_never() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let (ids, _) = s
        .send(
            &a("leader"),
            "*",
            "x".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    let copy = |s: &TeamState, who: &str| s.unread(who)[0].id;
    let (c1, c2) = (copy(&s, "b1"), copy(&s, "b2"));
    assert!(ids.contains(&c1) && ids.contains(&c2));
    // Read before its `delivered` arrives: the late `delivered` is let through, changing nothing.
    assert_eq!(
        s.ack(&a("b1"), &[c1], DeliveryState::Read, now()).unwrap(),
        1
    );
    assert_eq!(
        s.ack(&a("b1"), &[c1], DeliveryState::Delivered, now())
            .unwrap(),
        0
    );
    // b2's unread copy is still not b1's, nor b1's read one b2's.
    let refused = s
        .ack(&a("b1"), &[c2], DeliveryState::Delivered, now())
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    assert!(refused.message.contains("b2"), "{}", refused.message);
    assert_eq!(
        s.ack(&a("b2"), &[c1], DeliveryState::Read, now()).unwrap(),
        0
    );
    // Restored from its snapshot, the same.
    let unread = [s.unread("b1"), s.unread("b2")].concat();
    let mut s = TeamState::restore(
        "t",
        Snapshot {
            max_message_id: c1.max(c2),
            unread,
            ..Default::default()
        },
    );
    assert_eq!(
        s.ack(&a("b1"), &[c2], DeliveryState::Read, now())
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        s.ack(&a("b2"), &[c2], DeliveryState::Read, now()).unwrap(),
        1
    );
    assert_eq!(
        s.ack(&a("b1"), &[c2], DeliveryState::Read, now()).unwrap(),
        0
    );
}

#[test]
fn a_batchs_list_of_changes_is_used_again_emptied() {
    let mut s = team_with(&["leader", "b1"]);
    s.take_changes();
    for _ in 0..100 {
        add(&mut s, "t", &[]);
    }
    let used = s.take_changes();
    assert!(used.len() >= 100);
    let room = used.capacity();
    s.recycle_changes(used);
    add(&mut s, "u", &[]);
    let next = s.take_changes();
    assert_eq!(next.capacity(), room, "the same room");
    assert!(
        next.iter()
            .all(|c| !matches!(c, Change::Task(t) if t.title == "t"))
    );
    // Not taken back over changes made meanwhile, nor past its bound.
    add(&mut s, "v", &[]);
    s.recycle_changes(Vec::with_capacity(room * 2));
    assert!(
        s.take_changes()
            .iter()
            .any(|c| matches!(c, Change::Task(t) if t.title == "v"))
    );
    s.recycle_changes(Vec::with_capacity(RECYCLED_CHANGES + 1));
    assert!(s.take_changes().capacity() <= RECYCLED_CHANGES);
}

#[test]
fn an_agents_activity_needs_no_sync_but_its_start_does() {
    let mut s = team_with(&["leader", "b1"]);
    s.take_changes();
    // A launch: a new incarnation starting is stored before anything else is answered.
    s.update_agent("b1", |a| a.info.incarnation += 1);
    s.set_agent_status(
        "b1",
        AgentStatus::Starting,
        Some("incarnation 1".into()),
        now(),
    );
    assert!(s.take_changes().iter().all(Change::needs_sync));
    // Its connection and its work: activity only.
    s.mark_connected("b1");
    s.set_agent_status("b1", AgentStatus::Running, Some("connected".into()), now());
    s.set_agent_status("b1", AgentStatus::Waiting, None, now());
    let activity = s.take_changes();
    assert!(!activity.is_empty());
    assert!(activity.iter().all(|c| !c.needs_sync()), "{activity:?}");
    assert!(s.agent("b1").unwrap().info.connected);
    // Going idle tells the leader (a message): stored before it is answered.
    s.set_agent_status("b1", AgentStatus::Idle, None, now());
    assert!(s.take_changes().iter().any(Change::needs_sync));
    // Stopping is not activity.
    s.set_agent_status("b1", AgentStatus::Stopped, None, now());
    assert!(s.take_changes().iter().all(Change::needs_sync));
}

#[test]
fn idle_notifications_are_coalesced() {
    let mut s = team_with(&["leader", "b1"]);
    s.set_agent_status("b1", AgentStatus::Running, None, now());
    s.set_agent_status("b1", AgentStatus::Idle, None, now());
    s.set_agent_status("b1", AgentStatus::Running, None, now());
    s.set_agent_status("b1", AgentStatus::Idle, None, now());
    let idle: Vec<_> = s
        .unread("leader")
        .into_iter()
        .filter(|m| m.kind == MessageKind::Idle)
        .collect();
    assert_eq!(idle.len(), 1);
}

#[test]
fn permissions_resolve_once_and_always_becomes_a_rule() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let r1 = s
        .perm_request(
            &a("b1"),
            "bash".into(),
            "make".into(),
            "build".into(),
            now(),
        )
        .unwrap();
    let r2 = s
        .perm_request(
            &a("b2"),
            "bash".into(),
            "make".into(),
            "build".into(),
            now(),
        )
        .unwrap();
    assert_eq!(r1.status, PermStatus::Pending);
    assert_eq!(
        s.perm_decide(&a("b2"), r1.id, true, false, None, None, now())
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    let resolved = s
        .perm_decide(&Actor::Operator, r1.id, true, true, None, None, now())
        .unwrap();
    assert_eq!(
        resolved.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![r1.id, r2.id]
    );
    let e = s
        .perm_decide(&Actor::Operator, r1.id, false, false, None, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    let r3 = s
        .perm_request(
            &a("b2"),
            "bash".into(),
            "make".into(),
            "again".into(),
            now(),
        )
        .unwrap();
    assert_eq!(r3.status, PermStatus::Allowed);
    let r4 = s
        .perm_request(&a("b2"), "bash".into(), "rm -rf /".into(), "".into(), now())
        .unwrap();
    assert_eq!(r4.status, PermStatus::Pending);
    assert!(
        s.perm_expire(r4.id, "timeout", "no answer".into(), now())
            .is_some()
    );
    assert_eq!(s.perm(r4.id).unwrap().status, PermStatus::Denied);
    assert!(
        s.perm_expire(r4.id, "timeout", "again".into(), now())
            .is_none()
    );
}

/// Raises a bash request from b1 for `input`.
fn ask(s: &mut TeamState, input: &str) -> PermRequest {
    s.perm_request(&a("b1"), "bash".into(), input.into(), "".into(), now())
        .unwrap()
}

#[test]
fn an_always_rule_allows_exactly_its_input_even_when_it_has_a_star() {
    let mut s = team_with(&["leader", "b1"]);
    let r = ask(&mut s, "echo *");
    s.perm_decide(&Actor::Operator, r.id, true, true, None, None, now())
        .unwrap();
    assert_eq!(ask(&mut s, "echo *").status, PermStatus::Allowed);
    for other in ["echo $(rm -rf ~)", "echo ", "echo *x"] {
        assert_eq!(ask(&mut s, other).status, PermStatus::Pending, "{other}");
    }
    // Rules stored before `glob` existed are exact ones.
    let old: PermRule =
        serde_json::from_str(r#"{"tool":"bash","input":"ls *","from_request":1}"#).unwrap();
    assert!(old.allows("bash", "ls *") && !old.allows("bash", "ls /etc"));
}

#[test]
fn an_always_rule_with_a_pattern_allows_every_match_and_no_more() {
    let mut s = team_with(&["leader", "b1"]);
    let r = ask(&mut s, "cargo test --lib");
    let waiting = ask(&mut s, "cargo test --all");
    let other = ask(&mut s, "cargo build");
    // The pattern must cover the request it answers, and only goes with "always".
    let e = s
        .perm_decide(
            &Actor::Operator,
            r.id,
            true,
            true,
            Some("make*".into()),
            None,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = s
        .perm_decide(
            &Actor::Operator,
            r.id,
            true,
            false,
            Some("cargo test*".into()),
            None,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(s.perm(r.id).unwrap().status, PermStatus::Pending);
    let resolved = s
        .perm_decide(
            &Actor::Operator,
            r.id,
            true,
            true,
            Some("cargo test*".into()),
            None,
            now(),
        )
        .unwrap();
    assert_eq!(
        resolved.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![r.id, waiting.id],
        "the waiting match is allowed too"
    );
    assert_eq!(s.perm(other.id).unwrap().status, PermStatus::Pending);
    assert_eq!(ask(&mut s, "cargo test").status, PermStatus::Allowed);
    assert_eq!(
        ask(&mut s, "cargo build --release").status,
        PermStatus::Pending
    );
    assert!(s.rules()[0].glob);
}

#[test]
fn finish_refuses_open_work_unless_forced() {
    let mut s = team_with(&["leader"]);
    add(&mut s, "a", &[]);
    let e = s
        .finish(&a("leader"), "done".into(), false, true, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    s.finish(&a("leader"), "done".into(), true, true, None, now())
        .unwrap();
    assert_eq!(s.run().answer.as_deref(), Some("done"));
}

#[test]
fn event_sequence_has_no_gaps() {
    let mut s = team_with(&["leader", "b1"]);
    add(&mut s, "a", &[]);
    s.send(
        &a("leader"),
        "b1",
        "x".into(),
        MessageKind::Text,
        None,
        now(),
    )
    .unwrap();
    let seqs: Vec<u64> = s
        .take_changes()
        .into_iter()
        .filter_map(|c| {
            if let Change::Event(e) = c {
                Some(e.seq)
            } else {
                None
            }
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn stale_shutdowns_are_dropped_and_other_messages_kept() {
    let mut s = team_with(&["leader", "b1"]);
    let send = |s: &mut TeamState, kind: MessageKind, body: &str| {
        s.send(&Actor::Operator, "b1", body.into(), kind, None, now())
            .unwrap()
    };
    send(&mut s, MessageKind::Text, "keep me");
    send(&mut s, MessageKind::ShutdownRequest, "exit");
    s.take_changes();
    assert_eq!(s.drop_stale_shutdowns("b1"), 1);
    let left: Vec<String> = s.unread("b1").into_iter().map(|m| m.body).collect();
    assert_eq!(left, vec!["keep me".to_string()]);
    // The store hears about it, so a restarted daemon does not bring the request back.
    assert!(s.take_changes().iter().any(|c| matches!(
        c,
        Change::MessageState {
            state: DeliveryState::Read,
            ..
        }
    )));
    assert_eq!(s.drop_stale_shutdowns("b1"), 0);
    assert_eq!(s.drop_stale_shutdowns("nobody"), 0);
}

/// Regression (found by `crates/store/tests/prop_state.rs`): a spawn rolled back after its
/// agent was given a task left the task in progress with an owner no longer on the roster.
#[test]
fn a_rolled_back_agent_gives_its_task_back() {
    let mut s = team_with(&["leader", "w4"]);
    let t = add(&mut s, "one", &[]);
    let claimed = s.task_claim(&a("w4"), t, now()).unwrap();
    assert_eq!(claimed.status, TaskStatus::InProgress);
    s.take_changes();

    s.remove_agent("w4", "did not connect back", now());
    let task = s.task(t).unwrap();
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(task.owner, None);
    assert!(
        s.take_changes()
            .iter()
            .any(|c| matches!(c, Change::Task(t) if t.status == TaskStatus::Pending)),
        "the release is persisted"
    );
}

#[test]
fn permission_notices_and_shutdown_requests_get_through_a_full_inbox() {
    let mut s = team_with(&["leader", "b1"]);
    s.set_inbox_limit(2);
    for i in 0..2 {
        s.send(
            &a("b1"),
            "leader",
            format!("m{i}"),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    }
    let e = s
        .send(
            &Actor::Daemon,
            "leader",
            "x".into(),
            MessageKind::TaskEvent,
            None,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InboxFull);
    for kind in [MessageKind::Permission, MessageKind::ShutdownRequest] {
        s.send(&Actor::Daemon, "leader", "notice".into(), kind, None, now())
            .unwrap();
    }
    assert_eq!(s.unread_count("leader"), 4);
}

#[test]
fn acknowledging_another_agents_message_is_refused_and_changes_nothing() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let (ids, _) = s
        .send(
            &a("b1"),
            "b2",
            "for b2".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    let e = s
        .ack(&a("b1"), &ids, DeliveryState::Read, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    assert_eq!(s.unread_count("b2"), 1, "still unread for b2");
    let e = s
        .ack(&a("b2"), &[ids[0] + 100], DeliveryState::Read, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    // Its own, twice (a retry after a reconnect): fine both times.
    assert_eq!(
        s.ack(&a("b2"), &ids, DeliveryState::Read, now()).unwrap(),
        1
    );
    assert_eq!(
        s.ack(&a("b2"), &ids, DeliveryState::Read, now()).unwrap(),
        0
    );
}

#[test]
fn strategy_events_come_from_the_leader_and_finish_keeps_the_run_details() {
    let mut s = team_with(&["leader", "b1"]);
    let started = Event::WorkerStarted {
        worker: "b1".into(),
        round: 1,
        task: "do it".into(),
    };
    s.emit(&a("leader"), started.clone(), now()).unwrap();
    let e = s.emit(&a("b1"), started, now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    // A finish with details keeps them; without, the stored configuration's strategy.
    s.set_config(
        &Actor::Operator,
        serde_json::json!({"strategy": "collaborate"}),
    )
    .unwrap();
    s.start_run(&Actor::Operator, None, now()).unwrap();
    s.finish(&a("leader"), "x".into(), true, true, None, now())
        .unwrap();
    let d = s.run().details.clone().unwrap();
    assert_eq!((d.strategy, d.rounds), (TeamStrategy::Collaborate, 0));
    s.start_run(&Actor::Operator, None, now()).unwrap();
    assert_eq!(s.run().details, None, "a new run starts without details");
    let given = RunDetails {
        strategy: TeamStrategy::Coordinator,
        rounds: 3,
        worker_outputs: [("b1".to_string(), "out".to_string())].into(),
    };
    s.finish(
        &a("leader"),
        "y".into(),
        true,
        false,
        Some(given.clone()),
        now(),
    )
    .unwrap();
    assert_eq!(s.run().details, Some(given.clone()));
    // The record is stored as JSON and read back with them.
    let stored: RunRecord = serde_json::from_value(serde_json::to_value(s.run()).unwrap()).unwrap();
    assert_eq!(stored.details, Some(given));
    let old: RunRecord = serde_json::from_str(r#"{"state":"finished","answer":"a"}"#).unwrap();
    assert_eq!(old.details, None, "a record stored before details loads");
}

/// `set_todos`: an agent replaces its own checklist, which is stored with its record; the
/// operator has none to set.
#[test]
fn an_agent_sets_its_own_checklist_and_it_is_stored() {
    let mut s = team_with(&["leader", "w1"]);
    let items = vec![
        TodoItem {
            content: "read".into(),
            status: TodoStatus::Completed,
        },
        TodoItem {
            content: "fix".into(),
            status: TodoStatus::InProgress,
        },
    ];
    let info = s.set_todos(&a("w1"), items.clone(), now()).unwrap();
    assert_eq!(info.todos, items);
    let changes = s.take_changes();
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Agent(a) if a.info.name == "w1" && a.info.todos == items)),
        "the record with its list is persisted"
    );
    assert_eq!(
        s.agents().iter().find(|a| a.name == "w1").unwrap().todos,
        items
    );
    // A new list replaces the old one; an empty one clears it.
    s.set_todos(&a("w1"), vec![], now()).unwrap();
    assert!(s.agent("w1").unwrap().info.todos.is_empty());
    let e = s.set_todos(&Actor::Operator, items, now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
}

/// A team with a leader and a plan-required teammate `p1` (and `w1`, who needs no plan).
fn team_with_planner() -> TeamState {
    let mut s = team_with(&["leader", "w1"]);
    let info = AgentInfo {
        status: AgentStatus::Idle,
        plan: Some(PlanInfo::required()),
        ..AgentInfo::new("p1", "worker", "external", 1, now())
    };
    s.add_agent(
        &Actor::Operator,
        AgentRecord {
            info,
            secret: "s".into(),
            spec: serde_json::Value::Null,
        },
        now(),
    )
    .unwrap();
    s.take_changes();
    s
}

fn event_types(changes: &[Change]) -> Vec<Event> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Event(e) => Some(e.event.clone()),
            _ => None,
        })
        .collect()
}

/// Issue 15 item 7: planning → submitted → rejected (planning, feedback to the teammate) →
/// submitted → approved, each step persisted with an event, and the state comes back after a
/// restore.
#[test]
fn a_plan_goes_from_planning_to_approved_and_survives_a_restore() {
    let mut s = team_with_planner();
    assert!(s.agent("p1").unwrap().info.is_planning());
    // Nothing waits yet: no decision is possible.
    let e = s
        .decide_plan(&Actor::Operator, "p1", true, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("has not submitted"), "{}", e.message);

    let info = s
        .submit_plan(&a("p1"), "1. read\n2. write".into(), now())
        .unwrap();
    let plan = info.plan.unwrap();
    assert_eq!(plan.state, PlanState::Submitted);
    assert_eq!(plan.plan.as_deref(), Some("1. read\n2. write"));
    assert_eq!((plan.submissions, plan.submitted_at), (1, Some(now())));
    let changes = s.take_changes();
    assert!(changes.iter().any(
        |c| matches!(c, Change::Agent(r) if r.info.name == "p1" && r.info.plan.as_ref().is_some_and(|p| p.state == PlanState::Submitted))
    ));
    assert!(event_types(&changes).iter().any(
        |e| matches!(e, Event::PlanSubmitted { agent, plan } if agent == "p1" && plan.contains("2. write"))
    ));
    // The leader is told, with the plan.
    let to_leader: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            Change::MessageNew(m) if m.to == "leader" => Some(m.body.clone()),
            _ => None,
        })
        .collect();
    assert!(
        to_leader.len() == 1
            && to_leader[0].contains("decide_plan")
            && to_leader[0].contains("2. write"),
        "{to_leader:?}"
    );

    // Rejected: planning again, the feedback goes to the teammate from the decider.
    let info = s
        .decide_plan(
            &Actor::Operator,
            "p1",
            false,
            Some("add tests".into()),
            now(),
        )
        .unwrap();
    assert_eq!(info.plan.as_ref().unwrap().state, PlanState::Planning);
    assert!(info.is_planning());
    let changes = s.take_changes();
    assert!(event_types(&changes).iter().any(|e| matches!(
        e,
        Event::PlanDecided { agent, approved: false, feedback: Some(f), by } if agent == "p1" && f == "add tests" && by == "operator"
    )));
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::MessageNew(m) if m.to == "p1" && m.from == "operator" && m.body.contains("add tests") && m.body.contains("rejected")
    )));
    // Deciding again without a new plan: nothing waits.
    let e = s
        .decide_plan(&a("leader"), "p1", true, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);

    s.submit_plan(&a("p1"), "1. read\n2. write\n3. test".into(), now())
        .unwrap();
    let info = s
        .decide_plan(&a("leader"), "p1", true, None, now())
        .unwrap();
    let plan = info.plan.clone().unwrap();
    assert_eq!(
        (plan.state, plan.submissions, plan.decided_by.as_deref()),
        (PlanState::Approved, 2, Some("leader"))
    );
    assert!(!info.is_planning());
    let changes = s.take_changes();
    assert!(changes.iter().any(|c| matches!(
        c,
        Change::MessageNew(m) if m.to == "p1" && m.from == "leader" && m.body.contains("full tool set")
    )));
    // Approved is final: no more plans.
    let e = s.submit_plan(&a("p1"), "again".into(), now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);

    // A restore (the daemon restarted) gives the same plan state back.
    let agents: Vec<AgentRecord> = s.agent_records().cloned().collect();
    let s2 = TeamState::restore(
        "t",
        Snapshot {
            agents,
            ..Default::default()
        },
    );
    assert_eq!(s2.agent("p1").unwrap().info.plan, Some(plan));
    assert_eq!(s2.agent("w1").unwrap().info.plan, None);
}

/// The refusals: a teammate that needs no plan, an empty plan, the operator submitting, a
/// teammate deciding, an unknown teammate; and a planning teammate cannot be asked permission
/// for a tool that writes.
#[test]
fn plan_refusals_are_clear_and_change_nothing() {
    let mut s = team_with_planner();
    let e = s.submit_plan(&a("w1"), "x".into(), now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("plan_required"), "{}", e.message);
    let e = s.submit_plan(&a("p1"), "  ".into(), now()).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = s
        .submit_plan(&Actor::Operator, "x".into(), now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    s.submit_plan(&a("p1"), "plan".into(), now()).unwrap();
    s.take_changes();
    let e = s
        .decide_plan(&a("w1"), "p1", true, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    let e = s
        .decide_plan(&Actor::Operator, "nobody", true, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.details["valid"], serde_json::json!(["p1"]));
    let e = s
        .decide_plan(&Actor::Operator, "w1", true, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(s.take_changes().is_empty(), "refusals store nothing");

    // Permission for a write while planning: refused by the daemon's rules too.
    for tool in ["write_file", "edit_file", "bash"] {
        let e = s
            .perm_request(&a("p1"), tool.into(), "x".into(), String::new(), now())
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Conflict, "{tool}");
    }
    assert!(
        s.perm_request(
            &a("p1"),
            "web_fetch".into(),
            "https://x".into(),
            String::new(),
            now()
        )
        .is_ok()
    );
    assert!(
        s.perm_request(&a("w1"), "bash".into(), "ls".into(), String::new(), now())
            .is_ok()
    );
    s.decide_plan(&Actor::Operator, "p1", true, None, now())
        .unwrap();
    assert!(
        s.perm_request(&a("p1"), "bash".into(), "ls".into(), String::new(), now())
            .is_ok()
    );
}

/// A teammate closed while its turn was still ending reports `idle` from its dying process:
/// it stays stopped (resumable), and nobody is told it is idle.
#[test]
fn a_stopped_agent_reporting_idle_stays_stopped() {
    let mut s = team_with(&["leader", "w1"]);
    s.set_agent_status("w1", AgentStatus::Stopped, Some("closed".into()), now());
    s.take_changes();
    let info = s
        .report_status(&a("w1"), AgentStatus::Idle, None, now())
        .unwrap();
    assert_eq!(info.status, AgentStatus::Stopped);
    assert_eq!(s.agent("w1").unwrap().info.status, AgentStatus::Stopped);
    assert!(
        s.unread("leader")
            .iter()
            .all(|m| m.kind != MessageKind::Idle),
        "an idle notice went out for a stopped agent"
    );
    // A running one still reports as before.
    let info = s
        .report_status(&a("leader"), AgentStatus::Running, None, now())
        .unwrap();
    assert_eq!(info.status, AgentStatus::Running);
}

#[test]
fn a_leader_whose_run_ended_still_gets_the_last_reports() {
    let mut s = team_with(&["leader", "b1"]);
    s.start_run(&Actor::Operator, None, now()).unwrap();
    s.set_agent_status("leader", AgentStatus::Exited, None, now());
    // While the run goes on, an exited leader is `not_found` as any stopped recipient.
    let e = s
        .send(
            &a("b1"),
            "leader",
            "x".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    s.finish(&Actor::Operator, "done".into(), true, true, None, now())
        .unwrap();
    let (ids, to) = s
        .send(
            &a("b1"),
            "leader",
            "my report".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap();
    assert_eq!((ids.len(), to), (1, vec!["leader".to_string()]));
    let unread = s.unread("leader");
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0].body, "my report");
    // Another stopped agent is still refused.
    s.set_agent_status("b1", AgentStatus::Exited, None, now());
    let e = s
        .send(
            &a("leader"),
            "b1",
            "x".into(),
            MessageKind::Text,
            None,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

/// Issue 61, stale approvals: a request whose requester is gone is void, not pending, and
/// deciding it is an error that names the requester and how it went.
#[test]
fn a_request_of_a_requester_that_is_gone_is_void_and_cannot_be_decided() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    let b1 = Actor::Agent("b1".into());
    let b2 = Actor::Agent("b2".into());
    let r1 = s
        .perm_request(&b1, "bash".into(), "rm -rf out".into(), "".into(), now())
        .unwrap();
    let r2 = s
        .perm_request(&b2, "bash".into(), "ls".into(), "".into(), now())
        .unwrap();
    s.set_agent_status(
        "b1",
        AgentStatus::Stopped,
        Some("killed by the operator".into()),
        now(),
    );
    let void = s.perm(r1.id).unwrap();
    assert_eq!(void.status, PermStatus::Void);
    // Only the pending list loses it; every request still lists it, void.
    assert!(s.perms(false).iter().all(|p| p.id != r1.id));
    assert!(s.perms(true).iter().any(|p| p.id == r1.id));
    let e = s
        .perm_decide(&Actor::Operator, r1.id, true, false, None, None, now())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert_eq!(
        e.message,
        format!(
            "request {} is void: its requester b1 is gone (stopped: killed by the operator)",
            r1.id
        )
    );
    // The other agent's request is untouched and decided as before.
    assert_eq!(s.perm(r2.id).unwrap().status, PermStatus::Pending);
    s.perm_decide(&Actor::Operator, r2.id, true, false, None, None, now())
        .unwrap();
    // A new incarnation (a restart) voids the old one's request too; a running agent's stays.
    let r3 = s
        .perm_request(&b2, "bash".into(), "pwd".into(), "".into(), now())
        .unwrap();
    s.set_agent_status("b2", AgentStatus::Running, None, now());
    assert_eq!(s.perm(r3.id).unwrap().status, PermStatus::Pending);
    s.set_agent_status("b2", AgentStatus::Starting, None, now());
    assert_eq!(s.perm(r3.id).unwrap().status, PermStatus::Void);
    // A timeout does not turn a void request into a denied one.
    assert!(
        s.perm_expire(r3.id, "timeout", "late".into(), now())
            .is_none()
    );
}

/// Issue 61, re-runs: a down teammate leaves the roster (a new run starts from the team's
/// declared members), a live one and the leader do not; a new run's keyed tasks are new tasks,
/// and a run did work only when a task was completed after it started.
#[test]
fn a_new_run_forgets_down_teammates_redoes_keyed_tasks_and_knows_whether_it_did_work() {
    let mut s = team_with(&["leader", "b1", "b2"]);
    s.set_agent_status("b1", AgentStatus::Exited, None, now());
    assert_eq!(
        s.forget_agent("b2", "new run", now()),
        None,
        "b2 is not down"
    );
    assert_eq!(s.forget_agent("b1", "new run", now()), Some(1));
    assert!(s.agent("b1").is_none());
    assert!(s.agent("b2").is_some());

    let keyed = |s: &mut TeamState| {
        s.task_add(
            &Actor::Operator,
            NewTask {
                title: "t".into(),
                key: Some("k".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap()
        .id
    };
    s.start_run(&Actor::Operator, None, Timestamp(1_000))
        .unwrap();
    let first = keyed(&mut s);
    assert_eq!(keyed(&mut s), first, "a key names one task within a run");
    assert!(!s.run_did_work());
    s.task_claim(&Actor::Agent("b2".into()), first, Timestamp(1_001))
        .unwrap();
    s.task_finish(
        &Actor::Agent("b2".into()),
        first,
        TaskStatus::Completed,
        None,
        Timestamp(1_002),
    )
    .unwrap();
    assert!(s.run_did_work());
    s.start_run(&Actor::Operator, None, Timestamp(2_000))
        .unwrap();
    assert!(!s.run_did_work(), "the task was done by the run before");
    assert_ne!(keyed(&mut s), first, "a new run does the keyed task again");
}

#[test]
fn a_starting_agent_reads_the_part_of_a_large_roster_its_prompt_names() {
    let names: Vec<String> = std::iter::once("leader".to_string())
        .chain((0..40).map(|i| format!("w{i:02}")))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let s = team_with(&refs);
    let (part, total) = s.prompt_agents("w05", "worker");
    assert_eq!(total, 41);
    let got: Vec<&str> = part.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        got,
        [
            "leader", "w00", "w01", "w02", "w03", "w04", "w06", "w07", "w08", "w09", "w05"
        ],
        "the leader, the first nine others of its role, and itself"
    );
}
