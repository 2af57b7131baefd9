//! `agent-team-worker`: one agent's process. Started by the daemon with its identity in the
//! environment (`AGENT_TEAM_SOCKET`, `AGENT_TEAM_TEAM`, `AGENT_TEAM_NAME`, `AGENT_TEAM_SECRET`,
//! `AGENT_TEAM_INCARNATION`), never by hand.

use agent_team_worker::output::Output;
use agent_team_worker::{AgentEnv, CommandGroups, run_agent};
use std::process::ExitCode;

fn main() -> ExitCode {
    let agent = match AgentEnv::from_process() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("agent-team-worker: error: {e}");
            return ExitCode::from(2);
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
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
