//! What starts a team's runs without a person (issue 69): `[[schedule]]` (a cron expression)
//! and `[[webhooks]]` (a signed HTTP POST to `serve`) in a team file. This module only reads
//! and checks them; `agent-team serve` and `agent-team scheduler` act on them.

use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What a scheduler does with a time it missed while it was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Start one run for all the times missed (the default).
    #[default]
    RunOnce,
    /// Start none; the missed time is recorded as skipped.
    Skip,
}

/// One `[[schedule]]`: a run of the team at each time its cron expression names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Its name, unique in the team (`[A-Za-z0-9_-]`, at most 64).
    pub name: String,
    /// A cron expression: 5 fields (minute hour day month weekday), 6 with seconds first, 7
    /// with a year last; local time.
    pub cron: String,
    /// The run's goal (default: the team file's); `{{KEY}}` is filled from `vars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Values for `{{KEY}}` placeholders, over the team file's `[variables]`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// What to do with a time missed while no scheduler ran.
    #[serde(default)]
    pub missed: Missed,
}

/// One `[[webhooks]]`: `POST /v1/teams/TEAM/hooks/NAME` on `serve` starts a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Its name, the last segment of its path (`[A-Za-z0-9_-]`, at most 64).
    pub name: String,
    /// The key in `[secrets]` whose value signs the deliveries (GitHub's
    /// `X-Hub-Signature-256`).
    pub secret: String,
    /// The run's goal (default: the team file's); `{{KEY}}` is filled from `vars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Variables taken from the JSON payload: KEY = a JSONPath (`$.issue.title`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// At most this many deliveries a minute start runs (a burst of as many is allowed);
    /// more get 429.
    #[serde(default = "default_rate")]
    pub per_minute: u32,
}

fn default_rate() -> u32 {
    30
}

/// A team file's schedules and webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triggers {
    /// `[[schedule]]`.
    pub schedules: Vec<Schedule>,
    /// `[[webhooks]]`.
    pub webhooks: Vec<Webhook>,
}

/// The parts of a team file this module reads (every other key is ignored here; the team
/// file's own parser refuses unknown ones).
#[derive(Debug, Default, Deserialize)]
struct RawTriggers {
    #[serde(default)]
    schedule: Vec<Schedule>,
    #[serde(default)]
    webhooks: Vec<Webhook>,
    #[serde(default)]
    secrets: BTreeMap<String, toml::Value>,
}

/// Parses a cron expression of 5, 6 (seconds first) or 7 (year last) fields.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=7).contains(&fields) {
        return Err(format!(
            "cron {expr:?} has {fields} fields: give 5 (minute hour day month weekday), 6 (seconds \
             first) or 7 (and a year last)"
        ));
    }
    croner::parser::CronParser::new()
        .parse(expr)
        .map_err(|e| format!("cron {expr:?}: {e}"))
}

/// Whether `name` may name a schedule or a webhook.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The schedules and webhooks of the team file at `path`, checked.
pub fn load(path: &Path) -> Result<Triggers, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    parse(path, &text)
}

/// The schedules and webhooks of a team file's text, checked.
pub fn parse(path: &Path, text: &str) -> Result<Triggers, ConfigError> {
    let raw: RawTriggers =
        toml::from_str(text).map_err(|e| err(path, None, e.message().trim().to_string()))?;
    let secrets: BTreeSet<String> = raw.secrets.into_keys().collect();
    check(path, &raw.schedule, &raw.webhooks, &secrets)?;
    Ok(Triggers {
        schedules: raw.schedule,
        webhooks: raw.webhooks,
    })
}

fn err(path: &Path, field: Option<String>, message: String) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: None,
        col: None,
        field,
        message,
    }
}

