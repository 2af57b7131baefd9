//! The Anthropic messages wire format.

use crate::client::{Failure, StreamDecoder, Wire, temperature_json};
use crate::sse::SseEvent;
use crate::{ChatRole, ModelConfig, StreamEvent, ToolCall, Turn, TurnRequest, Usage};
use serde_json::{Map, Value, json};

/// The API version this client speaks.
const API_VERSION: &str = "2023-06-01";

/// `POST {base_url}/v1/messages`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Anthropic;

impl Wire for Anthropic {
    type Decoder = AnthropicStream;

    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn default_base(&self) -> &'static str {
        "https://api.anthropic.com"
    }

    fn endpoint(&self, base: &str) -> String {
        // A base written with its `/v1` (as for OpenAI) must not become `/v1/v1/messages`.
        match base.strip_suffix("/v1") {
            Some(root) => format!("{root}/v1/messages"),
            None => format!("{base}/v1/messages"),
        }
    }

    fn authorize(&self, rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
        let rb = rb.header("anthropic-version", API_VERSION);
        match key {
            Some(key) => rb.header("x-api-key", key),
            None => rb,
        }
    }

    fn body(&self, cfg: &ModelConfig, req: &TurnRequest) -> serde_json::Result<Vec<u8>> {
        let (_, mut out) = req.body_room();
        serde_json::to_writer(&mut out, &build_body(cfg, req))?;
        Ok(out)
    }

    fn parse(&self, v: &Value) -> Result<Turn, Failure> {
        parse_response(v)
    }
}

/// One message being assembled: its role and content blocks.
struct Outgoing {
    /// `user` or `assistant`.
    role: &'static str,
    /// The content blocks.
    blocks: Vec<Value>,
}

/// The request's system text and its other messages as the API wants them: alternating
/// roles, tool results as user messages ahead of any text.
fn alternating(req: &TurnRequest) -> (Vec<&str>, Vec<Outgoing>) {
    let mut system: Vec<&str> = Vec::new();
    let mut out: Vec<Outgoing> = Vec::new();
    for m in &req.messages {
        match m.role {
            ChatRole::System => system.push(&m.content),
            ChatRole::User => {
                if !m.content.is_empty() {
                    push(
                        &mut out,
                        "user",
                        vec![json!({"type": "text", "text": m.content})],
                    );
                }
            }
            ChatRole::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    // The API takes the input as an object; arguments the model wrote badly
                    // cannot be sent back as they were, so they go as an empty object.
                    let input = match serde_json::from_str::<Value>(&c.arguments) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => json!({}),
                    };
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                push(&mut out, "assistant", blocks);
            }
            ChatRole::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                    "is_error": m.is_error,
                });
                match out.last_mut() {
                    Some(last) if last.role == "user" => {
                        let at = last
                            .blocks
                            .iter()
                            .take_while(|b| b["type"] == "tool_result")
                            .count();
                        last.blocks.insert(at, block);
                    }
                    _ => out.push(Outgoing {
                        role: "user",
                        blocks: vec![block],
                    }),
                }
            }
        }
    }
    (system, out)
}

/// The request body.
///
/// The API wants user and assistant messages to alternate and tool results sent as user
/// messages, so consecutive messages of one role are merged into one; within a user message the
/// tool results come before any text, as the API requires. With `cfg.cache` the body carries
/// prompt-cache breakpoints ([`breakpoints`]).
pub(crate) fn build_body(cfg: &ModelConfig, req: &TurnRequest) -> Value {
    let (system, out) = alternating(req);
    let mut messages: Vec<Value> = out
        .into_iter()
        .map(|m| json!({"role": m.role, "content": m.blocks}))
        .collect();
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    let system = system
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let marks = if cfg.cache {
        breakpoints(&cfg.model, &tools, &system, &messages)
    } else {
        Marks::default()
    };
    if marks.tools
        && let Some(last) = tools.last_mut()
    {
        mark(last);
    }
    for i in marks.messages.into_iter().flatten() {
        if let Some(block) = messages[i]["content"]
            .as_array_mut()
            .and_then(|b| b.last_mut())
        {
            mark(block);
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), cfg.model.clone().into());
    body.insert("max_tokens".into(), cfg.max_tokens.into());
    if marks.system {
        let mut block = json!({"type": "text", "text": system});
        mark(&mut block);
        body.insert("system".into(), json!([block]));
    } else if !system.is_empty() {
        body.insert("system".into(), system.into());
    }
    body.insert("messages".into(), Value::Array(messages));
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(t) = cfg.temperature {
        body.insert("temperature".into(), temperature_json(t));
    }
    body.insert("stream".into(), cfg.stream.into());
    Value::Object(body)
}

