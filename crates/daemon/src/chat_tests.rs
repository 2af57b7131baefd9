#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use agent_team_protocol::{
    AgentStatus, BudgetLevel, BudgetStatus, PermRequest, PermStatus, Timestamp,
};
use std::cell::RefCell;

fn env(agent: &str, event: Event) -> Envelope {
    Envelope {
        seq: 7,
        ts: Timestamp(1),
        team_id: "t".into(),
        agent_id: agent.into(),
        role_name: "worker".into(),
        event,
    }
}

fn perm(agent: &str, input: &str, reason: &str) -> Event {
    Event::PermissionRequested {
        request: PermRequest {
            id: 3,
            agent: agent.into(),
            tool: "bash".into(),
            input: input.into(),
            reason: reason.into(),
            ts: Timestamp(1),
            status: PermStatus::Pending,
            decision: None,
        },
    }
}

/// One event of each kind `[notify]` tells about.
fn kinds() -> Vec<(&'static str, Envelope)> {
    vec![
        (
            "permission",
            env("w1", perm("w1", "cargo test", "to check")),
        ),
        (
            "failed",
            env(
                "w1",
                Event::AgentStatus {
                    status: AgentStatus::Failed,
                    incarnation: 1,
                    detail: Some("exit 1".into()),
                },
            ),
        ),
        (
            "budget",
            env(
                "leader",
                Event::BudgetWarning {
                    budget: BudgetStatus {
                        role: Some("worker".into()),
                        budget_tokens: Some(100),
                        budget_usd: None,
                        used_tokens: 85,
                        used_usd: 0.0,
                        percent: 85,
                        level: BudgetLevel::Warning,
                    },
                },
            ),
        ),
        (
            "finished",
            env(
                "leader",
                Event::RunFinished {
                    answer: "42".into(),
                    success: true,
                },
            ),
        ),
    ]
}

/// Every text a Slack payload shows (fallback and blocks).
fn slack_texts(v: &Value) -> Vec<String> {
    let mut t = vec![v["text"].as_str().unwrap().to_string()];
    for b in v["blocks"].as_array().unwrap() {
        t.push(b["text"]["text"].as_str().unwrap().to_string());
    }
    t
}

/// Every text a Discord payload shows.
fn discord_texts(v: &Value) -> Vec<String> {
    let e = &v["embeds"][0];
    vec![
        v["content"].as_str().unwrap().to_string(),
        e["title"].as_str().unwrap().to_string(),
        e["description"].as_str().unwrap().to_string(),
    ]
}

#[test]
fn each_kind_is_formatted_for_each_sink() {
    let expect = [
        (
            "permission",
            "permission request 3",
            "w1 asks to run bash: cargo test",
        ),
        ("failed", "w1 failed", "exit 1"),
        ("budget", "budget warning", "role worker is at 85 %"),
        ("finished", "the run finished", "42"),
    ];
    for ((name, e), (_, title, body)) in kinds().into_iter().zip(expect) {
        let approve =
            matches!(e.event, Event::PermissionRequested { .. }).then(|| approve_for("t", 3, None));
        let slack = payload(Sink::Slack, &e, approve.as_ref());
        let all = slack_texts(&slack).join("\n");
        assert!(all.contains(title) && all.contains(body), "{name}: {slack}");
        assert_eq!(slack["blocks"][0]["type"], "section", "{name}");
        let discord = payload(Sink::Discord, &e, approve.as_ref());
        assert!(
            discord["content"].as_str().unwrap().contains(title),
            "{name}: {discord}"
        );
        let d = discord_texts(&discord).join("\n").replace('\\', "");
        assert!(d.contains(body), "{name}: {discord}");
        assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
        // The generic sink gets the envelope as it is.
        let generic = payload(Sink::Generic, &e, approve.as_ref());
        assert_eq!(serde_json::from_value::<Envelope>(generic).unwrap(), e);
        if approve.is_some() {
            assert!(
                all.contains("Approve with `agent-team --team t approve 3`"),
                "{all}"
            );
            assert!(d.contains("agent-team --team t approve 3"), "{d}");
        }
    }
}

