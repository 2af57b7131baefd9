//! `diff` and `finish`: a worktree teammate's work, shown and landed.

use crate::ctx::Ctx;
use crate::output;
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// How `finish` lands the work.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to do; none: show and ask.
    pub action: Option<FinishAction>,
    /// The branch to merge into.
    pub into: Option<String>,
    /// Keep the branch.
    pub keep: bool,
    /// Do not ask before discarding.
    pub yes: bool,
    /// Print JSON.
    pub json: bool,
    /// Land changes to the team's control plane (`--accept-control-changes`).
    pub accept_control: bool,
}

/// The team's workspace, from its stored configuration.
fn workspace(ctx: &Ctx) -> Result<std::path::PathBuf> {
    let config = ctx.reader_noting(false)?.config()?.with_context(|| {
        format!(
            "team {} has no stored configuration (start it once with `agent-team up`)",
            ctx.team
        )
    })?;
    let cfg: agent_team_config::TeamConfig =
        serde_json::from_value(config).context("cannot read the team's stored configuration")?;
    Ok(cfg.workspace)
}

/// A teammate's changes: from the daemon when it runs, else read here (a read starts no daemon).
fn work_diff(ctx: &Ctx, name: &str, patch: bool) -> Result<WorkDiff> {
    match ctx.reader_noting(false)?.work_diff(name, patch)? {
        Some(d) => Ok(d),
        None => bail!(crate::Hinted::new(
            format!(
                "{name} has no branch agent-team/{name}: it is not a worktree teammate, or its work was already finished"
            ),
            "see `agent-team ps` for the teammates"
        )),
    }
}

