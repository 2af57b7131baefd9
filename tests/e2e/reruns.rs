//! A team run twice (issue 61, "re-runs"): the second run of the same team does its work with
//! teammates its leader spawns again under the names of the first run's, through the CLI's
//! `run` and over `serve`'s session stream; a run in which nothing was done and the leader never
//! finished is not a success.

use agent_team_e2e::web::*;
use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::{Value, json};
/// A model team file for the mock at `base_url`, with no declared teammates: the leader spawns
/// them.
fn model_team(sb: &mut Sandbox, name: &str, base_url: &str) {
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"{name}\"\nbackend = \"process\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\n\
         base_url = \"{base_url}\"\napi_key_env = \"MOCK_API_KEY\"\n"
    ));
}

/// One run of the leader's script: spawn `w1`, give it a task titled `title`, wait for the
/// task, finish with `answer`.
fn leader_run(id: u64, title: &str, answer: &str) -> Vec<Step> {
    vec![
        Step::tools(&[
            ("spawn_teammate", json!({"role": "worker", "name": "w1"})),
            ("create_task", json!({"title": title, "assign": "w1"})),
        ]),
        Step::tools(&[("wait_for", json!({"tasks": [id], "timeout_s": 60}))]),
        Step::tools(&[("finish_team", json!({"answer": answer}))]),
    ]
}

/// One run of w1's script: once it reads of task `id` (titled `title`), complete it.
fn worker_run(id: u64, title: &str) -> Vec<Step> {
    vec![
        Step::Until {
            needles: vec![title.to_string()],
            then: Box::new(Step::tools(&[(
                "update_task_status",
                json!({"id": id, "status": "completed", "result": format!("{title} done")}),
            )])),
            meanwhile: Box::new(Step::Text("Waiting for work.".into())),
        },
        Step::Text("Nothing left for me.".into()),
    ]
}

/// The two runs' scripts, the second run's after the first's.
fn script_two_runs(mock: &MockModel) {
    let mut leader = leader_run(1, "first-job-3d1", "first run done");
    leader.extend(leader_run(2, "second-job-8e2", "second run done"));
    mock.script("leader", leader);
    let mut w1 = worker_run(1, "first-job-3d1");
    w1.extend(worker_run(2, "second-job-8e2"));
    mock.script("w1", w1);
}

/// Task `id` of `tasks`, completed by w1.
fn done_by_w1(tasks: &[Task], id: u64) {
    let t = tasks
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no task {id} in {tasks:?}"));
    assert_eq!(t.status, TaskStatus::Completed, "{tasks:?}");
    assert_eq!(t.owner.as_deref(), Some("w1"), "{tasks:?}");
}

#[test]
fn run_twice_on_one_team_file_the_second_run_spawns_its_teammates_again_and_they_work() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    script_two_runs(&mock);
    let mut sb = Sandbox::new();
    model_team(&mut sb, "rr", &mock.base_url());
    for answer in ["first run done", "second run done"] {
        let out = sb.run(&["run", "--timeout", "60", "--quiet", "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{answer}: {stdout}\n{stderr}");
        let result: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(result["result"], answer, "{result}");
        assert_eq!(result["success"], true, "{result}");
    }
    let tasks: Vec<Task> =
        serde_json::from_str(&sb.ok(&["--team", "rr", "task", "list", "--json"])).unwrap();
    done_by_w1(&tasks, 1);
    done_by_w1(&tasks, 2);
    // The leader's second spawn and assignment went through (no conflict, no not_found).
    let leader = mock.requests("leader");
    let results: Vec<String> = leader.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        results.iter().any(|r| r == "w1 (worker) is running")
            && results
                .iter()
                .any(|r| r.starts_with("created task 2 (second-job-8e2)")),
        "{results:?}"
    );
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

#[test]
fn two_session_streams_on_one_team_the_second_run_spawns_its_teammates_again_and_they_work() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    script_two_runs(&mock);
    let mut sb = Sandbox::new();
    model_team(&mut sb, "rs", &mock.base_url());
    let srv = Server::start(&mut sb);
    let mut team = String::new();
    for (message, answer) in [("first", "first run done"), ("second", "second run done")] {
        let (t, mut sse) = srv.stream(
            json!({"user_id": "u", "session_id": "s", "message": message}),
            None,
        );
        assert!(team.is_empty() || t == team, "one session, one team");
        team = t;
        let items = sse.until_done();
        let done = &items.last().unwrap().1;
        assert_eq!(done["type"], "complete", "{done}");
        assert_eq!(done["result"], answer, "{done}");
        assert_eq!(done["success"], true, "{done}");
    }
    let (_, tasks) = srv.get(&format!("/v1/teams/{team}/tasks"));
    let tasks: Vec<Task> = serde_json::from_value(tasks["tasks"].clone()).unwrap();
    done_by_w1(&tasks, 1);
    done_by_w1(&tasks, 2);
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

/// `agent-team run --json` in `sb`: its exit status and result object.
fn run_json(sb: &Sandbox) -> (bool, Value) {
    let out = sb.run(&["run", "--timeout", "60", "--quiet", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (out.status.success(), result)
}

#[test]
fn an_offline_team_run_again_does_its_tasks_again_and_a_run_that_did_nothing_is_no_success() {
    // The team file's tasks are done again by each run.
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"ex\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"log\"\ntitle = \"log a line\"\nrun = \"echo ran >> log.txt\"\n",
    );
    for n in 1..=2 {
        let (ok, result) = run_json(&sb);
        assert!(ok, "run {n}: {result}");
        assert_eq!(result["success"], true, "run {n}: {result}");
        let log = std::fs::read_to_string(sb.path("log.txt")).unwrap();
        assert_eq!(log.lines().count(), n, "run {n}: {log:?}");
    }

    // A board an earlier run did, and nothing for this run to do: the offline leader's
    // summary finds every task completed, but the run did nothing and is not a success.
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"nd\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n",
    );
    sb.ok(&["task", "add", "once", "--run", "echo once >> once.txt"]);
    let (ok, result) = run_json(&sb);
    assert!(ok && result["success"] == true, "{result}");
    let (ok, result) = run_json(&sb);
    assert!(!ok, "{result}");
    assert_eq!(result["success"], false, "{result}");
    assert!(
        result["result"]
            .as_str()
            .unwrap()
            .contains("no task was done in this run"),
        "{result}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("once.txt")).unwrap(),
        "once\n"
    );
}
