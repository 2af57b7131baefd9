//! A scripted mock model server speaking the real wire formats, streamed or whole, for tests
//! and benches: no network, no keys. It answers OpenAI's chat completions and Responses API,
//! Anthropic's messages and Google's Gemini API (`generateContent`, `streamGenerateContent`
//! with `alt=sse`, `countTokens`), all on one port.
//!
//! Each request is matched to an agent by the line `Your name is NAME.` in its system prompt
//! (or, for an agent CLI with a system prompt of its own, in its first user message that has
//! it) and answered with the next [`Step`] of that agent's script. Every request body is
//! kept, so a test can check what the client sent.
//!
//! With [`MockModel::account_caching`] the answers report the prompt cache's reads and writes
//! as each provider bills them (see the `cache` module for the rules and their sources), and
//! [`MockModel::billed`] sums what each agent was billed.

mod cache;
mod render;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Which API the server is addressed as: it decides [`MockModel::base_url`]. The server
/// answers every API's paths either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/chat/completions` (also `/chat/completions`).
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1beta/models/MODEL:streamGenerateContent?alt=sse` and `…:generateContent`
    /// (Google's Gemini API, as the Gemini CLI calls it with `GOOGLE_GEMINI_BASE_URL`).
    ///
    /// The Gemini CLI (0.61.0) run headless with `-m MODEL` makes no side request. Without
    /// `-m` it first asks a router model (system prompt "You are a specialized Task Routing
    /// AI"), and an interactive start in a home with an earlier session asks for a session
    /// title ("Summarize the user's primary intent"); no setting turns the latter off, so a
    /// test that meets either answers it with [`MockModel::answer_aside`] (see
    /// docs/CLIS-research-gemini.md).
    Gemini,
}

/// A switch a test opens to release answers held by [`Step::Gate`]: lets a test order a
/// script against other agents' actions without guessing delays.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the gate for good.
    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Gate::open`] was called.
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How long a [`Step::Gate`] holds an answer at most.
const GATE_LIMIT: Duration = Duration::from_secs(60);

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An assistant turn with only text; it ends the turn (`stop` / `end_turn` / `STOP`).
    Text(String),
    /// An assistant turn calling these tools (name, arguments); ids are `call_1`, `call_2`, …
    /// and the turn stops for the tools (`tool_calls` / `tool_use`; Gemini says `STOP` and
    /// sends `functionCall` parts).
    Tools(Vec<(String, Value)>),
    /// Text followed by tool calls.
    TextAndTools(String, Vec<(String, Value)>),
    /// One tool call whose arguments are this raw text, valid JSON or not: (name, arguments).
    RawToolArgs(String, String),
    /// An HTTP error with this status and the API's error body (`{"error":{"message":…,
    /// "type":…}}`; Gemini: `{"error":{"code":…,"message":…,"status":…}}`).
    Status(u16, String),
    /// Wait, then answer with the inner step.
    Delay(Duration, Box<Step>),
    /// Hold the answer until the gate is open (at most a minute), then answer the inner step.
    Gate(Gate, Box<Step>),
    /// Answer the inner step reporting exactly these token counts instead of the plausible
    /// ones made up from the sizes (each API in its own fields: see [`MockUsage`]).
    WithUsage(MockUsage, Box<Step>),
    /// Answer the inner step with no `usage` at all, as local OpenAI-compatible servers do:
    /// chat completions without the `usage` object, whole or streamed (no usage chunk even
    /// when the request asks with `stream_options.include_usage`). Other APIs keep theirs.
    WithoutUsage(Box<Step>),
    /// Answer `then` (and move on) once the request contains every one of these strings
    /// anywhere in its body; until then answer `meanwhile` and stay on this step. Lets a
    /// script wait for events (a teammate's report) whose number of turns is not known.
    Until {
        /// Strings the request body must contain.
        needles: Vec<String>,
        /// The answer once they all appear.
        then: Box<Step>,
        /// The answer before that.
        meanwhile: Box<Step>,
    },
}

/// Token counts a scripted answer reports, in the meaning of `agent_team_model::Usage`:
/// `input` counts every prompt token, `cached` (cache reads) and `cache_write` included.
///
/// OpenAI gets `prompt_tokens = input`, `prompt_tokens_details.cached_tokens = cached`;
/// Anthropic `input_tokens = input - cached - cache_write`, `cache_read_input_tokens =
/// cached`, `cache_creation_input_tokens = cache_write`. Streamed, OpenAI's come in the last
/// chunk (only when the request asked with `stream_options.include_usage`, as the real API
/// does), Anthropic's input side in `message_start` and the output in `message_delta`.
/// Gemini gets `usageMetadata` with `promptTokenCount = input`, `candidatesTokenCount =
/// output`, `totalTokenCount` their sum and `cachedContentTokenCount = cached` (left out when
/// 0, as the API leaves it out); streamed, in the last event only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MockUsage {
    /// Every prompt token.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens read from the cache (part of `input`).
    pub cached: u64,
    /// Prompt tokens written to the cache (part of `input`; Anthropic only).
    pub cache_write: u64,
}

