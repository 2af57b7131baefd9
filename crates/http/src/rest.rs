//! The `/v1` REST routes: each one is one protocol request (or a page loop of them) to one
//! team, made through [`crate::Teams`] off the async threads.

use crate::error::{ApiError, Body, OptBody, Path, Query};
use crate::{App, TeamSummary, Teams};
use agent_team_protocol::*;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `GET /v1/teams`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TeamList {
    /// The teams, by name.
    pub teams: Vec<TeamSummary>,
}

/// `GET /v1/teams/{team}/agents`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    /// The roster, leader first.
    pub agents: Vec<AgentInfo>,
}

/// `GET /v1/teams/{team}/tasks`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TaskList {
    /// The tasks, by id.
    pub tasks: Vec<Task>,
}

/// `GET /v1/teams/{team}/permissions`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PermList {
    /// The requests, by id.
    pub permissions: Vec<PermRequest>,
}

/// `GET /v1/teams/{team}/agents/{name}/messages`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct MessageList {
    /// The messages, oldest first, with their delivery state.
    pub messages: Vec<Message>,
}

/// `POST /v1/teams/{team}/tasks`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Short title.
    pub title: String,
    /// Longer description.
    #[serde(default)]
    pub description: String,
    /// A shell command: the task is done when it exits 0 (exec teammates).
    #[serde(default)]
    pub run: Option<String>,
    /// Ids of tasks that must complete first.
    #[serde(default)]
    pub blocked_by: Vec<u64>,
    /// Give it to this agent at once.
    #[serde(default)]
    pub assign: Option<String>,
    /// A stable key: adding a task whose key exists returns the existing task.
    #[serde(default)]
    pub key: Option<String>,
}

/// `POST /v1/teams/{team}/messages`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The recipient, or `*` for every agent.
    pub to: String,
    /// The text (at most 64 KiB).
    pub text: String,
    /// A one-line summary.
    #[serde(default)]
    pub summary: Option<String>,
}

/// The answer to `POST /v1/teams/{team}/messages`: one copy per recipient.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Sent {
    /// The ids of the copies.
    pub ids: Vec<u64>,
    /// Their recipients, in the same order.
    pub recipients: Vec<String>,
}

/// What the operator decides about a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Allow this once.
    Allow,
    /// Allow, and make it a team rule.
    Always,
    /// Deny.
    Deny,
}

/// `POST /v1/teams/{team}/permissions/{id}`
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// `allow`, `always` or `deny`.
    pub decision: DecisionKind,
    /// Why (told to the agent on a denial).
    #[serde(default)]
    pub reason: Option<String>,
    /// With `always`: the rule allows every input matching this pattern (`*` matches any run
    /// of characters) instead of exactly this request's input.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// `POST /v1/teams/{team}/plans/{agent}`: approve or reject a teammate's submitted plan.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDecision {
    /// Approve (it gets its full tool set) or reject (it stays read-only).
    pub approve: bool,
    /// What to tell the teammate (it reaches its model as a message).
    #[serde(default)]
    pub feedback: Option<String>,
}

/// `POST /v1/teams/{team}/up`
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Up {
    /// The goal for the leader (default: the team file's).
    #[serde(default)]
    pub goal: Option<String>,
    /// Values for `{{KEY}}` placeholders, over the team file's and `serve --var`'s.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// The answer to `POST /v1/teams/{team}/up`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Started {
    /// The team.
    pub team: String,
    /// The newest event before the run: follow `/events?since=` this to see all of it.
    pub since: u64,
}

/// The answer to `POST /v1/teams/{team}/down`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Stopped {
    /// The team.
    pub team: String,
    /// Whether its daemon was running.
    pub was_running: bool,
}

/// `POST /v1/teams/{team}/config`: change one setting while the team runs, or reset it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// `defaults.model`, `max_teammates`, `role.NAME.model`, `role.NAME.max_steps`,
    /// `member.NAME.model` or `member.NAME.role`; without `value`, `*` resets every one.
    pub key: String,
    /// Its new value; none (or null) resets it to the team file's.
    #[serde(default)]
    pub value: Option<String>,
}

/// The answer to `POST /v1/teams/{team}/config`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConfigChanged {
    /// The setting (`*`: every one).
    pub key: String,
    /// Its value now (none: the team file's).
    pub value: Option<String>,
    /// `next_start` (of each agent it concerns) or `next_spawn`.
    pub applies: String,
}

