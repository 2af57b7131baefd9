//! Pane backends: the one layer that places agent processes somewhere (a tmux pane, an iTerm2
//! pane, a headless child with a log file, a task inside the daemon) and stops them again.
//!
//! Every method is blocking; the daemon calls them off its async thread. The [`fake`] backend
//! records calls for unit tests of the supervisor.

pub mod container;
pub mod fake;
pub mod inprocess;
pub mod iterm;
pub mod layout;
pub mod process;
pub mod procs;
pub mod tmux;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PaneError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A file (log, working directory) could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The backend's tool (tmux, or osascript for iTerm2) refused or failed.
    #[error("{0}")]
    Tool(String),
    /// The processes would not die.
    #[error("process group {pgid} still has members after SIGKILL")]
    Unkillable {
        /// The group.
        pgid: u32,
    },
    /// The operation does not exist for this backend.
    #[error("{0}")]
    Unsupported(String),
}

/// Everything needed to start one agent's process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaunchSpec {
    /// The agent's name.
    pub name: String,
    /// Its role (for titles).
    pub role: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Environment to add (the agent's identity travels here, never through a terminal).
    pub env: Vec<(String, String)>,
    /// Environment variables to remove (e.g. `TMUX`).
    pub env_remove: Vec<String>,
    /// Credentials from the daemon's own environment (a model API key) that an agent on this
    /// machine inherits anyway: only a backend starting it elsewhere sends them, never on a
    /// command line.
    pub secret_env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Where its output is kept.
    pub log: PathBuf,
    /// A title for panes: `name@team · role`.
    pub title: String,
    /// The agent's colour (a colour name or `#rrggbb`), for pane borders.
    pub color: Option<String>,
    /// The ssh destination it runs on (the remote backend's); none: this machine.
    pub host: Option<String>,
    /// The container it runs in ([`container::Contained`]); none: no container.
    pub container: Option<container::ContainerRun>,
}

/// A started agent process.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Launched {
    /// Its pid (the daemon's own pid for in-process agents).
    pub pid: u32,
    /// The process group that is signalled to stop it, if it has its own.
    pub pgid: Option<u32>,
    /// Its pane id, if it has one.
    pub pane: Option<String>,
    /// The ssh destination its process runs on (pid and group are the host's); none: here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The container its process runs in, removed when it stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<container::ContainerRef>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitInfo {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal, if one killed it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "gone"),
        }
    }
}

/// What a liveness check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Still running.
    Alive,
    /// Finished (as far as can be told).
    Exited(ExitInfo),
    /// The check itself failed or timed out: not proof of death.
    Unknown,
    /// Its host cannot be reached (a remote agent whose link is down): it may well run on.
    Unreachable,
}

/// A place to run agents.
pub trait PaneBackend: Send + Sync {
    /// The backend's name as `ps` shows it.
    fn kind(&self) -> &'static str;

    /// Starts an agent's process.
    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError>;

    /// Starts several agents, in order (tmux creates all their panes with one command).
    fn spawn_many(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        specs.iter().map(|s| self.spawn(s)).collect()
    }

    /// Whether starting `spec` is quick and never blocks (an in-process agent is a task and a
    /// log file), so the daemon may start it on its own thread instead of handing it to a
    /// blocking one.
    fn spawns_at_once(&self, _spec: &LaunchSpec) -> bool {
        false
    }

    /// Starts it again in the same place (same pane); the old process must already be stopped.
    fn respawn(&self, spec: &LaunchSpec, _previous: &Launched) -> Result<Launched, PaneError> {
        self.spawn(spec)
    }

    /// Stops it: SIGTERM to its process group, up to `grace` for it to exit, SIGKILL, then
    /// confirms the group is empty.
    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError>;

    /// Whether it still runs.
    fn liveness(&self, target: &Launched) -> Liveness;

    /// Checks several at once (one tmux query for all panes instead of one each).
    fn poll(&self, targets: &[Launched]) -> Vec<Liveness> {
        targets.iter().map(|t| self.liveness(t)).collect()
    }

