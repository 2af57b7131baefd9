//! Figures of the service issue: an event from the daemon to an SSE client of `agent-team
//! serve`, beside the same event read over the daemon's Unix socket in the same run (latency
//! p50/p99), and events per second to 10 concurrent SSE clients beside 10 socket subscribers.

use crate::daemon_bench::{BenchTeam, bin_dir, rss};
use crate::report::*;
use agent_team_client::Client;
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token-0123456789abcdef";

/// `agent-team serve` for the bench's team; killed on drop.
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(team: &BenchTeam) -> Result<Serve> {
    let mut child = Command::new(bin_dir().join("agent-team"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AGENT_TEAM_HOME", &team.paths.home)
        .env("AGENT_TEAM_RUNTIME_DIR", &team.paths.runtime)
        .env("AGENT_TEAM_API_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start `agent-team serve`")?;
    let out = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(out);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    // Keep reading what it prints after (it would outlive a closed pipe, but drain it anyway).
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string);
    match base {
        Some(base) => Ok(Serve { child, base }),
        None => bail!("serve did not print its address: {first:?}"),
    }
}

/// One SSE client of the team's event stream from `since`; every event's arrival goes to `tx`
/// as (seq, when). Ends when the stream does or `tx` is gone.
fn sse_client(
    base: &str,
    team: &str,
    since: u64,
    tx: mpsc::Sender<(u64, Instant)>,
) -> Result<std::thread::JoinHandle<()>> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()?
        .get(format!("{base}/v1/teams/{team}/events?since={since}"))
        .bearer_auth(TOKEN)
        .send()?;
    if !resp.status().is_success() {
        bail!("the event stream answered {}", resp.status());
    }
    Ok(std::thread::spawn(move || {
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if let Some(id) = line.strip_prefix("id:")
                && let Ok(seq) = id.trim().parse::<u64>()
                && tx.send((seq, Instant::now())).is_err()
            {
                return;
            }
        }
    }))
}

