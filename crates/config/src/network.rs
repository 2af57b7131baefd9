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
        check_allow(&self.allow)
    }

    /// The network of a member of a role whose own table is `role`: the role's mode when it
    /// names one (else the team's), the team's list and then the role's.
    pub fn with_role(&self, role: &RoleNetwork) -> SandboxNetwork {
        let mut allow = self.allow.clone();
        allow.extend(role.allow.iter().cloned());
        SandboxNetwork {
            mode: role.mode.unwrap_or(self.mode),
            allow,
        }
    }
}

/// `[roles.X.sandbox.network]`: what a role changes of the team's network for its members, a
/// mode of its own (none: the team's) and destinations added to the team's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleNetwork {
    /// The role's mode; none: the team's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetworkMode>,
    /// Destinations its members reach without asking, beside the team's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

impl RoleNetwork {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.allow.is_empty()
    }

    /// The first entry of `allow` that cannot be a destination pattern, with why.
    pub fn check(&self) -> Result<(), String> {
        check_allow(&self.allow)
    }
}

impl crate::TeamConfig {
    /// The network of a member of `role` (none: the team's own, as for hooks): the team's
    /// `[sandbox.network]` with the role's `[roles.X.sandbox.network]` over it.
    pub fn network_for(&self, role: Option<&crate::Role>) -> SandboxNetwork {
        match role {
            Some(r) => self.sandbox_network.with_role(&r.sandbox.network),
            None => self.sandbox_network.clone(),
        }
    }
}

/// The first entry of an allow list that cannot be a destination pattern, with why.
fn check_allow(allow: &[String]) -> Result<(), String> {
    for a in allow {
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

    #[test]
    fn a_role_sets_its_own_mode_and_adds_to_the_teams_list() {
        let c = parse(
            "name = \"a\"\n[sandbox.network]\nmode = \"ask\"\nallow = [\"registry.npmjs.org\"]\n\
             [roles.fetcher.sandbox.network]\nmode = \"list\"\nallow = [\"*.pypi.org:443\"]\n\
             [roles.builder.sandbox]\nwrite = [\"out\"]\nnetwork = { allow = [\"crates.io\"] }\n\
             [roles.wide.sandbox.network]\nmode = \"open\"\n",
        )
        .unwrap();
        let of = |r: &str| c.network_for(c.role(r));
        let fetcher = of("fetcher");
        assert_eq!(fetcher.mode, NetworkMode::List);
        assert_eq!(fetcher.allow, ["registry.npmjs.org", "*.pypi.org:443"]);
        let builder = of("builder");
        assert_eq!(builder.mode, NetworkMode::Ask);
        assert_eq!(builder.allow, ["registry.npmjs.org", "crates.io"]);
        assert_eq!(
            c.role("builder").unwrap().sandbox.write,
            [std::path::PathBuf::from("out")]
        );
        assert_eq!(of("wide").mode, NetworkMode::Open);
        // A role that says nothing has the team's; so do the hooks (no role).
        assert_eq!(of("worker"), c.sandbox_network);
        assert_eq!(c.network_for(None), c.sandbox_network);
        // Stored and read back (agents read the configuration the daemon stores).
        let back: crate::TeamConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.network_for(back.role("fetcher")), fetcher);
        // Paths and networks layered: the later table's mode wins, the lists add up.
        let both = c
            .role("builder")
            .unwrap()
            .sandbox
            .clone()
            .and(c.role("fetcher").unwrap().sandbox.clone());
        assert_eq!(both.network.mode, Some(NetworkMode::List));
        assert_eq!(both.network.allow, ["crates.io", "*.pypi.org:443"]);
        for bad in [
            "[roles.w.sandbox.network]\nmode = \"maybe\"\n",
            "[roles.w.sandbox.network]\nallow = [\"a b\"]\n",
            "[roles.w.sandbox.network]\nallow = [\"\"]\n",
            "[roles.w.sandbox.network]\nhosts = []\n",
        ] {
            let e = parse(&format!("name = \"a\"\n{bad}"));
            assert!(e.is_err(), "{bad}");
        }
        let e = parse("name = \"a\"\n[roles.w.sandbox.network]\nallow = [\"a b\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("roles.w.sandbox.network.allow"), "{e}");
    }
}
