//! The core driving the supervisor on the fake backend with a fake clock: the restart policy,
//! the connect-back deadline, kill and stale incarnations, in milliseconds and without processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::FakeClock;
use crate::supervisor::*;
use agent_team_config::BackendKind;
use agent_team_pane::PaneBackend;
use agent_team_pane::fake::{Call, FakeBackend};
use agent_team_pane::{ExitInfo, Liveness};
use agent_team_state::TeamState;
use agent_team_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A core on a fake backend and a fake clock, driven by hand.
struct Harness {
    core: Core,
    rx: mpsc::UnboundedReceiver<CoreMsg>,
    clock: FakeClock,
    backend: Arc<FakeBackend>,
    _dir: tempfile::TempDir,
}

/// A core of team `t` in `dir` on a fake clock, its state restored from the store there,
/// agents launched by `factory`'s backend; what it sends itself goes to `tx`.
pub(super) fn core_at(
    dir: &std::path::Path,
    factory: Option<BackendFactory>,
    tx: mpsc::UnboundedSender<CoreMsg>,
    clock: FakeClock,
) -> Core {
    let paths = agent_team_paths::Paths::new(dir.join("home"), dir.join("run"));
    let tp = paths.team("t").unwrap();
    tp.ensure_dirs().unwrap();
    let store = Store::open(&tp.db, "t").unwrap();
    let state = TeamState::restore("t", store.load().unwrap());
    let env = SupervisorEnv {
        worker_exe: Some("/bin/true".into()),
        runner: None,
        factory,
        heal_env: Vec::new(),
        layout_exe: None,
    };
    let cfg = CoreConfig {
        team: "t".into(),
        paths: tp,
        operator_secret: "s".into(),
        perm_timeout: Duration::from_secs(300),
        inbox_limit: 100,
        max_queued_frames: 1000,
        gate: crate::gate::Gate::new(&Default::default()),
        ends_process: false,
    };
    Core::with_clock(cfg, store, state, env, tx, Arc::new(clock))
}

