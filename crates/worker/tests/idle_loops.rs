//! The three agent loops (exec teammate, exec leader, model agent) against a fake daemon on a
//! Unix socket: each answers a shutdown request the same way, through the one idle point.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agent_team_config::{Provider, Role, TeamConfig, builtin_roles, demo_team};
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::frame;
use agent_team_protocol::*;
use agent_team_worker::output::Output;
use agent_team_worker::session::Session;
use agent_team_worker::{AgentEnv, AgentError, CommandGroups, agent, exec, leader, link};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// A daemon that welcomes one agent, pushes it the given messages (and more on demand),
/// answers every request with something harmless, and records the requests in order.
struct FakeDaemon {
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
    writer: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Set to end every connection accepted so far (their clients read the end).
    cut: tokio::sync::watch::Sender<u64>,
    _dir: tempfile::TempDir,
}

impl FakeDaemon {
    fn start(name: &str, role: &str, pushes: Vec<Message>) -> Self {
        Self::start_holding(name, role, pushes, 0)
    }

    /// [`FakeDaemon::start`] that answers nothing on a connection until `hold` requests have
    /// arrived on it: a client that waits for one answer before its next request never gets
    /// there.
    fn start_holding(name: &str, role: &str, pushes: Vec<Message>, hold: usize) -> Self {
        Self::start_holding_until(name, role, pushes, move |seen: &[Request]| {
            seen.len() >= hold
        })
    }

    /// [`FakeDaemon::start`] that answers nothing until `ready` holds for the requests seen so
    /// far, then all it held and everything after.
    fn start_holding_until(
        name: &str,
        role: &str,
        pushes: Vec<Message>,
        ready: impl Fn(&[Request]) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self::start_welcoming(name, role, pushes, ready, None, std::time::Duration::ZERO)
    }

    /// A daemon for worker `b1` answering everything at once, its welcome carrying `reads`.
    fn welcoming_b1(reads: StartReads) -> Self {
        Self::start_welcoming(
            "b1",
            "worker",
            vec![],
            |_| true,
            Some(Box::new(reads)),
            std::time::Duration::ZERO,
        )
    }

