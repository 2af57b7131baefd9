//! The mock's prompt-cache accounting (`MockModel::account_caching`), driven over HTTP with
//! hand-written bodies, and through the real model clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agent_team_mockmodel::{Billed, MockModel, Step, Wire};
use agent_team_model::{
    ApiKind, ChatMessage, Model, ModelConfig, ToolCall, ToolSpec, TurnRequest, Usage,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

/// Just over the 5-minute lifetime.
const EXPIRED: Duration = Duration::from_secs(5 * 60 + 1);

/// A mock in caching mode, every named agent scripted with plenty of text answers.
fn mock(wire: Wire, agents: &[&str]) -> MockModel {
    let mock = MockModel::start_background(wire).unwrap();
    mock.account_caching(true);
    for a in agents {
        mock.script(a, (0..20).map(|i| Step::Text(format!("ok {i}"))).collect());
    }
    mock
}

/// POSTs `body` to `path` with a plain HTTP/1.1 request: (status, answer).
fn post(mock: &MockModel, path: &str, body: &Value) -> (u16, Value) {
    let url = mock.base_url();
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut tcp = std::net::TcpStream::connect(&host).unwrap();
    let body = body.to_string();
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(rest).unwrap())
}

/// About `tokens` tokens of system prompt naming `agent`.
fn system(agent: &str, tokens: usize) -> String {
    let head = format!("Your name is {agent}.\n");
    let fill: String = "You work in a team. ".repeat(tokens * 4 / 20 + 1);
    format!("{head}{}", &fill[..tokens * 4 - head.len()])
}

const EPH: fn() -> Value = || json!({"type": "ephemeral"});

/// A text block, with a breakpoint when `mark`.
fn block(text: &str, mark: bool) -> Value {
    let mut b = json!({"type": "text", "text": text});
    if mark {
        b["cache_control"] = EPH();
    }
    b
}

/// A messages request: a system prompt (a breakpoint on it when `mark_system`) and these
/// (role, text, breakpoint) messages.
fn messages_request(
    model: &str,
    system: &str,
    mark_system: bool,
    msgs: &[(&str, &str, bool)],
) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "system": [block(system, mark_system)],
        "messages": msgs.iter().map(|(role, text, mark)| json!({"role": role, "content": [block(text, *mark)]})).collect::<Vec<_>>(),
    })
}

/// Anthropic's usage of an answer: (input_tokens, cache_creation_input_tokens,
/// cache_read_input_tokens).
fn anthropic_usage(answer: &Value) -> (u64, u64, u64) {
    let u = &answer["usage"];
    let f = |k: &str| {
        u[k].as_u64()
            .unwrap_or_else(|| panic!("no {k} in {answer}"))
    };
    (
        f("input_tokens"),
        f("cache_creation_input_tokens"),
        f("cache_read_input_tokens"),
    )
}

/// Sends a messages request and returns its usage.
fn send(mock: &MockModel, req: &Value) -> (u64, u64, u64) {
    let (status, answer) = post(mock, "/v1/messages", req);
    assert_eq!(status, 200, "{answer}");
    anthropic_usage(&answer)
}

const SONNET: &str = "claude-sonnet-4-5";

