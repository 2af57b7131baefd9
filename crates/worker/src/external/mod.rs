//! External agent CLIs as teammates (Claude Code, Codex, Qwen Code, or any MCP-capable command):
//! the worker reads the agent's role once, writes the CLI's private configuration (its own
//! `HOME` and config dir under the team's state, never the user's), registers
//! `agent-team-bridge` as the CLI's `team` MCP server and hooks for this launch only, serves the
//! team's tools to it ([`ToolHost`]), and runs the CLI in the agent's pane with the role prompt,
//! the team context and the first instruction as its first input. The CLI then reaches the team
//! only through that server, which is the agent's one daemon connection.
//!
//! [`plan`] is pure (argv, environment, files), so each adapter's launch command is tested
//! without the CLI; [`run`] carries a plan out.

use crate::session::Session as AgentSession;
use crate::{AgentEnv, AgentError};
use agent_team_config::{Provider, Role, TeamConfig};
use agent_team_pane::env;
use agent_team_protocol::Request;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What it takes to start one external CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program (a name looked up on `PATH`, or a path).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, over the worker's own (which loses the agent's secret).
    pub env: Vec<(String, String)>,
    /// Files written (mode 0600, directories 0700) before it starts: path and contents.
    pub files: Vec<(PathBuf, String)>,
    /// Where it runs.
    pub cwd: PathBuf,
    /// A file given to it as its standard input (a one-shot CLI that reads its prompt there);
    /// `None`: none headless, the terminal's otherwise.
    pub stdin: Option<PathBuf>,
    /// How its worker serves it the team's tools.
    pub serving: ToolServing,
}

/// How the worker serves the team's tools to one launch of a CLI: the CLI starts
/// `agent-team-bridge mcp SOCKET` as its MCP server, which carries the session to this socket,
/// where the worker's [`ToolHost`] answers (so no second whole `agent-team` runs beside it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolServing {
    /// The socket the CLI's bridge connects to, in its private home.
    pub socket: PathBuf,
    /// Where the CLI's hooks are answered, when it has hooks.
    pub hook_socket: Option<PathBuf>,
    /// The CLI runs in a pane: when it is idle, its messages are typed there.
    pub interactive: bool,
    /// A file whose text is typed into the pane once the CLI has listed the tools (read and
    /// removed as serving starts).
    pub first_input_file: Option<PathBuf>,
}

/// What serves the team's tools to a CLI from its worker: the MCP server, which lives in a
/// crate that depends on this one, so each binary hands it to [`crate::run_agent`].
pub trait ToolHost: Send + Sync {
    /// Starts serving `serving` on the current runtime, through the agent's own `session` (the
    /// worker's one connection to the team); `home` is the CLI's private home. Serving ends
    /// when the guard is dropped.
    fn start(
        &self,
        session: Arc<AgentSession>,
        home: &Path,
        serving: &ToolServing,
    ) -> Result<ToolsGuard, AgentError>;
}

/// Ends a [`ToolHost`]'s serving (its tasks) when dropped.
pub struct ToolsGuard(pub Vec<tokio::task::AbortHandle>);

impl Drop for ToolsGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// The `agent-team-bridge` binary beside `exe` (they are built, installed and copied to a
/// remote host together).
pub fn bridge_exe(exe: &Path) -> PathBuf {
    exe.with_file_name("agent-team-bridge")
}

mod claude_code;
mod codex;
mod conversation;
mod copilot;
mod gemini_cli;
mod opencode;
mod qwen_code;
mod template;

pub use claude_code::{ClaudeTools, claude_tools};
pub use codex::codex_judged;
pub use conversation::{Conversation, RESUMED_INPUT, SESSION_FILE, session_for};
pub use gemini_cli::gemini_judged;
pub use qwen_code::qwen_judged;

