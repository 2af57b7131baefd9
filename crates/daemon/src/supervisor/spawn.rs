//! Starting an agent on a [`Step`]: spawn (with roster rollback), the launch and its spec,
//! staggered starts, the backend's reports, and the connect-back deadline.

use super::*;

impl Step<'_> {
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
                    "the team already has {} teammates (max_teammates = {}); raise it in the \
                     team file or with `agent-team config set max_teammates N`",
                    self.state.teammate_count(),
                    cfg.max_teammates
                ),
                json!({"max_teammates": cfg.max_teammates}),
            ));
        }
        check_placement(actor, &cfg, m.host.as_deref(), m.workspace.as_deref())?;
        if let Some(c) = &m.container {
            agent_team_config::check_container(c).map_err(|e| err(ErrorCode::BadRequest, e))?;
            if *actor != Actor::Operator {
                return Err(err(
                    ErrorCode::PermissionDenied,
                    "only the operator names a member's container image; the leader's spawns \
                     take their role's `container`",
                ));
            }
        }
        m.name = name.clone();
        self.add_agent_record(&m, Some((conn, id)))?;
        self.first_message(actor, &m);
        // Answered once it has connected, also when it starts staggered behind another.
        if !self.stagger(std::slice::from_ref(&name)).is_empty() {
            self.launch(&name);
        }
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
                self.sup.clock.wall(),
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
        let now = self.sup.clock.wall();
        let of_role = self.sup.config.as_ref().and_then(|c| c.role(role));
        let host = m
            .host
            .clone()
            .or_else(|| of_role.and_then(|r| r.host.clone()));
        // A container: the spawn's, else its role's (a teammate entry's comes in the spawn).
        let container = m
            .container
            .clone()
            .or_else(|| of_role.and_then(|r| r.container.clone()));
        if let Some(h) = &host {
            agent_team_config::check_host(h).map_err(|e| err(ErrorCode::BadRequest, e))?;
        } else if m.workspace.is_some() {
            return Err(err(
                ErrorCode::BadRequest,
                "`workspace` is a directory on the member's host: give it a `host` too",
            ));
        }
        // Neither has a process of its own inside the daemon.
        let in_process = self
            .sup
            .config
            .as_ref()
            .is_some_and(|c| c.backend == BackendKind::InProcess);
        for (placed, what) in [
            (host.is_some(), "on another host"),
            (container.is_some(), "in a container"),
        ] {
            if placed && in_process {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!(
                        "a member {what} needs a process backend (tmux or process), not in-process"
                    ),
                ));
            }
        }
        let kind = if host.is_some() {
            "ssh"
        } else {
            backend.kind()
        };
        let incarnation = self.sup.retired.get(name).copied().unwrap_or(0);
        let mut info = AgentInfo::new(name, role, kind, incarnation, now);
        info.host = host.clone();
        info.container = container.map(Box::new);
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
        let now = self.sup.clock.wall();
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
    pub(super) fn team_workspace(&self) -> std::path::PathBuf {
        self.sup
            .config
            .as_ref()
            .map(|c| c.workspace.clone())
            .unwrap_or_default()
    }

    /// Starts the next incarnation of one agent (in the same pane when there is one).
    pub(super) fn launch(&mut self, name: &str) {
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
    /// Members of one role on our own model loop start staggered ([`Step::stagger`]).
    pub(super) fn launch_many(&mut self, names: &[String]) {
        let names = self.stagger(names);
        self.launch_now(&names);
    }

    /// Which of `names` (new members) start now. Members of one role on our own model loop
    /// start staggered: the first now, the others once its first model request has been
    /// answered ([`Step::first_answered`]) or after the team's `spawn_stagger_ms`, so their
    /// first requests read the prefix its request cached. That holds across requests too
    /// (two `spawn_teammate` calls of one turn): a member spawned within `spawn_stagger_ms`
    /// of an earlier member of its role whose first request is not answered yet waits behind
    /// it, until the same moment.
    pub(super) fn stagger(&mut self, names: &[String]) -> Vec<String> {
        let wait = self.sup.config.as_ref().map_or(0, |c| c.spawn_stagger_ms);
        if wait == 0 {
            return names.to_vec();
        }
        let wait = Duration::from_millis(wait);
        let now = self.sup.clock.now();
        let mut starting = Vec::new();
        for name in names {
            let role = self.state.agent(name).and_then(|rec| {
                (self.sup.on_model_loop(rec) && name != LEADER).then(|| rec.info.role.clone())
            });
            let Some(role) = role else {
                starting.push(name.clone());
                continue;
            };
            let ahead = self
                .sup
                .priming
                .get(&role)
                .map(|(first, since)| (first.clone(), crate::clock::deadline(*since, wait)))
                .filter(|(_, until)| now < *until);
            match ahead {
                Some((first, until)) => {
                    let held = self.sup.staggered.entry(first.clone()).or_default();
                    held.push(name.clone());
                    if held.len() == 1 {
                        // Its longest wait ends `spawn_stagger_ms` after the first started.
                        self.schedule(until - now, SupTimer::Stagger(first));
                    }
                }
                None => {
                    self.sup.priming.insert(role, (name.clone(), now));
                    starting.push(name.clone());
                }
            }
        }
        starting
    }

    /// `name`'s first model request was answered (it reported its usage), or it went down
    /// before: the members held behind it start now.
    pub(crate) fn first_answered(&mut self, name: &str) {
        self.sup.priming.retain(|_, (first, _)| first != name);
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

    /// What launches an agent's incarnation: its program, environment, directory, log and
    /// pane title.
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
        let host = rec.info.host.clone();
        let mut envs = self.agent_env(rec, incarnation, cfg, role, provider);
        // An agent CLI here reaches its model through the team's gateway, with a token of its
        // own instead of the key (issue 65).
        let mut env_remove: Vec<String> = vec!["TMUX".into(), "TMUX_PANE".into()];
        // On another host too: the remote backend forwards the gateway there (issue 65).
        let mut gated = false;
        if let Some(gw) = self.sup.gateways.as_deref()
            && let Some(vars) = crate::gateway::register(gw, &rec.info.name, role, provider)
        {
            envs.extend(vars);
            // Neither its worker nor anything under it holds a model key: the gateway adds it.
            // The team's search key stays (its worker serves the CLI the web search tool).
            let search = cfg.search.as_ref().and_then(|s| s.api_key_env.clone());
            env_remove.extend(
                cfg.credential_vars()
                    .into_iter()
                    .filter(|v| Some(v) != search.as_ref()),
            );
            gated = true;
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
        // A CLI whose model calls go through the gateway gets no model key there either.
        let secret_env = match host {
            Some(_) => cfg
                .agent_credential_vars(role, provider)
                .into_iter()
                .filter(|var| !(gated && env_remove.contains(var)))
                .filter_map(|var| std::env::var(&var).ok().map(|v| (var, v)))
                .collect(),
            None => Vec::new(),
        };
        // In a container: the worker (behind the egress forwarder) runs inside, and only what
        // it needs is bound in (issue 66).
        let (argv, container) = match &rec.info.container {
            Some(c) => {
                let (argv, run) = self.container_run(rec, c, cfg, role, argv, &cwd)?;
                envs.retain(|(k, _)| k != env::LOG_FILE);
                // Where an agent CLI's worker finds the CLI's home (bound in at the same path;
                // nothing else of the state dir is there).
                if provider.is_external() && rec.info.host.is_none() {
                    envs.push((
                        env::CLI_HOME.into(),
                        self.sup
                            .paths
                            .cli_home(&rec.info.name)
                            .display()
                            .to_string(),
                    ));
                }
                // Its caps, so a command they stop says so.
                if let Some(m) = &c.memory {
                    envs.push((env::MEMORY_LIMIT.into(), m.clone()));
                }
                if let Some(p) = c.pids {
                    envs.push((env::PIDS_LIMIT.into(), p.to_string()));
                }
                (argv, Some(run))
            }
            None => (argv, None),
        };
        Ok(LaunchSpec {
            container,
            name: rec.info.name.clone(),
            role: rec.info.role.clone(),
            argv,
            env: envs,
            env_remove,
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

    /// How `rec`'s container is made (`c` from its spawn or role), and the command line run in
    /// it: the worker behind the egress forwarder when the team's network is confined.
    fn container_run(
        &self,
        rec: &AgentRecord,
        c: &agent_team_protocol::ContainerSpec,
        cfg: &agent_team_config::TeamConfig,
        role: &agent_team_config::Role,
        argv: Vec<String>,
        cwd: &std::path::Path,
    ) -> Result<(Vec<String>, agent_team_pane::container::ContainerRun), String> {
        use agent_team_pane::container::{AGENT_DIR_INSIDE, Bind, ContainerRun};
        let socket = &self.sup.paths.socket;
        let instance = agent_team_pane::container::instance_of(socket);
        // The image and the caps; no network, nothing bound in, the image's user.
        let base = ContainerRun {
            program: c.program().to_string(),
            image: c.image.clone(),
            name: agent_team_pane::container::container_name(&instance, &rec.info.name),
            instance,
            memory: c.memory.clone(),
            cpus: c.cpus.clone(),
            pids: c.pids,
            runtime_class: c.runtime_class.clone(),
            binds: Vec::new(),
            agent_dir: PathBuf::new(),
            daemon_socket: socket.clone(),
            no_network: true,
            user: None,
        };
        // On another host the remote backend makes the container there from the image and
        // the caps: the binds and the network are the host's (no egress proxy there: none).
        if rec.info.host.is_some() {
            return Ok((argv, base));
        }
        let runtime = socket.parent().ok_or("the daemon's socket has no dir")?;
        let agent_dir = agent_team_paths::net_dir(runtime, &self.sup.team, &rec.info.name);
        let rw = |path: PathBuf| Bind {
            path,
            ..Bind::default()
        };
        let ro = |path: PathBuf| Bind {
            path,
            read_only: true,
            ..Bind::default()
        };
        let mut binds = vec![rw(cfg.workspace.clone())];
        if cwd != cfg.workspace {
            binds.push(rw(cwd.to_path_buf()));
        }
        let worker = argv.first().map(PathBuf::from).ok_or("no worker program")?;
        let bridge = worker.with_file_name("agent-team-bridge");
        for exe in [&worker, &bridge] {
            if exe.is_file() {
                binds.push(ro(exe.clone()));
            }
        }
        // What the team file's and the role's `[sandbox]` let its members read and write
        // (a CLI's own install, a cache) is all of the rest of this machine they see.
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let extra = cfg
            .sandbox_paths
            .clone()
            .and(role.sandbox.resolved(&cfg.workspace, home.as_deref()));
        binds.extend(extra.read.into_iter().filter(|p| p.exists()).map(ro));
        binds.extend(extra.write.into_iter().filter(|p| p.exists()).map(rw));
        // An agent CLI's private home (its configuration, its MCP and hook sockets).
        if self
            .sup
            .provider_of(rec)
            .unwrap_or(role.provider)
            .is_external()
        {
            binds.push(Bind {
                create: true,
                ..rw(self.sup.paths.cli_home(&rec.info.name))
            });
        }
        let uid = agent_team_paths::current_uid();
        let user = (uid != 0).then(|| (uid, nix::unistd::getegid().as_raw()));
        let confined = crate::net::policy(cfg, Some(role)).is_some();
        let argv = if confined {
            if !bridge.is_file() {
                return Err(format!(
                    "no egress forwarder at {}: a container's only network is the team's proxy",
                    bridge.display()
                ));
            }
            let mut v = vec![
                bridge.display().to_string(),
                "net".into(),
                "--socket".into(),
                format!(
                    "{AGENT_DIR_INSIDE}/{}",
                    agent_team_sandbox::network::PROXY_SOCKET
                ),
                "--listen".into(),
                agent_team_sandbox::network::PROXY_PORT.to_string(),
            ];
            // A model endpoint on this machine's loopback is tunnelled to as it is.
            if let Some((host, port)) = role
                .base_url
                .as_deref()
                .and_then(agent_team_config::endpoint)
                && agent_team_config::is_loopback(&host)
                && port != agent_team_sandbox::network::PROXY_PORT
            {
                v.extend(["--forward".into(), port.to_string()]);
            }
            v.push("--".into());
            v.extend(argv);
            v
        } else {
            argv
        };
        Ok((
            argv,
            ContainerRun {
                binds,
                agent_dir,
                no_network: confined,
                user,
                ..base
            },
        ))
    }

    /// The agent's environment: how it reaches the daemon as itself, how it heals it, its
    /// role's variables and its own provider, model and instructions.
    fn agent_env(
        &self,
        rec: &AgentRecord,
        incarnation: u64,
        cfg: &agent_team_config::TeamConfig,
        role: &agent_team_config::Role,
        provider: agent_team_config::Provider,
    ) -> Vec<(String, String)> {
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
        // What the worker needs to bring this daemon back after a crash (not for an agent
        // inside the daemon: it dies with it, nor on another host: it has no daemon there and
        // waits for the link to come back).
        if cfg.backend != BackendKind::InProcess
            && rec.info.host.is_none()
            && rec.info.container.is_none()
        {
            envs.extend(self.sup.env.heal_env.iter().cloned());
        }
        for (k, v) in &role.env {
            envs.push((k.clone(), v.clone()));
        }
        if provider.is_external() {
            envs.push((env::EXTERNAL.to_string(), provider.as_str().to_string()));
        }
        // The member's own model (`member.NAME.model` set at run time wins), provider and
        // instructions (team file or spawn).
        if let Some(model) = self.sup.own_model(rec) {
            envs.push((env::MODEL.to_string(), model.to_string()));
        }
        for (key, var) in [
            ("provider", env::PROVIDER),
            ("instructions", env::INSTRUCTIONS),
        ] {
            if let Some(v) = rec.spec.get(key).and_then(|v| v.as_str()) {
                envs.push((var.to_string(), v.to_string()));
            }
        }
        envs
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
                } else if !self.sup.poll_named.is_empty() {
                    // Agents that said they ended while this poll ran: one look at them all.
                    self.poll_named();
                }
            }
        }
    }

    pub(super) fn current_incarnation(&self, name: &str) -> Option<u64> {
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
        // An agent inside the daemon dies with it: its pid (the daemon's) tells a later `down`
        // nothing to stop, so recording it need not wait for an fsync.
        let inside = launched.pid == std::process::id() && launched.host.is_none();
        let record = |a: &mut agent_team_state::AgentRecord| {
            a.info.pid = Some(launched.pid);
            a.info.pgid = launched.pgid;
            a.info.pane = launched.pane.clone();
            if let Some(spec) = a.spec.as_object_mut() {
                match pid_start {
                    Some(t) => spec.insert(PID_START.into(), serde_json::json!(t)),
                    None => spec.remove(PID_START),
                };
            }
        };
        if inside {
            self.state.update_agent_activity(name, record);
        } else {
            self.state.update_agent(name, record);
        }
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
                self.sup.clock.wall(),
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
}

/// The overrides-free member `name` of `role` (the leader, a bare spawn).
pub(super) fn member(name: &str, role: &str) -> SpawnMember {
    SpawnMember {
        name: name.to_string(),
        role: role.to_string(),
        ..Default::default()
    }
}

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

/// Refuses a spawn by a teammate: the team is one level deep.
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