/// Where a request's prompt-cache breakpoints go (at most the API's 4).
#[derive(Debug, Default, PartialEq, Eq)]
struct Marks {
    /// On the last tool: the tools stay cached when the system prompt changes.
    tools: bool,
    /// On the system prompt (after the tools in the API's order).
    system: bool,
    /// On the last block of these messages: the newest user message before the newest
    /// message (where the previous request's rolling breakpoint was, so this request reads
    /// what that one wrote however many blocks came since) and the newest message (written for
    /// the next request).
    messages: [Option<usize>; 2],
}

/// The fewest prompt tokens the API caches for `model` (a shorter prefix is neither written
/// nor read, the breakpoint is only wasted): 4096 for Claude Opus 4.5 and later and Haiku 4.5,
/// 2048 for the older Haikus, 1024 for the rest (Sonnet, Opus 4 and 4.1).
pub(crate) fn min_cacheable_tokens(model: &str) -> u64 {
    let m = model.to_ascii_lowercase();
    if ["opus-4-5", "opus-4-6", "haiku-4-5"]
        .iter()
        .any(|k| m.contains(k))
    {
        4096
    } else if m.contains("haiku") {
        2048
    } else {
        1024
    }
}

/// The breakpoints of a request: each where the prompt up to it (tools, then system, then
/// messages, the API's order; estimated with [`crate::estimate_tokens`]) reaches the model's
/// minimum cacheable size, so a short request carries none.
fn breakpoints(model: &str, tools: &[Value], system: &str, messages: &[Value]) -> Marks {
    let min = min_cacheable_tokens(model);
    let size = |v: &Value| v.to_string().len();
    let big = |bytes: usize| crate::estimate_tokens(bytes) >= min;
    let mut marks = Marks::default();
    let mut prefix: usize = tools.iter().map(size).sum();
    marks.tools = !tools.is_empty() && big(prefix);
    prefix += system.len();
    marks.system = !system.is_empty() && big(prefix);
    let Some(newest) = messages.len().checked_sub(1) else {
        return marks;
    };
    let before = messages[..newest].iter().rposition(|m| m["role"] == "user");
    let at = |i: usize| {
        let upto: usize = messages[..=i].iter().map(size).sum();
        big(prefix + upto).then_some(i)
    };
    marks.messages = [before.and_then(at), at(newest)];
    marks
}

/// Marks a block (a tool, the system text, a message's content block) as a cache breakpoint:
/// the prompt up to and including it is cached for 5 minutes.
fn mark(block: &mut Value) {
    if let Some(o) = block.as_object_mut() {
        o.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
}

/// Appends blocks as a message of `role`, merged into the last message when it has that role.
fn push(out: &mut Vec<Outgoing>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if last.role == role => last.blocks.extend(blocks),
        _ => out.push(Outgoing { role, blocks }),
    }
}

/// Reads a whole answer.
pub(crate) fn parse_response(v: &Value) -> Result<Turn, Failure> {
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_failure(v.get("error").unwrap_or(&Value::Null)));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::Protocol(format!("the answer has no `content`: {}", short(v))))?;
    let mut turn = Turn::default();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => turn
                .text
                .push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => turn.tool_calls.push(ToolCall {
                id: b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: b
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: input_text(b.get("input")),
            }),
            // Thinking and server-tool blocks are not part of the turn the agent sees.
            _ => {}
        }
    }
    turn.stop_reason = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    turn.usage = v.get("usage").and_then(|u| {
        let mut counts = Counts::default();
        counts.take(u);
        counts.usage()
    });
    Ok(turn)
}