    /// [`FakeDaemon::start_holding_until`] whose welcome carries `reads` (a hello's `start`),
    /// its pushes following it `late` after it (as a busy daemon's might).
    fn start_welcoming(
        name: &str,
        role: &str,
        pushes: Vec<Message>,
        ready: impl Fn(&[Request]) -> bool + Send + Sync + 'static,
        reads: Option<Box<StartReads>>,
        late: std::time::Duration,
    ) -> Self {
        let ready = Arc::new(ready);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let writer: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
        let (seen, current) = (requests.clone(), writer.clone());
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let counted = accepted.clone();
        let welcome = Welcome {
            protocol: PROTOCOL_VERSION,
            team: "t".into(),
            identity: name.into(),
            role: role.into(),
            incarnation: 1,
            daemon_pid: std::process::id(),
            start: reads,
            secret: None,
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (r, mut w) = stream.into_split();
                let mut r = tokio::io::BufReader::new(r);
                frame::tokio_io::read_raw(&mut r).await.unwrap();
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            bytes = rx.recv() => match bytes {
                                Some(bytes) => {
                                    if w.write_all(&bytes).await.is_err() {
                                        return;
                                    }
                                }
                                None => return,
                            },
                            _ = cuts.changed() => {
                                let _ = w.shutdown().await;
                                return;
                            }
                        }
                    }
                });
                tx.send(frame::encode(&ServerFrame::Welcome(welcome.clone())).unwrap())
                    .unwrap();
                if !late.is_zero() {
                    tokio::time::sleep(late).await;
                }
                for m in &pushes {
                    tx.send(push(m)).unwrap();
                }
                *current.lock().unwrap() = Some(tx.clone());
                let (seen, ready) = (seen.clone(), ready.clone());
                tokio::spawn(async move {
                    let mut held: Vec<Vec<u8>> = Vec::new();
                    while let Ok(raw) = frame::tokio_io::read_raw(&mut r).await {
                        let Ok(ClientFrame::Request { id, body, .. }) =
                            serde_json::from_slice(&raw)
                        else {
                            continue;
                        };
                        let reply = answer(&body);
                        let go = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(body);
                            ready(&seen)
                        };
                        let frame = ServerFrame::Response {
                            id,
                            ok: Some(reply),
                            error: None,
                        };
                        held.push(frame::encode(&frame).unwrap());
                        if !go {
                            continue;
                        }
                        for bytes in held.drain(..) {
                            if tx.send(bytes).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeDaemon {
            socket,
            requests,
            writer,
            accepted,
            cut,
            _dir: dir,
        }
    }

    fn env(&self, name: &str) -> AgentEnv {
        AgentEnv {
            socket: self.socket.clone(),
            team: "t".into(),
            name: name.into(),
            secret: "s".into(),
            incarnation: 1,
            log_file: None,
            workspace: None,
            member: Default::default(),
            external: false,
            healer: None,
        }
    }

    /// Ends every connection so far (each client reads the end of its stream).
    fn cut_connections(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Pushes a message on the current connection.
    fn push(&self, m: &Message) {
        let w = self.writer.lock().unwrap().clone().expect("connected");
        w.send(push(m)).unwrap();
    }

    /// Pushes a message that grants the lease of the turn it starts.
    fn push_granting(&self, m: &Message) {
        let w = self.writer.lock().unwrap().clone().expect("connected");
        w.send(push_leased(m, true)).unwrap();
    }
}

fn push(m: &Message) -> Vec<u8> {
    push_leased(m, false)
}

fn push_leased(m: &Message, lease: bool) -> Vec<u8> {
    frame::encode(&ServerFrame::Push(Push::Message {
        message: m.clone(),
        lease,
    }))
    .unwrap()
}

fn answer(req: &Request) -> Reply {
    match req {
        Request::Agents => Reply::Agents { agents: vec![] },
        Request::TaskClaimNext => Reply::MaybeTask { task: None },
        Request::TaskList { .. } => Reply::Tasks {
            tasks: vec![],
            more: None,
        },
        Request::Send { to, .. } => Reply::Sent {
            ids: vec![1000],
            recipients: vec![to.clone()],
        },
        _ => Reply::Done,
    }
}

fn msg(id: u64, from: &str, to: &str, kind: MessageKind) -> Message {
    Message {
        id,
        from: from.into(),
        to: to.into(),
        kind,
        body: format!("message {id}"),
        summary: None,
        ts: Timestamp::from(std::time::SystemTime::now()),
        state: DeliveryState::Delivered,
    }
}

/// A built-in role.
fn default_role(name: &str) -> Role {
    builtin_roles()[name].clone()
}

/// A team with no teammates and no tasks, in a scratch workspace.
fn config(dir: &std::path::Path) -> TeamConfig {
    let mut c = demo_team(dir).unwrap();
    c.teammates.clear();
    c.tasks.clear();
    c
}

/// The messages marked read, in order.
fn reads(requests: &[Request]) -> Vec<Vec<u64>> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Ack {
                ids,
                state: DeliveryState::Read,
            } => Some(ids.clone()),
            _ => None,
        })
        .collect()
}

/// The shutdown responses sent, with their dedup keys.
fn responses(requests: &[Request]) -> Vec<(String, Option<String>)> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Send {
                to,
                kind: MessageKind::ShutdownResponse,
                dedup,
                ..
            } => Some((to.clone(), dedup.clone())),
            _ => None,
        })
        .collect()
}

/// Runs a loop to its end, with a deadline.
async fn ends<F: std::future::Future<Output = Result<(), AgentError>>>(f: F) {
    match tokio::time::timeout(Duration::from_secs(30), f).await {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("the loop did not end on the shutdown request"),
    }
}

