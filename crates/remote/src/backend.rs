//! The links to hosts and the pane backend of remote agents.

use crate::ssh::Ssh;
use crate::{ENV_HOST, HostInfo, RemoteError, RemoteSettings, dir_word};
use agent_team_pane::{
    ExitInfo, ExitNotify, LaunchSpec, Launched, Liveness, PaneBackend, PaneError, env, shell_quote,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long one ssh call may take (a link that hangs is cut by its keepalives well before).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new master connection has to come up.
const MASTER_TIMEOUT: Duration = Duration::from_secs(20);
/// The first wait before trying a dropped link again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between tries to bring a link back.
const RETRY_MAX: Duration = Duration::from_secs(10);

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
fn probe_via(
    ssh: &dyn Ssh,
    settings: &RemoteSettings,
    host: &str,
    via: Option<&Path>,
) -> Result<HostInfo, RemoteError> {
    let team = shell_quote(&settings.team);
    let worker = settings
        .worker
        .as_deref()
        .map(shell_quote)
        .unwrap_or_default();
    let script = format!(
        "set -e\numask 077\nR={dir}\nmkdir -p \"$R/run/\"{team} \"$R/home\" \"$R/bin\" \"$R/work\"\n\
         chmod 700 \"$R/run\" \"$R/run/\"{team}\nR=$(cd \"$R\" && pwd -P)\necho \"root=$R\"\n\
         echo \"uname=$(uname -sm)\"\nW={worker}\n\
         if [ -n \"$W\" ]; then if [ -x \"$W\" ]; then echo \"worker=$W\"; fi\n\
         else echo \"worker=$(command -v agent-team-worker || true)\"; fi\n\
         echo \"tmux=$(command -v tmux || true)\"\n",
        dir = dir_word(settings.dir.as_deref()),
    );
    let out = ssh.script(host, via, &script, CALL_TIMEOUT)?;
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

/// The last non-empty line of ssh's diagnostics (the reason, without the banner).
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("ssh failed without a message")
        .trim()
        .to_string()
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

/// One host's link.
struct Link {
    host: String,
    /// The master's control socket (local).
    control: PathBuf,
    /// The master's diagnostics (local).
    log: PathBuf,
    /// The probe's answer of the last link made.
    info: HostInfo,
    /// The worker on the host.
    worker: String,
    /// The master connection, while it runs.
    master: Option<Child>,
    /// Links made so far (each forwards to a socket path of its own on the host).
    generation: u64,
    /// Not before this may a dropped link be tried again.
    next_try: Option<Instant>,
    /// A thread is making it again.
    remaking: bool,
    /// The wait after the next failed try.
    backoff: Duration,
}

impl Link {
    fn up(&mut self) -> bool {
        match self.master.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                if let Some(mut c) = self.master.take() {
                    let _ = c.wait();
                }
                false
            }
            None => false,
        }
    }

    /// The team's directory on the host.
    fn dir(&self, team: &str) -> String {
        format!("{}/run/{team}", self.info.root)
    }

    fn place(&self, panes: bool) -> Place {
        Place {
            control: self.control.clone(),
            root: self.info.root.clone(),
            worker: self.worker.clone(),
            tmux: self.info.tmux.clone().filter(|_| panes),
        }
    }
}

/// What a remote launch needs of its host's link.
#[derive(Debug, Clone)]
struct Place {
    control: PathBuf,
    root: String,
    worker: String,
    /// tmux on the host, when agents run in a private tmux server there (the team's panes are
    /// tmux here and the host has it).
    tmux: Option<String>,
}

/// The pane backend of agents on other machines (see the crate's documentation).
pub struct RemoteBackend(Arc<Core>);

/// The backend's state, shared with the threads that make dropped links again.
struct Core {
    settings: RemoteSettings,
    ssh: Arc<dyn Ssh>,
    links: Mutex<HashMap<String, Arc<Mutex<Link>>>>,
    key: OnceLock<Option<String>>,
    mine: OnceLock<String>,
    /// Agents to stop once their host answers again (a stop that found it unreachable).
    pending_stops: Mutex<Vec<Launched>>,
    /// Each launched agent's name, by (host, pid): its tmux session there.
    names: Mutex<HashMap<(String, u32), String>>,
    /// Set by [`PaneBackend::shutdown`]: no link is made again after it (a remake already
    /// under way then finishes first, and the shutdown cleans its host).
    closed: std::sync::atomic::AtomicBool,
}

