//! `agent-team teams …` and `agent-team down`.

use crate::cli::TeamsCmd;
use crate::ctx::{Ctx, running_teams};
use crate::output;
use agent_team_paths::Paths;
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct TeamRow {
    name: String,
    running: bool,
    daemon_pid: Option<u32>,
    state_dir: String,
    run: Option<RunState>,
    agents: usize,
    tasks: usize,
}

/// `agent-team teams list|show|delete`
pub fn teams(cmd: TeamsCmd) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    match cmd {
        TeamsCmd::List(j) => {
            let mut names = paths.list_teams();
            for r in running_teams(&paths) {
                if !names.contains(&r) {
                    names.push(r);
                }
            }
            names.sort();
            let rows: Vec<TeamRow> = names
                .iter()
                .filter_map(|n| team_row(&paths, n).ok())
                .collect();
            if j.json {
                output::json(&rows);
            } else if rows.is_empty() {
                eprintln!("agent-team: no teams under {}", paths.teams_dir().display());
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            if r.running {
                                "running".into()
                            } else {
                                "stopped".into()
                            },
                            output::opt(&r.daemon_pid),
                            r.run
                                .map(|s| format!("{s:?}").to_lowercase())
                                .unwrap_or_else(|| "-".into()),
                            r.agents.to_string(),
                            r.tasks.to_string(),
                            r.state_dir.clone(),
                        ]
                    })
                    .collect();
                output::table(
                    &["TEAM", "DAEMON", "PID", "RUN", "AGENTS", "TASKS", "STATE"],
                    &table,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TeamsCmd::Show { name, json } => {
            let tp = paths.team(&name)?;
            if !tp.dir.exists() && !agent_team_client::daemon_running(&tp) {
                bail!(crate::Hinted::new(
                    format!("no team named {name:?}"),
                    "see `agent-team teams list`"
                ));
            }
            let info = team_info(&paths, &name)?;
            if json {
                output::json(&info);
            } else {
                output::line(&format!("team {}", info.name));
                output::line(&format!(
                    "  daemon:  {}",
                    if info.daemon_pid > 0 {
                        format!("running (pid {})", info.daemon_pid)
                    } else {
                        "stopped".into()
                    }
                ));
                output::line(&format!("  state:   {}", info.state_dir));
                output::line(&format!("  socket:  {}", info.socket));
                output::line(&format!(
                    "  run:     {}",
                    format!("{:?}", info.run).to_lowercase()
                ));
                if let Some(g) = &info.goal {
                    output::line(&format!("  goal:    {g}"));
                }
                let counts = |v: Vec<String>| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                output::line(&format!(
                    "  agents:  {}",
                    counts(
                        info.agents
                            .iter()
                            .map(|(s, n)| format!("{n} {s}"))
                            .collect()
                    )
                ));
                output::line(&format!(
                    "  tasks:   {}",
                    counts(info.tasks.iter().map(|(s, n)| format!("{n} {s}")).collect())
                ));
                output::line(&format!("  events:  {}", info.last_seq));
                if let Some(a) = &info.answer {
                    output::line(&format!("  answer:  {a}"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TeamsCmd::Delete { name } => {
            let tp = paths.team(&name)?;
            if agent_team_client::daemon_running(&tp) {
                bail!(crate::Hinted::new(
                    format!("team {name} is running"),
                    format!("stop it first with `agent-team --team {name} down`")
                ));
            }
            if !tp.dir.exists() {
                bail!(crate::Hinted::new(
                    format!("no team named {name:?}"),
                    "see `agent-team teams list`"
                ));
            }
            std::fs::remove_dir_all(&tp.dir)
                .with_context(|| format!("cannot delete {}", tp.dir.display()))?;
            for f in [&tp.lock, &tp.operator_secret, &tp.socket] {
                let _ = std::fs::remove_file(f);
            }
            output::line(&format!("deleted team {name}"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn team_row(paths: &Paths, name: &str) -> Result<TeamRow> {
    let info = team_info(paths, name)?;
    Ok(TeamRow {
        name: name.to_string(),
        running: info.daemon_pid > 0,
        daemon_pid: Some(info.daemon_pid).filter(|p| *p > 0),
        state_dir: info.state_dir,
        run: Some(info.run),
        agents: info.agents.iter().map(|(_, n)| n).sum(),
        tasks: info.tasks.iter().map(|(_, n)| n).sum(),
    })
}

/// The team's summary: from its daemon if it runs, else read from its stored state.
pub(crate) fn team_info(paths: &Paths, name: &str) -> Result<TeamInfo> {
    let tp = paths.team(name)?;
    if let Ok(mut c) = agent_team_client::Client::operator(&tp)
        && let Ok(Reply::Team { team }) = c.call(Request::TeamInfo)
    {
        return Ok(team);
    }
    let snap = agent_team_store::Store::open_read_only(&tp.db, name)?.load()?;
    let mut agents: Vec<(AgentStatus, usize)> = Vec::new();
    for a in &snap.agents {
        match agents.iter_mut().find(|(s, _)| *s == a.info.status) {
            Some(e) => e.1 += 1,
            None => agents.push((a.info.status, 1)),
        }
    }
    let mut tasks: Vec<(TaskStatus, usize)> = Vec::new();
    for t in &snap.tasks {
        match tasks.iter_mut().find(|(s, _)| *s == t.status) {
            Some(e) => e.1 += 1,
            None => tasks.push((t.status, 1)),
        }
    }
    Ok(TeamInfo {
        name: name.to_string(),
        daemon_pid: 0,
        protocol: PROTOCOL_VERSION,
        state_dir: tp.dir.display().to_string(),
        socket: tp.socket.display().to_string(),
        goal: snap.run.goal,
        run: snap.run.state,
        answer: snap.run.answer,
        agents,
        tasks,
        last_seq: snap.last_seq,
        backend: None,
        details: snap.run.details,
    })
}

#[derive(Serialize)]
struct DownReport {
    team: String,
    was_running: bool,
    daemon_pid: Option<u32>,
}

/// `agent-team gc`: compact the team's state now (through its daemon, started if needed).
pub fn gc(ctx: &Ctx, older_than_days: u64, json: bool) -> Result<ExitCode> {
    let reply = ctx.call(Request::Gc {
        older_than_secs: older_than_days.saturating_mul(86_400),
    })?;
    let Reply::Compacted { report } = reply else {
        bail!("unexpected reply {reply:?}");
    };
    if json {
        output::json(&report);
    } else {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        output::line(&format!(
            "removed {} read message(s), {} finished task(s), {} event(s); state {:.1} MiB → {:.1} MiB",
            report.messages,
            report.tasks,
            report.events,
            mib(report.bytes_before),
            mib(report.bytes_after)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent-team down`: stop agents and the daemon, keep the state.
pub fn down(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let Some(mut c) = ctx.connect_existing()? else {
        if json {
            output::json(&DownReport {
                team: ctx.team.clone(),
                was_running: false,
                daemon_pid: None,
            });
        } else {
            eprintln!("agent-team: team {} is not running", ctx.team);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let pid = shutdown(ctx, &mut c)?;
    if json {
        output::json(&DownReport {
            team: ctx.team.clone(),
            was_running: true,
            daemon_pid: Some(pid),
        });
    } else {
        output::line(&format!(
            "team {} is down (daemon pid {pid} stopped; state kept in {})",
            ctx.team,
            ctx.tp.dir.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to stop every agent and itself, and waits until it has released its lock.
pub fn shutdown(ctx: &Ctx, c: &mut agent_team_client::Client) -> Result<u32> {
    let pid = c.welcome().daemon_pid;
    match c.call(Request::Shutdown) {
        Ok(_) => {}
        // Already gone: fine.
        Err(e) if e.is_disconnect() => {}
        Err(e) => return Err(e.into()),
    }
    // Wait for the daemon to release its lock: only then is everything it owned stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent_team_daemon::lock::DaemonLock::is_held(&ctx.tp.lock) {
        if Instant::now() > deadline {
            bail!(crate::Hinted::new(
                format!("the daemon (pid {pid}) did not stop within 60 s"),
                format!(
                    "check {} and kill it if needed",
                    ctx.tp.daemon_log.display()
                )
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Then for the process itself to be gone (it may still be tearing down its runtime).
    while agent_team_pane::procs::pid_alive(pid) && !agent_team_pane::procs::is_zombie(pid) {
        if Instant::now() > deadline {
            bail!(crate::Hinted::new(
                format!("the daemon (pid {pid}) released its lock but did not exit"),
                "kill it"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(pid)
}
