//! The team's model gateway (issue 65): the one place an agent CLI teammate's model calls go.
//! Each CLI is given the gateway's address and a per-agent token (random, made at its launch,
//! useless anywhere else) instead of its model's key; the gateway finds the agent by that
//! token (compared in constant time), swaps it for the real key of the agent's role and
//! forwards the request to the role's upstream, passing the response through as it comes
//! (server-sent events chunk by chunk, nothing buffered).
//!
//! It speaks every CLI's dialect ([`Dialect`]): Anthropic Messages, OpenAI Chat Completions
//! and Responses, and Gemini's `generateContent`/`streamGenerateContent`. Before a model call
//! it asks its [`Meter`] for a budget lease; a spent budget is answered with an error in the
//! CLI's own dialect, and the meter is told. After it, the usage the response reported (whole
//! or streamed, cache reads and writes too) goes to the meter with the call's model, status
//! and latency. The daemon is the meter: it records the usage like its own agents', settles
//! the lease, and stops an agent whose budget is spent. The gateway knows no daemon.
//!
//! A request's path under the gateway is the path under the upstream: a CLI is given the
//! gateway's address with the upstream base URL's path ([`Gateway::client_base`]), so
//! `http://GW/v1` stands for `https://api.openai.com/v1`.

mod dialect;

pub use dialect::{Dialect, ErrorKind, Usage, UsageReader};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::Stream;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Its socket, thread or runtime.
    #[error("the model gateway cannot start: {0}")]
    Io(#[from] std::io::Error),
    /// Its HTTP client.
    #[error("the model gateway cannot make its HTTP client: {0}")]
    Client(String),
}

/// What the meter says of a model call about to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A lease is held: forward it.
    Go,
    /// Other calls in flight hold the rest of the budget: ask again shortly.
    Wait(String),
    /// The budget is spent (in words): refuse it.
    Stop(String),
}

/// The future a [`Meter::check`] returns.
pub type VerdictFuture = Pin<Box<dyn Future<Output = Verdict> + Send + 'static>>;

/// A model call about to be made, for its budget lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The model asked for.
    pub model: String,
    /// The prompt's tokens, estimated from the request's size.
    pub input_tokens: u64,
    /// The most output tokens the request allows, when it says.
    pub output_tokens: Option<u64>,
}

/// One model call through the gateway, once its response has ended (or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The agent whose token it carried.
    pub agent: String,
    /// The model asked for.
    pub model: String,
    /// Its API.
    pub dialect: Dialect,
    /// Whether the response was server-sent events.
    pub streamed: bool,
    /// The HTTP status the CLI was given.
    pub status: u16,
    /// The usage the response reported; `None` when it reported none (an error, a cut stream).
    pub usage: Option<Usage>,
    /// From the request's arrival to the response's end.
    pub latency: Duration,
    /// From the request's arrival to the response's first body bytes.
    pub first_byte: Option<Duration>,
    /// Why it failed, when it did (the budget, the upstream unreachable).
    pub error: Option<String>,
}

/// Who keeps the budget and the count: the daemon.
pub trait Meter: Send + Sync + 'static {
    /// A lease for `agent`'s next model call.
    fn check(&self, agent: &str, ask: Ask) -> VerdictFuture;
    /// A call ended: its usage settles the lease (none: the lease is dropped).
    fn done(&self, call: Call);
    /// A call of `agent` was refused for a spent budget (`why`): the agent is to stop.
    fn budget_spent(&self, agent: &str, why: &str);
}

/// Where one agent's calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The upstream's base URL (the role's `base_url`, or its provider's usual one).
    pub upstream: String,
    /// The real key, added to each request; `None`: none is added (a local server).
    pub key: Option<String>,
}

/// The gateway's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes of a request body.
    pub body_bytes: usize,
    /// The time to connect to the upstream.
    pub connect_timeout: Duration,
    /// How long a call may wait for the budget while other calls hold it.
    pub budget_wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            budget_wait: Duration::from_secs(600),
        }
    }
}

/// The registered agents: by agent, its token and route.
type Routes = RwLock<HashMap<String, (String, Route)>>;

struct Inner {
    routes: Routes,
    meter: Arc<dyn Meter>,
    client: reqwest::Client,
    limits: Limits,
}

