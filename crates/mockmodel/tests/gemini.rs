//! The Gemini API dialect: hand-written requests over HTTP, as Google's API is called, and the
//! real Gemini CLI (`@google/gemini-cli`, when it is in the CLI cache) running a tool turn
//! against the mock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agent_team_mockmodel::{MockModel, Step, Wire};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The pinned Gemini CLI the end-to-end runs use.
const GEMINI_CLI: &str = "@google+gemini-cli@0.61.0";

/// How long the real CLI may take for the whole run (it starts in about a second).
const CLI_LIMIT: Duration = Duration::from_secs(120);

/// One HTTP answer: status, content type and body (de-chunked).
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// POSTs `body` to `path` with `headers` over a plain HTTP/1.1 connection.
fn post(mock: &MockModel, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let host = mock.base_url().trim_start_matches("http://").to_string();
    let mut tcp = std::net::TcpStream::connect(&host).unwrap();
    let body = body.to_string();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        tcp,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let body = match header("transfer-encoding").as_deref() {
        Some("chunked") => dechunk(rest),
        _ => rest.to_string(),
    };
    Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body,
    }
}

/// A chunked body's content.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// The `data:` events of an SSE body, parsed.
fn events(body: &str) -> Vec<Value> {
    body.split("\r\n\r\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| serde_json::from_str(e.trim().strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

/// A request as the Gemini CLI sends it: its own system instruction, the session context,
/// then the prompt naming `agent`.
fn request(agent: &str) -> Value {
    json!({
        "contents": [{"role": "user", "parts": [
            {"text": "<session_context>\nThis is the Gemini CLI.\n</session_context>"},
            {"text": format!("Your name is {agent}. Write a.txt.")},
        ]}],
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI, an autonomous CLI agent."}]},
        "tools": [{"functionDeclarations": [{"name": "write_file", "description": "Writes a file.",
            "parametersJsonSchema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]}],
        "generationConfig": {"temperature": 1, "topP": 0.95},
    })
}

/// Every part of every candidate of these responses, in order.
fn parts(responses: &[Value]) -> Vec<Value> {
    responses
        .iter()
        .flat_map(|r| r["candidates"][0]["content"]["parts"].as_array().unwrap())
        .cloned()
        .collect()
}

#[test]
fn streamed_and_whole_answers_with_the_key_recorded() {
    let mock = MockModel::start_background(Wire::Gemini).unwrap();
    assert!(!mock.base_url().ends_with("/v1"));
    mock.script(
        "gem",
        vec![
            Step::TextAndTools(
                "Writing a.txt.".into(),
                vec![(
                    "write_file".into(),
                    json!({"file_path": "a.txt", "content": "hi"}),
                )],
            ),
            Step::Text("Done.".into()).with_usage(100, 7, 0),
        ],
    );
    let streamed = post(
        &mock,
        "/v1beta/models/mock-model:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "key-1")],
        &request("gem"),
    );
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.content_type, "text/event-stream");
    let chunks = events(&streamed.body);
    assert!(chunks.len() > 1, "{}", streamed.body);
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["modelVersion"], "mock-model");
    let usage = &last["usageMetadata"];
    assert!(usage["promptTokenCount"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(
        usage["totalTokenCount"],
        usage["promptTokenCount"].as_u64().unwrap()
            + usage["candidatesTokenCount"].as_u64().unwrap()
    );
    let all = parts(&chunks);
    let text: String = all.iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(text, "Writing a.txt.");
    let calls: Vec<&Value> = all.iter().filter_map(|p| p.get("functionCall")).collect();
    assert_eq!(
        calls,
        [
            &json!({"id": "call_1", "name": "write_file", "args": {"file_path": "a.txt", "content": "hi"}})
        ]
    );

    // The CLI's next turn: the call and its result back, the key in the query this time.
    let mut next = request("gem");
    let contents = next["contents"].as_array_mut().unwrap();
    contents.push(json!({"role": "model", "parts": [{"functionCall": calls[0]}]}));
    contents.push(
        json!({"role": "user", "parts": [{"functionResponse": {"id": "call_1",
        "name": "write_file", "response": {"output": "wrote a.txt"}}}]}),
    );
    let whole = post(
        &mock,
        "/v1beta/models/mock-model:generateContent?key=key-2",
        &[],
        &next,
    );
    assert_eq!(whole.status, 200);
    assert_eq!(whole.content_type, "application/json");
    let v: Value = serde_json::from_str(&whole.body).unwrap();
    assert_eq!(
        v["candidates"][0],
        json!({"content": {"role": "model", "parts": [{"text": "Done."}]}, "finishReason": "STOP", "index": 0})
    );
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 100, "candidatesTokenCount": 7, "totalTokenCount": 107})
    );

    assert_eq!(
        mock.keys("gem"),
        [Some("key-1".to_string()), Some("key-2".to_string())]
    );
    let seen = mock.requests("gem");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1]["contents"][2]["parts"][0]["functionResponse"]["response"]["output"],
        "wrote a.txt"
    );
    assert!(mock.unmatched().is_empty());
}

#[test]
fn errors_count_tokens_and_other_methods() {
    let mock = MockModel::start_background(Wire::Gemini).unwrap();
    mock.script(
        "gem",
        vec![
            Step::Status(429, "Resource has been exhausted.".into()),
            Step::Text("after the error".into()),
            Step::Text("as an array".into()),
        ],
    );
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let err = post(&mock, path, &[], &request("gem"));
    assert_eq!(err.status, 429);
    assert_eq!(
        serde_json::from_str::<Value>(&err.body).unwrap(),
        json!({"error": {"code": 429, "message": "Resource has been exhausted.", "status": "RESOURCE_EXHAUSTED"}})
    );
    // Counting takes no step.
    let count = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:countTokens",
        &[],
        &json!({"contents": request("gem")["contents"]}),
    );
    assert_eq!(count.status, 200);
    let total = serde_json::from_str::<Value>(&count.body).unwrap()["totalTokens"].clone();
    assert!(total.as_u64().unwrap() > 0, "{}", count.body);
    let ok = post(&mock, path, &[], &request("gem"));
    let text: String = parts(&events(&ok.body))
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(text, "after the error");
    // Streaming without `alt=sse`: the chunks as one JSON array.
    let array = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        &[],
        &request("gem"),
    );
    let chunks: Vec<Value> = serde_json::from_str(&array.body).unwrap();
    let text: String = parts(&chunks)
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(text, "as an array");
    // A method the mock does not serve, a bad body: Google's error shape.
    let other = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:embedContent",
        &[],
        &json!({}),
    );
    assert_eq!(other.status, 404);
    let e: Value = serde_json::from_str(&other.body).unwrap();
    assert_eq!(
        (e["error"]["code"].clone(), e["error"]["status"].clone()),
        (json!(404), json!("NOT_FOUND"))
    );
    // The CLI's session-title request takes no step when answered aside.
    mock.answer_aside("Summarize the user's primary intent", "Mock title");
    let mut title = request("gem");
    title["contents"][0]["parts"][0]["text"] =
        json!("Summarize the user's primary intent or goal in this conversation in ONE sentence.");
    let aside = post(
        &mock,
        "/v1beta/models/gemini-3.5-flash-lite:generateContent",
        &[],
        &title,
    );
    let v: Value = serde_json::from_str(&aside.body).unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "Mock title"
    );
    assert_eq!(mock.aside_requests().len(), 1);
    assert_eq!(mock.requests("gem").len(), 3);
}

