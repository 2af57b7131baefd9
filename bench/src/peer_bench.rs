//! Our team beside Claude Code's own agent teams (issue 30, the peer): the same scripted work,
//! the same mock model, in the same run. Claude Code (the pinned 2.1.330 the end-to-end tests
//! use) is started headless as the leader (`-p`) with its agent teams on
//! (`CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS=1`, `--teammate-mode in-process`): it spawns named
//! background agents with its `Agent` tool, they report with `SendMessage` to the main
//! conversation, and it keeps its task list with `TaskCreate` / `TaskUpdate`
//! (`CLAUDE_CODE_ENABLE_TODO_TOOLS=1`). Its home is the one our Claude Code adapter seeds (no
//! onboarding, key or trust screen), without our MCP server and hooks.
//!
//! The workload is the `models` section's (a leader and 2 teammates, 2 tasks, a file and a
//! message each, the leader's answer): wall from start to exit, the leader's spawn request →
//! the first teammate's first model request, and the peak PSS of the whole process tree.

use crate::model_bench::{pss_kb, rss_kb, tree};
use crate::pane_bench::tmux;
use crate::report::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The goals against Claude Code's in-process teams.
const SPEED_GOAL: f64 = 50.0;
const MEMORY_GOAL: f64 = 30.0;

/// How long a Claude Code team run may take before it counts as failed.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What one run of a Claude Code team gave.
pub(crate) struct ClaudeRun {
    /// Start of the command → its exit.
    pub wall: Duration,
    /// Peak PSS and RSS (KiB) of its process tree, when sampled.
    pub peak_pss_kb: u64,
    pub peak_rss_kb: u64,
    /// What it printed (its final answer).
    pub stdout: String,
    /// The CPU time of its whole process tree ([`RunCpu`](crate::model_bench::RunCpu)).
    pub cpu: Option<Duration>,
}

/// Runs Claude Code as the leader of its own team in `ws` against `mock` (whose scripts name
/// the leader `leader`: the prompt starts with `Your name is leader.`); with `sample`, its
/// tree's memory is read every 5 ms, else its wall is timed by a blocking wait.
pub(crate) fn claude_team(
    ws: &Path,
    mock: &MockModel,
    prompt: &str,
    sample: bool,
) -> Result<ClaudeRun> {
    let (exe, launch) = crate::clis_bench::claude_code_alone(ws, mock)?;
    let args = team_args(
        &launch.args,
        &format!("Your name is leader. {prompt}"),
        Mode::InProcess,
    )?;
    let log = ws.join("claude.log");
    let mut cmd = Command::new(&exe);
    cmd.args(&args)
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .process_group(0);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
            cmd.env_remove(k);
        }
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS", "1")
        .env("CLAUDE_CODE_ENABLE_TODO_TOOLS", "1")
        .env_remove("TMUX")
        .env_remove("TMUX_PANE");
    let cpu = crate::model_bench::RunCpu::start();
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let root = child.id();
    let (mut pss, mut rss) = (0, 0);
    let deadline = t0 + RUN_LIMIT;
    let status = loop {
        if !sample {
            break wait_within(&mut child, RUN_LIMIT)?;
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(root as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            break child.wait()?;
        }
        let members = tree(root);
        pss = pss.max(members.iter().map(|p| pss_kb(*p)).sum());
        rss = rss.max(members.iter().map(|p| rss_kb(*p)).sum());
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = t0.elapsed();
    // Whatever it left in its group (nothing, when it ends well).
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(root as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let stdout = reader.join().unwrap_or_default();
    let cpu = cpu.finish();
    if !status.success() {
        bail!(
            "Claude Code's team run failed ({status}): {}\n{}\nunmatched requests: {}",
            stdout.trim(),
            std::fs::read_to_string(&log).unwrap_or_default().trim(),
            mock.unmatched().len()
        );
    }
    Ok(ClaudeRun {
        wall,
        peak_pss_kb: pss,
        peak_rss_kb: rss,
        stdout,
        cpu,
    })
}

/// Waits for `child` without polling; past `limit` its process group is killed first.
fn wait_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let status = child.wait();
    drop(tx);
    let _ = watchdog.join();
    Ok(status?)
}

/// How Claude Code's team runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Headless (`-p`), its teammates in its own process (`--teammate-mode in-process`); they
    /// address the leader as `main`.
    InProcess,
    /// Interactive in a tmux pane, each teammate a Claude Code of its own in a pane beside it
    /// (`--teammate-mode tmux`); they address the leader as `team-lead`.
    Tmux,
}

