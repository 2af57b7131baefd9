//! The one way an agent starts a shell command (task commands and the `bash` tool), so every
//! command is placed where stopping the agent reaches it, dies with whoever started it, and
//! cannot reach the team's control plane: its environment names no socket, dir or secret of
//! the team, and it runs inside the team's sandbox (`agent-team-sandbox`: a namespace without
//! the runtime and state dirs, writing only in its work dir, temp and the package caches;
//! docs/SECURITY.md). The
//! team's secrets (`--secret`, `[secrets]`) are in its environment, and nowhere else an agent
//! writes: [`Confinement::mask`] hides them in what the agent reads back.

use crate::link::Link;
use crate::{AgentEnv, CommandGroups};
use agent_team_config::{Role, SandboxMode, Secrets, TeamConfig};
use agent_team_pane::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

/// What confines one agent's commands: the identity they may see and, when `sandboxed`, the
/// boundary they run in (built once per agent from its identity and the team file by
/// [`agent_team_sandbox::Boundary::for_work`], the one rule for everything an agent influences).
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The agent's name (`AGENT_TEAM_NAME` of its commands).
    pub name: String,
    /// Its team (`AGENT_TEAM_TEAM` of its commands).
    pub team: String,
    /// What its commands may see and write: the rule's inputs, and the rule built from them
    /// when a command first needs it ([`Confinement::boundary`]).
    work: agent_team_sandbox::Work,
    boundary: std::sync::OnceLock<agent_team_sandbox::Boundary>,
    /// Whether commands run in the boundary (the team file's `sandbox`: `on`, the default, or
    /// `weak`).
    pub sandboxed: bool,
    /// The team's secrets, each given to every command as an environment variable of its
    /// name (read from the team's secrets file when the agent starts; see [`load_secrets`]).
    pub secrets: Secrets,
    /// The variables holding the team's credentials (model and search keys,
    /// [`TeamConfig::credential_vars`]): the agent uses them, its commands never see them (a
    /// model's `bash` could print them otherwise).
    pub withheld: Vec<String>,
    /// The agent's link, to ask the daemon for its egress proxy ([`Confinement::ready`]);
    /// none in unit tests.
    pub egress: Option<Egress>,
}

/// The link a [`Confinement`] asks for its egress proxy through.
#[derive(Clone)]
pub struct Egress(pub Arc<Link>);

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Egress(link)")
    }
}

impl Confinement {
    /// The confinement of `agent`'s commands, a member of `role`, in the team `config` (read
    /// before a worktree teammate's workspace replaces the team's).
    pub fn for_agent(agent: &AgentEnv, config: &TeamConfig, role: &Role) -> Self {
        Confinement {
            name: agent.name.clone(),
            team: agent.team.clone(),
            work: work_of(agent, config, role, Vec::new()),
            boundary: std::sync::OnceLock::new(),
            sandboxed: config.sandbox.confines(),
            secrets: Secrets::default(),
            withheld: config.credential_vars().into_iter().collect(),
            egress: None,
        }
    }

    /// Asks the daemon for the agent's egress proxy when its commands go through one: before
    /// each sandboxed process, as the daemon serves it only on demand (an agent that runs no
    /// command costs it no socket) and one started again since has none. Not answered (the
    /// daemon away): the process finds no proxy, and no network ([`Boundary::proxy`]).
    ///
    /// [`Boundary::proxy`]: agent_team_sandbox::Boundary::proxy
    pub async fn ready(&self) {
        if let (true, Some(_), Some(Egress(link))) =
            (self.sandboxed, &self.work.network, &self.egress)
        {
            ask_egress(link).await;
        }
    }

