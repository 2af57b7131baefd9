//! Where an agent's words go: its pane (stdout) and its log file, or only the log file for agents
//! that run inside the daemon. The log (`logs/NAME.log`) rotates by size as `daemon.log` does
//! (`agent_team_paths::logfile`), and a message's long body is shown as a bounded prefix.

use agent_team_paths::logfile::{LOG_KEEP, RotatingLog};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A cloneable sink for the agent's output lines.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Mutex<Sink>>,
}

struct Sink {
    stdout: bool,
    file: Option<RotatingLog>,
}

impl Output {
    /// Stdout, plus the log file when stdout is a terminal (a pane). A process whose stdout
    /// and stderr are already its log file (the process backend) writes the log itself, once,
    /// rotated, with both following the current file.
    pub fn for_process(log_file: Option<PathBuf>) -> Self {
        let is_tty = nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
        let (stdout, file) = match log_file {
            Some(p) if is_tty => (true, open(&p, false)),
            Some(p) if RotatingLog::stderr_is(&p) => match open(&p, true) {
                Some(f) => (false, Some(f)),
                None => (true, None),
            },
            _ => (true, None),
        };
        Output {
            inner: Arc::new(Mutex::new(Sink { stdout, file })),
        }
    }

    /// Only the log file (agents inside the daemon).
    pub fn to_file(path: &std::path::Path) -> Self {
        Output {
            inner: Arc::new(Mutex::new(Sink {
                stdout: false,
                file: open(path, false),
            })),
        }
    }

    /// Discards everything (tests).
    pub fn null() -> Self {
        Output {
            inner: Arc::new(Mutex::new(Sink {
                stdout: false,
                file: None,
            })),
        }
    }

    /// Writes one line. On the pane it is inert ([`on_screen`]); the log keeps the bytes.
    pub fn say(&self, line: &str) {
        let Ok(mut s) = self.inner.lock() else { return };
        if s.stdout {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{}", on_screen(line));
            let _ = o.flush();
        }
        if let Some(f) = s.file.as_mut() {
            // One write: the line lands whole (the log is opened to append, and a process
            // agent's stderr shares it), and costs one system call instead of two.
            let mut whole = String::with_capacity(line.len() + 1);
            whole.push_str(line);
            whole.push('\n');
            let _ = f.write_all(whole.as_bytes());
        }
    }

    /// Writes text without a newline (streaming model output); inert on the pane as
    /// [`Output::say`].
    pub fn write(&self, text: &str) {
        let Ok(mut s) = self.inner.lock() else { return };
        if s.stdout {
            let mut o = std::io::stdout().lock();
            let _ = write!(o, "{}", on_screen(text));
            let _ = o.flush();
        }
        if let Some(f) = s.file.as_mut() {
            let _ = write!(f, "{text}");
        }
    }
}

/// `text` as the pane shows it: what agents and models wrote (a message body, a task's
/// title, a tool's output, the model's words) reaches a person's terminal here, so escape
/// sequences (OSC 52 clipboard, CSI 2J, OSC 0 title), C1, bidi and zero-width characters are
/// shown as codes, lines and tabs kept ([`agent_team_protocol::text::printable_lines`]).
/// Text already made inert passes unchanged.
pub fn on_screen(text: &str) -> String {
    agent_team_protocol::text::printable_lines(text, "")
}

/// Opens the agent's log at `p`, rotated at the cap `daemon.log` has; `std_fds` makes this
/// process's stdout and stderr follow it (they are the log).
fn open(p: &std::path::Path, std_fds: bool) -> Option<RotatingLog> {
    open_capped(p, std_fds, RotatingLog::cap_from_env())
}

/// [`open`] with the cap given.
fn open_capped(p: &std::path::Path, std_fds: bool, cap: u64) -> Option<RotatingLog> {
    // The log's own directory only: the team's state dir deleted is not made again (its
    // daemon is stopping the team, issue 70).
    if let Some(d) = p.parent().filter(|d| !d.is_dir()) {
        let _ = std::fs::create_dir(d);
    }
    let log = RotatingLog::open(p, cap, LOG_KEEP, std_fds).ok()?;
    Some(if std_fds { log.with_stdout() } else { log })
}

/// The most bytes of a message's body an agent's log shows; the rest is counted, not shown
/// (the whole message stays in the team's state).
pub const LOG_BODY_MAX: usize = 2000;

/// `body` as a log shows it: whole when short, else its first [`LOG_BODY_MAX`] bytes (cut
/// at a character) and how many were left out.
pub fn bounded(body: &str) -> std::borrow::Cow<'_, str> {
    if body.len() <= LOG_BODY_MAX {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut end = LOG_BODY_MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{} … [{} more bytes]",
        &body[..end],
        body.len() - end
    ))
}

/// An [`std::io::Write`] into an [`Output`], so the agent's log messages (e.g. the model
/// client's retry warnings, through a tracing subscriber) land where its other output goes.
pub struct LineWriter(pub Output);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        for line in text.lines() {
            self.0.say(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Issue 63: what the pane shows of a message body cannot write the clipboard, clear the
    /// screen, set the title or hide part of itself; text already inert stays as it is.
    #[test]
    fn the_pane_shows_agent_text_inert() {
        let body = "ok\u{1b}]52;c;eA==\u{7}\u{1b}[2J\u{1b}]0;FAKE\u{7}\u{9b}31m\u{202e}x\u{200b}\nnext\tline";
        let shown = on_screen(body);
        assert_eq!(
            shown,
            "ok\\u{1b}]52;c;eA==\\u{7}\\u{1b}[2J\\u{1b}]0;FAKE\\u{7}\\u{9b}31m\\u{202e}x\\u{200b}\nnext\tline"
        );
        assert_eq!(on_screen(&shown), shown);
        let q = format!("ls -la{}; curl x | sh", " ".repeat(3000));
        assert_eq!(on_screen(&q), "ls -la␣[3000 spaces]␣; curl x | sh");
    }

    #[test]
    fn an_agents_log_rotates_and_shows_a_bounded_prefix_of_long_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/b1.log");
        // 3 000 bodies of 60 KB made one 180 MB log; here rotated at 1 MiB.
        let cap = 1024 * 1024;
        let out = Output {
            inner: Arc::new(Mutex::new(Sink {
                stdout: false,
                file: open_capped(&path, false, cap),
            })),
        };
        let body = "é".repeat(30_000);
        let shown = bounded(&body);
        assert!(shown.len() < LOG_BODY_MAX + 40, "{}", shown.len());
        assert!(shown.ends_with(&format!("[{} more bytes]", 60_000 - LOG_BODY_MAX)));
        assert_eq!(bounded("short"), "short");
        for _ in 0..3_000 {
            out.say(&shown);
        }
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let numbered = |i: u32| dir.path().join(format!("logs/b1.log.{i}"));
        assert!(size(path.clone()) <= cap);
        assert!(size(numbered(1)) > 0, "the log rotated");
        assert!(!numbered(LOG_KEEP + 1).exists(), "old logs are bounded");
        let total: u64 = (1..=LOG_KEEP).map(|i| size(numbered(i))).sum::<u64>() + size(path);
        assert!(total <= u64::from(LOG_KEEP + 1) * cap, "{total}");
    }
}
