//! Usage accounting, budgets and notifications against the mock model server, which reports
//! the token counts each script step gives (both wire formats, streamed and whole).

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, MockUsage, Step, Wire};
use agent_team_protocol::*;
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn sandbox_for(mock: &MockModel, provider: &str, extra: &str) -> Sandbox {
    sandbox_with(mock, provider, "", extra)
}

/// A team file with `top` at its top level and `extra` after `[defaults]`.
fn sandbox_with(mock: &MockModel, provider: &str, top: &str, extra: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"mt\"\n{top}[defaults]\nprovider = \"{provider}\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n{extra}",
        mock.base_url()
    ));
    sb
}

/// The event log of the running team.
fn live_events(sb: &Sandbox) -> Vec<Envelope> {
    sb.operator("mt").all_events(0).unwrap()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// $3 / $15 / $0.30 / $3.75 (cache write) per million tokens, so every cost below is exact.
const PRICES: &str = "[prices]\n\"mock-1\" = { input = 3.0, output = 15.0, cached_input = 0.3, cache_write = 3.75 }\n";

/// The cost at [`PRICES`] in dollars, computed the way the daemon sums it (whole picodollars).
fn cost(input: u64, output: u64, cached: u64) -> f64 {
    cost_with_writes(input, output, cached, 0)
}

/// [`cost`] with `written` of `input` written to the prompt cache (Anthropic).
fn cost_with_writes(input: u64, output: u64, cached: u64, written: u64) -> f64 {
    ((input - cached - written) * 3_000_000
        + cached * 300_000
        + written * 3_750_000
        + output * 15_000_000) as f64
        / 1e12
}

#[test]
fn tokens_and_cost_per_agent_are_exact_in_both_apis_streamed_and_not() {
    for (wire, provider, stream) in [
        (Wire::OpenAi, "openai", false),
        (Wire::OpenAi, "openai", true),
        (Wire::Anthropic, "anthropic", false),
        (Wire::Anthropic, "anthropic", true),
    ] {
        let at = format!("{provider} stream={stream}");
        let mock = MockModel::start_background(wire).unwrap();
        // Anthropic's second answer also writes the prompt cache: those tokens are input too.
        let cache_write = if wire == Wire::Anthropic { 200 } else { 0 };
        mock.script(
            "leader",
            vec![
                Step::tools(&[("write_file", json!({"path": "a.txt", "content": "x"}))])
                    .with_usage(1000, 50, 400),
                Step::WithUsage(
                    MockUsage {
                        input: 2000,
                        output: 30,
                        cached: 1500,
                        cache_write,
                    },
                    Box::new(Step::tools(&[(
                        "finish_team",
                        json!({"answer": "counted"}),
                    )])),
                ),
            ],
        );
        let sb = sandbox_for(
            &mock,
            provider,
            &format!("stream = {stream}\n[roles.leader]\ntools = [\"write_file\"]\n{PRICES}"),
        );
        let out = sb.run(&["run", "--backend", "process", "--timeout", "60", "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{at}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(mock.requests("leader").len(), 2, "{at}");
        // Cache writes are charged at the write price.
        let want_cost = cost(1000, 50, 400) + cost_with_writes(2000, 30, 1500, cache_write);
        let want_cost = (want_cost * 1e12).round() / 1e12;
        let check = |u: &Value, what: &str| {
            assert_eq!(u["input_tokens"], json!(3000), "{at} {what}: {u}");
            assert_eq!(u["output_tokens"], json!(80), "{at} {what}: {u}");
            assert_eq!(u["cached_tokens"], json!(1900), "{at} {what}: {u}");
            assert_eq!(u["requests"], json!(2), "{at} {what}: {u}");
            assert_eq!(u["cost_usd"].as_f64(), Some(want_cost), "{at} {what}: {u}");
        };
        // The run's result object carries the report.
        let result = json_of(stdout.trim());
        assert_eq!(result["type"], json!("complete"), "{at}");
        check(&result["usage"]["run"], "run result: run");
        check(&result["usage"]["agents"][0], "run result: leader");
        // `usage --json` reads the stopped team's stored figures: per agent, role and total.
        let report = json_of(&sb.ok(&["--team", "mt", "usage", "--json"]));
        let agents = report["agents"].as_array().unwrap();
        assert_eq!(agents.len(), 1, "{at}: {report}");
        assert_eq!(agents[0]["name"], json!("leader"));
        assert_eq!(agents[0]["role"], json!("leader"));
        check(&agents[0], "usage: leader");
        check(&agents[0]["models"][0], "usage: leader's model");
        assert_eq!(agents[0]["models"][0]["name"], json!("mock-1"));
        check(&report["roles"][0], "usage: role");
        check(&report["total"], "usage: total");
        // `ps` shows them too.
        let ps = json_of(&sb.ok(&["--team", "mt", "ps", "--json"]));
        check(&ps[0]["usage"], "ps --json");
        let table = sb.ok(&["--team", "mt", "ps"]);
        assert!(table.lines().next().unwrap().contains("TOKENS"), "{table}");
        assert!(table.lines().next().unwrap().contains("COST"), "{table}");
        let leader_row = table.lines().find(|l| l.starts_with("leader")).unwrap();
        assert!(
            leader_row.contains("3080") && leader_row.contains(&format!("${want_cost:.4}")),
            "{at}: {table}"
        );
        // One USAGE_UPDATED per model response, with that response's figures.
        let updates: Vec<(String, UsageFigures)> = sb
            .events_of("mt")
            .into_iter()
            .filter_map(|e| match e.event {
                Event::UsageUpdated { model, usage, .. } if e.agent_id == "leader" => {
                    Some((model, usage))
                }
                _ => None,
            })
            .collect();
        assert_eq!(updates.len(), 2, "{at}: {updates:?}");
        assert_eq!(updates[0].0, "mock-1");
        assert_eq!(
            (updates[1].1.input_tokens, updates[1].1.cached_tokens),
            (2000, 1500),
            "{at}"
        );
    }
}

#[test]
fn a_model_without_a_price_counts_tokens_and_shows_no_cost() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![Step::tools(&[("finish_team", json!({"answer": "ok"}))]).with_usage(10, 5, 0)],
    );
    let sb = sandbox_for(&mock, "openai", "");
    sb.ok(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let report = json_of(&sb.ok(&["--team", "mt", "usage", "--json"]));
    assert_eq!(report["total"]["input_tokens"], json!(10));
    assert!(report["total"].get("cost_usd").is_none(), "{report}");
    let table = sb.ok(&["--team", "mt", "ps"]);
    let row = table.lines().find(|l| l.starts_with("leader")).unwrap();
    assert!(
        row.contains(" 15 ") && row.trim_end().ends_with(" -"),
        "{table}"
    );
}

/// The leader's inbox, read and unread.
fn leader_inbox(sb: &Sandbox) -> Vec<Message> {
    let v = json_of(&sb.ok(&["--team", "mt", "inbox", "leader", "--json"]));
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_role_budget_stops_its_agent_before_the_next_request_until_raised_and_restarted() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("spawn_teammate", json!({"role": "worker", "name": "b1"}))])
                .with_usage(10, 10, 0),
            Step::Until {
                needles: vec!["b1 is back".into()],
                then: Box::new(Step::tools(&[(
                    "finish_team",
                    json!({"answer": "b1 came back"}),
                )])),
                meanwhile: Box::new(Step::Text("waiting".into())),
            },
        ],
    );
    mock.script(
        "b1",
        vec![
            // 800 of 1000 tokens: the warning.
            Step::tools(&[("list_tasks", json!({}))]).with_usage(700, 100, 0),
            // 1000 of 1000: spent. b1 must not ask the model again.
            Step::tools(&[("list_tasks", json!({}))]).with_usage(150, 50, 0),
            // After the budget is raised and b1 restarted.
            Step::tools(&[(
                "send_message",
                json!({"to": "leader", "text": "b1 is back"}),
            )])
            .with_usage(10, 10, 0),
            Step::Text("done".into()).with_usage(0, 0, 0),
        ],
    );
    let mut sb = sandbox_for(&mock, "openai", "[roles.worker]\nbudget_tokens = 1000\n");
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    wait_for("the team's daemon", T, || {
        agent_team_client::Client::operator(&sb.team("mt")).is_ok()
    });
    wait_for("b1 stopped by its budget", T, || {
        sb.agents("mt")
            .iter()
            .any(|a| a.name == "b1" && a.status == AgentStatus::Failed)
    });
    let b1 = sb.agent("mt", "b1");
    assert_eq!(b1.last_exit.as_deref(), Some("budget"), "{b1:?}");
    assert!(
        b1.error
            .as_deref()
            .unwrap_or("")
            .contains("1000 of 1000 tokens"),
        "{b1:?}"
    );
    // Stopped before its third request: the mock saw two.
    assert_eq!(mock.requests("b1").len(), 2);
    let ps = sb.ok(&["--team", "mt", "ps"]);
    let row = ps.lines().find(|l| l.starts_with("b1")).unwrap();
    assert!(row.contains("failed: budget"), "{ps}");
    assert!(row.contains("1000"), "{ps}");
    // Not restarted by the restart policy (which would have put it in `backoff`, not
    // `failed`: only a manual restart leaves `failed`).
    assert_eq!(b1.restarts, 0, "{b1:?}");
    assert!(
        !live_events(&sb).iter().any(|e| e.agent_id == "b1"
            && matches!(
                e.event,
                Event::AgentStatus {
                    status: AgentStatus::Backoff,
                    ..
                }
            )),
        "b1 was put in backoff"
    );
    // The leader was told: the 80 % warning, the spent budget, and that b1 stopped.
    let inbox = leader_inbox(&sb);
    let bodies: Vec<&str> = inbox.iter().map(|m| m.body.as_str()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("80 %") && b.contains("role worker")),
        "{bodies:#?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("b1") && b.contains("stopped before its next model request")),
        "{bodies:#?}"
    );
    let warnings: Vec<BudgetStatus> = live_events(&sb)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::BudgetWarning { budget } => Some(budget),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings.iter().map(|w| w.level).collect::<Vec<_>>(),
        [BudgetLevel::Warning, BudgetLevel::Exceeded],
        "one event per crossing: {warnings:?}"
    );
    // Restarting without raising the budget stops it again before any request.
    let inc = b1.incarnation;
    sb.ok(&["--team", "mt", "restart", "b1"]);
    wait_for("b1 stopped again", T, || {
        let a = sb.agent("mt", "b1");
        a.incarnation > inc && a.status == AgentStatus::Failed
    });
    assert_eq!(mock.requests("b1").len(), 2);
    // Raise it, restart, and b1 goes on.
    let set = json_of(&sb.ok(&[
        "--team", "mt", "budget", "set", "--role", "worker", "--tokens", "5000", "--json",
    ]));
    assert_eq!(set["budget_tokens"], json!(5000), "{set}");
    assert_eq!(set["level"], json!("ok"), "{set}");
    sb.ok(&["--team", "mt", "restart", "b1"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("b1 came back"), "{out}");
    assert!(mock.requests("b1").len() >= 3);
    let report = json_of(&sb.ok(&["--team", "mt", "usage", "--json"]));
    let b1 = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "b1")
        .unwrap()
        .clone();
    assert_eq!(b1["input_tokens"], json!(860), "{report}");
    assert_eq!(b1["output_tokens"], json!(160), "{report}");
    assert_eq!(report["budgets"][0]["role"], json!("worker"), "{report}");
    assert_eq!(
        report["budgets"][0]["budget_tokens"],
        json!(5000),
        "{report}"
    );
}