/// The tokens billed to one agent, summed over its answered requests, each at its own price:
/// the four are disjoint (`input + cache_write + cache_read` is every prompt token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Billed {
    /// Prompt tokens at the full input price (neither read from nor written to the cache).
    pub input: u64,
    /// Prompt tokens written to the cache (Anthropic's cache-write price; OpenAI bills none).
    pub cache_write: u64,
    /// Prompt tokens read from the cache (the cached price).
    pub cache_read: u64,
    /// Completion tokens.
    pub output: u64,
}

impl Billed {
    /// Every prompt token.
    pub fn prompt(&self) -> u64 {
        self.input + self.cache_write + self.cache_read
    }

    /// The share of prompt tokens read from the cache, 0 to 1 (0 with no prompt).
    pub fn cached_share(&self) -> f64 {
        match self.prompt() {
            0 => 0.0,
            all => self.cache_read as f64 / all as f64,
        }
    }

    /// Adds one answer's counts.
    fn add(&mut self, u: MockUsage) {
        let cache_write = u.cache_write.min(u.input);
        let cache_read = u.cached.min(u.input - cache_write);
        self.input += u.input - cache_write - cache_read;
        self.cache_write += cache_write;
        self.cache_read += cache_read;
        self.output += u.output;
    }
}

impl std::ops::Add for Billed {
    type Output = Billed;

    fn add(self, o: Billed) -> Billed {
        Billed {
            input: self.input + o.input,
            cache_write: self.cache_write + o.cache_write,
            cache_read: self.cache_read + o.cache_read,
            output: self.output + o.output,
        }
    }
}

impl Step {
    /// One turn calling these tools (name, arguments), as tests write them.
    pub fn tools(calls: &[(&str, Value)]) -> Step {
        Step::Tools(
            calls
                .iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect(),
        )
    }

    /// `then` once a request contains every needle; the text `meanwhile` before that.
    pub fn until(needles: &[&str], then: Step, meanwhile: &str) -> Step {
        Step::Until {
            needles: needles.iter().map(|s| s.to_string()).collect(),
            then: Box::new(then),
            meanwhile: Box::new(Step::Text(meanwhile.into())),
        }
    }

    /// This step, reporting `input`, `output` and `cached` tokens.
    pub fn with_usage(self, input: u64, output: u64, cached: u64) -> Step {
        Step::WithUsage(
            MockUsage {
                input,
                output,
                cached,
                cache_write: 0,
            },
            Box::new(self),
        )
    }
}

/// What the server has been told and has seen.
#[derive(Debug, Default)]
struct Inner {
    /// The steps still to answer, per agent.
    scripts: HashMap<String, VecDeque<Step>>,
    /// Every request body, per agent.
    requests: HashMap<String, Vec<Value>>,
    /// When each request arrived, per agent.
    times: HashMap<String, Vec<Instant>>,
    /// Bodies that named no agent or found its script empty.
    unmatched: Vec<Value>,
    /// Side requests a CLI makes of its own (a session title, say): a request containing the
    /// needle is answered with the text, takes no step and is kept apart from `requests`.
    asides: Vec<(String, String)>,
    /// The side requests answered.
    aside_requests: Vec<Value>,
    /// The credential each request carried (`Authorization`, `x-api-key`,
    /// `x-goog-api-key` or Gemini's `?key=`), per agent.
    keys: HashMap<String, Vec<Option<String>>>,
    /// The provider's prompt cache, for [`MockModel::account_caching`].
    cache: cache::PromptCache,
    /// How far the cache's clock is ahead of the real one ([`MockModel::advance_clock`]).
    clock_offset: Duration,
    /// The tokens billed, per agent.
    billed: HashMap<String, Billed>,
}

/// The state the handlers share with the [`MockModel`] handle.
#[derive(Debug, Default)]
struct Shared {
    /// The scripts and the record.
    inner: Mutex<Inner>,
    /// The last tool-call id number handed out.
    next_call: AtomicU64,
    /// The last request number handed out (the prompt cache's writer of its entries).
    next_request: AtomicU64,
    /// The last response id number handed out.
    next_response: AtomicU64,
    /// Every chat-completions answer leaves out `usage` (see [`Step::WithoutUsage`]).
    omit_usage: AtomicBool,
    /// Usage accounts the prompt cache as the provider does ([`MockModel::account_caching`]).
    caching: AtomicBool,
    /// Request bodies are not kept ([`MockModel::keep_requests`]).
    forget_requests: AtomicBool,
}

