//! The in-process backend: agents run as tasks inside the daemon (the fallback when there is no
//! terminal multiplexer). The agent loop itself is injected, so this crate does not depend on it.

use crate::{ExitInfo, ExitNotify, LaunchSpec, Launched, Liveness, PaneBackend, PaneError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set once the process that runs the in-process agents ends with the team that is stopping
/// ([`process_ends`]).
static PROCESS_ENDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that this process ends once the team stopping now has: an in-process agent that ends
/// then may leave its memory (its conversation) to the process's end instead of freeing it
/// piece by piece (a thousand agents' conversations: ~25 ms of `down`). Set by a daemon whose
/// process exits after it ([`process_ends`] is never reset).
pub fn set_process_ends() {
    PROCESS_ENDS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process ends with the team that is stopping ([`set_process_ends`]).
pub fn process_ends() -> bool {
    PROCESS_ENDS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A running in-process agent.
pub trait RunningAgent: Send + Sync {
    /// Asks it to stop at once (abort the task, kill any command it runs).
    fn abort(&self);
    /// How it ended, once it has.
    fn exit(&self) -> Option<ExitInfo>;
}

/// Starts the agent loop for a launch spec (the identity is in `spec.env`).
pub trait AgentRunner: Send + Sync {
    /// Starts one agent; `on_exit` is called once it has ended (its exit recorded).
    fn start(
        &self,
        spec: &LaunchSpec,
        on_exit: Option<ExitNotify>,
    ) -> Result<Arc<dyn RunningAgent>, PaneError>;
}

/// Agents as tasks; each gets a synthetic id since they share the daemon's pid.
pub struct InProcessBackend {
    runner: Arc<dyn AgentRunner>,
    agents: Mutex<HashMap<String, Arc<dyn RunningAgent>>>,
    next: Mutex<u64>,
    on_exit: Mutex<Option<ExitNotify>>,
}

impl InProcessBackend {
    /// A backend that starts agents with `runner`.
    pub fn new(runner: Arc<dyn AgentRunner>) -> Self {
        InProcessBackend {
            runner,
            agents: Mutex::new(HashMap::new()),
            next: Mutex::new(0),
            on_exit: Mutex::new(None),
        }
    }

    fn get(&self, target: &Launched) -> Option<Arc<dyn RunningAgent>> {
        let key = target.pane.clone()?;
        self.agents.lock().ok()?.get(&key).cloned()
    }
}

impl PaneBackend for InProcessBackend {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn spawns_at_once(&self, _spec: &LaunchSpec) -> bool {
        true
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let notify = self.on_exit.lock().ok().and_then(|n| n.clone());
        let agent = self.runner.start(spec, notify)?;
        let n = self.next.lock().map(|mut n| {
            *n += 1;
            *n
        });
        let key = format!("task-{}", n.unwrap_or(0));
        if let Ok(mut a) = self.agents.lock() {
            a.insert(key.clone(), agent);
        }
        Ok(Launched {
            container: None,
            pid: std::process::id(),
            pgid: None,
            pane: Some(key),
            host: None,
        })
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        let Some(agent) = self.get(target) else {
            return Ok(());
        };
        agent.abort();
        let deadline = Instant::now() + grace.max(Duration::from_secs(1));
        while agent.exit().is_none() {
            if Instant::now() > deadline {
                return Err(PaneError::Tool(format!(
                    "in-process agent {} did not stop",
                    target.pane.clone().unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        match self.get(target) {
            Some(a) => match a.exit() {
                Some(e) => Liveness::Exited(e),
                None => Liveness::Alive,
            },
            // After a daemon restart the tasks are gone with the old daemon.
            None => Liveness::Exited(ExitInfo::default()),
        }
    }

    fn watch_exits(&self, notify: ExitNotify) {
        if let Ok(mut n) = self.on_exit.lock() {
            *n = Some(notify);
        }
    }

    fn forget(&self, target: &Launched) {
        if let (Some(key), Ok(mut a)) = (&target.pane, self.agents.lock()) {
            a.remove(key);
        }
    }
}
