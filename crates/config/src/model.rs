//! The resolved team configuration: what the daemon stores and hands to every agent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where an agent's process is placed (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// tmux if usable, else iTerm2 if running in it with its tooling, else in-process.
    #[default]
    Auto,
    /// One tmux pane per agent.
    Tmux,
    /// One iTerm2 pane per agent.
    Iterm2,
    /// A headless child process per agent with its output in a log file.
    Process,
    /// A task inside the daemon.
    InProcess,
}

impl BackendKind {
    /// The name as written in the team file and shown by `ps`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Tmux => "tmux",
            BackendKind::Iterm2 => "iterm2",
            BackendKind::Process => "process",
            BackendKind::InProcess => "in-process",
        }
    }

    /// Parses a name as written on the command line.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => BackendKind::Auto,
            "tmux" => BackendKind::Tmux,
            "iterm2" => BackendKind::Iterm2,
            "process" => BackendKind::Process,
            "in-process" => BackendKind::InProcess,
            _ => return None,
        })
    }
}

/// How tmux arranges the panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// The leader on the left, teammates stacked on the right.
    #[default]
    MainVertical,
    /// An even grid.
    Tiled,
    /// The leader on top, teammates side by side below (tmux's `main-horizontal`).
    MainHorizontal,
    /// Every pane side by side (tmux's `even-horizontal`).
    EvenHorizontal,
    /// Every pane stacked (tmux's `even-vertical`).
    EvenVertical,
    /// One tmux window per agent.
    Windows,
}

/// Whether what agents influence runs in the sandbox (docs/SECURITY.md): a mount and PID
/// namespace by bubblewrap, else the Landlock fallback. `off` is the team file's explicit
/// opt-out; `weak` accepts the fallback for agent CLI teammates too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Confine everything by the best mechanism here; without a namespace, agent CLI teammates
    /// (whose whole tree the fallback cannot hold) are refused.
    #[default]
    On,
    /// Run everything unconfined (the environment is still scrubbed).
    Off,
    /// As `on`, but agent CLI teammates also run under the fallback when no namespace works
    /// here (the team file accepts its gaps); where the namespace works, the same as `on`.
    Weak,
}

impl SandboxPaths {
    /// Whether it adds nothing.
    pub fn is_empty(&self) -> bool {
        self.write.is_empty()
            && self.read_deny.is_empty()
            && self.read.is_empty()
            && self.protect.is_empty()
            && self.network.is_empty()
    }

    /// The paths made absolute: `~/` is `home`, a relative one is in `workspace`.
    pub fn resolved(&self, workspace: &Path, home: Option<&Path>) -> SandboxPaths {
        let abs = |p: &PathBuf| match (p.strip_prefix("~"), home) {
            (Ok(rest), Some(h)) => h.join(rest),
            _ => workspace.join(p),
        };
        SandboxPaths {
            write: self.write.iter().map(abs).collect(),
            read_deny: self.read_deny.iter().map(abs).collect(),
            read: self.read.iter().map(abs).collect(),
            protect: self.protect.iter().map(abs).collect(),
            network: self.network.clone(),
        }
    }

    /// Both lists, `other`'s after these (and `other`'s network mode when it has one).
    pub fn and(mut self, other: SandboxPaths) -> SandboxPaths {
        self.write.extend(other.write);
        self.read_deny.extend(other.read_deny);
        self.read.extend(other.read);
        self.protect.extend(other.protect);
        self.network.mode = other.network.mode.or(self.network.mode);
        self.network.allow.extend(other.network.allow);
        self
    }
}

impl SandboxMode {
    /// The name as written in the team file.
    pub fn as_str(&self) -> &'static str {
        match self {
            SandboxMode::On => "on",
            SandboxMode::Off => "off",
            SandboxMode::Weak => "weak",
        }
    }

    /// Whether agents' commands run confined (`on` and `weak`).
    pub fn confines(&self) -> bool {
        *self != SandboxMode::Off
    }
}

