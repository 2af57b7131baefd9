//! One client connection: the peer-uid check, the handshake, reading frames into the core's
//! queue and writing what the core sends back. Bad input gets a structured error, never a panic.

use crate::core::{CoreMsg, CoreTx};
use crate::gate::{Admission, Counted, Full, Gate};
use crate::outbox::{ConnHandle, ConnId, forward_loop, write_loop};
use agent_team_protocol::frame::{self, FrameError};
use agent_team_protocol::{ClientFrame, ErrorBody, ErrorCode, ServerFrame, Welcome};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Stream as _;
use std::sync::Arc;
use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot};

/// Serves one accepted connection until it closes.
/// `admission` is the gate's verdict, taken when the connection was accepted (so a flood is
/// counted, and idle connections closed, before any task runs).
pub async fn serve(
    stream: Stream,
    id: ConnId,
    core: CoreTx,
    gate: Arc<Gate>,
    admission: Admission,
) {
    let peer = stream.peer_creds().ok();
    let peer = Peer {
        uid: peer.as_ref().and_then(|c| c.euid()),
        pid: peer.as_ref().and_then(|c| c.pid()).map(|p| p as u32),
        remote: None,
    };
    // Splitting is deprecated upstream only because an Arc does the same; we shut the write
    // half down explicitly, which is the behaviour the deprecation note warns about.
    #[allow(deprecated)]
    let (rx_half, tx_half) = stream.split();
    serve_halves(rx_half, tx_half, peer, id, core, gate, admission).await;
}

/// Serves one connection of the team's TLS endpoint ([`crate::join`]) until it closes: the
/// same handshake, requests and pushes as the socket's, but no peer uid to check; the
/// operator's credential is refused here, and only here is a join token taken.
pub async fn serve_tls<S>(
    stream: S,
    addr: std::net::SocketAddr,
    id: ConnId,
    core: CoreTx,
    gate: Arc<Gate>,
    admission: Admission,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (rx_half, tx_half) = tokio::io::split(stream);
    let peer = Peer {
        uid: None,
        pid: None,
        remote: Some(addr),
    };
    serve_halves(rx_half, tx_half, peer, id, core, gate, admission).await;
}

/// Serves the daemon's end of an in-memory connection opened in this process (an in-process
/// agent's, see [`agent_team_client::local`]): the same gate, hello and core as a socket's,
/// its peer this process. Requests arrive as values (nothing to parse), frames leave encoded
/// as for any client.
pub(crate) async fn serve_local(
    mut requests: mpsc::UnboundedReceiver<Box<ClientFrame>>,
    frames: mpsc::Sender<Vec<u8>>,
    id: ConnId,
    core: CoreTx,
    gate: Arc<Gate>,
    admission: Admission,
    pacer: Arc<crate::outbox::Pacer>,
) {
    let _counted = Counted::in_process(gate.clone(), id);
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = ConnHandle::new_in_process(tx, gate.max_unread_bytes(), pacer);
    let writer = tokio::spawn(forward_loop(frames, rx, handle.clone()));
    let Some(evicted) = admitted(admission, &handle, id) else {
        let _ = writer.await;
        return;
    };
    let first = within_hello_deadline(requests.recv(), &gate, &evicted, &handle)
        .await
        .flatten();
    let welcomed = match first.map(|f| *f) {
        Some(ClientFrame::Hello(hello)) => welcome(
            hello,
            id,
            &handle,
            Some(std::process::id()),
            false,
            &core,
            &gate,
        )
        .await
        .is_some(),
        Some(ClientFrame::Request { .. }) => {
            handle.send_frame(&conn_error(
                ErrorCode::Unauthorized,
                "the first frame must be a hello",
            ));
            false
        }
        None => false,
    };
    if welcomed {
        tokio::select! {
            _ = async {
                while let Some(f) = requests.recv().await {
                    if !take(*f, id, &handle, &core) {
                        return;
                    }
                }
            } => {}
            _ = handle.cut_off() => {}
        }
        let _ = core.send(CoreMsg::Closed { conn: id });
    }
    handle.close();
    let _ = writer.await;
}

/// Who is at the other end of a connection, as the kernel says.
struct Peer {
    uid: Option<u32>,
    pid: Option<u32>,
    /// A connection of the TLS endpoint: its address (the kernel knows no uid for it).
    remote: Option<std::net::SocketAddr>,
}

