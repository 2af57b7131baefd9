//! Blocking backend work (launch, stop, clean up, poll), run off the core's thread; each
//! outcome comes back as a [`SupEvent`].

use super::{SupEvent, WORKSPACE_ENV};
use agent_team_pane::{LaunchSpec, Launched, PaneBackend};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Whether `spec` runs in a worktree of its own, to be made before it starts.
fn needs_workspace(spec: &LaunchSpec, team_workspace: &std::path::Path) -> bool {
    spec.cwd != team_workspace && spec.env.iter().any(|(k, _)| k == WORKSPACE_ENV)
}

/// Creates a worktree-isolated agent's checkout before its process starts.
fn prepare_workspace(spec: &LaunchSpec, team_workspace: &std::path::Path) -> Result<(), String> {
    if needs_workspace(spec, team_workspace) {
        agent_team_worktree::ensure(team_workspace, &spec.name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Blocking backend work, carried out on the blocking pool.
pub enum Job {
    /// Start one incarnation (in its old pane when there is one).
    Launch {
        /// The agent.
        name: String,
        /// Its new incarnation.
        incarnation: u64,
        /// How to start it.
        spec: Box<LaunchSpec>,
        /// Where it ran before.
        place: Option<Launched>,
        /// The team's workspace (for worktrees).
        team_ws: PathBuf,
        /// The backend to start it on.
        backend: Arc<dyn PaneBackend>,
    },
    /// Start several new agents at once, in order.
    LaunchMany {
        /// (agent, incarnation, spec) each.
        batch: Vec<(String, u64, LaunchSpec)>,
        /// The team's workspace (for worktrees).
        team_ws: PathBuf,
        /// The backend to start them on.
        backend: Arc<dyn PaneBackend>,
    },
    /// Stop an incarnation, SIGKILL after `grace`.
    Stop {
        /// The agent.
        name: String,
        /// The incarnation.
        incarnation: u64,
        /// Its process.
        target: Launched,
        /// Time between SIGTERM and SIGKILL.
        grace: Duration,
        /// The backend it runs on.
        backend: Arc<dyn PaneBackend>,
    },
    /// Kill what an ended agent left in its process group; reports nothing.
    Cleanup {
        /// The agent.
        name: String,
        /// The incarnation.
        incarnation: u64,
        /// Its process.
        launched: Launched,
        /// The backend it ran on.
        backend: Arc<dyn PaneBackend>,
    },
    /// Check which launched agents are still alive.
    Poll {
        /// (agent, incarnation, process) each.
        targets: Vec<(String, u64, Launched)>,
        /// The backend they run on.
        backend: Arc<dyn PaneBackend>,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Launch {
                name, incarnation, ..
            } => write!(f, "Launch({name}, {incarnation})"),
            Job::LaunchMany { batch, .. } => write!(f, "LaunchMany({})", batch.len()),
            Job::Stop {
                name, incarnation, ..
            } => write!(f, "Stop({name}, {incarnation})"),
            Job::Cleanup {
                name, incarnation, ..
            } => write!(f, "Cleanup({name}, {incarnation})"),
            Job::Poll { targets, .. } => write!(f, "Poll({})", targets.len()),
        }
    }
}

impl Job {
    /// Whether this is an in-process agent's cleanup (a task of the daemon's own: no process
    /// group, host or container of its own). It is quick unless a command the agent ran still
    /// lingers, so the cleanups of one step share one blocking thread: at `down` a team of
    /// 1 024 started a hundred threads for them, on `down`'s critical path.
    pub fn is_in_process_cleanup(&self) -> bool {
        matches!(self, Job::Cleanup { launched, .. }
            if launched.pid == std::process::id()
                && launched.pgid.is_none()
                && launched.host.is_none()
                && launched.container.is_none())
    }

    /// Whether the work is quick and never blocks, so the daemon's core may do it itself:
    /// starting agents whose backend starts them at once (in-process tasks) and who need no
    /// worktree made first.
    pub fn is_quick(&self) -> bool {
        let quick = |spec: &LaunchSpec, team_ws: &std::path::Path, backend: &dyn PaneBackend| {
            !needs_workspace(spec, team_ws) && backend.spawns_at_once(spec)
        };
        match self {
            Job::Launch {
                spec,
                team_ws,
                backend,
                ..
            } => quick(spec, team_ws, backend.as_ref()),
            Job::LaunchMany {
                batch,
                team_ws,
                backend,
            } => batch
                .iter()
                .all(|(_, _, spec)| quick(spec, team_ws, backend.as_ref())),
            _ => false,
        }
    }

    /// Does the work (blocking); each outcome goes to `report` as it is known.
    pub fn run(self, report: &dyn Fn(SupEvent)) {
        match self {
            Job::Launch {
                name,
                incarnation,
                spec,
                place,
                team_ws,
                backend,
            } => {
                let result = match prepare_workspace(&spec, &team_ws) {
                    Err(e) => Err(agent_team_pane::PaneError::Tool(e)),
                    Ok(()) => match &place {
                        Some(p) if p.pane.is_some() => backend.respawn(&spec, p),
                        _ => backend.spawn(&spec),
                    },
                };
                report(SupEvent::Launched {
                    name,
                    incarnation,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            Job::LaunchMany {
                mut batch,
                team_ws,
                backend,
            } => {
                // Worktrees first; an agent whose worktree fails is reported and not launched.
                let mut failed = Vec::new();
                batch.retain(
                    |(name, incarnation, spec)| match prepare_workspace(spec, &team_ws) {
                        Ok(()) => true,
                        Err(e) => {
                            failed.push((name.clone(), *incarnation, e));
                            false
                        }
                    },
                );
                for (name, incarnation, e) in failed {
                    report(SupEvent::Launched {
                        name,
                        incarnation,
                        result: Err(e),
                    });
                }
                let specs: Vec<LaunchSpec> = batch.iter().map(|(_, _, s)| s.clone()).collect();
                let results = backend.spawn_many(&specs);
                for ((name, incarnation, _), result) in batch.into_iter().zip(results) {
                    report(SupEvent::Launched {
                        name,
                        incarnation,
                        result: result.map_err(|e| e.to_string()),
                    });
                }
            }
            Job::Stop {
                name,
                incarnation,
                target,
                grace,
                backend,
            } => {
                let result = backend.stop(&target, grace).map_err(|e| e.to_string());
                report(SupEvent::Stopped {
                    name,
                    incarnation,
                    result,
                });
            }
            Job::Cleanup {
                name,
                incarnation,
                launched,
                backend,
            } => {
                if let Err(e) = backend.stop(&launched, Duration::from_millis(500)) {
                    tracing::warn!(agent = %name, incarnation, "cleaning up the process group failed: {e}");
                }
            }
            Job::Poll { targets, backend } => {
                let places: Vec<Launched> = targets.iter().map(|(_, _, l)| l.clone()).collect();
                let found = backend.poll(&places);
                let results = targets
                    .into_iter()
                    .zip(found)
                    .map(|((n, i, _), live)| (n, i, live))
                    .collect();
                report(SupEvent::Polled { results });
            }
        }
    }
}
