//! The one way an agent starts a shell command (task commands and the `bash` tool), so every
//! command is placed where stopping the agent reaches it, dies with whoever started it, and
//! cannot reach the team's control plane: its environment names no socket, dir or secret of
//! the team, and on Linux it runs under a Landlock ruleset that keeps it out of the runtime and
//! state dirs and lets it write only in its working dir and temp (docs/SECURITY.md). The
//! team's secrets (`--secret`, `[secrets]`) are in its environment, and nowhere else an agent
//! writes: [`Confinement::mask`] hides them in what the agent reads back.

use crate::{AgentEnv, CommandGroups};
use agent_team_config::{SandboxMode, Secrets, TeamConfig};
use agent_team_pane::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What confines one agent's commands: the identity they may see and, when `landlock` is set,
/// the dirs they may not touch. Built once per agent from its identity and the team file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The agent's name (`AGENT_TEAM_NAME` of its commands).
    pub name: String,
    /// Its team (`AGENT_TEAM_TEAM` of its commands).
    pub team: String,
    /// Directories no command may read or write: the runtime dir (socket, locks, operator
    /// credential) and the state dirs. Canonical paths of existing directories.
    pub deny: Vec<PathBuf>,
    /// Writable besides each command's working dir: the team's workspace (a worktree
    /// teammate's git metadata lives there).
    pub writable: Vec<PathBuf>,
    /// Whether commands run under Landlock (the team file's `sandbox`, on by default).
    pub landlock: bool,
    /// The team's secrets, each given to every command as an environment variable of its
    /// name (read from the team's secrets file when the agent starts; see [`load_secrets`]).
    pub secrets: Secrets,
}

impl Confinement {
    /// The confinement of `agent`'s commands in the team `config` (read before a worktree
    /// teammate's workspace replaces the team's).
    pub fn for_agent(agent: &AgentEnv, config: &TeamConfig) -> Self {
        let mut deny: Vec<PathBuf> = Vec::new();
        // The runtime dir holds the socket, the locks and the operator credential.
        if let Some(runtime) = agent.socket.parent() {
            deny.push(runtime.to_path_buf());
        }
        // The agent's log is <home>/teams/<team>/logs/<name>.log: its team's state dir and
        // the state root, even when this process's environment would resolve others.
        if let Some(team_dir) = agent
            .log_file
            .as_deref()
            .and_then(Path::parent)
            .and_then(Path::parent)
        {
            deny.push(team_dir.to_path_buf());
            if let Some(teams) = team_dir.parent()
                && teams.file_name().is_some_and(|n| n == "teams")
                && let Some(home) = teams.parent()
            {
                deny.push(home.to_path_buf());
            }
        }
        if let Ok(p) = agent_team_paths::Paths::from_env() {
            deny.push(p.runtime);
            deny.push(p.home);
        }
        Confinement {
            name: agent.name.clone(),
            team: agent.team.clone(),
            deny: canonical_dirs(deny),
            writable: vec![config.workspace.clone()],
            landlock: config.sandbox == SandboxMode::On,
            secrets: Secrets::default(),
        }
    }

    /// `text` (a command's output) with the secrets' values masked, for the agent's log, a
    /// task's result and what a model reads.
    pub fn mask<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.secrets.mask(text)
    }
}

