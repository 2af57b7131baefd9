//! The tokio client: a background reader routes responses to their callers by id and pushes to
//! a channel, so many requests can be in flight at once and pushes arrive while the caller works.

use crate::ClientError;
use agent_team_protocol::frame::{self, FrameError};
use agent_team_protocol::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Reply, ErrorBody>>>>>>;

/// A cloneable handle on one connection; dropping every clone closes it.
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

/// Where a connection's requests go: encoded onto a socket, or as values to a daemon in this
/// process ([`crate::local`]).
enum Out {
    Bytes(mpsc::UnboundedSender<Vec<u8>>),
    Frames(mpsc::UnboundedSender<Box<ClientFrame>>),
}

impl Out {
    /// Queues `frame`; it fails when the connection is gone or the frame cannot be encoded.
    fn send(&self, frame: ClientFrame) -> Result<(), ClientError> {
        match self {
            Out::Bytes(tx) => tx.send(frame::encode(&frame)?).map_err(|_| closed()),
            Out::Frames(tx) => tx.send(Box::new(frame)).map_err(|_| closed()),
        }
    }
}

struct Inner {
    next_id: AtomicU64,
    pending: Pending,
    out: Out,
    welcome: Welcome,
    /// The welcome's start reads, taken out of it: handed over once ([`AsyncClient::take_start`]).
    start: Mutex<Option<Box<StartReads>>>,
}

impl AsyncClient {
    /// Connects, says hello, and returns the client and the channel pushes arrive on.
    /// The channel closes when the connection ends. A client in the daemon's own process
    /// (its in-process agents) reaches it through memory instead of the socket
    /// ([`crate::local`]).
    pub async fn connect(
        socket: &Path,
        hello: &Hello,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), ClientError> {
        if let Some(conn) = crate::local::connect(socket) {
            return Self::over_local(conn, hello).await;
        }
        // A worker that dialed in reaches its daemon over TLS ([`crate::join`]).
        if let Some(url) = crate::join::routed(socket) {
            let stream =
                crate::join::connect_tls(&url)
                    .await
                    .map_err(|source| ClientError::Connect {
                        path: socket.to_path_buf(),
                        source,
                    })?;
            let (r, w) = tokio::io::split(stream);
            return Self::over(r, w, hello).await;
        }
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        let (r, w) = stream.into_split();
        Self::over(r, w, hello).await
    }

    /// Says hello over an open connection's two halves and starts its reader and writer.
    async fn over<R, W>(
        r: R,
        w: W,
        hello: &Hello,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = BufReader::with_capacity(frame::IO_BUFFER, r);
        let mut writer = BufWriter::with_capacity(frame::IO_BUFFER, w);
        let hello_bytes = frame::encode(&ClientFrame::Hello(hello.clone()))?;
        writer
            .write_all(&hello_bytes)
            .await
            .map_err(FrameError::Io)?;
        writer.flush().await.map_err(FrameError::Io)?;
        let payload = frame::tokio_io::read_raw(&mut reader).await?;
        let welcome = welcome_in(&payload)?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(read_loop(reader, pending.clone(), push_tx));
        tokio::spawn(write_loop(writer, out_rx));
        Ok(Self::made(welcome, pending, Out::Bytes(out_tx), push_rx))
    }

