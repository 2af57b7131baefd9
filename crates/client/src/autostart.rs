//! Starting a team's daemon on demand, the way the CLI does before its first request.

use agent_team_backoff::Backoff;
use agent_team_paths::TeamPaths;
use std::os::fd::FromRawFd;
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
    start(tp, exe, extra_env, false, false, None)
}

/// [`ensure_daemon`] for a starter that follows the team to its end and brings a crashed
/// daemon back itself (`run`): a daemon it starts runs without a guardian while this process
/// lives ([`ENV_STARTER_GUARD_FD`]), and starts one once this process is gone.
///
/// With `daemon`, this program's own daemon (what `exe daemon --foreground` runs, returning its
/// exit status), the daemon is this process forked rather than `exe` started anew, when this
/// process has one thread (else it is started anew): it shares this process's relocated
/// data and libraries' pages instead of loading and relocating its own, and starts a few
/// milliseconds sooner. Its command line is rewritten to the daemon's where it fits.
pub fn ensure_daemon_guarded_by_me(
    tp: &TeamPaths,
    exe: &Path,
    daemon: Option<&dyn Fn() -> u8>,
) -> Result<Option<u32>, StartError> {
    start(tp, exe, &[], false, true, daemon)
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
    daemon: Option<&dyn Fn() -> u8>,
) -> Result<Option<u32>, StartError> {
    if daemon_running(tp) {
        return Ok(None);
    }
    ready_state_dir(tp, scrub)?;
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
    let mut env = daemon_env(extra_env, scrub, tx_fd);
    // The pipe that tells the daemon this process guards it: its reading end to the daemon.
    let guard = if guarded_by_me {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| StartError::Io(format!("cannot make a pipe: {e}")))?;
        env.push((
            ENV_STARTER_GUARD_FD.to_string(),
            Some(std::os::fd::AsRawFd::as_raw_fd(&r).to_string()),
        ));
        Some((r, w))
    } else {
        env.push((ENV_STARTER_GUARD_FD.to_string(), None));
        None
    };
    let guard_fd = guard
        .as_ref()
        .map(|(r, _)| std::os::fd::AsRawFd::as_raw_fd(r));
    // An instrumented build (`cargo xtask order`) starts the daemon anew: a forked one would
    // write its profile into this process's file.
    let child = match daemon.filter(|_| one_thread() && !cfg!(agent_team_instrumented)) {
        Some(daemon) => {
            let keep: Vec<i32> = std::iter::once(tx_fd).chain(guard_fd).collect();
            Started::Forked(fork_daemon(tp, daemon, &env, (log, log_err), &keep)?)
        }
        None => Started::Child(spawn_daemon(
            tp,
            exe,
            &env,
            (log, log_err),
            tx_fd,
            guard_fd,
        )?),
    };
    drop(reason_tx);
    if let Some((r, w)) = guard {
        drop(r);
        GUARDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(w);
    }
    wait_until_listening(tp, child, reason_rx, deadline)
}

/// Makes the state dir a daemon start needs; a healer's start (`scrub`) only checks it is there.
fn ready_state_dir(tp: &TeamPaths, scrub: bool) -> Result<(), StartError> {
    if scrub {
        // A healer's start (the only one that scrubs): it brings a team back, it never makes
        // one, so a state dir deleted meanwhile is not made again.
        if !tp.dir.is_dir() {
            return Err(StartError::Io(format!(
                "the state dir {} is gone",
                tp.dir.display()
            )));
        }
    } else {
        tp.ensure_dirs()
            .map_err(|e| StartError::Io(e.to_string()))?;
    }
    Ok(())
}

/// The daemon's environment changes: this process's, less what is not the daemon's (all
/// `AGENT_TEAM_*` when `scrub`), plus `extra_env` and the reason pipe's number `tx_fd`.
fn daemon_env(
    extra_env: &[(String, String)],
    scrub: bool,
    tx_fd: i32,
) -> Vec<(String, Option<String>)> {
    // `serve`'s token is the operator's over HTTP: the daemon has no use for it.
    let mut env: Vec<(String, Option<String>)> =
        ["TMUX", "TMUX_PANE", agent_team_paths::ENV_API_TOKEN]
            .iter()
            .map(|k| (k.to_string(), None))
            .collect();
    if scrub {
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str().filter(|k| k.starts_with("AGENT_TEAM_")) {
                env.push((k.to_string(), None));
            }
        }
    }
    for (k, v) in extra_env {
        env.push((k.clone(), Some(v.clone())));
    }
    // Last: a starter that is itself a daemon's child inherited its starter's number, which
    // the scrub above would otherwise take away from this daemon.
    env.push((ENV_START_FD.to_string(), Some(tx_fd.to_string())));
    env
}

