//! The runs record (issue 69): every run a schedule or a webhook starts gets an id and a
//! durable record in `AGENT_TEAM_HOME/runs/ID/` (`record.json`, the run's JSON result in
//! `result.json`, its stderr in `output.log`), and `agent-team runs list|show` reads them.
//! A run is a child process, `agent-team -f FILE --team TEAM run --json …` (this executable),
//! so a run that crashes never takes `serve` or `scheduler` down.

use agent_team_paths::Paths;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub(crate) enum Trigger {
    /// A `[[schedule]]`, by name.
    Schedule(String),
    /// A `[[webhooks]]`, by name.
    Webhook(String),
    /// A person.
    Manual,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Schedule(n) => write!(f, "schedule {n}"),
            Trigger::Webhook(n) => write!(f, "webhook {n}"),
            Trigger::Manual => f.write_str("manual"),
        }
    }
}

/// How a run stands or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Its process runs.
    Running,
    /// It finished with the leader's answer and success.
    Succeeded,
    /// It ended without success (its result or exit status says why).
    Failed,
    /// It was not started: a run of its schedule was still going, or the time was missed.
    Skipped,
    /// Its process is gone and nobody recorded its end (its scheduler was killed).
    Lost,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Lost => "lost",
        }
    }
}

/// One run's durable record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// `YYYYMMDD-HHMMSS-XXXXXX`: sorts by start.
    pub id: String,
    /// What started it.
    pub trigger: Trigger,
    /// The team.
    pub team: String,
    /// The team file it ran from.
    pub team_file: PathBuf,
    /// The goal given (placeholders filled from `vars`), none for the team file's.
    pub goal: Option<String>,
    /// The variables given.
    pub vars: BTreeMap<String, String>,
    /// When it started (or was skipped).
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// How it stands.
    pub outcome: Outcome,
    /// Its exit code (none while it runs, or when a signal ended it).
    pub exit: Option<i32>,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    /// The leader's answer, from the result.
    pub answer: Option<String>,
    /// Why it was skipped or failed, when known.
    pub reason: Option<String>,
    /// The cron time it was started for (schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_time: Option<DateTime<Utc>>,
    /// Its JSON result (`run --json`'s stdout).
    pub result: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    /// What starts it.
    pub trigger: Trigger,
    /// The team.
    pub team: String,
    /// Its team file.
    pub file: PathBuf,
    /// The goal (none: the team file's), `{{KEY}}` filled by `run` from `vars`.
    pub goal: Option<String>,
    /// `--var`s.
    pub vars: BTreeMap<String, String>,
    /// `--secret`s, handed through the child's environment (never its command line).
    pub secrets: BTreeMap<String, String>,
    /// The cron time (schedules).
    pub fire_time: Option<DateTime<Utc>>,
}

/// A started run: its record and whether it has ended.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The record as started.
    pub id: String,
    /// Set when its process has ended and its record says so.
    pub done: Arc<AtomicBool>,
}

/// The runs record of one `AGENT_TEAM_HOME`.
#[derive(Debug, Clone)]
pub(crate) struct RunStore {
    dir: PathBuf,
}

impl RunStore {
    /// The record under `paths.home/runs`.
    pub fn new(paths: &Paths) -> Self {
        RunStore {
            dir: paths.home.join("runs"),
        }
    }