/// The leader's shutdown request (3) is answered to the leader, then marked read; the peer's
/// message (1), pushed after it, was never acted on and stays unread.
fn check_answered(requests: &[Request]) {
    assert_eq!(
        responses(requests),
        [("leader".to_string(), Some("shutdown-3".to_string()))],
        "{requests:#?}"
    );
    let answer_at = requests
        .iter()
        .position(|r| {
            matches!(
                r,
                Request::Send {
                    kind: MessageKind::ShutdownResponse,
                    ..
                }
            )
        })
        .unwrap();
    let read_at = requests
        .iter()
        .position(
            |r| matches!(r, Request::Ack { ids, state: DeliveryState::Read } if ids.contains(&3)),
        )
        .expect("the shutdown request is marked read");
    assert!(answer_at < read_at, "answered before it is marked read");
    assert!(
        reads(requests).iter().all(|ids| !ids.contains(&1)),
        "the peer's message was not acted on: {requests:#?}"
    );
}

#[tokio::test]
async fn an_exec_teammate_answers_a_shutdown_request() {
    let d = FakeDaemon::start(
        "b1",
        "worker",
        vec![
            msg(3, "leader", "b1", MessageKind::ShutdownRequest),
            msg(1, "b2", "b1", MessageKind::Text),
        ],
    );
    let ws = tempfile::tempdir().unwrap();
    let (link, inbound) = link::Link::start(d.env("b1"), Output::null())
        .await
        .unwrap();
    let role = default_role("worker");
    let session = Session::new(
        link,
        inbound,
        config(ws.path()),
        role,
        Output::null(),
        CommandGroups::default(),
        true,
    );
    ends(exec::run(&session)).await;
    check_answered(&d.requests());
}

/// A model agent `b1` on the mock, linked to a fake daemon: what `agent::run` borrows.
struct ModelAgent {
    link: Arc<link::Link>,
    inbound: Option<mpsc::UnboundedReceiver<link::Inbound>>,
    role: Role,
    cfg: TeamConfig,
    out: Output,
    groups: CommandGroups,
    _ws: tempfile::TempDir,
}

impl ModelAgent {
    async fn start(mock: &MockModel, pushes: Vec<Message>) -> (FakeDaemon, Self) {
        let d = FakeDaemon::start("b1", "worker", pushes);
        let a = Self::on(&d, mock).await;
        (d, a)
    }

    /// A worker `b1` on the mock model, connected to `d`.
    async fn on(d: &FakeDaemon, mock: &MockModel) -> Self {
        let ws = tempfile::tempdir().unwrap();
        let (link, inbound) = link::Link::start(d.env("b1"), Output::null())
            .await
            .unwrap();
        let role = Role {
            provider: Provider::Openai,
            model: "mock".into(),
            base_url: Some(mock.base_url()),
            api_key_env: Some("AGENT_TEAM_TEST_NO_SUCH_KEY".into()),
            stream: false,
            ..default_role("worker")
        };
        let cfg = config(ws.path());
        ModelAgent {
            link,
            inbound: Some(inbound),
            role,
            cfg,
            out: Output::null(),
            groups: CommandGroups::default(),
            _ws: ws,
        }
    }

    /// The agent's start and loop, as its worker runs them.
    async fn run(&mut self) -> Result<(), AgentError> {
        let inbound = self.inbound.take().unwrap();
        let first = agent::Start::read(&self.link).await;
        let session = Session::new(
            self.link.clone(),
            inbound,
            self.cfg.clone(),
            self.role.clone(),
            self.out.clone(),
            self.groups.clone(),
            true,
        );
        agent::run(&session, first).await
    }
}

/// Whether the agent has said it is idle (its turn is over).
fn went_idle(d: &FakeDaemon) -> bool {
    d.requests().iter().any(|r| {
        matches!(
            r,
            Request::SetStatus {
                status: AgentStatus::Idle,
                ..
            }
        )
    })
}

#[tokio::test]
async fn a_model_agent_answers_a_shutdown_request() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script("b1", vec![Step::Text("ready".into())]);
    let (d, mut a) = ModelAgent::start(
        &mock,
        vec![
            msg(3, "leader", "b1", MessageKind::ShutdownRequest),
            msg(1, "b2", "b1", MessageKind::Text),
        ],
    )
    .await;
    ends(a.run()).await;
    check_answered(&d.requests());
}