/// The first request writes up to its last breakpoint; the next, the same conversation one
/// turn on, reads all of that (found at the old breakpoint's block by looking back from its
/// new one) and writes the new turn; what follows the last breakpoint is plain input.
#[test]
fn anthropic_writes_then_reads_the_prefix_and_writes_the_new_turn() {
    let mock = mock(Wire::Anthropic, &["ann"]);
    let sys = system("ann", 3000);
    let first = messages_request(SONNET, &sys, true, &[("user", "Build the thing.", true)]);
    let (input1, write1, read1) = send(&mock, &first);
    assert_eq!(read1, 0, "nothing cached yet");
    assert!(
        write1 > 3000,
        "the system prompt and the goal are written: {write1}"
    );
    assert_eq!(input1, 0, "the last breakpoint is on the last block");

    let second = messages_request(
        SONNET,
        &sys,
        true,
        &[
            ("user", "Build the thing.", false),
            ("assistant", "Which thing?", false),
            ("user", "The big one.", true),
        ],
    );
    let (input2, write2, read2) = send(&mock, &second);
    assert_eq!(read2, write1, "the whole first prompt is read");
    assert!(
        write2 > 0 && write2 < 100,
        "only the new turn is written: {write2}"
    );
    assert_eq!(input2, 0);

    // A third turn whose newest message carries no breakpoint: that message is plain input.
    let third = messages_request(
        SONNET,
        &sys,
        true,
        &[
            ("user", "Build the thing.", false),
            ("assistant", "Which thing?", false),
            ("user", "The big one.", true),
            ("assistant", "Done.", false),
            (
                "user",
                "Thanks, and now a long afterthought that is not cached at all.",
                false,
            ),
        ],
    );
    let (input3, write3, read3) = send(&mock, &third);
    assert_eq!(
        read3,
        write1 + write2,
        "read up to the breakpoint written last time"
    );
    assert_eq!(write3, 0, "the breakpoint's prefix was already cached");
    assert!(input3 > 10, "the rest is input: {input3}");

    assert_eq!(
        mock.billed("ann"),
        Billed {
            input: input1 + input2 + input3,
            cache_write: write1 + write2 + write3,
            cache_read: read1 + read2 + read3,
            output: mock.billed("ann").output,
        }
    );
    let billed = mock.billed("ann");
    assert!(billed.output >= 3);
    assert!(billed.cached_share() > 0.6, "{billed:?}");
}

/// Without breakpoints nothing is cached, however long and repeated the prompt.
#[test]
fn anthropic_without_breakpoints_caches_nothing() {
    let mock = mock(Wire::Anthropic, &["bo"]);
    let req = messages_request(SONNET, &system("bo", 3000), false, &[("user", "go", false)]);
    let (input1, ..) = send(&mock, &req);
    assert!(input1 > 3000);
    assert_eq!(send(&mock, &req), (input1, 0, 0));
}

/// A breakpoint whose prefix is below the model's minimum writes nothing (1024 tokens for
/// Sonnet; a Haiku 3.5 needs 2048, so a prefix of 1500 is cached for one and not the other).
#[test]
fn anthropic_below_the_minimum_writes_nothing() {
    let mock = mock(Wire::Anthropic, &["small", "mid"]);
    let short = messages_request(SONNET, &system("small", 500), true, &[("user", "go", true)]);
    let (input, write, read) = send(&mock, &short);
    assert_eq!((write, read), (0, 0));
    assert_eq!(send(&mock, &short), (input, 0, 0));

    let sys = system("mid", 1500);
    let haiku = messages_request(
        "claude-3-5-haiku-20241022",
        &sys,
        true,
        &[("user", "go", true)],
    );
    assert_eq!(send(&mock, &haiku).1, 0, "below Haiku's 2048");
    assert_eq!(send(&mock, &haiku).2, 0);
    let sonnet = messages_request(SONNET, &sys, true, &[("user", "go", true)]);
    assert!(send(&mock, &sonnet).1 > 1500, "above Sonnet's 1024");
    assert!(send(&mock, &sonnet).2 > 1500);
}

/// An entry lives 5 minutes from its last use: read after 4 minutes, read again 4 minutes
/// later (8 after it was written), written anew once 5 minutes pass unused.
#[test]
fn anthropic_entries_expire_after_five_minutes_unused() {
    let mock = mock(Wire::Anthropic, &["exp"]);
    let req = messages_request(SONNET, &system("exp", 2000), true, &[("user", "go", true)]);
    let (_, written, _) = send(&mock, &req);
    assert!(written > 2000);
    mock.advance_clock(Duration::from_secs(4 * 60));
    assert_eq!(send(&mock, &req), (0, 0, written));
    mock.advance_clock(Duration::from_secs(4 * 60));
    assert_eq!(send(&mock, &req), (0, 0, written), "the read refreshed it");
    mock.advance_clock(EXPIRED);
    assert_eq!(send(&mock, &req), (0, written, 0), "expired: written again");
    assert_eq!(send(&mock, &req), (0, 0, written));
}