/// One subscriber on the daemon's socket, reporting like [`sse_client`].
fn socket_client(
    team: &BenchTeam,
    since: u64,
    tx: mpsc::Sender<(u64, Instant)>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut c = team.operator()?;
    c.call(Request::Subscribe { since, types: None })?;
    Ok(std::thread::spawn(move || {
        loop {
            match c.next_push(Some(Duration::from_secs(30))) {
                Ok(Push::Event { envelope }) => {
                    if tx.send((envelope.seq, Instant::now())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }))
}

fn last_seq(c: &mut Client) -> Result<u64> {
    match c.call(Request::TeamInfo)? {
        Reply::Team { team } => Ok(team.last_seq),
        other => bail!("unexpected {other:?}"),
    }
}

fn emit(c: &mut Client, i: usize) -> Result<()> {
    c.send(Request::Emit {
        event: Event::TextMessageContent {
            delta: format!("delta {i}"),
        },
    })?;
    Ok(())
}

/// Latency of one event at a time, seen by an SSE client and a socket subscriber at once.
fn latency(team: &BenchTeam, base: &str, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut agent = team.agent("svc-a")?;
    let since = last_seq(&mut team.operator()?)?;
    let (stx, srx) = mpsc::channel();
    let (utx, urx) = mpsc::channel();
    let _sse = sse_client(base, &team.team, since, stx)?;
    let _sock = socket_client(team, since, utx)?;
    let (mut sse, mut sock) = (Vec::new(), Vec::new());
    let warm = 100;
    for i in 0..n + warm {
        let t0 = Instant::now();
        emit(&mut agent, i)?;
        agent.flush()?;
        let (_, a) = match srx.recv_timeout(Duration::from_secs(10)) {
            Ok(x) => x,
            Err(_) => {
                let sock = urx.recv_timeout(Duration::from_secs(1));
                let later = srx.recv_timeout(Duration::from_secs(20));
                bail!(
                    "event {i} did not reach the SSE client in 10 s (socket subscriber: {sock:?}; SSE 20 s later: {later:?})"
                );
            }
        };
        let (_, b) = urx
            .recv_timeout(Duration::from_secs(10))
            .context("an event did not reach the socket subscriber")?;
        agent
            .next_response()?
            .1
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if i >= warm {
            sse.push((a - t0).as_secs_f64());
            sock.push((b - t0).as_secs_f64());
        }
    }
    Ok((sse, sock))
}

/// Events per second to each of `clients` clients: `n` events emitted as fast as the daemon
/// takes them, timed until every client has the last one.
fn fan_out(team: &BenchTeam, base: Option<&str>, clients: usize, n: usize) -> Result<f64> {
    let mut agent = team.agent("svc-a")?;
    let since = last_seq(&mut team.operator()?)?;
    let target = since + n as u64;
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let tx = tx.clone();
        handles.push(match base {
            Some(base) => sse_client(base, &team.team, since, tx)?,
            None => socket_client(team, since, tx)?,
        });
    }
    drop(tx);
    let t0 = Instant::now();
    let mut pending = 0usize;
    for i in 0..n {
        emit(&mut agent, i)?;
        pending += 1;
        if pending == 256 {
            agent.flush()?;
            for _ in 0..pending {
                agent
                    .next_response()?
                    .1
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            pending = 0;
        }
    }
    agent.flush()?;
    for _ in 0..pending {
        agent
            .next_response()?
            .1
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut done = 0;
    let mut last = t0;
    while done < clients {
        let (seq, at) = rx
            .recv_timeout(Duration::from_secs(60))
            .context("a client stopped receiving")?;
        if seq >= target {
            done += 1;
            last = last.max(at);
        }
    }
    drop(rx);
    Ok(n as f64 / (last - t0).as_secs_f64())
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== service (issue 13) ==");
    let mut team = BenchTeam::start(dir, "svc")?;
    team.register(&["svc-a".into()])?;
    let srv = serve(&team)?;
    let n = if quick { 300 } else { 2000 };
    let (mut sse, mut sock) = latency(&team, &srv.base, n)?;
    let (s50, u50) = (pct(&mut sse, 50.0), pct(&mut sock, 50.0));
    let (s99, u99) = (pct(&mut sse, 99.0), pct(&mut sock, 99.0));
    r.add(
        "event daemon → SSE client of serve, p50",
        dur(s50),
        dur(u50),
        format!("{:.2}x", s50 / u50),
        "≤ 3x the socket",
        s50 <= 3.0 * u50,
    );
    r.add(
        "event daemon → SSE client of serve, p99",
        dur(s99),
        dur(u99),
        format!("{:.2}x", s99 / u99),
        "≤ 5x the socket",
        s99 <= 5.0 * u99,
    );
    let events = if quick { 5_000 } else { 20_000 };
    let sse_rate = fan_out(&team, Some(&srv.base), 10, events)?;
    let sock_rate = fan_out(&team, None, 10, events)?;
    r.add(
        "events/s to each of 10 SSE clients",
        rate(sse_rate),
        rate(sock_rate),
        format!("{:.2}x", sse_rate / sock_rate),
        "≥ 0.3x 10 socket subscribers",
        sse_rate >= 0.3 * sock_rate,
    );
    r.note(format!(
        "service: floors are the same events read by subscribers on the daemon's Unix socket in \
         the same run ({n} single events for latency; {events} events to 10 clients for the rate)"
    ));
    drop(srv);
    team.stop()?;
    Ok(())
}

/// Lets this process hold as many descriptors as its hard limit allows; returns the limit.
fn raise_fd_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard))
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() =>
        {
            hard as usize
        }
        Ok((soft, _)) => soft as usize,
        Err(_) => 1024,
    }
}

/// Median wall of `n` authorised `GET /v1/teams`, each on a new connection (as a client that
/// arrives during a flood), and the slowest.
fn authorised_gets(base: &str, n: usize) -> Result<(f64, f64)> {
    let http = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut walls = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = http
            .get(format!("{base}/v1/teams"))
            .bearer_auth(TOKEN)
            .send()?;
        let status = r.status();
        r.bytes()?;
        walls.push(t0.elapsed().as_secs_f64());
        if !status.is_success() {
            bail!("GET /v1/teams answered {status}");
        }
    }
    let max = walls.iter().copied().fold(0.0, f64::max);
    Ok((pct(&mut walls, 50.0), max))
}

