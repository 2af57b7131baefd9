//! Choosing the pane backend (SPEC §2: `auto` = tmux if usable, else iTerm2, else in-process;
//! the choice and its reason are always printed) and wiring the daemon's launchers.

use agent_team_config::BackendKind;
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::sync::Arc;

/// The backend to use for `requested`, and why.
pub fn resolve(requested: BackendKind) -> Result<(BackendKind, String)> {
    resolve_with(requested, agent_team_pane::tmux::version, in_iterm2())
}

/// [`resolve`] with the tmux check and the iTerm2 answer given (so it is tested without them).
fn resolve_with(
    requested: BackendKind,
    tmux: impl Fn() -> Result<(u32, u32, String), agent_team_pane::PaneError>,
    iterm2: bool,
) -> Result<(BackendKind, String)> {
    match requested {
        BackendKind::Process => Ok((BackendKind::Process, "asked for".into())),
        BackendKind::InProcess => Ok((BackendKind::InProcess, "asked for".into())),
        BackendKind::Tmux => match tmux() {
            Ok((_, _, v)) => Ok((BackendKind::Tmux, format!("asked for; {v}"))),
            Err(e) => bail!(crate::Hinted::new(
                format!("the tmux backend was asked for but {e}"),
                "install tmux >= 3.2 (Debian/Ubuntu: sudo apt-get install tmux; macOS: brew install tmux) or use --backend process"
            )),
        },
        BackendKind::Iterm2 => {
            if iterm2 {
                Ok((BackendKind::Iterm2, "asked for".into()))
            } else {
                bail!(crate::Hinted::new(
                    format!("the iterm2 backend was asked for but {}", iterm2_missing()),
                    "run `agent-team up` from an iTerm2 window on macOS (it drives iTerm2 through \
                     osascript, iTerm2's AppleScript), or use --backend tmux"
                ))
            }
        }
        BackendKind::Auto => {
            // The same check as `--backend tmux`: a tmux too old for the pane crate is not usable.
            let why_not = match tmux() {
                Ok((_, _, v)) => return Ok((BackendKind::Tmux, format!("auto: {v} is usable"))),
                Err(e) => e.to_string(),
            };
            if iterm2 {
                return Ok((
                    BackendKind::Iterm2,
                    format!(
                        "auto: no usable tmux ({why_not}), so agents get iTerm2 sessions in this \
                         iTerm2 (driven through osascript)"
                    ),
                ));
            }
            Ok((
                BackendKind::InProcess,
                format!(
                    "auto: no usable tmux ({why_not}) and not in iTerm2, so agents run inside the daemon"
                ),
            ))
        }
    }
}

/// Whether this terminal is iTerm2 on macOS, where the iterm2 backend can drive it with
/// `osascript` (iTerm2's AppleScript; no other iTerm2 tool is used).
fn in_iterm2() -> bool {
    std::env::var("TERM_PROGRAM").is_ok_and(|t| t == "iTerm.app") && cfg!(target_os = "macos")
}

/// Why [`in_iterm2`] is false, for messages.
fn iterm2_missing() -> String {
    if !cfg!(target_os = "macos") {
        return "iTerm2 runs only on macOS".into();
    }
    match std::env::var("TERM_PROGRAM") {
        Ok(t) => format!("this terminal is {t}, not iTerm2 (TERM_PROGRAM is not iTerm.app)"),
        Err(_) => "this terminal is not iTerm2 (TERM_PROGRAM is not iTerm.app)".into(),
    }
}

/// `agent-team doctor`'s iTerm2 line: whether `--backend iterm2` (and `auto` without tmux)
/// can use this terminal, and why not.
pub fn iterm2_check() -> (bool, String) {
    if in_iterm2() {
        (
            true,
            "this terminal is iTerm2 on macOS: the iterm2 backend can drive it through osascript \
             (iTerm2's AppleScript); this backend is tested only against a fake osascript"
                .into(),
        )
    } else {
        (false, iterm2_missing())
    }
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
pub fn supervisor_env(paths: &agent_team_paths::Paths) -> Result<agent_team_daemon::SupervisorEnv> {
    Ok(agent_team_daemon::SupervisorEnv {
        worker_exe: Some(worker_exe()?),
        // A daemon running agents in-process serves an agent CLI's team tools itself.
        runner: Some(Arc::new(agent_team_worker::inprocess::Runner::with_tools(
            Arc::new(agent_team_mcp::WorkerHost),
        ))),
        factory: None,
        heal_env: agent_team_client::heal::Healer::launch_env(paths, std::env::current_exe().ok()),
        layout_exe: std::env::current_exe().ok(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_pane::PaneError;

    fn tmux_is(text: &'static str) -> impl Fn() -> Result<(u32, u32, String), PaneError> {
        move || {
            let v = agent_team_pane::tmux::parse_version(text).unwrap();
            if v < agent_team_pane::tmux::MIN_VERSION {
                Err(PaneError::Tool(format!("{text} is too old")))
            } else {
                Ok((v.0, v.1, text.to_string()))
            }
        }
    }

    #[test]
    fn auto_refuses_a_tmux_older_than_the_pane_crate_accepts() {
        let (kind, why) = resolve_with(BackendKind::Auto, tmux_is("tmux 3.1c"), false).unwrap();
        assert_eq!(kind, BackendKind::InProcess, "{why}");
        assert!(why.contains("too old"), "{why}");
        let (kind, _) = resolve_with(BackendKind::Auto, tmux_is("tmux 3.1c"), true).unwrap();
        assert_eq!(kind, BackendKind::Iterm2);
        let (kind, why) = resolve_with(BackendKind::Auto, tmux_is("tmux 3.3a"), false).unwrap();
        assert_eq!(
            (kind, why.as_str()),
            (BackendKind::Tmux, "auto: tmux 3.3a is usable")
        );
        assert!(resolve_with(BackendKind::Tmux, tmux_is("tmux 3.0"), false).is_err());
    }

    /// The iterm2 backend needs nothing but iTerm2 and osascript: no message names another
    /// tool (an `it2` was named, which the backend never used).
    #[test]
    fn iterm2_messages_name_osascript_and_no_other_tool() {
        let err = resolve_with(BackendKind::Iterm2, tmux_is("tmux 3.3a"), false).unwrap_err();
        let text = crate::describe(&err);
        assert!(text.contains("osascript"), "{text}");
        assert!(!text.contains("it2"), "{text}");
        assert!(text.contains("--backend tmux"), "{text}");
        let (kind, why) = resolve_with(BackendKind::Auto, tmux_is("tmux 3.1c"), true).unwrap();
        assert_eq!(kind, BackendKind::Iterm2);
        assert!(
            why.contains("iTerm2 sessions") && why.contains("osascript"),
            "{why}"
        );
        let (ok, detail) = iterm2_check();
        assert!(!ok || detail.contains("osascript"), "{detail}");
        assert!(!detail.contains("it2"), "{detail}");
    }
}
