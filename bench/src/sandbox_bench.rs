//! Issue 25: what the sandbox costs each command an agent runs. The same `sh -c true` is
//! started and waited for unsandboxed (the floor), under Landlock (the fallback) and in the
//! namespace (bubblewrap, the default where it works), interleaved so load moves all alike;
//! the boundary is the one a teammate's command gets (the rule of `agent-team-sandbox` with
//! this machine's home and temp dirs). Issue 62: what the egress proxy adds to one HTTP
//! request (the forwarder an agent's sandbox runs, the proxy the daemon serves, and the TCP
//! connection to the destination) beside the same request sent directly.

use crate::report::Report;
use agent_team_sandbox::{Boundary, Mechanism, Options, Work, command_with, support};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs the section in `dir` (its workspace, runtime and state dirs live there).
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== the sandbox around agents' commands (issue 25) ==");
    let ws = dir.join("ws");
    for d in ["ws/.git/hooks", "run", "state/teams/t"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let boundary = Boundary::for_work(&Work {
        workspace: ws.clone(),
        control: vec![dir.join("run"), dir.join("state")],
        home: std::env::var_os("HOME").map(Into::into),
        ..Work::default()
    });
    let s = support();
    let mut ways: Vec<(&str, Option<Mechanism>)> = vec![("unsandboxed", None)];
    if let Ok(abi) = s.landlock {
        ways.push(("Landlock", Some(Mechanism::Landlock(abi))));
    }
    match &s.namespace {
        Ok(p) => ways.push(("namespace", Some(Mechanism::Namespace(p.clone())))),
        Err(why) => r.note(format!("no namespace sandbox here: {why}")),
    }
    let n = if quick { 40 } else { 200 };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    let args = ["-c".into(), "true".into()];
    for _ in 0..n {
        for (i, (_, m)) in ways.iter().enumerate() {
            let mut c = match m {
                Some(m) => command_with(m, &boundary, &ws, "sh", &args, Options::default()),
                None => {
                    let mut c = std::process::Command::new("sh");
                    c.args(&args).current_dir(&ws);
                    c
                }
            };
            let t = Instant::now();
            let status = c.status()?;
            times[i].push(t.elapsed());
            anyhow::ensure!(status.success(), "{}: {status}", ways[i].0);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let floor = median(&mut times[0]);
    for (i, (name, _)) in ways.iter().enumerate().skip(1) {
        let m = median(&mut times[i]);
        let extra = m.saturating_sub(floor);
        r.add(
            &format!("a command's start and end, {name} (median of {n})"),
            format!("{:.2} ms", m.as_secs_f64() * 1e3),
            format!("{:.2} ms", floor.as_secs_f64() * 1e3),
            format!("+{:.2} ms", extra.as_secs_f64() * 1e3),
            "≤ +5 ms",
            extra <= Duration::from_millis(5),
        );
    }
    proxy_cost(r, dir, quick)
}

/// One `GET` on a new connection to `port`, for `target` (a path, or an absolute URL for a
/// proxy), read to its end; the response must be a 200.
fn get(port: u16, target: &str, dest: u16) -> Result<()> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    c.set_nodelay(true)?;
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{dest}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    c.read_to_end(&mut out)?;
    anyhow::ensure!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    Ok(())
}

/// A request through the proxy (the forwarder on a loopback port, the proxy on its Unix
/// socket, a TCP connection to a listener on 127.0.0.1) beside the same request sent to the
/// listener directly, interleaved. The forwarder runs here in the host's network (in a
/// sandbox it is the same program on the namespace's own loopback).
fn proxy_cost(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let bridge = std::env::current_exe()?.with_file_name("agent-team-bridge");
    if !bridge.is_file() {
        r.note(format!(
            "no forwarder at {}: the proxy's cost not measured (build the workspace's bins)",
            bridge.display()
        ));
        return Ok(());
    }
    // The destination: answers every request with a small body and closes.
    let dest = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dest_port = dest.local_addr()?.port();
    std::thread::spawn(move || {
        for c in dest.incoming() {
            let Ok(c) = c else { continue };
            let _ = c.set_nodelay(true);
            let mut rd = BufReader::new(&c);
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = (&c).write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    // The proxy, as the daemon serves it: the destination listed.
    let net = dir.join("net");
    std::fs::create_dir_all(&net)?;
    let sock = net.join("proxy.sock");
    let policy = agent_team_egress::Policy {
        mode: agent_team_egress::Mode::List,
        allow: vec![agent_team_egress::Pattern::parse(&format!(
            "127.0.0.1:{dest_port}"
        ))?],
    };
    let listener = std::os::unix::net::UnixListener::bind(&sock)?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(l) = tokio::net::UnixListener::from_std(listener) else {
                return;
            };
            let p =
                agent_team_egress::Proxy::new(policy, None, agent_team_egress::Limits::default());
            let _ = p.serve(l).await;
        });
    });
    // The forwarder, on a free loopback port, around a program that waits.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut fwd = std::process::Command::new(&bridge)
        .arg("net")
        .arg("--socket")
        .arg(&sock)
        .args(["--listen", &port.to_string(), "--", "sleep", "600"])
        .spawn()?;
    let through = format!("http://127.0.0.1:{dest_port}/x");
    let t0 = Instant::now();
    while get(port, &through, dest_port).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = fwd.kill();
            anyhow::bail!("the forwarder did not answer on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = if quick { 200 } else { 1000 };
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    let result = (|| -> Result<()> {
        for _ in 0..n {
            let t = Instant::now();
            get(dest_port, "/x", dest_port)?;
            direct.push(t.elapsed());
            let t = Instant::now();
            get(port, &through, dest_port)?;
            proxied.push(t.elapsed());
        }
        Ok(())
    })();
    let _ = fwd.kill();
    let _ = fwd.wait();
    result?;
    direct.sort();
    proxied.sort();
    let (floor, m) = (direct[n / 2], proxied[n / 2]);
    let extra = m.saturating_sub(floor);
    r.add(
        &format!("an HTTP request through the egress proxy and its forwarder (median of {n})"),
        format!("{:.3} ms", m.as_secs_f64() * 1e3),
        format!("{:.3} ms direct", floor.as_secs_f64() * 1e3),
        format!("+{:.3} ms", extra.as_secs_f64() * 1e3),
        "≤ +1 ms",
        extra <= Duration::from_millis(1),
    );
    let (p99d, p99p) = (direct[n * 99 / 100], proxied[n * 99 / 100]);
    r.note(format!(
        "proxy p99 {:.3} ms, direct p99 {:.3} ms",
        p99p.as_secs_f64() * 1e3,
        p99d.as_secs_f64() * 1e3
    ));
    Ok(())
}
