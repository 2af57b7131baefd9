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

/// Whether process `pid` exists (a zombie counts until reaped).
pub fn pid_alive(pid: u32) -> bool {
    match kill(Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true,
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

/// SIGTERM to the group, up to `grace` for it to empty, then SIGKILL and a confirmation.
/// `reap` is called while waiting so our own zombies do not keep the group alive.
pub fn stop_group(pgid: u32, grace: Duration, mut reap: impl FnMut()) -> Result<(), PaneError> {
    let pg = Pid::from_raw(pgid as i32);
    if !group_alive(pgid) {
        return Ok(());
    }
    let _ = killpg(pg, Signal::SIGTERM);
    // A stopped process cannot act on SIGTERM until it is continued.
    let _ = killpg(pg, Signal::SIGCONT);
    if wait_empty(pgid, grace, &mut reap) {
        return Ok(());
    }
    let _ = killpg(pg, Signal::SIGKILL);
    if wait_empty(pgid, Duration::from_secs(5), &mut reap) {
        return Ok(());
    }
    Err(PaneError::Unkillable { pgid })
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
