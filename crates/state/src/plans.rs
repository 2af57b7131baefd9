//! Plan approval (`plan_required`): a teammate whose plan is required works read-only until the
//! leader or the operator approves the plan it submitted. The plan state is kept with the
//! agent's record ([`AgentInfo::plan`]), so it survives a restart of the daemon and of the agent.

use crate::{Actor, Outcome, TeamState, bad_request};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use serde_json::json;

/// The most bytes of a plan quoted in the message that tells the leader about it (the whole
/// plan is in the event, `ps --json` and `agent-team plan show`).
const QUOTED_PLAN_LEN: usize = 16 * 1024;

impl TeamState {
    /// `plan_submit`: the calling teammate submits its plan (replacing an earlier one) and waits
    /// for a decision. Refused for an agent whose plan is not required (`conflict`) or already
    /// approved (`conflict`). The leader, when it is up, is told with a message.
    pub fn submit_plan(
        &mut self,
        actor: &Actor,
        plan: String,
        now: Timestamp,
    ) -> Outcome<AgentInfo> {
        let Some(name) = actor.agent().map(str::to_string) else {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only a teammate submits its own plan",
            ));
        };
        check_plan_text(&plan)?;
        let info = self
            .agent(&name)
            .map(|a| a.info.clone())
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no agent {name:?}")))?;
        match info.plan.as_ref().map(|p| p.state) {
            None => {
                return Err(ErrorBody::with_details(
                    ErrorCode::Conflict,
                    format!(
                        "{name} needs no plan approval (plan_required is not set for it): go \
                         ahead with your tools"
                    ),
                    json!({"agent": name}),
                ));
            }
            Some(PlanState::Approved) => {
                return Err(ErrorBody::with_details(
                    ErrorCode::Conflict,
                    format!("the plan of {name} is already approved: you have your full tool set"),
                    json!({"agent": name, "state": PlanState::Approved}),
                ));
            }
            Some(_) => {}
        }
        self.update_agent(&name, |a| {
            if let Some(p) = a.info.plan.as_mut() {
                p.state = PlanState::Submitted;
                p.plan = Some(plan.clone());
                p.submitted_at = Some(now);
                p.submissions += 1;
            }
            a.info.last_activity = now;
        });
        self.record(
            &name,
            Event::PlanSubmitted {
                agent: name.clone(),
                plan: plan.clone(),
            },
            now,
        );
        if name != LEADER
            && self
                .agents
                .get(LEADER)
                .is_some_and(|l| !l.info.status.is_down())
        {
            let quoted = quoted_plan(plan, &name);
            // A full inbox must not lose the plan: the event and `agent-team plan` have it.
            let _ = self.send(
                &Actor::Daemon,
                LEADER,
                format!(
                    "{name} submitted a plan and works read-only until it is approved. Approve \
                     it or reject it with feedback using decide_plan (the operator may decide \
                     too).\n\n{quoted}"
                ),
                MessageKind::Text,
                Some(format!("plan from {name}")),
                now,
            );
        }
        self.agent(&name)
            .map(|a| a.info.clone())
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no agent {name:?}")))
    }

    /// `plan_decide`: the leader or the operator approves or rejects `agent`'s submitted plan.
    /// Approved, the teammate gets its full tool set; rejected, it plans again, read-only. Either
    /// way the teammate is told with a message from the decider carrying the feedback.
    /// `not_found` for an unknown agent, `conflict` when it has no plan waiting.
    pub fn decide_plan(
        &mut self,
        actor: &Actor,
        agent: &str,
        approve: bool,
        feedback: Option<String>,
        now: Timestamp,
    ) -> Outcome<AgentInfo> {
        crate::require_privileged(actor, "decide plans")?;
        let feedback = feedback.filter(|f| !f.trim().is_empty());
        if feedback.as_ref().is_some_and(|f| f.len() > MAX_BODY_LEN) {
            return Err(bad_request(format!(
                "the feedback is limited to {MAX_BODY_LEN} bytes"
            )));
        }
        let Some(info) = self.agent(agent).map(|a| a.info.clone()) else {
            let valid: Vec<String> = self
                .agents
                .values()
                .filter(|a| a.info.plan.is_some())
                .map(|a| a.info.name.clone())
                .collect();
            return Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no agent {agent:?}"),
                json!({"agent": agent, "valid": valid}),
            ));
        };
        let state = info.plan.as_ref().map(|p| p.state);
        if state != Some(PlanState::Submitted) {
            let why = match state {
                None => "needs no plan approval (plan_required is not set for it)".to_string(),
                Some(PlanState::Planning) => "has not submitted a plan yet".to_string(),
                Some(s) => format!("has no plan waiting for a decision (its plan is {s})"),
            };
            return Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                format!("{agent} {why}"),
                json!({"agent": agent, "state": state}),
            ));
        }
        let by = actor.name().to_string();
        self.update_agent(agent, |a| {
            if let Some(p) = a.info.plan.as_mut() {
                p.state = if approve {
                    PlanState::Approved
                } else {
                    PlanState::Planning
                };
                p.feedback = feedback.clone();
                p.decided_by = Some(by.clone());
            }
        });
        self.record(
            agent,
            Event::PlanDecided {
                agent: agent.to_string(),
                approved: approve,
                feedback: feedback.clone(),
                by: by.clone(),
            },
            now,
        );
        let body = match (approve, &feedback) {
            (true, None) => {
                "Your plan was approved: you now have your full tool set. Go ahead.".to_string()
            }
            (true, Some(f)) => format!(
                "Your plan was approved: you now have your full tool set. Go ahead.\nFeedback: {f}"
            ),
            (false, None) => {
                "Your plan was rejected. You stay read-only: revise the plan and call \
                              submit_plan again."
                    .to_string()
            }
            (false, Some(f)) => format!(
                "Your plan was rejected. Feedback: {f}\nYou stay read-only: revise the plan and \
                 call submit_plan again."
            ),
        };
        let summary = if approve {
            "plan approved"
        } else {
            "plan rejected"
        };
        // A teammate that is down hears it when it is back: its plan state says it all.
        let _ = self.send(
            actor,
            agent,
            body,
            MessageKind::Text,
            Some(summary.to_string()),
            now,
        );
        self.agent(agent)
            .map(|a| a.info.clone())
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no agent {agent:?}")))
    }

    /// Whether `agent` may be asked permission for `tool` as far as its plan goes: refused
    /// (`conflict`) for a tool that changes the workspace while its plan is required and not
    /// approved (see `agent_team_perms::allowed_while_planning`).
    pub(crate) fn check_plan_allows(&self, agent: &str, tool: &str) -> Outcome<()> {
        let planning = self.agent(agent).is_some_and(|a| a.info.is_planning());
        if planning && !agent_team_perms::allowed_while_planning(tool) {
            return Err(ErrorBody::with_details(
                ErrorCode::Conflict,
                format!(
                    "{agent} may not run {tool} before its plan is approved: submit a plan with \
                     submit_plan and wait for the decision"
                ),
                json!({"agent": agent, "tool": tool}),
            ));
        }
        Ok(())
    }
}

/// A submitted plan is not empty and not over [`MAX_BODY_LEN`].
fn check_plan_text(plan: &str) -> Result<(), ErrorBody> {
    if plan.trim().is_empty() {
        return Err(bad_request("the plan is empty: say what you will do"));
    }
    if plan.len() > MAX_BODY_LEN {
        return Err(ErrorBody::with_details(
            ErrorCode::BadRequest,
            format!(
                "the plan has {} bytes; the limit is {MAX_BODY_LEN}",
                plan.len()
            ),
            json!({"field": "plan", "limit": MAX_BODY_LEN, "size": plan.len()}),
        ));
    }
    Ok(())
}

/// `name`'s plan as the leader's message quotes it: cut at [`QUOTED_PLAN_LEN`] bytes, saying
/// where the whole plan is.
fn quoted_plan(plan: String, name: &str) -> String {
    if plan.len() > QUOTED_PLAN_LEN {
        let mut end = QUOTED_PLAN_LEN;
        while !plan.is_char_boundary(end) {
            end -= 1;
        }
        format!(
            "{}\n[… the plan is {} bytes long: `agent-team plan show {name}` has it whole]",
            &plan[..end],
            plan.len()
        )
    } else {
        plan
    }
}
