//! Choosing the pane backend (SPEC §2: `auto` = tmux if usable, else iTerm2, else in-process;
//! the choice and its reason are always printed) and wiring the daemon's launchers.

use agent_team_config::BackendKind;
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::sync::Arc;

/// The backend to use for `requested`, and why.
pub fn resolve(requested: BackendKind) -> Result<(BackendKind, String)> {
    match requested {
        BackendKind::Process => Ok((BackendKind::Process, "asked for".into())),
        BackendKind::InProcess => Ok((BackendKind::InProcess, "asked for".into())),
        BackendKind::Tmux => match agent_team_pane::tmux::version() {
            Ok((_, _, v)) => Ok((BackendKind::Tmux, format!("asked for; {v}"))),
            Err(e) => bail!(crate::Hinted::new(
                format!("the tmux backend was asked for but {e}"),
                "install tmux >= 3.2 (Debian/Ubuntu: sudo apt-get install tmux; macOS: brew install tmux) or use --backend process"
            )),
        },
        BackendKind::Iterm2 => {
            if in_iterm2() {
                Ok((BackendKind::Iterm2, "asked for".into()))
            } else {
                bail!(crate::Hinted::new(
                    "the iterm2 backend needs iTerm2 with its `it2` tool or osascript",
                    "run inside iTerm2 on macOS, or use --backend tmux"
                ))
            }
        }
        BackendKind::Auto => {
            if let Some(v) = tmux_version() {
                return Ok((BackendKind::Tmux, format!("auto: {v} is usable")));
            }
            if in_iterm2() {
                return Ok((
                    BackendKind::Iterm2,
                    "auto: no tmux, running in iTerm2".into(),
                ));
            }
            Ok((
                BackendKind::InProcess,
                "auto: no tmux on PATH and not in iTerm2, so agents run inside the daemon".into(),
            ))
        }
    }
}

/// `tmux -V` if tmux runs.
pub fn tmux_version() -> Option<String> {
    let out = std::process::Command::new("tmux").arg("-V").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn in_iterm2() -> bool {
    std::env::var("TERM_PROGRAM").is_ok_and(|t| t == "iTerm.app") && cfg!(target_os = "macos")
}

/// The worker executable: `AGENT_TEAM_WORKER`, else `agent-team-worker` beside this binary.
pub fn worker_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("AGENT_TEAM_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("agent-team-worker");
    if !p.exists() {
        bail!(crate::Hinted::new(
            format!("{} is missing", p.display()),
            "install both binaries (cargo install --path crates/cli) or set AGENT_TEAM_WORKER"
        ));
    }
    Ok(p)
}

/// What the daemon launches agents with.
pub fn supervisor_env() -> Result<agent_team_daemon::SupervisorEnv> {
    Ok(agent_team_daemon::SupervisorEnv {
        worker_exe: Some(worker_exe()?),
        runner: Some(Arc::new(agent_team_worker::inprocess::Runner)),
        factory: None,
    })
}
