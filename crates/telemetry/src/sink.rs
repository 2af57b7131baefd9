//! A tiny local OTLP/HTTP receiver for tests and the bench (feature `sink`): it listens on
//! 127.0.0.1, answers every `POST` with `200` and an empty protobuf body, and keeps each
//! request's path and body for the caller to decode. Standard library only.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the sink took: its path (`/v1/traces`, `/v1/metrics`) and its body.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path.
    pub path: String,
    /// The body as sent (protobuf).
    pub body: Vec<u8>,
}

/// What the sink took so far, and word when it takes more.
#[derive(Default)]
struct Log {
    got: Mutex<Vec<Received>>,
    more: Condvar,
}

/// The receiver: serves until the process ends.
pub struct Sink {
    addr: std::net::SocketAddr,
    log: Arc<Log>,
    /// Keep the bodies (`false`: only count them, for the bench).
    keep: bool,
}

impl Sink {
    /// Listens on a free port of 127.0.0.1; `keep`: keep the bodies, else only their paths.
    pub fn start(keep: bool) -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let log: Arc<Log> = Default::default();
        let l = log.clone();
        std::thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let l = l.clone();
                    std::thread::spawn(move || serve(stream, &l, keep));
                }
            })?;
        Ok(Sink { addr, log, keep })
    }

    /// The base address to give as the OTLP endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.log
            .got
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until `done` holds for what was received, at most `within`; whether it did.
    pub fn wait_for(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let end = Instant::now() + within;
        let mut got = self
            .log
            .got
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if done(&got) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            got = self
                .log
                .more
                .wait_timeout(got, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Whether bodies are kept.
    pub fn keeps_bodies(&self) -> bool {
        self.keep
    }
}

/// Serves one connection's requests (keep-alive) until it closes.
fn serve(stream: TcpStream, log: &Log, keep: bool) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut got = log
                .got
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            got.push(Received {
                path,
                body: if keep { body } else { Vec::new() },
            });
            log.more.notify_all();
        }
        let reply =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if out.write_all(reply).is_err() {
            return;
        }
    }
}
