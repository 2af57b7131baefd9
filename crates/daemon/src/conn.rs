//! One client connection: the peer-uid check, the handshake, reading frames into the core's
//! queue and writing what the core sends back. Bad input gets a structured error, never a panic.

use crate::core::{CoreMsg, CoreTx};
use agent_team_protocol::frame::{self, FrameError};
use agent_team_protocol::{ClientFrame, ErrorBody, ErrorCode, ServerFrame, Welcome};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Stream as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};

/// Identifies a connection inside the daemon.
pub type ConnId = u64;

/// What the core sends to a connection's writer.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded frame.
    Frame(Vec<u8>),
    /// Flush and close the connection.
    Close,
}

/// The sending side of a connection, held by the core.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: Arc<AtomicUsize>,
    /// Set when the client fell hopelessly behind: the connection is cut at once, without
    /// waiting for the backlog (which the client is not reading) to be written first.
    cut: Arc<tokio::sync::watch::Sender<bool>>,
    /// How many unread frames cut the connection.
    limit: usize,
}

/// By default, a client that lets this many frames pile up unread is disconnected rather than
/// let the daemon's memory grow without bound.
pub const MAX_QUEUED_FRAMES: usize = 200_000;

impl ConnHandle {
    fn new(tx: mpsc::UnboundedSender<Outbound>, limit: usize) -> Self {
        ConnHandle {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            cut: Arc::new(tokio::sync::watch::channel(false).0),
            limit,
        }
    }

