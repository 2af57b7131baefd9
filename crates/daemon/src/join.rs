//! The team's worker endpoint (docs/JOIN.md): workers on other machines dial in over TCP with
//! TLS 1.3 (rustls on ring), and each connection is served by the same code as the Unix
//! socket's ([`crate::conn::serve_tls`]): the same hello, requests, request ids and pushes.
//!
//! The endpoint is on when the team's state directory holds `join/listen` (an address,
//! written by `agent-team up --join-listen ADDR`); once bound, the address actually bound is
//! written back there (so a restarted daemon keeps its port, and the workers' URLs stay
//! good), and `join/endpoint` tells `agent-team join` the address and the certificate's pin.
//! The certificate is the team's own (rcgen, self-signed), made once: `join/cert.der` and its
//! key `join/key.der` (0600). Connections over TCP have a gate of their own, so a flood of
//! idle ones never takes the Unix socket's room (the operator always gets in).

use crate::core::CoreTx;
use crate::gate::{Admission, Counted, Gate};
use crate::outbox::ConnId;
use agent_team_paths::TeamPaths;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JoinSetupError {
    /// A file of the endpoint could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("cannot listen for workers on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The certificate could not be made or used.
    #[error("the team's TLS certificate: {0}")]
    Tls(String),
}

/// The directory of the endpoint's files under a team's state directory.
pub fn join_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("join")
}

/// The file naming the address to listen on (`up --join-listen` writes it).
pub fn listen_file(state_dir: &Path) -> PathBuf {
    join_dir(state_dir).join("listen")
}

/// Asks the team's next daemon to listen for workers on `addr` (e.g. `127.0.0.1:0`).
pub fn set_listen(state_dir: &Path, addr: &str) -> std::io::Result<()> {
    let dir = join_dir(state_dir);
    agent_team_paths::ensure_private_dir(&dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_private(&listen_file(state_dir), addr.as_bytes())
}

/// Writes `bytes` to `path` (0600) through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The team's certificate and key (DER), made on first use.
fn certificate(
    dir: &Path,
) -> Result<
    (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    JoinSetupError,
> {
    let (cert_path, key_path) = (dir.join("cert.der"), dir.join("key.der"));
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| JoinSetupError::Io { what, path, source }
    };
    if let (Ok(cert), Ok(key)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        let key = rustls::pki_types::PrivateKeyDer::try_from(key)
            .map_err(|e| JoinSetupError::Tls(format!("{}: {e}", key_path.display())))?;
        return Ok((cert.into(), key));
    }
    let made =
        rcgen::generate_simple_self_signed(vec![agent_team_client::join::SERVER_NAME.into()])
            .map_err(|e| JoinSetupError::Tls(e.to_string()))?;
    let key = made.signing_key.serialize_der();
    write_private(&key_path, &key).map_err(io("cannot write the TLS key", &key_path))?;
    write_private(&cert_path, made.cert.der())
        .map_err(io("cannot write the TLS certificate", &cert_path))?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key)
        .map_err(|e| JoinSetupError::Tls(e.to_string()))?;
    Ok((made.cert.der().clone(), key))
}

/// The server's TLS configuration: TLS 1.3 only, ring, the team's certificate.
pub fn server_config(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, JoinSetupError> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert], key))
        .map_err(|e| JoinSetupError::Tls(e.to_string()))
}