#[test]
fn a_spent_team_budget_ends_the_run_without_success() {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("write_file", json!({"path": "a.txt", "content": "1"}))])
                .with_usage(300, 100, 0),
            Step::tools(&[("write_file", json!({"path": "b.txt", "content": "2"}))])
                .with_usage(100, 0, 0),
            Step::tools(&[("finish_team", json!({"answer": "never"}))]),
        ],
    );
    let sb = sandbox_with(
        &mock,
        "anthropic",
        "budget_tokens = 500\n",
        "[roles.leader]\ntools = [\"write_file\"]\n",
    );
    let out = sb.run(&["run", "--backend", "process", "--timeout", "60", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    let result = json_of(stdout.trim());
    assert_eq!(result["type"], json!("complete"), "{result}");
    assert_eq!(result["success"], json!(false), "{result}");
    assert!(
        result["result"]
            .as_str()
            .unwrap()
            .contains("the team's budget is spent (500 of 500 tokens)"),
        "{result}"
    );
    assert_eq!(result["usage"]["total"]["input_tokens"], json!(400));
    assert_eq!(result["usage"]["budgets"][0]["level"], json!("exceeded"));
    // The leader stopped before its third request.
    assert_eq!(mock.requests("leader").len(), 2);
}

#[test]
fn a_notify_command_gets_the_permission_envelope_on_stdin() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("bash", json!({"command": "echo notified"}))]),
            Step::tools(&[("finish_team", json!({"answer": "ok"}))]),
        ],
    );
    let mut sb = sandbox_for(
        &mock,
        "openai",
        "[roles.leader]\ntools = [\"bash\"]\npermissions = { bash = \"ask\" }\n\
         [notify]\ncommand = \"cat >> notify.log; echo \\\" $AGENT_TEAM_NOTIFY\\\" >> notify.log\"\n",
    );
    let log = sb.path("notify.log");
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    wait_for(
        "the notify command to see the permission request",
        T,
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("permission_requested")),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.ends_with(" permission_requested"))
        .unwrap();
    let envelope: Envelope =
        serde_json::from_str(line.trim_end_matches(" permission_requested")).unwrap();
    assert_eq!(envelope.team_id, "mt");
    let Event::PermissionRequested { request } = envelope.event else {
        panic!("{line}")
    };
    assert_eq!(
        (
            request.agent.as_str(),
            request.tool.as_str(),
            request.input.as_str()
        ),
        ("leader", "bash", "echo notified")
    );
    sb.ok(&["--team", "mt", "approve", &request.id.to_string()]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    wait_for("the run_finished notification", T, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(" run_finished"))
    });
}

