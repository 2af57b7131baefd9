//! `web_search`: one query to the search service of the team file's `[search]` (SearXNG, Brave
//! or Tavily, each in its own wire format), its results as a numbered list the model reads.
//! The permission check (asked by default, like `web_fetch`) happens before, on the query.
//! The service's key is read from the worker's environment at each call and goes only into
//! the request's header: it is never in the answer, an error, the log or an event.

use super::super::{ToolCtx, ToolOutcome};
use super::{BODY_CAP, TIMEOUT, html_to_text};
use agent_team_config::{SearchProvider, SearchSettings};
use agent_team_tools::WebSearch;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::Value;

/// Results when the call names no `count`.
const DEFAULT_COUNT: u32 = 5;
/// The most results one call returns.
const MAX_COUNT: u32 = 20;
/// The most characters of a result's snippet.
const SNIPPET_CAP: usize = 300;
/// The most characters of a result's title.
const TITLE_CAP: usize = 200;
/// The most bytes of the whole answer.
const ANSWER_CAP: usize = 16 * 1024;
/// The most characters of a failed answer's body quoted in the error.
const ERROR_BODY_CAP: usize = 300;

/// What the tool answers in a team whose file has no `[search]`.
const NOT_CONFIGURED: &str = "web_search has no search service: the team file needs a [search] \
     section, for example\n[search]\nprovider = \"searxng\"    # or \"brave\" (key in \
     BRAVE_API_KEY) or \"tavily\" (key in TAVILY_API_KEY)\nurl = \"http://localhost:8888\"   # \
     your SearXNG; Brave and Tavily need none\nThe operator sets it (README, \"web_search\"); \
     meanwhile web_fetch reads an address you already know.";

pub(in crate::tools) async fn web_search(
    ctx: &ToolCtx,
    a: &WebSearch,
) -> Result<ToolOutcome, String> {
    run(ctx.search.as_ref(), a, |var| std::env::var(var).ok()).await
}

/// The call with the settings `search` and the environment `env`.
async fn run(
    search: Option<&SearchSettings>,
    a: &WebSearch,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ToolOutcome, String> {
    let s = search.ok_or(NOT_CONFIGURED)?;
    let query = a.query.trim();
    if query.is_empty() {
        return Err("web_search needs a query: what to search the web for".into());
    }
    let count = a.count.unwrap_or(DEFAULT_COUNT).clamp(1, MAX_COUNT);
    let key = match &s.api_key_env {
        None => None,
        Some(var) => Some(env(var).filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            format!(
                "web_search cannot ask {}: its key is read from the environment variable {var}, \
                 which this agent does not have (the operator sets it where the team is \
                 started, as for model keys)",
                s.provider.as_str()
            )
        })?),
    };
    let hits = search_once(s, key.as_deref(), query, count).await?;
    Ok(ToolOutcome::ok(answer(s.provider, query, &hits)))
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    title: String,
    url: String,
    snippet: String,
}

/// Sends the query and reads the results (at most `count`).
async fn search_once(
    s: &SearchSettings,
    key: Option<&str>,
    query: &str,
    count: u32,
) -> Result<Vec<Hit>, String> {
    let name = s.provider.as_str();
    // A redirect is not followed: the key would go along to wherever it points.
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("agent-team/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let req = request(&client, s, key, query, count)?;
    let mut resp = req
        .send()
        .await
        .map_err(|e| mask(&format!("cannot reach {name} at {}: {e}", s.url), key))?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| mask(&format!("cannot read {name}'s answer: {e}"), key))?
    {
        let room = BODY_CAP - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| format!(" (to {l}: set [search] url to the final address)"))
            .unwrap_or_default();
        let hint = match (s.provider, status.as_u16()) {
            (SearchProvider::Searxng, 403) => {
                " SearXNG answers JSON only when its settings.yml lists json in search.formats."
            }
            (SearchProvider::Brave | SearchProvider::Tavily, 401 | 403) => {
                " Check the key in the variable [search] api_key_env names."
            }
            (_, 429) => " The service's rate limit was reached: try again later.",
            _ => "",
        };
        let quoted = cut(&squeeze(&text), ERROR_BODY_CAP);
        return Err(mask(
            &format!("{name} answered {status}{location}: {quoted}{hint}"),
            key,
        ));
    }
    let mut hits = parse(s.provider, &text).map_err(|e| mask(&e, key))?;
    hits.truncate(count as usize);
    Ok(hits)
}

