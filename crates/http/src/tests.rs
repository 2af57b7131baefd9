//! The HTTP layer against a fake team: auth, errors, limits, routes, streams, the document.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::*;
use agent_team_protocol::*;
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::{Condvar, Mutex};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

/// One team in memory: its run, its log, and every request made to it.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    log: Arc<(Mutex<Vec<Envelope>>, Condvar)>,
    run: Mutex<Option<RunState>>,
}

fn env(seq: u64, agent: &str, event: Event) -> Envelope {
    Envelope {
        seq,
        ts: Timestamp(seq),
        team_id: "t".into(),
        agent_id: agent.into(),
        role_name: agent.into(),
        event,
    }
}

impl Fake {
    fn push(&self, agent: &str, event: Event) -> u64 {
        let (log, cv) = &*self.log;
        let mut log = log.lock().unwrap();
        let seq = log.len() as u64 + 1;
        log.push(env(seq, agent, event));
        cv.notify_all();
        seq
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn info(&self) -> TeamInfo {
        let log = self.log.0.lock().unwrap();
        let answer = log.iter().find_map(|e| match &e.event {
            Event::RunFinished { answer, .. } => Some(answer.clone()),
            _ => None,
        });
        TeamInfo {
            name: "t".into(),
            daemon_pid: 1,
            protocol: 1,
            state_dir: String::new(),
            socket: String::new(),
            goal: None,
            run: self.run.lock().unwrap().unwrap_or(RunState::Idle),
            answer,
            agents: vec![],
            tasks: vec![],
            last_seq: log.len() as u64,
            backend: None,
            details: None,
        }
    }
}

struct FakeFollow {
    log: Arc<(Mutex<Vec<Envelope>>, Condvar)>,
    at: u64,
}

impl Follow for FakeFollow {
    fn next(&mut self, wait: Duration) -> Result<Option<Envelope>, ErrorBody> {
        let (log, cv) = &*self.log;
        let mut log = log.lock().unwrap();
        if log.len() as u64 <= self.at {
            log = cv.wait_timeout(log, wait).unwrap().0;
        }
        match log.get(self.at as usize) {
            Some(e) => {
                self.at += 1;
                Ok(Some(e.clone()))
            }
            None => Ok(None),
        }
    }
}

impl Teams for Fake {
    fn list(&self) -> Result<Vec<TeamSummary>, ErrorBody> {
        Ok(vec![TeamSummary {
            name: "t".into(),
            running: true,
            run: None,
            goal: None,
        }])
    }

    fn read(&self, team: &str, req: Request) -> Result<Reply, ErrorBody> {
        self.calls.lock().unwrap().push(format!(
            "read {team} {}",
            serde_json::to_string(&req).unwrap()
        ));
        if self.run.lock().unwrap().is_none() {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no team {team}"),
            ));
        }
        match req {
            Request::TeamInfo => Ok(Reply::Team { team: self.info() }),
            Request::TaskList { after: None, .. } => Ok(Reply::Tasks {
                tasks: vec![],
                more: None,
            }),
            Request::TaskList { .. } => Ok(Reply::Tasks {
                tasks: vec![],
                more: None,
            }),
            Request::WorkDiff { agent, patch } if agent == "w1" => Ok(Reply::WorkDiff {
                diff: WorkDiff {
                    agent,
                    branch: "agent-team/w1".into(),
                    base: Some("main".into()),
                    fork: "abc123".into(),
                    commits: 0,
                    uncommitted: true,
                    files: vec![FileChange {
                        path: "a.txt".into(),
                        added: Some(1),
                        removed: Some(0),
                    }],
                    control_paths: vec![],
                    added: 1,
                    removed: 0,
                    patch: patch.then(|| "+x\n".to_string()),
                },
            }),
            Request::WorkDiff { agent, .. } => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("{agent} has no branch agent-team/{agent}"),
            )),
            _ => Err(ErrorBody::new(ErrorCode::NotFound, "nothing here")),
        }
    }

    fn call(&self, team: &str, req: Request) -> Result<Reply, ErrorBody> {
        self.calls.lock().unwrap().push(format!(
            "call {team} {}",
            serde_json::to_string(&req).unwrap()
        ));
        match req {
            Request::Send { to, .. } => Ok(Reply::Sent {
                ids: vec![7],
                recipients: vec![to],
            }),
            Request::PlanDecide { agent, .. } if agent == "ghost" => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no agent {agent:?}"),
            )),
            Request::PlanDecide { agent, .. } => Ok(Reply::Agent {
                agent: AgentInfo::new(&agent, "worker", "process", 1, Timestamp(1)),
            }),
            Request::WorkFinish { agent, .. } if agent == "c1" => Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                "conflict: merging agent-team/c1 into main conflicts in a.txt; main and the \
                 workspace are unchanged, agent-team/c1 is kept",
                json!({"branch": "agent-team/c1", "into": "main", "paths": ["a.txt"]}),
            )),
            Request::WorkFinish { agent, .. } if agent == "busy" => Err(ErrorBody::new(
                ErrorCode::InvalidState,
                format!("{agent} is working on a task and may still change its work"),
            )),
            Request::WorkFinish {
                agent,
                action,
                into,
                keep,
                ..
            } => Ok(Reply::WorkFinished {
                outcome: FinishOutcome {
                    branch: format!("agent-team/{agent}"),
                    agent,
                    action,
                    into: into.or(Some("main".into())),
                    committed: vec!["c0ffee".into()],
                    head: Some("c0ffee".into()),
                    fast_forward: true,
                    removed: !keep,
                    pushed_to: None,
                    pr_url: None,
                    pr_hint: None,
                },
            }),
            Request::PermDecide { id, .. } => Err(ErrorBody::new(
                ErrorCode::InvalidState,
                format!("request {id} was already decided"),
            )),
            _ => Ok(Reply::Done),
        }
    }

    fn up(
        &self,
        team: &str,
        goal: Option<String>,
        variables: &BTreeMap<String, String>,
        _secrets: &BTreeMap<String, String>,
    ) -> Result<u64, ErrorBody> {
        self.calls.lock().unwrap().push(format!(
            "up {team} {} {}",
            goal.clone().unwrap_or_default(),
            serde_json::to_string(variables).unwrap()
        ));
        *self.run.lock().unwrap() = Some(RunState::Running);
        let before = self.log.0.lock().unwrap().len() as u64;
        self.push("daemon", Event::RunStarted { goal });
        Ok(before)
    }

    fn down(&self, team: &str) -> Result<bool, ErrorBody> {
        self.calls.lock().unwrap().push(format!("down {team}"));
        Ok(true)
    }

    fn follow(&self, team: &str, since: u64) -> Result<Box<dyn Follow>, ErrorBody> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("follow {team} {since}"));
        Ok(Box::new(FakeFollow {
            log: self.log.clone(),
            at: since,
        }))
    }
}

