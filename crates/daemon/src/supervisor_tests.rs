//! The supervisor alone on the fake backend with a fake clock: what each call asks the core to
//! do (launch, schedule, answer), without a core, a runtime or a process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::FakeClock;
use agent_team_pane::fake::FakeBackend;
use agent_team_state::TeamState;

/// A supervisor alone, without a core: what each call asks for.
fn bare() -> (Supervisor, TeamState, Arc<FakeBackend>, tempfile::TempDir) {
    bare_at(FakeClock::default())
}

/// [`bare`] on `clock`.
fn bare_at(clock: FakeClock) -> (Supervisor, TeamState, Arc<FakeBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let paths = agent_team_paths::Paths::new(dir.path().join("home"), dir.path().join("run"));
    let tp = paths.team("t").unwrap();
    let backend = Arc::new(FakeBackend::new());
    let b = backend.clone();
    let env = SupervisorEnv {
        worker_exe: Some("/bin/true".into()),
        runner: None,
        factory: Some(Arc::new(move |_, _| Ok(b.clone() as Arc<dyn PaneBackend>))),
        heal_env: Vec::new(),
        layout_exe: None,
    };
    let mut sup = Supervisor::new(env, "t".into(), tp, Arc::new(clock), Arc::new(|_: &str| {}));
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
        .spawn_request(&Actor::Operator, 7, 1, worker_named("b1"))
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
    connects_and_is_answered(&mut sup, &mut state, "b1", 1);
}

/// `name` connects: its spawn (request `id` of connection 7) is answered, and nothing else.
fn connects_and_is_answered(sup: &mut Supervisor, state: &mut TeamState, name: &str, id: u64) {
    state.update_agent(name, |a| a.info.connected = true);
    let mut step = sup.step(state);
    step.on_connected(name, None);
    let answered = step.finish();
    assert!(
        matches!(answered.as_slice(), [Action::Answer { conn: 7, id: i, outcome }]
            if *i == id && matches!(&**outcome, Ok(Reply::Agent { agent }) if agent.name == name)),
        "{answered:?}"
    );
}

