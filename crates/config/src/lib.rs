//! The team configuration: `agent-team.toml` (SPEC §4), role files in `.claude/agents/`,
//! `.nyzhi/agents/` and `.agent-team/agents/`, and the built-in roles, resolved into one
//! [`TeamConfig`] that the daemon stores and every agent reads. Also the built-in offline demo
//! team.

mod builtin;
mod container;
pub use container::{check_container, memory_bytes};
mod demo;
mod hooks;
mod model;
mod network;
mod notify;
pub use network::{NetworkMode, RoleNetwork, SandboxNetwork, endpoint, is_loopback};
pub use notify::{HIDDEN_URL, NOTIFY_URL_KEYS, NotifyUrl, hide_notify_urls};
pub mod overrides;
pub mod policy;
mod telemetry;
pub use telemetry::Telemetry;
mod teamfile;
pub use teamfile::check_strategy;
pub mod triggers;
mod usage;
mod vars;

pub use agent_team_protocol::TeamStrategy;
pub use builtin::{
    BUILTIN_SOURCE, DECIDE_PERMISSION, LEADER_TOOLS, MEMORY_SET, NYZHI_GIT_TOOLS, READ_ONLY_ROLES,
    READ_ONLY_TOOLS, ROLE_DIRS, TEAM_FILE_SOURCE, TEAMMATE_TOOLS, WORKSPACE_TOOLS, builtin_roles,
    claude_tool, is_known_tool, nyzhi_tool,
};
pub use demo::demo_team;
/// The longest duration a team file may give (one year, in seconds): longer ones are a
/// configuration error naming the field, so no deadline computed from them can overflow.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 60 * 60;
pub use hooks::{DEFAULT_HOOK_TIMEOUT_SECS, Hook, HookEvent, Hooks};
pub use model::*;
pub use usage::{ANTHROPIC_CACHE_WRITE, BUILTIN_PRICES, Notify, PICO_PER_USD, Price, price_for};
pub use vars::{
    BUILTIN_VARIABLES, CALLER_BUILTINS, LineMasker, MIN_MASKED_SECRET, Origin, Origins,
    PLAIN_ENV_PREFIX, SecretSource, Secrets, SecretsFileError, apply_variables, apply_variables_on,
    check_key, check_var_key, escape_placeholders, fill_coordinator_prompt, fill_goal, fill_prompt,
    fill_task_text, is_valid_key, local_date, parse_assignment, parse_var_assignment, placeholders,
    resolve_secrets, team_goal,
};

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a team or role file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: Option<usize>,
    /// The column, from 1.
    pub col: Option<usize>,
    /// The field concerned.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An error about the command line (a `--var`, a goal given as an argument) has no file.
        if !self.file.as_os_str().is_empty() {
            write!(f, "{}", self.file.display())?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
                if let Some(c) = self.col {
                    write!(f, ":{c}")?;
                }
            }
            write!(f, ": ")?;
        }
        if let Some(field) = &self.field
            && !self.message.contains(field.as_str())
        {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Reads and resolves a team file.
pub fn load(path: &Path) -> Result<TeamConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        col: None,
        field: None,
        message: format!("cannot read: {e}"),
    })?;
    teamfile::parse_team_file(path, &text)
}

/// A team with no file: built-in roles only, working in `workspace`.
pub fn empty_team(name: &str, workspace: &Path) -> TeamConfig {
    TeamConfig {
        name: name.to_string(),
        goal: None,
        backend: BackendKind::Auto,
        layout: Layout::MainVertical,
        max_teammates: 10,
        approver: Approver::Human,
        permission_timeout_secs: 300,
        end_grace_secs: DEFAULT_END_GRACE_SECS,
        spawn_stagger_ms: crate::model::DEFAULT_SPAWN_STAGGER_MS,
        finish: Default::default(),
        finish_review: Vec::new(),
        roles: builtin_roles(),
        teammates: vec![],
        tasks: vec![],
        workspace: workspace.to_path_buf(),
        source: None,
        tmux: None,
        sandbox: SandboxMode::On,
        sandbox_paths: SandboxPaths::default(),
        sandbox_network: Default::default(),
        board: true,
        limits: Limits::default(),
        ssh: Default::default(),
        search: None,
        variables: Default::default(),
        secrets: Default::default(),
        strategy: Default::default(),
        max_rounds: DEFAULT_MAX_ROUNDS,
        coordinator_prompt: DEFAULT_COORDINATOR_PROMPT.to_string(),
        collaborate_order: CollaborateOrder::Parallel,
        memory: Default::default(),
        default_role: DEFAULT_ROLE.to_string(),
        default_model: None,
        overrides: Default::default(),
        budget: Default::default(),
        role_budgets: Default::default(),
        prices: Default::default(),
        notify: Default::default(),
        telemetry: Default::default(),
        hooks: Default::default(),
        role_hooks: Default::default(),
        origins: Origins::default(),
        warnings: Vec::new(),
    }
}

/// A team with no file that still takes the workspace's role files (`.claude/agents`,
/// `.nyzhi/agents`, `.agent-team/agents`) over the built-in roles, with their warnings: what
/// `agent-team roles` lists where there is no team file.
pub fn workspace_team(name: &str, workspace: &Path) -> Result<TeamConfig, ConfigError> {
    let mut cfg = empty_team(name, workspace);
    let (roles, warnings) = teamfile::workspace_roles(workspace)?;
    cfg.roles = roles;
    cfg.warnings = warnings;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