/// `agent-team diff NAME [--stat] [--json]`
pub fn diff(ctx: &Ctx, name: &str, stat: bool, json: bool) -> Result<ExitCode> {
    let d = work_diff(ctx, name, !stat)?;
    if json {
        output::json(&d);
        return Ok(ExitCode::SUCCESS);
    }
    for l in control_block(&d.control_paths, output::color_on_stdout()) {
        output::line(&l);
    }
    if let Some(p) = &d.patch {
        // The patch is the teammate's text: shown inert (`--json` has it as it is).
        print!("{}", text::printable_lines(p, ""));
    }
    for l in d.stat_lines() {
        output::line(&l);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `diff` shows first: the changed files that are the team's control plane (`finish
/// --merge` refuses them until the operator accepts them), bold red when `color`, each path
/// inert (it is the teammate's); nothing when there are none.
fn control_block(paths: &[String], color: bool) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    let loud = |t: String| {
        if color {
            format!("\x1b[1;31m{t}\x1b[0m")
        } else {
            t
        }
    };
    let mut out = vec![loud(
        "control-plane changes (finish --merge refuses them without --accept-control-changes):"
            .to_string(),
    )];
    out.extend(
        paths
            .iter()
            .map(|p| loud(format!("  {}", text::printable(p)))),
    );
    out.push(String::new());
    out
}

fn ask(question: &str) -> Result<String> {
    eprint!("{question} ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(answer.trim().to_lowercase())
}

/// The action to take: the one given, else asked on a terminal; `None` when the user chose to
/// keep the work as it is.
fn choose(ctx: &Ctx, name: &str, plan: &Plan) -> Result<Result<Option<FinishAction>, ExitCode>> {
    if let Some(a) = plan.action {
        if a == FinishAction::Discard && !plan.yes {
            if !std::io::stdin().is_terminal() {
                eprintln!(
                    "agent-team: error: discarding {name}'s work needs --yes when not asked on a terminal"
                );
                return Ok(Err(ExitCode::from(2)));
            }
            if !matches!(
                ask(&format!(
                    "Discard {name}'s work (its worktree and branch)? [y/N]"
                ))?
                .as_str(),
                "y" | "yes"
            ) {
                return Ok(Ok(None));
            }
        }
        return Ok(Ok(Some(a)));
    }
    let d = work_diff(ctx, name, false)?;
    for l in d.stat_lines() {
        eprintln!("{l}");
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "agent-team: error: say what to do with {name}'s work: --merge, --pr or --discard (see `agent-team finish --help`)"
        );
        return Ok(Err(ExitCode::from(2)));
    }
    Ok(Ok(
        match ask("[m]erge, open a [p]ull request, [d]iscard, or [k]eep it for now?")?.as_str() {
            "m" | "merge" => Some(FinishAction::Merge),
            "p" | "pr" => Some(FinishAction::Pr),
            "d" | "discard" => Some(FinishAction::Discard),
            _ => None,
        },
    ))
}

fn request(name: &str, action: FinishAction, plan: &Plan) -> Request {
    Request::WorkFinish {
        agent: name.to_string(),
        action,
        into: plan.into.clone(),
        keep: plan.keep,
        accept_control_changes: plan.accept_control,
    }
}

/// One line saying what happened.
fn said(o: &FinishOutcome, keep: bool) -> String {
    let committed = match o.committed.len() {
        0 => String::new(),
        n => format!(" ({n} commit(s) of its uncommitted changes first)"),
    };
    match o.action {
        FinishAction::Merge => format!(
            "{}: merged {} into {}{}{}{}",
            o.agent,
            o.branch,
            o.into.as_deref().unwrap_or("?"),
            if o.fast_forward {
                " (fast-forward)"
            } else {
                ""
            },
            committed,
            if o.removed {
                "; its worktree and branch are removed"
            } else {
                "; its branch is kept"
            }
        ),
        FinishAction::Pr => format!(
            "{}: pushed {} to {}{}; {}",
            o.agent,
            o.branch,
            o.pushed_to.as_deref().unwrap_or("?"),
            committed,
            match (&o.pr_url, &o.pr_hint) {
                (Some(u), _) => format!("pull request: {u}"),
                (None, Some(h)) => format!("open the pull request: {h}"),
                _ => "open the pull request on the remote".into(),
            }
        ),
        FinishAction::Discard => format!(
            "{}: discarded: its worktree is removed and {} is {}",
            o.agent,
            o.branch,
            if keep { "kept" } else { "deleted" }
        ),
    }
}

/// `agent-team finish NAME [--merge | --pr | --discard] …`
pub fn finish(ctx: &Ctx, name: &str, plan: &Plan) -> Result<ExitCode> {
    let action = match choose(ctx, name, plan)? {
        Err(code) => return Ok(code),
        Ok(None) => {
            output::line(&format!("{name}: its work is kept as it is"));
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Some(a)) => a,
    };
    match ctx.call(request(name, action, plan))? {
        Reply::WorkFinished { outcome } => {
            if plan.json {
                output::json(&outcome);
            } else {
                output::line(&said(&outcome, plan.keep));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

/// `agent-team finish --all …`: every worktree teammate whose tasks are done, one after the
/// other; a conflict or refusal for one is reported and the others still land (exit 1).
pub fn finish_all(ctx: &Ctx, plan: &Plan) -> Result<ExitCode> {
    let Some(action) = plan.action else {
        eprintln!(
            "agent-team: error: --all needs an action: --merge, --pr or --discard (see `agent-team finish --help`)"
        );
        return Ok(ExitCode::from(2));
    };
    if action == FinishAction::Discard && !plan.yes {
        eprintln!("agent-team: error: discarding every teammate's work needs --yes");
        return Ok(ExitCode::from(2));
    }
    let ws = workspace(ctx)?;
    let mut reader = ctx.reader_noting(false)?;
    let agents = reader.agents()?;
    let open: Vec<Task> = reader
        .tasks(None)?
        .into_iter()
        .filter(|t| !t.status.is_terminal())
        .collect();
    drop(reader);
    let mut results = Vec::new();
    let mut failed = false;
    for a in agents
        .iter()
        .filter(|a| agent_team_worktree::has_work(&ws, &a.name))
    {
        if open
            .iter()
            .any(|t| t.owner.as_deref() == Some(a.name.as_str()))
        {
            let why = format!("{}: skipped, it still has open tasks", a.name);
            if !plan.json {
                output::line(&why);
            }
            results.push(serde_json::json!({"agent": a.name, "skipped": why}));
            continue;
        }
        match ctx.call(request(&a.name, action, plan)) {
            Ok(Reply::WorkFinished { outcome }) => {
                if !plan.json {
                    output::line(&said(&outcome, plan.keep));
                }
                results.push(serde_json::json!({"agent": a.name, "outcome": outcome}));
            }
            Ok(other) => bail!("unexpected reply {other:?}"),
            Err(e) => {
                failed = true;
                let msg = crate::describe(&e);
                if !plan.json {
                    eprintln!("agent-team: error: {}: {msg}", a.name);
                }
                results.push(serde_json::json!({"agent": a.name, "error": msg}));
            }
        }
    }
    if plan.json {
        output::json(&results);
    } else if results.is_empty() {
        output::line("no worktree teammate has work to finish");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The end of a run: each worktree teammate (of `agents`, the roster as the run ended) whose
/// role (or the team) says `finish = "merge"` or `"pr"` is stopped and its work landed; a
/// conflict, or a change to the team's control plane without `accept_control`, leaves its
/// branch and is reported.
pub fn at_run_end(
    c: &mut agent_team_client::Client,
    cfg: &agent_team_config::TeamConfig,
    agents: Vec<AgentInfo>,
    quiet: bool,
    accept_control: bool,
) -> Vec<WorkResult> {
    let mut out = Vec::new();
    for a in agents.iter().filter(|a| a.name != names::LEADER) {
        let role = cfg.role(&a.role);
        // Only a worktree teammate (or a member on another host, whose branch comes home) has
        // a branch to land: nobody else's needs a look with git.
        let worktree = role.is_some_and(|r| r.isolation == agent_team_config::Isolation::Worktree);
        if !worktree && a.host.is_none() {
            continue;
        }
        let policy = role.and_then(|r| r.finish).unwrap_or(cfg.finish);
        let action = match policy {
            FinishPolicy::Keep => continue,
            FinishPolicy::Merge => FinishAction::Merge,
            FinishPolicy::Pr => FinishAction::Pr,
        };
        if !agent_team_worktree::has_work(&cfg.workspace, &a.name) {
            continue;
        }
        // Its work must not change while it lands.
        if a.status.is_live() {
            let _ = c.call(Request::Kill {
                name: a.name.clone(),
                reason: Some("the run ended; its work is being landed".into()),
            });
        }
        let req = Request::WorkFinish {
            agent: a.name.clone(),
            action,
            into: None,
            keep: false,
            accept_control_changes: accept_control,
        };
        let result = match c.call(req) {
            Ok(Reply::WorkFinished { outcome }) => {
                if !quiet {
                    eprintln!("agent-team: {}", said(&outcome, false));
                }
                WorkResult {
                    agent: a.name.clone(),
                    outcome: Some(outcome),
                    error: None,
                }
            }
            Ok(other) => WorkResult {
                agent: a.name.clone(),
                outcome: None,
                error: Some(format!("unexpected reply {other:?}")),
            },
            Err(e) => {
                let msg = match &e {
                    agent_team_client::ClientError::Server(b)
                    | agent_team_client::ClientError::Refused(b) => b.message.clone(),
                    other => other.to_string(),
                };
                eprintln!("agent-team: {}: its work did not land: {msg}", a.name);
                WorkResult {
                    agent: a.name.clone(),
                    outcome: None,
                    error: Some(msg),
                }
            }
        };
        out.push(result);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_changes_come_first_loud_on_a_terminal_and_inert() {
        assert!(control_block(&[], true).is_empty());
        let paths = vec![
            "agent-team.toml".to_string(),
            ".claude/settings\u{1b}]0;x\u{7}.json".to_string(),
        ];
        let plain = control_block(&paths, false);
        assert!(plain[0].starts_with("control-plane changes (finish --merge refuses"));
        assert_eq!(plain[1], "  agent-team.toml");
        assert!(!plain[2].contains('\u{1b}'), "{:?}", plain[2]);
        assert!(plain.iter().all(|l| !l.contains("\x1b[")));
        let loud = control_block(&paths, true);
        assert!(
            loud[0].starts_with("\x1b[1;31mcontrol-plane changes"),
            "{:?}",
            loud[0]
        );
        assert!(loud[1].ends_with("\x1b[0m"));
    }
}
