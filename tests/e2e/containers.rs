//! Teammates in containers (issue 66): one line of the team file puts a role in a podman
//! container with caps; its runaway tasks stop at the caps and say so, the rest of the team
//! does not notice, nothing of the control plane is inside, and `kill`, `restart`, `down` (and
//! a dead daemon's `down`) leave no container. The image is made offline by `mmdebstrap`
//! (`agent_team_e2e::container`).

use agent_team_e2e::container::{Cleanup, containers_of, image};
use agent_team_e2e::*;
use agent_team_protocol::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// The team file of a team with a `boxed` role in `image` (memory 64M, pids 64) and a `free`
/// one, both exec teammates.
fn team_file(team: &str, image: &str, rest: &str) -> String {
    format!(
        r#"name = "{team}"

[roles.boxed]
provider = "exec"
container = {{ image = "{image}", memory = "64M", pids = 64 }}

[roles.free]
provider = "exec"

{rest}"#
    )
}

fn task<'a>(tasks: &'a [Task], title: &str) -> &'a Task {
    tasks.iter().find(|t| t.title == title).unwrap()
}

#[test]
fn a_teammate_in_a_container_works_and_its_runaway_tasks_stop_at_its_caps_on_each_backend() {
    let Some(image) = image() else { return };
    for backend in backends().into_iter().filter(|b| *b != "in-process") {
        caps_on(&image, backend);
    }
}

fn caps_on(image: &str, backend: &str) {
    let sb = Sandbox::new();
    let team = "box";
    let _cleanup = Cleanup(sb.team(team).socket);
    // Each boxed task in turn (a teammate claims its tasks lowest id first); the fork bomb
    // last, as its sleeping children outlive it for a second.
    let rest = r#"[[teammates]]
name = "b1"
role = "boxed"

[[teammates]]
name = "f1"
role = "free"

[[tasks]]
title = "inside"
assign = "b1"
run = "cat /proc/1/cgroup > inside.txt; grep CapEff /proc/self/status >> inside.txt; ls /sys/class/net >> inside.txt; cat /run/agent-team-net/proxy/secret >> inside.txt 2>&1; ls /run/agent-team-net/proxy >> inside.txt 2>&1; true"

[[tasks]]
title = "hog"
assign = "b1"
run = "head -c 400000000 /dev/zero | tail -c 300000000 > /dev/null"

[[tasks]]
title = "still"
assign = "b1"
run = "echo still > still.txt"

[[tasks]]
title = "forks"
assign = "b1"
run = "for i in $(seq 1 200); do sleep 1 & done; wait"

[[tasks]]
title = "free"
assign = "f1"
run = "echo free > free.txt"
"#;
    sb.write_team_file(&team_file(team, image, rest));
    sb.ok(&["up", "--backend", backend, "--detach"]);
    wait_for_or(
        "every task to end",
        T,
        || {
            let tasks = sb.tasks(team);
            tasks.len() == 5 && tasks.iter().all(|t| t.status.is_terminal())
        },
        || format!("{backend}: {:?}", sb.tasks(team)),
    );
    let tasks = sb.tasks(team);
    let result = |title: &str| task(&tasks, title).result.clone().unwrap_or_default();

    // Inside: the container's own cgroup, no capability, no network but loopback, and the
    // agent's own dir (its secret, the daemon's socket, its proxy) out of the command's reach.
    assert_eq!(task(&tasks, "inside").status, TaskStatus::Completed);
    let inside = std::fs::read_to_string(sb.path("inside.txt")).unwrap();
    assert!(inside.contains("libpod"), "{backend}: {inside}");
    assert!(
        inside.contains("CapEff:\t0000000000000000"),
        "{backend}: {inside}"
    );
    let nets: Vec<&str> = inside
        .lines()
        .filter(|l| !l.contains(':') && !l.contains('/'))
        .collect();
    assert_eq!(nets, ["lo"], "{backend}: {inside}");
    assert!(
        inside.contains("secret: Permission denied"),
        "{backend}: {inside}"
    );
    assert!(!inside.contains("daemon.sock"), "{backend}: {inside}");

    // The caps stop the runaway tasks and say which; the teammate goes on.
    assert_eq!(task(&tasks, "hog").status, TaskStatus::Failed);
    assert!(
        result("hog").contains("out of memory (limit 64M)"),
        "{backend}: {}",
        result("hog")
    );
    assert_eq!(task(&tasks, "still").status, TaskStatus::Completed);
    assert_eq!(
        std::fs::read_to_string(sb.path("still.txt"))
            .unwrap()
            .trim(),
        "still"
    );
    assert_eq!(task(&tasks, "forks").status, TaskStatus::Failed);
    assert!(
        result("forks").contains("process limit reached (pids 64)"),
        "{backend}: {}",
        result("forks")
    );
    // The rest of the team did not notice.
    assert_eq!(task(&tasks, "free").status, TaskStatus::Completed);
    let b1 = sb.agent(team, "b1");
    assert_eq!(b1.restarts, 0, "{backend}: {b1:?}");
    let c = b1.container.as_deref().unwrap();
    assert_eq!(
        (c.image.as_str(), c.memory.as_deref(), c.pids),
        (image, Some("64M"), Some(64))
    );
    assert!(sb.agent(team, "f1").container.is_none());
    let ps = sb.ok(&["--team", team, "ps"]);
    assert!(
        ps.contains("CONTAINER") && ps.contains("memory 64M, pids 64"),
        "{ps}"
    );

    sb.ok(&["--team", team, "down"]);
    assert_eq!(containers_of(&sb.team(team).socket), Vec::<String>::new());
}

