//! The one backoff rule shared by every retry loop outside the daemon's supervisor (the client's
//! autostart, the worker's reconnects, the model's HTTP retries, the CLI's retries after a lost
//! daemon): delays that start at a base, grow by a factor up to a cap, may be shortened by
//! jitter drawn from an injectable source, and stop after a number of retries or at a deadline.
//! A delay the server asked for (`Retry-After`) takes the place of the computed one.
//!
//! Pure: nothing here sleeps or reads a clock except [`Iterator::next`], which is
//! [`Backoff::next_at`] at `Instant::now()`. Callers sleep the delays they are given.

use std::time::{Duration, Instant};

/// A source of numbers in `[0, 1)` for jitter (a fixed sequence in tests).
pub type Random = Box<dyn FnMut() -> f64 + Send>;

/// The delays before successive retries: `base`, `base·factor`, `base·factor²`, … up to `cap`,
/// each shortened by up to `jitter` of itself, until `max_retries` delays were handed out or the
/// deadline is reached. The last delay before a deadline is cut so the final try happens at it.
pub struct Backoff {
    base: Duration,
    factor: u32,
    cap: Duration,
    jitter: f64,
    random: Option<Random>,
    max_retries: Option<u32>,
    deadline: Option<Instant>,
    retries: u32,
    next: Duration,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("base", &self.base)
            .field("factor", &self.factor)
            .field("cap", &self.cap)
            .field("jitter", &self.jitter)
            .field("max_retries", &self.max_retries)
            .field("deadline", &self.deadline)
            .field("retries", &self.retries)
            .field("next", &self.next)
            .finish()
    }
}

