//! `gc`: read messages, finished tasks nothing waits on and events go; unread messages, open
//! work and its finished blockers stay; ids and sequence numbers are never handed out again,
//! also after a restart.

use super::support::*;
use agent_team_client::ReplyExt;
use agent_team_protocol::*;

fn gc(op: &mut agent_team_client::Client) -> Compacted {
    match op.call(Request::Gc { older_than_secs: 0 }).unwrap() {
        Reply::Compacted { report } => report,
        other => panic!("{other:?}"),
    }
}

fn last_seq(op: &mut agent_team_client::Client) -> u64 {
    match op.call(Request::TeamInfo).unwrap() {
        Reply::Team { team } => team.last_seq,
        other => panic!("{other:?}"),
    }
}

#[test]
fn gc_removes_what_is_done_keeps_what_is_not_and_never_reuses_an_id() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let mut b1 = t.agent("b1");
    // Two finished tasks: one blocks an open task (it stays), one does not (it goes).
    let done = add_task(&mut op, "done", &[]);
    let blocker = add_task(&mut op, "blocker", &[]);
    for id in [done.id, blocker.id] {
        b1.call(Request::TaskClaim { id }).unwrap();
        b1.call(Request::TaskFinish {
            id,
            status: TaskStatus::Completed,
            result: None,
        })
        .unwrap();
    }
    let open = add_task(&mut op, "open", &[blocker.id]);
    // Messages to b1: the read ones go, the unread one stays.
    let mut ids = Vec::new();
    for i in 0..5 {
        match send(&mut op, "b1", &format!("m{i}")).unwrap() {
            Reply::Sent { ids: sent, .. } => ids.extend(sent),
            other => panic!("{other:?}"),
        }
    }
    b1.call(Request::Ack {
        ids: ids[..4].to_vec(),
        state: DeliveryState::Read,
    })
    .unwrap();
    let seq_before = last_seq(&mut op);

    let report = gc(&mut op);
    assert_eq!((report.tasks, report.messages), (1, 4), "{report:?}");
    assert!(report.events > 0, "{report:?}");
    let titles: Vec<String> = op
        .call(Request::TaskList {
            status: None,
            after: None,
        })
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.title)
        .collect();
    assert_eq!(titles, ["blocker", "open"]);
    let inbox = match op
        .call(Request::Inbox {
            agent: Some("b1".into()),
            unread_only: false,
            after: None,
        })
        .unwrap()
    {
        Reply::Messages { messages, .. } => messages,
        other => panic!("{other:?}"),
    };
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].id, ids[4]);

    // Nothing is handed out twice, before or after a restart.
    drop((op, b1));
    t.restart();
    let mut op = t.operator();
    assert!(last_seq(&mut op) >= seq_before);
    let next = add_task(&mut op, "next", &[]);
    assert!(next.id > open.id, "task id {} reused", next.id);
    match send(&mut op, "b1", "after").unwrap() {
        Reply::Sent { ids: sent, .. } => assert!(sent[0] > ids[4], "message id reused"),
        other => panic!("{other:?}"),
    }
    // A teammate may not compact.
    let mut b1 = t.agent("b1");
    assert_eq!(
        err_code(b1.call(Request::Gc { older_than_secs: 0 })).0,
        ErrorCode::PermissionDenied
    );
}

#[test]
fn a_task_reply_remembered_for_a_retry_survives_gc_and_a_restart() {
    let mut t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut op = t.operator();
    let task = add_task(&mut op, "claimed", &[]);
    let mut b1 = t.agent("b1");
    let first = b1
        .call_with_rid(Request::TaskClaim { id: task.id }, Some("claim-1".into()))
        .unwrap();
    // Its TASK_UPDATED event is what the remembered reply points at: gc keeps it.
    gc(&mut op);
    drop((op, b1));
    t.restart();
    let mut b1 = t.agent("b1");
    let again = b1
        .call_with_rid(Request::TaskClaim { id: task.id }, Some("claim-1".into()))
        .unwrap();
    assert_eq!(again, first, "the retry is answered with the first reply");
}
