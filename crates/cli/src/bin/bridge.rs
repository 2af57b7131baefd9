//! `agent-team-bridge`: what an agent CLI starts, in its sandbox, to reach its team: as its MCP
//! server (`mcp SOCKET`) it carries bytes between the CLI's stdin/stdout and the socket its
//! worker serves the team's tools on; as its hook (`hook EVENT … --socket SOCKET`) it hands
//! the hook's input to that worker and prints the answer. So beside each CLI there is one small
//! process of ours instead of a second whole `agent-team`. As `guard PROGRAM…` it is a team
//! daemon's guardian while the daemon runs, and becomes PROGRAM (the whole `agent-team`, which
//! heals) only once the daemon has ended. Standard library only: every page it maps counts
//! against the memory the team costs.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

const USAGE: &str = "usage: agent-team-bridge mcp SOCKET
       agent-team-bridge hook stop|pre-tool-use [--cli NAME] --socket SOCKET
       agent-team-bridge guard PROGRAM [ARG...]

Started by an agent CLI, never by hand: the configuration its worker writes registers it as
the CLI's `team` MCP server (carrying the MCP session between the CLI's stdin/stdout and the
worker's SOCKET) and as its turn-end and pre-tool hooks (the hook's input goes to the worker,
which answers; what it answers is printed, and its exit code is this one's). A pre-tool hook
that gets no answer exits 2: the CLI refuses the call.

As `guard`, started by a team's daemon as its guardian: it waits on its stdin, a pipe only the
daemon writes. A byte (the daemon was stopped on purpose) ends it; end of file (the daemon
ended, by a crash or not) makes it PROGRAM (`agent-team daemon --guard ...`), which brings
the daemon back unless the team was stopped on purpose.";

/// The most of a hook's input handed on (the worker reads no more).
const HOOK_INPUT_MAX: u64 = 256 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("mcp") if args.len() == 2 => match bridge(&args[1]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("agent-team-bridge: the team's tools on {}: {e}", args[1]);
                ExitCode::from(1)
            }
        },
        Some("hook") => hook(&args[1..]),
        Some("guard") if args.len() >= 2 => guard(&args[1], &args[2..]),
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `guard PROGRAM [ARG…]`: waits on stdin (the daemon's pipe); a byte means the daemon was
/// stopped on purpose (exit 0), end of file that it ended: then this process becomes PROGRAM,
/// with the same stdin (at its end of file), environment and process group.
fn guard(program: &str, args: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => return ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    drop(stdin);
    let e = std::process::Command::new(program).args(args).exec();
    eprintln!("agent-team-bridge: guard: cannot run {program}: {e}");
    ExitCode::from(1)
}

/// Carries stdin to the socket (on a thread; its end half-closes the socket) and the socket to
/// stdout, each chunk flushed at once, until the worker closes the session.
fn bridge(socket: &str) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    let mut to_worker = stream.try_clone()?;
    std::thread::spawn(move || {
        let _ = copy_flushed(&mut std::io::stdin().lock(), &mut to_worker);
        let _ = to_worker.shutdown(std::net::Shutdown::Write);
    });
    copy_flushed(&mut &stream, &mut std::io::stdout().lock())
}

/// Copies `from` to `to` until `from` ends, flushing after each chunk.
fn copy_flushed(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

/// `hook EVENT [--cli NAME] --socket SOCKET`: the hook's input to the worker, its answer out.
/// No answer: a pre-tool hook refuses the call (exit 2, why on stderr, which the CLI tells its
/// model); a turn-end hook lets the turn end (exit 1, a hook error the CLI only logs).
fn hook(args: &[String]) -> ExitCode {
    let event = args.first().map(String::as_str).unwrap_or_default();
    let refused = if event == "pre-tool-use" { 2 } else { 1 };
    let fail = |why: String| {
        if refused == 2 {
            eprintln!("agent-team: no permission decision, the call is refused: {why}");
        } else {
            eprintln!("agent-team-bridge: hook {event}: {why}");
        }
        ExitCode::from(refused)
    };
    let (mut cli, mut socket) = (None, None);
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--cli" => cli = rest.next(),
            "--socket" => socket = rest.next(),
            _ => return fail(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    if !matches!(event, "stop" | "pre-tool-use") || !cli.is_none_or(|c| word(c)) {
        return fail(format!("not a hook this bridge knows\n{USAGE}"));
    }
    let Some(socket) = socket else {
        return fail("no --socket".into());
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(HOOK_INPUT_MAX)
        .read_to_end(&mut input)
    {
        return fail(format!("cannot read the hook input: {e}"));
    }
    match ask(socket, event, cli.map(String::as_str), &input) {
        Ok((0, text)) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Ok((_, why)) => fail(why),
        Err(e) => fail(format!("the team server on {socket}: {e}")),
    }
}

/// One hook call on the worker's hook socket (see `agent_team_mcp::wire`): `KEY` (from the
/// 0600 file beside the socket) and the request as JSON on one line, then the input until this
/// end half-closes; the answer is its exit code on a line, then the text to print.
fn ask(
    socket: &str,
    event: &str,
    cli: Option<&str>,
    input: &[u8],
) -> std::io::Result<(u8, String)> {
    let key_file = std::path::Path::new(socket).with_file_name("hook.key");
    let key = std::fs::read_to_string(&key_file)?;
    let key = key.trim();
    // The key is one word of a secret's letters, the event and CLI lowercase words (checked):
    // no JSON escaping is needed.
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(std::io::Error::other("the hook key is not one word"));
    }
    let cli = cli.map(|c| format!(",\"cli\":\"{c}\"")).unwrap_or_default();
    let mut stream = UnixStream::connect(socket)?;
    stream
        .write_all(format!("{key} {{\"hook\":\"cli\",\"event\":\"{event}\"{cli}}}\n").as_bytes())?;
    stream.write_all(input)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reader = BufReader::new(stream);
    let mut code = String::new();
    reader.read_line(&mut code)?;
    let code: u8 = code
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("no answer ({:?})", code.trim())))?;
    let mut text = String::new();
    reader.take(HOOK_INPUT_MAX * 4).read_to_string(&mut text)?;
    Ok((code, text.trim_end().to_string()))
}
