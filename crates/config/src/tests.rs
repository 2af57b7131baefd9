//! Team file parsing and resolution.

use super::*;
use std::path::Path;

fn parse(text: &str) -> Result<TeamConfig, ConfigError> {
    crate::teamfile::parse_team_file(Path::new("agent-team.toml"), text)
}

#[test]
fn spec_example_resolves() {
    let cfg = parse(
        r#"
name = "webapp"
goal = "Add input validation to every API endpoint"
backend = "auto"
layout = "main-vertical"
max_teammates = 10

[defaults]
provider = "openai"
model = "gpt-4.1-mini"
base_url = "http://127.0.0.1:11434/v1"
api_key_env = "OPENAI_API_KEY"
restart = "on-failure"

[roles.builder]
description = "Implements code changes"
system_prompt = "You are a careful Rust engineer."
tools = ["read_file", "write_file", "edit_file", "list_files", "grep", "bash"]
permissions = { bash = "ask", write_file = "allow", "bash(cargo test*)" = "allow" }
isolation = "shared"

[roles.leader]
model = "gpt-4.1"

[[teammates]]
name = "builder-1"
role = "builder"

[[tasks]]
key = "lint"
title = "Run clippy"
run = "cargo clippy"
[[tasks]]
title = "Run tests"
run = "cargo test"
after = ["lint"]
"#,
    )
    .unwrap();
    assert_eq!(cfg.name, "webapp");
    let b = cfg.role("builder").unwrap();
    assert_eq!(b.provider, Provider::Openai);
    assert_eq!(b.model, "gpt-4.1-mini");
    assert_eq!(
        policy::decide(&b.permissions, "bash", "cargo test -q"),
        PermAction::Allow
    );
    assert_eq!(
        policy::decide(&b.permissions, "bash", "rm -rf /"),
        PermAction::Ask
    );
    let l = cfg.role("leader").unwrap();
    assert_eq!(
        (l.model.as_str(), l.provider),
        ("gpt-4.1", Provider::Openai)
    );
    assert!(
        !l.system_prompt.is_empty(),
        "overriding one field keeps the built-in's others"
    );
    assert_eq!(cfg.tasks[1].after, vec!["lint"]);
    assert_eq!(cfg.tasks[1].key, "task-2");
}

#[test]
fn unknown_key_is_an_error_with_line_and_field() {
    let e = parse("name = \"x\"\n\n[roles.builder]\ncolour = \"red\"\n").unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert_eq!(e.field.as_deref(), Some("colour"), "{e}");
    assert!(e.to_string().starts_with("agent-team.toml:4:"), "{e}");
}

#[test]
fn semantic_errors_name_the_place() {
    let e = parse("[[teammates]]\nname = \"b1\"\nrole = \"nope\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.field.as_deref()),
        (Some(3), Some("teammates.role")),
        "{e}"
    );
    let e = parse("[[teammates]]\nname = \"Bad Name\"\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[[tasks]]\nkey = \"a\"\ntitle = \"A\"\nafter = [\"b\"]\n[[tasks]]\nkey = \"b\"\ntitle = \"B\"\nafter = [\"a\"]\n").unwrap_err();
    assert!(e.message.contains("cycle"), "{e}");
    let e = parse("[[tasks]]\ntitle = \"A\"\nafter = [\"zzz\"]\n").unwrap_err();
    assert!(e.message.contains("zzz"), "{e}");
    let e = parse("[roles.x]\ntools = [\"teleport\"]\n").unwrap_err();
    assert!(e.message.contains("teleport"), "{e}");
    let e = parse("backend = \"screen\"\n").unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn tasks_are_ordered_blockers_first() {
    let cfg = parse("[[tasks]]\nkey = \"b\"\ntitle = \"B\"\nafter = [\"a\"]\n[[tasks]]\nkey = \"a\"\ntitle = \"A\"\n").unwrap();
    assert_eq!(
        cfg.tasks.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[test]
fn role_files_claude_and_ours() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".claude/agents")).unwrap();
    std::fs::create_dir_all(dir.path().join(".agent-team/agents")).unwrap();
    std::fs::write(
        dir.path().join(".claude/agents/auditor.md"),
        "---\nname: auditor\ndescription: Audits code\ntools: Read, Grep, Glob\nmodel: inherit\n---\nYou audit.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".agent-team/agents/tester.md"),
        "---\ndescription: Tests\ntools: [bash, read_file]\n---\nYou test.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent-team.toml"),
        "[roles.tester]\nmodel = \"m\"\n",
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    let a = cfg.role("auditor").unwrap();
    assert_eq!(a.tools, vec!["read_file", "grep", "glob"]);
    assert_eq!(a.system_prompt, "You audit.");
    assert_eq!(a.source, ".claude/agents/auditor.md");
    let t = cfg.role("tester").unwrap();
    assert_eq!(
        (t.model.as_str(), t.system_prompt.as_str()),
        ("m", "You test.")
    );

    // [roles.tester] over the role file: both say where it comes from.
    assert_eq!(t.source, ".agent-team/agents/tester.md + team file");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    // A tool with no counterpart is a warning naming the file and the tool, not a failure.
    std::fs::write(
        dir.path().join(".agent-team/agents/odd.md"),
        "---\ntools: [warp, read_file]\n---\nx\n",
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    assert_eq!(cfg.role("odd").unwrap().tools, vec!["read_file"]);
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("odd.md") && cfg.warnings[0].contains("\"warp\""),
        "{:?}",
        cfg.warnings
    );
    // Bad front matter is still an error in its file.
    std::fs::write(
        dir.path().join(".agent-team/agents/bad.md"),
        "---\ntools: 7\n---\nx\n",
    )
    .unwrap();
    let e = load(&dir.path().join("agent-team.toml")).unwrap_err();
    assert!(e.file.ends_with("bad.md"), "{e}");
    assert_eq!(e.field.as_deref(), Some("tools"));
}

