//! What grows with the team (issue 67): `up -n N` model teammates against the mock model, the
//! operator adds 3 tasks per teammate, a first broadcast starts one turn each (answered after
//! a second, as a model does), a second is every teammate's go to claim and complete its 3
//! tasks (every turn answered at once), then `down`. Each figure at the large size beside the same figure at the small
//! size, in the same run: in-process at 32 and 1 024, processes at 32 and 256 (`BENCH_SCALE_SIZES`
//! and `BENCH_SCALE_PROCESS_SIZES`, comma-separated; `0` runs none).
//!
//! The teams' runtime dirs are on tmpfs (`/dev/shm`) where there is one, or in
//! `BENCH_SCALE_RUNTIME` ([`runtime_root`]). Looking closer: `BENCH_SCALE_SPREAD` prints each
//! broadcast's first, p10, p50, p90 and last turn; `BENCH_SCALE_PERF=DIR` records the daemon
//! with perf during the first broadcast and `down` (`BENCH_SCALE_PERF_FREQ`, default 2000;
//! `BENCH_SCALE_PERF_ALL` every process without call graphs; `BENCH_SCALE_PERF_ARGS` perf's own
//! arguments, e.g. `record -e sched:sched_switch`); `BENCH_SCALE_TEAM` adds top-level keys to
//! the team file (e.g. `sandbox = "off"`).

use crate::daemon_bench::bin_dir;
use crate::model_bench::{pss_kb, tree};
use crate::report::*;
use agent_team_client::{Client, ReplyExt};
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_paths::Paths;
use agent_team_protocol::{AgentStatus, MessageKind, Reply, Request, TaskStatus};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Tasks each teammate claims and completes.
const TASKS_EACH: u64 = 3;

/// The mock model's threads (`BENCH_SCALE_MOCK_THREADS`). After the claims' broadcast its one
/// thread is busy the whole time while the daemon's is idle more than half of it (perf, 1 024
/// teammates; half of the mock's time is its writes, one per streamed event); a second thread
/// did not change the figures on 2 CPUs (its requests share one lock).
const MOCK_THREADS: usize = 1;

/// The broadcast every teammate waits for.
const GO: &str = "GO-SCALE";

/// The first broadcast: each teammate answers it with one turn the model answers after
/// [`MODEL_DELAY`], as a real model does, so the turns it starts are measured on their own.
const PING: &str = "PING-SCALE";

/// How long the model takes to answer a [`PING`] turn: longer than the whole team takes to
/// start its turns, so no answer (and no next turn) competes with a turn still starting.
const MODEL_DELAY: Duration = Duration::from_secs(1);

/// One size's figures.
struct Figures {
    /// Teammates.
    n: usize,
    /// The daemon's process tree's PSS once all are idle, per teammate, in MiB.
    pss_mib: f64,
    /// `up` until every teammate has taken its first turn and is idle.
    up_idle: Duration,
    /// The operator's `task_add`, mean per task.
    add: Duration,
    /// Tasks claimed and completed per second, from the broadcast until the last completes.
    claims_per_s: f64,
    /// Broadcast → each teammate's next model request, median, with the model answering
    /// after [`MODEL_DELAY`] ([`PING`]).
    bcast_p50: Duration,
    /// The same for the [`GO`] broadcast, whose turns the mock answers at once: each answer
    /// starts the teammate's next turn (6 in a row) while the others' first turns still start,
    /// all on the same 2 CPUs as the mock.
    go_p50: Duration,
    /// `agent-team down`.
    down: Duration,
    /// Prompt tokens of a teammate's first model request (as the mock bills them): what the
    /// roster in its prompt costs each request.
    first_prompt: u64,
}

/// Sizes from `var`, or `default`.
fn sizes(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|n| *n > 0)
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== a team as it grows: in-process and process teammates (issue 67) ==");
    let (runtime, _kept) = runtime_root(dir)?;
    r.note(format!(
        "scale: the teams' runtime dir (sockets, egress proxies) in {}",
        runtime.display()
    ));
    let inproc = sizes(
        "BENCH_SCALE_SIZES",
        if quick { &[8, 64] } else { &[32, 1024] },
    );
    let process = sizes(
        "BENCH_SCALE_PROCESS_SIZES",
        if quick { &[8, 32] } else { &[32, 256] },
    );
    prompt_tokens(
        r,
        dir,
        &runtime,
        if quick { &[4, 32] } else { &[4, 32, 256] },
    )?;
    for (backend, ns) in [("in-process", inproc), ("process", process)] {
        let mut got = Vec::new();
        for n in ns {
            let f = one(dir, &runtime, backend, n)
                .with_context(|| format!("{n} {backend} teammates"))?;
            println!(
                "  {backend} {n}: PSS {:.2} MiB/teammate, up→idle {}, add {}, {} claims/s, broadcast p50 {} (answered at once: {}), down {}",
                f.pss_mib,
                dur(f.up_idle.as_secs_f64()),
                dur(f.add.as_secs_f64()),
                rate(f.claims_per_s),
                dur(f.bcast_p50.as_secs_f64()),
                dur(f.go_p50.as_secs_f64()),
                dur(f.down.as_secs_f64())
            );
            got.push(f);
        }
        if let (Some(small), Some(big)) = (got.first(), got.last())
            && big.n > small.n
        {
            report(r, backend, small, big);
        }
    }
    Ok(())
}

