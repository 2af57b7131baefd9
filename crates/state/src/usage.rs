//! Model usage and budgets: every model response an agent reports is counted per agent and
//! model (and for the run), one `USAGE_UPDATED` event each; a budget (a role's or the team's)
//! that passes 80 % or 100 % of what it allows is reported once per crossing with a
//! `BUDGET_WARNING` event and a message to the leader, and a spent team budget ends the run.
//!
//! Costs are whole picodollars (10⁻¹² $) computed by the caller from the team's prices, so sums
//! are exact. Budgets come from the team file (handed in as [`BudgetConfig`]) with run-time
//! overrides (`budget_set`) stored here.

use crate::{Actor, Change, Outcome, TeamState, bad_request};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Picodollars in a dollar.
const PICO: f64 = 1e12;

/// Token counts and spend, summed exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSum {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Responses counted.
    pub requests: u64,
    /// Spend in picodollars of the responses whose model had a price.
    pub cost_pico: u64,
    /// Whether any response counted had a price.
    pub priced: bool,
}

impl UsageSum {
    /// Adds another sum.
    pub fn add(&mut self, o: &UsageSum) {
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.requests = self.requests.saturating_add(o.requests);
        self.cost_pico = self.cost_pico.saturating_add(o.cost_pico);
        self.priced |= o.priced;
    }

    /// Input + output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// As the wire shows it (dollars; none when nothing had a price).
    pub fn figures(&self) -> UsageFigures {
        UsageFigures {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_tokens: self.cached_tokens,
            requests: self.requests,
            cost_usd: self.priced.then(|| self.cost_pico as f64 / PICO),
        }
    }
}

/// One agent's usage of one model, as stored (one row per agent and model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The agent.
    pub agent: String,
    /// Its role (what a role budget counts).
    pub role: String,
    /// The model.
    pub model: String,
    /// The sums.
    #[serde(flatten)]
    pub sum: UsageSum,
}

/// A budget's run-time override and the level last reported for it, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// The role; none for the team.
    pub role: Option<String>,
    /// Set with `budget_set`, over the team file: a figure given wins (0 means no limit), one
    /// not given is the file's.
    #[serde(default)]
    pub set: BudgetLimit,
    /// The level last reported (a warning is given once per crossing).
    pub level: BudgetLevel,
}

/// The budgets the team file sets (the daemon hands them in from its configuration).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetConfig {
    /// The team's.
    pub team: BudgetLimit,
    /// Each role's.
    pub roles: BTreeMap<String, BudgetLimit>,
}

/// One model response to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The model that answered.
    pub model: String,
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cached prompt tokens (at most `input_tokens`).
    pub cached_tokens: u64,
    /// Its cost in picodollars, when the model has a price.
    pub cost_pico: Option<u64>,
}

/// What a model request about to be made may spend at most: its prompt and the most output
/// the role allows. Held against the budgets until the response's usage is reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    /// Input + output tokens.
    pub tokens: u64,
    /// Picodollars at the model's price (0 when it has none).
    pub cost_pico: u64,
}

/// The answer to a request for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The lease is held: the agent may make its request.
    Granted,
    /// The budget is spent (in words): the agent stops.
    Stop(String),
    /// Other requests in flight hold what is left (in words): ask again once they settle.
    Wait(String),
}

