//! One function per subcommand.

mod agents;
mod board;
mod daemon;
pub(crate) mod teams;
mod up;

use crate::cli::{Cli, Command};
use crate::ctx::Ctx;
use anyhow::Result;
use std::process::ExitCode;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let Cli {
        team,
        file,
        command,
    } = cli;
    if let Command::Teams(t) = command {
        return teams::teams(t);
    }
    // The demo is its own team unless told otherwise.
    let demo = matches!(&command, Command::Up(a) if a.demo)
        || matches!(&command, Command::Run(a) if a.demo);
    let team = if demo && team.is_none() {
        Some("demo".to_string())
    } else {
        team
    };
    let ctx = Ctx::resolve(team, if demo { None } else { file })?;
    match command {
        Command::Up(a) => up::up(&ctx, a),
        Command::Run(a) => up::run(&ctx, a),
        Command::Kill { name, json } => {
            agents::lifecycle(&ctx, agent_team_protocol::Request::Kill { name }, json)
        }
        Command::Restart { name, json } => {
            agents::lifecycle(&ctx, agent_team_protocol::Request::Restart { name }, json)
        }
        Command::Spawn { role, name, json } => agents::lifecycle(
            &ctx,
            agent_team_protocol::Request::Spawn { role, name },
            json,
        ),
        Command::Logs { name, follow } => agents::logs(&ctx, &name, follow),
        Command::Attach { name } => agents::attach(&ctx, &name),
        Command::Ps(j) => board::ps(&ctx, j.json),
        Command::Task(t) => board::task(&ctx, t),
        Command::Send {
            to,
            text,
            summary,
            json,
        } => board::send(&ctx, to, text, summary, json),
        Command::Inbox { name, unread, json } => board::inbox(&ctx, name, unread, json),
        Command::Perms { all, json } => board::perms(&ctx, all, json),
        Command::Approve { id, always } => board::decide(&ctx, id, true, always, None),
        Command::Deny { id, reason } => board::decide(&ctx, id, false, false, reason),
        Command::Events { follow, since } => board::events(&ctx, follow, since),
        Command::Down { json } => teams::down(&ctx, json),
        Command::Daemon {
            foreground,
            permission_timeout,
        } => daemon::daemon(&ctx, foreground, permission_timeout),
        Command::Teams(_) => unreachable_teams(),
    }
}

fn unreachable_teams() -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
