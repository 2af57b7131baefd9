//! Running the agent tools. What the tools are (names, who gets them, argument types, schemas,
//! docs/TOOLS.md) is defined once in `agent-team-tools`; this module gives an agent its share
//! of that catalogue and runs a parsed [`ToolCall`].
//!
//! Team tools are requests to the daemon (which still enforces leader-only operations). Workspace
//! tools act on files under the agent's workspace only: a path that escapes it is refused.

mod files;
mod memory;
mod plans;
mod shell;
mod team;
mod todos;
mod web;

pub use agent_team_tools::{ToolArgError, ToolCall, markdown};
pub use files::{confine, landing};
pub use web::html_to_text;

use crate::link::{CallError, Link};
use agent_team_config::policy::{self, perms};
use agent_team_config::{PermAction, PolicyRule, Role, TeamConfig};
use agent_team_model::ToolSpec;
use agent_team_protocol::*;
use agent_team_tools::aliases::{self, Naming, Offered};
use agent_team_tools::{
    CATALOGUE, DECIDE_PERMISSION, LEADER_TOOLS, SUBMIT_PLAN, TEAMMATE_TOOLS, lookup,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tools an agent gets: its team tools (leader or teammate), its role's workspace tools, and
/// `decide_permission` for a leader that approves.
pub fn tool_names(role: &Role, is_leader: bool, leader_approves: bool) -> Vec<&'static str> {
    let team: &[&str] = if is_leader {
        LEADER_TOOLS
    } else {
        TEAMMATE_TOOLS
    };
    let mut names: Vec<&'static str> = CATALOGUE
        .iter()
        .map(|t| t.name)
        .filter(|n| team.contains(n) || role.tools.iter().any(|r| r == n))
        .collect();
    if is_leader && leader_approves && !names.contains(&DECIDE_PERMISSION) {
        names.push(DECIDE_PERMISSION);
    }
    names
}

/// The tools of an agent whose plan is required, from its full set `names`: while it plans
/// (`planning`), only those that change nothing in the workspace
/// (`agent_team_perms::allowed_while_planning`) and `submit_plan`; once approved, the full set
/// without `submit_plan`.
pub fn plan_gate(names: &[&'static str], planning: bool) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|n| *n != SUBMIT_PLAN && (!planning || perms::allowed_while_planning(n)))
        .collect();
    if planning {
        out.push(SUBMIT_PLAN);
    }
    out
}

/// Why a call of `tool` is refused while the agent's plan is not approved, when it is one of
/// its tools once approved.
pub fn refused_while_planning(tool: &str) -> Option<String> {
    (!perms::allowed_while_planning(tool)).then(|| {
        format!(
            "{tool} refused: your plan is not approved yet, so you work read-only. Write your \
             plan and call submit_plan; once the leader or the operator approves it you get \
             {tool} and the rest of your tools"
        )
    })
}

/// The model's view of those tools.
pub fn specs(names: &[&str]) -> Vec<ToolSpec> {
    names
        .iter()
        .filter_map(|n| lookup(n))
        .map(|t| ToolSpec {
            name: t.name.to_string(),
            description: t.description.to_string(),
            parameters: t.schema_shared(),
        })
        .collect()
}

/// The model's view of those tools as a role's `tool_names` asks (`naming`): another system's
/// names and schemas for the tools it has a counterpart of (Qwen Code's `task_update` in place
/// of `claim_task`, `update_task_status`, ...), ours for the rest.
pub fn specs_named(names: &[&str], naming: &Naming) -> Vec<ToolSpec> {
    aliases::offered(names, naming)
        .into_iter()
        .filter_map(|o| match o {
            Offered::Ours(n) => specs(&[n]).pop(),
            Offered::Theirs(t) => Some(ToolSpec {
                name: t.name.to_string(),
                description: t.description.to_string(),
                parameters: Arc::new(t.schema()),
            }),
        })
        .collect()
}

/// The names the model is offered its tools `names` under, by `naming` (see [`specs_named`]).
pub fn offered_names(names: &[&str], naming: &Naming) -> Vec<&'static str> {
    aliases::offered(names, naming)
        .iter()
        .map(Offered::name)
        .collect()
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The text the model gets back.
    pub content: String,
    /// Whether it failed.
    pub is_error: bool,
    /// The answer, when `finish_team` succeeded.
    pub finished: Option<String>,
}