/// Polls `cond` every 10 ms until it holds, failing after 30 s or if `run` ends first.
async fn until<F: std::future::Future>(
    what: &str,
    run: &mut std::pin::Pin<&mut F>,
    mut cond: impl FnMut() -> bool,
) where
    F::Output: std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::select! {
            r = run.as_mut() => panic!("the loop ended early ({what}): {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

#[tokio::test]
async fn a_model_agent_marks_messages_read_only_after_the_turn_that_took_them() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    // The turn that takes the message is held open until the test lets it finish.
    let gate = agent_team_mockmodel::Gate::new();
    mock.script(
        "b1",
        vec![
            Step::Text("first".into()),
            Step::Gate(gate.clone(), Box::new(Step::Text("took it".into()))),
        ],
    );
    let (d, mut a) = ModelAgent::start(&mock, vec![]).await;
    let run = a.run();
    tokio::pin!(run);
    until("the first turn is over", &mut run, || went_idle(&d)).await;
    d.push(&msg(5, "leader", "b1", MessageKind::Text));
    until("a turn takes message 5", &mut run, || {
        mock.requests("b1")
            .iter()
            .any(|r| r.to_string().contains("[message from leader] message 5"))
    })
    .await;
    assert!(
        reads(&d.requests()).iter().all(|ids| !ids.contains(&5)),
        "not read while the turn that took it is open"
    );
    gate.open();
    until("message 5 is marked read after its turn", &mut run, || {
        reads(&d.requests()).iter().any(|ids| ids.contains(&5))
    })
    .await;
}

/// An idle notice reaching an idle model agent is read at once and does not start a turn
/// (a request each would cost); the model sees it with the turn a real message starts.
#[tokio::test]
async fn idle_notices_do_not_wake_a_model_agent() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "b1",
        vec![Step::Text("first".into()), Step::Text("second".into())],
    );
    let (d, mut a) = ModelAgent::start(&mock, vec![]).await;
    let run = a.run();
    tokio::pin!(run);
    until("the first turn is over", &mut run, || went_idle(&d)).await;
    d.push(&msg(6, "b2", "b1", MessageKind::Idle));
    d.push(&msg(7, "b3", "b1", MessageKind::ShutdownResponse));
    until("the notices are read", &mut run, || {
        let read: Vec<u64> = reads(&d.requests()).concat();
        read.contains(&6) && read.contains(&7)
    })
    .await;
    assert_eq!(mock.requests("b1").len(), 1, "no turn for notices alone");
    d.push(&msg(8, "leader", "b1", MessageKind::Text));
    until("a turn takes message 8", &mut run, || {
        mock.requests("b1").len() == 2
    })
    .await;
    let second = mock.requests("b1")[1].to_string();
    for m in ["message 6", "message 7", "[message from leader] message 8"] {
        assert!(second.contains(m), "{m} in {second}");
    }
}

#[tokio::test]
async fn the_exec_leader_ends_on_the_operators_shutdown_without_answering_it() {
    let d = FakeDaemon::start(
        "leader",
        "leader",
        vec![
            msg(4, "operator", "leader", MessageKind::ShutdownRequest),
            msg(2, "b1", "leader", MessageKind::Text),
        ],
    );
    let ws = tempfile::tempdir().unwrap();
    let (link, inbound) = link::Link::start(d.env("leader"), Output::null())
        .await
        .unwrap();
    let role = default_role("leader");
    let session = Session::new(
        link,
        inbound,
        config(ws.path()),
        role,
        Output::null(),
        CommandGroups::default(),
        true,
    );
    ends(leader::run(&session)).await;
    let requests = d.requests();
    assert!(
        responses(&requests).is_empty(),
        "the operator is not an agent"
    );
    assert!(reads(&requests).contains(&vec![4]), "{requests:#?}");
    assert!(
        reads(&requests).iter().all(|ids| !ids.contains(&2)),
        "the teammate's message was not acted on: {requests:#?}"
    );
}

/// Waits for `f` at most 10 s: a request that waited for an answer the fake daemon holds back
/// would never end.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: a request waited for an earlier one's answer"))
}

