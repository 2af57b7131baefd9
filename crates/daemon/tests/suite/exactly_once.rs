//! A mutating request repeated under the same request id is applied once: the retry after a
//! dropped connection (or a daemon restart) gets the first reply, and the board and inboxes
//! hold one copy.

use super::support::*;
use agent_team_client::{Client, ReplyExt};
use agent_team_protocol::frame;
use agent_team_protocol::*;
use std::io::Write;
use std::os::unix::net::UnixStream;

/// Sends one request under `rid` on a raw connection and closes it without reading the reply,
/// as a client does whose connection dropped after the daemon committed.
fn fire_and_drop(t: &TestTeam, hello: &Hello, req: Request, rid: &str) {
    let mut s = UnixStream::connect(t.tp().socket).unwrap();
    frame::write(&mut s, &ClientFrame::Hello(hello.clone())).unwrap();
    frame::write(
        &mut s,
        &ClientFrame::Request {
            id: 1,
            body: req,
            rid: Some(rid.into()),
            no_reply: false,
        },
    )
    .unwrap();
    s.flush().unwrap();
    // Read the welcome so the request is known to have been read by the daemon's reader,
    // then hang up before the response.
    let _welcome: ServerFrame = frame::read(&mut s).unwrap();
    drop(s);
}

fn message_count(op: &mut Client, to: &str) -> usize {
    op.all_messages(to, false).unwrap().len()
}

#[test]
fn a_retried_send_and_task_add_are_applied_once_across_a_drop_and_a_restart() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1"]);
    let hello = agent_team_client::operator_hello(&t.tp()).unwrap();
    let send = Request::Send {
        to: "b1".into(),
        body: "exactly once".into(),
        kind: MessageKind::Text,
        summary: None,
        dedup: None,
    };
    let add = Request::TaskAdd {
        title: "once".into(),
        description: String::new(),
        run: None,
        blocked_by: vec![],
        assign: None,
        key: None,
    };
    fire_and_drop(&t, &hello, send.clone(), "rid-send-1");
    fire_and_drop(&t, &hello, add.clone(), "rid-add-1");

    // The retry on a new connection gets the original outcome. Wait until the first attempt
    // is visible (it was read, so it will be applied), then retry.
    let mut op = t.operator();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while message_count(&mut op, "b1") == 0 || op.all_tasks(None).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "first attempts never applied"
        );
        std::thread::yield_now();
    }
    let first_ids = match op.call_with_rid(send.clone(), Some("rid-send-1".into())) {
        Ok(Reply::Sent { ids, .. }) => ids,
        other => panic!("{other:?}"),
    };
    let first_task = op
        .call_with_rid(add.clone(), Some("rid-add-1".into()))
        .task()
        .unwrap();
    assert_eq!(message_count(&mut op, "b1"), 1);
    assert_eq!(op.all_tasks(None).unwrap().len(), 1);
    let listed = op.all_messages("b1", false).unwrap();
    assert_eq!(
        listed[0].id, first_ids[0],
        "the retry names the message sent first"
    );

    // The same after a restart: the record is durable.
    drop(op);
    t.restart();
    let mut op = t.operator();
    match op.call_with_rid(send.clone(), Some("rid-send-1".into())) {
        Ok(Reply::Sent { ids, .. }) => assert_eq!(ids, first_ids),
        other => panic!("{other:?}"),
    }
    let again = op
        .call_with_rid(add.clone(), Some("rid-add-1".into()))
        .task()
        .unwrap();
    assert_eq!(again.id, first_task.id);
    assert_eq!(message_count(&mut op, "b1"), 1);
    assert_eq!(op.all_tasks(None).unwrap().len(), 1);

    // A new request id is a new request.
    op.call_with_rid(send, Some("rid-send-2".into())).unwrap();
    assert_eq!(message_count(&mut op, "b1"), 2);
}

#[test]
fn request_ids_are_per_identity_and_a_failed_outcome_is_replayed_too() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut op = t.operator();
    let task = add_task(&mut op, "a", &[]);
    let mut b1 = t.agent("b1");
    let mut b2 = t.agent("b2");
    let claim = Request::TaskClaim { id: task.id };
    // b1 and b2 happen to choose the same id: they are different requests.
    let r1 = b1.call_with_rid(claim.clone(), Some("same".into()));
    assert_eq!(r1.task().unwrap().owner.as_deref(), Some("b1"));
    let (code, _) = err_code(b2.call_with_rid(claim.clone(), Some("same".into())));
    assert_ne!(code, ErrorCode::Internal);
    // b1's retry is answered with its success, not "already claimed".
    let again = b1.call_with_rid(claim.clone(), Some("same".into()));
    assert_eq!(again.task().unwrap().owner.as_deref(), Some("b1"));
    // b2's retry gets its own first answer again.
    let (code2, _) = err_code(b2.call_with_rid(claim, Some("same".into())));
    assert_eq!(code, code2);
}

#[test]
fn an_oversized_request_id_is_refused() {
    let t = TestTeam::start().with_agents(&["leader"]);
    let mut op = t.operator();
    let (code, _) =
        err_code(op.call_with_rid(Request::TaskClaimNext, Some("x".repeat(MAX_RID_LEN + 1))));
    assert_eq!(code, ErrorCode::BadRequest);
}
