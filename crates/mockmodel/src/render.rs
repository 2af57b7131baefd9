//! Answers in each API's exact shape, whole or as server-sent events.

use axum::body::Bytes;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// One answer, independent of the API.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// A number for the response id.
    pub id: u64,
    /// The model the request named.
    pub model: String,
    /// The text (may be empty).
    pub text: String,
    /// The tool calls: (id, name, raw arguments).
    pub calls: Vec<(String, String, String)>,
    /// A plausible prompt-token count.
    pub input_tokens: u64,
    /// The exact counts a script gave, over the plausible ones.
    pub usage: Option<crate::MockUsage>,
    /// Chat completions leave `usage` out (a server that never reports it).
    pub omit_usage: bool,
}

impl Answer {
    /// The counts to report: the script's, or plausible ones from the sizes.
    pub(crate) fn counts(&self) -> crate::MockUsage {
        self.usage.unwrap_or(crate::MockUsage {
            input: self.input_tokens,
            output: self.output_tokens(),
            cached: 0,
            cache_write: 0,
        })
    }

    /// The chat-completions `usage` object.
    fn openai_usage(&self) -> Value {
        let u = self.counts();
        json!({
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
    }

    /// The messages API's `usage` object with `output_tokens` as given (the stream's
    /// `message_start` says 1).
    fn anthropic_usage(&self, output: u64) -> Value {
        let u = self.counts();
        json!({
            "input_tokens": u.input.saturating_sub(u.cached + u.cache_write),
            "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cached,
            "output_tokens": output,
        })
    }

    /// A plausible completion-token count: about four characters a token.
    pub(crate) fn output_tokens(&self) -> u64 {
        let chars = self.text.len()
            + self
                .calls
                .iter()
                .map(|(_, n, a)| n.len() + a.len())
                .sum::<usize>();
        chars as u64 / 4 + 1
    }
}

/// Seconds since the epoch, for OpenAI's `created`.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Splits text into `n` pieces of about equal length at character boundaries; pieces may be
/// empty when the text is shorter than `n`.
pub(crate) fn pieces(text: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let chars = bounds.len() - 1;
    (0..n)
        .map(|k| &text[bounds[chars * k / n]..bounds[chars * (k + 1) / n]])
        .collect()
}

/// How many pieces text is streamed in: a few, but not more than it has characters.
fn text_pieces(text: &str) -> Vec<&str> {
    pieces(text, text.chars().count().clamp(1, 3))
}

/// How many pieces tool arguments are streamed in: always at least two.
fn arg_pieces(args: &str) -> Vec<&str> {
    pieces(args, if args.chars().count() >= 3 { 3 } else { 2 })
}

/// A tool input for the messages API: the arguments parsed. Raw text that is not JSON cannot be
/// an input object, so it is sent as a JSON string, which the client takes as the text itself.
fn anthropic_input(args: &str) -> Value {
    serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
}

/// The whole chat-completions answer.
pub(crate) fn openai_whole(a: &Answer) -> Value {
    let mut message = json!({"role": "assistant", "content": a.text});
    if !a.calls.is_empty() {
        if a.text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = a
            .calls
            .iter()
            .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
    }
    let finish = if a.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let mut whole = json!({
        "id": format!("chatcmpl-mock{}", a.id),
        "object": "chat.completion",
        "created": now(),
        "model": a.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
    });
    if !a.omit_usage
        && let Some(o) = whole.as_object_mut()
    {
        o.insert("usage".into(), a.openai_usage());
    }
    whole
}

/// The whole messages answer.
pub(crate) fn anthropic_whole(a: &Answer) -> Value {
    let mut content = Vec::new();
    if !a.text.is_empty() {
        content.push(json!({"type": "text", "text": a.text}));
    }
    for (id, name, args) in &a.calls {
        content.push(
            json!({"type": "tool_use", "id": id, "name": name, "input": anthropic_input(args)}),
        );
    }
    let stop = if a.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    json!({
        "id": format!("msg_mock{}", a.id),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": a.anthropic_usage(a.counts().output),
    })
}

/// One event's text split in two body chunks, so the client must join lines across chunks.
fn split_event(event: String, out: &mut Vec<Bytes>) {
    let parts = pieces(&event, 2);
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        out.push(Bytes::from(p.to_string()));
    }
}

/// The chat-completions answer as `chat.completion.chunk` events ending with `[DONE]`; the
/// usage chunk only when the request asked for it (`include_usage`).
pub(crate) fn openai_stream(a: &Answer, include_usage: bool) -> Vec<Bytes> {
    let id = format!("chatcmpl-mock{}", a.id);
    let created = now();
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": a.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if !a.text.is_empty() {
        for piece in text_pieces(&a.text) {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
    }
    for (index, (call_id, name, args)) in a.calls.iter().enumerate() {
        events.push(chunk(
            json!({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in arg_pieces(args) {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    let finish = if a.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(chunk(json!({}), json!(finish)));
    // The usage chunk OpenAI sends with `stream_options.include_usage`: no choices.
    if include_usage && !a.omit_usage {
        events.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": a.model,
            "choices": [],
            "usage": a.openai_usage(),
        }));
    }
    let mut out = Vec::new();
    for e in events {
        split_event(format!("data: {e}\n\n"), &mut out);
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// The messages answer as named events from `message_start` to `message_stop`.
pub(crate) fn anthropic_stream(a: &Answer) -> Vec<Bytes> {
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_mock{}", a.id),
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": a.anthropic_usage(1),
        }}),
    )];
    events.push(("ping", json!({"type": "ping"})));
    let mut index = 0;
    if !a.text.is_empty() {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in text_pieces(&a.text) {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (call_id, name, args) in &a.calls {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}}),
        ));
        for piece in arg_pieces(args) {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let stop = if a.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": a.counts().output}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let mut out = Vec::new();
    for (name, data) in events {
        split_event(format!("event: {name}\ndata: {data}\n\n"), &mut out);
    }
    out
}

