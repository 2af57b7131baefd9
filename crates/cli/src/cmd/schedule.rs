//! Schedules (issue 69): `[[schedule]]` in a team file, and schedules kept in
//! `AGENT_TEAM_HOME/schedules/` by `agent-team schedule add|rm`; `agent-team serve` and
//! `agent-team scheduler` start a run (`runs.rs`) at each time. Never two runs of one schedule
//! at once (a time that comes while one runs is recorded as skipped); a time missed while no
//! scheduler ran is run once, or skipped (`missed = "skip"`), judged from the last fire time,
//! which is kept on disk. The clock is a trait, so the rules are tested with a fake one.

use crate::cmd::runs::{RunSpec, RunStore, Trigger};
use agent_team_config::triggers::{Missed, Schedule};
use agent_team_paths::Paths;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A time more than this far behind the clock when the scheduler sees it was missed (the
/// scheduler was down or stalled), and `missed` decides.
const GRACE_SECS: i64 = 30;

/// The time now.
pub(crate) trait Clock {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Starts and skips runs for the scheduler.
pub(crate) trait Launcher {
    /// Starts a run of `job` for the time `fire`; the flag is set when it has ended.
    fn start(&mut self, job: &Job, fire: DateTime<Utc>) -> Result<Arc<AtomicBool>>;
    /// Records that the time `fire` of `job` started no run, and why.
    fn skip(&mut self, job: &Job, fire: DateTime<Utc>, reason: &str);
}

/// One schedule of one team.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The team.
    pub team: String,
    /// Its team file.
    pub file: PathBuf,
    /// The schedule.
    pub schedule: Schedule,
    cron: croner::Cron,
}

impl Job {
    /// A job, its cron expression checked.
    pub fn new(team: &str, file: &Path, schedule: Schedule) -> Result<Job> {
        let cron = agent_team_config::triggers::parse_cron(&schedule.cron)
            .map_err(|m| anyhow::anyhow!("schedule {}: {m}", schedule.name))?;
        Ok(Job {
            team: team.to_string(),
            file: file.to_path_buf(),
            schedule,
            cron,
        })
    }

    /// `TEAM/NAME`, the key of its state.
    pub fn key(&self) -> String {
        format!("{}/{}", self.team, self.schedule.name)
    }

    /// The latest time of the schedule at or before `now` (local time).
    fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&chrono::Local);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next time of the schedule after `now`.
    fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&chrono::Local);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The last fire time of each schedule, kept in a file.
#[derive(Debug, Default)]
pub(crate) struct FireTimes {
    file: Option<PathBuf>,
    last: BTreeMap<String, DateTime<Utc>>,
}

impl FireTimes {
    /// The times in `file` (none yet: empty).
    pub fn load(file: PathBuf) -> FireTimes {
        let last = std::fs::read(&file)
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default();
        FireTimes {
            file: Some(file),
            last,
        }
    }

    fn get(&self, key: &str) -> Option<DateTime<Utc>> {
        self.last.get(key).copied()
    }

    /// Sets and writes (the file replaced whole, synced).
    fn set(&mut self, key: &str, t: DateTime<Utc>) {
        self.last.insert(key.to_string(), t);
        let Some(file) = &self.file else { return };
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            if let Some(d) = file.parent() {
                std::fs::create_dir_all(d)?;
            }
            let tmp = file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(&self.last).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)
        };
        if let Err(e) = write() {
            eprintln!(
                "agent-team: scheduler: cannot write {}: {e}",
                file.display()
            );
        }
    }
}

/// The scheduler's rules over a set of jobs: [`Scheduler::tick`] at any rate.
pub(crate) struct Scheduler<L: Launcher> {
    jobs: Vec<Job>,
    running: BTreeMap<String, Arc<AtomicBool>>,
    times: FireTimes,
    launcher: L,
}

impl<L: Launcher> Scheduler<L> {
    /// A scheduler of no jobs yet.
    pub fn new(times: FireTimes, launcher: L) -> Self {
        Scheduler {
            jobs: Vec::new(),
            running: BTreeMap::new(),
            times,
            launcher,
        }
    }

