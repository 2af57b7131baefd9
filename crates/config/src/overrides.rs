//! Settings changed while a team runs (`agent-team config set|reset`, the leader's
//! `set_config`, `PUT /v1/teams/{team}/config`): Nyzhi's `/teams-config` and
//! `/subagent-config`. They are kept with the team's configuration ([`TeamConfig::overrides`])
//! over the team file's values until reset, survive `up` re-reading the file, and are applied
//! by [`TeamConfig::effective`] (roles, `max_teammates`) or at a member's launch (its model and
//! role).

use crate::{ConfigError, TeamConfig};
use agent_team_protocol::names::LEADER;
use serde::{Deserialize, Serialize};

/// When a changed setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applies {
    /// At the next spawn (a limit the daemon checks then).
    NextSpawn,
    /// When each agent it concerns starts next (its configuration is read at start): a
    /// running one keeps what it has until `restart`.
    NextStart,
}

impl Applies {
    /// As events and replies carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Applies::NextSpawn => "next_spawn",
            Applies::NextStart => "next_start",
        }
    }
}

/// When a change of `key` takes effect, or why `key` is no setting (its syntax only: a reset
/// needs no value).
pub fn key_applies(key: &str) -> Result<Applies, String> {
    Ok(match parse_key(key)? {
        Key::MaxTeammates => Applies::NextSpawn,
        _ => Applies::NextStart,
    })
}