/// Where the teams' runtime dirs go: `BENCH_SCALE_RUNTIME`, else a temp dir on tmpfs
/// (`/dev/shm`) where there is one, as `XDG_RUNTIME_DIR` is on a systemd machine and `/tmp` on
/// Debian 13 (the runtime dir holds a socket per agent, an inode created and deleted on each
/// team's start and `down`: on a journaled disk that is ~60 ms of `down` at 1 024 agents),
/// else under `dir`. The state (the store's files) stays under `dir` either way: the teams
/// run on the same `AGENT_TEAM_HOME`.
fn runtime_root(dir: &Path) -> Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    if let Some(r) = std::env::var_os("BENCH_SCALE_RUNTIME") {
        return Ok((std::path::PathBuf::from(r), None));
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(t) = tempfile::Builder::new()
            .prefix("agent-team-bench-")
            .tempdir_in(shm)
    {
        return Ok((t.path().to_path_buf(), Some(t)));
    }
    Ok((dir.to_path_buf(), None))
}

/// A teammate's prompt tokens at each team size: flat past a small team (the prompt names at
/// most a few members and counts the rest).
fn prompt_tokens(r: &mut Report, dir: &Path, runtime: &Path, sizes: &[usize]) -> Result<()> {
    let mut got = Vec::new();
    for &n in sizes {
        let f = one(dir, runtime, "in-process", n)
            .with_context(|| format!("{n} teammates' prompts"))?;
        println!(
            "  {n} teammates: a teammate's first prompt {} tokens",
            f.first_prompt
        );
        got.push((n, f.first_prompt));
    }
    if let (Some((s, small)), Some((b, big))) = (got.first(), got.last()) {
        let ratio = *big as f64 / (*small).max(1) as f64;
        r.add(
            &format!("scale: a teammate's prompt tokens, {b} teammates vs {s}"),
            format!("{big} tok"),
            format!("{small} tok"),
            format!("{ratio:.3}x"),
            "≤ 1.05x (flat)",
            ratio <= 1.05,
        );
        r.note(format!(
            "scale: a teammate's first prompt at {}",
            got.iter()
                .map(|(n, t)| format!("{n} teammates: {t} tokens"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Writes the large size's figures beside the small size's.
fn report(r: &mut Report, backend: &str, small: &Figures, big: &Figures) {
    let (s, b) = (small.n, big.n);
    let in_process = backend == "in-process";
    let name = |what: &str| format!("scale {backend} {b} vs {s}: {what}");
    // The goals hold for the in-process team at 1 024; a process team is to stay
    // linear: each per-teammate figure within 1.5× of the small team's.
    let linear = |big: f64, small: f64| big <= small * 1.5;
    r.add(
        &name("PSS per teammate"),
        format!("{:.2} MiB", big.pss_mib),
        format!("{:.2} MiB", small.pss_mib),
        format!("{:.2}x", big.pss_mib / small.pss_mib.max(1e-9)),
        if in_process {
            "≤ 0.6 MiB"
        } else {
            "≤ 1.5x"
        },
        if in_process {
            big.pss_mib <= 0.6
        } else {
            linear(big.pss_mib, small.pss_mib)
        },
    );
    let per = |d: Duration, n: usize| d.as_secs_f64() / n as f64;
    r.add(
        &name("up → all idle"),
        dur(big.up_idle.as_secs_f64()),
        dur(small.up_idle.as_secs_f64()),
        format!(
            "{:.2}x/tm",
            per(big.up_idle, b) / per(small.up_idle, s).max(1e-12)
        ),
        if in_process {
            "≤ 2 s"
        } else {
            "≤ 1.5x per teammate"
        },
        if in_process {
            big.up_idle <= Duration::from_secs(2)
        } else {
            linear(per(big.up_idle, b), per(small.up_idle, s))
        },
    );
    r.add(
        &name("operator task add, per task"),
        dur(big.add.as_secs_f64()),
        dur(small.add.as_secs_f64()),
        format!(
            "{:.2}x",
            big.add.as_secs_f64() / small.add.as_secs_f64().max(1e-12)
        ),
        "≤ 1.5x",
        linear(big.add.as_secs_f64(), small.add.as_secs_f64()),
    );
    r.add(
        &name("tasks claimed and done per second"),
        rate(big.claims_per_s),
        rate(small.claims_per_s),
        format!("{:.2}x", small.claims_per_s / big.claims_per_s.max(1e-9)),
        "≥ 1/1.5 of small",
        big.claims_per_s * 1.5 >= small.claims_per_s,
    );
    if in_process {
        r.add(
            &name("broadcast → next turn, p50"),
            dur(big.bcast_p50.as_secs_f64()),
            dur(small.bcast_p50.as_secs_f64()),
            format!(
                "{:.2}x",
                big.bcast_p50.as_secs_f64() / small.bcast_p50.as_secs_f64().max(1e-12)
            ),
            "≤ 50 ms",
            big.bcast_p50 <= Duration::from_millis(50),
        );
        r.note(format!(
            "scale {backend}: broadcast → next turn p50 when each turn is answered at once \
             (the claims' broadcast): {} at {b}, {} at {s}",
            dur(big.go_p50.as_secs_f64()),
            dur(small.go_p50.as_secs_f64())
        ));
    }
    r.add(
        &name("down"),
        dur(big.down.as_secs_f64()),
        dur(small.down.as_secs_f64()),
        format!(
            "{:.2}x/tm",
            per(big.down, b) / per(small.down, s).max(1e-12)
        ),
        if in_process {
            "≤ 250 ms"
        } else {
            "≤ 1.5x per teammate"
        },
        if in_process {
            big.down <= Duration::from_millis(250)
        } else {
            linear(per(big.down, b), per(small.down, s))
        },
    );
}

/// The mock's script: the leader only answers; teammate `i` waits for [`GO`], then claims and
/// completes its own tasks one call a turn.
fn script(mock: &MockModel, n: usize) {
    let forever =
        |text: &str| Step::until(&["NEVER-IN-ANY-REQUEST"], Step::Text(text.into()), text);
    mock.script("leader", vec![forever("Ready.")]);
    for i in 0..n {
        let ping = Step::Delay(MODEL_DELAY, Box::new(Step::Text("Ok.".into())));
        let mut steps = vec![Step::until(&[PING], ping, "Ready.")];
        for k in 0..TASKS_EACH {
            let id = i as u64 * TASKS_EACH + k + 1;
            let claim = Step::tools(&[("claim_task", json!({ "id": id }))]);
            steps.push(match k {
                0 => Step::until(&[GO], claim, "Ready."),
                _ => claim,
            });
            steps.push(Step::tools(&[(
                "update_task_status",
                json!({"id": id, "status": "completed", "result": "done"}),
            )]));
        }
        steps.push(forever("Done."));
        mock.script(&format!("worker-{}", i + 1), steps);
    }
}

/// One team of `n` teammates on `backend`, measured through its phases.
fn one(dir: &Path, runtime: &Path, backend: &str, n: usize) -> Result<Figures> {
    let threads = std::env::var("BENCH_SCALE_MOCK_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MOCK_THREADS);
    let mock = MockModel::start_background_on(Wire::OpenAi, threads)?;
    if std::env::var_os("BENCH_SCALE_KEEP_REQUESTS").is_none() {
        mock.keep_requests(false);
    }
    script(&mock, n);
    // A team of its own each run: a second run of one size would find the first one's board.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let team = format!("scale-{}-{n}-{run}", backend.replace('-', ""));
    // More top-level keys of the team file, to look closer (`BENCH_SCALE_TEAM='sandbox =
    // "off"'`: no agent's sandbox, so no egress proxy either).
    let extra = std::env::var("BENCH_SCALE_TEAM").unwrap_or_default();
    let mut t = MockTeam::new(
        dir,
        &team,
        &format!("max_teammates = {n}\n{extra}\n"),
        &mock,
    )?;
    t.runtime = runtime.join("run");
    let cli = |args: &[&str]| t.cli(args);
    let (home, runtime) = (&t.home, &t.runtime);
    let names: Vec<String> = (1..=n).map(|i| format!("worker-{i}")).collect();
    let t0 = Instant::now();
    cli(&[
        "up",
        "--backend",
        backend,
        "--detach",
        "-n",
        &n.to_string(),
        "Wait for the operator.",
    ])?;
    let tp = Paths::new(home, runtime).team(&team)?;
    let mut op = Client::operator(&tp)?;
    let daemon = op.welcome().daemon_pid;
    // Up → every teammate has taken its first turn and is idle.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let agents = match op.call(Request::Agents)? {
            Reply::Agents { agents } => agents,
            other => bail!("unexpected reply {other:?}"),
        };
        let idle = agents
            .iter()
            .filter(|a| a.name != "leader" && a.status == AgentStatus::Idle)
            .count();
        if idle == n && names.iter().all(|w| !mock.request_times(w).is_empty()) {
            break;
        }
        if let Some(bad) = agents.iter().find(|a| a.status == AgentStatus::Failed) {
            bail!("{} failed while the team started", bad.name);
        }
        if Instant::now() > deadline {
            bail!("only {idle} of {n} teammates idle after 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let up_idle = t0.elapsed();
    let first_prompt = mock.billed("worker-1").prompt();
    let pss_kib: u64 = tree(daemon).iter().map(|p| pss_kb(*p)).sum();
    // The operator adds every task.
    let added = Instant::now();
    for i in 0..n as u64 * TASKS_EACH {
        op.call(Request::TaskAdd {
            title: format!("task {}", i + 1),
            description: String::new(),
            run: None,
            blocked_by: vec![],
            assign: None,
            key: None,
        })
        .task()
        .context("task add")?;
    }
    let add = added.elapsed() / (n as u32 * TASKS_EACH as u32);
    let profile = |phase: &str| perf_start(daemon, &format!("{backend}-{n}-{phase}"));
    // The first broadcast: every teammate takes one turn, answered after `MODEL_DELAY`.
    let before: Vec<usize> = names.iter().map(|w| mock.request_times(w).len()).collect();
    let answered: Vec<u64> = names.iter().map(|w| mock.billed(w).output).collect();
    let mut perf = profile("broadcast");
    let sent = Instant::now();
    op.call(Request::Send {
        to: "*".into(),
        body: format!("{PING}: say ok."),
        kind: MessageKind::Text,
        summary: None,
        dedup: None,
    })?;
    let bcast_p50 = next_turns(&mock, &names, &before, sent)?;
    perf_stop(perf.take());
    // Every one answered and idle again before the tasks come.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let all_answered = names
            .iter()
            .zip(&answered)
            .all(|(w, k)| mock.billed(w).output > *k);
        let idle = match op.call(Request::Agents)? {
            Reply::Agents { agents } => agents
                .iter()
                .filter(|a| a.name != "leader" && a.status == AgentStatus::Idle)
                .count(),
            other => bail!("unexpected reply {other:?}"),
        };
        if all_answered && idle == n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {idle} of {n} teammates idle after the first broadcast's turn");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second broadcast: each teammate's go, every turn answered at once.
    let before: Vec<usize> = names.iter().map(|w| mock.request_times(w).len()).collect();
    let sent = Instant::now();
    op.call(Request::Send {
        to: "*".into(),
        body: format!("{GO}: claim and complete your tasks."),
        kind: MessageKind::Text,
        summary: None,
        dedup: None,
    })?;
    let go_p50 = next_turns(&mock, &names, &before, sent)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let total = n as u64 * TASKS_EACH;
    loop {
        let done = match op.call(Request::TaskList {
            status: Some(TaskStatus::Completed),
            after: None,
        })? {
            // A page is enough to count: it says when more follow.
            Reply::Tasks { tasks, more } => {
                if more == Some(true) {
                    count_completed(&mut op)?
                } else {
                    tasks.len() as u64
                }
            }
            other => bail!("unexpected reply {other:?}"),
        };
        if done == total {
            break;
        }
        if Instant::now() > deadline {
            bail!("{done} of {total} tasks completed after 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let work = sent.elapsed();
    drop(op);
    let perf = profile("down");
    let down_at = Instant::now();
    cli(&["down"])?;
    let down = down_at.elapsed();
    perf_stop(perf);
    Ok(Figures {
        n,
        pss_mib: pss_kib as f64 / 1024.0 / n as f64,
        up_idle,
        add,
        claims_per_s: total as f64 / work.as_secs_f64(),
        bcast_p50,
        go_p50,
        down,
        first_prompt,
    })
}

/// Waits until each of `names` has made a model request past its count in `before`; the
/// median time from `sent` to that request's arrival.
fn next_turns(
    mock: &MockModel,
    names: &[String],
    before: &[usize],
    sent: Instant,
) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut turns: Vec<f64> = names
            .iter()
            .zip(before)
            .filter_map(|(w, k)| {
                mock.request_times(w)
                    .get(*k)
                    .map(|t| t.saturating_duration_since(sent).as_secs_f64())
            })
            .collect();
        if turns.len() == names.len() {
            if std::env::var_os("BENCH_SCALE_SPREAD").is_some() {
                let mut t = turns.clone();
                let ms = |p: f64, t: &mut Vec<f64>| pct(t, p) * 1e3;
                eprintln!(
                    "  spread ms: first {:.1} p10 {:.1} p50 {:.1} p90 {:.1} last {:.1}",
                    ms(0.0, &mut t),
                    ms(10.0, &mut t),
                    ms(50.0, &mut t),
                    ms(90.0, &mut t),
                    ms(100.0, &mut t)
                );
            }
            return Ok(Duration::from_secs_f64(pct(&mut turns, 50.0)));
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} teammates took a turn after the broadcast",
                turns.len(),
                names.len()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Completed tasks, page by page.
fn count_completed(op: &mut Client) -> Result<u64> {
    let (mut count, mut after) = (0, None);
    loop {
        match op.call(Request::TaskList {
            status: Some(TaskStatus::Completed),
            after,
        })? {
            Reply::Tasks { tasks, more } => {
                count += tasks.len() as u64;
                after = tasks.last().map(|t| t.id);
                if more != Some(true) || after.is_none() {
                    return Ok(count);
                }
            }
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// With `BENCH_SCALE_PERF=DIR`: `perf record` of the daemon's process into DIR/NAME.data for
/// one phase (what grows with the team shows there), stopped by [`perf_stop`].
fn perf_start(pid: u32, name: &str) -> Option<std::process::Child> {
    let dir = std::env::var_os("BENCH_SCALE_PERF")?;
    let out = Path::new(&dir).join(format!("{name}.data"));
    let mut perf = Command::new("perf");
    if let Ok(a) = std::env::var("BENCH_SCALE_PERF_ARGS") {
        // perf's own arguments, e.g. `record -e sched:sched_switch` (where the core waits).
        perf.args(a.split_whitespace())
            .arg("-p")
            .arg(pid.to_string());
    } else if std::env::var_os("BENCH_SCALE_PERF_ALL").is_some() {
        // Every process on the machine (the mock's too), without call graphs.
        perf.args(["record", "-F", "10000", "-a"]);
    } else {
        let freq = std::env::var("BENCH_SCALE_PERF_FREQ").unwrap_or_else(|_| "2000".into());
        perf.args(["record", "-F", &freq, "--call-graph", "dwarf,16384", "-p"])
            .arg(pid.to_string());
    }
    let child = perf
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // perf is attached once its output file exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The file comes before the sampling of every thread is set up: a profiled phase that
    // started at once lost most of its samples.
    std::thread::sleep(Duration::from_millis(500));
    Some(child)
}

/// Ends a [`perf_start`] profile (SIGINT, as perf expects) and waits for its file.
fn perf_stop(child: Option<std::process::Child>) {
    if let Some(mut c) = child {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}

/// A team file of model agents against `mock` in its own directory, and the `agent-team`
/// command run there with the bench's home and runtime dirs.
pub(crate) struct MockTeam {
    ws: std::path::PathBuf,
    /// `AGENT_TEAM_HOME`.
    pub(crate) home: std::path::PathBuf,
    /// `AGENT_TEAM_RUNTIME_DIR`.
    pub(crate) runtime: std::path::PathBuf,
}

impl MockTeam {
    /// Writes team `team`'s file (`extra`: more top-level keys) under `dir`.
    pub(crate) fn new(dir: &Path, team: &str, extra: &str, mock: &MockModel) -> Result<MockTeam> {
        let ws = dir.join(team);
        std::fs::create_dir_all(&ws)?;
        std::fs::write(
            ws.join("agent-team.toml"),
            format!(
                "name = \"{team}\"\nboard = false\n{extra}\
                 [defaults]\nprovider = \"openai\"\nmodel = \"mock\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_KEY\"\n",
                mock.base_url()
            ),
        )?;
        Ok(MockTeam {
            ws,
            home: dir.join("home"),
            runtime: dir.join("run"),
        })
    }

    /// Runs `agent-team ARGS` in the team's directory; its stderr is the error.
    pub(crate) fn cli(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(bin_dir().join("agent-team"))
            .args(args)
            .current_dir(&self.ws)
            .env("AGENT_TEAM_HOME", &self.home)
            .env("AGENT_TEAM_RUNTIME_DIR", &self.runtime)
            .env("MOCK_KEY", "k")
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "agent-team {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