#[tokio::test]
async fn a_link_asks_its_first_request_without_waiting_for_the_task_watch() {
    // Nothing is answered until two requests came: the task watch and the caller's.
    let d = FakeDaemon::start_holding("b1", "worker", vec![], 2);
    let (link, _inbound) = link::Link::start(d.env("b1"), Output::null())
        .await
        .unwrap();
    within("the first call", link.call(Request::Agents))
        .await
        .unwrap();
    // The watch first: the daemon applies a connection's requests in order, so what the
    // agent reads is answered with the watch on.
    assert!(
        matches!(d.requests()[..], [Request::WatchTasks, Request::Agents, ..]),
        "{:?}",
        d.requests()
    );
}

#[tokio::test]
async fn a_welcome_that_carries_the_first_reads_spares_their_requests_once() {
    let dir = tempfile::tempdir().unwrap();
    let team = config(dir.path());
    let reads = StartReads {
        config: Some(Reply::Config {
            config: serde_json::to_value(&team).unwrap(),
        }),
        agents: Some(answer(&Request::Agents)),
        members: 0,
        team: None,
        tasks: Some(answer(&Request::TaskList {
            status: Some(TaskStatus::InProgress),
            after: None,
        })),
        unread: 0,
        lease: None,
    };
    let d = FakeDaemon::welcoming_b1(reads);
    let (link, _inbound) = link::Link::start(d.env("b1"), Output::null())
        .await
        .unwrap();
    let got = within("the carried configuration", link.config())
        .await
        .unwrap();
    assert_eq!(got.name, team.name);
    let start = within("the carried start", agent::Start::read(&link)).await;
    drop(start);
    // Read once: asked again, the configuration comes from the daemon.
    within("the configuration asked", link.config()).await.ok();
    let seen = d.requests();
    assert_eq!(
        seen,
        vec![Request::GetConfig],
        "the watch was on and the reads carried: only the second read is asked"
    );
}

#[tokio::test]
async fn an_agent_asks_for_its_configuration_roster_goal_and_board_at_once() {
    // The leader's start: the watch, the configuration, the roster, the goal and the board,
    // none answered before all have arrived.
    let d = FakeDaemon::start_holding("leader", "leader", vec![], 5);
    let agent = tokio::spawn(agent_team_worker::run_agent(
        d.env("leader"),
        Output::null(),
        CommandGroups::default(),
        None,
    ));
    within("the start's reads", async {
        while d.requests().len() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    agent.abort();
    let seen = d.requests();
    for wanted in [
        Request::GetConfig,
        Request::Agents,
        Request::TeamInfo,
        Request::TaskList {
            status: Some(TaskStatus::InProgress),
            after: None,
        },
    ] {
        assert!(seen.contains(&wanted), "{wanted:?} not asked: {seen:?}");
    }
}

#[tokio::test]
async fn every_request_carries_the_whole_tool_list_after_a_retry_and_a_later_turn() {
    // The tool list goes into each request and comes back after it, on every path.
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "b1",
        vec![
            // Not retried by the HTTP client (a 5xx would be): the agent tries the turn again.
            Step::Status(400, "a passing refusal".into()),
            Step::Text("first".into()),
            Step::Text("second".into()),
        ],
    );
    let (d, mut a) = ModelAgent::start(&mock, vec![]).await;
    let run = a.run();
    tokio::pin!(run);
    until("the retried turn is over", &mut run, || {
        mock.requests("b1").len() == 2 && went_idle(&d)
    })
    .await;
    d.push(&msg(8, "leader", "b1", MessageKind::Text));
    until("a turn takes message 8", &mut run, || {
        mock.requests("b1").len() == 3
    })
    .await;
    let bodies = mock.requests("b1");
    let tools = &bodies[0]["tools"];
    assert!(
        tools.as_array().is_some_and(|t| !t.is_empty()),
        "the first request's tools: {tools}"
    );
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(&b["tools"], tools, "request {i} carries the same tools");
    }
}