/// `[sandbox] write = [...]`, `read = [...]` and `read_deny = [...]`: what the team file adds to the sandbox's
/// rule (docs/SECURITY.md), as absolute paths (`~/` is the home dir, others are relative to the
/// workspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SandboxPaths {
    /// More dirs agents' commands may write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<PathBuf>,
    /// More dirs agents' commands cannot see at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_deny: Vec<PathBuf>,
    /// More paths agents' commands may read (a namespace sandbox starts from nothing but the
    /// system's public files, the toolchains and the work).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<PathBuf>,
    /// More paths that run code later: read-only for agents' commands, and kept from being
    /// made where missing (beside the built-in list: `.git`, `.claude/`, `.envrc`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect: Vec<PathBuf>,
    /// `[roles.X.sandbox.network]`: a role's own network mode and the destinations it adds to
    /// the team's list (always empty for the team: its own is `TeamConfig::sandbox_network`).
    #[serde(default, skip_serializing_if = "crate::RoleNetwork::is_empty")]
    pub network: crate::RoleNetwork,
}

/// How long same-role members started together wait at most for the first one's first
/// answered request: a first model request with a long system prompt is answered within this
/// on the providers we bench; after it they start anyway.
pub const DEFAULT_SPAWN_STAGGER_MS: u64 = 5_000;

fn default_spawn_stagger_ms() -> u64 {
    DEFAULT_SPAWN_STAGGER_MS
}

/// Which model API drives an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// The OpenAI chat-completions API or any server compatible with it.
    Openai,
    /// The Anthropic messages API.
    Anthropic,
    /// No model: run each task's `run` command (offline).
    #[default]
    Exec,
    /// Claude Code (`claude`) in the agent's pane, with the team tools over MCP.
    ClaudeCode,
    /// Codex (`codex`) in the agent's pane, with the team tools over MCP.
    Codex,
    /// Qwen Code (`qwen`) in the agent's pane, with the team tools over MCP.
    QwenCode,
    /// Gemini CLI (`gemini`) in the agent's pane, with the team tools over MCP.
    GeminiCli,
    /// GitHub Copilot CLI (`copilot`) in the agent's pane, with the team tools over MCP; its
    /// model is the role's own (BYOK, OpenAI-compatible unless the role's `env` sets
    /// `COPILOT_PROVIDER_TYPE`), never GitHub's.
    Copilot,
    /// opencode (`opencode`) in the agent's pane, with the team tools over MCP; its model is
    /// the role's own, over an OpenAI-compatible API.
    Opencode,
    /// Any other MCP-capable agent CLI, started from the role's `command` template.
    Cli,
}

impl Provider {
    /// The name as written in the team file.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Exec => "exec",
            Provider::ClaudeCode => "claude-code",
            Provider::Codex => "codex",
            Provider::QwenCode => "qwen-code",
            Provider::GeminiCli => "gemini-cli",
            Provider::Copilot => "copilot",
            Provider::Opencode => "opencode",
            Provider::Cli => "cli",
        }
    }

    /// An external agent CLI rather than our own agent loop: the worker prepares its private
    /// configuration and runs it, and the CLI reaches the team through the tools its worker serves it.
    pub fn is_external(self) -> bool {
        matches!(
            self,
            Provider::ClaudeCode
                | Provider::Codex
                | Provider::QwenCode
                | Provider::GeminiCli
                | Provider::Copilot
                | Provider::Opencode
                | Provider::Cli
        )
    }

    /// The environment variable its API key is read from when the role names none
    /// (`api_key_env`); none for exec and for a `cli` template, which bring their own.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Provider::Openai | Provider::Codex | Provider::QwenCode => Some("OPENAI_API_KEY"),
            Provider::Anthropic | Provider::ClaudeCode => Some("ANTHROPIC_API_KEY"),
            Provider::GeminiCli => Some("GEMINI_API_KEY"),
            // Copilot's own model provider (BYOK) is OpenAI-compatible by default.
            Provider::Copilot => Some("OPENAI_API_KEY"),
            // opencode speaks to the role's model through an OpenAI-compatible provider.
            Provider::Opencode => Some("OPENAI_API_KEY"),
            Provider::Exec | Provider::Cli => None,
        }
    }

    /// The variable holding the API key for a role on this provider: the role's `api_key_env`,
    /// else [`Provider::default_key_env`].
    pub fn key_env(self, api_key_env: Option<&str>) -> Option<String> {
        api_key_env
            .map(str::to_string)
            .or_else(|| self.default_key_env().map(str::to_string))
    }

    /// Whether a teammate on this provider can be held to an approved plan: only our own agent
    /// loop offers `submit_plan` and withholds the writing tools while it plans. An exec agent
    /// writes no plan, and an external CLI's own tools are not ours to withhold.
    pub fn can_plan(self) -> bool {
        matches!(self, Provider::Openai | Provider::Anthropic)
    }
}

