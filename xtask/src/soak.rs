//! `cargo xtask soak`: drives the real `agent-team` binaries in a private sandbox under load
//! while SIGKILLing the daemon, agents and panes at seeded random moments, then checks that
//! every acknowledged message was delivered exactly once, every acknowledged task completed
//! exactly once, and that `down` leaves nothing behind (docs/RELIABILITY.md).

use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::{AgentInfo, AgentStatus, DeliveryState, Message, Task, TaskStatus};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The team's name inside the sandbox.
const TEAM: &str = "soak";
/// Every agent of the team: the leader and `m1` are mock-model agents, `w*` exec teammates.
const AGENTS: [&str; 5] = ["leader", "w1", "w2", "w3", "m1"];
/// The exec teammates, which run tasks (the only agents tasks are assigned to).
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];
/// How many load-generating threads run at once (concurrent CLIs race to restart the daemon).
const LOAD_THREADS: u64 = 3;
/// How many acknowledged tasks may wait to run before the load stops adding more.
const MAX_BACKLOG: usize = 24;
/// How long one CLI command may take before it is killed and counted as failed.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long a request is retried (the CLI restarts the daemon) before it is given up.
const RETRY_LIMIT: Duration = Duration::from_secs(60);
/// How long the board and the inboxes may take to drain after the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// What the command line asked for.
#[derive(Debug, Clone)]
struct Opts {
    /// Seconds of load.
    seconds: u64,
    /// `tmux`, `process` or `in-process`.
    backend: String,
    /// The seed of every random choice.
    seed: u64,
    /// Self-heal mode: after a daemon kill no command is issued until the team has brought
    /// its daemon back by itself (its agents and the daemon's guardian), and failed agents
    /// are not restarted by the operator.
    heal: bool,
}

/// Usage of `cargo xtask soak`.
const USAGE: &str =
    "usage: cargo xtask soak [--seconds N] [--backend tmux|process|in-process] [--seed S] [--heal]";

