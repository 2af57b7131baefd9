//! `isolation = "worktree"`: a teammate works in its own git worktree,
//! `.agent-team/worktrees/NAME` on branch `agent-team/NAME`, so teammates never overwrite each
//! other's files. Created before the agent's first launch, reused by its restarts.

use std::path::{Path, PathBuf};

/// Where `name`'s worktree lives in the repository at `repo`.
pub fn path(repo: &Path, name: &str) -> PathBuf {
    repo.join(".agent-team").join("worktrees").join(name)
}

/// Makes sure the worktree exists; returns its path.
pub fn ensure(repo: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = path(repo, name);
    if dir.join(".git").exists() {
        return Ok(dir);
    }
    // Hooks and fsmonitor off, a clean environment: `.git/` is the workspace's, which agents
    // write.
    let git = |args: &[&str]| {
        crate::confine::git(repo)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() {
        return Err(format!(
            "isolation = \"worktree\" needs {} to be a git repository with a commit (git init && git commit)",
            repo.display()
        ));
    }
    let branch = format!("agent-team/{name}");
    let exists = git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("refs/heads/{branch}"),
    ])?
    .status
    .success();
    let target = dir.display().to_string();
    let args: Vec<&str> = if exists {
        vec!["worktree", "add", &target, &branch]
    } else {
        vec!["worktree", "add", "-b", &branch, &target]
    };
    let out = git(&args)?;
    if !out.status.success() {
        return Err(format!(
            "git worktree add failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(dir)
}
