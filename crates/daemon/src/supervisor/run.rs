//! The team's run on a [`Step`]: its configuration, the run's start and finish, the shutdown,
//! polling the backends and the panes' titles.

use super::spawn::member;
use super::*;

impl Step<'_> {
    /// The stored configuration with its run-time settings applied: what the daemon and its
    /// agents work from.
    pub(crate) fn stored_config(&self) -> Option<TeamConfig> {
        self.state
            .config()
            .and_then(|v| serde_json::from_value::<TeamConfig>(v.clone()).ok())
            .map(|c| c.effective())
    }

    /// `config_set` / `config_reset` (`key` none: every setting): checked against the
    /// team's configuration, kept with it, applied from then on.
    pub(crate) fn config_change(
        &mut self,
        actor: &Actor,
        key: Option<String>,
        value: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        if !actor.is_privileged() {
            return Err(err(
                ErrorCode::PermissionDenied,
                "only the leader or the operator may change the team's settings",
            ));
        }
        let cfg = self.sup.config.clone().ok_or_else(|| {
            err(
                ErrorCode::InvalidState,
                "configure the team before changing its settings",
            )
        })?;
        // The leader (a model) may tune models and roles, not lift a limit set against it.
        if *actor != Actor::Operator
            && key
                .as_deref()
                .is_some_and(agent_team_config::overrides::operator_only)
        {
            return Err(err(
                ErrorCode::PermissionDenied,
                "only the operator may change max_teammates",
            ));
        }
        let bad = |m: String| err(ErrorCode::BadRequest, m);
        let (key, applies) = match (key, &value) {
            (Some(k), Some(v)) => {
                let applies = cfg.check_override(&k, v).map_err(bad)?;
                (k, applies)
            }
            (Some(k), None) => {
                let applies = agent_team_config::overrides::key_applies(&k).map_err(bad)?;
                (k, applies)
            }
            (None, _) => (
                "*".to_string(),
                agent_team_config::overrides::Applies::NextStart,
            ),
        };
        self.state
            .set_override(actor, &key, value, applies.as_str(), self.sup.clock.wall())?;
        self.sup.config = self.stored_config();
        let now = self.sup.config.as_ref().and_then(|c| c.setting(&key));
        Ok(Reply::ConfigChanged {
            key,
            value: now,
            applies: applies.as_str().to_string(),
        })
    }

    /// `configure`: store the team configuration.
    pub(crate) fn configure(
        &mut self,
        actor: &Actor,
        mut config: serde_json::Value,
    ) -> Result<Reply, ErrorBody> {
        // Run-time settings outlive a new configuration (`up` reads the file again): kept
        // until `config reset`.
        if let (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) =
            (self.state.config(), &mut config)
            && let Some(o) = old.get("overrides").filter(|o| !o.is_null())
            && !new.contains_key("overrides")
        {
            new.insert("overrides".into(), o.clone());
        }
        let parsed: TeamConfig = serde_json::from_value(config.clone()).map_err(|e| {
            err(
                ErrorCode::BadRequest,
                format!("invalid team configuration: {e}"),
            )
        })?;
        if parsed.name != self.sup.team {
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "the configuration is for team {:?}, not {:?}",
                    parsed.name, self.sup.team
                ),
            ));
        }
        if parsed.backend == BackendKind::Auto {
            return Err(err(
                ErrorCode::BadRequest,
                "resolve backend `auto` before configuring the daemon",
            ));
        }
        if let Some(current) = &self.sup.config
            && current.backend != parsed.backend
            && self.sup.runtimes.values().any(|r| r.launched.is_some())
        {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "the team runs on the {} backend; `agent-team down` before switching to {}",
                    current.backend.as_str(),
                    parsed.backend.as_str()
                ),
                json!({"backend": current.backend.as_str()}),
            ));
        }
        self.state.set_config(actor, config)?;
        if self.sup.config.as_ref().map(|c| c.backend) != Some(parsed.backend) {
            self.sup.backend = None;
        }
        self.sup.config = Some(parsed.effective());
        Ok(Reply::Done)
    }

    /// `start_run`: record the goal and start the leader.
    pub(crate) fn start_run(
        &mut self,
        actor: &Actor,
        goal: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        let cfg = self.sup.config.clone().ok_or_else(|| {
            err(
                ErrorCode::InvalidState,
                "configure the team before starting a run",
            )
        })?;
        // A goal given here was filled by whoever sent it; the team file's is filled now.
        let goal = match goal {
            Some(g) => Some(g),
            None => agent_team_config::team_goal(&cfg)
                .map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?,
        };
        // A team whose memory is per run starts each with none (lauren-ai's TeamMemory).
        if cfg.memory == agent_team_config::MemoryScope::Run {
            self.state.memory_clear(actor, self.sup.clock.wall())?;
        }
        self.state.start_run(actor, goal, self.sup.clock.wall())?;
        match self.state.agent(LEADER).map(|a| a.info.status) {
            None => {
                // The leader and the team file's teammates start together, the leader first so
                // it gets the main pane; the leader's own spawn requests then find them there.
                self.add_agent_record(&member(LEADER, LEADER), None)?;
                let mut names = vec![LEADER.to_string()];
                for t in &cfg.teammates {
                    if self.state.agent(&t.name).is_none()
                        && self.state.teammate_count() < cfg.max_teammates
                    {
                        let m = SpawnMember {
                            name: t.name.clone(),
                            role: t.role.clone(),
                            instructions: t.instructions.clone(),
                            model: t.model.clone(),
                            provider: t.provider.map(|p| p.as_str().to_string()),
                            color: t.color.clone(),
                            message: None,
                            host: t.host.clone(),
                            workspace: t.workspace.clone(),
                            container: t.container.clone(),
                        };
                        match self.add_agent_record(&m, None) {
                            Ok(()) => names.push(t.name.clone()),
                            Err(e) => {
                                tracing::warn!(agent = %t.name, "cannot start: {}", e.message)
                            }
                        }
                    }
                }
                self.launch_many(&names);
            }
            Some(s) if s.is_down() => {
                // A new run of a team that ran before starts from the team's declared members:
                // a teammate an earlier run's leader (or the operator) spawned and that is down
                // now leaves the roster, so this run's leader can spawn that name afresh.
                self.forget_undeclared(&cfg);
                // Its leader and its team-file teammates come back (same names, same inboxes).
                self.restart_agent(LEADER, None)?;
                for t in &cfg.teammates {
                    if self
                        .state
                        .agent(&t.name)
                        .is_some_and(|a| a.info.status.is_down())
                    {
                        self.restart_agent(&t.name, None)?;
                    }
                }
            }
            Some(_) => {}
        }
        Ok(Reply::Done)
    }

    /// Takes every teammate that is down and not one of the team file's members off the
    /// roster (an agent of the `external` backend, which connects by itself, stays).
    fn forget_undeclared(&mut self, cfg: &TeamConfig) {
        let now = self.sup.clock.wall();
        let gone: Vec<String> = self
            .state
            .agent_records()
            .filter(|a| {
                a.info.name != LEADER
                    && a.info.status.is_down()
                    && a.info.backend != "external"
                    && !cfg.teammates.iter().any(|t| t.name == a.info.name)
            })
            .map(|a| a.info.name.clone())
            .collect();
        for name in gone {
            if let Some(incarnation) =
                self.state
                    .forget_agent(&name, "a new run starts from the team file's members", now)
            {
                self.sup.runtimes.remove(&name);
                self.sup.retired.insert(name, incarnation);
            }
        }
    }

    /// After `finish`: ask every teammate to shut down, and stop those that do not: an idle
    /// one after [`SHUTDOWN_GRACE`], one still in a turn (its last report on the way; it reads
    /// the request when the turn ends) after the team's `end_grace`.
    pub(crate) fn finish_team(&mut self) {
        // Only a process that runs: a leader down now (its restart pending) finished nothing.
        if let Some(rt) = self.sup.runtimes.get_mut(LEADER)
            && rt.launched.is_some()
        {
            rt.finished_run = true;
        }
        let now = self.sup.clock.wall();
        let end_grace = self
            .sup
            .config
            .as_ref()
            .map_or(
                Duration::from_secs(agent_team_config::DEFAULT_END_GRACE_SECS),
                |c| Duration::from_secs(c.end_grace_secs),
            )
            .max(SHUTDOWN_GRACE);
        let teammates: Vec<(String, AgentStatus)> = self
            .state
            .agents()
            .into_iter()
            .filter(|a| a.name != LEADER && a.backend != "external" && !a.status.is_down())
            .map(|a| (a.name, a.status))
            .collect();
        for (name, status) in teammates {
            let grace = if matches!(status, AgentStatus::Running | AgentStatus::Waiting) {
                end_grace
            } else {
                SHUTDOWN_GRACE
            };
            if let Some(rt) = self.sup.runtimes.get_mut(&name) {
                rt.stop = Some(StopReason::Finished);
            }
            let _ = self.state.send(
                &Actor::Agent(LEADER.into()),
                &name,
                "the team is finished; please exit".into(),
                MessageKind::ShutdownRequest,
                Some("shutdown".into()),
                now,
            );
            let inc = self.current_incarnation(&name).unwrap_or(0);
            self.schedule(grace, SupTimer::StopGrace(name, inc));
        }
    }

    /// `down` or a signal: ask everyone to exit, then stop whoever remains.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.sup.stopping {
            return;
        }
        self.sup.stopping = true;
        let now = self.sup.clock.wall();
        // Whoever waits for the run (`agent-team run`) hears that it will not finish.
        self.state.fail_run(
            "the team was stopped (`agent-team down` or a signal to its daemon) before the run finished"
                .into(),
            now,
        );
        let names: Vec<String> = self.sup.runtimes.keys().cloned().collect();
        for name in names {
            let (launched, busy) = match self.sup.runtimes.get(&name) {
                Some(r) => (r.launched.is_some(), r.busy),
                None => continue,
            };
            if launched || busy {
                if let Some(rt) = self.sup.runtimes.get_mut(&name) {
                    rt.stop = Some(StopReason::Shutdown);
                }
                let connected = self.state.agent(&name).is_some_and(|a| a.info.connected);
                if connected {
                    let _ = self.state.send(
                        &Actor::Operator,
                        &name,
                        "the team is shutting down; please exit".into(),
                        MessageKind::ShutdownRequest,
                        Some("shutdown".into()),
                        now,
                    );
                    let inc = self.current_incarnation(&name).unwrap_or(0);
                    self.schedule(SHUTDOWN_GRACE, SupTimer::StopGrace(name.clone(), inc));
                } else {
                    self.begin_stop(&name, StopReason::Shutdown);
                }
            } else if self.state.agent(&name).is_some_and(|a| {
                matches!(a.info.status, AgentStatus::Backoff | AgentStatus::Starting)
            }) {
                self.state.set_agent_status(
                    &name,
                    AgentStatus::Stopped,
                    Some("team shut down".into()),
                    now,
                );
            }
        }
        self.schedule(
            SHUTDOWN_GRACE + KILL_GRACE + Duration::from_secs(5),
            SupTimer::ShutdownDeadline,
        );
    }

    /// The periodic check: looks at the processes at every tick while some launched agent is
    /// not connected (starting, or its connection just dropped), else at every
    /// [`super::CONNECTED_POLL_TICKS`]th tick.
    pub(crate) fn tick(&mut self) {
        let all_connected = self.sup.runtimes.iter().all(|(name, rt)| {
            rt.launched.is_none() || self.state.agent(name).is_some_and(|a| a.info.connected)
        });
        if all_connected && self.sup.quiet_ticks + 1 < super::CONNECTED_POLL_TICKS {
            self.sup.quiet_ticks += 1;
            return;
        }
        self.sup.quiet_ticks = 0;
        self.poll();
    }

    /// Checks every launched agent's process off the core thread.
    pub(crate) fn poll(&mut self) {
        if self.sup.poll_busy {
            self.sup.poll_again = true;
            return;
        }
        // Every agent is looked at: those named since need no look of their own.
        self.sup.poll_named.clear();
        let targets: Vec<(String, u64, Launched)> = self
            .sup
            .runtimes
            .iter()
            .filter_map(|(n, r)| self.poll_target(n, r))
            .collect();
        self.run_poll(targets);
    }

    /// Checks one agent's process off the core thread (one that said it ended): the others
    /// are not copied and looked at for it, so a thousand agents ending is not a million looks.
    pub(crate) fn poll_one(&mut self, name: String) {
        self.sup.poll_named.insert(name);
        if !self.sup.poll_busy {
            self.poll_named();
        }
    }

    /// Checks the agents that said they ended since the last poll.
    pub(crate) fn poll_named(&mut self) {
        let named = std::mem::take(&mut self.sup.poll_named);
        // Room for all at once: a thousand agents ending together grew it ten times over,
        // each growth a large allocation that had the allocator gather every small chunk the
        // agents had just freed (~18 % of the core's samples in a large `down`'s last stretch).
        let mut targets: Vec<(String, u64, Launched)> = Vec::with_capacity(named.len());
        targets.extend(
            named
                .iter()
                .filter_map(|n| self.poll_target(n, self.sup.runtimes.get(n)?)),
        );
        self.run_poll(targets);
    }

    /// What a poll looks at for agent `name`: its launch, when it has one and nothing else is
    /// being done to it.
    fn poll_target(&self, name: &str, rt: &super::Runtime) -> Option<(String, u64, Launched)> {
        if rt.busy {
            return None;
        }
        let launched = rt.launched.as_ref()?;
        // A connected agent on another host is alive as far as anyone can tell: its death or
        // its link's drops its connection, which looks at once. Looking anyway would be an ssh
        // session each time, for nothing.
        if rt.unreachable.is_none()
            && launched.host.is_some()
            && self.state.agent(name).is_some_and(|a| a.info.connected)
        {
            return None;
        }
        let incarnation = self.current_incarnation(name)?;
        Some((name.to_string(), incarnation, launched.clone()))
    }

    /// Starts a poll job of `targets` (none: nothing to do).
    fn run_poll(&mut self, targets: Vec<(String, u64, Launched)>) {
        if targets.is_empty() {
            return;
        }
        let Ok(backend) = self.backend() else { return };
        self.sup.poll_busy = true;
        self.run(Job::Poll { targets, backend });
    }

    /// Keeps pane titles (`name · role · status · task`) current, for backends that show them.
    pub(crate) fn refresh_titles(&mut self) {
        let Some(backend) = self.sup.backend.clone() else {
            return;
        };
        if !matches!(backend.kind(), "tmux" | "iterm2") {
            return;
        }
        let mut updates = Vec::new();
        for (name, rt) in self.sup.runtimes.iter_mut() {
            // A dead pane stays on screen, so its title keeps saying how it ended.
            let Some(l) = rt.launched.as_ref().or(rt.place.as_ref()) else {
                continue;
            };
            let Some(a) = self.state.agent(name) else {
                continue;
            };
            let task = a
                .info
                .current_task
                .map(|t| format!(" · task {t}"))
                .unwrap_or_default();
            // A member on another host says where: `name@team · host · role · status`.
            let host = a
                .info
                .host
                .as_ref()
                .map(|h| format!(" · {h}"))
                .unwrap_or_default();
            let title = format!(
                "{}@{}{host} · {} · {}{task}",
                a.info.name, self.sup.team, a.info.role, a.info.status
            );
            if rt.title.as_deref() != Some(title.as_str()) {
                rt.title = Some(title.clone());
                updates.push((l.clone(), title));
            }
        }
        if updates.is_empty() {
            return;
        }
        // One thread applies title changes in order, so a late "running" never overwrites a
        // newer "idle".
        let tx = self.sup.titles.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<(Launched, String)>();
            let b = backend.clone();
            std::thread::spawn(move || {
                // Everything queued while the last update ran goes out as one tmux command,
                // keeping only the newest title of each pane.
                while let Ok(first) = rx.recv() {
                    let mut batch: Vec<(Launched, String)> = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.retain(|(l, _)| l.pane != more.0.pane);
                        batch.push(more);
                    }
                    b.set_titles(&batch);
                }
            });
            tx
        });
        for u in updates {
            let _ = tx.send(u);
        }
    }
}
