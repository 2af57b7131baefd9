//! Figures of issue 26: a detached team whose daemon is SIGKILLed brings it back by itself
//! (its agents' workers and the daemon's guardian); from the kill until a new daemon serves
//! with every agent connected again, on each backend.

use crate::daemon_bench::bin_dir;
use crate::report::*;
use agent_team_client::Client;
use agent_team_paths::Paths;
use agent_team_protocol::{Reply, Request};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The target of the issue: serving again with all agents within a second.
const TARGET: f64 = 1.0;

/// Teammates in the bench team (plus the leader).
const TEAMMATES: usize = 3;

/// `agent-team ARGS` in `root` with its own state and runtime dirs (no outside setting).
pub(crate) fn cli(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin_dir().join("agent-team"));
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
            c.env_remove(k);
        }
    }
    c.args(args)
        .current_dir(root)
        .env("AGENT_TEAM_HOME", root.join("home"))
        .env("AGENT_TEAM_RUNTIME_DIR", root.join("run"))
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Whether a daemon other than `old` serves `team` with every agent connected (a read: an
/// operator connection never starts a daemon).
fn serving(paths: &Paths, team: &str, old: Option<u32>, agents: usize) -> bool {
    let Ok(tp) = paths.team(team) else {
        return false;
    };
    let Ok(mut c) = Client::operator(&tp) else {
        return false;
    };
    if old == Some(c.welcome().daemon_pid) {
        return false;
    }
    match c.call(Request::Agents) {
        Ok(Reply::Agents { agents: a }) => a.len() == agents && a.iter().all(|a| a.connected),
        _ => false,
    }
}

fn wait(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<f64> {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Some(t0.elapsed().as_secs_f64())
}

/// `rounds` SIGKILLs of the daemon of a detached team on `backend`: the seconds from each kill
/// until serving again with every agent connected.
fn heal_times(root: &Path, backend: &str, rounds: usize) -> Result<Vec<f64>> {
    let team = "heal";
    let mut file = format!("name = \"{team}\"\n");
    for i in 1..=TEAMMATES {
        file.push_str(&format!(
            "[[teammates]]\nname = \"w{i}\"\nrole = \"worker\"\n"
        ));
    }
    std::fs::write(root.join("agent-team.toml"), file)?;
    let out = cli(root, &["up", "--backend", backend, "--detach"]).output()?;
    if !out.status.success() {
        bail!(
            "up on {backend} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let paths = Paths::new(root.join("home"), root.join("run"));
    let tp = paths.team(team)?;
    let agents = TEAMMATES + 1;
    wait(Duration::from_secs(60), || {
        serving(&paths, team, None, agents)
    })
    .context("the team did not come up")?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let pid: u32 = std::fs::read_to_string(&tp.lock)?
            .trim()
            .parse()
            .context("no daemon pid in the lock file")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let t = wait(Duration::from_secs(30), || {
            serving(&paths, team, Some(pid), agents)
        })
        .with_context(|| format!("{backend}: the team did not heal within 30 s"))?;
        times.push(t);
    }
    let _ = cli(root, &["--team", team, "down"]).status();
    Ok(times)
}

/// Runs the section.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== a team heals itself (issue 26) ==");
    let rounds = if quick { 3 } else { 10 };
    let mut backends = vec!["process", "in-process"];
    if agent_team_pane::tmux::version().is_ok() {
        backends.push("tmux");
    }
    for backend in backends {
        let root = dir.join(backend);
        std::fs::create_dir_all(&root)?;
        let mut t = heal_times(&root, backend, rounds)?;
        let (med, max) = (pct(&mut t, 50.0), pct(&mut t, 100.0));
        println!(
            "{backend}: {rounds} kills, median {}, max {}",
            dur(med),
            dur(max)
        );
        r.add(
            &format!(
                "daemon SIGKILL → serving with all {} agents reconnected, {backend} (median; max of {rounds})",
                TEAMMATES + 1
            ),
            format!("{}; {}", dur(med), dur(max)),
            "—".to_string(),
            "—".to_string(),
            "≤ 1 s",
            max <= TARGET,
        );
    }
    Ok(())
}
