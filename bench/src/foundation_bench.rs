//! Figures of the foundation issue: what the daemon costs while teammates run commands on each
//! backend (a SIGCHLD feedback loop once made the tmux backend busy-poll), and how long
//! `agent-team run` takes on the in-process backend beside the process backend (an agent's end
//! once waited for the next 500 ms poll).

use crate::daemon_bench::{bin_dir, cpu_secs, cpu_secs_with_children as cpu_with_children};
use crate::report::*;
use anyhow::{Context, Result, bail};
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
        .env_remove("TMUX_PANE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Starts a team of 2 exec teammates each running `sleep`, on `backend`; once both commands
/// run, measures for `window` the CPU used by the daemon with its reaped children and by the
/// team's tmux server (if any). Returns (daemon share, tmux server share) of one core. The
/// board pane `up` opens is a client like any other; its own cost is the `board` section's, so
/// it is left out here (`board = false`).
fn cpu_while_working(dir: &Path, backend: &str, i: usize, window: Duration) -> Result<(f64, f64)> {
    let team = format!("cpu-{backend}-{i}");
    let ws = dir.join(&team);
    std::fs::create_dir_all(&ws)?;
    let (home, run) = (dir.join("home"), dir.join("run"));
    let secs = window.as_secs() + 30;
    let mut file = format!("name = \"{team}\"\nboard = false\n");
    for n in ["b1", "b2"] {
        file.push_str(&format!(
            "[[teammates]]\nname = \"{n}\"\nrole = \"worker\"\n"
        ));
    }
    for k in ["t1", "t2"] {
        let marker = ws.join(k);
        file.push_str(&format!(
            "[[tasks]]\nkey = \"{k}\"\ntitle = \"{k}\"\nrun = \"touch {}; sleep {secs}\"\n",
            marker.display()
        ));
    }
    std::fs::write(ws.join("agent-team.toml"), file)?;
    let st = cli(&home, &run, &ws, &["up", "--backend", backend, "--detach"]).status()?;
    if !st.success() {
        bail!("up --backend {backend} failed");
    }
    let t0 = Instant::now();
    while !(ws.join("t1").exists() && ws.join("t2").exists()) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the tasks did not start on {backend}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let paths = agent_team_paths::Paths::new(&home, &run);
    let tp = paths.team(&team)?;
    let daemon: u32 = std::fs::read_to_string(&tp.lock)?
        .trim()
        .parse()
        .context("no daemon pid")?;
    let server: Option<u32> = if backend == "tmux" {
        Command::new("tmux")
            .args(["-S"])
            .arg(&tp.tmux_socket)
            .args(["display-message", "-p", "#{pid}"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    } else {
        None
    };
    let (d0, s0) = (
        cpu_with_children(daemon),
        server.map(cpu_secs).unwrap_or(0.0),
    );
    let w0 = Instant::now();
    std::thread::sleep(window);
    let wall = w0.elapsed().as_secs_f64();
    let (d1, s1) = (
        cpu_with_children(daemon),
        server.map(cpu_secs).unwrap_or(0.0),
    );
    let _ = cli(&home, &run, &ws, &["--team", &team, "down"]).status();
    Ok(((d1 - d0) / wall, (s1 - s0) / wall))
}

/// `agent-team run` of a small exec team (a leader, 2 teammates, 4 trivial tasks) on `backend`.
fn run_wall(dir: &Path, backend: &str, i: usize) -> Result<f64> {
    let team = format!("wall-{backend}-{i}");
    let ws = dir.join(&team);
    std::fs::create_dir_all(&ws)?;
    let (home, run) = (dir.join("home"), dir.join("run"));
    let mut file = format!("name = \"{team}\"\n");
    for n in ["b1", "b2"] {
        file.push_str(&format!(
            "[[teammates]]\nname = \"{n}\"\nrole = \"worker\"\n"
        ));
    }
    for k in 0..4 {
        file.push_str(&format!(
            "[[tasks]]\nkey = \"t{k}\"\ntitle = \"t{k}\"\nrun = \"true\"\n"
        ));
    }
    std::fs::write(ws.join("agent-team.toml"), file)?;
    let t0 = Instant::now();
    let st = cli(
        &home,
        &run,
        &ws,
        &["run", "--backend", backend, "--quiet", "--timeout", "60"],
    )
    .status()?;
    let took = t0.elapsed().as_secs_f64();
    if !st.success() {
        bail!("run --backend {backend} failed ({st})");
    }
    Ok(took)
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== foundation (issue 11) ==");
    let window = Duration::from_secs(if quick { 2 } else { 5 });
    let mut backends = vec!["process"];
    if agent_team_pane::tmux::version().is_ok() {
        backends.push("tmux");
    } else {
        r.note("tmux is not installed: the tmux CPU figure is skipped".into());
    }
    let mut shares: Vec<(String, f64, f64)> = Vec::new();
    for b in &backends {
        let (d, s) = cpu_while_working(dir, b, 0, window)?;
        shares.push((b.to_string(), d, s));
    }
    let process = shares
        .iter()
        .find(|s| s.0 == "process")
        .map(|s| s.1)
        .unwrap_or(0.0);
    if let Some((_, d, s)) = shares.iter().find(|s| s.0 == "tmux") {
        let tmux_total = d + s;
        r.add(
            "daemon CPU, tmux backend, 2 teammates running commands (daemon + its tmux clients + tmux server)",
            format!("{:.2} % of a core ({:.2} % daemon, {:.2} % server)", tmux_total * 100.0, d * 100.0, s * 100.0),
            format!("{:.2} % process backend", process * 100.0),
            format!("+{:.2} pts", (tmux_total - process) * 100.0),
            "< 1 % beside the process backend",
            tmux_total - process < 0.01,
        );
    }
    r.add(
        "daemon CPU, process backend, 2 teammates running commands",
        format!("{:.2} % of a core", process * 100.0),
        "-".into(),
        "-".into(),
        "< 1 %",
        process < 0.01,
    );

    let rounds = if quick { 2 } else { 4 };
    let (mut proc_walls, mut inproc_walls) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        proc_walls.push(run_wall(dir, "process", i)?);
        inproc_walls.push(run_wall(dir, "in-process", i)?);
    }
    let (ip, p) = (pct(&mut inproc_walls, 50.0), pct(&mut proc_walls, 50.0));
    r.add(
        "`run` wall, in-process backend: leader + 2 exec teammates, 4 tasks (median)",
        dur(ip),
        format!("{} process backend", dur(p)),
        format!("{:.2}×", ip / p),
        "≤ 1.5× process backend",
        ip <= 1.5 * p,
    );
    Ok(())
}
