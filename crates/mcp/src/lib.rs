//! The team tools over MCP for an agent CLI (Claude Code, Codex, Qwen Code, any MCP client):
//! served from the CLI's worker ([`WorkerHost`]) to the `agent-team-bridge` the CLI starts as
//! its `team` server, and the CLI's hooks answered there too. Everything goes through the
//! agent's own [`Session`] (the worker's one connection, as the agent the supervisor launched;
//! never an identity from tool arguments): its tools run through the session's one pipeline,
//! so a tool behaves the same for our workers and for a CLI.
//!
//! One file per job: `server` (what one CLI launch shares), `tools` (the MCP tools), `hooks`
//! (the hook socket and its answers), `pane` (typing into the CLI's pane), `end` (ending the
//! CLI), `host` (the bridge's sessions); [`permission`] and [`wire`] are the hooks' formats. rmcp, the official Rust SDK, is confined to this crate.

mod end;
mod hooks;
mod host;
mod pane;
pub mod permission;
mod server;
mod tools;
pub mod wire;

pub use hooks::hook_key_file;
pub use host::WorkerHost;
pub use server::TeamServer;
pub use tools::tool_names;

use agent_team_worker::AgentError;
use agent_team_worker::session::Session;

/// Why the MCP server could not serve.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The agent could not join its team (identity, daemon, configuration).
    #[error("{0}")]
    Agent(#[from] AgentError),
    /// The MCP session with the client failed.
    #[error("the MCP session failed: {0}")]
    Session(String),
}
