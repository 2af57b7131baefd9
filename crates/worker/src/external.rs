//! External agent CLIs as teammates (Claude Code, Codex, Qwen Code, or any MCP-capable command):
//! the worker reads the agent's role once, writes the CLI's private configuration (its own
//! `HOME` and config dir under the team's state, never the user's), registers `agent-team mcp`
//! as the CLI's `team` MCP server for this launch only, and runs the CLI in the agent's pane
//! with the role prompt, the team context and the first instruction as its first input. The
//! CLI then reaches the team only through that MCP server, which is the agent's one daemon
//! connection.
//!
//! [`plan`] is pure (argv, environment, files), so each adapter's launch command is tested
//! without the CLI; [`run`] carries a plan out.

use crate::output::Output;
use crate::{AgentEnv, AgentError};
use agent_team_client::{AsyncClient, agent_hello};
use agent_team_config::{Provider, Role, TeamConfig};
use agent_team_pane::env;
use agent_team_protocol::{Reply, Request};
use serde_json::json;
use std::path::{Path, PathBuf};

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
}

/// The npm package that provides a provider's CLI, for the error when it is missing.
pub fn npm_package(p: Provider) -> Option<&'static str> {
    match p {
        Provider::ClaudeCode => Some("@anthropic-ai/claude-code"),
        Provider::Codex => Some("@openai/codex"),
        Provider::QwenCode => Some("@qwen-code/qwen-code"),
        _ => None,
    }
}