/// The token counts of a messages answer as the API gives them: `input_tokens` leaves out
/// the prompt-cache reads and writes, which have fields of their own.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// `input_tokens`: prompt tokens after the last cache breakpoint.
    input: Option<u64>,
    /// `output_tokens`.
    output: Option<u64>,
    /// `cache_read_input_tokens`.
    cache_read: Option<u64>,
    /// `cache_creation_input_tokens`.
    cache_creation: Option<u64>,
}

impl Counts {
    /// Takes the fields present in a `usage` object; a later event's figure replaces an
    /// earlier one (`message_delta` carries running totals).
    fn take(&mut self, u: &Value) {
        let field = |k: &str| u.get(k).and_then(Value::as_u64);
        self.input = field("input_tokens").or(self.input);
        self.output = field("output_tokens").or(self.output);
        self.cache_read = field("cache_read_input_tokens").or(self.cache_read);
        self.cache_creation = field("cache_creation_input_tokens").or(self.cache_creation);
    }

    /// The counts in the crate's meaning (every prompt token in `input_tokens`, cache reads
    /// in `cached_tokens`, cache writes in `cache_write_tokens`); none when the answer gave no figure at all.
    fn usage(&self) -> Option<Usage> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        let read = self.cache_read.unwrap_or(0);
        Some(Usage {
            input_tokens: self.input.unwrap_or(0) + read + self.cache_creation.unwrap_or(0),
            output_tokens: self.output.unwrap_or(0),
            cached_tokens: read,
            cache_write_tokens: self.cache_creation.unwrap_or(0),
        })
    }
}

/// A tool input as argument text. The API sends an object; an input that arrives as a string
/// (a proxy passing unparsed arguments through) is taken as the text itself.
fn input_text(input: Option<&Value>) -> String {
    match input {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "{}".to_string(),
        Some(other) => other.to_string(),
    }
}

/// An `error` object as a failure: overload is worth retrying like a 529, the rest is not.
fn error_failure(e: &Value) -> Failure {
    let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| e.to_string(), str::to_string);
    if kind == "overloaded_error" {
        Failure::Status {
            status: 529,
            message,
            retry_after: None,
        }
    } else {
        Failure::Protocol(format!("the stream reported an error ({kind}): {message}"))
    }
}

/// A JSON value cut short for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

/// One content block being assembled.
#[derive(Debug)]
enum Block {
    /// Text.
    Text(String),
    /// A tool call: its id, name, the input from the start event, and the streamed input.
    Tool {
        id: String,
        name: String,
        initial: String,
        json: String,
    },
    /// Anything else (thinking, …), kept only to hold its index.
    Other,
}

/// Accumulates the messages-API events.
#[derive(Debug, Default)]
pub(crate) struct AnthropicStream {
    /// The blocks by their index, in the order they began.
    blocks: Vec<(u64, Block)>,
    /// The stop reason, once sent.
    stop: Option<String>,
    /// Token counts from `message_start` and `message_delta`.
    counts: Counts,
}

impl StreamDecoder for AnthropicStream {
    fn on_event(
        &mut self,
        ev: &SseEvent,
        emit: &mut dyn FnMut(StreamEvent),
    ) -> Result<bool, Failure> {
        let data = ev.data.trim();
        let v: Value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(data).map_err(|e| {
                Failure::Protocol(format!("a streamed event is not JSON ({e}): {data}"))
            })?
        };
        let kind = ev
            .event
            .as_deref()
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or_default();
        match kind {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage") {
                    self.add_usage(u);
                }
            }
            "content_block_start" => self.block_start(&v, emit),
            "content_block_delta" => self.block_delta(&v, data, emit)?,
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(reason.to_string());
                }
                if let Some(u) = v.get("usage") {
                    self.add_usage(u);
                }
            }
            "message_stop" => return Ok(true),
            "error" => return Err(error_failure(v.get("error").unwrap_or(&Value::Null))),
            // `ping`, `content_block_stop` and events added to the API later carry nothing needed.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self, complete: bool) -> Result<Turn, Failure> {
        if !complete && self.stop.is_none() {
            return Err(Failure::Connect(
                "the stream ended before the answer was complete".into(),
            ));
        }
        let mut turn = Turn {
            stop_reason: self.stop.unwrap_or_default(),
            usage: self.counts.usage(),
            ..Turn::default()
        };
        let mut blocks = self.blocks;
        blocks.sort_by_key(|(i, _)| *i);
        for (_, b) in blocks {
            match b {
                Block::Text(t) => turn.text.push_str(&t),
                Block::Tool {
                    id,
                    name,
                    initial,
                    json,
                } => {
                    let arguments = if json.is_empty() { initial } else { json };
                    turn.tool_calls.push(ToolCall {
                        id,
                        name,
                        arguments,
                    });
                }
                Block::Other => {}
            }
        }
        Ok(turn)
    }
}

