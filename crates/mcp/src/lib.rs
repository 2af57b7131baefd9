//! The team tools over MCP for an external agent CLI (Claude Code, Codex, Qwen Code, any MCP
//! client): served from the CLI's worker ([`WorkerHost`]) to the `agent-team-bridge` the CLI
//! starts as its `team` server. It connects to the daemon as the agent the supervisor launched
//! (through the worker's relay; never an identity from tool arguments), offers that agent's team tools from the one catalogue in
//! `agent-team-tools` (a leader's or a teammate's) plus `wait_for_messages`, and runs them with
//! the worker's own handlers, so a tool behaves the same for our workers and for a CLI.
//!
//! rmcp, the official Rust SDK, is confined to this crate.

mod host;
pub use host::{WORKER_HOST, WorkerHost};
pub mod permission;
pub mod wire;

use agent_team_config::Role;
use agent_team_protocol::{DeliveryState, Message, PermRequest, Request};
use agent_team_tools::{
    LEADER_TOOLS, MCP_ONLY, TEAMMATE_TOOLS, Tool, ToolCall, WaitForMessages, lookup,
};
use agent_team_worker::idle::{self, Daemon, Order};
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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tokio::sync::{Notify, broadcast, mpsc};
use wire::{HookReply, HookRequest};

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
    inbox: Arc<Inbox>,
    /// The agent's role (its tools and policy), for judging the CLI's own tool calls.
    role: Arc<Option<Role>>,
    /// The CLI's first instruction, typed into its pane once it has listed the tools (an
    /// interactive CLI connects its MCP servers in the background, so an instruction given at
    /// its start could reach the model before the team tools exist).
    first_input: Arc<std::sync::Mutex<Option<String>>>,
    /// The first instruction as typed, until the CLI calls one of the team tools: if its
    /// first turn ends without one, the tools were not yet its own when it began (Claude
    /// Code registers them a moment after listing them), and the turn-end hook gives the
    /// instruction again, once.
    unconfirmed_first: Arc<std::sync::Mutex<Option<String>>>,
    /// The CLI runs interactively in a pane (its first instruction is typed there).
    interactive: Arc<AtomicBool>,
    /// The CLI ended a turn with nothing queued and has not called a tool since.
    idle: Arc<AtomicBool>,
    /// A task is waiting to wake the idle CLI with the next messages.
    waking: Arc<AtomicBool>,
    /// Where the agent's words go (its log).
    out: Output,
    /// How the CLI is ended once a shutdown request was carried out.
    end: Arc<CliEnd>,
}

/// What the daemon pushed to this agent, sorted as it arrives by one task ([`route`]):
/// messages wait in `queued` until the client is handed them, in the worker's order
/// ([`idle::order`]); permission decisions go to whoever waits for them.
struct Inbox {
    queued: std::sync::Mutex<Vec<Message>>,
    /// A shutdown request was taken (set under `queued`'s lock): what the CLI is told. The CLI
    /// is handed nothing else from then on.
    shutdown: std::sync::OnceLock<String>,
    /// A message was queued, or the link is gone.
    arrived: Notify,
    /// The link to the daemon is gone for good.
    gone: AtomicBool,
    /// Decisions of this agent's permission requests, and reconnects (after which a decision
    /// may have been missed).
    decided: broadcast::Sender<Decided>,
}

/// What a permission waiter hears.
#[derive(Clone, Debug)]
enum Decided {
    One(PermRequest),
    Reconnected,
}

/// What the CLI is handed at one of its idle points (a turn's end, `wait_for_messages`, a
/// wake-up of an idle interactive CLI).
#[derive(Debug, PartialEq)]
enum Handover {
    /// The messages queued, in the order to act on them (marked read by the caller once the
    /// CLI has them).
    Messages(Vec<Message>),
    /// The team asked the agent to shut down: the request was answered and marked read as the
    /// worker does ([`idle::shut_down`]); the CLI is told this and ended.
    Shutdown(String),
}

