//! The agent loop shared by the `agent-team-worker` binary (one process per agent) and the
//! daemon's in-process backend (one task per agent).
//!
//! An agent connects with the identity it was given at spawn, keeps the connection alive across
//! daemon restarts, takes its messages at idle points in priority order (shutdown, leader,
//! peers; one implementation for every loop, in [`idle`] and [`inbox`]), and works: the
//! offline `exec` provider runs task commands; model providers come in their own module; an
//! agent CLI runs in its pane, served the team's tools from here. Each works through one
//! [`session::Session`]: its link, its inbox, its role and the one way its tool calls run.

pub mod agent;
pub mod command;
pub mod exec;
pub mod external;
pub mod idle;
pub mod inbox;
pub mod inprocess;
pub mod join;
pub mod leader;
pub mod limits;
pub mod link;
pub mod output;
pub mod prompt;
pub mod session;
pub mod strategy;
pub mod tools;

use agent_team_config::TeamConfig;
use agent_team_pane::env;
use std::path::PathBuf;
use std::sync::Arc;

/// Why an agent stopped working.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// An environment variable the identity needs is missing or bad.
    #[error("{0} is not set: this program is started by the agent-team daemon, not by hand")]
    MissingEnv(&'static str),
    /// The daemon refused this identity for good (stale incarnation, stopped agent, bad secret).
    #[error("the daemon refused {name}: {why}")]
    Refused {
        /// The agent.
        name: String,
        /// Why.
        why: String,
        /// A newer incarnation replaced this process, or the agent was stopped: not a failure.
        superseded: bool,
    },
    /// The team's configuration is missing or does not name this agent's role.
    #[error("configuration problem: {0}")]
    Config(String),
    /// A request failed in a way the agent cannot work around.
    #[error("{0}")]
    Daemon(String),
    /// A configuration problem that restarting will not fix (bad API key, unknown model,
    /// max_steps reached): the process exits with [`EXIT_CONFIG`] so it is not restarted.
    #[error("{0}")]
    Fatal(String),
    /// The agent's role's or the team's budget is spent: it stopped before its next model
    /// request and exits with [`EXIT_BUDGET`] (`failed: budget`, not restarted).
    #[error("stopped before the next model request: {0}")]
    Budget(String),
}

/// The exit code (EX_CONFIG) that tells the daemon not to restart the agent.
pub const EXIT_CONFIG: i32 = 78;

/// The exit code that tells the daemon the agent stopped for a spent budget (`failed: budget`,
/// not restarted until someone restarts it).
pub const EXIT_BUDGET: i32 = 79;

/// How an agent's end is reported, the same for a worker process and an in-process agent:
/// 0 for a clean end or when a newer incarnation took over, [`EXIT_CONFIG`] for a problem a
/// restart cannot fix, [`EXIT_BUDGET`] for a spent budget, 1 otherwise.
pub fn exit_code(result: &Result<(), AgentError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(AgentError::Refused {
            superseded: true, ..
        }) => 0,
        Err(AgentError::Fatal(_)) => EXIT_CONFIG,
        Err(AgentError::Budget(_)) => EXIT_BUDGET,
        Err(_) => 1,
    }
}

/// Who this agent is and where its daemon listens (from the environment the daemon set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnv {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The team.
    pub team: String,
    /// The agent's name.
    pub name: String,
    /// Its secret.
    pub secret: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Where to append output when stdout is a pane.
    pub log_file: Option<PathBuf>,
    /// The agent's own workspace (a git worktree) when it is not the team's.
    pub workspace: Option<PathBuf>,
    /// What this member sets over its role (team file or spawn).
    pub member: MemberOverrides,
    /// The agent is an external CLI ([`external`]): run it instead of our own loop.
    pub external: bool,
    /// How this agent's process brings a crashed daemon back (from its launch); `None` inside
    /// the daemon.
    pub healer: Option<agent_team_client::heal::Healer>,
}

/// A member's own settings over its role's: given in `[[teammates]]` or by the leader's
/// spawn, kept on the roster and handed to each launch in `AGENT_TEAM_MODEL`,
/// `AGENT_TEAM_PROVIDER` and `AGENT_TEAM_INSTRUCTIONS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberOverrides {
    /// The model instead of the role's.
    pub model: Option<String>,
    /// The provider instead of the role's (`openai`, `anthropic`, `exec`).
    pub provider: Option<String>,
    /// Text appended to the role's system prompt.
    pub instructions: Option<String>,
}

impl MemberOverrides {
    /// `role` as this member runs it.
    pub fn apply(&self, role: &mut agent_team_config::Role) -> Result<(), AgentError> {
        if let Some(m) = &self.model {
            role.model = m.clone();
        }
        if let Some(p) = &self.provider {
            role.provider = serde_json::from_value(serde_json::json!(p))
                .map_err(|_| AgentError::Config(format!("unknown provider {p:?}")))?;
        }
        if let Some(i) = &self.instructions {
            if !role.system_prompt.is_empty() {
                role.system_prompt.push_str("\n\n");
            }
            role.system_prompt.push_str(i);
        }
        Ok(())
    }
}

