//! The agent CLIs' own tools, by the tool of ours each stands for: one table per CLI, read by
//! the role-file mapping (a Claude Code role file lists `Read`, `Bash`, …), by the launch
//! plans (which of a CLI's tools a role allows, lacks or has judged call by call) and by the
//! permission hook (a CLI's call judged as ours). A CLI joins with one table here.

/// One agent CLI's tools: its name for each, and ours.
#[derive(Debug, Clone, Copy)]
pub struct CliTools {
    /// The CLI, as its provider is named in a team file.
    pub cli: &'static str,
    /// `(the CLI's name, our tool)`; several of the CLI's names may stand for one of ours.
    pub tools: &'static [(&'static str, &'static str)],
    /// The CLI's own tools that would make a second team or board beside ours (its own task
    /// list, messages, subagents, schedules): a launch withholds or always refuses them.
    pub own_team: &'static [&'static str],
}

impl CliTools {
    /// Our tool that the CLI's `name` stands for; `None` for a name with no counterpart.
    pub fn ours(&self, name: &str) -> Option<&'static str> {
        self.tools.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
    }

    /// The CLI's names that stand for one of ours, in table order.
    pub fn names(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.tools.iter().copied()
    }
}

/// Claude Code (its hooks, its `--allowedTools` and `.claude/agents/*.md` use these names).
pub const CLAUDE_CODE: CliTools = CliTools {
    cli: "claude-code",
    tools: &[
        ("Read", "read_file"),
        ("Write", "write_file"),
        ("Edit", "edit_file"),
        ("MultiEdit", "edit_file"),
        ("Glob", "glob"),
        ("LS", "list_files"),
        ("Grep", "grep"),
        ("Bash", "bash"),
        ("WebFetch", "web_fetch"),
        ("WebSearch", "web_search"),
        ("TodoWrite", "todo_write"),
    ],
    // Its own task list, messages, subagents (which run in the background since 2.1.330),
    // workflows and schedules (names as 2.1.330 offers them; `Task` is the older subagent).
    own_team: &[
        "TaskCreate",
        "TaskGet",
        "TaskList",
        "TaskUpdate",
        "TaskStop",
        "SendMessage",
        "Agent",
        "Task",
        "ListAgents",
        "Workflow",
        "ScheduleWakeup",
        "CronCreate",
        "CronDelete",
        "CronList",
        "Monitor",
    ],
};

/// Codex: its hooks name its shell `Bash`, with the command in `command` (seen in 0.169.0);
/// its other tools write only inside its own workspace-write sandbox.
pub const CODEX: CliTools = CliTools {
    cli: "codex",
    tools: &[("Bash", "bash")],
    own_team: &[],
};

/// Qwen Code (`read_many_files` and the older `replace` / `search_file_content` are judged
/// like the tools they stand for).
pub const QWEN_CODE: CliTools = CliTools {
    cli: "qwen-code",
    tools: &[
        ("run_shell_command", "bash"),
        ("write_file", "write_file"),
        ("edit", "edit_file"),
        ("replace", "edit_file"),
        ("read_file", "read_file"),
        ("read_many_files", "read_file"),
        ("glob", "glob"),
        ("grep_search", "grep"),
        ("search_file_content", "grep"),
        ("list_directory", "list_files"),
        ("web_fetch", "web_fetch"),
        ("web_search", "web_search"),
        ("todo_write", "todo_write"),
    ],
    own_team: &[
        "agent",
        "send_message",
        "cron_create",
        "cron_list",
        "cron_delete",
        "monitor",
        "task_stop",
    ],
};

/// Gemini CLI (names as offered to its model and seen by its `BeforeTool` hook in 0.61.0;
/// `search_file_content` is the older name of `grep_search`).
pub const GEMINI_CLI: CliTools = CliTools {
    cli: "gemini-cli",
    tools: &[
        ("run_shell_command", "bash"),
        ("write_file", "write_file"),
        ("replace", "edit_file"),
        ("read_file", "read_file"),
        ("read_many_files", "read_file"),
        ("glob", "glob"),
        ("grep_search", "grep"),
        ("search_file_content", "grep"),
        ("list_directory", "list_files"),
        ("web_fetch", "web_fetch"),
        ("google_web_search", "web_search"),
        ("write_todos", "todo_write"),
    ],
    // Its subagents would be a second team beside ours.
    own_team: &["invoke_agent"],
};

/// GitHub Copilot CLI (names as offered to its model and seen by its `preToolUse` hook in
/// 1.0.102; with a Codex model id it offers `apply_patch` and `rg` instead of `create`, `edit`
/// and `grep`, and `str_replace` is the older name of `edit`).
pub const COPILOT: CliTools = CliTools {
    cli: "copilot",
    tools: &[
        ("bash", "bash"),
        ("create", "write_file"),
        ("edit", "edit_file"),
        ("str_replace", "edit_file"),
        ("apply_patch", "edit_file"),
        ("view", "read_file"),
        ("glob", "glob"),
        ("grep", "grep"),
        ("rg", "grep"),
        ("web_fetch", "web_fetch"),
    ],
    // Its subagents and their messages would be a second team beside ours.
    own_team: &["task", "read_agent", "write_agent", "list_agents"],
};

/// opencode (names as offered to its model and seen by its plugins' `tool.execute.before` in
/// 1.18.33; it offers `apply_patch` instead of `edit` and `write` to some models).
pub const OPENCODE: CliTools = CliTools {
    cli: "opencode",
    tools: &[
        ("bash", "bash"),
        ("edit", "edit_file"),
        ("write", "write_file"),
        ("apply_patch", "edit_file"),
        ("read", "read_file"),
        ("glob", "glob"),
        ("grep", "grep"),
        ("list", "list_files"),
        ("webfetch", "web_fetch"),
        ("websearch", "web_search"),
        ("todowrite", "todo_write"),
    ],
    // Its subagents would be a second team beside ours.
    own_team: &["task"],
};

/// Every CLI's table.
pub const ALL: &[CliTools] = &[CLAUDE_CODE, CODEX, QWEN_CODE, GEMINI_CLI, COPILOT, OPENCODE];

/// Our tool that `name` stands for in any CLI's table (no name means two different tools in
/// two CLIs: a unit test holds the tables to that).
pub fn ours(name: &str) -> Option<&'static str> {
    ALL.iter().find_map(|t| t.ours(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_name_is_one_of_our_tools_and_means_the_same_in_every_cli() {
        for table in ALL {
            for (name, ours) in table.names() {
                assert!(crate::is_known_tool(ours), "{}: {name} → {ours}", table.cli);
                assert_eq!(super::ours(name), Some(ours), "{}: {name}", table.cli);
            }
            for own in table.own_team {
                assert_eq!(table.ours(own), None, "{}: {own} is ours too", table.cli);
            }
        }
    }
}