#[test]
fn implicit_caching_reports_cached_content_tokens() {
    let mock = MockModel::start_background(Wire::Gemini).unwrap();
    mock.account_caching(true);
    mock.script(
        "gem",
        vec![Step::Text("one".into()), Step::Text("two".into())],
    );
    let mut req = request("gem");
    req["systemInstruction"]["parts"][0]["text"] = json!("You are Gemini CLI. ".repeat(1000));
    let path = "/v1beta/models/mock-model:generateContent";
    let first: Value = serde_json::from_str(&post(&mock, path, &[], &req).body).unwrap();
    assert!(
        first["usageMetadata"]
            .get("cachedContentTokenCount")
            .is_none(),
        "{first}"
    );
    let input = first["usageMetadata"]["promptTokenCount"].as_u64().unwrap();
    assert!(input > 4096, "{input}");
    req["contents"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "model", "parts": [{"text": "one"}]}));
    let second: Value = serde_json::from_str(&post(&mock, path, &[], &req).body).unwrap();
    assert_eq!(
        second["usageMetadata"]["cachedContentTokenCount"], input,
        "{second}"
    );
    let billed = mock.billed("gem");
    assert_eq!(billed.cache_read, input);
    assert_eq!(billed.cache_write, 0);
}

/// The directory the pinned CLIs are installed in: `<target>/clis`.
fn clis_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("clis");
    }
    // This test runs as `<target>/debug/deps/gemini-…`.
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("clis")
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_gemini_cli_calls_a_tool_then_answers() {
    let gemini = clis_dir().join(GEMINI_CLI).join("node_modules/.bin/gemini");
    if !gemini.exists() {
        println!(
            "skipped: the Gemini CLI is not at {} (install it with `npm install --no-audit --no-fund --prefix {} @google/gemini-cli@0.61.0`)",
            gemini.display(),
            clis_dir().join(GEMINI_CLI).display()
        );
        return;
    }
    let mock = MockModel::start(Wire::Gemini).await.unwrap();
    mock.script(
        "a1",
        vec![
            Step::tools(&[(
                "write_file",
                json!({"file_path": "hello.txt", "content": "hi from a1\n"}),
            )]),
            Step::Text("Wrote hello.txt for the team.".into()),
        ],
    );
    let tmp = TempDir::new("mockmodel-gemini-cli");
    let home = tmp.path().join("home");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(home.join(".gemini")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let settings = json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
        // The current names: the CLI rewrites `disableAutoUpdate` to `enableAutoUpdate`, and only
        // the notification switch stops the update check (docs/CLIS-research-gemini.md, A7).
        "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
    });
    std::fs::write(home.join(".gemini/settings.json"), settings.to_string()).unwrap();
    let mut cmd = tokio::process::Command::new(&gemini);
    cmd.args([
        "-p",
        "Your name is a1. Write hello.txt.",
        "-m",
        "mock-model",
    ])
    .args(["--yolo", "--skip-trust"])
    .current_dir(&work)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", &home)
    .env("GEMINI_API_KEY", "test-key")
    .env("GOOGLE_GEMINI_BASE_URL", mock.base_url())
    // One process: no relaunch with a bigger heap as a child.
    .env("GEMINI_CLI_NO_RELAUNCH", "true")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(CLI_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("gemini did not finish in {CLI_LIMIT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = mock.requests("a1");
    let report = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}\nrequests: {}\nunmatched: {}",
        out.status,
        seen.len(),
        mock.unmatched().len()
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(
        std::fs::read_to_string(work.join("hello.txt"))
            .ok()
            .as_deref(),
        Some("hi from a1\n"),
        "{report}"
    );
    assert!(stdout.contains("Wrote hello.txt for the team."), "{report}");
    assert_eq!(seen.len(), 2, "{report}");
    assert_eq!(
        mock.keys("a1"),
        [Some("test-key".to_string()), Some("test-key".to_string())]
    );
    // The second request carries the call back and the tool's result under the call's id.
    let contents = seen[1]["contents"].as_array().unwrap();
    let response = contents
        .iter()
        .flat_map(|c| c["parts"].as_array().unwrap())
        .find_map(|p| p.get("functionResponse"))
        .unwrap_or_else(|| panic!("no functionResponse: {}", seen[1]));
    assert_eq!(response["name"], "write_file", "{response}");
    assert_eq!(response["id"], "call_1", "{response}");
    assert!(mock.unmatched().is_empty(), "{report}");
}
