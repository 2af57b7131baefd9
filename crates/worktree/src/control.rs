//! The team's control plane in a teammate's branch: files that say what the team is or run
//! code later as the operator (the team file, hook and notify scripts, agent CLIs' settings,
//! CI workflows, git's own attribute and module files, tool configs that run programs). A
//! merge never lands a change to one by itself: `finish` refuses it until the operator accepts
//! (`--accept-control-changes`) after seeing them.

/// Directories that are control plane wherever they appear in a path (the sandbox's
/// `WORKSPACE_PROTECTED` directories; a test in the daemon keeps the two lists together).
pub const CONTROL_DIRS: &[&str] = &[
    ".agent-team",
    ".claude",
    ".codex",
    ".gemini",
    ".qwen",
    ".nyzhi",
    ".copilot",
    ".opencode",
    ".cargo",
    ".vscode",
    ".idea",
];

/// File names that are control plane in any directory (and every name starting with `.git`
/// but `.github`: `.gitattributes` names the filters git runs, `.gitmodules` what it fetches,
/// `.gitlab-ci.yml` what CI runs).
pub const CONTROL_FILES: &[&str] = &["agent-team.toml", ".mcp.json", ".envrc", ".npmrc"];

/// Path prefixes that are control plane from the repository's top.
pub const CONTROL_PREFIXES: &[&str] = &[".github/workflows/", ".config/agent-team/"];

/// Whether the repository path `path` (`/`-separated, relative to its top) is control plane,
/// or is under one of `extra` (the team's own, relative to the top: its team file, the scripts
/// its hooks and `[notify]` run, `[finish] review`'s paths), each the path itself or a
/// directory above it (`deploy/` and `deploy` both take in `deploy/x`, not `deployed`).
pub fn is_control(path: &str, extra: &[String]) -> bool {
    if extra.iter().any(|e| under(path, e)) {
        return true;
    }
    if CONTROL_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return true;
    }
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some(last) = comps.last() else {
        return false;
    };
    // git's own (`.git`, `.gitattributes`, `.gitmodules`, `.gitlab-ci.yml`), not `.github`.
    let gits = |c: &str| c.starts_with(".git") && !c.starts_with(".github");
    comps[..comps.len() - 1]
        .iter()
        .any(|c| CONTROL_DIRS.contains(c) || gits(c))
        || CONTROL_DIRS.contains(last)
        || CONTROL_FILES.contains(last)
        || gits(last)
}

/// Whether `path` is `prefix` or inside it, at a `/` (a trailing `/` on `prefix` optional).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    !prefix.is_empty()
        && path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The paths of `changed` that are control plane (see [`is_control`]), in order.
pub fn control_changes<'a>(
    changed: impl IntoIterator<Item = &'a str>,
    extra: &[String],
) -> Vec<String> {
    changed
        .into_iter()
        .filter(|p| is_control(p, extra))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_team_file_agent_settings_workflows_and_git_files_are_control_plane() {
        let extra = vec!["scripts/on-done.sh".to_string()];
        for p in [
            "agent-team.toml",
            "sub/agent-team.toml",
            ".agent-team/agents/x.md",
            ".claude/settings.json",
            "pkg/.claude/settings.local.json",
            ".codex/config.toml",
            ".gemini/settings.json",
            ".qwen/settings.json",
            ".mcp.json",
            ".envrc",
            ".github/workflows/ci.yml",
            ".gitattributes",
            ".gitmodules",
            "sub/.gitignore",
            ".cargo/config.toml",
            ".npmrc",
            "scripts/on-done.sh",
        ] {
            assert!(is_control(p, &extra), "{p}");
        }
        for p in [
            "README.md",
            "src/main.rs",
            ".github/ISSUE_TEMPLATE.md",
            "scripts/build.sh",
            "claude.md",
            "docs/agent-team.toml.md",
        ] {
            assert!(!is_control(p, &extra), "{p}");
        }
        assert_eq!(
            control_changes(["a.txt", "agent-team.toml", "b.txt"], &[]),
            ["agent-team.toml"]
        );
    }

    #[test]
    fn review_paths_take_in_a_file_or_everything_under_a_directory() {
        let review = vec![
            "deploy/".to_string(),
            "Makefile".to_string(),
            "ops".to_string(),
        ];
        for p in ["deploy/prod.yml", "deploy/a/b", "Makefile", "ops/run.sh"] {
            assert!(is_control(p, &review), "{p}");
        }
        for p in ["deployed.txt", "Makefile.am", "src/Makefile", "opsx/y"] {
            assert!(!is_control(p, &review), "{p}");
        }
        assert!(!is_control("x", &[String::new(), "/".to_string()]));
    }
}
