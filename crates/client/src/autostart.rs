//! Starting a team's daemon on demand, the way the CLI does before its first request.

use agent_team_backoff::Backoff;
use agent_team_paths::TeamPaths;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The daemon process could not be launched.
    #[error("cannot launch {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The daemon exited before it answered.
    #[error("the daemon exited during start-up ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// The daemon's log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// The daemon exited before it answered and said why through its start pipe.
    #[error("the daemon could not start: {reason} (its log: {log})")]
    Refused {
        /// What the daemon said, e.g. its state could not be opened or the disk is full.
        reason: String,
        /// The daemon's log file.
        log: PathBuf,
    },
    /// The daemon did not answer within the deadline.
    #[error("the daemon did not answer on {socket} within {secs} s (see {log})")]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The deadline.
        secs: u64,
        /// The daemon's log file.
        log: PathBuf,
    },
    /// A directory or file could not be prepared.
    #[error("{0}")]
    Io(String),
}

pub use agent_team_paths::{ENV_START_FD, ENV_STARTER_GUARD_FD};

/// Whether a daemon answers on the team's socket right now.
pub fn daemon_running(tp: &TeamPaths) -> bool {
    std::os::unix::net::UnixStream::connect(&tp.socket).is_ok()
}

/// Makes sure the team's daemon runs, starting `exe daemon --foreground --team T` detached
/// (own session, output to the daemon log) if needed. Returns the new pid when it started one.
pub fn ensure_daemon(
    tp: &TeamPaths,
    exe: &Path,
    extra_env: &[(String, String)],
) -> Result<Option<u32>, StartError> {
    start(tp, exe, extra_env, false, false)
}

/// [`ensure_daemon`] for a starter that follows the team to its end and brings a crashed
/// daemon back itself (`run`): a daemon it starts runs without a guardian while this process
/// lives ([`ENV_STARTER_GUARD_FD`]), and starts one once this process is gone.
pub fn ensure_daemon_guarded_by_me(tp: &TeamPaths, exe: &Path) -> Result<Option<u32>, StartError> {
    start(tp, exe, &[], false, true)
}

/// The writing ends of the pipes of the daemons this process guards
/// ([`ensure_daemon_guarded_by_me`]): held until it exits, when the kernel closes them.
static GUARDING: std::sync::Mutex<Vec<std::os::fd::OwnedFd>> = std::sync::Mutex::new(Vec::new());

