//! External agent CLIs as teammates: a `cli`-provider teammate whose command is a scripted
//! MCP client (tests/e2e/fixtures/fake-cli.js, run by Node) joins the team through
//! `agent-team mcp` and works on the board with the team tools, on each backend.

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/fixtures/fake-cli.js")
        .display()
        .to_string()
}

fn team(out: &Path) -> String {
    format!(
        r#"name = "clis"
board = false

[roles.fake]
description = "a scripted MCP client standing in for an agent CLI"
provider = "cli"
model = "none"
command = ["node", "{fixture}", "{out}"]
restart = "never"

[[teammates]]
name = "cc"
role = "fake"

[[tasks]]
key = "one"
title = "Write work.txt"
"#,
        fixture = fixture(),
        out = out.display(),
    )
}

fn cli_teammate_works_through_mcp(backend: &str) {
    let sb = Sandbox::new();
    let out = sb.path("out");
    sb.write_team_file(&team(&out));
    let up = sb.run(&["up", "--backend", backend, "--detach"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    wait_for("the CLI to finish its script", T, || {
        out.join("ready").exists() || out.join("error.txt").exists()
    });
    assert_eq!(read("error.txt"), "", "the fake CLI failed");
    // It was served as the agent the supervisor launched, with the teammate's team tools.
    assert!(
        read("server.json").contains("agent-team"),
        "{}",
        read("server.json")
    );
    let tools: Vec<String> = read("tools.txt").lines().map(String::from).collect();
    for t in [
        "claim_task",
        "update_task_status",
        "release_task",
        "send_message",
        "broadcast",
        "list_teammates",
        "list_tasks",
        "wait_for_messages",
    ] {
        assert!(tools.iter().any(|x| x == t), "{t} missing from {tools:?}");
    }
    assert!(
        !tools
            .iter()
            .any(|x| x == "spawn_teammate" || x == "write_file"),
        "leader or workspace tools offered to a teammate CLI: {tools:?}"
    );
    // The board: task 1 completed by cc, with the CLI's result; the file is there.
    let task = sb.tasks("clis").into_iter().find(|t| t.id == 1).unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!(task.owner.as_deref(), Some("cc"));
    assert_eq!(task.result.as_deref(), Some("wrote work.txt"));
    assert_eq!(read("work.txt"), "written by the CLI\n");
    // A daemon error is an MCP tool error carrying the daemon's message.
    let bad: serde_json::Value = serde_json::from_str(&read("bad.json")).unwrap();
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(
        bad["text"].as_str().unwrap_or_default().contains("999"),
        "{bad}"
    );
    // The leader got the CLI's message, from cc.
    let inbox = sb.ok(&["inbox", "leader", "--json"]);
    assert!(
        inbox.contains("task 1 done by the CLI") && inbox.contains("\"cc\""),
        "{inbox}"
    );
    // A message to the CLI reaches it through wait_for_messages, and is then read.
    sb.ok(&["send", "cc", "hello cli"]);
    wait_for("the CLI to get its message", T, || {
        read("inbox.txt").contains("hello cli")
    });
    let msgs: Vec<Message> =
        serde_json::from_str(&sb.ok(&["inbox", "cc", "--json"])).unwrap_or_default();
    let m = msgs.iter().find(|m| m.body == "hello cli").unwrap();
    wait_for("the message to be marked read", T, || {
        let msgs: Vec<Message> =
            serde_json::from_str(&sb.ok(&["inbox", "cc", "--json"])).unwrap_or_default();
        msgs.iter()
            .any(|x| x.id == m.id && x.state == DeliveryState::Read)
    });
    // The CLI exits 0 when its script ends: the teammate is exited, not restarted.
    wait_for("cc to exit", T, || {
        sb.agent("clis", "cc").status == AgentStatus::Exited
    });
    let down = sb.run(&["down"]);
    assert!(down.status.success());
}

#[test]
fn a_cli_teammate_works_through_mcp_on_the_process_backend() {
    cli_teammate_works_through_mcp("process");
}

#[test]
fn a_cli_teammate_works_through_mcp_in_a_tmux_pane() {
    cli_teammate_works_through_mcp("tmux");
}

#[test]
fn a_missing_cli_stops_up_before_any_agent_starts_and_names_its_npm_package() {
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"nocli\"\nboard = false\n\n[roles.claude]\ndescription = \"Claude Code\"\n\
         provider = \"claude-code\"\nmodel = \"claude-sonnet-4-5\"\n\n\
         [[teammates]]\nname = \"cc\"\nrole = \"claude\"\n",
    );
    let empty = sb.path("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = sb
        .cmd("agent-team")
        .args(["up", "--backend", "process", "--detach"])
        .env("PATH", format!("{}:/usr/bin:/bin", empty.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cc runs claude") && err.contains("npm install -g @anthropic-ai/claude-code"),
        "{err}"
    );
    // Refused before anything started: no daemon, so no agent.
    assert!(!sb.team("nocli").socket.exists());
    assert!(
        !sb.team("nocli").lock.exists() || !agent_team_paths::lock_held(&sb.team("nocli").lock)
    );
}

/// The pinned agent CLIs, installed with npm into a cache under `target/` (never globally):
/// the path of the installed command. A CLI that cannot be installed fails the test.
fn installed(package: &str, version: &str, bin: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target
        .join("clis")
        .join(format!("{}@{version}", package.replace('/', "+")));
    let exe = dir.join("node_modules/.bin").join(bin);
    if exe.exists() {
        return exe;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("{package}@{version}"))
        .output()
        .unwrap_or_else(|e| panic!("npm is needed to install {package}: {e}"));
    assert!(
        out.status.success() && exe.exists(),
        "npm install {package}@{version} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

#[test]
fn a_claude_code_teammate_claims_writes_completes_and_reports_headless() {
    use agent_team_mockmodel::{MockModel, Step, Wire};
    use serde_json::json;
    let claude = installed("@anthropic-ai/claude-code", "2.1.197", "claude");
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    let mut sb = Sandbox::new();
    sb.env.push((
        "AT_TEST_ANTHROPIC_KEY".into(),
        "sk-ant-test-0123456789abcdefghij".into(),
    ));
    let file = sb.path("cc.txt");
    mock.script(
        "cc",
        vec![
            Step::Tools(vec![("mcp__team__claim_task".into(), json!({"id": 1}))]),
            Step::Tools(vec![(
                "Write".into(),
                json!({"file_path": file.display().to_string(), "content": "written by Claude Code\n"}),
            )]),
            // The message first: an exec leader ends the run once the board is done.
            Step::Tools(vec![(
                "mcp__team__send_message".into(),
                json!({"to": "leader", "text": "cc finished task 1"}),
            )]),
            Step::Tools(vec![(
                "mcp__team__update_task_status".into(),
                json!({"id": 1, "status": "completed", "result": "wrote cc.txt"}),
            )]),
            Step::Text("All done.".into()),
        ],
    );
    sb.write_team_file(&format!(
        r#"name = "ccteam"
board = false

[roles.claude]
description = "Claude Code"
provider = "claude-code"
model = "claude-sonnet-4-5"
base_url = "{base}"
api_key_env = "AT_TEST_ANTHROPIC_KEY"
command = ["{claude}"]
restart = "never"

[[teammates]]
name = "cc"
role = "claude"

[[tasks]]
key = "one"
title = "Write cc.txt"
"#,
        base = mock.base_url(),
        claude = claude.display(),
    ));
    let up = sb.run(&["up", "--backend", "process", "--detach"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    wait_for("cc to finish", Duration::from_secs(120), || {
        matches!(
            sb.agent("ccteam", "cc").status,
            AgentStatus::Exited | AgentStatus::Failed | AgentStatus::Backoff
        )
    });
    let log = std::fs::read_to_string(sb.team("ccteam").logs.join("cc.log")).unwrap_or_default();
    let reqs = mock.requests("cc");
    assert!(
        !reqs.is_empty(),
        "Claude Code never asked the mock: {log}\nunmatched: {:?}",
        mock.unmatched().len()
    );
    // It asked with the member's model, and saw the team tools over MCP.
    assert_eq!(reqs[0]["model"], "claude-sonnet-4-5");
    let tools: Vec<String> = reqs[0]["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        tools.iter().any(|t| t == "mcp__team__claim_task"),
        "no team tools in {tools:?}\n{log}"
    );
    assert_eq!(
        sb.agent("ccteam", "cc").status,
        AgentStatus::Exited,
        "{log}"
    );
    let task = sb.tasks("ccteam").into_iter().find(|t| t.id == 1).unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}\n{log}");
    assert_eq!(task.owner.as_deref(), Some("cc"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "written by Claude Code\n"
    );
    let inbox = sb.ok(&["inbox", "leader", "--json"]);
    let last: Vec<String> = mock
        .requests("cc")
        .iter()
        .map(|r| {
            r["messages"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| m.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(inbox.contains("cc finished task 1"), "{inbox}\n{last:#?}");
    // Its private home, not the user's.
    assert!(
        sb.team("ccteam")
            .dir
            .join("clis/cc/.claude/.claude.json")
            .exists()
    );
    let _ = sb.run(&["down"]);
}

/// The issue's mixed team: a Claude Code teammate and a Qwen Code teammate, each against the
/// mock model in its own wire format (Anthropic messages, streamed; chat completions), each
/// claiming one task over MCP, writing a file with its own write tool, completing the task and
/// messaging the leader. Headless (the `process` backend).
#[test]
fn a_mixed_team_of_claude_code_and_qwen_code_shares_one_board() {
    use agent_team_mockmodel::{MockModel, Step, Wire};
    use serde_json::json;
    let claude = installed("@anthropic-ai/claude-code", "2.1.197", "claude");
    let qwen = installed("@qwen-code/qwen-code", "0.15.10", "qwen");
    let anthropic = MockModel::start_background(Wire::Anthropic).unwrap();
    let openai = MockModel::start_background(Wire::OpenAi).unwrap();
    let mut sb = Sandbox::new();
    sb.env.push((
        "AT_TEST_ANTHROPIC_KEY".into(),
        "sk-ant-test-0123456789abcdefghij".into(),
    ));
    sb.env
        .push(("AT_TEST_OPENAI_KEY".into(), "sk-test-qwen".into()));
    let (cc_file, qw_file) = (sb.path("cc.txt"), sb.path("qw.txt"));
    let call = |name: &str, args: serde_json::Value| Step::Tools(vec![(name.into(), args)]);
    anthropic.script(
        "cc",
        vec![
            call("mcp__team__claim_task", json!({"id": 1})),
            call(
                "Write",
                json!({"file_path": cc_file.display().to_string(), "content": "claude\n"}),
            ),
            call(
                "mcp__team__send_message",
                json!({"to": "leader", "text": "cc finished task 1"}),
            ),
            call(
                "mcp__team__update_task_status",
                json!({"id": 1, "status": "completed", "result": "cc.txt"}),
            ),
            Step::Text("Done.".into()),
        ],
    );
    // Qwen Code defers MCP tools behind its tool_search: the model selects them first.
    openai.script(
        "qw",
        vec![
            call(
                "tool_search",
                json!({"query": "select:mcp__team__claim_task,mcp__team__update_task_status,mcp__team__send_message"}),
            ),
            call("mcp__team__claim_task", json!({"id": 2})),
            call(
                "write_file",
                json!({"file_path": qw_file.display().to_string(), "content": "qwen\n"}),
            ),
            call(
                "mcp__team__send_message",
                json!({"to": "leader", "text": "qw finished task 2"}),
            ),
            call(
                "mcp__team__update_task_status",
                json!({"id": 2, "status": "completed", "result": "qw.txt"}),
            ),
            Step::Text("Done.".into()),
        ],
    );
    sb.write_team_file(&format!(
        r#"name = "mixed"
board = false

[roles.claude]
description = "Claude Code"
provider = "claude-code"
model = "claude-sonnet-4-5"
base_url = "{anthropic}"
api_key_env = "AT_TEST_ANTHROPIC_KEY"
command = ["{claude}"]
restart = "never"

[roles.qwen]
description = "Qwen Code"
provider = "qwen-code"
model = "qwen3-coder"
base_url = "{openai}"
api_key_env = "AT_TEST_OPENAI_KEY"
command = ["{qwen}"]
restart = "never"

[[teammates]]
name = "cc"
role = "claude"

[[teammates]]
name = "qw"
role = "qwen"

[[tasks]]
key = "one"
title = "Claude's file"

[[tasks]]
key = "two"
title = "Qwen's file"
"#,
        anthropic = anthropic.base_url(),
        openai = openai.base_url(),
        claude = claude.display(),
        qwen = qwen.display(),
    ));
    let up = sb.run(&["up", "--backend", "process", "--detach"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let logs = |sb: &Sandbox| {
        ["cc", "qw"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(sb.team("mixed").logs.join(format!("{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    wait_for("both CLIs to finish", Duration::from_secs(120), || {
        ["cc", "qw"].iter().all(|n| {
            matches!(
                sb.agent("mixed", n).status,
                AgentStatus::Exited | AgentStatus::Failed | AgentStatus::Backoff
            )
        })
    });
    let tasks = sb.tasks("mixed");
    let qw_reqs: Vec<String> = openai
        .requests("qw")
        .iter()
        .map(|r| {
            let tools: Vec<&str> = r["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["function"]["name"].as_str())
                .collect();
            let last = r["messages"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| m.to_string())
                .unwrap_or_default();
            format!("tools {tools:?}\nlast {}", &last[..last.len().min(600)])
        })
        .collect();
    for (id, owner, file, text) in [
        (1, "cc", &cc_file, "claude\n"),
        (2, "qw", &qw_file, "qwen\n"),
    ] {
        let t = tasks.iter().find(|t| t.id == id).unwrap();
        assert_eq!(
            t.status,
            TaskStatus::Completed,
            "{t:?}\n{}\nqwen's requests:\n{}",
            logs(&sb),
            qw_reqs.join("\n\n")
        );
        assert_eq!(t.owner.as_deref(), Some(owner));
        assert_eq!(std::fs::read_to_string(file).unwrap_or_default(), text);
    }
    let inbox = sb.ok(&["inbox", "leader", "--json"]);
    assert!(
        inbox.contains("cc finished task 1") && inbox.contains("qw finished task 2"),
        "{inbox}"
    );
    // Each asked its own wire with its member's model.
    assert_eq!(anthropic.requests("cc")[0]["model"], "claude-sonnet-4-5");
    assert_eq!(openai.requests("qw")[0]["model"], "qwen3-coder");
    let _ = sb.run(&["down"]);
}

/// A message sent to a busy Claude Code teammate arrives after its turn: the `Stop` hook
/// (`agent-team hook stop`) hands it back as the next instruction, without a keystroke, and it
/// is marked read only then.
#[test]
fn a_message_to_a_busy_claude_code_teammate_arrives_at_its_turns_end() {
    use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
    use serde_json::json;
    let claude = installed("@anthropic-ai/claude-code", "2.1.197", "claude");
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    let mut sb = Sandbox::new();
    sb.env.push((
        "AT_TEST_ANTHROPIC_KEY".into(),
        "sk-ant-test-0123456789abcdefghij".into(),
    ));
    let extra = sb.path("extra.txt");
    let gate = Gate::new();
    let call = |name: &str, args: serde_json::Value| Step::Tools(vec![(name.into(), args)]);
    mock.script(
        "cc",
        vec![
            call("mcp__team__claim_task", json!({"id": 1})),
            // Busy until the test has sent its message; then the turn ends.
            Step::Gate(
                gate.clone(),
                Box::new(Step::Text("Claimed; pausing.".into())),
            ),
            Step::Until {
                needles: vec!["also write extra.txt".into()],
                then: Box::new(call(
                    "Write",
                    json!({"file_path": extra.display().to_string(), "content": "extra\n"}),
                )),
                meanwhile: Box::new(Step::Text("Nothing new.".into())),
            },
            call(
                "mcp__team__update_task_status",
                json!({"id": 1, "status": "completed", "result": "extra.txt"}),
            ),
            Step::Text("All done.".into()),
        ],
    );
    sb.write_team_file(&format!(
        r#"name = "busy"
board = false

[roles.claude]
description = "Claude Code"
provider = "claude-code"
model = "claude-sonnet-4-5"
base_url = "{base}"
api_key_env = "AT_TEST_ANTHROPIC_KEY"
command = ["{claude}"]
restart = "never"

[[teammates]]
name = "cc"
role = "claude"

[[tasks]]
key = "one"
title = "Work"
"#,
        base = mock.base_url(),
        claude = claude.display(),
    ));
    let up = sb.run(&["up", "--backend", "process", "--detach"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    wait_for("cc to claim task 1", T, || {
        sb.tasks("busy")
            .iter()
            .any(|t| t.id == 1 && t.owner.as_deref() == Some("cc"))
    });
    sb.ok(&["send", "cc", "also write extra.txt"]);
    let state = |sb: &Sandbox| {
        let msgs: Vec<Message> =
            serde_json::from_str(&sb.ok(&["inbox", "cc", "--json"])).unwrap_or_default();
        msgs.iter()
            .find(|m| m.body == "also write extra.txt")
            .map(|m| m.state)
    };
    wait_for("the message to reach cc's MCP server", T, || {
        state(&sb) == Some(DeliveryState::Delivered)
    });
    gate.open();
    wait_for("cc to exit", Duration::from_secs(120), || {
        matches!(
            sb.agent("busy", "cc").status,
            AgentStatus::Exited | AgentStatus::Failed | AgentStatus::Backoff
        )
    });
    let log = std::fs::read_to_string(sb.team("busy").logs.join("cc.log")).unwrap_or_default();
    assert_eq!(
        std::fs::read_to_string(&extra).unwrap_or_default(),
        "extra\n",
        "{log}"
    );
    assert_eq!(state(&sb), Some(DeliveryState::Read));
    assert!(
        sb.task_is("busy", 1, TaskStatus::Completed),
        "{:?}",
        sb.tasks("busy")
    );
    assert_eq!(sb.agent("busy", "cc").status, AgentStatus::Exited, "{log}");
    let _ = sb.run(&["down"]);
}

/// The issue's own pair: a Claude Code teammate and a Codex teammate in one team file, each
/// against the mock in its own wire format (Anthropic messages; the Responses API, where
/// Codex sees the team tools as the `mcp__team` namespace), on one board. Codex writes its file
/// with its shell tool in its own sandbox.
#[test]
fn claude_code_and_codex_share_one_board() {
    use agent_team_mockmodel::{MockModel, Step, Wire};
    use serde_json::json;
    let claude = installed("@anthropic-ai/claude-code", "2.1.197", "claude");
    let codex = installed("@openai/codex", "0.169.0", "codex");
    let anthropic = MockModel::start_background(Wire::Anthropic).unwrap();
    let responses = MockModel::start_background(Wire::OpenAi).unwrap();
    let mut sb = Sandbox::new();
    sb.env.push((
        "AT_TEST_ANTHROPIC_KEY".into(),
        "sk-ant-test-0123456789abcdefghij".into(),
    ));
    sb.env
        .push(("AT_TEST_OPENAI_KEY".into(), "sk-test-codex".into()));
    let (cc_file, cx_file) = (sb.path("cc.txt"), sb.path("cx.txt"));
    let call = |name: &str, args: serde_json::Value| Step::Tools(vec![(name.into(), args)]);
    anthropic.script(
        "cc",
        vec![
            call("mcp__team__claim_task", json!({"id": 1})),
            call(
                "Write",
                json!({"file_path": cc_file.display().to_string(), "content": "claude\n"}),
            ),
            call(
                "mcp__team__send_message",
                json!({"to": "leader", "text": "cc finished task 1"}),
            ),
            call(
                "mcp__team__update_task_status",
                json!({"id": 1, "status": "completed", "result": "cc.txt"}),
            ),
            Step::Text("Done.".into()),
        ],
    );
    responses.script(
        "cx",
        vec![
            call("mcp__team__claim_task", json!({"id": 2})),
            call(
                "exec_command",
                json!({"cmd": format!("printf 'codex\\n' > {}", cx_file.display())}),
            ),
            call(
                "mcp__team__send_message",
                json!({"to": "leader", "text": "cx finished task 2"}),
            ),
            call(
                "mcp__team__update_task_status",
                json!({"id": 2, "status": "completed", "result": "cx.txt"}),
            ),
            Step::Text("Done.".into()),
        ],
    );
    sb.write_team_file(&format!(
        r#"name = "cxteam"
board = false

[roles.claude]
description = "Claude Code"
provider = "claude-code"
model = "claude-sonnet-4-5"
base_url = "{anthropic}"
api_key_env = "AT_TEST_ANTHROPIC_KEY"
command = ["{claude}"]
restart = "never"

[roles.codex]
description = "Codex"
provider = "codex"
model = "gpt-5-codex"
base_url = "{responses}"
api_key_env = "AT_TEST_OPENAI_KEY"
command = ["{codex}"]
restart = "never"

[[teammates]]
name = "cc"
role = "claude"

[[teammates]]
name = "cx"
role = "codex"

[[tasks]]
key = "one"
title = "Claude's file"

[[tasks]]
key = "two"
title = "Codex's file"
"#,
        anthropic = anthropic.base_url(),
        responses = responses.base_url(),
        claude = claude.display(),
        codex = codex.display(),
    ));
    let up = sb.run(&["up", "--backend", "process", "--detach"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let logs = |sb: &Sandbox| {
        ["cc", "cx"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(sb.team("cxteam").logs.join(format!("{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    wait_for("both CLIs to finish", Duration::from_secs(120), || {
        ["cc", "cx"].iter().all(|n| {
            matches!(
                sb.agent("cxteam", n).status,
                AgentStatus::Exited | AgentStatus::Failed | AgentStatus::Backoff
            )
        })
    });
    let tasks = sb.tasks("cxteam");
    for (id, owner, file, text) in [
        (1, "cc", &cc_file, "claude\n"),
        (2, "cx", &cx_file, "codex\n"),
    ] {
        let t = tasks.iter().find(|t| t.id == id).unwrap();
        assert_eq!(
            t.status,
            TaskStatus::Completed,
            "{t:?}\n{}\nunmatched: {}",
            logs(&sb),
            responses.unmatched().len()
        );
        assert_eq!(t.owner.as_deref(), Some(owner));
        assert_eq!(
            std::fs::read_to_string(file).unwrap_or_default(),
            text,
            "{}",
            logs(&sb)
        );
    }
    let inbox = sb.ok(&["inbox", "leader", "--json"]);
    assert!(
        inbox.contains("cc finished task 1") && inbox.contains("cx finished task 2"),
        "{inbox}"
    );
    let cx_req = &responses.requests("cx")[0];
    assert_eq!(cx_req["model"], "gpt-5-codex");
    assert!(
        cx_req["tools"].to_string().contains("\"mcp__team\""),
        "Codex saw no team tools: {}",
        cx_req["tools"]
    );
    // No process of either CLI outlives the team (Codex's app-server daemon is off): none has
    // an environment pointing into the team's private CLI homes.
    let _ = sb.run(&["down"]);
    let homes = sb.team("cxteam").dir.join("clis").display().to_string();
    wait_for("no CLI process left", T, || left_with(&homes).is_empty());
}

/// The pids of processes whose environment mentions `needle` (the CLIs' private homes).
fn left_with(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| String::from_utf8_lossy(&env).contains(needle))
        })
        .collect()
}

/// Claude Code interactive in its own tmux pane (the issue's main scene): no first-run screen
/// blocks it; its first instruction is typed into the pane (a bracketed paste) once its team
/// server has listed the tools, so its first turn has them; it works on the board; its turn's
/// end marks it idle (the `Stop` hook); `kill` stops its process, `restart` brings it back in
/// the same pane, and `down` leaves no process of it.
#[test]
fn claude_code_works_interactively_in_its_tmux_pane() {
    use agent_team_mockmodel::{MockModel, Step, Wire};
    use serde_json::json;
    let claude = installed("@anthropic-ai/claude-code", "2.1.197", "claude");
    let mock = MockModel::start_background(Wire::Anthropic).unwrap();
    let mut sb = Sandbox::new();
    sb.env.push((
        "AT_TEST_ANTHROPIC_KEY".into(),
        "sk-ant-test-0123456789abcdefghij".into(),
    ));
    let file = sb.path("pane.txt");
    let call = |name: &str, args: serde_json::Value| Step::Tools(vec![(name.into(), args)]);
    mock.script(
        "cc",
        vec![
            call("mcp__team__claim_task", json!({"id": 1})),
            call(
                "Write",
                json!({"file_path": file.display().to_string(), "content": "from the pane\n"}),
            ),
            call(
                "mcp__team__update_task_status",
                json!({"id": 1, "status": "completed", "result": "pane.txt"}),
            ),
            Step::Text("Finished the task in my pane.".into()),
        ],
    );
    sb.write_team_file(&format!(
        r#"name = "ccpane"
board = false

[roles.claude]
description = "Claude Code"
provider = "claude-code"
model = "claude-sonnet-4-5"
base_url = "{base}"
api_key_env = "AT_TEST_ANTHROPIC_KEY"
command = ["{claude}"]

[[teammates]]
name = "cc"
role = "claude"

[[tasks]]
key = "one"
title = "Write pane.txt"

[[tasks]]
key = "two"
title = "Left for later"
"#,
        base = mock.base_url(),
        claude = claude.display(),
    ));
    sb.ok(&["up", "--backend", "tmux", "--detach"]);
    let sock = sb.tmux_socket("ccpane");
    let pane = sb.agent("ccpane", "cc").pane.unwrap();
    let screen = |sb: &Sandbox| {
        sb.tmux(&sock, &["capture-pane", "-p", "-J", "-t", &pane])
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !sb.task_is("ccpane", 1, TaskStatus::Completed) {
        assert!(
            std::time::Instant::now() < deadline,
            "task 1 not completed from the pane; its screen:\n{}\nlast messages: {:#?}",
            screen(&sb),
            mock.requests("cc")
                .iter()
                .map(|r| r["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .map(|m| m.to_string())
                    .unwrap_or_default())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "from the pane\n"
    );
    wait_for("Claude Code's answer on its screen", T, || {
        screen(&sb).contains("Finished the task in my pane")
    });
    // Its turn ended: the Stop hook found nothing queued and reported it idle.
    wait_for("cc idle", T, || {
        sb.agent("ccpane", "cc").status == AgentStatus::Idle
    });
    let first_pid = sb.agent("ccpane", "cc").pid.unwrap();
    sb.ok(&["kill", "cc"]);
    wait_for("cc stopped", T, || {
        sb.agent("ccpane", "cc").status == AgentStatus::Stopped
    });
    wait_for("cc's process gone", T, || {
        !Path::new(&format!("/proc/{first_pid}")).exists()
    });
    sb.ok(&["restart", "cc"]);
    wait_for("cc back in the same pane", T, || {
        let a = sb.agent("ccpane", "cc");
        a.pid.is_some_and(|p| p != first_pid) && a.pane.as_deref() == Some(pane.as_str())
    });
    let homes = sb.team("ccpane").dir.join("clis").display().to_string();
    sb.ok(&["down"]);
    wait_for("no Claude Code process left", T, || {
        left_with(&homes).is_empty()
    });
}