    /// Forgets a finished agent (closes its pane, drops its handles).
    fn forget(&self, _target: &Launched) {}

    /// Refreshes what a pane shows about the agent (tmux border title).
    fn set_title(&self, _target: &Launched, _title: &str) {}

    /// Refreshes several titles at once (tmux: one command for all).
    fn set_titles(&self, titles: &[(Launched, String)]) {
        for (t, title) in titles {
            self.set_title(t, title);
        }
    }

    /// Draws the user's attention to an agent's pane: a terminal bell in it and `message` on
    /// the tmux status line. Backends without a pane the user looks at do nothing. Blocking:
    /// call it off the daemon's core.
    fn bell(&self, _target: &Launched, _message: &str) {}

    /// Types `text` into the agent's pane as one bracketed paste, then Enter (an interactive
    /// CLI's input). Backends without panes refuse. Blocking: call it off the daemon's core.
    fn paste(&self, _target: &Launched, _text: &str) -> Result<(), PaneError> {
        Err(PaneError::Tool(format!(
            "the {} backend has no pane to type into",
            self.kind()
        )))
    }

    /// Brings home the work of an agent that works elsewhere (a remote teammate's worktree:
    /// committed there with `message`, its branch fetched into the team's repository), so
    /// `diff` and `finish` see it. Blocking; false when there was nothing to bring.
    fn collect_work(&self, _host: &str, _name: &str, _message: &str) -> Result<bool, PaneError> {
        Ok(false)
    }

    /// Tears down what the backend built for the team (tmux session and server).
    fn shutdown(&self) {}

    /// Asks to be told at once when an agent ends, for backends whose agents' ends no signal
    /// reports (in-process tasks); others rely on SIGCHLD or polling and ignore it.
    fn watch_exits(&self, _notify: ExitNotify) {}

    /// Whether the agents are this process's own children, so SIGCHLD means one may have
    /// ended (headless processes). For tmux a SIGCHLD is only one of our tmux commands ending.
    fn agents_are_children(&self) -> bool {
        false
    }
}

/// Called with an agent's name when it ends (see [`PaneBackend::watch_exits`]): whoever
/// watches then looks at that agent alone, not at every one.
pub type ExitNotify = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// The environment variable names an agent process reads its identity from.
pub mod env {
    /// The daemon's socket.
    pub const SOCKET: &str = "AGENT_TEAM_SOCKET";
    /// The team.
    pub const TEAM: &str = "AGENT_TEAM_TEAM";
    /// The agent's name.
    pub const NAME: &str = "AGENT_TEAM_NAME";
    /// The agent's secret.
    pub const SECRET: &str = "AGENT_TEAM_SECRET";
    /// A file holding the agent's secret (for backends whose command lines others can see);
    /// the agent deletes it once read.
    pub const SECRET_FILE: &str = "AGENT_TEAM_SECRET_FILE";
    /// The base URL of the team's model gateway an agent CLI is given for its model (issue 65).
    pub const GATEWAY_URL: &str = "AGENT_TEAM_GATEWAY_URL";
    /// The agent's own token at the model gateway, given to its CLI instead of a real key.
    pub const GATEWAY_TOKEN: &str = "AGENT_TEAM_GATEWAY_TOKEN";
    /// The incarnation.
    pub const INCARNATION: &str = "AGENT_TEAM_INCARNATION";
    /// Where the agent appends its output (set for backends whose stdout is a pane).
    pub const LOG_FILE: &str = "AGENT_TEAM_LOG_FILE";
    /// The agent's own workspace when it is not the team's (a worktree-isolated teammate).
    pub const WORKSPACE: &str = "AGENT_TEAM_WORKSPACE";
    /// The model this member uses instead of its role's (a team-file or spawned member's own).
    pub const MODEL: &str = "AGENT_TEAM_MODEL";
    /// The provider this member uses instead of its role's.
    pub const PROVIDER: &str = "AGENT_TEAM_PROVIDER";
    /// Text appended to the role's system prompt for this member.
    pub const INSTRUCTIONS: &str = "AGENT_TEAM_INSTRUCTIONS";
    /// Set (to the provider's name) when the agent is an external CLI: the worker prepares and
    /// runs that CLI instead of its own loop.
    pub const EXTERNAL: &str = "AGENT_TEAM_EXTERNAL";
    /// The MCP configuration (`{"mcpServers": {"team": …}}`) an external CLI is given.
    pub const MCP_CONFIG: &str = "AGENT_TEAM_MCP_CONFIG";
    /// The file holding an external CLI's first input (role prompt, team context, first task).
    pub const PROMPT_FILE: &str = "AGENT_TEAM_PROMPT_FILE";
    /// `agent-team hook --socket`'s default: where an external CLI's worker answers its hooks.
    pub const HOOK_SOCKET: &str = "AGENT_TEAM_HOOK_SOCKET";
    /// A role's extra arguments for its CLI (in the role's `env`, whitespace-separated).
    pub const CLI_ARGS: &str = "AGENT_TEAM_CLI_ARGS";

