//! Protected paths: writes that need a decision whatever the rules say, because writing there
//! changes what later, allowed commands do (`[core] fsmonitor` in `.git/config` runs a command
//! at the next `git status`) or what the team itself is (its file, its roles, its hooks).
//!
//! Protected, at any depth below the agent's working directory: the directories `.git` (a
//! `.git` file too: it points git elsewhere), `.agent-team` and `.claude` and everything in
//! them, and every file named `agent-team.toml`; git's own configuration in the home directory
//! (`~/.gitconfig`, `~/.config/git/`). The caller adds the paths only it can know (the file the
//! team was started from) and resolves symlinks; this module judges a path by its spelling.

use crate::shell::{Word, WordKind, write_targets};
use crate::{SHELL_TOOL, WRITE_TOOLS, pattern::glob};
use std::fmt;

/// Directory names protected wherever they appear in a path, and why.
pub const PROTECTED_DIRS: &[(&str, &str)] = &[
    (
        ".git",
        "git runs commands named in its configuration, hooks and aliases",
    ),
    (
        ".agent-team",
        "it holds the team's own files (roles, hooks, worktrees)",
    ),
    (
        ".claude",
        "it holds role files, settings and hooks of agent CLIs",
    ),
];

/// The team file's name, protected in every directory.
pub const TEAM_FILE: &str = "agent-team.toml";

/// A write that needs a decision, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The path as the call or the line names it.
    pub path: String,
    /// Why writing it needs a decision.
    pub why: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writes the protected path {:?}: {}", self.path, self.why)
    }
}

fn finding(path: &str, why: impl Into<String>) -> Option<Finding> {
    Some(Finding {
        path: path.to_string(),
        why: why.into(),
    })
}

