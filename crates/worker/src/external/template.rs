//! The `cli` provider: any MCP-capable command, run from the role's `command` template with
//! `{mcp_config}`, `{prompt_file}`, `{prompt}`, `{name}`, `{team}`, `{model}` and `{workspace}`
//! filled in. It gets our MCP server's configuration and the first input; it has no hooks.

use super::{CliAdapter, Launch, LaunchCtx};
use crate::AgentError;
use agent_team_config::Provider;

/// The adapter of any command given as a template.
pub struct Template;

impl CliAdapter for Template {
    fn provider(&self) -> Provider {
        Provider::Cli
    }
    /// The role's `command` names it.
    fn program(&self) -> &'static str {
        ""
    }
    fn hooked(&self) -> bool {
        false
    }

    fn configure(&self, cx: &LaunchCtx<'_>, l: &mut Launch) -> Result<(), AgentError> {
        let (agent, role) = (cx.agent, cx.role);
        let Some(template) = role.command.as_ref().filter(|c| !c.is_empty()) else {
            return Err(AgentError::Config(format!(
                "role {:?} has provider \"cli\" but no `command` to run",
                role.name
            )));
        };
        let (mcp, prompt_file, ws) = (
            cx.mcp_file().display().to_string(),
            cx.prompt_file().display().to_string(),
            cx.cwd.display().to_string(),
        );
        let vars = [
            ("mcp_config", mcp.as_str()),
            ("prompt_file", prompt_file.as_str()),
            ("prompt", cx.prompt.as_str()),
            ("name", agent.name.as_str()),
            ("team", agent.team.as_str()),
            ("model", role.model.as_str()),
            ("workspace", ws.as_str()),
        ];
        let mut words = template.iter().map(|w| fill(w, &vars));
        l.program = words.next().unwrap_or_default();
        l.args.extend(words);
        Ok(())
    }
}

/// Replaces each `{name}` of `vars` in one word of the template.
fn fill(word: &str, vars: &[(&str, &str)]) -> String {
    let mut out = word.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}