    /// Replaces the jobs (runs going on are still waited for before their schedule's next).
    pub fn set_jobs(&mut self, jobs: Vec<Job>) {
        self.jobs = jobs;
    }

    /// Whether a run of `key` is going on.
    #[cfg(test)]
    pub fn is_running(&self, key: &str) -> bool {
        self.running
            .get(key)
            .is_some_and(|d| !d.load(Ordering::SeqCst))
    }

    /// Starts what is due at `now`: for each job, the latest time of its schedule since the
    /// last fire starts one run (the times before it collapse into it), unless a run of it
    /// is going on or the time was missed and the job says `skip` (then recorded as skipped).
    /// A job seen for the first time starts from now: no run for times before it existed.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        self.running.retain(|_, d| !d.load(Ordering::SeqCst));
        for job in &self.jobs {
            let key = job.key();
            let Some(last) = self.times.get(&key) else {
                self.times.set(&key, now);
                continue;
            };
            let Some(latest) = job.latest(now) else {
                continue;
            };
            if latest <= last {
                continue;
            }
            // Recorded before the run starts: a crash right after never starts it twice.
            self.times.set(&key, latest);
            let missed = (now - latest).num_seconds() > GRACE_SECS;
            if self.running.contains_key(&key) {
                self.launcher
                    .skip(job, latest, "a run of this schedule was still running");
            } else if missed && job.schedule.missed == Missed::Skip {
                self.launcher.skip(
                    job,
                    latest,
                    "the time was missed while no scheduler ran (missed = \"skip\")",
                );
            } else {
                match self.launcher.start(job, latest) {
                    Ok(done) => {
                        self.running.insert(key, done);
                    }
                    Err(e) => {
                        eprintln!("agent-team: scheduler: cannot start a run of {key}: {e:#}")
                    }
                }
            }
        }
    }
}

/// The real launcher: runs recorded in the runs record.
pub(crate) struct RecordLauncher {
    store: RunStore,
    secrets: BTreeMap<String, String>,
}

impl RecordLauncher {
    fn spec(&self, job: &Job, fire: DateTime<Utc>) -> RunSpec {
        RunSpec {
            trigger: Trigger::Schedule(job.schedule.name.clone()),
            team: job.team.clone(),
            file: job.file.clone(),
            goal: job.schedule.goal.clone(),
            vars: job.schedule.vars.clone(),
            secrets: self.secrets.clone(),
            fire_time: Some(fire),
        }
    }
}

impl Launcher for RecordLauncher {
    fn start(&mut self, job: &Job, fire: DateTime<Utc>) -> Result<Arc<AtomicBool>> {
        let started = self.store.start(&self.spec(job, fire), Utc::now())?;
        eprintln!(
            "agent-team: scheduler: started run {} of {}",
            started.id,
            job.key()
        );
        Ok(started.done)
    }

    fn skip(&mut self, job: &Job, fire: DateTime<Utc>, reason: &str) {
        if let Err(e) = self
            .store
            .skipped(&self.spec(job, fire), Utc::now(), reason)
        {
            eprintln!(
                "agent-team: scheduler: cannot record a skipped run of {}: {e:#}",
                job.key()
            );
        }
    }
}

/// A schedule kept in the agent-team home by `schedule add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The team.
    pub team: String,
    /// Its team file (absolute).
    pub file: PathBuf,
    /// The schedule; none: the team file's own `[[schedule]]`s are run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

fn dir(paths: &Paths) -> PathBuf {
    paths.home.join("schedules")
}

fn stored_file(paths: &Paths) -> PathBuf {
    dir(paths).join("schedules.json")
}

fn read_stored(paths: &Paths) -> Vec<Stored> {
    std::fs::read(stored_file(paths))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

fn write_stored(paths: &Paths, all: &[Stored]) -> Result<()> {
    let file = stored_file(paths);
    std::fs::create_dir_all(dir(paths))?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(all)?)?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))
}

