//! `agent-team-bridge`: what an agent CLI starts, in its sandbox, to reach its team: as its MCP
//! server (`mcp SOCKET`) it carries bytes between the CLI's stdin/stdout and the socket its
//! worker serves the team's tools on; as its hook (`hook EVENT … --socket SOCKET`) it hands
//! the hook's input to that worker and prints the answer. So beside each CLI there is one small
//! process of ours instead of a second whole `agent-team`. As `guard PROGRAM…` it is a team
//! daemon's guardian while the daemon runs, and becomes PROGRAM (the whole `agent-team`, which
//! heals) only once the daemon has ended. As `net --socket SOCK … -- PROGRAM…` it is the first
//! process in a sandbox's own network namespace: it carries the sandbox's loopback proxy port
//! (and any forwarded loopback port) to the team's egress proxy on SOCK, then becomes PROGRAM.
//! Standard library only: every page it maps counts against the memory the team costs.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

const USAGE: &str = "usage: agent-team-bridge mcp SOCKET
       agent-team-bridge hook stop|pre-tool-use [--cli NAME] --socket SOCKET
       agent-team-bridge guard PROGRAM [ARG...]
       agent-team-bridge net --socket SOCK [--listen PORT] [--forward PORT]... -- PROGRAM [ARG...]

Started by an agent CLI, never by hand: the configuration its worker writes registers it as
the CLI's `team` MCP server (carrying the MCP session between the CLI's stdin/stdout and the
worker's SOCKET) and as its turn-end and pre-tool hooks (the hook's input goes to the worker,
which answers; what it answers is printed, and its exit code is this one's). A pre-tool hook
that gets no answer exits 2: the CLI refuses the call.

As `guard`, started by a team's daemon as its guardian: it waits on its stdin, a pipe only the
daemon writes. A byte (the daemon was stopped on purpose) ends it; end of file (the daemon
ended, by a crash or not) makes it PROGRAM (`agent-team daemon --guard ...`), which brings
the daemon back unless the team was stopped on purpose.

As `net`, the first process of a sandbox with a network of its own: a forwarder (a process of
its own group) listens on 127.0.0.1:PORT (default 3128) and carries each connection to the
team's egress proxy on SOCK, and on 127.0.0.1:P for each --forward P, turning each connection
into a tunnel to the host's 127.0.0.1:P (checked by the proxy like any other); then this
process becomes PROGRAM with HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (and their lower-case
forms) set to http://127.0.0.1:PORT and NO_PROXY=localhost,127.0.0.1,::1. Signals reach
PROGRAM itself and its exit status is this process's; the forwarder ends with it.";

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
        Some("net") => net::main(&args[1..]),
        Some(net::SERVE) => net::serve(&args[1..]),
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

mod net {
    //! `net`: the sandbox's loopback carried to the team's egress proxy.

    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt as _;
    use std::process::{ExitCode, Stdio};
    use std::time::Duration;

    /// The forwarder's own (internal) subcommand, run by `net` as a child.
    pub const SERVE: &str = "net-serve";
    /// The proxy port inside the sandbox when `--listen` is not given.
    const DEFAULT_LISTEN: u16 = 3128;
    /// A thread's stack: a copy buffer and little else.
    const STACK: usize = 64 * 1024;
    /// The most of a proxy's answer to a tunnel request read before giving up on it.
    const ANSWER_MAX: usize = 16 * 1024;

    /// What `net` and `net-serve` take.
    struct Args {
        socket: String,
        listen: u16,
        forward: Vec<u16>,
        program: Vec<String>,
    }

