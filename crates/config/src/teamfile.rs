//! Reading `agent-team.toml` (SPEC §4) and role files, and resolving them into a [`TeamConfig`].
//! Every error names the file, the line and the field.

use crate::ConfigError;
use crate::builtin::{
    NYZHI_GIT_TOOLS, READ_ONLY_TOOLS, ROLE_DIRS, TEAM_FILE_SOURCE, builtin_roles, claude_tool,
    is_known_tool, nyzhi_tool,
};
use crate::model::*;
use crate::policy::parse_key;
use crate::vars::{Origins, SecretSource, check_key, is_valid_key};
use agent_team_protocol::TeamStrategy;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `sandbox = "on" | "off" | "weak"`, or the `[sandbox]` table: `mode`, `write`, `read`, `read_deny`, `protect`,
/// `network`.
#[derive(Debug)]
enum RawSandbox {
    Mode(SandboxMode),
    Table(RawSandboxTable),
}

impl<'de> Deserialize<'de> for RawSandbox {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSandbox;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`on`, `off` or `weak`, or a [sandbox] table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSandbox, E> {
                match v {
                    "on" => Ok(RawSandbox::Mode(SandboxMode::On)),
                    "off" => Ok(RawSandbox::Mode(SandboxMode::Off)),
                    "weak" => Ok(RawSandbox::Mode(SandboxMode::Weak)),
                    other => Err(E::custom(format!(
                        "unknown variant `{other}`, expected `on`, `off` or `weak`"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RawSandbox, A::Error> {
                RawSandboxTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawSandbox::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `[join]` table: where the daemon listens for workers that dial in (docs/JOIN.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoin {
    /// `HOST:PORT` for `agent-team up` (what `--join-listen` gives).
    #[allow(dead_code)]
    listen: Option<String>,
}

/// The `[sandbox]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandboxTable {
    #[serde(default)]
    mode: SandboxMode,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    read_deny: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    protect: Vec<String>,
    /// `[sandbox.network]`.
    #[serde(default)]
    network: crate::SandboxNetwork,
}

/// The top level's `finish`: what `run` does with worktree teammates' work at its end
/// (`finish = "merge"`), or a `[finish]` table with it as `mode` and `review`: more paths
/// that are the team's control plane (see [`RawFinishTable`]).
#[derive(Debug)]
enum RawFinish {
    Mode(agent_team_protocol::FinishPolicy),
    Table(RawFinishTable),
}

impl<'de> Deserialize<'de> for RawFinish {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawFinish;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`keep`, `merge` or `pr`, or a [finish] table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawFinish, E> {
                agent_team_protocol::FinishPolicy::deserialize(
                    serde::de::value::StrDeserializer::<E>::new(v),
                )
                .map(RawFinish::Mode)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RawFinish, A::Error> {
                RawFinishTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawFinish::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `[finish]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFinishTable {
    /// What `run` does at its end (as `finish = "…"`).
    #[serde(default)]
    mode: agent_team_protocol::FinishPolicy,
    /// Paths (prefixes, relative to the workspace) a merge lands only when the operator
    /// accepts them, beside the fixed control plane.
    #[serde(default)]
    review: Vec<Spanned<String>>,
}

impl RawFinish {
    fn mode(&self) -> agent_team_protocol::FinishPolicy {
        match self {
            RawFinish::Mode(m) => *m,
            RawFinish::Table(t) => t.mode,
        }
    }

    /// `review`'s paths, checked: relative to the workspace, inside it (`./` dropped).
    fn review(&self, cx: &Ctx) -> Result<Vec<String>, ConfigError> {
        let RawFinish::Table(t) = self else {
            return Ok(Vec::new());
        };
        t.review
            .iter()
            .map(|p| {
                let span = Some(p.span());
                let v = p.get_ref().trim_start_matches("./");
                let bad = v.is_empty()
                    || v.starts_with('/')
                    || v.split('/').any(|c| c == "..")
                    || v.chars().any(char::is_control);
                if bad {
                    return Err(cx.err(
                        span,
                        "finish.review",
                        format!(
                            "{:?} is not a path inside the workspace (relative, no `..`)",
                            p.get_ref()
                        ),
                    ));
                }
                Ok(v.to_string())
            })
            .collect()
    }
}

impl RawSandbox {
    fn mode(&self) -> SandboxMode {
        match self {
            RawSandbox::Mode(m) => *m,
            RawSandbox::Table(t) => t.mode,
        }
    }

    /// The table's paths made absolute: `~/` is the home dir, others are relative to the
    /// workspace; an empty one is an error naming the field.
    fn paths(&self, cx: &Ctx, workspace: &Path) -> Result<SandboxPaths, ConfigError> {
        let RawSandbox::Table(t) = self else {
            return Ok(SandboxPaths::default());
        };
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let resolve = |field: &str, list: &[String]| -> Result<Vec<PathBuf>, ConfigError> {
            list.iter()
                .map(|p| match (p.strip_prefix("~/"), &home) {
                    _ if p.trim().is_empty() => {
                        Err(cx.err(None, &format!("sandbox.{field}"), "an empty path"))
                    }
                    (Some(rest), Some(h)) => Ok(h.join(rest)),
                    (Some(_), None) => Err(cx.err(
                        None,
                        &format!("sandbox.{field}"),
                        format!("{p} needs HOME to be set"),
                    )),
                    (None, _) => Ok(workspace.join(p)),
                })
                .collect()
        };
        Ok(SandboxPaths {
            write: resolve("write", &t.write)?,
            read_deny: resolve("read_deny", &t.read_deny)?,
            read: resolve("read", &t.read)?,
            protect: resolve("protect", &t.protect)?,
            network: Default::default(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamFile {
    name: Option<Spanned<String>>,
    goal: Option<Spanned<String>>,
    backend: Option<BackendKind>,
    layout: Option<Layout>,
    max_teammates: Option<usize>,
    approver: Option<Approver>,
    permission_timeout: Option<u64>,
    end_grace: Option<u64>,
    spawn_stagger_ms: Option<u64>,
    finish: Option<RawFinish>,
    sandbox: Option<RawSandbox>,
    board: Option<bool>,
    strategy: Option<Spanned<String>>,
    max_rounds: Option<Spanned<u32>>,
    coordinator_prompt: Option<Spanned<String>>,
    collaborate_order: Option<CollaborateOrder>,
    memory: Option<crate::model::MemoryScope>,
    default_role: Option<Spanned<String>>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    ssh: crate::model::SshSettings,
    search: Option<Spanned<RawSearch>>,
    #[serde(default)]
    defaults: RawRole,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<RawRole>>,
    #[serde(default)]
    teammates: Vec<Spanned<RawTeammate>>,
    #[serde(default)]
    tasks: Vec<Spanned<RawTask>>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<RawSecret>>,
    budget_tokens: Option<u64>,
    budget_usd: Option<f64>,
    #[serde(default)]
    prices: BTreeMap<String, crate::Price>,
    #[serde(default)]
    telemetry: crate::Telemetry,
    #[serde(default)]
    notify: crate::Notify,
    #[serde(default)]
    hooks: crate::Hooks,
    /// `[[schedule]]` (issue 69), checked here, read by `triggers::load`.
    #[serde(default)]
    schedule: Vec<crate::triggers::Schedule>,
    /// `[[webhooks]]` (issue 69), checked here, read by `triggers::load`.
    #[serde(default)]
    webhooks: Vec<crate::triggers::Webhook>,
    /// `[join]` (issue 66): `listen`, checked here, read by `agent-team up`.
    #[serde(default)]
    #[allow(dead_code)]
    join: Option<RawJoin>,
}

/// `[search]`, as written: `provider`, `url`, `api_key_env`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    provider: Spanned<SearchProvider>,
    url: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
}

/// `[search]` resolved: the provider's default address and key variable where none is given.
/// SearXNG needs a `url` and takes no key; an address must be http(s) and a key variable an
/// environment variable's name. Errors name the file, the line and the field.
fn resolve_search(
    cx: &Ctx,
    raw: Option<&Spanned<RawSearch>>,
) -> Result<Option<SearchSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let r = raw.get_ref();
    let provider = *r.provider.get_ref();
    let name = provider.as_str();
    let url = match (&r.url, provider.default_url()) {
        (Some(u), _) => {
            let v = u.get_ref().trim();
            let host = v
                .strip_prefix("https://")
                .or_else(|| v.strip_prefix("http://"))
                .unwrap_or_default();
            if host.is_empty() || host.starts_with('/') || v.contains(char::is_whitespace) {
                return Err(cx.err(
                    Some(u.span()),
                    "search.url",
                    format!(
                        "search.url {:?} is not an http:// or https:// address",
                        u.get_ref()
                    ),
                ));
            }
            v.trim_end_matches('/').to_string()
        }
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(cx.err(
                Some(raw.span()),
                "search.url",
                format!(
                    "provider {name:?} has no default address: give `url`, the base address of \
                     your SearXNG instance (e.g. url = \"http://localhost:8888\"; its \
                     settings.yml must list json in search.formats)"
                ),
            ));
        }
    };
    let api_key_env = match (&r.api_key_env, provider.default_key_env()) {
        (Some(k), None) => {
            return Err(cx.err(
                Some(k.span()),
                "search.api_key_env",
                format!("provider {name:?} takes no key: remove api_key_env"),
            ));
        }
        (Some(k), Some(_)) => {
            if !is_valid_key(k.get_ref()) {
                return Err(cx.err(
                    Some(k.span()),
                    "search.api_key_env",
                    format!(
                        "search.api_key_env {:?} is not an environment variable name",
                        k.get_ref()
                    ),
                ));
            }
            Some(k.get_ref().clone())
        }
        (None, d) => d.map(str::to_string),
    };
    Ok(Some(SearchSettings {
        provider,
        url,
        api_key_env,
    }))
}

/// `[secrets] KEY = { env = "NAME" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: String,
}

/// The fields of a role as written; everything optional so layers can be merged.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRole {
    description: Option<String>,
    system_prompt: Option<Spanned<String>>,
    /// Where `system_prompt` came from when not from the team file (a role file).
    #[serde(skip)]
    prompt_origin: Option<(PathBuf, usize)>,
    /// Where the role comes from (`team file`, a role file's path), for `agent-team roles`.
    #[serde(skip)]
    source: Option<String>,
    provider: Option<Provider>,
    model: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    tools: Option<Vec<String>>,
    /// Nyzhi's name for `tools`: the same list; giving both is an error naming the role. Read
    /// into `tools` (see [`allowed_tools_alias`]) before the layers are merged.
    allowed_tools: Option<Vec<String>>,
    permissions: Option<BTreeMap<String, PermAction>>,
    restart: Option<RestartPolicy>,
    isolation: Option<Isolation>,
    max_steps: Option<u32>,
    command: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    context_tokens: Option<u32>,
    stream: Option<bool>,
    cache: Option<bool>,
    budget_tokens: Option<u64>,
    budget_usd: Option<f64>,
    hooks: Option<crate::Hooks>,
    plan_required: Option<bool>,
    /// What `run` does with a worktree member's work at its end.
    finish: Option<agent_team_protocol::FinishPolicy>,
    /// `[roles.X.sandbox]`: `write`, `read` and `read_deny` for this role's members.
    sandbox: Option<SandboxPaths>,
    /// The ssh destination its members run on.
    host: Option<String>,
    /// The container its members run in.
    container: Option<crate::container::RawContainer>,
    /// The names its members are offered the team tools under (`qwen`; none: ours).
    tool_names: Option<String>,
    /// Tools a role file takes away (Claude Code's `disallowedTools`), from its `tools` or from
    /// the set it would have without them.
    #[serde(skip)]
    disallowed: Option<Vec<String>>,
    /// A role file's `read_only: true` (or Claude Code's `permissionMode: plan`): the role
    /// keeps only the tools that change nothing ([`READ_ONLY_TOOLS`]), whatever `tools` says.
    #[serde(skip)]
    read_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeammate {
    name: Spanned<String>,
    role: Option<Spanned<String>>,
    instructions: Option<String>,
    model: Option<String>,
    provider: Option<Provider>,
    color: Option<Spanned<String>>,
    plan_required: Option<bool>,
    host: Option<Spanned<String>>,
    workspace: Option<Spanned<String>>,
    container: Option<Spanned<crate::container::RawContainer>>,
}

/// The leader's role: never a member's default.
const LEADER_ROLE: &str = agent_team_protocol::names::LEADER;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    key: Option<String>,
    title: Spanned<String>,
    description: Option<Spanned<String>>,
    run: Option<Spanned<String>>,
    #[serde(default)]
    after: Vec<String>,
    assign: Option<String>,
}

/// Where a byte offset falls, as (line, column), both from 1.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// The line the string value at `span` starts on (a multi-line string's first line break
    /// is not part of its value).
    fn value_line(&self, span: std::ops::Range<usize>) -> usize {
        let (line, _) = line_col(self.text, span.start);
        let raw = self.text.get(span.start..).unwrap_or_default();
        let skips_newline = ["\"", "'"].iter().any(|q| {
            raw.strip_prefix(q.repeat(3).as_str())
                .is_some_and(|r| r.starts_with('\n') || r.starts_with("\r\n"))
        });
        line + usize::from(skips_newline)
    }

    fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = span
            .map(|s| line_col(self.text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            col,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

/// Parses and resolves a team file. `workspace` defaults to the file's directory.
pub fn parse_team_file(path: &Path, text: &str) -> Result<TeamConfig, ConfigError> {
    let cx = Ctx { path, text };
    check_not_empty(&cx)?;
    let mut raw = read_toml(path, text)?;
    let workspace = team_workspace(path);
    let name = team_name(&cx, &raw.name)?;
    let mut warnings = Vec::new();
    let layers = role_layers(&cx, &mut raw, &workspace, &mut warnings)?;
    check_defaults(&cx, &raw.defaults)?;
    let mut origins = Origins::default();
    let roles = resolve_roles(&cx, &raw, layers, &mut origins)?;
    let default_role = default_role(&cx, &raw.default_role, &roles.roles)?;
    let max_teammates = raw.max_teammates.unwrap_or(10);
    let teammates = resolve_teammates(&cx, &raw.teammates, &roles.roles, &default_role)?;
    check_ssh(&cx, &raw.ssh)?;
    check_limits(&cx, &raw.limits)?;
    check_plans(&cx, &raw.roles, &roles.roles, &teammates)?;
    check_team_size(&cx, &teammates, max_teammates)?;
    let tasks = resolve_tasks(&cx, &raw.tasks, &teammates, &mut origins)?;
    let variables = resolve_variables(&cx, &raw.variables)?;
    let secrets = resolve_secrets(&cx, &raw.secrets, &variables, &mut origins)?;
    if let Some(g) = &raw.goal {
        origins.set("goal".into(), path, cx.value_line(g.span()));
    }
    let budget = budget_limit(&cx, "", raw.budget_tokens, raw.budget_usd)?;
    check_prices(&cx, &raw.prices)?;
    check_hooks(&cx, "hooks", &raw.hooks)?;
    check_durations(&cx, &raw)?;
    crate::triggers::check(
        path,
        &raw.schedule,
        &raw.webhooks,
        &raw.secrets.keys().cloned().collect(),
    )?;
    check_notify(&cx, &raw.notify, &secrets)?;
    let strategy = team_strategy(&cx, &raw.strategy)?;
    let max_rounds = max_rounds(&cx, &raw.max_rounds)?;
    if let Some(p) = &raw.coordinator_prompt {
        origins.set("coordinator_prompt".into(), path, cx.value_line(p.span()));
    }
    let search = resolve_search(&cx, raw.search.as_ref())?;
    let sandbox_paths = match &raw.sandbox {
        Some(s) => s.paths(&cx, &workspace)?,
        None => SandboxPaths::default(),
    };
    let finish_review = match &raw.finish {
        Some(f) => f.review(&cx)?,
        None => Vec::new(),
    };
    let sandbox_network = sandbox_network(&cx, &raw.sandbox)?;
    let strategy_span = raw.strategy.as_ref().map(|st| st.span());
    let cfg = TeamConfig {
        name,
        goal: raw.goal.map(Spanned::into_inner),
        backend: raw.backend.unwrap_or_default(),
        layout: raw.layout.unwrap_or_default(),
        max_teammates,
        approver: raw.approver.unwrap_or_default(),
        permission_timeout_secs: raw.permission_timeout.unwrap_or(300),
        end_grace_secs: raw.end_grace.unwrap_or(crate::DEFAULT_END_GRACE_SECS),
        spawn_stagger_ms: raw
            .spawn_stagger_ms
            .unwrap_or(crate::model::DEFAULT_SPAWN_STAGGER_MS),
        finish: raw.finish.as_ref().map(RawFinish::mode).unwrap_or_default(),
        finish_review,
        roles: roles.roles,
        teammates,
        tasks,
        workspace,
        source: Some(path.to_path_buf()),
        tmux: None,
        sandbox: raw
            .sandbox
            .as_ref()
            .map(RawSandbox::mode)
            .unwrap_or_default(),
        sandbox_paths,
        sandbox_network,
        board: raw.board.unwrap_or(true),
        limits: raw.limits,
        ssh: raw.ssh,
        search,
        variables,
        secrets,
        strategy,
        max_rounds,
        coordinator_prompt: raw
            .coordinator_prompt
            .map(Spanned::into_inner)
            .unwrap_or_else(|| DEFAULT_COORDINATOR_PROMPT.to_string()),
        collaborate_order: raw.collaborate_order.unwrap_or_default(),
        memory: raw.memory.unwrap_or_default(),
        default_role,
        default_model: raw.defaults.model.clone().filter(|m| !m.is_empty()),
        overrides: Default::default(),
        budget,
        role_budgets: roles.budgets,
        prices: raw.prices,
        notify: raw.notify,
        hooks: raw.hooks,
        role_hooks: roles.hooks,
        telemetry: raw.telemetry,
        origins,
        warnings,
    };
    check_team_strategy(&cx, &cfg, strategy_span)?;
    Ok(cfg)
}

/// Checks the team's strategy against its roster; an error without a place points at the
/// `strategy` key.
fn check_team_strategy(
    cx: &Ctx<'_>,
    cfg: &TeamConfig,
    strategy_span: Option<std::ops::Range<usize>>,
) -> Result<(), ConfigError> {
    check_strategy(cfg).map_err(|mut e| {
        if e.file.as_os_str().is_empty() {
            e.file = cx.path.to_path_buf();
            e.line = strategy_span.map(|s| line_col(cx.text, s.start).0);
        }
        e
    })
}

/// An empty file is more likely a mistake than a wish for team `default` with built-ins.
fn check_not_empty(cx: &Ctx<'_>) -> Result<(), ConfigError> {
    if cx
        .text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(cx.err(
            None,
            "name",
            "the team file is empty; it needs at least a name, e.g. name = \"webapp\"",
        ));
    }
    Ok(())
}

/// The team file's TOML as written, its syntax or shape errors placed where they are.
fn read_toml(path: &Path, text: &str) -> Result<RawTeamFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let field = e.message().split('`').nth(1).map(str::to_string);
        let (line, col) = e
            .span()
            .map(|s| line_col(text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        ConfigError {
            file: path.to_path_buf(),
            line,
            col,
            field,
            message: e.message().trim().to_string(),
        }
    })
}

/// The team's workspace: the team file's directory, canonical when it can be.
fn team_workspace(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// `name`, checked; `default` when none is given.
fn team_name(cx: &Ctx<'_>, name: &Option<Spanned<String>>) -> Result<String, ConfigError> {
    match name {
        Some(n) => {
            agent_team_protocol::names::validate("team", n.get_ref())
                .map_err(|m| cx.err(Some(n.span()), "name", m))?;
            Ok(n.get_ref().clone())
        }
        None => Ok("default".to_string()),
    }
}

/// The roles as written, each the layers of one name merged: role files, then `[roles.X]`
/// over them (built-ins and `[defaults]` come under all in [`resolve_roles`]). Aliases and
/// tool names of `[defaults]` and `[roles.X]` are normalised on the way, warnings kept.
fn role_layers(
    cx: &Ctx<'_>,
    raw: &mut RawTeamFile,
    workspace: &Path,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, RawRole>, ConfigError> {
    allowed_tools_alias(cx, "defaults", None, &mut raw.defaults)?;
    let mut layers: BTreeMap<String, RawRole> = BTreeMap::new();
    let (files, file_warnings) = load_role_files(workspace)?;
    warnings.extend(file_warnings);
    team_file_tools(cx, "defaults", None, &mut raw.defaults, warnings)?;
    for (name, role) in files {
        layers.insert(name, role);
    }
    for (rname, r) in &raw.roles {
        agent_team_protocol::names::validate("role", rname)
            .map_err(|m| cx.err(Some(r.span()), &format!("roles.{rname}"), m))?;
        let mut top = RawRole {
            source: Some(TEAM_FILE_SOURCE.to_string()),
            ..r.get_ref().clone()
        };
        allowed_tools_alias(cx, &format!("roles.{rname}"), Some(r.span()), &mut top)?;
        team_file_tools(
            cx,
            &format!("roles.{rname}"),
            Some(r.span()),
            &mut top,
            warnings,
        )?;
        let merged = match layers.remove(rname) {
            // A role file's role that the team file only adds to still comes from that file.
            Some(base) => {
                let source = base
                    .source
                    .as_ref()
                    .map(|f| format!("{f} + {TEAM_FILE_SOURCE}"));
                RawRole {
                    source: source.or(top.source.clone()),
                    ..overlay(base, top)
                }
            }
            None => top,
        };
        layers.insert(rname.clone(), merged);
    }
    Ok(layers)
}

/// `[defaults]` holds no budget and no hooks: those are per role or for the whole team.
fn check_defaults(cx: &Ctx<'_>, defaults: &RawRole) -> Result<(), ConfigError> {
    if defaults.budget_tokens.is_some() || defaults.budget_usd.is_some() {
        return Err(cx.err(
            None,
            "defaults.budget_tokens",
            "a budget is set per role in [roles.NAME] or for the whole team at the top level, \
             not in [defaults]",
        ));
    }
    if defaults.hooks.is_some() {
        return Err(cx.err(
            None,
            "defaults.hooks",
            "hooks are set for the whole team in [hooks] or per role in [roles.NAME.hooks], \
             not in [defaults]",
        ));
    }
    Ok(())
}

/// The team's roles resolved, with the budgets and hooks some of them set.
struct ResolvedRoles {
    roles: BTreeMap<String, Role>,
    budgets: BTreeMap<String, agent_team_protocol::BudgetLimit>,
    hooks: BTreeMap<String, crate::Hooks>,
}

/// The built-in roles with `layers` over them and `[defaults]` under all; each role's budget
/// and hooks checked and kept beside it.
fn resolve_roles(
    cx: &Ctx<'_>,
    raw: &RawTeamFile,
    layers: BTreeMap<String, RawRole>,
    origins: &mut Origins,
) -> Result<ResolvedRoles, ConfigError> {
    let mut roles = builtin_roles();
    let mut budgets = BTreeMap::new();
    let mut hooks = BTreeMap::new();
    let resolved: HashSet<String> = layers.keys().cloned().collect();
    for (rname, layer) in layers {
        let span = raw.roles.get(&rname).map(|r| r.span());
        let budget = budget_limit(
            cx,
            &format!("roles.{rname}"),
            layer.budget_tokens,
            layer.budget_usd,
        )?;
        if budget.is_set() {
            budgets.insert(rname.clone(), budget);
        }
        if let Some(h) = layer.hooks.as_ref().filter(|h| !h.is_empty()) {
            check_hooks(cx, &format!("roles.{rname}.hooks"), h)?;
            hooks.insert(rname.clone(), h.clone());
        }
        let base = roles.get(&rname).cloned();
        let role = resolve_role(cx, &rname, base, &raw.defaults, layer, span, origins)?;
        roles.insert(rname, role);
    }
    // Built-ins not overridden still take [defaults] (provider, model, …). A role from a role
    // file took them under its own keys above; taking them again over it would put [defaults]'s
    // `tools` over the file's and lose its `read_only` and `disallowedTools`.
    for (rname, role) in roles.iter_mut() {
        if !resolved.contains(rname) {
            *role = resolve_role(
                cx,
                rname,
                Some(role.clone()),
                &raw.defaults,
                RawRole::default(),
                None,
                origins,
            )?;
        }
    }
    Ok(ResolvedRoles {
        roles,
        budgets,
        hooks,
    })
}

/// `default_role`: a known role other than the leader's; the built-in default when none is
/// given.
fn default_role(
    cx: &Ctx<'_>,
    default_role: &Option<Spanned<String>>,
    roles: &BTreeMap<String, Role>,
) -> Result<String, ConfigError> {
    match default_role {
        Some(r) if !roles.contains_key(r.get_ref()) || r.get_ref() == LEADER_ROLE => {
            let known: Vec<&String> = roles.keys().filter(|k| *k != LEADER_ROLE).collect();
            Err(cx.err(
                Some(r.span()),
                "default_role",
                format!("unknown role {:?}; known roles: {known:?}", r.get_ref()),
            ))
        }
        Some(r) => Ok(r.get_ref().clone()),
        None => Ok(crate::model::DEFAULT_ROLE.to_string()),
    }
}

/// `[[teammates]]`, each checked: a valid name, not the leader's, listed once.
fn resolve_teammates(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawTeammate>],
    roles: &BTreeMap<String, Role>,
    default_role: &str,
) -> Result<Vec<Teammate>, ConfigError> {
    let mut teammates = Vec::new();
    let mut seen = HashSet::new();
    for t in raw {
        let tm = t.get_ref();
        let n = tm.name.get_ref();
        agent_team_protocol::names::validate("agent", n)
            .map_err(|m| cx.err(Some(tm.name.span()), "teammates.name", m))?;
        if n == agent_team_protocol::names::LEADER {
            return Err(cx.err(
                Some(tm.name.span()),
                "teammates.name",
                "the name `leader` is reserved for the leader",
            ));
        }
        if !seen.insert(n.clone()) {
            return Err(cx.err(
                Some(tm.name.span()),
                "teammates.name",
                format!("teammate {n:?} is listed twice"),
            ));
        }
        teammates.push(resolve_teammate(cx, t, roles, default_role)?);
    }
    Ok(teammates)
}

/// One `[[teammates]]` entry: its role known, its host, workspace and colour valid.
fn resolve_teammate(
    cx: &Ctx<'_>,
    t: &Spanned<RawTeammate>,
    roles: &BTreeMap<String, Role>,
    default_role: &str,
) -> Result<Teammate, ConfigError> {
    let tm = t.get_ref();
    let role = tm
        .role
        .as_ref()
        .map(|r| r.get_ref().clone())
        .unwrap_or_else(|| default_role.to_string());
    if !roles.contains_key(&role) {
        let span = tm.role.as_ref().map(|r| r.span()).unwrap_or(t.span());
        let known: Vec<&String> = roles.keys().collect();
        return Err(cx.err(
            Some(span),
            "teammates.role",
            format!("unknown role {role:?}; known roles: {known:?}"),
        ));
    }
    if let Some(h) = &tm.host {
        crate::model::check_host(h.get_ref())
            .map_err(|m| cx.err(Some(h.span()), "teammates.host", m))?;
    }
    if let Some(w) = &tm.workspace
        && tm.host.is_none()
        && roles.get(&role).and_then(|r| r.host.as_ref()).is_none()
    {
        return Err(cx.err(
            Some(w.span()),
            "teammates.workspace",
            "`workspace` is a directory on the member's host: give it a `host` too",
        ));
    }
    let container = match &tm.container {
        Some(c) => Some(
            c.get_ref()
                .clone()
                .resolve()
                .map_err(|m| cx.err(Some(c.span()), "teammates.container", m))?,
        ),
        None => None,
    };
    if let Some(c) = &tm.color
        && !crate::model::valid_color(c.get_ref())
    {
        return Err(cx.err(
            Some(c.span()),
            "teammates.color",
            format!(
                "color {:?} is neither a colour name (e.g. \"cyan\") nor #rrggbb",
                c.get_ref()
            ),
        ));
    }
    Ok(Teammate {
        name: tm.name.get_ref().clone(),
        role,
        instructions: tm.instructions.clone().filter(|s| !s.trim().is_empty()),
        model: tm.model.clone().filter(|s| !s.is_empty()),
        provider: tm.provider,
        color: tm.color.as_ref().map(|c| c.get_ref().clone()),
        plan_required: tm.plan_required,
        host: tm.host.as_ref().map(|h| h.get_ref().clone()),
        workspace: tm.workspace.as_ref().map(|w| w.get_ref().clone()),
        container,
    })
}

/// `[ssh] command` names a program.
fn check_ssh(cx: &Ctx<'_>, ssh: &crate::model::SshSettings) -> Result<(), ConfigError> {
    if ssh.command.is_empty() || ssh.command[0].is_empty() {
        return Err(cx.err(None, "ssh.command", "`command` must name the ssh program"));
    }
    Ok(())
}

/// `[limits]` are not below what the daemon needs to work.
fn check_limits(cx: &Ctx<'_>, l: &Limits) -> Result<(), ConfigError> {
    for (field, value, min) in [
        (
            "limits.hello_timeout_secs",
            l.hello_timeout_secs as usize,
            1,
        ),
        ("limits.max_connections", l.max_connections, 8),
        (
            "limits.max_unread_bytes",
            l.max_unread_bytes,
            2 * 1024 * 1024,
        ),
    ] {
        if value < min {
            return Err(cx.err(
                None,
                field,
                format!("{field} = {value} is too small; the least is {min}"),
            ));
        }
    }
    Ok(())
}

/// `plan_required` can be kept: never on the leader, and only where the provider can plan.
fn check_plans(
    cx: &Ctx<'_>,
    raw_roles: &BTreeMap<String, Spanned<RawRole>>,
    roles: &BTreeMap<String, Role>,
    teammates: &[Teammate],
) -> Result<(), ConfigError> {
    if roles
        .get(agent_team_protocol::names::LEADER)
        .is_some_and(|r| r.plan_required)
    {
        return Err(cx.err(
            raw_roles
                .get(agent_team_protocol::names::LEADER)
                .map(|r| r.span()),
            "roles.leader.plan_required",
            "the leader needs no plan approval: plan_required is for teammates' roles",
        ));
    }
    // A role that requires a plan but whose own provider cannot plan would leave every
    // teammate spawned from it ungated without a word.
    for (name, r) in roles {
        if r.plan_required && !r.provider.can_plan() {
            return Err(cx.err(
                raw_roles.get(name).map(|r| r.span()),
                &format!("roles.{name}.plan_required"),
                format!(
                    "role {name:?} requires a plan, but {} (set provider on the role)",
                    crate::model::cannot_plan_reason(r.provider)
                ),
            ));
        }
    }
    for t in teammates {
        let provider = t
            .provider
            .or_else(|| roles.get(&t.role).map(|r| r.provider));
        let required = t
            .plan_required
            .unwrap_or_else(|| roles.get(&t.role).is_some_and(|r| r.plan_required));
        if let Some(p) = provider.filter(|p| required && !p.can_plan()) {
            return Err(cx.err(
                None,
                "teammates.plan_required",
                format!(
                    "teammate {:?} must have its plan approved, but {}",
                    t.name,
                    crate::model::cannot_plan_reason(p)
                ),
            ));
        }
    }
    Ok(())
}

/// No more `[[teammates]]` than `max_teammates`.
fn check_team_size(
    cx: &Ctx<'_>,
    teammates: &[Teammate],
    max_teammates: usize,
) -> Result<(), ConfigError> {
    if teammates.len() > max_teammates {
        return Err(cx.err(
            None,
            "teammates",
            format!(
                "{} teammates listed but max_teammates is {max_teammates}",
                teammates.len()
            ),
        ));
    }
    Ok(())
}

/// `[variables]`, their keys checked.
fn resolve_variables(
    cx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut variables = BTreeMap::new();
    for (k, v) in raw {
        let field = format!("variables.{k}");
        check_key(k).map_err(|m| cx.err(Some(v.span()), &field, format!("{field}: {m}")))?;
        variables.insert(k.clone(), v.get_ref().clone());
    }
    Ok(variables)
}

/// `[secrets]`: each key checked and not also a variable, each `env` a variable's name;
/// where each is set goes to `origins`.
fn resolve_secrets(
    cx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<RawSecret>>,
    variables: &BTreeMap<String, String>,
    origins: &mut Origins,
) -> Result<BTreeMap<String, SecretSource>, ConfigError> {
    let mut secrets = BTreeMap::new();
    for (k, v) in raw {
        let field = format!("secrets.{k}");
        check_key(k).map_err(|m| cx.err(Some(v.span()), &field, format!("{field}: {m}")))?;
        if variables.contains_key(k) {
            return Err(cx.err(
                Some(v.span()),
                &field,
                format!("{field}: {k:?} is both a variable and a secret; rename one"),
            ));
        }
        let env = &v.get_ref().env;
        if !is_valid_key(env) {
            return Err(cx.err(
                Some(v.span()),
                &field,
                format!("{field}: {env:?} is not an environment variable name"),
            ));
        }
        origins.set(field, cx.path, cx.value_line(v.span()));
        secrets.insert(
            k.clone(),
            SecretSource {
                env: Some(env.clone()),
            },
        );
    }
    Ok(secrets)
}

/// `[prices]`: each figure a number of dollars per million tokens, 0 or more.
fn check_prices(cx: &Ctx<'_>, prices: &BTreeMap<String, crate::Price>) -> Result<(), ConfigError> {
    for (model, p) in prices {
        for (what, v) in [
            ("input", Some(p.input)),
            ("output", Some(p.output)),
            ("cached_input", p.cached_input),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(cx.err(
                    None,
                    &format!("prices.{model}.{what}"),
                    format!(
                        "prices.{model}.{what} must be a price in dollars per million tokens, 0 or more"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `[notify]`'s webhook URLs: each a URL, `{ env = "NAME" }` or `{ secret = "KEY" }` of
/// `[secrets]`; `board_url` an HTTP URL.
fn check_notify(
    cx: &Ctx<'_>,
    notify: &crate::Notify,
    secrets: &BTreeMap<String, SecretSource>,
) -> Result<(), ConfigError> {
    let urls = [
        ("notify.slack_webhook", &notify.slack_webhook),
        ("notify.discord_webhook", &notify.discord_webhook),
        ("notify.webhook", &notify.webhook),
    ];
    for (field, url) in urls {
        if let Some(Err(m)) = url.as_ref().map(|u| u.check(secrets)) {
            return Err(cx.err(None, field, format!("{field}: {m}")));
        }
    }
    if let Some(b) = &notify.board_url
        && crate::NotifyUrl::Literal(b.clone()).check(secrets).is_err()
    {
        return Err(cx.err(
            None,
            "notify.board_url",
            "notify.board_url: expected an http:// or https:// URL",
        ));
    }
    Ok(())
}

/// Every duration at most a year; `notify.timeout_secs` at least a second.
fn check_durations(cx: &Ctx<'_>, raw: &RawTeamFile) -> Result<(), ConfigError> {
    for (field, value) in [
        ("permission_timeout", raw.permission_timeout.unwrap_or(0)),
        ("end_grace", raw.end_grace.unwrap_or(0)),
        ("spawn_stagger_ms", raw.spawn_stagger_ms.unwrap_or(0) / 1000),
        ("limits.hello_timeout_secs", raw.limits.hello_timeout_secs),
        ("notify.timeout_secs", raw.notify.timeout_secs),
    ] {
        if value > crate::MAX_DURATION_SECS {
            return Err(cx.err(
                None,
                field,
                format!(
                    "{field} = {value} is too long; the most is one year ({} seconds)",
                    crate::MAX_DURATION_SECS
                ),
            ));
        }
    }
    if raw.notify.timeout_secs == 0 {
        return Err(cx.err(
            None,
            "notify.timeout_secs",
            "notify.timeout_secs must be at least 1",
        ));
    }
    Ok(())
}

/// `strategy`: leader (the default), coordinator or collaborate.
fn team_strategy(
    cx: &Ctx<'_>,
    strategy: &Option<Spanned<String>>,
) -> Result<TeamStrategy, ConfigError> {
    match strategy {
        Some(st) => TeamStrategy::parse(st.get_ref()).ok_or_else(|| {
            cx.err(
                Some(st.span()),
                "strategy",
                format!(
                    "unknown strategy {:?}; use leader, coordinator or collaborate",
                    st.get_ref()
                ),
            )
        }),
        None => Ok(TeamStrategy::Leader),
    }
}

/// `max_rounds`: at least 1; [`DEFAULT_MAX_ROUNDS`] when none is given.
fn max_rounds(cx: &Ctx<'_>, max_rounds: &Option<Spanned<u32>>) -> Result<u32, ConfigError> {
    match max_rounds {
        Some(m) if *m.get_ref() == 0 => Err(cx.err(
            Some(m.span()),
            "max_rounds",
            "max_rounds must be at least 1",
        )),
        Some(m) => Ok(*m.get_ref()),
        None => Ok(DEFAULT_MAX_ROUNDS),
    }
}

/// `[sandbox.network]`, checked (the default when `sandbox` is a mode, not a table).
fn sandbox_network(
    cx: &Ctx<'_>,
    sandbox: &Option<RawSandbox>,
) -> Result<crate::SandboxNetwork, ConfigError> {
    match sandbox {
        Some(RawSandbox::Table(t)) => {
            t.network
                .check()
                .map_err(|why| cx.err(None, "sandbox.network.allow", why))?;
            Ok(t.network.clone())
        }
        _ => Ok(Default::default()),
    }
}

/// A `[hooks]` table's hooks can run: each command non-empty, each timeout at least 1 s.
fn check_hooks(cx: &Ctx<'_>, prefix: &str, hooks: &crate::Hooks) -> Result<(), ConfigError> {
    match hooks.problem() {
        Some((event, why)) => {
            let field = format!("{prefix}.{event}");
            Err(cx.err(None, &field, format!("{field}: {why}")))
        }
        None => Ok(()),
    }
}

/// Whether the team can work with its `strategy`: `coordinator` and `collaborate` need at
/// least one `[[teammates]]` (the workers), a leader whose role drives a model (it routes or
/// synthesises), and no `[[tasks]]` (the leader puts the workers' tasks on the board). Called
/// when a team file is read and again after `--strategy`.
pub fn check_strategy(cfg: &TeamConfig) -> Result<(), ConfigError> {
    let s = cfg.strategy;
    if s == TeamStrategy::Leader {
        return Ok(());
    }
    let err = |message: String| ConfigError {
        file: PathBuf::new(),
        line: None,
        col: None,
        field: Some("strategy".into()),
        message,
    };
    if cfg.teammates.is_empty() {
        return Err(err(format!(
            "strategy {s} needs workers: list them as [[teammates]]"
        )));
    }
    if !cfg.tasks.is_empty() {
        return Err(err(format!(
            "strategy {s} puts the workers' tasks on the board itself; [[tasks]] are for \
             strategy leader"
        )));
    }
    let leader_role = cfg.roles.get(agent_team_protocol::names::LEADER);
    if leader_role.is_none_or(|r| r.provider == Provider::Exec) {
        return Err(err(format!(
            "strategy {s} needs a leader that drives a model (give roles.leader or [defaults] a \
             provider and model)"
        )));
    }
    Ok(())
}

/// A budget as written (`budget_tokens`, `budget_usd` under `prefix`), checked: a dollar
/// figure must be a positive number, a token figure more than 0.
fn budget_limit(
    cx: &Ctx<'_>,
    prefix: &str,
    tokens: Option<u64>,
    usd: Option<f64>,
) -> Result<agent_team_protocol::BudgetLimit, ConfigError> {
    let field = |f: &str| {
        if prefix.is_empty() {
            f.to_string()
        } else {
            format!("{prefix}.{f}")
        }
    };
    if tokens == Some(0) {
        return Err(cx.err(
            None,
            &field("budget_tokens"),
            format!("{} must be more than 0", field("budget_tokens")),
        ));
    }
    if usd.is_some_and(|u| !u.is_finite() || u <= 0.0) {
        return Err(cx.err(
            None,
            &field("budget_usd"),
            format!(
                "{} must be a number of dollars above 0",
                field("budget_usd")
            ),
        ));
    }
    Ok(agent_team_protocol::BudgetLimit { tokens, usd })
}

fn overlay(base: RawRole, top: RawRole) -> RawRole {
    RawRole {
        description: top.description.or(base.description),
        // The prompt and where it came from go together.
        prompt_origin: if top.system_prompt.is_some() {
            top.prompt_origin
        } else {
            base.prompt_origin
        },
        system_prompt: top.system_prompt.or(base.system_prompt),
        provider: top.provider.or(base.provider),
        model: top.model.or(base.model),
        base_url: top.base_url.or(base.base_url),
        api_key_env: top.api_key_env.or(base.api_key_env),
        tools: top.tools.or(base.tools),
        permissions: top.permissions.or(base.permissions),
        restart: top.restart.or(base.restart),
        isolation: top.isolation.or(base.isolation),
        max_steps: top.max_steps.or(base.max_steps),
        command: top.command.or(base.command),
        env: top.env.or(base.env),
        context_tokens: top.context_tokens.or(base.context_tokens),
        stream: top.stream.or(base.stream),
        cache: top.cache.or(base.cache),
        budget_tokens: top.budget_tokens.or(base.budget_tokens),
        budget_usd: top.budget_usd.or(base.budget_usd),
        hooks: top.hooks.or(base.hooks),
        plan_required: top.plan_required.or(base.plan_required),
        finish: top.finish.or(base.finish),
        sandbox: top.sandbox.or(base.sandbox),
        host: top.host.or(base.host),
        container: top.container.or(base.container),
        tool_names: top.tool_names.or(base.tool_names),
        source: top.source.or(base.source),
        disallowed: top.disallowed.or(base.disallowed),
        allowed_tools: top.allowed_tools.or(base.allowed_tools),
        // A restriction of either layer stays: the team file cannot set it, and a layer
        // saying `false` does not undo one saying `true`.
        read_only: match (top.read_only, base.read_only) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (t, b) => t.or(b),
        },
    }
}

/// `allowed_tools` in `[roles.NAME]` or `[defaults]` (`prefix`) is another name for `tools`:
/// moved into `tools`; both given is an error naming the role.
fn allowed_tools_alias(
    cx: &Ctx<'_>,
    prefix: &str,
    span: Option<std::ops::Range<usize>>,
    role: &mut RawRole,
) -> Result<(), ConfigError> {
    let Some(allowed) = role.allowed_tools.take() else {
        return Ok(());
    };
    if role.tools.is_some() {
        let field = format!("{prefix}.allowed_tools");
        let whose = prefix
            .strip_prefix("roles.")
            .map_or_else(|| "[defaults]".to_string(), |n| format!("role {n:?}"));
        return Err(cx.err(
            span,
            &field,
            format!(
                "{whose} gives both tools and allowed_tools; allowed_tools is another name for \
                 tools, so give the list once"
            ),
        ));
    }
    role.tools = Some(allowed);
    Ok(())
}

/// The tool names of a team file's `tools` (`allowed_tools`) in `[roles.NAME]` or
/// `[defaults]` (`prefix`) as ours, mapped as a role file's are ([`map_tools`]: Claude Code's
/// `Read`, Nyzhi's `read`, …), so Nyzhi's `[agent.agents.roles.X]` example works as written.
/// Nyzhi's git tools have no counterpart: left out with a warning, as in a role file; any
/// other unknown name is an error naming the role (a typo in the team file is not let pass).
fn team_file_tools(
    cx: &Ctx<'_>,
    prefix: &str,
    span: Option<std::ops::Range<usize>>,
    role: &mut RawRole,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some(list) = role.tools.take() else {
        return Ok(());
    };
    let (mapped, unknown) = map_tools(&list);
    for t in unknown {
        if !NYZHI_GIT_TOOLS.contains(&t.as_str()) {
            return Err(cx.err(
                span,
                &format!("{prefix}.tools"),
                format!("unknown tool {t:?}"),
            ));
        }
        warnings.push(format!(
            "{}: {prefix}.tools: tool {t:?}: agent-team has no git tool and never gives bash \
             in its place; the role runs without it",
            cx.path.display()
        ));
    }
    role.tools = Some(mapped);
    Ok(())
}

/// A role's `tools`, each checked to be a tool of ours.
fn known_tools(
    cx: &Ctx<'_>,
    name: &str,
    span: &Option<std::ops::Range<usize>>,
    tools: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    for tool in &tools {
        if !is_known_tool(tool) {
            return Err(cx.err(
                span.clone(),
                &format!("roles.{name}.tools"),
                format!("unknown tool {tool:?}"),
            ));
        }
    }
    Ok(tools)
}

/// A role's `permissions` table read as policy rules (`tool` or `tool(pattern*)` keys, a tool
/// named as a role file would).
fn role_rules(
    cx: &Ctx<'_>,
    name: &str,
    span: &Option<std::ops::Range<usize>>,
    table: BTreeMap<String, PermAction>,
) -> Result<Vec<PolicyRule>, ConfigError> {
    let mut rules = Vec::new();
    for (key, action) in table {
        let Some((tool, pattern)) = parse_key(&key) else {
            return Err(cx.err(
                span.clone(),
                &format!("roles.{name}.permissions"),
                format!("bad rule {key:?}: use `tool` or `tool(pattern*)`"),
            ));
        };
        // A rule may name a tool as a role file would (`Bash(git *)`, `read`).
        let tool = if tool == "*" { tool } else { our_tool(&tool) };
        if tool != "*" && !is_known_tool(&tool) {
            return Err(cx.err(
                span.clone(),
                &format!("roles.{name}.permissions"),
                format!("unknown tool {tool:?} in rule {key:?}"),
            ));
        }
        rules.push(PolicyRule {
            tool,
            pattern,
            action,
        });
    }
    Ok(rules)
}

/// A role of the team file: its layer over the `[defaults]`, over the built-in or base role.
fn resolve_role(
    cx: &Ctx<'_>,
    name: &str,
    base: Option<Role>,
    defaults: &RawRole,
    layer: RawRole,
    span: Option<std::ops::Range<usize>>,
    origins: &mut Origins,
) -> Result<Role, ConfigError> {
    let r = overlay(defaults.clone(), layer);
    if let Some(p) = &r.system_prompt {
        let field = format!("roles.{name}.system_prompt");
        match &r.prompt_origin {
            Some((file, line)) => origins.set(field, file, *line),
            None => origins.set(field, cx.path, cx.value_line(p.span())),
        }
    }
    let fallback = base.unwrap_or_else(|| crate::builtin::default_role(name));
    let mut tools = match r.tools {
        Some(t) => known_tools(cx, name, &span, t)?,
        None => fallback.tools.clone(),
    };
    if let Some(gone) = &r.disallowed {
        tools.retain(|t| !gone.contains(t));
    }
    if r.read_only == Some(true) {
        tools.retain(|t| READ_ONLY_TOOLS.contains(&t.as_str()));
    }
    let permissions = match r.permissions {
        Some(p) => role_rules(cx, name, &span, p)?,
        None => fallback.permissions.clone(),
    };
    if let Some(cmd) = &r.command
        && cmd.is_empty()
    {
        return Err(cx.err(
            span,
            &format!("roles.{name}.command"),
            "command must name a program",
        ));
    }
    if let Some(h) = &r.host {
        crate::model::check_host(h)
            .map_err(|m| cx.err(span.clone(), &format!("roles.{name}.host"), m))?;
    }
    let container = match r.container {
        Some(c) => Some(
            c.resolve()
                .map_err(|m| cx.err(span.clone(), &format!("roles.{name}.container"), m))?,
        ),
        None => fallback.container,
    };
    if let Some(k) = &r.tool_names {
        check_tool_names(k)
            .map_err(|m| cx.err(span.clone(), &format!("roles.{name}.tool_names"), m))?;
    }
    if let Some(s) = &r.sandbox {
        s.network
            .check()
            .map_err(|m| cx.err(span, &format!("roles.{name}.sandbox.network.allow"), m))?;
    }
    Ok(Role {
        name: name.to_string(),
        description: r.description.unwrap_or(fallback.description),
        system_prompt: r
            .system_prompt
            .map(Spanned::into_inner)
            .unwrap_or(fallback.system_prompt),
        provider: r.provider.unwrap_or(fallback.provider),
        model: r.model.unwrap_or(fallback.model),
        base_url: r.base_url.or(fallback.base_url),
        api_key_env: r.api_key_env.or(fallback.api_key_env),
        tools,
        permissions,
        restart: r.restart.unwrap_or(fallback.restart),
        isolation: r.isolation.unwrap_or(fallback.isolation),
        max_steps: r.max_steps.unwrap_or(fallback.max_steps),
        command: r.command.or(fallback.command),
        env: r.env.unwrap_or(fallback.env),
        context_tokens: r.context_tokens.unwrap_or(fallback.context_tokens),
        stream: r.stream.unwrap_or(fallback.stream),
        cache: r.cache.unwrap_or(fallback.cache),
        source: r.source.unwrap_or(fallback.source),
        plan_required: r.plan_required.unwrap_or(fallback.plan_required),
        finish: r.finish.or(fallback.finish),
        sandbox: r.sandbox.unwrap_or(fallback.sandbox),
        host: r.host.or(fallback.host),
        container,
        tool_names: r.tool_names.or(fallback.tool_names),
    })
}

/// A role's `tool_names` must be a naming the tools catalogue has (`agent-team`, `qwen`).
fn check_tool_names(key: &str) -> Result<(), String> {
    if agent_team_tools::aliases::naming(Some(key)).is_some() {
        return Ok(());
    }
    let known: Vec<String> = agent_team_tools::aliases::NAMINGS
        .iter()
        .map(|n| format!("{:?}", n.key))
        .collect();
    Err(format!(
        "tool_names {key:?} is not a naming of the team tools; use one of {}",
        known.join(", ")
    ))
}

fn resolve_tasks(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawTask>],
    teammates: &[Teammate],
    origins: &mut Origins,
) -> Result<Vec<TaskSpec>, ConfigError> {
    let mut specs: Vec<(TaskSpec, std::ops::Range<usize>)> = Vec::new();
    let mut keys = HashMap::new();
    for (i, t) in raw.iter().enumerate() {
        let rt = t.get_ref();
        let key = rt.key.clone().unwrap_or_else(|| format!("task-{}", i + 1));
        if rt.title.get_ref().trim().is_empty() {
            return Err(cx.err(
                Some(t.span()),
                "tasks.title",
                "a task needs a non-empty title",
            ));
        }
        if keys.insert(key.clone(), i).is_some() {
            return Err(cx.err(
                Some(t.span()),
                "tasks.key",
                format!("task key {key:?} is used twice"),
            ));
        }
        if let Some(a) = &rt.assign
            && a != agent_team_protocol::names::LEADER
            && !teammates.iter().any(|m| &m.name == a)
        {
            return Err(cx.err(
                Some(t.span()),
                "tasks.assign",
                format!("no teammate {a:?} to assign to"),
            ));
        }
        origins.set(
            format!("tasks.{key}.title"),
            cx.path,
            cx.value_line(rt.title.span()),
        );
        if let Some(d) = &rt.description {
            origins.set(
                format!("tasks.{key}.description"),
                cx.path,
                cx.value_line(d.span()),
            );
        }
        if let Some(r) = &rt.run {
            origins.set(format!("tasks.{key}.run"), cx.path, cx.value_line(r.span()));
        }
        specs.push((
            TaskSpec {
                key,
                title: rt.title.get_ref().clone(),
                description: rt
                    .description
                    .as_ref()
                    .map(|d| d.get_ref().clone())
                    .unwrap_or_default(),
                run: rt.run.as_ref().map(|r| r.get_ref().clone()),
                after: rt.after.clone(),
                assign: rt.assign.clone(),
            },
            t.span(),
        ));
    }
    for (s, span) in &specs {
        for a in &s.after {
            if !keys.contains_key(a) {
                return Err(cx.err(
                    Some(span.clone()),
                    "tasks.after",
                    format!("task {:?} waits for unknown key {a:?}", s.key),
                ));
            }
        }
    }
    order_tasks(cx, &specs)
}

/// The tasks ordered so every one comes after its blockers; a cycle is an error.
fn order_tasks(
    cx: &Ctx<'_>,
    specs: &[(TaskSpec, std::ops::Range<usize>)],
) -> Result<Vec<TaskSpec>, ConfigError> {
    let mut done: HashSet<String> = HashSet::new();
    let mut ordered = Vec::new();
    while ordered.len() < specs.len() {
        let before = ordered.len();
        for (s, _) in specs {
            if !done.contains(&s.key) && s.after.iter().all(|a| done.contains(a)) {
                done.insert(s.key.clone());
                ordered.push(s.clone());
            }
        }
        if ordered.len() == before {
            let (stuck, span) = specs
                .iter()
                .find(|(s, _)| !done.contains(&s.key))
                .map(|(s, sp)| (s.key.clone(), sp.clone()))
                .unwrap_or_default();
            return Err(cx.err(
                Some(span),
                "tasks.after",
                format!("task {stuck:?} is part of a dependency cycle"),
            ));
        }
    }
    Ok(ordered)
}

/// The front matter keys agent-team reads, each under the name used in messages and the
/// spellings that mean it. A key is matched without case, `_` or `-`, so Nyzhi's snake_case
/// (`read_only`, `allowed_tools`, `disallowed_tools`, `max_steps`) and Claude Code's camelCase
/// (`disallowedTools`, `maxTurns`, `permissionMode`) both work; two spellings of one key in a
/// file (`tools` and `allowed_tools`, `max_steps` and `maxTurns`) are an error.
const FRONT_MATTER_KEYS: &[(&str, &[&str])] = &[
    ("name", &["name"]),
    ("description", &["description"]),
    ("tools", &["tools", "allowedtools"]),
    ("disallowed_tools", &["disallowedtools"]),
    ("read_only", &["readonly"]),
    ("max_steps", &["maxsteps", "maxturns"]),
    ("model", &["model"]),
    ("hooks", &["hooks"]),
    ("plan_required", &["planrequired"]),
    ("permission_mode", &["permissionmode"]),
    ("isolation", &["isolation"]),
    ("tool_names", &["toolnames"]),
    // Claude Code's colour for the subagent in its own UI: nothing to do here.
    ("color", &["color", "colour"]),
];

/// Claude Code's hook events that run before a tool call and can refuse it: a subagent file's
/// hooks for them restrict the role, and agent-team cannot run them, so they are an error.
const CLAUDE_BLOCKING_HOOKS: &[&str] = &["PreToolUse", "PermissionRequest"];

/// Claude Code's model aliases: a subagent file may name one, but no model API knows them.
const CLAUDE_MODEL_ALIASES: [&str; 4] = ["opus", "sonnet", "haiku", "opusplan"];

/// The built-in roles with the workspace's role files over them (no team file, no
/// `[defaults]`), and the files' warnings.
pub(crate) fn workspace_roles(
    workspace: &Path,
) -> Result<(BTreeMap<String, Role>, Vec<String>), ConfigError> {
    let cx = Ctx {
        path: workspace,
        text: "",
    };
    let (files, warnings) = load_role_files(workspace)?;
    let mut roles = builtin_roles();
    let mut origins = Origins::default();
    let mut layers: BTreeMap<String, RawRole> = BTreeMap::new();
    for (name, role) in files {
        layers.insert(name, role);
    }
    for (name, layer) in layers {
        let base = roles.get(&name).cloned();
        let role = resolve_role(
            &cx,
            &name,
            base,
            &RawRole::default(),
            layer,
            None,
            &mut origins,
        )?;
        roles.insert(name, role);
    }
    Ok((roles, warnings))
}

/// Roles read from files, by name, in the order they are layered.
type RoleLayers = Vec<(String, RawRole)>;

/// Roles from `.claude/agents/*.md`, then `.nyzhi/agents/*.md`, then `.agent-team/agents/*.md`
/// (a later one wins for the same name), and the warnings their files gave.
fn load_role_files(workspace: &Path) -> Result<(RoleLayers, Vec<String>), ConfigError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for sub in ROLE_DIRS {
        let dir = workspace.join(sub);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        files.sort();
        for f in files {
            let (name, mut role, w) = parse_role_file(&f)?;
            let shown = f
                .file_name()
                .map(|n| format!("{sub}/{}", n.to_string_lossy()))
                .unwrap_or_else(|| f.display().to_string());
            role.source = Some(shown);
            warnings.extend(w);
            out.push((name, role));
        }
    }
    Ok((out, warnings))
}

/// Parses one markdown role file. With YAML front matter between `---` lines, the rest is the
/// prompt; without, it is plain Markdown (Nyzhi's form): the file name is the role's name, the
/// first `# Heading` its description, the whole text its prompt.
///
/// The front matter never widens a role: every key that restricts one is honoured or is an
/// error naming the file and the key. `tools` (or `allowed_tools`) lists the role's tools,
/// `disallowed_tools` takes tools away, `read_only: true` (or Claude Code's
/// `permissionMode: plan`) keeps only the tools that change nothing, `max_steps` (or
/// `maxTurns`) caps the model turns, `isolation: worktree` gives each teammate its own
/// worktree. Tool names may be ours, Claude Code's ([`claude_tool`]) or Nyzhi's
/// ([`nyzhi_tool`]); a name with no counterpart is left out of `tools` with a warning (the
/// role runs without it) and of `disallowed_tools` with a warning (there is nothing to take
/// away), but a pattern such as `Bash(rm *)` in `disallowed_tools` is an error, since taking
/// part of a tool away is for `permissions` in the team file. Keys that cannot restrict the
/// role (Claude Code's `mcpServers`, `skills`, a `permissionMode` that only asks less, hooks
/// that do not run before a call) are left out with a warning; `color` silently; a key
/// agent-team does not know is a warning too.
pub(crate) fn parse_role_file(path: &Path) -> Result<(String, RawRole, Vec<String>), ConfigError> {
    let err = |line, field, message| role_file_err(path, line, field, message);
    let text =
        std::fs::read_to_string(path).map_err(|e| err(None, None, format!("cannot read: {e}")))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("role")
        .to_string();
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return plain_role_file(path, &text, stem);
    };
    let end = rest.find("\n---").ok_or_else(|| {
        err(
            None,
            None,
            "the front matter is not closed with `---`".into(),
        )
    })?;
    let (yaml, body) = (&rest[..end], &rest[end + 4..]);
    // The line the prompt starts on, for errors about its placeholders.
    let body_at = text.len() - body.len() + (body.len() - body.trim_start().len());
    let body_line = text[..body_at].matches('\n').count() + 1;
    let mut fm = FrontMatter::read(path, yaml)?;
    let name = fm.text("name")?.unwrap_or(stem);
    agent_team_protocol::names::validate("role", &name)
        .map_err(|m| err(Some(2), Some("name"), m))?;
    let (mut role, warnings) = fm.into_role(&name)?;
    role.system_prompt = Some(body.trim().to_string())
        .filter(|b| !b.is_empty())
        .map(|b| Spanned::new(0..0, b));
    role.prompt_origin = Some((path.to_path_buf(), body_line));
    Ok((name, role, warnings))
}

/// An error in the role file at `path`.
fn role_file_err(
    path: &Path,
    line: Option<usize>,
    field: Option<&str>,
    message: String,
) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line,
        col: None,
        field: field.map(str::to_string),
        message,
    }
}

/// A role file without front matter, plain Markdown: the name from the file, the
/// description from the first heading, the whole text the prompt.
fn plain_role_file(
    path: &Path,
    text: &str,
    stem: String,
) -> Result<(String, RawRole, Vec<String>), ConfigError> {
    agent_team_protocol::names::validate("role", &stem)
        .map_err(|m| role_file_err(path, None, Some("name"), format!("the file name: {m}")))?;
    let description = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("# "))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let body_line = text
        .lines()
        .position(|l| !l.trim().is_empty())
        .map_or(1, |n| n + 1);
    let role = RawRole {
        description,
        system_prompt: Some(text.trim().to_string())
            .filter(|b| !b.is_empty())
            .map(|b| Spanned::new(0..0, b)),
        prompt_origin: Some((path.to_path_buf(), body_line)),
        ..Default::default()
    };
    Ok((stem, role, Vec::new()))
}

/// A role file's front matter, by key (see [`FRONT_MATTER_KEYS`]): each known key with the
/// spelling it was written in, and the keys agent-team does not know.
struct FrontMatter {
    path: PathBuf,
    yaml: String,
    known: BTreeMap<&'static str, (String, Value)>,
    other: Vec<String>,
    /// What was left out of the role, for the user.
    warnings: Vec<String>,
}

impl FrontMatter {
    /// Reads the front matter's keys; YAML that is not a mapping, or one key written twice in
    /// two spellings, is an error.
    fn read(path: &Path, yaml: &str) -> Result<FrontMatter, ConfigError> {
        let err = |line: Option<usize>, field: Option<&str>, message: String| ConfigError {
            file: path.to_path_buf(),
            line,
            col: None,
            field: field.map(str::to_string),
            message,
        };
        let value: Value = serde_yaml_ng::from_str(yaml).map_err(|e| {
            err(
                e.location().map(|l| l.line() + 1),
                None,
                format!("bad front matter: {e}"),
            )
        })?;
        let mapping = match value {
            Value::Null => serde_yaml_ng::Mapping::new(),
            Value::Mapping(m) => m,
            _ => {
                return Err(err(
                    Some(2),
                    None,
                    "bad front matter: it is `key: value` lines".into(),
                ));
            }
        };
        let mut known: BTreeMap<&'static str, (String, Value)> = BTreeMap::new();
        let mut other = Vec::new();
        for (k, v) in mapping {
            let Some(k) = k.as_str().map(str::to_string) else {
                return Err(err(
                    None,
                    None,
                    format!("bad front matter: the key {} is not a name", show(&k)),
                ));
            };
            let plain: String = k
                .chars()
                .filter(|c| !matches!(c, '_' | '-'))
                .flat_map(char::to_lowercase)
                .collect();
            let Some((canon, _)) = FRONT_MATTER_KEYS
                .iter()
                .find(|(_, forms)| forms.contains(&plain.as_str()))
            else {
                other.push(k);
                continue;
            };
            if let Some((first, _)) = known.get(canon) {
                return Err(err(
                    key_line(yaml, &k),
                    Some(&k),
                    format!("{first} and {k} are the same key; give it once"),
                ));
            }
            known.insert(canon, (k, v));
        }
        Ok(FrontMatter {
            path: path.to_path_buf(),
            yaml: yaml.to_string(),
            known,
            other,
            warnings: Vec::new(),
        })
    }

    /// The key (as written) and its value; an empty value (`key:`) is as if it were absent.
    fn take(&mut self, canon: &str) -> Option<(String, Value)> {
        self.known.remove(canon).filter(|(_, v)| !v.is_null())
    }

    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: key_line(&self.yaml, key),
            col: None,
            field: Some(key.to_string()),
            message,
        }
    }

    /// A key whose value is text.
    fn text(&mut self, canon: &str) -> Result<Option<String>, ConfigError> {
        match self.take(canon) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s)),
            Some((key, v)) => Err(self.err(&key, format!("{key} is text, not {}", show(&v)))),
        }
    }

    /// A list of tool names, as a YAML list or a comma-separated string, with the key as
    /// written.
    fn tools(&mut self, canon: &str) -> Result<Option<(String, Vec<String>)>, ConfigError> {
        let Some((key, v)) = self.take(canon) else {
            return Ok(None);
        };
        let bad = |v: &Value| {
            self.err(
                &key,
                format!(
                    "{key} is a list or a comma-separated string of tool names, not {}",
                    show(v)
                ),
            )
        };
        let list = match &v {
            Value::String(s) => s
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            Value::Sequence(seq) => seq
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(|t| t.trim().to_string())
                        .ok_or_else(|| bad(t))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad(&v)),
        };
        Ok(Some((key, list)))
    }
    /// Notes what was left out of the role, naming the file.
    fn warn(&mut self, what: String) {
        self.warnings
            .push(format!("{}: {what}", self.path.display()));
    }

    /// The role of the role named `name` that the front matter describes (all but its
    /// prompt), and the warnings: each key read in turn, restricting the role or refused.
    fn into_role(mut self, name: &str) -> Result<(RawRole, Vec<String>), ConfigError> {
        let tools = self.tools("tools")?;
        let disallowed = self.tools("disallowed_tools")?;
        let mut read_only = self.read_only()?;
        let max_steps = self.max_steps()?;
        if self.permission_mode(name)? {
            read_only = true;
        }
        let isolation = self.isolation()?;
        if let Some((key, list)) = &disallowed {
            self.no_partial_tools(key, list, name)?;
        }
        let tools = tools.map(|(key, l)| self.mapped(l, &key, "the role runs without it"));
        let disallowed =
            disallowed.map(|(key, l)| self.mapped(l, &key, "there is nothing to take away"));
        if read_only && let Some(listed) = &tools {
            self.warn_read_only(listed);
        }
        let hooks = self.hooks(name)?;
        let model = self.model()?;
        let plan_required = self.plan_required()?;
        let tool_names = self.text("tool_names")?;
        if let Some(k) = &tool_names {
            check_tool_names(k).map_err(|m| self.err("tool_names", m))?;
        }
        let description = self.text("description")?;
        self.take("color");
        for key in std::mem::take(&mut self.other) {
            self.warn(format!(
                "front matter {key:?} is not used by agent-team; left out"
            ));
        }
        let role = RawRole {
            description,
            model,
            tools,
            disallowed,
            read_only: read_only.then_some(true),
            max_steps,
            isolation,
            hooks,
            plan_required,
            tool_names,
            ..Default::default()
        };
        Ok((role, self.warnings))
    }

    /// `read_only`: true or false (as YAML or, Nyzhi's way, as text).
    fn read_only(&mut self) -> Result<bool, ConfigError> {
        match self.take("read_only") {
            None => Ok(false),
            Some((_, Value::Bool(b))) => Ok(b),
            // Nyzhi reads its front matter as text: `read_only: "true"` means the same there.
            Some((_, Value::String(s))) if s == "true" || s == "false" => Ok(s == "true"),
            Some((key, v)) => Err(self.err(
                &key,
                format!(
                    "{key} is true or false, not {}; agent-team cannot tell whether it makes the \
                     role read-only",
                    show(&v)
                ),
            )),
        }
    }

    /// `max_steps` (or `maxTurns`): a whole number of at least 1.
    fn max_steps(&mut self) -> Result<Option<u32>, ConfigError> {
        let Some((key, v)) = self.take("max_steps") else {
            return Ok(None);
        };
        let n = match &v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n >= 1) {
            Some(n) => Ok(Some(n)),
            None => Err(self.err(
                &key,
                format!(
                    "{key} is the most model turns the role may take, a whole number of \
                     at least 1, not {}",
                    show(&v)
                ),
            )),
        }
    }

    /// Claude Code's `permissionMode`: whether it makes the role read-only (`plan`); a mode
    /// that only asks less is left out with a warning, one that asks more is refused.
    fn permission_mode(&mut self, name: &str) -> Result<bool, ConfigError> {
        match self.take("permission_mode") {
            None => Ok(false),
            Some((key, Value::String(mode))) => match mode.as_str() {
                // Claude Code's plan mode reads and changes nothing.
                "plan" => Ok(true),
                // The host's own rules: here, the team's permission policy.
                "default" => Ok(false),
                // These only let Claude Code ask less: leaving them out narrows, never widens.
                "acceptEdits" | "bypassPermissions" => {
                    self.warn(format!(
                        "{key} {mode:?} only lets Claude Code ask less; left out, the role keeps \
                         the team's permission policy"
                    ));
                    Ok(false)
                }
                _ => Err(self.err(
                    &key,
                    format!(
                        "{key} {mode:?} makes Claude Code refuse or ask before tool calls it \
                         would otherwise run, and agent-team cannot take that from a role file; \
                         remove it and give the role `permissions` in [roles.{name}] of the team \
                         file (e.g. bash = \"ask\" or \"deny\")"
                    ),
                )),
            },
            Some((key, v)) => Err(self.err(
                &key,
                format!("{key} is a mode such as plan, not {}", show(&v)),
            )),
        }
    }

    /// `isolation`: shared or worktree.
    fn isolation(&mut self) -> Result<Option<Isolation>, ConfigError> {
        let Some((key, v)) = self.take("isolation") else {
            return Ok(None);
        };
        serde_yaml_ng::from_value::<Isolation>(v.clone())
            .map(Some)
            .map_err(|_| {
                self.err(
                    &key,
                    format!("{key} is shared or worktree, not {}", show(&v)),
                )
            })
    }

    /// Taking part of a tool away (`Bash(rm *)`) is a rule for `permissions`: refused rather
    /// than ignored, which would leave the whole tool.
    fn no_partial_tools(&self, key: &str, list: &[String], name: &str) -> Result<(), ConfigError> {
        for t in list {
            let Some((b, pattern)) = t.split_once('(') else {
                continue;
            };
            let ours = our_tool(b.trim());
            if is_known_tool(&ours) {
                let pattern = pattern.strip_suffix(')').unwrap_or(pattern);
                return Err(self.err(
                    key,
                    format!(
                        "{key}: {t:?} takes part of {ours} away, which a role file cannot do; \
                         take all of it away, or deny the pattern with `permissions` in \
                         [roles.{name}] of the team file (\"{ours}({pattern})\" = \"deny\")"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `list` (under `key`) as our tool names; each with no counterpart left out with a
    /// warning ending in `what`.
    fn mapped(&mut self, list: Vec<String>, key: &str, what: &str) -> Vec<String> {
        let (mapped, unknown) = map_tools(&list);
        for t in unknown {
            let why = if NYZHI_GIT_TOOLS.contains(&t.as_str()) {
                "agent-team has no git tool and never gives bash in its place"
            } else {
                "it has no counterpart in agent-team"
            };
            self.warn(format!("{key}: tool {t:?}: {why}; {what}"));
        }
        mapped
    }

    /// A read-only role's listed tools that change something go: said in a warning.
    fn warn_read_only(&mut self, listed: &[String]) {
        let gone: Vec<&str> = listed
            .iter()
            .map(String::as_str)
            .filter(|t| !READ_ONLY_TOOLS.contains(t))
            .collect();
        if !gone.is_empty() {
            let gone = gone.join(", ");
            self.warn(format!("the role is read-only, so it runs without {gone}"));
        }
    }

    /// `hooks`: ours; Claude Code's own in its own subagent file are left out with a warning,
    /// unless they can refuse a tool call (leaving those out would widen the role).
    fn hooks(&mut self, name: &str) -> Result<Option<crate::Hooks>, ConfigError> {
        let Some((key, v)) = self.take("hooks") else {
            return Ok(None);
        };
        let claude_file = self
            .path
            .parent()
            .is_some_and(|d| d.ends_with(".claude/agents"));
        match serde_yaml_ng::from_value::<crate::Hooks>(v.clone()) {
            Ok(h) => Ok(Some(h)),
            Err(_) if claude_file => {
                let blocking = CLAUDE_BLOCKING_HOOKS
                    .iter()
                    .find(|e| v.get(*e).is_some_and(|h| !h.is_null()));
                if let Some(event) = blocking {
                    return Err(self.err(
                        &key,
                        format!(
                            "{key}: Claude Code's {event} hooks can refuse a tool call, and \
                             agent-team cannot run them; remove them and restrict the role \
                             with `disallowedTools` or with `permissions` in [roles.{name}] of \
                             the team file"
                        ),
                    ));
                }
                self.warn(format!(
                    "{key}: Claude Code's hooks are not agent-team's (see [hooks] in the \
                     team file); left out"
                ));
                Ok(None)
            }
            Err(e) => Err(self.err(&key, format!("bad front matter: {key}: {e}"))),
        }
    }

    /// `model`: none for Claude Code's `inherit` and its aliases (with a warning).
    fn model(&mut self) -> Result<Option<String>, ConfigError> {
        Ok(match self.text("model")? {
            Some(m) if m == "inherit" => None,
            Some(m) if CLAUDE_MODEL_ALIASES.contains(&m.as_str()) => {
                self.warn(format!(
                    "model {m:?} is a Claude Code alias, not a model name; the role uses the \
                     team's model"
                ));
                None
            }
            m => m,
        })
    }

    /// `plan_required`: true or false.
    fn plan_required(&mut self) -> Result<Option<bool>, ConfigError> {
        match self.take("plan_required") {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(b)),
            Some((key, v)) => {
                Err(self.err(&key, format!("{key} is true or false, not {}", show(&v))))
            }
        }
    }
}

/// The line (from 1, counting the opening `---`) of the front matter where `key` is written.
fn key_line(yaml: &str, key: &str) -> Option<usize> {
    yaml.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 2)
}

/// A YAML value as a message shows it.
fn show(v: &Value) -> String {
    serde_yaml_ng::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "that".to_string())
}

/// A role file's tool name as ours: Claude Code's and Nyzhi's names mapped, ours (and names
/// with no counterpart) as written.
fn our_tool(name: &str) -> String {
    claude_tool(name)
        .or_else(|| nyzhi_tool(name))
        .unwrap_or(name)
        .to_string()
}

/// A role file's tool names as ours (Claude Code's and Nyzhi's names mapped, ours kept, each
/// once), and the names with no counterpart.
pub(crate) fn map_tools(list: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut mapped, mut unknown) = (Vec::new(), Vec::new());
    for t in list {
        let ours = our_tool(t);
        if !is_known_tool(&ours) {
            unknown.push(t.clone());
        } else if !mapped.contains(&ours) {
            mapped.push(ours);
        }
    }
    (mapped, unknown)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod limits_tests {
    use super::*;

    fn parse(text: &str) -> Result<TeamConfig, ConfigError> {
        parse_team_file(Path::new("/w/agent-team.toml"), text)
    }

    #[test]
    fn an_empty_team_file_is_refused_not_taken_for_team_default() {
        for text in ["", "\n  \n", "# nothing yet\n"] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains("empty"), "{e}");
        }
    }

    #[test]
    fn limits_have_defaults_can_be_set_and_refuse_nonsense() {
        assert_eq!(parse("name = \"a\"\n").unwrap().limits, Limits::default());
        let l = parse("name = \"a\"\n[limits]\nmax_connections = 64\n")
            .unwrap()
            .limits;
        assert_eq!((l.max_connections, l.hello_timeout_secs), (64, 5));
        let e = parse("name = \"a\"\n[limits]\nhello_timeout_secs = 0\n").unwrap_err();
        assert!(e.to_string().contains("limits.hello_timeout_secs"), "{e}");
        let e = parse("name = \"a\"\n[limits]\nmax_conns = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_conns"), "{e}");
    }
}

#[cfg(test)]
mod sandbox_tests {
    use super::*;

