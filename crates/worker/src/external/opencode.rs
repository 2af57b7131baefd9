//! opencode (`opencode-ai`): the role's model through an `@ai-sdk/openai-compatible` provider
//! named `team` in a config file of its own (`OPENCODE_CONFIG`, the key named by `{env:VAR}`,
//! so it is in no file); a private `HOME` and `XDG_*` dirs; our `team` MCP server; every call
//! allowed by opencode itself, with each call of a tool the role must judge handed to
//! `agent-team-bridge hook pre-tool-use` by a plugin of ours (its `tool.execute.before` throwing is a
//! deny); at a turn's end (`session.idle`, interactive only) the plugin runs `agent-team-bridge
//! hook stop` and hands queued messages back as the next prompt. Headless it is `opencode run` with
//! the prompt on stdin (an argument with spaces reaches the model JSON-quoted), which exits at
//! the first turn's end: no hand-back there; interactive, the TUI takes it with `--prompt`, but
//! resumed it ignores that, so the instruction to carry on is typed into its pane. Its session ids are its own (`ses_…`), which the
//! plugin records; `--session` resumes one. Seen with 1.18.33
//! (docs/CLIS-research-copilot-opencode.md).

use super::{CliAdapter, Launch, LaunchCtx, allowed_outright, extra_args, pretty};
use super::{Conversation, SESSION_FILE};
use crate::AgentError;
use agent_team_config::{Provider, Role};
use agent_team_tools::cli_names::OPENCODE;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The opencode adapter.
pub struct Opencode;

/// The version of `@opencode-ai/plugin` opencode installs into its config dir unless it finds
/// it there (its own version).
const PLUGIN_PACKAGE_VERSION: &str = "1.18.33";

/// Where opencode keeps its sessions (`opencode.db`), under the private home.
const DATA_DIR: &str = ".local/share/opencode";

