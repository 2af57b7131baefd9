#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, UnixStream};

/// A destination on 127.0.0.1 that answers each connection's first line with `echo: LINE`
/// and counts its connections.
async fn echo_server() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((c, _)) = l.accept().await else { return };
            s.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = c.into_split();
                let mut r = BufReader::new(r);
                let mut line = String::new();
                let _ = r.read_line(&mut line).await;
                let _ = w.write_all(format!("echo: {line}").as_bytes()).await;
                // The rest of what arrives, echoed as it is (a plain request's whole head).
                let mut rest = vec![0u8; 4096];
                while let Ok(n) = r.read(&mut rest).await {
                    if n == 0 {
                        break;
                    }
                    let _ = w.write_all(&rest[..n]).await;
                    if rest[..n].ends_with(b"\r\n\r\n") {
                        break;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// A proxy served on a socket in a fresh dir.
fn proxy(
    policy: Policy,
    ask: Option<Arc<dyn Ask>>,
    limits: Limits,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let p = Proxy::new(policy, ask, limits);
    tokio::spawn(p.serve(listener));
    (dir, sock)
}

fn listed(mode: Mode, allow: &[&str]) -> Policy {
    Policy {
        mode,
        allow: allow.iter().map(|a| Pattern::parse(a).unwrap()).collect(),
    }
}

/// Sends `head`, then reads everything until the proxy or the destination closes.
async fn exchange(sock: &std::path::Path, head: &str) -> String {
    let mut c = UnixStream::connect(sock).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_listed_connect_tunnels_both_ways() {
    let (port, seen) = echo_server().await;
    let (_d, sock) = proxy(listed(Mode::List, &["127.0.0.1"]), None, Limits::default());
    let mut c = UnixStream::connect(&sock).await.unwrap();
    c.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\nhello\n").as_bytes())
        .await
        .unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line, "HTTP/1.1 200 Connection established\r\n");
    r.read_line(&mut line).await.unwrap();
    line.clear();
    // What came with the head reached the destination, and its answer came back.
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line, "echo: hello\n");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_plain_request_goes_in_origin_form_without_proxy_headers() {
    let (port, _) = echo_server().await;
    let (_d, sock) = proxy(
        listed(Mode::List, &[&format!("127.0.0.1:{port}")]),
        None,
        Limits::default(),
    );
    let out = exchange(
        &sock,
        &format!(
            "GET http://127.0.0.1:{port}/a/b?c=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nX-Kept: 1\r\n\r\n"
        ),
    )
    .await;
    assert!(out.starts_with("echo: GET /a/b?c=1 HTTP/1.1\r\n"), "{out}");
    assert!(
        out.contains("X-Kept: 1\r\n") && out.contains("Connection: close\r\n"),
        "{out}"
    );
    assert!(!out.to_ascii_lowercase().contains("proxy-"), "{out}");
}

#[tokio::test]
async fn an_unlisted_destination_is_refused_with_how_to_allow_it_and_nothing_is_sent() {
    let (port, seen) = echo_server().await;
    let (_d, sock) = proxy(
        listed(Mode::List, &["example.org"]),
        None,
        Limits::default(),
    );
    for head in [
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n"),
    ] {
        let out = exchange(&sock, &head).await;
        assert!(out.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{out}");
        assert!(
            out.contains(&format!("127.0.0.1:{port} is not on the team's list"))
                && out.contains("allow = [\"127.0.0.1\"]"),
            "{out}"
        );
    }
    // A listed port does not open the others.
    let (_d2, sock2) = proxy(
        listed(Mode::List, &["127.0.0.1:1"]),
        None,
        Limits::default(),
    );
    let out = exchange(
        &sock2,
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

/// An asker that counts its questions and answers once let go.
struct Gate {
    asked: AtomicUsize,
    answer: Answer,
    go: watch::Receiver<bool>,
}

impl Ask for Gate {
    fn ask(&self, _: &Destination) -> AnswerFuture {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let mut go = self.go.clone();
        let answer = self.answer.clone();
        Box::pin(async move {
            let _ = go.wait_for(|g| *g).await;
            answer
        })
    }
}

#[tokio::test]
async fn ask_mode_waits_for_one_shared_decision() {
    let (port, seen) = echo_server().await;
    let (tx, rx) = watch::channel(false);
    let gate = Arc::new(Gate {
        asked: AtomicUsize::new(0),
        answer: Answer::Allow,
        go: rx,
    });
    let (_d, sock) = proxy(
        listed(Mode::Ask, &[]),
        Some(gate.clone()),
        Limits::default(),
    );
    let head = format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\n\r\n");
    let a = tokio::spawn({
        let (s, h) = (sock.clone(), head.clone());
        async move { exchange(&s, &h).await }
    });
    let b = tokio::spawn({
        let (s, h) = (sock.clone(), head.clone());
        async move { exchange(&s, &h).await }
    });
    // Both wait on the one question; nothing reached the destination meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gate.asked.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never asked");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    tx.send(true).unwrap();
    for t in [a, b] {
        let out = t.await.unwrap();
        assert!(out.starts_with("echo: GET /x HTTP/1.1"), "{out}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert!(gate.asked.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn a_denied_question_is_a_403_with_the_deciders_reason() {
    let (port, seen) = echo_server().await;
    let (_tx, rx) = watch::channel(true);
    let gate = Arc::new(Gate {
        asked: AtomicUsize::new(0),
        answer: Answer::Deny("agent-team: denied by the operator".into()),
        go: rx,
    });
    let (_d, sock) = proxy(listed(Mode::Ask, &[]), Some(gate), Limits::default());
    let out = exchange(&sock, &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n")).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.ends_with("agent-team: denied by the operator\n"),
        "{out}"
    );
    // Nobody to ask: refused.
    let (_d2, sock2) = proxy(listed(Mode::Ask, &[]), None, Limits::default());
    let out = exchange(
        &sock2,
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 403") && out.contains("nobody can be asked"),
        "{out}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bad_input_gets_a_status_never_a_panic() {
    let (_d, sock) = proxy(
        listed(Mode::Open, &[]),
        None,
        Limits {
            head_bytes: 256,
            ..Limits::default()
        },
    );
    let long = format!("GET http://a/ HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(1000));
    for (head, status) in [
        ("\r\n\r\n", "400"),
        ("GET / HTTP/1.1\r\n\r\n", "400"),
        ("GET https://a/ HTTP/1.1\r\n\r\n", "400"),
        ("CONNECT a HTTP/1.1\r\n\r\n", "400"),
        ("CONNECT a:99999 HTTP/1.1\r\n\r\n", "400"),
        ("CONNECT a:1 HTTP/2\r\n\r\n", "400"),
        ("GET http://u:p@a/ HTTP/1.1\r\n\r\n", "400"),
        ("\u{1}\u{2}\u{3} x y\r\n\r\n", "400"),
        ("GET http://[::1/ HTTP/1.1\r\n\r\n", "400"),
        (long.as_str(), "431"),
    ] {
        let out = exchange(&sock, head).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head:?}: {out}"
        );
    }
    // A closed port: 502 with the reason.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let out = exchange(&sock, &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n")).await;
    assert!(
        out.starts_with("HTTP/1.1 502") && out.contains("cannot connect"),
        "{out}"
    );
}

#[tokio::test]
async fn a_head_that_never_ends_is_cut_off() {
    let (_d, sock) = proxy(
        listed(Mode::Open, &[]),
        None,
        Limits {
            head_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
    );
    let mut c = UnixStream::connect(&sock).await.unwrap();
    c.write_all(b"GET http://a/ HTTP/1.1\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("the proxy kept the connection")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"));
}