/// Why `plan_required` cannot hold for a teammate on `provider` (see [`Provider::can_plan`]).
pub fn cannot_plan_reason(provider: Provider) -> String {
    let why = match provider {
        Provider::Exec => "runs its tasks' commands and writes no plan",
        _ => "is an agent CLI whose own tools cannot be withheld until a plan is approved",
    };
    format!(
        "the {} provider {why}; plan_required is for teammates our worker drives with the \
         openai or anthropic provider",
        provider.as_str()
    )
}

/// When a dead agent is started again (SPEC §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never.
    Never,
    /// When it exits non-zero or is killed by a signal it did not ask for.
    #[default]
    OnFailure,
    /// Whenever it exits, unless it was stopped or the team finished.
    Always,
}

/// Whether teammates share the workspace or get their own git worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Everyone works in the team's directory.
    #[default]
    Shared,
    /// Each teammate gets `.agent-team/worktrees/NAME` on branch `agent-team/NAME`.
    Worktree,
}

/// A permission policy decision (SPEC §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermAction {
    /// Run without asking.
    Allow,
    /// Ask the approver first.
    Ask,
    /// Refuse.
    Deny,
}

/// Who answers `ask` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Approver {
    /// The human, in the leader's pane or with `agent-team approve/deny`.
    #[default]
    Human,
    /// The leader's model, through its `decide_permission` tool.
    Leader,
}

/// One policy rule: `bash = "ask"` or `"bash(cargo test*)" = "allow"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// The tool.
    pub tool: String,
    /// A `*` pattern on the tool's input; none means every input.
    #[serde(default)]
    pub pattern: Option<String>,
    /// What to do.
    pub action: PermAction,
}

impl TeamConfig {
    /// The environment variables that hold the team's credentials for services (every
    /// provider's usual key variable, each role's `api_key_env`, `[search] api_key_env`):
    /// what an agent's own process needs and its commands never get, unless the team gives
    /// one to them as a `[secrets]` entry (then masked like any secret).
    pub fn credential_vars(&self) -> std::collections::BTreeSet<String> {
        let providers = [Provider::Openai, Provider::Anthropic];
        let mut vars: std::collections::BTreeSet<String> = providers
            .iter()
            .filter_map(|p| p.default_key_env().map(str::to_string))
            .collect();
        vars.extend(
            self.roles
                .values()
                .filter_map(|r| r.provider.key_env(r.api_key_env.as_deref())),
        );
        vars.extend(self.search.as_ref().and_then(|s| s.api_key_env.clone()));
        // `[notify]`'s webhook URLs read from the environment: credentials too.
        vars.extend(
            [
                &self.notify.slack_webhook,
                &self.notify.discord_webhook,
                &self.notify.webhook,
            ]
            .into_iter()
            .filter_map(|u| u.as_ref()?.env_var().map(str::to_string)),
        );
        vars
    }