/// `n` loopback connections to `addr`, each sent `first` (nothing when empty). A write the
/// server refuses (it closed that connection to make room) is the point of the flood.
fn flood(addr: &str, n: usize, first: &[u8]) -> Result<Vec<std::net::TcpStream>> {
    use std::io::Write;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(addr)
            .with_context(|| format!("connection {} of the flood", held.len() + 1))?;
        if !first.is_empty() {
            let _ = s.write_all(first);
        }
        held.push(s);
    }
    Ok(held)
}

/// `serve`'s connection limits (issue 25): an authorised `GET` on a new connection while this
/// process holds 20 000 idle sockets (as many as its descriptors allow), then 3 000 half-sent
/// request heads, against `serve` on 127.0.0.1, beside the same request without them; and the
/// server's peak RSS.
pub fn run_limits(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== serve limits (issue 25) ==");
    let (home, rundir) = (dir.join("home"), dir.join("run"));
    std::fs::create_dir_all(&home)?;
    let mut child = Command::new(bin_dir().join("agent-team"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AGENT_TEAM_HOME", &home)
        .env("AGENT_TEAM_RUNTIME_DIR", &rundir)
        .env("AGENT_TEAM_API_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start `agent-team serve`")?;
    let pid = child.id();
    let out = child.stdout.take().context("no stdout")?;
    let srv = Serve {
        child,
        base: String::new(),
    };
    let mut lines = BufReader::new(out);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string)
        .with_context(|| format!("serve did not print its address: {first:?}"))?;
    let addr = base.trim_start_matches("http://").to_string();
    let runs = if quick { 20 } else { 100 };
    let (calm, calm_max) = authorised_gets(&base, runs)?;
    let calm_rss = rss(pid).0;

    let want = if quick { 5_000 } else { 20_000 };
    let fds = raise_fd_limit();
    let idle = want.min(fds.saturating_sub(256));
    let held = flood(&addr, idle, b"")?;
    let (idle_wall, idle_max) = authorised_gets(&base, runs)?;
    drop(held);
    let half = 3_000;
    let held = flood(
        &addr,
        half,
        b"GET /v1/teams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    )?;
    let (half_wall, half_max) = authorised_gets(&base, runs)?;
    drop(held);
    let (now_rss, peak_rss) = rss(pid);
    drop(srv);
    if idle < want {
        r.note(format!(
            "serve limits: the idle flood held {idle} sockets, not {want}: this process may hold \
             {fds} descriptors"
        ));
    }
    r.note(format!(
        "serve limits: authorised GET /v1/teams on a new connection, {runs} times each; slowest \
         {} calm, {} with {idle} idle sockets, {} with {half} half-sent heads (serve's default \
         limits: 1024 connections, 10 s header timeout)",
        dur(calm_max),
        dur(idle_max),
        dur(half_max)
    ));
    r.add(
        &format!("authorised GET through `serve` with {idle} idle sockets held open (median)"),
        dur(idle_wall),
        format!("{} without them", dur(calm)),
        format!("{:.2}×", idle_wall / calm),
        "< 100 ms",
        idle_wall < 0.1,
    );
    r.add(
        &format!("authorised GET through `serve` with {half} half-sent request heads (median)"),
        dur(half_wall),
        format!("{} without them", dur(calm)),
        format!("{:.2}×", half_wall / calm),
        "< 100 ms",
        half_wall < 0.1,
    );
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    r.add(
        "serve peak RSS through both floods",
        format!("{:.1} MiB (now {:.1})", mib(peak_rss), mib(now_rss)),
        format!("{:.1} MiB before them", mib(calm_rss)),
        format!("{:.2}×", peak_rss as f64 / calm_rss.max(1) as f64),
        "< 64 MiB",
        mib(peak_rss) < 64.0,
    );
    Ok(())
}
