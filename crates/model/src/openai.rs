//! The OpenAI chat-completions wire format, spoken by OpenAI and by most local servers.

use crate::client::{Failure, StreamDecoder, Wire, temperature_json};
use crate::sse::SseEvent;
use crate::{ChatMessage, ChatRole, ModelConfig, StreamEvent, ToolCall, Turn, TurnRequest, Usage};
use serde_json::Value;

/// `POST {base_url}/chat/completions`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OpenAi;

impl Wire for OpenAi {
    type Decoder = OpenAiStream;

    fn name(&self) -> &'static str {
        "openai"
    }

    fn default_base(&self) -> &'static str {
        "https://api.openai.com/v1"
    }

    fn endpoint(&self, base: &str) -> String {
        format!("{base}/chat/completions")
    }

    fn authorize(&self, rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
        match key {
            Some(key) => rb.bearer_auth(key),
            None => rb,
        }
    }

    fn body(&self, cfg: &ModelConfig, req: &TurnRequest) -> serde_json::Result<Vec<u8>> {
        body_bytes(cfg, req)
    }

    fn parse(&self, v: &Value) -> Result<Turn, Failure> {
        parse_response(v)
    }
}

/// The request body. Its prompt is a stable prefix for the server's prompt cache: the tools
/// and the system prompt come first and nothing in the body changes from one turn to the next
/// but the messages added at the end (the team's context trimming rewrites older ones rarely,
/// in large steps); with `cfg.cache` it names the agent's `prompt_cache_key`.
pub(crate) fn build_body(cfg: &ModelConfig, req: &TurnRequest) -> serde_json::Result<Value> {
    let mut body = Body::new(cfg, &req.tools);
    body.messages = req.messages.iter().map(Msg).collect();
    serde_json::to_value(body)
}

/// [`build_body`] as the bytes sent, written straight from the request: no JSON tree is built
/// (each turn's body holds the whole conversation and every tool's schema, and copying them
/// into a tree first took most of the encoding's time). The keys come in the order a tree's
/// sorted map writes them, so the bytes are what [`build_body`] serializes to.
///
/// The tools go last (their key sorts last), each schema as the text written once per process
/// ([`crate::ToolSpec::parameters_json`]): they are most of a short conversation's bytes.
pub(crate) fn body_bytes(cfg: &ModelConfig, req: &TurnRequest) -> serde_json::Result<Vec<u8>> {
    let mut body = Body::new(cfg, &[]);
    body.messages = req.messages.iter().map(Msg).collect();
    let (schemas, mut out) = req.body_room();
    serde_json::to_writer(&mut out, &body)?;
    if req.tools.is_empty() {
        return Ok(out);
    }
    // The object's closing brace gives way to the tools, then closes it.
    out.pop();
    out.extend_from_slice(b",\"tools\":[");
    for (i, (t, schema)) in req.tools.iter().zip(&schemas).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"function\":{\"description\":");
        serde_json::to_writer(&mut out, &t.description)?;
        out.extend_from_slice(b",\"name\":");
        serde_json::to_writer(&mut out, &t.name)?;
        out.extend_from_slice(b",\"parameters\":");
        out.extend_from_slice(schema.as_bytes());
        out.extend_from_slice(b"},\"type\":\"function\"}");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// The body's fields, borrowed from the request, in sorted order.
#[derive(serde::Serialize)]
struct Body<'a> {
    max_tokens: u32,
    messages: Vec<Msg<'a>>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Func<'a>>,
}

impl<'a> Body<'a> {
    /// The body of `messages` and `tools` (the tools' schemas as trees).
    fn new(cfg: &'a ModelConfig, tools: &'a [crate::ToolSpec]) -> Self {
        Body {
            max_tokens: cfg.max_tokens,
            messages: Vec::new(),
            model: &cfg.model,
            prompt_cache_key: cfg.cache_key.as_deref().filter(|_| cfg.cache),
            stream: cfg.stream,
            // Without it a streamed answer carries no token counts (the final chunk has them).
            stream_options: cfg.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            temperature: cfg.temperature.map(temperature_json),
            tools: tools.iter().map(Func::Tool).collect(),
        }
    }
}

#[derive(serde::Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One message as the API takes it.
struct Msg<'a>(&'a ChatMessage);

