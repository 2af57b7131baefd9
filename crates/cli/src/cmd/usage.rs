//! `agent-team usage` (tokens, requests and cost per agent, per role and in total, and the
//! budgets; a read that never starts a daemon) and `agent-team budget set` (an operator
//! request, applied exactly once).

use crate::cli::BudgetCmd;
use crate::ctx::Ctx;
use crate::output;
use agent_team_protocol::*;
use anyhow::{Result, bail};
use std::process::ExitCode;

/// A cost as `ps` and `usage` show it: dollars, or `-` when no price is known.
pub fn cost(usd: Option<f64>) -> String {
    match usd {
        Some(c) => format!("${c:.4}"),
        None => "-".to_string(),
    }
}

/// `agent-team usage`
pub fn usage(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let report = ctx.reader()?.usage()?;
    if json {
        output::json(&report);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as tables: agents, roles, totals, budgets.
fn print_report(r: &UsageReport) {
    let row = |name: &str, extra: &str, u: &UsageFigures| {
        vec![
            name.to_string(),
            extra.to_string(),
            u.input_tokens.to_string(),
            u.cached_tokens.to_string(),
            u.output_tokens.to_string(),
            u.requests.to_string(),
            cost(u.cost_usd),
        ]
    };
    let header = [
        "AGENT", "ROLE", "INPUT", "CACHED", "OUTPUT", "REQUESTS", "COST",
    ];
    if r.agents.is_empty() {
        output::line("no model usage recorded yet");
    } else {
        let rows: Vec<Vec<String>> = r
            .agents
            .iter()
            .map(|a| row(&a.name, a.role.as_deref().unwrap_or("-"), &a.usage))
            .collect();
        output::table(&header, &rows);
        output::line("");
        let mut rows: Vec<Vec<String>> =
            r.roles.iter().map(|l| row(&l.name, "", &l.usage)).collect();
        rows.push(row("total", "", &r.total));
        rows.push(row("this run", "", &r.run));
        output::table(
            &["ROLE", "", "INPUT", "CACHED", "OUTPUT", "REQUESTS", "COST"],
            &rows,
        );
    }
    if !r.budgets.is_empty() {
        output::line("");
        let rows: Vec<Vec<String>> = r
            .budgets
            .iter()
            .map(|b| {
                let mut limit = Vec::new();
                if let Some(t) = b.budget_tokens {
                    limit.push(format!("{} / {t} tokens", b.used_tokens));
                }
                if let Some(u) = b.budget_usd {
                    limit.push(format!("${:.4} / ${u}", b.used_usd));
                }
                vec![
                    b.role.clone().unwrap_or_else(|| "(team)".into()),
                    limit.join(", "),
                    format!("{} %", b.percent),
                    format!("{:?}", b.level).to_lowercase(),
                ]
            })
            .collect();
        output::table(&["BUDGET", "SPENT", "USED", "LEVEL"], &rows);
    }
}

/// `agent-team budget …`
pub fn budget(ctx: &Ctx, cmd: BudgetCmd) -> Result<ExitCode> {
    let BudgetCmd::Set {
        role,
        tokens,
        usd,
        json,
    } = cmd;
    if tokens.is_none() && usd.is_none() {
        bail!(crate::Hinted::new(
            "give a limit",
            "use --tokens N, --usd X, or both (0 removes a limit)"
        ));
    }
    let report = match ctx.call(Request::BudgetSet {
        role: role.clone(),
        tokens,
        usd,
    })? {
        Reply::Usage { report } => report,
        other => bail!("unexpected reply {other:?}"),
    };
    let status = report.budgets.iter().find(|b| b.role == role).cloned();
    if json {
        output::json(&status);
    } else {
        let whose = match &role {
            Some(r) => format!("role {r}"),
            None => "the team".to_string(),
        };
        match status {
            Some(b) => output::line(&format!(
                "the budget of {whose} is now {}: {} % spent",
                [
                    b.budget_tokens.map(|t| format!("{t} tokens")),
                    b.budget_usd.map(|u| format!("${u}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and "),
                b.percent
            )),
            None => output::line(&format!("{whose} has no budget now")),
        }
    }
    Ok(ExitCode::SUCCESS)
}
