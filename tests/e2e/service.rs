//! `agent-team serve` through the real binary (issue "the team as a service"): the NexAU
//! stream of an exec team and of a model team, resume with Last-Event-ID, the token, REST
//! actions (approve, message, kill, restart, up, down), a daemon killed mid-session, and
//! the web board in a real headless browser.

use agent_team_e2e::web::*;
use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// An exec team: b1 runs two tasks, the second after the first.
fn exec_team(sb: &Sandbox, extra: &str) {
    sb.write_team_file(&format!(
        "name = \"svc\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n[[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"a\"\ntitle = \"task a\"\nrun = \"echo alpha > a.txt\"\n\
         [[tasks]]\nkey = \"b\"\ntitle = \"task b\"\nrun = \"cat a.txt\"\nafter = [\"a\"]\n{extra}"
    ));
}

/// Checks the shape of a finished session stream and returns its envelopes.
fn check_stream(team: &str, items: &[(Option<u64>, Value)]) -> Vec<Value> {
    let (last, events) = items.split_last().unwrap();
    assert_eq!(last.1["type"], "complete", "{last:?}");
    assert!(last.0.is_none());
    let mut prev = None;
    let mut envs = vec![];
    for (id, item) in events {
        assert_eq!(item["type"], "team_event", "{item}");
        let env = &item["envelope"];
        let seq = env["seq"].as_u64().unwrap();
        assert_eq!(*id, Some(seq), "the SSE id is the envelope's seq");
        if let Some(p) = prev {
            assert_eq!(seq, p + 1, "no gap and no repeat in the stream");
        }
        prev = Some(seq);
        assert_eq!(env["team_id"], team);
        assert!(
            env["agent_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{env}"
        );
        assert!(
            env["role_name"].as_str().is_some_and(|s| !s.is_empty()),
            "{env}"
        );
        assert!(env["ts"].as_str().is_some(), "{env}");
        assert!(env["event"]["type"].as_str().is_some(), "{env}");
        envs.push(env.clone());
    }
    envs
}

/// Resumes `user`'s session s1 with Last-Event-ID at the middle of `envs` (its first stream's
/// envelopes), checks that exactly the envelopes after it come again, and returns the team
/// and the closing `complete` item.
fn resume_from_the_middle(srv: &Server, user: &str, envs: &[Value]) -> (String, Value) {
    let mid = envs[envs.len() / 2]["seq"].as_u64().unwrap();
    let (team, mut sse) = srv.stream(
        json!({"user_id": user, "session_id": "s1", "message": "not sent"}),
        Some(mid),
    );
    let resumed = sse.until_done();
    let want: Vec<&Value> = envs
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > mid)
        .collect();
    let got: Vec<&Value> = resumed[..resumed.len() - 1]
        .iter()
        .map(|(_, v)| &v["envelope"])
        .collect();
    assert_eq!(got, want);
    (team, resumed.last().unwrap().1.clone())
}

