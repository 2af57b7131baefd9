//! What a team's model usage costs and what happens around it: model prices (`[prices]` over a
//! small built-in table), and the `[notify]` settings. Budgets are `agent_team_protocol::BudgetLimit`s
//! in the [`crate::TeamConfig`] (top level for the team, `[roles.X]` per role).

use serde::{Deserialize, Serialize};

/// A model's price in US dollars per million tokens (`[prices]` in the team file).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt tokens not read from the cache.
    pub input: f64,
    /// Completion tokens.
    pub output: f64,
    /// Prompt tokens read from the cache; the `input` price when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to the cache (Anthropic's `cache_creation_input_tokens`, 1.25 ×
    /// input for its 5-minute cache); the `input` price when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

/// Picodollars (10⁻¹² $) in a dollar: costs are summed as whole picodollars so totals are
/// exact whatever the order (a price of $0.0375 per million tokens is 37 500 pico$ a token).
pub const PICO_PER_USD: f64 = 1e12;

impl Price {
    /// The cost of one response in picodollars: uncached input, cached input and output each
    /// at their price (`cached` is the part of `input` read from the cache).
    pub fn cost_pico(&self, input: u64, output: u64, cached: u64) -> u64 {
        self.cost_pico_with_writes(input, output, cached, 0)
    }

    /// [`Price::cost_pico`] with `written`, the part of `input` written to the cache, at the
    /// cache-write price (what is neither read nor written is plain input).
    pub fn cost_pico_with_writes(&self, input: u64, output: u64, cached: u64, written: u64) -> u64 {
        // $ per million tokens = 10⁶ picodollars per token.
        let per_token = |usd_per_m: f64| (usd_per_m * 1e6).round().max(0.0) as u128;
        let cached = cached.min(input);
        let written = written.min(input - cached);
        let total = u128::from(input - cached - written) * per_token(self.input)
            + u128::from(cached) * per_token(self.cached_input.unwrap_or(self.input))
            + u128::from(written) * per_token(self.cache_write.unwrap_or(self.input))
            + u128::from(output) * per_token(self.output);
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

/// Approximate public list prices (US dollars per million tokens: input, output, cached
/// input) of a few well-known models, as published by OpenAI and Anthropic in 2025. They change;
/// a team file's `[prices]` entry overrides them. Anthropic's cache writes are priced at
/// [`ANTHROPIC_CACHE_WRITE`] × input (OpenAI charges none). A model name matches the longest entry it starts with, so
/// `claude-sonnet-4-5-20250929` is priced as `claude-sonnet-4-5`.
pub const BUILTIN_PRICES: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o", 2.5, 10.0, 1.25),
    ("gpt-4o-mini", 0.15, 0.6, 0.075),
    ("gpt-4.1", 2.0, 8.0, 0.5),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025),
    ("gpt-5", 1.25, 10.0, 0.125),
    ("gpt-5-mini", 0.25, 2.0, 0.025),
    ("gpt-5-nano", 0.05, 0.4, 0.005),
    ("o3", 2.0, 8.0, 0.5),
    ("o4-mini", 1.1, 4.4, 0.275),
    ("claude-opus-4", 15.0, 75.0, 1.5),
    ("claude-opus-4-1", 15.0, 75.0, 1.5),
    ("claude-sonnet-4", 3.0, 15.0, 0.3),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.3),
    ("claude-haiku-4-5", 1.0, 5.0, 0.1),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08),
];

/// What Anthropic charges for a 5-minute cache write, as a multiple of the input price (a read
/// is 0.1 ×, in the table).
pub const ANTHROPIC_CACHE_WRITE: f64 = 1.25;

/// The price of `model`: the team file's entry for exactly that name, else the longest of its
/// entries the name starts with, else the same in [`BUILTIN_PRICES`]; none for a model with no
/// known price (its tokens are counted, its cost shown as `-`).
pub fn price_for(file: &std::collections::BTreeMap<String, Price>, model: &str) -> Option<Price> {
    if let Some(p) = file.get(model) {
        return Some(*p);
    }
    let longest_prefix = |keys: &mut dyn Iterator<Item = (&str, Price)>| {
        keys.filter(|(k, _)| model.starts_with(k))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| p)
    };
    longest_prefix(&mut file.iter().map(|(k, p)| (k.as_str(), *p))).or_else(|| {
        longest_prefix(&mut BUILTIN_PRICES.iter().map(|(k, i, o, c)| {
            (
                *k,
                Price {
                    input: *i,
                    output: *o,
                    cached_input: Some(*c),
                    cache_write: k
                        .starts_with("claude")
                        .then_some(*i * ANTHROPIC_CACHE_WRITE),
                },
            )
        }))
    })
}

