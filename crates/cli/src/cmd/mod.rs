//! One function per subcommand.

mod agents;
mod board;
pub(crate) mod daemon;
mod doctor;
pub(crate) mod join;
mod kube;
mod memory;
mod plan;
pub(crate) mod roles;
pub(crate) mod runs;
mod runtimes;
mod sandbox;
pub(crate) mod schedule;
mod serve;
mod settings;
pub(crate) mod teams;
mod triggers;
mod tui;
pub(crate) mod up;
mod usage;
pub(crate) mod work;

use crate::cli::{Cli, Command, Globals, RunArgs, ServeArgs, UpArgs};
use crate::ctx::Ctx;
use anyhow::{Context, Result};
use std::process::ExitCode;

/// Refuses every team command run by an agent's command (a task command, a `bash` call, a CLI
/// teammate's tool, a hook): they carry the agent's name and team and nothing else, have no
/// operator credential, and must never start a daemon of their own (a stray team in the
/// sandbox's empty runtime dir). Agents act through their team tools.
fn inside_an_agents_sandbox() -> Result<()> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(name), Some(team)) = (
        var(agent_team_pane::env::NAME),
        var(agent_team_pane::env::TEAM),
    ) {
        return Err(crate::Hinted::new(
            format!(
                "this runs inside team {team}'s sandbox, as agent {name}'s command: it has no \
                 operator credential and starts no daemon"
            ),
            "agents act through their team tools; ask the leader or the operator",
        )
        .into());
    }
    Ok(())
}

/// `agent-team runs …` (about every team: it resolves none).
fn runs_cmd(r: crate::cli::RunsCmd) -> Result<ExitCode> {
    let paths = agent_team_paths::Paths::from_env()?;
    match r {
        crate::cli::RunsCmd::List { limit, json } => runs::list(&paths, json, limit),
        crate::cli::RunsCmd::Show { id, json } => runs::show(&paths, &id, json),
    }
}