/// The messages sent with `send_message`, in the order the daemon got them.
fn sent_texts(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Send {
                body,
                kind: MessageKind::Text,
                ..
            } => Some(body.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_turns_calls_that_are_one_request_each_go_out_together_in_order() {
    // Two messages in one turn: the daemon answers neither until both have arrived, so an
    // agent that waited for the first answer before sending the second would never finish
    // its turn.
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "b1",
        vec![
            Step::Tools(vec![
                (
                    "send_message".into(),
                    serde_json::json!({"to": "leader", "text": "first"}),
                ),
                (
                    "send_message".into(),
                    serde_json::json!({"to": "leader", "text": "second"}),
                ),
            ]),
            Step::Text("done".into()),
        ],
    );
    let d = FakeDaemon::start_holding_until("b1", "worker", vec![], |seen: &[Request]| {
        let sends = sent_texts(seen).len();
        sends == 0 || sends >= 2
    });
    let mut a = ModelAgent::on(&d, &mock).await;
    let run = a.run();
    tokio::pin!(run);
    until("the turn after the two messages", &mut run, || {
        mock.requests("b1").len() == 2
    })
    .await;
    assert_eq!(
        sent_texts(&d.requests()),
        ["first", "second"],
        "in the model's order"
    );
    // Their results reach the model in its order too.
    let second = mock.requests("b1")[1].to_string();
    let (a1, a2) = (second.find("call_1"), second.rfind("call_2"));
    assert!(a1.is_some() && a2.is_some() && a1 < a2, "{second}");
}

/// The unread messages a welcome with the first reads says follow it are in the agent's
/// inbound queue when its link is open, however late they come: its first turn sees them (a
/// teammate's first message from its spawn, above all). Without the wait the link opened as
/// soon as the welcome came, and the first turn went out without them.
#[tokio::test]
async fn the_unread_messages_behind_a_welcome_with_the_first_reads_are_in_before_the_first_turn() {
    let first = msg(7, "leader", "b1", MessageKind::Text);
    let reads = StartReads {
        unread: 1,
        ..Default::default()
    };
    let d = FakeDaemon::start_welcoming(
        "b1",
        "worker",
        vec![first.clone()],
        |_| true,
        Some(Box::new(reads)),
        std::time::Duration::from_millis(100),
    );
    let (_link, mut inbound) = within(
        "the link open",
        link::Link::start(d.env("b1"), Output::null()),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while let Ok(ev) = inbound.try_recv() {
        if let link::Inbound::Message(m) = ev {
            got.push(m.id);
        }
    }
    assert_eq!(got, vec![first.id]);
}

/// A lease the welcome granted serves the agent's first model request alone: it asks the
/// daemon for none before that request and for one before the next.
#[tokio::test]
async fn a_lease_granted_with_the_welcome_spares_only_the_first_requests_budget_check() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "b1",
        vec![
            Step::Tools(vec![(
                "send_message".into(),
                serde_json::json!({"to": "leader", "text": "first"}),
            )]),
            Step::Text("done".into()),
        ],
    );
    let reads = StartReads {
        lease: Some(Reply::Budget {
            stop: None,
            wait: None,
        }),
        ..Default::default()
    };
    let d = FakeDaemon::welcoming_b1(reads);
    let mut a = ModelAgent::on(&d, &mock).await;
    let run = a.run();
    tokio::pin!(run);
    until("the second model request", &mut run, || {
        mock.requests("b1").len() == 2
    })
    .await;
    let checks = |seen: &[Request]| {
        seen.iter()
            .filter(|r| matches!(r, Request::BudgetCheck { .. }))
            .count()
    };
    // The message was sent between the two model requests: the checks before it are the
    // first request's.
    let seen = d.requests();
    let sent = seen
        .iter()
        .position(|r| matches!(r, Request::Send { .. }))
        .expect("the message sent");
    assert_eq!(checks(&seen[..sent]), 0, "{seen:?}");
    assert_eq!(checks(&seen[sent..]), 1, "{seen:?}");
}

