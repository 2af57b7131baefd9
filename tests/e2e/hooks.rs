//! `[hooks]` through the real binaries: a `task_completed` hook that blocks once (its stderr
//! reaches the teammate's model) and then passes, a hook's stdin and environment, and a hook
//! that is not run again after the daemon is SIGKILLed while it runs.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn events(sb: &Sandbox, team: &str) -> Vec<Envelope> {
    let store = agent_team_store::Store::open_read_only(&sb.team(team).db, team).unwrap();
    store.events_since(0, 100_000).unwrap()
}

/// A hook that blocks the first completion (exit 2 with a reason on stderr) and passes the
/// second, counting its runs in `count`.
const CHECK: &str = r#"n=$(cat count 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > count
if [ "$n" -eq 1 ]; then
  echo "HOOK SAYS: the docs need an example" >&2
  exit 2
fi
exit 0
"#;

#[test]
fn a_task_completed_hook_that_exits_2_keeps_the_task_in_progress_and_its_stderr_reaches_the_agent()
{
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("create_task", json!({"title": "write the docs"}))]),
            Step::tools(&[("spawn_teammate", json!({"role": "worker", "name": "b1"}))]),
            Step::Text("Waiting for b1.".into()),
            Step::until(
                &["b1 finished task 1"],
                Step::tools(&[("finish_team", json!({"answer": "The docs are written."}))]),
                "Still waiting.",
            ),
        ],
    );
    mock.script(
        "b1",
        vec![
            Step::tools(&[("claim_task", json!({"id": 1}))]),
            Step::tools(&[(
                "update_task_status",
                json!({"id": 1, "status": "completed", "result": "docs v1"}),
            )]),
            Step::until(
                &["HOOK SAYS: the docs need an example"],
                Step::TextAndTools(
                    "Added an example; completing again.".into(),
                    vec![
                        (
                            "update_task_status".into(),
                            json!({"id": 1, "status": "completed", "result": "docs v2"}),
                        ),
                        (
                            "send_message".into(),
                            json!({"to": "leader", "text": "b1 finished task 1"}),
                        ),
                    ],
                ),
                "Thinking.",
            ),
            Step::Text("Nothing left for me.".into()),
            Step::Text("Noted.".into()),
            Step::Text("Noted.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    std::fs::write(sb.path("check.sh"), CHECK).unwrap();
    sb.write_team_file(&format!(
        r#"name = "hk"
[defaults]
provider = "openai"
model = "mock-1"
base_url = "{}"
api_key_env = "MOCK_API_KEY"

[hooks]
task_completed = "sh check.sh"
task_created = {{ command = "cat > created.json; env | grep '^AGENT_TEAM_' | sort > created.env", timeout_secs = 10 }}
"#,
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("The docs are written."), "{out}");

    // The hook ran exactly twice: blocked once, passed once.
    assert_eq!(
        std::fs::read_to_string(sb.path("count")).unwrap().trim(),
        "2"
    );
    // The model's request after the blocked completion carries the hook's stderr (the tool's
    // error), and the request is the one right after that call.
    let b1: Vec<String> = mock.requests("b1").iter().map(|r| r.to_string()).collect();
    let after_block = b1
        .iter()
        .find(|r| r.contains("docs v1"))
        .expect("a request after the first completion");
    assert!(
        after_block.contains("HOOK SAYS: the docs need an example")
            && after_block.contains("blocked"),
        "{after_block}"
    );
    let ev = events(&sb, "hk");
    // The task stayed in progress at the block, and ended completed with the second result.
    let task1: Vec<&Task> = ev
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskUpdated { task } if task.id == 1 => Some(task),
            _ => None,
        })
        .collect();
    let done: Vec<&&Task> = task1
        .iter()
        .filter(|t| t.status == TaskStatus::Completed)
        .collect();
    assert_eq!(done.len(), 1, "{task1:?}");
    assert_eq!(done[0].result.as_deref(), Some("docs v2"));
    // The owner was also told by message, from the daemon.
    assert!(
        ev.iter().any(|e| matches!(&e.event,
            Event::MessageSent { from, to, .. } if from == "daemon" && to == "b1")),
        "no message from the daemon to b1"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e.event, Event::HookFailed { .. })),
        "no hook failed"
    );

    // task_created got the envelope on stdin and the team, agent and task in its environment.
    let created: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path("created.json")).unwrap()).unwrap();
    assert_eq!(created["event"]["type"], "TASK_UPDATED", "{created}");
    assert_eq!(created["event"]["task"]["title"], "write the docs");
    assert_eq!(created["agent_id"], "leader");
    assert_eq!(created["team_id"], "hk");
    // And the names Nyzhi's hooks read (hook_event_name, teammate_name, team_name).
    assert_eq!(created["hook_event_name"], "task_created", "{created}");
    assert_eq!(created["teammate_name"], "leader", "{created}");
    assert_eq!(created["team_name"], "hk", "{created}");
    let seq = created["seq"].as_u64().unwrap();
    assert!(seq > 0);
    let env = std::fs::read_to_string(sb.path("created.env")).unwrap();
    for line in [
        "AGENT_TEAM_AGENT=leader".to_string(),
        format!("AGENT_TEAM_EVENT_SEQ={seq}"),
        "AGENT_TEAM_HOOK_EVENT=task_created".to_string(),
        "AGENT_TEAM_TASK_ID=1".to_string(),
        "AGENT_TEAM_TEAM=hk".to_string(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
    }
}

