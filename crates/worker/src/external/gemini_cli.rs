//! Gemini CLI (`@google/gemini-cli`): the Gemini API at `GOOGLE_GEMINI_BASE_URL` with
//! `GEMINI_API_KEY`; a private `HOME` whose `.gemini/settings.json` holds the key auth, our
//! trusted MCP server, no telemetry or updates, and the hooks (`AfterAgent` hands queued
//! messages back, `BeforeTool` has its own tools judged); `--skip-trust` so no folder-trust
//! screen shows; `yolo` approval with every call it would have asked about judged by the
//! `BeforeTool` hook (a hook's allow grants nothing in its other modes, while a deny is
//! obeyed); `--resume` of the session it named itself (`--session-id` costs it ~200 ms of start:
//! it opens its project storage first). Seen with 0.61.0 (docs/CLIS.md).

use super::{CliAdapter, Launch, LaunchCtx, PERMISSION_HOOK_TIMEOUT_SECS, allowed_outright};
use super::{Conversation, extra_args, pretty};
use crate::AgentError;
use agent_team_config::{Provider, Role};
use agent_team_tools::cli_names::GEMINI_CLI;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The Gemini CLI adapter.
pub struct GeminiCli;

impl CliAdapter for GeminiCli {
    fn provider(&self) -> Provider {
        Provider::GeminiCli
    }
    fn program(&self) -> &'static str {
        "gemini"
    }
    fn npm_package(&self) -> Option<&'static str> {
        Some("@google/gemini-cli")
    }
    fn tested_version(&self) -> Option<&'static str> {
        Some(super::tested::GEMINI_CLI)
    }
    fn transcripts_dir(&self) -> Option<&'static str> {
        Some(".gemini")
    }
    /// `session-<date>-<first 8 of the id>.jsonl` under `.gemini/tmp/<project>/chats`.
    fn is_transcript_of(&self, file_name: &str, id: &str) -> bool {
        let short = id.get(..8).unwrap_or(id);
        file_name.starts_with("session-") && file_name.ends_with(&format!("-{short}.jsonl"))
    }
    /// The session Gemini CLI named itself in an earlier launch: the `sessionId` on the first
    /// line of its newest transcript (`.gemini/tmp/<project>/chats/session-….jsonl`).
    fn recorded_session(&self, home: &Path) -> Option<String> {
        newest_transcript(&home.join(".gemini/tmp"), 0)
            .and_then(|(_, path)| std::fs::read_to_string(path).ok())
            .and_then(|text| {
                let first = text.lines().next()?.to_string();
                let v: serde_json::Value = serde_json::from_str(&first).ok()?;
                v.get("sessionId")?.as_str().map(str::to_string)
            })
    }
    /// Resumed in a pane, its `-i` prompt goes to the model without the resumed conversation
    /// (seen in 0.61.0: only its session context and the prompt), so the instruction to carry
    /// on is typed into the pane once it has listed the team tools, by then with it.
    fn types_first_input(&self, cx: &LaunchCtx<'_>) -> bool {
        !cx.headless && matches!(cx.session, Some(Conversation::Resume(_)))
    }
    /// Its `BeforeTool` hook reads a top-level decision; in `yolo` an allow needs no answer.
    fn pre_tool_answer(&self, allow: bool, reason: &str) -> Option<String> {
        (!allow).then(|| json!({"decision": "deny", "reason": reason}).to_string())
    }

    /// Before its `-p` / `-i` and the prompt that follows (or last, when the prompt is typed).
    fn extra_args_at(&self, args: &[String]) -> usize {
        args.iter()
            .rposition(|a| a == "-p" || a == "-i")
            .unwrap_or(args.len())
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (home, role) = (cx.home, cx.role);
        let hook = |event: &str, command: String, timeout_ms: u64| {
            json!([{
                "matcher": match event {
                    "BeforeTool" => format!("^({})$", gemini_judged(role).join("|")),
                    _ => "*".to_string(),
                },
                "hooks": [{
                    "name": format!("agent-team-{event}"),
                    "type": "command",
                    "command": command,
                    "timeout": timeout_ms,
                }],
            }])
        };
        let mut hooks = json!({
            "AfterAgent": hook("AfterAgent", cx.hook_command("stop", &[]), 60_000),
        });
        if !gemini_judged(role).is_empty() {
            hooks["BeforeTool"] = hook(
                "BeforeTool",
                cx.hook_command("pre-tool-use", &["--cli", "gemini-cli"]),
                PERMISSION_HOOK_TIMEOUT_SECS * 1000,
            );
        }
        let settings = json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            // The update check runs unless its notification is off too (seen in 0.61.0).
            "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
            "mcpServers": {"team": {
                "command": cx.mcp_command(),
                "args": cx.mcp_args(),
                "trust": true,
            }},
            "hooks": hooks,
        });
        l.files
            .push((home.join(".gemini/settings.json"), pretty(&settings)));
        l.env.extend([
            ("HOME".into(), home.display().to_string()),
            // One node process, not a relaunched child beside its parent.
            ("GEMINI_CLI_NO_RELAUNCH".into(), "true".into()),
        ]);
        if !cx.headless {
            // It takes `CI=true` or `GITHUB_ACTIONS=true` for "no terminal" and, without `-i`
            // (a resumed launch), exits asking for input on stdin (seen in 0.61.0): in a pane
            // they are emptied.
            l.env.extend([
                ("CI".into(), String::new()),
                ("GITHUB_ACTIONS".into(), String::new()),
            ]);
        }
        if let Some(url) = cx.model_url() {
            l.env.push(("GOOGLE_GEMINI_BASE_URL".into(), url));
        }
        if let Some(k) = cx.model_key() {
            l.env.push(("GEMINI_API_KEY".into(), k));
        }
        // The model named, so no routing request picks one first.
        l.args.extend([
            "-m".into(),
            role.model.clone(),
            "--skip-trust".into(),
            "--approval-mode".into(),
            "yolo".into(),
        ]);
        // A new conversation is named by Gemini CLI itself (found afterwards: see
        // `recorded_session`).
        if let Some(Conversation::Resume(id)) = cx.session {
            l.args.extend(["--resume".into(), id.clone()]);
        }
        l.args.extend(extra_args(role));
        if self.types_first_input(cx) {
            l.files.push((cx.first_input_file(), cx.prompt.clone()));
        } else {
            // Interactive, `-i` queues the prompt until the MCP servers are up.
            let flag = if cx.headless { "-p" } else { "-i" };
            l.args.extend([flag.to_string(), cx.prompt.clone()]);
        }
        Ok(())
    }
}

/// The newest `session-*.jsonl` under `dir` (at most 3 levels down), with its time.
fn newest_transcript(dir: &Path, depth: u32) -> Option<(std::time::SystemTime, PathBuf)> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let kind = e.file_type().ok()?;
            if kind.is_dir() {
                return (depth < 3)
                    .then(|| newest_transcript(&path, depth + 1))
                    .flatten();
            }
            let name = e.file_name();
            let name = name.to_str()?;
            (name.starts_with("session-") && name.ends_with(".jsonl"))
                .then(|| Some((e.metadata().ok()?.modified().ok()?, path)))
                .flatten()
        })
        .max_by_key(|(t, _)| *t)
}

/// Gemini CLI's own tools its `BeforeTool` hook must judge for `role`: each whose counterpart
/// the role lacks or does not allow outright, and its subagents (a second team beside ours),
/// which the hook always refuses.
pub fn gemini_judged(role: &Role) -> Vec<String> {
    GEMINI_CLI
        .names()
        .filter(|(_, ours)| !allowed_outright(role, ours))
        .map(|(name, _)| name.to_string())
        .chain(GEMINI_CLI.own_team.iter().map(|t| t.to_string()))
        .collect()
}
