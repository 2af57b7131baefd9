//! Chat notifications (`[notify] slack_webhook`, `discord_webhook`, `webhook`): the events
//! `[notify]` tells about, posted to Slack (`text` and `blocks`), Discord (`content` and
//! `embeds`) and any HTTP endpoint (the event's envelope as it is).
//!
//! Nothing here runs on the core: the core queues a `ChatJob` (never waits; a full queue drops
//! the job and counts it), and one thread of its own formats each job and posts it to every
//! sink with a timeout, retrying with backoff (`agent-team-backoff`) on a 5xx, a 429 (after
//! its `Retry-After`) or a connection error, a bounded number of times.
//!
//! Agent-written text (a tool's input, a reason, a failure's detail, an answer, a name) is
//! never posted raw: control characters are made visible (`text::printable`), then Slack's
//! `<`, `>`, `&` and Discord's markdown are escaped and every `@` is followed by a zero-width
//! space, so an agent can neither ping a channel (`@here`, `<!channel>`, `@everyone`) nor
//! show a link under words of its choosing. Discord is also told to parse no mention at all.
//!
//! A webhook URL is a credential: it is resolved in this thread (the daemon's environment, the
//! team's secrets file, or the URL the team file gave, kept in memory), never logged (errors
//! are reported without it) and never stored.

use agent_team_backoff::Backoff;
use agent_team_config::{Notify, NotifyUrl, Secrets};
use agent_team_protocol::{Envelope, Event};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// Tries per sink and notification (the first and the retries).
const TRIES: u32 = 5;

/// The longest an agent-written text is shown (characters), before `…`.
const MAX_TEXT: usize = 500;

/// A kind of chat sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    /// A Slack incoming webhook.
    Slack,
    /// A Discord webhook.
    Discord,
    /// Any HTTP endpoint, given the envelope.
    Generic,
}

impl Sink {
    /// Its key in `[notify]`, which also names it in logs (never its URL).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Sink::Slack => "slack_webhook",
            Sink::Discord => "discord_webhook",
            Sink::Generic => "webhook",
        }
    }

    /// The sinks `notify` sets, with where each URL comes from.
    pub(crate) fn of(notify: &Notify) -> Vec<(Sink, NotifyUrl)> {
        [
            (Sink::Slack, &notify.slack_webhook),
            (Sink::Discord, &notify.discord_webhook),
            (Sink::Generic, &notify.webhook),
        ]
        .into_iter()
        .filter_map(|(s, u)| Some((s, u.clone()?)))
        .collect()
    }
}

/// How a permission request is approved from a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Approve {
    /// The web board's page of the team (`serve`).
    Link(String),
    /// The command line to run.
    Command(String),
}

/// How request `id` of `team` is approved: on the board at `board` (the base address of a
/// `serve`), or with the command line when no board is known.
pub(crate) fn approve_for(team: &str, id: u64, board: Option<&str>) -> Approve {
    match board.map(|b| b.trim().trim_end_matches('/')) {
        Some(base) if !base.is_empty() => Approve::Link(format!(
            "{base}/?team={}#permission-{id}",
            percent_encode(team)
        )),
        _ => Approve::Command(format!("agent-team --team {team} approve {id}")),
    }
}

/// `s` with every byte but the URL-unreserved ones percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` cut to `MAX_TEXT` characters, its control, bidi and zero-width characters made visible.
fn visible(s: &str) -> String {
    let cut = if s.chars().count() > MAX_TEXT {
        format!("{}…", s.chars().take(MAX_TEXT).collect::<String>())
    } else {
        s.to_string()
    };
    agent_team_protocol::text::printable(&cut)
}

/// Every `@` followed by a zero-width space: no mention (`@here`, `@channel`, `@everyone`)
/// can be formed.
fn no_mentions(s: &str) -> String {
    s.replace('@', "@\u{200B}")
}

