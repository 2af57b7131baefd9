//! The end of a run waits for the teammates' last turns: a report sent after the last task
//! reaches the leader's inbox and `run --json` (issue 26, item 3).

use agent_team_e2e::*;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// An `exec` leader, one model teammate `b1` with the only task; b1 completes it, and only
/// when the gate opens sends its report to the leader. The gate opens once the leader is
/// waiting for the last turns, or (as it did before) once the run has finished and the
/// leader has exited: then the report was refused with `not_found`.
#[test]
fn an_exec_leader_waits_for_a_report_sent_after_the_last_task() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let gate = Gate::new();
    // b1 starts beside the leader, which puts the task on the board after its spawn calls:
    // b1's first turn completes it once it is there (before, it could come first and find
    // no task 1).
    let on_board = Gate::new();
    mock.script(
        "b1",
        vec![
            Step::Gate(
                on_board.clone(),
                Box::new(Step::Tools(vec![(
                    "update_task_status".into(),
                    json!({"id": 1, "status": "completed", "result": "built"}),
                )])),
            ),
            Step::Gate(
                gate.clone(),
                Box::new(Step::Tools(vec![(
                    "send_message".into(),
                    json!({"to": "leader", "text": "final report from b1: all built"}),
                )])),
            ),
            Step::Text("done".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"end\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [roles.worker]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"build\"\ntitle = \"build it\"\nassign = \"b1\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--json", "--timeout", "60", "--quiet"]);
    wait_for("the task on the board", T, || {
        agent_team_client::Client::operator(&sb.team("end"))
            .and_then(|mut c| c.all_tasks(None))
            .is_ok_and(|tasks| tasks.iter().any(|t| t.id == 1))
    });
    on_board.open();
    let leader_log = sb.team("end").agent_log("leader");
    wait_for("the leader waiting, or the run over", T, || {
        let waiting =
            std::fs::read_to_string(&leader_log).is_ok_and(|l| l.contains("waiting up to"));
        let over = agent_team_client::Client::operator(&sb.team("end")).is_ok_and(|mut c| {
            let finished = matches!(
                c.call(Request::TeamInfo),
                Ok(Reply::Team { team }) if team.run != RunState::Running
            );
            let exited = matches!(
                c.call(Request::Agents),
                Ok(Reply::Agents { agents })
                    if agents.iter().any(|a| a.name == "leader" && a.status.is_down())
            );
            finished && exited
        });
        waiting || over
    });
    gate.open();
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    let start = out.find('{').unwrap_or(0);
    let result: Value =
        serde_json::from_str(&out[start..]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        result["reports"]["b1"],
        json!("final report from b1: all built"),
        "{result:#}"
    );
    let inbox: Vec<Message> =
        serde_json::from_str(&sb.ok(&["--team", "end", "inbox", "leader", "--json"])).unwrap();
    assert!(
        inbox
            .iter()
            .any(|m| m.from == "b1" && m.body.contains("final report from b1")),
        "{inbox:#?}"
    );
    // b1 was never told the leader could not receive it.
    let requests = mock.requests("b1");
    assert!(
        !requests
            .iter()
            .any(|r| r.to_string().contains("can receive messages")),
        "{requests:?}"
    );
}
