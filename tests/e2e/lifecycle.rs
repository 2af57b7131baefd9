//! Issue 15: the leader manages its team (`spawn_team`, `wait_for`, `close_teammate`,
//! `resume_teammate`, the one-level depth), members with their own model and instructions,
//! colours and `name@team` identities, and `up -n N`, against the mock model server.

use agent_team_e2e::*;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

fn sandbox_for(mock: &MockModel, extra: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"lc\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n{extra}",
        mock.base_url()
    ));
    sb
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The roster as `ps --json` gives it.
fn roster(sb: &Sandbox) -> Vec<Value> {
    json_of(&sb.ok(&["--team", "lc", "ps", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn agent<'a>(agents: &'a [Value], name: &str) -> Option<&'a Value> {
    agents.iter().find(|a| a["name"] == name)
}

/// The system prompt of a request body.
fn system_of(req: &Value) -> String {
    req["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_leader_spawns_a_team_waits_closes_and_resumes_a_teammate() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let gate = Gate::new();
    mock.script(
        "leader",
        vec![
            // All or nothing: one bad member, nobody is spawned.
            Step::tools(&[(
                "spawn_team",
                json!({"members": [
                    {"name": "ok1", "role": "worker"},
                    {"name": "bad1", "role": "no-such-role"},
                ]}),
            )]),
            Step::tools(&[(
                "spawn_team",
                json!({"members": [
                    {"name": "w1", "role": "worker"},
                    {"name": "w2", "role": "worker", "model": "special-model"},
                    {"name": "w3", "role": "worker", "instructions": "SECRET-INSTRUCTION-XYZ"},
                ]}),
            )]),
            Step::tools(&[(
                "wait_for",
                json!({"teammates": ["w1", "w2", "w3"], "timeout_s": 60}),
            )]),
            Step::tools(&[("create_task", json!({"title": "long job", "assign": "w1"}))]),
            Step::tools(&[(
                "close_teammate",
                json!({"name": "w1", "reason": "not needed now"}),
            )]),
            // Held until the test has seen w1 stopped and its task pending.
            Step::Gate(
                gate.clone(),
                Box::new(Step::tools(&[(
                    "send_message",
                    json!({"to": "w1", "text": "MSG-WHILE-DOWN"}),
                )])),
            ),
            Step::tools(&[(
                "resume_teammate",
                json!({"name": "w1", "message": "RESUME-MSG"}),
            )]),
            Step::Until {
                needles: vec!["w1 is back".into()],
                then: Box::new(Step::tools(&[(
                    "finish_team",
                    json!({"answer": "lifecycle done", "force": true}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for w1.".into())),
            },
        ],
    );
    mock.script(
        "w1",
        vec![
            Step::Text("ready".into()),
            // Given the task: holds it in progress.
            Step::Text("working on it".into()),
            // Resumed: reports back.
            Step::tools(&[(
                "send_message",
                json!({"to": "leader", "text": "w1 is back"}),
            )]),
            Step::Text("ok".into()),
        ],
    );
    mock.script(
        "w2",
        vec![
            // A teammate may not spawn: max_depth 1.
            Step::tools(&[("spawn_teammate", json!({"role": "worker", "name": "x9"}))]),
            Step::Text("understood".into()),
        ],
    );
    mock.script("w3", vec![Step::Text("ready".into())]);
    let mut sb = sandbox_for(&mock, "");
    let run = sb.spawn(&[
        "run",
        "--backend",
        "process",
        "--timeout",
        "80",
        "--quiet",
        "build it",
    ]);
    // Closed: stopped in `ps`, its task back to pending, its slot free.
    wait_for("w1 closed", T, || {
        let out = sb.run(&["--team", "lc", "ps", "--json"]);
        out.status.success()
            && serde_json::from_slice::<Vec<Value>>(&out.stdout)
                .is_ok_and(|a| agent(&a, "w1").is_some_and(|w| w["status"] == "stopped"))
    });
    let tasks = json_of(&sb.ok(&["--team", "lc", "task", "list", "--json"]));
    let task = &tasks.as_array().unwrap()[0];
    assert_eq!(task["title"], "long job");
    assert_eq!(task["status"], "pending", "{tasks}");
    assert!(task["owner"].is_null(), "{tasks}");
    let ps = sb.ok(&["--team", "lc", "ps"]);
    let w1_row = ps.lines().find(|l| l.starts_with("w1@lc")).unwrap();
    assert!(w1_row.contains("stopped"), "{ps}");
    assert!(!ps.contains('\u{1b}'), "no colour off a terminal: {ps}");
    gate.open();
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("lifecycle done"), "{out}");

    // The bad spawn_team spawned nobody, and its error named the member.
    let agents = roster(&sb);
    assert!(agent(&agents, "ok1").is_none(), "{agents:?}");
    assert!(agent(&agents, "x9").is_none(), "{agents:?}");
    let leader = mock.requests("leader");
    let told = |needle: &str| leader.iter().any(|r| r.to_string().contains(needle));
    assert!(
        told("member 2 (bad1)") && told("no teammate was spawned"),
        "{leader:?}"
    );
    // wait_for returned with every teammate settled.
    assert!(told(r#"\"done\": true"#), "{leader:?}");
    assert!(told("its slot is free"), "{leader:?}");
    // Each member has a colour, the given or the palette's; identities stay bare names.
    for a in &agents {
        assert!(a["color"].as_str().is_some_and(|c| !c.is_empty()), "{a}");
    }
    assert_eq!(agent(&agents, "leader").unwrap()["color"], "cyan");

    // w2 runs its own model; the others their role's.
    let w2 = mock.requests("w2");
    assert!(!w2.is_empty());
    assert!(w2.iter().all(|r| r["model"] == "special-model"), "{w2:?}");
    assert!(mock.requests("w1").iter().all(|r| r["model"] == "mock-1"));
    // Its spawn was refused, saying why.
    assert!(
        w2.iter().any(|r| r.to_string().contains("max_depth 1")),
        "{w2:?}"
    );
    // w3's instructions are in its system prompt, and only in its.
    let w3 = mock.requests("w3");
    assert!(
        system_of(&w3[0]).contains("SECRET-INSTRUCTION-XYZ"),
        "{w3:?}"
    );
    assert!(!system_of(&mock.requests("w1")[0]).contains("SECRET-INSTRUCTION-XYZ"));
    // A message to w1 while it was down was refused (SPEC §5.3: a stopped recipient is
    // not_found, with the names that can receive); resumed, w1 got the resume's message.
    assert!(told("no agent") || told("not_found"), "{leader:?}");
    let w1 = mock.requests("w1");
    let after = w1.last().unwrap().to_string();
    assert!(
        w1.iter().all(|r| !r.to_string().contains("MSG-WHILE-DOWN")),
        "{w1:?}"
    );
    assert!(after.contains("RESUME-MSG"), "{after}");
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}

#[test]
fn up_n_adds_workers_beside_the_team_files_members_with_their_own_settings() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script("leader", vec![Step::Text("Nothing to do yet.".into())]);
    for w in ["worker-1", "worker-2", "worker-3", "worker-4"] {
        mock.script(w, vec![Step::Text("ready".into())]);
    }
    let sb = sandbox_for(
        &mock,
        "[[teammates]]\nname = \"worker-2\"\nrole = \"worker\"\ninstructions = \"FILE-INSTRUCTION-42\"\nmodel = \"file-model\"\ncolor = \"#00ff00\"\n",
    );
    sb.ok(&["up", "--backend", "process", "--detach", "-n", "3", "go"]);
    // worker-2 is the file's: -n 3 adds worker-1, worker-3 and worker-4.
    wait_for("every worker's first request", T, || {
        ["worker-1", "worker-2", "worker-3", "worker-4"]
            .iter()
            .all(|w| !mock.requests(w).is_empty())
    });
    let agents = roster(&sb);
    let mut names: Vec<&str> = agents.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["leader", "worker-1", "worker-2", "worker-3", "worker-4"]
    );
    for a in &agents {
        if a["name"] != "leader" {
            assert_eq!(a["role"], "worker", "{a}");
        }
    }
    assert_eq!(agent(&agents, "worker-2").unwrap()["color"], "#00ff00");
    let w2 = mock.requests("worker-2");
    assert!(system_of(&w2[0]).contains("FILE-INSTRUCTION-42"), "{w2:?}");
    assert_eq!(w2[0]["model"], "file-model");
    assert_eq!(mock.requests("worker-1")[0]["model"], "mock-1");
    assert!(!system_of(&mock.requests("worker-1")[0]).contains("FILE-INSTRUCTION-42"));
    sb.ok(&["--team", "lc", "down"]);
}

/// `spawn_teammate {message}` is the new teammate's first input, and a message it had not
/// read when `close_teammate` stopped it (it was busy in a model call) reaches it once
/// `resume_teammate` brings it back: a resumed teammate comes back with its inbox.
#[test]
fn a_spawned_teammates_first_message_and_its_unread_inbox_survive_close_and_resume() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let busy = Gate::new();
    let send = Gate::new();
    mock.script(
        "leader",
        vec![
            Step::tools(&[(
                "spawn_teammate",
                json!({"role": "worker", "name": "w1", "message": "FIRST-INPUT-ABC"}),
            )]),
            // Held until w1 is inside its first model call (busy: the message stays unread).
            Step::Gate(
                send.clone(),
                Box::new(Step::tools(&[(
                    "send_message",
                    json!({"to": "w1", "text": "UNREAD-BEFORE-CLOSE"}),
                )])),
            ),
            Step::tools(&[("close_teammate", json!({"name": "w1", "reason": "pause"}))]),
            Step::tools(&[("resume_teammate", json!({"name": "w1"}))]),
            Step::Until {
                needles: vec!["w1 read it".into()],
                then: Box::new(Step::tools(&[(
                    "finish_team",
                    json!({"answer": "inbox kept", "force": true}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for w1.".into())),
            },
        ],
    );
    mock.script(
        "w1",
        vec![
            // Its first call is held: w1 is busy when the message comes and when it is closed.
            Step::Gate(busy.clone(), Box::new(Step::Text("working".into()))),
            Step::Until {
                needles: vec!["UNREAD-BEFORE-CLOSE".into()],
                then: Box::new(Step::tools(&[(
                    "send_message",
                    json!({"to": "leader", "text": "w1 read it"}),
                )])),
                meanwhile: Box::new(Step::Text("nothing new".into())),
            },
            Step::Text("ok".into()),
        ],
    );
    let mut sb = sandbox_for(&mock, "");
    let run = sb.spawn(&[
        "run",
        "--backend",
        "process",
        "--timeout",
        "80",
        "--quiet",
        "keep the inbox",
    ]);
    wait_for("w1's first model call", T, || {
        !mock.requests("w1").is_empty()
    });
    let first = mock.requests("w1")[0].to_string();
    assert!(first.contains("FIRST-INPUT-ABC"), "{first}");
    assert!(!first.contains("UNREAD-BEFORE-CLOSE"), "{first}");
    send.open();
    // Closed while its first call is still held.
    wait_for("w1 closed", T, || {
        let out = sb.run(&["--team", "lc", "ps", "--json"]);
        out.status.success()
            && serde_json::from_slice::<Vec<Value>>(&out.stdout).is_ok_and(|a| {
                agent(&a, "w1").is_some_and(|w| w["status"] == "stopped" || w["incarnation"] == 2)
            })
    });
    busy.open();
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("inbox kept"), "{out}");
    let w1: Vec<String> = mock.requests("w1").iter().map(|r| r.to_string()).collect();
    // The resumed w1 was given the message it had not read, once.
    let with = w1
        .iter()
        .filter(|r| r.contains("UNREAD-BEFORE-CLOSE"))
        .count();
    assert!(with >= 1, "{w1:?}");
    assert_eq!(
        agent(&roster(&sb), "w1").unwrap()["incarnation"],
        2,
        "closed and resumed once"
    );
}