impl AgentEnv {
    /// Reads the identity from `AGENT_TEAM_*` variables via `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, AgentError> {
        let need = |k: &'static str| {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or(AgentError::MissingEnv(k))
        };
        // The secret comes in the environment, or (when a command line would show it) in a
        // private file that is removed once read.
        let secret = match get(env::SECRET).filter(|v| !v.is_empty()) {
            Some(s) => s,
            None => {
                let file =
                    need(env::SECRET_FILE).map_err(|_| AgentError::MissingEnv(env::SECRET))?;
                let s = std::fs::read_to_string(&file).map_err(|e| {
                    AgentError::Config(format!("cannot read the secret file {file}: {e}"))
                })?;
                let _ = std::fs::remove_file(&file);
                s.trim().to_string()
            }
        };
        Ok(AgentEnv {
            socket: PathBuf::from(need(env::SOCKET)?),
            team: need(env::TEAM)?,
            name: need(env::NAME)?,
            secret,
            incarnation: get(env::INCARNATION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            log_file: get(env::LOG_FILE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            workspace: get(agent_team_pane::env::WORKSPACE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            member: MemberOverrides {
                model: get(agent_team_pane::env::MODEL).filter(|v| !v.is_empty()),
                provider: get(agent_team_pane::env::PROVIDER).filter(|v| !v.is_empty()),
                instructions: get(agent_team_pane::env::INSTRUCTIONS).filter(|v| !v.is_empty()),
            },
            external: get(agent_team_pane::env::EXTERNAL).is_some_and(|v| !v.is_empty()),
            healer: get(env::TEAM)
                .and_then(|team| agent_team_client::heal::Healer::from_lookup(&team, &get)),
        })
    }

    /// Reads the identity from the process environment.
    pub fn from_process() -> Result<Self, AgentError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// How task commands are placed: in the agent's own process group (a process per agent, killed
/// as a group) or in a group of their own (agents inside the daemon, killed one by one).
#[derive(Debug, Clone, Default)]
pub struct CommandGroups {
    /// Give each command its own process group and record it here so it can be killed.
    pub own_group: Option<Arc<std::sync::Mutex<Option<u32>>>>,
    /// Mark each command (and all it starts) with this value of
    /// [`agent_team_pane::procs::COMMAND_MARKER`], so a daemon restarted after a crash finds
    /// and kills what its predecessor's in-process agents left running.
    pub marker: Option<String>,
    /// What keeps each command away from the team's control plane (set by [`run_agent`] once
    /// the team configuration is known; none in unit tests: environment scrubbed only).
    pub confinement: Option<Arc<command::Confinement>>,
}

/// Runs one agent until it is told to shut down (Ok) or cannot go on (Err). `tools` serves
/// the team's tools to an agent CLI ([`external::ToolHost`]; the MCP server, which lives in a
/// crate that depends on this one); an agent CLI cannot run without it.
pub async fn run_agent(
    agent: AgentEnv,
    out: output::Output,
    groups: CommandGroups,
    tools: Option<&dyn external::ToolHost>,
) -> Result<(), AgentError> {
    // A CLI's messages are delivered only once the CLI has them (marked read as they are
    // handed over: a hook's answer, a paste, `wait_for_messages`), not as they arrive.
    let (link, inbound) = if agent.external {
        link::Link::start_with(agent.clone(), out.clone(), false).await?
    } else {
        link::Link::start(agent.clone(), out.clone()).await?
    };
    // What a loop reads as it starts, asked at once: one wait for all, not one each. Boxed:
    // held inline, these two reads (10 KB) were the largest state of the agent's whole life.
    let (config, first) = Box::pin(async {
        tokio::join!(link.config(), async {
            match agent.external {
                true => None,
                false => Some(agent::Start::read(&link).await),
            }
        })
    })
    .await;
    let mut config: TeamConfig = config?;
    let role_name = link.welcome_role();
    let mut role = config.role(&role_name).cloned().ok_or_else(|| {
        AgentError::Config(format!(
            "role {role_name:?} of {} is not in the team configuration",
            agent.name
        ))
    })?;
    // This member's own model, provider and instructions.
    agent.member.apply(&mut role)?;
    let Some(first) = first else {
        let session = session::Session::new(link, inbound, config, role, out, groups, false);
        return external::run(&Arc::new(session), tools).await;
    };
    // On another host the member's directory there is all it has of the team's: the team
    // file's directory is on the daemon's machine.
    if std::env::var_os(agent_team_pane::env::HOST).is_some()
        && let Some(ws) = &agent.workspace
    {
        config.workspace = ws.clone();
    }
    let mut confinement = command::Confinement::for_agent(&agent, &config, &role);
    // The team's secrets go to its commands only; a file that cannot be read stops the agent
    // (its commands would run without what they need).
    confinement.secrets = command::load_secrets(&agent).map_err(AgentError::Config)?;
    confinement.egress = Some(command::Egress(link.clone()));
    let groups = CommandGroups {
        confinement: Some(Arc::new(confinement)),
        ..groups
    };
    // A worktree-isolated agent reads and writes its own checkout, not the team's directory.
    if let Some(ws) = &agent.workspace {
        config.workspace = ws.clone();
    }
    out.say(&format!(
        "{} · {} · incarnation {} · provider {}",
        agent.name,
        role.name,
        agent.incarnation,
        role.provider.as_str()
    ));
    let session = session::Session::new(link, inbound, config, role, out, groups, true);
    let (config, role) = (session.config(), session.role());
    let result = match (role.provider, session.is_leader()) {
        // A coordinator or collaborate run: the leader drives its own loop (`strategy`).
        (_, true) if config.strategy != agent_team_config::TeamStrategy::Leader => {
            strategy::run(&session).await
        }
        (agent_team_config::Provider::Exec, true) => leader::run(&session).await,
        (agent_team_config::Provider::Exec, false) => exec::run(&session).await,
        _ => agent::run(&session, first).await,
    };
    if let Err(e) = &result {
        session.out().say(&format!("stopping: {e}"));
        let _ = session.link().report_error(&e.to_string()).await;
    }
    result
}