impl TeamState {
    /// Reserves `lease` for the next model request of `agent` (replacing any lease it still
    /// held): refused with `Stop` when its role's budget or the team's is spent, with `Wait`
    /// when other agents' leases are held in that budget and what is spent plus every lease
    /// would pass it. A lease with none other held is granted while the budget is not spent,
    /// so a shared budget is overshot by at most one response in all (when no response
    /// passes its lease). Leases are never stored: a restart forgets them.
    pub fn budget_lease(
        &mut self,
        agent: &str,
        lease: Lease,
        budgets: &BudgetConfig,
    ) -> LeaseOutcome {
        self.leases.remove(agent);
        if let Some(why) = self.budget_stop(agent, budgets) {
            return LeaseOutcome::Stop(why);
        }
        let role = self.agents.get(agent).map(|a| a.info.role.clone());
        for scope in [role.clone(), None] {
            let limit = self.limit(scope.as_deref(), budgets);
            if !limit.is_set() {
                continue;
            }
            let mut held = Lease::default();
            let mut count = 0usize;
            for (other, l) in &self.leases {
                let other_role = self.agents.get(other).map(|a| a.info.role.as_str());
                if scope.is_none() || other_role == scope.as_deref() {
                    held.tokens = held.tokens.saturating_add(l.tokens);
                    held.cost_pico = held.cost_pico.saturating_add(l.cost_pico);
                    count += 1;
                }
            }
            if count == 0 {
                continue;
            }
            let used = self.used_in(scope.as_deref());
            let tokens_over = limit.tokens.is_some_and(|t| {
                u128::from(used.tokens()) + u128::from(held.tokens) + u128::from(lease.tokens)
                    > u128::from(t)
            });
            let usd_over = limit.usd.is_some_and(|u| {
                u128::from(used.cost_pico)
                    + u128::from(held.cost_pico)
                    + u128::from(lease.cost_pico)
                    > (u * PICO).round() as u128
            });
            if tokens_over || usd_over {
                let scope = match &scope {
                    Some(r) => format!("role {r}"),
                    None => "the team".to_string(),
                };
                return LeaseOutcome::Wait(format!(
                    "the rest of the budget of {scope} is held by {count} model request(s) in \
                     flight ({} tokens spent, {} leased, {} asked)",
                    used.tokens(),
                    held.tokens,
                    lease.tokens
                ));
            }
        }
        self.leases.insert(agent.to_string(), lease);
        LeaseOutcome::Granted
    }

    /// Drops the lease `agent` holds (its connection ended: the request it was for is over).
    pub fn drop_lease(&mut self, agent: &str) {
        self.leases.remove(agent);
    }

    /// The lease `agent` holds, if any.
    pub fn lease_of(&self, agent: &str) -> Option<Lease> {
        self.leases.get(agent).copied()
    }

    /// What the agents of a role (or, with none, the team) have spent.
    fn used_in(&self, role: Option<&str>) -> UsageSum {
        let mut used = UsageSum::default();
        for rec in self
            .usage
            .values()
            .filter(|r| role.is_none_or(|name| r.role == name))
        {
            used.add(&rec.sum);
        }
        used
    }