    /// Queues an encoded frame; returns false if the connection is gone or hopelessly behind
    /// (which cuts it).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        if *self.cut.borrow() {
            return false;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) > self.limit {
            tracing::warn!("a client stopped reading; cutting its connection");
            self.cut.send_replace(true);
            return false;
        }
        self.tx.send(Outbound::Frame(bytes)).is_ok()
    }

    /// Frames queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Resolves once the connection is cut.
    async fn cut_off(&self) {
        let mut rx = self.cut.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Encodes and queues a frame.
    pub fn send_frame(&self, frame: &ServerFrame) -> bool {
        match frame::encode(frame) {
            Ok(b) => self.send(b),
            Err(e) => {
                tracing::error!("cannot encode a frame: {e}");
                false
            }
        }
    }

    /// Asks the writer to flush and close.
    pub fn close(&self) {
        let _ = self.tx.send(Outbound::Close);
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(stream: Stream, id: ConnId, core: CoreTx, max_queued: usize) {
    let my_uid = nix::unistd::geteuid().as_raw();
    let peer = stream.peer_creds().ok();
    let peer_uid = peer.as_ref().and_then(|c| c.euid());
    let peer_pid = peer.as_ref().and_then(|c| c.pid()).map(|p| p as u32);
    // Splitting is deprecated upstream only because an Arc does the same; we shut the write
    // half down explicitly, which is the behaviour the deprecation note warns about.
    #[allow(deprecated)]
    let (rx_half, tx_half) = stream.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = ConnHandle::new(tx, max_queued);
    let writer = tokio::spawn(write_loop(tx_half, rx, handle.clone()));

    if peer_uid != Some(my_uid) {
        tracing::warn!(
            conn = id,
            ?peer_uid,
            "refused a connection from another user"
        );
        handle.send_frame(&conn_error(
            ErrorCode::Unauthorized,
            format!("this daemon serves uid {my_uid} only"),
        ));
        handle.close();
        let _ = writer.await;
        return;
    }

    let mut reader = BufReader::with_capacity(64 * 1024, rx_half);
    if handshake(&mut reader, id, &handle, peer_pid, &core)
        .await
        .is_some()
    {
        tokio::select! {
            _ = read_loop(&mut reader, id, &handle, &core) => {}
            _ = handle.cut_off() => {}
        }
        let _ = core.send(CoreMsg::Closed { conn: id });
    }
    handle.close();
    let _ = writer.await;
}

/// Reads the hello and lets the core judge it; returns the welcome on success.
async fn handshake<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    id: ConnId,
    handle: &ConnHandle,
    peer_pid: Option<u32>,
    core: &CoreTx,
) -> Option<Welcome> {
    let payload = match frame::tokio_io::read_raw(reader).await {
        Ok(p) => p,
        Err(e) => {
            report_frame_error(handle, e);
            return None;
        }
    };
    let hello = match serde_json::from_slice::<ClientFrame>(&payload) {
        Ok(ClientFrame::Hello(h)) => h,
        Ok(ClientFrame::Request { .. }) => {
            handle.send_frame(&conn_error(
                ErrorCode::Unauthorized,
                "the first frame must be a hello",
            ));
            return None;
        }
        Err(e) => {
            // A hello from another protocol version may not parse as ours: answer that first.
            let value: Option<serde_json::Value> = serde_json::from_slice(&payload).ok();
            let version = value
                .as_ref()
                .and_then(|v| v.get("protocol"))
                .and_then(|p| p.as_u64());
            let code = match version {
                Some(v) if v != u64::from(agent_team_protocol::PROTOCOL_VERSION) => {
                    ErrorCode::UnsupportedVersion
                }
                _ => ErrorCode::BadRequest,
            };
            let message = if code == ErrorCode::UnsupportedVersion {
                format!(
                    "protocol version {} is not supported; this daemon speaks {}",
                    version.unwrap_or(0),
                    agent_team_protocol::PROTOCOL_VERSION
                )
            } else {
                format!("invalid hello: {}", clip(&e.to_string()))
            };
            handle.send_frame(&ServerFrame::Error {
                error: ErrorBody::with_details(
                    code,
                    message,
                    serde_json::json!({"supported": [agent_team_protocol::PROTOCOL_VERSION]}),
                ),
            });
            return None;
        }
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    if core
        .send(CoreMsg::Hello {
            conn: id,
            hello,
            peer_pid,
            handle: handle.clone(),
            reply: reply_tx,
        })
        .is_err()
    {
        return None;
    }
    match reply_rx.await {
        Ok(Ok(welcome)) => Some(welcome),
        Ok(Err(error)) => {
            handle.send_frame(&ServerFrame::Error { error });
            None
        }
        Err(_) => None,
    }
}

async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    id: ConnId,
    handle: &ConnHandle,
    core: &CoreTx,
) {
    loop {
        let payload = match frame::tokio_io::read_raw(reader).await {
            Ok(p) => p,
            Err(e) => {
                report_frame_error(handle, e);
                return;
            }
        };
        match serde_json::from_slice::<ClientFrame>(&payload) {
            Ok(ClientFrame::Request {
                id: req_id,
                body,
                rid,
            }) => {
                if core
                    .send(CoreMsg::Request {
                        conn: id,
                        id: req_id,
                        req: body,
                        rid,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(ClientFrame::Hello(_)) => {
                handle.send_frame(&conn_error(
                    ErrorCode::BadRequest,
                    "this connection already said hello",
                ));
            }
            Err(e) => {
                // Answer on the request id when one can be read, so the client can match it.
                let req_id = serde_json::from_slice::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()));
                let error = ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!("invalid request: {}", clip(&e.to_string())),
                );
                let frame = match req_id {
                    Some(rid) => ServerFrame::response(rid, Err(error)),
                    None => ServerFrame::Error { error },
                };
                handle.send_frame(&frame);
            }
        }
    }
}

/// The longest parse error quoted back: serde quotes the offending input, which can be nearly
/// a whole frame, and an answer over the frame limit would never be sent.
const MAX_ERROR_TEXT: usize = 1024;

/// Cuts `text` to [`MAX_ERROR_TEXT`] bytes at a character boundary.
fn clip(text: &str) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text.to_string();
    }
    let mut end = MAX_ERROR_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

fn report_frame_error(handle: &ConnHandle, e: FrameError) {
    match e {
        FrameError::Closed | FrameError::Truncated => {}
        FrameError::Io(err) => tracing::debug!("connection read failed: {err}"),
        other => {
            handle.send_frame(&conn_error(
                ErrorCode::BadRequest,
                format!("{other}; closing the connection"),
            ));
        }
    }
}

fn conn_error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        error: ErrorBody::new(code, message),
    }
}

async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    w: W,
    rx: mpsc::UnboundedReceiver<Outbound>,
    handle: ConnHandle,
) {
    // Whatever the writer is waiting for (the next frame, or a client that does not read),
    // cutting the connection ends it; dropping the write half closes the socket.
    tokio::select! {
        _ = write_frames(w, rx, &handle.queued) => {}
        _ = handle.cut_off() => {}
    }
}

async fn write_frames<W: tokio::io::AsyncWrite + Unpin>(
    w: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    queued: &AtomicUsize,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Write everything already queued, then flush once.
        while let Some(out) = next.take() {
            match out {
                Outbound::Frame(bytes) => {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    if w.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Outbound::Close => {
                    let _ = w.flush().await;
                    let _ = w.shutdown().await;
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
}
