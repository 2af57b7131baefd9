//! Finishing the work from the boards (issue 28 item 4): in headless chromium the web board
//! shows each worktree teammate's diffstat, Merge lands one teammate's file on `main` and a
//! second, conflicting merge shows the conflict's message, Discard (confirmed) drops the
//! branch; `agent-team board` in a tmux pane shows the diffstat, `m` merges and the status
//! line says so.

use agent_team_e2e::web::*;
use agent_team_e2e::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Whether `branch` exists in `dir`'s repository.
fn has_branch(dir: &Path, branch: &str) -> bool {
    !git(dir, &["branch", "--list", branch]).is_empty()
}

/// A sandbox whose directory is a git repository on `main` with one commit, and the team file
/// of `team`: worktree teammates `a` and `b` that each write a different `a.txt` (so the
/// second merge conflicts), committed.
fn repo_with_team(team: &str) -> Sandbox {
    let sb = Sandbox::new();
    let d = sb.dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("README"), "base\n").unwrap();
    // The sandbox's own state and logs live in the directory: not part of anyone's work.
    std::fs::write(d.join(".gitignore"), "/home/\n/run/\n*.log\n*.tmux\n").unwrap();
    sb.write_team_file(&format!(
        "name = \"{team}\"\nbackend = \"process\"\nboard = false\n[defaults]\nprovider = \"exec\"\n\
         [roles.worker]\nisolation = \"worktree\"\n\
         [[teammates]]\nname = \"a\"\nrole = \"worker\"\n\
         [[teammates]]\nname = \"b\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"a writes\"\nrun = \"echo from-a > a.txt\"\nassign = \"a\"\n\
         [[tasks]]\ntitle = \"b writes\"\nrun = \"echo from-b > a.txt\"\nassign = \"b\"\n"
    ));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "base"]);
    sb
}

/// Both tasks done and neither teammate working any more (what `finish` waits for).
fn work_done(agents: &Value, tasks: &Value) -> bool {
    let done = tasks["tasks"]
        .as_array()
        .is_some_and(|t| t.len() == 2 && t.iter().all(|t| t["status"] == "completed"));
    let resting = agents["agents"].as_array().is_some_and(|a| {
        a.iter()
            .filter(|a| a["name"] == "a" || a["name"] == "b")
            .all(|a| !matches!(a["status"].as_str(), Some("starting" | "running")))
    });
    done && resting
}

#[test]
fn the_web_board_merges_a_teammates_work_and_shows_a_conflict() {
    let mut sb = repo_with_team("wf");
    let ws = sb.dir.path().to_path_buf();
    let srv = Server::start(&mut sb);
    let (status, body) = srv.post("/v1/teams/wf/up", json!({}));
    assert_eq!(status, 200, "{body}");
    wait_for("both teammates to finish their tasks", T, || {
        work_done(
            &srv.get("/v1/teams/wf/agents").1,
            &srv.get("/v1/teams/wf/tasks").1,
        )
    });
    // The routes the board uses: a's diff, and none for the leader.
    let (status, diff) = srv.get("/v1/teams/wf/agents/a/diff");
    assert_eq!(status, 200, "{diff}");
    assert_eq!(diff["files"][0]["path"], "a.txt", "{diff}");
    assert_eq!(srv.get("/v1/teams/wf/agents/leader/diff").0, 404);

    let b = Browser::start();
    b.open_board(&srv, "wf");
    wait_for("the diffstat of both teammates", T, || {
        let a = b.text("[data-work=a]");
        let bb = b.text("[data-work=b]");
        a.contains("1 file, +1 −0") && a.contains("agent-team/a") && bb.contains("1 file")
    });
    assert!(
        b.text("#work-body").lines().all(|l| !l.contains("leader")),
        "{}",
        b.text("#work-body")
    );
    assert!(!ws.join("a.txt").exists());

    b.click("[data-work=a] button[data-finish=merge]");
    wait_for("a's file on main", T, || {
        Command::new("git")
            .args(["show", "main:a.txt"])
            .current_dir(&ws)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "from-a")
    });
    wait_for("the board to say it merged", T, || {
        b.text("[data-work=a] .outcome")
            .contains("merged agent-team/a into main")
    });
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).unwrap().trim(),
        "from-a",
        "the workspace's checkout has it too"
    );
    assert!(!has_branch(&ws, "agent-team/a"), "a's branch is gone");
    // No Merge button for a any more: its work has landed.
    wait_for("a's buttons to go", T, || {
        b.find("[data-work=a] button[data-finish=merge]").is_none()
    });

    // b wrote the same file: its merge conflicts, nothing moves, the board says where.
    let main_before = git(&ws, &["rev-parse", "main"]);
    b.click("[data-work=b] button[data-finish=merge]");
    wait_for("the conflict's message", T, || {
        b.text("[data-work=b] .outcome")
            .contains("conflict: merging agent-team/b into main conflicts in a.txt")
    });
    assert_eq!(git(&ws, &["rev-parse", "main"]), main_before);
    assert!(has_branch(&ws, "agent-team/b"), "b's branch is kept");
    let (status, err) = srv.post("/v1/teams/wf/agents/b/finish", json!({"action": "merge"}));
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "conflict");
    assert_eq!(err["error"]["details"]["paths"], json!(["a.txt"]));

    // Discard asks first; once accepted, b's branch is gone.
    b.click("[data-work=b] button[data-finish=discard]");
    b.accept_confirm();
    wait_for("b's branch to go", T, || !has_branch(&ws, "agent-team/b"));
    wait_for("the board to say it discarded", T, || {
        b.text("[data-work=b] .outcome")
            .contains("discarded agent-team/b")
    });
    wait_for("the event log to show both", T, || {
        let log = b.text("#log");
        log.contains("FINISHED_WORK") && log.contains("conflict agent-team/b")
    });
    assert_eq!(srv.get("/v1/teams/wf/agents/b/diff").0, 404);
    sb.ok(&["--team", "wf", "down"]);
}

