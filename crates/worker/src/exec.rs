//! The offline `exec` teammate: no model, real work. At every idle point it takes its messages
//! (shutdown first, then the leader's, then peers'), then resumes the task it holds or claims the
//! lowest-id claimable one, runs its `run` command with `sh -c` under the role's permission
//! policy, completes it with the exit code and the tail of the output, and tells the leader.

use crate::idle::{self, Taken, Woken};
use crate::link::{CallError, Inbound, Link};
use crate::output::Output;
use crate::session::Session;
use crate::{AgentError, CommandGroups};
use agent_team_config::{PermAction, policy};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

/// Runs an exec teammate until it is asked to shut down.
pub async fn run(session: &Session) -> Result<(), AgentError> {
    let (link, out, inbox) = (session.link(), session.out(), session.inbox());
    let mut resync = true;
    let mut held: Option<u64> = None;
    loop {
        // Idle point: what arrived, then the messages in priority order.
        for ev in inbox.poll()? {
            absorb(ev, &mut resync);
        }
        match inbox
            .take(link.as_ref(), out, |m| idle::show(link.name(), m, out))
            .await
        {
            Taken::Shutdown => return Ok(()),
            Taken::Work(acted) => acted.ack(link.as_ref()).await,
        }
        if resync {
            held = current_task(link).await;
            resync = false;
        }
        let task = match held.take() {
            Some(id) => match link.call_retry(Request::TaskShow { id }).await {
                Ok(Reply::Task { task })
                    if task.status == TaskStatus::InProgress
                        && task.owner.as_deref() == Some(link.name()) =>
                {
                    out.say(&format!("resuming task {} after a restart", task.id));
                    Some(task)
                }
                _ => None,
            },
            None => match link.call(Request::TaskClaimNext).await {
                Ok(Reply::MaybeTask { task }) => task,
                Ok(_) => None,
                // The claim may have happened before the connection dropped: look again.
                Err(CallError::Disconnected) => {
                    resync = true;
                    continue;
                }
                Err(CallError::Server(e)) if e.code == ErrorCode::Busy => {
                    resync = true;
                    continue;
                }
                Err(CallError::Server(e)) => return Err(AgentError::Daemon(e.message)),
                Err(CallError::Gone(why)) => return Err(AgentError::Daemon(why)),
            },
        };
        match task {
            Some(t) => {
                link.set_status(AgentStatus::Running).await;
                run_task(session, t).await?;
            }
            None => {
                link.set_status(AgentStatus::Idle).await;
                if let Woken::Event(ev) = inbox.wait(None).await? {
                    absorb(ev, &mut resync);
                }
            }
        }
    }
}

/// A reconnect means the board may have changed while away: look again.
fn absorb(ev: Inbound, resync: &mut bool) {
    if let Inbound::Reconnected = ev {
        *resync = true;
    }
}

/// The task the daemon says this agent holds.
async fn current_task(link: &Link) -> Option<u64> {
    match link.call_retry(Request::Agents).await {
        Ok(Reply::Agents { agents }) => agents
            .into_iter()
            .find(|a| a.name == link.name())
            .and_then(|a| a.current_task),
        _ => None,
    }
}

