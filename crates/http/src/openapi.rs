//! The OpenAPI 3.1 document at `/v1/openapi.json`, built from the route table below and the
//! JSON Schemas of the very types the handlers read and write (the protocol's wire types and
//! this crate's bodies), so it cannot drift from them. A test checks that every route of the
//! table is served and every served route is in the table.

use crate::App;
use crate::rest::*;
use crate::sse::{StreamItem, StreamRequest};
use agent_team_protocol::{
    AgentInfo, Envelope, ErrorBody, FinishOutcome, PermRequest, Task, TeamInfo, WorkDiff,
};
use axum::routing::{MethodRouter, get, post};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};
use std::sync::Arc;

/// A schema of one type, added to the document's components.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What a route answers on success.
#[derive(Clone, Copy)]
pub enum Answer {
    /// A JSON body with this status.
    Json(u16, SchemaFn),
    /// A `text/event-stream` whose `data:` lines are this type.
    Stream(SchemaFn),
    /// The web board's HTML.
    Html,
}

/// One route of the API.
#[derive(Clone, Copy)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path with `{param}` placeholders.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Query parameters: (name, type, description).
    pub query: &'static [(&'static str, &'static str, &'static str)],
    /// The JSON body it takes, if any, and whether it may be left out.
    pub body: Option<(SchemaFn, bool)>,
    /// What it answers.
    pub answer: Answer,
    /// The handler: the router is built from this table, so the document lists exactly the
    /// routes served.
    pub(crate) handler: fn() -> MethodRouter<Arc<App>>,
}

const TEAM_QUERY: &[(&str, &str, &str)] = &[];

