//! `agent-team join NAME`: a member that will dial in (docs/JOIN.md). NAME goes on the roster
//! as a member run by someone else (it waits there until its worker joins), and a one-use join
//! token for it is made; the URL and the token are printed for `agent-team-worker --join`.

use crate::ctx::Ctx;
use crate::output;
use agent_team_client::join::{JoinUrl, TokenStore, read_endpoint, unix_now};
use agent_team_protocol::{ErrorCode, Reply, Request};
use anyhow::{Context, Result, bail};
use std::process::ExitCode;

/// How long a token lasts unless `--ttl` says otherwise.
pub const DEFAULT_TTL: &str = "10m";

/// Parses `90`, `90s`, `10m`, `2h` or `1d` into seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m, 2h or 1d"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(mul) {
        Some(0) | None => Err(format!("{s:?} is not a usable time to live")),
        Some(secs) => Ok(secs),
    }
}

/// A member admitted to join: on the roster, with a fresh one-use token.
pub(crate) struct Admission {
    /// Its role (the roster's, for a member already on it).
    pub role: String,
    /// The URL its worker joins at (the endpoint, the team, the member, the pin).
    pub url: JoinUrl,
    /// The one-use join token.
    pub token: String,
    /// The address the daemon listens on, as it bound it.
    pub listen: String,
}

/// Puts `name` on the roster as a member run by someone else (with `role`, a new member; the
/// roster's, one already on it) and makes a one-use token for it, good for `ttl_secs`: the one
/// home of `agent-team join` and of `agent-team kube manifest`'s Secret.
pub(crate) fn admit(
    ctx: &Ctx,
    name: &str,
    role: Option<String>,
    ttl_secs: u64,
) -> Result<Admission> {
    let Some((addr, pin)) = read_endpoint(&ctx.tp.dir) else {
        bail!(crate::Hinted::new(
            format!("team {} has no worker endpoint", ctx.team),
            "start it with `agent-team up --join-listen ADDR` (e.g. 0.0.0.0:7443), \
             or `[join] listen` in the team file"
        ));
    };
    let agents = match ctx.call(Request::Agents)? {
        Reply::Agents { agents } => agents,
        other => bail!("unexpected reply {other:?}"),
    };
    let existing = agents.iter().find(|a| a.name == name);
    let role = match (existing, role) {
        (Some(a), Some(r)) if a.role != r => bail!(
            "{name} is already on the roster as {}; a token joins it as that",
            a.role
        ),
        (Some(a), _) if a.backend != "external" => bail!(crate::Hinted::new(
            format!(
                "{name} is a member the daemon runs itself ({} backend)",
                a.backend
            ),
            "pick another name for a worker that dials in"
        )),
        (Some(a), _) => a.role.clone(),
        (None, r) => {
            let role = r.unwrap_or_else(|| "worker".into());
            match ctx.call(Request::Register {
                name: name.to_string(),
                role: role.clone(),
            }) {
                Ok(_) => {}
                Err(e) if is_code(&e, ErrorCode::Conflict) => {}
                Err(e) => return Err(e),
            }
            role
        }
    };
    let token = TokenStore::of_team(&ctx.tp.dir)
        .mint(name, ttl_secs, unix_now())
        .context("cannot make a join token")?;
    let (host, port) = split_addr(&addr)?;
    let url = JoinUrl {
        host,
        port,
        team: ctx.team.clone(),
        name: Some(name.to_string()),
        pin,
    };
    Ok(Admission {
        role,
        url,
        token,
        listen: addr,
    })
}

/// `agent-team join NAME [--role ROLE] [--ttl T] [--json]`.
pub fn join(
    ctx: &Ctx,
    name: &str,
    role: Option<String>,
    ttl_secs: u64,
    json: bool,
) -> Result<ExitCode> {
    let Admission {
        role,
        url,
        token,
        listen: addr,
    } = admit(ctx, name, role, ttl_secs)?;
    if json {
        output::json(&serde_json::json!({
            "name": name,
            "role": role,
            "url": url.to_string(),
            "token": token,
            "ttl_secs": ttl_secs,
            "listen": addr,
            "sha256": agent_team_client::join::hex(&url.pin),
        }));
    } else {
        output::line(&format!(
            "{name} ({role}) may join team {} once, within {ttl_secs} s:\n\n  \
             AGENT_TEAM_JOIN_TOKEN={token} agent-team-worker --join '{url}'\n\n\
             The daemon listens on {addr}; where it listens on every address, put this \
             machine's name or address in the URL's host. Keep the token off command lines \
             and logs (or use --join-token-file PATH).",
            ctx.team
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `e` is the daemon's error `code`.
fn is_code(e: &anyhow::Error, code: ErrorCode) -> bool {
    matches!(e.downcast_ref::<agent_team_client::ClientError>(),
        Some(agent_team_client::ClientError::Server(b)) if b.code == code)
}

/// `HOST:PORT` (an IPv6 host in brackets) as its parts.
fn split_addr(addr: &str) -> Result<(String, u16)> {
    let sa: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("the endpoint's address {addr:?} is not HOST:PORT"))?;
    Ok((sa.ip().to_string(), sa.port()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_is_read_in_seconds_minutes_hours_or_days() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("10m").unwrap(), 600);
        assert_eq!(parse_ttl("2h").unwrap(), 7200);
        assert_eq!(parse_ttl("1d").unwrap(), 86_400);
        for bad in ["", "0", "m", "10y", "-1m"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
