//! Qwen Code (`@qwen-code/qwen-code`): OpenAI chat completions; a private `$QWEN_HOME` with a
//! `settings.json` holding the model, our trusted MCP server and the hooks (Claude Code's
//! shape with two differences); `yolo` approval with every call it would have asked about
//! judged by the pre-tool hook; `--session-id` / `--resume`.

use super::{CliAdapter, Launch, LaunchCtx, PERMISSION_HOOK_TIMEOUT_SECS, allowed_outright};
use super::{Conversation, claude_code, conversation::session_args, extra_args, pretty};
use crate::AgentError;
use agent_team_config::{Provider, Role};
use agent_team_tools::cli_names::QWEN_CODE;
use serde_json::json;

/// The Qwen Code adapter.
pub struct QwenCode;

impl CliAdapter for QwenCode {
    fn provider(&self) -> Provider {
        Provider::QwenCode
    }
    fn program(&self) -> &'static str {
        "qwen"
    }
    fn npm_package(&self) -> Option<&'static str> {
        Some("@qwen-code/qwen-code")
    }
    fn tested_version(&self) -> Option<&'static str> {
        Some(super::tested::QWEN_CODE)
    }
    fn transcripts_dir(&self) -> Option<&'static str> {
        Some(".qwen")
    }
    /// Resumed in a pane, its `-i` prompt can reach the model before the resumed conversation
    /// is loaded (as Gemini CLI's, whose fork it is; seen under load in CI), so the
    /// instruction to carry on is typed into the pane once it has listed the team tools.
    fn types_first_input(&self, cx: &LaunchCtx<'_>) -> bool {
        !cx.headless && matches!(cx.session, Some(Conversation::Resume(_)))
    }

    /// Before its `-p` / `-i` and the prompt that follows (or last, when the prompt is typed).
    fn extra_args_at(&self, args: &[String]) -> usize {
        args.iter()
            .rposition(|a| a == "-p" || a == "-i")
            .unwrap_or(args.len())
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (home, role) = (cx.home, cx.role);
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
                "command": cx.mcp_command(),
                "args": cx.mcp_args(),
                "trust": true,
            }},
            "hooks": qwen_hooks(claude_code::hooks(cx, &qwen_judged(role))),
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            "general": {"enableAutoUpdate": false},
        });
        l.files
            .push((qwen_home.join("settings.json"), pretty(&settings)));
        l.env.extend([
            ("HOME".into(), home.display().to_string()),
            ("QWEN_HOME".into(), qwen_home.display().to_string()),
            ("OPENAI_MODEL".into(), role.model.clone()),
            ("QWEN_CODE_NO_RELAUNCH".into(), "1".into()),
        ]);
        if let Some(url) = cx.model_url() {
            l.env.push(("OPENAI_BASE_URL".into(), url));
        }
        if let Some(k) = cx.model_key() {
            l.env.push(("OPENAI_API_KEY".into(), k));
        }
        l.args.extend(["--approval-mode".into(), "yolo".into()]);
        let (resume, session_file) = session_args(cx.session, cx.home);
        l.args.extend(resume);
        l.files.extend(session_file);
        l.args.extend(extra_args(role));
        if self.types_first_input(cx) {
            l.files.push((cx.first_input_file(), cx.prompt.clone()));
        } else {
            let flag = if cx.headless { "-p" } else { "-i" };
            l.args.extend([flag.to_string(), cx.prompt.clone()]);
        }
        Ok(())
    }
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

/// Qwen Code's own tools that the `PreToolUse` hook must judge for `role`: each whose
/// counterpart the role lacks or does not allow outright, and Qwen's own subagents, messages
/// and schedules (a second team beside ours), which the hook always refuses. Qwen runs in
/// `yolo` mode, since a `PreToolUse` allow cannot grant it a permission (CLIS.md) while a deny
/// is obeyed: every call it would have asked about passes through this hook instead.
pub fn qwen_judged(role: &Role) -> Vec<String> {
    QWEN_CODE
        .names()
        .filter(|(_, ours)| !allowed_outright(role, ours))
        .map(|(name, _)| name.to_string())
        .chain(QWEN_CODE.own_team.iter().map(|t| t.to_string()))
        .collect()
}