/// Everything agent-team knows about one agent CLI: how to install and find it, what to seed
/// in its private home, how to register our MCP server and its hooks for one launch, how to
/// wire its model, and how it resumes a session. One file per CLI implements it; a CLI joins
/// with that file and one line in `ADAPTERS`.
pub trait CliAdapter: Sync {
    /// The provider (team-file name) this adapter serves.
    fn provider(&self) -> Provider;
    /// The program's usual name on `PATH` (empty when a role's `command` must name it).
    fn program(&self) -> &'static str;
    /// The npm package that provides it, for the hint when it is missing.
    fn npm_package(&self) -> Option<&'static str> {
        None
    }
    /// The version the suite runs it at (`None`: any); another is run with a warning.
    fn tested_version(&self) -> Option<&'static str> {
        None
    }
    /// The directory under the CLI's home where it keeps its transcripts, when a launch can
    /// start a conversation under our id and resume it ([`session_for`]); `None` otherwise.
    fn transcripts_dir(&self) -> Option<&'static str> {
        None
    }
    /// Whether `file_name` (under [`CliAdapter::transcripts_dir`]) is the transcript of the
    /// conversation `id`.
    fn is_transcript_of(&self, file_name: &str, id: &str) -> bool {
        file_name.strip_suffix(".jsonl") == Some(id)
    }
    /// Whether the CLI's transcript of the conversation `id` is under `dir` (its
    /// [`CliAdapter::transcripts_dir`]): a file [`CliAdapter::is_transcript_of`] accepts,
    /// unless the CLI keeps it at a path of its own.
    fn has_transcript(&self, dir: &Path, id: &str) -> bool {
        conversation::transcript_exists(dir, &|name| self.is_transcript_of(name, id), 5)
    }
    /// The conversation an earlier launch in `home` held, for a resume: the id recorded in
    /// its [`SESSION_FILE`], unless the CLI names its sessions itself and it is found elsewhere.
    fn recorded_session(&self, home: &Path) -> Option<String> {
        std::fs::read_to_string(home.join(SESSION_FILE))
            .ok()
            .map(|s| s.trim().to_string())
    }
    /// Whether `id` (read back from the session file) is a session id of this CLI's: one of
    /// our UUIDs, unless the CLI names its sessions itself.
    fn is_session_id(&self, id: &str) -> bool {
        conversation::is_session_id(id)
    }
    /// Whether the CLI's hooks answer over the launch's hook socket (so its worker listens
    /// there).
    fn hooked(&self) -> bool {
        true
    }
    /// Whether the first instruction is typed into the pane once the team tools are listed
    /// (instead of given on the command line).
    fn types_first_input(&self, _cx: &LaunchCtx<'_>) -> bool {
        false
    }
    /// What its pre-tool hook prints for a verdict on a call (`None`: nothing, and the call
    /// goes ahead). Claude Code's shape (`hookSpecificOutput.permissionDecision`) unless the
    /// CLI reads another.
    fn pre_tool_answer(&self, allow: bool, reason: &str) -> Option<String> {
        Some(claude_code::hook_answer(allow, reason))
    }
    /// Whether its pre-tool hook judges a call of `tool` (else it prints nothing and the call
    /// goes ahead): every call its hook is given, for the CLIs whose hooks have a matcher.
    fn hook_judges(&self, _tool: &str) -> bool {
        true
    }
    /// Adds the CLI's own files, environment and arguments to `launch` (which already holds
    /// the program, the MCP configuration and the prompt file).
    fn configure(&self, cx: &LaunchCtx<'_>, launch: &mut Launch) -> Result<(), AgentError>;
    /// Where the words after the first of a role's `command` go among `args`: before the
    /// prompt, which most CLIs take last.
    fn extra_args_at(&self, args: &[String]) -> usize {
        args.len().saturating_sub(1)
    }
}

/// The version of each agent CLI agent-team is tested with, said once: each adapter's
/// [`CliAdapter::tested_version`], the versions the end-to-end tests and the bench install,
/// what `agent-team doctor` compares an installed CLI with, and the README's table (`cargo
/// xtask invariants` checks it).
pub mod tested {
    /// Claude Code (`@anthropic-ai/claude-code`).
    pub const CLAUDE_CODE: &str = "2.1.332";
    /// Codex (`@openai/codex`).
    pub const CODEX: &str = "0.171.0";
    /// Qwen Code (`@qwen-code/qwen-code`; Node 22 or later).
    pub const QWEN_CODE: &str = "0.24.4";
    /// Gemini CLI (`@google/gemini-cli`).
    pub const GEMINI_CLI: &str = "0.61.0";
    /// GitHub Copilot CLI (`@github/copilot`).
    pub const COPILOT: &str = "1.0.102";
    /// opencode (`opencode-ai`).
    pub const OPENCODE: &str = "1.18.33";
}

