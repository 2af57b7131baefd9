//! Issue 27: teammates on another host over OpenSSH, against a real sshd on loopback (the
//! e2e harness's): `up` of a leader and 2 remote teammates beside the same team local, a
//! request's round trip through the link's forward beside the daemon's socket itself, the
//! link's CPU at idle, and the time from a host's sshd coming back to its teammate connected.

use crate::daemon_bench::bin_dir;
use crate::heal_bench::cli;
use crate::report::*;
use agent_team_client::Client;
use agent_team_e2e::sshd::{HOST, Sshd, processes_mentioning};
use agent_team_paths::{Paths, TeamPaths};
use agent_team_protocol::{AgentStatus, Reply, Request};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEAM: &str = "rb";

fn paths(root: &Path) -> Result<TeamPaths> {
    Ok(Paths::new(root.join("home"), root.join("run")).team(TEAM)?)
}

/// The agents as the daemon sees them; none when it does not answer.
fn agents(tp: &TeamPaths) -> Option<Vec<agent_team_protocol::AgentInfo>> {
    let mut c = Client::operator(tp).ok()?;
    match c.call(Request::Agents).ok()? {
        Reply::Agents { agents } => Some(agents),
        _ => None,
    }
}

fn wait(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<f64> {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The team file: a leader and two teammates, on `host` or here.
fn team_file(root: &Path, sshd: &Sshd, host: Option<&str>) -> Result<()> {
    let mut s = format!(
        "name = \"{TEAM}\"\nboard = false\n{}",
        sshd.ssh_table(Some(&bin_dir().join("agent-team-worker")))
    );
    for i in 1..=2 {
        s.push_str(&format!(
            "[[teammates]]\nname = \"w{i}\"\nrole = \"worker\"\n"
        ));
        if let Some(h) = host {
            s.push_str(&format!("host = \"{h}\"\n"));
        }
    }
    std::fs::write(root.join("agent-team.toml"), s)?;
    Ok(())
}

/// `up --detach` until every agent is connected; the seconds it took.
fn up_connected(root: &Path) -> Result<f64> {
    let tp = paths(root)?;
    let t0 = Instant::now();
    let out = cli(root, &["up", "--backend", "process", "--detach"]).output()?;
    if !out.status.success() {
        bail!("up failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait(Duration::from_secs(60), || {
        agents(&tp).is_some_and(|a| a.len() == 3 && a.iter().all(|a| a.connected))
    })?;
    Ok(t0.elapsed().as_secs_f64())
}

fn down(root: &Path) -> Result<()> {
    let out = cli(root, &["down"]).output()?;
    if !out.status.success() {
        bail!("down failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `n` pings' round trips through `tp`'s socket, in seconds, sorted.
fn pings(tp: &TeamPaths, n: usize) -> Result<Vec<f64>> {
    let mut c = Client::operator(tp)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.call(Request::Ping)?;
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(f64::total_cmp);
    Ok(v)
}

/// CPU seconds used so far by `pid` (user + system).
fn cpu(pid: u32) -> f64 {
    crate::daemon_bench::cpu_secs(pid)
}

/// Runs the section in `dir`.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== teammates on another host over ssh (issue 27) ==");
    let sshd = Sshd::start();
    let rounds = if quick { 3 } else { 5 };

    // `up` until connected: remote teammates vs the same team here.
    let (mut remote, mut local) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for remote_first in [round % 2 == 0, round % 2 != 0] {
            let root = dir.join(format!("up-{round}-{remote_first}"));
            std::fs::create_dir_all(&root)?;
            team_file(&root, &sshd, remote_first.then_some(HOST))?;
            let took = up_connected(&root)?;
            down(&root)?;
            if remote_first {
                remote.push(took);
            } else {
                local.push(took);
            }
        }
    }
    let (m, f) = (median(&mut remote), median(&mut local));
    r.add(
        &format!("up, leader + 2 teammates on an ssh host, to connected (median of {rounds})"),
        dur(m),
        dur(f),
        format!("{:.2}×", m / f.max(1e-9)),
        "(the same team local; see below)",
        true,
    );
    // What reaching the host costs at least: one ssh command (a handshake and the host's login
    // shell), in the same run. `up` of a remote team pays for a few of them.
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let ok = Command::new("ssh")
            .arg("-F")
            .arg(sshd.config())
            .args(["-o", "BatchMode=yes", HOST, "true"])
            .stdin(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("ssh {HOST} true failed");
        }
        bare.push(t.elapsed().as_secs_f64());
    }
    let one = median(&mut bare);
    let extra = (m - f) / one.max(1e-9);
    r.add(
        "up's extra over local, in bare `ssh HOST true` commands",
        format!("{extra:.1}"),
        dur(one),
        format!("{extra:.1}×"),
        "≤ 5 (a probe, the link, one launch)",
        extra <= 5.0,
    );

    // A running remote team for the rest.
    let root = dir.join("live");
    std::fs::create_dir_all(&root)?;
    team_file(&root, &sshd, Some(HOST))?;
    up_connected(&root)?;
    let tp = paths(&root)?;
    let forwarded = {
        let mut t = tp.clone();
        t.socket = sshd.remote_dir().join(format!("run/{TEAM}/daemon.sock"));
        t
    };
    let n = if quick { 300 } else { 2000 };
    let direct = pings(&tp, n)?;
    let through = pings(&forwarded, n)?;
    let (p50, p50f) = (
        pct(&mut through.clone(), 50.0),
        pct(&mut direct.clone(), 50.0),
    );
    r.add(
        &format!("request round trip through the link's forward, p50 (n={n})"),
        dur(p50),
        dur(p50f),
        format!("{:.1}×", p50 / p50f.max(1e-9)),
        "≤ 1 ms on loopback",
        p50 <= 1e-3,
    );
    let (p99, p99f) = (
        pct(&mut through.clone(), 99.0),
        pct(&mut direct.clone(), 99.0),
    );
    r.add(
        "request round trip through the link's forward, p99",
        dur(p99),
        dur(p99f),
        format!("{:.1}×", p99 / p99f.max(1e-9)),
        "≤ 5 ms on loopback",
        p99 <= 5e-3,
    );

    // The link at idle: our ssh master and sshd's processes for it.
    let config = sshd.config().display().to_string();
    let master = processes_mentioning(" -M ")
        .into_iter()
        .find(|(_, l)| l.contains(&config))
        .map(|(p, _)| p)
        .context("no ssh master for the link")?;
    let sshd_sessions: Vec<u32> = processes_mentioning("sshd: ")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let secs = if quick { 3.0 } else { 10.0 };
    let before: f64 = cpu(master) + sshd_sessions.iter().map(|&p| cpu(p)).sum::<f64>();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let after: f64 = cpu(master) + sshd_sessions.iter().map(|&p| cpu(p)).sum::<f64>();
    let share = (after - before) / secs;
    r.add(
        &format!("the link's CPU at idle (ssh master + sshd, {secs:.0} s)"),
        format!("{:.2} %", share * 100.0),
        "-".into(),
        "-".into(),
        "< 1 % of a core",
        share < 0.01,
    );

    // sshd away and the link cut, then sshd back: until the teammate is connected again.
    let mut sshd = sshd;
    let mut back = Vec::new();
    for round in 0..rounds {
        println!("  round {round}");
        sshd.stop();
        if let Some((pid, _)) = processes_mentioning(" -M ")
            .into_iter()
            .find(|(_, l)| l.contains(&config))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        wait(Duration::from_secs(30), || {
            agents(&tp).is_some_and(|a| {
                a.iter()
                    .filter(|a| a.host.is_some())
                    .all(|a| a.status == AgentStatus::Unreachable)
            })
        })
        .with_context(|| {
            format!(
                "masters {:?}; remote teammates unreachable: {:?}",
                processes_mentioning(" -M "),
                agents(&tp).map(|a| a
                    .iter()
                    .map(|a| (a.name.clone(), a.status, a.connected))
                    .collect::<Vec<_>>())
            )
        })?;
        let t0 = Instant::now();
        sshd.restart();
        wait(Duration::from_secs(60), || {
            agents(&tp).is_some_and(|a| {
                a.iter()
                    .filter(|a| a.host.is_some())
                    .all(|a| a.connected && a.status != AgentStatus::Unreachable)
            })
        })?;
        back.push(t0.elapsed().as_secs_f64());
    }
    let m = median(&mut back);
    r.add(
        &format!("sshd back → remote teammates connected (median of {rounds})"),
        dur(m),
        "-".into(),
        "-".into(),
        "≤ 2 s (first retry 0.5 s, then the worker's own)",
        m <= 2.0,
    );
    down(&root)?;
    Ok(())
}