/// The program a role's CLI runs: the role's `command` (its first word), else the provider's
/// usual name on `PATH`.
pub fn program(role: &Role) -> Option<String> {
    if let Some(first) = role.command.as_ref().and_then(|c| c.first()) {
        return Some(first.clone());
    }
    match role.provider {
        Provider::ClaudeCode => Some("claude".into()),
        Provider::Codex => Some("codex".into()),
        Provider::QwenCode => Some("qwen".into()),
        _ => None,
    }
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

/// The MCP configuration that starts `agent-team mcp` as this agent (Claude Code's
/// `--mcp-config` shape, also read by the `cli` provider's commands).
fn mcp_servers(
    agent: &AgentEnv,
    home: &Path,
    agent_team: &Path,
    hook_socket: Option<&Path>,
    first_input: Option<&Path>,
) -> serde_json::Value {
    json!({
        "mcpServers": {
            "team": {
                "command": agent_team.display().to_string(),
                "args": ["mcp"],
                "env": mcp_env(agent, home, hook_socket, first_input),
            }
        }
    })
}

/// The relay's socket in the CLI's private home `home` (see [`crate::relay`]).
pub fn link_socket(home: &Path) -> PathBuf {
    home.join("link.sock")
}

/// The environment `agent-team mcp` needs to join as this agent.
fn mcp_env(
    agent: &AgentEnv,
    home: &Path,
    hook_socket: Option<&Path>,
    first_input: Option<&Path>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    // The CLI runs in the team's sandbox: its MCP server reaches the daemon through the relay
    // in its private home, which puts the agent's secret into the hello; the secret itself is
    // in no file the CLI or its tools can read.
    m.insert(
        env::SOCKET.into(),
        json!(link_socket(home).display().to_string()),
    );
    m.insert(env::TEAM.into(), json!(agent.team));
    m.insert(env::NAME.into(), json!(agent.name));
    m.insert(env::SECRET.into(), json!(crate::relay::PLACEHOLDER_SECRET));
    m.insert(
        env::INCARNATION.into(),
        json!(agent.incarnation.to_string()),
    );
    if let Some(l) = &agent.log_file {
        m.insert(env::LOG_FILE.into(), json!(l.display().to_string()));
    }
    if let Some(h) = hook_socket {
        m.insert(HOOK_SOCKET_ENV.into(), json!(h.display().to_string()));
    }
    if let Some(f) = first_input {
        m.insert(FIRST_INPUT_ENV.into(), json!(f.display().to_string()));
    }
    m
}

/// The variable telling `agent-team mcp` which file holds the first instruction to type into
/// the pane once the CLI has listed the tools.
pub const FIRST_INPUT_ENV: &str = "AGENT_TEAM_FIRST_INPUT_FILE";

/// The variable telling `agent-team mcp` where to answer the CLI's turn-end hook.
pub const HOOK_SOCKET_ENV: &str = "AGENT_TEAM_HOOK_SOCKET";

/// The hooks (Claude Code's settings shape, which Qwen Code reads too): at each turn's end
/// (`Stop`), `agent-team hook stop` hands the queued messages back as the next instruction;
/// before a call of one of `asked` (the CLI's own tools the role's policy must judge call by
/// call), `agent-team hook pre-tool-use` has it judged, asking the team where the policy
/// says `ask`. That hook may wait for a person, so its timeout is the daemon's to apply.
fn cli_hooks(agent_team: &Path, socket: &Path, asked: &[String]) -> serde_json::Value {
    let command = |event: &str| {
        format!(
            "{} hook {event} --socket {}",
            shell_word(&agent_team.display().to_string()),
            shell_word(&socket.display().to_string())
        )
    };
    let mut hooks = json!({
        "Stop": [{
            "matcher": "",
            "hooks": [{"type": "command", "command": command("stop")}],
        }],
    });
    if !asked.is_empty() {
        hooks["PreToolUse"] = json!([{
            "matcher": asked.join("|"),
            "hooks": [{
                "type": "command",
                "command": command("pre-tool-use"),
                "timeout": PERMISSION_HOOK_TIMEOUT_SECS,
            }],
        }]);
    }
    hooks
}

/// Codex's own tools that its `PreToolUse` hook must judge for `role`: the shell when the role
/// lacks it or does not allow it outright. Codex runs with `approval_policy = "never"` in its
/// workspace-write sandbox; the hook's deny is what stops a call.
pub fn codex_judged(role: &Role) -> Vec<String> {
    if allowed_outright(role, "bash") {
        return Vec::new();
    }
    // Codex's hooks name its shell `Bash`, with the command in `command` (seen in 0.169.0).
    vec!["Bash".into()]
}

/// Qwen Code reads the hooks in Claude Code's shape, with two differences: a matcher is an
/// unanchored regular expression (so each list is anchored), and a timeout is in milliseconds.
fn qwen_hooks(mut hooks: serde_json::Value) -> serde_json::Value {
    if let Some(pre) = hooks["PreToolUse"].get_mut(0) {
        let list = pre["matcher"].as_str().unwrap_or_default().to_string();
        pre["matcher"] = json!(format!("^({list})$"));
        pre["hooks"][0]["timeout"] = json!(PERMISSION_HOOK_TIMEOUT_SECS * 1000);
    }
    hooks
}

/// The CLI's timeout for the permission hook: a day, so the daemon's permission timeout (which
/// denies a request nobody decided) is the one that applies.
const PERMISSION_HOOK_TIMEOUT_SECS: u64 = 24 * 60 * 60;

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

/// The first input: the role's prompt, who the agent is and how it reaches the team.
pub fn first_input(agent: &AgentEnv, config: &TeamConfig, role: &Role) -> String {
    let mut s = String::new();
    if !role.system_prompt.trim().is_empty() {
        s.push_str(role.system_prompt.trim());
        s.push_str("\n\n");
    }
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
    if let Some(goal) = config.goal.as_deref().filter(|g| !g.trim().is_empty()) {
        s.push_str(&format!("\n\nThe team's goal: {}", goal.trim()));
    }
    s
}

/// Replaces `{mcp_config}`, `{prompt_file}`, `{prompt}`, `{name}`, `{team}`, `{model}` and
/// `{workspace}` in one word of a `cli` command template.
fn fill(word: &str, vars: &[(&str, &str)]) -> String {
    let mut out = word.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Which conversation a Claude Code or Qwen Code launch holds: a new one under an id chosen
/// here (recorded in the agent's CLI home), or the recorded one, resumed after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// Start the conversation with this id (`--session-id`).
    New(String),
    /// Resume this conversation (`--resume`): the CLI's own context survives the restart.
    Resume(String),
}

/// The file in the agent's CLI home that records its conversation's id.
pub const SESSION_FILE: &str = "session-id";

/// The instruction a resumed CLI is given instead of its first one.
pub const RESUMED_INPUT: &str = "You were restarted. Carry on where you left off: look at the \
     board (list_tasks) and your messages (wait_for_messages) on the `team` MCP server.";

/// The session a launch of `provider` in `home` should hold: the recorded conversation when
/// the CLI's own transcript of it exists (so a resume cannot fail on a conversation the CLI
/// never wrote), else a new one with a fresh id. `None` for a CLI without session ids.
pub fn session_for(provider: Provider, home: &Path) -> Option<Session> {
    let config_dir = match provider {
        Provider::ClaudeCode => home.join(".claude"),
        Provider::QwenCode => home.join(".qwen"),
        _ => return None,
    };
    let recorded = std::fs::read_to_string(home.join(SESSION_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| is_session_id(s));
    if let Some(id) = recorded
        && transcript_exists(&config_dir, &format!("{id}.jsonl"), 5)
    {
        return Some(Session::Resume(id));
    }
    Some(Session::New(new_session_id()))
}

/// A session id as we write them: a UUID (only hex digits and dashes reach a command line).
fn is_session_id(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Whether a file named `name` is under `dir`, at most `depth` levels down.
fn transcript_exists(dir: &Path, name: &str, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => depth > 0 && transcript_exists(&path, name, depth - 1),
            Ok(_) => e.file_name() == name,
            Err(_) => false,
        }
    })
}