impl Shared {
    /// The state, even if a panicking test thread poisoned the lock: the record is still useful.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running mock server; it stops when dropped.
#[derive(Debug)]
pub struct MockModel {
    /// Which API the base URL is for.
    wire: Wire,
    /// Where it listens.
    addr: SocketAddr,
    /// The scripts and the record.
    shared: Arc<Shared>,
    /// Stops the accept loop.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server's own thread, for [`MockModel::start_background`].
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockModel {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(wire: Wire) -> std::io::Result<MockModel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(serve(listener, Arc::clone(&shared), rx));
        Ok(MockModel {
            wire,
            addr,
            shared,
            shutdown: Some(tx),
            thread: None,
        })
    }

    /// Binds `127.0.0.1:0` and serves on a tokio runtime of its own, on a thread of its own,
    /// for synchronous tests and benches.
    pub fn start_background(wire: Wire) -> std::io::Result<MockModel> {
        Self::start_background_on(wire, 1)
    }

    /// [`MockModel::start_background`] on `threads` threads (at least one): for a bench whose
    /// many agents' requests at once would otherwise queue behind one thread of the mock's
    /// own (each request's arrival is stamped only once that thread reads it).
    pub fn start_background_on(wire: Wire, threads: usize) -> std::io::Result<MockModel> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = match threads {
            0 | 1 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            n => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .thread_name("mockmodel-worker")
                .enable_all()
                .build()?,
        };
        let shared = Arc::new(Shared::default());
        let (tx, rx) = oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mockmodel".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(listener) => serve(listener, server_shared, rx).await,
                        Err(e) => tracing::error!(error = %e, "mock model cannot listen"),
                    }
                });
                // Dropping the runtime here ends the connections still open.
            })?;
        Ok(MockModel {
            wire,
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Which API its base URL is for.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The base URL to configure the client with: `http://127.0.0.1:PORT/v1` for OpenAI,
    /// `http://127.0.0.1:PORT` for Anthropic and for Gemini (`GOOGLE_GEMINI_BASE_URL`; the
    /// client adds `/v1beta/models/…`).
    pub fn base_url(&self) -> String {
        match self.wire {
            Wire::OpenAi => format!("http://{}/v1", self.addr),
            Wire::Anthropic | Wire::Gemini => format!("http://{}", self.addr),
        }
    }

    /// Appends steps to the script of the agent named `agent`.
    pub fn script(&self, agent: &str, steps: Vec<Step>) {
        self.shared
            .lock()
            .scripts
            .entry(agent.to_string())
            .or_default()
            .extend(steps);
    }

    /// Every request body received for `agent`, in order.
    pub fn requests(&self, agent: &str) -> Vec<Value> {
        self.shared
            .lock()
            .requests
            .get(agent)
            .cloned()
            .unwrap_or_default()
    }

    /// When each request for `agent` arrived, in order.
    pub fn request_times(&self, agent: &str) -> Vec<Instant> {
        self.shared
            .lock()
            .times
            .get(agent)
            .cloned()
            .unwrap_or_default()
    }

    /// The credential each request for `agent` carried (`Authorization: Bearer …`,
    /// `x-api-key`, `x-goog-api-key`, or else the `key` query parameter Gemini also takes), in
    /// order: whether the agent's API key reached it.
    pub fn keys(&self, agent: &str) -> Vec<Option<String>> {
        self.shared
            .lock()
            .keys
            .get(agent)
            .cloned()
            .unwrap_or_default()
    }

    /// The request bodies that named no agent or found the agent's script empty.
    pub fn unmatched(&self) -> Vec<Value> {
        self.shared.lock().unmatched.clone()
    }

    /// Answers every request containing `needle` with `text`, outside any script: for a CLI's
    /// own side requests (Codex's TUI asks for a session title), which would otherwise take
    /// the agent's next step.
    pub fn answer_aside(&self, needle: &str, text: &str) {
        self.shared
            .lock()
            .asides
            .push((needle.to_string(), text.to_string()));
    }

    /// From now on every chat-completions answer leaves out `usage`, as
    /// [`Step::WithoutUsage`] does for one step (a server that never reports usage).
    pub fn omit_usage(&self, omit: bool) {
        self.shared.omit_usage.store(omit, Ordering::SeqCst);
    }

    /// The side requests [`MockModel::answer_aside`] answered.
    pub fn aside_requests(&self) -> Vec<Value> {
        self.shared.lock().aside_requests.clone()
    }

    /// From now on (`true`) every request goes through a prompt cache kept as the provider
    /// keeps its own (one for the whole server, shared by all agents), and an answer without
    /// a scripted [`Step::WithUsage`] reports the cache reads and writes as the provider bills
    /// them, in its own fields: Anthropic's explicit `cache_control` breakpoints, OpenAI's
    /// automatic prefixes of 1024 tokens and more in 128-token steps, Gemini's implicit
    /// prefixes (at part boundaries, from 2048 or 4096 tokens by model), all living 5 minutes.
    /// The prompt tokens are then counted from the prompt (tools, system, messages) at about
    /// four bytes a token, the same bytes always the same count. An Anthropic request with more
    /// than 4 breakpoints is refused with a 400 as the API refuses it, taking no step. See the
    /// `cache` module's documentation for the rules and where they come from. Off (the
    /// default), nothing is cached and nothing changes.
    pub fn account_caching(&self, on: bool) {
        self.shared.caching.store(on, Ordering::SeqCst);
    }

    /// Whether each request's body is kept for [`MockModel::requests`] (the default). A bench
    /// of a thousand agents turns it off: kept, their bodies grew the mock's heap by hundreds of
    /// MiB, and the mock's time with it. Arrival times, keys and billing are kept either way.
    /// Off, and without a prompt cache or side answers to look for, a body is read only for
    /// the fields the mock answers from (see `read_body`).
    pub fn keep_requests(&self, on: bool) {
        self.shared.forget_requests.store(!on, Ordering::SeqCst);
    }

    /// Moves the prompt cache's clock on by `by`, so a test sees entries expire (after 5
    /// minutes unused) without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.lock().clock_offset += by;
    }

    /// The tokens billed to `agent` so far, summed over its answered requests (error answers
    /// bill nothing): the counts each answer reported, scripted or accounted.
    pub fn billed(&self, agent: &str) -> Billed {
        self.shared
            .lock()
            .billed
            .get(agent)
            .copied()
            .unwrap_or_default()
    }

    /// The tokens billed to every agent together.
    pub fn billed_total(&self) -> Billed {
        self.shared
            .lock()
            .billed
            .values()
            .fold(Billed::default(), |sum, b| sum + *b)
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            // The server may already be gone; then there is nothing to stop.
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves until told to stop. Open keep-alive connections are not waited for (a graceful
/// shutdown would wait on the client's idle pool forever).
async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        .route("/v1beta/models/{*call}", post(gemini))
        .route("/v1/models/{*call}", post(gemini))
        .with_state(shared);
    // Small SSE chunks must leave at once: with Nagle's algorithm each would wait for the
    // client's delayed ACK (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::select! {
        r = axum::serve(listener, app).into_future() => {
            if let Err(e) = r {
                tracing::error!(error = %e, "mock model server failed");
            }
        }
        _ = stop => {}
    }
}

/// Which format a request came in, so the answer goes out in the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// Chat completions.
    OpenAi,
    /// Messages.
    Anthropic,
    /// OpenAI's Responses API (Codex).
    Responses,
    /// Google's Gemini API (`generateContent` / `streamGenerateContent`).
    Gemini,
}

