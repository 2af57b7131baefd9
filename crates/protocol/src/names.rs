//! Validation of team and agent names (`^[a-z][a-z0-9-]{0,31}$`, SPEC §2).

/// The name reserved for the team's leader.
pub const LEADER: &str = "leader";

/// The pseudo-sender stamped on messages the operator sends from the CLI.
pub const OPERATOR: &str = "operator";

/// Whether `name` is a valid team or agent name.
pub fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Checks a name and says why it is refused.
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    if is_valid(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use 1-32 characters, a lower-case letter first, then \
             lower-case letters, digits or '-'"
        ))
    }
}

/// The tool whose input is a shell command, matched piece by piece (see [`command_parts`]).
pub const SHELL_TOOL: &str = "bash";

/// The commands inside a shell command line, as permission patterns see them. The line is cut at
/// the shell's separators and substitutions (`;` `&` `|` newline `(` `)` `` ` ``, so `&&`, `||`,
/// `$(…)` and `<(…)` too), and each piece is trimmed with runs of whitespace made one space;
/// empty pieces are dropped. Cutting inside quotes too only makes an allowance harder to reach
/// and a denial easier, never the reverse.
pub fn command_parts(cmd: &str) -> Vec<String> {
    cmd.replace("$(", "(")
        .split([';', '&', '|', '\n', '\r', '(', ')', '`'])
        .map(squeeze)
        .filter(|p| !p.is_empty())
        .collect()
}

/// `s` trimmed, with every run of whitespace made one space.
pub fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether an allowance by `pattern` covers `input` of `tool`: for the shell, every command of
/// the line must match (so `cargo test*` does not allow `cargo test; rm -rf ~`); for other
/// tools, the whole input.
pub fn pattern_allows(tool: &str, pattern: &str, input: &str) -> bool {
    if tool == SHELL_TOOL {
        let parts = command_parts(input);
        !parts.is_empty() && parts.iter().all(|p| pattern_matches(pattern, p))
    } else {
        pattern_matches(pattern, input)
    }
}

/// Whether a permission pattern matches an input: `*` matches any run of characters, every
/// other character itself (`cargo test*`, `*.rs`, `rm -rf *`). Policies and team rules share it.
pub fn pattern_matches(pattern: &str, input: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("cargo test*", "cargo test --all"));
        assert!(pattern_matches("cargo test*", "cargo test"));
        assert!(!pattern_matches("cargo test*", "cargo build"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXcYYb"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exact2"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }

    #[test]
    fn shell_lines_are_cut_into_commands() {
        assert_eq!(
            command_parts("cargo test && rm -rf ~; echo $(id) | tee x\n  ls   -l "),
            vec!["cargo test", "rm -rf ~", "echo", "id", "tee x", "ls -l"]
        );
        assert_eq!(command_parts("a `b` c"), vec!["a", "b", "c"]);
        assert!(command_parts(" ; && ").is_empty());
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
        assert!(!pattern_allows("bash", "cargo test*", ""));
        assert!(pattern_allows("write_file", "src/*", "src/a; b"));
    }

    #[test]
    fn names() {
        for ok in [
            "a",
            "builder-1",
            "leader",
            "x23456789012345678901234567890ab",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "A",
            "a/b",
            "..",
            "a.b",
            "a_b",
            "x234567890123456789012345678901ab",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
