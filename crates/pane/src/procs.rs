//! Process-group plumbing shared by the backends: signalling a group and confirming it is empty.

use crate::PaneError;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Whether any process of group `pgid` still runs. Zombies do not count: they have exited and
/// only wait for their parent (for a pane, the tmux server) to collect them.
pub fn group_alive(pgid: u32) -> bool {
    match killpg(Pid::from_raw(pgid as i32), None) {
        Ok(()) => match group_members(pgid) {
            Some(members) => members.iter().any(|(_, state)| *state != 'Z'),
            None => true,
        },
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// One line of /proc: pid, state letter, parent pid, process group.
struct ProcEntry {
    pid: u32,
    state: char,
    ppid: u32,
    pgrp: u32,
}

/// Every process in /proc (None without /proc).
fn proc_table() -> Option<Vec<ProcEntry>> {
    let rd = std::fs::read_dir("/proc").ok()?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces): state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u32>().ok());
        let (Some(ppid), Some(pgrp)) = (num(1), num(2)) else {
            continue;
        };
        out.push(ProcEntry {
            pid,
            state: f.first().and_then(|s| s.chars().next()).unwrap_or('?'),
            ppid,
            pgrp,
        });
    }
    Some(out)
}

/// The processes of group `pgid` with their state letter, read from /proc (None without /proc).
pub fn group_members(pgid: u32) -> Option<Vec<(u32, char)>> {
    Some(
        proc_table()?
            .into_iter()
            .filter(|p| p.pgrp == pgid)
            .map(|p| (p.pid, p.state))
            .collect(),
    )
}

/// Every process descended from `pid` (children, their children, ...), read from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let table = proc_table().unwrap_or_default();
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(parent) = todo.pop() {
        for p in table.iter().filter(|p| p.ppid == parent) {
            out.push(p.pid);
            todo.push(p.pid);
        }
    }
    out
}

/// The parent of process `pid`, read from /proc (None when it is gone or there is no /proc).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` exists (a zombie counts until reaped).
pub fn pid_alive(pid: u32) -> bool {
    match kill(Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Waits until process `pid` has exited (a zombie counts), at most `timeout`; true when it
/// has. Woken by the kernel through a pidfd, so no poll of `/proc`; without pidfds (Linux
/// before 5.3) it looks every 5 ms.
pub fn wait_exit(pid: u32, timeout: std::time::Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid as RPid, PidfdFlags, pidfd_open};
    let deadline = std::time::Instant::now() + timeout;
    let gone = || !pid_alive(pid) || is_zombie(pid);
    let fd = i32::try_from(pid)
        .ok()
        .and_then(RPid::from_raw)
        .and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
    let Some(fd) = fd else {
        // No such process any more, or no pidfds here.
        while !gone() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        return true;
    };
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return gone(),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return gone(),
        }
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22): with
/// the pid, it names one process for good, so a pid the system gave to another process since
/// is never taken for it. `None` when the process is gone or there is no /proc.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is the process that started at `start` (see [`start_time`]) and still runs
/// (a zombie does not count).
pub fn same_process(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start) && !is_zombie(pid)
}

/// Whether `pid` is a zombie (exited, not yet reaped by its parent).
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// How `pid` ended, if it is a zombie (exited, not yet reaped by its parent): the wait status
/// the kernel keeps for its parent (`/proc/PID/stat` field 52, Linux 3.5+). Lets a watcher
/// that is not the parent see an exit the parent has not collected yet.
pub fn zombie_exit(pid: u32) -> Option<crate::ExitInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    // Fields are numbered from 1; `rest` starts at field 3 (the state).
    let status: i32 = fields.get(52 - 3)?.parse().ok()?;
    Some(wait_status(status))
}

/// A raw wait status as an [`crate::ExitInfo`].
fn wait_status(status: i32) -> crate::ExitInfo {
    if status & 0x7f == 0 {
        crate::ExitInfo {
            code: Some((status >> 8) & 0xff),
            signal: None,
        }
    } else {
        crate::ExitInfo {
            code: None,
            signal: Some(status & 0x7f),
        }
    }
}

