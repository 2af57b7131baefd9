//! Task commands cannot reach the team's control plane (issue 12, finding 1): an exec
//! teammate's command that tries to read the operator credential, to act as the operator
//! through the socket (approve its team's pending request, stop the team), or to write outside
//! its working dir fails, and the team goes on as if nothing happened. The Landlock parts are
//! skipped, with the reason printed, on a kernel without Landlock; the scrubbed environment is
//! checked everywhere.

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The Landlock ABI task commands run under, or why they are not sandboxed here (from
/// `agent-team doctor`).
fn landlock_abi(sb: &Sandbox) -> Result<u32, String> {
    match no_sandbox(sb) {
        Some(why) => Err(why),
        None => {
            let out = sb.ok(&["doctor"]);
            let abi = out
                .split("Landlock ABI ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok());
            abi.ok_or(out)
        }
    }
}

/// `None` when task commands are sandboxed here, else why not (from `agent-team doctor`).
fn no_sandbox(sb: &Sandbox) -> Option<String> {
    sb.doctor_check("sandbox").err()
}

/// Writes the team file into `ws/` (so the team's state and runtime dirs, in the sandbox's
/// directory, are outside the workspace) and starts the team on `backend`.
pub(crate) fn up_in_ws(sb: &Sandbox, backend: &str, text: &str) -> String {
    let ws = sb.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("agent-team.toml"), text).unwrap();
    let out = sb.run(&[
        "-f",
        "ws/agent-team.toml",
        "up",
        "--backend",
        backend,
        "--detach",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "up on {backend}: {err}");
    err
}

pub(crate) fn pending(sb: &Sandbox, team: &str) -> Vec<PermRequest> {
    agent_team_client::Client::operator(&sb.team(team))
        .unwrap()
        .all_perms(false)
        .unwrap()
}

/// Adds a task with command `run` for `agent` and returns its result once it completed.
pub(crate) fn run_task(sb: &Sandbox, team: &str, agent: &str, run: &str) -> String {
    run_task_ending(sb, team, agent, run, TaskStatus::Completed)
}

/// Adds a task with command `run` for `agent`, waits for it to end as `want` (completed or
/// failed), and returns its result.
pub(crate) fn run_task_ending(
    sb: &Sandbox,
    team: &str,
    agent: &str,
    run: &str,
    want: TaskStatus,
) -> String {
    // The id from the answer: the team file's own tasks may still be arriving.
    let out = sb.ok(&[
        "--team", team, "task", "add", "probe", "--run", run, "--assign", agent, "--json",
    ]);
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_u64()
        .unwrap();
    wait_for("the probe task to end", T, || {
        sb.tasks(team)
            .iter()
            .any(|t| t.id == id && matches!(t.status, TaskStatus::Completed | TaskStatus::Failed))
    });
    let t = sb.tasks(team).into_iter().find(|t| t.id == id).unwrap();
    assert_eq!(t.status, want, "{t:?}");
    t.result.unwrap_or_default()
}

pub(crate) const TEAM: &str = "guard";

pub(crate) fn team_file(extra: &str) -> String {
    format!(
        "name = \"{TEAM}\"\n{extra}\n[roles.worker]\npermissions = {{ bash = \"allow\", \"bash(*deploy*)\" = \"ask\" }}\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n[[teammates]]\nname = \"b2\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"deploy\"\ntitle = \"deploy\"\nrun = \"echo deployed\"\nassign = \"b1\"\n"
    )
}

/// The attack: each line prints `LEAK:…` only if it got through.
fn attack(sb: &Sandbox, outside: &Path, abi: u32, agent_pid: u32) -> String {
    let tp = sb.team(TEAM);
    let env = format!(
        "AGENT_TEAM_HOME={} AGENT_TEAM_RUNTIME_DIR={}",
        sb.paths.home.display(),
        sb.paths.runtime.display()
    );
    let at = bin("agent-team");
    [
        format!(
            "cat {} && echo LEAK:credential",
            tp.operator_secret.display()
        ),
        // Hidden: not there at all (an empty dir in a namespace; refused under Landlock).
        format!(
            "ls -A {} | grep -q . && echo LEAK:runtime-dir",
            sb.paths.runtime.display()
        ),
        format!("cat {} >/dev/null && echo LEAK:state", tp.db.display()),
        "tr '\\0' '\\n' < /proc/$PPID/environ | grep AGENT_TEAM_SECRET= && echo LEAK:parent-env"
            .into(),
        format!(
            "{env} {} --team {TEAM} approve 1 && echo LEAK:approved",
            at.display()
        ),
        // `down` says it may not act as the operator (it once said "not running"); whether it
        // stopped anything is checked from outside too.
        format!(
            "{env} {} --team {TEAM} down 2>&1 | grep -q 'operator credential' && echo OK:down-refused",
            at.display()
        ),
        // A write command would start a daemon for a team that is not running: a stray team
        // in the default location (issue 25). It says where it is instead.
        format!(
            "{} --team stray task add x 2>&1 | grep -q \"inside team {TEAM}'s sandbox\" && echo OK:no-stray",
            at.display()
        ),
        format!(
            "echo pwned > {}/victim.txt && echo LEAK:overwrote",
            outside.display()
        ),
        format!("touch {}/new.txt && echo LEAK:created", outside.display()),
        // From Landlock ABI 6 on, not even a signal reaches the agent or the daemon.
        // Not its own parent (in a namespace that is the sandbox's own init): the agent's real
        // process, or the daemon's for an agent inside it.
        if abi >= 6 {
            format!("kill -TERM {agent_pid} && echo LEAK:signalled")
        } else {
            String::new()
        },
        "echo inside > made-here.txt && echo OK:wrote-workspace".into(),
        // (No write to a file named at run time: the permission check would ask for it.)
        "echo OK:temp=$(mktemp)".into(),
        "echo ENV: $(env | grep '^AGENT_TEAM_' | sort)".into(),
        "echo FINISHED".into(),
    ]
    .join("\n")
}

fn env_line(result: &str) -> String {
    result
        .lines()
        .find(|l| l.starts_with("ENV:"))
        .unwrap_or_default()
        .to_string()
}

/// Only the agent's identity (and an opaque marker inside the daemon) is in the environment.
fn check_env(backend: &str, result: &str) {
    let env = env_line(result);
    let vars: Vec<&str> = env.split_whitespace().skip(1).collect();
    for v in &vars {
        let ok = *v == "AGENT_TEAM_NAME=b2"
            || *v == format!("AGENT_TEAM_TEAM={TEAM}")
            || (v.starts_with("AGENT_TEAM_COMMAND_OF=") && !v.contains('/'));
        assert!(ok, "{backend}: a task command sees {v}: {result}");
    }
    assert!(vars.contains(&"AGENT_TEAM_NAME=b2"), "{backend}: {result}");
}

#[test]
fn a_task_command_cannot_read_the_credential_act_as_operator_or_write_outside_its_workspace() {
    for backend in backends() {
        attack_on(backend);
    }
}

/// A directory outside the workspace and outside every temp dir (which task commands may write):
/// the build's own temp dir, else one in the home dir (removed afterwards).
fn outside_dir() -> tempfile::TempDir {
    let temp_roots: Vec<std::path::PathBuf> = [
        Some(std::env::temp_dir()),
        Some("/tmp".into()),
        Some("/var/tmp".into()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.canonicalize().ok())
    .collect();
    let candidates = [
        Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))),
        std::env::var_os("HOME").map(std::path::PathBuf::from),
    ];
    for c in candidates.into_iter().flatten() {
        let Ok(real) = c.canonicalize() else { continue };
        if temp_roots.iter().any(|t| real.starts_with(t)) {
            continue;
        }
        if let Ok(d) = tempfile::Builder::new()
            .prefix(".at-outside-")
            .tempdir_in(&real)
        {
            return d;
        }
    }
    panic!(
        "no directory outside the temp dirs to check writes against (build dir and HOME are in temp)"
    );
}