#[test]
fn a_failure_asks_for_a_restart_timer_with_the_backoff_and_nothing_else() {
    let (mut sup, mut state, backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    step.spawn_request(&Actor::Operator, 7, 1, worker_named("b1"))
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

/// A spawn of a `worker` named `name`, without overrides.
fn worker_named(name: &str) -> agent_team_protocol::SpawnMember {
    agent_team_protocol::SpawnMember {
        name: name.to_string(),
        role: "worker".to_string(),
        ..Default::default()
    }
}

/// A member of a `spawn_team` request.
fn member(name: &str, role: &str) -> agent_team_protocol::SpawnMember {
    agent_team_protocol::SpawnMember {
        name: name.to_string(),
        role: role.to_string(),
        ..Default::default()
    }
}

/// Issue 15: one bad member and nothing is spawned; the error names it.
#[test]
fn spawn_team_is_all_or_nothing_and_names_the_bad_member() {
    let (mut sup, mut state, backend, _dir) = bare();
    let bad_sets: Vec<(Vec<SpawnMember>, &str, &str)> = vec![
        (
            vec![
                member("a1", "worker"),
                member("a2", "no-such-role"),
                member("a3", "worker"),
            ],
            "a2",
            "no role",
        ),
        (
            vec![member("a1", "worker"), member("a1", "reviewer")],
            "a1",
            "given twice",
        ),
        (
            vec![member("a1", "worker"), member("Bad Name", "worker")],
            "Bad Name",
            "member 2",
        ),
        (vec![member("leader", "worker")], "leader", "leader"),
        (
            vec![SpawnMember {
                color: Some("not a colour!".into()),
                ..member("a1", "worker")
            }],
            "a1",
            "color",
        ),
    ];
    for (members, bad, says) in bad_sets {
        let mut step = sup.step(&mut state);
        let e = step
            .spawn_team_request(&Actor::Agent(LEADER.into()), members)
            .unwrap_err();
        assert!(step.finish().is_empty(), "nothing launched for {bad}");
        assert_eq!(e.details["member"], bad, "{e:?}");
        assert!(
            e.message.contains(bad) && e.message.contains(says),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("no teammate was spawned"),
            "{}",
            e.message
        );
        assert!(state.agents().is_empty(), "the roster is unchanged: {bad}");
    }
    // max_teammates: 2 allowed, 3 asked for.
    let mut team = sup.config.clone().unwrap();
    team.max_teammates = 2;
    let mut step = sup.step(&mut state);
    step.configure(&Actor::Operator, serde_json::to_value(&team).unwrap())
        .unwrap();
    let e = step
        .spawn_team_request(
            &Actor::Operator,
            vec![
                member("a1", "worker"),
                member("a2", "worker"),
                member("a3", "worker"),
            ],
        )
        .unwrap_err();
    assert!(e.message.contains("max_teammates = 2"), "{}", e.message);
    assert!(
        e.message.contains("agent-team config set max_teammates"),
        "says how to raise it: {}",
        e.message
    );
    assert_eq!(e.details["member"], "a3");
    assert!(step.finish().is_empty());
    assert!(state.agents().is_empty());
    assert!(backend.calls.lock().unwrap().is_empty(), "no launch at all");
}

/// Issue 15: a good `spawn_team` adds every member at once, with its own model, instructions
/// and colour, launches them together and queues each one's first message.
#[test]
fn spawn_team_launches_every_member_with_its_own_settings() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let members = vec![
        member("a1", "worker"),
        SpawnMember {
            model: Some("special-model".into()),
            instructions: Some("Always answer in French.".into()),
            message: Some("start with the parser".into()),
            ..member("a2", "reviewer")
        },
        SpawnMember {
            color: Some("#ff8800".into()),
            ..member("a3", "worker")
        },
    ];
    let mut step = sup.step(&mut state);
    let reply = step
        .spawn_team_request(&Actor::Agent(LEADER.into()), members)
        .unwrap();
    let Reply::Agents { agents } = reply else {
        panic!("{reply:?}")
    };
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a1", "a2", "a3"]);
    // Palette colours in roster order, a given one kept.
    let colours: Vec<Option<&str>> = agents.iter().map(|a| a.color.as_deref()).collect();
    assert_eq!(colours, [Some("cyan"), Some("green"), Some("#ff8800")]);
    let actions = step.finish();
    let [Action::Run(Job::LaunchMany { batch, .. })] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(batch.len(), 3);
    let env_of = |i: usize, k: &str| {
        batch[i]
            .2
            .env
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(env_of(1, env::MODEL).as_deref(), Some("special-model"));
    assert_eq!(
        env_of(1, env::INSTRUCTIONS).as_deref(),
        Some("Always answer in French.")
    );
    assert_eq!(env_of(0, env::MODEL), None, "a1 keeps its role's model");
    assert_eq!(batch[1].2.title, "a2@t · reviewer");
    assert_eq!(batch[2].2.color.as_deref(), Some("#ff8800"));
    let inbox = state.unread("a2");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body, "start with the parser");
    assert_eq!(inbox[0].from, LEADER);
}

/// A supervisor alone whose `worker` role runs our model loop (Anthropic), with `stagger_ms`.
fn with_model_workers(stagger_ms: u64) -> (Supervisor, TeamState, tempfile::TempDir) {
    with_model_workers_at(stagger_ms, FakeClock::default())
}

/// [`with_model_workers`] on `clock`.
fn with_model_workers_at(
    stagger_ms: u64,
    clock: FakeClock,
) -> (Supervisor, TeamState, tempfile::TempDir) {
    let (mut sup, mut state, _backend, dir) = bare_at(clock);
    let mut team = agent_team_config::empty_team("t", dir.path());
    team.backend = BackendKind::Process;
    team.spawn_stagger_ms = stagger_ms;
    if let Some(w) = team.roles.get_mut("worker") {
        w.provider = agent_team_config::Provider::Anthropic;
        w.model = "claude-sonnet-4-5".into();
    }
    let mut step = sup.step(&mut state);
    step.configure(&Actor::Operator, serde_json::to_value(&team).unwrap())
        .unwrap();
    step.finish();
    (sup, state, dir)
}

/// The names in the one launch `actions` ask for, and the stagger timers they schedule.
fn launched_and_staggered(actions: &[Action]) -> (Vec<String>, Vec<(String, Duration)>) {
    let mut names = Vec::new();
    let mut timers = Vec::new();
    for a in actions {
        match a {
            Action::Run(Job::LaunchMany { batch, .. }) => {
                names.extend(batch.iter().map(|b| b.0.clone()))
            }
            Action::Run(Job::Launch { name, .. }) => names.push(name.clone()),
            Action::Schedule {
                after,
                timer: SupTimer::Stagger(first),
            } => timers.push((first.clone(), *after)),
            _ => {}
        }
    }
    (names, timers)
}

/// Issue 30: members of one role on our model loop started together start staggered: the
/// first at once, the others once its first model request was answered (its usage report),
/// so their first requests read the prefix it cached; a member of another role is not held.
#[test]
fn same_role_model_members_start_once_the_first_ones_first_request_is_answered() {
    let (mut sup, mut state, _dir) = with_model_workers(5_000);
    let mut step = sup.step(&mut state);
    step.spawn_team_request(
        &Actor::Agent(LEADER.into()),
        vec![
            member("a1", "worker"),
            member("a2", "worker"),
            member("r1", "reviewer"),
            member("a3", "worker"),
        ],
    )
    .unwrap();
    let (now, timers) = launched_and_staggered(&step.finish());
    assert_eq!(now, ["a1", "r1"]);
    assert_eq!(timers, [("a1".to_string(), Duration::from_millis(5_000))]);
    // Another member's answer releases nothing; a1's does, once.
    let mut step = sup.step(&mut state);
    step.first_answered("r1");
    assert!(launched_and_staggered(&step.finish()).0.is_empty());
    let mut step = sup.step(&mut state);
    step.first_answered("a1");
    assert_eq!(launched_and_staggered(&step.finish()).0, ["a2", "a3"]);
    let mut step = sup.step(&mut state);
    step.first_answered("a1");
    step.timer(SupTimer::Stagger("a1".into()));
    assert!(launched_and_staggered(&step.finish()).0.is_empty());
}

/// Issue 30: when the first member's answer does not come within `spawn_stagger_ms`, the
/// others start anyway; with 0 they all start at once.
#[test]
fn staggered_members_start_at_the_longest_wait_and_zero_turns_staggering_off() {
    let (mut sup, mut state, _dir) = with_model_workers(5_000);
    let mut step = sup.step(&mut state);
    step.spawn_team_request(
        &Actor::Agent(LEADER.into()),
        vec![member("a1", "worker"), member("a2", "worker")],
    )
    .unwrap();
    assert_eq!(launched_and_staggered(&step.finish()).0, ["a1"]);
    let mut step = sup.step(&mut state);
    step.timer(SupTimer::Stagger("a1".into()));
    assert_eq!(launched_and_staggered(&step.finish()).0, ["a2"]);

    let (mut sup, mut state, _dir) = with_model_workers(0);
    let mut step = sup.step(&mut state);
    step.spawn_team_request(
        &Actor::Agent(LEADER.into()),
        vec![member("a1", "worker"), member("a2", "worker")],
    )
    .unwrap();
    let (now, timers) = launched_and_staggered(&step.finish());
    assert_eq!(
        (now.as_slice(), timers.len()),
        (["a1".to_string(), "a2".to_string()].as_slice(), 0)
    );
}

/// Issue 30: two `spawn_teammate` calls of one role (one turn of the leader) start
/// staggered like a `spawn_team`: the second waits until the first one's first request is
/// answered, and is answered itself once it has connected; a later spawn of the role, after
/// that answer, starts at once.
#[test]
fn a_spawn_of_a_role_whose_first_member_is_unanswered_waits_for_its_answer() {
    let (mut sup, mut state, _dir) = with_model_workers(5_000);
    let mut step = sup.step(&mut state);
    let leader = Actor::Agent(LEADER.into());
    assert!(
        step.spawn_request(&leader, 7, 1, worker_named("a1"))
            .unwrap()
            .is_none()
    );
    assert!(
        step.spawn_request(&leader, 7, 2, worker_named("a2"))
            .unwrap()
            .is_none()
    );
    let actions = step.finish();
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Answer { .. })),
        "{actions:?}"
    );
    let (now, timers) = launched_and_staggered(&actions);
    assert_eq!(now, ["a1"]);
    assert_eq!(timers, [("a1".to_string(), Duration::from_millis(5_000))]);
    assert_eq!(
        state.agent("a2").unwrap().info.status,
        AgentStatus::Starting
    );
    let mut step = sup.step(&mut state);
    step.first_answered("a1");
    let actions = step.finish();
    assert_eq!(launched_and_staggered(&actions).0, ["a2"]);
    // a2 is answered when it connects, as any spawn.
    drive(&mut sup, &mut state, actions);
    connects_and_is_answered(&mut sup, &mut state, "a2", 2);
    // a1 was answered: nothing to wait for.
    assert_eq!(leader_spawns(&mut sup, &mut state, 3, "a3").0, ["a3"]);
}

