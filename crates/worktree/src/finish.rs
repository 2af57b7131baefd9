//! Landing a worktree teammate's work: its uncommitted changes are committed as the teammate,
//! then its branch is merged into the base branch (fast-forward when possible, a conflict
//! leaves everything as it was), pushed for a pull request, or discarded.

use crate::{
    WorktreeError, base, branch, check_config, check_config_for, git, git_as_user, holds, output,
    path, require_work, run,
};
use agent_team_protocol::text::printable;
use agent_team_protocol::{FinishAction, FinishOutcome};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to land and how.
#[derive(Debug, Clone)]
pub struct FinishRequest {
    /// The teammate.
    pub agent: String,
    /// Its team (commits are authored as `NAME@TEAM`).
    pub team: String,
    /// What to do.
    pub action: FinishAction,
    /// The branch to merge into; default: its recorded base.
    pub into: Option<String>,
    /// Keep the branch after a merge or discard.
    pub keep: bool,
    /// Its finished tasks as `(id, title, result)`: the commit message, the pull request's
    /// title and body.
    pub tasks: Vec<(u64, String, Option<String>)>,
    /// The team's own control-plane files, relative to the repository's top (its team file,
    /// the scripts its hooks and `[notify]` run), beside the fixed list of `is_control`.
    pub control_files: Vec<String>,
    /// Merge even when the branch changes the control plane: the operator saw the changes.
    pub accept_control: bool,
}

impl FinishRequest {
    fn who(&self) -> String {
        format!("{}@{}", self.agent, self.team)
    }

    /// One line naming the work: the task titles (inert: `git log` shows them on a terminal).
    fn title(&self) -> String {
        if self.tasks.is_empty() {
            format!("Work of {}", self.who())
        } else {
            let titles: Vec<String> = self.tasks.iter().map(|(_, t, _)| printable(t)).collect();
            format!("{}: {}", self.who(), titles.join("; "))
        }
    }

