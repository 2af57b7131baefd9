//! Figures of the board issue: the CPU of `agent-team board` (in a pane of a private tmux
//! server) while the team is idle, and while 10 agents stream text, beside the CPU of
//! `agent-team events --follow` reading the same stream in the same run.

use crate::daemon_bench::{BenchTeam, bin_dir, cpu_secs};
use crate::pane_bench::tmux;
use crate::report::*;
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The board in a detached tmux session of its own server; the server is killed on drop.
struct BoardPane {
    socket: std::path::PathBuf,
}

impl Drop for BoardPane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .env_remove("TMUX")
            .output();
    }
}

/// Starts the board for `team` in a 120×40 pane; returns it and the board's pid.
fn board(team: &BenchTeam, dir: &Path) -> Result<(BoardPane, u32)> {
    let socket = dir.join("board.tmux");
    let cmd = format!(
        "AGENT_TEAM_HOME={} AGENT_TEAM_RUNTIME_DIR={} exec {} --team {} board",
        team.paths.home.display(),
        team.paths.runtime.display(),
        bin_dir().join("agent-team").display(),
        team.team
    );
    tmux(
        &socket,
        &["new-session", "-d", "-x", "120", "-y", "40", &cmd],
    )?;
    let pane = BoardPane { socket };
    let pid: u32 = tmux(&pane.socket, &["display", "-p", "#{pane_pid}"])?
        .parse()
        .context("no pane pid")?;
    // Drawn once with the team on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tmux(&pane.socket, &["capture-pane", "-p"])?.contains("agent-team board") {
        if Instant::now() > deadline {
            bail!("the board did not draw");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((pane, pid))
}

/// `agent-team events --follow` on the same team (the floor).
fn follower(team: &BenchTeam) -> Result<Child> {
    Command::new(bin_dir().join("agent-team"))
        .args(["--team", &team.team, "events", "--follow"])
        .env("AGENT_TEAM_HOME", &team.paths.home)
        .env("AGENT_TEAM_RUNTIME_DIR", &team.paths.runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start events --follow")
}

/// CPU seconds of each pid over `secs` while `during` runs (or the clock, when idle).
fn cpu_over(
    pids: &[u32],
    secs: f64,
    mut during: impl FnMut(Instant) -> Result<()>,
) -> Result<Vec<f64>> {
    let before: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
    let t0 = Instant::now();
    during(t0 + Duration::from_secs_f64(secs))?;
    let wall = t0.elapsed().as_secs_f64();
    Ok(pids
        .iter()
        .zip(before)
        .map(|(p, b)| (cpu_secs(*p) - b) / wall)
        .collect())
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== board (issue 17) ==");
    if Command::new("tmux").arg("-V").output().is_err() {
        r.note("board: skipped, tmux is not installed".into());
        return Ok(());
    }
    let mut team = BenchTeam::start(dir, "brd")?;
    let names: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    team.register(&names)?;
    let (_pane, board_pid) = board(&team, dir)?;
    let mut floor = follower(&team)?;
    let secs = if quick { 2.0 } else { 5.0 };
    let idle = cpu_over(&[board_pid, floor.id()], secs, |until| {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        Ok(())
    })?;
    r.add(
        "board CPU, team idle",
        format!("{:.2} %", idle[0] * 100.0),
        format!("{:.2} %", idle[1] * 100.0),
        format!("{:+.2} pt", (idle[0] - idle[1]) * 100.0),
        "< 1 %",
        idle[0] < 0.01,
    );
    // 10 agents, each 20 text deltas a second.
    let mut agents = names
        .iter()
        .map(|n| team.agent(n))
        .collect::<Result<Vec<_>>>()?;
    let mut sent = 0u64;
    let busy = cpu_over(&[board_pid, floor.id()], secs, |until| {
        let mut next = Instant::now();
        while Instant::now() < until {
            for (i, a) in agents.iter_mut().enumerate() {
                a.call(Request::Emit {
                    event: Event::TextMessageContent {
                        delta: format!("w{i} writes token {sent} of its answer "),
                    },
                })?;
                sent += 1;
            }
            next += Duration::from_millis(50);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        Ok(())
    })?;
    r.add(
        "board CPU, 10 agents streaming text (200 events/s)",
        format!("{:.1} %", busy[0] * 100.0),
        format!("{:.1} %", busy[1] * 100.0),
        format!("{:.2}x", busy[0] / busy[1].max(1e-6)),
        "≤ 10 % of a core",
        busy[0] <= 0.10,
    );
    r.note(format!(
        "board: floor is `agent-team events --follow` on the same team in the same run; {sent} text events in {secs} s"
    ));
    let _ = floor.kill();
    let _ = floor.wait();
    team.stop()?;
    Ok(())
}
