//! Worktree teammates' git. A teammate with `isolation = "worktree"` works in
//! `.agent-team/worktrees/NAME` on branch `agent-team/NAME`, so teammates never overwrite each
//! other's files; this crate makes that worktree (recording the branch the team started from),
//! says what the teammate changed ([`diff`]) and lands it ([`finish`]: merge, pull request or
//! discard).
//!
//! Every git call here runs with hooks, fsmonitor and the environment turned off ([`git`]):
//! `.git/` belongs to the workspace, which agents write.

mod finish;

pub use finish::{FinishRequest, commit_work, finish};

use agent_team_protocol::{ErrorBody, ErrorCode, FileChange, WorkDiff};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a worktree operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// The workspace is not a git repository with a commit.
    #[error(
        "{0} is not a git repository with a commit: isolation = \"worktree\" needs one (git init && git commit)"
    )]
    NotARepo(PathBuf),
    /// The agent has no worktree branch.
    #[error(
        "{agent} has no branch {branch}: it is not a worktree teammate, or its work was already finished"
    )]
    NoWork {
        /// The agent.
        agent: String,
        /// The branch looked for.
        branch: String,
    },
    /// git could not be run.
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    /// A git command failed.
    #[error("git {args} failed: {stderr}")]
    Git {
        /// The command's arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// The merge conflicts; nothing moved.
    #[error("conflict: merging {branch} into {into} conflicts in {}; {into} and the workspace are unchanged, {branch} is kept", paths.join(", "))]
    Conflict {
        /// The teammate's branch.
        branch: String,
        /// The base branch.
        into: String,
        /// The conflicting paths.
        paths: Vec<String>,
    },
    /// Refused before anything moved, with what to do.
    #[error("{0}")]
    Refused(String),
}

impl WorktreeError {
    /// The protocol's error for it, as the daemon answers and a stopped team's read says it:
    /// no branch is `not_found`, a conflict `conflict` (with `branch`, `into`, `paths`), a
    /// refusal `invalid_state`, git failing `internal`.
    pub fn to_error_body(&self) -> ErrorBody {
        let code = match self {
            WorktreeError::NoWork { .. } => ErrorCode::NotFound,
            WorktreeError::Conflict { .. } => ErrorCode::Conflict,
            WorktreeError::Refused(_) | WorktreeError::NotARepo(_) => ErrorCode::InvalidState,
            WorktreeError::Spawn(_) | WorktreeError::Git { .. } => ErrorCode::Internal,
        };
        match self {
            WorktreeError::Conflict {
                branch,
                into,
                paths,
            } => ErrorBody::with_details(
                code,
                self.to_string(),
                serde_json::json!({"branch": branch, "into": into, "paths": paths}),
            ),
            _ => ErrorBody::new(code, self.to_string()),
        }
    }
}

/// The variables git keeps: what it needs to find itself, the user's identity and config
/// (`HOME`), and the locale; never an `AGENT_TEAM_*` variable or a `GIT_*` one an agent set.
const GIT_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// `git -C repo` that runs no hook and no fsmonitor and reads no system config, whatever
/// `.git/config` or the environment says: agents write the workspace, and git run by the
/// daemon or the operator must not run their code.
pub fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for k in GIT_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.sshCommand=false",
        ])
        .arg("-C")
        .arg(repo);
    cmd
}

