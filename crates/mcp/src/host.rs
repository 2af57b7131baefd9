//! The team's tools served from an agent CLI's worker: the CLI starts `agent-team-bridge mcp
//! SOCKET` as its MCP server, and each bridge connection is an MCP session of one
//! [`TeamServer`] living in the worker (outside the CLI's sandbox), which also answers the
//! CLI's hooks. Beside the CLI then runs one small bridge of ours, not a second `agent-team`.

use crate::{CliEnd, TeamServer, descends_from};
use agent_team_worker::external::{ToolHost, ToolServing, ToolsGuard};
use agent_team_worker::{AgentEnv, AgentError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The most MCP sessions served at once to one CLI (it opens one; a restarted MCP client
/// another): one more is closed unserved.
const SESSIONS_MAX: usize = 8;

/// The [`ToolHost`] of the worker and `agent-team` binaries.
pub struct WorkerHost;

/// The one [`WorkerHost`], for [`agent_team_worker::external::set_tool_host`].
pub static WORKER_HOST: WorkerHost = WorkerHost;

impl ToolHost for WorkerHost {
    fn start(
        &self,
        agent: AgentEnv,
        home: &Path,
        serving: &ToolServing,
    ) -> Result<ToolsGuard, AgentError> {
        let _ = std::fs::remove_file(&serving.socket);
        let listener = tokio::net::UnixListener::bind(&serving.socket).map_err(|e| {
            AgentError::Config(format!(
                "cannot listen on {}: {e}",
                serving.socket.display()
            ))
        })?;
        // Read once per launch: a bridge that reconnects is not given it again.
        let first = serving.first_input_file.as_ref().and_then(|f| {
            let text = std::fs::read_to_string(f).ok();
            let _ = std::fs::remove_file(f);
            text
        });
        let end = Arc::new(CliEnd {
            pid: AtomicI32::new(0),
            home: Some(home.to_path_buf()),
            done: AtomicBool::new(false),
        });
        let (serving, worker) = (serving.clone(), std::process::id() as i32);
        let task = tokio::spawn(async move {
            let mut server = match TeamServer::connect(agent).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot serve the team's tools: {e}");
                    return;
                }
            };
            server.end = end.clone();
            server
                .interactive
                .store(serving.interactive, Ordering::SeqCst);
            if let Some(text) = first {
                server.first_input_after_listing(text.trim().to_string());
            }
            // Every process of the CLI descends from this worker, which started it.
            let _hooks = match &serving.hook_socket {
                Some(sock) => match server.serve_hooks(sock, worker) {
                    Ok(h) => Some(ToolsGuard(vec![h])),
                    Err(e) => {
                        tracing::warn!("cannot answer the CLI's hooks: {e}");
                        None
                    }
                },
                None => None,
            };
            // Each session ends with the task (a JoinSet aborts what it holds when dropped).
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while sessions.try_join_next().is_some() {}
                if sessions.len() >= SESSIONS_MAX {
                    continue;
                }
                let peer = stream.peer_cred().ok().and_then(|c| c.pid());
                // Only the CLI's own bridge: a process this worker started.
                let Some(peer) = peer.filter(|p| *p != worker && descends_from(*p, worker)) else {
                    continue;
                };
                // The bridge's parent is the CLI, which a shutdown request ends.
                if let Some(cli) = parent_of(peer) {
                    end.pid.store(cli, Ordering::SeqCst);
                }
                let s = server.clone();
                sessions.spawn(async move {
                    if let Err(e) = s.serve_on(stream).await {
                        tracing::warn!("the CLI's MCP session ended: {e}");
                    }
                });
            }
        });
        Ok(ToolsGuard(vec![task.abort_handle()]))
    }
}

/// The parent of process `pid` (from `/proc`).
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .filter(|p: &i32| *p > 1)
}