/// Runs the task's command under the role's policy and finishes the task with its outcome.
async fn run_task(session: &Session, task: Task) -> Result<(), AgentError> {
    let (link, config, role, out) = (
        session.link(),
        session.config(),
        session.role(),
        session.out(),
    );
    let groups = &session.ctx().groups;
    out.say(&format!("▶ task {}: {}", task.id, task.title));
    let Some(cmd) = task.run.clone() else {
        let why = "the exec provider only runs tasks that have a `run` command".to_string();
        out.say(&format!("✗ task {}: {why}", task.id));
        return finish(link, &task, TaskStatus::Failed, why, out).await;
    };
    // The same check as a model's `bash` call: the role's rules, then, for an allowed line, its
    // writes to protected paths resolved from the workspace (`..` and symlinks included).
    let perms_action = policy::perms::decide_rules(&policy::rules(&role.permissions), "bash", &cmd);
    let found = match perms_action {
        policy::perms::Action::Allow => {
            let root = config
                .workspace
                .canonicalize()
                .unwrap_or_else(|_| config.workspace.clone());
            let call = crate::tools::ToolCall::Bash(agent_team_tools::Bash {
                command: cmd.clone(),
                timeout_secs: None,
            });
            crate::tools::protected_write(
                &root,
                crate::tools::team_file(config).as_deref(),
                &call,
                &cmd,
            )
        }
        _ => None,
    };
    let decided = policy::perms::guard(perms_action, found);
    let protected_reason = decided.protected.map(|f| f.to_string());
    match policy::from_engine(decided.action) {
        PermAction::Allow => {}
        PermAction::Deny => {
            let why = format!("the role's policy denies `{cmd}`");
            return finish(link, &task, TaskStatus::Failed, why, out).await;
        }
        PermAction::Ask => {
            let reason = match &protected_reason {
                Some(p) => format!("task {}: {} ({p})", task.id, task.title),
                None => format!("task {}: {}", task.id, task.title),
            };
            let (allowed, why) = session.ask("bash", &cmd, &reason).await?;
            if !allowed {
                let why = format!("permission denied: {why}");
                out.say(&format!("✗ task {}: {why}", task.id));
                return finish(link, &task, TaskStatus::Failed, why, out).await;
            }
        }
    }
    let call_id = format!("task-{}-{}", task.id, link.agent().incarnation);
    link.fire(Request::Emit {
        event: Event::ToolCallStart {
            tool_call_id: call_id.clone(),
            tool_name: "bash".into(),
            args: serde_json::json!({"command": cmd}),
        },
    });
    // In a container with caps: whether one of them killed or refused it.
    let caps = crate::limits::Caps::from_env();
    let root = std::path::Path::new(crate::limits::CGROUP_ROOT);
    let before = caps.any().then(|| crate::limits::hits_at(root));
    let (code, tail) = run_command(&cmd, &config.workspace, out, groups).await;
    let cap = before
        .filter(|_| code != 0)
        .and_then(|b| caps.reason(b, crate::limits::hits_at(root)));
    let result = match &cap {
        Some(why) => format!("exit {code}: {why}\n{tail}"),
        None => format!("exit {code}\n{tail}"),
    }
    .trim_end()
    .to_string();
    link.fire(Request::Emit {
        event: Event::ToolCallResult {
            tool_call_id: call_id,
            content: result.clone(),
            is_error: code != 0,
        },
    });
    let status = if code == 0 {
        TaskStatus::Completed
    } else {
        TaskStatus::Failed
    };
    out.say(&format!(
        "{} task {}: exit {code}{}",
        if code == 0 { "✓" } else { "✗" },
        task.id,
        cap.map(|w| format!(": {w}")).unwrap_or_default()
    ));
    finish(link, &task, status, result, out).await
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail_of(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// The longest line kept of a command's output; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

/// Sends each line of `r` to `tx` until end of file, whatever the bytes: invalid UTF-8 is
/// replaced, and an over-long line is cut to about [`MAX_LINE`] bytes, so neither ends the
/// reading early (which would leave the command writing into a closed pipe) nor grows without
/// bound. The team's `secrets` are masked before the cut and across line breaks (see
/// [`agent_team_config::LineMasker`]), so no part of a value is sent.
async fn pump_lines(
    mut r: impl tokio::io::AsyncRead + Unpin,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    secrets: agent_team_config::Secrets,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    // Enough past the cut to see whole any value that starts before it.
    let keep = MAX_LINE + secrets.longest();
    let mut masker = agent_team_config::LineMasker::new(&secrets);
    let mut emit = |line: &mut Vec<u8>, cut: &mut bool| {
        let text = String::from_utf8_lossy(line).into_owned();
        let (mut text, was_cut) = secrets.mask_and_cut(&text, MAX_LINE);
        if *cut || was_cut {
            text.push_str(" …");
        }
        line.clear();
        *cut = false;
        for ready in masker.push(text) {
            let _ = tx.send(ready);
        }
    };
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match piece.strip_suffix(b"\n") {
                Some(b) => (b, true),
                None => (piece, false),
            };
            let room = keep.saturating_sub(line.len());
            if body.len() > room {
                line.extend_from_slice(&body[..room]);
                cut = true;
            } else {
                line.extend_from_slice(body);
            }
            if ends {
                emit(&mut line, &mut cut);
            }
        }
    }
    if !line.is_empty() || cut {
        emit(&mut line, &mut cut);
    }
    for rest in masker.finish() {
        let _ = tx.send(rest);
    }
}

async fn finish(
    link: &Arc<Link>,
    task: &Task,
    status: TaskStatus,
    result: String,
    out: &Output,
) -> Result<(), AgentError> {
    let result = tail_of(result, 4000);
    match link
        .call_retry(Request::TaskFinish {
            id: task.id,
            status,
            result: Some(result.clone()),
        })
        .await
    {
        Ok(_) => {}
        // Already finished by our first attempt, before a reconnect: fine.
        Err(CallError::Server(e)) if e.code == ErrorCode::InvalidState => {}
        Err(CallError::Server(e)) => {
            out.say(&format!("could not finish task {}: {}", task.id, e.message))
        }
        Err(e) => return Err(AgentError::Daemon(e.to_string())),
    }
    let first_line = result.lines().next().unwrap_or_default().to_string();
    let body = format!("task {} ({}) {}: {first_line}", task.id, task.title, status);
    match link
        .send_once(
            LEADER,
            body,
            MessageKind::TaskEvent,
            format!("done-{}-{}", task.id, task.attempts),
        )
        .await
    {
        Ok(_) | Err(CallError::Server(_)) => Ok(()),
        Err(e) => Err(AgentError::Daemon(e.to_string())),
    }
}

