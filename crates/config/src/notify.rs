//! Chat sinks of `[notify]` (`slack_webhook`, `discord_webhook`, `webhook`): where each URL
//! comes from. A webhook URL is a credential (whoever has it posts to the channel), so the
//! team file names it the way it names its other secrets:
//!
//! - `{ env = "NAME" }`: the environment variable `NAME` of the daemon (the operator's
//!   environment, as a role's `api_key_env` is read); withheld from agents' commands like
//!   the model keys (`TeamConfig::credential_vars`);
//! - `{ secret = "KEY" }`: the value of `KEY` in the team's `[secrets]` (or `--secret KEY=…`),
//!   read from the team's secrets file when a notification is sent;
//! - `"https://…"`: the URL itself, which the daemon keeps in memory only: the stored
//!   configuration (what agents and `config` read) has [`HIDDEN_URL`] in its place.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What the stored configuration holds where the team file gave a webhook URL itself.
pub const HIDDEN_URL: &str = "[hidden]";

/// The keys of `[notify]` that name a chat sink's URL, in the order notifications go out.
pub const NOTIFY_URL_KEYS: [&str; 3] = ["slack_webhook", "discord_webhook", "webhook"];

/// Where a webhook URL of `[notify]` comes from. Its `Debug` never shows a URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NotifyUrl {
    /// An environment variable of the daemon.
    Env {
        /// Its name.
        env: String,
    },
    /// A key of the team's `[secrets]`.
    Secret {
        /// The key.
        secret: String,
    },
    /// The URL itself (or [`HIDDEN_URL`] once stored).
    Literal(String),
}

impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyUrl::Env { env } => write!(f, "{{ env = {env:?} }}"),
            NotifyUrl::Secret { secret } => write!(f, "{{ secret = {secret:?} }}"),
            NotifyUrl::Literal(_) => f.write_str(HIDDEN_URL),
        }
    }
}

