//! The HTTP side shared by both wire formats: one POST per attempt, streamed or whole, retried
//! with backoff on transient failures, and failures turned into [`ModelError`]s that say what
//! to fix.

use crate::sse::{SseEvent, SseParser};
use crate::{Model, ModelConfig, ModelError, StreamEvent, Turn, TurnFuture, TurnRequest};
use agent_team_backoff::Backoff;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use std::time::{Duration, Instant};

/// The first wait before a retry; each later wait doubles it.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// The longest wait before a retry, whether from the backoff or from `retry-after`.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// How much of a non-JSON error body is quoted in an error.
const BODY_QUOTE_CHARS: usize = 500;

/// Why one attempt failed, before deciding whether to try again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// The server answered with an error status (or an error event meaning one).
    Status {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        message: String,
        /// The server's `retry-after`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The attempt ran out of time.
    Timeout,
    /// The server could not be reached, or the connection dropped.
    Connect(String),
    /// The answer could not be understood.
    Protocol(String),
}

impl Failure {
    /// Whether trying again may help.
    fn retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => is_retryable_status(*status),
            Failure::Timeout | Failure::Connect(_) => true,
            Failure::Protocol(_) => false,
        }
    }
}

/// The statuses that mean "busy or briefly broken": rate limits, gateway trouble, overload.
fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// What differs between the two APIs: the URL, the headers, the body and the answer's shape.
pub(crate) trait Wire: Send + Sync + 'static {
    /// The streamed answer's decoder.
    type Decoder: StreamDecoder;
    /// The API's name for logs, e.g. `openai`.
    fn name(&self) -> &'static str;
    /// The default base URL.
    fn default_base(&self) -> &'static str;
    /// The endpoint for a base URL without a trailing slash.
    fn endpoint(&self, base: &str) -> String;
    /// Adds the credential and API headers.
    fn authorize(&self, rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder;
    /// The request body, as sent.
    fn body(&self, cfg: &ModelConfig, req: &TurnRequest) -> serde_json::Result<Vec<u8>>;
    /// Reads a whole (non-streamed) answer.
    fn parse(&self, v: &serde_json::Value) -> Result<Turn, Failure>;
}

/// Accumulates a streamed answer event by event.
pub(crate) trait StreamDecoder: Default + Send {
    /// Takes one event; returns `true` when it marks the end of the answer.
    fn on_event(
        &mut self,
        ev: &SseEvent,
        emit: &mut dyn FnMut(StreamEvent),
    ) -> Result<bool, Failure>;
    /// Builds the turn; `complete` says whether the end-of-answer event was seen.
    fn finish(self, complete: bool) -> Result<Turn, Failure>;
}

/// A [`Model`] over HTTP speaking the wire format `W`.
pub(crate) struct HttpModel<W: Wire> {
    /// The wire format.
    wire: W,
    /// The configuration, as given.
    cfg: ModelConfig,
    /// Where the key came from, quoted in credential errors.
    key_hint: String,
    /// The base URL without a trailing slash.
    base: String,
    /// The endpoint URL.
    url: String,
    /// The connection pool.
    http: reqwest::Client,
}

impl<W: Wire> HttpModel<W> {
    /// Builds the client; fails on a base URL that is not an http(s) URL.
    pub(crate) fn new(wire: W, cfg: ModelConfig, key_hint: String) -> Result<Self, ModelError> {
        let base = cfg
            .base_url
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .unwrap_or(wire.default_base());
        let base = base.trim_end_matches('/').to_string();
        let url = wire.endpoint(&base);
        let parsed = reqwest::Url::parse(&url).map_err(|e| ModelError::Connect {
            url: url.clone(),
            message: format!("not a valid URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ModelError::Connect {
                url,
                message: "the URL must start with http:// or https://".into(),
            });
        }
        let (loopback, plain) = (is_loopback(&parsed), parsed.scheme() == "http");
        let build = || {
            let mut builder = reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(cfg.timeout)
                .user_agent(concat!("agent-team/", env!("CARGO_PKG_VERSION")));
            // A model on this machine (Ollama, llama.cpp, a test server) is never behind the
            // proxy that HTTP_PROXY names for the outside world.
            if loopback {
                builder = builder.no_proxy();
            }
            // Plain http needs no certificate store: not loading it keeps every agent smaller.
            if plain {
                builder = builder.tls_built_in_root_certs(false);
            }
            builder.build().map_err(|e| ModelError::Connect {
                url: url.clone(),
                message: error_chain(&e),
            })
        };
        let http = crate::pool::client((loopback, plain, cfg.timeout), build)?;
        Ok(HttpModel {
            wire,
            cfg,
            key_hint,
            base,
            url,
            http,
        })
    }