impl AnthropicStream {
    /// `content_block_start`: a text or tool-call block begins (its first text or the call's
    /// start emitted); any other kind only holds its index.
    fn block_start(&mut self, v: &Value, emit: &mut dyn FnMut(StreamEvent)) {
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(self.blocks.len() as u64);
        let cb = v.get("content_block").unwrap_or(&Value::Null);
        let block = match cb.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = cb
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if !text.is_empty() {
                    emit(StreamEvent::Text(text.clone()));
                }
                Block::Text(text)
            }
            Some("tool_use") => {
                let id = cb
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let name = cb
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                emit(StreamEvent::ToolCallStart {
                    id: id.clone(),
                    name: name.clone(),
                });
                Block::Tool {
                    id,
                    name,
                    initial: input_text(cb.get("input")),
                    json: String::new(),
                }
            }
            _ => Block::Other,
        };
        self.blocks.push((index, block));
    }

    /// `content_block_delta`: more text (emitted) or tool input for a block that began.
    fn block_delta(
        &mut self,
        v: &Value,
        data: &str,
        emit: &mut dyn FnMut(StreamEvent),
    ) -> Result<(), Failure> {
        let index = v.get("index").and_then(Value::as_u64);
        let delta = v.get("delta").unwrap_or(&Value::Null);
        let block = match index {
            Some(i) => self.blocks.iter_mut().find(|(bi, _)| *bi == i),
            None => self.blocks.last_mut(),
        };
        match (block, delta.get("type").and_then(Value::as_str)) {
            (Some((_, Block::Text(text))), Some("text_delta")) => {
                let piece = delta
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !piece.is_empty() {
                    text.push_str(piece);
                    emit(StreamEvent::Text(piece.to_string()));
                }
            }
            (Some((_, Block::Tool { json, .. })), Some("input_json_delta")) => {
                json.push_str(
                    delta
                        .get("partial_json")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
            }
            (None, _) => {
                return Err(Failure::Protocol(format!(
                    "a delta for a block that never began: {data}"
                )));
            }
            // Thinking and signature deltas are not part of the turn.
            _ => {}
        }
        Ok(())
    }
}

impl AnthropicStream {
    /// Takes the counts an event reports (`message_start` has the input side, `message_delta`
    /// running totals of the output and, from newer servers, the input side again).
    fn add_usage(&mut self, u: &Value) {
        self.counts.take(u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKind, ChatMessage, ToolSpec};
    use std::time::Duration;

    fn cfg(stream: bool) -> ModelConfig {
        ModelConfig {
            api: ApiKind::Anthropic,
            model: "claude-test".into(),
            base_url: None,
            api_key: Some("k".into()),
            stream,
            timeout: Duration::from_secs(5),
            max_retries: 0,
            max_tokens: 100,
            temperature: None,
            cache: true,
            cache_key: None,
        }
    }

    fn call(id: &str, name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    #[test]
    fn body_merges_tool_results_and_users() {
        let req = TurnRequest {
            messages: vec![
                ChatMessage::system("You are a tester."),
                ChatMessage::system("Your name is bob."),
                ChatMessage::user("go"),
                ChatMessage::user("now"),
                ChatMessage::assistant(
                    "looking",
                    vec![call("t1", "read", "{\"p\":1}"), call("t2", "ls", "{bad")],
                ),
                ChatMessage::tool("t1", "one", false),
                ChatMessage::tool("t2", "oops", true),
                ChatMessage::user("a message from alice"),
                ChatMessage::assistant("", vec![call("t3", "ls", "")]),
            ],
            tools: vec![ToolSpec {
                name: "read".into(),
                description: "reads".into(),
                parameters: json!({"type": "object"}).into(),
            }],
        };
        let body = build_body(&cfg(true), &req);
        assert_eq!(
            body,
            json!({
                "model": "claude-test",
                "max_tokens": 100,
                "system": "You are a tester.\n\nYour name is bob.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "go"}, {"type": "text", "text": "now"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "looking"},
                        {"type": "tool_use", "id": "t1", "name": "read", "input": {"p": 1}},
                        {"type": "tool_use", "id": "t2", "name": "ls", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "one", "is_error": false},
                        {"type": "tool_result", "tool_use_id": "t2", "content": "oops", "is_error": true},
                        {"type": "text", "text": "a message from alice"},
                    ]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t3", "name": "ls", "input": {}}]},
                ],
                "tools": [{"name": "read", "description": "reads", "input_schema": {"type": "object"}}],
                "stream": true,
            })
        );
    }