/// How an answer goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// One JSON body.
    Whole,
    /// Server-sent events.
    Sse,
    /// Gemini's `streamGenerateContent` without `alt=sse`: the chunks as one JSON array.
    JsonArray,
}

/// What a request's URL says beyond its body: Gemini names the model, the streaming and
/// maybe the key there.
#[derive(Debug, Clone, Default)]
struct Call {
    /// The model named in the path.
    model: Option<String>,
    /// How to answer, when the path decides it (else the body's `stream`).
    delivery: Option<Delivery>,
    /// The `key` query parameter.
    key: Option<String>,
}

/// `POST /v1/chat/completions`.
async fn openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&shared, Api::OpenAi, Call::default(), &headers, &body).await
}

/// `POST /v1/messages`.
async fn anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&shared, Api::Anthropic, Call::default(), &headers, &body).await
}

/// `POST /v1/responses`.
async fn responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&shared, Api::Responses, Call::default(), &headers, &body).await
}

/// `POST /v1beta/models/MODEL:METHOD` (and `/v1/models/…`): the path's last segment is
/// `model:method`, parsed here because a route cannot split at the colon.
async fn gemini(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A client may percent-encode the colon.
    let last = uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .replace("%3A", ":")
        .replace("%3a", ":");
    let Some((model, method)) = last.rsplit_once(':') else {
        return error_response(
            Api::Gemini,
            404,
            &format!("{} names no method (models/MODEL:METHOD)", uri.path()),
        );
    };
    let query = |name: &str| {
        uri.query()?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let delivery = match method {
        "generateContent" => Delivery::Whole,
        "streamGenerateContent" if query("alt").as_deref() == Some("sse") => Delivery::Sse,
        "streamGenerateContent" => Delivery::JsonArray,
        "countTokens" => return count_tokens(&body),
        other => {
            return error_response(
                Api::Gemini,
                404,
                &format!(
                    "method {other} is not served by the mock (generateContent, streamGenerateContent, countTokens)"
                ),
            );
        }
    };
    let call = Call {
        model: Some(model.to_string()),
        delivery: Some(delivery),
        key: query("key"),
    };
    handle(&shared, Api::Gemini, call, &headers, &body).await
}

/// Gemini's `countTokens`: about four bytes a token of the body, outside any script (it
/// takes no step and is not recorded: a client counting is not a model turn).
fn count_tokens(body: &[u8]) -> Response {
    match serde_json::from_slice::<Value>(body) {
        Ok(_) => json_response(
            StatusCode::OK,
            &serde_json::json!({"totalTokens": body.len() as u64 / 4 + 1}),
        ),
        Err(e) => error_response(Api::Gemini, 400, &format!("the body is not JSON: {e}")),
    }
}

/// Records the request, takes the agent's next step and answers it.
async fn handle(
    shared: &Shared,
    api: Api,
    call: Call,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let arrived = Instant::now();
    let req = match read_body(shared, body) {
        Ok(v) => v,
        Err(e) => return error_response(api, 400, &format!("the body is not JSON: {e}")),
    };
    let model = call
        .model
        .clone()
        .or_else(|| req.get("model").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "mock".to_string());
    let taken = match take_step(shared, api, &call, headers, (req, body), &model, arrived) {
        Ok(t) => t,
        Err(refused) => return error_response(api, 400, &refused),
    };
    let (step, usage, omit_usage) = unwrap_step(shared, taken.step).await;
    // Answered now: what this request wrote to the prompt cache can be read by the next ones.
    shared.lock().cache.answered(taken.writer);
    let (text, calls) = match step {
        Step::Status(status, message) => return error_response(api, status, &message),
        Step::Text(text) => (text, vec![]),
        Step::Tools(calls) => (
            String::new(),
            calls.into_iter().map(|(n, v)| (n, v.to_string())).collect(),
        ),
        Step::TextAndTools(text, calls) => (
            text,
            calls.into_iter().map(|(n, v)| (n, v.to_string())).collect(),
        ),
        Step::RawToolArgs(name, raw) => (String::new(), vec![(name, raw)]),
        // `unwrap_step` unwrapped every delay and gate, and `Until` was resolved when it was
        // taken.
        Step::Delay(..)
        | Step::Gate(..)
        | Step::Until { .. }
        | Step::WithUsage(..)
        | Step::WithoutUsage(..) => (String::new(), vec![]),
    };
    let mut answer = render::Answer {
        id: shared.next_response.fetch_add(1, Ordering::Relaxed) + 1,
        model,
        text,
        calls: calls
            .into_iter()
            .map(|(name, args)| {
                let id = format!(
                    "call_{}",
                    shared.next_call.fetch_add(1, Ordering::Relaxed) + 1
                );
                (id, name, args)
            })
            .collect(),
        input_tokens: body.len() as u64 / 4 + 1,
        usage,
        omit_usage,
    };
    if answer.usage.is_none()
        && let Some(a) = taken.accounting
    {
        answer.usage = Some(MockUsage {
            input: a.input,
            output: answer.output_tokens(),
            cached: a.cached,
            cache_write: a.cache_write,
        });
    }
    if let Some(agent) = taken.agent {
        let counts = answer.counts();
        shared.lock().billed.entry(agent).or_default().add(counts);
    }
    respond(api, taken.delivery, taken.include_usage, &answer)
}

/// What a request took under the lock: its step and what its answer needs.
struct Taken {
    step: Step,
    /// What it read from and wrote to the prompt cache (when the provider caches).
    accounting: Option<cache::Accounting>,
    /// The agent it came from (none for a side request).
    agent: Option<String>,
    /// Its number as a writer of the prompt cache.
    writer: u64,
    delivery: Delivery,
    /// OpenAI's `stream_options.include_usage`.
    include_usage: bool,
}

/// Under the lock: records the request and takes its step (an aside's answer, the agent's
/// next scripted step, or the end of its script); the provider's message when it refuses
/// the request for its caching.
fn take_step(
    shared: &Shared,
    api: Api,
    call: &Call,
    headers: &HeaderMap,
    (req, raw): (Value, &[u8]),
    model: &str,
    arrived: Instant,
) -> Result<Taken, String> {
    let caching = shared.caching.load(Ordering::SeqCst);
    let mut inner = shared.lock();
    // The body's text, written again from its JSON only when a needle is looked for (most
    // requests look for none).
    let mut text = None::<String>;
    let aside = match inner.asides.is_empty() {
        true => None,
        false => {
            let t = body_text(&mut text, &req);
            inner
                .asides
                .iter()
                .find(|(needle, _)| t.contains(needle.as_str()))
                .map(|(_, answer)| answer.clone())
        }
    };
    // A side request names no agent here: it takes no step and is kept apart.
    let agent = match aside {
        Some(_) => None,
        None => agent_name(api, &req),
    };
    // A request the provider refuses for its caching takes no step.
    let refused = match caching {
        true => cache::check(api, &req).err(),
        false => None,
    };
    let step = agent
        .as_ref()
        .filter(|_| refused.is_none())
        .and_then(|a| next_scripted(&mut inner, a, (&req, raw), &mut text));
    if let Some(agent) = &agent {
        record_arrival(&mut inner, agent, call, headers, arrived);
    }
    if let Some(message) = refused {
        if let Some(agent) = &agent {
            inner.requests.entry(agent.clone()).or_default().push(req);
        }
        return Err(message);
    }
    let step = match (step, aside) {
        (_, Some(answer)) => {
            inner.aside_requests.push(req.clone());
            Step::Text(answer)
        }
        (Some(step), None) => step,
        (None, None) => {
            inner.unmatched.push(req.clone());
            Step::Text("(script ended)".into())
        }
    };
    // The provider caches what it answers, not what it fails.
    let writer = shared.next_request.fetch_add(1, Ordering::Relaxed);
    let accounting = (caching && !fails(&step)).then(|| {
        let now = arrived + inner.clock_offset;
        inner.cache.account_pending(writer, api, &req, model, now)
    });
    // Kept for the tests' reads, moved in (the delivery is read from it first).
    let delivery = call.delivery.unwrap_or(
        match req.get("stream").and_then(Value::as_bool) == Some(true) {
            true => Delivery::Sse,
            false => Delivery::Whole,
        },
    );
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(agent) = &agent
        && !shared.forget_requests.load(Ordering::Relaxed)
    {
        inner.requests.entry(agent.clone()).or_default().push(req);
    }
    Ok(Taken {
        step,
        accounting,
        agent,
        writer,
        delivery,
        include_usage,
    })
}

/// `agent`'s next scripted step: an `Until` whose needles are not all in the request yet
/// answers with its `meanwhile` and stays; none when its script has ended.
fn next_scripted(
    inner: &mut Inner,
    agent: &str,
    (req, raw): (&Value, &[u8]),
    text: &mut Option<String>,
) -> Option<Step> {
    let queue = inner.scripts.get_mut(agent)?;
    match queue.front() {
        Some(Step::Until {
            needles, meanwhile, ..
        }) if !needles
            .iter()
            .all(|n| in_raw(raw, n) || body_text(text, req).contains(n.as_str())) =>
        {
            Some((**meanwhile).clone())
        }
        Some(Step::Until { .. }) => match queue.pop_front() {
            Some(Step::Until { then, .. }) => Some(*then),
            other => other,
        },
        _ => queue.pop_front(),
    }
}

/// Records when `agent`'s request arrived and the key it carried.
fn record_arrival(
    inner: &mut Inner,
    agent: &str,
    call: &Call,
    headers: &HeaderMap,
    arrived: Instant,
) {
    inner
        .times
        .entry(agent.to_string())
        .or_default()
        .push(arrived);
    let key = [
        header::AUTHORIZATION.as_str(),
        "x-api-key",
        "x-goog-api-key",
    ]
    .iter()
    .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_string))
    .or_else(|| call.key.clone());
    inner.keys.entry(agent.to_string()).or_default().push(key);
}

