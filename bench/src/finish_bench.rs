//! Issue 28: what landing a worktree teammate's work costs beside git doing the merge alone.
//! Two identical repositories per round: a base of 1 000 files, a teammate's worktree branch
//! that changed every one of them, and one more commit on `main` so the merge is a real one.
//! Ours is `agent_team_worktree::finish` (`finish --merge`: its checks, the merge in the
//! workspace, the worktree and branch removed); the floor is `git merge` on the other repo.

use crate::report::Report;
use agent_team_protocol::FinishAction;
use agent_team_worktree::{FinishRequest, finish};
use anyhow::{Result, ensure};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 1000;

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .args(["-c", "user.email=b@b", "-c", "user.name=bench"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A repository at `dir` whose teammate `a` changed every file, committed on its branch.
fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    git(dir, &["init", "-q", "-b", "main"])?;
    git(dir, &["config", "user.email", "b@b"])?;
    git(dir, &["config", "user.name", "bench"])?;
    for i in 0..FILES {
        std::fs::write(dir.join(format!("src/f{i}.txt")), format!("line {i}\n"))?;
    }
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-qm", "base"])?;
    let wt = agent_team_worktree::ensure(dir, "a")?;
    for i in 0..FILES {
        std::fs::write(
            wt.join(format!("src/f{i}.txt")),
            format!("line {i}\nchanged\n"),
        )?;
    }
    git(&wt, &["add", "-A"])?;
    git(&wt, &["commit", "-qm", "a's work"])?;
    std::fs::write(dir.join("NEWS"), "main moved on\n")?;
    git(dir, &["add", "NEWS"])?;
    git(dir, &["commit", "-qm", "news"])?;
    Ok(())
}

/// Runs the section in `dir`.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== finishing a worktree teammate's work (issue 28) ==");
    let rounds = if quick { 3 } else { 7 };
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = (
            dir.join(format!("ours{round}")),
            dir.join(format!("git{round}")),
        );
        prepare(&a)?;
        prepare(&b)?;
        // The teammate's files were written a while before anyone lands them: past git's
        // "racily clean" second, git trusts the index's stat data instead of re-reading every
        // file (which would time the setup's timing, not the finish).
        std::thread::sleep(Duration::from_millis(1100));
        let ours_once = || -> Result<Duration> {
            let t = Instant::now();
            let out = finish(
                &a,
                &FinishRequest {
                    agent: "a".into(),
                    team: "bench".into(),
                    action: FinishAction::Merge,
                    into: None,
                    keep: false,
                    tasks: vec![],
                    control_files: vec![],
                    accept_control: false,
                },
            )?;
            let took = t.elapsed();
            ensure!(out.removed && !out.fast_forward, "{out:?}");
            Ok(took)
        };
        let floor_once = || -> Result<Duration> {
            let t = Instant::now();
            git(&b, &["merge", "-q", "--no-edit", "agent-team/a"])?;
            Ok(t.elapsed())
        };
        // Each goes first every other round: the first after the pause pays for waking up.
        if round % 2 == 0 {
            ours.push(ours_once()?);
            floor.push(floor_once()?);
        } else {
            floor.push(floor_once()?);
            ours.push(ours_once()?);
        }
        ensure!(
            std::fs::read_to_string(a.join("src/f7.txt"))? == "line 7\nchanged\n",
            "the merge did not land"
        );
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (m, f) = (median(&mut ours), median(&mut floor));
    let ratio = m.as_secs_f64() / f.as_secs_f64().max(1e-9);
    r.add(
        &format!("finish --merge of {FILES} changed files (median of {rounds})"),
        format!("{:.1} ms", m.as_secs_f64() * 1e3),
        format!("{:.1} ms", f.as_secs_f64() * 1e3),
        format!("{ratio:.2}×"),
        "≤ 1.5× git merge",
        ratio <= 1.5,
    );
    diff_memory(r, dir, quick)
}

/// This process's peak resident memory since [`reset_peak`], in KiB.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts counting this process's peak resident memory from now (Linux: `clear_refs` 5).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `diff` (what `agent-team diff` asks the daemon for) of a teammate's worktree where a file
/// became large: the peak memory it adds beside the same diff of a one-line change (issue 63: a
/// 200 MB file once took the daemon to 262–395 MiB).
fn diff_memory(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    let mb = if quick { 50 } else { 200 };
    let mut peaks = Vec::new();
    for (name, size) in [("small", 1usize), ("large", mb * 1024 * 1024)] {
        let repo = dir.join(format!("diff-{name}"));
        std::fs::create_dir_all(&repo)?;
        git(&repo, &["init", "-q", "-b", "main"])?;
        std::fs::write(repo.join("big.txt"), "base\n")?;
        git(&repo, &["add", "-A"])?;
        git(&repo, &["commit", "-qm", "base"])?;
        let wt = agent_team_worktree::ensure(&repo, "a")?;
        // A text file (lines), as a generated file or a log a teammate left would be.
        let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
        std::fs::write(wt.join("big.txt"), line.repeat(size.div_ceil(line.len())))?;
        ensure!(
            reset_peak(),
            "cannot reset the peak memory count (/proc/self/clear_refs)"
        );
        let before = peak_kib().unwrap_or(0);
        let d = agent_team_worktree::diff(&repo, "a", true)?;
        let after = peak_kib().unwrap_or(0);
        ensure!(
            d.patch.as_deref().is_some_and(|p| !p.is_empty()),
            "no patch"
        );
        peaks.push(after.saturating_sub(before));
        std::fs::remove_dir_all(&repo)?;
    }
    let (small, large) = (peaks[0] as f64 / 1024.0, peaks[1] as f64 / 1024.0);
    r.add(
        &format!("`diff` of a file grown to {mb} MB in a teammate's worktree: peak memory added"),
        format!("{large:.1} MiB"),
        format!("{small:.1} MiB for a 1-byte file"),
        format!("+{:.1} MiB", large - small),
        "≤ +8 MiB",
        large - small <= 8.0,
    );
    Ok(())
}
