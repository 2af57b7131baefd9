//! The team tools over MCP: `agent-team mcp` is a stdio MCP server that an external agent CLI
//! (Claude Code, Codex, Qwen Code, any MCP client) starts as its `team` server. It connects to
//! the daemon as the agent the supervisor launched (identity from the environment, never from
//! tool arguments), offers that agent's team tools from the one catalogue in
//! `agent-team-tools` (a leader's or a teammate's) plus `wait_for_messages`, and runs them with
//! the worker's own handlers, so a tool behaves the same for our workers and for a CLI.
//!
//! rmcp, the official Rust SDK, is confined to this crate.

use agent_team_protocol::{DeliveryState, Message, Request};
use agent_team_tools::{
    LEADER_TOOLS, MCP_ONLY, TEAMMATE_TOOLS, Tool, ToolCall, WaitForMessages, lookup,
};
use agent_team_worker::link::{Inbound, Link};
use agent_team_worker::output::Output;
use agent_team_worker::tools::{self, ToolCtx};
use agent_team_worker::{AgentEnv, AgentError, CommandGroups};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock as Content, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use tokio::sync::{Mutex, mpsc};

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

/// The team tools of one agent, served over MCP.
#[derive(Clone)]
pub struct TeamServer {
    ctx: Arc<ToolCtx>,
    names: Arc<Vec<&'static str>>,
    inbox: Arc<Mutex<Inbox>>,
}

/// Messages that reached this agent and were not yet handed to the client.
struct Inbox {
    rx: mpsc::UnboundedReceiver<Inbound>,
    queued: Vec<Message>,
}

impl Inbox {
    /// Moves what already arrived into `queued`, without waiting.
    fn drain(&mut self) {
        while let Ok(i) = self.rx.try_recv() {
            self.take(i);
        }
    }

    fn take(&mut self, i: Inbound) {
        if let Inbound::Message(m) = i {
            self.queued.push(m);
        }
    }
}

/// The tool names an agent gets over MCP: its team tools (the leader's or a teammate's) and
/// the MCP-only ones. Workspace tools are the CLI's own.
pub fn tool_names(is_leader: bool) -> Vec<&'static str> {
    let team = if is_leader {
        LEADER_TOOLS
    } else {
        TEAMMATE_TOOLS
    };
    team.iter()
        .copied()
        .chain(MCP_ONLY.iter().map(|t| t.name))
        .collect()
}

/// A tool as MCP lists it, from its catalogue entry.
fn mcp_tool(name: &str) -> Option<rmcp::model::Tool> {
    let def = lookup(name).or_else(|| MCP_ONLY.iter().find(|t| t.name == name))?;
    let schema = match def.schema() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Some(rmcp::model::Tool::new(
        def.name,
        def.description,
        Arc::new(schema),
    ))
}

impl TeamServer {
    /// Joins the team as the agent `agent` names (waiting for the daemon if needed).
    pub async fn connect(agent: AgentEnv) -> Result<Self, McpError> {
        // Stdout carries MCP frames only: what the link has to say goes to the agent's log.
        let out = match &agent.log_file {
            Some(p) => Output::to_file(p),
            None => Output::null(),
        };
        let (link, rx) = Link::start(agent, out).await?;
        let config = link.config().await?;
        let is_leader = link.name() == agent_team_protocol::names::LEADER;
        Ok(Self::new(link, rx, &config, is_leader))
    }

    /// A server over an established link (tests build one this way too).
    pub fn new(
        link: Arc<Link>,
        rx: mpsc::UnboundedReceiver<Inbound>,
        config: &agent_team_config::TeamConfig,
        is_leader: bool,
    ) -> Self {
        let root = config
            .workspace
            .canonicalize()
            .unwrap_or_else(|_| config.workspace.clone());
        let ctx = ToolCtx {
            link,
            root,
            groups: CommandGroups::default(),
            team_file: tools::team_file(config),
            turns: Arc::new(AtomicU32::new(0)),
        };
        TeamServer {
            ctx: Arc::new(ctx),
            names: Arc::new(tool_names(is_leader)),
            inbox: Arc::new(Mutex::new(Inbox {
                rx,
                queued: Vec::new(),
            })),
        }
    }

    /// Serves MCP on stdin/stdout until the client closes it.
    pub async fn serve_stdio(self) -> Result<(), McpError> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| McpError::Session(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| McpError::Session(e.to_string()))?;
        Ok(())
    }

    /// `wait_for_messages`: what is queued, else the first messages to arrive within the
    /// timeout; they are marked read, since the client now has them.
    async fn wait_for_messages(&self, args: &WaitForMessages) -> CallToolResult {
        let mut inbox = self.inbox.lock().await;
        inbox.drain();
        if inbox.queued.is_empty() {
            let deadline = tokio::time::Instant::now() + args.timeout();
            loop {
                match tokio::time::timeout_at(deadline, inbox.rx.recv()).await {
                    Ok(Some(i)) => {
                        inbox.take(i);
                        inbox.drain();
                        if !inbox.queued.is_empty() {
                            break;
                        }
                    }
                    Ok(None) => {
                        return CallToolResult::error(vec![Content::text(
                            "the connection to the team is gone",
                        )]);
                    }
                    Err(_) => break,
                }
            }
        }
        let messages = std::mem::take(&mut inbox.queued);
        drop(inbox);
        if messages.is_empty() {
            return CallToolResult::success(vec![Content::text("no messages")]);
        }
        let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
        let _ = self
            .ctx
            .link
            .call_retry(Request::Ack {
                ids,
                state: DeliveryState::Read,
            })
            .await;
        let text = messages
            .iter()
            .map(|m| format!("[message {} from {}] {}", m.id, m.from, m.body))
            .collect::<Vec<_>>()
            .join("\n");
        CallToolResult::success(vec![Content::text(text)])
    }
}

impl ServerHandler for TeamServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agent-team", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult {
            tools: self.names.iter().filter_map(|n| mcp_tool(n)).collect(),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if !self.names.contains(&name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool {name:?} here; the tools are: {}",
                    self.names.join(", ")
                ),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        if name == WaitForMessages::NAME {
            let parsed = agent_team_tools::parse::<WaitForMessages>(name, &args)
                .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
            return Ok(self.wait_for_messages(&parsed).await.into());
        }
        let call = ToolCall::parse(name, &args)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let outcome = tools::run(&self.ctx, &call).await;
        let content = vec![Content::text(outcome.content)];
        Ok(if outcome.is_error {
            CallToolResult::error(content)
        } else {
            CallToolResult::success(content)
        }
        .into())
    }
}

/// `agent-team mcp`: serves the agent named by the environment the supervisor set.
pub async fn serve_from_env() -> Result<(), McpError> {
    let agent = AgentEnv::from_process()?;
    TeamServer::connect(agent).await?.serve_stdio().await
}