#[test]
fn kill_restart_down_and_a_dead_daemons_down_leave_no_container() {
    let Some(image) = image() else { return };
    let sb = Sandbox::new();
    let team = "boxk";
    let socket = sb.team(team).socket;
    let _cleanup = Cleanup(socket.clone());
    let marker = sb.path("started");
    let rest = format!(
        r#"[[teammates]]
name = "b1"
role = "boxed"

[[tasks]]
title = "slow"
assign = "b1"
run = "echo run >> {m}; sleep 600"
"#,
        m = marker.display()
    );
    sb.write_team_file(&team_file(team, &image, &rest));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let running = || containers_of(&socket);
    wait_for_or(
        "the task to start in its container",
        T,
        || marker.exists(),
        || format!("{:?} {:?}", sb.agent(team, "b1"), running()),
    );
    assert_eq!(running().len(), 1);

    // kill: the container is gone, not only the runtime's client.
    sb.ok(&["--team", team, "kill", "b1"]);
    wait_for("kill to remove the container", T, || running().is_empty());
    // restart: a new one.
    sb.ok(&["--team", team, "restart", "b1"]);
    wait_for("restart to make a new container", T, || {
        running().len() == 1 && sb.agent(team, "b1").connected
    });

    // The operator spawns one more from any image, with caps of its own.
    sb.ok(&[
        "--team", team, "spawn", "free", "--name", "s1", "--image", &image, "--memory", "32M",
    ]);
    let s1 = sb.agent(team, "s1");
    let c = s1.container.as_deref().unwrap();
    assert_eq!(
        (c.image.as_str(), c.memory.as_deref()),
        (image.as_str(), Some("32M"))
    );
    wait_for("two containers", T, || running().len() == 2);

    // down: none.
    sb.ok(&["--team", team, "down"]);
    assert_eq!(running(), Vec::<String>::new());

    // A daemon killed with its container running: `down` still removes it.
    sb.ok(&["up", "--backend", "process", "--detach"]);
    sb.ok(&["--team", team, "restart", "b1"]);
    wait_for("the container again", T, || !running().is_empty());
    let pid = sb.operator(team).welcome().daemon_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the daemon to die", T, || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    sb.ok(&["--team", team, "down"]);
    assert_eq!(running(), Vec::<String>::new());
}

#[test]
fn only_the_operator_names_an_image_and_in_process_teams_refuse_containers() {
    let Some(image) = image() else { return };
    let sb = Sandbox::new();
    let team = "boxr";
    let _cleanup = Cleanup(sb.team(team).socket);
    sb.write_team_file(&team_file(team, &image, ""));
    sb.ok(&["up", "--backend", "in-process", "--detach"]);
    let out = sb.run(&["--team", team, "spawn", "boxed", "--name", "b1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a process backend"), "{err}");
    for bad in ["--privileged", "a b"] {
        let out = sb.run(&["--team", team, "spawn", "free", &format!("--image={bad}")]);
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not an image name"), "{err}");
    }
    sb.ok(&["--team", team, "down"]);
}