impl serde::Serialize for Msg<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        match m.role {
            ChatRole::System | ChatRole::User => {
                map.serialize_entry("content", &m.content)?;
                let role = if matches!(m.role, ChatRole::System) {
                    "system"
                } else {
                    "user"
                };
                map.serialize_entry("role", role)?;
            }
            ChatRole::Assistant => {
                // A turn that only called tools has no text; the API wants `null` there.
                let content =
                    (!m.content.is_empty() || m.tool_calls.is_empty()).then_some(&m.content);
                map.serialize_entry("content", &content)?;
                map.serialize_entry("role", "assistant")?;
                if !m.tool_calls.is_empty() {
                    let calls: Vec<Func<'_>> = m.tool_calls.iter().map(Func::Call).collect();
                    map.serialize_entry("tool_calls", &calls)?;
                }
            }
            ChatRole::Tool => {
                map.serialize_entry("content", &m.content)?;
                map.serialize_entry("role", "tool")?;
                map.serialize_entry(
                    "tool_call_id",
                    m.tool_call_id.as_deref().unwrap_or_default(),
                )?;
            }
        }
        map.end()
    }
}

/// A `{"function": {...}, ...}` object: a tool offered, or a call the model made.
enum Func<'a> {
    Tool(&'a crate::ToolSpec),
    Call(&'a ToolCall),
}

impl serde::Serialize for Func<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// The inner `function` object's fields, sorted.
        struct Inner<'a>(&'a Func<'a>);
        impl serde::Serialize for Inner<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(3))?;
                match self.0 {
                    Func::Tool(t) => {
                        map.serialize_entry("description", &t.description)?;
                        map.serialize_entry("name", &t.name)?;
                        map.serialize_entry("parameters", &t.parameters)?;
                    }
                    Func::Call(c) => {
                        map.serialize_entry("arguments", &c.arguments)?;
                        map.serialize_entry("name", &c.name)?;
                    }
                }
                map.end()
            }
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("function", &Inner(self))?;
        if let Func::Call(c) = self {
            map.serialize_entry("id", &c.id)?;
        }
        map.serialize_entry("type", "function")?;
        map.end()
    }
}

/// Reads a whole answer.
pub(crate) fn parse_response(v: &Value) -> Result<Turn, Failure> {
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        return Err(Failure::Protocol(format!(
            "the answer is an error: {}",
            error_text(e)
        )));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| Failure::Protocol(format!("the answer has no `choices`: {}", short(v))))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let text = content_text(message.get("content"));
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, c) in calls.iter().enumerate() {
            let function = c.get("function").unwrap_or(&Value::Null);
            tool_calls.push(ToolCall {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| fallback_id(i), str::to_string),
                name: function
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: arguments_text(function.get("arguments")),
            });
        }
    }
    Ok(Turn {
        text,
        tool_calls,
        stop_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        usage: v.get("usage").and_then(parse_usage),
    })
}

/// `content` as text: a string, or the text parts of an array of parts; `null` is empty.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .concat(),
        _ => String::new(),
    }
}

/// Arguments as the model wrote them: normally a string; a server that sends an object gets it
/// serialized back to text.
fn arguments_text(args: Option<&Value>) -> String {
    match args {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// An id for a tool call the server sent without one, so the result can still answer it.
fn fallback_id(index: usize) -> String {
    format!("call_{index}")
}

/// `usage.prompt_tokens` / `completion_tokens` and `prompt_tokens_details.cached_tokens`, when
/// present (`prompt_tokens` already counts the cached ones).
fn parse_usage(u: &Value) -> Option<Usage> {
    let input = u.get("prompt_tokens").and_then(Value::as_u64);
    let output = u.get("completion_tokens").and_then(Value::as_u64);
    if input.is_none() && output.is_none() {
        return None;
    }
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Usage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
        cached_tokens: cached,
        cache_write_tokens: 0,
    })
}

/// An error object's message, or the object itself.
fn error_text(e: &Value) -> String {
    e.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| e.as_str().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
}

/// A JSON value cut short for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

/// One tool call being assembled from fragments.
#[derive(Debug, Default)]
struct PartialCall {
    /// The fragment index the server gave it.
    index: u64,
    /// Its id.
    id: String,
    /// The tool's name.
    name: String,
    /// The arguments so far.
    arguments: String,
    /// Whether [`StreamEvent::ToolCallStart`] was sent for it.
    announced: bool,
}

/// Accumulates `chat.completion.chunk` events.
#[derive(Debug, Default)]
pub(crate) struct OpenAiStream {
    /// The text so far.
    text: String,
    /// The tool calls so far, in the order they began.
    calls: Vec<PartialCall>,
    /// The finish reason, once sent.
    finish: Option<String>,
    /// Token counts, if a chunk carried them.
    usage: Option<Usage>,
}

