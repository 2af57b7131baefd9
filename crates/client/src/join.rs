//! Workers that dial in (docs/JOIN.md): the join URL, the one-use join tokens, and the TLS
//! client that pins the team's certificate.
//!
//! A team whose daemon listens for workers over TCP (`agent-team up --join-listen ADDR`)
//! serves TLS 1.3 only, with a self-signed certificate of its own; a worker trusts exactly that
//! certificate, named by its SHA-256 in the URL (`agent-teams://HOST:PORT/TEAM#sha256=HEX`).
//! `agent-team join NAME` makes a token ([`TokenStore::mint`]) that the daemon takes once, for
//! that name, before it expires ([`TokenStore::redeem`]), and swaps for the agent's own secret.
//! Tokens are kept as their SHA-256 only, one file each, so they survive a daemon restart.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The URL scheme of a team's worker endpoint.
pub const SCHEME: &str = "agent-teams";

/// The server name a worker asks for in its TLS handshake (the certificate is pinned, not
/// checked against a name).
pub const SERVER_NAME: &str = "agent-team";

/// Why a join URL, token or connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The URL is not `agent-teams://HOST:PORT/TEAM[/NAME]#sha256=HEX`.
    #[error("bad join URL {url:?}: {why} (expected agent-teams://HOST:PORT/TEAM#sha256=HEX)")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// No token with that hash is on file, or it was used already.
    #[error("unknown or already used join token")]
    Unknown,
    /// The token's time is over.
    #[error("the join token for {name} expired; make a new one with `agent-team join {name}`")]
    Expired {
        /// The name it was made for.
        name: String,
    },
    /// The token was made for another name.
    #[error("the join token was made for another name than {asked}")]
    OtherName {
        /// The name the hello asked for.
        asked: String,
    },
    /// A token file could not be read or written.
    #[error("join tokens in {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// A team's worker endpoint as a join URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinUrl {
    /// Host name or address of the daemon's machine.
    pub host: String,
    /// The endpoint's TCP port.
    pub port: u16,
    /// The team.
    pub team: String,
    /// The member the URL was made for, when it names one.
    pub name: Option<String>,
    /// The SHA-256 of the team's certificate (DER), the only certificate trusted.
    pub pin: [u8; 32],
}

impl JoinUrl {
    /// Parses `agent-teams://HOST:PORT/TEAM[/NAME]#sha256=HEX` (an IPv6 host in brackets).
    pub fn parse(url: &str) -> Result<Self, JoinError> {
        let bad = |why: &str| JoinError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| bad("it does not start with agent-teams://"))?;
        let (rest, fragment) = rest.split_once('#').ok_or_else(|| bad("no #sha256= pin"))?;
        let hex = fragment
            .strip_prefix("sha256=")
            .ok_or_else(|| bad("the fragment is not sha256=HEX"))?;
        let pin = parse_pin(hex).ok_or_else(|| bad("the pin is not 64 hex digits"))?;
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no team"))?;
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let team = parts.next().ok_or_else(|| bad("no team"))?.to_string();
        let name = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return Err(bad("too many path parts"));
        }
        Ok(JoinUrl {
            host: host.to_string(),
            port,
            team,
            name,
            pin,
        })
    }

    /// The `HOST:PORT` to connect to.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for JoinUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}://{}/{}", self.authority(), self.team)?;
        if let Some(n) = &self.name {
            write!(f, "/{n}")?;
        }
        write!(f, "#sha256={}", hex(&self.pin))
    }
}