impl NotifyUrl {
    /// Why this reference is wrong in a team file whose `[secrets]` are `secrets`, if it is.
    pub fn check(&self, secrets: &BTreeMap<String, crate::SecretSource>) -> Result<(), String> {
        match self {
            NotifyUrl::Env { env } if !crate::is_valid_key(env) => {
                Err(format!("{env:?} is not an environment variable name"))
            }
            NotifyUrl::Secret { secret } if !secrets.contains_key(secret) => Err(format!(
                "{secret:?} is not a key of [secrets] (add `{secret} = {{ env = \"NAME\" }}` there)"
            )),
            NotifyUrl::Literal(url) if !is_http_url(url) => Err(
                "expected an http:// or https:// URL, { env = \"NAME\" } or { secret = \"KEY\" }"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The environment variable it names, if it names one.
    pub fn env_var(&self) -> Option<&str> {
        match self {
            NotifyUrl::Env { env } => Some(env),
            _ => None,
        }
    }

    /// The URL: `literal` stands for a stored [`HIDDEN_URL`] (the one the daemon kept in
    /// memory), `secret` reads a `[secrets]` value and `env` an environment variable. The
    /// error names where the URL should have been, never a value.
    pub fn resolve(
        &self,
        literal: Option<&str>,
        secret: impl Fn(&str) -> Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        let url = match self {
            NotifyUrl::Env { env: name } => env(name)
                .ok_or_else(|| format!("the environment variable {name} is not set"))?,
            NotifyUrl::Secret { secret: key } => {
                secret(key).ok_or_else(|| format!("the secret {key} has no value"))?
            }
            NotifyUrl::Literal(url) if url == HIDDEN_URL => literal
                .map(str::to_string)
                .ok_or("the URL given in the team file is gone with the daemon that read it; `agent-team up` gives it again")?,
            NotifyUrl::Literal(url) => url.clone(),
        };
        let url = url.trim().to_string();
        if is_http_url(&url) {
            Ok(url)
        } else {
            Err("its value is not an http:// or https:// URL".into())
        }
    }
}

/// Whether `s` starts like an HTTP URL with a host.
fn is_http_url(s: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .any(|p| s.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

/// The stored form of a team configuration's JSON: each webhook URL `[notify]` gives itself
/// replaced by [`HIDDEN_URL`], and the URLs taken out, by key.
pub fn hide_notify_urls(config: &mut serde_json::Value) -> BTreeMap<&'static str, String> {
    let mut taken = BTreeMap::new();
    if let Some(notify) = config
        .get_mut("notify")
        .and_then(serde_json::Value::as_object_mut)
    {
        for key in NOTIFY_URL_KEYS {
            if let Some(v) = notify.get_mut(key)
                && let Some(url) = v.as_str()
                && url != HIDDEN_URL
            {
                taken.insert(key, url.to_string());
                *v = serde_json::Value::String(HIDDEN_URL.into());
            }
        }
    }
    taken
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_a_url_never_shows_in_debug() {
        let lit = NotifyUrl::Literal("https://hooks.slack.com/services/T/B/x".into());
        assert!(!format!("{lit:?}").contains("hooks"));
        let none = |_: &str| None;
        assert_eq!(
            lit.resolve(None, none, none).unwrap(),
            "https://hooks.slack.com/services/T/B/x"
        );
        let env = NotifyUrl::Env { env: "HOOK".into() };
        assert_eq!(
            env.resolve(None, none, |n| (n == "HOOK").then(|| "http://h/1 ".into()))
                .unwrap(),
            "http://h/1"
        );
        assert!(env.resolve(None, none, none).unwrap_err().contains("HOOK"));
        let sec = NotifyUrl::Secret { secret: "S".into() };
        let e = sec.resolve(None, |_| Some("not a url".into()), none);
        assert!(!e.unwrap_err().contains("not a url"));
        let hidden = NotifyUrl::Literal(HIDDEN_URL.into());
        assert_eq!(
            hidden.resolve(Some("https://x/y"), none, none).unwrap(),
            "https://x/y"
        );
        assert!(hidden.resolve(None, none, none).is_err());
    }

    #[test]
    fn checks_name_what_is_wrong() {
        let mut secrets = BTreeMap::new();
        secrets.insert("S".to_string(), crate::SecretSource { env: None });
        assert!(
            NotifyUrl::Secret { secret: "S".into() }
                .check(&secrets)
                .is_ok()
        );
        assert!(
            NotifyUrl::Secret { secret: "T".into() }
                .check(&secrets)
                .is_err()
        );
        assert!(
            NotifyUrl::Env { env: "a b".into() }
                .check(&secrets)
                .is_err()
        );
        assert!(
            NotifyUrl::Literal("hooks.slack.com".into())
                .check(&secrets)
                .is_err()
        );
        assert!(
            NotifyUrl::Literal("https://h".into())
                .check(&secrets)
                .is_ok()
        );
    }

    #[test]
    fn stored_json_hides_literal_urls_only() {
        let mut v = serde_json::json!({"notify": {
            "slack_webhook": "https://hooks.slack.com/x",
            "discord_webhook": {"env": "D"},
            "command": "x"}});
        let taken = hide_notify_urls(&mut v);
        assert_eq!(taken["slack_webhook"], "https://hooks.slack.com/x");
        assert_eq!(taken.len(), 1);
        assert_eq!(v["notify"]["slack_webhook"], HIDDEN_URL);
        assert_eq!(v["notify"]["discord_webhook"]["env"], "D");
        let back: NotifyUrl =
            serde_json::from_value(v["notify"]["discord_webhook"].clone()).unwrap();
        assert_eq!(back, NotifyUrl::Env { env: "D".into() });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod teamfile_tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::TeamConfig, crate::ConfigError> {
        crate::teamfile::parse_team_file(std::path::Path::new("/w/agent-team.toml"), text)
    }

    #[test]
    fn the_three_sinks_are_read_and_checked() {
        let c = parse(
            "name = \"t\"\n[secrets]\nDISCORD = { env = \"MY_DISCORD\" }\n[notify]\n\
             command = \"cat\"\nslack_webhook = { env = \"SLACK_URL\" }\n\
             discord_webhook = { secret = \"DISCORD\" }\nwebhook = \"https://example.com/hook\"\n\
             board_url = \"https://board.example\"\n",
        )
        .unwrap();
        assert_eq!(
            c.notify.slack_webhook,
            Some(NotifyUrl::Env {
                env: "SLACK_URL".into()
            })
        );
        assert_eq!(
            c.notify.discord_webhook,
            Some(NotifyUrl::Secret {
                secret: "DISCORD".into()
            })
        );
        assert_eq!(c.notify.board_url.as_deref(), Some("https://board.example"));
        // An environment variable holding a URL is withheld from agents' commands.
        assert!(c.credential_vars().contains("SLACK_URL"));
        let back: crate::TeamConfig =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back.notify, c.notify);
        for (text, field) in [
            (
                "slack_webhook = \"hooks.slack.com/x\"",
                "notify.slack_webhook",
            ),
            (
                "discord_webhook = { secret = \"NOPE\" }",
                "notify.discord_webhook",
            ),
            ("webhook = { env = \"not a name\" }", "notify.webhook"),
            ("board_url = \"board\"", "notify.board_url"),
        ] {
            let e = parse(&format!("name = \"t\"\n[notify]\n{text}\n")).unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }
}
