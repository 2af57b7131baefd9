//! `agent-team up` and `agent-team run`.

use crate::cli::{RunArgs, UpArgs, VarArgs};
use crate::ctx::Ctx;
use crate::output;
use agent_team_client::{Client, ClientError};
use agent_team_config::{BackendKind, Secrets, TeamConfig};
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
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
        let cfg = agent_team_config::load(f)?;
        super::roles::print_warnings(&cfg.warnings);
        cfg
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

/// `--strategy` over the team file's `strategy`, checked against the team (workers, a model
/// leader, no `[[tasks]]` for coordinator and collaborate).
/// `-n N`: N more teammates of the default role, `worker-1..N`, skipping names the team file
/// already uses, within `max_teammates`.
pub(crate) fn add_workers(cfg: &mut TeamConfig, n: Option<usize>) -> Result<()> {
    const ROLE: &str = "worker";
    let Some(n) = n.filter(|n| *n > 0) else {
        return Ok(());
    };
    if !cfg.roles.contains_key(ROLE) {
        bail!("-n adds teammates of the role `{ROLE}`, which this team does not have");
    }
    if cfg.teammates.len() + n > cfg.max_teammates {
        bail!(crate::Hinted::new(
            format!(
                "-n {n} and the team file's {} teammates exceed max_teammates = {}",
                cfg.teammates.len(),
                cfg.max_teammates
            ),
            "raise max_teammates in the team file or ask for fewer"
        ));
    }
    let mut added = 0;
    for i in 1.. {
        if added == n {
            break;
        }
        let name = format!("{ROLE}-{i}");
        if cfg.teammates.iter().any(|t| t.name == name) {
            continue;
        }
        cfg.teammates.push(agent_team_config::Teammate {
            name,
            role: ROLE.to_string(),
            ..Default::default()
        });
        added += 1;
    }
    Ok(())
}

fn set_strategy(cfg: &mut TeamConfig, strategy: Option<TeamStrategy>) -> Result<()> {
    if let Some(s) = strategy {
        cfg.strategy = s;
        agent_team_config::check_strategy(cfg)?;
    }
    Ok(())
}

