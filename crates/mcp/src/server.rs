//! What one launch of a CLI shares between its MCP sessions, its hooks and its pane: the
//! agent's [`Session`], the tools it is offered, and the CLI-side state ([`PaneInput`], the
//! [`CliEnd`]); and the CLI's idle point, where the session's inbox is handed over.

use crate::Session;
use crate::end::CliEnd;
use crate::pane::PaneInput;
use agent_team_protocol::{DeliveryState, Message, Request};
use agent_team_worker::inbox::Handover;
use std::sync::Arc;

/// The team's tools and hooks of one CLI launch, served through the agent's session.
#[derive(Clone)]
pub struct TeamServer {
    pub(crate) session: Arc<Session>,
    /// The tools the CLI is offered (its team tools and the MCP-only ones).
    pub(crate) names: Arc<Vec<&'static str>>,
    pub(crate) pane: Arc<PaneInput>,
    /// How the CLI is ended once a shutdown request was carried out.
    pub(crate) end: Arc<CliEnd>,
}

impl TeamServer {
    /// A server over the agent's `session`, ending its CLI with `end`.
    pub(crate) fn new(session: Arc<Session>, end: Arc<CliEnd>) -> Self {
        let names = crate::tools::tool_names(session.is_leader());
        TeamServer {
            session,
            names: Arc::new(names),
            pane: Arc::new(PaneInput::default()),
            end,
        }
    }

    /// The idle point: what is queued, in the worker's order, or the end (the shutdown
    /// requests answered and marked read the first time).
    pub(crate) async fn hand_over(&self) -> Handover {
        let s = &self.session;
        s.inbox().hand_over(s.link().as_ref(), s.out()).await
    }

    /// Marks messages read: the CLI has them now.
    pub(crate) async fn mark_read(&self, messages: &[Message]) {
        if messages.is_empty() {
            return;
        }
        let ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
        let _ = self
            .session
            .link()
            .call_retry(Request::Ack {
                ids,
                state: DeliveryState::Read,
            })
            .await;
    }
}

/// One message as the CLI is given it.
pub(crate) fn render(m: &Message) -> String {
    format!("[message {} from {}] {}", m.id, m.from, m.body)
}

/// What a CLI asked to shut down is told.
pub(crate) fn shutdown_reason(requests: &[Message]) -> String {
    format!(
        "Your team asked you to shut down; this session ends now. Call no more tools.\n{}",
        requests.iter().map(render).collect::<Vec<_>>().join("\n")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_protocol::{MessageKind, Timestamp};

    #[test]
    fn a_cli_asked_to_shut_down_is_told_why_and_by_whom() {
        let m = Message {
            id: 9,
            from: "leader".into(),
            to: "cc".into(),
            kind: MessageKind::ShutdownRequest,
            body: "body 9".into(),
            summary: None,
            ts: Timestamp::from(std::time::SystemTime::now()),
            state: DeliveryState::Delivered,
        };
        let reason = shutdown_reason(&[m]);
        assert!(reason.contains("shut down"), "{reason}");
        assert!(
            reason.contains("[message 9 from leader] body 9"),
            "{reason}"
        );
    }
}
