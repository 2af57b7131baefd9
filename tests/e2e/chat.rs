//! Chat notifications (`[notify] slack_webhook`, `discord_webhook`, `webhook`): a local HTTP
//! sink receives the documented Slack, Discord and generic payloads of an offline team's
//! permission request and run end, after answering the first post with a 500.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// What the sink got: each request's path and JSON body, and how many it answered with a 500.
#[derive(Default)]
struct Got {
    posts: Vec<(String, Value)>,
    failed: u32,
}

/// A sink on 127.0.0.1 that answers its first request 500 and every later one 200.
fn sink() -> (String, Arc<Mutex<Got>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Got::default()));
    let g = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut g = g.lock().unwrap();
            let status = if g.failed == 0 {
                g.failed += 1;
                "500 Internal Server Error"
            } else {
                g.posts
                    .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                "200 OK"
            };
            drop(g);
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (base, got)
}

/// The body `path` got whose text shows `needle`, if any.
fn posted(got: &Mutex<Got>, path: &str, needle: &str) -> Option<Value> {
    got.lock()
        .unwrap()
        .posts
        .iter()
        .find(|(p, b)| p == path && b.to_string().contains(needle))
        .map(|(_, b)| b.clone())
}

#[test]
fn slack_discord_and_a_webhook_get_the_permission_request_and_the_runs_end() {
    let (base, got) = sink();
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![
            Step::tools(&[("bash", json!({"command": "echo notified"}))]),
            Step::tools(&[("finish_team", json!({"answer": "ok"}))]),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    // The three ways to give a URL: the environment, a secret, the URL itself.
    sb.env.push((
        "SLACK_HOOK_URL".into(),
        format!("{base}/slack/T0/B0/s3cret"),
    ));
    sb.env
        .push(("MY_DISCORD".into(), format!("{base}/discord/1/t0ken")));
    let generic = format!("{base}/generic/only-in-the-team-file");
    sb.write_team_file(&format!(
        "name = \"mt\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\n\
         api_key_env = \"MOCK_API_KEY\"\n\
         [roles.leader]\ntools = [\"bash\"]\npermissions = {{ bash = \"ask\" }}\n\
         [secrets]\nDISCORD = {{ env = \"MY_DISCORD\" }}\n\
         [notify]\nbell = false\nslack_webhook = {{ env = \"SLACK_HOOK_URL\" }}\n\
         discord_webhook = {{ secret = \"DISCORD\" }}\nwebhook = \"{generic}\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);
    wait_for("the three sinks to get the permission request", T, || {
        posted(&got, "/slack/T0/B0/s3cret", "permission request").is_some()
            && posted(&got, "/discord/1/t0ken", "permission request").is_some()
            && posted(
                &got,
                "/generic/only-in-the-team-file",
                "PERMISSION_REQUESTED",
            )
            .is_some()
    });
    // The generic sink got the envelope as it is.
    let envelope: Envelope = serde_json::from_value(
        posted(
            &got,
            "/generic/only-in-the-team-file",
            "PERMISSION_REQUESTED",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(envelope.team_id, "mt");
    let Event::PermissionRequested { request } = envelope.event else {
        panic!("{envelope:?}")
    };
    assert_eq!(
        (
            request.agent.as_str(),
            request.tool.as_str(),
            request.input.as_str()
        ),
        ("leader", "bash", "echo notified")
    );
    // No `serve` runs: the approve command line instead of a link.
    let approve = format!("agent-team --team mt approve {}", request.id);
    let slack = posted(&got, "/slack/T0/B0/s3cret", "permission request").unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("leader asks to run bash: echo notified"),
        "{slack}"
    );
    assert!(
        text.contains(&format!("Approve with `{approve}`")),
        "{slack}"
    );
    assert!(
        slack["blocks"].as_array().is_some_and(|b| b.len() >= 2),
        "{slack}"
    );
    let discord = posted(&got, "/discord/1/t0ken", "permission request").unwrap();
    assert!(
        discord["content"]
            .as_str()
            .unwrap()
            .contains("permission request")
    );
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
    let desc = discord["embeds"][0]["description"].as_str().unwrap();
    assert!(desc.contains(&approve), "{discord}");

    sb.ok(&["--team", "mt", "approve", &request.id.to_string()]);
    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    wait_for("the three sinks to get the run's end", T, || {
        posted(&got, "/slack/T0/B0/s3cret", "the run finished").is_some()
            && posted(&got, "/discord/1/t0ken", "the run finished").is_some()
            && posted(&got, "/generic/only-in-the-team-file", "RUN_FINISHED").is_some()
    });
    let done = posted(&got, "/discord/1/t0ken", "the run finished").unwrap();
    assert_eq!(done["embeds"][0]["description"], "ok");
    // The first post was answered 500 and retried: nothing was lost.
    assert_eq!(got.lock().unwrap().failed, 1);
    // The URL the team file gave itself is not in the team's database.
    let tp = sb.team("mt");
    for f in [tp.db.clone(), tp.db.with_extension("db-wal")] {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let needle = b"only-in-the-team-file";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} holds the webhook URL",
            f.display()
        );
    }
}
