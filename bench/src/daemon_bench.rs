//! Figures of the daemon itself: message latency and throughput, broadcast, racing claims,
//! restart with a large store, memory and idle CPU.

use agent_team_client::{Client, agent_hello};
use agent_team_paths::{Paths, TeamPaths};
use agent_team_protocol::*;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A real daemon process in a temp dir.
pub struct BenchTeam {
    /// State and runtime roots.
    pub paths: Paths,
    /// The team's files.
    pub tp: TeamPaths,
    child: Option<Child>,
    secrets: std::collections::HashMap<String, String>,
    /// The team's name.
    pub team: String,
    /// Variables given to the daemon besides the homes (the telemetry section's `OTEL_*`).
    env: Vec<(String, String)>,
}

/// The directory of the release binaries.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("AGENT_TEAM_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

impl BenchTeam {
    /// Starts `agent-team daemon --foreground` for `team` under `root`.
    pub fn start(root: &Path, team: &str) -> Result<Self> {
        Self::start_with_env(root, team, Vec::new())
    }

    /// [`BenchTeam::start`] with `env` in the daemon's environment.
    pub fn start_with_env(root: &Path, team: &str, env: Vec<(String, String)>) -> Result<Self> {
        let paths = Paths::new(root.join("home"), root.join("run"));
        let tp = paths.team(team)?;
        let mut t = BenchTeam {
            paths,
            tp,
            child: None,
            secrets: Default::default(),
            team: team.to_string(),
            env,
        };
        t.spawn()?;
        Ok(t)
    }

    /// (Re)starts the daemon process and waits until it answers; returns the wait.
    pub fn spawn(&mut self) -> Result<Duration> {
        let t0 = Instant::now();
        let child = Command::new(bin_dir().join("agent-team"))
            .args(["daemon", "--foreground", "--team", &self.team])
            .env("AGENT_TEAM_HOME", &self.paths.home)
            .env("AGENT_TEAM_RUNTIME_DIR", &self.paths.runtime)
            .env(
                "AGENT_TEAM_LOG",
                std::env::var("AGENT_TEAM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the daemon (build with `cargo xtask bench`)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Client::operator(&self.tp)
                && c.call(Request::Ping).is_ok()
            {
                return Ok(t0.elapsed());
            }
            if Instant::now() > deadline {
                bail!("the daemon did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// How many agents this bench registered.
    pub fn registered(&self) -> usize {
        self.secrets.len()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )?;
            c.wait()?;
        }
        Ok(())
    }

    /// An operator connection.
    pub fn operator(&self) -> Result<Client> {
        Ok(no_rids(Client::operator(&self.tp)?))
    }

    /// Registers external agents.
    pub fn register(&mut self, names: &[String]) -> Result<()> {
        let mut op = self.operator()?;
        for n in names
            .iter()
            .filter(|n| !self.secrets.contains_key(*n))
            .cloned()
            .collect::<Vec<_>>()
            .iter()
        {
            let role = if n == "leader" { "leader" } else { "worker" };
            match op.call(Request::Register {
                name: n.clone(),
                role: role.into(),
            })? {
                Reply::Registered { secret, .. } => {
                    self.secrets.insert(n.clone(), secret);
                }
                other => bail!("unexpected {other:?}"),
            }
        }
        Ok(())
    }

    /// A connection as agent `name`.
    pub fn agent(&self, name: &str) -> Result<Client> {
        let secret = self.secrets.get(name).context("agent not registered")?;
        Ok(no_rids(Client::connect(
            &self.tp.socket,
            &agent_hello(&self.team, name, secret, 0),
        )?))
    }
}

/// With `BENCH_NO_RID=1` the bench's clients send no request ids, to measure what remembering
/// replies costs the daemon (docs/BENCHMARKS.md, issue 11).
fn no_rids(c: Client) -> Client {
    if std::env::var_os("BENCH_NO_RID").is_some_and(|v| v == "1") {
        c.without_request_ids()
    } else {
        c
    }
}

impl Drop for BenchTeam {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed run must not leave the team's tmux server behind.
        if self.tp.tmux_socket.exists() {
            let _ = Command::new("tmux")
                .arg("-S")
                .arg(&self.tp.tmux_socket)
                .arg("kill-server")
                .env_remove("TMUX")
                .output();
        }
    }
}

pub(crate) fn send_req(to: &str, body: String) -> Request {
    Request::Send {
        to: to.into(),
        body,
        kind: MessageKind::Text,
        summary: None,
        dedup: None,
    }
}

/// A thread that reads message pushes, acknowledges them as read in batches, and reports the
/// arrival instant of each to `arrivals` (if given).
pub(crate) fn receiver(
    mut c: Client,
    stop: Arc<AtomicBool>,
    arrivals: Option<std::sync::mpsc::Sender<Instant>>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut seen = 0u64;
        let mut ids = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match c.next_push(Some(Duration::from_millis(if ids.is_empty() {
                50
            } else {
                0
            }))) {
                Ok(Push::Message { message, .. }) => {
                    if let Some(a) = &arrivals {
                        let _ = a.send(Instant::now());
                    }
                    seen += 1;
                    ids.push(message.id);
                    if ids.len() < 256 {
                        continue;
                    }
                }
                Ok(_) => continue,
                Err(agent_team_client::ClientError::Timeout) => {}
                Err(_) => break,
            }
            if !ids.is_empty() {
                let batch = std::mem::take(&mut ids);
                if c.send(Request::Ack {
                    ids: batch,
                    state: DeliveryState::Read,
                })
                .is_err()
                    || c.flush().is_err()
                {
                    break;
                }
            }
        }
        seen
    })
}

