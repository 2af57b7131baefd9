//! The operator CLI against a real daemon it starts on demand.

use agent_team_e2e::*;

#[test]
fn cli_starts_the_daemon_and_speaks_json_and_clear_errors() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "--team", "web", "task", "add", "lint", "--run", "true", "--json",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("started the daemon for team web"));
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (task["id"].as_u64(), task["status"].as_str()),
        (Some(1), Some("pending"))
    );

    sb.ok(&["--team", "web", "task", "add", "test", "--blocked-by", "1"]);
    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "task", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["blocked_by"], serde_json::json!([1]));

    // An unknown recipient: one line on stderr with the hint, exit 1.
    let out = sb.run(&["--team", "web", "send", "ghost", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("agent-team: error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Usage errors exit 2.
    assert_eq!(
        sb.run(&["--team", "web", "task", "frob"]).status.code(),
        Some(2)
    );

    // The only running team is picked without --team.
    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["task", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let teams: serde_json::Value =
        serde_json::from_str(&sb.ok(&["teams", "list", "--json"])).unwrap();
    assert_eq!(teams[0]["name"], "web");
    assert_eq!(teams[0]["running"], true);

    let events = sb.ok(&["--team", "web", "events", "--since", "1"]);
    let lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["seq"], 2);
    assert_eq!(lines[0]["event"]["type"], "TASK_UPDATED");

    // Down stops the daemon and keeps the state; teams show reads it from disk.
    sb.ok(&["--team", "web", "down"]);
    let tp = sb.team("web");
    assert!(!agent_team_client::daemon_running(&tp));
    let show: serde_json::Value =
        serde_json::from_str(&sb.ok(&["teams", "show", "web", "--json"])).unwrap();
    assert_eq!(show["daemon_pid"], 0);
    assert_eq!(show["tasks"], serde_json::json!([["pending", 2]]));
    // Deleting a stopped team removes its state.
    sb.ok(&["teams", "delete", "web"]);
    assert!(!tp.dir.exists());
}

#[test]
fn read_only_commands_never_create_a_team_and_read_a_stopped_one() {
    let sb = Sandbox::new();
    // No team at all: each read fails with a hint and leaves nothing behind.
    for args in [
        &["ps"][..],
        &["task", "list"],
        &["perms"],
        &["inbox", "leader"],
        &["events"],
        &["task", "show", "1"],
    ] {
        let out = sb.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("agent-team up"), "{args:?}: {err}");
    }
    assert!(!sb.team("default").dir.exists(), "a read created the team");
    assert!(!agent_team_client::daemon_running(&sb.team("default")));

    // A stopped team: reads answer from its stored state and start no daemon.
    sb.ok(&["--team", "web", "task", "add", "lint"]);
    sb.ok(&["--team", "web", "down"]);
    let tasks: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "task", "list", "--json"])).unwrap();
    assert_eq!(tasks[0]["title"], "lint");
    let task: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "task", "show", "1", "--json"])).unwrap();
    assert_eq!(task["title"], "lint");
    let perms: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "perms", "--json"])).unwrap();
    assert_eq!(perms, serde_json::json!([]));
    assert!(sb.ok(&["--team", "web", "events"]).lines().count() >= 1);
    assert!(
        !agent_team_client::daemon_running(&sb.team("web")),
        "a read started the daemon"
    );
}

/// Runs `agent-team ARGS` for each of `commands` at the same instant: every command waits at a
/// FIFO and all are let go together, so they really race. Returns each one's output, in order.
fn release_together(sb: &Sandbox, commands: &[Vec<String>]) -> Vec<std::process::Output> {
    let gate = sb.path("gate");
    if !gate.exists() {
        nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    // Held open for reading and writing, the FIFO lets every command's `cat` open it at
    // once and then wait in read() until this end is closed.
    let hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&gate)
        .unwrap();
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let script = format!("cat {} >/dev/null; exec \"$0\" \"$@\"", gate.display());
            let exe = sb.cmd("agent-team").get_program().to_owned();
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(script).arg(exe).args(args);
            for (k, v) in sb.cmd("agent-team").get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            c.current_dir(sb.dir.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Once every command's `cat` has the FIFO open, closing our end releases them all
    // together (each reads end of file).
    let want = format!("cat\0{}\0", gate.display());
    wait_for(
        "the commands to wait at the gate",
        std::time::Duration::from_secs(30),
        || {
            let waiting = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes())
                        && std::fs::read_dir(e.path().join("fd")).is_ok_and(|fds| {
                            fds.flatten()
                                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == gate))
                        })
                })
                .count();
            waiting == commands.len()
        },
    );
    drop(hold);
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

