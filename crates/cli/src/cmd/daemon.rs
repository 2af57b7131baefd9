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
    let mut start_pipe = start_pipe();
    let mut opts = agent_team_daemon::DaemonOptions::new(ctx.paths.clone(), &ctx.team);
    opts.perm_timeout = Duration::from_secs(permission_timeout);
    opts.env = match crate::backend::supervisor_env() {
        Ok(env) => env,
        Err(e) => {
            tell_starter(&mut start_pipe, &format!("{e:#}"));
            return Err(e);
        }
    };
    match agent_team_daemon::run(opts) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            // Said on stderr (the log) and to the CLI that started it, through its pipe: the
            // log may be on the full disk, and its last lines a previous daemon's.
            eprintln!("agent-team: error: {e}");
            tell_starter(&mut start_pipe, &e.to_string());
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// The pipe on which the CLI that started this daemon waits for a reason it could not start
/// (`agent_team_client::ENV_START_FD`), made close-on-exec so no agent inherits it.
fn start_pipe() -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var(agent_team_client::ENV_START_FD)
        .ok()?
        .parse()
        .ok()?;
    // Only a pipe this process holds under that number is taken.
    let meta = std::fs::metadata(format!("/dev/fd/{fd}")).ok()?;
    if !std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) || fd <= 2 {
        return None;
    }
    // SAFETY: the starter left this descriptor open for this process alone (checked above to
    // be an open pipe); nothing else here owns it.
    #[allow(unsafe_code)]
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(file)
}

/// Writes why the daemon cannot start on the starter's pipe (a starter that has gone is fine).
fn tell_starter(pipe: &mut Option<std::fs::File>, reason: &str) {
    use std::io::Write;
    if let Some(p) = pipe.as_mut() {
        let _ = writeln!(p, "{reason}");
    }
}