    /// A record's directory (`id` checked: no path escapes).
    fn run_dir(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            anyhow::bail!("{id:?} is not a run id (see `agent-team runs list`)");
        }
        Ok(self.dir.join(id))
    }

    /// A new, empty run directory with a fresh id.
    fn create(&self, now: DateTime<Utc>) -> Result<(String, PathBuf)> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let _ = agent_team_paths::ensure_private_dir(&self.dir);
        let stamp = now.format("%Y%m%d-%H%M%S");
        for _ in 0..16 {
            let rnd = agent_team_paths::new_secret().context("cannot make a run id")?;
            let id = format!("{stamp}-{}", rnd.get(..6).unwrap_or("000000"));
            let dir = self.dir.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
        }
        anyhow::bail!("cannot find a free run id")
    }

    /// Writes `rec` whole (a temporary file renamed over the old one, synced).
    pub fn write(&self, rec: &RunRecord) -> Result<()> {
        let dir = self.run_dir(&rec.id)?;
        let tmp = dir.join("record.json.tmp");
        let text = serde_json::to_vec_pretty(rec)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join("record.json"))
            .with_context(|| format!("cannot write the record of run {}", rec.id))?;
        Ok(())
    }

    /// One record; a running one whose process is gone reads as `lost`.
    pub fn read(&self, id: &str) -> Result<RunRecord> {
        let path = self.run_dir(id)?.join("record.json");
        let load = || -> Result<RunRecord> {
            let text = std::fs::read(&path).with_context(|| format!("there is no run {id:?}"))?;
            serde_json::from_slice(&text).with_context(|| format!("cannot read {}", path.display()))
        };
        let rec = load()?;
        if rec.outcome == Outcome::Running && rec.pid.is_some_and(|p| !alive(p)) {
            // Reaped a moment ago, its end maybe being written: read once more before
            // calling it lost.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut rec = load()?;
            if rec.outcome == Outcome::Running {
                rec.outcome = Outcome::Lost;
            }
            return Ok(rec);
        }
        Ok(rec)
    }

    /// Every record, oldest first.
    pub fn list(&self) -> Vec<RunRecord> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.iter().filter_map(|id| self.read(id).ok()).collect()
    }

    /// Records a run that was not started (`reason` says why).
    pub fn skipped(&self, spec: &RunSpec, now: DateTime<Utc>, reason: &str) -> Result<String> {
        let (id, dir) = self.create(now)?;
        let rec = record(
            &id,
            &dir,
            spec,
            now,
            Outcome::Skipped,
            Some(reason.to_string()),
        );
        self.write(&RunRecord {
            ended: Some(now),
            ..rec
        })?;
        Ok(id)
    }

    /// Starts `agent-team run` for `spec` as a child process and a thread that records its
    /// end; returns at once.
    pub fn start(&self, spec: &RunSpec, now: DateTime<Utc>) -> Result<Started> {
        let (id, dir) = self.create(now)?;
        let mut rec = record(&id, &dir, spec, now, Outcome::Running, None);
        let exe = std::env::current_exe().context("cannot find the agent-team executable")?;
        let stdout = std::fs::File::create(&rec.result)?;
        let stderr = std::fs::File::create(&rec.log)?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--team")
            .arg(&spec.team)
            .arg("-f")
            .arg(&spec.file)
            .args(["run", "--json", "--quiet"]);
        for (k, v) in &spec.vars {
            cmd.arg("--var").arg(format!("{k}={v}"));
        }
        for (k, v) in &spec.secrets {
            cmd.arg("--secret").arg(k).env(k, v);
        }
        if let Some(g) = &spec.goal {
            cmd.arg("--").arg(g);
        }
        if let Some(d) = spec.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            cmd.current_dir(d);
        }
        // Its own process group: a Ctrl-C meant for `serve` does not end the runs it started.
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                rec.outcome = Outcome::Failed;
                rec.ended = Some(now);
                rec.reason = Some(format!("cannot start agent-team run: {e}"));
                self.write(&rec)?;
                return Err(e).context("cannot start agent-team run");
            }
        };
        rec.pid = Some(child.id());
        self.write(&rec)?;
        let done = Arc::new(AtomicBool::new(false));
        let (store, flag) = (self.clone(), done.clone());
        std::thread::Builder::new()
            .name(format!("run-{id}"))
            .spawn(move || {
                let status = child.wait();
                let mut rec = rec;
                rec.ended = Some(Utc::now());
                rec.pid = None;
                finish(&mut rec, status.ok());
                if let Err(e) = store.write(&rec) {
                    eprintln!("agent-team: cannot record the end of run {}: {e:#}", rec.id);
                }
                flag.store(true, Ordering::SeqCst);
            })
            .context("cannot start a thread")?;
        Ok(Started { id, done })
    }
}

/// A new record for `spec`.
fn record(
    id: &str,
    dir: &Path,
    spec: &RunSpec,
    now: DateTime<Utc>,
    outcome: Outcome,
    reason: Option<String>,
) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        trigger: spec.trigger.clone(),
        team: spec.team.clone(),
        team_file: spec.file.clone(),
        goal: spec.goal.as_ref().map(|g| fill(g, &spec.vars)),
        vars: spec.vars.clone(),
        started: now,
        ended: None,
        outcome,
        exit: None,
        pid: None,
        answer: None,
        reason,
        fire_time: spec.fire_time,
        result: dir.join("result.json"),
        log: dir.join("output.log"),
    }
}