#[test]
fn concurrent_commands_against_a_stopped_or_crashed_team_all_succeed() {
    let sb = Sandbox::new();
    let run_many = |sb: &Sandbox, n: usize, tag: &str| {
        let commands: Vec<Vec<String>> = (0..n)
            .map(|i| {
                ["--team", "web", "task", "add", &format!("{tag}-{i}")]
                    .map(String::from)
                    .to_vec()
            })
            .collect();
        let mut started = 0;
        for out in release_together(sb, &commands) {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "a concurrent command failed: {err}");
            started += usize::from(err.contains("started the daemon"));
        }
        started
    };
    // A team that does not exist yet (its daemon creates the database), then a stopped one.
    let started = run_many(&sb, 24, "new");
    assert_eq!(started, 1, "exactly one command says it started the daemon");
    sb.ok(&["--team", "web", "down"]);
    let started = run_many(&sb, 24, "stopped");
    assert_eq!(started, 1, "exactly one command says it started the daemon");
    // Right after the daemon was SIGKILLed (stale socket and lock file left behind).
    let pid: u32 = std::fs::read_to_string(&sb.team("web").lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "the killed daemon to be gone",
        std::time::Duration::from_secs(10),
        || !agent_team_client::daemon_running(&sb.team("web")),
    );
    run_many(&sb, 40, "crashed");
    let tasks: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "task", "list", "--json"])).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 24 + 24 + 40);
    sb.ok(&["--team", "web", "down"]);
}

