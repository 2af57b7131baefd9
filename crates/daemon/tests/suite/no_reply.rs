//! A request its sender waits for no answer to (`no_reply`: an agent's statuses and progress
//! events) is applied and answered with nothing, not even an error, while the requests around
//! it are answered as always.

use super::support::*;
use agent_team_protocol::frame;
use agent_team_protocol::*;
use std::io::Write;

#[test]
fn a_request_sent_without_waiting_is_applied_and_gets_no_answer() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut s = raw(&t);
    let hello = agent_team_client::agent_hello("t", "b1", &t.secret("b1"), 0);
    frame::write(&mut s, &ClientFrame::Hello(hello)).unwrap();
    let welcome: ServerFrame = frame::read(&mut s).unwrap();
    assert!(matches!(welcome, ServerFrame::Welcome(_)), "{welcome:?}");
    let request = |id, body, no_reply| ClientFrame::Request {
        id,
        body,
        rid: None,
        no_reply,
    };
    // A status and a failing read nobody waits for, then a request that is waited for.
    let status = Request::SetStatus {
        status: AgentStatus::Running,
        error: None,
    };
    frame::write(&mut s, &request(1, status, true)).unwrap();
    frame::write(&mut s, &request(2, Request::TaskShow { id: 999 }, true)).unwrap();
    frame::write(&mut s, &request(3, Request::Agents, false)).unwrap();
    s.flush().unwrap();
    // The first response is the third request's: the other two are answered with nothing.
    let agents = loop {
        match frame::read::<ServerFrame>(&mut s).unwrap() {
            ServerFrame::Response { id, ok, error } => {
                assert_eq!(id, 3, "only the request waited for is answered: {error:?}");
                break ok;
            }
            _push => continue,
        }
    };
    // The status it sent without waiting was applied before the roster was read.
    let Some(Reply::Agents { agents }) = agents else {
        panic!("{agents:?}")
    };
    let b1 = agents.iter().find(|a| a.name == "b1").unwrap();
    assert_eq!(b1.status, AgentStatus::Running);
    // And it is on record for the operator too, as any change.
    let mut op = t.operator();
    let Ok(Reply::Agents { agents }) = op.call(Request::Agents) else {
        panic!("no roster")
    };
    assert_eq!(
        agents.iter().find(|a| a.name == "b1").unwrap().status,
        AgentStatus::Running
    );
}

#[test]
fn a_change_nobody_waits_for_is_on_disk_once_the_daemon_stops() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut s = raw(&t);
    let hello = agent_team_client::agent_hello("t", "b1", &t.secret("b1"), 0);
    frame::write(&mut s, &ClientFrame::Hello(hello)).unwrap();
    let _welcome: ServerFrame = frame::read(&mut s).unwrap();
    let status = Request::SetStatus {
        status: AgentStatus::Waiting,
        error: None,
    };
    frame::write(
        &mut s,
        &ClientFrame::Request {
            id: 1,
            body: status,
            rid: None,
            no_reply: true,
        },
    )
    .unwrap();
    s.flush().unwrap();
    // Seen by the operator (so applied), then the daemon stops and starts again from disk.
    let mut op = t.operator();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status_of = |op: &mut agent_team_client::Client| match op.call(Request::Agents) {
        Ok(Reply::Agents { agents }) => agents
            .into_iter()
            .find(|a| a.name == "b1")
            .map(|a| a.status),
        _ => None,
    };
    while status_of(&mut op) != Some(AgentStatus::Waiting) {
        assert!(std::time::Instant::now() < deadline, "never applied");
        std::thread::yield_now();
    }
    drop(op);
    drop(s);
    t.restart();
    let mut op = t.operator();
    // A restarted daemon marks every agent disconnected but keeps its last status.
    let status = status_of(&mut op);
    assert!(
        matches!(status, Some(AgentStatus::Waiting)),
        "the status sent without waiting was lost: {status:?}"
    );
}
