//! SPEC §5.3 through the socket.

use super::support::*;
use agent_team_client::ReplyExt;
use agent_team_protocol::*;
use serde_json::json;

#[test]
fn unknown_recipient_is_an_error_listing_valid_names() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut b1 = t.agent("b1");
    let (code, d) = err_code(send(&mut b1, "b3", "hi"));
    assert_eq!(code, ErrorCode::NotFound);
    assert_eq!(d["valid"], json!(["leader", "b1", "b2"]));
    let mut op = t.operator();
    for n in ["leader", "b1", "b2"] {
        assert!(
            op.call(Request::Inbox {
                agent: Some(n.into()),
                unread_only: false,
                after: None
            })
            .messages()
            .unwrap()
            .is_empty()
        );
    }
}

#[test]
fn broadcast_gives_each_other_member_a_copy_and_never_the_sender() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2", "b3"]);
    let mut b1 = t.agent("b1");
    match send(&mut b1, "*", "hello all").unwrap() {
        Reply::Sent { ids, recipients } => {
            assert_eq!(recipients, vec!["leader", "b2", "b3"]);
            assert_eq!(ids.len(), 3);
            let mut uniq = ids.clone();
            uniq.dedup();
            assert_eq!(uniq.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    let mut op = t.operator();
    for n in ["leader", "b2", "b3"] {
        let m = op
            .call(Request::Inbox {
                agent: Some(n.into()),
                unread_only: false,
                after: None,
            })
            .messages()
            .unwrap();
        assert_eq!(m.len(), 1, "{n}");
        assert_eq!(
            (m[0].from.as_str(), m[0].to.as_str(), m[0].body.as_str()),
            ("b1", n, "hello all")
        );
    }
    assert!(
        op.call(Request::Inbox {
            agent: Some("b1".into()),
            unread_only: false,
            after: None
        })
        .messages()
        .unwrap()
        .is_empty()
    );
}

#[test]
fn messages_arrive_in_order_per_sender_and_sender_is_stamped() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2", "r"]);
    let mut r = t.agent("r");
    let senders: Vec<_> = ["leader", "b1", "b2"]
        .into_iter()
        .map(|n| {
            let mut c = t.agent(n);
            std::thread::spawn(move || {
                for i in 0..200 {
                    // Pipelined: all in flight at once, as fast as the daemon takes them.
                    c.send(Request::Send {
                        to: "r".into(),
                        body: format!("{i}"),
                        kind: MessageKind::Text,
                        summary: None,
                        dedup: None,
                    })
                    .unwrap();
                }
                c.flush().unwrap();
                for _ in 0..200 {
                    let (_, outcome) = c.next_response().unwrap();
                    outcome.unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let got = pushed_messages(&mut r, 600);
    for sender in ["leader", "b1", "b2"] {
        let seq: Vec<u32> = got
            .iter()
            .filter(|m| m.from == sender)
            .map(|m| m.body.parse().unwrap())
            .collect();
        assert_eq!(seq, (0..200).collect::<Vec<_>>(), "from {sender}");
    }
    let ids: Vec<u64> = got.iter().map(|m| m.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "pushes follow id order"
    );
}

#[test]
fn inbox_full_refuses_and_drops_nothing() {
    let t = TestTeam::start_with(|o| o.inbox_limit = 5).with_agents(&["leader", "b1", "b2"]);
    let mut b1 = t.agent("b1");
    for i in 0..5 {
        send(&mut b1, "b2", &format!("m{i}")).unwrap();
    }
    let (code, d) = err_code(send(&mut b1, "b2", "m5"));
    assert_eq!(code, ErrorCode::InboxFull);
    assert_eq!(
        (d["recipients"].clone(), d["limit"].clone()),
        (json!(["b2"]), json!(5))
    );
    // A broadcast that would overflow one inbox delivers to nobody.
    let (code, _) = err_code(send(&mut b1, "*", "all"));
    assert_eq!(code, ErrorCode::InboxFull);
    let mut op = t.operator();
    assert!(
        op.call(Request::Inbox {
            agent: Some("leader".into()),
            unread_only: false,
            after: None
        })
        .messages()
        .unwrap()
        .is_empty()
    );
    // Reading one frees a slot.
    let mut b2 = t.agent("b2");
    let got = pushed_messages(&mut b2, 5);
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    b2.call(Request::Ack {
        ids: vec![got[0].id],
        state: DeliveryState::Read,
    })
    .unwrap();
    send(&mut b1, "b2", "m5").unwrap();
}

#[test]
fn delivery_states_move_queued_delivered_read() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut leader = t.agent("leader");
    let mut op = t.operator();
    send(&mut leader, "b1", "task for you").unwrap();
    let state = |op: &mut agent_team_client::Client| {
        op.call(Request::Inbox {
            agent: Some("b1".into()),
            unread_only: false,
            after: None,
        })
        .messages()
        .unwrap()[0]
            .state
    };
    assert_eq!(state(&mut op), DeliveryState::Queued);
    // Pushed when b1 connects, since it was queued while b1 was away.
    let mut b1 = t.agent("b1");
    let m = pushed_messages(&mut b1, 1).remove(0);
    assert_eq!(
        (m.from.as_str(), m.body.as_str()),
        ("leader", "task for you")
    );
    b1.call(Request::Ack {
        ids: vec![m.id],
        state: DeliveryState::Delivered,
    })
    .unwrap();
    assert_eq!(state(&mut op), DeliveryState::Delivered);
    b1.call(Request::Ack {
        ids: vec![m.id],
        state: DeliveryState::Read,
    })
    .unwrap();
    assert_eq!(state(&mut op), DeliveryState::Read);
    // A reconnect does not push what was read.
    drop(b1);
    let mut b1 = t.agent("b1");
    assert!(matches!(
        b1.next_push(Some(std::time::Duration::from_millis(200))),
        Err(agent_team_client::ClientError::Timeout)
    ));
}

#[test]
fn unread_messages_are_pushed_again_after_reconnect() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut leader = t.agent("leader");
    let mut b1 = t.agent("b1");
    send(&mut leader, "b1", "one").unwrap();
    let first = pushed_messages(&mut b1, 1).remove(0);
    drop(b1); // never acknowledged
    let mut b1 = t.agent("b1");
    let again = pushed_messages(&mut b1, 1).remove(0);
    assert_eq!(first.id, again.id);
}

#[test]
fn oversized_body_is_refused() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let mut b1 = t.agent("b1");
    let big = "x".repeat(MAX_BODY_LEN + 1);
    let (code, _) = err_code(send(&mut b1, "leader", &big));
    assert_eq!(code, ErrorCode::BadRequest);
}

#[test]
fn agents_read_only_their_own_inbox() {
    let t = TestTeam::start().with_agents(&["leader", "b1", "b2"]);
    let mut b1 = t.agent("b1");
    let (code, _) = err_code(b1.call(Request::Inbox {
        agent: Some("b2".into()),
        unread_only: false,
        after: None,
    }));
    assert_eq!(code, ErrorCode::PermissionDenied);
    b1.call(Request::Inbox {
        agent: None,
        unread_only: false,
        after: None,
    })
    .messages()
    .unwrap();
}

#[test]
fn a_message_many_times_the_io_buffer_arrives_whole_both_ways() {
    // Frames larger than the connections' buffers are read and written past them.
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let body: String = (0..3 * frame::IO_BUFFER + 1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut b1 = t.agent("b1");
    send(&mut b1, "leader", &body).unwrap();
    let mut leader = t.agent("leader");
    let got = leader
        .call(Request::Inbox {
            agent: None,
            unread_only: false,
            after: None,
        })
        .messages()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, body);
    // And through the async client, whose buffers are the same size.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hello = agent_team_client::agent_hello("t", "leader", &t.secret("leader"), 0);
    let read = rt.block_on(async {
        let (c, _pushes) = agent_team_client::AsyncClient::connect(&t.tp().socket, &hello)
            .await
            .unwrap();
        c.call(Request::Inbox {
            agent: None,
            unread_only: false,
            after: None,
        })
        .await
    });
    assert_eq!(read.messages().unwrap()[0].body, body);
}