/// Every route, in the order the document lists them.
pub fn routes() -> Vec<Route> {
    let r = |method, path, summary, body, answer, handler| Route {
        method,
        path,
        summary,
        query: TEAM_QUERY,
        body,
        answer,
        handler,
    };
    vec![
        r(
            "GET",
            "/",
            "The web board (no token needed for the page; it asks for one).",
            None,
            Answer::Html,
            || get(crate::board::page),
        ),
        r(
            "GET",
            "/v1/openapi.json",
            "This document.",
            None,
            Answer::Json(200, |_| Schema::default()),
            || get(openapi),
        ),
        r(
            "GET",
            "/v1/teams",
            "The teams on this machine.",
            None,
            Answer::Json(200, schema::<TeamList>),
            || get(list_teams),
        ),
        r(
            "GET",
            "/v1/teams/{team}",
            "A summary of one team and its run.",
            None,
            Answer::Json(200, schema::<TeamInfo>),
            || get(team_info),
        ),
        r(
            "GET",
            "/v1/teams/{team}/agents",
            "The roster with each agent's status, task and backend.",
            None,
            Answer::Json(200, schema::<AgentList>),
            || get(agents),
        ),
        r(
            "GET",
            "/v1/teams/{team}/agents/{name}/messages",
            "An agent's inbox with delivery states.",
            None,
            Answer::Json(200, schema::<MessageList>),
            || get(inbox),
        ),
        r(
            "POST",
            "/v1/teams/{team}/agents/{name}/restart",
            "Restart one agent in place (same pane, identity, inbox, task).",
            None,
            Answer::Json(200, schema::<AgentInfo>),
            || post(restart),
        ),
        r(
            "POST",
            "/v1/teams/{team}/agents/{name}/kill",
            "Stop one agent; it is not restarted and its task is released.",
            None,
            Answer::Json(200, schema::<AgentInfo>),
            || post(kill),
        ),
        Route {
            query: &[(
                "patch",
                "boolean",
                "with the patch itself, not only the files and line counts (cut at 1 MiB)",
            )],
            ..r(
                "GET",
                "/v1/teams/{team}/agents/{name}/diff",
                "A worktree teammate's changes against the commit it started from, committed and not (404 when it has no worktree branch).",
                None,
                Answer::Json(200, schema::<WorkDiff>),
                || get(work_diff),
            )
        },
        r(
            "POST",
            "/v1/teams/{team}/agents/{name}/finish",
            "Land a worktree teammate's work: merge, pr or discard (409 conflict when the merge conflicts: nothing moved; 409 invalid_state while it works).",
            Some((schema::<Finish>, false)),
            Answer::Json(200, schema::<FinishOutcome>),
            || post(finish),
        ),
        Route {
            query: &[(
                "status",
                "string",
                "only tasks in this status (pending, in_progress, completed, failed, cancelled)",
            )],
            ..r(
                "GET",
                "/v1/teams/{team}/tasks",
                "The task board.",
                None,
                Answer::Json(200, schema::<TaskList>),
                || get(tasks),
            )
        },
        r(
            "POST",
            "/v1/teams/{team}/config",
            "Change a setting while the team runs, or reset it (Nyzhi's /teams-config): 400 bad_request for an unknown setting or value.",
            Some((schema::<SetConfig>, false)),
            Answer::Json(200, schema::<ConfigChanged>),
            || post(set_config),
        ),
        r(
            "POST",
            "/v1/teams/{team}/tasks",
            "Add a task as the operator.",
            Some((schema::<NewTask>, false)),
            Answer::Json(201, schema::<Task>),
            || post(add_task),
        ),
        r(
            "GET",
            "/v1/teams/{team}/tasks/{id}",
            "One task.",
            None,
            Answer::Json(200, schema::<Task>),
            || get(task),
        ),
        Route {
            query: &[("all", "boolean", "include decided requests")],
            ..r(
                "GET",
                "/v1/teams/{team}/permissions",
                "Permission requests (pending ones unless all=true).",
                None,
                Answer::Json(200, schema::<PermList>),
                || get(perms),
            )
        },
        r(
            "POST",
            "/v1/teams/{team}/permissions/{id}",
            "Decide a pending permission request: allow, always (a team rule) or deny.",
            Some((schema::<Decision>, false)),
            Answer::Json(200, schema::<PermRequest>),
            || post(decide),
        ),
        r(
            "POST",
            "/v1/teams/{team}/plans/{agent}",
            "Approve or reject a plan-required teammate's submitted plan (the plans are in the agents list).",
            Some((schema::<PlanDecision>, false)),
            Answer::Json(200, schema::<AgentInfo>),
            || post(decide_plan),
        ),
        r(
            "POST",
            "/v1/teams/{team}/messages",
            "Send a message as the operator (`*` for everyone).",
            Some((schema::<NewMessage>, false)),
            Answer::Json(200, schema::<Sent>),
            || post(send),
        ),
        Route {
            query: &[(
                "since",
                "integer",
                "start after this sequence number (Last-Event-ID wins)",
            )],
            ..r(
                "GET",
                "/v1/teams/{team}/events",
                "The event log as SSE: `id: SEQ`, `data: ENVELOPE`; reconnect with Last-Event-ID.",
                None,
                Answer::Stream(schema::<Envelope>),
                || get(crate::sse::events),
            )
        },
        r(
            "POST",
            "/v1/teams/{team}/up",
            "Start a run of the team from the served team file (or its stored configuration).",
            Some((schema::<Up>, true)),
            Answer::Json(200, schema::<Started>),
            || post(up),
        ),
        r(
            "POST",
            "/v1/teams/{team}/down",
            "Stop the team's agents and daemon; its state is kept.",
            None,
            Answer::Json(200, schema::<Stopped>),
            || post(down),
        ),
        r(
            "POST",
            crate::hooks::PATH,
            "A webhook delivery (issue 69): authenticated by X-Hub-Signature-256 (HMAC-SHA256 of the body under the hook's secret), not the token; X-GitHub-Delivery is remembered (a replay is 409); rate-limited per hook (429 with Retry-After); 202 with the id of the run it started.",
            Some((|_| Schema::default(), false)),
            Answer::Json(202, schema::<crate::hooks::HookStarted>),
            || post(crate::hooks::deliver),
        ),
        r(
            "POST",
            "/team/stream",
            "NexAU's team stream: one team per (user_id, session_id); SSE of team_event lines, then complete.",
            Some((schema::<StreamRequest>, false)),
            Answer::Stream(schema::<StreamItem>),
            || post(crate::sse::team_stream),
        ),
    ]
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let ty = if name == "id" { "integer" } else { "string" };
            json!({"name": name, "in": "path", "required": true, "schema": {"type": ty}})
        })
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let error = g.subschema_for::<ApiErrorBody>();
    let mut paths = serde_json::Map::new();
    for route in routes() {
        let mut params = path_params(route.path);
        for (name, ty, desc) in route.query {
            params.push(json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": ty}}));
        }
        let mut op = json!({
            "summary": route.summary,
            "parameters": params,
            "responses": {},
        });
        if route.path == crate::hooks::PATH {
            op["security"] = json!([]);
            op["responses"]["401"] = json!({"description": "missing or wrong X-Hub-Signature-256", "content": {"application/json": {"schema": error}}});
            op["responses"]["default"] = json!({"description": "an error with the protocol's code (404 no such hook, 409 a replayed delivery, 413 too large, 429 over the hook's rate)", "content": {"application/json": {"schema": error}}});
        } else if route.path != "/" {
            op["security"] = json!([{"bearer": []}]);
            op["responses"]["401"] = json!({"description": "missing or wrong token", "content": {"application/json": {"schema": error}}});
            op["responses"]["default"] = json!({"description": "an error with the protocol's code", "content": {"application/json": {"schema": error}}});
        }
        if let Some((body, optional)) = route.body {
            op["requestBody"] = json!({"required": !optional, "content": {"application/json": {"schema": body(&mut g)}}});
        }
        let (status, resp) = match route.answer {
            Answer::Json(status, s) => (
                status,
                json!({"description": "success", "content": {"application/json": {"schema": s(&mut g)}}}),
            ),
            Answer::Stream(s) => (
                200,
                json!({"description": "a stream of server-sent events; each data line is this JSON", "content": {"text/event-stream": {"itemSchema": s(&mut g)}}}),
            ),
            Answer::Html => (
                200,
                json!({"description": "the board page", "content": {"text/html": {}}}),
            ),
        };
        op["responses"][status.to_string()] = resp;
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "agent-team",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A team of AI agents as a service: REST for what the CLI does, the event log as SSE, NexAU's POST /team/stream, and a web board at /.",
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

/// How every error looks: `{"error": {"code", "message", "details"?}}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ApiErrorBody {
    /// The error.
    error: ErrorBody,
}