/// `tmux -f /dev/null -S SOCKET ARGS` on this test's own server.
fn tmux(sock: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("tmux")
        .arg("-f")
        .arg("/dev/null")
        .arg("-S")
        .arg(sock)
        .args(args)
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn the_terminal_board_shows_the_diffstat_and_merges_with_m() {
    if agent_team_pane::tmux::version().is_err() {
        eprintln!("tmux >= 3.2 not found: skipped");
        return;
    }
    let sb = repo_with_team("tf");
    let ws = sb.dir.path().to_path_buf();
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("both teammates to finish their tasks", T, || {
        let agents = json!({"agents": serde_json::to_value(sb.agents("tf")).unwrap()});
        let tasks = json!({"tasks": serde_json::to_value(sb.tasks("tf")).unwrap()});
        work_done(&agents, &tasks)
    });

    // The board at 80x24 in a pane of a tmux server of this test's own (its socket is in
    // the sandbox, whose clean-up kills it too).
    let sock = sb.path("boards.tmux");
    let line = format!(
        "env AGENT_TEAM_HOME={} AGENT_TEAM_RUNTIME_DIR={} {} --team tf board",
        sb.paths.home.display(),
        sb.paths.runtime.display(),
        bin("agent-team").display()
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "kb",
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            &ws.display().to_string(),
            &line,
        ],
    )
    .unwrap();
    let capture = || tmux(&sock, &["capture-pane", "-p", "-t", "kb"]).unwrap_or_default();
    let keys = |k: &str| tmux(&sock, &["send-keys", "-t", "kb", k]).unwrap();
    wait_for("the board with both teammates' diffstat", T, || {
        let s = capture();
        s.contains("WORK") && s.matches("+1 -0 1 file").count() == 2 && s.contains("q quit")
    });
    let screen = capture();
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");

    // The leader comes first: down to a, `m` merges its work.
    keys("Down");
    keys("m");
    wait_for("the status line to say merged", T, || {
        capture().contains("merged agent-team/a into main")
    });
    assert_eq!(git(&ws, &["show", "main:a.txt"]), "from-a");
    assert!(!has_branch(&ws, "agent-team/a"), "a's branch is gone");
    wait_for("a's diffstat to go", T, || {
        capture().matches("+1 -0 1 file").count() == 1
    });

    // b's merge conflicts: the status line names the file, nothing moves.
    let main_before = git(&ws, &["rev-parse", "main"]);
    keys("Down");
    keys("m");
    wait_for("the conflict in the status line", T, || {
        let s = capture();
        s.contains("conflict: merging agent-team/b into main") && s.contains("a.txt")
    });
    assert_eq!(git(&ws, &["rev-parse", "main"]), main_before);
    assert!(has_branch(&ws, "agent-team/b"));

    // `x` asks; `n` keeps the work, `x` then `y` discards it.
    keys("x");
    wait_for("the question", T, || capture().contains("y/N"));
    keys("n");
    wait_for("kept", T, || capture().contains("kept b's work"));
    assert!(has_branch(&ws, "agent-team/b"));
    // A stopped team's work is read from its workspace: still on the board.
    sb.ok(&["--team", "tf", "down"]);
    wait_for("the board to show the stored state", T, || {
        let s = capture();
        s.contains("not running") && s.matches("+1 -0 1 file").count() == 1
    });
    // Discarding it starts the daemon again, as any action does.
    keys("x");
    wait_for("the question again", T, || capture().contains("y/N"));
    keys("y");
    wait_for("the status line to say discarded", T, || {
        capture().contains("discarded agent-team/b")
    });
    assert!(!has_branch(&ws, "agent-team/b"), "b's branch is gone");

    keys("q");
    wait_for("the board to quit", T, || {
        tmux(&sock, &["list-sessions"]).is_err()
    });
    sb.ok(&["--team", "tf", "down"]);
}