/// The answer to requests that return nothing else.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Ok {
    /// Always true.
    pub ok: bool,
}

/// `POST /v1/teams/{team}/agents/{name}/finish`: land a worktree teammate's work.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    /// `merge` (into the base branch), `pr` (push and open a pull request) or `discard`
    /// (drop the worktree and the branch).
    pub action: FinishAction,
    /// The branch to merge into (default: the one the team started from).
    #[serde(default)]
    pub into: Option<String>,
    /// Keep the teammate's branch and worktree after a merge.
    #[serde(default)]
    pub keep: bool,
}

/// `?patch=` of a teammate's diff.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffFilter {
    #[serde(default)]
    patch: bool,
}

/// `?status=` of the task list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskFilter {
    status: Option<String>,
}

/// `?all=` of the permission list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermFilter {
    #[serde(default)]
    all: bool,
}

/// `?unread=` of an inbox.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboxFilter {
    #[serde(default)]
    unread: bool,
}

type Shared = State<Arc<App>>;

/// Every route of [`crate::openapi::routes`], the API's behind the token check, all behind
/// the body limit.
pub(crate) fn routes(app: Arc<App>) -> Router {
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<App>>)> = Vec::new();
    for route in crate::openapi::routes() {
        let handler = (route.handler)();
        match by_path.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(handler),
            None => by_path.push((route.path, handler)),
        }
    }
    let mut open = Router::new();
    let mut api = Router::new();
    for (path, mr) in by_path {
        // The board's page needs no token; a webhook is authenticated by its signature.
        if path == "/" || path == crate::hooks::PATH {
            open = open.route(path, mr);
        } else {
            api = api.route(path, mr);
        }
    }
    let api = api
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::require_token,
        ));
    // Outermost last: the frame headers go on every answer, the Host check comes before
    // everything else (the token check included).
    open.merge(api)
        .layer(DefaultBodyLimit::max(crate::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::guard::check_host,
        ))
        .layer(axum::middleware::map_response(crate::guard::headers))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route (see /v1/openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        body: ErrorBody::new(
            ErrorCode::BadRequest,
            "this route does not take that method (see /v1/openapi.json)",
        ),
    }
}

/// Runs `f` on a blocking thread with the teams.
pub(crate) async fn blocking<T, F>(app: &Arc<App>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Teams) -> Result<T, ErrorBody> + Send + 'static,
{
    let teams = app.teams.clone();
    match tokio::task::spawn_blocking(move || f(&*teams)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            ErrorCode::Internal,
            format!("the request failed inside the server: {e}"),
        )),
    }
}

/// A name from the path, checked like the CLI checks it.
pub(crate) fn checked(kind: &str, name: &str) -> Result<String, ApiError> {
    names::validate(kind, name).map_err(ApiError::bad_request)?;
    Ok(name.to_string())
}

/// A reply of a kind the request does not produce, as an internal error naming it.
pub(crate) fn unexpected(reply: Reply) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Internal,
        format!("unexpected reply from the daemon: {reply:?}"),
    )
}

pub(crate) async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

pub(crate) async fn list_teams(State(app): Shared) -> Result<axum::Json<TeamList>, ApiError> {
    let teams = blocking(&app, |t| t.list()).await?;
    Ok(axum::Json(TeamList { teams }))
}