    fn parse(args: &[String]) -> Result<Args, String> {
        let (mut socket, mut listen, mut forward) = (None, DEFAULT_LISTEN, Vec::new());
        let mut it = args.iter();
        let port = |v: Option<&String>, what: &str| -> Result<u16, String> {
            v.and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{what} needs a port (1-65535)"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--socket" => socket = Some(it.next().ok_or("--socket needs a path")?.clone()),
                "--listen" => listen = port(it.next(), "--listen")?,
                "--forward" => forward.push(port(it.next(), "--forward")?),
                "--" => break,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let program: Vec<String> = it.cloned().collect();
        let socket = socket.ok_or("no --socket")?;
        if forward.contains(&listen) {
            return Err(format!("port {listen} is both --listen and --forward"));
        }
        Ok(Args {
            socket,
            listen,
            forward,
            program,
        })
    }

    /// `net`: starts the forwarder, waits until it listens, then becomes PROGRAM.
    pub fn main(args: &[String]) -> ExitCode {
        let usage = |why: String| {
            eprintln!("agent-team-bridge: net: {why}\n{}", super::USAGE);
            ExitCode::from(2)
        };
        let fail = |why: String| {
            eprintln!("agent-team-bridge: net: {why}");
            ExitCode::from(1)
        };
        let a = match parse(args) {
            Ok(a) if !a.program.is_empty() => a,
            Ok(_) => return usage("no PROGRAM after --".into()),
            Err(e) => return usage(e),
        };
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return fail(format!("cannot find this program: {e}")),
        };
        let mut serve = std::process::Command::new(exe);
        serve.arg(SERVE).arg("--socket").arg(&a.socket);
        serve.arg("--listen").arg(a.listen.to_string());
        for p in &a.forward {
            serve.arg("--forward").arg(p.to_string());
        }
        // A group of its own: a Ctrl-C typed in the pane is PROGRAM's, not the network's.
        serve
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = match serve.spawn() {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot start the forwarder: {e}")),
        };
        // One line once every port listens (nothing: it failed and said why on stderr).
        let mut ready = [0u8; 6];
        let ok = child
            .stdout
            .take()
            .is_some_and(|mut out| out.read_exact(&mut ready).is_ok() && &ready == b"ready\n");
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("agent-team-bridge: net: the forwarder did not start");
            return ExitCode::from(1);
        }
        let proxy = format!("http://127.0.0.1:{}", a.listen);
        let mut cmd = std::process::Command::new(&a.program[0]);
        cmd.args(&a.program[1..]);
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            cmd.env(k, &proxy).env(k.to_ascii_lowercase(), &proxy);
        }
        let no_proxy = "localhost,127.0.0.1,::1";
        cmd.env("NO_PROXY", no_proxy).env("no_proxy", no_proxy);
        let e = cmd.exec();
        eprintln!("agent-team-bridge: net: cannot run {}: {e}", a.program[0]);
        ExitCode::from(127)
    }

    /// `net-serve`: the listeners, each connection on a thread, until the process that
    /// started it (and became PROGRAM) has ended.
    pub fn serve(args: &[String]) -> ExitCode {
        let a = match parse(args) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("agent-team-bridge: {SERVE}: {e}");
                return ExitCode::from(2);
            }
        };
        let parent = std::os::unix::process::parent_id();
        let mut listeners = Vec::new();
        for (port, tunnel) in
            std::iter::once((a.listen, false)).chain(a.forward.iter().map(|p| (*p, true)))
        {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => listeners.push((l, port, tunnel)),
                // A forwarded port that cannot be had (below 1024: no capability in here) is
                // said and left out; the proxy's own port is needed.
                Err(e) if tunnel => {
                    eprintln!("agent-team-bridge: net: 127.0.0.1:{port} is not forwarded: {e}");
                }
                Err(e) => {
                    eprintln!("agent-team-bridge: net: cannot listen on 127.0.0.1:{port}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        for (l, port, tunnel) in listeners {
            let socket = a.socket.clone();
            let spawned = std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || accept(l, port, tunnel, &socket));
            if let Err(e) = spawned {
                eprintln!("agent-team-bridge: net: {e}");
                return ExitCode::from(1);
            }
        }
        {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(b"ready\n")
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
        }
        // Ends once PROGRAM (this process's parent) has: then the parent is another.
        while std::os::unix::process::parent_id() == parent {
            std::thread::sleep(Duration::from_millis(250));
        }
        ExitCode::SUCCESS
    }

    fn accept(l: TcpListener, port: u16, tunnel: bool, socket: &str) {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let socket = socket.to_string();
            let _ = std::thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || {
                    if let Err(e) = carry(conn, port, tunnel, &socket) {
                        eprintln!("agent-team-bridge: net: 127.0.0.1:{port}: {e}");
                    }
                });
        }
    }

    /// One connection carried to the proxy; a forwarded port's first asks for its tunnel and
    /// hands a refusal back as it came (the client reads the proxy's reason).
    fn carry(client: TcpStream, port: u16, tunnel: bool, socket: &str) -> std::io::Result<()> {
        let _ = client.set_nodelay(true);
        let mut proxy = UnixStream::connect(socket)?;
        if tunnel {
            proxy.write_all(
                format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                    .as_bytes(),
            )?;
            let mut head = Vec::with_capacity(64);
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() >= ANSWER_MAX || proxy.read(&mut byte)? == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let established =
                head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200");
            if !established {
                let mut c = &client;
                c.write_all(&head)?;
                std::io::copy(&mut proxy, &mut c)?;
                return Ok(());
            }
        }
        let (mut c_in, mut p_out) = (client.try_clone()?, proxy.try_clone()?);
        let up = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let _ = super::copy_flushed(&mut c_in, &mut p_out);
                let _ = p_out.shutdown(Shutdown::Write);
            })?;
        let mut c_out = &client;
        let _ = super::copy_flushed(&mut proxy, &mut c_out);
        let _ = client.shutdown(Shutdown::Write);
        let _ = up.join();
        Ok(())
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