/// The 15 built-in roles, each with a description, a prompt of its own and the tool set its
/// job needs; the read-only ones can neither write files nor run the shell.
#[test]
fn the_builtin_roles_are_nyzhis_set_and_the_leader() {
    let roles = builtin_roles();
    let names: Vec<&str> = roles.keys().map(String::as_str).collect();
    let mut want = vec![
        "default",
        "explorer",
        "worker",
        "reviewer",
        "planner",
        "architect",
        "debugger",
        "security-reviewer",
        "quality-reviewer",
        "test-engineer",
        "build-fixer",
        "deep-executor",
        "document-specialist",
        "code-simplifier",
        "leader",
    ];
    want.sort();
    assert_eq!(names, want);
    let mut prompts = std::collections::HashSet::new();
    for (name, r) in &roles {
        assert_eq!(&r.name, name);
        assert_eq!(r.source, BUILTIN_SOURCE, "{name}");
        assert!(!r.description.is_empty(), "{name}");
        assert!(r.system_prompt.len() > 200, "{name}: {}", r.system_prompt);
        assert!(
            prompts.insert(r.system_prompt.clone()),
            "{name}'s prompt is not its own"
        );
        for t in &r.tools {
            assert!(is_known_tool(t), "{name}: {t}");
        }
        let read_only = READ_ONLY_ROLES.contains(&name.as_str());
        let writes = ["write_file", "edit_file", "bash"]
            .iter()
            .any(|w| r.tools.iter().any(|t| t == w));
        assert_eq!(writes, !read_only, "{name}: {:?}", r.tools);
        assert!(r.tools.iter().any(|t| t == "read_file"), "{name} reads");
    }
    assert_eq!(READ_ONLY_ROLES.len(), 7);
    let tools = |n: &str| roles[n].tools.clone();
    assert_eq!(
        tools("explorer"),
        ["read_file", "list_files", "grep", "glob"]
    );
    assert_eq!(tools("reviewer"), tools("explorer"));
    assert_eq!(tools("security-reviewer"), tools("explorer"));
    assert_eq!(tools("quality-reviewer"), tools("explorer"));
    assert_eq!(
        tools("planner"),
        ["read_file", "list_files", "grep", "glob", "memory_set"]
    );
    assert_eq!(tools("architect"), tools("planner"));
    for n in [
        "debugger",
        "test-engineer",
        "build-fixer",
        "code-simplifier",
    ] {
        assert_eq!(
            tools(n),
            [
                "read_file",
                "write_file",
                "edit_file",
                "list_files",
                "grep",
                "glob",
                "bash"
            ],
            "{n}"
        );
    }
    assert_eq!(tools("default"), WORKSPACE_TOOLS);
    assert!(tools("worker").contains(&"memory_set".to_string()));
    assert!(tools("worker").contains(&"web_fetch".to_string()));
    let doc = tools("document-specialist");
    assert!(doc.contains(&"write_file".to_string()) && doc.contains(&"web_fetch".to_string()));
    assert!(
        !doc.contains(&"bash".to_string()),
        "documents, runs nothing"
    );
    assert!(tools("deep-executor").contains(&"memory_set".to_string()));
    assert!(doc.contains(&"web_search".to_string()));
    assert!(tools("worker").contains(&"web_search".to_string()));
    // web_fetch and web_search are asked in every role, built-in or not, unless a rule allows
    // them.
    for (name, r) in &roles {
        for (tool, input) in [("web_fetch", "http://x/"), ("web_search", "rust")] {
            assert_eq!(
                policy::decide(&r.permissions, tool, input),
                PermAction::Ask,
                "{name} {tool}"
            );
        }
    }
    let c =
        parse("name = \"a\"\n[roles.worker]\npermissions = { web_fetch = \"allow\" }\n").unwrap();
    assert_eq!(
        policy::decide(&c.roles["worker"].permissions, "web_fetch", "http://x/"),
        PermAction::Allow
    );
}

/// Nyzhi's role file: plain Markdown without front matter. The file name is the role's name,
/// the first heading its description, the whole text its prompt; it comes from `.nyzhi/agents`.
#[test]
fn a_plain_markdown_role_file_is_a_role() {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join(".nyzhi/agents");
    std::fs::create_dir_all(&agents).unwrap();
    let text = "# Frontend Specialist\n\nYou are a frontend development expert. Focus on:\n- Component architecture\n- Accessibility (WCAG 2.1 AA)\n";
    std::fs::write(agents.join("frontend-specialist.md"), text).unwrap();
    std::fs::write(dir.path().join("agent-team.toml"), "name = \"t\"\n").unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    let r = cfg.role("frontend-specialist").unwrap();
    assert_eq!(r.description, "Frontend Specialist");
    assert_eq!(r.system_prompt, text.trim());
    assert_eq!(r.source, ".nyzhi/agents/frontend-specialist.md");
    assert_eq!(
        r.tools, WORKSPACE_TOOLS,
        "no tools named: every workspace tool"
    );
    assert_eq!(cfg.roles.len(), 16);
    // Without a team file, `roles` sees the same.
    let ws = workspace_team("t", dir.path()).unwrap();
    assert_eq!(ws.roles["frontend-specialist"], *r);
    assert_eq!(ws.roles["explorer"].source, BUILTIN_SOURCE);
    // `.agent-team/agents` wins over `.nyzhi/agents` for the same name.
    std::fs::create_dir_all(dir.path().join(".agent-team/agents")).unwrap();
    std::fs::write(
        dir.path().join(".agent-team/agents/frontend-specialist.md"),
        "# Ours\nmine",
    )
    .unwrap();
    let ws = workspace_team("t", dir.path()).unwrap();
    assert_eq!(ws.roles["frontend-specialist"].description, "Ours");
    // A file name that is not a role name is refused, naming the file.
    std::fs::write(agents.join("bad name.md"), "# X\n").unwrap();
    let e = workspace_team("t", dir.path()).unwrap_err();
    assert!(e.file.ends_with("bad name.md"), "{e}");
}