    fn parse(text: &str) -> Result<TeamConfig, ConfigError> {
        parse_team_file(Path::new("agent-team.toml"), text)
    }

    #[test]
    fn sandbox_is_on_unless_the_team_file_opts_out() {
        assert_eq!(parse("name = \"a\"\n").unwrap().sandbox, SandboxMode::On);
        assert_eq!(
            parse("name = \"a\"\nsandbox = \"on\"\n").unwrap().sandbox,
            SandboxMode::On
        );
        assert_eq!(
            parse("name = \"a\"\nsandbox = \"off\"\n").unwrap().sandbox,
            SandboxMode::Off
        );
        let e = parse("name = \"a\"\nsandbox = \"maybe\"\n").unwrap_err();
        assert!(
            e.to_string().contains("expected `on`, `off` or `weak`"),
            "{e}"
        );
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn sandbox_weak_accepts_the_fallback_and_still_confines() {
        let weak = parse("name = \"a\"\nsandbox = \"weak\"\n").unwrap().sandbox;
        assert_eq!(weak, SandboxMode::Weak);
        assert_eq!(weak.as_str(), "weak");
        assert!(weak.confines() && SandboxMode::On.confines() && !SandboxMode::Off.confines());
        let table = parse("name = \"a\"\n[sandbox]\nmode = \"weak\"\nwrite = [\"out\"]\n").unwrap();
        assert_eq!(table.sandbox, SandboxMode::Weak);
        assert_eq!(table.sandbox_paths.write, [table.workspace.join("out")]);
        // What the daemon stores and hands each agent keeps it.
        let json = serde_json::to_value(&table).unwrap();
        assert_eq!(json["sandbox"], "weak");
        let back: TeamConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.sandbox, SandboxMode::Weak);
        let e = parse("name = \"a\"\n[sandbox]\nmode = \"weakest\"\n").unwrap_err();
        assert!(e.to_string().contains("weak"), "{e}");
    }

