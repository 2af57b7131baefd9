//! Teammates on other machines (issue 27), against a real sshd on loopback: a remote teammate
//! works beside a local one, is watched, killed and restarted there, survives its link being
//! cut, and `down` leaves nothing on the host; a wrong host fails `up` before anything starts.

use agent_team_e2e::sshd::{HOST, Sshd};
use agent_team_e2e::*;
use agent_team_protocol::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A team with a remote teammate `far` on [`HOST`] and a local one `near`, one task each;
/// `worker`: the host's worker (none: ours is copied there).
fn team(sshd: &Sshd, worker: bool, far_task: &str) -> String {
    team_with(sshd, worker, far_task, "echo near > near.txt")
}

/// [`team`] with `near`'s task too.
fn team_with(sshd: &Sshd, worker: bool, far_task: &str, near_task: &str) -> String {
    let w = bin("agent-team-worker");
    format!(
        "name = \"rt\"\nboard = false\n{ssh}\n\
         [sandbox]\nread = [\"{gate}\"]\n\
         [[teammates]]\nname = \"far\"\nrole = \"worker\"\nhost = \"{HOST}\"\n\
         [[teammates]]\nname = \"near\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"far work\"\nrun = \"{far_task}\"\nassign = \"far\"\n\
         [[tasks]]\ntitle = \"near work\"\nrun = \"{near_task}\"\nassign = \"near\"\n",
        ssh = sshd.ssh_table(worker.then_some(w.as_path())),
        gate = gate_dir(sshd).display(),
    )
}