/// Issue 30: a spawn waits behind an unanswered member of its role only within
/// `spawn_stagger_ms` of that member's start (the timer ends the wait then, counted from its
/// start), and not at all behind one that went down.
#[test]
fn a_spawn_waits_behind_an_unanswered_member_only_within_the_stagger() {
    let clock = FakeClock::default();
    let (mut sup, mut state, _dir) = with_model_workers_at(5_000, clock.clone());
    let leader = Actor::Agent(LEADER.into());
    assert_eq!(leader_spawns(&mut sup, &mut state, 1, "a1").0, ["a1"]);
    clock.advance(Duration::from_millis(3_000));
    let (now, timers) = leader_spawns(&mut sup, &mut state, 2, "a2");
    assert!(now.is_empty());
    assert_eq!(timers, [("a1".to_string(), Duration::from_millis(2_000))]);
    clock.advance(Duration::from_millis(2_000));
    let mut step = sup.step(&mut state);
    step.timer(SupTimer::Stagger("a1".into()));
    step.spawn_request(&leader, 7, 3, worker_named("a3"))
        .unwrap();
    assert_eq!(launched_and_staggered(&step.finish()).0, ["a2", "a3"]);

    // b1 goes down before its first answer: b2 does not wait for it.
    let (mut sup, mut state, _dir) = with_model_workers(5_000);
    leader_spawns(&mut sup, &mut state, 1, "b1");
    let mut step = sup.step(&mut state);
    step.after_down("b1", Some(StopReason::Operator), None);
    step.finish();
    assert_eq!(leader_spawns(&mut sup, &mut state, 2, "b2").0, ["b2"]);
}

