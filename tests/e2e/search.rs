//! `web_search` (issue 31 item 6): model teammates search through the team file's `[search]`
//! against a fake SearXNG on loopback. The call is judged like `web_fetch`: asked unless the
//! role's policy allows it, and a denied call reaches no search service.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// What a fake SearXNG's results carry, so a test can tell they reached a model.
const MARK: &str = "FAKE-SEARXNG-RESULT";

/// A SearXNG stand-in on 127.0.0.1: answers `GET /search?q=…&format=json` with one result
/// naming the query, and records every query it was asked.
struct FakeSearxng {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
}

impl FakeSearxng {
    fn start() -> FakeSearxng {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = queries.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let target = first.split(' ').nth(1).unwrap_or("/");
                let u = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
                let q: String = u
                    .query_pairs()
                    .find(|(k, _)| k == "q")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let json_asked = u.query_pairs().any(|(k, v)| k == "format" && v == "json");
                seen.lock().unwrap().push(q.clone());
                let (status, body) = if u.path() == "/search" && json_asked {
                    (
                        "200 OK",
                        json!({"query": q, "results": [{
                            "title": format!("{MARK} about {q}"),
                            "url": "https://example.org/found",
                            "content": format!("what the web says about {q}"),
                        }]})
                        .to_string(),
                    )
                } else {
                    ("404 Not Found", "{}".to_string())
                };
                let _ = (&s).write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        FakeSearxng { url, queries }
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

/// A team `mt` of model agents on `mock`, searching through `search`, with `extra` appended.
fn sandbox_for(mock: &MockModel, search: &FakeSearxng, extra: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"mt\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n[search]\nprovider = \"searxng\"\nurl = \"{}\"\n{extra}",
        mock.base_url(),
        search.url
    ));
    sb
}

/// A leader that starts `members` (name, role) and finishes once each has said `NAME done`.
fn leader_starting(mock: &MockModel, members: &[(&str, &str)]) {
    let spawns: Vec<(&str, serde_json::Value)> = members
        .iter()
        .map(|(name, role)| ("spawn_teammate", json!({"role": role, "name": name})))
        .collect();
    let dones: Vec<String> = members.iter().map(|(n, _)| format!("{n} done")).collect();
    let dones: Vec<&str> = dones.iter().map(String::as_str).collect();
    mock.script(
        "leader",
        vec![
            Step::tools(&spawns),
            Step::Text("Waiting for the searches.".into()),
            Step::until(
                &dones,
                Step::tools(&[(
                    "finish_team",
                    json!({"answer": "searches done", "force": true}),
                )]),
                "Still waiting.",
            ),
        ],
    );
}

/// A teammate `name` that searches for `query` once, then reports.
fn searcher(mock: &MockModel, name: &str, query: &str) {
    mock.script(
        name,
        vec![
            Step::tools(&[("web_search", json!({"query": query, "count": 3}))]),
            Step::tools(&[(
                "send_message",
                json!({"to": "leader", "text": format!("{name} done")}),
            )]),
            Step::Text("Reported.".into()),
        ],
    );
}

/// Whether any request `mock` received for `agent` contains `needle`.
fn model_saw(mock: &MockModel, agent: &str, needle: &str) -> bool {
    mock.requests(agent)
        .iter()
        .any(|r| r.to_string().contains(needle))
}

/// A worker's `web_search` is asked (nothing reaches the search service before it is
/// approved) and, approved, its results reach the model; a role whose `permissions` allow
/// `web_search` searches without a request.
#[test]
fn web_search_is_asked_unless_allowed_and_its_results_reach_the_model() {
    let search = FakeSearxng::start();
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    leader_starting(&mock, &[("b1", "worker"), ("r1", "researcher")]);
    searcher(&mock, "b1", "asked query");
    searcher(&mock, "r1", "allowed query");
    let mut sb = sandbox_for(
        &mock,
        &search,
        "[roles.researcher]\npermissions = { web_search = \"allow\" }\n",
    );
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    wait_for("b1's web_search request", T, || {
        sb.pending_from("mt", "b1").is_some()
    });
    let req = sb.pending_from("mt", "b1").unwrap();
    assert_eq!(
        (req.tool.as_str(), req.input.as_str()),
        ("web_search", "asked query")
    );
    assert!(
        !search.queries().iter().any(|q| q == "asked query"),
        "the search ran before it was approved: {:?}",
        search.queries()
    );
    sb.ok(&["--team", "mt", "approve", &req.id.to_string()]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    // Both searches reached the service, each once, and each result its model, numbered.
    let mut queries = search.queries();
    queries.sort();
    assert_eq!(queries, ["allowed query", "asked query"]);
    for (agent, q) in [("b1", "asked query"), ("r1", "allowed query")] {
        let line = format!("1. {MARK} about {q} — https://example.org/found");
        assert!(
            model_saw(&mock, agent, &line),
            "{agent}: {:?}",
            mock.requests(agent)
        );
        assert!(model_saw(
            &mock,
            agent,
            &format!("what the web says about {q}")
        ));
    }
    // r1's policy allowed it: no request was raised for it.
    let ev = sb.events_of("mt");
    let requested: Vec<&str> = ev
        .iter()
        .filter_map(|e| match &e.event {
            Event::PermissionRequested { request } => Some(request.agent.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(requested, ["b1"], "{requested:?}");
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

/// The attack: a prompt-driven teammate without the permission searches (here, to send the
/// team's business to a search service); the operator denies it. The model gets the denial,
/// no result, and the search service never hears of the query.
#[test]
fn a_denied_web_search_gets_no_result_and_reaches_no_search_service() {
    let search = FakeSearxng::start();
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    leader_starting(&mock, &[("b1", "worker")]);
    searcher(&mock, "b1", "internal codename leak");
    let mut sb = sandbox_for(&mock, &search, "");
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    wait_for("b1's web_search request", T, || {
        sb.pending_from("mt", "b1").is_some()
    });
    let req = sb.pending_from("mt", "b1").unwrap();
    assert_eq!(req.tool, "web_search");
    sb.ok(&[
        "--team",
        "mt",
        "deny",
        &req.id.to_string(),
        "--reason",
        "no searching",
    ]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(model_saw(&mock, "b1", "permission denied: no searching"));
    assert!(!model_saw(&mock, "b1", MARK), "{:?}", mock.requests("b1"));
    assert!(
        search.queries().is_empty(),
        "the search service was asked: {:?}",
        search.queries()
    );
    let ev = sb.events_of("mt");
    assert!(ev.iter().any(|e| matches!(&e.event,
        Event::ToolCallResult { content, is_error: true, .. } if content.contains("permission denied"))));
    assert!(!ev.iter().any(|e| e.agent_id == "b1"
        && matches!(&e.event, Event::ToolCallResult { content, .. } if content.contains(MARK))));
}
