//! Drives the real model client (`agent_team_model::connect`) against the mock server, for
//! both wire formats, streamed and whole.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_model::{
    ApiKind, ChatMessage, Model, ModelConfig, ModelError, StreamEvent, ToolSpec, Turn, TurnRequest,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Every combination of wire format and streaming.
const COMBOS: [(Wire, bool); 4] = [
    (Wire::OpenAi, false),
    (Wire::OpenAi, true),
    (Wire::Anthropic, false),
    (Wire::Anthropic, true),
];

fn config(mock: &MockModel, wire: Wire, stream: bool) -> ModelConfig {
    ModelConfig {
        api: match wire {
            Wire::OpenAi => ApiKind::OpenAi,
            Wire::Anthropic => ApiKind::Anthropic,
            Wire::Gemini => panic!("the model client speaks no Gemini"),
        },
        model: "mock-model".into(),
        base_url: Some(mock.base_url()),
        api_key: Some("test-key".into()),
        stream,
        timeout: Duration::from_secs(10),
        max_retries: 2,
        max_tokens: 512,
        temperature: Some(0.2),
        cache: true,
        cache_key: None,
    }
}

fn client(mock: &MockModel, wire: Wire, stream: bool) -> Arc<dyn Model> {
    agent_team_model::connect(config(mock, wire, stream), "$TEST_API_KEY".into()).unwrap()
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "read_file".into(),
        description: "Reads a file.".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}).into(),
    }]
}

fn request(agent: &str, goal: &str) -> TurnRequest {
    TurnRequest {
        messages: vec![
            ChatMessage::system(format!(
                "You are part of a test team.\nYour name is {agent}.\nBe brief."
            )),
            ChatMessage::user(goal),
        ],
        tools: tools(),
    }
}

async fn turn(
    model: &dyn Model,
    req: &TurnRequest,
) -> (Result<Turn, ModelError>, Vec<StreamEvent>) {
    let mut events = Vec::new();
    let mut on_event = |e: StreamEvent| events.push(e);
    let result = model.turn(req, &mut on_event).await;
    (result, events)
}

fn label(wire: Wire, stream: bool) -> String {
    format!("{wire:?} stream={stream}")
}

fn streamed_text(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Text(t) => Some(t.as_str()),
            StreamEvent::ToolCallStart { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn text_turn() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        let text = "Hello there — a reply in a few pieces.";
        mock.script("alice", vec![Step::Text(text.into())]);
        let model = client(&mock, wire, stream);
        let (result, events) = turn(model.as_ref(), &request("alice", "say hello")).await;
        let t = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(t.text, text, "{at}");
        assert!(t.tool_calls.is_empty(), "{at}");
        let expected_stop = if wire == Wire::OpenAi {
            "stop"
        } else {
            "end_turn"
        };
        assert_eq!(t.stop_reason, expected_stop, "{at}");
        let usage = t.usage.unwrap_or_else(|| panic!("{at}: no usage"));
        assert!(usage.input_tokens > 0 && usage.output_tokens > 0, "{at}");
        if stream {
            assert!(
                events.len() > 1,
                "{at}: text should arrive in pieces: {events:?}"
            );
            assert_eq!(streamed_text(&events), text, "{at}");
        } else {
            assert!(events.is_empty(), "{at}");
        }
        let reqs = mock.requests("alice");
        assert_eq!(reqs.len(), 1, "{at}");
        assert_eq!(reqs[0]["stream"], json!(stream), "{at}");
        assert_eq!(reqs[0]["model"], json!("mock-model"), "{at}");
        assert!(mock.unmatched().is_empty(), "{at}");
    }
}