/// `[notify]`: what the daemon does when someone should look (a permission request, an agent
/// that failed, a budget warning, the end of the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notify {
    /// A shell command (`sh -c`) given the event's envelope as JSON on stdin; instead of the
    /// bell and the desktop notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Seconds the command may run before it is killed.
    pub timeout_secs: u64,
    /// Without a command: ring the terminal bell in the leader's pane (tmux) and show a
    /// desktop notification with `notify-send` when it is on the PATH. `false` turns both off.
    pub bell: bool,
    /// A Slack incoming webhook: each event posted as Slack's `text` and `blocks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack_webhook: Option<crate::NotifyUrl>,
    /// A Discord webhook: each event posted as Discord's `content` and `embeds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord_webhook: Option<crate::NotifyUrl>,
    /// Any HTTP endpoint: each event's envelope posted as JSON, as the command gets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::NotifyUrl>,
    /// The web board's address for a permission request's approve link (e.g. a public
    /// address in front of `serve`); without it, the address of an `agent-team serve` running
    /// on this machine, else the `agent-team approve` command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board_url: Option<String>,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            command: None,
            timeout_secs: 10,
            bell: true,
            slack_webhook: None,
            discord_webhook: None,
            webhook: None,
            board_url: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn cost_is_exact_in_picodollars() {
        let p = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
        };
        // 1000 uncached at $3/M = 3000 µ$... in pico: 1000 × 3e6.
        assert_eq!(p.cost_pico(1000, 0, 0), 3_000_000_000);
        assert_eq!(
            p.cost_pico(5000, 321, 4000),
            1000 * 3_000_000 + 4000 * 300_000 + 321 * 15_000_000
        );
        let no_cached = Price {
            cached_input: None,
            ..p
        };
        assert_eq!(no_cached.cost_pico(10, 0, 10), 10 * 3_000_000);
        // More cached than input is read as all cached.
        assert_eq!(p.cost_pico(10, 0, 99), 10 * 300_000);
    }

    /// An Anthropic answer that read 1800 prompt tokens from the cache and wrote 200: each
    /// part at its price (reads 0.1 ×, writes 1.25 × the input price), the rest at input.
    #[test]
    fn cache_writes_and_reads_cost_their_prices() {
        let none = BTreeMap::new();
        let p = price_for(&none, "claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(p.cache_write, Some(3.75));
        assert_eq!(
            p.cost_pico_with_writes(2012, 6, 1800, 200),
            12 * 3_000_000 + 1800 * 300_000 + 200 * 3_750_000 + 6 * 15_000_000
        );
        // Without writes it is `cost_pico`.
        assert_eq!(
            p.cost_pico_with_writes(2012, 6, 1800, 0),
            p.cost_pico(2012, 6, 1800)
        );
        // Reads and writes are parts of the input: never more than it.
        assert_eq!(
            p.cost_pico_with_writes(10, 0, 4, 99),
            4 * 300_000 + 6 * 3_750_000
        );
        // OpenAI charges no writes; a price without one counts them as input.
        let gpt = price_for(&none, "gpt-4.1-mini").unwrap();
        assert_eq!(gpt.cache_write, None);
        assert_eq!(
            gpt.cost_pico_with_writes(100, 0, 0, 50),
            gpt.cost_pico(100, 0, 0)
        );
        // `[prices]` takes `cache_write`.
        let file: Price = toml::from_str("input = 1.0\noutput = 2.0\ncache_write = 1.5\n").unwrap();
        assert_eq!(file.cost_pico_with_writes(10, 0, 0, 10), 10 * 1_500_000);
    }

    #[test]
    fn prices_come_from_the_file_then_the_builtin_table_by_longest_prefix() {
        let mut file = BTreeMap::new();
        file.insert(
            "gpt-4o".to_string(),
            Price {
                input: 1.0,
                output: 2.0,
                cached_input: None,
                cache_write: None,
            },
        );
        assert_eq!(price_for(&file, "gpt-4o").unwrap().input, 1.0);
        assert_eq!(price_for(&file, "gpt-4o-2024-08-06").unwrap().input, 1.0);
        // The built-in `gpt-4o-mini` is longer, but the file's entries come first.
        assert_eq!(price_for(&file, "gpt-4o-mini").unwrap().input, 1.0);
        let none = BTreeMap::new();
        assert_eq!(price_for(&none, "gpt-4o-mini").unwrap().input, 0.15);
        assert_eq!(
            price_for(&none, "claude-sonnet-4-5-20250929")
                .unwrap()
                .output,
            15.0
        );
        assert!(price_for(&none, "qwen2.5-coder").is_none());
    }
}