    /// The credential variables one agent of `role` on `provider` uses itself (its model's
    /// key, the team's search key): what an agent on another host must be sent, since it
    /// inherits nothing from the daemon there.
    pub fn agent_credential_vars(&self, role: &Role, provider: Provider) -> Vec<String> {
        let mut vars: Vec<String> = provider
            .key_env(role.api_key_env.as_deref())
            .into_iter()
            .collect();
        if let Some(k) = self.search.as_ref().and_then(|s| s.api_key_env.clone())
            && !vars.contains(&k)
        {
            vars.push(k);
        }
        vars
    }
}

/// How long the team's memory lives (`memory` in the team file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryScope {
    /// As long as the team: runs build on what earlier runs stored.
    #[default]
    Team,
    /// One run: every key is deleted when a run starts (lauren-ai's `TeamMemory`, created
    /// fresh for each `run()`).
    Run,
}

/// In which order the workers of a `collaborate` run work on the goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CollaborateOrder {
    /// All at once, each on the goal alone.
    #[default]
    Parallel,
    /// One after another in the order of `[[teammates]]`, each given the outputs so far.
    Sequential,
}

impl CollaborateOrder {
    /// The name as written in the team file.
    pub fn as_str(self) -> &'static str {
        match self {
            CollaborateOrder::Parallel => "parallel",
            CollaborateOrder::Sequential => "sequential",
        }
    }
}

/// The coordinator's prompt when the team file gives none. `{{worker_descriptions}}`,
/// `{{task}}` and `{{prior_outputs}}` are filled each round, with the team's variables.
pub const DEFAULT_COORDINATOR_PROMPT: &str = "You coordinate a team of workers. Each round you \
give the task to one worker, or end the work with the final answer.

Workers:
{{worker_descriptions}}

Task:
{{task}}

Outputs so far:
{{prior_outputs}}

Answer with exactly one of these on the first line:
ROUTE: <worker name>
DONE: <the final answer>
After a ROUTE line, write the instructions for that worker on the following lines. Say DONE \
as soon as the outputs answer the task.";

fn default_role_name() -> String {
    DEFAULT_ROLE.to_string()
}

/// The role of a member that names none, unless the team file's `default_role` says otherwise.
pub const DEFAULT_ROLE: &str = "worker";

/// The default of `max_rounds`.
pub const DEFAULT_MAX_ROUNDS: u32 = 5;

fn default_max_rounds() -> u32 {
    DEFAULT_MAX_ROUNDS
}

fn default_coordinator_prompt() -> String {
    DEFAULT_COORDINATOR_PROMPT.to_string()
}

/// A role with every field resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// The role's name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its system prompt.
    pub system_prompt: String,
    /// The model API.
    pub provider: Provider,
    /// The model name.
    pub model: String,
    /// The API base URL (OpenAI-compatible servers, proxies).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The tools it may use.
    pub tools: Vec<String>,
    /// Its permission policy, most specific rule first.
    pub permissions: Vec<PolicyRule>,
    /// When it is restarted.
    pub restart: RestartPolicy,
    /// Shared workspace or own worktree.
    pub isolation: Isolation,
    /// The most model turns before it stops.
    pub max_steps: u32,
    /// A program to run instead of the built-in worker (it must speak the protocol).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Extra environment for its process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The model's context window in tokens, for trimming old tool output.
    pub context_tokens: u32,
    /// Stream the model's answers (server-sent events) or wait for each whole.
    #[serde(default = "yes")]
    pub stream: bool,
    /// Prompt caching for its model requests (Anthropic cache breakpoints, OpenAI's
    /// `prompt_cache_key`); `cache = false` turns it off.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Where it comes from, for `agent-team roles`: `built-in`, `team file`, or the role file
    /// relative to the workspace (`.claude/agents/x.md`, `.nyzhi/agents/x.md`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Its members start read-only and must have a plan approved (`submit_plan`, then
    /// `decide_plan` or `agent-team plan approve`) before they may write or run the shell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan_required: bool,
    /// What `run` does with a worktree member's work when the run ends (`finish` on the role;
    /// none: the team's `finish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<agent_team_protocol::FinishPolicy>,
    /// `[roles.X.sandbox]`: what this role's members add to the sandbox's paths, as written
    /// (see [`SandboxPaths::resolved`]).
    #[serde(default, skip_serializing_if = "SandboxPaths::is_empty")]
    pub sandbox: SandboxPaths,
    /// The ssh destination its members run on (`host = "box"`, resolved by `ssh` itself so
    /// `~/.ssh/config` applies); none: this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `container = { image, … }`: the container its members run in (issue 66); none: no
    /// container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<agent_team_protocol::ContainerSpec>,
    /// The names its members are offered the team tools under (`tool_names = "qwen"`: Qwen
    /// Code's `task_create`, `task_update`, `agent`, ... with its schemas; see
    /// `agent_team_tools::aliases`); none: ours. Calls by any system's names are accepted
    /// either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_names: Option<String>,
}