/// The dir of the gate a task waits on: granted to the sandbox by the team file (it starts
/// from nothing else).
fn gate_dir(sshd: &Sshd) -> std::path::PathBuf {
    let dir = sshd.dir.path().join("gate");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `name` as `ps --json` shows it (a read: while the daemon is down it reads the stored
/// state); none when the read failed.
fn agent_now(sb: &Sandbox, name: &str) -> Option<AgentInfo> {
    let out = sb.run(&["ps", "--json"]);
    let agents: Vec<AgentInfo> = serde_json::from_slice(&out.stdout).ok()?;
    agents.into_iter().find(|a| a.name == name)
}

/// `task list --json` (a read, as [`agent_now`]); empty when the read failed.
fn tasks_now(sb: &Sandbox) -> Vec<Task> {
    let out = sb.run(&["task", "list", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// A local task that waits for [`open_gate`] before it writes `near.txt`: the run cannot end
/// (and `up` see its leader gone) before the test looked.
fn gated_near_task(sshd: &Sshd) -> String {
    format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo near > near.txt",
        gate_dir(sshd).join("near-go").display()
    )
}

fn open_gate(sshd: &Sshd) {
    std::fs::write(gate_dir(sshd).join("near-go"), "").unwrap();
}

fn far_workspace(sshd: &Sshd) -> std::path::PathBuf {
    sshd.remote_dir().join("work/rt/far")
}

/// `down`, then nothing of the team is left on the host: no process, no socket, no secret.
fn down_leaves_the_host_clean(sb: &Sandbox, sshd: &Sshd) {
    sb.ok(&["down"]);
    let deadline = std::time::Instant::now() + T;
    while !sshd.remote_processes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "processes of the team left on the host after down: {:?}\n{}",
            sshd.remote_processes(),
            std::fs::read_to_string(sb.team("rt").daemon_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = sshd.remote_dir().join("run/rt");
    assert!(
        !run.exists(),
        "the team's run directory (sockets, secrets) is gone from the host: {:?}",
        std::fs::read_dir(&run).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
    // No ssh of ours is left either (the link's master).
    wait_for("the link's ssh gone", T, || {
        sshd::processes_mentioning(&sshd.config().display().to_string()).is_empty()
    });
}

/// The team of [`team_with`] (`far`'s task given, `near`'s gated) up on the process backend,
/// the gate opened, and both tasks completed.
fn up_and_done(worker: bool, far_task: &str) -> (Sshd, Sandbox) {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    sb.write_team_file(&team_with(&sshd, worker, far_task, &gated_near_task(&sshd)));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    open_gate(&sshd);
    wait_for("both tasks completed", T, || {
        let tasks = sb.tasks("rt");
        tasks.len() == 2 && tasks.iter().all(|t| t.status == TaskStatus::Completed)
    });
    (sshd, sb)
}

#[test]
fn a_remote_teammate_works_its_task_on_its_host_beside_a_local_one_and_down_cleans_the_host() {
    // A port of this machine's loopback that the host must not reach.
    let here = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = here.local_addr().unwrap().port();
    let (sshd, sb) = up_and_done(
        true,
        &format!(
            "echo far-$AGENT_TEAM_NAME > far.txt; \
             if nc -z -w 2 127.0.0.1 {port}; then echo reached; else echo cut-off; fi > net.txt; pwd"
        ),
    );
    // The remote task ran in the member's directory on the host, not in the team's.
    let ws = far_workspace(&sshd);
    assert_eq!(
        std::fs::read_to_string(ws.join("far.txt")).unwrap().trim(),
        "far-far"
    );
    // In its own network namespace, the host reaches nothing here but through the link.
    let net = std::fs::read_to_string(ws.join("net.txt")).unwrap();
    if sshd.isolated() {
        assert_eq!(
            net.trim(),
            "cut-off",
            "the host reached this machine's loopback"
        );
    } else {
        eprintln!("no network namespace: the host shares this machine's loopback ({net})");
    }
    assert!(!sb.path("far.txt").exists());
    assert!(sb.path("near.txt").exists());
    let far = sb
        .tasks("rt")
        .into_iter()
        .find(|t| t.title == "far work")
        .unwrap();
    assert_eq!(far.owner.as_deref(), Some("far"));
    assert!(
        far.result
            .as_deref()
            .unwrap_or_default()
            .contains("work/rt/far"),
        "{:?}",
        far.result
    );
    // `ps` says where each agent runs.
    let a = sb.agent("rt", "far");
    assert_eq!(a.host.as_deref(), Some(HOST));
    assert_eq!(a.backend, "ssh");
    assert!(sb.agent("rt", "near").host.is_none());
    let ps = sb.ok(&["ps"]);
    assert!(ps.contains("HOST"), "{ps}");
    assert!(
        ps.lines()
            .any(|l| l.starts_with("far@rt") && l.contains(HOST)),
        "{ps}"
    );
    // Its output on the host is followed into the local log: `logs` works as for a local one.
    wait_for("far's output in its local log", T, || {
        sb.ok(&["logs", "far"])
            .contains("far · worker · incarnation 1")
    });
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn a_wrong_host_fails_up_with_one_clear_error_before_anything_starts() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let text =
        team(&sshd, true, "true").replace(&format!("host = \"{HOST}\""), "host = \"nosuchhost\"");
    sb.write_team_file(&text);
    let out = sb.run(&["up", "--backend", "process", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuchhost"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    // Nothing started: no daemon, no team state.
    assert!(
        !sb.team("rt").lock.exists() || sb.run(&["ps"]).status.code() != Some(0) || {
            sb.agents("rt").is_empty()
        }
    );
    // A refused key is the same kind of error.
    std::fs::write(sshd.dir.path().join("authorized_keys"), "").unwrap();
    sb.write_team_file(&team(&sshd, true, "true"));
    let out = sb.run(&["up", "--backend", "process", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(HOST) && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn the_worker_is_copied_to_a_host_without_one_and_the_teammate_runs_there() {
    let (sshd, sb) = up_and_done(false, "echo copied > far.txt");
    assert!(far_workspace(&sshd).join("far.txt").exists());
    // The copy is keyed by version and hash under the host's bin directory.
    let bins: Vec<_> = std::fs::read_dir(sshd.remote_dir().join("bin"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("agent-team-worker"))
        .collect();
    assert_eq!(bins.len(), 1, "{bins:?}");
    assert!(bins[0].exists());
    assert_eq!(
        std::fs::read(&bins[0]).unwrap().len(),
        std::fs::read(bin("agent-team-worker")).unwrap().len()
    );
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn a_remote_teammate_is_killed_and_restarted_on_its_host_as_the_same_member() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    // The local task holds the run open until the test is done with far.
    let go = gate_dir(&sshd).join("go");
    sb.write_team_file(&team_with(
        &sshd,
        true,
        "true",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    ));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("far connected", T, || {
        let a = sb.agent("rt", "far");
        a.connected && a.pid.is_some()
    });
    let first = sb.agent("rt", "far");
    sb.ok(&["kill", "far"]);
    wait_for("far stopped", T, || {
        sb.agent("rt", "far").status == AgentStatus::Stopped
    });
    wait_for("far's processes gone from the host", T, || {
        sshd.remote_processes()
            .iter()
            .all(|(_, l)| !l.contains("far.run"))
    });
    sb.ok(&["restart", "far"]);
    wait_for("far back", T, || {
        let a = sb.agent("rt", "far");
        a.connected && a.incarnation > first.incarnation
    });
    assert_eq!(sb.agent("rt", "far").host.as_deref(), Some(HOST));
    // The same identity on the host: messages reach the new incarnation.
    sb.ok(&["send", "far", "hello far"]);
    wait_for("the message delivered to the new incarnation", T, || {
        let inbox: Vec<Message> =
            serde_json::from_str(&sb.ok(&["inbox", "far", "--json"])).unwrap();
        inbox
            .iter()
            .any(|m| m.body == "hello far" && m.state != DeliveryState::Queued)
    });
    std::fs::write(&go, "").unwrap();
    down_leaves_the_host_clean(&sb, &sshd);
}

/// The team of [`team`] up, `far`'s task running on its host until the returned go file
/// exists (it counts its runs in `runs.txt` of the returned workspace).
fn up_with_a_waiting_remote_task() -> (Sshd, Sandbox, std::path::PathBuf, std::path::PathBuf) {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let go = gate_dir(&sshd).join("go");
    sb.write_team_file(&team(
        &sshd,
        true,
        &format!(
            "echo run >> runs.txt; while [ ! -e {g} ]; do sleep 0.05; done; echo finished",
            g = go.display()
        ),
    ));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let ws = far_workspace(&sshd);
    wait_for("the remote task running", T, || {
        ws.join("runs.txt").exists()
    });
    (sshd, sb, go, ws)
}

/// Every task completed, the remote one run exactly once (one line in `ws/runs.txt`).
fn all_done_the_remote_task_once(ws: &std::path::Path, tasks: impl Fn() -> Vec<Task>) {
    wait_for("both tasks completed", T, || {
        let tasks = tasks();
        tasks.len() == 2 && tasks.iter().all(|t| t.status == TaskStatus::Completed)
    });
    assert_eq!(
        std::fs::read_to_string(ws.join("runs.txt"))
            .unwrap()
            .lines()
            .count(),
        1,
        "the task ran exactly once"
    );
}

#[test]
fn a_cut_link_comes_back_and_the_remote_task_runs_exactly_once() {
    let (mut sshd, sb, go, ws) = up_with_a_waiting_remote_task();
    let before = sb.agent("rt", "far");
    // Pull the cable: our ssh master dies and the host's port stops answering (in its network
    // namespace the loopback goes down: packets vanish), so the daemon cannot make it again.
    sshd.block();
    cut_link(&sshd);
    wait_for("far unreachable", T, || {
        sb.agent("rt", "far").status == AgentStatus::Unreachable
    });
    assert!(!sb.agent("rt", "far").connected);
    // A message for it meanwhile waits in its inbox, as for any busy teammate.
    sb.ok(&["send", "far", "while the cable was out"]);
    // Plug it back: the daemon makes the link again and the worker, still running there,
    // reconnects through the new forward.
    sshd.unblock();
    wait_for("far reconnected", T, || {
        let a = sb.agent("rt", "far");
        a.connected && a.status != AgentStatus::Unreachable
    });
    std::fs::write(&go, "").unwrap();
    all_done_the_remote_task_once(&ws, || sb.tasks("rt"));
    // Nothing lost or doubled: the message is in its inbox once and was delivered.
    wait_for("the message delivered once", T, || {
        let inbox: Vec<Message> =
            serde_json::from_str(&sb.ok(&["inbox", "far", "--json"])).unwrap();
        let ours: Vec<_> = inbox
            .iter()
            .filter(|m| m.body == "while the cable was out")
            .collect();
        ours.len() == 1 && ours[0].state != DeliveryState::Queued
    });
    let after = sb.agent("rt", "far");
    assert_eq!(
        after.incarnation, before.incarnation,
        "the same process carried on"
    );
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn a_daemon_killed_mid_task_comes_back_and_its_remote_teammate_finishes_the_task_once() {
    let (sshd, sb, go, ws) = up_with_a_waiting_remote_task();
    let before = sb.agent("rt", "far");
    let tp = sb.team("rt");
    let pid_of = || -> Option<u32> {
        if !agent_team_paths::lock_held(&tp.lock) {
            return None;
        }
        std::fs::read_to_string(&tp.lock).ok()?.trim().parse().ok()
    };
    let old = pid_of().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The local teammate brings the daemon back; the new daemon makes the link again and the
    // remote worker, which never stopped, reconnects through it.
    wait_for("a new daemon", T, || pid_of().is_some_and(|p| p != old));
    wait_for("far reconnected to the new daemon", T, || {
        agent_now(&sb, "far").is_some_and(|a| a.connected && a.incarnation == before.incarnation)
    });
    std::fs::write(&go, "").unwrap();
    all_done_the_remote_task_once(&ws, || tasks_now(&sb));
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn down_after_the_daemon_died_stops_the_remote_teammate_on_its_host() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    sb.write_team_file(&team(&sshd, true, "sleep 1000"));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("far running its task", T, || {
        sb.agent("rt", "far").current_task.is_some()
    });
    assert!(!sshd.remote_processes().is_empty());
    // The daemon's guardian and the local agents are frozen so none brings the daemon back;
    // then the daemon dies.
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let guardians = guardians(&sb, "rt");
    assert!(!guardians.is_empty(), "the daemon has a guardian");
    for p in guardians {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGSTOP);
    }
    for name in ["leader", "near"] {
        if let Some(pid) = sb.agent("rt", name).pgid {
            let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGSTOP);
        }
    }
    let tp = sb.team("rt");
    let daemon: i32 = std::fs::read_to_string(&tp.lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(Pid::from_raw(daemon), Signal::SIGKILL).unwrap();
    wait_for("the daemon's lock released", T, || {
        !agent_team_paths::lock_held(&tp.lock)
    });
    let out = sb.run(&["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("no process of the team on the host", T, || {
        sshd.remote_processes().is_empty()
    });
    assert!(!sshd.remote_dir().join("run/rt").exists());
    wait_for("the link's ssh gone", T, || {
        sshd::processes_mentioning(&sshd.config().display().to_string()).is_empty()
    });
}

/// Kills the link's ssh master (as a dropped network would end it).
fn cut_link(sshd: &Sshd) {
    let config = sshd.config().display().to_string();
    let ours: Vec<_> = sshd::processes_mentioning(" -M ")
        .into_iter()
        .filter(|(_, l)| l.contains(&config))
        .collect();
    assert_eq!(ours.len(), 1, "one link per host: {ours:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ours[0].0 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[test]
fn a_host_whose_sshd_restarts_is_unreachable_meanwhile_then_its_teammate_carries_on() {
    let (mut sshd, sb, go, ws) = up_with_a_waiting_remote_task();
    let before = sb.agent("rt", "far");
    // Twice: the second time right after the first (a new episode, not the last one's).
    for _ in 0..2 {
        // sshd goes away and the link with it: the teammate is unreachable, not dead.
        sshd.stop();
        cut_link(&sshd);
        wait_for("far unreachable", T, || {
            sb.agent("rt", "far").status == AgentStatus::Unreachable
        });
        let far = sb.agent("rt", "far");
        assert!(far.current_task.is_some(), "it keeps its task");
        let ps = sb.ok(&["ps"]);
        assert!(ps.contains("unreachable"), "{ps}");
        // sshd back (the new link forwards to a fresh socket path: no stale one in the way).
        sshd.restart();
        wait_for("far connected again", T, || {
            let a = sb.agent("rt", "far");
            a.connected && a.status != AgentStatus::Unreachable
        });
    }
    assert_eq!(sb.agent("rt", "far").incarnation, before.incarnation);
    std::fs::write(&go, "").unwrap();
    all_done_the_remote_task_once(&ws, || sb.tasks("rt"));
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn past_the_grace_period_the_task_goes_back_and_the_teammate_is_stopped_when_its_host_returns() {
    let mut sshd = Sshd::start();
    let sb = Sandbox::new();
    let text = team(&sshd, true, "echo run >> runs.txt; sleep 1000")
        .replace("[ssh]\n", "[ssh]\ngrace_secs = 2\n");
    sb.write_team_file(&text);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let ws = far_workspace(&sshd);
    wait_for("the remote task running", T, || {
        ws.join("runs.txt").exists()
    });
    sshd.stop();
    cut_link(&sshd);
    wait_for("far failed as unreachable", T, || {
        let a = sb.agent("rt", "far");
        a.status == AgentStatus::Failed && a.last_exit.as_deref() == Some("unreachable")
    });
    // Its task went back to the board (the idle local teammate may take it up).
    let task = sb
        .tasks("rt")
        .into_iter()
        .find(|t| t.title == "far work")
        .unwrap();
    assert_ne!(task.owner.as_deref(), Some("far"), "{task:?}");
    // Its processes still run on the host, which nobody can reach; once it answers again
    // they are stopped.
    assert!(!sshd.remote_processes().is_empty());
    sshd.restart();
    wait_for("far's processes stopped on the host", T, || {
        sshd.remote_processes()
            .iter()
            .all(|(_, l)| !l.contains("far.run"))
    });
    sb.ok(&["down"]);
}

#[test]
fn in_tmux_a_remote_teammate_runs_in_tmux_on_its_host_attached_in_its_pane_with_its_host_on_the_border()
 {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    sb.write_team_file(&team_with(
        &sshd,
        true,
        "echo far-was-here; true",
        &gated_near_task(&sshd),
    ));
    sb.ok(&["up", "--backend", "tmux", "--detach"]);
    wait_for("far connected with a pane", T, || {
        let a = sb.agent("rt", "far");
        a.connected && a.pane.is_some()
    });
    let pane = sb.agent("rt", "far").pane.unwrap();
    let sock = sb.tmux_socket("rt");
    wait_for("far's output in its pane", T, || {
        sb.tmux(&sock, &["capture-pane", "-p", "-J", "-t", &pane])
            .is_ok_and(|t| t.contains("far · worker · incarnation 1"))
    });
    // It runs in a private tmux server on its host, which outlives a dropped link.
    let host_tmux = sshd.remote_dir().join("run/rt/tmux.sock");
    assert!(
        sb.tmux(&host_tmux, &["list-sessions", "-F", "#{session_name}"])
            .is_ok_and(|s| s.lines().any(|l| l == "far")),
        "far's session in the host's tmux server"
    );
    wait_for("the border naming the host", T, || {
        sb.tmux(&sock, &["display", "-p", "-t", &pane, "#{pane_title}"])
            .is_ok_and(|t| t.contains(HOST))
    });
    open_gate(&sshd);
    wait_for("both tasks completed", T, || {
        let tasks = sb.tasks("rt");
        tasks.len() == 2 && tasks.iter().all(|t| t.status == TaskStatus::Completed)
    });
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn a_remote_teammates_work_is_in_a_worktree_on_its_host_and_lands_here_with_finish() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let d = sb.dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("README"), "base\n").unwrap();
    std::fs::write(d.join(".gitignore"), "/home/\n/run/\n").unwrap();
    sb.write_team_file(&team_with(
        &sshd,
        true,
        "test -f README && echo remote work > far.txt",
        &gated_near_task(&sshd),
    ));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "base"]);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    // It works in a worktree of the team's repository on its host, on its own branch.
    let ws = far_workspace(&sshd);
    wait_for("far's task completed", T, || {
        sb.tasks("rt")
            .iter()
            .any(|t| t.title == "far work" && t.status == TaskStatus::Completed)
    });
    assert!(
        ws.join("README").exists(),
        "a checkout of the team's repository"
    );
    assert_eq!(
        git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "agent-team/far"
    );
    // Its task's work came home as a commit on its branch, authored as the teammate.
    wait_for("far's branch here", T, || {
        git(d, &["branch", "--list", "agent-team/far"]).contains("agent-team/far")
    });
    wait_for("the task's commit fetched", T, || {
        git(d, &["log", "-1", "--format=%an %s", "agent-team/far"]) == "far@rt far work"
    });
    let diff = sb.ok(&["diff", "far", "--stat"]);
    assert!(diff.contains("far.txt"), "{diff}");
    open_gate(&sshd);
    wait_for("both tasks completed", T, || {
        let tasks = sb.tasks("rt");
        tasks.len() == 2 && tasks.iter().all(|t| t.status == TaskStatus::Completed)
    });
    wait_for("far idle or down", T, || {
        let s = sb.agent("rt", "far").status;
        s == AgentStatus::Idle || s.is_down()
    });
    sb.ok(&["finish", "far", "--merge"]);
    assert_eq!(
        std::fs::read_to_string(d.join("far.txt")).unwrap(),
        "remote work\n"
    );
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn down_brings_a_remote_teammates_unfinished_work_home_first() {
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let d = sb.dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join(".gitignore"), "/home/\n/run/\n").unwrap();
    sb.write_team_file(&team(&sshd, true, "echo half done > wip.txt; sleep 1000"));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "base"]);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("far's work in progress on its host", T, || {
        far_workspace(&sshd).join("wip.txt").exists()
    });
    down_leaves_the_host_clean(&sb, &sshd);
    assert_eq!(
        git(d, &["show", "agent-team/far:wip.txt"]),
        "half done",
        "the work left on the host came home with down"
    );
}

#[test]
fn a_model_driven_remote_teammate_gets_its_api_key_over_the_link_and_works_its_task() {
    use agent_team_mockmodel::{MockModel, Step, Wire};
    use serde_json::json;
    let sshd = Sshd::start();
    // The model API is reachable from the host (from its network namespace only, when it has
    // one), as a provider's is from any machine that runs a teammate.
    let mock = sshd.on_host(|| MockModel::start_background(Wire::OpenAi).unwrap());
    mock.script(
        "far",
        vec![
            Step::Tools(vec![(
                "write_file".into(),
                json!({"path": "far.txt", "content": "written by a model on box\n"}),
            )]),
            Step::TextAndTools(
                "Done.".into(),
                vec![(
                    "update_task_status".into(),
                    json!({"id": 1, "status": "completed", "result": "wrote far.txt"}),
                )],
            ),
            Step::Text("Nothing left for me.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    let key = "sk-remote-e2e-3f9a";
    sb.env.push(("MOCK_API_KEY".into(), key.into()));
    sb.write_team_file(&format!(
        "name = \"rt\"\nboard = false\n{ssh}\n\
         [sandbox]\nread = [\"{gate}\"]\n\
         [roles.coder]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{url}\"\n\
         api_key_env = \"MOCK_API_KEY\"\n\
         [[teammates]]\nname = \"far\"\nrole = \"coder\"\nhost = \"{HOST}\"\n\
         [[teammates]]\nname = \"near\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"write far.txt\"\nassign = \"far\"\n\
         [[tasks]]\ntitle = \"near work\"\nrun = \"{near}\"\nassign = \"near\"\n",
        ssh = sshd.ssh_table(Some(&bin("agent-team-worker"))),
        url = mock.base_url(),
        near = gated_near_task(&sshd),
        gate = gate_dir(&sshd).display(),
    ));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let ws = far_workspace(&sshd);
    wait_for("far's task completed by its model", T, || {
        sb.tasks("rt")
            .iter()
            .any(|t| t.title == "write far.txt" && t.status == TaskStatus::Completed)
    });
    assert_eq!(
        std::fs::read_to_string(ws.join("far.txt")).unwrap(),
        "written by a model on box\n"
    );
    // Every model request from the host carried the team's key, which it inherits nowhere
    // there: it went over the link's standard input, into a file read once and removed.
    let keys = mock.keys("far");
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k.as_deref() == Some(format!("Bearer {key}").as_str())),
        "{keys:?}"
    );
    assert!(!sshd.remote_dir().join("run/rt/.far.env").exists());
    assert!(
        sshd::processes_mentioning(key).is_empty(),
        "the key is on no command line"
    );
    open_gate(&sshd);
    down_leaves_the_host_clean(&sb, &sshd);
}

#[test]
fn a_call_through_a_dead_link_fails_and_never_reaches_the_host_another_way() {
    // The real ssh against the real sshd: a master, then its death as the link's death
    // (SIGKILL, its control socket left behind). A call through that link must say the host
    // is unreachable; ssh's own fallback would connect anew, bypassing the link, and run it
    // (on a host that does not answer, it stalled for ConnectTimeout instead).
    use agent_team_remote::{OpenSsh, RemoteError, Ssh};
    let sshd = Sshd::start();
    let ssh = OpenSsh::new(vec![
        "ssh".into(),
        "-F".into(),
        sshd.config().display().to_string(),
    ]);
    let control = sshd.dir.path().join("link.ctl");
    let log = sshd.dir.path().join("link.log");
    let mut master = ssh.master(HOST, &control, &log).unwrap();
    wait_for("the master to answer", T, || ssh.check(HOST, &control));
    let through = ssh.script(HOST, Some(&control), "echo through", T).unwrap();
    assert_eq!(through.stdout.trim(), "through", "{through:?}");
    master.kill().unwrap();
    master.wait().unwrap();
    assert!(control.exists(), "a killed master leaves its socket");
    let after = ssh.script(HOST, Some(&control), "echo through", T);
    match after {
        Ok(out) => {
            assert_ne!(
                out.stdout.trim(),
                "through",
                "ran without the link: {out:?}"
            );
            assert_eq!(out.code, Some(255), "unreachable, as ssh says it: {out:?}");
        }
        Err(RemoteError::Unreachable { .. }) => {}
        Err(e) => panic!("a dead link is an unreachable host, not {e}"),
    }
}
