//! Plan approval end to end (issue 15 item 7): a plan-required teammate cannot write until its
//! plan is approved, and a rejection's feedback reaches it. The real binaries against the mock
//! model server: the teammate's model tries `write_file` first (not offered, refused, no file),
//! submits a plan, the operator rejects it with `agent-team plan reject --feedback`, the next
//! request of its model carries the feedback, it submits again, `agent-team plan approve`, and
//! its `write_file` now lands. The leader's `decide_plan` does the same from its model.

use agent_team_e2e::*;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Waits for the request containing every needle, answering `meanwhile` text until then.
fn after(needles: &[&str], then: Step) -> Step {
    Step::Until {
        needles: needles.iter().map(|n| n.to_string()).collect(),
        then: Box::new(then),
        meanwhile: Box::new(Step::Text("Waiting.".into())),
    }
}

/// The names of the tools offered in a chat-completions request.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

/// `ps --json`'s entry for `name` in team `team`.
fn ps_agent(sb: &Sandbox, team: &str, name: &str) -> Value {
    let out = sb.ok(&["--team", team, "ps", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

fn team_file(mock: &MockModel, team: &str) -> String {
    format!(
        "name = \"{team}\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\n[[teammates]]\nname = \"p1\"\nrole = \"worker\"\nplan_required = true\n",
        mock.base_url()
    )
}

#[test]
fn a_plan_required_teammate_cannot_write_until_its_plan_is_approved_and_hears_a_rejection() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    // The run ends (and the team stops) only once the test has read `ps` after the approval.
    let finish = Gate::new();
    mock.script(
        "leader",
        vec![after(
            &["p1 done"],
            Step::Gate(
                finish.clone(),
                Box::new(Step::tools(&[(
                    "finish_team",
                    json!({"answer": "the plan was followed", "force": true}),
                )])),
            ),
        )],
    );
    let write = |content: &str| {
        Step::tools(&[("write_file", json!({"path": "out.txt", "content": content}))])
    };
    mock.script(
        "p1",
        vec![
            // Not offered, and refused when called anyway.
            write("too early"),
            Step::tools(&[("submit_plan", json!({"plan": "plan v1: write out.txt"}))]),
            Step::Text("Waiting for approval.".into()),
            after(
                &["add tests"],
                Step::tools(&[(
                    "submit_plan",
                    json!({"plan": "plan v2: write out.txt, then add tests"}),
                )]),
            ),
            Step::Text("Waiting for approval.".into()),
            after(&["Your plan was approved"], write("approved work")),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "p1 done"}))]),
            Step::Text("Finished.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&team_file(&mock, "pt"));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "90", "--quiet"]);

    let plan_of = |sb: &Sandbox| ps_agent(sb, "pt", "p1")["plan"].clone();
    // The team exists once `run` has started it.
    wait_for("p1 on the roster", T, || {
        sb.run(&["--team", "pt", "ps", "--json"])
            .stdout
            .windows(4)
            .any(|w| w == b"\"p1\"")
    });
    wait_for("p1's first plan", T, || plan_of(&sb)["submissions"] == 1);
    let plan = plan_of(&sb);
    assert_eq!(plan["state"], "submitted", "{plan}");
    assert_eq!(plan["plan"], "plan v1: write out.txt");
    let table = sb.ok(&["--team", "pt", "ps"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("p1@") && l.contains("planning")),
        "{table}"
    );
    assert!(!sb.path("out.txt").exists(), "written before approval");

    // What its model was offered and told while planning.
    let reqs = mock.requests("p1");
    let first = offered(&reqs[0]);
    for t in [
        "submit_plan",
        "read_file",
        "grep",
        "list_tasks",
        "send_message",
    ] {
        assert!(first.iter().any(|x| x == t), "{t} not offered: {first:?}");
    }
    for t in ["write_file", "edit_file", "bash"] {
        assert!(!first.iter().any(|x| x == t), "{t} offered: {first:?}");
    }
    let second = reqs[1].to_string();
    assert!(
        second.contains("write_file refused: your plan is not approved yet"),
        "{second}"
    );

    // Rejected with feedback: the model's next request carries it; it plans again.
    let out = sb.ok(&[
        "--team",
        "pt",
        "plan",
        "reject",
        "p1",
        "--feedback",
        "add tests",
    ]);
    assert!(out.contains("rejected the plan of p1"), "{out}");
    wait_for("p1's second plan", T, || plan_of(&sb)["submissions"] == 2);
    let reqs = mock.requests("p1");
    let heard = reqs
        .iter()
        .position(|r| r.to_string().contains("add tests"))
        .expect("the feedback reached p1's model");
    assert!(
        reqs[heard].to_string().contains("Your plan was rejected"),
        "{}",
        reqs[heard]
    );
    let still = offered(&reqs[heard]);
    assert!(
        !still.iter().any(|x| x == "write_file"),
        "rejected, still read-only: {still:?}"
    );
    assert!(!sb.path("out.txt").exists(), "written after a rejection");
    let shown = sb.ok(&["--team", "pt", "plan", "show", "p1"]);
    assert!(
        shown.contains("plan v2: write out.txt, then add tests") && shown.contains("add tests"),
        "{shown}"
    );
    let listed: Value =
        serde_json::from_str(&sb.ok(&["--team", "pt", "plan", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["agent"], "p1", "{listed}");
    assert_eq!(listed[0]["plan"]["state"], "submitted", "{listed}");

    // A decision needs a submitted plan: approving `leader` is a clear conflict.
    let refused = sb.run(&["--team", "pt", "plan", "approve", "leader"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("needs no plan approval") && err.contains("plan show"),
        "{err}"
    );

    let out = sb.ok(&["--team", "pt", "plan", "approve", "p1"]);
    assert!(out.contains("approved the plan of p1"), "{out}");
    // The file exists a moment before its content is in: wait for the content.
    wait_for("the approved write", T, || {
        std::fs::read_to_string(sb.path("out.txt")).is_ok_and(|t| t == "approved work")
    });
    let plan = plan_of(&sb);
    assert_eq!(plan["state"], "approved", "{plan}");
    let table = sb.ok(&["--team", "pt", "ps"]);
    assert!(
        !table
            .lines()
            .any(|l| l.starts_with("p1@") && l.contains("planning")),
        "{table}"
    );
    finish.open();

    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("the plan was followed"), "{out}");
    // Approved, its model had its full tool set (and no more submit_plan).
    let reqs = mock.requests("p1");
    let last = offered(reqs.last().unwrap());
    assert!(
        last.iter().any(|x| x == "write_file") && !last.iter().any(|x| x == "submit_plan"),
        "{last:?}"
    );
    // The event log has both plans and both decisions.
    let events = sb.ok(&["--team", "pt", "events"]);
    let kinds: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["event"]["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("PLAN_"))
        })
        .map(|e| {
            format!(
                "{} {} {}",
                e["event"]["type"].as_str().unwrap(),
                e["event"]["approved"],
                e["event"]["by"]
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "PLAN_SUBMITTED null null",
            "PLAN_DECIDED false \"operator\"",
            "PLAN_SUBMITTED null null",
            "PLAN_DECIDED true \"operator\"",
        ],
        "{events}"
    );
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

/// The leader's model decides with `decide_plan`: told of the plan by a message, it approves,
/// and the teammate's write lands.
#[test]
fn the_leader_approves_a_plan_with_decide_plan() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            after(
                &["p1 submitted a plan", "plan: touch done.txt"],
                Step::tools(&[(
                    "decide_plan",
                    json!({"teammate": "p1", "approve": true, "feedback": "go"}),
                )]),
            ),
            after(
                &["p1 done"],
                Step::tools(&[("finish_team", json!({"answer": "led", "force": true}))]),
            ),
        ],
    );
    mock.script(
        "p1",
        vec![
            Step::tools(&[("submit_plan", json!({"plan": "plan: touch done.txt"}))]),
            Step::Text("Waiting for approval.".into()),
            after(
                &["Your plan was approved", "Feedback: go"],
                Step::tools(&[("write_file", json!({"path": "done.txt", "content": "ok"}))]),
            ),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "p1 done"}))]),
            Step::Text("Finished.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&team_file(&mock, "lt"));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert_eq!(std::fs::read_to_string(sb.path("done.txt")).unwrap(), "ok");
    let leader = mock
        .requests("leader")
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(
        leader.contains("the plan of p1 is approved"),
        "the tool's answer: {leader}"
    );
    let p1 = ps_agent(&sb, "lt", "p1");
    assert_eq!(p1["plan"]["state"], "approved", "{p1}");
    assert_eq!(p1["plan"]["decided_by"], "leader", "{p1}");
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

/// A tmux team `team` whose plan-required teammate p1 submits "plan v1: write out.txt", then,
/// once a request of its carries `feedback`, `second`; its model says "Working." once
/// approved. No board pane (the tests drive their own).
fn plan_team_in_tmux(team: &str, feedback: &str, second: &str) -> (MockModel, Sandbox) {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "p1",
        vec![
            Step::tools(&[("submit_plan", json!({"plan": "plan v1: write out.txt"}))]),
            Step::Text("Waiting for approval.".into()),
            after(
                &[feedback],
                Step::tools(&[("submit_plan", json!({"plan": second}))]),
            ),
            Step::Text("Waiting for approval.".into()),
            after(&["Your plan was approved"], Step::Text("Working.".into())),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"{team}\"\nboard = false\n\n[roles.worker]\nprovider = \"openai\"\nmodel = \"mock-1\"\n\
         base_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\n[[teammates]]\nname = \"p1\"\n\
         role = \"worker\"\nplan_required = true\n",
        mock.base_url()
    ));
    sb.ok(&["up", "--backend", "tmux", "--detach"]);
    (mock, sb)
}

