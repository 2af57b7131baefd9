//! Team strategies through the real binaries against the mock model server: `coordinator`
//! (ROUTE/DONE rounds, `max_rounds`, a bad worker name), `collaborate` in parallel and in
//! sequence, and the result object of `run --json` for each strategy, `leader` included.
//! Every worker is its own process (`--backend process`).

use agent_team_e2e::*;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

fn text(s: &str) -> Step {
    Step::Text(s.into())
}

/// Answers `then` once the request contains `needle` (the worker's task), `waiting` before.
fn on(needle: &str, then: Step) -> Step {
    Step::Until {
        needles: vec![needle.to_string()],
        then: Box::new(then),
        meanwhile: Box::new(text("Nothing for me yet.")),
    }
}

/// A team of two model workers, b1 and b2, and the leader, all on the mock.
fn sandbox(mock: &MockModel, extra: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"st\"\n{extra}\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\n\
         base_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\n\
         [[teammates]]\nname = \"b2\"\nrole = \"reviewer\"\n",
        mock.base_url()
    ));
    sb
}

/// `run --json GOAL` (plus `args`): the exit status and the result.
fn run_json(sb: &Sandbox, goal: &str, args: &[&str]) -> (bool, RunResult) {
    let mut all = vec![
        "run",
        "--backend",
        "process",
        "--timeout",
        "80",
        "--json",
        "--quiet",
    ];
    all.extend_from_slice(args);
    all.push(goal);
    let out = sb.run(&all);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match serde_json::from_value::<RunOutcome>(v.clone()).unwrap() {
        RunOutcome::Complete(r) => (out.status.success(), r),
        RunOutcome::Error { error } => panic!(
            "the run did not finish: {error:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The text of every message of a request (OpenAI wire), joined.
fn said(req: &serde_json::Value) -> String {
    req["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The strategy events and the run's end, in log order, as short strings.
fn story(sb: &Sandbox) -> Vec<String> {
    sb.events_of("st")
        .into_iter()
        .filter_map(|e| match e.event {
            Event::CoordinatorDecision {
                decision,
                worker,
                round,
                ..
            } => Some(format!(
                "decision {decision}{} r{round}",
                worker.map(|w| format!(" {w}")).unwrap_or_default()
            )),
            Event::WorkerStarted { worker, round, .. } => {
                Some(format!("started {worker} r{round}"))
            }
            Event::WorkerFinished {
                worker,
                round,
                output,
            } => Some(format!("finished {worker} r{round}: {output}")),
            Event::FinalAnswer { answer, rounds } => {
                Some(format!("final: {answer} ({rounds} rounds)"))
            }
            Event::RunFinished { success, .. } => Some(format!("run finished ({success})")),
            _ => None,
        })
        .collect()
}

/// A key of the stopped team's memory, read with the CLI.
fn memory(sb: &Sandbox, key: &str) -> serde_json::Value {
    let out = sb.ok(&["--team", "st", "memory", "get", key, "--json"]);
    let entry: MemoryEntry = serde_json::from_str(&out).unwrap();
    entry.value
}

fn outputs(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_coordinator_routes_to_two_workers_and_ends_with_done() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            text("ROUTE: b1\nWrite the opening line."),
            text("ROUTE: b2\nReview the opening line."),
            text("DONE: Once upon a time (reviewed)."),
        ],
    );
    mock.script(
        "b1",
        vec![on("Write the opening line.", text("Once upon a time."))],
    );
    mock.script(
        "b2",
        vec![on("Review the opening line.", text("Looks good."))],
    );
    let sb = sandbox(&mock, "strategy = \"coordinator\"");
    let (ok, r) = run_json(&sb, "Write a one-line story", &[]);
    assert!(ok && r.success, "{r:?}");
    assert_eq!(r.result, "Once upon a time (reviewed).");
    assert_eq!(r.strategy, TeamStrategy::Coordinator);
    assert_eq!(r.rounds, 3, "two routes and the DONE");
    assert_eq!(
        r.worker_outputs,
        outputs(&[("b1", "Once upon a time."), ("b2", "Looks good.")])
    );
    // Each ROUTE was a task assigned to its worker on the board, with its result.
    let tasks: Vec<(String, String, TaskStatus, Option<String>)> = r
        .tasks
        .iter()
        .map(|t| {
            (
                t.title.clone(),
                t.owner.clone().unwrap_or_default(),
                t.status,
                t.result.clone(),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        vec![
            (
                "Round 1: Write the opening line.".to_string(),
                "b1".to_string(),
                TaskStatus::Completed,
                Some("Once upon a time.".to_string())
            ),
            (
                "Round 2: Review the opening line.".to_string(),
                "b2".to_string(),
                TaskStatus::Completed,
                Some("Looks good.".to_string())
            ),
        ]
    );
    let listed = sb.ok(&["--team", "st", "task", "list", "--json"]);
    assert!(
        listed.contains("Round 2: Review the opening line."),
        "{listed}"
    );
    // The coordinator's prompts: workers, task, and the outputs so far.
    let asked: Vec<String> = mock.requests("leader").iter().map(said).collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked[0].contains("Your name is leader."), "{}", asked[0]);
    assert!(
        asked[0].contains("- b1: ")
            && asked[0].contains("- b2: ")
            && asked[0].contains("Write a one-line story")
            && asked[0].contains("(none yet)"),
        "{}",
        asked[0]
    );
    assert!(
        asked[1].contains("Round 1, b1:\nOnce upon a time."),
        "{}",
        asked[1]
    );
    assert!(
        asked[2].contains("Round 1, b1:\nOnce upon a time.")
            && asked[2].contains("Round 2, b2:\nLooks good."),
        "{}",
        asked[2]
    );
    assert_eq!(
        story(&sb),
        vec![
            "decision route b1 r1",
            "started b1 r1",
            "finished b1 r1: Once upon a time.",
            "decision route b2 r2",
            "started b2 r2",
            "finished b2 r2: Looks good.",
            "decision done r3",
            "final: Once upon a time (reviewed). (3 rounds)",
            "run finished (true)",
        ]
    );
    assert_eq!(memory(&sb, "outputs/b1"), json!("Once upon a time."));
    assert_eq!(memory(&sb, "outputs/b2"), json!("Looks good."));
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

#[test]
fn max_rounds_without_done_ends_with_every_workers_output_and_no_success() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![text("ROUTE: b1\nDraft it."), text("ROUTE: b2\nPolish it.")],
    );
    mock.script("b1", vec![on("Draft it.", text("a draft"))]);
    mock.script("b2", vec![on("Polish it.", text("a polished draft"))]);
    // lauren-ai's own custom prompt, word for word (single braces).
    let sb = sandbox(
        &mock,
        "strategy = \"coordinator\"\nmax_rounds = 2\ncoordinator_prompt = \"\"\"\
         Workers: {worker_descriptions}\nTask: {task}\nPrior: {prior_outputs}\n\
         Reply with ROUTE: <name> or DONE: <answer>\"\"\"",
    );
    let (ok, r) = run_json(&sb, "Write something", &[]);
    assert!(!ok, "a run without success exits non-zero");
    // The coordinator saw the task and the workers, filled as lauren fills them.
    let asked = said(&mock.requests("leader")[0]);
    assert!(
        asked.contains("Task: Write something\nPrior: (none yet)") && asked.contains("- b1: "),
        "{asked}"
    );
    assert!(!asked.contains("{task}"), "{asked}");
    // lauren's event fields: the decision's text, the worker's task, the rounds.
    let ev = sb.events_of("st");
    assert!(ev.iter().any(|e| matches!(&e.event,
        Event::CoordinatorDecision { text, .. } if text == "ROUTE: b1\nDraft it.")));
    assert!(ev.iter().any(|e| matches!(&e.event,
        Event::WorkerStarted { worker, task, .. }
            if worker == "b2" && task.starts_with("Polish it.\n\n(The team's goal: Write something)"))));
    assert!(!r.success);
    assert_eq!(
        r.result, "b1: a draft\n\nb2: a polished draft",
        "every worker's output is the answer, as lauren gives it"
    );
    assert_eq!((r.strategy, r.rounds), (TeamStrategy::Coordinator, 2));
    assert_eq!(
        r.worker_outputs,
        outputs(&[("b1", "a draft"), ("b2", "a polished draft")])
    );
    assert_eq!(
        mock.requests("leader").len(),
        2,
        "no third round is asked for"
    );
    let s = story(&sb);
    assert!(!s.iter().any(|e| e.starts_with("decision done")), "{s:?}");
    assert_eq!(
        s[s.len() - 2..],
        [
            "final: b1: a draft\n\nb2: a polished draft (2 rounds)".to_string(),
            "run finished (false)".to_string()
        ]
    );
}

#[test]
fn a_bad_route_is_told_back_once_then_spends_the_round() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            text("ROUTE: nobody\nDo it."),
            text("I would rather not decide."),
            text("ROUTE: b1\nDo it."),
            text("DONE: done by b1"),
        ],
    );
    mock.script("b1", vec![on("Do it.", text("did it"))]);
    mock.script("b2", vec![]);
    let sb = sandbox(&mock, "strategy = \"coordinator\"\nmax_rounds = 3");
    let (ok, r) = run_json(&sb, "Get it done", &["--strategy", "coordinator"]);
    assert!(ok && r.success, "{r:?}");
    assert_eq!((r.result.as_str(), r.rounds), ("done by b1", 3));
    assert_eq!(r.worker_outputs, outputs(&[("b1", "did it")]));
    let asked: Vec<String> = mock.requests("leader").iter().map(said).collect();
    assert_eq!(asked.len(), 4, "{asked:?}");
    // Told back in the same round, with the workers' names...
    assert!(
        asked[1].contains("there is no worker \"nobody\"") && asked[1].contains("b1, b2"),
        "{}",
        asked[1]
    );
    // ...then the round was spent: round 2 starts afresh, nothing told back.
    assert!(
        !asked[2].contains("could not be used") && asked[2].contains("(none yet)"),
        "{}",
        asked[2]
    );
    assert_eq!(
        story(&sb),
        vec![
            "decision invalid r1",
            "decision invalid r1",
            "decision route b1 r2",
            "started b1 r2",
            "finished b1 r2: did it",
            "decision done r3",
            "final: done by b1 (3 rounds)",
            "run finished (true)",
        ]
    );
    // b2 never got a task (only its greeting turn, if any, reached the mock).
    assert!(
        r.tasks.iter().all(|t| t.owner.as_deref() == Some("b1")),
        "{:?}",
        r.tasks
    );
}

