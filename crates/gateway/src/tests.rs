#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use agent_team_mockmodel::{MockModel, MockUsage, Step, Wire};
use serde_json::json;
use std::sync::Mutex;

/// A meter with a token budget for the whole team, recording what it was told.
#[derive(Default)]
struct FakeMeter {
    budget: Option<u64>,
    spent: Mutex<u64>,
    calls: Mutex<Vec<Call>>,
    stopped: Mutex<Vec<(String, String)>>,
    checks: Mutex<Vec<(String, Ask)>>,
}

impl Meter for FakeMeter {
    fn check(&self, agent: &str, ask: Ask) -> VerdictFuture {
        self.checks.lock().unwrap().push((agent.to_string(), ask));
        let spent = *self.spent.lock().unwrap();
        let v = match self.budget {
            Some(b) if spent >= b => Verdict::Stop(format!("{spent} of {b} tokens of the team")),
            _ => Verdict::Go,
        };
        Box::pin(async move { v })
    }
    fn done(&self, call: Call) {
        if let Some(u) = call.usage {
            *self.spent.lock().unwrap() += u.input + u.output;
        }
        self.calls.lock().unwrap().push(call);
    }
    fn budget_spent(&self, agent: &str, why: &str) {
        self.stopped
            .lock()
            .unwrap()
            .push((agent.to_string(), why.to_string()));
    }
}