    /// The boundary its commands run in. Built on first use, not as the agent starts: it
    /// looks up every path it names (a few dozen `realpath`s), which an agent's first model
    /// request need not wait for, and many model agents never run a command.
    pub fn boundary(&self) -> &agent_team_sandbox::Boundary {
        self.boundary
            .get_or_init(|| agent_team_sandbox::Boundary::for_work(&self.work))
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

/// What `agent` works on and what it must not reach, for the sandbox's rule: the team's
/// control plane (the runtime dir beside its socket, the state dirs beside its log and the
/// environment's), its workspace or worktree, the files that configure the team or run later,
/// the team file's and the role's `[sandbox]` paths, and `expose` (a CLI teammate's private home).
pub fn work_of(
    agent: &AgentEnv,
    config: &TeamConfig,
    role: &Role,
    expose: Vec<PathBuf>,
) -> agent_team_sandbox::Work {
    let mut control: Vec<PathBuf> = Vec::new();
    // The runtime dir holds the socket, the locks and the operator credential.
    if let Some(runtime) = agent.socket.parent() {
        control.push(runtime.to_path_buf());
    }
    // The agent's log is <home>/teams/<team>/logs/<name>.log: its team's state dir and the
    // state root, even when this process's environment would resolve others.
    let mut sandbox_home = None;
    if let Some(team_dir) = agent
        .log_file
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
    {
        control.push(team_dir.to_path_buf());
        sandbox_home = Some(agent_team_paths::sandbox_home(team_dir));
        if let Some(teams) = team_dir.parent()
            && teams.file_name().is_some_and(|n| n == "teams")
            && let Some(home) = teams.parent()
        {
            control.push(home.to_path_buf());
        }
    }
    if let Ok(p) = agent_team_paths::Paths::from_env() {
        control.push(p.runtime);
        control.push(p.home);
    }
    // The team's tmux server, wherever the environment put its socket (run-shell there runs
    // outside every sandbox).
    if let Some(tmux) =
        std::env::var_os(agent_team_paths::ENV_TMUX_SOCKET).filter(|s| !s.is_empty())
    {
        control.push(PathBuf::from(tmux));
    }
    let worktree = agent.workspace.clone().filter(|w| *w != config.workspace);
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    // The team file's `[sandbox]` paths, then the role's.
    let paths = config
        .sandbox_paths
        .clone()
        .and(role.sandbox.resolved(&config.workspace, home.as_deref()));
    agent_team_sandbox::Work {
        workspace: config.workspace.clone(),
        worktree,
        control,
        protected_files: config
            .files_that_run_later()
            .into_iter()
            .chain(paths.protect.iter().cloned())
            .collect(),
        extra_write: paths.write,
        read_deny: paths.read_deny,
        expose,
        home,
        network: network_of(agent, config, role),
        // No proxy for this agent here (a teammate on another host) and a network the team file
        // does not open: shut, not the host's.
        offline: config.network_for(Some(role)).mode != agent_team_config::NetworkMode::Open,
        read: paths.read,
        sandbox_home,
    }
}

/// Where the agent's sandboxed processes reach the network: its egress proxy's dir, which its
/// daemon makes when asked ([`Confinement::ready`]; `agent_team_paths::net_dir`), with the
/// forwarder beside this program and the role's model endpoint forwarded when it is on the
/// loopback; a dir that is not there when a process starts is no way out
/// (`agent_team_sandbox::Boundary::proxy`). None (the host's network): `mode = "open"` (the
/// team's, or the role's own `[roles.X.sandbox.network]`).
fn network_of(
    agent: &AgentEnv,
    config: &TeamConfig,
    role: &Role,
) -> Option<agent_team_sandbox::NetworkWiring> {
    if config.network_for(Some(role)).mode == agent_team_config::NetworkMode::Open {
        return None;
    }
    let dir = agent_team_paths::net_dir(agent.socket.parent()?, &agent.team, &agent.name);
    let bridge = crate::external::bridge_exe(&std::env::current_exe().ok()?);
    // The team's model gateway (issue 65), on the host's loopback, for an agent CLI.
    let gateway = std::env::var(env::GATEWAY_URL).ok();
    let forward = role
        .base_url
        .as_deref()
        .into_iter()
        .chain(gateway.as_deref())
        .filter_map(agent_team_config::endpoint)
        .filter(|(host, _)| agent_team_config::is_loopback(host))
        .map(|(_, port)| port)
        .collect();
    Some(agent_team_sandbox::NetworkWiring {
        dir,
        bridge,
        forward,
    })
}

/// Asks the daemon to serve this agent's egress proxy (`serve_egress`); an error is let go:
/// without the proxy's dir its sandbox has no network.
pub async fn ask_egress(link: &Link) {
    if let Err(e) = link.call(agent_team_protocol::Request::ServeEgress).await {
        tracing::debug!("the egress proxy was not served: {e}");
    }
}

/// Starts `sh -c cmd` in `cwd` as `groups` confine it: its egress proxy asked for first
/// ([`Confinement::ready`]), then [`spawn`], its process group recorded for the daemon to
/// kill. Every shell command an agent runs starts here.
pub async fn start_shell(
    cmd: &str,
    cwd: &Path,
    groups: &CommandGroups,
) -> std::io::Result<(tokio::process::Child, Option<GroupGuard>)> {
    if let Some(c) = &groups.confinement {
        c.ready().await;
    }
    let (child, guard) = spawn(&mut shell(cmd, cwd, groups), groups)?;
    if let (Some(slot), Some(pid)) = (&groups.own_group, child.id())
        && let Ok(mut s) = slot.lock()
    {
        *s = Some(pid);
    }
    Ok((child, guard))
}

/// The note for a failed command whose output shows a write the sandbox refused (with the
/// path when it can be read, and the setting that would allow it); none when not sandboxed.
pub fn refusal_note(groups: &CommandGroups, output: &str, cwd: &Path) -> Option<String> {
    let conf = groups.confinement.as_ref().filter(|c| c.sandboxed)?;
    agent_team_sandbox::explain_refusal(output, conf.boundary(), cwd)
}

/// `text` with the secrets of `groups` masked (unchanged when it has none).
pub fn mask<'a>(groups: &CommandGroups, text: &'a str) -> std::borrow::Cow<'a, str> {
    match &groups.confinement {
        Some(c) => c.mask(text),
        None => std::borrow::Cow::Borrowed(text),
    }
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
    let args = [OsString::from("-c"), OsString::from(cmd)];
    let mut c = match groups.confinement.as_ref().filter(|c| c.sandboxed) {
        Some(conf) => tokio::process::Command::from(agent_team_sandbox::command(
            conf.boundary(),
            cwd,
            "sh",
            &args,
            agent_team_sandbox::Options::default(),
        )),
        None => {
            let mut c = tokio::process::Command::new("sh");
            c.args(&args).current_dir(cwd);
            c
        }
    };
    c.stdin(Stdio::null())
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
        // Credentials first, then the secrets: a key the team gives its commands on purpose
        // (`[secrets]`) is theirs, masked.
        for k in &conf.withheld {
            c.env_remove(k);
        }
        for (k, v) in conf.secrets.iter() {
            c.env(k, v);
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

/// One-line warnings about the sandbox of a team configured as `config` whose runtime and
/// state roots are `paths`: a layer is missing here (no namespace: Landlock only, or nothing),
/// or the workspace (always writable) contains a dir the sandbox would hide. Empty with
/// `sandbox = "off"`.
pub fn sandbox_warnings(config: &TeamConfig, paths: &agent_team_paths::Paths) -> Vec<String> {
    if config.sandbox == SandboxMode::Off {
        return Vec::new();
    }
    let support = agent_team_sandbox::support();
    let mut out = Vec::new();
    match support.mechanism() {
        agent_team_sandbox::Mechanism::Namespace(_) => {}
        agent_team_sandbox::Mechanism::Landlock(abi) => out.push(format!(
            "agents' commands run under Landlock (ABI {abi}) only: {}; files that run later \
             (.git/hooks, hook scripts) are not protected, and a CLI teammate's tree can reach the \
             team's tmux socket (see `agent-team doctor`)",
            support
                .namespace
                .as_ref()
                .err()
                .map(String::as_str)
                .unwrap_or_default()
        )),
        agent_team_sandbox::Mechanism::None(why) => out.push(format!(
            "agents' commands run without the sandbox: {why} (see `agent-team doctor`; \
             `sandbox = \"off\"` in the team file silences this)"
        )),
    }
    let workspace = std::fs::canonicalize(&config.workspace).unwrap_or(config.workspace.clone());
    for d in [&paths.runtime, &paths.home] {
        let Ok(d) = std::fs::canonicalize(d) else {
            continue;
        };
        if d.starts_with(&workspace) {
            out.push(format!(
                "{} is inside the workspace {}, which agents' commands may read and write: \
                 the sandbox cannot hide it (set AGENT_TEAM_HOME and AGENT_TEAM_RUNTIME_DIR outside it)",
                d.display(),
                workspace.display()
            ));
        }
    }
    out
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

    fn confined(name: &str, hide: Vec<PathBuf>, sandboxed: bool) -> CommandGroups {
        CommandGroups {
            confinement: Some(Arc::new(Confinement {
                name: name.to_string(),
                team: "t".to_string(),
                work: agent_team_sandbox::Work {
                    workspace: std::env::temp_dir(),
                    control: hide,
                    ..Default::default()
                },
                boundary: std::sync::OnceLock::new(),
                sandboxed,
                secrets: Secrets::default(),
                withheld: Vec::new(),
                egress: None,
            })),
            ..Default::default()
        }
    }

    /// The attack: a model's `bash` printing the team's model key. The credential variables
    /// are withheld from commands; one the team gives them as a secret is theirs.
    #[tokio::test]
    async fn the_teams_credentials_never_reach_a_command_unless_given_as_secrets() {
        let cfg = agent_team_config::empty_team("t", &std::env::temp_dir());
        let withheld = cfg.credential_vars();
        assert!(withheld.contains("OPENAI_API_KEY") && withheld.contains("ANTHROPIC_API_KEY"));
        // HOME stands in for a key variable this test process surely has.
        let groups = |secrets: &str| CommandGroups {
            confinement: Some(Arc::new(Confinement {
                withheld: vec!["HOME".into()],
                secrets: Secrets::from_file_text(secrets).unwrap(),
                ..(*confined("a", Vec::new(), false).confinement.unwrap()).clone()
            })),
            ..Default::default()
        };
        assert!(std::env::var_os("HOME").is_some());
        let (_, out, _) = run("echo \"h=$HOME\"", &std::env::temp_dir(), &groups("{}")).await;
        assert_eq!(out, "h=\n", "a withheld variable reached the command");
        let (_, out, _) = run(
            "echo \"h=$HOME\"",
            &std::env::temp_dir(),
            &groups(r#"{"HOME":"given-on-purpose"}"#),
        )
        .await;
        assert_eq!(out, "h=given-on-purpose\n");
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
            healer: None,
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
    async fn a_sandboxed_command_cannot_reach_the_runtime_dir_and_a_refused_write_is_explained() {
        if let agent_team_sandbox::Mechanism::None(why) = agent_team_sandbox::support().mechanism()
        {
            eprintln!("skipped: {why}");
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(base.path()).unwrap();
        for d in ["ws", "run"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("run/t.operator"), "credential").unwrap();
        let groups = confined("b1", vec![base.join("run")], true);
        let (code, out, err) = run("cat ../run/t.operator", &base.join("ws"), &groups).await;
        assert_ne!(code, 0, "read the credential: {out}");
        assert!(!out.contains("credential"));
        let (code, _, err2) = run("echo x > /usr/agent-team-test", &base.join("ws"), &groups).await;
        assert_ne!(code, 0);
        let note = refusal_note(&groups, &err2, &base.join("ws")).unwrap();
        assert!(note.contains("[sandbox] write"), "{note} ({err})");
        // Off: the same read works.
        let off = confined("b1", vec![base.join("run")], false);
        let (code, out, _) = run("cat ../run/t.operator", &base.join("ws"), &off).await;
        assert_eq!((code, out.as_str()), (0, "credential"));
        assert_eq!(refusal_note(&off, &err2, &base.join("ws")), None);
    }
}
