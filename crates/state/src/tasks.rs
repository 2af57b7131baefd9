//! The task board (SPEC §5.2): creation with dependencies, atomic claims, assignment, release,
//! completion, cancellation and retry, each refusing with the error the spec names.

use crate::{Actor, Change, Outcome, TeamState, bad_request, not_found_task, require_privileged};
use agent_team_protocol::*;
use serde_json::json;
use std::collections::BTreeSet;

/// The longest task title accepted.
const MAX_TITLE: usize = MAX_TITLE_LEN;

/// What to create; mirrors the `task_add` request.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// Short title.
    pub title: String,
    /// Longer description.
    pub description: String,
    /// Command for the exec provider.
    pub run: Option<String>,
    /// Blocking task ids.
    pub blocked_by: Vec<u64>,
    /// Assign at once to this agent.
    pub assign: Option<String>,
    /// Stable key.
    pub key: Option<String>,
}

impl TeamState {
    /// Finished tasks (completed, failed, cancelled) last changed before `before` that no
    /// unfinished task waits on: what a compaction may remove from the store and from memory.
    pub fn compactable_tasks(&self, before: Timestamp) -> Vec<u64> {
        let needed: BTreeSet<u64> = self
            .tasks
            .values()
            .filter(|t| !t.status.is_terminal())
            .flat_map(|t| t.blocked_by.iter().copied())
            .collect();
        self.tasks
            .values()
            .filter(|t| t.status.is_terminal() && t.updated_at < before && !needed.contains(&t.id))
            .map(|t| t.id)
            .collect()
    }

    /// Forgets tasks a compaction removed from the store (their keys go too; ids are never
    /// handed out again).
    pub fn forget_tasks(&mut self, ids: &[u64]) {
        for id in ids {
            let Some(t) = self.tasks.remove(id) else {
                continue;
            };
            if let Some(k) = t.key
                && self.task_keys.get(&k) == Some(id)
            {
                self.task_keys.remove(&k);
            }
            for b in &t.blocked_by {
                if let Some(d) = self.dependents.get_mut(b) {
                    d.retain(|x| x != id);
                }
            }
            self.dependents.remove(id);
            self.pending.remove(id);
        }
    }
}

impl TeamState {
    /// One task.
    pub fn task(&self, id: u64) -> Outcome<&Task> {
        self.tasks.get(&id).ok_or_else(|| not_found_task(id))
    }

    /// Tasks in id order, optionally of one status.
    pub fn tasks(&self, status: Option<TaskStatus>) -> Vec<Task> {
        self.tasks
            .values()
            .filter(|t| status.is_none_or(|s| t.status == s))
            .cloned()
            .collect()
    }

    /// Tasks as readers see them ([`TeamState::tasks`] with each one's `blocks` filled).
    pub fn tasks_view(&self, status: Option<TaskStatus>) -> Vec<Task> {
        self.tasks(status)
            .into_iter()
            .map(|mut t| {
                t.blocks = self.dependents.get(&t.id).cloned().unwrap_or_default();
                t
            })
            .collect()
    }

    /// One task as readers see it (with `blocks` filled).
    pub fn task_view(&self, id: u64) -> Outcome<Task> {
        let mut task = self.task(id)?.clone();
        task.blocks = self.dependents.get(&id).cloned().unwrap_or_default();
        Ok(task)
    }

    /// The in-progress task an agent holds, if any.
    pub fn held_task(&self, agent: &str) -> Option<u64> {
        self.agents.get(agent).and_then(|a| a.info.current_task)
    }

