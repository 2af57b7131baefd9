//! `agent-team sandbox [--role R] [-- CMD ARGS...]`: a command run in the sandbox a role's
//! task commands, `bash` tool and CLI get, so users can try their tools there (and tests can
//! attack it); with no command, what that sandbox hides, protects and lets write, how it
//! reaches the network and what does not hold here (`agent-team doctor` prints the same).

use crate::ctx::Ctx;
use agent_team_config::{SandboxMode, TeamConfig};
use agent_team_sandbox::{Boundary, Mechanism};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `agent-team sandbox`
pub fn sandbox(ctx: &Ctx, role: &str, json: bool, command: &[OsString]) -> Result<ExitCode> {
    let (cfg, _) = super::up::team_config(ctx, false, None, false)?;
    let boundary = role_boundary(ctx, &cfg, role)?;
    let mechanism = agent_team_sandbox::support().mechanism();
    let off = cfg.sandbox == agent_team_config::SandboxMode::Off;
    let Some((program, args)) = command.split_first() else {
        let view = View::of(&boundary, &mechanism, cfg.sandbox);
        if json {
            crate::output::json(&view.json());
        } else {
            for l in view.lines() {
                crate::output::line(&l);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    if off {
        eprintln!(
            "agent-team: warning: the team file says sandbox = \"off\": agents' commands run \
             unconfined, and so does this one"
        );
    }
    let interactive = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    // Where an agent's command runs: its workspace, unless this directory is inside it.
    let cwd = if cwd.starts_with(&cfg.workspace) {
        cwd
    } else {
        cfg.workspace.clone()
    };
    let mut c = if off {
        let mut c = std::process::Command::new(program);
        c.args(args).current_dir(&cwd);
        c
    } else {
        agent_team_sandbox::command_with(
            &mechanism,
            &boundary,
            &cwd,
            program,
            args,
            agent_team_sandbox::Options {
                interactive,
                ..Default::default()
            },
        )
    };
    for k in agent_team_worker::command::hidden_vars(std::env::vars_os()) {
        c.env_remove(k);
    }
    let status = c
        .status()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(n) => ExitCode::from(u8::try_from(n).unwrap_or(1)),
        // Ended by a signal: as a shell reports it.
        None => ExitCode::from(
            128u8.saturating_add(
                u8::try_from(std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0))
                    .unwrap_or(0),
            ),
        ),
    })
}

/// The boundary an agent of `role` in the team `cfg` gets: the paths of an agent no one
/// started (its runtime dir, its state), the role's `[sandbox]` paths over the team's.
pub(crate) fn role_boundary(
    ctx: &Ctx,
    cfg: &TeamConfig,
    role: &str,
) -> Result<agent_team_sandbox::Boundary> {
    let Some(r) = cfg.role(role) else {
        let mut names: Vec<&str> = cfg.roles.keys().map(String::as_str).collect();
        names.sort_unstable();
        bail!(crate::Hinted::new(
            format!("no role {role:?}"),
            format!("valid roles: {}", names.join(", "))
        ));
    };
    let agent = agent_team_worker::AgentEnv {
        socket: ctx.tp.socket.clone(),
        team: ctx.team.clone(),
        name: format!("sandbox-{role}"),
        secret: String::new(),
        incarnation: 0,
        log_file: Some(ctx.tp.logs.join("sandbox.log")),
        workspace: None,
        member: Default::default(),
        external: false,
        healer: None,
    };
    let work = agent_team_worker::command::work_of(&agent, cfg, r, Vec::new());
    Ok(agent_team_sandbox::Boundary::for_work(&work))
}

/// What a sandbox is, as `agent-team sandbox` (no command) and `agent-team doctor` show it:
/// the mechanism, each list of paths the boundary holds, how the network is reached, and the
/// protections that do not hold on this machine.
pub(crate) struct View {
    /// The mechanism in words.
    mechanism: String,
    /// Each list of paths, in the order shown.
    parts: Vec<Part>,
    /// How the network is reached.
    network: String,
    /// The protections that do not hold here (none where the namespace works).
    not_enforced: Vec<String>,
}

