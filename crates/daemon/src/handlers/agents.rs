//! The roster's and the run's requests: who is on the team, external agents, status reports,
//! the team's configuration, starting and finishing a run, and stopping the daemon. Spawn, kill
//! and restart are answered by the supervisor once the agent gets somewhere.

use super::{internal, misrouted};
use crate::core::Core;
use agent_team_protocol::names::LEADER;
use agent_team_protocol::{
    AgentInfo, ErrorBody, ErrorCode, PROTOCOL_VERSION, Reply, Request, TeamInfo, Timestamp,
};
use agent_team_state::{Actor, AgentRecord};

impl Core {
    /// Applies a roster or run request.
    pub(super) fn agent_request(
        &mut self,
        actor: &Actor,
        req: Request,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        match req {
            Request::Ping => Ok(Reply::Pong {
                daemon_pid: self.daemon_pid,
            }),
            Request::TeamInfo => Ok(Reply::Team {
                team: self.team_info(),
            }),
            Request::Agents => Ok(Reply::Agents {
                agents: self.state.agents(),
            }),
            Request::Register { name, role } => self.register(actor, name, role, now),
            Request::SetStatus { status, error } => self
                .state
                .report_status(actor, status, error, now)
                .map(|agent| Reply::Agent { agent }),
            Request::PaneInput { text } => self.pane_input(actor, text),
            Request::SetTodos { items } => self
                .state
                .set_todos(actor, items, now)
                .map(|agent| Reply::Agent { agent }),
            Request::PlanSubmit { plan } => self
                .state
                .submit_plan(actor, plan, now)
                .map(|agent| Reply::Agent { agent }),
            Request::PlanDecide {
                agent,
                approve,
                feedback,
            } => self
                .state
                .decide_plan(actor, &agent, approve, feedback, now)
                .map(|agent| Reply::Agent { agent }),
            Request::StartRun { goal } => self.supervise(|s| s.start_run(actor, goal)),
            Request::Configure { config } => {
                let reply = self.supervise(|s| s.configure(actor, config))?;
                if let Some(c) = &self.sup.config {
                    self.cfg.gate.set(&c.limits);
                }
                Ok(reply)
            }
            // What agents start from: the stored configuration with its run-time settings
            // applied (they are kept, under `overrides`, for `config show`).
            Request::GetConfig => Ok(Reply::Config {
                config: self
                    .sup
                    .config
                    .as_ref()
                    .and_then(|c| serde_json::to_value(c).ok())
                    .or_else(|| self.state.config().cloned())
                    .unwrap_or(serde_json::Value::Null),
            }),
            Request::Finish {
                answer,
                force,
                success,
                details,
            } => {
                self.state
                    .finish(actor, answer, force, success, details, now)?;
                self.supervise(|s| s.finish_team());
                Ok(Reply::Done)
            }
            Request::Shutdown => {
                if *actor != Actor::Operator {
                    return Err(ErrorBody::new(
                        ErrorCode::PermissionDenied,
                        "only the operator may shut the daemon down",
                    ));
                }
                self.stop_on_purpose();
                Ok(Reply::Done)
            }
            Request::SpawnTeam { members } => {
                self.supervise(|s| s.spawn_team_request(actor, members))
            }
            Request::ConfigSet { key, value } => {
                self.supervise(|s| s.config_change(actor, Some(key), Some(value)))
            }
            Request::ConfigReset { key } => self.supervise(|s| s.config_change(actor, key, None)),
            Request::Dissolve {
                reason,
                cancel_tasks,
            } => self.supervise(|s| s.dissolve_request(actor, reason, cancel_tasks)),
            Request::Spawn { .. }
            | Request::Kill { .. }
            | Request::Resume { .. }
            | Request::WaitFor { .. }
            | Request::Restart { .. }
            | Request::WorkDiff { .. }
            | Request::WorkFinish { .. } => Err(internal(
                "lifecycle and worktree requests are handled before dispatch",
            )),
            other => Err(misrouted(&other)),
        }
    }

    /// `pane_input`: types into the calling agent's own pane, off the core (a tmux command).
    fn pane_input(&mut self, actor: &Actor, text: String) -> Result<Reply, ErrorBody> {
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
        let external = self
            .state
            .agent(name)
            .and_then(|rec| self.sup.provider_of(rec))
            .is_some_and(|p| p.is_external());
        if !external {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only an external agent CLI's team server types into its pane",
            ));
        }
        let Some((backend, target)) = self.sup.pane_of(name).filter(|(_, t)| t.pane.is_some())
        else {
            return Err(ErrorBody::new(
                ErrorCode::InvalidState,
                format!("{name} has no pane to type into on this backend"),
            ));
        };
        if !self.sup.paste(backend, target, text) {
            return Err(ErrorBody::new(
                ErrorCode::Busy,
                "too many pastes are waiting; try again",
            ));
        }
        Ok(Reply::Done)
    }

    /// `register`: an agent run by someone else joins the roster and gets its secret.
    fn register(
        &mut self,
        actor: &Actor,
        name: String,
        role: String,
        now: Timestamp,
    ) -> Result<Reply, ErrorBody> {
        if *actor != Actor::Operator {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the operator registers external agents",
            ));
        }
        if (name == LEADER) != (role == LEADER) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "the name `leader` is reserved for the leader role",
            ));
        }
        let secret = agent_team_paths::new_secret()
            .map_err(|e| internal(&format!("cannot make a secret: {e}")))?;
        let info = AgentInfo::new(&name, &role, "external", 1, now);
        let agent = self.state.add_agent(
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
    fn team_info(&self) -> TeamInfo {
        let (agents, tasks) = self.state.counts();
        let run = self.state.run();
        TeamInfo {
            name: self.cfg.team.clone(),
            daemon_pid: self.daemon_pid,
            protocol: PROTOCOL_VERSION,
            state_dir: self.cfg.paths.dir.display().to_string(),
            socket: self.cfg.paths.socket.display().to_string(),
            goal: run.goal.clone(),
            run: run.state,
            answer: run.answer.clone(),
            agents,
            tasks,
            last_seq: self.state.last_seq(),
            backend: None,
            details: run.details.clone(),
        }
    }
}

/// The longest text one `pane_input` types (a CLI's first instruction, or the messages that
/// wake it; the messages are bounded by the inbox limit long before this).
const MAX_PANE_INPUT: usize = 256 * 1024;
