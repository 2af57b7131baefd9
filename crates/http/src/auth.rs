//! The bearer token: where it comes from, and the check every request but the board's page
//! passes before anything else happens.

use crate::App;
use agent_team_protocol::ErrorCode;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// The environment variable that sets the token.
pub const TOKEN_ENV: &str = "AGENT_TEAM_API_TOKEN";

/// The bearer token (never printed by `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Where the token came from, for the start-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `AGENT_TEAM_API_TOKEN`.
    Env,
    /// The token file, written by an earlier `serve`.
    File,
    /// Generated now into the token file.
    Generated,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The environment variable is set but too short to be a secret.
    #[error("{TOKEN_ENV} must be at least 16 characters")]
    TooShort,
    /// The token file could not be read or written.
    #[error("cannot use the token file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Token {
    /// A token from a known string (tests, the environment).
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `AGENT_TEAM_API_TOKEN` if set, else the token in `file`, else a new random one written
    /// to `file` with mode 0600.
    pub fn load_or_create(file: &Path) -> Result<(Token, TokenSource), TokenError> {
        if let Ok(t) = std::env::var(TOKEN_ENV)
            && !t.is_empty()
        {
            if t.len() < 16 {
                return Err(TokenError::TooShort);
            }
            return Ok((Token(t), TokenSource::Env));
        }
        let err = |source| TokenError::File {
            path: file.display().to_string(),
            source,
        };
        match std::fs::read_to_string(file) {
            Ok(t) if t.trim().len() >= 16 => {
                return Ok((Token(t.trim().into()), TokenSource::File));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = file.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(token.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, file).map_err(err)?;
        Ok((Token(token), TokenSource::Generated))
    }

    /// Whether `given` is this token, in time that does not depend on where they differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// Lets a request through only with `Authorization: Bearer TOKEN`; anything else gets 401
/// and nothing more.
pub(crate) async fn require_token(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if app.settings.token.matches(t.trim()) => {
            if let Some(conn) = req.extensions().get::<crate::conns::ConnAuth>() {
                conn.authorised();
            }
            next.run(req).await
        }
        _ => {
            let mut resp = crate::ApiError::new(
                ErrorCode::Unauthorized,
                "missing or wrong bearer token (send `Authorization: Bearer TOKEN`; `agent-team serve` printed where it is)",
            )
            .into_response();
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}
