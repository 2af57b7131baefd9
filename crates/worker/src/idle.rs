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

use crate::AgentError;
use crate::link::{Inbound, Link};
use crate::output::Output;
use crate::prompt::Approvals;
use agent_team_protocol::names::{DAEMON, OPERATOR};
use agent_team_protocol::*;
use std::future::Future;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc::UnboundedReceiver;

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
    /// A message, kept for the next [`Inbox::take`].
    Message,
    /// Something else from the daemon (a task change, a permission decision, a reconnect).
    Event(Inbound),
    /// A line typed at the approval prompt.
    Line(Option<String>),
}

/// The events from the daemon and the messages waiting for the next idle point.
pub struct Inbox {
    inbound: UnboundedReceiver<Inbound>,
    pending: Vec<Message>,
}

impl Inbox {
    /// Reads from the link's stream of events.
    pub fn new(inbound: UnboundedReceiver<Inbound>) -> Self {
        Inbox {
            inbound,
            pending: Vec::new(),
        }
    }

    /// Keeps a message for the next idle point.
    pub fn push(&mut self, m: Message) {
        self.pending.push(m);
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Keeps a message; passes anything else on; the link's end is an error.
    fn sort_in(&mut self, ev: Inbound) -> Result<Option<Inbound>, AgentError> {
        match ev {
            Inbound::Message(m) => {
                self.pending.push(m);
                Ok(None)
            }
            Inbound::Fatal(why) => Err(AgentError::Daemon(why)),
            other => Ok(Some(other)),
        }
    }

    /// Takes everything that already arrived without waiting: messages are kept, the other
    /// events are returned in arrival order.
    pub fn poll(&mut self) -> Result<Vec<Inbound>, AgentError> {
        let mut events = Vec::new();
        while let Ok(ev) = self.inbound.try_recv() {
            events.extend(self.sort_in(ev)?);
        }
        Ok(events)
    }

    /// Waits for the next event from the daemon, or for a line at the approval prompt when
    /// one is given (an inactive prompt never answers).
    pub async fn wait(&mut self, approvals: Option<&mut Approvals>) -> Result<Woken, AgentError> {
        let ev = match approvals {
            Some(a) => tokio::select! {
                ev = self.inbound.recv() => ev,
                line = a.next_line() => return Ok(Woken::Line(line)),
            },
            None => self.inbound.recv().await,
        };
        match ev {
            Some(ev) => Ok(match self.sort_in(ev)? {
                Some(other) => Woken::Event(other),
                None => Woken::Message,
            }),
            None => Err(AgentError::Daemon("the link to the daemon closed".into())),
        }
    }

    /// The idle point: takes every waiting message in priority order ([`order`]). A shutdown
    /// request is answered and ends the loop ([`Taken::Shutdown`], see [`shut_down`]); every
    /// other message is handed to `act`, and the ids of those are returned to be marked read
    /// once acting is over.
    pub async fn take(
        &mut self,
        daemon: &impl Daemon,
        out: &Output,
        mut act: impl FnMut(&Message),
    ) -> Taken {
        match order(std::mem::take(&mut self.pending)) {
            // Whatever else waited is left unread: nobody acted on it.
            Order::Shutdown { requests, .. } => {
                shut_down(daemon, out, &requests).await;
                Taken::Shutdown
            }
            Order::Work(msgs) => {
                msgs.iter().for_each(&mut act);
                Taken::Work(Acted(msgs.iter().map(|m| m.id).collect()))
            }
        }
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(id: u64, from: &str, kind: MessageKind) -> Message {
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

    fn inbox(msgs: Vec<Message>) -> (Inbox, tokio::sync::mpsc::UnboundedSender<Inbound>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut inbox = Inbox::new(rx);
        for m in msgs {
            inbox.push(m);
        }
        (inbox, tx)
    }

    #[tokio::test]
    async fn messages_are_acted_on_in_priority_order_and_not_marked_read_by_the_idle_point() {
        let daemon = FakeDaemon::new("b1");
        let (mut inbox, _tx) = inbox(vec![
            msg(1, "b2", MessageKind::Text),
            msg(2, "operator", MessageKind::Text),
            msg(3, "b3", MessageKind::TaskEvent),
            msg(4, "leader", MessageKind::Text),
            msg(5, "daemon", MessageKind::Permission),
        ]);
        let mut order = Vec::new();
        let taken = inbox
            .take(&daemon, &Output::null(), |m| order.push(m.id))
            .await;
        assert_eq!(order, [2, 4, 5, 1, 3]);
        assert_eq!(taken, Taken::Work(Acted(vec![2, 4, 5, 1, 3])));
        assert!(daemon.calls().is_empty(), "the caller marks them read");
        assert!(inbox.is_empty());
        let Taken::Work(acted) = taken else {
            unreachable!()
        };
        acted.ack(&daemon).await;
        assert_eq!(daemon.calls(), [Call::Read(vec![2, 4, 5, 1, 3])]);
    }

    #[tokio::test]
    async fn a_shutdown_request_is_answered_then_read_and_the_rest_stays_unread() {
        let daemon = FakeDaemon::new("b1");
        let (mut inbox, _tx) = inbox(vec![
            msg(7, "leader", MessageKind::Text),
            msg(8, "b2", MessageKind::Text),
            msg(9, "leader", MessageKind::ShutdownRequest),
        ]);
        let mut acted = Vec::new();
        let taken = inbox
            .take(&daemon, &Output::null(), |m| acted.push(m.id))
            .await;
        assert_eq!(taken, Taken::Shutdown);
        assert!(acted.is_empty(), "nothing is acted on after a shutdown");
        assert_eq!(
            daemon.calls(),
            [
                Call::Answer {
                    to: "leader".into(),
                    key: "shutdown-9".into()
                },
                Call::Read(vec![9]),
            ],
            "answered first, then marked read; 7 and 8 stay unread"
        );
    }

    #[tokio::test]
    async fn the_operator_and_the_daemon_get_no_answer_and_each_agent_one() {
        let daemon = FakeDaemon::new("b1");
        let (mut inbox, _tx) = inbox(vec![
            msg(3, "leader", MessageKind::ShutdownRequest),
            msg(1, "operator", MessageKind::ShutdownRequest),
            msg(2, "daemon", MessageKind::ShutdownRequest),
            msg(4, "leader", MessageKind::ShutdownRequest),
        ]);
        let taken = inbox.take(&daemon, &Output::null(), |_| {}).await;
        assert_eq!(taken, Taken::Shutdown);
        assert_eq!(
            daemon.calls(),
            [
                Call::Answer {
                    to: "leader".into(),
                    key: "shutdown-3".into()
                },
                Call::Read(vec![1, 2, 3, 4]),
            ]
        );
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

    #[tokio::test]
    async fn waiting_keeps_messages_passes_events_on_and_ends_with_the_link() {
        let (mut inbox, tx) = inbox(vec![]);
        tx.send(Inbound::Message(msg(1, "b2", MessageKind::Text)))
            .unwrap();
        tx.send(Inbound::Reconnected).unwrap();
        assert!(matches!(inbox.wait(None).await.unwrap(), Woken::Message));
        assert!(matches!(
            inbox.wait(None).await.unwrap(),
            Woken::Event(Inbound::Reconnected)
        ));
        assert!(!inbox.is_empty());
        tx.send(Inbound::Message(msg(2, "b2", MessageKind::Text)))
            .unwrap();
        tx.send(Inbound::Reconnected).unwrap();
        let events = inbox.poll().unwrap();
        assert!(matches!(events[..], [Inbound::Reconnected]));
        assert_eq!(inbox.pending.len(), 2);
        tx.send(Inbound::Fatal("refused".into())).unwrap();
        assert!(inbox.poll().is_err());
        drop(tx);
        assert!(inbox.wait(None).await.is_err());
    }
}
