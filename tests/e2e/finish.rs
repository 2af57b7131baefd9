//! Finishing the work (issue 28): worktree teammates' changes land on the base branch with
//! `agent-team finish` (merge, pull request, discard), at the end of `run` (`finish = "merge"`)
//! and through the leader's `finish_teammate_work`; a conflict moves nothing.

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A sandbox whose directory is a git repository on `main` with one commit.
fn repo() -> Sandbox {
    let sb = Sandbox::new();
    let d = sb.dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("README"), "base\n").unwrap();
    std::fs::write(d.join("shared.txt"), "one\n").unwrap();
    // The sandbox's own state lives in the directory: not part of anyone's work.
    std::fs::write(d.join(".gitignore"), "/home/\n/run/\n/bin/\n/calls\n").unwrap();
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "base"]);
    sb
}

/// A team of exec teammates in worktrees, one task each (`(agent, command)`), and `extra`
/// team-file lines.
fn team(name: &str, work: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "name = \"{name}\"\nboard = false\n{extra}\n[roles.worker]\nisolation = \"worktree\"\n"
    );
    for (a, _) in work {
        s.push_str(&format!(
            "[[teammates]]\nname = \"{a}\"\nrole = \"worker\"\n"
        ));
    }
    for (a, cmd) in work {
        s.push_str(&format!(
            "[[tasks]]\ntitle = \"work of {a}\"\nrun = \"{cmd}\"\nassign = \"{a}\"\n"
        ));
    }
    s
}

/// Starts `text`'s team detached and waits until every task is completed.
fn up_and_work(sb: &Sandbox, name: &str, text: &str, tasks: usize) {
    sb.write_team_file(text);
    git(sb.dir.path(), &["add", "agent-team.toml"]);
    git(sb.dir.path(), &["commit", "-qm", "team"]);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("the tasks to complete", T, || {
        sb.tasks(name)
            .iter()
            .filter(|t| t.status == TaskStatus::Completed)
            .count()
            == tasks
    });
    // Done working: idle, or stopped with the run's end (finish refuses a teammate that may
    // still change its work, and says so).
    wait_for("the teammates to be idle or down", T, || {
        sb.tasks(name).iter().all(|t| {
            t.owner.as_deref().is_none_or(|o| {
                let s = sb.agent(name, o).status;
                s == AgentStatus::Idle || s.is_down()
            })
        })
    });
}

fn events(sb: &Sandbox) -> Vec<Envelope> {
    sb.ok(&["events"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn two_teammates_work_lands_on_main_with_finish_merge_and_their_worktrees_go() {
    let sb = repo();
    let d = sb.dir.path();
    up_and_work(
        &sb,
        "fm",
        &team(
            "fm",
            &[("a", "echo from-a > a.txt"), ("b", "echo from-b > b.txt")],
            "",
        ),
        2,
    );
    // A completed task's work becomes a commit of its own, as the teammate.
    wait_for("the tasks' commits", T, || {
        ["a", "b"].iter().all(|a| {
            git(d, &["log", "--format=%an", &format!("agent-team/{a}")])
                .contains(&format!("{a}@fm"))
        })
    });
    // What finish would land, as JSON for scripts.
    let diff: WorkDiff = serde_json::from_str(&sb.ok(&["diff", "a", "--json"])).unwrap();
    assert_eq!(diff.files.len(), 1, "{diff:?}");
    assert_eq!(diff.files[0].path, "a.txt");
    assert_eq!((diff.commits, diff.uncommitted), (1, false), "{diff:?}");
    assert!(
        diff.patch
            .as_deref()
            .unwrap_or_default()
            .contains("+from-a")
    );
    assert_eq!(diff.base.as_deref(), Some("main"));
    // Without an action and without a terminal: exit 2 naming the actions; nothing moved.
    let ask = sb.run(&["finish", "a"]);
    assert_eq!(ask.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ask.stderr).contains("--merge, --pr or --discard"));
    let out: FinishOutcome =
        serde_json::from_str(&sb.ok(&["finish", "a", "--merge", "--json"])).unwrap();
    assert_eq!(out.into.as_deref(), Some("main"));
    assert!(out.removed && out.fast_forward, "{out:?}");
    // The rest at once: every worktree teammate with its tasks done (b).
    let all: serde_json::Value =
        serde_json::from_str(&sb.ok(&["finish", "--all", "--merge", "--json"])).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["agent"], "b");
    assert_eq!(all[0]["outcome"]["into"], "main");
    assert_eq!(
        std::fs::read_to_string(d.join("a.txt")).unwrap(),
        "from-a\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("b.txt")).unwrap(),
        "from-b\n"
    );
    // One commit per finished task, authored as the teammate, titled with the task.
    let log = git(d, &["log", "--format=%an|%s|%b", "main"]);
    for a in ["a", "b"] {
        let commits: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("{a}@fm|")))
            .collect();
        assert_eq!(commits.len(), 1, "{log}");
        assert!(commits[0].contains(&format!("work of {a}")), "{log}");
    }
    assert_eq!(git(d, &["branch", "--list", "agent-team/*"]), "");
    assert!(!d.join(".agent-team/worktrees/a").exists());
    assert_eq!(git(d, &["status", "--porcelain"]), "");
    let merged: Vec<Envelope> = events(&sb)
        .into_iter()
        .filter(|e| matches!(&e.event, Event::FinishedWork { outcome, .. } if outcome == "merged"))
        .collect();
    assert_eq!(merged.len(), 2, "{merged:?}");
    sb.ok(&["down"]);
}

