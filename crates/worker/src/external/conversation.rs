//! Which conversation a CLI launch holds: a new one under an id chosen here (recorded in the
//! agent's CLI home), or the recorded one, resumed after a restart when the CLI's own
//! transcript of it exists.

use super::CliAdapter;
use std::path::{Path, PathBuf};

/// Which conversation a CLI launch holds: a new one under an id chosen
/// here (recorded in the agent's CLI home), or the recorded one, resumed after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// Start the conversation with this id (`--session-id`).
    New(String),
    /// Resume this conversation (`--resume`): the CLI's own context survives the restart.
    Resume(String),
}

/// The file in the agent's CLI home that records its conversation's id.
pub const SESSION_FILE: &str = "session-id";

/// The instruction a resumed CLI is given instead of its first one.
pub const RESUMED_INPUT: &str = "You were restarted. Carry on where you left off: look at the \
     board (list_tasks) and your messages (wait_for_messages) on the `team` MCP server.";

/// The session a launch of `provider` in `home` should hold: the recorded conversation when
/// the CLI's own transcript of it exists (so a resume cannot fail on a conversation the CLI
/// never wrote), else a new one with a fresh id. `None` for a CLI without session ids (see
/// [`CliAdapter::transcripts_dir`]).
pub fn session_for(cli: &dyn CliAdapter, home: &Path) -> Option<Conversation> {
    let config_dir = home.join(cli.transcripts_dir()?);
    let recorded = cli.recorded_session(home).filter(|s| cli.is_session_id(s));
    if let Some(id) = recorded
        && cli.has_transcript(&config_dir, &id)
    {
        return Some(Conversation::Resume(id));
    }
    Some(Conversation::New(new_session_id()))
}

/// A session id as we write them: a UUID (only hex digits and dashes reach a command line).
pub(super) fn is_session_id(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Whether a file whose name `is_it` accepts is under `dir`, at most `depth` levels down.
pub(super) fn transcript_exists(dir: &Path, is_it: &dyn Fn(&str) -> bool, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => depth > 0 && transcript_exists(&path, is_it, depth - 1),
            Ok(_) => e.file_name().to_str().is_some_and(is_it),
            Err(_) => false,
        }
    })
}

/// A random (version 4) UUID.
fn new_session_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the time and pid still make the id unique to this launch.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The arguments that start or resume `session` (`--session-id` / `--resume`, as Claude Code
/// and Qwen Code take them), and the file recording a new one's id.
pub fn session_args(
    session: Option<&Conversation>,
    home: &Path,
) -> (Vec<String>, Option<(PathBuf, String)>) {
    match session {
        Some(Conversation::New(id)) => (
            vec!["--session-id".into(), id.clone()],
            Some((home.join(SESSION_FILE), id.clone())),
        ),
        Some(Conversation::Resume(id)) => (vec!["--resume".into(), id.clone()], None),
        None => (Vec::new(), None),
    }
}