/// Every agent CLI agent-team can run, one adapter each.
static ADAPTERS: &[&dyn CliAdapter] = &[
    &claude_code::ClaudeCode,
    &codex::Codex,
    &qwen_code::QwenCode,
    &gemini_cli::GeminiCli,
    &copilot::Copilot,
    &opencode::Opencode,
    &template::Template,
];

/// Every adapter, in the order the README's table lists the CLIs (the `cli` template last).
pub fn adapters() -> &'static [&'static dyn CliAdapter] {
    ADAPTERS
}

/// The adapter of `provider`; `None` for a provider that is not an external CLI.
pub fn adapter(provider: Provider) -> Option<&'static dyn CliAdapter> {
    ADAPTERS.iter().copied().find(|a| a.provider() == provider)
}

/// The adapter of the provider named `name` (as in a team file).
pub fn adapter_named(name: &str) -> Option<&'static dyn CliAdapter> {
    ADAPTERS
        .iter()
        .copied()
        .find(|a| a.provider().as_str() == name)
}

/// The version of the npm-installed CLI at `exe`: the `version` of the nearest `package.json`
/// above its real path that names the adapter's package. `None` when it is not an npm install
/// of that package (a wrapper, a build of one's own).
pub fn installed_version(cli: &dyn CliAdapter, exe: &Path) -> Option<String> {
    let package = cli.npm_package()?;
    let real = exe.canonicalize().ok()?;
    real.ancestors().skip(1).take(8).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["name"] == package).then(|| v["version"].as_str().map(String::from))?
    })
}

/// The version of the CLI at `exe`, for `agent-team doctor`: its npm package's
/// ([`installed_version`]), else the first version number (`1.2.3`, `v1.2.3-beta.1`) it prints
/// for `--version` within [`VERSION_TIMEOUT`]. `None` when neither tells.
pub fn reported_version(cli: &dyn CliAdapter, exe: &Path) -> Option<String> {
    installed_version(cli, exe).or_else(|| version_output(exe))
}

/// How long a CLI's `--version` may take (a Node CLI starts in about a second); one that
/// takes longer is killed and its version is unknown.
pub const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `exe --version` prints, as a version number; the program is killed after
/// [`VERSION_TIMEOUT`].
fn version_output(exe: &Path) -> Option<String> {
    use std::process::{Command, Stdio};
    let child = Command::new(exe)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pid = i32::try_from(child.id()).ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(VERSION_TIMEOUT) {
        Ok(out) => version_in(&String::from_utf8_lossy(&out.ok()?.stdout)),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            None
        }
    }
}

/// The first word of `text` that is a version number: three dot-separated numbers, maybe after
/// a `v` and before a `-pre` or `+build` part (`codex-cli 0.171.0`, `2.1.332 (Claude Code)`).
pub fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || "(),;".contains(c))
        .map(|w| w.trim_end_matches('.'))
        .map(|w| w.strip_prefix('v').unwrap_or(w))
        .find(|w| {
            let core = w.split(['-', '+']).next().unwrap_or_default();
            let parts: Vec<&str> = core.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(String::from)
}

/// The one-line warning for a CLI at `exe` whose installed version is not the one the suite
/// runs; `None` when it is, or when its version cannot be told. It is run either way.
pub fn untested_version(provider: Provider, exe: &Path) -> Option<String> {
    let cli = adapter(provider)?;
    let tested = cli.tested_version()?;
    let found = installed_version(cli, exe)?;
    (found != tested).then(|| {
        format!(
            "{} {found} is not the version agent-team is tested with ({tested}); running it anyway",
            cli.npm_package().unwrap_or(cli.program())
        )
    })
}

/// What one launch plan is made from: the agent, its role and team, its private home, and
/// what the shared part of the plan decided (work dir, first input, session).
pub struct LaunchCtx<'a> {
    /// The agent being started.
    pub agent: &'a AgentEnv,
    /// Its team's configuration.
    pub config: &'a TeamConfig,
    /// Its role, with the member's own overrides applied.
    pub role: &'a Role,
    /// Its private CLI home ([`agent_team_paths::TeamPaths::cli_home`]).
    pub home: &'a Path,
    /// The `agent-team-bridge` binary the CLI starts as its MCP server and hooks.
    pub bridge: &'a Path,
    /// No terminal shows the CLI's screen (the `process` backend): one-shot modes are used.
    pub headless: bool,
    /// The conversation this launch holds, for CLIs with session ids.
    pub session: Option<&'a Conversation>,
    /// Where the CLI runs.
    pub cwd: PathBuf,
    /// Its first input (or, resumed, the instruction to carry on).
    pub prompt: String,
}