/// The leader spawns worker `name` (request `id`): the launches and stagger timers it asks for.
fn leader_spawns(
    sup: &mut Supervisor,
    state: &mut TeamState,
    id: u64,
    name: &str,
) -> (Vec<String>, Vec<(String, Duration)>) {
    let mut step = sup.step(state);
    step.spawn_request(&Actor::Agent(LEADER.into()), 7, id, worker_named(name))
        .unwrap();
    launched_and_staggered(&step.finish())
}

/// Issue 15: the team is one level deep; a teammate's spawn says so.
#[test]
fn a_teammate_cannot_spawn_max_depth_one() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    let e = step
        .spawn_team_request(&Actor::Agent("b1".into()), vec![member("x", "worker")])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(e.message.contains("max_depth 1"), "{}", e.message);
    let e = step
        .spawn_request(&Actor::Agent("b1".into()), 1, 1, worker_named("x"))
        .unwrap_err();
    assert!(e.message.contains("max_depth 1"), "{}", e.message);
    assert!(step.finish().is_empty());
}

/// Issue 15: `wait_for` answers at once when everything is settled, after the change that
/// settles it, or at its deadline with `done: false`.
#[test]
fn wait_for_answers_when_settled_or_at_the_deadline() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let now = Timestamp::from(std::time::SystemTime::now());
    let t = state
        .task_add(
            &Actor::Operator,
            agent_team_state::tasks::NewTask {
                title: "t".into(),
                description: String::new(),
                run: None,
                blocked_by: vec![],
                assign: None,
                key: None,
            },
            now,
        )
        .unwrap();
    let mut step = sup.step(&mut state);
    assert!(
        step.wait_request(1, 1, vec![], vec![99], 1000, false)
            .is_err(),
        "no task 99"
    );
    let r = step
        .wait_request(1, 2, vec![], vec![t.id], 5000, false)
        .unwrap();
    assert!(r.is_none(), "pending: answered later");
    let actions = step.finish();
    let [
        Action::Schedule {
            after,
            timer: SupTimer::WaitDeadline(key),
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(*after, Duration::from_millis(5000));
    let key = *key;
    // Nothing changed: checking answers nobody.
    let mut step = sup.step(&mut state);
    step.check_waits();
    assert!(step.finish().is_empty());
    state.task_cancel(&Actor::Operator, t.id, now).unwrap();
    let mut step = sup.step(&mut state);
    step.check_waits();
    let answered = step.finish();
    assert!(
        matches!(answered.as_slice(), [Action::Answer { conn: 1, id: 2, outcome }]
            if matches!(&**outcome, Ok(Reply::Waited { done: true, tasks, .. })
                if tasks[0].status == TaskStatus::Cancelled)),
        "{answered:?}"
    );
    // Its deadline then finds nothing to answer.
    let mut step = sup.step(&mut state);
    step.timer(SupTimer::WaitDeadline(key));
    assert!(step.finish().is_empty());
    // Settled already: answered at once.
    let mut step = sup.step(&mut state);
    assert!(matches!(
        step.wait_request(1, 3, vec![], vec![t.id], 5000, false),
        Ok(Some(Reply::Waited { done: true, .. }))
    ));
    // A teammate still starting: the deadline answers `done: false` with its state.
    step.spawn_request(&Actor::Operator, 7, 1, worker_named("b1"))
        .unwrap();
    assert!(
        step.wait_request(1, 4, vec!["b1".into()], vec![], 10, false)
            .unwrap()
            .is_none()
    );
    step.finish();
    let key = sup.next_wait - 1;
    let mut step = sup.step(&mut state);
    step.timer(SupTimer::WaitDeadline(key));
    let answered = step.finish();
    assert!(
        matches!(answered.as_slice(), [Action::Answer { id: 4, outcome, .. }]
            if matches!(&**outcome, Ok(Reply::Waited { done: false, agents, .. })
                if agents[0].name == "b1" && agents[0].status == AgentStatus::Starting)),
        "{answered:?}"
    );
    // `any`: the finished task is enough while b1 still starts (all of them: not yet).
    let mut step = sup.step(&mut state);
    assert!(matches!(
        step.wait_request(1, 6, vec!["b1".into()], vec![t.id], 5000, true),
        Ok(Some(Reply::Waited { done: true, .. }))
    ));
    assert!(
        step.wait_request(1, 7, vec!["b1".into()], vec![t.id], 5000, false)
            .unwrap()
            .is_none()
    );
    step.finish();
    // The cap: at most 600 s.
    let mut step = sup.step(&mut state);
    step.wait_request(1, 5, vec!["b1".into()], vec![], 10_000_000, false)
        .unwrap();
    assert!(matches!(
        step.finish().as_slice(),
        [Action::Schedule { after, .. }] if *after == Duration::from_secs(600)
    ));
}

/// Issue 15: `resume` refuses a live teammate, and for a stopped one queues the message first
/// and launches it again.
#[test]
fn resume_refuses_a_live_teammate_and_restarts_a_closed_one_with_its_message() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    step.spawn_request(&Actor::Operator, 7, 1, worker_named("b1"))
        .unwrap();
    let actions = step.finish();
    drive(&mut sup, &mut state, actions);
    let mut step = sup.step(&mut state);
    let e = step
        .resume_request(&Actor::Agent(LEADER.into()), 1, 2, "b1", None)
        .unwrap_err();
    assert!(e.message.contains("nothing to resume"), "{}", e.message);
    step.finish();
    // Closed with a reason: stopped, the reason in its status.
    let mut step = sup.step(&mut state);
    step.kill_request(
        &Actor::Agent(LEADER.into()),
        1,
        3,
        "b1",
        Some("done for now".into()),
    )
    .unwrap();
    let actions = step.finish();
    drive(&mut sup, &mut state, actions);
    let b1 = state.agent("b1").unwrap().info.clone();
    assert_eq!(b1.status, AgentStatus::Stopped);
    assert_eq!(state.teammate_count(), 0, "its slot is free");
    let mut step = sup.step(&mut state);
    let r = step
        .resume_request(
            &Actor::Agent(LEADER.into()),
            1,
            4,
            "b1",
            Some("welcome back".into()),
        )
        .unwrap();
    assert!(r.is_none(), "answered once connected");
    let actions = step.finish();
    assert!(
        matches!(actions.as_slice(), [Action::Run(Job::Launch { name, incarnation: 2, .. })] if name == "b1"),
        "{actions:?}"
    );
    let inbox = state.unread("b1");
    assert_eq!(inbox.last().unwrap().body, "welcome back");
}

