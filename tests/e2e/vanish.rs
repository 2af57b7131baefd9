//! A team whose files are deleted stays gone (issue 70): `rm -rf` of a running team's home and
//! runtime dir ends every process of the team within seconds, on every backend and for a
//! `serve` session team; so does a SIGKILL of all its processes followed by the `rm`, even when
//! a daemon was brought back just before; and nothing makes the deleted dirs again.

use agent_team_e2e::web::*;
use agent_team_e2e::*;
use serde_json::json;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
/// How soon after the deletion nothing of the team may be left (the bound).
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// The processes of the sandbox's teams: whatever names the sandbox in its command line or
/// environment, or works in it, except `serve` (which is not a team's).
fn team_procs(sb: &Sandbox) -> Vec<(u32, String)> {
    let root = sb.dir.path();
    let mut out: Vec<(u32, String)> = procs_naming(root);
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || out.iter().any(|(p, _)| *p == pid) {
            continue;
        }
        let in_sandbox =
            std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(root));
        if in_sandbox && !agent_team_pane::procs::is_zombie(pid) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out.retain(|(_, c)| !c.contains(" serve "));
    out
}

/// `rm -rf` of the team's home and runtime dir (again while something was writing in them).
fn remove_files(sb: &Sandbox) {
    for dir in [&sb.paths.home, &sb.paths.runtime] {
        wait_for("the dir to be removed", T, || {
            let _ = std::fs::remove_dir_all(dir);
            !dir.exists()
        });
    }
}

