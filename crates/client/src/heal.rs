//! Bringing a crashed daemon back without anyone at the keyboard: an agent's worker, the relay
//! of a CLI teammate and the daemon's guardian each hold a [`Healer`]; when the daemon goes away
//! and its lock is free they start it again with the same race-safe start as the CLI (any
//! number may race, one daemon takes the lock). A daemon stopped on purpose (`down`, the end of
//! `run`, SIGTERM) leaves the clean-stop marker ([`TeamPaths::stopped`]), and then nobody brings
//! it back: the healer says [`Healed::Stopped`], and a daemon started by a healer checks the
//! marker again under the lock ([`ENV_HEAL`]), so a `down` racing a healer always wins.

use crate::autostart::{StartError, daemon_running, start};
use agent_team_paths::{Paths, TeamPaths};
use std::path::PathBuf;

/// Set on a daemon a healer starts: it refuses to start (and leaves the marker) when the team
/// was stopped on purpose, checked once it holds the lock.
pub const ENV_HEAL: &str = "AGENT_TEAM_HEAL";

/// The `agent-team` executable a healer starts the daemon with (given to each agent's launch).
pub const ENV_DAEMON_EXE: &str = "AGENT_TEAM_DAEMON_EXE";

/// The variables of the daemon's own environment a healer hands to the daemon it starts, so it
/// runs with the same locations and settings (given to each agent's launch by the daemon).
pub const DAEMON_ENV: [&str; 7] = [
    agent_team_paths::ENV_HOME,
    agent_team_paths::ENV_RUNTIME_DIR,
    agent_team_paths::ENV_TMUX_SOCKET,
    "AGENT_TEAM_PERMISSION_TIMEOUT",
    "AGENT_TEAM_WORKER",
    "AGENT_TEAM_LOG",
    "AGENT_TEAM_LOG_CAP_BYTES",
];

/// What a heal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Healed {
    /// A daemon answers (this healer's, another starter's, or one that never went away).
    Running,
    /// The team was stopped on purpose: nobody may bring it back.
    Stopped,
}

/// What a healer needs: where the team lives, the executable, the daemon's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healer {
    tp: TeamPaths,
    exe: PathBuf,
    env: Vec<(String, String)>,
}

impl Healer {
    /// A healer for `team` under `paths`, starting `exe`, with the daemon's environment `env`.
    pub fn new(
        paths: &Paths,
        team: &str,
        exe: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<Self, agent_team_paths::PathError> {
        Ok(Healer {
            tp: paths.team(team)?,
            exe,
            env,
        })
    }

    /// The variables a daemon gives each agent's launch so its worker can heal: the executable
    /// and the daemon's own [`DAEMON_ENV`], its locations always.
    pub fn launch_env(paths: &Paths, exe: Option<PathBuf>) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(exe) = exe {
            v.push((ENV_DAEMON_EXE.to_string(), exe.display().to_string()));
        }
        v.push((
            agent_team_paths::ENV_HOME.to_string(),
            paths.home.display().to_string(),
        ));
        v.push((
            agent_team_paths::ENV_RUNTIME_DIR.to_string(),
            paths.runtime.display().to_string(),
        ));
        for k in &DAEMON_ENV[2..] {
            if let Some(val) = std::env::var(k).ok().filter(|v| !v.is_empty()) {
                v.push((k.to_string(), val));
            }
        }
        v
    }

    /// The healer an agent's launch describes (see [`Healer::launch_env`]) for `team`; `None`
    /// when the launch carries no executable (an agent inside the daemon, an MCP server in the
    /// sandbox).
    pub fn from_lookup(team: &str, get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let exe = get(ENV_DAEMON_EXE).filter(|v| !v.is_empty())?;
        let home = get(agent_team_paths::ENV_HOME).filter(|v| !v.is_empty())?;
        let runtime = get(agent_team_paths::ENV_RUNTIME_DIR).filter(|v| !v.is_empty())?;
        let env: Vec<(String, String)> = DAEMON_ENV
            .iter()
            .filter_map(|k| get(k).filter(|v| !v.is_empty()).map(|v| (k.to_string(), v)))
            .collect();
        Healer::new(&Paths::new(home, runtime), team, PathBuf::from(exe), env).ok()
    }

    /// The team's files.
    pub fn team_paths(&self) -> &TeamPaths {
        &self.tp
    }

    /// Whether the team was stopped on purpose (its clean-stop marker is there).
    pub fn stopped(&self) -> bool {
        self.tp.stopped.exists()
    }

    /// Makes sure the daemon runs unless the team was stopped on purpose. Blocking (up to the
    /// start deadline of [`crate::ensure_daemon`]); `Err` when no daemon could be started.
    pub fn heal(&self) -> Result<Healed, StartError> {
        if self.stopped() {
            return Ok(Healed::Stopped);
        }
        if daemon_running(&self.tp) {
            return Ok(Healed::Running);
        }
        let mut env = self.env.clone();
        env.push((ENV_HEAL.to_string(), "1".to_string()));
        match start(&self.tp, &self.exe, &env, true, false, None) {
            Ok(pid) => {
                if let Some(pid) = pid {
                    eprintln!(
                        "agent-team: brought the daemon of team {} back (pid {pid})",
                        self.tp.team
                    );
                }
                Ok(Healed::Running)
            }
            // A `down` won the race: its marker is there now.
            Err(_) if self.stopped() => Ok(Healed::Stopped),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_team_stopped_on_purpose_is_never_brought_back() {
        let dir = std::env::temp_dir().join(format!("heal-test-{}", std::process::id()));
        let paths = Paths::new(dir.join("home"), dir.join("run"));
        paths.ensure_runtime().unwrap();
        // An executable that would fail loudly if it were started.
        let h = Healer::new(
            &paths,
            "t",
            PathBuf::from("/nonexistent/agent-team"),
            vec![],
        )
        .unwrap();
        agent_team_paths::mark_stopped(&h.team_paths().stopped).unwrap();
        assert_eq!(h.heal().unwrap(), Healed::Stopped);
        agent_team_paths::clear_stopped(&h.team_paths().stopped).unwrap();
        assert!(
            h.heal().is_err(),
            "without the marker it tries to start the daemon"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_launch_describes_a_healer_with_the_daemons_locations() {
        let paths = Paths::new("/h", "/r");
        let env = Healer::launch_env(&paths, Some(PathBuf::from("/bin/agent-team")));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let h = Healer::from_lookup("t", get).unwrap();
        assert_eq!(h.team_paths().lock, PathBuf::from("/r/t.lock"));
        assert_eq!(h.team_paths().stopped, PathBuf::from("/r/t.stopped"));
        assert!(Healer::from_lookup("t", |_| None).is_none());
    }
}
