//! The ssh link to each host: a control master carrying the forward of the daemon's socket,
//! made again with a backoff when it drops; every command run on the host goes through it.

use crate::placement::{self, LocalWorker, Place, WorkerChoice};
use crate::ssh::Ssh;
use crate::{HostInfo, RemoteError, RemoteSettings, scripts};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one ssh call may take (a link that hangs is cut by its keepalives well before).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new master connection has to come up.
const MASTER_TIMEOUT: Duration = Duration::from_secs(20);
/// The first wait before trying a dropped link again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between tries to bring a link back.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Runs `script` on `host` (through the master on `via` when given), its failure an error
/// naming the host; what it printed.
pub(crate) fn checked(
    ssh: &dyn Ssh,
    host: &str,
    via: Option<&Path>,
    script: &str,
) -> Result<String, RemoteError> {
    let out = ssh.script(host, via, script, CALL_TIMEOUT)?;
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

/// The last non-empty line of ssh's diagnostics (the reason, without the banner).
pub(crate) fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("ssh failed without a message")
        .trim()
        .to_string()
}

/// One host's link.
pub(crate) struct Link {
    /// The ssh destination.
    pub host: String,
    /// The master's control socket (local).
    pub control: PathBuf,
    /// The master's diagnostics (local).
    pub log: PathBuf,
    /// The probe's answer of the last link made.
    pub info: HostInfo,
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
    /// This master's TCP forwards: the host's port of each local one (the model gateway's).
    ports: std::collections::HashMap<u16, u16>,
}

impl Link {
    /// A link to `host` not made yet, its control socket and log in `control_dir`.
    fn new(host: &str, control_dir: &Path) -> Self {
        let tag = short_hash(host);
        Link {
            host: host.to_string(),
            control: control_dir.join(format!("{tag}.ctl")),
            log: control_dir.join(format!("{tag}.log")),
            info: HostInfo::default(),
            worker: String::new(),
            master: None,
            generation: 0,
            next_try: None,
            remaking: false,
            backoff: RETRY_FIRST,
            ports: std::collections::HashMap::new(),
        }
    }