impl Mode {
    /// The name a teammate's `SendMessage` reaches the leader by (2.1.330: `main` is refused
    /// by a tmux teammate, `team-lead` by an in-process one).
    fn leader(self) -> &'static str {
        match self {
            Mode::InProcess => "main",
            Mode::Tmux => "team-lead",
        }
    }
}

/// The alone launch's arguments made a team leader's: this prompt (after `-p` headless, as
/// its first instruction interactive), every tool allowed (the mock's script decides what
/// runs; as root that needs `IS_SANDBOX=1`, which the adapter sets), its teammate mode.
fn team_args(alone: &[String], prompt: &str, mode: Mode) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let mut it = alone.iter();
    let mut prompted = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "-p" => {
                it.next();
                if mode == Mode::InProcess {
                    args.push("-p".into());
                }
                args.push(prompt.to_string());
                prompted = true;
            }
            "--permission-mode" => {
                it.next();
                args.extend(["--permission-mode".into(), "bypassPermissions".into()]);
            }
            "--allowedTools" | "--disallowedTools" => {
                it.next();
            }
            _ => args.push(a.clone()),
        }
    }
    if !prompted {
        bail!("Claude Code's alone launch has no -p: the team launch needs updating");
    }
    let teammates = match mode {
        Mode::InProcess => "in-process",
        Mode::Tmux => "tmux",
    };
    args.extend(["--teammate-mode".into(), teammates.into()]);
    Ok(args)
}

/// Scripts the `models` workload in Claude Code's tools: the leader keeps the 2 tasks, spawns
/// b1 and b2 (one message, both in the background), and once both reported marks the tasks
/// done and answers; each teammate writes its file and tells the main conversation. Claude
/// Code's teammates have no task tools (2.1.330), so the leader updates the tasks. The
/// leader's last steps answer the notices Claude Code sends it as each teammate ends.
fn script(mock: &MockModel, ws: &Path, mode: Mode) {
    let mut leader = vec![
        Step::tools(&[
            (
                "TaskCreate",
                json!({"subject": "write a.txt", "description": "write a.txt"}),
            ),
            (
                "TaskCreate",
                json!({"subject": "write b.txt", "description": "write b.txt"}),
            ),
        ]),
        // The prompts must not hold the reports' words ("b1 done"): the leader's requests carry
        // its own calls, and its script (and the tmux run's end) wait for those words.
        Step::tools(&[
            (
                "Agent",
                json!({"name": "b1", "description": "write a.txt", "run_in_background": true,
                       "prompt": "Your name is b1. Write a.txt, then report to the leader."}),
            ),
            (
                "Agent",
                json!({"name": "b2", "description": "write b.txt", "run_in_background": true,
                       "prompt": "Your name is b2. Write b.txt, then report to the leader."}),
            ),
        ]),
        Step::Text("Waiting for the team.".into()),
        Step::until(
            &["b1 done", "b2 done"],
            Step::tools(&[
                ("TaskUpdate", json!({"taskId": "1", "status": "completed"})),
                ("TaskUpdate", json!({"taskId": "2", "status": "completed"})),
            ]),
            "Still waiting.",
        ),
        Step::Text("a.txt and b.txt are written".into()),
    ];
    leader.extend((0..8).map(|_| Step::Text("Noted.".into())));
    mock.script("leader", leader);
    for (me, file) in [("b1", "a.txt"), ("b2", "b.txt")] {
        mock.script(
            me,
            vec![
                Step::tools(&[(
                    "Write",
                    json!({"file_path": ws.join(file), "content": format!("{me}\n")}),
                )]),
                Step::tools(&[(
                    "SendMessage",
                    json!({"to": mode.leader(), "message": format!("{me} done"), "summary": format!("wrote {file}")}),
                )]),
                Step::Text("Nothing left.".into()),
            ],
        );
    }
}

