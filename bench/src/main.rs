//! `agent-team-bench`: the SPEC §6 figures, each printed beside a floor measured in the same run.
//! Run it through `cargo xtask bench` (release build); `--save` writes docs/BENCHMARKS.md.

mod board_bench;
mod clis_bench;
mod cost_bench;
mod daemon_bench;
mod finish_bench;
mod floor;
mod foundation_bench;
mod hardening_bench;
mod heal_bench;
mod link_order;
mod model_bench;
mod pane_bench;
mod peer_bench;
mod python_bench;
mod remote_bench;
mod report;
mod sandbox_bench;
mod service_bench;
mod worker_bench;

use anyhow::Result;
use daemon_bench::*;
use report::*;
use std::time::{Duration, Instant};

/// Set (to the dir `TMPDIR` names) in the bench process that does the work.
const PRIVATE_TMP: &str = "AGENT_TEAM_BENCH_TMPDIR";

/// Runs the bench again with `TMPDIR` on a dir of its own, removed when it ends: the agent
/// CLIs' Bun runtimes unpack a native library into `$TMPDIR` at every start and never remove it
/// (5–14 MB a start, gigabytes over a few benches).
fn with_private_tmp() -> Result<()> {
    use anyhow::Context;
    let tmp = tempfile::Builder::new().prefix("at-bench-tmp-").tempdir()?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env("TMPDIR", tmp.path())
        .env(PRIVATE_TMP, tmp.path())
        .status()
        .context("cannot run the bench")?;
    drop(tmp);
    std::process::exit(status.code().unwrap_or(1));
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("relay") {
        let sock = args
            .get(1)
            .ok_or_else(|| anyhow::anyhow!("relay needs a socket path"))?;
        return floor::relay_main(std::path::Path::new(sock));
    }
    if std::env::var_os(PRIVATE_TMP).is_none() {
        return with_private_tmp();
    }
    let save = args.iter().any(|a| a == "--save");
    let quick = args.iter().any(|a| a == "--quick");
    let mut r = Report::default();
    let started = Instant::now();
    let only = std::env::var("BENCH_SECTION").ok();
    if only.as_deref().is_none_or(|s| s == "core") {
        core(&mut r, quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "workers") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        worker_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "panes") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        pane_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "foundation") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        foundation_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "hardening") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        hardening_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "heal") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        heal_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "service") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        service_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "serve-limits") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        service_bench::run_limits(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "board") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        board_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "models") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        model_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "sandbox") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        sandbox_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "finish") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        finish_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "remote") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        remote_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "clis") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        clis_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "python") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        python_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "peer") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        peer_bench::run(&mut r, dir.path(), quick)?;
    }
    if only.as_deref().is_none_or(|s| s == "cost") {
        let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
        cost_bench::run(&mut r, dir.path(), quick)?;
    }
    println!(
        "\nbench finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if save {
        save_report(&r)?;
    }
    Ok(())
}

