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
