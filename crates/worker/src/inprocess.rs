//! The daemon's in-process backend runs agents with this runner: the same agent loop as the
//! worker binary, as a task on the daemon's runtime, its output in the agent's log file.

use crate::external::ToolHost;
use crate::output::Output;
use crate::{AgentEnv, CommandGroups, run_agent};
use agent_team_pane::inprocess::{AgentRunner, RunningAgent};
use agent_team_pane::{ExitInfo, ExitNotify, LaunchSpec, PaneError};
use std::sync::{Arc, Mutex};

/// Starts agents as tasks on the runtime it is called from; they share their connections to
/// model servers ([`agent_team_model::HttpPool`]: one client for them all, its kept-alive
/// connections reused from one agent to the next).
#[derive(Default, Clone)]
pub struct Runner {
    http: agent_team_model::HttpPool,
    /// What serves an agent CLI's team tools ([`crate::external::ToolHost`]).
    tools: Option<Arc<dyn ToolHost>>,
}

impl Runner {
    /// A runner whose agent CLIs are served the team's tools by `tools`.
    pub fn with_tools(tools: Arc<dyn ToolHost>) -> Runner {
        Runner {
            tools: Some(tools),
            ..Runner::default()
        }
    }
}

struct Running {
    abort: tokio::task::AbortHandle,
    exit: Arc<Mutex<Option<ExitInfo>>>,
    command_group: Arc<Mutex<Option<u32>>>,
}

impl RunningAgent for Running {
    fn abort(&self) {
        // Stop the task first, then kill the command it runs (its own process group): in the
        // other order the task could see its command die and report the task `failed` before
        // the abort, where a stopped agent's task must go back to the board.
        self.abort.abort();
        if let Some(pgid) = self.command_group.lock().ok().and_then(|g| *g) {
            let _ = agent_team_pane::procs::stop_group(
                pgid,
                std::time::Duration::from_millis(500),
                || {},
            );
        }
        if let Ok(mut e) = self.exit.lock()
            && e.is_none()
        {
            *e = Some(ExitInfo {
                code: None,
                signal: Some(9),
            });
        }
    }

    fn exit(&self) -> Option<ExitInfo> {
        self.exit.lock().ok().and_then(|e| *e)
    }
}

impl AgentRunner for Runner {
    fn start(
        &self,
        spec: &LaunchSpec,
        on_exit: Option<ExitNotify>,
    ) -> Result<Arc<dyn RunningAgent>, PaneError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            PaneError::Unsupported(format!("no async runtime to run {} in: {e}", spec.name))
        })?;
        let lookup = |k: &str| {
            spec.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let mut agent =
            AgentEnv::from_lookup(lookup).map_err(|e| PaneError::Tool(e.to_string()))?;
        // It lives and dies with the daemon: nothing to bring back.
        agent.healer = None;
        let out = Output::to_file(&spec.log);
        let exit = Arc::new(Mutex::new(None));
        let command_group = Arc::new(Mutex::new(None));
        let groups = CommandGroups {
            own_group: Some(command_group.clone()),
            marker: Some(agent.socket.display().to_string()),
            ..Default::default()
        };
        let exit2 = exit.clone();
        let (http, tools) = (self.http.clone(), self.tools.clone());
        let name = spec.name.clone();
        let task = handle.spawn(async move {
            let run = run_agent(agent, out.clone(), groups, tools.as_deref());
            let result = http.scope(run).await;
            let code = crate::exit_code(&result);
            if let Err(e) = &result {
                out.say(&format!("agent stopped: {e}"));
            }
            if let Ok(mut e) = exit2.lock() {
                *e = Some(ExitInfo {
                    code: Some(code),
                    signal: None,
                });
            }
            // Tell the supervisor now rather than at its next poll.
            if let Some(notify) = on_exit {
                notify(&name);
            }
        });
        Ok(Arc::new(Running {
            abort: task.abort_handle(),
            exit,
            command_group,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_pane::env;

    /// What an in-process agent's task keeps for its whole life is the largest state of its
    /// future: 1 024 agents keep 1 024 of them. Before, the pool's scope held the agent twice
    /// and the first reads of its start stayed inline (35 KB a task in this build).
    #[test]
    fn an_in_process_agents_task_keeps_a_small_state() {
        let agent = AgentEnv::from_lookup(|k| {
            [
                (env::SOCKET, "/nonexistent/team.sock"),
                (env::TEAM, "t"),
                (env::NAME, "a"),
                (env::SECRET, "s"),
            ]
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let run = agent_team_model::HttpPool::default().scope(run_agent(
            agent,
            Output::null(),
            CommandGroups::default(),
            None,
        ));
        let size = std::mem::size_of_val(&run);
        assert!(size < 14 * 1024, "{size} bytes");
    }
}