/// How many ticks of the periodic poll, out of `ticks`, looked at the processes.
fn looks_in(sup: &mut Supervisor, state: &mut TeamState, ticks: u32) -> usize {
    let mut looks = 0;
    for _ in 0..ticks {
        let mut step = sup.step(state);
        step.timer(SupTimer::Poll);
        let actions = step.finish();
        looks += actions
            .iter()
            .filter(|a| matches!(a, Action::Run(Job::Poll { .. })))
            .count();
        drive(sup, state, actions);
    }
    looks
}

#[test]
fn the_periodic_poll_looks_rarely_while_every_agent_is_connected() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let mut step = sup.step(&mut state);
    step.spawn_request(&Actor::Operator, 7, 1, worker_named("b1"))
        .unwrap();
    let actions = step.finish();
    drive(&mut sup, &mut state, actions);
    // Launched, not yet connected: every tick looks.
    assert_eq!(looks_in(&mut sup, &mut state, 4), 4);
    state.update_agent("b1", |a| a.info.connected = true);
    let mut step = sup.step(&mut state);
    step.on_connected("b1", None);
    step.finish();
    // Connected: one look per CONNECTED_POLL_TICKS ticks (its death drops the connection).
    assert_eq!(looks_in(&mut sup, &mut state, 3 * CONNECTED_POLL_TICKS), 3);
    // The connection dropped: every tick looks again.
    state.update_agent("b1", |a| a.info.connected = false);
    assert_eq!(looks_in(&mut sup, &mut state, 4), 4);
}

