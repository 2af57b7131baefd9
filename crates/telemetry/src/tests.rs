use super::*;
use agent_team_protocol::{AgentStatus, PermRequest, PermStatus, UsageFigures};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span as PSpan;
use prost::Message as _;

fn env(seq: u64, ms: u64, agent: &str, event: Event) -> Envelope {
    Envelope {
        seq,
        ts: Timestamp(1_700_000_000_000 + ms),
        team_id: "t".into(),
        agent_id: agent.into(),
        role_name: agent.into(),
        event,
    }
}

fn usage(input: u64, output: u64, cached: u64) -> Event {
    let u = UsageFigures {
        input_tokens: input,
        output_tokens: output,
        cached_tokens: cached,
        requests: 1,
        cost_usd: Some(0.01),
    };
    Event::UsageUpdated {
        model: "mock-1".into(),
        usage: u.clone(),
        total: u,
    }
}

fn perm(status: PermStatus) -> PermRequest {
    PermRequest {
        id: 7,
        agent: "leader".into(),
        tool: "bash".into(),
        input: "ls".into(),
        reason: String::new(),
        ts: Timestamp(1_700_000_000_000 + 40),
        status,
        decision: None,
    }
}

/// A run: the leader's turn with a model call that asks for a tool (which needs a
/// permission), the tool's result, a last model call, idle, the end.
fn a_run() -> Vec<Envelope> {
    let status = |s| Event::AgentStatus {
        status: s,
        incarnation: 1,
        detail: None,
    };
    vec![
        env(
            1,
            0,
            "operator",
            Event::RunStarted {
                goal: Some("g".into()),
            },
        ),
        env(2, 10, "leader", status(AgentStatus::Running)),
        env(
            3,
            20,
            "leader",
            Event::TextMessageContent { delta: "x".into() },
        ),
        env(4, 30, "leader", usage(100, 10, 40)),
        env(
            5,
            35,
            "leader",
            Event::ToolCallStart {
                tool_call_id: "c1".into(),
                tool_name: "bash".into(),
                args: serde_json::json!({"command": "ls"}),
            },
        ),
        env(
            6,
            40,
            "leader",
            Event::PermissionRequested {
                request: perm(PermStatus::Pending),
            },
        ),
        env(
            7,
            90,
            "operator",
            Event::PermissionDecided {
                request: perm(PermStatus::Allowed),
            },
        ),
        env(
            8,
            95,
            "leader",
            Event::ToolCallResult {
                tool_call_id: "c1".into(),
                content: "a.txt".into(),
                is_error: false,
            },
        ),
        env(9, 120, "leader", usage(200, 20, 150)),
        env(10, 125, "leader", status(AgentStatus::Idle)),
        env(
            11,
            130,
            "leader",
            Event::RunFinished {
                answer: "done".into(),
                success: true,
            },
        ),
    ]
}

fn spans_of(got: &[sink::Received]) -> Vec<PSpan> {
    got.iter()
        .filter(|r| r.path == "/v1/traces")
        .flat_map(|r| {
            ExportTraceServiceRequest::decode(r.body.as_slice())
                .expect("an OTLP trace request")
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

fn attr(s: &PSpan, key: &str) -> Option<Any> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

#[test]
fn settings_read_the_standard_variables_and_the_team_file_wins() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let off = Settings::from_vars(vars(&[]));
    assert!(!off.is_on());
    assert_eq!(off.service_name, "agent-team");
    let env = Settings::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
        ("OTEL_SERVICE_NAME", "svc"),
    ]));
    assert_eq!(env.traces_url().as_deref(), Some("http://t:1/x"));
    assert_eq!(
        env.metrics_url().as_deref(),
        Some("http://c:4318/v1/metrics")
    );
    assert_eq!(env.service_name, "svc");
    let team = env.clone().with_endpoint(Some("http://team:4318"));
    assert_eq!(
        team.traces_url().as_deref(),
        Some("http://team:4318/v1/traces")
    );
    let disabled = Settings::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_SDK_DISABLED", "true"),
    ]))
    .with_endpoint(Some("http://team:4318"));
    assert!(!disabled.is_on());
    assert!(matches!(
        Exporter::start(
            &Settings::default().with_endpoint(Some("c:4318")),
            "t",
            None
        ),
        Err(TelemetryError::BadEndpoint(_))
    ));
}