/// Claude Code's tool names map to ours; WebFetch and TodoWrite no longer stop the team, and
/// a name with no counterpart is a warning naming the file and the tool.
#[test]
fn claude_tool_names_map_and_unknown_ones_warn() {
    for (claude, ours) in [
        ("Read", "read_file"),
        ("Write", "write_file"),
        ("Edit", "edit_file"),
        ("MultiEdit", "edit_file"),
        ("Glob", "glob"),
        ("Grep", "grep"),
        ("LS", "list_files"),
        ("Bash", "bash"),
        ("WebFetch", "web_fetch"),
        ("WebSearch", "web_search"),
        ("TodoWrite", "todo_write"),
    ] {
        assert_eq!(claude_tool(claude), Some(ours));
        assert!(is_known_tool(ours), "{ours}");
    }
    assert_eq!(claude_tool("NotebookEdit"), None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".claude/agents")).unwrap();
    std::fs::write(
        dir.path().join(".claude/agents/researcher.md"),
        "---\nname: researcher\ndescription: Looks things up\ntools: Read, Grep, WebFetch, TodoWrite, WebSearch, NotebookEdit, MultiEdit, Edit\n---\nYou research.\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("agent-team.toml"), "name = \"t\"\n").unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    let r = cfg.role("researcher").unwrap();
    assert_eq!(
        r.tools,
        [
            "read_file",
            "grep",
            "web_fetch",
            "todo_write",
            "web_search",
            "edit_file"
        ]
    );
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("researcher.md"),
        "{:?}",
        cfg.warnings
    );
    assert!(
        cfg.warnings[0].contains("\"NotebookEdit\""),
        "{:?}",
        cfg.warnings
    );
}