/// A message pushed with a granted lease starts its turn without a `budget_check`; a message
/// pushed without one, as before, asks first, even when an earlier push (a notice that started
/// no turn) had granted one: the last push's word is the one kept.
#[tokio::test]
async fn a_lease_granted_with_a_message_spares_the_turn_it_starts_its_budget_check() {
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "b1",
        vec![
            Step::Text("first".into()),
            Step::Text("second".into()),
            Step::Text("third".into()),
            Step::Text("fourth".into()),
        ],
    );
    let (d, mut a) = ModelAgent::start(&mock, vec![]).await;
    let run = a.run();
    tokio::pin!(run);
    until("the first turn is over", &mut run, || went_idle(&d)).await;
    let checks = |d: &FakeDaemon| {
        d.requests()
            .iter()
            .filter(|r| matches!(r, Request::BudgetCheck { .. }))
            .count()
    };
    let before = checks(&d);
    d.push_granting(&msg(8, "leader", "b1", MessageKind::Text));
    until("a turn takes message 8", &mut run, || {
        mock.requests("b1").len() == 2
    })
    .await;
    assert_eq!(checks(&d), before, "the granted lease was asked for again");
    until("the second turn is over", &mut run, || {
        reads(&d.requests()).concat().contains(&8)
    })
    .await;
    d.push(&msg(9, "leader", "b1", MessageKind::Text));
    until("a turn takes message 9", &mut run, || {
        mock.requests("b1").len() == 3
    })
    .await;
    assert_eq!(
        checks(&d),
        before + 1,
        "a message without a lease asks for one"
    );
    until("the third turn is over", &mut run, || {
        reads(&d.requests()).concat().contains(&9)
    })
    .await;
    // A notice's grant, then a message without one (a budget was set in between).
    d.push_granting(&msg(10, "b2", "b1", MessageKind::Idle));
    until("the notice is read", &mut run, || {
        reads(&d.requests()).concat().contains(&10)
    })
    .await;
    d.push(&msg(11, "leader", "b1", MessageKind::Text));
    until("a turn takes message 11", &mut run, || {
        mock.requests("b1").len() == 4
    })
    .await;
    assert_eq!(
        checks(&d),
        before + 2,
        "the notice's grant outlived a push without one"
    );
}

/// A link whose agent is gone (an in-process agent stopped with its daemon, whose
/// connections then close) does not reconnect: it lets go at once instead of dialling a
/// daemon that is ending. A live agent's link reconnects.
#[tokio::test]
async fn a_link_whose_agent_is_gone_lets_go_when_its_connection_ends() {
    let d = FakeDaemon::start("b1", "worker", vec![]);
    let (gone, mut inbound) = within(
        "the link opens",
        link::Link::start(d.env("b1"), Output::null()),
    )
    .await
    .unwrap();
    // Its keeper runs (it says the link is connected), then the agent goes.
    within("the keeper runs", inbound.recv()).await;
    drop(inbound);
    let (live, _inbound) = within(
        "the second link opens",
        link::Link::start(d.env("b1"), Output::null()),
    )
    .await
    .unwrap();
    assert_eq!(d.accepted(), 2);
    d.cut_connections();
    // Only the live one's keeper dials again; the other's ends, letting go of its link.
    eventually("the live link reconnects", || d.accepted() >= 3).await;
    eventually("the gone agent's keeper lets go", || {
        Arc::strong_count(&gone) == 1
    })
    .await;
    assert_eq!(d.accepted(), 3, "the gone agent's link dialled again");
    drop(live);
}

/// Waits (up to 30 s) until `cond` holds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A link is connected when `start` returns, before its keeper task first runs: the statuses
/// an agent fires from its first step go at once and in order. They waited for the keeper
/// before, each on a task of its own, and on a runtime that runs the newest task first a
/// turn's `running` landed after its `idle` (an agent left `running` for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn statuses_fired_from_an_agents_first_step_arrive_in_order() {
    let d = FakeDaemon::start("b1", "worker", vec![]);
    let (link, _inbound) = link::Link::start(d.env("b1"), Output::null())
        .await
        .unwrap();
    assert!(link.is_connected(), "connected before the keeper ran");
    let statuses = [AgentStatus::Running, AgentStatus::Idle];
    for status in statuses {
        link.fire(Request::SetStatus {
            status,
            error: None,
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let seen: Vec<AgentStatus> = d
            .requests()
            .into_iter()
            .filter_map(|r| match r {
                Request::SetStatus { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        if seen.len() >= statuses.len() || std::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(seen, statuses);
}
