use super::*;
use crate::placement::{WorkerChoice, choose_worker};
use agent_team_pane::{LaunchSpec, Liveness, PaneBackend, env};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn settings(dir: &std::path::Path) -> RemoteSettings {
    let control = dir.join("ctl");
    std::fs::create_dir_all(&control).ok();
    // The daemon's socket the link forwards (the local stand-in links it by name).
    let listener = std::os::unix::net::UnixListener::bind(dir.join("daemon.sock")).unwrap();
    Box::leak(Box::new(listener));
    RemoteSettings {
        team: "t".into(),
        ssh: vec!["ssh".into()],
        worker: Some("/bin/sh".into()),
        dir: Some(dir.join("host").display().to_string()),
        daemon_socket: dir.join("daemon.sock"),
        control_dir: control,
        local_worker: None,
        secrets_file: None,
        repo: None,
        panes: false,
    }
}

fn spec(name: &str, script: &str) -> LaunchSpec {
    LaunchSpec {
        container: None,
        name: name.into(),
        role: "worker".into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![
            (env::SECRET.into(), "s3cret".into()),
            (env::SOCKET.into(), "/local/daemon.sock".into()),
            ("KEEP".into(), "it's kept".into()),
        ],
        env_remove: vec!["TMUX".into()],
        secret_env: Vec::new(),
        cwd: std::path::PathBuf::new(),
        log: "/nowhere".into(),
        title: String::new(),
        color: None,
        host: Some("box".into()),
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_remote_agent_starts_with_its_host_paths_and_its_secret_in_a_file_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(LocalSsh::default()));
    let s = spec(
        "w1",
        "env > env.txt; cat \"$AGENT_TEAM_SECRET_FILE\" > secret.txt; pwd > pwd.txt; sleep 100",
    );
    let l = b.spawn(&s).unwrap();
    assert_eq!(l.host.as_deref(), Some("box"));
    assert_eq!(l.pgid, Some(l.pid));
    let host = dir.path().join("host");
    let ws = host.join("work/t/w1");
    wait_for("the agent's files", || ws.join("pwd.txt").exists());
    wait_for("the agent's env", || {
        std::fs::read_to_string(ws.join("env.txt")).is_ok_and(|t| t.contains("KEEP"))
    });
    let envs = std::fs::read_to_string(ws.join("env.txt")).unwrap();
    let run = host.join("run/t");
    assert!(envs.contains(&format!("AGENT_TEAM_SOCKET={}/daemon.sock", run.display())));
    assert!(envs.contains("KEEP=it's kept"));
    assert!(envs.contains("AGENT_TEAM_HOST=box"));
    assert!(
        !envs.contains("s3cret"),
        "the secret is not in the environment"
    );
    assert!(!envs.contains("AGENT_TEAM_SECRET="));
    wait_for("the secret", || ws.join("secret.txt").exists());
    assert_eq!(
        std::fs::read_to_string(ws.join("secret.txt"))
            .unwrap()
            .trim(),
        "s3cret"
    );
    assert_eq!(b.liveness(&l), Liveness::Alive);
    b.stop(&l, Duration::from_millis(500)).unwrap();
    assert!(matches!(b.liveness(&l), Liveness::Exited(_)));
    b.shutdown();
    assert!(!run.exists(), "down leaves no run directory on the host");
}

#[test]
fn a_remote_agents_exit_code_is_read_from_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(LocalSsh::default()));
    let l = b.spawn(&spec("w2", "exit 7")).unwrap();
    let mut last = Liveness::Unknown;
    wait_for("the exit", || {
        last = b.liveness(&l);
        matches!(last, Liveness::Exited(_))
    });
    let Liveness::Exited(e) = last else {
        unreachable!()
    };
    assert_eq!(e.code, Some(7));
    b.shutdown();
}

