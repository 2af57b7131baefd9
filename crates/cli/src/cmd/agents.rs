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
    let mut c = ctx.connect()?;
    match c.call(req)? {
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

/// `agent-team logs NAME [--follow]`
pub fn logs(ctx: &Ctx, name: &str, follow: bool) -> Result<ExitCode> {
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
    let mut buf = String::new();
    f.read_to_string(&mut buf)?;
    print!("{buf}");
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
            let mut chunk = String::new();
            f.read_to_string(&mut chunk)?;
            pos = f.stream_position()?;
            print!("{chunk}");
            use std::io::Write;
            if std::io::stdout().flush().is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