#[test]
fn a_run_becomes_a_trace_of_turns_model_calls_tool_calls_and_a_permission() {
    let sink = sink::Sink::start(true).unwrap();
    let settings = Settings::default().with_endpoint(Some(&sink.endpoint()));
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("telemetry.json");
    let ex = Exporter::start(&settings, "t", Some(status.clone()))
        .unwrap()
        .unwrap();
    for e in a_run() {
        ex.event(&e);
    }
    let ex: Box<dyn Observer> = Box::new(ex);
    let counts = ex.close(Duration::from_secs(30));
    assert_eq!(counts.spans_dropped, 0);
    assert_eq!(counts.spans_exported, 6, "{counts:?}");
    let spans = spans_of(&sink.received());
    let by_name = |n: &str| {
        spans.iter().find(|s| s.name == n).unwrap_or_else(|| {
            panic!(
                "no span {n} in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let run = by_name("run t");
    let turn = by_name("invoke_agent leader");
    let tool = by_name("execute_tool bash");
    let permission = by_name("permission bash");
    let calls: Vec<&PSpan> = spans.iter().filter(|s| s.name == "chat mock-1").collect();
    assert_eq!(calls.len(), 2);
    assert!(run.parent_span_id.is_empty());
    assert_eq!(turn.parent_span_id, run.span_id);
    assert_eq!(tool.parent_span_id, turn.span_id);
    assert_eq!(permission.parent_span_id, tool.span_id);
    for s in &spans {
        assert_eq!(s.trace_id, run.trace_id, "one trace");
    }
    let first = calls
        .iter()
        .find(|s| attr(s, "gen_ai.usage.input_tokens") == Some(Any::IntValue(100)))
        .unwrap();
    assert_eq!(first.parent_span_id, turn.span_id);
    assert_eq!(
        attr(first, "gen_ai.request.model"),
        Some(Any::StringValue("mock-1".into()))
    );
    assert_eq!(
        attr(first, "gen_ai.usage.output_tokens"),
        Some(Any::IntValue(10))
    );
    assert_eq!(
        attr(first, "gen_ai.usage.cache_read.input_tokens"),
        Some(Any::IntValue(40))
    );
    assert_eq!(
        attr(first, "gen_ai.agent.name"),
        Some(Any::StringValue("leader".into()))
    );
    let reasons = |s: &PSpan| match attr(s, "gen_ai.response.finish_reasons") {
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| v.value.clone())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reasons(first), vec![Any::StringValue("tool_calls".into())]);
    let last = calls
        .iter()
        .find(|s| attr(s, "gen_ai.usage.input_tokens") == Some(Any::IntValue(200)))
        .unwrap();
    assert_eq!(reasons(last), vec![Any::StringValue("stop".into())]);
    // The model call runs from the tool's result to its usage; times are the events'.
    assert_eq!(
        last.end_time_unix_nano - last.start_time_unix_nano,
        25_000_000
    );
    assert_eq!(
        attr(permission, "agent_team.permission.wait_ms"),
        Some(Any::IntValue(50))
    );
    assert_eq!(
        attr(permission, "agent_team.permission.decision"),
        Some(Any::StringValue("allowed".into()))
    );
    assert_eq!(
        permission.end_time_unix_nano - permission.start_time_unix_nano,
        50_000_000
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(written["spans_exported"], 6);
    assert_eq!(written["spans_dropped"], 0);
}

#[test]
fn a_dead_endpoint_costs_only_dropped_spans_counted() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = Settings::default().with_endpoint(Some(&format!("http://127.0.0.1:{port}")));
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("telemetry.json");
    let ex = Exporter::start(&settings, "t", Some(status.clone()))
        .unwrap()
        .unwrap();
    for e in a_run() {
        ex.event(&e);
    }
    let counts = (Box::new(ex) as Box<dyn Observer>).close(Duration::from_secs(30));
    assert_eq!(counts.spans_exported, 0);
    assert_eq!(counts.spans_dropped, 6, "{counts:?}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(written["spans_dropped"], 6);
    assert!(written["last_error"].is_string(), "{written}");
}
