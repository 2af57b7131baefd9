//! Which team a command acts on, and the connection to its daemon (started on demand).

use agent_team_backoff::Backoff;
use agent_team_client::{Client, ClientError, ReplyExt};
use agent_team_paths::{Paths, TeamPaths};
use agent_team_protocol::*;
use agent_team_state::TeamState;
use agent_team_store::Store;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a command keeps retrying a request whose daemon went away mid-call.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// How long a command waits before trying again after losing the daemon.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The resolved team and where its files are.
pub struct Ctx {
    /// State and runtime roots.
    pub paths: Paths,
    /// The team's name.
    pub team: String,
    /// The team's files.
    pub tp: TeamPaths,
    /// The team file in use, if any.
    pub file: Option<PathBuf>,
}

impl Ctx {
    /// Resolves the team: `--team`/`AGENT_TEAM_TEAM`, else the team file's `name`, else the only
    /// running team, else `default` (SPEC §3).
    pub fn resolve(team: Option<String>, file: Option<PathBuf>) -> Result<Self> {
        let paths = Paths::from_env()?;
        let file = match file {
            Some(f) => {
                if !f.exists() {
                    anyhow::bail!(crate::Hinted::new(
                        format!("team file {} does not exist", f.display()),
                        "check the path given with -f",
                    ));
                }
                Some(f)
            }
            None => Some(PathBuf::from("agent-team.toml")).filter(|p| p.exists()),
        };
        let team = match team {
            Some(t) => t,
            None => match &file {
                Some(f) => team_name_from_file(f)?,
                None => {
                    let running = running_teams(&paths);
                    if running.len() == 1 {
                        running[0].clone()
                    } else if let Some(last) = running
                        .is_empty()
                        .then(|| last_team_of_dir(&paths))
                        .flatten()
                    {
                        // Nothing runs: the team `up`/`run` last started from here (`ps`
                        // after `down` of the demo finds the demo).
                        last
                    } else {
                        "default".to_string()
                    }
                }
            },
        };
        let tp = paths.team(&team)?;
        Ok(Ctx {
            paths,
            team,
            tp,
            file,
        })
    }

    /// Connects as the operator, starting the daemon first if it is not running.
    pub fn connect(&self) -> Result<Client> {
        self.connect_as_starter(false)
    }

    /// [`Ctx::connect`] for a command that follows the team to its end and starts a lost
    /// daemon again itself (`run`): a daemon it starts has no guardian while it lives
    /// (`agent_team_client::ensure_daemon_guarded_by_me`).
    pub fn connect_guarding(&self) -> Result<Client> {
        self.connect_as_starter(true)
    }

    /// Connects, starting the daemon if needed (guarded by this process when `guarding`).
    pub(crate) fn connect_as_starter(&self, guarding: bool) -> Result<Client> {
        if let Some(c) = self.connect_existing()? {
            return Ok(c);
        }
        let exe = std::env::current_exe().context("cannot find the agent-team executable")?;
        let started = if guarding {
            // The daemon is this process forked (when it has one thread): it shares this
            // process's pages instead of loading the program again.
            let daemon: &dyn Fn() -> u8 = &|| crate::cmd::daemon::forked(self);
            agent_team_client::ensure_daemon_guarded_by_me(&self.tp, &exe, Some(daemon))?
        } else {
            agent_team_client::ensure_daemon(&self.tp, &exe, &[])?
        };
        if let Some(pid) = started {
            eprintln!(
                "agent-team: started the daemon for team {} (pid {pid})",
                self.team
            );
        }
        Client::operator(&self.tp)
            .with_context(|| format!("cannot connect to the daemon of team {}", self.team))
    }