/// `{{KEY}}` in `goal` replaced by `vars` once (as `run` fills it), for the record.
fn fill(goal: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = goal;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) if vars.contains_key(after[..j].trim()) => {
                out.push_str(&vars[after[..j].trim()]);
                rest = &after[j + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The outcome of an ended run from its exit status and its JSON result.
fn finish(rec: &mut RunRecord, status: Option<std::process::ExitStatus>) {
    rec.exit = status.and_then(|s| s.code());
    let result = read_result(&rec.result);
    let success = result.as_ref().and_then(|r| r["success"].as_bool());
    rec.answer = result
        .as_ref()
        .and_then(|r| r["answer"].as_str().or(r["result"].as_str()))
        .map(str::to_string);
    rec.outcome = if rec.exit == Some(0) && success != Some(false) {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    if rec.outcome == Outcome::Failed {
        rec.reason = result
            .as_ref()
            .and_then(|r| r["error"]["message"].as_str().map(str::to_string))
            .or_else(|| match status {
                Some(s) if s.code().is_none() => Some(format!("ended by {s}")),
                Some(s) => Some(format!("agent-team run exited with {s}")),
                None => Some("cannot wait for agent-team run".to_string()),
            });
    }
}

/// A run's JSON result: the whole of `run --json`'s stdout, else its last JSON line.
fn read_result(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
    })
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// `agent-team runs list`
pub(crate) fn list(paths: &Paths, json: bool, limit: usize) -> Result<ExitCode> {
    let mut all = RunStore::new(paths).list();
    if all.len() > limit {
        all.drain(..all.len() - limit);
    }
    if json {
        crate::output::json(&serde_json::json!({ "runs": all }));
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        crate::output::line(
            "no runs yet (schedules and webhooks start them: `agent-team schedule --help`)",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                crate::output::short(&r.trigger.to_string(), 24),
                crate::output::short(&r.team, 20),
                r.outcome.as_str().to_string(),
                r.started
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
                seconds(r),
                crate::output::short(r.goal.as_deref().unwrap_or("(team file's)"), 50),
            ]
        })
        .collect();
    crate::output::table(
        &[
            "ID", "TRIGGER", "TEAM", "OUTCOME", "STARTED", "SECS", "GOAL",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn seconds(r: &RunRecord) -> String {
    match r.ended {
        Some(e) => format!("{:.1}", (e - r.started).num_milliseconds() as f64 / 1000.0),
        None => "-".to_string(),
    }
}

/// `agent-team runs show ID`
pub(crate) fn show(paths: &Paths, id: &str, json: bool) -> Result<ExitCode> {
    let rec = RunStore::new(paths).read(id)?;
    let output = read_result(&rec.result);
    if json {
        let mut v = serde_json::to_value(&rec)?;
        v["output"] = output.unwrap_or(serde_json::Value::Null);
        crate::output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    use agent_team_protocol::text::{printable, printable_lines};
    let line = |k: &str, v: &str| crate::output::line(&format!("{k:<9} {v}"));
    line("run", &rec.id);
    line("trigger", &printable(&rec.trigger.to_string()));
    line("team", &printable(&rec.team));
    line("file", &printable(&rec.team_file.display().to_string()));
    line("outcome", rec.outcome.as_str());
    line(
        "started",
        &rec.started.with_timezone(&chrono::Local).to_rfc3339(),
    );
    if let Some(e) = rec.ended {
        line("ended", &e.with_timezone(&chrono::Local).to_rfc3339());
        line("seconds", &seconds(&rec));
    }
    if let Some(c) = rec.exit {
        line("exit", &c.to_string());
    }
    if let Some(p) = rec.pid {
        line("pid", &p.to_string());
    }
    for (k, v) in &rec.vars {
        line("var", &format!("{}={}", printable(k), printable(v)));
    }
    line(
        "goal",
        &printable_lines(
            rec.goal.as_deref().unwrap_or("(the team file's)"),
            "          ",
        ),
    );
    if let Some(r) = &rec.reason {
        line("reason", &printable_lines(r, "          "));
    }
    line("result", &rec.result.display().to_string());
    line("log", &rec.log.display().to_string());
    if let Some(a) = &rec.answer {
        crate::output::line("");
        crate::output::line(&printable_lines(a, ""));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_goal_is_filled_once_and_unknown_placeholders_stay() {
        let vars: BTreeMap<String, String> =
            [("issue".to_string(), "x {{issue}} y".to_string())].into();
        assert_eq!(
            fill("Triage: {{ issue }} {{other}} {{", &vars),
            "Triage: x {{issue}} y {{other}} {{"
        );
    }

    #[test]
    fn records_are_written_whole_listed_in_order_and_skips_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore {
            dir: dir.path().join("runs"),
        };
        let spec = RunSpec {
            trigger: Trigger::Schedule("s".into()),
            team: "t".into(),
            file: dir.path().join("agent-team.toml"),
            goal: Some("g {{a}}".into()),
            vars: [("a".to_string(), "1".to_string())].into(),
            secrets: BTreeMap::new(),
            fire_time: None,
        };
        let t0 = Utc::now();
        let a = store.skipped(&spec, t0, "still running").unwrap();
        let b = store
            .skipped(&spec, t0 + chrono::Duration::seconds(1), "missed")
            .unwrap();
        let all = store.list();
        assert_eq!(
            all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![a.clone(), b]
        );
        let r = store.read(&a).unwrap();
        assert_eq!(r.outcome, Outcome::Skipped);
        assert_eq!(r.goal.as_deref(), Some("g 1"));
        assert_eq!(r.reason.as_deref(), Some("still running"));
        assert!(store.read("../etc").is_err());
    }
}
