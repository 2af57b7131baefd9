//! A role's permission policy as the engine in `agent-team-perms` sees it: the rules of the
//! team file (`tool` or `tool(pattern)` = `allow` | `ask` | `deny`) and the decision for one
//! tool call. The rules themselves (patterns, shell lines, protected paths) live in that crate.

use crate::model::{PermAction, PolicyRule};

/// The engine itself, for callers that resolve what the engine cannot (the worker resolves a
/// write's symlinks) without depending on it separately.
pub use agent_team_perms as perms;

/// The engine's view of a role's rules.
pub fn rules(policy: &[PolicyRule]) -> Vec<perms::Rule<'_>> {
    policy
        .iter()
        .map(|r| perms::Rule {
            tool: &r.tool,
            pattern: r.pattern.as_deref(),
            action: to_engine(r.action),
        })
        .collect()
}

fn to_engine(a: PermAction) -> perms::Action {
    match a {
        PermAction::Allow => perms::Action::Allow,
        PermAction::Ask => perms::Action::Ask,
        PermAction::Deny => perms::Action::Deny,
    }
}

/// The team file's name for an engine action.
pub fn from_engine(a: perms::Action) -> PermAction {
    match a {
        perms::Action::Allow => PermAction::Allow,
        perms::Action::Ask => PermAction::Ask,
        perms::Action::Deny => PermAction::Deny,
    }
}

/// The action for `tool` with `input` (see `agent_team_perms::decide_rules` for the order of
/// the rules): a `deny` pattern anywhere denies; every command of a shell line must be allowed,
/// by a pattern read on word boundaries, in a line without redirection, substitution or odd
/// characters; then the rule for the whole tool, then `*`, then `allow`. A call that would be
/// allowed but writes a protected path (`.git/`, `.agent-team/`, a team file, ...: judged by
/// spelling, relative to the workspace) is asked instead.
pub fn decide(policy: &[PolicyRule], tool: &str, input: &str) -> PermAction {
    from_engine(perms::decide(&rules(policy), tool, input).action)
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

    // The engine's own rules (most specific wins, every command of a line) are tested in
    // agent-team-perms; here only what the team file's policy adds to them.

    /// Issue 12, finding 2, through the team file's policy: `git status*` is no longer a way to
    /// `git statusfoo`, a redirection or a write into `.git`.
    #[test]
    fn git_status_allows_git_status_only() {
        let rules = vec![
            rule("bash", None, Ask),
            rule("bash", Some("git status*"), Allow),
            rule("write_file", None, Allow),
        ];
        assert_eq!(decide(&rules, "bash", "git status -s"), Allow);
        assert_eq!(decide(&rules, "bash", "git statusfoo"), Ask);
        assert_eq!(decide(&rules, "bash", "git status > .git/config"), Ask);
        assert_eq!(decide(&rules, "bash", "git\u{a0}status"), Ask);
        assert_eq!(decide(&rules, "write_file", "src/lib.rs"), Allow);
        assert_eq!(decide(&rules, "write_file", ".git/config"), Ask);
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
