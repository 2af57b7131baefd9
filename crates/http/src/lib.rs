//! The team as an HTTP service (`agent-team serve`): REST for what the CLI does, every team's
//! event log as Server-Sent Events, the NexAU-compatible `POST /team/stream`, the OpenAPI
//! document built from the wire types, and the web board at `/`.
//!
//! This crate only translates HTTP to the team protocol. What it asks of the teams on this
//! machine (read, act as the operator, start, stop, follow the event log) goes through the
//! [`Teams`] trait, which the CLI implements over the client library and tests implement
//! over a fake, so the HTTP layer is tested without daemons.

mod auth;
mod board;
mod conns;
mod error;
mod guard;
pub mod hooks;
pub mod openapi;
mod rest;
mod sessions;
mod sse;
#[cfg(test)]
mod tests;

pub use auth::{TOKEN_ENV, Token, TokenSource};
pub use conns::{Accept, ConnLimits, serve};
pub use error::ApiError;
pub use guard::{HostError, allowed_hosts};
pub use hooks::{HookDef, Hooks};

use agent_team_protocol::{Envelope, ErrorBody, Reply, Request};
use axum::Router;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (SPEC: bodies over 1 MiB get 413).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One team on this machine as `GET /v1/teams` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamSummary {
    /// The team's name.
    pub name: String,
    /// Whether its daemon is running.
    pub running: bool,
    /// How its run stands (`idle`, `running`, `finished`, `failed`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<agent_team_protocol::RunState>,
    /// The goal of its current or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
}

/// What the HTTP API needs from the teams on this machine. Every method blocks; the server
/// calls them off its async threads.
pub trait Teams: Send + Sync + 'static {
    /// The teams that have state on this machine.
    fn list(&self) -> Result<Vec<TeamSummary>, ErrorBody>;
    /// A read-only request: answered by the running daemon, else from the stopped team's
    /// stored state. Never starts a daemon or creates a team (`not_found` when none).
    fn read(&self, team: &str, req: Request) -> Result<Reply, ErrorBody>;
    /// A request as the operator, starting the team's daemon when needed; a retry after a
    /// lost connection carries the same request id, so it is applied once.
    fn call(&self, team: &str, req: Request) -> Result<Reply, ErrorBody>;
    /// Starts a run of `team` from the served team file (or the team's stored configuration)
    /// with `goal` and `variables`, and `secrets` for its commands beside the server's own
    /// (kept out of prompts and the store, masked in what agents read back); returns the
    /// newest event sequence number before the run.
    fn up(
        &self,
        team: &str,
        goal: Option<String>,
        variables: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
    ) -> Result<u64, ErrorBody>;
    /// Stops the team's agents and daemon (state kept); `false` when it was not running.
    fn down(&self, team: &str) -> Result<bool, ErrorBody>;
    /// Follows the team's event log from after `since`, starting its daemon if it crashed.
    fn follow(&self, team: &str, since: u64) -> Result<Box<dyn Follow>, ErrorBody>;
}

/// A live subscription to one team's event log.
pub trait Follow: Send {
    /// The next envelope, or `Ok(None)` when none came within `wait`. A lost daemon is
    /// reached again (restarted if it crashed) and followed from the last envelope returned;
    /// a team stopped on purpose ends the stream with `invalid_state`.
    fn next(&mut self, wait: Duration) -> Result<Option<Envelope>, ErrorBody>;
}

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bearer token every request must carry.
    pub token: Token,
    /// The team name sessions of `POST /team/stream` are derived from (the served file's).
    pub base_team: String,
    /// Variables from `serve --var`, under those of each request.
    pub variables: BTreeMap<String, String>,
    /// How long a stream waits for an event before it checks its client and the team again.
    pub poll: Duration,
    /// At most this many event streams at once (each holds a thread and a daemon
    /// connection); one more is refused with 429 `limit_exceeded`.
    pub max_streams: usize,
    /// How long a session team of `POST /team/stream` may go unstreamed (whether its run ended
    /// or still runs) before the server stops its daemon (state kept; its next message starts
    /// it again).
    /// `None`: never.
    pub session_idle: Option<Duration>,
    /// At most this many session teams of `POST /team/stream` at once (those this server
    /// started or streamed and has not stopped); a new session past it gets 429
    /// `limit_exceeded`.
    pub max_sessions: usize,
    /// The host names a request's `Host` may carry ([`allowed_hosts`]); any other is refused
    /// with 403, so a web page that rebinds its DNS name to this machine gets nothing.
    pub allowed_hosts: Vec<String>,
}

/// Shared by every request handler.
struct App {
    teams: Arc<dyn Teams>,
    settings: Settings,
    /// Event streams open now.
    streams: Arc<std::sync::atomic::AtomicUsize>,
    /// The session teams streamed, for stopping the idle ones.
    sessions: Arc<sessions::Sessions>,
    /// The webhooks of `POST /v1/teams/{team}/hooks/{name}` (none: every hook is 404).
    hooks: Option<Arc<dyn Hooks>>,
    /// Each webhook's rate.
    limiter: hooks::Limiter,
}

/// The whole API as an axum router (auth, body limit, JSON errors included).
pub fn router(teams: Arc<dyn Teams>, settings: Settings) -> Router {
    router_with_hooks(teams, settings, None)
}

/// [`router`] with webhook triggers served from `hooks`.
pub fn router_with_hooks(
    teams: Arc<dyn Teams>,
    settings: Settings,
    hooks: Option<Arc<dyn Hooks>>,
) -> Router {
    let idle = settings.session_idle;
    let app = Arc::new(App {
        teams,
        settings,
        streams: Arc::default(),
        sessions: Arc::default(),
        hooks,
        limiter: hooks::Limiter::default(),
    });
    if let Some(idle) = idle {
        sessions::start_reaper(Arc::downgrade(&app), idle);
    }
    rest::routes(app)
}

/// Where `serve` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket path (`unix:PATH`).
    Unix(PathBuf),
}

/// Why a `--listen` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenError {
    /// Neither `HOST:PORT` nor `unix:PATH`.
    #[error("cannot parse listen address {0:?}: use HOST:PORT (e.g. 127.0.0.1:8000) or unix:PATH")]
    Parse(String),
    /// Not a loopback address and `--allow-remote` not given.
    #[error(
        "refusing to listen on {0}, which is not a loopback address: anyone who can reach it \
         could try the token (give --allow-remote to do it anyway, behind TLS)"
    )]
    Remote(SocketAddr),
}

impl Listen {
    /// Parses `HOST:PORT`, `[::1]:PORT`, `localhost:PORT` or `unix:PATH`; a non-loopback TCP
    /// address is refused unless `allow_remote`.
    pub fn parse(s: &str, allow_remote: bool) -> Result<Self, ListenError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ListenError::Parse(s.to_string()));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = match s.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}").parse(),
            None => s.parse(),
        }
        .map_err(|_| ListenError::Parse(s.to_string()))?;
        if !addr.ip().is_loopback() && !allow_remote {
            return Err(ListenError::Remote(addr));
        }
        Ok(Listen::Tcp(addr))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "http://{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The team a `(user_id, session_id)` pair of `POST /team/stream` names: the served team's
/// name (cut to fit) and a hash of the pair, a valid team name that is the same after any
/// restart, so the session's team is found again.
pub fn session_team(base: &str, user_id: &str, session_id: &str) -> String {
    // FNV-1a over both ids with a separator no id contains in the same place twice.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(session_id.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let base: String = base.chars().take(14).collect();
    let base = base.trim_end_matches('-');
    format!("{base}-s{h:016x}")
}