#[test]
fn collaborate_in_parallel_gives_every_worker_the_goal_at_once_then_synthesises() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let gate = Gate::new();
    const GOAL: &str = "Name a colour and a fruit";
    // b1's answer is held until b2 has its task too: run one after the other, b2 would never
    // get it while b1 waits, and the wait below would fail.
    mock.script(
        "b1",
        vec![on(GOAL, Step::Gate(gate.clone(), Box::new(text("blue"))))],
    );
    mock.script("b2", vec![on(GOAL, text("apple"))]);
    mock.script("leader", vec![text("A blue apple.")]);
    let mut sb = sandbox(&mock, "strategy = \"collaborate\"");
    let has_goal = |agent: &str| mock.requests(agent).iter().any(|r| said(r).contains(GOAL));
    let run = sb.spawn(&[
        "run",
        "--backend",
        "process",
        "--timeout",
        "80",
        "--json",
        "--quiet",
        GOAL,
    ]);
    wait_for(
        "both workers asking their model about the goal at the same time",
        Duration::from_secs(40),
        || has_goal("b1") && has_goal("b2"),
    );
    assert!(!gate.is_open());
    gate.open();
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    // The pretty-printed result object is the last thing on stdout.
    let start = out.rfind("\n{\n").map(|i| i + 1).unwrap_or(0);
    let first = serde_json::Deserializer::from_str(&out[start..])
        .into_iter::<RunOutcome>()
        .next();
    let Some(Ok(RunOutcome::Complete(r))) = first else {
        panic!("{out}")
    };
    assert_eq!(r.result, "A blue apple.");
    assert_eq!((r.strategy, r.rounds), (TeamStrategy::Collaborate, 1));
    assert_eq!(
        r.worker_outputs,
        outputs(&[("b1", "blue"), ("b2", "apple")])
    );
    // The synthesis call got the goal and both outputs.
    let leader: Vec<String> = mock.requests("leader").iter().map(said).collect();
    assert_eq!(leader.len(), 1, "{leader:?}");
    assert!(
        leader[0].contains(GOAL)
            && leader[0].contains("### b1\nblue")
            && leader[0].contains("### b2\napple"),
        "{}",
        leader[0]
    );
    let s = story(&sb);
    assert_eq!(
        s[..2],
        ["started b1 r1".to_string(), "started b2 r1".to_string()]
    );
    assert!(s.contains(&"finished b1 r1: blue".to_string()), "{s:?}");
    assert_eq!(
        s[s.len() - 2..],
        [
            "final: A blue apple. (1 rounds)".to_string(),
            "run finished (true)".to_string()
        ]
    );
    assert_eq!(memory(&sb, "outputs/b2"), json!("apple"));
}

