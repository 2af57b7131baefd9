//! The `bash` tool: a shell command in the workspace, placed where stopping the agent reaches
//! it, with a timeout and its output capped.

use super::{ToolCtx, ToolOutcome};
use agent_team_tools::Bash;
use std::path::Path;
use std::time::Duration;

pub(super) async fn run(ctx: &ToolCtx, a: &Bash) -> ToolOutcome {
    let secs = a.timeout_secs.unwrap_or(60).clamp(1, 600);
    bash(
        &ctx.root,
        &a.command,
        Duration::from_secs(secs),
        &ctx.groups,
    )
    .await
}

/// Runs a command with a timeout; output (stdout then stderr) capped to its last 16 KiB.
///
/// An agent that is a process of its own keeps the command in its process group, so stopping
/// the agent (the daemon kills that group) stops the command and anything it left running; on a
/// timeout the command's process tree is killed. An agent inside the daemon gives the command a
/// group of its own, recorded in `groups` for the daemon to kill.
async fn bash(
    root: &Path,
    cmd: &str,
    timeout: Duration,
    groups: &crate::CommandGroups,
) -> ToolOutcome {
    let (child, _guard) = match crate::command::start_shell(cmd, root, groups).await {
        Ok(ch) => ch,
        Err(e) => return ToolOutcome::err(format!("cannot run sh: {e}")),
    };
    let outcome = run_bash(child, timeout, groups.own_group.is_some()).await;
    // The team's secrets never reach the model (nor the agent's log or the events).
    let mut content = crate::command::mask(groups, &outcome.content).into_owned();
    // A write the sandbox refused says so, with the setting that would allow it.
    if outcome.is_error
        && let Some(note) = crate::command::refusal_note(groups, &content, root)
    {
        content.push('\n');
        content.push_str(&note);
    }
    let outcome = ToolOutcome { content, ..outcome };
    if let Some(slot) = &groups.own_group
        && let Ok(mut s) = slot.lock()
    {
        *s = None;
    }
    outcome
}

/// How much of a command's output the model sees: the last 16 KiB.
const BASH_OUTPUT_CAP: usize = 16 * 1024;

async fn run_bash(
    mut child: tokio::process::Child,
    timeout: Duration,
    own_group: bool,
) -> ToolOutcome {
    let pid = child.id();
    let (so, se) = (child.stdout.take(), child.stderr.take());
    // The pipes are read as the command writes, keeping only the last bytes: a command that
    // prints gigabytes costs no memory.
    let work = async {
        tokio::join!(
            last_bytes(so, BASH_OUTPUT_CAP),
            last_bytes(se, BASH_OUTPUT_CAP),
            child.wait()
        )
    };
    let ((out, out_total), (err, err_total), status) =
        match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                // The command and everything it started go together (the child is still ours,
                // so its descendants can still be found).
                if let Some(pid) = pid {
                    if own_group {
                        agent_team_pane::procs::kill_group(pid);
                    } else {
                        agent_team_pane::procs::kill_tree(pid);
                    }
                }
                return ToolOutcome::err(format!(
                    "the command did not finish within {} s and was killed",
                    timeout.as_secs()
                ));
            }
        };
    let status = match status {
        Ok(s) => s,
        Err(e) => return ToolOutcome::err(format!("the command failed to run: {e}")),
    };
    let mut bytes = out;
    bytes.extend_from_slice(&err);
    let mut dropped = out_total + err_total - bytes.len();
    if bytes.len() > BASH_OUTPUT_CAP {
        dropped += bytes.len() - BASH_OUTPUT_CAP;
        bytes.drain(..bytes.len() - BASH_OUTPUT_CAP);
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // A cut inside a character leaves a replacement character at the start; drop it.
    if dropped > 0 {
        text = format!(
            "[... {dropped} bytes cut]\n{}",
            text.trim_start_matches('\u{fffd}')
        );
    }
    let code = status.code().unwrap_or(-1);
    let body = format!("exit {code}\n{text}");
    if status.success() {
        ToolOutcome::ok(body)
    } else {
        ToolOutcome::err(body)
    }
}

/// Reads `r` to its end, keeping only its last `cap` bytes; returns them and the total read.
async fn last_bytes(r: Option<impl tokio::io::AsyncRead + Unpin>, cap: usize) -> (Vec<u8>, usize) {
    use tokio::io::AsyncReadExt;
    let Some(mut r) = r else {
        return (Vec::new(), 0);
    };
    let (mut keep, mut total) = (Vec::new(), 0usize);
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 2 * cap {
                    keep.drain(..keep.len() - cap);
                }
            }
        }
    }
    if keep.len() > cap {
        keep.drain(..keep.len() - cap);
    }
    (keep, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bash_commands_go_where_stopping_the_agent_reaches_them() {
        let dir = tempfile::tempdir().unwrap();
        // A process-backed agent: the command is in the agent's own group, which the daemon
        // kills when it stops the agent.
        let groups = crate::CommandGroups::default();
        let o = bash(
            dir.path(),
            "ps -o pgid= -p $$",
            Duration::from_secs(10),
            &groups,
        )
        .await;
        let ours = nix::unistd::getpgrp().as_raw().to_string();
        assert_eq!(
            o.content.lines().nth(1).map(str::trim),
            Some(ours.as_str()),
            "{o:?}"
        );
        // A timeout kills what the command started in the background too.
        let pidfile = dir.path().join("bg.pid");
        let o = bash(
            dir.path(),
            &format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display()),
            Duration::from_millis(500),
            &groups,
        )
        .await;
        assert!(o.content.contains("did not finish"), "{o:?}");
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the background sleep survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // An agent inside the daemon: the command has a group of its own, recorded while it runs.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let groups = crate::CommandGroups {
            own_group: Some(slot.clone()),
            ..Default::default()
        };
        let o = bash(
            dir.path(),
            "ps -o pgid= -p $$; echo $$",
            Duration::from_secs(10),
            &groups,
        )
        .await;
        let lines: Vec<&str> = o.content.lines().map(str::trim).collect();
        assert_eq!(lines[1], lines[2], "its own group: {o:?}");
        assert_eq!(*slot.lock().unwrap(), None, "forgotten once it ended");
    }

    #[tokio::test]
    async fn bash_times_out_and_caps_output() {
        let dir = tempfile::tempdir().unwrap();
        let groups = crate::CommandGroups::default();
        let o = bash(dir.path(), "sleep 5", Duration::from_millis(200), &groups).await;
        assert!(o.is_error && o.content.contains("did not finish"), "{o:?}");
        let o = bash(
            dir.path(),
            "head -c 40000 /dev/zero | tr '\\0' x; exit 3",
            Duration::from_secs(10),
            &groups,
        )
        .await;
        assert!(
            o.is_error && o.content.starts_with("exit 3") && o.content.len() < 17 * 1024,
            "{}",
            o.content.len()
        );
        assert!(o.content.contains("[... 23616 bytes cut]\nxxx"));
        assert!(o.content.ends_with(&"x".repeat(16 * 1024)));
    }
}
