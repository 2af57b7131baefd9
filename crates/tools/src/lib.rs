//! Every tool an agent can have, defined once, as data: its name, what the model is told, who
//! gets it, and its arguments as a Rust type whose JSON schema the models see. The worker runs
//! the tools, the configuration checks role files against the names, and `docs/TOOLS.md` is
//! generated from here; the MCP and HTTP front ends are to use the same catalogue.
//!
//! Pure data: no I/O, no knowledge of the daemon or of the workspace.

pub mod aliases;
pub mod cli_names;
mod files;
mod memory;
mod messages;
mod parse;
mod plans;
mod schema;
mod shell;
mod tasks;
mod team;
mod todos;
mod web;

pub use aliases::{Caller, Naming, Translated, alias_of, translate};
pub use files::{EditFile, Glob, Grep, ListFiles, ReadFile, WriteFile};
pub use memory::{MemoryGet, MemoryList, MemorySet};
pub use messages::{Broadcast, ReadInbox, SendMessage, WaitForMessages};
pub use parse::{ToolArgError, parse};
pub use plans::{DecidePlan, SubmitPlan};
pub use schema::model_schema;
pub use shell::Bash;
pub use tasks::{
    AssignTask, BoardStatus, ClaimTask, CreateTask, ListTasks, ReleaseTask, StatusUpdate,
    UpdateTaskStatus,
};
pub use team::{
    CloseTeammate, DecidePermission, DiffTeammate, DissolveTeam, FinishTeam, FinishTeammateWork,
    ListTeammates, ResumeTeammate, SetConfig, SpawnTeam, SpawnTeammate, TeamMember, WaitFor,
    WaitMode, WorkAction,
};
pub use todos::{TodoItem, TodoStatus, TodoWrite};
pub use web::{WebFetch, WebSearch};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Who gets a tool, so agents are given their tools by kind and role files can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A team tool (a request to the daemon), given by the agent's place in the team; a role
    /// may still list it to get it where the flag is false.
    Team {
        /// Every leader gets it.
        leader: bool,
        /// Every teammate gets it.
        teammate: bool,
    },
    /// A tool acting on the workspace, given only when the role's `tools` list names it.
    Workspace {
        /// It changes nothing (the built-in read-only roles get these).
        read_only: bool,
    },
    /// `decide_permission`: the leader gets it when it is the team's approver.
    Approver,
    /// A team tool every leader gets and a teammate gets when its role's `tools` list names it
    /// (`memory_set`: the daemon lets a teammate write only when its role lists it).
    LeaderAndRole,
    /// `submit_plan`: a teammate whose plan is required gets it until its plan is approved.
    Planner,
}

impl Audience {
    /// A team tool of the leader only.
    pub const LEADER: Audience = Audience::Team {
        leader: true,
        teammate: false,
    };
    /// A team tool of teammates only.
    pub const TEAMMATE: Audience = Audience::Team {
        leader: false,
        teammate: true,
    };
    /// A team tool of the leader and of teammates.
    pub const EVERYONE: Audience = Audience::Team {
        leader: true,
        teammate: true,
    };
    /// A workspace tool that changes nothing.
    pub const READ_ONLY: Audience = Audience::Workspace { read_only: true };
    /// A workspace tool that may change the workspace (or run anything).
    pub const WRITES: Audience = Audience::Workspace { read_only: false };

    /// Whether it is in `list`.
    const fn in_list(self, list: List) -> bool {
        match (self, list) {
            (Audience::Team { leader, .. }, List::Leader) => leader,
            (Audience::LeaderAndRole, List::Leader) => true,
            (Audience::Team { teammate, .. }, List::Teammate) => teammate,
            (Audience::Workspace { .. }, List::Workspace) => true,
            (Audience::Workspace { read_only }, List::ReadOnly) => read_only,
            (Audience::Approver, List::Approver) => true,
            _ => false,
        }
    }
}

/// One tool's definition: implemented by its argument type, in the module of its family.
pub trait Tool: DeserializeOwned + JsonSchema {
    /// The name the model calls.
    const NAME: &'static str;
    /// What it does, for the model and the docs.
    const DESCRIPTION: &'static str;
    /// Who gets it.
    const AUDIENCE: Audience;
}

