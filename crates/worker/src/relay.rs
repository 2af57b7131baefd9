//! An agent CLI teammate's way to its daemon: the CLI runs inside the team's sandbox, where
//! neither the runtime dir (the daemon's socket, the operator credential) nor the agent's
//! secret is. Its MCP server connects to this relay instead, a socket in the CLI's private
//! home served by the worker outside the sandbox, which puts the agent's own identity into the
//! hello and then passes bytes both ways. Whoever reaches the relay can only be this agent:
//! never another agent, never the operator.

use crate::AgentEnv;
use agent_team_protocol::frame::tokio_io::read_raw;
use agent_team_protocol::{Auth, ClientFrame};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

/// The most connections relayed at once (the MCP server holds one; a reconnect may overlap).
const MAX_LINKS: usize = 8;

/// What the MCP configuration gives as the secret: the relay replaces it with the real one.
pub const PLACEHOLDER_SECRET: &str = "relay";

/// A running relay; stopped and its socket removed when dropped.
pub struct Relay {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `path` (0600) and relays each connection to `agent`'s daemon as `agent`.
pub fn start(path: &Path, agent: &AgentEnv) -> std::io::Result<Relay> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let agent = Arc::new(agent.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_LINKS));
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: not a reason to spin.
                    tracing::debug!("relay: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue; // dropped: the client retries
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                if let Err(e) = relay_one(stream, &agent).await {
                    tracing::debug!("relay: {e}");
                }
                drop(permit);
            });
        }
    });
    Ok(Relay {
        path: path.to_path_buf(),
        task,
    })
}

/// One connection: its hello, rewritten to carry this agent's identity, then everything else
/// as it comes.
async fn relay_one(mut inside: UnixStream, agent: &AgentEnv) -> Result<(), String> {
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), read_raw(&mut inside))
        .await
        .map_err(|_| "no hello in time".to_string())?
        .map_err(|e| e.to_string())?;
    let frame: ClientFrame = serde_json::from_slice(&first).map_err(|e| e.to_string())?;
    let ClientFrame::Hello(mut hello) = frame else {
        return Err("the first frame is not a hello".into());
    };
    hello.team = agent.team.clone();
    hello.auth = Auth::Agent {
        name: agent.name.clone(),
        secret: agent.secret.clone(),
        incarnation: agent.incarnation,
    };
    let bytes = agent_team_protocol::frame::encode(&ClientFrame::Hello(hello))
        .map_err(|e| e.to_string())?;
    let mut daemon = match UnixStream::connect(&agent.socket).await {
        Ok(d) => d,
        // The daemon is gone: this worker (outside the sandbox) brings it back for the CLI's
        // MCP server, unless the team was stopped on purpose; the server's own retry follows.
        Err(e) => match crate::link::heal(agent).await {
            Some(Ok(agent_team_client::heal::Healed::Running)) => {
                UnixStream::connect(&agent.socket)
                    .await
                    .map_err(|e| format!("{}: {e}", agent.socket.display()))?
            }
            _ => return Err(format!("{}: {e}", agent.socket.display())),
        },
    };
    daemon.write_all(&bytes).await.map_err(|e| e.to_string())?;
    tokio::io::copy_bidirectional(&mut inside, &mut daemon)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_protocol::Hello;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_hello_carries_this_agents_identity_whatever_the_inside_claims() {
        let dir = tempfile::tempdir().unwrap();
        let daemon_sock = dir.path().join("t.sock");
        let daemon = UnixListener::bind(&daemon_sock).unwrap();
        let agent = AgentEnv {
            socket: daemon_sock,
            team: "t".into(),
            name: "cc".into(),
            secret: "real-secret".into(),
            incarnation: 3,
            log_file: None,
            workspace: None,
            member: Default::default(),
            external: true,
            healer: None,
        };
        let relay = start(&dir.path().join("link.sock"), &agent).unwrap();
        let mut inside = UnixStream::connect(dir.path().join("link.sock"))
            .await
            .unwrap();
        // The inside tries to be the operator of another team.
        let claim = ClientFrame::Hello(Hello {
            protocol: 1,
            team: "other".into(),
            auth: Auth::Operator {
                secret: "guess".into(),
            },
            client: Some("x".into()),
            start: false,
        });
        inside
            .write_all(&agent_team_protocol::frame::encode(&claim).unwrap())
            .await
            .unwrap();
        inside.write_all(b"after").await.unwrap();
        let (mut seen, _) = daemon.accept().await.unwrap();
        let hello: ClientFrame =
            serde_json::from_slice(&read_raw(&mut seen).await.unwrap()).unwrap();
        let ClientFrame::Hello(h) = hello else {
            panic!("{hello:?}")
        };
        assert_eq!(h.team, "t");
        assert_eq!(
            h.auth,
            Auth::Agent {
                name: "cc".into(),
                secret: "real-secret".into(),
                incarnation: 3
            }
        );
        let mut rest = [0u8; 5];
        seen.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"after");
        drop(relay);
        assert!(!dir.path().join("link.sock").exists());
    }
}
