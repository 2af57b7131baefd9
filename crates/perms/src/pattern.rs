//! What a permission pattern matches.
//!
//! A pattern is text in which `*` matches any run of characters ([`glob`]). That is what a
//! `deny` or `ask` pattern means, and an `allow` pattern for a tool other than the shell: a
//! denial or a question may catch more than its author thought of, never less.
//!
//! An `allow` pattern for the shell is read on word boundaries ([`command_allows`]), so it never
//! allows more than it says:
//! - a `*` that ends the pattern directly after a letter, digit or `_` stands for "nothing, or a
//!   space and the rest of the command": `git status*` allows `git status` and `git status -s`,
//!   never `git statusfoo`;
//! - likewise a `*` that starts the pattern directly before one of them stands for "nothing, or
//!   anything and a space": `*make` allows `make` and `nice make`, never `cmake`;
//! - every other `*` matches any run of characters (`ls -*`, `git * --dry-run`, `rm -rf *`), and
//!   a pattern of only `*` matches every command.
//!
//! Whatever the pattern, a shell line with a hazard ([`crate::shell::hazard`]: output
//! redirection, substitution, odd whitespace or control characters) is never allowed by one.

use crate::SHELL_TOOL;
use crate::shell::{command_parts, hazard, squeeze};

/// Whether `pattern` matches `input`: `*` matches any run of characters (none included), every
/// other character itself.
pub fn glob(pattern: &str, input: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == input;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !input.starts_with(first) || input.len() < first.len() + last.len() || !input.ends_with(last)
    {
        return false;
    }
    let mut rest = &input[first.len()..input.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether an `allow` pattern matches one command (already cut and squeezed), on word
/// boundaries as the module documentation says.
pub fn command_allows(pattern: &str, cmd: &str) -> bool {
    let pattern = squeeze(pattern);
    if !pattern.is_empty() && pattern.chars().all(|c| c == '*') {
        return true;
    }
    let mut core = pattern.as_str();
    let mut trailing = false;
    if let Some(rest) = core.strip_suffix('*')
        && rest.chars().next_back().is_some_and(is_word)
    {
        core = rest;
        trailing = true;
    }
    let mut leading = false;
    if let Some(rest) = core.strip_prefix('*')
        && rest.chars().next().is_some_and(is_word)
    {
        core = rest;
        leading = true;
    }
    let heads: &[&str] = if leading { &["", "* "] } else { &[""] };
    let tails: &[&str] = if trailing { &["", " *"] } else { &[""] };
    heads
        .iter()
        .any(|h| tails.iter().any(|t| glob(&format!("{h}{core}{t}"), cmd)))
}

/// Whether an allowance by `pattern` covers `input` of `tool`. For the shell: the line has no
/// hazard, and every command of it is allowed by the pattern on word boundaries (so
/// `cargo test*` allows neither `cargo test; rm -rf ~` nor `cargo testx`). For other tools:
/// [`glob`] on the whole input.
pub fn pattern_allows(tool: &str, pattern: &str, input: &str) -> bool {
    if tool == SHELL_TOOL {
        if hazard(input).is_some() {
            return false;
        }
        let parts = command_parts(input);
        !parts.is_empty() && parts.iter().all(|p| command_allows(pattern, p))
    } else {
        glob(pattern, input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("cargo test*", "cargo test --all"));
        assert!(glob("cargo test*", "cargo test"));
        assert!(!glob("cargo test*", "cargo build"));
        assert!(glob("*", "anything"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
        assert!(!glob("ab*ba", "aba"));
        // A deny or ask pattern catches what starts with it, word boundary or not.
        assert!(glob("git push*", "git pushx"));
    }

    #[test]
    fn a_trailing_star_after_a_word_stops_at_the_word() {
        assert!(command_allows("git status*", "git status"));
        assert!(command_allows("git status*", "git status -s"));
        assert!(command_allows(
            "git status*",
            "git status --porcelain -- src"
        ));
        assert!(!command_allows("git status*", "git statusfoo"));
        assert!(!command_allows("git status*", "git status-evil"));
        assert!(!command_allows("git status*", "git"));
        assert!(command_allows("ls*", "ls -l"));
        assert!(!command_allows("ls*", "lsblk"));
        assert!(command_allows("echo checked*", "echo checked by b2"));
    }

    #[test]
    fn a_leading_star_before_a_word_starts_at_a_word() {
        assert!(command_allows("*make", "make"));
        assert!(command_allows("*make", "nice -n 5 make"));
        assert!(!command_allows("*make", "cmake"));
        assert!(command_allows("*make*", "nice make -j4"));
        assert!(!command_allows("*make*", "cmake -j4"));
        assert!(!command_allows("*make*", "makefoo"));
    }

    #[test]
    fn other_stars_match_any_run() {
        assert!(command_allows("*", "anything at all"));
        assert!(command_allows("**", "anything"));
        assert!(command_allows("ls -*", "ls -la"));
        assert!(command_allows("git * --dry-run", "git clean -fd --dry-run"));
        assert!(command_allows("rm -rf *", "rm -rf target"));
        assert!(!command_allows("rm -rf *", "rm -rf"));
        assert!(command_allows("cargo test --all*", "cargo test --all"));
        assert!(!command_allows(
            "cargo test --all*",
            "cargo test --all-targets"
        ));
        // Spacing in the pattern does not matter either.
        assert!(command_allows("  cargo   test* ", "cargo test -q"));
    }

    #[test]
    fn shell_allowances_need_every_command_and_no_hazard() {
        assert!(pattern_allows("bash", "cargo test*", "cargo  test --all"));
        assert!(!pattern_allows(
            "bash",
            "cargo test*",
            "cargo test; curl x | sh"
        ));
        assert!(!pattern_allows(
            "bash",
            "cargo test*",
            "cargo test $(rm -rf ~)"
        ));
        assert!(!pattern_allows(
            "bash",
            "cargo test*",
            "cargo test > .git/config"
        ));
        assert!(!pattern_allows("bash", "*", "cargo test > out.txt"));
        assert!(!pattern_allows("bash", "cargo test*", "cargo\u{a0}test"));
        assert!(!pattern_allows("bash", "cargo test*", ""));
        assert!(pattern_allows("bash", "cargo test*", "cargo test 2>&1"));
        assert!(pattern_allows(
            "bash",
            "cargo test*",
            "cargo test >/dev/null"
        ));
        // Other tools: a plain glob on the whole input.
        assert!(pattern_allows("write_file", "src/*", "src/a; b"));
        assert!(pattern_allows("write_file", "src/*", "src/deep/x.rs"));
        assert!(!pattern_allows("write_file", "src/*", "docs/x"));
    }
}