/// A catalogue entry: a [`Tool`] seen without its type, for lists, lookups and schemas.
#[derive(Debug, Clone, Copy)]
pub struct ToolDef {
    /// The name the model calls.
    pub name: &'static str,
    /// What it does, for the model and the docs.
    pub description: &'static str,
    /// Who gets it.
    pub audience: Audience,
    schema: fn() -> Value,
}

impl ToolDef {
    /// The entry of tool `T`.
    pub const fn of<T: Tool>() -> ToolDef {
        ToolDef {
            name: T::NAME,
            description: T::DESCRIPTION,
            audience: T::AUDIENCE,
            schema: model_schema::<T>,
        }
    }

    /// The JSON schema of its arguments as the models get it (see [`model_schema`]).
    pub fn schema(&self) -> Value {
        self.schema_shared().as_ref().clone()
    }

    /// [`ToolDef::schema`] without a copy. Made once per process: every agent's tool list and
    /// every call's check asks for it, and schemars builds it anew each time (~4 µs, some 360
    /// times in a short team run of three agents in one daemon). The first ask makes every
    /// tool's at once, so a teammate started later finds its tools' made rather than making
    /// them on its way to its first model request (~70 µs of a teammate's start, measured).
    pub fn schema_shared(&self) -> std::sync::Arc<Value> {
        type Made = std::collections::BTreeMap<&'static str, std::sync::Arc<Value>>;
        static MADE: std::sync::Mutex<Made> = std::sync::Mutex::new(Made::new());
        match MADE.lock() {
            Ok(mut made) => {
                if made.is_empty() {
                    for tool in CATALOGUE {
                        made.insert(tool.name, std::sync::Arc::new((tool.schema)()));
                    }
                }
                made.entry(self.name)
                    .or_insert_with(|| std::sync::Arc::new((self.schema)()))
                    .clone()
            }
            Err(_) => std::sync::Arc::new((self.schema)()),
        }
    }
}

/// Lists the catalogue and the call type from one list of argument types, so a tool cannot be
/// in one and missing from the other.
macro_rules! catalogue {
    ($($tool:ident),+ $(,)?) => {
        /// Every tool, in the order the docs and the name lists show them.
        pub const CATALOGUE: &[ToolDef] = &[$(ToolDef::of::<$tool>()),+];

        /// A call of any tool with its arguments parsed, ready to run.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum ToolCall {
            $(
                #[doc = concat!("A call of [`", stringify!($tool), "`].")]
                $tool($tool),
            )+
        }

        impl ToolCall {
            /// Parses the arguments of a call of tool `name` (see [`parse`]).
            pub fn parse(name: &str, args: &Value) -> Result<ToolCall, ToolArgError> {
                $(
                    if name == <$tool as Tool>::NAME {
                        return parse::<$tool>(name, args).map(ToolCall::$tool);
                    }
                )+
                Err(ToolArgError::unknown_tool(name))
            }

            /// The tool's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(ToolCall::$tool(_) => <$tool as Tool>::NAME,)+
                }
            }
        }
    };
}

catalogue!(
    SpawnTeammate,
    SpawnTeam,
    WaitFor,
    CloseTeammate,
    DissolveTeam,
    SetConfig,
    ResumeTeammate,
    DiffTeammate,
    FinishTeammateWork,
    CreateTask,
    AssignTask,
    SendMessage,
    Broadcast,
    ReadInbox,
    ListTeammates,
    ListTasks,
    FinishTeam,
    DecidePermission,
    DecidePlan,
    ClaimTask,
    UpdateTaskStatus,
    ReleaseTask,
    SubmitPlan,
    MemorySet,
    MemoryGet,
    MemoryList,
    TodoWrite,
    ReadFile,
    WriteFile,
    EditFile,
    ListFiles,
    Grep,
    Glob,
    WebFetch,
    WebSearch,
    Bash,
);

/// The name lists derived from audiences.
#[derive(Debug, Clone, Copy)]
enum List {
    Leader,
    Teammate,
    Workspace,
    ReadOnly,
    Approver,
}

