//! The daemon's time, behind a trait so the supervisor's timers and restart policy are tested
//! with a clock the test moves by hand.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the core reads the time for its timers and its failure window.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The machine's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until told to move (tests).
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<Mutex<Instant>>);

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock(Arc::new(Mutex::new(Instant::now())))
    }
}

impl FakeClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.0.lock().map(|t| *t).unwrap_or_else(|_| Instant::now())
    }
}