#[test]
fn collaborate_in_sequence_hands_each_worker_the_outputs_so_far() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    const GOAL: &str = "Plan a picnic";
    mock.script("b1", vec![on(GOAL, text("bring bread"))]);
    mock.script("b2", vec![on(GOAL, text("bring cheese for the bread"))]);
    mock.script("leader", vec![text("Bread and cheese.")]);
    let sb = sandbox(
        &mock,
        "strategy = \"collaborate\"\ncollaborate_order = \"sequential\"",
    );
    let (ok, r) = run_json(&sb, GOAL, &[]);
    assert!(ok && r.success, "{r:?}");
    assert_eq!(r.result, "Bread and cheese.");
    assert_eq!((r.strategy, r.rounds), (TeamStrategy::Collaborate, 2));
    // b2's task came with b1's output; b1's with none.
    let b2 = mock
        .requests("b2")
        .iter()
        .map(said)
        .find(|s| s.contains(GOAL))
        .unwrap();
    assert!(b2.contains("### b1\nbring bread"), "{b2}");
    let b1 = mock
        .requests("b1")
        .iter()
        .map(said)
        .find(|s| s.contains(GOAL))
        .unwrap();
    assert!(!b1.contains("###"), "{b1}");
    let synthesis = said(&mock.requests("leader")[0]);
    assert!(
        synthesis.contains("### b1\nbring bread")
            && synthesis.contains("### b2\nbring cheese for the bread"),
        "{synthesis}"
    );
    assert_eq!(
        story(&sb),
        vec![
            "started b1 r1",
            "finished b1 r1: bring bread",
            "started b2 r2",
            "finished b2 r2: bring cheese for the bread",
            "final: Bread and cheese. (2 rounds)",
            "run finished (true)",
        ]
    );
}