    /// Makes one request as the operator, starting the daemon if needed. If the connection
    /// drops before the answer (the daemon crashed or was restarted), it reconnects and sends
    /// the same request again under the same request id, so it is applied exactly once.
    pub fn call(&self, req: Request) -> Result<Reply> {
        // Too large is refused here, before a daemon is started or reached.
        req.check_sizes().map_err(ClientError::Server)?;
        let rid = req.is_mutating().then(agent_team_client::new_rid);
        let mut pauses = Backoff::constant(RETRY_PAUSE).deadline(Instant::now() + RETRY_FOR);
        loop {
            // A daemon that dies (or is being brought back) while this connects resets the
            // connection: that is a lost daemon too, tried again like one.
            let mut c = match self.connect() {
                Ok(c) => c,
                Err(e)
                    if e.chain()
                        .filter_map(|c| c.downcast_ref::<ClientError>())
                        .any(ClientError::is_disconnect) =>
                {
                    match pauses.next() {
                        Some(pause) => {
                            std::thread::sleep(pause);
                            continue;
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            match c.call_with_rid(req.clone(), rid.clone()) {
                Err(e) if e.is_disconnect() => match pauses.next() {
                    Some(pause) => {
                        if pauses.retries() == 1 {
                            eprintln!(
                                "agent-team: lost the daemon of team {}; retrying",
                                self.team
                            );
                        }
                        std::thread::sleep(pause);
                    }
                    None => return Err(e.into()),
                },
                other => return Ok(other?),
            }
        }
    }

    /// Where a read-only command reads: the running daemon, else the stopped team's stored
    /// state. A read never starts a daemon or creates a team: with no team it fails with a hint.
    pub fn reader(&self) -> Result<Reader> {
        self.reader_noting(true)
    }

    /// [`Ctx::reader`], saying on stderr when it reads a stopped team's stored state only if
    /// `note` (a server reading on every request would fill its log with it).
    pub fn reader_noting(&self, note: bool) -> Result<Reader> {
        let at = StoredAt {
            db: self.tp.db.clone(),
            team: self.team.clone(),
        };
        // A daemon starting meanwhile holds the store locked while it runs: then it answers.
        let deadline = std::time::Instant::now() + READ_WAIT;
        let (state, store) = loop {
            if let Some(c) = self.connect_existing()? {
                return Ok(Reader::Live(c, at));
            }
            if !self.tp.db.exists() {
                anyhow::bail!(crate::Hinted::new(
                    format!("there is no team {:?} here", self.team),
                    "start one with `agent-team up`, or name one with --team (see `agent-team teams list`)",
                ));
            }
            match at.try_open() {
                Ok(opened) => break opened,
                Err(e) if e.is_busy() && std::time::Instant::now() < deadline => continue,
                Err(e) => return Err(at.failed(e)),
            }
        };
        if note {
            eprintln!(
                "agent-team: team {} is not running; showing its stored state (start it with `agent-team up`)",
                self.team
            );
        }
        Ok(Reader::Stored { state, store })
    }

    /// Connects as the operator if the daemon is running; `None` if it is not.
    pub fn connect_existing(&self) -> Result<Option<Client>> {
        match Client::operator(&self.tp) {
            Ok(c) => Ok(Some(c)),
            // Not "not running": this process may not read the credential (a sandboxed task
            // command), so it may not act as the operator.
            Err(ClientError::Credential { path, source })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                anyhow::bail!(crate::Hinted::new(
                    format!(
                        "cannot read the operator credential {}: {source}",
                        path.display()
                    ),
                    "only the operator may do this; task commands run sandboxed"
                ))
            }
            Err(ClientError::Connect { .. }) | Err(ClientError::Credential { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The file that names, per directory, the team `up` or `run` last started from it: a line
/// `TEAM<TAB>DIR` each, the newest last.
fn last_teams_file(paths: &Paths) -> PathBuf {
    paths.home.join("last-team-by-dir.tsv")
}

/// The most directories [`last_teams_file`] remembers.
const LAST_TEAMS_KEPT: usize = 200;

/// The team `up` or `run` last started from this directory, if its state is still there.
fn last_team_of_dir(paths: &Paths) -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let cwd = cwd.to_str()?;
    let text = std::fs::read_to_string(last_teams_file(paths)).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, dir)| *dir == cwd)
        .map(|(team, _)| team.to_string())
        .filter(|team| paths.team(team).is_ok_and(|tp| tp.db.exists()))
}

impl Ctx {
    /// Notes that `up` or `run` started this team from the current directory, so a later
    /// command here with no team named finds it once it is stopped. Best effort: a failure
    /// to note it costs only that.
    pub fn remember_dir(&self) {
        let (Ok(cwd), file) = (std::env::current_dir(), last_teams_file(&self.paths)) else {
            return;
        };
        let Some(cwd) = cwd.to_str().filter(|c| !c.contains(['\t', '\n'])) else {
            return;
        };
        let old = std::fs::read_to_string(&file).unwrap_or_default();
        let mut lines: Vec<&str> = old
            .lines()
            .filter(|l| l.split_once('\t').is_some_and(|(_, d)| d != cwd))
            .collect();
        let mine = format!("{}\t{cwd}", self.team);
        lines.push(&mine);
        let start = lines.len().saturating_sub(LAST_TEAMS_KEPT);
        let text: String = lines[start..].iter().map(|l| format!("{l}\n")).collect();
        // Written aside and renamed: a reader never sees half a file.
        let tmp = file.with_extension(format!("tsv.{}", std::process::id()));
        if std::fs::create_dir_all(&self.paths.home).is_ok()
            && std::fs::write(&tmp, text).is_ok()
            && std::fs::rename(&tmp, &file).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Teams whose daemon answers on its socket right now.
pub fn running_teams(paths: &Paths) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(&paths.runtime) else {
        return vec![];
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".sock").map(str::to_string))
        .filter(|n| {
            paths
                .team(n)
                .is_ok_and(|tp| agent_team_client::daemon_running(&tp))
        })
        .collect();
    v.sort();
    v
}

fn team_name_from_file(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| {
        crate::Hinted::new(
            format!("{}: {}", path.display(), e.message()),
            "fix the team file",
        )
    })?;
    if value.is_empty() {
        anyhow::bail!(crate::Hinted::new(
            format!("{} is empty", path.display()),
            "a team file needs at least a name, e.g. name = \"webapp\""
        ));
    }
    match value.get("name") {
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(_) => anyhow::bail!(crate::Hinted::new(
            format!("{}: field `name` must be a string", path.display()),
            "e.g. name = \"webapp\""
        )),
        None => Ok("default".to_string()),
    }
}

/// What a read-only command reads from: the live daemon, or a stopped team's database.
pub enum Reader {
    /// The team's daemon answers; if it goes away meanwhile (a `down` racing the read), the
    /// reader reads the state it left where [`StoredAt`] says.
    Live(Client, StoredAt),
    /// The team is stopped: its state as stored.
    Stored {
        /// The state rebuilt from the store.
        state: Box<TeamState>,
        /// The database, opened read-only (for message history and events).
        store: Store,
    },
}

/// Where a team's state is stored, for a reader whose daemon goes away.
pub struct StoredAt {
    db: PathBuf,
    team: String,
}

impl StoredAt {
    /// The state of `team` stored in `db`.
    pub(crate) fn new(db: &Path, team: &str) -> Self {
        StoredAt {
            db: db.to_path_buf(),
            team: team.to_string(),
        }
    }

    /// The stored state, and the database opened read-only; a daemon that started meanwhile
    /// and holds it is waited for ([`READ_WAIT`]).
    pub(crate) fn open(&self) -> Result<(Box<TeamState>, Store)> {
        let deadline = std::time::Instant::now() + READ_WAIT;
        loop {
            match self.try_open() {
                Ok(opened) => return Ok(opened),
                Err(e) if e.is_busy() && std::time::Instant::now() < deadline => continue,
                Err(e) => return Err(self.failed(e)),
            }
        }
    }

    /// One try at [`StoredAt::open`], waiting [`BUSY_TRY`] at most for another's lock.
    fn try_open(&self) -> Result<(Box<TeamState>, Store), agent_team_store::StoreError> {
        let store = Store::open_read_only(&self.db, &self.team)?;
        store.set_busy_timeout(BUSY_TRY)?;
        let snap = store.load()?;
        store.set_busy_timeout(std::time::Duration::from_secs(5))?;
        Ok((Box::new(TeamState::restore(&self.team, snap)), store))
    }

    /// The error of a read of the stored state that failed.
    fn failed(&self, e: agent_team_store::StoreError) -> anyhow::Error {
        anyhow::Error::new(e).context(format!("cannot read the state of team {}", self.team))
    }
}

/// How long a read waits, in all, for a team whose daemon is starting to answer.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long one try at the stored state waits for another connection's lock, before the
/// reader looks for a daemon that answers.
const BUSY_TRY: std::time::Duration = std::time::Duration::from_millis(100);

/// The most rows read from a stopped team's database per query.
const STORED_PAGE: usize = 5000;

impl Reader {
    /// Reads with `live` from the daemon, or with `stored` from the stored state: also when
    /// the daemon goes away during the read (it was stopping), which then reads what it left.
    fn read<T>(
        &mut self,
        live: impl FnOnce(&mut Client) -> Result<T, ClientError>,
        stored: impl FnOnce(&TeamState, &Store) -> Result<T>,
    ) -> Result<T> {
        if let Reader::Live(c, at) = self {
            match live(c) {
                Err(e) if e.is_disconnect() => {
                    let (state, store) = at.open()?;
                    *self = Reader::Stored { state, store };
                }
                other => return Ok(other?),
            }
        }
        match self {
            Reader::Stored { state, store } => stored(state, store),
            Reader::Live(..) => anyhow::bail!("the team's daemon went away during the read"),
        }
    }

    /// Every agent on the roster.
    pub fn agents(&mut self) -> Result<Vec<AgentInfo>> {
        self.read(
            |c| c.call(Request::Agents).agents(),
            |state, _| Ok(state.agents()),
        )
    }

    /// Every task, optionally of one status.
    pub fn tasks(&mut self, status: Option<TaskStatus>) -> Result<Vec<Task>> {
        self.read(
            |c| c.all_tasks(status),
            |state, _| Ok(state.tasks_view(status)),
        )
    }

    /// One task.
    pub fn task(&mut self, id: u64) -> Result<Task> {
        self.read(
            |c| c.call(Request::TaskShow { id }).task(),
            |state, _| Ok(state.task_view(id).map_err(ClientError::Server)?),
        )
    }

    /// An agent's messages (only the unread ones with `unread`).
    pub fn messages(&mut self, name: &str, unread: bool) -> Result<Vec<Message>> {
        self.read(
            |c| c.all_messages(name, unread),
            |state, store| {
                if unread {
                    Ok(state.unread(name))
                } else {
                    stored_pages(0, |after| store.inbox(name, after, STORED_PAGE), |m| m.id)
                }
            },
        )
    }

    /// Permission requests (pending only, unless `all`).
    pub fn perms(&mut self, all: bool) -> Result<Vec<PermRequest>> {
        self.read(|c| c.all_perms(all), |state, _| Ok(state.perms(all)))
    }

    /// The team's stored configuration (what its last `up` or `run` gave it), if any.
    pub fn config(&mut self) -> Result<Option<serde_json::Value>> {
        self.read(
            |c| {
                Ok(match c.call(Request::GetConfig)? {
                    Reply::Config { config } if !config.is_null() => Some(config),
                    _ => None,
                })
            },
            |state, _| Ok(state.config().cloned()),
        )
    }

    /// The team's memory in key order (only keys starting with `prefix`, if given).
    pub fn memory(&mut self, prefix: Option<&str>) -> Result<Vec<MemoryEntry>> {
        self.read(
            |c| c.all_memory(prefix),
            |state, _| Ok(state.memory_list(prefix, None).cloned().collect()),
        )
    }

    /// One key of the team's memory.
    pub fn memory_get(&mut self, key: &str) -> Result<MemoryEntry> {
        self.read(
            |c| match c.call(Request::MemoryGet {
                key: key.to_string(),
            })? {
                Reply::Memory { entry } => Ok(entry),
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            },
            |state, _| {
                Ok(state
                    .memory_get(key)
                    .cloned()
                    .map_err(ClientError::Server)?)
            },
        )
    }

    /// The team's usage report (per agent, per role, totals, budgets).
    pub fn usage(&mut self) -> Result<UsageReport> {
        self.read(
            |c| match c.call(Request::Usage)? {
                Reply::Usage { report } => Ok(report),
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            },
            |state, _| {
                let budgets =
                    match state.config().cloned().and_then(|v| {
                        serde_json::from_value::<agent_team_config::TeamConfig>(v).ok()
                    }) {
                        Some(c) => agent_team_state::BudgetConfig {
                            team: c.budget,
                            roles: c.role_budgets,
                        },
                        None => agent_team_state::BudgetConfig::default(),
                    };
                Ok(state.usage_report(&budgets))
            },
        )
    }

    /// Events after `since`.
    pub fn events(&mut self, since: u64) -> Result<Vec<Envelope>> {
        self.read(
            |c| c.all_events(since),
            |_, store| {
                stored_pages(
                    since,
                    |after| store.events_since(after, STORED_PAGE),
                    |e| e.seq,
                )
            },
        )
    }
}

impl Reader {
    /// A worktree teammate's changes: from the daemon, else read from the workspace of the
    /// stopped team's stored configuration. `Ok(None)` when it has no worktree branch.
    pub fn work_diff(&mut self, name: &str, patch: bool) -> Result<Option<WorkDiff>> {
        let got = self.read(
            |c| {
                Ok(
                    match c.call(Request::WorkDiff {
                        agent: name.to_string(),
                        patch,
                    }) {
                        Ok(Reply::WorkDiff { diff }) => Ok(diff),
                        Ok(other) => Err(ErrorBody::new(
                            ErrorCode::Internal,
                            format!("unexpected reply {other:?}"),
                        )),
                        Err(ClientError::Server(b)) => Err(b),
                        Err(e) => return Err(e),
                    },
                )
            },
            |state, _| Ok(stored_work_diff(state, name, patch)),
        )?;
        match got {
            Ok(d) => Ok(Some(d)),
            Err(b) if b.code == ErrorCode::NotFound => Ok(None),
            Err(b) => Err(ClientError::Server(b).into()),
        }
    }
}

/// A teammate's changes in a stopped team, read from the workspace its stored configuration
/// names (a read: git's index of the worktree is not touched), with the daemon's error codes.
pub fn stored_work_diff(state: &TeamState, name: &str, patch: bool) -> Result<WorkDiff, ErrorBody> {
    let config = state.config().cloned().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::InvalidState,
            "the team has no configuration yet (run `agent-team up`)",
        )
    })?;
    let config: agent_team_config::TeamConfig = serde_json::from_value(config).map_err(|e| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("cannot read the team's stored configuration: {e}"),
        )
    })?;
    agent_team_worktree::diff_with(&config.workspace, name, patch, &config.control_files())
        .map_err(|e| e.to_error_body())
}

