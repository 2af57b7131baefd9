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
        TeamsCmd::List(j) => list_teams(&paths, j.json),
        TeamsCmd::Show { name, json } => show_team(&paths, &name, json),
        TeamsCmd::Delete { name } => delete_team(&paths, &name),
    }
}

/// `teams list`: every team with a state dir or a running daemon, as a table or JSON.
fn list_teams(paths: &Paths, json: bool) -> Result<ExitCode> {
    let mut names = paths.list_teams();
    for r in running_teams(paths) {
        if !names.contains(&r) {
            names.push(r);
        }
    }
    names.sort();
    let rows: Vec<TeamRow> = names
        .iter()
        .filter_map(|n| team_row(paths, n).ok())
        .collect();
    if json {
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

/// `teams show`: one team's daemon, state, run, agents and tasks.
fn show_team(paths: &Paths, name: &str, json: bool) -> Result<ExitCode> {
    let tp = paths.team(name)?;
    if !tp.dir.exists() && !agent_team_client::daemon_running(&tp) {
        bail!(crate::Hinted::new(
            format!("no team named {name:?}"),
            "see `agent-team teams list`"
        ));
    }
    let info = team_info(paths, name)?;
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

/// `teams delete`: removes a stopped team's state dir and its files.
fn delete_team(paths: &Paths, name: &str) -> Result<ExitCode> {
    let tp = paths.team(name)?;
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
    /// No daemon answered but the team had been started: it had died, and `down` stopped
    /// what it left.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    daemon_died: bool,
    /// The agents whose processes `down` stopped itself (after a daemon died).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stopped_agents: Vec<String>,
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

/// `agent-team down`: stop agents and the daemon, keep the state. With no daemon alive it
/// still stops what a dead daemon left running ([`clean_up_after_a_dead_daemon`]).
pub fn down(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Stopped on purpose before this `down` (not by the marker this `down` writes below).
    let stopped_before = ctx.tp.stopped.exists();
    loop {
        if let Some(mut c) = ctx.connect_existing()? {
            let pid = shutdown(ctx, &mut c, Until::Exited)?;
            if json {
                output::json(&DownReport {
                    team: ctx.team.clone(),
                    was_running: true,
                    daemon_pid: Some(pid),
                    daemon_died: false,
                    stopped_agents: Vec::new(),
                });
            } else {
                output::line(&format!(
                    "team {} is down (daemon pid {pid} stopped; state kept in {})",
                    ctx.team,
                    ctx.tp.dir.display()
                ));
            }
            return Ok(ExitCode::SUCCESS);
        }
        // Never started, or stopped on purpose (its clean-stop marker is there): nothing runs.
        if !ctx.tp.db.exists() || stopped_before {
            if json {
                output::json(&DownReport {
                    team: ctx.team.clone(),
                    was_running: false,
                    daemon_pid: None,
                    daemon_died: false,
                    stopped_agents: Vec::new(),
                });
            } else {
                eprintln!("agent-team: team {} is not running", ctx.team);
            }
            return Ok(ExitCode::SUCCESS);
        }
        // No daemon answers. First the marker, so no agent (or guardian) brings it back; then
        // the lock, so none that was already starting can take the team while we clean up.
        ctx.paths.ensure_runtime()?;
        agent_team_paths::mark_stopped(&ctx.tp.stopped).with_context(|| {
            format!(
                "cannot write the clean-stop marker {}",
                ctx.tp.stopped.display()
            )
        })?;
        // The dead daemon's pid is in the lock file until the lock is taken again.
        let dead_pid = agent_team_daemon::lock::DaemonLock::recorded_pid(&ctx.tp.lock);
        match agent_team_daemon::lock::DaemonLock::acquire(&ctx.tp.lock) {
            Ok(lock) => {
                let stopped = clean_up_after_a_dead_daemon(ctx)?;
                drop(lock);
                if json {
                    output::json(&DownReport {
                        team: ctx.team.clone(),
                        was_running: false,
                        daemon_pid: None,
                        daemon_died: true,
                        stopped_agents: stopped.clone(),
                    });
                } else {
                    output::line(&format!(
                        "team {} is down: its daemon{} had died; stopped what it left ({}); state kept in {}",
                        ctx.team,
                        dead_pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                        if stopped.is_empty() {
                            "no agent was still running".to_string()
                        } else {
                            format!("agents {}", stopped.join(", "))
                        },
                        ctx.tp.dir.display()
                    ));
                }
                return Ok(ExitCode::SUCCESS);
            }
            // A daemon is starting (a healer got there first; it may give up on seeing the
            // marker): wait for it to answer or let go, then look again.
            Err(agent_team_daemon::lock::LockError::Held { .. }) => {
                if Instant::now() > deadline {
                    bail!(crate::Hinted::new(
                        "a daemon holds the team's lock but does not answer",
                        format!(
                            "check {} and kill it if needed",
                            ctx.tp.daemon_log.display()
                        )
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Stops what a daemon that died left running, holding the team's lock: every agent process
/// group recorded in the state whose process is still the one launched (its pid and start
/// time match; a pid given to another process since is never signalled), the task commands of
/// agents that ran inside the daemon, and the team's tmux server (or its window in another
/// server). Returns the agents whose processes it stopped.
fn clean_up_after_a_dead_daemon(ctx: &Ctx) -> Result<Vec<String>> {
    use agent_team_pane::procs;
    let (state, _store) = crate::ctx::StoredAt::new(&ctx.tp.db, &ctx.team).open()?;
    let mut stopped = Vec::new();
    for rec in state.agent_records() {
        let Some(pid) = rec.info.pid else { continue };
        let Some(start) = rec
            .spec
            .get(agent_team_daemon::PID_START)
            .and_then(|v| v.as_u64())
        else {
            continue;
        };
        if !procs::same_process(pid, start) {
            continue;
        }
        let pgid = rec.info.pgid.unwrap_or(pid);
        // SIGTERM, a grace period, SIGKILL: the group holds the worker and its commands.
        if let Err(e) = procs::stop_group(pgid, Duration::from_secs(2), || {}) {
            eprintln!("agent-team: could not stop agent {}: {e}", rec.info.name);
        }
        stopped.push(rec.info.name.clone());
    }
    // Commands of agents that ran inside the daemon (their watchdog kills them too).
    procs::reap_marked(&ctx.tp.socket.display().to_string());
    let config: Option<agent_team_config::TeamConfig> = state
        .config()
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    // Members on other hosts: their process groups there, then the team's directory there
    // (sockets, secrets) and the links.
    let remote: Vec<(String, agent_team_pane::Launched)> = state
        .agent_records()
        .filter_map(|r| {
            Some((
                r.info.name.clone(),
                agent_team_pane::Launched {
                    container: r.info.container.as_ref().map(|c| {
                        agent_team_pane::container::ContainerRef {
                            program: c.program().to_string(),
                            name: agent_team_pane::container::container_name(
                                &agent_team_pane::container::instance_of(&ctx.tp.socket),
                                &r.info.name,
                            ),
                        }
                    }),
                    pid: r.info.pid?,
                    pgid: r.info.pgid,
                    pane: None,
                    host: Some(r.info.host.clone()?),
                },
            ))
        })
        .collect();
    if let Some(cfg) = &config
        && !remote.is_empty()
    {
        use agent_team_pane::PaneBackend as _;
        let rb = agent_team_daemon::remote_backend(cfg, &ctx.tp, crate::backend::worker_exe().ok());
        for (name, l) in &remote {
            match rb.stop(l, Duration::from_secs(2)) {
                Ok(()) => stopped.push(name.clone()),
                Err(e) => eprintln!("agent-team: could not stop agent {name} on its host: {e}"),
            }
        }
        rb.shutdown();
    }
    if let Some(cfg) = config
        && cfg.backend == agent_team_config::BackendKind::Tmux
    {
        use agent_team_pane::PaneBackend as _;
        use agent_team_pane::tmux::{TmuxBackend, TmuxLayout};
        let place =
            agent_team_daemon::supervisor::tmux_placement(&cfg, &ctx.tp.tmux_socket, &ctx.team);
        let runtime = ctx.paths.runtime.clone();
        match TmuxBackend::new(place, TmuxLayout::MainVertical, &runtime) {
            Ok(b) => b.shutdown(),
            Err(e) => eprintln!("agent-team: cannot stop the team's tmux server: {e}"),
        }
    }
    // Members in containers: every container of this team's instance, whatever runtime.
    let runtimes: std::collections::BTreeSet<String> = state
        .agent_records()
        .filter_map(|r| r.info.container.as_ref().map(|c| c.program().to_string()))
        .collect();
    let instance = agent_team_pane::container::instance_of(&ctx.tp.socket);
    for program in runtimes {
        agent_team_pane::container::remove_all(&program, &instance);
    }
    let _ = std::fs::remove_file(&ctx.tp.secrets);
    let _ = std::fs::remove_file(&ctx.tp.operator_secret);
    Ok(stopped)
}

/// How far [`shutdown`] follows the daemon's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Its process has exited and its lock is let go (`down`: no process of the team is left).
    Exited,
    /// Its lock is let go: it lets go last, once every agent, command, hook and git job it ran
    /// has ended and its store is closed, so only the process's own exit is still under way
    /// (the end of `run`, which need not wait for the kernel to tear the process down).
    LetGo,
}

/// Asks the daemon to stop every agent and itself, and waits as `until` says.
pub fn shutdown(ctx: &Ctx, c: &mut agent_team_client::Client, until: Until) -> Result<u32> {
    let pid = c.welcome().daemon_pid;
    match c.call(Request::Shutdown) {
        Ok(_) => {}
        // Already gone: fine.
        Err(e) if e.is_disconnect() => {}
        Err(e) => return Err(e.into()),
    }
    if until == Until::LetGo {
        return let_go(ctx, pid);
    }
    // Wait for the daemon to be gone, and for its lock to be let go (a daemon that took over
    // meanwhile, by another pid, holds it): only then is everything it owned stopped. Its exit
    // first: it lets go of the lock on its way out, so the lock's wait then needs no thread.
    let exited = agent_team_pane::procs::wait_exit(pid, Duration::from_secs(60));
    if !agent_team_paths::wait_lock_released(&ctx.tp.lock, Duration::from_secs(60)) {
        bail!(still_running(ctx, pid));
    }
    if !exited {
        bail!(crate::Hinted::new(
            format!("the daemon (pid {pid}) released its lock but did not exit"),
            "kill it"
        ));
    }
    Ok(pid)
}

/// Waits for the daemon (`pid`), asked to stop, to let go of its lock: then nothing of the
/// team runs any more.
pub fn let_go(ctx: &Ctx, pid: u32) -> Result<u32> {
    if !agent_team_paths::wait_lock_released(&ctx.tp.lock, Duration::from_secs(60)) {
        bail!(still_running(ctx, pid));
    }
    Ok(pid)
}

/// The error of a daemon that still holds its lock a minute after it was asked to stop.
fn still_running(ctx: &Ctx, pid: u32) -> crate::Hinted {
    crate::Hinted::new(
        format!("the daemon (pid {pid}) did not stop within 60 s"),
        format!(
            "check {} and kill it if needed",
            ctx.tp.daemon_log.display()
        ),
    )
}
