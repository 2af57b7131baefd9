//! Typing into the CLI's pane: its first instruction once it has listed the team's tools (an
//! interactive CLI connects its MCP servers in the background, so an instruction given at its
//! start could reach the model before the team tools exist), and, while it is idle, the
//! messages that come for it (which start its next turn).

use crate::server::{TeamServer, render};
use agent_team_protocol::{AgentStatus, Request};
use agent_team_worker::inbox::Handover;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after its first tool listing a CLI's first instruction is typed.
const FIRST_INPUT_SETTLE: Duration = Duration::from_secs(1);

/// How long after typing its first instruction a CLI that has neither called a tool nor ended
/// a turn is taken to have lost it, and it is typed once more (a model slower than this to its
/// first tool call sees the instruction twice).
const FIRST_INPUT_CONFIRM: Duration = Duration::from_secs(20);

/// What the pane side of one CLI launch keeps.
#[derive(Debug, Default)]
pub(crate) struct PaneInput {
    /// The CLI's first instruction, typed into its pane once it has listed the tools.
    first_input: Mutex<Option<String>>,
    /// The first instruction as typed, until the CLI calls one of the team tools: if its
    /// first turn ends without one, the tools were not yet its own when it began (Claude
    /// Code registers them a moment after listing them), and the turn-end hook gives the
    /// instruction again, once.
    unconfirmed_first: Mutex<Option<String>>,
    /// The CLI runs interactively in a pane (its messages are typed there when it is idle).
    pub(crate) interactive: AtomicBool,
    /// The CLI ended a turn with nothing queued and has not called a tool since.
    pub(crate) idle: AtomicBool,
    /// A task is waiting to wake the idle CLI with the next messages.
    waking: AtomicBool,
}

impl PaneInput {
    /// A tool call: the CLI is at work, not idle, and it has the team tools.
    pub(crate) fn working(&self) {
        self.idle.store(false, Ordering::SeqCst);
        if let Ok(mut u) = self.unconfirmed_first.lock() {
            *u = None;
        }
    }

    /// The first instruction again, once, when the first turn called no team tool.
    pub(crate) fn unconfirmed_first(&self) -> Option<String> {
        self.unconfirmed_first
            .lock()
            .ok()
            .and_then(|mut u| u.take())
    }
}

impl TeamServer {
    /// Types `text` into the agent's pane once the CLI has listed the tools (a launch's
    /// `ToolServing::first_input_file`).
    pub(crate) fn first_input_after_listing(&self, text: String) {
        if let Ok(mut f) = self.pane.first_input.lock() {
            *f = Some(text);
        }
        self.pane.interactive.store(true, Ordering::SeqCst);
    }

    /// The first listing of the tools: the CLI has them now, so its first instruction may go
    /// in, a moment later (the CLI makes the listed tools its own a moment after listing them);
    /// typed once more if nothing shows it arrived (a TUI still drawing, a resumed
    /// conversation on a loaded machine, can read a paste and drop it).
    pub(crate) fn listed(&self) {
        let Some(text) = self.pane.first_input.lock().ok().and_then(|mut f| f.take()) else {
            return;
        };
        if let Ok(mut u) = self.pane.unconfirmed_first.lock() {
            *u = Some(text.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FIRST_INPUT_SETTLE).await;
            me.type_in(text.clone(), "give the CLI its first instruction")
                .await;
            tokio::time::sleep(FIRST_INPUT_CONFIRM).await;
            // Cleared by a tool call or a turn's end.
            let lost = me
                .pane
                .unconfirmed_first
                .lock()
                .ok()
                .is_some_and(|u| u.as_deref() == Some(text.as_str()));
            if lost {
                tracing::warn!(
                    "the CLI did nothing with its first instruction in {} s: typed again",
                    FIRST_INPUT_CONFIRM.as_secs()
                );
                me.type_in(text, "give the CLI its first instruction").await;
            }
        });
    }

    /// The CLI's turn ended with nothing for it: it is idle, and an interactive one is woken
    /// by the next messages.
    pub(crate) fn went_idle(&self) {
        if self.pane.interactive.load(Ordering::SeqCst) {
            self.pane.idle.store(true, Ordering::SeqCst);
            self.wake_when_messages_come();
        }
    }

    /// While the interactive CLI is idle, waits for messages and types them into its pane,
    /// which starts its next turn (they are marked read then); a shutdown request ends the
    /// CLI instead. Looks again each second whether the CLI is still idle (a tool call or a
    /// hook ends that).
    fn wake_when_messages_come(&self) {
        if self.pane.waking.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let inbox = me.session.inbox().clone();
            while me.pane.idle.load(Ordering::SeqCst) && !inbox.is_gone() {
                let soon = tokio::time::Instant::now() + Duration::from_secs(1);
                if !inbox.wait_until(soon).await || !me.pane.idle.load(Ordering::SeqCst) {
                    continue;
                }
                let messages = match me.hand_over().await {
                    Handover::Messages(m) if m.is_empty() => continue,
                    Handover::Messages(m) => m,
                    Handover::Shutdown(_) => {
                        me.end.end();
                        break;
                    }
                };
                me.pane.idle.store(false, Ordering::SeqCst);
                me.mark_read(&messages).await;
                me.session.link().set_status(AgentStatus::Running).await;
                let text = format!(
                    "New messages from your team; act on them now:\n{}",
                    messages.iter().map(render).collect::<Vec<_>>().join("\n")
                );
                me.type_in(text, "wake the CLI").await;
            }
            me.pane.waking.store(false, Ordering::SeqCst);
        });
    }

    /// Types `text` into the agent's pane (through the daemon, which owns the panes).
    async fn type_in(&self, text: String, what: &str) {
        let link = self.session.link();
        if let Err(e) = link.call_retry(Request::PaneInput { text }).await {
            tracing::warn!("could not {what}: {e}");
        }
    }
}