const fn count(list: List) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < CATALOGUE.len() {
        if CATALOGUE[i].audience.in_list(list) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn names<const N: usize>(list: List) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < CATALOGUE.len() {
        if CATALOGUE[i].audience.in_list(list) {
            out[n] = CATALOGUE[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

/// Tools only the MCP front end (an external CLI's team server) offers, beside the agent's team tools:
/// an external agent CLI has no daemon connection of its own to have messages pushed to.
pub const MCP_ONLY: &[ToolDef] = &[ToolDef::of::<WaitForMessages>()];

/// Tools that act on the workspace.
pub const WORKSPACE_TOOLS: &[&str] = &names::<{ count(List::Workspace) }>(List::Workspace);
/// Read-only workspace tools.
pub const READ_ONLY_TOOLS: &[&str] = &names::<{ count(List::ReadOnly) }>(List::ReadOnly);
/// Team tools every leader gets.
pub const LEADER_TOOLS: &[&str] = &names::<{ count(List::Leader) }>(List::Leader);
/// Team tools every teammate gets.
pub const TEAMMATE_TOOLS: &[&str] = &names::<{ count(List::Teammate) }>(List::Teammate);
/// The leader's tool for deciding permission requests when it is the approver.
pub const DECIDE_PERMISSION: &str = names::<1>(List::Approver)[0];

/// The tool that writes the team's memory: the daemon lets an agent write only when it is the
/// leader or its role lists this tool.
pub const MEMORY_SET: &str = <MemorySet as Tool>::NAME;

/// A tool by name.
pub fn lookup(name: &str) -> Option<&'static ToolDef> {
    CATALOGUE.iter().find(|t| t.name == name)
}

/// The tool a plan-required teammate submits its plan with: it gets it until the plan is
/// approved.
pub const SUBMIT_PLAN: &str = <SubmitPlan as Tool>::NAME;

/// The tools that start teammates: a teammate calling one is told the team is one level deep.
pub const SPAWN_TOOLS: &[&str] = &[<SpawnTeammate as Tool>::NAME, <SpawnTeam as Tool>::NAME];

/// Whether `name` is a tool agent-team knows.
pub fn is_known_tool(name: &str) -> bool {
    lookup(name).is_some()
}

/// The catalogue as a markdown table: who gets each tool and what it does. "role" means the
/// role's `tools` list decides.
pub fn markdown() -> String {
    let mut s = String::from("| tool | leader | teammate | what it does |\n|---|---|---|---|\n");
    for t in CATALOGUE {
        let (leader, teammate) = match t.audience {
            Audience::Team { leader, teammate } => (
                if leader { "yes" } else { "role" },
                match (teammate, leader) {
                    (true, _) => "yes",
                    (false, true) => "no",
                    (false, false) => "role",
                },
            ),
            Audience::Workspace { .. } => ("role", "role"),
            Audience::Approver => ("yes", "no"),
            Audience::LeaderAndRole => ("yes", "role"),
            Audience::Planner => ("no", "plan"),
        };
        s.push_str(&format!(
            "| `{}` | {leader} | {teammate} | {} |\n",
            t.name, t.description
        ));
    }
    s
}

/// The whole of `docs/TOOLS.md`: its prose and [`markdown`]'s table.
pub fn tools_doc() -> String {
    format!(
        "# Agent tools\n\n\
         Generated from `crates/tools` (the catalogue of `agent-team-tools`): the same definitions give \
         the models their schemas and the worker its argument types.\n\
         Regenerate with `UPDATE_DOCS=1 cargo test -p agent-team-tools tools_doc`. \
         \"role\" means the role's `tools` list decides; \"plan\" means a teammate whose plan is \
         required (`plan_required`) gets it until the plan is approved.\n\n{}",
        markdown(),
    ) + &aliases::markdown()
        + &mcp_markdown()
}

/// The section of `docs/TOOLS.md` on what the MCP front end adds for external agent CLIs.
fn mcp_markdown() -> String {
    let mut s = String::from(
        "\n## Over MCP only\n\nAn external agent CLI's team server (its worker's, through \
         `agent-team-bridge`) serves the CLI (Claude Code, Codex, \
         Qwen Code, ...) its team tools from the table above (the leader's or a teammate's), plus:\n\n\
         | tool | what it does |\n|---|---|\n",
    );
    for t in MCP_ONLY {
        s.push_str(&format!("| `{}` | {} |\n", t.name, t.description));
    }
    s
}

#[cfg(test)]
mod tests;
