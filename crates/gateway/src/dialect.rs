//! The model APIs the gateway speaks, told by a request's path: what a request asks for (its
//! model, its most output tokens), the usage a response reports (whole or streamed as
//! server-sent events), and an error body each CLI reads as its API's own.

use serde_json::{Value, json};

/// A model API, told by the request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Anthropic Messages (`…/messages`): Claude Code.
    Anthropic,
    /// OpenAI Chat Completions (`…/chat/completions`): Qwen Code, opencode, Copilot CLI.
    OpenAiChat,
    /// OpenAI Responses (`…/responses`): Codex.
    Responses,
    /// Google's Gemini API (`…/models/M:generateContent`, `:streamGenerateContent`): Gemini CLI.
    Gemini,
    /// Anything else under the upstream (a model list, a token count): forwarded with the real
    /// key, neither counted nor checked against the budget.
    Other,
}

impl Dialect {
    /// The dialect of a request to `path`.
    pub fn of(path: &str) -> Dialect {
        let path = path.trim_end_matches('/');
        if path.ends_with("/messages") {
            Dialect::Anthropic
        } else if path.ends_with("/chat/completions") {
            Dialect::OpenAiChat
        } else if path.ends_with("/responses") {
            Dialect::Responses
        } else if path.contains("/models/")
            && (path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent"))
        {
            Dialect::Gemini
        } else {
            Dialect::Other
        }
    }

    /// Its name in traces and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Anthropic => "anthropic",
            Dialect::OpenAiChat => "openai-chat",
            Dialect::Responses => "openai-responses",
            Dialect::Gemini => "gemini",
            Dialect::Other => "other",
        }
    }

    /// Whether its calls are model calls: counted and checked against the budget.
    pub fn counted(self) -> bool {
        self != Dialect::Other
    }

    /// The model a request to `path` with `body` asks for (Gemini names it in the path).
    pub fn model(self, path: &str, body: &Value) -> String {
        if self == Dialect::Gemini {
            let call = path.rsplit("/models/").next().unwrap_or_default();
            return call.split(':').next().unwrap_or_default().to_string();
        }
        body["model"].as_str().unwrap_or_default().to_string()
    }

    /// The most output tokens the request allows, when it says.
    pub fn max_output(self, body: &Value) -> Option<u64> {
        match self {
            Dialect::Anthropic => body["max_tokens"].as_u64(),
            Dialect::OpenAiChat => body["max_completion_tokens"]
                .as_u64()
                .or_else(|| body["max_tokens"].as_u64()),
            Dialect::Responses => body["max_output_tokens"].as_u64(),
            Dialect::Gemini => body["generationConfig"]["maxOutputTokens"].as_u64(),
            Dialect::Other => None,
        }
    }

    /// The header the upstream takes its key in, and the value for `key`.
    pub fn key_header(self, key: &str) -> (&'static str, String) {
        match self {
            Dialect::Anthropic => ("x-api-key", key.to_string()),
            Dialect::Gemini => ("x-goog-api-key", key.to_string()),
            Dialect::OpenAiChat | Dialect::Responses | Dialect::Other => {
                ("authorization", format!("Bearer {key}"))
            }
        }
    }

    /// The HTTP status of a refusal for `kind` in this API: a spent budget is 429 (with
    /// `x-should-retry: false`), but 402 for chat completions, whose CLIs (Qwen Code, opencode)
    /// retry every 429 whatever its body says and would never show the error.
    pub fn status(self, kind: ErrorKind) -> u16 {
        match (self, kind) {
            (Dialect::OpenAiChat, ErrorKind::Budget) => 402,
            _ => kind.status(),
        }
    }

    /// An error body in this API's shape: `kind` is what went wrong (see [`ErrorKind`]).
    pub fn error_body(self, kind: ErrorKind, message: &str) -> Value {
        let status = kind.status();
        match self {
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {"type": kind.anthropic_type(), "message": message},
            }),
            Dialect::Gemini => json!({
                "error": {"code": status, "message": message, "status": kind.google_status()},
            }),
            Dialect::OpenAiChat | Dialect::Responses | Dialect::Other => json!({
                "error": {
                    "message": message,
                    "type": kind.openai_type(),
                    "param": null,
                    "code": kind.openai_code(),
                },
            }),
        }
    }
}

/// What the gateway refuses a request for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No token, or not one of this gateway's (401).
    Unauthorized,
    /// The agent's role's or the team's budget is spent (429; 402 for chat completions:
    /// [`Dialect::status`]).
    Budget,
    /// The upstream could not be reached (502).
    Upstream,
    /// The request is not one the gateway can forward (400).
    BadRequest,
}

impl ErrorKind {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Unauthorized => 401,
            ErrorKind::Budget => 429,
            ErrorKind::Upstream => 502,
            ErrorKind::BadRequest => 400,
        }
    }
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "authentication_error",
            ErrorKind::Budget => "rate_limit_error",
            ErrorKind::Upstream => "api_error",
            ErrorKind::BadRequest => "invalid_request_error",
        }
    }
    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized | ErrorKind::BadRequest => "invalid_request_error",
            ErrorKind::Budget => "insufficient_quota",
            ErrorKind::Upstream => "server_error",
        }
    }
    fn openai_code(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "invalid_api_key",
            ErrorKind::Budget => "insufficient_quota",
            ErrorKind::Upstream => "upstream_unreachable",
            ErrorKind::BadRequest => "invalid_request",
        }
    }
    fn google_status(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "UNAUTHENTICATED",
            ErrorKind::Budget => "RESOURCE_EXHAUSTED",
            ErrorKind::Upstream => "UNAVAILABLE",
            ErrorKind::BadRequest => "INVALID_ARGUMENT",
        }
    }
}