#[test]
fn a_given_workspace_that_is_not_on_the_host_fails_the_launch_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(LocalSsh::default()));
    let mut s = spec("w3", "sleep 1");
    s.cwd = "/no/such/dir".into();
    let e = b.spawn(&s).unwrap_err().to_string();
    assert!(e.contains("/no/such/dir"), "{e}");
    b.shutdown();
}

#[test]
fn a_cut_link_is_made_again_and_the_agent_is_found_alive() {
    let dir = tempfile::tempdir().unwrap();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(LocalSsh::default()));
    let l = b.spawn(&spec("w4", "sleep 100")).unwrap();
    assert!(b.link_up("box"));
    b.cut("box");
    assert!(!b.link_up("box"));
    // The next look finds the host unreachable and makes the link again on a thread; a look
    // after that finds the agent alive.
    assert_eq!(b.liveness(&l), Liveness::Unreachable);
    wait_for("the link made again", || b.liveness(&l) == Liveness::Alive);
    assert!(b.link_up("box"));
    b.stop(&l, Duration::from_millis(200)).unwrap();
    b.shutdown();
}

#[test]
fn the_probe_answer_is_parsed_and_the_worker_chosen() {
    let info = HostInfo::parse("junk\nroot=/h/.cache/agent-team\nuname=Linux x86_64\nworker=\n");
    assert_eq!(info.root, "/h/.cache/agent-team");
    assert_eq!(info.worker, None);
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.worker = None;
    // No worker there, no local one to copy: the error says what to do.
    let e = choose_worker(&s, "box", &info, "Linux x86_64").unwrap_err();
    assert!(e.to_string().contains("install agent-team"), "{e}");
    // A worker of ours and the same system: copied under its key.
    let w = dir.path().join("worker");
    std::fs::write(&w, b"binary").unwrap();
    s.local_worker = Some(w.clone());
    assert_eq!(
        choose_worker(&s, "box", &info, "Linux x86_64").unwrap(),
        WorkerChoice::Copy
    );
    let key = worker_key(&w).unwrap();
    assert!(key.starts_with(env!("CARGO_PKG_VERSION")), "{key}");
    assert_eq!(key.len(), env!("CARGO_PKG_VERSION").len() + 17, "{key}");
    // Another system: not copied.
    let e = choose_worker(&s, "box", &info, "Darwin arm64").unwrap_err();
    assert!(e.to_string().contains("Darwin arm64"), "{e}");
    // A configured worker that is not there is an error naming it.
    s.worker = Some("/opt/at/agent-team-worker".into());
    let e = choose_worker(&s, "box", &info, "Linux x86_64").unwrap_err();
    assert!(e.to_string().contains("/opt/at/agent-team-worker"), "{e}");
}

#[test]
fn dir_words_expand_home_on_the_host_only() {
    assert_eq!(dir_word(None), "\"$HOME\"/.cache/agent-team");
    assert_eq!(dir_word(Some("/srv/at")), "/srv/at");
    assert_eq!(dir_word(Some("~/x y")), "\"$HOME\"/'x y'");
}

#[test]
fn an_unreachable_agent_is_stopped_once_its_host_answers_again() {
    let dir = tempfile::tempdir().unwrap();
    let ssh = LocalSsh::default();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(ssh.clone()));
    let l = b.spawn(&spec("w5", "sleep 100")).unwrap();
    assert!(agent_team_pane::procs::pid_alive(l.pid));
    ssh.set_down(true);
    b.cut("box");
    assert_eq!(b.liveness(&l), Liveness::Unreachable);
    // A stop now cannot reach it: refused, and kept for later.
    assert!(b.stop(&l, Duration::from_millis(100)).is_err());
    assert!(
        agent_team_pane::procs::pid_alive(l.pid),
        "nothing reached it"
    );
    ssh.set_down(false);
    // Looks (with no agent left to look at) make the link again and carry out the stop.
    wait_for("the left agent stopped", || {
        b.poll(&[]);
        !agent_team_pane::procs::pid_alive(l.pid) || agent_team_pane::procs::is_zombie(l.pid)
    });
    b.shutdown();
}