/// Runs `sh -c cmd` in `cwd`, streaming its output lines; returns the exit code (128+signal
/// when killed) and the last lines of output.
pub async fn run_command(
    cmd: &str,
    cwd: &Path,
    out: &Output,
    groups: &CommandGroups,
) -> (i32, String) {
    let (mut child, _guard) = match crate::command::start_shell(cmd, cwd, groups).await {
        Ok(ch) => ch,
        Err(e) => return (127, format!("cannot run sh: {e}")),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let secrets = groups
        .confinement
        .as_ref()
        .map(|c| c.secrets.clone())
        .unwrap_or_default();
    if let Some(so) = child.stdout.take() {
        tokio::spawn(pump_lines(so, tx.clone(), secrets.clone()));
    }
    if let Some(se) = child.stderr.take() {
        tokio::spawn(pump_lines(se, tx.clone(), secrets));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    while let Some(line) = rx.recv().await {
        // The team's secrets never reach the log, the task's result or the event log: the
        // pumps masked them (before the cut, across line breaks).
        out.say(&format!("  │ {line}"));
        tail.push_back(line);
        if tail.len() > 30 {
            tail.pop_front();
        }
    }
    let code = match child.wait().await {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        }
        Err(_) => 1,
    };
    if let Some(slot) = &groups.own_group
        && let Ok(mut s) = slot.lock()
    {
        *s = None;
    }
    let mut text = tail.into_iter().collect::<Vec<_>>().join("\n");
    // A write the sandbox refused says so, with the setting that would allow it.
    if code != 0
        && let Some(note) = crate::command::refusal_note(groups, &text, cwd)
    {
        out.say(&format!("  │ {note}"));
        text.push('\n');
        text.push_str(&note);
    }
    (code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_cut_at_a_character_boundary() {
        let s = "✓".repeat(2000); // 3 bytes each: 4000 is not a boundary
        let t = tail_of(s, 4000);
        assert!(t.len() <= 4000 && t.chars().all(|c| c == '✓'));
        assert_eq!(tail_of("short".into(), 4000), "short");
    }

    #[tokio::test]
    async fn lines_survive_bad_bytes_long_lines_and_no_final_newline() {
        let mut input: Vec<u8> = b"ok\n\xff\xfebad\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
        input.extend(b"\nlast");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        pump_lines(&input[..], tx, agent_team_config::Secrets::default()).await;
        let mut lines = Vec::new();
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], "ok");
        assert_eq!(lines[1], "\u{fffd}\u{fffd}bad");
        assert_eq!(lines[2], format!("{} …", "x".repeat(MAX_LINE)));
        assert_eq!(lines[3], "last");
    }

    async fn pumped(input: &[u8], secrets: &agent_team_config::Secrets) -> Vec<String> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        pump_lines(input, tx, secrets.clone()).await;
        let mut lines = Vec::new();
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        lines
    }

    fn token() -> agent_team_config::Secrets {
        agent_team_config::Secrets::from_map(
            [("TOKEN".to_string(), "s3cr3t-abcdefghijk".to_string())].into(),
        )
    }

    /// No 4-byte piece of the value is anywhere in `lines`.
    fn no_piece_of_the_token(lines: &[String]) {
        let all = lines.join("\n");
        let v = "s3cr3t-abcdefghijk";
        for i in 0..=v.len() - 4 {
            assert!(
                !all.contains(&v[i..i + 4]),
                "{:?} stored: {all:?}",
                &v[i..i + 4]
            );
        }
    }

    #[tokio::test]
    async fn a_secret_split_over_lines_is_not_stored() {
        // 12 of its 18 characters on one line, the rest on the next (as `fold -w` does).
        let lines = pumped(b"before\nxx s3cr3t-abcde\nfghijk yy\nafter\n", &token()).await;
        no_piece_of_the_token(&lines);
        assert_eq!(lines, ["before", "xx [secret TOKEN]", " yy", "after"]);
        // Over three lines, with \r\n line ends.
        let lines = pumped(b"s3cr3t\r\n-abcdef\r\nghijk!\r\n", &token()).await;
        no_piece_of_the_token(&lines);
        assert_eq!(lines.join("|"), "[secret TOKEN]\r|\r|!\r");
    }

    #[tokio::test]
    async fn a_secret_across_the_line_cut_is_not_stored() {
        for at in [MAX_LINE - 12, MAX_LINE - 1, MAX_LINE, MAX_LINE + 3] {
            let mut input = vec![b'x'; at];
            input.extend(b"s3cr3t-abcdefghijk");
            input.extend(vec![b'y'; MAX_LINE]);
            input.extend(b"\nnext\n");
            let lines = pumped(&input, &token()).await;
            no_piece_of_the_token(&lines);
            assert_eq!(lines.len(), 2, "{at}");
            assert!(lines[0].ends_with(" …"), "{at}");
            assert!(lines[0].len() <= MAX_LINE + 64, "{at}: {}", lines[0].len());
            if at < MAX_LINE {
                assert!(lines[0].contains("[secret TOKEN]"), "{at}");
            }
            assert_eq!(lines[1], "next");
        }
    }
}