impl LaunchCtx<'_> {
    /// The MCP configuration file (`{"mcpServers": {"team": …}}`).
    pub fn mcp_file(&self) -> PathBuf {
        self.home.join("mcp.json")
    }
    /// The file holding the first input.
    pub fn prompt_file(&self) -> PathBuf {
        self.home.join("prompt.md")
    }
    /// Where the worker answers the CLI's hooks.
    pub fn hook_socket(&self) -> PathBuf {
        self.home.join("hook.sock")
    }
    /// The file the team server types into the pane once the tools are listed.
    pub fn first_input_file(&self) -> PathBuf {
        self.home.join("first-input.md")
    }
    /// The variable holding the role's API key (its `api_key_env`, else the provider's usual).
    pub fn key_var(&self) -> Option<String> {
        self.role.provider.key_env(self.role.api_key_env.as_deref())
    }
    /// The role's API key, from the worker's environment.
    pub fn key(&self) -> Option<String> {
        self.key_var().and_then(|v| std::env::var(v).ok())
    }
    /// The team's model gateway for this launch (issue 65), when the daemon registered the
    /// agent there: its base URL for the role's upstream, and the agent's token.
    pub fn gateway(&self) -> Option<(String, String)> {
        let url = std::env::var(env::GATEWAY_URL).ok()?;
        let token = std::env::var(env::GATEWAY_TOKEN).ok()?;
        Some((url, token))
    }
    /// The model's base URL the CLI is given: the gateway's, else the role's `base_url`.
    pub fn model_url(&self) -> Option<String> {
        self.gateway()
            .map(|(url, _)| url)
            .or_else(|| self.role.base_url.clone())
    }
    /// The key the CLI is given: the agent's gateway token (never a real key), else the
    /// role's key.
    pub fn model_key(&self) -> Option<String> {
        self.gateway()
            .map(|(_, token)| token)
            .or_else(|| self.key())
    }
    /// The `agent-team-bridge hook EVENT [FLAGS…] --socket …` command line a CLI's hook runs
    /// (the pre-tool hook is told which CLI it answers, for the shape of its answer).
    pub fn hook_command(&self, event: &str, flags: &[&str]) -> String {
        let mut words = vec![
            shell_word(&self.bridge.display().to_string()),
            "hook".into(),
            event.into(),
        ];
        words.extend(flags.iter().map(|f| f.to_string()));
        words.extend([
            "--socket".into(),
            shell_word(&self.hook_socket().display().to_string()),
        ]);
        words.join(" ")
    }
    /// The program a CLI starts as its `team` MCP server: the bridge to its worker.
    pub fn mcp_command(&self) -> String {
        self.bridge.display().to_string()
    }
    /// The bridge's arguments: the socket its worker serves the tools on.
    pub fn mcp_args(&self) -> Vec<String> {
        vec![
            "mcp".into(),
            self.home.join("mcp.sock").display().to_string(),
        ]
    }
    /// How the worker serves this launch: where the hooks are answered and what is typed
    /// first when the CLI has the tools.
    pub fn serving(&self) -> ToolServing {
        let adapter = adapter(self.role.provider);
        ToolServing {
            socket: self.home.join("mcp.sock"),
            hook_socket: adapter
                .is_some_and(|a| a.hooked())
                .then(|| self.hook_socket()),
            interactive: !self.headless,
            first_input_file: adapter
                .is_some_and(|a| a.types_first_input(self))
                .then(|| self.first_input_file()),
        }
    }
    /// The MCP configuration that starts the bridge to this agent's tools (Claude Code's
    /// `--mcp-config` shape, also read by the `cli` provider's commands).
    pub fn mcp_servers(&self) -> serde_json::Value {
        json!({"mcpServers": {"team": {
            "command": self.mcp_command(),
            "args": self.mcp_args(),
        }}})
    }
}