/// Every job: the `[[schedule]]`s of `served` (the team file of `serve`/`scheduler`, with its
/// team) and of each team file `schedule add -f` registered, and the schedules `schedule
/// add` kept. A file that cannot be read is reported and left out (the others run).
pub(crate) fn jobs(paths: &Paths, served: Option<(&str, &Path)>) -> Vec<Job> {
    let mut out: Vec<Job> = Vec::new();
    let mut push = |j: Result<Job>| match j {
        Ok(j) if out.iter().any(|o| o.key() == j.key()) => {}
        Ok(j) => out.push(j),
        Err(e) => eprintln!("agent-team: scheduler: {e:#}"),
    };
    let mut files: Vec<(String, PathBuf)> = served
        .map(|(t, f)| (t.to_string(), f.to_path_buf()))
        .into_iter()
        .collect();
    for s in read_stored(paths) {
        match s.schedule {
            Some(sch) => push(Job::new(&s.team, &s.file, sch)),
            None => files.push((s.team, s.file)),
        }
    }
    for (team, file) in files {
        match agent_team_config::triggers::load(&file) {
            Ok(t) => {
                for s in t.schedules {
                    push(Job::new(&team, &file, s));
                }
            }
            Err(e) => push(Err(anyhow::anyhow!("{e}"))),
        }
    }
    out
}

/// Runs the schedules until `stop` is set, re-reading them every few seconds (so `schedule
/// add` and an edited team file take effect). `serve` runs it on a thread of its own;
/// `agent-team scheduler` runs only this.
pub(crate) fn run_loop(
    paths: &Paths,
    served: Option<(String, PathBuf)>,
    secrets: BTreeMap<String, String>,
    stop: &AtomicBool,
) {
    let launcher = RecordLauncher {
        store: RunStore::new(paths),
        secrets,
    };
    let times = FireTimes::load(dir(paths).join("fired.json"));
    let mut sched = Scheduler::new(times, launcher);
    let mut locks = Locks::new(dir(paths).join("locks"));
    let clock = SystemClock;
    let mut loaded: Option<std::time::Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if loaded.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            let all = jobs(
                paths,
                served.as_ref().map(|(t, f)| (t.as_str(), f.as_path())),
            );
            sched.set_jobs(locks.owned(all));
            loaded = Some(std::time::Instant::now());
        }
        sched.tick(clock.now());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stopped: the runs going on are waited for, so each one's record gets its end.
    while sched.running.values().any(|d| !d.load(Ordering::SeqCst)) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One lock per schedule, so two schedulers on one home (a `serve` and a `scheduler`) never
/// both run it: the first to take it owns it while it lives.
struct Locks {
    dir: PathBuf,
    held: BTreeMap<String, nix::fcntl::Flock<std::fs::File>>,
    told: std::collections::BTreeSet<String>,
}

impl Locks {
    fn new(dir: PathBuf) -> Self {
        Locks {
            dir,
            held: BTreeMap::new(),
            told: Default::default(),
        }
    }

    /// The jobs whose lock this process holds or now takes.
    fn owned(&mut self, jobs: Vec<Job>) -> Vec<Job> {
        // Nothing is made without a schedule to run: a `serve` whose team's files were deleted
        // made `schedules/locks` (and the home) again every 5 s (e2e
        // `vanish::deleting_a_serve_session_teams_files_…`). With a schedule the home is made
        // as any command makes it: a new home does not exist before its first use.
        if jobs.is_empty() {
            return jobs;
        }
        let _ = std::fs::create_dir_all(&self.dir);
        jobs.into_iter()
            .filter(|j| {
                let key = j.key();
                if self.held.contains_key(&key) {
                    return true;
                }
                let path = self.dir.join(format!("{}.lock", key.replace('/', "@")));
                let Ok(f) = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                else {
                    return false;
                };
                match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                    Ok(l) => {
                        self.held.insert(key, l);
                        true
                    }
                    Err(_) => {
                        if self.told.insert(key.clone()) {
                            eprintln!(
                                "agent-team: scheduler: {key} is run by another scheduler on this machine"
                            );
                        }
                        false
                    }
                }
            })
            .collect()
    }
}

