//! A worker that dials in (`agent-team-worker --join URL`, docs/JOIN.md): its join token is
//! swapped for the agent's own secret over the team's TLS endpoint, and from then on it is an
//! agent like any other, its daemon reached over that endpoint (reconnects with the secret).

use crate::{AgentEnv, AgentError};
use agent_team_client::join::JoinUrl;
use agent_team_protocol::{Auth, Hello, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The variable a join token is read from (never a command-line argument).
pub const ENV_JOIN_TOKEN: &str = "AGENT_TEAM_JOIN_TOKEN";

/// The join token: from `file` (`--join-token-file`) or else [`ENV_JOIN_TOKEN`].
pub fn token_from(file: Option<&Path>, env: Option<String>) -> Result<String, AgentError> {
    let token = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| AgentError::Config(format!("cannot read {}: {e}", f.display())))?,
        None => env.unwrap_or_default(),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(AgentError::Config(format!(
            "no join token: set {ENV_JOIN_TOKEN} or give --join-token-file PATH \
             (`agent-team join NAME` on the team's machine prints one)"
        )));
    }
    Ok(token)
}

/// Swaps `token` for the agent's identity at `url`'s endpoint, and makes connections to
/// `stand_in` (a path under a private directory of this worker: the socket it would have)
/// go to that endpoint. `get` reads the rest of the environment (model, provider, log file).
pub async fn redeem(
    url: &JoinUrl,
    token: &str,
    stand_in: PathBuf,
    workspace: Option<PathBuf>,
    get: impl Fn(&str) -> Option<String>,
) -> Result<AgentEnv, AgentError> {
    agent_team_client::join::route(&stand_in, url);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        team: url.team.clone(),
        auth: Auth::Join {
            name: url.name.clone(),
            token: token.to_string(),
        },
        client: Some(format!("agent-team-worker/{}", env!("CARGO_PKG_VERSION"))),
        start: false,
    };
    let welcome = match agent_team_client::AsyncClient::connect(&stand_in, &hello).await {
        Ok((client, _pushes)) => client.welcome().clone(),
        Err(agent_team_client::ClientError::Refused(e)) => {
            return Err(AgentError::Refused {
                name: url.name.clone().unwrap_or_default(),
                why: e.message,
                superseded: false,
            });
        }
        Err(e) => {
            return Err(AgentError::Daemon(format!(
                "cannot join team {} at {}: {e}",
                url.team,
                url.authority()
            )));
        }
    };
    let Some(secret) = welcome.secret.clone() else {
        return Err(AgentError::Daemon(
            "the daemon welcomed the join without the agent's secret".into(),
        ));
    };
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert(agent_team_pane::env::SOCKET, stand_in.display().to_string());
    vars.insert(agent_team_pane::env::TEAM, welcome.team.clone());
    vars.insert(agent_team_pane::env::NAME, welcome.identity.clone());
    vars.insert(agent_team_pane::env::SECRET, secret);
    vars.insert(
        agent_team_pane::env::INCARNATION,
        welcome.incarnation.to_string(),
    );
    if let Some(ws) = workspace {
        vars.insert(agent_team_pane::env::WORKSPACE, ws.display().to_string());
    }
    // What this machine says of the member's own settings; nothing of a daemon here (no
    // healer: the daemon's machine brings its daemon back).
    let passed = [
        agent_team_pane::env::MODEL,
        agent_team_pane::env::PROVIDER,
        agent_team_pane::env::INSTRUCTIONS,
        agent_team_pane::env::LOG_FILE,
    ];
    AgentEnv::from_lookup(|k| {
        vars.get(k)
            .cloned()
            .or_else(|| passed.contains(&k).then(|| get(k)).flatten())
    })
}
