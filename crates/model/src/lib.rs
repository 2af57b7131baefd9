//! Language-model providers behind one trait: the OpenAI chat-completions API (and every
//! compatible server: Ollama, vLLM, llama.cpp, LM Studio, OpenRouter) and the Anthropic messages
//! API, streaming or not, with tool calling, retries on 429/5xx, timeouts, and errors that say
//! what to fix.
//!
//! The agent loop talks to a [`Model`]; it never sees HTTP.

mod anthropic;
mod client;
mod openai;
mod pool;
mod schema;
mod sse;

pub use pool::HttpPool;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Builds the client for `cfg`. `key_hint` says where the key came from (e.g.
/// `$OPENAI_API_KEY`) and is quoted in [`ModelError::Auth`].
///
/// Nothing is sent yet; this fails only on a base URL that is not an http(s) URL.
pub fn connect(cfg: ModelConfig, key_hint: String) -> Result<Arc<dyn Model>, ModelError> {
    Ok(match cfg.api {
        ApiKind::OpenAi => Arc::new(client::HttpModel::new(openai::OpenAi, cfg, key_hint)?),
        ApiKind::Anthropic => {
            Arc::new(client::HttpModel::new(anthropic::Anthropic, cfg, key_hint)?)
        }
    })
}

/// The JSON body a request for `req` sends to `cfg`'s API (what [`connect`]'s model posts),
/// for tests and tools that check what goes on the wire; fails where encoding the request
/// would (the model's request fails the same way).
pub fn request_body(cfg: &ModelConfig, req: &TurnRequest) -> serde_json::Result<serde_json::Value> {
    match cfg.api {
        ApiKind::OpenAi => openai::build_body(cfg, req),
        ApiKind::Anthropic => Ok(anthropic::build_body(cfg, req)),
    }
}

/// Which wire format to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// `POST {base_url}/chat/completions` (OpenAI and compatible servers).
    OpenAi,
    /// `POST {base_url}/v1/messages` (Anthropic).
    Anthropic,
}

/// How to reach a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The wire format.
    pub api: ApiKind,
    /// The model name, e.g. `gpt-4.1-mini`, `claude-sonnet-4-5`, `qwen2.5-coder`.
    pub model: String,
    /// The base URL: OpenAI default `https://api.openai.com/v1`, Anthropic default
    /// `https://api.anthropic.com`; any OpenAI-compatible server's `/v1` URL.
    pub base_url: Option<String>,
    /// The API key (none for local servers that need none).
    pub api_key: Option<String>,
    /// Stream the answer (server-sent events) or wait for it whole.
    pub stream: bool,
    /// How long one HTTP attempt may take before it is abandoned.
    pub timeout: Duration,
    /// How many times a 429, a 5xx or a dropped connection is retried (with backoff).
    pub max_retries: u32,
    /// The most tokens the model may produce per turn.
    pub max_tokens: u32,
    /// Sampling temperature, if set.
    pub temperature: Option<f32>,
    /// Prompt caching: Anthropic requests carry cache breakpoints (on the tools, the system
    /// prompt and the newest messages, none below the model's minimum cacheable size), OpenAI
    /// requests `prompt_cache_key` (with `cache_key`). Off, requests carry neither.
    pub cache: bool,
    /// OpenAI's `prompt_cache_key`, one per agent (its name), so the requests of one
    /// conversation reach the servers that hold its prefix; sent only with `cache`.
    pub cache_key: Option<String>,
}

/// The token estimate of the whole team where no count is at hand (budget leases, answers
/// without usage, the minimum cacheable prompt): about 4 bytes a token, at least one.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4).max(1)
}

/// Who said a message in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    /// Instructions (sent as the `system` field for Anthropic).
    System,
    /// The human side: goals, injected team messages.
    User,
    /// The model.
    Assistant,
    /// A tool's result, answering one tool call.
    Tool,
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (from the provider), echoed in the result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them: JSON text that may be malformed.
    pub arguments: String,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: ChatRole,
    /// Its text (may be empty for an assistant turn that only calls tools).
    pub content: String,
    /// For assistant messages: the tool calls it made.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the call this answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// For tool messages: whether the tool failed (Anthropic's `is_error`).
    #[serde(default)]
    pub is_error: bool,
}

impl ChatMessage {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        ChatMessage {
            role: ChatRole::System,
            content: text.into(),
            tool_calls: vec![],
            tool_call_id: None,
            is_error: false,
        }
    }
    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        ChatMessage {
            role: ChatRole::User,
            content: text.into(),
            tool_calls: vec![],
            tool_call_id: None,
            is_error: false,
        }
    }
    /// An assistant message with its tool calls.
    pub fn assistant(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        ChatMessage {
            role: ChatRole::Assistant,
            content: text.into(),
            tool_calls,
            tool_call_id: None,
            is_error: false,
        }
    }
    /// A tool result.
    pub fn tool(call_id: impl Into<String>, text: impl Into<String>, is_error: bool) -> Self {
        ChatMessage {
            role: ChatRole::Tool,
            content: text.into(),
            tool_calls: vec![],
            tool_call_id: Some(call_id.into()),
            is_error,
        }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// A JSON schema of its arguments (an object schema), shared: every agent's tool list
    /// holds the process's one copy instead of a deep copy of its own.
    pub parameters: std::sync::Arc<serde_json::Value>,
}

impl ToolSpec {
    /// Its schema as compact JSON text, written once per process for every use of the same
    /// shared schema: each request's body, each estimate of a prompt's size.
    pub fn parameters_json(&self) -> Arc<str> {
        schema::json(&self.parameters)
    }
}