/// The names a poll job in `actions` looks at (none: no poll asked for).
fn polled(actions: &[Action]) -> Option<Vec<String>> {
    actions.iter().find_map(|a| match a {
        Action::Run(Job::Poll { targets, .. }) => {
            Some(targets.iter().map(|(n, _, _)| n.clone()).collect())
        }
        _ => None,
    })
}

#[test]
fn an_agent_that_says_it_ended_is_looked_at_alone_and_those_named_meanwhile_next() {
    let (mut sup, mut state, _backend, _dir) = bare();
    for (id, name) in [(7, "b1"), (8, "b2"), (9, "b3")] {
        let mut step = sup.step(&mut state);
        step.spawn_request(&Actor::Operator, id, 1, worker_named(name))
            .unwrap();
        let actions = step.finish();
        drive(&mut sup, &mut state, actions);
    }
    let mut step = sup.step(&mut state);
    step.poll_one("b2".into());
    let first = step.finish();
    assert_eq!(polled(&first), Some(vec!["b2".to_string()]), "{first:?}");
    // While that look runs, two more say they ended: nothing yet, then one look at both.
    let mut step = sup.step(&mut state);
    step.poll_one("b3".into());
    step.poll_one("b1".into());
    assert_eq!(polled(&step.finish()), None);
    let report = std::cell::RefCell::new(Vec::new());
    for a in first {
        if let Action::Run(job) = a {
            job.run(&|ev| report.borrow_mut().push(ev));
        }
    }
    let mut step = sup.step(&mut state);
    for ev in report.into_inner() {
        step.sup_event(ev);
    }
    let next = step.finish();
    assert_eq!(
        polled(&next),
        Some(vec!["b1".to_string(), "b3".to_string()]),
        "{next:?}"
    );
}