#[test]
fn a_session_streams_its_exec_team_resumes_and_each_user_gets_a_team() {
    let mut sb = Sandbox::new();
    exec_team(
        &sb,
        "[variables]\nwho = \"the file\"\n[[tasks]]\nkey = \"v\"\ntitle = \"greet {{who}}\"\nrun = \"echo {{who}} > who.txt\"\n",
    );
    let srv = Server::start(&mut sb);

    // No token, a wrong token: 401 and nothing else, no team made.
    for auth in [None, Some("Bearer nope-nope-nope-nope")] {
        let mut r = srv
            .http
            .post(format!("{}/team/stream", srv.base))
            .json(&json!({"user_id": "alice", "session_id": "s1", "message": "go"}));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let resp = r.send().unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert_eq!(srv.get("/v1/teams").1["teams"], json!([]));

    let (team, mut sse) = srv.stream(
        json!({"user_id": "alice", "session_id": "s1", "message": "build the report for {{who}}", "variables": {"who": "alice"}}),
        None,
    );
    let items = sse.until_done();
    // The request's variables fill the goal and the tasks, over the file's.
    assert_eq!(
        std::fs::read_to_string(sb.path("who.txt")).unwrap(),
        "alice\n"
    );
    let envs = check_stream(&team, &items);
    assert_eq!(envs[0]["event"]["type"], "RUN_STARTED");
    assert_eq!(envs[0]["event"]["goal"], "build the report for alice");
    let done = &items.last().unwrap().1;
    assert_eq!(done["success"], true);
    assert!(
        done["result"].as_str().unwrap().contains("3 completed"),
        "{done}"
    );
    // The answer is the leader's own, as RUN_FINISHED says.
    let finished = envs
        .iter()
        .find(|e| e["event"]["type"] == "RUN_FINISHED")
        .unwrap();
    assert_eq!(finished["event"]["answer"], done["result"]);
    assert!(sb.path("a.txt").exists());
    // Every agent's events are tagged with it.
    for agent in ["leader", "b1"] {
        assert!(envs.iter().any(|e| e["agent_id"] == agent), "{agent}");
    }

    // A reconnect with Last-Event-ID gets exactly the events after it, then complete.
    let (again, end) = resume_from_the_middle(&srv, "alice", &envs);
    assert_eq!(again, team, "the same pair names the same team");
    assert_eq!(
        (&end["type"], &end["result"], &end["success"]),
        (&done["type"], &done["result"], &done["success"])
    );
    // The resume sent nothing: no second run started.
    let (_, info) = srv.get(&format!("/v1/teams/{team}"));
    assert_eq!(info["goal"], "build the report for alice");

    // Another user (and another session) gets another team of its own.
    let (bob, mut sse) = srv.stream(
        json!({"user_id": "bob", "session_id": "s1", "message": "bob's goal"}),
        None,
    );
    assert_ne!(bob, team);
    check_stream(&bob, &sse.until_done());
    assert_eq!(
        std::fs::read_to_string(sb.path("who.txt")).unwrap(),
        "the file\n"
    );
    // An unknown placeholder is refused before anything starts.
    let resp = srv
        .http
        .post(format!("{}/team/stream", srv.base))
        .bearer_auth(TOKEN)
        .json(&json!({"user_id": "erin", "session_id": "x", "message": "{{nope}}"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let (_, teams) = srv.get("/v1/teams");
    let names: Vec<&str> = teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&team.as_str()) && names.contains(&bob.as_str()),
        "{names:?}"
    );

    // The same session again, after its run finished: a new run with the new message.
    let (same, mut sse) = srv.stream(
        json!({"user_id": "alice", "session_id": "s1", "message": "second turn"}),
        None,
    );
    assert_eq!(same, team);
    let envs2 = check_stream(&team, &sse.until_done());
    assert!(envs2[0]["seq"].as_u64().unwrap() > envs.last().unwrap()["seq"].as_u64().unwrap());
    assert_eq!(envs2[0]["event"]["goal"], "second turn");
}

/// A session team whose run ended is stopped once nobody has streamed it for
/// `--session-idle` (before, every session left a daemon up for good); a resume still gets the
/// events after its Last-Event-ID and `complete` from the stored state, and the session's next
/// message starts the team again.
#[test]
fn an_idle_session_team_is_stopped_and_its_session_goes_on() {
    let mut sb = Sandbox::new();
    exec_team(&sb, "");
    let srv = Server::start_with(&mut sb, &["--session-idle", "1"]);
    let (team, mut sse) = srv.stream(
        json!({"user_id": "carol", "session_id": "s1", "message": "first"}),
        None,
    );
    let items = sse.until_done();
    let envs = check_stream(&team, &items);
    let done = items.last().unwrap().1.clone();
    let running = |srv: &Server| {
        srv.get("/v1/teams").1["teams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == team.as_str() && t["running"] == true)
    };
    // `running` is whether the team's daemon holds its lock.
    wait_for("the idle session team to be stopped", T, || !running(&srv));
    // A resume reads the stopped team's stored log: the events after it, then complete.
    let (_, end) = resume_from_the_middle(&srv, "carol", &envs);
    assert_eq!(
        (&end["type"], &end["result"]),
        (&json!("complete"), &done["result"])
    );
    // Resumed after the end of the log (the agents' exits and the stop came after the run's
    // end): just complete.
    let last = srv.get(&format!("/v1/teams/{team}")).1["last_seq"]
        .as_u64()
        .unwrap();
    assert!(last >= envs.last().unwrap()["seq"].as_u64().unwrap());
    let (_, mut sse) = srv.stream(
        json!({"user_id": "carol", "session_id": "s1", "message": "not sent"}),
        Some(last),
    );
    let tail = sse.until_done();
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(tail[0].1["type"], "complete");
    // The next message starts the team again: a second run, then it is stopped again.
    let (_, mut sse) = srv.stream(
        json!({"user_id": "carol", "session_id": "s1", "message": "second"}),
        None,
    );
    let envs2 = check_stream(&team, &sse.until_done());
    assert_eq!(envs2[0]["event"]["goal"], "second");
    assert!(envs2[0]["seq"].as_u64().unwrap() > last);
    wait_for("the session team to be stopped again", T, || !running(&srv));
}

#[test]
fn rest_approves_messages_kills_restarts_and_stops_a_team() {
    let mut sb = Sandbox::new();
    sb.write_team_file(
        "name = \"rt\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [roles.worker]\npermissions = { bash = \"allow\", \"bash(*approved*)\" = \"ask\" }\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"w\"\ntitle = \"write it\"\nrun = \"echo approved > ok.txt\"\n\
         [[tasks]]\nkey = \"h\"\ntitle = \"hold the team open\"\nrun = \"sleep 600\"\n",
    );
    let srv = Server::start(&mut sb);
    // Unknown team: a JSON 404 with the protocol's code.
    let (status, body) = srv.get("/v1/teams/nope/agents");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    let (status, started) = srv.post("/v1/teams/rt/up", json!({"goal": "write ok.txt"}));
    assert_eq!(status, 200, "{started}");
    // The teammate asks before its command runs; approve it over HTTP.
    let mut pending = Value::Null;
    wait_for("a pending permission request", T, || {
        let (_, perms) = srv.get("/v1/teams/rt/permissions");
        pending = perms["permissions"][0].clone();
        !pending.is_null()
    });
    assert_eq!(pending["agent"], "b1");
    assert!(!sb.path("ok.txt").exists());
    let id = pending["id"].as_u64().unwrap();
    let (status, decided) = srv.post(
        &format!("/v1/teams/rt/permissions/{id}"),
        json!({"decision": "allow"}),
    );
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "allowed");
    wait_for("the approved task to complete", T, || {
        let (_, tasks) = srv.get("/v1/teams/rt/tasks?status=completed");
        tasks["tasks"].as_array().is_some_and(|t| t.len() == 1)
    });
    wait_for("b1 to hold the second task", T, || {
        let (_, tasks) = srv.get("/v1/teams/rt/tasks?status=in_progress");
        tasks["tasks"][0]["key"] == "h"
    });
    assert_eq!(
        std::fs::read_to_string(sb.path("ok.txt")).unwrap(),
        "approved\n"
    );
    // Deciding it again is a conflict.
    let (status, body) = srv.post(
        &format!("/v1/teams/rt/permissions/{id}"),
        json!({"decision": "deny"}),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "invalid_state");

    // A task and a message as the operator.
    let (status, task) = srv.post(
        "/v1/teams/rt/tasks",
        json!({"title": "later", "blocked_by": [2]}),
    );
    assert_eq!(status, 201, "{task}");
    assert_eq!(
        (task["title"].clone(), task["blocked_by"].clone()),
        (json!("later"), json!([2]))
    );
    let (status, body) = srv.post(
        "/v1/teams/rt/tasks",
        json!({"title": "x", "assign": "nobody"}),
    );
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, sent) = srv.post(
        "/v1/teams/rt/messages",
        json!({"to": "b1", "text": "hello b1"}),
    );
    assert_eq!(status, 200, "{sent}");
    let (_, inbox) = srv.get("/v1/teams/rt/agents/b1/messages");
    assert!(
        inbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["body"] == "hello b1" && m["from"] == "operator"),
        "{inbox}"
    );
    // A body over 1 MiB is refused with 413.
    let (status, body) = srv.post(
        "/v1/teams/rt/messages",
        json!({"to": "b1", "text": "x".repeat(1 << 20)}),
    );
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "limit_exceeded");

    // Kill and restart one agent.
    let (status, killed) = srv.post("/v1/teams/rt/agents/b1/kill", json!(null));
    assert_eq!(status, 200, "{killed}");
    wait_for("b1 to be stopped and its task released", T, || {
        srv.get("/v1/teams/rt/agents").1["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "b1" && a["status"] == "stopped")
            && srv.get("/v1/teams/rt/tasks/2").1["status"] == "pending"
    });
    let (status, _) = srv.post("/v1/teams/rt/agents/b1/restart", json!(null));
    assert_eq!(status, 200);
    wait_for("b1 to be back", T, || {
        srv.get("/v1/teams/rt/agents").1["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "b1" && a["connected"] == true)
    });

    // Down: the daemon stops; reads still answer from the stored state.
    let daemon = srv.get("/v1/teams/rt").1["daemon_pid"].as_u64().unwrap() as u32;
    assert!(daemon > 0 && agent_team_pane::procs::pid_alive(daemon));
    let (status, down) = srv.post("/v1/teams/rt/down", json!(null));
    assert_eq!((status, down["was_running"].clone()), (200, json!(true)));
    assert!(
        !agent_team_pane::procs::pid_alive(daemon) || agent_team_pane::procs::is_zombie(daemon)
    );
    let (status, agents) = srv.get("/v1/teams/rt/agents");
    assert_eq!(status, 200);
    assert!(
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] != "running")
    );
    let (_, down) = srv.post("/v1/teams/rt/down", json!(null));
    assert_eq!(down["was_running"], false);
}

