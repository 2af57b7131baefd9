//! After a daemon restart: the stored configuration loaded, and the agents that were running
//! re-adopted (or their orphans stopped); the team's backend, made on first use.

use super::*;

impl Step<'_> {
    /// Loads the stored configuration and re-adopts agents that were running before a restart.
    pub(crate) fn sup_recover(&mut self) {
        // Task commands of in-process agents of a crashed predecessor are orphans now: the
        // agents that ran them died with it, so they go too (their tasks are run again). The
        // look at every process on the machine is skipped for a team with no agent on record
        // (a new one): an agent runs a command only once its record was committed.
        if self.state.agent_records().next().is_some() {
            let reaped =
                agent_team_pane::procs::reap_marked(&self.sup.paths.socket.display().to_string());
            if reaped > 0 {
                tracing::warn!(reaped, "killed task commands left by the previous daemon");
            }
        }
        self.sup.config = self.stored_config();
        let now = self.sup.clock.wall();
        let records: Vec<AgentRecord> = self.state.agent_records().cloned().collect();
        for rec in records {
            let info = &rec.info;
            let rt = self.sup.runtimes.entry(info.name.clone()).or_default();
            if info.backend == "external" {
                continue;
            }
            // An agent that ran inside the previous daemon died with it: start it again at
            // once rather than at the next poll (a healed team is serving again sooner).
            let place = info
                .pid
                .filter(|_| info.backend != "in-process")
                .map(|pid| Launched {
                    container: info.container.as_ref().map(|c| {
                        agent_team_pane::container::ContainerRef {
                            program: c.program().to_string(),
                            name: agent_team_pane::container::container_name(
                                &agent_team_pane::container::instance_of(&self.sup.paths.socket),
                                &info.name,
                            ),
                        }
                    }),
                    pid,
                    pgid: info.pgid,
                    pane: info.pane.clone(),
                    host: info.host.clone(),
                });
            rt.place = place.clone();
            match info.status {
                AgentStatus::Starting
                | AgentStatus::Running
                | AgentStatus::Idle
                | AgentStatus::Waiting
                | AgentStatus::Unreachable => {
                    // Maybe still alive: watch it, and give it the connect-back deadline again.
                    rt.launched = place;
                    if rt.launched.is_none() {
                        // Crashed between adding and launching, or it ran inside the crashed
                        // daemon: start it (a restart launches only a starting or backed-off
                        // agent).
                        if info.status != AgentStatus::Starting {
                            self.state.set_agent_status(
                                &info.name,
                                AgentStatus::Backoff,
                                Some("daemon restarted".into()),
                                now,
                            );
                        }
                        self.schedule(
                            Duration::ZERO,
                            SupTimer::Restart(info.name.clone(), info.incarnation),
                        );
                    } else {
                        self.schedule(
                            connect_timeout(),
                            SupTimer::Connect(info.name.clone(), info.incarnation),
                        );
                    }
                }
                AgentStatus::Backoff => {
                    self.state.set_agent_status(
                        &info.name,
                        AgentStatus::Backoff,
                        Some("daemon restarted".into()),
                        now,
                    );
                    self.schedule(
                        Duration::from_millis(100),
                        SupTimer::Restart(info.name.clone(), info.incarnation),
                    );
                }
                _ => {}
            }
        }
        self.schedule(POLL_EVERY, SupTimer::Poll);
    }

    pub(super) fn backend(&mut self) -> Result<Arc<dyn PaneBackend>, ErrorBody> {
        if let Some(b) = &self.sup.backend {
            return Ok(b.clone());
        }
        let cfg = self.sup.config.clone().ok_or_else(|| {
            err(
                ErrorCode::InvalidState,
                "the team has no configuration yet; start it with `agent-team up`",
            )
        })?;
        let runtime = self
            .sup
            .paths
            .socket
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let backend: Arc<dyn PaneBackend> = if let Some(f) = &self.sup.env.factory {
            f(cfg.backend, &cfg).map_err(|e| err(ErrorCode::InvalidState, e))?
        } else {
            match cfg.backend {
                BackendKind::Process => Arc::new(agent_team_pane::process::ProcessBackend::new()),
                BackendKind::InProcess => match &self.sup.env.runner {
                    Some(r) => {
                        Arc::new(agent_team_pane::inprocess::InProcessBackend::new(r.clone()))
                    }
                    None => {
                        return Err(err(
                            ErrorCode::InvalidState,
                            "this daemon cannot run agents in-process",
                        ));
                    }
                },
                BackendKind::Tmux => {
                    use agent_team_pane::tmux::{TmuxBackend, TmuxLayout};
                    let place = tmux_placement(&cfg, &self.sup.paths.tmux_socket, &self.sup.team);
                    use agent_team_config::Layout as L;
                    let layout = match cfg.layout {
                        L::MainVertical => TmuxLayout::MainVertical,
                        L::Tiled => TmuxLayout::Tiled,
                        L::MainHorizontal => TmuxLayout::MainHorizontal,
                        L::EvenHorizontal => TmuxLayout::EvenHorizontal,
                        L::EvenVertical => TmuxLayout::EvenVertical,
                        L::Windows => TmuxLayout::Windows,
                    };
                    let mut b = TmuxBackend::new(place, layout, &runtime)
                        .map_err(|e| err(ErrorCode::InvalidState, e.to_string()))?;
                    // The window is laid out again by this program on every resize or split.
                    if let Some(exe) = &self.sup.env.layout_exe {
                        b = b.with_layout_hooks(exe.clone());
                    }
                    Arc::new(b)
                }
                BackendKind::Iterm2 => Arc::new(agent_team_pane::iterm::ItermBackend::new(
                    agent_team_pane::iterm::RealOsascript,
                    runtime.clone(),
                )),
                BackendKind::Auto => {
                    return Err(err(
                        ErrorCode::InvalidState,
                        "backend `auto` must be resolved by the CLI",
                    ));
                }
            }
        };
        // Members on other hosts go to the remote backend, beside the team's own (links are
        // made at their first launch).
        let backend: Arc<dyn PaneBackend> = if cfg.backend == BackendKind::InProcess {
            backend
        } else {
            let remote =
                super::remote_backend(&cfg, &self.sup.paths, self.sup.env.worker_exe.clone());
            let routed: Arc<dyn PaneBackend> =
                Arc::new(agent_team_remote::Routed::new(backend, Arc::new(remote)));
            // Members in containers run in them, through the backend (issue 66).
            Arc::new(agent_team_pane::container::Contained::new(
                routed,
                &self.sup.paths.socket,
            ))
        };
        // An agent that ends wakes the core at once (in-process agents; others need no help).
        backend.watch_exits(self.sup.wake.clone());
        self.sup.backend = Some(backend.clone());
        Ok(backend)
    }
}
