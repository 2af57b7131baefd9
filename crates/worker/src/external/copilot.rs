//! GitHub Copilot CLI (`@github/copilot`): the role's own model through Copilot's BYOK
//! provider (`COPILOT_PROVIDER_*`, OpenAI chat completions unless the role's `env` sets
//! `COPILOT_PROVIDER_TYPE`), never GitHub's, in offline mode (`COPILOT_OFFLINE`: no GitHub
//! login, telemetry, update or GitHub MCP server); a private `COPILOT_HOME` (and `HOME`,
//! `XDG_*`) whose `config.json` trusts the work dir (no folder-trust screen) and whose
//! `hooks/team.json` holds the hooks (`agentStop` hands queued messages back, `preToolUse`
//! has its own tools judged); our MCP server for this launch only (`--additional-mcp-config`);
//! `--allow-all` with every call it would have asked about judged by the `preToolUse` hook,
//! whose deny it obeys; `--session-id` / `--resume`; headless `-p`, in a pane `-i` (which
//! submits the first instruction once the MCP servers are up). Seen with 1.0.102
//! (docs/CLIS-research-copilot-opencode.md).
//!
//! Its hooks have no matcher: the pre-tool hook is run for every call, and lets through
//! (answers nothing) the team's own tools and Copilot's harmless ones ([`copilot_judges`]).

use super::{CliAdapter, Launch, LaunchCtx, PERMISSION_HOOK_TIMEOUT_SECS, extra_args, pretty};
use super::{Conversation, SESSION_FILE};
use crate::AgentError;
use agent_team_config::Provider;
use serde_json::json;
use std::path::Path;

/// The GitHub Copilot CLI adapter.
pub struct Copilot;

/// Copilot's own tools that touch nothing outside its session (a running shell's output, its
/// session database, its docs, a skill's text, asking the user): its pre-tool hook lets them
/// through. Every other tool it has is judged; one with no counterpart of ours is refused.
const HARMLESS: &[&str] = &[
    "read_bash",
    "stop_bash",
    "list_bash",
    "fetch_copilot_cli_documentation",
    "skill",
    "sql",
    "session_store_sql",
    "ask_user",
];

/// The model sees the team server's tools as `team-<tool>` (its hooks too).
const TEAM_PREFIX: &str = "team-";

/// Whether Copilot's pre-tool hook has a call of `tool` judged: any tool but the team's own
/// and the [`HARMLESS`] ones (its subagents, a second team, are judged and always refused; a
/// tool of its we do not know is refused too).
pub fn copilot_judges(tool: &str) -> bool {
    !(tool.starts_with(TEAM_PREFIX) || HARMLESS.contains(&tool))
}