/// `path`'s components with `.` dropped and `..` taking the previous one away (a leading `..`
/// stays: the path is above where it started).
pub fn components(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            ".." if path.starts_with('/') => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether a file-name pattern component could match `name` (bash rules: `*` `?` `[…]`, a
/// pattern that does not start with `.` never matches a dot file). Errs towards yes.
fn could_match(component: &str, name: &str) -> bool {
    if name.starts_with('.') && !component.starts_with('.') {
        return false;
    }
    let mut loose = String::new();
    let mut in_class = false;
    for c in component.chars() {
        match c {
            '[' if !in_class => {
                in_class = true;
                loose.push('*');
            }
            ']' if in_class => in_class = false,
            _ if in_class => {}
            '?' => loose.push('*'),
            c => loose.push(c),
        }
    }
    glob(&loose, name)
}

/// Why writing `path` needs a decision, judged by its spelling. `path` is relative to the
/// agent's working directory (`..` resolved here, lexically) or absolute, or starts with `~/`;
/// `kind` says how much of it the shell leaves as written.
pub fn check_path(path: &str, kind: WordKind) -> Option<Finding> {
    if kind == WordKind::Unknown {
        return finding(
            path,
            "the shell decides only when it runs which file this is, so it may be a protected one",
        );
    }
    let comps = components(path);
    let is_pattern = |c: &str| kind == WordKind::Glob && c.contains(['*', '?', '[']);
    let last = comps.len().saturating_sub(1);
    for (i, c) in comps.iter().enumerate() {
        for (name, why) in PROTECTED_DIRS {
            if *c == *name || (is_pattern(c) && could_match(c, name)) {
                return finding(path, format!("it is inside {name}: {why}"));
            }
        }
        if i == last && (*c == TEAM_FILE || (is_pattern(c) && could_match(c, TEAM_FILE))) {
            return finding(
                path,
                "it is a team file: it says which roles, permissions and commands the team has",
            );
        }
    }
    let home_git = match comps.as_slice() {
        ["~", ".gitconfig", ..] => true,
        ["~", ".config", "git", ..] => true,
        ["~", c, ..] if is_pattern(c) => could_match(c, ".gitconfig") || could_match(c, ".config"),
        _ => false,
    };
    if home_git {
        return finding(
            path,
            "it is git's configuration for every repository: git runs commands named there",
        );
    }
    None
}

/// Whether `word`, a write target of a shell line, is protected (see [`check_path`]).
pub fn check_word(word: &Word) -> Option<Finding> {
    check_path(&word.text, word.kind)
}

/// The first protected write of a call, judged by spelling alone: the path of
/// `write_file`/`edit_file` (the worker hands in the path relative to the workspace, symlinks
/// resolved), or a write target of a shell line ([`write_targets`]) seen from the workspace.
/// Other tools write nothing here.
pub fn protected_write(tool: &str, input: &str) -> Option<Finding> {
    if WRITE_TOOLS.contains(&tool) {
        check_path(input, WordKind::Literal)
    } else if tool == SHELL_TOOL {
        write_targets(input).iter().find_map(check_word)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(path: &str) -> bool {
        check_path(path, WordKind::Literal).is_some()
    }

    #[test]
    fn protected_places() {
        for p in [
            ".git/config",
            ".git",
            "./.git/hooks/pre-commit",
            "sub/../.git/config",
            "a/b/.git/config",
            "vendor/lib/.git",
            ".agent-team/agents/builder.md",
            ".claude/settings.json",
            "agent-team.toml",
            "sub/agent-team.toml",
            "/home/u/proj/.git/config",
            "../.git/config",
            "~/.gitconfig",
            "~/.config/git/config",
        ] {
            assert!(protected(p), "{p}");
        }
        for p in [
            "src/main.rs",
            ".github/workflows/ci.yml",
            ".gitignore",
            ".gitmodules-notes",
            "git/config",
            "agent-team.toml.bak",
            "docs/agent-team.md",
            ".git/../src/x",
            "~/.bashrc",
            "/dev/null",
        ] {
            assert!(!protected(p), "{p}");
        }
    }

    #[test]
    fn patterns_and_unknowns() {
        assert!(check_path("$F", WordKind::Unknown).is_some());
        assert!(check_path(".g*/config", WordKind::Glob).is_some());
        assert!(check_path(".[g]it/config", WordKind::Glob).is_some());
        assert!(check_path("*.toml", WordKind::Glob).is_some());
        assert!(check_path("src/*.rs", WordKind::Glob).is_none());
        // `*` does not match a dot file.
        assert!(check_path("*/config", WordKind::Glob).is_none());
        // A quoted star is a plain character.
        assert!(check_path("a*b", WordKind::Literal).is_none());
    }

    #[test]
    fn calls() {
        assert!(protected_write("write_file", ".git/config").is_some());
        assert!(protected_write("edit_file", ".agent-team/agents/x.md").is_some());
        assert!(protected_write("read_file", ".git/config").is_none());
        assert!(protected_write("write_file", "src/lib.rs").is_none());
        assert!(protected_write("bash", "echo '[core]' >> .git/config").is_some());
        assert!(protected_write("bash", "cat x | tee .git/hooks/pre-commit").is_some());
        assert!(protected_write("bash", "cp evil sub/../.git/hooks/post-checkout").is_some());
        assert!(protected_write("bash", "git config core.fsmonitor ./x.sh").is_some());
        assert!(protected_write("bash", "git config --global alias.st '!sh'").is_some());
        assert!(protected_write("bash", "cd .git && echo x > config").is_some());
        assert!(protected_write("bash", "echo x > $TARGET").is_some());
        assert!(protected_write("bash", "cargo test > out.txt 2>&1").is_none());
        assert!(protected_write("bash", "git status -s").is_none());
        assert!(protected_write("bash", "cat .git/config").is_none());
        let f = protected_write("write_file", ".git/config").unwrap();
        assert!(f.to_string().contains(".git/config") && f.to_string().contains("git runs"));
    }
}
