//! The roster's and the run's requests that need more than one call on the state: external
//! agents, typing into a pane, the team's configuration, finishing a run, and stopping the
//! daemon. Spawn, kill and restart are answered by the supervisor once the agent gets somewhere.

use super::{internal, operator_only};
use crate::core::Core;
use agent_team_protocol::names::LEADER;
use agent_team_protocol::{
    AgentInfo, ErrorBody, ErrorCode, PROTOCOL_VERSION, Reply, RunDetails, TeamInfo, Timestamp,
};
use agent_team_state::{Actor, AgentRecord, TeamState};

/// `configure`: the team's configuration stored, and the connection limits it sets applied.
pub(super) fn configure(
    core: &mut Core,
    actor: &Actor,
    mut config: serde_json::Value,
) -> Result<Reply, ErrorBody> {
    // Webhook URLs the team file gives itself stay in memory: never stored, never given to
    // agents (`get_config`).
    let literals = agent_team_config::hide_notify_urls(&mut config);
    let reply = core.supervise(|s| s.configure(actor, config))?;
    core.notifier.literals.extend(literals);
    if let Some(c) = &core.sup.config {
        core.cfg.gate.set(&c.limits);
    }
    Ok(reply)
}

/// `get_config`: what agents start from, the stored configuration with its run-time settings
/// applied (they are kept, under `overrides`, for `config show`). A teammate gets its own role
/// and its own `[[teammates]]` entry only ([`agent_team_config::TeamConfig::for_teammate`]):
/// it spawns no one, and the rest is most of the configuration's bytes, serialized and parsed
/// again on every teammate's start.
pub(super) fn config(core: &Core, actor: &Actor) -> Reply {
    let own_role = match actor {
        Actor::Agent(name) if name != LEADER => core
            .state
            .agent(name)
            .map(|a| (a.info.name.as_str(), a.info.role.as_str())),
        _ => None,
    };
    let config = match (&core.sup.config, own_role) {
        (Some(c), Some((name, role))) => serde_json::to_value(c.for_teammate(name, role)).ok(),
        (Some(c), None) => serde_json::to_value(c).ok(),
        (None, _) => None,
    };
    Reply::Config {
        config: config
            .or_else(|| core.state.config().cloned())
            .unwrap_or(serde_json::Value::Null),
    }
}

/// `finish`: the run ends, and the team with it. An automatic finish (`auto`: the offline
/// leader's summary of the board) of a run in which no task was done is not a success.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    core: &mut Core,
    actor: &Actor,
    answer: String,
    force: bool,
    success: bool,
    details: Option<RunDetails>,
    auto: bool,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    let (answer, success) = if auto && success && !core.state.run_did_work() {
        (
            format!(
                "{answer}\nno task was done in this run (the board's tasks were done before it)"
            ),
            false,
        )
    } else {
        (answer, success)
    };
    core.state
        .finish(actor, answer, force, success, details, now)?;
    core.supervise(|s| s.finish_team());
    Ok(Reply::Done)
}

/// `shutdown`: the operator's alone.
pub(super) fn shutdown(core: &mut Core, actor: &Actor) -> Result<Reply, ErrorBody> {
    operator_only(actor, "shut the daemon down")?;
    core.stop_on_purpose();
    Ok(Reply::Done)
}

/// `serve_egress`: the calling agent's own egress proxy, served before its sandboxed process.
pub(super) fn serve_egress(core: &mut Core, actor: &Actor) -> Result<Reply, ErrorBody> {
    let Actor::Agent(name) = actor else {
        return Err(ErrorBody::new(
            ErrorCode::PermissionDenied,
            "only an agent asks for its own egress proxy",
        ));
    };
    core.serve_egress(name);
    Ok(Reply::Done)
}

/// `pane_input`: types into the calling agent's own pane, off the core (a tmux command).
pub(super) fn pane_input(core: &mut Core, actor: &Actor, text: String) -> Result<Reply, ErrorBody> {
    let Actor::Agent(name) = actor else {
        return Err(ErrorBody::new(
            ErrorCode::PermissionDenied,
            "only an agent types into its own pane",
        ));
    };
    if text.len() > MAX_PANE_INPUT {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "{} bytes is more than one paste takes ({MAX_PANE_INPUT})",
                text.len()
            ),
        ));
    }
    let external = core
        .state
        .agent(name)
        .and_then(|rec| core.sup.provider_of(rec))
        .is_some_and(|p| p.is_external());
    if !external {
        return Err(ErrorBody::new(
            ErrorCode::PermissionDenied,
            "only an external agent CLI's team server types into its pane",
        ));
    }
    let Some((backend, target)) = core.sup.pane_of(name).filter(|(_, t)| t.pane.is_some()) else {
        return Err(ErrorBody::new(
            ErrorCode::InvalidState,
            format!("{name} has no pane to type into on this backend"),
        ));
    };
    if !core.sup.paste(backend, target, text) {
        return Err(ErrorBody::new(
            ErrorCode::Busy,
            "too many pastes are waiting; try again",
        ));
    }
    Ok(Reply::Done)
}

/// `register`: an agent run by someone else joins the roster and gets its secret.
pub(super) fn register(
    state: &mut TeamState,
    actor: &Actor,
    name: String,
    role: String,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    operator_only(actor, "register external agents")?;
    if (name == LEADER) != (role == LEADER) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "the name `leader` is reserved for the leader role",
        ));
    }
    let secret = agent_team_paths::new_secret()
        .map_err(|e| internal(&format!("cannot make a secret: {e}")))?;
    let info = AgentInfo::new(&name, &role, "external", 1, now);
    let agent = state.add_agent(
        actor,
        AgentRecord {
            info,
            secret: secret.clone(),
            spec: serde_json::Value::Null,
        },
        now,
    )?;
    Ok(Reply::Registered { agent, secret })
}

/// The team at a glance (`agent-team status`).
pub(super) fn team_info(core: &Core) -> TeamInfo {
    let (agents, tasks) = core.state.counts();
    let run = core.state.run();
    TeamInfo {
        name: core.cfg.team.clone(),
        daemon_pid: core.daemon_pid,
        protocol: PROTOCOL_VERSION,
        state_dir: core.cfg.paths.dir.display().to_string(),
        socket: core.cfg.paths.socket.display().to_string(),
        goal: run.goal.clone(),
        run: run.state,
        answer: run.answer.clone(),
        agents,
        tasks,
        last_seq: core.state.last_seq(),
        backend: None,
        details: run.details.clone(),
    }
}

/// The longest text one `pane_input` types (a CLI's first instruction, or the messages that
/// wake it; the messages are bounded by the inbox limit long before this).
const MAX_PANE_INPUT: usize = 256 * 1024;
