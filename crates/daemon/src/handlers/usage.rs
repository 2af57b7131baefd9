//! Model usage and budgets: an agent's `report_usage` (once per model response, exactly once
//! under its request id) priced from the stored configuration (`[prices]` over the built-in
//! table) settling the lease its `budget_check` took before the request, the `usage` report, and the operator's
//! `budget_set`. The counting and the budget rules are the state's.

use super::misrouted;
use crate::core::Core;
use agent_team_config::PICO_PER_USD;
use agent_team_protocol::{
    BudgetLimit, DEFAULT_LEASE_TOKENS, ErrorBody, ErrorCode, Reply, Request, Timestamp,
};
use agent_team_state::{Actor, Lease, LeaseOutcome, Response};
use serde_json::json;

impl Core {
    /// Applies a usage or budget request.
    pub(super) fn usage_request(
        &mut self,
        actor: &Actor,
        req: Request,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        let budgets = self.sup.budgets();
        match req {
            Request::ReportUsage {
                model,
                input_tokens,
                output_tokens,
                cached_tokens,
                cache_write_tokens,
            } => {
                let cost_pico = self
                    .sup
                    .config
                    .as_ref()
                    .and_then(|c| c.price(&model))
                    .map(|p| {
                        p.cost_pico_with_writes(
                            input_tokens,
                            output_tokens,
                            cached_tokens,
                            cache_write_tokens,
                        )
                    });
                let run_was_open = self.state.run().state == agent_team_protocol::RunState::Running;
                self.state.record_usage(
                    actor,
                    Response {
                        model,
                        input_tokens,
                        output_tokens,
                        cached_tokens,
                        cost_pico,
                    },
                    &budgets,
                    now,
                )?;
                if run_was_open && self.state.run().state != agent_team_protocol::RunState::Running
                {
                    tracing::warn!("the team's budget is spent; the run ended");
                }
                // Answered: members held back behind this one by a staggered start go now.
                if let Some(name) = actor.agent()
                    && self.sup.staggered.contains_key(name)
                {
                    let name = name.to_string();
                    self.supervise(|s| s.first_answered(&name));
                }
                Ok(Reply::Done)
            }
            Request::BudgetCheck {
                model,
                input_tokens,
                output_tokens,
            } => {
                let Some(agent) = actor.agent() else {
                    return Ok(Reply::Budget {
                        stop: None,
                        wait: None,
                    });
                };
                let input = input_tokens.unwrap_or(0);
                let output = output_tokens.unwrap_or(DEFAULT_LEASE_TOKENS);
                let cost_pico = model
                    .as_deref()
                    .and_then(|m| self.sup.config.as_ref().and_then(|c| c.price(m)))
                    .map_or(0, |p| p.cost_pico(input, output, 0));
                let lease = Lease {
                    tokens: input.saturating_add(output),
                    cost_pico,
                };
                Ok(match self.state.budget_lease(agent, lease, &budgets) {
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
                })
            }
            Request::Usage => Ok(Reply::Usage {
                report: self.state.usage_report(&budgets),
            }),
            Request::BudgetSet { role, tokens, usd } => {
                if let (Some(r), Some(cfg)) = (&role, &self.sup.config)
                    && cfg.role(r).is_none()
                {
                    let known: Vec<&String> = cfg.roles.keys().collect();
                    return Err(ErrorBody::with_details(
                        ErrorCode::NotFound,
                        format!(
                            "no role {r:?} in the team's configuration; known roles: {known:?}"
                        ),
                        json!({"role": r, "known": known}),
                    ));
                }
                if usd.is_some_and(|u| u.is_finite() && u * PICO_PER_USD > u64::MAX as f64) {
                    return Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        "that dollar budget is too large",
                    ));
                }
                self.state
                    .set_budget(actor, role, BudgetLimit { tokens, usd }, &budgets)?;
                Ok(Reply::Usage {
                    report: self.state.usage_report(&budgets),
                })
            }
            other => Err(misrouted(&other)),
        }
    }
}