impl CliAdapter for Copilot {
    fn provider(&self) -> Provider {
        Provider::Copilot
    }
    fn program(&self) -> &'static str {
        "copilot"
    }
    fn npm_package(&self) -> Option<&'static str> {
        Some("@github/copilot")
    }
    fn tested_version(&self) -> Option<&'static str> {
        Some(super::tested::COPILOT)
    }
    fn transcripts_dir(&self) -> Option<&'static str> {
        Some(".copilot")
    }
    /// `session-state/<id>/events.jsonl` under `COPILOT_HOME`.
    fn has_transcript(&self, dir: &Path, id: &str) -> bool {
        dir.join("session-state")
            .join(id)
            .join("events.jsonl")
            .is_file()
    }
    /// Its `preToolUse` hook reads a top-level decision; under `--allow-all` an allow needs
    /// no answer.
    fn pre_tool_answer(&self, allow: bool, reason: &str) -> Option<String> {
        (!allow).then(|| {
            json!({"permissionDecision": "deny", "permissionDecisionReason": reason}).to_string()
        })
    }
    fn hook_judges(&self, tool: &str) -> bool {
        copilot_judges(tool)
    }
    /// The prompt comes last after its flag (`-p` / `-i`): extra words go before both.
    fn extra_args_at(&self, args: &[String]) -> usize {
        args.len().saturating_sub(2)
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (home, role) = (cx.home, cx.role);
        let copilot_home = home.join(".copilot");
        // No folder-trust screen for the work dir (Copilot keeps its own keys beside it).
        l.files.push((
            copilot_home.join("config.json"),
            pretty(&json!({"trustedFolders": [cx.cwd.display().to_string()]})),
        ));
        l.files
            .push((copilot_home.join("hooks/team.json"), pretty(&hooks(cx))));
        // Our MCP server for this launch only, in Copilot's shape (every tool offered).
        let mcp_file = home.join("copilot-mcp.json");
        let mcp = json!({"mcpServers": {"team": {
            "type": "local",
            "command": cx.mcp_command(),
            "args": cx.mcp_args(),
            "tools": ["*"],
        }}});
        l.files.push((mcp_file.clone(), pretty(&mcp)));
        let dir = |d: &str| home.join(d).display().to_string();
        l.env.extend([
            ("HOME".into(), home.display().to_string()),
            ("COPILOT_HOME".into(), copilot_home.display().to_string()),
            ("XDG_CONFIG_HOME".into(), dir(".config")),
            // Copilot unpacks its runtime here on its first start (~235 MB).
            ("XDG_CACHE_HOME".into(), dir(".cache")),
            ("XDG_STATE_HOME".into(), dir(".local/state")),
            ("XDG_DATA_HOME".into(), dir(".local/share")),
            // No GitHub login, telemetry, update check or GitHub MCP server: the only
            // connection is to the role's model.
            ("COPILOT_OFFLINE".into(), "true".into()),
            ("COPILOT_AUTO_UPDATE".into(), "false".into()),
            ("COPILOT_PROVIDER_TYPE".into(), "openai".into()),
            // The team's model gateway when it serves this launch (issue 65), with the
            // agent's token for a key; else the role's upstream and key.
            (
                "COPILOT_PROVIDER_BASE_URL".into(),
                cx.model_url()
                    .unwrap_or_else(|| "https://api.openai.com/v1".into()),
            ),
            ("COPILOT_MODEL".into(), role.model.clone()),
        ]);
        if let Some(k) = cx.model_key() {
            l.env.push(("COPILOT_PROVIDER_API_KEY".into(), k));
        }
        // The user's GitHub tokens and other provider credentials would take precedence over
        // the role's key: empty, they are unset for Copilot.
        for var in [
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "COPILOT_GITHUB_TOKEN",
            "COPILOT_PROVIDER_BEARER_TOKEN",
            "COPILOT_PROVIDER_API_KEY_COMMAND",
        ] {
            l.env.push((var.into(), String::new()));
        }
        l.args.extend([
            // Every call allowed without asking (tools, paths, URLs): the `preToolUse`
            // hook's deny is what stops one.
            "--allow-all".into(),
            "--no-ask-user".into(),
            "--disable-builtin-mcps".into(),
            "--additional-mcp-config".into(),
            format!("@{}", mcp_file.display()),
        ]);
        match cx.session {
            Some(Conversation::New(id)) => {
                l.args.push(format!("--session-id={id}"));
                l.files.push((home.join(SESSION_FILE), id.clone()));
            }
            Some(Conversation::Resume(id)) => l.args.push(format!("--resume={id}")),
            None => {}
        }
        l.args.extend(extra_args(role));
        // In a pane, `-i` submits the prompt once the MCP servers are up (nothing is typed).
        let flag = if cx.headless { "-p" } else { "-i" };
        l.args.extend([flag.to_string(), cx.prompt.clone()]);
        Ok(())
    }
}

