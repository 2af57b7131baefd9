//! `agent-team doctor`: what this machine offers the team, starting with whether task commands
//! can be sandboxed (docs/SECURITY.md), so a missing protection is seen before it matters.

use crate::output;
use agent_team_paths::Paths;
use anyhow::Result;
use std::process::ExitCode;

/// Prints each check as `name: ok|missing — detail`; exits 0 either way (it informs). The
/// `sandbox` check says which mechanism confines agents' commands, CLI teammates, hooks and
/// notify commands; `namespace` and `landlock` say which layers this machine has and why not.
pub fn doctor(json: bool) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    let support = agent_team_sandbox::support();
    let hidden = format!("{} and {}", paths.runtime.display(), paths.home.display());
    let (sandbox_ok, sandbox) = match support.mechanism() {
        agent_team_sandbox::Mechanism::Namespace(bwrap) => (
            true,
            format!(
                "a mount and PID namespace ({}): agents' commands, CLI teammates, hooks and notify \
                 commands cannot see {hidden} or any process outside, and write only in the \
                 workspace, temp and the package caches",
                bwrap.display()
            ),
        ),
        agent_team_sandbox::Mechanism::Landlock(abi) => (
            true,
            format!(
                "Landlock only (ABI {abi}): agents' commands cannot read {hidden}; files that run \
                 later are not protected{}",
                if abi >= 9 {
                    ""
                } else {
                    "; a seccomp filter keeps them from making Unix sockets (the tmux server's), \
                     but not a CLI teammate's tree (install bubblewrap)"
                }
            ),
        ),
        agent_team_sandbox::Mechanism::None(why) => (
            false,
            format!(
                "{why}: agents' commands run unsandboxed and can read the operator credential in {}",
                paths.runtime.display()
            ),
        ),
    };
    let namespace = match &support.namespace {
        Ok(p) => (true, format!("bubblewrap at {}", p.display())),
        Err(why) => (false, why.clone()),
    };
    let landlock = match support.landlock {
        Ok(abi) => (
            true,
            format!(
                "Landlock ABI {abi}: {}",
                if support.namespace.is_ok() {
                    "not needed while the namespace works"
                } else {
                    "the fallback in use"
                }
            ),
        ),
        Err(ref why) => (false, why.clone()),
    };
    let tmux = match agent_team_pane::tmux::version() {
        Ok((_, _, v)) => (true, v),
        Err(e) => (false, e.to_string()),
    };
    let iterm2 = crate::backend::iterm2_check();
    let checks = [
        ("sandbox", sandbox_ok, sandbox),
        ("namespace", namespace.0, namespace.1),
        ("landlock", landlock.0, landlock.1),
        ("tmux", tmux.0, tmux.1),
        ("iterm2", iterm2.0, iterm2.1),
    ];
    if json {
        let v: Vec<serde_json::Value> = checks
            .iter()
            .map(
                |(name, ok, detail)| serde_json::json!({"check": name, "ok": ok, "detail": detail}),
            )
            .collect();
        output::json(&serde_json::json!({ "checks": v }));
    } else {
        for (name, ok, detail) in &checks {
            output::line(&format!(
                "{name}: {} — {detail}",
                if *ok { "ok" } else { "missing" }
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