    /// Counts one model response of the calling agent: its usage, the run's, one
    /// `USAGE_UPDATED` event, and the budgets it may have pushed past 80 % or 100 %.
    pub fn record_usage(
        &mut self,
        actor: &Actor,
        r: Response,
        budgets: &BudgetConfig,
        now: Timestamp,
    ) -> Outcome<UsageFigures> {
        let Some(agent) = actor.agent() else {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only agents report model usage",
            ));
        };
        let agent = agent.to_string();
        // The response settles the lease taken for it.
        self.leases.remove(&agent);
        let Some(role) = self.agents.get(&agent).map(|a| a.info.role.clone()) else {
            return Err(bad_request(format!("no agent {agent:?}")));
        };
        if r.model.is_empty() || r.model.len() > 256 {
            return Err(bad_request("a model name has 1-256 bytes"));
        }
        let one = UsageSum {
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_tokens: r.cached_tokens.min(r.input_tokens),
            requests: 1,
            cost_pico: r.cost_pico.unwrap_or(0),
            priced: r.cost_pico.is_some(),
        };
        let rec = self
            .usage
            .entry((agent.clone(), r.model.clone()))
            .or_insert_with(|| UsageRecord {
                agent: agent.clone(),
                role: role.clone(),
                model: r.model.clone(),
                sum: UsageSum::default(),
            });
        rec.sum.add(&one);
        let rec = rec.clone();
        self.changes.push(Change::Usage(rec));
        self.run.usage.add(&one);
        self.changes.push(Change::Run(self.run.clone()));
        let total = self.agent_usage(&agent).unwrap_or_default();
        self.touch(&agent, now);
        self.record(
            &agent,
            Event::UsageUpdated {
                model: r.model,
                usage: one.figures(),
                total: total.clone(),
            },
            now,
        );
        for scope in [Some(role), None] {
            self.report_crossing(scope, budgets, now);
        }
        Ok(total)
    }

    /// Reports a budget that reached a higher level than last reported: a `BUDGET_WARNING`
    /// event and a message to the leader; a spent team budget also ends the run.
    fn report_crossing(&mut self, role: Option<String>, budgets: &BudgetConfig, now: Timestamp) {
        let Some(status) = self.budget_status(role.as_deref(), budgets) else {
            return;
        };
        let reported = self.budgets.get(&role).map_or(BudgetLevel::Ok, |b| b.level);
        if status.level <= reported {
            return;
        }
        self.set_level(&role, status.level);
        self.record(
            "daemon",
            Event::BudgetWarning {
                budget: status.clone(),
            },
            now,
        );
        let scope = status.scope();
        let flag = match &role {
            Some(r) => format!(" --role {r}"),
            None => String::new(),
        };
        let (summary, body) = match (status.level, &role) {
            (BudgetLevel::Exceeded, Some(_)) => (
                format!("budget of {scope} spent"),
                format!(
                    "The budget of {scope} is spent ({}): its agents stop before their next model \
                     request. The operator can raise it with `agent-team budget set{flag} …` and \
                     restart them.",
                    spent(&status)
                ),
            ),
            (BudgetLevel::Exceeded, None) => (
                "team budget spent".to_string(),
                format!(
                    "The team's budget is spent ({}): the run ends and agents stop before their \
                     next model request.",
                    spent(&status)
                ),
            ),
            _ => (
                format!("budget of {scope} at {} %", status.percent),
                format!(
                    "Budget warning: {scope} has spent {} % of its budget ({}). At 100 % its \
                     agents stop before their next model request.",
                    status.percent,
                    spent(&status)
                ),
            ),
        };
        if self
            .agents
            .get(LEADER)
            .is_some_and(|l| !l.info.status.is_down())
        {
            // A full inbox must not lose the count: the event above says it all the same.
            let _ = self.send(
                &Actor::Daemon,
                LEADER,
                body,
                MessageKind::Text,
                Some(summary),
                now,
            );
        }
        if status.level == BudgetLevel::Exceeded && role.is_none() {
            self.fail_run(
                format!("the team's budget is spent ({})", spent(&status)),
                now,
            );
        }
    }

    /// Stores the level reported for a budget.
    fn set_level(&mut self, role: &Option<String>, level: BudgetLevel) {
        let rec = self
            .budgets
            .entry(role.clone())
            .or_insert_with(|| BudgetRecord {
                role: role.clone(),
                set: BudgetLimit::default(),
                level: BudgetLevel::Ok,
            });
        rec.level = level;
        let rec = rec.clone();
        self.changes.push(Change::Budget(rec));
    }

    /// Why `agent` must not make another model request: its role's budget or the team's is
    /// spent. None when it may go on.
    pub fn budget_stop(&self, agent: &str, budgets: &BudgetConfig) -> Option<String> {
        let role = self.agents.get(agent).map(|a| a.info.role.clone());
        [role, None].into_iter().find_map(|scope| {
            let s = self.budget_status(scope.as_deref(), budgets)?;
            (s.level == BudgetLevel::Exceeded)
                .then(|| format!("the budget of {} is spent ({})", s.scope(), spent(&s)))
        })
    }

    /// Sets a budget at run time (operator only): a role's, or the team's with no role. A
    /// figure not given stays as it was; 0 removes that limit. A budget raised below 80 % or
    /// 100 % of what is spent is rearmed, so the next crossing is reported again.
    pub fn set_budget(
        &mut self,
        actor: &Actor,
        role: Option<String>,
        limit: BudgetLimit,
        budgets: &BudgetConfig,
    ) -> Outcome<()> {
        if *actor != Actor::Operator {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the operator sets budgets",
            ));
        }
        if limit.tokens.is_none() && limit.usd.is_none() {
            return Err(bad_request("give a token limit, a dollar limit, or both"));
        }
        if limit.usd.is_some_and(|u| !u.is_finite() || u < 0.0) {
            return Err(ErrorBody::with_details(
                ErrorCode::BadRequest,
                "a dollar budget is a number of dollars, 0 or more",
                json!({"usd": limit.usd}),
            ));
        }
        let rec = self
            .budgets
            .entry(role.clone())
            .or_insert_with(|| BudgetRecord {
                role: role.clone(),
                set: BudgetLimit::default(),
                level: BudgetLevel::Ok,
            });
        if limit.tokens.is_some() {
            rec.set.tokens = limit.tokens;
        }
        if limit.usd.is_some() {
            rec.set.usd = limit.usd;
        }
        let level = self
            .budget_status(role.as_deref(), budgets)
            .map_or(BudgetLevel::Ok, |s| s.level);
        if let Some(rec) = self.budgets.get_mut(&role) {
            rec.level = rec.level.min(level);
            let rec = rec.clone();
            self.changes.push(Change::Budget(rec));
        }
        Ok(())
    }

    /// Whether a budget limits `agent`: its role's or the team's (the file's or `budget_set`'s).
    /// One that none limits is granted every lease, so its first one can be given unasked.
    pub fn budget_limits(&self, agent: &str, budgets: &BudgetConfig) -> bool {
        let role = self.agents.get(agent).map(|a| a.info.role.as_str());
        [role, None]
            .into_iter()
            .any(|scope| self.limit(scope, budgets).is_set())
    }

    /// The limit in force for a budget: `budget_set`'s figures over the file's.
    fn limit(&self, role: Option<&str>, budgets: &BudgetConfig) -> BudgetLimit {
        let file = match role {
            Some(r) => budgets.roles.get(r).copied().unwrap_or_default(),
            None => budgets.team,
        };
        let set = self
            .budgets
            .get(&role.map(str::to_string))
            .map(|b| b.set)
            .unwrap_or_default();
        BudgetLimit {
            tokens: match set.tokens {
                Some(0) => None,
                Some(n) => Some(n),
                None => file.tokens,
            },
            usd: match set.usd {
                Some(u) if u <= 0.0 => None,
                Some(u) => Some(u),
                None => file.usd,
            },
        }
    }

    /// A budget and what is spent against it; none when it limits nothing.
    pub fn budget_status(
        &self,
        role: Option<&str>,
        budgets: &BudgetConfig,
    ) -> Option<BudgetStatus> {
        let limit = self.limit(role, budgets);
        if !limit.is_set() {
            return None;
        }
        let used = self.used_in(role);
        let tokens = used.tokens();
        // Levels in integer arithmetic, so exactly 80 % is a warning.
        let level_of = |used: u128, limit: u128| {
            if used >= limit {
                BudgetLevel::Exceeded
            } else if used * 5 >= limit * 4 {
                BudgetLevel::Warning
            } else {
                BudgetLevel::Ok
            }
        };
        let mut level = BudgetLevel::Ok;
        let mut percent = 0u64;
        if let Some(t) = limit.tokens {
            level = level.max(level_of(u128::from(tokens), u128::from(t)));
            percent = percent.max(percent_of(u128::from(tokens), u128::from(t)));
        }
        if let Some(u) = limit.usd {
            let cap = (u * PICO).round() as u128;
            level = level.max(level_of(u128::from(used.cost_pico), cap));
            percent = percent.max(percent_of(u128::from(used.cost_pico), cap));
        }
        Some(BudgetStatus {
            role: role.map(str::to_string),
            budget_tokens: limit.tokens,
            budget_usd: limit.usd,
            used_tokens: tokens,
            used_usd: used.cost_pico as f64 / PICO,
            percent,
            level,
        })
    }

    /// Every budget that limits something, the team's first, then the roles' by name.
    pub fn budget_statuses(&self, budgets: &BudgetConfig) -> Vec<BudgetStatus> {
        let mut roles: Vec<&str> = budgets.roles.keys().map(String::as_str).collect();
        roles.extend(self.budgets.keys().filter_map(|r| r.as_deref()));
        roles.sort_unstable();
        roles.dedup();
        std::iter::once(None)
            .chain(roles.into_iter().map(Some))
            .filter_map(|r| self.budget_status(r, budgets))
            .collect()
    }

    /// An agent's usage so far, every model together; none before its first response.
    pub fn agent_usage(&self, agent: &str) -> Option<UsageFigures> {
        let mut sum = UsageSum::default();
        let mut any = false;
        for rec in self.usage_of(agent) {
            sum.add(&rec.sum);
            any = true;
        }
        any.then(|| sum.figures())
    }

    /// An agent's usage records, by model.
    fn usage_of<'a>(&'a self, agent: &'a str) -> impl Iterator<Item = &'a UsageRecord> + 'a {
        self.usage
            .range((agent.to_string(), String::new())..)
            .take_while(move |((a, _), _)| a == agent)
            .map(|(_, r)| r)
    }

    /// Every usage record, by agent and model.
    pub fn usage_records(&self) -> impl Iterator<Item = &UsageRecord> {
        self.usage.values()
    }

    /// The usage report: per agent (with its models), per role, the team's total, the run's,
    /// and the budgets.
    pub fn usage_report(&self, budgets: &BudgetConfig) -> UsageReport {
        let mut agents: BTreeMap<&str, (String, UsageSum, Vec<UsageLine>)> = BTreeMap::new();
        let mut roles: BTreeMap<&str, UsageSum> = BTreeMap::new();
        let mut total = UsageSum::default();
        for rec in self.usage.values() {
            let a = agents
                .entry(rec.agent.as_str())
                .or_insert_with(|| (rec.role.clone(), UsageSum::default(), Vec::new()));
            a.1.add(&rec.sum);
            a.2.push(UsageLine {
                name: rec.model.clone(),
                usage: rec.sum.figures(),
                ..UsageLine::default()
            });
            roles.entry(rec.role.as_str()).or_default().add(&rec.sum);
            total.add(&rec.sum);
        }
        UsageReport {
            agents: agents
                .into_iter()
                .map(|(name, (role, sum, models))| UsageLine {
                    name: name.to_string(),
                    role: Some(role),
                    usage: sum.figures(),
                    models,
                })
                .collect(),
            roles: roles
                .into_iter()
                .map(|(name, sum)| UsageLine {
                    name: name.to_string(),
                    usage: sum.figures(),
                    ..UsageLine::default()
                })
                .collect(),
            total: total.figures(),
            run: self.run.usage.figures(),
            budgets: self.budget_statuses(budgets),
        }
    }
}