#[test]
fn a_hook_running_when_the_daemon_is_killed_is_not_run_again() {
    let mut sb = Sandbox::new();
    // Task 1's hook records itself and then runs long; task 2's returns at once.
    sb.write_team_file(
        r#"name = "hr"
backend = "process"
[hooks.task_created]
command = '''echo "$AGENT_TEAM_TASK_ID" >> side.txt; if [ "$AGENT_TEAM_TASK_ID" = 1 ]; then sleep 300.4217; fi'''
timeout_secs = 600
"#,
    );
    let cfg = agent_team_config::load(&sb.path("agent-team.toml")).unwrap();
    let add = |op: &mut agent_team_client::Client, title: &str| {
        op.call(Request::TaskAdd {
            title: title.into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: None,
            key: None,
        })
        .unwrap();
    };
    let pid = sb.spawn_daemon("hr");
    let mut op = sb.operator("hr");
    op.call(Request::Configure {
        config: serde_json::to_value(&cfg).unwrap(),
    })
    .unwrap();
    add(&mut op, "one");
    let side_path = sb.path("side.txt");
    let side = || std::fs::read_to_string(&side_path).unwrap_or_default();
    wait_for("task 1's hook to start", T, || side() == "1\n");
    // The hook runs in the team's sandbox (its own `$$` is a pid of its namespace): it is
    // found by its `sleep`.
    let sleeping = || procs_with_cmdline(&["sleep", "300.4217"]);
    wait_for("the hook's sleep", T, || !sleeping().is_empty());
    drop(op);
    sb.kill9(pid);
    // The hook (its shell and its `sleep`) died with the daemon: nothing of it is left.
    wait_for("the hook's processes to die with the daemon", T, || {
        sleeping().is_empty()
    });

    let pid = sb.spawn_daemon("hr");
    let mut op = sb.operator("hr");
    // The interrupted run is reported, not run again.
    wait_for("the interrupted hook to be reported", T, || {
        op.all_events(0).unwrap().iter().any(|e| {
            matches!(&e.event, Event::HookFailed { hook, reason, .. }
                if hook == "task_created" && reason.contains("interrupted by a daemon restart"))
        })
    });
    // Hooks still run after the restart; task 1's never again.
    add(&mut op, "two");
    wait_for("task 2's hook", T, || side().contains("2\n"));
    drop(op);
    sb.kill9(pid);
    assert_eq!(side(), "1\n2\n");
}