/// The bound endpoint, ready to serve.
pub struct Endpoint {
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    /// The address bound.
    pub addr: std::net::SocketAddr,
    /// The SHA-256 of the certificate.
    pub pin: [u8; 32],
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Binds the team's endpoint when `join/listen` asks for one (`None` otherwise), and tells
/// `agent-team join` where it is.
pub fn bind(tp: &TeamPaths) -> Result<Option<Endpoint>, JoinSetupError> {
    let listen = match std::fs::read_to_string(listen_file(&tp.dir)) {
        Ok(a) if !a.trim().is_empty() => a.trim().to_string(),
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(JoinSetupError::Io {
                what: "cannot read",
                path: listen_file(&tp.dir),
                source,
            });
        }
    };
    let dir = join_dir(&tp.dir);
    let (cert, key) = certificate(&dir)?;
    let pin = agent_team_client::join::pin_of(cert.as_ref());
    let config = server_config(cert, key)?;
    let listener = std::net::TcpListener::bind(&listen).map_err(|source| JoinSetupError::Bind {
        addr: listen.clone(),
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| JoinSetupError::Bind {
            addr: listen.clone(),
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| JoinSetupError::Bind {
            addr: listen.clone(),
            source,
        })?;
    // The port bound stays the team's: a restarted daemon binds it again.
    let io =
        |what: &'static str, path: PathBuf| move |source| JoinSetupError::Io { what, path, source };
    write_private(&listen_file(&tp.dir), addr.to_string().as_bytes())
        .map_err(io("cannot write", listen_file(&tp.dir)))?;
    let endpoint = agent_team_client::join::endpoint_file(&tp.dir);
    write_private(
        &endpoint,
        format!("{addr}\n{}\n", agent_team_client::join::hex(&pin)).as_bytes(),
    )
    .map_err(io("cannot write", endpoint.clone()))?;
    tracing::info!(%addr, "listening for workers over TLS");
    Ok(Some(Endpoint {
        listener,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        addr,
        pin,
    }))
}

/// Accepts the endpoint's connections until the daemon ends: each is admitted by the
/// endpoint's own gate, finishes its TLS handshake within the hello deadline (or is closed),
/// and is served like a socket's connection.
pub async fn accept(
    endpoint: Endpoint,
    limits: agent_team_config::Limits,
    core: CoreTx,
    next_id: impl Fn() -> ConnId + Send + 'static,
) {
    let listener = match tokio::net::TcpListener::from_std(endpoint.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot serve the worker endpoint: {e}");
            return;
        }
    };
    // Its own gate: a flood here never evicts the socket's connections.
    let gate = Gate::new(&limits);
    let accept = || listener.accept();
    crate::accept_admitted(&gate, next_id, accept, |(tcp, peer), id, admission| {
        tokio::spawn(handshake(
            tcp,
            peer,
            endpoint.acceptor.clone(),
            id,
            core.clone(),
            gate.clone(),
            admission,
        ));
    })
    .await
}

/// One TCP connection: the TLS handshake (bounded by the hello deadline and eviction), then
/// the connection served as any other.
async fn handshake(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    id: ConnId,
    core: CoreTx,
    gate: Arc<Gate>,
    admission: Admission,
) {
    let evicted = match &admission {
        Admission::Admitted { evicted } => evicted.clone(),
        Admission::Refused { .. } => {
            // No TLS yet to say why on: closed.
            let _counted = Counted::new(gate, id);
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls = tokio::select! {
        r = tokio::time::timeout(gate.hello_timeout(), acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(conn = id, %peer, "TLS handshake failed: {e}");
                None
            }
            Err(_) => None,
        },
        _ = evicted.notified() => None,
    };
    let Some(tls) = tls else {
        let _counted = Counted::new(gate, id);
        return;
    };
    // An eviction that came as the handshake ended is still honoured.
    crate::conn::serve_tls(tls, peer, id, core, gate, admission).await;
}

/// The error a hello gets for a join token refused.
pub(crate) fn refusal(e: &agent_team_client::join::JoinError) -> agent_team_protocol::ErrorBody {
    use agent_team_client::join::JoinError;
    use agent_team_protocol::{ErrorBody, ErrorCode};
    match e {
        JoinError::Io { .. } => ErrorBody::new(ErrorCode::Internal, e.to_string()),
        _ => ErrorBody::new(ErrorCode::Unauthorized, format!("join refused: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A TLS server with the team's certificate, echoing one byte.
    async fn echo_server(dir: &Path) -> (std::net::SocketAddr, [u8; 32]) {
        let (cert, key) = certificate(dir).unwrap();
        let pin = agent_team_client::join::pin_of(cert.as_ref());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert, key).unwrap()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        let mut b = [0u8; 1];
                        if s.read_exact(&mut b).await.is_ok() {
                            let _ = s.write_all(&b).await;
                            let _ = s.flush().await;
                        }
                    }
                });
            }
        });
        (addr, pin)
    }

    fn url(addr: std::net::SocketAddr, pin: [u8; 32]) -> agent_team_client::join::JoinUrl {
        agent_team_client::join::JoinUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            team: "t".into(),
            name: None,
            pin,
        }
    }

    #[tokio::test]
    async fn a_client_pinned_to_the_certificate_gets_through_and_another_pin_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, pin) = echo_server(dir.path()).await;
        let mut s = agent_team_client::join::connect_tls(&url(addr, pin))
            .await
            .unwrap();
        s.write_all(b"x").await.unwrap();
        s.flush().await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
        assert_eq!(
            s.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let mut wrong = pin;
        wrong[0] ^= 1;
        let Err(e) = agent_team_client::join::connect_tls(&url(addr, wrong)).await else {
            panic!("a wrong pin is refused");
        };
        assert!(e.to_string().contains("does not match the pin"), "{e}");
    }

    #[test]
    fn the_certificate_is_made_once_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = certificate(dir.path()).unwrap();
        let (b, _) = certificate(dir.path()).unwrap();
        assert_eq!(a, b);
        let mode = std::fs::metadata(dir.path().join("key.der"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
