//! The store's upkeep: `gc` on demand, and the retention window applied on a timer, so the
//! state dir does not grow without bound.

use super::store_error;
use crate::core::Core;
use agent_team_protocol::{Compacted, ErrorBody, Reply, Timestamp};
use agent_team_state::Actor;

/// `gc` (the operator's): everything done up to now, or up to the age asked for, compacted.
pub(super) fn gc(
    core: &mut Core,
    actor: &Actor,
    older_than_secs: u64,
    now: Timestamp,
) -> Result<Reply, ErrorBody> {
    super::operator_only(actor, "compact the team's state")?;
    let before = Timestamp((now.0 + 1).saturating_sub(older_than_secs.saturating_mul(1000)));
    core.compact(before, true)
        .map(|report| Reply::Compacted { report })
}

impl Core {
    /// Compacts what is older than the team file's retention window (`limits.retention_days`).
    pub(crate) fn apply_retention(&mut self) {
        let days = self
            .sup
            .config
            .as_ref()
            .map_or(agent_team_config::Limits::default().retention_days, |c| {
                c.limits.retention_days
            });
        if days == 0 {
            return;
        }
        let before = Timestamp(
            self.clock
                .wall()
                .millis()
                .saturating_sub(days.saturating_mul(86_400_000)),
        );
        if let Err(e) = self.compact(before, false) {
            tracing::warn!("compacting the state failed: {}", e.message);
        }
    }

    /// Removes what is done and older than `before` from the store and from memory; with
    /// `vacuum` the file shrinks too (it blocks the daemon while SQLite rewrites the file).
    pub(crate) fn compact(
        &mut self,
        before: Timestamp,
        vacuum: bool,
    ) -> Result<Compacted, ErrorBody> {
        // What this batch changed so far is stored first, so nothing is compacted twice.
        self.flush_for_read()?;
        let tasks = self.state.compactable_tasks(before);
        let report = self
            .store
            .compact(&self.cfg.paths.db, before, &tasks, vacuum)
            .map_err(store_error)?;
        self.state.forget_tasks(&tasks);
        tracing::info!(
            messages = report.messages,
            tasks = report.tasks,
            events = report.events,
            bytes_before = report.bytes_before,
            bytes_after = report.bytes_after,
            "compacted the state"
        );
        Ok(report)
    }
}
