//! Webhook triggers (issue 69): `POST /v1/teams/{team}/hooks/{name}` starts a run of the
//! team from a signed JSON delivery (GitHub's scheme). The route is authenticated by the
//! signature, not the bearer token: the sender (GitHub) knows the hook's secret, not the API
//! token. In order: the hook must exist (404), the body fit (413), `X-Hub-Signature-256` be
//! the HMAC-SHA256 of the raw body under the hook's secret (401, checked in constant time
//! before anything reads the body), the hook's rate allow it (429 with `Retry-After`), the
//! `X-GitHub-Delivery` id be new (409; remembered durably by [`Hooks`]), the body be JSON
//! (400); then the run starts and the answer is 202 `{"run": ID}` at once.

use crate::App;
use crate::error::ApiError;
use agent_team_protocol::{ErrorBody, ErrorCode};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The route (outside the bearer token's check).
pub const PATH: &str = "/v1/teams/{team}/hooks/{name}";
/// The header carrying the signature: `sha256=HEX`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The header carrying the delivery's unique id.
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// The header naming GitHub's event (`ping` is answered without a run).
pub const EVENT_HEADER: &str = "x-github-event";
/// The longest value a variable takes from a payload; longer ones are cut (at a character).
pub const MAX_VAR_BYTES: usize = 8 * 1024;

/// One webhook as the server needs it.
#[derive(Clone)]
pub struct HookDef {
    /// The secret the deliveries are signed with.
    pub secret: Vec<u8>,
    /// The run's goal template (none: the team file's).
    pub goal: Option<String>,
    /// Variable name to JSONPath into the payload.
    pub vars: BTreeMap<String, String>,
    /// Runs started a minute at most (and the burst allowed).
    pub per_minute: u32,
}

impl std::fmt::Debug for HookDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookDef")
            .field("secret", &"…")
            .field("goal", &self.goal)
            .field("vars", &self.vars)
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

/// What the webhook route needs from the machine: the hooks' definitions, a durable memory
/// of deliveries, and starting runs. Every method blocks; the server calls them off its async
/// threads.
pub trait Hooks: Send + Sync + 'static {
    /// The hook `name` of `team`, or `None` when there is none (404).
    fn hook(&self, team: &str, name: &str) -> Result<Option<HookDef>, ErrorBody>;
    /// Remembers `delivery` for this hook durably; `false` when it was remembered before.
    fn remember(&self, team: &str, name: &str, delivery: &str) -> Result<bool, ErrorBody>;
    /// Forgets `delivery` (its run could not start, so a redelivery may try again).
    fn forget(&self, team: &str, name: &str, delivery: &str);
    /// Starts a run of `team` for hook `name` with `goal` and `vars`, without waiting for
    /// it; returns the run's id.
    fn start(
        &self,
        team: &str,
        name: &str,
        goal: Option<String>,
        vars: BTreeMap<String, String>,
    ) -> Result<String, ErrorBody>;
}

/// The answer to a delivery that started a run.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct HookStarted {
    /// The run's id (`agent-team runs show ID`).
    pub run: String,
}

/// Whether `header` (`sha256=HEX`) is the HMAC-SHA256 of `body` under `secret`, compared in
/// constant time.
pub fn signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Some(given) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// `sha256=HEX` for `body` under `secret`: what a sender puts in `X-Hub-Signature-256`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The run's variables from `payload`: each JSONPath's first match, a string as it is and
/// anything else as JSON; no match is the empty string. Values are cut at [`MAX_VAR_BYTES`].
pub fn map_vars(
    payload: &serde_json::Value,
    paths: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, p) in paths {
        let path = serde_json_path::JsonPath::parse(p)
            .map_err(|e| format!("vars.{k}: {p:?} is not a JSONPath ({e})"))?;
        let v = match path.query(payload).first() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        out.insert(k.clone(), cut(v, MAX_VAR_BYTES));
    }
    Ok(out)
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// A token bucket per hook: `per_minute` tokens at most, refilled evenly over a minute.
#[derive(Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl Limiter {
    /// Takes a token for `key` at `now`; `Err(seconds)` to wait when there is none.
    pub(crate) fn take(
        &self,
        key: (String, String),
        per_minute: u32,
        now: Instant,
    ) -> Result<(), u64> {
        let cap = f64::from(per_minute.max(1));
        let rate = cap / 60.0;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget hooks idle long enough to be full again, so the map stays small.
        if b.len() > 1024 {
            b.retain(|_, (_, last)| now.saturating_duration_since(*last).as_secs() < 60);
        }
        let (tokens, last) = b.entry(key).or_insert((cap, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            // At least one second; a float of a few minutes at most.
            let wait = ((1.0 - *tokens) / rate).ceil().max(1.0);
            Err(if wait.is_finite() && wait < 3600.0 {
                wait as u64
            } else {
                3600
            })
        }
    }
}

fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    ApiError {
        status,
        body: ErrorBody::new(code, message),
    }
    .into_response()
}

/// `POST /v1/teams/{team}/hooks/{name}`
pub(crate) async fn deliver(
    State(app): State<Arc<App>>,
    crate::error::Path((team, name)): crate::error::Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(hooks) = app.hooks.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this server has no webhooks",
        );
    };
    let def = {
        let (h, t, n) = (hooks.clone(), team.clone(), name.clone());
        match tokio::task::spawn_blocking(move || h.hook(&t, &n)).await {
            Ok(Ok(Some(d))) => d,
            Ok(Ok(None)) => {
                return error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    format!(
                        "team {team:?} has no webhook {name:?} (see [[webhooks]] in its team file)"
                    ),
                );
            }
            Ok(Err(e)) => return ApiError::from(e).into_response(),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    e.to_string(),
                );
            }
        }
    };
    let bytes = match axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                body: ErrorBody::with_details(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the delivery is larger than {} bytes",
                        crate::MAX_BODY_BYTES
                    ),
                    serde_json::json!({"limit": "max_body_bytes"}),
                ),
            }
            .into_response();
        }
    };
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if !signature_ok(&def.secret, &bytes, header(SIGNATURE_HEADER)) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong X-Hub-Signature-256 (sha256=HMAC-SHA256 of the body under the hook's secret)",
        );
    }
    if header(EVENT_HEADER) == Some("ping") {
        return (StatusCode::OK, axum::Json(serde_json::json!({"ok": true}))).into_response();
    }
    if let Err(wait) =
        app.limiter
            .take((team.clone(), name.clone()), def.per_minute, Instant::now())
    {
        let mut resp = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: ErrorBody::with_details(
                ErrorCode::LimitExceeded,
                format!(
                    "webhook {name:?} takes {} deliveries a minute",
                    def.per_minute
                ),
                serde_json::json!({"limit": "per_minute", "retry_after": wait}),
            ),
        }
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    let Some(delivery) = header(DELIVERY_HEADER)
        .map(str::trim)
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "missing X-GitHub-Delivery (a unique id per delivery, at most 128 bytes)",
        );
    };
    let payload: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the delivery is not JSON: {e}"),
            );
        }
    };
    let vars = match map_vars(&payload, &def.vars) {
        Ok(v) => v,
        Err(m) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m),
    };
    let started = tokio::task::spawn_blocking(move || {
        if !hooks.remember(&team, &name, &delivery)? {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("delivery {delivery:?} was received before"),
            ));
        }
        match hooks.start(&team, &name, def.goal.clone(), vars) {
            Ok(id) => Ok(id),
            Err(e) => {
                hooks.forget(&team, &name, &delivery);
                Err(e)
            }
        }
    })
    .await;
    match started {
        Ok(Ok(run)) => (StatusCode::ACCEPTED, axum::Json(HookStarted { run })).into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{Follow, Settings, TeamSummary, Teams, Token};
    use agent_team_protocol::{Reply, Request};
    use axum::Router;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;

    struct NoTeams;
    impl Teams for NoTeams {
        fn list(&self) -> Result<Vec<TeamSummary>, ErrorBody> {
            Ok(vec![])
        }
        fn read(&self, _: &str, _: Request) -> Result<Reply, ErrorBody> {
            Err(ErrorBody::new(ErrorCode::NotFound, "no"))
        }
        fn call(&self, _: &str, _: Request) -> Result<Reply, ErrorBody> {
            Err(ErrorBody::new(ErrorCode::NotFound, "no"))
        }
        fn up(
            &self,
            _: &str,
            _: Option<String>,
            _: &BTreeMap<String, String>,
            _: &BTreeMap<String, String>,
        ) -> Result<u64, ErrorBody> {
            Err(ErrorBody::new(ErrorCode::NotFound, "no"))
        }
        fn down(&self, _: &str) -> Result<bool, ErrorBody> {
            Ok(false)
        }
        fn follow(&self, _: &str, _: u64) -> Result<Box<dyn Follow>, ErrorBody> {
            Err(ErrorBody::new(ErrorCode::NotFound, "no"))
        }
    }

    /// A run the fake started: team, goal, vars.
    type Started = (String, Option<String>, BTreeMap<String, String>);

    #[derive(Default)]
    struct FakeHooks {
        seen: Mutex<Vec<String>>,
        started: Mutex<Vec<Started>>,
    }
    impl Hooks for FakeHooks {
        fn hook(&self, team: &str, name: &str) -> Result<Option<HookDef>, ErrorBody> {
            Ok((team == "t" && name == "github").then(|| HookDef {
                secret: b"s3cret".to_vec(),
                goal: Some("Triage: {{issue}}".into()),
                vars: [
                    ("issue".to_string(), "$.issue.title".to_string()),
                    ("number".to_string(), "$.issue.number".to_string()),
                    ("none".to_string(), "$.nope".to_string()),
                ]
                .into(),
                per_minute: 3,
            }))
        }
        fn remember(&self, _: &str, _: &str, d: &str) -> Result<bool, ErrorBody> {
            let mut s = self.seen.lock().unwrap();
            if s.iter().any(|x| x == d) {
                return Ok(false);
            }
            s.push(d.into());
            Ok(true)
        }
        fn forget(&self, _: &str, _: &str, d: &str) {
            self.seen.lock().unwrap().retain(|x| x != d);
        }
        fn start(
            &self,
            team: &str,
            _: &str,
            goal: Option<String>,
            vars: BTreeMap<String, String>,
        ) -> Result<String, ErrorBody> {
            let mut s = self.started.lock().unwrap();
            s.push((team.into(), goal, vars));
            Ok(format!("run-{}", s.len()))
        }
    }

    fn app(hooks: Arc<FakeHooks>) -> Router {
        crate::router_with_hooks(
            Arc::new(NoTeams),
            Settings {
                token: Token::new("0123456789abcdef-token"),
                base_team: "t".into(),
                variables: BTreeMap::new(),
                poll: Duration::from_millis(20),
                max_streams: 2,
                session_idle: None,
                max_sessions: 2,
                allowed_hosts: vec!["localhost".into()],
            },
            Some(hooks),
        )
    }

    const PAYLOAD: &str = r#"{"action":"opened","issue":{"title":"Crash on start","number":42}}"#;

    async fn post(
        app: &Router,
        path: &str,
        body: &[u8],
        sig: Option<String>,
        delivery: Option<&str>,
    ) -> (StatusCode, HeaderMap, serde_json::Value) {
        let mut b = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(s) = sig {
            b = b.header(SIGNATURE_HEADER, s);
        }
        if let Some(d) = delivery {
            b = b.header(DELIVERY_HEADER, d);
        }
        let resp = app
            .clone()
            .oneshot(b.body(axum::body::Body::from(body.to_vec())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[test]
    fn a_signature_is_the_hmac_of_the_body_and_nothing_else() {
        let s = sign(b"key", b"body");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert!(signature_ok(b"key", b"body", Some(&s)));
        assert!(!signature_ok(b"key", b"body2", Some(&s)));
        assert!(!signature_ok(b"other", b"body", Some(&s)));
        assert!(!signature_ok(b"key", b"body", None));
        assert!(!signature_ok(
            b"key",
            b"body",
            Some(&s.replace("sha256=", "sha1="))
        ));
        assert!(!signature_ok(b"key", b"body", Some("sha256=zz")));
        assert!(!signature_ok(b"key", b"body", Some(&s[..s.len() - 2])));
    }

    #[test]
    fn vars_are_the_first_match_a_string_as_is_else_json_and_cut() {
        let payload: serde_json::Value = serde_json::from_str(PAYLOAD).unwrap();
        let paths: BTreeMap<String, String> = [
            ("t".to_string(), "$.issue.title".to_string()),
            ("n".to_string(), "$.issue.number".to_string()),
            ("o".to_string(), "$.issue".to_string()),
            ("x".to_string(), "$.missing".to_string()),
        ]
        .into();
        let v = map_vars(&payload, &paths).unwrap();
        assert_eq!(v["t"], "Crash on start");
        assert_eq!(v["n"], "42");
        assert!(v["o"].contains("\"number\":42"), "{}", v["o"]);
        assert_eq!(v["x"], "");
        let long = serde_json::json!({"a": "é".repeat(MAX_VAR_BYTES)});
        let v = map_vars(&long, &[("a".to_string(), "$.a".to_string())].into()).unwrap();
        assert!(v["a"].len() <= MAX_VAR_BYTES && v["a"].starts_with('é'));
    }

    #[test]
    fn the_bucket_refills_over_a_minute() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let k = || ("t".to_string(), "h".to_string());
        for _ in 0..2 {
            assert!(l.take(k(), 2, t0).is_ok());
        }
        assert_eq!(l.take(k(), 2, t0), Err(30));
        assert!(l.take(k(), 2, t0 + Duration::from_secs(30)).is_ok());
        assert!(l.take(k(), 2, t0 + Duration::from_secs(30)).is_err());
    }

    #[tokio::test]
    async fn a_signed_delivery_starts_a_run_with_its_vars_once_and_the_rest_is_refused() {
        let hooks = Arc::new(FakeHooks::default());
        let app = app(hooks.clone());
        let path = "/v1/teams/t/hooks/github";
        let sig = sign(b"s3cret", PAYLOAD.as_bytes());
        // Missing and wrong signatures: 401, no bearer token needed or looked at.
        for bad in [
            None,
            Some(sign(b"wrong", PAYLOAD.as_bytes())),
            Some("sha256=00".into()),
        ] {
            let (st, _, body) = post(&app, path, PAYLOAD.as_bytes(), bad, Some("d0")).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        // Unknown hook or team: 404.
        let (st, _, _) = post(
            &app,
            "/v1/teams/t/hooks/nope",
            PAYLOAD.as_bytes(),
            Some(sig.clone()),
            Some("d1"),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        // Signed: 202 with the run's id, the vars mapped.
        let (st, _, body) = post(
            &app,
            path,
            PAYLOAD.as_bytes(),
            Some(sig.clone()),
            Some("d1"),
        )
        .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["run"], "run-1");
        {
            let started = hooks.started.lock().unwrap();
            let (team, goal, vars) = &started[0];
            assert_eq!(team, "t");
            assert_eq!(goal.as_deref(), Some("Triage: {{issue}}"));
            assert_eq!(vars["issue"], "Crash on start");
            assert_eq!(vars["number"], "42");
            assert_eq!(vars["none"], "");
        }
        // The same delivery again: 409, no second run.
        let (st, _, body) = post(
            &app,
            path,
            PAYLOAD.as_bytes(),
            Some(sig.clone()),
            Some("d1"),
        )
        .await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        // A flood: the bucket (3 a minute: d1, its replay, d2) is empty: 429 with Retry-After.
        let (st, _, _) = post(
            &app,
            path,
            PAYLOAD.as_bytes(),
            Some(sig.clone()),
            Some("d2"),
        )
        .await;
        assert_eq!(st, StatusCode::ACCEPTED);
        let mut refused = 0;
        for i in 0..20 {
            let (st, h, body) = post(
                &app,
                path,
                PAYLOAD.as_bytes(),
                Some(sig.clone()),
                Some(&format!("f{i}")),
            )
            .await;
            if st == StatusCode::TOO_MANY_REQUESTS {
                refused += 1;
                assert!(h.get("retry-after").is_some());
                assert_eq!(body["error"]["code"], "limit_exceeded");
            }
        }
        assert_eq!(refused, 20);
        assert_eq!(hooks.started.lock().unwrap().len(), 2);
        // Not JSON, but signed: 400 (with a fresh limiter).
        let app2 = self::app(Arc::new(FakeHooks::default()));
        let (st, _, _) = post(
            &app2,
            path,
            b"not json",
            Some(sign(b"s3cret", b"not json")),
            Some("x"),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        // Too large: 413.
        let big = vec![b' '; crate::MAX_BODY_BYTES + 1];
        let (st, _, _) = post(&app2, path, &big, Some(sign(b"s3cret", &big)), Some("y")).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
