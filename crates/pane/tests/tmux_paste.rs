//! Typing into a pane with the real tmux: a paste reaches a program only once it reads keys,
//! and its Enter comes after the program has read the paste, so a TUI that takes an Enter read
//! with a paste as a newline in it (Gemini CLI) still gets the line sent.

use agent_team_pane::tmux::{Placement, TmuxBackend, TmuxLayout};
use agent_team_pane::{LaunchSpec, PaneBackend};
use std::path::Path;
use std::time::{Duration, Instant};

/// A slow TUI: line mode for `cooked` seconds, then raw mode (and bracketed paste, as TUIs ask
/// for) without reading for `stalled`
/// seconds (a busy event loop), then it logs each read as one hex line until it reads an Enter.
const SLOW_TUI: &str = r#"
import os, select, sys, termios, time, tty
log, cooked, stalled = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = sys.stdin.fileno()
time.sleep(cooked)
tty.setraw(fd, termios.TCSANOW)
sys.stdout.write("\x1b[?2004h")
sys.stdout.flush()
time.sleep(stalled)
with open(log + ".part", "w") as out:
    while True:
        select.select([fd], [], [], 30)
        chunk = os.read(fd, 65536)
        out.write(chunk.hex() + "\n")
        out.flush()
        if b"\r" in chunk or b"\n" in chunk:
            break
os.rename(log + ".part", log)
time.sleep(30)
"#;

/// Kills the private tmux server when the test ends, however it ends.
struct Server(std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .arg("kill-server")
            .env_remove("TMUX")
            .output();
    }
}

fn wait_for_file(path: &Path, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_paste_waits_for_raw_mode_and_its_enter_for_the_paste_to_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("t.tmux");
    let _server = Server(socket.clone());
    let place = Placement {
        socket: socket.clone(),
        session: "paste".into(),
        window: None,
        private_server: true,
    };
    let backend = TmuxBackend::new(place, TmuxLayout::Tiled, dir.path()).unwrap();
    let script = dir.path().join("slow_tui.py");
    std::fs::write(&script, SLOW_TUI).unwrap();
    let reads = dir.path().join("reads.jsonl");
    let spec = LaunchSpec {
        container: None,
        name: "slow".into(),
        role: "tui".into(),
        argv: vec![
            "python3".into(),
            script.display().to_string(),
            reads.display().to_string(),
            "1.0".into(),
            "1.5".into(),
        ],
        env: Vec::new(),
        env_remove: vec!["TMUX".into()],
        secret_env: Vec::new(),
        cwd: dir.path().to_path_buf(),
        log: dir.path().join("slow.log"),
        title: "slow".into(),
        color: None,
        host: None,
    };
    let launched = backend.spawn(&spec).unwrap();
    // Typed at once, while the program is still in line mode and then busy.
    backend.paste(&launched, "carry on please").unwrap();
    let text = wait_for_file(&reads, Duration::from_secs(30)).expect("the program's reads");
    let chunks: Vec<String> = text
        .lines()
        .map(|l| {
            let bytes: Vec<u8> = (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect();
    assert_eq!(
        chunks.first().map(String::as_str),
        Some("\x1b[200~carry on please\x1b[201~"),
        "the paste was not read on its own, bracketed, after raw mode: {chunks:?}"
    );
    assert_eq!(
        chunks.last().map(String::as_str),
        Some("\r"),
        "the Enter did not come on its own after the paste: {chunks:?}"
    );
    let _ = backend.stop(&launched, Duration::from_secs(1));
}