pub(crate) async fn team_info(
    State(app): Shared,
    Path(team): Path<String>,
) -> Result<axum::Json<TeamInfo>, ApiError> {
    let team = checked("team", &team)?;
    blocking(&app, move |t| match t.read(&team, Request::TeamInfo)? {
        Reply::Team { team } => Ok(axum::Json(team)),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn agents(
    State(app): Shared,
    Path(team): Path<String>,
) -> Result<axum::Json<AgentList>, ApiError> {
    let team = checked("team", &team)?;
    blocking(&app, move |t| match t.read(&team, Request::Agents)? {
        Reply::Agents { agents } => Ok(axum::Json(AgentList { agents })),
        r => Err(unexpected(r)),
    })
    .await
}

/// Every page of a paged list request: `page` asks for the page after an id, `items` takes a
/// reply's items (a reply of the wrong kind is [`unexpected`]). Stops at an empty page, or at one that
/// says nothing follows it (`more: false`), so that empty page is not asked for.
pub(crate) fn all_pages<T>(
    mut page: impl FnMut(Option<u64>) -> Result<Reply, ErrorBody>,
    items: impl Fn(Reply) -> Result<Vec<T>, ErrorBody>,
    id: impl Fn(&T) -> u64,
) -> Result<Vec<T>, ErrorBody> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let reply = page(after)?;
        let last_page = reply.is_last_page();
        let got = items(reply)?;
        match got.last() {
            Some(last) => after = Some(id(last)),
            None => return Ok(all),
        }
        all.extend(got);
        if last_page {
            return Ok(all);
        }
    }
}

pub(crate) async fn tasks(
    State(app): Shared,
    Path(team): Path<String>,
    Query(f): Query<TaskFilter>,
) -> Result<axum::Json<TaskList>, ApiError> {
    let team = checked("team", &team)?;
    let status = match f.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown task status {s:?}: use pending, in_progress, completed, failed or cancelled"
            ))
        })?),
    };
    blocking(&app, move |t| {
        let tasks = all_pages(
            |after| t.read(&team, Request::TaskList { status, after }),
            |r| match r {
                Reply::Tasks { tasks, .. } => Ok(tasks),
                r => Err(unexpected(r)),
            },
            |t| t.id,
        )?;
        Ok(axum::Json(TaskList { tasks }))
    })
    .await
}

pub(crate) async fn task(
    State(app): Shared,
    Path((team, id)): Path<(String, u64)>,
) -> Result<axum::Json<Task>, ApiError> {
    let team = checked("team", &team)?;
    blocking(&app, move |t| {
        match t.read(&team, Request::TaskShow { id })? {
            Reply::Task { task } => Ok(axum::Json(task)),
            r => Err(unexpected(r)),
        }
    })
    .await
}

