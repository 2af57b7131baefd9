//! The roster (SPEC §5.1): agents, their secrets, statuses and incarnations, and the coalesced
//! idle notification a teammate sends the leader when it runs out of work.

use crate::{Actor, Change, Outcome, TeamState, bad_request};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One roster entry as stored: what `ps` shows, the secret, and how to launch it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The public view.
    pub info: AgentInfo,
    /// The secret its connections authenticate with.
    pub secret: String,
    /// How to launch it (role, provider, command); opaque to the rules, owned by the daemon.
    #[serde(default)]
    pub spec: serde_json::Value,
}

impl TeamState {
    /// One agent.
    pub fn agent(&self, name: &str) -> Option<&AgentRecord> {
        self.agents.get(name)
    }

    /// Every agent, leader first, then by name, with its model usage.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let mut v: Vec<AgentInfo> = self
            .agents
            .values()
            .map(|a| AgentInfo {
                usage: self.agent_usage(&a.info.name),
                ..a.info.clone()
            })
            .collect();
        v.sort_by_key(|a| (a.name != LEADER, a.name.clone()));
        v
    }

    /// The members the prompt of `name` (of role `role`) names, as [`TeamState::agents`]
    /// shows them ([`agent_team_protocol::prompt_members`]), and the roster's size: what a
    /// starting agent reads instead of the whole roster.
    pub fn prompt_agents(&self, name: &str, role: &str) -> (Vec<AgentInfo>, usize) {
        let named =
            agent_team_protocol::prompt_members(self.agents.values().map(|a| &a.info), name, role);
        let infos = named
            .into_iter()
            .map(|a| AgentInfo {
                usage: self.agent_usage(&a.name),
                ..a.clone()
            })
            .collect();
        (infos, self.agents.len())
    }

    /// Every agent record.
    pub fn agent_records(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values()
    }

    /// Names that can receive messages: every agent that is not stopped or exited, the
    /// leader first.
    pub fn live_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .agents
            .values()
            .filter(|a| receives(a))
            .map(|a| a.info.name.clone())
            .collect();
        // The roster is ordered by name already; only the leader moves to the front.
        v.sort_by_key(|n| n != LEADER);
        v
    }

    /// Whether `name` can receive messages (see [`TeamState::live_names`]): the check a direct
    /// send makes, without listing the roster.
    pub fn can_receive(&self, name: &str) -> bool {
        self.agents.get(name).is_some_and(receives)
    }

    /// Whether `name` is the leader of a run that has ended (finished or failed), still on the
    /// roster: a message to it is stored even though it has exited.
    pub fn leader_after_run(&self, name: &str) -> bool {
        name == LEADER
            && self.agents.contains_key(LEADER)
            && matches!(
                self.run().state,
                agent_team_protocol::RunState::Finished | agent_team_protocol::RunState::Failed
            )
    }

    /// How many agents other than the leader are on the roster and not down.
    pub fn teammate_count(&self) -> usize {
        self.agents
            .values()
            .filter(|a| a.info.name != LEADER && !a.info.status.is_down())
            .count()
    }

    /// Adds an agent (leader or operator); the name must be valid and free.
    pub fn add_agent(
        &mut self,
        actor: &Actor,
        record: AgentRecord,
        now: Timestamp,
    ) -> Outcome<AgentInfo> {
        crate::require_privileged(actor, "add agents")?;
        let name = record.info.name.clone();
        names::validate("agent", &name).map_err(bad_request)?;
        if let Some(existing) = self.agents.get(&name) {
            return Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                format!(
                    "an agent named {name:?} already exists ({})",
                    existing.info.status
                ),
                json!({"agent": name, "status": existing.info.status}),
            ));
        }
        let info = record.info.clone();
        self.agents.insert(name.clone(), record);
        self.persist_agent(&name);
        self.record(
            &name,
            Event::AgentStatus {
                status: info.status,
                incarnation: info.incarnation,
                detail: Some("added".into()),
            },
            now,
        );
        Ok(info)
    }

    /// Removes an agent that never came up (spawn rollback); its inbox goes with it, and a task
    /// it was given goes back to pending instead of staying in progress with nobody.
    pub fn remove_agent(&mut self, name: &str, why: &str, now: Timestamp) {
        self.release_held(name, now);
        if let Some(a) = self.agents.remove(name) {
            self.forget_inbox(name);
            self.changes.push(Change::AgentRemoved(name.to_string()));
            self.record(
                "daemon",
                Event::Error {
                    message: format!("{name} ({}) was rolled back: {why}", a.info.role),
                },
                now,
            );
        }
    }

    /// Takes a teammate that is down (stopped, exited, failed) off the roster as a new run
    /// starts from the team's declared members; its inbox goes with it and an `AGENT_STATUS`
    /// event says why. Returns its last incarnation (a new member of the same name goes on
    /// from it, so nothing of the old one is taken for the new one); `None` when there is no
    /// such agent or it is not down.
    pub fn forget_agent(&mut self, name: &str, why: &str, now: Timestamp) -> Option<u64> {
        let a = self.agents.get(name)?;
        if name == LEADER || !a.info.status.is_down() {
            return None;
        }
        let (status, incarnation) = (a.info.status, a.info.incarnation);
        // Its last event is recorded while it is still on the roster (its role is looked up).
        self.record(
            name,
            Event::AgentStatus {
                status,
                incarnation,
                detail: Some(format!("off the roster: {why}")),
            },
            now,
        );
        self.release_held(name, now);
        self.agents.remove(name);
        self.forget_inbox(name);
        self.changes.push(Change::AgentRemoved(name.to_string()));
        Some(incarnation)
    }

    /// Changes an agent's record with `f` and persists it; `None` if there is no such agent.
    pub fn update_agent<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut AgentRecord) -> R,
    ) -> Option<R> {
        let r = f(self.agents.get_mut(name)?);
        self.persist_agent(name);
        Some(r)
    }

    /// Sets an agent's status, recording an event when it changes; returns the old status.
    pub fn set_agent_status(
        &mut self,
        name: &str,
        status: AgentStatus,
        detail: Option<String>,
        now: Timestamp,
    ) -> Option<AgentStatus> {
        let a = self.agents.get_mut(name)?;
        let old = a.info.status;
        a.info.last_activity = now;
        if old == status && detail.is_none() {
            return Some(old);
        }
        a.info.status = status;
        let incarnation = a.info.incarnation;
        // Up and working, from starting or from another of those: its activity only.
        if crate::is_activity(status)
            && (crate::is_activity(old)
                || matches!(old, AgentStatus::Starting | AgentStatus::Backoff))
        {
            self.persist_agent_activity(name);
        } else {
            self.persist_agent(name);
        }
        if old != status {
            // Its process is gone (or a new one starts): the requests the old one waits on
            // have nobody to answer to.
            if status.is_down() || matches!(status, AgentStatus::Backoff | AgentStatus::Starting) {
                let why = match (&detail, status) {
                    (_, AgentStatus::Starting) => "restarted: a new incarnation".to_string(),
                    (Some(d), _) => format!("{status}: {d}"),
                    (None, _) => status.to_string(),
                };
                self.perm_void_for(name, &why, now);
            }
            self.record(
                name,
                Event::AgentStatus {
                    status,
                    incarnation,
                    detail,
                },
                now,
            );
            if status == AgentStatus::Idle && old != AgentStatus::Idle {
                self.notify_idle(name, now);
            }
        }
        Some(old)
    }

    /// An agent reports its own activity: `running`, `idle` or `waiting`, with an optional error.
    pub fn report_status(
        &mut self,
        actor: &Actor,
        status: AgentStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> Outcome<AgentInfo> {
        let Some(name) = actor.agent().map(str::to_string) else {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only an agent reports its own status",
            ));
        };
        if !matches!(
            status,
            AgentStatus::Running | AgentStatus::Idle | AgentStatus::Waiting
        ) {
            return Err(bad_request(format!(
                "an agent reports running, idle or waiting, not {status}"
            )));
        }
        // A report from a process the supervisor already stopped (a turn that ended while it
        // was being closed) changes nothing: a stopped agent stays stopped until resumed.
        if let Some(a) = self.agent(&name)
            && a.info.status.is_down()
        {
            return Ok(a.info.clone());
        }
        if let Some(e) = &error {
            let e = e.chars().take(2000).collect::<String>();
            self.update_agent(&name, |a| a.info.error = Some(e.clone()));
            self.record(&name, Event::Error { message: e }, now);
        }
        self.set_agent_status(&name, status, None, now);
        self.agent(&name)
            .map(|a| a.info.clone())
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no agent {name:?}")))
    }

    /// `set_todos`: an agent replaces its own checklist (kept with its record, so it survives
    /// a restart of the daemon and of the agent).
    pub fn set_todos(
        &mut self,
        actor: &Actor,
        items: Vec<TodoItem>,
        now: Timestamp,
    ) -> Outcome<AgentInfo> {
        let Some(name) = actor.agent().map(str::to_string) else {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only an agent writes its own checklist",
            ));
        };
        self.update_agent(&name, |a| {
            a.info.todos = items;
            a.info.last_activity = now;
        })
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no agent {name:?}")))?;
        self.agent(&name)
            .map(|a| a.info.clone())
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no agent {name:?}")))
    }

    /// Notes activity without persisting (it is saved with the agent's next change).
    pub(crate) fn touch(&mut self, name: &str, now: Timestamp) {
        if let Some(a) = self.agents.get_mut(name) {
            a.info.last_activity = now;
        }
    }

    /// Records which task an agent holds. Memory only: it is derived from the tasks' owners on
    /// restore, so a claim does not also rewrite the agent's row.
    pub(crate) fn set_current_task(&mut self, name: &str, task: Option<u64>) {
        if let Some(a) = self.agents.get_mut(name) {
            a.info.current_task = task;
        }
    }

    /// [`TeamState::update_agent`] for a change of what the agent is doing only (see
    /// [`Change::AgentActivity`]), e.g. the daemon's own pid for an agent that runs inside it.
    pub fn update_agent_activity<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut AgentRecord) -> R,
    ) -> Option<R> {
        let r = f(self.agents.get_mut(name)?);
        self.persist_agent_activity(name);
        Some(r)
    }

    /// Marks an agent connected (its activity only: see [`Change::AgentActivity`]).
    pub fn mark_connected(&mut self, name: &str) {
        if let Some(a) = self.agents.get_mut(name) {
            a.info.connected = true;
            self.persist_agent_activity(name);
        }
    }

    fn persist_agent_activity(&mut self, name: &str) {
        if let Some(a) = self.agents.get(name) {
            self.changes
                .push(Change::AgentActivity(Box::new(a.clone())));
        }
    }

    fn persist_agent(&mut self, name: &str) {
        if let Some(a) = self.agents.get(name) {
            self.changes.push(Change::Agent(Box::new(a.clone())));
        }
    }

    /// Tells the leader that `name` went idle, unless an unread idle note from it is waiting.
    fn notify_idle(&mut self, name: &str, now: Timestamp) {
        if name == LEADER {
            return;
        }
        let leader_live = self
            .agents
            .get(LEADER)
            .is_some_and(|l| !l.info.status.is_down());
        if !leader_live {
            return;
        }
        let already = self.inboxes.get(LEADER).is_some_and(|q| {
            q.iter()
                .any(|m| m.kind == MessageKind::Idle && m.from == name)
        });
        if already {
            return;
        }
        let body = match self.held_task(name) {
            Some(t) => format!("{name} is idle (holding task {t})"),
            None => format!("{name} is idle and has no task"),
        };
        // The leader is live, so delivery cannot fail for an unknown recipient; a full inbox
        // only drops this advisory note, which the leader can recompute from `agents`.
        let _ = self.deliver(
            name,
            &[LEADER.to_string()],
            MessageKind::Idle,
            body,
            None,
            now,
        );
    }
}

/// Whether an agent can receive messages: it is not stopped or exited.
fn receives(a: &AgentRecord) -> bool {
    !matches!(a.info.status, AgentStatus::Stopped | AgentStatus::Exited)
}
