//! `kill`, `restart`, `spawn` and `logs`.

use crate::ctx::Ctx;
use crate::output;
use agent_team_protocol::*;
use anyhow::{Result, bail};
use std::io::{Read, Seek, SeekFrom};
use std::process::ExitCode;
use std::time::Duration;

/// Runs a lifecycle request and prints the agent it leaves behind.
pub fn lifecycle(ctx: &Ctx, req: Request, json: bool) -> Result<ExitCode> {
    let verb = match &req {
        Request::Kill { .. } => "stopped",
        Request::Restart { .. } => "restarted",
        _ => "started",
    };
    match ctx.call(req)? {
        Reply::Agent { agent } => {
            if json {
                output::json(&agent);
            } else {
                output::line(&format!(
                    "{} {verb}: {} (incarnation {}, pid {}{})",
                    agent.name,
                    agent.status,
                    agent.incarnation,
                    output::opt(&agent.pid),
                    agent
                        .pane
                        .as_ref()
                        .map(|p| format!(", pane {p}"))
                        .unwrap_or_default()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

/// `agent-team dissolve [--reason R] [--cancel-tasks]`
pub fn dissolve(
    ctx: &Ctx,
    reason: Option<String>,
    cancel_tasks: bool,
    json: bool,
) -> Result<ExitCode> {
    match ctx.call(Request::Dissolve {
        reason,
        cancel_tasks,
    })? {
        Reply::Dissolved { stopped, cancelled } => {
            if json {
                output::json(&serde_json::json!({"stopped": stopped, "cancelled": cancelled}));
            } else if stopped.is_empty() {
                output::line("no teammate was running");
            } else {
                output::line(&format!("stopping {}", stopped.join(", ")));
            }
            if !json && !cancelled.is_empty() {
                let ids: Vec<String> = cancelled.iter().map(u64::to_string).collect();
                output::line(&format!("cancelled tasks {}", ids.join(", ")));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected reply {other:?}"),
    }
}

/// `agent-team logs NAME [--follow]`
pub fn logs(ctx: &Ctx, name: &str, follow: bool, raw: bool) -> Result<ExitCode> {
    agent_team_protocol::names::validate("agent", name)
        .map_err(|m| crate::Hinted::new(m, "see `agent-team ps`"))?;
    let path = ctx.tp.agent_log(name);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => bail!(crate::Hinted::new(
            format!(
                "no output recorded for {name} ({} is missing)",
                path.display()
            ),
            "see `agent-team ps` for the agents"
        )),
    };
    // What agents printed (a remote one's too) is shown inert unless asked raw: an escape
    // sequence in a log must not act on the reader's terminal. Bytes, not text: a log may hold
    // anything.
    let show = |bytes: &[u8]| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if raw {
            out.write_all(bytes)
        } else {
            out.write_all(
                agent_team_protocol::text::printable_lines(&String::from_utf8_lossy(bytes), "")
                    .as_bytes(),
            )
        }
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if show(&buf).is_err() {
        return Ok(ExitCode::SUCCESS);
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = f.stream_position()?;
    loop {
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(pos);
        if len < pos {
            pos = 0; // truncated
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos))?;
            let mut chunk = Vec::new();
            f.read_to_end(&mut chunk)?;
            pos = f.stream_position()?;
            use std::io::Write;
            if show(&chunk).is_err() || std::io::stdout().flush().is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The team's configuration as its daemon keeps it (none before its first `up`).
fn team_config(c: &mut agent_team_client::Client) -> Result<Option<agent_team_config::TeamConfig>> {
    Ok(match c.call(Request::GetConfig)? {
        Reply::Config { config } if !config.is_null() => Some(serde_json::from_value(config)?),
        _ => None,
    })
}

/// Where the team's tmux panes are, from the daemon's stored configuration.
pub fn tmux_place(
    ctx: &Ctx,
    c: &mut agent_team_client::Client,
) -> Result<Option<agent_team_config::TmuxPlace>> {
    let Some(cfg) = team_config(c)? else {
        return Ok(None);
    };
    if cfg.backend != agent_team_config::BackendKind::Tmux {
        return Ok(None);
    }
    Ok(Some(cfg.tmux.unwrap_or(agent_team_config::TmuxPlace {
        socket: ctx.tp.tmux_socket.clone(),
        session: ctx.team.clone(),
        window: None,
    })))
}

/// `name`'s pane id (tmux `%N`, iTerm2 session id), or why it has none.
fn agent_pane(c: &mut agent_team_client::Client, name: &str) -> Result<String> {
    let agents = match c.call(Request::Agents)? {
        Reply::Agents { agents } => agents,
        _ => vec![],
    };
    let Some(agent) = agents.iter().find(|a| a.name == name) else {
        let names: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
        bail!(crate::Hinted::new(
            format!("no agent {name:?}"),
            format!("valid names: {}", names.join(", "))
        ));
    };
    let Some(pane) = &agent.pane else {
        bail!(crate::Hinted::new(
            format!("{name} has no pane right now ({})", agent.status),
            "see `agent-team ps`"
        ));
    };
    Ok(pane.clone())
}

/// The command that attaches this terminal to `name`'s pane, zoomed, or with `view` =
/// [`AttachView::Team`](agent_team_pane::tmux::AttachView::Team) to the whole team window with that pane selected.
pub fn attach_command(
    ctx: &Ctx,
    name: &str,
    view: agent_team_pane::tmux::AttachView,
) -> Result<std::process::Command> {
    let mut c = ctx.connect()?;
    let Some(place) = tmux_place(ctx, &mut c)? else {
        if team_config(&mut c)?
            .is_some_and(|cfg| cfg.backend == agent_team_config::BackendKind::Iterm2)
        {
            bail!(crate::Hinted::new(
                format!("team {} runs in iTerm2, not tmux", ctx.team),
                format!("`agent-team attach {name}` brings its iTerm2 session to the front")
            ));
        }
        bail!(crate::Hinted::new(
            format!(
                "team {} does not run in tmux, so there is no pane to attach to",
                ctx.team
            ),
            format!("follow the agent with `agent-team logs {name} --follow`")
        ));
    };
    let pane = agent_pane(&mut c, name)?;
    // Selected and zoomed first under the layout hook's lock: a layout already under way would
    // otherwise unzoom the pane after this zoom. (The attach does it again; a failure here
    // leaves that to it.)
    if let Some(runtime) = ctx.tp.socket.parent() {
        let lock = runtime.join(format!("{}.layout.lock", place.session));
        let _ = agent_team_pane::tmux::select_locked(&place.socket, &pane, view, &lock);
    }
    let inside = agent_team_pane::tmux::current_server().is_some_and(|s| s == place.socket);
    Ok(agent_team_pane::tmux::attach_command(
        &place.socket,
        &place.session,
        &pane,
        inside,
        view,
    ))
}

/// For a team on the iTerm2 backend, brings `name`'s session to the front (its window raised,
/// its tab and pane selected) through iTerm2's AppleScript; false for other backends.
fn attach_iterm2(ctx: &Ctx, name: &str) -> Result<bool> {
    let mut c = ctx.connect()?;
    if !team_config(&mut c)?
        .is_some_and(|cfg| cfg.backend == agent_team_config::BackendKind::Iterm2)
    {
        return Ok(false);
    }
    let sid = agent_pane(&mut c, name)?;
    agent_team_pane::iterm::select_session(&agent_team_pane::iterm::RealOsascript, &sid).map_err(
        |e| {
            crate::Hinted::new(
                format!("cannot bring {name}'s iTerm2 session to the front: {e}"),
                format!("follow the agent with `agent-team logs {name} --follow`"),
            )
        },
    )?;
    output::line(&format!(
        "{name}'s iTerm2 session is in front (session {sid})"
    ));
    Ok(true)
}

/// `agent-team attach [NAME]`: NAME's pane zoomed, or the whole team with the leader selected.
/// On the iTerm2 backend: NAME's (or the leader's) session brought to the front.
pub fn attach(ctx: &Ctx, name: Option<&str>) -> Result<ExitCode> {
    use agent_team_pane::tmux::AttachView;
    if attach_iterm2(ctx, name.unwrap_or(agent_team_protocol::names::LEADER))? {
        return Ok(ExitCode::SUCCESS);
    }
    let mut cmd = match name {
        Some(n) => attach_command(ctx, n, AttachView::Zoomed)?,
        None => attach_command(ctx, agent_team_protocol::names::LEADER, AttachView::Team)?,
    };
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    bail!(crate::Hinted::new(
        format!("cannot run tmux: {err}"),
        "is tmux installed?"
    ))
}
