//! GitHub Copilot CLI (`@github/copilot`) as a teammate, the real CLI against the mock model
//! (its BYOK provider, OpenAI chat completions, offline): it works on the board over MCP, its
//! shell calls the role marks `ask` wait for `agent-team approve`, a message to it while busy
//! arrives at its turn's end, and a restarted one resumes its session.

use super::clis::{
    Headless, Lead, OPENAI_KEY, busy_message_arrives_at_turns_end, cli_role, installed,
    leads_a_team_over_mcp, resumes_after_restart, shell_waits_for_approval,
    works_headless_on_the_board,
};
use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::json;
use std::time::Duration;

/// The Copilot CLI version the suite installs and runs: the one its adapter is tested with.
pub(crate) const COPILOT_VERSION: &str = agent_team_worker::external::tested::COPILOT;

/// How long a Copilot run may take (its first start unpacks its runtime into its home).
const T: Duration = Duration::from_secs(120);

/// The installed Copilot CLI.
pub(crate) fn copilot() -> std::path::PathBuf {
    installed("@github/copilot", COPILOT_VERSION, "copilot")
}

/// A team tool as Copilot names it (the MCP server's name, `-`, the tool).
pub(crate) fn copilot_tool(name: &str) -> String {
    format!("team-{name}")
}

/// The mock, addressed as Copilot's OpenAI-compatible provider (its base URL ends in `/v1`).
fn mock() -> MockModel {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    assert!(mock.base_url().ends_with("/v1"), "{}", mock.base_url());
    mock
}

/// A `[roles.NAME]` section running Copilot against `mock`.
fn role(name: &str, mock: &MockModel) -> String {
    cli_role(
        name,
        "copilot",
        "gpt-4.1",
        &mock.base_url(),
        OPENAI_KEY.0,
        &copilot(),
    )
}

/// Copilot as a teammate, headless: it claims its task over MCP (`team-claim_task`), writes a
/// file with its own `create`, completes the task, messages the leader and exits; it asked
/// with its role's key and model, and nothing but the mock.
#[test]
fn a_copilot_teammate_claims_writes_completes_and_reports_headless() {
    let mock = mock();
    let (sb, log) = works_headless_on_the_board(Headless {
        role: role("cli", &mock),
        mock: &mock,
        key: OPENAI_KEY,
        // A GitHub token of the user's never reaches Copilot (it would be its credential).
        env: vec![(
            "GITHUB_TOKEN".into(),
            "ghp_user_token_not_for_copilot".into(),
        )],
        team_tool: copilot_tool,
        write: |path, text| {
            (
                "create".into(),
                json!({"path": path.display().to_string(), "file_text": text}),
            )
        },
    });
    let reqs = mock.requests("cc");
    // The role's model, and the team's tools beside Copilot's own.
    assert_eq!(reqs[0]["model"], "gpt-4.1");
    let tools = reqs[0]["tools"].to_string();
    for t in [
        "team-claim_task",
        "team-wait_for_messages",
        "\"create\"",
        "\"bash\"",
    ] {
        assert!(tools.contains(t), "{t} not offered: {tools}\n{log}");
    }
    // Its own key, on every request: not the user's GitHub token.
    assert!(
        mock.keys("cc")
            .iter()
            .all(|k| k.as_deref() == Some(&format!("Bearer {}", OPENAI_KEY.1))),
        "{:?}",
        mock.keys("cc")
    );
    // Its state went to its private home, not the user's.
    let home = sb.team("board").cli_home("cc");
    assert!(home.join(".copilot/hooks/team.json").exists());
    assert!(home.join(".copilot/session-state").is_dir());
    let _ = sb.run(&["down"]);
}

/// Copilot's `bash` that the role marks `ask`: Copilot runs with `--allow-all`, and its
/// `preToolUse` hook's deny is what stops a call.
#[test]
fn a_copilot_shell_call_the_role_marks_ask_waits_for_agent_team_approve() {
    let mock = mock();
    let role = role("claude", &mock);
    shell_waits_for_approval(&mock, OPENAI_KEY, &role, Vec::new(), "bash", copilot_tool);
}

/// A message to a busy Copilot teammate arrives at its turn's end: its `agentStop` hook hands
/// it back as the next prompt.
#[test]
fn a_message_to_a_busy_copilot_teammate_arrives_at_its_turns_end() {
    let mock = mock();
    let role = role("claude", &mock);
    busy_message_arrives_at_turns_end(
        &mock,
        OPENAI_KEY,
        &role,
        Vec::new(),
        |path| {
            (
                "create".into(),
                json!({"path": path.display().to_string(), "file_text": "extra\n"}),
            )
        },
        copilot_tool,
    );
}

/// A restarted Copilot teammate resumes its session (`--resume=` the id it was started under
/// with `--session-id=`) and is told to carry on.
#[test]
fn a_restarted_copilot_teammate_resumes_its_session() {
    let mock = mock();
    let sb = resumes_after_restart(&mock, OPENAI_KEY, &role("cli", &mock), |home, log| {
        let id = std::fs::read_to_string(home.join("session-id")).unwrap_or_default();
        assert!(
            home.join(".copilot/session-state")
                .join(id.trim())
                .join("events.jsonl")
                .is_file(),
            "no transcript of session {id:?}\n{log}"
        );
    });
    let _ = sb.run(&["down"]);
}

