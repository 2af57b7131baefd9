//! Issue 31: envelope delivery to Python through `Team.run_streaming` beside `agent-team events
//! --follow`, on the same team run. Each round starts the team's daemon (`memory set`, whose
//! event also tells when the follower is subscribed), starts `events --follow` (its lines
//! stamped here on arrival), then runs the team from Python (python/tools/bench_streaming.py:
//! `Team.run_streaming`, each envelope stamped in `on_envelope`). Both stamps are the wall
//! clock, so each envelope's delay is measured from its `ts` (when the daemon recorded it) by
//! both readers alike. The workload: an offline `exec` team, a leader and 3 teammates; a gate
//! task holds them while the bench writes a burst of memory keys over one pipelining operator
//! connection (envelopes faster than a reader takes them: the readers' throughput), then many
//! tasks whose command is `true` (about six envelopes a task: the delays).

use crate::daemon_bench::bin_dir;
use crate::heal_bench::cli;
use crate::report::*;
use agent_team_client::Client;
use agent_team_paths::Paths;
use agent_team_protocol::{Request, Timestamp};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Teammates in the bench team (plus the leader).
const TEAMMATES: usize = 3;

/// How long one run may take before the round is given up.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The wall clock in seconds (Python's `time.time()`).
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The Python side of the section.
fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/tools/bench_streaming.py")
}

