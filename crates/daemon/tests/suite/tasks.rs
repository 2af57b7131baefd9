//! SPEC §5.2 through the socket.

use super::support::*;
use agent_team_client::ReplyExt;
use agent_team_protocol::*;
use serde_json::json;
use std::sync::{Arc, Barrier};

#[test]
fn refusals_carry_their_details() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut op = t.operator();
    let t1 = add_task(&mut op, "one", &[]).id;
    let t2 = add_task(&mut op, "two", &[t1]).id;
    let t3 = add_task(&mut op, "three", &[]).id;
    let mut b1 = t.agent("b1");
    let mut b2 = t.agent("b2");

    let (code, d) = err_code(b1.call(Request::TaskClaim { id: t2 }));
    assert_eq!(
        (code, d["blockers"].clone()),
        (ErrorCode::Blocked, json!([t1]))
    );

    let got = b1.call(Request::TaskClaim { id: t1 }).task().unwrap();
    assert_eq!(
        (got.status, got.owner.as_deref()),
        (TaskStatus::InProgress, Some("b1"))
    );

    let (code, d) = err_code(b2.call(Request::TaskClaim { id: t1 }));
    assert_eq!(
        (code, d["owner"].clone()),
        (ErrorCode::Conflict, json!("b1"))
    );

    let (code, d) = err_code(b1.call(Request::TaskClaim { id: t3 }));
    assert_eq!((code, d["task"].clone()), (ErrorCode::Busy, json!(t1)));

    let (code, d) = err_code(b1.call(Request::TaskClaim { id: 999 }));
    assert_eq!((code, d["task"].clone()), (ErrorCode::NotFound, json!(999)));

    // Only the owner (or leader/operator) may finish it.
    let (code, _) = err_code(b2.call(Request::TaskFinish {
        id: t1,
        status: TaskStatus::Completed,
        result: None,
    }));
    assert_eq!(code, ErrorCode::PermissionDenied);
    b1.call(Request::TaskFinish {
        id: t1,
        status: TaskStatus::Completed,
        result: Some("ok".into()),
    })
    .task()
    .unwrap();

    // Completing t1 unblocked t2.
    assert_eq!(
        b2.call(Request::TaskClaim { id: t2 })
            .task()
            .unwrap()
            .owner
            .as_deref(),
        Some("b2")
    );

    let (code, d) = err_code(op.call(Request::TaskCancel { id: t1 }));
    assert_eq!(
        (code, d["from"].clone(), d["to"].clone()),
        (
            ErrorCode::InvalidState,
            json!("completed"),
            json!("cancelled")
        )
    );
    let (code, _) = err_code(op.call(Request::TaskRetry { id: t3 }));
    assert_eq!(code, ErrorCode::InvalidState);
    let (code, _) = err_code(op.call(Request::TaskRelease { id: t3 }));
    assert_eq!(code, ErrorCode::InvalidState);

    // Release puts it back; a failed task can be retried.
    let back = op.call(Request::TaskRelease { id: t2 }).task().unwrap();
    assert_eq!((back.status, back.owner), (TaskStatus::Pending, None));
    b2.call(Request::TaskClaim { id: t2 }).task().unwrap();
    b2.call(Request::TaskFinish {
        id: t2,
        status: TaskStatus::Failed,
        result: Some("exit 1".into()),
    })
    .task()
    .unwrap();
    assert_eq!(
        op.call(Request::TaskRetry { id: t2 })
            .task()
            .unwrap()
            .status,
        TaskStatus::Pending
    );
}

#[test]
fn blocked_by_unknown_task_stores_nothing() {
    let t = TestTeam::start().with_agents(&["leader"]);
    let mut op = t.operator();
    let (code, d) = err_code(op.call(Request::TaskAdd {
        title: "x".into(),
        description: String::new(),
        run: None,
        blocked_by: vec![41],
        assign: None,
        key: None,
    }));
    assert_eq!(
        (code, d["missing"].clone()),
        (ErrorCode::NotFound, json!([41]))
    );
    assert!(
        op.call(Request::TaskList {
            status: None,
            after: None
        })
        .tasks()
        .unwrap()
        .is_empty()
    );
}