/// `agent-team scheduler`
pub(crate) fn scheduler(paths: &Paths, served: Option<(String, PathBuf)>) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    let n = jobs(
        paths,
        served.as_ref().map(|(t, f)| (t.as_str(), f.as_path())),
    )
    .len();
    eprintln!(
        "agent-team: scheduler: {n} schedule(s) (`agent-team schedule list`); runs in `agent-team runs list`; Ctrl-C stops it once the runs going on have ended"
    );
    run_loop(paths, served, BTreeMap::new(), &stop);
    Ok(ExitCode::SUCCESS)
}

/// `agent-team schedule add`
#[allow(clippy::too_many_arguments)]
pub(crate) fn add(
    paths: &Paths,
    team: &str,
    file: Option<&Path>,
    name: Option<String>,
    cron: Option<String>,
    goal: Option<String>,
    vars: Vec<(String, String)>,
    missed: Missed,
) -> Result<ExitCode> {
    let Some(file) = file else {
        anyhow::bail!(crate::Hinted::new(
            "a schedule needs a team file",
            "give -f FILE (or run it where agent-team.toml is)",
        ));
    };
    let file =
        std::fs::canonicalize(file).with_context(|| format!("cannot find {}", file.display()))?;
    // The file must be a valid team file now, not at 3 in the morning.
    agent_team_config::load(&file)?;
    let mut all = read_stored(paths);
    let entry = match (name, cron) {
        (Some(name), Some(cron)) => {
            let schedule = Schedule {
                name,
                cron,
                goal,
                vars: vars.into_iter().collect(),
                missed,
            };
            if !agent_team_config::triggers::valid_name(&schedule.name) {
                anyhow::bail!(
                    "schedule name {:?}: use 1-64 of letters, digits, `-` and `_`",
                    schedule.name
                );
            }
            Job::new(team, &file, schedule.clone())?;
            if jobs(paths, Some((team, &file)))
                .iter()
                .any(|j| j.team == team && j.schedule.name == schedule.name)
            {
                anyhow::bail!(
                    "team {team} already has a schedule {:?} (`agent-team schedule list`)",
                    schedule.name
                );
            }
            Stored {
                team: team.to_string(),
                file,
                schedule: Some(schedule),
            }
        }
        (None, None) => {
            let t = agent_team_config::triggers::load(&file)?;
            if t.schedules.is_empty() {
                anyhow::bail!(crate::Hinted::new(
                    format!("{} has no [[schedule]]", file.display()),
                    "add one to the file, or give NAME --cron EXPR",
                ));
            }
            all.retain(|s| !(s.schedule.is_none() && s.team == team && s.file == file));
            Stored {
                team: team.to_string(),
                file,
                schedule: None,
            }
        }
        _ => anyhow::bail!(
            "give both NAME and --cron, or neither (to run the team file's [[schedule]]s)"
        ),
    };
    let what = match &entry.schedule {
        Some(s) => format!("schedule {} of team {team}", s.name),
        None => format!(
            "the [[schedule]]s of {} (team {team})",
            entry.file.display()
        ),
    };
    all.push(entry);
    write_stored(paths, &all)?;
    crate::output::line(&format!(
        "added {what}; `agent-team serve` or `agent-team scheduler` runs it"
    ));
    Ok(ExitCode::SUCCESS)
}

/// `agent-team schedule rm`
pub(crate) fn rm(
    paths: &Paths,
    team: &str,
    name: Option<&str>,
    file: Option<&Path>,
) -> Result<ExitCode> {
    let mut all = read_stored(paths);
    let before = all.len();
    let file = file.and_then(|f| std::fs::canonicalize(f).ok());
    all.retain(|s| match (&s.schedule, name) {
        (Some(sch), Some(n)) => !(s.team == team && sch.name == n),
        (None, None) => !(s.team == team && file.as_ref().is_none_or(|f| *f == s.file)),
        _ => true,
    });
    if all.len() == before {
        anyhow::bail!(crate::Hinted::new(
            match name {
                Some(n) => format!("team {team} has no stored schedule {n:?}"),
                None => format!("no team file of team {team} is registered"),
            },
            "`agent-team schedule list` shows them; a [[schedule]] in a team file is removed by editing the file",
        ));
    }
    write_stored(paths, &all)?;
    crate::output::line("removed");
    Ok(ExitCode::SUCCESS)
}