/// The Python to run the driver with: the venv `cargo xtask ci` makes (`target/pyvenv`), else
/// `python3` on PATH; why not when neither is a Python ≥ 3.9.
fn python() -> std::result::Result<PathBuf, String> {
    let venv = bin_dir()
        .parent()
        .map(|target| target.join("pyvenv").join("bin").join("python"));
    let mut why = Vec::new();
    for cand in venv
        .into_iter()
        .filter(|p| p.exists())
        .chain([PathBuf::from("python3")])
    {
        let status = Command::new(&cand)
            .args([
                "-c",
                "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => return Ok(cand),
            Ok(_) => why.push(format!("{} is older than 3.9", cand.display())),
            Err(e) => why.push(format!("{}: {e}", cand.display())),
        }
    }
    Err(why.join("; "))
}

/// The team file: a leader and [`TEAMMATES`] exec teammates; a `gate` task that waits for the
/// file `gate` (the bench makes it after the burst), then `tasks` tasks running `true`.
fn team_file(root: &Path, tasks: usize) -> Result<PathBuf> {
    let mut s = String::from(
        "name = \"pyb\"\nsandbox = \"off\"\n\n[defaults]\nprovider = \"exec\"\n\n\
         [roles.worker]\npermissions = { bash = \"allow\" }\n",
    );
    for i in 1..=TEAMMATES {
        s.push_str(&format!(
            "\n[[teammates]]\nname = \"w{i}\"\nrole = \"worker\"\n"
        ));
    }
    s.push_str(&format!(
        "\n[[tasks]]\nkey = \"gate\"\ntitle = \"gate\"\n\
         run = \"while [ ! -e '{}' ]; do sleep 0.005; done\"\n",
        root.join("gate").display()
    ));
    for i in 0..tasks {
        s.push_str(&format!(
            "\n[[tasks]]\ntitle = \"t{i}\"\nrun = \"true\"\nafter = [\"gate\"]\n"
        ));
    }
    let path = root.join("agent-team.toml");
    std::fs::write(&path, s)?;
    Ok(path)
}

/// `n` memory writes as fast as one pipelining operator connection makes them: a burst of
/// `MEMORY_UPDATED` envelopes faster than either reader takes them.
fn burst(root: &Path, n: usize) -> Result<()> {
    let tp = Paths::new(root.join("home"), root.join("run")).team("pyb")?;
    let mut c = Client::operator(&tp)?;
    const WINDOW: usize = 128;
    let mut i = 0;
    while i < n {
        let w = WINDOW.min(n - i);
        for j in i..i + w {
            c.send(Request::MemorySet {
                key: format!("burst/{j}"),
                value: serde_json::json!(j),
            })?;
        }
        c.flush()?;
        for _ in 0..w {
            if let Err(e) = c.next_response()?.1 {
                bail!("memory set: {e}");
            }
        }
        i += w;
    }
    Ok(())
}

/// One envelope as a reader saw it.
#[derive(Clone, Copy)]
struct Seen {
    /// The envelope's `ts`, in seconds.
    ts: f64,
    /// When it arrived, in seconds.
    at: f64,
}

/// What one round measured: per envelope of the run (by `seq`), the follower's and Python's,
/// the task workload apart from the burst.
struct Round {
    follow: Vec<Seen>,
    python: Vec<Seen>,
    burst_follow: Vec<Seen>,
    burst_python: Vec<Seen>,
    /// Python's own CPU seconds for the run (`time.process_time()`; not its subprocess).
    python_cpu: f64,
    version: String,
}

fn round(root: &Path, py: &Path, tasks: usize, burst_n: usize) -> Result<Round> {
    std::fs::create_dir_all(root)?;
    let file = team_file(root, tasks)?;
    // The daemon, and one event: the follower has printed it once it is subscribed.
    let out = cli(root, &["memory", "set", "bench.ready", "1"]).output()?;
    if !out.status.success() {
        bail!(
            "memory set failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut follow = cli(root, &["events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = follow.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel::<(f64, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let at = now();
            let Ok(line) = line else { break };
            if tx.send((at, line)).is_err() {
                break;
            }
        }
    });
    let result = (|| -> Result<Round> {
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .context("the follower did not print the first event within 30 s")?;
            let (at, line) = rx
                .recv_timeout(left)
                .context("the follower did not print the first event")?;
            let marker = line.contains("\"MEMORY_UPDATED\"");
            lines.push((at, line));
            if marker {
                break;
            }
        }

        let mut cmd = Command::new(py);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg(driver())
            .arg("--binary")
            .arg(bin_dir().join("agent-team"))
            .arg("--file")
            .arg(&file)
            .arg("--cwd")
            .arg(root)
            .arg("--timeout")
            .arg(RUN_LIMIT.as_secs().to_string())
            .current_dir(root)
            .env("AGENT_TEAM_HOME", root.join("home"))
            .env("AGENT_TEAM_RUNTIME_DIR", root.join("run"))
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", py.display()))?;
        let py_pid = child.id();
        let (py_tx, py_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = py_tx.send(child.wait_with_output());
        });
        let kill_py = || {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(py_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        // The gate task running: the teammates wait while the burst goes out, then work.
        let gated = (|| -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .context("the gate task did not start within 60 s")?;
                let (at, line) = rx
                    .recv_timeout(left)
                    .context("the gate task did not start")?;
                let started = line.contains("\"TOOL_CALL_START\"");
                lines.push((at, line));
                if started {
                    break;
                }
            }
            burst(root, burst_n)?;
            std::fs::write(root.join("gate"), "")?;
            Ok(())
        })();
        if let Err(e) = gated {
            kill_py();
            return Err(e);
        }
        let limit = RUN_LIMIT + Duration::from_secs(30);
        let out = match py_rx.recv_timeout(limit) {
            Ok(out) => out?,
            Err(_) => {
                kill_py();
                bail!("the Python run did not end within {limit:?}");
            }
        };
        if !out.status.success() {
            bail!(
                "the Python run failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("the Python run printed no JSON object")?;
        if v["success"] != serde_json::Value::Bool(true) {
            bail!(
                "the run did not succeed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let arrivals: Vec<(u64, f64)> = serde_json::from_value(v["arrivals"].clone())?;

        // The run has ended and its team is going down: the follower ends with the daemon.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .context("the follower did not end within 30 s of the run")?;
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the follower did not end within 30 s of the run")
                }
            }
        }
        let mut followed: HashMap<u64, Seen> = HashMap::new();
        let mut bursts = std::collections::HashSet::new();
        for (at, line) in &lines {
            let e: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("events --follow printed {line:?}"))?;
            let seq = e["seq"].as_u64().context("an envelope without seq")?;
            let ts = e["ts"]
                .as_str()
                .and_then(Timestamp::parse_rfc3339)
                .context("an envelope without ts")?;
            if e["event"]["type"] == "MEMORY_UPDATED"
                && e["event"]["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("burst/"))
            {
                bursts.insert(seq);
            }
            followed.insert(
                seq,
                Seen {
                    ts: ts.0 as f64 / 1000.0,
                    at: *at,
                },
            );
        }
        let (mut follow, mut python) = (Vec::new(), Vec::new());
        let (mut burst_follow, mut burst_python) = (Vec::new(), Vec::new());
        for (seq, at) in arrivals {
            let f = followed
                .get(&seq)
                .with_context(|| format!("events --follow never printed seq {seq}"))?;
            let p = Seen { ts: f.ts, at };
            if bursts.remove(&seq) {
                burst_follow.push(*f);
                burst_python.push(p);
            } else {
                follow.push(*f);
                python.push(p);
            }
        }
        if python.len() < 2 || burst_python.len() != burst_n || !bursts.is_empty() {
            bail!(
                "the Python run saw {} envelopes of the tasks and {} of the burst of {burst_n}",
                python.len(),
                burst_python.len()
            );
        }
        Ok(Round {
            follow,
            python,
            burst_follow,
            burst_python,
            python_cpu: v["cpu"].as_f64().unwrap_or(f64::NAN),
            version: v["python"].as_str().unwrap_or("?").to_string(),
        })
    })();
    // Whatever happened, nothing of the round stays running.
    if follow.try_wait().ok().flatten().is_none() {
        let _ = cli(root, &["down"]).output();
        let _ = follow.kill();
        let _ = follow.wait();
    }
    drop(rx);
    let _ = reader.join();
    result
}

