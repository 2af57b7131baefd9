//! An agent that went away on a [`Step`]: exits, unreachable hosts, the restart policy and
//! failures.

use super::*;

impl Step<'_> {
    /// Process exits found by polling.
    pub(super) fn on_exit(&mut self, name: &str, incarnation: u64, exit: ExitInfo) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        let Some(launched) = rt.launched.take() else {
            return;
        };
        if rt.busy {
            // A stop is in flight; it reports the outcome.
            rt.launched = Some(launched);
            return;
        }
        let reason = rt.stop;
        tracing::info!(agent = name, incarnation, "exited: {exit}");
        self.state.update_agent(name, |a| {
            a.info.last_exit = Some(exit.to_string());
            a.info.connected = false;
        });
        // Whatever it left behind in its process group goes too.
        self.cleanup_group(name, incarnation, launched);
        self.after_down(name, reason, Some(exit));
    }

    /// A remote agent's host cannot be reached: `unreachable`, keeping its task for the team's
    /// `[ssh] grace_secs`; past it, its task goes back to the board and it is `failed`
    /// (unreachable). Its processes there are stopped once the host answers again (the remote
    /// backend keeps the stop until then).
    pub(super) fn on_unreachable(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) || self.sup.stopping {
            return;
        }
        let now = self.sup.clock.now();
        let grace = Duration::from_secs(self.sup.config.as_ref().map_or(300, |c| c.ssh.grace_secs));
        let host = self
            .state
            .agent(name)
            .and_then(|a| a.info.host.clone())
            .unwrap_or_default();
        let Some(status) = self.state.agent(name).map(|a| a.info.status) else {
            return;
        };
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        if rt.busy || rt.launched.is_none() {
            return;
        }
        // A new episode unless the last one is still on (the worker itself may have said it
        // is idle or running since its link came back).
        let ongoing = rt
            .unreachable
            .filter(|_| status == AgentStatus::Unreachable);
        let since = match ongoing {
            Some((since, _)) => since,
            None => {
                rt.unreachable = Some((now, status));
                tracing::warn!(agent = name, host = %host, "host unreachable; keeping its task for {grace:?}");
                self.state.set_agent_status(
                    name,
                    AgentStatus::Unreachable,
                    Some(format!("host {host} unreachable")),
                    self.sup.clock.wall(),
                );
                now
            }
        };
        if now.duration_since(since) < grace {
            return;
        }
        // The grace period is over: the work goes back to the board, the member is failed.
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.unreachable = None;
        let launched = rt.launched.take();
        tracing::warn!(agent = name, host = %host, "unreachable for {grace:?}: failed");
        self.state.update_agent(name, |a| {
            a.info.last_exit = Some("unreachable".into());
            a.info.connected = false;
        });
        self.state.set_agent_status(
            name,
            AgentStatus::Failed,
            Some(format!("host {host} unreachable for {} s", grace.as_secs())),
            self.sup.clock.wall(),
        );
        self.release_and_tell(name, &format!("is unreachable on {host}"));
        if let Some(l) = launched {
            // Stopped there as soon as the host answers (the remote backend retries).
            self.cleanup_group(name, incarnation, l);
        }
    }

    /// A remote agent found alive: if its host was unreachable, it is back as it was.
    pub(super) fn on_reachable(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let Some((_, before)) = self
            .sup
            .runtimes
            .get_mut(name)
            .and_then(|rt| rt.unreachable.take())
        else {
            return;
        };
        if self
            .state
            .agent(name)
            .is_some_and(|a| a.info.status == AgentStatus::Unreachable)
        {
            tracing::info!(agent = name, "host reachable again");
            self.state.set_agent_status(
                name,
                before,
                Some("host reachable again".into()),
                self.sup.clock.wall(),
            );
        }
    }

    /// Decides what follows a process ending, given why it was stopped (if it was).
    pub(super) fn after_down(
        &mut self,
        name: &str,
        reason: Option<StopReason>,
        exit: Option<ExitInfo>,
    ) {
        // Its model gateway token is refused from now on (issue 65; a relaunch gets a new one).
        if let Some(gw) = self.sup.gateways.as_deref() {
            gw.forget(name);
        }
        // A first member of a staggered start gone before its answer holds nobody back.
        self.first_answered(name);
        let finished_run = self
            .sup
            .runtimes
            .get_mut(name)
            .is_some_and(|rt| std::mem::take(&mut rt.finished_run));
        let now = self.sup.clock.wall();
        let detail = exit.map(|e| e.to_string());
        let run_over = matches!(
            self.state.run().state,
            RunState::Finished | RunState::Failed
        );
        match reason {
            Some(StopReason::Restart) => {
                if let Some(rt) = self.sup.runtimes.get_mut(name) {
                    rt.stop = None;
                }
                self.launch(name);
            }
            Some(StopReason::Operator) | Some(StopReason::Shutdown) => {
                let why = self
                    .sup
                    .runtimes
                    .get_mut(name)
                    .and_then(|r| r.close_reason.take());
                let (detail, what) = match &why {
                    Some(r) => (Some(format!("closed: {r}")), format!("was closed ({r})")),
                    None => (detail, "was stopped".to_string()),
                };
                self.state
                    .set_agent_status(name, AgentStatus::Stopped, detail, now);
                self.release_and_tell(name, &what);
                self.answer_down(name);
            }
            Some(StopReason::Budget) => self.budget_stopped(name, now),
            Some(StopReason::Finished) => {
                self.state
                    .set_agent_status(name, AgentStatus::Exited, detail, now);
                self.answer_down(name);
            }
            None => {
                use crate::policy::AfterExit;
                let decision = crate::policy::after_exit(
                    self.restart_policy(name),
                    exit,
                    self.sup.stopping,
                    run_over,
                    name == LEADER,
                );
                match decision {
                    AfterExit::Restart => self.failure(
                        name,
                        format!("died ({})", detail.clone().unwrap_or_else(|| "gone".into())),
                        false,
                    ),
                    AfterExit::Exited => {
                        self.state
                            .set_agent_status(name, AgentStatus::Exited, detail, now);
                        self.release_and_tell(name, "exited");
                        self.answer_down(name);
                        if name == LEADER && !run_over && !self.sup.stopping {
                            if finished_run {
                                // The leader of the run before, ending as it does after its
                                // `finish`, once this run had started (a session's next
                                // message came first): it comes back for this one.
                                if let Err(e) = self.restart_agent(LEADER, None) {
                                    self.state.fail_run(
                                        format!("the leader cannot start again: {}", e.message),
                                        now,
                                    );
                                }
                            } else {
                                // Nobody is left to finish the run; say so rather than leave
                                // `run` waiting for ever.
                                self.state
                                    .fail_run("the leader exited without finishing".into(), now);
                            }
                        }
                    }
                    AfterExit::Failed if crate::policy::is_budget_stop(exit) => {
                        self.budget_stopped(name, now)
                    }
                    AfterExit::Failed => {
                        self.state
                            .set_agent_status(name, AgentStatus::Failed, detail.clone(), now);
                        self.release_and_tell(
                            name,
                            &format!(
                                "died ({}) and will not be restarted",
                                detail.unwrap_or_default()
                            ),
                        );
                        self.answer_down(name);
                        if name == LEADER {
                            self.state.fail_run("the leader failed".into(), now);
                        }
                    }
                }
            }
        }
    }

    /// An agent stopped before a model request because its role's or the team's budget is
    /// spent: `failed` with `last_exit = "budget"` (`ps` shows `failed: budget`), not restarted,
    /// and the leader is told how to let it go on.
    fn budget_stopped(&mut self, name: &str, now: Timestamp) {
        let why = self
            .state
            .budget_stop(name, &self.sup.budgets())
            .unwrap_or_else(|| "its budget is spent".into());
        self.state.update_agent(name, |a| {
            a.info.last_exit = Some("budget".into());
            a.info.error = Some(format!("budget: {why}"));
        });
        self.state.set_agent_status(
            name,
            AgentStatus::Failed,
            Some(format!("budget: {why}")),
            now,
        );
        let role = self
            .state
            .agent(name)
            .map(|a| a.info.role.clone())
            .unwrap_or_default();
        let raise = if why.contains("of the team") {
            "agent-team budget set --tokens N".to_string()
        } else {
            format!("agent-team budget set --role {role} --tokens N")
        };
        self.release_and_tell(
            name,
            &format!(
                "stopped before its next model request: {why}. It is not restarted; the operator \
                 can raise the budget (`{raise}`) and `agent-team restart {name}`"
            ),
        );
        self.answer_down(name);
        if name == LEADER {
            self.state
                .fail_run(format!("the leader stopped: {why}"), now);
        }
    }

    fn restart_policy(&self, name: &str) -> RestartPolicy {
        let role = self
            .state
            .agent(name)
            .map(|a| a.info.role.clone())
            .unwrap_or_default();
        self.sup
            .config
            .as_ref()
            .and_then(|c| c.role(&role))
            .map(|r| r.restart)
            .unwrap_or_default()
    }

    /// Counts a failure: back off and restart, or give up after too many quick ones. A first
    /// spawn that could not be launched or never connected back is rolled back instead
    /// (`rollback`); one that started and exited goes through the restart policy, so a
    /// crash-looping agent ends `failed` and stays on the roster for `restart`.
    pub(super) fn failure(&mut self, name: &str, why: String, rollback: bool) {
        let now = self.sup.clock.wall();
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        if rt.first_spawn && rollback {
            let waiters: Vec<Waiter> = rt.waiters.drain(..).collect();
            self.sup.runtimes.remove(name);
            self.state.remove_agent(name, &why, now);
            for w in waiters {
                self.answer(
                    w.conn,
                    w.id,
                    Err(ErrorBody::with_details(
                        ErrorCode::Internal,
                        format!("{name} {why}; it was removed from the roster"),
                        json!({"agent": name}),
                    )),
                );
            }
            if name == LEADER {
                self.state.fail_run(format!("the leader {why}"), now);
            }
            return;
        }
        let verdict = rt.failures.record(self.sup.clock.now());
        let incarnation = self.current_incarnation(name).unwrap_or(0);
        let backoff = match verdict {
            crate::policy::Verdict::GiveUp { n } => {
                self.state.set_agent_status(
                    name,
                    AgentStatus::Failed,
                    Some(format!("{why}; {n} failures within 60 s")),
                    now,
                );
                self.release_and_tell(
                    name,
                    &format!("{why} {n} times within 60 s and was given up"),
                );
                self.answer_down(name);
                if name == LEADER {
                    self.state.fail_run("the leader kept failing".into(), now);
                }
                return;
            }
            crate::policy::Verdict::Restart { after, .. } => after,
        };
        self.state.update_agent(name, |a| a.info.restarts += 1);
        self.state.set_agent_status(
            name,
            AgentStatus::Backoff,
            Some(format!("{why}; restarting in {} ms", backoff.as_millis())),
            now,
        );
        self.schedule(backoff, SupTimer::Restart(name.to_string(), incarnation));
    }

    /// The backoff of `name` is over.
    pub(crate) fn restart_due(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) || self.sup.stopping {
            return;
        }
        let status = self.state.agent(name).map(|a| a.info.status);
        let idle_rt = self
            .sup
            .runtimes
            .get(name)
            .is_some_and(|r| r.launched.is_none() && !r.busy);
        if matches!(status, Some(AgentStatus::Backoff | AgentStatus::Starting)) && idle_rt {
            self.launch(name);
        }
    }
}
