//! A team heals itself (issue 26): a SIGKILLed daemon of a detached team is brought back by its
//! own agents (and its guardian) with nobody at the keyboard, `down` after a crash still stops
//! everything, and a team stopped with `down` stays stopped.

use agent_team_e2e::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The daemon's pid from its lock file, if a daemon holds it.
fn daemon_pid(sb: &Sandbox, team: &str) -> Option<u32> {
    let tp = sb.team(team);
    if !agent_team_paths::lock_held(&tp.lock) {
        return None;
    }
    std::fs::read_to_string(&tp.lock).ok()?.trim().parse().ok()
}

/// Where `pid` maps the agent-team program (the start of its first mapping of it).
fn program_base(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .ok()?
        .lines()
        .find(|l| l.ends_with("/agent-team"))
        .and_then(|l| l.split('-').next())
        .map(str::to_string)
}

/// `task list --json` (a read: it never starts a daemon); empty when the read failed (a read
/// in flight as the daemon is killed sees its connection reset).
fn task_list(sb: &Sandbox, team: &str) -> Vec<serde_json::Value> {
    let out = sb.run(&["--team", team, "task", "list", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// `ps --json` (a read).
fn ps(sb: &Sandbox, team: &str) -> Vec<serde_json::Value> {
    let out = sb.run(&["--team", team, "ps", "--json"]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    v.get("agents")
        .or(Some(&v))
        .and_then(|a| a.as_array().cloned())
        .unwrap_or_default()
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// A team of two exec teammates (no board pane: on tmux it follows the events and would bring
/// the daemon back too) and `n` tasks, each of which records its start in
/// `start.K`, waits for the file `gate`, then records its end in `done.K`.
fn gated_team(sb: &Sandbox, team: &str, backend: &str, n: usize) {
    let mut s = format!(
        "name = \"{team}\"\nboard = false\n[[teammates]]\nname = \"w1\"\nrole = \"worker\"\n[[teammates]]\nname = \"w2\"\nrole = \"worker\"\n"
    );
    let dir = sb.dir.path().display().to_string();
    for k in 1..=n {
        s.push_str(&format!(
            "[[tasks]]\nkey = \"t{k}\"\ntitle = \"t{k}\"\nrun = \"echo x >> {dir}/start.{k}; while [ ! -e {dir}/gate ]; do sleep 0.02; done; echo x >> {dir}/done.{k}\"\n"
        ));
    }
    sb.write_team_file(&s);
    sb.ok(&["up", "--backend", backend, "--detach"]);
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_detached_team_brings_its_killed_daemon_back_and_finishes_every_task_once() {
    for backend in backends() {
        eprintln!("heal: {backend}");
        heals_on(backend);
    }
}

fn heals_on(backend: &str) {
    let sb = Sandbox::new();
    let team = "heal";
    gated_team(&sb, team, backend, 4);
    // Both teammates are in the middle of a task.
    wait_for("two tasks to start", T, || {
        lines(&sb.path("start.1"))
            + lines(&sb.path("start.2"))
            + lines(&sb.path("start.3"))
            + lines(&sb.path("start.4"))
            >= 2
    });
    let first = daemon_pid(&sb, team).expect("a daemon");
    // While the daemon runs its guardian is the small bridge, not a whole `agent-team`; it
    // becomes one only to bring the daemon back (on the in-process backend it is the only
    // healer: no worker process outlives the daemon).
    let guards = guardians(&sb, team);
    assert_eq!(guards.len(), 1, "{backend}: the daemon has one guardian");
    let exe = std::fs::read_link(format!("/proc/{}/exe", guards[0])).unwrap();
    assert!(
        exe.ends_with("agent-team-bridge"),
        "{backend}: the waiting guardian is {}",
        exe.display()
    );
    signal(first, nix::sys::signal::Signal::SIGKILL);
    if backend == "in-process" {
        // Commands inside the daemon die with it (and run again): the gate opens once the
        // new daemon is up, so a dying command cannot slip through it first.
        wait_for("a new daemon", T, || {
            daemon_pid(&sb, team).is_some_and(|p| p != first)
        });
    }
    // The commands finish while the daemon is away (or just back): they are reported.
    std::fs::write(sb.path("gate"), "").unwrap();
    // Nothing but reads from here on: the team must heal itself.
    wait_for("every task to complete", T, || {
        let tasks = task_list(&sb, team);
        tasks.len() == 4
            && tasks
                .iter()
                .all(|t| t.get("status").and_then(|s| s.as_str()) == Some("completed"))
    });
    let second = daemon_pid(&sb, team).expect("the daemon came back");
    assert_ne!(first, second, "{backend}: a new daemon serves the team");
    wait_for("every agent to be connected again", T, || {
        let agents = ps(&sb, team);
        !agents.is_empty()
            && agents.iter().all(|a| {
                // Connected, or done: the exec leader finishes the team once the board is.
                a.get("connected").and_then(|c| c.as_bool()) == Some(true)
                    || matches!(
                        a.get("status").and_then(|s| s.as_str()),
                        Some("stopped" | "exited")
                    )
            })
    });
    for k in 1..=4 {
        assert_eq!(
            lines(&sb.path(&format!("done.{k}"))),
            1,
            "{backend}: task {k}'s command ran to its end exactly once"
        );
        if backend != "in-process" {
            // The teammates outlived the daemon: what they were running was reported, not
            // started again. (Inside the daemon, a command dies with it and runs again.)
            assert_eq!(
                lines(&sb.path(&format!("start.{k}"))),
                1,
                "{backend}: task {k} was not run again"
            );
        }
    }
    // The healer that won said so: the guardian in the daemon's log, a worker in its own.
    let tp = sb.team(team);
    let mut logs = vec![tp.daemon_log.clone()];
    logs.extend(
        std::fs::read_dir(&tp.logs)
            .unwrap()
            .flatten()
            .map(|e| e.path()),
    );
    // (On tmux a worker that won says so in its pane, which its log copies only as the pane
    // is read: there the new daemon's pid above is the proof.)
    assert!(
        backend == "tmux"
            || logs.iter().any(|l| std::fs::read_to_string(l)
                .unwrap_or_default()
                .contains("brought the daemon of team heal back")),
        "{backend}: a healer said so in its log: {}",
        logs.iter()
            .map(|l| format!(
                "--- {}\n{}",
                l.display(),
                std::fs::read_to_string(l).unwrap_or_default()
            ))
            .collect::<String>()
    );
    sb.ok(&["--team", team, "down"]);
    wait_for("nothing of the team to be left", T, || {
        procs_naming(sb.dir.path()).is_empty()
    });
}

#[test]
fn a_run_stands_for_its_daemons_guardian_and_a_guardian_takes_over_once_the_run_is_killed() {
    // In process, the daemon holds every agent: nothing but its guardian and `run` can bring
    // it back, so this is where the hand-over matters.
    let mut sb = Sandbox::new();
    let team = "runguard";
    let dir = sb.dir.path().display().to_string();
    sb.write_team_file(&format!(
        "name = \"{team}\"\nboard = false\n[[teammates]]\nname = \"w1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"t1\"\ntitle = \"t1\"\nrun = \"echo x >> {dir}/start.1; while [ ! -e {dir}/gate ]; do sleep 0.02; done; echo x >> {dir}/done.1\"\n"
    ));
    let run = sb.spawn(&["run", "--backend", "in-process", "--timeout", "120"]);
    wait_for("the task to start", T, || lines(&sb.path("start.1")) >= 1);
    let first = daemon_pid(&sb, team).expect("a daemon");
    // The daemon is `run` forked: it maps the program where `run` does (a program started anew
    // is placed elsewhere), so it shares the pages `run` relocated at its start; it reads as a
    // daemon in `ps`.
    assert_eq!(
        program_base(first),
        program_base(run),
        "the daemon was not forked from run"
    );
    let cmdline = std::fs::read(format!("/proc/{first}/cmdline")).unwrap();
    let words: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(
        words[1..],
        [&b"daemon"[..], b"--foreground", b"--team", team.as_bytes()],
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    // While `run` follows the team it brings a crashed daemon back itself: no guardian.
    assert!(
        guardians(&sb, team).is_empty(),
        "a guardian beside the run: {:?}",
        procs_naming(sb.dir.path())
    );
    sb.kill9(run);
    // The run is gone, the team was not stopped: the daemon starts its guardian.
    wait_for("a guardian once the run is gone", T, || {
        guardians(&sb, team).len() == 1
    });
    signal(first, nix::sys::signal::Signal::SIGKILL);
    wait_for("the guardian to bring the daemon back", T, || {
        daemon_pid(&sb, team).is_some_and(|p| p != first)
    });
    // The command died with the daemon and runs again in the new one; the team finishes.
    std::fs::write(sb.path("gate"), "").unwrap();
    wait_for("the task to complete", T, || {
        task_list(&sb, team)
            .iter()
            .any(|t| t.get("status").and_then(|s| s.as_str()) == Some("completed"))
    });
    sb.ok(&["--team", team, "down"]);
    wait_for("nothing of the team to be left", T, || {
        procs_naming(sb.dir.path()).is_empty()
    });
}

#[test]
fn a_run_that_ends_leaves_no_guardian_behind() {
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"runend\"\nboard = false\n[[teammates]]\nname = \"w1\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"t1\"\nrun = \"true\"\n",
    );
    let out = sb.ok(&["run", "--backend", "in-process", "--timeout", "60"]);
    assert!(out.contains("1 completed"), "{out}");
    // The run returned once the daemon let go of its lock, which it does last: nothing of the
    // team runs any more (its process may still be on its way out).
    assert!(
        !agent_team_paths::lock_held(&sb.team("runend").lock),
        "run returned while its daemon still held the team"
    );
    // The run stopped its team on purpose before it went: its going starts no guardian.
    wait_for("nothing of the team to be left", T, || {
        procs_naming(sb.dir.path()).is_empty()
    });
    let log = std::fs::read_to_string(sb.team("runend").daemon_log).unwrap();
    assert!(
        !log.contains("guarded this daemon is gone"),
        "a guardian was started after the run's stop: {log}"
    );
}

#[test]
fn down_after_the_daemon_was_killed_leaves_no_process_and_no_tmux_server() {
    for backend in backends() {
        down_after_crash_on(backend);
    }
}

fn down_after_crash_on(backend: &str) {
    let sb = Sandbox::new();
    let team = "dead";
    gated_team(&sb, team, backend, 2);
    wait_for("both tasks to start", T, || {
        lines(&sb.path("start.1")) + lines(&sb.path("start.2")) >= 2
    });
    let agents = ps(&sb, team);
    let outside = agents
        .iter()
        .filter(|a| a.get("backend").and_then(|b| b.as_str()) != Some("in-process"));
    let pids: Vec<u32> = outside
        .clone()
        .filter_map(|a| a.get("pid").and_then(|p| p.as_u64()).map(|p| p as u32))
        .collect();
    let groups: Vec<u32> = outside
        .filter_map(|a| a.get("pgid").and_then(|p| p.as_u64()).map(|p| p as u32))
        .collect();
    // Freeze everyone who would bring the daemon back, then kill it: `down` finds no daemon.
    assert!(
        !guardians(&sb, team).is_empty(),
        "{backend}: the daemon has a guardian"
    );
    for p in guardians(&sb, team) {
        signal(p, nix::sys::signal::Signal::SIGSTOP);
    }
    for g in &groups {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(*g as i32),
            nix::sys::signal::Signal::SIGSTOP,
        );
    }
    // Each agent's own process too (a pane's group may not be its worker's), and any worker
    // of this sandbox ps did not list.
    for p in &pids {
        signal(*p, nix::sys::signal::Signal::SIGSTOP);
    }
    let workers: Vec<u32> = procs_naming(sb.dir.path())
        .into_iter()
        .filter(|(_, c)| {
            c.split(' ')
                .next()
                .is_some_and(|argv0| argv0.ends_with("agent-team-worker"))
        })
        .map(|(p, _)| p)
        .collect();
    for p in &workers {
        signal(*p, nix::sys::signal::Signal::SIGSTOP);
    }
    let daemon = daemon_pid(&sb, team).expect("a daemon");
    signal(daemon, nix::sys::signal::Signal::SIGKILL);
    let tp = sb.team(team);
    // tmux sends SIGCONT to a pane's process it sees stopped (its `server_child_stopped`), so
    // on tmux the frozen workers may wake and bring the daemon back before `down`: then a new
    // daemon holds the lock, which is as good here.
    wait_for(
        "the daemon's lock to be free (or, on tmux, a new daemon)",
        T,
        || {
            !agent_team_paths::lock_held(&tp.lock)
                || (backend == "tmux" && daemon_pid(&sb, team).is_some_and(|p| p != daemon))
        },
    );
    let out = sb.run(&["--team", team, "down"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{backend}: down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // On tmux a daemon may be back before `down` (tmux woke the frozen workers, see above).
    // `down` then stops it the usual way, and what follows (nothing left, no tmux server, no
    // daemon) must hold the same. On the other backends the crashed-daemon path itself is
    // required.
    let brought_back = backend == "tmux" && text.contains("is down (daemon pid");
    if !text.contains("had died") && !brought_back {
        let mut logs = String::new();
        for e in std::fs::read_dir(&tp.logs).unwrap().flatten() {
            logs.push_str(&format!(
                "== {}\n{}\n",
                e.path().display(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            ));
        }
        logs.push_str(&std::fs::read_to_string(&tp.daemon_log).unwrap_or_default());
        panic!("{backend}: {text}\n{logs}");
    }
    // The frozen guardian, let go, sees the team was stopped and ends.
    for p in guardians(&sb, team) {
        signal(p, nix::sys::signal::Signal::SIGCONT);
    }
    for p in &pids {
        wait_for("an agent's process to be gone", T, || {
            !agent_team_pane::procs::pid_alive(*p) || agent_team_pane::procs::is_zombie(*p)
        });
    }
    wait_for_or(
        "no process naming the sandbox",
        T,
        || procs_naming(sb.dir.path()).is_empty(),
        || {
            format!(
                "{backend}: {:?}\n`down` said: {text}",
                procs_naming(sb.dir.path())
            )
        },
    );
    assert!(
        sb.tmux(&sb.tmux_socket(team), &["ls"]).is_err(),
        "{backend}: the team's tmux server is gone"
    );
    assert!(
        !agent_team_client::daemon_running(&tp),
        "{backend}: and no daemon was brought back"
    );
    // Each command ended with its agent: none finished.
    assert_eq!(lines(&sb.path("done.1")) + lines(&sb.path("done.2")), 0);
}

#[test]
fn a_team_stopped_with_down_stays_stopped() {
    let sb = Sandbox::new();
    let team = "calm";
    gated_team(&sb, team, "process", 2);
    wait_for("both tasks to start", T, || {
        lines(&sb.path("start.1")) + lines(&sb.path("start.2")) >= 2
    });
    sb.ok(&["--team", team, "down"]);
    let tp = sb.team(team);
    assert!(tp.stopped.exists(), "down leaves the clean-stop marker");
    wait_for("no process naming the sandbox", T, || {
        procs_naming(sb.dir.path()).is_empty()
    });
    assert!(!agent_team_client::daemon_running(&tp));
    // A worker that outlived the team (started by hand with a launch's environment) finds no
    // daemon and the marker: it ends and starts none.
    let exe = agent_team_e2e::bin("agent-team");
    let out = sb
        .cmd("agent-team-worker")
        .env("AGENT_TEAM_SOCKET", &tp.socket)
        .env("AGENT_TEAM_TEAM", team)
        .env("AGENT_TEAM_NAME", "w1")
        .env("AGENT_TEAM_SECRET", "stale")
        .env("AGENT_TEAM_INCARNATION", "1")
        .env(agent_team_client::heal::ENV_DAEMON_EXE, &exe)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!agent_team_client::daemon_running(&tp));
    assert!(!agent_team_paths::lock_held(&tp.lock));
    // Without the marker (a crash), the same worker brings the daemon back.
    std::fs::remove_file(&tp.stopped).unwrap();
    let out = sb
        .cmd("agent-team-worker")
        .env("AGENT_TEAM_SOCKET", &tp.socket)
        .env("AGENT_TEAM_TEAM", team)
        .env("AGENT_TEAM_NAME", "w1")
        .env("AGENT_TEAM_SECRET", "stale")
        .env("AGENT_TEAM_INCARNATION", "1")
        .env(agent_team_client::heal::ENV_DAEMON_EXE, &exe)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // It is refused (a stale secret), but the daemon it started serves the team.
    let _ = out;
    assert!(agent_team_client::daemon_running(&tp));
    sb.ok(&["--team", team, "down"]);
}

/// The small guardian (`agent-team-bridge guard PROGRAM…`): a byte on its stdin (the daemon
/// stopped on purpose) ends it without running PROGRAM; end of file (the daemon ended) makes
/// it PROGRAM, with its arguments.
#[test]
fn the_waiting_guardian_becomes_its_program_only_at_the_end_of_its_pipe() {
    use std::io::Write;
    let sb = Sandbox::new();
    let ran = sb.path("ran");
    let program = ["sh", "-c", "echo \"$0\" > \"$1\"", "healed"];
    // Dismissed: a byte, then the pipe closes.
    let mut g = sb
        .cmd("agent-team-bridge")
        .arg("guard")
        .args(program)
        .arg(&ran)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    g.stdin.take().unwrap().write_all(b"s").unwrap();
    assert!(g.wait().unwrap().success());
    assert!(!ran.exists(), "a dismissed guardian ran its program");
    // The daemon ended: end of file, and the guardian becomes the program.
    let out = sb
        .cmd("agent-team-bridge")
        .arg("guard")
        .args(program)
        .arg(&ran)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "healed\n");
}