/// The leader's pane puts a submitted plan to the person watching it (the approver is the
/// human), and `reject NAME FEEDBACK` then `approve NAME` typed there decide it: the tmux
/// backend, the exec leader's prompt, the keys sent with `send-keys`.
#[test]
fn the_leader_pane_puts_a_plan_to_the_person_and_their_answer_decides_it() {
    let (mock, sb) = plan_team_in_tmux("pp", "more tests", "plan v2: with more tests");
    let sock = sb.tmux_socket("pp");
    let leader_pane = sb.agent("pp", "leader").pane.unwrap();
    let screen = |sb: &Sandbox| {
        sb.tmux(&sock, &["capture-pane", "-p", "-J", "-t", &leader_pane])
            .unwrap_or_default()
    };
    wait_for("the plan prompt in the leader's pane", T, || {
        screen(&sb).contains("plan from p1: approve?")
    });
    assert!(
        screen(&sb).contains("plan v1: write out.txt"),
        "{}",
        screen(&sb)
    );
    // The person rejects it with feedback, typed in the pane.
    sb.tmux(
        &sock,
        &[
            "send-keys",
            "-t",
            &leader_pane,
            "-l",
            "reject p1 more tests please",
        ],
    )
    .unwrap();
    sb.tmux(&sock, &["send-keys", "-t", &leader_pane, "Enter"])
        .unwrap();
    wait_for("the second plan", T, || {
        ps_agent(&sb, "pp", "p1")["plan"]["submissions"] == 2
    });
    let plan = ps_agent(&sb, "pp", "p1")["plan"].clone();
    assert_eq!(plan["plan"], "plan v2: with more tests", "{plan}");
    assert_eq!(plan["feedback"], "more tests please", "{plan}");
    assert_eq!(
        plan["decided_by"], "leader",
        "decided in the leader's pane: {plan}"
    );
    assert!(
        mock.requests("p1")
            .iter()
            .any(|r| r.to_string().contains("more tests please")),
        "the feedback reached the model"
    );
    wait_for("the second prompt", T, || {
        screen(&sb).matches("plan from p1: approve?").count() >= 2
    });
    sb.tmux(
        &sock,
        &["send-keys", "-t", &leader_pane, "-l", "approve p1"],
    )
    .unwrap();
    sb.tmux(&sock, &["send-keys", "-t", &leader_pane, "Enter"])
        .unwrap();
    wait_for("the plan approved", T, || {
        ps_agent(&sb, "pp", "p1")["plan"]["state"] == "approved"
    });
    assert!(
        screen(&sb).contains("plan of p1: approved"),
        "{}",
        screen(&sb)
    );
    sb.ok(&["--team", "pp", "down"]);
}

