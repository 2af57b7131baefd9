//! The commands that read and steer the team's board: ps, task, send, inbox, perms, events.

use crate::cli::TaskCmd;
use crate::ctx::{Ctx, Reader};
use crate::output::{self, ago, opt, short};
use agent_team_client::Client;
use agent_team_protocol::*;
use anyhow::{Result, bail};
use std::process::ExitCode;

/// `agent-team ps`
pub fn ps(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let agents = ctx.reader()?.agents()?;
    if json {
        output::json(&agents);
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        eprintln!(
            "agent-team: team {} has no agents yet (start it with `agent-team up`)",
            ctx.team
        );
        return Ok(ExitCode::SUCCESS);
    }
    // HOST only when a member runs on another machine.
    let remote = agents.iter().any(|a| a.host.is_some());
    // CONTAINER only when a member runs in one: its image and limits.
    let contained = agents.iter().any(|a| a.container.is_some());
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let mut status = a.status.to_string();
            // A live teammate whose plan is not approved yet works read-only: `planning`.
            if a.is_planning() && a.status.is_live() {
                status = match a.plan.as_ref().map(|p| p.state) {
                    Some(PlanState::Submitted) => "planning (submitted)".to_string(),
                    _ => "planning".to_string(),
                };
            }
            if a.status == AgentStatus::Failed && a.last_exit.as_deref() == Some("budget") {
                status = "failed: budget".to_string();
            } else if let Some(e) = &a.error {
                status = format!("{status} ({})", short(e, 40));
            }
            let mut row = vec![
                format!("{}@{}", a.name, ctx.team),
                a.role.clone(),
                status,
                a.backend.clone(),
                opt(&a.pid),
                opt(&a.pane),
                a.incarnation.to_string(),
                a.restarts.to_string(),
                opt(&a.current_task),
                ago(a.last_activity),
                a.usage
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |u| u.tokens().to_string()),
                crate::cmd::usage::cost(a.usage.as_ref().and_then(|u| u.cost_usd)),
            ];
            if remote {
                row.insert(
                    4,
                    a.host
                        .as_deref()
                        .map_or_else(|| "-".into(), text::printable),
                );
            }
            if contained {
                row.push(a.container.as_ref().map_or_else(
                    || "-".into(),
                    |c| text::printable(&format!("{} ({})", c.image, c.limits())),
                ));
            }
            row
        })
        .collect();
    // Each agent's name in its colour, on a terminal only and never with NO_COLOR.
    let colors: Vec<Option<String>> = if output::color_on_stdout() {
        agents.iter().map(|a| a.color.clone()).collect()
    } else {
        Vec::new()
    };
    let mut header = vec![
        "NAME", "ROLE", "STATUS", "BACKEND", "PID", "PANE", "INC", "RESTARTS", "TASK", "ACTIVE",
        "TOKENS", "COST",
    ];
    if remote {
        header.insert(4, "HOST");
    }
    if contained {
        header.push("CONTAINER");
    }
    output::table_painted(&header, &rows, &colors);
    Ok(ExitCode::SUCCESS)
}

/// `agent-team task …`
pub fn task(ctx: &Ctx, cmd: TaskCmd) -> Result<ExitCode> {
    let (req, json) = match cmd {
        TaskCmd::Add {
            title,
            desc,
            run,
            blocked_by,
            assign,
            json,
        } => (
            Request::TaskAdd {
                title,
                description: desc.unwrap_or_default(),
                run,
                blocked_by,
                assign,
                key: None,
            },
            json,
        ),
        TaskCmd::List { status, json } => {
            let status = match status {
                Some(s) => match TaskStatus::parse(&s) {
                    Some(st) => Some(st),
                    None => bail!(crate::Hinted::new(
                        format!("unknown task status {s:?}"),
                        "use pending, in_progress, completed, failed or cancelled"
                    )),
                },
                None => None,
            };
            let tasks = ctx.reader()?.tasks(status)?;
            if json {
                output::json(&tasks);
            } else {
                print_tasks(&tasks);
            }
            return Ok(ExitCode::SUCCESS);
        }
        TaskCmd::Show { id, json, raw } => {
            let task = ctx.reader()?.task(id)?;
            if raw {
                print_task(&task, &|s: &str| s.to_string());
            } else {
                show_task(&task, json);
            }
            return Ok(ExitCode::SUCCESS);
        }
        TaskCmd::Assign { id, name } => (Request::TaskAssign { id, to: name }, false),
        TaskCmd::Release { id } => (Request::TaskRelease { id }, false),
        TaskCmd::Cancel { id } => (Request::TaskCancel { id }, false),
        TaskCmd::Retry { id } => (Request::TaskRetry { id }, false),
    };
    let task = match ctx.call(req)? {
        Reply::Task { task } => task,
        other => bail!("unexpected reply {other:?}"),
    };
    show_task(&task, json);
    Ok(ExitCode::SUCCESS)
}

fn show_task(task: &Task, json: bool) {
    if json {
        output::json(task);
    } else {
        print_task(task, &|s: &str| text::printable_lines(s, "              "));
    }
}

fn print_tasks(tasks: &[Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let blocked = if t.blocked_by.is_empty() {
                "-".to_string()
            } else {
                t.blocked_by
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                t.id.to_string(),
                t.status.to_string(),
                opt(&t.owner),
                blocked,
                short(&t.title, 60),
            ]
        })
        .collect();
    output::table(&["ID", "STATUS", "OWNER", "BLOCKED_BY", "TITLE"], &rows);
}

