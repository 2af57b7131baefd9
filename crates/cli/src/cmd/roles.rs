//! `agent-team roles`: every role the team can use, with its description, tools and where it
//! comes from (built-in, the team file, `.agent-team/agents`, `.claude/agents`,
//! `.nyzhi/agents`), and the warnings role files gave.

use crate::output;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Lists the roles of the team file (`file`, else `agent-team.toml` here), or of the built-ins
/// and this directory's role files when there is none. Warnings go to stderr.
pub fn roles(file: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let file = file.or_else(|| Some(PathBuf::from("agent-team.toml")).filter(|p| p.exists()));
    let cfg = match &file {
        Some(f) => agent_team_config::load(f)?,
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            agent_team_config::workspace_team("default", &cwd)?
        }
    };
    print_warnings(&cfg.warnings);
    let mut roles: Vec<&agent_team_config::Role> = cfg.roles.values().collect();
    // The leader first, then by name.
    roles.sort_by_key(|r| (r.name != agent_team_protocol::names::LEADER, r.name.clone()));
    if json {
        let list: Vec<serde_json::Value> = roles
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "description": r.description,
                    "tools": r.tools,
                    "source": r.source,
                    "provider": r.provider,
                    "model": r.model,
                })
            })
            .collect();
        output::json(&serde_json::json!({"roles": list, "warnings": cfg.warnings}));
    } else {
        let rows: Vec<Vec<String>> = roles
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.source.clone(),
                    r.tools.join(","),
                    r.description.clone(),
                ]
            })
            .collect();
        output::table(&["ROLE", "SOURCE", "TOOLS", "DESCRIPTION"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a configuration's warnings on stderr, one line each.
pub fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}