/// More than 4 breakpoints is the API's 400, and the request takes no step.
#[test]
fn anthropic_refuses_more_than_four_breakpoints() {
    let mock = mock(Wire::Anthropic, &["many"]);
    let msgs: Vec<(&str, &str, bool)> = ["a", "b", "c", "d"]
        .iter()
        .flat_map(|t| [("user", *t, true), ("assistant", "ok", false)])
        .collect();
    let req = messages_request(SONNET, &system("many", 100), true, &msgs[..7]);
    let (status, answer) = post(&mock, "/v1/messages", &req);
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["type"], "invalid_request_error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Found 5")
    );
    let ok = messages_request(SONNET, &system("many", 100), true, &[("user", "go", true)]);
    let (status, answer) = post(&mock, "/v1/messages", &ok);
    assert_eq!(status, 200);
    assert_eq!(
        answer["content"][0]["text"], "ok 0",
        "the refused request took no step"
    );
    assert_eq!(mock.requests("many").len(), 2, "both are recorded");
}

/// A scripted usage still wins in caching mode, and is what the agent is billed.
#[test]
fn scripted_usage_wins_over_the_accounting() {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    mock.account_caching(true);
    mock.script("fix", vec![Step::Text("hi".into()).with_usage(50, 7, 20)]);
    let req = messages_request(SONNET, &system("fix", 2000), true, &[("user", "go", true)]);
    assert_eq!(send(&mock, &req), (30, 0, 20));
    assert_eq!(
        mock.billed("fix"),
        Billed {
            input: 30,
            cache_write: 0,
            cache_read: 20,
            output: 7
        }
    );
}

/// A chat-completions request: tools, a system prompt, a user message, maybe a cache key.
fn chat_request(system: &str, user: &str, key: Option<&str>) -> Value {
    let mut req = json!({
        "model": "gpt-5",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "tools": [{"type": "function", "function": {"name": "read_file", "description": "Reads a file.", "parameters": {"type": "object"}}}],
    });
    if let Some(k) = key {
        req["prompt_cache_key"] = json!(k);
    }
    req
}

/// Chat completions' (prompt_tokens, cached_tokens).
fn chat(mock: &MockModel, req: &Value) -> (u64, u64) {
    let (status, answer) = post(mock, "/v1/chat/completions", req);
    assert_eq!(status, 200, "{answer}");
    let u = &answer["usage"];
    (
        u["prompt_tokens"].as_u64().unwrap(),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
    )
}

/// The cached length OpenAI reports for a repeated prefix of `tokens`: 1024 + 128·k.
fn steps_of(tokens: u64) -> u64 {
    if tokens < 1024 {
        0
    } else {
        1024 + (tokens - 1024) / 128 * 128
    }
}

/// Below 1024 tokens nothing is cached.
#[test]
fn openai_caches_nothing_below_1024_tokens() {
    let mock = mock(Wire::OpenAi, &["tiny"]);
    let req = chat_request(&system("tiny", 900), "go", None);
    let (prompt, cached) = chat(&mock, &req);
    assert!(prompt > 900 && prompt < 1024, "{prompt}");
    assert_eq!(cached, 0);
    assert_eq!(chat(&mock, &req), (prompt, 0));
}