#[test]
fn a_role_budget_shared_by_three_teammates_is_overshot_by_at_most_one_response() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let spawn = |n: &str| ("spawn_teammate", json!({"role": "worker", "name": n}));
    mock.script(
        "leader",
        vec![
            Step::tools(&[spawn("b1"), spawn("b2"), spawn("b3")]).with_usage(10, 10, 0),
            Step::Text("waiting".into()).with_usage(0, 0, 0),
        ],
    );
    // Each response is 1 100 tokens against a 1 500-token budget of their role; the first
    // answers are held at a gate until all three are in flight or the others wait for theirs.
    let gate = agent_team_mockmodel::Gate::new();
    let step = || Step::tools(&[("list_tasks", json!({}))]).with_usage(1000, 100, 0);
    for n in ["b1", "b2", "b3"] {
        let mut steps = vec![Step::Gate(gate.clone(), Box::new(step()))];
        steps.extend((0..5).map(|_| step()));
        mock.script(n, steps);
    }
    let mut sb = sandbox_for(&mock, "openai", "[roles.worker]\nbudget_tokens = 1500\n");
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "120", "--quiet"]);
    let names = ["b1", "b2", "b3"];
    let waiting = |n: &str| {
        std::fs::read_to_string(sb.team("mt").logs.join(format!("{n}.log")))
            .unwrap_or_default()
            .contains("waiting for the budget")
    };
    wait_for(
        "all three in flight, or two waiting for the budget",
        T,
        || {
            let in_flight: usize = names.iter().map(|n| mock.requests(n).len()).sum();
            in_flight == 3 || names.iter().filter(|n| waiting(n)).count() == 2
        },
    );
    gate.open();
    wait_for("all three stopped by their budget", T, || {
        sb.agents("mt")
            .iter()
            .filter(|a| a.status == AgentStatus::Failed && a.last_exit.as_deref() == Some("budget"))
            .count()
            == 3
    });
    let report = json_of(&sb.ok(&["--team", "mt", "usage", "--json"]));
    let worker = report["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "worker")
        .unwrap()
        .clone();
    let used = worker["input_tokens"].as_u64().unwrap() + worker["output_tokens"].as_u64().unwrap();
    assert!(
        (1500..1500 + 1100).contains(&used),
        "the budget of 1500 ended at {used}: more than one response over ({report})"
    );
    let requests: usize = names.iter().map(|n| mock.requests(n).len()).sum();
    assert_eq!(
        requests as u64,
        worker["requests"].as_u64().unwrap(),
        "{report}"
    );
    sb.ok(&["--team", "mt", "down"]);
    let _ = sb.wait_child(run, T);
}