/// What [`Inbox::take`] found.
enum Taken {
    /// No shutdown request: the messages, in order.
    Work(Vec<Message>),
    /// Shutdown requests, taken now (to be answered), and what the CLI is told.
    Shutdown(Vec<Message>, String),
    /// A shutdown request was taken before: what the CLI was told.
    Ended(String),
}

impl Inbox {
    /// An empty inbox.
    fn new() -> Self {
        Inbox {
            queued: std::sync::Mutex::new(Vec::new()),
            shutdown: std::sync::OnceLock::new(),
            arrived: Notify::new(),
            gone: AtomicBool::new(false),
            decided: broadcast::channel(64).0,
        }
    }

    /// Keeps a message for the next hand-over.
    fn push(&self, m: Message) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m);
        self.arrived.notify_waiters();
    }

    /// What is queued, now, in the worker's order; a shutdown request wins over the rest,
    /// which stays unread in the daemon.
    fn take(&self) -> Taken {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = self.shutdown.get() {
            return Taken::Ended(reason.clone());
        }
        match idle::order(std::mem::take(&mut *q)) {
            Order::Work(messages) => Taken::Work(messages),
            Order::Shutdown { requests, .. } => {
                let reason = shutdown_reason(&requests);
                let _ = self.shutdown.set(reason.clone());
                Taken::Shutdown(requests, reason)
            }
        }
    }

    /// The idle point of a CLI teammate: what is queued, in the worker's order, or the end
    /// when a shutdown request came (answered and marked read through `daemon` first).
    async fn hand_over(&self, daemon: &impl Daemon, out: &Output) -> Handover {
        match self.take() {
            Taken::Work(messages) => Handover::Messages(messages),
            Taken::Shutdown(requests, reason) => {
                idle::shut_down(daemon, out, &requests).await;
                Handover::Shutdown(reason)
            }
            Taken::Ended(reason) => Handover::Shutdown(reason),
        }
    }

    /// Messages taken but not handed over (the hook went away before its answer): first again.
    fn put_back(&self, mut messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        messages.append(&mut q);
        *q = messages;
        drop(q);
        self.arrived.notify_waiters();
    }

    /// Whether nothing is to be handed over (no message, no shutdown).
    fn is_empty(&self) -> bool {
        self.shutdown.get().is_none()
            && self
                .queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// Whether the next hand-over is the end (a shutdown request is queued or was taken).
    fn ends(&self) -> bool {
        self.shutdown.get().is_some()
            || self
                .queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|m| m.kind == agent_team_protocol::MessageKind::ShutdownRequest)
    }

    /// Waits until something is to be handed over, the link is gone, or `deadline`; true
    /// when something is.
    async fn wait_until(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a message queued in between still wakes us.
            arrived.as_mut().enable();
            if !self.is_empty() {
                return true;
            }
            if self.gone.load(Ordering::SeqCst)
                || tokio::time::timeout_at(deadline, arrived).await.is_err()
            {
                return !self.is_empty();
            }
        }
    }
}

/// What a CLI asked to shut down is told.
fn shutdown_reason(requests: &[Message]) -> String {
    format!(
        "Your team asked you to shut down; this session ends now. Call no more tools.\n{}",
        requests.iter().map(render).collect::<Vec<_>>().join("\n")
    )
}

/// How this server ends its CLI once a shutdown request was carried out: the CLI may not end
/// by itself (an interactive one waits for its next input), so it is signalled; the marker
/// tells the worker that waits for the CLI that this end is the agent's finish, however the
/// CLI took the signal.
#[derive(Debug, Default)]
struct CliEnd {
    /// The CLI's process (this server's parent, or its bridge's; 0 until known).
    pid: std::sync::atomic::AtomicI32,
    /// The CLI's private home, where [`idle::shutdown_marker`] goes.
    home: Option<std::path::PathBuf>,
    /// Ended already.
    done: AtomicBool,
}

impl CliEnd {
    /// Leaves the marker, then asks the CLI to end (`SIGTERM`); once.
    fn end(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(home) = &self.home {
            let marker = idle::shutdown_marker(home);
            if let Err(e) = std::fs::write(&marker, b"") {
                tracing::warn!("cannot write {}: {e}", marker.display());
            }
        }
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 1 {
            use nix::sys::signal::{Signal, kill};
            if let Err(e) = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM) {
                tracing::warn!("cannot end the CLI (pid {pid}): {e}");
            }
        }
    }
}

