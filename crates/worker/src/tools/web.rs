//! `web_fetch`: one HTTP(S) GET, its body read up to 1 MiB within 30 s, HTML reduced to text.
//! The permission check (asked by default) happens before, like every tool's, on the address
//! the model gave: so a redirect is followed only within the same origin (scheme, host, port),
//! and one to another site is answered with its address for a `web_fetch` of its own, which
//! the permission rules judge again.
//!
//! `web_search`, judged the same way on its query, is in [`search`].

mod search;

use super::{ToolCtx, ToolOutcome};
use agent_team_tools::WebFetch;
use std::time::Duration;

pub(super) use search::web_search;

/// The most body bytes read.
pub const BODY_CAP: usize = 1 << 20;
/// The most text the model gets back.
const TEXT_CAP: usize = 64 * 1024;
/// The whole request's deadline.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The most redirects followed within one origin.
const MAX_REDIRECTS: usize = 5;

pub(super) async fn web_fetch(_ctx: &ToolCtx, a: &WebFetch) -> Result<ToolOutcome, String> {
    fetch(&a.url).await
}

/// Whether two addresses share an origin (scheme, host and port).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The HTTP client of `web_fetch`: its timeout, redirects followed only within the first
/// address's origin, our user agent.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().cloned();
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if first.is_some_and(|f| same_origin(&f, attempt.url())) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .user_agent(concat!("agent-team/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))
}

/// The response's body, at most [`BODY_CAP`] bytes, and whether it was cut there.
async fn read_capped(
    resp: &mut reqwest::Response,
    url: &reqwest::Url,
) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?
    {
        let room = BODY_CAP - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Whether a body is HTML: by its content type, or with none by how it starts.
fn looks_html(ctype: &str, raw: &str) -> bool {
    ctype.contains("html")
        || (ctype.is_empty()
            && raw
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html"))
        || (ctype.is_empty() && raw.trim_start().to_ascii_lowercase().starts_with("<html"))
}

/// Fetches `url` (see the module docs).
async fn fetch(url: &str) -> Result<ToolOutcome, String> {
    let url = check_url(url)?;
    let mut resp = client()?
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let status = resp.status();
    if status.is_redirection()
        && let Some(to) = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
    {
        let to = resp
            .url()
            .join(to)
            .map_or(to.to_string(), |u| u.to_string());
        return Ok(ToolOutcome::ok(format!(
            "{} ({status}) redirects to another site: {to}\nNot followed: fetch it with a \
             web_fetch call of its own (the permission rules judge that address).",
            resp.url()
        )));
    }
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (body, cut) = read_capped(&mut resp, &url).await?;
    let raw = String::from_utf8_lossy(&body);
    let is_html = looks_html(&ctype, &raw);
    let textual = is_html
        || ctype.is_empty()
        || ctype.starts_with("text/")
        || ctype.contains("json")
        || ctype.contains("xml")
        || ctype.contains("javascript");
    if !textual {
        return Err(format!(
            "{url} answered {status} with {ctype} ({} bytes): not text",
            body.len()
        ));
    }
    let mut text = if is_html {
        html_to_text(&raw)
    } else {
        raw.into_owned()
    };
    let mut notes = Vec::new();
    if cut {
        notes.push(format!("the body was cut at {BODY_CAP} bytes"));
    }
    if text.len() > TEXT_CAP {
        let mut end = TEXT_CAP;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        notes.push(format!(
            "{} more characters of text not shown",
            text.len() - end
        ));
        text.truncate(end);
    }
    let head = format!(
        "{url} ({status}{})",
        if ctype.is_empty() {
            String::new()
        } else {
            format!(", {ctype}")
        }
    );
    let tail = if notes.is_empty() {
        String::new()
    } else {
        format!("\n[... {}]", notes.join("; "))
    };
    let out = format!("{head}\n\n{text}{tail}");
    Ok(if status.is_success() {
        ToolOutcome::ok(out)
    } else {
        ToolOutcome::err(out)
    })
}

/// The address, if it is http or https.
pub(super) fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url.trim()).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match u.scheme() {
        "http" | "https" => Ok(u),
        s => Err(format!(
            "web_fetch reads http:// and https:// addresses only, not {s}:"
        )),
    }
}

/// Elements whose content is not text for a reader.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "iframe", "object",
];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "main",
    "aside",
    "pre",
    "blockquote",
    "hr",
    "title",
    "dd",
    "dt",
    "dl",
    "form",
    "figure",
    "figcaption",
    "address",
    "details",
    "summary",
];

