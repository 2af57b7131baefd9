//! The CLI's hook socket ([`wire`]: one request line, one reply line per connection): at a
//! turn's end (`stop`) what is queued for the agent (the CLI takes it as its next instruction;
//! with nothing queued the agent is idle; a shutdown request ends the CLI); before a call of
//! one of the CLI's own tools (`permission`) the role's verdict on it, judged by the session.

use crate::McpError;
use crate::permission;
use crate::server::{TeamServer, render, shutdown_reason};
use crate::wire::{self, HookReply, HookRequest};
use agent_team_protocol::{AgentStatus, Message};
use agent_team_worker::inbox::Handover;
use serde_json::Value;
use std::sync::Arc;

/// The most hook connections answered at once (a CLI runs one hook at a time per tool call;
/// Claude Code may run a few tool calls in parallel).
const HOOK_CONNECTIONS_MAX: usize = 32;

/// How long the hook socket waits for a request line.
const HOOK_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The file holding the hook key of the server listening on `socket` (beside it, 0600).
pub fn hook_key_file(socket: &std::path::Path) -> std::path::PathBuf {
    socket.with_file_name("hook.key")
}

impl TeamServer {
    /// Answers the CLI's hooks on `socket`, for callers that descend from `cli` (the CLI that
    /// started this server, or the worker that started the CLI) and present this launch's key.
    pub(crate) fn serve_hooks(
        &self,
        socket: &std::path::Path,
        cli: i32,
    ) -> Result<tokio::task::AbortHandle, McpError> {
        let _ = std::fs::remove_file(socket);
        // The key is in a 0600 file beside the socket.
        let key = agent_team_paths::new_secret()
            .map_err(|e| McpError::Session(format!("cannot make the hook key: {e}")))?;
        let key_file = hook_key_file(socket);
        agent_team_paths::write_secret_file(&key_file, &key)
            .map_err(|e| McpError::Session(format!("cannot write {}: {e}", key_file.display())))?;
        let listener = tokio::net::UnixListener::bind(socket).map_err(|e| {
            McpError::Session(format!("cannot listen on {}: {e}", socket.display()))
        })?;
        let me = self.clone();
        let key = Arc::new(key);
        // A permission hook may wait for a person: at most this many are answered at once; one
        // more is closed unanswered, which its hook takes as a refusal.
        let slots = Arc::new(tokio::sync::Semaphore::new(HOOK_CONNECTIONS_MAX));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let (me, key) = (me.clone(), key.clone());
                tokio::spawn(async move {
                    let _ = me.answer_hook(stream, &key, cli).await;
                    drop(slot);
                });
            }
        });
        Ok(task.abort_handle())
    }

    async fn answer_hook(
        &self,
        stream: tokio::net::UnixStream,
        key: &str,
        cli: i32,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let caller = stream.peer_cred().ok().and_then(|c| c.pid());
        let (r, mut w) = stream.into_split();
        let mut line = String::new();
        // One line, soon: a peer that sends more or nothing gets no more than this.
        let mut reader = tokio::io::BufReader::new(r);
        let mut first = (&mut reader).take(permission::PERMISSION_LINE_MAX);
        if tokio::time::timeout(HOOK_READ_TIMEOUT, first.read_line(&mut line))
            .await
            .is_err()
        {
            return Ok(());
        }
        // The key first, then the caller, and only then what it asks.
        let request = wire::read_request(&line, key);
        // A CLI's hook reads its exit code and text: a refusal refuses its call too.
        let cli_hook = match &request {
            Ok(HookRequest::Cli { event, .. }) => Some(*event),
            _ => None,
        };
        let refuse = |error: String| match cli_hook {
            Some(wire::CliHook::PreToolUse) => wire::cli_reply(2, &error),
            Some(wire::CliHook::Stop) => wire::cli_reply(1, &error),
            None => wire::reply_line(&HookReply::Error { error }),
        };
        if let Err(e @ wire::WireError::BadKey) = request {
            return w.write_all(&refuse(e.to_string())).await;
        }
        if !caller.is_some_and(|pid| descends_from(pid, cli)) {
            return w
                .write_all(&refuse(
                    "the caller is not a process of this agent's CLI".into(),
                ))
                .await;
        }
        let reply = match request {
            Err(e) => HookReply::Error {
                error: e.to_string(),
            },
            Ok(HookRequest::Cli { event, cli }) => {
                // Its input follows until the hook half-closes, soon and bounded.
                let mut input = Vec::new();
                let mut rest = (&mut reader).take(wire::HOOK_INPUT_MAX);
                if tokio::time::timeout(HOOK_READ_TIMEOUT, rest.read_to_end(&mut input))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                let input = String::from_utf8_lossy(&input);
                return self
                    .answer_cli_hook(event, cli.as_deref(), &input, &mut w)
                    .await;
            }
            Ok(HookRequest::Stop) => {
                return self.deliver_stop(&mut w, wire::reply_line).await;
            }
            Ok(HookRequest::Permission { .. }) if self.session.inbox().ends() => {
                HookReply::Verdict {
                    allow: false,
                    reason: "the agent is shutting down".into(),
                }
            }
            Ok(HookRequest::Permission { tool, args }) => {
                let (allow, reason) = self.session.judge(&tool, args).await;
                HookReply::Verdict { allow, reason }
            }
        };
        w.write_all(&wire::reply_line(&reply)).await
    }

    /// A CLI's hook `event` with its `input`, answered as the hook prints ([`wire::cli_reply`]):
    /// at the turn's end what is queued (marked read once the answer is written) or nothing;
    /// before a call of one of the CLI's own tools the role's verdict on each file it names, in
    /// the CLI's shape. No decision refuses the call (exit 2), never lets it through.
    async fn answer_cli_hook(
        &self,
        event: wire::CliHook,
        cli: Option<&str>,
        input: &str,
        w: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        if event == wire::CliHook::Stop {
            let as_printed = |reply: &HookReply| match wire::stop_output_of(reply.clone()) {
                Ok(text) => wire::cli_reply(0, text.as_deref().unwrap_or_default()),
                Err(e) => wire::cli_reply(1, &e.to_string()),
            };
            return self.deliver_stop(w, as_printed).await;
        }
        let (code, text) = self.pre_tool_answer(cli, input).await;
        w.write_all(&wire::cli_reply(code, &text)).await
    }

    /// The turn-end hook's answer ([`Self::answer_stop`]) written to `w` as `encode` makes it;
    /// the messages in it are marked read only once it is written (put back otherwise), and a
    /// shutdown ends the CLI whether or not its hook heard why.
    async fn deliver_stop(
        &self,
        w: &mut (impl tokio::io::AsyncWrite + Unpin),
        encode: impl FnOnce(&HookReply) -> Vec<u8>,
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let (reply, taken) = self.answer_stop().await;
        let written = w.write_all(&encode(&reply)).await;
        match &written {
            Ok(()) => self.mark_read(&taken).await,
            Err(_) => self.session.inbox().put_back(taken),
        }
        if matches!(reply, HookReply::Shutdown { .. }) {
            self.end.end();
        }
        written
    }

    /// The pre-tool hook's exit code and text for the CLI `cli`'s hook input `input`.
    async fn pre_tool_answer(&self, cli: Option<&str>, input: &str) -> (u8, String) {
        let name = cli.unwrap_or("claude-code");
        let Some(adapter) = agent_team_worker::external::adapter_named(name) else {
            return (2, format!("no agent CLI is called {name:?}"));
        };
        let input: Value = match serde_json::from_str(input) {
            Ok(v) => v,
            Err(e) => return (2, format!("the hook input is not JSON: {e}")),
        };
        // A CLI whose hook sees every call (Copilot's has no matcher) lets through the ones it
        // does not judge (the team's own tools).
        if permission::hook_tool(&input).is_some_and(|t| !adapter.hook_judges(t)) {
            return (0, String::new());
        }
        let (allowed, reason) = match permission::hook_requests(&input) {
            Ok(r) if r.is_empty() => (false, "the call names nothing to judge".into()),
            Err(why) => (false, why),
            Ok(requests) => self.judge_all(requests).await,
        };
        (
            0,
            adapter
                .pre_tool_answer(allowed, &reason)
                .unwrap_or_default(),
        )
    }

    /// Each of a call's requests judged in turn: allowed only if every one is.
    async fn judge_all(&self, requests: Vec<HookRequest>) -> (bool, String) {
        for request in requests {
            let HookRequest::Permission { tool, args } = request else {
                return (false, "not a call to judge".into());
            };
            if self.session.inbox().ends() {
                return (false, "the agent is shutting down".into());
            }
            // Too long to be judged whole (as a request line would be): refused, not cut.
            let len = serde_json::to_string(&args).map_or(0, |a| a.len());
            if len as u64 > permission::PERMISSION_LINE_MAX {
                return (false, wire::WireError::TooLong(len).to_string());
            }
            let (allow, reason) = self.session.judge(&tool, args).await;
            if !allow {
                return (false, reason);
            }
        }
        (true, String::new())
    }

    /// The turn-end hook: what is queued (returned with the answer, to be marked read once
    /// the answer is written), or the agent is idle, or (asked to shut down) the end. A first
    /// turn that called no team tool gets its instruction again first, unless it is to end.
    async fn answer_stop(&self) -> (HookReply, Vec<Message>) {
        let again = self.pane.unconfirmed_first();
        if let Some(text) = again.filter(|_| !self.session.inbox().ends()) {
            return (
                HookReply::Messages {
                    messages: vec![format!(
                        "The team's tools are connected now; start again with them. {text}"
                    )],
                },
                Vec::new(),
            );
        }
        let messages = match self.hand_over().await {
            Handover::Shutdown(requests) => {
                let reason = shutdown_reason(&requests);
                return (HookReply::Shutdown { reason }, Vec::new());
            }
            Handover::Messages(m) => m,
        };
        let link = self.session.link();
        if messages.is_empty() {
            link.set_status(AgentStatus::Idle).await;
            self.went_idle();
        } else {
            link.set_status(AgentStatus::Running).await;
        }
        let texts: Vec<String> = messages.iter().map(render).collect();
        (HookReply::Messages { messages: texts }, messages)
    }
}