    /// Whether its master connection runs (reaped when it ended).
    pub fn up(&mut self) -> bool {
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
    pub fn dir(&self, team: &str) -> String {
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

    /// Ends its master connection, if one runs (the agents on the host stay).
    pub fn kill_master(&mut self) {
        if let Some(mut c) = self.master.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The team's links, one per host, and what making one needs.
pub(crate) struct Links {
    settings: Arc<RemoteSettings>,
    ssh: Arc<dyn Ssh>,
    /// This build's worker, for hosts without one.
    worker: LocalWorker,
    map: Mutex<HashMap<String, Arc<Mutex<Link>>>>,
    /// Set by [`Links::close`]: no link is made again after it (a remake already under way
    /// then finishes first, and the shutdown cleans its host).
    closed: AtomicBool,
}

impl Links {
    /// No link yet, for the team of `settings`, reaching hosts with `ssh`.
    pub fn new(settings: Arc<RemoteSettings>, ssh: Arc<dyn Ssh>) -> Self {
        Links {
            worker: LocalWorker::new(settings.local_worker.clone()),
            settings,
            ssh,
            map: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// `host`'s link, made (down) on first use.
    fn link(&self, host: &str) -> Result<Arc<Mutex<Link>>, RemoteError> {
        let mut links = self
            .map
            .lock()
            .map_err(|_| RemoteError::Io("the links' lock is poisoned".into()))?;
        if let Some(l) = links.get(host) {
            return Ok(l.clone());
        }
        let l = Arc::new(Mutex::new(Link::new(host, &self.settings.control_dir)));
        links.insert(host.to_string(), l.clone());
        Ok(l)
    }

    /// `host`'s link if one was made (up or down).
    pub fn get(&self, host: &str) -> Option<Arc<Mutex<Link>>> {
        self.map.lock().ok().and_then(|l| l.get(host).cloned())
    }

    /// The hosts with a link made (up or down), for the shutdown.
    pub fn all(&self) -> Vec<Arc<Mutex<Link>>> {
        self.map
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The port on `host`'s loopback that reaches `local_port` on ours through its link (made
    /// on first use, made again with each new master).
    pub fn port_on(&self, host: &str, local_port: u16) -> Result<u16, RemoteError> {
        let link = self.link(host)?;
        let mut l = link
            .lock()
            .map_err(|_| RemoteError::Io("a link's lock is poisoned".into()))?;
        if let Some(p) = l.ports.get(&local_port) {
            return Ok(*p);
        }
        let p = self.ssh.forward_port(host, &l.control, 0, local_port)?;
        l.ports.insert(local_port, p);
        Ok(p)
    }

    /// No link is made again from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether `host`'s link is up right now (no ssh call).
    pub fn is_up(&self, host: &str) -> bool {
        self.get(host)
            .is_some_and(|l| l.lock().is_ok_and(|mut l| l.up()))
    }

    /// Cuts `host`'s link (its master connection) without touching the agents there.
    pub fn cut(&self, host: &str) {
        if let Some(link) = self.get(host)
            && let Ok(mut l) = link.lock()
        {
            l.kill_master();
        }
    }

    /// The link to `host`, made now if it is down (a launch or a stop waits for it).
    pub fn ensure(&self, host: &str) -> Result<Place, RemoteError> {
        let link = self.link(host)?;
        let mut l = link
            .lock()
            .map_err(|_| RemoteError::Io("a link's lock is poisoned".into()))?;
        if !l.up() {
            self.remake(&mut l)?;
        }
        Ok(l.place(self.settings.panes))
    }

    /// The link to `host` if it is up; else it is made again on a thread of its own (once its
    /// backoff is over) and this look says unreachable, so a host that does not answer never
    /// holds up the look at the other agents.
    pub fn up_or_remake(self: &Arc<Self>, host: &str) -> Result<Place, RemoteError> {
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
        let (links, link) = (self.clone(), link.clone());
        std::thread::spawn(move || {
            if let Ok(mut l) = link.lock() {
                if !l.up()
                    && let Err(e) = links.remake(&mut l)
                {
                    tracing::warn!(host = %l.host, "the link is still down: {e}");
                }
                l.remaking = false;
            }
        });
        Err(down("the link is down; making it again"))
    }

    /// Makes a dropped link again, its failures spaced out by the link's backoff; never once
    /// the team's backend was shut down (the host would keep what the link puts there).
    fn remake(&self, l: &mut Link) -> Result<(), RemoteError> {
        if self.closed.load(Ordering::SeqCst) {
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

    /// Makes the link: the master connection, then over it what [`Links::prepare`] does.
    fn establish(&self, l: &mut Link) -> Result<(), RemoteError> {
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
        l.kill_master();
        l.master = Some(self.start_master(l)?);
        let made = self.prepare(l);
        if made.is_err() {
            l.kill_master();
        }
        made?;
        // The gateway's forwards again, on the same ports of the host: the agents there were
        // given those.
        for (local, remote) in l.ports.clone() {
            if let Err(e) = self.ssh.forward_port(&l.host, &l.control, remote, local) {
                tracing::warn!(host = %l.host, port = remote, "the model gateway's forward was not made again: {e}");
                l.ports.remove(&local);
            }
        }
        tracing::info!(host = %l.host, generation = l.generation, "link up");
        Ok(())
    }

    /// Starts the link's master connection and waits until it answers.
    fn start_master(&self, l: &Link) -> Result<Child, RemoteError> {
        let host = l.host.clone();
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
                return Ok(child);
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
    }

    /// Over a new master: the probe, the worker (copied if need be), the forward to a fresh
    /// socket path, then one script pointing `daemon.sock` at it with the team's secrets.
    fn prepare(&self, l: &mut Link) -> Result<(), RemoteError> {
        let host = l.host.clone();
        let info = placement::probe_via(&*self.ssh, &self.settings, &host, Some(&l.control))?;
        let mine = self.worker.uname();
        let choice = placement::choose_worker(&self.settings, &host, &info, &mine)?;
        l.info = info;
        l.worker = match choice {
            WorkerChoice::Use(p) => p,
            WorkerChoice::Copy => {
                self.worker
                    .install(&*self.ssh, &host, &l.control, &l.info.root)?
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
        let secrets = format!("{dir}/{}.secrets.json", self.settings.team);
        let file = self.settings.secrets_file.as_ref().filter(|f| f.exists());
        let command = scripts::link_socket(&dir, sock_name, &secrets, file.is_some());
        let out = match file {
            Some(file) => self
                .ssh
                .upload(&host, &l.control, &command, file, CALL_TIMEOUT)?,
            None => self
                .ssh
                .script(&host, Some(&l.control), &command, CALL_TIMEOUT)?,
        };
        if out.code != Some(0) {
            return Err(RemoteError::Host {
                host,
                message: format!("cannot make the link's socket: {}", last_line(&out.stderr)),
            });
        }
        Ok(())
    }
}

/// A short, stable tag for a host (its control socket's name: a host can be long).
fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