/// Fills the `{{KEY}}` placeholders of a configuration and goal with `variables` (over the
/// team file's `[variables]`) and resolves its secrets (`serve --secret`, then `[secrets]` from
/// this process's environment):
/// what `serve` does for each run it starts.
pub(crate) fn with_variables(
    mut cfg: TeamConfig,
    goal: Option<String>,
    variables: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<(TeamConfig, Option<String>, Secrets)> {
    let secrets = agent_team_config::resolve_secrets(&mut cfg, secrets, |k| std::env::var(k).ok())?;
    agent_team_config::apply_variables(&mut cfg, variables)?;
    let goal = run_goal(&cfg, goal.as_deref())?;
    Ok((cfg, goal, secrets))
}

/// Applies `--secret` and `--var` to the configuration (after `[secrets]` and `[variables]`)
/// and checks every placeholder; returns the secrets' values, which go to the agents through
/// the runtime dir's secrets file and never into the configuration.
fn apply_vars(cfg: &mut TeamConfig, args: &VarArgs) -> Result<Secrets> {
    let given: BTreeMap<String, String> = args.secrets.iter().cloned().collect();
    let secrets = agent_team_config::resolve_secrets(cfg, &given, |k| std::env::var(k).ok())?;
    let extra: BTreeMap<String, String> = args.vars.iter().cloned().collect();
    agent_team_config::apply_variables(cfg, &extra)?;
    Ok(secrets)
}

/// The run's goal with its placeholders filled: the one given, else the team file's.
fn run_goal(cfg: &TeamConfig, given: Option<&str>) -> Result<Option<String>> {
    Ok(match given {
        Some(g) => Some(agent_team_config::fill_goal(cfg, g)?),
        None => agent_team_config::team_goal(cfg)?,
    })
}

/// Writes the team's secrets file (0600, runtime dir) for its agents to read as they start,
/// or removes an old one when there are none.
fn write_secrets(ctx: &Ctx, secrets: &Secrets) -> Result<()> {
    let file = &ctx.tp.secrets;
    if secrets.is_empty() {
        match std::fs::remove_file(file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", file.display())),
        }
    } else {
        agent_team_paths::write_secret_file(file, &secrets.to_file_text())
            .with_context(|| format!("cannot write {}", file.display()))
    }
}

/// Refuses a goal or a team configuration the daemon would refuse, before any daemon starts;
/// returns the configuration encoded as [`start`] sends it.
pub(crate) fn check_before_start(cfg: &TeamConfig, goal: Option<&str>) -> Result<Checked> {
    let goal = goal.map(str::to_string);
    Request::StartRun { goal, config: None }
        .check_sizes()
        .map_err(ClientError::Server)?;
    let config = serde_json::to_value(cfg).context("cannot encode the team configuration")?;
    let size = agent_team_protocol::memory::json_len(&config);
    if size + 1024 > MAX_FRAME_LEN {
        bail!(crate::Hinted::new(
            format!("the team configuration has {size} bytes; the limit is {MAX_FRAME_LEN}"),
            "shorten the role prompts in the team file"
        ));
    }
    check_clis(cfg, std::env::var("PATH").ok().as_deref())?;
    check_hosts(cfg)?;
    Ok(Checked { config, size })
}

/// A team configuration [`check_before_start`] passed, encoded once: what [`start`] sends.
pub(crate) struct Checked {
    /// The configuration as the daemon stores it.
    config: serde_json::Value,
    /// Its length as compact JSON.
    size: usize,
}

/// The hosts of the team file's remote members.
fn member_hosts(cfg: &TeamConfig) -> Vec<String> {
    let mut hosts: Vec<String> = cfg
        .teammates
        .iter()
        .filter_map(|t| {
            t.host
                .clone()
                .or_else(|| cfg.role(&t.role).and_then(|r| r.host.clone()))
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Every remote member's host answers over ssh and can run a worker (its own, or ours
/// copied there), before anything of the team starts: one error naming the host.
fn check_hosts(cfg: &TeamConfig) -> Result<()> {
    let hosts = member_hosts(cfg);
    if hosts.is_empty() {
        return Ok(());
    }
    if cfg.backend == BackendKind::InProcess {
        bail!(crate::Hinted::new(
            "members on other hosts need a process backend",
            "use backend = \"tmux\" or \"process\""
        ));
    }
    let settings = agent_team_remote::RemoteSettings {
        team: cfg.name.clone(),
        ssh: cfg.ssh.command.clone(),
        worker: cfg.ssh.worker.clone(),
        dir: cfg.ssh.dir.clone(),
        daemon_socket: std::path::PathBuf::new(),
        control_dir: std::path::PathBuf::new(),
        local_worker: crate::backend::worker_exe().ok(),
        secrets_file: None,
        repo: None,
        panes: false,
    };
    agent_team_remote::check_hosts(&settings, &hosts).map_err(|e| {
        anyhow::Error::new(crate::Hinted::new(
            e.to_string(),
            "check the host with `ssh HOST true` (the team file's [ssh] command is used)",
        ))
    })
}

/// The members on this machine that run an external agent CLI: each name with its role (the
/// member's own provider applied). A remote member's CLI is on its host.
fn local_cli_members(cfg: &TeamConfig) -> Vec<(String, agent_team_config::Role)> {
    std::iter::once((names::LEADER.to_string(), names::LEADER.to_string(), None))
        .chain(
            cfg.teammates
                .iter()
                .filter(|t| t.host.is_none() && cfg.role(&t.role).is_none_or(|r| r.host.is_none()))
                .map(|t| (t.name.clone(), t.role.clone(), t.provider)),
        )
        .filter_map(|(name, role, provider)| {
            let mut role = cfg.role(&role).cloned()?;
            if let Some(p) = provider {
                role.provider = p;
            }
            role.provider.is_external().then_some((name, role))
        })
        .collect()
}

/// One line on stderr for each member whose CLI is at a version agent-team is not tested
/// with: it is run anyway.
pub(crate) fn warn_untested_clis(cfg: &TeamConfig) {
    use agent_team_worker::external::{find_program, program, untested_version};
    let path = std::env::var("PATH").ok();
    for (name, role) in local_cli_members(cfg) {
        let exe = program(&role).and_then(|p| find_program(&p, path.as_deref()));
        if let Some(warning) = exe.and_then(|e| untested_version(role.provider, &e)) {
            eprintln!("agent-team: warning: {name}: {warning}");
        }
    }
}

/// Every external agent CLI the team's members run (Claude Code, Codex, Qwen Code, Gemini CLI,
/// a `cli` command) is installed, before any agent starts; a missing one names its npm package.
fn check_clis(cfg: &TeamConfig, path: Option<&str>) -> Result<()> {
    use agent_team_worker::external::{find_program, npm_package, program};
    for (name, role) in local_cli_members(cfg) {
        let Some(prog) = program(&role) else {
            bail!(crate::Hinted::new(
                format!(
                    "{name} has provider {:?} but its role {:?} gives no `command`",
                    role.provider.as_str(),
                    role.name
                ),
                "give the role a command, e.g. command = [\"my-agent\", \"--mcp-config\", \"{mcp_config}\"]"
            ));
        };
        if find_program(&prog, path).is_none() {
            let hint = match npm_package(role.provider) {
                Some(pkg) => format!(
                    "install it with `npm install -g {pkg}`, or give the role's `command` its path"
                ),
                None => "install it, or give the role's `command` its full path".to_string(),
            };
            bail!(crate::Hinted::new(
                format!(
                    "{name} runs {} ({}), which is not on PATH",
                    prog,
                    role.provider.as_str()
                ),
                hint
            ));
        }
    }
    Ok(())
}

/// The configuration a team that ran before has stored, if it has one.
fn stored_config(ctx: &Ctx) -> Option<TeamConfig> {
    let value = ctx.reader().ok()?.config().ok()??;
    serde_json::from_value(value).ok()
}

/// On stderr, how agents' commands will not be confined as the team file asks: without a
/// namespace one block naming each protection that does not hold and the CLI teammates that
/// will not start (or, with `sandbox = "weak"`, run under the fallback); then a line for each
/// other problem (a state dir inside the workspace); see `agent-team doctor`.
fn warn_sandbox(ctx: &Ctx, cfg: &TeamConfig) {
    let clis: Vec<String> = local_cli_members(cfg)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let block = super::sandbox::fallback_warning(cfg, agent_team_sandbox::support(), &clis);
    let warnings = agent_team_worker::command::sandbox_warnings(cfg, &ctx.paths);
    // Without a namespace the first warning is the mechanism's line, which the block says
    // in full.
    let skip = usize::from(block.is_some());
    if let Some(block) = block {
        eprintln!("{block}");
    }
    for w in warnings.into_iter().skip(skip) {
        eprintln!("agent-team: warning: {w}");
    }
}

/// Hands the agents their secrets, configures the daemon and starts the run with `goal`
/// (filled); returns the event sequence number before it.
pub(crate) fn start(
    ctx: &Ctx,
    c: &mut Client,
    cfg: &TeamConfig,
    checked: Checked,
    goal: Option<String>,
    secrets: &Secrets,
) -> Result<u64> {
    write_secrets(ctx, secrets)?;
    let Checked {
        config: value,
        size,
    } = checked;
    // The configuration goes with the start (one request, one commit) when both fit in one
    // frame, else first on its own: sent together, a refused configuration would let the
    // start go ahead with the stored one. The event sequence number is read just before.
    let goal_len = goal.as_ref().map_or(0, String::len);
    let together = size.saturating_add(goal_len) + 1024 <= MAX_FRAME_LEN;
    let (first, then) = if together {
        let (goal, config) = (goal.clone(), Some(value));
        (Request::StartRun { goal, config }, None)
    } else {
        let then = Request::StartRun {
            goal: goal.clone(),
            config: None,
        };
        (Request::Configure { config: value }, Some(then))
    };
    let mut answers = c.call_all(vec![Request::TeamInfo, first])?.into_iter();
    let last_seq = match answers.next().transpose()? {
        Some(Reply::Team { team }) => team.last_seq,
        _ => 0,
    };
    match answers.next().transpose() {
        // A daemon from before `start_run` took the configuration refuses it unread: the
        // two requests it knows, one after the other.
        Err(e) if together && knows_no_field(&e, "config") => {
            let config =
                serde_json::to_value(cfg).context("cannot encode the team configuration")?;
            c.call(Request::Configure { config })?;
            c.call(Request::StartRun { goal, config: None })?;
        }
        other => {
            other?;
        }
    }
    if let Some(then) = then {
        c.call(then)?;
    }
    Ok(last_seq)
}

/// Whether `e` is an older daemon's refusal of a request's `field` it does not know yet
/// (`start_run`'s `config`, `subscribe`'s `types`): it decodes requests strictly, so an
/// unknown field is `bad_request` naming it.
fn knows_no_field(e: &ClientError, field: &str) -> bool {
    matches!(e, ClientError::Server(body)
        if body.code == ErrorCode::BadRequest
            && body.message.contains(&format!("unknown field `{field}`")))
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
    // Where workers that dial in reach the team, for the daemon about to start.
    let join_listen = args.join_listen.clone().or_else(|| join_listen_of(ctx));
    if let Some(addr) = &join_listen {
        let kept = std::fs::read_to_string(agent_team_daemon::join::listen_file(&ctx.tp.dir))
            .unwrap_or_default();
        // An address already bound with the port it picked stays (workers' URLs name it).
        if !same_listen(kept.trim(), addr) {
            agent_team_daemon::join::set_listen(&ctx.tp.dir, addr)
                .context("cannot record the worker endpoint's address")?;
        }
    }
    let running = running_team(ctx)?;
    if join_listen.is_some()
        && running.is_some()
        && agent_team_client::join::read_endpoint(&ctx.tp.dir).is_none()
    {
        eprintln!(
            "agent-team: warning: the team is already running without a worker endpoint; \
             --join-listen applies at its next start (`agent-team down` first)"
        );
    }
    let already = running.is_some();
    // Otherwise the configuration (and the backend) is checked before any daemon starts.
    let (mut c, cfg, why, goal, secrets, checked) = match running {
        Some((c, cfg)) => {
            if !args.vars.vars.is_empty() || !args.vars.secrets.is_empty() {
                eprintln!(
                    "agent-team: warning: the team is already running with its variables and                      secrets; --var and --secret apply at its next start (`agent-team down` first)"
                );
            }
            let why = "already running".to_string();
            (c, cfg, why, None, Secrets::default(), None)
        }
        None => {
            let (mut cfg, why) = team_config(ctx, args.demo, args.backend.as_deref(), args.here)?;
            add_workers(&mut cfg, args.workers)?;
            set_strategy(&mut cfg, args.strategy)?;
            let secrets = apply_vars(&mut cfg, &args.vars)?;
            let goal = run_goal(&cfg, args.goal.as_deref())?;
            let checked = check_before_start(&cfg, goal.as_deref())?;
            (ctx.connect()?, cfg, why, goal, secrets, Some(checked))
        }
    };
    eprintln!("agent-team: backend {} ({why})", cfg.backend.as_str());
    warn_sandbox(ctx, &cfg);
    warn_untested_clis(&cfg);
    if let Some(checked) = checked {
        start(ctx, &mut c, &cfg, checked, goal, &secrets)?;
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
    if !already {
        open_board(ctx, &cfg);
    }
    let agents = match c.call(Request::Agents)? {
        Reply::Agents { agents } => agents,
        _ => vec![],
    };
    say_up(ctx, &args, &cfg, already, &leader, &agents);
    // Attach to the leader's pane when a person is watching.
    let tty = nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    if cfg.backend == BackendKind::Tmux && !args.detach && !args.json && tty {
        // The whole team, unzoomed: the window lays itself out for this terminal as it attaches.
        let mut cmd = crate::cmd::agents::attach_command(
            ctx,
            names::LEADER,
            agent_team_pane::tmux::AttachView::Team,
        )?;
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        bail!(crate::Hinted::new(
            format!("cannot attach: {err}"),
            "attach later with `agent-team attach leader`"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The team file's `[join] listen`, if it has one.
fn join_listen_of(ctx: &Ctx) -> Option<String> {
    let file = ctx.file.as_ref()?;
    let text = std::fs::read_to_string(file).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value
        .get("join")?
        .get("listen")?
        .as_str()
        .map(str::to_string)
}

/// Whether the kept address `kept` (the port the daemon bound) answers a request for `asked`:
/// the same, or the same host where `asked` lets the port be picked.
fn same_listen(kept: &str, asked: &str) -> bool {
    if kept == asked {
        return true;
    }
    match (
        kept.parse::<std::net::SocketAddr>(),
        asked.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(k), Ok(a)) => a.port() == 0 && k.ip() == a.ip(),
        _ => false,
    }
}

/// The running team's connection and configuration, if one runs: a second `up` attaches to
/// it (SPEC §3) and keeps its configuration.
fn running_team(ctx: &Ctx) -> Result<Option<(Client, TeamConfig)>> {
    Ok(match ctx.connect_existing()? {
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
    })
}

/// Tells that the team is up (JSON with `--json`): its leader, how to attach, watch and stop.
fn say_up(
    ctx: &Ctx,
    args: &UpArgs,
    cfg: &TeamConfig,
    already: bool,
    leader: &AgentInfo,
    agents: &[AgentInfo],
) {
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
                "  attach: agent-team --team {} attach   (or: tmux -S {} attach -t {})",
                ctx.team,
                place.socket.display(),
                place.session
            ));
        }
        output::line(&format!(
            "  watch:  agent-team --team {} ps   |   agent-team --team {} logs leader --follow",
            ctx.team, ctx.team
        ));
        if args.demo {
            output::line(&format!(
                "  report: the demo writes {}",
                demo_report(ctx).display()
            ));
        }
        output::line(&format!("  stop:   agent-team --team {} down", ctx.team));
    }
}

/// Where the demo team writes its report (its workspace is under its state dir).
fn demo_report(ctx: &Ctx) -> std::path::PathBuf {
    ctx.tp.dir.join("workspace").join("REPORT.md")
}

/// Opens the live board in a pane beside the leader (tmux, unless `board = false`). A board
/// that cannot be opened is a warning: the team runs without it.
fn open_board(ctx: &Ctx, cfg: &TeamConfig) {
    let Some(place) = cfg.tmux.as_ref().filter(|_| cfg.board) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let command = format!(
        "{} --team {} board",
        agent_team_pane::shell_quote(&exe.display().to_string()),
        agent_team_pane::shell_quote(&ctx.team)
    );
    let placement = agent_team_pane::tmux::Placement {
        socket: place.socket.clone(),
        session: place.session.clone(),
        window: place.window.clone(),
        private_server: place.window.is_none(),
    };
    if let Err(e) =
        agent_team_pane::tmux::open_side_pane(&placement, &cfg.workspace, &command, "board")
    {
        eprintln!("agent-team: warning: cannot open the board pane: {e}");
    }
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

/// Set by `run --json` and `run --stream`: the result object goes to stdout even when a
/// signal stops the run.
static RESULT_ON_STDOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How `run` reports: the answer as text, one result object (`--json`), or every event and
/// then the result object (`--stream`, NDJSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Text,
    Json,
    Stream,
}

/// A run that ended without an answer, with the code its result object carries.
#[derive(Debug)]
struct RunStopped {
    code: &'static str,
    why: crate::Hinted,
}

impl std::fmt::Display for RunStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.why.fmt(f)
    }
}

impl std::error::Error for RunStopped {}

/// The `code` of the result object for a run that failed with `e`.
fn failure_code(e: &anyhow::Error) -> String {
    if let Some(s) = e.downcast_ref::<RunStopped>() {
        return s.code.to_string();
    }
    if let Some(ClientError::Server(body) | ClientError::Refused(body)) =
        e.chain().find_map(|c| c.downcast_ref::<ClientError>())
    {
        return body.code.as_str().to_string();
    }
    if e.chain()
        .any(|c| c.downcast_ref::<agent_team_config::ConfigError>().is_some())
    {
        return ErrorCode::BadRequest.as_str().to_string();
    }
    "failed".to_string()
}

/// Prints a result object: pretty for `--json`, one line for `--stream`.
fn print_outcome(report: Report, outcome: &RunOutcome) {
    if report == Report::Stream {
        match serde_json::to_string(outcome) {
            Ok(line) => output::line(&line),
            Err(e) => eprintln!("agent-team: error: cannot encode JSON: {e}"),
        }
    } else {
        output::json(outcome);
    }
}

/// `agent-team run`
pub fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let report = if args.stream {
        Report::Stream
    } else if args.json {
        Report::Json
    } else {
        Report::Text
    };
    if report != Report::Text {
        RESULT_ON_STDOUT.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let started = Instant::now();
    let demo_report = args.demo.then(|| demo_report(ctx));
    let outcome = run_team(ctx, args, report, started);
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    match (report, outcome) {
        (Report::Text, Ok(done)) => {
            if let Some(u) = done.usage.as_ref().filter(|u| u.run.requests > 0) {
                crate::output::say(&format!(
                    "agent-team: the run used {} tokens ({} input, {} cached, {} output) in {} model requests, cost {}",
                    u.run.tokens(),
                    u.run.input_tokens,
                    u.run.cached_tokens,
                    u.run.output_tokens,
                    u.run.requests,
                    crate::cmd::usage::cost(u.run.cost_usd)
                ));
            }
            output::line(&done.answer);
            if let Some(path) = demo_report.filter(|p| p.exists()) {
                crate::output::say(&format!(
                    "agent-team: the demo's report is {}",
                    path.display()
                ));
            }
            Ok(exit_for(done.success))
        }
        (Report::Text, Err(e)) => Err(e),
        (_, Ok(done)) => {
            let success = done.success;
            let mut result = RunResult::new(
                &ctx.team,
                done.answer,
                success,
                started.elapsed().as_secs_f64(),
            )
            .with_details(done.details, done.tasks);
            result.usage = done.usage.map(Box::new);
            result.reports = done.reports;
            result.finished_work = done.finished_work;
            print_outcome(report, &RunOutcome::Complete(result));
            Ok(exit_for(success))
        }
        (_, Err(e)) => {
            // The reason on stderr as for any failure, and as the last object on stdout.
            let message = crate::describe(&e);
            eprintln!("agent-team: error: {message}");
            let error = RunFailure {
                code: failure_code(&e),
                message,
            };
            print_outcome(report, &RunOutcome::Error { error });
            Ok(ExitCode::from(1))
        }
    }
}

fn exit_for(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// How a followed run finished: the answer, and what the result object adds to it.
struct Finished {
    answer: String,
    success: bool,
    /// What the run's record says about it (strategy, rounds, workers' outputs).
    details: Option<RunDetails>,
    /// The board at the end.
    tasks: Vec<Task>,
    /// The team's model usage when the run ended.
    usage: Option<UsageReport>,
    /// Each teammate's last message to the leader during the run.
    reports: std::collections::BTreeMap<String, String>,
    /// What the run's end did with the worktree teammates' work.
    finished_work: Vec<WorkResult>,
}

/// Starts the team, follows it to its answer and shuts it down.
fn run_team(ctx: &Ctx, args: RunArgs, report: Report, started: Instant) -> Result<Finished> {
    let (mut cfg, why) = team_config(ctx, args.demo, args.backend.as_deref(), false)?;
    add_workers(&mut cfg, args.workers)?;
    set_strategy(&mut cfg, args.strategy)?;
    if !args.quiet {
        eprintln!("agent-team: backend {} ({why})", cfg.backend.as_str());
        warn_sandbox(ctx, &cfg);
        warn_untested_clis(&cfg);
    }
    let secrets = apply_vars(&mut cfg, &args.vars)?;
    let goal = run_goal(&cfg, args.goal.as_deref())?;
    let checked = check_before_start(&cfg, goal.as_deref())?;
    // `run` brings a crashed daemon back itself while it follows the team (`reconnect`), so
    // the daemon it starts needs a guardian only once `run` is gone.
    let mut c = ctx.connect_guarding()?;
    let run_ts = agent_team_protocol::Timestamp::from(std::time::SystemTime::now());
    // From here on an interrupted `run` stops the team it started, like `down`, and says so.
    stop_on_signal(ctx)?;
    let mut since = start(ctx, &mut c, &cfg, checked, goal, &secrets)?;
    // From here `run` only follows: the code that read the team file and started the team
    // leaves its pages.
    crate::code_pages::release();
    let deadline = args.timeout.map(|s| started + Duration::from_secs(s));
    let approvals = if args.approve_all {
        Approvals::All
    } else if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        Approvals::Prompt
    } else {
        Approvals::Leave
    };
    let outcome = follow_to_answer(
        ctx,
        &mut c,
        &mut since,
        approvals,
        deadline,
        &args,
        report,
        cfg.end_grace_secs,
    )?;
    // The teammates' last turns (their reports to the leader), then what the result says
    // of the team as the run ended (its figures, its members), before the team goes down.
    // A text report shows no reports, and a team with no worktree or remote members has no
    // work to land: its stop then goes with these reads, one round trip and one commit.
    let end = RunEnd {
        reports: report != Report::Text,
        stop: report == Report::Text && !may_land_work(&cfg),
    };
    let (reports, agents, usage) = match &outcome {
        // The wait for the teammates' last turns went with the run's end (`RUN_FINISHED`).
        Ok(_) => run_end(&mut c, run_ts, end),
        Err(_) => {
            let usage = match c.call(Request::Usage) {
                Ok(Reply::Usage { report }) => Some(report),
                _ => None,
            };
            (Default::default(), Vec::new(), usage)
        }
    };
    let stopped = outcome.is_ok() && end.stop;
    // The worktree teammates' work, landed as the team file says (`finish`).
    let finished_work = match &outcome {
        Ok(_) if !stopped => crate::cmd::work::at_run_end(
            &mut c,
            &cfg,
            agents,
            args.quiet,
            args.accept_control_changes,
        ),
        Ok(_) => {
            left_unlanded(&cfg, &agents);
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    // Shut everything down whatever happened: once the daemon lets go of its lock, nothing of
    // the team runs any more.
    if stopped {
        let _ = crate::cmd::teams::let_go(ctx, c.welcome().daemon_pid);
    } else {
        let _ = crate::cmd::teams::shutdown(ctx, &mut c, crate::cmd::teams::Until::LetGo);
    }
    let mut done = outcome?;
    done.usage = usage;
    done.reports = reports;
    done.finished_work = finished_work;
    Ok(done)
}

/// Follows the run to its answer, starting a crashed daemon again on the way; `Err` inside
/// when the run stopped without one (timeout, or the team was stopped).
#[allow(clippy::too_many_arguments)]
fn follow_to_answer(
    ctx: &Ctx,
    c: &mut Client,
    since: &mut u64,
    approvals: Approvals,
    deadline: Option<Instant>,
    args: &RunArgs,
    report: Report,
    grace_secs: u64,
) -> Result<Result<Finished, RunStopped>> {
    loop {
        match follow_until_finished(
            approvals, c, since, deadline, args.quiet, report, grace_secs,
        ) {
            Ok(Some(done)) => return Ok(Ok(done)),
            Ok(None) => {
                return Ok(Err(RunStopped {
                    code: "timeout",
                    why: crate::Hinted::new(
                        "the run did not finish in time",
                        "raise --timeout, or look at `agent-team ps`",
                    ),
                }));
            }
            Err(e) if e.is_disconnect() && stopped_cleanly(ctx) => {
                return Ok(Err(RunStopped {
                    code: "stopped",
                    why: crate::Hinted::new(
                        format!("team {} was stopped before the run finished", ctx.team),
                        "someone ran `agent-team down` or signalled its daemon; `agent-team up` starts it again",
                    ),
                }));
            }
            Err(e) if e.is_disconnect() => {
                // The daemon went away (crash?): start it again; it re-adopts the agents.
                if !args.quiet {
                    eprintln!(
                        "agent-team: lost the daemon; restarting it and following from event {since}"
                    );
                }
                *c = reconnect_guarded(ctx, true)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The wait until every teammate has ended its turn (at most `grace_secs`): asked as the run
/// ends, so their last reports to the leader are in its inbox when the result reads it.
fn teammates_done(grace_secs: u64) -> Request {
    Request::WaitFor {
        agents: Vec::new(),
        tasks: Vec::new(),
        timeout_ms: grace_secs
            .saturating_mul(1000)
            .min(agent_team_protocol::MAX_WAIT_MS),
        any: false,
    }
}

/// Says who was still working when the grace for the teammates' last turns ran out.
fn say_who_still_works(grace_secs: u64, waited: Reply) {
    if let Reply::Waited {
        done: false,
        agents,
        ..
    } = waited
    {
        let busy: Vec<String> = agents
            .into_iter()
            .filter(|a| !a.status.is_down() && a.status != AgentStatus::Idle)
            .map(|a| a.name)
            .collect();
        eprintln!(
            "agent-team: going ahead after {grace_secs} s; still working: {}",
            busy.join(", ")
        );
    }
}

/// What a finished run's result reports, asked at once (one wait, not one each): each
/// teammate's last message to the leader since `since`, the members, the team's figures.
fn run_end(
    c: &mut Client,
    since: agent_team_protocol::Timestamp,
    end: RunEnd,
) -> (
    std::collections::BTreeMap<String, String>,
    Vec<AgentInfo>,
    Option<UsageReport>,
) {
    let inbox = |after| Request::Inbox {
        agent: Some(names::LEADER.into()),
        unread_only: false,
        after,
    };
    let mut asked = Vec::with_capacity(4);
    if end.reports {
        asked.push(inbox(None));
    }
    asked.extend([Request::Agents, Request::Usage]);
    if end.stop {
        asked.push(Request::Shutdown);
    }
    let answers = match end.stop {
        true => c.call_all_then_gone(asked),
        false => c.call_all(asked).unwrap_or_default(),
    };
    let mut answers = answers.into_iter();
    let mut first = if end.reports { answers.next() } else { None };
    let agents = match answers.next() {
        Some(Ok(Reply::Agents { agents })) => agents,
        _ => Vec::new(),
    };
    let usage = match answers.next() {
        Some(Ok(Reply::Usage { report })) => Some(report),
        _ => None,
    };
    let mut reports = std::collections::BTreeMap::new();
    let mut after = None;
    loop {
        // A text report shows no reports: none read.
        if !end.reports {
            break;
        }
        // The first page came with the others; the rest, if any, page after page.
        let answer = match first.take() {
            Some(a) => a,
            None => c.call(inbox(after)),
        };
        let last_page = answer.as_ref().is_ok_and(Reply::is_last_page);
        let page = match answer {
            Ok(Reply::Messages { messages, .. }) if !messages.is_empty() => messages,
            _ => break,
        };
        after = page.last().map(|m| m.id);
        for m in page {
            let from_teammate =
                m.from != names::LEADER && m.from != names::OPERATOR && m.from != "daemon";
            if from_teammate && m.ts >= since && m.kind == MessageKind::Text {
                reports.insert(m.from, m.body);
            }
        }
        if last_page {
            break;
        }
    }
    (reports, agents, usage)
}

/// What the end of a finished run reads, and whether the team's stop goes with it.
#[derive(Debug, Clone, Copy)]
struct RunEnd {
    /// The teammates' reports to the leader (the leader's inbox), which a JSON result shows.
    reports: bool,
    /// The stop asked with the reads, behind them (nothing is left to do with the daemon).
    stop: bool,
}

/// Whether a run of `cfg` may end with teammates' work to land (`finish`): a worktree role,
/// or members on other hosts, whose branches come home.
fn may_land_work(cfg: &agent_team_config::TeamConfig) -> bool {
    cfg.roles
        .values()
        .any(|r| r.isolation == agent_team_config::Isolation::Worktree)
        || !cfg.hosts().is_empty()
}

/// Says which teammates' work a run stopped with its last reads left on their branches: a
/// member placed on another host during the run (by the operator: the team file has none),
/// whose work the team's `finish` would have landed.
fn left_unlanded(cfg: &agent_team_config::TeamConfig, agents: &[AgentInfo]) {
    for a in agents.iter().filter(|a| a.host.is_some()) {
        let policy = cfg
            .role(&a.role)
            .and_then(|r| r.finish)
            .unwrap_or(cfg.finish);
        if policy != FinishPolicy::Keep {
            eprintln!(
                "agent-team: {}'s work on {} was left on its branch; `agent-team up` and \
                 `agent-team finish {}` land it",
                a.name,
                a.host.as_deref().unwrap_or_default(),
                a.name
            );
        }
    }
}

/// Whether the daemon that went away was stopped on purpose (`down`, SIGTERM) rather than
/// crashed: a clean stop removes the operator credential before it lets go of its lock; a
/// crash leaves the credential behind.
pub(crate) fn stopped_cleanly(ctx: &Ctx) -> bool {
    agent_team_paths::wait_lock_released(&ctx.tp.lock, Duration::from_secs(10))
        && !ctx.tp.operator_secret.exists()
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
            let result_on_stdout = RESULT_ON_STDOUT.load(std::sync::atomic::Ordering::SeqCst);
            let ctx = Ctx {
                paths,
                team: team.clone(),
                tp,
                file,
            };
            let stopped = match ctx.connect_existing() {
                Ok(Some(mut c)) => {
                    crate::cmd::teams::shutdown(&ctx, &mut c, crate::cmd::teams::Until::Exited)
                        .map(|_| ())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            match stopped {
                Ok(()) => eprintln!(
                    "agent-team: team {team} is down (state kept; `agent-team up` starts it again)"
                ),
                Err(e) => eprintln!("agent-team: could not stop team {team}: {e}"),
            }
            if result_on_stdout {
                let error = RunFailure {
                    code: "interrupted".into(),
                    message: format!("{name}; team {team} was stopped"),
                };
                // One line: with --json it is still a single object.
                if let Ok(line) = serde_json::to_string(&RunOutcome::Error { error }) {
                    output::line(&line);
                }
            }
            std::process::exit(130);
        }
    });
    Ok(())
}

/// Starts the daemon again if needed and connects, retrying while a dying daemon still holds
/// the socket or a new one is starting; a daemon started again by a `guarding` caller runs
/// without a guardian while the caller lives (`agent_team_client::ensure_daemon_guarded_by_me`).
fn reconnect_guarded(ctx: &Ctx, guarding: bool) -> Result<Client> {
    let mut pauses =
        agent_team_backoff::Backoff::new(Duration::from_millis(5), Duration::from_millis(200))
            .deadline(Instant::now() + Duration::from_secs(30));
    loop {
        match (ctx.connect_as_starter(guarding), pauses.next()) {
            (Ok(c), _) => return Ok(c),
            (Err(_), Some(pause)) => std::thread::sleep(pause),
            (Err(e), None) => return Err(e.context("cannot reach the daemon again")),
        }
    }
}

/// Follows events until `RUN_FINISHED`; `Ok(None)` on timeout. With `stream`, every envelope
/// goes to stdout as one JSON line as it arrives (progress lines stay on stderr). The run's
/// record (committed with `RUN_FINISHED`) and the board are read before the team goes down.
#[allow(clippy::too_many_arguments)]
fn follow_until_finished(
    approvals: Approvals,
    c: &mut Client,
    since: &mut u64,
    deadline: Option<Instant>,
    quiet: bool,
    report: Report,
    grace_secs: u64,
) -> Result<Option<Finished>, ClientError> {
    let stream = report == Report::Stream;
    // A result object shows the run's record and the board; a text report neither.
    let result = report != Report::Text;
    subscribe_to_follow(approvals, c, *since, quiet && !stream)?;
    let paint = output::color_on_stderr();
    let mut colors: std::collections::HashMap<String, String> = Default::default();
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
        // A reconnect subscribes from the last seen event: nothing is printed twice.
        if envelope.seq <= *since {
            continue;
        }
        *since = envelope.seq;
        if stream {
            match serde_json::to_string(&envelope) {
                Ok(line) => output::line(&line),
                Err(e) => eprintln!("agent-team: cannot encode event {}: {e}", envelope.seq),
            }
        }
        match envelope.event {
            Event::RunFinished { answer, success } => {
                let finished = read_finished(c, result, quiet, grace_secs)?;
                return Ok(Some(Finished {
                    answer,
                    success,
                    ..finished
                }));
            }
            Event::PermissionRequested { request }
                if request.status == PermStatus::Pending && approvals != Approvals::Leave =>
            {
                decide(approvals, c, &request)?;
            }
            ev if !quiet => print_progress(c, &mut colors, paint, &envelope.agent_id, &ev),
            _ => {}
        }
    }
}

/// Subscribes to the team's events from `since`: with `few` (quiet, not streaming) only the
/// run's end and the permission requests it answers.
fn subscribe_to_follow(
    approvals: Approvals,
    c: &mut Client,
    since: u64,
    few: bool,
) -> Result<(), ClientError> {
    // Quiet and not streaming, it acts on the run's end and on the permission requests it
    // answers, nothing else: it asks for those events only, so the daemon encodes and sends,
    // and this process reads, a few frames instead of every event of the run.
    let types = few.then(|| {
        let mut types = vec!["RUN_FINISHED".to_string()];
        if approvals != Approvals::Leave {
            types.push("PERMISSION_REQUESTED".to_string());
        }
        types
    });
    let filtered = types.is_some();
    match c.call(Request::Subscribe { since, types }) {
        // A daemon from before the filter: every event, as before.
        Err(e) if filtered && knows_no_field(&e, "types") => {
            c.call(Request::Subscribe { since, types: None })?;
        }
        other => {
            other?;
        }
    }
    Ok(())
}

/// At the run's end: the run's record and the board (for a result object), after waiting for
/// the teammates' last turns; the answer and success are the caller's to fill in.
fn read_finished(
    c: &mut Client,
    result: bool,
    quiet: bool,
    grace_secs: u64,
) -> Result<Finished, ClientError> {
    // The run's record and the board's first page (for a result object; a text
    // report shows neither) and the wait for the teammates' last turns (their
    // reports to the leader) asked at once.
    let mut asked = Vec::with_capacity(3);
    if result {
        asked.push(Request::TeamInfo);
        asked.push(Request::TaskList {
            status: None,
            after: None,
        });
    }
    asked.push(teammates_done(grace_secs));
    let mut answers = c.call_all(asked)?.into_iter();
    let details = match result {
        true => match answers.next().transpose()? {
            Some(Reply::Team { team }) => team.details,
            _ => None,
        },
        false => None,
    };
    let (mut tasks, last_page) = match result {
        true => match answers.next().transpose()? {
            Some(reply) => {
                let last_page = reply.is_last_page();
                match reply {
                    Reply::Tasks { tasks, .. } => (tasks, last_page),
                    _ => (Vec::new(), true),
                }
            }
            None => (Vec::new(), true),
        },
        false => (Vec::new(), true),
    };
    if !quiet && let Some(Ok(waited)) = answers.next() {
        say_who_still_works(grace_secs, waited);
    }
    if let Some(last) = tasks.last().map(|t| t.id).filter(|_| !last_page) {
        let rest = c.tasks_after(None, Some(last))?;
        tasks.extend(rest);
    }
    Ok(Finished {
        answer: String::new(),
        success: false,
        details,
        tasks,
        usage: None,
        reports: Default::default(),
        finished_work: Vec::new(),
    })
}

/// Prints one event's progress line, names in their agents' colours when `paint`.
fn print_progress(
    c: &mut Client,
    colors: &mut std::collections::HashMap<String, String>,
    paint: bool,
    agent: &str,
    ev: &Event,
) {
    // Names in their agents' colours, on a terminal without NO_COLOR; the roster is
    // read again when a name not seen yet shows up.
    if paint {
        let who = [Some(agent), event_owner(ev)];
        if who.iter().flatten().any(|n| !colors.contains_key(*n))
            && let Ok(Reply::Agents { agents }) = c.call(Request::Agents)
        {
            for a in agents {
                colors.insert(a.name, a.color.unwrap_or_default());
            }
        }
    }
    let name = |n: &str, width: usize| {
        let padded = format!("{n:<width$}");
        match colors.get(n).filter(|c| paint && !c.is_empty()) {
            Some(c) => output::paint(c, &padded),
            None => padded,
        }
    };
    progress(agent, ev, &name)
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
        // Decided meanwhile, or void (its requester is gone): the daemon says which.
        Err(ClientError::Server(b)) if b.code == ErrorCode::InvalidState => {
            eprintln!("agent-team: {}", b.message);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The agent a progress line names besides the event's own (a task's owner).
fn event_owner(ev: &Event) -> Option<&str> {
    match ev {
        Event::TaskUpdated { task } => task.owner.as_deref(),
        _ => None,
    }
}

/// One line on stderr for the events `run` reports; `name` draws an agent's name padded to a
/// width (in its colour when `run` paints).
fn progress(agent: &str, ev: &Event, name: &dyn Fn(&str, usize) -> String) {
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
                "  task {:>3} {:<11} {} {}",
                task.id,
                task.status.as_str(),
                name(task.owner.as_deref().unwrap_or("-"), 12),
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
                "  agent {} {}{}",
                name(agent, 12),
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
                request.id,
                name(&request.agent, 0),
                request.tool,
                request.input,
                request.id,
                request.id
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_team_with_worktree_or_remote_members_may_have_work_to_land_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let team = dir.path().join("agent-team.toml");
        let parse = |text: &str| {
            std::fs::write(&team, text).unwrap();
            agent_team_config::load(&team).unwrap()
        };
        assert!(!may_land_work(&parse("name = \"t\"\n")));
        assert!(may_land_work(&parse(
            "name = \"t\"\n[roles.a]\nisolation = \"worktree\"\n"
        )));
        assert!(may_land_work(&parse(
            "name = \"t\"\n[roles.a]\nhost = \"box\"\n"
        )));
    }

    #[test]
    fn an_older_daemons_refusal_of_the_start_configuration_is_recognised() {
        // What a daemon answers a request with a field its protocol lacks (`invalid request: `
        // and serde's message), shown with a request whose variant has no `config` either.
        let e = serde_json::from_str::<Request>(r#"{"op":"task_show","id":1,"config":{}}"#)
            .unwrap_err();
        let refusal = ClientError::Server(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("invalid request: {e}"),
        ));
        assert!(knows_no_field(&refusal, "config"), "{refusal}");
        let refused_config = ClientError::Server(ErrorBody::new(
            ErrorCode::BadRequest,
            "invalid team configuration: unknown field `model`",
        ));
        assert!(!knows_no_field(&refused_config, "config"));
        // The same for `subscribe`'s event types.
        let e =
            serde_json::from_str::<Request>(r#"{"op":"task_show","id":1,"types":[]}"#).unwrap_err();
        let refusal = ClientError::Server(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("invalid request: {e}"),
        ));
        assert!(knows_no_field(&refusal, "types"), "{refusal}");
        assert!(!knows_no_field(&refusal, "config"));
    }
}
