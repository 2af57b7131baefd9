//! How long one message's commit takes: `cargo run --release -p agent-team-store --example commit_cost DIR`.

#![allow(clippy::unwrap_used)]
use agent_team_protocol::*;
use agent_team_state::{Actor, AgentRecord, Change, TeamState};
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp".into());
    let db = std::path::PathBuf::from(&dir).join("commit-cost.db");
    let _ = std::fs::remove_file(&db);
    let mut store = agent_team_store::Store::open(&db, "t").unwrap();
    let mut s = TeamState::new("t");
    let mk = |n: &str| AgentRecord {
        info: AgentInfo {
            name: n.into(),
            role: "w".into(),
            status: AgentStatus::Idle,
            backend: "x".into(),
            pid: None,
            pgid: None,
            pane: None,
            incarnation: 1,
            restarts: 0,
            current_task: None,
            last_activity: Timestamp(0),
            connected: true,
            last_exit: None,
            error: None,
            usage: None,
            todos: Vec::new(),
            color: None,
            plan: None,
            host: None,
            container: None,
        },
        secret: "s".into(),
        spec: serde_json::Value::Null,
    };
    s.add_agent(&Actor::Operator, mk("a"), Timestamp(0))
        .unwrap();
    s.add_agent(&Actor::Operator, mk("b"), Timestamp(0))
        .unwrap();
    store.commit(&s.take_changes()).unwrap();
    let mut v = vec![];
    for i in 0..2000 {
        s.send(
            &Actor::Agent("a".into()),
            "b",
            "x".repeat(100),
            MessageKind::Text,
            None,
            Timestamp::from(std::time::SystemTime::now()),
        )
        .unwrap();
        let ch: Vec<Change> = s.take_changes();
        let t = Instant::now();
        store.commit(&ch).unwrap();
        v.push(t.elapsed().as_secs_f64());
        if i % 50 == 0 {
            let ids: Vec<u64> = s.unread("b").iter().map(|m| m.id).collect();
            s.ack(
                &Actor::Agent("b".into()),
                &ids,
                DeliveryState::Read,
                Timestamp::from(std::time::SystemTime::now()),
            )
            .unwrap();
            store.commit(&s.take_changes()).unwrap();
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "commit p50 {:.1} µs p99 {:.1} µs",
        v[1000] * 1e6,
        v[1980] * 1e6
    );
}
