//! Worktree teammates' git. A teammate with `isolation = "worktree"` works in
//! `.agent-team/worktrees/NAME` on branch `agent-team/NAME`, so teammates never overwrite each
//! other's files; this crate makes that worktree (recording the branch the team started from),
//! says what the teammate changed ([`diff`]) and lands it ([`finish`]: merge, pull request or
//! discard).
//!
//! Every git call here runs with nothing `.git/config` or the environment names turned on
//! ([`git`]: no hook, fsmonitor, pager, ssh, credential or diff program, no system or global
//! config), and every operation first refuses a repository whose config names a driver that
//! cannot be turned off ([`check_config`]): `.git/` belongs to the workspace, which agents write.

mod control;
mod finish;

pub use control::{CONTROL_DIRS, CONTROL_FILES, CONTROL_PREFIXES, control_changes, is_control};
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
    /// The branch changes the team's control plane and the operator did not accept it.
    #[error("{branch} changes the team's control plane: {}; nothing was merged. Look at the changes (agent-team diff {agent}), then land them with `agent-team finish {agent} --merge --accept-control-changes` (the operator only), or discard them", paths.join(", "))]
    ControlChanges {
        /// The teammate.
        agent: String,
        /// Its branch.
        branch: String,
        /// The control-plane paths it changes.
        paths: Vec<String>,
    },
    /// The repository's config names a program git would run (an agent may have written it).
    #[error("refusing to run git in {}: its config names programs git would run ({}); an agent may have written them: look, and remove them (git config --unset KEY) or run git there yourself", repo.display(), keys.join(", "))]
    UnsafeConfig {
        /// The repository.
        repo: PathBuf,
        /// Each key and the file it is in.
        keys: Vec<String>,
    },
}

