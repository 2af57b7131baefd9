//! `agent-team`: the operator's command line. A thin layer over the client library: it resolves
//! the team, starts the daemon when needed, makes requests and prints the answers.

mod arena;
mod backend;
mod cli;
mod cmd;
mod code_pages;
mod ctx;
mod output;

use agent_team_client::ClientError;
use agent_team_protocol::ErrorCode;
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
    let cli = cli::Cli::parse_args();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-team: error: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// One line: what failed, and a hint in parentheses.
pub(crate) fn describe(e: &anyhow::Error) -> String {
    if let Some(h) = e.downcast_ref::<Hinted>() {
        return h.to_string();
    }
    if let Some(ce) = e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        return match ce {
            ClientError::Server(body) | ClientError::Refused(body) => {
                format!(
                    "{} ({})",
                    body.message,
                    hint_for(body.code, &body.message, &body.details)
                )
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
    // A context often repeats its cause's text: keep each part once.
    let mut chain: Vec<String> = Vec::new();
    for part in e.chain().map(|c| c.to_string()) {
        if !chain.iter().any(|p| p.contains(&part)) {
            chain.push(part);
        }
    }
    let text = chain.join(": ");
    if text.ends_with(')') {
        // It carries its own hint already.
        text
    } else {
        format!("{text} (see `agent-team --help`)")
    }
}

fn hint_for(code: ErrorCode, message: &str, details: &serde_json::Value) -> String {
    match code {
        // The daemon's message already lists the valid names.
        ErrorCode::NotFound if message.contains("valid names") => {
            "check the spelling; `agent-team ps` lists the team".into()
        }
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
        ErrorCode::Conflict if details.get("paths").is_some() => format!(
            "resolve it by hand with `git merge {}` in the workspace, or drop it with `agent-team finish --discard`",
            details["branch"].as_str().unwrap_or("the branch")
        ),
        ErrorCode::Conflict if details.get("agent").is_some() => {
            "pick another name, or `agent-team restart` that agent".into()
        }
        ErrorCode::Conflict => "someone else holds it; see `agent-team task show`".into(),
        ErrorCode::InvalidState if details.get("max_teammates").is_some() => {
            "raise max_teammates in the team file, or `agent-team kill` a teammate first".into()
        }
        ErrorCode::InvalidState if details.get("task").is_some() => {
            "see `agent-team task show` for its current state".into()
        }
        ErrorCode::InvalidState => "see `agent-team ps` and `agent-team task list`".into(),
        ErrorCode::PermissionDenied => "only the leader or the operator may do that".into(),
        ErrorCode::InboxFull => "the recipient must read its messages first".into(),
        ErrorCode::BadRequest => "check the arguments".into(),
        ErrorCode::Unauthorized => "the credential is wrong or stale; restart the team".into(),
        ErrorCode::UnsupportedVersion => {
            "the daemon runs another agent-team version; `agent-team down` then retry".into()
        }
        ErrorCode::Internal => "see the daemon log in the team's state directory".into(),
        ErrorCode::LimitExceeded => {
            "see the [limits] of the team file (docs/SECURITY.md lists them)".into()
        }
        ErrorCode::StorageFull => "free some disk space; the team resumes by itself".into(),
    }
}