fn attack_on(backend: &str) {
    let sb = Sandbox::new();
    let outside = outside_dir();
    std::fs::write(outside.path().join("victim.txt"), "original").unwrap();
    let abi = landlock_abi(&sb);
    let why_not = abi.clone().err();
    let err = up_in_ws(&sb, backend, &team_file(""));
    // Without Landlock the team says so when it starts; with it, nothing is said.
    assert_eq!(
        err.contains("agents' commands run without the sandbox"),
        why_not.is_some(),
        "{err}"
    );
    wait_for("b1's deploy request", T, || !pending(&sb, TEAM).is_empty());
    let req = pending(&sb, TEAM).remove(0);
    assert_eq!((req.id, req.agent.as_str()), (1, "b1"));

    let Some(result) = (match &why_not {
        None => Some(run_task(
            &sb,
            TEAM,
            "b2",
            &attack(
                &sb,
                outside.path(),
                abi.clone().unwrap_or(0),
                sb.agent(TEAM, "b2").pid.unwrap_or(0),
            ),
        )),
        Some(why) => {
            eprintln!("{backend}: the Landlock checks are skipped: {why}");
            check_env(
                backend,
                &run_task(
                    &sb,
                    TEAM,
                    "b2",
                    "echo ENV: $(env | grep '^AGENT_TEAM_' | sort)",
                ),
            );
            None
        }
    }) else {
        sb.ok(&["--team", TEAM, "down"]);
        return;
    };
    assert!(result.contains("FINISHED"), "{backend}: {result}");
    assert!(!result.contains("LEAK:"), "{backend}: {result}");
    assert!(
        result.contains("OK:no-stray"),
        "{backend}: a task command's `task add` did not say it runs in the sandbox: {result}"
    );
    assert!(
        !sb.paths.home.join("teams/stray").exists(),
        "{backend}: a stray team"
    );
    assert!(
        result.contains("OK:down-refused"),
        "{backend}: `down` from a task command did not say it may not act as the operator: {result}"
    );
    assert!(
        result.contains("OK:wrote-workspace") && result.contains("OK:temp=/"),
        "{backend}: the command could not work where it may: {result}"
    );
    check_env(backend, &result);
    let made = result
        .split("OK:temp=")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_default();
    // Temp is the command's own: what it made there is not in the operator's.
    assert!(
        !made.is_empty() && !Path::new(made).exists(),
        "{backend}: mktemp's file is in the operator's temp: {result}"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim.txt")).unwrap(),
        "original"
    );
    assert!(!outside.path().join("new.txt").exists());
    assert!(sb.path("ws/made-here.txt").exists());

    // The team is untouched: the daemon answers, the request still waits, b1 waits on it.
    assert!(
        agent_team_paths::lock_held(&sb.team(TEAM).lock),
        "{backend}: the daemon is gone"
    );
    let still = pending(&sb, TEAM);
    assert_eq!(still.len(), 1, "{backend}: {still:?}");
    assert_eq!(still[0].status, PermStatus::Pending);
    assert_eq!(
        sb.agent(TEAM, "b1").status,
        AgentStatus::Waiting,
        "{backend}"
    );
    // The operator's own approval still works, and the waiting task then runs.
    sb.ok(&["--team", TEAM, "approve", "1"]);
    wait_for("the deploy task to complete", T, || {
        sb.task_is(TEAM, 1, TaskStatus::Completed)
    });
    sb.ok(&["--team", TEAM, "down"]);
}