#[tokio::test]
async fn tool_call_turn() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        let a = json!({"path": "src/main.rs", "lines": [1, 20], "note": "ünïcode \"quoted\""});
        let b = json!({});
        mock.script(
            "bob",
            vec![
                Step::TextAndTools(
                    "Let me look.".into(),
                    vec![("read_file".into(), a.clone()), ("list".into(), b.clone())],
                ),
                Step::Tools(vec![("read_file".into(), json!({"path": "b"}))]),
            ],
        );
        let model = client(&mock, wire, stream);
        let req = request("bob", "look around");
        let (result, events) = turn(model.as_ref(), &req).await;
        let t = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(t.text, "Let me look.", "{at}");
        assert_eq!(t.tool_calls.len(), 2, "{at}");
        assert_eq!(t.tool_calls[0].name, "read_file", "{at}");
        assert_eq!(t.tool_calls[0].arguments, a.to_string(), "{at}");
        assert_eq!(
            serde_json::from_str::<Value>(&t.tool_calls[0].arguments).unwrap(),
            a,
            "{at}"
        );
        assert_eq!(t.tool_calls[1].name, "list", "{at}");
        assert_eq!(t.tool_calls[1].arguments, "{}", "{at}");
        assert!(t.tool_calls.iter().all(|c| !c.id.is_empty()), "{at}");
        assert_ne!(t.tool_calls[0].id, t.tool_calls[1].id, "{at}");
        let expected_stop = if wire == Wire::OpenAi {
            "tool_calls"
        } else {
            "tool_use"
        };
        assert_eq!(t.stop_reason, expected_stop, "{at}");
        if stream {
            let starts: Vec<(String, String)> = events
                .iter()
                .filter_map(|e| match e {
                    StreamEvent::ToolCallStart { id, name } => Some((id.clone(), name.clone())),
                    StreamEvent::Text(_) => None,
                })
                .collect();
            let expected: Vec<(String, String)> = t
                .tool_calls
                .iter()
                .map(|c| (c.id.clone(), c.name.clone()))
                .collect();
            assert_eq!(starts, expected, "{at}");
            assert_eq!(streamed_text(&events), "Let me look.", "{at}");
        }

        // A turn of tool calls only has no text.
        let (result, _) = turn(model.as_ref(), &req).await;
        let t = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(t.text, "", "{at}");
        assert_eq!(t.tool_calls.len(), 1, "{at}");
        assert_eq!(t.tool_calls[0].arguments, r#"{"path":"b"}"#, "{at}");
    }
}

#[tokio::test]
async fn server_errors_are_retried() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        mock.script(
            "carol",
            vec![
                Step::Status(500, "try later".into()),
                Step::Text("recovered".into()),
            ],
        );
        let model = client(&mock, wire, stream);
        let (result, events) = turn(model.as_ref(), &request("carol", "go")).await;
        let t = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(t.text, "recovered", "{at}");
        if stream {
            assert_eq!(streamed_text(&events), "recovered", "{at}");
        }
        assert_eq!(mock.requests("carol").len(), 2, "{at}");
        let times = mock.request_times("carol");
        assert!(
            times[1] - times[0] >= Duration::from_millis(150),
            "{at}: no backoff: {:?}",
            times[1] - times[0]
        );
    }
}

#[tokio::test]
async fn retries_run_out() {
    let wire = Wire::Anthropic;
    let mock = MockModel::start(wire).await.unwrap();
    mock.script(
        "dan",
        vec![
            Step::Status(429, "slow down".into()),
            Step::Status(529, "overloaded".into()),
            Step::Status(503, "still down".into()),
            Step::Text("too late".into()),
        ],
    );
    let model = client(&mock, wire, true);
    let (result, _) = turn(model.as_ref(), &request("dan", "go")).await;
    assert_eq!(
        result,
        Err(ModelError::Unavailable {
            status: 503,
            attempts: 3,
            message: "still down".into()
        })
    );
    assert_eq!(mock.requests("dan").len(), 3);
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        mock.script(
            "erin",
            vec![
                Step::Status(401, "invalid x-api-key".into()),
                Step::Text("unused".into()),
            ],
        );
        let model = client(&mock, wire, stream);
        let (result, events) = turn(model.as_ref(), &request("erin", "go")).await;
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{at}: expected an error"));
        assert_eq!(
            err,
            ModelError::Auth {
                status: 401,
                message: "invalid x-api-key".into(),
                key_hint: "$TEST_API_KEY".into()
            },
            "{at}"
        );
        assert!(err.is_config(), "{at}");
        assert!(err.to_string().contains("$TEST_API_KEY"), "{at}");
        assert!(events.is_empty(), "{at}");
        assert_eq!(mock.requests("erin").len(), 1, "{at}");
    }
}

