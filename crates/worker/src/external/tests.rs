//! Each adapter's launch command, environment and private files, without the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn agent() -> AgentEnv {
    AgentEnv {
        socket: "/run/t.sock".into(),
        team: "t".into(),
        name: "cc".into(),
        secret: "s3cret".into(),
        incarnation: 2,
        log_file: Some("/logs/cc.log".into()),
        workspace: None,
        member: Default::default(),
        external: true,
        healer: None,
    }
}

fn role(provider: Provider) -> Role {
    let mut r = agent_team_config::builtin_roles()
        .get("worker")
        .cloned()
        .unwrap();
    r.provider = provider;
    r.model = "m-1".into();
    r.base_url = Some("http://127.0.0.1:9/v1".into());
    r
}

fn config() -> TeamConfig {
    let mut c = agent_team_config::empty_team("t", Path::new("/ws"));
    c.goal = Some("ship it".into());
    c
}

fn file<'a>(l: &'a Launch, name: &str) -> &'a str {
    l.files
        .iter()
        .find(|(p, _)| p.ends_with(name))
        .map(|(_, c)| c.as_str())
        .unwrap_or_else(|| panic!("no {name} in {:?}", l.files))
}

fn env_of<'a>(l: &'a Launch, k: &str) -> Option<&'a str> {
    l.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn the_mcp_config_starts_the_bridge_to_this_agents_worker() {
    let l = plan(
        &agent(),
        &config(),
        &role(Provider::ClaudeCode),
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap();
    let mcp: serde_json::Value = serde_json::from_str(file(&l, "mcp.json")).unwrap();
    let team = &mcp["mcpServers"]["team"];
    assert_eq!(team["command"], "/bin/agent-team-bridge");
    assert_eq!(
        team["args"],
        serde_json::json!(["mcp", "/home/cc/mcp.sock"])
    );
    // The bridge carries bytes only: no identity travels to the CLI's MCP server.
    assert!(team.get("env").is_none(), "{team}");
    assert_eq!(
        l.serving,
        ToolServing {
            socket: "/home/cc/mcp.sock".into(),
            hook_socket: Some("/home/cc/hook.sock".into()),
            interactive: true,
            first_input_file: Some("/home/cc/first-input.md".into()),
        }
    );
    // The worker's session holds the secret: it is in no file, argument or variable of the
    // CLI (its tools run in the sandbox, where neither the daemon's socket nor the runtime
    // dir is).
    assert!(!l.args.iter().any(|a| a.contains("s3cret")));
    assert!(!l.env.iter().any(|(_, v)| v.contains("s3cret")));
    assert!(!l.files.iter().any(|(_, text)| text.contains("s3cret")));
}

#[test]
fn claude_code_gets_a_private_seeded_home_its_mcp_server_only_and_the_prompt() {
    let l = plan(
        &agent(),
        &config(),
        &role(Provider::ClaudeCode),
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(l.program, "claude");
    let at = |flag: &str| l.args.iter().position(|a| a == flag).unwrap();
    assert_eq!(l.args[at("--mcp-config") + 1], "/home/cc/mcp.json");
    assert!(l.args.contains(&"--strict-mcp-config".to_string()));
    assert_eq!(l.args[at("--model") + 1], "m-1");
    assert!(l.args[at("--allowedTools") + 1].contains("mcp__team__claim_task"));
    assert!(l.args[at("--allowedTools") + 1].contains("mcp__team__wait_for_messages"));
    // Interactive: the prompt is typed into the pane by the team server once the tools are
    // listed, not given on the command line.
    let prompt = file(&l, "first-input.md");
    assert!(
        prompt.contains("Your name is cc.") && prompt.contains("ship it"),
        "{prompt}"
    );
    assert!(!l.args.iter().any(|a| a.contains("Your name is")));
    assert_eq!(
        l.serving.first_input_file.as_deref(),
        Some(Path::new("/home/cc/first-input.md"))
    );
    assert_eq!(env_of(&l, "HOME"), Some("/home/cc"));
    assert_eq!(env_of(&l, "CLAUDE_CONFIG_DIR"), Some("/home/cc/.claude"));
    assert_eq!(
        env_of(&l, "ANTHROPIC_BASE_URL"),
        Some("http://127.0.0.1:9/v1")
    );
    assert_eq!(
        env_of(&l, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"),
        Some("1")
    );
    // The turn-end hook reaches the agent's MCP server on its private socket.
    let settings: serde_json::Value = serde_json::from_str(file(&l, "settings.json")).unwrap();
    assert_eq!(
        settings["hooks"]["Stop"][0]["hooks"][0]["command"],
        "/bin/agent-team-bridge hook stop --socket /home/cc/hook.sock"
    );
    assert_eq!(
        l.serving.hook_socket.as_deref(),
        Some(Path::new("/home/cc/hook.sock"))
    );
    let seeded: serde_json::Value = serde_json::from_str(file(&l, ".claude.json")).unwrap();
    assert_eq!(seeded["hasCompletedOnboarding"], true);
    assert_eq!(seeded["projects"]["/ws"]["hasTrustDialogAccepted"], true);
    assert_eq!(l.cwd, PathBuf::from("/ws"));
}

/// Codex's own sandbox is kept where it can start and left to ours where it cannot (nested in
/// our bubblewrap as root, every shell call of Codex failed: "bwrap: setting up uid map").
#[test]
fn codex_keeps_its_own_sandbox_unless_it_cannot_start_inside_ours() {
    assert_eq!(codex::codex_sandbox_mode(false), "workspace-write");
    assert_eq!(codex::codex_sandbox_mode(true), "danger-full-access");
    let mode_with = |sandbox| {
        let mut c = config();
        c.sandbox = sandbox;
        let l = plan(
            &agent(),
            &c,
            &role(Provider::Codex),
            Path::new("/home/cc"),
            Path::new("/bin/agent-team-bridge"),
            true,
            None,
        )
        .unwrap();
        let toml = file(&l, "config.toml").to_string();
        toml.lines()
            .find_map(|l| l.strip_prefix("sandbox_mode = "))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no sandbox_mode in\n{toml}"))
    };
    // Without the team's sandbox Codex's own is all there is.
    assert_eq!(
        mode_with(agent_team_config::SandboxMode::Off),
        "workspace-write"
    );
    let nested_as_root = matches!(
        agent_team_sandbox::support().mechanism(),
        agent_team_sandbox::Mechanism::Namespace(_)
    ) && nix::unistd::geteuid().is_root();
    assert_eq!(
        mode_with(agent_team_config::SandboxMode::On),
        codex::codex_sandbox_mode(nested_as_root)
    );
}

#[test]
fn codex_gets_a_responses_provider_the_team_server_and_no_daemon() {
    let l = plan(
        &agent(),
        &config(),
        &role(Provider::Codex),
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(l.program, "codex");
    assert_eq!(env_of(&l, "CODEX_HOME"), Some("/home/cc/.codex"));
    let toml = file(&l, "config.toml");
    for want in [
        "model = \"m-1\"",
        "wire_api = \"responses\"",
        "base_url = \"http://127.0.0.1:9/v1\"",
        "[mcp_servers.team]",
        "command = \"/bin/agent-team-bridge\"",
        "args = [\"mcp\", \"/home/cc/mcp.sock\"]",
        "default_tools_approval_mode = \"approve\"",
        "daemon_auto_start = false",
        "plugins = false",
        "[projects.\"/ws\"]",
    ] {
        assert!(toml.contains(want), "{want} missing from\n{toml}");
    }
    let parsed: toml_check::Value = toml_check::parse(toml);
    assert!(parsed.0, "config.toml does not parse: {toml}");
    assert!(
        l.args
            .contains(&"--dangerously-bypass-hook-trust".to_string())
    );
    // The worker role runs the shell outright: no permission hook; the turn-end hook always.
    assert!(!toml.contains("PreToolUse"), "{toml}");
    assert!(
        toml.contains("[[hooks.Stop]]") && toml.contains("hook stop --socket /home/cc/hook.sock"),
        "{toml}"
    );
    // A role that asks before the shell: Codex's `Bash` passes the deny-only hook.
    let mut asking = role(Provider::Codex);
    asking.permissions.push(agent_team_config::PolicyRule {
        tool: "bash".into(),
        pattern: None,
        action: agent_team_config::PermAction::Ask,
    });
    let l = plan(
        &agent(),
        &config(),
        &asking,
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        true,
        None,
    )
    .unwrap();
    let toml = file(&l, "config.toml");
    for want in [
        "[[hooks.PreToolUse]]",
        "matcher = \"^(Bash)$\"",
        "hook pre-tool-use --cli codex --socket /home/cc/hook.sock",
    ] {
        assert!(toml.contains(want), "{want} missing from\n{toml}");
    }
    assert!(
        toml_check::parse(toml).0,
        "config.toml does not parse: {toml}"
    );
}

/// A tiny TOML well-formedness check without a TOML dependency in this crate: every line is
/// blank, a table header or `key = value` with a JSON-compatible value.
mod toml_check {
    pub struct Value(pub bool);
    pub fn parse(s: &str) -> Value {
        Value(s.lines().all(|l| {
            let l = l.trim();
            l.is_empty()
                || (l.starts_with('[') && l.ends_with(']'))
                || l.split_once(" = ")
                    .is_some_and(|(_, v)| serde_json::from_str::<serde_json::Value>(v).is_ok())
        }))
    }
}

#[test]
fn qwen_code_gets_its_settings_with_a_trusted_team_server() {
    let l = plan(
        &agent(),
        &config(),
        &role(Provider::QwenCode),
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(l.program, "qwen");
    let s: serde_json::Value = serde_json::from_str(file(&l, "settings.json")).unwrap();
    assert_eq!(s["mcpServers"]["team"]["trust"], true);
    assert_eq!(
        s["mcpServers"]["team"]["args"],
        serde_json::json!(["mcp", "/home/cc/mcp.sock"])
    );
    assert_eq!(s["security"]["auth"]["selectedType"], "openai");
    assert_eq!(env_of(&l, "OPENAI_BASE_URL"), Some("http://127.0.0.1:9/v1"));
    assert_eq!(env_of(&l, "QWEN_HOME"), Some("/home/cc/.qwen"));
    assert_eq!(l.args[l.args.len() - 2], "-i");
    // Qwen never asks by itself: the `PreToolUse` hook judges what the role does not allow
    // outright (none of the worker role's own tools here) and refuses Qwen's second team.
    assert_eq!(&l.args[..2], ["--approval-mode", "yolo"]);
    let pre = &s["hooks"]["PreToolUse"][0];
    let matcher = pre["matcher"].as_str().unwrap();
    assert!(
        matcher.starts_with("^(") && matcher.ends_with(")$"),
        "{matcher}"
    );
    let judged: Vec<&str> = matcher[2..matcher.len() - 2].split('|').collect();
    assert!(judged.contains(&"agent") && judged.contains(&"send_message"));
    assert!(!judged.contains(&"write_file"), "{judged:?}");
    assert_eq!(
        pre["hooks"][0]["timeout"], 86_400_000,
        "milliseconds for Qwen"
    );
    // A role that must ask before the shell, and lacks the web: both judged.
    let mut asking = role(Provider::QwenCode);
    asking.permissions.push(agent_team_config::PolicyRule {
        tool: "bash".into(),
        pattern: None,
        action: agent_team_config::PermAction::Ask,
    });
    asking.tools.retain(|t| t != "web_fetch");
    let judged = qwen_judged(&asking);
    assert!(
        judged.iter().any(|t| t == "run_shell_command"),
        "{judged:?}"
    );
    assert!(judged.iter().any(|t| t == "web_fetch"), "{judged:?}");
    assert!(judged.iter().any(|t| t == "web_search"), "{judged:?}");
    assert!(!judged.iter().any(|t| t == "write_file"), "{judged:?}");
}

#[test]
fn a_cli_template_is_filled_and_a_missing_one_is_an_error() {
    let mut r = role(Provider::Cli);
    r.command = Some(vec![
        "node".into(),
        "fake.js".into(),
        "--mcp={mcp_config}".into(),
        "{prompt_file}".into(),
        "{name}@{team}".into(),
    ]);
    let l = plan(
        &agent(),
        &config(),
        &r,
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(l.program, "node");
    assert_eq!(
        l.args,
        vec![
            "fake.js",
            "--mcp=/home/cc/mcp.json",
            "/home/cc/prompt.md",
            "cc@t"
        ]
    );
    assert_eq!(
        env_of(&l, "AGENT_TEAM_MCP_CONFIG"),
        Some("/home/cc/mcp.json")
    );
    r.command = None;
    let e = plan(
        &agent(),
        &config(),
        &r,
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no `command`"), "{e}");
}

#[test]
fn a_role_command_names_the_program_and_adds_arguments() {
    let mut r = role(Provider::ClaudeCode);
    r.command = Some(vec!["/opt/claude/bin/claude".into(), "--verbose".into()]);
    let l = plan(
        &agent(),
        &config(),
        &r,
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(l.program, "/opt/claude/bin/claude");
    assert_eq!(l.args.last().map(String::as_str), Some("--verbose"));
    // Where the prompt follows `-p` / `-i`, the extra words go before both.
    for p in [Provider::QwenCode, Provider::GeminiCli] {
        for headless in [true, false] {
            let mut r = role(p);
            r.command = Some(vec!["/opt/cli".into(), "--verbose".into()]);
            let l = plan(
                &agent(),
                &config(),
                &r,
                Path::new("/home/cc"),
                Path::new("/bin/agent-team-bridge"),
                headless,
                None,
            )
            .unwrap();
            let n = l.args.len();
            assert_eq!(
                &l.args[n - 3..],
                [
                    "--verbose",
                    if headless { "-p" } else { "-i" },
                    &first_input(&agent(), &config(), &r)
                ],
                "{}: {:?}",
                p.as_str(),
                l.args
            );
        }
    }
}

#[test]
fn programs_are_found_on_the_path_given() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("claude");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("/nonexistent:{}", dir.path().display());
    assert_eq!(find_program("claude", Some(&path)), Some(exe));
    assert_eq!(find_program("codex", Some(&path)), None);
    assert_eq!(npm_package(Provider::Codex), Some("@openai/codex"));
}

#[test]
fn headless_launches_use_each_clis_one_shot_mode() {
    let run = |p| {
        plan(
            &agent(),
            &config(),
            &role(p),
            Path::new("/home/cc"),
            Path::new("/bin/agent-team-bridge"),
            true,
            None,
        )
        .unwrap()
        .args
    };
    let c = run(Provider::ClaudeCode);
    assert_eq!(c[0], "-p");
    assert!(c[1].contains("Your name is cc."), "{c:?}");
    assert_eq!(
        &run(Provider::Codex)[..2],
        ["exec", "--skip-git-repo-check"]
    );
    let q = run(Provider::QwenCode);
    assert_eq!(q[q.len() - 2], "-p");
}

#[test]
fn claude_codes_own_tools_follow_the_roles_tools_and_policy() {
    let flag = |l: &Launch, f: &str| {
        l.args
            .iter()
            .position(|a| a == f)
            .map(|i| l.args[i + 1].clone())
            .unwrap_or_default()
    };
    let launch = |r: &Role| {
        plan(
            &agent(),
            &config(),
            r,
            Path::new("/home/cc"),
            Path::new("/bin/agent-team-bridge"),
            true,
            None,
        )
        .unwrap()
    };
    // The worker role writes and runs the shell: allowed without asking.
    let l = launch(&role(Provider::ClaudeCode));
    let allowed = flag(&l, "--allowedTools");
    for t in ["Read", "Write", "Edit", "Bash", "mcp__team__claim_task"] {
        assert!(allowed.split(',').any(|x| x == t), "{t} not in {allowed}");
    }
    // A read-only role's Claude may not write or run the shell.
    let mut ro = agent_team_config::builtin_roles()
        .get("reviewer")
        .cloned()
        .unwrap();
    ro.provider = Provider::ClaudeCode;
    let l = launch(&ro);
    let denied = flag(&l, "--disallowedTools");
    // A role without web_search: Claude Code's WebSearch is taken away too.
    for t in ["Write", "Edit", "Bash", "WebSearch"] {
        assert!(denied.split(',').any(|x| x == t), "{t} not in {denied}");
    }
    assert!(!flag(&l, "--allowedTools").split(',').any(|x| x == "Write"));
    assert!(!file(&l, "settings.json").contains("PreToolUse"));
    // `ask` leaves each call to the `PreToolUse` hook, which has the team decide: neither
    // allowed nor disallowed, and the hook waits as long as the daemon lets a request wait.
    let mut asking = role(Provider::ClaudeCode);
    asking.permissions.push(agent_team_config::PolicyRule {
        tool: "bash".into(),
        pattern: None,
        action: agent_team_config::PermAction::Ask,
    });
    let l = launch(&asking);
    assert!(!flag(&l, "--allowedTools").split(',').any(|x| x == "Bash"));
    assert!(
        !flag(&l, "--disallowedTools")
            .split(',')
            .any(|x| x == "Bash")
    );
    let settings: serde_json::Value = serde_json::from_str(file(&l, "settings.json")).unwrap();
    let pre = &settings["hooks"]["PreToolUse"][0];
    let matcher = pre["matcher"].as_str().unwrap();
    assert!(matcher.split('|').any(|t| t == "Bash"), "{matcher}");
    assert!(!matcher.split('|').any(|t| t == "Write"), "{matcher}");
    // WebSearch is web_search: asked, like WebFetch, unless the policy names it.
    for t in ["WebFetch", "WebSearch"] {
        assert!(matcher.split('|').any(|x| x == t), "{t} not in {matcher}");
    }
    let hook = &pre["hooks"][0];
    assert_eq!(
        hook["command"],
        "/bin/agent-team-bridge hook pre-tool-use --cli claude-code --socket /home/cc/hook.sock"
    );
    assert!(hook["timeout"].as_u64().unwrap() >= 3600);
    assert_eq!(
        claude_tools(&asking).asked.join("|"),
        matcher,
        "the hooked tools are the judged ones"
    );
}

#[test]
fn claude_and_qwen_start_a_recorded_session_and_resume_it_only_when_its_transcript_exists() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // Nothing recorded: a new session with a fresh UUID.
    let Some(Conversation::New(id)) = session_for(adapter(Provider::ClaudeCode).unwrap(), home)
    else {
        panic!("no new session")
    };
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
    assert_ne!(
        session_for(adapter(Provider::ClaudeCode).unwrap(), home),
        Some(Conversation::New(id.clone())),
        "ids are fresh"
    );
    // The launch starts it under that id and records it.
    let launch = |r: &Role, s: &Conversation| {
        plan(
            &agent(),
            &config(),
            r,
            home,
            Path::new("/bin/agent-team-bridge"),
            true,
            Some(s),
        )
        .unwrap()
    };
    let l = launch(&role(Provider::ClaudeCode), &Conversation::New(id.clone()));
    let at = l.args.iter().position(|a| a == "--session-id").unwrap();
    assert_eq!(l.args[at + 1], id);
    assert_eq!(file(&l, SESSION_FILE), id);
    write_files(&l).unwrap();
    // Recorded but never written by the CLI (it died first): a new session, not a resume
    // that would fail.
    assert!(matches!(
        session_for(adapter(Provider::ClaudeCode).unwrap(), home),
        Some(Conversation::New(n)) if n != id
    ));
    // Once Claude wrote its transcript, a restart resumes it and is told to carry on.
    let project = home.join(".claude/projects/-ws");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join(format!("{id}.jsonl")), "{}\n").unwrap();
    let resume = session_for(adapter(Provider::ClaudeCode).unwrap(), home).unwrap();
    assert_eq!(resume, Conversation::Resume(id.clone()));
    let l = launch(&role(Provider::ClaudeCode), &resume);
    let at = l.args.iter().position(|a| a == "--resume").unwrap();
    assert_eq!(l.args[at + 1], id);
    assert_eq!(
        l.args[l.args.iter().position(|a| a == "-p").unwrap() + 1],
        RESUMED_INPUT
    );
    assert!(!l.args.contains(&"--session-id".to_string()));
    // Qwen Code: the same flags; its transcript lives under its own home.
    assert!(matches!(
        session_for(adapter(Provider::QwenCode).unwrap(), home),
        Some(Conversation::New(_))
    ));
    let chats = home.join(".qwen/projects/x/chats");
    std::fs::create_dir_all(&chats).unwrap();
    std::fs::write(chats.join(format!("{id}.jsonl")), "{}\n").unwrap();
    let q = launch(&role(Provider::QwenCode), &Conversation::Resume(id.clone()));
    assert!(q.args.windows(2).any(|w| w[0] == "--resume" && w[1] == id));
    assert_eq!(q.args.last().map(String::as_str), Some(RESUMED_INPUT));
    assert_eq!(
        session_for(adapter(Provider::QwenCode).unwrap(), home),
        Some(Conversation::Resume(id))
    );
    // A recorded id that is not a UUID never reaches a command line.
    std::fs::write(home.join(SESSION_FILE), "--dangerous").unwrap();
    assert!(matches!(
        session_for(adapter(Provider::ClaudeCode).unwrap(), home),
        Some(Conversation::New(_))
    ));
    // Codex and other CLIs: no session ids.
    assert_eq!(session_for(adapter(Provider::Codex).unwrap(), home), None);
}

#[test]
fn every_external_provider_has_one_adapter_and_no_other_has_one() {
    for p in [
        Provider::Openai,
        Provider::Anthropic,
        Provider::Exec,
        Provider::ClaudeCode,
        Provider::Codex,
        Provider::QwenCode,
        Provider::Cli,
    ] {
        assert_eq!(adapter(p).is_some(), p.is_external(), "{}", p.as_str());
        if let Some(a) = adapter(p) {
            assert_eq!(a.provider(), p);
            // Each CLI's tool table is named as its provider is.
            if let Some(t) = agent_team_tools::cli_names::ALL
                .iter()
                .find(|t| t.cli == p.as_str())
            {
                assert!(!t.tools.is_empty(), "{}", t.cli);
            }
        }
        if !p.is_external() {
            let err = plan(
                &agent(),
                &config(),
                &role(p),
                Path::new("/home/x"),
                Path::new("/bin/agent-team-bridge"),
                true,
                None,
            )
            .unwrap_err();
            assert!(err.to_string().contains("not an external CLI"), "{err}");
        }
    }
    for t in agent_team_tools::cli_names::ALL {
        assert!(
            ADAPTERS.iter().any(|a| a.provider().as_str() == t.cli),
            "a tool table for {}, which has no adapter",
            t.cli
        );
    }
}

#[test]
fn a_cli_leader_is_told_to_lead_with_the_leaders_tools_and_a_teammate_to_claim() {
    let mut leader = agent();
    leader.name = agent_team_protocol::names::LEADER.into();
    let lead_role = agent_team_config::builtin_roles()
        .get("leader")
        .cloned()
        .unwrap();
    let text = first_input(&leader, &config(), &lead_role);
    assert!(text.starts_with("You lead a team of agents."), "{text}");
    assert!(text.contains("Your name is leader. You lead the agent team t."));
    for t in ["spawn_team", "create_task", "wait_for", "finish_team"] {
        assert!(text.contains(t), "{t} not named: {text}");
    }
    assert!(!text.contains("Claim a pending task"));
    let mate = first_input(&agent(), &config(), &role(Provider::ClaudeCode));
    assert!(mate.contains("Your name is cc. You are a worker in the agent team t."));
    assert!(mate.contains("Claim a pending task") && !mate.contains("finish_team"));
    // Claude Code allows the leader's team tools without asking.
    let l = plan(
        &leader,
        &config(),
        &{
            let mut r = lead_role.clone();
            r.provider = Provider::ClaudeCode;
            r
        },
        Path::new("/home/cc"),
        Path::new("/bin/agent-team-bridge"),
        true,
        None,
    )
    .unwrap();
    let allowed = l
        .args
        .iter()
        .skip_while(|a| *a != "--allowedTools")
        .nth(1)
        .unwrap();
    assert!(allowed.contains("mcp__team__finish_team"), "{allowed}");
    assert!(!allowed.contains("mcp__team__claim_task"), "{allowed}");
}

#[test]
fn an_installed_clis_version_is_read_from_its_npm_package_and_another_one_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("node_modules/@google/gemini-cli");
    std::fs::create_dir_all(pkg.join("bundle")).unwrap();
    std::fs::create_dir_all(dir.path().join("node_modules/.bin")).unwrap();
    let write_version = |v: &str| {
        std::fs::write(
            pkg.join("package.json"),
            format!(r#"{{"name": "@google/gemini-cli", "version": "{v}"}}"#),
        )
        .unwrap();
    };
    std::fs::write(pkg.join("bundle/gemini.js"), "").unwrap();
    let exe = dir.path().join("node_modules/.bin/gemini");
    std::os::unix::fs::symlink("../@google/gemini-cli/bundle/gemini.js", &exe).unwrap();
    let gemini = adapter(Provider::GeminiCli).unwrap();
    write_version("0.61.0");
    assert_eq!(installed_version(gemini, &exe).as_deref(), Some("0.61.0"));
    assert_eq!(untested_version(Provider::GeminiCli, &exe), None);
    write_version("0.70.1");
    let w = untested_version(Provider::GeminiCli, &exe).unwrap();
    assert!(
        w.contains("0.70.1") && w.contains("0.61.0") && w.contains("running it anyway"),
        "{w}"
    );
    // Another package's manifest, or none, tells nothing: no warning.
    assert_eq!(
        installed_version(adapter(Provider::QwenCode).unwrap(), &exe),
        None
    );
    assert_eq!(untested_version(Provider::Cli, &exe), None);
    assert_eq!(
        untested_version(Provider::GeminiCli, Path::new("/nonexistent/gemini")),
        None
    );
}

#[test]
fn gemini_names_its_own_session_and_a_restart_resumes_its_newest_transcript() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let gemini = adapter(Provider::GeminiCli).unwrap();
    let launch = |s: &Conversation| {
        plan(
            &agent(),
            &config(),
            &role(Provider::GeminiCli),
            home,
            Path::new("/bin/agent-team-bridge"),
            true,
            Some(s),
        )
        .unwrap()
    };
    // A new conversation: no `--session-id` (it costs Gemini CLI ~200 ms of start), and no
    // id of ours recorded.
    let Some(new) = session_for(gemini, home) else {
        panic!("Gemini CLI has sessions")
    };
    assert!(matches!(new, Conversation::New(_)));
    let l = launch(&new);
    assert!(
        !l.args
            .iter()
            .any(|a| a == "--session-id" || a == "--resume")
    );
    assert!(!l.files.iter().any(|(p, _)| p.ends_with(SESSION_FILE)));
    // Its transcripts name the session on their first line; the newest is resumed.
    let chats = home.join(".gemini/tmp/ws/chats");
    std::fs::create_dir_all(&chats).unwrap();
    let old = "0ld00000-1111-4222-8333-444444444444";
    let id = "2ec961d5-307a-442c-88fa-ebba1e39ae98";
    std::fs::write(
        chats.join("session-2026-11-25T03-40-0ld00000.jsonl"),
        format!("{{\"sessionId\":\"{old}\"}}\n"),
    )
    .unwrap();
    let newest = chats.join("session-2026-11-25T03-48-2ec961d5.jsonl");
    std::fs::write(
        &newest,
        format!("{{\"sessionId\":\"{id}\",\"kind\":\"main\"}}\n{{\"$set\":{{}}}}\n"),
    )
    .unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let resume = session_for(gemini, home).unwrap();
    assert_eq!(resume, Conversation::Resume(id.into()));
    let l = launch(&resume);
    assert!(l.args.windows(2).any(|w| w[0] == "--resume" && w[1] == id));
    assert_eq!(l.args.last().map(String::as_str), Some(RESUMED_INPUT));
}

#[test]
fn gemini_in_a_pane_does_not_take_ci_for_no_terminal() {
    let ci_vars = |headless: bool| {
        let l = plan(
            &agent(),
            &config(),
            &role(Provider::GeminiCli),
            Path::new("/home/cc"),
            Path::new("/bin/agent-team-bridge"),
            headless,
            None,
        )
        .unwrap();
        l.env
            .into_iter()
            .filter(|(k, _)| k == "CI" || k == "GITHUB_ACTIONS")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ci_vars(false),
        [
            ("CI".to_string(), String::new()),
            ("GITHUB_ACTIONS".to_string(), String::new())
        ]
    );
    assert!(ci_vars(true).is_empty());
}

/// Without a namespace an agent CLI starts only when the team file accepts the fallback
/// (`sandbox = "weak"`) or turned the sandbox off; the refusal names the setting.
#[test]
fn a_cli_needs_the_namespace_unless_the_team_file_says_weak() {
    use agent_team_config::SandboxMode;
    use agent_team_sandbox::Support;
    let namespace = Support {
        namespace: Ok("/usr/bin/bwrap".into()),
        landlock: Ok(6),
    };
    let landlock = Support {
        namespace: Err("AGENT_TEAM_BWRAP=none".into()),
        landlock: Ok(6),
    };
    let nothing = Support {
        namespace: Err("bubblewrap is not installed".into()),
        landlock: Err("no Landlock".into()),
    };
    for mode in [SandboxMode::On, SandboxMode::Weak, SandboxMode::Off] {
        assert_eq!(fallback_refusal(mode, &namespace), None, "{mode:?}");
    }
    for (support, says) in [(&landlock, "Landlock"), (&nothing, "no sandbox at all")] {
        let why = fallback_refusal(SandboxMode::On, support).unwrap();
        assert!(
            why.contains("sandbox = \"weak\"") && why.contains(says),
            "{why}"
        );
        assert!(
            why.contains(support.namespace.as_ref().unwrap_err()),
            "{why}"
        );
        assert_eq!(fallback_refusal(SandboxMode::Weak, support), None);
        assert_eq!(fallback_refusal(SandboxMode::Off, support), None);
    }
}

#[test]
fn a_version_number_is_found_in_what_each_cli_prints_for_version() {
    for (printed, version) in [
        ("2.1.332 (Claude Code)\n", Some("2.1.332")),
        ("codex-cli 0.171.0\n", Some("0.171.0")),
        ("0.61.0\n", Some("0.61.0")),
        (
            "GitHub Copilot CLI 1.0.102.\nCommit: abc\n",
            Some("1.0.102"),
        ),
        ("v1.18.33\n", Some("1.18.33")),
        (
            "gemini 0.62.0-nightly.20260101 (x)\n",
            Some("0.62.0-nightly.20260101"),
        ),
        ("node 22\n", None),
        ("", None),
    ] {
        assert_eq!(version_in(printed).as_deref(), version, "{printed:?}");
    }
}

#[test]
fn a_clis_reported_version_is_its_npm_packages_else_what_version_prints() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("codex");
    std::fs::write(&exe, "#!/bin/sh\necho \"codex-cli 0.170.2\"\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let codex = adapter(Provider::Codex).unwrap();
    assert_eq!(reported_version(codex, &exe).as_deref(), Some("0.170.2"));
    // An npm install's package.json is believed first (no program is run).
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "@openai/codex", "version": "0.171.0"}"#,
    )
    .unwrap();
    assert_eq!(reported_version(codex, &exe).as_deref(), Some("0.171.0"));
    assert_eq!(reported_version(codex, &dir.path().join("missing")), None);
}

#[test]
fn every_cli_with_an_npm_package_names_the_version_it_is_tested_with() {
    for a in adapters() {
        if a.npm_package().is_some() {
            let v = a.tested_version().unwrap();
            assert_eq!(
                version_in(v).as_deref(),
                Some(v),
                "{}",
                a.provider().as_str()
            );
        }
    }
}