#[test]
fn failed_blocker_keeps_dependent_blocked() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let a = add_task(&mut op, "a", &[]).id;
    let b = add_task(&mut op, "b", &[a]).id;
    let mut b1 = t.agent("b1");
    b1.call(Request::TaskClaim { id: a }).task().unwrap();
    b1.call(Request::TaskFinish {
        id: a,
        status: TaskStatus::Failed,
        result: None,
    })
    .task()
    .unwrap();
    let (code, _) = err_code(b1.call(Request::TaskClaim { id: b }));
    assert_eq!(code, ErrorCode::Blocked);
}

#[test]
fn ten_racing_claimers_exactly_one_wins() {
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = std::iter::once("leader")
        .chain(names.iter().map(|s| s.as_str()))
        .collect();
    let t = TestTeam::start().with_agents(&refs);
    let mut op = t.operator();
    let id = add_task(&mut op, "contested", &[]).id;
    let barrier = Arc::new(Barrier::new(names.len()));
    let clients: Vec<_> = names.iter().map(|n| t.agent(n)).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                c.call(Request::TaskClaim { id })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        match r {
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::Conflict)),
            Ok(_) => unreachable!(),
        }
    }
    let task = op.call(Request::TaskShow { id }).task().unwrap();
    assert_eq!(task.attempts, 1);
}

#[test]
fn teammate_calling_leader_only_operations_is_denied_and_nothing_changes() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let id = add_task(&mut op, "x", &[]).id;
    let mut b1 = t.agent("b1");
    let before = op
        .call(Request::TaskList {
            status: None,
            after: None,
        })
        .tasks()
        .unwrap();
    let events_before = match op
        .call(Request::Events {
            since: 0,
            limit: None,
        })
        .unwrap()
    {
        Reply::Events { events } => events.len(),
        _ => unreachable!(),
    };
    let denied = [
        Request::TaskAdd {
            title: "y".into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: None,
            key: None,
        },
        Request::TaskCancel { id },
        Request::TaskAssign {
            id,
            to: "b1".into(),
        },
        Request::TaskRetry { id },
        Request::Finish {
            answer: "done".into(),
            force: true,
            success: true,
            details: None,
            auto: false,
        },
        Request::Register {
            name: "evil".into(),
            role: "worker".into(),
        },
        Request::Shutdown,
        Request::Send {
            to: "leader".into(),
            body: "stop".into(),
            kind: MessageKind::ShutdownRequest,
            summary: None,
            dedup: None,
        },
    ];
    for req in denied {
        let (code, _) = err_code(b1.call(req.clone()));
        assert_eq!(code, ErrorCode::PermissionDenied, "{req:?}");
    }
    assert_eq!(
        op.call(Request::TaskList {
            status: None,
            after: None
        })
        .tasks()
        .unwrap(),
        before
    );
    let events_after = match op
        .call(Request::Events {
            since: 0,
            limit: None,
        })
        .unwrap()
    {
        Reply::Events { events } => events.len(),
        _ => unreachable!(),
    };
    assert_eq!(events_before, events_after);
    // The leader may do the same.
    let mut leader = t.agent("leader");
    leader
        .call(Request::TaskAssign {
            id,
            to: "b1".into(),
        })
        .task()
        .unwrap();
}