/// Names valid and unique, cron expressions and JSONPaths that parse, variables' names
/// valid, each webhook's secret a key of `[secrets]`.
pub fn check(
    path: &Path,
    schedules: &[Schedule],
    webhooks: &[Webhook],
    secrets: &BTreeSet<String>,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for (i, s) in schedules.iter().enumerate() {
        let field = format!("schedule[{i}]");
        if !valid_name(&s.name) || !seen.insert(s.name.clone()) {
            return Err(err(
                path,
                Some(format!("{field}.name")),
                format!(
                    "{field}.name {:?} must be unique, 1-64 of letters, digits, `-` and `_`",
                    s.name
                ),
            ));
        }
        parse_cron(&s.cron).map_err(|m| err(path, Some(format!("{field}.cron")), m))?;
        for k in s.vars.keys() {
            crate::check_var_key(k).map_err(|m| {
                err(
                    path,
                    Some(format!("{field}.vars")),
                    format!("{field}.vars: {m}"),
                )
            })?;
        }
    }
    let mut seen = BTreeSet::new();
    for (i, w) in webhooks.iter().enumerate() {
        let field = format!("webhooks[{i}]");
        if !valid_name(&w.name) || !seen.insert(w.name.clone()) {
            return Err(err(
                path,
                Some(format!("{field}.name")),
                format!(
                    "{field}.name {:?} must be unique, 1-64 of letters, digits, `-` and `_`",
                    w.name
                ),
            ));
        }
        if !secrets.contains(&w.secret) {
            return Err(err(
                path,
                Some(format!("{field}.secret")),
                format!(
                    "{field}.secret {:?} is not a key of [secrets] (add `{} = {{ env = \"VAR\" }}` \
                     under [secrets], or give it to serve with --secret {}=VALUE and list it there)",
                    w.secret, w.secret, w.secret
                ),
            ));
        }
        if w.per_minute == 0 {
            return Err(err(
                path,
                Some(format!("{field}.per_minute")),
                format!("{field}.per_minute must be at least 1"),
            ));
        }
        for (k, p) in &w.vars {
            crate::check_var_key(k).map_err(|m| {
                err(
                    path,
                    Some(format!("{field}.vars")),
                    format!("{field}.vars: {m}"),
                )
            })?;
            serde_json_path::JsonPath::parse(p).map_err(|e| {
                err(
                    path,
                    Some(format!("{field}.vars.{k}")),
                    format!("{field}.vars.{k}: {p:?} is not a JSONPath ({e})"),
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn schedules_and_webhooks_parse_and_bad_ones_name_their_field() {
        let t = parse(
            Path::new("t.toml"),
            "name = \"x\"\n[secrets]\nGH = { env = \"GH_ENV\" }\n\
             [[schedule]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\ngoal = \"g {{a}}\"\nvars = { a = \"1\" }\n\
             [[schedule]]\nname = \"fast\"\ncron = \"* * * * * *\"\nmissed = \"skip\"\n\
             [[webhooks]]\nname = \"github\"\nsecret = \"GH\"\ngoal = \"Triage: {{issue}}\"\nvars = { issue = \"$.issue.title\" }\n",
        )
        .unwrap();
        assert_eq!(t.schedules.len(), 2);
        assert_eq!(t.schedules[1].missed, Missed::Skip);
        assert_eq!(t.schedules[0].missed, Missed::RunOnce);
        assert_eq!(t.webhooks[0].per_minute, 30);
        assert!(parse_cron("0 0 3 * * * 2030").is_ok());
        for (bad, field) in [
            (
                "[[schedule]]\nname = \"a\"\ncron = \"nope\"\n",
                "schedule[0].cron",
            ),
            (
                "[[schedule]]\nname = \"a b\"\ncron = \"* * * * *\"\n",
                "schedule[0].name",
            ),
            (
                "[[webhooks]]\nname = \"h\"\nsecret = \"NOPE\"\n",
                "webhooks[0].secret",
            ),
            (
                "[secrets]\nS = { env = \"E\" }\n[[webhooks]]\nname = \"h\"\nsecret = \"S\"\nvars = { a = \"$[\" }\n",
                "webhooks[0].vars.a",
            ),
        ] {
            let e = parse(Path::new("t.toml"), bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
        }
    }
}