impl ToolOutcome {
    fn ok(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: false,
            finished: None,
        }
    }
    /// A failure the model is told about.
    pub fn err(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: true,
            finished: None,
        }
    }
}

/// What the policy looks at for a call: the command for `bash`; the address for `web_fetch`
/// and the query for `web_search`; for the file tools (`grep` too) the path as the file system
/// sees it, relative to the workspace root (`./a`, `a//b`, `x/../a`, an absolute path inside
/// the workspace and a symlink inside it all give the same `a`), so a rule on `.github/*`
/// cannot be sidestepped by spelling; otherwise the arguments `args` as the model sent them.
pub fn policy_input(root: &Path, call: &ToolCall, args: &Value) -> String {
    let path = match call {
        ToolCall::Bash(a) => return a.command.clone(),
        ToolCall::WebFetch(a) => return a.url.trim().to_string(),
        ToolCall::WebSearch(a) => return a.query.trim().to_string(),
        ToolCall::Glob(a) => return a.pattern.clone(),
        ToolCall::ReadFile(a) => Some(&a.path),
        ToolCall::WriteFile(a) => Some(&a.path),
        ToolCall::EditFile(a) => Some(&a.path),
        ToolCall::ListFiles(a) => a.path.as_ref(),
        ToolCall::Grep(a) => a.path.as_ref(),
        _ => return args.to_string(),
    };
    let path = path.map_or(".", String::as_str);
    files::workspace_path(root, path).unwrap_or_else(|| path.to_string())
}

/// Where a tool runs.
pub struct ToolCtx {
    /// The agent's link to its daemon.
    pub link: Arc<Link>,
    /// The workspace root (canonical).
    pub root: PathBuf,
    /// Where `bash` commands are placed, so stopping the agent stops them too.
    pub groups: crate::CommandGroups,
    /// The team file the team was started from (canonical), protected whatever its name.
    pub team_file: Option<PathBuf>,
    /// The scripts the team's `[hooks]` and `[notify]` commands run (canonical): the daemon
    /// runs them later, so writing one is asked whatever the rules say.
    pub runs_later: Vec<PathBuf>,
    /// The agent's model turns so far (the leader's `finish_team` reports them as the run's
    /// rounds).
    pub turns: Arc<std::sync::atomic::AtomicU32>,
    /// The team file's `[search]`, where `web_search` sends its queries (none: the tool says
    /// how to configure one).
    pub search: Option<agent_team_config::SearchSettings>,
}

/// The file `config` was loaded from, canonical: a relative source is taken in the workspace
/// (the team file's directory), whatever the worker's current directory is.
pub fn team_file(config: &TeamConfig) -> Option<PathBuf> {
    let source = config.source.as_ref()?;
    let path = if source.is_absolute() {
        source.clone()
    } else {
        config.workspace.join(source.file_name()?)
    };
    path.canonicalize().ok()
}

/// The scripts `config`'s hooks and notify command run, canonical (see [`ToolCtx::runs_later`]).
pub fn runs_later(config: &TeamConfig) -> Vec<PathBuf> {
    config
        .files_that_run_later()
        .into_iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect()
}

/// A write of `call` (with `input` its [`policy_input`]) to a script in `runs_later`.
fn runs_later_write(
    root: &Path,
    runs_later: &[PathBuf],
    call: &ToolCall,
    input: &str,
) -> Option<perms::Finding> {
    let hit = |shown: &str, path: &Path| {
        let real = landing(root, path);
        runs_later.contains(&real).then(|| perms::Finding {
            path: shown.to_string(),
            why: "the team's [hooks] or [notify] run it: what is written there runs later".into(),
        })
    };
    match call {
        ToolCall::WriteFile(_) | ToolCall::EditFile(_) => hit(input, &root.join(input)),
        ToolCall::Bash(a) => perms::write_targets(&a.command)
            .iter()
            .filter(|w| w.kind == perms::WordKind::Literal)
            .find_map(|w| hit(&w.text, Path::new(&w.text))),
        _ => None,
    }
}