#[test]
fn reads_never_fail_while_writers_start_a_stopped_team() {
    // 8 writers start the stopped team's daemon while 4 readers read it, released together,
    // 20 rounds: every read answers and every write is applied.
    let sb = Sandbox::new();
    // A team that ran once: it has a leader whose inbox can be read.
    sb.write_team_file("name = \"web\"\n");
    sb.ok(&["up", "--backend", "process", "--detach"]);
    sb.ok(&["--team", "web", "task", "add", "first"]);
    sb.ok(&["--team", "web", "down"]);
    let reads: [&[&str]; 4] = [
        &["ps", "--json"],
        &["perms", "--json"],
        &["task", "list", "--json"],
        &["inbox", "leader", "--json"],
    ];
    let mut failures = Vec::new();
    for round in 0..20 {
        let mut commands: Vec<Vec<String>> = (0..8)
            .map(|i| {
                ["--team", "web", "task", "add", &format!("r{round}-w{i}")]
                    .map(String::from)
                    .to_vec()
            })
            .collect();
        for r in reads {
            let mut c = vec!["--team".to_string(), "web".to_string()];
            c.extend(r.iter().map(|a| a.to_string()));
            commands.push(c);
        }
        for (c, out) in commands.iter().zip(release_together(&sb, &commands)) {
            if !out.status.success() {
                failures.push(format!(
                    "round {round}: {}: {}",
                    c.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        sb.ok(&["--team", "web", "down"]);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    let tasks: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "task", "list", "--json"])).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 1 + 8 * 20);
}

#[test]
fn the_demo_does_all_its_work_says_where_its_report_is_and_ps_after_down_finds_it() {
    // What a newcomer types first: the demo's every task completes (its workspace is inside
    // its state dir, which the sandbox hides), and the report's path is printed.
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--demo", "--backend", "process", "--approve-all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report = sb.team("demo").dir.join("workspace").join("REPORT.md");
    assert!(
        err.contains(&format!("the demo's report is {}", report.display())),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .starts_with("# Word report"),
        "{err}"
    );
    let tasks: Vec<agent_team_protocol::Task> =
        serde_json::from_str(&sb.ok(&["--team", "demo", "task", "list", "--json"])).unwrap();
    assert_eq!(tasks.len(), 8);
    for t in tasks {
        assert_eq!(
            t.status,
            agent_team_protocol::TaskStatus::Completed,
            "{t:?}\n{err}"
        );
    }
    // Stopped, with no team file here: `ps` finds the team started from this directory.
    let ps = sb.run(&["ps"]);
    assert!(
        ps.status.success(),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("leader@demo"),
        "{}",
        String::from_utf8_lossy(&ps.stdout)
    );
    // `up --demo` then `down`: the same.
    let up = sb.ok(&["up", "--demo", "--backend", "process", "--detach"]);
    assert!(up.contains(&report.display().to_string()), "{up}");
    sb.ok(&["--team", "demo", "down"]);
    assert!(sb.ok(&["ps"]).contains("leader@demo"));
}

#[test]
fn error_hints_are_not_repeated() {
    let sb = Sandbox::new();
    sb.ok(&["--team", "web", "task", "add", "x"]);
    let out = sb.run(&["--team", "web", "send", "ghost", "hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("valid names").count(), 1, "{err}");
    let out = sb.run(&["--team", "web", "task", "show", "99"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("agent-team --help").count(), 0, "{err}");
    assert_eq!(err.matches('(').count(), err.matches(')').count(), "{err}");
    sb.ok(&["--team", "web", "down"]);
}

#[test]
fn oversized_input_and_an_empty_team_file_are_refused_before_any_daemon_starts() {
    let sb = Sandbox::new();
    let big = "g".repeat(5 * 1024 * 1024);
    let goal_file = sb.path("goal.txt");
    std::fs::write(&goal_file, &big).unwrap();
    // A 5 MB goal: too large for the daemon, so no daemon is started for it.
    let out = sb
        .cmd("agent-team")
        .args(["--team", "big", "run", "--backend", "process", "--quiet"])
        .arg(&big[..70 * 1024])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("goal") && err.contains("limit"), "{err}");
    assert!(!agent_team_client::daemon_running(&sb.team("big")));
    let out = sb.run(&["--team", "big", "send", "leader", &big[..70 * 1024]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("body"));
    assert!(!agent_team_client::daemon_running(&sb.team("big")));
    assert!(!sb.team("big").db.exists(), "no team was created");

    // An empty team file is a mistake, not team `default`.
    sb.write_team_file("# to do\n");
    let out = sb.run(&["up", "--backend", "process", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!agent_team_client::daemon_running(&sb.team("default")));
}

#[test]
fn up_without_a_team_file_keeps_the_configuration_the_team_has() {
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"kept\"\n[[teammates]]\nname = \"b1\"\nrole = \"worker\"\n[roles.worker]\ndescription = \"kept role\"\n",
    );
    sb.ok(&["up", "--backend", "process", "--detach"]);
    sb.ok(&["--team", "kept", "down"]);
    // From a directory without a team file, `up` brings back the same team, b1 included.
    let elsewhere = sb.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = sb
        .cmd("agent-team")
        .args(["--team", "kept", "up", "--backend", "process", "--detach"])
        .current_dir(&elsewhere)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = match sb
        .operator("kept")
        .call(agent_team_protocol::Request::GetConfig)
        .unwrap()
    {
        agent_team_protocol::Reply::Config { config } => config,
        other => panic!("{other:?}"),
    };
    assert_eq!(cfg["teammates"][0]["name"], "b1", "{cfg}");
    assert_eq!(cfg["roles"]["worker"]["description"], "kept role");
    wait_for("b1 back", std::time::Duration::from_secs(60), || {
        sb.agent("kept", "b1").connected
    });
    sb.ok(&["--team", "kept", "down"]);
}

#[test]
fn the_daemon_log_rotates_by_size_and_never_holds_a_message_body() {
    let mut sb = Sandbox::new();
    sb.env
        .push(("AGENT_TEAM_LOG_CAP_BYTES".into(), "2048".into()));
    sb.env.push(("AGENT_TEAM_LOG".into(), "debug".into()));
    sb.write_team_file("name = \"logs\"\n[[teammates]]\nname = \"b1\"\nrole = \"worker\"\n");
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let secret_body = "the-body-that-must-not-be-logged-7f3a";
    sb.ok(&["--team", "logs", "send", "b1", secret_body]);
    for _ in 0..12 {
        sb.ok(&["--team", "logs", "restart", "b1"]);
    }
    sb.ok(&["--team", "logs", "down"]);
    let log = sb.team("logs").daemon_log;
    let rotated = |i: u32| std::path::PathBuf::from(format!("{}.{i}", log.display()));
    assert!(rotated(1).exists(), "the log never rotated");
    assert!(!rotated(4).exists(), "more than three old logs kept");
    let mut all = String::new();
    for p in [log.clone(), rotated(1), rotated(2), rotated(3)] {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if p == log {
            assert!(text.len() <= 2048 + 512, "{} bytes", text.len());
        }
        all.push_str(&text);
    }
    assert!(all.contains("stopping"), "{all}");
    assert!(!all.contains(secret_body), "a message body reached the log");
}

#[test]
fn a_daemon_that_cannot_start_tells_the_starting_cli_why() {
    let sb = Sandbox::new();
    sb.write_team_file("name = \"nostart\"\n");
    let tp = sb.team("nostart");
    std::fs::create_dir_all(&tp.dir).unwrap();
    // A previous daemon's last words, and a state the new one cannot open: its database path
    // is a directory.
    std::fs::write(&tp.daemon_log, "PREVIOUS DAEMON: serving as usual\n").unwrap();
    std::fs::create_dir_all(&tp.db).unwrap();
    let out = sb.run(&["--team", "nostart", "daemon"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the daemon could not start"), "{err}");
    assert!(
        !err.contains("PREVIOUS DAEMON"),
        "the previous daemon's log, not the reason: {err}"
    );
}