/// One Claude Code team run of the `models` workload: (wall, spawn → first request, peak PSS
/// and RSS KiB, the leader's and each teammate's requests).
struct PeerOutcome {
    wall: Duration,
    spawn: Duration,
    pss_kb: u64,
    rss_kb: u64,
    requests: (usize, usize, usize),
    /// The CPU time of its process tree, where measured (not the tmux team: its server is
    /// not the bench's child).
    cpu: Option<Duration>,
}

fn claude_run(dir: &Path, i: usize, sample: bool) -> Result<PeerOutcome> {
    let mock = MockModel::start_background(Wire::Anthropic)?;
    let ws = dir.join(format!("cc-team{i}"));
    std::fs::create_dir_all(&ws)?;
    let ws = ws.canonicalize()?;
    script(&mock, &ws, Mode::InProcess);
    let run = claude_team(&ws, &mock, PROMPT, sample)?;
    for f in ["a.txt", "b.txt"] {
        if !ws.join(f).exists() {
            bail!(
                "Claude Code's team did not write {f}: {}",
                run.stdout.trim()
            );
        }
    }
    if !run.stdout.contains("a.txt and b.txt are written") {
        bail!("Claude Code's team did not answer: {}", run.stdout.trim());
    }
    let leader = mock.request_times("leader");
    let b1 = mock.request_times("b1");
    let spawn = *b1.first().context("b1 made no request")?
        - *leader.get(1).context("the leader made no second request")?;
    Ok(PeerOutcome {
        wall: run.wall,
        spawn,
        pss_kb: run.peak_pss_kb,
        rss_kb: run.peak_rss_kb,
        requests: (leader.len(), b1.len(), mock.request_times("b2").len()),
        cpu: run.cpu,
    })
}

/// The leader's instruction for the `models` workload.
const PROMPT: &str = "Split the work into a.txt and b.txt, give each to a teammate, and answer when both are written.";

