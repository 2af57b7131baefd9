//! `agent-team doctor`: what this machine offers the team, starting with whether task commands
//! can be sandboxed (docs/SECURITY.md) and what that sandbox holds and does not, so a missing
//! protection is seen before it matters.

use super::sandbox::View;
use crate::ctx::Ctx;
use crate::output;
use agent_team_paths::Paths;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Prints each check as `name: ok|missing — detail`, then each agent CLI a team can run
/// ([`AgentCli`]: its version on PATH beside the tested one, what to install), then the
/// sandbox's view (what the team's
/// default role's agents read, write, cannot see, and how they reach the network; what does
/// not hold here), as `agent-team sandbox` prints it; exits 0 either way (it informs). The
/// `sandbox` check says which mechanism confines agents' commands, CLI teammates, hooks and
/// notify commands; `namespace` and `landlock` say which layers this machine has and why not.
pub fn doctor(team: Option<String>, file: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    let support = agent_team_sandbox::support();
    let (sandbox_ok, sandbox) = sandbox_check(support, &paths);
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
    let telemetry = telemetry_check(team.clone(), file.clone());
    let (containers_ok, containers, runtimes) = super::runtimes::check(
        &super::runtimes::Real,
        &super::runtimes::team_images(team.clone(), file.clone()),
    );
    let checks = [
        ("sandbox", sandbox_ok, sandbox),
        ("namespace", namespace.0, namespace.1),
        ("landlock", landlock.0, landlock.1),
        ("tmux", tmux.0, tmux.1),
        ("iterm2", iterm2.0, iterm2.1),
        ("telemetry", telemetry.0, telemetry.1),
        ("containers", containers_ok, containers),
    ];
    let view = sandbox_view(team, file);
    let clis = agent_clis(std::env::var("PATH").ok().as_deref());
    if json {
        let v: Vec<serde_json::Value> = checks
            .iter()
            .map(
                |(name, ok, detail)| serde_json::json!({"check": name, "ok": ok, "detail": detail}),
            )
            .collect();
        let view = match view {
            Ok((team, role, view)) => {
                let mut v = view.json();
                v["team"] = serde_json::json!(team);
                v["role"] = serde_json::json!(role);
                v
            }
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        let clis: Vec<serde_json::Value> = clis.iter().map(AgentCli::json).collect();
        let runtimes: Vec<serde_json::Value> = runtimes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "program": r.program, "version": r.version, "works": r.works,
                    "detail": r.detail,
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "checks": v, "clis": clis, "runtimes": runtimes, "view": view,
        }));
    } else {
        for (name, ok, detail) in &checks {
            output::line(&format!(
                "{name}: {} — {detail}",
                if *ok { "ok" } else { "missing" }
            ));
        }
        output::line(
            "agent CLIs on PATH (provider: found, its version beside the one agent-team is \
             tested with):",
        );
        for cli in &clis {
            output::line(&format!("  {}", cli.line()));
        }
        match view {
            Ok((team, role, view)) => {
                output::line(&format!(
                    "the sandbox of role {role} in team {team} (`agent-team sandbox`):"
                ));
                for l in view.lines() {
                    output::line(&format!("  {l}"));
                }
            }
            Err(e) => output::line(&format!("the sandbox's view: cannot be built: {e:#}")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `sandbox` check: which mechanism confines agents' commands, CLI teammates, hooks and
/// notify commands here, and what it keeps from them.
fn sandbox_check(support: &agent_team_sandbox::Support, paths: &Paths) -> (bool, String) {
    let hidden = format!("{} and {}", paths.runtime.display(), paths.home.display());
    match support.mechanism() {
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
                 later are not protected{}; agent CLI teammates start only with sandbox = \
                 \"weak\" in the team file (below: what does not hold)",
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
                "{why}: agents' commands run unsandboxed and can read the operator credential in \
                 {}; agent CLI teammates start only with sandbox = \"weak\" in the team file",
                paths.runtime.display()
            ),
        ),
    }
}

/// The sandbox of the default role (`worker`, else the first) of the team here: its name, the
/// role's and the view. The team file is read without choosing a backend (doctor also runs
/// where tmux is missing); with none, the team of this directory with the built-in roles.
fn sandbox_view(team: Option<String>, file: Option<PathBuf>) -> Result<(String, String, View)> {
    let ctx = Ctx::resolve(team, file)?;
    let mut cfg = match &ctx.file {
        Some(f) => agent_team_config::load(f)?,
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            agent_team_config::empty_team(&ctx.team, &cwd)
        }
    };
    cfg.name = ctx.team.clone();
    let role = if cfg.role("worker").is_some() {
        "worker".to_string()
    } else {
        let mut names: Vec<&String> = cfg.roles.keys().collect();
        names.sort_unstable();
        names
            .first()
            .map(|n| n.to_string())
            .context("the team has no role")?
    };
    let boundary = super::sandbox::role_boundary(&ctx, &cfg, &role)?;
    let view = View::of(
        &boundary,
        &agent_team_sandbox::support().mechanism(),
        cfg.sandbox,
    );
    Ok((ctx.team, role, view))
}