/// The request each service takes: SearXNG `GET {url}/search?q=…&format=json`; Brave
/// `GET {url}?q=…&count=N` with the key in `X-Subscription-Token`; Tavily `POST {url}` with
/// `{"query", "max_results"}` and the key as a bearer token.
fn request(
    client: &reqwest::Client,
    s: &SearchSettings,
    key: Option<&str>,
    query: &str,
    count: u32,
) -> Result<reqwest::RequestBuilder, String> {
    let mut url = reqwest::Url::parse(&s.url)
        .map_err(|e| format!("[search] url {:?} is not an address: {e}", s.url))?;
    let header = |value: String| {
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            format!(
                "the key in {} cannot be sent: it has characters an HTTP header cannot carry",
                s.api_key_env.as_deref().unwrap_or("the key variable")
            )
        })?;
        v.set_sensitive(true);
        Ok::<_, String>(v)
    };
    Ok(match s.provider {
        SearchProvider::Searxng => {
            let path = url.path().trim_end_matches('/').to_string();
            if !path.ends_with("/search") {
                url.set_path(&format!("{path}/search"));
            }
            url.query_pairs_mut()
                .append_pair("q", query)
                .append_pair("format", "json");
            client.get(url).header(ACCEPT, "application/json")
        }
        SearchProvider::Brave => {
            url.query_pairs_mut()
                .append_pair("q", query)
                .append_pair("count", &count.to_string());
            let r = client.get(url).header(ACCEPT, "application/json");
            match key {
                Some(k) => r.header("X-Subscription-Token", header(k.to_string())?),
                None => r,
            }
        }
        SearchProvider::Tavily => {
            let r = client
                .post(url)
                .header(ACCEPT, "application/json")
                .json(&serde_json::json!({"query": query, "max_results": count}));
            match key {
                Some(k) => r.header(AUTHORIZATION, header(format!("Bearer {k}"))?),
                None => r,
            }
        }
    })
}

/// The results of a service's JSON answer: SearXNG's and Tavily's `results[].{title, url,
/// content}`, Brave's `web.results[].{title, url, description}` (no `web`: no results). An
/// entry without an address is skipped; markup in titles and snippets is reduced to text.
fn parse(provider: SearchProvider, body: &str) -> Result<Vec<Hit>, String> {
    let name = provider.as_str();
    let v: Value = serde_json::from_str(body).map_err(|e| {
        format!(
            "{name} answered something that is not JSON ({e}): {}",
            cut(&squeeze(body), ERROR_BODY_CAP)
        )
    })?;
    let (list, snippet_key) = match provider {
        SearchProvider::Searxng | SearchProvider::Tavily => (v.get("results"), "content"),
        SearchProvider::Brave => match v.get("web") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(web) => (web.get("results"), "description"),
        },
    };
    let Some(list) = list.and_then(Value::as_array) else {
        return Err(format!(
            "{name} answered JSON without a results list: {}",
            cut(&squeeze(body), ERROR_BODY_CAP)
        ));
    };
    let text = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .map(|s| squeeze(&html_to_text(s)))
            .unwrap_or_default()
    };
    Ok(list
        .iter()
        .filter_map(|e| {
            let url = e.get("url").and_then(Value::as_str)?.trim().to_string();
            if url.is_empty() {
                return None;
            }
            let title = text(e, "title");
            Some(Hit {
                title: if title.is_empty() { url.clone() } else { title },
                url,
                snippet: text(e, snippet_key),
            })
        })
        .collect())
}

/// The model's answer: `N. title — url` and the snippet indented below, numbered from 1,
/// capped at [`ANSWER_CAP`] bytes with a note of what was left out.
fn answer(provider: SearchProvider, query: &str, hits: &[Hit]) -> String {
    let name = provider.as_str();
    if hits.is_empty() {
        return format!("No results from {name} for {query:?}.");
    }
    let n = hits.len();
    let mut out = format!(
        "{n} result{} from {name} for {query:?}:\n",
        if n == 1 { "" } else { "s" }
    );
    for (i, h) in hits.iter().enumerate() {
        let mut entry = format!("\n{}. {} — {}", i + 1, cut(&h.title, TITLE_CAP), h.url);
        if !h.snippet.is_empty() {
            entry.push_str(&format!("\n   {}", cut(&h.snippet, SNIPPET_CAP)));
        }
        if out.len() + entry.len() > ANSWER_CAP {
            out.push_str(&format!(
                "\n\n[... {} more results not shown]",
                hits.len() - i
            ));
            break;
        }
        out.push_str(&entry);
    }
    out
}

/// Runs of whitespace made one space, ends trimmed.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of `s`, with `…` where it was cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", s[..at].trim_end()),
        None => s.to_string(),
    }
}