/// Set (to `1`) in the environment of a sandbox whose program is to get a stop's SIGTERM
/// before its group does (an agent CLI, which saves its session then): see [`stop_group`].
/// Read from the sandbox's first process, which only the one starting the sandbox sets.
pub const STOP_INSIDE_FIRST: &str = "AGENT_TEAM_STOP_INSIDE_FIRST";

/// Stops group `pgid`: SIGTERM to the group, up to `grace` for it and its sandboxes
/// ([`sandboxes_of`]) to end, then SIGKILL to both and a confirmation. A sandbox marked
/// [`STOP_INSIDE_FIRST`] (an agent CLI's) gets it first: SIGTERM to what runs inside it and up
/// to `grace` for it to save and end, before its group is signalled; bubblewrap forwards no
/// signal and, killed with the group, takes its sandbox down with SIGKILL
/// (`--die-with-parent`), so a CLI signalled with its group lost what it had not saved. A
/// task command's sandbox is not marked: its worker, still running, would take the command's
/// end for a failure of the task. `reap` is called while waiting so our own zombies do not
/// keep the group alive.
pub fn stop_group(pgid: u32, grace: Duration, mut reap: impl FnMut()) -> Result<(), PaneError> {
    let pg = Pid::from_raw(pgid as i32);
    if !group_alive(pgid) {
        return Ok(());
    }
    let boxes = sandboxes_of(pgid);
    let first: Vec<(u32, u64)> = boxes
        .iter()
        .copied()
        .filter(|(init, start)| same_process(*init, *start) && stops_inside_first(*init))
        .collect();
    if !first.is_empty() {
        for (init, _) in &first {
            for p in descendants(*init) {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGTERM);
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGCONT);
            }
        }
        sandboxes_gone(&first, Instant::now() + grace);
    }
    let _ = killpg(pg, Signal::SIGTERM);
    // A stopped process cannot act on SIGTERM until it is continued.
    let _ = killpg(pg, Signal::SIGCONT);
    let deadline = Instant::now() + grace;
    if wait_empty(pgid, grace, &mut reap) && sandboxes_gone(&boxes, deadline) {
        return Ok(());
    }
    let _ = killpg(pg, Signal::SIGKILL);
    for (pid, start) in &boxes {
        if same_process(*pid, *start) {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
    let within = Duration::from_secs(5);
    if wait_empty(pgid, within, &mut reap) && sandboxes_gone(&boxes, Instant::now() + within) {
        return Ok(());
    }
    Err(PaneError::Unkillable { pgid })
}

/// The sandboxes group `pgid` started: each child of a member that runs in a pid namespace of
/// its own (bubblewrap's `--unshare-pid`), with its start time, whether it stayed in the group
/// (in a pane) or left it (`--new-session`). It is the first process of its namespace, so when
/// it has ended, so has everything in the sandbox. Only a member's own children count: a
/// process of our namespace that left the group (a daemon a worker's healer brought back) is
/// not the group's to stop, nor is anything it started.
pub fn sandboxes_of(pgid: u32) -> Vec<(u32, u64)> {
    let Some(table) = proc_table() else {
        return Vec::new();
    };
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    // Only members of this process's namespace start sandboxes that count: a namespace a
    // sandboxed program made inside its own (an agent CLI's member in a pane) ends with it,
    // and what it sets in its environment must not decide how its group is stopped.
    let here = ns(std::process::id());
    let mut out = Vec::new();
    for member in table.iter().filter(|p| p.pgrp == pgid) {
        let Some(own) = ns(member.pid) else { continue };
        if here.as_ref().is_some_and(|h| *h != own) {
            continue;
        }
        for child in table.iter().filter(|c| c.ppid == member.pid) {
            if ns(child.pid).is_some_and(|theirs| theirs != own)
                && let Some(start) = start_time(child.pid)
            {
                out.push((child.pid, start));
            }
        }
    }
    out
}

/// Whether the sandbox whose first process is `init` is marked [`STOP_INSIDE_FIRST`].
fn stops_inside_first(init: u32) -> bool {
    let want = format!("{STOP_INSIDE_FIRST}=1");
    std::fs::read(format!("/proc/{init}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
}

/// Whether every one of `boxes` has ended (a zombie counts) by `deadline`.
fn sandboxes_gone(boxes: &[(u32, u64)], deadline: Instant) -> bool {
    boxes.iter().all(|(pid, start)| {
        !same_process(*pid, *start)
            || wait_exit(*pid, deadline.saturating_duration_since(Instant::now()))
    })
}

fn wait_empty(pgid: u32, within: Duration, reap: &mut impl FnMut()) -> bool {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_micros(200);
    loop {
        reap();
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The environment variable that marks a task command started by an agent inside a daemon,
/// with [`marker_token`] of the daemon's socket path as its value; every process the command
/// starts inherits it.
pub const COMMAND_MARKER: &str = "AGENT_TEAM_COMMAND_OF";

/// The value of [`COMMAND_MARKER`] for a daemon known by `value` (its socket path): a hash, so
/// a task command's environment does not tell it where the team's control plane lives.
pub fn marker_token(value: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and processes, which the reaping daemon needs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Kills the process groups of every process still marked with `COMMAND_MARKER=value`: the
/// task commands a crashed daemon's in-process agents left behind. Returns how many groups
/// were killed. Only processes of this user can be read, which are the only ones it could
/// have started.
pub fn reap_marked(value: &str) -> usize {
    let needle = format!("{COMMAND_MARKER}={}", marker_token(value));
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut groups = std::collections::BTreeSet::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
            && let Ok(pgid) = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
        {
            groups.insert(pgid.as_raw());
        }
    }
    let mine = nix::unistd::getpgrp().as_raw();
    let mut n = 0;
    for g in groups {
        // Never our own group (a command that did not get a group of its own).
        if g == mine || g <= 1 {
            continue;
        }
        if nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(g),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Kills process group `pgid` at once (SIGKILL): a command that ran past its time, with
/// everything it started.
pub fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Kills `pid` and its descendants at once (SIGKILL), for a command that shares its group.
pub fn kill_tree(pid: u32) {
    for p in std::iter::once(pid).chain(descendants(pid)) {
        if let Ok(p) = i32::try_from(p) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

/// How a command run by [`run_bounded`] ended.
#[derive(Debug, Default)]
pub struct Bounded {
    /// Its exit status (`None` when it could not be waited for).
    pub status: Option<std::process::ExitStatus>,
    /// It ran past its time and its group was killed.
    pub timed_out: bool,
    /// Its standard output (when asked to keep it, [`BoundedIo::stdout`]).
    pub stdout: Vec<u8>,
    /// The last bytes of its stderr (when asked to keep them).
    pub stderr: Vec<u8>,
}

/// What [`run_bounded_io`] gives a bounded command and keeps of what it prints.
#[derive(Default)]
pub struct BoundedIo {
    /// Its standard input, copied in on a thread of its own (none: no stdin).
    pub input: Option<Box<dyn std::io::Read + Send>>,
    /// Keep its whole standard output (else it is discarded).
    pub stdout: bool,
    /// Keep that many of the last bytes of its stderr (0: none).
    pub keep_stderr: usize,
}

/// The one runner for the commands the team runs with a deadline outside an agent (the team's
/// hooks, `[notify]`): `cmd` in a process group of its own with `input` on stdin (none: no
/// stdin) and stdout discarded, watched so its group dies with this process even by SIGKILL
/// ([`watch_group`]), killed whole when it runs past `timeout`; `keep_stderr` keeps that many
/// of the last bytes of its stderr (0: none).
pub fn run_bounded(
    cmd: std::process::Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
    keep_stderr: usize,
) -> std::io::Result<Bounded> {
    run_bounded_io(
        cmd,
        BoundedIo {
            input: input
                .map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn std::io::Read + Send>),
            stdout: false,
            keep_stderr,
        },
        timeout,
    )
}

/// [`run_bounded`] with any reader as its stdin and its stdout kept when asked (the remote
/// backend's ssh calls): whatever the command leaves behind in its group (an ssh's
/// `ProxyCommand`, which holds its stderr) is killed with it, so nothing it started can hold
/// the caller past the deadline or outlive the call.
pub fn run_bounded_io(
    mut cmd: std::process::Command,
    io: BoundedIo,
    timeout: Duration,
) -> std::io::Result<Bounded> {
    use std::os::unix::process::CommandExt as _;
    use std::process::Stdio;
    let BoundedIo {
        input,
        stdout: keep_stdout,
        keep_stderr,
    } = io;
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(if keep_stdout {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stderr(if keep_stderr > 0 {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    // Without a watchdog it still runs and is killed at its deadline; only a SIGKILL of this
    // process would leave it. Dropped at the end, it kills what the command left in its group.
    let _watchdog = watch_group(pid).ok();
    if let (Some(mut stdin), Some(mut input)) = (child.stdin.take(), input) {
        // A command that does not read its stdin must not hold the caller past the timeout:
        // the writer has a thread of its own and gets EPIPE once the command is gone.
        let _ = std::thread::Builder::new()
            .name("bounded-stdin".into())
            .spawn(move || {
                let _ = std::io::copy(&mut input, &mut stdin);
            });
    }
    let out_rx = child.stdout.take().map(read_all);
    let rx = child.stderr.take().map(|e| read_tail(e, keep_stderr));
    let mut out = Bounded::default();
    (out.status, out.timed_out) = wait_or_kill(&mut child, pid, timeout)?;
    // A child it left behind may hold a pipe open: what came so far is enough.
    if keep_stdout {
        out.stdout = out_rx
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .unwrap_or_default();
    }
    if keep_stderr > 0 {
        let mut kept = rx
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .unwrap_or_default();
        if kept.len() > keep_stderr {
            kept.drain(..kept.len() - keep_stderr);
        }
        out.stderr = kept;
    }
    Ok(out)
}

/// Reads all of a command's stdout on a thread of its own; the bytes come on the receiver.
fn read_all(mut stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read as _;
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("bounded-stdout".into())
        .spawn(move || {
            let mut all = Vec::new();
            let _ = stdout.read_to_end(&mut all);
            let _ = tx.send(all);
        });
    rx
}

/// Reads a command's stderr on a thread of its own, keeping about its last `keep` bytes (at
/// most twice that); they come on the receiver.
fn read_tail(
    mut stderr: std::process::ChildStderr,
    keep: usize,
) -> std::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read as _;
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("bounded-stderr".into())
        .spawn(move || {
            let mut kept: Vec<u8> = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                }
            }
            let _ = tx.send(kept);
        });
    rx
}

/// Waits for the child until `timeout`, then kills its group `pid`: its exit status and
/// whether it timed out.
fn wait_or_kill(
    child: &mut std::process::Child,
    pid: u32,
    timeout: Duration,
) -> std::io::Result<(Option<std::process::ExitStatus>, bool)> {
    let now = Instant::now();
    let deadline = now
        .checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(24 * 60 * 60)))
        .unwrap_or(now);
    loop {
        match child.try_wait()? {
            Some(status) => return Ok((Some(status), false)),
            None if Instant::now() >= deadline => {
                kill_group(pid);
                return Ok((child.wait().ok(), true));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Kills a whole process group when dropped or when the process holding it dies, even by
/// SIGKILL: a watchdog process inside the group reads a pipe whose only writer is this value,
/// and at end of file kills its group. So nothing a task command or a hook started outlives
/// the worker or the daemon that ran it (a parent-death signal reaches only the direct child).
#[derive(Debug)]
pub struct GroupWatchdog {
    writer: Option<std::os::fd::OwnedFd>,
    watchdog: Option<std::process::Child>,
}

/// Starts the [`GroupWatchdog`] of process group `pgid` (a group that exists: its leader runs).
pub fn watch_group(pgid: u32) -> std::io::Result<GroupWatchdog> {
    use std::os::unix::process::CommandExt as _;
    let pgid = i32::try_from(pgid).map_err(|_| std::io::Error::other("pgid out of range"))?;
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // `read` returns at end of file: the holder let go or died. Then the whole group goes.
    let watchdog = std::process::Command::new("sh")
        .arg("-c")
        .arg("read _; kill -KILL 0")
        .stdin(std::process::Stdio::from(reader))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(pgid)
        .spawn()?;
    Ok(GroupWatchdog {
        writer: Some(writer),
        watchdog: Some(watchdog),
    })
}

impl Drop for GroupWatchdog {
    fn drop(&mut self) {
        // Closing the pipe ends the watchdog (and what is left of its group); it is reaped here
        // or, if it has not ended yet, by a short-lived thread, so it leaves no zombie.
        self.writer.take();
        if let Some(mut w) = self.watchdog.take()
            && !matches!(w.try_wait(), Ok(Some(_)))
        {
            // Without a thread the zombie stays until this process ends: nothing else is lost.
            let _ = std::thread::Builder::new()
                .name("watchdog-reap".into())
                .spawn(move || {
                    let _ = w.wait();
                });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod watchdog_tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    #[test]
    fn dropping_the_watchdog_kills_the_whole_group() {
        // A shell that starts a grandchild and waits: the grandchild is in the same group.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 60 & wait")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let dog = watch_group(pgid).unwrap();
        assert!(group_alive(pgid));
        drop(dog);
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!group_alive(pgid), "the sleep outlived the watchdog");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod sandbox_stop_tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    /// bubblewrap, if it can make a pid namespace here.
    fn bwrap() -> Option<&'static str> {
        let ok = std::process::Command::new("bwrap")
            .args(["--unshare-pid", "--ro-bind", "/", "/", "--", "true"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some("bwrap")
    }

    /// A sandbox that outlives its bubblewrap (no `--die-with-parent`) in a session of its
    /// own: without waiting for it, the stop returned while it still ran. And a process of
    /// our namespace the group started into a session of its own (as a healer starts a
    /// daemon) is left alone.
    #[test]
    fn a_stop_ends_the_groups_sandboxes_and_nothing_else_it_started() {
        let Some(bwrap) = bwrap() else {
            eprintln!("skipped: bubblewrap cannot make a pid namespace here");
            return;
        };
        let mut sh = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "setsid sleep 60 & echo $! ; exec {bwrap} --unshare-pid --new-session \
                 --ro-bind / / --dev /dev --proc /proc -- sleep 60"
            ))
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(sh.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let outside: u32 = line.trim().parse().unwrap();
        let pgid = sh.id();
        /// Kills what the test started (each known by its start time), however it ends.
        struct Cleanup(Vec<(u32, u64)>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                for (pid, start) in &self.0 {
                    if same_process(*pid, *start) {
                        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                    }
                }
            }
        }
        let mut cleanup = Cleanup(vec![(outside, start_time(outside).unwrap())]);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The sandbox, and its program started inside it.
        let (boxes, inner) = loop {
            let b = sandboxes_of(pgid);
            let inner = b
                .first()
                .map(|(init, _)| descendants(*init))
                .unwrap_or_default();
            if !inner.is_empty() {
                break (b, inner);
            }
            assert!(Instant::now() < deadline, "the sandbox never started");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        cleanup.0.push(boxes[0]);
        stop_group(pgid, Duration::from_millis(200), || {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pgid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        })
        .unwrap();
        let _ = sh.wait();
        for pid in std::iter::once(boxes[0].0).chain(inner) {
            assert!(
                !pid_alive(pid) || is_zombie(pid),
                "{pid} of the sandbox outlived the stop"
            );
        }
        assert!(
            pid_alive(outside) && !is_zombie(outside),
            "the stop killed a process of ours outside the group"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod graceful_stop_tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    /// A sandboxed program marked [`STOP_INSIDE_FIRST`] (as an agent CLI runs: bubblewrap with
    /// `--die-with-parent`, in its own session headless or in the group in a pane) that takes
    /// a moment to save on SIGTERM has saved when the stop returns. Signalled with its group,
    /// bubblewrap died at once and took it down with SIGKILL before it saved.
    #[test]
    fn a_sandboxed_program_gets_sigterm_first_and_saves_before_the_stop_returns() {
        let ok = std::process::Command::new("bwrap")
            .args(["--unshare-pid", "--ro-bind", "/", "/", "--", "true"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: bubblewrap cannot make a pid namespace here");
            return;
        }
        for session in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (ready, saved) = (dir.path().join("ready"), dir.path().join("saved"));
            let script = format!(
                "trap 'sleep 0.3; echo saved > {saved}; exit 0' TERM; echo > {ready}; \
                 while :; do sleep 1 & wait $!; done",
                saved = saved.display(),
                ready = ready.display()
            );
            let mut args = vec!["--die-with-parent", "--unshare-pid"];
            if session {
                args.push("--new-session");
            }
            args.extend(["--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--"]);
            let mut child = std::process::Command::new("bwrap")
                .args(&args)
                .args(["sh", "-c", &script])
                .env(STOP_INSIDE_FIRST, "1")
                .process_group(0)
                .spawn()
                .unwrap();
            let pgid = child.id();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ready.exists() {
                assert!(
                    Instant::now() < deadline,
                    "the sandboxed program never started"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let result = stop_group(pgid, Duration::from_secs(5), || {
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(pgid as i32),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            });
            let _ = child.kill();
            let _ = child.wait();
            result.unwrap();
            assert_eq!(
                std::fs::read_to_string(&saved).unwrap_or_default(),
                "saved\n",
                "killed before it saved (own session: {session})"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod zombie_tests {
    use super::*;

    /// A child left unreaped: its exit is read from /proc, as the parent would get it.
    fn unreaped(script: &str) -> (std::process::Child, Option<crate::ExitInfo>) {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !is_zombie(pid) {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(Duration::from_millis(2));
        }
        (child, zombie_exit(pid))
    }

    #[test]
    fn a_zombies_exit_code_or_signal_is_read_without_reaping_it() {
        let (mut c, exit) = unreaped("exit 3");
        assert_eq!(
            exit,
            Some(crate::ExitInfo {
                code: Some(3),
                signal: None
            })
        );
        assert_eq!(c.wait().unwrap().code(), Some(3));
        let (mut c, exit) = unreaped("kill -TERM $$");
        assert_eq!(
            exit,
            Some(crate::ExitInfo {
                code: None,
                signal: Some(15)
            })
        );
        c.wait().unwrap();
        // A live process is no zombie.
        assert_eq!(zombie_exit(std::process::id()), None);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod bounded_tests {
    use super::*;

    fn sh(script: &str) -> std::process::Command {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn an_exit_wait_ends_at_the_exit_and_times_out_while_it_runs() {
        let mut child = sh("read _")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(!wait_exit(pid, std::time::Duration::from_millis(50)));
        // Its stdin closed, it exits (a zombie until reaped: that counts).
        drop(child.stdin.take());
        assert!(wait_exit(pid, std::time::Duration::from_secs(30)));
        child.wait().unwrap();
        assert!(wait_exit(pid, std::time::Duration::ZERO));
    }

    #[test]
    fn a_bounded_command_gets_its_input_and_its_stderr_tail_is_kept() {
        let done = run_bounded(
            sh("read line; echo \"got $line\" >&2; exit 3"),
            Some(b"hello\n".to_vec()),
            Duration::from_secs(30),
            64,
        )
        .unwrap();
        assert_eq!(done.status.and_then(|s| s.code()), Some(3));
        assert!(!done.timed_out);
        assert_eq!(String::from_utf8_lossy(&done.stderr), "got hello\n");
        // Only the last bytes are kept.
        let done = run_bounded(
            sh("i=0; while [ $i -lt 100 ]; do echo line-$i >&2; i=$((i+1)); done"),
            None,
            Duration::from_secs(30),
            8,
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&done.stderr), "line-99\n");
    }

    #[test]
    fn a_bounded_command_past_its_time_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let done = run_bounded(
            sh(&format!("sleep 60 & echo $! > {}; wait", pidfile.display())),
            None,
            Duration::from_millis(300),
            0,
        )
        .unwrap();
        assert!(done.timed_out);
        let child: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(child) && !is_zombie(child) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !pid_alive(child) || is_zombie(child),
            "its sleep outlived it"
        );
    }
}
