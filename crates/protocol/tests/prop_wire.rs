//! Property tests of what the daemon does with incoming bytes (`crates/daemon/src/conn.rs`):
//! the frame decoder (blocking and async) and the parsing of a payload as a `ClientFrame`, with
//! the daemon's fallbacks for payloads that do not parse. Over arbitrary bytes, JSON-like token
//! soup and mutated valid frames, each must give a clean error or a valid value, never panic;
//! and every valid frame must survive encoding and decoding unchanged.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agent_team_protocol::frame::{self, FrameError};
use agent_team_protocol::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

// ---------------------------------------------------------------------------------------------
// The daemon's decoding pipeline, step by step as conn.rs runs it
// ---------------------------------------------------------------------------------------------

/// How reading a byte stream as frames ended, and what each frame parsed to.
#[derive(Debug, PartialEq)]
struct Decoded {
    payloads: Vec<Vec<u8>>,
    end: &'static str,
}

fn end_of(e: &FrameError) -> Result<&'static str, TestCaseError> {
    Ok(match e {
        FrameError::Closed => "closed",
        FrameError::Truncated => "truncated",
        FrameError::TooLarge(n) => {
            prop_assert!(*n > MAX_FRAME_LEN, "too large but {n} bytes");
            "too_large"
        }
        FrameError::Empty => "empty",
        // Reading from memory has no I/O error, and the raw reader parses no JSON.
        other => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
    })
}

/// The blocking decoder over the whole input, frame after frame, until it stops.
fn frames_blocking(bytes: &[u8]) -> Result<Decoded, TestCaseError> {
    let mut r = bytes;
    let mut payloads = Vec::new();
    loop {
        match frame::read_raw(&mut r) {
            Ok(p) => {
                prop_assert!(!p.is_empty() && p.len() <= MAX_FRAME_LEN);
                payloads.push(p);
            }
            Err(e) => {
                let end = end_of(&e)?;
                if end == "closed" {
                    prop_assert!(r.is_empty(), "closed with {} bytes unread", r.len());
                }
                // The error is shown to the client; its text must be producible.
                let _ = e.to_string();
                return Ok(Decoded { payloads, end });
            }
        }
    }
}

/// The async decoder the daemon's connection tasks use, over the same input.
fn frames_async(bytes: &[u8]) -> Result<Decoded, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = bytes;
        let mut payloads = Vec::new();
        loop {
            match frame::tokio_io::read_raw(&mut r).await {
                Ok(p) => payloads.push(p),
                Err(e) => {
                    return Ok(Decoded {
                        payloads,
                        end: end_of(&e)?,
                    });
                }
            }
        }
    })
}

/// What the daemon does with one payload: a `ClientFrame`, or the structured error it answers
/// with (on the request id when one can be read, with `unsupported_version` for a hello of
/// another version). A frame that parses must encode and parse back to itself.
fn daemon_parses(payload: &[u8]) -> Result<Option<ClientFrame>, TestCaseError> {
    match serde_json::from_slice::<ClientFrame>(payload) {
        Ok(f) => {
            let bytes = frame::encode(&f).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: ClientFrame = frame::read(&mut &bytes[..])
                .map_err(|e| TestCaseError::fail(format!("{f:?} does not read back: {e}")))?;
            prop_assert_eq!(&back, &f);
            Ok(Some(f))
        }
        Err(e) => {
            let value: Option<serde_json::Value> = serde_json::from_slice(payload).ok();
            let _version = value
                .as_ref()
                .and_then(|v| v.get("protocol"))
                .and_then(|p| p.as_u64());
            let req_id = value.and_then(|v| v.get("id").and_then(|i| i.as_u64()));
            let error = ErrorBody::new(ErrorCode::BadRequest, format!("invalid request: {e}"));
            let answer = match req_id {
                Some(id) => ServerFrame::response(id, Err(error)),
                None => ServerFrame::Error { error },
            };
            // The answer itself always fits in a frame and reads back.
            let bytes = frame::encode(&answer).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: ServerFrame = frame::read(&mut &bytes[..]).unwrap();
            prop_assert_eq!(back, answer);
            Ok(None)
        }
    }
}

