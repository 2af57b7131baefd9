//! Time to done under model latency (issue 67): the mock model answers each turn after a delay
//! (a model's time to its first token), 3 teammates work a graph of 12 tasks 4 levels deep
//! (each task waits on every task of the level before), the operator gives each task to its
//! teammate up front. The makespan against the critical path's floor (4 levels × 2 model
//! turns × the delay), and every gap a teammate waited while its task was ready.

use crate::report::*;
use agent_team_client::{Client, ReplyExt};
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_paths::Paths;
use agent_team_protocol::{AgentStatus, Reply, Request, TaskStatus};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Teammates, and tasks per level.
const WIDTH: u64 = 3;
/// Levels: each waits on the whole level before it.
const DEPTH: u64 = 4;
/// Model turns a task takes (its work, then its completion).
const TURNS: u64 = 2;

/// Runs the figure.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== time to done under model latency (issue 67) ==");
    let delay = Duration::from_millis(if quick { 200 } else { 1000 });
    let m = one(dir, delay)?;
    let floor = delay * (DEPTH * TURNS) as u32;
    let ratio = m.makespan.as_secs_f64() / floor.as_secs_f64();
    r.add(
        &format!("makespan, {WIDTH} teammates × {DEPTH} levels, {delay:?} a turn"),
        dur(m.makespan.as_secs_f64()),
        dur(floor.as_secs_f64()),
        format!("{ratio:.3}x"),
        "≤ 1.1x",
        ratio <= 1.1,
    );
    r.note(format!(
        "makespan: {} ready tasks waited for their teammate's turn: {} in all, the longest {} \
         (a task is ready when its last blocker completes; the wait ends at its teammate's next \
         model request)",
        m.gaps.len(),
        dur(m.gaps.iter().sum::<Duration>().as_secs_f64()),
        dur(m
            .gaps
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()),
    ));
    Ok(())
}

/// What one run measured.
struct Measured {
    makespan: Duration,
    /// Per task: its start (ready and given to its teammate) to that teammate's next request.
    gaps: Vec<Duration>,
}

/// The id of the task at `level` (0-based) for teammate `i`.
fn task_id(level: u64, i: u64) -> u64 {
    level * WIDTH + i + 1
}

fn script(mock: &MockModel, delay: Duration) {
    let forever =
        |text: &str| Step::until(&["NEVER-IN-ANY-REQUEST"], Step::Text(text.into()), text);
    let slow = |s: Step| Step::Delay(delay, Box::new(s));
    mock.script("leader", vec![forever("Ready.")]);
    for i in 0..WIDTH {
        let mut steps = Vec::new();
        for level in 0..DEPTH {
            let id = task_id(level, i);
            // Its task is started for it when its blockers complete: the board's note is
            // the go.
            steps.push(Step::until(
                &[&format!("Task {id} (")],
                slow(Step::tools(&[(
                    "write_file",
                    json!({"path": format!("t{id}.txt"), "content": "done\n"}),
                )])),
                "Waiting.",
            ));
            steps.push(slow(Step::tools(&[(
                "update_task_status",
                json!({"id": id, "status": "completed", "result": "done"}),
            )])));
        }
        steps.push(forever("Done."));
        mock.script(&format!("worker-{}", i + 1), steps);
    }
}

fn one(dir: &Path, delay: Duration) -> Result<Measured> {
    let mock = MockModel::start_background(Wire::OpenAi)?;
    script(&mock, delay);
    let team = "makespan";
    let t = crate::scale_bench::MockTeam::new(dir, team, "", &mock)?;
    let cli = |args: &[&str]| t.cli(args);
    cli(&[
        "up",
        "--backend",
        "in-process",
        "--detach",
        "-n",
        &WIDTH.to_string(),
        "Wait for the operator.",
    ])?;
    let tp = Paths::new(&t.home, &t.runtime).team(team)?;
    let mut op = Client::operator(&tp)?;
    let names: Vec<String> = (1..=WIDTH).map(|i| format!("worker-{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let idle = match op.call(Request::Agents)? {
            Reply::Agents { agents } => agents
                .iter()
                .filter(|a| a.name != "leader" && a.status == AgentStatus::Idle)
                .count(),
            other => bail!("unexpected reply {other:?}"),
        };
        if idle == names.len() && names.iter().all(|w| !mock.request_times(w).is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the teammates were not idle after 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The wall clock and the monotonic one at the same moment: task times are wall times.
    let (t0, wall0) = (
        Instant::now(),
        SystemTime::now().duration_since(UNIX_EPOCH)?,
    );
    for level in 0..DEPTH {
        for i in 0..WIDTH {
            let blocked_by = match level {
                0 => vec![],
                _ => (0..WIDTH).map(|j| task_id(level - 1, j)).collect(),
            };
            let t = op
                .call(Request::TaskAdd {
                    title: format!("level {} part {}", level + 1, i + 1),
                    description: String::new(),
                    run: None,
                    blocked_by,
                    assign: Some(names[i as usize].clone()),
                    key: None,
                })
                .task()
                .context("task add")?;
            if t.id != task_id(level, i) {
                bail!("task ids are not the script's: got {}", t.id);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let tasks = loop {
        let tasks = match op.call(Request::TaskList {
            status: None,
            after: None,
        })? {
            Reply::Tasks { tasks, .. } => tasks,
            other => bail!("unexpected reply {other:?}"),
        };
        if tasks.iter().all(|t| t.status == TaskStatus::Completed) {
            break tasks;
        }
        if let Some(t) = tasks.iter().find(|t| t.status == TaskStatus::Failed) {
            bail!("task {} failed: {:?}", t.id, t.result);
        }
        if Instant::now() > deadline {
            bail!("the graph was not done after 300 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let last = tasks
        .iter()
        .filter_map(|t| t.finished_at)
        .max()
        .context("no task finished")?;
    let at = |ms: u64| t0 + Duration::from_millis(ms).saturating_sub(wall0);
    let makespan = at(last.0).saturating_duration_since(t0);
    let mut gaps = Vec::new();
    for t in &tasks {
        let (Some(started), Some(owner)) = (t.started_at, &t.owner) else {
            continue;
        };
        let start = at(started.0);
        if let Some(next) = mock
            .request_times(owner)
            .into_iter()
            .find(|r| *r + Duration::from_millis(1) >= start)
        {
            gaps.push(next.saturating_duration_since(start));
        }
    }
    drop(op);
    cli(&["down"])?;
    Ok(Measured { makespan, gaps })
}
