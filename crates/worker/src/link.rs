//! The agent's connection to its daemon: authenticated as the agent's one identity, kept alive
//! across daemon restarts with backoff, and turned into one stream of [`Inbound`] events.
//! Messages are acknowledged as delivered on arrival and passed on exactly once per process.

use crate::output::Output;
use crate::{AgentEnv, AgentError};
use agent_team_backoff::Backoff;
use agent_team_client::heal::Healed;
use agent_team_client::{AsyncClient, ClientError, agent_hello};
use agent_team_protocol::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What reaches the agent loop.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// A message, new to this process.
    Message(Message),
    /// A task changed (boxed, as the decision below: the link's channels allocate their
    /// slots 32 at a time, each the size of the largest variant, and a task is 280 bytes).
    Task(Box<Task>),
    /// One of our permission requests was decided.
    PermDecided(Box<PermRequest>),
    /// (Re)connected: state may have changed while away, so look again.
    Reconnected,
    /// The daemon refused us for good, or stayed away too long.
    Fatal(String),
}

/// Why a call failed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The daemon answered with an error.
    Server(ErrorBody),
    /// The connection dropped before the answer (the request may or may not have happened).
    Disconnected,
    /// The link is gone for good.
    Gone(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Server(e) => write!(f, "{}", e.message),
            CallError::Disconnected => write!(f, "the connection to the daemon dropped"),
            CallError::Gone(why) => write!(f, "{why}"),
        }
    }
}

impl CallError {
    /// The daemon's error code, if it answered.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

/// How long an agent keeps trying to reach a daemon that went away before it gives up (so a
/// team whose daemon is never restarted leaves no process behind).
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// The waits between tries to reach the daemon: 50 ms doubling to 2 s, each shortened by up
/// to a quarter (the agents of a team whose daemon restarted do not all knock at once), until
/// [`GIVE_UP_AFTER`].
fn reconnect_backoff(started: Instant) -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
        .jitter(0.25)
        .deadline(started + GIVE_UP_AFTER)
}

/// How many requests fired without a connection are kept for the next one.
const UNSENT_KEPT: usize = 256;

/// A connection that heals itself.
pub struct Link {
    agent: AgentEnv,
    client: watch::Sender<Option<AsyncClient>>,
    role: Mutex<String>,
    seen: Mutex<HashSet<u64>>,
    gone: Mutex<Option<String>>,
    /// Acknowledge a message as `delivered` as soon as it arrives (our workers hold it in
    /// their inbox); an agent's MCP server does not: the CLI has it only once handed over.
    ack_on_receipt: bool,
    /// What the daemon's welcome carried for the agent's first reads, each taken once
    /// ([`Link::config`], [`crate::agent::Start::read`]).
    start: Mutex<StartReads>,
    /// Requests fired while there was no connection, sent in order ahead of anything fired
    /// later once the keeper has one ([`Link::publish`]). Its lock also orders a fire against
    /// the connection's change.
    unsent: Mutex<Vec<Request>>,
}

impl Link {
    /// Connects (waiting for the daemon if needed) and starts the keeper task; the hello asks
    /// for the agent loop's first reads with the welcome.
    pub async fn start(
        agent: AgentEnv,
        out: Output,
    ) -> Result<(Arc<Link>, mpsc::UnboundedReceiver<Inbound>), AgentError> {
        Self::open(agent, out, true, true).await
    }

    /// [`Link::start`], choosing whether an arriving message is acknowledged as `delivered`
    /// at once (`false`: the caller acknowledges it when it hands the message on).
    pub async fn start_with(
        agent: AgentEnv,
        out: Output,
        ack_on_receipt: bool,
    ) -> Result<(Arc<Link>, mpsc::UnboundedReceiver<Inbound>), AgentError> {
        Self::open(agent, out, ack_on_receipt, false).await
    }

