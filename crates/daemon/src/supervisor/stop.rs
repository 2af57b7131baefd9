//! Stopping an agent on a [`Step`]: kill, restart in place, the grace period, clean-up and
//! the tasks it held given back.

use super::*;

impl Step<'_> {
    /// `kill`: stop it for good; answered when it is down.
    pub(crate) fn kill_request(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        name: &str,
        reason: Option<String>,
    ) -> Result<Option<Reply>, ErrorBody> {
        self.check_managed(actor, name, "stop agents")?;
        let rt = self.sup.runtimes.entry(name.to_string()).or_default();
        rt.close_reason = reason.filter(|r| !r.trim().is_empty());
        rt.waiters.push(Waiter {
            conn,
            id,
            until: Until::Down,
        });
        self.begin_stop(name, StopReason::Operator);
        Ok(None)
    }

    /// `restart`: stop if running, then start a new incarnation in place; answered once connected.
    pub(crate) fn restart_request(
        &mut self,
        actor: &Actor,
        conn: ConnId,
        id: u64,
        name: &str,
    ) -> Result<Option<Reply>, ErrorBody> {
        self.check_managed(actor, name, "restart agents")?;
        self.restart_agent(name, Some((conn, id)))?;
        Ok(None)
    }

    pub(super) fn restart_agent(
        &mut self,
        name: &str,
        waiter: Option<(ConnId, u64)>,
    ) -> Result<(), ErrorBody> {
        self.backend()?;
        self.state.update_agent(name, |a| a.info.error = None);
        if self
            .state
            .agent(name)
            .is_some_and(|a| a.info.status.is_down())
        {
            // A shutdown request the stopped incarnation never read is not for the new one.
            let dropped = self.state.drop_stale_shutdowns(name);
            if dropped > 0 {
                tracing::info!(agent = %name, dropped, "dropped stale shutdown requests");
            }
        }
        let rt = self.sup.runtimes.entry(name.to_string()).or_default();
        rt.failures.clear();
        if let Some((conn, id)) = waiter {
            rt.waiters.push(Waiter {
                conn,
                id,
                until: Until::Connected,
            });
        }
        if rt.launched.is_some() || rt.busy {
            self.begin_stop(name, StopReason::Restart);
        } else {
            rt.stop = None;
            self.launch(name);
        }
        Ok(())
    }

    pub(super) fn check_managed(
        &self,
        actor: &Actor,
        name: &str,
        what: &str,
    ) -> Result<(), ErrorBody> {
        if !actor.is_privileged() {
            return Err(ErrorBody::with_details(
                ErrorCode::PermissionDenied,
                format!("only the leader or the operator may {what}"),
                json!({"agent": actor.name()}),
            ));
        }
        match self.state.agent(name) {
            None => Err(ErrorBody::with_details(
                ErrorCode::NotFound,
                format!("no agent {name:?}"),
                json!({"agent": name, "valid": self.state.agents().iter().map(|a| a.name.clone()).collect::<Vec<_>>()}),
            )),
            Some(a) if a.info.backend == "external" => Err(err(
                ErrorCode::InvalidState,
                format!("{name} is run by someone else; the daemon cannot stop or start it"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Stops `name` for `reason`; once down, [`Step::after_down`] decides what follows.
    pub(crate) fn begin_stop(&mut self, name: &str, reason: StopReason) {
        tracing::debug!(agent = name, ?reason, "stopping");
        let incarnation = self.current_incarnation(name).unwrap_or(0);
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.stop = Some(reason);
        if rt.busy {
            return; // the launch or stop in flight sees `stop` when it reports back
        }
        match rt.launched.clone() {
            Some(_) => self.stop_process(name, incarnation, KILL_GRACE),
            None => self.after_down(name, Some(reason), None),
        }
    }

    pub(super) fn stop_process(&mut self, name: &str, incarnation: u64, grace: Duration) {
        let Ok(backend) = self.backend() else { return };
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        let Some(target) = rt.launched.clone() else {
            return;
        };
        rt.busy = true;
        self.run(Job::Stop {
            name: name.to_string(),
            incarnation,
            target,
            grace,
            backend,
        });
    }

    pub(super) fn cleanup_group(&mut self, name: &str, incarnation: u64, launched: Launched) {
        let Ok(backend) = self.backend() else { return };
        self.run(Job::Cleanup {
            name: name.to_string(),
            incarnation,
            launched,
            backend,
        });
    }

    pub(super) fn on_stopped(&mut self, name: &str, incarnation: u64, result: Result<(), String>) {
        tracing::debug!(agent = name, incarnation, ?result, "stopped");
        if let Err(e) = &result {
            tracing::error!(agent = name, incarnation, "stop failed: {e}");
            self.state.record(
                "daemon",
                Event::Error {
                    message: format!("stopping {name} failed: {e}"),
                },
                self.sup.clock.wall(),
            );
        }
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        rt.busy = false;
        rt.launched = None;
        let reason = rt.stop;
        self.state.update_agent(name, |a| a.info.connected = false);
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        if reason.is_none() {
            // Stopped because it never connected: a failure for the restart policy.
            self.failure(name, "did not connect back".into(), true);
        } else {
            self.after_down(name, reason, None);
        }
    }

    /// Returns its task to the board and tells the leader, when `name` is down for good.
    pub(super) fn release_and_tell(&mut self, name: &str, what: &str) {
        if self.sup.stopping {
            return;
        }
        let now = self.sup.clock.wall();
        let released = self.state.release_held(name, now);
        if name == LEADER {
            return;
        }
        let leader_up = self
            .state
            .agent(LEADER)
            .is_some_and(|l| !l.info.status.is_down());
        if !leader_up {
            return;
        }
        let body = match &released {
            Some(t) => format!(
                "{name} {what}; its task {} ({}) went back to pending",
                t.id, t.title
            ),
            None => format!("{name} {what}"),
        };
        let _ = self.state.send(
            &Actor::Daemon,
            LEADER,
            body,
            MessageKind::TaskEvent,
            Some(format!("{name} is down")),
            now,
        );
    }

    pub(super) fn answer_down(&mut self, name: &str) {
        let Some(rt) = self.sup.runtimes.get_mut(name) else {
            return;
        };
        let waiters: Vec<Waiter> = rt.waiters.drain(..).collect();
        let Some(agent) = self.state.agent(name).map(|a| a.info.clone()) else {
            return;
        };
        for w in waiters {
            let outcome = match w.until {
                Until::Down => Ok(Reply::Agent {
                    agent: agent.clone(),
                }),
                Until::Connected => Err(ErrorBody::with_details(
                    ErrorCode::InvalidState,
                    format!(
                        "{name} is {} ({})",
                        agent.status,
                        agent.last_exit.clone().unwrap_or_default()
                    ),
                    json!({"agent": name, "status": agent.status}),
                )),
            };
            self.answer(w.conn, w.id, outcome);
        }
    }

    /// The grace after a shutdown request is over: stop it if it is still there.
    pub(crate) fn stop_grace_over(&mut self, name: &str, incarnation: u64) {
        if self.current_incarnation(name) != Some(incarnation) {
            return;
        }
        let reason = self
            .sup
            .runtimes
            .get(name)
            .and_then(|r| r.stop)
            .unwrap_or(StopReason::Shutdown);
        let running = self
            .sup
            .runtimes
            .get(name)
            .is_some_and(|r| r.launched.is_some() && !r.busy);
        if running {
            self.begin_stop(name, reason);
        }
    }
}