#[test]
fn several_agents_of_a_host_start_in_one_go_and_one_that_cannot_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(LocalSsh::default()));
    let mut bad = spec("w7", "sleep 100");
    bad.cwd = "/no/such/dir".into();
    let got = b.spawn_many(&[spec("w6", "sleep 100"), bad, spec("w8", "sleep 100")]);
    assert_eq!(got.len(), 3);
    let (a, c) = (got[0].as_ref().unwrap(), got[2].as_ref().unwrap());
    let e = got[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("/no/such/dir"), "{e}");
    assert_ne!(a.pid, c.pid);
    assert_eq!(
        b.poll(&[a.clone(), c.clone()]),
        vec![Liveness::Alive, Liveness::Alive]
    );
    b.stop(a, Duration::from_millis(200)).unwrap();
    b.stop(c, Duration::from_millis(200)).unwrap();
    b.shutdown();
}

#[test]
fn with_panes_a_remote_agent_runs_in_a_tmux_session_on_its_host_and_takes_pastes() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("tmux not found: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.panes = true;
    let b = RemoteBackend::new(s, Arc::new(LocalSsh::default()));
    let sock = dir.path().join("host/run/t/tmux.sock");
    // The "host's" tmux server goes even when the test fails.
    struct Kill(std::path::PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("tmux")
                .arg("-S")
                .arg(&self.0)
                .arg("kill-server")
                .output();
        }
    }
    let _kill = Kill(sock.clone());
    let l = b.spawn(&spec("w9", "exec cat")).unwrap();
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .env_remove("TMUX")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    assert!(tmux(&["list-sessions", "-F", "#{session_name}"]).contains("w9"));
    b.paste(&l, "hello from the leader").unwrap();
    wait_for("the paste in the session", || {
        tmux(&["capture-pane", "-p", "-t", "=w9:"]).contains("hello from the leader")
    });
    assert_eq!(b.liveness(&l), Liveness::Alive);
    b.stop(&l, Duration::from_millis(300)).unwrap();
    b.shutdown();
    assert!(
        !sock.exists(),
        "the host's tmux server and its socket are gone"
    );
}

/// A link made again after the shutdown put the team's sockets back on a host the shutdown
/// had already cleaned (seen in an end-to-end test: "link up" after the core stopped).
#[test]
fn no_link_is_made_again_once_the_backend_was_shut_down() {
    let dir = tempfile::tempdir().unwrap();
    let b = RemoteBackend::new(settings(dir.path()), Arc::new(LocalSsh::default()));
    let l = b.spawn(&spec("w6", "sleep 100")).unwrap();
    b.cut("box");
    b.shutdown();
    // A stop makes a dropped link at once, unless the team is stopping.
    assert!(b.stop(&l, Duration::from_millis(100)).is_err());
    assert!(
        !b.link_up("box"),
        "a link was made after the shutdown: the host keeps the team's sockets"
    );
    agent_team_pane::procs::kill_tree(l.pid);
}

#[test]
fn an_ssh_call_past_its_time_returns_and_takes_what_ssh_started_with_it() {
    // A stand-in ssh that starts a child holding its stdout and stderr (as a ProxyCommand
    // holds ssh's stderr), then never ends. The call must return at its deadline, not when
    // the last holder of its pipes lets go, and that child must not outlive the call.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let ssh = OpenSsh::new(vec![
        "sh".into(),
        "-c".into(),
        format!(
            "sleep 1000 & echo $! > {}; exec sleep 1000",
            agent_team_pane::shell_quote(&pidfile.display().to_string())
        ),
        "ssh".into(),
    ]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ssh.script("box", None, "true", Duration::from_millis(300)));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the call returned (its timeout is 300 ms)");
    assert!(
        matches!(got, Err(RemoteError::Timeout { .. })),
        "a call past its time is a timeout: {got:?}"
    );
    let child: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the child ssh left to be gone", || {
        !agent_team_pane::procs::pid_alive(child) || agent_team_pane::procs::is_zombie(child)
    });
}