/// What one git command did.
pub(crate) struct Out {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd`, failing only when it cannot be started.
pub(crate) fn output(cmd: &mut Command) -> Result<Out, WorktreeError> {
    let o = cmd.output()?;
    Ok(Out {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
    })
}

/// Runs git in `dir` with `args`; its trimmed output, or the failure with what git said.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Result<String, WorktreeError> {
    let o = output(git(dir).args(args))?;
    if o.ok {
        Ok(o.stdout.trim_end().to_string())
    } else {
        Err(WorktreeError::Git {
            args: args.join(" "),
            stderr: o.stderr,
        })
    }
}

/// Whether git in `dir` with `args` succeeds (a question such as `merge-base --is-ancestor`).
pub(crate) fn holds(dir: &Path, args: &[&str]) -> Result<bool, WorktreeError> {
    Ok(output(git(dir).args(args))?.ok)
}

/// Where `name`'s worktree lives in the repository at `repo`.
pub fn path(repo: &Path, name: &str) -> PathBuf {
    repo.join(".agent-team").join("worktrees").join(name)
}

/// `name`'s branch.
pub fn branch(name: &str) -> String {
    format!("agent-team/{name}")
}

/// The config key holding the branch a worktree branch started from.
fn base_key(name: &str) -> String {
    format!("branch.{}.agentteambase", branch(name))
}

/// Whether `name` has a worktree branch in `repo`.
pub fn has_work(repo: &Path, name: &str) -> bool {
    holds(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{}", branch(name)),
        ],
    )
    .unwrap_or(false)
}

/// Makes sure `name`'s worktree exists; returns its path. A new branch starts at the
/// workspace's `HEAD`, and the branch checked out there is recorded as its base (where
/// `finish --merge` lands it).
pub fn ensure(repo: &Path, name: &str) -> Result<PathBuf, WorktreeError> {
    let dir = path(repo, name);
    if dir.join(".git").exists() {
        return Ok(dir);
    }
    if !holds(repo, &["rev-parse", "--verify", "--quiet", "HEAD"])? {
        return Err(WorktreeError::NotARepo(repo.to_path_buf()));
    }
    exclude_worktrees(repo)?;
    let branch = branch(name);
    let target = dir.display().to_string();
    if has_work(repo, name) {
        run(repo, &["worktree", "add", &target, &branch])?;
    } else {
        run(repo, &["worktree", "add", "-b", &branch, &target])?;
        if let Some(base) = current_branch(repo)? {
            run(repo, &["config", &base_key(name), &base])?;
        }
    }
    Ok(dir)
}

/// Records the base of `name`'s branch (the branch checked out in the workspace now) unless
/// one is recorded: for a branch made elsewhere (a remote teammate's, fetched back), so
/// `finish` lands it as it lands a local worktree's.
pub fn record_base(repo: &Path, name: &str) -> Result<(), WorktreeError> {
    let o = output(git(repo).args(["config", "--get", &base_key(name)]))?;
    if o.ok && !o.stdout.trim().is_empty() {
        return Ok(());
    }
    if let Some(base) = current_branch(repo)? {
        run(repo, &["config", &base_key(name), &base])?;
    }
    Ok(())
}

/// Keeps `.agent-team/` (the worktrees) out of the workspace's `git status`, so a merge into
/// the checked-out base does not take them for changes.
fn exclude_worktrees(repo: &Path) -> Result<(), WorktreeError> {
    let file = PathBuf::from(run(repo, &["rev-parse", "--git-path", "info/exclude"])?);
    let file = if file.is_absolute() {
        file
    } else {
        repo.join(file)
    };
    let now = std::fs::read_to_string(&file).unwrap_or_default();
    if now.lines().any(|l| l.trim() == "/.agent-team/") {
        return Ok(());
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let sep = if now.is_empty() || now.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(&file, format!("{now}{sep}/.agent-team/\n"))?;
    Ok(())
}

/// The branch checked out in `dir`, if one is (not a detached `HEAD`).
pub(crate) fn current_branch(dir: &Path) -> Result<Option<String>, WorktreeError> {
    let o = output(git(dir).args(["symbolic-ref", "--short", "-q", "HEAD"]))?;
    Ok(o.ok
        .then(|| o.stdout.trim().to_string())
        .filter(|b| !b.is_empty()))
}

/// The branch `name`'s work lands on by default: the one recorded when its worktree was made,
/// else the branch checked out in the workspace.
pub fn base(repo: &Path, name: &str) -> Result<Option<String>, WorktreeError> {
    let o = output(git(repo).args(["config", "--get", &base_key(name)]))?;
    let recorded = o.stdout.trim();
    if o.ok && !recorded.is_empty() {
        return Ok(Some(recorded.to_string()));
    }
    current_branch(repo)
}

/// Fails with [`WorktreeError::NoWork`] unless `name` has a branch.
pub(crate) fn require_work(repo: &Path, name: &str) -> Result<(), WorktreeError> {
    // A name is a path and a branch here: only an agent's name may be one.
    agent_team_protocol::names::validate("agent", name).map_err(WorktreeError::Refused)?;
    if has_work(repo, name) {
        Ok(())
    } else {
        Err(WorktreeError::NoWork {
            agent: name.to_string(),
            branch: branch(name),
        })
    }
}

/// The patch cut: a diff is shown, not archived.
const MAX_PATCH: usize = 1 << 20;

/// `name`'s changes against the commit it started from, committed and uncommitted (new files
/// included): what [`finish`] would land. Reads only: the worktree's index is not touched.
pub fn diff(repo: &Path, name: &str, with_patch: bool) -> Result<WorkDiff, WorktreeError> {
    require_work(repo, name)?;
    let branch = branch(name);
    let base = base(repo, name)?;
    let fork = run(
        repo,
        &["merge-base", base.as_deref().unwrap_or("HEAD"), &branch],
    )?;
    let commits = run(repo, &["rev-list", "--count", &format!("{fork}..{branch}")])?
        .trim()
        .parse()
        .unwrap_or(0);
    let wt = path(repo, name);
    let live = wt.join(".git").exists();
    let uncommitted = live && !run(&wt, &["status", "--porcelain"])?.is_empty();
    // The worktree's files as they are, new ones included, in a throwaway index.
    let scratch = tempfile::Builder::new()
        .prefix("agent-team-diff-")
        .tempdir()?;
    let index = scratch.path().join("index");
    let diff_args = |extra: &[&str]| -> Result<String, WorktreeError> {
        let mut cmd = if live {
            let mut c = git(&wt);
            c.env("GIT_INDEX_FILE", &index);
            c.args(["diff", "--cached", "--no-renames", "--no-color"])
                .args(extra)
                .arg(&fork);
            c
        } else {
            let mut c = git(repo);
            c.args(["diff", "--no-renames", "--no-color"])
                .args(extra)
                .args([&fork, &branch]);
            c
        };
        let o = output(&mut cmd)?;
        if o.ok {
            Ok(o.stdout)
        } else {
            Err(WorktreeError::Git {
                args: format!("diff {}", extra.join(" ")),
                stderr: o.stderr,
            })
        }
    };
    if live {
        let real = PathBuf::from(run(
            &wt,
            &["rev-parse", "--path-format=absolute", "--git-path", "index"],
        )?);
        if real.exists() {
            std::fs::copy(&real, &index)?;
        }
        let o = output(git(&wt).env("GIT_INDEX_FILE", &index).args(["add", "-A"]))?;
        if !o.ok {
            return Err(WorktreeError::Git {
                args: "add -A (into a scratch index)".into(),
                stderr: o.stderr,
            });
        }
    }
    let files = parse_numstat(&diff_args(&["--numstat"])?);
    let patch = if with_patch {
        let mut p = diff_args(&[])?;
        if p.len() > MAX_PATCH {
            let mut cut = MAX_PATCH;
            while !p.is_char_boundary(cut) {
                cut -= 1;
            }
            p.truncate(cut);
            p.push_str(
                "\n[agent-team: the patch is cut at 1 MiB; see `git diff` in the worktree]\n",
            );
        }
        Some(p)
    } else {
        None
    };
    Ok(WorkDiff {
        agent: name.to_string(),
        branch,
        base,
        fork,
        commits,
        uncommitted,
        added: files.iter().filter_map(|f| f.added).sum(),
        removed: files.iter().filter_map(|f| f.removed).sum(),
        files,
        patch,
    })
}

/// `git diff --numstat` lines: `ADDED\tREMOVED\tPATH`, `-` for a binary file's counts.
fn parse_numstat(out: &str) -> Vec<FileChange> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let added = f.next()?.parse().ok();
            let removed = f.next()?.parse().ok();
            let path = f.next()?.to_string();
            Some(FileChange {
                path,
                added,
                removed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
