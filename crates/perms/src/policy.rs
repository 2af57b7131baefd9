//! The decision for one tool call against a role's rules, and whether a team rule (an "allow
//! always" decision) covers a request.

use crate::pattern::{command_allows, glob, pattern_allows};
use crate::protect::{Finding, protected_write};
use crate::shell::{command_parts, hazard, squeeze};
use crate::{ASK_BY_DEFAULT, SHELL_TOOL};

/// What to do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run it without asking.
    Allow,
    /// Ask the approver first.
    Ask,
    /// Refuse it.
    Deny,
}

/// One rule of a role's policy: `tool = action` or `tool(pattern) = action`; the tool `*`
/// stands for every tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    /// The tool it is for, or `*`.
    pub tool: &'a str,
    /// The pattern it matches, if any (see [`crate::pattern`]).
    pub pattern: Option<&'a str>,
    /// What it says.
    pub action: Action,
}

/// A decision, and when a protected write turned an allowance into a question, which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The protected write that needs the decision, when that is why it is asked.
    pub protected: Option<Finding>,
}

/// The action the rules alone give `tool` with `input`.
///
/// 1. A `deny` pattern that matches the input, or any command of a shell line, denies.
/// 2. Otherwise each command of a shell line (the whole input for other tools) takes its
///    longest matching `ask`/`allow` pattern: any `ask` asks; all `allow` allows. An `allow`
///    pattern on the shell matches on word boundaries and never matches a line with a hazard
///    (redirection, substitution, odd whitespace or control characters; see
///    [`crate::pattern`]), so `bash(cargo test*) = "allow"` allows neither
///    `cargo test; rm -rf ~` nor `cargo test > .git/config`.
/// 3. Otherwise the rule for the whole tool decides, then a `*` rule, then `allow`; except
///    for the tools in [`ASK_BY_DEFAULT`] (`web_fetch`, `web_search`), which a `*` rule can deny but not
///    allow: without a rule naming them they are asked.
///
/// Shell lines and shell patterns are matched with whitespace runs made one space and trimmed,
/// so spacing does not slip past a pattern.
pub fn decide_rules(rules: &[Rule<'_>], tool: &str, input: &str) -> Action {
    let applies = |r: &&Rule<'_>| r.tool == tool || r.tool == "*";
    let shell = tool == SHELL_TOOL;
    let (whole, parts) = if shell {
        (squeeze(input), command_parts(input))
    } else {
        (input.to_string(), vec![input.to_string()])
    };
    let patterned: Vec<(String, Action)> = rules
        .iter()
        .filter(applies)
        .filter_map(|r| {
            r.pattern
                .map(|p| (if shell { squeeze(p) } else { p.to_string() }, r.action))
        })
        .collect();
    let denied = patterned
        .iter()
        .any(|(p, a)| *a == Action::Deny && (glob(p, &whole) || parts.iter().any(|x| glob(p, x))));
    if denied {
        return Action::Deny;
    }
    let allowable = !shell || hazard(input).is_none();
    let matches = |p: &str, a: Action, part: &str| match a {
        Action::Deny => false,
        Action::Ask => glob(p, part),
        Action::Allow if shell => allowable && command_allows(p, part),
        Action::Allow => glob(p, part),
    };
    let mut all_allowed = !parts.is_empty();
    for part in &parts {
        let best = patterned
            .iter()
            .filter(|(p, a)| matches(p, *a, part))
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((_, Action::Ask)) => return Action::Ask,
            Some(_) => {}
            None => all_allowed = false,
        }
    }
    if all_allowed {
        return Action::Allow;
    }
    let whole_tool = |t: &str| {
        rules
            .iter()
            .find(|r| r.tool == t && r.pattern.is_none())
            .map(|r| r.action)
    };
    match (whole_tool(tool), whole_tool("*")) {
        (Some(a), _) => a,
        (None, Some(Action::Deny)) => Action::Deny,
        (None, _) if ASK_BY_DEFAULT.contains(&tool) => Action::Ask,
        (None, star) => star.unwrap_or(Action::Allow),
    }
}

/// `action` with a protected write taken into account: an allowance of a call that writes a
/// protected path becomes a question; a denial or a question stays.
pub fn guard(action: Action, protected: Option<Finding>) -> Decision {
    match (action, protected) {
        (Action::Allow, Some(f)) => Decision {
            action: Action::Ask,
            protected: Some(f),
        },
        (action, _) => Decision {
            action,
            protected: None,
        },
    }
}