/// `used` as a whole percentage of `limit` (rounded down).
fn percent_of(used: u128, limit: u128) -> u64 {
    if limit == 0 {
        return 100;
    }
    u64::try_from(used * 100 / limit).unwrap_or(u64::MAX)
}

/// What a budget has spent against what it allows, in words.
fn spent(s: &BudgetStatus) -> String {
    let mut parts = Vec::new();
    if let Some(t) = s.budget_tokens {
        parts.push(format!("{} of {t} tokens", s.used_tokens));
    }
    if let Some(u) = s.budget_usd {
        parts.push(format!("${:.4} of ${u}", s.used_usd));
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::AgentRecord;

    fn team() -> TeamState {
        let mut s = TeamState::new("t");
        for (n, role) in [
            ("leader", "leader"),
            ("w1", "worker"),
            ("w2", "worker"),
            ("s1", "scout"),
        ] {
            let info = AgentInfo {
                status: AgentStatus::Idle,
                ..AgentInfo::new(n, role, "external", 1, Timestamp(1))
            };
            s.add_agent(
                &Actor::Operator,
                AgentRecord {
                    info,
                    secret: "s".into(),
                    spec: serde_json::Value::Null,
                },
                Timestamp(1),
            )
            .unwrap();
        }
        s.start_run(&Actor::Operator, Some("g".into()), Timestamp(1))
            .unwrap();
        s.take_changes();
        s
    }

    fn resp(model: &str, input: u64, output: u64, cached: u64, cost: Option<u64>) -> Response {
        Response {
            model: model.into(),
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            cost_pico: cost,
        }
    }

    fn agent(n: &str) -> Actor {
        Actor::Agent(n.into())
    }

    fn events(changes: &[Change]) -> Vec<Event> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Event(e) => Some(e.event.clone()),
                _ => None,
            })
            .collect()
    }

    fn leader_messages(s: &TeamState) -> Vec<String> {
        s.unread("leader").into_iter().map(|m| m.body).collect()
    }

    #[test]
    fn responses_are_summed_per_agent_model_role_and_run() {
        let mut s = team();
        let b = BudgetConfig::default();
        s.record_usage(
            &agent("w1"),
            resp("m1", 100, 10, 40, Some(7)),
            &b,
            Timestamp(2),
        )
        .unwrap();
        s.record_usage(&agent("w1"), resp("m2", 50, 5, 0, None), &b, Timestamp(3))
            .unwrap();
        let total = s
            .record_usage(&agent("w2"), resp("m1", 1, 2, 9, Some(3)), &b, Timestamp(4))
            .unwrap();
        assert_eq!(total.input_tokens, 1);
        assert_eq!(total.cached_tokens, 1, "cached is at most the input");
        let ch = s.take_changes();
        let ev = events(&ch);
        assert!(matches!(&ev[0], Event::UsageUpdated { model, usage, total }
            if model == "m1" && usage.input_tokens == 100 && usage.requests == 1
               && total.input_tokens == 100 && usage.cost_usd == Some(7e-12)));
        assert_eq!(
            ev.iter()
                .filter(|e| e.type_name() == "USAGE_UPDATED")
                .count(),
            3
        );
        assert!(
            ch.iter()
                .any(|c| matches!(c, Change::Usage(r) if r.agent == "w1" && r.model == "m2"))
        );
        let w1 = s.agent_usage("w1").unwrap();
        assert_eq!(
            (
                w1.input_tokens,
                w1.output_tokens,
                w1.cached_tokens,
                w1.requests
            ),
            (150, 15, 40, 2)
        );
        assert_eq!(w1.cost_usd, Some(7e-12), "only the priced model costs");
        assert!(s.agent_usage("s1").is_none());
        let ps = s.agents();
        assert_eq!(ps.iter().find(|a| a.name == "w1").unwrap().usage, Some(w1));
        let r = s.usage_report(&b);
        assert_eq!(r.agents.len(), 2);
        assert_eq!(r.agents[0].name, "w1");
        assert_eq!(r.agents[0].models.len(), 2);
        assert_eq!(r.roles.len(), 1);
        assert_eq!(r.roles[0].usage.requests, 3);
        assert_eq!(r.total.input_tokens, 151);
        assert_eq!(r.run, r.total);
        // A new run counts from zero; the agents' figures stay.
        s.start_run(&Actor::Operator, None, Timestamp(5)).unwrap();
        assert_eq!(s.usage_report(&b).run, UsageFigures::default());
        assert_eq!(s.usage_report(&b).total.input_tokens, 151);
        // Only agents report.
        assert_eq!(
            s.record_usage(&Actor::Operator, resp("m", 1, 1, 0, None), &b, Timestamp(6))
                .unwrap_err()
                .code,
            ErrorCode::PermissionDenied
        );
    }

    #[test]
    fn a_role_budget_warns_once_at_80_then_stops_its_agents_at_100() {
        let mut s = team();
        let mut b = BudgetConfig::default();
        b.roles.insert(
            "worker".into(),
            BudgetLimit {
                tokens: Some(1000),
                usd: None,
            },
        );
        s.record_usage(&agent("w1"), resp("m", 700, 0, 0, None), &b, Timestamp(2))
            .unwrap();
        assert!(
            events(&s.take_changes())
                .iter()
                .all(|e| e.type_name() != "BUDGET_WARNING")
        );
        assert!(s.budget_stop("w1", &b).is_none());
        // w2 (same role) takes it to exactly 80 %.
        s.record_usage(&agent("w2"), resp("m", 50, 50, 0, None), &b, Timestamp(3))
            .unwrap();
        let ev = events(&s.take_changes());
        let warnings: Vec<&BudgetStatus> = ev
            .iter()
            .filter_map(|e| match e {
                Event::BudgetWarning { budget } => Some(budget),
                _ => None,
            })
            .collect();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].level, BudgetLevel::Warning);
        assert_eq!(warnings[0].percent, 80);
        assert_eq!(warnings[0].role.as_deref(), Some("worker"));
        assert_eq!(leader_messages(&s).len(), 1);
        assert!(
            leader_messages(&s)[0].contains("80 %"),
            "{:?}",
            leader_messages(&s)
        );
        // Still between 80 and 100: no second warning.
        s.record_usage(&agent("w1"), resp("m", 100, 0, 0, None), &b, Timestamp(4))
            .unwrap();
        assert!(
            events(&s.take_changes())
                .iter()
                .all(|e| e.type_name() != "BUDGET_WARNING")
        );
        assert!(s.budget_stop("w2", &b).is_none());
        s.record_usage(&agent("w1"), resp("m", 100, 0, 0, None), &b, Timestamp(5))
            .unwrap();
        let ev = events(&s.take_changes());
        assert!(ev.iter().any(|e| matches!(e, Event::BudgetWarning { budget } if budget.level == BudgetLevel::Exceeded)));
        assert_eq!(leader_messages(&s).len(), 2);
        assert!(leader_messages(&s)[1].contains("spent"));
        let why = s.budget_stop("w2", &b).unwrap();
        assert!(
            why.contains("role worker") && why.contains("1000 of 1000 tokens"),
            "{why}"
        );
        assert!(s.budget_stop("s1", &b).is_none(), "another role goes on");
        assert_eq!(
            s.run().state,
            RunState::Running,
            "a role budget keeps the run"
        );
        // Raising it lets them go on and rearms the warnings.
        s.set_budget(
            &Actor::Operator,
            Some("worker".into()),
            BudgetLimit {
                tokens: Some(2000),
                usd: None,
            },
            &b,
        )
        .unwrap();
        assert!(s.budget_stop("w1", &b).is_none());
        s.record_usage(&agent("w1"), resp("m", 600, 0, 0, None), &b, Timestamp(6))
            .unwrap();
        assert!(events(&s.take_changes())
            .iter()
            .any(|e| matches!(e, Event::BudgetWarning { budget } if budget.level == BudgetLevel::Warning && budget.budget_tokens == Some(2000))));
        // 0 removes the limit.
        s.set_budget(
            &Actor::Operator,
            Some("worker".into()),
            BudgetLimit {
                tokens: Some(0),
                usd: None,
            },
            &b,
        )
        .unwrap();
        assert!(s.budget_status(Some("worker"), &b).is_none());
        assert_eq!(
            s.set_budget(
                &agent("leader"),
                None,
                BudgetLimit {
                    tokens: Some(1),
                    usd: None
                },
                &b
            )
            .unwrap_err()
            .code,
            ErrorCode::PermissionDenied
        );
    }

    #[test]
    fn a_spent_team_budget_in_dollars_ends_the_run() {
        let mut s = team();
        let b = BudgetConfig {
            team: BudgetLimit {
                tokens: None,
                usd: Some(0.001),
            },
            ..Default::default()
        };
        // $0.0009 = 90 %: a warning.
        s.record_usage(
            &agent("s1"),
            resp("m", 1, 1, 0, Some(900_000_000)),
            &b,
            Timestamp(2),
        )
        .unwrap();
        assert!(events(&s.take_changes()).iter().any(|e| matches!(e, Event::BudgetWarning { budget } if budget.role.is_none() && budget.percent == 90)));
        assert_eq!(s.run().state, RunState::Running);
        s.record_usage(
            &agent("w1"),
            resp("m", 1, 1, 0, Some(100_000_000)),
            &b,
            Timestamp(3),
        )
        .unwrap();
        let ev = events(&s.take_changes());
        assert!(ev.iter().any(|e| matches!(e, Event::RunFinished { success: false, answer } if answer.contains("team's budget"))));
        assert_eq!(s.run().state, RunState::Failed);
        assert!(s.budget_stop("leader", &b).unwrap().contains("the team"));
        let st = s.budget_statuses(&b);
        assert_eq!(st.len(), 1);
        assert_eq!(
            (st[0].used_usd, st[0].level),
            (0.001, BudgetLevel::Exceeded)
        );
    }

    fn lease(tokens: u64) -> Lease {
        Lease {
            tokens,
            cost_pico: 0,
        }
    }

    #[test]
    fn leases_hold_a_shared_budget_to_one_response_in_all() {
        // Three agents share a 100-token team budget; each response costs 60. They all ask at
        // once, then the ones let through report; without leases all three went each round.
        let mut s = team();
        let b = BudgetConfig {
            team: BudgetLimit {
                tokens: Some(100),
                usd: None,
            },
            ..Default::default()
        };
        let mut stopped = BTreeMap::new();
        for round in 0..10 {
            let mut granted = Vec::new();
            for a in ["w1", "w2", "s1"] {
                match s.budget_lease(a, lease(60), &b) {
                    LeaseOutcome::Granted => granted.push(a),
                    LeaseOutcome::Stop(why) => {
                        stopped.insert(a, why);
                    }
                    LeaseOutcome::Wait(why) => assert!(why.contains("held by"), "{why}"),
                }
            }
            if round == 0 {
                assert_eq!(
                    granted,
                    ["w1"],
                    "one lease of 60 leaves no room for another"
                );
            }
            for a in granted {
                s.record_usage(&agent(a), resp("m", 50, 10, 0, None), &b, Timestamp(2))
                    .unwrap();
                assert!(s.lease_of(a).is_none(), "the report settles the lease");
            }
        }
        assert_eq!(stopped.len(), 3, "{stopped:?}");
        let used = s.budget_status(None, &b).unwrap().used_tokens;
        assert!(
            (100..160).contains(&used),
            "{used}: over by more than one response"
        );
    }

    #[test]
    fn leases_that_fit_go_together_and_a_dead_agents_lease_is_dropped() {
        let mut s = team();
        let mut b = BudgetConfig::default();
        b.roles.insert(
            "worker".into(),
            BudgetLimit {
                tokens: Some(1000),
                usd: None,
            },
        );
        assert_eq!(s.budget_lease("w1", lease(400), &b), LeaseOutcome::Granted);
        assert_eq!(s.budget_lease("w2", lease(600), &b), LeaseOutcome::Granted);
        // Another role's agent is not held by the workers' budget.
        assert_eq!(s.budget_lease("s1", lease(5000), &b), LeaseOutcome::Granted);
        // w1 asks again (its request failed): its own lease is replaced, not added.
        assert_eq!(s.budget_lease("w1", lease(400), &b), LeaseOutcome::Granted);
        assert!(matches!(
            s.budget_lease("w1", lease(401), &b),
            LeaseOutcome::Wait(_)
        ));
        assert!(s.lease_of("w1").is_none(), "a refused ask holds nothing");
        // w2 dies: its lease goes, and w1 may take the whole budget.
        s.drop_lease("w2");
        assert_eq!(s.budget_lease("w1", lease(5000), &b), LeaseOutcome::Granted);
        assert!(matches!(
            s.budget_lease("w2", lease(1), &b),
            LeaseOutcome::Wait(_)
        ));
        s.record_usage(&agent("w1"), resp("m", 900, 200, 0, None), &b, Timestamp(2))
            .unwrap();
        assert!(matches!(
            s.budget_lease("w2", lease(1), &b),
            LeaseOutcome::Stop(why) if why.contains("role worker")
        ));
    }

    #[test]
    fn a_dollar_budget_holds_leases_by_their_price() {
        let mut s = team();
        let b = BudgetConfig {
            team: BudgetLimit {
                tokens: None,
                usd: Some(0.001),
            },
            ..Default::default()
        };
        let l = Lease {
            tokens: 10,
            cost_pico: 600_000_000,
        };
        assert_eq!(s.budget_lease("w1", l, &b), LeaseOutcome::Granted);
        assert!(matches!(s.budget_lease("w2", l, &b), LeaseOutcome::Wait(_)));
        let small = Lease {
            tokens: 10,
            cost_pico: 400_000_000,
        };
        assert_eq!(s.budget_lease("w2", small, &b), LeaseOutcome::Granted);
    }
}