    /// Runs the attempts until one succeeds, a failure is final, or the retries are spent.
    async fn run(
        &self,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Turn, ModelError> {
        let body = self
            .wire
            .body(&self.cfg, req)
            .map_err(|e| ModelError::Protocol(format!("cannot encode the request: {e}")))?;
        let mut backoff = retry_backoff(self.cfg.max_retries);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut delivered = false;
            let attempt = self.attempt(&body, &mut *on_event, &mut delivered);
            let failure = match tokio::time::timeout(self.cfg.timeout, attempt).await {
                Ok(Ok(turn)) => return Ok(turn),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::Timeout,
            };
            // Once text reached the caller a retry would show it twice, so the failure stands.
            if !failure.retryable() || delivered {
                return Err(self.error(failure, attempts));
            }
            let server_wait = match &failure {
                Failure::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            let Some(wait) = backoff.next_after(Instant::now(), server_wait) else {
                return Err(self.error(failure, attempts));
            };
            tracing::warn!(
                model = %self.describe(),
                attempt = attempts,
                wait_ms = wait.as_millis() as u64,
                failure = ?failure,
                "model request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP exchange.
    async fn attempt(
        &self,
        body: &[u8],
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
        delivered: &mut bool,
    ) -> Result<Turn, Failure> {
        let mut rb = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if self.cfg.stream {
            rb = rb.header(ACCEPT, "text/event-stream");
        }
        rb = self
            .wire
            .authorize(rb, self.cfg.api_key.as_deref().filter(|k| !k.is_empty()));
        let mut resp = rb.send().await.map_err(from_reqwest)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let message = error_message(&text, status.canonical_reason().unwrap_or(""));
            return Err(Failure::Status {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("text/event-stream"));
        // Some compatible servers ignore `stream: true` and answer whole; take that answer as is.
        if !self.cfg.stream || !is_sse {
            let bytes = resp.bytes().await.map_err(from_reqwest)?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Protocol(format!(
                    "the answer is not JSON ({e}): {}",
                    quote(&String::from_utf8_lossy(&bytes))
                ))
            })?;
            return self.wire.parse(&v);
        }
        let mut parser = SseParser::default();
        let mut decoder = W::Decoder::default();
        let mut emit = |ev: StreamEvent| {
            *delivered = true;
            on_event(ev);
        };
        let mut complete = false;
        'read: while let Some(chunk) = resp.chunk().await.map_err(from_reqwest)? {
            for ev in parser.feed(&chunk) {
                if decoder.on_event(&ev, &mut emit)? {
                    complete = true;
                    break 'read;
                }
            }
        }
        if !complete {
            for ev in parser.finish() {
                if decoder.on_event(&ev, &mut emit)? {
                    complete = true;
                    break;
                }
            }
        }
        decoder.finish(complete)
    }

    /// Turns the last failure into the error the caller sees.
    fn error(&self, failure: Failure, attempts: u32) -> ModelError {
        match failure {
            Failure::Status {
                status: status @ (401 | 403),
                message,
                ..
            } => ModelError::Auth {
                status,
                message,
                key_hint: self.key_hint.clone(),
            },
            Failure::Status {
                status: 404,
                message,
                ..
            } => ModelError::NotFound {
                url: self.url.clone(),
                message,
            },
            Failure::Status {
                status, message, ..
            } if status >= 500 || is_retryable_status(status) => ModelError::Unavailable {
                status,
                attempts,
                message,
            },
            Failure::Status {
                status, message, ..
            } => ModelError::BadRequest { status, message },
            Failure::Timeout => ModelError::Timeout {
                secs: self.cfg.timeout.as_secs(),
                attempts,
            },
            Failure::Connect(message) => ModelError::Connect {
                url: self.url.clone(),
                message,
            },
            Failure::Protocol(message) => ModelError::Protocol(message),
        }
    }
}

impl<W: Wire> Model for HttpModel<W> {
    fn turn<'a>(
        &'a self,
        req: &'a TurnRequest,
        on_event: &'a mut (dyn FnMut(StreamEvent) + Send),
    ) -> TurnFuture<'a> {
        Box::pin(self.run(req, on_event))
    }

