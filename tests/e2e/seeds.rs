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

fn tools(calls: &[(&str, serde_json::Value)]) -> Step {
    Step::Tools(
        calls
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect(),
    )
}

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
            tools(&[
                ("create_task", json!({"title": "task one"})),
                ("create_task", json!({"title": "task two"})),
                ("spawn_teammate", json!({"role": "worker", "name": "q1"})),
                (
                    "memory_set",
                    json!({"key": "notes/plan", "value": {"steps": 2}}),
                ),
            ]),
            tools(&[(
                "send_message",
                json!({"to": "q1", "text": "please claim task 1 (marker-7c1)"}),
            )]),
            tools(&[(
                "wait_for",
                json!({"tasks": [1, 2], "mode": "any", "timeout_s": 60}),
            )]),
            tools(&[(
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
                then: Box::new(tools(&[(
                    "update_task_status",
                    json!({"id": 1, "status": "in_progress"}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for work.".into())),
            },
            tools(&[("read_inbox", json!({"unread_only": false}))]),
            tools(&[("memory_list", json!({"values": true}))]),
            tools(&[(
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
