//! The agent-team supervisor daemon: one per team, the only writer of the team's state.
//!
//! [`run`] takes the team's lock, restores the state from SQLite, listens on the team's Unix
//! socket (0600, in a 0700 runtime dir), and serves until SIGTERM, SIGINT or a `shutdown`
//! request. Connections are read on their own tasks; every request is applied by the single
//! [`core`] task, which commits each batch before it answers.

mod batch;
mod blocking;
mod chat;
pub mod clock;
pub mod confine;
pub mod conn;
pub mod core;
pub mod gate;
pub mod gateway;
mod handlers;
pub mod hookrun;
pub mod hooks;
pub mod join;
pub mod lock;
pub mod net;
mod notify;
pub mod otel;
pub mod outbox;
pub mod policy;
pub mod supervisor;
mod vanish;
mod work;

pub use supervisor::{PID_START, SupervisorEnv, remote_backend};

use agent_team_paths::{Paths, TeamPaths};
use agent_team_state::TeamState;
use agent_team_store::{Store, StoreError};
use core::{Core, CoreConfig, CoreMsg};
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use lock::DaemonLock;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The team name or a directory was unusable.
    #[error(transparent)]
    Paths(#[from] agent_team_paths::PathError),
    /// Another daemon holds the team, or the lock file is unusable.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] agent_team_store::StoreError),
    /// The disk holding the team's state is full, so the daemon cannot start (exit code
    /// [`EXIT_STORAGE_FULL`]).
    #[error(
        "cannot start: the disk holding {} is full ({free} bytes free); free some space and start again ({cause})",
        dir.display()
    )]
    StorageFull {
        /// The team's state directory.
        dir: std::path::PathBuf,
        /// Bytes free there.
        free: u64,
        /// What failed.
        cause: String,
    },
    /// A healer tried to bring back a team that was stopped on purpose (`down`).
    #[error("team {0} was stopped on purpose (`agent-team down`); not bringing it back")]
    StoppedOnPurpose(String),
    /// A healer tried to bring back a team whose state dir or database was deleted.
    #[error("the files of team {0} were deleted; not bringing it back")]
    Gone(String),
    /// The socket or a file could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// The daemon's exit code when it cannot start because the state's disk is full (EX_TEMPFAIL:
/// starting again once there is room works).
pub const EXIT_STORAGE_FULL: u8 = 75;

impl DaemonError {
    /// The exit code the daemon's process ends with for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::StorageFull { .. } => EXIT_STORAGE_FULL,
            DaemonError::StoppedOnPurpose(_) | DaemonError::Gone(_) => 0,
            _ => 1,
        }
    }
}

/// How to run one team's daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// State and runtime roots.
    pub paths: Paths,
    /// The team.
    pub team: String,
    /// How long a permission request waits for a decision before it is denied.
    pub perm_timeout: Duration,
    /// The bound on an agent's unread messages.
    pub inbox_limit: usize,
    /// Unread frames that pace a subscriber's catch-up.
    pub max_queued_frames: usize,
    /// Connection limits until the team file gives its own.
    pub limits: agent_team_config::Limits,
    /// How agents are launched.
    pub env: SupervisorEnv,
    /// Started by a healer (a worker, a relay or the guardian bringing a crashed daemon back):
    /// refuse to start when the team was stopped on purpose, checked under the lock.
    pub heal: bool,
    /// With `heal`: the files the healer knew the team by; the daemon serves those only, and
    /// refuses to start (under the lock) when the paths name others by then.
    pub heal_files: Option<agent_team_client::heal::TeamFiles>,
    /// The `agent-team` executable to run this daemon's guardian with (`daemon --guard`), which
    /// brings the daemon back should it crash; `None`: no guardian (tests, benches).
    pub guard_exe: Option<std::path::PathBuf>,
    /// The small program that stands for the guardian while the daemon runs
    /// (`agent-team-bridge guard EXE daemon --guard …`: it waits on the pipe and becomes the
    /// whole `agent-team` only once the daemon has ended); `None`: the guardian is the whole
    /// `agent-team` from the start.
    pub guard_waiter: Option<std::path::PathBuf>,
    /// The reading end of the pipe whose writing end this daemon's starter holds while it
    /// follows the team and brings a crashed daemon back itself (`run`,
    /// `agent_team_paths::ENV_STARTER_GUARD_FD`): the guardian is started only at its end of
    /// file, and not at all when the team was stopped on purpose by then. `None`: at once.
    pub starter_guards: Option<std::sync::Arc<std::fs::File>>,
    /// The process ends once [`run`] returns (the `agent-team daemon` command): what only
    /// memory holds is left to the process's end, not freed piece by piece (a thousand agents'
    /// state: ~30 ms of `down`). `false` (tests, benches that run daemons in their own process):
    /// everything is freed.
    pub ends_process: bool,
}