/// Copilot interactive in its tmux pane (`-i`, no folder-trust or login screen first): it
/// claims, writes and completes its task; idle, it is woken by a message typed into its pane;
/// `down` leaves no process.
#[test]
fn copilot_works_interactively_in_its_tmux_pane() {
    let mock = mock();
    let mut sb = Sandbox::new();
    sb.env.push((OPENAI_KEY.0.into(), OPENAI_KEY.1.into()));
    let (file, extra) = (sb.path("pane.txt"), sb.path("extra.txt"));
    let call = |tool: &str, args: serde_json::Value| Step::Tools(vec![(tool.into(), args)]);
    mock.script(
        "cp",
        vec![
            call(&copilot_tool("claim_task"), json!({"id": 1})),
            call(
                "create",
                json!({"path": file.display().to_string(), "file_text": "from the pane\n"}),
            ),
            call(
                &copilot_tool("update_task_status"),
                json!({"id": 1, "status": "completed", "result": "pane.txt"}),
            ),
            Step::Text("Finished the task in my pane.".into()),
            // Woken while idle by a message typed into its pane.
            Step::Until {
                needles: vec!["please also write extra.txt".into()],
                then: Box::new(call(
                    "create",
                    json!({"path": extra.display().to_string(), "file_text": "woken\n"}),
                )),
                meanwhile: Box::new(Step::Text("Nothing new.".into())),
            },
            Step::Text("Wrote extra.txt.".into()),
        ],
    );
    sb.write_team_file(&format!(
        "name = \"cppane\"\nboard = false\n\n{role}[[teammates]]\nname = \"cp\"\nrole = \"copilot\"\n\n\
         [[tasks]]\nkey = \"one\"\ntitle = \"Write pane.txt\"\n\n\
         [[tasks]]\nkey = \"two\"\ntitle = \"Left for later (the board stays open)\"\n",
        role = role("copilot", &mock),
    ));
    sb.ok(&["up", "--backend", "tmux", "--detach"]);
    let sock = sb.tmux_socket("cppane");
    let pane = sb.agent("cppane", "cp").pane.unwrap();
    let screen = |sb: &Sandbox| {
        sb.tmux(&sock, &["capture-pane", "-p", "-J", "-t", &pane])
            .unwrap_or_default()
    };
    // Its answer: under load Copilot's renderer draws a character of one line over another's
    // ("Finishedathe task in my pane.", "Finished the task inCmy pane."), so a few may differ.
    wait_for_or(
        "Copilot's answer on its screen",
        T,
        || drawn(&screen(&sb), "Finished the task in my pane."),
        || {
            format!(
                "its screen:\n{}\nthe mock's requests: {}",
                screen(&sb),
                mock.requests("cp").len()
            )
        },
    );
    assert!(
        sb.task_is("cppane", 1, TaskStatus::Completed),
        "{:?}\n{}",
        sb.tasks("cppane"),
        screen(&sb)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "from the pane\n"
    );
    // Its turn ended: the agentStop hook found nothing queued and reported it idle.
    wait_for("cp idle", T, || {
        sb.agent("cppane", "cp").status == AgentStatus::Idle
    });
    sb.ok(&["send", "cp", "please also write extra.txt"]);
    let deadline = std::time::Instant::now() + T;
    while !std::fs::read_to_string(&extra).is_ok_and(|t| t == "woken\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "the woken Copilot wrote no extra.txt; its inbox: {}\nits screen:\n{}\n\
             last messages: {:#?}",
            sb.ok(&["inbox", "cp", "--json"]),
            screen(&sb),
            mock.requests("cp")
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
    let msgs: Vec<Message> =
        serde_json::from_str(&sb.ok(&["inbox", "cp", "--json"])).unwrap_or_default();
    assert!(
        msgs.iter()
            .any(|m| m.body == "please also write extra.txt" && m.state == DeliveryState::Read),
        "{msgs:?}"
    );
    // Its tail, as above.
    wait_for_or(
        "Copilot's second answer on its screen",
        T,
        || screen(&sb).contains("extra.txt."),
        || format!("its screen:\n{}", screen(&sb)),
    );
    // Its first instruction was given once.
    let first = mock.requests("cp")[0]["messages"].to_string();
    assert_eq!(first.matches("Your name is cp.").count(), 1, "{first}");
    let homes = sb.team("cppane").dir.join("clis").display().to_string();
    sb.ok(&["down"]);
    wait_for("no Copilot process left", T, || {
        super::clis::left_with(&homes).is_empty()
    });
}

/// Copilot leads the team (`[roles.leader] provider = "copilot"`): over MCP it puts a task on
/// the board, starts a teammate, waits for its report and finishes the team; `run` prints its
/// answer.
#[test]
fn copilot_leads_a_team_over_mcp_and_run_returns_its_answer() {
    let mock = mock();
    leads_a_team_over_mcp(Lead {
        role: role("leader", &mock),
        mock: &mock,
        key: OPENAI_KEY,
        team_tool: copilot_tool,
        first: Vec::new(),
    });
}

/// Whether `text` is on `screen`, but for at most 3 of its characters drawn over by another
/// line's (a terminal UI under load repaints out of order).
fn drawn(screen: &str, text: &str) -> bool {
    let want: Vec<char> = text.chars().collect();
    screen.lines().any(|line| {
        let have: Vec<char> = line.chars().collect();
        have.windows(want.len())
            .any(|w| w.iter().zip(&want).filter(|(a, b)| a != b).count() <= 3)
    })
}

#[test]
fn a_text_drawn_over_in_a_few_places_is_still_found() {
    let text = "Finished the task in my pane.";
    assert!(drawn(" ● Finished the task inCmy pane. · id: 1", text));
    assert!(drawn("x Finishedathe task in my pane.) · id", text));
    assert!(!drawn(" ● Finished the job somewhere else.", text));
    assert!(!drawn("short", text));
}
