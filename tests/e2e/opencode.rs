//! opencode (`opencode-ai`) as a teammate, the real CLI against the mock model (its
//! OpenAI-compatible provider, offline): headless it works on the board over MCP, its shell
//! calls the role marks `ask` wait for `agent-team approve`; in its tmux pane a message to it
//! while busy arrives at its turn's end (our plugin's `session.idle`), and `down` leaves no
//! process of it.

use super::clis::{
    Headless, Lead, OPENAI_KEY, cli_role, installed, leads_a_team_over_mcp, left_with,
    resumes_after_restart, shell_waits_for_approval, works_headless_on_the_board,
};
use agent_team_e2e::*;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

/// The opencode version the suite installs and runs: the one its adapter is tested with.
pub(crate) const OPENCODE_VERSION: &str = agent_team_worker::external::tested::OPENCODE;

/// How long an opencode run may take.
const T: Duration = Duration::from_secs(120);

/// The installed opencode.
pub(crate) fn opencode() -> std::path::PathBuf {
    installed("opencode-ai", OPENCODE_VERSION, "opencode")
}

/// A team tool as opencode names it (the MCP server's name, `_`, the tool).
pub(crate) fn opencode_tool(name: &str) -> String {
    format!("team_{name}")
}

/// The mock, addressed as opencode's OpenAI-compatible provider (its base URL ends in `/v1`:
/// opencode asks `<baseURL>/chat/completions`). opencode would ask for a title of each new
/// session first; its adapter disables that (no side request: every request is the
/// teammate's counted work), and a title request would be answered aside (taking no scripted
/// step) and seen by the tests.
fn mock() -> MockModel {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    assert!(mock.base_url().ends_with("/v1"), "{}", mock.base_url());
    mock.answer_aside("You are a title generator", "Team work");
    mock
}

/// A `[roles.NAME]` section running opencode against `mock`.
fn role(name: &str, mock: &MockModel) -> String {
    cli_role(
        name,
        "opencode",
        "qwen3-coder",
        &mock.base_url(),
        OPENAI_KEY.0,
        &opencode(),
    )
}

/// opencode as a teammate, headless (`opencode run`, the prompt on its stdin): it claims its
/// task over MCP (`team_claim_task`), writes a file with its own `write`, completes the task,
/// messages the leader and exits; it asked with its role's key and model, and its home holds
/// what it keeps.
#[test]
fn an_opencode_teammate_claims_writes_completes_and_reports_headless() {
    let mock = mock();
    let (sb, log) = works_headless_on_the_board(Headless {
        role: role("cli", &mock),
        mock: &mock,
        key: OPENAI_KEY,
        env: Vec::new(),
        team_tool: opencode_tool,
        write: |path, text| {
            (
                "write".into(),
                json!({"filePath": path.display().to_string(), "content": text}),
            )
        },
    });
    let reqs = mock.requests("cc");
    // The role's model, and the team's tools beside opencode's own; its subagents and its
    // question tool withheld.
    assert_eq!(reqs[0]["model"], "qwen3-coder");
    let tools = reqs[0]["tools"].to_string();
    for t in [
        "team_claim_task",
        "team_wait_for_messages",
        "\"write\"",
        "\"bash\"",
    ] {
        assert!(tools.contains(t), "{t} not offered: {tools}\n{log}");
    }
    for t in ["\"task\"", "\"question\""] {
        assert!(!tools.contains(t), "{t} offered: {tools}");
    }
    // The prompt reached it verbatim, from its stdin (an argument would be JSON-quoted).
    let first = reqs[0]["messages"].to_string();
    assert!(
        first.contains("Your name is cc.") && !first.contains("\\\"Your name is cc."),
        "{first}"
    );
    // Its own key, on every request.
    assert!(
        mock.keys("cc")
            .iter()
            .all(|k| k.as_deref() == Some(&format!("Bearer {}", OPENAI_KEY.1))),
        "{:?}",
        mock.keys("cc")
    );
    // No title request (the adapter disables opencode's title agent).
    assert!(
        mock.aside_requests().is_empty(),
        "{:?}",
        mock.aside_requests()
    );
    // Its private home: its config, its sessions, no npm install of its plugin package, and
    // the session it started recorded for a resume.
    let home = sb.team("board").cli_home("cc");
    assert!(home.join("opencode.json").exists());
    assert!(home.join(".local/share/opencode/opencode.db").exists());
    assert!(
        !home
            .join(".config/opencode/node_modules/@opencode-ai")
            .exists()
    );
    let session = std::fs::read_to_string(home.join("session-id")).unwrap_or_default();
    assert!(session.starts_with("ses_"), "{session:?}");
    assert!(
        !reqs[0]["messages"].to_string().contains(&session),
        "the session id is opencode's own, not told to the model"
    );
    let _ = sb.run(&["down"]);
}

