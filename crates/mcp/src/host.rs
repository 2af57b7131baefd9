//! The team's tools served from an agent CLI's worker: the CLI starts `agent-team-bridge mcp
//! SOCKET` as its MCP server, and each bridge connection is an MCP session of one
//! [`TeamServer`] living in the worker (outside the CLI's sandbox) over the agent's own
//! session, which also answers the CLI's hooks. Beside the CLI then runs one small bridge of
//! ours, not a second `agent-team`.

use crate::Session;
use crate::end::CliEnd;
use crate::hooks::{descends_from, parent_of};
use crate::server::TeamServer;
use agent_team_worker::AgentError;
use agent_team_worker::external::{ToolHost, ToolServing, ToolsGuard};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The most MCP sessions served at once to one CLI (it opens one; a restarted MCP client
/// another): one more is closed unserved.
const SESSIONS_MAX: usize = 8;

/// The [`ToolHost`] of the worker and `agent-team` binaries: they hand it to
/// `agent_team_worker::run_agent`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerHost;

impl ToolHost for WorkerHost {
    fn start(
        &self,
        session: Arc<Session>,
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
        let end = Arc::new(CliEnd::new(home));
        let server = TeamServer::new(session, end.clone());
        server
            .pane
            .interactive
            .store(serving.interactive, Ordering::SeqCst);
        if let Some(text) = first {
            server.first_input_after_listing(text.trim().to_string());
        }
        // Every process of the CLI descends from this worker, which started it.
        let worker = std::process::id() as i32;
        let mut guard = ToolsGuard(Vec::new());
        if let Some(sock) = &serving.hook_socket {
            match server.serve_hooks(sock, worker) {
                Ok(h) => guard.0.push(h),
                Err(e) => tracing::warn!("cannot answer the CLI's hooks: {e}"),
            }
        }
        let task = tokio::spawn(async move {
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
                    tracing::warn!(
                        ?peer,
                        worker,
                        "refused a connection to the team's tools: not from a process this \
                         worker started"
                    );
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
        guard.0.push(task.abort_handle());
        Ok(guard)
    }
}
