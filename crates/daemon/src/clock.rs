//! The daemon's time, behind a trait so the supervisor's timers and restart policy are tested
//! with a clock the test moves by hand.

use agent_team_protocol::Timestamp;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Where the core reads the time for its timers and its failure window, and the wall-clock
/// time it stamps on what it records.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> Instant;
    /// Now on the wall clock.
    fn wall(&self) -> Timestamp;
}

/// The longest wait a deadline is given: one year (what the team file allows at most).
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `now + after`, never overflowing: a wait longer than [`MAX_WAIT`] is cut to it (a stored
/// configuration older than the bound at load may still hold a huge value).
pub fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after.min(MAX_WAIT))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 60 * 60)))
        .unwrap_or(now)
}

/// The machine's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

/// A monotonic clock that stands still until told to move, and a wall clock ahead of the
/// machine's by as much as it was moved (tests).
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<Mutex<(Instant, Duration)>>);

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock(Arc::new(Mutex::new((Instant::now(), Duration::ZERO))))
    }
}

impl FakeClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            t.0 += by;
            t.1 += by;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.0
            .lock()
            .map(|t| t.0)
            .unwrap_or_else(|_| Instant::now())
    }
    fn wall(&self) -> Timestamp {
        let ahead = self.0.lock().map(|t| t.1).unwrap_or_default();
        Timestamp::from(SystemTime::now() + ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_wait_does_not_overflow() {
        let now = Instant::now();
        let d = deadline(now, Duration::from_secs(u64::MAX));
        assert_eq!(d, now + MAX_WAIT);
        assert_eq!(
            deadline(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
    }
}
