//! `agent-team serve`: the teams on this machine over HTTP. The HTTP layer is the
//! `agent-team-http` crate; this module gives it the teams ([`LocalTeams`]) the way the other
//! commands reach them: reads never start a daemon, actions start it on demand and retry
//! under one request id, `up` starts a run from the served team file.

use crate::cli::ServeArgs;
use crate::ctx::{Ctx, Reader};
use agent_team_client::{Client, ClientError};
use agent_team_http::{
    ConnLimits, Follow, Listen, Settings, TeamSummary, Teams, Token, TokenSource,
};
use agent_team_paths::Paths;
use agent_team_protocol::*;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The teams of this machine as the HTTP API sees them.
struct LocalTeams {
    paths: Paths,
    /// The served team file: new teams (sessions, `up`) are made from it.
    file: Option<PathBuf>,
    /// `serve --secret`: for the commands of every run this server starts.
    secrets: BTreeMap<String, String>,
}

/// An error of the CLI's kind as the API reports it.
fn body(e: anyhow::Error) -> ErrorBody {
    if let Some(ClientError::Server(b) | ClientError::Refused(b)) =
        e.chain().find_map(|c| c.downcast_ref::<ClientError>())
    {
        return b.clone();
    }
    if let Some(ce) = e
        .chain()
        .find_map(|c| c.downcast_ref::<agent_team_config::ConfigError>())
    {
        return ErrorBody::new(ErrorCode::BadRequest, ce.to_string());
    }
    ErrorBody::new(ErrorCode::Internal, crate::describe(&e))
}

fn not_found(team: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!(
            "there is no team {team:?} on this machine (start it with POST /v1/teams/{team}/up)"
        ),
    )
}

impl LocalTeams {
    fn ctx(&self, team: &str) -> Result<Ctx, ErrorBody> {
        let tp = self
            .paths
            .team(team)
            .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, e.to_string()))?;
        Ok(Ctx {
            paths: self.paths.clone(),
            team: team.to_string(),
            tp,
            file: self.file.clone(),
        })
    }

    /// The team's context, `not_found` when it has no state on this machine.
    fn existing(&self, team: &str) -> Result<Ctx, ErrorBody> {
        let ctx = self.ctx(team)?;
        if !ctx.tp.db.exists() {
            return Err(not_found(team));
        }
        Ok(ctx)
    }
}

/// Answers a read from a stopped team's stored state, as the daemon would.
fn stored_reply(
    state: &agent_team_state::TeamState,
    store: &agent_team_store::Store,
    req: Request,
) -> Result<Reply, ErrorBody> {
    let after_id = |after: Option<u64>| move |id: u64| id > after.unwrap_or(0);
    Ok(match req {
        Request::Agents => Reply::Agents {
            agents: state.agents(),
        },
        Request::TaskList { status, after } => Reply::Tasks {
            tasks: state
                .tasks(status)
                .into_iter()
                .filter(|t| after_id(after)(t.id))
                .collect(),
            more: Some(false),
        },
        Request::WorkDiff { agent, patch } => Reply::WorkDiff {
            diff: crate::ctx::stored_work_diff(state, &agent, patch)?,
        },
        Request::TaskShow { id } => Reply::Task {
            task: state.task(id).cloned()?,
        },
        Request::PermList { all, after } => Reply::Perms {
            requests: state
                .perms(all)
                .into_iter()
                .filter(|r| after_id(after)(r.id))
                .collect(),
        },
        Request::Inbox {
            agent,
            unread_only,
            after,
        } => {
            let name = agent.unwrap_or_default();
            const PAGE: usize = 5000;
            let messages = if unread_only {
                state.unread(&name)
            } else {
                store
                    .inbox(&name, after.unwrap_or(0), PAGE)
                    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
            };
            // Only a store page as long as asked for may have more behind it.
            let more = !unread_only && messages.len() >= PAGE;
            Reply::Messages {
                messages: messages
                    .into_iter()
                    .filter(|m| after_id(after)(m.id))
                    .collect(),
                more: Some(more),
            }
        }
        other => {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("{other:?} is not a read"),
            ));
        }
    })
}

impl Teams for LocalTeams {
    fn list(&self) -> Result<Vec<TeamSummary>, ErrorBody> {
        Ok(self
            .paths
            .list_teams()
            .into_iter()
            .map(|name| {
                let running = self
                    .paths
                    .team(&name)
                    .map(|tp| agent_team_daemon::lock::DaemonLock::is_held(&tp.lock))
                    .unwrap_or(false);
                let info = crate::cmd::teams::team_info(&self.paths, &name).ok();
                TeamSummary {
                    running,
                    run: info.as_ref().map(|i| i.run),
                    goal: info.and_then(|i| i.goal),
                    name,
                }
            })
            .collect())
    }