/// Above it, the next request reads the longest prefix seen before, in 128-token steps;
/// chat completions and the Responses API report it in their own fields.
#[test]
fn openai_reads_the_repeated_prefix_in_128_token_steps() {
    let mock = mock(Wire::OpenAi, &["oli"]);
    let sys = system("oli", 3000);
    let first = chat_request(&sys, "Build the thing.", None);
    let (prompt1, cached1) = chat(&mock, &first);
    assert_eq!(cached1, 0);
    let mut second = first.clone();
    let msgs = second["messages"].as_array_mut().unwrap();
    msgs.push(json!({"role": "assistant", "content": "Which thing?"}));
    msgs.push(json!({"role": "user", "content": "The big one."}));
    let (prompt2, cached2) = chat(&mock, &second);
    assert!(prompt2 > prompt1);
    assert_eq!(
        cached2,
        steps_of(prompt1),
        "the first prompt, rounded down to a step"
    );
    assert!(cached2 > prompt1 - 128);
    // The same prompt again reads all of its whole steps.
    assert_eq!(chat(&mock, &second), (prompt2, steps_of(prompt2)));
    assert_eq!(mock.billed("oli").cache_write, 0, "OpenAI bills no writes");

    // The Responses API: `input_tokens` and `input_tokens_details.cached_tokens`.
    let req = json!({"model": "gpt-5", "instructions": system("rex", 2000),
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Your name is rex. Go."}]}],
        "prompt_cache_key": "rex"});
    mock.script("rex", vec![Step::Text("a".into()), Step::Text("b".into())]);
    let (_, a) = post(&mock, "/v1/responses", &req);
    assert_eq!(a["usage"]["input_tokens_details"]["cached_tokens"], 0);
    let (_, b) = post(&mock, "/v1/responses", &req);
    let input = b["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input > 2000);
    assert_eq!(
        b["usage"]["input_tokens_details"]["cached_tokens"],
        steps_of(input)
    );
}

/// Requests naming different `prompt_cache_key`s do not share entries; the same key does.
#[test]
fn openai_cache_keys_do_not_share() {
    let mock = mock(Wire::OpenAi, &["key"]);
    let sys = system("key", 2000);
    let a = chat_request(&sys, "go", Some("team/a"));
    let b = chat_request(&sys, "go", Some("team/b"));
    let (prompt, _) = chat(&mock, &a);
    assert_eq!(chat(&mock, &b), (prompt, 0), "another key");
    assert_eq!(
        chat(&mock, &chat_request(&sys, "go", None)),
        (prompt, 0),
        "no key"
    );
    assert_eq!(chat(&mock, &a), (prompt, steps_of(prompt)), "the same key");
}

/// Entries live 5 minutes from their last use.
#[test]
fn openai_entries_expire_after_five_minutes_unused() {
    let mock = mock(Wire::OpenAi, &["late"]);
    let req = chat_request(&system("late", 2000), "go", None);
    let (prompt, _) = chat(&mock, &req);
    let hit = (prompt, steps_of(prompt));
    mock.advance_clock(Duration::from_secs(4 * 60));
    assert_eq!(chat(&mock, &req), hit);
    mock.advance_clock(Duration::from_secs(4 * 60));
    assert_eq!(chat(&mock, &req), hit, "the read refreshed it");
    mock.advance_clock(EXPIRED);
    assert_eq!(chat(&mock, &req), (prompt, 0), "expired");
    assert_eq!(chat(&mock, &req), hit);
}

/// The real clients against the mock in caching mode: the usage they parse shows the first
/// turn writing the prefix (Anthropic) and the second reading it, streamed and whole.
#[tokio::test]
async fn clients_see_cache_reads_on_the_second_turn() {
    for (wire, stream) in [
        (Wire::Anthropic, false),
        (Wire::Anthropic, true),
        (Wire::OpenAi, false),
        (Wire::OpenAi, true),
    ] {
        let at = format!("{wire:?} stream={stream}");
        let mock = MockModel::start(wire).await.unwrap();
        mock.account_caching(true);
        mock.script(
            "cli",
            vec![
                Step::tools(&[("read_file", json!({"path": "a.txt"}))]),
                Step::Text("done".into()),
            ],
        );
        let cfg = ModelConfig {
            api: match wire {
                Wire::OpenAi => ApiKind::OpenAi,
                Wire::Anthropic => ApiKind::Anthropic,
                Wire::Gemini => panic!("the model client speaks no Gemini"),
            },
            model: match wire {
                Wire::OpenAi => "gpt-5".into(),
                Wire::Anthropic => SONNET.into(),
                Wire::Gemini => panic!("the model client speaks no Gemini"),
            },
            base_url: Some(mock.base_url()),
            api_key: Some("test-key".into()),
            stream,
            timeout: Duration::from_secs(10),
            max_retries: 0,
            max_tokens: 512,
            temperature: None,
            cache: true,
            cache_key: Some("agent-team/t/cli".into()),
        };
        let model: std::sync::Arc<dyn Model> =
            agent_team_model::connect(cfg, "$TEST_API_KEY".into()).unwrap();
        let mut req = TurnRequest {
            messages: vec![
                ChatMessage::system(system("cli", 3000)),
                ChatMessage::user("Read a.txt."),
            ],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Reads a file.".into(),
                parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}})
                    .into(),
            }],
        };
        let first = model.turn(&req, &mut |_| {}).await.unwrap();
        let u1: Usage = first.usage.unwrap_or_else(|| panic!("{at}: no usage"));
        assert_eq!(u1.cached_tokens, 0, "{at}");
        match wire {
            Wire::Anthropic => assert_eq!(u1.cache_write_tokens, u1.input_tokens, "{at}"),
            Wire::OpenAi | Wire::Gemini => assert_eq!(u1.cache_write_tokens, 0, "{at}"),
        }
        let call: ToolCall = first.tool_calls[0].clone();
        req.messages
            .push(ChatMessage::assistant("", vec![call.clone()]));
        req.messages
            .push(ChatMessage::tool(&call.id, "the contents of a.txt", false));
        let second = model.turn(&req, &mut |_| {}).await.unwrap();
        let u2 = second.usage.unwrap_or_else(|| panic!("{at}: no usage"));
        assert!(u2.input_tokens > u1.input_tokens, "{at}");
        match wire {
            Wire::Anthropic => {
                assert_eq!(
                    u2.cached_tokens, u1.input_tokens,
                    "{at}: the first prompt is read"
                );
                assert_eq!(
                    u2.cache_write_tokens,
                    u2.input_tokens - u1.input_tokens,
                    "{at}: the new turn is written"
                );
            }
            Wire::OpenAi => {
                assert_eq!(u2.cached_tokens, steps_of(u1.input_tokens), "{at}");
            }
            Wire::Gemini => panic!("the model client speaks no Gemini"),
        }
        let billed = mock.billed("cli");
        assert_eq!(billed.cache_read, u2.cached_tokens, "{at}");
        assert_eq!(billed.prompt(), u1.input_tokens + u2.input_tokens, "{at}");
    }
}

