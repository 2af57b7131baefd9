//! Which destinations the proxy lets through: the team's mode and its allow list.

use std::fmt;

/// A destination a sandboxed process asked for: a host name or address literal (lower case,
/// IPv6 without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The host as asked (lower case; an IPv6 literal without its brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Destination {
    /// `host:port`, `[v6]:port`; `default_port` when no port is written. `None` for anything
    /// else (empty host, a bad port, spaces or control characters).
    pub fn parse(text: &str, default_port: Option<u16>) -> Option<Destination> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => default_port?,
                None => return None,
            };
            if !host.contains(':') {
                return None;
            }
            (host, port)
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, p.parse().ok()?),
                Some(_) => return None,
                None => (text, default_port?),
            }
        };
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
        if host.is_empty() || host.len() > 253 || !host.bytes().all(ok) || port == 0 {
            return None;
        }
        Some(Destination {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the proxy treats a destination not on the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Everything goes through (and the sandbox keeps the host's network: no proxy at all).
    Open,
    /// Only the list goes through; the rest is refused.
    List,
    /// The list goes through; the rest is asked ([`crate::Ask`]), refused when nobody can be.
    #[default]
    Ask,
}

impl Mode {
    /// The word in the team file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::List => "list",
            Mode::Ask => "ask",
        }
    }

    /// The mode a team file word names.
    pub fn parse(word: &str) -> Option<Mode> {
        match word {
            "open" => Some(Mode::Open),
            "list" => Some(Mode::List),
            "ask" => Some(Mode::Ask),
            _ => None,
        }
    }
}

/// One entry of the allow list: `host` (any port), `host:port`, `*.example.com` (every
/// subdomain of example.com, not example.com itself), `*` (every host); each with or without
/// `:port` (`*:443`: every host on port 443). Hosts match case-insensitively; an IPv6 literal is
/// written in brackets (`[::1]:8080`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.suffix`: stored with its dot (`.example.com`).
    Subdomains(String),
    Exact(String),
}

/// A pattern the allow list cannot take, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{pattern:?} is not a network destination pattern (host, host:port, *.domain, * or *:port): {why}"
)]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Pattern {
    /// The pattern `text` writes (see [`Pattern`]).
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |why| PatternError {
            pattern: text.to_string(),
            why,
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("it is empty"));
        }
        let (host, port) = if t == "*" {
            ("*", None)
        } else if let Some(p) = t.strip_prefix("*:") {
            ("*", Some(p))
        } else if t.starts_with('[') {
            let d = Destination::parse(t, Some(1)).ok_or_else(|| err("a bad IPv6 literal"))?;
            let port = t.rsplit_once("]:").map(|(_, p)| p);
            return Ok(Pattern {
                host: HostPattern::Exact(d.host),
                port: port.map(|_| d.port),
            });
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("a bad port"))?,
            ),
            None => None,
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            Destination::parse(suffix, Some(1)).ok_or_else(|| err("a bad domain"))?;
            HostPattern::Subdomains(format!(".{}", suffix.to_ascii_lowercase()))
        } else {
            if host.contains('*') {
                return Err(err("`*` only as the whole host or before a dot"));
            }
            let d = Destination::parse(host, Some(1)).ok_or_else(|| err("a bad host"))?;
            HostPattern::Exact(d.host)
        };
        Ok(Pattern { host, port })
    }

    /// Whether `d` is one of the destinations this pattern names.
    pub fn matches(&self, d: &Destination) -> bool {
        if self.port.is_some_and(|p| p != d.port) {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomains(s) => d.host.ends_with(s.as_str()) && d.host.len() > s.len(),
            HostPattern::Exact(h) => *h == d.host,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Subdomains(s) => write!(f, "*{s}")?,
            HostPattern::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostPattern::Exact(h) => f.write_str(h)?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// The team's rule for one agent's network: its mode and its allow list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// What happens to a destination not on the list.
    pub mode: Mode,
    /// What goes through without asking.
    pub allow: Vec<Pattern>,
}

/// What the policy says of a destination before anyone is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Through, without asking.
    Allow,
    /// Refused, with the one-line reason the client gets.
    Deny(String),
    /// Someone must decide.
    Ask,
}

impl Policy {
    /// The policy's word on `d`.
    pub fn check(&self, d: &Destination) -> Verdict {
        if self.mode == Mode::Open || self.allow.iter().any(|p| p.matches(d)) {
            return Verdict::Allow;
        }
        match self.mode {
            Mode::Ask => Verdict::Ask,
            _ => Verdict::Deny(not_listed(d)),
        }
    }
}

/// The reason a destination off the list is refused, saying how to allow it.
pub fn not_listed(d: &Destination) -> String {
    format!(
        "agent-team: network access to {d} is not on the team's list; add it to the team file \
         (`[sandbox.network] allow = [\"{}\"]`) or use mode = \"ask\"",
        d.host
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> Destination {
        Destination::parse(s, None).unwrap()
    }

    #[test]
    fn destinations_parse_with_ports_brackets_and_defaults() {
        assert_eq!(d("Example.COM:443").host, "example.com");
        assert_eq!(d("[::1]:8080").host, "::1");
        assert_eq!(d("[::1]:8080").to_string(), "[::1]:8080");
        assert_eq!(Destination::parse("a.b", Some(80)).unwrap().port, 80);
        for bad in [
            "", ":80", "a.b", "a b:80", "a:0", "a:99999", "::1:80", "[x]:1", "a\r\n:1",
        ] {
            assert_eq!(Destination::parse(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn patterns_match_hosts_ports_and_subdomains() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert!(p("registry.npmjs.org").matches(&d("registry.npmjs.org:443")));
        assert!(p("Registry.npmjs.org").matches(&d("registry.NPMJS.org:80")));
        assert!(!p("registry.npmjs.org:443").matches(&d("registry.npmjs.org:80")));
        assert!(p("*.example.com").matches(&d("a.b.example.com:1")));
        assert!(!p("*.example.com").matches(&d("example.com:1")));
        assert!(!p("*.example.com").matches(&d("badexample.com:1")));
        assert!(p("*:443").matches(&d("anything:443")));
        assert!(!p("*:443").matches(&d("anything:80")));
        assert!(p("*").matches(&d("x:9")));
        assert!(p("[::1]:8080").matches(&d("[::1]:8080")));
        assert!(p("127.0.0.1:9").matches(&d("127.0.0.1:9")));
        for bad in ["", "a*.b", "a:0", "a:x", "*.", "[zz]"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        for s in ["*.example.com:443", "*", "*:443", "[::1]:8080", "host"] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn the_mode_decides_what_is_off_the_list() {
        let allow = vec![Pattern::parse("ok.example").unwrap()];
        let pol = |mode| Policy {
            mode,
            allow: allow.clone(),
        };
        assert_eq!(pol(Mode::Ask).check(&d("ok.example:1")), Verdict::Allow);
        assert_eq!(pol(Mode::Ask).check(&d("no.example:1")), Verdict::Ask);
        assert_eq!(pol(Mode::Open).check(&d("no.example:1")), Verdict::Allow);
        let Verdict::Deny(why) = pol(Mode::List).check(&d("no.example:1")) else {
            panic!("not denied");
        };
        assert!(why.contains("no.example:1") && why.contains("allow = [\"no.example\"]"));
        assert_eq!(Mode::default(), Mode::Ask);
    }
}
