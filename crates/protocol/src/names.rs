//! Validation of team and agent names (`^[a-z][a-z0-9-]{0,31}$`, SPEC §2). Team names may
//! also hold `_` after the first letter (`^[a-z][a-z0-9_-]{0,31}$`): lauren-ai names teams
//! after Python identifiers (`content_team`), and `_` is as safe as `-` in a path, a socket
//! file's name and a tmux session's name (tmux refuses only `.` and `:`).

/// The name reserved for the team's leader.
pub const LEADER: &str = "leader";

/// The pseudo-sender stamped on messages the operator sends from the CLI.
pub const OPERATOR: &str = "operator";
/// The sender of what the daemon itself says (hooks' feedback, budget warnings, plans).
pub const DAEMON: &str = "daemon";

/// The prefix that marks plain environment (`--env`, `POST /team/stream`'s `env`, NexAU's
/// `sandbox_env`) among the secrets handed to a team's start (`env:NAME`): `NAME` reaches the
/// agents' commands as a secret does, but unmasked. Never a valid variable or agent name.
pub const PLAIN_ENV_PREFIX: &str = "env:";

/// Whether `name` is a valid team or agent name.
pub fn is_valid(name: &str) -> bool {
    valid_with(name, b"-")
}

/// Whether `name` is a valid team name: as [`is_valid`], and `_` is allowed after the first
/// letter (`content_team`, as lauren-ai writes team names).
pub fn is_valid_team(name: &str) -> bool {
    valid_with(name, b"-_")
}

/// A lowercase letter, then at most 31 lowercase letters, digits and bytes of `extra`.
fn valid_with(name: &str, extra: &[u8]) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(b))
}

/// Names no agent may take: the operator's pseudo-sender, the daemon's name in the event log,
/// and words that read as "everyone" (`all`, `*`). Names starting with `_` are reserved too.
pub const RESERVED: &[&str] = &[OPERATOR, DAEMON, "all", "*"];

/// Whether `name` is reserved (see [`RESERVED`]): an agent of that name could pass for the
/// operator, the daemon or everyone in a message's `from`.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name) || name.starts_with('_')
}

/// Checks a name and says why it is refused. `kind` names what it is for in the message; for
/// `"agent"`, reserved names ([`is_reserved`]) are refused too. Team files, `spawn`,
/// `register` and the CLI all check agent names here.
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    if kind == "agent" && is_reserved(name) {
        return Err(format!(
            "the agent name {name:?} is reserved: `operator`, `daemon`, `all`, `*` and names \
             starting with `_` are never agent names; choose another"
        ));
    }
    if kind == "team" {
        return if is_valid_team(name) {
            Ok(())
        } else {
            Err(format!(
                "invalid team name {name:?}: use 1-32 characters, a lower-case letter first, \
                 then lower-case letters, digits, '-' or '_'"
            ))
        };
    }
    if is_valid(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use 1-32 characters, a lower-case letter first, then \
             lower-case letters, digits or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// lauren-ai's `@team(name="content_team")` was refused: team names take `_` (after the
    /// first letter); agent and role names still do not, and nothing that could leave a
    /// directory or break a tmux target is taken.
    #[test]
    fn team_names_take_underscores_as_lauren_writes_them() {
        validate("team", "content_team").unwrap();
        validate("team", "qa_team-2").unwrap();
        for bad in [
            "_team",
            "a.b",
            "a/b",
            "a:b",
            "..",
            "Content_team",
            "",
            "1_a",
        ] {
            assert!(validate("team", bad).is_err(), "{bad}");
        }
        assert!(!is_valid_team(&format!("a{}", "_".repeat(32))));
        let e = validate("agent", "content_writer").unwrap_err();
        assert!(e.contains("invalid agent name"), "{e}");
        assert!(validate("role", "content_writer").is_err());
        assert!(
            validate("team", "a b")
                .unwrap_err()
                .contains("digits, '-' or '_'")
        );
    }

    /// Issue 12, finding 3: these were accepted as agent names.
    #[test]
    fn reserved_agent_names_are_refused_with_the_reason() {
        for name in ["operator", "daemon", "all", "*", "_x", "_"] {
            let e = validate("agent", name).unwrap_err();
            assert!(e.contains("reserved"), "{name}: {e}");
        }
        validate("agent", "leader").unwrap();
        validate("agent", "builder-1").unwrap();
        validate("agent", "operators").unwrap();
        // Only agent names: a team or a role may be called `all`.
        validate("team", "all").unwrap();
        validate("role", "daemon").unwrap();
        assert!(
            validate("agent", "Bad")
                .unwrap_err()
                .contains("invalid agent name")
        );
    }
}