/// `agent-team schedule …`
fn schedule_cmd(ctx: &Ctx, s: crate::cli::ScheduleCmd) -> Result<ExitCode> {
    use crate::cli::{MissedArg, ScheduleCmd};
    use agent_team_config::triggers::Missed;
    let file = ctx
        .file
        .as_ref()
        .and_then(|f| std::fs::canonicalize(f).ok());
    match s {
        ScheduleCmd::Add {
            name,
            cron,
            goal,
            vars,
            missed,
        } => schedule::add(
            &ctx.paths,
            &ctx.team,
            file.as_deref(),
            name,
            cron,
            goal,
            vars,
            match missed {
                MissedArg::RunOnce => Missed::RunOnce,
                MissedArg::Skip => Missed::Skip,
            },
        ),
        ScheduleCmd::Rm { name } => {
            schedule::rm(&ctx.paths, &ctx.team, name.as_deref(), file.as_deref())
        }
        ScheduleCmd::List { json } => schedule::list(
            &ctx.paths,
            file.as_deref().map(|f| (ctx.team.as_str(), f)),
            json,
        ),
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let Cli {
        globals: Globals { team, file },
        mut command,
    } = cli;
    if let Command::Up(UpArgs { vars, .. })
    | Command::Run(RunArgs { vars, .. })
    | Command::Serve(ServeArgs { vars, .. }) = &mut command
    {
        vars.fold_env();
    }
    // `teams` is about every team, so it resolves none.
    let command = match command {
        Command::Teams(t) => return teams::teams(t),
        Command::Doctor(j) => return doctor::doctor(team, file, j.json),
        Command::Roles(j) => return roles::roles(file, j.json),
        Command::Hook { socket, event, cli } => return hook(&socket, &event, cli.as_deref()),
        Command::Completions { shell } => return completions(shell),
        Command::Runs(r) => return runs_cmd(r),
        Command::TmuxLayout {
            socket,
            window,
            layout,
            lock,
        } => {
            let layout = agent_team_pane::tmux::TmuxLayout::from_tmux_name(&layout)
                .with_context(|| format!("unknown tmux layout {layout:?}"))?;
            agent_team_pane::tmux::relayout_locked(&socket, &window, layout, &lock)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            return Ok(ExitCode::SUCCESS);
        }
        other => other,
    };
    inside_an_agents_sandbox()?;
    // The demo is its own team unless told otherwise.
    let demo = matches!(&command, Command::Up(a) if a.demo)
        || matches!(&command, Command::Run(a) if a.demo);
    let team = if demo && team.is_none() {
        Some("demo".to_string())
    } else {
        team
    };
    let ctx = Ctx::resolve(team, if demo { None } else { file })?;
    if demo {
        fresh_demo(&ctx)?;
    }
    if matches!(&command, Command::Up(_) | Command::Run(_)) {
        ctx.remember_dir();
    }
    match command {
        Command::Up(a) => up::up(&ctx, a),
        Command::Run(a) => up::run(&ctx, a),
        Command::Join {
            name,
            role,
            ttl,
            json,
        } => join::join(&ctx, &name, role, ttl, json),
        Command::Kube(crate::cli::KubeCmd::Manifest {
            target,
            image,
            join_url,
            worker_path,
            sandbox,
            ttl,
            out,
            json,
        }) => kube::manifest(
            &ctx,
            kube::ManifestArgs {
                target,
                image,
                join_url,
                worker_path,
                sandbox,
                ttl_secs: ttl,
                out,
                json,
            },
        ),
        Command::Kill { name, json } => agents::lifecycle(
            &ctx,
            agent_team_protocol::Request::Kill { name, reason: None },
            json,
        ),
        Command::Dissolve {
            reason,
            cancel_tasks,
            json,
        } => agents::dissolve(&ctx, reason, cancel_tasks, json),
        Command::Restart { name, json } => {
            agents::lifecycle(&ctx, agent_team_protocol::Request::Restart { name }, json)
        }
        Command::Spawn {
            role,
            name,
            host,
            workspace,
            image,
            memory,
            cpus,
            pids,
            runtime,
            json,
        } => agents::lifecycle(
            &ctx,
            agent_team_protocol::Request::Spawn {
                role: role.unwrap_or_default(),
                name,
                instructions: None,
                model: None,
                message: None,
                host,
                workspace,
                container: image.map(|image| agent_team_protocol::ContainerSpec {
                    image,
                    runtime,
                    memory,
                    cpus,
                    pids,
                    runtime_class: None,
                }),
            },
            json,
        ),
        Command::Logs { name, follow, raw } => agents::logs(&ctx, &name, follow, raw),
        Command::Diff { name, stat, json } => work::diff(&ctx, &name, stat, json),
        Command::Finish {
            name,
            all,
            merge,
            pr,
            discard,
            into,
            keep,
            yes,
            json,
            accept_control_changes,
        } => {
            let action = if merge {
                Some(agent_team_protocol::FinishAction::Merge)
            } else if pr {
                Some(agent_team_protocol::FinishAction::Pr)
            } else if discard {
                Some(agent_team_protocol::FinishAction::Discard)
            } else {
                None
            };
            let plan = work::Plan {
                action,
                into,
                keep,
                yes,
                json,
                accept_control: accept_control_changes,
            };
            match name {
                Some(name) if !all => work::finish(&ctx, &name, &plan),
                _ => work::finish_all(&ctx, &plan),
            }
        }
        Command::Attach { name } => agents::attach(&ctx, name.as_deref()),
        Command::Sandbox {
            role,
            json,
            command,
        } => sandbox::sandbox(&ctx, &role, json, &command),
        Command::Ps(j) => board::ps(&ctx, j.json),
        Command::Board => tui::board(&ctx),
        Command::Usage(j) => usage::usage(&ctx, j.json),
        Command::Budget(b) => usage::budget(&ctx, b),
        Command::Task(t) => board::task(&ctx, t),
        Command::Memory(m) => memory::memory(&ctx, m),
        Command::Config(c) => settings::config(&ctx, c),
        Command::Plan(p) => plan::plan(&ctx, p),
        Command::Send {
            to,
            text,
            summary,
            json,
        } => board::send(&ctx, to, text, summary, json),
        Command::Inbox { name, unread, json } => board::inbox(&ctx, name, unread, json),
        Command::Perms { all, json } => board::perms(&ctx, all, json),
        Command::Approve {
            id,
            always,
            pattern,
        } => board::decide(&ctx, id, true, always, pattern, None),
        Command::Deny { id, reason } => board::decide(&ctx, id, false, false, None, reason),
        Command::Events { follow, since, .. } => board::events(&ctx, follow, since),
        Command::Down { json } => teams::down(&ctx, json),
        Command::Serve(a) => serve::serve(ctx, a),
        Command::Schedule(s) => schedule_cmd(&ctx, s),
        Command::Runs(r) => runs_cmd(r),
        Command::Scheduler => schedule::scheduler(
            &ctx.paths,
            ctx.file
                .as_ref()
                .and_then(|f| std::fs::canonicalize(f).ok())
                .map(|f| (ctx.team.clone(), f)),
        ),
        Command::Gc { older_than, json } => teams::gc(&ctx, older_than, json),
        Command::Daemon { guard: true, .. } => daemon::guard(&ctx),
        Command::Daemon {
            foreground,
            permission_timeout,
            ..
        } => daemon::daemon(&ctx, foreground, permission_timeout),
        // Handled above.
        Command::Teams(t) => teams::teams(t),
        Command::Doctor(j) => doctor::doctor(Some(ctx.team.clone()), ctx.file.clone(), j.json),
        Command::Roles(j) => roles::roles(ctx.file.clone(), j.json),
        Command::Completions { .. }
        | Command::Man
        | Command::Hook { .. }
        | Command::TmuxLayout { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// `agent-team completions SHELL`: the script, written at once so that a reader that stops
/// early (`agent-team completions bash | head`) ends it quietly, not with clap_complete's panic
/// on the broken pipe.
fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    use std::io::Write;
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "agent-team", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the completion script")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `agent-team hook EVENT`: the CLI's hook, carried out by `agent-team-bridge` (installed beside
/// this binary), which hands the hook's input to the agent's team server and prints its answer:
/// one implementation of the hook, whichever command a CLI was given. A pre-tool hook that
/// cannot be run exits 2, which refuses the call.
fn hook(socket: &std::path::Path, event: &str, cli: Option<&str>) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let bridge = agent_team_worker::external::bridge_exe(&exe);
    let mut cmd = std::process::Command::new(&bridge);
    cmd.args(["hook", event]);
    if let Some(c) = cli {
        cmd.args(["--cli", c]);
    }
    cmd.arg("--socket").arg(socket);
    let e = cmd.exec();
    eprintln!(
        "agent-team: cannot run {}: {e}; no permission decision, the call is refused",
        bridge.display()
    );
    Ok(ExitCode::from(if event == "pre-tool-use" { 2 } else { 1 }))
}

/// The demo starts from an empty board each time it is not already running, so a second
/// `run --demo` shows the team at work again rather than the last run's results.
fn fresh_demo(ctx: &Ctx) -> Result<()> {
    if agent_team_client::daemon_running(&ctx.tp) || !ctx.tp.dir.exists() {
        return Ok(());
    }
    eprintln!("agent-team: starting the demo team {} afresh", ctx.team);
    std::fs::remove_dir_all(&ctx.tp.dir)
        .map_err(|e| anyhow::anyhow!("cannot clear {}: {e}", ctx.tp.dir.display()))
}