/// `step` with its wrappers done: usage set or left out, delays waited, gates waited for
/// (each up to [`GATE_LIMIT`]); the step inside, the usage and whether to omit it.
async fn unwrap_step(shared: &Shared, mut step: Step) -> (Step, Option<MockUsage>, bool) {
    let mut usage = None;
    let mut omit_usage = shared.omit_usage.load(Ordering::SeqCst);
    let step = loop {
        match step {
            Step::WithUsage(u, inner) => {
                usage = Some(u);
                step = *inner;
            }
            Step::WithoutUsage(inner) => {
                omit_usage = true;
                step = *inner;
            }
            Step::Delay(wait, inner) => {
                tokio::time::sleep(wait).await;
                step = *inner;
            }
            Step::Gate(gate, inner) => {
                let until = Instant::now() + GATE_LIMIT;
                while !gate.is_open() && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                step = *inner;
            }
            other => break other,
        }
    };
    (step, usage, omit_usage)
}

/// The answer rendered for `api`: as server-sent events or one JSON body, as `delivery` says.
fn respond(api: Api, delivery: Delivery, include_usage: bool, answer: &render::Answer) -> Response {
    if delivery == Delivery::Sse {
        let chunks = match api {
            Api::OpenAi => render::openai_stream(answer, include_usage),
            Api::Anthropic => render::anthropic_stream(answer),
            Api::Responses => render::responses_stream(answer),
            Api::Gemini => render::gemini_stream(answer),
        };
        // Yielding before each chunk lets the server write it out on its own, so the client
        // receives the answer piece by piece as from a real server.
        let stream = futures_util::stream::unfold(chunks.into_iter(), |mut rest| async move {
            let next = rest.next()?;
            tokio::task::yield_now().await;
            Some((Ok::<Bytes, Infallible>(next), rest))
        });
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response()
    } else {
        let v = match (api, delivery) {
            (Api::Gemini, Delivery::JsonArray) => Value::Array(render::gemini_chunks(answer)),
            (Api::OpenAi, _) => render::openai_whole(answer),
            (Api::Anthropic, _) => render::anthropic_whole(answer),
            (Api::Responses, _) => render::responses_whole(answer),
            (Api::Gemini, _) => render::gemini_whole(answer),
        };
        json_response(StatusCode::OK, &v)
    }
}