/// One settable key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key<'a> {
    DefaultsModel,
    MaxTeammates,
    RoleModel(&'a str),
    RoleMaxSteps(&'a str),
    MemberModel(&'a str),
    MemberRole(&'a str),
}

/// The longest model name a setting takes (it is kept with the team and sent on every
/// request).
const MAX_MODEL_NAME: usize = 256;

/// Whether only the operator may change `key`: a limit the operator set against the leader
/// (`max_teammates`) is not the leader's to raise.
pub fn operator_only(key: &str) -> bool {
    matches!(parse_key(key), Ok(Key::MaxTeammates))
}

/// The keys `config set` takes, as its help and errors list them.
pub const KEYS: &[&str] = &[
    "defaults.model",
    "max_teammates",
    "role.NAME.model",
    "role.NAME.max_steps",
    "member.NAME.model",
    "member.NAME.role",
];

fn parse_key(key: &str) -> Result<Key<'_>, String> {
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["defaults", "model"] => Ok(Key::DefaultsModel),
        ["max_teammates"] => Ok(Key::MaxTeammates),
        ["role", name, "model"] if !name.is_empty() => Ok(Key::RoleModel(name)),
        ["role", name, "max_steps"] if !name.is_empty() => Ok(Key::RoleMaxSteps(name)),
        ["member", name, "model"] if !name.is_empty() => Ok(Key::MemberModel(name)),
        ["member", name, "role"] if !name.is_empty() => Ok(Key::MemberRole(name)),
        _ => Err(format!(
            "unknown setting {key:?}; the settings are: {}",
            KEYS.join(", ")
        )),
    }
}

impl TeamConfig {
    /// Checks that `value` may be set for `key` in this team; returns when it takes effect.
    pub fn check_override(&self, key: &str, value: &str) -> Result<Applies, String> {
        let role_exists = |name: &str| {
            if self.roles.contains_key(name) {
                Ok(())
            } else {
                Err(format!(
                    "no role {name:?}; the roles are: {}",
                    self.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        let model = |v: &str| {
            if v.trim().is_empty() || v.len() > MAX_MODEL_NAME || v.chars().any(char::is_control) {
                Err(format!(
                    "{key}: a model is a name of 1-{MAX_MODEL_NAME} printable bytes"
                ))
            } else {
                Ok(())
            }
        };
        let number = |v: &str, min: u64| match v.parse::<u64>() {
            Ok(n) if n >= min && n <= u64::from(u32::MAX) => Ok(()),
            _ => Err(format!(
                "{key}: {v:?} is not a whole number of at least {min}"
            )),
        };
        match parse_key(key)? {
            Key::DefaultsModel => model(value).map(|_| Applies::NextStart),
            Key::MaxTeammates => number(value, 0).map(|_| Applies::NextSpawn),
            Key::RoleModel(r) => role_exists(r)
                .and_then(|_| model(value))
                .map(|_| Applies::NextStart),
            Key::RoleMaxSteps(r) => role_exists(r)
                .and_then(|_| number(value, 1))
                .map(|_| Applies::NextStart),
            Key::MemberModel(m) if m == LEADER => model(value).map(|_| Applies::NextStart),
            Key::MemberModel(_) => model(value).map(|_| Applies::NextStart),
            Key::MemberRole(m) if m == LEADER => {
                Err("the leader's role is `leader`; it cannot be changed".into())
            }
            Key::MemberRole(_) if value == LEADER => {
                Err("`leader` is the leader's role, not a member's".into())
            }
            Key::MemberRole(_) => role_exists(value).map(|_| Applies::NextStart),
        }
    }

    /// This configuration with its team-wide and role overrides applied (the members' are
    /// applied at their launch: [`TeamConfig::member_override`]). An override that no longer
    /// fits (its role was removed from the file) is left out.
    pub fn effective(&self) -> TeamConfig {
        let mut cfg = self.clone();
        let default_model = self.default_model.clone();
        for (key, value) in &self.overrides {
            if self.check_override(key, value).is_err() {
                continue;
            }
            match parse_key(key) {
                Ok(Key::DefaultsModel) => {
                    for role in cfg.roles.values_mut() {
                        // The roles that took `[defaults]`' model, not those naming their own
                        // (nor those a `role.NAME.model` override sets: applied after).
                        if default_model.as_ref().is_some_and(|d| *d == role.model) {
                            role.model = value.clone();
                        }
                    }
                    cfg.default_model = Some(value.clone());
                }
                Ok(Key::MaxTeammates) => {
                    if let Ok(n) = value.parse() {
                        cfg.max_teammates = n;
                    }
                }
                _ => {}
            }
        }
        for (key, value) in &self.overrides {
            match parse_key(key) {
                Ok(Key::RoleModel(r)) => {
                    if let Some(role) = cfg.roles.get_mut(r) {
                        role.model = value.clone();
                    }
                }
                Ok(Key::RoleMaxSteps(r)) => {
                    if let (Some(role), Ok(n)) = (cfg.roles.get_mut(r), value.parse()) {
                        role.max_steps = n;
                    }
                }
                _ => {}
            }
        }
        cfg
    }

    /// A member's overridden `model` or `role` (`field`), if any.
    pub fn member_override(&self, member: &str, field: &str) -> Option<&str> {
        self.overrides
            .get(&format!("member.{member}.{field}"))
            .map(String::as_str)
    }

    /// The current value of a settable key in this (effective) configuration, for `config
    /// show`: none when it has none (a member's own model without an override).
    pub fn setting(&self, key: &str) -> Option<String> {
        match parse_key(key).ok()? {
            Key::DefaultsModel => self.default_model.clone(),
            Key::MaxTeammates => Some(self.max_teammates.to_string()),
            Key::RoleModel(r) => self.roles.get(r).map(|r| r.model.clone()),
            Key::RoleMaxSteps(r) => self.roles.get(r).map(|r| r.max_steps.to_string()),
            Key::MemberModel(m) => self
                .member_override(m, "model")
                .map(str::to_string)
                .or_else(|| {
                    self.teammates
                        .iter()
                        .find(|t| t.name == m)
                        .and_then(|t| t.model.clone())
                }),
            Key::MemberRole(m) => {
                self.member_override(m, "role")
                    .map(str::to_string)
                    .or_else(|| {
                        self.teammates
                            .iter()
                            .find(|t| t.name == m)
                            .map(|t| t.role.clone())
                    })
            }
        }
    }
}

/// The error of a refused override, for callers that speak [`ConfigError`].
pub fn override_error(key: &str, message: String) -> ConfigError {
    ConfigError {
        file: std::path::PathBuf::new(),
        line: None,
        col: None,
        field: Some(key.to_string()),
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn team() -> TeamConfig {
        crate::teamfile::parse_team_file(
            std::path::Path::new("/w/agent-team.toml"),
            "name = \"t\"\n[defaults]\nprovider = \"openai\"\nmodel = \"base\"\n\
             [roles.special]\nmodel = \"own\"\n[[teammates]]\nname = \"w1\"\n",
        )
        .unwrap()
    }

    #[test]
    fn settings_are_checked_against_the_team() {
        let cfg = team();
        assert_eq!(
            cfg.check_override("role.worker.model", "m2"),
            Ok(Applies::NextStart)
        );
        assert_eq!(
            cfg.check_override("max_teammates", "3"),
            Ok(Applies::NextSpawn)
        );
        for (k, v, why) in [
            ("role.nobody.model", "m", "no role \"nobody\""),
            ("role.worker.max_steps", "0", "at least 1"),
            ("role.worker.max_steps", "many", "not a whole number"),
            ("max_teammates", "-1", "not a whole number"),
            ("member.w1.role", "leader", "the leader's role"),
            ("member.leader.role", "worker", "cannot be changed"),
            ("member.w1.role", "nobody", "no role"),
            ("defaults.model", " ", "printable bytes"),
            ("colour", "red", "unknown setting"),
            ("role..model", "m", "unknown setting"),
        ] {
            let e = cfg.check_override(k, v).unwrap_err();
            assert!(e.contains(why), "{k}={v}: {e}");
        }
    }

    #[test]
    fn the_default_model_moves_the_roles_that_took_it_and_a_roles_own_wins() {
        let mut cfg = team();
        cfg.overrides.insert("defaults.model".into(), "next".into());
        cfg.overrides
            .insert("role.reviewer.model".into(), "rev".into());
        cfg.overrides.insert("max_teammates".into(), "2".into());
        cfg.overrides
            .insert("role.nobody.model".into(), "ignored".into());
        let eff = cfg.effective();
        assert_eq!(eff.roles["worker"].model, "next");
        assert_eq!(eff.roles["special"].model, "own", "named its own model");
        assert_eq!(eff.roles["reviewer"].model, "rev");
        assert_eq!(eff.max_teammates, 2);
        // Applying twice changes nothing (agents get the effective configuration).
        assert_eq!(eff.effective().roles, eff.roles);
        assert_eq!(eff.setting("role.worker.model").as_deref(), Some("next"));
        assert_eq!(eff.setting("member.w1.role").as_deref(), Some("worker"));
        assert_eq!(eff.member_override("w1", "model"), None);
    }
}