    /// Says hello over an in-memory connection to a daemon in this process and starts its
    /// reader: requests go as values, answers come as the daemon's encoded frames.
    async fn over_local(
        conn: crate::local::LocalConn,
        hello: &Hello,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), ClientError> {
        let crate::local::LocalConn {
            to_daemon,
            mut from_daemon,
        } = conn;
        to_daemon
            .send(Box::new(ClientFrame::Hello(hello.clone())))
            .map_err(|_| closed())?;
        let first = from_daemon.recv().await.ok_or_else(closed)?;
        let welcome = welcome_in(frame_payload(&first)?)?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            while let Some(bytes) = from_daemon.recv().await {
                match frame_payload(&bytes) {
                    Ok(payload) => route(payload, &reader_pending, &push_tx),
                    Err(_) => break,
                }
            }
            fail_pending(&reader_pending);
        });
        Ok(Self::made(
            welcome,
            pending,
            Out::Frames(to_daemon),
            push_rx,
        ))
    }

    /// The client of a welcomed connection.
    fn made(
        mut welcome: Welcome,
        pending: Pending,
        out: Out,
        push_rx: mpsc::UnboundedReceiver<Push>,
    ) -> (Self, mpsc::UnboundedReceiver<Push>) {
        let inner = Inner {
            next_id: AtomicU64::new(0),
            pending,
            out,
            start: Mutex::new(welcome.start.take()),
            welcome,
        };
        (
            AsyncClient {
                inner: Arc::new(inner),
            },
            push_rx,
        )
    }

    /// The daemon's welcome.
    pub fn welcome(&self) -> &Welcome {
        &self.inner.welcome
    }

    /// What the welcome carried for a hello that asked (`start`); `None` after the first call.
    pub fn take_start(&self) -> Option<Box<StartReads>> {
        self.inner.start.lock().ok()?.take()
    }

    /// Makes one request and waits for its answer. A mutating request carries a fresh request
    /// id; to retry one safely after a reconnect use [`AsyncClient::call_with_rid`].
    pub async fn call(&self, req: Request) -> Result<Reply, ClientError> {
        let rid = req.is_mutating().then(crate::new_rid);
        self.call_with_rid(req, rid).await
    }

    /// Queues a request the daemon answers with nothing (`no_reply`: progress events,
    /// statuses), ahead of every request made after it on this connection. It fails only when
    /// the connection is gone or the request cannot be encoded.
    pub fn send_no_reply(&self, req: Request) -> Result<(), ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.out.send(ClientFrame::Request {
            id,
            body: req,
            rid: None,
            no_reply: true,
        })
    }

    /// Makes one request under request id `rid`: the daemon applies a mutating request with a
    /// given id once, and answers every repeat of it with the first reply.
    pub async fn call_with_rid(
        &self,
        req: Request,
        rid: Option<String>,
    ) -> Result<Reply, ClientError> {
        self.queue(req, rid)?.reply().await
    }

    /// Queues one request now, ahead of every request made after it on this connection (the
    /// daemon applies a connection's requests in order), and gives the wait for its answer:
    /// a request that must come first need not be waited for before the next is sent.
    pub fn queue(&self, req: Request, rid: Option<String>) -> Result<Queued, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let request = ClientFrame::Request {
            id,
            body: req,
            rid,
            no_reply: false,
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut guard = self.inner.pending.lock().map_err(|_| closed())?;
            match guard.as_mut() {
                Some(map) => {
                    map.insert(id, tx);
                }
                None => return Err(closed()),
            }
        }
        if let Err(e) = self.inner.out.send(request) {
            // Nothing went out: nobody waits for its answer.
            if let Ok(mut guard) = self.inner.pending.lock()
                && let Some(map) = guard.as_mut()
            {
                map.remove(&id);
            }
            return Err(e);
        }
        Ok(Queued(rx))
    }
}

/// A request sent on an [`AsyncClient`]'s connection, its answer still to come.
pub struct Queued(oneshot::Receiver<Result<Reply, ErrorBody>>);

impl Queued {
    /// Waits for the answer.
    pub async fn reply(self) -> Result<Reply, ClientError> {
        match self.0.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(ClientError::Server(e)),
            Err(_) => Err(closed()),
        }
    }
}

fn closed() -> ClientError {
    ClientError::Frame(FrameError::Closed)
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: BufReader<R>,
    pending: Pending,
    pushes: mpsc::UnboundedSender<Push>,
) {
    loop {
        let payload = match frame::tokio_io::read_raw(&mut reader).await {
            Ok(p) => p,
            Err(_) => break,
        };
        route(&payload, &pending, &pushes);
    }
    fail_pending(&pending);
}

/// The welcome in a connection's first frame from the daemon, or why there is none.
fn welcome_in(payload: &[u8]) -> Result<Welcome, ClientError> {
    match serde_json::from_slice::<ServerFrame>(payload).map_err(FrameError::Json)? {
        ServerFrame::Welcome(w) => Ok(w),
        ServerFrame::Error { error } => Err(ClientError::Refused(error)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// The payload of an encoded frame (its header checked), as an in-memory connection hands it
/// over whole.
fn frame_payload(bytes: &[u8]) -> Result<&[u8], ClientError> {
    let (header, payload) = bytes.split_first_chunk::<4>().ok_or_else(closed)?;
    let len = frame::check_header(*header)?;
    payload
        .get(..len)
        .ok_or(ClientError::Frame(FrameError::Truncated))
}

/// Hands a frame from the daemon to whoever waits for it: an answer to its caller, a push to
/// the channel.
fn route(payload: &[u8], pending: &Pending, pushes: &mpsc::UnboundedSender<Push>) {
    match serde_json::from_slice::<ServerFrame>(payload) {
        Ok(ServerFrame::Response { id, ok, error }) => {
            let tx = pending
                .lock()
                .ok()
                .and_then(|mut g| g.as_mut().and_then(|m| m.remove(&id)));
            if let Some(tx) = tx {
                let outcome = match (ok, error) {
                    (Some(r), _) => Ok(r),
                    (None, Some(e)) => Err(e),
                    (None, None) => Err(ErrorBody::new(ErrorCode::Internal, "empty response")),
                };
                let _ = tx.send(outcome);
            }
        }
        Ok(ServerFrame::Push(p)) => {
            let _ = pushes.send(p);
        }
        Ok(ServerFrame::Error { .. }) | Ok(ServerFrame::Welcome(_)) | Err(_) => {}
    }
}

/// Fails every waiting call and refuses new ones: the connection is gone.
fn fail_pending(pending: &Pending) {
    if let Ok(mut g) = pending.lock() {
        g.take();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: BufWriter<W>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(first) = rx.recv().await {
        if w.write_all(&first).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if w.write_all(&more).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}