/// The whole pipeline: both decoders agree, and every payload is parsed or refused cleanly.
fn pipeline(bytes: &[u8]) -> Result<Vec<Option<ClientFrame>>, TestCaseError> {
    let blocking = frames_blocking(bytes)?;
    let tokio = frames_async(bytes)?;
    prop_assert_eq!(
        &blocking,
        &tokio,
        "the blocking and async decoders disagree"
    );
    blocking.payloads.iter().map(|p| daemon_parses(p)).collect()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

// ---------------------------------------------------------------------------------------------
// Valid frames
// ---------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9 *-]{0,12}",
        1 => any::<String>(),
        1 => Just("\u{0}\"\\\n\u{1b}é😀".to_string()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn task_status() -> impl Strategy<Value = TaskStatus> {
    prop::sample::select(vec![
        TaskStatus::Pending,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ])
}

fn agent_status() -> impl Strategy<Value = AgentStatus> {
    prop::sample::select(vec![
        AgentStatus::Starting,
        AgentStatus::Running,
        AgentStatus::Idle,
        AgentStatus::Waiting,
        AgentStatus::Backoff,
        AgentStatus::Stopped,
        AgentStatus::Exited,
        AgentStatus::Failed,
        AgentStatus::Unreachable,
    ])
}

fn message_kind() -> impl Strategy<Value = MessageKind> {
    prop::sample::select(vec![
        MessageKind::Text,
        MessageKind::ShutdownRequest,
        MessageKind::ShutdownResponse,
        MessageKind::Idle,
        MessageKind::TaskEvent,
        MessageKind::Permission,
    ])
}

/// JSON without floats (whose shortest form may not read back bit for bit).
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        text().prop_map(|delta| Event::TextMessageContent { delta }),
        (text(), text(), json()).prop_map(|(tool_call_id, tool_name, args)| {
            Event::ToolCallStart {
                tool_call_id,
                tool_name,
                args,
            }
        }),
        (text(), text(), any::<bool>()).prop_map(|(tool_call_id, content, is_error)| {
            Event::ToolCallResult {
                tool_call_id,
                content,
                is_error,
            }
        }),
        text().prop_map(|message| Event::Error { message }),
        opt_text().prop_map(|goal| Event::RunStarted { goal }),
        // A present null value must read back as present (`Some(null)`), not as absent.
        (
            text(),
            any::<u64>(),
            any::<bool>(),
            text(),
            prop::option::of(json())
        )
            .prop_map(|(key, version, deleted, by, value)| Event::MemoryUpdated {
                key,
                version,
                deleted,
                by,
                value,
            })
            .boxed(),
    ]
}

fn task_requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            text(),
            text(),
            opt_text(),
            prop::collection::vec(any::<u64>(), 0..3),
            opt_text(),
            opt_text()
        )
            .prop_map(|(title, description, run, blocked_by, assign, key)| {
                Request::TaskAdd {
                    title,
                    description,
                    run,
                    blocked_by,
                    assign,
                    key,
                }
            }),
        (
            prop::option::of(task_status()),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(status, after)| Request::TaskList { status, after }),
        any::<u64>().prop_map(|id| Request::TaskShow { id }),
        any::<u64>().prop_map(|id| Request::TaskClaim { id }),
        Just(Request::TaskClaimNext),
        Just(Request::WatchTasks),
        (any::<u64>(), text()).prop_map(|(id, to)| Request::TaskAssign { id, to }),
        any::<u64>().prop_map(|id| Request::TaskRelease { id }),
        (any::<u64>(), task_status(), opt_text())
            .prop_map(|(id, status, result)| Request::TaskFinish { id, status, result }),
        any::<u64>().prop_map(|id| Request::TaskCancel { id }),
        any::<u64>().prop_map(|id| Request::TaskRetry { id }),
    ]
}