/// Sorts what the link receives into the inbox until the link ends.
async fn route(mut rx: mpsc::UnboundedReceiver<Inbound>, inbox: Arc<Inbox>) {
    while let Some(i) = rx.recv().await {
        match i {
            Inbound::Message(m) => inbox.push(m),
            Inbound::PermDecided(r) => {
                let _ = inbox.decided.send(Decided::One(r));
            }
            Inbound::Reconnected => {
                let _ = inbox.decided.send(Decided::Reconnected);
            }
            Inbound::Task(_) | Inbound::Fatal(_) => {}
        }
    }
    inbox.gone.store(true, Ordering::SeqCst);
    inbox.arrived.notify_waiters();
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
        // A message is `delivered` only once the CLI has it: it is marked read as it is handed
        // over (a hook's answer, a paste, `wait_for_messages`), not when this server gets it.
        let (link, rx) = Link::start_with(agent, out.clone(), false).await?;
        let config = link.config().await?;
        let is_leader = link.name() == agent_team_protocol::names::LEADER;
        let mut role = config.role(&link.welcome_role()).cloned();
        if let Some(r) = role.as_mut() {
            link.agent().member.apply(r)?;
        }
        let mut server = Self::new(link, rx, &config, role, is_leader);
        server.out = out;
        Ok(server)
    }

    /// A server over an established link, for an agent of `role` (tests build one this way
    /// too). Must be called within a tokio runtime: it starts the task that sorts what the
    /// link receives.
    pub fn new(
        link: Arc<Link>,
        rx: mpsc::UnboundedReceiver<Inbound>,
        config: &agent_team_config::TeamConfig,
        role: Option<Role>,
        is_leader: bool,
    ) -> Self {
        let inbox = Arc::new(Inbox::new());
        tokio::spawn(route(rx, inbox.clone()));
        let root = config
            .workspace
            .canonicalize()
            .unwrap_or_else(|_| config.workspace.clone());
        let ctx = ToolCtx {
            link,
            root,
            groups: CommandGroups::default(),
            team_file: tools::team_file(config),
            runs_later: tools::runs_later(config),
            turns: Arc::new(AtomicU32::new(0)),
            search: config.search.clone(),
        };
        TeamServer {
            ctx: Arc::new(ctx),
            names: Arc::new(tool_names(is_leader)),
            inbox,
            role: Arc::new(role),
            first_input: Arc::new(std::sync::Mutex::new(None)),
            unconfirmed_first: Arc::new(std::sync::Mutex::new(None)),
            interactive: Arc::new(AtomicBool::new(false)),
            idle: Arc::new(AtomicBool::new(false)),
            waking: Arc::new(AtomicBool::new(false)),
            out: Output::null(),
            end: Arc::new(CliEnd::default()),
        }
    }

    /// Types `text` into the agent's pane once the CLI has listed the tools (a launch's
    /// `ToolServing::first_input_file`).
    pub fn first_input_after_listing(&self, text: String) {
        if let Ok(mut f) = self.first_input.lock() {
            *f = Some(text);
        }
        self.interactive.store(true, Ordering::SeqCst);
    }

    /// While the interactive CLI is idle, waits for messages and types them into its pane,
    /// which starts its next turn (they are marked read then); a shutdown request ends the
    /// CLI instead. Looks again each second whether the CLI is still idle (a tool call or a
    /// hook ends that).
    fn wake_when_messages_come(&self) {
        if self.waking.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            while me.idle.load(Ordering::SeqCst) && !me.inbox.gone.load(Ordering::SeqCst) {
                let soon = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
                if !me.inbox.wait_until(soon).await || !me.idle.load(Ordering::SeqCst) {
                    continue;
                }
                let messages = match me.hand_over().await {
                    Handover::Messages(m) if m.is_empty() => continue,
                    Handover::Messages(m) => m,
                    Handover::Shutdown(_) => {
                        me.end.end();
                        break;
                    }
                };
                me.idle.store(false, Ordering::SeqCst);
                me.mark_read(&messages).await;
                me.ctx
                    .link
                    .set_status(agent_team_protocol::AgentStatus::Running)
                    .await;
                let text = format!(
                    "New messages from your team; act on them now:\n{}",
                    messages.iter().map(render).collect::<Vec<_>>().join("\n")
                );
                if let Err(e) = me.ctx.link.call_retry(Request::PaneInput { text }).await {
                    tracing::warn!("could not wake the CLI: {e}");
                }
            }
            me.waking.store(false, Ordering::SeqCst);
        });
    }

    /// Answers the CLI's hooks on `socket` ([`wire`]: one request line, one reply line per
    /// connection): at the turn's end (`stop`) what is queued for the agent (then marked read:
    /// the CLI takes it as its next instruction; with nothing queued the agent is reported
    /// idle; a shutdown request ends the CLI); before a call of one of its own tools
    /// (`permission`) the role's verdict on it.
    pub fn serve_hooks(
        &self,
        socket: &std::path::Path,
        cli: i32,
    ) -> Result<tokio::task::AbortHandle, McpError> {
        let _ = std::fs::remove_file(socket);
        // The hook answers only its CLI: a caller must present this launch's key (in a 0600
        // file beside the socket) and descend from `cli` (the CLI that started this server, or
        // the worker that started the CLI).
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
            Ok(HookRequest::Permission { .. }) if self.inbox.ends() => HookReply::Verdict {
                allow: false,
                reason: "the agent is shutting down".into(),
            },
            Ok(HookRequest::Permission { tool, args }) => {
                let (allow, reason) = self.judge(&tool, args).await;
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
            Err(_) => self.inbox.put_back(taken),
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
            if self.inbox.ends() {
                return (false, "the agent is shutting down".into());
            }
            // Too long to be judged whole (as a request line would be): refused, not cut.
            let len = serde_json::to_string(&args).map_or(0, |a| a.len());
            if len as u64 > permission::PERMISSION_LINE_MAX {
                return (false, wire::WireError::TooLong(len).to_string());
            }
            let (allow, reason) = self.judge(&tool, args).await;
            if !allow {
                return (false, reason);
            }
        }
        (true, String::new())
    }

    /// The idle point: what is queued, in the worker's order, or the end.
    async fn hand_over(&self) -> Handover {
        self.inbox
            .hand_over(self.ctx.link.as_ref(), &self.out)
            .await
    }

    /// The turn-end hook: what is queued (returned with the answer, to be marked read once
    /// the answer is written), or the agent is idle, or (asked to shut down) the end. A first
    /// turn that called no team tool gets its instruction again first, unless it is to end.
    async fn answer_stop(&self) -> (HookReply, Vec<Message>) {
        let again = self
            .unconfirmed_first
            .lock()
            .ok()
            .and_then(|mut u| u.take());
        if let Some(text) = again.filter(|_| !self.inbox.ends()) {
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
            Handover::Shutdown(reason) => return (HookReply::Shutdown { reason }, Vec::new()),
            Handover::Messages(m) => m,
        };
        if messages.is_empty() {
            self.ctx
                .link
                .set_status(agent_team_protocol::AgentStatus::Idle)
                .await;
            if self.interactive.load(Ordering::SeqCst) {
                self.idle.store(true, Ordering::SeqCst);
                self.wake_when_messages_come();
            }
        } else {
            self.ctx
                .link
                .set_status(agent_team_protocol::AgentStatus::Running)
                .await;
        }
        let texts: Vec<String> = messages.iter().map(render).collect();
        (HookReply::Messages { messages: texts }, messages)
    }

    /// Judges a call of the CLI's own tool, given as our tool `tool` with `args`, by the
    /// agent's role: a tool the role lacks or its policy denies is refused; one it allows
    /// goes ahead; one it asks about becomes a permission request of the team, and this
    /// waits for its decision (the daemon denies it after its timeout). Returns (allowed,
    /// why not).
    pub async fn judge(&self, tool: &str, args: Value) -> (bool, String) {
        use agent_team_config::PermAction;
        let Some(role) = self.role.as_ref() else {
            return (false, "the agent's role is not in the team".into());
        };
        if !role.tools.iter().any(|t| t == tool) {
            return (false, format!("the role {} has no {tool}", role.name));
        }
        let call = match ToolCall::parse(tool, &args) {
            Ok(c) => c,
            Err(e) => return (false, e.to_string()),
        };
        let checked = tools::check(&self.ctx, &role.permissions, &call, &args);
        match checked.action {
            PermAction::Allow => (true, String::new()),
            PermAction::Deny => (
                false,
                format!("the role's policy denies {tool} `{}`", checked.input),
            ),
            PermAction::Ask => self.ask(tool, &checked.input, &checked.reason).await,
        }
    }

    /// Raises a permission request and waits for its decision.
    async fn ask(&self, tool: &str, input: &str, reason: &str) -> (bool, String) {
        use agent_team_worker::exec::{decided_meanwhile, raise_permission, verdict};
        // Listening before asking: a decision made at once is not missed.
        let mut decided = self.inbox.decided.subscribe();
        let req = match raise_permission(&self.ctx.link, tool, input, reason).await {
            Ok(r) => r,
            Err(e) => return (false, format!("the team could not be asked: {e}")),
        };
        if let Some(v) = verdict(&req) {
            return v;
        }
        loop {
            match decided.recv().await {
                Ok(Decided::One(r)) if r.id == req.id => {
                    if let Some(v) = verdict(&r) {
                        return v;
                    }
                }
                Ok(Decided::One(_)) => {}
                // Away, or too slow to hear everything: the decision may have been missed.
                Ok(Decided::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(v) = decided_meanwhile(&self.ctx.link, req.id).await {
                        return v;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return (false, "the connection to the team is gone".into());
                }
            }
        }
    }

    /// What is queued for the agent now, marked read (the caller hands it to the CLI).
    async fn mark_read(&self, messages: &[Message]) {
        if messages.is_empty() {
            return;
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
    }

    /// Serves MCP on `transport` (stdio, or a CLI's bridge connection) until it closes.
    async fn serve_on<T, E, A>(self, transport: T) -> Result<(), McpError>
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
        let deadline = tokio::time::Instant::now() + args.timeout();
        if !self.inbox.wait_until(deadline).await && self.inbox.gone.load(Ordering::SeqCst) {
            return CallToolResult::error(vec![Content::text(
                "the connection to the team is gone",
            )]);
        }
        let messages = match self.hand_over().await {
            Handover::Shutdown(reason) => {
                self.end.end();
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
        // The first listing: the CLI has the tools now, so its first instruction may go in.
        if let Some(text) = self.first_input.lock().ok().and_then(|mut f| f.take()) {
            let link = self.ctx.link.clone();
            let unconfirmed = self.unconfirmed_first.clone();
            if let Ok(mut u) = unconfirmed.lock() {
                *u = Some(text.clone());
            }
            tokio::spawn(async move {
                // The CLI makes the listed tools its own a moment after listing them.
                tokio::time::sleep(FIRST_INPUT_SETTLE).await;
                if let Err(e) = link
                    .call_retry(Request::PaneInput { text: text.clone() })
                    .await
                {
                    tracing::warn!("could not give the CLI its first instruction: {e}");
                }
                // A TUI still drawing (a resumed conversation on a loaded machine) can read a
                // paste and drop it: typed once more while nothing shows it arrived (no tool
                // call, no turn's end, which clear it).
                tokio::time::sleep(FIRST_INPUT_CONFIRM).await;
                let lost = unconfirmed
                    .lock()
                    .ok()
                    .is_some_and(|u| u.as_deref() == Some(text.as_str()));
                if lost {
                    tracing::warn!(
                        "the CLI did nothing with its first instruction in {} s: typed again",
                        FIRST_INPUT_CONFIRM.as_secs()
                    );
                    if let Err(e) = link.call_retry(Request::PaneInput { text }).await {
                        tracing::warn!("could not give the CLI its first instruction: {e}");
                    }
                }
            });
        }
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
        // A tool call: the CLI is at work, not idle, and it has the team tools.
        self.idle.store(false, Ordering::SeqCst);
        if let Ok(mut u) = self.unconfirmed_first.lock() {
            *u = None;
        }
        // Another system's name or field spelling for one of ours (Qwen Code's `task_update`,
        // `subject`, `blockedBy`, ...) is a call of ours, rewritten before anything is checked,
        // as the model loop does (`agent_team_tools::translate`).
        let given = Value::Object(request.arguments.unwrap_or_default());
        let me = self.ctx.link.name().to_string();
        let who = agent_team_tools::Caller {
            name: &me,
            is_leader: me == agent_team_protocol::names::LEADER,
            said: "",
        };
        let (name, args, note) = match agent_team_tools::translate(&request.name, &given, who) {
            Err(msg) => return Ok(CallToolResult::error(vec![Content::text(msg)]).into()),
            Ok(Some(t)) => (t.name, t.args, t.note),
            Ok(None) => (request.name.as_ref(), given, None),
        };
        if !self.names.contains(&name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool {name:?} here; the tools are: {}",
                    self.names.join(", ")
                ),
                None,
            ));
        }
        if name == WaitForMessages::NAME {
            let parsed = agent_team_tools::parse::<WaitForMessages>(name, &args)
                .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
            return Ok(self.wait_for_messages(&parsed).await.into());
        }
        // A CLI polling its inbox takes what is queued for it here (and marks it read), as a
        // wait that does not wait; asking for read ones too is the board's inbox.
        if name == agent_team_tools::ReadInbox::NAME {
            let parsed = agent_team_tools::parse::<agent_team_tools::ReadInbox>(name, &args)
                .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
            if parsed.unread_only.unwrap_or(true) {
                let now = WaitForMessages { timeout_s: Some(0) };
                return Ok(self.wait_for_messages(&now).await.into());
            }
        }
        let call = ToolCall::parse(name, &args)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let outcome = tools::run(&self.ctx, &call).await;
        let text = match note {
            Some(n) => format!("{n}{}", outcome.content),
            None => outcome.content,
        };
        let content = vec![Content::text(text)];
        Ok(if outcome.is_error {
            CallToolResult::error(content)
        } else {
            CallToolResult::success(content)
        }
        .into())
    }
}

