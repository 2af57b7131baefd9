//! Evaluating a role's permission policy for one tool call.

use crate::model::{PermAction, PolicyRule};

pub use agent_team_protocol::names::pattern_matches as glob;

/// The action for `tool` with `input`: the matching rule with the longest pattern wins, then a
/// rule for the whole tool, then `allow`.
pub fn decide(rules: &[PolicyRule], tool: &str, input: &str) -> PermAction {
    let mut best: Option<(usize, PermAction)> = None;
    for r in rules.iter().filter(|r| r.tool == tool || r.tool == "*") {
        let specificity = match &r.pattern {
            Some(p) if glob(p, input) => 1 + p.len(),
            Some(_) => continue,
            None if r.tool == "*" => 0,
            None => 1,
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, r.action));
        }
    }
    best.map(|(_, a)| a).unwrap_or(PermAction::Allow)
}

/// Parses a policy key: `bash` or `bash(cargo test*)`.
pub fn parse_key(key: &str) -> Option<(String, Option<String>)> {
    match key.find('(') {
        None => Some((key.trim().to_string(), None)),
        Some(i) => {
            let rest = key[i + 1..].strip_suffix(')')?;
            Some((key[..i].trim().to_string(), Some(rest.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PermAction::*;

    fn rule(tool: &str, pattern: Option<&str>, action: PermAction) -> PolicyRule {
        PolicyRule {
            tool: tool.into(),
            pattern: pattern.map(str::to_string),
            action,
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = vec![
            rule("bash", None, Ask),
            rule("bash", Some("cargo test*"), Allow),
            rule("bash", Some("rm *"), Deny),
        ];
        assert_eq!(decide(&rules, "bash", "cargo test --all"), Allow);
        assert_eq!(decide(&rules, "bash", "rm -rf /"), Deny);
        assert_eq!(decide(&rules, "bash", "make"), Ask);
        assert_eq!(decide(&rules, "write_file", "x"), Allow);
        assert_eq!(decide(&[rule("*", None, Ask)], "write_file", "x"), Ask);
    }

    #[test]
    fn keys() {
        assert_eq!(parse_key("bash"), Some(("bash".into(), None)));
        assert_eq!(
            parse_key("bash(cargo test*)"),
            Some(("bash".into(), Some("cargo test*".into())))
        );
        assert_eq!(parse_key("bash(oops"), None);
    }
}