impl WorktreeError {
    /// The protocol's error for it, as the daemon answers and a stopped team's read says it:
    /// no branch is `not_found`, a conflict `conflict` (with `branch`, `into`, `paths`), a
    /// refusal `invalid_state`, git failing `internal`.
    pub fn to_error_body(&self) -> ErrorBody {
        let code = match self {
            WorktreeError::NoWork { .. } => ErrorCode::NotFound,
            WorktreeError::Conflict { .. } => ErrorCode::Conflict,
            WorktreeError::Refused(_)
            | WorktreeError::NotARepo(_)
            | WorktreeError::UnsafeConfig { .. }
            | WorktreeError::ControlChanges { .. } => ErrorCode::InvalidState,
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
            WorktreeError::ControlChanges { branch, paths, .. } => ErrorBody::with_details(
                code,
                self.to_string(),
                serde_json::json!({"branch": branch, "control_paths": paths}),
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

/// The keys of git's configuration that run a program or send git elsewhere, set on the
/// command line (which git reads last, so it wins over `.git/config`) to values that run
/// nothing. The keys that cannot be set this way (a driver's name is the repository's own
/// choice) are refused by [`check_config`] instead. docs/SECURITY.md "Git the daemon runs
/// runs nothing an agent wrote" lists where each comes from in git's documentation.
const SAFE_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.sshCommand=false",
    "core.askPass=",
    "core.pager=cat",
    "core.editor=:",
    "sequence.editor=:",
    "core.attributesFile=/dev/null",
    "core.alternateRefsCommand=",
    "diff.external=",
    "credential.helper=",
    "protocol.ext.allow=never",
    "uploadpack.packObjectsHook=",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "log.showSignature=false",
    "merge.verifySignatures=false",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "gc.auto=0",
    "maintenance.auto=false",
    // Whose the directory is does not matter: nothing in it runs (see `check_config`).
    "safe.directory=*",
];

/// `git -C repo` that runs nothing `.git/config`, the repository or the environment names:
/// no hook, no fsmonitor, no pager, editor, ssh or credential program, no external diff, no
/// system or global config, a clean environment (`SAFE_CONFIG`). Agents write the workspace
/// and its `.git/`, and git run by the daemon or the operator's CLI must not run their code;
/// run [`check_config`] first for the drivers that cannot be turned off here.
pub fn git(repo: &Path) -> Command {
    let mut cmd = git_with(false);
    cmd.arg("-C").arg(repo);
    cmd
}

/// [`git`], with the operator's own global config, ssh and credential helpers when `as_user`
/// (a push to the user's remote); the repository's config is still overridden and checked.
pub(crate) fn git_with(as_user: bool) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for k in GIT_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    if as_user {
        for k in [
            "SSH_AUTH_SOCK",
            "XDG_CONFIG_HOME",
            "GIT_SSH_COMMAND",
            "GIT_ASKPASS",
            "SSH_ASKPASS",
        ] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
    } else {
        cmd.env("GIT_CONFIG_GLOBAL", "/dev/null");
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env("GIT_EDITOR", ":")
        .arg("--no-pager");
    for kv in SAFE_CONFIG {
        let user_owned = kv.starts_with("core.sshCommand=") || kv.starts_with("credential.helper=");
        if as_user && user_owned {
            continue;
        }
        cmd.arg("-c").arg(kv);
    }
    cmd
}

/// [`git`] as a shell command line's start (`VAR=… git --no-pager -c …`), for the git a script
/// runs on another host (the remote backend's worktrees there).
pub fn shell_git() -> String {
    let mut line = String::from(
        "GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat git --no-pager",
    );
    for kv in SAFE_CONFIG {
        line.push_str(&format!(" -c '{kv}'"));
    }
    line
}

/// `git -C repo` for a push with the user's credentials (see [`git_with`]).
pub(crate) fn git_as_user(repo: &Path) -> Command {
    let mut cmd = git_with(true);
    cmd.arg("-C").arg(repo);
    cmd
}

/// Whether a key of the repository's config (lower case, as git lists it) names a program
/// git would run, or sends git somewhere else, in a way the command line cannot turn off: a
/// filter, diff or merge driver (named by `.gitattributes`, which agents write), a URL
/// rewrite, a remote's programs, a signing program, another work tree. `push` adds what a
/// push with the user's credentials would run.
fn runs_something(key: &str, push: bool) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    let sub = parts.len() > 2;
    match first {
        "filter" => sub && matches!(last, "clean" | "smudge" | "process"),
        "diff" => sub && matches!(last, "command" | "textconv"),
        "merge" => sub && last == "driver",
        "url" => sub && matches!(last, "insteadof" | "pushinsteadof"),
        "remote" => sub && matches!(last, "uploadpack" | "receivepack" | "vcs"),
        "credential" => (sub || push) && last == "helper",
        "gpg" => last == "program" || key == "gpg.ssh.defaultkeycommand",
        "trailer" => sub && matches!(last, "command" | "cmd"),
        "core" => {
            matches!(key, "core.gitproxy" | "core.worktree")
                || push && matches!(key, "core.sshcommand" | "core.askpass")
        }
        _ => false,
    }
}

/// Refuses (naming the key and the file it is in) when the repository's own config (`.git/config`,
/// a worktree's, what they include) names a program git could run in a way [`git`] cannot
/// turn off (see `runs_something`): the daemon then runs no git there at all until the operator
/// removes it. System and global config are not read by [`git`].
pub fn check_config(repo: &Path) -> Result<(), WorktreeError> {
    check_config_for(repo, false)
}

pub(crate) fn check_config_for(repo: &Path, push: bool) -> Result<(), WorktreeError> {
    let o = output(git(repo).args(["config", "--list", "--show-origin", "--show-scope", "-z"]))?;
    if !o.ok {
        // Not a repository (yet): nothing of its config can run.
        return Ok(());
    }
    let mut found = Vec::new();
    let mut fields = o.stdout.split('\0');
    while let (Some(scope), Some(origin), Some(entry)) =
        (fields.next(), fields.next(), fields.next())
    {
        if scope == "command" {
            continue;
        }
        let key = entry
            .split('\n')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if runs_something(&key, push) {
            found.push(format!("{key} (in {})", origin.trim_start_matches("file:")));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(WorktreeError::UnsafeConfig {
        repo: repo.to_path_buf(),
        keys: found,
    })
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
    check_config(repo)?;
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
    check_config(repo)?;
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

/// The most bytes of git's patch kept: a diff is shown, not archived. The rest is counted as
/// it goes by, never held.
const MAX_PATCH: usize = 512 * 1024;

/// The most bytes the kept patch may take once encoded as JSON (a control character takes 6):
/// with the file list and the envelope, the reply stays inside the protocol's 1 MiB frame.
const MAX_PATCH_JSON: usize = 640 * 1024;

/// Past this many bytes git's patch is not even counted: git is stopped.
const MAX_PATCH_COUNTED: u64 = 1 << 30;

/// git's output of `cmd` read with a bounded buffer: its first `keep` bytes, how many more
/// there were (counted, not kept; git is killed once they pass `limit`, and `cut_short` says
/// so), whether git succeeded (a kill is not a failure) and its stderr's start.
struct Bounded {
    kept: Vec<u8>,
    more: u64,
    cut_short: bool,
    ok: bool,
    stderr: String,
}

fn bounded_output(cmd: &mut Command, keep: usize, limit: u64) -> Result<Bounded, WorktreeError> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let err_reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut head = Vec::new();
            let _ = (&mut e).take(64 * 1024).read_to_end(&mut head);
            let _ = std::io::copy(&mut e, &mut std::io::sink());
            String::from_utf8_lossy(&head).trim().to_string()
        })
    });
    let mut kept = Vec::new();
    let mut more = 0u64;
    let mut cut_short = false;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.into());
                }
            };
            let room = keep.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
            more += (n - room) as u64;
            if more > limit {
                cut_short = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait()?;
    let stderr = err_reader.and_then(|t| t.join().ok()).unwrap_or_default();
    Ok(Bounded {
        kept,
        more,
        cut_short,
        ok: status.success() || cut_short,
        stderr,
    })
}

