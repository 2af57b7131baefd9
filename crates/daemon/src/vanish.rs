//! A team whose files are deleted stays gone (issue 70). The daemon looks every
//! [`CHECK_EVERY`] at what its state dir, database and runtime dir resolve to (three `stat`s,
//! off the core's path); once one is gone or another (deleted and made again), the team it
//! served no longer exists: the core stops the agents as `down` does, writes nothing where the
//! files were, dismisses the guardian so nothing brings the daemon back, and the daemon exits.

use crate::core::{CoreMsg, CoreTx};
use agent_team_client::heal::TeamFiles;
use agent_team_paths::TeamPaths;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the daemon looks at its files.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long the agents get to stop once the files are gone before the daemon exits anyway
/// (the stops under way still end: the runtime waits for them before the process exits).
pub(crate) const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Set once the runtime dir is gone or another: the daemon's end cleans up nothing there (the
/// paths may name another team's files by then).
pub(crate) type RuntimeGone = Arc<AtomicBool>;

/// Whether the runtime dir was found gone or another.
pub(crate) fn runtime_gone(flag: &RuntimeGone) -> bool {
    flag.load(Ordering::SeqCst)
}

/// Looks at `tp`'s files every [`CHECK_EVERY`] until they are no longer `files`, then tells
/// the core to stop the team, and [`STOP_WITHIN`] later to exit whatever is still stopping.
/// Returns once it has told it (or the core is gone).
pub(crate) async fn watch(tp: TeamPaths, files: TeamFiles, tx: CoreTx, gone: RuntimeGone) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if tx.is_closed() {
            return;
        }
        if !files.still_there(&tp) {
            break;
        }
    }
    let runtime_intact = files.runtime_still_there(&tp);
    gone.store(!runtime_intact, Ordering::SeqCst);
    tracing::warn!(
        team = %tp.team,
        "the team's files are gone ({} or {} or the runtime dir was deleted or replaced): stopping the team for good",
        tp.dir.display(),
        tp.db.display()
    );
    let said = |force| {
        tx.send(CoreMsg::Vanished {
            runtime_intact,
            force,
        })
        .is_ok()
    };
    if said(false) {
        tokio::time::sleep(STOP_WITHIN).await;
        said(true);
    }
}
