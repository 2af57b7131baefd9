//! The idle point, one for every agent loop (the exec teammate, the exec leader and the
//! model-driven agent, and an external CLI's MCP server through [`order`] and [`shut_down`]):
//! what arrived from the daemon is kept until the loop is between two
//! pieces of work, then taken in priority order ([`Message::priority`]: shutdown requests, then
//! the leader, the operator and the daemon, then peers; FIFO within each).
//!
//! The same rules hold everywhere:
//! - a shutdown request ends the loop, and is answered first: its sender gets a
//!   `shutdown_response` (the operator and the daemon are not agents and get none), then the
//!   request is marked read;
//! - a message is marked read only after it was acted on; what a shutdown leaves untaken stays
//!   unread for whoever runs as this agent next;
//! - the loop waits for the next event here, so a shutdown request reaches an idle agent at once.

use crate::link::{Inbound, Link};
use crate::output::Output;
use agent_team_protocol::names::{DAEMON, OPERATOR};
use agent_team_protocol::*;
use std::future::Future;
use std::path::{Path, PathBuf};

/// What the idle point needs from the daemon: [`Link`] in the agent, a fake in the tests.
pub trait Daemon: Sync {
    /// The agent's own name.
    fn name(&self) -> &str;
    /// Marks messages read, trying again across reconnects.
    fn read(&self, ids: Vec<u64>) -> impl Future<Output = ()> + Send;
    /// Sends a `shutdown_response` to `to` at most once per `key`.
    fn answer_shutdown(
        &self,
        to: &str,
        body: String,
        key: String,
    ) -> impl Future<Output = ()> + Send;
}

impl Daemon for Link {
    fn name(&self) -> &str {
        Link::name(self)
    }

    async fn read(&self, ids: Vec<u64>) {
        Link::read(self, ids).await
    }

    async fn answer_shutdown(&self, to: &str, body: String, key: String) {
        let _ = self
            .send_once(to, body, MessageKind::ShutdownResponse, key)
            .await;
    }
}

/// Messages that were acted on and may be marked read. Marking them is left to the caller,
/// who knows when acting is over (a model agent: after the turn that took them).
#[must_use = "acted-on messages must be marked read with `ack`"]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acted(Vec<u64>);

impl Acted {
    /// The ids, in the order they were taken.
    pub fn ids(&self) -> &[u64] {
        &self.0
    }

    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages `msgs`, acted on.
    pub(crate) fn of(msgs: &[Message]) -> Acted {
        Acted(msgs.iter().map(|m| m.id).collect())
    }

    /// Adds another idle point's messages, to be marked read together.
    pub fn extend(&mut self, other: Acted) {
        self.0.extend(other.0);
    }

    /// Marks them read.
    pub async fn ack(self, daemon: &impl Daemon) {
        if !self.0.is_empty() {
            daemon.read(self.0).await;
        }
    }
}

/// What an idle point's messages came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Go on working; these were acted on.
    Work(Acted),
    /// A shutdown request was answered and marked read: end the loop.
    Shutdown,
}

/// What woke a waiting loop.
// As large as `Inbound` itself, which travels unboxed too: it is matched at once, not kept.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Woken {
    /// A message, kept for the next [`crate::inbox::Inbox::take`].
    Message,
    /// Something else from the daemon (a task change, a reconnect).
    Event(Inbound),
    /// A line typed at the approval prompt.
    Line(Option<String>),
}

/// What the messages of an idle point come to, in the order they are taken: the one rule
/// shared by every agent loop and by an external CLI's MCP server.
#[derive(Debug, PartialEq)]
pub enum Order {
    /// No shutdown request: every message, to be acted on in this order.
    Work(Vec<Message>),
    /// Shutdown requested: `requests` are to be answered and marked read ([`shut_down`]) and
    /// the agent ends; `unread` (everything else) is not acted on and stays unread for whoever
    /// runs as this agent next.
    Shutdown {
        /// The shutdown requests, oldest first.
        requests: Vec<Message>,
        /// The other messages, in priority order.
        unread: Vec<Message>,
    },
}

/// Sorts an idle point's messages by [`Message::priority`] (shutdown requests, then the
/// leader, the operator and the daemon, then peers), FIFO by id within each, and splits off
/// the shutdown requests, which win over everything else.
pub fn order(mut msgs: Vec<Message>) -> Order {
    msgs.sort_by_key(|m| (m.priority(), m.id));
    let (requests, unread): (Vec<Message>, Vec<Message>) = msgs
        .into_iter()
        .partition(|m| m.kind == MessageKind::ShutdownRequest);
    if requests.is_empty() {
        Order::Work(unread)
    } else {
        Order::Shutdown { requests, unread }
    }
}

