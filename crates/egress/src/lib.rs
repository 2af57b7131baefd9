//! The team's egress proxy: the only way out of an agent's sandbox (issue 62, "network by
//! asking"). The sandbox has a network namespace of its own; a forwarder inside
//! (`agent-team-bridge net`) carries its loopback proxy port to a Unix socket the daemon serves
//! here, one per agent, so the daemon knows who asks.
//!
//! It speaks the two forms of HTTP proxying every client knows: `CONNECT host:port` (a tunnel,
//! for TLS and anything else) and absolute-form plain HTTP (`GET http://host:port/path`). Each
//! destination is checked by the [`Policy`] before a byte goes out; one off the list is refused
//! (mode `list`) or asked through [`Ask`] (mode `ask`: the daemon raises a permission request).
//! A refusal is a `403` whose one-line body says how to allow it. Bounded: the request head's
//! size and the time to send it, the time to connect, the connections at once; no input panics.

mod policy;

pub use policy::{Destination, Mode, Pattern, PatternError, Policy, Verdict, not_listed};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::{Semaphore, watch};

/// What whoever decides says of a destination off the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Through.
    Allow,
    /// Refused, with the one-line reason the client gets.
    Deny(String),
}

/// The future an [`Ask`] returns.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send + 'static>>;

/// Whoever decides a destination off the list in mode `ask` (the daemon: a permission request
/// for the agent whose socket this is). Connections to the same destination that wait at once
/// share one question.
pub trait Ask: Send + Sync + 'static {
    /// The decision on `dest`, however long it takes.
    fn ask(&self, dest: &Destination) -> AnswerFuture;
}

/// The proxy's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes a request head may have.
    pub head_bytes: usize,
    /// The time a client has to send its whole request head.
    pub head_timeout: Duration,
    /// The time to connect to a destination (name resolution included).
    pub connect_timeout: Duration,
    /// Connections served at once; more are refused with `503`.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_bytes: 16 * 1024,
            head_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            connections: 256,
        }
    }
}

/// Why a connection ended without reaching its destination.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's or the destination's socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The request was refused (the client got this status and reason).
    #[error("{status} {reason}")]
    Refused {
        /// The HTTP status sent.
        status: u16,
        /// The one-line reason sent.
        reason: String,
    },
}

