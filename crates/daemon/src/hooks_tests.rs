//! Hooks on the core with a fake runner: `task_completed` blocking and passing, failures as
//! `HOOK_FAILED`, a retried request id, and a daemon restart with a run under way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::hookrun::{FakeRunner, HookOutcome};
use crate::outbox::Outbound;
use agent_team_config::{Hook, Hooks};
use agent_team_state::tasks::NewTask;
use agent_team_state::{AgentRecord, HookRunState};
use std::sync::Arc;

/// A core whose hooks run on a fake, with the leader and `w1` (role `worker`) connected.
struct H {
    core: Core,
    rx: mpsc::UnboundedReceiver<CoreMsg>,
    fake: Arc<FakeRunner>,
    conns: HashMap<ConnId, mpsc::UnboundedReceiver<Outbound>>,
    dir: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

fn hook(command: &str) -> Option<Hook> {
    Some(Hook {
        command: command.into(),
        timeout_secs: 30,
    })
}

fn core_at(dir: &std::path::Path) -> (Core, mpsc::UnboundedReceiver<CoreMsg>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let core = super::tests::core_at(dir, None, tx, crate::clock::FakeClock::default());
    (core, rx)
}

impl H {
    fn new(hooks: Hooks, role_hooks: Option<(&str, Hooks)>) -> H {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (mut core, rx) = core_at(&dir);
        let mut team = agent_team_config::empty_team("t", &dir);
        team.backend = agent_team_config::BackendKind::Process;
        team.hooks = hooks;
        if let Some((role, h)) = role_hooks {
            team.role_hooks.insert(role.into(), h);
        }
        core.supervise(|s| s.configure(&Actor::Operator, serde_json::to_value(&team).unwrap()))
            .unwrap();
        let now = Timestamp::from(std::time::SystemTime::now());
        for (name, role) in [("leader", "leader"), ("w1", "worker")] {
            let info = AgentInfo {
                status: AgentStatus::Running,
                ..AgentInfo::new(name, role, "external", 1, now)
            };
            core.state
                .add_agent(
                    &Actor::Operator,
                    AgentRecord {
                        info,
                        secret: "x".into(),
                        spec: serde_json::Value::Null,
                    },
                    now,
                )
                .unwrap();
        }
        let fake = Arc::new(FakeRunner::default());
        core.hooks.runner = fake.clone();
        core.flush().unwrap();
        let mut h = H {
            core,
            rx,
            fake,
            conns: HashMap::new(),
            dir,
            _tmp: Some(tmp),
        };
        h.connect(1, Actor::Operator);
        h.connect(2, Actor::Agent("w1".into()));
        h
    }

    /// The same team after a daemon restart (the store reopened, a new core, a new fake).
    fn restart(mut self) -> H {
        let tmp = self._tmp.take();
        let dir = self.dir.clone();
        drop(self);
        let (mut core, rx) = core_at(&dir);
        let fake = Arc::new(FakeRunner::default());
        core.hooks.runner = fake.clone();
        core.flush().unwrap();
        let mut h = H {
            core,
            rx,
            fake,
            conns: HashMap::new(),
            dir,
            _tmp: tmp,
        };
        h.connect(1, Actor::Operator);
        h.connect(2, Actor::Agent("w1".into()));
        h
    }

    fn connect(&mut self, conn: ConnId, actor: Actor) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = ConnHandle::new(tx, usize::MAX);
        if let Actor::Agent(n) = &actor {
            self.core.agent_conn.insert(n.clone(), conn);
        }
        self.core.sessions.insert(
            conn,
            Session {
                handle,
                actor,
                sub: None,
                sub_types: None,
                watch_tasks: false,
            },
        );
        self.conns.insert(conn, rx);
    }

    fn request(&mut self, conn: ConnId, id: u64, req: Request, rid: Option<&str>) {
        self.core.handle(CoreMsg::Request {
            conn,
            id,
            req,
            rid: rid.map(str::to_string),
            no_reply: false,
        });
        self.core.flush().unwrap();
    }

    /// The answers `conn` got so far, by frame id.
    fn answers(&mut self, conn: ConnId) -> Vec<(u64, Result<Reply, ErrorBody>)> {
        let rx = self.conns.get_mut(&conn).unwrap();
        let mut out = Vec::new();
        while let Ok(Outbound::Frame(bytes)) = rx.try_recv() {
            let f: ServerFrame = frame::read(&mut &bytes[..]).unwrap();
            if let ServerFrame::Response { id, ok, error } = f {
                out.push((id, ok.ok_or_else(|| error.unwrap())));
            }
        }
        out
    }

    fn add_task(&mut self) -> u64 {
        let t = self
            .core
            .state
            .task_add(
                &Actor::Operator,
                NewTask {
                    title: "build".into(),
                    assign: Some("w1".into()),
                    ..Default::default()
                },
                Timestamp::from(std::time::SystemTime::now()),
            )
            .unwrap();
        self.core.flush().unwrap();
        t.id
    }

    fn finish(task: u64) -> Request {
        Request::TaskFinish {
            id: task,
            status: TaskStatus::Completed,
            result: Some("done".into()),
        }
    }