#[test]
fn a_leader_run_reports_its_turns_and_the_teammates_results() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::Tools(vec![(
                "create_task".into(),
                json!({"title": "write the note", "assign": "b1"}),
            )]),
            Step::Until {
                needles: vec!["b1 is done".into()],
                then: Box::new(Step::Tools(vec![(
                    "finish_team".into(),
                    json!({"answer": "the note is written"}),
                )])),
                meanwhile: Box::new(text("Waiting for b1.")),
            },
        ],
    );
    mock.script(
        "b1",
        vec![on(
            "write the note",
            Step::Tools(vec![
                (
                    "update_task_status".into(),
                    json!({"id": 1, "status": "completed", "result": "note written"}),
                ),
                (
                    "send_message".into(),
                    json!({"to": "leader", "text": "b1 is done"}),
                ),
            ]),
        )],
    );
    mock.script("b2", vec![]);
    let sb = sandbox(&mock, "");
    let (ok, r) = run_json(&sb, "Write a note", &[]);
    assert!(ok && r.success, "{r:?}");
    assert_eq!(r.result, "the note is written");
    assert_eq!(r.strategy, TeamStrategy::Leader);
    assert_eq!(
        r.rounds as usize,
        mock.requests("leader").len(),
        "rounds are the leader's model turns"
    );
    assert!(r.rounds >= 2, "{r:?}");
    assert_eq!(r.worker_outputs, outputs(&[("b1", "note written")]));
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(r.tasks[0].status, TaskStatus::Completed);
    // The leader strategy records none of the strategy events.
    assert_eq!(story(&sb), vec!["run finished (true)"]);
}

