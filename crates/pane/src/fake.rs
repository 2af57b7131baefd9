//! A backend that starts nothing and records what it was asked, for supervisor unit tests.

use crate::{ExitInfo, LaunchSpec, Launched, Liveness, PaneBackend, PaneError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `spawn` of an agent.
    Spawn(String),
    /// `respawn` of an agent.
    Respawn(String),
    /// `stop` of a pid.
    Stop(u32),
    /// `paste` into a pane: the pane and the text.
    Paste(String, String),
}

/// Fake processes whose fate the test decides.
#[derive(Default)]
pub struct FakeBackend {
    /// Every call, in order.
    pub calls: Mutex<Vec<Call>>,
    state: Mutex<HashMap<u32, Liveness>>,
    next_pid: Mutex<u32>,
}

impl FakeBackend {
    /// A fake with no processes.
    pub fn new() -> Self {
        FakeBackend {
            next_pid: Mutex::new(1000),
            ..Default::default()
        }
    }

    /// Makes process `pid` exit with `exit`.
    pub fn exit(&self, pid: u32, exit: ExitInfo) {
        if let Ok(mut s) = self.state.lock() {
            s.insert(pid, Liveness::Exited(exit));
        }
    }

    fn record(&self, c: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(c);
        }
    }

    fn start(&self) -> Launched {
        let pid = self.next_pid.lock().map(|mut n| {
            *n += 1;
            *n
        });
        let pid = pid.unwrap_or(0);
        if let Ok(mut s) = self.state.lock() {
            s.insert(pid, Liveness::Alive);
        }
        Launched {
            container: None,
            pid,
            pgid: Some(pid),
            pane: Some(format!("%{pid}")),
            host: None,
        }
    }
}

impl PaneBackend for FakeBackend {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        self.record(Call::Spawn(spec.name.clone()));
        Ok(self.start())
    }

    fn respawn(&self, spec: &LaunchSpec, previous: &Launched) -> Result<Launched, PaneError> {
        self.record(Call::Respawn(spec.name.clone()));
        let mut l = self.start();
        l.pane = previous.pane.clone();
        Ok(l)
    }

    fn stop(&self, target: &Launched, _grace: Duration) -> Result<(), PaneError> {
        self.record(Call::Stop(target.pid));
        self.exit(
            target.pid,
            ExitInfo {
                code: None,
                signal: Some(15),
            },
        );
        Ok(())
    }

    fn paste(&self, target: &Launched, text: &str) -> Result<(), PaneError> {
        self.record(Call::Paste(
            target.pane.clone().unwrap_or_default(),
            text.to_string(),
        ));
        Ok(())
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.get(&target.pid).copied())
            .unwrap_or(Liveness::Unknown)
    }
}
