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

/// Where a built-in role comes from, as `agent-team roles` shows it.
pub const BUILTIN_SOURCE: &str = "built-in";
/// Where a role given or changed by `[roles.NAME]` comes from.
pub const TEAM_FILE_SOURCE: &str = "team file";

/// The directories role files are read from, in the order they are layered (a later one
/// wins for the same role name).
pub const ROLE_DIRS: &[&str] = &[".claude/agents", ".nyzhi/agents", ".agent-team/agents"];

/// Maps a Claude Code tool name (in `.claude/agents/*.md` and other role files) to ours; `None`
/// for a name with no counterpart (the role file is still read, with a warning).
pub fn claude_tool(name: &str) -> Option<&'static str> {
    agent_team_tools::cli_names::CLAUDE_CODE.ours(name)
}

/// Maps a Nyzhi tool name (in `.nyzhi/agents/*.md` and other role files) to ours; `None` for a
/// name with no counterpart. Nyzhi's read-only git tools ([`NYZHI_GIT_TOOLS`]) have none:
/// agent-team has no git tool, the read tools cannot tell what git tracks or changed, and the
/// one way to run git is `bash`, which also writes and runs anything, so mapping them to it
/// would widen a role. In an allow list they are left out (the role runs without them, with a
/// warning); in a deny list there is nothing of ours to take away, which keeps the role as
/// narrow as Nyzhi would (denying `git_diff` there leaves `bash` too).
pub fn nyzhi_tool(name: &str) -> Option<&'static str> {
    Some(match name {
        "read" => "read_file",
        "write" => "write_file",
        "edit" => "edit_file",
        "list_dir" | "directory_tree" => "list_files",
        "todowrite" => "todo_write",
        _ => return None,
    })
}

/// Nyzhi's read-only git tools: no counterpart in agent-team (see [`nyzhi_tool`]).
pub const NYZHI_GIT_TOOLS: &[&str] = &[
    "git_status",
    "git_diff",
    "git_log",
    "git_show",
    "git_branch",
];

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
        finish: None,
        max_steps: 50,
        command: None,
        env: BTreeMap::new(),
        context_tokens: 128_000,
        stream: true,
        cache: true,
        source: String::new(),
        plan_required: false,
        sandbox: Default::default(),
        host: None,
        container: None,
        tool_names: None,
    }
}

/// The tools that read the workspace and change nothing (no web): the set of the read-only
/// built-in roles.
const READ: &[&str] = &["read_file", "list_files", "grep", "glob"];
/// Reading, writing and the shell: what changing and checking code takes.
const BUILD: &[&str] = &[
    "read_file",
    "write_file",
    "edit_file",
    "list_files",
    "grep",
    "glob",
    "bash",
];

/// The built-in roles that can neither write files nor run the shell: they read, search and
/// report (`leader` too: it directs and does not do the work itself).
pub const READ_ONLY_ROLES: &[&str] = &[
    "leader",
    "explorer",
    "reviewer",
    "planner",
    "architect",
    "security-reviewer",
    "quality-reviewer",
];

/// What every teammate's prompt says about working on the team, after its own part.
const TEAMWORK: &str = "Work through the team: claim a task from the board (or take the one \
     assigned to you), keep your checklist current with todo_write, finish the task with \
     update_task_status (completed or failed, with a short result that says what you found or \
     changed), and tell the leader with send_message when you are done or blocked. Answer \
     messages from the leader first. Do not work on a task someone else holds.";

