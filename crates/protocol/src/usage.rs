//! Token usage and spend as the wire shows them: an agent's figures in `ps`, the `usage`
//! report (per agent, per role, the team and the current run), budgets and how far they are
//! spent. The daemon computes them (`agent-team-state`); prices come from the team file.

use serde::{Deserialize, Serialize};

/// Token counts, requests and spend of an agent, a role, a model, the team or a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UsageFigures {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// The part of `input_tokens` read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Model responses counted.
    pub requests: u64,
    /// Spend in US dollars at the team's prices (`[prices]` over the built-in table); absent
    /// when no model used has a known price. Tokens of models without a price cost nothing
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl UsageFigures {
    /// Input plus output tokens: what a token budget counts.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// How one model call went, beside its usage in `report_usage`: what the daemon's
/// `MODEL_CALL` event says of it besides the tokens (issue 65).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CallTrace {
    /// The API (`anthropic`, `openai-chat`, `openai-responses`, `gemini`).
    pub api: String,
    /// Whether the response was streamed.
    #[serde(default)]
    pub streamed: bool,
    /// The HTTP status of the response.
    pub status: u16,
    /// From the request's start to the response's end, in ms.
    pub latency_ms: u64,
    /// From the request's start to the response's first streamed piece, in ms, when any came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<u64>,
}

/// One line of a usage report: an agent (with its role and its models), a role, or a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UsageLine {
    /// The agent's, role's or model's name.
    pub name: String,
    /// For an agent: its role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The figures.
    #[serde(flatten)]
    pub usage: UsageFigures,
    /// For an agent: the figures per model it used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<UsageLine>,
}

/// What a budget allows: input + output tokens, dollars, or both (the first one spent
/// counts). Nothing set means no budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BudgetLimit {
    /// The most input + output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// The most US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
}

impl BudgetLimit {
    /// Whether it limits anything.
    pub fn is_set(&self) -> bool {
        self.tokens.is_some() || self.usd.is_some()
    }
}

/// How far a budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BudgetLevel {
    /// Below 80 %.
    Ok,
    /// At 80 % or more: the leader was warned.
    Warning,
    /// At 100 % or more: the agents it covers stop before their next model request (the
    /// team's: the run ends with `success: false`).
    Exceeded,
}

/// A budget (a role's or the team's), what it allows and what is spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BudgetStatus {
    /// The role it covers; absent for the team's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The most input + output tokens, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// The most US dollars, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Input + output tokens spent.
    pub used_tokens: u64,
    /// Dollars spent (at the known prices).
    pub used_usd: f64,
    /// The larger of the two fractions spent, in percent (rounded down).
    pub percent: u64,
    /// Where that puts it.
    pub level: BudgetLevel,
}

impl BudgetStatus {
    /// What it covers, in words: `the team` or `role worker`.
    pub fn scope(&self) -> String {
        match &self.role {
            Some(r) => format!("role {r}"),
            None => "the team".to_string(),
        }
    }
}

/// The answer to `usage`: per agent, per role, the team's total, the current run's total,
/// and every budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UsageReport {
    /// One line per agent that made a model request, by name.
    pub agents: Vec<UsageLine>,
    /// One line per role, by name.
    pub roles: Vec<UsageLine>,
    /// Everything the team's state has recorded.
    pub total: UsageFigures,
    /// Since the current (or last) run started.
    pub run: UsageFigures,
    /// The budgets set (team file or `budget set`), the team's first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetStatus>,
}
