//! Routing: which backend an agent goes to (the remote one when it has a host, else the
//! team's local one), with the local viewer that shows each remote agent.

use crate::RemoteBackend;
use agent_team_pane::{ExitNotify, LaunchSpec, Launched, Liveness, PaneBackend, PaneError, env};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The team's local backend and the remote one side by side: a launch with a host and a
/// process with one go to the remote backend, everything else to the local one. Each remote
/// agent also gets a local viewer on the team's backend (its pane in the tmux layout, or a
/// headless process): its log on the host, followed over the link and copied into the local
/// log, so `attach`, the pane border and `logs` work as for a local agent.
pub struct Routed {
    local: Arc<dyn PaneBackend>,
    remote: Arc<RemoteBackend>,
    /// The viewer of each remote agent, by (host, pid).
    viewers: Mutex<HashMap<(String, u32), Launched>>,
}

impl Routed {
    /// `local` for agents here, `remote` for agents on hosts.
    pub fn new(local: Arc<dyn PaneBackend>, remote: Arc<RemoteBackend>) -> Self {
        Routed {
            local,
            remote,
            viewers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the local viewer of a remote agent just launched (in its old pane when it had
    /// one) and gives the agent the viewer's pane.
    fn view(
        &self,
        spec: &LaunchSpec,
        mut launched: Launched,
        previous: Option<&Launched>,
    ) -> Launched {
        let (Some(host), Some(argv)) = (
            launched.host.clone(),
            self.remote.viewer_argv(spec, launched.pid),
        ) else {
            return launched;
        };
        let vspec = LaunchSpec {
            argv,
            env: spec
                .env
                .iter()
                .filter(|(k, _)| k == env::LOG_FILE)
                .cloned()
                .collect(),
            host: None,
            secret_env: Vec::new(),
            // Not the agent's directory: that one is on the host.
            cwd: spec
                .log
                .parent()
                .filter(|d| std::fs::create_dir_all(d).is_ok())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
            ..spec.clone()
        };
        let viewed = match previous.filter(|p| p.pane.is_some()) {
            Some(p) => self.local.respawn(
                &vspec,
                &Launched {
                    host: None,
                    ..p.clone()
                },
            ),
            None => self.local.spawn(&vspec),
        };
        match viewed {
            Ok(v) => {
                launched.pane = v.pane.clone();
                if let Ok(mut m) = self.viewers.lock() {
                    m.insert((host, launched.pid), v);
                }
            }
            Err(e) => tracing::warn!(agent = %spec.name, "no local view of the remote agent: {e}"),
        }
        launched
    }

    /// Stops a remote agent's viewer.
    fn unview(&self, target: &Launched) {
        let Some(host) = target.host.clone() else {
            return;
        };
        let viewer = self
            .viewers
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(host, target.pid)));
        if let Some(v) = viewer {
            let _ = self.local.stop(&v, Duration::from_millis(200));
        }
    }

    /// The remote backend (its links).
    pub fn remote(&self) -> &Arc<RemoteBackend> {
        &self.remote
    }
}

impl PaneBackend for Routed {
    fn kind(&self) -> &'static str {
        self.local.kind()
    }

    fn spawns_at_once(&self, spec: &LaunchSpec) -> bool {
        spec.host.is_none() && self.local.spawns_at_once(spec)
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        if spec.host.is_some() {
            let l = self.remote.spawn(spec)?;
            Ok(self.view(spec, l, None))
        } else {
            self.local.spawn(spec)
        }
    }

    fn spawn_many(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        let (remote, local): (Vec<usize>, Vec<usize>) =
            (0..specs.len()).partition(|&i| specs[i].host.is_some());
        let mut out: Vec<Option<Result<Launched, PaneError>>> =
            specs.iter().map(|_| None).collect();
        let local_specs: Vec<LaunchSpec> = local.iter().map(|&i| specs[i].clone()).collect();
        for (&i, r) in local.iter().zip(self.local.spawn_many(&local_specs)) {
            out[i] = Some(r);
        }
        let remote_specs: Vec<LaunchSpec> = remote.iter().map(|&i| specs[i].clone()).collect();
        for (&i, r) in remote.iter().zip(self.remote.spawn_many(&remote_specs)) {
            out[i] = Some(r.map(|l| self.view(&specs[i], l, None)));
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PaneError::Tool("not launched".into()))))
            .collect()
    }

    fn respawn(&self, spec: &LaunchSpec, previous: &Launched) -> Result<Launched, PaneError> {
        if spec.host.is_some() {
            let l = self.remote.spawn(spec)?;
            Ok(self.view(spec, l, Some(previous)))
        } else {
            self.local.respawn(spec, previous)
        }
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        if target.host.is_some() {
            let stopped = self.remote.stop(target, grace);
            self.unview(target);
            stopped
        } else {
            self.local.stop(target, grace)
        }
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        if target.host.is_some() {
            self.remote.liveness(target)
        } else {
            self.local.liveness(target)
        }
    }

    fn poll(&self, targets: &[Launched]) -> Vec<Liveness> {
        let (remote, local): (Vec<usize>, Vec<usize>) =
            (0..targets.len()).partition(|&i| targets[i].host.is_some());
        let mut out = vec![Liveness::Unknown; targets.len()];
        let pick = |idx: &[usize]| idx.iter().map(|&i| targets[i].clone()).collect::<Vec<_>>();
        if !local.is_empty() {
            for (i, l) in local.iter().zip(self.local.poll(&pick(&local))) {
                out[*i] = l;
            }
        }
        // Always: a stop that found its host unreachable is retried here.
        for (i, l) in remote.iter().zip(self.remote.poll(&pick(&remote))) {
            out[*i] = l;
        }
        out
    }

    fn forget(&self, target: &Launched) {
        if target.host.is_none() {
            self.local.forget(target)
        } else {
            self.unview(target);
            if target.pane.is_some() {
                self.local.forget(&Launched {
                    host: None,
                    ..target.clone()
                });
            }
        }
    }

    // A remote agent's pane is its viewer's: titles and bells go to it.
    fn set_title(&self, target: &Launched, title: &str) {
        self.local.set_title(
            &Launched {
                host: None,
                ..target.clone()
            },
            title,
        )
    }

    fn set_titles(&self, titles: &[(Launched, String)]) {
        let local: Vec<(Launched, String)> = titles
            .iter()
            .map(|(t, s)| {
                (
                    Launched {
                        host: None,
                        ..t.clone()
                    },
                    s.clone(),
                )
            })
            .collect();
        self.local.set_titles(&local)
    }

    fn bell(&self, target: &Launched, message: &str) {
        self.local.bell(
            &Launched {
                host: None,
                ..target.clone()
            },
            message,
        )
    }

    fn paste(&self, target: &Launched, text: &str) -> Result<(), PaneError> {
        if target.host.is_some() {
            return self.remote.paste(target, text);
        }
        self.local.paste(target, text)
    }

    fn shutdown(&self) {
        self.remote.shutdown();
        self.local.shutdown();
    }

    fn collect_work(&self, host: &str, name: &str, message: &str) -> Result<bool, PaneError> {
        self.remote.collect_work(host, name, message)
    }

    fn watch_exits(&self, notify: ExitNotify) {
        self.local.watch_exits(notify)
    }

    fn agents_are_children(&self) -> bool {
        self.local.agents_are_children()
    }
}