    /// Connects; `start`: the hello asks for the first reads with the welcome.
    async fn open(
        agent: AgentEnv,
        out: Output,
        ack_on_receipt: bool,
        start: bool,
    ) -> Result<(Arc<Link>, mpsc::UnboundedReceiver<Inbound>), AgentError> {
        let (client, pushes) = connect(&agent, &out, start).await?;
        let reads = client.take_start();
        // The daemon put the task watch on before answering the reads.
        let watching = reads.is_some();
        // The unread messages pushed behind the welcome are in the inbound queue before the
        // agent's first turn, as they were when it asked for its reads itself.
        let unread = reads.as_ref().map_or(0, |r| r.unread);
        let (taken_in, all_in) = tokio::sync::oneshot::channel();
        let (ctx, _) = watch::channel(None);
        let link = Arc::new(Link {
            agent,
            client: ctx,
            role: Mutex::new(client.welcome().role.clone()),
            seen: Mutex::new(HashSet::new()),
            gone: Mutex::new(None),
            ack_on_receipt,
            start: Mutex::new(reads.map(|r| *r).unwrap_or_default()),
            unsent: Mutex::new(Vec::new()),
        });
        // The connection is the link's before the agent's first step, not once the keeper
        // first runs: a status fired meanwhile would otherwise wait for it, and could land
        // after the agent's later ones (an agent left `running` after its `idle`).
        link.adopt(&client, watching);
        let (tx, rx) = mpsc::unbounded_channel();
        let first = FirstPushes {
            unread,
            taken_in: Some(taken_in),
        };
        tokio::spawn(keeper(link.clone(), out, client, pushes, tx, true, first));
        if unread > 0 {
            // A connection lost meanwhile drops the sender, and the wait is bounded: the agent
            // starts anyway (what did not come yet comes later, as any message does).
            let _ = tokio::time::timeout(FIRST_PUSHES_WAIT, all_in).await;
        }
        Ok((link, rx))
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.agent.name
    }