#[test]
fn a_cli_teammate_in_a_container_works_through_mcp_and_leaves_nothing() {
    let Some(image) = image() else { return };
    let sb = Sandbox::new();
    let team = "boxcli";
    let _cleanup = Cleanup(sb.team(team).socket);
    // The workspace beside the state dir, not around it: Landlock (the sandbox as root,
    // below) cannot let a process make entries in a dir that holds one it hides.
    let ws = sb.path("ws");
    std::fs::create_dir(&ws).unwrap();
    let out = ws.join("out");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/fixtures");
    // As root bubblewrap cannot make its namespace inside the container (it refuses a root
    // without capabilities): the container is then the CLI's boundary and the team must say
    // it accepts that (`sandbox = "weak"`). As any other user it runs in the namespace.
    let weak = if nix::unistd::geteuid().is_root() {
        "sandbox = \"weak\"\n"
    } else {
        ""
    };
    let file = ws.join("agent-team.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "{team}"
board = false
{weak}
[roles.fake]
description = "a scripted MCP client standing in for an agent CLI"
provider = "cli"
model = "none"
command = ["node", "{cli}", "{out}"]
restart = "never"
container = {{ image = "{image}", memory = "256M" }}

[roles.fake.sandbox]
read = ["{dir}"]

[[teammates]]
name = "cc"
role = "fake"

[[tasks]]
key = "one"
title = "Write work.txt"
"#,
            cli = fixture.join("fake-cli.js").display(),
            dir = fixture.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    sb.ok(&["-f", &file, "up", "--backend", "process", "--detach"]);
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    wait_for_or(
        "the CLI to finish its script",
        T,
        || out.join("ready").exists() || out.join("error.txt").exists(),
        || std::fs::read_to_string(sb.team(team).logs.join("cc.log")).unwrap_or_default(),
    );
    assert_eq!(read("error.txt"), "", "the fake CLI failed");
    let task = sb.tasks(team).into_iter().find(|t| t.id == 1).unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!(task.owner.as_deref(), Some("cc"));
    assert_eq!(read("work.txt"), "written by the CLI\n");
    // It ran in its container, which is still there while it waits for a message.
    assert!(sb.agent(team, "cc").container.is_some());
    assert_eq!(containers_of(&sb.team(team).socket).len(), 1);
    sb.ok(&["--team", team, "send", "cc", "hello cli"]);
    wait_for("the CLI to get its message", T, || {
        read("inbox.txt").contains("hello cli")
    });
    sb.ok(&["--team", team, "down"]);
    assert_eq!(containers_of(&sb.team(team).socket), Vec::<String>::new());
}

#[test]
fn a_teammate_in_a_container_on_an_ssh_host_works_there_and_down_leaves_nothing() {
    use agent_team_e2e::sshd::{HOST, Sshd};
    let Some(image) = image() else { return };
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let team = "rbox";
    let socket = sb.team(team).socket;
    let _cleanup = Cleanup(socket.clone());
    sb.write_team_file(&format!(
        r#"name = "{team}"
board = false
{ssh}
[roles.boxed]
provider = "exec"
host = "{HOST}"
container = {{ image = "{image}", memory = "64M", pids = 64 }}

[[teammates]]
name = "far"
role = "boxed"

[[tasks]]
title = "inside"
assign = "far"
run = "cat /proc/1/cgroup > inside.txt; ls /sys/class/net >> inside.txt; grep CapEff /proc/self/status >> inside.txt"

[[tasks]]
title = "hog"
assign = "far"
run = "head -c 400000000 /dev/zero | tail -c 300000000 > /dev/null"

[[tasks]]
title = "held"
assign = "far"
run = "touch held; sleep 600"
"#,
        ssh = sshd.ssh_table(Some(&bin("agent-team-worker"))),
    ));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let held = sshd.remote_dir().join(format!("work/{team}/far/held"));
    wait_for_or(
        "two tasks to end on the host and the third to start",
        T,
        || {
            let tasks = sb.tasks(team);
            tasks.len() == 3 && tasks[..2].iter().all(|t| t.status.is_terminal()) && held.exists()
        },
        || format!("{:?}", sb.tasks(team)),
    );
    // kill removes its container there; restart makes a new one.
    assert_eq!(containers_of(&socket).len(), 1);
    sb.ok(&["--team", team, "kill", "far"]);
    wait_for("kill to remove the container on the host", T, || {
        containers_of(&socket).is_empty()
    });
    sb.ok(&["--team", team, "restart", "far"]);
    wait_for("restart to make a new one there", T, || {
        containers_of(&socket).len() == 1 && sb.agent(team, "far").connected
    });
    let tasks = sb.tasks(team);
    assert_eq!(task(&tasks, "inside").status, TaskStatus::Completed);
    let inside = std::fs::read_to_string(
        sshd.remote_dir()
            .join(format!("work/{team}/far/inside.txt")),
    )
    .unwrap();
    assert!(inside.contains("libpod"), "{inside}");
    assert!(inside.contains("CapEff:\t0000000000000000"), "{inside}");
    assert!(
        inside.lines().any(|l| l == "lo") && !inside.contains("eth"),
        "{inside}"
    );
    let hog = task(&tasks, "hog");
    assert_eq!(hog.status, TaskStatus::Failed);
    assert!(
        hog.result
            .as_deref()
            .unwrap_or_default()
            .contains("out of memory (limit 64M)"),
        "{hog:?}"
    );
    let far = sb.agent(team, "far");
    assert_eq!(far.host.as_deref(), Some(HOST));
    assert!(far.container.is_some());
    sb.ok(&["--team", team, "down"]);
    assert_eq!(containers_of(&socket), Vec::<String>::new());
    wait_for("nothing of the team left on the host", T, || {
        sshd.remote_processes().is_empty()
    });
}

#[test]
fn a_teammate_in_a_container_reconnects_after_its_daemon_is_killed_and_does_its_task_once() {
    let Some(image) = image() else { return };
    let sb = Sandbox::new();
    let team = "boxheal";
    let socket = sb.team(team).socket;
    let _cleanup = Cleanup(socket.clone());
    let (marker, release, done) = (sb.path("started"), sb.path("release"), sb.path("done"));
    let rest = format!(
        r#"[[teammates]]
name = "b1"
role = "boxed"

[[tasks]]
title = "held"
assign = "b1"
run = "echo run >> {m}; while [ ! -e {r} ]; do sleep 0.05; done; echo done >> {d}"
"#,
        m = marker.display(),
        r = release.display(),
        d = done.display()
    );
    sb.write_team_file(&team_file(team, &image, &rest));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("the task to start in the container", T, || marker.exists());
    let daemon = || {
        agent_team_client::Client::operator(&sb.team(team))
            .ok()
            .map(|c| c.welcome().daemon_pid)
    };
    let pid = daemon().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the daemon to be gone", T, || daemon() != Some(pid));
    // `ps` brings it back (or its guardian did already); the container ran on meanwhile and
    // reaches the new daemon through its relinked socket.
    let _ = sb.run(&["--team", team, "ps"]);
    wait_for_or(
        "the teammate in its container to reconnect",
        T,
        || daemon().is_some_and(|p| p != pid) && sb.agent(team, "b1").connected,
        || std::fs::read_to_string(sb.team(team).logs.join("b1.log")).unwrap_or_default(),
    );
    assert_eq!(containers_of(&socket).len(), 1);
    std::fs::write(&release, "").unwrap();
    wait_for("the task to complete", T, || {
        sb.task_is(team, 1, TaskStatus::Completed)
    });
    let t = &sb.tasks(team)[0];
    assert_eq!((t.owner.as_deref(), t.attempts), (Some("b1"), 1));
    assert_eq!(std::fs::read_to_string(&done).unwrap().lines().count(), 1);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    sb.ok(&["--team", team, "down"]);
    assert_eq!(containers_of(&socket), Vec::<String>::new());
}