    fn started(&self) -> usize {
        self.fake.started.lock().unwrap().len()
    }

    /// Ends the `n`th run the fake started with `code` and `stderr`, and applies it.
    async fn end(&mut self, n: usize, code: i32, stderr: &str) {
        let done = self.fake.started.lock().unwrap()[n].1.take().unwrap();
        done(HookOutcome {
            exit_code: Some(code),
            stderr: stderr.into(),
            ..Default::default()
        });
        let msg = tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .unwrap()
            .unwrap();
        self.core.handle(msg);
        self.core.flush().unwrap();
    }

    fn status(&self, task: u64) -> TaskStatus {
        self.core.state.task(task).unwrap().status
    }

    fn events(&self) -> Vec<Event> {
        self.core
            .store
            .events_since(0, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    fn hook_failures(&self) -> Vec<(String, Option<i32>, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::HookFailed {
                    hook,
                    exit_code,
                    reason,
                    ..
                } => Some((hook, exit_code, reason)),
                _ => None,
            })
            .collect()
    }
}

fn completed_hook(command: &str) -> Hooks {
    Hooks {
        task_completed: hook(command),
        ..Default::default()
    }
}

#[tokio::test]
async fn exit_2_keeps_the_task_in_progress_and_tells_the_owner_then_exit_0_completes() {
    let mut h = H::new(completed_hook("./check.sh"), None);
    let task = h.add_task();
    h.request(2, 10, H::finish(task), Some("r1"));
    assert_eq!(h.started(), 1);
    assert!(h.answers(2).is_empty(), "answered before the hook ended");
    {
        let started = h.fake.started.lock().unwrap();
        let run = &started[0].0;
        assert_eq!(run.hook, "task_completed");
        assert_eq!(run.agent.as_deref(), Some("w1"));
        assert_eq!(run.task, Some(task));
        let env: serde_json::Value = serde_json::from_str(&run.input).unwrap();
        assert_eq!(env["event"]["type"], "TASK_UPDATED", "{env}");
        assert_eq!(env["event"]["task"]["status"], "completed", "{env}");
    }
    // The run is stored as started before it was handed to the runner.
    let stored = h.core.store.load().unwrap().hook_runs;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].state, HookRunState::Started);

    h.end(0, 2, "tests fail: 3 of 10\n").await;
    assert_eq!(h.status(task), TaskStatus::InProgress);
    let answers = h.answers(2);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let err = answers[0].1.clone().unwrap_err();
    assert_eq!(err.code, ErrorCode::Blocked);
    assert!(err.message.contains("tests fail: 3 of 10"), "{err:?}");
    let inbox = h.core.state.unread("w1");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].from, "daemon");
    assert!(
        inbox[0].body.contains("tests fail: 3 of 10"),
        "{:?}",
        inbox[0]
    );
    assert!(h.hook_failures().is_empty());
    assert!(h.core.store.load().unwrap().hook_runs.is_empty());

    // The second try passes.
    h.request(2, 11, H::finish(task), Some("r2"));
    assert_eq!(h.started(), 2);
    h.end(1, 0, "").await;
    assert_eq!(h.status(task), TaskStatus::Completed);
    let answers = h.answers(2);
    assert!(
        matches!(&answers[..], [(11, Ok(Reply::Task { task: t }))] if t.status == TaskStatus::Completed),
        "{answers:?}"
    );
}

#[tokio::test]
async fn other_codes_are_hook_failed_and_the_completion_goes_ahead() {
    let hooks = Hooks {
        task_completed: hook("./check.sh"),
        task_created: hook("./created.sh"),
        ..Default::default()
    };
    let mut h = H::new(hooks, Some(("worker", completed_hook("./role.sh"))));
    let task = h.add_task();
    // task_created ran for the new task (added straight on the state: not through the
    // handler, so only a request's task counts); add one through a request.
    assert_eq!(h.started(), 0);
    h.request(
        1,
        5,
        Request::TaskAdd {
            title: "second".into(),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: None,
            key: None,
        },
        Some("a1"),
    );
    assert_eq!(h.started(), 1);
    assert_eq!(h.fake.started.lock().unwrap()[0].0.hook, "task_created");
    h.end(0, 3, "boom").await;
    assert_eq!(
        h.hook_failures(),
        [(
            "task_created".to_string(),
            Some(3),
            "it exited with 3".to_string()
        )]
    );

    // The team's hook, then the role's, one after the other.
    h.request(2, 10, H::finish(task), None);
    assert_eq!(h.started(), 2);
    assert_eq!(h.fake.started.lock().unwrap()[1].0.command, "./check.sh");
    h.end(1, 1, "").await;
    assert_eq!(h.status(task), TaskStatus::InProgress);
    assert_eq!(h.started(), 3);
    assert_eq!(h.fake.started.lock().unwrap()[2].0.command, "./role.sh");
    h.end(2, 0, "").await;
    assert_eq!(h.status(task), TaskStatus::Completed);
    assert_eq!(h.hook_failures().len(), 2);
    assert!(matches!(&h.answers(2)[..], [(10, Ok(_))]));
}

