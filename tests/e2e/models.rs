//! Model-driven agents against a local mock server that speaks the real OpenAI and Anthropic
//! wire formats (no network, no keys): tools, permissions, errors, message order.

use agent_team_e2e::*;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn sandbox_for(mock: &MockModel, provider: &str, extra: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"mt\"\n[defaults]\nprovider = \"{provider}\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n{extra}",
        mock.base_url()
    ));
    sb
}

#[test]
fn a_model_leader_runs_a_team_with_files_approvals_and_an_answer() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("create_task", json!({"title": "write a.txt"})),
                ("create_task", json!({"title": "write b.txt"})),
                ("create_task", json!({"title": "check a.txt"})),
            ]),
            Step::tools(&[
                ("spawn_teammate", json!({"role": "worker", "name": "b1"})),
                ("spawn_teammate", json!({"role": "worker", "name": "b2"})),
            ]),
            Step::Text("The board is ready; waiting for the team.".into()),
            Step::until(
                &[
                    "b1 finished task 1",
                    "b2 finished task 2",
                    "b1 finished task 3",
                ],
                Step::tools(&[(
                    "finish_team",
                    json!({"answer": "All done: a.txt and b.txt are written and checked."}),
                )]),
                "Still waiting.",
            ),
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::tools(&[("claim_task", json!({"id": 1}))]),
            Step::tools(&[("write_file", json!({"path": "a.txt", "content": "alpha\n"}))]),
            Step::tools(&[
                (
                    "update_task_status",
                    json!({"id": 1, "status": "completed", "result": "wrote a.txt"}),
                ),
                (
                    "send_message",
                    json!({"to": "leader", "text": "b1 finished task 1"}),
                ),
            ]),
            Step::tools(&[("claim_task", json!({"id": 3}))]),
            Step::tools(&[("bash", json!({"command": "cat a.txt"}))]),
            // Text with the report: the leader may finish the team as soon as the report is in,
            // and b1 may then stop before another turn.
            Step::TextAndTools(
                "Reporting.".into(),
                vec![
                    (
                        "update_task_status".into(),
                        json!({"id": 3, "status": "completed", "result": "a.txt reads alpha"}),
                    ),
                    (
                        "send_message".into(),
                        json!({"to": "leader", "text": "b1 finished task 3"}),
                    ),
                ],
            ),
            Step::Text("Nothing left for me.".into()),
        ],
    );
    mock.script(
        "b2",
        vec![
            Step::tools(&[("claim_task", json!({"id": 2}))]),
            Step::tools(&[("write_file", json!({"path": "b.txt", "content": "beta\n"}))]),
            Step::tools(&[("bash", json!({"command": "rm -rf out"}))]),
            Step::TextAndTools(
                "Reporting.".into(),
                vec![
                    ("update_task_status".into(), json!({"id": 2, "status": "completed", "result": "wrote b.txt; cleanup was denied"})),
                    ("send_message".into(), json!({"to": "leader", "text": "b2 finished task 2 (my bash was denied)"})),
                ],
            ),
            Step::Text("Done here.".into()),
        ],
    );
    let mut sb = sandbox_for(
        &mock,
        "openai",
        "[roles.worker]\npermissions = { bash = \"ask\" }\n",
    );
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    // One bash is approved with the CLI, the other denied.
    wait_for("b1's bash request", T, || {
        sb.pending_from("mt", "b1").is_some()
    });
    let b1_req = sb.pending_from("mt", "b1").unwrap();
    assert_eq!(
        (b1_req.tool.as_str(), b1_req.input.as_str()),
        ("bash", "cat a.txt")
    );
    sb.ok(&["--team", "mt", "approve", &b1_req.id.to_string()]);
    wait_for("b2's bash request", T, || {
        sb.pending_from("mt", "b2").is_some()
    });
    let b2_req = sb.pending_from("mt", "b2").unwrap();
    sb.ok(&[
        "--team",
        "mt",
        "deny",
        &b2_req.id.to_string(),
        "--reason",
        "no deleting",
    ]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("All done: a.txt and b.txt are written and checked."),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(std::fs::read_to_string(sb.path("b.txt")).unwrap(), "beta\n");
    // The denial reached b2's model as a tool error with the reason.
    let b2 = mock.requests("b2");
    assert!(
        b2.iter()
            .any(|r| r.to_string().contains("permission denied: no deleting")),
        "{b2:?}"
    );
    // The approved command really ran.
    assert!(
        mock.requests("b1")
            .iter()
            .any(|r| r.to_string().contains("exit 0\\nalpha"))
    );
    // The event log shows each agent's text and tool calls, tagged with its id.
    let ev = sb.events_of("mt");
    for agent in ["leader", "b1", "b2"] {
        assert!(ev.iter().any(|e| e.agent_id == agent && matches!(e.event, Event::TextMessageContent { .. })), "no text from {agent}");
        assert!(
            ev.iter()
                .any(|e| e.agent_id == agent && matches!(e.event, Event::ToolCallStart { .. })),
            "no tool call from {agent}"
        );
    }
    assert!(ev.iter().any(|e| e.agent_id == "b1" && matches!(&e.event, Event::ToolCallStart { tool_name, args, .. } if tool_name == "write_file" && args["path"] == "a.txt")));
    assert!(ev.iter().any(|e| matches!(&e.event, Event::PermissionDecided { request } if request.agent == "b2" && request.status == PermStatus::Denied)));
    assert!(
        ev.iter()
            .any(|e| matches!(&e.event, Event::RunFinished { success: true, .. }))
    );
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

#[test]
fn always_reaches_a_second_teammate_without_a_new_prompt() {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("spawn_teammate", json!({"role": "worker", "name": "b1"})),
                ("spawn_teammate", json!({"role": "worker", "name": "b2"})),
            ]),
            Step::Text("Started.".into()),
            Step::until(
                &["b1 ran it", "b2 ran it"],
                Step::tools(&[(
                    "finish_team",
                    json!({"answer": "both ran make check", "force": true}),
                )]),
                "Waiting.",
            ),
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::tools(&[("bash", json!({"command": "echo checked"}))]),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "b1 ran it"}))]),
            Step::Text("ok".into()),
        ],
    );
    // b2 asks only after b1's request was allowed always.
    mock.script(
        "b2",
        vec![
            Step::Delay(
                Duration::from_millis(10),
                Box::new(Step::Text("ready".into())),
            ),
            Step::tools(&[("bash", json!({"command": "echo checked by b2"}))]),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "b2 ran it"}))]),
            Step::Text("ok".into()),
        ],
    );
    let mut sb = sandbox_for(
        &mock,
        "anthropic",
        "[roles.worker]\nstream = false\npermissions = { bash = \"ask\" }\n",
    );
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    wait_for("b1's request", T, || sb.pending_from("mt", "b1").is_some());
    let r = sb.pending_from("mt", "b1").unwrap();
    // Allow every `echo checked…` for every teammate from now on.
    let out = sb.run(&[
        "--team",
        "mt",
        "approve",
        &r.id.to_string(),
        "--always",
        "--pattern",
        "echo checked*",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("every input matching"));
    // b2 is woken by a message so it gets a second turn, where it runs bash. The message must
    // not reach b2 before its first turn starts, or that turn would read it.
    wait_for("b2's first turn", T, || !mock.requests("b2").is_empty());
    sb.ok(&["--team", "mt", "send", "b2", "go ahead"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    let ev = sb.events_of("mt");
    let decided: Vec<PermRequest> = ev
        .iter()
        .filter_map(|e| match &e.event {
            Event::PermissionDecided { request } => Some(request.clone()),
            _ => None,
        })
        .collect();
    let b2: Vec<&PermRequest> = decided.iter().filter(|r| r.agent == "b2").collect();
    assert_eq!(b2.len(), 1, "{decided:?}");
    assert_eq!(b2[0].status, PermStatus::Allowed);
    assert_eq!(
        b2[0].decision.as_ref().unwrap().by,
        "rule",
        "b2 was allowed by the team rule, not by a person"
    );
    assert!(
        mock.requests("b2")
            .iter()
            .any(|r| r.to_string().contains("exit 0\\nchecked by b2")),
        "b2's bash ran"
    );
}

#[test]
fn bad_tool_calls_come_back_as_errors_and_server_errors_are_retried() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::RawToolArgs(
                "write_file".into(),
                "{\"path\": \"x.txt\", \"content\": ".into(),
            ),
            Step::tools(&[("teleport", json!({"to": "mars"}))]),
            Step::tools(&[("read_file", json!({"path": "../../../etc/passwd"}))]),
            Step::Status(500, "the model server hiccuped".into()),
            Step::tools(&[("write_file", json!({"path": "ok.txt", "content": "fine"}))]),
            Step::tools(&[(
                "finish_team",
                json!({"answer": "recovered from every error"}),
            )]),
        ],
    );
    let sb = sandbox_for(
        &mock,
        "openai",
        "[roles.leader]\nstream = false\ntools = [\"read_file\", \"write_file\"]\n",
    );
    let out = sb.run(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("recovered from every error"));
    let reqs: Vec<String> = mock
        .requests("leader")
        .iter()
        .map(|r| r.to_string())
        .collect();
    // 6 scripted answers, one of them a 500 that the client retried: 6 requests reached the mock.
    assert_eq!(reqs.len(), 6, "{reqs:#?}");
    assert!(
        reqs[1].contains("are not valid JSON"),
        "malformed arguments are a tool error"
    );
    assert!(
        reqs[2].contains("unknown tool \\\"teleport\\\""),
        "{}",
        reqs[2]
    );
    assert!(reqs[3].contains("is outside the workspace"), "{}", reqs[3]);
    assert_eq!(
        reqs[3], reqs[4],
        "the retry after the 500 sent the same conversation"
    );
    assert!(reqs[5].contains("wrote 4 bytes to ok.txt"), "{}", reqs[5]);
    assert_eq!(std::fs::read_to_string(sb.path("ok.txt")).unwrap(), "fine");
    assert!(!sb.path("x.txt").exists());
    // The model client's retry warning reached the agent's own log.
    let log = std::fs::read_to_string(sb.team("mt").agent_log("leader")).unwrap();
    assert!(
        log.contains("model request failed; retrying"),
        "no retry warning in the leader's log:\n{log}"
    );
}

