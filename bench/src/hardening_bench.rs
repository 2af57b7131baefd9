//! Figures of the hardening issue: a flood of connections that never say hello must not lock
//! real clients out or grow the daemon (the connection cap closes the oldest idle one, the hello
//! deadline the rest). `agent-team ps` and the daemon's RSS with the flood held open, beside the
//! same team without it.

use crate::daemon_bench::{bin_dir, rss};
use crate::report::*;
use anyhow::{Context, Result, bail};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cli(home: &Path, run: &Path, cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin_dir().join("agent-team"));
    c.args(args)
        .current_dir(cwd)
        .env("AGENT_TEAM_HOME", home)
        .env("AGENT_TEAM_RUNTIME_DIR", run)
        .env_remove("TMUX")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Median wall of `agent-team ps` over `n` runs.
fn ps_wall(home: &Path, run: &Path, ws: &Path, team: &str, n: usize) -> Result<f64> {
    let mut walls = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let st = cli(home, run, ws, &["--team", team, "ps"]).status()?;
        walls.push(t0.elapsed().as_secs_f64());
        if !st.success() {
            bail!("`agent-team ps` failed ({st})");
        }
    }
    Ok(pct(&mut walls, 50.0))
}

/// Lets this process hold as many descriptors as its hard limit allows.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// An agent record for the state the message figure fills.
fn agent(name: &str) -> agent_team_state::AgentRecord {
    use agent_team_protocol::*;
    agent_team_state::AgentRecord {
        info: AgentInfo {
            status: AgentStatus::Idle,
            connected: true,
            ..AgentInfo::new(
                name,
                if name == "leader" { "leader" } else { "worker" },
                "external",
                1,
                Timestamp::from(std::time::SystemTime::now()),
            )
        },
        secret: "s".into(),
        spec: serde_json::Value::Null,
    }
}

/// `n` messages sent, delivered and read through the team state's own rules and stored batch
/// by batch as the daemon stores them; then the state's files before and after `gc`.
fn gc_figure(dir: &Path, n: usize) -> Result<(u64, u64, f64)> {
    use agent_team_protocol::*;
    use agent_team_state::{Actor, TeamState};
    let db = dir.join("gc.db");
    let mut store = agent_team_store::Store::open(&db, "gc")?;
    let mut state = TeamState::new("gc");
    for name in ["leader", "w1", "w2", "w3"] {
        state
            .add_agent(
                &Actor::Operator,
                agent(name),
                Timestamp::from(std::time::SystemTime::now()),
            )
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    store.commit(&state.take_changes())?;
    let batch = 2000;
    let mut sent = 0;
    while sent < n {
        let mut ids = Vec::new();
        for i in 0..batch.min(n - sent) {
            let to = ["w1", "w2", "w3"][i % 3];
            let (id, _) = state
                .send(
                    &Actor::Agent("leader".into()),
                    to,
                    format!("message {} to {to}: a body of an ordinary length", sent + i),
                    MessageKind::Text,
                    None,
                    Timestamp::from(std::time::SystemTime::now()),
                )
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            ids.push((to, id[0]));
        }
        store.commit(&state.take_changes())?;
        for state_to in [DeliveryState::Delivered, DeliveryState::Read] {
            for to in ["w1", "w2", "w3"] {
                let mine: Vec<u64> = ids
                    .iter()
                    .filter(|(t, _)| *t == to)
                    .map(|(_, i)| *i)
                    .collect();
                state
                    .ack(
                        &Actor::Agent(to.into()),
                        &mine,
                        state_to,
                        Timestamp::from(std::time::SystemTime::now()),
                    )
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            }
            store.commit(&state.take_changes())?;
        }
        sent += batch.min(n - sent);
    }
    store.checkpoint(true)?;
    let t0 = Instant::now();
    let report = store.compact(
        &db,
        Timestamp(Timestamp::from(std::time::SystemTime::now()).0 + 1),
        &[],
        true,
    )?;
    Ok((
        report.bytes_before,
        report.bytes_after,
        t0.elapsed().as_secs_f64(),
    ))
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== hardening (issue 12) ==");
    let n = if quick { 100_000 } else { 1_000_000 };
    let (before, after, took) = gc_figure(dir, n)?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    r.add(
        &format!(
            "state files after {n} messages sent, delivered and read, after `gc` ({} to compact)",
            dur(took)
        ),
        format!("{:.1} MiB", mib(after)),
        format!("{:.1} MiB before", mib(before)),
        format!("{:.3}×", after as f64 / before.max(1) as f64),
        "≤ 5 % of before",
        after * 20 <= before,
    );
    let team = "flood";
    let ws = dir.join(team);
    std::fs::create_dir_all(&ws)?;
    let (home, rundir) = (dir.join("home"), dir.join("run"));
    std::fs::write(ws.join("agent-team.toml"), format!("name = \"{team}\"\n"))?;
    let st = cli(
        &home,
        &rundir,
        &ws,
        &["up", "--backend", "process", "--detach"],
    )
    .status()?;
    if !st.success() {
        bail!("up failed");
    }
    let paths = agent_team_paths::Paths::new(&home, &rundir);
    let tp = paths.team(team)?;
    let daemon: u32 = std::fs::read_to_string(&tp.lock)?
        .trim()
        .parse()
        .context("no daemon pid")?;
    let runs = if quick { 3 } else { 7 };
    let calm_ps = ps_wall(&home, &rundir, &ws, team, runs)?;
    let calm_rss = rss(daemon).0;

    // The flood: connections that never say hello, held open by this process.
    let want = if quick { 5_000 } else { 20_000 };
    let fds = raise_fd_limit();
    let hold = (want as u64).min(fds.saturating_sub(64)) as usize;
    let mut held = Vec::with_capacity(hold);
    let t0 = Instant::now();
    while held.len() < hold {
        match UnixStream::connect(&tp.socket) {
            Ok(s) => held.push(s),
            Err(e) if t0.elapsed() > Duration::from_secs(120) => {
                bail!("only {} connections after 2 min: {e}", held.len())
            }
            Err(_) => std::thread::yield_now(),
        }
    }
    let flood_ps = ps_wall(&home, &rundir, &ws, team, runs)?;
    // The peak, not the moment after: the flood's worst is what counts.
    let (flood_now, flood_rss) = rss(daemon);
    drop(held);
    let _ = cli(&home, &rundir, &ws, &["--team", team, "down"]).status();
    if hold < want {
        r.note(format!(
            "the flood held {hold} connections, not {want}: this process may hold {fds} descriptors"
        ));
    }
    r.add(
        &format!("`agent-team ps` with {hold} connections held open that never say hello (median)"),
        dur(flood_ps),
        format!("{} without them", dur(calm_ps)),
        format!("{:.2}×", flood_ps / calm_ps),
        "< 100 ms",
        flood_ps < 0.1,
    );
    r.add(
        &format!("daemon peak RSS with {hold} connections held open that never say hello"),
        format!("{:.1} MiB (now {:.1})", mib(flood_rss), mib(flood_now)),
        format!("{:.1} MiB without them", mib(calm_rss)),
        format!("{:.2}×", flood_rss as f64 / calm_rss.max(1) as f64),
        "< 64 MiB",
        mib(flood_rss) < 64.0,
    );
    Ok(())
}