    /// A tool call, its result and a message: the conversation of the caching tests.
    fn cached_conversation(system: &str, tool_description: &str) -> TurnRequest {
        TurnRequest {
            messages: vec![
                ChatMessage::system(system),
                ChatMessage::user("go"),
                ChatMessage::assistant("", vec![call("t1", "read", "{}")]),
                ChatMessage::tool("t1", "one", false),
                ChatMessage::user("a message from alice"),
            ],
            tools: vec![
                ToolSpec {
                    name: "list".into(),
                    description: "lists".into(),
                    parameters: json!({"type": "object"}).into(),
                },
                ToolSpec {
                    name: "read".into(),
                    description: tool_description.into(),
                    parameters: json!({"type": "object"}).into(),
                },
            ],
        }
    }

    fn sonnet() -> ModelConfig {
        ModelConfig {
            model: "claude-sonnet-4-5".into(),
            ..cfg(false)
        }
    }

    /// Every `cache_control` of a body, as the JSON paths of the blocks that carry it.
    fn marked(v: &Value, at: &str, found: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if o.contains_key("cache_control") {
                    found.push(at.to_string());
                }
                for (k, v) in o {
                    marked(v, &format!("{at}/{k}"), found);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    marked(v, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    fn breakpoints_of(body: &Value) -> Vec<String> {
        let mut found = Vec::new();
        marked(body, "", &mut found);
        found
    }

    /// Large tools: four breakpoints, on the last tool, the system prompt, the user message
    /// before the newest (the previous request's rolling one) and the newest message.
    #[test]
    fn body_carries_cache_breakpoints() {
        let long = "Reads a file of the workspace. ".repeat(150);
        let body = build_body(&sonnet(), &cached_conversation("You are a tester.", &long));
        let eph = json!({"type": "ephemeral"});
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 100,
                "system": [{"type": "text", "text": "You are a tester.", "cache_control": eph}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "go", "cache_control": eph}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "one", "is_error": false},
                        {"type": "text", "text": "a message from alice", "cache_control": eph},
                    ]},
                ],
                "tools": [
                    {"name": "list", "description": "lists", "input_schema": {"type": "object"}},
                    {"name": "read", "description": long, "input_schema": {"type": "object"}, "cache_control": eph},
                ],
                "stream": false,
            })
        );
        assert!(breakpoints_of(&body).len() <= 4, "the API allows 4");
    }

    /// A breakpoint goes only where the prompt up to it reaches the model's minimum: small
    /// tools get none, a large system prompt after them does, and so does what follows it.
    #[test]
    fn breakpoints_only_where_the_prefix_reaches_the_minimum() {
        let long = "You are a tester. ".repeat(250); // ~4500 bytes: ~1125 tokens
        let body = build_body(&sonnet(), &cached_conversation(&long, "reads"));
        assert_eq!(
            breakpoints_of(&body),
            vec![
                "/messages/0/content/0",
                "/messages/2/content/1",
                "/system/0"
            ]
        );
        // The same prompt is below Haiku's minimum (2048 tokens for Haiku 3.5, 4096 for 4.5)
        // and Opus 4.5's (4096): it carries none, and the system prompt stays a string.
        for model in [
            "claude-3-5-haiku-latest",
            "claude-haiku-4-5",
            "claude-opus-4-5",
        ] {
            let cfg = ModelConfig {
                model: model.into(),
                ..sonnet()
            };
            let body = build_body(&cfg, &cached_conversation(&long, "reads"));
            assert_eq!(breakpoints_of(&body), Vec::<String>::new(), "{model}");
            assert_eq!(body["system"], json!(long.clone()), "{model}");
        }
        assert_eq!(min_cacheable_tokens("claude-sonnet-4-5-20250929"), 1024);
        assert_eq!(min_cacheable_tokens("claude-opus-4-1"), 1024);
        assert_eq!(min_cacheable_tokens("claude-3-5-haiku-20241022"), 2048);
        assert_eq!(min_cacheable_tokens("claude-haiku-4-5"), 4096);
        assert_eq!(min_cacheable_tokens("claude-opus-4-5"), 4096);
    }

    /// Below the minimum size a request carries no breakpoint at all; with caching off, no
    /// request carries one.
    #[test]
    fn no_breakpoints_below_the_minimum_or_with_caching_off() {
        let small = build_body(
            &sonnet(),
            &cached_conversation("You are a tester.", "reads"),
        );
        assert_eq!(breakpoints_of(&small), Vec::<String>::new());
        assert_eq!(small["system"], "You are a tester.");
        let long = "Reads a file of the workspace. ".repeat(150);
        let off = ModelConfig {
            cache: false,
            ..sonnet()
        };
        let body = build_body(&off, &cached_conversation(&long, &long));
        assert_eq!(breakpoints_of(&body), Vec::<String>::new());
    }

    /// The newest message is the only user message: it and the system prompt are marked, the
    /// rolling breakpoint of a previous request has nowhere to go.
    #[test]
    fn a_first_request_has_one_rolling_breakpoint() {
        let long = "You are a tester. ".repeat(250);
        let req = TurnRequest {
            messages: vec![ChatMessage::system(&long), ChatMessage::user("go")],
            tools: vec![],
        };
        let body = build_body(&sonnet(), &req);
        assert_eq!(
            breakpoints_of(&body),
            vec!["/messages/0/content/0", "/system/0"]
        );
    }

    #[test]
    fn tool_results_go_before_text_already_in_the_user_message() {
        let req = TurnRequest {
            messages: vec![
                ChatMessage::assistant("", vec![call("t1", "ls", "{}")]),
                ChatMessage::user("interjection"),
                ChatMessage::tool("t1", "r", false),
            ],
            tools: vec![],
        };
        let body = build_body(&cfg(false), &req);
        assert!(body.get("system").is_none());
        assert!(body.get("tools").is_none());
        assert_eq!(body["messages"][1]["content"][0]["type"], "tool_result");
        assert_eq!(body["messages"][1]["content"][1]["type"], "text");
    }

    #[test]
    fn endpoint_tolerates_v1_in_base() {
        assert_eq!(
            Anthropic.endpoint("https://api.anthropic.com"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            Anthropic.endpoint("http://h:1/v1"),
            "http://h:1/v1/messages"
        );
    }

    #[test]
    fn parses_whole_answer() {
        let v = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a b"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 20, "output_tokens": 9}
        });
        let t = parse_response(&v).unwrap();
        assert_eq!(t.text, "Let me look.");
        assert_eq!(
            t.tool_calls,
            vec![call("toolu_1", "read", "{\"path\":\"a b\"}")]
        );
        assert_eq!(t.stop_reason, "tool_use");
        assert_eq!(
            t.usage,
            Some(Usage {
                input_tokens: 20,
                output_tokens: 9,
                cached_tokens: 0,
                cache_write_tokens: 0,
            })
        );
    }

    fn ev(name: &str, data: Value) -> SseEvent {
        SseEvent {
            event: Some(name.into()),
            data: data.to_string(),
        }
    }

    #[test]
    fn stream_accumulates_blocks() {
        let mut d = AnthropicStream::default();
        let mut events = Vec::new();
        let mut emit = |e: StreamEvent| events.push(e);
        let seq = [
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}}),
            ),
            ev("ping", json!({"type": "ping"})),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi "}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "there"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "ls", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"d\":"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"x\"}"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_10", "name": "pwd", "input": {}}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 2}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
            ),
        ];
        for e in &seq {
            assert!(!d.on_event(e, &mut emit).unwrap());
        }
        assert!(
            d.on_event(
                &ev("message_stop", json!({"type": "message_stop"})),
                &mut emit
            )
            .unwrap()
        );
        let t = d.finish(true).unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Text("Hi ".into()),
                StreamEvent::Text("there".into()),
                StreamEvent::ToolCallStart {
                    id: "toolu_9".into(),
                    name: "ls".into()
                },
                StreamEvent::ToolCallStart {
                    id: "toolu_10".into(),
                    name: "pwd".into()
                },
            ]
        );
        assert_eq!(t.text, "Hi there");
        assert_eq!(
            t.tool_calls,
            vec![
                call("toolu_9", "ls", "{\"d\":\"x\"}"),
                call("toolu_10", "pwd", "{}")
            ]
        );
        assert_eq!(t.stop_reason, "tool_use");
        assert_eq!(
            t.usage,
            Some(Usage {
                input_tokens: 11,
                output_tokens: 30,
                cached_tokens: 0,
                cache_write_tokens: 0,
            })
        );
    }

    /// A real messages answer with prompt caching: `input_tokens` leaves out the cache reads
    /// and writes; the accounting counts all three as input and the reads as cached.
    #[test]
    fn whole_answer_usage_counts_cache_reads_and_writes() {
        let v = json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello!"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 200,
                "cache_read_input_tokens": 1800, "output_tokens": 6,
                "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 0},
                "service_tier": "standard"}
        });
        assert_eq!(
            parse_response(&v).unwrap().usage,
            Some(Usage {
                input_tokens: 2012,
                output_tokens: 6,
                cached_tokens: 1800,
                cache_write_tokens: 200,
            })
        );
    }

    /// Streaming: `message_start` has the input side (and one output token), `message_delta`
    /// the running output total; a newer server repeats the input side there, which must not
    /// be counted twice.
    #[test]
    fn stream_usage_from_message_start_and_delta() {
        let start = ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 4000, "output_tokens": 1}}}),
        );
        let text = [
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
        ];
        let stop = ev("message_stop", json!({"type": "message_stop"}));
        for delta_usage in [
            json!({"output_tokens": 15}),
            json!({"input_tokens": 25, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 4000, "output_tokens": 15}),
        ] {
            let mut d = AnthropicStream::default();
            let mut emit = |_e: StreamEvent| {};
            d.on_event(&start, &mut emit).unwrap();
            for e in &text {
                d.on_event(e, &mut emit).unwrap();
            }
            let delta = ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": delta_usage}),
            );
            d.on_event(&delta, &mut emit).unwrap();
            assert!(d.on_event(&stop, &mut emit).unwrap());
            assert_eq!(
                d.finish(true).unwrap().usage,
                Some(Usage {
                    input_tokens: 4025,
                    output_tokens: 15,
                    cached_tokens: 4000,
                    cache_write_tokens: 0,
                }),
                "{delta_usage}"
            );
        }
    }

    #[test]
    fn stream_error_events() {
        let mut emit = |_e: StreamEvent| {};
        let mut d = AnthropicStream::default();
        let overloaded = ev(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        assert_eq!(
            d.on_event(&overloaded, &mut emit),
            Err(Failure::Status {
                status: 529,
                message: "Overloaded".into(),
                retry_after: None
            })
        );
        let other = ev(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
        );
        assert!(
            matches!(d.on_event(&other, &mut emit), Err(Failure::Protocol(m)) if m.contains("boom"))
        );
    }

    #[test]
    fn stream_cut_short_is_a_connection_failure() {
        let d = AnthropicStream::default();
        assert!(matches!(d.finish(false), Err(Failure::Connect(_))));
    }
}