/// The readable text of an HTML page: tags removed, the content of scripts, styles and
/// comments dropped, block elements on lines of their own (list items as `- `), character
/// references decoded, runs of spaces made one and of blank lines at most one.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if !rest.starts_with('<') {
            let next = rest.find('<').map_or(html.len(), |n| i + n);
            out.push_str(&decode_entities(&html[i..next]));
            i = next;
            continue;
        }
        if rest.starts_with("<!--") {
            i = lower[i + 4..]
                .find("-->")
                .map_or(html.len(), |n| i + 4 + n + 3);
            continue;
        }
        // A `<` not followed by a name, `/`, `!` or `?` is text (`a < b`).
        if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || "/!?".contains(c)) {
            out.push('<');
            i += 1;
            continue;
        }
        // A tag: its name, whether it closes, and where it ends.
        let Some(end) = rest.find('>').map(|n| i + n + 1) else {
            break;
        };
        let inner = &lower[i + 1..end - 1];
        let closing = inner.starts_with('/');
        let name: String = inner
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if name.is_empty() {
            // `<!doctype>`, `<?xml>` or a lone `<`: not text.
            if inner.starts_with('!') || inner.starts_with('?') {
                i = end;
            } else {
                out.push('<');
                i += 1;
            }
            continue;
        }
        i = end;
        if !closing && SKIPPED.contains(&name.as_str()) && !inner.trim_end().ends_with('/') {
            let close = format!("</{name}");
            i = lower[i..]
                .find(&close)
                .and_then(|n| lower[i + n..].find('>').map(|m| i + n + m + 1))
                .unwrap_or(html.len());
            continue;
        }
        if name == "li" {
            if !closing {
                out.push_str("\n- ");
            }
        } else if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
        } else if matches!(name.as_str(), "td" | "th") && !closing {
            out.push(' ');
        }
    }
    tidy(&out)
}

/// Runs of whitespace in a line made one space; lines trimmed; at most one blank line in a row.
fn tidy(s: &str) -> String {
    let mut out = String::new();
    let mut blank = true;
    for line in s.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
            continue;
        }
        out.push_str(&line);
        out.push('\n');
        blank = false;
    }
    out.trim_end().to_string()
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`/`&#39;`, `&nbsp;` and numeric references; an
/// unknown one is left as written.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let ch = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let html = r#"<!DOCTYPE html>
<html><head><title>The  Page</title>
<style>body { color: red; }</style>
<script type="text/javascript">var secret = "<p>not text</p>";</script>
</head>
<body>
<!-- a comment <p>hidden</p> -->
<h1>Hello&nbsp;&amp; welcome</h1>
<p>First   paragraph with <b>bold</b> and <a href="x">a link</a>.</p>
<ul><li>one</li><li>two &lt;3&gt; &#65;&#x42;</li></ul>
<noscript>enable js</noscript>
<table><tr><td>a</td><td>b</td></tr></table>
</body></html>"#;
        let text = html_to_text(html);
        assert_eq!(
            text,
            "The Page\n\nHello & welcome\n\nFirst paragraph with bold and a link.\n\n- one\n- two <3> AB\n\na b"
        );
        for gone in [
            "color",
            "secret",
            "not text",
            "hidden",
            "enable js",
            "<",
            "href",
        ] {
            assert!(
                !text.contains(gone) || gone == "<" && text.contains("<3>"),
                "{gone:?} in {text:?}"
            );
        }
    }

    #[test]
    fn odd_markup_does_not_lose_text_or_loop() {
        assert_eq!(html_to_text("a < b and c"), "a < b and c");
        assert_eq!(html_to_text("x <script>never closed"), "x");
        assert_eq!(
            html_to_text("tom &amp jerry &bogus; &"),
            "tom &amp jerry &bogus; &"
        );
        assert_eq!(html_to_text("<p>unclosed <b"), "unclosed");
        assert_eq!(html_to_text(""), "");
    }

    /// A one-request-at-a-time HTTP server on 127.0.0.1 answering every request with
    /// `answer(path)`; returns its base address.
    fn serve(answer: impl Fn(&str) -> String + Send + 'static) -> String {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = (&s).write_all(answer(&path).as_bytes());
            }
        });
        base
    }

    fn redirect(to: &str) -> String {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    }

    fn page(text: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
    }

    #[tokio::test]
    async fn a_redirect_is_followed_within_its_origin_only() {
        let other = serve(|_| page("OTHER SITE SECRET"));
        let to_other = format!("{other}/x");
        let home = serve(move |path| match path {
            "/moved" => redirect("/here"),
            "/here" => page("same site text"),
            "/away" => redirect(&to_other),
            _ => page("?"),
        });
        let same = fetch(&format!("{home}/moved")).await.unwrap();
        assert!(!same.is_error, "{}", same.content);
        assert!(same.content.contains("same site text"), "{}", same.content);
        let away = fetch(&format!("{home}/away")).await.unwrap();
        assert!(
            !away.content.contains("OTHER SITE SECRET"),
            "{}",
            away.content
        );
        assert!(
            away.content.contains(&format!("{other}/x")) && away.content.contains("Not followed"),
            "{}",
            away.content
        );
    }

    #[test]
    fn only_http_and_https_are_fetched() {
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("https://example.com").is_ok());
        for bad in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "gopher://x",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