/// The team's secrets for `agent`'s commands: the 0600 file beside its daemon's socket that
/// whoever started the team wrote (none when it has no secrets). Read at every agent start, so
/// an agent restarted after its daemon was killed still gets them.
pub fn load_secrets(agent: &AgentEnv) -> Result<Secrets, String> {
    let Some(runtime) = agent.socket.parent() else {
        return Ok(Secrets::default());
    };
    let file = agent_team_paths::secrets_file(runtime, &agent.team);
    match std::fs::read_to_string(&file) {
        Ok(text) => Secrets::from_file_text(&text).map_err(|e| format!("{}: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Secrets::default()),
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// `text` with the secrets of `groups` masked (unchanged when it has none).
pub fn mask<'a>(groups: &CommandGroups, text: &'a str) -> std::borrow::Cow<'a, str> {
    match &groups.confinement {
        Some(c) => c.mask(text),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// The existing ones of `dirs`, canonical, each once, none inside another.
fn canonical_dirs(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dirs
        .into_iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|d| !all.iter().any(|o| o != d && d.starts_with(o)));
    out
}

/// The agent-team variables of `vars` a command must not inherit (all but its identity:
/// see [`agent_team_pane::env::VISIBLE_TO_COMMANDS`]).
pub fn hidden_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<OsString> {
    vars.into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.to_str().is_some_and(env::hidden_from_commands))
        .collect()
}

/// `sh -c cmd` in `cwd`: no stdin, stdout and stderr piped, no agent-team variable but the
/// agent's name and team in its environment, confined as `groups.confinement` says, killed
/// when dropped and when the process that started it dies (so a daemon killed with SIGKILL
/// leaves no orphaned task command behind, whatever the backend). An agent inside the daemon
/// gives it a process group of its own (recorded in `groups`, for the daemon to kill); a
/// process-backed agent keeps it in its own group.
pub fn shell(cmd: &str, cwd: &Path, groups: &CommandGroups) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The agent's secret, the socket, the runtime and state dirs are not the command's to use.
    for k in hidden_vars(std::env::vars_os()) {
        c.env_remove(k);
    }
    if groups.own_group.is_some() {
        c.process_group(0);
    }
    if let Some(m) = &groups.marker {
        c.env(
            agent_team_pane::procs::COMMAND_MARKER,
            agent_team_pane::procs::marker_token(m),
        );
    }
    die_with_parent(&mut c);
    if let Some(conf) = &groups.confinement {
        c.env(env::NAME, &conf.name).env(env::TEAM, &conf.team);
        for (k, v) in conf.secrets.iter() {
            c.env(k, v);
        }
        if conf.landlock {
            sandbox::confine(&mut c, cwd, conf);
        }
    }
    c
}

/// Asks the kernel to SIGKILL the command when the thread that started it ends (Linux).
/// Agents start commands from their runtime's own thread, which lives as long as the agent
/// (worker process) or the daemon (in-process agents).
#[cfg(target_os = "linux")]
fn die_with_parent(c: &mut tokio::process::Command) {
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid, _exit).
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The parent may have died before the request took effect.
            if nix::unistd::getppid().as_raw() != parent {
                nix::libc::_exit(137);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_c: &mut tokio::process::Command) {}

/// Keeps a command's process group alive only while it is held (the shared
/// [`agent_team_pane::procs::GroupWatchdog`]): dropped, or the process holding it dead even by
/// SIGKILL, the whole group is killed. So nothing a task command started outlives the daemon
/// or the worker that ran it.
pub type GroupGuard = agent_team_pane::procs::GroupWatchdog;

/// Starts `c` (built by [`shell`]); when the command has a process group of its own, also
/// starts its [`GroupGuard`]. Hold the guard until the command is done.
pub fn spawn(
    c: &mut tokio::process::Command,
    groups: &CommandGroups,
) -> std::io::Result<(tokio::process::Child, Option<GroupGuard>)> {
    let child = c.spawn()?;
    let guard = match (&groups.own_group, child.id()) {
        (Some(_), Some(pgid)) => match agent_team_pane::procs::watch_group(pgid) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("no watchdog for command group {pgid}: {e}");
                None
            }
        },
        _ => None,
    };
    Ok((child, guard))
}

/// Whether this machine can confine task commands, for `agent-team doctor` and the warning
/// `up` and `run` print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxSupport {
    /// The kernel has Landlock with this ABI version.
    Landlock(i32),
    /// It has not: why, in words.
    Unavailable(String),
}

/// What this kernel offers (asked without restricting anything).
pub fn sandbox_support() -> SandboxSupport {
    sandbox::support()
}

