//! The agents' lifecycle on a [`Step`]: recovery after a daemon restart, configuration, the
//! run's start, spawn with a connect-back deadline and roster rollback, exits and the restart
//! policy, kill, restart in place, the team's finish and shutdown, polling and pane titles.

use super::*;

impl Step<'_> {
    /// Loads the stored configuration and re-adopts agents that were running before a restart.
    pub(crate) fn sup_recover(&mut self) {
        // Task commands of in-process agents of a crashed predecessor are orphans now: the
        // agents that ran them died with it, so they go too (their tasks are run again).
        let reaped =
            agent_team_pane::procs::reap_marked(&self.sup.paths.socket.display().to_string());
        if reaped > 0 {
            tracing::warn!(reaped, "killed task commands left by the previous daemon");
        }
        self.sup.config = self.stored_config();
        let now = Timestamp::now();
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
                    use agent_team_pane::tmux::{Placement, TmuxBackend, TmuxLayout};
                    let place = match &cfg.tmux {
                        Some(t) => Placement {
                            socket: t.socket.clone(),
                            session: t.session.clone(),
                            window: t.window.clone(),
                            private_server: t.window.is_none(),
                        },
                        None => Placement {
                            socket: self.sup.paths.tmux_socket.clone(),
                            session: self.sup.team.clone(),
                            window: None,
                            private_server: true,
                        },
                    };
                    let layout = match cfg.layout {
                        agent_team_config::Layout::MainVertical => TmuxLayout::MainVertical,
                        agent_team_config::Layout::Tiled => TmuxLayout::Tiled,
                        agent_team_config::Layout::Windows => TmuxLayout::Windows,
                    };
                    let b = TmuxBackend::new(place, layout, &runtime)
                        .map_err(|e| err(ErrorCode::InvalidState, e.to_string()))?;
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
            Arc::new(agent_team_remote::Routed::new(backend, Arc::new(remote)))
        };
        // An agent that ends wakes the core at once (in-process agents; others need no help).
        backend.watch_exits(self.sup.wake.clone());
        self.sup.backend = Some(backend.clone());
        Ok(backend)
    }

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
            .set_override(actor, &key, value, applies.as_str(), Timestamp::now())?;
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
            self.state.memory_clear(actor, Timestamp::now())?;
        }
        self.state.start_run(actor, goal, Timestamp::now())?;
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
                // A new run of a team that ran before: its leader and its team-file teammates
                // come back (same names, same inboxes).
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

    /// `spawn`: add a teammate and launch it; answered once it has connected.
    pub(crate) fn spawn_request(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        mut m: SpawnMember,
    ) -> Result<Option<Reply>, ErrorBody> {
        check_may_spawn(actor)?;
        let cfg = self.sup.config.clone().ok_or_else(|| {
            err(
                ErrorCode::InvalidState,
                "configure the team before spawning",
            )
        })?;
        if m.role.is_empty() {
            m.role = cfg.default_role.clone();
        }
        let (role, name) = (m.role.clone(), m.name.clone());
        let name = (!name.is_empty()).then_some(name);
        if !cfg.roles.contains_key(&role) {
            let known: Vec<&String> = cfg.roles.keys().collect();
            return Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no role {role:?}"),
                json!({"role": role, "valid": known}),
            ));
        }
        let name = match name {
            Some(n) => n,
            None => (1..)
                .map(|i| format!("{role}-{i}"))
                .find(|n| self.state.agent(n).is_none())
                .unwrap_or_default(),
        };
        if name == LEADER || role == LEADER {
            return Err(err(
                ErrorCode::BadRequest,
                "the leader is started by `up`/`run`, not spawned",
            ));
        }
        if let Some(existing) = self.state.agent(&name)
            && !existing.info.status.is_down()
        {
            // A retry of the same spawn is answered from its request id; a second spawn of a
            // live name is a mistake the caller must hear about.
            return Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                format!(
                    "{name} is already on the team ({}, {})",
                    existing.info.role, existing.info.status
                ),
                json!({"agent": name, "role": existing.info.role, "status": existing.info.status}),
            ));
        }
        if self.state.teammate_count() >= cfg.max_teammates {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "the team already has {} teammates (max_teammates = {})",
                    self.state.teammate_count(),
                    cfg.max_teammates
                ),
                json!({"max_teammates": cfg.max_teammates}),
            ));
        }
        check_placement(actor, &cfg, m.host.as_deref(), m.workspace.as_deref())?;
        m.name = name.clone();
        self.add_agent_record(&m, Some((conn, id)))?;
        self.first_message(actor, &m);
        self.launch(&name);
        Ok(None)
    }

    /// Queues a member's first input, from whoever spawned or resumed it, before it starts.
    pub(super) fn first_message(&mut self, actor: &Actor, m: &SpawnMember) {
        if let Some(text) = m.message.as_ref().filter(|t| !t.trim().is_empty())
            && let Err(e) = self.state.send(
                actor,
                &m.name,
                text.clone(),
                MessageKind::Text,
                None,
                Timestamp::now(),
            )
        {
            tracing::warn!(agent = %m.name, "first message not queued: {}", e.message);
        }
    }

    /// Puts a new agent on the roster (status `starting`), ready to launch: its own
    /// instructions, model and provider are kept with it (they reach its worker at each
    /// launch), its colour given or the palette's next.
    pub(super) fn add_agent_record(
        &mut self,
        m: &SpawnMember,
        waiter: Option<(ConnId, u64)>,
    ) -> Result<(), ErrorBody> {
        let (name, role) = (m.name.as_str(), m.role.as_str());
        let backend = self.backend()?;
        let secret = agent_team_paths::new_secret()
            .map_err(|e| err(ErrorCode::Internal, format!("cannot make a secret: {e}")))?;
        let now = Timestamp::now();
        let host = m.host.clone().or_else(|| {
            self.sup
                .config
                .as_ref()
                .and_then(|c| c.role(role))
                .and_then(|r| r.host.clone())
        });
        if let Some(h) = &host {
            agent_team_config::check_host(h).map_err(|e| err(ErrorCode::BadRequest, e))?;
            if self
                .sup
                .config
                .as_ref()
                .is_some_and(|c| c.backend == BackendKind::InProcess)
            {
                return Err(err(
                    ErrorCode::BadRequest,
                    "a member on another host needs a process backend (tmux or process), not in-process",
                ));
            }
        } else if m.workspace.is_some() {
            return Err(err(
                ErrorCode::BadRequest,
                "`workspace` is a directory on the member's host: give it a `host` too",
            ));
        }
        let kind = if host.is_some() {
            "ssh"
        } else {
            backend.kind()
        };
        let mut info = AgentInfo::new(name, role, kind, 0, now);
        info.host = host.clone();
        info.color = Some(
            m.color
                .clone()
                .unwrap_or_else(|| palette_color(self.state.agents().len()).to_string()),
        );
        // A plan-required teammate starts read-only, planning (its member entry or its role
        // says; an exec member writes no plan).
        let exec = m.provider.as_deref() == Some(agent_team_config::Provider::Exec.as_str());
        if !exec
            && self
                .sup
                .config
                .as_ref()
                .is_some_and(|c| c.plan_required(name, role))
        {
            info.plan = Some(agent_team_protocol::PlanInfo::required());
        }
        let mut spec = json!({"role": role});
        for (k, v) in [
            ("instructions", &m.instructions),
            ("model", &m.model),
            ("provider", &m.provider),
            ("workspace", &m.workspace),
        ] {
            if let Some(v) = v {
                spec[k] = json!(v);
            }
        }
        self.state
            .add_agent(&Actor::Daemon, AgentRecord { info, secret, spec }, now)?;
        let rt = self.sup.runtimes.entry(name.to_string()).or_default();
        *rt = Runtime {
            first_spawn: true,
            ..Default::default()
        };
        if let Some((conn, id)) = waiter {
            rt.waiters.push(Waiter {
                conn,
                id,
                until: Until::Connected,
            });
        }
        Ok(())
    }

    /// Records the next incarnation of `name` and builds its launch; `None` if it failed (the
    /// failure is already handled).
    fn prepare_launch(&mut self, name: &str) -> Option<(u64, LaunchSpec, Option<Launched>)> {
        // A role set for this member at run time (`member.NAME.role`) is its role from this
        // start on.
        if let Some(role) = self
            .sup
            .config
            .as_ref()
            .and_then(|c| c.member_override(name, "role"))
            .map(str::to_string)
            && self.state.agent(name).is_some_and(|a| a.info.role != role)
        {
            self.state
                .update_agent(name, |a| a.info.role = role.clone());
        }
        let rec = self.state.agent(name).cloned()?;
        let incarnation = rec.info.incarnation + 1;
        if let Err(e) = self.backend() {
            self.launch_failed(name, incarnation, e.message);
            return None;
        }
        let spec = match self.launch_spec(&rec, incarnation) {
            Ok(s) => s,
            Err(e) => {
                self.launch_failed(name, incarnation, e);
                return None;
            }
        };
        let now = Timestamp::now();
        self.state.update_agent(name, |a| {
            a.info.incarnation = incarnation;
            a.info.pid = None;
            a.info.connected = false;
        });
        self.state.set_agent_status(
            name,
            AgentStatus::Starting,
            Some(format!("incarnation {incarnation}")),
            now,
        );
        let rt = self.sup.runtimes.entry(name.to_string()).or_default();
        rt.busy = true;
        Some((incarnation, spec, rt.place.clone()))
    }

    /// The team's workspace directory (where worktrees are made), from the team file.
    fn team_workspace(&self) -> std::path::PathBuf {
        self.sup
            .config
            .as_ref()
            .map(|c| c.workspace.clone())
            .unwrap_or_default()
    }

    /// Starts the next incarnation of one agent (in the same pane when there is one).
    fn launch(&mut self, name: &str) {
        let Some((incarnation, spec, place)) = self.prepare_launch(name) else {
            return;
        };
        let Ok(backend) = self.backend() else { return };
        let team_ws = self.team_workspace();
        self.run(Job::Launch {
            name: name.to_string(),
            incarnation,
            spec: Box::new(spec),
            place,
            team_ws,
            backend,
        });
    }

    /// Starts several new agents at once, in order (tmux: one command for all their panes).
    /// Members of one role on our own model loop start staggered: the first now, the others
    /// once its first model request has been answered ([`Step::first_answered`]) or after the
    /// team's `spawn_stagger_ms`, so their first requests read the prefix its request cached.
    pub(super) fn launch_many(&mut self, names: &[String]) {
        let names = self.stagger(names);
        self.launch_now(&names);
    }

    /// Which of `names` start now; the others are held behind the first of their role.
    fn stagger(&mut self, names: &[String]) -> Vec<String> {
        let wait = self.sup.config.as_ref().map_or(0, |c| c.spawn_stagger_ms);
        if wait == 0 {
            return names.to_vec();
        }
        let mut now = Vec::new();
        let mut firsts: HashMap<String, String> = HashMap::new();
        for name in names {
            let group = self.state.agent(name).and_then(|rec| {
                let provider = self.sup.provider_of(rec)?;
                let model_loop = matches!(
                    provider,
                    agent_team_config::Provider::Openai | agent_team_config::Provider::Anthropic
                );
                (model_loop && name != LEADER).then(|| rec.info.role.clone())
            });
            match group.and_then(|role| match firsts.get(&role) {
                Some(first) => Some(first.clone()),
                None => {
                    firsts.insert(role, name.clone());
                    None
                }
            }) {
                Some(first) => self
                    .sup
                    .staggered
                    .entry(first)
                    .or_default()
                    .push(name.clone()),
                None => now.push(name.clone()),
            }
        }
        for first in firsts.into_values() {
            if self.sup.staggered.contains_key(&first) {
                self.schedule(Duration::from_millis(wait), SupTimer::Stagger(first));
            }
        }
        now
    }

    /// `name`'s first model request was answered (it reported its usage): the members held
    /// behind it start now.
    pub(crate) fn first_answered(&mut self, name: &str) {
        if self.sup.staggered.contains_key(name) {
            self.release_staggered(name);
        }
    }

    /// Starts the members held behind `first` (none when they already started, or when the
    /// team is stopping).
    pub(super) fn release_staggered(&mut self, first: &str) {
        let Some(held) = self.sup.staggered.remove(first) else {
            return;
        };
        if self.sup.stopping {
            return;
        }
        let held: Vec<String> = held
            .into_iter()
            .filter(|n| {
                self.state
                    .agent(n)
                    .is_some_and(|a| a.info.status == AgentStatus::Starting)
            })
            .collect();
        self.launch_now(&held);
    }

    /// Starts `names` now, in order.
    fn launch_now(&mut self, names: &[String]) {
        let mut batch = Vec::new();
        for name in names {
            if let Some((incarnation, spec, _)) = self.prepare_launch(name) {
                batch.push((name.clone(), incarnation, spec));
            }
        }
        if batch.is_empty() {
            return;
        }
        let Ok(backend) = self.backend() else { return };
        let team_ws = self.team_workspace();
        self.run(Job::LaunchMany {
            batch,
            team_ws,
            backend,
        });
    }

    fn launch_spec(&self, rec: &AgentRecord, incarnation: u64) -> Result<LaunchSpec, String> {
        let cfg = self.sup.config.as_ref().ok_or("no team configuration")?;
        let role = cfg
            .role(&rec.info.role)
            .ok_or_else(|| format!("role {:?} is not in the configuration", rec.info.role))?;
        // An external agent CLI (role or member provider) is run by our worker, which writes
        // its private configuration first; its `command` names the CLI, not the agent program.
        let provider = self.sup.provider_of(rec).unwrap_or(role.provider);
        let argv = match &role.command {
            Some(c) if !provider.is_external() => c.clone(),
            _ => {
                let exe = self
                    .sup
                    .env
                    .worker_exe
                    .clone()
                    .ok_or("no worker executable configured")?;
                vec![exe.display().to_string()]
            }
        };
        let mut envs = vec![
            (
                env::SOCKET.to_string(),
                self.sup.paths.socket.display().to_string(),
            ),
            (env::TEAM.to_string(), self.sup.team.clone()),
            (env::NAME.to_string(), rec.info.name.clone()),
            (env::SECRET.to_string(), rec.secret.clone()),
            (env::INCARNATION.to_string(), incarnation.to_string()),
            (
                env::LOG_FILE.to_string(),
                self.sup
                    .paths
                    .agent_log(&rec.info.name)
                    .display()
                    .to_string(),
            ),
        ];
        let host = rec.info.host.clone();
        // What the worker needs to bring this daemon back after a crash (not for an agent
        // inside the daemon: it dies with it, nor on another host: it has no daemon there and
        // waits for the link to come back).
        if cfg.backend != BackendKind::InProcess && host.is_none() {
            envs.extend(self.sup.env.heal_env.iter().cloned());
        }
        for (k, v) in &role.env {
            envs.push((k.clone(), v.clone()));
        }
        if provider.is_external() {
            envs.push((env::EXTERNAL.to_string(), provider.as_str().to_string()));
        }
        // The member's own model, provider and instructions (team file or spawn); a model set
        // for it at run time (`member.NAME.model`) wins.
        for (key, var) in [
            ("model", env::MODEL),
            ("provider", env::PROVIDER),
            ("instructions", env::INSTRUCTIONS),
        ] {
            let set = (key == "model")
                .then(|| cfg.member_override(&rec.info.name, "model"))
                .flatten();
            if let Some(v) = set.or_else(|| rec.spec.get(key).and_then(|v| v.as_str())) {
                envs.push((var.to_string(), v.to_string()));
            }
        }
        // A worktree-isolated teammate works in its own checkout (created at launch); a
        // member on another host in the directory given for it there, else (empty) in the
        // remote backend's default one.
        let cwd = match role.isolation {
            _ if host.is_some() => PathBuf::from(
                rec.spec
                    .get("workspace")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default(),
            ),
            agent_team_config::Isolation::Worktree if rec.info.name != LEADER => {
                let dir = agent_team_worktree::path(&cfg.workspace, &rec.info.name);
                envs.push((WORKSPACE_ENV.to_string(), dir.display().to_string()));
                dir
            }
            _ => cfg.workspace.clone(),
        };
        // On another host the agent inherits nothing from this daemon: its model's and the
        // team's search key go with it (over the link's standard input, as its secret does).
        let secret_env = match host {
            Some(_) => cfg
                .agent_credential_vars(role, provider)
                .into_iter()
                .filter_map(|var| std::env::var(&var).ok().map(|v| (var, v)))
                .collect(),
            None => Vec::new(),
        };
        Ok(LaunchSpec {
            name: rec.info.name.clone(),
            role: rec.info.role.clone(),
            argv,
            env: envs,
            env_remove: vec!["TMUX".into(), "TMUX_PANE".into()],
            secret_env,
            cwd,
            log: self.sup.paths.agent_log(&rec.info.name),
            title: match &host {
                Some(h) => format!(
                    "{}@{} · {h} · {}",
                    rec.info.name, self.sup.team, rec.info.role
                ),
                None => format!("{}@{} · {}", rec.info.name, self.sup.team, rec.info.role),
            },
            color: rec.info.color.clone(),
            host,
        })
    }

    fn launch_failed(&mut self, name: &str, incarnation: u64, why: String) {
        tracing::warn!(agent = name, incarnation, "launch failed: {why}");
        if let Some(rt) = self.sup.runtimes.get_mut(name) {
            rt.busy = false;
        }
        self.failure(name, format!("could not start: {why}"), true);
    }

    /// A blocking operation reported back.
    pub(crate) fn sup_event(&mut self, ev: SupEvent) {
        match ev {
            SupEvent::Launched {
                name,
                incarnation,
                result,
            } => self.on_launched(&name, incarnation, result),
            SupEvent::Stopped {
                name,
                incarnation,
                result,
            } => self.on_stopped(&name, incarnation, result),
            SupEvent::Polled { results } => {
                self.sup.poll_busy = false;
                for (name, incarnation, live) in results {
                    match live {
                        Liveness::Exited(exit) => self.on_exit(&name, incarnation, exit),
                        Liveness::Unreachable => self.on_unreachable(&name, incarnation),
                        Liveness::Alive => self.on_reachable(&name, incarnation),
                        Liveness::Unknown => {}
                    }
                }
                if std::mem::take(&mut self.sup.poll_again) {
                    self.poll();
                }
            }
        }
    }

    fn current_incarnation(&self, name: &str) -> Option<u64> {
        self.state.agent(name).map(|a| a.info.incarnation)
    }

    fn on_launched(&mut self, name: &str, incarnation: u64, result: Result<Launched, String>) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let launched = match result {
            Ok(l) => l,
            Err(e) => return self.launch_failed(name, incarnation, e),
        };
        // With the pid, its start time: a `down` that finds no daemon stops this process and
        // never one that was given the same pid later (none for agents inside the daemon).
        let pid_start = (launched.pid != std::process::id() && launched.host.is_none())
            .then(|| agent_team_pane::procs::start_time(launched.pid))
            .flatten();
        self.state.update_agent(name, |a| {
            a.info.pid = Some(launched.pid);
            a.info.pgid = launched.pgid;
            a.info.pane = launched.pane.clone();
            if let Some(spec) = a.spec.as_object_mut() {
                match pid_start {
                    Some(t) => spec.insert(PID_START.into(), serde_json::json!(t)),
                    None => spec.remove(PID_START),
                };
            }
        });
        let stop = {
            let Some(rt) = self.sup.runtimes.get_mut(name) else {
                return;
            };
            rt.busy = false;
            rt.launched = Some(launched.clone());
            rt.place = Some(launched);
            rt.stop
        };
        if let Some(reason) = stop {
            self.begin_stop(name, reason);
        } else if self.state.agent(name).is_some_and(|a| a.info.connected) {
            // It connected before its launch was recorded: answer its waiters now, with its pid.
            self.on_connected(name, None);
        } else {
            self.schedule(
                connect_timeout(),
                SupTimer::Connect(name.to_string(), incarnation),
            );
        }
    }

    /// An agent authenticated: it is up; answer whoever waited for that.
    pub(crate) fn on_connected(&mut self, name: &str, peer_pid: Option<u32>) {
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.first_spawn = false;
        // Connected is reachable: an unreachable member is back as it was.
        if let Some((_, before)) = rt.unreachable.take()
            && self
                .state
                .agent(name)
                .is_some_and(|a| a.info.status == AgentStatus::Unreachable)
        {
            self.state.set_agent_status(
                name,
                before,
                Some("host reachable again".into()),
                Timestamp::now(),
            );
        }
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        // Backends that cannot tell a pane's pid (iTerm2) learn it from the peer credentials.
        if let (Some(l), Some(pid)) = (rt.launched.as_mut(), peer_pid)
            && l.pid == 0
        {
            l.pid = pid;
            l.pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
                .ok()
                .map(|p| p.as_raw() as u32);
            let (pid, pgid) = (l.pid, l.pgid);
            self.state.update_agent(name, |a| {
                a.info.pid = Some(pid);
                a.info.pgid = pgid;
            });
        }
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        if rt.busy && rt.launched.is_none() {
            // The launch result is still on its way; `on_launched` answers then.
            return;
        }
        if rt.stop.is_some() {
            // A restart (or kill) came in since this incarnation was launched: whoever waits is
            // answered by the next incarnation, or by `answer_down`.
            return;
        }
        let waiters: Vec<Waiter> = {
            let (now, later): (Vec<Waiter>, Vec<Waiter>) = rt
                .waiters
                .drain(..)
                .partition(|w| w.until == Until::Connected);
            rt.waiters = later;
            now
        };
        if let Some(agent) = self.state.agent(name).map(|a| a.info.clone()) {
            for w in waiters {
                self.answer(
                    w.conn,
                    w.id,
                    Ok(Reply::Agent {
                        agent: agent.clone(),
                    }),
                );
            }
        }
    }

    /// The connect-back deadline passed.
    pub(crate) fn connect_deadline(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let connected = self.state.agent(name).is_some_and(|a| a.info.connected);
        let launched = self.sup.runtimes.get(name).and_then(|r| r.launched.clone());
        if connected || launched.is_none() {
            return;
        }
        let why = format!(
            "did not connect back within {} s",
            connect_timeout().as_secs_f64()
        );
        tracing::warn!(agent = name, incarnation, "{why}");
        self.state
            .update_agent(name, |a| a.info.error = Some(why.clone()));
        // Stop the silent process; its exit then goes through the restart policy.
        self.stop_process(name, incarnation, Duration::from_secs(1));
    }

    /// Process exits found by polling.
    fn on_exit(&mut self, name: &str, incarnation: u64, exit: ExitInfo) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        let Some(launched) = rt.launched.take() else {
            return;
        };
        if rt.busy {
            // A stop is in flight; it reports the outcome.
            rt.launched = Some(launched);
            return;
        }
        let reason = rt.stop;
        tracing::info!(agent = name, incarnation, "exited: {exit}");
        self.state.update_agent(name, |a| {
            a.info.last_exit = Some(exit.to_string());
            a.info.connected = false;
        });
        // Whatever it left behind in its process group goes too.
        self.cleanup_group(name, incarnation, launched);
        self.after_down(name, reason, Some(exit));
    }

    /// A remote agent's host cannot be reached: `unreachable`, keeping its task for the team's
    /// `[ssh] grace_secs`; past it, its task goes back to the board and it is `failed`
    /// (unreachable). Its processes there are stopped once the host answers again (the remote
    /// backend keeps the stop until then).
    fn on_unreachable(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) || self.sup.stopping {
            return;
        }
        let now = self.sup.clock.now();
        let grace = Duration::from_secs(self.sup.config.as_ref().map_or(300, |c| c.ssh.grace_secs));
        let host = self
            .state
            .agent(name)
            .and_then(|a| a.info.host.clone())
            .unwrap_or_default();
        let Some(status) = self.state.agent(name).map(|a| a.info.status) else {
            return;
        };
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        if rt.busy || rt.launched.is_none() {
            return;
        }
        // A new episode unless the last one is still on (the worker itself may have said it
        // is idle or running since its link came back).
        let ongoing = rt
            .unreachable
            .filter(|_| status == AgentStatus::Unreachable);
        let since = match ongoing {
            Some((since, _)) => since,
            None => {
                rt.unreachable = Some((now, status));
                tracing::warn!(agent = name, host = %host, "host unreachable; keeping its task for {grace:?}");
                self.state.set_agent_status(
                    name,
                    AgentStatus::Unreachable,
                    Some(format!("host {host} unreachable")),
                    Timestamp::now(),
                );
                now
            }
        };
        if now.duration_since(since) < grace {
            return;
        }
        // The grace period is over: the work goes back to the board, the member is failed.
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.unreachable = None;
        let launched = rt.launched.take();
        tracing::warn!(agent = name, host = %host, "unreachable for {grace:?}: failed");
        self.state.update_agent(name, |a| {
            a.info.last_exit = Some("unreachable".into());
            a.info.connected = false;
        });
        self.state.set_agent_status(
            name,
            AgentStatus::Failed,
            Some(format!("host {host} unreachable for {} s", grace.as_secs())),
            Timestamp::now(),
        );
        self.release_and_tell(name, &format!("is unreachable on {host}"));
        if let Some(l) = launched {
            // Stopped there as soon as the host answers (the remote backend retries).
            self.cleanup_group(name, incarnation, l);
        }
    }

    /// A remote agent found alive: if its host was unreachable, it is back as it was.
    fn on_reachable(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let Some((_, before)) = self
            .sup
            .runtimes
            .get_mut(name)
            .and_then(|rt| rt.unreachable.take())
        else {
            return;
        };
        if self
            .state
            .agent(name)
            .is_some_and(|a| a.info.status == AgentStatus::Unreachable)
        {
            tracing::info!(agent = name, "host reachable again");
            self.state.set_agent_status(
                name,
                before,
                Some("host reachable again".into()),
                Timestamp::now(),
            );
        }
    }

    /// Decides what follows a process ending, given why it was stopped (if it was).
    fn after_down(&mut self, name: &str, reason: Option<StopReason>, exit: Option<ExitInfo>) {
        let now = Timestamp::now();
        let detail = exit.map(|e| e.to_string());
        let run_over = matches!(
            self.state.run().state,
            RunState::Finished | RunState::Failed
        );
        match reason {
            Some(StopReason::Restart) => {
                if let Some(rt) = self.sup.runtimes.get_mut(name) {
                    rt.stop = None;
                }
                self.launch(name);
            }
            Some(StopReason::Operator) | Some(StopReason::Shutdown) => {
                let why = self
                    .sup
                    .runtimes
                    .get_mut(name)
                    .and_then(|r| r.close_reason.take());
                let (detail, what) = match &why {
                    Some(r) => (Some(format!("closed: {r}")), format!("was closed ({r})")),
                    None => (detail, "was stopped".to_string()),
                };
                self.state
                    .set_agent_status(name, AgentStatus::Stopped, detail, now);
                self.release_and_tell(name, &what);
                self.answer_down(name);
            }
            Some(StopReason::Finished) => {
                self.state
                    .set_agent_status(name, AgentStatus::Exited, detail, now);
                self.answer_down(name);
            }
            None => {
                use crate::policy::AfterExit;
                let decision = crate::policy::after_exit(
                    self.restart_policy(name),
                    exit,
                    self.sup.stopping,
                    run_over,
                    name == LEADER,
                );
                match decision {
                    AfterExit::Restart => self.failure(
                        name,
                        format!("died ({})", detail.clone().unwrap_or_else(|| "gone".into())),
                        false,
                    ),
                    AfterExit::Exited => {
                        self.state
                            .set_agent_status(name, AgentStatus::Exited, detail, now);
                        self.release_and_tell(name, "exited");
                        self.answer_down(name);
                        if name == LEADER && !run_over && !self.sup.stopping {
                            // Nobody is left to finish the run; say so rather than leave `run`
                            // waiting for ever.
                            self.state
                                .fail_run("the leader exited without finishing".into(), now);
                        }
                    }
                    AfterExit::Failed if crate::policy::is_budget_stop(exit) => {
                        self.budget_stopped(name, now)
                    }
                    AfterExit::Failed => {
                        self.state
                            .set_agent_status(name, AgentStatus::Failed, detail.clone(), now);
                        self.release_and_tell(
                            name,
                            &format!(
                                "died ({}) and will not be restarted",
                                detail.unwrap_or_default()
                            ),
                        );
                        self.answer_down(name);
                        if name == LEADER {
                            self.state.fail_run("the leader failed".into(), now);
                        }
                    }
                }
            }
        }
    }

    /// An agent stopped before a model request because its role's or the team's budget is
    /// spent: `failed` with `last_exit = "budget"` (`ps` shows `failed: budget`), not restarted,
    /// and the leader is told how to let it go on.
    fn budget_stopped(&mut self, name: &str, now: Timestamp) {
        let why = self
            .state
            .budget_stop(name, &self.sup.budgets())
            .unwrap_or_else(|| "its budget is spent".into());
        self.state.update_agent(name, |a| {
            a.info.last_exit = Some("budget".into());
            a.info.error = Some(format!("budget: {why}"));
        });
        self.state.set_agent_status(
            name,
            AgentStatus::Failed,
            Some(format!("budget: {why}")),
            now,
        );
        let role = self
            .state
            .agent(name)
            .map(|a| a.info.role.clone())
            .unwrap_or_default();
        let raise = if why.contains("of the team") {
            "agent-team budget set --tokens N".to_string()
        } else {
            format!("agent-team budget set --role {role} --tokens N")
        };
        self.release_and_tell(
            name,
            &format!(
                "stopped before its next model request: {why}. It is not restarted; the operator \
                 can raise the budget (`{raise}`) and `agent-team restart {name}`"
            ),
        );
        self.answer_down(name);
        if name == LEADER {
            self.state
                .fail_run(format!("the leader stopped: {why}"), now);
        }
    }

    fn restart_policy(&self, name: &str) -> RestartPolicy {
        let role = self
            .state
            .agent(name)
            .map(|a| a.info.role.clone())
            .unwrap_or_default();
        self.sup
            .config
            .as_ref()
            .and_then(|c| c.role(&role))
            .map(|r| r.restart)
            .unwrap_or_default()
    }

    /// Counts a failure: back off and restart, or give up after too many quick ones. A first
    /// spawn that could not be launched or never connected back is rolled back instead
    /// (`rollback`); one that started and exited goes through the restart policy, so a
    /// crash-looping agent ends `failed` and stays on the roster for `restart`.
    fn failure(&mut self, name: &str, why: String, rollback: bool) {
        let now = Timestamp::now();
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        if rt.first_spawn && rollback {
            let waiters: Vec<Waiter> = rt.waiters.drain(..).collect();
            self.sup.runtimes.remove(name);
            self.state.remove_agent(name, &why, now);
            for w in waiters {
                self.answer(
                    w.conn,
                    w.id,
                    Err(ErrorBody::with_details(
                        ErrorCode::Internal,
                        format!("{name} {why}; it was removed from the roster"),
                        json!({"agent": name}),
                    )),
                );
            }
            if name == LEADER {
                self.state.fail_run(format!("the leader {why}"), now);
            }
            return;
        }
        let verdict = rt.failures.record(self.sup.clock.now());
        let incarnation = self.current_incarnation(name).unwrap_or(0);
        let backoff = match verdict {
            crate::policy::Verdict::GiveUp { n } => {
                self.state.set_agent_status(
                    name,
                    AgentStatus::Failed,
                    Some(format!("{why}; {n} failures within 60 s")),
                    now,
                );
                self.release_and_tell(
                    name,
                    &format!("{why} {n} times within 60 s and was given up"),
                );
                self.answer_down(name);
                if name == LEADER {
                    self.state.fail_run("the leader kept failing".into(), now);
                }
                return;
            }
            crate::policy::Verdict::Restart { after, .. } => after,
        };
        self.state.update_agent(name, |a| a.info.restarts += 1);
        self.state.set_agent_status(
            name,
            AgentStatus::Backoff,
            Some(format!("{why}; restarting in {} ms", backoff.as_millis())),
            now,
        );
        self.schedule(backoff, SupTimer::Restart(name.to_string(), incarnation));
    }

    /// The backoff of `name` is over.
    pub(crate) fn restart_due(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) || self.sup.stopping {
            return;
        }
        let status = self.state.agent(name).map(|a| a.info.status);
        let idle_rt = self
            .sup
            .runtimes
            .get(name)
            .is_some_and(|r| r.launched.is_none() && !r.busy);
        if matches!(status, Some(AgentStatus::Backoff | AgentStatus::Starting)) && idle_rt {
            self.launch(name);
        }
    }

    /// `kill`: stop it for good; answered when it is down.
    pub(crate) fn kill_request(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        name: &str,
        reason: Option<String>,
    ) -> Result<Option<Reply>, ErrorBody> {
        self.check_managed(actor, name, "stop agents")?;
        let rt = self.sup.runtimes.entry(name.to_string()).or_default();
        rt.close_reason = reason.filter(|r| !r.trim().is_empty());
        rt.waiters.push(Waiter {
            conn,
            id,
            until: Until::Down,
        });
        self.begin_stop(name, StopReason::Operator);
        Ok(None)
    }

    /// `restart`: stop if running, then start a new incarnation in place; answered once connected.
    pub(crate) fn restart_request(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        name: &str,
    ) -> Result<Option<Reply>, ErrorBody> {
        self.check_managed(actor, name, "restart agents")?;
        self.restart_agent(name, Some((conn, id)))?;
        Ok(None)
    }

    pub(super) fn restart_agent(
        &mut self,
        name: &str,
        waiter: Option<(ConnId, u64)>,
    ) -> Result<(), ErrorBody> {
        self.backend()?;
        self.state.update_agent(name, |a| a.info.error = None);
        if self
            .state
            .agent(name)
            .is_some_and(|a| a.info.status.is_down())
        {
            // A shutdown request the stopped incarnation never read is not for the new one.
            let dropped = self.state.drop_stale_shutdowns(name);
            if dropped > 0 {
                tracing::info!(agent = %name, dropped, "dropped stale shutdown requests");
            }
        }
        let rt = self.sup.runtimes.entry(name.to_string()).or_default();
        rt.failures.clear();
        if let Some((conn, id)) = waiter {
            rt.waiters.push(Waiter {
                conn,
                id,
                until: Until::Connected,
            });
        }
        if rt.launched.is_some() || rt.busy {
            self.begin_stop(name, StopReason::Restart);
        } else {
            rt.stop = None;
            self.launch(name);
        }
        Ok(())
    }

    pub(super) fn check_managed(
        &self,
        actor: &Actor,
        name: &str,
        what: &str,
    ) -> Result<(), ErrorBody> {
        if !actor.is_privileged() {
            return Err(ErrorBody::with_details(
                ErrorCode::PermissionDenied,
                format!("only the leader or the operator may {what}"),
                json!({"agent": actor.name()}),
            ));
        }
        match self.state.agent(name) {
            None => Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no agent {name:?}"),
                json!({"agent": name, "valid": self.state.agents().iter().map(|a| a.name.clone()).collect::<Vec<_>>()}),
            )),
            Some(a) if a.info.backend == "external" => Err(err(
                ErrorCode::InvalidState,
                format!("{name} is run by someone else; the daemon cannot stop or start it"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Stops `name` for `reason`; once down, [`Step::after_down`] decides what follows.
    pub(crate) fn begin_stop(&mut self, name: &str, reason: StopReason) {
        tracing::debug!(agent = name, ?reason, "stopping");
        let incarnation = self.current_incarnation(name).unwrap_or(0);
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.stop = Some(reason);
        if rt.busy {
            return; // the launch or stop in flight sees `stop` when it reports back
        }
        match rt.launched.clone() {
            Some(_) => self.stop_process(name, incarnation, KILL_GRACE),
            None => self.after_down(name, Some(reason), None),
        }
    }

    fn stop_process(&mut self, name: &str, incarnation: u64, grace: Duration) {
        let Ok(backend) = self.backend() else { return };
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        let Some(target) = rt.launched.clone() else {
            return;
        };
        rt.busy = true;
        self.run(Job::Stop {
            name: name.to_string(),
            incarnation,
            target,
            grace,
            backend,
        });
    }

    fn cleanup_group(&mut self, name: &str, incarnation: u64, launched: Launched) {
        let Ok(backend) = self.backend() else { return };
        self.run(Job::Cleanup {
            name: name.to_string(),
            incarnation,
            launched,
            backend,
        });
    }

    fn on_stopped(&mut self, name: &str, incarnation: u64, result: Result<(), String>) {
        tracing::debug!(agent = name, incarnation, ?result, "stopped");
        if let Err(e) = &result {
            tracing::error!(agent = name, incarnation, "stop failed: {e}");
            self.state.record(
                "daemon",
                Event::Error {
                    message: format!("stopping {name} failed: {e}"),
                },
                Timestamp::now(),
            );
        }
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.busy = false;
        rt.launched = None;
        let reason = rt.stop;
        self.state.update_agent(name, |a| a.info.connected = false);
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        if reason.is_none() {
            // Stopped because it never connected: a failure for the restart policy.
            self.failure(name, "did not connect back".into(), true);
        } else {
            self.after_down(name, reason, None);
        }
    }

    /// Returns its task to the board and tells the leader, when `name` is down for good.
    fn release_and_tell(&mut self, name: &str, what: &str) {
        if self.sup.stopping {
            return;
        }
        let now = Timestamp::now();
        let released = self.state.release_held(name, now);
        if name == LEADER {
            return;
        }
        let leader_up = self
            .state
            .agent(LEADER)
            .is_some_and(|l| !l.info.status.is_down());
        if !leader_up {
            return;
        }
        let body = match &released {
            Some(t) => format!(
                "{name} {what}; its task {} ({}) went back to pending",
                t.id, t.title
            ),
            None => format!("{name} {what}"),
        };
        let _ = self.state.send(
            &Actor::Daemon,
            LEADER,
            body,
            MessageKind::TaskEvent,
            Some(format!("{name} is down")),
            now,
        );
    }

    fn answer_down(&mut self, name: &str) {
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        let waiters: Vec<Waiter> = rt.waiters.drain(..).collect();
        let Some(agent) = self.state.agent(name).map(|a| a.info.clone()) else {
            return;
        };
        for w in waiters {
            let outcome = match w.until {
                Until::Down => Ok(Reply::Agent {
                    agent: agent.clone(),
                }),
                Until::Connected => Err(ErrorBody::with_details(
                    ErrorCode::InvalidState,
                    format!(
                        "{name} is {} ({})",
                        agent.status,
                        agent.last_exit.clone().unwrap_or_default()
                    ),
                    json!({"agent": name, "status": agent.status}),
                )),
            };
            self.answer(w.conn, w.id, outcome);
        }
    }

    /// After `finish`: ask every teammate to shut down, and stop those that do not: an idle
    /// one after [`SHUTDOWN_GRACE`], one still in a turn (its last report on the way; it reads
    /// the request when the turn ends) after the team's `end_grace`.
    pub(crate) fn finish_team(&mut self) {
        let now = Timestamp::now();
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

    /// The grace after a shutdown request is over: stop it if it is still there.
    pub(crate) fn stop_grace_over(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let reason = self
            .sup
            .runtimes
            .get(name)
            .and_then(|r| r.stop)
            .unwrap_or(StopReason::Shutdown);
        let running = self
            .sup
            .runtimes
            .get(name)
            .is_some_and(|r| r.launched.is_some() && !r.busy);
        if running {
            self.begin_stop(name, reason);
        }
    }

    /// `down` or a signal: ask everyone to exit, then stop whoever remains.
    pub(crate) fn begin_shutdown(&mut self) {
        if self.sup.stopping {
            return;
        }
        self.sup.stopping = true;
        let now = Timestamp::now();
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
        let targets: Vec<(String, u64, Launched)> = self
            .sup
            .runtimes
            .iter()
            .filter(|(_, r)| !r.busy)
            // A connected agent on another host is alive as far as anyone can tell: its
            // death or its link's drops its connection, which looks at once. Looking anyway
            // would be an ssh session each time, for nothing.
            .filter(|(n, r)| {
                r.unreachable.is_some()
                    || r.launched.as_ref().is_none_or(|l| l.host.is_none())
                    || !self.state.agent(n).is_some_and(|a| a.info.connected)
            })
            .filter_map(|(n, r)| r.launched.clone().map(|l| (n.clone(), l)))
            .filter_map(|(n, l)| self.current_incarnation(&n).map(|i| (n, i, l)))
            .collect();
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

/// The overrides-free member `name` of `role` (the leader, a bare spawn).
fn member(name: &str, role: &str) -> SpawnMember {
    SpawnMember {
        name: name.to_string(),
        role: role.to_string(),
        ..Default::default()
    }
}

/// Refuses a spawn by a teammate: the team is one level deep.
/// Where a spawn may place a member: the operator names any host and directory; the leader (a
/// model, or a CLI it drives) only a host the team file names and no directory, so it cannot
/// send the team's secrets to a machine the operator did not choose.
pub(super) fn check_placement(
    actor: &Actor,
    cfg: &TeamConfig,
    host: Option<&str>,
    workspace: Option<&str>,
) -> Result<(), ErrorBody> {
    if let Some(h) = host {
        agent_team_config::check_host(h).map_err(|e| err(ErrorCode::BadRequest, e))?;
    }
    if *actor == Actor::Operator {
        return Ok(());
    }
    if let Some(h) = host
        && !cfg.hosts().contains(h)
    {
        let known: Vec<&str> = cfg.hosts().into_iter().collect();
        return Err(ErrorBody::with_details(
            ErrorCode::PermissionDenied,
            format!(
                "{h:?} is not a host of the team file; the leader may place teammates only on {known:?}"
            ),
            json!({"host": h, "valid": known}),
        ));
    }
    if workspace.is_some() {
        return Err(err(
            ErrorCode::PermissionDenied,
            "only the operator gives a member's directory on its host",
        ));
    }
    Ok(())
}

pub(super) fn check_may_spawn(actor: &Actor) -> Result<(), ErrorBody> {
    if actor.is_privileged() {
        return Ok(());
    }
    Err(ErrorBody::with_details(
        ErrorCode::PermissionDenied,
        "teammates cannot spawn teammates (max_depth 1): only the leader or the operator may \
         spawn; ask the leader with send_message",
        json!({"agent": actor.name(), "max_depth": 1}),
    ))
}