#[test]
fn a_conflicting_merge_exits_1_naming_the_file_and_changes_nothing() {
    let sb = repo();
    let d = sb.dir.path();
    up_and_work(
        &sb,
        "fc",
        &team(
            "fc",
            &[
                ("a", "echo from-a > shared.txt"),
                ("b", "echo from-b > shared.txt"),
            ],
            "",
        ),
        2,
    );
    sb.ok(&["finish", "a", "--merge"]);
    let main_before = git(d, &["rev-parse", "main"]);
    let out = sb.run(&["finish", "b", "--merge"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("conflict") && err.contains("shared.txt"),
        "{err}"
    );
    assert_eq!(git(d, &["rev-parse", "main"]), main_before);
    assert_eq!(
        std::fs::read_to_string(d.join("shared.txt")).unwrap(),
        "from-a\n"
    );
    assert_eq!(git(d, &["status", "--porcelain"]), "");
    // b's branch is kept, with its work committed.
    assert_eq!(git(d, &["show", "agent-team/b:shared.txt"]), "from-b");
    assert!(events(&sb).iter().any(|e| matches!(
        &e.event,
        Event::FinishedWork { outcome, paths, .. } if outcome == "conflict" && paths == &["shared.txt"]
    )));
    sb.ok(&["down"]);
}

#[test]
fn a_pull_request_pushes_to_the_tracked_remote_and_runs_gh_and_discard_drops_the_rest() {
    let mut sb = repo();
    let d = sb.dir.path().to_path_buf();
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare"]);
    git(
        &d,
        &[
            "remote",
            "add",
            "origin",
            &bare.path().display().to_string(),
        ],
    );
    git(&d, &["push", "-q", "-u", "origin", "main"]);
    // A fake `gh` that records its arguments and prints a URL, first on the daemon's PATH.
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = d.join("calls");
    let gh = bin.join("gh");
    std::fs::write(
        &gh,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}\necho https://example.test/pr/7\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    sb.env.push(("PATH".into(), path));
    up_and_work(
        &sb,
        "fp",
        &team(
            "fp",
            &[("a", "echo from-a > a.txt"), ("b", "echo from-b > b.txt")],
            "",
        ),
        2,
    );
    let out: FinishOutcome =
        serde_json::from_str(&sb.ok(&["finish", "a", "--pr", "--json"])).unwrap();
    assert_eq!(out.pushed_to.as_deref(), Some("origin"));
    assert_eq!(out.pr_url.as_deref(), Some("https://example.test/pr/7"));
    assert_eq!(git(bare.path(), &["show", "agent-team/a:a.txt"]), "from-a");
    let args = std::fs::read_to_string(&calls).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        &args[..6],
        ["pr", "create", "--base", "main", "--head", "agent-team/a"]
    );
    assert!(args.contains(&"a@fp: work of a"), "{args:?}");
    // Discard: asked for --yes without a terminal; then gone, nothing on main.
    let no = sb.run(&["finish", "b", "--discard"]);
    assert_eq!(no.status.code(), Some(2));
    sb.ok(&["finish", "b", "--discard", "--yes"]);
    assert_eq!(git(&d, &["branch", "--list", "agent-team/b"]), "");
    assert!(!d.join(".agent-team/worktrees/b").exists() && !d.join("b.txt").exists());
    sb.ok(&["down"]);
}