/// Agent-written text as Slack mrkdwn shows it literally: visible, `&`, `<`, `>` escaped (no
/// `<url|text>` link, no `<!here>`), no mention.
pub(crate) fn slack_escape(s: &str) -> String {
    let v = visible(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    no_mentions(&v)
}

/// Agent-written text as Discord markdown shows it literally: visible, every markdown
/// character backslash-escaped (no `[text](url)` link, no `<@id>`), no mention.
pub(crate) fn discord_escape(s: &str) -> String {
    let mut out = String::new();
    for c in visible(s).chars() {
        if matches!(
            c,
            '\\' | '*'
                | '_'
                | '~'
                | '`'
                | '|'
                | '>'
                | '<'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '-'
                | ':'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    no_mentions(&out)
}

/// What a notification says, its agent-written parts escaped by `esc`.
struct Text {
    /// One line: what happened.
    title: String,
    /// The details.
    body: String,
    /// Discord's embed colour.
    color: u32,
}

fn text(env: &Envelope, esc: fn(&str) -> String) -> Text {
    let team = esc(&env.team_id);
    match &env.event {
        Event::PermissionRequested { request } => {
            let mut body = format!(
                "{} asks to run {}: {}",
                esc(&request.agent),
                esc(&request.tool),
                esc(&request.input)
            );
            if !request.reason.trim().is_empty() {
                body.push_str(&format!("\nWhy: {}", esc(&request.reason)));
            }
            Text {
                title: format!("Team {team}: permission request {}", request.id),
                body,
                color: 0xE0_A0_00,
            }
        }
        Event::AgentStatus { detail, .. } => Text {
            title: format!("Team {team}: {} failed", esc(&env.agent_id)),
            body: detail.as_deref().map(esc).unwrap_or_default(),
            color: 0xD0_30_30,
        },
        Event::BudgetWarning { budget } => Text {
            title: format!("Team {team}: budget warning"),
            body: format!(
                "The budget of {} is at {} %.",
                esc(&budget.scope()),
                budget.percent
            ),
            color: 0xE0_A0_00,
        },
        Event::RunFinished { answer, success } => Text {
            title: format!(
                "Team {team}: the run {}",
                if *success { "finished" } else { "failed" }
            ),
            body: esc(answer),
            color: if *success { 0x30_A0_50 } else { 0xD0_30_30 },
        },
        other => Text {
            title: format!("Team {team}: {}", other.type_name()),
            body: String::new(),
            color: 0x80_80_80,
        },
    }
}

/// The JSON body `sink` is posted for `env`; `approve` for a permission request.
pub(crate) fn payload(sink: Sink, env: &Envelope, approve: Option<&Approve>) -> Value {
    match sink {
        Sink::Generic => serde_json::to_value(env).unwrap_or(Value::Null),
        Sink::Slack => {
            let t = text(env, slack_escape);
            let mut blocks = vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", t.title)}}),
            ];
            if !t.body.is_empty() {
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": t.body}}));
            }
            let how = match approve {
                Some(Approve::Link(url)) => Some(format!("<{url}|Approve or deny on the board>")),
                Some(Approve::Command(line)) => Some(format!("Approve with `{line}`")),
                None => None,
            };
            if let Some(how) = &how {
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": how}}));
            }
            let fallback = [Some(t.title), Some(t.body), how]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            json!({"text": fallback, "blocks": blocks})
        }
        Sink::Discord => {
            let t = text(env, discord_escape);
            let mut embed = json!({"title": t.title, "description": t.body, "color": t.color});
            match approve {
                Some(Approve::Link(url)) => {
                    embed["url"] = json!(url);
                    embed["description"] =
                        json!(format!("{}\n[Approve or deny on the board]({url})", t.body));
                }
                Some(Approve::Command(line)) => {
                    embed["description"] = json!(format!("{}\nApprove with `{line}`", t.body));
                }
                None => {}
            }
            json!({
                "content": t.title,
                "embeds": [embed],
                "allowed_mentions": {"parse": []},
            })
        }
    }
}

/// What one try of a post came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Delivered (a 2xx).
    Done,
    /// Worth trying again (a 5xx, a 429, no connection, a timeout), after the server's delay
    /// if it gave one; why.
    Retry(Option<Duration>, String),
    /// Not worth trying again (another status); why.
    Fail(String),
}

/// How a chat sink is reached: a real HTTP client, or a fake in tests (which also stands in
/// for the clock: `sleep` is how a retry waits).
pub(crate) trait Transport {
    /// One POST of `body` (JSON) to `url`, bounded by `timeout`.
    fn post(
        &self,
        url: &str,
        body: &[u8],
        timeout: Duration,
    ) -> impl std::future::Future<Output = Attempt>;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> impl std::future::Future<Output = ()>;
}

/// The backoff of a sink's retries: from half a second, doubling, at most 30 s apart, with
/// jitter, `TRIES` tries in all.
pub(crate) fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
        .jitter(0.2)
        .max_retries(TRIES - 1)
}

/// Posts `body` to `url` until it is delivered, fails for good or `backoff` gives no more
/// delay; the number of tries, or why it was not delivered.
pub(crate) async fn deliver(
    t: &impl Transport,
    url: &str,
    body: &[u8],
    timeout: Duration,
    mut backoff: Backoff,
) -> Result<u32, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        let (server, why) = match t.post(url, body, timeout).await {
            Attempt::Done => return Ok(tries),
            Attempt::Fail(why) => return Err(format!("{why} (try {tries})")),
            Attempt::Retry(server, why) => (server, why),
        };
        match backoff.next_after(std::time::Instant::now(), server) {
            Some(d) => t.sleep(d).await,
            None => return Err(format!("{why} (gave up after {tries} tries)")),
        }
    }
}

