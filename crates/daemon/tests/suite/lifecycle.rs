//! Issue 15's requests: `spawn_team` all or nothing, the one-level depth, `wait_for` answered
//! when its tasks finish or at its timeout.

use super::support::*;
use agent_team_protocol::*;
use std::time::{Duration, Instant};

fn configured(t: &TestTeam) {
    let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/tmp"));
    cfg.backend = agent_team_config::BackendKind::Process;
    t.operator()
        .call(Request::Configure {
            config: serde_json::to_value(&cfg).unwrap(),
        })
        .unwrap();
}

fn member(name: &str, role: &str) -> SpawnMember {
    SpawnMember {
        name: name.into(),
        role: role.into(),
        ..Default::default()
    }
}

#[test]
fn a_bad_spawn_team_spawns_nobody_and_names_the_member() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    configured(&t);
    let mut leader = t.agent("leader");
    let before = leader.call(Request::Agents).unwrap();
    let e = leader
        .call(Request::SpawnTeam {
            members: vec![
                member("c1", "worker"),
                member("c2", "worker"),
                member("c3", "no-such-role"),
            ],
        })
        .unwrap_err();
    let body = e.body().unwrap();
    assert_eq!(body.code, ErrorCode::BadRequest);
    assert_eq!(body.details["member"], "c3");
    assert!(body.message.contains("member 3 (c3)"), "{}", body.message);
    // A name already on the roster is refused the same way.
    let e = leader
        .call(Request::SpawnTeam {
            members: vec![member("c1", "worker"), member("b1", "worker")],
        })
        .unwrap_err();
    assert_eq!(e.body().unwrap().details["member"], "b1");
    assert_eq!(
        leader.call(Request::Agents).unwrap(),
        before,
        "nothing was added"
    );
    // A teammate cannot spawn: the team is one level deep.
    let mut b1 = t.agent("b1");
    for req in [
        Request::SpawnTeam {
            members: vec![member("c1", "worker")],
        },
        Request::Spawn {
            container: None,
            role: "worker".into(),
            name: Some("c1".into()),
            instructions: None,
            model: None,
            message: None,
            host: None,
            workspace: None,
        },
    ] {
        let body = b1.call(req).unwrap_err().body().unwrap().clone();
        assert_eq!(body.code, ErrorCode::PermissionDenied);
        assert!(body.message.contains("max_depth 1"), "{}", body.message);
    }
}

#[test]
fn wait_for_answers_when_its_task_finishes_or_at_its_timeout() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let task = add_task(&mut op, "x", &[]);
    // The timeout: answered with the states as they are.
    let t0 = Instant::now();
    match op
        .call(Request::WaitFor {
            agents: vec![],
            tasks: vec![task.id],
            timeout_ms: 200,
            any: false,
        })
        .unwrap()
    {
        Reply::Waited { done, tasks, .. } => {
            assert!(!done);
            assert_eq!(tasks[0].status, TaskStatus::Pending);
        }
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(200));
    // A long wait ends as soon as the task is finished by someone else.
    let mut waiter = t.operator();
    let id = task.id;
    let h = std::thread::spawn(move || {
        waiter.call(Request::WaitFor {
            agents: vec![],
            tasks: vec![id],
            timeout_ms: 60_000,
            any: false,
        })
    });
    let mut b1 = t.agent("b1");
    b1.call(Request::TaskClaim { id }).unwrap();
    b1.call(Request::TaskFinish {
        id,
        status: TaskStatus::Completed,
        result: Some("done".into()),
    })
    .unwrap();
    let t0 = Instant::now();
    match h.join().unwrap().unwrap() {
        Reply::Waited { done, tasks, .. } => {
            assert!(done);
            assert_eq!(tasks[0].status, TaskStatus::Completed);
        }
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(30), "not at the timeout");
    // Unknown names are refused.
    let e = op
        .call(Request::WaitFor {
            agents: vec!["nobody".into()],
            tasks: vec![],
            timeout_ms: 10,
            any: false,
        })
        .unwrap_err();
    assert_eq!(e.body().unwrap().code, ErrorCode::NotFound);
}

/// The role names in a `get_config` answer.
fn config_roles(c: &mut agent_team_client::Client) -> Vec<String> {
    match c.call(Request::GetConfig).unwrap() {
        Reply::Config { config } => config["roles"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_teammate_reads_its_own_role_and_the_leader_and_operator_every_role() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    configured(&t);
    let all = config_roles(&mut t.operator());
    assert!(all.len() > 2, "the built-in roles: {all:?}");
    assert!(all.contains(&"worker".to_string()) && all.contains(&"leader".to_string()));
    assert_eq!(config_roles(&mut t.agent("leader")), all);
    assert_eq!(config_roles(&mut t.agent("b1")), vec!["worker".to_string()]);
}

#[test]
fn a_start_run_whose_configuration_is_refused_starts_nothing() {
    let t = TestTeam::start();
    let mut op = t.operator();
    let before = match op.call(Request::TeamInfo).unwrap() {
        Reply::Team { team } => team,
        other => panic!("{other:?}"),
    };
    // A configuration for another team is refused by `configure`'s own checks: the start that
    // carries it starts nothing and stores nothing.
    let other = agent_team_config::empty_team("other", std::path::Path::new("/tmp"));
    let e = op
        .call(Request::StartRun {
            goal: Some("a goal".into()),
            config: Some(serde_json::to_value(&other).unwrap()),
        })
        .unwrap_err();
    let body = e.body().unwrap();
    assert_eq!(body.code, ErrorCode::BadRequest, "{}", body.message);
    assert!(body.message.contains("other"), "{}", body.message);
    let after = match op.call(Request::TeamInfo).unwrap() {
        Reply::Team { team } => team,
        other => panic!("{other:?}"),
    };
    assert_eq!(after.run, before.run, "no run started");
    assert_eq!(after.goal, None);
    assert!(
        after.agents.is_empty(),
        "nobody started: {:?}",
        after.agents
    );
    assert_eq!(after.last_seq, before.last_seq, "no event recorded");
    assert_eq!(
        op.call(Request::GetConfig).unwrap(),
        Reply::Config {
            config: serde_json::Value::Null
        }
    );
    // Only the operator may configure, through `start_run` too.
    let t = TestTeam::start().with_agents(&["leader"]);
    let mut own = agent_team_config::empty_team("t", std::path::Path::new("/tmp"));
    own.backend = agent_team_config::BackendKind::Process;
    let e = t
        .agent("leader")
        .call(Request::StartRun {
            goal: None,
            config: Some(serde_json::to_value(&own).unwrap()),
        })
        .unwrap_err();
    assert_eq!(e.body().unwrap().code, ErrorCode::PermissionDenied);
    assert_eq!(
        t.operator().call(Request::GetConfig).unwrap(),
        Reply::Config {
            config: serde_json::Value::Null
        }
    );
}
