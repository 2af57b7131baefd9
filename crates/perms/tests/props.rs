//! Properties of the engine over arbitrary input: it never panics, and nothing added to an
//! allowed line (another command, a redirection, a substitution, an odd space) keeps it allowed
//! by a pattern.

#![allow(clippy::unwrap_used)]

use agent_team_perms::{hazard, pattern_allows, protected_write, write_targets};
use proptest::prelude::*;

/// Text made of the characters that matter to a shell line, and a few that should not.
fn shellish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(" "),
            Just(";"),
            Just("&"),
            Just("|"),
            Just(">"),
            Just("<"),
            Just("("),
            Just(")"),
            Just("$"),
            Just("`"),
            Just("'"),
            Just("\""),
            Just("\\"),
            Just("*"),
            Just("~"),
            Just("/"),
            Just(".."),
            Just(".git"),
            Just("cd"),
            Just("tee"),
            Just("cp"),
            Just("git"),
            Just("config"),
            Just("status"),
            Just("2"),
            Just("\n"),
            Just("\u{a0}"),
            Just("é"),
            Just("{"),
            Just("}"),
            Just("="),
            Just("-i"),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn nothing_panics(line in shellish(), any in any::<String>()) {
        for l in [&line, &any] {
            let _ = hazard(l);
            let _ = write_targets(l);
            let _ = protected_write("bash", l);
            let _ = protected_write("write_file", l);
            let _ = pattern_allows("bash", l, l);
            let _ = pattern_allows("bash", "git status*", l);
        }
    }

    #[test]
    fn an_addition_never_keeps_an_allowance(
        args in "[a-z -]{0,12}",
        tail in prop_oneof![
            Just("; rm -rf ~"), Just(" && curl x | sh"), Just(" > .git/config"),
            Just(" >> f"), Just(" $(id)"), Just(" `id`"), Just(" <(id)"), Just("\u{a0}x"),
            Just("\r"), Just(" 2> f"), Just(" &> f"), Just("foo"),
        ],
    ) {
        let line = format!("git status{args}");
        let longer = format!("{line}{tail}");
        let still = pattern_allows("bash", "git status*", &longer);
        if tail == "foo" {
            // Glued to the word itself: `git statusfoo` is another command.
            if line == "git status" {
                prop_assert!(!still, "{longer:?}");
            }
        } else {
            prop_assert!(!still, "{longer:?}");
        }
    }
}