    /// Creates a task (leader or operator), optionally assigning it.
    pub fn task_add(&mut self, actor: &Actor, new: NewTask, now: Timestamp) -> Outcome<Task> {
        require_privileged(actor, "create tasks")?;
        let title = new.title.trim().to_string();
        if title.is_empty() {
            return Err(bad_request("a task needs a non-empty title"));
        }
        if title.len() > MAX_TITLE || new.description.len() > MAX_BODY_LEN {
            return Err(bad_request(format!(
                "task title is limited to {MAX_TITLE} bytes and description to {MAX_BODY_LEN} bytes"
            )));
        }
        if let Some(run) = &new.run
            && run.len() > MAX_BODY_LEN
        {
            return Err(bad_request(format!(
                "task command is limited to {MAX_BODY_LEN} bytes"
            )));
        }
        if let Some(key) = &new.key {
            if key.is_empty() || key.len() > 128 {
                return Err(bad_request("a task key must have 1-128 bytes"));
            }
            if let Some(id) = self.task_keys.get(key) {
                return self.task(*id).cloned();
            }
        }
        let mut blocked_by = new.blocked_by.clone();
        blocked_by.sort_unstable();
        blocked_by.dedup();
        let missing: Vec<u64> = blocked_by
            .iter()
            .copied()
            .filter(|b| !self.tasks.contains_key(b))
            .collect();
        if !missing.is_empty() {
            return Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("blocked_by names tasks that do not exist: {missing:?}"),
                json!({"missing": missing}),
            ));
        }
        if let Some(to) = &new.assign {
            self.check_assignee(to)?;
        }
        let id = self.next_task_id;
        self.next_task_id += 1;
        let task = Task {
            id,
            key: new.key.clone(),
            title,
            description: new.description,
            run: new.run,
            status: TaskStatus::Pending,
            owner: None,
            blocked_by,
            blocks: Vec::new(),
            created_by: actor.name().to_string(),
            result: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        };
        if let Some(k) = &task.key {
            self.task_keys.insert(k.clone(), id);
        }
        self.pending.insert(id);
        for b in &task.blocked_by {
            self.dependents.entry(*b).or_default().push(id);
        }
        self.tasks.insert(id, task);
        match new.assign {
            Some(to) => self.assign_inner(actor, id, &to, now),
            None => self.task_changed(actor.name(), id, now),
        }
    }

    /// Claims a task for the calling agent: atomic, and refused unless it is pending, unowned
    /// (or reserved for the caller), unblocked, and the caller holds nothing else.
    pub fn task_claim(&mut self, actor: &Actor, id: u64, now: Timestamp) -> Outcome<Task> {
        let agent = claimer(actor)?.to_string();
        self.check_claimable(&agent, id)?;
        self.check_not_busy(&agent, id)?;
        self.start(actor.name(), id, &agent, now)
    }

    /// Claims the lowest-id task the calling agent may claim now, if any.
    pub fn task_claim_next(&mut self, actor: &Actor, now: Timestamp) -> Outcome<Option<Task>> {
        let agent = claimer(actor)?.to_string();
        if let Some(held) = self.held_task(&agent) {
            return Err(busy(&agent, held));
        }
        let found = self
            .pending
            .iter()
            .copied()
            .find(|id| self.check_claimable(&agent, *id).is_ok());
        found
            .map(|id| self.start(actor.name(), id, &agent, now))
            .transpose()
    }

    /// Gives a pending task to an agent (leader or operator). It starts at once when the task
    /// is unblocked and the agent holds nothing else; otherwise it stays pending, reserved for it.
    pub fn task_assign(
        &mut self,
        actor: &Actor,
        id: u64,
        to: &str,
        now: Timestamp,
    ) -> Outcome<Task> {
        require_privileged(actor, "assign tasks")?;
        self.check_assignee(to)?;
        self.assign_inner(actor, id, to, now)
    }

    fn assign_inner(&mut self, actor: &Actor, id: u64, to: &str, now: Timestamp) -> Outcome<Task> {
        let task = self.task(id)?;
        match task.status {
            TaskStatus::Pending => {}
            TaskStatus::InProgress => return Err(conflict(task)),
            _ => return Err(invalid(task, TaskStatus::InProgress)),
        }
        let startable = self.unfinished_blockers(task).is_empty() && self.held_task(to).is_none();
        if startable {
            return self.start(actor.name(), id, to, now);
        }
        if let Some(t) = self.tasks.get_mut(&id) {
            t.owner = Some(to.to_string());
            t.updated_at = now;
        }
        self.task_changed(actor.name(), id, now)
    }

    /// Puts an in-progress task back to pending (its owner, the leader or the operator).
    pub fn task_release(&mut self, actor: &Actor, id: u64, now: Timestamp) -> Outcome<Task> {
        let task = self.task(id)?;
        if task.status != TaskStatus::InProgress {
            return Err(invalid(task, TaskStatus::Pending));
        }
        self.check_owner_or_privileged(actor, task)?;
        self.release_inner(actor.name(), id, now)
    }

    /// Releases whatever task `agent` holds (its process died and will not be restarted).
    pub fn release_held(&mut self, agent: &str, now: Timestamp) -> Option<Task> {
        let id = self.held_task(agent)?;
        self.release_inner("daemon", id, now).ok()
    }

    fn release_inner(&mut self, by: &str, id: u64, now: Timestamp) -> Outcome<Task> {
        let owner = self.tasks.get(&id).and_then(|t| t.owner.clone());
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = TaskStatus::Pending;
            t.owner = None;
            t.updated_at = now;
            t.started_at = None;
        }
        self.pending.insert(id);
        if let Some(o) = owner {
            self.set_current_task(&o, None);
        }
        self.task_changed(by, id, now)
    }

    /// Completes or fails an in-progress task (its owner, the leader or the operator).
    pub fn task_finish(
        &mut self,
        actor: &Actor,
        id: u64,
        status: TaskStatus,
        result: Option<String>,
        now: Timestamp,
    ) -> Outcome<Task> {
        let after = self.task_finish_check(actor, id, status, result.as_deref(), now)?;
        let owner = after.owner.clone();
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = status;
            t.result = result;
            t.updated_at = now;
            t.finished_at = Some(now);
        }
        if let Some(o) = &owner {
            self.set_current_task(o, None);
        }
        let finished = self.task_changed(actor.name(), id, now)?;
        self.start_reserved(actor.name(), &finished, owner.as_deref(), now);
        Ok(finished)
    }

    /// After `finished` ended: a task assigned while it was blocked, or while its agent held
    /// another, starts for that agent once it can (its last blocker completed, or its agent,
    /// `freed`, is done with the one it held). Without this a reserved task stayed pending
    /// until someone looked at the board again.
    fn start_reserved(&mut self, by: &str, finished: &Task, freed: Option<&str>, now: Timestamp) {
        let mut ready: Vec<(u64, String)> = Vec::new();
        if finished.status == TaskStatus::Completed {
            for d in self.dependents.get(&finished.id).into_iter().flatten() {
                if let Some(t) = self.tasks.get(d)
                    && t.status == TaskStatus::Pending
                    && let Some(o) = &t.owner
                {
                    ready.push((*d, o.clone()));
                }
            }
        }
        if let Some(agent) = freed {
            let own = self.pending.iter().copied().find(|id| {
                self.tasks.get(id).is_some_and(|t| {
                    t.owner.as_deref() == Some(agent) && self.unfinished_blockers(t).is_empty()
                })
            });
            if let Some(id) = own {
                ready.push((id, agent.to_string()));
            }
        }
        ready.sort();
        for (id, agent) in ready {
            let startable = self.tasks.get(&id).is_some_and(|t| {
                t.status == TaskStatus::Pending && self.unfinished_blockers(t).is_empty()
            }) && self.held_task(&agent).is_none();
            if startable {
                let _ = self.start(by, id, &agent, now);
            }
        }
    }

    /// Whether `actor` may finish task `id` as `status` with `result` now, changing nothing:
    /// the task as it would be afterwards (the daemon asks before a `task_completed` hook).
    pub fn task_finish_check(
        &self,
        actor: &Actor,
        id: u64,
        status: TaskStatus,
        result: Option<&str>,
        now: Timestamp,
    ) -> Outcome<Task> {
        if !matches!(status, TaskStatus::Completed | TaskStatus::Failed) {
            return Err(bad_request(format!(
                "a task is finished as completed or failed, not {status}"
            )));
        }
        if result.is_some_and(|r| r.len() > MAX_BODY_LEN) {
            return Err(bad_request(format!(
                "a task result is limited to {MAX_BODY_LEN} bytes"
            )));
        }
        let task = self.task(id)?;
        if task.status != TaskStatus::InProgress {
            return Err(invalid(task, status));
        }
        self.check_owner_or_privileged(actor, task)?;
        let mut after = task.clone();
        after.status = status;
        after.result = result.map(str::to_string);
        after.updated_at = now;
        after.finished_at = Some(now);
        Ok(after)
    }

    /// Cancels a pending task (leader or operator).
    pub fn task_cancel(&mut self, actor: &Actor, id: u64, now: Timestamp) -> Outcome<Task> {
        require_privileged(actor, "cancel tasks")?;
        let task = self.task(id)?;
        if task.status != TaskStatus::Pending {
            return Err(invalid(task, TaskStatus::Cancelled));
        }
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = TaskStatus::Cancelled;
            t.owner = None;
            t.updated_at = now;
            t.finished_at = Some(now);
        }
        self.pending.remove(&id);
        self.task_changed(actor.name(), id, now)
    }

    /// Puts a failed task back to pending (leader or operator).
    pub fn task_retry(&mut self, actor: &Actor, id: u64, now: Timestamp) -> Outcome<Task> {
        require_privileged(actor, "retry tasks")?;
        let task = self.task(id)?;
        if task.status != TaskStatus::Failed {
            return Err(invalid(task, TaskStatus::Pending));
        }
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = TaskStatus::Pending;
            t.owner = None;
            t.updated_at = now;
            t.finished_at = None;
            t.started_at = None;
        }
        self.pending.insert(id);
        self.task_changed(actor.name(), id, now)
    }

    /// Whether every task is completed, failed or cancelled (and there is at least one).
    pub fn all_tasks_terminal(&self) -> bool {
        !self.tasks.is_empty() && self.tasks.values().all(|t| t.status.is_terminal())
    }

    fn start(&mut self, by: &str, id: u64, agent: &str, now: Timestamp) -> Outcome<Task> {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = TaskStatus::InProgress;
            t.owner = Some(agent.to_string());
            t.attempts += 1;
            t.updated_at = now;
            t.started_at = Some(now);
        }
        self.pending.remove(&id);
        self.set_current_task(agent, Some(id));
        self.touch(agent, now);
        self.task_changed(by, id, now)
    }

    fn task_changed(&mut self, by: &str, id: u64, now: Timestamp) -> Outcome<Task> {
        let task = self.task(id)?.clone();
        if task.status != TaskStatus::Pending {
            self.pending.remove(&id);
        }
        self.changes.push(Change::Task(task.clone()));
        self.record(by, Event::TaskUpdated { task: task.clone() }, now);
        Ok(task)
    }

    fn unfinished_blockers(&self, task: &Task) -> Vec<u64> {
        task.blocked_by
            .iter()
            .copied()
            .filter(|b| {
                self.tasks
                    .get(b)
                    .is_none_or(|t| t.status != TaskStatus::Completed)
            })
            .collect()
    }

    /// Whether task `id` is open to any claimer now: pending, reserved for nobody, unblocked.
    pub fn is_open(&self, id: u64) -> bool {
        self.tasks.get(&id).is_some_and(|t| {
            t.status == TaskStatus::Pending
                && t.owner.is_none()
                && self.unfinished_blockers(t).is_empty()
        })
    }

    /// The tasks whose `blocked_by` names `id`.
    pub fn dependents_of(&self, id: u64) -> &[u64] {
        self.dependents.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Every reason `agent` may not claim `id` except being busy.
    fn check_claimable(&self, agent: &str, id: u64) -> Outcome<()> {
        let task = self.task(id)?;
        match task.status {
            TaskStatus::Pending => {}
            TaskStatus::InProgress => return Err(conflict(task)),
            _ => return Err(invalid(task, TaskStatus::InProgress)),
        }
        if let Some(owner) = &task.owner
            && owner != agent
        {
            return Err(conflict(task));
        }
        let blockers = self.unfinished_blockers(task);
        if !blockers.is_empty() {
            return Err(ErrorBody::with_details(
                ErrorCode::Blocked,
                format!("task {id} is blocked by unfinished task(s) {blockers:?}"),
                json!({"task": id, "blockers": blockers}),
            ));
        }
        Ok(())
    }

    fn check_not_busy(&self, agent: &str, id: u64) -> Outcome<()> {
        match self.held_task(agent) {
            Some(held) if held != id => Err(busy(agent, held)),
            _ => Ok(()),
        }
    }

    fn check_owner_or_privileged(&self, actor: &Actor, task: &Task) -> Outcome<()> {
        if actor.is_privileged()
            || actor
                .agent()
                .is_some_and(|a| task.owner.as_deref() == Some(a))
        {
            return Ok(());
        }
        Err(ErrorBody::with_details(
            ErrorCode::PermissionDenied,
            format!(
                "task {} belongs to {}",
                task.id,
                task.owner.as_deref().unwrap_or("nobody")
            ),
            json!({"task": task.id, "owner": task.owner}),
        ))
    }

    fn check_assignee(&self, to: &str) -> Outcome<()> {
        match self.agents.get(to) {
            Some(a) if !a.info.status.is_down() || a.info.status == AgentStatus::Failed => Ok(()),
            _ => Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no agent {to:?} to assign to"),
                json!({"agent": to, "valid": self.live_names()}),
            )),
        }
    }
}

fn claimer(actor: &Actor) -> Outcome<&str> {
    actor.agent().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::PermissionDenied,
            "only an agent can claim a task; the operator assigns one with task assign",
        )
    })
}

fn conflict(task: &Task) -> ErrorBody {
    let who = task.owner.as_deref().unwrap_or("someone");
    let what = if task.status == TaskStatus::InProgress {
        "is in progress with"
    } else {
        "is reserved for"
    };
    ErrorBody::with_details(
        ErrorCode::Conflict,
        format!("task {} {what} {who}", task.id),
        json!({"task": task.id, "owner": task.owner, "status": task.status}),
    )
}

fn busy(agent: &str, held: u64) -> ErrorBody {
    ErrorBody::with_details(
        ErrorCode::Busy,
        format!("{agent} already holds task {held} in progress"),
        json!({"agent": agent, "task": held}),
    )
}

fn invalid(task: &Task, to: TaskStatus) -> ErrorBody {
    ErrorBody::with_details(
        ErrorCode::InvalidState,
        format!("task {} cannot go from {} to {}", task.id, task.status, to),
        json!({"task": task.id, "from": task.status, "to": to}),
    )
}
