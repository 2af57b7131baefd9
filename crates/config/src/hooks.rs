//! `[hooks]`: shell commands the daemon runs when something happens in the team (a teammate
//! went idle, a task was created or is being completed, a permission was asked for, an agent
//! failed, the run finished). The team file's `[hooks]` apply to every agent; a role's
//! (`[roles.X.hooks]`, or `hooks:` in a role file's front matter) apply in addition to events
//! of agents with that role.
//!
//! Each key is one event; its value is the command line (`sh -c`) or a table
//! `{ command = "...", timeout_secs = N }` (default 30 s). Only the daemon runs them.

use serde::{Deserialize, Serialize};

/// How long a hook may run when its table does not say.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 30;

/// The six events a hook can be attached to, as the team file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookEvent {
    /// A teammate's status became idle; exit 2 sends the hook's stderr to it (it keeps working).
    TeammateIdle,
    /// A task was put on the board.
    TaskCreated,
    /// A task is being finished as completed; exit 2 keeps it in progress (blocking).
    TaskCompleted,
    /// An agent asked for a permission.
    PermissionRequested,
    /// An agent failed.
    AgentFailed,
    /// The team run finished (`RUN_FINISHED`).
    RunFinished,
}

impl HookEvent {
    /// Every event, in the order the docs list them.
    pub const ALL: [HookEvent; 6] = [
        HookEvent::TeammateIdle,
        HookEvent::TaskCreated,
        HookEvent::TaskCompleted,
        HookEvent::PermissionRequested,
        HookEvent::AgentFailed,
        HookEvent::RunFinished,
    ];

    /// The name as written in `[hooks]` and given to a hook as `AGENT_TEAM_HOOK_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::TeammateIdle => "teammate_idle",
            HookEvent::TaskCreated => "task_created",
            HookEvent::TaskCompleted => "task_completed",
            HookEvent::PermissionRequested => "permission_requested",
            HookEvent::AgentFailed => "agent_failed",
            HookEvent::RunFinished => "run_finished",
        }
    }

    /// Parses a name as written in `[hooks]`.
    pub fn parse(s: &str) -> Option<Self> {
        HookEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Whether exit code 2 of this event's hook blocks (keeps the task in progress, or sends
    /// the teammate back to work) rather than counting as a failure.
    pub fn blocks(self) -> bool {
        matches!(self, HookEvent::TaskCompleted | HookEvent::TeammateIdle)
    }
}

impl std::fmt::Display for HookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook: a shell command and how long it may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawHook")]
pub struct Hook {
    /// The `sh -c` line, run in the workspace.
    pub command: String,
    /// Seconds before its process group is killed.
    pub timeout_secs: u64,
}

/// A hook as written: a command line, or a table with a timeout.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawHook {
    Line(String),
    Table(HookTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookTable {
    command: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_HOOK_TIMEOUT_SECS
}

impl From<RawHook> for Hook {
    fn from(raw: RawHook) -> Self {
        match raw {
            RawHook::Line(command) => Hook {
                command,
                timeout_secs: DEFAULT_HOOK_TIMEOUT_SECS,
            },
            RawHook::Table(t) => Hook {
                command: t.command,
                timeout_secs: t.timeout_secs,
            },
        }
    }
}

/// A `[hooks]` table: at most one hook per event. An unknown key is an error naming its line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    /// `teammate_idle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teammate_idle: Option<Hook>,
    /// `task_created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_created: Option<Hook>,
    /// `task_completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_completed: Option<Hook>,
    /// `permission_requested`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_requested: Option<Hook>,
    /// `agent_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_failed: Option<Hook>,
    /// `run_finished`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_finished: Option<Hook>,
}

impl Hooks {
    /// The hook for one event, if any.
    pub fn get(&self, event: HookEvent) -> Option<&Hook> {
        match event {
            HookEvent::TeammateIdle => self.teammate_idle.as_ref(),
            HookEvent::TaskCreated => self.task_created.as_ref(),
            HookEvent::TaskCompleted => self.task_completed.as_ref(),
            HookEvent::PermissionRequested => self.permission_requested.as_ref(),
            HookEvent::AgentFailed => self.agent_failed.as_ref(),
            HookEvent::RunFinished => self.run_finished.as_ref(),
        }
    }

    /// Whether no event has a hook.
    pub fn is_empty(&self) -> bool {
        HookEvent::ALL.iter().all(|e| self.get(*e).is_none())
    }

    /// The first hook that cannot run (an empty command, a zero timeout or one over a year), as
    /// (event, why).
    pub fn problem(&self) -> Option<(HookEvent, &'static str)> {
        HookEvent::ALL.iter().find_map(|e| {
            let h = self.get(*e)?;
            if h.command.trim().is_empty() {
                Some((*e, "the command is empty"))
            } else if h.timeout_secs == 0 {
                Some((*e, "timeout_secs must be at least 1"))
            } else if h.timeout_secs > crate::MAX_DURATION_SECS {
                Some((*e, "timeout_secs must be at most one year (31536000)"))
            } else {
                None
            }
        })
    }
}