#[test]
fn a_daemon_killed_mid_session_loses_nothing_the_stream_sent() {
    let mut sb = Sandbox::new();
    let gate = sb.path("gate");
    exec_team(
        &sb,
        &format!(
            "[[tasks]]\nkey = \"g\"\ntitle = \"wait for the gate\"\nrun = \"while [ ! -f {} ]; do sleep 0.05; done; echo through\"\n",
            gate.display()
        ),
    );
    let srv = Server::start(&mut sb);
    let (team, mut sse) = srv.stream(
        json!({"user_id": "carol", "session_id": "k", "message": "survive"}),
        None,
    );
    // Read until the gated task runs.
    let mut before = vec![];
    loop {
        let (_, item) = sse.next_event().expect("stream ended");
        let env = item["envelope"].clone();
        let running = env["event"]["type"] == "TASK_UPDATED"
            && env["event"]["task"]["key"] == "g"
            && env["event"]["task"]["status"] == "in_progress";
        before.push(env);
        if running {
            break;
        }
    }
    let tp = sb.team(&team);
    let pid: i32 = std::fs::read_to_string(&tp.lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::fs::write(&gate, "open").unwrap();
    let mut items: Vec<(Option<u64>, Value)> = before
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64(),
                json!({"type": "team_event", "envelope": e}),
            )
        })
        .collect();
    items.extend(sse.until_done());
    let envs = check_stream(&team, &items);
    assert_eq!(
        items.last().unwrap().1["success"],
        true,
        "{:?}",
        items.last()
    );
    // A new daemon answered the rest of the run.
    let now: i32 = std::fs::read_to_string(&tp.lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(now, pid);
    // Everything the stream sent before the kill is in the log as it was sent.
    let stored: Vec<Value> = sb
        .ok(&["--team", &team, "events"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for env in &before {
        assert!(stored.contains(env), "lost after the crash: {env}");
    }
    for env in &envs {
        assert!(stored.contains(env), "streamed but not stored: {env}");
    }
}

#[test]
fn a_session_streams_a_model_teams_text_and_answer() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let tools = |calls: &[(&str, Value)]| {
        Step::Tools(
            calls
                .iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect(),
        )
    };
    mock.script(
        "leader",
        vec![
            Step::TextAndTools(
                "Planning the work.".into(),
                vec![
                    ("create_task".into(), json!({"title": "say hello"})),
                    (
                        "spawn_teammate".into(),
                        json!({"role": "worker", "name": "w1"}),
                    ),
                ],
            ),
            Step::Until {
                needles: vec!["w1 said hello".into()],
                then: Box::new(tools(&[(
                    "finish_team",
                    json!({"answer": "The answer is 42."}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting for w1.".into())),
            },
        ],
    );
    mock.script(
        "w1",
        vec![
            tools(&[("claim_task", json!({"id": 1}))]),
            Step::TextAndTools(
                "Hello from w1.".into(),
                vec![
                    (
                        "update_task_status".into(),
                        json!({"id": 1, "status": "completed", "result": "hello"}),
                    ),
                    (
                        "send_message".into(),
                        json!({"to": "leader", "text": "w1 said hello"}),
                    ),
                ],
            ),
            Step::Text("Done.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"mt\"\nbackend = \"process\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n",
        mock.base_url()
    ));
    let srv = Server::start(&mut sb);
    let (team, mut sse) = srv.stream(
        json!({"user_id": "dave", "session_id": "m", "message": "greet"}),
        None,
    );
    let items = sse.until_done();
    let envs = check_stream(&team, &items);
    let done = &items.last().unwrap().1;
    assert_eq!(done["result"], "The answer is 42.");
    assert_eq!(done["success"], true);
    let text_of = |agent: &str| -> String {
        envs.iter()
            .filter(|e| e["agent_id"] == agent && e["event"]["type"] == "TEXT_MESSAGE_CONTENT")
            .map(|e| e["event"]["delta"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(text_of("leader").contains("Planning the work."), "{envs:?}");
    assert!(text_of("w1").contains("Hello from w1."), "{envs:?}");
    assert!(
        envs.iter()
            .any(|e| e["agent_id"] == "w1" && e["role_name"] == "worker")
    );
}

/// Serves the sandbox's teams and brings `team` up over HTTP.
fn serve_up(sb: &mut Sandbox, team: &str) -> Server {
    let srv = Server::start(sb);
    let (status, body) = srv.post(&format!("/v1/teams/{team}/up"), json!({}));
    assert_eq!(status, 200, "up {team}: {body}");
    srv
}

/// As [`serve_up`], with a browser showing the team's board.
fn serve_up_with_board(sb: &mut Sandbox, team: &str) -> (Server, Browser) {
    let srv = serve_up(sb, team);
    let b = Browser::start();
    b.open_board(&srv, team);
    (srv, b)
}

#[test]
fn the_web_board_shows_a_running_team_and_allow_lets_the_teammate_go_on() {
    let mut sb = Sandbox::new();
    sb.write_team_file(
        "name = \"web\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [roles.worker]\npermissions = { bash = \"ask\" }\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"w\"\ntitle = \"publish the page\"\nrun = \"echo published > page.txt\"\n",
    );
    let srv = serve_up(&mut sb, "web");
    wait_for("a pending request", T, || {
        !srv.get("/v1/teams/web/permissions").1["permissions"][0].is_null()
    });

    let b = Browser::start();
    // The page asks for the token once.
    b.open_board(&srv, "web");
    // The agents of the running team, with their status.
    let deadline = std::time::Instant::now() + T;
    while !(b.text("#agents-body").contains("leader") && b.text("#agents-body").contains("b1")) {
        if std::time::Instant::now() > deadline {
            let src = b.cmd("POST", "/execute/sync", json!({"script": "return JSON.stringify([document.getElementById('app').hidden, document.getElementById('login').hidden, document.getElementById('agents-body').innerHTML, localStorage.getItem('agent-team-token'), document.getElementById('team').innerHTML, location.href, document.getElementById('error').textContent, document.getElementById('token').value])", "args": []}));
            let logs = b.cmd("POST", "/se/log", json!({"type": "browser"}));
            panic!(
                "the board shows no agents; error: {:?}\nlogs: {logs}\n{}",
                b.text("#error"),
                src.as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(3000)
                    .collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for("the board to show the task and the request", T, || {
        b.text("#tasks-body").contains("publish the page")
            && b.text("#perms-body").contains("echo published")
    });
    // Events arrive live from the stream, tagged with their agent.
    wait_for("the event log", T, || {
        b.text("#log").contains("RUN_STARTED")
    });
    assert!(!sb.path("page.txt").exists());
    // `AGENT_TEAM_SCREENSHOT=docs/board.png` keeps a picture of the board for the README.
    if let Some(path) = std::env::var_os("AGENT_TEAM_SCREENSHOT") {
        b.cmd(
            "POST",
            "/window/rect",
            json!({"width": 1200, "height": 800}),
        );
        wait_for("the text of the agents", T, || {
            b.text("#log").contains("AGENT_STATUS")
        });
        let png = b.cmd("GET", "/screenshot", Value::Null);
        let bytes = base64_decode(png.as_str().unwrap());
        std::fs::write(path, bytes).unwrap();
    }
    // (Again if the board redrew the button between finding and clicking it.)
    b.click("button[data-decide=allow]");
    wait_for("the teammate to go on and finish the task", T, || {
        sb.path("page.txt").exists()
    });
    wait_for("the board to show it completed", T, || {
        b.text("#tasks-body").contains("completed")
            && b.text("#perms-body").contains("nothing waiting")
    });
    // A page reload keeps the token: no second prompt.
    b.cmd("POST", "/refresh", Value::Null);
    wait_for("the board to come back after a reload", T, || {
        b.text("#agents-body").contains("b1")
    });
    assert!(
        b.text("#login").trim().is_empty(),
        "asked for the token again"
    );
}

/// The web board decides plans and shows checklists and colours (issue 15): a plan-required
/// model teammate writes its checklist with `todo_write` and submits a plan; in headless
/// chromium the operator clicks Reject and types the feedback (it reaches the model), then
/// Approve on the second plan; the teammate is then approved in `ps --json`.
#[test]
fn the_web_board_rejects_and_approves_a_plan_and_shows_the_checklist() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let tools = |calls: &[(&str, Value)]| {
        Step::Tools(
            calls
                .iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect(),
        )
    };
    let after = |needle: &str, then: Step| Step::Until {
        needles: vec![needle.to_string()],
        then: Box::new(then),
        meanwhile: Box::new(Step::Text("Waiting.".into())),
    };
    mock.script(
        "p1",
        vec![
            tools(&[(
                "todo_write",
                json!({"items": [
                    {"content": "read the code", "status": "completed"},
                    {"content": "write the plan", "status": "in_progress"},
                ]}),
            )]),
            tools(&[("submit_plan", json!({"plan": "plan v1: write out.txt"}))]),
            Step::Text("Waiting for approval.".into()),
            after(
                "split it in two",
                tools(&[("submit_plan", json!({"plan": "plan v2: two steps"}))]),
            ),
            Step::Text("Waiting for approval.".into()),
            after("Your plan was approved", Step::Text("Working.".into())),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        "name = \"wp\"\nbackend = \"process\"\n[roles.worker]\nprovider = \"openai\"\n\
         model = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\
         [[teammates]]\nname = \"p1\"\nrole = \"worker\"\nplan_required = true\ncolor = \"magenta\"\n",
        mock.base_url()
    ));
    let (_srv, b) = serve_up_with_board(&mut sb, "wp"); // serves while it lives
    wait_for("the plan and the checklist on the board", T, || {
        b.text("#plans-body").contains("plan v1: write out.txt")
            && b.text("#todos-body").contains("write the plan")
    });
    assert!(
        b.text("#todos-body").contains("1/2"),
        "{}",
        b.text("#todos-body")
    );
    assert!(
        b.text("#agents-body").contains("planning"),
        "{}",
        b.text("#agents-body")
    );
    // p1's name is drawn in its own colour.
    let style = b.cmd(
        "POST",
        "/execute/sync",
        json!({"script": "return document.querySelector('tr[data-agent=p1] td').getAttribute('style')", "args": []}),
    );
    assert!(
        style.as_str().unwrap_or_default().contains("magenta"),
        "{style}"
    );

    b.click("button[data-plan-decide=reject]");
    b.answer_prompt("split it in two");
    wait_for("the second plan", T, || {
        b.text("#plans-body").contains("plan v2: two steps")
    });
    assert!(
        mock.requests("p1")
            .iter()
            .any(|r| r.to_string().contains("split it in two")),
        "the feedback reached the model"
    );
    b.click("button[data-plan-decide=approve]");
    b.answer_prompt("");
    wait_for("the plan approved", T, || {
        let ps: Value = serde_json::from_str(&sb.ok(&["--team", "wp", "ps", "--json"])).unwrap();
        ps.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "p1" && a["plan"]["state"] == "approved")
    });
    wait_for("the board to show it decided", T, || {
        !b.text("#plans-body").contains("plan v2")
            && b.text("#perms-body").contains("nothing waiting")
    });
    let ps: Value = serde_json::from_str(&sb.ok(&["--team", "wp", "ps", "--json"])).unwrap();
    let p1 = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "p1")
        .unwrap();
    assert_eq!(p1["plan"]["decided_by"], "operator", "{p1}");
    sb.ok(&["--team", "wp", "down"]);
}

/// Decodes standard base64 (the screenshot WebDriver returns).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// One HTTP/1.1 request over a Unix socket; returns the status and the body.
fn unix_request(sock: &std::path::Path, req: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[test]
fn the_web_board_draws_its_refreshes_in_the_order_they_were_asked() {
    // The race: a refresh held up reading the diffs (as under load) had read the board
    // before a change; a later refresh drew the change; the first, drawn last, hid it again,
    // and nothing more came to redraw it (seen in CI as a plan that never showed).
    let mut sb = Sandbox::new();
    sb.write_team_file("name = \"wr\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n");
    let (_srv, b) = serve_up_with_board(&mut sb, "wr"); // serves while it lives
    wait_for("the leader and the empty board", T, || {
        b.text("#agents-body").contains("leader") && b.text("#tasks-body").contains("no tasks")
    });
    let script = |s: &str| b.cmd("POST", "/execute/sync", json!({"script": s, "args": []}));
    // The first refresh: its diff reads held for a second once it has read the board.
    script(
        "const real = window.fetch; window.__held = false;\
         window.fetch = (u, o) => { if (!window.__held && String(u).includes('/diff')) {\
           window.__held = true; return new Promise(r => setTimeout(r, 1000)).then(() => real(u, o)); }\
           return real(u, o); };\
         workStale = true; window.__first = refresh(); return true;",
    );
    wait_for("the first refresh held in its diff reads", T, || {
        script("return window.__held === true;") == json!(true)
    });
    sb.ok(&[
        "--team",
        "wr",
        "task",
        "add",
        "drawn after the first refresh read",
    ]);
    script("refresh(); return true;");
    // Once every refresh asked for is over, the board shows the task.
    let shown = b.cmd(
        "POST",
        "/execute/async",
        json!({"script": "const done = arguments[arguments.length - 1];\
            window.__first.then(() => done(document.getElementById('tasks-body').textContent));",
            "args": []}),
    );
    assert!(
        shown
            .as_str()
            .is_some_and(|t| t.contains("drawn after the first refresh read")),
        "the board drew a stale refresh last: {shown}"
    );
}

#[test]
fn serve_on_a_unix_socket_with_a_generated_token_refuses_remote_and_ctrl_c_leaves_the_teams() {
    use std::os::unix::fs::PermissionsExt;
    let mut sb = Sandbox::new();
    exec_team(
        &sb,
        "[[tasks]]\nkey = \"h\"\ntitle = \"hold\"\nrun = \"sleep 600\"\n",
    );
    // A non-loopback address is refused without --allow-remote, before anything listens.
    let out = sb.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
    assert!(!sb.paths.runtime.join("serve.token").exists());

    // No AGENT_TEAM_API_TOKEN: a token is generated into the runtime dir (0600); its path is
    // printed, never the token.
    let sock = sb.path("api.sock");
    let listen = format!("unix:{}", sock.display());
    let pid = sb.spawn(&["-f", "agent-team.toml", "serve", "--listen", &listen]);
    let log = sb.log_of(pid);
    wait_for("serve to listen", T, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("token ")
    });
    let token_file = sb.paths.runtime.join("serve.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(
        printed.contains(&token_file.display().to_string()),
        "{printed}"
    );
    assert!(!printed.contains(token.trim()), "{printed}");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let get = |path: &str, auth: &str| {
        unix_request(
            &sock,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    let (status, _) = get("/v1/teams", "");
    assert_eq!(status, 401);
    let auth = format!("Authorization: Bearer {token}\r\n");
    let body = r#"{"goal":"hold on"}"#;
    let (status, started) = unix_request(
        &sock,
        &format!(
            "POST /v1/teams/svc/up HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200, "{started}");
    wait_for("the team to run its hold task", T, || {
        get("/v1/teams/svc/tasks?status=in_progress", &auth)
            .1
            .contains("hold")
    });
    let daemon: u32 = std::fs::read_to_string(&sb.team("svc").lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Ctrl-C stops the server, not the teams.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (status, out) = sb.wait_child(pid, T);
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("the teams keep running"), "{out}");
    assert!(!sock.exists(), "the socket is removed at exit");
    assert!(agent_team_pane::procs::pid_alive(daemon));
    assert!(sb.ok(&["--team", "svc", "ps"]).contains("b1"));
}

#[test]
fn serve_outlives_a_closed_stdout() {
    // `agent-team serve | head -1`: the reader is gone before the start-up lines are out.
    let sb = Sandbox::new();
    exec_team(&sb, "");
    let sock = sb.path("api.sock");
    let mut child = sb
        .cmd("agent-team")
        .args(["-f", "agent-team.toml", "serve", "--listen"])
        .arg(format!("unix:{}", sock.display()))
        .env("AGENT_TEAM_API_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    wait_for("the socket", T, || sock.exists());
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let get = || {
        unix_request(
            &sock,
            &format!(
                "GET /v1/teams HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
            ),
        )
    };
    // Still serving well after it wrote to the closed pipe.
    for _ in 0..20 {
        let (status, body) = get();
        assert_eq!(status, 200, "{body}");
    }
    // It stops cleanly when told to (it did not die on the closed pipe, with 101).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Lets this process hold as many descriptors as its hard limit allows; returns the limit.
fn raise_fd_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard as usize;
    }
    soft as usize
}

/// `n` loopback connections to `addr`, each sent `first` (nothing when empty); a connection the
/// server already closed to make room may refuse the write, which is what the flood is about.
fn flood(addr: &str, n: usize, first: &[u8]) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        if !first.is_empty() {
            let _ = s.write_all(first);
        }
        held.push(s);
    }
    held
}

/// Another local process floods `serve` with 20 000 idle sockets (as many as the descriptor
/// limit lets this process hold), then with 3 000 half-sent request heads: an authorised
/// `GET` still answers, because the oldest connections without an authorised request make
/// room at the connection cap.
#[test]
fn serve_answers_an_authorised_get_through_floods_of_idle_and_half_sent_connections() {
    let mut sb = Sandbox::new();
    exec_team(&sb, "");
    let server = Server::start(&mut sb);
    let addr = server.base.trim_start_matches("http://").to_string();
    let http = reqwest::blocking::Client::builder()
        .timeout(T)
        .build()
        .unwrap();
    let authorised_get = || {
        let r = http
            .get(format!("{}/v1/teams", server.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().unwrap();
        assert!(v["teams"].is_array(), "{v}");
    };
    authorised_get();
    let fds = raise_fd_limit();
    // What the limit leaves after this process's own descriptors and the test harness's.
    let idle = 20_000.min(fds.saturating_sub(256));
    let t0 = std::time::Instant::now();
    let held = flood(&addr, idle, b"");
    println!(
        "flood: {idle} idle sockets (descriptor limit {fds}) opened in {:?}",
        t0.elapsed()
    );
    authorised_get();
    drop(held);
    let half = 3_000;
    let t0 = std::time::Instant::now();
    let held = flood(
        &addr,
        half,
        b"GET /v1/teams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    );
    println!(
        "flood: {half} half-sent request heads in {:?}",
        t0.elapsed()
    );
    authorised_get();
    drop(held);
}

/// NexAU's per-request `secrets` (its `runtime_vars`) and sandbox `env` reach the run's
/// commands only: masked in what comes back, in no envelope, not in the store; and
/// `MESSAGE_SENT` envelopes carry the message's text.
#[test]
fn a_session_request_gives_its_run_secrets_and_env_that_no_envelope_or_store_shows() {
    let mut sb = Sandbox::new();
    let token = "tok-9f8e7d6c5b4a";
    sb.write_team_file(
        "name = \"svc\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"use the token\"\n\
         run = \"echo $API_TOKEN > tok.txt; echo $MODE > mode.txt; echo using $API_TOKEN\"\n",
    );
    let srv = Server::start(&mut sb);
    let (team, mut sse) = srv.stream(
        json!({"user_id": "alice", "session_id": "s1", "message": "go",
               "secrets": {"API_TOKEN": token}, "env": {"MODE": "fast"}}),
        None,
    );
    let items = sse.until_done();
    let envs = check_stream(&team, &items);
    // The command had both.
    assert_eq!(
        std::fs::read_to_string(sb.path("tok.txt")).unwrap().trim(),
        token
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("mode.txt")).unwrap().trim(),
        "fast"
    );
    // What came back says so without the value.
    let all = serde_json::to_string(&items.iter().map(|(_, v)| v).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains(token), "the secret is in the stream");
    assert!(all.contains("using [secret API_TOKEN]"), "{all}");
    // Messages carry their text.
    let sent: Vec<&Value> = envs
        .iter()
        .filter(|e| e["event"]["type"] == "MESSAGE_SENT")
        .collect();
    assert!(!sent.is_empty(), "no MESSAGE_SENT in {envs:?}");
    assert!(
        sent.iter()
            .all(|e| e["event"]["text"].as_str().is_some_and(|t| !t.is_empty())),
        "{sent:?}"
    );
    // Nothing of the team's state (its store, its logs) holds the secret.
    let state = sb.team(&team).db;
    let mut dirs = vec![state.parent().unwrap().to_path_buf()];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        for f in std::fs::read_dir(&d).unwrap().flatten() {
            let path = f.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                seen += 1;
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
    assert!(seen > 1, "the team's state was looked at");
    drop(srv);
}