/// opencode's `bash` that the role marks `ask`: opencode itself asks about nothing, and our
/// plugin's `tool.execute.before` has each call judged (its throw is the deny).
#[test]
fn an_opencode_shell_call_the_role_marks_ask_waits_for_agent_team_approve() {
    let mock = mock();
    shell_waits_for_approval(
        &mock,
        OPENAI_KEY,
        &role("claude", &mock),
        Vec::new(),
        "bash",
        opencode_tool,
    );
}

/// opencode interactive in its tmux pane (the TUI, its first instruction given with
/// `--prompt`): it works on the board; a message sent to it while it is busy stays queued
/// until its turn ends, when our plugin's `session.idle` runs `agent-team hook stop` and
/// prompts the session with it (no keystroke); it acts on it; `down` leaves no process of it.
#[test]
fn a_message_to_a_busy_opencode_teammate_in_its_pane_arrives_at_its_turns_end() {
    let mock = mock();
    let mut sb = Sandbox::new();
    sb.env.push((OPENAI_KEY.0.into(), OPENAI_KEY.1.into()));
    let extra = sb.path("extra.txt");
    let gate = Gate::new();
    let call = |name: &str, args: serde_json::Value| Step::Tools(vec![(name.into(), args)]);
    mock.script(
        "oc",
        vec![
            call(&opencode_tool("claim_task"), json!({"id": 1})),
            // Busy until the test has sent its message; then the turn ends.
            Step::Gate(
                gate.clone(),
                Box::new(Step::Text("Claimed; pausing.".into())),
            ),
            Step::Until {
                needles: vec!["also write extra.txt".into()],
                then: Box::new(call(
                    "write",
                    json!({"filePath": extra.display().to_string(), "content": "extra\n"}),
                )),
                meanwhile: Box::new(Step::Text("Nothing new.".into())),
            },
            call(
                &opencode_tool("update_task_status"),
                json!({"id": 1, "status": "completed", "result": "extra.txt"}),
            ),
            Step::Text("All done.".into()),
        ],
    );
    sb.write_team_file(&format!(
        "name = \"ocbusy\"\nboard = false\n\n{role}[[teammates]]\nname = \"oc\"\nrole = \"opencode\"\n\n\
         [[tasks]]\nkey = \"one\"\ntitle = \"Work\"\n",
        role = role("opencode", &mock),
    ));
    sb.ok(&["up", "--backend", "tmux", "--detach"]);
    let sock = sb.tmux_socket("ocbusy");
    let pane = sb.agent("ocbusy", "oc").pane.unwrap();
    let screen = |sb: &Sandbox| {
        sb.tmux(&sock, &["capture-pane", "-p", "-J", "-t", &pane])
            .unwrap_or_default()
    };
    let log = |sb: &Sandbox| {
        std::fs::read_to_string(sb.team("ocbusy").logs.join("oc.log")).unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + T;
    while !sb
        .tasks("ocbusy")
        .iter()
        .any(|t| t.id == 1 && t.owner.as_deref() == Some("oc"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "oc did not claim task 1; its screen:\n{}\n{}\nunmatched: {:?}",
            screen(&sb),
            log(&sb),
            mock.unmatched()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sb.ok(&["send", "oc", "also write extra.txt"]);
    let state = |sb: &Sandbox| {
        let msgs: Vec<Message> =
            serde_json::from_str(&sb.ok(&["inbox", "oc", "--json"])).unwrap_or_default();
        msgs.iter()
            .find(|m| m.body == "also write extra.txt")
            .map(|m| m.state)
    };
    wait_for("the message to be sent", T, || state(&sb).is_some());
    // Busy: held by its MCP server until the turn's end.
    assert_eq!(state(&sb), Some(DeliveryState::Queued));
    gate.open();
    let deadline = std::time::Instant::now() + T;
    while !sb.task_is("ocbusy", 1, TaskStatus::Completed) {
        assert!(
            std::time::Instant::now() < deadline,
            "task 1 not completed; its screen:\n{}\n{}\nrequests: {}",
            screen(&sb),
            log(&sb),
            mock.requests("oc").len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&extra).unwrap_or_default(),
        "extra\n"
    );
    assert_eq!(state(&sb), Some(DeliveryState::Read));
    // Handed back by the plugin, not typed: the request after the pause carries it as the
    // user's next prompt.
    let handed = mock
        .requests("oc")
        .iter()
        .map(|r| r["messages"].to_string())
        .find(|m| m.contains("also write extra.txt"))
        .unwrap_or_default();
    assert!(handed.contains("New messages from your team"), "{handed}");
    wait_for("oc idle", T, || {
        sb.agent("ocbusy", "oc").status == AgentStatus::Idle
    });
    let home = sb.team("ocbusy").cli_home("oc");
    assert!(
        !left_with(&home.display().to_string()).is_empty(),
        "no process of oc while it runs"
    );
    sb.ok(&["down"]);
    wait_for("no process of oc left after down", T, || {
        left_with(&home.display().to_string()).is_empty()
    });
}

/// A restarted opencode teammate resumes its conversation: the plugin recorded the session
/// opencode started (`ses_…`), and the new launch continues it (`--session`) and is told to
/// carry on; neither launch asks for a title.
#[test]
fn a_restarted_opencode_teammate_resumes_its_conversation() {
    let mock = mock();
    let session = std::cell::RefCell::new(String::new());
    let sb = resumes_after_restart(&mock, OPENAI_KEY, &role("cli", &mock), |home, log| {
        let id = std::fs::read_to_string(home.join("session-id")).unwrap_or_default();
        assert!(id.starts_with("ses_"), "{id:?}\n{log}");
        *session.borrow_mut() = id;
    });
    let session = session.into_inner();
    let home = sb.team("resume").cli_home("cc");
    wait_for("cc's second run to end", T, || {
        sb.agent("resume", "cc").status == AgentStatus::Exited
    });
    // The same session, and no title request.
    assert_eq!(
        std::fs::read_to_string(home.join("session-id")).unwrap_or_default(),
        session
    );
    assert!(
        mock.aside_requests().is_empty(),
        "{:?}",
        mock.aside_requests()
    );
    let _ = sb.run(&["down"]);
}

/// The interactive scene for opencode in its pane (see
/// [`super::clis::works_interactively_in_its_tmux_pane`]): its first instruction given with
/// `--prompt`, its turn's end reported by our plugin's `session.idle`, a message typed into its
/// pane waking it, `kill`, `restart` resuming its session (`--session`), and `down`.
#[test]
fn opencode_works_interactively_in_its_tmux_pane() {
    let mock = mock();
    super::clis::works_interactively_in_its_tmux_pane(super::clis::Interactive {
        role: role("claude", &mock),
        mock: &mock,
        key: OPENAI_KEY,
        team_tool: opencode_tool,
        write: |path, text| {
            (
                "write".into(),
                json!({"filePath": path.display().to_string(), "content": text}),
            )
        },
        prefix: Vec::new(),
        resumes: true,
    });
}

/// opencode leads the team (`[roles.leader] provider = "opencode"`): over MCP it puts a task
/// on the board, starts a teammate, waits for its report and finishes the team; `run` prints
/// its answer.
#[test]
fn opencode_leads_a_team_over_mcp_and_run_returns_its_answer() {
    let mock = mock();
    leads_a_team_over_mcp(Lead {
        role: role("leader", &mock),
        mock: &mock,
        key: OPENAI_KEY,
        team_tool: opencode_tool,
        first: Vec::new(),
    });
}
