//! The web board at `/`: one HTML page with its script and style inside, served from the
//! binary (no build step). The page holds no team data; it asks for the token once and reads
//! everything through the same `/v1` API and event stream as any client.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
const PAGE: &str = include_str!("../assets/board.html");

/// `GET /`
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
}
