//! `agent-team up` and `agent-team run`.

use crate::cli::{RunArgs, UpArgs};
use crate::ctx::Ctx;
use crate::output;
use agent_team_client::{Client, ClientError};
use agent_team_config::{BackendKind, TeamConfig};
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The team configuration `up`/`run` start from: the demo, the team file, or built-ins only.
pub(crate) fn team_config(
    ctx: &Ctx,
    demo: bool,
    backend: Option<&str>,
    here: bool,
) -> Result<(TeamConfig, String)> {
    let mut cfg = if demo {
        let ws = ctx.tp.dir.join("workspace");
        std::fs::create_dir_all(&ws).with_context(|| format!("cannot create {}", ws.display()))?;
        agent_team_config::demo_team(&ws)?
    } else if let Some(f) = &ctx.file {
        agent_team_config::load(f)?
    } else if let Some(stored) = stored_config(ctx) {
        // No team file here: the team keeps the configuration its last `up` gave it.
        stored
    } else {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        agent_team_config::empty_team(&ctx.team, &cwd)
    };
    cfg.name = ctx.team.clone();
    let requested = match backend {
        Some(b) => BackendKind::parse(b).ok_or_else(|| {
            crate::Hinted::new(
                format!("unknown backend {b:?}"),
                "use auto, tmux, iterm2, process or in-process",
            )
        })?,
        None => cfg.backend,
    };
    let (kind, why) = crate::backend::resolve(requested)?;
    cfg.backend = kind;
    if kind == BackendKind::Tmux {
        cfg.tmux = Some(if here {
            let Some(socket) = agent_team_pane::tmux::current_server() else {
                bail!(crate::Hinted::new(
                    "--here needs to run inside tmux",
                    "drop --here to use a private tmux server"
                ));
            };
            let (window, session) = agent_team_pane::tmux::new_window_here(&socket, &ctx.team)?;
            agent_team_config::TmuxPlace {
                socket,
                session,
                window: Some(window),
            }
        } else {
            agent_team_config::TmuxPlace {
                socket: ctx.tp.tmux_socket.clone(),
                session: ctx.team.clone(),
                window: None,
            }
        });
    } else if here {
        bail!(crate::Hinted::new(
            "--here only applies to the tmux backend",
            "use --backend tmux"
        ));
    }
    Ok((cfg, why))
}

/// Fills the `{{KEY}}` placeholders of a configuration and goal with `variables` (over the
/// team file's).
pub(crate) fn with_variables(
    cfg: TeamConfig,
    goal: Option<String>,
    variables: &std::collections::BTreeMap<String, String>,
) -> Result<(TeamConfig, Option<String>)> {
    if !variables.is_empty() {
        bail!(crate::Hinted::new(
            "variables are not supported yet",
            "leave `variables` out"
        ));
    }
    Ok((cfg, goal))
}

/// Refuses a goal or a team configuration the daemon would refuse, before any daemon starts.
fn check_before_start(cfg: &TeamConfig, goal: Option<&str>) -> Result<()> {
    let goal = goal.or(cfg.goal.as_deref()).map(str::to_string);
    Request::StartRun { goal }
        .check_sizes()
        .map_err(ClientError::Server)?;
    let size = serde_json::to_vec(cfg).map(|v| v.len()).unwrap_or(0);
    if size + 1024 > MAX_FRAME_LEN {
        bail!(crate::Hinted::new(
            format!("the team configuration has {size} bytes; the limit is {MAX_FRAME_LEN}"),
            "shorten the role prompts in the team file"
        ));
    }
    Ok(())
}

/// The configuration a team that ran before has stored, if it has one.
fn stored_config(ctx: &Ctx) -> Option<TeamConfig> {
    let value = ctx.reader().ok()?.config().ok()??;
    serde_json::from_value(value).ok()
}

/// One line on stderr for each way task commands will not be confined as the team file asks
/// (no Landlock in this kernel, a state dir inside the workspace); see `agent-team doctor`.
fn warn_sandbox(ctx: &Ctx, cfg: &TeamConfig) {
    for w in agent_team_worker::command::sandbox_warnings(cfg, &ctx.paths) {
        eprintln!("agent-team: warning: {w}");
    }
}

/// Configures the daemon and starts the run; returns the event sequence number before it.
pub(crate) fn start(c: &mut Client, cfg: &TeamConfig, goal: Option<String>) -> Result<u64> {
    check_before_start(cfg, goal.as_deref())?;
    let last_seq = match c.call(Request::TeamInfo)? {
        Reply::Team { team } => team.last_seq,
        _ => 0,
    };
    let value = serde_json::to_value(cfg).context("cannot encode the team configuration")?;
    c.call(Request::Configure { config: value })?;
    c.call(Request::StartRun { goal })?;
    Ok(last_seq)
}