/// Whether process `pid` is `ancestor` or descends from it (read from `/proc`, at most 64
/// generations up).
pub(crate) fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        if p <= 1 {
            return false;
        }
        // PID 1 included: in a container the worker is PID 1 (issue 66).
        let Some(ppid) = ppid_of(p) else {
            return false;
        };
        p = ppid;
    }
    false
}

/// The parent of process `pid` (from `/proc`), PID 1 included.
fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .filter(|p: &i32| *p > 0)
}

/// The parent of process `pid` (from `/proc`), unless it is PID 1 or none: a process whose
/// parent is init has lost the one it had, and nothing may be signalled as its parent.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    ppid_of(pid).filter(|p| *p > 1)
}

#[cfg(test)]
mod descent_tests {
    use super::*;

    #[test]
    fn every_process_descends_from_pid_1_a_workers_place_in_a_container() {
        let me = std::process::id() as i32;
        // In a container the worker is PID 1 and the CLI's bridge its descendant: the walk up
        // must reach it (it stopped one short when PID 1 counted as no parent).
        assert!(descends_from(me, 1));
        assert!(descends_from(me, me));
        assert!(!descends_from(1, me));
        // Nothing is ever signalled as an orphan's parent.
        assert_eq!(parent_of(1), None);
    }
}
