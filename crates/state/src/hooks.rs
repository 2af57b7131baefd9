//! Hook runs (`[hooks]`): each run the daemon owes is recorded before it starts, so a hook runs
//! at most once per event and hook, also across a daemon restart. A run is `pending` when its
//! event is committed, `started` (committed) before its process is spawned, and forgotten once
//! its outcome is applied. The rules of what a hook's outcome does live in the daemon.

use crate::{Change, TeamState};
use serde::{Deserialize, Serialize};

/// How far a hook run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookRunState {
    /// Recorded with its event; not yet spawned (runs after a restart).
    Pending,
    /// Recorded as started before its process was spawned (never spawned again).
    Started,
}

/// A `task_completed` request held back until its hooks have run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldCompletion {
    /// Who asked to finish the task (an agent's name, `operator`, `daemon`).
    pub actor: String,
    /// The task.
    pub task: u64,
    /// The result given with it.
    #[serde(default)]
    pub result: Option<String>,
    /// The client's request id, so a retry (even to the next daemon) gets the answer.
    #[serde(default)]
    pub rid: Option<String>,
}

/// One hook run the daemon owes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    /// Its id (unique among the runs not yet finished).
    pub id: u64,
    /// The hook's event (`task_completed`, ...).
    pub hook: String,
    /// The event it runs for (none for `task_completed`, which runs before its event).
    #[serde(default)]
    pub event_seq: Option<u64>,
    /// Its place among the hooks of that event (the team's first, then the role's).
    pub index: u32,
    /// The `sh -c` line.
    pub command: String,
    /// Seconds before it is killed.
    pub timeout_secs: u64,
    /// Where it runs.
    pub dir: String,
    /// What it gets on stdin (the event's envelope as JSON).
    pub input: String,
    /// The agent the event is about (`AGENT_TEAM_AGENT`), if any.
    #[serde(default)]
    pub agent: Option<String>,
    /// The task the event is about (`AGENT_TEAM_TASK_ID`), if any.
    #[serde(default)]
    pub task: Option<u64>,
    /// How far it got.
    pub state: HookRunState,
    /// For `task_completed`: the completion waiting for it (shared by the runs of one request).
    #[serde(default)]
    pub held: Option<HeldCompletion>,
}

impl TeamState {
    /// Records a hook run (new, or moved forward).
    pub fn hook_run_put(&mut self, run: HookRun) {
        self.changes.push(Change::HookRun(run.clone()));
        self.next_hook_run = self.next_hook_run.max(run.id + 1);
        self.hook_runs.insert(run.id, run);
    }

    /// Forgets a hook run whose outcome was applied.
    pub fn hook_run_done(&mut self, id: u64) -> Option<HookRun> {
        let run = self.hook_runs.remove(&id)?;
        self.changes.push(Change::HookRunDone(id));
        Some(run)
    }

    /// The id the next hook run gets.
    pub fn next_hook_run_id(&mut self) -> u64 {
        let id = self.next_hook_run;
        self.next_hook_run += 1;
        id
    }

    /// One unfinished hook run.
    pub fn hook_run(&self, id: u64) -> Option<&HookRun> {
        self.hook_runs.get(&id)
    }

    /// The unfinished hook runs, in id order.
    pub fn hook_runs(&self) -> impl Iterator<Item = &HookRun> {
        self.hook_runs.values()
    }
}
