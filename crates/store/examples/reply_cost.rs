//! What remembering replies costs the daemon's thread, without the daemon: the state and the
//! store run the racing-claims and sustained-messages loads of the bench in one thread, and the
//! thread's CPU time (from /proc, so other processes on the machine do not count) is reported
//! per request for each way of remembering replies:
//!
//! `cargo run --release -p agent-team-store --example reply_cost -- [claims|messages] [rounds] [modes] [reps]`
//!
//! (`modes` is a comma-separated list of the ones below, all by default; `reps` how many
//! times each runs, interleaved; the median and range per mode are printed at the end.)
//!
//! - `none`: no request ids (the code before issue 11);
//! - `json`: the reply serialised to a JSON string when it is remembered (`remember_reply`);
//! - `typed`: the reply kept as it is and written as JSON by the store (`remember_outcome`).

use agent_team_protocol::*;
use agent_team_state::{Actor, AgentRecord, TeamState, tasks::NewTask};
use agent_team_store::Store;

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    None,
    Json,
    Typed,
    /// `typed`, but the replies are not stored (what the in-memory part costs).
    Memory,
}

/// Remembers `o` as the daemon does: it has answered with it already, so it moves in.
fn remember(s: &mut TeamState, mode: Mode, who: &str, rid: &str, o: Result<Reply, ErrorBody>) {
    match mode {
        Mode::None => {}
        Mode::Json => {
            let json = serde_json::to_string(&o).unwrap_or_else(|_| "null".into());
            s.remember_reply(who, rid, json);
        }
        Mode::Typed | Mode::Memory => s.remember_outcome(who, rid.to_owned(), o),
    }
}

fn agent(name: &str, now: Timestamp) -> AgentRecord {
    AgentRecord {
        info: AgentInfo {
            name: name.into(),
            role: "worker".into(),
            status: AgentStatus::Idle,
            backend: "external".into(),
            pid: None,
            pgid: None,
            pane: None,
            incarnation: 1,
            restarts: 0,
            current_task: None,
            last_activity: now,
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
    }
}

/// Runs `rounds` commits of the load; returns (requests, CPU ns).
fn run(load: &str, mode: Mode, rounds: usize) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("s.db"), "t")?;
    let mut s = TeamState::restore("t", store.load()?);
    let now = Timestamp(1_700_000_000_000);
    let names: Vec<String> = (0..10).map(|i| format!("cl-{i}")).collect();
    for n in &names {
        s.add_agent(&Actor::Operator, agent(n, now), now)?;
    }
    s.add_agent(&Actor::Operator, agent("tp-r0", now), now)?;
    s.add_agent(&Actor::Operator, agent("tp-r1", now), now)?;
    s.set_inbox_limit(usize::MAX);
    if load == "claims" {
        for _ in 0..(rounds * 10 + 10) {
            s.task_add(
                &Actor::Operator,
                NewTask {
                    title: "t".into(),
                    ..Default::default()
                },
                now,
            )?;
        }
    }
    store.commit(&s.take_changes())?;
    let mut rid = 0u64;
    let mut requests = 0u64;
    let mut held: Vec<Option<u64>> = vec![None; names.len()];
    let t0 = thread_cpu_ns();
    for round in 0..rounds {
        let now = Timestamp(now.0 + round as u64);
        if load == "claims" {
            // Ten claimers: each finishes its task and claims the next in one commit.
            for (i, n) in names.iter().enumerate() {
                let actor = Actor::Agent(n.clone());
                if let Some(id) = held[i] {
                    let o = s
                        .task_finish(&actor, id, TaskStatus::Completed, None, now)
                        .map(|task| Reply::Task { task });
                    rid += 1;
                    remember(&mut s, mode, n, &format!("p.{rid}"), o);
                    requests += 1;
                }
                let o = s.task_claim_next(&actor, now);
                held[i] = o.as_ref().ok().and_then(|t| t.as_ref().map(|t| t.id));
                let o = o.map(|task| Reply::MaybeTask { task });
                rid += 1;
                remember(&mut s, mode, n, &format!("p.{rid}"), o);
                requests += 1;
            }
        } else {
            // Four senders, 128 messages each per commit, to two receivers who read them.
            for sender in names.iter().take(4) {
                let actor = Actor::Agent(sender.clone());
                for k in 0..128 {
                    let to = if k % 2 == 0 { "tp-r0" } else { "tp-r1" };
                    let o = s
                        .send(&actor, to, "x".repeat(100), MessageKind::Text, None, now)
                        .map(|(ids, recipients)| Reply::Sent { ids, recipients });
                    rid += 1;
                    remember(&mut s, mode, sender, &format!("p.{rid}"), o);
                    requests += 1;
                }
            }
            for r in ["tp-r0", "tp-r1"] {
                let ids: Vec<u64> = s.unread(r).iter().map(|m| m.id).collect();
                s.ack(&Actor::Agent(r.into()), &ids, DeliveryState::Read, now)?;
            }
        }
        let mut changes = s.take_changes();
        if mode == Mode::Memory {
            changes.retain(|c| {
                !matches!(
                    c,
                    agent_team_state::Change::Replies { .. }
                        | agent_team_state::Change::RepliesPruned { .. }
                )
            });
        }
        store.commit(&changes)?;
        store.checkpoint(false)?;
    }
    Ok((requests, thread_cpu_ns() - t0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let load = args
        .first()
        .map(String::as_str)
        .unwrap_or("claims")
        .to_string();
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(2000);
    // Modes to run (comma-separated; all by default) and how many times each, interleaved so
    // a machine that gets busier or quieter moves every mode alike.
    let modes: Vec<Mode> = [Mode::None, Mode::Json, Mode::Typed, Mode::Memory]
        .into_iter()
        .filter(|m| {
            args.get(2).is_none_or(|only| {
                only.split(',')
                    .any(|o| format!("{m:?}").eq_ignore_ascii_case(o))
            })
        })
        .collect();
    let reps: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut per_mode: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for rep in 0..reps {
        for (i, mode) in modes.iter().enumerate() {
            let (n, ns) = run(&load, *mode, rounds)?;
            let us = ns as f64 / n as f64 / 1000.0;
            per_mode[i].push(us);
            println!("{load} round {rep} {mode:?}: {us:.2} µs CPU per request ({n} requests)");
        }
    }
    for (mode, mut v) in modes.iter().zip(per_mode) {
        v.sort_by(f64::total_cmp);
        if let (Some(min), Some(max)) = (v.first(), v.last()) {
            println!(
                "{load} {mode:?}: median {:.2} µs, min {min:.2}, max {max:.2} ({} runs)",
                v[v.len() / 2],
                v.len()
            );
        }
    }
    Ok(())
}