/// How many bytes `c` takes in a JSON string.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `patch` (git's first bytes, `more` not read) cut so it fits [`MAX_PATCH_JSON`] as JSON,
/// ending with a line that says how much is not shown and how to see it.
fn cut_patch(patch: &[u8], more: u64, cut_short: bool, how: &str) -> String {
    let mut text = String::from_utf8_lossy(patch).into_owned();
    let mut json = 0usize;
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        json += json_len(c);
        if json > MAX_PATCH_JSON {
            end = i;
            break;
        }
    }
    let left = more + (text.len() - end) as u64;
    if left == 0 {
        return text;
    }
    text.truncate(end);
    format!(
        "{text}\n[agent-team: {}{left} more bytes not shown; `{how}` in a shell shows them (the teammate may have written that repository's git config: see README)]\n",
        if cut_short { "more than " } else { "" }
    )
}

/// `name`'s changes against the commit it started from, committed and uncommitted (new files
/// included): what [`finish`] would land. Reads only: the worktree's index is not touched.
/// Its `control_paths` are by the fixed list alone: [`diff_with`] adds the team's own.
pub fn diff(repo: &Path, name: &str, with_patch: bool) -> Result<WorkDiff, WorktreeError> {
    diff_with(repo, name, with_patch, &[])
}

/// The `git diff` of a work's changes: the live worktree `wt`'s files (staged in the scratch
/// `index`) against `fork`, else the branch's commits; `extra` before the revisions.
fn diff_command(
    repo: &Path,
    wt: Option<&Path>,
    index: &Path,
    fork: &str,
    branch: &str,
    extra: &[&str],
) -> Command {
    if let Some(wt) = wt {
        let mut c = git(wt);
        c.env("GIT_INDEX_FILE", index);
        c.args([
            "diff",
            "--cached",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
        ])
        .args(extra)
        .arg(fork);
        c
    } else {
        let mut c = git(repo);
        c.args([
            "diff",
            "--no-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
        ])
        .args(extra)
        .args([fork, branch]);
        c
    }
}

/// Stages every file of the worktree `wt` as it is (new ones included) into the scratch
/// `index`, a copy of its real one; its own index is not touched.
fn stage_all(wt: &Path, index: &Path) -> Result<(), WorktreeError> {
    let real = PathBuf::from(run(
        wt,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    )?);
    if real.exists() {
        std::fs::copy(&real, index)?;
    }
    let o = output(git(wt).env("GIT_INDEX_FILE", index).args(["add", "-A"]))?;
    if !o.ok {
        return Err(WorktreeError::Git {
            args: "add -A (into a scratch index)".into(),
            stderr: o.stderr,
        });
    }
    Ok(())
}

/// [`diff`], its `control_paths` by the rule `finish` refuses a merge by ([`control_changes`]),
/// `control_files` being the team's own (as [`FinishRequest::control_files`]).
pub fn diff_with(
    repo: &Path,
    name: &str,
    with_patch: bool,
    control_files: &[String],
) -> Result<WorkDiff, WorktreeError> {
    require_work(repo, name)?;
    check_config(repo)?;
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
    if live {
        check_config(&wt)?;
    }
    let uncommitted = live && !run(&wt, &["status", "--porcelain"])?.is_empty();
    // The worktree's files as they are, new ones included, in a throwaway index.
    let scratch = tempfile::Builder::new()
        .prefix("agent-team-diff-")
        .tempdir()?;
    let index = scratch.path().join("index");
    let diff_cmd = |extra: &[&str]| {
        diff_command(
            repo,
            live.then_some(wt.as_path()),
            &index,
            &fork,
            &branch,
            extra,
        )
    };
    let diff_args = |extra: &[&str]| -> Result<String, WorktreeError> {
        let o = output(&mut diff_cmd(extra))?;
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
        stage_all(&wt, &index)?;
    }
    // `-z`: the paths as they are (not quoted), so the control-plane rule sees them as
    // `finish` does.
    let files = parse_numstat(&diff_args(&["--numstat", "-z"])?);
    let control_paths = control_changes(files.iter().map(|f| f.path.as_str()), control_files);
    let patch = if with_patch {
        let o = bounded_output(&mut diff_cmd(&[]), MAX_PATCH, MAX_PATCH_COUNTED)?;
        if !o.ok {
            return Err(WorktreeError::Git {
                args: "diff".into(),
                stderr: o.stderr,
            });
        }
        let how = if live {
            format!("git -C {} diff {fork}", wt.display())
        } else {
            format!("git -C {} diff {fork} {branch}", repo.display())
        };
        Some(cut_patch(&o.kept, o.more, o.cut_short, &how))
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
        control_paths,
        patch,
    })
}

/// `git diff --numstat -z --no-renames` records: `ADDED\tREMOVED\tPATH\0`, `-` for a
/// binary file's counts.
fn parse_numstat(out: &str) -> Vec<FileChange> {
    out.split('\0')
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