/// `text` with the key, if any, replaced: a service that echoes it in an error must not put
/// it in front of the model (or, through the tool's result, in the event log).
fn mask(text: &str, key: Option<&str>) -> String {
    match key.map(str::trim).filter(|k| k.len() >= 4) {
        Some(k) => text.replace(k, "[key]"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::mpsc;

    /// One request as the server saw it.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        query: HashMap<String, String>,
        headers: HashMap<String, String>,
        body: String,
    }

    /// A server on 127.0.0.1 answering every request with `status` and `body`, reporting
    /// each request it read; returns its base address.
    fn serve(status: &'static str, body: String) -> (String, mpsc::Receiver<Seen>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let mut parts = first.split(' ');
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or("/").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let mut raw = vec![0; len];
                r.read_exact(&mut raw).unwrap();
                let u = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
                let _ = tx.send(Seen {
                    method,
                    path: u.path().to_string(),
                    query: u.query_pairs().into_owned().collect(),
                    headers,
                    body: String::from_utf8_lossy(&raw).into_owned(),
                });
                let _ = (&s).write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        (base, rx)
    }

    fn settings(provider: SearchProvider, url: String, key_env: Option<&str>) -> SearchSettings {
        SearchSettings {
            provider,
            url,
            api_key_env: key_env.map(str::to_string),
        }
    }

    fn call(query: &str, count: Option<u32>) -> WebSearch {
        WebSearch {
            query: query.into(),
            count,
        }
    }

    /// The environment with only `var` set to `value`.
    fn env_with(var: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |k| (k == var).then(|| value.to_string())
    }

    fn got(rx: &mpsc::Receiver<Seen>) -> Seen {
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap()
    }

    #[tokio::test]
    async fn searxng_gets_a_get_on_search_with_format_json_and_no_key() {
        let body = serde_json::json!({
            "query": "x",
            "results": [
                {"title": "Rust &amp; async", "url": "https://a.example/1", "content": "First   result\n text", "engine": "ddg"},
                {"title": "", "url": "https://b.example/2", "content": null},
                {"title": "no address", "content": "skipped"},
                {"title": "Third", "url": "https://c.example/3", "content": "third"},
            ]
        })
        .to_string();
        let (base, rx) = serve("200 OK", body);
        let s = settings(SearchProvider::Searxng, base, None);
        let out = run(Some(&s), &call(" rust async & traits ", Some(2)), |_| None)
            .await
            .unwrap();
        let seen = got(&rx);
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/search")
        );
        assert_eq!(seen.query["q"], "rust async & traits");
        assert_eq!(seen.query["format"], "json");
        assert!(!seen.headers.contains_key("authorization"), "{seen:?}");
        assert!(!seen.headers.contains_key("x-subscription-token"));
        assert!(!out.is_error, "{}", out.content);
        assert_eq!(
            out.content,
            "2 results from searxng for \"rust async & traits\":\n\n\
             1. Rust & async — https://a.example/1\n   First result text\n\
             2. https://b.example/2 — https://b.example/2"
        );
    }

    #[tokio::test]
    async fn brave_gets_the_query_count_and_key_header_and_its_markup_is_text() {
        let body = serde_json::json!({
            "type": "search",
            "web": {"type": "search", "results": [
                {"title": "The <strong>Rust</strong> Book", "url": "https://doc.rust-lang.org/book/", "description": "Learn <strong>Rust</strong> &amp; more", "age": "1 day"},
            ]}
        })
        .to_string();
        let (base, rx) = serve("200 OK", body);
        let s = settings(
            SearchProvider::Brave,
            format!("{base}/res/v1/web/search"),
            Some("BRAVE_API_KEY"),
        );
        let out = run(
            Some(&s),
            &call("rust book", Some(3)),
            env_with("BRAVE_API_KEY", "brv-secret-123"),
        )
        .await
        .unwrap();
        let seen = got(&rx);
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/res/v1/web/search")
        );
        assert_eq!(seen.query["q"], "rust book");
        assert_eq!(seen.query["count"], "3");
        assert_eq!(seen.headers["x-subscription-token"], "brv-secret-123");
        assert_eq!(seen.headers["accept"], "application/json");
        assert_eq!(
            out.content,
            "1 result from brave for \"rust book\":\n\n\
             1. The Rust Book — https://doc.rust-lang.org/book/\n   Learn Rust & more"
        );
        assert!(!out.content.contains("brv-secret"));
    }

    #[tokio::test]
    async fn tavily_gets_a_json_post_with_a_bearer_key() {
        let body = serde_json::json!({
            "query": "q", "answer": null, "images": [], "response_time": 1.1,
            "results": [{"title": "T", "url": "https://t.example/", "content": "c", "score": 0.9, "raw_content": null}]
        })
        .to_string();
        let (base, rx) = serve("200 OK", body);
        let s = settings(
            SearchProvider::Tavily,
            format!("{base}/search"),
            Some("TAVILY_API_KEY"),
        );
        let out = run(
            Some(&s),
            &call("who maintains tokio", None),
            env_with("TAVILY_API_KEY", "tvly-secret-456"),
        )
        .await
        .unwrap();
        let seen = got(&rx);
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("POST", "/search")
        );
        assert_eq!(seen.headers["authorization"], "Bearer tvly-secret-456");
        assert!(seen.headers["content-type"].starts_with("application/json"));
        let sent: Value = serde_json::from_str(&seen.body).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"query": "who maintains tokio", "max_results": 5})
        );
        assert!(out.content.contains("1. T — https://t.example/\n   c"));
    }

    #[test]
    fn each_parser_reads_its_own_shape() {
        let searx = r#"{"results":[{"title":"A","url":"https://a","content":"ca"}],"answers":[]}"#;
        let tavily = r#"{"results":[{"title":"A","url":"https://a","content":"ca","score":1}]}"#;
        let brave = r#"{"web":{"results":[{"title":"A","url":"https://a","description":"ca"}]}}"#;
        let want = vec![Hit {
            title: "A".into(),
            url: "https://a".into(),
            snippet: "ca".into(),
        }];
        assert_eq!(parse(SearchProvider::Searxng, searx).unwrap(), want);
        assert_eq!(parse(SearchProvider::Tavily, tavily).unwrap(), want);
        assert_eq!(parse(SearchProvider::Brave, brave).unwrap(), want);
        // Brave leaves `web` out when nothing was found.
        assert_eq!(
            parse(SearchProvider::Brave, r#"{"type":"search","query":{}}"#).unwrap(),
            vec![]
        );
        // One service's shape is not taken for another's.
        assert!(parse(SearchProvider::Searxng, brave).is_err());
        assert!(parse(SearchProvider::Tavily, "<html>nope</html>").is_err());
    }

    #[test]
    fn snippets_titles_and_the_whole_answer_are_capped() {
        let long = "word ".repeat(200);
        let hits: Vec<Hit> = (0..100)
            .map(|i| Hit {
                title: long.clone(),
                url: format!("https://x.example/{i}"),
                snippet: long.clone(),
            })
            .collect();
        let out = answer(SearchProvider::Brave, "q", &hits);
        assert!(out.len() <= ANSWER_CAP + 100, "{}", out.len());
        assert!(out.contains("more results not shown"), "{out}");
        let first = out.lines().nth(3).unwrap();
        assert!(
            first.starts_with("   word") && first.ends_with('…'),
            "{first}"
        );
        assert!(first.chars().count() <= SNIPPET_CAP + 4, "{first}");
        assert_eq!(
            answer(SearchProvider::Searxng, "zzz", &[]),
            "No results from searxng for \"zzz\"."
        );
    }

    #[tokio::test]
    async fn without_search_settings_or_a_key_the_model_is_told_how_to_get_them() {
        let e = run(None, &call("x", None), |_| None).await.unwrap_err();
        assert!(
            e.contains("[search]") && e.contains("provider = \"searxng\""),
            "{e}"
        );
        let s = settings(
            SearchProvider::Tavily,
            "http://127.0.0.1:9/search".into(),
            Some("TAVILY_API_KEY"),
        );
        let e = run(Some(&s), &call("x", None), |_| None).await.unwrap_err();
        assert!(e.contains("TAVILY_API_KEY"), "{e}");
        let e = run(Some(&s), &call("  ", None), |_| Some("k".into()))
            .await
            .unwrap_err();
        assert!(e.contains("needs a query"), "{e}");
    }

    #[tokio::test]
    async fn a_refusal_is_an_error_that_never_shows_the_key() {
        let (base, _rx) = serve(
            "401 Unauthorized",
            r#"{"detail":{"error":"Unauthorized: invalid key tvly-secret-789"}}"#.into(),
        );
        let s = settings(SearchProvider::Tavily, base, Some("TAVILY_API_KEY"));
        let e = run(
            Some(&s),
            &call("x", None),
            env_with("TAVILY_API_KEY", "tvly-secret-789"),
        )
        .await
        .unwrap_err();
        assert!(e.contains("401") && e.contains("api_key_env"), "{e}");
        assert!(!e.contains("tvly-secret-789") && e.contains("[key]"), "{e}");
        let (base, _rx) = serve("403 Forbidden", "Forbidden".into());
        let s = settings(SearchProvider::Searxng, base, None);
        let e = run(Some(&s), &call("x", None), |_| None).await.unwrap_err();
        assert!(e.contains("search.formats"), "{e}");
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_key_goes_nowhere_else() {
        let (other, other_rx) = serve("200 OK", r#"{"results":[]}"#.into());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = (&s).write_all(
                    format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {other}/search\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        let s = settings(SearchProvider::Tavily, base, Some("TAVILY_API_KEY"));
        let e = run(
            Some(&s),
            &call("x", None),
            env_with("TAVILY_API_KEY", "tvly-secret-000"),
        )
        .await
        .unwrap_err();
        assert!(e.contains("307"), "{e}");
        assert!(
            other_rx
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the redirect was followed"
        );
    }
}