/// A Responses API tool name: an MCP tool named `mcp__SERVER__TOOL` in a script is the function
/// `TOOL` in the namespace `mcp__SERVER` (as Codex lists and calls it); others have none.
fn namespaced(name: &str) -> (Option<&str>, &str) {
    if let Some(rest) = name.strip_prefix("mcp__")
        && let Some(at) = rest.find("__")
    {
        return (Some(&name[..5 + at]), &rest[at + 2..]);
    }
    (None, name)
}

/// The Responses API's output items of an answer: a message with the text, then one
/// `function_call` per call.
fn responses_items(a: &Answer) -> Vec<Value> {
    let mut items = Vec::new();
    if !a.text.is_empty() {
        items.push(json!({
            "type": "message",
            "id": format!("msg_mock{}", a.id),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": a.text, "annotations": []}],
        }));
    }
    for (call_id, name, args) in &a.calls {
        let (namespace, name) = namespaced(name);
        let mut item = json!({
            "type": "function_call",
            "id": format!("fc_{call_id}"),
            "call_id": call_id,
            "name": name,
            "arguments": args,
            "status": "completed",
        });
        if let Some(ns) = namespace {
            item["namespace"] = json!(ns);
        }
        items.push(item);
    }
    items
}

/// The Responses API's `usage` object.
fn responses_usage(a: &Answer) -> Value {
    let u = a.counts();
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input + u.output,
    })
}

/// A whole Responses API answer.
pub(crate) fn responses_whole(a: &Answer) -> Value {
    json!({
        "id": format!("resp_mock{}", a.id),
        "object": "response",
        "created_at": now(),
        "status": "completed",
        "model": a.model,
        "output": responses_items(a),
        "usage": responses_usage(a),
    })
}

