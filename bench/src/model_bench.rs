//! Figures of model-driven teams (issue "models"), against the scripted mock model server: the
//! task SPEC §6 measured for Qwen Code's agent team (a leader and 2 teammates, 2 tasks, a file
//! each, a message each to the leader, finish).

use crate::daemon_bench::bin_dir;
use crate::report::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Qwen Code's figures for the same run (SPEC §6, measured on this machine's kind).
const PEER_WALL: f64 = 4.8;
const PEER_RSS_MB: f64 = 357.0;
const PEER_SPAWN: f64 = 0.7;
const PEER_DELIVERY: f64 = 0.278;

fn script(mock: &MockModel) {
    mock.script(
        "leader",
        vec![
            Step::tools(&[
                ("create_task", json!({"title": "write a.txt"})),
                ("create_task", json!({"title": "write b.txt"})),
            ]),
            Step::tools(&[
                ("spawn_teammate", json!({"role": "worker", "name": "b1"})),
                ("spawn_teammate", json!({"role": "worker", "name": "b2"})),
            ]),
            Step::Text("Waiting for the team.".into()),
            Step::Until {
                needles: vec!["b1 done".into(), "b2 done".into()],
                then: Box::new(Step::tools(&[(
                    "finish_team",
                    json!({"answer": "a.txt and b.txt are written"}),
                )])),
                meanwhile: Box::new(Step::Text("Still waiting.".into())),
            },
        ],
    );
    for (me, id, file) in [("b1", 1, "a.txt"), ("b2", 2, "b.txt")] {
        mock.script(
            me,
            vec![
                Step::tools(&[("claim_task", json!({"id": id}))]),
                Step::tools(&[(
                    "write_file",
                    json!({"path": file, "content": format!("{me}\n")}),
                )]),
                Step::tools(&[
                    (
                        "update_task_status",
                        json!({"id": id, "status": "completed", "result": format!("wrote {file}")}),
                    ),
                    (
                        "send_message",
                        json!({"to": "leader", "text": format!("{me} done")}),
                    ),
                ]),
                Step::Text("Nothing left.".into()),
            ],
        );
    }
}

/// The CPU time (user and system) a run's processes used: the command the bench started and
/// every process under it, as the kernel counts reaped children (`RUSAGE_CHILDREN`). The bench
/// is a child subreaper meanwhile, so what outlives its parent (our daemon outlives `run` by
/// its exit; what Claude Code's group leaves when it is killed) comes back to the bench and is
/// reaped and counted too. A steadier figure than the wall on a busy machine: it counts the
/// work done, not the waits for the other core.
pub(crate) struct RunCpu {
    before: Option<Duration>,
}

impl RunCpu {
    /// Starts counting: call before the command starts.
    pub(crate) fn start() -> RunCpu {
        let _ = nix::sys::prctl::set_child_subreaper(true);
        RunCpu {
            before: children_cpu(),
        }
    }

    /// Reaps what is left of the run (for at most 10 s) once its command was waited for, and
    /// gives its CPU time; `None` when something of it did not end or could not be read.
    pub(crate) fn finish(self) -> Option<Duration> {
        let all_reaped = reap_orphans(Duration::from_secs(10));
        let _ = nix::sys::prctl::set_child_subreaper(false);
        let after = children_cpu()?;
        after.checked_sub(self.before?).filter(|_| all_reaped)
    }
}

/// The CPU time of this process's reaped children.
fn children_cpu() -> Option<Duration> {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok()?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Some(d(u.user_time()) + d(u.system_time()))
}

/// Reaps every child of this process that exits within `within` (orphans of a run handed
/// to it as a subreaper); whether none was left.
fn reap_orphans(within: Duration) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let deadline = Instant::now() + within;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) => {}
            // ECHILD: none left.
            Err(_) => return true,
        }
    }
}

/// Pids of `root` and all its descendants.
pub(crate) fn tree(root: u32) -> HashSet<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if let Some(pp) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent.insert(pid, pp);
            }
        }
    }
    let mut out: HashSet<u32> = [root].into();
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, pp) in &parent {
            if out.contains(pp) && out.insert(*pid) {
                grew = true;
            }
        }
    }
    out
}

/// Proportional set size: shared pages (one binary mapped by three workers) counted once
/// across the tree instead of once per process.
pub(crate) fn pss_kb(pid: u32) -> u64 {
    rollup_kb(pid, "Pss:")
}