fn yes() -> bool {
    true
}

/// A teammate the team starts with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Teammate {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Text appended to its role's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The model it uses instead of its role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider it uses instead of its role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Its colour (a colour name or `#rrggbb`); assigned from the palette when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Whether it must have a plan approved before it changes anything, over its role's
    /// `plan_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_required: Option<bool>,
    /// The ssh destination it runs on, over its role's `host`; none: its role's, else here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its working directory on its host, used as is (a remote member only); none: a git
    /// worktree of the team's repository on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The container it runs in, over its role's `container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<agent_team_protocol::ContainerSpec>,
}

/// `[ssh]`: how the daemon reaches the hosts of remote members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshSettings {
    /// The argv prefix of every ssh call (`["ssh", "-F", "CONFIG"]`); default `["ssh"]`.
    pub command: Vec<String>,
    /// `agent-team-worker` on the hosts; none: found on the host's `PATH`, else copied there
    /// when the host's `uname -sm` matches this machine's.
    pub worker: Option<String>,
    /// Where agent-team keeps its files on a host (sockets, logs, the copied worker, clones);
    /// `~/` is the host's home. Default `~/.cache/agent-team`.
    pub dir: Option<String>,
    /// Seconds an unreachable member keeps its task before it goes back to the board.
    pub grace_secs: u64,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            command: vec!["ssh".into()],
            worker: None,
            dir: None,
            grace_secs: 300,
        }
    }
}

/// The web search service `web_search` asks (`[search] provider`): each speaks its own wire
/// format, so the worker needs to know which one it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchProvider {
    /// A SearXNG instance (`GET {url}/search?q=…&format=json`), usually self-hosted: no key.
    Searxng,
    /// Brave's Web Search API (`GET {url}?q=…&count=N`, key in `X-Subscription-Token`).
    Brave,
    /// Tavily's search API (`POST {url}` with a JSON body, key as a bearer token).
    Tavily,
}

impl SearchProvider {
    /// The name as written in the team file.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchProvider::Searxng => "searxng",
            SearchProvider::Brave => "brave",
            SearchProvider::Tavily => "tavily",
        }
    }

    /// The address requests go to when `[search]` gives no `url`; none for SearXNG, which
    /// has no public instance of its own.
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            SearchProvider::Searxng => None,
            SearchProvider::Brave => Some("https://api.search.brave.com/res/v1/web/search"),
            SearchProvider::Tavily => Some("https://api.tavily.com/search"),
        }
    }

    /// The environment variable its key is read from when `[search]` gives no `api_key_env`;
    /// none for SearXNG, which takes no key.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            SearchProvider::Searxng => None,
            SearchProvider::Brave => Some("BRAVE_API_KEY"),
            SearchProvider::Tavily => Some("TAVILY_API_KEY"),
        }
    }
}

