//! What every response passes through before anything else: the `Host` allow-list (a page on
//! another site that rebinds its DNS name to this machine reaches the server under its own
//! name, and is refused) and the headers that keep the board out of other sites' frames.

use crate::{ApiError, App, Listen};
use agent_team_protocol::{ErrorBody, ErrorCode};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Why an `--allow-host` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// Not a bare host name or address.
    #[error(
        "cannot allow host {0:?}: give a host name or address without scheme, port or path \
         (e.g. board.example.com, 192.168.1.5, [fe80::1])"
    )]
    Invalid(String),
}

/// The host names a request may carry in `Host`: the listen address, `localhost`,
/// `127.0.0.1` and `[::1]`, and `extra` (`serve --allow-host`), lower-cased, without port.
pub fn allowed_hosts(listen: &Listen, extra: &[String]) -> Result<Vec<String>, HostError> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    if let Listen::Tcp(addr) = listen {
        hosts.push(match addr {
            std::net::SocketAddr::V4(a) => a.ip().to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
        });
    }
    for h in extra {
        let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
        let bare = name.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
        let valid = !name.is_empty()
            && !name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
            && match bare {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => !name.contains(':') && !name.contains('[') && !name.contains(']'),
            };
        if !valid {
            return Err(HostError::Invalid(h.clone()));
        }
        hosts.push(name);
    }
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lower-cased,
/// without a trailing dot.
fn host_name(value: &str) -> String {
    let v = value.trim();
    let host = if v.starts_with('[') {
        match v.find(']') {
            Some(end) => &v[..=end],
            None => v,
        }
    } else {
        match v.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => v,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Lets a request through only when its `Host` (or the authority of an absolute URI) names
/// an allowed host: `400` without one, `403 permission_denied` for another name.
pub(crate) async fn check_host(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    let Some(given) = given else {
        return ApiError::bad_request("the request has no Host header").into_response();
    };
    let name = host_name(&given);
    if app.settings.allowed_hosts.contains(&name) {
        return next.run(req).await;
    }
    ApiError {
        status: StatusCode::FORBIDDEN,
        body: ErrorBody::with_details(
            ErrorCode::PermissionDenied,
            format!(
                "this server does not answer for host {name:?} (start `agent-team serve \
                 --allow-host {name}` to allow it)"
            ),
            serde_json::json!({"host": name}),
        ),
    }
    .into_response()
}

/// The content security policy of every answer but the board's page, which has its own
/// (with the same `frame-ancestors`).
const CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds to every response: no framing by any site (`X-Frame-Options: DENY`, and
/// `frame-ancestors 'none'` in a content security policy), and no content sniffing.
pub(crate) async fn headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_names_lose_their_port_case_and_trailing_dot() {
        assert_eq!(host_name("LocalHost:8000"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.com.:1"), "example.com");
    }

    #[test]
    fn the_allow_list_has_the_listen_address_the_loopback_names_and_the_extras() {
        let l = Listen::parse("127.0.0.2:9", false).unwrap();
        let hosts = allowed_hosts(&l, &["Board.Example.com".into(), "[fe80::1]".into()]).unwrap();
        for h in [
            "localhost",
            "127.0.0.1",
            "[::1]",
            "127.0.0.2",
            "board.example.com",
            "[fe80::1]",
        ] {
            assert!(hosts.contains(&h.to_string()), "{h} in {hosts:?}");
        }
        let v6 = Listen::parse("[::1]:9", false).unwrap();
        assert!(allowed_hosts(&v6, &[]).unwrap().contains(&"[::1]".into()));
        for bad in ["", "a.com:80", "http://a.com", "a b", "[zz]", "a/b"] {
            assert!(allowed_hosts(&l, &[bad.into()]).is_err(), "{bad:?}");
        }
    }
}
