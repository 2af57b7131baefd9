//! The permission engine, in one place: how a shell line is cut into commands
//! ([`shell::command_parts`]), what a permission pattern matches ([`pattern`]), which writes need
//! a decision whatever the rules say ([`protect`]), and the decision for a tool call against a
//! role's rules ([`decide`]).
//!
//! Pure: no I/O, no clock, no other agent-team crate. The caller resolves what needs the file
//! system (the worker resolves symlinks of a write's target) and hands the findings in.
//! docs/PERMISSIONS.md is its prose twin.

pub mod pattern;
pub mod policy;
pub mod protect;
pub mod shell;

pub use pattern::{command_allows, glob, pattern_allows};
pub use policy::{Action, Decision, Rule, decide, decide_rules, guard, rule_allows};
pub use protect::{Finding, protected_write};
pub use shell::{Hazard, Word, WordKind, command_parts, hazard, squeeze, write_targets};

/// The tool whose input is a shell command, matched command by command.
pub const SHELL_TOOL: &str = "bash";

/// Tools that are asked, not allowed, when no rule names them: they reach outside the machine
/// (`web_fetch`, `web_search`). A `*` rule does not open them (a `*` deny still denies); a rule
/// naming the tool, whole or with a pattern, does.
pub const ASK_BY_DEFAULT: &[&str] = &["web_fetch", "web_search"];

/// The tools whose input is the path of the file they write.
pub const WRITE_TOOLS: &[&str] = &["write_file", "edit_file"];

/// Whether an agent whose plan is required and not yet approved (`plan_required`) may call
/// `tool`: every tool but those that change the workspace ([`WRITE_TOOLS`] and the shell). The
/// worker offers and runs only these while it plans; the daemon refuses a permission request
/// for any other.
pub fn allowed_while_planning(tool: &str) -> bool {
    tool != SHELL_TOOL && !WRITE_TOOLS.contains(&tool)
}

#[cfg(test)]
mod plan_tests {
    #[test]
    fn planning_agents_cannot_write_or_run_the_shell() {
        for t in ["write_file", "edit_file", "bash"] {
            assert!(!super::allowed_while_planning(t), "{t}");
        }
        for t in [
            "read_file",
            "grep",
            "glob",
            "list_files",
            "submit_plan",
            "send_message",
        ] {
            assert!(super::allowed_while_planning(t), "{t}");
        }
    }
}