#[test]
fn a_permission_links_to_the_board_when_one_is_known() {
    let a = approve_for("my team", 3, Some("http://127.0.0.1:8080/"));
    assert_eq!(
        a,
        Approve::Link("http://127.0.0.1:8080/?team=my%20team#permission-3".into())
    );
    let e = env("w1", perm("w1", "ls", ""));
    let slack = payload(Sink::Slack, &e, Some(&a));
    assert!(
        slack_texts(&slack).iter().any(|t| t
            == "<http://127.0.0.1:8080/?team=my%20team#permission-3|Approve or deny on the board>"),
        "{slack}"
    );
    let discord = payload(Sink::Discord, &e, Some(&a));
    assert_eq!(
        discord["embeds"][0]["url"],
        "http://127.0.0.1:8080/?team=my%20team#permission-3"
    );
    assert!(
        discord["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .ends_with(
                "[Approve or deny on the board](http://127.0.0.1:8080/?team=my%20team#permission-3)"
            )
    );
    assert_eq!(approve_for("t", 3, Some(" ")), approve_for("t", 3, None));
}

/// The attack: an agent writes a tool input, a reason and a name meant to ping the channel,
/// forge a link and break the layout with control characters.
#[test]
fn agent_text_cannot_ping_forge_a_link_or_inject_controls() {
    let evil = "<!channel> @here @everyone <@U123> <https://evil.example|Approve> \
                [Approve](https://evil.example) **x** `y` &amp; \u{1b}[2J\nline2\u{202e}";
    let e = env("w1", perm("w1 <!here>", evil, evil));
    let approve = approve_for("t", 3, Some("http://127.0.0.1:1"));
    let slack = payload(Sink::Slack, &e, Some(&approve));
    let texts = slack_texts(&slack);
    let agent_parts = texts
        .iter()
        .filter(|t| !t.starts_with("<http://127.0.0.1:1/"));
    for t in agent_parts {
        // Every `<` and `>` the text holds is ours (the board link), none the agent's.
        let own = t.matches("<http://127.0.0.1:1/").count();
        assert_eq!(t.matches('<').count(), own, "{t}");
        assert!(
            !t.contains("<!") && !t.contains("<@") && !t.contains("|Approve>"),
            "{t}"
        );
        assert!(!t.contains("@here") && !t.contains("@everyone"), "{t}");
        assert!(!t.contains('\u{1b}') && !t.contains('\u{202e}'), "{t}");
        assert!(
            t.contains("&lt;!channel&gt;") || !t.contains("channel"),
            "{t}"
        );
    }
    assert!(texts[2].contains("&amp;amp;"), "{texts:?}");
    // The agent's line break is shown as `\n`, not a new line of the message.
    assert!(texts[2].contains("\\nline2"), "{texts:?}");

    let discord = payload(Sink::Discord, &e, Some(&approve));
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
    for t in discord_texts(&discord) {
        assert!(!t.contains("@here") && !t.contains("@everyone"), "{t}");
        assert!(!t.contains('\u{1b}') && !t.contains('\u{202e}'), "{t}");
        // Each `[` and `<` of the agent's is escaped; only the board link is a link.
        let links = t.matches("](").count();
        let ours = t
            .matches("[Approve or deny on the board](http://127.0.0.1:1/")
            .count();
        let escaped = t.matches("\\](").count();
        assert_eq!(links, ours + escaped, "{t}");
        assert!(!t.replace("\\<", "").contains('<'), "{t}");
        assert!(!t.contains("**x**"), "{t}");
    }
}

/// A fake sink and clock: answers in turn, records each wait.
struct Fake {
    answers: RefCell<Vec<Attempt>>,
    posts: RefCell<u32>,
    slept: RefCell<Vec<Duration>>,
}