/// The terminal board (`agent-team board`, issue 17's pane) lists a submitted plan among its
/// approvals: `d` with typed feedback rejects it (the feedback reaches the model), `a`
/// approves the next one. Keys sent with `send-keys` to a board in the team's tmux.
#[test]
fn the_terminal_board_rejects_and_approves_a_plan_with_keys() {
    let (mock, sb) = plan_team_in_tmux("pb", "split it up", "plan v2: in two steps");
    let sock = sb.tmux_socket("pb");
    sb.tmux(
        &sock,
        &[
            "new-window",
            "-d",
            "-n",
            "kb",
            &format!("{} --team pb board", bin("agent-team").display()),
        ],
    )
    .unwrap();
    sb.tmux(
        &sock,
        &["resize-window", "-t", "pb:kb", "-x", "100", "-y", "30"],
    )
    .unwrap();
    let screen = |sb: &Sandbox| {
        sb.tmux(&sock, &["capture-pane", "-p", "-t", "pb:kb"])
            .unwrap_or_default()
    };
    let keys = |sb: &Sandbox, k: &[&str]| {
        let mut args = vec!["send-keys", "-t", "pb:kb"];
        args.extend_from_slice(k);
        sb.tmux(&sock, &args).unwrap();
    };
    wait_for("the plan on the board", T, || {
        screen(&sb).contains("plan of p1: plan v1")
    });
    // Tab to the approvals; `d` asks for feedback, Enter sends it.
    keys(&sb, &["Tab"]);
    keys(&sb, &["d"]);
    wait_for("the feedback prompt", T, || {
        screen(&sb).contains("reject p1's plan, feedback")
    });
    keys(&sb, &["-l", "split it up"]);
    keys(&sb, &["Enter"]);
    wait_for("the second plan", T, || {
        ps_agent(&sb, "pb", "p1")["plan"]["submissions"] == 2
    });
    let plan = ps_agent(&sb, "pb", "p1")["plan"].clone();
    assert_eq!(plan["feedback"], "split it up", "{plan}");
    assert_eq!(plan["decided_by"], "operator", "{plan}");
    assert!(
        mock.requests("p1")
            .iter()
            .any(|r| r.to_string().contains("split it up")),
        "the feedback reached the model"
    );
    wait_for("the second plan on the board", T, || {
        screen(&sb).contains("plan of p1: plan v2")
    });
    keys(&sb, &["a"]);
    wait_for("the plan approved", T, || {
        ps_agent(&sb, "pb", "p1")["plan"]["state"] == "approved"
    });
    wait_for("the board to say so", T, || {
        let s = screen(&sb);
        s.contains("approved p1's plan") && s.contains("nothing waiting")
    });
    wait_for("the approval to reach the model", T, || {
        mock.requests("p1")
            .iter()
            .any(|r| r.to_string().contains("Your plan was approved"))
    });
    sb.ok(&["--team", "pb", "down"]);
}