impl Backoff {
    /// Delays from `base`, doubling, never above `cap`; no jitter, no limit.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let cap = cap.max(base);
        Backoff {
            base,
            factor: 2,
            cap,
            jitter: 0.0,
            random: None,
            max_retries: None,
            deadline: None,
            retries: 0,
            next: base,
        }
    }

    /// The same delay every time.
    pub fn constant(delay: Duration) -> Self {
        Self::new(delay, delay).factor(1)
    }

    /// Each delay is the previous one times `factor` (1 keeps it constant; 0 counts as 1).
    pub fn factor(mut self, factor: u32) -> Self {
        self.factor = factor.max(1);
        self
    }

    /// Shortens each computed delay by a random part of up to `fraction` of it (0 to 1), so
    /// clients that failed together do not retry together. Draws from a per-process
    /// pseudo-random source; see [`Backoff::jitter_from`] to inject one.
    pub fn jitter(self, fraction: f64) -> Self {
        self.jitter_from(fraction, default_random())
    }

    /// [`Backoff::jitter`] with numbers in `[0, 1)` from `random`.
    pub fn jitter_from(mut self, fraction: f64, random: Random) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.random = Some(random);
        self
    }

    /// Hands out at most `n` delays: the first try and `n` retries.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Hands out no delay at or after `at`, and cuts the last one to end at `at`.
    pub fn deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(at);
        self
    }

    /// How many delays were handed out since the start or the last [`Backoff::reset`].
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Starts the sequence again from `base` (after a success); the deadline stays.
    pub fn reset(&mut self) {
        self.retries = 0;
        self.next = self.base;
    }

    /// The delay before retry number `n` (1-based) as configured, without jitter, limits or
    /// state: for a caller that counts its failures itself (a restart policy counting the
    /// failures in a window).
    pub fn delay_for(&self, n: u32) -> Duration {
        let mut d = self.base;
        for _ in 1..n {
            if d >= self.cap || self.factor == 1 {
                break;
            }
            d = d.checked_mul(self.factor).unwrap_or(self.cap).min(self.cap);
        }
        d.min(self.cap)
    }

    /// The delay before the next retry, if one is allowed at `now`.
    pub fn next_at(&mut self, now: Instant) -> Option<Duration> {
        self.next_after(now, None)
    }

    /// Like [`Backoff::next_at`], but a delay the server asked for (`Retry-After`) replaces the
    /// computed one, capped like it and without jitter (the server said when). The sequence
    /// advances either way, so a later computed delay is where it would have been.
    pub fn next_after(&mut self, now: Instant, server: Option<Duration>) -> Option<Duration> {
        if self.max_retries.is_some_and(|n| self.retries >= n) {
            return None;
        }
        let left = match self.deadline {
            Some(at) if now >= at => return None,
            Some(at) => Some(at - now),
            None => None,
        };
        let computed = self.next;
        self.next = computed
            .checked_mul(self.factor)
            .unwrap_or(self.cap)
            .min(self.cap);
        self.retries += 1;
        let delay = match server {
            Some(d) => d.min(self.cap),
            None => self.jittered(computed),
        };
        Some(match left {
            Some(left) => delay.min(left),
            None => delay,
        })
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        match self.random.as_mut() {
            Some(random) if self.jitter > 0.0 => {
                let r = random();
                let r = if r.is_finite() {
                    r.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                d.mul_f64(1.0 - self.jitter * r)
            }
            _ => d,
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    /// The next delay as of now; `None` once the retries or the time are spent.
    fn next(&mut self) -> Option<Duration> {
        self.next_at(Instant::now())
    }
}

/// A xorshift generator seeded from the standard library's per-process random hash keys:
/// enough to spread retries apart, and no dependency.
fn default_random() -> Random {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    let mut state = h.finish() | 1;
    Box::new(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn seq(b: &mut Backoff, now: Instant, n: usize) -> Vec<Option<Duration>> {
        (0..n).map(|_| b.next_at(now)).collect()
    }

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap() {
        let now = Instant::now();
        let mut b = Backoff::new(200 * MS, 1000 * MS);
        assert_eq!(
            seq(&mut b, now, 5),
            [200, 400, 800, 1000, 1000].map(|m| Some(m * MS))
        );
        let mut b = Backoff::new(MS, 50 * MS).factor(3);
        assert_eq!(seq(&mut b, now, 5), [1, 3, 9, 27, 50].map(|m| Some(m * MS)));
        let mut c = Backoff::constant(50 * MS);
        assert_eq!(seq(&mut c, now, 3), [Some(50 * MS); 3]);
        assert_eq!(c.retries(), 3);
    }

    #[test]
    fn the_nth_delay_matches_the_sequence() {
        let now = Instant::now();
        let b = Backoff::new(500 * MS, 30_000 * MS);
        let mut seq_b = Backoff::new(500 * MS, 30_000 * MS);
        for n in 1..=12 {
            assert_eq!(Some(b.delay_for(n)), seq_b.next_at(now), "retry {n}");
        }
        assert_eq!(b.delay_for(0), 500 * MS);
        assert_eq!(b.delay_for(u32::MAX), 30_000 * MS);
        let flat = Backoff::new(MS, 1000 * MS).factor(1);
        assert_eq!(flat.delay_for(u32::MAX), MS);
    }

    #[test]
    fn huge_sequences_saturate_at_the_cap() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let last = seq(&mut b, now, 200).pop().unwrap();
        assert_eq!(last, Some(Duration::from_secs(30)));
    }

    #[test]
    fn max_retries_ends_the_sequence_and_reset_starts_it_again() {
        let now = Instant::now();
        let mut b = Backoff::new(2000 * MS, Duration::from_secs(60)).max_retries(2);
        assert_eq!(
            seq(&mut b, now, 3),
            [Some(2000 * MS), Some(4000 * MS), None]
        );
        b.reset();
        assert_eq!(b.retries(), 0);
        assert_eq!(b.next_at(now), Some(2000 * MS));
    }

    #[test]
    fn the_deadline_ends_the_sequence_and_cuts_the_last_delay() {
        let start = Instant::now();
        let mut b = Backoff::new(100 * MS, 100 * MS).deadline(start + 250 * MS);
        assert_eq!(b.next_at(start), Some(100 * MS));
        assert_eq!(b.next_at(start + 100 * MS), Some(100 * MS));
        // 50 ms are left: the last try happens at the deadline, not after it.
        assert_eq!(b.next_at(start + 200 * MS), Some(50 * MS));
        assert_eq!(b.next_at(start + 250 * MS), None);
        assert_eq!(b.next_at(start + 300 * MS), None);
    }

    #[test]
    fn jitter_shortens_by_up_to_its_fraction_from_the_injected_source() {
        let now = Instant::now();
        let draws = [0.0, 0.5, 0.999_999];
        let mut i = 0;
        let mut b = Backoff::constant(1000 * MS).jitter_from(
            0.5,
            Box::new(move || {
                let r = draws[i % draws.len()];
                i += 1;
                r
            }),
        );
        let got: Vec<Duration> = seq(&mut b, now, 3)
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(got[0], 1000 * MS);
        assert_eq!(got[1], 750 * MS);
        assert!(got[2] > 499 * MS && got[2] <= 501 * MS, "{got:?}");
        // A broken source cannot lengthen or negate a delay.
        let mut b = Backoff::constant(1000 * MS).jitter_from(2.0, Box::new(|| 7.0));
        assert_eq!(b.next_at(now), Some(Duration::ZERO));
        let mut b = Backoff::constant(1000 * MS).jitter_from(0.5, Box::new(|| f64::NAN));
        assert_eq!(b.next_at(now), Some(1000 * MS));
    }

    #[test]
    fn the_default_source_stays_within_the_fraction() {
        let now = Instant::now();
        let mut b = Backoff::constant(1000 * MS).jitter(0.25);
        for _ in 0..1000 {
            let d = b.next_at(now).unwrap();
            assert!(d > 749 * MS && d <= 1000 * MS, "{d:?}");
        }
    }

    #[test]
    fn a_server_delay_replaces_the_computed_one_capped_and_within_the_deadline() {
        let start = Instant::now();
        let mut b = Backoff::new(200 * MS, 30_000 * MS)
            .jitter_from(0.5, Box::new(|| 0.5))
            .max_retries(4);
        assert_eq!(b.next_after(start, Some(2000 * MS)), Some(2000 * MS));
        // The sequence moved on: the next computed delay is the second one (400 ms, jittered).
        assert_eq!(b.next_after(start, None), Some(300 * MS));
        assert_eq!(
            b.next_after(start, Some(Duration::from_secs(3600))),
            Some(30_000 * MS)
        );
        assert_eq!(b.next_after(start, Some(MS)), Some(MS));
        assert_eq!(b.next_after(start, Some(MS)), None, "the retries are spent");
        let mut b = Backoff::new(MS, 100 * MS).deadline(start + 10 * MS);
        assert_eq!(b.next_after(start, Some(1000 * MS)), Some(10 * MS));
        assert_eq!(b.next_after(start + 5 * MS, Some(1000 * MS)), Some(5 * MS));
    }

    #[test]
    fn the_iterator_uses_the_clock() {
        let b = Backoff::new(MS, 4 * MS).max_retries(4);
        assert_eq!(b.collect::<Vec<_>>(), [1, 2, 4, 4].map(|m| m * MS));
    }
}
