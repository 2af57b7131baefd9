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
    serve_here(ctx, permission_timeout).map(ExitCode::from)
}

/// The daemon of a `run` that forked it (`Ctx::connect_guarding`): runs to its end and gives
/// its exit status, as `agent-team daemon --foreground` would exit.
pub(crate) fn forked(ctx: &Ctx) -> u8 {
    let permission_timeout = std::env::var("AGENT_TEAM_PERMISSION_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::cli::PERMISSION_TIMEOUT_SECS);
    match serve_here(ctx, permission_timeout) {
        Ok(code) => code,
        Err(e) => {
            crate::output::say(&format!("agent-team: error: {}", crate::describe(&e)));
            1
        }
    }
}

/// Runs the daemon in this process until it stops: its exit status.
fn serve_here(ctx: &Ctx, permission_timeout: u64) -> Result<u8> {
    // Before any thread of the daemon's starts.
    crate::arena::one();
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
    let start_pipe = std::cell::RefCell::new(start_pipe());
    let mut opts = agent_team_daemon::DaemonOptions::new(ctx.paths.clone(), &ctx.team);
    opts.perm_timeout = Duration::from_secs(permission_timeout);
    opts.env = match crate::backend::supervisor_env(&ctx.paths) {
        Ok(env) => env,
        Err(e) => {
            tell_starter(&mut start_pipe.borrow_mut(), &format!("{e:#}"));
            return Err(e);
        }
    };
    opts.heal = std::env::var_os(agent_team_client::heal::ENV_HEAL).is_some();
    opts.heal_files = std::env::var(agent_team_client::heal::ENV_HEAL_FILES)
        .ok()
        .filter(|_| opts.heal)
        .and_then(|v| agent_team_client::heal::TeamFiles::parse(&v));
    opts.guard_exe = std::env::current_exe().ok();
    // The guardian waits as the small bridge when it is installed beside us.
    opts.guard_waiter = opts
        .guard_exe
        .as_deref()
        .map(agent_team_worker::external::bridge_exe)
        .filter(|b| b.is_file());
    // A starter that follows the team and brings it back itself (`run`) stands for the
    // guardian while it lives.
    opts.starter_guards =
        inherited_pipe(agent_team_client::ENV_STARTER_GUARD_FD).map(std::sync::Arc::new);
    // This process exits once the daemon has run.
    opts.ends_process = true;
    // Listening: the starter is let go by the pipe's end, and the code that only started the
    // daemon leaves its pages.
    let listening = || {
        drop(start_pipe.borrow_mut().take());
        crate::code_pages::release();
    };
    match agent_team_daemon::run_notifying(opts, listening) {
        Ok(()) => Ok(0),
        Err(e) => {
            // Said to the CLI that started it, through its pipe, and on stderr (the log): the
            // log may be on the full disk (a failed write is let go), and its last lines a
            // previous daemon's.
            tell_starter(&mut start_pipe.borrow_mut(), &e.to_string());
            crate::output::say(&format!("agent-team: error: {e}"));
            Ok(e.exit_code())
        }
    }
}

/// `agent-team daemon --guard`: the daemon's guardian. Its stdin is a pipe whose only writer is
/// the daemon; at end of file (the daemon ended, by a crash or not) it brings the daemon back
/// unless the team was stopped on purpose or its files were deleted, then exits (the new daemon has a guardian of its
/// own). A byte on the pipe is the daemon dismissing it (stopped on purpose): it exits at once.
pub fn guard(ctx: &Ctx) -> Result<ExitCode> {
    use agent_team_client::heal::{Healed, Healer};
    use std::io::Read;
    // The daemon that started this guardian (its waiter, when it started one, then became
    // this program, maybe once the daemon was gone).
    let daemon = std::env::var(agent_team_daemon::ENV_GUARDED_PID)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .map(nix::unistd::Pid::from_raw)
        .unwrap_or_else(nix::unistd::getppid);
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => return Ok(ExitCode::SUCCESS),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    // The pipe ends as the daemon's descriptors close, maybe before its socket does (a connect
    // would still be queued there and the daemon taken for alive): wait until it has exited
    // whole, which this process sees as a new parent.
    let exited = std::time::Instant::now() + Duration::from_secs(5);
    while nix::unistd::getppid() == daemon && std::time::Instant::now() < exited {
        std::thread::sleep(Duration::from_millis(2));
    }
    let exe = std::env::current_exe().context("cannot find the agent-team executable")?;
    let env = Healer::launch_env(&ctx.paths, Some(exe));
    let mut healer = Healer::from_lookup(&ctx.team, |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .context("cannot describe the team's daemon")?;
    // The files the daemon ran on: a team whose files were deleted (or made anew by someone
    // else) since is not brought back.
    if let Some(files) = std::env::var(agent_team_client::heal::ENV_GUARDED_FILES)
        .ok()
        .and_then(|v| agent_team_client::heal::TeamFiles::parse(&v))
    {
        healer = healer.with_files(files);
    }
    // A start can fail for a while (the disk is full): try again for a minute, then leave it
    // to the agents' workers and the next command.
    let mut pauses =
        agent_team_backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(5))
            .deadline(std::time::Instant::now() + Duration::from_secs(60));
    loop {
        match healer.heal() {
            Ok(Healed::Running) | Ok(Healed::Stopped) => return Ok(ExitCode::SUCCESS),
            Ok(Healed::Gone) => {
                crate::output::say(&format!(
                    "agent-team: guardian of team {}: the team's files were deleted; not bringing it back",
                    ctx.team
                ));
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => match pauses.next() {
                Some(p) => {
                    crate::output::say(&format!(
                        "agent-team: guardian of team {}: {e}; retrying",
                        ctx.team
                    ));
                    std::thread::sleep(p);
                }
                None => return Err(e).context("cannot bring the daemon back"),
            },
        }
    }
}

/// The pipe on which the CLI that started this daemon waits (`agent_team_client::ENV_START_FD`):
/// closed once the daemon listens, or given the reason it could not start; close-on-exec so
/// no agent inherits it.
fn start_pipe() -> Option<std::fs::File> {
    inherited_pipe(agent_team_client::ENV_START_FD)
}

/// A pipe's end the starter left open for this process under the number in `var`, taken and
/// made close-on-exec so no agent inherits it.
fn inherited_pipe(var: &str) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var(var).ok()?.parse().ok()?;
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