#[tokio::test]
async fn not_found_is_reported() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        mock.script(
            "fay",
            vec![Step::Status(404, "model 'mock-model' not found".into())],
        );
        let model = client(&mock, wire, stream);
        let (result, _) = turn(model.as_ref(), &request("fay", "go")).await;
        match result {
            Err(ModelError::NotFound { url, message }) => {
                assert_eq!(message, "model 'mock-model' not found", "{at}");
                assert!(url.starts_with(&mock.base_url()), "{at}: {url}");
            }
            other => panic!("{at}: expected NotFound, got {other:?}"),
        }
        assert_eq!(mock.requests("fay").len(), 1, "{at}");
    }
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        mock.script("gus", vec![Step::Status(400, "messages: bad".into())]);
        let model = client(&mock, wire, stream);
        let (result, _) = turn(model.as_ref(), &request("gus", "go")).await;
        assert_eq!(
            result,
            Err(ModelError::BadRequest {
                status: 400,
                message: "messages: bad".into()
            }),
            "{at}"
        );
        assert_eq!(mock.requests("gus").len(), 1, "{at}");
    }
}

#[tokio::test]
async fn malformed_tool_arguments_come_back_verbatim() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        let raw = r#"{"path": "a.txt", "content": "unterminated"#;
        mock.script(
            "hal",
            vec![Step::RawToolArgs("write_file".into(), raw.into())],
        );
        let model = client(&mock, wire, stream);
        let (result, _) = turn(model.as_ref(), &request("hal", "write")).await;
        let t = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(t.tool_calls.len(), 1, "{at}");
        assert_eq!(t.tool_calls[0].name, "write_file", "{at}");
        assert_eq!(t.tool_calls[0].arguments, raw, "{at}");
    }
}

#[tokio::test]
async fn multi_turn_conversation_is_serialized() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        mock.script(
            "ivy",
            vec![
                Step::Tools(vec![
                    ("read_file".into(), json!({"path": "a"})),
                    ("read_file".into(), json!({"path": "b"})),
                ]),
                Step::Text("Both files read.".into()),
            ],
        );
        let model = client(&mock, wire, stream);
        let mut req = request("ivy", "read a and b");
        let (result, _) = turn(model.as_ref(), &req).await;
        let first = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(first.tool_calls.len(), 2, "{at}");
        let (id_a, id_b) = (
            first.tool_calls[0].id.clone(),
            first.tool_calls[1].id.clone(),
        );
        req.messages.push(ChatMessage::assistant(
            first.text.clone(),
            first.tool_calls.clone(),
        ));
        req.messages
            .push(ChatMessage::tool(id_a.clone(), "contents of a", false));
        req.messages
            .push(ChatMessage::tool(id_b.clone(), "no such file: b", true));
        let (result, _) = turn(model.as_ref(), &req).await;
        let second = result.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(second.text, "Both files read.", "{at}");

        let bodies = mock.requests("ivy");
        assert_eq!(bodies.len(), 2, "{at}");
        let sent = &bodies[1];
        match wire {
            Wire::OpenAi => {
                let msgs = sent["messages"].as_array().unwrap();
                assert_eq!(msgs.len(), 5, "{at}: {sent}");
                assert_eq!(msgs[0]["role"], "system", "{at}");
                assert_eq!(
                    msgs[1],
                    json!({"role": "user", "content": "read a and b"}),
                    "{at}"
                );
                assert_eq!(msgs[2]["role"], "assistant", "{at}");
                assert_eq!(msgs[2]["content"], Value::Null, "{at}");
                assert_eq!(msgs[2]["tool_calls"][0]["id"], json!(id_a), "{at}");
                assert_eq!(msgs[2]["tool_calls"][0]["type"], "function", "{at}");
                assert_eq!(
                    msgs[2]["tool_calls"][0]["function"]["name"], "read_file",
                    "{at}"
                );
                assert_eq!(
                    msgs[2]["tool_calls"][1]["function"]["arguments"], r#"{"path":"b"}"#,
                    "{at}"
                );
                assert_eq!(
                    msgs[3],
                    json!({"role": "tool", "tool_call_id": id_a, "content": "contents of a"}),
                    "{at}"
                );
                assert_eq!(
                    msgs[4],
                    json!({"role": "tool", "tool_call_id": id_b, "content": "no such file: b"}),
                    "{at}"
                );
                assert_eq!(sent["tools"][0]["type"], "function", "{at}");
                assert_eq!(sent["tools"][0]["function"]["name"], "read_file", "{at}");
                assert_eq!(sent["max_tokens"], 512, "{at}");
                assert_eq!(sent["temperature"], json!(0.2), "{at}");
            }
            Wire::Anthropic => {
                assert_eq!(
                    sent["system"],
                    json!("You are part of a test team.\nYour name is ivy.\nBe brief."),
                    "{at}"
                );
                let msgs = sent["messages"].as_array().unwrap();
                assert_eq!(msgs.len(), 3, "{at}: {sent}");
                assert_eq!(
                    msgs[0],
                    json!({"role": "user", "content": [{"type": "text", "text": "read a and b"}]}),
                    "{at}"
                );
                assert_eq!(
                    msgs[1],
                    json!({"role": "assistant", "content": [
                        {"type": "tool_use", "id": id_a, "name": "read_file", "input": {"path": "a"}},
                        {"type": "tool_use", "id": id_b, "name": "read_file", "input": {"path": "b"}},
                    ]}),
                    "{at}"
                );
                assert_eq!(
                    msgs[2],
                    json!({"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": id_a, "content": "contents of a", "is_error": false},
                        {"type": "tool_result", "tool_use_id": id_b, "content": "no such file: b", "is_error": true},
                    ]}),
                    "{at}"
                );
                assert_eq!(sent["tools"][0]["name"], "read_file", "{at}");
                assert!(sent["tools"][0]["input_schema"].is_object(), "{at}");
                assert_eq!(sent["max_tokens"], 512, "{at}");
            }
            Wire::Gemini => panic!("the model client speaks no Gemini"),
        }
    }
}