    /// The agent's role as the daemon knows it.
    pub fn welcome_role(&self) -> String {
        self.role.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The agent's identity.
    pub fn agent(&self) -> &AgentEnv {
        &self.agent
    }

    async fn connected(&self) -> Result<AsyncClient, CallError> {
        let mut rx = self.client.subscribe();
        loop {
            if let Some(why) = self.gone.lock().ok().and_then(|g| g.clone()) {
                return Err(CallError::Gone(why));
            }
            if let Some(c) = rx.borrow_and_update().clone() {
                return Ok(c);
            }
            if rx.changed().await.is_err() {
                return Err(CallError::Gone("the link was closed".into()));
            }
        }
    }

    /// One attempt: waits for a connection, sends, waits for the answer.
    pub async fn call(&self, req: Request) -> Result<Reply, CallError> {
        let rid = req.is_mutating().then(agent_team_client::new_rid);
        self.call_once(req, rid).await
    }

    async fn call_once(&self, req: Request, rid: Option<String>) -> Result<Reply, CallError> {
        let c = self.connected().await?;
        match c.call_with_rid(req, rid).await {
            Ok(r) => Ok(r),
            Err(ClientError::Server(e)) => Err(CallError::Server(e)),
            // The keeper notices the same drop and replaces the client.
            Err(_) => Err(CallError::Disconnected),
        }
    }

    /// Like [`Link::call`], but tries again after a reconnect. Every attempt carries the same
    /// request id, so the daemon applies a mutating request once however often it is sent:
    /// a retry whose original was committed gets the original reply. It has no delays of its
    /// own: it waits for the keeper's next connection (with backoff) and
    /// ends when the keeper gives up.
    pub async fn call_retry(&self, req: Request) -> Result<Reply, CallError> {
        let rid = req.is_mutating().then(agent_team_client::new_rid);
        loop {
            let mut rx = self.client.subscribe();
            rx.borrow_and_update();
            match self.call_once(req.clone(), rid.clone()).await {
                Err(CallError::Disconnected) => {
                    // Wait for the keeper to replace the connection before trying again.
                    if rx.changed().await.is_err() {
                        return Err(CallError::Gone("the link was closed".into()));
                    }
                }
                other => return other,
            }
        }
    }

    /// Sends a request nobody waits for (progress events, statuses) as `no_reply`: the daemon
    /// answers nothing and may commit it with its next batch instead of syncing it alone.
    /// Connected, it is queued at once, ahead of the agent's next request; otherwise it goes
    /// once the keeper has a connection. A dropped connection loses it, as it always did.
    pub fn fire(&self, req: Request) {
        let Ok(mut unsent) = self.unsent.lock() else {
            return;
        };
        match self.client.borrow().clone() {
            Some(c) => {
                let _ = c.send_no_reply(req);
            }
            None => {
                // A long wait for the daemon keeps the newest (the latest status counts).
                if unsent.len() >= UNSENT_KEPT {
                    unsent.remove(0);
                }
                unsent.push(req);
            }
        }
    }

    /// Whether the link has a connection now (a request fired goes at once).
    pub fn is_connected(&self) -> bool {
        self.client.borrow().is_some()
    }

    /// Makes a new connection the link's. The task watch is asked for first (unless the
    /// welcome said it is on: `watching`), and not waited for: the daemon applies a
    /// connection's requests in order, so whatever the agent asks once it has the client (its
    /// board on `Reconnected`) is answered with the watch already on. An ordinary request (a
    /// daemon older than `no_reply` would refuse that), its answer let go.
    fn adopt(&self, client: &AsyncClient, watching: bool) {
        if !watching {
            let _ = client.queue(Request::WatchTasks, None);
        }
        self.publish(Some(client.clone()));
    }

    /// Makes `client` the link's connection (or says there is none): the requests fired
    /// while there was none go first, in the order they were fired.
    fn publish(&self, client: Option<AsyncClient>) {
        let Ok(mut unsent) = self.unsent.lock() else {
            return;
        };
        if let Some(c) = &client {
            for req in unsent.drain(..) {
                let _ = c.send_no_reply(req);
            }
        }
        self.client.send_replace(client);
    }

    /// One of the first reads the welcome carried, taken (`None`: ask the daemon).
    pub(crate) fn take_read(
        &self,
        which: fn(&mut StartReads) -> &mut Option<Reply>,
    ) -> Option<Reply> {
        self.start
            .lock()
            .ok()
            .and_then(|mut s| which(&mut s).take())
    }

    /// The roster's size the welcome gave beside a partial roster (0: it gave the whole one,
    /// or none).
    pub(crate) fn start_members(&self) -> u32 {
        self.start.lock().map(|s| s.members).unwrap_or(0)
    }

    /// A request's reply: the welcome's when it carried it, else the daemon's.
    pub(crate) async fn read_first(
        &self,
        which: fn(&mut StartReads) -> &mut Option<Reply>,
        req: Request,
    ) -> Result<Reply, CallError> {
        match self.take_read(which) {
            Some(reply) => Ok(reply),
            None => self.call_retry(req).await,
        }
    }

    /// The team configuration.
    pub async fn config(&self) -> Result<agent_team_config::TeamConfig, AgentError> {
        match self.read_first(|s| &mut s.config, Request::GetConfig).await {
            Ok(Reply::Config { config }) if !config.is_null() => serde_json::from_value(config)
                .map_err(|e| {
                    AgentError::Config(format!("cannot read the team configuration: {e}"))
                }),
            Ok(_) => Err(AgentError::Config("the team has no configuration".into())),
            Err(e) => Err(AgentError::Daemon(e.to_string())),
        }
    }

    /// Tells the daemon (and so `ps`) about an error that stops this agent.
    pub async fn report_error(&self, error: &str) -> Result<(), CallError> {
        self.call(Request::SetStatus {
            status: AgentStatus::Idle,
            error: Some(error.to_string()),
        })
        .await
        .map(|_| ())
    }

    /// Reports running / idle / waiting.
    pub async fn set_status(&self, status: AgentStatus) {
        let _ = self
            .call_retry(Request::SetStatus {
                status,
                error: None,
            })
            .await;
    }

    /// Marks messages read.
    pub async fn read(&self, ids: Vec<u64>) {
        if !ids.is_empty() {
            let _ = self
                .call_retry(Request::Ack {
                    ids,
                    state: DeliveryState::Read,
                })
                .await;
        }
    }

    /// Sends a message at most once per `key`, retrying across reconnects.
    pub async fn send_once(
        &self,
        to: &str,
        body: String,
        kind: MessageKind,
        key: String,
    ) -> Result<Reply, CallError> {
        self.call_retry(Request::Send {
            to: to.into(),
            body,
            kind,
            summary: None,
            dedup: Some(key),
        })
        .await
    }
}

async fn connect(
    agent: &AgentEnv,
    out: &Output,
    start: bool,
) -> Result<(AsyncClient, mpsc::UnboundedReceiver<Push>), AgentError> {
    let hello = Hello {
        start,
        ..agent_hello(&agent.team, &agent.name, &agent.secret, agent.incarnation)
    };
    let mut backoff = reconnect_backoff(Instant::now());
    let mut said = false;
    loop {
        match AsyncClient::connect(&agent.socket, &hello).await {
            Ok(c) => return Ok(c),
            Err(ClientError::Refused(e)) => {
                let superseded = e.code == ErrorCode::InvalidState
                    || (e.code == ErrorCode::Unauthorized
                        && e.details.get("incarnation").is_some());
                return Err(AgentError::Refused {
                    name: agent.name.clone(),
                    why: e.message,
                    superseded,
                });
            }
            Err(e) => {
                // The daemon is gone: bring it back unless the team was stopped on purpose.
                match heal(agent).await {
                    Some(Ok(Healed::Running)) => {
                        if let Ok(c) = AsyncClient::connect(&agent.socket, &hello).await {
                            return Ok(c);
                        }
                    }
                    Some(Ok(Healed::Stopped)) => {
                        return Err(AgentError::Daemon(format!(
                            "team {} was stopped (`agent-team down`); not bringing it back",
                            agent.team
                        )));
                    }
                    Some(Ok(Healed::Gone)) => {
                        return Err(AgentError::Daemon(format!(
                            "the files of team {} were deleted; not bringing it back",
                            agent.team
                        )));
                    }
                    Some(Err(why)) if !said => {
                        out.say(&format!("cannot restart the daemon: {why}"))
                    }
                    _ => {}
                }
                let Some(pause) = backoff.next() else {
                    return Err(AgentError::Daemon(format!(
                        "the daemon stayed unreachable for {} s: {e}",
                        GIVE_UP_AFTER.as_secs()
                    )));
                };
                if !said {
                    out.say(&format!("waiting for the daemon: {e}"));
                    said = true;
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Brings the daemon back if this agent may ([`AgentEnv::healer`]); `None` when it may not.
/// The start blocks (up to its deadline), so it runs off the async thread.
pub(crate) async fn heal(agent: &AgentEnv) -> Option<Result<Healed, String>> {
    let healer = agent.healer.clone()?;
    Some(
        tokio::task::spawn_blocking(move || healer.heal().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
    )
}

async fn keeper(
    link: Arc<Link>,
    out: Output,
    mut client: AsyncClient,
    mut pushes: mpsc::UnboundedReceiver<Push>,
    tx: mpsc::UnboundedSender<Inbound>,
    mut watching: bool,
    mut first: FirstPushes,
) {
    loop {
        // The first connection was adopted by `Link::open` already (`watching` is then
        // set): adopting it again only says it is still the one.
        link.adopt(&client, std::mem::take(&mut watching));
        if tx.send(Inbound::Reconnected).is_err() {
            return;
        }
        first.check();
        while let Some(p) = pushes.recv().await {
            let inbound = match p {
                Push::Message { message, lease } => {
                    first.one_in();
                    // Granted with the message: the next model request asks for none. Not
                    // granted: a budget may limit the agent now, and a grant it held (a
                    // notice's, the welcome's) is dropped, so that request asks.
                    if let Ok(mut s) = link.start.lock() {
                        s.lease = lease.then_some(Reply::Budget {
                            stop: None,
                            wait: None,
                        });
                    }
                    let new = link
                        .seen
                        .lock()
                        .map(|mut s| s.insert(message.id))
                        .unwrap_or(true);
                    if link.ack_on_receipt {
                        let c = client.clone();
                        let id = message.id;
                        tokio::spawn(async move {
                            let _ = c
                                .call(Request::Ack {
                                    ids: vec![id],
                                    state: DeliveryState::Delivered,
                                })
                                .await;
                        });
                    }
                    if !new {
                        first.check();
                        continue;
                    }
                    Inbound::Message(message)
                }
                Push::Task { task } => Inbound::Task(task),
                Push::PermissionDecided { request } => Inbound::PermDecided(request),
                Push::Event { .. } => continue,
            };
            if tx.send(inbound).is_err() {
                return;
            }
            first.check();
        }
        // Whatever did not come with this connection will not.
        first.taken_in = None;
        link.publish(None);
        // The agent reading this link is gone (an in-process agent stopped with its daemon):
        // nothing to reconnect for.
        if tx.is_closed() {
            return;
        }
        out.say("lost the connection to the daemon; reconnecting");
        match connect(&link.agent, &out, false).await {
            Ok((c, p)) => {
                out.say("reconnected");
                client = c;
                pushes = p;
            }
            Err(e) => {
                if let Ok(mut g) = link.gone.lock() {
                    *g = Some(e.to_string());
                }
                link.publish(None);
                let _ = tx.send(Inbound::Fatal(e.to_string()));
                return;
            }
        }
    }
}

/// The longest an agent's start waits for the messages its welcome said follow it.
const FIRST_PUSHES_WAIT: Duration = Duration::from_secs(5);

/// The messages a welcome said are pushed right behind it: the link's opening waits until the
/// keeper has passed them on.
struct FirstPushes {
    /// How many are still to come.
    unread: u32,
    /// Told once they are all in (dropped when the connection ends first).
    taken_in: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FirstPushes {
    /// One of them arrived.
    fn one_in(&mut self) {
        self.unread = self.unread.saturating_sub(1);
    }

    /// Tells the opening once none is left to come.
    fn check(&mut self) {
        if self.unread == 0
            && let Some(t) = self.taken_in.take()
        {
            let _ = t.send(());
        }
    }
}
