//! Built-in roles, and the tool names (from the one catalogue in `agent-team-tools`) as the
//! configuration knows them.

use crate::model::*;
use std::collections::BTreeMap;

// The tool names come from the one catalogue (`agent-team-tools`); they are re-exported here
// for the callers that know them as part of the configuration.
pub use agent_team_tools::{
    DECIDE_PERMISSION, LEADER_TOOLS, MEMORY_SET, READ_ONLY_TOOLS, TEAMMATE_TOOLS, WORKSPACE_TOOLS,
    is_known_tool,
};

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

/// The built-in roles: `leader`, `worker`, `explorer` (read-only) and `reviewer`. Every agent
/// reads the team's memory; the leader and `worker` write it, `explorer` and `reviewer` only
/// read it.
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
            // Workers also write the team's memory (every role reads it).
            [strs(WORKSPACE_TOOLS), strs(&[MEMORY_SET])].concat(),
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