#[test]
fn the_leader_places_teammates_only_on_hosts_the_team_file_names() {
    let (mut sup, mut state, _b, _d) = bare();
    let leader = Actor::Agent("leader".into());
    // The attack: a leader moved by a prompt sends a teammate (and with it the team's
    // secrets) to a machine of its choosing.
    let mut m = worker_named("x");
    m.host = Some("attacker.example".into());
    let mut step = sup.step(&mut state);
    let e = step.spawn_request(&leader, 7, 1, m.clone()).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{}", e.message);
    assert!(e.message.contains("attacker.example"), "{}", e.message);
    let e = step
        .spawn_team_request(&leader, vec![m.clone()])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{}", e.message);
    assert!(
        step.finish().iter().all(|a| !matches!(a, Action::Run(_))),
        "nothing launched"
    );
    assert!(state.agent("x").is_none(), "nobody added");
    // A host of the team file is fine for the leader; the operator may name any; only the
    // operator gives a directory there.
    let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/"));
    cfg.teammates.push(agent_team_config::Teammate {
        name: "far".into(),
        role: "worker".into(),
        host: Some("box".into()),
        ..Default::default()
    });
    use super::spawn::check_placement;
    assert!(check_placement(&leader, &cfg, Some("box"), None).is_ok());
    assert!(check_placement(&leader, &cfg, Some("box"), Some("/srv")).is_err());
    assert!(check_placement(&Actor::Operator, &cfg, Some("elsewhere"), Some("/srv")).is_ok());
    // Nothing ssh would read as an option, from anyone.
    assert!(check_placement(&Actor::Operator, &cfg, Some("-oProxyCommand=x"), None).is_err());
}

/// An agent's model, for its launch and for the first lease its welcome carries: a model set
/// for the member at run time (`member.NAME.model`) wins over its own (spawn or team file),
/// which wins over its role's. (The first lease took the spawn's model over the override.)
#[test]
fn an_agents_model_is_its_override_then_its_own_then_its_roles() {
    let (mut sup, mut state, _backend, _dir) = bare();
    let members = vec![
        member("a1", "worker"),
        SpawnMember {
            model: Some("special-model".into()),
            ..member("a2", "worker")
        },
    ];
    let mut step = sup.step(&mut state);
    step.spawn_team_request(&Actor::Agent(LEADER.into()), members)
        .unwrap();
    step.finish();
    let role_model = sup
        .config
        .as_ref()
        .unwrap()
        .role("worker")
        .unwrap()
        .model
        .clone();
    let model = |sup: &Supervisor, state: &TeamState, name: &str| {
        (
            sup.own_model(state.agent(name).unwrap())
                .map(str::to_string),
            sup.model_of(state.agent(name).unwrap()),
        )
    };
    assert_eq!(model(&sup, &state, "a1"), (None, Some(role_model.clone())));
    assert_eq!(
        model(&sup, &state, "a2"),
        (Some("special-model".into()), Some("special-model".into()))
    );
    let mut step = sup.step(&mut state);
    step.config_change(
        &Actor::Operator,
        Some("member.a2.model".into()),
        Some("set-at-run-time".into()),
    )
    .unwrap();
    step.finish();
    assert_eq!(
        model(&sup, &state, "a2"),
        (
            Some("set-at-run-time".into()),
            Some("set-at-run-time".into())
        )
    );
    assert_eq!(model(&sup, &state, "a1").1, Some(role_model));
}

/// Issue 65: an agent that goes down (stopped, or stopped to restart) has its model gateway
/// token forgotten: a request with it is refused from then on.
#[test]
fn a_down_agents_gateway_token_is_forgotten() {
    for reason in [StopReason::Operator, StopReason::Restart] {
        let (mut sup, mut state, _dir) = with_model_workers(5_000);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let gateways = Arc::new(crate::gateway::Gateways::new(tx));
        sup.gateways = Some(gateways.clone());
        leader_spawns(&mut sup, &mut state, 1, "b1");
        let gw = gateways.get().unwrap();
        let route = agent_team_gateway::Route {
            upstream: "http://127.0.0.1:9".into(),
            key: None,
        };
        let token = gw.register("b1", route).unwrap();
        assert_eq!(gw.agent_of(&token).as_deref(), Some("b1"));
        let mut step = sup.step(&mut state);
        step.after_down("b1", Some(reason), None);
        step.finish();
        assert_eq!(gw.agent_of(&token), None, "{reason:?}");
    }
}