/// What one request asks.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    /// The conversation so far (system first).
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
}

impl TurnRequest {
    /// Each tool's schema text (looked up once per body, for its size and for writing it) and
    /// an empty buffer with room for the whole body ([`TurnRequest::body_size_hint`]): grown
    /// from 128 bytes a body was copied about seven times per request.
    pub(crate) fn body_room(&self) -> (Vec<Arc<str>>, Vec<u8>) {
        let schemas: Vec<_> = self.tools.iter().map(ToolSpec::parameters_json).collect();
        let out = Vec::with_capacity(self.body_size_hint(&schemas));
        (schemas, out)
    }

    /// About how many bytes a request's body takes: its messages' text and calls, its tools'
    /// descriptions and `schemas` (each tool's schema text, as the caller writes it), and a
    /// little more for the keys.
    pub(crate) fn body_size_hint(&self, schemas: &[Arc<str>]) -> usize {
        let messages: usize = self
            .messages
            .iter()
            .map(|m| {
                m.content.len()
                    + 64
                    + m.tool_calls
                        .iter()
                        .map(|c| c.arguments.len() + c.name.len() + c.id.len() + 96)
                        .sum::<usize>()
            })
            .sum();
        let tools: usize = self
            .tools
            .iter()
            .map(|t| t.description.len() + t.name.len() + 96)
            .sum::<usize>()
            + schemas.iter().map(|s| s.len()).sum::<usize>();
        // Escapes (quotes and new lines written as two bytes) take a little more.
        (messages + tools + 256) * 5 / 4
    }
}

/// Token counts, when the provider reports them, in one meaning for both APIs (the team's
/// usage accounting and its prices rely on it): `input_tokens` counts every prompt token, of
/// which `cached_tokens` were read from the prompt cache and `cache_write_tokens` written to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Every prompt token, cached or not: OpenAI's `prompt_tokens`; Anthropic's
    /// `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens`.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// The part of `input_tokens` read from the provider's prompt cache (billed at the cached
    /// price): OpenAI's `prompt_tokens_details.cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`.
    #[serde(default)]
    pub cached_tokens: u64,
    /// The part of `input_tokens` written to the provider's prompt cache (billed at the
    /// cache-write price, 1.25 × input for Anthropic's 5-minute cache): Anthropic's
    /// `cache_creation_input_tokens`; OpenAI charges no writes and reports none.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

/// The model's answer to one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Turn {
    /// The text it wrote.
    pub text: String,
    /// The tools it wants called, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped (`stop`, `tool_calls`, `end_turn`, `tool_use`, `length`, …).
    pub stop_reason: String,
    /// Token counts, if reported.
    pub usage: Option<Usage>,
}

/// Pieces of a streamed answer, as they arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text.
    Text(String),
    /// A tool call began.
    ToolCallStart {
        /// Its id.
        id: String,
        /// The tool's name.
        name: String,
    },
}

/// Why a model request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// 401/403: the key is missing, wrong or not allowed. Retrying will not help.
    #[error(
        "the model API refused the credentials ({status}): {message} (check the API key in {key_hint})"
    )]
    Auth {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        message: String,
        /// Where the key came from, e.g. `$OPENAI_API_KEY`.
        key_hint: String,
    },
    /// 404: the model or the URL does not exist.
    #[error("the model API answered 404 for {url}: {message} (check `model` and `base_url`)")]
    NotFound {
        /// The URL asked.
        url: String,
        /// What the server said.
        message: String,
    },
    /// Another 4xx: the request was refused as it was.
    #[error("the model API refused the request ({status}): {message}")]
    BadRequest {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        message: String,
    },
    /// 429 or 5xx, still failing after the retries.
    #[error("the model API kept failing ({status}) after {attempts} attempts: {message}")]
    Unavailable {
        /// The last HTTP status.
        status: u16,
        /// How many attempts were made.
        attempts: u32,
        /// What the server said last.
        message: String,
    },
    /// No answer in time, after the retries.
    #[error("the model API did not answer within {secs} s ({attempts} attempts)")]
    Timeout {
        /// The per-attempt timeout.
        secs: u64,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The server could not be reached, after the retries.
    #[error(
        "cannot reach the model API at {url}: {message} (is the server running? check `base_url`)"
    )]
    Connect {
        /// The URL.
        url: String,
        /// The failure.
        message: String,
    },
    /// The answer was not in the expected format.
    #[error("the model API answered in an unexpected format: {0}")]
    Protocol(String),
}

impl ModelError {
    /// Whether the error comes from the configuration (key, model, URL) and will not go away by
    /// trying again later.
    pub fn is_config(&self) -> bool {
        matches!(self, ModelError::Auth { .. } | ModelError::NotFound { .. })
    }
}

/// The boxed future a [`Model`] returns.
pub type TurnFuture<'a> = Pin<Box<dyn Future<Output = Result<Turn, ModelError>> + Send + 'a>>;

/// A model that can take a turn.
pub trait Model: Send + Sync {
    /// Sends the conversation and returns the model's turn; streamed pieces go to `on_event`
    /// as they arrive (nothing is sent there when not streaming).
    fn turn<'a>(
        &'a self,
        req: &'a TurnRequest,
        on_event: &'a mut (dyn FnMut(StreamEvent) + Send),
    ) -> TurnFuture<'a>;

    /// A short description for logs, e.g. `openai gpt-4.1-mini at http://127.0.0.1:11434/v1`.
    fn describe(&self) -> String;
}