fn parse(args: &[String]) -> Result<Opts> {
    let mut opts = Opts {
        seconds: 60,
        backend: if tmux_ok() { "tmux" } else { "process" }.to_string(),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
            .unwrap_or(1),
        heal: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{a} needs a value; {USAGE}"))
        };
        match a.as_str() {
            "--seconds" => opts.seconds = value()?.parse().context("--seconds N")?,
            "--seed" => opts.seed = value()?.parse().context("--seed S")?,
            "--heal" => opts.heal = true,
            "--backend" => {
                let b = value()?.clone();
                if !["tmux", "process", "in-process"].contains(&b.as_str()) {
                    bail!("unknown backend {b:?}; {USAGE}");
                }
                opts.backend = b;
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok(opts)
}

/// Whether a tmux ≥ 3.2 is installed.
fn tmux_ok() -> bool {
    let Ok(out) = Command::new("tmux").arg("-V").output() else {
        return false;
    };
    let v = String::from_utf8_lossy(&out.stdout);
    // "tmux 3.3a", "tmux next-3.4"
    let digits: String = v
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .trim_start_matches("next-")
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (3, 2)
}

/// `cargo xtask soak ARGS`: builds the CLI, runs the soak, prints the figures; an error when
/// anything was lost, duplicated or left behind.
pub fn soak(root: &Path, args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    super::cargo(root, &["build", "-p", "agent-team", "--bins"], &[])?;
    let target = super::target_dir(root);
    let bin = target.join("debug").join("agent-team");
    if !bin.exists() {
        bail!("{} is missing after the build", bin.display());
    }
    println!(
        "soak: seed {} backend {} seconds {}{} (repeat with --seed {} --backend {}{})",
        opts.seed,
        opts.backend,
        opts.seconds,
        if opts.heal { " self-heal" } else { "" },
        opts.seed,
        opts.backend,
        if opts.heal { " --heal" } else { "" }
    );
    let report = run(&opts, &bin)?;
    report.print(&opts);
    if !report.passed() {
        bail!("the soak failed (seed {}); see above", opts.seed);
    }
    Ok(())
}

/// A small seeded generator (SplitMix64): the same seed gives the same choices.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A number in `lo..hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// One element of `items`.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

/// What one CLI command did.
#[derive(Debug)]
struct Outcome {
    /// It exited with status 0.
    ok: bool,
    /// Its standard output.
    stdout: String,
    /// Its standard error (or why it could not run).
    stderr: String,
}

/// The private world of one soak: temp state and runtime dirs, no inherited settings.
struct Sandbox {
    /// The temp dir; kept (not removed) when the soak fails, for its logs.
    tmp: Option<tempfile::TempDir>,
    /// Its path.
    dir: PathBuf,
    /// `AGENT_TEAM_HOME`.
    home: PathBuf,
    /// `AGENT_TEAM_RUNTIME_DIR`.
    runtime: PathBuf,
    /// The `agent-team` binary.
    bin: PathBuf,
    /// Extra environment (the mock model's key).
    env: Vec<(String, String)>,
    /// Names the output files of commands.
    next: AtomicU64,
}

impl Sandbox {
    fn new(bin: &Path) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("at-soak-")
            .tempdir()
            .context("cannot create the sandbox")?;
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("out"))?;
        Ok(Sandbox {
            home: dir.join("home"),
            runtime: dir.join("run"),
            dir,
            tmp: Some(tmp),
            bin: bin.to_path_buf(),
            env: vec![("MOCK_API_KEY".into(), "soak-key".into())],
            next: AtomicU64::new(0),
        })
    }

    /// `agent-team` with only the sandbox's settings: no AGENT_TEAM_* of ours, no TMUX.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
                c.env_remove(k);
            }
        }
        c.env("AGENT_TEAM_HOME", &self.home)
            .env("AGENT_TEAM_RUNTIME_DIR", &self.runtime)
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .current_dir(&self.dir)
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `agent-team ARGS` with a deadline. Output goes to files, not pipes: a daemon the
    /// command starts must not hold our pipe open.
    fn run(&self, args: &[&str], limit: Duration) -> Outcome {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (op, ep) = (
            self.dir.join("out").join(format!("{n}.out")),
            self.dir.join("out").join(format!("{n}.err")),
        );
        let failed = |why: String| Outcome {
            ok: false,
            stdout: String::new(),
            stderr: why,
        };
        let (Ok(o), Ok(e)) = (std::fs::File::create(&op), std::fs::File::create(&ep)) else {
            return failed("cannot create output files".into());
        };
        let mut child = match self.cmd(args).stdout(o).stderr(e).spawn() {
            Ok(c) => c,
            Err(e) => return failed(format!("cannot run agent-team: {e}")),
        };
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = std::fs::read_to_string(&op).unwrap_or_default();
        let mut stderr = std::fs::read_to_string(&ep).unwrap_or_default();
        let _ = std::fs::remove_file(&op);
        let _ = std::fs::remove_file(&ep);
        if status.is_none() {
            stderr.push_str(&format!("(killed after {limit:?})"));
        }
        Outcome {
            ok: status.is_some_and(|s| s.success()),
            stdout,
            stderr,
        }
    }

    fn team_dir(&self) -> PathBuf {
        self.home.join("teams").join(TEAM)
    }

    fn lock(&self) -> PathBuf {
        self.runtime.join(format!("{TEAM}.lock"))
    }

    /// Whether a daemon answers on the team's socket (a connect, no command).
    fn daemon_answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.runtime.join(format!("{TEAM}.sock"))).is_ok()
    }

    fn tmux_socket(&self) -> PathBuf {
        self.runtime.join(format!("{TEAM}.tmux"))
    }

    fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.txt")
    }

    /// The daemon's pid from its lock file, if a daemon of ours holds it.
    fn daemon_pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.lock())
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()?;
        self.owns(pid).then_some(pid)
    }

    /// Whether process `pid` runs with this sandbox in its environment or command line (a
    /// stale pid reused by someone else's process is never signalled).
    fn owns(&self, pid: i32) -> bool {
        let needle = self.dir.to_string_lossy().into_owned();
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let has = |f: &str| {
            std::fs::read(proc.join(f))
                .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false)
        };
        pid > 0 && pid as u32 != std::process::id() && (has("environ") || has("cmdline"))
    }

    /// Live processes (not zombies) that belong to this sandbox: pid and command line.
    fn processes(&self) -> Vec<(i32, String)> {
        let mut found = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return found;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if !self.owns(pid) {
                continue;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
                .unwrap_or(true);
            if zombie {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            found.push((pid, cmdline.trim().to_string()));
        }
        found
    }

    /// Runs `tmux -S SOCKET ARGS` on the sandbox's private server.
    fn tmux(&self, args: &[&str]) -> Outcome {
        match Command::new("tmux")
            .arg("-S")
            .arg(self.tmux_socket())
            .args(args)
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => Outcome {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => Outcome {
                ok: false,
                stdout: String::new(),
                stderr: e.to_string(),
            },
        }
    }

    /// The roster, as `ps --json` shows it (read from the stored state if no daemon runs).
    fn ps(&self) -> Option<Vec<AgentInfo>> {
        let out = self.run(&["ps", "--json"], COMMAND_LIMIT);
        out.ok
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// The board.
    fn tasks(&self) -> Option<Vec<Task>> {
        let out = self.run(&["task", "list", "--json"], COMMAND_LIMIT);
        out.ok
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// One agent's inbox.
    fn inbox(&self, name: &str) -> Option<Vec<Message>> {
        let out = self.run(&["inbox", name, "--json"], COMMAND_LIMIT);
        out.ok
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    /// Kills everything of the team: `down`, then SIGKILL for the daemon and any process of
    /// the sandbox, then the private tmux server.
    fn kill_all(&self) {
        if self.lock().exists() {
            let _ = self.run(&["down"], COMMAND_LIMIT);
        }
        if let Some(pid) = self.daemon_pid() {
            sigkill(pid);
        }
        for (pid, _) in self.processes() {
            sigkill(pid);
        }
        let _ = self.tmux(&["kill-server"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.tmux(&["ls"]).ok {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last `n` lines of the daemon's log and of every agent's log.
    fn log_tails(&self, n: usize) -> String {
        let mut logs = vec![self.team_dir().join("daemon.log")];
        if let Ok(rd) = std::fs::read_dir(self.team_dir().join("logs")) {
            let mut agents: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            agents.sort();
            logs.extend(agents);
        }
        let mut s = String::new();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(n).collect();
            s.push_str(&format!(
                "----- {} (last {} lines)\n",
                log.display(),
                tail.len()
            ));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(tmp) = self.tmp.take()
            && std::thread::panicking()
        {
            let _ = tmp.keep();
        }
    }
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A message the daemon acknowledged.
#[derive(Debug, Clone)]
struct AckMsg {
    /// Its id.
    id: u64,
    /// Its recipient.
    to: String,
    /// Its unique body.
    body: String,
}

/// A task the daemon acknowledged.
#[derive(Debug, Clone)]
struct AckTask {
    /// Its id.
    id: u64,
    /// Its title, which is also the token its command appends to the token file.
    token: String,
}

/// Everything the load and the kills did.
#[derive(Debug, Default)]
struct Record {
    /// Acknowledged messages.
    msgs: Vec<AckMsg>,
    /// Acknowledged tasks.
    tasks: Vec<AckTask>,
    /// Requests whose CLI failed but which were found stored before a retry.
    recovered: u64,
    /// Requests never acknowledged within the retry limit (with the last error).
    gave_up: Vec<String>,
    /// Failed commands by their first stderr line.
    errors: BTreeMap<String, u64>,
    /// Operator assigns that succeeded / were refused.
    assigns: (u64, u64),
    /// Operator releases that succeeded / were refused.
    releases: (u64, u64),
    /// Kills by kind.
    kills: BTreeMap<&'static str, u64>,
    /// Kills that found nothing to kill.
    missed_kills: u64,
    /// Agents found `failed` and restarted by the operator.
    heals: u64,
    /// Tasks that failed (their command was killed) and were put back with `task retry`.
    retried: u64,
    /// What the failures looked like.
    notes: Vec<String>,
    /// Self-heal mode: how long each killed daemon took to be serving again, brought back by
    /// the team alone.
    healed_in: Vec<Duration>,
    /// Self-heal mode: daemon kills the team did not recover from within [`HEAL_LIMIT`].
    not_healed: u64,
}

impl Record {
    fn error(&mut self, stderr: &str) {
        let line = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no output)");
        // Numbers (pids, ids, ports) would make every line distinct.
        let key: String = line
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(160)
            .collect();
        *self.errors.entry(key).or_default() += 1;
    }
}

fn locked(rec: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    rec.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a request ended.
enum Ack {
    /// The daemon answered success; the CLI's stdout.
    Reply(String),
    /// A failed attempt had been stored after all: its id.
    Found(u64),
    /// Never acknowledged.
    GaveUp,
}

/// Runs a request until it is acknowledged: after a failure, `lookup` says whether the failed
/// attempt was stored after all (then it is not sent again, so no retry of ours can duplicate).
fn acked(
    sb: &Sandbox,
    rec: &Mutex<Record>,
    args: &[&str],
    lookup: impl Fn() -> Option<Option<u64>>,
) -> Ack {
    let deadline = Instant::now() + RETRY_LIMIT;
    let mut pause = Duration::from_millis(50);
    loop {
        let out = sb.run(args, COMMAND_LIMIT);
        if out.ok {
            return Ack::Reply(out.stdout);
        }
        locked(rec).error(&out.stderr);
        // Only a definite answer counts: a lookup that failed is asked again.
        loop {
            match lookup() {
                Some(Some(id)) => {
                    locked(rec).recovered += 1;
                    return Ack::Found(id);
                }
                Some(None) => break,
                None if Instant::now() < deadline => std::thread::sleep(pause),
                None => break,
            }
        }
        if Instant::now() >= deadline {
            let mut r = locked(rec);
            r.gave_up.push(format!(
                "{args:?}: {}",
                out.stderr.lines().next().unwrap_or("")
            ));
            return Ack::GaveUp;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// One load thread: messages, tasks, assigns and releases until `end`.
/// In self-heal mode, keeps the load's commands away while the daemon is down: set by the
/// killer before a daemon kill (once no command is in flight) and cleared once the team has
/// brought its daemon back.
#[derive(Default)]
struct Gate {
    closed: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Gate {
    /// Waits while the gate is closed, then counts a command in flight.
    fn enter(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            while self.closed.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            self.in_flight.fetch_add(1, SeqCst);
            if !self.closed.load(SeqCst) {
                return;
            }
            self.in_flight.fetch_sub(1, SeqCst);
        }
    }

    fn leave(&self) {
        self.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How long a team has to bring a killed daemon back in self-heal mode.
const HEAL_LIMIT: Duration = Duration::from_secs(30);

fn load(
    sb: &Sandbox,
    rec: &Mutex<Record>,
    gate: &Gate,
    mut rng: Rng,
    seed: u64,
    thread: u64,
    end: Instant,
) {
    let tokens = sb.tokens();
    let mut n = 0u64;
    while Instant::now() < end {
        gate.enter();
        load_one(sb, rec, &mut rng, seed, thread, &mut n, &tokens);
        gate.leave();
    }
}

/// One command of the load.
fn load_one(
    sb: &Sandbox,
    rec: &Mutex<Record>,
    rng: &mut Rng,
    seed: u64,
    thread: u64,
    n: &mut u64,
    tokens: &Path,
) {
    *n += 1;
    let n = *n;
    let mut roll = rng.below(100);
    // Tasks are added no faster than three workers run them: a board that only grows
    // could not drain in the time the end allows. Over the bound, a message is sent instead.
    if (45..80).contains(&roll) && backlog(sb, rec) >= MAX_BACKLOG {
        roll = 0;
    }
    if roll < 45 {
        send_message(sb, rec, rng, format!("soak-msg-{seed}-{thread}-{n}"));
    } else if roll < 80 {
        add_task(
            sb,
            rec,
            rng,
            format!("soak-task-{seed}-{thread}-{n}"),
            tokens,
        );
    } else if !claim_or_release(sb, rec, rng, roll < 90) {
        return;
    }
    std::thread::sleep(Duration::from_millis(rng.between(10, 120)));
}

/// Sends `body` to a random agent; an acknowledged message is recorded.
fn send_message(sb: &Sandbox, rec: &Mutex<Record>, rng: &mut Rng, body: String) {
    let to = *rng.pick(&AGENTS).unwrap_or(&"w1");
    let lookup = || {
        sb.inbox(to)
            .map(|m| m.iter().find(|m| m.body == body).map(|m| m.id))
    };
    let id = match acked(sb, rec, &["send", to, &body, "--json"], lookup) {
        Ack::Reply(out) => serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v["ids"][0].as_u64()),
        Ack::Found(id) => Some(id),
        Ack::GaveUp => None,
    };
    if let Some(id) = id {
        locked(rec).msgs.push(AckMsg {
            id,
            to: to.to_string(),
            body,
        });
    }
}

/// Adds a task whose command writes `token` to the token file; an acknowledged task is recorded.
fn add_task(sb: &Sandbox, rec: &Mutex<Record>, rng: &mut Rng, token: String, tokens: &Path) {
    let run = format!(
        "sleep 0.{}; echo {token} >> {}",
        rng.between(1, 6),
        tokens.display()
    );
    let lookup = || {
        sb.tasks()
            .map(|ts| ts.iter().find(|t| t.title == token).map(|t| t.id))
    };
    let id = match acked(
        sb,
        rec,
        &["task", "add", &token, "--run", &run, "--json"],
        lookup,
    ) {
        Ack::Reply(out) => serde_json::from_str::<Task>(&out).ok().map(|t| t.id),
        Ack::Found(id) => Some(id),
        Ack::GaveUp => None,
    };
    if let Some(id) = id {
        locked(rec).tasks.push(AckTask { id, token });
    }
}

/// An operator's claim (`assign`: a recent task to a worker) or release (a running task back to
/// pending), counted as it went; false when there was no task to do it to.
fn claim_or_release(sb: &Sandbox, rec: &Mutex<Record>, rng: &mut Rng, assign: bool) -> bool {
    let candidates: Vec<u64> = if assign {
        let r = locked(rec);
        r.tasks.iter().rev().take(10).map(|t| t.id).collect()
    } else {
        let out = sb.run(
            &["task", "list", "--status", "in_progress", "--json"],
            COMMAND_LIMIT,
        );
        serde_json::from_str::<Vec<Task>>(&out.stdout)
            .map(|ts| ts.iter().map(|t| t.id).collect())
            .unwrap_or_default()
    };
    let Some(id) = rng.pick(&candidates).map(|id| id.to_string()) else {
        return false;
    };
    let out = if assign {
        let to = *rng.pick(&WORKERS).unwrap_or(&"w1");
        sb.run(&["task", "assign", &id, to], COMMAND_LIMIT)
    } else {
        sb.run(&["task", "release", &id], COMMAND_LIMIT)
    };
    let mut r = locked(rec);
    let slot = if assign {
        &mut r.assigns
    } else {
        &mut r.releases
    };
    if out.ok {
        slot.0 += 1;
    } else {
        slot.1 += 1;
    }
    true
}

/// How many acknowledged tasks have not yet run to their end (their token is not in the file).
fn backlog(sb: &Sandbox, rec: &Mutex<Record>) -> usize {
    let text = std::fs::read_to_string(sb.tokens()).unwrap_or_default();
    let done: std::collections::HashSet<&str> = text.lines().map(str::trim).collect();
    let r = locked(rec);
    r.tasks
        .iter()
        .filter(|t| !done.contains(t.token.as_str()))
        .count()
}

/// Restarts agents the restart policy gave up on (`failed` after quick deaths): the operator
/// would do the same, and a failed agent cannot take its messages.
fn heal(sb: &Sandbox, rec: &Mutex<Record>) {
    let Some(agents) = sb.ps() else { return };
    for a in agents
        .iter()
        .filter(|a| matches!(a.status, AgentStatus::Failed))
    {
        let out = sb.run(&["restart", &a.name], COMMAND_LIMIT);
        let mut r = locked(rec);
        if out.ok {
            r.heals += 1;
            r.notes.push(format!(
                "restarted failed agent {} ({:?})",
                a.name, a.last_exit
            ));
        } else {
            r.error(&out.stderr);
        }
    }
}

/// The kinds of kill a backend allows, with their weights.
fn kill_kinds(backend: &str) -> &'static [(&'static str, u64)] {
    match backend {
        "tmux" => &[("daemon", 30), ("agent", 35), ("pane", 35)],
        "process" => &[("daemon", 40), ("agent", 60)],
        // Agents live inside the daemon: the processes to kill are the daemon and the task
        // commands the agents run.
        _ => &[("daemon", 60), ("command", 40)],
    }
}

/// One kill of `kind`; whether something was killed.
fn kill_one(sb: &Sandbox, rng: &mut Rng, kind: &str) -> bool {
    match kind {
        "daemon" => match sb.daemon_pid() {
            Some(pid) => {
                sigkill(pid);
                true
            }
            None => false,
        },
        "agent" => {
            let daemon = sb.daemon_pid();
            let pids: Vec<i32> = sb
                .ps()
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.pid.map(|p| p as i32))
                .filter(|p| Some(*p) != daemon && sb.owns(*p))
                .collect();
            match rng.pick(&pids) {
                Some(pid) => {
                    sigkill(*pid);
                    true
                }
                None => false,
            }
        }
        "pane" => {
            let panes: Vec<String> = sb
                .ps()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| a.pane)
                .collect();
            match rng.pick(&panes) {
                Some(p) => sb.tmux(&["kill-pane", "-t", p]).ok,
                None => false,
            }
        }
        _ => {
            let tokens = sb.tokens().to_string_lossy().into_owned();
            let cmds: Vec<i32> = sb
                .processes()
                .into_iter()
                .filter(|(_, c)| c.contains(&tokens) && !c.contains("agent-team"))
                .map(|(p, _)| p)
                .collect();
            match rng.pick(&cmds) {
                Some(pid) => {
                    sigkill(*pid);
                    true
                }
                None => false,
            }
        }
    }
}

/// Kills something at random moments until `end`, healing failed agents in between (not in
/// self-heal mode, where a daemon kill closes the gate and waits for the team to bring its
/// daemon back by itself).
fn killer(
    sb: &Sandbox,
    rec: &Mutex<Record>,
    gate: &Gate,
    mut rng: Rng,
    backend: &str,
    self_heal: bool,
    end: Instant,
) {
    let kinds = kill_kinds(backend);
    let total: u64 = kinds.iter().map(|k| k.1).sum();
    loop {
        let pause = Duration::from_millis(rng.between(1_500, 6_000));
        if Instant::now() + pause >= end {
            break;
        }
        std::thread::sleep(pause);
        if !self_heal {
            heal(sb, rec);
        }
        let mut roll = rng.below(total);
        let mut kind = kinds[0].0;
        for (k, w) in kinds {
            if roll < *w {
                kind = k;
                break;
            }
            roll -= w;
        }
        let hit = if self_heal && kind == "daemon" {
            kill_daemon_and_wait_for_the_team(sb, rec, gate, &mut rng)
        } else {
            kill_one(sb, &mut rng, kind)
        };
        let mut r = locked(rec);
        if hit {
            *r.kills.entry(kind).or_default() += 1;
        } else {
            r.missed_kills += 1;
        }
    }
}

/// Self-heal mode: no command in flight, SIGKILL the daemon, and with nothing issued wait for
/// a new daemon to answer (brought back by the agents or the daemon's guardian).
fn kill_daemon_and_wait_for_the_team(
    sb: &Sandbox,
    rec: &Mutex<Record>,
    gate: &Gate,
    rng: &mut Rng,
) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    gate.closed.store(true, SeqCst);
    wait_until(Duration::from_secs(120), || {
        gate.in_flight.load(SeqCst) == 0
    });
    let before = sb.daemon_pid();
    let hit = kill_one(sb, rng, "daemon");
    if hit {
        let killed = Instant::now();
        let back = wait_every(HEAL_LIMIT, Duration::from_millis(10), || {
            sb.daemon_pid().is_some_and(|p| Some(p) != before) && sb.daemon_answers()
        });
        let mut r = locked(rec);
        if back {
            r.healed_in.push(killed.elapsed());
        } else {
            r.not_healed += 1;
            r.notes.push(format!(
                "the daemon killed at {:?} was not back within {HEAL_LIMIT:?}",
                killed
            ));
        }
    }
    gate.closed.store(false, SeqCst);
    hit
}

/// The figures and findings of one soak.
#[derive(Debug, Default)]
struct Report {
    /// Kills by kind.
    kills: BTreeMap<&'static str, u64>,
    /// Acknowledged messages.
    messages: usize,
    /// Acknowledged tasks.
    tasks: usize,
    /// Acknowledged messages or tasks missing, undelivered or not completed.
    lost: Vec<String>,
    /// Messages or tasks stored or run more than once where once was acknowledged.
    duplicated: Vec<String>,
    /// Extra executions of task commands (a killed run legitimately reruns).
    reruns: u64,
    /// Messages an exec teammate printed more than once (taken again after a kill).
    redelivered: Vec<String>,
    /// Requests never acknowledged.
    unanswered: Vec<String>,
    /// Processes or tmux servers left after `down`, or a failed `down`.
    left: Vec<String>,
    /// The rest of the record, for the printout.
    record: Record,
    /// How long the drain took.
    drain: Duration,
    /// Delivery states of the acknowledged messages at the end.
    states: BTreeMap<&'static str, u64>,
    /// Log tails when something failed.
    logs: String,
}

impl Report {
    fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.record.not_healed == 0
            && self.duplicated.is_empty()
            && self.left.is_empty()
            && self.unanswered.is_empty()
    }

    fn print(&self, opts: &Opts) {
        let r = &self.record;
        let kills: u64 = self.kills.values().sum();
        let list = |name: &str, items: &[String]| {
            for i in items.iter().take(20) {
                println!("soak: {name}: {i}");
            }
            if items.len() > 20 {
                println!("soak: {name}: … and {} more", items.len() - 20);
            }
        };
        println!(
            "soak: kills by kind {:?} ({} found nothing to kill), agents restarted after `failed` {}",
            self.kills, r.missed_kills, r.heals
        );
        println!(
            "soak: assigns {} ok / {} refused, releases {} ok / {} refused, failed tasks retried {}, requests recovered by lookup {}",
            r.assigns.0, r.assigns.1, r.releases.0, r.releases.1, r.retried, r.recovered
        );
        println!(
            "soak: drained in {:.1} s; message states {:?}; redelivered {}",
            self.drain.as_secs_f64(),
            self.states,
            self.redelivered.len()
        );
        if opts.heal {
            let mut t = r.healed_in.clone();
            t.sort();
            let ms = |d: Option<&Duration>| d.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0);
            println!(
                "soak: self-heal: {} daemon kill(s) with no command after them; serving again in median {:.0} ms, max {:.0} ms; not back {}",
                t.len() as u64 + r.not_healed,
                ms(t.get(t.len() / 2)),
                ms(t.last()),
                r.not_healed
            );
        }
        for (e, n) in &r.errors {
            println!("soak: failed command ×{n}: {e}");
        }
        for n in r.notes.iter().take(20) {
            println!("soak: note: {n}");
        }
        list("lost", &self.lost);
        list("duplicated", &self.duplicated);
        list("redelivered", &self.redelivered);
        list("unanswered", &self.unanswered);
        list("left behind", &self.left);
        if !self.passed() {
            println!("{}", self.logs);
        }
        println!(
            "kills {kills}, messages {}, tasks {}, lost {}, duplicated {}, reruns {}, seed {}, backend {}, unanswered {}, left {}",
            self.messages,
            self.tasks,
            self.lost.len(),
            self.duplicated.len(),
            self.reruns,
            opts.seed,
            opts.backend,
            self.unanswered.len(),
            self.left.len()
        );
    }
}

/// The team file: a mock-model leader (it never finishes the team on its own), three exec
/// teammates that run tasks, one mock-model teammate that answers messages. The model roles
/// get a `max_steps` no soak reaches: every message wakes them for a turn.
fn team_file(backend: &str, url: &str) -> String {
    let model = format!(
        "provider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{url}\"\napi_key_env = \"MOCK_API_KEY\"\n\
         max_steps = 100000000\n"
    );
    let mut s = format!(
        "name = \"{TEAM}\"\nbackend = \"{backend}\"\n\n[defaults]\nprovider = \"exec\"\nrestart = \"on-failure\"\n\n\
         [roles.leader]\n{model}\n\
         [roles.runner]\ndescription = \"Runs the soak's task commands\"\npermissions = {{ bash = \"allow\" }}\n\n\
         [roles.chat]\ndescription = \"Answers messages through the mock model\"\n{model}\n"
    );
    for w in WORKERS {
        s.push_str(&format!(
            "[[teammates]]\nname = \"{w}\"\nrole = \"runner\"\n\n"
        ));
    }
    s.push_str("[[teammates]]\nname = \"m1\"\nrole = \"chat\"\n");
    s
}

/// Waits until `cond` holds or `limit` passes, looking every 250 ms; whether it held.
fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_every(limit, Duration::from_millis(250), cond)
}

/// [`wait_until`], looking every `step` (the heal time is measured to 10 ms).
fn wait_every(limit: Duration, step: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

fn run(opts: &Opts, bin: &Path) -> Result<Report> {
    let mock = MockModel::start_background(Wire::OpenAi).context("cannot start the mock model")?;
    // Each model turn takes one step; far more than a soak uses.
    for agent in ["leader", "m1"] {
        mock.script(agent, vec![Step::Text("Noted.".into()); 100_000]);
    }
    let mut sb = Sandbox::new(bin)?;
    println!("soak: sandbox {}", sb.dir.display());
    std::fs::write(
        sb.dir.join("agent-team.toml"),
        team_file(&opts.backend, &mock.base_url()),
    )?;
    std::fs::write(sb.tokens(), "")?;
    let up = sb.run(
        &["up", "--detach", "--backend", &opts.backend],
        Duration::from_secs(120),
    );
    if !up.ok {
        println!("{}", sb.log_tails(40));
        keep(&mut sb);
        bail!("agent-team up failed: {}{}", up.stdout, up.stderr);
    }
    let all_up = || {
        sb.ps().is_some_and(|agents| {
            AGENTS.iter().all(|n| {
                agents.iter().any(|a| {
                    a.name == *n
                        && a.connected
                        && matches!(a.status, AgentStatus::Running | AgentStatus::Idle)
                })
            })
        })
    };
    if !wait_until(Duration::from_secs(60), all_up) {
        println!("{}", sb.log_tails(40));
        keep(&mut sb);
        bail!("the team did not come up within 60 s: {:?}", sb.ps());
    }

    let rec = Mutex::new(Record::default());
    let gate = Gate::default();
    let end = Instant::now() + Duration::from_secs(opts.seconds);
    let mut master = Rng(opts.seed);
    std::thread::scope(|s| {
        for t in 0..LOAD_THREADS {
            let rng = Rng(master.next());
            let (sb, rec, gate) = (&sb, &rec, &gate);
            s.spawn(move || load(sb, rec, gate, rng, opts.seed, t, end));
        }
        let rng = Rng(master.next());
        let (sb, rec, gate) = (&sb, &rec, &gate);
        s.spawn(move || killer(sb, rec, gate, rng, &opts.backend, opts.heal, end));
    });

    let drain_started = Instant::now();
    let drained = drain(&sb, &rec);
    let drain = drain_started.elapsed();
    let mut report = check(&sb, rec.into_inner().unwrap_or_else(|e| e.into_inner()));
    report.drain = drain;
    if !drained {
        report.record.notes.push(format!(
            "the board or the inboxes did not drain within {DRAIN_LIMIT:?}"
        ));
    }

    // `down`, then nothing of the team may be left.
    let down = sb.run(&["down"], Duration::from_secs(60));
    if !down.ok {
        report
            .left
            .push(format!("`down` failed: {}", down.stderr.trim()));
    }
    let gone = wait_until(Duration::from_secs(20), || {
        sb.processes().is_empty() && !sb.tmux(&["ls"]).ok
    });
    if !gone {
        for (pid, cmd) in sb.processes() {
            report.left.push(format!("process {pid}: {cmd}"));
        }
        if sb.tmux(&["ls"]).ok {
            report
                .left
                .push(format!("a tmux server on {}", sb.tmux_socket().display()));
        }
    }
    if !report.passed() {
        report.logs = sb.log_tails(60);
        keep(&mut sb);
    }
    drop(sb);
    drop(mock);
    Ok(report)
}

/// Keeps the sandbox's files (logs, state) for a failed soak.
fn keep(sb: &mut Sandbox) {
    if let Some(tmp) = sb.tmp.take() {
        println!("soak: kept {} for its logs", tmp.path().display());
        let _ = tmp.keep();
    }
}

/// Waits until every acknowledged task is completed and every acknowledged message has left
/// `queued`, retrying tasks whose command was killed and restarting failed agents.
fn drain(sb: &Sandbox, rec: &Mutex<Record>) -> bool {
    let (tasks, msgs) = {
        let r = locked(rec);
        (r.tasks.clone(), r.msgs.clone())
    };
    let ids: HashMap<u64, &AckTask> = tasks.iter().map(|t| (t.id, t)).collect();
    wait_until(DRAIN_LIMIT, || {
        heal(sb, rec);
        let Some(board) = sb.tasks() else {
            return false;
        };
        let mut done = true;
        for t in board.iter().filter(|t| ids.contains_key(&t.id)) {
            match t.status {
                TaskStatus::Completed => {}
                TaskStatus::Failed => {
                    // A killed command fails its task; the operator puts it back.
                    done = false;
                    if sb
                        .run(&["task", "retry", &t.id.to_string()], COMMAND_LIMIT)
                        .ok
                    {
                        let mut r = locked(rec);
                        r.retried += 1;
                        r.notes.push(format!(
                            "task {} failed ({}) and was retried",
                            t.id,
                            t.result
                                .as_deref()
                                .and_then(|s| s.lines().next())
                                .unwrap_or("")
                        ));
                    }
                }
                _ => done = false,
            }
        }
        if !done || board.iter().filter(|t| ids.contains_key(&t.id)).count() < ids.len() {
            return false;
        }
        AGENTS.iter().all(|a| {
            let Some(inbox) = sb.inbox(a) else {
                return false;
            };
            let queued: Vec<u64> = inbox
                .iter()
                .filter(|m| m.state == DeliveryState::Queued)
                .map(|m| m.id)
                .collect();
            msgs.iter()
                .filter(|m| m.to == *a)
                .all(|m| !queued.contains(&m.id))
        })
    })
}

/// Checks the record against the board, the inboxes, the token file and the agents' logs.
fn check(sb: &Sandbox, record: Record) -> Report {
    let mut rep = Report {
        kills: record.kills.clone(),
        messages: record.msgs.len(),
        tasks: record.tasks.len(),
        unanswered: record.gave_up.clone(),
        ..Report::default()
    };
    check_tasks(sb, &record, &mut rep);
    check_messages(sb, &record, &mut rep);
    rep.redelivered = printed_twice(sb);
    rep.record = record;
    rep
}

/// Tasks: the board says completed once, the token file counts the executions.
fn check_tasks(sb: &Sandbox, record: &Record, rep: &mut Report) {
    let board = sb.tasks().unwrap_or_default();
    if board.is_empty() && !record.tasks.is_empty() {
        rep.lost.push("the board could not be read".into());
    }
    let mut titles: HashMap<&str, Vec<u64>> = HashMap::new();
    for t in &board {
        titles.entry(t.title.as_str()).or_default().push(t.id);
    }
    let text = std::fs::read_to_string(sb.tokens()).unwrap_or_default();
    let mut runs: HashMap<&str, u64> = HashMap::new();
    for l in text.lines() {
        *runs.entry(l.trim()).or_default() += 1;
    }
    for t in &record.tasks {
        let ids = titles.get(t.token.as_str()).cloned().unwrap_or_default();
        if ids.len() > 1 {
            rep.duplicated.push(format!(
                "task {} ({}) is on the board as {ids:?}",
                t.id, t.token
            ));
        }
        match board.iter().find(|b| b.id == t.id) {
            None => rep
                .lost
                .push(format!("task {} ({}) is not on the board", t.id, t.token)),
            Some(b) if b.status != TaskStatus::Completed => rep.lost.push(format!(
                "task {} ({}) ended {:?} owned by {:?}",
                t.id, t.token, b.status, b.owner
            )),
            Some(_) => {}
        }
        match runs.get(t.token.as_str()).copied().unwrap_or(0) {
            0 => rep
                .lost
                .push(format!("task {} ({}) never ran to its end", t.id, t.token)),
            n => rep.reruns += n - 1,
        }
    }
}

/// Messages: each acknowledged id once in its recipient's inbox, no body twice, delivered.
fn check_messages(sb: &Sandbox, record: &Record, rep: &mut Report) {
    let mut bodies: HashMap<String, Vec<(u64, String, DeliveryState)>> = HashMap::new();
    let mut ids: HashMap<u64, u64> = HashMap::new();
    for a in AGENTS {
        let Some(inbox) = sb.inbox(a) else {
            rep.lost.push(format!("the inbox of {a} could not be read"));
            continue;
        };
        for m in inbox.iter().filter(|m| m.body.starts_with("soak-msg-")) {
            bodies
                .entry(m.body.clone())
                .or_default()
                .push((m.id, m.to.clone(), m.state));
            *ids.entry(m.id).or_default() += 1;
        }
    }
    for m in &record.msgs {
        let found = bodies.get(&m.body).cloned().unwrap_or_default();
        match found.as_slice() {
            [] => rep.lost.push(format!(
                "message {} to {} ({}) is in no inbox",
                m.id, m.to, m.body
            )),
            [(id, to, state)] => {
                if *id != m.id || *to != m.to {
                    rep.lost.push(format!(
                        "message {} to {} ({}) is stored as {id} to {to}",
                        m.id, m.to, m.body
                    ));
                } else if *state == DeliveryState::Queued {
                    rep.lost.push(format!(
                        "message {} to {} ({}) was never delivered",
                        m.id, m.to, m.body
                    ));
                }
                *rep.states.entry(state.as_str()).or_default() += 1;
            }
            many => rep.duplicated.push(format!(
                "message {} to {} ({}) is stored {} times: {many:?}",
                m.id,
                m.to,
                m.body,
                many.len()
            )),
        }
        if ids.get(&m.id).copied().unwrap_or(0) > 1 {
            rep.duplicated
                .push(format!("message id {} appears more than once", m.id));
        }
    }
}

/// What the exec teammates printed twice: a message taken twice shows twice in its log. Each
/// printing is kept with the two log lines before it, as evidence.
fn printed_twice(sb: &Sandbox) -> Vec<String> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for w in WORKERS {
        let log = std::fs::read_to_string(sb.team_dir().join("logs").join(format!("{w}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        for (n, l) in lines.iter().enumerate() {
            if let Some(i) = l.find("soak-msg-") {
                let body: String = l[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                let context = lines[n.saturating_sub(2)..=n].join(" | ");
                seen.entry(body)
                    .or_default()
                    .push(format!("{w}.log:{}: {context}", n + 1));
            }
        }
    }
    let mut twice: Vec<String> = seen
        .into_iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(b, places)| {
            format!(
                "{b} printed {} times: {}",
                places.len(),
                places.join(" || ")
            )
        })
        .collect();
    twice.sort();
    twice
}