fn core(r: &mut Report, quick: bool) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("at-bench-").tempdir()?;
    let n = if quick { 500 } else { 3000 };
    println!("== daemon, messages and tasks (issue 2) ==");

    let mut team = BenchTeam::start(dir.path(), "bench")?;
    if std::env::var("BENCH_ONLY").as_deref() == Ok("latency") {
        let mut fs = floor::fsync_latency(dir.path(), 500, 300)?;
        let mut lat = message_latency(&mut team, 2000)?;
        println!(
            "latency p50 {} (fsync p50 {})",
            dur(pct(&mut lat, 50.0)),
            dur(pct(&mut fs, 50.0))
        );
        team.stop()?;
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("claims") {
        let c = racing_claims(&mut team, 10, 5000)?;
        println!("claims {c:.0}/s");
        team.stop()?;
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("broadcast") {
        let bc = broadcast(&mut team, 100, 5.0)?;
        println!("broadcast {bc:.0} deliveries/s");
        team.stop()?;
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("throughput") {
        let (tp, _) = message_throughput(&mut team, 4, 5.0)?;
        println!("throughput {tp:.0}/s");
        team.stop()?;
        return Ok(());
    }
    // Three rounds, each floor measured right before ours, so a noisy disk moves both alike;
    // the medians over all rounds are reported.
    let (mut fs, mut relay, mut lat) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        fs.extend(floor::fsync_latency(dir.path(), n / 6, 300)?);
        relay.extend(floor::relay_latency(dir.path(), n / 3, 140)?);
        lat.extend(message_latency(&mut team, n / 3)?);
    }
    let (fs50, fs99) = (pct(&mut fs, 50.0), pct(&mut fs, 99.0));
    let (rl50, rl99) = (pct(&mut relay, 50.0), pct(&mut relay, 99.0));
    let (p50, p99) = (pct(&mut lat, 50.0), pct(&mut lat, 99.0));
    let floor50 = fs50 + rl50;
    r.add(
        "durable message A→daemon→B, p50",
        dur(p50),
        format!(
            "{} (fsync {} + relay {})",
            dur(floor50),
            dur(fs50),
            dur(rl50)
        ),
        format!("{:.2}×", p50 / floor50),
        "≤ 2× floor",
        p50 <= 2.0 * floor50,
    );
    r.add(
        "durable message A→daemon→B, p99",
        dur(p99),
        format!(
            "{} (fsync {} + relay {})",
            dur(fs99 + rl99),
            dur(fs99),
            dur(rl99)
        ),
        format!("{:.2}×", p99 / (fs99 + rl99)),
        "≤ 2 ms",
        p99 <= 0.002,
    );
    // The peers' design: a JSON file inbox that the recipient polls every 500 ms. Its latency
    // is half the period on average; measured here for a few samples at random phases.
    let file_p50 = file_inbox_p50(dir.path(), if quick { 4 } else { 8 })?;
    r.add(
        "vs a file inbox polled every 500 ms (peers), p50",
        dur(p50),
        dur(file_p50),
        format!("{:.0}× faster", file_p50 / p50),
        "≥ 500× faster",
        file_p50 / p50 >= 500.0,
    );

    let secs: f64 = if quick { 1.0 } else { 3.0 };
    let relay_tp = floor::relay_throughput(dir.path(), secs.min(1.0), 140)?;
    let (tp, full) = message_throughput(&mut team, 4, secs)?;
    r.add(
        "sustained durable messages (4 pipelining senders)",
        rate(tp),
        format!("{} relay", rate(relay_tp)),
        format!("{:.2}×", tp / relay_tp),
        "≥ 100 k/s",
        tp >= 100_000.0,
    );
    if full > 0 {
        r.note(format!(
            "{full} sends met inbox_full back-pressure during the throughput run (nothing dropped)"
        ));
    }
    // Its own team: every member connected (a disconnected member's full inbox would refuse
    // whole broadcasts, as it should, and measure that instead).
    let mut bteam = BenchTeam::start(dir.path(), "bcast")?;
    let bc = broadcast(&mut bteam, 100, secs)?;
    bteam.stop()?;
    r.add(
        "broadcast to 100 agents, deliveries",
        rate(bc),
        format!("{} relay", rate(relay_tp)),
        format!("{:.2}×", bc / relay_tp),
        "≥ 200 k/s",
        bc >= 200_000.0,
    );

    let tasks = if quick { 2000 } else { 10_000 };
    let claims = racing_claims(&mut team, 10, tasks)?;
    let one_commit = 1.0 / fs50;
    r.add(
        &format!("10 racing claimers over {tasks} tasks (each exactly once)"),
        rate(claims),
        format!("{} (1 fsync/claim)", rate(one_commit)),
        format!("{:.1}×", claims / one_commit),
        "≥ 20 k/s",
        claims >= 20_000.0,
    );

    let (rss_big, _) = rss(team.pid());
    r.note(format!(
        "daemon RSS after the runs above ({} agents registered, ~10^5 messages stored): {:.1} MiB",
        team.registered(),
        rss_big as f64 / 1048576.0
    ));
    let cpu0 = cpu_secs(team.pid());
    let idle = Duration::from_secs(if quick { 1 } else { 3 });
    std::thread::sleep(idle);
    let cpu = (cpu_secs(team.pid()) - cpu0) / idle.as_secs_f64() * 100.0;
    r.add(
        "daemon idle CPU",
        format!("{cpu:.2} %"),
        "-".into(),
        "-".into(),
        "< 1 %",
        cpu < 1.0,
    );
    team.stop()?;

    // Memory with the team size of the spec: 10 agents connected, some traffic.
    let mut small = BenchTeam::start(dir.path(), "rss")?;
    let (rss_fresh, _) = rss(small.pid());
    let names: Vec<String> = (0..10).map(|i| format!("w{i}")).collect();
    small.register(&names)?;
    let clients: Vec<_> = names
        .iter()
        .map(|n| small.agent(n))
        .collect::<Result<_>>()?;
    let mut op = small.operator()?;
    for i in 0..1000 {
        op.call(agent_team_protocol::Request::Send {
            to: names[i % 10].clone(),
            body: "x".repeat(200),
            kind: agent_team_protocol::MessageKind::Text,
            summary: None,
            dedup: None,
        })?;
    }
    let (rss10, peak10) = rss(small.pid());
    r.add(
        "daemon RSS, 10 agents connected, 1000 messages queued",
        format!("{:.1} MiB", rss10 as f64 / 1048576.0),
        format!("{:.1} MiB fresh", rss_fresh as f64 / 1048576.0),
        format!("peak {:.1} MiB", peak10 as f64 / 1048576.0),
        "< 20 MiB",
        (rss10 as f64) < 20.0 * 1048576.0,
    );
    drop(clients);
    small.stop()?;

    // Restart: an empty store versus 100 000 tasks and 1 000 000 messages.
    let (big_tasks, big_msgs) = if quick {
        (10_000, 100_000)
    } else {
        (100_000, 1_000_000)
    };
    let mut empty = BenchTeam::start(dir.path(), "empty")?;
    empty.stop()?;
    let empty_start = empty.spawn()?;
    empty.stop()?;
    let bp = agent_team_paths::Paths::new(dir.path().join("home"), dir.path().join("run"));
    fill_store(&bp.team("big")?, "big", big_tasks, big_msgs)?;
    let mut big = BenchTeam::start(dir.path(), "big")?;
    big.stop()?;
    let big_start = big.spawn()?;
    let (big_rss, _) = rss(big.pid());
    big.stop()?;
    r.add(
        &format!("daemon restart with {big_tasks} tasks + {big_msgs} messages, until serving"),
        dur(big_start.as_secs_f64()),
        format!("{} empty", dur(empty_start.as_secs_f64())),
        format!(
            "{:.1}×",
            big_start.as_secs_f64() / empty_start.as_secs_f64()
        ),
        "< 1 s",
        big_start < Duration::from_secs(1),
    );
    r.note(format!(
        "daemon RSS right after loading the big store: {:.1} MiB",
        big_rss as f64 / 1048576.0
    ));
    Ok(())
}

/// Median delivery latency of a file inbox polled every 500 ms (the peers' design).
fn file_inbox_p50(dir: &std::path::Path, samples: usize) -> Result<f64> {
    use std::io::Write;
    let path = dir.join("inbox.json");
    std::fs::write(&path, "")?;
    let poller_path = path.clone();
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let poller = std::thread::spawn(move || {
        let mut seen = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let len = std::fs::metadata(&poller_path)
                .map(|m| m.len())
                .unwrap_or(0);
            if len > seen {
                seen = len;
                let _ = tx.send(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let mut out = Vec::new();
    for i in 0..samples {
        // Spread the send times over the polling period.
        std::thread::sleep(Duration::from_millis(137 * (i as u64 % 4) + 29));
        let t0 = Instant::now();
        let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
        writeln!(f, "{{\"from\":\"a\",\"text\":\"hi {i}\"}}")?;
        let t1 = rx.recv_timeout(Duration::from_secs(5))?;
        out.push((t1 - t0).as_secs_f64());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = poller.join();
    Ok(pct(&mut out, 50.0))
}

/// Why the figures that miss their target miss it (kept with the figures).
const GAPS: &str = "
## Where the targets are missed, and why

- **Sustained messages, broadcast deliveries, racing claims.** Every message is a row in
  SQLite plus a `MESSAGE_SENT` event row, and its read-acknowledgement an update; every claim and
  completion rewrites the task row and appends a `TASK_UPDATED` event with the whole task. The
  daemon serves everything on one thread; under the sustained-message load that thread is ~80 %
  busy (per-thread CPU from `/proc`), and `perf record` puts SQLite (row work, WAL frame writes,
  checkpoints) at ~40 % of it, malloc/free at ~13 %, JSON at ~10 %. Group commit already puts
  hundreds of messages under one fsync. Reaching the targets would take a different storage
  layout (one body row per broadcast with small per-recipient rows, events derived from the
  message and task rows instead of stored twice, or an append-only log beside SQLite).
- **Racing claims** are also bound by the claimers' round trips: ten claimers can put at most ten
  claims into one commit, so one commit cycle (fsync, wake-ups of ten client threads on two cores)
  bounds the rate.
- **What moved the figures** (same-session A/B, BENCH_ONLY runs): a checkpoint now rewinds the
  WAL instead of truncating it, so commits overwrite blocks already allocated and their
  fdatasync does not also commit a size change: p50 227 → ~177 µs, messages +15 %, broadcast
  +27 %, claims +20 %. Looking the hot statements up once per commit instead of once per row:
  messages +6 %.
- **The fsync floor overwrites in place**, as the WAL now does; on this disk an append with
  fdatasync costs ~40 % more (~108 µs against ~75 µs), so this floor is the stricter one.
- **Tried and not taken:** 4 KiB pages (with the rewound WAL: claims about equal, p50 ~200 µs
  against ~177 µs; before it, ~+10 % messages/s but worse p50); 8 KiB pages (worse on all four);
  mimalloc (within noise); checkpointing after 256 or 512 idle commits instead of 64 (slightly
  worse); a sliding send window in the throughput bench instead of 128-message rounds (72 k/s
  against 85 k/s: smaller batches). No fsync at all (`synchronous=NORMAL`), the upper bound
  for moving the fsync off the core thread: messages and broadcast unchanged, claims 15 k →
  19.5 k/s, still short of 20 k/s, so that pipeline was not built.
- The p50 message latency sits close to its target (≤ 2×); on this shared machine single runs
  have landed on either side, which is why each floor is measured in rounds interleaved with ours.

## Issue 11 (foundation): before and after, same session

`before` is commit 9bfd6e8 (the code before issue 11), built in a worktree and run with its own
bench right before two `after` runs (the table at the top is the second, `cargo xtask bench --save`), on the same machine with
nothing else running. Run-to-run spread on this machine: about ±10 % on the throughput figures.

| figure | before | after | change |
|---|---:|---:|---|
| durable message p50 | 197.7 µs (2.04× floor) | 203.9 µs (2.04× floor) | same ratio |
| sustained durable messages | 85.0 k/s | 64.8 k/s; 63.6 k/s | **−24 %** |
| broadcast deliveries | 120.0 k/s | 116.6 k/s | within spread |
| racing claims | 12.0 k/s | 8.0 k/s; 7.5 k/s | **−35 %** |
| daemon restart, 100 k tasks + 1 M messages | 307 ms | 293 ms | within spread |
| `up` 11 agents in tmux (ratio to floor) | 2.3× | 1.9× | within spread |
| model team wall | 60.5 ms | 66.8 ms | within spread |
| send_message → leader's next request | 3.02 ms | 5.19 ms | worse; single-sample noise is ±2 ms here |

- **Why messages and claims are slower: request ids.** Every mutating request carries a
  request id and its reply is stored in the same commit, so a retry after a reconnect is
  answered instead of applied twice (docs/PROTOCOL.md). Where the time goes, measured without
  the daemon by `cargo run --release -p agent-team-store --example reply_cost -- claims|messages`
  (the state and the store under the bench's two loads in one thread, the thread's CPU time from
  /proc per request): racing claims ~26 µs without request ids, ~42 µs with the reply serialised
  to JSON when remembered, of which ~4 µs is the in-memory record and the rest the store: the
  extra WAL pages of the reply rows (each claim and finish reply held the whole task) and a
  prune `DELETE` that read the whole `reply_batches` table; sustained messages ~9 µs against
  ~14 µs. Changed: the reply is kept typed and written as JSON once, at commit; a task reply is
  stored as a reference to the `TASK_UPDATED` event of the same commit (a few bytes instead of
  the task; resolved on load); an index on `(identity, last_n)` makes the prune read only that
  identity's rows. In the example that took claims to ~38–47 µs (from ~42–57 µs in the same
  runs), messages unchanged within noise.
- **Issue 11 before/after, re-measured (2026-11-23, 11:47–12:00).** `BENCH_ONLY=throughput` and
  `BENCH_ONLY=claims` (`BENCH_SECTION=core`, release builds each with its own target dir, binaries
  run directly with `AGENT_TEAM_BIN_DIR`), four builds run in turn, four rounds each:
  `9bfd6e8` (no request ids), `3522710` (request ids, the HEAD this work started from),
  `d70ddd0` (the daemon split, replies as before) and `d70ddd0` with this change (the core calls
  `remember_outcome`). **Other engineers were building on this 2-core machine at the same time**
  (load average 1.3–1.9 in the quietest set, 3–4 in the others), so absolute figures are about
  half of the table above and single runs spread ±20 %; medians of the quietest set:

  | figure | 9bfd6e8 | 3522710 | d70ddd0 | d70ddd0 + this |
  |---|---:|---:|---:|---:|
  | sustained messages (median; min–max) | 45.3 k/s (39.0–53.6) | 38.1 k/s (34.0–41.5) | 35.0 k/s (32.2–37.9) | 34.9 k/s (33.5–37.2) |
  | racing claims (median; min–max) | 9.2 k/s (7.5–10.8) | 6.7 k/s (5.1–7.4) | 6.6 k/s (5.9–6.8) | 7.0 k/s (6.1–7.6) |

  Two noisier sets (load 3–4) ordered the builds the same way (messages 33.9 / 29.8 / 26.3 /
  25.0 and 29.9 / 28.5 / 25.8 / 23.3 k/s; claims 7.1 / 5.2 / 5.5 / 5.5 and 5.9 / 4.3 / 5.1 /
  5.0 k/s). **Not closed:** against the code without request ids, messages are still ~20–25 %
  and claims ~20–25 % lower, more than the run-to-run spread; this change is within noise of the
  code it replaces on messages and at most a few per cent better on claims. What remains is
  per request: the id parsed and hashed, the outcome kept (an allocation and a copy), a
  reply row per identity per commit and its share of the WAL, and freeing what the prune
  forgets. Not tried yet: a faster hasher for the ids, storing send replies as the message
  ids only, measuring on a quiet machine.
- **After issues 11 and 12 (2026-11-23, 12:31–12:40, no other work on the machine).** This
  table's run: sustained messages 43.9 k/s and broadcast deliveries 70.1 k/s against 63.6 k/s and
  99.1 k/s in the morning's saved run, but the relay floor of the same runs fell from 12.29 to
  9.35 M/s (the VM was slower this afternoon): measured against its own run's floor, sustained
  messages are ~9 % lower than in the morning, broadcast ~7 % lower; racing claims are unchanged
  (7.5 k/s both). Interleaved `BENCH_ONLY=throughput` runs of three release builds (k/s):
  `9bfd6e8` (no request ids) 59.0, 48.6, 47.6; `3522710` (this session's start) 43.8, 48.5, 35.9,
  38.8, 34.9, 46.0; HEAD 42.2, 38.8, 36.7, 28.5, 31.2, 38.8: medians ~49 / ~41 / ~38, with one
  binary's runs spreading 35–48. So the split and the hardening cost at most ~8 % of sustained
  messages, about the spread of these runs, and request ids still ~20–25 % (not closed). The new
  hardening figures: 19 936 idle connections held open leave `ps` at 8.4 ms (2.4 ms without) and the
  daemon at a 27.5 MiB peak RSS (10 MiB without); 1 M messages sent, delivered and read take
  561.5 MiB of state files, and `gc` brings them to a few KiB in 3–4 s.
- **After issues 13, 14, 15 (part) and 17 (2026-11-23, 15:57, nothing else running).** The
  table of that run (since replaced). Against the morning's quiet run several figures are worse by more than the
  run-to-run spread, beside floors that also fell (relay 5.32 M/s against 9.35 M/s: the VM is
  slower this afternoon), so part of it is the machine and part is not: the durable-message p50
  is 2.61× its floor (2.04× in the morning), racing claims 0.6× their fsync floor (1.0×),
  sustained messages 28.0 k/s (43.9 k/s), and the daemon's CPU with the tmux backend while
  two teammates run commands +1.60 points over the process backend (0.4–0.8 before; the
  board pane is left out of that team, `board = false`). Not yet found: candidates are the
  larger roster and run records (usage, todos, colours, run details in every reply and event),
  the new per-change checks (`wait_for` waiters, budgets) and pane-title updates. The earlier
  15:11 run, with a helper compiling beside it, had p50 2.43× and the same tmux figure. New
  sections: `service` (an event from the daemon to an SSE client of `serve`, p50 1.22× and p99
  1.11× the same event read on the daemon's socket; events/s to 10 SSE clients 0.70× 10 socket
  subscribers, 0.23× before bursts were gathered into one chunk) and `board` (0.20 % idle,
  1.2 % with 10 agents streaming, beside `events --follow`'s 0.8 %).
- **After issues 15 and 16 (2026-11-23, 17:49; the table above).** The 15:57 figures that
  looked worse did not come from the code. Interleaved runs of two release builds on one
  machine, the morning's saved commit `e65e9d8` and this session's HEAD, timed with
  `perf stat -e task-clock` (CPU per message; this VM has no instruction counter). Each
  build ran twice in turn, with a helper compiling beside it:
  - sustained messages: e65e9d8 37.6 and 32.8 µs of CPU per message (27.6 and 32.5 k/s);
    HEAD 36.3 and 34.9 µs (29.0 and 30.4 k/s);
  - racing claims: e65e9d8 6.4 and 6.7 k/s; HEAD 6.9 and 7.5 k/s;
  - p50: 335.5 µs against 341.7 µs, with fsync at 135 and 133 µs.

  So the 15:57 run measured the machine. This run, quiet, has p50 at 2.00× its floor,
  sustained messages at 47.2 k/s and claims at 0.8× the fsync floor, back to the morning's
  figures.

  The tmux-backend daemon CPU was real: +1.60 points, now **+0.40**. The periodic process
  check ran every 500 ms, and on tmux each check is a `tmux list-panes` client: 20 clients
  per 10 s. It now looks only every 5 s while every launched agent is connected. A connected
  agent's death drops its connection, which looks at once. Hand check (debug build, 2
  teammates running `sleep`): the daemon used 10 CPU ticks per 10 s before, 2 after, and a
  SIGKILLed worker and a killed pane were still noticed within 0.3 s.

  Request ids still cost about 20–25 % of sustained messages and claims against the code
  without them (`9bfd6e8`). That gap is not closed.
- **Issue 11's last gap, request ids (2026-11-23, 20:30–21:20).** Profiled with `perf record`
  (DWARF call graphs) under `BENCH_ONLY=throughput` at `cf9d96d` against `9bfd6e8`: the daemon
  spent ~26 µs of CPU per sustained message against ~20 µs, the extra in `remember_outcome`
  (2.2 µs, of which 0.9 µs freeing what the prune forgot: five allocations a reply), the
  commit (+1.8 µs: serde writing each reply, copying the rows, their WAL pages), dropping a
  `Change::Reply` per request (+0.5 µs) and SipHash (~0.5 µs); `malloc`/`free`/`memmove` were
  most of it. Changed: a reply's stored form is written once, when it is remembered, straight
  into its identity's row of the batch (one `Change::Replies` per identity per commit instead
  of a change per request); `done` keeps nothing and `sent` keeps its stored form (one
  allocation); `sent` is stored short, `{\"Sent\":[ids,recipients]}` (about half the bytes; not
  the ids alone, since a `gc` may delete read messages a reply would point at); the id maps use
  foldhash. In `reply_cost` (interleaved, medians of 6) request ids now add 22 % to a message's
  CPU (8.3 → 10.1 µs; 47 % before, 10.2 → 15.1 µs) and still ~34 % to a claim's (19.7 → 26.5
  µs; 31 % before: unchanged). Interleaved bench runs of `9bfd6e8` and this build, load
  1.4–2.1 (another engineer's build was idle), 5 each: sustained messages 68.2 k/s (60.0–76.6)
  against 59.5 k/s (43.8–60.9), −13 % by medians, −19 % by the median of same-round pairs;
  racing claims 11.6 k/s (9.3–13.5) against 9.2 k/s (6.7–9.8), −21 %. A second set at load
  2.6–3.4 (4 each): messages 36.3 against 30.5 k/s (pairs −13 to −21 %), claims 4.7 against 4.6
  k/s with pairs from −39 % to +11 %. **Not closed:** messages are now ~13–20 % below the code
  without request ids (from 20–25 %), claims still ~20 %. What is left on claims is the store,
  not the CPU of remembering: a claim commit writes one `reply_batches` row per claimer, and
  each row's entry in the `(identity, last_n)` index lands in a different leaf page (ten
  claimers, ten more 1 KiB WAL pages a commit), and a prune deletes an identity's rows that
  lie interleaved with everyone else's (a page each). The next step is one row per commit,
  deleted when all its entries are forgotten (no index, deletes at the table's left edge); it
  needs a way to move a quiet identity's still-kept entries forward, or their old rows stay.
- **Issue 11's last gap, the store's share of racing claims (2026-11-23, 23:10–23:38).**
  Changed: the `(identity, last_n)` index on `reply_batches` is gone (an existing database
  drops it on open). The state knows each identity's stored rows (key and last `n`, rebuilt on
  load) and a prune names the rows whose replies are all forgotten, which the store deletes by
  primary key. A commit's reply rows now land together at the table's right edge instead of
  one index leaf page per claimer. Measured on this 2-core machine with another engineer's
  builds running beside it. `reply_cost`, interleaved with `02c1bba` (the HEAD this started
  from), 5 runs each at load 1.5–3.8: a claim's CPU 33.5 µs (27.2–37.2) before, 24.8 µs
  (21.0–29.3) now, same-run pairs −21 %; without request ids 22.7 µs (13.5–28.0, ten runs of
  the same code, so that range is the noise). A message's CPU: 13.5 µs before, 12.1 µs now,
  10.0 µs without ids (within noise of each other). File system writes of 2000 claim commits
  (`ru_oublock`, two runs each, equal to 0.1 %): 95.6 MiB without request ids, 132.7 MiB
  before (+39 %), 104.3 MiB now (+9 %); messages unchanged (607.5 and 605.4 MiB). The daemon:
  `BENCH_SECTION=core BENCH_ONLY=throughput` and `BENCH_ONLY=claims`, three release builds
  (`9bfd6e8` without request ids, `02c1bba`, this change), each run by its own bench binary
  with `AGENT_TEAM_BIN_DIR`, order rotated each round, 22 rounds in three sets at load 1.3–3.4:

  | figure | 9bfd6e8 | 02c1bba | this change |
  |---|---:|---:|---:|
  | sustained messages (median; min–max) | 42.9 k/s (26.3–64.4) | 34.2 k/s (22.1–52.7) | 36.3 k/s (21.8–54.3) |
  | racing claims (median; min–max) | 7.0 k/s (3.3–12.2) | 5.8 k/s (3.8–8.7) | 6.4 k/s (3.2–10.1) |

  Same-round pair ratios (median; range): claims this change / `02c1bba` 1.10 (0.71–1.44;
  1.03, 1.13 and 1.09 in the three sets), this change / `9bfd6e8` 0.86 (0.56–1.32), `02c1bba` /
  `9bfd6e8` 0.78; messages this change / `02c1bba` 1.01 (0.76–1.62), this change / `9bfd6e8`
  0.88 (0.63–1.33). **Not closed:** the index was worth ~10 % of racing claims and a fifth of
  their bytes written; against the code without request ids claims are now ~14 % lower and
  messages ~12 % lower by the median pair: less than the single-run spread at this load, but
  the same in each set (claims 0.86, 0.87, 0.85; messages 0.90, 0.86, 0.85). One row per
  commit for all identities (design b) was not built: a claim commit's reply rows now cost 9 %
  more bytes than no rows at all, so merging ten small rows into one could save little. What is left is CPU per request (in `reply_cost`
  a claim's CPU is ~2–4 µs above the code without ids, a message's ~2–3 µs): the id parsed and
  hashed, a task reply's task cloned to be kept, the entry written and freed at the prune.
- **Where issue 11's remaining gap is (2026-11-23, 23:58–00:01).** Three release builds
  interleaved, 12 rounds (order rotated), load 1.3–2.8 (a helper's build beside it):
  `9bfd6e8`, HEAD `579efc6`, and HEAD's own daemon driven by a bench whose client sends no
  request ids (a throwaway patch, not committed). Sustained messages 75.9 k/s (60.3–86.5),
  61.9 k/s (47.1–74.3) and 75.3 k/s (68.1–85.1); racing claims 12.9 k/s (10.9–13.8), 10.9 k/s
  (9.8–12.4) and 13.0 k/s (11.0–14.0). Same-round pairs: HEAD / `9bfd6e8` 0.85 and 0.89, HEAD
  without ids / `9bfd6e8` 1.03 and 1.01, HEAD / HEAD without ids 0.83 and 0.87. So everything
  since `9bfd6e8` (the split, hardening, service, strategies, lifecycle, CLIs, budgets) costs
  nothing measurable on these two figures; the whole remaining gap, ~13–17 %, is remembering
  replies by request id. **Not closed.**
- **Issue 11's last gap, down to the run-to-run spread (2026-11-24, 02:30–03:33).** First
  measured where the rest was: the bench's clients can now send no request ids
  (`BENCH_NO_RID=1`), and the daemon's CPU and `write_bytes` per request come from `/proc`.
  Before this change a sustained message cost the daemon 10.4 µs of CPU against 8.8 µs
  without ids and 865 B written against 765 B; a throwaway build that stored no reply rows at
  all reached 83.5 k/s against 76 k/s and 90 k/s: about half the gap was the rows (one per
  identity per commit, each with its own part-filled page, written to the WAL and again at
  the checkpoint), half CPU. Changed:
  - **one reply row per commit** for every identity, written compactly (each identity's part
    names it and the prefix its ids share, then per entry the rest of the id, `n` as a
    difference, and nothing for `done`, `[id, to]` for a one-recipient `sent`, `[seq, maybe]`
    for a task reply); a row goes when no identity remembers a reply in it; older builds'
    rows still load;
  - the outcome and the request id **move** into the reply table (a hashbrown `HashTable`
    keyed by the id's hash) instead of being copied; a task reply's task is no longer cloned;
  - answering no longer hashes a `(conn, id)` key into an empty pending map (SipHash, ~0.25 µs
    a message); the clients write request ids by hand instead of with `format!`;
  - not request-id work, but on the same path: a direct send checks its recipient with one
    map lookup instead of listing and sorting the roster (every send is cheaper, with or
    without ids).

  10 interleaved rounds of three release builds, load 1.6–2.2 (`BENCH_SECTION=core`,
  `BENCH_ONLY=throughput|claims`, each build with its own bench binary):

  | figure | `9bfd6e8` | `76ae13d` (this change) | `76ae13d`, no request ids |
  |---|---:|---:|---:|
  | sustained messages (median; min–max) | 87.7 k/s (71.2–89.6) | 82.0 k/s (76.7–85.5) | 93.0 k/s (91.1–94.2) |
  | racing claims (median; min–max) | 14.5 k/s (13.3–15.5) | 13.5 k/s (12.1–14.1) | 14.8 k/s (14.4–15.3) |

  Against `9bfd6e8`: sustained messages −6.5 % by medians (−4.7 % by same-round pairs), racing
  claims −7 % (−8 %); each inside the spread of `9bfd6e8`'s own ten runs (−19 % to +2 % and
  −8 % to +7 % around their medians). Without request ids the same code is 1.06× and 1.02×
  `9bfd6e8`: the split and all later work cost nothing here. The table saved at 03:38 (the
  same commit) has sustained messages at 84.3 k/s and racing claims at 1.1× their fsync floor.
  In `reply_cost` (state and store only) request ids now add 1.6 µs of CPU to a claim request
  (13.4 against 11.8 µs; 2.8 µs before) and 0.5 µs to a message (6.0 against 5.5 µs). What is
  left is not one thing: a claim commit writes about eleven pages and the reply row is one
  more; per request the id is parsed, hashed, written and freed at the prune. Taking the rest
  would mean keeping request ids in the message and event rows a commit writes anyway.
- **New figures:** the daemon's CPU with the tmux backend while teammates run commands was 73.5 %
  of a core before the SIGCHLD fix (a poll's own tmux client exiting triggered the next poll) and
  is 0.4–0.8 points above the process backend now. `run` on the in-process backend took 2.27× the
  process backend's wall before an agent's end woke the supervisor, and 0.9–1.2× now.

## Agent CLIs as teammates (issue 16)

`CARGO_TARGET_DIR=… BENCH_SECTION=clis cargo xtask bench` (section `clis`,
bench/src/clis_bench.rs), run on 2026-11-23 at 21:21 UTC (Linux 6.18.44-fc-v782 x86_64,
2 CPUs; load average 3.2–3.7: another engineer was building). The pinned CLIs of the
end-to-end tests (Claude Code 2.1.197, Codex 0.169.0, Qwen Code 0.15.10, from `<target>/clis`,
installed there with npm when missing) against the mock model on 127.0.0.1, release binaries,
the process backend, a temp `AGENT_TEAM_HOME` and runtime dir. *Alone* is the worker's own
launch plan (`external::plan`: the same argv, private home and settings) with the team MCP
server and the hooks taken out, spawned by the bench; *as a teammate* is `agent-team up` of a
team file with one such teammate, from the supervisor's `starting` event to the teammate's
first request at the mock. Five runs of each, alternated. Memory is sampled from /proc while
the mock holds the first answer for 500 ms, and until the CLI has ended (so the `Stop` hook is
caught).

| figure | Claude Code | Codex | Qwen Code | goal |
|---|---:|---:|---:|---|
| alone: spawn → first model request (median of 5) | 1.18 s | 568.6 ms | 2.87 s | |
| as a teammate: spawn → first model request (median of 5) | 1.46 s | 662.8 ms | 2.69 s | |
| difference (as % of alone) | +279 ms (+23.6 %) | +94 ms (+16.6 %) | −188 ms (−6.5 %) | ≤ +5 % |
| `up` → first model request (median) | 1.59 s | 794.6 ms | 2.88 s | |
| our processes, peak PSS (worker, `agent-team mcp`, hook) | 10.4 MiB | 11.9 MiB | 12.0 MiB | ≤ 5 MiB |
| of which `agent-team mcp` / worker / `agent-team hook stop` | 7.3 / 3.2 / 0.2 MiB | 7.0 / 3.1 / 2.6 MiB | 7.0 / 3.1 / 2.2 MiB | |
| the CLI's own tree, peak PSS as a teammate | 203.0 MiB | 188.5 MiB | 256.4 MiB | |
| `send` → next model request carrying it, idle in `wait_for_messages` (median of 3) | 41.6 ms | 43.4 ms | 52.0 ms | |
| the CLI's own tool round trip (a `wait_for_messages` that returns at once) | 78.1 ms | 40.8 ms | 84.1 ms | floor |
| busy: the turn's end → next model request carrying it (`Stop` hook; median of 3) | 74.8 ms | 47.9 ms | 80.9 ms | |
| processes left after `down` (18 teams, all three CLIs) | 0 | 0 | 0 | 0 |

- Codex has the `Stop` hook now, so its busy figure exists (the first run of this section, at
  20:47, had it n/a).
- A message sent to a busy CLI stays `queued` at the CLI's MCP server until the CLI has it, so
  the bench cannot watch it arrive there: it waits 200 ms after `send` before it lets the held
  turn end, and times the turn's end → the request (the figure above).
- **Where the spawn time goes** (the daemon's events of the first run, ms from the spawn):
  the worker has connected, read the role and starts the CLI at +7 to +14 ms (`running`); the
  rest is the CLI's start, which includes starting its MCP server (`agent-team mcp`, which
  joins the team) and the MCP handshake before its first request.
- **Tried and not kept: the worker `exec`ing the CLI.** At 21:01 a run with it measured ours
  at 7.2–9.3 MiB (the waiting worker's 3.1–3.2 MiB gone). But in one full parallel e2e run the
  killed interactive Claude Code, then the agent's own pid, was still there 60 s after its
  kill (not reproduced in four more runs, not understood), so the known-good model (the worker
  waits, and its process group is what a kill stops) stays.

### Goals missed, and why

- **Supervision time ≤ 5 % of the CLI's start: not settled.** Our own part before the CLI
  runs is 7–14 ms. The CLIs' own starts spread more than 5 % between runs: seven runs of this
  section today gave teammate − alone of +223, +784, −312, +232, +373, +60 and +279 ms for
  Claude Code, −52, −20, +183, +157, −8 and +94 ms for Codex, and +1357, −54, +1022, −425, +44
  and −188 ms for Qwen Code; the quietest run (21:01) had Codex −2.5 % and Qwen Code +2.6 %.
  What a teammate adds is our MCP server's start and handshake inside the CLI's start (Claude
  Code and Codex wait for it: their first request has the team tools). To settle it: a quiet
  machine, more runs, and a floor of the same CLI with a trivial stdio MCP server.
- **Our memory ≤ 5 MiB: missed, 10.4–12.0 MiB PSS** beside 189–256 MiB of the CLI's own tree
  (4.7–6.3 %). `agent-team mcp` is 7.0–7.3 MiB (the whole `agent-team` binary with the tokio
  runtime, rmcp and the worker's tool handlers), the waiting worker 3.1–3.2 MiB, and at a
  turn's end `agent-team hook stop` adds 2.2–2.6 MiB for a moment. Not tried: a small MCP binary
  with only the team tools, a hook client smaller than the whole `agent-team` binary, and an
  `exec`ing worker once the kill above is understood.
";

fn save_report(r: &Report) -> Result<()> {
    let root = std::env::current_dir()?;
    let path = root.join("docs").join("BENCHMARKS.md");
    let uname = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = agent_team_protocol::Timestamp::from(std::time::SystemTime::now()).to_rfc3339();
    let text = format!(
        "# Benchmarks\n\nProduced by `cargo xtask bench --save` on {date} ({uname}, {cpus} CPUs).\n\
         Each figure is printed beside a floor measured in the same run on the same machine, so the\n\
         ratio is what to compare across machines; absolute numbers move with load.\n\n{}\n{GAPS}",
        r.markdown()
    );
    std::fs::write(&path, text)?;
    println!("wrote {}", path.display());
    Ok(())
}