/// One agent's proxy: its policy, who decides for it, and its bounds.
pub struct Proxy {
    policy: RwLock<Policy>,
    ask: Option<Arc<dyn Ask>>,
    limits: Limits,
    pending: Arc<Mutex<HashMap<Destination, watch::Receiver<Option<Answer>>>>>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy for `policy`, asking `ask` in mode `ask` (none: what would be asked is refused).
    pub fn new(policy: Policy, ask: Option<Arc<dyn Ask>>, limits: Limits) -> Arc<Proxy> {
        Arc::new(Proxy {
            policy: RwLock::new(policy),
            ask,
            slots: Arc::new(Semaphore::new(limits.connections.max(1))),
            limits,
            pending: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Replaces the policy (the team file changed); connections already through stay.
    pub fn set_policy(&self, policy: Policy) {
        if let Ok(mut p) = self.policy.write() {
            *p = policy;
        }
    }

    /// Serves `listener` until the returned future is dropped (and with it every connection).
    pub async fn serve(self: Arc<Self>, listener: UnixListener) -> std::io::Result<()> {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(s) => s,
                        Err(e) if transient(&e) => {
                            tracing::debug!("egress proxy: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let me = self.clone();
                    conns.spawn(async move {
                        if let Err(e) = me.handle(stream).await {
                            tracing::debug!("egress proxy: {e}");
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    /// One client connection: its request head read, its destination checked, then the bytes
    /// carried both ways until either side ends.
    pub async fn handle<S>(&self, mut client: S) -> Result<(), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            return refuse(
                &mut client,
                503,
                "agent-team: the proxy is busy; try again".into(),
            )
            .await;
        };
        let head = tokio::time::timeout(
            self.limits.head_timeout,
            read_head(&mut client, self.limits.head_bytes),
        )
        .await;
        let (head, rest) = match head {
            Err(_) => {
                let why = "agent-team: the request head took too long".to_string();
                return refuse(&mut client, 408, why).await;
            }
            Ok(Err(HeadError::Io(e))) => return Err(e.into()),
            Ok(Err(HeadError::TooLarge)) => {
                let why = format!(
                    "agent-team: the request head is over {} bytes",
                    self.limits.head_bytes
                );
                return refuse(&mut client, 431, why).await;
            }
            Ok(Ok(h)) => h,
        };
        let req = match Request::parse(&head) {
            Ok(r) => r,
            Err(why) => return refuse(&mut client, 400, format!("agent-team: {why}")).await,
        };
        if let Answer::Deny(why) = self.decide(&req.dest).await {
            return refuse(&mut client, 403, why).await;
        }
        let connect = tokio::time::timeout(
            self.limits.connect_timeout,
            TcpStream::connect((req.dest.host.as_str(), req.dest.port)),
        )
        .await;
        let mut upstream = match connect {
            Err(_) => {
                let why = format!("agent-team: connecting to {} timed out", req.dest);
                return refuse(&mut client, 504, why).await;
            }
            Ok(Err(e)) => {
                let why = format!("agent-team: cannot connect to {}: {e}", req.dest);
                return refuse(&mut client, 502, why).await;
            }
            Ok(Ok(s)) => s,
        };
        let _ = upstream.set_nodelay(true);
        match &req.forward {
            None => {
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await?;
            }
            Some(head) => upstream.write_all(head).await?,
        }
        if !rest.is_empty() {
            upstream.write_all(&rest).await?;
        }
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        Ok(())
    }

    /// The decision on `dest`: the policy's, else the one question shared by every connection
    /// waiting on it now.
    async fn decide(&self, dest: &Destination) -> Answer {
        let verdict = match self.policy.read() {
            Ok(p) => p.check(dest),
            Err(_) => Verdict::Deny("agent-team: the proxy's policy is unreadable".into()),
        };
        match verdict {
            Verdict::Allow => return Answer::Allow,
            Verdict::Deny(why) => return Answer::Deny(why),
            Verdict::Ask => {}
        }
        let Some(ask) = &self.ask else {
            return Answer::Deny(format!(
                "agent-team: network access to {dest} needs a decision and nobody can be asked; \
                 add it to the team file (`[sandbox.network] allow = [\"{}\"]`)",
                dest.host
            ));
        };
        // The question runs on its own: a client that leaves does not take it from the others.
        let mut rx = {
            let Ok(mut pending) = self.pending.lock() else {
                return Answer::Deny("agent-team: the proxy is broken".into());
            };
            match pending.get(dest) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pending.insert(dest.clone(), rx.clone());
                    let question = ask.ask(dest);
                    let (pending, dest) = (self.pending.clone(), dest.clone());
                    tokio::spawn(async move {
                        let answer = question.await;
                        if let Ok(mut pending) = pending.lock() {
                            pending.remove(&dest);
                        }
                        let _ = tx.send(Some(answer));
                    });
                    rx
                }
            }
        };
        let answer = match rx.wait_for(Option::is_some).await {
            Ok(a) => a.clone(),
            Err(_) => None,
        };
        answer.unwrap_or_else(|| {
            Answer::Deny(format!(
                "agent-team: no decision on network access to {dest}"
            ))
        })
    }
}

/// Whether an accept error passes (a connection reset before it was taken, descriptors
/// running out for a moment).
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    // ENFILE (23), EMFILE (24).
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24))
}

/// A refusal: `status`, the one-line reason as the body, the connection closed.
async fn refuse<S: AsyncWrite + Unpin>(
    client: &mut S,
    status: u16,
    reason: String,
) -> Result<(), Error> {
    let text = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    // One line, whatever the reason holds.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = format!("{reason}\n");
    let head = format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(head.as_bytes()).await;
    let _ = client.write_all(body.as_bytes()).await;
    let _ = client.shutdown().await;
    Err(Error::Refused { status, reason })
}

enum HeadError {
    Io(std::io::Error),
    TooLarge,
}

/// The request head (through its blank line) and whatever came after it in the same reads.
async fn read_head<S: AsyncRead + Unpin>(
    client: &mut S,
    max: usize,
) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the client closed before its request head ended",
            )));
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_blank_line(&buf[from..]).map(|e| e + from) {
            if end > max {
                return Err(HeadError::TooLarge);
            }
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The end (exclusive) of the first `\r\n\r\n` (or bare `\n\n`) in `b`.
fn find_blank_line(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// A proxy request: where it goes and, for plain HTTP, the head to send there.
#[derive(Debug)]
struct Request {
    dest: Destination,
    /// None: a `CONNECT` tunnel. Some: the origin-form head for the destination.
    forward: Option<Vec<u8>>,
}

impl Request {
    fn parse(head: &[u8]) -> Result<Request, String> {
        let mut lines = head
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let first = lines.next().unwrap_or_default();
        let first = std::str::from_utf8(first)
            .ok()
            .filter(|l| l.bytes().all(|b| (0x21..0x7f).contains(&b) || b == b' '))
            .ok_or("the request line is not printable ASCII")?;
        let mut parts = first.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("not an HTTP request line: {first:?}"));
        };
        if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || method.is_empty() {
            return Err(format!("not an HTTP/1 request line: {first:?}"));
        }
        if method.eq_ignore_ascii_case("CONNECT") {
            let dest = Destination::parse(target, None)
                .ok_or_else(|| format!("CONNECT needs host:port, not {target:?}"))?;
            return Ok(Request {
                dest,
                forward: None,
            });
        }
        let lower = target.get(..7).map(str::to_ascii_lowercase);
        if lower.as_deref() != Some("http://") {
            return Err(format!(
                "this is a proxy: ask for http://host/path or CONNECT host:port, not {target:?}"
            ));
        }
        let after = &target[7..];
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let (authority, path) = after.split_at(end);
        if authority.contains('@') {
            return Err("credentials in the address are not sent".into());
        }
        let dest = Destination::parse(authority, Some(80))
            .ok_or_else(|| format!("not a destination: {authority:?}"))?;
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        let mut out = format!("{method} {path} {version}\r\n").into_bytes();
        let mut host = false;
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive"
            ) {
                continue;
            }
            host |= name == "host";
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        if !host {
            out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
        }
        // One request per connection: the next may be for another destination.
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        Ok(Request {
            dest,
            forward: Some(out),
        })
    }
}

#[cfg(test)]
mod tests;
