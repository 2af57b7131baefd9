//! The team memory's requests: set, get, list and delete. Anyone may read; writing is for the
//! operator, the leader and agents whose role lists the `memory_set` tool (the stored team
//! configuration says which roles do). The rules on keys, sizes and versions are the state's.

use crate::core::Core;
use crate::supervisor::Supervisor;
use agent_team_config::MEMORY_SET;
use agent_team_protocol::names::LEADER;
use agent_team_protocol::{ErrorBody, ErrorCode, Reply, Timestamp};
use agent_team_state::{Actor, TeamState};
use serde_json::json;

/// `memory_set`, by whoever may write.
pub(super) fn set(
    core: &mut Core,
    actor: &Actor,
    key: String,
    value: serde_json::Value,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    may_write_memory(&core.sup, &core.state, actor)?;
    core.state
        .memory_set(actor, key, value, now)
        .map(|e| Reply::MemoryWritten {
            key: e.key,
            version: e.version,
            deleted: false,
        })
}

/// `memory_delete`, by whoever may write.
pub(super) fn delete(
    core: &mut Core,
    actor: &Actor,
    key: String,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    may_write_memory(&core.sup, &core.state, actor)?;
    core.state
        .memory_delete(actor, &key, now)
        .map(|version| Reply::MemoryWritten {
            key,
            version,
            deleted: true,
        })
}

/// Whether `actor` may change the memory: the operator and the daemon, the leader (every
/// leader has `memory_set`), and an agent whose role in the stored team configuration lists
/// `memory_set`. An agent whose role the configuration does not define (or a team with no
/// configuration yet) may only read.
fn may_write_memory(sup: &Supervisor, state: &TeamState, actor: &Actor) -> Result<(), ErrorBody> {
    let Actor::Agent(name) = actor else {
        return Ok(());
    };
    if name == LEADER {
        return Ok(());
    }
    let role = state.agent(name).map(|a| a.info.role.clone());
    let allowed = role.as_deref().is_some_and(|r| {
        sup.config
            .as_ref()
            .and_then(|c| c.role(r))
            .is_some_and(|r| r.tools.iter().any(|t| t == MEMORY_SET))
    });
    if allowed {
        return Ok(());
    }
    Err(ErrorBody::with_details(
        ErrorCode::PermissionDenied,
        format!(
            "{name} may read the team's memory but not change it: its role {} does not list \
             the `{MEMORY_SET}` tool",
            role.as_deref().unwrap_or("(unknown)")
        ),
        json!({"agent": name, "role": role, "tool": MEMORY_SET}),
    ))
}
