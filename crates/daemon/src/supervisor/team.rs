//! The leader's team management beyond one spawn: a whole team in one all-or-nothing request
//! (`spawn_team`), resuming a stopped teammate with its inbox (`resume`), and waiting for
//! teammates and tasks to settle (`wait_for`, answered by the core after the batch that
//! settles them, or at its deadline), and dissolving the team (`dissolve`).

use super::spawn::{check_may_spawn, check_placement};
use super::*;
use std::collections::HashSet;

/// A `wait_for` request not answered yet.
#[derive(Debug)]
pub(crate) struct Wait {
    conn: ConnId,
    id: u64,
    agents: Vec<String>,
    tasks: Vec<u64>,
    /// Done at the first one settled.
    any: bool,
}

/// Whether an agent in `status` is done for `wait_for`: nothing running.
fn settled(status: AgentStatus) -> bool {
    matches!(
        status,
        AgentStatus::Idle | AgentStatus::Exited | AgentStatus::Stopped | AgentStatus::Failed
    )
}

/// Why member `m` (number `index` of the request) cannot be spawned, given the team's
/// configuration, the names on the roster and the names taken earlier in the same request.
/// `None` when it can.
pub(crate) fn member_problem(
    cfg: &TeamConfig,
    state: &TeamState,
    m: &SpawnMember,
    earlier: &HashSet<&str>,
) -> Option<String> {
    if let Err(e) = agent_team_protocol::names::validate("agent", &m.name) {
        return Some(e);
    }
    if m.name == LEADER || m.role == LEADER {
        return Some("the leader is started by `up`/`run`, not spawned".into());
    }
    if earlier.contains(m.name.as_str()) {
        return Some(format!("the name {:?} is given twice", m.name));
    }
    if let Some(a) = state.agent(&m.name) {
        return Some(if a.info.status.is_down() {
            format!(
                "{} is already on the team ({}); resume it with resume_teammate",
                m.name, a.info.status
            )
        } else {
            format!(
                "{} is already on the team ({}, {})",
                m.name, a.info.role, a.info.status
            )
        });
    }
    if !cfg.roles.contains_key(&m.role) {
        let known: Vec<&String> = cfg.roles.keys().collect();
        return Some(format!("no role {:?}; the roles are {known:?}", m.role));
    }
    if let Some(p) = &m.provider
        && serde_json::from_value::<agent_team_config::Provider>(json!(p)).is_err()
    {
        return Some(format!(
            "no provider {p:?}; the providers are openai, anthropic, exec"
        ));
    }
    if let Some(c) = &m.color
        && !agent_team_config::valid_color(c)
    {
        return Some(format!(
            "color {c:?} is neither a colour name (e.g. \"cyan\") nor #rrggbb"
        ));
    }
    None
}