impl StreamDecoder for OpenAiStream {
    fn on_event(
        &mut self,
        ev: &SseEvent,
        emit: &mut dyn FnMut(StreamEvent),
    ) -> Result<bool, Failure> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Failure::Protocol(format!("a streamed chunk is not JSON ({e}): {data}"))
        })?;
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            return Err(Failure::Protocol(format!(
                "the stream reported an error: {}",
                error_text(e)
            )));
        }
        if let Some(u) = v.get("usage").and_then(parse_usage) {
            self.usage = Some(u);
        }
        let Some(choice) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            // The usage-only chunk some servers send last has no choices.
            return Ok(false);
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text.push_str(text);
            emit(StreamEvent::Text(text.to_string()));
        }
        if let Some(fragments) = delta.get("tool_calls").and_then(Value::as_array) {
            for f in fragments {
                self.tool_fragment(f, emit);
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(reason.to_string());
        }
        Ok(false)
    }

    fn finish(self, complete: bool) -> Result<Turn, Failure> {
        // Servers that close without `[DONE]` after a finish reason still gave a whole answer.
        if !complete && self.finish.is_none() {
            return Err(Failure::Connect(
                "the stream ended before the answer was complete".into(),
            ));
        }
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| ToolCall {
                id: if c.id.is_empty() {
                    fallback_id(i)
                } else {
                    c.id
                },
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        Ok(Turn {
            text: self.text,
            tool_calls,
            stop_reason: self.finish.unwrap_or_default(),
            usage: self.usage,
        })
    }
}