/// A task's fields, each agent-written one through `show` (inert text, or raw with `--raw`).
fn print_task(t: &Task, show: &dyn Fn(&str) -> String) {
    output::line(&format!("task {}: {}", t.id, show(&t.title)));
    output::line(&format!("  status:     {}", t.status));
    output::line(&format!("  owner:      {}", opt(&t.owner)));
    if !t.blocked_by.is_empty() {
        output::line(&format!("  blocked_by: {:?}", t.blocked_by));
    }
    if !t.blocks.is_empty() {
        output::line(&format!("  blocks:     {:?}", t.blocks));
    }
    if let Some(r) = &t.run {
        output::line(&format!("  run:        {}", show(r)));
    }
    if !t.description.is_empty() {
        output::line(&format!("  description: {}", show(&t.description)));
    }
    output::line(&format!(
        "  created:    {} by {}",
        t.created_at, t.created_by
    ));
    if let Some(r) = &t.result {
        output::line(&format!("  result:     {}", show(r.trim_end())));
    }
}

/// `agent-team send`
pub fn send(
    ctx: &Ctx,
    to: String,
    text: String,
    summary: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let reply = ctx.call(Request::Send {
        to,
        body: text,
        kind: MessageKind::Text,
        summary,
        dedup: None,
    })?;
    match reply {
        Reply::Sent { ids, recipients } => {
            if json {
                output::json(&serde_json::json!({"ids": ids, "recipients": recipients}));
            } else {
                let pairs: Vec<String> = ids
                    .iter()
                    .zip(&recipients)
                    .map(|(i, r)| format!("{r} (#{i})"))
                    .collect();
                output::line(&format!("queued for {}", pairs.join(", ")));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

/// `agent-team inbox`
pub fn inbox(ctx: &Ctx, name: String, unread: bool, json: bool) -> Result<ExitCode> {
    let messages = ctx.reader()?.messages(&name, unread)?;
    if json {
        output::json(&messages);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.state.as_str().to_string(),
                m.from.clone(),
                m.kind.as_str().to_string(),
                m.ts.to_string(),
                short(m.summary.as_deref().unwrap_or(&m.body), 70),
            ]
        })
        .collect();
    output::table(&["ID", "STATE", "FROM", "KIND", "TIME", "TEXT"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// `agent-team perms`
pub fn perms(ctx: &Ctx, all: bool, json: bool) -> Result<ExitCode> {
    let requests = ctx.reader()?.perms(all)?;
    if json {
        output::json(&requests);
        return Ok(ExitCode::SUCCESS);
    }
    if requests.is_empty() {
        eprintln!(
            "agent-team: no {}permission requests",
            if all { "" } else { "pending " }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            let status = match (&r.decision, r.status) {
                // Its requester is gone: nothing to decide any more.
                (d, PermStatus::Void) => format!(
                    "void ({})",
                    text::printable(
                        d.as_ref()
                            .and_then(|d| d.reason.as_deref())
                            .unwrap_or("requester gone")
                    )
                ),
                (Some(d), _) => {
                    format!("{} by {}", if d.allow { "allowed" } else { "denied" }, d.by)
                }
                (None, _) => "pending".into(),
            };
            vec![
                r.id.to_string(),
                r.agent.clone(),
                r.tool.clone(),
                // What waits for a decision is shown whole: a cut could hide the part that
                // matters (`cargo test … ; curl … | sh`).
                if r.status == PermStatus::Pending {
                    agent_team_protocol::text::printable(&r.input)
                } else {
                    short(&r.input, 50)
                },
                status,
                short(&r.reason, 40),
            ]
        })
        .collect();
    output::table(&["ID", "AGENT", "TOOL", "INPUT", "STATUS", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// `agent-team approve` / `deny`
pub fn decide(
    ctx: &Ctx,
    id: u64,
    allow: bool,
    always: bool,
    pattern: Option<String>,
    reason: Option<String>,
) -> Result<ExitCode> {
    let verb = match (allow, always, &pattern) {
        (false, _, _) => "denied".to_string(),
        (true, false, _) => "allowed once".to_string(),
        (true, true, None) => "allowed always (this exact input)".to_string(),
        (true, true, Some(p)) => format!("allowed always (every input matching {p:?})"),
    };
    let reply = ctx.call(Request::PermDecide {
        id,
        allow,
        always,
        pattern,
        reason,
    })?;
    if let Reply::Perm { request } = reply {
        output::line(&format!(
            "request {} ({} {} for {}): {verb}",
            request.id,
            request.tool,
            short(&request.input, 60),
            request.agent
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent-team events [--follow] [--since SEQ]`: JSON lines for scripts, the values as
/// agents wrote them, the bytes inert on a terminal ([`text::inert_json`]).
pub fn events(ctx: &Ctx, follow: bool, since: u64) -> Result<ExitCode> {
    let mut c: Client = match ctx.reader()? {
        Reader::Live(c, _) => c,
        stored => {
            // A stopped team: its stored log, and nothing more will come.
            let mut stored = stored;
            for e in stored.events(since)? {
                output::line(&text::inert_json(&serde_json::to_string(&e)?));
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if !follow {
        let mut since = since;
        loop {
            let events = match c.call(Request::Events { since, limit: None })? {
                Reply::Events { events } => events,
                other => bail!("unexpected reply {other:?}"),
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for e in &events {
                output::line(&text::inert_json(&serde_json::to_string(e)?));
            }
            since = last;
        }
        return Ok(ExitCode::SUCCESS);
    }
    c.call(Request::Subscribe { since, types: None })?;
    loop {
        match c.next_push(None) {
            Ok(Push::Event { envelope }) => {
                output::line(&text::inert_json(&serde_json::to_string(&envelope)?))
            }
            Ok(_) => {}
            Err(e) if e.is_disconnect() => {
                eprintln!("agent-team: the daemon closed the connection");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