/// Durable A→daemon→B latency samples, in seconds.
/// One message from `a` to `lat-b`, whose receiver says on `rx` when it arrived: the
/// latency in seconds, once `a`'s send is acknowledged.
pub(crate) fn one_message(
    a: &mut Client,
    rx: &std::sync::mpsc::Receiver<Instant>,
    body: &str,
) -> Result<f64> {
    let t0 = Instant::now();
    a.send(send_req("lat-b", body.to_string()))?;
    a.flush()?;
    let t1 = rx
        .recv_timeout(Duration::from_secs(10))
        .context("a message did not arrive")?;
    a.next_response()?.1.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((t1 - t0).as_secs_f64())
}

pub fn message_latency(team: &mut BenchTeam, n: usize) -> Result<Vec<f64>> {
    team.register(&["lat-a".into(), "lat-b".into()])?;
    let mut a = team.agent("lat-a")?;
    let b = team.agent("lat-b")?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let rh = receiver(b, stop.clone(), Some(tx));
    let mut out = Vec::with_capacity(n);
    let body = "x".repeat(100);
    for i in 0..n + 200 {
        let lat = one_message(&mut a, &rx, &body)?;
        if i >= 200 {
            out.push(lat);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = rh.join();
    Ok(out)
}

/// Acknowledged durable messages per second with `senders` pipelining senders.
pub fn message_throughput(team: &mut BenchTeam, senders: usize, secs: f64) -> Result<(f64, u64)> {
    let names: Vec<String> = (0..senders)
        .map(|i| format!("tp-s{i}"))
        .chain((0..2).map(|i| format!("tp-r{i}")))
        .collect();
    team.register(&names)?;
    let stop = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = (0..2)
        .map(|i| {
            Ok(receiver(
                team.agent(&format!("tp-r{i}"))?,
                stop.clone(),
                None,
            ))
        })
        .collect::<Result<_>>()?;
    let acked = Arc::new(AtomicU64::new(0));
    let full = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(senders + 1));
    let deadline = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut handles = Vec::new();
    for i in 0..senders {
        let mut c = team.agent(&format!("tp-s{i}"))?;
        let (acked, full, barrier, deadline) = (
            acked.clone(),
            full.clone(),
            barrier.clone(),
            deadline.clone(),
        );
        handles.push(std::thread::spawn(move || -> Result<()> {
            barrier.wait();
            let end = deadline
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .unwrap_or_else(Instant::now);
            let body = "x".repeat(100);
            let mut n = 0u64;
            while Instant::now() < end {
                const WINDOW: usize = 128;
                for _ in 0..WINDOW {
                    c.send(send_req(&format!("tp-r{}", n % 2), body.clone()))?;
                    n += 1;
                }
                c.flush()?;
                for _ in 0..WINDOW {
                    match c.next_response()?.1 {
                        Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.code == ErrorCode::InboxFull => {
                            full.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => bail!("{e}"),
                    };
                }
            }
            Ok(())
        }));
    }
    let t0 = Instant::now();
    *deadline.lock().map_err(|_| anyhow::anyhow!("poisoned"))? =
        Some(t0 + Duration::from_secs_f64(secs));
    barrier.wait();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for r in receivers {
        let _ = r.join();
    }
    Ok((
        acked.load(Ordering::Relaxed) as f64 / elapsed,
        full.load(Ordering::Relaxed),
    ))
}

/// Deliveries per second of pipelined broadcasts to `members` agents.
pub fn broadcast(team: &mut BenchTeam, members: usize, secs: f64) -> Result<f64> {
    let names: Vec<String> = (0..members).map(|i| format!("bc-{i}")).collect();
    team.register(&names)?;
    let stop = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = names[1..]
        .iter()
        .map(|n| Ok(receiver(team.agent(n)?, stop.clone(), None)))
        .collect::<Result<_>>()?;
    let mut c = team.agent(&names[0])?;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut deliveries = 0u64;
    let mut refused = 0u64;
    let body = "x".repeat(100);
    while Instant::now() < end {
        for _ in 0..16 {
            c.send(send_req("*", body.clone()))?;
        }
        c.flush()?;
        for _ in 0..16 {
            match c.next_response()?.1 {
                Ok(Reply::Sent { ids, .. }) => deliveries += ids.len() as u64,
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::InboxFull => refused += 1,
                Err(e) => bail!("{e}"),
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for r in receivers {
        let _ = r.join();
    }
    if refused > 0 {
        println!("  ({refused} broadcasts met inbox_full back-pressure)");
    }
    Ok(deliveries as f64 / elapsed)
}

/// `claimers` agents racing over `tasks` tasks with claim-next + complete: claims per second,
/// after checking that each task was claimed and completed exactly once.
pub fn racing_claims(team: &mut BenchTeam, claimers: usize, tasks: usize) -> Result<f64> {
    let mut op = team.operator()?;
    let first = {
        let mut first = None;
        for chunk in 0..tasks.div_ceil(256) {
            let n = 256.min(tasks - chunk * 256);
            for _ in 0..n {
                op.send(Request::TaskAdd {
                    title: "t".into(),
                    description: String::new(),
                    run: None,
                    blocked_by: vec![],
                    assign: None,
                    key: None,
                })?;
            }
            op.flush()?;
            for _ in 0..n {
                if let (_, Ok(Reply::Task { task })) = op.next_response()? {
                    first.get_or_insert(task.id);
                }
            }
        }
        first.context("no task was created")?
    };
    let names: Vec<String> = (0..claimers).map(|i| format!("cl-{i}")).collect();
    team.register(&names)?;
    let barrier = Arc::new(Barrier::new(claimers + 1));
    let mut handles = Vec::new();
    for n in &names {
        let mut c = team.agent(n)?;
        let barrier = barrier.clone();
        handles.push(std::thread::spawn(move || -> Result<u64> {
            barrier.wait();
            // Like an efficient worker: finish the task and ask for the next one in the same
            // write; the daemon answers in order, so the claim sees the finish.
            let mut claimed = 0;
            let mut reply = c.call(Request::TaskClaimNext)?;
            loop {
                match reply {
                    Reply::MaybeTask { task: Some(t) } => {
                        claimed += 1;
                        let done = c.send(Request::TaskFinish {
                            id: t.id,
                            status: TaskStatus::Completed,
                            result: None,
                        })?;
                        let next = c.send(Request::TaskClaimNext)?;
                        c.flush()?;
                        c.wait(done)?;
                        reply = c.wait(next)?;
                    }
                    _ => return Ok(claimed),
                }
            }
        }));
    }
    barrier.wait();
    let t0 = Instant::now();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("claimer panicked"))??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let all = op.all_tasks(None)?;
    let ours: Vec<&Task> = all.iter().filter(|t| t.id >= first).collect();
    let once = ours.len() == tasks
        && ours
            .iter()
            .all(|t| t.status == TaskStatus::Completed && t.attempts == 1);
    if !once || total as usize != tasks {
        bail!("claims were not exactly once: {total} claims for {tasks} tasks");
    }
    Ok(tasks as f64 / elapsed)
}

/// Fills a team's store directly with `tasks` tasks and `messages` messages (most of them read).
pub fn fill_store(tp: &TeamPaths, team: &str, tasks: usize, messages: usize) -> Result<()> {
    use agent_team_state::Change;
    tp.ensure_dirs()?;
    let mut store = agent_team_store::Store::open(&tp.db, team)?;
    let now = Timestamp::from(std::time::SystemTime::now());
    let mut changes = Vec::with_capacity(100_000);
    for id in 1..=tasks as u64 {
        changes.push(Change::Task(Task {
            id,
            key: None,
            title: format!("task {id}"),
            description: String::new(),
            run: Some("true".into()),
            status: if id % 2 == 0 {
                TaskStatus::Completed
            } else {
                TaskStatus::Pending
            },
            owner: None,
            blocked_by: vec![],
            blocks: vec![],
            created_by: "operator".into(),
            result: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        }));
        if changes.len() >= 100_000 {
            store.commit(&std::mem::take(&mut changes))?;
        }
    }
    for id in 1..=messages as u64 {
        let unread = id % 1000 == 0;
        changes.push(Change::MessageNew(Message {
            id,
            from: "leader".into(),
            to: format!("w{}", id % 10),
            kind: MessageKind::Text,
            body: "a message body of some length".into(),
            summary: None,
            ts: now,
            state: if unread {
                DeliveryState::Queued
            } else {
                DeliveryState::Read
            },
        }));
        if changes.len() >= 100_000 {
            store.commit(&std::mem::take(&mut changes))?;
        }
    }
    store.commit(&changes)?;
    Ok(())
}

/// Resident and peak memory of a process, in bytes, from /proc.
pub fn rss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_secs(pid: u32) -> f64 {
    stat_cpu(pid, false)
}

/// CPU seconds of a process plus those of the children it has reaped (e.g. its tmux commands).
pub fn cpu_secs_with_children(pid: u32) -> f64 {
    stat_cpu(pid, true)
}

fn stat_cpu(pid: u32, children: bool) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let own = ticks(11) + ticks(12);
    let reaped = if children { ticks(13) + ticks(14) } else { 0.0 };
    (own + reaped) / hz
}
