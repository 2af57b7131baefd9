//! The team memory's requests: set, get, list and delete. Anyone may read; writing is for the
//! operator, the leader and agents whose role lists the `memory_set` tool (the stored team
//! configuration says which roles do). The rules on keys, sizes and versions are the state's.

use super::{misrouted, page};
use crate::core::Core;
use agent_team_config::MEMORY_SET;
use agent_team_protocol::names::LEADER;
use agent_team_protocol::{ErrorBody, ErrorCode, Reply, Request, Timestamp};
use agent_team_state::Actor;
use serde_json::json;

impl Core {
    /// Applies a memory request.
    pub(super) fn memory_request(
        &mut self,
        actor: &Actor,
        req: Request,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        match req {
            Request::MemorySet { key, value } => {
                self.may_write_memory(actor)?;
                self.state
                    .memory_set(actor, key, value, now)
                    .map(|e| Reply::MemoryWritten {
                        key: e.key,
                        version: e.version,
                        deleted: false,
                    })
            }
            Request::MemoryDelete { key } => {
                self.may_write_memory(actor)?;
                self.state
                    .memory_delete(actor, &key, now)
                    .map(|version| Reply::MemoryWritten {
                        key,
                        version,
                        deleted: true,
                    })
            }
            Request::MemoryGet { key } => self
                .state
                .memory_get(&key)
                .cloned()
                .map(|entry| Reply::Memory { entry }),
            Request::MemoryList { prefix, after } => Ok(Reply::MemoryEntries {
                entries: page(
                    self.state
                        .memory_list(prefix.as_deref(), after.as_deref())
                        .cloned(),
                ),
            }),
            other => Err(misrouted(&other)),
        }
    }

    /// Whether `actor` may change the memory: the operator and the daemon, the leader (every
    /// leader has `memory_set`), and an agent whose role in the stored team configuration lists
    /// `memory_set`. An agent whose role the configuration does not define (or a team with no
    /// configuration yet) may only read.
    fn may_write_memory(&self, actor: &Actor) -> Result<(), ErrorBody> {
        let Actor::Agent(name) = actor else {
            return Ok(());
        };
        if name == LEADER {
            return Ok(());
        }
        let role = self.state.agent(name).map(|a| a.info.role.clone());
        let allowed = role.as_deref().is_some_and(|r| {
            self.sup
                .config
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
}