/// A Claude Code subagent file that Claude Code accepts starts here too, and never gains a
/// tool: its own hooks that cannot refuse a call, a model alias, a `permissionMode` that only
/// asks less and keys we have no use for are warnings, and `disallowedTools` takes tools away
/// (from the default set when there is no `tools:`).
#[test]
fn claude_subagent_files_with_their_own_keys_load_without_widening_the_role() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".claude/agents")).unwrap();
    std::fs::write(
        dir.path().join(".claude/agents/cr.md"),
        "---\nname: cr\ndescription: Reviews code\ndisallowedTools: Write, Edit, Bash, NotebookEdit\n\
         model: opus\ncolor: blue\npermissionMode: bypassPermissions\nskills: [x]\nhooks:\n  PostToolUse:\n    - matcher: Bash\n      \
         hooks:\n        - type: command\n          command: ./check.sh\n---\nYou review.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".claude/agents/pick.md"),
        "---\nname: pick\ntools: Read, Write, Bash\ndisallowedTools: [Bash]\nmodel: claude-sonnet-4-5\n---\nYou pick.\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("agent-team.toml"), "name = \"t\"\n").unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    let cr = cfg.role("cr").unwrap();
    assert!(!cr.tools.is_empty(), "it keeps the default tools");
    for gone in ["write_file", "edit_file", "bash"] {
        assert!(
            !cr.tools.iter().any(|t| t == gone),
            "{gone} in {:?}",
            cr.tools
        );
    }
    assert!(cr.tools.iter().any(|t| t == "read_file"), "{:?}", cr.tools);
    assert_eq!(
        cr.model,
        cfg.role("worker").unwrap().model,
        "the alias is dropped"
    );
    let pick = cfg.role("pick").unwrap();
    assert_eq!(pick.tools, ["read_file", "write_file"]);
    assert_eq!(pick.model, "claude-sonnet-4-5");
    let w = cfg.warnings.join("\n");
    for needle in [
        "\"NotebookEdit\"",
        "hooks",
        "\"opus\"",
        "permissionMode \"bypassPermissions\"",
        "\"skills\"",
    ] {
        assert!(w.contains(needle), "{needle} missing from:\n{w}");
    }
    assert!(!w.contains("color"), "{w}");
    assert!(cfg.warnings.iter().all(|l| l.contains("cr.md")), "{w}");
    assert_eq!(cr.source, ".claude/agents/cr.md");
    // The team file adding to a role file's role keeps the file as its source.
    std::fs::write(
        dir.path().join("agent-team.toml"),
        "name = \"t\"\n[roles.cr]\nmax_steps = 5\n[roles.mine]\ndescription = \"Mine\"\n",
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    assert_eq!(
        cfg.role("cr").unwrap().source,
        ".claude/agents/cr.md + team file"
    );
    assert_eq!(cfg.role("mine").unwrap().source, "team file");
    // Our own hooks shape in an agent-team role file still works, and a broken one is an error.
    std::fs::create_dir_all(dir.path().join(".agent-team/agents")).unwrap();
    std::fs::write(
        dir.path().join(".agent-team/agents/ours.md"),
        "---\nname: ours\nhooks:\n  teammate_idle: ./idle.sh\n---\nOurs.\n",
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    assert!(
        cfg.role_hooks.contains_key("ours"),
        "{:?}",
        cfg.role_hooks.keys()
    );
    std::fs::write(
        dir.path().join(".agent-team/agents/ours.md"),
        "---\nname: ours\nhooks:\n  PreToolUse: x\n---\nOurs.\n",
    )
    .unwrap();
    let e = load(&dir.path().join("agent-team.toml")).unwrap_err();
    assert!(e.to_string().contains("hooks"), "{e}");
}

#[test]
fn demo_team_is_valid() {
    let cfg = demo_team(Path::new("/tmp")).unwrap();
    assert_eq!(cfg.teammates.len(), 3);
    assert_eq!(cfg.tasks.len(), 8);
    let w = cfg.role("worker").unwrap();
    assert_eq!(
        policy::decide(
            &w.permissions,
            "bash",
            cfg.tasks
                .iter()
                .find(|t| t.key == "publish")
                .unwrap()
                .run
                .as_deref()
                .unwrap()
        ),
        PermAction::Ask
    );
    assert_eq!(
        policy::decide(&w.permissions, "bash", "wc -l x"),
        PermAction::Allow
    );
}

/// Issue 12, finding 3: a teammate could be named `operator` (and then pass for the operator in
/// a message's `from`), `daemon` or `all`.
#[test]
fn a_team_file_refuses_reserved_agent_names() {
    for name in ["operator", "daemon", "all", "*", "_hidden"] {
        let e = parse(&format!(
            "name = \"t\"\n[[teammates]]\nname = \"{name}\"\nrole = \"worker\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("teammates.name"), "{name}: {e}");
        assert!(e.line.is_some(), "{name}: {e}");
        let shown = e.to_string();
        assert!(
            shown.contains("reserved") && shown.contains(&format!("{name:?}")),
            "{name}: {shown}"
        );
    }
    parse("name = \"t\"\n[[teammates]]\nname = \"operator-2\"\nrole = \"worker\"\n").unwrap();
}

#[test]
fn strategies_default_to_leader_and_are_checked_against_the_team() {
    let cfg = parse("name = \"a\"\n").unwrap();
    assert_eq!(cfg.strategy, TeamStrategy::Leader);
    assert_eq!(cfg.max_rounds, DEFAULT_MAX_ROUNDS);
    assert_eq!(cfg.coordinator_prompt, DEFAULT_COORDINATOR_PROMPT);
    assert_eq!(cfg.collaborate_order, CollaborateOrder::Parallel);
    let model_team = "name = \"a\"\n[defaults]\nprovider = \"openai\"\nmodel = \"m\"\n\
                      [[teammates]]\nname = \"b1\"\n";
    let cfg = parse(&format!(
        "strategy = \"coordinator\"\nmax_rounds = 3\ncollaborate_order = \"sequential\"\n\
         coordinator_prompt = \"{{{{task}}}} for {{{{worker_descriptions}}}}\"\n{model_team}"
    ))
    .unwrap();
    assert_eq!(
        (cfg.strategy, cfg.max_rounds, cfg.collaborate_order),
        (TeamStrategy::Coordinator, 3, CollaborateOrder::Sequential)
    );
    assert_eq!(
        fill_coordinator_prompt(&cfg, "- b1: worker", "sum", "none"),
        "sum for - b1: worker"
    );
    // The check of every placeholder knows the coordinator's own.
    let mut checked = cfg.clone();
    apply_variables(&mut checked, &Default::default()).unwrap();
    checked.coordinator_prompt = "{{task}} {{nope}}".into();
    let e = apply_variables(&mut checked, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("coordinator_prompt"), "{e}");
    assert!(e.to_string().contains("prior_outputs"), "{e}");
    // Errors name the field and the line.
    let e = parse("name = \"a\"\nstrategy = \"vote\"\n").unwrap_err();
    assert_eq!(
        (e.field.as_deref(), e.line),
        (Some("strategy"), Some(2)),
        "{e}"
    );
    let e = parse("name = \"a\"\nmax_rounds = 0\n").unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = parse("name = \"a\"\nstrategy = \"collaborate\"\n").unwrap_err();
    assert!(e.to_string().contains("needs workers"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse(&format!(
        "strategy = \"collaborate\"\n{model_team}[[tasks]]\ntitle = \"x\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("[[tasks]]"), "{e}");
    let e = parse("strategy = \"coordinator\"\nname = \"a\"\n[[teammates]]\nname = \"b1\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("drives a model"), "{e}");
    // Text put into a task is escaped so filling it gives it back.
    let t = "keep {{this}} and {{{{ that";
    assert_eq!(
        fill_task_text(&cfg, "description", &escape_placeholders(t)).unwrap(),
        t
    );
}

#[test]
fn hooks_come_from_the_team_file_roles_and_role_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".agent-team/agents")).unwrap();
    std::fs::write(
        dir.path().join(".agent-team/agents/tester.md"),
        "---\ndescription: Tests\nhooks:\n  teammate_idle: ./more.sh\n---\nYou test.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent-team.toml"),
        r#"name = "h"
[hooks]
task_completed = "./check.sh"
run_finished = { command = "./done.sh", timeout_secs = 5 }

[roles.builder.hooks]
task_completed = { command = "cargo test" }
"#,
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    let tc = cfg.hooks_for(HookEvent::TaskCompleted, Some("builder"));
    assert_eq!(
        tc.iter()
            .map(|h| (h.command.as_str(), h.timeout_secs))
            .collect::<Vec<_>>(),
        [("./check.sh", 30), ("cargo test", 30)]
    );
    assert_eq!(
        cfg.hooks_for(HookEvent::TaskCompleted, Some("tester"))
            .len(),
        1
    );
    assert_eq!(
        cfg.hooks_for(HookEvent::RunFinished, None)[0].timeout_secs,
        5
    );
    let idle = cfg.hooks_for(HookEvent::TeammateIdle, Some("tester"));
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].command, "./more.sh");
    assert!(
        cfg.hooks_for(HookEvent::TaskCreated, Some("builder"))
            .is_empty()
    );
    // The stored configuration keeps them.
    let back: TeamConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!((back.hooks, back.role_hooks), (cfg.hooks, cfg.role_hooks));
}

#[test]
fn bad_hooks_are_errors_naming_the_place() {
    let e = parse("name = \"x\"\n[hooks]\ntask_done = \"x\"\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().starts_with("agent-team.toml:3:"), "{e}");
    assert!(e.message.contains("task_done"), "{e}");
    let e = parse("name = \"x\"\n\n[roles.b.hooks]\nidle = \"x\"\n").unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    let e = parse("name = \"x\"\n[hooks]\nrun_finished = { command = \"x\", timeout_secs = 0 }\n")
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("hooks.run_finished"), "{e}");
    let e = parse("name = \"x\"\n[roles.b.hooks]\nagent_failed = \" \"\n").unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("roles.b.hooks.agent_failed"),
        "{e}"
    );
    let e = parse("name = \"x\"\n[hooks]\nrun_finished = { cmd = \"x\" }\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    let e = parse("name = \"x\"\n[defaults.hooks]\nrun_finished = \"x\"\n").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("defaults.hooks"), "{e}");
}

/// Issue 15 item 7: `plan_required` on a role (team file or a role file's front matter) and on
/// a `[[teammates]]` member, the member's word over its role's; never the leader, never an
/// exec agent.
#[test]
fn plan_required_comes_from_the_member_or_its_role() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".claude/agents")).unwrap();
    std::fs::write(
        dir.path().join(".claude/agents/careful.md"),
        "---\nname: careful\nplan_required: true\ntools: Read, Write\n---\nYou plan first.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent-team.toml"),
        r#"
[defaults]
provider = "openai"
model = "m"

[roles.planned]
plan_required = true

[[teammates]]
name = "a"
role = "planned"

[[teammates]]
name = "b"
role = "planned"
plan_required = false

[[teammates]]
name = "c"
role = "worker"
plan_required = true

[[teammates]]
name = "d"
role = "careful"
"#,
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    assert!(cfg.role("planned").unwrap().plan_required);
    assert!(
        cfg.role("careful").unwrap().plan_required,
        "from the front matter"
    );
    assert!(!cfg.role("worker").unwrap().plan_required);
    for (name, role, want) in [
        ("a", "planned", true),
        ("b", "planned", false),
        ("c", "worker", true),
        ("d", "careful", true),
        // Spawned later from a role: the role says.
        ("planned-1", "planned", true),
        ("worker-1", "worker", false),
        ("leader", "leader", false),
    ] {
        assert_eq!(cfg.plan_required(name, role), want, "{name} ({role})");
    }

    // The leader plans nothing; an exec teammate writes no plan.
    let e = parse("[roles.leader]\nplan_required = true\n").unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("roles.leader.plan_required"),
        "{e}"
    );
    let e = parse("[[teammates]]\nname = \"x\"\nrole = \"worker\"\nplan_required = true\n")
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("teammates.plan_required"), "{e}");
    assert!(e.message.contains("exec"), "{e}");
}