/// One run of the `models` workload by Claude Code's tmux team: its leader interactive in a
/// pane of a private tmux server, each teammate a Claude Code of its own in a pane beside it.
/// An interactive leader does not exit, so its wall ends at the leader's request that its
/// final answer answers (the leader's exit is not counted: in Claude Code's favour). With
/// `sample`, the memory of every process under the tmux server (the server itself left out)
/// is read every 5 ms.
fn claude_tmux_run(dir: &Path, i: usize, sample: bool) -> Result<PeerOutcome> {
    let mock = MockModel::start_background(Wire::Anthropic)?;
    let ws = dir.join(format!("cc-tmux{i}"));
    std::fs::create_dir_all(&ws)?;
    let ws = ws.canonicalize()?;
    script(&mock, &ws, Mode::Tmux);
    let (exe, launch) = crate::clis_bench::claude_code_alone(&ws, &mock)?;
    let args = team_args(
        &launch.args,
        &format!("Your name is leader. {PROMPT}"),
        Mode::Tmux,
    )?;
    let sock = dir.join(format!("cc-tmux{i}.sock"));
    let mut cmd = Command::new("tmux");
    cmd.arg("-S")
        .arg(&sock)
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "cc",
            "-x",
            "220",
            "-y",
            "50",
            "-c",
        ])
        .arg(&launch.cwd)
        .arg(&exe)
        .args(&args)
        .stdin(Stdio::null())
        .env_remove("TMUX")
        .env_remove("TMUX_PANE");
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
            cmd.env_remove(k);
        }
    }
    // The server (started by this client) and so every pane inherit them.
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS", "1")
        .env("CLAUDE_CODE_ENABLE_TODO_TOOLS", "1");
    let t0 = Instant::now();
    let out = cmd.output().context("cannot run tmux")?;
    if !out.status.success() {
        bail!("tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
    }
    let outcome = watch_tmux_team(&mock, &sock, t0, sample);
    // Every process the server had, the panes' and theirs, then the server.
    let server = tmux(&sock, &["display-message", "-p", "#{pid}"])
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let _ = tmux(&sock, &["kill-server"]);
    if let Some(server) = server {
        for pid in tree(server) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let (wall, pss, rss) = outcome?;
    for f in ["a.txt", "b.txt"] {
        if !ws.join(f).exists() {
            bail!("Claude Code's tmux team did not write {f}");
        }
    }
    let leader = mock.request_times("leader");
    let b1 = mock.request_times("b1");
    let spawn = *b1.first().context("b1 made no request")?
        - *leader.get(1).context("the leader made no second request")?;
    Ok(PeerOutcome {
        wall,
        spawn,
        pss_kb: pss,
        rss_kb: rss,
        requests: (leader.len(), b1.len(), mock.request_times("b2").len()),
        cpu: None,
    })
}

/// Waits (at most [`RUN_LIMIT`]) until the tmux team's leader asked for its final answer: the
/// request after the first one carrying both teammates' reports. (wall from `t0`, peak PSS
/// and RSS KiB of everything under the tmux server when `sample`.)
fn watch_tmux_team(
    mock: &MockModel,
    sock: &Path,
    t0: Instant,
    sample: bool,
) -> Result<(Duration, u64, u64)> {
    let server = tmux(sock, &["display-message", "-p", "#{pid}"])?
        .trim()
        .parse::<u32>()
        .context("tmux gave no server pid")?;
    let (mut pss, mut rss) = (0, 0);
    while t0.elapsed() < RUN_LIMIT {
        let bodies = mock.requests("leader");
        let reported = bodies.iter().position(|b| {
            let t = b.to_string();
            t.contains("b1 done") && t.contains("b2 done")
        });
        if let Some(u) = reported
            && let Some(at) = mock.request_times("leader").get(u + 1)
        {
            return Ok((*at - t0, pss, rss));
        }
        if sample {
            let members: Vec<u32> = tree(server).into_iter().filter(|p| *p != server).collect();
            pss = pss.max(members.iter().map(|p| pss_kb(*p)).sum());
            rss = rss.max(members.iter().map(|p| rss_kb(*p)).sum());
            std::thread::sleep(Duration::from_millis(5));
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    bail!(
        "Claude Code's tmux team did not finish within {RUN_LIMIT:?}: {}",
        tmux(sock, &["capture-pane", "-p", "-t", "cc"]).unwrap_or_default()
    )
}

/// A team's three peer figures over its runs: the median wall of the runs nothing sampled
/// (seconds), the median spawn → first request (seconds), the peak PSS (MiB).
struct Figures {
    wall: f64,
    spawn: f64,
    pss_mib: f64,
}

/// [`Figures`] of runs given as (sampled, wall, spawn → first request, peak PSS KiB).
fn figures(runs: impl Iterator<Item = (bool, Duration, Duration, u64)>) -> Figures {
    let runs: Vec<_> = runs.collect();
    Figures {
        wall: median(runs.iter().filter(|r| !r.0).map(|r| r.1)),
        spawn: median(runs.iter().map(|r| r.2)),
        pss_mib: runs.iter().map(|r| r.3).max().unwrap_or(0) as f64 / 1024.0,
    }
}

/// The rows of `ours` (our team on `backend`) beside `peer` (named `who`): wall, spawn → first
/// request, peak PSS; `goals`: against the goals (≥ 50× on speed, ≤ 1/30 memory),
/// else shown only.
fn beside(r: &mut Report, backend: &str, ours: &Figures, peer: &Figures, who: &str, goals: bool) {
    let goal = |g: &'static str| if goals { g } else { "—" };
    r.add(
        &format!("peer: team run, ours on the {backend} beside {who} (median wall)"),
        dur(ours.wall),
        format!("{} {who}", dur(peer.wall)),
        format!("1/{:.0}", peer.wall / ours.wall),
        goal("≤ 1/50"),
        !goals || ours.wall * SPEED_GOAL <= peer.wall,
    );
    r.add(
        &format!("  peer: {backend} beside {who}, spawn request → first request (median)"),
        dur(ours.spawn),
        format!("{} {who}", dur(peer.spawn)),
        format!("1/{:.0}", peer.spawn / ours.spawn),
        goal("≤ 1/50"),
        !goals || ours.spawn * SPEED_GOAL <= peer.spawn,
    );
    r.add(
        &format!("  peer: {backend} beside {who}, whole process tree, peak PSS"),
        format!("{:.1} MiB", ours.pss_mib),
        format!("{:.1} MiB {who}", peer.pss_mib),
        format!(
            "1/{:.0}",
            peer.pss_mib / ours.pss_mib.max(f64::MIN_POSITIVE)
        ),
        goal("≤ 1/30"),
        !goals || ours.pss_mib * MEMORY_GOAL <= peer.pss_mib,
    );
}

/// The median CPU time of the runs nothing sampled, as text ("—" when none was measured).
fn cpu_median(runs: impl Iterator<Item = (bool, Option<Duration>)>) -> String {
    let cpu: Vec<Duration> = runs.filter(|r| !r.0).filter_map(|r| r.1).collect();
    if cpu.is_empty() {
        return "—".into();
    }
    dur(median(cpu.into_iter()))
}

/// Median of `xs` in seconds.
fn median(xs: impl Iterator<Item = Duration>) -> f64 {
    let mut v: Vec<f64> = xs.map(|d| d.as_secs_f64()).collect();
    pct(&mut v, 50.0)
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!(
        "== our team beside Claude Code's own agent teams, same script and mock (issue 30) =="
    );
    let rounds = if quick { 2 } else { 6 };
    crate::link_order::note(r, &crate::daemon_bench::bin_dir());
    // Our side alone (no Claude Code run, no ratio): for comparing two builds of ours, each
    // `AGENT_TEAM_BIN_DIR` in turn, as BENCHMARKS does.
    if std::env::var_os("BENCH_PEER_OURS_ONLY").is_some() {
        return ours_only(r, dir, rounds);
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // Ours on the in-process backend too: its teammates run in the daemon, as Claude Code's
    // in-process teammates run in its leader's process.
    let mut ours_inproc = Vec::new();
    // Each round: ours timed, ours sampled, Claude Code timed, Claude Code sampled, so a change
    // of the machine's load moves both alike.
    let tmux_ok = agent_team_pane::tmux::version().is_ok();
    let mut panes = Vec::new();
    for i in 0..rounds {
        for sample in [false, true] {
            let n = 2 * i + usize::from(sample);
            let o = crate::model_bench::one_run(dir, 1000 + n, sample)?;
            ours.push((sample, o));
            let o = crate::model_bench::run_on(dir, 2000 + n, sample, "in-process")?;
            ours_inproc.push((sample, o));
            theirs.push((sample, claude_run(dir, n, sample)?));
            if tmux_ok {
                panes.push((sample, claude_tmux_run(dir, n, sample)?));
            }
        }
    }
    let ours_fig = figures(
        ours.iter()
            .map(|(s, o)| (*s, o.wall, o.spawn_to_first_request, o.peak_pss_kb)),
    );
    let inproc_fig = figures(
        ours_inproc
            .iter()
            .map(|(s, o)| (*s, o.wall, o.spawn_to_first_request, o.peak_pss_kb)),
    );
    let cc_fig = figures(theirs.iter().map(|(s, o)| (*s, o.wall, o.spawn, o.pss_kb)));
    let rss_cc = theirs.iter().map(|(_, o)| o.rss_kb).max().unwrap_or(0) as f64 / 1024.0;
    beside(
        r,
        "process backend",
        &ours_fig,
        &cc_fig,
        "Claude Code",
        true,
    );
    beside(
        r,
        "in-process backend",
        &inproc_fig,
        &cc_fig,
        "Claude Code",
        true,
    );
    if panes.is_empty() {
        r.note("peer: tmux is not installed: Claude Code's tmux team was not run".into());
    } else {
        let tmux_fig = figures(panes.iter().map(|(s, o)| (*s, o.wall, o.spawn, o.pss_kb)));
        beside(
            r,
            "process backend",
            &ours_fig,
            &tmux_fig,
            "Claude Code tmux",
            false,
        );
        let (l, b1, b2) = panes.last().map(|(_, o)| o.requests).unwrap_or_default();
        r.note(format!(
            "peer: Claude Code's tmux team (interactive leader in a pane of a private tmux server, \
             `--teammate-mode tmux`, each teammate a Claude Code in a pane of its own): its wall ends \
             at the leader's request for its final answer (an interactive leader does not exit; \
             ours counts to `run`'s exit); requests: leader {l}, b1 {b1}, b2 {b2}"
        ));
    }
    let (l, b1, b2) = theirs.last().map(|(_, o)| o.requests).unwrap_or_default();
    r.note(format!(
        "peer: Claude Code {} in-process team (`-p`, `--teammate-mode in-process`), {rounds} rounds; \
         its tree's peak RSS {rss_cc:.0} MiB; model requests per run: leader {l}, b1 {b1}, b2 {b2} \
         (ours: leader 4–5, each teammate 4)",
        crate::clis_bench::CLAUDE_CODE_VERSION,
    ));
    r.note(format!(
        "peer: CPU time of a run's whole process tree (median of the runs nothing sampled): ours \
         in-process {}, ours process backend {}, Claude Code in-process {}",
        cpu_median(ours_inproc.iter().map(|(s, o)| (*s, o.cpu))),
        cpu_median(ours.iter().map(|(s, o)| (*s, o.cpu))),
        cpu_median(theirs.iter().map(|(s, o)| (*s, o.cpu))),
    ));
    Ok(())
}

/// `BENCH_PEER_OURS_ONLY=1`: our two backends' rows of the section, without Claude Code's.
fn ours_only(r: &mut Report, dir: &Path, rounds: usize) -> Result<()> {
    for (k, backend) in ["process", "in-process"].into_iter().enumerate() {
        let mut runs = Vec::new();
        for i in 0..rounds {
            for sample in [false, true] {
                let n = 3000 + 1000 * k + 2 * i + usize::from(sample);
                let o = crate::model_bench::run_on(dir, n, sample, backend)?;
                runs.push((
                    sample,
                    o.wall,
                    o.spawn_to_first_request,
                    o.peak_pss_kb,
                    o.cpu,
                ));
            }
        }
        let cpu = cpu_median(runs.iter().map(|r| (r.0, r.4)));
        let f = figures(runs.into_iter().map(|r| (r.0, r.1, r.2, r.3)));
        r.note(format!(
            "peer (ours only, {} at {}): {backend} backend: wall {}, spawn → first request {}, peak PSS {:.1} MiB, CPU {cpu}",
            rounds,
            crate::daemon_bench::bin_dir().display(),
            dur(f.wall),
            dur(f.spawn),
            f.pss_mib
        ));
    }
    Ok(())
}