#[test]
fn keyed_creation_is_idempotent_and_claim_next_takes_lowest() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let mk = |key: &str| Request::TaskAdd {
        title: key.into(),
        description: String::new(),
        run: None,
        blocked_by: vec![],
        assign: None,
        key: Some(key.into()),
    };
    let a = op.call(mk("a")).task().unwrap();
    let again = op.call(mk("a")).task().unwrap();
    assert_eq!(a.id, again.id);
    let b = op.call(mk("b")).task().unwrap();
    let mut b1 = t.agent("b1");
    match b1.call(Request::TaskClaimNext).unwrap() {
        Reply::MaybeTask { task: Some(task) } => assert_eq!(task.id, a.id),
        other => panic!("{other:?}"),
    }
    b1.call(Request::TaskFinish {
        id: a.id,
        status: TaskStatus::Completed,
        result: None,
    })
    .unwrap();
    match b1.call(Request::TaskClaimNext).unwrap() {
        Reply::MaybeTask { task: Some(task) } => assert_eq!(task.id, b.id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_listing_says_when_its_page_is_the_last() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    // (whether the page says it is the last, how many items it has)
    let mut listed = |req| {
        let reply = op.call(req).unwrap();
        let n = match &reply {
            Reply::Tasks { tasks, .. } => tasks.len(),
            Reply::Messages { messages, .. } => messages.len(),
            other => panic!("{other:?}"),
        };
        (reply.is_last_page(), n)
    };
    let first = add_task(&mut t.operator(), "one", &[]).id;
    add_task(&mut t.operator(), "two", &[]);
    let (status, after) = (None, None);
    assert_eq!(listed(Request::TaskList { status, after }), (true, 2));
    let after = Some(first);
    assert_eq!(listed(Request::TaskList { status, after }), (true, 1));
    t.operator()
        .call(Request::Send {
            to: "b1".into(),
            body: "hello".into(),
            kind: MessageKind::Text,
            summary: None,
            dedup: None,
        })
        .unwrap();
    for unread_only in [true, false] {
        let agent = Some("b1".into());
        let inbox = Request::Inbox {
            agent,
            unread_only,
            after: None,
        };
        assert_eq!(listed(inbox), (true, 1));
    }
    // The client reads every page all the same, stopping at the last.
    assert_eq!(t.operator().all_tasks(None).unwrap().len(), 2);
    // An answer of an older daemon (no `more`) is not taken for the last page.
    let old: Reply = serde_json::from_value(json!({"kind": "tasks", "tasks": []})).unwrap();
    assert!(!old.is_last_page());
}

/// An agent's hello that asks (`start`) is welcomed with its first reads, each what its
/// request would answer, and with its task watch on; the leader's also carries the team's.
#[test]
fn a_starting_agents_welcome_carries_its_first_reads_and_its_watch_is_on() {
    let t = TestTeam::start().with_agents(&["leader", "w1"]);
    let mut op = t.operator();
    let mut w1 = t.agent("w1");
    let claimed = add_task(&mut op, "in progress", &[]);
    w1.call(Request::TaskClaim { id: claimed.id }).unwrap();
    // Two messages w1 has not read: pushed again behind the welcome, and counted in it.
    for body in ["one", "two"] {
        op.call(Request::Send {
            to: "w1".into(),
            body: body.into(),
            kind: MessageKind::Text,
            summary: None,
            dedup: None,
        })
        .unwrap();
    }
    let hello = |name: &str| Hello {
        start: true,
        ..agent_team_client::agent_hello("t", name, &t.secret(name), 0)
    };
    let mut again = agent_team_client::Client::connect(&t.tp().socket, &hello("w1")).unwrap();
    let reads = again
        .welcome()
        .start
        .clone()
        .expect("the welcome carries the reads");
    // (The new connection replaced w1's first one.)
    assert_eq!(reads.config, Some(again.call(Request::GetConfig).unwrap()));
    // A small team's roster is all named: the same members as `agents`, and its size.
    let Reply::Agents { agents: all } = again.call(Request::Agents).unwrap() else {
        panic!("a roster")
    };
    let Some(Reply::Agents { agents: carried }) = &reads.agents else {
        panic!("a roster: {:?}", reads.agents)
    };
    let names = |v: &[AgentInfo]| {
        let mut n: Vec<String> = v.iter().map(|a| a.name.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(carried), names(&all));
    assert_eq!(reads.members as usize, all.len());
    let in_progress = Request::TaskList {
        status: Some(TaskStatus::InProgress),
        after: None,
    };
    let Some(Reply::Tasks { tasks, .. }) = &reads.tasks else {
        panic!("a task list: {:?}", reads.tasks)
    };
    assert_eq!(
        tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![claimed.id]
    );
    assert_eq!(reads.tasks, Some(again.call(in_progress).unwrap()));
    assert_eq!(reads.team, None, "the team's goal is the leader's read");
    assert_eq!(reads.unread, 2, "{reads:?}");
    // The watch is on without a `watch_tasks` of its own: a task given to w1 is pushed to it.
    let added = op
        .call(Request::TaskAdd {
            title: "pushed".into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: Some("w1".into()),
            key: None,
        })
        .task()
        .unwrap();
    loop {
        match again
            .next_push(Some(std::time::Duration::from_secs(10)))
            .unwrap()
        {
            Push::Task { task } if task.id == added.id => break,
            _ => continue,
        }
    }
    let leader = agent_team_client::Client::connect(&t.tp().socket, &hello("leader")).unwrap();
    let team = leader.welcome().start.as_ref().and_then(|s| s.team.clone());
    assert!(matches!(team, Some(Reply::Team { .. })), "{team:?}");
    // A hello that does not ask gets a welcome as before.
    assert_eq!(t.agent("w1").welcome().start, None);
}

#[test]
fn a_starting_agents_welcome_grants_its_first_lease_only_when_no_budget_limits_it() {
    let t = TestTeam::start().with_agents(&["leader", "w1"]);
    let mut op = t.operator();
    // w1's role runs our model loop; the leader's is exec (it takes no lease, so it would
    // never settle one given unasked).
    model_worker_exec_leader(&mut op);
    let lease_of = |name: &str| {
        let hello = Hello {
            start: true,
            ..agent_team_client::agent_hello("t", name, &t.secret(name), 0)
        };
        let c = agent_team_client::Client::connect(&t.tp().socket, &hello).unwrap();
        c.welcome().start.clone().expect("the first reads").lease
    };
    let granted = Some(Reply::Budget {
        stop: None,
        wait: None,
    });
    assert_eq!(lease_of("w1"), granted, "no budget limits w1");
    assert_eq!(lease_of("leader"), None, "an exec leader takes no lease");
    // A budget on w1's role: w1 asks for each lease itself.
    set_budget(&mut op, Some("worker"), 1_000_000);
    assert_eq!(lease_of("w1"), None, "the role's budget limits w1");
    set_budget(&mut op, Some("worker"), 0);
    assert_eq!(lease_of("w1"), granted, "the role's budget was removed");
    set_budget(&mut op, None, 1_000_000);
    assert_eq!(lease_of("w1"), None, "the team's budget limits w1");
}

/// A message pushed to an agent on our model loop that no budget limits grants the lease of the
/// turn it starts (the agent asks the core for none); an exec agent, and an agent a budget
/// limits, get none and ask as before.
#[test]
fn a_message_push_grants_a_lease_only_where_no_budget_limits_a_model_agent() {
    let t = TestTeam::start().with_agents(&["leader", "w1"]);
    let mut op = t.operator();
    model_worker_exec_leader(&mut op);
    let (mut w1, mut leader) = (t.agent("w1"), t.agent("leader"));
    // The lease flag of the next message pushed to `c`.
    let lease_of_next = |c: &mut agent_team_client::Client| loop {
        if let Push::Message { lease, .. } = c
            .next_push(Some(std::time::Duration::from_secs(10)))
            .unwrap()
        {
            return lease;
        }
    };
    let send = |op: &mut agent_team_client::Client, to: &str| {
        op.call(Request::Send {
            to: to.into(),
            body: "go".into(),
            kind: MessageKind::Text,
            summary: None,
            dedup: None,
        })
        .unwrap();
    };
    send(&mut op, "w1");
    assert!(lease_of_next(&mut w1), "no budget limits w1");
    send(&mut op, "leader");
    assert!(!lease_of_next(&mut leader), "an exec leader takes no lease");
    set_budget(&mut op, Some("worker"), 1_000_000);
    send(&mut op, "w1");
    assert!(!lease_of_next(&mut w1), "the role's budget limits w1");
    set_budget(&mut op, Some("worker"), 0);
    set_budget(&mut op, None, 1_000_000);
    send(&mut op, "*");
    assert!(!lease_of_next(&mut w1), "the team's budget limits w1");
    set_budget(&mut op, None, 0);
    send(&mut op, "*");
    assert!(lease_of_next(&mut w1), "no budget limits w1 again");
    // The unread messages pushed again to a new connection say the same, as the daemon sees
    // it now.
    drop(w1);
    assert!(lease_of_next(&mut t.agent("w1")), "pushed again, granted");
    set_budget(&mut op, Some("worker"), 1_000_000);
    assert!(!lease_of_next(&mut t.agent("w1")), "pushed again, limited");
}

/// Configures the team so its `worker` role runs our model loop (it takes budget leases) and
/// its leader the exec provider (it takes none).
fn model_worker_exec_leader(op: &mut agent_team_client::Client) {
    let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/tmp"));
    cfg.backend = agent_team_config::BackendKind::Process;
    cfg.roles.get_mut("worker").unwrap().provider = agent_team_config::Provider::Anthropic;
    cfg.roles.get_mut("leader").unwrap().provider = agent_team_config::Provider::Exec;
    op.call(Request::Configure {
        config: serde_json::to_value(&cfg).unwrap(),
    })
    .unwrap();
}

/// Sets a token budget on `role` (the team's when `None`); 0 removes it.
fn set_budget(op: &mut agent_team_client::Client, role: Option<&str>, tokens: u64) {
    op.call(Request::BudgetSet {
        role: role.map(str::to_string),
        tokens: Some(tokens),
        usd: None,
    })
    .unwrap();
}

/// The next task pushed to `c`'s watch.
fn next_task_push(c: &mut agent_team_client::Client) -> Task {
    loop {
        match c
            .next_push(Some(std::time::Duration::from_secs(10)))
            .unwrap()
        {
            Push::Task { task } => return *task,
            _ => continue,
        }
    }
}

#[test]
fn task_changes_reach_the_agents_they_concern_and_one_waiting_claimer_per_opened_task() {
    let t = TestTeam::start().with_agents(&["leader", "w1", "w2", "w3", "w4", "w5"]);
    let mut op = t.operator();
    let mut clients: Vec<_> = ["leader", "w1", "w2", "w3", "w4", "w5"]
        .iter()
        .map(|n| {
            let mut c = t.agent(n);
            c.call(Request::WatchTasks).unwrap();
            c
        })
        .collect();
    let [leader, w1, w2, w3, w4, w5] = &mut clients[..] else {
        unreachable!()
    };
    // w1 then w2 wait for work; w3 does not ask.
    for c in [&mut *w1, &mut *w2] {
        let r = c.call(Request::TaskClaimNext).unwrap();
        assert!(matches!(r, Reply::MaybeTask { task: None }), "{r:?}");
    }
    // An open task goes to the oldest waiter (and to the leader, who watches the board).
    let a = add_task(&mut op, "a", &[]);
    assert_eq!(next_task_push(w1).id, a.id);
    assert_eq!(next_task_push(leader).id, a.id);
    let claimed = w1.call(Request::TaskClaimNext).unwrap();
    assert!(
        matches!(&claimed, Reply::MaybeTask { task: Some(x) } if x.id == a.id),
        "{claimed:?}"
    );
    // A blocked task wakes nobody; completing its blocker opens it for the next waiter, w2.
    let b = add_task(&mut op, "b", &[a.id]);
    w1.call(Request::TaskFinish {
        id: a.id,
        status: TaskStatus::Completed,
        result: None,
    })
    .unwrap();
    assert_eq!(
        next_task_push(w2).id,
        b.id,
        "w2's first push is the opened task"
    );
    let r = w2.call(Request::TaskClaimNext).unwrap();
    assert!(
        matches!(&r, Reply::MaybeTask { task: Some(x) } if x.id == b.id),
        "{r:?}"
    );
    // A task given to w3 reaches w3, whose first push it is: none of the others reached it.
    let c = op
        .call(Request::TaskAdd {
            title: "c".into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: Some("w3".into()),
            key: None,
        })
        .task()
        .unwrap();
    assert_eq!(
        next_task_push(w3).id,
        c.id,
        "w3 saw no task it has no part in"
    );
    // A woken waiter that leaves before asking again hands its turn on.
    for c in [&mut *w4, &mut *w5] {
        let r = c.call(Request::TaskClaimNext).unwrap();
        assert!(matches!(r, Reply::MaybeTask { task: None }), "{r:?}");
    }
    let d = add_task(&mut op, "d", &[]);
    assert_eq!(next_task_push(w4).id, d.id);
    drop(clients.remove(4));
    let w5 = &mut clients[4];
    assert_eq!(
        next_task_push(w5).id,
        d.id,
        "w5's first push is the handed-on task"
    );
}