/// A running gateway on `127.0.0.1`, served on a thread and runtime of its own; it stops
/// when dropped.
pub struct Gateway {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let agents: Vec<String> = self
            .inner
            .routes
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("agents", &agents)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Binds `127.0.0.1:0` and serves on a thread of its own.
    pub fn start(meter: Arc<dyn Meter>, limits: Limits) -> Result<Gateway, Error> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let inner = Arc::new(Inner {
            routes: RwLock::new(HashMap::new()),
            meter,
            client,
            limits,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(inner.clone());
        std::thread::Builder::new()
            .name("model-gateway".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("the model gateway cannot listen: {e}");
                            return;
                        }
                    };
                    // No Nagle on the CLIs' side either: a stream's last small event otherwise
                    // waits for the client's delayed ACK (~40 ms on every streamed response,
                    // measured by `BENCH_SECTION=gateway`).
                    use axum::serve::ListenerExt as _;
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(e) = serve.await {
                        tracing::warn!("the model gateway stopped: {e}");
                    }
                });
            })?;
        Ok(Gateway {
            inner,
            addr,
            shutdown: Some(tx),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a CLI is given for `upstream`: the gateway's address with the upstream's
    /// path (`https://api.openai.com/v1` → `http://127.0.0.1:PORT/v1`).
    pub fn client_base(&self, upstream: &str) -> String {
        format!("http://{}{}", self.addr, base_path(upstream))
    }

    /// Registers `agent` (replacing an earlier registration and its token) and returns its
    /// new token.
    pub fn register(&self, agent: &str, route: Route) -> Result<String, Error> {
        let token = new_token()?;
        if let Ok(mut r) = self.inner.routes.write() {
            r.insert(agent.to_string(), (token.clone(), route));
        }
        Ok(token)
    }

    /// The agent `token` belongs to, if it is registered (compared in constant time).
    pub fn agent_of(&self, token: &str) -> Option<String> {
        find(&self.inner.routes, token).map(|(agent, _)| agent)
    }

    /// Forgets `agent`: its token is refused from now on.
    pub fn forget(&self, agent: &str) {
        if let Ok(mut r) = self.inner.routes.write() {
            r.remove(agent);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A new token: `atg-` and 32 random bytes in hex.
fn new_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("atg-{hex}"))
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The path of a base URL (`https://h/v1` → `/v1`; none → empty), without its last `/`.
fn base_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or("", |i| &rest[i..])
        .trim_end_matches('/')
}

/// The scheme and authority of a base URL (`https://h:1/v1` → `https://h:1`).
fn origin(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let end = rest.find('/').map_or(url.len(), |i| scheme.len() + 3 + i);
    &url[..end]
}

fn router(inner: Arc<Inner>) -> Router {
    let limit = inner.limits.body_bytes;
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(inner)
}

/// The credential a request carries (`x-api-key`, `Authorization: Bearer`, `x-goog-api-key`,
/// else Gemini's `?key=`).
fn credential(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-api-key")
        .or_else(|| {
            header("authorization").and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        })
        .or_else(|| header("x-goog-api-key"))
        .map(|s| s.trim().to_string())
        .or_else(|| {
            uri.query()?
                .split('&')
                .find_map(|kv| kv.strip_prefix("key="))
                .map(str::to_string)
        })
}

/// The query without its `key` parameter.
fn query_without_key(q: Option<&str>) -> String {
    let kept: Vec<&str> = q
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("key="))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// Headers not passed on either way (hop by hop, the credentials, what the gateway sets).
fn passed(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "authorization"
            | "x-api-key"
            | "x-goog-api-key"
            | "accept-encoding"
    )
}

fn refuse(dialect: Dialect, kind: ErrorKind, message: &str) -> Response {
    let body = dialect.error_body(kind, message).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(dialect.status(kind)).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The SDKs underneath the CLIs read this: a refusal is not worth a retry.
    r.headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    r
}

/// The agent `token` belongs to, compared against every registered token in constant time.
fn find(routes: &Routes, token: &str) -> Option<(String, Route)> {
    let routes = routes.read().ok()?;
    let mut found = None;
    for (agent, (t, route)) in routes.iter() {
        if same(t.as_bytes(), token.as_bytes()) {
            found = Some((agent.clone(), route.clone()));
        }
    }
    found
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    let path = uri.path().to_string();
    let dialect = Dialect::of(&path);
    let Some((agent, route)) = credential(&headers, &uri).and_then(|t| find(&inner.routes, &t))
    else {
        return refuse(
            dialect,
            ErrorKind::Unauthorized,
            "agent-team model gateway: no token, or not one of this team's agents'",
        );
    };
    let mut json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = dialect.model(&path, &json);
    let streamed_ask = json["stream"].as_bool() == Some(true);
    let mut body = body;
    // A chat-completions stream reports usage only when asked: ask, so it is counted.
    if dialect == Dialect::OpenAiChat && streamed_ask && json.get("stream_options").is_none() {
        json["stream_options"] = serde_json::json!({"include_usage": true});
        body = Bytes::from(json.to_string());
    }
    let call = |status: u16, error: Option<String>| Call {
        agent: agent.clone(),
        model: model.clone(),
        dialect,
        streamed: false,
        status,
        usage: None,
        latency: start.elapsed(),
        first_byte: None,
        error,
    };
    if dialect.counted() {
        let ask = Ask {
            model: model.clone(),
            input_tokens: (body.len() as u64).div_ceil(4),
            output_tokens: dialect.max_output(&json),
        };
        let mut delay = Duration::from_millis(50);
        loop {
            match inner.meter.check(&agent, ask.clone()).await {
                Verdict::Go => break,
                Verdict::Stop(why) => {
                    inner.meter.done(call(
                        dialect.status(ErrorKind::Budget),
                        Some(format!("budget: {why}")),
                    ));
                    inner.meter.budget_spent(&agent, &why);
                    return refuse(
                        dialect,
                        ErrorKind::Budget,
                        &format!("agent-team: the budget is spent: {why}"),
                    );
                }
                Verdict::Wait(why) => {
                    if start.elapsed() > inner.limits.budget_wait {
                        inner.meter.done(call(
                            dialect.status(ErrorKind::Budget),
                            Some(format!("budget: {why}")),
                        ));
                        return refuse(
                            dialect,
                            ErrorKind::Budget,
                            &format!("agent-team: waited too long for the budget: {why}"),
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    let url = format!(
        "{}{}{}",
        origin(&route.upstream),
        path,
        query_without_key(uri.query())
    );
    let mut req = inner.client.request(method, &url);
    for (name, value) in headers.iter().filter(|(n, _)| passed(n)) {
        req = req.header(name, value);
    }
    if let Some(key) = &route.key {
        let (name, value) = dialect.key_header(key);
        req = req.header(name, value);
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let why = format!("agent-team model gateway: the upstream {url} failed: {e}");
            inner.meter.done(call(502, Some(why.clone())));
            return refuse(dialect, ErrorKind::Upstream, &why);
        }
    };
    let status = resp.status();
    let sse = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut out = Response::builder().status(status.as_u16());
    for (name, value) in resp.headers().iter().filter(|(n, _)| passed(n)) {
        out = out.header(name, value);
    }
    let tally = Tally {
        meter: dialect.counted().then(|| inner.meter.clone()),
        reader: Some(UsageReader::new(dialect, sse)),
        call: Call {
            streamed: sse,
            status: status.as_u16(),
            ..call(status.as_u16(), None)
        },
        start,
    };
    let stream = Passing {
        resp: Some(resp),
        pending: None,
        tally,
    };
    out.body(Body::from_stream(stream)).unwrap_or_else(|e| {
        refuse(
            dialect,
            ErrorKind::Upstream,
            &format!("agent-team model gateway: {e}"),
        )
    })
}

/// What a passing response is counted into; reported to the meter when it is dropped (the
/// response ended, or the CLI went away).
struct Tally {
    meter: Option<Arc<dyn Meter>>,
    reader: Option<UsageReader>,
    call: Call,
    start: Instant,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        let mut call = self.call.clone();
        call.latency = self.start.elapsed();
        call.usage = self.reader.take().and_then(UsageReader::finish);
        meter.done(call);
    }
}

type ChunkFuture = Pin<
    Box<dyn Future<Output = (reqwest::Response, reqwest::Result<Option<Bytes>>)> + Send + 'static>,
>;

/// The upstream's body passed on chunk by chunk, each read for usage on its way.
struct Passing {
    resp: Option<reqwest::Response>,
    pending: Option<ChunkFuture>,
    tally: Tally,
}

impl Stream for Passing {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.pending.is_none() {
            let Some(mut resp) = this.resp.take() else {
                return Poll::Ready(None);
            };
            this.pending = Some(Box::pin(async move {
                let chunk = resp.chunk().await;
                (resp, chunk)
            }));
        }
        let Some(fut) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((resp, chunk)) => {
                this.pending = None;
                match chunk {
                    Ok(Some(bytes)) => {
                        this.resp = Some(resp);
                        if this.tally.call.first_byte.is_none() {
                            this.tally.call.first_byte = Some(this.tally.start.elapsed());
                        }
                        if let Some(r) = this.tally.reader.as_mut() {
                            r.feed(&bytes);
                        }
                        Poll::Ready(Some(Ok(bytes)))
                    }
                    Ok(None) => Poll::Ready(None),
                    Err(e) => {
                        this.tally.call.error = Some(format!("the upstream's body failed: {e}"));
                        Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