    fn describe(&self) -> String {
        format!("{} {} at {}", self.wire.name(), self.cfg.model, self.base)
    }
}

/// The waits before up to `max_retries` retries: 200 ms, 400 ms, 800 ms, … up to 30 s, each
/// shortened by up to a quarter (agents sharing a key that were refused together do not come
/// back together); a server's `retry-after` replaces the computed wait, capped at 30 s too.
fn retry_backoff(max_retries: u32) -> Backoff {
    Backoff::new(BACKOFF_START, BACKOFF_CAP)
        .jitter(0.25)
        .max_retries(max_retries)
}

/// The `retry-after` header in seconds (HTTP dates are rare from APIs and are ignored); the
/// backoff caps what it asks for.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = v.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The server's explanation in an error body: `error.message` (both APIs), an `error` string
/// (Ollama and others), a top-level `message`, or else the raw body, shortened.
pub(crate) fn error_message(body: &str, reason: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let found = v
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .or_else(|| v.get("error").and_then(|e| e.as_str()))
            .or_else(|| v.get("message").and_then(|m| m.as_str()));
        if let Some(m) = found {
            return m.to_string();
        }
    }
    let body = body.trim();
    if body.is_empty() {
        reason.to_string()
    } else {
        quote(body)
    }
}

/// The text, cut to about 500 characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(BODY_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Sorts a reqwest failure into timeout, connection, or other.
fn from_reqwest(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_builder() {
        Failure::Protocol(error_chain(&e))
    } else {
        // Connection refused, reset, or the body cut short: all may work on another try.
        Failure::Connect(error_chain(&e))
    }
}