/// Envelopes per second from the first arrival to the last.
fn throughput(seen: &[Seen]) -> f64 {
    let first = seen.iter().map(|s| s.at).fold(f64::INFINITY, f64::min);
    let last = seen.iter().map(|s| s.at).fold(f64::NEG_INFINITY, f64::max);
    (seen.len() - 1) as f64 / (last - first).max(1e-9)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the section in `dir`.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== envelopes to Python: run_streaming beside events --follow (issue 31) ==");
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            println!("  skipped: no Python 3.9 or later to run the package with ({why})");
            r.note(format!(
                "python section skipped: no Python 3.9 or later ({why}); \
                 `cargo xtask ci` makes target/pyvenv"
            ));
            return Ok(());
        }
    };
    if !driver().exists() {
        let why = format!("{} is missing", driver().display());
        println!("  skipped: {why}");
        r.note(format!("python section skipped: {why}"));
        return Ok(());
    }
    let (rounds, tasks, burst_n) = if quick {
        (2, 100, 1000)
    } else {
        (5, 500, 3000)
    };
    let (mut lat_f, mut lat_py, mut behind) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp_f, mut tp_py, mut btp_f, mut btp_py, mut made, mut cpu) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut version = String::new();
    for i in 0..rounds {
        let rd = round(&dir.join(format!("round-{i}")), &py, tasks, burst_n)
            .with_context(|| format!("python section, round {i}"))?;
        let ts = |v: &[Seen], f: fn(f64, f64) -> f64| v.iter().map(|s| s.ts).reduce(f);
        let produced = match (
            ts(&rd.burst_follow, f64::min),
            ts(&rd.burst_follow, f64::max),
        ) {
            (Some(a), Some(b)) => burst_n as f64 / (b - a).max(1e-3),
            _ => f64::NAN,
        };
        println!(
            "  round {i}: {} envelopes of the tasks, Python {} / events --follow {}; \
             burst of {burst_n} (recorded at {}): Python {} / events --follow {}",
            rd.python.len(),
            rate(throughput(&rd.python)),
            rate(throughput(&rd.follow)),
            rate(produced),
            rate(throughput(&rd.burst_python)),
            rate(throughput(&rd.burst_follow)),
        );
        for (f, p) in rd.follow.iter().zip(&rd.python) {
            lat_f.push(f.at - f.ts);
            lat_py.push(p.at - p.ts);
            behind.push(p.at - f.at);
        }
        tp_f.push(throughput(&rd.follow));
        tp_py.push(throughput(&rd.python));
        btp_f.push(throughput(&rd.burst_follow));
        btp_py.push(throughput(&rd.burst_python));
        made.push(produced);
        cpu.push(rd.python_cpu / (rd.python.len() + rd.burst_python.len()) as f64);
        version = rd.version;
    }
    let n = lat_py.len();
    for (p, name) in [(50.0, "p50"), (95.0, "p95")] {
        let (ours, floor) = (pct(&mut lat_py, p), pct(&mut lat_f, p));
        let ratio = ours / floor.max(1e-9);
        r.add(
            &format!("envelope ts → Python on_envelope (run_streaming), {name} (n={n})"),
            dur(ours),
            format!("{} events --follow", dur(floor)),
            format!("{ratio:.2}×"),
            "≤ 1.5× events --follow",
            ratio <= 1.5,
        );
    }
    let (tpp, tpf) = (median(&mut btp_py), median(&mut btp_f));
    r.add(
        &format!("a burst of {burst_n} envelopes delivered to Python (median of {rounds} runs)"),
        rate(tpp),
        format!("{} events --follow", rate(tpf)),
        format!("{:.2}×", tpf / tpp.max(1e-9)),
        "≤ 1.5× slower",
        tpf / tpp.max(1e-9) <= 1.5,
    );
    r.note(format!(
        "python (Python {version}; per run an exec team of {TEAMMATES} teammates, {tasks} tasks and \
         a burst of {burst_n} memory writes, {rounds} runs, both readers on the same run): the \
         tasks' envelopes came at {} (Python) and {} (events --follow), medians of runs; the \
         bursts were recorded at {} and delivered as above. Python got each task envelope {} \
         after events --follow at p50, {} at p95; Python's own CPU per envelope {}. `ts` has \
         millisecond resolution (truncated), so each delay from it carries up to 1 ms of \
         rounding on both sides.",
        rate(median(&mut tp_py)),
        rate(median(&mut tp_f)),
        rate(median(&mut made)),
        dur(pct(&mut behind, 50.0)),
        dur(pct(&mut behind, 95.0)),
        dur(median(&mut cpu)),
    ));
    Ok(())
}