impl View {
    /// The view of `b` confined by `mechanism` as the team file's `mode` says.
    pub(crate) fn of(b: &Boundary, mechanism: &Mechanism, mode: SandboxMode) -> View {
        let off = mode == SandboxMode::Off;
        let mut parts = if matches!(mechanism, Mechanism::Namespace(_)) {
            namespace_parts(b)
        } else {
            fallback_parts(b)
        };
        parts.push(Part::new(
            "exposed",
            "put back inside a hidden dir (writable)",
            paths(&b.expose),
        ));
        let not_enforced = if off {
            vec!["any of it: sandbox = \"off\" runs agents' commands unconfined".to_string()]
        } else {
            missing_protections(mechanism)
        };
        View {
            mechanism: mechanism_text(off, mechanism, mode),
            parts,
            network: network_text(off, mechanism, b),
            not_enforced,
        }
    }

    /// As JSON: `mechanism`, one list per part, `network`, `not_enforced`.
    pub(crate) fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mechanism": self.mechanism,
            "network": self.network,
            "not_enforced": self.not_enforced,
        });
        for p in &self.parts {
            v[p.key] = serde_json::json!(p.items);
        }
        v
    }

    /// As lines of text.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("sandbox: {}", self.mechanism)];
        for p in &self.parts {
            if p.shown.is_empty() {
                continue;
            }
            out.push(format!("{}:", p.title));
            out.extend(p.shown.iter().map(|l| format!("  {l}")));
        }
        out.push(format!("network: {}", self.network));
        if !self.not_enforced.is_empty() {
            out.push("not enforced here:".to_string());
            out.extend(self.not_enforced.iter().map(|g| format!("  - {g}")));
        }
        out
    }
}

/// One list of a [`View`].
struct Part {
    /// Its key in JSON.
    key: &'static str,
    /// Its title in text.
    title: &'static str,
    /// Its entries (JSON).
    items: Vec<String>,
    /// Its entries as text shows them (a long list summed up).
    shown: Vec<String>,
}

impl Part {
    /// A list shown as it is.
    fn new(key: &'static str, title: &'static str, items: Vec<String>) -> Part {
        Part {
            key,
            title,
            shown: items.clone(),
            items,
        }
    }
}

/// Paths as a [`Part`] lists them.
fn paths(v: &[PathBuf]) -> Vec<String> {
    v.iter().map(|p| p.display().to_string()).collect()
}

/// The mechanism in words, as the team file's `mode` leaves it.
fn mechanism_text(off: bool, mechanism: &Mechanism, mode: SandboxMode) -> String {
    match (off, mechanism) {
        (true, _) => {
            "off (sandbox = \"off\" in the team file): commands run unconfined".to_string()
        }
        (false, Mechanism::Namespace(p)) => {
            format!("a namespace by bubblewrap ({})", p.display())
        }
        (false, Mechanism::Landlock(abi)) => format!(
            "Landlock (ABI {abi}), the fallback: no namespace here{}",
            weak_note(mode)
        ),
        (false, Mechanism::None(why)) => format!(
            "none: the environment is scrubbed only ({why}){}",
            weak_note(mode)
        ),
    }
}

/// The lists of a fallback (Landlock, or nothing): it grants what is not hidden, the
/// operator's own files, temp and caches.
fn fallback_parts(b: &Boundary) -> Vec<Part> {
    let writable: Vec<PathBuf> = b.writable().map(Path::to_path_buf).collect();
    vec![
        Part::new(
            "readable",
            "readable (read-only)",
            vec!["everything but the hidden dirs".to_string()],
        ),
        Part::new("hidden", "hidden (unreadable, but there)", paths(&b.hide)),
        Part::new("writable", "writable", paths(&writable)),
        Part::new(
            "read_only",
            "read-only (protected; not enforced inside writable dirs)",
            paths(&b.protected),
        ),
        Part::new(
            "blocked",
            "protected but missing (can be created here)",
            paths(&b.block),
        ),
    ]
}