/// `up --detach` of a leader that fails within a few requests: `up` may see it connected, or
/// already failed, depending on how the machine schedules it; both are right.
fn up_with_a_leader_that_fails(sb: &Sandbox, backend: &str) {
    let out = sb.run(&["up", "--backend", backend, "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("the leader is failed"),
        "{err}"
    );
}

#[test]
fn a_refused_key_ends_the_agent_with_a_clear_error_in_ps_and_its_pane() {
    // The same rule for an agent process and an agent inside the daemon.
    for backend in ["process", "in-process"] {
        refused_key_on(backend);
    }
}

fn refused_key_on(backend: &str) {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    mock.script(
        "leader",
        vec![Step::Status(401, "invalid x-api-key".into())],
    );
    let sb = sandbox_for(&mock, "anthropic", "");
    up_with_a_leader_that_fails(&sb, backend);
    wait_for("the leader to fail", T, || {
        let l = sb.agent("mt", "leader");
        l.status == AgentStatus::Failed
    });
    let leader = sb.agent("mt", "leader");
    let error = leader.error.clone().unwrap_or_default();
    assert!(
        error.contains("refused the credentials")
            && error.contains("invalid x-api-key")
            && error.contains("$MOCK_API_KEY"),
        "{error}"
    );
    assert_eq!(
        leader.incarnation, 1,
        "{backend}: a bad key is not retried by restarting"
    );
    assert_eq!(
        mock.requests("leader").len(),
        1,
        "{backend}: a 401 is not retried"
    );
    let ps = sb.ok(&["--team", "mt", "ps"]);
    assert!(ps.contains("refused the credentials"), "{backend}: {ps}");
    let log = std::fs::read_to_string(sb.team("mt").agent_log("leader")).unwrap();
    assert!(log.contains("invalid x-api-key"), "{log}");
    sb.ok(&["--team", "mt", "down"]);
}

#[test]
fn messages_sent_mid_turn_arrive_after_the_turn_leaders_first() {
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    // Gates order the three agents without guessing how long anything takes: b1's first turn
    // is held open while b2 and then the leader write to it.
    let (b1_turn, b2_send, leader_send) = (Gate::new(), Gate::new(), Gate::new());
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("spawn_teammate", json!({"role": "worker", "name": "b1"})),
                ("spawn_teammate", json!({"role": "worker", "name": "b2"})),
            ]),
            Step::Gate(
                leader_send.clone(),
                Box::new(Step::tools(&[(
                    "send_message",
                    json!({"to": "b1", "text": "leader says hi"}),
                )])),
            ),
            Step::Text("Sent.".into()),
            Step::until(
                &["ack from b1"],
                Step::tools(&[(
                    "finish_team",
                    json!({"answer": "order kept", "force": true}),
                )]),
                "Waiting.",
            ),
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::Gate(
                b1_turn.clone(),
                Box::new(Step::Text("thinking for a while".into())),
            ),
            Step::tools(&[(
                "send_message",
                json!({"to": "leader", "text": "ack from b1"}),
            )]),
            Step::Text("ok".into()),
        ],
    );
    mock.script(
        "b2",
        vec![
            Step::Gate(
                b2_send.clone(),
                Box::new(Step::tools(&[(
                    "send_message",
                    json!({"to": "b1", "text": "peer says hi"}),
                )])),
            ),
            Step::Text("done".into()),
        ],
    );
    let mut sb = sandbox_for(&mock, "anthropic", "");
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let to_b1 = |sb: &Sandbox| {
        agent_team_client::Client::operator(&sb.team("mt"))
            .and_then(|mut c| c.all_messages("b1", false))
            .map(|m| {
                m.into_iter()
                    .filter(|m| m.kind == MessageKind::Text)
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for("b1's first turn", T, || !mock.requests("b1").is_empty());
    // The peer writes first, then the leader; b1 is still in its first turn.
    b2_send.open();
    wait_for("b2's message to b1", T, || to_b1(&sb) == 1);
    leader_send.open();
    wait_for("the leader's message to b1", T, || to_b1(&sb) == 2);
    b1_turn.open();
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    let b1 = mock.requests("b1");
    assert!(b1.len() >= 2, "{b1:?}");
    let first = b1[0].to_string();
    assert!(
        !first.contains("says hi"),
        "nothing was injected into the turn in progress"
    );
    let second = b1[1].to_string();
    let (l, p) = (
        second.find("[message from leader] leader says hi"),
        second.find("[message from b2] peer says hi"),
    );
    assert!(l.is_some() && p.is_some(), "{second}");
    assert!(l < p, "the leader's message comes first: {second}");
}

#[test]
fn a_leader_model_can_be_the_approver() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("spawn_teammate", json!({"role": "worker", "name": "b1"}))]),
            Step::Text("Started b1.".into()),
            Step::until(
                &["request 1: b1 wants to run bash `echo approved-by-leader`"],
                Step::tools(&[("decide_permission", json!({"id": 1, "allow": true}))]),
                "Waiting.",
            ),
            Step::until(
                &["b1 ran it"],
                Step::tools(&[("finish_team", json!({"answer": "done", "force": true}))]),
                "Waiting.",
            ),
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::tools(&[("bash", json!({"command": "echo approved-by-leader"}))]),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "b1 ran it"}))]),
            Step::Text("ok".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"mt\"\napprover = \"leader\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n[roles.worker]\npermissions = {{ bash = \"ask\" }}\n",
        mock.base_url()
    ));
    let out = sb.run(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decided: Vec<PermRequest> = sb
        .events_of("mt")
        .iter()
        .filter_map(|e| match &e.event {
            Event::PermissionDecided { request } => Some(request.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(decided.len(), 1);
    assert_eq!(
        (
            decided[0].status,
            decided[0].decision.as_ref().unwrap().by.as_str()
        ),
        (PermStatus::Allowed, "leader")
    );
    assert!(
        mock.requests("b1")
            .iter()
            .any(|r| r.to_string().contains("exit 0\\napproved-by-leader"))
    );
}

#[test]
fn max_steps_stops_an_agent_for_good() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("list_tasks", json!({}))]),
            Step::tools(&[("list_tasks", json!({}))]),
            Step::tools(&[("list_tasks", json!({}))]),
        ],
    );
    let sb = sandbox_for(&mock, "openai", "[roles.leader]\nmax_steps = 2\n");
    up_with_a_leader_that_fails(&sb, "process");
    wait_for("the leader to fail", T, || {
        sb.agent("mt", "leader").status == AgentStatus::Failed
    });
    let l = sb.agent("mt", "leader");
    assert!(l.error.unwrap_or_default().contains("max_steps = 2"));
    assert_eq!(mock.requests("leader").len(), 2);
    sb.ok(&["--team", "mt", "down"]);
}