#[test]
fn a_server_that_sends_no_usage_is_still_stopped_by_the_token_budget() {
    for stream in [false, true] {
        let mock = MockModel::start_background(Wire::OpenAi).unwrap();
        mock.omit_usage(true);
        let steps: Vec<Step> = (0..40)
            .map(|i| {
                Step::tools(&[(
                    "write_file",
                    json!({"path": format!("f{i}.txt"), "content": "x"}),
                )])
            })
            .collect();
        mock.script("leader", steps);
        let sb = sandbox_with(
            &mock,
            "openai",
            "budget_tokens = 5000\n",
            &format!("stream = {stream}\n[roles.leader]\ntools = [\"write_file\"]\n"),
        );
        let out = sb.run(&["run", "--backend", "process", "--timeout", "60", "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "stream={stream}: {stdout}");
        let result = json_of(stdout.trim());
        assert!(
            result["result"]
                .as_str()
                .unwrap_or("")
                .contains("the team's budget is spent"),
            "stream={stream}: {result}"
        );
        let requests = mock.requests("leader").len();
        let counted = result["usage"]["total"]["requests"].as_u64().unwrap();
        assert_eq!(requests as u64, counted, "stream={stream}: {result}");
        assert!(
            requests < 40,
            "stream={stream}: never stopped ({requests} requests)"
        );
        // Every request went out without usage, and the agent said it was estimating.
        let log =
            std::fs::read_to_string(sb.team("mt").logs.join("leader.log")).unwrap_or_default();
        assert!(
            log.contains("sent no token usage") || stderr.contains("sent no token usage"),
            "stream={stream}: no warning in the leader's log:\n{log}"
        );
    }
}
