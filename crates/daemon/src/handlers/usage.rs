//! Model usage and budgets: an agent's `report_usage` (once per model response, exactly once
//! under its request id) priced from the stored configuration (`[prices]` over the built-in
//! table) settling the lease its `budget_check` took before the request, the `usage` report, and the operator's
//! `budget_set`. The counting and the budget rules are the state's.

use crate::core::Core;
use agent_team_config::PICO_PER_USD;
use agent_team_protocol::{
    BudgetLimit, DEFAULT_LEASE_TOKENS, ErrorBody, ErrorCode, Reply, Timestamp,
};
use agent_team_state::{Actor, Lease, LeaseOutcome, Response};
use serde_json::json;

/// The tokens of one model response, as `report_usage` gives them.
pub(crate) struct Tokens {
    /// Prompt tokens (all of them, cached or not).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: u64,
}

/// `report_usage`: one model response priced from the stored configuration and counted
/// against the budgets; a member held back behind this one by a staggered start goes now.
pub(crate) fn report(
    core: &mut Core,
    actor: &Actor,
    model: String,
    tokens: Tokens,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    let budgets = core.sup.budgets();
    let cost_pico = core
        .sup
        .config
        .as_ref()
        .and_then(|c| c.price(&model))
        .map(|p| {
            p.cost_pico_with_writes(
                tokens.input,
                tokens.output,
                tokens.cached,
                tokens.cache_write,
            )
        });
    let run_was_open = core.state.run().state == agent_team_protocol::RunState::Running;
    core.state.record_usage(
        actor,
        Response {
            model,
            input_tokens: tokens.input,
            output_tokens: tokens.output,
            cached_tokens: tokens.cached,
            cost_pico,
        },
        &budgets,
        now,
    )?;
    if run_was_open && core.state.run().state != agent_team_protocol::RunState::Running {
        tracing::warn!("the team's budget is spent; the run ended");
    }
    if let Some(name) = actor.agent()
        && core.sup.priming.values().any(|(first, _)| first == name)
    {
        let name = name.to_string();
        core.supervise(|s| s.first_answered(&name));
    }
    Ok(Reply::Done)
}

/// `budget_check`: a lease on the budgets for the request an agent is about to make.
pub(crate) fn check(
    core: &mut Core,
    actor: &Actor,
    model: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
) -> Reply {
    let Some(agent) = actor.agent() else {
        return Reply::Budget {
            stop: None,
            wait: None,
        };
    };
    let input = input_tokens.unwrap_or(0);
    let output = output_tokens.unwrap_or(DEFAULT_LEASE_TOKENS);
    let cost_pico = model
        .as_deref()
        .and_then(|m| core.sup.config.as_ref().and_then(|c| c.price(m)))
        .map_or(0, |p| p.cost_pico(input, output, 0));
    let lease = Lease {
        tokens: input.saturating_add(output),
        cost_pico,
    };
    match core.state.budget_lease(agent, lease, &core.sup.budgets()) {
        LeaseOutcome::Granted => Reply::Budget {
            stop: None,
            wait: None,
        },
        LeaseOutcome::Stop(why) => Reply::Budget {
            stop: Some(why),
            wait: None,
        },
        LeaseOutcome::Wait(why) => Reply::Budget {
            stop: None,
            wait: Some(why),
        },
    }
}

/// `budget_set` (the operator's; the rules are the state's): a role's budget, or the team's.
pub(super) fn set(
    core: &mut Core,
    actor: &Actor,
    role: Option<String>,
    tokens: Option<u64>,
    usd: Option<f64>,
) -> Result<Reply, ErrorBody> {
    if let (Some(r), Some(cfg)) = (&role, &core.sup.config)
        && cfg.role(r).is_none()
    {
        let known: Vec<&String> = cfg.roles.keys().collect();
        return Err(ErrorBody::with_details(
            ErrorCode::NotFound,
            format!("no role {r:?} in the team's configuration; known roles: {known:?}"),
            json!({"role": r, "known": known}),
        ));
    }
    if usd.is_some_and(|u| u.is_finite() && u * PICO_PER_USD > u64::MAX as f64) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "that dollar budget is too large",
        ));
    }
    let budgets = core.sup.budgets();
    core.state
        .set_budget(actor, role, BudgetLimit { tokens, usd }, &budgets)?;
    Ok(Reply::Usage {
        report: core.state.usage_report(&budgets),
    })
}