/// One agent CLI a team can run (`provider = "claude-code"`, …) as this machine has it: where
/// it is on PATH and its version, beside the version agent-team is tested with
/// (`agent_team_worker::external::tested`), so a missing or other version is seen before `up`.
struct AgentCli {
    /// The provider's team-file name.
    provider: &'static str,
    /// The program looked up on PATH.
    program: &'static str,
    /// The npm package that provides it.
    package: &'static str,
    /// The version agent-team is tested with.
    tested: Option<&'static str>,
    /// Where it is, when it is on PATH.
    exe: Option<PathBuf>,
    /// Its version, when it tells.
    version: Option<String>,
}

impl AgentCli {
    /// `ok` (the tested version), `untested` (another version: it runs, with a warning),
    /// `unknown` (found, its version not told) or `missing`.
    fn status(&self) -> &'static str {
        match (&self.exe, &self.version, self.tested) {
            (None, _, _) => "missing",
            (Some(_), None, Some(_)) => "unknown",
            (Some(_), Some(v), Some(t)) if v != t => "untested",
            _ => "ok",
        }
    }

    /// The command that installs the tested version.
    fn install(&self) -> String {
        match self.tested {
            Some(v) => format!("npm install -g {}@{v}", self.package),
            None => format!("npm install -g {}", self.package),
        }
    }

    /// `provider: status — what was found, the tested version, what to install`.
    fn line(&self) -> String {
        let tested = self.tested.unwrap_or("any version");
        let detail = match (&self.exe, self.status()) {
            (None, _) => format!(
                "{} is not on PATH; install it: {}",
                self.program,
                self.install()
            ),
            (Some(exe), "ok") => format!(
                "{} {} at {}, the version agent-team is tested with",
                self.program,
                self.version.as_deref().unwrap_or("(any version)"),
                exe.display()
            ),
            (Some(exe), "unknown") => format!(
                "{} at {} did not tell its version; agent-team is tested with {tested} ({})",
                self.program,
                exe.display(),
                self.install()
            ),
            (Some(exe), _) => format!(
                "{} {} at {}; agent-team is tested with {tested} ({}); it runs anyway, with a \
                 warning",
                self.program,
                self.version.as_deref().unwrap_or_default(),
                exe.display(),
                self.install()
            ),
        };
        format!("{}: {} — {detail}", self.provider, self.status())
    }

    /// The `clis` entry of `doctor --json`.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider,
            "program": self.program,
            "npm_package": self.package,
            "tested_version": self.tested,
            "path": self.exe.as_ref().map(|p| p.display().to_string()),
            "version": self.version,
            "status": self.status(),
            "install": self.install(),
        })
    }
}

/// Every agent CLI with an npm package, looked up on `path_var`; their versions are asked in
/// parallel (a Node CLI takes about a second to say it).
fn agent_clis(path_var: Option<&str>) -> Vec<AgentCli> {
    use agent_team_worker::external;
    std::thread::scope(|s| {
        let asks: Vec<_> = external::adapters()
            .iter()
            .filter_map(|a| Some((*a, a.npm_package()?)))
            .map(|(a, package)| {
                s.spawn(move || {
                    let exe = external::find_program(a.program(), path_var);
                    let version = exe
                        .as_deref()
                        .and_then(|e| external::reported_version(a, e));
                    AgentCli {
                        provider: a.provider().as_str(),
                        program: a.program(),
                        package,
                        tested: a.tested_version(),
                        exe,
                        version,
                    }
                })
            })
            .collect();
        asks.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// The `telemetry` check: what the team's daemon exported over OpenTelemetry and dropped, from
/// the status file its exporter keeps (docs/TELEMETRY.md); off when it has none.
fn telemetry_check(team: Option<String>, file: Option<PathBuf>) -> (bool, String) {
    let Ok(ctx) = Ctx::resolve(team, file) else {
        return (true, "off (no team here)".into());
    };
    let path = ctx.tp.dir.join(agent_team_daemon::otel::STATUS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return (
            true,
            "off: no [telemetry] otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT when the daemon \
             last ran"
                .into(),
        );
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let dropped = n("spans_dropped") + n("facts_dropped");
    let mut detail = format!(
        "exporting to {}: {} spans exported, {} dropped, {} events dropped",
        v["traces_endpoint"].as_str().unwrap_or("-"),
        n("spans_exported"),
        n("spans_dropped"),
        n("facts_dropped"),
    );
    if let Some(e) = v["last_error"].as_str() {
        detail.push_str(&format!(" (last error: {e})"));
    }
    (dropped == 0, detail)
}