#[tokio::test]
async fn slow_answers_time_out_after_retries() {
    for (wire, stream) in [(Wire::OpenAi, true), (Wire::Anthropic, false)] {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        let slow = || Step::Delay(Duration::from_secs(5), Box::new(Step::Text("late".into())));
        mock.script("jan", vec![slow(), slow()]);
        let mut cfg = config(&mock, wire, stream);
        cfg.timeout = Duration::from_millis(300);
        cfg.max_retries = 1;
        let model = agent_team_model::connect(cfg, "$K".into()).unwrap();
        let (result, _) = turn(model.as_ref(), &request("jan", "go")).await;
        assert_eq!(
            result,
            Err(ModelError::Timeout {
                secs: 0,
                attempts: 2
            }),
            "{at}"
        );
        assert_eq!(mock.requests("jan").len(), 2, "{at}");
    }
}

#[tokio::test]
async fn delayed_answers_arrive() {
    let mock = MockModel::start(Wire::OpenAi).await.unwrap();
    mock.script(
        "kim",
        vec![Step::Delay(
            Duration::from_millis(100),
            Box::new(Step::Text("after a pause".into())),
        )],
    );
    let model = client(&mock, Wire::OpenAi, true);
    let started = std::time::Instant::now();
    let (result, _) = turn(model.as_ref(), &request("kim", "go")).await;
    assert_eq!(result.unwrap().text, "after a pause");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn unscripted_requests_are_recorded() {
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        let model = client(&mock, wire, stream);
        let nameless = TurnRequest {
            messages: vec![ChatMessage::user("hello?")],
            tools: vec![],
        };
        let (result, _) = turn(model.as_ref(), &nameless).await;
        assert_eq!(result.unwrap().text, "(script ended)", "{at}");
        let (result, _) = turn(model.as_ref(), &request("lee", "hi")).await;
        assert_eq!(result.unwrap().text, "(script ended)", "{at}");
        assert_eq!(mock.unmatched().len(), 2, "{at}");
        assert_eq!(mock.requests("lee").len(), 1, "{at}");
    }
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ModelConfig {
        api: ApiKind::OpenAi,
        model: "m".into(),
        base_url: Some(format!("http://127.0.0.1:{port}/v1/")),
        api_key: None,
        stream: false,
        timeout: Duration::from_secs(5),
        max_retries: 1,
        max_tokens: 10,
        temperature: None,
        cache: true,
        cache_key: None,
    };
    let model = agent_team_model::connect(cfg, "$K".into()).unwrap();
    assert_eq!(
        model.describe(),
        format!("openai m at http://127.0.0.1:{port}/v1")
    );
    let (result, _) = turn(model.as_ref(), &request("x", "go")).await;
    match result {
        Err(ModelError::Connect { url, .. }) => {
            assert_eq!(url, format!("http://127.0.0.1:{port}/v1/chat/completions"))
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[test]
fn invalid_base_url_is_refused() {
    let cfg = ModelConfig {
        api: ApiKind::Anthropic,
        model: "m".into(),
        base_url: Some("localhost:11434".into()),
        api_key: None,
        stream: false,
        timeout: Duration::from_secs(5),
        max_retries: 0,
        max_tokens: 10,
        temperature: None,
        cache: true,
        cache_key: None,
    };
    assert!(matches!(
        agent_team_model::connect(cfg, "$K".into()),
        Err(ModelError::Connect { .. })
    ));
}

#[test]
fn background_server_serves_synchronous_callers() {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    mock.script("max", vec![Step::Text("from the background".into())]);
    let model = client(&mock, Wire::Anthropic, true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (result, events) = rt.block_on(turn(model.as_ref(), &request("max", "go")));
    assert_eq!(result.unwrap().text, "from the background");
    assert_eq!(streamed_text(&events), "from the background");
    assert_eq!(mock.requests("max").len(), 1);
    // Dropping the mock stops its thread even though the client keeps its connection open.
    drop(mock);
}

/// Token counts a script gives come back through the real client exactly, cache reads and
/// writes included, in every wire format, streamed or whole (OpenAI's streamed counts only
/// because the client asks for them with `stream_options.include_usage`).
#[tokio::test]
async fn scripted_usage_comes_through_exactly() {
    use agent_team_mockmodel::MockUsage;
    for (wire, stream) in COMBOS {
        let at = label(wire, stream);
        let mock = MockModel::start(wire).await.unwrap();
        let figures = MockUsage {
            input: 5000,
            output: 321,
            cached: 4000,
            cache_write: if wire == Wire::Anthropic { 600 } else { 0 },
        };
        mock.script(
            "alice",
            vec![
                Step::WithUsage(figures, Box::new(Step::Text("hi".into()))),
                Step::Tools(vec![("read_file".into(), json!({"path": "a"}))]).with_usage(10, 2, 0),
            ],
        );
        let model = client(&mock, wire, stream);
        let (first, _) = turn(model.as_ref(), &request("alice", "go")).await;
        let u = first
            .unwrap()
            .usage
            .unwrap_or_else(|| panic!("{at}: no usage"));
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_tokens),
            (5000, 321, 4000),
            "{at}"
        );
        let (second, _) = turn(model.as_ref(), &request("alice", "go")).await;
        let u = second.unwrap().usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cached_tokens),
            (10, 2, 0),
            "{at}"
        );
        let sent = &mock.requests("alice")[0];
        if wire == Wire::OpenAi && stream {
            assert_eq!(
                sent["stream_options"],
                json!({"include_usage": true}),
                "{at}"
            );
        } else {
            assert!(sent.get("stream_options").is_none(), "{at}");
        }
    }
}

