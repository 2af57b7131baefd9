//! A worktree teammate's work and how it lands: what `diff` shows and what `finish` did.

use serde::{Deserialize, Serialize};

/// What to do with a worktree teammate's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FinishAction {
    /// Merge its branch into the base branch (fast-forward when possible).
    Merge,
    /// Push its branch and open a pull request against the base branch.
    Pr,
    /// Drop its worktree and its branch.
    Discard,
}

impl FinishAction {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishAction::Merge => "merge",
            FinishAction::Pr => "pr",
            FinishAction::Discard => "discard",
        }
    }
}

/// One file a teammate changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileChange {
    /// The path, relative to the repository.
    pub path: String,
    /// Lines added (none for a binary file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    /// Lines removed (none for a binary file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
}

/// A worktree teammate's changes against the commit it started from, committed and not:
/// exactly what `finish` would land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkDiff {
    /// The teammate.
    pub agent: String,
    /// Its branch (`agent-team/NAME`).
    pub branch: String,
    /// The branch its work lands on by default (the one the team started from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The commit it started from (where its branch left the base).
    pub fork: String,
    /// Commits on its branch since then.
    pub commits: u64,
    /// Whether its worktree has changes not committed yet.
    pub uncommitted: bool,
    /// The changed files, by path.
    pub files: Vec<FileChange>,
    /// The changed files that are the team's control plane (the rule `finish --merge` refuses
    /// by without `--accept-control-changes`), in `files`' order: shown first.
    #[serde(default)]
    pub control_paths: Vec<String>,
    /// Lines added in all.
    pub added: u64,
    /// Lines removed in all.
    pub removed: u64,
    /// The patch itself, when asked for (its first 512 KiB at most, cut to fit one frame as
    /// JSON, with a line saying how many bytes are not shown and how to see them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

impl WorkDiff {
    /// One line per file (` PATH +A -R`, or `(binary)`) then a summary line: how `agent-team
    /// diff --stat` and the leader's `diff_teammate` show the work.
    pub fn stat_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .files
            .iter()
            .map(|f| match (f.added, f.removed) {
                (Some(a), Some(r)) => format!(" {} +{a} -{r}", f.path),
                _ => format!(" {} (binary)", f.path),
            })
            .collect();
        lines.push(format!(
            "{}: {} file(s), +{} -{} against {} ({} commit(s){}) on {}",
            self.agent,
            self.files.len(),
            self.added,
            self.removed,
            self.base.as_deref().unwrap_or("its start"),
            self.commits,
            if self.uncommitted {
                ", uncommitted changes"
            } else {
                ""
            },
            self.branch
        ));
        lines
    }
}

/// What `finish` did with a teammate's work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FinishOutcome {
    /// The teammate.
    pub agent: String,
    /// What was done.
    pub action: FinishAction,
    /// Its branch.
    pub branch: String,
    /// The branch merged into or the pull request's base (none for a discard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// The commits made of its uncommitted changes first, oldest first.
    #[serde(default)]
    pub committed: Vec<String>,
    /// The base branch's new tip after a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Whether the merge was a fast-forward.
    #[serde(default)]
    pub fast_forward: bool,
    /// Whether the worktree and the branch were removed (a merge without `keep`, a discard).
    #[serde(default)]
    pub removed: bool,
    /// A pull request: the remote the branch was pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_to: Option<String>,
    /// A pull request: its URL when `gh` opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    /// A pull request without `gh`: the command (or URL) that opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_hint: Option<String>,
}

/// How each worktree teammate's work ends when a run ends (`finish` in the team file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FinishPolicy {
    /// Leave the branch and the worktree for `agent-team finish`.
    #[default]
    Keep,
    /// Merge into the base branch.
    Merge,
    /// Push and open a pull request.
    Pr,
}

/// What became of one teammate's work at the end of a run: the outcome, or why it did not
/// land (a conflict: its branch is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkResult {
    /// The teammate.
    pub agent: String,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<FinishOutcome>,
    /// Why nothing was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