/// Whether `needle` is in the body as it came, so the body's text need not be written from its
/// JSON (a thousand agents' requests each made the mock write one out). Only for a needle of
/// ASCII letters, digits, `-` and `_` with a letter other than `e`/`E`, in a body without a
/// `\u` escape: such a needle cannot span a token, lie in a number or an escape, and reads the
/// same in the text; any other answers no, and the text is looked at.
fn in_raw(raw: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    let plain = n
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        && n.iter()
            .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E'));
    plain && memchr::memmem::find(raw, b"\\u").is_none() && memchr::memmem::find(raw, n).is_some()
}

/// A request body's text for needles, written from its JSON once per request when asked.
fn body_text<'a>(text: &'a mut Option<String>, req: &Value) -> &'a str {
    text.get_or_insert_with(|| req.to_string())
}

/// A request's body as a tree: whole, or, when nothing keeps it (bodies not kept, no prompt
/// cache, no side answers to look for), only the fields the mock answers from
/// ([`Answered`]). The tools' schemas are most of an agent's body, and a tree of them cost a
/// thousand agents' mock as much time as the agents' own side took to send them.
fn read_body(shared: &Shared, body: &[u8]) -> serde_json::Result<Value> {
    let slim = shared.forget_requests.load(Ordering::Relaxed)
        && !shared.caching.load(Ordering::SeqCst)
        && shared.lock().asides.is_empty();
    if !slim {
        return serde_json::from_slice(body);
    }
    let a: Answered = serde_json::from_slice(body)?;
    let fields = [
        ("model", a.model),
        ("stream", a.stream),
        ("stream_options", a.stream_options),
        ("messages", a.messages),
        ("system", a.system),
        ("instructions", a.instructions),
        ("input", a.input),
        ("contents", a.contents),
        ("systemInstruction", a.system_instruction),
    ];
    Ok(Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect(),
    ))
}

