//! Connections from inside the daemon's own process: its in-process agents reach their core
//! through memory (a tokio duplex pipe, the same frames) instead of the team's socket, so a
//! request costs no system call and waits for no poll of the runtime's sockets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::DuplexStream;

/// Opens one in-memory connection to a daemon served in this process and has its far end
/// served; `None` when it no longer takes connections.
pub type Connector = Arc<dyn Fn() -> Option<DuplexStream> + Send + Sync>;

/// The daemons this process serves, by socket path (tests run several in one process).
static SERVED: Mutex<Vec<(PathBuf, Connector)>> = Mutex::new(Vec::new());

/// Keeps a daemon reachable through memory until dropped.
#[must_use = "the daemon is reachable through memory only while this is kept"]
pub struct Registration {
    socket: PathBuf,
}

/// Makes the daemon listening on `socket` reachable through memory from this process: a
/// client connecting to that path here gets a connection from `connector` instead.
pub fn serve(socket: &Path, connector: Connector) -> Registration {
    if let Ok(mut served) = SERVED.lock() {
        served.retain(|(p, _)| p != socket);
        served.push((socket.to_path_buf(), connector));
    }
    Registration {
        socket: socket.to_path_buf(),
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut served) = SERVED.lock() {
            served.retain(|(p, _)| *p != self.socket);
        }
    }
}

/// An in-memory connection to the daemon of `socket`, when this process serves it.
pub(crate) fn connect(socket: &Path) -> Option<DuplexStream> {
    let connector = SERVED
        .lock()
        .ok()?
        .iter()
        .find(|(p, _)| p == socket)
        .map(|(_, c)| c.clone())?;
    connector()
}