/// `[search]`, resolved: where `web_search` sends its queries. The key itself is never here,
/// only the name of the variable the worker reads it from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// The service, which decides the wire format.
    pub provider: SearchProvider,
    /// SearXNG's base address (the worker adds `/search`), or Brave's or Tavily's endpoint.
    pub url: String,
    /// The environment variable of the worker holding the key (Brave and Tavily).
    pub api_key_env: Option<String>,
}

/// Checks an ssh destination (`box`, `user@box`, `ssh://box:22`): what `ssh` takes as its
/// host argument and nothing it could read as an option or that a shell would split.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 255 {
        return Err("a host is an ssh destination of 1 to 255 characters".into());
    }
    if host.starts_with('-') {
        return Err(format!("host {host:?} would be read by ssh as an option"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.@:/[]%".contains(*c)))
    {
        return Err(format!(
            "host {host:?} has {c:?}: give the name of an ssh destination (a `Host` of ~/.ssh/config, user@name)"
        ));
    }
    Ok(())
}

/// Whether `c` is a colour agent-team can show everywhere: a plain colour name (`cyan`,
/// `brightred`) or `#rrggbb`.
pub fn valid_color(c: &str) -> bool {
    match c.strip_prefix('#') {
        Some(hex) => hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !c.is_empty() && c.len() <= 20 && c.bytes().all(|b| b.is_ascii_lowercase()),
    }
}

/// A task of the initial board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Its key (given, or `task-N` by position).
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// The command the exec provider runs.
    #[serde(default)]
    pub run: Option<String>,
    /// Keys of tasks that must complete first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Assign it to this agent at creation.
    #[serde(default)]
    pub assign: Option<String>,
}

/// The whole resolved team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamConfig {
    /// The team's name.
    pub name: String,
    /// The default goal.
    #[serde(default)]
    pub goal: Option<String>,
    /// The pane backend asked for.
    pub backend: BackendKind,
    /// The tmux layout.
    pub layout: Layout,
    /// The most teammates at once.
    pub max_teammates: usize,
    /// Who answers permission requests.
    pub approver: Approver,
    /// Seconds before an unanswered permission request is denied.
    pub permission_timeout_secs: u64,
    /// Milliseconds at most, from the first one's start, that members of one role started
    /// together (or spawned while the first has no answer yet) wait for the first of them to
    /// have its first model request answered, so theirs read the prefix it cached
    /// (`spawn_stagger_ms`; 0 starts them all at once). They start as soon as it is answered.
    #[serde(default = "default_spawn_stagger_ms")]
    pub spawn_stagger_ms: u64,
    /// Seconds the end of a run waits, once the board is done, for teammates still in a turn
    /// (their last reports) before it goes ahead (`end_grace`, default 30).
    #[serde(default = "default_end_grace")]
    pub end_grace_secs: u64,
    /// What `run` does with each worktree teammate's work when the run ends (`finish`, default
    /// `keep`); a role's own `finish` wins.
    #[serde(default)]
    pub finish: agent_team_protocol::FinishPolicy,
    /// `[finish] review`: paths (prefixes, relative to the workspace) that are the team's
    /// control plane beside the fixed list: `finish --merge` lands a change to one only when
    /// the operator accepts it, and `diff` lists them first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish_review: Vec<String>,
    /// Every role by name (built-ins included).
    pub roles: BTreeMap<String, Role>,
    /// The teammates to start with.
    pub teammates: Vec<Teammate>,
    /// The initial board, in an order where blockers come first.
    pub tasks: Vec<TaskSpec>,
    /// Where agents work (the team file's directory).
    pub workspace: PathBuf,
    /// The team file it came from, if any.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// Where the tmux backend puts the panes (set by `up`).
    #[serde(default)]
    pub tmux: Option<TmuxPlace>,
    /// Whether task commands are confined (`sandbox = "off"` opts out).
    #[serde(default)]
    pub sandbox: SandboxMode,
    /// The team file's additions to the sandbox's paths (`[sandbox] write`, `read_deny`).
    #[serde(default, skip_serializing_if = "crate::model::SandboxPaths::is_empty")]
    pub sandbox_paths: SandboxPaths,
    /// `[sandbox.network]`: how agents' sandboxed processes reach the network.
    #[serde(default, skip_serializing_if = "crate::SandboxNetwork::is_default")]
    pub sandbox_network: crate::SandboxNetwork,
    /// Whether `up` on tmux opens the live board (`agent-team board`) in a pane beside the
    /// leader (`board = false` turns it off).
    #[serde(default = "yes")]
    pub board: bool,
    /// The daemon's limits on its clients (`[limits]`).
    #[serde(default)]
    pub limits: Limits,
    /// `[ssh]`: how remote members' hosts are reached.
    #[serde(default)]
    pub ssh: SshSettings,
    /// `[search]`: the service `web_search` asks; none when the team file has no `[search]`
    /// (the tool then answers how to configure one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSettings>,
    /// The values of `{{KEY}}` placeholders: `[variables]`, then `--var` over them, and
    /// `date` as fixed at start (see the `vars` module for where each text is filled).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The names of the team's secrets and where their values come from; never a value
    /// (those reach task commands without the store: docs/SECURITY.md).
    #[serde(default)]
    pub secrets: BTreeMap<String, crate::SecretSource>,
    /// How the team works: the leader's model with tools, a coordinator routing rounds to
    /// one worker, or every worker at once and a synthesis (`strategy`, `--strategy`).
    #[serde(default)]
    pub strategy: agent_team_protocol::TeamStrategy,
    /// The most coordinator rounds before the run ends without success.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
    /// The coordinator's prompt template (see [`DEFAULT_COORDINATOR_PROMPT`]).
    #[serde(default = "default_coordinator_prompt")]
    pub coordinator_prompt: String,
    /// Whether `collaborate` workers work at once or one after another.
    #[serde(default)]
    pub collaborate_order: CollaborateOrder,
    /// Whether the team's memory is kept across runs or fresh for each.
    #[serde(default)]
    pub memory: MemoryScope,
    /// The role of a member that names none (a teammate of the file, a spawn): Nyzhi's
    /// `default_role`; `worker` unless the file says otherwise.
    #[serde(default = "default_role_name")]
    pub default_role: String,
    /// The model `[defaults]` gave the roles that name none of their own (what
    /// `defaults.model` replaces at run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Settings changed at run time (`agent-team config set`, `set_config`), by key
    /// (`role.NAME.model`, …; see [`crate::overrides`]): kept with the team over the file's
    /// values until reset, and applied by [`TeamConfig::effective`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
    /// The team's budget (`budget_tokens` / `budget_usd` at the top level).
    #[serde(default)]
    pub budget: agent_team_protocol::BudgetLimit,
    /// Each role's budget (`budget_tokens` / `budget_usd` in `[roles.X]`),
    /// only for roles that set one.
    #[serde(default)]
    pub role_budgets: BTreeMap<String, agent_team_protocol::BudgetLimit>,
    /// The team file's `[prices]`, by model name (over [`crate::BUILTIN_PRICES`]).
    #[serde(default)]
    pub prices: BTreeMap<String, crate::Price>,
    /// `[notify]`.
    #[serde(default)]
    pub notify: crate::Notify,
    /// The team's `[hooks]`, for every agent's events (see the `hooks` module).
    #[serde(default, skip_serializing_if = "crate::Hooks::is_empty")]
    pub hooks: crate::Hooks,
    /// Each role's hooks (`[roles.X.hooks]`, a role file's `hooks:`), only for roles that set
    /// some; they run in addition to the team's for events of agents with that role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_hooks: BTreeMap<String, crate::Hooks>,
    /// `[telemetry]`: OpenTelemetry export (docs/TELEMETRY.md).
    #[serde(default, skip_serializing_if = "crate::Telemetry::is_empty")]
    pub telemetry: crate::Telemetry,
    /// Where each text field came from, for error messages (not stored).
    #[serde(skip)]
    pub origins: crate::Origins,
    /// What was read but not understood, each naming its file (a role file's tool with no
    /// counterpart here); `up`, `run` and `roles` print them. Not stored.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The daemon's limits on its clients (`[limits]` in the team file; docs/SECURITY.md has the
/// table). Each is refused with a structured error when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Seconds a new connection has to send its hello before it is closed.
    pub hello_timeout_secs: u64,
    /// The most connections at once; at the cap, the oldest connection that has not said hello
    /// yet is closed to make room, and with none a new one is refused (`limit_exceeded`).
    pub max_connections: usize,
    /// The most bytes of replies and pushes a client may leave unread before it is cut off.
    pub max_unread_bytes: usize,
    /// Days read messages, finished tasks and events are kept; the daemon compacts older ones
    /// every few hours (`agent-team gc` does it at once). 0 keeps everything.
    pub retention_days: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hello_timeout_secs: 5,
            max_connections: 1024,
            max_unread_bytes: 16 * 1024 * 1024,
            retention_days: 7,
        }
    }
}

