//! The agent's one inbox: what its link receives, sorted as it arrives by one task
//! ([`Inbox::start`]). Messages wait in a queue for the next idle point ([`Inbox::take`] in an
//! agent loop, [`Inbox::hand_over`] for a CLI's MCP server), taken in the idle point's order
//! ([`idle::order`]); permission decisions go to whoever waits for one ([`Inbox::decisions`]);
//! the other events (task changes, reconnects, a fatal refusal) go to the loop that reads them
//! ([`Inbox::poll`], [`Inbox::wait`]), when there is one.

use crate::AgentError;
use crate::idle::{self, Acted, Daemon, Order, Taken, Woken};
use crate::link::Inbound;
use crate::output::Output;
use crate::prompt::Approvals;
use agent_team_protocol::{Message, MessageKind, PermRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, broadcast, mpsc};

/// What a permission waiter hears ([`Inbox::decisions`]).
#[derive(Clone, Debug)]
pub enum Decided {
    /// One of this agent's requests was decided (boxed: the channel allocates all its slots
    /// when the agent starts, 64 of the largest variant).
    One(Box<PermRequest>),
    /// The link came back: a decision may have been missed meanwhile.
    Reconnected,
}

/// What a CLI is handed at one of its idle points ([`Inbox::hand_over`]).
#[derive(Debug, PartialEq)]
pub enum Handover {
    /// The messages queued, in the order to act on them (marked read by the caller once the
    /// CLI has them).
    Messages(Vec<Message>),
    /// The team asked the agent to shut down: these requests were answered and marked read
    /// (the first time they were handed over); nothing else is handed over from then on.
    Shutdown(Vec<Message>),
}

/// The agent's one inbox (see the module's doc).
pub struct Inbox {
    queued: Mutex<Vec<Message>>,
    /// The shutdown requests taken at an idle point (set under `queued`'s lock): nothing else
    /// is handed over from then on.
    shutdown: OnceLock<Vec<Message>>,
    /// A message was queued, or the link is gone.
    arrived: Notify,
    /// The link to the daemon is gone for good.
    gone: AtomicBool,
    /// The events other than messages and decisions, for the loop that reads them (`None`:
    /// nobody does, they are dropped).
    events: Option<tokio::sync::Mutex<mpsc::UnboundedReceiver<Inbound>>>,
    /// Decisions of this agent's permission requests, and reconnects.
    decided: broadcast::Sender<Decided>,
}

