//! Event streams as Server-Sent Events: one team's log (`GET /v1/teams/{team}/events`) and
//! the NexAU-compatible session stream (`POST /team/stream`). A thread per stream follows the
//! log through [`crate::Follow`] and hands events to the response; it ends when the client
//! goes away, so nothing keeps following for nobody.

use crate::error::{ApiError, Body, Path, Query};
use crate::rest::{blocking, checked};
use crate::{App, Follow};
use agent_team_protocol::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events buffered per stream before the follower waits for the client.
const BUFFER: usize = 256;

/// The response header that names the team a session stream belongs to.
pub const TEAM_HEADER: &str = "x-agent-team-team";

/// `POST /team/stream` (NexAU's request).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct StreamRequest {
    /// Who is talking; with `session_id` it names one team.
    pub user_id: String,
    /// The conversation; with `user_id` it names one team.
    pub session_id: String,
    /// The goal of a new run, or a message to the leader of a running one. Not sent again
    /// when the request resumes with `Last-Event-ID`.
    pub message: String,
    /// Values for `{{KEY}}` placeholders of this run.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Secrets for the commands of the run this request starts (NexAU's `runtime_vars`):
    /// environment variables of its task commands and `bash` calls, beside `serve --secret`'s
    /// (these win), masked in what agents read back, never in a prompt, never stored.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Environment for those commands (NexAU's `sandbox_env`): like `secrets` never in a
    /// prompt or the store, but not a secret, so shown as it is in what agents read back.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// One line of a session stream, as NexAU's clients read it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamItem {
    /// An event of any agent of the team.
    TeamEvent {
        /// The event with its place in the log and its agent.
        envelope: Box<Envelope>,
    },
    /// The run ended: the leader's answer (the same object as `run --stream`'s last line).
    Complete(RunResult),
    /// The stream cannot go on (the team was stopped, the daemon cannot be reached).
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
}

/// `?since=` of an event stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Since {
    #[serde(default)]
    since: Option<u64>,
}

/// `Last-Event-ID`, when the client sent a valid one.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event sequence number")),
    }
}

fn sse_response(rx: mpsc::Receiver<Bytes>, team: &str) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    // Proxies must not hold the stream back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(team) {
        headers.insert(TEAM_HEADER, v);
    }
    resp
}

/// Appends one server-sent event: `data:` (one line: JSON has no raw newline), then `id:` and
/// `event:` when given, then the blank line that ends it.
fn frame<T: Serialize>(out: &mut String, v: &T, id: Option<u64>, event: Option<&str>) {
    use std::fmt::Write;
    out.push_str("data: ");
    match serde_json::to_string(v) {
        Ok(json) => out.push_str(&json),
        Err(e) => {
            let _ = write!(
                out,
                r#"{{"type":"error","error":{{"code":"internal","message":"{e}"}}}}"#
            );
        }
    }
    out.push('\n');
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    if let Some(event) = event {
        let _ = writeln!(out, "event: {event}");
    }
    out.push('\n');
}

/// `GET /v1/teams/{team}/events`: every envelope after `Last-Event-ID` (or `?since=`) as
/// `id: SEQ` / `data: ENVELOPE`, then each new one as it is recorded. A team that is stopped
/// gives its stored backlog, then an `error` event, and the stream ends.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path(team): Path<String>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Result<Response, ApiError> {
    let team = checked("team", &team)?;
    let since = last_event_id(&headers)?.or(q.since).unwrap_or(0);
    let slot = Slot::take(&app)?;
    let t = team.clone();
    let follow = blocking(&app, move |teams| teams.follow(&t, since)).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let poll = app.settings.poll;
    spawn_pump(&team, move || {
        let _slot = slot;
        pump(
            follow,
            &tx,
            poll,
            |env, out| {
                frame(out, &env, Some(env.seq), None);
                false
            },
            |_| false,
            |e, out| frame(out, &StreamItem::Error { error: e }, None, Some("error")),
        );
    });
    Ok(sse_response(rx, &team))
}

/// A keep-alive comment goes out after this long without an event.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Most bytes gathered into one chunk before it is handed to the client.
const CHUNK: usize = 64 * 1024;