/// The decision for `tool` with `input`: the rules ([`decide_rules`]), then protected paths
/// judged by spelling ([`protected_write`], relative to the workspace). A caller that can
/// resolve symlinks uses [`decide_rules`] and [`guard`] with its own finding instead.
pub fn decide(rules: &[Rule<'_>], tool: &str, input: &str) -> Decision {
    let action = decide_rules(rules, tool, input);
    if action == Action::Allow {
        guard(action, protected_write(tool, input))
    } else {
        guard(action, None)
    }
}

/// Whether a team rule for `tool` allows `input`: an exact rule allows exactly its input (the
/// text a person approved); a pattern rule allows what [`pattern_allows`] says, except a write
/// to a protected path, which a pattern never allows.
pub fn rule_allows(rule_input: &str, is_pattern: bool, tool: &str, input: &str) -> bool {
    if is_pattern {
        pattern_allows(tool, rule_input, input) && protected_write(tool, input).is_none()
    } else {
        rule_input == input
    }
}

#[cfg(test)]
mod tests {
    use super::Action::*;
    use super::*;

    fn rule<'a>(tool: &'a str, pattern: Option<&'a str>, action: Action) -> Rule<'a> {
        Rule {
            tool,
            pattern,
            action,
        }
    }

    /// `web_fetch` is asked unless a rule names it; `*` may deny it but not allow it.
    #[test]
    fn web_fetch_is_asked_unless_a_rule_names_it() {
        let url = "http://example.com/";
        assert_eq!(decide_rules(&[], "web_fetch", url), Ask);
        assert_eq!(decide_rules(&[], "read_file", "a"), Allow);
        assert_eq!(
            decide_rules(&[rule("*", None, Allow)], "web_fetch", url),
            Ask
        );
        assert_eq!(
            decide_rules(&[rule("*", None, Deny)], "web_fetch", url),
            Deny
        );
        assert_eq!(
            decide_rules(&[rule("web_fetch", None, Allow)], "web_fetch", url),
            Allow
        );
        assert_eq!(
            decide_rules(
                &[rule("web_fetch", Some("http://example.com/*"), Allow)],
                "web_fetch",
                url
            ),
            Allow
        );
        assert_eq!(
            decide_rules(
                &[rule("web_fetch", Some("https://docs.rs/*"), Allow)],
                "web_fetch",
                url
            ),
            Ask
        );
    }

    /// `web_search` is judged exactly like `web_fetch`: asked unless a rule names it, on the
    /// query as its input.
    #[test]
    fn web_search_is_asked_unless_a_rule_names_it() {
        let q = "rust async traits";
        assert_eq!(decide_rules(&[], "web_search", q), Ask);
        assert_eq!(
            decide_rules(&[rule("*", None, Allow)], "web_search", q),
            Ask
        );
        assert_eq!(
            decide_rules(&[rule("web_fetch", None, Allow)], "web_search", q),
            Ask
        );
        assert_eq!(
            decide_rules(&[rule("*", None, Deny)], "web_search", q),
            Deny
        );
        assert_eq!(
            decide_rules(&[rule("web_search", None, Allow)], "web_search", q),
            Allow
        );
        assert_eq!(
            decide_rules(
                &[rule("web_search", Some("rust *"), Allow)],
                "web_search",
                q
            ),
            Allow
        );
        assert_eq!(
            decide_rules(&[rule("web_search", None, Deny)], "web_search", q),
            Deny
        );
    }

    fn act(rules: &[Rule<'_>], tool: &str, input: &str) -> Action {
        decide(rules, tool, input).action
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = vec![
            rule("bash", None, Ask),
            rule("bash", Some("cargo test*"), Allow),
            rule("bash", Some("rm *"), Deny),
        ];
        assert_eq!(act(&rules, "bash", "cargo test --all"), Allow);
        assert_eq!(act(&rules, "bash", "rm -rf /"), Deny);
        assert_eq!(act(&rules, "bash", "make"), Ask);
        assert_eq!(act(&rules, "write_file", "x"), Allow);
        assert_eq!(act(&[rule("*", None, Ask)], "write_file", "x"), Ask);
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
        assert_eq!(act(&rules, "bash", "cargo test && ls -l"), Allow);
        for asks in [
            "cargo test; curl x | sh",
            "cargo test $(curl x)",
            "cargo test `id`",
            "cargo test\nmake",
        ] {
            assert_eq!(act(&rules, "bash", asks), Ask, "{asks}");
        }
        // A deny anywhere wins, even against a longer allow pattern, and spacing does not help.
        for denied in [
            "cargo test && rm -rf ~",
            "  git   push origin",
            "ls; git push",
            "echo $(rm -rf /)",
            "git pushx",
            "git\u{a0}push",
        ] {
            assert_eq!(act(&rules, "bash", denied), Deny, "{denied}");
        }
        // Without a rule for the whole tool, what no pattern covers is allowed, as before.
        let only = vec![rule("bash", Some("rm *"), Deny)];
        assert_eq!(act(&only, "bash", "make && make install"), Allow);
        assert_eq!(act(&only, "bash", "make && rm x"), Deny);
    }

    /// Issue 12, finding 2: each of these was allowed by `bash(git status*)` before.
    #[test]
    fn allow_patterns_hold_at_word_boundaries_and_hazards() {
        let rules = vec![
            rule("bash", None, Ask),
            rule("bash", Some("git status*"), Allow),
        ];
        assert_eq!(act(&rules, "bash", "git status"), Allow);
        assert_eq!(act(&rules, "bash", "git status -s"), Allow);
        assert_eq!(act(&rules, "bash", "git   status  --short"), Allow);
        for asks in [
            "git statusfoo",
            "git status > notes.txt",
            "git status >> .git/config",
            "git status >| f",
            "git status &> f",
            "git status 2> f",
            "git status $(id)",
            "git status \"$(id)\"",
            "git status `id`",
            "git status <(id)",
            "git\u{a0}status",
            "git status\u{a0}-s",
            "git status\u{200b}",
            "git status\r",
            "git status \u{1b}[8m",
        ] {
            assert_eq!(act(&rules, "bash", asks), Ask, "{asks:?}");
        }
        // Harmless redirections stay allowed.
        assert_eq!(act(&rules, "bash", "git status 2>&1"), Allow);
        assert_eq!(act(&rules, "bash", "git status >/dev/null"), Allow);
        // `*` alone still matches anything without a hazard.
        let any = vec![rule("bash", None, Ask), rule("bash", Some("*"), Allow)];
        assert_eq!(act(&any, "bash", "make -j4 && ls"), Allow);
        assert_eq!(act(&any, "bash", "make > log"), Ask);
    }

    /// Issue 12, "Protected paths": a write there needs a decision even when the tool is allowed.
    #[test]
    fn protected_writes_are_asked_even_when_allowed() {
        let rules = vec![
            rule("write_file", None, Allow),
            rule("edit_file", Some("*"), Allow),
            rule("bash", None, Allow),
        ];
        for (tool, input) in [
            ("write_file", ".git/config"),
            ("write_file", "sub/.git/hooks/pre-commit"),
            ("edit_file", ".agent-team/agents/builder.md"),
            ("write_file", "agent-team.toml"),
            ("bash", "echo '[core] fsmonitor = sh x' >> .git/config"),
            ("bash", "cp hook .git/hooks/pre-commit"),
            ("bash", "git config alias.st '!sh x'"),
            ("bash", "cd sub && mv x ../.git/config"),
        ] {
            let d = decide(&rules, tool, input);
            assert_eq!(d.action, Ask, "{tool} {input}");
            assert!(d.protected.is_some(), "{tool} {input}");
        }
        assert_eq!(act(&rules, "write_file", "src/main.rs"), Allow);
        assert_eq!(act(&rules, "bash", "cargo build > build.log"), Allow);
        // A denial stays a denial.
        let deny = vec![rule("write_file", None, Deny)];
        assert_eq!(decide(&deny, "write_file", ".git/config").action, Deny);
        assert_eq!(decide(&deny, "write_file", ".git/config").protected, None);
        // With no rule at all (allow by default) too.
        assert_eq!(act(&[], "write_file", ".git/config"), Ask);
    }

    #[test]
    fn team_rules() {
        assert!(rule_allows("ls *", false, "bash", "ls *"));
        assert!(!rule_allows("ls *", false, "bash", "ls /etc"));
        assert!(rule_allows(
            "echo checked*",
            true,
            "bash",
            "echo checked by b2"
        ));
        assert!(!rule_allows("echo checked*", true, "bash", "echo checkedx"));
        assert!(!rule_allows("echo *", true, "bash", "echo $(rm -rf ~)"));
        assert!(!rule_allows("echo *", true, "bash", "echo x > .git/config"));
        assert!(rule_allows("src/*", true, "write_file", "src/a.rs"));
        assert!(!rule_allows("*", true, "write_file", ".git/config"));
        // Exactly what a person approved stays allowed.
        assert!(rule_allows(
            ".git/config",
            false,
            "write_file",
            ".git/config"
        ));
    }
}