    fn read(&self, team: &str, req: Request) -> Result<Reply, ErrorBody> {
        let ctx = self.existing(team)?;
        if let Request::TeamInfo = req {
            return crate::cmd::teams::team_info(&self.paths, team)
                .map(|team| Reply::Team { team })
                .map_err(body);
        }
        match ctx.reader_noting(false).map_err(body)? {
            Reader::Live(mut c, at) => match c.call(req.clone()) {
                // The daemon went away during the read (it was stopping): read what it left.
                Err(e) if e.is_disconnect() => {
                    let (state, store) = at.open().map_err(body)?;
                    stored_reply(&state, &store, req)
                }
                other => other.map_err(|e| body(e.into())),
            },
            Reader::Stored { state, store } => stored_reply(&state, &store, req),
        }
    }

    fn call(&self, team: &str, req: Request) -> Result<Reply, ErrorBody> {
        self.existing(team)?.call(req).map_err(body)
    }

    fn up(
        &self,
        team: &str,
        goal: Option<String>,
        variables: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
    ) -> Result<u64, ErrorBody> {
        let ctx = self.ctx(team)?;
        if ctx.file.is_none() && !ctx.tp.db.exists() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "team {team:?} has no stored configuration and this server has no team file \
                     (start `agent-team serve -f FILE`)"
                ),
            ));
        }
        let (cfg, _) = crate::cmd::up::team_config(&ctx, false, None, false).map_err(body)?;
        let mut all = self.secrets.clone();
        all.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (cfg, goal, secrets) =
            crate::cmd::up::with_variables(cfg, goal, variables, &all).map_err(body)?;
        // Checked before a daemon starts, as `up` and `run` do.
        let checked = crate::cmd::up::check_before_start(&cfg, goal.as_deref()).map_err(body)?;
        let mut c = ctx.connect().map_err(body)?;
        crate::cmd::up::start(&ctx, &mut c, &cfg, checked, goal, &secrets).map_err(body)
    }

    fn down(&self, team: &str) -> Result<bool, ErrorBody> {
        let ctx = self.existing(team)?;
        match ctx.connect_existing().map_err(body)? {
            Some(mut c) => {
                crate::cmd::teams::shutdown(&ctx, &mut c, crate::cmd::teams::Until::Exited)
                    .map_err(body)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn follow(&self, team: &str, since: u64) -> Result<Box<dyn Follow>, ErrorBody> {
        let ctx = self.existing(team)?;
        let files = agent_team_client::heal::TeamFiles::of(&ctx.tp);
        let mut f = LocalFollow {
            ctx,
            client: None,
            last: since,
            backlog: VecDeque::new(),
            files,
        };
        f.attach()?;
        Ok(Box::new(f))
    }
}

/// Follows one team's log: live through a subscription, or a stopped team's stored backlog.
struct LocalFollow {
    ctx: Ctx,
    client: Option<Client>,
    last: u64,
    backlog: VecDeque<Envelope>,
    /// The team's files as the stream found them: a daemon lost once they are gone (deleted,
    /// or made anew by someone else) is not started again, and the stream ends.
    files: Option<agent_team_client::heal::TeamFiles>,
}

impl LocalFollow {
    /// Subscribes to the running daemon from `last`, or loads the stored backlog.
    fn attach(&mut self) -> Result<(), ErrorBody> {
        match self.ctx.connect_existing().map_err(body)? {
            Some(mut c) => {
                c.call(Request::Subscribe {
                    since: self.last,
                    types: None,
                })
                .map_err(|e| body(e.into()))?;
                self.client = Some(c);
            }
            None => {
                let mut r = self.ctx.reader_noting(false).map_err(body)?;
                self.backlog = r.events(self.last).map_err(body)?.into();
            }
        }
        Ok(())
    }

    /// The team's files were deleted: there is nothing to follow any more.
    fn gone(&self) -> ErrorBody {
        ErrorBody::new(
            ErrorCode::InvalidState,
            format!("the files of team {} were deleted", self.ctx.team),
        )
    }

    /// The daemon crashed: brings it back as a healer does (never where the team's files are
    /// gone, never after a stop on purpose) and connects to it.
    fn heal(&self) -> Result<Client, ErrorBody> {
        use agent_team_client::heal::{Healed, Healer};
        let exe = std::env::current_exe()
            .context("cannot find the agent-team executable")
            .map_err(body)?;
        let env = Healer::launch_env(&self.ctx.paths, Some(exe.clone()));
        let mut healer =
            Healer::new(&self.ctx.paths, &self.ctx.team, exe, env).map_err(|e| body(e.into()))?;
        match self.files {
            Some(files) => healer = healer.with_files(files),
            None => return Err(self.gone()),
        }
        let mut pauses =
            agent_team_backoff::Backoff::new(Duration::from_millis(5), Duration::from_millis(200))
                .deadline(Instant::now() + Duration::from_secs(30));
        loop {
            let why = match healer.heal() {
                Ok(Healed::Running) => match Client::operator(&self.ctx.tp) {
                    Ok(c) => return Ok(c),
                    Err(e) => e.to_string(),
                },
                Ok(Healed::Stopped) => return Err(self.stopped()),
                Ok(Healed::Gone) => return Err(self.gone()),
                Err(e) => e.to_string(),
            };
            match pauses.next() {
                Some(pause) => std::thread::sleep(pause),
                None => {
                    return Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!(
                            "cannot reach the daemon of team {} again: {why}",
                            self.ctx.team
                        ),
                    ));
                }
            }
        }
    }

    fn stopped(&self) -> ErrorBody {
        ErrorBody::new(
            ErrorCode::InvalidState,
            format!(
                "team {} is not running (start it with POST /v1/teams/{}/up)",
                self.ctx.team, self.ctx.team
            ),
        )
    }
}