/// One figure (e.g. `Pss_Anon:`, the private memory that is not code) of `pid`'s
/// `smaps_rollup`, in KiB.
pub(crate) fn rollup_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Resident set size in KiB.
pub(crate) fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// What one run of the team gave.
pub(crate) struct Outcome {
    pub wall: Duration,
    pub peak_rss_kb: u64,
    pub peak_pss_kb: u64,
    pub spawn_to_first_request: Duration,
    pub delivery: Duration,
    /// The CPU time of `run` and every process under it ([`RunCpu`]).
    pub cpu: Option<Duration>,
}

/// One run of the team; with `sample`, its process tree's memory is read every 5 ms (which
/// costs CPU the run competes for on a small machine), else its wall is timed by a blocking
/// wait.
pub(crate) fn one_run(dir: &Path, i: usize, sample: bool) -> Result<Outcome> {
    run_on(dir, i, sample, "process")
}

/// [`one_run`] on the pane backend `backend` (`process`, `in-process`).
pub(crate) fn run_on(dir: &Path, i: usize, sample: bool, backend: &str) -> Result<Outcome> {
    let mock = MockModel::start_background(Wire::OpenAi)?;
    script(&mock);
    let ws = dir.join(format!("model{i}"));
    std::fs::create_dir_all(&ws)?;
    std::fs::write(
        ws.join("agent-team.toml"),
        format!(
            "name = \"model{i}\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_KEY\"\n",
            mock.base_url()
        ),
    )?;
    let cpu = RunCpu::start();
    let t0 = Instant::now();
    let mut child = Command::new(bin_dir().join("agent-team"))
        .args(["run", "--backend", backend, "--quiet", "--timeout", "60"])
        .current_dir(&ws)
        .env("AGENT_TEAM_HOME", dir.join("home"))
        .env("AGENT_TEAM_RUNTIME_DIR", dir.join("run"))
        .env("MOCK_KEY", "k")
        .env_remove("TMUX")
        .stdout(Stdio::null())
        // Kept for a run that fails, whose reason the error then carries.
        .stderr(std::fs::File::create(ws.join("run.stderr"))?)
        .spawn()?;
    let root = child.id();
    let mut peak = 0;
    let mut peak_pss = 0;
    let status = loop {
        if !sample {
            break child.wait()?;
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        let members = tree(root);
        let total: u64 = members.iter().map(|p| rss_kb(*p)).sum();
        let each: Vec<(u32, u64)> = members.iter().map(|p| (*p, pss_kb(*p))).collect();
        let proportional: u64 = each.iter().map(|(_, k)| k).sum();
        if proportional > peak_pss && std::env::var_os("BENCH_PSS_TREE").is_some() {
            // Which process the peak is made of: each one's name and PSS.
            let shown: Vec<String> = each
                .iter()
                .map(|(p, k)| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                    // Its code and data read from files, and its own memory.
                    let (file, anon) = (rollup_kb(*p, "Pss_File:"), rollup_kb(*p, "Pss_Anon:"));
                    format!("{} {k} KiB (file {file}, anon {anon})", comm.trim())
                })
                .collect();
            eprintln!(
                "pss tree {backend} at {:.1} ms: {proportional} KiB = {}",
                t0.elapsed().as_secs_f64() * 1e3,
                shown.join(", ")
            );
            if std::env::var_os("BENCH_PSS_MAPS").is_some() {
                for (p, _) in &each {
                    let smaps =
                        std::fs::read_to_string(format!("/proc/{p}/smaps")).unwrap_or_default();
                    let mut name = String::new();
                    let mut lines = Vec::new();
                    for l in smaps.lines() {
                        if l.contains('-')
                            && l.split_whitespace().count() >= 5
                            && !l.ends_with(" kB")
                        {
                            name = l.to_string();
                        } else if let Some(v) = l.strip_prefix("Pss:") {
                            let k: u64 =
                                v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                            if k >= 32 {
                                lines.push(format!("    {k:6} {name}"));
                            }
                        }
                    }
                    eprintln!("  maps of {p}:\n{}", lines.join("\n"));
                }
            }
        }
        peak_pss = peak_pss.max(proportional);
        peak = peak.max(total);
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = t0.elapsed();
    let cpu = cpu.finish();
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        // Where a run's time goes: each agent's model requests, in ms from the start.
        let at = |a: &str| {
            mock.request_times(a)
                .iter()
                .map(|t| format!("{:.1}", (*t - t0).as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "timeline {backend} wall {:.1} ms | leader {} | b1 {} | b2 {}",
            wall.as_secs_f64() * 1e3,
            at("leader"),
            at("b1"),
            at("b2")
        );
    }
    if !status.success() {
        let said = std::fs::read_to_string(ws.join("run.stderr")).unwrap_or_default();
        bail!(
            "the model team run on the {backend} backend failed ({status}); unmatched requests: {:?}; it said: {}",
            mock.unmatched(),
            said.trim()
        );
    }
    // The leader's second request is answered with the spawn calls.
    let leader = mock.request_times("leader");
    let b1 = mock.request_times("b1");
    let spawn = *b1.first().context("b1 made no request")?
        - *leader.get(1).context("the leader made no second request")?;
    // b1's third request is answered with its send_message; the leader's next request that
    // carries the message is the delivery.
    let sent = *b1.get(2).context("b1 made no third request")?;
    let bodies = mock.requests("leader");
    let got = leader
        .iter()
        .zip(&bodies)
        .find(|(t, body)| **t > sent && body.to_string().contains("b1 done"))
        .map(|(t, _)| *t)
        .context("the leader never saw b1's message")?;
    Ok(Outcome {
        wall,
        peak_rss_kb: peak,
        peak_pss_kb: peak_pss,
        spawn_to_first_request: spawn,
        delivery: got - sent,
        cpu,
    })
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== model-driven team against the mock server (issue 5) ==");
    let rounds = if quick { 2 } else { 9 };
    // Timed runs and sampled runs take turns: the wall comes from the runs nothing watches.
    let runs: Vec<(bool, Outcome)> = (0..rounds * 2)
        .map(|i| one_run(dir, i, i % 2 == 1).map(|o| (i % 2 == 1, o)))
        .collect::<Result<_>>()?;
    let mut wall: Vec<f64> = runs
        .iter()
        .filter(|(sampled, _)| !sampled)
        .map(|(_, o)| o.wall.as_secs_f64())
        .collect();
    let runs: Vec<Outcome> = runs.into_iter().map(|(_, o)| o).collect();
    let mut spawn: Vec<f64> = runs
        .iter()
        .map(|o| o.spawn_to_first_request.as_secs_f64())
        .collect();
    let mut deliv: Vec<f64> = runs.iter().map(|o| o.delivery.as_secs_f64()).collect();
    let rss_mb = runs.iter().map(|o| o.peak_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
    let pss_mb = runs.iter().map(|o| o.peak_pss_kb).max().unwrap_or(0) as f64 / 1024.0;
    let (w, s, d) = (
        pct(&mut wall, 50.0),
        pct(&mut spawn, 50.0),
        pct(&mut deliv, 50.0),
    );
    r.add(
        "model team run: leader + 2 teammates, 2 files, finish (median wall)",
        dur(w),
        format!("{} Qwen Code", dur(PEER_WALL)),
        format!("1/{:.0}", PEER_WALL / w),
        "≤ 1/10",
        w * 10.0 <= PEER_WALL,
    );
    r.add(
        "  whole process tree, peak PSS (shared pages counted once)",
        format!("{pss_mb:.1} MiB"),
        format!("{PEER_RSS_MB:.0} MB Qwen Code"),
        format!("1/{:.0}", PEER_RSS_MB / pss_mb),
        "≤ 1/10",
        pss_mb * 10.0 <= PEER_RSS_MB,
    );
    r.note(format!(
        "model run: the tree is the `run` CLI, the daemon and 3 worker processes; summing their RSS (which counts the shared binary pages once per process) gives {rss_mb:.1} MiB ({:.1}× under the peer)",
        PEER_RSS_MB / rss_mb
    ));
    r.add(
        "  spawn call → the teammate's first model request (median)",
        dur(s),
        format!("{} Qwen Code", dur(PEER_SPAWN)),
        format!("1/{:.0}", PEER_SPAWN / s),
        "≤ 1/10",
        s * 10.0 <= PEER_SPAWN,
    );
    r.add(
        "  teammate send_message → leader's next model request (median)",
        dur(d),
        format!("{} Qwen Code", dur(PEER_DELIVERY)),
        format!("1/{:.0}", PEER_DELIVERY / d),
        "≤ 1/50",
        d * 50.0 <= PEER_DELIVERY,
    );
    Ok(())
}