#[test]
fn a_strategy_needs_workers_and_a_model_leader() {
    let sb = Sandbox::new();
    sb.write_team_file("name = \"st\"\nstrategy = \"coordinator\"\n");
    let out = sb.run(&["run", "--backend", "process", "--json", "go"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("strategy coordinator needs workers"), "{err}");
    sb.write_team_file("name = \"st\"\n[[teammates]]\nname = \"b1\"\n");
    let out = sb.run(&[
        "run",
        "--strategy",
        "collaborate",
        "--backend",
        "process",
        "go",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a leader that drives a model"), "{err}");
    let out = sb.run(&["run", "--strategy", "round-robin", "go"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown strategy"),
        "{err}"
    );
}

#[test]
fn a_worker_that_connects_after_its_task_was_given_still_does_it() {
    // The leader gives b1 its task as soon as the run starts; b1's process connects only
    // after that (a gate), so no task push can tell it: it must find the task on the board.
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    const GOAL: &str = "Plan a picnic";
    mock.script("b1", vec![on(GOAL, text("bring bread"))]);
    mock.script("b2", vec![on(GOAL, text("bring cheese"))]);
    mock.script("leader", vec![text("Bread and cheese.")]);
    let probe = Sandbox::new();
    let gate = probe.path("gate");
    let sb = sandbox(
        &mock,
        &format!(
            "strategy = \"collaborate\"\ncollaborate_order = \"sequential\"\n\
             [roles.worker]\ncommand = [\"sh\", \"-c\", \"while [ ! -f {} ]; do sleep 0.02; done; exec {}\"]",
            gate.display(),
            bin("agent-team-worker").display()
        ),
    );
    let opener = {
        let (home, run, gate) = (
            sb.paths.home.clone(),
            sb.paths.runtime.clone(),
            gate.clone(),
        );
        std::thread::spawn(move || {
            // Open the gate once task 1 is on the board, given to b1.
            let tp = agent_team_paths::Paths::new(home, run).team("st").unwrap();
            wait_for("task 1 given to b1", T, || {
                agent_team_client::Client::operator(&tp)
                    .ok()
                    .and_then(|mut c| c.all_tasks(None).ok())
                    .is_some_and(|t| {
                        t.iter()
                            .any(|t| t.id == 1 && t.owner.as_deref() == Some("b1"))
                    })
            });
            std::fs::write(&gate, "open").unwrap();
        })
    };
    let (ok, r) = run_json(&sb, GOAL, &[]);
    opener.join().unwrap();
    assert!(ok && r.success, "{r:?}");
    assert_eq!(
        r.worker_outputs.get("b1").map(String::as_str),
        Some("bring bread")
    );
}

/// lauren-ai's `TeamMemory` is fresh for each `run()`: with `memory = "run"` a run starts with
/// no keys, and `memory list --values` gives every value (lauren's `get_all()`).
#[test]
fn memory_per_run_starts_each_run_empty_and_lists_with_values() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    for (goal, a, b) in [
        ("first goal", "one", "two"),
        ("second goal", "three", "four"),
    ] {
        mock.script("b1", vec![on(goal, text(a))]);
        mock.script("b2", vec![on(goal, text(b))]);
        mock.script("leader", vec![text("synthesised")]);
    }
    let sb = sandbox(
        &mock,
        "strategy = \"collaborate\"\ncollaborate_order = \"sequential\"\nmemory = \"run\"",
    );
    let (ok, _) = run_json(&sb, "first goal", &[]);
    assert!(ok);
    let all = |sb: &Sandbox| -> serde_json::Value {
        serde_json::from_str(&sb.ok(&["--team", "st", "memory", "list", "--values", "--json"]))
            .unwrap()
    };
    assert_eq!(all(&sb), json!({"outputs/b1": "one", "outputs/b2": "two"}));
    // Without --json: each key and its whole value.
    let listed = sb.ok(&["--team", "st", "memory", "list", "--values"]);
    assert_eq!(listed, "outputs/b1:\none\noutputs/b2:\ntwo\n");
    // A key of the operator's between runs does not survive the next run either.
    sb.ok(&["--team", "st", "memory", "set", "notes/extra", "1"]);
    let (ok, _) = run_json(&sb, "second goal", &[]);
    assert!(ok);
    assert_eq!(
        all(&sb),
        json!({"outputs/b1": "three", "outputs/b2": "four"})
    );
}