/// A side request a CLI makes of its own is answered apart and takes no step of the agent's
/// script, which the next real request still gets.
#[tokio::test]
async fn an_aside_takes_no_step() {
    let mock = MockModel::start(Wire::OpenAi).await.unwrap();
    mock.script("alice", vec![Step::Text("the real answer".into())]);
    mock.answer_aside("Generate a title", "A title");
    let model = client(&mock, Wire::OpenAi, false);
    let (aside, _) = turn(
        model.as_ref(),
        &request("alice", "Generate a title for this session"),
    )
    .await;
    assert_eq!(aside.unwrap().text, "A title");
    let (real, _) = turn(model.as_ref(), &request("alice", "say hello")).await;
    assert_eq!(real.unwrap().text, "the real answer");
    assert_eq!(mock.requests("alice").len(), 1);
    assert_eq!(mock.aside_requests().len(), 1);
    assert!(mock.unmatched().is_empty());
}

#[tokio::test]
async fn chat_completions_without_usage_come_back_without_usage() {
    for stream in [false, true] {
        let at = label(Wire::OpenAi, stream);
        let mock = MockModel::start(Wire::OpenAi).await.unwrap();
        mock.script(
            "alice",
            vec![
                Step::WithoutUsage(Box::new(Step::Text("one".into()))),
                Step::Text("two".into()),
                Step::Text("three".into()),
            ],
        );
        let model = client(&mock, Wire::OpenAi, stream);
        let req = request("alice", "say hello");
        let (first, _) = turn(model.as_ref(), &req).await;
        let first = first.unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(first.text, "one", "{at}");
        assert_eq!(first.usage, None, "{at}: the step leaves usage out");
        let (second, _) = turn(model.as_ref(), &req).await;
        assert!(second.unwrap().usage.is_some(), "{at}: only that step");
        mock.omit_usage(true);
        let (third, _) = turn(model.as_ref(), &req).await;
        let third = third.unwrap();
        assert_eq!(third.text, "three", "{at}");
        assert_eq!(third.usage, None, "{at}: the server leaves it out");
    }
}