/// The lists of a namespace, which starts from nothing: the system's public part, then the
/// boundary's.
fn namespace_parts(b: &Boundary) -> Vec<Part> {
    let mut parts = vec![readable_part(b)];
    let mut hidden = paths(&b.hide);
    hidden.extend(
        b.hide_files
            .iter()
            .map(|f| format!("{} (a file: /dev/null in its place)", f.display())),
    );
    parts.push(Part::new("hidden", "hidden (empty inside)", hidden));
    let mut writable = b.write.clone();
    writable.extend(b.expose.iter().cloned());
    let mut writable: Vec<String> = paths(&writable);
    writable.extend(b.shims.iter().map(|(copy, at)| {
        format!(
            "{} (the team's own copy, {}; yours is never written)",
            at.display(),
            copy.display()
        )
    }));
    parts.push(Part::new("writable", "writable", writable));
    parts.push(Part::new(
        "private",
        "private (empty and writable, gone with the command)",
        paths(&b.temp),
    ));
    if let Some(h) = &b.home {
        parts.push(Part::new(
            "home",
            "home",
            vec![match &h.from {
                Some(from) => format!(
                    "{} (the team's sandbox home {}, writable; none of your files)",
                    h.at.display(),
                    from.display()
                ),
                None => format!(
                    "{} (empty and writable, gone with the command)",
                    h.at.display()
                ),
            }],
        ));
    }
    parts.push(Part::new(
        "read_only",
        "read-only (protected)",
        paths(&b.protected),
    ));
    parts.push(Part::new(
        "blocked",
        "protected but missing (kept from being made)",
        paths(&b.block),
    ));
    parts
}

/// What a namespace can read: the system's public part (its `/etc` summed up in text), then
/// the boundary's own read paths.
fn readable_part(b: &Boundary) -> Part {
    let mut base = Vec::new();
    let mut etc = 0;
    let mut shown = Vec::new();
    for e in agent_team_sandbox::view::base() {
        let (path, text) = match e {
            agent_team_sandbox::view::Entry::Bind(p) => (p.clone(), p.display().to_string()),
            agent_team_sandbox::view::Entry::Symlink { target, link } => (
                link.clone(),
                format!("{} -> {}", link.display(), target.display()),
            ),
            agent_team_sandbox::view::Entry::BindAt { from, at } => (
                at.clone(),
                format!(
                    "{} (the public part, from {})",
                    at.display(),
                    from.display()
                ),
            ),
        };
        base.push(text.clone());
        if path.starts_with("/etc") {
            etc += 1;
        } else {
            shown.push(text);
        }
    }
    if etc > 0 {
        shown.push(format!(
            "/etc: its {etc} public entries (nothing only root may read)"
        ));
    }
    let read = paths(&b.read);
    shown.extend(read.iter().cloned());
    base.extend(read);
    Part {
        key: "readable",
        title: "readable (read-only; nothing else is there)",
        items: base,
        shown,
    }
}

/// How a confined command reaches the network, in words.
fn network_text(off: bool, mechanism: &Mechanism, b: &Boundary) -> String {
    match (off, mechanism, b.proxy()) {
        (true, _, _) => "the host's network, open (sandbox = \"off\")".to_string(),
        (false, Mechanism::Namespace(_), Some(n)) => format!(
            "only through the team's egress proxy, from a network namespace of its own (the \
             proxy's socket is in {}{})",
            n.dir.display(),
            if n.forward.is_empty() {
                String::new()
            } else {
                let ports: Vec<String> = n.forward.iter().map(u16::to_string).collect();
                format!("; the host's loopback ports {} forwarded", ports.join(", "))
            }
        ),
        (false, Mechanism::Namespace(_), None) if b.offline => {
            "none: a network namespace of its own with only its loopback (no egress proxy \
             serves it here)"
                .to_string()
        }
        (false, Mechanism::Namespace(_), None) => {
            "the host's network, open (the team file's network mode is \"open\")".to_string()
        }
        (false, _, _) => {
            "the host's network, open (no network namespace without bubblewrap)".to_string()
        }
    }
}

