//! The permission engine end to end (issue 12, finding 2 and "Protected paths"): a model
//! teammate whose role allows `bash(git status*)` and `write_file` is still asked before it
//! writes `.git/config`, and `git statusfoo` is not taken for `git status`.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
fn an_allowed_teammate_is_asked_before_writing_git_config_and_git_statusfoo_is_not_git_status() {
    const EVIL: &str = "[core]\n\tfsmonitor = touch pwned\n";
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("spawn_teammate", json!({"role": "worker", "name": "b1"}))]),
            Step::Text("Started.".into()),
            Step::Until {
                needles: vec!["b1 done".into()],
                then: Box::new(Step::tools(&[(
                    "finish_team",
                    json!({"answer": "b1 is done", "force": true}),
                )])),
                meanwhile: Box::new(Step::Text("Waiting.".into())),
            },
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::tools(&[(
                "write_file",
                json!({"path": "sub/../.git/config", "content": EVIL}),
            )]),
            Step::tools(&[("bash", json!({"command": "git statusfoo"}))]),
            Step::tools(&[("bash", json!({"command": "git status -s"}))]),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "b1 done"}))]),
            Step::Text("ok".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    std::fs::create_dir_all(sb.path(".git")).unwrap();
    std::fs::create_dir_all(sb.path("sub")).unwrap();
    std::fs::write(sb.path(".git/config"), "[core]\n").unwrap();
    sb.write_team_file(&format!(
        "name = \"pt\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\n\
         api_key_env = \"MOCK_API_KEY\"\n[roles.worker]\nstream = false\n\
         permissions = {{ bash = \"ask\", \"bash(git status*)\" = \"allow\", write_file = \"allow\" }}\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);

    // The write into .git waits for a person although write_file is allowed.
    wait_for("b1's write_file request", T, || {
        sb.pending_from("pt", "b1").is_some()
    });
    let w = sb.pending_from("pt", "b1").unwrap();
    assert_eq!(
        (w.tool.as_str(), w.input.as_str()),
        ("write_file", ".git/config")
    );
    assert!(w.reason.contains("protected"), "{w:?}");
    let listed = sb.ok(&["--team", "pt", "perms"]);
    assert!(
        listed.contains("write_file") && listed.contains(".git/config"),
        "{listed}"
    );
    sb.ok(&[
        "--team",
        "pt",
        "deny",
        &w.id.to_string(),
        "--reason",
        "not in .git",
    ]);

    // `git statusfoo` is not `git status`: asked, not run.
    wait_for("b1's git statusfoo request", T, || {
        sb.pending_from("pt", "b1").is_some_and(|p| p.id != w.id)
    });
    let g = sb.pending_from("pt", "b1").unwrap();
    assert_eq!(
        (g.tool.as_str(), g.input.as_str()),
        ("bash", "git statusfoo")
    );
    sb.ok(&["--team", "pt", "deny", &g.id.to_string()]);

    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert_eq!(
        std::fs::read_to_string(sb.path(".git/config")).unwrap(),
        "[core]\n",
        "the denied write did not happen"
    );
    // `git status -s` was allowed by the pattern: it ran without a request.
    let store = agent_team_store::Store::open_read_only(&sb.team("pt").db, "pt").unwrap();
    let ev = store.events_since(0, 100_000).unwrap();
    let asked: Vec<String> = ev
        .iter()
        .filter_map(|e| match &e.event {
            Event::PermissionRequested { request } => Some(request.input.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![".git/config", "git statusfoo"], "{asked:?}");
    assert!(
        ev.iter().any(|e| e.agent_id == "b1"
            && matches!(&e.event, Event::ToolCallStart { args, .. } if args["command"] == "git status -s")),
        "b1 ran git status -s"
    );
    let b1 = mock.requests("b1");
    assert!(
        b1.iter().any(|r| r.to_string().contains("exit ")),
        "the allowed command's result reached the model: {b1:?}"
    );
    assert!(
        b1.iter()
            .any(|r| r.to_string().contains("permission denied: not in .git")),
        "{b1:?}"
    );
}

/// Issue 12, finding 3: `operator`, `daemon`, `all`, `*` and `_…` were free agent names, so a
/// teammate could pass for the operator in a message's `from`.
#[test]
fn reserved_agent_names_are_refused_by_the_team_file_spawn_and_register() {
    let sb = Sandbox::new();
    sb.write_team_file("name = \"rn\"\n[[teammates]]\nname = \"operator\"\nrole = \"worker\"\n");
    let out = sb.run(&["up", "--backend", "process", "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("reserved") && err.contains("teammates.name"),
        "{err}"
    );

    sb.write_team_file("name = \"rn\"\n");
    sb.ok(&["up", "--backend", "process", "--detach"]);
    for name in ["operator", "daemon", "all"] {
        let out = sb.run(&["--team", "rn", "spawn", "worker", "--name", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("reserved"), "{name}: {err}");
    }
    let mut op = sb.operator("rn");
    for name in ["operator", "daemon", "all", "*", "_x"] {
        match op.call(Request::Register {
            name: name.into(),
            role: "worker".into(),
        }) {
            Err(agent_team_client::ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::BadRequest, "{name}: {e:?}");
                assert!(e.message.contains("reserved"), "{name}: {e:?}");
            }
            other => panic!("register {name:?}: {other:?}"),
        }
    }
    let names: Vec<String> = sb.agents("rn").into_iter().map(|a| a.name).collect();
    assert_eq!(names, vec!["leader"], "nothing reserved reached the roster");
    sb.ok(&["--team", "rn", "down"]);
}

#[test]
fn an_exec_teammate_allowed_every_command_is_asked_before_writing_git_config_through_a_symlink() {
    let sb = Sandbox::new();
    let ws = sb.path("");
    std::fs::create_dir_all(ws.join(".git")).unwrap();
    std::fs::write(ws.join(".git/config"), "[core]\n").unwrap();
    std::os::unix::fs::symlink(".git", ws.join("gitdir")).unwrap();
    sb.write_team_file(
        "name = \"px\"\n[roles.worker]\npermissions = { bash = \"allow\" }\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"sneak\"\nrun = \"echo '[alias] st = !touch pwned' >> gitdir/config\"\n",
    );
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("the request", T, || {
        agent_team_client::Client::operator(&sb.team("px"))
            .ok()
            .and_then(|mut c| c.all_perms(false).ok())
            .is_some_and(|p| {
                p.iter()
                    .any(|r| r.agent == "b1" && r.input.contains("gitdir/config"))
            })
    });
    assert_eq!(
        std::fs::read_to_string(ws.join(".git/config")).unwrap(),
        "[core]\n",
        "written before anyone decided"
    );
    sb.ok(&["--team", "px", "down"]);
}

/// Issue 61, stale approvals: once the requesting teammate is killed its request is `void`,
/// `perms --json` says so, and `approve` fails with the reason instead of "allowed once".
#[test]
fn a_killed_teammates_request_is_void_and_approving_it_fails() {
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"pv\"\n[roles.worker]\npermissions = { bash = \"ask\" }\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"needs a yes\"\nrun = \"echo approved > yes.txt\"\n",
    );
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let pending = || {
        let out = sb.ok(&["--team", "pv", "perms", "--all", "--json"]);
        serde_json::from_str::<Vec<PermRequest>>(&out).unwrap()
    };
    wait_for("b1's request", T, || {
        pending()
            .iter()
            .any(|r| r.agent == "b1" && r.status == PermStatus::Pending)
    });
    let id = pending().iter().find(|r| r.agent == "b1").unwrap().id;
    sb.ok(&["--team", "pv", "kill", "b1"]);
    wait_for("the request to be void", T, || {
        pending()
            .iter()
            .any(|r| r.id == id && r.status == PermStatus::Void)
    });
    // Not pending any more: the default listing has nothing to decide.
    let listed = sb.run(&["--team", "pv", "perms", "--json"]);
    let still: Vec<PermRequest> = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(still.iter().all(|r| r.id != id), "{still:?}");
    let all = sb.ok(&["--team", "pv", "perms", "--all"]);
    assert!(all.contains("void"), "{all}");
    let out = sb.run(&["--team", "pv", "approve", &id.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "agent-team: error: request {id} is void: its requester b1 is gone (stopped"
        )),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("allowed"));
    assert!(!sb.path("yes.txt").exists(), "nothing ran");
    sb.ok(&["--team", "pv", "down"]);
}
