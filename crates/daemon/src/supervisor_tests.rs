//! The supervisor alone on the fake backend with a fake clock: what each call asks the core to
//! do (launch, schedule, answer), without a core, a runtime or a process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::FakeClock;
use agent_team_pane::fake::FakeBackend;
use agent_team_state::TeamState;

/// A supervisor alone, without a core: what each call asks for.
fn bare() -> (Supervisor, TeamState, Arc<FakeBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let paths = agent_team_paths::Paths::new(dir.path().join("home"), dir.path().join("run"));
    let tp = paths.team("t").unwrap();
    let backend = Arc::new(FakeBackend::new());
    let b = backend.clone();
    let env = SupervisorEnv {
        worker_exe: Some("/bin/true".into()),
        runner: None,
        factory: Some(Arc::new(move |_, _| Ok(b.clone() as Arc<dyn PaneBackend>))),
    };
    let mut sup = Supervisor::new(
        env,
        "t".into(),
        tp,
        Arc::new(FakeClock::default()),
        Arc::new(|| {}),
    );
    let mut state = TeamState::new("t");
    let mut team = agent_team_config::empty_team("t", dir.path());
    team.backend = BackendKind::Process;
    let mut step = sup.step(&mut state);
    step.configure(&Actor::Operator, serde_json::to_value(&team).unwrap())
        .unwrap();
    assert!(step.finish().is_empty(), "configuring starts nothing");
    (sup, state, backend, dir)
}

/// Carries out `actions` the way the core would, synchronously: jobs run at once and their
/// reports are fed back; answers and timers are returned.
fn drive(sup: &mut Supervisor, state: &mut TeamState, actions: Vec<Action>) -> Vec<Action> {
    let mut pending = actions;
    let mut left = Vec::new();
    while let Some(a) = pending.pop() {
        match a {
            Action::Run(job) => {
                let events = std::cell::RefCell::new(Vec::new());
                job.run(&|ev| events.borrow_mut().push(ev));
                for ev in events.into_inner() {
                    let mut step = sup.step(state);
                    step.sup_event(ev);
                    pending.extend(step.finish());
                }
            }
            other => left.push(other),
        }
    }
    left
}

#[test]
fn a_spawn_asks_for_a_launch_then_a_connect_deadline_and_answers_when_connected() {
    let (mut sup, mut state, backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    let r = step
        .spawn_request(&Actor::Operator, 7, 1, "worker".into(), Some("b1".into()))
        .unwrap();
    assert!(r.is_none(), "answered later");
    let actions = step.finish();
    assert!(
        matches!(actions.as_slice(), [Action::Run(Job::Launch { name, incarnation: 1, .. })] if name == "b1"),
        "{actions:?}"
    );
    let left = drive(&mut sup, &mut state, actions);
    assert!(
        matches!(left.as_slice(), [Action::Schedule { after, timer: SupTimer::Connect(n, 1) }]
            if n == "b1" && *after == connect_timeout()),
        "{left:?}"
    );
    assert_eq!(backend.calls.lock().unwrap().len(), 1);
    state.update_agent("b1", |a| a.info.connected = true);
    let mut step = sup.step(&mut state);
    step.on_connected("b1", None);
    let answered = step.finish();
    assert!(
        matches!(answered.as_slice(), [Action::Answer { conn: 7, id: 1, outcome: Ok(Reply::Agent { agent }) }]
            if agent.name == "b1"),
        "{answered:?}"
    );
}

#[test]
fn a_failure_asks_for_a_restart_timer_with_the_backoff_and_nothing_else() {
    let (mut sup, mut state, backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    step.spawn_request(&Actor::Operator, 7, 1, "worker".into(), Some("b1".into()))
        .unwrap();
    let actions = step.finish();
    drive(&mut sup, &mut state, actions);
    state.update_agent("b1", |a| a.info.connected = true);
    let mut step = sup.step(&mut state);
    step.on_connected("b1", None);
    step.finish();
    let pid = state.agent("b1").unwrap().info.pid.unwrap();
    backend.exit(
        pid,
        ExitInfo {
            code: Some(1),
            signal: None,
        },
    );
    let mut step = sup.step(&mut state);
    step.poll();
    let actions = step.finish();
    let left = drive(&mut sup, &mut state, actions);
    assert!(
        matches!(left.as_slice(), [Action::Schedule { after, timer: SupTimer::Restart(n, 1) }]
            if n == "b1" && *after == crate::policy::backoff(1)),
        "{left:?}"
    );
    assert_eq!(state.agent("b1").unwrap().info.status, AgentStatus::Backoff);
}

#[test]
fn the_shutdown_deadline_asks_the_core_to_exit() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    step.timer(SupTimer::ShutdownDeadline);
    assert!(matches!(step.finish().as_slice(), [Action::ForceExit]));
}