/// Waits for the started daemon to listen (its pid if it took the lock, `None` if another
/// starter's did), or says why it exited or did not answer in time.
fn wait_until_listening(
    tp: &TeamPaths,
    mut child: Started,
    reason_rx: std::os::fd::OwnedFd,
    deadline: Instant,
) -> Result<Option<u32>, StartError> {
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
        if let Some(status) = child.try_wait() {
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

/// The daemon's process as its starter knows it: a program it started, or itself forked.
enum Started {
    Child(std::process::Child),
    Forked(nix::unistd::Pid),
}

impl Started {
    fn id(&self) -> u32 {
        match self {
            Started::Child(c) => c.id(),
            Started::Forked(p) => p.as_raw().unsigned_abs(),
        }
    }

    /// How it exited, when it has.
    fn try_wait(&mut self) -> Option<String> {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        match self {
            Started::Child(c) => c.try_wait().ok().flatten().map(|s| s.to_string()),
            Started::Forked(p) => match waitpid(*p, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => None,
                Ok(s) => Some(exit_text(s)),
            },
        }
    }

    /// Waits for its exit (reaps it).
    fn wait(self) {
        match self {
            Started::Child(mut c) => {
                let _ = c.wait();
            }
            Started::Forked(p) => {
                let _ = nix::sys::wait::waitpid(p, None);
            }
        }
    }
}

/// A forked daemon's end in the words a started one's gets (`ExitStatus`'s: "exit status: 1",
/// "signal: 9 (SIGKILL)").
fn exit_text(status: nix::sys::wait::WaitStatus) -> String {
    use nix::sys::wait::WaitStatus;
    use std::os::unix::process::ExitStatusExt;
    let raw = match status {
        WaitStatus::Exited(_, code) => (code & 0xff) << 8,
        WaitStatus::Signaled(_, sig, core) => sig as i32 | if core { 0x80 } else { 0 },
        other => return format!("{other:?}"),
    };
    std::process::ExitStatus::from_raw(raw).to_string()
}

/// Starts `exe daemon --foreground --team T` in a new session, its output to the log, with the
/// environment `env` gives (a variable without a value is removed) and the pipes' ends
/// `inherit` (close-on-exec here) open in it.
fn spawn_daemon(
    tp: &TeamPaths,
    exe: &Path,
    env: &[(String, Option<String>)],
    (log, log_err): (std::fs::File, std::fs::File),
    tx_fd: i32,
    guard_fd: Option<i32>,
) -> Result<std::process::Child, StartError> {
    let mut cmd = Command::new(exe);
    cmd.args(["daemon", "--foreground", "--team", &tp.team])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
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
    cmd.spawn().map_err(|source| StartError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })
}

/// Whether this process runs one thread (`/proc/self/task`): only then is a forked copy of it
/// whole (no lock held by a thread the copy lacks).
fn one_thread() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Forks this (one-threaded) process into the team's daemon: the child leaves the session, takes
/// the log as its output, keeps only the descriptors `keep` (beside 0, 1 and 2), takes the
/// environment `env` gives, and runs `daemon` to its exit. Returns the child's pid.
fn fork_daemon(
    tp: &TeamPaths,
    daemon: &dyn Fn() -> u8,
    env: &[(String, Option<String>)],
    (log, log_err): (std::fs::File, std::fs::File),
    keep: &[i32],
) -> Result<nix::unistd::Pid, StartError> {
    use std::io::Write;
    // What this process wrote and has not flushed would be written twice.
    let _ = std::io::stdout().flush();
    let null = std::fs::File::open("/dev/null")
        .map_err(|e| StartError::Io(format!("cannot open /dev/null: {e}")))?;
    // SAFETY: this process has one thread (checked by the caller), so the child is a whole copy
    // of it and may run any code; it never returns into the caller.
    #[allow(unsafe_code)]
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(StartError::Io(format!("cannot fork the daemon: {e}"))),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child),
        Ok(nix::unistd::ForkResult::Child) => {
            let ready = nix::unistd::setsid().is_ok()
                && nix::unistd::dup2_stdin(&null).is_ok()
                && nix::unistd::dup2_stdout(&log).is_ok()
                && nix::unistd::dup2_stderr(&log_err).is_ok();
            drop((null, log, log_err));
            if !ready {
                std::process::exit(1);
            }
            close_all_but(keep);
            for (k, v) in env {
                // SAFETY: the child has one thread (see above).
                #[allow(unsafe_code)]
                unsafe {
                    match v {
                        Some(v) => std::env::set_var(k, v),
                        None => std::env::remove_var(k),
                    }
                }
            }
            retitle(&["agent-team", "daemon", "--foreground", "--team", &tp.team]);
            std::process::exit(i32::from(daemon()))
        }
    }
}