impl Inbox {
    /// Starts sorting what `inbound` (the link's stream) brings, on the current runtime, until
    /// the link ends. `loop_events`: a loop reads the other events ([`Inbox::poll`],
    /// [`Inbox::wait`]); otherwise they are dropped (a CLI's MCP server needs none).
    pub fn start(inbound: mpsc::UnboundedReceiver<Inbound>, loop_events: bool) -> Arc<Inbox> {
        let (events_tx, events_rx) = if loop_events {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(tokio::sync::Mutex::new(rx)))
        } else {
            (None, None)
        };
        let inbox = Arc::new(Inbox {
            queued: Mutex::new(Vec::new()),
            shutdown: OnceLock::new(),
            arrived: Notify::new(),
            gone: AtomicBool::new(false),
            events: events_rx,
            decided: broadcast::channel(64).0,
        });
        // What the link already holds is in the inbox at once: the unread messages pushed
        // behind the welcome are there for the agent's first idle point.
        let mut inbound = inbound;
        let mut refused = false;
        while let Ok(i) = inbound.try_recv() {
            if !sort(&inbox, events_tx.as_ref(), i) {
                refused = true;
                break;
            }
        }
        if refused {
            inbox.gone.store(true, Ordering::SeqCst);
        } else {
            tokio::spawn(route(inbound, inbox.clone(), events_tx));
        }
        inbox
    }

    /// Keeps a message for the next idle point.
    pub fn push(&self, m: Message) {
        self.lock().push(m);
        self.arrived.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing is to be handed over (no message, no shutdown).
    pub fn is_empty(&self) -> bool {
        self.shutdown.get().is_none() && self.lock().is_empty()
    }

    /// Whether the next hand-over is the end (a shutdown request is queued or was taken).
    pub fn ends(&self) -> bool {
        self.shutdown.get().is_some()
            || self
                .lock()
                .iter()
                .any(|m| m.kind == MessageKind::ShutdownRequest)
    }

    /// Whether the link to the daemon is gone for good.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Listens for decisions of this agent's permission requests (subscribe before asking,
    /// so a decision made at once is not missed).
    pub fn decisions(&self) -> broadcast::Receiver<Decided> {
        self.decided.subscribe()
    }

    /// What is queued now, in the idle point's order: the messages, or the shutdown requests
    /// (with whether they are taken for the first time, to be answered).
    fn take_queued(&self) -> (Result<Vec<Message>, Vec<Message>>, bool) {
        let mut q = self.lock();
        if let Some(requests) = self.shutdown.get() {
            return (Err(requests.clone()), false);
        }
        match idle::order(std::mem::take(&mut *q)) {
            Order::Work(messages) => (Ok(messages), false),
            // Whatever else waited is left unread: nobody acted on it.
            Order::Shutdown { requests, .. } => {
                let _ = self.shutdown.set(requests.clone());
                (Err(requests), true)
            }
        }
    }

    /// The idle point of a CLI: what is queued, in the idle point's order, or the end when a
    /// shutdown request came (answered and marked read through `daemon` the first time).
    pub async fn hand_over(&self, daemon: &impl Daemon, out: &Output) -> Handover {
        // What the link received meanwhile is sorted in first (the sorting task runs).
        tokio::task::yield_now().await;
        match self.take_queued() {
            (Ok(messages), _) => Handover::Messages(messages),
            (Err(requests), first) => {
                if first {
                    idle::shut_down(daemon, out, &requests).await;
                }
                Handover::Shutdown(requests)
            }
        }
    }

    /// The idle point of an agent loop: takes every waiting message in priority order. A
    /// shutdown request is answered and ends the loop ([`Taken::Shutdown`], see
    /// [`idle::shut_down`]); every other message is handed to `act`, and the ids of those are
    /// returned to be marked read once acting is over.
    pub async fn take(
        &self,
        daemon: &impl Daemon,
        out: &Output,
        mut act: impl FnMut(&Message),
    ) -> Taken {
        match self.hand_over(daemon, out).await {
            Handover::Shutdown(_) => Taken::Shutdown,
            Handover::Messages(msgs) => {
                msgs.iter().for_each(&mut act);
                Taken::Work(Acted::of(&msgs))
            }
        }
    }

    /// Messages taken but not handed over (the hook went away before its answer): first again.
    pub fn put_back(&self, mut messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut q = self.lock();
        messages.append(&mut q);
        *q = messages;
        drop(q);
        self.arrived.notify_waiters();
    }

    /// Waits until something is to be handed over, the link is gone, or `deadline`; true
    /// when something is.
    pub async fn wait_until(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a message queued in between still wakes us.
            arrived.as_mut().enable();
            if !self.is_empty() {
                return true;
            }
            if self.is_gone() || tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return !self.is_empty();
            }
        }
    }

    /// Takes the loop's events that already arrived, without waiting, in arrival order (the
    /// messages stay queued for [`Inbox::take`]); a fatal refusal is an error.
    pub fn poll(&self) -> Result<Vec<Inbound>, AgentError> {
        let mut events = Vec::new();
        let Some(rx) = &self.events else {
            return Ok(events);
        };
        let Ok(mut rx) = rx.try_lock() else {
            return Ok(events);
        };
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Inbound::Fatal(why) => return Err(AgentError::Daemon(why)),
                other => events.push(other),
            }
        }
        Ok(events)
    }

    /// Waits for a message, the loop's next event, or a line at the approval prompt when one
    /// is given (an inactive prompt never answers); a message already queued answers at once.
    pub async fn wait(&self, approvals: Option<&mut Approvals>) -> Result<Woken, AgentError> {
        let arrived = self.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if !self.lock().is_empty() {
            return Ok(Woken::Message);
        }
        let Some(rx) = &self.events else {
            return Err(AgentError::Daemon(
                "this inbox keeps no events for a loop".into(),
            ));
        };
        let mut rx = rx.lock().await;
        let ev = match approvals {
            Some(a) => tokio::select! {
                ev = rx.recv() => ev,
                () = &mut arrived => return Ok(Woken::Message),
                line = a.next_line() => return Ok(Woken::Line(line)),
            },
            None => tokio::select! {
                ev = rx.recv() => ev,
                () = &mut arrived => return Ok(Woken::Message),
            },
        };
        match ev {
            Some(Inbound::Fatal(why)) => Err(AgentError::Daemon(why)),
            Some(other) => Ok(Woken::Event(other)),
            // The link ended: what it queued before is still taken first.
            None if !self.lock().is_empty() => Ok(Woken::Message),
            None => Err(AgentError::Daemon("the link to the daemon closed".into())),
        }
    }
}