/// Follows until the client leaves, a closure says the stream is done, or the follow fails.
/// Events that are already there are gathered into one chunk (a burst costs one write, not
/// one per event). `each` writes an envelope's frames and says whether it was the last;
/// `idle` runs when nothing came within `poll` and may write a last frame; when the follow
/// fails it runs once more, and `fail` writes the frame that ends the stream unless it did.
fn pump(
    mut follow: Box<dyn Follow>,
    tx: &mpsc::Sender<Bytes>,
    poll: Duration,
    mut each: impl FnMut(Envelope, &mut String) -> bool,
    mut idle: impl FnMut(&mut String) -> bool,
    fail: impl FnOnce(ErrorBody, &mut String),
) {
    let mut buf = String::new();
    let mut quiet_since = std::time::Instant::now();
    let send = |buf: &mut String| tx.blocking_send(Bytes::from(std::mem::take(buf))).is_ok();
    loop {
        let wait = if buf.is_empty() { poll } else { Duration::ZERO };
        match follow.next(wait) {
            Ok(Some(env)) => {
                let last = each(env, &mut buf);
                if last {
                    send(&mut buf);
                    return;
                }
                if buf.len() >= CHUNK && !send(&mut buf) {
                    return;
                }
            }
            Ok(None) if !buf.is_empty() => {
                if !send(&mut buf) {
                    return;
                }
                quiet_since = std::time::Instant::now();
            }
            Ok(None) => {
                if tx.is_closed() {
                    return;
                }
                if idle(&mut buf) {
                    send(&mut buf);
                    return;
                }
                if quiet_since.elapsed() >= KEEP_ALIVE {
                    buf.push_str(":\n\n");
                    if !send(&mut buf) {
                        return;
                    }
                    quiet_since = std::time::Instant::now();
                }
            }
            Err(e) => {
                // A team stopped after its run ended (an idle session team) still ends a
                // resumed stream with its last frame, read from its stored state.
                if !idle(&mut buf) {
                    fail(e, &mut buf);
                }
                send(&mut buf);
                return;
            }
        }
    }
}

/// One of the server's event-stream slots, given back when the stream's thread ends.
pub(crate) struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    /// A slot, or 429 `limit_exceeded` when every one is taken.
    pub(crate) fn take(app: &App) -> Result<Slot, ApiError> {
        use std::sync::atomic::Ordering;
        let max = app.settings.max_streams;
        let taken = app
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(app.streams.clone())),
            Err(_) => Err(ApiError::from(ErrorBody::with_details(
                ErrorCode::LimitExceeded,
                format!("{max} event streams are open already; close one and try again"),
                serde_json::json!({"limit": "max_streams", "max": max}),
            ))),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn spawn_pump(team: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(format!("sse-{team}"))
        .spawn(f)
    {
        tracing::warn!("cannot start a stream thread: {e}");
    }
}

/// `POST /team/stream`: the (user_id, session_id) pair names one team, made from the served
/// team file on first use. A new or finished team starts a run with `message` as its goal;
/// a running one gets `message` as a message to its leader. The answer streams every envelope
/// from that point as `{"type":"team_event","envelope":…}`, then `{"type":"complete",…}`.
/// With `Last-Event-ID` the request resumes: nothing is sent, the stream goes on after it.
pub(crate) async fn team_stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(req): Body<StreamRequest>,
) -> Result<Response, ApiError> {
    let resume = check_stream_request(&req, &headers)?;
    let slot = Slot::take(&app)?;
    let team = crate::session_team(&app.settings.base_team, &req.user_id, &req.session_id);
    let session = open_session(&app, &team).await?;
    let mut vars = app.settings.variables.clone();
    vars.extend(req.variables);
    let secrets = run_secrets(req.env, req.secrets);
    let t = team.clone();
    let team_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started_in = team_started.clone();
    let followed = blocking(&app, move |teams| {
        let since = match resume {
            Some(seq) => seq,
            None => start_or_send(teams, &t, req.message, &vars, &secrets)?,
        };
        started_in.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok((teams.follow(&t, since)?, since))
    })
    .await;
    let (follow, since) = match followed {
        Ok(f) => f,
        Err(e) => {
            if !team_started.load(std::sync::atomic::Ordering::SeqCst) {
                session.abandon();
            }
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let poll = app.settings.poll;
    let teams = app.teams.clone();
    let t = team.clone();
    let started = std::time::Instant::now();
    let reader = app.teams.clone();
    let result = move |answer: String, success: bool| {
        complete_item(reader.as_ref(), &t, answer, success, started)
    };
    let t = team.clone();
    spawn_pump(&team, move || {
        let _slot = slot;
        let _session = session;
        let last = std::cell::Cell::new(since);
        pump(
            follow,
            &tx,
            poll,
            |env, out| {
                last.set(env.seq);
                let done = match &env.event {
                    Event::RunFinished { answer, success } => {
                        Some(result(answer.clone(), *success))
                    }
                    _ => None,
                };
                let seq = env.seq;
                frame(
                    out,
                    &StreamItem::TeamEvent {
                        envelope: Box::new(env),
                    },
                    Some(seq),
                    None,
                );
                match done {
                    Some(done) => {
                        frame(out, &done, None, None);
                        true
                    }
                    None => false,
                }
            },
            // Caught up with a run that already ended (a resume after the end).
            |out| match teams.read(&t, Request::TeamInfo) {
                Ok(Reply::Team { team })
                    if team.last_seq <= last.get()
                        && matches!(team.run, RunState::Finished | RunState::Failed) =>
                {
                    let done = result(
                        team.answer.unwrap_or_default(),
                        team.run == RunState::Finished,
                    );
                    frame(out, &done, None, None);
                    true
                }
                _ => false,
            },
            |e, out| frame(out, &StreamItem::Error { error: e }, None, None),
        );
    });
    Ok(sse_response(rx, &team))
}

/// Checks a stream request's names and message; the event it resumes after
/// (`Last-Event-ID`), if any.
fn check_stream_request(req: &StreamRequest, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    for (field, v) in [("user_id", &req.user_id), ("session_id", &req.session_id)] {
        if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "{field} must be 1-256 printable characters"
            )));
        }
    }
    let resume = last_event_id(headers)?;
    if resume.is_none() && req.message.trim().is_empty() {
        return Err(ApiError::bad_request("message is empty"));
    }
    Ok(resume)
}