/// What the role's policy makes of a call once protected paths are taken into account.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// What the policy and the approver see (see [`policy_input`]).
    pub input: String,
    /// What to do.
    pub action: PermAction,
    /// Why it is asked when a protected write is the reason (for the approver), else empty.
    pub reason: String,
}

/// The permission check of a call: the role's rules (`agent-team-perms`), then, for a call they
/// allow, its writes: a write by `write_file`/`edit_file` or a shell line's visible write
/// (redirections, `tee`, `cp`, `mv`, `git config`, ...) to a protected path (`.git`,
/// `.agent-team`, `.claude`, a team file, git's home configuration) is asked instead. Paths are
/// resolved from the workspace as the write would go: `..` and symlinks included.
pub fn check(ctx: &ToolCtx, rules: &[PolicyRule], call: &ToolCall, args: &Value) -> Checked {
    let input = policy_input(&ctx.root, call, args);
    let action = perms::decide_rules(&policy::rules(rules), call.name(), &input);
    let found = match action {
        perms::Action::Allow => protected_write(&ctx.root, ctx.team_file.as_deref(), call, &input)
            .or_else(|| runs_later_write(&ctx.root, &ctx.runs_later, call, &input)),
        _ => None,
    };
    let d = perms::guard(action, found);
    Checked {
        input,
        action: policy::from_engine(d.action),
        reason: d.protected.map(|f| f.to_string()).unwrap_or_default(),
    }
}

/// The first protected path `call` writes, with `input` its [`policy_input`], `root` the
/// workspace and `team_file` the file the team was started from (both canonical).
pub fn protected_write(
    root: &Path,
    team_file: Option<&Path>,
    call: &ToolCall,
    input: &str,
) -> Option<perms::Finding> {
    match call {
        // The input is already the landing place relative to the workspace (or, outside it, the
        // path as given: the tool refuses it anyway).
        ToolCall::WriteFile(_) | ToolCall::EditFile(_) => {
            perms::protect::check_path(input, perms::WordKind::Literal)
                .or_else(|| team_file_finding(team_file, &root.join(input), input))
        }
        ToolCall::Bash(a) => perms::write_targets(&a.command)
            .iter()
            .find_map(|w| protected_target(root, team_file, w)),
        _ => None,
    }
}

/// Whether a shell write target is protected: by its spelling, then where it lands.
fn protected_target(
    root: &Path,
    team_file: Option<&Path>,
    w: &perms::Word,
) -> Option<perms::Finding> {
    if let Some(f) = perms::protect::check_word(w) {
        return Some(f);
    }
    if w.kind != perms::WordKind::Literal {
        return None;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = match (w.text.strip_prefix('~'), &home) {
        (Some(""), Some(h)) => h.clone(),
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(rest.trim_start_matches('/')),
        // `~user/...` or no home: judged by spelling alone (done above).
        (Some(_), _) => return None,
        (None, _) => PathBuf::from(&w.text),
    };
    let real = landing(root, &path);
    let shown = match real.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => real.display().to_string(),
    };
    let via = |f: perms::Finding| perms::Finding {
        path: if shown == w.text {
            f.path
        } else {
            format!("{} (lands on {shown})", w.text)
        },
        why: f.why,
    };
    if let Some(f) = perms::protect::check_path(&shown, perms::WordKind::Literal) {
        return Some(via(f));
    }
    if let Some(h) = &home {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| h.join(".config"));
        let h = h.canonicalize().unwrap_or_else(|_| h.clone());
        let config = config.canonicalize().unwrap_or(config);
        if real == h.join(".gitconfig") || real.starts_with(config.join("git")) {
            return Some(via(perms::Finding {
                path: shown.clone(),
                why: "it is git's configuration for every repository: git runs commands named \
                      there"
                    .into(),
            }));
        }
    }
    team_file_finding(team_file, &real, &w.text)
}

