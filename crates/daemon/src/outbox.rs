//! The sending side of a connection: what the core queues for a client and the task that writes
//! it, with the cut-off for a client that stops reading. The core holds only this, never the
//! connection's reader, so the core and the connection tasks do not depend on each other.

use agent_team_protocol::ServerFrame;
use agent_team_protocol::frame;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

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
    /// Bytes queued and not yet written.
    queued_bytes: Arc<AtomicUsize>,
    /// Set when the client fell hopelessly behind: the connection is cut at once, without
    /// waiting for the backlog (which the client is not reading) to be written first.
    cut: Arc<tokio::sync::watch::Sender<bool>>,
    /// How many unread bytes cut the connection.
    limit: usize,
    /// Whether the client runs in the daemon's own process and on its runtime (an in-process
    /// agent's in-memory connection): it ends with the daemon and runs only when the core
    /// yields, never during a commit.
    in_process: bool,
}

/// The unread frames that pace a subscriber's catch-up (half of it at most is sent at once).
pub const MAX_QUEUED_FRAMES: usize = 200_000;

impl ConnHandle {
    /// A handle that cuts the connection when more than `limit` bytes are unread.
    pub(crate) fn new(tx: mpsc::UnboundedSender<Outbound>, limit: usize) -> Self {
        ConnHandle {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            cut: Arc::new(tokio::sync::watch::channel(false).0),
            limit,
            in_process: false,
        }
    }

    /// The handle of an in-memory connection from this process ([`ConnHandle::in_process`]).
    pub(crate) fn new_in_process(tx: mpsc::UnboundedSender<Outbound>, limit: usize) -> Self {
        ConnHandle {
            in_process: true,
            ..Self::new(tx, limit)
        }
    }

    /// Whether the client shares the daemon's process and runtime: what it is told can reach
    /// nobody beyond that process before the core's next commit returns.
    pub(crate) fn in_process(&self) -> bool {
        self.in_process
    }

    /// Queues an encoded frame; returns false if the connection is gone or hopelessly behind
    /// (which cuts it).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        if *self.cut.borrow() {
            return false;
        }
        let unread = self.queued_bytes.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if unread > self.limit {
            tracing::warn!(
                unread,
                limit = self.limit,
                "a client left more than limits.max_unread_bytes unread; cutting its connection"
            );
            self.cut.send_replace(true);
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Outbound::Frame(bytes)).is_ok()
    }

    /// Frames queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Resolves once the connection is cut.
    pub(crate) async fn cut_off(&self) {
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

/// Writes what the core queued for one connection until it closes or is cut.
pub(crate) async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    w: W,
    rx: mpsc::UnboundedReceiver<Outbound>,
    handle: ConnHandle,
) {
    // Whatever the writer is waiting for (the next frame, or a client that does not read),
    // cutting the connection ends it; dropping the write half closes the socket.
    tokio::select! {
        _ = write_frames(w, rx, &handle.queued, &handle.queued_bytes) => {}
        _ = handle.cut_off() => {}
    }
}

async fn write_frames<W: tokio::io::AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    queued: &AtomicUsize,
    queued_bytes: &AtomicUsize,
) {
    // Frames already queued go out in one write; the buffer grows only as far as a batch needs
    // (a connection that never gets a frame, or gets one error, costs almost nothing) and is
    // given back when a batch made it large.
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut close = false;
        while let Some(out) = next.take() {
            match out {
                Outbound::Frame(bytes) => {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    queued_bytes.fetch_sub(bytes.len(), Ordering::Relaxed);
                    if buf.is_empty() && bytes.len() >= BATCH_BYTES {
                        if w.write_all(&bytes).await.is_err() {
                            return;
                        }
                    } else {
                        buf.extend_from_slice(&bytes);
                    }
                }
                Outbound::Close => close = true,
            }
            if buf.len() >= BATCH_BYTES || close {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            if w.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
            if buf.capacity() > 4 * BATCH_BYTES {
                buf.shrink_to(BATCH_BYTES);
            }
        }
        if w.flush().await.is_err() {
            return;
        }
        if close {
            let _ = w.shutdown().await;
            return;
        }
    }
    let _ = w.flush().await;
}

/// Hands what the core queued for an in-memory connection to its client, frame by frame,
/// until it closes or is cut. The channel is bounded, so a client that stops reading leaves
/// frames queued here, where they count towards its cut-off as unwritten bytes do.
pub(crate) async fn forward_loop(
    to: mpsc::Sender<Vec<u8>>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    handle: ConnHandle,
) {
    let forward = async {
        while let Some(out) = rx.recv().await {
            let Outbound::Frame(bytes) = out else {
                return;
            };
            let len = bytes.len();
            if to.send(bytes).await.is_err() {
                return;
            }
            handle.queued.fetch_sub(1, Ordering::Relaxed);
            handle.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    };
    tokio::select! {
        _ = forward => {}
        _ = handle.cut_off() => {}
    }
}

/// Bytes gathered from queued frames before they are written in one go.
const BATCH_BYTES: usize = 64 * 1024;