/// An error with its causes, since reqwest's own message alone rarely says what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Whether the URL names this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A sampling temperature as JSON: through its decimal text, so `0.2f32` is sent as `0.2` and
/// not as `0.20000000298023224`.
pub(crate) fn temperature_json(t: f32) -> serde_json::Value {
    format!("{t}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_within_bounds_and_honour_retry_after() {
        let now = Instant::now();
        let mut b = retry_backoff(4);
        for nominal in [200, 400, 800] {
            let d = b.next_after(now, None).unwrap();
            let nominal = Duration::from_millis(nominal);
            assert!(
                d <= nominal && d >= nominal * 3 / 4,
                "{d:?} for {nominal:?}"
            );
        }
        assert_eq!(
            b.next_after(now, Some(Duration::from_secs(3600))),
            Some(BACKOFF_CAP)
        );
        assert_eq!(b.next_after(now, None), None, "four retries at most");
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(RETRY_AFTER, "-1".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_messages_from_bodies() {
        assert_eq!(
            error_message(
                r#"{"error":{"message":"bad key","type":"x"}}"#,
                "Unauthorized"
            ),
            "bad key"
        );
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#,
                ""
            ),
            "model: x"
        );
        assert_eq!(
            error_message(r#"{"error":"model 'q' not found"}"#, ""),
            "model 'q' not found"
        );
        assert_eq!(error_message("", "Bad Gateway"), "Bad Gateway");
        assert_eq!(
            error_message("<html>oops</html>", "Bad Gateway"),
            "<html>oops</html>"
        );
        let long = "é".repeat(2000);
        let m = error_message(&long, "");
        assert_eq!(m.chars().count(), BODY_QUOTE_CHARS + 1);
    }

    /// A server that answers each connection with the next canned HTTP response, then closes
    /// it; returns its address and the number of requests it took.
    async fn canned_server(
        responses: Vec<String>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            for response in responses {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then as much body as Content-Length says.
                loop {
                    let n = sock.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                sock.write_all(response.as_bytes()).await.unwrap();
                sock.shutdown().await.unwrap();
            }
        });
        (format!("http://{addr}"), count)
    }

    fn sse_response(events: &[(&str, serde_json::Value)]) -> String {
        let mut out =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                .to_string();
        for (name, data) in events {
            out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
        }
        out
    }

    fn anthropic_cfg(base: String) -> ModelConfig {
        ModelConfig {
            api: crate::ApiKind::Anthropic,
            model: "m".into(),
            base_url: Some(base),
            api_key: None,
            stream: true,
            timeout: Duration::from_secs(5),
            max_retries: 2,
            max_tokens: 10,
            temperature: None,
            cache: true,
            cache_key: None,
        }
    }

    fn req() -> TurnRequest {
        TurnRequest {
            messages: vec![crate::ChatMessage::user("hi")],
            tools: vec![],
        }
    }

    #[tokio::test]
    async fn overload_before_any_text_is_retried_after_text_is_not() {
        use serde_json::json;
        let start = (
            "message_start",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
        );
        let overloaded = (
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        let block = (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        let delta = (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}),
        );
        let ok = [
            start.clone(),
            block.clone(),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "fine"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];

        // Overloaded before anything reached the caller: retried, and the retry succeeds.
        let (base, count) = canned_server(vec![
            sse_response(&[start.clone(), overloaded.clone()]),
            sse_response(&ok),
        ])
        .await;
        let model = HttpModel::new(
            crate::anthropic::Anthropic,
            anthropic_cfg(base),
            "$K".into(),
        )
        .unwrap();
        let mut events = Vec::new();
        let turn = model.turn(&req(), &mut |e| events.push(e)).await.unwrap();
        assert_eq!(turn.text, "fine");
        assert_eq!(events, vec![StreamEvent::Text("fine".into())]);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);

        // Overloaded after text was shown: the failure stands, nothing is shown twice.
        let (base, count) = canned_server(vec![
            sse_response(&[start, block, delta, overloaded]),
            sse_response(&ok),
        ])
        .await;
        let model = HttpModel::new(
            crate::anthropic::Anthropic,
            anthropic_cfg(base),
            "$K".into(),
        )
        .unwrap();
        let mut events = Vec::new();
        let err = model
            .turn(&req(), &mut |e| events.push(e))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ModelError::Unavailable {
                status: 529,
                attempts: 1,
                message: "Overloaded".into()
            }
        );
        assert_eq!(events, vec![StreamEvent::Text("partial".into())]);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stream_cut_short_before_any_text_is_retried() {
        use serde_json::json;
        let cut = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: message_start\ndata: {\"type\":\"message_st".to_string();
        let ok = sse_response(&[
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "whole"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]);
        let (base, count) = canned_server(vec![cut, ok]).await;
        let model = HttpModel::new(
            crate::anthropic::Anthropic,
            anthropic_cfg(base),
            "$K".into(),
        )
        .unwrap();
        let turn = model.turn(&req(), &mut |_| {}).await.unwrap();
        assert_eq!(turn.text, "whole");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn temperature_is_sent_as_written() {
        assert_eq!(temperature_json(0.2).to_string(), "0.2");
        assert_eq!(temperature_json(1.0).to_string(), "1.0");
    }
}
