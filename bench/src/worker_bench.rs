//! Figures of the workers (issue "workers"): spawning exec teammates until connected, memory of
//! the daemon and of one teammate, and the offline demo's wall time.

use crate::daemon_bench::{BenchTeam, bin_dir, rss};
use crate::report::*;
use agent_team_config::BackendKind;
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Configures a team for the process backend in `workspace`.
fn configure(team: &BenchTeam, name: &str, workspace: &Path) -> Result<()> {
    let mut cfg = agent_team_config::empty_team(name, workspace);
    cfg.backend = BackendKind::Process;
    team.operator()?.call(Request::Configure {
        config: serde_json::to_value(&cfg)?,
    })?;
    Ok(())
}

/// Spawns `n` exec teammates at once; returns the time until every one has connected.
pub fn spawn_connected(team: &BenchTeam, prefix: &str, n: usize) -> Result<Duration> {
    let mut op = team.operator()?;
    let t0 = Instant::now();
    for i in 0..n {
        op.send(Request::Spawn {
            container: None,
            role: "worker".into(),
            name: Some(format!("{prefix}{i}")),
            instructions: None,
            model: None,
            message: None,
            host: None,
            workspace: None,
        })?;
    }
    op.flush()?;
    for _ in 0..n {
        let (_, outcome) = op.next_response()?;
        match outcome {
            Ok(Reply::Agent { agent }) if agent.connected => {}
            other => bail!("spawn failed: {other:?}"),
        }
    }
    Ok(t0.elapsed())
}

/// Spawns `n` trivial processes at once and waits for them.
fn spawn_trivial(n: usize) -> Result<Duration> {
    let t0 = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|_| Command::new("true").spawn())
        .collect::<Result<_, _>>()?;
    for mut c in children {
        c.wait()?;
    }
    Ok(t0.elapsed())
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== workers (issue 3) ==");
    let rounds = if quick { 2 } else { 5 };
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws)?;
    let mut team = BenchTeam::start(dir, "workers")?;
    configure(&team, "workers", &ws)?;
    let mut ours = Vec::new();
    let mut floor_t = Vec::new();
    for round in 0..rounds {
        floor_t.push(spawn_trivial(10)?.as_secs_f64());
        ours.push(spawn_connected(&team, &format!("r{round}w"), 10)?.as_secs_f64());
        if round + 1 < rounds {
            let mut op = team.operator()?;
            for i in 0..10 {
                op.call(Request::Kill {
                    name: format!("r{round}w{i}"),
                    reason: None,
                })?;
            }
        }
    }
    let (o, f) = (pct(&mut ours, 50.0), pct(&mut floor_t, 50.0));
    r.add(
        "spawn 10 exec teammates until all connected (median)",
        dur(o),
        format!("{} for 10 `true`", dur(f)),
        format!("{:.1}×", o / f),
        "-",
        true,
    );

    let (daemon_rss, _) = rss(team.pid());
    r.add(
        "daemon RSS with 10 exec teammates running",
        format!("{:.1} MiB", daemon_rss as f64 / 1048576.0),
        "-".into(),
        "-".into(),
        "< 20 MiB",
        (daemon_rss as f64) < 20.0 * 1048576.0,
    );
    let agents = match team.operator()?.call(Request::Agents)? {
        Reply::Agents { agents } => agents,
        _ => vec![],
    };
    let worker_pid = agents
        .iter()
        .filter(|a| a.connected)
        .filter_map(|a| a.pid)
        .next()
        .context("no running teammate")?;
    let (worker_rss, _) = rss(worker_pid);
    r.add(
        "one idle exec teammate RSS",
        format!("{:.1} MiB", worker_rss as f64 / 1048576.0),
        "-".into(),
        "-".into(),
        "< 8 MiB",
        (worker_rss as f64) < 8.0 * 1048576.0,
    );
    team.stop()?;

    // The offline demo, end to end, with the one approval given as soon as it is asked.
    let demo_floor = demo_critical_path(dir)?;
    let demo = run_demo(dir)?;
    r.add(
        "offline demo (`run --demo`, leader + 3 teammates, 8 tasks)",
        dur(demo.as_secs_f64()),
        format!("{} critical path", dur(demo_floor.as_secs_f64())),
        format!("{:.2}×", demo.as_secs_f64() / demo_floor.as_secs_f64()),
        "-",
        true,
    );
    Ok(())
}

/// The demo's longest chain of commands, run back to back with `sh` (no supervision at all).
fn demo_critical_path(dir: &Path) -> Result<Duration> {
    let cfg = agent_team_config::demo_team(dir)?;
    let ws = dir.join("demo-floor");
    std::fs::create_dir_all(&ws)?;
    let chain = ["corpus", "freq", "bundle", "publish", "tidy"];
    let t0 = Instant::now();
    for key in chain {
        let run = cfg
            .tasks
            .iter()
            .find(|t| t.key == key)
            .and_then(|t| t.run.clone())
            .context("demo task")?;
        let st = Command::new("sh")
            .arg("-c")
            .arg(&run)
            .current_dir(&ws)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("demo floor command {key} failed");
        }
    }
    Ok(t0.elapsed())
}

fn run_demo(dir: &Path) -> Result<Duration> {
    let home = dir.join("demo-home");
    let run_dir = dir.join("demo-run");
    let paths = agent_team_paths::Paths::new(&home, &run_dir);
    let tp = paths.team("demo")?;
    let t0 = Instant::now();
    let mut child = Command::new(bin_dir().join("agent-team"))
        .args([
            "run",
            "--demo",
            "--backend",
            "process",
            "--quiet",
            "--timeout",
            "120",
        ])
        .env("AGENT_TEAM_HOME", &home)
        .env("AGENT_TEAM_RUNTIME_DIR", &run_dir)
        .env_remove("TMUX")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Approve the publish step the moment it is asked (a human would take longer).
    let mut approved = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if !approved
            && let Ok(mut c) = agent_team_client::Client::operator(&tp)
            && let Ok(Reply::Perms { requests }) = c.call(Request::PermList {
                all: false,
                after: None,
            })
            && let Some(p) = requests.first()
        {
            c.call(Request::PermDecide {
                id: p.id,
                allow: true,
                always: false,
                pattern: None,
                reason: None,
            })?;
            approved = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if !status.success() {
        bail!("the demo run failed ({status})");
    }
    Ok(t0.elapsed())
}
