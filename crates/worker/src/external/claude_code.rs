//! Claude Code (`@anthropic-ai/claude-code`): Anthropic Messages; a seeded `.claude.json` so no
//! onboarding, key or folder-trust screen shows; our MCP server through `--mcp-config
//! --strict-mcp-config`; hooks in a `--settings` file (`Stop` hands queued messages back,
//! `PreToolUse` has its own tools judged); `--session-id` / `--resume`. Interactive, its first
//! instruction is typed into the pane once the team tools are listed (it connects MCP servers
//! in the background).

use super::{
    CliAdapter, Launch, LaunchCtx, PERMISSION_HOOK_TIMEOUT_SECS, allowed_outright,
    conversation::session_args, extra_args, pretty, team_tools,
};
use crate::AgentError;
use agent_team_config::{Provider, Role};
use agent_team_tools::cli_names::CLAUDE_CODE;
use serde_json::json;

/// The Claude Code adapter.
pub struct ClaudeCode;

impl CliAdapter for ClaudeCode {
    fn provider(&self) -> Provider {
        Provider::ClaudeCode
    }
    fn program(&self) -> &'static str {
        "claude"
    }
    fn npm_package(&self) -> Option<&'static str> {
        Some("@anthropic-ai/claude-code")
    }
    fn tested_version(&self) -> Option<&'static str> {
        Some(super::tested::CLAUDE_CODE)
    }
    fn transcripts_dir(&self) -> Option<&'static str> {
        Some(".claude")
    }
    fn types_first_input(&self, cx: &LaunchCtx<'_>) -> bool {
        !cx.headless
    }
    /// The prompt comes first (`--allowedTools` and `--disallowedTools` take every word after
    /// them), so extra words go last.
    fn extra_args_at(&self, args: &[String]) -> usize {
        args.len()
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (home, role) = (cx.home, cx.role);
        let config_dir = home.join(".claude");
        let settings = home.join("settings.json");
        let api_key = cx.model_key().unwrap_or_default();
        l.files.push((
            config_dir.join(".claude.json"),
            pretty(&seeded_config(cx, &api_key)),
        ));
        let tools = claude_tools(role);
        l.files.push((
            settings.clone(),
            pretty(&json!({"hooks": hooks(cx, &tools.asked)})),
        ));
        l.env.extend([
            ("HOME".into(), home.display().to_string()),
            ("CLAUDE_CONFIG_DIR".into(), config_dir.display().to_string()),
            ("ANTHROPIC_API_KEY".into(), api_key),
            ("ANTHROPIC_MODEL".into(), role.model.clone()),
            ("IS_SANDBOX".into(), "1".into()),
        ]);
        l.env
            .extend(QUIET.iter().map(|v| (v.to_string(), "1".to_string())));
        // The team tools offered outright, not deferred behind its `ToolSearch` (2.1.330).
        l.env.push(("ENABLE_TOOL_SEARCH".into(), "false".into()));
        if let Some(url) = cx.model_url() {
            l.env.push(("ANTHROPIC_BASE_URL".into(), url));
        }
        if cx.headless {
            l.args.extend(["-p".into(), cx.prompt.clone()]);
        } else {
            l.files.push((cx.first_input_file(), cx.prompt.clone()));
        }
        let (resume, session_file) = session_args(cx.session, cx.home);
        l.args.extend(resume);
        l.files.extend(session_file);
        l.args.extend([
            // Not its "auto" mode (the default since 2.1.330), which stops at the first tool
            // call with a screen of its own: our hooks and lists decide.
            "--permission-mode".into(),
            "default".into(),
            "--mcp-config".into(),
            cx.mcp_file().display().to_string(),
            "--strict-mcp-config".into(),
            "--settings".into(),
            settings.display().to_string(),
            "--model".into(),
            role.model.clone(),
            "--allowedTools".into(),
            team_tools(cx.agent)
                .into_iter()
                .chain(tools.allowed)
                .collect::<Vec<_>>()
                .join(","),
        ]);
        if !tools.disallowed.is_empty() {
            l.args
                .extend(["--disallowedTools".into(), tools.disallowed.join(",")]);
        }
        l.args.extend(extra_args(role));
        Ok(())
    }
}

/// `.claude.json` seeded so no onboarding, theme, key or folder-trust screen shows (CLIS.md).
fn seeded_config(cx: &LaunchCtx<'_>, api_key: &str) -> serde_json::Value {
    let tail: String = {
        let n = api_key.chars().count();
        api_key.chars().skip(n.saturating_sub(20)).collect()
    };
    json!({
        "hasCompletedOnboarding": true,
        "theme": "dark",
        "bypassPermissionsModeAccepted": true,
        "customApiKeyResponses": {"approved": [tail], "rejected": []},
        "projects": {
            cx.cwd.display().to_string(): {
                "hasTrustDialogAccepted": true,
                "hasCompletedProjectOnboarding": true,
                "allowedTools": [],
            }
        }
    })
}

/// Set (to `1`) so it makes no request of its own: no updates, telemetry, error reports,
/// feature flags or marketplace, and no side requests to the model (a session title, memory, a
/// survey): every model request is the teammate's own work.
const QUIET: &[&str] = &[
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "DISABLE_AUTOUPDATER",
    "DISABLE_TELEMETRY",
    "DISABLE_ERROR_REPORTING",
    "CLAUDE_CODE_DISABLE_FEATURE_FLAGS",
    "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE",
    "CLAUDE_CODE_DISABLE_AUTO_MEMORY",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY",
];

/// The pre-tool hook's answer in the shape Claude Code and Qwen Code read: the call goes ahead,
/// or it is refused with `reason` (the model is told why).
pub(super) fn hook_answer(allow: bool, reason: &str) -> String {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": if allow { "allow" } else { "deny" },
            "permissionDecisionReason": reason,
        }
    })
    .to_string()
}

/// The hooks in Claude Code's settings shape (Qwen Code reads it too): at each turn's end
/// (`Stop`), `agent-team-bridge hook stop` hands the queued messages back as the next instruction;
/// before a call of one of `asked` (the CLI's own tools the role's policy must judge call by
/// call), `agent-team-bridge hook pre-tool-use` has it judged, asking the team where the policy
/// says `ask`. That hook may wait for a person, so its timeout is the daemon's to apply.
pub(super) fn hooks(cx: &LaunchCtx<'_>, asked: &[String]) -> serde_json::Value {
    let mut hooks = json!({
        "Stop": [{
            "matcher": "",
            "hooks": [{"type": "command", "command": cx.hook_command("stop", &[])}],
        }],
    });
    if !asked.is_empty() {
        hooks["PreToolUse"] = json!([{
            "matcher": asked.join("|"),
            "hooks": [{
                "type": "command",
                "command": cx.hook_command("pre-tool-use", &["--cli", cx.role.provider.as_str()]),
                "timeout": PERMISSION_HOOK_TIMEOUT_SECS,
            }],
        }]);
    }
    hooks
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
    for (name, ours) in CLAUDE_CODE.names() {
        if !role.tools.iter().any(|t| t == ours) {
            disallowed.push(name.to_string());
        } else if allowed_outright(role, ours) {
            allowed.push(name.to_string());
        } else {
            asked.push(name.to_string());
        }
    }
    // Claude Code's own task list, messages and subagents would be a second team beside ours.
    disallowed.extend(CLAUDE_CODE.own_team.iter().map(|t| t.to_string()));
    ClaudeTools {
        allowed,
        disallowed,
        asked,
    }
}