fn team_file_finding(team_file: Option<&Path>, real: &Path, shown: &str) -> Option<perms::Finding> {
    (team_file == Some(real)).then(|| perms::Finding {
        path: shown.to_string(),
        why: "it is the file the team was started from: it says which roles, permissions and \
              commands the team has"
            .into(),
    })
}

/// Runs one tool call with already-parsed arguments.
pub async fn run(ctx: &ToolCtx, call: &ToolCall) -> ToolOutcome {
    match run_inner(ctx, call).await {
        Ok(o) => o,
        Err(e) => ToolOutcome::err(e),
    }
}

/// Whether the call is one request to the daemon whose effect a call after it in the same turn
/// does not depend on, so several of them may go out together (in order) and share one
/// commit: starting a teammate, adding a task, a message. Not `update_task_status`: a
/// `task_completed` hook holds a completion until it decides, and a message after it ("done")
/// must not overtake it; nor claims, releases or assignments (a later call often builds on
/// them).
pub fn one_request(call: &ToolCall) -> bool {
    matches!(
        call,
        ToolCall::SpawnTeammate(_)
            | ToolCall::CreateTask(_)
            | ToolCall::SendMessage(_)
            | ToolCall::Broadcast(_)
    )
}

/// Each tool's handler; the match is exhaustive, so a tool added to the catalogue without a
/// handler does not compile.
async fn run_inner(ctx: &ToolCtx, call: &ToolCall) -> Result<ToolOutcome, String> {
    match call {
        ToolCall::SpawnTeammate(a) => team::spawn_teammate(ctx, a).await,
        ToolCall::SpawnTeam(a) => team::spawn_team(ctx, a).await,
        ToolCall::SetConfig(a) => team::set_config(ctx, a).await,
        ToolCall::DissolveTeam(a) => team::dissolve_team(ctx, a).await,
        ToolCall::WaitFor(a) => team::wait_for(ctx, a).await,
        ToolCall::CloseTeammate(a) => team::close_teammate(ctx, a).await,
        ToolCall::ResumeTeammate(a) => team::resume_teammate(ctx, a).await,
        ToolCall::DiffTeammate(a) => team::diff_teammate(ctx, a).await,
        ToolCall::FinishTeammateWork(a) => team::finish_teammate_work(ctx, a).await,
        ToolCall::CreateTask(a) => team::create_task(ctx, a).await,
        ToolCall::AssignTask(a) => team::assign_task(ctx, a).await,
        ToolCall::SendMessage(a) => team::send_message(ctx, a).await,
        ToolCall::Broadcast(a) => team::broadcast(ctx, a).await,
        ToolCall::ListTeammates(_) => team::list_teammates(ctx).await,
        ToolCall::ListTasks(a) => team::list_tasks(ctx, a).await,
        ToolCall::FinishTeam(a) => team::finish_team(ctx, a).await,
        ToolCall::DecidePermission(a) => team::decide_permission(ctx, a).await,
        ToolCall::DecidePlan(a) => plans::decide_plan(ctx, a).await,
        ToolCall::SubmitPlan(a) => plans::submit_plan(ctx, a).await,
        ToolCall::ClaimTask(a) => team::claim_task(ctx, a).await,
        ToolCall::ReadInbox(a) => team::read_inbox(ctx, a).await,
        ToolCall::UpdateTaskStatus(a) => team::update_task_status(ctx, a).await,
        ToolCall::ReleaseTask(a) => team::release_task(ctx, a).await,
        ToolCall::MemorySet(a) => memory::memory_set(ctx, a).await,
        ToolCall::MemoryGet(a) => memory::memory_get(ctx, a).await,
        ToolCall::MemoryList(a) => memory::memory_list(ctx, a).await,
        ToolCall::ReadFile(a) => files::read_file(ctx, a).await,
        ToolCall::WriteFile(a) => files::write_file(ctx, a).await,
        ToolCall::EditFile(a) => files::edit_file(ctx, a).await,
        ToolCall::ListFiles(a) => files::list_files(ctx, a).await,
        ToolCall::Grep(a) => files::grep(ctx, a).await,
        ToolCall::Glob(a) => files::glob(ctx, a).await,
        ToolCall::WebFetch(a) => web::web_fetch(ctx, a).await,
        ToolCall::WebSearch(a) => web::web_search(ctx, a).await,
        ToolCall::TodoWrite(a) => todos::todo_write(ctx, a).await,
        ToolCall::Bash(a) => Ok(shell::run(ctx, a).await),
    }
}