impl crate::TeamConfig {
    /// The hooks for `event` of an agent with role `role` (none: an event of no agent, e.g.
    /// the operator's): the team's first, then the role's.
    pub fn hooks_for(&self, event: HookEvent, role: Option<&str>) -> Vec<Hook> {
        let mut out: Vec<Hook> = self.hooks.get(event).cloned().into_iter().collect();
        if let Some(h) = role
            .and_then(|r| self.role_hooks.get(r))
            .and_then(|h| h.get(event))
        {
            out.push(h.clone());
        }
        out
    }

    /// The team file and every workspace file a `[hooks]`, role hook or `[notify]` command
    /// runs: what the daemon runs later, so agents' commands may only read them. A file runs
    /// when it is a simple command's program, or the script given to an interpreter (`sh x`,
    /// `python3 x`, `. x`); a file the command only writes or reads (`>> log.txt`) is not one.
    pub fn files_that_run_later(&self) -> Vec<std::path::PathBuf> {
        let mut commands: Vec<&str> = Vec::new();
        for hooks in std::iter::once(&self.hooks).chain(self.role_hooks.values()) {
            commands.extend(
                HookEvent::ALL
                    .iter()
                    .filter_map(|e| hooks.get(*e))
                    .map(|h| h.command.as_str()),
            );
        }
        commands.extend(self.notify.command.as_deref());
        // A relative source is the team file's name in the workspace (its directory).
        let mut files: Vec<std::path::PathBuf> = self
            .source
            .iter()
            .filter_map(|s| match s.is_absolute() {
                true => Some(s.clone()),
                false => s.file_name().map(|n| self.workspace.join(n)),
            })
            .collect();
        for line in commands {
            for word in programs_of(line) {
                let p = self.workspace.join(word);
                if p.is_file() {
                    files.push(p);
                }
            }
        }
        files
    }

    /// The team's own control-plane paths relative to the workspace, for `finish` and `diff`
    /// (beside the fixed list of `agent_team_worktree::is_control`): its team file and the
    /// scripts its hooks and `[notify]` run, when they are in the workspace, then
    /// `[finish] review`.
    pub fn control_files(&self) -> Vec<String> {
        let ws = &self.workspace;
        let canon = ws.canonicalize().unwrap_or_else(|_| ws.clone());
        let mut out: Vec<String> = self
            .files_that_run_later()
            .into_iter()
            .filter_map(|f| {
                let f = f.canonicalize().unwrap_or(f);
                f.strip_prefix(&canon)
                    .or_else(|_| f.strip_prefix(ws))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .collect();
        out.extend(self.finish_review.iter().cloned());
        out
    }
}

/// Programs that run the file given as their first argument that is not an option.
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "fish", "python", "python3", "node", "perl", "ruby", "php",
    "lua", "deno", "bun", "tsx", "ts-node", "source", ".", "exec", "env", "nohup", "timeout",
    "xargs", "nice",
];

/// The words of a shell line that name what runs: each simple command's program (after
/// `VAR=value` assignments) and, for an interpreter, its script. Quotes are dropped; a
/// redirection's target is never one.
fn programs_of(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for simple in line.split(|c: char| ";&|()`\n{}".contains(c)) {
        let mut words = simple
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
            .filter(|w| !w.is_empty());
        let mut program = None;
        for w in words.by_ref() {
            if w.starts_with('>') || w.starts_with('<') || w.contains('=') && !w.starts_with('-') {
                continue;
            }
            program = Some(w);
            break;
        }
        let Some(mut program) = program else { continue };
        out.push(program);
        // `sh script`, `timeout 5 python3 x.py`, `env A=1 ./x`: follow the chain.
        loop {
            let base = program.rsplit('/').next().unwrap_or(program);
            if !INTERPRETERS.contains(&base) {
                break;
            }
            let Some(next) = words.by_ref().find(|w| {
                !w.starts_with('-')
                    && !w.starts_with('>')
                    && !w.starts_with('<')
                    && !w.contains('=')
                    && !w
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == 's')
            }) else {
                break;
            };
            out.push(next);
            program = next;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_files_a_hook_runs_are_its_programs_and_scripts_not_what_it_writes() {
        assert_eq!(
            programs_of("echo \"$ID\" >> side.txt; ./scripts/check.sh --fast && sh ci/x.sh"),
            ["echo", "./scripts/check.sh", "sh", "ci/x.sh"]
        );
        assert_eq!(
            programs_of("FOO=1 timeout 30 python3 -u tools/gate.py > out.log"),
            ["timeout", "python3", "tools/gate.py"]
        );
        assert_eq!(
            programs_of(". ./env.sh | tee log"),
            [".", "./env.sh", "tee"]
        );
    }

    #[test]
    fn a_hook_is_a_line_or_a_table_and_round_trips() {
        let h: Hooks = toml::from_str(
            "task_completed = \"./check.sh\"\nrun_finished = { command = \"x\", timeout_secs = 5 }\n",
        )
        .unwrap();
        assert_eq!(
            h.task_completed,
            Some(Hook {
                command: "./check.sh".into(),
                timeout_secs: 30
            })
        );
        assert_eq!(h.run_finished.as_ref().unwrap().timeout_secs, 5);
        assert!(h.problem().is_none());
        let back: Hooks = serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        for e in HookEvent::ALL {
            assert_eq!(HookEvent::parse(e.as_str()), Some(e));
        }
        assert!(HookEvent::TaskCompleted.blocks() && !HookEvent::RunFinished.blocks());
    }
}
