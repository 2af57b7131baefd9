//! OpenTelemetry export (docs/TELEMETRY.md): a team run against the mock model, its daemon
//! exporting to a local OTLP/HTTP receiver, gives one trace (run → the leader's turns → its
//! model calls and tool calls) with the GenAI attributes; a dead endpoint changes nothing but
//! dropped spans, counted.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_telemetry::sink::{Received, Sink};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use std::time::Duration;

/// A leader that writes a file (1000 tokens in, 50 out, 400 cached) and finishes (2000, 30,
/// 1500), its team file sending telemetry to `endpoint`.
fn team(endpoint: &str) -> (MockModel, Sandbox) {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("write_file", json!({"path": "a.txt", "content": "x"}))])
                .with_usage(1000, 50, 400),
            Step::tools(&[("finish_team", json!({"answer": "traced"}))]).with_usage(2000, 30, 1500),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"ot\"\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n[roles.leader]\ntools = [\"write_file\"]\n",
        mock.base_url()
    ));
    (mock, sb)
}

fn run(sb: &Sandbox) {
    let out = sb.run(&["run", "--backend", "process", "--timeout", "60", "--json"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spans(got: &[Received]) -> Vec<Span> {
    got.iter()
        .filter(|r| r.path == "/v1/traces")
        .flat_map(|r| {
            ExportTraceServiceRequest::decode(r.body.as_slice())
                .unwrap()
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

fn attr(s: &Span, key: &str) -> Option<Any> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

fn int(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key) {
        Some(Any::IntValue(i)) => Some(i),
        _ => None,
    }
}

#[test]
fn a_runs_trace_reaches_an_otlp_receiver_with_its_span_tree_and_genai_attributes() {
    let sink = Sink::start(true).unwrap();
    let (mock, sb) = team(&sink.endpoint());
    run(&sb);
    assert_eq!(mock.requests("leader").len(), 2);
    // The daemon exports the run's spans as it ends (the run's end asks for an export).
    let ended = |got: &[Received]| spans(got).iter().any(|s| s.name == "run ot");
    assert!(
        sink.wait_for(Duration::from_secs(30), ended),
        "no run span: {:?}",
        spans(&sink.received())
            .iter()
            .map(|s| &s.name)
            .collect::<Vec<_>>()
    );
    let all = spans(&sink.received());
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    let run = all.iter().find(|s| s.name == "run ot").unwrap();
    assert!(run.parent_span_id.is_empty(), "the run is the root");
    assert_eq!(
        attr(run, "agent_team.run.success"),
        Some(Any::BoolValue(true))
    );
    let in_run: Vec<&Span> = all.iter().filter(|s| s.trace_id == run.trace_id).collect();
    let turns: Vec<&Span> = in_run
        .iter()
        .copied()
        .filter(|s| s.name == "invoke_agent leader")
        .collect();
    assert!(!turns.is_empty(), "{names:?}");
    for t in &turns {
        assert_eq!(t.parent_span_id, run.span_id, "a turn is the run's child");
        assert_eq!(
            attr(t, "gen_ai.agent.name"),
            Some(Any::StringValue("leader".into()))
        );
    }
    let in_a_turn = |s: &Span| turns.iter().any(|t| t.span_id == s.parent_span_id);
    let calls: Vec<&Span> = in_run
        .iter()
        .copied()
        .filter(|s| s.name == "chat mock-1")
        .collect();
    assert_eq!(calls.len(), 2, "{names:?}");
    let mut figures: Vec<(i64, i64, i64)> = calls
        .iter()
        .map(|s| {
            assert!(in_a_turn(s), "a model call is a turn's child");
            assert_eq!(
                attr(s, "gen_ai.request.model"),
                Some(Any::StringValue("mock-1".into()))
            );
            assert!(
                matches!(
                    attr(s, "gen_ai.response.finish_reasons"),
                    Some(Any::ArrayValue(_))
                ),
                "{s:?}"
            );
            (
                int(s, "gen_ai.usage.input_tokens").unwrap(),
                int(s, "gen_ai.usage.output_tokens").unwrap(),
                int(s, "gen_ai.usage.cache_read.input_tokens").unwrap(),
            )
        })
        .collect();
    figures.sort();
    assert_eq!(figures, vec![(1000, 50, 400), (2000, 30, 1500)]);
    let tool = in_run
        .iter()
        .find(|s| s.name == "execute_tool write_file")
        .unwrap_or_else(|| panic!("no tool span: {names:?}"));
    assert!(in_a_turn(tool), "a tool call is a turn's child");
    assert_eq!(
        attr(tool, "gen_ai.tool.name"),
        Some(Any::StringValue("write_file".into()))
    );
    // Nothing was dropped; `doctor` says so.
    let status: Value =
        serde_json::from_slice(&std::fs::read(sb.team("ot").dir.join("telemetry.json")).unwrap())
            .unwrap();
    assert_eq!(status["spans_dropped"], json!(0), "{status}");
    assert!(status["spans_exported"].as_u64().unwrap() >= 5, "{status}");
    sb.doctor_check("telemetry").unwrap();
}

#[test]
fn a_dead_endpoint_changes_nothing_but_dropped_spans_counted() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mock, sb) = team(&format!("http://127.0.0.1:{port}"));
    run(&sb);
    assert_eq!(mock.requests("leader").len(), 2);
    let status: Value =
        serde_json::from_slice(&std::fs::read(sb.team("ot").dir.join("telemetry.json")).unwrap())
            .unwrap();
    assert_eq!(status["spans_exported"], json!(0), "{status}");
    assert!(status["spans_dropped"].as_u64().unwrap() >= 5, "{status}");
    assert!(status["last_error"].is_string(), "{status}");
    let said = sb.doctor_check("telemetry").unwrap_err();
    assert!(said.contains("dropped"), "{said}");
}