impl FakeMeter {
    /// The calls told so far, once `n` of them are (a response's tally is told when its body is
    /// dropped, just after the client read its end).
    async fn calls(&self, n: usize) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.calls.lock().unwrap().clone();
            if calls.len() >= n || Instant::now() > deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

const KEY: &str = "sk-real-key-never-given-to-a-cli";

struct Setup {
    mock: MockModel,
    gw: Gateway,
    meter: Arc<FakeMeter>,
    token: String,
    http: reqwest::Client,
}

async fn setup(wire: Wire, budget: Option<u64>) -> Setup {
    let mock = MockModel::start(wire).await.unwrap();
    let meter = Arc::new(FakeMeter {
        budget,
        ..Default::default()
    });
    let gw = Gateway::start(meter.clone(), Limits::default()).unwrap();
    let token = gw
        .register(
            "w1",
            Route {
                upstream: mock.base_url(),
                key: Some(KEY.into()),
            },
        )
        .unwrap();
    Setup {
        mock,
        gw,
        meter,
        token,
        http: reqwest::Client::new(),
    }
}

const USAGE: MockUsage = MockUsage {
    input: 1200,
    output: 37,
    cached: 1024,
    cache_write: 0,
};

/// A request in `wire`'s dialect for agent w1, streamed or not: (path, body).
fn request(wire: Wire, stream: bool) -> (String, Value) {
    match wire {
        Wire::Anthropic => (
            "/v1/messages".into(),
            json!({"model": "claude-x", "max_tokens": 1000, "stream": stream,
                   "system": "Your name is w1.",
                   "messages": [{"role": "user", "content": "hello"}]}),
        ),
        Wire::OpenAi => (
            "/v1/chat/completions".into(),
            json!({"model": "gpt-x", "stream": stream,
                   "messages": [{"role": "system", "content": "Your name is w1."},
                                {"role": "user", "content": "hello"}]}),
        ),
        Wire::Gemini => (
            if stream {
                "/v1beta/models/gemini-x:streamGenerateContent?alt=sse".into()
            } else {
                "/v1beta/models/gemini-x:generateContent".into()
            },
            json!({"systemInstruction": {"parts": [{"text": "Your name is w1."}]},
                   "contents": [{"role": "user", "parts": [{"text": "hello"}]}]}),
        ),
    }
}

fn responses_request(stream: bool) -> (String, Value) {
    (
        "/v1/responses".into(),
        json!({"model": "gpt-x", "stream": stream, "instructions": "Your name is w1.",
               "input": [{"role": "user", "content": "hello"}]}),
    )
}

/// The request with the token where `wire`'s CLI puts it.
fn send(s: &Setup, wire: Wire, path: &str, body: &Value, token: &str) -> reqwest::RequestBuilder {
    let url = format!("http://{}{}", s.gw.addr(), path);
    let r = s.http.post(url).json(body);
    match wire {
        Wire::Anthropic => r
            .header("x-api-key", token)
            .header("anthropic-version", "2023-06-01"),
        Wire::OpenAi => r.bearer_auth(token),
        Wire::Gemini => r.header("x-goog-api-key", token),
    }
}

async fn counted_exactly_as_billed(wire: Wire, responses: bool, stream: bool) {
    let s = setup(wire, None).await;
    let usage = MockUsage {
        cache_write: if wire == Wire::Anthropic { 100 } else { 0 },
        ..USAGE
    };
    s.mock.script(
        "w1",
        vec![Step::WithUsage(
            usage,
            Box::new(Step::Text("hi there".into())),
        )],
    );
    let (path, body) = if responses {
        responses_request(stream)
    } else {
        request(wire, stream)
    };
    let resp = send(&s, wire, &path, &body, &s.token).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{wire:?} {path}");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert!(text.contains("ere"), "{text}");
    assert_eq!(ct.starts_with("text/event-stream"), stream, "{ct}");
    let calls = s.meter.calls(1).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    let billed = s.mock.billed("w1");
    let u = c.usage.expect("usage read");
    assert_eq!(u.input, billed.prompt(), "{wire:?} stream={stream}");
    assert_eq!(u.output, billed.output);
    assert_eq!(u.cached, billed.cache_read);
    assert_eq!(u.cache_write, billed.cache_write);
    assert_eq!(u.input, 1200);
    assert_eq!(c.streamed, stream);
    assert_eq!(c.status, 200);
    assert_eq!(c.agent, "w1");
    assert!(!c.model.is_empty());
    // The upstream got the real key, never the token.
    let keys = s.mock.keys("w1");
    assert_eq!(keys.len(), 1);
    let k = keys[0].clone().unwrap();
    assert!(k.contains(KEY), "{k}");
    assert!(!k.contains(&s.token));
    let sent = s.mock.requests("w1")[0].to_string();
    assert!(!sent.contains(&s.token));
}

#[tokio::test]
async fn anthropic_whole_and_streamed_are_counted_exactly_as_billed_with_the_real_key() {
    counted_exactly_as_billed(Wire::Anthropic, false, false).await;
    counted_exactly_as_billed(Wire::Anthropic, false, true).await;
}

#[tokio::test]
async fn openai_chat_whole_and_streamed_are_counted_exactly_as_billed_with_the_real_key() {
    counted_exactly_as_billed(Wire::OpenAi, false, false).await;
    // The stream did not ask for usage: the gateway asks for it.
    counted_exactly_as_billed(Wire::OpenAi, false, true).await;
}

#[tokio::test]
async fn responses_whole_and_streamed_are_counted_exactly_as_billed_with_the_real_key() {
    counted_exactly_as_billed(Wire::OpenAi, true, false).await;
    counted_exactly_as_billed(Wire::OpenAi, true, true).await;
}

#[tokio::test]
async fn gemini_whole_and_streamed_are_counted_exactly_as_billed_with_the_real_key() {
    counted_exactly_as_billed(Wire::Gemini, false, false).await;
    counted_exactly_as_billed(Wire::Gemini, false, true).await;
}

#[tokio::test]
async fn the_gemini_key_in_the_query_is_taken_and_never_forwarded() {
    let s = setup(Wire::Gemini, None).await;
    s.mock.script("w1", vec![Step::Text("ok".into())]);
    let (path, body) = request(Wire::Gemini, true);
    let url = format!("http://{}{}&key={}", s.gw.addr(), path, s.token);
    let resp = s.http.post(url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.text().await.unwrap();
    let k = s.mock.keys("w1")[0].clone().unwrap();
    assert_eq!(k, KEY);
}

#[tokio::test]
async fn a_wrong_absent_or_forgotten_token_is_refused_in_the_dialect_and_nothing_goes_out() {
    let s = setup(Wire::Anthropic, None).await;
    let (path, body) = request(Wire::Anthropic, false);
    let url = format!("http://{}{}", s.gw.addr(), path);
    let none = s.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let v: Value = none.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let wrong = send(&s, Wire::Anthropic, &path, &body, "atg-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // The real key itself is no token either.
    let key = send(&s, Wire::Anthropic, &path, &body, KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 401);
    // Each dialect's own shape.
    let (gpath, gbody) = request(Wire::Gemini, false);
    let g = send(&s, Wire::Gemini, &gpath, &gbody, "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 401);
    let v: Value = g.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401);
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    let (opath, obody) = request(Wire::OpenAi, false);
    let o = send(&s, Wire::OpenAi, &opath, &obody, "nope")
        .send()
        .await
        .unwrap();
    let v: Value = o.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // A token forgotten (the agent's launch ended) is refused.
    s.gw.forget("w1");
    let gone = send(&s, Wire::Anthropic, &path, &body, &s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    assert!(s.mock.keys("w1").is_empty(), "nothing reached the upstream");
    assert!(s.meter.checks.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_relaunch_gets_a_new_token_and_the_old_one_is_refused_and_never_forwarded() {
    let s = setup(Wire::Anthropic, None).await;
    s.mock.script("w1", vec![Step::Text("ok".into())]);
    let route = Route {
        upstream: s.mock.base_url(),
        key: Some(KEY.into()),
    };
    assert_eq!(s.gw.agent_of(&s.token).as_deref(), Some("w1"));
    // Registered again (its next launch): a new token, and the first one means nothing.
    let new = s.gw.register("w1", route.clone()).unwrap();
    assert_ne!(new, s.token);
    assert_eq!(s.gw.agent_of(&s.token), None);
    assert_eq!(s.gw.agent_of(&new).as_deref(), Some("w1"));
    let (path, body) = request(Wire::Anthropic, false);
    let old = send(&s, Wire::Anthropic, &path, &body, &s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    assert!(s.mock.keys("w1").is_empty(), "nothing reached the upstream");
    let ok = send(&s, Wire::Anthropic, &path, &body, &new)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let _ = ok.text().await.unwrap();
    // Forgotten (it stopped): the new one is refused too.
    s.gw.forget("w1");
    assert_eq!(s.gw.agent_of(&new), None);
    let gone = send(&s, Wire::Anthropic, &path, &body, &new)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    assert_eq!(
        s.mock.keys("w1").len(),
        1,
        "only the current token's call went out"
    );
}

#[tokio::test]
async fn a_token_is_useless_at_another_teams_gateway() {
    let s = setup(Wire::Anthropic, None).await;
    let other = Gateway::start(Arc::new(FakeMeter::default()), Limits::default()).unwrap();
    let (path, body) = request(Wire::Anthropic, false);
    let resp = s
        .http
        .post(format!("http://{}{}", other.addr(), path))
        .header("x-api-key", &s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(s.mock.keys("w1").is_empty());
}

async fn over_budget_is_answered_in_dialect(wire: Wire, responses: bool) -> Value {
    let s = setup(wire, Some(50)).await;
    s.mock.script(
        "w1",
        vec![
            Step::Text("first".into()).with_usage(40, 20, 0),
            Step::Text("never".into()),
        ],
    );
    let (path, body) = if responses {
        responses_request(false)
    } else {
        request(wire, false)
    };
    let first = send(&s, wire, &path, &body, &s.token).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let _ = first.text().await.unwrap();
    s.meter.calls(1).await;
    let second = send(&s, wire, &path, &body, &s.token).send().await.unwrap();
    // Chat completions are refused with 402 (their CLIs retry every 429), the rest with 429.
    let status = if wire == Wire::OpenAi && !responses {
        402
    } else {
        429
    };
    assert_eq!(second.status(), status);
    assert_eq!(second.headers()["x-should-retry"], "false");
    let v: Value = second.json().await.unwrap();
    assert_eq!(s.mock.requests("w1").len(), 1, "the second never went out");
    let stopped = s.meter.stopped.lock().unwrap().clone();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].0, "w1");
    let calls = s.meter.calls(2).await;
    assert_eq!(calls[1].status, status);
    assert_eq!(calls[1].usage, None);
    v
}

#[tokio::test]
async fn over_budget_each_dialect_gets_its_own_error_and_the_meter_is_told() {
    let a = over_budget_is_answered_in_dialect(Wire::Anthropic, false).await;
    assert_eq!(a["type"], "error");
    assert_eq!(a["error"]["type"], "rate_limit_error");
    assert!(a["error"]["message"].as_str().unwrap().contains("budget"));
    let o = over_budget_is_answered_in_dialect(Wire::OpenAi, false).await;
    assert_eq!(o["error"]["code"], "insufficient_quota");
    let r = over_budget_is_answered_in_dialect(Wire::OpenAi, true).await;
    assert_eq!(r["error"]["type"], "insufficient_quota");
    let g = over_budget_is_answered_in_dialect(Wire::Gemini, false).await;
    assert_eq!(g["error"]["code"], 429);
    assert_eq!(g["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn the_lease_asks_for_the_requests_model_and_most_output() {
    let s = setup(Wire::Anthropic, None).await;
    s.mock.script("w1", vec![Step::Text("ok".into())]);
    let (path, body) = request(Wire::Anthropic, false);
    let r = send(&s, Wire::Anthropic, &path, &body, &s.token)
        .send()
        .await
        .unwrap();
    let _ = r.text().await.unwrap();
    let checks = s.meter.checks.lock().unwrap().clone();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].0, "w1");
    assert_eq!(checks[0].1.model, "claude-x");
    assert_eq!(checks[0].1.output_tokens, Some(1000));
    assert!(checks[0].1.input_tokens > 0);
}

#[tokio::test]
async fn an_upstream_error_passes_through_and_counts_nothing() {
    let s = setup(Wire::OpenAi, None).await;
    s.mock
        .script("w1", vec![Step::Status(500, "boom upstream".into())]);
    let (path, body) = request(Wire::OpenAi, false);
    let r = send(&s, Wire::OpenAi, &path, &body, &s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("boom upstream"));
    let calls = s.meter.calls(1).await;
    assert_eq!(calls[0].status, 500);
    assert_eq!(calls[0].usage, None);
}

#[tokio::test]
async fn a_stream_passes_through_before_the_upstream_has_finished() {
    // An upstream that sends its first event, then holds the rest until told.
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let app = Router::new().fallback(move || {
        let held = held.clone();
        async move {
            let first = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(
                    b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
                ))
            });
            let rest = futures_util::stream::once(async move {
                held.notified().await;
                Ok(Bytes::from_static(
                    b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\n\n",
                ))
            });
            let mut r = Response::new(Body::from_stream(futures_util::StreamExt::chain(first, rest)));
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let meter = Arc::new(FakeMeter::default());
    let gw = Gateway::start(meter.clone(), Limits::default()).unwrap();
    let token = gw
        .register(
            "w1",
            Route {
                upstream: format!("http://{up}"),
                key: None,
            },
        )
        .unwrap();
    let mut resp = reqwest::Client::new()
        .post(format!("http://{}/v1/messages", gw.addr()))
        .header("x-api-key", &token)
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    assert!(
        meter.calls.lock().unwrap().is_empty(),
        "the call is not over"
    );
    release.notify_one();
    while resp.chunk().await.unwrap().is_some() {}
    let calls = meter.calls(1).await;
    assert_eq!(
        calls[0].usage,
        Some(Usage {
            input: 9,
            output: 5,
            cached: 0,
            cache_write: 0
        })
    );
    assert!(calls[0].first_byte.unwrap() <= calls[0].latency);
}

#[test]
fn usage_is_read_from_chunks_split_anywhere() {
    let events = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":7,\"cache_creation_input_tokens\":3,\"output_tokens\":1}}}\n\n\
                  event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n\
                  event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}\r\n\r\n";
    for split in 1..events.len() {
        let mut r = UsageReader::new(Dialect::Anthropic, true);
        let (a, b) = events.as_bytes().split_at(split);
        r.feed(a);
        r.feed(b);
        assert_eq!(
            r.finish(),
            Some(Usage {
                input: 15,
                output: 42,
                cached: 7,
                cache_write: 3
            }),
            "split at {split}"
        );
    }
}

#[test]
fn a_dialect_is_told_by_its_path_and_the_base_path_is_kept() {
    assert_eq!(Dialect::of("/v1/messages"), Dialect::Anthropic);
    assert_eq!(Dialect::of("/api/v1/chat/completions"), Dialect::OpenAiChat);
    assert_eq!(Dialect::of("/v1/responses"), Dialect::Responses);
    assert_eq!(
        Dialect::of("/v1beta/models/gemini-2.5-pro:streamGenerateContent"),
        Dialect::Gemini
    );
    assert_eq!(Dialect::of("/v1beta/models/m:countTokens"), Dialect::Other);
    assert_eq!(Dialect::of("/v1/messages/count_tokens"), Dialect::Other);
    assert_eq!(
        Dialect::Gemini.model("/v1beta/models/gemini-x:generateContent", &Value::Null),
        "gemini-x"
    );
    assert_eq!(base_path("https://api.openai.com/v1/"), "/v1");
    assert_eq!(base_path("https://api.anthropic.com"), "");
    assert_eq!(origin("https://h:8/a/b"), "https://h:8");
    assert_eq!(origin("http://h"), "http://h");
    assert_eq!(query_without_key(Some("alt=sse&key=atg-1")), "?alt=sse");
    assert_eq!(query_without_key(Some("key=atg-1")), "");
    assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
}
