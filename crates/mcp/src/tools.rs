//! The team's tools as MCP serves them: listed from the one catalogue in `agent-team-tools`
//! (a leader's or a teammate's team tools, plus `wait_for_messages`), and each call run
//! through the agent's session ([`agent_team_worker::session::Session::resolve`] and
//! [`agent_team_worker::session::Session::run`]), as the model loop runs its calls; only the
//! inbox tools are answered here, from the CLI's idle point.

use crate::McpError;
use crate::server::{TeamServer, render};
use agent_team_tools::{LEADER_TOOLS, MCP_ONLY, ReadInbox, TEAMMATE_TOOLS, Tool, WaitForMessages};
use agent_team_worker::inbox::Handover;
use agent_team_worker::session::Offer;
use agent_team_worker::tools::ToolOutcome;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock as Content, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    let def =
        agent_team_tools::lookup(name).or_else(|| MCP_ONLY.iter().find(|t| t.name == name))?;
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

/// The id of the next call this process serves, for its events (`mcp-N`).
fn next_call_id() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(1);
    format!("mcp-{}", CALLS.fetch_add(1, Ordering::Relaxed))
}

/// A tool's outcome as MCP gives it back.
fn result_of(outcome: ToolOutcome) -> CallToolResult {
    let content = vec![Content::text(outcome.content)];
    if outcome.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    }
}

impl TeamServer {
    /// Serves MCP on `transport` (a CLI's bridge connection) until it closes.
    pub(crate) async fn serve_on<T, E, A>(self, transport: T) -> Result<(), McpError>
    where
        T: rmcp::transport::IntoTransport<RoleServer, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let running = self
            .serve(transport)
            .await
            .map_err(|e| McpError::Session(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| McpError::Session(e.to_string()))?;
        Ok(())
    }

    /// `wait_for_messages`: what is queued (in the worker's order), else the first messages
    /// to arrive within the timeout; they are marked read, since the client now has them. A
    /// shutdown request ends the CLI instead.
    async fn wait_for_messages(&self, args: &WaitForMessages) -> CallToolResult {
        let inbox = self.session.inbox();
        let deadline = tokio::time::Instant::now() + args.timeout();
        if !inbox.wait_until(deadline).await && inbox.is_gone() {
            return CallToolResult::error(vec![Content::text(
                "the connection to the team is gone",
            )]);
        }
        let messages = match self.hand_over().await {
            Handover::Shutdown(requests) => {
                self.end.end();
                let reason = crate::server::shutdown_reason(&requests);
                return CallToolResult::success(vec![Content::text(reason)]);
            }
            Handover::Messages(m) => m,
        };
        if messages.is_empty() {
            return CallToolResult::success(vec![Content::text("no messages")]);
        }
        self.mark_read(&messages).await;
        let text = messages.iter().map(render).collect::<Vec<_>>().join("\n");
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
        let tools = self.names.iter().filter_map(|n| mcp_tool(n)).collect();
        self.listed();
        Ok(ListToolsResult {
            tools,
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        self.pane.working();
        let s = &self.session;
        let id = next_call_id();
        let given = Value::Object(request.arguments.unwrap_or_default());
        let offer = Offer {
            now: &self.names,
            full: &self.names,
            naming: &agent_team_tools::aliases::AGENT_TEAM,
        };
        let call = match s.resolve(&id, &request.name, given, s.caller(""), offer) {
            Ok(call) => call,
            Err(refused) => return Ok(result_of(refused).into()),
        };
        // The inbox tools are the CLI's idle point: what is queued is taken here (and marked
        // read), a wait that does not wait when it polls; asking for read ones too is the
        // board's inbox, which the session runs.
        if call.name == WaitForMessages::NAME {
            return Ok(
                match agent_team_tools::parse::<WaitForMessages>(&call.name, &call.args) {
                    Ok(wait) => self.wait_for_messages(&wait).await,
                    Err(e) => CallToolResult::error(vec![Content::text(e.to_string())]),
                }
                .into(),
            );
        }
        if call.name == ReadInbox::NAME
            && agent_team_tools::parse::<ReadInbox>(&call.name, &call.args)
                .is_ok_and(|r| r.unread_only.unwrap_or(true))
        {
            let now = WaitForMessages { timeout_s: Some(0) };
            return Ok(self.wait_for_messages(&now).await.into());
        }
        let outcome = s
            .run(&id, call)
            .await
            .unwrap_or_else(|e| ToolOutcome::err(e.to_string()));
        Ok(result_of(outcome).into())
    }
}
