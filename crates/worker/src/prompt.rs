//! The leader pane's approval prompt: when a person watches the leader's pane (stdin is a
//! terminal) and the team's approver is the human, each permission request is shown there and
//! answered with `y` (once), `a` (always) or `n REASON` (deny). `agent-team approve/deny` from any
//! terminal works at the same time; whichever answers first decides.

use crate::link::{CallError, Link};
use crate::output::Output;
use agent_team_protocol::*;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// Open prompts and the terminal's answers.
pub struct Approvals {
    lines: Option<mpsc::UnboundedReceiver<String>>,
    open: VecDeque<u64>,
}

impl Approvals {
    /// Prompts in this pane if `wanted` and stdin is a terminal; otherwise does nothing.
    pub fn new(wanted: bool) -> Self {
        let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
        if !(wanted && tty) {
            return Approvals {
                lines: None,
                open: VecDeque::new(),
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if tx.send(line.trim().to_string()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        Approvals {
            lines: Some(rx),
            open: VecDeque::new(),
        }
    }

    /// Whether this pane prompts.
    pub fn active(&self) -> bool {
        self.lines.is_some()
    }

    /// Shows a `permission` message from the daemon as a prompt.
    pub fn ask(&mut self, m: &Message, out: &Output) {
        let Some(id) = request_id(&m.body) else {
            return;
        };
        self.open.push_back(id);
        out.say(&format!(
            "⚖ permission {}\n  allow? [y] once, [a] always, [n REASON] deny: ",
            agent_team_protocol::text::printable(&m.body)
        ));
    }

    /// The next line typed at the terminal (never resolves when not prompting).
    pub async fn next_line(&mut self) -> Option<String> {
        match self.lines.as_mut() {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Applies lines already typed.
    pub async fn answer_pending(&mut self, link: &Link, out: &Output) {
        while let Some(line) = self.lines.as_mut().and_then(|rx| rx.try_recv().ok()) {
            self.take_line(Some(line), link, out).await;
        }
    }

    /// Applies one typed line to the oldest open prompt.
    pub async fn take_line(&mut self, line: Option<String>, link: &Link, out: &Output) {
        let Some(line) = line else {
            self.lines = None; // stdin closed: stop prompting
            return;
        };
        let Some(id) = self.open.pop_front() else {
            if !line.is_empty() {
                out.say("(no permission request is waiting for an answer)");
            }
            return;
        };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let (allow, always, reason) = match word.to_lowercase().as_str() {
            "y" | "yes" | "" => (true, false, None),
            "a" | "always" => (true, true, None),
            "n" | "no" => (
                false,
                false,
                Some(if rest.trim().is_empty() {
                    "denied in the leader's pane".to_string()
                } else {
                    rest.trim().to_string()
                }),
            ),
            _ => {
                out.say("  answer y, a or n REASON");
                self.open.push_front(id);
                return;
            }
        };
        match link
            .call_retry(Request::PermDecide {
                id,
                allow,
                always,
                pattern: None,
                reason,
            })
            .await
        {
            Ok(_) => out.say(&format!(
                "  request {id}: {}",
                if allow {
                    if always {
                        "allowed always"
                    } else {
                        "allowed once"
                    }
                } else {
                    "denied"
                }
            )),
            Err(CallError::Server(e)) if e.code == ErrorCode::InvalidState => {
                out.say(&format!("  request {id} was already decided"))
            }
            Err(e) => out.say(&format!("  could not decide request {id}: {e}")),
        }
    }
}

/// The id in a daemon `permission` message: `request 12: ...`.
pub fn request_id(body: &str) -> Option<u64> {
    body.strip_prefix("request ")?
        .split(':')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids() {
        assert_eq!(
            super::request_id("request 12: b1 wants to run bash `ls`"),
            Some(12)
        );
        assert_eq!(super::request_id("hello"), None);
    }
}