#[test]
fn sandbox_off_in_the_team_file_lets_task_commands_read_the_runtime_dir() {
    let sb = Sandbox::new();
    if let Some(why) = no_sandbox(&sb) {
        eprintln!("skipped: {why}");
        return;
    }
    let err = up_in_ws(&sb, "process", &team_file("sandbox = \"off\""));
    assert!(!err.contains("warning"), "{err}");
    let result = run_task(
        &sb,
        TEAM,
        "b2",
        &format!(
            "ls {} >/dev/null && echo READ; echo ENV: $(env | grep '^AGENT_TEAM_' | sort)",
            sb.paths.runtime.display()
        ),
    );
    assert!(result.contains("READ"), "{result}");
    // The environment is scrubbed all the same.
    check_env("process", &result);
    sb.ok(&["--team", TEAM, "down"]);
}

/// Without a namespace (bubblewrap turned off with `AGENT_TEAM_BWRAP=none`), Landlock alone
/// lets a command `connect()` to the team's tmux server before ABI 9; the fallback's seccomp
/// filter refuses to make the socket, so a task command cannot type into the leader's pane.
#[test]
fn the_fallback_keeps_task_commands_off_the_teams_tmux_server() {
    let mut sb = Sandbox::new();
    if agent_team_pane::tmux::version().is_err() {
        eprintln!("skipped: tmux >= 3.2 not found");
        return;
    }
    sb.env.push(("AGENT_TEAM_BWRAP".into(), "none".into()));
    if let Some(why) = no_sandbox(&sb) {
        eprintln!("skipped: {why}");
        return;
    }
    up_in_ws(&sb, "tmux", &team_file(""));
    let sock = sb.tmux_socket(TEAM);
    assert!(
        sb.tmux(&sock, &["ls"]).is_ok(),
        "the team's tmux server runs"
    );
    let result = run_task(
        &sb,
        TEAM,
        "b2",
        &format!(
            "tmux -S {} list-panes -a >/dev/null 2>&1 && echo LEAK:tmux; echo FINISHED",
            sock.display()
        ),
    );
    assert!(
        result.contains("FINISHED") && !result.contains("LEAK:"),
        "{result}"
    );
    sb.ok(&["--team", TEAM, "down"]);
}

#[test]
fn agent_team_sandbox_runs_a_command_where_a_roles_agents_run_theirs() {
    // For users to try their tools, and for attacks: the same boundary as an agent's command.
    let sb = Sandbox::new();
    sb.write_team_file("name = \"try\"\n");
    // A running team's control plane: its operator credential.
    sb.ok(&["up", "--backend", "process", "--detach"]);
    let credential = sb.paths.runtime.join("try.operator");
    assert!(credential.exists());
    let view: serde_json::Value = serde_json::from_str(&sb.ok(&["sandbox", "--json"])).unwrap();
    let runtime = std::fs::canonicalize(&sb.paths.runtime).unwrap();
    assert!(
        view["hidden"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&runtime.display().to_string())),
        "{view}"
    );
    let out = sb
        .cmd("agent-team")
        .args(["sandbox", "--", "sh", "-c"])
        .arg(format!(
            "cat {} && echo READ; echo made > made.txt; exit 7",
            credential.display()
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's exit code is ours"
    );
    assert!(!text.contains("READ"), "{text}");
    assert_eq!(
        std::fs::read_to_string(sb.path("made.txt")).unwrap(),
        "made\n",
        "the workspace is writable"
    );
    // A role that does not exist is a clear error.
    let bad = sb.run(&["sandbox", "--role", "nope", "--", "true"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid roles"));
    sb.ok(&["--team", "try", "down"]);
}