/// Waits until the leader is connected (or clearly failed), so `up` reports problems at once.
fn wait_for_leader(c: &mut Client) -> Result<AgentInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents = match c.call(Request::Agents)? {
            Reply::Agents { agents } => agents,
            _ => vec![],
        };
        if let Some(l) = agents.iter().find(|a| a.name == names::LEADER) {
            if l.connected && l.pid.is_some() {
                return Ok(l.clone());
            }
            if matches!(
                l.status,
                AgentStatus::Failed | AgentStatus::Exited | AgentStatus::Stopped
            ) {
                bail!(crate::Hinted::new(
                    format!(
                        "the leader is {} ({})",
                        l.status,
                        l.last_exit.clone().or(l.error.clone()).unwrap_or_default()
                    ),
                    "see `agent-team logs leader`"
                ));
            }
        }
        if Instant::now() > deadline {
            bail!(crate::Hinted::new(
                "the leader did not start within 30 s",
                "see `agent-team logs leader` and the daemon log"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `agent-team up`
pub fn up(ctx: &Ctx, args: UpArgs) -> Result<ExitCode> {
    // A second `up` attaches to the running team (SPEC §3) and keeps its configuration.
    let running = match ctx.connect_existing()? {
        Some(mut c) => {
            let run = match c.call(Request::TeamInfo)? {
                Reply::Team { team } => team.run == RunState::Running,
                _ => false,
            };
            let cfg = match c.call(Request::GetConfig)? {
                Reply::Config { config } if run && !config.is_null() => {
                    Some(serde_json::from_value::<TeamConfig>(config)?)
                }
                _ => None,
            };
            cfg.map(|cfg| (c, cfg))
        }
        None => None,
    };
    let already = running.is_some();
    // Otherwise the configuration (and the backend) is checked before any daemon starts.
    let (mut c, cfg, why) = match running {
        Some((c, cfg)) => (c, cfg, "already running".to_string()),
        None => {
            let (cfg, why) = team_config(ctx, args.demo, args.backend.as_deref(), args.here)?;
            check_before_start(&cfg, args.goal.as_deref())?;
            (ctx.connect()?, cfg, why)
        }
    };
    eprintln!("agent-team: backend {} ({why})", cfg.backend.as_str());
    warn_sandbox(ctx, &cfg);
    if !already {
        start(&mut c, &cfg, args.goal.clone())?;
    } else if let Some(place) = &cfg.tmux
        && cfg.backend == BackendKind::Tmux
        && !agent_team_pane::tmux::session_exists(&agent_team_pane::tmux::Placement {
            socket: place.socket.clone(),
            session: place.session.clone(),
            window: place.window.clone(),
            private_server: place.window.is_none(),
        })
    {
        // The tmux server was killed under a live team: bring every agent back into new panes.
        eprintln!(
            "agent-team: the team's tmux session is gone; restarting its agents in a new layout"
        );
        rebuild(&mut c)?;
    }
    let leader = wait_for_leader(&mut c)?;
    let agents = match c.call(Request::Agents)? {
        Reply::Agents { agents } => agents,
        _ => vec![],
    };
    if args.json {
        output::json(
            &serde_json::json!({"team": ctx.team, "backend": cfg.backend.as_str(), "already_running": already, "agents": agents}),
        );
    } else {
        output::line(&format!(
            "team {} is {} on the {} backend: leader (pid {}){}",
            ctx.team,
            if already { "already up" } else { "up" },
            cfg.backend.as_str(),
            output::opt(&leader.pid),
            if cfg.teammates.is_empty() {
                String::new()
            } else {
                format!(" and {} teammate(s) starting", cfg.teammates.len())
            }
        ));
        if let Some(place) = &cfg.tmux {
            output::line(&format!(
                "  attach: agent-team --team {} attach leader   (or: tmux -S {} attach -t {})",
                ctx.team,
                place.socket.display(),
                place.session
            ));
        }
        output::line(&format!(
            "  watch:  agent-team --team {} ps   |   agent-team --team {} logs leader --follow",
            ctx.team, ctx.team
        ));
        output::line(&format!("  stop:   agent-team --team {} down", ctx.team));
    }
    // Attach to the leader's pane when a person is watching.
    let tty = nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    if cfg.backend == BackendKind::Tmux && !args.detach && !args.json && tty {
        let mut cmd = crate::cmd::agents::attach_command(ctx, names::LEADER)?;
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        bail!(crate::Hinted::new(
            format!("cannot attach: {err}"),
            "attach later with `agent-team attach leader`"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Restarts every agent that is not down (after its panes vanished with the tmux server).
fn rebuild(c: &mut Client) -> Result<()> {
    let agents = match c.call(Request::Agents)? {
        Reply::Agents { agents } => agents,
        _ => vec![],
    };
    // The roster lists the leader first, so it gets the main pane.
    for a in agents.iter().filter(|a| !a.status.is_down()) {
        let _ = c.call(Request::Restart {
            name: a.name.clone(),
        });
    }
    Ok(())
}

/// Set once `run` was told to stop by a signal: the thread stopping the team then owns the
/// exit (130), and the main thread must not end the process first with another outcome.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `agent-team run`
pub fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let outcome = run_team(ctx, args);
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    outcome
}

fn run_team(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let (cfg, why) = team_config(ctx, args.demo, args.backend.as_deref(), false)?;
    if !args.quiet {
        eprintln!("agent-team: backend {} ({why})", cfg.backend.as_str());
        warn_sandbox(ctx, &cfg);
    }
    check_before_start(&cfg, args.goal.as_deref())?;
    let mut c = ctx.connect()?;
    // From here on an interrupted `run` stops the team it started, like `down`, and says so.
    stop_on_signal(ctx)?;
    let mut since = start(&mut c, &cfg, args.goal.clone())?;
    let deadline = args.timeout.map(|s| started + Duration::from_secs(s));
    let approvals = if args.approve_all {
        Approvals::All
    } else if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        Approvals::Prompt
    } else {
        Approvals::Leave
    };
    let outcome = loop {
        match follow_until_finished(approvals, &mut c, &mut since, deadline, args.quiet) {
            Ok(Some(done)) => break Ok(done),
            Ok(None) => {
                break Err(crate::Hinted::new(
                    "the run did not finish in time",
                    "raise --timeout, or look at `agent-team ps`",
                ));
            }
            Err(e) if e.is_disconnect() && stopped_cleanly(ctx) => {
                break Err(crate::Hinted::new(
                    format!("team {} was stopped before the run finished", ctx.team),
                    "someone ran `agent-team down` or signalled its daemon; `agent-team up` starts it again",
                ));
            }
            Err(e) if e.is_disconnect() => {
                // The daemon went away (crash?): start it again; it re-adopts the agents.
                if !args.quiet {
                    eprintln!(
                        "agent-team: lost the daemon; restarting it and following from event {since}"
                    );
                }
                c = reconnect(ctx)?;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Shut everything down whatever happened.
    let _ = crate::cmd::teams::shutdown(ctx, &mut c);
    let (answer, success) = match outcome {
        Ok(x) => x,
        Err(h) => bail!(h),
    };
    if args.json {
        output::json(
            &serde_json::json!({"team": ctx.team, "success": success, "answer": answer, "seconds": started.elapsed().as_secs_f64()}),
        );
    } else {
        output::line(&answer);
    }
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether the daemon that went away was stopped on purpose (`down`, SIGTERM) rather than
/// crashed: a clean stop removes the operator credential before it lets go of its lock; a
/// crash leaves the credential behind.
pub(crate) fn stopped_cleanly(ctx: &Ctx) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent_team_daemon::lock::DaemonLock::is_held(&ctx.tp.lock) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !ctx.tp.operator_secret.exists()
}

/// On SIGINT, SIGTERM or SIGHUP: stop the team the way `down` does, say so, and exit 130.
/// A thread waits for the signal, so it works wherever the main thread is blocked (reading
/// events, or a prompt on the terminal).
fn stop_on_signal(ctx: &Ctx) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot watch for Ctrl-C")?;
    let (team, tp) = (ctx.team.clone(), ctx.tp.clone());
    let paths = ctx.paths.clone();
    let file = ctx.file.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            let name = match sig {
                SIGINT => "interrupted",
                SIGTERM => "terminated",
                _ => "hung up",
            };
            eprintln!("agent-team: {name}; stopping team {team}");
            let ctx = Ctx {
                paths,
                team: team.clone(),
                tp,
                file,
            };
            let stopped = match ctx.connect_existing() {
                Ok(Some(mut c)) => crate::cmd::teams::shutdown(&ctx, &mut c).map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            match stopped {
                Ok(()) => eprintln!(
                    "agent-team: team {team} is down (state kept; `agent-team up` starts it again)"
                ),
                Err(e) => eprintln!("agent-team: could not stop team {team}: {e}"),
            }
            std::process::exit(130);
        }
    });
    Ok(())
}

/// Starts the daemon again if needed and connects, retrying while a dying daemon still holds
/// the socket or a new one is starting.
pub(crate) fn reconnect(ctx: &Ctx) -> Result<Client> {
    let exe = std::env::current_exe()?;
    let mut pauses =
        agent_team_backoff::Backoff::new(Duration::from_millis(5), Duration::from_millis(200))
            .deadline(Instant::now() + Duration::from_secs(30));
    loop {
        let attempt = agent_team_client::ensure_daemon(&ctx.tp, &exe, &[])
            .map_err(anyhow::Error::from)
            .and_then(|_| Client::operator(&ctx.tp).map_err(anyhow::Error::from));
        match (attempt, pauses.next()) {
            (Ok(c), _) => return Ok(c),
            (Err(_), Some(pause)) => std::thread::sleep(pause),
            (Err(e), None) => return Err(e.context("cannot reach the daemon again")),
        }
    }
}

/// Follows events until `RUN_FINISHED`; `Ok(None)` on timeout.
fn follow_until_finished(
    approvals: Approvals,
    c: &mut Client,
    since: &mut u64,
    deadline: Option<Instant>,
    quiet: bool,
) -> Result<Option<(String, bool)>, ClientError> {
    c.call(Request::Subscribe { since: *since })?;
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => Some(left),
                None => return Ok(None),
            },
            None => None,
        };
        let push = match c.next_push(wait) {
            Ok(p) => p,
            Err(ClientError::Timeout) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Push::Event { envelope } = push else {
            continue;
        };
        *since = envelope.seq;
        match envelope.event {
            Event::RunFinished { answer, success } => return Ok(Some((answer, success))),
            Event::PermissionRequested { request }
                if request.status == PermStatus::Pending && approvals != Approvals::Leave =>
            {
                decide(approvals, c, &request)?;
            }
            ev if !quiet => progress(&envelope.agent_id, &ev),
            _ => {}
        }
    }
}

/// Who answers permission requests while `run` follows the team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Approvals {
    /// Ask the person at this terminal.
    Prompt,
    /// Allow everything (`--approve-all`).
    All,
    /// Leave them to `agent-team approve/deny` (no terminal).
    Leave,
}

fn decide(approvals: Approvals, c: &mut Client, r: &PermRequest) -> Result<(), ClientError> {
    use agent_team_worker::prompt::{Answer, parse_answer, question};
    let (allow, always, reason) = match approvals {
        Approvals::All => (true, false, None),
        Approvals::Leave => return Ok(()),
        // The same question and the same answers as the leader's pane.
        Approvals::Prompt => loop {
            eprint!("agent-team: {}", question(r));
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).unwrap_or(0) == 0 {
                return Ok(()); // stdin closed: leave it to `agent-team approve/deny`
            }
            match parse_answer(&line, &[r.id]) {
                Ok(Answer {
                    allow,
                    always,
                    reason,
                    ..
                }) => break (allow, always, reason),
                Err(why) => eprintln!("  {why}"),
            }
        },
    };
    match c.call(Request::PermDecide {
        id: r.id,
        allow,
        always,
        pattern: None,
        reason,
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(ErrorCode::InvalidState) => {
            eprintln!("agent-team: request {} was already decided", r.id);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn progress(agent: &str, ev: &Event) {
    match ev {
        Event::TaskUpdated { task }
            if matches!(
                task.status,
                TaskStatus::InProgress
                    | TaskStatus::Completed
                    | TaskStatus::Failed
                    | TaskStatus::Cancelled
            ) =>
        {
            eprintln!(
                "  task {:>3} {:<11} {:<12} {}",
                task.id,
                task.status.as_str(),
                task.owner.as_deref().unwrap_or("-"),
                task.title
            );
        }
        Event::AgentStatus { status, detail, .. }
            if matches!(
                status,
                AgentStatus::Starting
                    | AgentStatus::Backoff
                    | AgentStatus::Failed
                    | AgentStatus::Stopped
                    | AgentStatus::Exited
            ) =>
        {
            eprintln!(
                "  agent {agent:<12} {}{}",
                status,
                detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
        Event::PermissionRequested { request } => {
            eprintln!(
                "  permission request {} from {}: {} `{}` (agent-team approve {} / deny {})",
                request.id, request.agent, request.tool, request.input, request.id, request.id
            );
        }
        _ => {}
    }
}
