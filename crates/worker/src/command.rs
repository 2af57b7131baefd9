//! The one way an agent starts a shell command (task commands and the `bash` tool), so every
//! command is placed where stopping the agent reaches it and dies with whoever started it.

use crate::CommandGroups;
use std::path::Path;
use std::process::Stdio;

/// `sh -c cmd` in `cwd`: no stdin, stdout and stderr piped, no agent secret in its
/// environment, killed when dropped and when the process that started it dies (so a daemon
/// killed with SIGKILL leaves no orphaned task command behind, whatever the backend). An agent
/// inside the daemon gives it a process group of its own (recorded in `groups`, for the daemon
/// to kill); a process-backed agent keeps it in its own group.
pub fn shell(cmd: &str, cwd: &Path, groups: &CommandGroups) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        // The agent's credential is not the command's to use.
        .env_remove(agent_team_pane::env::SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if groups.own_group.is_some() {
        c.process_group(0);
    }
    if let Some(m) = &groups.marker {
        c.env(agent_team_pane::procs::COMMAND_MARKER, m);
    }
    die_with_parent(&mut c);
    c
}

/// Asks the kernel to SIGKILL the command when the thread that started it ends (Linux).
/// Agents start commands from their runtime's own thread, which lives as long as the agent
/// (worker process) or the daemon (in-process agents).
#[cfg(target_os = "linux")]
fn die_with_parent(c: &mut tokio::process::Command) {
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid, _exit).
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The parent may have died before the request took effect.
            if nix::unistd::getppid().as_raw() != parent {
                nix::libc::_exit(137);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_c: &mut tokio::process::Command) {}

/// Keeps a command's process group alive only while it is held: a watchdog process in the
/// command's group reads a pipe whose only writer is this value, and kills the whole group when
/// the pipe closes, that is when this is dropped or when the process holding it dies (even by
/// SIGKILL). So nothing a task command started outlives the daemon that ran it.
#[derive(Debug)]
pub struct GroupGuard {
    _writer: std::os::fd::OwnedFd,
    _watchdog: tokio::process::Child,
}

/// Starts `c` (built by [`shell`]); when the command has a process group of its own, also
/// starts its [`GroupGuard`]. Hold the guard until the command is done.
pub fn spawn(
    c: &mut tokio::process::Command,
    groups: &CommandGroups,
) -> std::io::Result<(tokio::process::Child, Option<GroupGuard>)> {
    let child = c.spawn()?;
    let guard = match (&groups.own_group, child.id()) {
        (Some(_), Some(pgid)) => match guard_group(pgid) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("no watchdog for command group {pgid}: {e}");
                None
            }
        },
        _ => None,
    };
    Ok((child, guard))
}

fn guard_group(pgid: u32) -> std::io::Result<GroupGuard> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut w = tokio::process::Command::new("sh");
    // `read` returns at end of file: the holder let go or died. Then the whole group goes.
    w.arg("-c")
        .arg("read _; kill -KILL 0")
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid as i32)
        .kill_on_drop(false);
    let watchdog = w.spawn()?;
    Ok(GroupGuard {
        _writer: writer,
        _watchdog: watchdog,
    })
}