/// `agent-team schedule list`
pub(crate) fn list(paths: &Paths, served: Option<(&str, &Path)>, json: bool) -> Result<ExitCode> {
    let all = jobs(paths, served);
    let times = FireTimes::load(dir(paths).join("fired.json"));
    let now = Utc::now();
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|j| {
                serde_json::json!({
                    "team": j.team,
                    "file": j.file,
                    "name": j.schedule.name,
                    "cron": j.schedule.cron,
                    "goal": j.schedule.goal,
                    "vars": j.schedule.vars,
                    "missed": j.schedule.missed,
                    "last_fire": times.get(&j.key()),
                    "next": j.next(now),
                })
            })
            .collect();
        crate::output::json(&serde_json::json!({ "schedules": v }));
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        crate::output::line(
            "no schedules (add [[schedule]] to a team file, or `agent-team schedule add`)",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let fmt = |t: Option<DateTime<Utc>>| {
        t.map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|j| {
            vec![
                crate::output::short(&j.team, 20),
                crate::output::short(&j.schedule.name, 24),
                crate::output::short(&j.schedule.cron, 24),
                fmt(j.next(now)),
                fmt(times.get(&j.key())),
                crate::output::short(&j.file.display().to_string(), 40),
            ]
        })
        .collect();
    crate::output::table(&["TEAM", "NAME", "CRON", "NEXT", "LAST", "FILE"], &rows);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::cell::RefCell;

    /// A clock the test moves.
    struct FakeClock(RefCell<DateTime<Utc>>);
    impl Clock for FakeClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.borrow()
        }
    }
    impl FakeClock {
        fn advance(&self, secs: i64) {
            *self.0.borrow_mut() += chrono::Duration::seconds(secs);
        }
    }

    /// Records what it was asked; each run ends when the test sets its flag.
    #[derive(Default)]
    struct FakeLauncher {
        started: Vec<(String, DateTime<Utc>, Arc<AtomicBool>)>,
        skipped: Vec<(String, DateTime<Utc>, String)>,
    }
    impl Launcher for &mut FakeLauncher {
        fn start(&mut self, job: &Job, fire: DateTime<Utc>) -> Result<Arc<AtomicBool>> {
            let done = Arc::new(AtomicBool::new(false));
            self.started.push((job.key(), fire, done.clone()));
            Ok(done)
        }
        fn skip(&mut self, job: &Job, fire: DateTime<Utc>, reason: &str) {
            self.skipped.push((job.key(), fire, reason.to_string()));
        }
    }

    fn job(cron: &str, missed: Missed) -> Job {
        Job::new(
            "t",
            Path::new("/x/agent-team.toml"),
            Schedule {
                name: "s".into(),
                cron: cron.into(),
                goal: None,
                vars: BTreeMap::new(),
                missed,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_scheduler_makes_no_dir_without_a_schedule() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let locks_dir = home.join("schedules").join("locks");
        let mut locks = Locks::new(locks_dir.clone());
        // No schedule: nothing made.
        assert!(locks.owned(vec![]).is_empty());
        assert!(!home.exists());
        // A schedule: its lock is taken, in a home made for it (a new home is made at its
        // first use).
        assert_eq!(
            locks.owned(vec![job("* * * * * *", Missed::RunOnce)]).len(),
            1
        );
        assert!(locks_dir.is_dir());
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T10:00:00.500Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_every_second_schedule_fires_each_second_and_never_overlaps() {
        let clock = FakeClock(RefCell::new(t0()));
        let mut l = FakeLauncher::default();
        {
            let mut s = Scheduler::new(FireTimes::default(), &mut l);
            s.set_jobs(vec![job("* * * * * *", Missed::RunOnce)]);
            // First sight: no run for the past.
            s.tick(clock.now());
            assert!(s.launcher.started.is_empty());
            // Several ticks within one second: one run.
            clock.advance(1);
            s.tick(clock.now());
            s.tick(clock.now());
            assert_eq!(s.launcher.started.len(), 1);
            assert!(s.is_running("t/s"));
            // The next two seconds come while it runs: skipped, not started.
            clock.advance(1);
            s.tick(clock.now());
            clock.advance(1);
            s.tick(clock.now());
            assert_eq!(s.launcher.started.len(), 1);
            assert_eq!(s.launcher.skipped.len(), 2);
            assert!(s.launcher.skipped[0].2.contains("still running"));
            // It ends: the next second starts the next run.
            s.launcher.started[0].2.store(true, Ordering::SeqCst);
            clock.advance(1);
            s.tick(clock.now());
            assert_eq!(s.launcher.started.len(), 2);
        }
        let fires: Vec<i64> = l
            .started
            .iter()
            .map(|s| (s.1 - t0()).num_seconds())
            .collect();
        // Fire times are the schedule's whole seconds.
        assert_eq!(fires, vec![0, 3]);
    }

    #[test]
    fn a_time_missed_while_down_runs_once_after_a_restart_from_the_durable_fire_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fired.json");
        let clock = FakeClock(RefCell::new(t0()));
        let mut l = FakeLauncher::default();
        {
            let mut s = Scheduler::new(FireTimes::load(file.clone()), &mut l);
            s.set_jobs(vec![job("0 * * * * *", Missed::RunOnce)]);
            s.tick(clock.now());
            clock.advance(60);
            s.tick(clock.now());
            assert_eq!(s.launcher.started.len(), 1);
            s.launcher.started[0].2.store(true, Ordering::SeqCst);
        }
        // Down for an hour: a new scheduler reads the fire time back; the latest time is 45 s
        // past, so missed.
        clock.advance(3600 + 45);
        let mut l2 = FakeLauncher::default();
        {
            let mut s = Scheduler::new(FireTimes::load(file.clone()), &mut l2);
            s.set_jobs(vec![job("0 * * * * *", Missed::RunOnce)]);
            s.tick(clock.now());
            s.tick(clock.now());
            // Sixty missed minutes: one run, for the latest of them.
            assert_eq!(s.launcher.started.len(), 1);
            assert!(s.launcher.skipped.is_empty());
            let latest = s.launcher.started[0].1;
            assert!(latest <= clock.now() && clock.now() - latest < chrono::Duration::seconds(60));
        }
    }

    #[test]
    fn a_time_missed_while_down_is_skipped_and_recorded_when_the_schedule_says_skip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fired.json");
        let clock = FakeClock(RefCell::new(t0()));
        let mut l = FakeLauncher::default();
        {
            let mut s = Scheduler::new(FireTimes::load(file.clone()), &mut l);
            s.set_jobs(vec![job("0 0 * * * *", Missed::Skip)]);
            s.tick(clock.now());
        }
        clock.advance(3 * 3600 + 600);
        let mut l2 = FakeLauncher::default();
        {
            let mut s = Scheduler::new(FireTimes::load(file), &mut l2);
            s.set_jobs(vec![job("0 0 * * * *", Missed::Skip)]);
            s.tick(clock.now());
            assert!(s.launcher.started.is_empty());
            assert_eq!(s.launcher.skipped.len(), 1);
            assert!(s.launcher.skipped[0].2.contains("missed"));
            // The next hour, on time, runs.
            let next = job("0 0 * * * *", Missed::Skip).next(clock.now()).unwrap();
            *clock.0.borrow_mut() = next + chrono::Duration::seconds(1);
            s.tick(clock.now());
            assert_eq!(s.launcher.started.len(), 1);
        }
    }
}