/// The real transport: reqwest with rustls, no redirects followed.
#[derive(Clone)]
struct Http(reqwest::Client);

impl Transport for Http {
    async fn post(&self, url: &str, body: &[u8], timeout: Duration) -> Attempt {
        let sent = self
            .0
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "agent-team")
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Done,
            Ok(r) => {
                let status = r.status();
                let after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(3600.0)));
                let why = format!("the sink answered {status}");
                if status.is_server_error() || status.as_u16() == 429 {
                    Attempt::Retry(after, why)
                } else {
                    Attempt::Fail(why)
                }
            }
            // Never the URL in a message: it is the credential.
            Err(e) => Attempt::Retry(None, e.without_url().to_string()),
        }
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// One notification for the chat sinks.
pub(crate) struct ChatJob {
    /// The event.
    pub env: Envelope,
    /// The sinks and where their URLs come from.
    pub sinks: Vec<(Sink, NotifyUrl)>,
    /// The URLs the team file gave itself, by key (the stored configuration hides them).
    pub literals: BTreeMap<&'static str, String>,
    /// The team's secrets file (for `{ secret = "KEY" }`).
    pub secrets_file: PathBuf,
    /// `[notify] board_url`.
    pub board: Option<String>,
    /// Where a running `serve` writes its address.
    pub serve_file: Option<PathBuf>,
    /// Each post's timeout.
    pub timeout: Duration,
}

/// The queue to the chat thread, started at the first job.
pub(crate) struct Chat(crate::notify::JobThread<ChatJob>);

impl Default for Chat {
    fn default() -> Self {
        Chat(crate::notify::JobThread::new("notify-chat", serve))
    }
}

impl Chat {
    /// Queues a job without waiting; a full queue drops it and counts it.
    pub(crate) fn send(&mut self, job: ChatJob) {
        if self.0.send(job).is_err() {
            tracing::warn!(
                dropped = self.0.dropped,
                "chat notifications are backed up; one dropped"
            );
        }
    }

    /// Lets the thread post what is queued, for at most `limit`.
    pub(crate) fn finish(&mut self, limit: Duration) {
        self.0.finish(limit);
    }
}

/// The chat thread: posts each job to its sinks (at once, each with its retries) until the
/// core goes away.
fn serve(rx: Receiver<Box<ChatJob>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!("cannot start the chat notification runtime: {e}");
            return;
        }
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => Http(c),
        Err(e) => {
            tracing::warn!("cannot make the chat notification client: {e}");
            return;
        }
    };
    while let Ok(job) = rx.recv() {
        rt.block_on(post_job(&client, *job));
    }
}

/// Posts one job to each of its sinks, concurrently.
async fn post_job(client: &Http, job: ChatJob) {
    let approve = match &job.env.event {
        Event::PermissionRequested { request } => {
            let served = job
                .serve_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok());
            let board = job.board.as_deref().or(served.as_deref());
            Some(approve_for(&job.env.team_id, request.id, board))
        }
        _ => None,
    };
    let secrets = std::cell::OnceCell::new();
    let secret = |key: &str| {
        secrets
            .get_or_init(|| {
                std::fs::read_to_string(&job.secrets_file)
                    .ok()
                    .and_then(|t| Secrets::from_file_text(&t).ok())
            })
            .as_ref()
            .and_then(|s: &Secrets| {
                s.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            })
    };
    let mut posts = Vec::new();
    for (sink, from) in &job.sinks {
        let url = match from.resolve(
            job.literals.get(sink.key()).map(String::as_str),
            secret,
            |n| std::env::var(n).ok(),
        ) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(sink = sink.key(), "no URL for [notify] {}: {e}", sink.key());
                continue;
            }
        };
        let body = payload(*sink, &job.env, approve.as_ref()).to_string();
        let (sink, timeout) = (*sink, job.timeout);
        posts.push(async move {
            match deliver(client, &url, body.as_bytes(), timeout, backoff()).await {
                Ok(tries) => tracing::debug!(sink = sink.key(), tries, "notification posted"),
                Err(e) => tracing::warn!(sink = sink.key(), "a notification was not posted: {e}"),
            }
        });
    }
    join_all(posts).await;
}

/// Runs `futures` together to the end (a few, so polled in turn).
async fn join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in futures.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