impl RemoteBackend {
    /// A backend reaching hosts with `ssh` for the team described by `settings`.
    pub fn new(settings: RemoteSettings, ssh: Arc<dyn Ssh>) -> Self {
        RemoteBackend(Arc::new(Core {
            settings,
            ssh,
            links: Mutex::new(HashMap::new()),
            key: OnceLock::new(),
            mine: OnceLock::new(),
            pending_stops: Mutex::new(Vec::new()),
            names: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Whether `host`'s link is up right now (no ssh call).
    pub fn link_up(&self, host: &str) -> bool {
        self.0.link_up(host)
    }

    /// Cuts `host`'s link (its master connection) without touching the agents there, as a
    /// dropped network would: for tests of the reconnection.
    pub fn cut(&self, host: &str) {
        self.0.cut(host)
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
        Core::poll(&self.0, targets)
    }

    fn shutdown(&self) {
        self.0.shutdown()
    }

    fn collect_work(&self, host: &str, name: &str, message: &str) -> Result<bool, PaneError> {
        self.0
            .collect_work(host, name, message)
            .map_err(Core::to_pane)
    }
}

impl Core {
    fn key(&self) -> Option<&str> {
        self.key
            .get_or_init(|| {
                let w = self.settings.local_worker.as_ref()?;
                crate::worker_key(w).ok()
            })
            .as_deref()
    }

    fn link(&self, host: &str) -> Result<Arc<Mutex<Link>>, RemoteError> {
        let mut links = self
            .links
            .lock()
            .map_err(|_| RemoteError::Io("the links' lock is poisoned".into()))?;
        if let Some(l) = links.get(host) {
            return Ok(l.clone());
        }
        let tag = short_hash(host);
        let l = Arc::new(Mutex::new(Link {
            host: host.to_string(),
            control: self.settings.control_dir.join(format!("{tag}.ctl")),
            log: self.settings.control_dir.join(format!("{tag}.log")),
            info: HostInfo::default(),
            worker: String::new(),
            master: None,
            generation: 0,
            next_try: None,
            remaking: false,
            backoff: RETRY_FIRST,
        }));
        links.insert(host.to_string(), l.clone());
        Ok(l)
    }

    /// The link to `host`, made now if it is down (a launch or a stop waits for it).
    fn ensure(&self, host: &str) -> Result<Place, RemoteError> {
        let link = self.link(host)?;
        let mut l = link
            .lock()
            .map_err(|_| RemoteError::Io("a link's lock is poisoned".into()))?;
        if !l.up() {
            self.remake(&mut l)?;
        }
        Ok(l.place(self.settings.panes))
    }

    /// Makes a dropped link again, its failures spaced out by the link's backoff; never once
    /// the team's backend was shut down (the host would keep what the link puts there).
    fn remake(&self, l: &mut Link) -> Result<(), RemoteError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RemoteError::Unreachable {
                host: l.host.clone(),
                message: "the team is stopping".into(),
            });
        }
        match self.establish(l) {
            Ok(()) => {
                l.next_try = None;
                l.backoff = RETRY_FIRST;
                Ok(())
            }
            Err(e) => {
                l.next_try = Some(Instant::now() + l.backoff);
                l.backoff = (l.backoff * 2).min(RETRY_MAX);
                Err(e)
            }
        }
    }

    /// The link to `host` if it is up; else it is made again on a thread of its own (once its
    /// backoff is over) and this look says unreachable, so a host that does not answer never
    /// holds up the look at the other agents.
    fn up_or_remake(self: &Arc<Self>, host: &str) -> Result<Place, RemoteError> {
        let down = |message: &str| RemoteError::Unreachable {
            host: host.to_string(),
            message: message.to_string(),
        };
        let link = self.link(host)?;
        let Ok(mut l) = link.try_lock() else {
            return Err(down("the link is being made again"));
        };
        if l.up() {
            return Ok(l.place(self.settings.panes));
        }
        if l.remaking || l.next_try.is_some_and(|t| Instant::now() < t) {
            return Err(down("the link is down; trying again shortly"));
        }
        l.remaking = true;
        drop(l);
        let (core, link) = (self.clone(), link.clone());
        std::thread::spawn(move || {
            if let Ok(mut l) = link.lock() {
                if !l.up()
                    && let Err(e) = core.remake(&mut l)
                {
                    tracing::warn!(host = %l.host, "the link is still down: {e}");
                }
                l.remaking = false;
            }
        });
        Err(down("the link is down; making it again"))
    }

    /// Makes the link: the master connection, then over it what [`Core::prepare_link`] does.
    fn establish(&self, l: &mut Link) -> Result<(), RemoteError> {
        let host = l.host.clone();
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.settings.control_dir)
                .map_err(|e| {
                    RemoteError::Io(format!(
                        "cannot create {}: {e}",
                        self.settings.control_dir.display()
                    ))
                })?;
        }
        if let Some(mut c) = l.master.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A master left by an earlier daemon of this team holds the control path.
        self.ssh.exit_master(&host, &l.control);
        // The one ssh handshake: everything after goes through this connection.
        let mut child = self.ssh.master(&host, &l.control, &l.log)?;
        let deadline = Instant::now() + MASTER_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let said = std::fs::read_to_string(&l.log).unwrap_or_default();
                return Err(RemoteError::Unreachable {
                    host,
                    message: format!("the link ended at once ({status}): {}", last_line(&said)),
                });
            }
            if self.ssh.check(&host, &l.control) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RemoteError::Timeout {
                    what: format!("the link to {host}"),
                    after: MASTER_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        l.master = Some(child);
        let made = self.prepare_link(l);
        if made.is_err()
            && let Some(mut c) = l.master.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        made?;
        tracing::info!(host = %host, generation = l.generation, "link up");
        Ok(())
    }

    /// Over a new master: the probe, the worker (copied if need be), the forward to a fresh
    /// socket path, then one script pointing `daemon.sock` at it with the team's secrets.
    fn prepare_link(&self, l: &mut Link) -> Result<(), RemoteError> {
        let host = l.host.clone();
        let info = probe_via(&*self.ssh, &self.settings, &host, Some(&l.control))?;
        let mine = self.mine.get_or_init(crate::local_uname).clone();
        let choice = choose_worker(&self.settings, &host, &info, &mine)?;
        l.info = info;
        l.worker = match choice {
            WorkerChoice::Use(p) => p,
            WorkerChoice::Copy => {
                // Keyed by version and hash: computed once per daemon, only when needed.
                let key = self
                    .key()
                    .ok_or_else(|| RemoteError::Io("cannot read this build's worker".into()))?;
                let p = format!("{}/bin/{key}/agent-team-worker", l.info.root);
                // An agent CLI's worker serves it through the bridge beside the worker.
                let bridge = self
                    .settings
                    .local_worker
                    .as_ref()
                    .map(|w| w.with_file_name("agent-team-bridge"))
                    .filter(|b| b.exists());
                let mut wanted = vec![(self.settings.local_worker.clone(), p.clone())];
                if let Some(b) = bridge {
                    let there = format!("{}/bin/{key}/agent-team-bridge", l.info.root);
                    wanted.push((Some(b), there));
                }
                for (local, path) in wanted {
                    let there = self.ssh.script(
                        &host,
                        Some(&l.control),
                        &format!("test -x {}", shell_quote(&path)),
                        CALL_TIMEOUT,
                    )?;
                    if there.code != Some(0) {
                        self.copy_worker(&host, &l.control, local.as_deref(), &path)?;
                    }
                }
                p
            }
        };
        l.generation += 1;
        let dir = l.dir(&self.settings.team);
        let sock = format!("{dir}/link-{}-{}.sock", std::process::id(), l.generation);
        self.ssh
            .forward(&host, &l.control, &sock, &self.settings.daemon_socket)?;
        // The forward's socket appears once sshd has bound it; then the stable name points at
        // it, older generations' sockets go, and the team's secrets (on standard input, or
        // none) land beside it.
        let sock_name = sock.rsplit('/').next().unwrap_or_default();
        let secrets = shell_quote(&format!("{dir}/{}.secrets.json", self.settings.team));
        let mut command = format!(
            "set -e; umask 077; D={d}; cd \"$D\"; n=0; while [ ! -S {s} ]; do n=$((n+1)); \
             if [ $n -gt 400 ]; then echo 'the forwarded socket did not appear' >&2; exit 3; fi; \
             sleep 0.025; done; ln -sfn {s} .daemon.sock.new; mv -f .daemon.sock.new daemon.sock; \
             for f in link-*.sock; do [ \"$f\" = {s} ] || rm -f \"$f\"; done; ",
            d = shell_quote(&dir),
            s = shell_quote(sock_name),
        );
        let out = match self.settings.secrets_file.as_ref().filter(|f| f.exists()) {
            Some(file) => {
                command.push_str(&format!(
                    "cat > {secrets}.part; mv -f {secrets}.part {secrets}"
                ));
                self.ssh
                    .upload(&host, &l.control, &command, file, CALL_TIMEOUT)?
            }
            None => {
                command.push_str(&format!("rm -f {secrets}"));
                self.ssh
                    .script(&host, Some(&l.control), &command, CALL_TIMEOUT)?
            }
        };
        if out.code != Some(0) {
            return Err(RemoteError::Host {
                host,
                message: format!("cannot make the link's socket: {}", last_line(&out.stderr)),
            });
        }
        Ok(())
    }

    /// Copies this build's worker (or the bridge beside it), `local`, to `path` on the host
    /// (through a temporary name, so a half-written binary is never run).
    fn copy_worker(
        &self,
        host: &str,
        control: &Path,
        local: Option<&Path>,
        path: &str,
    ) -> Result<(), RemoteError> {
        let Some(local) = local else {
            return Err(RemoteError::Io("no local worker to copy".into()));
        };
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
        let tmp = format!("{path}.part");
        let command = format!(
            "set -e; umask 077; mkdir -p {d}; cat > {t}; chmod 700 {t}; mv -f {t} {p}",
            d = shell_quote(dir),
            t = shell_quote(&tmp),
            p = shell_quote(path),
        );
        let out = self
            .ssh
            .upload(host, control, &command, local, Duration::from_secs(600))?;
        if out.code != Some(0) {
            return Err(RemoteError::Host {
                host: host.to_string(),
                message: format!("cannot copy the worker: {}", last_line(&out.stderr)),
            });
        }
        tracing::info!(host, path, "worker copied");
        Ok(())
    }

    /// Runs `script`, its failure an error naming the host.
    fn checked(&self, host: &str, via: Option<&Path>, script: &str) -> Result<String, RemoteError> {
        let out = self.ssh.script(host, via, script, CALL_TIMEOUT)?;
        match out.code {
            Some(0) => Ok(out.stdout),
            Some(255) => Err(RemoteError::Unreachable {
                host: host.to_string(),
                message: last_line(&out.stderr),
            }),
            _ => Err(RemoteError::Host {
                host: host.to_string(),
                message: last_line(&out.stderr),
            }),
        }
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
            && let Some(wt) = self.ensure_worktree(host, place, &spec.name)?
        {
            spec.cwd = PathBuf::from(wt);
        }
        Ok(spec)
    }

    /// The script that starts `spec` on its host and prints the new process group's id.
    fn launch_script(&self, spec: &LaunchSpec, place: &Place, host: &str) -> String {
        let team = &self.settings.team;
        let dir = format!("{}/run/{team}", place.root);
        let home = format!("{}/home", place.root);
        let log = format!("{home}/teams/{team}/logs/{}.log", spec.name);
        let given = spec.cwd.as_os_str().to_string_lossy().into_owned();
        let default_ws = given.is_empty();
        let cwd = if default_ws {
            format!("{}/work/{team}/{}", place.root, spec.name)
        } else {
            given
        };
        let secret_file = format!("{dir}/.{}.secret", spec.name);
        let secret = spec
            .env
            .iter()
            .find(|(k, _)| k == env::SECRET)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut words = vec!["env".to_string()];
        for k in &spec.env_remove {
            words.push("-u".into());
            words.push(shell_quote(k));
        }
        let replaced = [
            env::SECRET,
            env::SOCKET,
            env::LOG_FILE,
            env::WORKSPACE,
            "AGENT_TEAM_HOME",
            "AGENT_TEAM_RUNTIME_DIR",
            ENV_HOST,
        ];
        for (k, v) in &spec.env {
            if !replaced.contains(&k.as_str()) {
                words.push(shell_quote(&format!("{k}={v}")));
            }
        }
        for (k, v) in [
            (env::SECRET_FILE, secret_file.as_str()),
            (env::SOCKET, &format!("{dir}/daemon.sock")),
            (env::LOG_FILE, &log),
            (env::WORKSPACE, &cwd),
            ("AGENT_TEAM_HOME", &home),
            ("AGENT_TEAM_RUNTIME_DIR", &format!("{}/run", place.root)),
            (ENV_HOST, host),
        ] {
            words.push(shell_quote(&format!("{k}={v}")));
        }
        for (i, a) in spec.argv.iter().enumerate() {
            let local_worker = self
                .settings
                .local_worker
                .as_ref()
                .is_some_and(|w| w.as_os_str() == a.as_str());
            if i == 0 && local_worker {
                words.push(shell_quote(&place.worker));
            } else {
                words.push(shell_quote(a));
            }
        }
        let d = shell_quote(&dir);
        let pid = shell_quote(&format!("{dir}/{}.pid", spec.name));
        let run = shell_quote(&format!("{dir}/{}.run", spec.name));
        let eof = format!("AGENT_TEAM_{}", random_hex());
        let mut s = String::new();
        s.push_str("set -e\numask 077\n");
        s.push_str(&format!(
            "mkdir -p {d} {logs}\n",
            logs = shell_quote(&format!("{home}/teams/{team}/logs"))
        ));
        if default_ws {
            s.push_str(&format!("mkdir -p {}\n", shell_quote(&cwd)));
        }
        s.push_str(&format!(
            "if ! [ -d {c} ]; then echo \"no directory {c} there (the member's workspace)\" >&2; exit 3; fi\n",
            c = shell_quote(&cwd)
        ));
        s.push_str(&format!(
            "rm -f {f}\ncat > {f} <<'{eof}'\n{secret}\n{eof}\n",
            f = shell_quote(&secret_file)
        ));
        // Credentials it would inherit here (its model's API key): a 0600 file the run script
        // reads into the agent's environment and removes, never a command line.
        let env_file = shell_quote(&format!("{dir}/.{}.env", spec.name));
        let exports: String = spec
            .secret_env
            .iter()
            .filter(|(k, _)| is_env_name(k))
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
            .collect();
        s.push_str(&format!("rm -f {env_file}\n"));
        if !exports.is_empty() {
            s.push_str(&format!("cat > {env_file} <<'{eof}'\n{exports}{eof}\n"));
        }
        // In a tmux pane on the host its terminal is the pane (it writes its log itself);
        // headless, its output goes to the log.
        let io = match &place.tmux {
            Some(_) => String::new(),
            None => format!(" </dev/null >>{} 2>&1", shell_quote(&log)),
        };
        s.push_str(&format!(
            "cat > {run} <<'{eof}'\necho $$ > {pid}.part && mv -f {pid}.part {pid}\n\
             if [ -f {env_file} ]; then . {env_file}; rm -f {env_file}; fi\ncd {c} || exit 1\n\
             {line}{io}\necho $? > {d}/$$.status\n{eof}\n",
            c = shell_quote(&cwd),
            line = words.join(" "),
        ));
        let start = match &place.tmux {
            // Its own session of the team's private server there: it outlives a dropped link
            // and the pane here attaches to it. tmux gives a pane's process its own group.
            Some(tm) => {
                let tm = format!(
                    "{} -S {}",
                    shell_quote(tm),
                    shell_quote(&format!("{dir}/tmux.sock"))
                );
                let session = shell_quote(&format!("={}", spec.name));
                format!(
                    "{tm} kill-session -t {session} 2>/dev/null || true\n\
                     {tm} new-session -d -s {name} -x 200 -y 50 \"sh {run}\" </dev/null >/dev/null 2>&1\n",
                    name = shell_quote(&spec.name),
                )
            }
            None => format!("setsid sh {run} </dev/null >/dev/null 2>&1 &\n"),
        };
        s.push_str(&format!(
            "rm -f {pid}\n{start}n=0\n\
             while [ ! -s {pid} ]; do n=$((n+1)); if [ $n -gt 400 ]; then echo 'the agent did not start' >&2; exit 4; fi; sleep 0.025; done\n\
             cat {pid}\n"
        ));
        s
    }

    fn stop_script(&self, root: &str, pgid: u32, grace: Duration) -> String {
        let d = shell_quote(&format!("{root}/run/{}", self.settings.team));
        let ticks = (grace.as_millis() / 50).max(1);
        format!(
            "p={pgid}\nkill -s TERM -- -$p 2>/dev/null || true\n\
             n=0; while kill -s 0 -- -$p 2>/dev/null && [ $n -lt {ticks} ]; do sleep 0.05; n=$((n+1)); done\n\
             kill -s KILL -- -$p 2>/dev/null || true\n\
             n=0; while kill -s 0 -- -$p 2>/dev/null && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done\n\
             rm -f {d}/$p.status\nif kill -s 0 -- -$p 2>/dev/null; then echo alive; else echo gone; fi\n"
        )
    }

    fn to_pane(e: RemoteError) -> PaneError {
        PaneError::Tool(e.to_string())
    }

    /// The hosts with a link made (up or down), for the shutdown.
    fn hosts(&self) -> Vec<Arc<Mutex<Link>>> {
        self.links
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `host`'s link is up right now (no ssh call).
    pub fn link_up(&self, host: &str) -> bool {
        let link = self.links.lock().ok().and_then(|l| l.get(host).cloned());
        link.is_some_and(|l| l.lock().is_ok_and(|mut l| l.up()))
    }

    /// Cuts `host`'s link (its master connection) without touching the agents there, as a
    /// dropped network would: for tests of the reconnection.
    pub fn cut(&self, host: &str) {
        let link = self.links.lock().ok().and_then(|l| l.get(host).cloned());
        if let Some(link) = link
            && let Ok(mut l) = link.lock()
            && let Some(mut c) = l.master.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Core {
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
            let answers = match self.ensure(host) {
                Err(e) => Err(e),
                Ok(place) => {
                    let mut script = String::new();
                    for &i in &idx {
                        let spec = match self.placed(&specs[i], &place, host) {
                            Ok(s) => s,
                            Err(e) => {
                                script.push_str(&format!(
                                    "echo {}\n",
                                    shell_quote(&format!("err {e}"))
                                ));
                                continue;
                            }
                        };
                        script.push_str(&format!(
                            "if out=$( ( {} ) 2>&1 ); then echo \"ok $(printf '%s\\n' \"$out\" | tail -n 1)\"; \
                             else echo \"err $(printf '%s\\n' \"$out\" | tail -n 1)\"; fi\n",
                            self.launch_script(&spec, &place, host)
                        ));
                    }
                    self.checked(host, Some(&place.control), &script)
                }
            };
            match answers {
                Err(e) => {
                    for &i in &idx {
                        out[i] = Some(Err(Self::to_pane(RemoteError::Host {
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
                            Some(pid) => Self::launched(host, pid),
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

    /// The command of a remote agent's local viewer: its log on the host followed over the
    /// link, copied into the local log when it runs in a pane, and followed again a second
    /// after the link drops; it ends when the agent has ended on the host (GNU `tail --pid`)
    /// or the link is gone for good (its control socket removed). None before the host's link
    /// was made.
    fn viewer_argv(&self, spec: &LaunchSpec, pid: u32) -> Option<Vec<String>> {
        let host = spec.host.as_deref()?;
        let link = self.links.lock().ok()?.get(host).cloned()?;
        let (control, root, tmux) = {
            let l = link.lock().ok()?;
            (
                l.control.clone(),
                l.info.root.clone(),
                l.info.tmux.clone().filter(|_| self.settings.panes),
            )
        };
        let log = format!(
            "{root}/home/teams/{}/logs/{}.log",
            self.settings.team, spec.name
        );
        let remote = |command: String| {
            let argv = self.ssh.terminal_argv(host, &control, &command);
            argv.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        };
        // In tmux there, the pane here is that session, attached; else the log followed (no
        // carriage returns from the host's terminal: the copy is a plain log).
        let follow = |n: &str| match &tmux {
            Some(tm) => remote(format!(
                // UTF-8 whatever the host's locale says (`-u`): the local terminal is.
                "exec {} -u -S {} attach -t {}",
                shell_quote(tm),
                shell_quote(&format!("{root}/run/{}/tmux.sock", self.settings.team)),
                shell_quote(&format!("={}", spec.name)),
            )),
            None => remote(format!(
                "stty -onlcr 2>/dev/null; exec tail -n {n} -F --pid={pid} {}",
                shell_quote(&log)
            )),
        };
        // Copied into the local log only as a log: an attached session is a terminal.
        let show = if tmux.is_some() {
            "view $n".to_string()
        } else {
            "if [ -t 1 ]; then view $n | tee -a \"$AGENT_TEAM_LOG_FILE\"; else view $n; fi"
                .to_string()
        };
        let line = format!(
            "view() {{ if [ \"$1\" = first ]; then {first}; else {again}; fi; }}\n\
             n=first\n\
             while :; do\n\
               {show}\n\
               n=again\n\
               sleep 1\n\
               {alive} >/dev/null 2>&1; [ $? = 1 ] && break\n\
               [ -S {ctl} ] || break\n\
             done\n",
            first = follow("+1"),
            again = follow("0"),
            alive = remote(format!("kill -0 {pid}")),
            ctl = shell_quote(&control.display().to_string()),
        );
        Some(vec!["sh".into(), "-c".into(), line])
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
        let place = self.ensure(&host).map_err(Self::to_pane)?;
        let Some(tm) = &place.tmux else {
            return Err(PaneError::Unsupported(format!(
                "{name} runs headless on {host} (no tmux there, or the team is not in tmux)"
            )));
        };
        let tm = format!(
            "{} -S {}",
            shell_quote(tm),
            shell_quote(&format!(
                "{}/run/{}/tmux.sock",
                place.root, self.settings.team
            ))
        );
        // Its session's (only) pane.
        let session = shell_quote(&format!("={name}:"));
        let eof = format!("AGENT_TEAM_{}", random_hex());
        let script = format!(
            "set -e\n{tm} load-buffer -b agent-team - <<'{eof}'\n{text}\n{eof}\n\
             {tm} paste-buffer -p -d -b agent-team -t {session}\nsleep 0.3\n\
             {tm} send-keys -t {session} Enter\n"
        );
        self.checked(&host, Some(&place.control), &script)
            .map(|_| ())
            .map_err(Self::to_pane)
    }

    /// The ssh command git uses to reach a host through its link (`GIT_SSH_COMMAND`).
    fn git_ssh(&self, control: &Path) -> String {
        let mut v: Vec<String> = self.settings.ssh.clone();
        if v.is_empty() {
            v.push("ssh".into());
        }
        v.extend(
            ["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-S"]
                .iter()
                .map(|s| s.to_string()),
        );
        v.push(control.display().to_string());
        v.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The team's repository on `host` as a git URL.
    fn repo_url(&self, host: &str, root: &str) -> String {
        let path = format!("{root}/repos/{}.git", self.settings.team);
        match host.strip_prefix("ssh://") {
            Some(h) => format!("ssh://{h}{path}"),
            None => format!("ssh://{host}{path}"),
        }
    }

    /// git in the team's repository, reaching hosts through their links.
    fn local_git(&self, repo: &Path, control: &Path, args: &[&str]) -> Result<(), RemoteError> {
        let out = agent_team_worktree::git(repo)
            .env("GIT_SSH_COMMAND", self.git_ssh(control))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| RemoteError::Io(format!("cannot run git: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RemoteError::Io(format!(
                "git {}: {}",
                args.first().copied().unwrap_or_default(),
                last_line(&String::from_utf8_lossy(&out.stderr))
            )))
        }
    }

    /// `name`'s worktree on `host` (the team's repository pushed there at its current commit,
    /// then a worktree on `agent-team/NAME`, kept across restarts); none when the team's
    /// workspace is no git repository.
    fn ensure_worktree(
        &self,
        host: &str,
        place: &Place,
        name: &str,
    ) -> Result<Option<String>, RemoteError> {
        let Some(repo) = &self.settings.repo else {
            return Ok(None);
        };
        let team = &self.settings.team;
        let bare = format!("{}/repos/{team}.git", place.root);
        let wt = format!("{}/work/{team}/{name}", place.root);
        let branch = agent_team_worktree::branch(name);
        let (b, w, br) = (shell_quote(&bare), shell_quote(&wt), shell_quote(&branch));
        self.checked(
            host,
            Some(&place.control),
            &format!("set -e; umask 077; [ -d {b} ] || git init -q --bare {b}"),
        )?;
        let url = self.repo_url(host, &place.root);
        self.local_git(
            repo,
            &place.control,
            &["push", "-q", "--force", &url, "HEAD:refs/agent-team/base"],
        )?;
        agent_team_worktree::record_base(repo, name)
            .map_err(|e| RemoteError::Io(format!("cannot record {name}'s base: {e}")))?;
        let g = agent_team_worktree::shell_git();
        let script = format!(
            "set -e\n[ -e {w}/.git ] && exit 0\nmkdir -p \"$(dirname {w})\"\n\
             if {g} -C {b} rev-parse -q --verify refs/heads/{br} >/dev/null; then \
             {g} -C {b} worktree add -q {w} {br}; \
             else {g} -C {b} worktree add -q -b {br} {w} refs/agent-team/base; fi\n"
        );
        self.checked(host, Some(&place.control), &script)?;
        Ok(Some(wt))
    }

    /// Brings `name`'s work home from its worktree on `host`: what it holds uncommitted is
    /// committed there as `NAME@TEAM` with `message`, then its branch is fetched into the
    /// team's repository, where `diff` and `finish` see it as a local worktree's. False when
    /// it has no worktree there.
    fn collect_work(&self, host: &str, name: &str, message: &str) -> Result<bool, RemoteError> {
        if self.settings.repo.is_none() {
            return Ok(false);
        }
        let place = self.ensure(host)?;
        self.collect_work_via(host, &place.control, &place.root, name, message)
    }

    /// [`Core::collect_work`] over the link on `control` to a host whose directory is `root`.
    fn collect_work_via(
        &self,
        host: &str,
        control: &Path,
        root: &str,
        name: &str,
        message: &str,
    ) -> Result<bool, RemoteError> {
        let Some(repo) = &self.settings.repo else {
            return Ok(false);
        };
        let team = &self.settings.team;
        let wt = format!("{root}/work/{team}/{name}");
        let who = format!("{name}@{team}");
        let eof = format!("AGENT_TEAM_{}", random_hex());
        let g = agent_team_worktree::shell_git();
        let script = format!(
            "set -e\nW={w}\n[ -e \"$W/.git\" ] || exit 0\n{g} -C \"$W\" add -A\n\
             if ! {g} -C \"$W\" diff --cached --quiet; then \
             GIT_AUTHOR_NAME={who} GIT_AUTHOR_EMAIL={who} GIT_COMMITTER_NAME={who} GIT_COMMITTER_EMAIL={who} \
             {g} -C \"$W\" commit -q --no-verify -F - <<'{eof}'\n{message}\n{eof}\nfi\necho yes\n",
            w = shell_quote(&wt),
            who = shell_quote(&who),
        );
        let there = self.checked(host, Some(control), &script)?;
        if there.trim() != "yes" {
            return Ok(false);
        }
        let branch = agent_team_worktree::branch(name);
        let url = self.repo_url(host, root);
        self.local_git(
            repo,
            control,
            &[
                "fetch",
                "-q",
                "--force",
                &url,
                &format!("+refs/heads/{branch}:refs/heads/{branch}"),
            ],
        )?;
        Ok(true)
    }

    /// The names of the team's worktrees on the host of `control`.
    fn worktrees(&self, host: &str, control: &Path, root: &str) -> Vec<String> {
        let dir = shell_quote(&format!("{root}/work/{}", self.settings.team));
        self.checked(
            host,
            Some(control),
            &format!("for d in {dir}/*; do [ -e \"$d/.git\" ] && basename \"$d\"; done; true"),
        )
        .map(|o| o.lines().map(str::to_string).collect())
        .unwrap_or_default()
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
            pid,
            pgid: Some(pid),
            pane: None,
            host: Some(host.to_string()),
        })
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let host = spec
            .host
            .clone()
            .ok_or_else(|| PaneError::Tool("a remote launch without a host".into()))?;
        let place = self.ensure(&host).map_err(Self::to_pane)?;
        let spec = self.placed(spec, &place, &host).map_err(Self::to_pane)?;
        let script = self.launch_script(&spec, &place, &host);
        let out = self
            .checked(&host, Some(&place.control), &script)
            .map_err(Self::to_pane)?;
        Self::launched(&host, &out)
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        let host = target.host.clone().unwrap_or_default();
        let place = match self.ensure(&host) {
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
                return Err(Self::to_pane(e));
            }
        };
        let pgid = target.pgid.unwrap_or(target.pid);
        let script = self.stop_script(&place.root, pgid, grace);
        let out = self
            .checked(&host, Some(&place.control), &script)
            .map_err(Self::to_pane)?;
        if out.trim() == "gone" {
            Ok(())
        } else {
            Err(PaneError::Unkillable { pgid })
        }
    }

    fn poll(self: &Arc<Self>, targets: &[Launched]) -> Vec<Liveness> {
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
            let place = match self.up_or_remake(host) {
                Ok(p) => p,
                Err(RemoteError::Unreachable { .. }) => {
                    for i in idx {
                        found[i] = Liveness::Unreachable;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            let d = shell_quote(&format!("{}/run/{}", place.root, self.settings.team));
            let pids: Vec<String> = idx.iter().map(|&i| targets[i].pid.to_string()).collect();
            let script = format!(
                "for p in {}; do if kill -s 0 \"$p\" 2>/dev/null; then echo \"$p alive\"; \
                 elif [ -f {d}/\"$p\".status ]; then echo \"$p exit $(cat {d}/\"$p\".status)\"; \
                 else echo \"$p gone\"; fi; done\n",
                pids.join(" ")
            );
            let out = match self.checked(host, Some(&place.control), &script) {
                Ok(out) => out,
                Err(RemoteError::Unreachable { .. } | RemoteError::Timeout { .. }) => {
                    for i in idx {
                        found[i] = Liveness::Unreachable;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            let mut answers: HashMap<u32, Liveness> = HashMap::new();
            for line in out.lines() {
                let mut w = line.split_whitespace();
                let (Some(pid), Some(what)) = (w.next(), w.next()) else {
                    continue;
                };
                let Ok(pid) = pid.parse::<u32>() else {
                    continue;
                };
                let live = match what {
                    "alive" => Liveness::Alive,
                    "exit" => Liveness::Exited(exit_info(w.next())),
                    _ => Liveness::Exited(ExitInfo::default()),
                };
                answers.insert(pid, live);
            }
            for i in idx {
                if let Some(l) = answers.get(&targets[i].pid) {
                    found[i] = *l;
                }
            }
        }
        found
    }

    /// Stops the agents whose stop found their host unreachable, on hosts whose link is up
    /// again (no ssh call for a host still down).
    fn stop_pending(self: &Arc<Self>) {
        let pending: Vec<Launched> = self
            .pending_stops
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for t in pending {
            let host = t.host.clone().unwrap_or_default();
            if self.link_up(&host) || self.up_or_remake(&host).is_ok() {
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

    fn shutdown(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.hosts() {
            let Ok(mut l) = link.lock() else { continue };
            if l.up() {
                // The work in the team's worktrees there comes home first.
                if self.settings.repo.is_some() {
                    let (host, control, root) =
                        (l.host.clone(), l.control.clone(), l.info.root.clone());
                    for name in self.worktrees(&host, &control, &root) {
                        if let Err(e) = self.collect_work_via(
                            &host,
                            &control,
                            &root,
                            &name,
                            "Work left at the end of the run",
                        ) {
                            tracing::warn!(host = %host, agent = %name, "cannot bring its work home: {e}");
                        }
                    }
                }
                // Nothing of the team stays on the host but its logs and workspaces: the
                // sockets, the secrets, the run scripts go with the directory.
                let dir = l.dir(&self.settings.team);
                let tmux = match &l.info.tmux {
                    Some(tm) => format!(
                        "{} -S {} kill-server 2>/dev/null; ",
                        shell_quote(tm),
                        shell_quote(&format!("{dir}/tmux.sock"))
                    ),
                    None => String::new(),
                };
                if let Err(e) = self.checked(
                    &l.host,
                    Some(&l.control),
                    &format!("{tmux}rm -rf {}", shell_quote(&dir)),
                ) {
                    tracing::warn!(host = %l.host, "cannot clean up the host: {e}");
                }
            }
            self.ssh.exit_master(&l.host, &l.control);
            if let Some(mut c) = l.master.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_file(&l.log);
        }
    }
}

/// How a remote agent ended, from the exit status its run script recorded (over 128: the
/// signal that killed it, as a shell reports it).
fn exit_info(status: Option<&str>) -> ExitInfo {
    match status.and_then(|s| s.parse::<i32>().ok()) {
        Some(c) if c > 128 && c < 160 => ExitInfo {
            code: None,
            signal: Some(c - 128),
        },
        Some(c) => ExitInfo {
            code: Some(c),
            signal: None,
        },
        None => ExitInfo::default(),
    }
}

/// A short, stable tag for a host (its control socket's name: a host can be long).
fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Random hex for a here-document's delimiter (so no value can end it early).
fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

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
            self.remote.0.viewer_argv(spec, launched.pid),
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

/// Whether `name` can be exported by a POSIX shell.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