fn message_requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        (text(), text(), message_kind(), opt_text(), opt_text()).prop_map(
            |(to, body, kind, summary, dedup)| Request::Send {
                to,
                body,
                kind,
                summary,
                dedup,
            }
        ),
        (opt_text(), any::<bool>(), prop::option::of(any::<u64>())).prop_map(
            |(agent, unread_only, after)| Request::Inbox {
                agent,
                unread_only,
                after,
            }
        ),
        (
            prop::collection::vec(any::<u64>(), 0..4),
            prop::sample::select(vec![
                DeliveryState::Queued,
                DeliveryState::Delivered,
                DeliveryState::Read,
            ])
        )
            .prop_map(|(ids, state)| Request::Ack { ids, state }),
        (text(), text(), text()).prop_map(|(tool, input, reason)| Request::PermRequest {
            tool,
            input,
            reason
        }),
        (any::<bool>(), prop::option::of(any::<u64>()))
            .prop_map(|(all, after)| Request::PermList { all, after }),
        (
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            opt_text(),
            opt_text()
        )
            .prop_map(|(id, allow, always, pattern, reason)| Request::PermDecide {
                id,
                allow,
                always,
                pattern,
                reason,
            }),
        (any::<u64>(), prop::option::of(any::<u32>()))
            .prop_map(|(since, limit)| Request::Events { since, limit }),
        any::<u64>().prop_map(|since| Request::Subscribe { since, types: None }),
        event().prop_map(|event| Request::Emit { event }),
    ]
}

fn team_requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping),
        Just(Request::TeamInfo),
        Just(Request::Agents),
        (text(), text()).prop_map(|(name, role)| Request::Register { name, role }),
        (text(), opt_text(), opt_text()).prop_map(|(role, name, message)| Request::Spawn {
            container: None,
            role,
            name,
            instructions: None,
            model: None,
            message,
            host: None,
            workspace: None,
        }),
        (text(), opt_text()).prop_map(|(name, reason)| Request::Kill { name, reason }),
        text().prop_map(|name| Request::Restart { name }),
        (agent_status(), opt_text())
            .prop_map(|(status, error)| Request::SetStatus { status, error }),
        json().prop_map(|config| Request::Configure { config }),
        Just(Request::GetConfig),
        opt_text().prop_map(|goal| Request::StartRun { goal, config: None }),
        (text(), any::<bool>(), any::<bool>()).prop_map(|(answer, force, success)| {
            Request::Finish {
                answer,
                force,
                success,
                details: None,
                auto: false,
            }
        }),
        Just(Request::Shutdown),
    ]
}