/// A streamed Responses API answer: `response.created`, each item added, its text in deltas,
/// done, then `response.completed` with the usage.
pub(crate) fn responses_stream(a: &Answer) -> Vec<Bytes> {
    let id = format!("resp_mock{}", a.id);
    let mut events: Vec<Value> = vec![json!({
        "type": "response.created",
        "response": {"id": id, "object": "response", "status": "in_progress", "model": a.model},
    })];
    for (index, item) in responses_items(a).into_iter().enumerate() {
        let mut added = item.clone();
        if item["type"] == "message" {
            added["content"] = json!([]);
        }
        events.push(
            json!({"type": "response.output_item.added", "output_index": index, "item": added}),
        );
        if item["type"] == "message" {
            for piece in text_pieces(&a.text) {
                events.push(json!({
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": piece,
                }));
            }
        }
        events.push(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }
    events.push(json!({
        "type": "response.completed",
        "response": {
            "id": id,
            "object": "response",
            "status": "completed",
            "model": a.model,
            "usage": responses_usage(a),
        },
    }));
    let mut out = Vec::new();
    for data in events {
        let name = data["type"].as_str().unwrap_or("message").to_string();
        split_event(format!("event: {name}\ndata: {data}\n\n"), &mut out);
    }
    out
}

/// Gemini's `usageMetadata` object: `cachedContentTokenCount` only when something was read
/// from the cache, as the API leaves it out otherwise.
fn gemini_usage(a: &Answer) -> Value {
    let u = a.counts();
    let mut usage = json!({
        "promptTokenCount": u.input,
        "candidatesTokenCount": u.output,
        "totalTokenCount": u.input + u.output,
    });
    if u.cached > 0 {
        usage["cachedContentTokenCount"] = json!(u.cached);
    }
    usage
}

/// A Gemini `functionCall` part: `args` is the arguments parsed (an object), with the call's
/// id, which a client echoes in its `functionResponse`. Raw text that is not JSON goes as a
/// JSON string, as for the messages API.
fn gemini_call(id: &str, name: &str, args: &str) -> Value {
    json!({"functionCall": {"id": id, "name": name, "args": anthropic_input(args)}})
}

/// One `GenerateContentResponse` with these parts; the last one of an answer also carries
/// `finishReason` (`STOP`, for tool calls too, as Gemini says) and the usage.
fn gemini_response(a: &Answer, parts: Vec<Value>, last: bool) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    let mut response = json!({
        "candidates": [],
        "modelVersion": a.model,
        "responseId": format!("mock-{}", a.id),
    });
    if last {
        candidate["finishReason"] = json!("STOP");
        response["usageMetadata"] = gemini_usage(a);
    }
    response["candidates"] = json!([candidate]);
    response
}

/// The whole Gemini answer (`generateContent`): a `text` part if there is text, then one
/// `functionCall` part per call.
pub(crate) fn gemini_whole(a: &Answer) -> Value {
    let mut parts = Vec::new();
    if !a.text.is_empty() || a.calls.is_empty() {
        parts.push(json!({"text": a.text}));
    }
    for (id, name, args) in &a.calls {
        parts.push(gemini_call(id, name, args));
    }
    gemini_response(a, parts, true)
}

/// The Gemini answer as the chunks `streamGenerateContent` sends: the text in a few `text`
/// parts, one chunk each, then the calls together in one chunk (Gemini never splits a call's
/// arguments); the last chunk carries `finishReason` and `usageMetadata`, so no chunk has
/// empty parts.
pub(crate) fn gemini_chunks(a: &Answer) -> Vec<Value> {
    let mut parts: Vec<Vec<Value>> = Vec::new();
    if !a.text.is_empty() || a.calls.is_empty() {
        for piece in text_pieces(&a.text) {
            parts.push(vec![json!({"text": piece})]);
        }
    }
    if !a.calls.is_empty() {
        parts.push(
            a.calls
                .iter()
                .map(|(id, name, args)| gemini_call(id, name, args))
                .collect(),
        );
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| gemini_response(a, p, i + 1 == n))
        .collect()
}