#[test]
fn a_team_shut_down_mid_turn_runs_again_without_the_old_shutdown_request() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            // The first incarnation is mid-turn when `down` comes, so it never reads the
            // shutdown request and is stopped by signal.
            Step::Delay(
                Duration::from_secs(60),
                Box::new(Step::Text("too late".into())),
            ),
            // The second incarnation: a first step slow enough that any message pushed at
            // its connect is in hand at the next idle point, where a shutdown would end it.
            Step::Delay(
                Duration::from_millis(500),
                Box::new(Step::tools(&[("list_tasks", json!({}))])),
            ),
            Step::tools(&[("finish_team", json!({"answer": "second run done"}))]),
        ],
    );
    let sb = sandbox_for(&mock, "openai", "");
    sb.ok(&["up", "--backend", "process", "--detach", "do it"]);
    wait_for("the leader's first request", T, || {
        !mock.requests("leader").is_empty()
    });
    sb.ok(&["--team", "mt", "down"]);
    // The precondition that makes this test mean something: the request is still unread.
    let snap = agent_team_store::Store::open_read_only(&sb.team("mt").db, "mt")
        .unwrap()
        .load()
        .unwrap();
    assert!(
        snap.unread
            .iter()
            .any(|m| m.to == "leader" && m.kind == MessageKind::ShutdownRequest),
        "{:?}",
        snap.unread
    );
    let out = sb.run(&[
        "run",
        "--backend",
        "process",
        "--timeout",
        "60",
        "do it again",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("second run done"), "{stdout}");
    assert_eq!(mock.requests("leader").len(), 3);
}

/// The attack: a model's `bash` printing the model key the agent runs with. The team's
/// credential variables never reach its commands.
#[test]
fn a_models_bash_cannot_read_the_teams_model_key() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[(
                "bash",
                json!({"command": "echo \"key=$MOCK_API_KEY openai=$OPENAI_API_KEY\""}),
            )]),
            Step::tools(&[("finish_team", json!({"answer": "looked", "force": true}))]),
            Step::Text("Done.".into()),
        ],
    );
    let mut sb = sandbox_for(
        &mock,
        "openai",
        "[roles.leader]\ntools = [\"bash\"]\npermissions = { bash = \"allow\" }\n",
    );
    sb.env
        .push(("OPENAI_API_KEY".into(), "sk-user-openai-key".into()));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    let seen = mock.requests("leader").last().unwrap().to_string();
    assert!(seen.contains("key= openai="), "{seen}");
    assert!(
        !seen.contains("test-key") && !seen.contains("sk-user-openai-key"),
        "{seen}"
    );
    // The agent itself still had its key: every request carried it.
    assert!(
        mock.keys("leader")
            .iter()
            .all(|k| k.as_deref() == Some("Bearer test-key"))
    );
}