/// The fields of a request the mock answers from in any API: the model, how to deliver, and
/// where an agent's name is (the system prompt or the messages). Any other field is read past
/// without being kept.
#[derive(serde::Deserialize)]
struct Answered {
    model: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    messages: Option<Value>,
    system: Option<Value>,
    instructions: Option<Value>,
    input: Option<Value>,
    contents: Option<Value>,
    #[serde(rename = "systemInstruction")]
    system_instruction: Option<Value>,
}

/// Whether a step answers with an HTTP error, however it is wrapped.
fn fails(step: &Step) -> bool {
    match step {
        Step::Status(..) => true,
        Step::Delay(_, inner)
        | Step::Gate(_, inner)
        | Step::WithUsage(_, inner)
        | Step::WithoutUsage(inner) => fails(inner),
        Step::Until { then, .. } => fails(then),
        Step::Text(_) | Step::Tools(_) | Step::TextAndTools(..) | Step::RawToolArgs(..) => false,
    }
}

/// A JSON answer.
fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// An error answer shaped like the API's own.
fn error_response(api: Api, status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let body = match api {
        Api::OpenAi | Api::Responses => {
            serde_json::json!({"error": {"message": message, "type": kind}})
        }
        Api::Anthropic => {
            serde_json::json!({"type": "error", "error": {"message": message, "type": kind}})
        }
        Api::Gemini => {
            serde_json::json!({"error": {"code": status, "message": message, "status": google_status(status)}})
        }
    };
    json_response(code, &body)
}

/// Google's `status` word for an HTTP status, as its errors carry it.
fn google_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// The agent a request is for: `NAME` from the line `Your name is NAME.` in its system prompt,
/// else in the first user message that has it (an external agent CLI such as Claude Code has a system prompt of
/// its own and gets ours as its first input).
fn agent_name(api: Api, req: &Value) -> Option<String> {
    name_in(&system_text(api, req).unwrap_or_default()).or_else(|| {
        // Chat messages, the Responses API's input items or Gemini's contents (whose `role`
        // may be left out on a user turn).
        let items = req
            .get("messages")
            .or_else(|| req.get("input"))
            .or_else(|| req.get("contents"))?;
        items
            .as_array()?
            .iter()
            .filter(|m| match m.get("role") {
                Some(role) => role.as_str() == Some("user"),
                None => api == Api::Gemini,
            })
            .find_map(|m| name_in(&text_of(m.get("content").or_else(|| m.get("parts"))?)))
    })
}