/// What a request writes to the cache is read by others only once it has been answered, as
/// at the providers: agents sending the same prefix at the same moment all miss (and all
/// write), which is why staggered starts pay off; the one after the answer reads it.
#[test]
fn a_prefix_is_read_only_after_the_request_that_wrote_it_was_answered() {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    mock.account_caching(true);
    let gate = agent_team_mockmodel::Gate::new();
    mock.script(
        "a1",
        vec![Step::Gate(
            gate.clone(),
            Box::new(Step::Text("first".into())),
        )],
    );
    for a in ["a2", "a3"] {
        mock.script(a, vec![Step::Text("ok".into())]);
    }
    // One system prompt for all, with its breakpoint; the name in the user message.
    let shared = "You work in a team of reviewers. ".repeat(400);
    let req = |me: &str| {
        messages_request(
            SONNET,
            &shared,
            true,
            &[(
                "user",
                &format!("Your name is {me}. Review your module."),
                false,
            )],
        )
    };
    let first = {
        let body = req("a1");
        let m = &mock;
        std::thread::scope(|s| {
            let held = s.spawn(move || send(m, &body));
            // a1's request is in, and held: a2's comes meanwhile.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while m.requests("a1").is_empty() {
                assert!(std::time::Instant::now() < deadline, "a1 never asked");
                std::thread::sleep(Duration::from_millis(5));
            }
            let (_, write2, read2) = send(m, &req("a2"));
            assert_eq!(read2, 0, "a1's write is not readable before its answer");
            assert!(write2 > 2000, "a2 writes the prefix too: {write2}");
            gate.open();
            held.join().unwrap()
        })
    };
    assert!(first.1 > 2000, "a1 wrote the prefix: {first:?}");
    let (_, write3, read3) = send(&mock, &req("a3"));
    assert!(
        read3 > 2000,
        "a3, after the answers, reads the prefix: {read3}"
    );
    assert_eq!(write3, 0);
}
