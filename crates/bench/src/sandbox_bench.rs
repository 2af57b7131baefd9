//! Issue 25: what the sandbox costs each command an agent runs. The same `sh -c true` is
//! started and waited for unsandboxed (the floor), under Landlock (the fallback) and in the
//! namespace (bubblewrap, the default where it works), interleaved so load moves all alike;
//! the boundary is the one a teammate's command gets (the rule of `agent-team-sandbox` with
//! this machine's home and temp dirs).

use crate::report::Report;
use agent_team_sandbox::{Boundary, Mechanism, Options, Work, command_with, support};
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs the section in `dir` (its workspace, runtime and state dirs live there).
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== the sandbox around agents' commands (issue 25) ==");
    let ws = dir.join("ws");
    for d in ["ws/.git/hooks", "run", "state/teams/t"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let boundary = Boundary::for_work(&Work {
        workspace: ws.clone(),
        control: vec![dir.join("run"), dir.join("state")],
        home: std::env::var_os("HOME").map(Into::into),
        ..Work::default()
    });
    let s = support();
    let mut ways: Vec<(&str, Option<Mechanism>)> = vec![("unsandboxed", None)];
    if let Ok(abi) = s.landlock {
        ways.push(("Landlock", Some(Mechanism::Landlock(abi))));
    }
    match &s.namespace {
        Ok(p) => ways.push(("namespace", Some(Mechanism::Namespace(p.clone())))),
        Err(why) => r.note(format!("no namespace sandbox here: {why}")),
    }
    let n = if quick { 40 } else { 200 };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    let args = ["-c".into(), "true".into()];
    for _ in 0..n {
        for (i, (_, m)) in ways.iter().enumerate() {
            let mut c = match m {
                Some(m) => command_with(m, &boundary, &ws, "sh", &args, Options::default()),
                None => {
                    let mut c = std::process::Command::new("sh");
                    c.args(&args).current_dir(&ws);
                    c
                }
            };
            let t = Instant::now();
            let status = c.status()?;
            times[i].push(t.elapsed());
            anyhow::ensure!(status.success(), "{}: {status}", ways[i].0);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let floor = median(&mut times[0]);
    for (i, (name, _)) in ways.iter().enumerate().skip(1) {
        let m = median(&mut times[i]);
        let extra = m.saturating_sub(floor);
        r.add(
            &format!("a command's start and end, {name} (median of {n})"),
            format!("{:.2} ms", m.as_secs_f64() * 1e3),
            format!("{:.2} ms", floor.as_secs_f64() * 1e3),
            format!("+{:.2} ms", extra.as_secs_f64() * 1e3),
            "≤ +5 ms",
            extra <= Duration::from_millis(5),
        );
    }
    Ok(())
}