impl Follow for LocalFollow {
    fn next(&mut self, wait: Duration) -> Result<Option<Envelope>, ErrorBody> {
        if let Some(e) = self.backlog.pop_front() {
            self.last = e.seq;
            return Ok(Some(e));
        }
        let deadline = Instant::now() + wait;
        loop {
            let Some(c) = self.client.as_mut() else {
                return Err(self.stopped());
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match c.next_push(Some(left)) {
                Ok(Push::Event { envelope }) => {
                    self.last = envelope.seq;
                    return Ok(Some(*envelope));
                }
                Ok(_) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) if e.is_disconnect() => {
                    self.client = None;
                    if crate::cmd::up::stopped_cleanly(&self.ctx) {
                        return Err(self.stopped());
                    }
                    // A crash: start the daemon again (it re-adopts the agents) and go on
                    // from the last envelope given out; not when the team's files are gone.
                    let mut c = self.heal()?;
                    c.call(Request::Subscribe {
                        since: self.last,
                        types: None,
                    })
                    .map_err(|e| body(e.into()))?;
                    self.client = Some(c);
                }
                Err(e) => return Err(body(e.into())),
            }
        }
    }
}

/// One line on stdout. A server outlives whoever reads its start-up lines: a closed stdout
/// (`agent-team serve | head -1`) must not stop it, so write errors are ignored.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// A TCP listener on `addr` with a deep accept queue: a burst of connections (a flood that
/// the connection cap pushes out) must not make a real client's SYN wait a second for room.
fn tcp_listener(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // The kernel caps it at net.core.somaxconn (4096 by default).
    socket.listen(4096)
}

/// Says where the server listens, where its token is (never the token itself: terminal
/// scrollback, a supervisor's logs) and what it serves.
fn say_serving(ctx: &Ctx, addr: &Listen, source: TokenSource, token_file: &std::path::Path) {
    say(&format!(
        "agent-team: serving {addr} (board at /, API at /v1, NexAU stream at POST /team/stream)"
    ));
    match source {
        TokenSource::Env => say(&format!(
            "agent-team: token from ${}",
            agent_team_http::TOKEN_ENV
        )),
        TokenSource::File => say(&format!(
            "agent-team: token in {} (send it as `Authorization: Bearer TOKEN`)",
            token_file.display()
        )),
        TokenSource::Generated => say(&format!(
            "agent-team: new token written to {} (send it as `Authorization: Bearer TOKEN`)",
            token_file.display()
        )),
    }
    let served_team = match &ctx.file {
        Some(f) => format!(
            "sessions and new teams are made from {} ({})",
            f.display(),
            ctx.team
        ),
        None => "no team file: only teams that ran before can be started".to_string(),
    };
    say(&format!(
        "agent-team: {served_team}; Ctrl-C stops the server, not the teams"
    ));
}

