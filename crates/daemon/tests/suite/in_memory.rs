//! An agent in the daemon's own process (the in-process backend's) reaches the core through
//! memory, not the socket: the same handshake, requests, answers and pushes.

use super::support::*;
use agent_team_client::{AsyncClient, ReplyExt};
use agent_team_protocol::*;

#[test]
fn an_agent_in_the_daemons_process_is_served_through_memory_while_it_runs() {
    let mut t = TestTeam::start().with_agents(&["leader", "w1"]);
    let socket = t.tp().socket;
    // With the socket's file moved away nothing reaches the daemon through it; a client in
    // this process still does.
    let away = socket.with_extension("away");
    std::fs::rename(&socket, &away).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hello = agent_team_client::agent_hello("t", "w1", &t.secret("w1"), 0);
    let (who, pushed) = rt.block_on(async {
        let (c, mut pushes) = AsyncClient::connect(&socket, &hello).await.unwrap();
        let who = c.welcome().identity.clone();
        // A request and its answer, then a push caused by another client.
        let tasks = c
            .call(Request::TaskList {
                status: None,
                after: None,
            })
            .await;
        assert!(tasks.tasks().unwrap().is_empty());
        c.call(Request::WatchTasks).await.unwrap();
        // It waits for work: the next task that opens is pushed to it.
        let none = c.call(Request::TaskClaimNext).await.unwrap();
        assert!(matches!(none, Reply::MaybeTask { task: None }), "{none:?}");
        let added = tokio::task::spawn_blocking({
            let tp = t.tp();
            let away = away.clone();
            move || {
                // The operator's blocking client needs the socket: put it back for it.
                std::fs::rename(&away, &tp.socket).unwrap();
                let mut op = agent_team_client::Client::operator(&tp).unwrap();
                add_task(&mut op, "through memory", &[]).id
            }
        })
        .await
        .unwrap();
        let push = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match pushes.recv().await {
                    Some(Push::Task { task }) if task.id == added => return task.title,
                    Some(_) => continue,
                    None => panic!("the connection closed"),
                }
            }
        })
        .await
        .expect("the task's push arrived");
        (who, push)
    });
    assert_eq!(who, "w1");
    assert_eq!(pushed, "through memory");
    // Once the daemon is gone, a client in this process goes to the socket again (and finds
    // nothing there).
    t.stop();
    let gone = rt.block_on(AsyncClient::connect(&socket, &hello));
    assert!(
        matches!(gone, Err(agent_team_client::ClientError::Connect { .. })),
        "a stopped daemon is not reachable through memory"
    );
}

#[test]
fn an_in_memory_agents_requests_are_answered_in_order_and_its_end_closes_its_connection() {
    let t = TestTeam::start().with_agents(&["leader", "w1"]);
    let socket = t.tp().socket;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hello = agent_team_client::agent_hello("t", "leader", &t.secret("leader"), 0);
    let mut op = t.operator();
    let connected = |op: &mut agent_team_client::Client| match op.call(Request::Agents).unwrap() {
        Reply::Agents { agents } => agents.iter().any(|a| a.name == "leader" && a.connected),
        other => panic!("{other:?}"),
    };
    let client = rt.block_on(async {
        let (c, pushes) = AsyncClient::connect(&socket, &hello).await.unwrap();
        // Queued one after the other without waiting: applied and answered in that order.
        let add = |title: &str| Request::TaskAdd {
            title: title.into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: None,
            key: None,
        };
        let first = c.queue(add("one"), Some("r1".into())).unwrap();
        let second = c.queue(add("two"), Some("r2".into())).unwrap();
        let (a, b) = (first.reply().await.unwrap(), second.reply().await.unwrap());
        let id = |r: Reply| match r {
            Reply::Task { task } => task.id,
            other => panic!("{other:?}"),
        };
        assert!(id(a) < id(b), "the second request was applied first");
        (c, pushes)
    });
    assert!(
        connected(&mut op),
        "the leader is connected while its client lives"
    );
    // The client let go: the daemon sees the connection close.
    drop(client);
    drop(rt);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while connected(&mut op) {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader still shows connected"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_broadcast_to_more_in_memory_agents_than_one_slice_reaches_each_in_order() {
    // The core hands frames for in-process agents out a slice at a time (32), letting them
    // run between slices: with 80 of them, two broadcasts reach every one, each in the order
    // sent, with nothing else asked of the daemon meanwhile.
    let names: Vec<String> = (0..80).map(|i| format!("w{i}")).collect();
    let mut all: Vec<&str> = vec!["leader"];
    all.extend(names.iter().map(String::as_str));
    let t = TestTeam::start().with_agents(&all);
    let socket = t.tp().socket;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut agents = Vec::new();
        for n in &names {
            let hello = agent_team_client::agent_hello("t", n, &t.secret(n), 0);
            agents.push(AsyncClient::connect(&socket, &hello).await.unwrap());
        }
        let tp = t.tp();
        tokio::task::spawn_blocking(move || {
            let mut op = agent_team_client::Client::operator(&tp).unwrap();
            send(&mut op, "*", "first").unwrap();
            send(&mut op, "*", "second").unwrap();
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        for (_c, pushes) in agents.iter_mut() {
            let bodies = tokio::time::timeout(std::time::Duration::from_secs(20), async {
                let mut bodies = Vec::new();
                while bodies.len() < 2 {
                    match pushes.recv().await {
                        Some(Push::Message { message, .. }) => bodies.push(message.body),
                        Some(_) => continue,
                        None => panic!("the connection closed"),
                    }
                }
                bodies
            })
            .await
            .expect("both broadcasts arrived");
            got.push(bodies);
        }
        got
    });
    assert_eq!(got.len(), 80);
    for bodies in got {
        assert_eq!(bodies, vec!["first".to_string(), "second".to_string()]);
    }
}