pub(crate) async fn add_task(
    State(app): Shared,
    Path(team): Path<String>,
    Body(b): Body<NewTask>,
) -> Result<(StatusCode, axum::Json<Task>), ApiError> {
    let team = checked("team", &team)?;
    let req = Request::TaskAdd {
        title: b.title,
        description: b.description,
        run: b.run,
        blocked_by: b.blocked_by,
        assign: b.assign,
        key: b.key,
    };
    req.check_sizes()?;
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::Task { task } => Ok((StatusCode::CREATED, axum::Json(task))),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn set_config(
    State(app): Shared,
    Path(team): Path<String>,
    Body(b): Body<SetConfig>,
) -> Result<axum::Json<ConfigChanged>, ApiError> {
    let team = checked("team", &team)?;
    let req = match (b.key.as_str(), b.value) {
        ("*", None) => Request::ConfigReset { key: None },
        (_, None) => Request::ConfigReset { key: Some(b.key) },
        (_, Some(value)) => Request::ConfigSet { key: b.key, value },
    };
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::ConfigChanged {
            key,
            value,
            applies,
        } => Ok(axum::Json(ConfigChanged {
            key,
            value,
            applies,
        })),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn perms(
    State(app): Shared,
    Path(team): Path<String>,
    Query(f): Query<PermFilter>,
) -> Result<axum::Json<PermList>, ApiError> {
    let team = checked("team", &team)?;
    blocking(&app, move |t| {
        let permissions = all_pages(
            |after| t.read(&team, Request::PermList { all: f.all, after }),
            |r| match r {
                Reply::Perms { requests } => Ok(requests),
                r => Err(unexpected(r)),
            },
            |r| r.id,
        )?;
        Ok(axum::Json(PermList { permissions }))
    })
    .await
}

pub(crate) async fn decide(
    State(app): Shared,
    Path((team, id)): Path<(String, u64)>,
    Body(d): Body<Decision>,
) -> Result<axum::Json<PermRequest>, ApiError> {
    let team = checked("team", &team)?;
    let req = Request::PermDecide {
        id,
        allow: d.decision != DecisionKind::Deny,
        always: d.decision == DecisionKind::Always,
        pattern: d.pattern,
        reason: d.reason,
    };
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::Perm { request } => Ok(axum::Json(request)),
        Reply::Done => match t.read(
            &team,
            Request::PermList {
                all: true,
                after: Some(id - 1),
            },
        )? {
            Reply::Perms { requests } => requests
                .into_iter()
                .find(|r| r.id == id)
                .map(axum::Json)
                .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no request {id}"))),
            r => Err(unexpected(r)),
        },
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn inbox(
    State(app): Shared,
    Path((team, name)): Path<(String, String)>,
    Query(f): Query<InboxFilter>,
) -> Result<axum::Json<MessageList>, ApiError> {
    let team = checked("team", &team)?;
    let name = checked("agent", &name)?;
    blocking(&app, move |t| {
        let messages = all_pages(
            |after| {
                let req = Request::Inbox {
                    agent: Some(name.clone()),
                    unread_only: f.unread,
                    after,
                };
                t.read(&team, req)
            },
            |r| match r {
                Reply::Messages { messages, .. } => Ok(messages),
                r => Err(unexpected(r)),
            },
            |m| m.id,
        )?;
        Ok(axum::Json(MessageList { messages }))
    })
    .await
}

pub(crate) async fn send(
    State(app): Shared,
    Path(team): Path<String>,
    Body(m): Body<NewMessage>,
) -> Result<axum::Json<Sent>, ApiError> {
    let team = checked("team", &team)?;
    let req = Request::Send {
        to: m.to,
        body: m.text,
        kind: MessageKind::Text,
        summary: m.summary,
        dedup: None,
    };
    req.check_sizes()?;
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::Sent { ids, recipients } => Ok(axum::Json(Sent { ids, recipients })),
        r => Err(unexpected(r)),
    })
    .await
}

async fn agent_op(app: Arc<App>, team: String, req: Request) -> Result<Response, ApiError> {
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::Agent { agent } => Ok(axum::Json(agent).into_response()),
        Reply::Done => Ok(axum::Json(Ok { ok: true }).into_response()),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn restart(
    State(app): Shared,
    Path((team, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let team = checked("team", &team)?;
    let name = checked("agent", &name)?;
    agent_op(app, team, Request::Restart { name }).await
}

pub(crate) async fn decide_plan(
    State(app): Shared,
    Path((team, agent)): Path<(String, String)>,
    Body(d): Body<PlanDecision>,
) -> Result<axum::Json<AgentInfo>, ApiError> {
    let team = checked("team", &team)?;
    let agent = checked("agent", &agent)?;
    let req = Request::PlanDecide {
        agent,
        approve: d.approve,
        feedback: d.feedback,
    };
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::Agent { agent } => Ok(axum::Json(agent)),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn work_diff(
    State(app): Shared,
    Path((team, name)): Path<(String, String)>,
    Query(f): Query<DiffFilter>,
) -> Result<axum::Json<WorkDiff>, ApiError> {
    let team = checked("team", &team)?;
    let agent = checked("agent", &name)?;
    let req = Request::WorkDiff {
        agent,
        patch: f.patch,
    };
    blocking(&app, move |t| match t.read(&team, req)? {
        Reply::WorkDiff { diff } => Ok(axum::Json(diff)),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn finish(
    State(app): Shared,
    Path((team, name)): Path<(String, String)>,
    Body(b): Body<Finish>,
) -> Result<axum::Json<FinishOutcome>, ApiError> {
    let team = checked("team", &team)?;
    let agent = checked("agent", &name)?;
    let req = Request::WorkFinish {
        agent,
        action: b.action,
        into: b.into,
        keep: b.keep,
        accept_control_changes: false,
    };
    blocking(&app, move |t| match t.call(&team, req)? {
        Reply::WorkFinished { outcome } => Ok(axum::Json(outcome)),
        r => Err(unexpected(r)),
    })
    .await
}

pub(crate) async fn kill(
    State(app): Shared,
    Path((team, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let team = checked("team", &team)?;
    let name = checked("agent", &name)?;
    agent_op(app, team, Request::Kill { name, reason: None }).await
}

pub(crate) async fn up(
    State(app): Shared,
    Path(team): Path<String>,
    OptBody(Up { goal, variables }): OptBody<Up>,
) -> Result<axum::Json<Started>, ApiError> {
    let team = checked("team", &team)?;
    let mut vars = app.settings.variables.clone();
    vars.extend(variables);
    blocking(&app, move |t| {
        let since = t.up(&team, goal, &vars, &BTreeMap::new())?;
        Ok(axum::Json(Started { team, since }))
    })
    .await
}

pub(crate) async fn down(
    State(app): Shared,
    Path(team): Path<String>,
) -> Result<axum::Json<Stopped>, ApiError> {
    let team = checked("team", &team)?;
    blocking(&app, move |t| {
        let was_running = t.down(&team)?;
        Ok(axum::Json(Stopped { team, was_running }))
    })
    .await
}