fn app(fake: Arc<Fake>) -> Router {
    let mut variables = BTreeMap::new();
    variables.insert("who".to_string(), "serve".to_string());
    router(
        fake,
        Settings {
            token: Token::new(TOKEN),
            base_team: "svc".into(),
            variables,
            poll: Duration::from_millis(20),
            max_streams: 2,
            session_idle: None,
            max_sessions: 32,
            allowed_hosts: allowed_hosts(&Listen::parse("127.0.0.1:8000", false).unwrap(), &[])
                .unwrap(),
        },
    )
}

fn req(method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> HttpRequest<Body> {
    let mut b = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost:8000");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(body.map(|s| Body::from(s.to_string())).unwrap_or_default())
        .unwrap()
}

async fn send(app: &Router, r: HttpRequest<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn every_request_but_the_page_needs_the_token_and_gets_only_401_without_it() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    for (method, uri) in [
        ("GET", "/v1/teams"),
        ("GET", "/v1/teams/t/agents"),
        ("POST", "/v1/teams/t/down"),
        ("POST", "/team/stream"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/no/such/route"),
    ] {
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let (status, body) = send(&app, req(method, uri, token, None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // Nothing reached the team.
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // The board's page is served without the token; it holds no data.
    let resp = app
        .clone()
        .oneshot(req("GET", "/", None, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&html).contains("agent-team board"));
}

#[tokio::test]
async fn errors_are_json_with_the_protocols_codes_and_fitting_statuses() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    // No such team: the reader's not_found.
    let (status, body) = send(&app, req("GET", "/v1/teams/nope", Some(TOKEN), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    // A bad name never reaches the team.
    let (status, body) = send(&app, req("GET", "/v1/teams/..%2Fetc", Some(TOKEN), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    // A state conflict is 409.
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/permissions/3",
            Some(TOKEN),
            Some(r#"{"decision":"deny","reason":"no"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "invalid_state");
    // Bad JSON and unknown fields are 400 bad_request.
    for bad in [
        r#"{"decision":"maybe"}"#,
        "{",
        r#"{"decision":"allow","extra":1}"#,
    ] {
        let (status, body) = send(
            &app,
            req("POST", "/v1/teams/t/permissions/3", Some(TOKEN), Some(bad)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    // An unknown route is a JSON 404 too.
    let (status, body) = send(&app, req("GET", "/v1/nothing", Some(TOKEN), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_body_over_one_mib_is_413_and_never_reaches_the_team() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let big = format!(
        r#"{{"to":"leader","text":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let (status, body) = send(
        &app,
        req("POST", "/v1/teams/t/messages", Some(TOKEN), Some(&big)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "limit_exceeded");
    let (status, _) = send(&app, req("POST", "/v1/teams/t/up", Some(TOKEN), Some(&big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A message over the protocol's 64 KiB is refused before the team too.
    let long = format!(r#"{{"to":"leader","text":"{}"}}"#, "x".repeat(70 * 1024));
    let (status, body) = send(
        &app,
        req("POST", "/v1/teams/t/messages", Some(TOKEN), Some(&long)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn decisions_and_messages_become_the_protocols_requests() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    for (d, allow, always) in [
        ("allow", true, false),
        ("always", true, true),
        ("deny", false, false),
    ] {
        send(
            &app,
            req(
                "POST",
                "/v1/teams/t/permissions/9",
                Some(TOKEN),
                Some(&format!(r#"{{"decision":"{d}"}}"#)),
            ),
        )
        .await;
        let last = fake.calls().pop().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(last.trim_start_matches("call t ")).unwrap();
        assert_eq!(v["op"], "perm_decide");
        assert_eq!(v["id"], 9);
        assert_eq!(v["allow"], allow, "{d}");
        assert_eq!(
            v.get("always").and_then(|a| a.as_bool()).unwrap_or(false),
            always,
            "{d}"
        );
    }
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/messages",
            Some(TOKEN),
            Some(r#"{"to":"leader","text":"hi"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"ids": [7], "recipients": ["leader"]})
    );
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_routes_with_the_wire_types() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let (status, doc) = send(&app, req("GET", "/v1/openapi.json", Some(TOKEN), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for ty in [
        "Envelope",
        "Event",
        "AgentInfo",
        "Task",
        "PermRequest",
        "StreamItem",
        "ErrorBody",
        "WorkDiff",
        "FinishOutcome",
        "Finish",
    ] {
        assert!(
            schemas.contains_key(ty),
            "{ty} missing from {:?}",
            schemas.keys()
        );
    }
    // Every route in the document is served (not the router's "no such route").
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        openapi::routes().len()
    );
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let uri = path
                .replace("{team}", "t")
                .replace("{name}", "leader")
                .replace("{agent}", "leader")
                .replace("{id}", "1");
            let resp = app
                .clone()
                .oneshot(req(&method.to_uppercase(), &uri, Some(TOKEN), None))
                .await
                .unwrap();
            let status = resp.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains("no such route") && !text.contains("does not take"),
                    "{method} {path}: {text}"
                );
            }
        }
    }
    // And a served route that is not in the document would be: check a few known ones.
    for route in [
        "/v1/teams/{team}/events",
        "/team/stream",
        "/v1/teams/{team}/permissions/{id}",
        "/v1/teams/{team}/agents/{name}/diff",
        "/v1/teams/{team}/agents/{name}/finish",
    ] {
        assert!(paths.contains_key(route), "{route}");
    }
}

/// Reads an SSE body until `until` says stop; returns the `data:` payloads and the ids.
async fn read_sse(
    resp: axum::response::Response,
    mut until: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<(Option<u64>, serde_json::Value)> {
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut out = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("stream timed out");
        let Some(frame) = frame else { return out };
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            buf.push_str(&String::from_utf8_lossy(data));
        }
        while let Some(cut) = buf.find("\n\n") {
            let block: String = buf.drain(..cut + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&data).unwrap();
            let stop = until(&v);
            out.push((id, v));
            if stop {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_resumes_after_last_event_id() {
    let fake = Arc::new(Fake::default());
    *fake.run.lock().unwrap() = Some(RunState::Running);
    for i in 0..5 {
        fake.push(
            "leader",
            Event::TextMessageContent {
                delta: format!("d{i}"),
            },
        );
    }
    let app = app(fake.clone());
    let mut r = req("GET", "/v1/teams/t/events", Some(TOKEN), None);
    r.headers_mut()
        .insert("last-event-id", "3".parse().unwrap());
    let resp = app.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let f2 = fake.clone();
    let later = tokio::task::spawn_blocking(move || {
        f2.push(
            "b1",
            Event::TextMessageContent {
                delta: "live".into(),
            },
        )
    });
    let got = read_sse(resp, |v| v["seq"] == 6).await;
    later.await.unwrap();
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 5, 6]);
    assert!(got.iter().all(|(id, v)| *id == v["seq"].as_u64()));
    assert_eq!(got[2].1["agent_id"], "b1");
}

#[tokio::test]
async fn a_session_starts_a_team_then_messages_its_leader_then_resumes_without_sending() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let body =
        r#"{"user_id":"alice","session_id":"s1","message":"build it","variables":{"lang":"rust"}}"#;
    let team = session_team("svc", "alice", "s1");
    // First use: the team is made and started with the message as its goal.
    let resp = app
        .clone()
        .oneshot(req("POST", "/team/stream", Some(TOKEN), Some(body)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[crate::sse::TEAM_HEADER], team.as_str());
    let f2 = fake.clone();
    tokio::task::spawn_blocking(move || {
        f2.push(
            "leader",
            Event::TextMessageContent {
                delta: "working".into(),
            },
        );
        f2.push(
            "leader",
            Event::RunFinished {
                answer: "done: 42".into(),
                success: true,
            },
        );
    });
    let got = read_sse(resp, |v| v["type"] == "complete").await;
    let types: Vec<&str> = got
        .iter()
        .map(|(_, v)| v["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["team_event", "team_event", "team_event", "complete"]
    );
    assert_eq!(got[0].1["envelope"]["event"]["type"], "RUN_STARTED");
    let done = &got[3].1;
    assert_eq!(
        (&done["type"], &done["result"], &done["success"]),
        (&json!("complete"), &json!("done: 42"), &json!(true))
    );
    assert_eq!(
        (&done["team"], &done["answer"]),
        (&json!(team), &json!("done: 42"))
    );
    let calls = fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c == &format!(r#"up {team} build it {{"lang":"rust","who":"serve"}}"#)),
        "{calls:?}"
    );

    // While the team runs, a POST is a message to its leader and streams from that point.
    *fake.run.lock().unwrap() = Some(RunState::Running);
    let before = fake.calls().len();
    let body2 = r#"{"user_id":"alice","session_id":"s1","message":"also test it"}"#;
    let resp = app
        .clone()
        .oneshot(req("POST", "/team/stream", Some(TOKEN), Some(body2)))
        .await
        .unwrap();
    let f2 = fake.clone();
    tokio::task::spawn_blocking(move || {
        f2.push(
            "leader",
            Event::RunFinished {
                answer: "tested".into(),
                success: true,
            },
        )
    });
    let got = read_sse(resp, |v| v["type"] == "complete").await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].1["envelope"]["seq"], 4);
    let calls = fake.calls()[before..].to_vec();
    assert!(
        calls.iter().any(|c| c.starts_with(&format!("call {team}"))
            && c.contains(r#""op":"send""#)
            && c.contains("also test it")),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("up ")), "{calls:?}");

    // A resume sends nothing and gets exactly what came after Last-Event-ID.
    *fake.run.lock().unwrap() = Some(RunState::Finished);
    let before = fake.calls().len();
    let mut r = req("POST", "/team/stream", Some(TOKEN), Some(body2));
    r.headers_mut()
        .insert("last-event-id", "1".parse().unwrap());
    let resp = app.clone().oneshot(r).await.unwrap();
    let got = read_sse(resp, |v| v["type"] == "complete").await;
    let seqs: Vec<u64> = got.iter().filter_map(|(id, _)| *id).collect();
    assert_eq!(seqs, vec![2, 3]);
    assert_eq!(got.last().unwrap().1["result"], "done: 42");
    let calls = fake.calls()[before..].to_vec();
    assert!(
        !calls
            .iter()
            .any(|c| c.contains(r#""op":"send""#) || c.starts_with("up ")),
        "{calls:?}"
    );
}

#[test]
fn listen_addresses_are_loopback_unless_allowed() {
    assert_eq!(
        Listen::parse("127.0.0.1:8000", false),
        Ok(Listen::Tcp("127.0.0.1:8000".parse().unwrap()))
    );
    assert!(matches!(
        Listen::parse("[::1]:9", false),
        Ok(Listen::Tcp(_))
    ));
    assert!(matches!(
        Listen::parse("localhost:9", false),
        Ok(Listen::Tcp(_))
    ));
    assert!(matches!(
        Listen::parse("0.0.0.0:8000", false),
        Err(ListenError::Remote(_))
    ));
    assert!(matches!(
        Listen::parse("0.0.0.0:8000", true),
        Ok(Listen::Tcp(_))
    ));
    assert_eq!(
        Listen::parse("unix:/tmp/x.sock", false),
        Ok(Listen::Unix("/tmp/x.sock".into()))
    );
    assert!(matches!(
        Listen::parse("nonsense", false),
        Err(ListenError::Parse(_))
    ));
}

#[test]
fn session_teams_are_valid_stable_and_distinct() {
    let a = session_team("a-very-long-team-name-indeed", "alice", "s1");
    assert!(names::validate("team", &a).is_ok(), "{a}");
    assert_eq!(
        a,
        session_team("a-very-long-team-name-indeed", "alice", "s1")
    );
    assert_ne!(
        a,
        session_team("a-very-long-team-name-indeed", "alice", "s2")
    );
    assert_ne!(session_team("t", "ab", "c"), session_team("t", "a", "bc"));
}

#[tokio::test]
async fn event_streams_are_bounded_and_a_closed_one_gives_its_slot_back() {
    let fake = Arc::new(Fake::default());
    *fake.run.lock().unwrap() = Some(RunState::Running);
    let app = app(fake.clone());
    let open = || {
        app.clone()
            .oneshot(req("GET", "/v1/teams/t/events", Some(TOKEN), None))
    };
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let (status, body) = send(&app, req("GET", "/v1/teams/t/events", Some(TOKEN), None)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "limit_exceeded");
    // A client that leaves frees its slot once its stream notices (at its next poll).
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = open().await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 15 item 7: `POST /v1/teams/{team}/plans/{agent}` is a `plan_decide` as the operator,
/// with the body's approve and feedback; the daemon's refusal keeps its code.
#[tokio::test]
async fn a_plan_is_decided_over_http() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/plans/p1",
            Some(TOKEN),
            Some(r#"{"approve":false,"feedback":"add tests"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "p1");
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.contains(r#""op":"plan_decide""#)
            && c.contains(r#""agent":"p1""#)
            && c.contains(r#""approve":false"#)
            && c.contains("add tests")),
        "{calls:?}"
    );
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/plans/ghost",
            Some(TOKEN),
            Some(r#"{"approve":true}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/plans/p1",
            Some(TOKEN),
            Some(r#"{"feedback":"x"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "approve is required");
}

/// Issue 28 item 4: a worktree teammate's diff is a read (`work_diff`, with `?patch=true` the
/// patch too), `finish` a `work_finish` as the operator with the body's action, branch and
/// keep; a teammate without a branch is 404 and a conflicting merge 409 with its paths.
#[tokio::test]
async fn a_teammates_work_is_shown_and_finished_over_http() {
    let fake = Arc::new(Fake::default());
    *fake.run.lock().unwrap() = Some(RunState::Running);
    let app = app(fake.clone());
    let (status, body) = send(
        &app,
        req("GET", "/v1/teams/t/agents/w1/diff", Some(TOKEN), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["branch"], "agent-team/w1");
    assert_eq!(body["files"][0]["path"], "a.txt");
    assert_eq!(body["added"], 1);
    assert!(body.get("patch").is_none(), "{body}");
    let (status, body) = send(
        &app,
        req(
            "GET",
            "/v1/teams/t/agents/w1/diff?patch=true",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["patch"], "+x\n");
    let calls = fake.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("read t ")
            && c.contains(r#""op":"work_diff""#)
            && c.contains(r#""patch":true"#)),
        "{calls:?}"
    );
    // No worktree branch: 404, the daemon's message kept.
    let (status, body) = send(
        &app,
        req("GET", "/v1/teams/t/agents/leader/diff", Some(TOKEN), None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = send(
        &app,
        req(
            "GET",
            "/v1/teams/t/agents/w1/diff?patch=maybe",
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/agents/w1/finish",
            Some(TOKEN),
            Some(r#"{"action":"merge","into":"release","keep":true}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"], "merge");
    assert_eq!(body["into"], "release");
    assert_eq!(body["removed"], false);
    assert!(
        fake.calls().iter().any(|c| c.starts_with("call t ")
            && c.contains(r#""op":"work_finish""#)
            && c.contains(r#""agent":"w1""#)
            && c.contains(r#""action":"merge""#)
            && c.contains(r#""into":"release""#)
            && c.contains(r#""keep":true"#)),
        "{:?}",
        fake.calls()
    );
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/agents/w1/finish",
            Some(TOKEN),
            Some(r#"{"action":"discard"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"], "discard");
    assert_eq!(body["removed"], true);
    // A conflict: 409 with the message and the paths; nothing else changes.
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/agents/c1/finish",
            Some(TOKEN),
            Some(r#"{"action":"merge"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("conflict: merging agent-team/c1 into main conflicts in a.txt"),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["paths"], json!(["a.txt"]));
    // A teammate still working: 409 invalid_state.
    let (status, body) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/agents/busy/finish",
            Some(TOKEN),
            Some(r#"{"action":"merge"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "invalid_state");
    // Bodies are checked before the team is asked.
    let before = fake.calls().len();
    for bad in [
        r#"{"action":"squash"}"#,
        r#"{}"#,
        r#"{"action":"merge","force":true}"#,
    ] {
        let (status, body) = send(
            &app,
            req(
                "POST",
                "/v1/teams/t/agents/w1/finish",
                Some(TOKEN),
                Some(bad),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = send(
        &app,
        req(
            "POST",
            "/v1/teams/t/agents/w1/finish",
            None,
            Some(r#"{"action":"merge"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(fake.calls().len(), before);
}

/// The idle-session rule itself, with the clock given: a session team is stopped when nobody
/// streams it and it was last used `idle` ago or more, whether its run ended or still runs.
#[test]
fn a_quiet_session_team_is_stopped_when_nobody_streams_it_even_while_its_run_runs() {
    let fake = Arc::new(Fake::default());
    let app = crate::App {
        teams: fake.clone(),
        settings: Settings {
            token: Token::new(TOKEN),
            base_team: "svc".into(),
            variables: BTreeMap::new(),
            poll: Duration::from_millis(20),
            max_streams: 2,
            session_idle: Some(Duration::from_secs(600)),
            max_sessions: 32,
            allowed_hosts: vec![],
        },
        streams: Arc::default(),
        sessions: Arc::default(),
        hooks: None,
        limiter: Default::default(),
    };
    let idle = Duration::from_secs(600);
    let downs = || {
        fake.calls()
            .iter()
            .filter(|c| c.starts_with("down "))
            .count()
    };
    let now = std::time::Instant::now();
    let later = now + Duration::from_secs(3600);
    for (user, run) in [("alice", RunState::Running), ("carol", RunState::Finished)] {
        let team = session_team("svc", user, "s1");
        *fake.run.lock().unwrap() = Some(run);
        let before = downs();
        let open = app.sessions.try_open(&team, usize::MAX).unwrap();
        // Streamed right now: never, whatever the run.
        assert!(crate::sessions::reap(&app, later, idle).is_empty());
        drop(open);
        // Not streamed, but used just now: not yet.
        assert!(crate::sessions::reap(&app, std::time::Instant::now(), idle).is_empty());
        assert_eq!(downs(), before);
        // Quiet for an hour: stopped, once, whether its run still runs or ended.
        assert_eq!(
            crate::sessions::reap(&app, later, idle),
            vec![team.clone()],
            "{run:?}"
        );
        assert_eq!(fake.calls().last().unwrap(), &format!("down {team}"));
        assert!(crate::sessions::reap(&app, later, idle).is_empty());
        assert_eq!(downs(), before + 1);
    }
}

/// `--max-sessions`: past it a new session gets 429 with a JSON error; a session already
/// counted still streams, and a stopped (reaped) one makes room.
#[tokio::test]
async fn past_max_sessions_a_new_session_gets_429_and_known_ones_go_on() {
    let fake = Arc::new(Fake::default());
    let settings = Settings {
        token: Token::new(TOKEN),
        base_team: "svc".into(),
        variables: BTreeMap::new(),
        poll: Duration::from_millis(20),
        max_streams: 16,
        session_idle: None,
        max_sessions: 2,
        allowed_hosts: vec!["localhost".into()],
    };
    let app = router(fake.clone(), settings);
    let stream = |user: &str| {
        req(
            "POST",
            "/team/stream",
            Some(TOKEN),
            Some(&format!(
                r#"{{"user_id":"{user}","session_id":"s","message":"go"}}"#
            )),
        )
    };
    let mut held = Vec::new();
    for user in ["u1", "u2"] {
        let resp = app.clone().oneshot(stream(user)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{user}");
        held.push(resp);
    }
    let (status, body) = send(&app, stream("u3")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "limit_exceeded");
    assert_eq!(body["error"]["details"]["limit"], "max_sessions");
    assert_eq!(body["error"]["details"]["max"], 2);
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.contains(&session_team("svc", "u3", "s"))),
        "the refused session reached no team: {:?}",
        fake.calls()
    );
    // A session already counted is not new: it streams again.
    let resp = app.clone().oneshot(stream("u1")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Once nobody streams them, sessions whose daemon is not running (the fake lists only
    // `t`: someone stopped them) no longer count, even without the idle deadline.
    drop(resp);
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Only the status: a stream that is let in never ends here.
        let status = app.clone().oneshot(stream("u4")).await.unwrap().status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            std::time::Instant::now() < deadline,
            "stopped sessions kept counting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A session whose start fails is not counted (it would hold a slot until found idle).
#[tokio::test]
async fn a_session_whose_start_failed_does_not_count_against_max_sessions() {
    let fake = Arc::new(Fake::default());
    // No team yet: the session's start is an `up`, which fails.
    let failing = Arc::new(FailingTeams(fake.clone()));
    let app_failing = router(
        failing,
        Settings {
            token: Token::new(TOKEN),
            base_team: "svc".into(),
            variables: BTreeMap::new(),
            poll: Duration::from_millis(20),
            max_streams: 16,
            session_idle: None,
            max_sessions: 1,
            allowed_hosts: vec!["localhost".into()],
        },
    );
    for user in ["a", "b"] {
        let body = format!(r#"{{"user_id":"{user}","session_id":"s","message":"go"}}"#);
        let (status, body) = send(
            &app_failing,
            req("POST", "/team/stream", Some(TOKEN), Some(&body)),
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{user}: {body}");
    }
}

/// The fake, except that starting a run fails.
struct FailingTeams(Arc<Fake>);

impl Teams for FailingTeams {
    fn list(&self) -> Result<Vec<TeamSummary>, ErrorBody> {
        self.0.list()
    }
    fn read(&self, team: &str, req: Request) -> Result<Reply, ErrorBody> {
        self.0.read(team, req)
    }
    fn call(&self, team: &str, req: Request) -> Result<Reply, ErrorBody> {
        self.0.call(team, req)
    }
    fn up(
        &self,
        _team: &str,
        _goal: Option<String>,
        _variables: &BTreeMap<String, String>,
        _secrets: &BTreeMap<String, String>,
    ) -> Result<u64, ErrorBody> {
        Err(ErrorBody::new(ErrorCode::Internal, "cannot start"))
    }
    fn down(&self, team: &str) -> Result<bool, ErrorBody> {
        self.0.down(team)
    }
    fn follow(&self, team: &str, since: u64) -> Result<Box<dyn Follow>, ErrorBody> {
        self.0.follow(team, since)
    }
}

/// Every answer (the board's page, the API's JSON, errors before the token check) says no
/// site may frame it.
#[tokio::test]
async fn every_answer_forbids_framing() {
    let app = app(Arc::new(Fake::default()));
    for (uri, token) in [
        ("/", None),
        ("/v1/teams", Some(TOKEN)),
        ("/v1/teams", None),
        ("/no/such", Some(TOKEN)),
    ] {
        let resp = app
            .clone()
            .oneshot(req("GET", uri, token, None))
            .await
            .unwrap();
        let h = resp.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{uri}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
    }
    // The board keeps its own policy (its inline script), with the same frame-ancestors.
    let resp = app
        .clone()
        .oneshot(req("GET", "/", None, None))
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'unsafe-inline'"), "{csp}");
}

/// DNS rebinding: a request naming another host is refused before the token check, on every
/// route (the board's page too); the listen address, the loopback names and `--allow-host`
/// names pass, whatever their port or case.
#[tokio::test]
async fn a_host_outside_the_allow_list_gets_403_json_and_reaches_nothing() {
    let fake = Arc::new(Fake::default());
    let app = router(
        fake.clone(),
        Settings {
            token: Token::new(TOKEN),
            base_team: "svc".into(),
            variables: BTreeMap::new(),
            poll: Duration::from_millis(20),
            max_streams: 2,
            session_idle: None,
            max_sessions: 32,
            allowed_hosts: allowed_hosts(
                &Listen::parse("127.0.0.2:8000", false).unwrap(),
                &["board.example.com".into()],
            )
            .unwrap(),
        },
    );
    let with_host = |uri: &str, host: Option<&str>| {
        let mut b = HttpRequest::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Body::empty()).unwrap()
    };
    for host in [
        "evil.example:8000",
        "127.0.0.1.evil.example",
        "board.example.org",
    ] {
        for uri in ["/", "/v1/teams", "/v1/teams/t/agents"] {
            let (status, body) = send(&app, with_host(uri, Some(host))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{host} {uri}");
            assert_eq!(body["error"]["code"], "permission_denied", "{body}");
        }
    }
    let (status, body) = send(&app, with_host("/v1/teams", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    for host in [
        "localhost:8000",
        "LOCALHOST",
        "127.0.0.1:8000",
        "[::1]:8000",
        "127.0.0.2:8000",
        "Board.Example.com:443",
    ] {
        let (status, body) = send(&app, with_host("/v1/teams", Some(host))).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
}

/// A path number that is not one (`/tasks/abc`, `/permissions/-1`) is a JSON `bad_request`,
/// not axum's plain-text rejection.
#[tokio::test]
async fn bad_numbers_in_the_path_are_json_errors() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    for (method, uri, body) in [
        ("GET", "/v1/teams/t/tasks/abc", None),
        ("GET", "/v1/teams/t/tasks/99999999999999999999999", None),
        (
            "POST",
            "/v1/teams/t/permissions/-1",
            Some(r#"{"decision":"allow"}"#),
        ),
    ] {
        let resp = app
            .clone()
            .oneshot(req(method, uri, Some(TOKEN), body))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{uri}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "bad_request", "{uri}: {v}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

/// Wired into the server: a session whose run completed and whose stream closed has its
/// team stopped after `session_idle`.
#[tokio::test]
async fn serve_stops_an_idle_session_team_after_its_run() {
    let fake = Arc::new(Fake::default());
    let app = router(
        fake.clone(),
        Settings {
            token: Token::new(TOKEN),
            base_team: "svc".into(),
            variables: BTreeMap::new(),
            poll: Duration::from_millis(20),
            max_streams: 2,
            session_idle: Some(Duration::from_millis(50)),
            max_sessions: 32,
            allowed_hosts: vec!["localhost".into()],
        },
    );
    let team = session_team("svc", "bob", "s9");
    let body = r#"{"user_id":"bob","session_id":"s9","message":"go"}"#;
    let resp = app
        .clone()
        .oneshot(req("POST", "/team/stream", Some(TOKEN), Some(body)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let f2 = fake.clone();
    tokio::task::spawn_blocking(move || {
        f2.push(
            "leader",
            Event::RunFinished {
                answer: "done".into(),
                success: true,
            },
        );
        *f2.run.lock().unwrap() = Some(RunState::Finished);
    });
    let got = read_sse(resp, |v| v["type"] == "complete").await;
    assert_eq!(got.last().unwrap().1["type"], "complete");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !fake.calls().contains(&format!("down {team}")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session team was not stopped: {:?}",
            fake.calls()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Serves `app` on a loopback port with `limits`; the server task ends with the test.
async fn listening(app: Router, limits: ConnLimits) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(crate::serve(l, app, limits));
    addr
}

/// One request on `s`, the answer's status line and body (the connection stays open).
async fn get(s: &mut tokio::net::TcpStream, token: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!(
            "GET /v1/teams HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return (head.lines().next().unwrap().to_string(), body.to_string());
            }
        }
    }
}

/// Whether the server closed `s` (reads end) within 20 s.
async fn closed_by_server(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// A connection that sends half a request head, or nothing, is closed at the header-read
/// timeout; one that is idle between requests too.
#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed_at_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let addr = listening(
        app(Arc::new(Fake::default())),
        ConnLimits {
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(600),
            max_connections: 64,
        },
    )
    .await;
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /v1/teams HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, _) = get(&mut kept, TOKEN).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(closed_by_server(&mut half).await, "half-sent head");
    assert!(closed_by_server(&mut silent).await, "nothing sent");
    assert!(closed_by_server(&mut kept).await, "idle after a request");
}

/// A request body that stops coming is cut at the idle timeout.
#[tokio::test]
async fn a_stalled_request_body_is_closed_at_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let addr = listening(
        app(Arc::new(Fake::default())),
        ConnLimits {
            header_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_millis(200),
            max_connections: 64,
        },
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/teams/t/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer \
             {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"to\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert!(closed_by_server(&mut s).await);
}

/// At the cap, the oldest connections that never made an authorised request make room: idle
/// and half-sent ones cannot keep an authorised client out, and connections that made one are
/// kept. When every slot is authorised, a new connection gets 503 JSON.
#[tokio::test]
async fn at_the_connection_cap_unauthorised_connections_make_room_oldest_first() {
    use tokio::io::AsyncWriteExt;
    let limits = ConnLimits {
        header_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        max_connections: 4,
    };
    let addr = listening(app(Arc::new(Fake::default())), limits).await;
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, _) = get(&mut first, TOKEN).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // A request with a wrong token does not count as authorised.
    let mut wrong = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, _) = get(&mut wrong, "wrong-token-0123456789").await;
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let mut flood = Vec::new();
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        flood.push(s);
    }
    let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, _) = get(&mut late, TOKEN).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The first client, authorised, was kept; the one with the wrong token was pushed out.
    let (status, _) = get(&mut first, TOKEN).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(closed_by_server(&mut wrong).await);
    assert!(closed_by_server(&mut flood[0]).await);
    // Fill every slot with authorised clients: the next one is told and closed.
    let mut more = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (status, _) = get(&mut s, TOKEN).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        more.push(s);
    }
    let mut refused = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(20), refused.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["details"]["limit"], "max_connections");
}

/// A request head over 64 KiB is refused (431) instead of buffered.
#[tokio::test]
async fn a_request_head_over_64_kib_gets_431() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = listening(app(Arc::new(Fake::default())), ConnLimits::default()).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(crate::conns::MAX_HEAD_BYTES + 1024);
    let _ = s
        .write_all(format!("GET /v1/teams HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: {big}").as_bytes())
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// The HTTP routes' pager stops at the page that says it is the last (`more: false`) instead
/// of asking for the empty one after it; an older daemon's pages (no `more`) are read until
/// one comes back empty. Fails with the pager ignoring `more` (2 asked where 1 is enough).
#[test]
fn the_http_pager_stops_at_the_page_that_says_it_is_the_last() {
    let task = |id: u64| -> Task {
        serde_json::from_value(json!({
            "id": id, "title": "t", "status": "pending", "created_by": "operator",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    };
    // (tasks read, pages asked) for these pages, each saying `more` as given.
    let listed = |pages: Vec<Vec<u64>>, more: Option<bool>| {
        let asked = std::cell::Cell::new(0);
        let tasks = crate::rest::all_pages(
            |_after| {
                let page = pages.get(asked.get()).cloned().unwrap_or_default();
                asked.set(asked.get() + 1);
                Ok(Reply::Tasks {
                    tasks: page.into_iter().map(task).collect(),
                    more,
                })
            },
            |r| match r {
                Reply::Tasks { tasks, .. } => Ok(tasks),
                r => Err(crate::rest::unexpected(r)),
            },
            |t| t.id,
        )
        .unwrap();
        (tasks.len(), asked.get())
    };
    assert_eq!(listed(vec![vec![1, 2]], Some(false)), (2, 1));
    assert_eq!(listed(vec![vec![1, 2]], None), (2, 2));
    assert_eq!(listed(vec![vec![1, 2], vec![3]], Some(true)), (3, 3));
    // A reply of another kind is an error, not an empty listing.
    let wrong = crate::rest::all_pages(
        |_| Ok(Reply::Done),
        |r| match r {
            Reply::Tasks { tasks, .. } => Ok(tasks),
            r => Err(crate::rest::unexpected(r)),
        },
        |t: &Task| t.id,
    );
    assert!(wrong.is_err());
}
