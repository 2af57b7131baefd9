//! Connections from inside the daemon's own process: its in-process agents reach their core
//! through memory instead of the team's socket, so a request costs no system call and waits
//! for no poll of the runtime's sockets. Requests go to the daemon as values (nothing to
//! encode, nothing to parse: most of what an in-process agent says is small and frequent);
//! the daemon's frames come back encoded, as it writes them for every client.

use agent_team_protocol::ClientFrame;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The client's end of one in-memory connection. Dropping `to_daemon` closes the connection,
/// as closing a socket would; the daemon closing it ends `from_daemon`.
pub struct LocalConn {
    /// The client's frames (its hello first), in order; boxed, as the channel holds its
    /// items 32 slots at a time, each the size of a frame (336 bytes).
    pub to_daemon: mpsc::UnboundedSender<Box<ClientFrame>>,
    /// The daemon's frames, each as it goes on the wire (header and JSON payload).
    pub from_daemon: mpsc::Receiver<Vec<u8>>,
}

/// Opens one in-memory connection to a daemon served in this process and has its far end
/// served; `None` when it no longer takes connections.
pub type Connector = Arc<dyn Fn() -> Option<LocalConn> + Send + Sync>;

/// One daemon served in this process: its socket path, which registration made it, and how
/// to reach it.
type Served = (PathBuf, u64, Connector);

/// The daemons this process serves, by socket path (tests run several in one process).
static SERVED: Mutex<Vec<Served>> = Mutex::new(Vec::new());

/// Tells registrations apart, so one dropped late does not remove its successor's.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Keeps a daemon reachable through memory until dropped.
#[must_use = "the daemon is reachable through memory only while this is kept"]
pub struct Registration {
    socket: PathBuf,
    id: u64,
}

/// Makes the daemon listening on `socket` reachable through memory from this process: a
/// client connecting to that path here gets a connection from `connector` instead.
pub fn serve(socket: &Path, connector: Connector) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut served) = SERVED.lock() {
        served.retain(|(p, _, _)| p != socket);
        served.push((socket.to_path_buf(), id, connector));
    }
    Registration {
        socket: socket.to_path_buf(),
        id,
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut served) = SERVED.lock() {
            served.retain(|(p, id, _)| *p != self.socket || *id != self.id);
        }
    }
}

/// An in-memory connection to the daemon of `socket`, when this process serves it.
pub(crate) fn connect(socket: &Path) -> Option<LocalConn> {
    let connector = SERVED
        .lock()
        .ok()?
        .iter()
        .find(|(p, _, _)| p == socket)
        .map(|(_, _, c)| c.clone())?;
    connector()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_dropped_after_its_successor_leaves_the_successor_in_place() {
        let socket = Path::new("/nonexistent/agent-team-local-test.sock");
        let none: Connector = Arc::new(|| None);
        let first = serve(socket, none.clone());
        let second = serve(socket, none);
        let served = |s: &Path| SERVED.lock().unwrap().iter().filter(|e| e.0 == s).count();
        assert_eq!(served(socket), 1, "the second replaced the first");
        drop(first);
        assert_eq!(served(socket), 1, "the late drop left the second's");
        drop(second);
        assert_eq!(served(socket), 0);
    }
}
