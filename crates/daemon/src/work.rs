//! A worktree teammate's work: `work_diff` shows it, `work_finish` lands it (merge, pull
//! request, discard). The git work runs off the core's thread (a merge of many files takes a
//! while); its outcome comes back as [`CoreMsg::WorkDone`], is recorded as a `FINISHED_WORK`
//! event and answers the request.

use crate::core::{Core, CoreMsg, WorkDone};
use crate::outbox::ConnId;
use agent_team_protocol::{
    AgentStatus, ErrorBody, ErrorCode, Event, FinishAction, Reply, TaskStatus,
};
use agent_team_state::Actor;
use agent_team_worktree::{FinishRequest, WorktreeError};
use serde_json::json;
use std::path::PathBuf;

/// A `work_finish` request's arguments.
pub(crate) struct WorkFinishArgs {
    /// The teammate whose work lands.
    pub agent: String,
    /// Merge, pull request or discard.
    pub action: FinishAction,
    /// The branch to merge into.
    pub into: Option<String>,
    /// Keep the branch after a merge.
    pub keep: bool,
    /// Land control-plane changes (the operator only).
    pub accept_control_changes: bool,
}

impl Core {
    /// The repository whose worktrees `actor` may see or land (the leader and the operator
    /// only), or why not.
    fn work_repo(&self, actor: &Actor) -> Result<std::path::PathBuf, ErrorBody> {
        if !actor.is_privileged() {
            return Err(ErrorBody::with_details(
                ErrorCode::PermissionDenied,
                "only the leader or the operator may see or land a teammate's work",
                json!({"agent": actor.name()}),
            ));
        }
        self.sup
            .config
            .as_ref()
            .map(|c| c.workspace.clone())
            .ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::InvalidState,
                    "the team has no configuration yet (run `agent-team up`)",
                )
            })
    }

    /// `work_diff`: answered at once when refused, else once git is done.
    pub(crate) fn work_diff(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        agent: String,
        patch: bool,
    ) -> Option<Result<Reply, ErrorBody>> {
        let repo = match self.work_repo(actor) {
            Ok(repo) => repo,
            Err(e) => return Some(Err(e)),
        };
        let control = self.control_files();
        self.run_work(conn, id, move || {
            WorkDone::Diff(
                agent_team_worktree::diff_with(&repo, &agent, patch, &control)
                    .map(|diff| Reply::WorkDiff { diff })
                    .map_err(|e| e.to_error_body()),
            )
        });
        None
    }

    /// `work_finish`: answered at once when refused, else once git is done.
    pub(crate) fn work_finish(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        finish: WorkFinishArgs,
    ) -> Option<Result<Reply, ErrorBody>> {
        let WorkFinishArgs {
            agent,
            action,
            into,
            keep,
            accept_control_changes,
        } = finish;
        let repo = match self.work_repo(actor) {
            Ok(repo) => repo,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = self.may_finish(&agent) {
            return Some(Err(e));
        }
        // Pushing leaves the machine: the leader may only when the team file says so.
        if action == FinishAction::Pr
            && !matches!(actor, Actor::Operator)
            && !self.pull_requests_configured(&agent)
        {
            return Some(Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the operator may open a pull request unless the team file says finish = \"pr\"",
            )));
        }
        // What makes the team what it is lands only when the operator says so, after seeing it.
        if accept_control_changes && !matches!(actor, Actor::Operator) {
            return Some(Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the operator may accept changes to the team's control plane (agent-team finish NAME --merge --accept-control-changes)",
            )));
        }
        let finish = FinishRequest {
            agent: agent.clone(),
            team: self.cfg.team.clone(),
            action,
            into,
            keep,
            tasks: self.finished_tasks(&agent),
            control_files: self.control_files(),
            accept_control: accept_control_changes,
        };
        self.finishing.insert(agent.clone());
        self.run_work(conn, id, move || finish_work(repo, finish));
        None
    }

    /// The team's own control-plane paths relative to its workspace (the team file, the
    /// scripts its hooks and `[notify]` run, `[finish] review`).
    fn control_files(&self) -> Vec<String> {
        self.sup
            .config
            .as_ref()
            .map(agent_team_config::TeamConfig::control_files)
            .unwrap_or_default()
    }

    /// Refuses to land the work of a teammate that may still be changing it.
    fn may_finish(&self, agent: &str) -> Result<(), ErrorBody> {
        if self.finishing.contains(agent) {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("{agent}'s work is being finished already"),
            ));
        }
        let Some(a) = self.state.agent(agent) else {
            return Ok(());
        };
        let working = self
            .state
            .tasks(Some(TaskStatus::InProgress))
            .into_iter()
            .any(|t| t.owner.as_deref() == Some(agent));
        let status = a.info.status;
        if status == AgentStatus::Idle && !working {
            return Ok(());
        }
        if status.is_live() || status == AgentStatus::Backoff {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "{agent} is {} and may still change its work: finish it once its tasks are done and it is idle, or after `agent-team kill {agent}`",
                    if working {
                        "working on a task".to_string()
                    } else {
                        status.as_str().to_string()
                    }
                ),
                json!({"agent": agent, "status": status.as_str()}),
            ));
        }
        Ok(())
    }

    /// Whether the team file (or `agent`'s role) lands work as pull requests.
    fn pull_requests_configured(&self, agent: &str) -> bool {
        let Some(cfg) = &self.sup.config else {
            return false;
        };
        let role = self.state.agent(agent).map(|a| a.info.role.clone());
        let policy = role
            .and_then(|r| cfg.role(&r).and_then(|r| r.finish))
            .unwrap_or(cfg.finish);
        policy == agent_team_protocol::FinishPolicy::Pr
    }

    /// `agent`'s completed tasks, for the commit message and the pull request.
    fn finished_tasks(&self, agent: &str) -> Vec<(u64, String, Option<String>)> {
        self.state
            .tasks(Some(TaskStatus::Completed))
            .into_iter()
            .filter(|t| t.owner.as_deref() == Some(agent))
            .map(|t| (t.id, t.title, t.result))
            .collect()
    }

    fn run_work(&self, conn: ConnId, id: u64, work: impl FnOnce() -> WorkDone + Send + 'static) {
        let tx = self.self_tx.clone();
        let turn = self.git_turn.clone();
        self.blocking.spawn(move || {
            let done = {
                let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
                work()
            };
            let _ = tx.send(CoreMsg::WorkDone { conn, id, done });
        });
    }

    /// A worktree teammate completed `task`: what its worktree holds uncommitted becomes one
    /// commit with the task's title, authored as the teammate, so `finish` lands one commit
    /// per task. Off the core; a failure is logged, and `finish` commits what is left.
    pub(crate) fn commit_task_work(&mut self, task: &agent_team_protocol::Task) {
        let Some(owner) = task.owner.clone() else {
            return;
        };
        let Some(cfg) = &self.sup.config else { return };
        let host = self.state.agent(&owner).and_then(|a| a.info.host.clone());
        let worktree = self
            .state
            .agent(&owner)
            .and_then(|a| cfg.role(&a.info.role))
            .is_some_and(|r| r.isolation == agent_team_config::Isolation::Worktree);
        if (!worktree && host.is_none()) || self.finishing.contains(&owner) {
            return;
        }
        let (repo, team) = (cfg.workspace.clone(), self.cfg.team.clone());
        let message = match task.result.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => format!(
                "{}\n\nTask #{} by {owner}@{team}: {r}\n",
                task.title, task.id
            ),
            _ => format!("{}\n\nTask #{} by {owner}@{team}\n", task.title, task.id),
        };
        let turn = self.git_turn.clone();
        // A member on another host: committed there and its branch fetched home.
        let backend = host.and_then(|h| self.sup.backend.clone().map(|b| (h, b)));
        self.blocking.spawn(move || {
            let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
            let done = match &backend {
                Some((host, b)) => b
                    .collect_work(host, &owner, &message)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => agent_team_worktree::commit_work(&repo, &owner, &team, &message)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = done {
                tracing::warn!(agent = owner, "cannot commit its task's work: {e}");
            }
        });
    }

    /// A piece of git work ended: record what a finish did and answer.
    pub(crate) fn work_done(&mut self, conn: ConnId, id: u64, done: WorkDone) {
        let outcome = match done {
            WorkDone::Diff(r) => r,
            WorkDone::Finish { agent, outcome } => {
                self.finishing.remove(&agent);
                let now = self.clock.wall();
                let event = match &outcome {
                    Ok(o) => Some(Event::FinishedWork {
                        outcome: match o.action {
                            FinishAction::Merge => "merged",
                            FinishAction::Pr => "pr",
                            FinishAction::Discard => "discarded",
                        }
                        .into(),
                        branch: o.branch.clone(),
                        into: o.into.clone(),
                        committed: o.committed.clone(),
                        head: o.head.clone(),
                        paths: Vec::new(),
                    }),
                    Err(WorktreeError::Conflict {
                        branch,
                        into,
                        paths,
                    }) => Some(Event::FinishedWork {
                        outcome: "conflict".into(),
                        branch: branch.clone(),
                        into: Some(into.clone()),
                        committed: Vec::new(),
                        head: None,
                        paths: paths.clone(),
                    }),
                    Err(_) => None,
                };
                if let Some(event) = event {
                    self.state.record(&agent, event, now);
                }
                if let Err(e) = &outcome {
                    tracing::info!(agent, "finish: {e}");
                }
                outcome
                    .map(|outcome| Reply::WorkFinished { outcome })
                    .map_err(|e| e.to_error_body())
            }
        };
        self.answer(conn, id, outcome);
    }
}

fn finish_work(repo: PathBuf, finish: FinishRequest) -> WorkDone {
    WorkDone::Finish {
        agent: finish.agent.clone(),
        outcome: agent_team_worktree::finish(&repo, &finish),
    }
}

#[cfg(test)]
mod tests {
    /// What the sandbox keeps read-only in a workspace because it runs code later is control
    /// plane for `finish` too: the two lists stay together.
    #[test]
    fn every_path_the_sandbox_protects_is_control_plane_for_finish() {
        for p in agent_team_sandbox::WORKSPACE_PROTECTED {
            assert!(
                agent_team_worktree::is_control(p, &[])
                    || agent_team_worktree::is_control(&format!("{p}/x"), &[]),
                "{p} is protected in the sandbox but would be merged by finish"
            );
        }
    }
}
