//! Permission requests: ask, list, decide, and showing a new request to whoever decides.

use super::{internal, page};
use crate::core::{Core, Timer};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::{
    AgentStatus, ErrorBody, MessageKind, PermRequest, PermStatus, Reply, Timestamp,
};
use agent_team_state::{Actor, TeamState};

/// `perm_request`: a pending request puts its agent to `waiting`, has a deadline, and is shown
/// to whoever decides; one a rule decides is answered decided.
pub(super) fn ask(
    core: &mut Core,
    actor: &Actor,
    tool: String,
    input: String,
    reason: String,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    let req = core.state.perm_request(actor, tool, input, reason, now)?;
    if req.status == PermStatus::Pending {
        core.state
            .set_agent_status(&req.agent, AgentStatus::Waiting, None, now);
        core.schedule(core.perm_timeout(), Timer::PermTimeout(req.id));
        core.route_to_approver(&req);
    }
    let request = core.state.perm(req.id).cloned().unwrap_or(req);
    Ok(Reply::Perm { request })
}

/// `perm_list`: one page, from the request after `after`.
pub(super) fn list(state: &TeamState, all: bool, after: Option<u64>) -> Reply {
    let after = after.unwrap_or(0);
    Reply::Perms {
        requests: page(state.perms(all).into_iter().filter(|p| p.id > after)),
    }
}

/// `perm_decide`: the decision, and its agent running again when nothing else waits.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    core: &mut Core,
    actor: &Actor,
    id: u64,
    allow: bool,
    always: bool,
    pattern: Option<String>,
    reason: Option<String>,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    let resolved = core
        .state
        .perm_decide(actor, id, allow, always, pattern, reason, now)?;
    core.after_perm_resolved(&resolved);
    let request = resolved
        .into_iter()
        .next()
        .ok_or_else(|| internal("decision resolved nothing"))?;
    Ok(Reply::Perm { request })
}

impl Core {
    /// Shows a new request to whoever decides: a `permission` message to the leader (its pane
    /// prompts the human, or its model decides when it is the approver). With the leader as
    /// approver and not connected, the request is denied at once.
    pub(crate) fn route_to_approver(&mut self, req: &PermRequest) {
        let now = self.clock.wall();
        let leader_connected = self.state.agent(LEADER).is_some_and(|l| l.info.connected);
        if self.sup.leader_approves() && !leader_connected {
            if let Some(r) = self.state.perm_expire(
                req.id,
                "approver-gone",
                "the leader, who decides permissions, is not connected".into(),
                now,
            ) {
                self.after_perm_resolved(&[r]);
            }
            return;
        }
        if self.state.live_names().iter().any(|n| n == LEADER) {
            let reason = if req.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", req.reason)
            };
            let body = format!(
                "request {}: {} wants to run {} `{}`{reason}",
                req.id, req.agent, req.tool, req.input
            );
            // Never refused for a full inbox (see `deliver`); should it fail anyway, the request
            // is not left waiting unseen: it still shows in `agent-team perms`, and the log says.
            if let Err(e) = self.state.send(
                &Actor::Daemon,
                LEADER,
                body,
                MessageKind::Permission,
                Some(format!("permission request {}", req.id)),
                now,
            ) {
                tracing::warn!(request = req.id, "could not tell the leader: {}", e.message);
            }
        }
    }
}
