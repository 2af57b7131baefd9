//! The server's connections: each accepted socket is served by hyper's HTTP/1 connection
//! (with its header-read timeout), under an idle timeout and a connection cap. When the cap is
//! reached, the oldest connection that has not yet made a request with the right token is
//! closed to make room, so idle or half-sent connections held by another local process cannot
//! keep an authorised client out.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;

/// The limits on the server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long a client has to send a whole request head, from the moment the server waits
    /// for one (a new connection, or a kept-alive one between requests).
    pub header_timeout: Duration,
    /// A connection on which no byte moved either way for this long is closed (a stalled
    /// request body, a client that stopped reading a response).
    pub idle_timeout: Duration,
    /// At most this many connections at once.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The largest request head (and the most a connection buffers); a bigger head gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A listener the server accepts connections from.
pub trait Accept: Send + 'static {
    /// An accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        let (s, _) = tokio::net::TcpListener::accept(self).await?;
        // Small writes (events) must not wait for delayed ACKs.
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Carried by every request of a connection: the token check marks the connection as
/// authorised, which keeps it from being closed to make room.
#[derive(Clone)]
pub(crate) struct ConnAuth(Arc<AtomicBool>);

impl ConnAuth {
    /// Notes that the connection made a request with the right token.
    pub(crate) fn authorised(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One open connection as the cap sees it.
struct Entry {
    authorised: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Entry>,
}

/// The connections of one server: the cap and who makes room.
#[derive(Default)]
pub(crate) struct Conns(Mutex<Registry>);

/// A connection let in: its id, its authorised flag and the signal that closes it.
struct Admitted {
    id: u64,
    authorised: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

impl Conns {
    /// Lets a new connection in: at the cap, the oldest connection that is not authorised is
    /// closed to make room; `None` when every open connection is authorised.
    fn admit(&self, max: usize) -> Option<Admitted> {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.open.len() >= max.max(1) {
            let oldest = r
                .open
                .iter()
                .find(|(_, e)| !e.authorised.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(e) = r.open.remove(&oldest) {
                e.evict.notify_one();
            }
        }
        let id = r.next;
        r.next += 1;
        let entry = Entry {
            authorised: Arc::default(),
            evict: Arc::default(),
        };
        let admitted = Admitted {
            id,
            authorised: entry.authorised.clone(),
            evict: entry.evict.clone(),
        };
        r.open.insert(id, entry);
        Some(admitted)
    }

    /// Closes the oldest connection that is not authorised (out of descriptors); false when
    /// there is none.
    fn evict_oldest(&self) -> bool {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = r
            .open
            .iter()
            .find(|(_, e)| !e.authorised.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| r.open.remove(&id)) {
            Some(e) => {
                e.evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// Forgets a connection that ended.
    fn closed(&self, id: u64) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.open.remove(&id);
    }
}

/// Removes the connection from the registry when its task ends.
struct Leave(Arc<Conns>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.closed(self.1);
    }
}

/// An I/O object that notes when a byte last moved, for the idle timeout.
struct Watched<T> {
    inner: T,
    /// Milliseconds since `base` at the last byte read or written.
    last: Arc<AtomicU64>,
    base: Instant,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a client at the cap gets when every open connection is authorised: `503` with
/// `limit_exceeded`, and the connection closes.
fn full_response(max: usize) -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "limit_exceeded",
        "message": format!("the server already serves {max} connections with authorised clients; try again later"),
        "details": {"limit": "max_connections", "max": max},
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether an accept error means the process (or the system) is out of descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Serves `app` on every connection `listener` accepts, under `limits`, for as long as the
/// future is polled (it does not end by itself). A failed accept is logged at most once a
/// second and tried again; out of descriptors, the oldest unauthorised connection is closed
/// first.
pub async fn serve<L: Accept>(mut listener: L, app: Router, limits: ConnLimits) -> io::Result<()> {
    let conns = Arc::new(Conns::default());
    let mut last_warning: Option<Instant> = None;
    loop {
        let io = match listener.accept().await {
            Ok(io) => io,
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("cannot accept a connection: {e}");
                    last_warning = Some(Instant::now());
                }
                let pause = if out_of_descriptors(&e) && conns.evict_oldest() {
                    Duration::from_millis(1)
                } else {
                    Duration::from_millis(50)
                };
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Some(admitted) = conns.admit(limits.max_connections) else {
            // Every slot holds an authorised client: tell this one, briefly, and close.
            tokio::spawn(async move {
                let mut io = io;
                let answer = full_response(limits.max_connections);
                let _ = tokio::time::timeout(Duration::from_secs(1), io.write_all(&answer)).await;
            });
            continue;
        };
        let leave = Leave(conns.clone(), admitted.id);
        tokio::spawn(connection(io, app.clone(), limits, admitted, leave));
    }
}

/// Serves one connection until it ends, is idle too long or is closed to make room.
async fn connection<I>(io: I, app: Router, limits: ConnLimits, admitted: Admitted, leave: Leave)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _leave = leave;
    let base = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = Watched {
        inner: io,
        last: last.clone(),
        base,
    };
    let auth = ConnAuth(admitted.authorised.clone());
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(auth.clone());
            tower::ServiceExt::oneshot(app.clone(), req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A request head of at most 64 KiB (hyper's default lets each connection buffer
        // ~400 KiB of headers: 1024 half-sent heads would hold 400 MiB).
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let every = (limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = admitted.evict.notified() => {
                tracing::debug!("closed a connection without an authorised request to make room");
                return;
            }
            _ = tick.tick() => {
                let quiet_ms = u64::try_from(base.elapsed().as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_sub(last.load(Ordering::Relaxed));
                if Duration::from_millis(quiet_ms) >= limits.idle_timeout {
                    tracing::debug!("closed a connection idle for {quiet_ms} ms");
                    return;
                }
            }
        }
    }
}