    /// The tasks and their results, one line each (inert text, as the title).
    fn body(&self) -> String {
        self.tasks
            .iter()
            .map(|(id, t, r)| match r {
                Some(r) if !r.trim().is_empty() => {
                    format!("- #{id} {}: {}", printable(t), printable(r.trim()))
                }
                _ => format!("- #{id} {}", printable(t)),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Commits everything uncommitted in `agent`'s worktree (new files included) as
/// `AGENT@TEAM`, with `message`; the new commit, or none when there was nothing to commit.
pub fn commit_work(
    repo: &Path,
    agent: &str,
    team: &str,
    message: &str,
) -> Result<Option<String>, WorktreeError> {
    let wt = path(repo, agent);
    if !wt.join(".git").exists() {
        return Ok(None);
    }
    check_config(&wt)?;
    if run(&wt, &["status", "--porcelain"])?.is_empty() {
        return Ok(None);
    }
    run(&wt, &["add", "-A"])?;
    let who = format!("{agent}@{team}");
    // The message through stdin: it may be long and start with anything.
    let mut child = as_identity(&mut git(&wt), &who, &who)
        .args(["commit", "--quiet", "--no-verify", "-F", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(message.as_bytes())?;
    }
    let done = child.wait_with_output()?;
    if !done.status.success() {
        return Err(WorktreeError::Git {
            args: "commit".into(),
            stderr: String::from_utf8_lossy(&done.stderr).trim().to_string(),
        });
    }
    Ok(Some(run(&wt, &["rev-parse", "HEAD"])?))
}

/// Sets both author and committer.
fn as_identity<'a>(cmd: &'a mut Command, name: &str, email: &str) -> &'a mut Command {
    cmd.env("GIT_AUTHOR_NAME", name)
        .env("GIT_AUTHOR_EMAIL", email)
        .env("GIT_COMMITTER_NAME", name)
        .env("GIT_COMMITTER_EMAIL", email)
}

/// The user's identity for a merge commit (the repository's, else the user's global one,
/// which [`git`] does not read), or `agent-team` when git has none configured.
fn merge_identity(repo: &Path, cmd: &mut Command) {
    let pattern = r"^user\.(name|email)$";
    // One git call for both keys, then the user's own config when the repository has none.
    let local = run(repo, &["config", "--get-regexp", pattern]).unwrap_or_default();
    let global =
        output(git_with_user_config().args(["config", "--global", "--get-regexp", pattern]))
            .map(|o| o.stdout)
            .unwrap_or_default();
    let get = |k: &str| {
        [&local, &global].into_iter().find_map(|set| {
            set.lines().find_map(|l| {
                l.split_once(' ')
                    .filter(|(key, v)| *key == k && !v.trim().is_empty())
                    .map(|(_, v)| v.trim().to_string())
            })
        })
    };
    match (get("user.name"), get("user.email")) {
        (Some(name), Some(email)) => {
            as_identity(cmd, &name, &email);
        }
        _ => {
            as_identity(cmd, "agent-team", "agent-team@localhost");
        }
    }
}

/// git outside any repository, reading the user's global config (for their identity only).
fn git_with_user_config() -> Command {
    let mut cmd = crate::git_with(true);
    cmd.current_dir("/");
    cmd
}

/// Lands `req.agent`'s work in `repo` (the team's workspace). Uncommitted changes are
/// committed first (merge and pull request); a merge conflict or a refusal leaves the base
/// branch, the workspace and the teammate's branch exactly as they were.
pub fn finish(repo: &Path, req: &FinishRequest) -> Result<FinishOutcome, WorktreeError> {
    require_work(repo, &req.agent)?;
    check_config(repo)?;
    let branch = branch(&req.agent);
    let mut out = FinishOutcome {
        agent: req.agent.clone(),
        action: req.action,
        branch: branch.clone(),
        into: None,
        committed: Vec::new(),
        head: None,
        fast_forward: false,
        removed: false,
        pushed_to: None,
        pr_url: None,
        pr_hint: None,
    };
    if req.action == FinishAction::Discard {
        remove(repo, &req.agent, req.keep)?;
        out.removed = true;
        return Ok(out);
    }
    let into = match &req.into {
        Some(b) => b.clone(),
        None => base(repo, &req.agent)?.ok_or_else(|| {
            WorktreeError::Refused(format!(
                "no base branch is recorded for {branch} and the workspace has none checked out: pass --into BRANCH"
            ))
        })?,
    };
    if !holds(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{into}"),
        ],
    )? {
        return Err(WorktreeError::Refused(format!(
            "there is no branch {into} to land {branch} on"
        )));
    }
    out.into = Some(into.clone());
    // Checks that need nothing to move come first.
    let checkout = checked_out(repo, &into)?;
    if req.action == FinishAction::Merge
        && let Some(dir) = &checkout
    {
        if !same_dir(dir, repo) {
            return Err(WorktreeError::Refused(format!(
                "{into} is checked out in {}: merge there by hand, or pass --into another branch",
                dir.display()
            )));
        }
        if !run(repo, &["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
            return Err(WorktreeError::Refused(format!(
                "the workspace {} has uncommitted changes on {into}: commit or stash them (git stash), then finish again",
                repo.display()
            )));
        }
    }
    let message = format!("{}\n\n{}\n", req.title(), req.body());
    if let Some(c) = commit_work(repo, &req.agent, &req.team, &message)? {
        out.committed.push(c);
    }
    if req.action == FinishAction::Merge && !req.accept_control {
        refuse_control_changes(repo, req, &branch, &into)?;
    }
    match req.action {
        FinishAction::Merge => {
            let merged = merge(repo, &branch, &into, checkout.is_some(), &message)?;
            out.head = Some(merged.0);
            out.fast_forward = merged.1;
            if !req.keep {
                remove(repo, &req.agent, false)?;
                out.removed = true;
            }
        }
        FinishAction::Pr => pull_request(repo, req, &branch, &into, &mut out)?,
        FinishAction::Discard => {}
    }
    Ok(out)
}

/// Refuses when what merging `branch` into `into` would bring (its changes since they met)
/// touches the team's control plane.
fn refuse_control_changes(
    repo: &Path,
    req: &FinishRequest,
    branch: &str,
    into: &str,
) -> Result<(), WorktreeError> {
    let o = output(git(repo).args([
        "diff",
        "--name-only",
        "-z",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        &format!("refs/heads/{into}...refs/heads/{branch}"),
    ]))?;
    if !o.ok {
        return Err(WorktreeError::Git {
            args: format!("diff --name-only {into}...{branch}"),
            stderr: o.stderr,
        });
    }
    let paths = crate::control_changes(
        o.stdout.split('\0').filter(|p| !p.is_empty()),
        &req.control_files,
    );
    if paths.is_empty() {
        return Ok(());
    }
    Err(WorktreeError::ControlChanges {
        agent: req.agent.clone(),
        branch: branch.to_string(),
        paths,
    })
}

/// Where `branch` is checked out (the workspace or another worktree), if anywhere.
fn checked_out(repo: &Path, branch: &str) -> Result<Option<PathBuf>, WorktreeError> {
    let list = run(repo, &["worktree", "list", "--porcelain"])?;
    let want = format!("branch refs/heads/{branch}");
    let mut dir: Option<PathBuf> = None;
    for line in list.lines() {
        if let Some(d) = line.strip_prefix("worktree ") {
            dir = Some(PathBuf::from(d));
        } else if line == want {
            return Ok(dir);
        }
    }
    Ok(None)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Merges `branch` into `into`: in the workspace when `into` is checked out there (its files
/// follow), else on the refs alone. Returns the new tip and whether it was a fast-forward.
fn merge(
    repo: &Path,
    branch: &str,
    into: &str,
    in_workspace: bool,
    message: &str,
) -> Result<(String, bool), WorktreeError> {
    // Both tips and where they meet, in two git calls.
    let tips = run(
        repo,
        &[
            "rev-parse",
            &format!("refs/heads/{into}"),
            &format!("refs/heads/{branch}"),
        ],
    )?;
    let mut tips = tips.lines().map(str::to_string);
    let (Some(old), Some(tip)) = (tips.next(), tips.next()) else {
        return Err(WorktreeError::Git {
            args: format!("rev-parse {into} {branch}"),
            stderr: "printed fewer than two commits".into(),
        });
    };
    let meet = run(repo, &["merge-base", &old, &tip]).unwrap_or_default();
    if meet == tip {
        // Already in: nothing to do.
        return Ok((old, false));
    }
    let ff = meet == old;
    let subject = format!("Merge {branch} into {into}\n\n{message}");
    if in_workspace {
        return Ok((merge_in_workspace(repo, branch, into, &subject)?, ff));
    }
    let new = if ff {
        tip
    } else {
        merge_commit(repo, branch, into, &old, &tip, &subject)?
    };
    // Only if the base did not move meanwhile.
    run(
        repo,
        &["update-ref", &format!("refs/heads/{into}"), &new, &old],
    )?;
    Ok((new, ff))
}

/// Merges `branch` into `into` checked out in the workspace (its files follow); a conflict
/// or refusal leaves it exactly as it was. Returns the new tip.
fn merge_in_workspace(
    repo: &Path,
    branch: &str,
    into: &str,
    subject: &str,
) -> Result<String, WorktreeError> {
    let mut cmd = git(repo);
    merge_identity(repo, &mut cmd);
    let o = output(cmd.args(["merge", "--no-edit", "--quiet", "-m", subject, branch]))?;
    if !o.ok {
        let paths: Vec<String> = run(repo, &["diff", "--name-only", "--diff-filter=U"])
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        // Back to exactly where it was (a merge that stopped before starting leaves no
        // MERGE_HEAD, and then there is nothing to abort).
        if holds(repo, &["rev-parse", "--verify", "--quiet", "MERGE_HEAD"])? {
            run(repo, &["merge", "--abort"])?;
        }
        if paths.is_empty() {
            return Err(WorktreeError::Refused(format!(
                "git merge refused, nothing changed: {}",
                o.stderr
            )));
        }
        return Err(WorktreeError::Conflict {
            branch: branch.to_string(),
            into: into.to_string(),
            paths,
        });
    }
    run(repo, &["rev-parse", "HEAD"])
}

/// The merge commit of `tip` into `old` made on the refs alone (`git merge-tree`), no
/// worktree touched; a conflict names its paths.
fn merge_commit(
    repo: &Path,
    branch: &str,
    into: &str,
    old: &str,
    tip: &str,
    subject: &str,
) -> Result<String, WorktreeError> {
    let o = output(git(repo).args([
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        old,
        tip,
    ]))?;
    let mut lines = o.stdout.lines();
    let tree = lines.next().unwrap_or_default().trim().to_string();
    match o.code {
        Some(0) => {}
        Some(1) => {
            let mut paths: Vec<String> = lines
                .take_while(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            paths.dedup();
            return Err(WorktreeError::Conflict {
                branch: branch.to_string(),
                into: into.to_string(),
                paths,
            });
        }
        _ => {
            return Err(WorktreeError::Git {
                args: "merge-tree --write-tree".into(),
                stderr: o.stderr,
            });
        }
    }
    let mut cmd = git(repo);
    merge_identity(repo, &mut cmd);
    let o = output(cmd.args(["commit-tree", &tree, "-p", old, "-p", tip, "-m", subject]))?;
    if !o.ok {
        return Err(WorktreeError::Git {
            args: "commit-tree".into(),
            stderr: o.stderr,
        });
    }
    Ok(o.stdout.trim().to_string())
}

/// Removes `agent`'s worktree, and its branch unless `keep`.
fn remove(repo: &Path, agent: &str, keep: bool) -> Result<(), WorktreeError> {
    let wt = path(repo, agent);
    if wt.exists() {
        // Moved aside at once (a rename), forgotten by git, and deleted in the background:
        // nobody waits for a thousand files to be unlinked.
        let trash = repo.join(".agent-team").join("trash");
        let aside = trash.join(format!(
            "{agent}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let moved = std::fs::create_dir_all(&trash).is_ok() && std::fs::rename(&wt, &aside).is_ok();
        if moved {
            run(repo, &["worktree", "prune"])?;
            std::thread::spawn(move || empty_trash(&trash));
        } else {
            run(
                repo,
                &["worktree", "remove", "--force", &wt.display().to_string()],
            )?;
        }
    } else {
        // Removed by hand: forget it.
        let _ = run(repo, &["worktree", "prune"]);
    }
    if !keep {
        run(repo, &["branch", "-D", &branch(agent)])?;
    }
    Ok(())
}

/// Deletes what finished worktrees left in `trash` (also what an earlier process could not
/// finish deleting).
fn empty_trash(trash: &Path) {
    if let Ok(rd) = std::fs::read_dir(trash) {
        for e in rd.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Pushes `branch` to the remote `into` tracks and opens a pull request with `gh` when it is
/// on `PATH`; without it, says how to open one.
fn pull_request(
    repo: &Path,
    req: &FinishRequest,
    branch: &str,
    into: &str,
    out: &mut FinishOutcome,
) -> Result<(), WorktreeError> {
    let remote = match run(repo, &["config", "--get", &format!("branch.{into}.remote")]) {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ if run(repo, &["remote"])?.lines().any(|r| r == "origin") => "origin".to_string(),
        _ => {
            return Err(WorktreeError::Refused(format!(
                "{into} tracks no remote to push {branch} to: set one (git branch --set-upstream-to REMOTE/{into}), or finish with --merge"
            )));
        }
    };
    // The user's own push (their ssh agent, config and credentials), still with nothing the
    // repository's config names.
    check_config_for(repo, true)?;
    let o = output(git_as_user(repo).args([
        "push",
        "--quiet",
        &remote,
        &format!("refs/heads/{branch}:refs/heads/{branch}"),
    ]))?;
    if !o.ok {
        return Err(WorktreeError::Git {
            args: format!("push {remote} {branch}"),
            stderr: o.stderr,
        });
    }
    out.pushed_to = Some(remote.clone());
    let (title, body) = (req.title(), req.body());
    match find_on_path("gh") {
        Some(gh) => {
            let o = output(Command::new(gh).current_dir(repo).args([
                "pr", "create", "--base", into, "--head", branch, "--title", &title, "--body",
                &body,
            ]))?;
            if !o.ok {
                return Err(WorktreeError::Git {
                    args: format!("(gh) pr create, after {branch} was pushed to {remote}"),
                    stderr: o.stderr,
                });
            }
            out.pr_url = o
                .stdout
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string());
        }
        None => {
            let url = run(repo, &["remote", "get-url", &remote]).unwrap_or_default();
            out.pr_hint = Some(match github_repo(&url) {
                Some(slug) => {
                    format!("https://github.com/{slug}/compare/{into}...{branch}?expand=1")
                }
                None => format!(
                    "gh pr create --base {into} --head {branch} (gh is not on PATH; {branch} is on {remote})"
                ),
            });
        }
    }
    Ok(())
}

/// `OWNER/REPO` of a GitHub remote URL.
fn github_repo(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("git@github.com:")
        .or_else(|| url.strip_prefix("https://github.com/"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
    let slug = rest.trim_end_matches('/').trim_end_matches(".git");
    (slug.split('/').count() == 2).then(|| slug.to_string())
}

/// The first executable `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).map(|d| d.join(name)).find(|f| {
            f.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn github_remotes_give_a_compare_url_slug() {
        assert_eq!(
            github_repo("git@github.com:o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            github_repo("https://github.com/o/r").as_deref(),
            Some("o/r")
        );
        assert_eq!(github_repo("/tmp/bare.git"), None);
    }

    #[test]
    fn the_title_names_the_teammate_and_its_tasks() {
        let r = FinishRequest {
            agent: "a".into(),
            team: "t".into(),
            action: FinishAction::Merge,
            into: None,
            keep: false,
            tasks: vec![
                (1, "One".into(), Some("did it".into())),
                (2, "Two".into(), None),
            ],
            control_files: Vec::new(),
            accept_control: false,
        };
        assert_eq!(r.title(), "a@t: One; Two");
        assert_eq!(r.body(), "- #1 One: did it\n- #2 Two");
        // What the teammate wrote is inert in the commit message `git log` prints.
        let evil = FinishRequest {
            tasks: vec![(
                3,
                "t\u{1b}]0;FAKE\u{7}".into(),
                Some("ok\u{1b}[2J\u{9b}\u{202e}x\nmore".into()),
            )],
            ..r
        };
        assert_eq!(evil.title(), "a@t: t\\u{1b}]0;FAKE\\u{7}");
        assert_eq!(
            evil.body(),
            "- #3 t\\u{1b}]0;FAKE\\u{7}: ok\\u{1b}[2J\\u{9b}\\u{202e}x\\nmore"
        );
    }
}
