//! `agent-team sandbox [--role R] [-- CMD ARGS...]`: a command run in the sandbox a role's
//! task commands, `bash` tool and CLI get, so users can try their tools there (and tests can
//! attack it); with no command, what that sandbox hides, protects and lets write.

use crate::ctx::Ctx;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::process::ExitCode;

/// `agent-team sandbox`
pub fn sandbox(ctx: &Ctx, role: &str, json: bool, command: &[OsString]) -> Result<ExitCode> {
    let (cfg, _) = super::up::team_config(ctx, false, None, false)?;
    let Some(r) = cfg.role(role) else {
        let mut names: Vec<&str> = cfg.roles.keys().map(String::as_str).collect();
        names.sort_unstable();
        bail!(crate::Hinted::new(
            format!("no role {role:?}"),
            format!("valid roles: {}", names.join(", "))
        ));
    };
    // The paths of an agent of this team that no one started: its runtime dir, its state.
    let agent = agent_team_worker::AgentEnv {
        socket: ctx.tp.socket.clone(),
        team: ctx.team.clone(),
        name: format!("sandbox-{role}"),
        secret: String::new(),
        incarnation: 0,
        log_file: Some(ctx.tp.logs.join("sandbox.log")),
        workspace: None,
        member: Default::default(),
        external: false,
        healer: None,
    };
    let work = agent_team_worker::command::work_of(&agent, &cfg, r, Vec::new());
    let boundary = agent_team_sandbox::Boundary::for_work(&work);
    let mechanism = agent_team_sandbox::support().mechanism();
    let off = cfg.sandbox == agent_team_config::SandboxMode::Off;
    let Some((program, args)) = command.split_first() else {
        return view(&boundary, &mechanism, off, json);
    };
    if off {
        eprintln!(
            "agent-team: warning: the team file says sandbox = \"off\": agents' commands run \
             unconfined, and so does this one"
        );
    }
    let interactive = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Where an agent's command runs: its workspace, unless this directory is inside it.
    let cwd = if cwd.starts_with(&cfg.workspace) {
        cwd
    } else {
        cfg.workspace.clone()
    };
    let mut c = if off {
        let mut c = std::process::Command::new(program);
        c.args(args).current_dir(&cwd);
        c
    } else {
        agent_team_sandbox::command_with(
            &mechanism,
            &boundary,
            &cwd,
            program,
            args,
            agent_team_sandbox::Options {
                interactive,
                ..Default::default()
            },
        )
    };
    for k in agent_team_worker::command::hidden_vars(std::env::vars_os()) {
        c.env_remove(k);
    }
    let status = c
        .status()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(n) => ExitCode::from(u8::try_from(n).unwrap_or(1)),
        // Ended by a signal: as a shell reports it.
        None => ExitCode::from(
            128u8.saturating_add(
                u8::try_from(std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0))
                    .unwrap_or(0),
            ),
        ),
    })
}

/// What the sandbox is: its mechanism and its paths.
fn view(
    b: &agent_team_sandbox::Boundary,
    mechanism: &agent_team_sandbox::Mechanism,
    off: bool,
    json: bool,
) -> Result<ExitCode> {
    use agent_team_sandbox::Mechanism;
    let how = match (off, mechanism) {
        (true, _) => {
            "off (sandbox = \"off\" in the team file): commands run unconfined".to_string()
        }
        (false, Mechanism::Namespace(p)) => format!("a namespace by bubblewrap ({})", p.display()),
        (false, Mechanism::Landlock(abi)) => format!(
            "Landlock ABI {abi} (the fallback: hidden dirs are unreadable, not gone; no network \
             or capability rule)"
        ),
        (false, Mechanism::None(why)) => format!("none: the environment is scrubbed only ({why})"),
    };
    let paths = |v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.display().to_string()).collect()
    };
    let writable: Vec<std::path::PathBuf> = b.writable().map(|p| p.to_path_buf()).collect();
    if json {
        crate::output::json(&serde_json::json!({
            "mechanism": how,
            "hidden": paths(&b.hide),
            "writable": paths(&writable),
            "read_only": paths(&b.protected),
        }));
    } else {
        crate::output::line(&format!("sandbox: {how}"));
        for (title, list) in [
            ("hidden (empty inside)", paths(&b.hide)),
            ("writable", paths(&writable)),
            ("read-only (protected)", paths(&b.protected)),
        ] {
            crate::output::line(&format!("{title}:"));
            for p in list {
                crate::output::line(&format!("  {p}"));
            }
        }
        crate::output::line("everything else: read-only");
    }
    Ok(ExitCode::SUCCESS)
}