/// Closes every descriptor of this process above 2 but those in `keep`: a forked daemon must
/// not hold its starter's (the guard pipe's writing end above all: its end of file is the
/// starter's end).
fn close_all_but(keep: &[i32]) {
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: nothing in this freshly forked child uses these descriptors (the directory's
        // own, already closed, fails harmlessly).
        #[allow(unsafe_code)]
        let _ = nix::unistd::close(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    }
}

/// Rewrites this process's command line (`/proc/self/cmdline`, what `ps` shows) to `words`, as
/// much of it as fits in the space the kernel gave the original (whole words only; the rest
/// of that space zeroed), so that a forked daemon reads as one.
fn retitle(words: &[&str]) {
    let Some((start, end)) = arg_area() else {
        return;
    };
    let Some(len) = end.checked_sub(start).filter(|l| *l > 0) else {
        return;
    };
    // Under a tool that runs the program itself (valgrind), the kernel's area is the tool's
    // own arguments, which it reads again to start children: only an area that holds this
    // program's `argv[0]` is rewritten.
    if !holds(start, end, argv0_address()) {
        return;
    }
    let mut title = Vec::with_capacity(len);
    for w in words {
        if title.len() + w.len() + 1 > len {
            break;
        }
        title.extend_from_slice(w.as_bytes());
        title.push(0);
    }
    if title.is_empty() {
        return;
    }
    title.resize(len, 0);
    // SAFETY: [arg_start, arg_end) is this process's own argument area (on its stack, writable),
    // as the kernel reports it; nothing in this child reads the old arguments any more.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, len);
    }
}

/// The process's argument area as the kernel reports it: fields 48 and 49 of
/// `/proc/self/stat` (arg_start, arg_end).
fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Counted after the command's name in parentheses (which may hold spaces).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(45)?.parse().ok()?, fields.get(46)?.parse().ok()?))
}

/// Whether the argument area `[start, end)` holds the address `argv0`.
fn holds(start: usize, end: usize, argv0: Option<usize>) -> bool {
    argv0.is_some_and(|p| (start..end).contains(&p))
}

/// Where this program's `argv[0]` lies, as the C library kept it at start-up
/// (`program_invocation_name`).
#[cfg(target_os = "linux")]
fn argv0_address() -> Option<usize> {
    #[allow(unsafe_code)]
    unsafe extern "C" {
        static program_invocation_name: *const std::ffi::c_char;
    }
    // SAFETY: glibc and musl set this pointer once before `main` and never change it; this
    // reads the pointer, not what it points to.
    #[allow(unsafe_code)]
    let p = unsafe { program_invocation_name };
    (!p.is_null()).then_some(p as usize)
}

/// No `argv[0]` to find outside Linux (where there is no `/proc/self/stat` to rewrite by).
#[cfg(not(target_os = "linux"))]
fn argv0_address() -> Option<usize> {
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_area_holding_argv0_is_ours() {
        assert!(holds(100, 200, Some(100)));
        assert!(holds(100, 200, Some(199)));
        assert!(!holds(100, 200, Some(200)));
        assert!(!holds(100, 200, Some(99)));
        assert!(!holds(100, 200, None));
    }

    #[test]
    fn a_forked_daemons_end_reads_as_a_started_ones() {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        let pid = nix::unistd::Pid::from_raw(42);
        assert_eq!(exit_text(WaitStatus::Exited(pid, 1)), "exit status: 1");
        assert_eq!(
            exit_text(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            "signal: 9 (SIGKILL)"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_started_by_the_kernel_holds_its_argv0_in_its_argument_area() {
        // The test binary was started by exec like any program: the guard lets its area be
        // rewritten (under valgrind it would not).
        let (start, end) = arg_area().expect("/proc/self/stat names an argument area");
        assert!(start < end);
        assert!(holds(start, end, argv0_address()));
    }
}