/// Set in the guardian's environment: the pid of the daemon it guards (a guardian that became
/// `agent-team` after its waiter saw the daemon end may already have another parent).
pub const ENV_GUARDED_PID: &str = "AGENT_TEAM_GUARDED_PID";

impl DaemonOptions {
    /// Defaults from the spec for `team` under `paths`.
    pub fn new(paths: Paths, team: &str) -> Self {
        DaemonOptions {
            paths,
            team: team.to_string(),
            perm_timeout: Duration::from_secs(300),
            inbox_limit: agent_team_protocol::DEFAULT_INBOX_LIMIT,
            max_queued_frames: outbox::MAX_QUEUED_FRAMES,
            limits: agent_team_config::Limits::default(),
            env: SupervisorEnv::default(),
            heal: false,
            heal_files: None,
            guard_exe: None,
            guard_waiter: None,
            starter_guards: None,
            ends_process: false,
        }
    }
}

/// Runs the daemon on the current thread until it is told to stop.
pub fn run(opts: DaemonOptions) -> Result<(), DaemonError> {
    run_notifying(opts, || {})
}

/// [`run`], calling `listening` once the socket accepts connections (the starter that waits on
/// the daemon's start pipe is told then, not by polling).
pub fn run_notifying(opts: DaemonOptions, listening: impl FnOnce()) -> Result<(), DaemonError> {
    // The lock first; the store's files are then written and synced on a thread of their own
    // while the runtime starts and the credential is written.
    let locked = lock_and_open(&opts).map_err(|e| on_full_disk(&opts, e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Io {
            what: "cannot start the async runtime".into(),
            source,
        })?;
    gate::raise_fd_limit();
    // Let go of last, once the runtime has ended (below): whoever waits for the lock (`run`)
    // then knows nothing of the daemon is left running but the process's own exit.
    let mut lock_held = None;
    // The daemon's own blocking work, waited for at the end when the process ends next.
    let mut exiting = None;
    let served = rt.block_on(async {
        let mut prepared = prepare_locked(&opts, locked).map_err(|e| on_full_disk(&opts, e))?;
        lock_held = prepared.lock.take();
        exiting = opts.ends_process.then(|| prepared.core.blocking.clone());
        let stopped = prepared.paths.stopped.clone();
        // Held until this process ends: the guardian wakes when it closes, crash or not.
        let guardian: GuardianSlot<Guardian> = Default::default();
        let dismiss: GuardianSlot<std::fs::File> = Default::default();
        prepared.core.dismiss_guardian_through(dismiss.clone());
        if let Some(exe) = opts.guard_exe.clone() {
            let (waiter, tp) = (opts.guard_waiter.clone(), prepared.paths.clone());
            let (slot, stopped) = (guardian.clone(), stopped.clone());
            let files = prepared.files;
            let start = move || match spawn_guardian(&exe, waiter.as_deref(), &tp, files) {
                Ok(g) => {
                    if let Ok(pipe) = g.pipe.try_clone() {
                        *lock(&dismiss) = Some(pipe);
                    }
                    *lock(&slot) = Some(g);
                }
                Err(e) => tracing::warn!("cannot start the daemon's guardian: {e}"),
            };
            match opts.starter_guards.clone() {
                // The starter brings this daemon back itself while it lives: a guardian only
                // once it is gone, and none after a stop on purpose.
                Some(pipe) => {
                    std::thread::spawn(move || {
                        wait_for_end_of_file(&pipe);
                        if !stopped.exists() {
                            tracing::info!("the starter that guarded this daemon is gone");
                            start();
                        }
                    });
                }
                None => start(),
            }
        }
        listening();
        let served = serve(prepared, shutdown_signal()).await;
        // Stopped on purpose: the guardian has nothing to bring back, so it is dismissed and
        // waited for, and whoever waits for this process (`down`) finds nothing of the team
        // left. Otherwise it wakes as the pipe closes with this process.
        let g = lock(&guardian).take();
        if let Some(g) = g
            && stopped.exists()
        {
            g.dismiss(GUARDIAN_DISMISS_WAIT);
        }
        served
    });
    end_then_let_go(rt, lock_held, exiting.as_ref());
    served
}

/// Ends the daemon's runtime, which waits for its blocking work (a supervisor job, a git
/// commit of a task's work, the core's drop with the store's close) to finish, and only then
/// lets go of the lock: whoever waits for the lock (`run`, `down`) knows that nothing the
/// daemon started still runs. With `exiting` (the process ends next:
/// [`DaemonOptions::ends_process`]) it waits for that work ([`blocking::Blocking`]) and leaves
/// the runtime and the tasks still in it (kept-alive model connections, the links of agents
/// that ended) to the process's end, which takes their memory and closes their sockets whole
/// instead of one by one (a thousand agents: ~60 ms of `down`, most of it freeing memory).
fn end_then_let_go(
    rt: tokio::runtime::Runtime,
    lock: Option<DaemonLock>,
    exiting: Option<&blocking::Blocking>,
) {
    match exiting {
        Some(work) => {
            work.wait_idle();
            std::mem::forget(rt);
        }
        None => drop(rt),
    }
    drop(lock);
}

/// Where a guardian started later than the daemon (by another thread) is kept for whoever
/// needs it: the daemon's end, the core's stop on purpose.
pub(crate) type GuardianSlot<T> = std::sync::Arc<std::sync::Mutex<Option<T>>>;

/// The slot's lock (a thread that panicked holding it left a value that is still whole).
pub(crate) fn lock<T>(slot: &GuardianSlot<T>) -> std::sync::MutexGuard<'_, Option<T>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocks until `pipe` reaches end of file (its writer is gone) or cannot be read.
fn wait_for_end_of_file(mut pipe: &std::fs::File) {
    use std::io::Read as _;
    let mut buf = [0u8; 64];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// How many frames an in-process agent may leave unread before the core's further frames
/// for it wait (and count towards its cut-off as a socket's unwritten bytes do).
const LOCAL_FRAMES: usize = 256;

/// How long a daemon stopped on purpose waits for its dismissed guardian to exit.
const GUARDIAN_DISMISS_WAIT: Duration = Duration::from_secs(2);

/// A daemon's guardian (`agent-team daemon --guard`): the write end of the pipe it reads, and
/// word of its exit.
struct Guardian {
    pipe: std::fs::File,
    exited: std::sync::mpsc::Receiver<()>,
}

impl Guardian {
    /// Tells the guardian the daemon was stopped on purpose (one byte on its pipe: it exits
    /// at once) and waits for it to exit, at most `within`. The core may have told it already
    /// ([`Core::dismiss_guardian_through`]): then the byte finds the pipe closed, or waiting, and
    /// the wait is for an exit under way.
    fn dismiss(mut self, within: Duration) {
        use std::io::Write as _;
        let _ = self.pipe.write_all(b"s");
        let _ = self.exited.recv_timeout(within);
    }
}

/// Starts `exe daemon --guard --team T` (behind `waiter guard`, when there is a waiter) in a
/// process group of its own with the read end of a pipe as its stdin; the write end, returned,
/// stays in this process (close-on-exec, so no agent holds it). When this daemon ends, however
/// it ends, the guardian reads end of file and brings it back unless the team was stopped on
/// purpose or its files (`files`, this daemon's) are gone; a byte on the pipe dismisses it. The waiter (a standard-library-only program) is
/// what waits for the daemon's whole life: ~0.7 MiB of PSS instead of a whole `agent-team`'s ~3 MiB.
fn spawn_guardian(
    exe: &std::path::Path,
    waiter: Option<&std::path::Path>,
    tp: &TeamPaths,
    files: Option<agent_team_client::heal::TeamFiles>,
) -> std::io::Result<Guardian> {
    use std::os::unix::process::CommandExt as _;
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut cmd = match waiter {
        Some(w) => {
            let mut c = std::process::Command::new(w);
            c.arg("guard").arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    if let Some(files) = files {
        cmd.env(agent_team_client::heal::ENV_GUARDED_FILES, files.encode());
    }
    let mut child = cmd
        .args(["daemon", "--guard", "--team", &tp.team])
        .env(ENV_GUARDED_PID, std::process::id().to_string())
        // This daemon's starter's pipe is not the guardian's (it has no such descriptor).
        .env_remove(agent_team_paths::ENV_START_FD)
        .env_remove(agent_team_paths::ENV_STARTER_GUARD_FD)
        .stdin(std::process::Stdio::from(reader))
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    // Reaped when it exits (it outlives this daemon only after a crash).
    let (tx, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = child.wait();
        let _ = tx.send(());
    });
    Ok(Guardian {
        pipe: std::fs::File::from(writer),
        exited,
    })
}

/// Everything taken and opened before serving: the lock, the store, the listener.
pub struct Prepared {
    /// Let go of as [`serve`] ends, unless its caller took it to let go of later.
    lock: Option<DaemonLock>,
    paths: TeamPaths,
    /// The files this daemon serves (`None`: one was missing once it was ready, which only a
    /// deletion racing its start does): their deletion ends the team ([`vanish`]).
    files: Option<agent_team_client::heal::TeamFiles>,
    core: Core,
    listener: interprocess::local_socket::tokio::Listener,
    tx: mpsc::UnboundedSender<CoreMsg>,
    rx: mpsc::UnboundedReceiver<CoreMsg>,
    gate: std::sync::Arc<gate::Gate>,
    /// The worker endpoint over TLS, when the team asked for one ([`join`]), and the limits
    /// its own gate starts with.
    join: Option<(join::Endpoint, agent_team_config::Limits)>,
}

/// Takes the lock, cleans up a crashed daemon's leftovers, opens the state and binds the socket.
/// A failure on a full disk says so ([`DaemonError::StorageFull`]).
pub fn prepare(opts: &DaemonOptions) -> Result<Prepared, DaemonError> {
    lock_and_open(opts)
        .and_then(|locked| prepare_locked(opts, locked))
        .map_err(|e| on_full_disk(opts, e))
}

/// `e`, or [`DaemonError::StorageFull`] when the disk holding the team's state is (nearly) full.
fn on_full_disk(opts: &DaemonOptions, e: DaemonError) -> DaemonError {
    let dir = opts
        .paths
        .team(&opts.team)
        .map(|tp| tp.dir)
        .unwrap_or_else(|_| opts.paths.home.clone());
    match agent_team_paths::free_bytes(&dir) {
        Some(free) if free < agent_team_paths::LOW_DISK_BYTES => DaemonError::StorageFull {
            dir,
            free,
            cause: e.to_string(),
        },
        _ => e,
    }
}

/// The lock taken, a crashed daemon's leftovers cleared, and the store being opened.
struct Locked {
    /// Declared first: dropped on a failed start, it is waited for before the lock goes.
    store: Opening,
    lock: DaemonLock,
    tp: TeamPaths,
}

/// The store opened and read: what [`open_and_read`] gives.
type Opened = Result<(Store, agent_team_state::Snapshot), StoreError>;

/// The store and what it holds, read on a thread of its own (or at once, when no thread
/// starts). Dropped unused, it waits for that thread: nothing writes the store once the lock
/// is let go.
struct Opening {
    thread: Option<std::thread::JoinHandle<Opened>>,
    done: Option<Opened>,
}

impl Opening {
    /// Opens (creating if needed) the store of `team` at `db` and reads it, on a thread: a new
    /// team's store is written and synced meanwhile (~1 ms here, more on a busy disk), not
    /// before the daemon's other start-up work.
    fn start(db: std::path::PathBuf, team: String) -> Self {
        let (d, t) = (db.clone(), team.clone());
        match std::thread::Builder::new()
            .name("store-open".into())
            .spawn(move || open_and_read(&d, &t))
        {
            Ok(handle) => Opening {
                thread: Some(handle),
                done: None,
            },
            // No thread to be had: opened here.
            Err(_) => Opening {
                thread: None,
                done: Some(open_and_read(&db, &team)),
            },
        }
    }

    /// The opened store and its contents, once ready.
    fn wait(mut self) -> Result<(Store, agent_team_state::Snapshot), DaemonError> {
        let opened = match self.thread.take() {
            Some(handle) => handle.join().map_err(|_| DaemonError::Io {
                what: "the thread opening the store panicked".into(),
                source: std::io::Error::other("panicked"),
            })?,
            None => self.done.take().ok_or_else(|| DaemonError::Io {
                what: "the store was taken twice".into(),
                source: std::io::Error::other("taken"),
            })?,
        };
        Ok(opened?)
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some(handle) = self.thread.take() {
            let _ = handle.join();
        }
    }
}

/// Opens (creating if needed) the store of `team` at `db` and reads what the state needs.
fn open_and_read(
    db: &std::path::Path,
    team: &str,
) -> Result<(Store, agent_team_state::Snapshot), StoreError> {
    let store = Store::open(db, team)?;
    let snapshot = store.load()?;
    Ok((store, snapshot))
}

/// Takes the lock, clears a crashed daemon's leftovers (the clean-stop marker, the socket) and
/// starts opening the store.
fn lock_and_open(opts: &DaemonOptions) -> Result<Locked, DaemonError> {
    let tp = opts.paths.team(&opts.team)?;
    // A healer brings back a team, it never makes one: with its state deleted there is nothing
    // to bring back (and nothing of it is made again here).
    let gone = |tp: &TeamPaths| {
        !(tp.dir.is_dir() && tp.db.is_file() && tp.lock.parent().is_some_and(|r| r.is_dir()))
    };
    if opts.heal {
        if gone(&tp) {
            return Err(DaemonError::Gone(opts.team.clone()));
        }
    } else {
        opts.paths.ensure_runtime()?;
        tp.ensure_dirs()?;
    }
    let lock = DaemonLock::acquire(&tp.lock)?;
    // A healer's start and `down` may race: under the lock the marker decides.
    if opts.heal && tp.stopped.exists() {
        return Err(DaemonError::StoppedOnPurpose(opts.team.clone()));
    }
    // And a deletion: the files are the healer's, or there is no team to bring back.
    if opts.heal && (gone(&tp) || opts.heal_files.is_some_and(|f| !f.still_there(&tp))) {
        return Err(DaemonError::Gone(opts.team.clone()));
    }
    agent_team_paths::clear_stopped(&tp.stopped).map_err(|source| DaemonError::Io {
        what: format!(
            "cannot remove the clean-stop marker {}",
            tp.stopped.display()
        ),
        source,
    })?;
    // Holding the lock proves no daemon is alive, so any socket file left is stale.
    match std::fs::remove_file(&tp.socket) {
        Ok(()) => tracing::info!("removed a stale socket at {}", tp.socket.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DaemonError::Io {
                what: format!("cannot remove stale socket {}", tp.socket.display()),
                source,
            });
        }
    }
    let store = Opening::start(tp.db.clone(), opts.team.clone());
    Ok(Locked { store, lock, tp })
}

/// The rest of [`prepare`] once [`lock_and_open`] has run: the operator credential, the store
/// awaited, the core and the listener.
fn prepare_locked(opts: &DaemonOptions, locked: Locked) -> Result<Prepared, DaemonError> {
    let Locked { store, lock, tp } = locked;
    let secret = agent_team_paths::new_secret()
        .map_err(|source| DaemonError::Io {
            what: "cannot generate the operator credential".into(),
            source,
        })
        .and_then(|secret| {
            agent_team_paths::write_secret_file(&tp.operator_secret, &secret)
                .map(|()| secret)
                .map_err(|source| DaemonError::Io {
                    what: format!(
                        "cannot write the operator credential {}",
                        tp.operator_secret.display()
                    ),
                    source,
                })
        });
    // Waited for whatever became of the credential: nothing writes the store once the lock
    // is let go.
    let opened = store.wait();
    let operator_secret = secret?;
    let (store, snapshot) = opened?;
    let state = TeamState::restore(&opts.team, snapshot);
    // The stored team file's limits hold from the first connection on.
    let limits = state
        .config()
        .and_then(|v| v.get("limits").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or(opts.limits);
    let gate = gate::Gate::new(&limits);
    let join = join::bind(&tp)
        .map_err(|e| DaemonError::Io {
            what: "cannot set up the worker endpoint".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map(|ep| (ep, limits));
    let cfg = CoreConfig {
        team: opts.team.clone(),
        paths: tp.clone(),
        operator_secret,
        perm_timeout: opts.perm_timeout,
        inbox_limit: opts.inbox_limit,
        max_queued_frames: opts.max_queued_frames,
        gate: gate.clone(),
        ends_process: opts.ends_process,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let core = Core::new(cfg, store, state, opts.env.clone(), tx.clone());
    let name = tp
        .socket
        .clone()
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| DaemonError::Io {
            what: format!("bad socket path {}", tp.socket.display()),
            source,
        })?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .reclaim_name(true)
        .create_tokio()
        .map_err(|source| DaemonError::Io {
            what: format!("cannot listen on {}", tp.socket.display()),
            source,
        })?;
    // A healer's daemon serves the files the healer knew (checked under the lock).
    let files = opts
        .heal_files
        .filter(|_| opts.heal)
        .or_else(|| agent_team_client::heal::TeamFiles::of(&tp));
    Ok(Prepared {
        lock: Some(lock),
        paths: tp,
        files,
        core,
        listener,
        tx,
        rx,
        gate,
        join,
    })
}

/// Serves connections until `shutdown` resolves or a `shutdown` request arrives.
pub async fn serve(
    prepared: Prepared,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let Prepared {
        lock,
        paths,
        files,
        core,
        mut listener,
        tx,
        rx,
        gate,
        join,
    } = prepared;
    let pacer = core.pacer.clone();
    let core_task = tokio::spawn(core.run(rx));
    // Its files deleted, the team is gone: the daemon stops it and exits.
    let runtime_gone = vanish::RuntimeGone::default();
    let _watch = match files {
        Some(files) => Some(AbortOnDrop(tokio::spawn(vanish::watch(
            paths.clone(),
            files,
            tx.clone(),
            runtime_gone.clone(),
        )))),
        None => {
            let _ = tx.send(CoreMsg::Vanished {
                runtime_intact: false,
                force: false,
            });
            runtime_gone.store(true, std::sync::atomic::Ordering::SeqCst);
            None
        }
    };
    watch_children(&tx);
    tracing::info!(team = %paths.team, pid = std::process::id(), "daemon listening on {}", paths.socket.display());
    // Teammates in containers that outlived a daemon reach this socket through a link in
    // their own dir: it points at the new socket now (issue 66).
    if let Some(net_root) = paths
        .socket
        .parent()
        .map(|r| agent_team_paths::net_dir(r, &paths.team, "x"))
        .and_then(|d| d.parent().map(std::path::Path::to_path_buf))
    {
        let n = agent_team_pane::container::relink_daemon_socket(&paths.socket, &net_root);
        if n > 0 {
            tracing::info!(
                containers = n,
                "the daemon's socket linked again for teammates in containers"
            );
        }
    }
    // Connection ids, shared by the socket's connections and the in-memory ones.
    let next_id = {
        let ids = Arc::new(std::sync::atomic::AtomicU64::new(0));
        move || ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    };
    let _in_memory = serve_in_memory(&paths, &tx, &gate, next_id.clone(), pacer);
    let _join = join.map(|(endpoint, limits)| {
        AbortOnDrop(tokio::spawn(join::accept(
            endpoint,
            limits,
            tx.clone(),
            next_id.clone(),
        )))
    });
    let accept = accept_connections(&listener, gate, tx.clone(), next_id);
    let mut core_task = core_task;
    let result = tokio::select! {
        _ = accept => Ok(Ok(())),
        _ = shutdown => {
            let _ = tx.send(CoreMsg::Shutdown);
            (&mut core_task).await
        }
        r = &mut core_task => r,
    };
    if vanish::runtime_gone(&runtime_gone) {
        // The runtime dir went: its paths may name another team's files by now, so nothing
        // there is touched (not even the socket the listener would remove as it goes).
        listener.do_not_reclaim_name_on_drop();
    } else {
        // The socket file goes with the listener.
        drop(listener);
        let _ = std::fs::remove_file(&paths.operator_secret);
        // The team's agents are stopped: their secrets go too (a crash leaves them for the
        // agents the next daemon re-adopts or restarts).
        let _ = std::fs::remove_file(&paths.secrets);
    }
    drop(lock);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(join) => Err(DaemonError::Io {
            what: "the core task failed".into(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

/// Tells the core at once when a child exits, not at the next poll.
fn watch_children(tx: &mpsc::UnboundedSender<CoreMsg>) {
    if let Ok(mut chld) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        let tx = tx.clone();
        tokio::spawn(async move {
            while chld.recv().await.is_some() {
                if tx.send(CoreMsg::ChildExited).is_err() {
                    break;
                }
            }
        });
    }
}

/// Serves the in-process agents through memory: the same handshake, their requests as values
/// and the core's frames as it encodes them; they count against no socket limit (the
/// roster's `max_teammates` bounds them).
fn serve_in_memory(
    paths: &TeamPaths,
    tx: &mpsc::UnboundedSender<CoreMsg>,
    gate: &std::sync::Arc<gate::Gate>,
    next_id: impl Fn() -> u64 + Send + Sync + 'static,
    pacer: Arc<outbox::Pacer>,
) -> agent_team_client::local::Registration {
    let (tx, gate) = (tx.clone(), gate.clone());
    // Served on the daemon's runtime, whichever runtime the client connects from.
    let runtime = tokio::runtime::Handle::current();
    agent_team_client::local::serve(
        &paths.socket,
        Arc::new(move || {
            let (to_daemon, requests) = tokio::sync::mpsc::unbounded_channel();
            let (frames, from_daemon) = tokio::sync::mpsc::channel(LOCAL_FRAMES);
            let id = next_id();
            let admission = gate.admit_in_process();
            runtime.spawn(conn::serve_local(
                requests,
                frames,
                id,
                tx.clone(),
                gate.clone(),
                admission,
                pacer.clone(),
            ));
            Some(agent_team_client::local::LocalConn {
                to_daemon,
                from_daemon,
            })
        }),
    )
}

/// Accepts the socket's connections, each admitted by the gate and served on a task of its
/// own; out of descriptors, the oldest connection without a hello makes room.
async fn accept_connections(
    listener: &interprocess::local_socket::tokio::Listener,
    gate: std::sync::Arc<gate::Gate>,
    accept_tx: mpsc::UnboundedSender<CoreMsg>,
    next_id: impl Fn() -> u64,
) {
    accept_admitted(
        &gate,
        next_id,
        || listener.accept(),
        |stream, id, admission| {
            tokio::spawn(conn::serve(
                stream,
                id,
                accept_tx.clone(),
                gate.clone(),
                admission,
            ));
        },
    )
    .await
}

/// Accepts connections until the daemon ends, each admitted by `gate` and handed to `serve`
/// with its id: the socket's and the join endpoint's one loop.
pub(crate) async fn accept_admitted<S, A>(
    gate: &gate::Gate,
    next_id: impl Fn() -> u64,
    mut accept: impl FnMut() -> A,
    mut serve: impl FnMut(S, u64, gate::Admission),
) where
    A: std::future::Future<Output = std::io::Result<S>>,
{
    loop {
        match accept().await {
            Ok(stream) => {
                let id = next_id();
                serve(stream, id, gate.admit(id));
                // A flood: let the connections closed to make room end before taking more.
                while gate.backed_up() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE): the oldest connection without a hello
                // goes, so real clients still get in; the failure is logged once a second.
                let _ = gate.accept_failed(&e);
                gate.evict_oldest_pending();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A task aborted when this is dropped (the vanish watch ends with [`serve`]).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with `agent-team down`");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// A daemon running on a background thread of this process (tests and benches).
pub struct DaemonThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), DaemonError>>>,
}

impl DaemonThread {
    /// Prepares the daemon (so errors surface here) and serves it on a new thread.
    pub fn start(opts: DaemonOptions) -> Result<Self, DaemonError> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("daemon-{}", opts.team))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| DaemonError::Io {
                        what: "cannot start the async runtime".into(),
                        source,
                    })?;
                rt.block_on(async move {
                    let prepared = match prepare(&opts) {
                        Ok(p) => {
                            let _ = ready_tx.send(Ok(()));
                            p
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let _ = ready_tx.send(Err(msg));
                            return Err(e);
                        }
                    };
                    serve(prepared, async {
                        let _ = stop_rx.await;
                    })
                    .await
                })
            })
            .map_err(|source| DaemonError::Io {
                what: "cannot start the daemon thread".into(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(DaemonThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(_)) | Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(DaemonError::Io {
                    what: "daemon thread failed".into(),
                    source: std::io::Error::other("no result"),
                }),
            },
        }
    }

    /// Stops the daemon the way SIGTERM would and waits for it.
    pub fn stop(mut self) -> Result<(), DaemonError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), DaemonError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(DaemonError::Io {
                what: "daemon thread panicked".into(),
                source: std::io::Error::other("panic"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for DaemonThread {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_being_opened_is_waited_for_when_the_start_fails_before_using_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        // A start that failed after the lock (its credential not written, say) drops it unused.
        drop(Opening::start(db.clone(), "t".into()));
        // Its thread has ended: the store is whole and nobody holds it (the store keeps its
        // database locked while open, so a second opener would wait and fail).
        assert!(db.exists());
        let store = Store::open(&db, "t").unwrap();
        assert_eq!(store.load().unwrap().agents.len(), 0);
        // And used, it hands over what it read.
        drop(store);
        let (_store, snapshot) = Opening::start(db, "t".into()).wait().unwrap();
        assert!(snapshot.tasks.is_empty());
    }

    #[test]
    fn the_lock_is_let_go_only_once_the_runtimes_blocking_work_has_ended() {
        the_lock_waits_for_blocking_work(false);
    }

    /// A daemon whose process ends next leaves its runtime to that end, but not its own
    /// blocking work (a supervisor job, the store's close).
    #[test]
    fn a_daemon_ending_its_process_lets_go_of_the_lock_only_once_its_blocking_work_has_ended() {
        the_lock_waits_for_blocking_work(true);
    }

    /// The lock held while a blocking job runs, let go once it has ended; `exiting`: the end
    /// of a daemon whose process ends next ([`DaemonOptions::ends_process`]).
    fn the_lock_waits_for_blocking_work(exiting: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.lock");
        let lock = DaemonLock::acquire(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (started, running) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let work = blocking::Blocking::default();
        let job = move || {
            let _ = started.send(());
            let _ = finished.recv();
        };
        if exiting {
            let _in = rt.enter();
            work.spawn(job);
        } else {
            rt.spawn_blocking(job);
        }
        running.recv().unwrap();
        let ending = std::thread::spawn(move || {
            end_then_let_go(rt, Some(lock), exiting.then_some(&work));
        });
        assert!(
            !agent_team_paths::wait_lock_released(&path, Duration::from_millis(300)),
            "the lock was let go while a blocking job still ran"
        );
        finish.send(()).unwrap();
        assert!(agent_team_paths::wait_lock_released(
            &path,
            Duration::from_secs(30)
        ));
        ending.join().unwrap();
    }
}