/// Everything that starts `role`'s CLI for `agent`: `home` is the agent's private CLI home
/// ([`agent_team_paths::TeamPaths::cli_home`]), `bridge` the `agent-team-bridge` binary the CLI
/// reaches its worker's team tools and hooks through. `headless` when there is no terminal to show the CLI's own screen (the `process`
/// backend): the CLIs that have a one-shot mode use it. `session` is the conversation the
/// launch holds ([`session_for`]); a resumed one is told to carry on instead of being given
/// its first instruction again. The CLI's own part is its adapter's ([`CliAdapter::configure`]).
pub fn plan(
    agent: &AgentEnv,
    config: &TeamConfig,
    role: &Role,
    home: &Path,
    bridge: &Path,
    headless: bool,
    session: Option<&Conversation>,
) -> Result<Launch, AgentError> {
    let Some(cli) = adapter(role.provider) else {
        return Err(AgentError::Config(format!(
            "the {} provider is not an external CLI",
            role.provider.as_str()
        )));
    };
    let cx = LaunchCtx {
        agent,
        config,
        role,
        home,
        bridge,
        headless,
        session,
        cwd: agent
            .workspace
            .clone()
            .unwrap_or_else(|| config.workspace.clone()),
        prompt: match session {
            Some(Conversation::Resume(_)) => RESUMED_INPUT.to_string(),
            _ => first_input(agent, config, role),
        },
    };
    let (mcp_file, prompt_file) = (cx.mcp_file(), cx.prompt_file());
    let mut launch = Launch {
        program: cli.program().to_string(),
        args: Vec::new(),
        env: vec![
            (env::MCP_CONFIG.into(), mcp_file.display().to_string()),
            (env::PROMPT_FILE.into(), prompt_file.display().to_string()),
        ],
        files: vec![
            (mcp_file, pretty(&cx.mcp_servers())),
            (prompt_file, cx.prompt.clone()),
        ],
        cwd: cx.cwd.clone(),
        stdin: None,
        serving: cx.serving(),
    };
    cli.configure(&cx, &mut launch)?;
    if role.provider != Provider::Cli
        && let Some((first, extra)) = role.command.as_deref().and_then(|c| c.split_first())
    {
        // The role's `command` names the program (a path, or another name); the words after
        // the first are extra arguments.
        launch.program = first.clone();
        let at = cli.extra_args_at(&launch.args);
        launch.args.splice(at..at, extra.iter().cloned());
    }
    launch
        .env
        .extend(role.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(launch)
}

/// The npm package that provides a provider's CLI, for the error when it is missing.
pub fn npm_package(p: Provider) -> Option<&'static str> {
    adapter(p).and_then(|a| a.npm_package())
}

/// The program a role's CLI runs: the role's `command` (its first word), else the provider's
/// usual name on `PATH`.
pub fn program(role: &Role) -> Option<String> {
    if let Some(first) = role.command.as_ref().and_then(|c| c.first()) {
        return Some(first.clone());
    }
    adapter(role.provider)
        .map(|a| a.program())
        .filter(|p| !p.is_empty())
        .map(String::from)
}