    #[test]
    fn the_sandbox_table_adds_write_and_read_deny_paths() {
        let c = parse(
            "name = \"a\"\n[sandbox]\nwrite = [\"out\", \"/var/cache/x\"]\nread_deny = [\"secrets\"]\n\
             read = [\"/srv/data\"]\nprotect = [\"ci/deploy.sh\"]\n",
        )
        .unwrap();
        assert_eq!(c.sandbox, SandboxMode::On);
        assert_eq!(c.sandbox_paths.read, [PathBuf::from("/srv/data")]);
        assert_eq!(c.sandbox_paths.protect, [c.workspace.join("ci/deploy.sh")]);
        assert_eq!(
            c.sandbox_paths.write,
            [c.workspace.join("out"), PathBuf::from("/var/cache/x")]
        );
        assert_eq!(c.sandbox_paths.read_deny, [c.workspace.join("secrets")]);
        let off = parse("name = \"a\"\n[sandbox]\nmode = \"off\"\n").unwrap();
        assert_eq!(off.sandbox, SandboxMode::Off);
        let e = parse("name = \"a\"\n[sandbox]\nwrites = []\n").unwrap_err();
        assert!(e.to_string().contains("writes"), "{e}");
        // A role adds its own, resolved against the workspace when used.
        let c = parse(
            "name = \"a\"\n[roles.worker.sandbox]\nwrite = [\"~/.gem\", \"build\"]\nread_deny = [\"keys\"]\n",
        )
        .unwrap();
        let r = c.role("worker").unwrap();
        let home = PathBuf::from("/home/u");
        let got = r.sandbox.resolved(&c.workspace, Some(&home));
        assert_eq!(got.write, [home.join(".gem"), c.workspace.join("build")]);
        assert_eq!(got.read_deny, [c.workspace.join("keys")]);
        assert!(c.role("reviewer").unwrap().sandbox.is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod usage_tests {
    use super::*;

    fn parse(text: &str) -> Result<TeamConfig, ConfigError> {
        parse_team_file(Path::new("/w/agent-team.toml"), text)
    }

    #[test]
    fn budgets_prices_and_notify_are_read() {
        let c = parse(
            r#"
name = "t"
budget_tokens = 100000
budget_usd = 2.5

[roles.worker]
budget_tokens = 5000

[roles.scout]
provider = "openai"
model = "m"
budget_usd = 0.5

[prices]
"my-model" = { input = 3.0, output = 15.0, cached_input = 0.3 }

[notify]
command = "cat > /tmp/x"
timeout_secs = 3
"#,
        )
        .unwrap();
        assert_eq!(c.budget.tokens, Some(100_000));
        assert_eq!(c.budget.usd, Some(2.5));
        assert_eq!(c.role_budgets["worker"].tokens, Some(5000));
        assert_eq!(c.role_budgets["scout"].usd, Some(0.5));
        assert!(!c.role_budgets.contains_key("reviewer"));
        let p = c.price("my-model").unwrap();
        assert_eq!((p.input, p.output, p.cached_input), (3.0, 15.0, Some(0.3)));
        assert_eq!(c.notify.command.as_deref(), Some("cat > /tmp/x"));
        assert_eq!(c.notify.timeout_secs, 3);
        assert!(c.notify.bell);
        // The stored configuration keeps them.
        let back: TeamConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back.role_budgets, c.role_budgets);
        assert_eq!(back.prices, c.prices);
        assert_eq!(back.notify, c.notify);
        // A configuration stored before these existed has none.
        let mut old = serde_json::to_value(&c).unwrap();
        for k in ["budget", "role_budgets", "prices", "notify"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let old: TeamConfig = serde_json::from_value(old).unwrap();
        assert!(!old.budget.is_set() && old.role_budgets.is_empty());
        assert_eq!(old.notify, crate::Notify::default());
    }

    #[test]
    fn bad_budgets_and_prices_are_refused_with_the_field() {
        for (text, field) in [
            ("name = \"t\"\nbudget_tokens = 0\n", "budget_tokens"),
            ("name = \"t\"\nbudget_usd = -1.0\n", "budget_usd"),
            (
                "name = \"t\"\n[roles.worker]\nbudget_usd = 0.0\n",
                "roles.worker.budget_usd",
            ),
            (
                "name = \"t\"\n[defaults]\nbudget_tokens = 5\n",
                "defaults.budget_tokens",
            ),
            (
                "name = \"t\"\n[prices]\nm = { input = -1.0, output = 1.0 }\n",
                "prices.m.input",
            ),
            (
                "name = \"t\"\n[notify]\ntimeout_secs = 0\n",
                "notify.timeout_secs",
            ),
            ("name = \"t\"\n[notify]\ncmd = \"x\"\n", "cmd"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn durations_over_a_year_are_refused_with_the_field() {
        for (text, field) in [
            (
                "name = \"t\"\npermission_timeout = 9223372036854775807\n",
                "permission_timeout",
            ),
            (
                "name = \"t\"\n[limits]\nhello_timeout_secs = 31536001\n",
                "limits.hello_timeout_secs",
            ),
            (
                "name = \"t\"\n[notify]\ntimeout_secs = 9223372036854775807\n",
                "notify.timeout_secs",
            ),
            (
                "name = \"t\"\n[hooks]\nrun_finished = { command = \"x\", timeout_secs = 9223372036854775807 }\n",
                "hooks.run_finished",
            ),
            (
                "name = \"t\"\n[roles.worker.hooks]\nrun_finished = { command = \"x\", timeout_secs = 31536001 }\n",
                "roles.worker.hooks.run_finished",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
            assert!(e.to_string().contains("year"), "{text}: {e}");
        }
        // A year itself is allowed.
        parse("name = \"t\"\npermission_timeout = 31536000\n").unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tool_name_tests {
    use super::*;

    /// Nyzhi's config role, as its docs write it (`[agent.agents.roles.frontend-specialist]`
    /// becomes `[roles.frontend-specialist]`): its tool names were refused (`unknown tool
    /// "read"`) while a role file took them.
    const NYZHI: &str = r#"name = "payment-team"

[roles.frontend-specialist]
description = "Expert in React and CSS"
system_prompt = "You are a frontend specialist. Focus on component design, accessibility, and performance."
model = "anthropic/claude-sonnet-4-20250514"
max_steps = 50
allowed_tools = ["read", "write", "edit", "grep", "glob", "bash", "git_status", "git_diff"]
"#;

    #[test]
    fn a_team_file_role_takes_the_tool_names_a_role_file_takes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent-team.toml");
        std::fs::write(&file, NYZHI).unwrap();
        let cfg = crate::load(&file).unwrap();
        let role = cfg.role("frontend-specialist").unwrap();
        let (expected, _) = map_tools(&[
            "read".to_string(),
            "write".to_string(),
            "edit".to_string(),
            "grep".to_string(),
            "glob".to_string(),
            "bash".to_string(),
        ]);
        assert_eq!(role.tools, expected);
        assert!(
            role.tools.contains(&"read_file".to_string()),
            "{:?}",
            role.tools
        );
        assert!(role.tools.contains(&"write_file".to_string()));
        assert_eq!(role.max_steps, 50);
        // The git tools have no counterpart: left out with a warning each, as in a role file.
        let git: Vec<_> = cfg.warnings.iter().filter(|w| w.contains("git_")).collect();
        assert_eq!(git.len(), 2, "{:?}", cfg.warnings);
        assert!(
            git[0].contains("roles.frontend-specialist.tools"),
            "{}",
            git[0]
        );
        // Claude Code's names too, in `tools`, `[defaults]` and permission rules.
        let text = "name = \"t\"\n[defaults]\ntools = [\"Read\", \"Bash\"]\n\
                    [roles.r]\ntools = [\"Read\", \"Grep\", \"read_file\"]\n\
                    permissions = { \"Bash(git *)\" = \"allow\" }\n";
        let cfg = parse_team_file(Path::new("/w/agent-team.toml"), text).unwrap();
        let r = cfg.role("r").unwrap();
        assert_eq!(r.tools[0], "read_file");
        assert_eq!(r.tools.len(), 2, "read_file once: {:?}", r.tools);
        assert_eq!(r.permissions[0].tool, "bash");
        assert!(
            cfg.role("worker")
                .unwrap()
                .tools
                .contains(&"bash".to_string())
        );
        // A name nobody has is still an error naming the role.
        let e = parse_team_file(
            Path::new("/w/agent-team.toml"),
            "name = \"t\"\n[roles.r]\ntools = [\"raed\"]\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("field `roles.r.tools`: unknown tool \"raed\""),
            "{e}"
        );
    }
}

#[cfg(test)]
mod finish_tests {
    use super::*;

    fn parse(text: &str) -> Result<TeamConfig, ConfigError> {
        parse_team_file(Path::new("/w/agent-team.toml"), text)
    }

    #[test]
    fn finish_is_a_mode_or_a_table_whose_review_paths_are_control_plane() {
        let c = parse("name = \"a\"\nfinish = \"merge\"\n").unwrap();
        assert_eq!(c.finish, agent_team_protocol::FinishPolicy::Merge);
        assert!(c.finish_review.is_empty());
        let c = parse(
            "name = \"a\"\n[finish]\nmode = \"pr\"\nreview = [\"deploy/\", \"./Makefile\"]\n",
        )
        .unwrap();
        assert_eq!(c.finish, agent_team_protocol::FinishPolicy::Pr);
        assert_eq!(c.finish_review, ["deploy/", "Makefile"]);
        // The team file itself, then the review paths: what finish and diff add to the rule.
        assert_eq!(
            c.control_files(),
            ["agent-team.toml", "deploy/", "Makefile"]
        );
        let c = parse("name = \"a\"\n[finish]\nreview = [\"Makefile\"]\n").unwrap();
        assert_eq!(c.finish, agent_team_protocol::FinishPolicy::Keep);
        // A stored configuration keeps them.
        let back: TeamConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back.finish_review, ["Makefile"]);
    }

    #[test]
    fn a_review_path_outside_the_workspace_or_an_unknown_key_is_refused_where_it_is() {
        for bad in ["\"/etc\"", "\"../x\"", "\"a/../../b\"", "\"\""] {
            let e = parse(&format!("name = \"a\"\n[finish]\nreview = [{bad}]\n")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("finish.review"), "{bad}: {e}");
            assert_eq!(e.line, Some(3), "{bad}: {e}");
        }
        assert!(parse("name = \"a\"\n[finish]\nreviews = []\n").is_err());
        let e = parse("name = \"a\"\nfinish = \"land\"\n").unwrap_err();
        assert!(e.to_string().contains("keep"), "{e}");
    }
}