#[test]
fn a_teammate_still_working_is_refused_and_run_with_finish_merge_lands_the_work() {
    let sb = repo();
    let d = sb.dir.path();
    sb.write_team_file(&team("fr", &[("a", "echo from-a > a.txt; sleep 120")], ""));
    sb.ok(&["up", "--backend", "process", "--detach"]);
    wait_for("a's task to start", T, || {
        d.join(".agent-team/worktrees/a/a.txt").exists()
    });
    let out = sb.run(&["finish", "a", "--merge"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("working on a task") && err.contains("kill"),
        "{err}"
    );
    assert!(!d.join("a.txt").exists());
    sb.ok(&["down"]);

    // `run` with finish = "merge" lands each teammate's work at its end.
    let sb = repo();
    let d = sb.dir.path();
    sb.write_team_file(&team(
        "fr2",
        &[("a", "echo from-a > a.txt"), ("b", "echo from-b > b.txt")],
        "finish = \"merge\"",
    ));
    git(d, &["add", "agent-team.toml"]);
    git(d, &["commit", "-qm", "team"]);
    let out = sb.run(&[
        "run",
        "--backend",
        "process",
        "--json",
        "--timeout",
        "60",
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let work = result["finished_work"].as_array().unwrap();
    assert_eq!(work.len(), 2, "{result:#}");
    assert!(
        work.iter().all(|w| w["outcome"]["action"] == "merge"),
        "{result:#}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("a.txt")).unwrap(),
        "from-a\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("b.txt")).unwrap(),
        "from-b\n"
    );
    assert_eq!(git(d, &["branch", "--list", "agent-team/*"]), "");
}

#[test]
fn the_leader_reviews_and_merges_a_teammates_work_with_its_tools() {
    use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
    use serde_json::json;
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    // The leader waits for the task once it is on the board (the gate), reviews the work,
    // merges it and ends the run.
    let gate = Gate::new();
    mock.script(
        "leader",
        vec![
            Step::Gate(
                gate.clone(),
                Box::new(Step::Tools(vec![(
                    "wait_for".into(),
                    json!({"tasks": [1], "timeout_s": 60}),
                )])),
            ),
            Step::Tools(vec![("diff_teammate".into(), json!({"name": "a"}))]),
            // A push leaves the machine: not the leader's to choose unless configured.
            Step::Tools(vec![(
                "finish_teammate_work".into(),
                json!({"name": "a", "action": "pr"}),
            )]),
            Step::Tools(vec![(
                "finish_teammate_work".into(),
                json!({"name": "a", "action": "merge"}),
            )]),
            Step::Tools(vec![("finish_team".into(), json!({"answer": "merged a"}))]),
            Step::Text("done".into()),
        ],
    );
    let mut sb = repo();
    let d = sb.dir.path().to_path_buf();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    let text = team("fl", &[], "").replace(
        "[roles.worker]",
        &format!(
            "[roles.leader]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n[roles.worker]",
            mock.base_url()
        ),
    ) + "[[teammates]]\nname = \"a\"\nrole = \"worker\"\n";
    sb.write_team_file(&text);
    git(&d, &["add", "agent-team.toml"]);
    git(&d, &["commit", "-qm", "team"]);
    sb.ok(&["up", "--backend", "process", "--detach"]);
    sb.ok(&[
        "task",
        "add",
        "work of a",
        "--run",
        "echo from-a > a.txt",
        "--assign",
        "a",
    ]);
    gate.open();
    wait_for("the leader to finish the run", T, || {
        agent_team_client::Client::operator(&sb.team("fl")).is_ok_and(|mut c| {
            matches!(
                c.call(Request::TeamInfo),
                Ok(Reply::Team { team }) if team.run == RunState::Finished
            )
        })
    });
    assert_eq!(
        std::fs::read_to_string(d.join("a.txt")).unwrap(),
        "from-a\n"
    );
    // The model saw the diff, then the merge's outcome.
    let seen: String = mock
        .requests("leader")
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(seen.contains("a.txt +1 -0"), "{seen}");
    assert!(
        seen.contains("only the operator may open a pull request"),
        "{seen}"
    );
    assert!(seen.contains("fast_forward"), "{seen}");
    assert_eq!(git(&d, &["branch", "--list", "agent-team/*"]), "");
    sb.ok(&["down"]);
}

#[test]
fn run_with_finish_merge_leaves_a_control_plane_change_unmerged_until_the_operator_accepts_it() {
    for accept in [false, true] {
        let sb = repo();
        let d = sb.dir.path();
        // No sandbox, so the teammate can write its copy of the team file at all.
        sb.write_team_file(&team(
            "cp",
            &[(
                "a",
                "echo '# sandbox off from now on' >> agent-team.toml; mkdir -p .github/workflows; \
                 echo 'on: push' > .github/workflows/ci.yml; echo ok > ok.txt",
            )],
            "finish = \"merge\"\nsandbox = \"off\"",
        ));
        git(d, &["add", "agent-team.toml"]);
        git(d, &["commit", "-qm", "team"]);
        let before = git(d, &["rev-parse", "main"]);
        let mut args = vec![
            "run",
            "--backend",
            "process",
            "--json",
            "--timeout",
            "60",
            "--quiet",
            // The write to the team file is asked (a protected path): allowed here, so the
            // teammate's branch carries it and only `finish` stands in the way.
            "--approve-all",
        ];
        if accept {
            args.push("--accept-control-changes");
        }
        let out = sb.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let result: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
        let work = result["finished_work"]
            .as_array()
            .unwrap_or_else(|| panic!("{result:#}\n{stderr}"));
        assert_eq!(work.len(), 1, "{result:#}");
        if accept {
            assert_eq!(work[0]["outcome"]["action"], "merge", "{result:#}");
            assert!(d.join("ok.txt").exists());
            assert!(
                std::fs::read_to_string(d.join("agent-team.toml"))
                    .unwrap()
                    .lines()
                    .any(|l| l.starts_with("# sandbox off"))
            );
            assert!(d.join(".github/workflows/ci.yml").exists());
        } else {
            // Nothing landed, and the run says why, naming the files and the way to land them.
            let err = work[0]["error"].as_str().unwrap_or_default();
            for want in [
                "control plane",
                "agent-team.toml",
                ".github/workflows/ci.yml",
                "--accept-control-changes",
            ] {
                assert!(err.contains(want), "{want}: {result:#}");
                assert!(stderr.contains(want), "{want}: {stderr}");
            }
            assert!(!err.contains("ok.txt"), "{err}");
            assert_eq!(git(d, &["rev-parse", "main"]), before);
            assert!(!d.join("ok.txt").exists());
            let tf = std::fs::read_to_string(d.join("agent-team.toml")).unwrap();
            assert!(
                !tf.lines().any(|l| l.starts_with("# sandbox off")),
                "{tf}\n{}\n{}",
                git(d, &["status", "--porcelain"]),
                git(d, &["log", "--all", "--stat", "--format=%an %s"])
            );
            // The work is kept on its branch for the operator to look at.
            assert!(git(d, &["branch", "--list", "agent-team/a"]).contains("agent-team/a"));
        }
    }
}

/// Issue 63 item 2: `agent-team diff` names the branch's control-plane changes (the team file,
/// `.claude/settings.json`, a `[finish] review` path) first, before the patch, and `--json`
/// carries them; `finish --merge` refuses that branch until `--accept-control-changes`.
#[test]
fn diff_lists_control_plane_changes_first_and_finish_refuses_a_review_path_until_accepted() {
    let sb = repo();
    let d = sb.dir.path();
    sb.write_team_file(&team(
        "cpd",
        &[(
            "a",
            "echo '# sandbox off from now on' >> agent-team.toml; mkdir -p .claude; \
             echo '{}' > .claude/settings.json; echo 'all:' > Makefile; echo ok > ok.txt",
        )],
        "sandbox = \"off\"\n[finish]\nreview = [\"Makefile\", \"deploy/\"]",
    ));
    git(d, &["add", "agent-team.toml"]);
    git(d, &["commit", "-qm", "team"]);
    let before = git(d, &["rev-parse", "main"]);
    let out = sb.run(&[
        "run",
        "--backend",
        "process",
        "--json",
        "--timeout",
        "60",
        "--quiet",
        "--approve-all",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The team is stopped: `diff` reads its stored configuration (review paths included).
    let shown = sb.ok(&["diff", "a"]);
    let mut lines = shown.lines();
    assert_eq!(
        lines.next(),
        Some(
            "control-plane changes (finish --merge refuses them without --accept-control-changes):"
        ),
        "{shown}"
    );
    let block: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    assert_eq!(
        block,
        ["  .claude/settings.json", "  Makefile", "  agent-team.toml"],
        "{shown}"
    );
    // Then the patch, plain (stdout is not a terminal).
    assert!(
        lines.next().is_some_and(|l| l.starts_with("diff --git")),
        "{shown}"
    );
    assert!(!shown.contains('\u{1b}'), "{shown}");
    let json: WorkDiff = serde_json::from_str(&sb.ok(&["diff", "a", "--json"])).unwrap();
    assert_eq!(
        json.control_paths,
        [".claude/settings.json", "Makefile", "agent-team.toml"]
    );
    let refused = sb.run(&["finish", "a", "--merge"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    for want in [
        "control plane",
        "Makefile",
        ".claude/settings.json",
        "--accept-control-changes",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(git(d, &["rev-parse", "main"]), before);
    assert!(!d.join("Makefile").exists());
    sb.ok(&["finish", "a", "--merge", "--accept-control-changes"]);
    assert!(d.join("Makefile").exists() && d.join("ok.txt").exists());
    sb.run(&["down"]);
}
