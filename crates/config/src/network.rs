//! `[sandbox.network]`: how agents' sandboxed processes reach the network (issue 62, "network
//! by asking"): only through the team's egress proxy, which lets the list through and asks (or
//! refuses) the rest.

use serde::{Deserialize, Serialize};

/// What happens to a destination not on the team's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// It becomes a permission request (tool `network`, input `host:port`).
    #[default]
    Ask,
    /// It is refused.
    List,
    /// Everything goes: the sandbox keeps the host's network (no namespace, no proxy).
    Open,
}

impl NetworkMode {
    /// The word in the team file.
    pub fn as_str(&self) -> &'static str {
        match self {
            NetworkMode::Ask => "ask",
            NetworkMode::List => "list",
            NetworkMode::Open => "open",
        }
    }
}

/// `[sandbox.network]`: the mode and the destinations that go through without asking
/// (`host`, `host:port`, `*.domain`, `*:port`; docs/SECURITY.md). Each role's model endpoint is
/// on the list without being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SandboxNetwork {
    /// What happens to a destination off the list.
    #[serde(default)]
    pub mode: NetworkMode,
    /// What goes through without asking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

impl SandboxNetwork {
    /// Whether it is the default (`ask`, nothing listed).
    pub fn is_default(&self) -> bool {
        *self == SandboxNetwork::default()
    }

    /// The first entry of `allow` that cannot be a destination pattern, with why.
    pub fn check(&self) -> Result<(), String> {
        for a in &self.allow {
            let ok = |b: u8| b.is_ascii_alphanumeric() || b".-_:*[]".contains(&b);
            if a.trim().is_empty() {
                return Err("an empty destination".into());
            }
            if !a.bytes().all(ok) {
                return Err(format!(
                    "{a:?} is not a destination (host, host:port, *.domain, * or *:port)"
                ));
            }
        }
        Ok(())
    }
}

/// The `host` and port a model endpoint address names (`http://127.0.0.1:8080/v1` →
/// `127.0.0.1`, 8080; the scheme's port when none is written): on the team's network list
/// without being written, and forwarded as it is into a sandbox when on the loopback.
pub fn endpoint(base_url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = base_url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// Whether `host` names this machine's loopback.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<crate::TeamConfig, crate::ConfigError> {
        crate::teamfile::parse_team_file(Path::new("agent-team.toml"), text)
    }

    #[test]
    fn a_model_endpoint_is_a_host_and_a_port() {
        let e = |s: &str| endpoint(s);
        assert_eq!(
            e("http://127.0.0.1:8080/v1"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            e("https://API.example.com/v1"),
            Some(("api.example.com".into(), 443))
        );
        assert_eq!(e("http://[::1]:9/x"), Some(("::1".into(), 9)));
        assert_eq!(e("http://localhost"), Some(("localhost".into(), 80)));
        assert_eq!(e("ftp://x"), None);
        assert_eq!(e("http://:80/"), None);
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn the_network_asks_by_default_and_the_team_file_sets_its_mode_and_list() {
        let c = parse("name = \"a\"\n").unwrap();
        assert_eq!(c.sandbox_network.mode, NetworkMode::Ask);
        assert!(c.sandbox_network.allow.is_empty());
        let c = parse(
            "name = \"a\"\n[sandbox.network]\nmode = \"list\"\nallow = [\"registry.npmjs.org\", \"*.pypi.org:443\"]\n",
        )
        .unwrap();
        assert_eq!(c.sandbox_network.mode, NetworkMode::List);
        assert_eq!(
            c.sandbox_network.allow,
            ["registry.npmjs.org", "*.pypi.org:443"]
        );
        let c = parse("name = \"a\"\n[sandbox]\nnetwork = { mode = \"open\" }\n").unwrap();
        assert_eq!(c.sandbox_network.mode, NetworkMode::Open);
        // Stored and read back (the daemon stores the configuration, agents read it).
        let back: crate::TeamConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.sandbox_network.mode, NetworkMode::Open);
        for bad in [
            "[sandbox.network]\nmode = \"maybe\"\n",
            "[sandbox.network]\nallow = [\"a b\"]\n",
            "[sandbox.network]\nallow = [\"\"]\n",
            "[sandbox.network]\nhosts = []\n",
        ] {
            assert!(parse(&format!("name = \"a\"\n{bad}")).is_err(), "{bad}");
        }
    }
}