/// Where `program` would be found (a path with a `/` is taken as it is).
pub fn find_program(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    std::env::split_paths(path_var.unwrap_or_default())
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The CLI's timeout for the permission hook: a day, so the daemon's permission timeout (which
/// denies a request nobody decided) is the one that applies.
pub(crate) const PERMISSION_HOOK_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// `s` quoted for `sh` when it needs it.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@=:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The first input: the role's prompt, who the agent is and how it reaches the team (a leader
/// is told to lead: start teammates, put tasks on the board, finish the team).
pub fn first_input(agent: &AgentEnv, config: &TeamConfig, role: &Role) -> String {
    let mut s = String::new();
    if !role.system_prompt.trim().is_empty() {
        s.push_str(role.system_prompt.trim());
        s.push_str("\n\n");
    }
    if agent.name == agent_team_protocol::names::LEADER {
        // A CLI leading the team works as our own leader does, from its own agent.
        s.push_str(&format!(
            "Your name is {name}. You lead the agent team {team}. The team's tools are on the MCP \
             server `team` ({tools}). Start the teammates the work needs (spawn_team), put the \
             tasks on the board (create_task) and assign them or let the teammates claim them, \
             answer their messages, wait for them (wait_for), and when every task is done call \
             finish_team with the final answer. Delegate the work: do not do it yourself.",
            name = agent.name,
            team = agent.team,
            tools = agent_team_tools::LEADER_TOOLS.join(", "),
        ));
    } else {
        s.push_str(&format!(
            "Your name is {name}. You are a {role} in the agent team {team}. The team's tools are on the MCP \
             server `team` (list_tasks, claim_task, update_task_status, release_task, send_message, \
             broadcast, list_teammates, wait_for_messages). Claim a pending task, do it with your \
             own tools, mark it completed with a short result, and message the leader. When you \
             have nothing to do, call wait_for_messages.",
            name = agent.name,
            role = role.name,
            team = agent.team,
        ));
    }
    if let Some(goal) = config.goal.as_deref().filter(|g| !g.trim().is_empty()) {
        s.push_str(&format!("\n\nThe team's goal: {}", goal.trim()));
    }
    s
}

/// Whether `role` has our tool `ours` and its policy allows every call of it without asking
/// (no `ask` or `deny`, and no pattern rule that would judge single calls).
pub(super) fn allowed_outright(role: &Role, ours: &str) -> bool {
    use agent_team_config::policy::{self, perms};
    if !role.tools.iter().any(|t| t == ours) {
        return false;
    }
    let patterned = role
        .permissions
        .iter()
        .any(|r| (r.tool == ours || r.tool == "*") && r.pattern.is_some());
    !patterned
        && perms::decide_rules(&policy::rules(&role.permissions), ours, "") == perms::Action::Allow
}

/// The team tools as Claude Code names them (`mcp__team__<tool>`), allowed without asking.
pub(super) fn team_tools(agent: &AgentEnv) -> Vec<String> {
    let is_leader = agent.name == agent_team_protocol::names::LEADER;
    let team: &[&str] = if is_leader {
        agent_team_tools::LEADER_TOOLS
    } else {
        agent_team_tools::TEAMMATE_TOOLS
    };
    team.iter()
        .copied()
        .chain(agent_team_tools::MCP_ONLY.iter().map(|t| t.name))
        .map(|t| format!("mcp__team__{t}"))
        .collect()
}

/// Arguments a role adds for its CLI (`env` `AGENT_TEAM_CLI_ARGS`, whitespace-separated), none
/// by default.
pub(super) fn extra_args(role: &Role) -> Vec<String> {
    role.env
        .get(env::CLI_ARGS)
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

pub(super) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A TOML basic string.
pub(super) fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Writes the plan's files: directories 0700, files 0600 (they hold the agent's secret).
pub fn write_files(launch: &Launch) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for (path, contents) in &launch.files {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| AgentError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AgentError::Config(format!("cannot write {}: {e}", path.display())))?;
        std::io::Write::write_all(&mut f, contents.as_bytes())
            .map_err(|e| AgentError::Config(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Runs the external CLI of this agent: writes its private configuration, serves it the
/// team's tools through the agent's own `session` (the worker's one connection: the CLI's
/// MCP server and hooks are answered here, outside its sandbox, as this agent and no other),
/// starts the CLI in this pane and waits for it. Its exit status is the agent's: 0 is a
/// finished agent, anything else a failure the restart policy sees. Refused
/// ([`AgentError::Fatal`], told to the daemon so `ps` shows why) when the team's sandbox cannot
/// hold a CLI here ([`fallback_refusal`]).
pub async fn run(
    session: &Arc<AgentSession>,
    tools: Option<&dyn ToolHost>,
) -> Result<(), AgentError> {
    let (link, config, role, out) = (
        session.link(),
        session.config(),
        session.role(),
        session.out(),
    );
    let agent = link.agent();
    if let Some(why) = fallback_refusal(config.sandbox, agent_team_sandbox::support()) {
        out.say(&format!("not starting: {why}"));
        let _ = link
            .call(Request::SetStatus {
                status: agent_team_protocol::AgentStatus::Idle,
                error: Some(why.clone()),
            })
            .await;
        return Err(AgentError::Fatal(why));
    }
    let host = tools.ok_or_else(|| {
        AgentError::Config("this program cannot serve the team's tools to a CLI".into())
    })?;
    let home = match std::env::var_os(agent_team_pane::env::CLI_HOME).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => agent_team_paths::Paths::from_env()
            .map_err(|e| AgentError::Config(e.to_string()))?
            .team(&agent.team)
            .map_err(|e| AgentError::Config(e.to_string()))?
            .cli_home(&agent.name),
    };
    // A shutdown an earlier launch was asked for is not this one's.
    let _ = crate::idle::take_shutdown_marker(&home);
    let headless = !nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    let conversation = adapter(role.provider).and_then(|a| session_for(a, &home));
    let launch = plan(
        agent,
        config,
        role,
        &home,
        &own_bridge(),
        headless,
        conversation.as_ref(),
    )?;
    write_files(&launch)?;
    let path_var = std::env::var("PATH").ok();
    let Some(exe) = find_program(&launch.program, path_var.as_deref()) else {
        let hint = npm_package(role.provider)
            .map(|p| format!(" (install it: npm install -g {p})"))
            .unwrap_or_default();
        return Err(AgentError::Config(format!(
            "{} was not found on PATH{hint}",
            launch.program
        )));
    };
    if let Some(warning) = untested_version(role.provider, &exe) {
        out.say(&format!("warning: {warning}"));
    }
    out.say(&format!(
        "{} · {} · incarnation {} · {} ({})",
        agent.name,
        role.name,
        agent.incarnation,
        role.provider.as_str(),
        exe.display()
    ));
    // The team's tools, served from here to the CLI's bridge, through this agent's session.
    let _tools = host.start(session.clone(), &home, &launch.serving)?;
    let mut cmd = command(agent, config, role, &home, &exe, &launch, headless);
    let status = cmd
        .status()
        .await
        .map_err(|e| AgentError::Config(format!("cannot start {}: {e}", exe.display())))?;
    // Asked to shut down, the agent's MCP server ended the CLI: a finished agent, not a crash.
    if crate::idle::take_shutdown_marker(&home) {
        out.say(&format!(
            "{} ended: {} was asked to shut down",
            launch.program, agent.name
        ));
        return Ok(());
    }
    match status.code() {
        Some(0) => Ok(()),
        _ => Err(AgentError::Config(format!(
            "{} ended: {status}",
            launch.program
        ))),
    }
}

/// Why an agent CLI may not start on this machine, if it may not: the team's sandbox is `on`
/// and there is no namespace here, so only the fallback would hold the CLI's whole tree (its
/// shell, hooks and MCP servers) with the gaps docs/SECURITY.md lists. `sandbox = "weak"`
/// accepts them; `off` confines nothing anyway.
pub fn fallback_refusal(
    mode: agent_team_config::SandboxMode,
    support: &agent_team_sandbox::Support,
) -> Option<String> {
    use agent_team_sandbox::Mechanism;
    if mode != agent_team_config::SandboxMode::On {
        return None;
    }
    let no_namespace = support.namespace.as_ref().err()?;
    let fallback = match support.mechanism() {
        Mechanism::Namespace(_) => return None,
        Mechanism::Landlock(abi) => format!("only the Landlock fallback (ABI {abi})"),
        Mechanism::None(_) => "no sandbox at all".to_string(),
    };
    Some(format!(
        "needs sandbox = \"weak\" in the team file: an agent CLI teammate needs the sandbox's \
         namespace, and this machine has {fallback} ({no_namespace}), which cannot hold the CLI's \
         whole tree (see `agent-team doctor`); install bubblewrap, or accept the weaker sandbox \
         with sandbox = \"weak\""
    ))
}

/// The command that runs the CLI `exe` as `launch` says. The CLI and everything it runs (its
/// own tools, its hooks, its MCP servers) work in the team's sandbox, where its private home
/// and its log are all of the state dir it sees; no variable locating the team (socket, dirs,
/// secret, a token `serve` held) reaches it.
fn command(
    agent: &AgentEnv,
    config: &TeamConfig,
    role: &Role,
    home: &Path,
    exe: &Path,
    launch: &Launch,
    headless: bool,
) -> tokio::process::Command {
    let mut args: Vec<std::ffi::OsString> = launch.args.iter().map(Into::into).collect();
    let mut cmd = if config.sandbox.confines() {
        let mut expose = vec![home.to_path_buf()];
        expose.extend(agent.log_file.clone());
        let mut work = crate::command::work_of(agent, config, role, expose);
        // The CLI's own program (and the script an interpreter runs first, as the team file
        // names it): its whole install tree, read-only, in a sandbox that starts from nothing;
        // each named by a path that exists in there (`a/../b` needs an `a` that may not).
        let exe = exe
            .parent()
            .and_then(|d| std::fs::canonicalize(d).ok())
            .zip(exe.file_name())
            .map(|(d, n)| d.join(n))
            .unwrap_or_else(|| exe.to_path_buf());
        let script = args
            .first()
            .map(std::path::PathBuf::from)
            .filter(|p| {
                p.is_absolute()
                    && p.is_file()
                    && p.extension()
                        .is_some_and(|e| ["js", "mjs", "cjs", "py", "sh"].iter().any(|x| e == *x))
            })
            .and_then(|p| std::fs::canonicalize(p).ok());
        if let Some(s) = &script {
            args[0] = s.clone().into_os_string();
        }
        work.read.extend(
            std::iter::once(exe.clone())
                .chain(script)
                .filter(|p| p.is_absolute())
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .filter_map(|p| p.parent().map(agent_team_sandbox::view::program_root)),
        );
        let boundary = agent_team_sandbox::Boundary::for_work(&work);
        tokio::process::Command::from(agent_team_sandbox::command(
            &boundary,
            &launch.cwd,
            &exe,
            &args,
            agent_team_sandbox::Options {
                interactive: !headless,
                unix_sockets: true,
                // A stop gives the CLI SIGTERM first, inside its sandbox, so it saves its
                // session; the CLI itself never sees the marker.
                outer_marker: Some(agent_team_pane::procs::STOP_INSIDE_FIRST),
            },
        ))
    } else {
        let mut c = tokio::process::Command::new(exe);
        c.args(&args).current_dir(&launch.cwd);
        c
    };
    for k in crate::command::hidden_vars(std::env::vars_os()) {
        cmd.env_remove(k);
    }
    // Through the team's model gateway, the CLI holds its token only: no credential variable
    // of the team is inherited (the launch sets what the CLI is given) (issue 65).
    if std::env::var_os(env::GATEWAY_TOKEN).is_some() {
        for k in config.credential_vars() {
            cmd.env_remove(k);
        }
    }
    cmd.kill_on_drop(true);
    if let Some(file) = &launch.stdin {
        // Written just before; unreadable, the CLI gets no input and says so.
        cmd.stdin(
            std::fs::File::open(file)
                .map(std::process::Stdio::from)
                .unwrap_or_else(|_| std::process::Stdio::null()),
        );
    } else if headless {
        // A one-shot CLI may read its stdin for more input (`codex exec` does): there is none.
        cmd.stdin(std::process::Stdio::null());
    }
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    cmd
}

/// The `agent-team-bridge` binary beside this worker's (they are built, installed and copied
/// together), else on `PATH`.
fn own_bridge() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|e| bridge_exe(&e))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("agent-team-bridge"))
}

#[cfg(test)]
mod tests;