#[tokio::test]
async fn a_retried_request_id_does_not_run_the_hook_again() {
    let mut h = H::new(completed_hook("./check.sh"), None);
    let task = h.add_task();
    h.request(2, 10, H::finish(task), Some("r1"));
    // The retry while the hook runs joins the first.
    h.request(2, 11, H::finish(task), Some("r1"));
    assert_eq!(h.started(), 1);
    // Another request for the same task is refused while it is checked.
    h.request(2, 12, H::finish(task), Some("r9"));
    assert!(
        matches!(&h.answers(2)[..], [(12, Err(e))] if e.code == ErrorCode::Conflict),
        "a second completion of a held task is a conflict"
    );
    h.end(0, 0, "").await;
    let answers = h.answers(2);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.iter().all(|(_, o)| o.is_ok()));
    // After the answer, the retry is answered from memory.
    h.request(2, 13, H::finish(task), Some("r1"));
    assert!(matches!(&h.answers(2)[..], [(13, Ok(_))]));
    assert_eq!(h.started(), 1);
}

#[tokio::test]
async fn a_restart_does_not_run_a_started_hook_again_but_runs_a_pending_one() {
    let hooks = Hooks {
        task_completed: hook("./check.sh"),
        run_finished: hook("./done.sh"),
        ..Default::default()
    };
    let mut h = H::new(hooks, None);
    let task = h.add_task();
    h.request(2, 10, H::finish(task), Some("r1"));
    assert_eq!(h.started(), 1);
    // A run recorded as pending (its event committed, not yet spawned) when the daemon died.
    let seq = h.core.state.last_seq();
    let id = h.core.state.next_hook_run_id();
    h.core.state.hook_run_put(agent_team_state::HookRun {
        id,
        hook: "run_finished".into(),
        event_seq: Some(seq),
        index: 0,
        command: "./done.sh".into(),
        timeout_secs: 30,
        dir: "/".into(),
        input: "{}".into(),
        agent: None,
        task: None,
        state: HookRunState::Pending,
        held: None,
    });
    let changes = h.core.state.take_changes();
    h.core.store.commit(&changes).unwrap();

    let mut h = h.restart();
    // The started task_completed run is not run again; the pending one runs.
    let started: Vec<String> = h
        .fake
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|(r, _)| r.command.clone())
        .collect();
    assert_eq!(started, ["./done.sh"]);
    let failures = h.hook_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "task_completed");
    assert!(failures[0].2.contains("interrupted by a daemon restart"));
    // The completion went ahead, and the client's retry gets its answer without a new run.
    assert_eq!(h.status(task), TaskStatus::Completed);
    h.request(2, 20, H::finish(task), Some("r1"));
    assert!(
        matches!(&h.answers(2)[..], [(20, Ok(Reply::Task { task: t }))] if t.status == TaskStatus::Completed)
    );
    h.end(0, 0, "").await;
    assert_eq!(h.started(), 1);
    assert!(h.core.store.load().unwrap().hook_runs.is_empty());

    // Nothing is left for a third daemon to run.
    let h = h.restart();
    assert_eq!(h.started(), 0);
}

#[tokio::test]
async fn teammate_idle_exit_2_sends_the_teammate_back_to_work() {
    let hooks = Hooks {
        teammate_idle: hook("./more.sh"),
        ..Default::default()
    };
    let mut h = H::new(hooks, None);
    h.request(
        2,
        10,
        Request::SetStatus {
            status: AgentStatus::Idle,
            error: None,
        },
        None,
    );
    assert_eq!(h.started(), 1);
    {
        let started = h.fake.started.lock().unwrap();
        let run = &started[0].0;
        assert_eq!(
            (run.hook.as_str(), run.agent.as_deref()),
            ("teammate_idle", Some("w1"))
        );
        let env: serde_json::Value = serde_json::from_str(&run.input).unwrap();
        assert_eq!(env["event"]["type"], "AGENT_STATUS");
        assert_eq!(env["seq"].as_u64(), run.event_seq);
    }
    h.end(0, 2, "the docs are not done").await;
    let inbox = h.core.state.unread("w1");
    assert!(
        inbox
            .iter()
            .any(|m| m.from == "daemon" && m.body.contains("the docs are not done")),
        "{inbox:?}"
    );
    assert!(h.hook_failures().is_empty());
}

/// A huge `timeout_secs` (a stored configuration from before the bound at load) neither panics
/// the hook's thread nor loses its outcome.
#[test]
fn a_huge_hook_timeout_runs_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let run = agent_team_state::HookRun {
        id: 1,
        hook: "run_finished".into(),
        event_seq: Some(1),
        index: 0,
        command: "exit 3".into(),
        timeout_secs: u64::MAX,
        dir: dir.path().to_string_lossy().into_owned(),
        input: "{}".into(),
        agent: None,
        task: None,
        state: HookRunState::Pending,
        held: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    crate::hookrun::HookRunner::start(
        &crate::hookrun::ShellRunner { team: "t".into() },
        run,
        None,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    );
    let outcome = rx.recv().unwrap();
    assert_eq!(outcome.exit_code, Some(3), "{outcome:?}");
}
