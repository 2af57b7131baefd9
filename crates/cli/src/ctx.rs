//! Which team a command acts on, and the connection to its daemon (started on demand).

use agent_team_client::{Client, ClientError};
use agent_team_paths::{Paths, TeamPaths};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The resolved team and where its files are.
pub struct Ctx {
    /// State and runtime roots.
    pub paths: Paths,
    /// The team's name.
    pub team: String,
    /// The team's files.
    pub tp: TeamPaths,
    /// The team file in use, if any.
    pub file: Option<PathBuf>,
}

impl Ctx {
    /// Resolves the team: `--team`/`AGENT_TEAM_TEAM`, else the team file's `name`, else the only
    /// running team, else `default` (SPEC §3).
    pub fn resolve(team: Option<String>, file: Option<PathBuf>) -> Result<Self> {
        let paths = Paths::from_env()?;
        let file = match file {
            Some(f) => {
                if !f.exists() {
                    anyhow::bail!(crate::Hinted::new(
                        format!("team file {} does not exist", f.display()),
                        "check the path given with -f",
                    ));
                }
                Some(f)
            }
            None => Some(PathBuf::from("agent-team.toml")).filter(|p| p.exists()),
        };
        let team = match team {
            Some(t) => t,
            None => match &file {
                Some(f) => team_name_from_file(f)?,
                None => {
                    let running = running_teams(&paths);
                    if running.len() == 1 {
                        running[0].clone()
                    } else {
                        "default".to_string()
                    }
                }
            },
        };
        let tp = paths.team(&team)?;
        Ok(Ctx {
            paths,
            team,
            tp,
            file,
        })
    }

    /// Connects as the operator, starting the daemon first if it is not running.
    pub fn connect(&self) -> Result<Client> {
        if let Some(c) = self.connect_existing()? {
            return Ok(c);
        }
        let exe = std::env::current_exe().context("cannot find the agent-team executable")?;
        if let Some(pid) = agent_team_client::ensure_daemon(&self.tp, &exe, &[])? {
            eprintln!(
                "agent-team: started the daemon for team {} (pid {pid})",
                self.team
            );
        }
        Client::operator(&self.tp)
            .with_context(|| format!("cannot connect to the daemon of team {}", self.team))
    }

    /// Connects as the operator if the daemon is running; `None` if it is not.
    pub fn connect_existing(&self) -> Result<Option<Client>> {
        match Client::operator(&self.tp) {
            Ok(c) => Ok(Some(c)),
            Err(ClientError::Connect { .. }) | Err(ClientError::Credential { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Teams whose daemon answers on its socket right now.
pub fn running_teams(paths: &Paths) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(&paths.runtime) else {
        return vec![];
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".sock").map(str::to_string))
        .filter(|n| {
            paths
                .team(n)
                .is_ok_and(|tp| agent_team_client::daemon_running(&tp))
        })
        .collect();
    v.sort();
    v
}

fn team_name_from_file(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| {
        crate::Hinted::new(
            format!("{}: {}", path.display(), e.message()),
            "fix the team file",
        )
    })?;
    match value.get("name") {
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(_) => anyhow::bail!(crate::Hinted::new(
            format!("{}: field `name` must be a string", path.display()),
            "e.g. name = \"webapp\""
        )),
        None => Ok("default".to_string()),
    }
}
