//! A client written from docs/PROTOCOL.md alone: frames built by hand, byte by byte.

use super::support::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn send(s: &mut UnixStream, json: &str) {
    // "Each frame is a 4-byte big-endian unsigned length N followed by N bytes of UTF-8 JSON."
    let n = json.len() as u32;
    let mut bytes = vec![(n >> 24) as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    bytes.extend_from_slice(json.as_bytes());
    s.write_all(&bytes).unwrap();
}

fn recv(s: &mut UnixStream) -> Value {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    let n =
        ((h[0] as usize) << 24) | ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn the_documented_session_works() {
    let t = TestTeam::start().with_agents(&["leader", "b1"]);
    let secret = std::fs::read_to_string(t.tp().operator_secret).unwrap();
    let mut s = UnixStream::connect(t.tp().socket).unwrap();

    send(
        &mut s,
        &format!(
            r#"{{"type":"hello","protocol":1,"team":"t","auth":{{"kind":"operator","secret":"{}"}}}}"#,
            secret.trim()
        ),
    );
    let w = recv(&mut s);
    assert_eq!(
        (
            w["type"].as_str(),
            w["identity"].as_str(),
            w["protocol"].as_u64()
        ),
        (Some("welcome"), Some("operator"), Some(1))
    );

    send(
        &mut s,
        r#"{"type":"request","id":1,"body":{"op":"task_add","title":"Run tests","run":"cargo test"}}"#,
    );
    let r = recv(&mut s);
    assert_eq!(r["type"], "response");
    assert_eq!(r["id"], 1);
    assert_eq!(r["ok"]["kind"], "task");
    assert_eq!(r["ok"]["task"]["status"], "pending");
    let id = r["ok"]["task"]["id"].as_u64().unwrap();

    send(
        &mut s,
        &format!(r#"{{"type":"request","id":2,"body":{{"op":"task_claim","id":{id}}}}}"#),
    );
    let r = recv(&mut s);
    assert_eq!(r["id"], 2);
    assert_eq!(r["error"]["code"], "permission_denied");

    send(
        &mut s,
        r#"{"type":"request","id":3,"body":{"op":"send","to":"nobody","body":"hi"}}"#,
    );
    let r = recv(&mut s);
    assert_eq!(r["error"]["code"], "not_found");
    assert_eq!(
        r["error"]["details"]["valid"],
        serde_json::json!(["leader", "b1"])
    );

    send(
        &mut s,
        r#"{"type":"request","id":4,"body":{"op":"subscribe","since":0}}"#,
    );
    let r = recv(&mut s);
    assert_eq!(r["ok"]["kind"], "subscribed");
    let p = recv(&mut s);
    assert_eq!(p["type"], "push");
    assert_eq!(p["push"], "event");
    assert_eq!(p["envelope"]["seq"], 1);
    assert_eq!(p["envelope"]["team_id"], "t");
    assert!(p["envelope"]["event"]["type"].is_string());
}
