//! A stopped and restarted daemon serves exactly the state it had; leftovers are cleaned up.

use super::support::*;
use agent_team_client::ReplyExt;
use agent_team_daemon::{DaemonError, DaemonThread, lock::LockError};
use agent_team_protocol::*;

#[test]
fn everything_is_back_after_a_restart_and_ids_continue() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut op = t.operator();
    let a = add_task(&mut op, "a", &[]).id;
    let b = add_task(&mut op, "b", &[a]).id;
    let mut b1 = t.agent("b1");
    b1.call(Request::TaskClaim { id: a }).task().unwrap();
    send(&mut b1, "b2", "queued for b2").unwrap();
    let perm = match b1
        .call(Request::PermRequest {
            tool: "bash".into(),
            input: "ls".into(),
            reason: String::new(),
        })
        .unwrap()
    {
        Reply::Perm { request } => request,
        other => panic!("{other:?}"),
    };
    let tasks_before = op
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
        Reply::Events { events } => events,
        other => panic!("{other:?}"),
    };
    drop((op, b1));

    t.restart();

    let mut op = t.operator();
    assert_eq!(
        op.call(Request::TaskList {
            status: None,
            after: None
        })
        .tasks()
        .unwrap(),
        tasks_before
    );
    let events_after = match op
        .call(Request::Events {
            since: 0,
            limit: None,
        })
        .unwrap()
    {
        Reply::Events { events } => events,
        other => panic!("{other:?}"),
    };
    assert_eq!(events_after[..events_before.len()], events_before[..]);
    let inbox = op
        .call(Request::Inbox {
            agent: Some("b2".into()),
            unread_only: true,
            after: None,
        })
        .messages()
        .unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body, "queued for b2");
    match op
        .call(Request::PermList {
            all: false,
            after: None,
        })
        .unwrap()
    {
        Reply::Perms { requests } => assert_eq!(requests[0].id, perm.id),
        other => panic!("{other:?}"),
    }
    // Secrets survived, so agents reconnect under the same identity.
    let mut b2 = t.agent("b2");
    assert_eq!(pushed_messages(&mut b2, 1)[0].body, "queued for b2");
    // Ids continue without reuse.
    let c = add_task(&mut op, "c", &[]).id;
    assert_eq!(c, b + 1);
}

#[test]
fn a_second_daemon_for_the_same_team_is_refused() {
    let t = TestTeam::start();
    match DaemonThread::start(t.opts.clone()) {
        Err(DaemonError::Lock(LockError::Held { pid })) => assert_eq!(pid, std::process::id()),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a second daemon started"),
    }
    // The first one still serves.
    t.operator().call(Request::Ping).unwrap();
}

#[test]
fn stale_socket_and_lock_after_a_crash_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let paths = agent_team_paths::Paths::new(dir.path().join("home"), dir.path().join("run"));
    paths.ensure_runtime().unwrap();
    let tp = paths.team("t").unwrap();
    // What a SIGKILLed daemon leaves: a socket file nobody listens on, a lock file with a pid.
    let stale = std::os::unix::net::UnixListener::bind(&tp.socket).unwrap();
    drop(stale);
    std::fs::write(&tp.lock, "999999").unwrap();
    assert!(std::os::unix::net::UnixStream::connect(&tp.socket).is_err());
    let d = DaemonThread::start(agent_team_daemon::DaemonOptions::new(paths.clone(), "t")).unwrap();
    agent_team_client::Client::operator(&tp)
        .unwrap()
        .call(Request::Ping)
        .unwrap();
    d.stop().unwrap();
    assert!(!tp.socket.exists(), "a clean stop removes the socket");
}

#[test]
fn runtime_dir_and_socket_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestTeam::start();
    let tp = t.tp();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&t.opts.paths.runtime), 0o700);
    assert_eq!(mode(&tp.socket), 0o600);
    assert_eq!(mode(&tp.operator_secret), 0o600);
}