async fn daemon(ctx: &ToolCtx, req: Request) -> Result<Reply, String> {
    match ctx.link.call_retry(req).await {
        Ok(r) => Ok(r),
        Err(CallError::Server(e)) => {
            let details = if e.details.is_null() {
                String::new()
            } else {
                format!(" {}", e.details)
            };
            Err(format!("{}: {}{details}", e.code, e.message))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the policy sees for a call of `name` with `args`.
    fn input(root: &Path, name: &str, args: Value) -> String {
        policy_input(root, &ToolCall::parse(name, &args).unwrap(), &args)
    }

    #[test]
    fn file_rules_see_the_path_however_it_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".github/workflows")).unwrap();
        std::os::unix::fs::symlink(root.join(".github/workflows"), root.join("ci")).unwrap();
        let abs = root.join(".github/workflows/ci.yml").display().to_string();
        for spelling in [
            ".github/workflows/ci.yml",
            "./.github/workflows/ci.yml",
            ".github//workflows/ci.yml",
            "src/../.github/workflows/ci.yml",
            abs.as_str(),
            "ci/ci.yml",
        ] {
            let args = serde_json::json!({"path": spelling, "content": "x"});
            assert_eq!(
                input(&root, "write_file", args),
                ".github/workflows/ci.yml",
                "{spelling}"
            );
        }
        assert_eq!(
            input(&root, "grep", serde_json::json!({"pattern": "x"})),
            "."
        );
        assert_eq!(
            input(&root, "list_files", serde_json::json!({"path": null})),
            "."
        );
        assert_eq!(
            input(&root, "bash", serde_json::json!({"command": "ls"})),
            "ls"
        );
        // web_search is judged on its query, as web_fetch is on its address.
        assert_eq!(
            input(
                &root,
                "web_search",
                serde_json::json!({"query": " rust traits ", "count": 3})
            ),
            "rust traits"
        );
        // Team tools: the arguments as the model sent them.
        assert_eq!(
            input(
                &root,
                "send_message",
                serde_json::json!({"to": "b1", "text": "hi"})
            ),
            r#"{"text":"hi","to":"b1"}"#
        );
    }

    /// What [`protected_write`] finds for a call of `name` with `args` in `root`.
    fn protected(root: &Path, team_file: Option<&Path>, name: &str, args: Value) -> Option<String> {
        let call = ToolCall::parse(name, &args).unwrap();
        let input = policy_input(root, &call, &args);
        protected_write(root, team_file, &call, &input).map(|f| f.to_string())
    }

    /// Issue 25: a script the team's hooks run is protected like the team file: a model's
    /// `write_file`, `edit_file` or shell redirection to it is asked whatever the rules say.
    #[test]
    fn a_write_to_a_script_a_hook_runs_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("scripts")).unwrap();
        std::fs::write(root.join("scripts/check.sh"), "true\n").unwrap();
        std::fs::write(root.join("notes.txt"), "n\n").unwrap();
        let runs_later = vec![root.join("scripts/check.sh")];
        let found = |name: &str, args: Value| {
            let call = ToolCall::parse(name, &args).unwrap();
            let input = policy_input(&root, &call, &args);
            runs_later_write(&root, &runs_later, &call, &input).map(|f| f.to_string())
        };
        let file = |p: &str| serde_json::json!({"path": p, "content": "x"});
        for (name, args) in [
            ("write_file", file("scripts/check.sh")),
            ("write_file", file("scripts/../scripts/check.sh")),
            (
                "bash",
                serde_json::json!({"command": "echo 'cat ~/x' >> scripts/check.sh"}),
            ),
        ] {
            let f = found(name, args.clone()).unwrap_or_default();
            assert!(f.contains("[hooks]"), "{name} {args}: {f}");
        }
        assert_eq!(found("write_file", file("notes.txt")), None);
    }

    /// Issue 12, "Protected paths": writes into `.git` and the team's own files are found however
    /// they are spelled: `..`, a symlink, a shell redirection, `tee`, `cp`, `git config`.
    #[test]
    fn protected_writes_are_found_through_dot_dots_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("team.toml"), "name = \"t\"\n").unwrap();
        std::os::unix::fs::symlink(root.join(".git"), root.join("g")).unwrap();
        std::os::unix::fs::symlink(root.join("team.toml"), root.join("t")).unwrap();
        let team = root.join("team.toml");
        let team = Some(team.as_path());
        let file = |p: &str| serde_json::json!({"path": p, "content": "x"});
        let sh = |c: &str| serde_json::json!({"command": c});
        for (name, args) in [
            ("write_file", file(".git/config")),
            ("write_file", file("sub/../.git/config")),
            ("write_file", file("g/config")),
            ("write_file", file("g/hooks/pre-commit")),
            ("write_file", file("team.toml")),
            ("write_file", file("agent-team.toml")),
            ("write_file", file(".agent-team/agents/x.md")),
            (
                "edit_file",
                serde_json::json!({"path": "g/config", "old_string": "a", "new_string": "b"}),
            ),
            ("bash", sh("echo '[core]' >> g/config")),
            ("bash", sh("echo x > sub/../.git/config")),
            ("bash", sh("cat x | tee sub/../g/hooks/post-checkout")),
            ("bash", sh("cd sub && cp x ../g/config")),
            ("bash", sh("echo x > t")),
            ("bash", sh("git config core.fsmonitor ./x")),
            ("bash", sh("git status > \"$OUT\"")),
        ] {
            assert!(
                protected(&root, team, name, args.clone()).is_some(),
                "{name} {args}"
            );
        }
        for (name, args) in [
            ("write_file", file("src/main.rs")),
            ("write_file", file("sub/gx")),
            ("read_file", serde_json::json!({"path": "g/config"})),
            ("bash", sh("cargo test > out.txt 2>&1")),
            ("bash", sh("cat g/config")),
            ("bash", sh("git status -s")),
        ] {
            assert!(
                protected(&root, team, name, args.clone()).is_none(),
                "{name} {args}"
            );
        }
        let why = protected(&root, team, "bash", sh("echo x > g/config")).unwrap();
        assert!(why.contains("g/config (lands on .git/config)"), "{why}");
    }

    #[test]
    fn every_tool_an_agent_can_get_has_a_spec_with_an_object_schema() {
        let all: Vec<&str> = agent_team_tools::CATALOGUE.iter().map(|t| t.name).collect();
        let got = specs(&all);
        assert_eq!(got.len(), all.len());
        for (s, name) in got.iter().zip(&all) {
            assert_eq!(&s.name, name);
            assert_eq!(s.parameters["type"], "object", "{name}");
            assert_eq!(
                *s.parameters,
                lookup(name).unwrap().schema(),
                "{name}: the catalogue's schema"
            );
        }
        assert!(specs(&["teleport"]).is_empty());
        assert!(markdown().contains("`bash`"));
        // Every agent's list holds the one schema of each tool, not a copy of its own.
        let again = specs(&all);
        for (a, b) in got.iter().zip(&again) {
            assert!(
                std::sync::Arc::ptr_eq(&a.parameters, &b.parameters),
                "{}",
                a.name
            );
        }
    }

    /// A planning agent is offered no tool that changes the workspace, and `submit_plan`;
    /// the catalogue's writing tools (audience `WRITES`) are exactly those the gate holds back.
    #[test]
    fn planning_hides_every_writing_tool_and_offers_submit_plan() {
        let cfg = agent_team_config::builtin_roles();
        let full = tool_names(&cfg["worker"], false, false);
        assert!(full.contains(&"write_file") && !full.contains(&SUBMIT_PLAN));
        let planning = plan_gate(&full, true);
        for t in CATALOGUE {
            let writes = t.audience == agent_team_tools::Audience::WRITES;
            assert_eq!(
                refused_while_planning(t.name).is_some(),
                writes,
                "{}: the plan gate must hold back exactly the writing tools",
                t.name
            );
            if writes {
                assert!(!planning.contains(&t.name), "{}", t.name);
            }
        }
        assert!(planning.contains(&SUBMIT_PLAN) && planning.contains(&"read_file"));
        assert!(planning.contains(&"send_message") && planning.contains(&"claim_task"));
        let approved = plan_gate(&full, false);
        assert_eq!(approved, full);
    }

    #[test]
    fn role_limits_workspace_tools_not_team_tools() {
        let cfg = agent_team_config::builtin_roles();
        let explorer = &cfg["explorer"];
        let names = tool_names(explorer, false, false);
        assert!(names.contains(&"claim_task") && names.contains(&"read_file"));
        assert!(!names.contains(&"bash") && !names.contains(&"write_file"));
        let leader = tool_names(&cfg["leader"], true, true);
        assert!(leader.contains(&"spawn_teammate") && leader.contains(&"decide_permission"));
        assert!(!leader.contains(&"claim_task"));
        // Everyone reads the team's memory; the leader and workers write it.
        for (role, is_leader, writes) in [
            ("leader", true, true),
            ("worker", false, true),
            ("explorer", false, false),
            ("reviewer", false, false),
        ] {
            let names = tool_names(&cfg[role], is_leader, false);
            assert!(
                names.contains(&"memory_get") && names.contains(&"memory_list"),
                "{role}: {names:?}"
            );
            assert_eq!(names.contains(&"memory_set"), writes, "{role}: {names:?}");
        }
    }

    /// Issue 61 item 3: a role with `tool_names = "qwen"` is offered Qwen Code's team tools
    /// under its names and schemas in place of ours, its workspace tools and the team tools
    /// Qwen Code has no counterpart of under ours; without it, ours exactly.
    #[test]
    fn a_qwen_named_role_is_offered_qwen_tools_with_their_schemas() {
        let cfg = agent_team_config::builtin_roles();
        let qwen = aliases::naming(Some("qwen")).unwrap();
        let leader = specs_named(&tool_names(&cfg["leader"], true, false), qwen);
        let by_name = |list: &[ToolSpec], n: &str| list.iter().find(|s| s.name == n).cloned();
        let update = by_name(&leader, "task_update").unwrap();
        assert_eq!(update.parameters["required"], serde_json::json!(["taskId"]));
        assert_eq!(update.parameters["properties"]["taskId"]["type"], "string");
        let create = by_name(&leader, "task_create").unwrap();
        assert_eq!(
            create.parameters["required"],
            serde_json::json!(["subject", "description"])
        );
        let agent = by_name(&leader, "agent").unwrap();
        assert!(agent.parameters["properties"]["subagent_type"].is_object());
        let send = by_name(&leader, "send_message").unwrap();
        assert_eq!(
            send.parameters["required"],
            serde_json::json!(["to", "message"])
        );
        for n in [
            "team_create",
            "team_delete",
            "task_list",
            "wait_for",
            "read_file",
        ] {
            assert!(by_name(&leader, n).is_some(), "{n}");
        }
        for n in [
            "create_task",
            "spawn_teammate",
            "list_tasks",
            "finish_team",
            "assign_task",
        ] {
            assert!(by_name(&leader, n).is_none(), "{n}");
        }
        let worker = specs_named(&tool_names(&cfg["worker"], false, false), qwen);
        assert!(by_name(&worker, "task_update").is_some());
        assert!(by_name(&worker, "claim_task").is_none() && by_name(&worker, "agent").is_none());
        // Ours: the catalogue's, the same shared schemas.
        let names = tool_names(&cfg["leader"], true, false);
        let ours = specs_named(&names, &aliases::AGENT_TEAM);
        let plain = specs(&names);
        assert_eq!(ours.len(), plain.len());
        for (a, b) in ours.iter().zip(&plain) {
            assert!(
                std::sync::Arc::ptr_eq(&a.parameters, &b.parameters),
                "{}",
                a.name
            );
        }
    }
}
