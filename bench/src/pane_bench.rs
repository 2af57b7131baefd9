//! Figures of the tmux backend (issue "panes"): `up` of a leader and 10 teammates until all are
//! connected, one restart until reconnected, and how fast a death is noticed; each beside what
//! tmux alone takes for the same panes in the same run.

use crate::daemon_bench::{BenchTeam, bin_dir};
use crate::report::*;
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `tmux ARGS` on the private server at `sock` (the bench's own servers only), its output
/// trimmed; an error with tmux's stderr when it fails.
pub(crate) fn tmux(sock: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(sock)
        .args(args)
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .stdin(Stdio::null())
        .output()
        .context("cannot run tmux")?;
    if !out.status.success() {
        bail!("tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// tmux alone: one invocation creating 11 panes that run `sleep`.
fn tmux_floor_11(dir: &Path, i: usize) -> Result<Duration> {
    let sock = dir.join(format!("floor{i}.tmux"));
    let mut args: Vec<String> = vec![
        "new-session",
        "-d",
        "-s",
        "f",
        "-x",
        "240",
        "-y",
        "64",
        "sleep 600",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for _ in 0..10 {
        args.extend(
            [
                ";",
                "split-window",
                "-t",
                "f:",
                "sleep 600",
                ";",
                "select-layout",
                "-t",
                "f:",
                "main-vertical",
            ]
            .map(String::from),
        );
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    tmux(&sock, &refs)?;
    let took = t0.elapsed();
    let n = tmux(&sock, &["list-panes", "-a"])?.lines().count();
    let _ = tmux(&sock, &["kill-server"]);
    if n != 11 {
        bail!("the floor made {n} panes, not 11");
    }
    Ok(took)
}

fn run_cli(home: &Path, run: &Path, cwd: &Path, args: &[&str]) -> Result<()> {
    let st = Command::new(bin_dir().join("agent-team"))
        .args(args)
        .current_dir(cwd)
        .env("AGENT_TEAM_HOME", home)
        .env("AGENT_TEAM_RUNTIME_DIR", run)
        .env_remove("TMUX")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("agent-team {args:?} failed");
    }
    Ok(())
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== tmux panes (issue 4) ==");
    if agent_team_pane::tmux::version().is_err() {
        r.note("tmux is not installed: pane figures skipped".into());
        return Ok(());
    }
    let rounds = if quick { 2 } else { 4 };
    let mut floor = Vec::new();
    let mut ours = Vec::new();
    let mut restart = Vec::new();
    let mut respawn_floor = Vec::new();
    let mut notice = Vec::new();
    for i in 0..rounds {
        floor.push(tmux_floor_11(dir, i)?.as_secs_f64());
        let team = format!("panes{i}");
        let ws = dir.join(&team);
        std::fs::create_dir_all(&ws)?;
        let mut file = format!("name = \"{team}\"\nbackend = \"tmux\"\n");
        for t in 0..10 {
            file.push_str(&format!("[[teammates]]\nname = \"w{t}\"\n"));
        }
        std::fs::write(ws.join("agent-team.toml"), file)?;
        let mut bt = BenchTeam::start(dir, &team)?;
        let (home, run) = (dir.join("home"), dir.join("run"));
        let t0 = Instant::now();
        run_cli(&home, &run, &ws, &["up", "--detach"])?;
        let mut op = bt.operator()?;
        loop {
            let agents = match op.call(Request::Agents)? {
                Reply::Agents { agents } => agents,
                _ => vec![],
            };
            if agents.len() == 11 && agents.iter().all(|a| a.connected) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the team did not come up");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        ours.push(t0.elapsed().as_secs_f64());

        // Restarts, until the worker is connected again (the reply comes then), alternating
        // with the floor: a bare respawn-pane -k of a trivial program in the same server.
        let sock = bt.tp.tmux_socket.clone();
        let pane = tmux(
            &sock,
            &[
                "split-window",
                "-d",
                "-P",
                "-F",
                "#{pane_id}",
                "-t",
                &format!("{team}:"),
                "sleep 600",
            ],
        )?;
        for _ in 0..3 {
            let t0 = Instant::now();
            match op.call(Request::Restart { name: "w3".into() })? {
                Reply::Agent { agent } if agent.connected => {}
                other => bail!("restart: {other:?}"),
            }
            restart.push(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            tmux(&sock, &["respawn-pane", "-k", "-t", &pane, "sleep 600"])?;
            respawn_floor.push(t0.elapsed().as_secs_f64());
        }
        let _ = tmux(&sock, &["kill-pane", "-t", &pane]);

        // A death: SIGKILL of a pane's process, until the daemon records it.
        let since = match op.call(Request::TeamInfo)? {
            Reply::Team { team } => team.last_seq,
            _ => 0,
        };
        let mut sub = bt.operator()?;
        sub.call(Request::Subscribe { since, types: None })?;
        let victim = match op.call(Request::Agents)? {
            Reply::Agents { agents } => agents
                .into_iter()
                .find(|a| a.name == "w5")
                .and_then(|a| a.pid)
                .context("no w5")?,
            _ => bail!("no agents"),
        };
        let t0 = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        loop {
            if let Push::Event { envelope } = sub.next_push(Some(Duration::from_secs(10)))?
                && envelope.agent_id == "w5"
                && matches!(
                    envelope.event,
                    Event::AgentStatus {
                        status: AgentStatus::Backoff,
                        ..
                    }
                )
            {
                break;
            }
        }
        notice.push(t0.elapsed().as_secs_f64());
        run_cli(&home, &run, &ws, &["--team", &team, "down"])?;
        bt.stop()?;
    }
    let (o, f) = (pct(&mut ours, 50.0), pct(&mut floor, 50.0));
    r.add(
        "`up` leader + 10 teammates in tmux, all connected (median)",
        dur(o),
        format!("{} tmux 11 panes", dur(f)),
        format!("{:.1}×", o / f),
        "≤ 3× floor",
        o <= 3.0 * f,
    );
    let (o, f) = (pct(&mut restart, 50.0), pct(&mut respawn_floor, 50.0));
    r.add(
        "`restart` one teammate until reconnected (median)",
        dur(o),
        format!("{} respawn-pane -k", dur(f)),
        format!("{:.1}×", o / f),
        "≤ 4× floor",
        o <= 4.0 * f,
    );
    let n = pct(&mut notice, 50.0);
    let worst = notice.iter().cloned().fold(0.0, f64::max);
    r.add(
        "SIGKILL of a pane's process until noticed (median; max)",
        format!("{}; {}", dur(n), dur(worst)),
        "500 ms poll".into(),
        "-".into(),
        "< 1 s",
        worst < 1.0,
    );
    Ok(())
}