/// [`core_at`] with its team configured on `kind`, every agent launched by `backend`.
fn core_in(
    dir: &std::path::Path,
    kind: BackendKind,
    backend: Arc<dyn PaneBackend>,
    tx: mpsc::UnboundedSender<CoreMsg>,
    clock: FakeClock,
) -> Core {
    let factory: BackendFactory = Arc::new(move |_, _| Ok(backend.clone()));
    let mut core = core_at(dir, Some(factory), tx, clock);
    let mut team = agent_team_config::empty_team("t", dir);
    team.backend = kind;
    core.supervise(|s| s.configure(&Actor::Operator, serde_json::to_value(&team).unwrap()))
        .unwrap();
    core
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(FakeBackend::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let clock = FakeClock::default();
        let core = core_in(
            dir.path(),
            BackendKind::Process,
            backend.clone(),
            tx,
            clock.clone(),
        );
        Harness {
            core,
            rx,
            clock,
            backend,
            _dir: dir,
        }
    }

    /// Applies what the blocking pool reports (launches, stops, polls) until `done` holds.
    async fn settle_until(&mut self, what: &str, done: impl Fn(&Harness) -> bool) {
        while !done(self) {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("the channel is open");
            self.core.handle(msg);
            self.core.flush().unwrap();
        }
    }

    /// Whether `name`'s current incarnation has been launched and nothing is in flight.
    fn launched(&self, name: &str) -> bool {
        self.core.sup.is_settled_running(name)
    }

    /// Moves the clock and fires what is due.
    fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.core.fire_timers();
        self.core.flush().unwrap();
    }

    fn agent(&self, name: &str) -> AgentInfo {
        self.core.state.agent(name).unwrap().info.clone()
    }

    fn spawns(&self) -> usize {
        self.backend
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, Call::Spawn(_) | Call::Respawn(_)))
            .count()
    }

    /// The agent's process connects back.
    fn connect(&mut self, name: &str) {
        self.core
            .state
            .update_agent(name, |a| a.info.connected = true);
        self.core.supervise(|s| s.on_connected(name, None));
        self.core.flush().unwrap();
    }

    /// Its process exits with `code`; the next poll finds it and the policy decides.
    async fn exits(&mut self, name: &str, code: i32) {
        let pid = self.agent(name).pid.unwrap();
        self.backend.exit(
            pid,
            ExitInfo {
                code: Some(code),
                signal: None,
            },
        );
        self.core.supervise(|s| s.poll());
        let n = name.to_string();
        self.settle_until("the exit to be noticed", move |h| {
            h.core.sup.has_no_process(&n)
        })
        .await;
    }

    /// A harness with two agents connected: `w1`, our own worker, and `cc`, Claude Code.
    async fn with_worker_and_cli() -> Self {
        let mut h = Harness::new();
        h.spawn_connected("w1").await;
        h.spawn_member_connected(agent_team_protocol::SpawnMember {
            name: "cc".into(),
            role: "worker".into(),
            provider: Some("claude-code".into()),
            ..Default::default()
        })
        .await;
        h
    }

    async fn spawn_connected(&mut self, name: &str) {
        self.spawn_member_connected(worker_named(name)).await;
    }

    /// Spawns `member` as the operator and has it connect once launched.
    async fn spawn_member_connected(&mut self, member: agent_team_protocol::SpawnMember) {
        let name = member.name.clone();
        let r = self
            .core
            .supervise(|s| s.spawn_request(&Actor::Operator, 1, 1, member))
            .unwrap();
        assert!(r.is_none(), "answered once connected");
        let n = name.clone();
        self.settle_until("the launch", move |h| h.launched(&n))
            .await;
        self.connect(&name);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn backoff_doubles_then_five_quick_failures_end_failed_and_a_manual_restart_revives() {
    let mut h = Harness::new();
    h.spawn_connected("b1").await;
    assert_eq!(h.spawns(), 1);
    let mut waits = Vec::new();
    for n in 1..=4usize {
        h.exits("b1", 1).await;
        let a = h.agent("b1");
        assert_eq!(a.status, AgentStatus::Backoff, "failure {n}");
        let wait = crate::policy::backoff(n);
        waits.push(wait.as_millis());
        // Not a moment before its backoff is over…
        h.advance(wait - Duration::from_millis(1));
        assert_eq!(
            h.agent("b1").incarnation,
            n as u64,
            "restarted early after failure {n}"
        );
        // …and at once when it is.
        h.advance(Duration::from_millis(1));
        assert_eq!(
            h.agent("b1").incarnation,
            n as u64 + 1,
            "not restarted after failure {n}"
        );
        h.settle_until("the relaunch", |h| h.launched("b1")).await;
        h.connect("b1");
    }
    assert_eq!(waits, [500, 1000, 2000, 4000]);
    // The fifth failure within 60 s gives up.
    h.exits("b1", 1).await;
    let a = h.agent("b1");
    assert_eq!((a.status, a.incarnation), (AgentStatus::Failed, 5));
    h.advance(Duration::from_secs(120));
    assert_eq!(
        h.agent("b1").incarnation,
        5,
        "a failed agent is not started again"
    );
    // A manual restart clears the count: it gets five more tries.
    h.core
        .supervise(|s| s.restart_request(&Actor::Operator, 1, 2, "b1"))
        .unwrap();
    h.settle_until("the manual restart", |h| h.launched("b1"))
        .await;
    h.connect("b1");
    assert_eq!((h.agent("b1").incarnation, h.spawns()), (6, 6));
    h.exits("b1", 1).await;
    assert_eq!(h.agent("b1").status, AgentStatus::Backoff);
}

#[tokio::test(flavor = "current_thread")]
async fn failures_spread_over_more_than_a_minute_never_give_up() {
    let mut h = Harness::new();
    h.spawn_connected("b1").await;
    for i in 0..8 {
        h.exits("b1", 1).await;
        assert_eq!(h.agent("b1").status, AgentStatus::Backoff, "failure {i}");
        // Well after the backoff, and far enough apart that the window holds few failures.
        h.advance(Duration::from_secs(31));
        h.settle_until("the relaunch", |h| h.launched("b1")).await;
        h.connect("b1");
    }
    assert_eq!(h.spawns(), 9);
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_spawn_that_never_connects_is_rolled_back_at_the_deadline() {
    let mut h = Harness::new();
    h.core
        .supervise(|s| s.spawn_request(&Actor::Operator, 1, 1, worker_named("b1")))
        .unwrap();
    h.settle_until("the launch", |h| h.launched("b1")).await;
    h.advance(connect_timeout() - Duration::from_millis(1));
    let stops = |h: &Harness| {
        h.backend
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, Call::Stop(_)))
            .count()
    };
    assert!(
        h.launched("b1") && stops(&h) == 0,
        "nothing before the deadline"
    );
    h.advance(Duration::from_millis(1));
    // The silent process is stopped, then the spawn rolled back.
    h.settle_until("the rollback", |h| h.core.state.agent("b1").is_none())
        .await;
    assert_eq!(stops(&h), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn kill_stops_for_good_and_releases_the_task() {
    let mut h = Harness::new();
    h.spawn_connected("b1").await;
    let now = Timestamp::from(std::time::SystemTime::now());
    let task = h
        .core
        .state
        .task_add(
            &Actor::Operator,
            agent_team_state::tasks::NewTask {
                title: "x".into(),
                description: String::new(),
                run: None,
                blocked_by: vec![],
                assign: None,
                key: None,
            },
            now,
        )
        .unwrap();
    h.core
        .state
        .task_claim(&Actor::Agent("b1".into()), task.id, now)
        .unwrap();
    assert!(
        h.core
            .supervise(|s| s.kill_request(&Actor::Operator, 1, 3, "b1", None))
            .unwrap()
            .is_none()
    );
    h.settle_until("the stop", |h| h.agent("b1").status == AgentStatus::Stopped)
        .await;
    let a = h.agent("b1");
    assert_eq!(a.status, AgentStatus::Stopped);
    let t = h.core.state.task(task.id).unwrap().clone();
    assert_eq!((t.status, t.owner), (TaskStatus::Pending, None));
    h.advance(Duration::from_secs(120));
    assert_eq!(h.spawns(), 1, "a killed agent is not restarted");
}

#[tokio::test(flavor = "current_thread")]
async fn reports_about_an_old_incarnation_are_ignored() {
    let mut h = Harness::new();
    h.spawn_connected("b1").await;
    let old = h.agent("b1");
    h.core
        .supervise(|s| s.restart_request(&Actor::Operator, 1, 4, "b1"))
        .unwrap();
    h.settle_until("stopped, then launched again", |h| {
        h.launched("b1") && h.agent("b1").incarnation == old.incarnation + 1
    })
    .await;
    h.connect("b1");
    let new = h.agent("b1");
    assert_eq!(new.incarnation, old.incarnation + 1);
    // A late poll result says the old incarnation died: nothing happens to the new one.
    h.core.handle(CoreMsg::Sup(SupEvent::Polled {
        results: vec![(
            "b1".into(),
            old.incarnation,
            Liveness::Exited(ExitInfo {
                code: Some(1),
                signal: None,
            }),
        )],
    }));
    h.core.handle(CoreMsg::Sup(SupEvent::Launched {
        name: "b1".into(),
        incarnation: old.incarnation,
        result: Err("late".into()),
    }));
    h.core.flush().unwrap();
    let after = h.agent("b1");
    assert_eq!(after.incarnation, new.incarnation);
    assert!(
        matches!(
            after.status,
            AgentStatus::Running | AgentStatus::Idle | AgentStatus::Starting
        ),
        "{after:?}"
    );
    assert_eq!(after.restarts, new.restarts);
}

/// A spawn of a `worker` named `name`, without overrides.
fn worker_named(name: &str) -> agent_team_protocol::SpawnMember {
    agent_team_protocol::SpawnMember {
        name: name.to_string(),
        role: "worker".to_string(),
        ..Default::default()
    }
}

/// Issue 15 item 7 through the core: a teammate of a plan-required role starts planning; its
/// `plan_submit` and the operator's and the leader's `plan_decide` answer as documented, emit
/// `PLAN_SUBMITTED`/`PLAN_DECIDED`, the feedback reaches the teammate's inbox, and the plan
/// state outlives a restart of the teammate.
#[tokio::test(flavor = "current_thread")]
async fn plan_approval_through_the_core() {
    let mut h = Harness::new();
    let mut team = agent_team_config::empty_team("t", std::path::Path::new("/w"));
    team.backend = BackendKind::Process;
    let mut planned = team.roles["worker"].clone();
    planned.name = "planned".into();
    planned.provider = agent_team_config::Provider::Openai;
    planned.model = "m".into();
    planned.plan_required = true;
    team.roles.insert("planned".into(), planned);
    h.core
        .supervise(|s| s.configure(&Actor::Operator, serde_json::to_value(&team).unwrap()))
        .unwrap();
    let r = h
        .core
        .supervise(|s| {
            s.spawn_request(
                &Actor::Operator,
                1,
                1,
                agent_team_protocol::SpawnMember {
                    name: "p1".into(),
                    role: "planned".into(),
                    ..Default::default()
                },
            )
        })
        .unwrap();
    assert!(r.is_none());
    h.settle_until("the launch", |h| h.launched("p1")).await;
    h.connect("p1");
    h.spawn_connected("w1").await;
    assert_eq!(
        h.agent("p1").plan.map(|p| p.state),
        Some(PlanState::Planning)
    );
    assert!(h.agent("w1").plan.is_none(), "a worker needs no plan");

    let p1 = Actor::Agent("p1".into());
    let op = Actor::Operator;
    let call = |h: &mut Harness, actor: &Actor, req: Request| {
        let r = h.core.request(1, actor, req);
        h.core.flush().unwrap();
        r
    };
    // Errors: a decision before any plan, a plan from a teammate that needs none.
    let e = call(
        &mut h,
        &op,
        Request::PlanDecide {
            agent: "p1".into(),
            approve: true,
            feedback: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = call(
        &mut h,
        &Actor::Agent("w1".into()),
        Request::PlanSubmit { plan: "x".into() },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = call(
        &mut h,
        &op,
        Request::PlanDecide {
            agent: "ghost".into(),
            approve: true,
            feedback: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let r = call(
        &mut h,
        &p1,
        Request::PlanSubmit {
            plan: "step 1".into(),
        },
    )
    .unwrap();
    assert!(
        matches!(&r, Reply::Agent { agent } if agent.plan.as_ref().is_some_and(|p| p.state == PlanState::Submitted)),
        "{r:?}"
    );
    call(
        &mut h,
        &op,
        Request::PlanDecide {
            agent: "p1".into(),
            approve: false,
            feedback: Some("add tests".into()),
        },
    )
    .unwrap();
    assert_eq!(
        h.agent("p1").plan.map(|p| p.state),
        Some(PlanState::Planning)
    );
    let Reply::Messages { messages, .. } = call(
        &mut h,
        &op,
        Request::Inbox {
            agent: Some("p1".into()),
            unread_only: false,
            after: None,
        },
    )
    .unwrap() else {
        panic!("not messages")
    };
    assert!(
        messages
            .iter()
            .any(|m| m.from == "operator" && m.body.contains("add tests")),
        "{messages:?}"
    );

    // A restart of the teammate keeps it planning.
    h.core
        .supervise(|s| s.restart_request(&Actor::Operator, 1, 9, "p1"))
        .unwrap();
    h.settle_until("the restart", |h| {
        h.launched("p1") && h.agent("p1").incarnation == 2
    })
    .await;
    h.connect("p1");
    assert!(h.agent("p1").is_planning());

    call(
        &mut h,
        &p1,
        Request::PlanSubmit {
            plan: "step 1, tests".into(),
        },
    )
    .unwrap();
    call(
        &mut h,
        &op,
        Request::PlanDecide {
            agent: "p1".into(),
            approve: true,
            feedback: None,
        },
    )
    .unwrap();
    assert!(!h.agent("p1").is_planning());

    let Reply::Events { events } = call(
        &mut h,
        &op,
        Request::Events {
            since: 0,
            limit: None,
        },
    )
    .unwrap() else {
        panic!("not events")
    };
    let plan_events: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::PlanSubmitted { agent, plan } => Some(format!("submitted {agent}: {plan}")),
            Event::PlanDecided {
                agent,
                approved,
                feedback,
                by,
            } => Some(format!("decided {agent} {approved} {feedback:?} by {by}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        plan_events,
        [
            "submitted p1: step 1",
            "decided p1 false Some(\"add tests\") by operator",
            "submitted p1: step 1, tests",
            "decided p1 true None by operator",
        ]
    );
}

/// Only an external CLI's team server types into its pane, a bounded text, in order.
#[tokio::test(flavor = "current_thread")]
async fn pane_input_is_for_external_clis_with_a_pane_and_bounded() {
    let mut h = Harness::with_worker_and_cli().await;
    let mut input = |who: &str, text: String| {
        let r = h
            .core
            .request(1, &Actor::Agent(who.into()), Request::PaneInput { text });
        h.core.flush().unwrap();
        r
    };
    // Our own worker has no business typing into panes.
    let e = input("w1", "hello".into()).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    // Too much for one paste.
    let e = input("cc", "x".repeat(300 * 1024)).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
    // Typed into cc's own pane, off the core, in order.
    input("cc", "first".into()).unwrap();
    input("cc", "second".into()).unwrap();
    let pane = h.agent("cc").pane.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pasted = loop {
        let pasted: Vec<(String, String)> = h
            .backend
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Call::Paste(p, t) => Some((p.clone(), t.clone())),
                _ => None,
            })
            .collect();
        if pasted.len() == 2 || std::time::Instant::now() > deadline {
            break pasted;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        pasted,
        vec![(pane.clone(), "first".into()), (pane, "second".into())]
    );
    let e = h
        .core
        .request(1, &Actor::Operator, Request::PaneInput { text: "x".into() })
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
}

/// An agent of our own loop has its egress proxy served when it asks (`serve_egress`, before
/// each sandboxed process), not as it says hello: a thousand that run no command cost the
/// daemon no socket. An agent CLI's is served at hello (its sandbox is made as it starts); a
/// hello later brings a served proxy's policy up to date; the operator has none to ask for.
#[tokio::test(flavor = "current_thread")]
async fn an_egress_proxy_is_served_when_its_agent_asks_and_a_clis_at_hello() {
    let mut h = Harness::with_worker_and_cli().await;
    let runtime = h.core.cfg.paths.socket.parent().unwrap().to_path_buf();
    let sock = |n: &str| {
        agent_team_paths::net_dir(&runtime, "t", n).join(agent_team_sandbox::network::PROXY_SOCKET)
    };
    h.core.net_hello("w1");
    h.core.net_hello("cc");
    assert!(!sock("w1").exists(), "served at hello");
    assert!(sock("cc").exists(), "a CLI's proxy is served at hello");
    let ask = |h: &mut Harness, who: Actor| {
        let r = h.core.request(1, &who, Request::ServeEgress);
        h.core.flush().unwrap();
        r
    };
    ask(&mut h, Actor::Agent("w1".into())).unwrap();
    assert!(sock("w1").exists(), "not served when asked");
    // Asked again (before its next process), or after a reconnect: the same proxy.
    let served = std::fs::metadata(sock("w1")).unwrap();
    ask(&mut h, Actor::Agent("w1".into())).unwrap();
    h.core.net_hello("w1");
    let again = std::fs::metadata(sock("w1")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((served.ino(), served.dev()), (again.ino(), again.dev()));
    let e = ask(&mut h, Actor::Operator).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
}

/// A session's next run can start before the last run's leader has ended (it ends just after
/// its `finish`): that end is the last run's, and the leader comes back for the new run instead
/// of failing it (e2e `reruns::two_session_streams_…` failed so once under CI's load). A leader
/// that ends without having finished still fails its run.
#[tokio::test(flavor = "current_thread")]
async fn a_leader_ending_after_its_finish_comes_back_for_a_run_started_meanwhile() {
    use agent_team_protocol::RunState;
    let mut h = Harness::new();
    let start = |h: &mut Harness, goal: &str| {
        let goal = Some(goal.to_string());
        let r = h.core.request(
            1,
            &Actor::Operator,
            Request::StartRun { goal, config: None },
        );
        h.core.flush().unwrap();
        r
    };
    start(&mut h, "first").unwrap();
    h.settle_until("the leader's launch", |h| h.launched(LEADER))
        .await;
    h.connect(LEADER);
    let finish = Request::Finish {
        answer: "done".into(),
        force: true,
        success: true,
        details: None,
        auto: false,
    };
    h.core
        .request(1, &Actor::Agent(LEADER.into()), finish)
        .unwrap();
    h.core.flush().unwrap();
    assert_eq!(h.core.state.run().state, RunState::Finished);
    start(&mut h, "second").unwrap();
    let spawns = h.spawns();
    h.exits(LEADER, 0).await;
    assert_eq!(h.core.state.run().state, RunState::Running);
    h.settle_until("the leader's relaunch", |h| h.launched(LEADER))
        .await;
    assert_eq!(h.spawns(), spawns + 1);
    // This leader has finished nothing: its end fails the run.
    h.connect(LEADER);
    h.exits(LEADER, 0).await;
    assert_eq!(h.core.state.run().state, RunState::Failed);
}

/// A teammate being stopped takes no new task (dissolve gives held tasks back at once, and
/// another teammate on its way out must not pick one up): a claim is refused, claim_next finds
/// nothing, an assignment to it is refused; one that stays claims it.
#[tokio::test(flavor = "current_thread")]
async fn a_teammate_being_stopped_takes_no_new_task() {
    let mut h = Harness::new();
    h.spawn_connected("w1").await;
    h.spawn_connected("w2").await;
    let t = h
        .core
        .request(
            1,
            &Actor::Operator,
            Request::TaskAdd {
                title: "t".into(),
                description: String::new(),
                run: None,
                blocked_by: vec![],
                assign: None,
                key: None,
            },
        )
        .unwrap();
    let Reply::Task { task } = t else {
        panic!("{t:?}")
    };
    h.core.flush().unwrap();
    // w2 is told to stop (its process is still there, connected).
    h.core
        .supervise(|s| s.kill_request(&Actor::Operator, 9, 9, "w2", None))
        .unwrap();
    h.core.flush().unwrap();
    assert!(h.core.sup.is_stopping("w2") && !h.core.sup.is_stopping("w1"));
    let w2 = Actor::Agent("w2".into());
    let e = h
        .core
        .request(1, &w2, Request::TaskClaim { id: task.id })
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "{e:?}");
    let r = h.core.request(1, &w2, Request::TaskClaimNext).unwrap();
    assert!(matches!(r, Reply::MaybeTask { task: None }), "{r:?}");
    let e = h
        .core
        .request(
            1,
            &Actor::Operator,
            Request::TaskAssign {
                id: task.id,
                to: "w2".into(),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "{e:?}");
    let r = h
        .core
        .request(
            1,
            &Actor::Agent("w1".into()),
            Request::TaskClaim { id: task.id },
        )
        .unwrap();
    assert!(matches!(r, Reply::Task { task } if task.owner.as_deref() == Some("w1")));
}

/// The attack: the leader (a model) lifting the operator's `max_teammates` with `set_config`.
/// It may tune a role's model; the limit stays the operator's; a huge value is refused.
#[tokio::test(flavor = "current_thread")]
async fn the_leader_changes_models_but_not_the_operators_limit() {
    let mut h = Harness::new();
    let leader = Actor::Agent("leader".into());
    let set = |h: &mut Harness, who: &Actor, key: &str, value: String| {
        h.core
            .supervise(|s| s.config_change(who, Some(key.into()), Some(value)))
    };
    let e = set(&mut h, &leader, "max_teammates", "1000".into()).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    let e = h
        .core
        .supervise(|s| s.config_change(&leader, Some("max_teammates".into()), None))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    let before = h.core.sup.config.as_ref().unwrap().max_teammates;
    assert_ne!(before, 1000);
    set(&mut h, &leader, "role.worker.model", "m2".into()).unwrap();
    assert_eq!(
        h.core.sup.config.as_ref().unwrap().roles["worker"].model,
        "m2"
    );
    let e = set(&mut h, &leader, "role.worker.model", "x".repeat(10_000)).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
    // A teammate may change nothing.
    let e = set(
        &mut h,
        &Actor::Agent("w1".into()),
        "role.worker.model",
        "m3".into(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    // The operator may.
    set(&mut h, &Actor::Operator, "max_teammates", "3".into()).unwrap();
    assert_eq!(h.core.sup.config.as_ref().unwrap().max_teammates, 3);
}

/// Issue 30, through the request path: members of one model role spawned together start
/// staggered, and the first one's usage report (its first answered request) starts the others.
#[tokio::test(flavor = "current_thread")]
async fn a_first_usage_report_starts_the_members_held_behind_it() {
    let mut h = Harness::new();
    let mut team = agent_team_config::empty_team("t", h._dir.path());
    team.backend = BackendKind::Process;
    if let Some(w) = team.roles.get_mut("worker") {
        w.provider = agent_team_config::Provider::Anthropic;
        w.model = "claude-sonnet-4-5".into();
    }
    h.core
        .supervise(|s| s.configure(&Actor::Operator, serde_json::to_value(&team).unwrap()))
        .unwrap();
    let members = ["a1", "a2", "a3"].map(worker_named).to_vec();
    h.core
        .supervise(|s| s.spawn_team_request(&Actor::Agent(LEADER.into()), members))
        .unwrap();
    h.core.flush().unwrap();
    h.settle_until("a1 launched", |h| h.launched("a1")).await;
    assert_eq!(h.spawns(), 1, "a2 and a3 wait for a1's first answer");
    assert!(!h.launched("a2") && !h.launched("a3"));
    h.connect("a1");
    h.core
        .request(
            1,
            &Actor::Agent("a1".into()),
            Request::ReportUsage {
                model: "claude-sonnet-4-5".into(),
                input_tokens: 3000,
                output_tokens: 20,
                cached_tokens: 0,
                cache_write_tokens: 3000,
                call: None,
            },
        )
        .unwrap();
    h.core.flush().unwrap();
    h.settle_until("a2 and a3 launched", |h| {
        h.launched("a2") && h.launched("a3")
    })
    .await;
    assert_eq!(h.spawns(), 3);
}

/// An in-process agent for [`what_agents_started_inside_the_daemon_send_first_joins_the_batch_that_started_them`]:
/// as it first runs it reads whether its spawn is on disk yet, then sends the core a message.
struct FirstRun {
    db: std::path::PathBuf,
    tx: mpsc::UnboundedSender<CoreMsg>,
    spawn_on_disk: Arc<std::sync::Mutex<Option<bool>>>,
}

impl agent_team_pane::inprocess::AgentRunner for FirstRun {
    fn start(
        &self,
        spec: &agent_team_pane::LaunchSpec,
        _on_exit: Option<agent_team_pane::ExitNotify>,
    ) -> Result<Arc<dyn agent_team_pane::inprocess::RunningAgent>, agent_team_pane::PaneError> {
        let (db, tx, seen) = (self.db.clone(), self.tx.clone(), self.spawn_on_disk.clone());
        let name = spec.name.clone();
        tokio::spawn(async move {
            *seen.lock().unwrap() = Some(written(&db, MARK));
            let _ = tx.send(CoreMsg::Ended(name));
        });
        Ok(Arc::new(Idle))
    }
}

/// The spawn's instructions, looked for in the store's files.
const MARK: &str = "instructions-that-mark-the-spawn";

/// Whether `mark` is in the database or its WAL (written by a commit; the store holds its
/// database locked, so it is read as bytes).
fn written(db: &std::path::Path, mark: &str) -> bool {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), std::path::PathBuf::from(wal)]
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .any(|bytes| bytes.windows(mark.len()).any(|w| w == mark.as_bytes()))
}

/// A running in-process agent that never ends by itself.
struct Idle;

impl agent_team_pane::inprocess::RunningAgent for Idle {
    fn abort(&self) {}
    fn exit(&self) -> Option<ExitInfo> {
        None
    }
}

/// A core on the in-process backend in `dir` whose agents the runner `make` builds starts
/// (given the store's path and the core's queue); with the store's path and the queue's ends.
fn in_process_core(
    dir: &std::path::Path,
    make: impl FnOnce(
        std::path::PathBuf,
        mpsc::UnboundedSender<CoreMsg>,
    ) -> Arc<dyn agent_team_pane::inprocess::AgentRunner>,
) -> (
    Core,
    std::path::PathBuf,
    mpsc::UnboundedSender<CoreMsg>,
    mpsc::UnboundedReceiver<CoreMsg>,
) {
    let db = agent_team_paths::Paths::new(dir.join("home"), dir.join("run"))
        .team("t")
        .unwrap()
        .db;
    let (tx, rx) = mpsc::unbounded_channel();
    let runner = make(db.clone(), tx.clone());
    let backend = Arc::new(agent_team_pane::inprocess::InProcessBackend::new(runner));
    let core = core_in(
        dir,
        BackendKind::InProcess,
        backend,
        tx.clone(),
        FakeClock::default(),
    );
    (core, db, tx, rx)
}

/// What a fake agent noted in `slot`, once it has (within 10 s, else `never` fails the test).
async fn noted(slot: &std::sync::Mutex<Option<bool>>, never: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = *slot.lock().unwrap() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{never}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Queues the operator's hello and its spawn of `w1` (its instructions [`MARK`]) before the
/// core's loop runs, so they make one batch; returns what the operator's connection is sent
/// (its welcome first, once the batch has committed).
fn queue_operator_spawn(
    tx: &mpsc::UnboundedSender<CoreMsg>,
) -> mpsc::UnboundedReceiver<crate::outbox::Outbound> {
    let (out_tx, out) = mpsc::unbounded_channel();
    let (reply, _welcomed) = tokio::sync::oneshot::channel();
    tx.send(CoreMsg::Hello {
        conn: 1,
        hello: Hello {
            protocol: PROTOCOL_VERSION,
            team: "t".into(),
            auth: Auth::Operator { secret: "s".into() },
            client: None,
            start: false,
        },
        peer_pid: None,
        handle: crate::outbox::ConnHandle::new(out_tx, 1000),
        reply,
    })
    .unwrap();
    tx.send(CoreMsg::Request {
        conn: 1,
        id: 1,
        req: Request::Spawn {
            container: None,
            role: "worker".into(),
            name: Some("w1".into()),
            instructions: Some(MARK.into()),
            model: None,
            message: None,
            host: None,
            workspace: None,
        },
        rid: None,
        no_reply: false,
    })
    .unwrap();
    out
}

/// A batch that starts agents inside the daemon lets them run once before it commits, so what
/// they send first (their hellos) joins it and one synced commit holds the spawns and the
/// starts. The spawn here is not the batch's first message (after the first one the loop turns
/// the runtime anyway): without the extra turn the agent first ran after the commit and found
/// its spawn on disk. Nothing leaves the daemon before that commit (the agent's welcome is a
/// response of the batch).
#[tokio::test(flavor = "current_thread")]
async fn what_agents_started_inside_the_daemon_send_first_joins_the_batch_that_started_them() {
    let dir = tempfile::tempdir().unwrap();
    let spawn_on_disk = Arc::new(std::sync::Mutex::new(None));
    let seen = spawn_on_disk.clone();
    let (core, db, tx, rx) = in_process_core(dir.path(), |db, tx| {
        Arc::new(FirstRun {
            db,
            tx,
            spawn_on_disk: seen,
        })
    });
    let mut out = queue_operator_spawn(&tx);
    let core = tokio::spawn(core.run(rx));
    assert!(
        !noted(&spawn_on_disk, "the agent never ran").await,
        "the agent ran before its spawn's batch committed"
    );
    // The batch's frames go out after its commit: with the operator's welcome out, the spawn
    // is on disk.
    let _welcome = tokio::time::timeout(Duration::from_secs(10), out.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        written(&db, MARK),
        "the spawn is on disk once its batch's frames are out"
    );
    core.abort();
}

/// An in-process agent for [`an_in_process_agents_welcome_goes_out_before_its_spawns_commit`]:
/// it says hello as the spawned agent over a handle of `in_process` kind, and notes whether
/// the spawn was on disk when its welcome reached it.
struct Welcomed {
    db: std::path::PathBuf,
    tx: mpsc::UnboundedSender<CoreMsg>,
    in_process: bool,
    spawn_on_disk: Arc<std::sync::Mutex<Option<bool>>>,
}

impl agent_team_pane::inprocess::AgentRunner for Welcomed {
    fn start(
        &self,
        spec: &agent_team_pane::LaunchSpec,
        _on_exit: Option<agent_team_pane::ExitNotify>,
    ) -> Result<Arc<dyn agent_team_pane::inprocess::RunningAgent>, agent_team_pane::PaneError> {
        let env = |k: &str| {
            spec.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let hello = agent_team_client::agent_hello(
            "t",
            &spec.name,
            &env(agent_team_pane::env::SECRET),
            env(agent_team_pane::env::INCARNATION).parse().unwrap(),
        );
        let (out_tx, mut out) = mpsc::unbounded_channel();
        let handle = if self.in_process {
            crate::outbox::ConnHandle::new_in_process(out_tx, usize::MAX, Default::default())
        } else {
            crate::outbox::ConnHandle::new(out_tx, usize::MAX)
        };
        let (db, tx, seen) = (self.db.clone(), self.tx.clone(), self.spawn_on_disk.clone());
        tokio::spawn(async move {
            let (reply, _verdict) = tokio::sync::oneshot::channel();
            let _ = tx.send(CoreMsg::Hello {
                conn: 2,
                hello,
                peer_pid: None,
                handle,
                reply,
            });
            if out.recv().await.is_some() {
                *seen.lock().unwrap() = Some(written(&db, MARK));
            }
        });
        Ok(Arc::new(Idle))
    }
}

/// An agent that runs in the daemon's process and on its runtime is welcomed before the batch
/// that spawned it commits, and gets to run before that commit (its first model request then
/// overlaps the commit's sync); an agent over the socket is welcomed once the spawn is on disk.
#[tokio::test(flavor = "current_thread")]
async fn an_in_process_agents_welcome_goes_out_before_its_spawns_commit() {
    for in_process in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let spawn_on_disk = Arc::new(std::sync::Mutex::new(None));
        let seen = spawn_on_disk.clone();
        let (core, db, tx, rx) = in_process_core(dir.path(), |db, tx| {
            Arc::new(Welcomed {
                db,
                tx,
                in_process,
                spawn_on_disk: seen,
            })
        });
        let _out = queue_operator_spawn(&tx);
        let core = tokio::spawn(core.run(rx));
        assert_eq!(
            noted(&spawn_on_disk, "the agent was never welcomed").await,
            !in_process,
            "in process: {in_process}"
        );
        // The spawn is on disk by the end all the same.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !written(&db, MARK) {
            assert!(tokio::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        core.abort();
    }
}

/// Issue 63: the leader (a model) can never accept control-plane changes: a `work_finish`
/// asking to is refused before any git runs, for the leader and a teammate alike; without
/// the flag the leader's request goes on to git (answered later, off the core).
#[tokio::test(flavor = "current_thread")]
async fn the_leader_cannot_accept_control_plane_changes() {
    let mut h = Harness::new();
    let finish = |accept: bool| Request::WorkFinish {
        agent: "ghost".into(),
        action: FinishAction::Merge,
        into: None,
        keep: false,
        accept_control_changes: accept,
    };
    let e = h
        .core
        .request(1, &Actor::Agent(LEADER.into()), finish(true))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    assert!(e.message.contains("only the operator"), "{e:?}");
    let e = h
        .core
        .request(1, &Actor::Agent("w1".into()), finish(true))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    // The same request without the flag is not refused for it: it is handed to git.
    let later = h
        .core
        .request(1, &Actor::Agent(LEADER.into()), finish(false))
        .unwrap_err();
    assert!(later.message.contains("answered later"), "{later:?}");
}