/// `plan_required` is never silently ignored: on a role whose provider cannot plan (exec, or
/// an agent CLI whose own tools cannot be withheld) it is an error naming the role, and on a
/// member of such a role or with such a provider an error naming the member.
#[test]
fn plan_required_where_no_plan_can_be_held_is_an_error() {
    // The audit's case: a role-level plan_required with the default exec provider.
    let e = parse(
        "[roles.careful]\nplan_required = true\n[[teammates]]\nname = \"c1\"\nrole = \"careful\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("roles.careful.plan_required"),
        "{e}"
    );
    assert!(
        e.message.contains("exec") && e.message.contains("openai"),
        "{e}"
    );
    // Even when no member uses it yet (the leader could spawn one).
    let e = parse("[roles.careful]\nplan_required = true\n").unwrap_err();
    assert_eq!(
        e.field.as_deref(),
        Some("roles.careful.plan_required"),
        "{e}"
    );
    for provider in ["claude-code", "codex", "qwen-code", "copilot"] {
        let e = parse(&format!(
            "[roles.cc]\nprovider = \"{provider}\"\nplan_required = true\n"
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("roles.cc.plan_required"), "{e}");
        assert!(e.message.contains("agent CLI"), "{provider}: {e}");
        let e = parse(&format!(
            "[roles.cc]\nprovider = \"{provider}\"\n[[teammates]]\nname = \"x\"\nrole = \"cc\"\nplan_required = true\n"
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("teammates.plan_required"), "{e}");
        assert!(e.message.contains("\"x\""), "{provider}: {e}");
    }
    // A member overriding a planning role's provider to a CLI is refused too.
    let e = parse(
        "[roles.p]\nprovider = \"openai\"\nmodel = \"m\"\nplan_required = true\n\
         [[teammates]]\nname = \"y\"\nrole = \"p\"\nprovider = \"codex\"\n",
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("teammates.plan_required"), "{e}");
    // What can plan still loads.
    parse(
        "[roles.p]\nprovider = \"anthropic\"\nmodel = \"m\"\nplan_required = true\n\
         [[teammates]]\nname = \"y\"\nrole = \"p\"\n",
    )
    .unwrap();
}

/// A workspace with these role files (path under the workspace, text) and team file, loaded.
fn load_with(
    files: &[(&str, &str)],
    team: &str,
) -> (tempfile::TempDir, Result<TeamConfig, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::write(dir.path().join("agent-team.toml"), team).unwrap();
    let cfg = load(&dir.path().join("agent-team.toml"));
    (dir, cfg)
}

fn has(r: &Role, tool: &str) -> bool {
    r.tools.iter().any(|t| t == tool)
}

/// Issue 25, item 5: Nyzhi's `read_only: true` was dropped with a warning and the "read-only"
/// role got `write_file` and `bash`. It keeps only the tools that change nothing, in every
/// spelling and every role directory, and `[defaults]`' tools do not undo it.
#[test]
fn a_nyzhi_read_only_role_file_gets_neither_write_file_nor_bash() {
    let (_d, cfg) = load_with(
        &[
            (
                ".nyzhi/agents/scout.md",
                "---\nname: scout\ndescription: Reads only\nread_only: true\n---\nYou read.\n",
            ),
            (
                ".agent-team/agents/camel.md",
                "---\nreadOnly: \"true\"\n---\nYou read.\n",
            ),
            (
                ".claude/agents/planish.md",
                "---\nname: planish\npermissionMode: plan\n---\nYou plan.\n",
            ),
        ],
        "name = \"t\"\n",
    );
    let cfg = cfg.unwrap();
    for name in ["scout", "camel", "planish"] {
        let r = cfg.role(name).unwrap();
        for gone in ["write_file", "edit_file", "bash", "memory_set"] {
            assert!(!has(r, gone), "{name} has {gone}: {:?}", r.tools);
        }
        assert!(has(r, "read_file"), "{name}: {:?}", r.tools);
        assert!(
            r.tools
                .iter()
                .all(|t| READ_ONLY_TOOLS.contains(&t.as_str())),
            "{name}: {:?}",
            r.tools
        );
    }
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    // An allow list with writing tools in a read-only role: they are left out, with a warning.
    // `[defaults]` tools and `[roles.NAME]` tools go under the restriction too.
    let (_d, cfg) = load_with(
        &[(
            ".nyzhi/agents/scout.md",
            "---\nread_only: true\nallowed_tools: [read, write, bash, grep]\n---\nYou read.\n",
        )],
        "name = \"t\"\n[defaults]\ntools = [\"read_file\", \"write_file\", \"bash\"]\n\
         [roles.other]\nmax_steps = 3\n",
    );
    let cfg = cfg.unwrap();
    assert_eq!(cfg.role("scout").unwrap().tools, ["read_file", "grep"]);
    let w = cfg.warnings.join("\n");
    assert!(
        w.contains("scout.md") && w.contains("write_file") && w.contains("bash"),
        "{w}"
    );
    let (_d, cfg) = load_with(
        &[(
            ".nyzhi/agents/scout.md",
            "---\nread_only: true\n---\nYou read.\n",
        )],
        "name = \"t\"\n[defaults]\ntools = [\"read_file\", \"write_file\", \"bash\"]\n",
    );
    assert_eq!(cfg.unwrap().role("scout").unwrap().tools, ["read_file"]);
    let (_d, cfg) = load_with(
        &[(
            ".nyzhi/agents/scout.md",
            "---\nread_only: true\n---\nYou read.\n",
        )],
        "name = \"t\"\n[roles.scout]\ntools = [\"read_file\", \"bash\"]\n",
    );
    assert_eq!(cfg.unwrap().role("scout").unwrap().tools, ["read_file"]);
}

/// Nyzhi's `allowed_tools` lists the role's tools and `disallowed_tools` takes tools away, with
/// Nyzhi's tool names; its git tools have no counterpart and never bring `bash` in.
#[test]
fn nyzhi_allowed_and_disallowed_tools_are_honoured() {
    let (_d, cfg) = load_with(
        &[
            (
                ".nyzhi/agents/narrow.md",
                "---\nallowed_tools: [read, grep, glob, edit, list_dir, git_status, git_diff]\n---\nx\n",
            ),
            (
                ".nyzhi/agents/nowrite.md",
                "---\ndisallowed_tools: write, edit, bash\n---\nx\n",
            ),
            (
                ".agent-team/agents/camel.md",
                "---\nallowedTools: Read, Grep\ndisallowedTools: [grep]\n---\nx\n",
            ),
        ],
        "name = \"t\"\n",
    );
    let cfg = cfg.unwrap();
    assert_eq!(
        cfg.role("narrow").unwrap().tools,
        ["read_file", "grep", "glob", "edit_file", "list_files"]
    );
    let nowrite = cfg.role("nowrite").unwrap();
    for gone in ["write_file", "edit_file", "bash"] {
        assert!(!has(nowrite, gone), "{gone}: {:?}", nowrite.tools);
    }
    assert!(has(nowrite, "read_file"), "{:?}", nowrite.tools);
    assert_eq!(cfg.role("camel").unwrap().tools, ["read_file"]);
    let w = cfg.warnings.join("\n");
    for git in ["\"git_status\"", "\"git_diff\""] {
        assert!(w.contains(git), "{git} missing from:\n{w}");
    }
    assert_eq!(cfg.warnings.len(), 2, "{w}");

    for nyzhi in ["read", "write", "edit", "grep", "glob", "bash"] {
        let (ours, unknown) = crate::teamfile::map_tools(&[nyzhi.to_string()]);
        assert!(unknown.is_empty() && ours.len() == 1, "{nyzhi}");
        assert!(is_known_tool(&ours[0]), "{nyzhi}");
    }
    assert_eq!(nyzhi_tool("read"), Some("read_file"));
    assert_eq!(nyzhi_tool("write"), Some("write_file"));
    assert_eq!(nyzhi_tool("edit"), Some("edit_file"));
    for git in NYZHI_GIT_TOOLS {
        assert_eq!(nyzhi_tool(git), None, "{git}");
    }

    // Giving the list twice, or taking part of a tool away, is an error in that file.
    for (text, key) in [
        (
            "---\ntools: [read]\nallowed_tools: [grep]\n---\nx\n",
            "allowed_tools",
        ),
        (
            "---\ndisallowed_tools: [\"Bash(rm *)\"]\n---\nx\n",
            "disallowed_tools",
        ),
        ("---\nallowed_tools: 7\n---\nx\n", "allowed_tools"),
    ] {
        let (_d, cfg) = load_with(&[(".nyzhi/agents/bad.md", text)], "name = \"t\"\n");
        let e = cfg.unwrap_err();
        assert!(e.file.ends_with("bad.md"), "{e}");
        assert_eq!(e.field.as_deref(), Some(key), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

/// Nyzhi's `max_steps` (Claude Code's `maxTurns`) caps the role's model turns.
#[test]
fn max_steps_from_a_role_file_is_honoured() {
    let (_d, cfg) = load_with(
        &[
            (".nyzhi/agents/short.md", "---\nmax_steps: 7\n---\nx\n"),
            (
                ".claude/agents/turns.md",
                "---\nname: turns\nmaxTurns: 9\n---\nx\n",
            ),
            (".nyzhi/agents/over.md", "---\nmax_steps: 7\n---\nx\n"),
        ],
        "name = \"t\"\n[defaults]\nmax_steps = 40\n[roles.over]\nmax_steps = 12\n",
    );
    let cfg = cfg.unwrap();
    assert_eq!(cfg.role("short").unwrap().max_steps, 7);
    assert_eq!(cfg.role("turns").unwrap().max_steps, 9);
    assert_eq!(
        cfg.role("over").unwrap().max_steps,
        12,
        "the team file says last"
    );
    assert_eq!(cfg.role("worker").unwrap().max_steps, 40);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    for (text, key) in [
        ("---\nmax_steps: 0\n---\nx\n", "max_steps"),
        ("---\nmax_steps: many\n---\nx\n", "max_steps"),
        ("---\nmax_steps: 3\nmaxTurns: 4\n---\nx\n", "maxTurns"),
    ] {
        let (_d, cfg) = load_with(&[(".nyzhi/agents/bad.md", text)], "name = \"t\"\n");
        let e = cfg.unwrap_err();
        assert!(e.file.ends_with("bad.md"), "{e}");
        assert_eq!(e.field.as_deref(), Some(key), "{e}");
    }
}

/// A front matter key that would restrict the role but that agent-team cannot honour stops
/// the load, naming the file, the key and why; keys that cannot restrict stay warnings, and
/// `isolation` is honoured.
#[test]
fn a_restricting_key_a_role_file_cannot_honour_is_an_error() {
    for (path, text, key, why) in [
        (
            ".claude/agents/ask.md",
            "---\nname: ask\npermissionMode: dontAsk\n---\nx\n",
            "permissionMode",
            "refuse or ask",
        ),
        (
            ".claude/agents/gate.md",
            "---\nname: gate\nhooks:\n  PreToolUse:\n    - matcher: Bash\n      hooks:\n        \
             - type: command\n          command: ./check.sh\n---\nx\n",
            "hooks",
            "PreToolUse",
        ),
        (
            ".nyzhi/agents/maybe.md",
            "---\nread_only: maybe\n---\nx\n",
            "read_only",
            "true or false",
        ),
        (
            ".nyzhi/agents/iso.md",
            "---\nisolation: sandboxed\n---\nx\n",
            "isolation",
            "shared or worktree",
        ),
    ] {
        let (_d, cfg) = load_with(&[(path, text)], "name = \"t\"\n");
        let e = cfg.unwrap_err();
        let shown = e.to_string();
        assert!(e.file.ends_with(path), "{shown}");
        assert_eq!(e.field.as_deref(), Some(key), "{shown}");
        assert!(shown.contains(key) && shown.contains(why), "{shown}");
        assert!(e.line.is_some(), "{shown}");
    }
    let (_d, cfg) = load_with(
        &[(
            ".claude/agents/apart.md",
            "---\nname: apart\nisolation: worktree\npermissionMode: default\nmcpServers: [gh]\n\
             color: red\n---\nx\n",
        )],
        "name = \"t\"\n",
    );
    let cfg = cfg.unwrap();
    assert_eq!(cfg.role("apart").unwrap().isolation, Isolation::Worktree);
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("\"mcpServers\""),
        "{:?}",
        cfg.warnings
    );
}

/// `allowed_tools` in `[roles.NAME]` (and `[defaults]`) is another name for `tools`; both is
/// an error naming the role.
#[test]
fn allowed_tools_is_an_alias_of_tools_in_the_team_file() {
    let cfg = parse(
        "name = \"t\"\n[roles.scout]\nallowed_tools = [\"read_file\", \"grep\"]\n\
         [defaults]\nallowed_tools = [\"read_file\"]\n",
    )
    .unwrap();
    assert_eq!(cfg.role("scout").unwrap().tools, ["read_file", "grep"]);
    assert_eq!(cfg.role("default").unwrap().tools, ["read_file"]);
    let e =
        parse("name = \"t\"\n[roles.scout]\ntools = [\"read_file\"]\nallowed_tools = [\"grep\"]\n")
            .unwrap_err();
    let shown = e.to_string();
    assert_eq!(
        e.field.as_deref(),
        Some("roles.scout.allowed_tools"),
        "{shown}"
    );
    assert!(
        shown.contains("\"scout\"") && shown.contains("tools"),
        "{shown}"
    );
    let e = parse("name = \"t\"\n[roles.scout]\nallowed_tools = [\"warp\"]\n").unwrap_err();
    assert!(e.to_string().contains("warp"), "{e}");
}

#[test]
fn finish_comes_from_the_role_else_the_team_and_defaults_to_keep() {
    use agent_team_protocol::FinishPolicy;
    let cfg = parse("name = \"t\"\n[roles.a]\nisolation = \"worktree\"\n").unwrap();
    assert_eq!(cfg.finish, FinishPolicy::Keep);
    assert_eq!(cfg.role("a").unwrap().finish, None);
    let cfg = parse(
        "name = \"t\"\nfinish = \"merge\"\n[roles.a]\nisolation = \"worktree\"\nfinish = \"pr\"\n\
         [roles.b]\nisolation = \"worktree\"\n",
    )
    .unwrap();
    assert_eq!(cfg.finish, FinishPolicy::Merge);
    assert_eq!(cfg.role("a").unwrap().finish, Some(FinishPolicy::Pr));
    assert_eq!(cfg.role("b").unwrap().finish, None);
    let e = parse("name = \"t\"\nfinish = \"squash\"\n").unwrap_err();
    assert!(e.to_string().contains("squash"), "{e}");
}

#[test]
fn prompt_caching_is_on_unless_a_role_or_the_defaults_turn_it_off() {
    let cfg = parse("name = \"t\"\n[roles.a]\n[roles.b]\ncache = false\n").unwrap();
    assert!(cfg.role("a").unwrap().cache);
    assert!(!cfg.role("b").unwrap().cache);
    assert!(
        cfg.role("leader").unwrap().cache,
        "the built-in roles cache"
    );
    let cfg =
        parse("name = \"t\"\n[defaults]\ncache = false\n[roles.a]\n[roles.b]\ncache = true\n")
            .unwrap();
    assert!(!cfg.role("a").unwrap().cache);
    assert!(cfg.role("b").unwrap().cache);
    let e = parse("name = \"t\"\n[roles.a]\ncache = \"yes\"\n").unwrap_err();
    assert!(e.to_string().contains("agent-team.toml:3:"), "{e}");
}

/// Issue 31 item 6: `[search]` resolves each provider's default address and key variable;
/// without it there is no search service (the tool then says how to configure one).
#[test]
fn search_sections_resolve_with_each_providers_defaults() {
    assert_eq!(parse("name = \"t\"\n").unwrap().search, None);
    let s = |text: &str| parse(&format!("name = \"t\"\n{text}")).unwrap().search;
    assert_eq!(
        s("[search]\nprovider = \"brave\"\n"),
        Some(SearchSettings {
            provider: SearchProvider::Brave,
            url: "https://api.search.brave.com/res/v1/web/search".into(),
            api_key_env: Some("BRAVE_API_KEY".into()),
        })
    );
    assert_eq!(
        s("[search]\nprovider = \"tavily\"\n"),
        Some(SearchSettings {
            provider: SearchProvider::Tavily,
            url: "https://api.tavily.com/search".into(),
            api_key_env: Some("TAVILY_API_KEY".into()),
        })
    );
    assert_eq!(
        s("[search]\nprovider = \"searxng\"\nurl = \"http://127.0.0.1:8888/\"\n"),
        Some(SearchSettings {
            provider: SearchProvider::Searxng,
            url: "http://127.0.0.1:8888".into(),
            api_key_env: None,
        })
    );
    assert_eq!(
        s(
            "[search]\nprovider = \"tavily\"\nurl = \"https://proxy.example/tavily\"\napi_key_env = \"MY_TAVILY\"\n"
        ),
        Some(SearchSettings {
            provider: SearchProvider::Tavily,
            url: "https://proxy.example/tavily".into(),
            api_key_env: Some("MY_TAVILY".into()),
        })
    );
    // Stored with the team and read back by every agent.
    let cfg = parse("name = \"t\"\n[search]\nprovider = \"brave\"\n").unwrap();
    let back: TeamConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back.search, cfg.search);
}

/// Every mistake in `[search]` stops the team with the file, the line and the field.
#[test]
fn search_mistakes_name_the_file_line_and_field() {
    let e = |text: &str| parse(&format!("name = \"t\"\n{text}")).unwrap_err();
    for (text, line, field, says) in [
        // A value serde refuses is named by the parser itself, as for every enum field.
        ("[search]\nprovider = \"google\"\n", 3, "google", "searxng"),
        (
            "[search]\nprovider = \"brave\"\nkey = \"x\"\n",
            4,
            "key",
            "key",
        ),
        ("[search]\nurl = \"http://x\"\n", 2, "provider", "provider"),
        ("[search]\nprovider = \"searxng\"\n", 2, "search.url", "url"),
        (
            "[search]\nprovider = \"searxng\"\nurl = \"http://s\"\napi_key_env = \"K\"\n",
            5,
            "search.api_key_env",
            "takes no key",
        ),
        (
            "[search]\nprovider = \"brave\"\nurl = \"ftp://x\"\n",
            4,
            "search.url",
            "http",
        ),
        (
            "[search]\nprovider = \"brave\"\nurl = \"https://\"\n",
            4,
            "search.url",
            "http",
        ),
        (
            "[search]\nprovider = \"tavily\"\napi_key_env = \"not a name\"\n",
            4,
            "search.api_key_env",
            "environment variable",
        ),
    ] {
        let err = e(text);
        assert_eq!(err.line, Some(line), "{text}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("agent-team.toml:{line}:")),
            "{text}: {err}"
        );
        assert!(
            err.field.as_deref().is_some_and(|f| f.starts_with(field)),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{text}: {err}");
    }
}

/// Nyzhi's `default_role`: members that name no role get it; an unknown one (or the leader's)
/// is an error at its line.
#[test]
fn default_role_is_the_role_of_members_without_one() {
    let cfg = parse(
        "name = \"a\"\ndefault_role = \"reviewer\"\n[[teammates]]\nname = \"r1\"\n\
         [[teammates]]\nname = \"w1\"\nrole = \"worker\"\n",
    )
    .unwrap();
    assert_eq!(cfg.default_role, "reviewer");
    let roles: Vec<(&str, &str)> = cfg
        .teammates
        .iter()
        .map(|t| (t.name.as_str(), t.role.as_str()))
        .collect();
    assert_eq!(roles, [("r1", "reviewer"), ("w1", "worker")]);
    assert_eq!(parse("name = \"a\"\n").unwrap().default_role, "worker");
    for bad in ["nobody", "leader"] {
        let e = parse(&format!("name = \"a\"\n\ndefault_role = \"{bad}\"\n")).unwrap_err();
        assert!(e.to_string().contains("unknown role"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }
}

/// What an agent on another host is sent: its model's key variable and the team's search key
/// variable, not every credential of the team.
#[test]
fn an_agent_is_sent_its_model_key_and_the_search_key_only() {
    let cfg = parse(
        "name = \"a\"\n[search]\nprovider = \"brave\"\n\
         [roles.w]\nprovider = \"anthropic\"\nmodel = \"m\"\napi_key_env = \"MY_ANTHROPIC\"\n\
         [roles.o]\nprovider = \"openai\"\nmodel = \"m\"\n",
    )
    .unwrap();
    let w = cfg.role("w").unwrap();
    assert_eq!(
        cfg.agent_credential_vars(w, w.provider),
        ["MY_ANTHROPIC", "BRAVE_API_KEY"]
    );
    let o = cfg.role("o").unwrap();
    assert_eq!(
        cfg.agent_credential_vars(o, o.provider),
        ["OPENAI_API_KEY", "BRAVE_API_KEY"]
    );
    // An exec member needs no model key; the search key still goes (its worker may search).
    let e = cfg.role("worker").unwrap();
    assert_eq!(
        cfg.agent_credential_vars(e, crate::Provider::Exec),
        ["BRAVE_API_KEY"]
    );
    // All of them are withheld from commands.
    let all = cfg.credential_vars();
    for k in [
        "MY_ANTHROPIC",
        "BRAVE_API_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ] {
        assert!(all.contains(k), "{k}");
    }
}

/// Issue 61 item 3: `tool_names = "qwen"` on a role (team file or a role file's front matter)
/// asks for the team tools under Qwen Code's names; an unknown naming is an error naming the
/// role.
#[test]
fn tool_names_is_read_from_the_team_file_and_role_files_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".agent-team/agents")).unwrap();
    std::fs::write(
        dir.path().join(".agent-team/agents/qwenish.md"),
        "---\nname: qwenish\ntool_names: qwen\n---\nYou use Qwen's names.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent-team.toml"),
        "[roles.leader]\ntool_names = \"qwen\"\n[roles.plain]\ntools = [\"bash\"]\n",
    )
    .unwrap();
    let cfg = load(&dir.path().join("agent-team.toml")).unwrap();
    assert_eq!(
        cfg.role("leader").unwrap().tool_names.as_deref(),
        Some("qwen")
    );
    assert_eq!(
        cfg.role("qwenish").unwrap().tool_names.as_deref(),
        Some("qwen")
    );
    assert_eq!(cfg.role("plain").unwrap().tool_names, None);
    assert_eq!(cfg.role("worker").unwrap().tool_names, None);
    let e = parse("[roles.leader]\ntool_names = \"klingon\"\n").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("roles.leader.tool_names"), "{e}");
    assert!(e.message.contains("\"qwen\""), "{e}");
}

#[test]
fn the_layout_takes_tmux_s_own_names_and_refuses_others() {
    for (name, want) in [
        ("main-vertical", Layout::MainVertical),
        ("main-horizontal", Layout::MainHorizontal),
        ("even-horizontal", Layout::EvenHorizontal),
        ("even-vertical", Layout::EvenVertical),
        ("tiled", Layout::Tiled),
        ("windows", Layout::Windows),
    ] {
        let cfg = parse(&format!("name = \"t\"\nlayout = \"{name}\"\n")).unwrap();
        assert_eq!(cfg.layout, want, "{name}");
    }
    let e = parse("name = \"t\"\nlayout = \"spiral\"\n").unwrap_err();
    assert!(
        e.to_string().contains("spiral") && e.to_string().contains("even-vertical"),
        "{e}"
    );
}

#[test]
fn a_teammate_reads_its_own_role_and_entry_only() {
    let mut text = String::from(
        "name = \"big\"\nmax_teammates = 300\n\
         [roles.worker]\ndescription = \"w\"\n[roles.tester]\ndescription = \"t\"\n",
    );
    for i in 0..300 {
        let role = if i % 2 == 0 { "worker" } else { "tester" };
        text.push_str(&format!(
            "[[teammates]]\nname = \"w{i}\"\nrole = \"{role}\"\n"
        ));
    }
    let c = parse(&text).unwrap();
    let view = c.for_teammate("w7", "tester");
    assert_eq!(
        view.teammates
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["w7"]
    );
    assert!(view.role("tester").is_some());
    assert!(
        view.role("worker").is_none(),
        "another role is not its to read"
    );
    // The team's own settings are the same.
    assert_eq!(view.name, c.name);
    assert_eq!(view.max_teammates, c.max_teammates);
}