async fn serve_halves<R, W>(
    rx_half: R,
    tx_half: W,
    peer: Peer,
    id: ConnId,
    core: CoreTx,
    gate: Arc<Gate>,
    admission: Admission,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _counted = Counted::new(gate.clone(), id);
    let my_uid = nix::unistd::geteuid().as_raw();
    let (peer_uid, peer_pid, remote) = (peer.uid, peer.pid, peer.remote.is_some());
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = ConnHandle::new(tx, gate.max_unread_bytes());
    let writer = tokio::spawn(write_loop(tx_half, rx, handle.clone()));

    let Some(evicted) = admitted(admission, &handle, id) else {
        let _ = writer.await;
        return;
    };

    if !remote && peer_uid != Some(my_uid) {
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

    // The hello is read through a small buffer (a connection that never says hello costs
    // little), within the deadline; at the connection cap, the oldest without a hello makes room.
    let mut small = BufReader::with_capacity(4 * 1024, rx_half);
    // The hello is small: a bigger first frame is refused from its header, unread.
    let hello = frame::tokio_io::read_raw_within(&mut small, frame::MAX_HELLO_LEN);
    let first = within_hello_deadline(hello, &gate, &evicted, &handle).await;
    let welcomed = match first {
        Some(payload) => handshake(payload, id, &handle, peer_pid, remote, &core, &gate)
            .await
            .is_some(),
        None => false,
    };
    if welcomed {
        // Whatever the small buffer already holds is read first; larger reads go past it.
        let mut reader = BufReader::with_capacity(frame::IO_BUFFER, small);
        tokio::select! {
            _ = read_loop(&mut reader, id, &handle, &core) => {}
            _ = handle.cut_off() => {}
        }
        let _ = core.send(CoreMsg::Closed { conn: id });
    }
    handle.close();
    let _ = writer.await;
}

/// Judges the first frame (it must be a hello) with the core; returns the welcome on success.
async fn handshake(
    first: Result<Vec<u8>, FrameError>,
    id: ConnId,
    handle: &ConnHandle,
    peer_pid: Option<u32>,
    remote: bool,
    core: &CoreTx,
    gate: &Gate,
) -> Option<Welcome> {
    let payload = match first {
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
    welcome(hello, id, handle, peer_pid, remote, core, gate).await
}

/// Has the core judge a hello; returns the welcome on success (the core queued it for the
/// client), else sends the refusal.
async fn welcome(
    hello: agent_team_protocol::Hello,
    id: ConnId,
    handle: &ConnHandle,
    peer_pid: Option<u32>,
    remote: bool,
    core: &CoreTx,
    gate: &Gate,
) -> Option<Welcome> {
    if let Some(why) = not_here(&hello.auth, remote) {
        tracing::warn!(conn = id, remote, "refused a hello: {why}");
        handle.send_frame(&conn_error(ErrorCode::Unauthorized, why));
        return None;
    }
    let joining = matches!(hello.auth, agent_team_protocol::Auth::Join { .. });
    // A seat in its pool: an agent's socket connection past the cap is refused here; the
    // operator's pool is its own, so `ps` and `down` get in however many agents hold seats.
    let operator = matches!(hello.auth, agent_team_protocol::Auth::Operator { .. });
    if let Err(Full { open, max }) = gate.seat(id, operator) {
        refuse_seat(handle, id, operator, open, max);
        return None;
    }
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
        // A join hello's welcome carries the agent's secret and ends the connection: the
        // worker says hello again with the secret (the core keeps no session for it).
        Ok(Ok(welcome)) if joining => {
            handle.send_frame(&ServerFrame::Welcome(welcome));
            None
        }
        Ok(Ok(welcome)) => Some(welcome),
        Ok(Err(error)) => {
            handle.send_frame(&ServerFrame::Error { error });
            None
        }
        Err(_) => None,
    }
}

/// Why a hello's kind of credential is refused on this kind of connection: the operator's
/// never crosses the network, and a join token is taken only over the TLS endpoint.
fn not_here(auth: &agent_team_protocol::Auth, remote: bool) -> Option<&'static str> {
    match (auth, remote) {
        (agent_team_protocol::Auth::Operator { .. }, true) => Some(
            "the operator's credential is not accepted over the network; run `agent-team` \
             on the daemon's machine",
        ),
        (agent_team_protocol::Auth::Join { .. }, false) => Some(
            "a join token is taken only on the team's TLS endpoint \
             (`agent-team-worker --join URL`)",
        ),
        _ => None,
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
            Ok(f) => {
                if !take(f, id, handle, core) {
                    return;
                }
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

/// Takes one frame of a welcomed connection: a request goes to the core, a second hello is
/// refused. Returns false once the core is gone.
fn take(f: ClientFrame, id: ConnId, handle: &ConnHandle, core: &CoreTx) -> bool {
    match f {
        ClientFrame::Request {
            id: req_id,
            body,
            rid,
            no_reply,
        } => core
            .send(CoreMsg::Request {
                conn: id,
                id: req_id,
                req: body,
                rid,
                no_reply,
            })
            .is_ok(),
        ClientFrame::Hello(_) => {
            handle.send_frame(&conn_error(
                ErrorCode::BadRequest,
                "this connection already said hello",
            ));
            true
        }
    }
}

/// The gate's verdict on a new connection: the notice that evicts it while it has not said
/// hello, or `None` once the refusal is queued and the connection asked to close.
fn admitted(
    admission: Admission,
    handle: &ConnHandle,
    id: ConnId,
) -> Option<Arc<tokio::sync::Notify>> {
    match admission {
        Admission::Admitted { evicted } => Some(evicted),
        Admission::Refused { open, max } => {
            refuse(handle, id, open, max);
            handle.close();
            None
        }
    }
}

/// Waits for a connection's first frame (`read`) within the hello deadline, unless the gate
/// evicts the connection first to make room; either way its error is queued and `None`
/// returned. Only this wait is cut short: once a hello is in, the connection is no longer idle,
/// and the core's verdict on it is always awaited (a session the core opened is always closed
/// again).
async fn within_hello_deadline<T>(
    read: impl std::future::Future<Output = T>,
    gate: &Gate,
    evicted: &tokio::sync::Notify,
    handle: &ConnHandle,
) -> Option<T> {
    let deadline = gate.hello_timeout();
    tokio::select! {
        v = read => Some(v),
        _ = tokio::time::sleep(deadline) => {
            handle.send_frame(&no_hello_within(deadline));
            None
        }
        _ = evicted.notified() => {
            handle.send_frame(&evicted_without_hello());
            None
        }
    }
}

/// Refuses a connection over the cap.
fn refuse(handle: &ConnHandle, id: ConnId, open: usize, max: usize) {
    tracing::warn!(conn = id, open, max, "refused a connection: at the cap");
    handle.send_frame(&ServerFrame::Error {
        error: ErrorBody::with_details(
            ErrorCode::LimitExceeded,
            format!(
                "the daemon already serves {open} connections (limits.max_connections \
                 = {max}); try again later"
            ),
            serde_json::json!({"limit": "max_connections", "max": max}),
        ),
    });
}

/// Refuses a hello whose pool is full, saying which limit and how to raise it.
fn refuse_seat(handle: &ConnHandle, id: ConnId, operator: bool, open: usize, max: usize) {
    tracing::warn!(
        conn = id,
        open,
        max,
        operator,
        "refused a hello: at the cap"
    );
    let whose = if operator { "operator" } else { "agent" };
    handle.send_frame(&ServerFrame::Error {
        error: ErrorBody::with_details(
            ErrorCode::LimitExceeded,
            format!(
                "the daemon already serves {open} {whose} connections (limits.max_connections \
                 = {max}); raise it in the team file's [limits] (agents of the in-process \
                 backend count against no socket limit), or try again once one ends"
            ),
            serde_json::json!({"limit": "max_connections", "max": max, "pool": whose}),
        ),
    });
}

/// The error of a connection that said no hello in time.
fn no_hello_within(deadline: std::time::Duration) -> ServerFrame {
    ServerFrame::Error {
        error: ErrorBody::with_details(
            ErrorCode::LimitExceeded,
            format!(
                "no hello within {} s (limits.hello_timeout_secs); closing",
                deadline.as_secs_f64()
            ),
            serde_json::json!({"limit": "hello_timeout_secs"}),
        ),
    }
}

/// The error of a connection closed before its hello to make room for a new one.
fn evicted_without_hello() -> ServerFrame {
    ServerFrame::Error {
        error: ErrorBody::with_details(
            ErrorCode::LimitExceeded,
            "closed without a hello to make room for a new connection \
             (limits.max_connections)",
            serde_json::json!({"limit": "max_connections"}),
        ),
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
        FrameError::OverLimit { len, max } => {
            handle.send_frame(&ServerFrame::Error {
                error: ErrorBody::with_details(
                    ErrorCode::BadRequest,
                    format!(
                        "a first frame of {len} bytes exceeds the limit of {max} bytes before \
                         hello; closing the connection"
                    ),
                    serde_json::json!({"limit": "hello_bytes", "max": max, "size": len}),
                ),
            });
        }
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