/// `NAME` from `Your name is NAME.` in `text`.
fn name_in(text: &str) -> Option<String> {
    let rest = &text[text.find("Your name is ")? + "Your name is ".len()..];
    let end = rest.find(['.', '\n']).unwrap_or(rest.len());
    let name = rest[..end].trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The system prompt of a request.
fn system_text(api: Api, req: &Value) -> Option<String> {
    Some(match api {
        Api::OpenAi => req
            .get("messages")?
            .as_array()?
            .iter()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("system"))
            .and_then(|m| m.get("content"))
            .map(text_of)?,
        Api::Anthropic => text_of(req.get("system")?),
        Api::Responses => text_of(req.get("instructions")?),
        // A `Content` (`{"parts": [{"text": …}], "role"?: …}`); the SDK also takes a string.
        Api::Gemini => match req.get("systemInstruction")? {
            Value::Object(content) => text_of(content.get("parts")?),
            other => text_of(other),
        },
    })
}

/// Text from a string or from an array of text blocks.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_needle_found_in_the_body_as_it_came_is_in_its_text() {
        let raw = br#"{"messages":[{"role":"user","content":"GO-SCALE: go\n1e5 x"}],"n":1e5}"#;
        let req: Value = serde_json::from_slice(raw).unwrap();
        let text = req.to_string();
        for needle in ["GO-SCALE", "role", "n1e5", "go"] {
            assert!(in_raw(raw, needle), "{needle}");
            assert!(text.contains(needle), "{needle}");
        }
        // Not looked for there: it could read otherwise in the text (a number, a space, an
        // escape), or is not there.
        for needle in ["1e5", "go x", "", "GO-SCALE:", "NEVER"] {
            assert!(!in_raw(raw, needle), "{needle}");
        }
        let escaped = br#"{"content":"\u0041BC"}"#;
        assert!(!in_raw(escaped, "041BC"));
    }

    #[test]
    fn names_from_both_system_shapes() {
        let o = json!({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "Hi.\nYour name is alice.\nBe good."}]});
        assert_eq!(agent_name(Api::OpenAi, &o), Some("alice".into()));
        let a = json!({"system": [{"type": "text", "text": "Your name is bob-2."}]});
        assert_eq!(agent_name(Api::Anthropic, &a), Some("bob-2".into()));
        let a = json!({"system": "Your name is carol"});
        assert_eq!(agent_name(Api::Anthropic, &a), Some("carol".into()));
        assert_eq!(agent_name(Api::Anthropic, &json!({"messages": []})), None);
        // An agent CLI's own system prompt, ours in its first user message.
        let c = json!({"system": "You are Claude Code.", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<reminder/>"},
                                         {"type": "text", "text": "Your name is cc. Work."}]},
            {"role": "assistant", "content": "ok"}]});
        assert_eq!(agent_name(Api::Anthropic, &c), Some("cc".into()));
        // Codex: Responses API input items, its environment context first.
        let r = json!({"instructions": null, "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Your name is cx. Go."}]}]});
        assert_eq!(agent_name(Api::Responses, &r), Some("cx".into()));
        assert_eq!(
            agent_name(
                Api::OpenAi,
                &json!({"messages": [{"role": "system", "content": "nobody"}]})
            ),
            None
        );
    }

    #[test]
    fn gemini_names_from_the_system_instruction_or_the_user_contents() {
        let s = json!({"systemInstruction": {"parts": [{"text": "Be terse."}, {"text": "Your name is gem."}]},
            "contents": [{"role": "user", "parts": [{"text": "go"}]}]});
        assert_eq!(agent_name(Api::Gemini, &s), Some("gem".into()));
        let s = json!({"systemInstruction": {"role": "user", "parts": [{"text": "Your name is g2.\n"}]}});
        assert_eq!(agent_name(Api::Gemini, &s), Some("g2".into()));
        // The Gemini CLI: its own system prompt, its session context first, ours after.
        let c = json!({"systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]}, "contents": [
            {"role": "user", "parts": [{"text": "<session_context/>"}, {"text": "Your name is a1. Work."}]},
            {"role": "model", "parts": [{"functionCall": {"name": "write_file", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {"output": "ok"}}}]}]});
        assert_eq!(agent_name(Api::Gemini, &c), Some("a1".into()));
        // A user turn may leave out its role; a model turn naming someone does not count.
        let r = json!({"contents": [{"parts": [{"text": "Your name is anon."}]}]});
        assert_eq!(agent_name(Api::Gemini, &r), Some("anon".into()));
        let m = json!({"contents": [{"role": "model", "parts": [{"text": "Your name is no."}]}]});
        assert_eq!(agent_name(Api::Gemini, &m), None);
    }

    #[test]
    fn gemini_errors_have_google_shape() {
        assert_eq!(google_status(400), "INVALID_ARGUMENT");
        assert_eq!(google_status(429), "RESOURCE_EXHAUSTED");
        assert_eq!(google_status(500), "INTERNAL");
        assert_eq!(google_status(503), "UNAVAILABLE");
    }
}
