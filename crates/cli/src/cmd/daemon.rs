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
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_TEAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Started by the CLI, stderr is daemon.log: the daemon then writes it itself, rotated by
    // size. Run by hand in a terminal, it logs to the terminal.
    use agent_team_paths::logfile::{LOG_KEEP, RotatingLog};
    let log = &ctx.tp.daemon_log;
    let cap = RotatingLog::cap_from_env();
    match RotatingLog::stderr_is(log)
        .then(|| RotatingLog::open(log, cap, LOG_KEEP, true).ok())
        .flatten()
    {
        Some(file) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || file.clone())
            .with_ansi(false)
            .init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init(),
    }
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
