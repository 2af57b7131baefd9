//! `agent-team config`: settings changed while the team runs (Nyzhi's `/teams-config`). `show`
//! reads the team's configuration as its agents get it (a stopped team's stored one); `set`
//! and `reset` are operator requests the daemon checks, keeps and applies.

use crate::cli::ConfigCmd;
use crate::ctx::Ctx;
use crate::output;
use agent_team_config::TeamConfig;
use agent_team_config::overrides::key_applies;
use agent_team_protocol::*;
use anyhow::{Result, bail};
use serde_json::json;
use std::process::ExitCode;

/// `agent-team config …`
pub fn config(ctx: &Ctx, cmd: ConfigCmd) -> Result<ExitCode> {
    match cmd {
        ConfigCmd::Show { json } => show(ctx, json),
        ConfigCmd::Set { key, value, json } => changed(
            ctx.call(Request::ConfigSet {
                key,
                value: value.clone(),
            })?,
            json,
        ),
        ConfigCmd::Reset { key, json } => changed(ctx.call(Request::ConfigReset { key })?, json),
    }
}

fn changed(reply: Reply, json: bool) -> Result<ExitCode> {
    let Reply::ConfigChanged {
        key,
        value,
        applies,
    } = reply
    else {
        bail!("unexpected reply {reply:?}");
    };
    if json {
        output::json(&json!({"key": key, "value": value, "applies": applies}));
    } else {
        let when = applies.replace('_', " ");
        match (key.as_str(), value) {
            ("*", _) => output::line(&format!(
                "every setting is the team file's again (from each agent's {when})"
            )),
            (k, Some(v)) => output::line(&format!("{k} = {v} (from the {when})")),
            (k, None) => output::line(&format!("{k} is the team file's again (from the {when})")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every settable key of `cfg`: the team-wide ones, each role's, each member's (the file's
/// teammates and any member with a setting).
fn keys(cfg: &TeamConfig) -> Vec<String> {
    let mut keys = vec!["defaults.model".to_string(), "max_teammates".to_string()];
    for r in cfg.roles.keys().filter(|r| *r != names::LEADER) {
        keys.push(format!("role.{r}.model"));
        keys.push(format!("role.{r}.max_steps"));
    }
    let mut members: Vec<String> = cfg.teammates.iter().map(|t| t.name.clone()).collect();
    for k in cfg.overrides.keys() {
        if let Some(m) = k
            .strip_prefix("member.")
            .and_then(|r| r.rsplit_once('.'))
            .map(|(m, _)| m.to_string())
            && !members.contains(&m)
        {
            members.push(m);
        }
    }
    for m in members {
        keys.push(format!("member.{m}.model"));
        keys.push(format!("member.{m}.role"));
    }
    keys
}

fn show(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let Some(value) = ctx.reader()?.config()? else {
        bail!(crate::Hinted::new(
            format!("team {} has no configuration yet", ctx.team),
            "start it with `agent-team up`"
        ));
    };
    // A stopped team's stored configuration has its settings beside it, not applied yet.
    let cfg = serde_json::from_value::<TeamConfig>(value)?.effective();
    let rows: Vec<(String, Option<String>, bool, String)> = keys(&cfg)
        .into_iter()
        .map(|k| {
            let set = cfg.overrides.contains_key(&k);
            let applies = key_applies(&k)
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            (k.clone(), cfg.setting(&k), set, applies)
        })
        .collect();
    if json {
        let settings: Vec<_> = rows
            .iter()
            .map(|(k, v, set, applies)| json!({"key": k, "value": v, "set": set, "applies": applies}))
            .collect();
        output::json(&json!({"settings": settings, "overrides": cfg.overrides}));
    } else {
        let table: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(k, v, set, _)| {
                vec![
                    k,
                    v.unwrap_or_else(|| "-".into()),
                    if set { "set".into() } else { String::new() },
                ]
            })
            .collect();
        output::table(&["SETTING", "VALUE", ""], &table);
    }
    Ok(ExitCode::SUCCESS)
}
