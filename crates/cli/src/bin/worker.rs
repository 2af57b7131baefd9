//! `agent-team-worker`: one agent's process. Started by the daemon with its identity in the
//! environment (`AGENT_TEAM_SOCKET`, `AGENT_TEAM_TEAM`, `AGENT_TEAM_NAME`, `AGENT_TEAM_SECRET`,
//! `AGENT_TEAM_INCARNATION`), or by hand on another machine with `--join URL` (docs/JOIN.md).

use agent_team_worker::output::Output;
use agent_team_worker::{AgentEnv, CommandGroups, run_agent};
use std::process::ExitCode;

const HELP: &str = "\
agent-team-worker: one agent of a team.

Started by the team's daemon, with its identity in the environment. On another machine, a
worker joins a team that listens for workers (`agent-team up --join-listen ADDR`):

  AGENT_TEAM_JOIN_TOKEN=TOKEN agent-team-worker --join URL

Options:
  --join URL               the team's join URL, as `agent-team join NAME` printed it
                           (agent-teams://HOST:PORT/TEAM/NAME#sha256=PIN: the certificate's
                           SHA-256 is the only one trusted)
  --join-token-file PATH   read the one-use join token from PATH instead of
                           AGENT_TEAM_JOIN_TOKEN (never give it on the command line)
  --workspace DIR          where the member's commands run [default: the current directory]
  -h, --help               this text
";

/// What `--join` asks for.
struct JoinArgs {
    url: String,
    token_file: Option<std::path::PathBuf>,
    workspace: Option<std::path::PathBuf>,
}

/// Reads the command line: `None` for a worker the daemon started.
fn join_args() -> Result<Option<JoinArgs>, String> {
    let mut args = std::env::args_os().skip(1);
    let (mut url, mut token_file, mut workspace) = (None, None, None);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy().to_string();
        let mut value = |what: &str| {
            args.next()
                .map(|v| v.to_string_lossy().to_string())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--join" => url = Some(value("--join")?),
            "--join-token-file" => token_file = Some(value("--join-token-file")?.into()),
            "--workspace" => workspace = Some(value("--workspace")?.into()),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    match url {
        Some(url) => Ok(Some(JoinArgs {
            url,
            token_file,
            workspace,
        })),
        None if token_file.is_some() || workspace.is_some() => {
            Err("--join-token-file and --workspace go with --join URL".into())
        }
        None => Ok(None),
    }
}

/// A directory of this process, removed as it ends.
struct PrivateDir(std::path::PathBuf);

impl PrivateDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Joins the team `args` names: the token swapped for the agent's identity.
fn join(rt: &tokio::runtime::Runtime, args: JoinArgs) -> Result<(AgentEnv, PrivateDir), String> {
    let url = agent_team_client::join::JoinUrl::parse(&args.url).map_err(|e| e.to_string())?;
    let token = agent_team_worker::join::token_from(
        args.token_file.as_deref(),
        std::env::var(agent_team_worker::join::ENV_JOIN_TOKEN).ok(),
    )
    .map_err(|e| e.to_string())?;
    // A private directory stands for the runtime dir the socket would be in.
    let dir =
        PrivateDir(std::env::temp_dir().join(format!("agent-team-join-{}", std::process::id())));
    agent_team_paths::ensure_private_dir(dir.path())
        .map_err(|e| format!("cannot make a private directory: {e}"))?;
    let workspace = match args.workspace {
        Some(w) => Some(w),
        None => std::env::current_dir().ok(),
    };
    let agent = rt
        .block_on(agent_team_worker::join::redeem(
            &url,
            &token,
            dir.path().join("daemon.sock"),
            workspace,
            |k| std::env::var(k).ok(),
        ))
        .map_err(|e| e.to_string())?;
    Ok((agent, dir))
}

fn main() -> ExitCode {
    let joining = match join_args() {
        Ok(j) => j,
        Err(e) => {
            eprintln!("agent-team-worker: error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let (agent, rt, _dir) = match joining {
        None => {
            let agent = match AgentEnv::from_process() {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("agent-team-worker: error: {e}");
                    return ExitCode::from(2);
                }
            };
            (agent, None, None)
        }
        Some(args) => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("agent-team-worker: error: cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match join(&rt, args) {
                Ok((agent, dir)) => {
                    eprintln!(
                        "agent-team-worker: joined team {} as {}",
                        agent.team, agent.name
                    );
                    (agent, Some(rt), Some(dir))
                }
                Err(e) => {
                    eprintln!("agent-team-worker: error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let out = Output::for_process(agent.log_file.clone());
    // Warnings of the libraries (the model client's retries) go where the agent's output goes.
    let log = out.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENT_TEAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(false)
        .with_target(false)
        .with_writer(move || agent_team_worker::output::LineWriter(log.clone()))
        .init();
    let rt = match rt.map_or_else(runtime, Ok) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-team-worker: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // An agent CLI's team tools are served from here, to its bridge.
    let tools = agent_team_mcp::WorkerHost;
    let result = rt.block_on(run_agent(
        agent,
        out,
        CommandGroups::default(),
        Some(&tools),
    ));
    if let Err(e) = &result
        && agent_team_worker::exit_code(&result) != 0
    {
        eprintln!("agent-team-worker: error: {e}");
    }
    ExitCode::from(agent_team_worker::exit_code(&result) as u8)
}