/// The tokens of one model response, in the meaning of the team's usage records: `input` is
/// every prompt token, cache reads (`cached`) and writes (`cache_write`) included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every prompt token.
    pub input: u64,
    /// Output (completion) tokens, reasoning included.
    pub output: u64,
    /// The prompt tokens read from the provider's cache.
    pub cached: u64,
    /// The prompt tokens written to the provider's cache.
    pub cache_write: u64,
}

/// The most bytes of a whole (not streamed) response kept to read its usage from; a larger
/// one is still passed through whole, and its usage estimated.
const WHOLE_CAP: usize = 16 * 1024 * 1024;

/// Reads a response's usage from its bytes as they pass, whole or streamed.
#[derive(Debug)]
pub struct UsageReader {
    dialect: Dialect,
    sse: bool,
    buf: Vec<u8>,
    too_big: bool,
    /// Anthropic's four counts as it reports them (uncached input, cache reads, cache
    /// writes, output), the later event's over the earlier's.
    anthropic: [Option<u64>; 4],
    usage: Option<Usage>,
    /// Bytes seen.
    pub bytes: u64,
}

impl UsageReader {
    /// A reader for a response in `dialect`, server-sent events when `sse`.
    pub fn new(dialect: Dialect, sse: bool) -> UsageReader {
        UsageReader {
            dialect,
            sse,
            buf: Vec::new(),
            too_big: false,
            anthropic: [None; 4],
            usage: None,
            bytes: 0,
        }
    }

    /// The next bytes of the response.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if !self.sse {
            if self.buf.len() + chunk.len() > WHOLE_CAP {
                self.too_big = true;
                self.buf = Vec::new();
            } else if !self.too_big {
                self.buf.extend_from_slice(chunk);
            }
            return;
        }
        self.buf.extend_from_slice(chunk);
        while let Some((end, sep)) = event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + sep).collect();
            self.event(&event[..end]);
        }
    }

    /// The usage the response reported, once it has ended.
    pub fn finish(mut self) -> Option<Usage> {
        if self.sse {
            let rest = std::mem::take(&mut self.buf);
            self.event(&rest);
        } else if !self.too_big
            && let Ok(v) = serde_json::from_slice::<Value>(&self.buf)
        {
            match v {
                // Gemini's stream without `alt=sse`: one JSON array of the chunks.
                Value::Array(items) => items.iter().for_each(|i| self.apply(i)),
                v => self.apply(&v),
            }
        }
        self.usage
    }

    /// One server-sent event's bytes.
    fn event(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            return;
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            return;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data) {
            self.apply(&v);
        }
    }

    /// One JSON object of the response (the whole body, or one event's data).
    fn apply(&mut self, v: &Value) {
        match self.dialect {
            Dialect::Anthropic => {
                let u = match v["type"].as_str() {
                    Some("message_start") => &v["message"]["usage"],
                    Some("message_delta") => &v["usage"],
                    Some("message") => &v["usage"],
                    _ => return,
                };
                if !u.is_object() {
                    return;
                }
                let fields = [
                    "input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                    "output_tokens",
                ];
                for (slot, f) in self.anthropic.iter_mut().zip(fields) {
                    if let Some(n) = u[f].as_u64() {
                        *slot = Some(n);
                    }
                }
                let [input, read, write, output] = self.anthropic.map(|n| n.unwrap_or(0));
                self.usage = Some(Usage {
                    input: input + read + write,
                    output,
                    cached: read,
                    cache_write: write,
                });
            }
            Dialect::OpenAiChat | Dialect::Other => {
                let u = &v["usage"];
                if u.is_object() {
                    self.usage = Some(Usage {
                        input: u["prompt_tokens"].as_u64().unwrap_or(0),
                        output: u["completion_tokens"].as_u64().unwrap_or(0),
                        cached: u["prompt_tokens_details"]["cached_tokens"]
                            .as_u64()
                            .unwrap_or(0),
                        cache_write: 0,
                    });
                }
            }
            Dialect::Responses => {
                // Streamed: `response.completed` (or `.incomplete`, `.failed`) carries the
                // response; whole, the body is the response.
                let u = if v["response"].is_object() {
                    &v["response"]["usage"]
                } else {
                    &v["usage"]
                };
                if u.is_object() {
                    self.usage = Some(Usage {
                        input: u["input_tokens"].as_u64().unwrap_or(0),
                        output: u["output_tokens"].as_u64().unwrap_or(0),
                        cached: u["input_tokens_details"]["cached_tokens"]
                            .as_u64()
                            .unwrap_or(0),
                        cache_write: 0,
                    });
                }
            }
            Dialect::Gemini => {
                let u = &v["usageMetadata"];
                if u.is_object() {
                    self.usage = Some(Usage {
                        input: u["promptTokenCount"].as_u64().unwrap_or(0),
                        output: u["candidatesTokenCount"].as_u64().unwrap_or(0)
                            + u["thoughtsTokenCount"].as_u64().unwrap_or(0),
                        cached: u["cachedContentTokenCount"].as_u64().unwrap_or(0),
                        cache_write: 0,
                    });
                }
            }
        }
    }
}

/// Where the first whole event in `buf` ends, and its separator's length (`\n\n`, `\r\n\r\n`).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}
