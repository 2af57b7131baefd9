//! `agent-team`: the operator's command line. A thin layer over the client library: it resolves
//! the team, starts the daemon when needed, makes requests and prints the answers.

mod backend;
mod cli;
mod cmd;
mod ctx;
mod output;

use agent_team_client::ClientError;
use agent_team_protocol::ErrorCode;
use clap::Parser;
use std::fmt;
use std::process::ExitCode;

/// An error with a hint on what to do about it, printed as `what (hint)`.
#[derive(Debug)]
pub struct Hinted {
    what: String,
    hint: String,
}

impl Hinted {
    /// An error and its hint.
    pub fn new(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            what: what.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.hint)
    }
}

impl std::error::Error for Hinted {}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-team: error: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// One line: what failed, and a hint in parentheses.
fn describe(e: &anyhow::Error) -> String {
    if let Some(h) = e.downcast_ref::<Hinted>() {
        return h.to_string();
    }
    if let Some(ce) = e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        return match ce {
            ClientError::Server(body) | ClientError::Refused(body) => {
                format!("{} ({})", body.message, hint_for(body.code, &body.details))
            }
            ClientError::Connect { path, .. } => {
                format!(
                    "no daemon answers on {} (start the team with `agent-team up`)",
                    path.display()
                )
            }
            other => format!("{other} (check `agent-team teams show` and the daemon log)"),
        };
    }
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    format!("{} (see `agent-team --help`)", chain.join(": "))
}

fn hint_for(code: ErrorCode, details: &serde_json::Value) -> String {
    match code {
        ErrorCode::NotFound if details.get("valid").is_some() => {
            let names: Vec<String> = details["valid"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "valid names: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        }
        ErrorCode::NotFound => {
            "list what exists with `agent-team task list` or `agent-team ps`".into()
        }
        ErrorCode::Blocked => {
            "it starts once its blockers complete; see `agent-team task list`".into()
        }
        ErrorCode::Busy => "the agent must finish or release its current task first".into(),
        ErrorCode::Conflict => "someone else holds it; see `agent-team task show`".into(),
        ErrorCode::InvalidState => "see `agent-team task show` for its current state".into(),
        ErrorCode::PermissionDenied => "only the leader or the operator may do that".into(),
        ErrorCode::InboxFull => "the recipient must read its messages first".into(),
        ErrorCode::BadRequest => "check the arguments".into(),
        ErrorCode::Unauthorized => "the credential is wrong or stale; restart the team".into(),
        ErrorCode::UnsupportedVersion => {
            "the daemon runs another agent-team version; `agent-team down` then retry".into()
        }
        ErrorCode::Internal => "see the daemon log in the team's state directory".into(),
    }
}
