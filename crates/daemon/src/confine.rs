//! What the daemon runs for the team, confined like everything else an agent can influence:
//! `[hooks]` and `[notify]` commands run in the team's sandbox (a hook script is a file in the
//! workspace, which agents write) with a clean environment, and the daemon's own `git` calls
//! run with hooks, fsmonitor and the environment turned off (`.git/` is the workspace's).

use agent_team_config::{SandboxMode, TeamConfig};
use agent_team_paths::TeamPaths;
use agent_team_sandbox::{Boundary, Options, Work};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The variables a hook, a notify command or git keeps from the daemon's environment: what a
/// program needs to find its tools, its locale, the user and the desktop; never an
/// `AGENT_TEAM_*` variable (a token `serve` gave, the runtime dir) or anything else.
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "TMPDIR",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
];

/// The sandbox of the team's hooks and notify commands (none with `sandbox = "off"`): the same
/// rule as agents' commands in the team's workspace, with the team's control plane hidden, and
/// `network` their way out (the daemon's own proxy, `Core::hooks_network`; none: the host's).
pub fn boundary(
    cfg: &TeamConfig,
    paths: &TeamPaths,
    network: Option<agent_team_sandbox::NetworkWiring>,
) -> Option<Arc<Boundary>> {
    if cfg.sandbox == SandboxMode::Off {
        return None;
    }
    let mut control: Vec<PathBuf> = vec![paths.dir.clone()];
    // The team's tmux socket is in the runtime dir unless AGENT_TEAM_TMUX_SOCKET puts it
    // elsewhere: then the socket itself (its dir may be a shared one).
    control.extend(paths.socket.parent().map(Path::to_path_buf));
    control.push(paths.tmux_socket.clone());
    if let Some(root) = paths.dir.parent().and_then(Path::parent) {
        control.push(root.to_path_buf());
    }
    Some(Arc::new(Boundary::for_work(&Work {
        workspace: cfg.workspace.clone(),
        control,
        protected_files: cfg
            .files_that_run_later()
            .into_iter()
            .chain(cfg.sandbox_paths.protect.iter().cloned())
            .collect(),
        extra_write: cfg.sandbox_paths.write.clone(),
        read_deny: cfg.sandbox_paths.read_deny.clone(),
        read: cfg.sandbox_paths.read.clone(),
        sandbox_home: Some(agent_team_paths::sandbox_home(&paths.dir)),
        home: std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from),
        // Without the daemon's proxy for them (no forwarder beside it) and a network the team
        // file does not open: shut, not the host's.
        offline: cfg.network_for(None).mode != agent_team_config::NetworkMode::Open,
        network,
        ..Work::default()
    })))
}

/// `sh -c line` in `dir` (when it exists), inside `sandbox` when given, with only
/// the kept variables (`KEPT_ENV`) of the daemon's environment; the caller adds its own variables.
pub fn shell(line: &str, dir: &Path, sandbox: Option<&Boundary>) -> Command {
    let args = [OsString::from("-c"), OsString::from(line)];
    let cwd = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let mut cmd = match sandbox {
        Some(b) => agent_team_sandbox::command(b, &cwd, "sh", &args, Options::default()),
        None => {
            let mut c = Command::new("sh");
            c.args(&args).current_dir(&cwd);
            c
        }
    };
    clean_env(&mut cmd);
    cmd
}

/// `git -C repo` that runs nothing the repository's config or the environment names (the one
/// home of that rule is `agent-team-worktree`, with `check_config` for the drivers it refuses).
pub use agent_team_worktree::git;

/// Clears `cmd`'s environment down to [`KEPT_ENV`].
fn clean_env(cmd: &mut Command) {
    cmd.env_clear();
    for k in KEPT_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn git_runs_no_planted_hook_and_sees_no_agent_team_variable() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let ok = |c: &mut Command| assert!(c.output().unwrap().status.success());
        ok(Command::new("git").arg("-C").arg(repo).args(["init", "-q"]));
        // What a sandbox-less command could have planted: a hook and a hooks path.
        let planted = repo.join("planted");
        let hook = repo.join(".git/hooks/post-checkout");
        std::fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", planted.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        for c in [
            &["config", "user.email", "t@t"][..],
            &["config", "user.name", "t"],
            &["commit", "-q", "--allow-empty", "-m", "x"],
        ] {
            ok(git(repo).args(c));
        }
        ok(git(repo).args(["checkout", "-q", "-b", "other"]));
        assert!(!planted.exists(), "the planted hook ran");
        // The same checkout with plain git runs it (the test can fail).
        ok(Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["checkout", "-q", "-b", "third"]));
        assert!(planted.exists());
        let out = shell("env", repo, None).output().unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        for line in env.lines() {
            let key = line.split('=').next().unwrap();
            assert!(
                KEPT_ENV.contains(&key) || ["PWD", "SHLVL", "_", "OLDPWD"].contains(&key),
                "{key} reached the hook: {env}"
            );
        }
    }
}