/// `agent-team serve`
pub fn serve(ctx: Ctx, args: ServeArgs) -> Result<ExitCode> {
    let runtime = ctx.paths.runtime.clone();
    let listen = Listen::parse(&args.listen, args.allow_remote)?;
    let allowed_hosts = agent_team_http::allowed_hosts(&listen, &args.allow_hosts)?;
    let limits = ConnLimits {
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    // Each connection is a descriptor: a cap above the soft limit needs the hard one.
    agent_team_daemon::gate::raise_fd_limit();
    let variables: BTreeMap<String, String> = args.vars.vars.iter().cloned().collect();
    let secrets: BTreeMap<String, String> = args.vars.secrets.iter().cloned().collect();
    let hook_secrets = secrets.clone();
    ctx.paths.ensure_runtime()?;
    let token_file = ctx.paths.runtime.join("serve.token");
    let (token, source) = Token::load_or_create(&token_file)?;
    if let Some(f) = &ctx.file {
        // A broken team file is reported now, not at the first request.
        agent_team_config::load(f)?;
    }
    let teams = Arc::new(LocalTeams {
        paths: ctx.paths.clone(),
        file: ctx.file.clone(),
        secrets,
    });
    let settings = Settings {
        token: token.clone(),
        base_team: ctx.team.clone(),
        variables,
        poll: Duration::from_millis(500),
        max_streams: 256,
        session_idle: (args.session_idle > 0).then(|| Duration::from_secs(args.session_idle)),
        max_sessions: usize::try_from(args.max_sessions).unwrap_or(usize::MAX),
        allowed_hosts,
    };
    // Webhooks and schedules (issue 69); the scheduler stops with `_scheduler`.
    let (hooks, _scheduler) = crate::cmd::triggers::start(&ctx, &hook_secrets);
    let app = agent_team_http::router_with_hooks(teams, settings, hooks);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let outcome = rt.block_on(async move {
        let (served, addr) = match &listen {
            Listen::Tcp(addr) => {
                let l = tcp_listener(*addr).with_context(|| format!("cannot listen on {addr}"))?;
                let at = Listen::Tcp(l.local_addr()?);
                (
                    tokio::spawn(async move { agent_team_http::serve(l, app, limits).await }),
                    at,
                )
            }
            Listen::Unix(path) => {
                if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
                    // A stale socket of a server that is gone.
                    let _ = std::fs::remove_file(path);
                }
                let l = bind_private(path)
                    .with_context(|| format!("cannot listen on {}", path.display()))?;
                (
                    tokio::spawn(async move { agent_team_http::serve(l, app, limits).await }),
                    listen.clone(),
                )
            }
        };
        // Ctrl-C and SIGTERM are ours from here: a signal right after start-up stops the server
        // cleanly instead of killing it.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        say_serving(&ctx, &addr, source, &token_file);
        // Where teams' chat notifications link a permission request to the board.
        if let Listen::Tcp(a) = &addr {
            let _ = std::fs::write(
                agent_team_paths::serve_url_file(&ctx.paths.runtime),
                format!("http://{a}"),
            );
        }
        tokio::select! {
            r = served => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("the server stopped")),
                Err(e) => Err(anyhow::Error::from(e).context("the server failed")),
            },
            _ = int.recv() => Ok(()),
            _ = term.recv() => Ok(()),
        }
        .map(|()| addr)
    });
    // Streams still open end with the process; the teams keep running.
    rt.shutdown_timeout(Duration::from_millis(200));
    let addr = outcome?;
    if let Listen::Tcp(a) = &addr {
        let file = agent_team_paths::serve_url_file(&runtime);
        if std::fs::read_to_string(&file).is_ok_and(|t| t == format!("http://{a}")) {
            let _ = std::fs::remove_file(file);
        }
    }
    if let Listen::Unix(p) = &addr {
        let _ = std::fs::remove_file(p);
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "agent-team: stopped serving; the teams keep running (`agent-team teams list`)"
    );
    Ok(ExitCode::SUCCESS)
}

/// Listens on a Unix socket at `path` that only this user may use, and that appears there only
/// once it listens and has its mode: it is made under a name of its own beside `path` and
/// linked into place, so a client that waits for the file connects at once (before, a client
/// between the bind and the listen was refused), and nobody else connects in between. A name
/// too long for a socket falls back to `path` itself.
fn bind_private(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // This process's own name: two servers started at once do not take each other's.
    let name = path
        .file_name()
        .map(|n| format!(".{}.{}", n.to_string_lossy(), std::process::id()))
        .unwrap_or_else(|| format!(".serve.{}", std::process::id()));
    let aside = path.with_file_name(name);
    let _ = std::fs::remove_file(&aside);
    let Ok(l) = tokio::net::UnixListener::bind(&aside) else {
        let l = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        return Ok(l);
    };
    // A link, not a rename: a live server's socket already there is not replaced (the link
    // fails, as the bind would have).
    let placed = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    placed.map(|()| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_appears_listening_and_private_with_nothing_left_beside_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let l = bind_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The file is the listening socket: a connect succeeds (the listener accepts it).
        let c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (_s, _) = l.accept().await.unwrap();
        drop(c);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("api.sock")]);
        // A second server does not take a live one's place.
        assert!(bind_private(&path).is_err());
        let c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (_s, _) = l.accept().await.unwrap();
        drop(c);
    }
}
