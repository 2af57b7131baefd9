//! Permission requests (SPEC §5.4): raised by agents, answered once by the operator or the
//! leader, a team rule when allowed "always", and an audit trail in the event log.

use crate::{Actor, Change, Outcome, TeamState, bad_request};
use agent_team_protocol::*;
use serde_json::json;

/// Why `pattern` cannot become a team rule for a request with `input`.
fn pattern_refusal(pattern: &str, tool: &str, input: &str) -> String {
    let exact = "allow it always without a pattern to allow exactly this input";
    if tool == agent_team_perms::SHELL_TOOL
        && let Some(h) = agent_team_perms::hazard(input)
    {
        format!("no pattern allows a command with {h}; {exact}")
    } else if let Some(f) = agent_team_perms::protected_write(tool, input) {
        format!("no pattern allows a call that {f}; {exact}")
    } else {
        format!("the pattern {pattern:?} does not match the request's input {input:?}")
    }
}

impl TeamState {
    /// Raises a permission request for the calling agent. A matching team rule allows it at once.
    pub fn perm_request(
        &mut self,
        actor: &Actor,
        tool: String,
        input: String,
        reason: String,
        now: Timestamp,
    ) -> Outcome<PermRequest> {
        let Some(agent) = actor.agent().map(str::to_string) else {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "only an agent asks for permission",
            ));
        };
        if tool.is_empty() || tool.len() > 128 {
            return Err(bad_request(
                "a permission request needs a tool name of 1-128 bytes",
            ));
        }
        if input.len() > MAX_BODY_LEN || reason.len() > MAX_BODY_LEN {
            return Err(bad_request(format!(
                "permission input and reason are limited to {MAX_BODY_LEN} bytes"
            )));
        }
        self.check_plan_allows(&agent, &tool)?;
        let id = self.next_perm_id;
        self.next_perm_id += 1;
        let rule = self.rules.iter().find(|r| r.allows(&tool, &input)).cloned();
        let mut req = PermRequest {
            id,
            agent: agent.clone(),
            tool,
            input,
            reason,
            ts: now,
            status: PermStatus::Pending,
            decision: None,
        };
        self.record(
            &agent,
            Event::PermissionRequested {
                request: req.clone(),
            },
            now,
        );
        if let Some(rule) = rule {
            req.status = PermStatus::Allowed;
            req.decision = Some(PermDecision {
                allow: true,
                always: true,
                by: "rule".into(),
                reason: Some(format!("team rule from request {}", rule.from_request)),
                ts: now,
            });
            self.record(
                &agent,
                Event::PermissionDecided {
                    request: req.clone(),
                },
                now,
            );
        }
        self.changes.push(Change::Perm(req.clone()));
        self.perms.insert(id, req.clone());
        Ok(req)
    }

    /// Permission requests: pending ones, or all of them.
    pub fn perms(&self, all: bool) -> Vec<PermRequest> {
        self.perms
            .values()
            .filter(|p| all || p.status == PermStatus::Pending)
            .cloned()
            .collect()
    }

    /// One permission request.
    pub fn perm(&self, id: u64) -> Option<&PermRequest> {
        self.perms.get(&id)
    }

    /// Decides a pending request once. `always` turns an allowance into a team rule (for
    /// `pattern`, default the exact input) and resolves every other pending request it matches.
    /// Returns every request resolved by this decision, the decided one first.
    #[allow(clippy::too_many_arguments)]
    pub fn perm_decide(
        &mut self,
        actor: &Actor,
        id: u64,
        allow: bool,
        always: bool,
        pattern: Option<String>,
        reason: Option<String>,
        now: Timestamp,
    ) -> Outcome<Vec<PermRequest>> {
        crate::require_privileged(actor, "decide permission requests")?;
        let req = self.perms.get(&id).ok_or_else(|| {
            ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no permission request {id}"),
                json!({"request": id}),
            )
        })?;
        if req.status == PermStatus::Void {
            let why = req
                .decision
                .as_ref()
                .and_then(|d| d.reason.clone())
                .unwrap_or_else(|| "gone".into());
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!(
                    "request {id} is void: its requester {} is gone ({why})",
                    req.agent
                ),
                json!({"request": id, "status": req.status, "agent": req.agent}),
            ));
        }
        if req.status != PermStatus::Pending {
            return Err(ErrorBody::with_details(
                ErrorCode::InvalidState,
                format!("permission request {id} was already decided"),
                json!({"request": id, "status": req.status}),
            ));
        }
        let tool = req.tool.clone();
        let input = req.input.clone();
        if let Some(p) = &pattern {
            if !(always && allow) {
                return Err(bad_request("a pattern is only for allowing always"));
            }
            if !agent_team_perms::rule_allows(p, true, &tool, &input) {
                return Err(ErrorBody::with_details(
                    ErrorCode::BadRequest,
                    pattern_refusal(p, &tool, &input),
                    json!({"pattern": p, "input": input}),
                ));
            }
        }
        let decision = PermDecision {
            allow,
            always: always && allow,
            by: actor.name().to_string(),
            reason,
            ts: now,
        };
        let mut resolved = vec![self.resolve(id, decision.clone(), now)];
        if always && allow {
            let rule = PermRule {
                tool: tool.clone(),
                glob: pattern.is_some(),
                input: pattern.unwrap_or(input),
                from_request: id,
            };
            self.rules.push(rule.clone());
            self.changes.push(Change::Rule(rule.clone()));
            let others: Vec<u64> = self
                .perms
                .values()
                .filter(|p| p.status == PermStatus::Pending && rule.allows(&p.tool, &p.input))
                .map(|p| p.id)
                .collect();
            for other in others {
                let d = PermDecision {
                    allow: true,
                    always: true,
                    by: "rule".into(),
                    reason: Some(format!("team rule from request {id}")),
                    ts: now,
                };
                resolved.push(self.resolve(other, d, now));
            }
        }
        Ok(resolved.into_iter().flatten().collect())
    }

    /// Denies a pending request for a reason that is not a person's decision (timeout, the
    /// approver vanished, the requester died). Does nothing if it is no longer pending.
    pub fn perm_expire(
        &mut self,
        id: u64,
        by: &str,
        reason: String,
        now: Timestamp,
    ) -> Option<PermRequest> {
        if self.perms.get(&id)?.status != PermStatus::Pending {
            return None;
        }
        let d = PermDecision {
            allow: false,
            always: false,
            by: by.to_string(),
            reason: Some(reason),
            ts: now,
        };
        self.resolve(id, d, now)
    }

    /// Voids every pending request of `agent`, whose process is gone (`why`: how it went,
    /// e.g. `stopped: killed by the operator`): nobody waits for their answers, so an approval
    /// now would allow nothing. Returns the requests it voided.
    pub fn perm_void_for(&mut self, agent: &str, why: &str, now: Timestamp) -> Vec<PermRequest> {
        let ids: Vec<u64> = self
            .perms
            .values()
            .filter(|p| p.status == PermStatus::Pending && p.agent == agent)
            .map(|p| p.id)
            .collect();
        let mut voided = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(req) = self.perms.get_mut(&id) else {
                continue;
            };
            req.status = PermStatus::Void;
            req.decision = Some(PermDecision {
                allow: false,
                always: false,
                by: "requester-gone".into(),
                reason: Some(why.to_string()),
                ts: now,
            });
            let req = req.clone();
            self.changes.push(Change::Perm(req.clone()));
            self.record(
                agent,
                Event::PermissionDecided {
                    request: req.clone(),
                },
                now,
            );
            voided.push(req);
        }
        voided
    }

    /// The team rules.
    pub fn rules(&self) -> &[PermRule] {
        &self.rules
    }

    fn resolve(&mut self, id: u64, decision: PermDecision, now: Timestamp) -> Option<PermRequest> {
        let req = self.perms.get_mut(&id)?;
        req.status = if decision.allow {
            PermStatus::Allowed
        } else {
            PermStatus::Denied
        };
        req.decision = Some(decision);
        let req = req.clone();
        self.changes.push(Change::Perm(req.clone()));
        self.record(
            &req.agent.clone(),
            Event::PermissionDecided {
                request: req.clone(),
            },
            now,
        );
        Some(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ask(s: &mut TeamState, tool: &str, input: &str) -> PermRequest {
        let b1 = Actor::Agent("b1".into());
        s.perm_request(&b1, tool.into(), input.into(), "".into(), Timestamp(1))
            .unwrap()
    }

    fn always(s: &mut TeamState, id: u64, pattern: &str) -> Result<Vec<PermRequest>, ErrorBody> {
        let p = Some(pattern.to_string());
        s.perm_decide(&Actor::Operator, id, true, true, p, None, Timestamp(2))
    }

    /// Issue 12, finding 2, for "allow always" rules: a pattern rule is read like a role's.
    #[test]
    fn a_pattern_rule_holds_at_word_boundaries_hazards_and_protected_paths() {
        let mut s = TeamState::new("t");
        let r = ask(&mut s, "bash", "git status -s");
        always(&mut s, r.id, "git status*").unwrap();
        assert_eq!(
            ask(&mut s, "bash", "git status").status,
            PermStatus::Allowed
        );
        for pending in [
            "git statusfoo",
            "git status > notes",
            "git status $(id)",
            "git\u{a0}status",
        ] {
            assert_eq!(
                ask(&mut s, "bash", pending).status,
                PermStatus::Pending,
                "{pending:?}"
            );
        }
        let r = ask(&mut s, "write_file", "src/a.rs");
        always(&mut s, r.id, "*").unwrap();
        assert_eq!(
            ask(&mut s, "write_file", "src/b.rs").status,
            PermStatus::Allowed
        );
        assert_eq!(
            ask(&mut s, "write_file", ".git/config").status,
            PermStatus::Pending
        );
    }

    #[test]
    fn a_pattern_that_could_never_cover_its_request_is_refused_with_the_reason() {
        let mut s = TeamState::new("t");
        let r = ask(&mut s, "bash", "echo x > out.txt");
        let e = always(&mut s, r.id, "echo *").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("redirection"), "{}", e.message);
        let r = ask(&mut s, "edit_file", ".agent-team/agents/b.md");
        let e = always(&mut s, r.id, "*").unwrap_err();
        assert!(e.message.contains("protected"), "{}", e.message);
        // Without a pattern, exactly the input becomes the rule.
        s.perm_decide(&Actor::Operator, r.id, true, true, None, None, Timestamp(3))
            .unwrap();
        assert_eq!(
            ask(&mut s, "edit_file", ".agent-team/agents/b.md").status,
            PermStatus::Allowed
        );
    }
}