/// Carries out shutdown `requests` as every agent does: each sender is answered with a
/// `shutdown_response` once (the operator and the daemon are not agents and get none), then
/// the requests are marked read.
pub async fn shut_down(daemon: &impl Daemon, out: &Output, requests: &[Message]) {
    let mut answered: Vec<&str> = Vec::new();
    for m in requests {
        out.say(&format!(
            "shutdown requested by {}: {}",
            m.from,
            crate::output::bounded(&m.body)
        ));
        if m.from == OPERATOR || m.from == DAEMON || answered.contains(&m.from.as_str()) {
            continue;
        }
        daemon
            .answer_shutdown(
                &m.from,
                format!("{} is shutting down", daemon.name()),
                format!("shutdown-{}", m.id),
            )
            .await;
        answered.push(&m.from);
    }
    if !requests.is_empty() {
        daemon.read(requests.iter().map(|m| m.id).collect()).await;
    }
}

/// The file an external CLI's MCP server leaves in the CLI's private home once it has carried
/// out a shutdown request and is ending the CLI: the worker then takes the CLI's end, however
/// it ended, as the agent's finish (what [`Taken::Shutdown`] is to the other loops).
pub fn shutdown_marker(cli_home: &Path) -> PathBuf {
    cli_home.join(SHUTDOWN_MARKER)
}

/// The marker's name in the CLI's private home.
const SHUTDOWN_MARKER: &str = "shut-down";

/// Whether the MCP server in `cli_home` carried out a shutdown request ([`shutdown_marker`]);
/// the marker is removed, so it speaks for one launch only.
pub fn take_shutdown_marker(cli_home: &Path) -> bool {
    std::fs::remove_file(shutdown_marker(cli_home)).is_ok()
}

/// A message in the pane and the log, the same line in every loop.
pub fn show(me: &str, m: &Message, out: &Output) {
    out.say(&format!(
        "✉ {} → {me} [{}]: {}",
        m.from,
        m.kind.as_str(),
        crate::output::bounded(&m.body)
    ));
}

/// What a [`FakeDaemon`] was asked, in order.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Messages marked read.
    Read(Vec<u64>),
    /// A shutdown request answered to `to` under `key`.
    Answer {
        /// The requester answered.
        to: String,
        /// The answer's once-only key.
        key: String,
    },
}

/// A [`Daemon`] for the idle point's unit tests (here and in `agent-team-mcp`): records what
/// it is asked, for the agent `name`.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct FakeDaemon {
    /// The agent's name.
    pub name: String,
    calls: std::sync::Mutex<Vec<Call>>,
}

impl FakeDaemon {
    /// A fake daemon of the agent `name`.
    pub fn new(name: &str) -> Self {
        FakeDaemon {
            name: name.to_string(),
            calls: Default::default(),
        }
    }

    /// What it was asked, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: Call) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }
}

impl Daemon for FakeDaemon {
    fn name(&self) -> &str {
        &self.name
    }
    async fn read(&self, ids: Vec<u64>) {
        self.record(Call::Read(ids));
    }
    async fn answer_shutdown(&self, to: &str, body: String, key: String) {
        // The answer every loop gives, in the agent's name.
        debug_assert_eq!(body, format!("{} is shutting down", self.name));
        self.record(Call::Answer { to: to.into(), key });
    }
}

/// A message to `b1` of `kind` from `from`, as the idle point's and the inbox's tests write them.
#[cfg(test)]
pub(crate) fn test_message(id: u64, from: &str, kind: MessageKind) -> Message {
    Message {
        id,
        from: from.into(),
        to: "b1".into(),
        kind,
        body: format!("body {id}"),
        summary: None,
        ts: Timestamp::from(std::time::SystemTime::now()),
        state: DeliveryState::Delivered,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(id: u64, from: &str, kind: MessageKind) -> Message {
        test_message(id, from, kind)
    }

    #[test]
    fn the_order_is_shutdown_then_leader_operator_daemon_then_peers_fifo_within_each() {
        let ids = |v: &[Message]| v.iter().map(|m| m.id).collect::<Vec<_>>();
        let Order::Work(work) = order(vec![
            msg(6, "b3", MessageKind::Text),
            msg(1, "b2", MessageKind::Text),
            msg(5, "daemon", MessageKind::Permission),
            msg(2, "operator", MessageKind::Text),
            msg(4, "leader", MessageKind::Text),
        ]) else {
            panic!("no shutdown here")
        };
        assert_eq!(ids(&work), [2, 4, 5, 1, 6]);
        let Order::Shutdown { requests, unread } = order(vec![
            msg(7, "b2", MessageKind::Text),
            msg(9, "operator", MessageKind::ShutdownRequest),
            msg(3, "leader", MessageKind::Text),
            msg(8, "leader", MessageKind::ShutdownRequest),
        ]) else {
            panic!("a shutdown request wins")
        };
        assert_eq!((ids(&requests), ids(&unread)), (vec![8, 9], vec![3, 7]));
        assert_eq!(order(Vec::new()), Order::Work(Vec::new()));
    }

    #[test]
    fn the_shutdown_marker_speaks_for_one_launch() {
        let home = tempfile::tempdir().unwrap();
        assert!(!take_shutdown_marker(home.path()));
        std::fs::write(shutdown_marker(home.path()), "").unwrap();
        assert!(take_shutdown_marker(home.path()));
        assert!(!take_shutdown_marker(home.path()), "taken once");
    }
}