/// The SHA-256 of `der` (a certificate), the pin a join URL carries.
pub fn pin_of(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits as 32 bytes.
pub fn parse_pin(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 of a token, the only form in which it is kept.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// What a token's file holds (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    expires: u64,
}

impl Entry {
    fn encode(&self) -> String {
        format!("{}\n{}\n", self.name, self.expires)
    }

    fn decode(text: &str) -> Option<Entry> {
        let mut lines = text.lines();
        let name = lines.next()?.to_string();
        let expires = lines.next()?.trim().parse().ok()?;
        Some(Entry { name, expires })
    }
}

/// The join tokens of one team: a directory (0700) with one file per token, named by the
/// token's SHA-256 and holding the name and the expiry (seconds since the epoch). A token is
/// taken by renaming its file away, so it is taken once however many try at once.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The tokens kept under `dir` (made when the first token is).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TokenStore { dir: dir.into() }
    }

    /// The tokens of the team whose state directory is `state_dir`.
    pub fn of_team(state_dir: &Path) -> Self {
        Self::new(state_dir.join("join").join("tokens"))
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> JoinError {
        let path = path.to_path_buf();
        move |source| JoinError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Makes a token for `name` valid until `now + ttl_secs` (seconds since the epoch) and
    /// keeps its hash; the token itself is returned once and kept nowhere.
    pub fn mint(&self, name: &str, ttl_secs: u64, now: u64) -> Result<String, JoinError> {
        agent_team_paths::ensure_private_dir(&self.dir).map_err(|e| JoinError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let token = agent_team_paths::new_secret().map_err(self.io(&self.dir))?;
        let entry = Entry {
            name: name.to_string(),
            expires: now.saturating_add(ttl_secs),
        };
        let path = self.dir.join(token_hash(&token));
        agent_team_paths::write_secret_file(&path, &entry.encode()).map_err(self.io(&path))?;
        // Tokens long expired are swept as new ones are made.
        self.sweep(now);
        Ok(token)
    }

    /// Takes `token` for `asked` (or for the name it was made for when `None`): the name it is
    /// for. A token is taken once; an expired one or one of another name is refused (and
    /// stays unusable only when expired).
    pub fn redeem(&self, token: &str, asked: Option<&str>, now: u64) -> Result<String, JoinError> {
        let hash = token_hash(token);
        let path = self.dir.join(&hash);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(JoinError::Unknown),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let entry = Entry::decode(&text).ok_or(JoinError::Unknown)?;
        if let Some(asked) = asked
            && asked != entry.name
        {
            return Err(JoinError::OtherName {
                asked: asked.to_string(),
            });
        }
        if now >= entry.expires {
            let _ = std::fs::remove_file(&path);
            return Err(JoinError::Expired { name: entry.name });
        }
        // One use: whoever renames the file away has it.
        let used = self.dir.join(format!("{hash}.used"));
        match std::fs::rename(&path, &used) {
            Ok(()) => {
                let _ = std::fs::remove_file(&used);
                Ok(entry.name)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(JoinError::Unknown),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Removes the files of tokens that expired before `now`.
    pub fn sweep(&self, now: u64) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let expired = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|t| Entry::decode(&t))
                .is_some_and(|entry| now >= entry.expires);
            if expired {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Seconds since the epoch now (the real clock of [`TokenStore`]'s callers).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the daemon keeps its endpoint's address and certificate pin once it listens, for
/// `agent-team join` to print the URL: `STATE/join/endpoint` (`ADDR\nPINHEX\n`).
pub fn endpoint_file(state_dir: &Path) -> PathBuf {
    state_dir.join("join").join("endpoint")
}

/// Reads the endpoint file: the address the daemon listens on and its certificate's pin.
pub fn read_endpoint(state_dir: &Path) -> Option<(String, [u8; 32])> {
    let text = std::fs::read_to_string(endpoint_file(state_dir)).ok()?;
    let mut lines = text.lines();
    let addr = lines.next()?.trim().to_string();
    let pin = parse_pin(lines.next()?.trim())?;
    Some((addr, pin))
}

/// The TLS client configuration of a worker: TLS 1.3 only, ring, trusting exactly the
/// certificate whose SHA-256 is `pin`.
pub fn client_config(pin: [u8; 32]) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        pin,
        algs: provider.signature_verification_algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Trusts one certificate, by its SHA-256; its handshake signature is still checked.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if pin_of(end_entity.as_ref()) == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the team's certificate does not match the pin (it is sha256={}); the URL is \
                 for another team or endpoint",
                hex(&pin_of(end_entity.as_ref()))
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Join endpoints standing for socket paths: a worker that dialed in names its daemon by a
/// path like any other, and [`crate::AsyncClient::connect`] reaches that path over TLS.
static ENDPOINTS: Mutex<Vec<(PathBuf, JoinUrl)>> = Mutex::new(Vec::new());

/// Makes connections to `socket` in this process go to `url`'s endpoint over TLS.
pub fn route(socket: &Path, url: &JoinUrl) {
    let mut eps = ENDPOINTS.lock().unwrap_or_else(|p| p.into_inner());
    eps.retain(|(p, _)| p != socket);
    eps.push((socket.to_path_buf(), url.clone()));
}

/// The endpoint `socket` stands for, if any.
pub(crate) fn routed(socket: &Path) -> Option<JoinUrl> {
    let eps = ENDPOINTS.lock().unwrap_or_else(|p| p.into_inner());
    eps.iter()
        .find(|(p, _)| p == socket)
        .map(|(_, u)| u.clone())
}

/// A TLS connection to `url`'s endpoint, its certificate checked against the pin.
pub async fn connect_tls(
    url: &JoinUrl,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = client_config(url.pin).map_err(std::io::Error::other)?;
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port)).await?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME)
        .map_err(std::io::Error::other)?
        .to_owned();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_read_back_as_it_was_written() {
        let url = JoinUrl {
            host: "127.0.0.1".into(),
            port: 4444,
            team: "t".into(),
            name: Some("w1".into()),
            pin: [7; 32],
        };
        let text = url.to_string();
        assert!(text.starts_with("agent-teams://127.0.0.1:4444/t/w1#sha256=0707"));
        assert_eq!(JoinUrl::parse(&text).unwrap(), url);
        let v6 = JoinUrl {
            host: "::1".into(),
            name: None,
            ..url
        };
        assert_eq!(JoinUrl::parse(&v6.to_string()).unwrap(), v6);
    }

    #[test]
    fn a_url_without_a_pin_or_port_is_refused() {
        for bad in [
            "agent-teams://h:1/t",
            "agent-teams://h/t#sha256=00",
            "https://h:1/t#sha256=".to_string().as_str(),
            &format!("agent-teams://h:1/t#sha256={}", "zz".repeat(32)),
        ] {
            assert!(JoinUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_is_taken_once_for_its_name_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("tokens"));
        let t = store.mint("w1", 600, 1_000).unwrap();
        // Another name: refused, and the token is still good for its own.
        assert!(matches!(
            store.redeem(&t, Some("w2"), 1_001),
            Err(JoinError::OtherName { .. })
        ));
        assert_eq!(store.redeem(&t, Some("w1"), 1_002).unwrap(), "w1");
        // Replayed: refused.
        assert!(matches!(
            store.redeem(&t, Some("w1"), 1_003),
            Err(JoinError::Unknown)
        ));
        // No name asked: the token's own.
        let t2 = store.mint("w2", 600, 1_000).unwrap();
        assert_eq!(store.redeem(&t2, None, 1_000).unwrap(), "w2");
        // A token never made.
        assert!(matches!(
            store.redeem("nope", None, 1_000),
            Err(JoinError::Unknown)
        ));
    }

    #[test]
    fn an_expired_token_is_refused_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("tokens"));
        let t = store.mint("w1", 60, 1_000).unwrap();
        assert!(matches!(
            store.redeem(&t, None, 1_060),
            Err(JoinError::Expired { .. })
        ));
        assert!(matches!(
            store.redeem(&t, None, 1_001),
            Err(JoinError::Unknown)
        ));
        // Sweeping takes the expired files only.
        let old = store.mint("w1", 10, 1_000).unwrap();
        let fresh = store.mint("w2", 1_000, 1_000).unwrap();
        store.sweep(1_500);
        assert!(matches!(
            store.redeem(&old, None, 1_000),
            Err(JoinError::Unknown)
        ));
        assert_eq!(store.redeem(&fresh, None, 1_500).unwrap(), "w2");
    }

    #[test]
    fn tokens_are_kept_hashed_in_private_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("tokens"));
        let t = store.mint("w1", 600, 1_000).unwrap();
        let mode = std::fs::metadata(dir.path().join("tokens"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        for e in std::fs::read_dir(dir.path().join("tokens")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(e.path()).unwrap();
            assert!(!name.contains(&t) && !text.contains(&t), "{name}: {text}");
            assert_eq!(name, token_hash(&t));
            assert_eq!(e.metadata().unwrap().permissions().mode() & 0o077, 0);
        }
        // A second store on the same directory (a restarted daemon) takes it.
        let again = TokenStore::new(dir.path().join("tokens"));
        assert_eq!(again.redeem(&t, Some("w1"), 1_001).unwrap(), "w1");
    }

    #[test]
    fn the_pin_is_the_certificates_sha256() {
        let p = pin_of(b"abc");
        assert_eq!(
            hex(&p),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_pin(&hex(&p)), Some(p));
    }
}