/// What the team file's `weak` adds to the fallback's description.
fn weak_note(mode: SandboxMode) -> &'static str {
    if mode == SandboxMode::Weak {
        "; sandbox = \"weak\": agent CLI teammates run under it too"
    } else {
        ""
    }
}

/// The protections of the sandbox (docs/SECURITY.md) that do not hold under `mechanism`: none
/// in a namespace; under the Landlock fallback or with nothing, each in a few words.
pub(crate) fn missing_protections(mechanism: &Mechanism) -> Vec<String> {
    let mut v = match mechanism {
        Mechanism::Namespace(_) => return Vec::new(),
        Mechanism::Landlock(_) => vec![
            "the team's control plane (runtime and state dirs) is only unreadable, not absent: \
             its paths and names can be seen"
                .to_string(),
        ],
        Mechanism::None(_) => vec![
            "the team's control plane is readable: agents' commands can read the operator \
             credential, and write wherever you can"
                .to_string(),
        ],
    };
    v.push(
        "the world is not built from nothing: your files outside the hidden dirs are readable \
         (~/.ssh, credentials under ~/.config, browser profiles), and /tmp, the home dir and the \
         package caches are your shared ones, not private copies"
            .to_string(),
    );
    v.push(
        "read-only paths inside writable dirs (.git/hooks, .git/config, .claude/, the team file, \
         hook scripts) are not enforced: agents can rewrite what runs later"
            .to_string(),
    );
    v.push(
        "protected paths that do not exist yet (.claude/, .envrc, .mcp.json, \
         ~/.cargo/config.toml) can be created"
            .to_string(),
    );
    v.push("no network namespace, so no egress proxy: the network is open".to_string());
    v.push(match mechanism {
        Mechanism::Landlock(abi) if *abi >= 6 => {
            "no PID namespace: your other processes are visible to agents' commands (Landlock \
             refuses signals to them)"
                .to_string()
        }
        _ => "no PID namespace: your other processes are visible to agents' commands, which can \
              signal them"
            .to_string(),
    });
    v.push(
        "run as root, agents' commands keep the host's root capabilities (no user namespace \
         drops them)"
            .to_string(),
    );
    if let Mechanism::Landlock(abi) = mechanism
        && *abi < 9
    {
        v.push(format!(
            "Landlock ABI {abi} does not restrict connect(): a CLI teammate's tree can reach Unix \
             sockets such as the team's tmux server (task commands get a filter against making \
             them)"
        ));
    }
    v
}

/// The warning `up` and `run` print once when no namespace works here (none otherwise, and
/// none with `sandbox = "off"`): the mechanism, what does not hold, and what happens to the
/// members in `clis` (those that run an agent CLI on this machine).
pub(crate) fn fallback_warning(
    cfg: &TeamConfig,
    support: &agent_team_sandbox::Support,
    clis: &[String],
) -> Option<String> {
    let mechanism = support.mechanism();
    let gaps = missing_protections(&mechanism);
    if cfg.sandbox == SandboxMode::Off || gaps.is_empty() {
        return None;
    }
    let why = support
        .namespace
        .as_ref()
        .err()
        .cloned()
        .unwrap_or_default();
    let how = match &mechanism {
        Mechanism::Landlock(abi) => format!("under Landlock (ABI {abi}) only"),
        _ => "unconfined (the environment is scrubbed only)".to_string(),
    };
    let mut text = format!(
        "agent-team: warning: no sandbox namespace here ({why}): agents' commands run {how}, and \
         these protections do not hold:"
    );
    for g in &gaps {
        text.push_str(&format!("\n  - {g}"));
    }
    if !clis.is_empty() {
        let names = clis.join(", ");
        text.push_str(&match cfg.sandbox {
            SandboxMode::Weak => format!(
                "\n  agent CLI teammates ({names}) run under it too: the team file says \
                 sandbox = \"weak\""
            ),
            _ => format!(
                "\n  agent CLI teammates ({names}) will not start: the fallback cannot hold a \
                 CLI's whole tree; sandbox = \"weak\" in the team file accepts it"
            ),
        });
    }
    text.push_str("\n  install bubblewrap for the full sandbox (see `agent-team doctor`)");
    Some(text)
}
