//! What the `serve` tests share: a running `agent-team serve` with the test token, its
//! server-sent events read line by line, and headless chromium driven over WebDriver.

use crate::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The API token every `serve` of the tests runs with.
pub const TOKEN: &str = "e2e-token-0123456789abcdef";

/// A running `agent-team serve` of this sandbox.
pub struct Server {
    /// `http://ADDR`, no trailing slash.
    pub base: String,
    /// A client without timeouts (streams stay open).
    pub http: reqwest::blocking::Client,
}

impl Server {
    /// Starts `serve -f agent-team.toml` on a free port with the test token.
    pub fn start(sb: &mut Sandbox) -> Server {
        Server::start_with(sb, &[])
    }

    /// [`Server::start`] with more arguments for `serve`.
    pub fn start_with(sb: &mut Sandbox, extra: &[&str]) -> Server {
        sb.env.push(("AGENT_TEAM_API_TOKEN".into(), TOKEN.into()));
        let mut args = vec!["-f", "agent-team.toml", "serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let pid = sb.spawn(&args);
        let log = sb.log_of(pid);
        let mut base = String::new();
        wait_for("serve to print its address", T, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.split_whitespace().find(|w| w.starts_with("http://")) {
                Some(url) => {
                    base = url.to_string();
                    true
                }
                None => false,
            }
        });
        Server {
            base,
            http: reqwest::blocking::Client::builder()
                .timeout(None)
                .build()
                .unwrap(),
        }
    }

    /// `GET path` with the token: the status and the JSON body (null when none).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// `POST path` with the token and a JSON body: the status and the JSON answer.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    /// `POST /team/stream`, optionally resuming; returns the team header and the open stream.
    pub fn stream(&self, body: Value, last_event_id: Option<u64>) -> (String, Sse) {
        let mut req = self
            .http
            .post(format!("{}/team/stream", self.base))
            .bearer_auth(TOKEN)
            .json(&body);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text());
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let team = resp.headers()["x-agent-team-team"]
            .to_str()
            .unwrap()
            .to_string();
        (team, Sse::new(resp))
    }
}

/// A server-sent event stream read line by line.
pub struct Sse {
    lines: std::io::Lines<BufReader<reqwest::blocking::Response>>,
}

impl Sse {
    /// Reads the SSE body of `resp`.
    pub fn new(resp: reqwest::blocking::Response) -> Sse {
        Sse {
            lines: BufReader::new(resp).lines(),
        }
    }

    /// The next event's id and data; `None` at the end of the stream.
    pub fn next_event(&mut self) -> Option<(Option<u64>, Value)> {
        let (mut id, mut data) = (None, String::new());
        loop {
            let line = self.lines.next()?.unwrap();
            if line.is_empty() {
                if !data.is_empty() {
                    return Some((id, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }

    /// Every event up to and including the first `complete` or `error`.
    pub fn until_done(&mut self) -> Vec<(Option<u64>, Value)> {
        let mut out = vec![];
        while let Some(ev) = self.next_event() {
            let done = matches!(ev.1["type"].as_str(), Some("complete" | "error"));
            out.push(ev);
            if done {
                return out;
            }
        }
        panic!("the stream ended without complete: {out:?}");
    }
}

/// A minimal WebDriver client for chromedriver (W3C protocol over HTTP+JSON).
pub struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless chromium session in a temp profile.
    pub fn start() -> Browser {
        let http = reqwest::blocking::Client::new();
        // The free port is found by binding and letting go of it: another process may take it
        // before chromedriver does, which then exits. A new port then, a few times.
        let mut started = None;
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let mut driver = std::process::Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("chromedriver is needed for the board test (apt-get install chromium-driver; .ci/run installs it)");
            let base = format!("http://127.0.0.1:{port}");
            let mut exited = false;
            wait_for("chromedriver to answer or exit", T, || {
                exited = matches!(driver.try_wait(), Ok(Some(_)));
                exited
                    || http
                        .get(format!("{base}/status"))
                        .send()
                        .ok()
                        .and_then(|r| r.json::<Value>().ok())
                        .is_some_and(|v| v["value"]["ready"] == json!(true))
            });
            if !exited {
                started = Some((driver, base));
                break;
            }
        }
        let (driver, base) = started.expect("chromedriver could not start on a free port");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {resp}"))
            .to_string();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            _profile: profile,
        }
    }

    /// One WebDriver command of the session: its `value`.
    pub fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            // WebDriver wants an object, also for commands without parameters.
            _ if body.is_null() => self.http.post(url).json(&json!({})),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().unwrap().json().unwrap();
        v["value"].clone()
    }

    /// Opens the board of `team` on `srv` and gives it the token.
    pub fn open_board(&self, srv: &Server, team: &str) {
        self.cmd(
            "POST",
            "/url",
            json!({"url": format!("{}/?team={team}", srv.base)}),
        );
        let input = self.find("#token").expect("the token form");
        self.cmd(
            "POST",
            &format!("/element/{input}/value"),
            json!({"text": TOKEN}),
        );
        let submit = self.find("#login-form button").unwrap();
        self.cmd("POST", &format!("/element/{submit}/click"), Value::Null);
    }

    /// Clicks the element `css` selects; again if the board redrew it between finding and
    /// clicking (a stale element).
    pub fn click(&self, css: &str) {
        wait_for(&format!("a click on {css}"), T, || {
            self.find(css).is_some_and(|id| {
                self.cmd("POST", &format!("/element/{id}/click"), Value::Null)
                    .is_null()
            })
        });
    }

    /// Answers the page's `prompt()` with `text` once it is shown.
    pub fn answer_prompt(&self, text: &str) {
        wait_for("the page's prompt", T, || {
            self.cmd("GET", "/alert/text", Value::Null).is_string()
        });
        self.cmd("POST", "/alert/text", json!({"text": text}));
        self.cmd("POST", "/alert/accept", Value::Null);
    }

    /// Accepts the page's `confirm()` once it is shown.
    pub fn accept_confirm(&self) {
        wait_for("the page's confirm", T, || {
            self.cmd("GET", "/alert/text", Value::Null).is_string()
        });
        self.cmd("POST", "/alert/accept", Value::Null);
    }

    /// The element `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()?
            .iter()
            .find(|(k, _)| k.starts_with("element-"))
            .and_then(|(_, id)| id.as_str().map(str::to_string))
    }

    /// The text of the element `css` selects (empty when none).
    pub fn text(&self, css: &str) -> String {
        match self.find(css) {
            Some(id) => self
                .cmd("GET", &format!("/element/{id}/text"), Value::Null)
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