/// Sorts what the link receives into `inbox` until the link ends.
async fn route(
    mut rx: mpsc::UnboundedReceiver<Inbound>,
    inbox: Arc<Inbox>,
    events: Option<mpsc::UnboundedSender<Inbound>>,
) {
    while let Some(i) = rx.recv().await {
        if !sort(&inbox, events.as_ref(), i) {
            break;
        }
    }
    inbox.gone.store(true, Ordering::SeqCst);
    inbox.arrived.notify_waiters();
}

/// Sorts one thing the link received into `inbox`; false once the link is refused for good.
fn sort(inbox: &Inbox, events: Option<&mpsc::UnboundedSender<Inbound>>, i: Inbound) -> bool {
    let pass_on = |i: Inbound| {
        if let Some(tx) = events {
            let _ = tx.send(i);
        }
    };
    match i {
        Inbound::Message(m) => inbox.push(m),
        Inbound::PermDecided(r) => {
            let _ = inbox.decided.send(Decided::One(r));
        }
        Inbound::Reconnected => {
            let _ = inbox.decided.send(Decided::Reconnected);
            pass_on(Inbound::Reconnected);
        }
        Inbound::Fatal(why) => {
            pass_on(Inbound::Fatal(why));
            return false;
        }
        other => pass_on(other),
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::idle::{Call, FakeDaemon};
    use agent_team_protocol::Timestamp;

    fn msg(id: u64, from: &str, kind: MessageKind) -> Message {
        crate::idle::test_message(id, from, kind)
    }

    fn inbox(msgs: Vec<Message>) -> (Arc<Inbox>, mpsc::UnboundedSender<Inbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = Inbox::start(rx, true);
        for m in msgs {
            inbox.push(m);
        }
        (inbox, tx)
    }

    fn task() -> agent_team_protocol::Task {
        let now = Timestamp::from(std::time::SystemTime::now());
        agent_team_protocol::Task {
            id: 1,
            key: None,
            title: "t".into(),
            description: String::new(),
            run: None,
            status: agent_team_protocol::TaskStatus::Pending,
            owner: None,
            blocked_by: Vec::new(),
            blocks: Vec::new(),
            created_by: "operator".into(),
            result: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        }
    }

    fn ids(h: &Handover) -> Vec<u64> {
        match h {
            Handover::Messages(m) => m.iter().map(|m| m.id).collect(),
            Handover::Shutdown(_) => panic!("not messages: {h:?}"),
        }
    }

    /// Lets the routing task run until `cond` holds (bounded).
    async fn routed(mut cond: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the inbox never got there");
    }

    #[tokio::test]
    async fn messages_are_acted_on_in_priority_order_and_not_marked_read_by_the_idle_point() {
        let daemon = FakeDaemon::new("b1");
        let (inbox, _tx) = inbox(vec![
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
        assert!(matches!(&taken, Taken::Work(a) if a.ids() == [2, 4, 5, 1, 3]));
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
        let (inbox, _tx) = inbox(vec![
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
        let (inbox, _tx) = inbox(vec![
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

    #[tokio::test]
    async fn a_cli_is_handed_messages_in_the_same_order_and_they_can_be_put_back() {
        let daemon = FakeDaemon::new("b1");
        let (inbox, _tx) = inbox(vec![
            msg(1, "b2", MessageKind::Text),
            msg(2, "operator", MessageKind::Text),
            msg(3, "b3", MessageKind::TaskEvent),
            msg(4, "leader", MessageKind::Text),
            msg(5, "daemon", MessageKind::Permission),
        ]);
        assert!(!inbox.ends());
        let h = inbox.hand_over(&daemon, &Output::null()).await;
        assert_eq!(ids(&h), [2, 4, 5, 1, 3]);
        assert!(daemon.calls().is_empty(), "read once the CLI has them");
        assert!(inbox.is_empty());
        let h = inbox.hand_over(&daemon, &Output::null()).await;
        assert_eq!(h, Handover::Messages(Vec::new()));
        // Put back (the hook went away): first again, still in order.
        inbox.push(msg(9, "b2", MessageKind::Text));
        inbox.put_back(vec![msg(6, "leader", MessageKind::Text)]);
        let h = inbox.hand_over(&daemon, &Output::null()).await;
        assert_eq!(ids(&h), [6, 9]);
    }

    #[tokio::test]
    async fn a_shutdown_request_is_answered_once_and_ends_every_later_hand_over() {
        let daemon = FakeDaemon::new("b1");
        let (inbox, _tx) = inbox(vec![
            msg(7, "leader", MessageKind::Text),
            msg(8, "b2", MessageKind::Text),
            msg(9, "leader", MessageKind::ShutdownRequest),
            msg(10, "operator", MessageKind::ShutdownRequest),
            msg(11, "leader", MessageKind::ShutdownRequest),
        ]);
        assert!(
            inbox.ends(),
            "a queued shutdown request is the next hand-over"
        );
        let Handover::Shutdown(requests) = inbox.hand_over(&daemon, &Output::null()).await else {
            panic!("not the end")
        };
        let got: Vec<u64> = requests.iter().map(|m| m.id).collect();
        assert_eq!(got, [9, 10, 11], "the requests, nothing else");
        assert_eq!(
            daemon.calls(),
            [
                Call::Answer {
                    to: "leader".into(),
                    key: "shutdown-9".into()
                },
                Call::Read(vec![9, 10, 11]),
            ],
            "the leader answered once, the operator not at all, then read; 7 and 8 stay unread"
        );
        // From now on the CLI is handed the end and nothing else, and nobody waits for it.
        inbox.push(msg(12, "leader", MessageKind::Text));
        assert!(!inbox.is_empty() && inbox.ends());
        assert!(inbox.wait_until(tokio::time::Instant::now()).await);
        assert_eq!(
            inbox.hand_over(&daemon, &Output::null()).await,
            Handover::Shutdown(requests)
        );
        assert_eq!(daemon.calls().len(), 2, "answered once");
    }

    #[tokio::test]
    async fn what_the_link_holds_at_the_start_is_in_the_inbox_at_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Inbound::Message(msg(1, "leader", MessageKind::Text)))
            .unwrap();
        tx.send(Inbound::Reconnected).unwrap();
        let inbox = Inbox::start(rx, true);
        // No await between the start and the look: the first idle point has them.
        assert!(!inbox.is_empty());
        assert!(matches!(inbox.poll().unwrap()[..], [Inbound::Reconnected]));
    }

    #[tokio::test]
    async fn waiting_keeps_messages_passes_events_on_and_ends_with_the_link() {
        let (inbox, tx) = inbox(vec![]);
        tx.send(Inbound::Reconnected).unwrap();
        assert!(matches!(
            inbox.wait(None).await.unwrap(),
            Woken::Event(Inbound::Reconnected)
        ));
        tx.send(Inbound::Message(msg(1, "b2", MessageKind::Text)))
            .unwrap();
        assert!(matches!(inbox.wait(None).await.unwrap(), Woken::Message));
        assert!(!inbox.is_empty());
        // Queued already: at once.
        assert!(matches!(inbox.wait(None).await.unwrap(), Woken::Message));
        tx.send(Inbound::Task(Box::new(task()))).unwrap();
        let mut events = Vec::new();
        routed(|| {
            events.extend(inbox.poll().unwrap());
            !events.is_empty()
        })
        .await;
        assert!(matches!(events[..], [Inbound::Task(_)]));
        tx.send(Inbound::Fatal("refused".into())).unwrap();
        let mut failed = false;
        routed(|| {
            failed |= inbox.poll().is_err();
            failed
        })
        .await;
        // The link ended: what it queued is still taken first, then waiting fails.
        drop(tx);
        routed(|| inbox.is_gone()).await;
        assert!(matches!(inbox.wait(None).await.unwrap(), Woken::Message));
        let _ = inbox
            .take(&FakeDaemon::new("b1"), &Output::null(), |_| {})
            .await;
        assert!(inbox.wait(None).await.is_err());
    }

    #[tokio::test]
    async fn decisions_and_reconnects_reach_every_waiter_and_task_changes_only_the_loop() {
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = Inbox::start(rx, false);
        let mut a = inbox.decisions();
        let mut b = inbox.decisions();
        let request = PermRequest {
            id: 4,
            agent: "b1".into(),
            tool: "bash".into(),
            input: "make".into(),
            reason: String::new(),
            ts: Timestamp::from(std::time::SystemTime::now()),
            status: agent_team_protocol::PermStatus::Allowed,
            decision: None,
        };
        tx.send(Inbound::Task(Box::new(task()))).unwrap();
        tx.send(Inbound::PermDecided(Box::new(request))).unwrap();
        tx.send(Inbound::Reconnected).unwrap();
        for rx in [&mut a, &mut b] {
            assert!(matches!(rx.recv().await.unwrap(), Decided::One(r) if r.id == 4));
            assert!(matches!(rx.recv().await.unwrap(), Decided::Reconnected));
        }
        assert!(
            inbox.poll().unwrap().is_empty(),
            "no loop reads events here"
        );
        assert!(inbox.wait(None).await.is_err());
    }
}