/// `teammate_idle` exiting 2 sends the teammate back to work: its stderr arrives as a message
/// and the teammate's model acts on it (here it asks to run a command, which raises a
/// permission request). `permission_requested` and `agent_failed` hooks run with the agent
/// in their environment; a second idle passes (exit 0) and nothing is run twice.
#[test]
fn teammate_idle_exit_2_sends_the_teammate_back_and_permission_and_failure_hooks_run() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script("leader", vec![Step::Text("Leading.".into())]);
    mock.script(
        "b1",
        vec![
            Step::Text("All done, nothing left.".into()),
            Step::until(
                &["HOOK SAYS: update the changelog too"],
                Step::tools(&[("bash", json!({"command": "echo changelog >> CHANGES"}))]),
                "Thinking.",
            ),
            Step::Text("Changelog left to the operator.".into()),
            Step::Text("Noted.".into()),
            Step::Text("Noted.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    let idle = "n=$(cat idle.count 2>/dev/null || echo 0); n=$((n + 1)); echo \"$n\" > idle.count\n\
                if [ \"$n\" -eq 1 ]; then echo 'HOOK SAYS: update the changelog too' >&2; exit 2; fi\n";
    std::fs::write(sb.path("idle.sh"), idle).unwrap();
    sb.write_team_file(&format!(
        r#"name = "hi"
[defaults]
provider = "openai"
model = "mock-1"
base_url = "{}"
api_key_env = "MOCK_API_KEY"

[roles.worker]
permissions = {{ bash = "ask" }}

[roles.broken]
description = "A teammate whose process exits 78 (bad configuration): failed at once"
command = ["sh", "-c", "exit 78"]

[[teammates]]
name = "b1"
role = "worker"

[[teammates]]
name = "f1"
role = "broken"

[hooks]
teammate_idle = "sh idle.sh"
permission_requested = "env | grep '^AGENT_TEAM_' | sort > perm.env"
agent_failed = "env | grep '^AGENT_TEAM_' | sort > failed.env"
"#,
        mock.base_url()
    ));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    // The first idle was blocked; the message made b1's model ask to run a command.
    wait_for("b1's permission request", T, || {
        sb.operator("hi")
            .all_perms(false)
            .map(|p| p.len() == 1)
            .unwrap_or(false)
    });
    let perm = &sb.operator("hi").all_perms(false).unwrap()[0];
    assert_eq!(perm.agent, "b1");
    assert!(perm.input.contains("echo changelog"), "{perm:?}");
    assert!(
        mock.requests("b1").iter().any(|r| r
            .to_string()
            .contains("teammate_idle hook sent you back to work")),
        "the hook's message reached b1's model"
    );
    wait_for("the permission_requested hook", T, || {
        std::fs::read_to_string(sb.path("perm.env"))
            .is_ok_and(|s| s.contains("AGENT_TEAM_AGENT=b1"))
    });
    let env = std::fs::read_to_string(sb.path("perm.env")).unwrap();
    assert!(
        env.lines()
            .any(|l| l == "AGENT_TEAM_HOOK_EVENT=permission_requested"),
        "{env}"
    );
    wait_for("the agent_failed hook", T, || {
        std::fs::read_to_string(sb.path("failed.env"))
            .is_ok_and(|s| s.contains("AGENT_TEAM_AGENT=f1"))
    });
    // Deny the command: b1 ends its turn and idles again; this time the hook passes.
    sb.ok(&["--team", "hi", "deny", &perm.id.to_string()]);
    wait_for("b1 idle again", T, || {
        std::fs::read_to_string(sb.path("idle.count")).is_ok_and(|s| s.trim() == "2")
            && sb.agent("hi", "b1").status == AgentStatus::Idle
    });
    assert!(!sb.path("CHANGES").exists(), "the denied command never ran");
    sb.ok(&["--team", "hi", "down"]);
    let ev = events(&sb, "hi");
    assert!(
        !ev.iter()
            .any(|e| matches!(e.event, Event::HookFailed { .. })),
        "no hook failed"
    );
    // Nothing ran twice: two idles of b1, one request, one failure.
    assert_eq!(
        std::fs::read_to_string(sb.path("idle.count"))
            .unwrap()
            .trim(),
        "2"
    );
}