/// Its hooks file (`$COPILOT_HOME/hooks/team.json`): `agentStop` hands queued messages back,
/// `preToolUse` has its own tools judged (it has no matcher: [`CliAdapter::hook_judges`]).
fn hooks(cx: &LaunchCtx<'_>) -> serde_json::Value {
    let hook = |command: String, timeout: u64| {
        let entry = json!({"type": "command", "bash": command, "timeoutSec": timeout});
        json!([entry])
    };
    json!({"version": 1, "hooks": {
        "agentStop": hook(cx.hook_command("stop", &[]), 60),
        "preToolUse": hook(
            cx.hook_command("pre-tool-use", &["--cli", "copilot"]),
            PERMISSION_HOOK_TIMEOUT_SECS,
        ),
    }})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::{adapter, plan, session_for};
    use super::*;
    use agent_team_config::{Role, TeamConfig};
    use std::path::PathBuf;

    fn agent() -> crate::AgentEnv {
        crate::AgentEnv {
            socket: "/run/t.sock".into(),
            team: "t".into(),
            name: "cp".into(),
            secret: "s3cret".into(),
            incarnation: 3,
            log_file: Some("/logs/cp.log".into()),
            workspace: None,
            member: Default::default(),
            external: true,
            healer: None,
        }
    }

    fn role() -> Role {
        let mut r = agent_team_config::builtin_roles()
            .get("worker")
            .cloned()
            .unwrap();
        r.provider = Provider::Copilot;
        r.model = "gpt-4.1".into();
        r.base_url = Some("http://127.0.0.1:9/v1".into());
        // A variable the test process has (cargo sets it), standing in for the key's.
        r.api_key_env = Some(KEY_VAR.into());
        r
    }

    const KEY_VAR: &str = "CARGO_PKG_NAME";

    fn config() -> TeamConfig {
        let mut c = agent_team_config::empty_team("t", Path::new("/ws"));
        c.goal = Some("ship it".into());
        c
    }

    fn launch(role: &Role, headless: bool, session: Option<&Conversation>) -> Launch {
        plan(
            &agent(),
            &config(),
            role,
            Path::new("/home/cp"),
            Path::new("/bin/agent-team-bridge"),
            headless,
            session,
        )
        .unwrap()
    }

    fn file(l: &Launch, name: &str) -> serde_json::Value {
        let text = l
            .files
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .map(|(_, c)| c.as_str())
            .unwrap_or_else(|| panic!("no {name} in {:?}", l.files));
        serde_json::from_str(text).unwrap()
    }

    fn env_of<'a>(l: &'a Launch, k: &str) -> Option<&'a str> {
        l.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn copilot_gets_a_private_offline_home_its_model_and_no_github_token() {
        let mut r = role();
        r.env
            .insert("COPILOT_PROVIDER_TYPE".into(), "anthropic".into());
        let l = launch(&r, true, None);
        assert_eq!(l.program, "copilot");
        assert_eq!(l.cwd, PathBuf::from("/ws"));
        for (k, v) in [
            ("HOME", "/home/cp"),
            ("COPILOT_HOME", "/home/cp/.copilot"),
            ("XDG_CONFIG_HOME", "/home/cp/.config"),
            ("XDG_CACHE_HOME", "/home/cp/.cache"),
            ("XDG_STATE_HOME", "/home/cp/.local/state"),
            ("XDG_DATA_HOME", "/home/cp/.local/share"),
            ("COPILOT_OFFLINE", "true"),
            ("COPILOT_PROVIDER_BASE_URL", "http://127.0.0.1:9/v1"),
            ("COPILOT_MODEL", "gpt-4.1"),
            // The role's `env` comes last, so it picks another wire.
            ("COPILOT_PROVIDER_TYPE", "anthropic"),
            ("GITHUB_TOKEN", ""),
            ("GH_TOKEN", ""),
            ("COPILOT_GITHUB_TOKEN", ""),
            ("COPILOT_PROVIDER_BEARER_TOKEN", ""),
        ] {
            assert_eq!(env_of(&l, k), Some(v), "{k}");
        }
        // The folder-trust screen is answered for the work dir.
        assert_eq!(
            file(&l, ".copilot/config.json"),
            json!({"trustedFolders": ["/ws"]})
        );
        // The role's key, in Copilot's variable and nowhere else; the agent's secret nowhere.
        let key = std::env::var(KEY_VAR).ok();
        assert_eq!(env_of(&l, "COPILOT_PROVIDER_API_KEY"), key.as_deref());
        let key = key.unwrap_or_else(|| "s3cret".into());
        assert!(
            !l.args
                .iter()
                .any(|a| a.contains("s3cret") || a.contains(&key))
        );
        assert!(
            !l.files
                .iter()
                .any(|(_, t)| t.contains("s3cret") || t.contains(&key))
        );
        assert!(!l.env.iter().any(|(_, v)| v.contains("s3cret")));
    }

    #[test]
    fn copilot_gets_the_team_server_for_this_launch_and_its_hooks() {
        let l = launch(&role(), true, None);
        let at = |flag: &str| l.args.iter().position(|a| a == flag).unwrap();
        assert_eq!(
            l.args[at("--additional-mcp-config") + 1],
            "@/home/cp/copilot-mcp.json"
        );
        let mcp = file(&l, "copilot-mcp.json");
        let team = &mcp["mcpServers"]["team"];
        assert_eq!(team["type"], "local");
        assert_eq!(team["command"], "/bin/agent-team-bridge");
        assert_eq!(team["args"], json!(["mcp", "/home/cp/mcp.sock"]));
        assert_eq!(team["tools"], json!(["*"]));
        assert_eq!(
            l.serving.hook_socket.as_deref(),
            Some(Path::new("/home/cp/hook.sock"))
        );
        // Headless, the prompt is on the command line: nothing is typed.
        assert_eq!(l.serving.first_input_file, None);
        assert!(!l.serving.interactive);
        let hooks = file(&l, ".copilot/hooks/team.json");
        assert_eq!(hooks["version"], 1);
        let stop = &hooks["hooks"]["agentStop"][0];
        assert_eq!(stop["type"], "command");
        assert_eq!(
            stop["bash"],
            "/bin/agent-team-bridge hook stop --socket /home/cp/hook.sock"
        );
        let pre = &hooks["hooks"]["preToolUse"][0];
        assert_eq!(
            pre["bash"],
            "/bin/agent-team-bridge hook pre-tool-use --cli copilot --socket /home/cp/hook.sock"
        );
        assert_eq!(pre["timeoutSec"], PERMISSION_HOOK_TIMEOUT_SECS);
        for flag in ["--allow-all", "--no-ask-user", "--disable-builtin-mcps"] {
            assert!(l.args.iter().any(|a| a == flag), "{flag}: {:?}", l.args);
        }
    }

    #[test]
    fn copilot_runs_its_prompt_headless_or_interactive_in_its_session() {
        let new = Conversation::New("0cb916db-26aa-40f2-86b5-1ba81b225fd2".into());
        let l = launch(&role(), true, Some(&new));
        let n = l.args.len();
        assert_eq!(l.args[n - 2], "-p");
        assert!(l.args[n - 1].contains("Your name is cp."), "{:?}", l.args);
        assert!(
            l.args
                .contains(&"--session-id=0cb916db-26aa-40f2-86b5-1ba81b225fd2".to_string())
        );
        // The id is recorded, so a restart resumes it.
        let recorded = l.files.iter().find(|(p, _)| p.ends_with(SESSION_FILE));
        assert_eq!(
            recorded.map(|(_, id)| id.as_str()),
            Some("0cb916db-26aa-40f2-86b5-1ba81b225fd2")
        );
        // In a pane, `-i` submits it once the MCP servers are up (nothing is typed), and the
        // team server knows to wake an idle Copilot by typing its messages there.
        let resumed = Conversation::Resume("0cb916db-26aa-40f2-86b5-1ba81b225fd2".into());
        let l = launch(&role(), false, Some(&resumed));
        let n = l.args.len();
        assert_eq!(l.args[n - 2], "-i");
        assert_eq!(l.args[n - 1], super::super::RESUMED_INPUT);
        assert_eq!(l.serving.first_input_file, None);
        assert!(l.serving.interactive);
        assert!(
            l.args
                .contains(&"--resume=0cb916db-26aa-40f2-86b5-1ba81b225fd2".to_string())
        );
        assert!(!l.args.iter().any(|a| a.starts_with("--session-id")));
        // A role's extra words go before the prompt's flag, its `command`'s too.
        let mut r = role();
        r.env.insert(
            agent_team_pane::env::CLI_ARGS.into(),
            "--model gpt-5".into(),
        );
        r.command = Some(vec!["/opt/copilot".into(), "--banner".into()]);
        let l = launch(&r, true, None);
        assert_eq!(l.program, "/opt/copilot");
        let n = l.args.len();
        assert_eq!(
            &l.args[n - 5..n - 1],
            ["--model", "gpt-5", "--banner", "-p"]
        );
        let l = launch(&r, false, None);
        let n = l.args.len();
        assert_eq!(&l.args[n - 3..n - 1], ["--banner", "-i"]);
    }

    #[test]
    fn a_restart_resumes_the_session_copilot_wrote() {
        let cli = adapter(Provider::Copilot).unwrap();
        let dir = std::env::temp_dir().join(format!("at-copilot-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = "0cb916db-26aa-40f2-86b5-1ba81b225fd2";
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SESSION_FILE), id).unwrap();
        // Recorded, but Copilot never wrote it: a new session.
        assert!(matches!(session_for(cli, &dir), Some(Conversation::New(n)) if n != id));
        let state = dir.join(".copilot/session-state").join(id);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("events.jsonl"), "{}\n").unwrap();
        assert_eq!(
            session_for(cli, &dir),
            Some(Conversation::Resume(id.into()))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_hook_judges_copilots_tools_lets_the_team_through_and_denies_in_its_shape() {
        let cli = adapter(Provider::Copilot).unwrap();
        for judged in [
            "bash",
            "create",
            "edit",
            "view",
            "grep",
            "glob",
            "rg",
            "apply_patch",
            "task",
            "write_agent",
            "read_agent",
            "list_agents",
            "web_fetch",
            "some_new_tool",
        ] {
            assert!(cli.hook_judges(judged), "{judged}");
        }
        for passed in [
            "team-claim_task",
            "team-send_message",
            "read_bash",
            "sql",
            "skill",
        ] {
            assert!(!cli.hook_judges(passed), "{passed}");
        }
        // Every other CLI's hook judges what its matcher gives it.
        assert!(
            adapter(Provider::GeminiCli)
                .unwrap()
                .hook_judges("read_bash")
        );
        assert_eq!(cli.pre_tool_answer(true, ""), None);
        let deny: serde_json::Value =
            serde_json::from_str(&cli.pre_tool_answer(false, "no rm").unwrap()).unwrap();
        assert_eq!(
            deny,
            json!({"permissionDecision": "deny", "permissionDecisionReason": "no rm"})
        );
        // Its second-team tools are in its table's `own_team`, with no counterpart of ours.
        let table = agent_team_tools::cli_names::COPILOT;
        for own in ["task", "write_agent", "read_agent", "list_agents"] {
            assert!(table.own_team.contains(&own) && table.ours(own).is_none());
        }
    }
}
