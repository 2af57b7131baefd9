//! `agent-team daemon`: run the supervisor in the foreground, or start it detached.

use crate::ctx::Ctx;
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Duration;

/// Runs the daemon (foreground) or makes sure one runs (detached).
pub fn daemon(ctx: &Ctx, foreground: bool, permission_timeout: u64) -> Result<ExitCode> {
    if !foreground {
        let exe = std::env::current_exe().context("cannot find the agent-team executable")?;
        let extra = vec![(
            "AGENT_TEAM_PERMISSION_TIMEOUT".to_string(),
            permission_timeout.to_string(),
        )];
        match agent_team_client::ensure_daemon(&ctx.tp, &exe, &extra)? {
            Some(pid) => eprintln!(
                "agent-team: started the daemon for team {} (pid {pid})",
                ctx.team
            ),
            None => eprintln!(
                "agent-team: the daemon for team {} is already running",
                ctx.team
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENT_TEAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let mut opts = agent_team_daemon::DaemonOptions::new(ctx.paths.clone(), &ctx.team);
    opts.perm_timeout = Duration::from_secs(permission_timeout);
    opts.env = crate::backend::supervisor_env()?;
    match agent_team_daemon::run(opts) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            // Said on stderr (the starter shows it; the log may be on the full disk).
            eprintln!("agent-team: error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}
