//! Placement on a host: the probe preparing the team's directories there, the worker it
//! runs (its own, or this build's copied to it), what a launch needs of the host.

use crate::link::{CALL_TIMEOUT, last_line};
use crate::ssh::Ssh;
use crate::{HostInfo, RemoteError, RemoteSettings, scripts};
use agent_team_pane::shell_quote;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Runs the probe on `host` over a connection of its own: makes the team's directories there
/// and says where they are, what system it is and which worker it has.
pub(crate) fn probe(
    ssh: &dyn Ssh,
    settings: &RemoteSettings,
    host: &str,
) -> Result<HostInfo, RemoteError> {
    probe_via(ssh, settings, host, None)
}

/// [`probe`] through the master on `via` when given.
pub(crate) fn probe_via(
    ssh: &dyn Ssh,
    settings: &RemoteSettings,
    host: &str,
    via: Option<&Path>,
) -> Result<HostInfo, RemoteError> {
    let out = ssh.script(host, via, &scripts::probe(settings), CALL_TIMEOUT)?;
    match out.code {
        Some(0) => {}
        Some(255) => {
            return Err(RemoteError::Unreachable {
                host: host.to_string(),
                message: last_line(&out.stderr),
            });
        }
        _ => {
            return Err(RemoteError::Host {
                host: host.to_string(),
                message: format!(
                    "cannot prepare {}: {}",
                    settings.dir.as_deref().unwrap_or(crate::DEFAULT_DIR),
                    last_line(&out.stderr)
                ),
            });
        }
    }
    let info = HostInfo::parse(&out.stdout);
    if info.root.is_empty() {
        return Err(RemoteError::Host {
            host: host.to_string(),
            message: format!("its shell did not answer the probe: {}", out.stdout.trim()),
        });
    }
    Ok(info)
}

/// Which worker a host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerChoice {
    /// This one, already there.
    Use(String),
    /// This build's, copied under its key to the host's `bin` (unless it is there already).
    Copy,
}

/// Picks the host's worker: `[ssh] worker`, else one on its `PATH`, else this build's copied
/// there when the systems match; otherwise the error says what to install.
pub(crate) fn choose_worker(
    settings: &RemoteSettings,
    host: &str,
    info: &HostInfo,
    mine: &str,
) -> Result<WorkerChoice, RemoteError> {
    if let Some(w) = &settings.worker {
        return match &info.worker {
            Some(found) => Ok(WorkerChoice::Use(found.clone())),
            None => Err(RemoteError::Host {
                host: host.to_string(),
                message: format!(
                    "[ssh] worker = {w:?} is not an executable there; install agent-team on it or fix the path"
                ),
            }),
        };
    }
    if let Some(found) = &info.worker {
        return Ok(WorkerChoice::Use(found.clone()));
    }
    match (
        &settings.local_worker,
        info.uname == mine && !mine.is_empty(),
    ) {
        (Some(_), true) => Ok(WorkerChoice::Copy),
        _ => Err(RemoteError::Host {
            host: host.to_string(),
            message: format!(
                "no agent-team-worker on its PATH, and its system ({}) is not this one ({mine}) so ours cannot be copied: install agent-team there, or set [ssh] worker",
                info.uname
            ),
        }),
    }
}

/// What a remote launch needs of its host's link.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The link's control socket (here).
    pub control: PathBuf,
    /// The absolute `[ssh] dir` on the host.
    pub root: String,
    /// The worker on the host.
    pub worker: String,
    /// tmux on the host, when agents run in a private tmux server there (the team's panes are
    /// tmux here and the host has it).
    pub tmux: Option<String>,
}

/// This build's worker as hosts get it: its key and this machine's system, each computed once
/// and only when a host needs them, and its copy to a host.
pub(crate) struct LocalWorker {
    /// The worker here (`RemoteSettings::local_worker`).
    path: Option<PathBuf>,
    /// [`crate::worker_key`] of `path`.
    key: OnceLock<Option<String>>,
    /// [`crate::local_uname`].
    uname: OnceLock<String>,
}

impl LocalWorker {
    /// The worker at `path` (none: no host gets a copy).
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        LocalWorker {
            path,
            key: OnceLock::new(),
            uname: OnceLock::new(),
        }
    }

    /// Keyed by version and hash: computed once per daemon, only when needed.
    fn key(&self) -> Option<&str> {
        self.key
            .get_or_init(|| {
                let w = self.path.as_ref()?;
                crate::worker_key(w).ok()
            })
            .as_deref()
    }

    /// This machine's `uname -sm`.
    pub(crate) fn uname(&self) -> String {
        self.uname.get_or_init(crate::local_uname).clone()
    }

    /// Puts this build's worker (and the bridge beside it, when there is one) under its key
    /// in the `bin` of the host whose `[ssh] dir` is `root`, unless it is there; its path
    /// there.
    pub(crate) fn install(
        &self,
        ssh: &dyn Ssh,
        host: &str,
        control: &Path,
        root: &str,
    ) -> Result<String, RemoteError> {
        let key = self
            .key()
            .ok_or_else(|| RemoteError::Io("cannot read this build's worker".into()))?;
        let p = format!("{root}/bin/{key}/agent-team-worker");
        // An agent CLI's worker serves it through the bridge beside the worker.
        let bridge = self
            .path
            .as_ref()
            .map(|w| w.with_file_name("agent-team-bridge"))
            .filter(|b| b.exists());
        let mut wanted = vec![(self.path.clone(), p.clone())];
        if let Some(b) = bridge {
            let there = format!("{root}/bin/{key}/agent-team-bridge");
            wanted.push((Some(b), there));
        }
        for (local, path) in wanted {
            let there = ssh.script(
                host,
                Some(control),
                &format!("test -x {}", shell_quote(&path)),
                CALL_TIMEOUT,
            )?;
            if there.code != Some(0) {
                copy(ssh, host, control, local.as_deref(), &path)?;
            }
        }
        Ok(p)
    }
}

/// Copies this build's worker (or the bridge beside it), `local`, to `path` on the host
/// (through a temporary name, so a half-written binary is never run).
fn copy(
    ssh: &dyn Ssh,
    host: &str,
    control: &Path,
    local: Option<&Path>,
    path: &str,
) -> Result<(), RemoteError> {
    let Some(local) = local else {
        return Err(RemoteError::Io("no local worker to copy".into()));
    };
    let command = scripts::install_file(path);
    let out = ssh.upload(host, control, &command, local, Duration::from_secs(600))?;
    if out.code != Some(0) {
        return Err(RemoteError::Host {
            host: host.to_string(),
            message: format!("cannot copy the worker: {}", last_line(&out.stderr)),
        });
    }
    tracing::info!(host, path, "worker copied");
    Ok(())
}