/// Boxed: one more arm of nested unions made the generator's frames deep enough to overflow
/// a test thread's stack in debug builds.
fn memory_requests() -> BoxedStrategy<Request> {
    prop_oneof![
        (text(), json()).prop_map(|(key, value)| Request::MemorySet { key, value }),
        text().prop_map(|key| Request::MemoryGet { key }),
        (opt_text(), opt_text()).prop_map(|(prefix, after)| Request::MemoryList { prefix, after }),
        text().prop_map(|key| Request::MemoryDelete { key }),
    ]
    .boxed()
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        task_requests(),
        message_requests(),
        team_requests(),
        memory_requests()
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    let auth = prop_oneof![
        text().prop_map(|secret| Auth::Operator { secret }),
        (text(), text(), any::<u64>()).prop_map(|(name, secret, incarnation)| Auth::Agent {
            name,
            secret,
            incarnation
        }),
    ];
    prop_oneof![
        1 => (any::<u32>(), text(), auth, opt_text(), any::<bool>()).prop_map(
            |(protocol, team, auth, client, start)| {
                ClientFrame::Hello(Hello {
                    protocol,
                    team,
                    auth,
                    client,
                    start,
                })
            }
        ),
        4 => (any::<u64>(), request(), opt_text(), any::<bool>()).prop_map(
            |(id, body, rid, no_reply)| ClientFrame::Request {
                id,
                body,
                rid,
                no_reply
            }
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Inputs that are not frames
// ---------------------------------------------------------------------------------------------

/// Payloads made of JSON tokens, so the parser gets past the first byte more often.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens = vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"type\"",
        "\"request\"",
        "\"hello\"",
        "\"id\"",
        "\"body\"",
        "\"op\"",
        "\"send\"",
        "\"task_add\"",
        "\"ack\"",
        "\"ids\"",
        "\"state\"",
        "\"read\"",
        "\"protocol\"",
        "\"auth\"",
        "\"kind\"",
        "\"operator\"",
        "\"rid\"",
        "1",
        "-1",
        "0",
        "18446744073709551615",
        "18446744073709551616",
        "1e999",
        "-0.0",
        "null",
        "true",
        "\"x\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\uDFFF\"",
        "\"2026-01-01T00:00:00Z\"",
        "\"9999-12-31T23:59:60.999Z\"",
        " ",
        "\"",
        "\\",
    ];
    prop::collection::vec(prop::sample::select(tokens), 0..40).prop_map(|t| t.concat().into_bytes())
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
    /// A byte replaced by one that means something in JSON.
    Json(usize, u8),
    /// A slice copied over another place (repeats a field, a key, a header).
    Copy(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        3 => (any::<usize>(), prop::sample::select(b"{}[]\",:0-9.e\\ntu ".to_vec()))
            .prop_map(|(i, b)| Mutation::Json(i, b)),
        1 => (any::<usize>(), any::<usize>(), 1usize..16)
            .prop_map(|(from, to, n)| Mutation::Copy(from, to, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    if n == 0 {
        if let Mutation::Insert(_, b) = m {
            bytes.push(*b);
        }
        return;
    }
    match *m {
        Mutation::Set(i, b) | Mutation::Json(i, b) => bytes[i % n] = b,
        Mutation::Insert(i, b) => bytes.insert(i % (n + 1), b),
        Mutation::Remove(i) => {
            bytes.remove(i % n);
        }
        Mutation::Truncate(i) => bytes.truncate(i % n),
        Mutation::Copy(from, to, len) => {
            let from = from % n;
            let chunk: Vec<u8> = bytes[from..(from + len).min(n)].to_vec();
            let to = to % n;
            for (k, b) in chunk.into_iter().enumerate() {
                if to + k < bytes.len() {
                    bytes[to + k] = b;
                }
            }
        }
    }
}

/// Mutations that keep the header's length right, so the change reaches the JSON parser.
fn mutate_payload(payload: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut p = payload.to_vec();
    for m in ms {
        mutate(&mut p, m);
    }
    framed(&p)
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(Config {
        cases: cases(256),
        failure_persistence: None,
        ..Config::default()
    })]

    /// Arbitrary bytes: the decoders stop cleanly and agree; any payload is parsed or refused.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        pipeline(&bytes)?;
    }

    /// Arbitrary payloads behind a correct header reach the JSON parser.
    #[test]
    fn arbitrary_payloads_are_parsed_or_refused(
        payload in prop::collection::vec(any::<u8>(), 1..512)
    ) {
        let frames = pipeline(&framed(&payload))?;
        prop_assert_eq!(frames.len(), 1);
    }

    /// JSON-shaped garbage behind a correct header.
    #[test]
    fn token_soup_is_parsed_or_refused(payload in token_soup()) {
        let bytes = framed(&payload);
        let frames = pipeline(&bytes)?;
        prop_assert_eq!(frames.len(), usize::from(!payload.is_empty()));
    }

    /// Any header: accepted exactly when it announces 1..=MAX_FRAME_LEN bytes.
    #[test]
    fn headers_are_checked(len in prop_oneof![
        any::<u32>(),
        (MAX_FRAME_LEN as u32 - 2)..=(MAX_FRAME_LEN as u32 + 2),
        0u32..3
    ]) {
        let got = frame::check_header(len.to_be_bytes());
        let len = len as usize;
        match got {
            Ok(n) => prop_assert!(n == len && (1..=MAX_FRAME_LEN).contains(&len)),
            Err(FrameError::Empty) => prop_assert_eq!(len, 0),
            Err(FrameError::TooLarge(n)) => prop_assert!(n == len && len > MAX_FRAME_LEN),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    /// Valid frames round-trip through the encoder and both decoders, also several in a row.
    #[test]
    fn valid_frames_round_trip(frames in prop::collection::vec(client_frame(), 1..4)) {
        let mut bytes = Vec::new();
        for f in &frames {
            frame::encode_into(f, &mut bytes).unwrap();
        }
        let parsed = pipeline(&bytes)?;
        let parsed: Vec<ClientFrame> = parsed.into_iter().flatten().collect();
        prop_assert_eq!(parsed, frames);
    }

    /// Valid frames with random damage anywhere (header included): a clean stop or error.
    #[test]
    fn mutated_frames_never_panic(
        frames in prop::collection::vec(client_frame(), 1..3),
        ms in prop::collection::vec(mutation(), 1..6)
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            frame::encode_into(f, &mut bytes).unwrap();
        }
        for m in &ms {
            mutate(&mut bytes, m);
        }
        pipeline(&bytes)?;
    }

    /// Valid payloads with random damage behind a right header: parsed to a valid frame or
    /// answered with a structured error.
    #[test]
    fn mutated_payloads_are_parsed_or_refused(
        f in client_frame(),
        ms in prop::collection::vec(mutation(), 1..6)
    ) {
        let payload = serde_json::to_vec(&f).unwrap();
        let bytes = mutate_payload(&payload, &ms);
        pipeline(&bytes)?;
    }

    /// Timestamps on the wire (RFC 3339): any string near the format parses or is refused,
    /// and what parses prints and parses back to the same instant.
    #[test]
    fn timestamps_parse_or_are_refused(
        y in prop_oneof![1960u32..2100, 9990u32..10000, 0u32..10000],
        mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62, s in 0u32..62,
        frac in prop::option::of("[0-9]{1,12}"),
        zone in prop::sample::select(vec!["Z", "z", "+00:00", "", " "]),
    ) {
        let text = match &frac {
            Some(f) => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{f}{zone}"),
            None => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{zone}"),
        };
        if let Some(t) = Timestamp::parse_rfc3339(&text) {
            let printed = t.to_rfc3339();
            prop_assert_eq!(Timestamp::parse_rfc3339(&printed), Some(t), "{} -> {}", text, printed);
        }
        let quoted = serde_json::to_string(&text).unwrap();
        if let Ok(t) = serde_json::from_str::<Timestamp>(&quoted) {
            let back: Timestamp = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
            prop_assert_eq!(back, t);
        }
    }
}

/// Deep nesting is refused by the parser's recursion limit, not by a stack overflow.
#[test]
fn deeply_nested_payloads_are_refused() {
    for open in ["[", "{\"a\":", "{\"type\":\"request\",\"id\":1,\"body\":"] {
        // As deep as fits in one frame.
        let payload = open.repeat(MAX_FRAME_LEN / open.len()).into_bytes();
        let frames = pipeline(&framed(&payload)).unwrap();
        assert_eq!(frames, vec![None]);
    }
}

/// A frame of exactly the limit is read; one byte more is refused before its payload is read.
#[test]
fn the_size_limit_is_exact() {
    let mut payload = vec![b' '; MAX_FRAME_LEN];
    payload[0] = b'1';
    let d = frames_blocking(&framed(&payload)).unwrap();
    assert_eq!((d.payloads.len(), d.end), (1, "closed"));
    payload.push(b' ');
    let d = frames_blocking(&framed(&payload)).unwrap();
    assert_eq!((d.payloads.len(), d.end), (0, "too_large"));
}