/// [`ensure_daemon`], the daemon started with every inherited `AGENT_TEAM_*` variable removed
/// when `scrub` (a starter that is an agent must not hand its identity to the daemon).
pub(crate) fn start(
    tp: &TeamPaths,
    exe: &Path,
    extra_env: &[(String, String)],
    scrub: bool,
    guarded_by_me: bool,
) -> Result<Option<u32>, StartError> {
    if daemon_running(tp) {
        return Ok(None);
    }
    tp.ensure_dirs()
        .map_err(|e| StartError::Io(e.to_string()))?;
    let deadline = Instant::now() + START_DEADLINE;
    // Another command is starting it right now: wait for that one instead of racing it.
    if agent_team_paths::lock_held(&tp.lock) && wait_for_winner(tp, deadline) {
        return Ok(None);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&tp.daemon_log)
        .map_err(|e| StartError::Io(format!("cannot open {}: {e}", tp.daemon_log.display())))?;
    let log_err = log.try_clone().map_err(|e| StartError::Io(e.to_string()))?;
    // The daemon's own reason reaches us through a pipe, not only its log (which may be a
    // previous daemon's, or on a full disk): its writing end is inherited under ENV_START_FD.
    let (reason_rx, reason_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StartError::Io(format!("cannot make a pipe: {e}")))?;
    let tx_fd = std::os::fd::AsRawFd::as_raw_fd(&reason_tx);
    let mut cmd = Command::new(exe);
    cmd.args(["daemon", "--foreground", "--team", &tp.team])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        // `serve`'s token is the operator's over HTTP: the daemon has no use for it.
        .env_remove(agent_team_paths::ENV_API_TOKEN);
    if scrub {
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
                cmd.env_remove(k);
            }
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    // Last: a starter that is itself a daemon's child inherited its starter's number, which
    // the scrub above would otherwise take away from this daemon.
    cmd.env(ENV_START_FD, tx_fd.to_string());
    // The pipe that tells the daemon this process guards it: its reading end to the daemon.
    let guard = if guarded_by_me {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| StartError::Io(format!("cannot make a pipe: {e}")))?;
        cmd.env(
            ENV_STARTER_GUARD_FD,
            std::os::fd::AsRawFd::as_raw_fd(&r).to_string(),
        );
        Some((r, w))
    } else {
        cmd.env_remove(ENV_STARTER_GUARD_FD);
        None
    };
    let guard_fd = guard
        .as_ref()
        .map(|(r, _)| std::os::fd::AsRawFd::as_raw_fd(r));
    // A new session: the daemon must outlive the terminal and the command that started it.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: the pipes' ends named here are open until the spawn returns; only the
            // child's copies lose close-on-exec, so the daemon (and only it) inherits them.
            for fd in std::iter::once(tx_fd).chain(guard_fd) {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )
                .map_err(std::io::Error::from)?;
            }
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|source| StartError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    drop(reason_tx);
    if let Some((r, w)) = guard {
        drop(r);
        GUARDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(w);
    }
    let pid = child.id();
    let mut pauses =
        Backoff::new(Duration::from_millis(1), Duration::from_millis(50)).deadline(deadline);
    // The daemon closes its end of the pipe once it listens (or exits, having written why):
    // until then this waits on the pipe, not on a clock.
    let mut pipe_open = true;
    loop {
        if daemon_running(tp) {
            // The daemon lives on in its own session; a thread reaps it should it exit while
            // this process still runs, so it never lingers as a zombie.
            std::thread::spawn(move || child.wait());
            // Several starters may race: only the one whose daemon took the lock started it.
            let holder = std::fs::read_to_string(&tp.lock)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            return Ok((holder == Some(pid)).then_some(pid));
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lost the race for the lock to another starter: its daemon answers soon.
            if daemon_running(tp)
                || (agent_team_paths::lock_held(&tp.lock) && wait_for_winner(tp, deadline))
            {
                return Ok(None);
            }
            if let Some(reason) = read_reason(reason_rx) {
                return Err(StartError::Refused {
                    reason: with_disk_note(reason, &tp.dir),
                    log: tp.daemon_log.clone(),
                });
            }
            return Err(StartError::Exited {
                status: status.to_string(),
                log: tp.daemon_log.clone(),
                tail: with_disk_note(tail(&tp.daemon_log), &tp.dir),
            });
        }
        if pipe_open {
            pipe_open = !pipe_signalled(&reason_rx, deadline);
            continue;
        }
        match pauses.next() {
            Some(pause) => std::thread::sleep(pause),
            None => {
                return Err(StartError::Timeout {
                    socket: tp.socket.clone(),
                    secs: START_DEADLINE.as_secs(),
                    log: tp.daemon_log.clone(),
                });
            }
        }
    }
}

/// Waits until the daemon's start pipe is readable or closed (it listens, or it is gone), at
/// most until `deadline`; true when it was.
fn pipe_signalled(rx: &std::os::fd::OwnedFd, deadline: Instant) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(rx.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => n > 0,
        // Interrupted: looked at again by the caller's next turn.
        Err(nix::errno::Errno::EINTR) => false,
        // A pipe that cannot be polled: the caller falls back to its pauses.
        Err(_) => true,
    }
}

/// How long a starting daemon has to answer on its socket.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Waits until the daemon that holds the lock answers, or the lock is let go (that daemon
/// failed to start, or exited), or `deadline` passes. True when it answers.
fn wait_for_winner(tp: &TeamPaths, deadline: Instant) -> bool {
    let mut pauses =
        Backoff::new(Duration::from_millis(1), Duration::from_millis(20)).deadline(deadline);
    loop {
        if daemon_running(tp) {
            return true;
        }
        if !agent_team_paths::lock_held(&tp.lock) {
            return daemon_running(tp);
        }
        match pauses.next() {
            Some(pause) => std::thread::sleep(pause),
            None => return false,
        }
    }
}

/// What an exited daemon wrote on its start pipe (at most 64 KiB, without waiting for a
/// process that still holds the pipe), trimmed; none when it wrote nothing.
fn read_reason(rx: std::os::fd::OwnedFd) -> Option<String> {
    use std::io::Read;
    nix::fcntl::fcntl(
        &rx,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .ok()?;
    let mut text = Vec::new();
    // A read that would block ends it like the end of the pipe: what was written is read.
    let _ = std::fs::File::from(rx)
        .take(64 * 1024)
        .read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// The log's tail, with a note when the state's disk is full: the daemon could not have
/// written its reason there.
fn with_disk_note(tail: String, dir: &Path) -> String {
    match agent_team_paths::free_bytes(dir) {
        Some(free) if free < agent_team_paths::LOW_DISK_BYTES => format!(
            "{tail}\nthe disk holding {} is full ({free} bytes free): free some space and retry",
            dir.display()
        ),
        _ => tail,
    }
}