impl Fake {
    fn new(answers: Vec<Attempt>) -> Self {
        Fake {
            answers: RefCell::new(answers.into_iter().rev().collect()),
            posts: RefCell::new(0),
            slept: RefCell::new(Vec::new()),
        }
    }
}

impl Transport for Fake {
    async fn post(&self, _url: &str, _body: &[u8], _timeout: Duration) -> Attempt {
        *self.posts.borrow_mut() += 1;
        self.answers.borrow_mut().pop().unwrap_or(Attempt::Done)
    }
    async fn sleep(&self, d: Duration) {
        self.slept.borrow_mut().push(d);
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn plain_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).max_retries(TRIES - 1)
}

#[test]
fn retries_back_off_honour_retry_after_and_stop() {
    let ms = Duration::from_millis;
    let fake = Fake::new(vec![
        Attempt::Retry(None, "500".into()),
        Attempt::Retry(Some(Duration::from_secs(7)), "429".into()),
        Attempt::Retry(None, "connection refused".into()),
        Attempt::Done,
    ]);
    let tries = block_on(deliver(&fake, "http://x", b"{}", ms(100), plain_backoff())).unwrap();
    assert_eq!(tries, 4);
    // 0.5 s, then the server's 7 s (the sequence moves on), then 2 s.
    assert_eq!(*fake.slept.borrow(), vec![ms(500), ms(7000), ms(2000)]);

    // A sink that keeps failing is tried `TRIES` times in all.
    let fake = Fake::new(
        (0..10)
            .map(|_| Attempt::Retry(None, "503".into()))
            .collect(),
    );
    let e = block_on(deliver(&fake, "http://x", b"{}", ms(100), plain_backoff())).unwrap_err();
    assert_eq!(*fake.posts.borrow(), TRIES);
    assert!(e.contains("gave up after 5 tries"), "{e}");

    // A 4xx other than 429 is not retried.
    let fake = Fake::new(vec![Attempt::Fail("404".into())]);
    assert!(block_on(deliver(&fake, "http://x", b"{}", ms(100), plain_backoff())).is_err());
    assert_eq!(*fake.posts.borrow(), 1);
    assert!(fake.slept.borrow().is_empty());

    // The real backoff: `TRIES` tries, each delay at most the cap.
    let mut b = backoff();
    let delays: Vec<_> = std::iter::from_fn(|| b.next_at(std::time::Instant::now())).collect();
    assert_eq!(delays.len() as u32, TRIES - 1);
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(30)));
}

/// The real transport against a local server: a 500 is retried, a 429's `Retry-After` read,
/// a refused connection reported without the URL.
#[test]
fn the_http_transport_classifies_answers() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for answer in [
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ] {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            // Read the head and the 2-byte body.
            while !got.windows(6).any(|w| w == b"\r\n\r\n{}") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).unwrap();
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = Http(reqwest::Client::new());
    let url = format!("http://{addr}/hook/secret-token");
    let t = Duration::from_secs(10);
    let got: Vec<Attempt> = (0..4)
        .map(|_| rt.block_on(http.post(&url, b"{}", t)))
        .collect();
    server.join().unwrap();
    assert!(
        matches!(&got[0], Attempt::Retry(None, w) if w.contains("500")),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        Attempt::Retry(
            Some(Duration::from_secs(3)),
            "the sink answered 429 Too Many Requests".into()
        )
    );
    assert_eq!(got[2], Attempt::Done);
    assert!(
        matches!(&got[3], Attempt::Fail(w) if w.contains("404")),
        "{got:?}"
    );
    // Nobody listens now: a connection error, retried, the URL not in its words.
    let refused = rt.block_on(http.post(&url, b"{}", t));
    let Attempt::Retry(None, why) = refused else {
        panic!("{refused:?}")
    };
    assert!(!why.contains("secret-token"), "{why}");
}
