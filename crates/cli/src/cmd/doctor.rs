//! `agent-team doctor`: what this machine offers the team, starting with whether task commands
//! can be sandboxed (docs/SECURITY.md), so a missing protection is seen before it matters.

use crate::output;
use agent_team_paths::Paths;
use agent_team_worker::command::{SandboxSupport, sandbox_support};
use anyhow::Result;
use std::process::ExitCode;

/// Prints each check as `name: ok|missing — detail`; exits 0 either way (it informs).
pub fn doctor(json: bool) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    let (sandbox_ok, sandbox) = match sandbox_support() {
        SandboxSupport::Landlock(abi) => (
            true,
            format!(
                "Landlock ABI {abi}: task commands cannot read {} or {} and write only in their working dir and temp{}",
                paths.runtime.display(),
                paths.home.display(),
                if abi >= 6 {
                    "; they cannot signal the daemon or the agents"
                } else {
                    ""
                }
            ),
        ),
        SandboxSupport::Unavailable(why) => (
            false,
            format!(
                "{why}: task commands run unsandboxed and can read the operator credential in {}",
                paths.runtime.display()
            ),
        ),
    };
    let tmux = match agent_team_pane::tmux::version() {
        Ok((_, _, v)) => (true, v),
        Err(e) => (false, e.to_string()),
    };
    let checks = [("sandbox", sandbox_ok, sandbox), ("tmux", tmux.0, tmux.1)];
    if json {
        let v: Vec<serde_json::Value> = checks
            .iter()
            .map(
                |(name, ok, detail)| serde_json::json!({"check": name, "ok": ok, "detail": detail}),
            )
            .collect();
        output::json(&serde_json::json!({ "checks": v }));
    } else {
        for (name, ok, detail) in &checks {
            output::line(&format!(
                "{name}: {} — {detail}",
                if *ok { "ok" } else { "missing" }
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