impl OpenAiStream {
    /// Folds one `delta.tool_calls[]` fragment into its call.
    fn tool_fragment(&mut self, f: &Value, emit: &mut dyn FnMut(StreamEvent)) {
        let id = f
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let slot = match f.get("index").and_then(Value::as_u64) {
            Some(index) => self.calls.iter().position(|c| c.index == index),
            // Without an index, a fragment with a new id begins a call; others continue the last.
            None => match id {
                Some(id) if !self.calls.iter().any(|c| c.id == id) => None,
                Some(id) => self.calls.iter().position(|c| c.id == id),
                None => self.calls.len().checked_sub(1),
            },
        };
        let slot = match slot {
            Some(slot) => slot,
            None => {
                let index = f
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.calls.len() as u64);
                self.calls.push(PartialCall {
                    index,
                    ..PartialCall::default()
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[slot];
        if let Some(id) = id
            && call.id.is_empty()
        {
            call.id = id.to_string();
        }
        let function = f.get("function").unwrap_or(&Value::Null);
        if let Some(name) = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            && call.name.is_empty()
        {
            call.name = name.to_string();
        }
        match function.get("arguments") {
            Some(Value::String(s)) => call.arguments.push_str(s),
            None | Some(Value::Null) => {}
            Some(other) => call.arguments.push_str(&other.to_string()),
        }
        if !call.announced && !call.name.is_empty() {
            if call.id.is_empty() {
                call.id = fallback_id(slot);
            }
            call.announced = true;
            emit(StreamEvent::ToolCallStart {
                id: call.id.clone(),
                name: call.name.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKind, ToolSpec};
    use serde_json::json;
    use std::time::Duration;

    fn cfg(stream: bool) -> ModelConfig {
        ModelConfig {
            api: ApiKind::OpenAi,
            model: "gpt-test".into(),
            base_url: None,
            api_key: Some("k".into()),
            stream,
            timeout: Duration::from_secs(5),
            max_retries: 0,
            max_tokens: 100,
            temperature: Some(0.2),
            cache: true,
            cache_key: None,
        }
    }

    /// With caching the body names the agent's `prompt_cache_key`; from one turn to the next
    /// only messages are added at the end, so the prompt's prefix (the tools, then the messages
    /// so far) is byte-identical.
    #[test]
    fn prefix_is_byte_identical_from_turn_to_turn_and_names_the_cache_key() {
        let cfg = ModelConfig {
            cache_key: Some("agent-team/t/alice".into()),
            ..cfg(false)
        };
        let tools = vec![ToolSpec {
            name: "read".into(),
            description: "reads".into(),
            parameters: json!({"type": "object"}).into(),
        }];
        let mut req = TurnRequest {
            messages: vec![
                ChatMessage::system("You are a tester. Your name is alice."),
                ChatMessage::user("go"),
            ],
            tools,
        };
        let first = build_body(&cfg, &req).unwrap();
        assert_eq!(first["prompt_cache_key"], "agent-team/t/alice");
        req.messages.push(ChatMessage::assistant(
            "",
            vec![ToolCall {
                id: "c1".into(),
                name: "read".into(),
                arguments: "{\"path\":\"a\"}".into(),
            }],
        ));
        req.messages
            .push(ChatMessage::tool("c1", "text of a", false));
        req.messages
            .push(ChatMessage::user("[message from bob] hi"));
        let second = build_body(&cfg, &req).unwrap();
        assert_eq!(second["tools"].to_string(), first["tools"].to_string());
        assert_eq!(second["prompt_cache_key"], first["prompt_cache_key"]);
        let before = first["messages"].to_string();
        let after = second["messages"].to_string();
        let open = before.trim_end_matches(']');
        assert!(after.starts_with(open), "{before}\n{after}");
        // Everything but the messages is the same bytes.
        let rest = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().map(|o| o.remove("messages"));
            v.to_string()
        };
        assert_eq!(rest(&first), rest(&second));
        // Caching off: no key.
        let off = ModelConfig {
            cache: false,
            ..cfg.clone()
        };
        assert!(
            build_body(&off, &req)
                .unwrap()
                .get("prompt_cache_key")
                .is_none()
        );
    }

    /// A conversation with every kind of message and a tool.
    fn every_role() -> TurnRequest {
        TurnRequest {
            messages: vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("hi"),
                ChatMessage::assistant(
                    "",
                    vec![ToolCall {
                        id: "call_1".into(),
                        name: "read".into(),
                        arguments: "{\"path\":\"a\"}".into(),
                    }],
                ),
                ChatMessage::tool("call_1", "contents", false),
                ChatMessage::assistant("done", vec![]),
            ],
            tools: vec![ToolSpec {
                name: "read".into(),
                description: "reads a file".into(),
                parameters: json!({"type": "object"}).into(),
            }],
        }
    }

    #[test]
    fn body_has_every_role() {
        let req = every_role();
        let body = build_body(&cfg(true), &req).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-test",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "contents"},
                    {"role": "assistant", "content": "done"},
                ],
                "tools": [{"type": "function", "function": {"name": "read", "description": "reads a file", "parameters": {"type": "object"}}}],
                "max_tokens": 100,
                "temperature": 0.2,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn the_bytes_sent_are_the_bodys_json_with_its_keys_sorted() {
        // What was sent before the body was written straight from the request: its tree
        // (sorted keys at every level) serialized. The same bytes keep a cached prefix valid
        // across an upgrade, and show every message kind's keys in the order a tree has them.
        let keyed = ModelConfig {
            cache_key: Some("team/leader".into()),
            ..cfg(true)
        };
        for c in [keyed, cfg(false)] {
            let req = every_role();
            let sent = body_bytes(&c, &req).unwrap();
            let tree: Value = serde_json::from_slice(&sent).unwrap();
            assert_eq!(
                String::from_utf8(sent).unwrap(),
                serde_json::to_string(&tree).unwrap()
            );
            assert_eq!(tree, build_body(&c, &req).unwrap());
        }
    }

    #[test]
    fn a_body_is_written_into_the_room_made_for_it_without_growing() {
        // A team of a thousand writes a thousand bodies at once: each grown from 128 bytes was
        // copied about seven times (issue 67). Text with quotes and new lines escapes longer.
        let mut req = every_role();
        req.messages[0].content = "a line of the \"prompt\", with a few words\n".repeat(300);
        req.tools[0].description = "reads a file:\tits \"path\" given\n".repeat(20);
        let hint = req.body_room().1.capacity();
        let sent = body_bytes(&cfg(true), &req).unwrap();
        assert!(
            sent.len() <= hint,
            "{} bytes sent, {hint} made room for",
            sent.len()
        );
        assert_eq!(
            sent.capacity(),
            hint,
            "the body grew past the room made for it"
        );
    }

    #[test]
    fn body_omits_empty_tools_and_unset_temperature() {
        let mut c = cfg(false);
        c.temperature = None;
        let body = build_body(
            &c,
            &TurnRequest {
                messages: vec![ChatMessage::user("x")],
                tools: vec![],
            },
        )
        .unwrap();
        assert!(body.get("tools").is_none());
        assert!(body.get("temperature").is_none());
        assert_eq!(body["stream"], json!(false));
        assert!(
            body.get("stream_options").is_none(),
            "only a stream asks for usage"
        );
    }

    #[test]
    fn parses_whole_answer() {
        let v = json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{\"a\":"}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}
        });
        let t = parse_response(&v).unwrap();
        assert_eq!(t.text, "");
        assert_eq!(
            t.tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "ls".into(),
                arguments: "{\"a\":".into()
            }]
        );
        assert_eq!(t.stop_reason, "tool_calls");
        assert_eq!(
            t.usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 3,
                cached_tokens: 0,
                cache_write_tokens: 0,
            })
        );
    }

    #[test]
    fn parses_answer_without_usage() {
        let v = json!({"choices": [{"message": {"content": "hi"}}]});
        let t = parse_response(&v).unwrap();
        assert_eq!(t.text, "hi");
        assert_eq!(t.usage, None);
        assert!(matches!(
            parse_response(&json!({"choices": []})),
            Err(Failure::Protocol(_))
        ));
    }

    fn data(v: Value) -> SseEvent {
        SseEvent {
            event: None,
            data: v.to_string(),
        }
    }

    #[test]
    fn stream_accumulates_text_and_tool_fragments() {
        let mut d = OpenAiStream::default();
        let mut events = Vec::new();
        let mut emit = |e: StreamEvent| events.push(e);
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{\"y\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": ":2}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}),
        ];
        for c in chunks {
            assert!(!d.on_event(&data(c), &mut emit).unwrap());
        }
        assert!(
            d.on_event(
                &SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
                &mut emit
            )
            .unwrap()
        );
        let t = d.finish(true).unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Text("Hel".into()),
                StreamEvent::Text("lo".into()),
                StreamEvent::ToolCallStart {
                    id: "a".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallStart {
                    id: "b".into(),
                    name: "g".into()
                },
            ]
        );
        assert_eq!(t.text, "Hello");
        assert_eq!(
            t.tool_calls,
            vec![
                ToolCall {
                    id: "a".into(),
                    name: "f".into(),
                    arguments: "{\"x\":1}".into()
                },
                ToolCall {
                    id: "b".into(),
                    name: "g".into(),
                    arguments: "{\"y\":2}".into()
                },
            ]
        );
        assert_eq!(t.stop_reason, "tool_calls");
        assert_eq!(
            t.usage,
            Some(Usage {
                input_tokens: 5,
                output_tokens: 7,
                cached_tokens: 0,
                cache_write_tokens: 0,
            })
        );
    }

    /// A real chat.completion with a prompt-cache hit: `prompt_tokens` counts the cached
    /// tokens, which come in `prompt_tokens_details`.
    #[test]
    fn whole_answer_usage_has_cached_tokens() {
        let v = json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi.",
                "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035"
        });
        assert_eq!(
            parse_response(&v).unwrap().usage,
            Some(Usage {
                input_tokens: 1117,
                output_tokens: 46,
                cached_tokens: 1024,
                cache_write_tokens: 0,
            })
        );
    }

    /// With `stream_options.include_usage`, the last chunk before `[DONE]` has no choices and
    /// the whole answer's usage; the chunks before it carry `"usage": null`.
    #[test]
    fn stream_usage_comes_in_the_last_chunk() {
        let mut d = OpenAiStream::default();
        let mut emit = |_e: StreamEvent| {};
        let chunks = [
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}], "usage": null}),
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": null, "finish_reason": null}], "usage": null}),
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}], "usage": null}),
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306, "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}}),
        ];
        for c in chunks {
            d.on_event(&data(c), &mut emit).unwrap();
        }
        let t = d.finish(true).unwrap();
        assert_eq!(t.text, "Hi");
        assert_eq!(
            t.usage,
            Some(Usage {
                input_tokens: 2006,
                output_tokens: 300,
                cached_tokens: 1920,
                cache_write_tokens: 0,
            })
        );
    }

    #[test]
    fn stream_cut_short_is_a_connection_failure() {
        let mut d = OpenAiStream::default();
        let mut emit = |_e: StreamEvent| {};
        d.on_event(
            &data(json!({"choices": [{"delta": {"content": "x"}}]})),
            &mut emit,
        )
        .unwrap();
        assert!(matches!(d.finish(false), Err(Failure::Connect(_))));
    }

    #[test]
    fn stream_error_chunk_fails() {
        let mut d = OpenAiStream::default();
        let mut emit = |_e: StreamEvent| {};
        let r = d.on_event(&data(json!({"error": {"message": "boom"}})), &mut emit);
        assert_eq!(
            r,
            Err(Failure::Protocol(
                "the stream reported an error: boom".into()
            ))
        );
    }
}
