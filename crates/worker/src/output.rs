//! Where an agent's words go: its pane (stdout) and its log file, or only the log file for agents
//! that run inside the daemon.

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
    file: Option<std::fs::File>,
}

impl Output {
    /// Stdout, plus the log file when stdout is a terminal (a pane); a process whose stdout is
    /// already its log file writes once.
    pub fn for_process(log_file: Option<PathBuf>) -> Self {
        let is_tty = nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
        let file = if is_tty {
            log_file.and_then(|p| open(&p))
        } else {
            None
        };
        Output {
            inner: Arc::new(Mutex::new(Sink { stdout: true, file })),
        }
    }

    /// Only the log file (agents inside the daemon).
    pub fn to_file(path: &std::path::Path) -> Self {
        Output {
            inner: Arc::new(Mutex::new(Sink {
                stdout: false,
                file: open(path),
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

    /// Writes one line.
    pub fn say(&self, line: &str) {
        let Ok(mut s) = self.inner.lock() else { return };
        if s.stdout {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
        if let Some(f) = s.file.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Writes raw text without a newline (streaming model output).
    pub fn write(&self, text: &str) {
        let Ok(mut s) = self.inner.lock() else { return };
        if s.stdout {
            let mut o = std::io::stdout().lock();
            let _ = write!(o, "{text}");
            let _ = o.flush();
        }
        if let Some(f) = s.file.as_mut() {
            let _ = write!(f, "{text}");
        }
    }
}

fn open(p: &std::path::Path) -> Option<std::fs::File> {
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .ok()
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