impl Step<'_> {
    /// `spawn_team`: every member is checked first (name valid and free, role known, the
    /// team's `max_teammates` kept); if one is refused none is spawned and the error names it.
    pub(crate) fn spawn_team_request(
        &mut self,
        actor: &Actor,
        mut members: Vec<SpawnMember>,
    ) -> Result<Reply, ErrorBody> {
        check_may_spawn(actor)?;
        let cfg = self.sup.config.clone().ok_or_else(|| {
            err(
                ErrorCode::InvalidState,
                "configure the team before spawning",
            )
        })?;
        for m in members.iter_mut().filter(|m| m.role.is_empty()) {
            m.role = cfg.default_role.clone();
        }
        if members.is_empty() {
            return Err(err(ErrorCode::BadRequest, "spawn_team needs members"));
        }
        for m in &members {
            check_placement(actor, &cfg, m.host.as_deref(), m.workspace.as_deref())?;
        }
        let mut earlier = HashSet::new();
        for (i, m) in members.iter().enumerate() {
            if let Some(why) = member_problem(&cfg, self.state, m, &earlier) {
                return Err(ErrorBody::with_details(
                    ErrorCode::BadRequest,
                    format!(
                        "member {} ({}): {why}; no teammate was spawned",
                        i + 1,
                        m.name
                    ),
                    json!({"member": m.name, "index": i}),
                ));
            }
            earlier.insert(m.name.as_str());
        }
        let now = self.state.teammate_count();
        if now + members.len() > cfg.max_teammates {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "the team has {now} teammates and {} more would exceed max_teammates = {} \
                     (member {} ({}) is one too many); no teammate was spawned (raise it in \
                     the team file or with `agent-team config set max_teammates N`)",
                    members.len(),
                    cfg.max_teammates,
                    cfg.max_teammates.saturating_sub(now) + 1,
                    members[cfg.max_teammates.saturating_sub(now)].name
                ),
                json!({
                    "member": members[cfg.max_teammates.saturating_sub(now)].name,
                    "max_teammates": cfg.max_teammates,
                }),
            ));
        }
        self.backend()?;
        let mut names: Vec<String> = Vec::new();
        for m in &members {
            if let Err(e) = self.add_agent_record(m, None) {
                // Checked above, so this is a fault of the machine (no secret): take back
                // the ones added, so it stays all or nothing.
                for n in &names {
                    self.sup.runtimes.remove(n);
                    self.state
                        .remove_agent(n, "spawn_team failed", self.sup.clock.wall());
                }
                return Err(e);
            }
            names.push(m.name.clone());
        }
        for m in &members {
            self.first_message(actor, m);
        }
        self.launch_many(&names);
        let agents = names
            .iter()
            .filter_map(|n| self.state.agent(n).map(|a| a.info.clone()))
            .collect();
        Ok(Reply::Agents { agents })
    }

    /// `resume`: start a stopped, exited or failed teammate again with its inbox; `message` is
    /// queued first. Answered once it has connected.
    pub(crate) fn resume_request(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        name: &str,
        message: Option<String>,
    ) -> Result<Option<Reply>, ErrorBody> {
        self.check_managed(actor, name, "resume teammates")?;
        if name == LEADER {
            return Err(err(
                ErrorCode::BadRequest,
                "the leader is not resumed; it resumes its teammates",
            ));
        }
        let status = self
            .state
            .agent(name)
            .map(|a| a.info.status)
            .unwrap_or(AgentStatus::Stopped);
        if !status.is_down() {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!("{name} is {status}, not stopped or exited: nothing to resume"),
                json!({"agent": name, "status": status}),
            ));
        }
        let max = self
            .sup
            .config
            .as_ref()
            .map_or(usize::MAX, |c| c.max_teammates);
        if self.state.teammate_count() >= max {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "the team already has {} teammates (max_teammates = {max}); close one first",
                    self.state.teammate_count()
                ),
                json!({"max_teammates": max}),
            ));
        }
        let m = SpawnMember {
            name: name.to_string(),
            message,
            ..Default::default()
        };
        // Started first: a stopped recipient is `not_found` (SPEC §5.3); a starting one has
        // the message waiting when it connects.
        self.restart_agent(name, Some((conn, id)))?;
        self.first_message(actor, &m);
        Ok(None)
    }

    /// `wait_for`: answered now when everything named is settled, else registered and answered
    /// by [`Step::check_waits`] or at the deadline.
    pub(crate) fn wait_request(
        &mut self,
        conn: ConnId,
        id: u64,
        agents: Vec<String>,
        tasks: Vec<u64>,
        timeout_ms: u64,
        any: bool,
    ) -> Result<Option<Reply>, ErrorBody> {
        let agents = if agents.is_empty() && tasks.is_empty() {
            self.state
                .agents()
                .into_iter()
                .filter(|a| a.name != LEADER)
                .map(|a| a.name)
                .collect()
        } else {
            agents
        };
        for a in &agents {
            if self.state.agent(a).is_none() {
                return Err(ErrorBody::with_details(
                    ErrorCode::NotFound,
                    format!("no agent {a:?}"),
                    json!({"agent": a}),
                ));
            }
        }
        for t in &tasks {
            if self.state.task(*t).is_err() {
                return Err(ErrorBody::with_details(
                    ErrorCode::NotFound,
                    format!("no task {t}"),
                    json!({"task": t}),
                ));
            }
        }
        let wait = Wait {
            conn,
            id,
            agents,
            tasks,
            any,
        };
        if let Some(reply) = self.wait_reply(&wait, false) {
            return Ok(Some(reply));
        }
        let key = self.sup.next_wait;
        self.sup.next_wait += 1;
        self.sup.waits.insert(key, wait);
        self.schedule(
            Duration::from_millis(timeout_ms.min(MAX_WAIT_MS)),
            SupTimer::WaitDeadline(key),
        );
        Ok(None)
    }

    /// `dissolve`: every teammate stopped (Qwen Code's `team_delete`, pydantic's
    /// `dissolve_team`), the tasks they hold back to pending at once, so nobody finishes one
    /// after, and with `cancel_tasks` every pending task cancelled; one `TEAM_DISSOLVED`.
    pub(crate) fn dissolve_request(
        &mut self,
        actor: &Actor,
        reason: Option<String>,
        cancel_tasks: bool,
    ) -> Result<Reply, ErrorBody> {
        if !actor.is_privileged() {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only the leader or the operator may dissolve the team",
            ));
        }
        let now = self.sup.clock.wall();
        let reason = reason.filter(|r| !r.trim().is_empty());
        let stopped: Vec<String> = self
            .state
            .agents()
            .into_iter()
            .filter(|a| a.name != LEADER && !a.status.is_down() && a.backend != "external")
            .map(|a| a.name)
            .collect();
        for t in self.state.tasks(Some(TaskStatus::InProgress)) {
            if t.owner.as_ref().is_some_and(|o| stopped.contains(o)) {
                self.state.task_release(actor, t.id, now)?;
            }
        }
        for name in &stopped {
            let rt = self.sup.runtimes.entry(name.clone()).or_default();
            rt.close_reason = Some(
                reason
                    .clone()
                    .unwrap_or_else(|| "the team was dissolved".to_string()),
            );
            self.begin_stop(name, StopReason::Operator);
        }
        let mut cancelled = Vec::new();
        if cancel_tasks {
            for t in self.state.tasks(Some(TaskStatus::Pending)) {
                self.state.task_cancel(actor, t.id, now)?;
                cancelled.push(t.id);
            }
        }
        self.state.record(
            actor.name(),
            Event::TeamDissolved {
                reason,
                stopped: stopped.clone(),
                cancelled: cancelled.clone(),
            },
            now,
        );
        Ok(Reply::Dissolved { stopped, cancelled })
    }

    /// The answer to `w`: when everything is settled, or (`timed_out`) as things stand.
    fn wait_reply(&self, w: &Wait, timed_out: bool) -> Option<Reply> {
        let agents: Vec<AgentInfo> = w
            .agents
            .iter()
            .filter_map(|n| self.state.agent(n).map(|a| a.info.clone()))
            .collect();
        let tasks: Vec<Task> = w
            .tasks
            .iter()
            .filter_map(|t| self.state.task(*t).ok().cloned())
            .collect();
        // An agent removed from the roster (a spawn rolled back) will not settle: it is done.
        let done = if w.any && !(agents.is_empty() && tasks.is_empty()) {
            agents.iter().any(|a| settled(a.status)) || tasks.iter().any(|t| t.status.is_terminal())
        } else {
            agents.iter().all(|a| settled(a.status)) && tasks.iter().all(|t| t.status.is_terminal())
        };
        (done || timed_out).then_some(Reply::Waited {
            done,
            agents,
            tasks,
        })
    }

    /// After a batch: answers the waits it settled.
    pub(crate) fn check_waits(&mut self) {
        if self.sup.waits.is_empty() {
            return;
        }
        let keys: Vec<u64> = self.sup.waits.keys().copied().collect();
        for k in keys {
            let Some(reply) = self
                .sup
                .waits
                .get(&k)
                .and_then(|w| self.wait_reply(w, false))
            else {
                continue;
            };
            if let Some(w) = self.sup.waits.remove(&k) {
                self.answer(w.conn, w.id, Ok(reply));
            }
        }
    }

    /// A wait's time is up: answered with the states as they are (`done` false).
    pub(crate) fn wait_deadline(&mut self, key: u64) {
        if let Some(w) = self.sup.waits.remove(&key)
            && let Some(reply) = self.wait_reply(&w, true)
        {
            self.answer(w.conn, w.id, Ok(reply));
        }
    }
}