/// Nothing of the team within [`GONE_WITHIN`], nothing coming back for a while after, and
/// the deleted dirs not made again.
fn nothing_left(sb: &Sandbox, what: &str) {
    let start = Instant::now();
    wait_for_or(
        &format!("{what}: no process of the team"),
        GONE_WITHIN,
        || team_procs(sb).is_empty(),
        || format!("{:#?}", team_procs(sb)),
    );
    eprintln!("{what}: nothing left after {:?}", start.elapsed());
    // Watched for a while: a healer would have started a daemon again by now.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let left = team_procs(sb);
        assert!(left.is_empty(), "{what}: came back: {left:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let made: Vec<String> = [&sb.paths.home, &sb.paths.runtime]
        .iter()
        .filter(|d| d.exists())
        .map(|d| {
            format!(
                "{}: {:?}",
                d.display(),
                std::process::Command::new("find")
                    .arg(d)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            )
        })
        .collect();
    assert!(
        made.is_empty(),
        "{what}: the deleted dirs were made again: {made:?}"
    );
}

/// The daemon's pid from its lock file, if a daemon holds it.
fn daemon_pid(sb: &Sandbox, team: &str) -> Option<u32> {
    let tp = sb.team(team);
    if !agent_team_paths::lock_held(&tp.lock) {
        return None;
    }
    std::fs::read_to_string(&tp.lock).ok()?.trim().parse().ok()
}

fn lines(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn kill9(pids: &[u32]) {
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A detached team of two exec teammates on `backend` (no board: a pane of its own to see
/// gone too, but this is about the team) whose tasks run until a gate that never opens: the
/// agents are busy with their commands when the files go.
fn busy_team(sb: &Sandbox, team: &str, backend: &str) {
    let dir = sb.dir.path().display().to_string();
    let mut s = format!(
        "name = \"{team}\"\nboard = false\n[[teammates]]\nname = \"w1\"\nrole = \"worker\"\n[[teammates]]\nname = \"w2\"\nrole = \"worker\"\n"
    );
    for k in 1..=2 {
        s.push_str(&format!(
            "[[tasks]]\nkey = \"t{k}\"\ntitle = \"t{k}\"\nrun = \"echo x >> {dir}/start.{k}; while [ ! -e {dir}/gate ]; do sleep 0.05; done\"\n"
        ));
    }
    sb.write_team_file(&s);
    sb.ok(&["up", "--backend", backend, "--detach"]);
    wait_for("both tasks to run", T, || {
        sb.path("start.1").exists() && sb.path("start.2").exists()
    });
    assert!(
        !guardians(sb, team).is_empty(),
        "{backend}: the daemon has a guardian"
    );
}

#[test]
fn deleting_a_running_teams_files_ends_the_team_on_every_backend() {
    for backend in backends() {
        let sb = Sandbox::new();
        busy_team(&sb, "gone", backend);
        remove_files(&sb);
        nothing_left(&sb, backend);
    }
}

#[test]
fn deleting_only_the_state_dir_ends_the_team_and_marks_it_stopped() {
    let sb = Sandbox::new();
    busy_team(&sb, "gone", "process");
    std::fs::remove_dir_all(&sb.paths.home).unwrap();
    wait_for_or(
        "no process of the team",
        GONE_WITHIN,
        || team_procs(&sb).is_empty(),
        || format!("{:#?}", team_procs(&sb)),
    );
    // The runtime dir is still the team's: the stop is a stop on purpose there.
    assert!(sb.team("gone").stopped.exists());
    assert!(!sb.paths.home.exists(), "the state dir was made again");
}

#[test]
fn a_sigkill_of_every_process_of_a_team_then_rm_leaves_nothing_on_every_backend() {
    for backend in backends() {
        let sb = Sandbox::new();
        busy_team(&sb, "swept", backend);
        let all: Vec<u32> = team_procs(&sb).into_iter().map(|(p, _)| p).collect();
        kill9(&all);
        remove_files(&sb);
        nothing_left(&sb, backend);
    }
}

/// The issue's own sequence: the guardian saw its daemon die and brought it back, then every
/// process the sweep knew of was killed and the dirs removed; the daemon brought back lived on
/// (for an hour, with its files deleted) before the fix.
#[test]
fn a_daemon_brought_back_just_before_the_sweep_stops_once_the_files_go() {
    for backend in backends() {
        let sb = Sandbox::new();
        let team = "healed";
        busy_team(&sb, team, backend);
        let first = daemon_pid(&sb, team).expect("a daemon");
        let before: Vec<u32> = team_procs(&sb)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| *p != first)
            .collect();
        kill9(&[first]);
        wait_for("a daemon brought back", T, || {
            daemon_pid(&sb, team).is_some_and(|p| p != first)
        });
        if backend == "in-process" {
            // Its commands died with the daemon and run again in the new one: once they run
            // (a command's sandbox set up after the files went would make its mount points).
            wait_for("the commands to run again", T, || {
                (1..=2).all(|k| lines(&sb.path(&format!("start.{k}"))) >= 2)
            });
        }
        kill9(&before);
        remove_files(&sb);
        nothing_left(&sb, backend);
    }
}

/// A `serve` session team streaming a run whose task waits on a gate.
fn serve_session(sb: &mut Sandbox) -> (Server, String, Sse) {
    let gate = sb.path("gate");
    sb.write_team_file(&format!(
        "name = \"svc\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n[[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"g\"\ntitle = \"wait for the gate\"\nrun = \"echo x > {}; while [ ! -f {} ]; do sleep 0.05; done\"\n",
        sb.path("started").display(),
        gate.display()
    ));
    let srv = Server::start(sb);
    let (team, mut sse) = srv.stream(
        json!({"user_id": "carol", "session_id": "v", "message": "vanish"}),
        None,
    );
    loop {
        let (_, item) = sse.next_event().expect("stream ended");
        let env = &item["envelope"];
        if env["event"]["type"] == "TASK_UPDATED"
            && env["event"]["task"]["key"] == "g"
            && env["event"]["task"]["status"] == "in_progress"
        {
            break;
        }
    }
    // The command runs (its sandbox set up: made before the files go, its mount points
    // are no dirs made again).
    wait_for("the command to run", T, || sb.path("started").exists());
    assert!(
        !guardians(sb, &team).is_empty(),
        "the session's daemon has a guardian"
    );
    (srv, team, sse)
}

#[test]
fn deleting_a_serve_session_teams_files_ends_the_team_and_its_stream() {
    let mut sb = Sandbox::new();
    let (srv, _team, mut sse) = serve_session(&mut sb);
    remove_files(&sb);
    nothing_left(&sb, "serve session");
    // The stream ends without success (it does not bring the team back), and the server
    // still answers.
    let mut last = None;
    while let Some((_, item)) = sse.next_event() {
        let done = matches!(item["type"].as_str(), Some("complete" | "error"));
        last = Some(item);
        if done {
            break;
        }
    }
    let last = last.expect("the stream said how it ended");
    assert!(
        last["type"] == "error" || (last["type"] == "complete" && last["success"] != true),
        "{last:?}"
    );
    assert_eq!(srv.get("/v1/teams").0, 200);
}

#[test]
fn a_sigkill_of_a_serve_session_team_then_rm_leaves_nothing() {
    let mut sb = Sandbox::new();
    let (srv, _team, _sse) = serve_session(&mut sb);
    let all: Vec<u32> = team_procs(&sb).into_iter().map(|(p, _)| p).collect();
    kill9(&all);
    remove_files(&sb);
    nothing_left(&sb, "serve session, swept");
    assert_eq!(srv.get("/v1/teams").0, 200);
}