/// The tmux server, session and (with `--here`) window of the team's panes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmuxPlace {
    /// The server's socket.
    pub socket: PathBuf,
    /// The session.
    pub session: String,
    /// A window of the user's own session (`up --here`); none means a private server.
    #[serde(default)]
    pub window: Option<String>,
}

impl TeamConfig {
    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// This configuration with `role` as its only role: what a teammate starts from (the other
    /// roles are for the leader to spawn; the built-in ones alone are ~18 KB of prompts).
    pub fn with_only_role(&self, role: &str) -> TeamConfig {
        let mut config = self.clone();
        config.roles.retain(|name, _| name == role);
        config
    }

    /// What teammate `name` of role `role` reads of the configuration: its own role
    /// ([`TeamConfig::with_only_role`]) and its own `[[teammates]]` entry, not every member's
    /// (a thousand-member team file's entries, serialized and parsed again on every start).
    pub fn for_teammate(&self, name: &str, role: &str) -> TeamConfig {
        let mut config = self.with_only_role(role);
        config.teammates.retain(|t| t.name == name);
        config
    }

    /// The ssh destinations the team file names (its teammates' and roles' `host`): where the
    /// leader may place a teammate (the operator may name any).
    pub fn hosts(&self) -> std::collections::BTreeSet<&str> {
        self.teammates
            .iter()
            .filter_map(|t| t.host.as_deref())
            .chain(self.roles.values().filter_map(|r| r.host.as_deref()))
            .collect()
    }

    /// Whether agent `name` of role `role` must have its plan approved before it changes
    /// anything: its `[[teammates]]` entry's `plan_required` when it says, else its role's.
    /// Never the leader.
    pub fn plan_required(&self, name: &str, role: &str) -> bool {
        if name == agent_team_protocol::names::LEADER {
            return false;
        }
        let member = self
            .teammates
            .iter()
            .find(|t| t.name == name && t.role == role);
        let provider = member
            .and_then(|t| t.provider)
            .or_else(|| self.role(role).map(|r| r.provider));
        // Only our own agent loop can plan (the team file refuses plan_required elsewhere).
        provider.is_some_and(Provider::can_plan)
            && member
                .and_then(|t| t.plan_required)
                .unwrap_or_else(|| self.role(role).is_some_and(|r| r.plan_required))
    }

    /// The price of `model` (see [`crate::price_for`]).
    pub fn price(&self, model: &str) -> Option<crate::Price> {
        crate::price_for(&self.prices, model)
    }
}

/// How long the end of a run waits for teammates still in a turn when the team file does not
/// say: 30 s.
pub const DEFAULT_END_GRACE_SECS: u64 = 30;

fn default_end_grace() -> u64 {
    DEFAULT_END_GRACE_SECS
}