/// Counts a stream on the session `team`, before the team starts: past `max_sessions`, a new
/// session gets 429 (after forgetting the sessions whose daemon someone else stopped).
async fn open_session(app: &Arc<App>, team: &str) -> Result<crate::sessions::Open, ApiError> {
    let max = app.settings.max_sessions;
    let mut session = app.sessions.try_open(team, max);
    if session.is_err() {
        // Full: forget the sessions whose daemon someone else stopped, then look again.
        let running = blocking(app, |teams| teams.list()).await?;
        let running = running
            .into_iter()
            .filter(|t| t.running)
            .map(|t| t.name)
            .collect();
        app.sessions.prune(&running);
        session = app.sessions.try_open(team, max);
    }
    session.map_err(|open| {
        ApiError::from(ErrorBody::with_details(
            ErrorCode::LimitExceeded,
            format!(
                "{open} session teams are up already (serve --max-sessions {max}); an idle one \
                 is stopped after --session-idle, or end one with POST /v1/teams/TEAM/down"
            ),
            serde_json::json!({"limit": "max_sessions", "max": max}),
        ))
    })
}

/// The run's secrets: plain environment as `env:NAME` (never masked), secrets under their names.
fn run_secrets(
    env: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = env
        .into_iter()
        .map(|(k, v)| (format!("{}{k}", names::PLAIN_ENV_PREFIX), v))
        .collect();
    all.extend(secrets);
    all
}

/// The stream's `complete` line: the run's answer with its record, board and usage.
fn complete_item(
    reader: &dyn crate::Teams,
    team: &str,
    answer: String,
    success: bool,
    started: std::time::Instant,
) -> StreamItem {
    let (details, tasks) = run_record(reader, team);
    let mut result = RunResult::new(team, answer, success, started.elapsed().as_secs_f64())
        .with_details(details, tasks);
    result.usage = match reader.read(team, Request::Usage) {
        Ok(Reply::Usage { report }) => Some(Box::new(report)),
        _ => None,
    };
    StreamItem::Complete(result)
}

/// What a finished run recorded (strategy, rounds, workers' outputs) and the board, for the
/// `complete` line; what cannot be read is left out rather than failing the stream.
fn run_record(teams: &dyn crate::Teams, team: &str) -> (Option<RunDetails>, Vec<Task>) {
    let details = match teams.read(team, Request::TeamInfo) {
        Ok(Reply::Team { team }) => team.details,
        _ => None,
    };
    let tasks = crate::rest::all_pages(
        |after| {
            let req = Request::TaskList {
                status: None,
                after,
            };
            teams.read(team, req)
        },
        |r| match r {
            Reply::Tasks { tasks, .. } => Ok(tasks),
            r => Err(crate::rest::unexpected(r)),
        },
        |t| t.id,
    )
    .unwrap_or_default();
    (details, tasks)
}

/// A new or ended team starts a run with `message` as its goal; a running one gets it as a
/// message to its leader. Returns the sequence number to stream after.
fn start_or_send(
    teams: &dyn crate::Teams,
    team: &str,
    message: String,
    vars: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<u64, ErrorBody> {
    let info = match teams.read(team, Request::TeamInfo) {
        Ok(Reply::Team { team }) => Some(team),
        Ok(_) => None,
        Err(e) if e.code == ErrorCode::NotFound => None,
        Err(e) => return Err(e),
    };
    match info {
        Some(info) if info.run == RunState::Running => {
            let since = info.last_seq;
            teams.call(
                team,
                Request::Send {
                    to: names::LEADER.to_string(),
                    body: message,
                    kind: MessageKind::Text,
                    summary: None,
                    dedup: None,
                },
            )?;
            Ok(since)
        }
        _ => teams.up(team, Some(message), vars, secrets),
    }
}
