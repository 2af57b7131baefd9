//! SIGKILL the daemon under load: after a restart every acknowledged mutation is there, once.

use agent_team_client::{Client, ReplyExt};
use agent_team_e2e::*;
use agent_team_protocol::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WINDOW: usize = 32;

fn register(op: &mut Client, name: &str, role: &str) -> String {
    match op
        .call(Request::Register {
            name: name.into(),
            role: role.into(),
        })
        .unwrap()
    {
        Reply::Registered { secret, .. } => secret,
        other => panic!("{other:?}"),
    }
}

#[test]
fn sigkill_under_load_loses_and_duplicates_nothing_acknowledged() {
    let mut sb = Sandbox::new();
    let team = "crash";
    let pid = sb.spawn_daemon(team);
    let tp = sb.team(team);
    let mut op = sb.operator(team);
    register(&mut op, "leader", "leader");
    let mut secrets = HashMap::new();
    for n in ["s0", "s1", "s2", "r0", "r1", "c0", "c1"] {
        secrets.insert(n.to_string(), register(&mut op, n, "worker"));
    }
    let connect = |name: &str| {
        Client::connect(
            &tp.socket,
            &agent_team_client::agent_hello(team, name, &secrets[name], 0),
        )
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acked_msgs: Arc<Mutex<Vec<(String, String)>>> = Arc::default(); // (recipient, body)
    let acked_tasks: Arc<Mutex<Vec<(String, u64)>>> = Arc::default(); // (key, id)
    let acked_claims: Arc<Mutex<Vec<(String, u64, bool)>>> = Arc::default(); // (agent, id, finished)
    let msg_count = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();

    // Receivers read and acknowledge everything in batches, so inboxes drain.
    for r in ["r0", "r1"] {
        let mut c = connect(r).unwrap();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut ids = Vec::new();
                loop {
                    let wait = if ids.is_empty() { 100 } else { 1 };
                    match c.next_push(Some(Duration::from_millis(wait))) {
                        Ok(Push::Message { message, .. }) => ids.push(message.id),
                        Ok(_) => {}
                        Err(agent_team_client::ClientError::Timeout) => break,
                        Err(_) => return,
                    }
                    if ids.len() >= 512 {
                        break;
                    }
                }
                if !ids.is_empty()
                    && c.call(Request::Ack {
                        ids,
                        state: DeliveryState::Read,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    // Senders pipeline messages in windows and record each acknowledged one.
    for (i, s) in ["s0", "s1", "s2"].into_iter().enumerate() {
        let mut c = connect(s).unwrap();
        let acked = acked_msgs.clone();
        let count = msg_count.clone();
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let mut sent = HashMap::new();
                for _ in 0..WINDOW {
                    let to = format!("r{}", (n as usize + i) % 2);
                    let body = format!("{s}-{n}");
                    n += 1;
                    let Ok(id) = c.send(Request::Send {
                        to: to.clone(),
                        body: body.clone(),
                        kind: MessageKind::Text,
                        summary: None,
                        dedup: None,
                    }) else {
                        return;
                    };
                    sent.insert(id, (to, body));
                }
                if c.flush().is_err() {
                    return;
                }
                for _ in 0..WINDOW {
                    match c.next_response() {
                        Ok((id, Ok(_))) => {
                            acked.lock().unwrap().push(sent[&id].clone());
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        // Back-pressure from a full inbox: nothing was stored, so nothing to check.
                        Ok((_, Err(e))) if e.code == ErrorCode::InboxFull => {
                            std::thread::yield_now()
                        }
                        Ok((_, Err(e))) => panic!("a send was refused: {e}"),
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    // The operator creates keyed tasks.
    {
        let mut c = sb.operator(team);
        let acked = acked_tasks.clone();
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let mut sent = HashMap::new();
                for _ in 0..8 {
                    let key = format!("k{n}");
                    n += 1;
                    let req = Request::TaskAdd {
                        title: key.clone(),
                        description: String::new(),
                        run: None,
                        blocked_by: vec![],
                        assign: None,
                        key: Some(key.clone()),
                    };
                    let Ok(id) = c.send(req) else { return };
                    sent.insert(id, key);
                }
                if c.flush().is_err() {
                    return;
                }
                for _ in 0..8 {
                    match c.next_response() {
                        Ok((id, Ok(Reply::Task { task }))) => {
                            acked.lock().unwrap().push((sent[&id].clone(), task.id))
                        }
                        Ok((_, other)) => panic!("task_add gave {other:?}"),
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    // Two claimers take and complete tasks.
    for a in ["c0", "c1"] {
        let mut c = connect(a).unwrap();
        let acked = acked_claims.clone();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match c.call(Request::TaskClaimNext) {
                    Ok(Reply::MaybeTask { task: Some(t) }) => {
                        acked.lock().unwrap().push((a.to_string(), t.id, false));
                        let done = c.call(Request::TaskFinish {
                            id: t.id,
                            status: TaskStatus::Completed,
                            result: Some("ok".into()),
                        });
                        match done {
                            Ok(_) => acked.lock().unwrap().push((a.to_string(), t.id, true)),
                            Err(_) => return,
                        }
                    }
                    Ok(_) => std::thread::yield_now(),
                    Err(_) => return,
                }
            }
        }));
    }

    wait_for("load to build up", Duration::from_secs(60), || {
        msg_count.load(Ordering::Relaxed) >= 3000
            && acked_tasks.lock().unwrap().len() >= 200
            && acked_claims.lock().unwrap().len() >= 100
    });
    sb.kill9(pid);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    sb.spawn_daemon(team);
    let mut op = sb.operator(team);

    // Messages: every acknowledged one is there exactly once, in order per sender.
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for r in ["r0", "r1"] {
        let msgs = op.all_messages(r, false).unwrap();
        stored.insert(r.to_string(), msgs.into_iter().map(|m| m.body).collect());
    }
    let all: Vec<&String> = stored.values().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a message was stored twice");
    let acked_msgs = acked_msgs.lock().unwrap();
    for (to, body) in acked_msgs.iter() {
        assert!(
            stored[to].contains(body),
            "acknowledged message {body} to {to} is missing"
        );
    }
    for r in ["r0", "r1"] {
        for s in ["s0", "s1", "s2"] {
            let ns: Vec<u64> = stored[r]
                .iter()
                .filter_map(|b| {
                    b.strip_prefix(&format!("{s}-"))
                        .and_then(|n| n.parse().ok())
                })
                .collect();
            assert!(
                ns.windows(2).all(|w| w[0] < w[1]),
                "FIFO broken from {s} to {r}"
            );
        }
    }

    // Tasks: every acknowledged creation is there with its id; no id or key twice.
    let tasks = op.all_tasks(None).unwrap();
    let by_key: HashMap<String, &Task> =
        tasks.iter().map(|t| (t.key.clone().unwrap(), t)).collect();
    assert_eq!(by_key.len(), tasks.len(), "a key was stored twice");
    let ids: Vec<u64> = tasks.iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        (1..=tasks.len() as u64).collect::<Vec<_>>(),
        "task ids have gaps or repeats"
    );
    for (key, id) in acked_tasks.lock().unwrap().iter() {
        assert_eq!(
            by_key.get(key).map(|t| t.id),
            Some(*id),
            "acknowledged task {key} missing or renumbered"
        );
    }
    // Claims: each acknowledged claim holds, each acknowledged completion is completed, once.
    let by_id: HashMap<u64, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    for (agent, id, finished) in acked_claims.lock().unwrap().iter() {
        let t = by_id[id];
        assert_eq!(
            t.owner.as_deref(),
            Some(agent.as_str()),
            "claim of {id} by {agent} lost"
        );
        assert_eq!(t.attempts, 1, "task {id} was claimed twice");
        if *finished {
            assert_eq!(t.status, TaskStatus::Completed);
        } else {
            assert!(matches!(
                t.status,
                TaskStatus::InProgress | TaskStatus::Completed
            ));
        }
    }
    // The event log has no gaps, and ids continue after the crash.
    let events = op.all_events(0).unwrap();
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 + 1),
        "event log has gaps"
    );
    let next = op
        .call(Request::TaskAdd {
            title: "after".into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: None,
            key: None,
        })
        .task()
        .unwrap();
    assert_eq!(next.id, tasks.len() as u64 + 1);
}
