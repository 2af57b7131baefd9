//! The pane backend of agents on hosts: what each pane operation (launch, look, stop, paste,
//! shutdown) does to the agents there, over their hosts' links.

use crate::link::{Links, checked};
use crate::placement::Place;
use crate::ssh::Ssh;
use crate::worktrees::HostRepo;
use crate::{RemoteError, RemoteSettings, scripts};
use agent_team_pane::{LaunchSpec, Launched, Liveness, PaneBackend, PaneError, shell_quote};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The pane backend of agents on other machines (see the crate's documentation).
pub struct RemoteBackend(Core);

/// The backend's state: the links to its hosts and what it knows of its agents.
struct Core {
    settings: Arc<RemoteSettings>,
    ssh: Arc<dyn Ssh>,
    links: Arc<Links>,
    /// Agents to stop once their host answers again (a stop that found it unreachable).
    pending_stops: Mutex<Vec<Launched>>,
    /// Each launched agent's name, by (host, pid): its tmux session there.
    names: Mutex<HashMap<(String, u32), String>>,
    /// The container runtimes agents were started with, by host: `shutdown` removes every
    /// container of the team there.
    runtimes: Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl RemoteBackend {
    /// A backend reaching hosts with `ssh` for the team described by `settings`.
    pub fn new(settings: RemoteSettings, ssh: Arc<dyn Ssh>) -> Self {
        let settings = Arc::new(settings);
        RemoteBackend(Core {
            links: Arc::new(Links::new(settings.clone(), ssh.clone())),
            settings,
            ssh,
            pending_stops: Mutex::new(Vec::new()),
            names: Mutex::new(HashMap::new()),
            runtimes: Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// Whether `host`'s link is up right now (no ssh call).
    pub fn link_up(&self, host: &str) -> bool {
        self.0.links.is_up(host)
    }

    /// Cuts `host`'s link (its master connection) without touching the agents there, as a
    /// dropped network would: for tests of the reconnection.
    pub fn cut(&self, host: &str) {
        self.0.links.cut(host)
    }

    /// The command of a remote agent's local viewer (see [`crate::Routed`]): its log on the
    /// host followed over the link, copied into the local log when it runs in a pane, and
    /// followed again a second after the link drops; it ends when the agent has ended on the
    /// host (GNU `tail --pid`) or the link is gone for good (its control socket removed).
    /// None before the host's link was made.
    pub(crate) fn viewer_argv(&self, spec: &LaunchSpec, pid: u32) -> Option<Vec<String>> {
        let core = &self.0;
        let host = spec.host.as_deref()?;
        let link = core.links.get(host)?;
        let (control, root, tmux) = {
            let l = link.lock().ok()?;
            (
                l.control.clone(),
                l.info.root.clone(),
                l.info.tmux.clone().filter(|_| core.settings.panes),
            )
        };
        let remote = |command: String| {
            let argv = core.ssh.terminal_argv(host, &control, &command);
            argv.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let line = scripts::viewer(
            &scripts::Viewer {
                name: &spec.name,
                pid,
                root: &root,
                team: &core.settings.team,
                tmux: tmux.as_deref(),
                control: &control,
            },
            &remote,
        );
        Some(vec!["sh".into(), "-c".into(), line])
    }
}

impl PaneBackend for RemoteBackend {
    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let l = self.0.spawn(spec)?;
        self.0.named(&l, &spec.name);
        Ok(l)
    }

    fn spawn_many(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        let out = self.0.spawn_many(specs);
        for (r, s) in out.iter().zip(specs) {
            if let Ok(l) = r {
                self.0.named(l, &s.name);
            }
        }
        out
    }

    fn paste(&self, target: &Launched, text: &str) -> Result<(), PaneError> {
        self.0.paste(target, text)
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        let stopped = self.0.stop(target, grace);
        if stopped.is_ok()
            && let (Some(host), Ok(mut m)) = (target.host.clone(), self.0.names.lock())
        {
            m.remove(&(host, target.pid));
        }
        stopped
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        self.poll(std::slice::from_ref(target))
            .pop()
            .unwrap_or(Liveness::Unknown)
    }

    fn poll(&self, targets: &[Launched]) -> Vec<Liveness> {
        self.0.poll(targets)
    }

    fn shutdown(&self) {
        self.0.shutdown()
    }

    fn collect_work(&self, host: &str, name: &str, message: &str) -> Result<bool, PaneError> {
        self.0.collect_work(host, name, message).map_err(to_pane)
    }
}

/// The port and the rest of a URL on this machine's loopback (`http://127.0.0.1:PORT/…`).
fn loopback_port(url: &str) -> Option<(u16, &str)> {
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((rest[..end].parse().ok()?, &rest[end..]))
}

fn to_pane(e: RemoteError) -> PaneError {
    PaneError::Tool(e.to_string())
}

/// The launched agent a launch script's answer names.
fn launched(host: &str, answer: &str) -> Result<Launched, PaneError> {
    let pid: u32 = answer.trim().parse().map_err(|_| {
        PaneError::Tool(format!(
            "host {host}: the launch answered {:?}, not a process id",
            answer.trim()
        ))
    })?;
    Ok(Launched {
        container: None,
        pid,
        pgid: Some(pid),
        pane: None,
        host: Some(host.to_string()),
    })
}

impl Core {
    /// Remembers that an agent on `host` runs in a container of `program`.
    fn uses_runtime(&self, host: &str, program: &str) {
        if let Ok(mut r) = self.runtimes.lock() {
            r.insert((host.to_string(), program.to_string()));
        }
    }

    /// Runs `script` on `host` through the link of `place`.
    fn run(&self, host: &str, place: &Place, script: &str) -> Result<String, RemoteError> {
        checked(&*self.ssh, host, Some(&place.control), script)
    }

    /// The team's repository on `host` as its link at `place` reaches it.
    fn repo<'a>(&'a self, host: &'a str, place: &'a Place) -> Option<HostRepo<'a>> {
        HostRepo::new(
            &self.settings,
            &*self.ssh,
            host,
            &place.control,
            &place.root,
        )
    }

    /// `spec` with its directory on the host: the one given, else its worktree of the team's
    /// repository there (when the team has one), else (empty) its own default directory.
    fn placed(
        &self,
        spec: &LaunchSpec,
        place: &Place,
        host: &str,
    ) -> Result<LaunchSpec, RemoteError> {
        let mut spec = spec.clone();
        if spec.cwd.as_os_str().is_empty()
            && let Some(repo) = self.repo(host, place)
        {
            spec.cwd = PathBuf::from(repo.ensure(&spec.name)?);
        }
        // An agent CLI's model gateway, on this machine's loopback, is reached on the host's
        // through the link: its address there in place of ours (issue 65).
        for (k, v) in spec.env.iter_mut() {
            if k == agent_team_pane::env::GATEWAY_URL
                && let Some((local, rest)) = loopback_port(v)
            {
                let port = self.links.port_on(host, local)?;
                *v = format!("http://127.0.0.1:{port}{rest}");
            }
        }
        Ok(spec)
    }

    /// The script that starts `spec` on its host and prints the new process group's id.
    fn launch_script(&self, spec: &LaunchSpec, place: &Place, host: &str) -> String {
        if let Some(c) = &spec.container {
            self.uses_runtime(host, &c.program);
        }
        let on = scripts::LaunchOn {
            host,
            root: &place.root,
            worker: &place.worker,
            tmux: place.tmux.as_deref(),
        };
        scripts::launch(&self.settings, spec, &on)
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let host = spec
            .host
            .clone()
            .ok_or_else(|| PaneError::Tool("a remote launch without a host".into()))?;
        let place = self.links.ensure(&host).map_err(to_pane)?;
        let spec = self.placed(spec, &place, &host).map_err(to_pane)?;
        let script = self.launch_script(&spec, &place, &host);
        let out = self.run(&host, &place, &script).map_err(to_pane)?;
        launched(&host, &out)
    }

    /// Starts several agents, one ssh session per host for all of that host's (each in a
    /// subshell of its own, so one that cannot start does not stop the others).
    fn spawn_many(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        let mut out: Vec<Option<Result<Launched, PaneError>>> =
            specs.iter().map(|_| None).collect();
        let mut hosts: Vec<&str> = specs.iter().filter_map(|s| s.host.as_deref()).collect();
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            let idx: Vec<usize> = (0..specs.len())
                .filter(|&i| specs[i].host.as_deref() == Some(host))
                .collect();
            match self.spawn_on(host, specs, &idx) {
                Err(e) => {
                    for &i in &idx {
                        out[i] = Some(Err(to_pane(RemoteError::Host {
                            host: host.to_string(),
                            message: e.to_string(),
                        })));
                    }
                }
                Ok(text) => {
                    let mut lines = text.lines();
                    for &i in &idx {
                        let line = lines.next().unwrap_or("err no answer from the host");
                        out[i] = Some(match line.strip_prefix("ok ") {
                            Some(pid) => launched(host, pid),
                            None => Err(PaneError::Tool(format!(
                                "host {host}: {}",
                                line.strip_prefix("err ").unwrap_or(line)
                            ))),
                        });
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(PaneError::Tool("a remote launch without a host".into())))
            })
            .collect()
    }

    /// Starts `specs[i]` for each of `idx` on `host` in one script; its answer, a line per
    /// launch (see [`scripts::one_of_many`]).
    fn spawn_on(
        &self,
        host: &str,
        specs: &[LaunchSpec],
        idx: &[usize],
    ) -> Result<String, RemoteError> {
        let place = self.links.ensure(host)?;
        let mut script = String::new();
        for &i in idx {
            match self.placed(&specs[i], &place, host) {
                Ok(spec) => script.push_str(&scripts::one_of_many(
                    &self.launch_script(&spec, &place, host),
                )),
                Err(e) => script.push_str(&scripts::failed_launch(&e.to_string())),
            }
        }
        self.run(host, &place, &script)
    }

    /// Remembers a launched agent's name (its tmux session on the host).
    fn named(&self, l: &Launched, name: &str) {
        if let (Some(host), Ok(mut m)) = (l.host.clone(), self.names.lock()) {
            m.insert((host, l.pid), name.to_string());
        }
    }

    /// Types `text` into a remote agent's tmux session on its host as one bracketed paste,
    /// then Enter (an interactive CLI's input), as the tmux backend does here.
    fn paste(&self, target: &Launched, text: &str) -> Result<(), PaneError> {
        let host = target.host.clone().unwrap_or_default();
        let name = self
            .names
            .lock()
            .ok()
            .and_then(|m| m.get(&(host.clone(), target.pid)).cloned())
            .ok_or_else(|| PaneError::Tool("no such remote agent here".into()))?;
        let place = self.links.ensure(&host).map_err(to_pane)?;
        let Some(tm) = &place.tmux else {
            return Err(PaneError::Unsupported(format!(
                "{name} runs headless on {host} (no tmux there, or the team is not in tmux)"
            )));
        };
        let tm = scripts::tmux(tm, &format!("{}/run/{}", place.root, self.settings.team));
        self.run(&host, &place, &scripts::paste(&tm, &name, text))
            .map(|_| ())
            .map_err(to_pane)
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        let host = target.host.clone().unwrap_or_default();
        let place = match self.links.ensure(&host) {
            Ok(p) => p,
            Err(e) => {
                // Stopped as soon as the host answers again (see `poll`).
                if matches!(
                    e,
                    RemoteError::Unreachable { .. } | RemoteError::Timeout { .. }
                ) && let Ok(mut p) = self.pending_stops.lock()
                    && !p.contains(target)
                {
                    p.push(target.clone());
                }
                return Err(to_pane(e));
            }
        };
        let pgid = target.pgid.unwrap_or(target.pid);
        let container = target.container.as_ref();
        if let Some(c) = container {
            self.uses_runtime(&host, &c.program);
        }
        let script = scripts::stop(
            &self.settings.team,
            &place.root,
            pgid,
            grace,
            container.map(|c| (c.program.as_str(), c.name.as_str())),
        );
        let out = self.run(&host, &place, &script).map_err(to_pane)?;
        if out.trim() == "gone" {
            Ok(())
        } else {
            Err(PaneError::Unkillable { pgid })
        }
    }

    fn poll(&self, targets: &[Launched]) -> Vec<Liveness> {
        self.stop_pending();
        let mut found = vec![Liveness::Unknown; targets.len()];
        let mut by_host: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, t) in targets.iter().enumerate() {
            by_host
                .entry(t.host.as_deref().unwrap_or_default())
                .or_default()
                .push(i);
        }
        for (host, idx) in by_host {
            let pids: Vec<u32> = idx.iter().map(|&i| targets[i].pid).collect();
            match self.poll_host(host, &pids) {
                Ok(answers) => {
                    for i in idx {
                        if let Some(l) = answers.get(&targets[i].pid) {
                            found[i] = *l;
                        }
                    }
                }
                Err(RemoteError::Unreachable { .. } | RemoteError::Timeout { .. }) => {
                    for i in idx {
                        found[i] = Liveness::Unreachable;
                    }
                }
                Err(_) => {}
            }
        }
        found
    }

    /// What `host` says of each of `pids`, in one ssh call (none while its link is down: it
    /// is made again meanwhile).
    fn poll_host(&self, host: &str, pids: &[u32]) -> Result<HashMap<u32, Liveness>, RemoteError> {
        let place = self.links.up_or_remake(host)?;
        let dir = format!("{}/run/{}", place.root, self.settings.team);
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let out = self.run(host, &place, &scripts::poll(&dir, &pids))?;
        Ok(scripts::poll_answers(&out))
    }

    /// Stops the agents whose stop found their host unreachable, on hosts whose link is up
    /// again (no ssh call for a host still down).
    fn stop_pending(&self) {
        let pending: Vec<Launched> = self
            .pending_stops
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for t in pending {
            let host = t.host.clone().unwrap_or_default();
            if self.links.is_up(&host) || self.links.up_or_remake(&host).is_ok() {
                match self.stop(&t, Duration::from_secs(2)) {
                    Ok(()) => {
                        tracing::info!(host = %host, pid = t.pid, "stopped an agent left while its host was unreachable")
                    }
                    Err(e) => {
                        tracing::warn!(host = %host, pid = t.pid, "cannot stop an agent left there: {e}")
                    }
                }
            } else if let Ok(mut p) = self.pending_stops.lock() {
                p.push(t);
            }
        }
    }

    /// Brings `name`'s work home from its worktree on `host` (see [`HostRepo::collect`]).
    fn collect_work(&self, host: &str, name: &str, message: &str) -> Result<bool, RemoteError> {
        if self.settings.repo.is_none() {
            return Ok(false);
        }
        let place = self.links.ensure(host)?;
        match self.repo(host, &place) {
            Some(repo) => repo.collect(name, message),
            None => Ok(false),
        }
    }

    fn shutdown(&self) {
        self.links.close();
        for link in self.links.all() {
            let Ok(mut l) = link.lock() else { continue };
            if l.up() {
                // The work in the team's worktrees there comes home first.
                if let Some(repo) = HostRepo::new(
                    &self.settings,
                    &*self.ssh,
                    &l.host,
                    &l.control,
                    &l.info.root,
                ) {
                    for name in repo.names() {
                        if let Err(e) = repo.collect(&name, "Work left at the end of the run") {
                            tracing::warn!(host = %l.host, agent = %name, "cannot bring its work home: {e}");
                        }
                    }
                }
                // Nothing of the team stays on the host but its logs and workspaces: the
                // sockets, the secrets, the run scripts go with the directory.
                let dir = l.dir(&self.settings.team);
                let instance =
                    agent_team_pane::container::instance_of(&self.settings.daemon_socket);
                let boxes: Vec<(String, String)> = self
                    .runtimes
                    .lock()
                    .map(|r| {
                        r.iter()
                            .filter(|(h, _)| *h == l.host)
                            .map(|(_, p)| (p.clone(), instance.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let script = scripts::clean_up(&dir, l.info.tmux.as_deref(), &boxes);
                if let Err(e) = checked(&*self.ssh, &l.host, Some(&l.control), &script) {
                    tracing::warn!(host = %l.host, "cannot clean up the host: {e}");
                }
            }
            self.ssh.exit_master(&l.host, &l.control);
            l.kill_master();
            let _ = std::fs::remove_file(&l.log);
        }
    }
}
