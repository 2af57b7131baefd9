//! The restart policy (SPEC §5.1) as pure functions: whether an agent that ended is started
//! again, how long it waits first, and when it is given up as `failed`. No clock of its own and
//! no I/O: the supervisor passes the time in.

use agent_team_config::RestartPolicy;
use agent_team_pane::ExitInfo;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window in which failures count as quick.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Quick failures after which an agent is `failed`.
pub const MAX_QUICK_FAILURES: usize = 5;
/// The exit code (EX_CONFIG) of an agent whose configuration is wrong: restarting cannot help.
pub const EXIT_CONFIG: i32 = 78;
/// The exit code of an agent that stopped because its role's or the team's budget is spent:
/// restarting cannot help until the budget is raised (`failed: budget`).
pub const EXIT_BUDGET: i32 = 79;

/// Whether an exit is an agent stopping for a spent budget.
pub fn is_budget_stop(exit: Option<ExitInfo>) -> bool {
    exit.is_some_and(|e| e.code == Some(EXIT_BUDGET))
}

/// The wait before the `n`-th restart within the window (1-based): 0.5 s, 1 s, 2 s, … ≤ 30 s.
pub fn backoff(n: usize) -> Duration {
    agent_team_backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
        .delay_for(u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after this wait; it is the `n`-th quick failure.
    Restart {
        /// The wait.
        after: Duration,
        /// How many quick failures the window holds now.
        n: usize,
    },
    /// Too many quick failures: it is `failed` until someone restarts it.
    GiveUp {
        /// How many quick failures the window holds.
        n: usize,
    },
}

/// The recent failures of one agent.
#[derive(Debug, Default, Clone)]
pub struct Failures(VecDeque<Instant>);

impl Failures {
    /// Counts a failure at `now` and says what follows.
    pub fn record(&mut self, now: Instant) -> Verdict {
        self.0.push_back(now);
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > FAILURE_WINDOW)
        {
            self.0.pop_front();
        }
        let n = self.0.len();
        if n >= MAX_QUICK_FAILURES {
            Verdict::GiveUp { n }
        } else {
            Verdict::Restart {
                after: backoff(n),
                n,
            }
        }
    }

    /// Forgets them (a manual restart gives the agent a clean slate).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// How an agent that ended on its own (not stopped by anyone) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// A failure for the restart policy: back off and start it again.
    Restart,
    /// It is done (`exited`).
    Exited,
    /// It failed and is not started again (`failed`).
    Failed,
}

/// Decides what follows an agent's own end.
pub fn after_exit(
    policy: RestartPolicy,
    exit: Option<ExitInfo>,
    team_stopping: bool,
    run_over: bool,
    is_leader: bool,
) -> AfterExit {
    let clean = exit.is_some_and(|e| e.success());
    let config_error = exit.is_some_and(|e| e.code == Some(EXIT_CONFIG)) || is_budget_stop(exit);
    let restart = !(team_stopping || run_over && clean || config_error)
        && match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !clean,
            RestartPolicy::Always => !(is_leader && run_over),
        };
    if restart {
        AfterExit::Restart
    } else if clean {
        AfterExit::Exited
    } else {
        AfterExit::Failed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn code(c: i32) -> Option<ExitInfo> {
        Some(ExitInfo {
            code: Some(c),
            signal: None,
        })
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_thirty() {
        let waits: Vec<u128> = (1..=9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn five_quick_failures_give_up_and_old_ones_age_out() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        for n in 1..5 {
            assert_eq!(
                f.record(t0 + Duration::from_secs(n)),
                Verdict::Restart {
                    after: backoff(n as usize),
                    n: n as usize
                }
            );
        }
        assert_eq!(
            f.record(t0 + Duration::from_secs(5)),
            Verdict::GiveUp { n: 5 }
        );
        // Spread out over more than the window, failures never pile up to five.
        let mut f = Failures::default();
        for i in 0..20u64 {
            let v = f.record(t0 + Duration::from_secs(i * 16));
            assert!(
                matches!(v, Verdict::Restart { n, .. } if n <= 4),
                "{i}: {v:?}"
            );
        }
        f.clear();
        assert_eq!(
            f.record(t0 + Duration::from_secs(1000)),
            Verdict::Restart {
                after: backoff(1),
                n: 1
            }
        );
    }

    #[test]
    fn exits_by_policy() {
        use AfterExit::*;
        use RestartPolicy::*;
        assert_eq!(after_exit(OnFailure, code(1), false, false, false), Restart);
        assert_eq!(after_exit(OnFailure, code(0), false, false, false), Exited);
        assert_eq!(after_exit(Never, code(1), false, false, false), Failed);
        assert_eq!(after_exit(Always, code(0), false, false, false), Restart);
        // A bad key or model: never restarted, whatever the policy.
        assert_eq!(
            after_exit(Always, code(EXIT_CONFIG), false, false, false),
            Failed
        );
        // Nothing restarts while the team stops; a clean end after the run is just an end.
        assert_eq!(after_exit(Always, code(1), true, false, false), Failed);
        assert_eq!(after_exit(Always, code(0), false, true, false), Exited);
        assert_eq!(after_exit(Always, code(1), false, true, true), Failed);
        // Killed by a signal (no code) counts as a failure.
        let sig = Some(ExitInfo {
            code: None,
            signal: Some(9),
        });
        assert_eq!(after_exit(OnFailure, sig, false, false, false), Restart);
    }
}
