//! Built-in roles and the names of every tool an agent can have.

use crate::model::*;
use std::collections::BTreeMap;

/// Tools that act on the workspace.
pub const WORKSPACE_TOOLS: &[&str] = &[
    "read_file",
    "write_file",
    "edit_file",
    "list_files",
    "grep",
    "bash",
];
/// Read-only workspace tools.
pub const READ_ONLY_TOOLS: &[&str] = &["read_file", "list_files", "grep"];
/// Team tools every leader gets.
pub const LEADER_TOOLS: &[&str] = &[
    "spawn_teammate",
    "create_task",
    "assign_task",
    "send_message",
    "broadcast",
    "list_teammates",
    "list_tasks",
    "finish_team",
];
/// Team tools every teammate gets.
pub const TEAMMATE_TOOLS: &[&str] = &[
    "send_message",
    "broadcast",
    "list_teammates",
    "list_tasks",
    "claim_task",
    "update_task_status",
    "release_task",
];
/// The leader's tool for deciding permission requests when it is the approver.
pub const DECIDE_PERMISSION: &str = "decide_permission";

/// Whether `name` is a tool agent-team knows.
pub fn is_known_tool(name: &str) -> bool {
    WORKSPACE_TOOLS.contains(&name)
        || LEADER_TOOLS.contains(&name)
        || TEAMMATE_TOOLS.contains(&name)
        || name == DECIDE_PERMISSION
}

/// Maps Claude Code tool names in `.claude/agents/*.md` to ours.
pub fn claude_tool(name: &str) -> Option<&'static str> {
    Some(match name {
        "Read" => "read_file",
        "Write" => "write_file",
        "Edit" | "MultiEdit" => "edit_file",
        "Glob" | "LS" => "list_files",
        "Grep" => "grep",
        "Bash" => "bash",
        _ => return None,
    })
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A role with every field at its default: offline `exec`, all workspace tools, restart on
/// failure, no policy rules.
pub fn default_role(name: &str) -> Role {
    Role {
        name: name.into(),
        description: String::new(),
        system_prompt: String::new(),
        provider: Provider::Exec,
        model: String::new(),
        base_url: None,
        api_key_env: None,
        tools: strs(WORKSPACE_TOOLS),
        permissions: vec![],
        restart: RestartPolicy::OnFailure,
        isolation: Isolation::Shared,
        max_steps: 50,
        command: None,
        env: BTreeMap::new(),
        context_tokens: 128_000,
        stream: true,
    }
}

/// The built-in roles: `leader`, `worker`, `explorer` (read-only) and `reviewer`.
pub fn builtin_roles() -> BTreeMap<String, Role> {
    let base = |name: &str, description: &str, prompt: &str, tools: Vec<String>| Role {
        description: description.into(),
        system_prompt: prompt.into(),
        tools,
        ..default_role(name)
    };
    let mut m = BTreeMap::new();
    m.insert(
        "leader".into(),
        base(
            "leader",
            "Plans the work, starts teammates, creates and assigns tasks, and finishes the team",
            "You lead a team of agents. Break the goal into tasks, start the teammates you need, \
             assign or let them claim tasks, answer their messages, and call finish_team with \
             the final answer when every task is done.",
            strs(READ_ONLY_TOOLS),
        ),
    );
    m.insert(
        "worker".into(),
        base(
            "worker",
            "Implements tasks from the board",
            "You are a careful engineer on a team. Claim a task, do it with your tools, mark it \
             completed or failed with a short result, and tell the leader.",
            strs(WORKSPACE_TOOLS),
        ),
    );
    m.insert(
        "explorer".into(),
        base(
            "explorer",
            "Reads and searches the workspace; changes nothing",
            "You explore the codebase and report what you find. You cannot change files.",
            strs(READ_ONLY_TOOLS),
        ),
    );
    m.insert(
        "reviewer".into(),
        base(
            "reviewer",
            "Reviews changes and reports problems",
            "You review the team's changes: read them, run the checks, and report problems \
             precisely. You do not rewrite other people's work.",
            strs(&["read_file", "list_files", "grep", "bash"]),
        ),
    );
    m
}
