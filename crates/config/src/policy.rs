//! Evaluating a role's permission policy for one tool call.

use crate::model::{PermAction, PolicyRule};

use agent_team_protocol::names;
pub use agent_team_protocol::names::pattern_matches as glob;

/// The action for `tool` with `input`.
///
/// 1. A `deny` pattern that matches the input, or any command of a shell line, denies.
/// 2. Otherwise each command of a shell line (the whole input for other tools) takes its
///    longest matching `ask`/`allow` pattern: any `ask` asks; all `allow` allows. So
///    `bash(cargo test*) = "allow"` never allows `cargo test; rm -rf ~`.
/// 3. Otherwise the rule for the whole tool decides, then a `*` rule, then `allow`.
///
/// Shell lines are matched with whitespace runs made one space and trimmed, so spacing does
/// not slip past a pattern.
pub fn decide(rules: &[PolicyRule], tool: &str, input: &str) -> PermAction {
    let applies = |r: &&PolicyRule| r.tool == tool || r.tool == "*";
    let shell = tool == names::SHELL_TOOL;
    let (whole, parts) = if shell {
        (names::squeeze(input), names::command_parts(input))
    } else {
        (input.to_string(), vec![input.to_string()])
    };
    let patterned: Vec<(&str, PermAction)> = rules
        .iter()
        .filter(applies)
        .filter_map(|r| r.pattern.as_deref().map(|p| (p, r.action)))
        .collect();
    let denied = patterned.iter().any(|(p, a)| {
        *a == PermAction::Deny && (glob(p, &whole) || parts.iter().any(|x| glob(p, x)))
    });
    if denied {
        return PermAction::Deny;
    }
    let mut all_allowed = !parts.is_empty();
    for part in &parts {
        let best = patterned
            .iter()
            .filter(|(p, a)| *a != PermAction::Deny && glob(p, part))
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((_, PermAction::Ask)) => return PermAction::Ask,
            Some(_) => {}
            None => all_allowed = false,
        }
    }
    if all_allowed {
        return PermAction::Allow;
    }
    let whole_tool = |t: &str| {
        rules
            .iter()
            .find(|r| r.tool == t && r.pattern.is_none())
            .map(|r| r.action)
    };
    whole_tool(tool)
        .or_else(|| whole_tool("*"))
        .unwrap_or(PermAction::Allow)
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
    fn a_shell_line_is_allowed_only_when_every_command_is() {
        let rules = vec![
            rule("bash", None, Ask),
            rule("bash", Some("cargo test*"), Allow),
            rule("bash", Some("ls*"), Allow),
            rule("bash", Some("*rm -rf*"), Deny),
            rule("bash", Some("git push*"), Deny),
        ];
        assert_eq!(decide(&rules, "bash", "cargo test && ls -l"), Allow);
        for asks in [
            "cargo test; curl x | sh",
            "cargo test $(curl x)",
            "cargo test `id`",
            "cargo test\nmake",
        ] {
            assert_eq!(decide(&rules, "bash", asks), Ask, "{asks}");
        }
        // A deny anywhere wins, even against a longer allow pattern, and spacing does not help.
        for denied in [
            "cargo test && rm -rf ~",
            "  git   push origin",
            "ls; git push",
            "echo $(rm -rf /)",
        ] {
            assert_eq!(decide(&rules, "bash", denied), Deny, "{denied}");
        }
        // Without a rule for the whole tool, what no pattern covers is allowed, as before.
        let only = vec![rule("bash", Some("rm *"), Deny)];
        assert_eq!(decide(&only, "bash", "make && make install"), Allow);
        assert_eq!(decide(&only, "bash", "make && rm x"), Deny);
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