/// A random (version 4) UUID.
fn new_session_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the time and pid still make the id unique to this launch.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The arguments that start or resume `session`, and the file recording a new one's id.
fn session_args(
    session: Option<&Session>,
    home: &Path,
) -> (Vec<String>, Option<(PathBuf, String)>) {
    match session {
        Some(Session::New(id)) => (
            vec!["--session-id".into(), id.clone()],
            Some((home.join(SESSION_FILE), id.clone())),
        ),
        Some(Session::Resume(id)) => (vec!["--resume".into(), id.clone()], None),
        None => (Vec::new(), None),
    }
}

/// Everything that starts `role`'s CLI for `agent`: `home` is the agent's private CLI home
/// ([`agent_team_paths::TeamPaths::cli_home`]), `agent_team` the `agent-team` binary that serves
/// MCP.
/// `headless` when there is no terminal to show the CLI's own screen (the `process` backend):
/// the CLIs that have a one-shot mode use it. `session` is the conversation a Claude Code or
/// Qwen Code launch holds ([`session_for`]); a resumed one is told to carry on instead of
/// being given its first instruction again.
pub fn plan(
    agent: &AgentEnv,
    config: &TeamConfig,
    role: &Role,
    home: &Path,
    agent_team: &Path,
    headless: bool,
    session: Option<&Session>,
) -> Result<Launch, AgentError> {
    let cwd = agent
        .workspace
        .clone()
        .unwrap_or_else(|| config.workspace.clone());
    let prompt = match session {
        Some(Session::Resume(_)) => RESUMED_INPUT.to_string(),
        _ => first_input(agent, config, role),
    };
    let (resume_args, session_file) = session_args(session, home);
    let mcp_file = home.join("mcp.json");
    let prompt_file = home.join("prompt.md");
    let hook_socket = home.join("hook.sock");
    let hooked = matches!(role.provider, Provider::ClaudeCode | Provider::QwenCode);
    // Interactive Claude Code connects its MCP servers in the background: its first
    // instruction is typed into the pane by the team server once the tools are listed, not
    // given on the command line.
    let first_input_file = home.join("first-input.md");
    let typed = role.provider == Provider::ClaudeCode && !headless;
    let mcp = mcp_servers(
        agent,
        home,
        agent_team,
        hooked.then_some(hook_socket.as_path()),
        typed.then_some(first_input_file.as_path()),
    );
    let mut files = vec![
        (mcp_file.clone(), pretty(&mcp)),
        (prompt_file.clone(), prompt.clone()),
    ];
    let mut envs: Vec<(String, String)> = vec![
        (env::MCP_CONFIG.into(), mcp_file.display().to_string()),
        (env::PROMPT_FILE.into(), prompt_file.display().to_string()),
    ];
    // The role's API key, from the variable its provider reads.
    let key_var = role.provider.key_env(role.api_key_env.as_deref());
    let key = || key_var.as_deref().and_then(|v| std::env::var(v).ok());
    let (program_name, mut args) = match role.provider {
        Provider::Cli => {
            let Some(template) = role.command.as_ref().filter(|c| !c.is_empty()) else {
                return Err(AgentError::Config(format!(
                    "role {:?} has provider \"cli\" but no `command` to run",
                    role.name
                )));
            };
            let (mcp_s, prompt_s, ws) = (
                mcp_file.display().to_string(),
                prompt_file.display().to_string(),
                cwd.display().to_string(),
            );
            let vars = [
                ("mcp_config", mcp_s.as_str()),
                ("prompt_file", prompt_s.as_str()),
                ("prompt", prompt.as_str()),
                ("name", agent.name.as_str()),
                ("team", agent.team.as_str()),
                ("model", role.model.as_str()),
                ("workspace", ws.as_str()),
            ];
            let words: Vec<String> = template.iter().map(|w| fill(w, &vars)).collect();
            (words[0].clone(), words[1..].to_vec())
        }
        Provider::ClaudeCode => {
            let config_dir = home.join(".claude");
            let settings = home.join("settings.json");
            let api_key = key().unwrap_or_default();
            let tail: String = api_key
                .chars()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            // No onboarding, theme, key or folder-trust screen (CLIS.md).
            let seeded = json!({
                "hasCompletedOnboarding": true,
                "theme": "dark",
                "bypassPermissionsModeAccepted": true,
                "customApiKeyResponses": {"approved": [tail], "rejected": []},
                "projects": {
                    cwd.display().to_string(): {
                        "hasTrustDialogAccepted": true,
                        "hasCompletedProjectOnboarding": true,
                        "allowedTools": [],
                    }
                }
            });
            files.push((config_dir.join(".claude.json"), pretty(&seeded)));
            let tools = claude_tools(role);
            files.push((
                settings.clone(),
                pretty(&json!({"hooks": cli_hooks(agent_team, &hook_socket, &tools.asked)})),
            ));
            envs.extend([
                ("HOME".into(), home.display().to_string()),
                ("CLAUDE_CONFIG_DIR".into(), config_dir.display().to_string()),
                ("ANTHROPIC_API_KEY".into(), api_key),
                ("ANTHROPIC_MODEL".into(), role.model.clone()),
                ("IS_SANDBOX".into(), "1".into()),
            ]);
            for quiet in [
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
                "DISABLE_AUTOUPDATER",
                "DISABLE_TELEMETRY",
                "DISABLE_ERROR_REPORTING",
                "CLAUDE_CODE_DISABLE_FEATURE_FLAGS",
                "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL",
                // No side requests of its own (a session title, memory, a survey): every
                // model request is the teammate's own work.
                "CLAUDE_CODE_DISABLE_TERMINAL_TITLE",
                "CLAUDE_CODE_DISABLE_AUTO_MEMORY",
                "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY",
            ] {
                envs.push((quiet.into(), "1".into()));
            }
            if let Some(url) = &role.base_url {
                envs.push(("ANTHROPIC_BASE_URL".into(), url.clone()));
            }
            let ClaudeTools {
                allowed,
                disallowed,
                ..
            } = tools;
            // The prompt comes first: `--allowedTools` and `--disallowedTools` take every
            // word after them, so a prompt after them would be read as tool names.
            let mut args: Vec<String> = Vec::new();
            if headless {
                args.push("-p".into());
                args.push(prompt.clone());
            } else {
                files.push((first_input_file.clone(), prompt.clone()));
            }
            args.extend(resume_args.clone());
            files.extend(session_file.clone());
            args.extend([
                "--mcp-config".into(),
                mcp_file.display().to_string(),
                "--strict-mcp-config".into(),
                "--settings".into(),
                settings.display().to_string(),
                "--model".into(),
                role.model.clone(),
                "--allowedTools".into(),
                team_tools(agent)
                    .into_iter()
                    .chain(allowed)
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
            if !disallowed.is_empty() {
                args.extend(["--disallowedTools".into(), disallowed.join(",")]);
            }
            args.extend(extra_args(role));
            ("claude".to_string(), args)
        }
        Provider::Codex => {
            let codex_home = home.join(".codex");
            let key_var = key_var.clone().unwrap_or_default();
            let base = role
                .base_url
                .clone()
                .unwrap_or_else(|| "https://api.openai.com/v1".into());
            let mut toml = format!(
                "model = {model}\nmodel_provider = \"team\"\napproval_policy = \"never\"\n\
                 sandbox_mode = \"workspace-write\"\ncheck_for_update_on_startup = false\n\n\
                 [model_providers.team]\nname = \"team\"\nbase_url = {base}\n\
                 wire_api = \"responses\"\nenv_key = {key}\nrequest_max_retries = 0\n\
                 stream_max_retries = 0\n\n[mcp_servers.team]\ncommand = {cmd}\nargs = [\"mcp\"]\n\
                 default_tools_approval_mode = \"approve\"\n\n[mcp_servers.team.env]\n",
                model = toml_str(&role.model),
                base = toml_str(&base),
                key = toml_str(&key_var),
                cmd = toml_str(&agent_team.display().to_string()),
            );
            for (k, v) in mcp_env(agent, home, Some(&hook_socket), None) {
                toml.push_str(&format!(
                    "{k} = {}\n",
                    toml_str(v.as_str().unwrap_or_default())
                ));
            }
            // At each turn's end the queued messages are handed back as the next instruction,
            // as for Claude Code and Qwen Code.
            toml.push_str(&format!(
                "\n[[hooks.Stop]]\n\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = {}\n",
                toml_str(&format!(
                    "{} hook stop --socket {}",
                    shell_word(&agent_team.display().to_string()),
                    shell_word(&hook_socket.display().to_string())
                )),
            ));
            let judged = codex_judged(role);
            if !judged.is_empty() {
                // Codex obeys a hook's deny only (an allow is an error there): the hook
                // answers nothing for an allowed call.
                toml.push_str(&format!(
                    "\n[[hooks.PreToolUse]]\nmatcher = {}\n\n[[hooks.PreToolUse.hooks]]\n\
                     type = \"command\"\ncommand = {}\ntimeout = {PERMISSION_HOOK_TIMEOUT_SECS}\n",
                    toml_str(&format!("^({})$", judged.join("|"))),
                    toml_str(&format!(
                        "{} hook pre-tool-use --deny-only --socket {}",
                        shell_word(&agent_team.display().to_string()),
                        shell_word(&hook_socket.display().to_string())
                    )),
                ));
            }
            toml.push_str(&format!(
                "\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n\n\
                 [features]\nplugins = false\ndaemon_auto_start = false\n\n\
                 [projects.{}]\ntrust_level = \"trusted\"\n",
                toml_str(&cwd.display().to_string())
            ));
            files.push((codex_home.join("config.toml"), toml));
            // Codex makes the helper it runs its own sandbox through (`codex-linux-sandbox`,
            // under bubblewrap) in CODEX_HOME, and refuses to when CODEX_HOME is inside the temp
            // dir (a state dir under /tmp): a temp dir of its own keeps it out of that case.
            let tmp = home.join("tmp");
            files.push((tmp.join(".keep"), String::new()));
            envs.extend([
                ("HOME".into(), home.display().to_string()),
                ("CODEX_HOME".into(), codex_home.display().to_string()),
                ("TMPDIR".into(), tmp.display().to_string()),
            ]);
            if let Some(k) = key() {
                envs.push((key_var, k));
            }
            let mut args: Vec<String> = if headless {
                vec!["exec".into(), "--skip-git-repo-check".into()]
            } else {
                Vec::new()
            };
            args.push("--dangerously-bypass-hook-trust".into());
            args.extend(extra_args(role));
            args.push(prompt.clone());
            ("codex".to_string(), args)
        }
        Provider::QwenCode => {
            let qwen_home = home.join(".qwen");
            let settings = json!({
                "security": {"auth": {"selectedType": "openai"}, "folderTrust": {"enabled": false}},
                // No side requests of its own (next-speaker checks, memory extraction, a
                // startup-context turn): every model request is the teammate's own work.
                "model": {
                    "name": role.model,
                    "skipNextSpeakerCheck": true,
                    "skipLoopDetection": true,
                    "skipStartupContext": true,
                },
                "memory": {"enableManagedAutoMemory": false},
                "mcpServers": {"team": {
                    "command": agent_team.display().to_string(),
                    "args": ["mcp"],
                    "env": mcp_env(agent, home, Some(&hook_socket), None),
                    "trust": true,
                }},
                "hooks": qwen_hooks(cli_hooks(agent_team, &hook_socket, &qwen_judged(role))),
                "privacy": {"usageStatisticsEnabled": false},
                "telemetry": {"enabled": false},
                "general": {"enableAutoUpdate": false},
            });
            files.push((qwen_home.join("settings.json"), pretty(&settings)));
            envs.extend([
                ("HOME".into(), home.display().to_string()),
                ("QWEN_HOME".into(), qwen_home.display().to_string()),
                ("OPENAI_MODEL".into(), role.model.clone()),
                ("QWEN_CODE_NO_RELAUNCH".into(), "1".into()),
            ]);
            if let Some(url) = &role.base_url {
                envs.push(("OPENAI_BASE_URL".into(), url.clone()));
            }
            if let Some(k) = key() {
                envs.push(("OPENAI_API_KEY".into(), k));
            }
            let mut args = vec!["--approval-mode".to_string(), "yolo".to_string()];
            args.extend(resume_args.clone());
            files.extend(session_file.clone());
            args.extend(extra_args(role));
            let flag = if headless { "-p" } else { "-i" };
            args.extend([flag.to_string(), prompt.clone()]);
            ("qwen".to_string(), args)
        }
        p => {
            return Err(AgentError::Config(format!(
                "the {} provider is not an external CLI",
                p.as_str()
            )));
        }
    };
    // The role's `command` names the program (a path, or another name); a `cli` template was
    // filled above.
    let program = match role.provider {
        Provider::Cli => program_name,
        _ => program(role).unwrap_or(program_name),
    };
    if role.provider != Provider::Cli {
        // Words after the first in `command` are extra arguments before the prompt.
        let extra: Vec<String> = role
            .command
            .as_ref()
            .map(|c| c.iter().skip(1).cloned().collect())
            .unwrap_or_default();
        if !extra.is_empty() {
            // Before the prompt where it is last; Claude Code's comes first.
            let at = if role.provider == Provider::ClaudeCode {
                args.len()
            } else {
                args.len().saturating_sub(1)
            };
            args.splice(at..at, extra);
        }
    }
    for (k, v) in &role.env {
        envs.push((k.clone(), v.clone()));
    }
    Ok(Launch {
        program,
        args,
        env: envs,
        files,
        cwd,
    })
}

/// Claude Code's own tools for a role, by how a call of each is decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClaudeTools {
    /// The role has the counterpart and its policy allows it outright: no asking.
    pub allowed: Vec<String>,
    /// The role lacks the counterpart (a read-only role's Claude cannot write), or it would
    /// be a second board beside the team's.
    pub disallowed: Vec<String>,
    /// The role's policy judges each call (`ask`, `deny` or a pattern): the `PreToolUse`
    /// hook has each call judged, and asks the team where the policy says `ask`.
    pub asked: Vec<String>,
}

/// Claude Code's own tools for `role` (see [`ClaudeTools`]).
pub fn claude_tools(role: &Role) -> ClaudeTools {
    let (mut allowed, mut disallowed, mut asked) = (Vec::new(), Vec::new(), Vec::new());
    for name in [
        "Read",
        "Write",
        "Edit",
        "MultiEdit",
        "Glob",
        "LS",
        "Grep",
        "Bash",
        "WebFetch",
        "WebSearch",
        "TodoWrite",
    ] {
        let Some(ours) = agent_team_config::claude_tool(name) else {
            continue;
        };
        if !role.tools.iter().any(|t| t == ours) {
            disallowed.push(name.to_string());
            continue;
        }
        if allowed_outright(role, ours) {
            allowed.push(name.to_string());
        } else {
            asked.push(name.to_string());
        }
    }
    // Claude Code's own task list and messages would be a second board beside the team's.
    for own in [
        "TaskCreate",
        "TaskGet",
        "TaskList",
        "TaskUpdate",
        "SendMessage",
    ] {
        disallowed.push(own.to_string());
    }
    ClaudeTools {
        allowed,
        disallowed,
        asked,
    }
}

/// Whether `role` has our tool `ours` and its policy allows every call of it without asking
/// (no `ask` or `deny`, and no pattern rule that would judge single calls).
fn allowed_outright(role: &Role, ours: &str) -> bool {
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

/// Qwen Code's own tools that the `PreToolUse` hook must judge for `role`: each whose
/// counterpart the role lacks or does not allow outright, and Qwen's own subagents, messages
/// and schedules (a second team beside ours), which the hook always refuses. Qwen runs in
/// `yolo` mode, since a `PreToolUse` allow cannot grant it a permission (CLIS.md) while a deny
/// is obeyed: every call it would have asked about passes through this hook instead.
pub fn qwen_judged(role: &Role) -> Vec<String> {
    let mut judged: Vec<String> = [
        ("run_shell_command", "bash"),
        ("write_file", "write_file"),
        ("edit", "edit_file"),
        ("read_file", "read_file"),
        ("glob", "glob"),
        ("grep_search", "grep"),
        ("list_directory", "list_files"),
        ("web_fetch", "web_fetch"),
        ("web_search", "web_search"),
        ("todo_write", "todo_write"),
    ]
    .into_iter()
    .filter(|(_, ours)| !allowed_outright(role, ours))
    .map(|(qwen, _)| qwen.to_string())
    .collect();
    judged.extend(
        [
            "agent",
            "send_message",
            "cron_create",
            "cron_list",
            "cron_delete",
            "monitor",
            "task_stop",
        ]
        .map(String::from),
    );
    judged
}

/// The team tools as Claude Code names them (`mcp__team__<tool>`), allowed without asking.
fn team_tools(agent: &AgentEnv) -> Vec<String> {
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
fn extra_args(role: &Role) -> Vec<String> {
    role.env
        .get("AGENT_TEAM_CLI_ARGS")
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
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

/// Runs the external CLI of this agent: reads its role once (a short connection that ends
/// before the CLI starts, so the CLI's MCP server is the agent's one connection), writes the
/// private configuration, starts the CLI in this pane and waits for it. Its exit status is the
/// agent's: 0 is a finished agent, anything else a failure the restart policy sees.
pub async fn run(agent: AgentEnv, out: Output) -> Result<(), AgentError> {
    let hello = agent_hello(&agent.team, &agent.name, &agent.secret, agent.incarnation);
    let (client, _pushes) = AsyncClient::connect(&agent.socket, &hello)
        .await
        .map_err(|e| AgentError::Daemon(e.to_string()))?;
    let role_name = client.welcome().role.clone();
    let config: TeamConfig = match client.call(Request::GetConfig).await {
        Ok(Reply::Config { config }) if !config.is_null() => serde_json::from_value(config)
            .map_err(|e| AgentError::Config(format!("cannot read the team configuration: {e}")))?,
        Ok(_) => return Err(AgentError::Config("the team has no configuration".into())),
        Err(e) => return Err(AgentError::Daemon(e.to_string())),
    };
    drop(client);
    let mut role = config.role(&role_name).cloned().ok_or_else(|| {
        AgentError::Config(format!(
            "role {role_name:?} of {} is not in the team configuration",
            agent.name
        ))
    })?;
    agent.member.apply(&mut role)?;
    let paths =
        agent_team_paths::Paths::from_env().map_err(|e| AgentError::Config(e.to_string()))?;
    let home = paths
        .team(&agent.team)
        .map_err(|e| AgentError::Config(e.to_string()))?
        .cli_home(&agent.name);
    let agent_team = agent_team_exe();
    let headless = !nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    let session = session_for(role.provider, &home);
    let launch = plan(
        &agent,
        &config,
        &role,
        &home,
        &agent_team,
        headless,
        session.as_ref(),
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
    out.say(&format!(
        "{} · {} · incarnation {} · {} ({})",
        agent.name,
        role.name,
        agent.incarnation,
        role.provider.as_str(),
        exe.display()
    ));
    // The CLI's MCP server reaches the daemon through this relay, as this agent and no other.
    let _relay = crate::relay::start(&link_socket(&home), &agent).map_err(|e| {
        AgentError::Config(format!(
            "cannot listen on {}: {e}",
            link_socket(&home).display()
        ))
    })?;
    let args: Vec<std::ffi::OsString> = launch.args.iter().map(Into::into).collect();
    // The CLI and everything it runs (its own tools, its hooks, its MCP servers) work in the
    // team's sandbox: its private home and its log are all of the state dir it sees.
    let mut cmd = if config.sandbox == agent_team_config::SandboxMode::On {
        let mut expose = vec![home.clone()];
        expose.extend(agent.log_file.clone());
        let boundary = agent_team_sandbox::Boundary::for_work(&crate::command::work_of(
            &agent, &config, &role, expose,
        ));
        tokio::process::Command::from(agent_team_sandbox::command(
            &boundary,
            &launch.cwd,
            &exe,
            &args,
            agent_team_sandbox::Options {
                interactive: !headless,
                unix_sockets: true,
            },
        ))
    } else {
        let mut c = tokio::process::Command::new(&exe);
        c.args(&args).current_dir(&launch.cwd);
        c
    };
    // No variable locating the team (socket, dirs, secret, a token `serve` held) reaches the
    // CLI: only its name and team, and what the launch sets below.
    for k in crate::command::hidden_vars(std::env::vars_os()) {
        cmd.env_remove(k);
    }
    cmd.kill_on_drop(true);
    if headless {
        // A one-shot CLI may read its stdin for more input (`codex exec` does): there is none.
        cmd.stdin(std::process::Stdio::null());
    }
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| AgentError::Config(format!("cannot start {}: {e}", exe.display())))?;
    match status.code() {
        Some(0) => Ok(()),
        _ => Err(AgentError::Config(format!(
            "{} ended: {status}",
            launch.program
        ))),
    }
}

/// The `agent-team` binary beside this worker's (they are built together), else on `PATH`.
fn agent_team_exe() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("agent-team")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("agent-team"))
}

#[cfg(test)]
mod tests;