    /// An agent CLI's private home when the worker cannot find it from the state dir (a
    /// worker in a container, where only that dir of the state is bound in).
    pub const CLI_HOME: &str = "AGENT_TEAM_CLI_HOME";
    /// The memory cap of the container the agent runs in, as the team file wrote it (`2G`).
    pub const MEMORY_LIMIT: &str = "AGENT_TEAM_MEMORY_LIMIT";
    /// The process cap of the container the agent runs in.
    pub const PIDS_LIMIT: &str = "AGENT_TEAM_PIDS_LIMIT";

    /// Set (to the ssh destination) when the agent runs on another host than its daemon: its
    /// workspace is the one given there, not the team file's directory.
    pub const HOST: &str = "AGENT_TEAM_HOST";

    /// What every agent-team variable starts with (these and the paths crate's
    /// `AGENT_TEAM_HOME`, `AGENT_TEAM_RUNTIME_DIR`, `AGENT_TEAM_TMUX_SOCKET`).
    pub const PREFIX: &str = "AGENT_TEAM_";

    /// The only agent-team variables a task command sees: who it works for. Everything else
    /// with [`PREFIX`] locates the control plane (socket, runtime and state dirs, secrets,
    /// log file) and is removed from a task command's environment.
    pub const VISIBLE_TO_COMMANDS: [&str; 2] = [NAME, TEAM];

    /// Whether a task command must not inherit the variable `key` (see [`VISIBLE_TO_COMMANDS`]).
    pub fn hidden_from_commands(key: &str) -> bool {
        key.starts_with(PREFIX) && !VISIBLE_TO_COMMANDS.contains(&key)
    }
}

/// Quotes `s` for `sh` ([`agent_team_perms::shell::quote`]).
pub fn shell_quote(s: &str) -> String {
    agent_team_perms::shell::quote(s)
}

/// A command line for `sh -c` that runs `spec` with its environment, `TMUX`/`TMUX_PANE` removed,
/// and the secret moved into a 0600 file under `secret_dir` so no command line shows it.
pub fn exec_line(spec: &LaunchSpec, secret_dir: &std::path::Path) -> Result<String, PaneError> {
    let mut parts = vec!["exec".to_string(), "env".to_string()];
    for k in &spec.env_remove {
        parts.push("-u".into());
        parts.push(shell_quote(k));
    }
    for (k, v) in &spec.env {
        if k == env::SECRET {
            let file = secret_dir.join(format!(".{}.secret", spec.name));
            write_private(&file, v).map_err(|source| PaneError::Io {
                what: format!("cannot write {}", file.display()),
                source,
            })?;
            parts.push(shell_quote(&format!(
                "{}={}",
                env::SECRET_FILE,
                file.display()
            )));
        } else {
            parts.push(shell_quote(&format!("{k}={v}")));
        }
    }
    for a in &spec.argv {
        parts.push(shell_quote(a));
    }
    Ok(parts.join(" "))
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