/// One-line warnings about the sandbox of a team configured as `config` whose runtime and
/// state roots are `paths`: the kernel cannot confine commands, or the workspace (always
/// writable) contains a dir the sandbox would deny. Empty with `sandbox = "off"`.
pub fn sandbox_warnings(config: &TeamConfig, paths: &agent_team_paths::Paths) -> Vec<String> {
    if config.sandbox == SandboxMode::Off {
        return Vec::new();
    }
    if let SandboxSupport::Unavailable(why) = sandbox_support() {
        return vec![format!(
            "task commands run without the sandbox: {why} (see `agent-team doctor`; \
             `sandbox = \"off\"` in the team file silences this)"
        )];
    }
    let workspace = std::fs::canonicalize(&config.workspace).unwrap_or(config.workspace.clone());
    canonical_dirs(vec![paths.runtime.clone(), paths.home.clone()])
        .into_iter()
        .filter(|d| d.starts_with(&workspace))
        .map(|d| {
            format!(
                "{} is inside the workspace {}, which task commands may read and write: \
                 the sandbox cannot hide it (set AGENT_TEAM_HOME and AGENT_TEAM_RUNTIME_DIR outside it)",
                d.display(),
                workspace.display()
            )
        })
        .collect()
}

/// Landlock: the ruleset is built before the fork (opening every path it names), and the
/// child only makes two system calls before exec (`prctl(PR_SET_NO_NEW_PRIVS)` and
/// `landlock_restrict_self`).
///
/// Landlock only allows, so "everything but the runtime and state dirs" is granted as the
/// entries beside each dir on the path from `/` down to it, as they exist when the command
/// starts: a top-level entry created later (in `/`, or in `/tmp` when a denied dir is below
/// it) is out of reach of commands already running. Temp dirs are writable the same way; the
/// working dir and the team's workspace are writable whole, even when they contain a denied
/// dir (`sandbox_warnings` says so at `up`).
#[cfg(target_os = "linux")]
mod sandbox {
    use super::{Confinement, SandboxSupport};
    use landlock::{
        ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset,
        RulesetAttr, RulesetCreatedAttr, Scope,
    };
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::{Path, PathBuf};

    /// The newest ABI whose rights the policy names; older kernels get what they support.
    const ABI_USED: ABI = ABI::V9;