/// One message as the CLI is given it.
fn render(m: &Message) -> String {
    format!("[message {} from {}] {}", m.id, m.from, m.body)
}

/// How long after its first tool listing a CLI's first instruction is typed.
const FIRST_INPUT_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after typing its first instruction a CLI that has neither called a tool nor ended
/// a turn is taken to have lost it, and it is typed once more (a model slower than this to its
/// first tool call sees the instruction twice).
const FIRST_INPUT_CONFIRM: std::time::Duration = std::time::Duration::from_secs(20);

/// The most hook connections answered at once (a CLI runs one hook at a time per tool call;
/// Claude Code may run a few tool calls in parallel).
const HOOK_CONNECTIONS_MAX: usize = 32;

/// How long the hook socket waits for a request line.
const HOOK_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The file holding the hook key of the server listening on `socket` (beside it, 0600).
pub fn hook_key_file(socket: &std::path::Path) -> std::path::PathBuf {
    socket.with_file_name("hook.key")
}

/// Whether process `pid` is `ancestor` or descends from it (read from `/proc`, at most 64
/// generations up).
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == ancestor {
            return true;
        }
        if p <= 1 {
            return false;
        }
        let Some(ppid) = host::parent_of(p) else {
            return false;
        };
        p = ppid;
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_protocol::{MessageKind, Timestamp};

    use agent_team_worker::idle::{Call, FakeDaemon};

    fn msg(id: u64, from: &str, kind: MessageKind) -> Message {
        Message {
            id,
            from: from.into(),
            to: "cc".into(),
            kind,
            body: format!("body {id}"),
            summary: None,
            ts: Timestamp::from(std::time::SystemTime::now()),
            state: DeliveryState::Delivered,
        }
    }

    fn inbox(msgs: Vec<Message>) -> Inbox {
        let inbox = Inbox::new();
        for m in msgs {
            inbox.push(m);
        }
        inbox
    }

    fn ids(h: &Handover) -> Vec<u64> {
        match h {
            Handover::Messages(m) => m.iter().map(|m| m.id).collect(),
            Handover::Shutdown(_) => panic!("not messages: {h:?}"),
        }
    }

    #[tokio::test]
    async fn the_cli_is_handed_messages_in_the_workers_order_and_marks_them_read_itself() {
        let daemon = FakeDaemon::new("cc");
        let inbox = inbox(vec![
            msg(1, "b2", MessageKind::Text),
            msg(2, "operator", MessageKind::Text),
            msg(3, "b3", MessageKind::TaskEvent),
            msg(4, "leader", MessageKind::Text),
            msg(5, "daemon", MessageKind::Permission),
        ]);
        assert!(!inbox.ends());
        let h = inbox.hand_over(&daemon, &Output::null()).await;
        assert_eq!(ids(&h), [2, 4, 5, 1, 3]);
        assert!(daemon.calls().is_empty(), "read once the CLI has them");
        assert!(inbox.is_empty());
        let h = inbox.hand_over(&daemon, &Output::null()).await;
        assert_eq!(h, Handover::Messages(Vec::new()));
        // Put back (the hook went away): first again, still in order.
        inbox.push(msg(9, "b2", MessageKind::Text));
        inbox.put_back(vec![msg(6, "leader", MessageKind::Text)]);
        let h = inbox.hand_over(&daemon, &Output::null()).await;
        assert_eq!(ids(&h), [6, 9]);
    }

    #[tokio::test]
    async fn a_shutdown_request_is_answered_read_and_ends_every_later_hand_over() {
        let daemon = FakeDaemon::new("cc");
        let inbox = inbox(vec![
            msg(7, "leader", MessageKind::Text),
            msg(8, "b2", MessageKind::Text),
            msg(9, "leader", MessageKind::ShutdownRequest),
            msg(10, "operator", MessageKind::ShutdownRequest),
            msg(11, "leader", MessageKind::ShutdownRequest),
        ]);
        assert!(
            inbox.ends(),
            "a queued shutdown request is the next hand-over"
        );
        let Handover::Shutdown(reason) = inbox.hand_over(&daemon, &Output::null()).await else {
            panic!("not the end")
        };
        assert!(reason.contains("shut down"), "{reason}");
        assert!(
            reason.contains("[message 9 from leader] body 9")
                && reason.contains("[message 10 from operator] body 10"),
            "{reason}"
        );
        assert!(!reason.contains("body 7"), "nothing else is handed over");
        assert_eq!(
            daemon.calls(),
            [
                Call::Answer {
                    to: "leader".into(),
                    key: "shutdown-9".into()
                },
                Call::Read(vec![9, 10, 11]),
            ],
            "the leader answered once, the operator not at all, then read; 7 and 8 stay unread"
        );
        // From now on the CLI is handed the end and nothing else, and nobody waits for it.
        inbox.push(msg(12, "leader", MessageKind::Text));
        assert!(!inbox.is_empty() && inbox.ends());
        assert!(inbox.wait_until(tokio::time::Instant::now()).await);
        assert_eq!(
            inbox.hand_over(&daemon, &Output::null()).await,
            Handover::Shutdown(reason)
        );
        assert_eq!(daemon.calls().len(), 2, "answered once");
    }

    #[test]
    fn ending_the_cli_leaves_the_marker_and_signals_it_once() {
        use std::os::unix::process::ExitStatusExt;
        let home = tempfile::tempdir().unwrap();
        let mut cli = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let end = CliEnd {
            pid: std::sync::atomic::AtomicI32::new(cli.id() as i32),
            home: Some(home.path().to_path_buf()),
            done: AtomicBool::new(false),
        };
        end.end();
        let status = cli.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(nix::sys::signal::Signal::SIGTERM as i32)
        );
        assert!(idle::take_shutdown_marker(home.path()));
        end.end();
        assert!(
            !idle::take_shutdown_marker(home.path()),
            "ended once: no second marker"
        );
        // A server that knows no CLI (built by `new`) ends nothing.
        CliEnd::default().end();
    }
}