/// The streamed Gemini answer (`alt=sse`): one `data:` event per chunk, no `[DONE]`.
pub(crate) fn gemini_stream(a: &Answer) -> Vec<Bytes> {
    let mut out = Vec::new();
    for chunk in gemini_chunks(a) {
        split_event(format!("data: {chunk}\r\n\r\n"), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_tools_are_namespaced_for_the_responses_api() {
        assert_eq!(
            namespaced("mcp__team__claim_task"),
            (Some("mcp__team"), "claim_task")
        );
        assert_eq!(namespaced("exec_command"), (None, "exec_command"));
        let a = Answer {
            id: 1,
            model: "m".into(),
            text: "hi".into(),
            calls: vec![("call_1".into(), "mcp__team__claim_task".into(), "{}".into())],
            input_tokens: 3,
            usage: None,
            omit_usage: false,
        };
        let items = responses_items(&a);
        assert_eq!(items[0]["type"], "message");
        assert_eq!(items[1]["namespace"], "mcp__team");
        assert_eq!(items[1]["name"], "claim_task");
        let stream: Vec<u8> = responses_stream(&a).concat();
        let text = String::from_utf8(stream).unwrap();
        assert!(text.starts_with("event: response.created\n"));
        assert!(text.contains("event: response.completed\n"));
    }

    /// An answer with text and a call, reporting 5 of its 40 prompt tokens cached.
    fn gemini_answer() -> Answer {
        Answer {
            id: 7,
            model: "mock-model".into(),
            text: "Writing it.".into(),
            calls: vec![(
                "call_1".into(),
                "write_file".into(),
                r#"{"file_path":"a.txt","content":"hi"}"#.into(),
            )],
            input_tokens: 40,
            usage: Some(crate::MockUsage {
                input: 40,
                output: 9,
                cached: 5,
                cache_write: 0,
            }),
            omit_usage: false,
        }
    }

    #[test]
    fn gemini_whole_answer_has_text_a_function_call_and_usage() {
        let v = gemini_whole(&gemini_answer());
        let c = &v["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        assert_eq!(c["finishReason"], "STOP");
        assert_eq!(c["index"], 0);
        assert_eq!(
            c["content"]["parts"],
            json!([
                {"text": "Writing it."},
                {"functionCall": {"id": "call_1", "name": "write_file",
                    "args": {"file_path": "a.txt", "content": "hi"}}},
            ])
        );
        assert_eq!(
            v["usageMetadata"],
            json!({"promptTokenCount": 40, "candidatesTokenCount": 9, "totalTokenCount": 49,
                "cachedContentTokenCount": 5})
        );
        assert_eq!(v["modelVersion"], "mock-model");
        // Nothing cached: the count is left out. No text and no call: one empty text part.
        let mut empty = gemini_answer();
        empty.text.clear();
        empty.calls.clear();
        empty.usage = None;
        let v = gemini_whole(&empty);
        assert_eq!(
            v["candidates"][0]["content"]["parts"],
            json!([{"text": ""}])
        );
        assert!(v["usageMetadata"].get("cachedContentTokenCount").is_none());
    }

    #[test]
    fn gemini_stream_is_sse_data_events_the_last_with_finish_and_usage() {
        let a = gemini_answer();
        let body = String::from_utf8(gemini_stream(&a).concat()).unwrap();
        assert!(body.starts_with("data: {"));
        assert!(body.ends_with("}\r\n\r\n"), "{body}");
        let events: Vec<Value> = body
            .split("\r\n\r\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert!(
            events.len() > 2,
            "text in pieces, then the call: {events:?}"
        );
        let (last, rest) = events.split_last().unwrap();
        for e in rest {
            assert!(e["candidates"][0].get("finishReason").is_none(), "{e}");
            assert!(e.get("usageMetadata").is_none(), "{e}");
        }
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(last["usageMetadata"]["promptTokenCount"], 40);
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 9);
        let parts: Vec<&Value> = events
            .iter()
            .flat_map(|e| e["candidates"][0]["content"]["parts"].as_array().unwrap())
            .collect();
        let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        assert_eq!(text, "Writing it.");
        let calls: Vec<&&Value> = parts
            .iter()
            .filter(|p| p.get("functionCall").is_some())
            .collect();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["functionCall"]["args"]["file_path"], "a.txt");
        // Every event is a whole response the client can parse on its own.
        assert!(
            events
                .iter()
                .all(|e| e["candidates"][0]["content"]["role"] == "model")
        );
    }

    #[test]
    fn pieces_cover_the_text() {
        assert_eq!(pieces("abcdef", 3), vec!["ab", "cd", "ef"]);
        assert_eq!(pieces("ab", 2), vec!["a", "b"]);
        assert_eq!(pieces("", 2), vec!["", ""]);
        assert_eq!(pieces("héllo", 2).concat(), "héllo");
        assert_eq!(arg_pieces("{}").len(), 2);
        assert_eq!(text_pieces("x"), vec!["x"]);
    }

    #[test]
    fn streams_end_properly() {
        let a = Answer {
            id: 1,
            model: "m".into(),
            text: "hello".into(),
            calls: vec![],
            input_tokens: 3,
            usage: None,
            omit_usage: false,
        };
        let o: Vec<u8> = openai_stream(&a, true).concat();
        assert!(String::from_utf8(o).unwrap().ends_with("data: [DONE]\n\n"));
        let s: Vec<u8> = anthropic_stream(&a).concat();
        assert!(
            String::from_utf8(s)
                .unwrap()
                .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        );
    }
}