/// (name, description, what it does and must not do, tools).
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    (
        "default",
        "General-purpose teammate with every workspace tool",
        "You are a general-purpose engineer on a team. Do what your task asks with the tools \
         you have: read before you change, make the smallest change that does the job, and \
         check it (run the tests or the command that shows it works). Ask the leader when the \
         task is unclear instead of guessing at a large change.",
        &[],
    ),
    (
        "worker",
        "Implements tasks from the board",
        "You are a careful engineer on a team. You implement tasks: read the code involved, \
         change it, run the checks that prove the change, and report the result precisely. \
         Keep to the task's scope; note other problems you see in your result instead of \
         fixing them unasked. Record facts the team will need later with memory_set.",
        &[],
    ),
    (
        "explorer",
        "Reads and searches the workspace; changes nothing",
        "You explore the codebase and report what you find: where things are defined, how \
         they connect, which files a change would touch. Use glob, grep, list_files and \
         read_file; quote file paths and line numbers so others can go straight there. You \
         cannot write files or run commands, and you do not propose rewrites unless asked.",
        READ,
    ),
    (
        "reviewer",
        "Reviews changes and reports problems; changes nothing",
        "You review the team's changes: read the changed files and what they affect, and \
         report problems precisely (file, line, what is wrong, why it matters, what would fix \
         it), most serious first. Say plainly when you find nothing wrong. You cannot write \
         files or run commands: you do not rewrite other people's work.",
        READ,
    ),
    (
        "planner",
        "Breaks a goal into ordered, checkable tasks; changes nothing",
        "You plan. Read enough of the workspace to understand the goal, then write a plan: \
         small tasks in order, each with what done looks like and what it depends on, and \
         the risks. Put the plan in your result and, when it is long, in the team's memory \
         (memory_set under plans/). You cannot write files or run commands; the leader turns \
         your plan into tasks.",
        &["read_file", "list_files", "grep", "glob", "memory_set"],
    ),
    (
        "architect",
        "Designs structure and interfaces; changes nothing",
        "You design. Study the existing structure (modules, data flow, interfaces) and \
         propose how the change fits: the components, their responsibilities, the interfaces \
         between them and the trade-offs of the alternatives you rejected. Be concrete: name \
         files, types and functions. Record decisions in the team's memory (memory_set under \
         design/). You cannot write files or run commands.",
        &["read_file", "list_files", "grep", "glob", "memory_set"],
    ),
    (
        "debugger",
        "Finds the root cause of a failure and fixes it",
        "You debug. Reproduce the failure first with a command, then narrow it down by \
         reading the code and testing hypotheses one at a time until you know the root cause; \
         fix that, not the symptom, and show the reproduction passing. Report the cause, the \
         fix and how you verified it. Do not paper over a failure by weakening a test.",
        BUILD,
    ),
    (
        "security-reviewer",
        "Looks for security problems; changes nothing",
        "You review for security: injection (shell, SQL, paths), secrets in code or logs, \
         missing authentication or authorization checks, unsafe deserialization, path \
         traversal, unsafe defaults and vulnerable dependencies. Report each finding with \
         file and line, how it could be exploited, its severity and the fix. You cannot write \
         files or run commands.",
        READ,
    ),
    (
        "quality-reviewer",
        "Reviews code quality and maintainability; changes nothing",
        "You review code quality: correctness of edge cases, error handling, naming, \
         duplication, dead code, overly complex functions, missing tests and documentation \
         that no longer matches the code. Report findings with file and line, why each \
         matters and a concrete improvement, most important first. You cannot write files or \
         run commands.",
        READ,
    ),
    (
        "test-engineer",
        "Writes and runs tests",
        "You write tests. Find what the task's code must do, write tests that fail when it \
         does not (edge cases and errors included), run them and report which pass. Keep \
         tests deterministic: no sleeps as synchronisation, no network. Change code under \
         test only to fix a bug your tests found, and say so.",
        BUILD,
    ),
    (
        "build-fixer",
        "Makes a failing build or test suite pass",
        "You fix builds. Run the failing build or test command, read the first error \
         carefully, fix its cause and run again until it passes; then run the wider checks \
         (formatting, lints, tests) to make sure nothing else broke. Make the smallest change \
         that fixes the build; do not disable checks or delete tests to get green.",
        BUILD,
    ),
    (
        "deep-executor",
        "Carries out long, multi-step tasks end to end",
        "You carry out complex tasks that need many steps. Start by writing your plan as a \
         checklist with todo_write and keep it current as you go; work step by step, \
         verifying each before the next; record what others will need in the team's memory. \
         When a step fails, find out why before trying something else. Report what was done, \
         what was verified and what remains.",
        &[
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "grep",
            "glob",
            "web_fetch",
            "web_search",
            "bash",
            "memory_set",
        ],
    ),
    (
        "document-specialist",
        "Writes and updates documentation; no shell",
        "You write documentation: READMEs, guides, reference pages and doc comments. Read the \
         code to make sure every statement is true, keep examples runnable, and match the \
         existing style. You may search the web and read web pages (web_search, web_fetch, \
         asked first) for reference. You can edit files but cannot run commands: ask a \
         teammate to run what needs running.",
        &[
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "grep",
            "glob",
            "web_fetch",
            "web_search",
        ],
    ),
    (
        "code-simplifier",
        "Simplifies and refactors code without changing behaviour",
        "You simplify code: remove duplication and dead code, untangle complex functions, \
         choose clearer names, without changing what the code does. Run the tests before and \
         after each change; if there are none for the code you touch, say so. Keep each \
         change small and explain it in your result.",
        BUILD,
    ),
];

/// The built-in roles (Nyzhi's set and `leader`): `default`, `worker`, `explorer`, `reviewer`,
/// `planner`, `architect`, `debugger`, `security-reviewer`, `quality-reviewer`,
/// `test-engineer`, `build-fixer`, `deep-executor`, `document-specialist`, `code-simplifier`
/// and `leader`. The roles in [`READ_ONLY_ROLES`] can neither write files nor run the shell.
/// Every agent reads the team's memory; the leader, `worker`, `planner`, `architect` and
/// `deep-executor` write it. `web_fetch` and `web_search` are asked before each call unless a
/// rule allows them.
pub fn builtin_roles() -> BTreeMap<String, Role> {
    let mut m = BTreeMap::new();
    m.insert(
        "leader".to_string(),
        Role {
            description: "Plans the work, starts teammates, creates and assigns tasks, and \
                          finishes the team"
                .into(),
            system_prompt: "You lead a team of agents. Break the goal into tasks, start the \
                 teammates you need (pick the role that fits: explorer to find things, planner \
                 or architect to design, worker or debugger to change code, reviewer, \
                 security-reviewer or quality-reviewer to check it), put the tasks on the board \
                 and assign them or let the teammates claim them, answer their messages, and \
                 call finish_team with the final answer when every task is done. You read the \
                 workspace but do not change it yourself: delegate the work."
                .into(),
            tools: strs(READ),
            source: BUILTIN_SOURCE.into(),
            ..default_role("leader")
        },
    );
    for (name, description, prompt, tools) in BUILTINS {
        let tools = match (*name, tools.is_empty()) {
            // Workers also write the team's memory (every role reads it).
            ("worker", _) => [strs(WORKSPACE_TOOLS), strs(&[MEMORY_SET])].concat(),
            (_, true) => strs(WORKSPACE_TOOLS),
            (_, false) => strs(tools),
        };
        m.insert(
            name.to_string(),
            Role {
                description: description.to_string(),
                system_prompt: format!("{prompt}\n\n{TEAMWORK}"),
                tools,
                source: BUILTIN_SOURCE.into(),
                ..default_role(name)
            },
        );
    }
    m
}