impl CliAdapter for Opencode {
    fn provider(&self) -> Provider {
        Provider::Opencode
    }
    fn program(&self) -> &'static str {
        "opencode"
    }
    fn npm_package(&self) -> Option<&'static str> {
        Some("opencode-ai")
    }
    fn tested_version(&self) -> Option<&'static str> {
        Some(super::tested::OPENCODE)
    }
    fn transcripts_dir(&self) -> Option<&'static str> {
        Some(DATA_DIR)
    }
    /// Its sessions are rows of one SQLite file; the plugin records an id only once opencode
    /// has created that session there.
    fn has_transcript(&self, dir: &Path, _id: &str) -> bool {
        dir.join("opencode.db").is_file()
    }
    /// opencode names its sessions itself: `ses_` and letters and digits.
    fn is_session_id(&self, id: &str) -> bool {
        id.strip_prefix("ses_").is_some_and(|rest| {
            (8..=64).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric())
        })
    }
    /// Resumed in a pane (`--session`), the TUI ignores `--prompt` (seen in 1.18.33): the
    /// instruction to carry on is typed into it once it has listed the team tools.
    fn types_first_input(&self, cx: &LaunchCtx<'_>) -> bool {
        !cx.headless && matches!(cx.session, Some(Conversation::Resume(_)))
    }
    /// What our plugin reads from the hook's output.
    fn pre_tool_answer(&self, allow: bool, reason: &str) -> Option<String> {
        Some(json!({"allow": allow, "reason": reason}).to_string())
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (home, role) = (cx.home, cx.role);
        let config_dir = home.join(".config/opencode");
        let plugin = home.join("agent-team-plugin.js");
        let config_file = home.join("opencode.json");
        let config = config(cx, &plugin);
        l.files.push((config_file.clone(), pretty(&config)));
        l.files.push((plugin, plugin_source(cx)));
        l.files.extend(plugin_dependency_seed(&config_dir));
        let dir = |d: &str| home.join(d).display().to_string();
        l.env.extend([
            ("HOME".into(), home.display().to_string()),
            ("XDG_CONFIG_HOME".into(), dir(".config")),
            ("XDG_DATA_HOME".into(), dir(".local/share")),
            ("XDG_STATE_HOME".into(), dir(".local/state")),
            ("XDG_CACHE_HOME".into(), dir(".cache")),
            ("OPENCODE_CONFIG".into(), config_file.display().to_string()),
            // The user's own inline config, permissions or config dir would be merged over
            // ours; the project's `.opencode` dirs would get an npm install each.
            ("OPENCODE_CONFIG_CONTENT".into(), String::new()),
            ("OPENCODE_PERMISSION".into(), String::new()),
            ("OPENCODE_CONFIG_DIR".into(), String::new()),
            ("OPENCODE_DISABLE_PROJECT_CONFIG".into(), "1".into()),
            ("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into()),
            ("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into()),
            ("OPENCODE_DISABLE_DEFAULT_PLUGINS".into(), "1".into()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD".into(), "1".into()),
            ("OPENCODE_DISABLE_SHARE".into(), "1".into()),
        ]);
        // The agent's gateway token when it goes through the gateway, else the role's key.
        if let (Some(var), Some(key)) = (cx.key_var(), cx.model_key()) {
            l.env.push((var, key));
        }
        if cx.headless {
            l.args.push("run".into());
        }
        if let Some(Conversation::Resume(id)) = cx.session {
            l.args.extend(["--session".into(), id.clone()]);
        }
        l.args.extend(extra_args(role));
        if cx.headless {
            // `run` reads the prompt from its stdin verbatim.
            l.stdin = Some(cx.prompt_file());
        } else if self.types_first_input(cx) {
            l.files.push((cx.first_input_file(), cx.prompt.clone()));
        } else {
            l.args.extend(["--prompt".into(), cx.prompt.clone()]);
        }
        Ok(())
    }
    /// A role's extra words go before the prompt, else last.
    fn extra_args_at(&self, args: &[String]) -> usize {
        args.iter()
            .position(|a| a == "--prompt")
            .unwrap_or(args.len())
    }
}

/// Its configuration (`OPENCODE_CONFIG`): our provider with the key named, not written; the
/// team's MCP server for this launch; nothing asked by itself; no updates, sharing or
/// snapshots; and our plugin.
fn config(cx: &LaunchCtx<'_>, plugin: &Path) -> serde_json::Value {
    let role = cx.role;
    let model = format!("team/{}", role.model);
    let mut options = serde_json::Map::new();
    // The team's model gateway when it serves this launch (issue 65), else the role's upstream.
    options.insert(
        "baseURL".into(),
        json!(
            cx.model_url()
                .unwrap_or_else(|| "https://api.openai.com/v1".into())
        ),
    );
    if let Some(var) = cx.key_var() {
        options.insert("apiKey".into(), json!(format!("{{env:{var}}}")));
    }
    json!({
        "$schema": "https://opencode.ai/config.json",
        "model": model,
        "small_model": model,
        "provider": {"team": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "agent-team",
            "options": options,
            "models": {role.model.clone(): {"name": role.model, "tool_call": true}},
        }},
        "mcp": {"team": {
            "type": "local",
            "command": std::iter::once(cx.mcp_command()).chain(cx.mcp_args()).collect::<Vec<_>>(),
            "enabled": true,
        }},
        // opencode asks about nothing itself: the plugin has each call the role must judge
        // judged. Its question tool would wait for a person at the pane, and its subagents
        // would be a second team beside ours: both are withheld from the model.
        "permission": {"*": "allow", "question": "deny", "task": "deny"},
        // No side request of its own (a title for each new session, seen in 1.18.33): every
        // model request is the teammate's own work, counted as the mock or provider bills it.
        "agent": {"title": {"disable": true}},
        "autoupdate": false,
        "share": "disabled",
        "snapshot": false,
        "plugin": [format!("file://{}", plugin.display())],
    })
}

/// The files that keep opencode from installing `@opencode-ai/plugin` into its config dir
/// `config_dir`.
fn plugin_dependency_seed(config_dir: &Path) -> Vec<(PathBuf, String)> {
    // opencode installs `@opencode-ai/plugin` into its config dir (from the npm registry,
    // in the background, on every start) unless the dir's lock file already names it and
    // `node_modules` exists (seen in 1.18.33): our plugin imports nothing, so a lock file
    // naming it is all it takes.
    let dep = json!({"@opencode-ai/plugin": PLUGIN_PACKAGE_VERSION});
    vec![
        (
            config_dir.join("package.json"),
            pretty(&json!({"dependencies": dep})),
        ),
        (
            config_dir.join("package-lock.json"),
            pretty(&json!({
                "lockfileVersion": 3,
                "requires": true,
                "packages": {"": {"dependencies": dep}},
            })),
        ),
        (
            config_dir.join("node_modules/.agent-team"),
            "agent-team: opencode needs no package here\n".into(),
        ),
    ]
}

/// opencode's own tools the plugin has judged for `role`: each whose counterpart the role
/// lacks or does not allow outright, and its subagents (a second team beside ours), which the
/// hook always refuses.
pub fn opencode_judged(role: &Role) -> Vec<String> {
    OPENCODE
        .names()
        .filter(|(_, ours)| !allowed_outright(role, ours))
        .map(|(name, _)| name.to_string())
        .chain(OPENCODE.own_team.iter().map(|t| t.to_string()))
        .collect()
}

/// The plugin (an ES module opencode loads from `file://`; it imports only Node's own
/// modules, so opencode needs no package for it): `tool.execute.before` runs the pre-tool
/// hook for each judged call and throws (a deny, its message the model's tool result) unless
/// the answer allows; interactive, `session.idle` runs the stop hook and prompts the session
/// with the messages it hands back. It records the session opencode starts, for a resume.
fn plugin_source(cx: &LaunchCtx<'_>) -> String {
    let js = |v: serde_json::Value| v.to_string();
    format!(
        r#"// agent-team's plugin for opencode, written for one launch of {agent}: do not edit.
import {{ spawn }} from "node:child_process"
import {{ writeFileSync }} from "node:fs"

const JUDGED = new Set({judged})
const PRE_TOOL = {pre_tool}
const STOP = {stop}
const HAND_BACK = {hand_back}
const SESSION_FILE = {session_file}

// Runs a hook command line with `input` on its stdin.
function run(command, input) {{
  return new Promise((resolve) => {{
    let out = "", err = ""
    let child
    try {{
      child = spawn("/bin/sh", ["-c", command], {{ stdio: ["pipe", "pipe", "pipe"] }})
    }} catch (e) {{
      resolve({{ code: -1, out, err: String(e) }})
      return
    }}
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (err += d))
    child.on("error", (e) => resolve({{ code: -1, out, err: String(e) }}))
    child.on("close", (code) => resolve({{ code, out, err }}))
    child.stdin.on("error", () => {{}})
    child.stdin.end(input)
  }})
}}

// The call as the hook reads it (opencode names a file `filePath`, a patch `patchText`).
function hookInput(tool, args) {{
  const a = {{ ...(args || {{}}) }}
  if (typeof a.filePath === "string") a.file_path = a.filePath
  if (typeof a.patchText === "string") a.input = a.patchText
  return JSON.stringify({{ tool_name: tool, tool_input: a }})
}}

function lastJson(text) {{
  const line = text.trim().split("\n").pop() || ""
  try {{
    return JSON.parse(line)
  }} catch {{
    return null
  }}
}}

export const AgentTeam = async ({{ client }}) => ({{
  "tool.execute.before": async (input, output) => {{
    if (!JUDGED.has(input.tool)) return
    const r = await run(PRE_TOOL, hookInput(input.tool, output.args))
    const verdict = lastJson(r.out)
    if (r.code === 0 && verdict && verdict.allow === true) return
    throw new Error(
      (verdict && verdict.reason) || r.err.trim() || `agent-team: no permission decision (exit ${{r.code}})`,
    )
  }},
  event: async ({{ event }}) => {{
    const p = event.properties || {{}}
    if (event.type === "session.created" && p.info && !p.info.parentID) {{
      try {{
        writeFileSync(SESSION_FILE, p.info.id, {{ mode: 0o600 }})
      }} catch {{}}
    }}
    if (event.type !== "session.idle" || !HAND_BACK) return
    const answer = lastJson((await run(STOP, "{{}}")).out)
    if (answer && answer.decision === "block" && answer.reason) {{
      await client.session.promptAsync({{
        path: {{ id: p.sessionID }},
        body: {{ parts: [{{ type: "text", text: answer.reason }}] }},
      }})
    }}
  }},
}})
"#,
        agent = cx.agent.name,
        judged = js(json!(opencode_judged(cx.role))),
        pre_tool = js(json!(
            cx.hook_command("pre-tool-use", &["--cli", "opencode"])
        )),
        stop = js(json!(cx.hook_command("stop", &[]))),
        hand_back = !cx.headless,
        session_file = js(json!(cx.home.join(SESSION_FILE).display().to_string())),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::{adapter, plan, session_for};
    use super::*;
    use crate::AgentEnv;
    use std::path::PathBuf;

    /// A worker whose shell is `ask` and who has no web, list or todo tools, on a mock.
    fn role() -> Role {
        let mut r = agent_team_config::builtin_roles()
            .get("worker")
            .cloned()
            .unwrap();
        r.provider = Provider::Opencode;
        r.model = "qwen3-coder".into();
        r.base_url = Some("http://127.0.0.1:9/v1".into());
        // A variable the test process has (cargo sets it), standing in for the key's.
        r.api_key_env = Some(KEY_VAR.into());
        r.tools = ["read_file", "write_file", "edit_file", "bash"]
            .map(String::from)
            .to_vec();
        r.permissions.push(agent_team_config::PolicyRule {
            tool: "bash".into(),
            pattern: None,
            action: agent_team_config::PermAction::Ask,
        });
        r
    }

    const KEY_VAR: &str = "CARGO_PKG_NAME";

    fn agent() -> AgentEnv {
        AgentEnv {
            socket: PathBuf::from("/run/team/daemon.sock"),
            team: "t".into(),
            name: "oc1".into(),
            secret: "s3cret-agent".into(),
            incarnation: 2,
            log_file: None,
            workspace: Some(PathBuf::from("/work/ws")),
            member: Default::default(),
            external: true,
            healer: None,
        }
    }

    fn launch(headless: bool, session: Option<&Conversation>) -> Launch {
        let role = role();
        plan(
            &agent(),
            &agent_team_config::empty_team("t", Path::new("/ws")),
            &role,
            Path::new("/h"),
            Path::new("/bin/agent-team-bridge"),
            headless,
            session,
        )
        .unwrap()
    }

    fn file<'a>(l: &'a Launch, path: &str) -> &'a str {
        l.files
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .map(|(_, c)| c.as_str())
            .unwrap_or_else(|| panic!("no {path} in {:?}", l.files))
    }

    fn env<'a>(l: &'a Launch, k: &str) -> Option<&'a str> {
        l.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_launch_has_a_private_home_its_config_and_no_secret_in_any_file() {
        let key = std::env::var(KEY_VAR).unwrap();
        let l = launch(true, None);
        assert_eq!(l.program, "opencode");
        for (k, v) in [
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/h/.config"),
            ("XDG_DATA_HOME", "/h/.local/share"),
            ("XDG_STATE_HOME", "/h/.local/state"),
            ("XDG_CACHE_HOME", "/h/.cache"),
            ("OPENCODE_CONFIG", "/h/opencode.json"),
            ("OPENCODE_CONFIG_CONTENT", ""),
            ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1"),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
            ("OPENCODE_DISABLE_PROJECT_CONFIG", "1"),
            // The key reaches it in the variable its config names, not in a file.
            (KEY_VAR, key.as_str()),
        ] {
            assert_eq!(env(&l, k), Some(v), "{k}");
        }
        let config: serde_json::Value = serde_json::from_str(file(&l, "/h/opencode.json")).unwrap();
        assert_eq!(config["model"], "team/qwen3-coder");
        let team = &config["provider"]["team"];
        assert_eq!(team["npm"], "@ai-sdk/openai-compatible");
        assert_eq!(team["options"]["baseURL"], "http://127.0.0.1:9/v1");
        assert_eq!(team["options"]["apiKey"], format!("{{env:{KEY_VAR}}}"));
        assert_eq!(team["models"]["qwen3-coder"]["tool_call"], true);
        let mcp = &config["mcp"]["team"];
        assert_eq!(mcp["type"], "local");
        assert_eq!(
            mcp["command"],
            json!(["/bin/agent-team-bridge", "mcp", "/h/mcp.sock"])
        );
        assert_eq!(
            l.serving.hook_socket.as_deref(),
            Some(Path::new("/h/hook.sock"))
        );
        assert_eq!(config["permission"]["*"], "allow");
        assert_eq!(config["permission"]["task"], "deny");
        assert_eq!(config["plugin"], json!(["file:///h/agent-team-plugin.js"]));
        for (path, text) in &l.files {
            assert!(
                !text.contains("s3cret-agent") && !text.contains(&format!("\"{key}\"")),
                "{path:?}"
            );
        }
        // Seeded, so opencode installs nothing from npm.
        let lock: serde_json::Value =
            serde_json::from_str(file(&l, "/h/.config/opencode/package-lock.json")).unwrap();
        assert_eq!(
            lock["packages"][""]["dependencies"]["@opencode-ai/plugin"],
            PLUGIN_PACKAGE_VERSION
        );
        file(&l, "/h/.config/opencode/node_modules/.agent-team");
    }

    #[test]
    fn headless_its_prompt_is_on_stdin_interactive_an_argument_and_resumed_typed() {
        let l = launch(true, None);
        assert_eq!(l.args, ["run"]);
        assert_eq!(l.stdin.as_deref(), Some(Path::new("/h/prompt.md")));
        assert!(file(&l, "/h/prompt.md").contains("Your name is oc1."));
        let l = launch(false, None);
        assert_eq!(l.args[0], "--prompt");
        assert!(l.args[1].contains("Your name is oc1."));
        assert_eq!(l.stdin, None);
        // A recorded session is resumed, in either mode.
        let resume = Conversation::Resume("ses_1a2b3c4d5e6f7g8h".into());
        assert_eq!(
            launch(true, Some(&resume)).args,
            ["run", "--session", "ses_1a2b3c4d5e6f7g8h"]
        );
        // Resumed in a pane, the instruction to carry on is typed (the TUI ignores `--prompt`
        // there).
        let l = launch(false, Some(&resume));
        assert_eq!(l.args, ["--session", "ses_1a2b3c4d5e6f7g8h"]);
        assert!(file(&l, "/h/first-input.md").contains("You were restarted"));
        assert_eq!(
            l.serving.first_input_file.as_deref(),
            Some(Path::new("/h/first-input.md"))
        );
    }

    #[test]
    fn the_plugin_judges_the_tools_the_role_must_and_runs_our_hooks() {
        let judged = opencode_judged(&role());
        // `bash` is `ask`; the web, search, list and todo tools the role lacks; `task` is ours
        // to refuse. read/write/edit are allowed outright.
        for name in [
            "bash",
            "glob",
            "grep",
            "list",
            "webfetch",
            "todowrite",
            "task",
        ] {
            assert!(judged.iter().any(|j| j == name), "{name}: {judged:?}");
        }
        for name in ["read", "write", "edit", "apply_patch"] {
            assert!(!judged.iter().any(|j| j == name), "{name}: {judged:?}");
        }
        let headless = launch(true, None);
        let js = file(&headless, "/h/agent-team-plugin.js");
        assert!(js.contains(&format!("new Set({})", json!(judged))), "{js}");
        assert!(
            js.contains(
                r#"const PRE_TOOL = "/bin/agent-team-bridge hook pre-tool-use --cli opencode --socket /h/hook.sock""#
            ),
            "{js}"
        );
        assert!(
            js.contains(r#"const STOP = "/bin/agent-team-bridge hook stop --socket /h/hook.sock""#),
            "{js}"
        );
        assert!(js.contains("const HAND_BACK = false"), "{js}");
        assert!(
            js.contains(r#"const SESSION_FILE = "/h/session-id""#),
            "{js}"
        );
        let tmux = launch(false, None);
        assert!(file(&tmux, "/h/agent-team-plugin.js").contains("const HAND_BACK = true"));
        assert_eq!(
            Opencode.pre_tool_answer(false, "no").as_deref(),
            Some(r#"{"allow":false,"reason":"no"}"#)
        );
    }

    #[test]
    fn its_own_session_ids_are_resumed_once_its_database_exists() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let cli = adapter(Provider::Opencode).unwrap();
        std::fs::write(home.join(SESSION_FILE), "ses_1a2b3c4d5e6f7g8h\n").unwrap();
        assert!(matches!(session_for(cli, home), Some(Conversation::New(_))));
        std::fs::create_dir_all(home.join(DATA_DIR)).unwrap();
        std::fs::write(home.join(DATA_DIR).join("opencode.db"), "").unwrap();
        assert_eq!(
            session_for(cli, home),
            Some(Conversation::Resume("ses_1a2b3c4d5e6f7g8h".into()))
        );
        for bad in [
            "--dangerous",
            "ses_",
            "ses_a b",
            "0cb916db-26aa-40f2-86b5-1ba81b225fd2",
        ] {
            std::fs::write(home.join(SESSION_FILE), bad).unwrap();
            assert!(
                matches!(session_for(cli, home), Some(Conversation::New(_))),
                "{bad}"
            );
        }
    }
}
