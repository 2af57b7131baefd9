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
    /// What holds back an in-memory connection's frames beyond a batch's first [`PACE`];
    /// only an in-process agent's connection has one ([`ConnHandle::in_process`]).
    pacer: Option<Arc<Pacer>>,
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
            pacer: None,
        }
    }

    /// The handle of an in-memory connection from this process ([`ConnHandle::in_process`]),
    /// its frames paced by the core's `pacer`.
    pub(crate) fn new_in_process(
        tx: mpsc::UnboundedSender<Outbound>,
        limit: usize,
        pacer: Arc<Pacer>,
    ) -> Self {
        ConnHandle {
            pacer: Some(pacer),
            ..Self::new(tx, limit)
        }
    }

    /// Hands `out` to the writer, or to the pacer that holds it back.
    fn push(&self, out: Outbound) -> bool {
        match &self.pacer {
            Some(p) => p.send(&self.tx, out),
            None => self.tx.send(out).is_ok(),
        }
    }

    /// Whether the client shares the daemon's process and runtime (an in-process agent's
    /// in-memory connection): it ends with the daemon and runs only when the core yields,
    /// never during a commit, so what it is told can reach nobody beyond that process before
    /// the core's next commit returns.
    pub(crate) fn in_process(&self) -> bool {
        self.pacer.is_some()
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
        self.push(Outbound::Frame(bytes))
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
        let _ = self.push(Outbound::Close);
    }
}

/// How many frames for in-process agents a batch hands out before the rest wait for the core
/// to let the runtime turn ([`Pacer`]).
pub(crate) const PACE: usize = 32;

/// Holds back the frames for in-process connections beyond the first [`PACE`] of a batch and
/// lets them go [`PACE`] at a time, each time the core lets the runtime turn. A broadcast to a
/// thousand in-process agents then starts their turns a slice at a time, each slice's model
/// requests leaving while the core hands out the next, instead of every stage (the frames,
/// the agents' wake, their requests' bodies, the writes) running for all of them before the
/// next stage starts for any. A connection's frames keep their order: once any frame is held,
/// every later one queues behind it.
#[derive(Debug, Default)]
pub(crate) struct Pacer(std::sync::Mutex<Paced>);

#[derive(Debug, Default)]
struct Paced {
    /// Frames handed out at once since the core last let the runtime turn.
    sent: usize,
    held: std::collections::VecDeque<(mpsc::UnboundedSender<Outbound>, Outbound)>,
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Paced> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `out` on `tx` now, or holds it; false if the connection is gone.
    fn send(&self, tx: &mpsc::UnboundedSender<Outbound>, out: Outbound) -> bool {
        let mut p = self.lock();
        if p.held.is_empty() && p.sent < PACE {
            p.sent += 1;
            return tx.send(out).is_ok();
        }
        if tx.is_closed() {
            return false;
        }
        p.held.push_back((tx.clone(), out));
        true
    }

    /// Whether frames are held.
    pub(crate) fn holds(&self) -> bool {
        !self.lock().held.is_empty()
    }

    /// The runtime turned: lets the next [`PACE`] held frames go (fewer held leave the rest of
    /// the slice to frames sent at once until the next turn).
    pub(crate) fn release(&self) {
        let mut p = self.lock();
        p.sent = 0;
        while p.sent < PACE {
            let Some((tx, out)) = p.held.pop_front() else {
                break;
            };
            let _ = tx.send(out);
            p.sent += 1;
        }
    }

    /// Lets every held frame go (the core is ending).
    pub(crate) fn release_all(&self) {
        let mut p = self.lock();
        p.sent = 0;
        for (tx, out) in p.held.drain(..) {
            let _ = tx.send(out);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Vec<u8> {
        vec![n]
    }

    /// What the writer of a connection got so far, frames as their first byte (`None`: close).
    fn got(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Vec<Option<u8>> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            out.push(match o {
                Outbound::Frame(b) => Some(b[0]),
                Outbound::Close => None,
            });
        }
        out
    }

    #[test]
    fn frames_beyond_a_slice_wait_for_the_release_and_keep_each_connections_order() {
        let pacer = Arc::new(Pacer::default());
        let (a_tx, mut a_rx) = mpsc::unbounded_channel();
        let (b_tx, mut b_rx) = mpsc::unbounded_channel();
        let a = ConnHandle::new_in_process(a_tx, usize::MAX, pacer.clone());
        let b = ConnHandle::new_in_process(b_tx, usize::MAX, pacer.clone());
        for _ in 0..PACE {
            assert!(a.send(frame(1)));
        }
        assert_eq!(got(&mut a_rx).len(), PACE, "a slice goes at once");
        assert!(!pacer.holds());
        // Beyond it, frames wait, and a connection's later frames (its close too) queue
        // behind its held ones.
        assert!(b.send(frame(2)));
        assert!(a.send(frame(3)));
        a.close();
        assert!(got(&mut b_rx).is_empty() && got(&mut a_rx).is_empty());
        assert!(pacer.holds());
        assert_eq!(a.queued(), PACE + 1, "held frames count as unwritten");
        pacer.release();
        assert!(!pacer.holds());
        assert_eq!(got(&mut b_rx), vec![Some(2)]);
        assert_eq!(got(&mut a_rx), vec![Some(3), None]);
        // A released slice's room: the next frames go at once again.
        assert!(b.send(frame(4)));
        assert_eq!(got(&mut b_rx), vec![Some(4)]);
    }

    #[test]
    fn a_release_lets_one_slice_go_and_the_end_lets_everything_go() {
        let pacer = Arc::new(Pacer::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let h = ConnHandle::new_in_process(tx, usize::MAX, pacer.clone());
        for i in 0..(3 * PACE) {
            assert!(h.send(frame(i as u8)));
        }
        assert_eq!(got(&mut rx).len(), PACE);
        pacer.release();
        assert_eq!(got(&mut rx).len(), PACE, "one slice per release");
        assert!(pacer.holds());
        // The slice released just now used the room: a new frame queues behind the rest.
        assert!(h.send(frame(0)));
        pacer.release_all();
        let rest = got(&mut rx);
        assert_eq!(rest.len(), PACE + 1);
        assert_eq!(
            rest[0],
            Some((2 * PACE) as u8),
            "in the order they were sent"
        );
        assert!(!pacer.holds());
    }

    #[test]
    fn a_frame_for_a_connection_gone_is_refused_not_held() {
        let pacer = Arc::new(Pacer::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let h = ConnHandle::new_in_process(tx, usize::MAX, pacer.clone());
        for _ in 0..PACE {
            h.send(frame(1));
        }
        drop(rx);
        assert!(!h.send(frame(2)));
        assert!(!pacer.holds());
    }
}
