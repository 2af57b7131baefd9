//! Codex (`@openai/codex`): the OpenAI Responses API through a `[model_providers.team]` of its
//! own; everything (our MCP server, its hooks, trust, no updates, no plugins, no detached
//! daemon) in a private `$CODEX_HOME/config.toml`; `codex exec` headless. Its hooks obey a
//! deny only, so the pre-tool hook answers nothing for an allowed call.

use super::{CliAdapter, Launch, LaunchCtx, PERMISSION_HOOK_TIMEOUT_SECS, allowed_outright};
use super::{extra_args, toml_str};
use crate::AgentError;
use agent_team_config::{Provider, Role};
use agent_team_tools::cli_names::CODEX;

/// The Codex adapter.
pub struct Codex;

impl CliAdapter for Codex {
    fn provider(&self) -> Provider {
        Provider::Codex
    }
    fn program(&self) -> &'static str {
        "codex"
    }
    fn npm_package(&self) -> Option<&'static str> {
        Some("@openai/codex")
    }
    fn tested_version(&self) -> Option<&'static str> {
        Some(super::tested::CODEX)
    }

    /// Codex obeys a hook's deny only and takes an allow as an error: nothing for an allowed
    /// call.
    fn pre_tool_answer(&self, allow: bool, reason: &str) -> Option<String> {
        (!allow).then(|| super::claude_code::hook_answer(false, reason))
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (home, role) = (cx.home, cx.role);
        let codex_home = home.join(".codex");
        let key_var = cx.key_var().unwrap_or_default();
        let base = cx
            .model_url()
            .unwrap_or_else(|| "https://api.openai.com/v1".into());
        let toml_list = |a: &[String]| {
            format!(
                "[{}]",
                a.iter().map(|w| toml_str(w)).collect::<Vec<_>>().join(", ")
            )
        };
        let mut toml = format!(
            "model = {model}\nmodel_provider = \"team\"\napproval_policy = \"never\"\n\
             sandbox_mode = {sandbox}\ncheck_for_update_on_startup = false\n\n\
             [model_providers.team]\nname = \"team\"\nbase_url = {base}\n\
             wire_api = \"responses\"\nenv_key = {key}\nrequest_max_retries = 0\n\
             stream_max_retries = 0\n\n[mcp_servers.team]\ncommand = {cmd}\nargs = {args}\n\
             default_tools_approval_mode = \"approve\"\n",
            model = toml_str(&role.model),
            sandbox = toml_str(codex_sandbox_mode(own_sandbox_cannot_nest(cx))),
            base = toml_str(&base),
            key = toml_str(&key_var),
            cmd = toml_str(&cx.mcp_command()),
            args = toml_list(&cx.mcp_args()),
        );
        // At each turn's end the queued messages are handed back as the next instruction, as
        // for Claude Code and Qwen Code.
        toml.push_str(&format!(
            "\n[[hooks.Stop]]\n\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = {}\n",
            toml_str(&cx.hook_command("stop", &[])),
        ));
        let judged = codex_judged(role);
        if !judged.is_empty() {
            // Codex obeys a hook's deny only (an allow is an error there): the hook answers
            // nothing for an allowed call.
            toml.push_str(&format!(
                "\n[[hooks.PreToolUse]]\nmatcher = {}\n\n[[hooks.PreToolUse.hooks]]\n\
                 type = \"command\"\ncommand = {}\ntimeout = {PERMISSION_HOOK_TIMEOUT_SECS}\n",
                toml_str(&format!("^({})$", judged.join("|"))),
                toml_str(&cx.hook_command("pre-tool-use", &["--cli", "codex"])),
            ));
        }
        toml.push_str(&format!(
            "\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n\n\
             [features]\nplugins = false\ndaemon_auto_start = false\n\n\
             [projects.{}]\ntrust_level = \"trusted\"\n",
            toml_str(&cx.cwd.display().to_string())
        ));
        l.files.push((codex_home.join("config.toml"), toml));
        // Codex makes the helper it runs its own sandbox through (`codex-linux-sandbox`, under
        // bubblewrap) in CODEX_HOME, and refuses to when CODEX_HOME is inside the temp dir (a
        // state dir under /tmp): a temp dir of its own keeps it out of that case.
        let tmp = home.join("tmp");
        l.files.push((tmp.join(".keep"), String::new()));
        l.env.extend([
            ("HOME".into(), home.display().to_string()),
            ("CODEX_HOME".into(), codex_home.display().to_string()),
            ("TMPDIR".into(), tmp.display().to_string()),
        ]);
        if let Some(k) = cx.model_key() {
            l.env.push((key_var, k));
        }
        if cx.headless {
            l.args
                .extend(["exec".into(), "--skip-git-repo-check".into()]);
        }
        l.args.push("--dangerously-bypass-hook-trust".into());
        l.args.extend(extra_args(role));
        l.args.push(cx.prompt.clone());
        Ok(())
    }
}

/// Codex's `sandbox_mode`: its own `workspace-write` sandbox, unless that cannot start
/// (`cannot_nest`), where ours, which already holds the whole CLI, is the boundary.
pub fn codex_sandbox_mode(cannot_nest: bool) -> &'static str {
    if cannot_nest {
        "danger-full-access"
    } else {
        "workspace-write"
    }
}

/// Whether Codex's own sandbox (bubblewrap making a user namespace) cannot start inside the
/// team's: ours is bubblewrap too and, for an operator who is root, drops every capability,
/// so a nested bubblewrap cannot map its user namespace (`bwrap: setting up uid map:
/// Operation not permitted`) and every shell call of Codex failed (seen with 0.169.0 and
/// 0.171.0).
fn own_sandbox_cannot_nest(cx: &LaunchCtx<'_>) -> bool {
    cx.config.sandbox.confines()
        && matches!(
            agent_team_sandbox::support().mechanism(),
            agent_team_sandbox::Mechanism::Namespace(_)
        )
        && nix::unistd::geteuid().is_root()
}

/// Codex's own tools that its `PreToolUse` hook must judge for `role`: the shell when the role
/// lacks it or does not allow it outright. Codex runs with `approval_policy = "never"` in its
/// workspace-write sandbox (or, where that cannot start, in ours only); the hook's deny is what
/// stops a call.
pub fn codex_judged(role: &Role) -> Vec<String> {
    CODEX
        .names()
        .filter(|(_, ours)| !allowed_outright(role, ours))
        .map(|(name, _)| name.to_string())
        .collect()
}