    pub(super) fn support() -> SandboxSupport {
        // SAFETY: the version query of landlock_create_ruleset reads no memory (null attr,
        // size 0) and creates nothing.
        #[allow(unsafe_code)]
        let v = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32, // LANDLOCK_CREATE_RULESET_VERSION
            )
        };
        if v > 0 {
            return SandboxSupport::Landlock(v as i32);
        }
        let err = std::io::Error::last_os_error();
        SandboxSupport::Unavailable(match err.raw_os_error() {
            Some(nix::libc::EOPNOTSUPP) => {
                "this kernel has Landlock but it is not enabled (add landlock to the lsm= boot parameter)"
                    .to_string()
            }
            Some(nix::libc::ENOSYS) => "this kernel has no Landlock (Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK)".to_string(),
            _ => format!("Landlock cannot be used here: {err}"),
        })
    }

    /// Where commands may write besides their working dir: the temp dirs and the devices.
    fn temp_roots() -> Vec<PathBuf> {
        let mut v = vec![
            std::env::temp_dir(),
            PathBuf::from("/tmp"),
            PathBuf::from("/var/tmp"),
            PathBuf::from("/dev"),
        ];
        v = v
            .into_iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Paths that together cover `root` minus `deny` as it stands now: `root` itself when no
    /// denied dir is inside it, else its entries one by one (symlinks left out: what they
    /// point to is reached, and checked, under its own path).
    pub(super) fn cover(root: &Path, deny: &[PathBuf], out: &mut Vec<PathBuf>) {
        if deny.iter().any(|d| root.starts_with(d)) {
            return;
        }
        if !deny.iter().any(|d| d.starts_with(root)) {
            out.push(root.to_path_buf());
            return;
        }
        let Ok(rd) = std::fs::read_dir(root) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            cover(&e.path(), deny, out);
        }
    }

    /// A private temp dir for commands when a denied dir is inside a temp root (no new entry
    /// could be made in that root): `<temp>/agent-team-tmp-<uid>`, 0700 and ours.
    fn private_tmp(deny: &[PathBuf]) -> Option<PathBuf> {
        let tmp = std::fs::canonicalize(std::env::temp_dir()).ok()?;
        if !deny.iter().any(|d| d.starts_with(&tmp)) {
            return None;
        }
        let dir = tmp.join(format!(
            "agent-team-tmp-{}",
            agent_team_paths::current_uid()
        ));
        match agent_team_paths::ensure_private_dir(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::warn!("no private temp dir for task commands: {e}");
                None
            }
        }
    }

    /// The rights a command has on a path: read (and connect to sockets, and use devices
    /// opened) everywhere it may read; everything where it may write.
    fn rights(write: bool) -> BitFlags<AccessFs> {
        if write {
            AccessFs::from_all(ABI_USED)
        } else {
            AccessFs::from_read(ABI_USED) | AccessFs::ResolveUnix | AccessFs::IoctlDev
        }
    }

    /// Opens `path` for a rule without following a symlink in its last part (one put there
    /// since [`cover`] looked must not widen the rule), with the rights a file can take.
    fn rule(path: &Path, access: BitFlags<AccessFs>) -> Option<PathBeneath<OwnedFd>> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let st = nix::sys::stat::fstat(&fd).ok()?;
        let kind = st.st_mode & nix::libc::S_IFMT;
        if kind == nix::libc::S_IFLNK {
            return None;
        }
        let access = if kind == nix::libc::S_IFDIR {
            access
        } else {
            access
                & (AccessFs::ReadFile
                    | AccessFs::WriteFile
                    | AccessFs::Execute
                    | AccessFs::Truncate
                    | AccessFs::IoctlDev
                    | AccessFs::ResolveUnix)
        };
        Some(PathBeneath::new(fd, access))
    }

    /// The ruleset for a command in `cwd`, created (not yet applied): `None` when the kernel
    /// has no Landlock.
    pub(super) fn ruleset(cwd: &Path, conf: &Confinement) -> Result<Option<OwnedFd>, String> {
        let deny = &conf.deny;
        let mut read = Vec::new();
        cover(Path::new("/"), deny, &mut read);
        let mut write = Vec::new();
        for t in temp_roots() {
            cover(&t, deny, &mut write);
        }
        // The working dir and the team's workspace are the command's, whatever they contain.
        for w in std::iter::once(cwd).chain(conf.writable.iter().map(PathBuf::as_path)) {
            if let Ok(w) = std::fs::canonicalize(w) {
                write.push(w);
            }
        }
        let rules = read
            .iter()
            .filter_map(|p| rule(p, rights(false)))
            .chain(write.iter().filter_map(|p| rule(p, rights(true))));
        let created = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(ABI_USED))
            .and_then(|r| r.scope(Scope::Signal))
            .and_then(|r| r.create())
            .and_then(|r| r.add_rules(rules.map(Ok::<_, landlock::RulesetError>)))
            .map_err(|e| e.to_string())?;
        Ok(created.into())
    }

    /// Applies [`ruleset`] to `c` in the child before exec; if it cannot be built the command
    /// does not start (fail closed) and the agent's log says why.
    pub(super) fn confine(c: &mut tokio::process::Command, cwd: &Path, conf: &Confinement) {
        if let Some(tmp) = private_tmp(&conf.deny) {
            c.env("TMPDIR", tmp);
        }
        let fd = match ruleset(cwd, conf) {
            Ok(fd) => Ok(fd),
            Err(e) => {
                tracing::warn!("cannot build the sandbox of a task command, not starting it: {e}");
                Err(nix::libc::EPERM)
            }
        };
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, landlock_restrict_self) on a descriptor
        // opened before the fork; it allocates nothing.
        #[allow(unsafe_code)]
        unsafe {
            c.pre_exec(move || {
                let fd = match &fd {
                    Ok(Some(fd)) => fd.as_raw_fd(),
                    // No Landlock in this kernel: `up` warned about it.
                    Ok(None) => return Ok(()),
                    Err(errno) => return Err(std::io::Error::from_raw_os_error(*errno)),
                };
                if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if nix::libc::syscall(nix::libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sandbox {
    use super::{Confinement, SandboxSupport};
    use std::path::Path;

    pub(super) fn support() -> SandboxSupport {
        SandboxSupport::Unavailable("task commands are sandboxed on Linux only".to_string())
    }

    pub(super) fn confine(_c: &mut tokio::process::Command, _cwd: &Path, _conf: &Confinement) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Runs `cmd` through [`shell`] in `cwd`; returns (exit code, stdout, stderr).
    async fn run(cmd: &str, cwd: &Path, groups: &CommandGroups) -> (i32, String, String) {
        let mut c = shell(cmd, cwd, groups);
        let (child, _guard) = spawn(&mut c, groups).unwrap();
        let out = child.wait_with_output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn confined(name: &str, deny: Vec<PathBuf>, landlock: bool) -> CommandGroups {
        CommandGroups {
            confinement: Some(Arc::new(Confinement {
                name: name.to_string(),
                team: "t".to_string(),
                deny: canonical_dirs(deny),
                writable: vec![],
                landlock,
                secrets: Secrets::default(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn every_variable_that_locates_the_control_plane_is_hidden() {
        let locating = [
            env::SOCKET,
            env::SECRET,
            env::SECRET_FILE,
            env::INCARNATION,
            env::LOG_FILE,
            env::WORKSPACE,
            agent_team_paths::ENV_HOME,
            agent_team_paths::ENV_RUNTIME_DIR,
            agent_team_paths::ENV_TMUX_SOCKET,
            agent_team_pane::procs::COMMAND_MARKER,
            "AGENT_TEAM_SOMETHING_NEW",
        ];
        let kept = [env::NAME, env::TEAM, "PATH", "HOME", "XAGENT_TEAM_X"];
        let vars = locating
            .iter()
            .chain(kept.iter())
            .map(|k| (OsString::from(k), OsString::from("/somewhere")));
        let hidden = hidden_vars(vars);
        let expected: Vec<OsString> = locating.iter().map(OsString::from).collect();
        assert_eq!(hidden, expected);
    }

    #[tokio::test]
    async fn a_command_sees_its_identity_and_nothing_that_locates_the_team() {
        let dir = tempfile::tempdir().unwrap();
        let mut groups = confined("b1", vec![], false);
        groups.marker = Some("/run/user/1/agent-team/web.sock".into());
        let (code, out, err) = run("env", dir.path(), &groups).await;
        assert_eq!(code, 0, "{err}");
        let ours: Vec<&str> = out.lines().filter(|l| l.starts_with(env::PREFIX)).collect();
        let marker = format!(
            "{}={}",
            agent_team_pane::procs::COMMAND_MARKER,
            agent_team_pane::procs::marker_token("/run/user/1/agent-team/web.sock")
        );
        let mut want = vec![
            "AGENT_TEAM_NAME=b1".to_string(),
            "AGENT_TEAM_TEAM=t".to_string(),
            marker,
        ];
        want.sort();
        let mut got: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, want);
        assert!(!out.contains("agent-team/web.sock"), "{out}");
    }

    #[tokio::test]
    async fn a_command_gets_the_teams_secrets_and_the_agent_reads_them_back_masked() {
        let dir = tempfile::tempdir().unwrap();
        let mut groups = confined("b1", vec![], false);
        if let Some(c) = groups.confinement.as_mut().and_then(Arc::get_mut) {
            c.secrets = Secrets::from_map(
                [("API".to_string(), "v4lue-of-api".to_string())]
                    .into_iter()
                    .collect(),
            );
        }
        let (code, out, err) = run("printf %s \"$API\"", dir.path(), &groups).await;
        assert_eq!((code, out.as_str()), (0, "v4lue-of-api"), "{err}");
        assert_eq!(mask(&groups, "got v4lue-of-api"), "got [secret API]");
        assert!(!format!("{:?}", groups.confinement).contains("v4lue"));
        // The file whoever started the team wrote, found beside the agent's socket.
        let agent = AgentEnv {
            socket: dir.path().join("t.sock"),
            team: "t".into(),
            name: "b1".into(),
            secret: String::new(),
            incarnation: 1,
            log_file: None,
            workspace: None,
            member: Default::default(),
            external: false,
        };
        assert!(load_secrets(&agent).unwrap().is_empty());
        let secrets = groups.confinement.as_ref().unwrap().secrets.clone();
        std::fs::write(
            agent_team_paths::secrets_file(dir.path(), "t"),
            secrets.to_file_text(),
        )
        .unwrap();
        assert_eq!(load_secrets(&agent).unwrap(), secrets);
    }

    #[tokio::test]
    async fn landlock_keeps_a_command_out_of_the_denied_dirs_and_writing_only_where_it_works() {
        let abi = match sandbox_support() {
            SandboxSupport::Landlock(abi) => abi,
            SandboxSupport::Unavailable(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        };
        let base = tempfile::tempdir().unwrap();
        let base = base.path();
        for d in ["ws", "run", "home/teams/t", "other"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("run/t.operator"), "credential").unwrap();
        std::fs::write(base.join("home/teams/t/state.db"), "state").unwrap();
        std::fs::write(base.join("other/kept.txt"), "kept").unwrap();
        let groups = confined("b1", vec![base.join("run"), base.join("home")], true);
        let ws = base.join("ws");
        let probe = |cmd: &'static str| {
            let groups = groups.clone();
            let ws = ws.clone();
            async move { run(cmd, &ws, &groups).await }
        };
        // Denied: the runtime dir (credential), the state dir, new entries outside the
        // working dir and temp.
        for cmd in [
            "cat ../run/t.operator",
            "ls ../run",
            "cat ../home/teams/t/state.db",
            "echo x > ../run/planted",
            "echo x > ../escape",
            "mkdir ../escape.d",
        ] {
            let (code, out, err) = probe(cmd).await;
            assert_ne!(code, 0, "{cmd} was allowed: {out}{err}");
            assert!(err.contains("Permission denied"), "{cmd}: {err}");
        }
        assert!(!base.join("run/planted").exists() && !base.join("escape").exists());
        // Allowed: reading elsewhere, writing in the working dir and temp.
        for cmd in [
            "cat ../other/kept.txt",
            "ls /usr >/dev/null",
            "echo made > inside.txt && cat inside.txt",
            "f=$(mktemp) && echo t > $f && cat $f && rm $f",
        ] {
            let (code, out, err) = probe(cmd).await;
            assert_eq!(code, 0, "{cmd} was refused: {out}{err}");
        }
        assert_eq!(
            std::fs::read_to_string(ws.join("inside.txt")).unwrap(),
            "made\n"
        );
        // From ABI 6 on, a command cannot signal processes outside its sandbox (the agent,
        // the daemon).
        if abi >= 6 {
            let (code, _, err) = probe("kill -0 $PPID").await;
            assert_ne!(code, 0, "signalled its parent: {err}");
        }
        // Off: the same read works.
        let off = confined("b1", vec![base.join("run")], false);
        let (code, out, _) = run("cat ../run/t.operator", &ws, &off).await;
        assert_eq!((code, out.as_str()), (0, "credential"));
    }

    #[test]
    fn the_read_cover_leaves_out_exactly_the_denied_dirs() {
        let base = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(base.path()).unwrap();
        for d in ["a/deny", "a/keep", "b"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("a/file"), "").unwrap();
        std::os::unix::fs::symlink(base.join("a/deny"), base.join("a/link")).unwrap();
        let mut out = Vec::new();
        sandbox::cover(&base, &[base.join("a/deny")], &mut out);
        out.sort();
        let want: Vec<PathBuf> = ["a/file", "a/keep", "b"]
            .iter()
            .map(|p| base.join(p))
            .collect();
        assert_eq!(out, want, "symlinks and the denied dir left out");
        let mut inside = Vec::new();
        sandbox::cover(&base.join("a/deny/x"), &[base.join("a/deny")], &mut inside);
        assert!(inside.is_empty());
    }
}