/// Reads a stopped team's rows page after page, from `after` on, until a short page.
fn stored_pages<T>(
    after: u64,
    mut page: impl FnMut(u64) -> Result<Vec<T>, agent_team_store::StoreError>,
    key: impl Fn(&T) -> u64,
) -> Result<Vec<T>> {
    let mut out: Vec<T> = Vec::new();
    loop {
        let next = page(out.last().map(&key).unwrap_or(after))?;
        let done = next.len() < STORED_PAGE;
        out.extend(next);
        if done {
            return Ok(out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_daemon::{DaemonOptions, DaemonThread};

    /// A read whose daemon stops between the connect and the request (a `down` racing `ps`)
    /// answers from the state the daemon left instead of failing with "connection closed".
    #[test]
    fn a_reader_whose_daemon_stops_reads_the_stored_state() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("home"), dir.path().join("run"));
        let daemon = DaemonThread::start(DaemonOptions::new(paths.clone(), "t")).unwrap();
        let tp = paths.team("t").unwrap();
        let mut op = Client::operator(&tp).unwrap();
        op.call(Request::Register {
            name: "w1".into(),
            role: "worker".into(),
        })
        .unwrap();
        let mut reader = Reader::Live(
            Client::operator(&tp).unwrap(),
            StoredAt {
                db: tp.db.clone(),
                team: "t".into(),
            },
        );
        assert!(reader.agents().unwrap().iter().any(|a| a.name == "w1"));
        daemon.stop().unwrap();
        let agents = reader.agents().unwrap();
        assert!(agents.iter().any(|a| a.name == "w1"), "{agents:?}");
        assert!(matches!(reader, Reader::Stored { .. }));
        // Later reads go to the stored state at once.
        assert!(reader.tasks(None).unwrap().is_empty());
    }
}
