//! What the seeds' leaders expect of the board (issue 31): Qwen Code's `update_task_status
//! {status: "in_progress"}` as a claim, pydantic's and Qwen's "first to finish" wait
//! (`wait_for {mode: "any"}`), `read_inbox` for agents that poll, lauren's `get_all()` as
//! `memory_list {values: true}`; against the mock model.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// What the model was told of each tool call it made: the tool results in the last request
/// of `requests`, in order.
fn tool_results(requests: &[serde_json::Value]) -> Vec<String> {
    let last = requests.last().expect("a request");
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_teammate_claims_with_update_task_status_reads_its_inbox_and_the_leader_waits_for_the_first() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("create_task", json!({"title": "task one"})),
                ("create_task", json!({"title": "task two"})),
                ("spawn_teammate", json!({"role": "worker", "name": "q1"})),
                (
                    "memory_set",
                    json!({"key": "notes/plan", "value": {"steps": 2}}),
                ),
            ]),
            Step::tools(&[(
                "send_message",
                json!({"to": "q1", "text": "please claim task 1 (marker-7c1)"}),
            )]),
            Step::tools(&[(
                "wait_for",
                json!({"tasks": [1, 2], "mode": "any", "timeout_s": 60}),
            )]),
            Step::tools(&[(
                "finish_team",
                json!({"answer": "The first task is done.", "force": true}),
            )]),
            Step::Text("Finished.".into()),
        ],
    );
    mock.script(
        "q1",
        vec![
            Step::Until {
                needles: vec!["marker-7c1".into()],
                then: Box::new(Step::tools(&[(
                    "update_task_status",
                    json!({"id": 1, "status": "in_progress"}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for work.".into())),
            },
            Step::tools(&[("read_inbox", json!({"unread_only": false}))]),
            Step::tools(&[("memory_list", json!({"values": true}))]),
            Step::tools(&[(
                "update_task_status",
                json!({"id": 1, "status": "completed", "result": "one is done"}),
            )]),
            Step::Text("Nothing left for me.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"sd\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\n\
         api_key_env = \"MOCK_API_KEY\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("The first task is done."), "{out}");

    // The run is over: the board as it left it.
    let tasks: Vec<Task> =
        serde_json::from_str(&sb.ok(&["--team", "sd", "task", "list", "--json"])).unwrap();
    let one = tasks.iter().find(|t| t.id == 1).unwrap();
    assert_eq!(one.status, TaskStatus::Completed, "{tasks:?}");
    assert_eq!(one.owner.as_deref(), Some("q1"));
    // The claim by update_task_status was a claim, read_inbox showed the leader's message
    // (already read: it had woken q1), and the completion went through.
    let q1 = tool_results(&mock.requests("q1"));
    assert_eq!(q1.len(), 4, "{q1:?}");
    assert_eq!(
        q1[0], "task 1 (task one) is in_progress, owner q1",
        "{q1:?}"
    );
    assert!(
        q1[1].contains("from leader, read] please claim task 1 (marker-7c1)"),
        "{q1:?}"
    );
    // memory_list {values: true} gave the values with the keys (lauren's get_all).
    let listed: serde_json::Value = serde_json::from_str(&q1[2]).unwrap();
    assert_eq!(listed[0]["key"], "notes/plan", "{listed}");
    assert_eq!(listed[0]["value"], json!({"steps": 2}), "{listed}");
    assert_eq!(q1[3], "task 1 (task one) is completed, owner q1", "{q1:?}");
    // wait_for {mode: any} answered at the first finished task, the other still pending.
    let leader = tool_results(&mock.requests("leader"));
    let waited: serde_json::Value = leader
        .iter()
        .find_map(|r| {
            serde_json::from_str(r)
                .ok()
                .filter(|v: &serde_json::Value| v.get("done").is_some())
        })
        .unwrap_or_else(|| panic!("no wait_for result in {leader:?}"));
    assert_eq!(waited["done"], true, "{waited}");
    let status = |id: u64| {
        waited["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["status"].clone())
    };
    assert_eq!(status(1), Some(json!("completed")), "{waited}");
    assert_eq!(status(2), Some(json!("pending")), "{waited}");
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

/// Nyzhi's `default_role`, the board's computed `blocks`, and pydantic's `dissolve_team`:
/// every teammate stopped at once, the open tasks cancelled, one event. (Qwen Code's
/// `team_delete` ends the run instead: see `a_qwen_leader_works_the_board_with_qwen_names_only`.)
#[test]
fn a_leader_dissolves_its_team_members_get_the_default_role_tasks_show_blocks() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("create_task", json!({"title": "first"})),
                ("create_task", json!({"title": "second", "blocked_by": [1]})),
                ("spawn_teammate", json!({"name": "s1"})),
            ]),
            Step::tools(&[("list_tasks", json!({}))]),
            Step::tools(&[(
                "dissolve_team",
                json!({"reason": "done for today", "cancel_tasks": true}),
            )]),
            Step::tools(&[(
                "finish_team",
                json!({"answer": "Dissolved.", "force": true}),
            )]),
            Step::Text("Finished.".into()),
        ],
    );
    for who in ["r1", "s1"] {
        mock.script(who, vec![Step::Text("Nothing for me yet.".into())]);
    }
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"sd\"\ndefault_role = \"reviewer\"\n[defaults]\nprovider = \"openai\"\n\
         model = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\
         [[teammates]]\nname = \"r1\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");

    // Both members without a role got the team's default one.
    let agents: Vec<AgentInfo> =
        serde_json::from_str(&sb.ok(&["--team", "sd", "ps", "--json"])).unwrap();
    for name in ["r1", "s1"] {
        let a = agents.iter().find(|a| a.name == name).unwrap();
        assert_eq!(a.role, "reviewer", "{a:?}");
        // Stopped by the dissolve, or exited at the run's end if that came first.
        assert!(a.status.is_down(), "{a:?}");
    }
    // The board showed task 1 blocking task 2 (list_tasks, and task show for people).
    let leader = tool_results(&mock.requests("leader"));
    let listed: serde_json::Value = serde_json::from_str(&leader[3]).unwrap();
    assert_eq!(listed[0]["blocks"], json!([2]), "{listed}");
    assert_eq!(listed[1]["blocked_by"], json!([1]), "{listed}");
    let shown: Task =
        serde_json::from_str(&sb.ok(&["--team", "sd", "task", "show", "1", "--json"])).unwrap();
    assert_eq!(shown.blocks, vec![2]);
    // dissolve_team: both stopped, both tasks cancelled, one event saying so.
    assert!(
        leader[4].starts_with("stopping r1, s1") && leader[4].contains("cancelled tasks 1, 2"),
        "{leader:?}"
    );
    let tasks: Vec<Task> =
        serde_json::from_str(&sb.ok(&["--team", "sd", "task", "list", "--json"])).unwrap();
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Cancelled),
        "{tasks:?}"
    );
    let events: Vec<Envelope> = sb
        .ok(&["--team", "sd", "events"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dissolved: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TeamDissolved {
                reason,
                stopped,
                cancelled,
            } => Some((
                e.agent_id.clone(),
                reason.clone(),
                stopped.clone(),
                cancelled.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        dissolved,
        vec![(
            "leader".to_string(),
            Some("done for today".to_string()),
            vec!["r1".to_string(), "s1".to_string()],
            vec![1, 2]
        )]
    );
}

/// The operator's `agent-team dissolve`: the teammates stop, the task one held goes back to
/// pending, the leader stays.
#[test]
fn the_operator_dissolves_a_running_team_and_the_held_task_goes_back() {
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"dz\"\nboard = false\n\
         [[teammates]]\nname = \"w1\"\nrole = \"worker\"\n\
         [[teammates]]\nname = \"w2\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"long\"\nrun = \"sleep 600\"\nassign = \"w1\"\n",
    );
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("w1 holds its task", T, || {
        sb.tasks("dz")
            .iter()
            .any(|t| t.status == TaskStatus::InProgress && t.owner.as_deref() == Some("w1"))
    });
    let out: serde_json::Value =
        serde_json::from_str(&sb.ok(&["dissolve", "--reason", "enough", "--json"])).unwrap();
    assert_eq!(out, json!({"stopped": ["w1", "w2"], "cancelled": []}));
    let task = &sb.tasks("dz")[0];
    assert_eq!(task.status, TaskStatus::Pending, "{task:?}");
    assert_eq!(task.owner, None);
    wait_for("both teammates stopped", T, || {
        ["w1", "w2"]
            .iter()
            .all(|n| sb.agent("dz", n).status == AgentStatus::Stopped)
    });
    assert_ne!(sb.agent("dz", "leader").status, AgentStatus::Stopped);
    sb.ok(&["down"]);
}

/// The model a request of `agent` named, for each of its requests so far.
fn models_of(mock: &MockModel, agent: &str) -> Vec<String> {
    mock.requests(agent)
        .iter()
        .map(|r| r["model"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Nyzhi's `/teams-config`: `agent-team config set|reset|show` and the leader's `set_config`
/// change a role's model, a member's model and role, and max_teammates while the team runs;
/// each applies at the next start (spawn), survives `up` re-reading the file, and is reset.
#[test]
fn settings_changed_at_run_time_apply_at_the_next_start_and_reset() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[(
                "set_config",
                json!({"key": "role.worker.max_steps", "value": "7"}),
            )]),
            Step::Text("Waiting.".into()),
        ],
    );
    for _ in 0..4 {
        mock.script("w1", vec![Step::Text("Nothing for me yet.".into())]);
    }
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    let file = format!(
        "name = \"cf\"\nboard = false\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\n\
         base_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n[[teammates]]\nname = \"w1\"\n",
        mock.base_url()
    );
    sb.write_team_file(&file);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("w1 asked its model", T, || !mock.requests("w1").is_empty());
    assert_eq!(models_of(&mock, "w1"), ["mock-1"]);
    // The leader changed a role's max_steps with its tool.
    wait_for("the leader's setting", T, || {
        sb.ok(&["config", "show", "--json"])
            .contains("\"role.worker.max_steps\"")
    });

    // A role's model: the running w1 keeps its own until it starts again.
    let out: serde_json::Value =
        serde_json::from_str(&sb.ok(&["config", "set", "role.worker.model", "mock-2", "--json"]))
            .unwrap();
    assert_eq!(
        out,
        json!({"key": "role.worker.model", "value": "mock-2", "applies": "next_start"})
    );
    sb.ok(&["restart", "w1"]);
    wait_for("w1's request after the restart", T, || {
        mock.requests("w1").len() >= 2
    });
    assert_eq!(models_of(&mock, "w1"), ["mock-1", "mock-2"]);
    // A member's model wins over its role's; its role changes at its next start too.
    sb.ok(&["config", "set", "member.w1.model", "mock-3"]);
    sb.ok(&["config", "set", "member.w1.role", "reviewer"]);
    // `up` reads the file again: the settings stay.
    sb.write_team_file(&file);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    sb.ok(&["restart", "w1"]);
    wait_for("w1's request after the second restart", T, || {
        mock.requests("w1").len() >= 3
    });
    assert_eq!(models_of(&mock, "w1")[2], "mock-3");
    assert_eq!(sb.agent("cf", "w1").role, "reviewer");
    // A bad setting is refused, naming what there is.
    let bad = sb.run(&["config", "set", "role.nobody.model", "m"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no role \"nobody\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = sb.run(&["config", "set", "colour", "red"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown setting"));
    // max_teammates: at the next spawn.
    sb.ok(&["config", "set", "max_teammates", "1"]);
    let refused = sb.run(&["spawn", "worker", "--name", "w2"]);
    assert!(
        !refused.status.success(),
        "a second teammate past max_teammates 1"
    );
    // show: every setting, those changed marked.
    let shown: serde_json::Value =
        serde_json::from_str(&sb.ok(&["config", "show", "--json"])).unwrap();
    assert_eq!(
        shown["overrides"],
        json!({"max_teammates": "1", "member.w1.model": "mock-3", "member.w1.role": "reviewer",
               "role.worker.max_steps": "7", "role.worker.model": "mock-2"})
    );
    let row = |k: &str| {
        shown["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {shown}"))
    };
    assert_eq!(row("role.worker.model")["value"], "mock-2");
    assert_eq!(row("role.worker.model")["set"], true);
    assert_eq!(row("role.reviewer.model")["value"], "mock-1");
    assert_eq!(row("role.reviewer.model")["set"], false);
    // Over REST: the default model, for every role that took [defaults]' model.
    let srv = agent_team_e2e::web::Server::start(&mut sb);
    let (code, body) = srv.post(
        "/v1/teams/cf/config",
        json!({"key": "defaults.model", "value": "mock-9"}),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["applies"], "next_start", "{body}");
    let (code, body) = srv.post(
        "/v1/teams/cf/config",
        json!({"key": "role.x.model", "value": "m"}),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    drop(srv);
    let shown: serde_json::Value =
        serde_json::from_str(&sb.ok(&["config", "show", "--json"])).unwrap();
    let value = |k: &str| {
        shown["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .map(|s| s["value"].clone())
    };
    assert_eq!(value("role.reviewer.model"), Some(json!("mock-9")));
    assert_eq!(
        value("role.worker.model"),
        Some(json!("mock-2")),
        "its own wins"
    );
    // Reset: all back to the file's, one event each change.
    sb.ok(&["config", "reset"]);
    let shown: serde_json::Value =
        serde_json::from_str(&sb.ok(&["config", "show", "--json"])).unwrap();
    assert_eq!(shown["overrides"], json!({}));
    let events: Vec<Envelope> = sb
        .ok(&["events"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let changes: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ConfigChanged { key, by, .. } => Some((key.clone(), by.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 7, "{changes:?}");
    assert_eq!(
        changes[0],
        ("role.worker.max_steps".into(), "leader".into())
    );
    assert_eq!(changes[5], ("defaults.model".into(), "operator".into()));
    assert_eq!(changes[6], ("*".into(), "operator".into()));
    sb.ok(&["down"]);
}

/// Issue 61 item 3: a leader written for Qwen Code's agent team, using only its tool names
/// and fields (team_create → task_create → agent → task_update → send_message →
/// team_delete), works a board end to end; its teammate, of a role with the same
/// `tool_names = "qwen"`, claims and finishes with task_update. Both are offered Qwen Code's
/// names and schemas instead of ours.
#[test]
fn a_qwen_leader_works_the_board_with_qwen_names_only() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                (
                    "team_create",
                    json!({"team_name": "web", "description": "two files"}),
                ),
                (
                    "task_create",
                    json!({"subject": "first", "description": "write one", "activeForm": "Writing one"}),
                ),
                (
                    "task_create",
                    json!({"subject": "second", "description": "write two", "blockedBy": ["1"]}),
                ),
                (
                    "agent",
                    json!({"description": "a writer", "prompt": "Claim task 1 and do it (marker-q1)", "subagent_type": "worker", "name": "q1"}),
                ),
            ]),
            Step::Until {
                needles: vec!["q1-done-1".into()],
                then: Box::new(Step::tools(&[(
                    "task_update",
                    json!({"taskId": "2", "owner": "q1"}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for q1.".into())),
            },
            Step::Until {
                needles: vec!["q1-done-2".into()],
                then: Box::new(Step::tools(&[
                    ("task_list", json!({})),
                    ("send_message", json!({"to": "*", "message": "thanks, all done"})),
                ])),
                meanwhile: Box::new(Step::Text("Waiting for q1.".into())),
            },
            Step::TextAndTools(
                "Both tasks are done (qwen-final).".into(),
                vec![("team_delete".into(), json!({}))],
            ),
            Step::Text("Finished.".into()),
        ],
    );
    mock.script(
        "q1",
        vec![
            Step::Until {
                needles: vec!["marker-q1".into()],
                then: Box::new(Step::tools(&[(
                    "task_update",
                    json!({"taskId": "1", "status": "in_progress"}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for work.".into())),
            },
            Step::tools(&[
                (
                    "task_update",
                    json!({"taskId": "1", "status": "completed", "result": "one is done"}),
                ),
                (
                    "send_message",
                    json!({"to": "leader", "message": "task 1 done (q1-done-1)", "summary": "done"}),
                ),
            ]),
            Step::Until {
                needles: vec!["Task 2 (second) is now yours".into()],
                then: Box::new(Step::tools(&[
                    (
                        "task_update",
                        json!({"taskId": "#2", "status": "completed", "result": "two is done"}),
                    ),
                    (
                        "send_message",
                        json!({"to": "leader", "message": "task 2 done (q1-done-2)"}),
                    ),
                ])),
                meanwhile: Box::new(Step::Text("Waiting for work.".into())),
            },
            Step::Text("Nothing left for me.".into()),
            Step::Text("Nothing left for me.".into()),
            Step::Text("Nothing left for me.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"qw\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\n\
         api_key_env = \"MOCK_API_KEY\"\n[roles.leader]\ntool_names = \"qwen\"\n\
         [roles.worker]\ntool_names = \"qwen\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    // team_delete ended the run with the text of its turn as the answer.
    assert!(out.contains("Both tasks are done (qwen-final)."), "{out}");

    // Both tasks done by q1, the second blocked by the first (blockedBy).
    let tasks: Vec<Task> =
        serde_json::from_str(&sb.ok(&["--team", "qw", "task", "list", "--json"])).unwrap();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    for t in &tasks {
        assert_eq!(t.status, TaskStatus::Completed, "{tasks:?}");
        assert_eq!(t.owner.as_deref(), Some("q1"), "{tasks:?}");
    }
    assert_eq!(tasks[0].title, "first");
    assert_eq!(tasks[0].description, "write one");
    assert_eq!(tasks[1].blocked_by, vec![1], "{tasks:?}");
    let q1: AgentInfo =
        serde_json::from_str::<Vec<AgentInfo>>(&sb.ok(&["--team", "qw", "ps", "--json"]))
            .unwrap()
            .into_iter()
            .find(|a| a.name == "q1")
            .unwrap();
    assert_eq!(q1.role, "worker");

    // Offered under Qwen Code's names and schemas, ours gone where Qwen has a counterpart.
    let offered = |agent: &str| -> Vec<String> {
        let first = &mock.requests(agent)[0];
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let leader_tools = offered("leader");
    for n in [
        "team_create",
        "team_delete",
        "task_create",
        "task_update",
        "task_list",
        "agent",
        "send_message",
    ] {
        assert!(leader_tools.iter().any(|t| t == n), "{n}: {leader_tools:?}");
    }
    for n in [
        "create_task",
        "assign_task",
        "list_tasks",
        "spawn_teammate",
        "finish_team",
    ] {
        assert!(
            !leader_tools.iter().any(|t| t == n),
            "{n}: {leader_tools:?}"
        );
    }
    let q1_tools = offered("q1");
    assert!(q1_tools.iter().any(|t| t == "task_update"), "{q1_tools:?}");
    assert!(
        !q1_tools
            .iter()
            .any(|t| t == "claim_task" || t == "update_task_status"),
        "{q1_tools:?}"
    );
    let first = &mock.requests("leader")[0];
    let task_update = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "task_update")
        .unwrap();
    assert_eq!(
        task_update["function"]["parameters"]["required"],
        json!(["taskId"])
    );
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("team_delete") && system.contains("task_create"),
        "{system}"
    );

    // What each call was told: team_create was a success naming the team's members, the
    // owner alone assigned, the "*" message went to everyone.
    let leader = tool_results(&mock.requests("leader"));
    assert_eq!(leader.len(), 7, "{leader:?}");
    assert!(leader[0].contains("needs no creating"), "{leader:?}");
    assert!(leader[0].contains("leader"), "{leader:?}");
    assert!(
        leader[4].contains("task 2") && leader[4].contains("q1"),
        "{leader:?}"
    );
    let listed: serde_json::Value = serde_json::from_str(&leader[5]).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let q1r = tool_results(&mock.requests("q1"));
    assert_eq!(q1r[0], "task 1 (first) is in_progress, owner q1", "{q1r:?}");
    assert_eq!(q1r[1], "task 1 (first) is completed, owner q1", "{q1r:?}");
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}
