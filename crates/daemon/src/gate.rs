//! Who may hold a connection (the `[limits]` of the team file): the connection cap, the hello
//! deadline and the unread-bytes cap. The cap counts the agents' socket connections; the
//! operator's connections have a pool of their own (as large), and [`OPERATOR_ROOM`] more
//! connections than the cap may wait for their hello, so the operator (`ps`, `down`) always
//! gets in however many agents hold theirs; in-process agents (in-memory connections) count
//! against no socket limit. At the cap, the oldest connection that has not said hello yet is
//! closed to make room (so idle connections cannot lock real clients out); with none, a new
//! one is refused. Running out of file descriptors does the same.

use crate::outbox::ConnId;
use agent_team_config::Limits;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The connection limits in force and the connections they count.
#[derive(Debug, Default)]
pub struct Gate {
    hello_ms: AtomicU64,
    max_connections: AtomicUsize,
    max_unread_bytes: AtomicUsize,
    live: Mutex<Live>,
    /// Accepted connections whose task has not ended yet (closed ones included until then).
    sockets: AtomicUsize,
    /// When an accept failure was last logged, and how many were not logged since.
    accept_log: Mutex<(Option<Instant>, u64)>,
}

#[derive(Debug, Default)]
struct Live {
    /// Connections that have not said hello yet, oldest first, with what closes them.
    pending: BTreeMap<ConnId, Arc<Notify>>,
    /// Agents' connections that said hello (what the cap counts).
    open: HashSet<ConnId>,
    /// The operator's connections that said hello (a pool of their own, as large as the cap).
    operators: HashSet<ConnId>,
}

/// How many connections past the cap may wait for their hello: room for the operator's
/// commands when every slot the cap allows is an agent's.
pub const OPERATOR_ROOM: usize = 16;

/// Why a hello was refused a seat ([`Gate::seat`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    /// Connections of the same kind that hold a seat.
    pub open: usize,
    /// The cap.
    pub max: usize,
}

/// Whether a new connection may stay.
#[derive(Debug)]
pub enum Admission {
    /// It may; it is closed early when `evicted` is notified.
    Admitted {
        /// Notified when the connection must make room.
        evicted: Arc<Notify>,
    },
    /// Every slot is taken by a connection that said hello.
    Refused {
        /// Connections open.
        open: usize,
        /// The cap.
        max: usize,
    },
}

impl Gate {
    /// A gate with `limits` in force.
    pub fn new(limits: &Limits) -> Arc<Self> {
        let gate = Arc::new(Gate::default());
        gate.set(limits);
        gate
    }

    /// Puts new limits in force (a team file's `[limits]`); open connections stay.
    pub fn set(&self, limits: &Limits) {
        self.hello_ms.store(
            limits.hello_timeout_secs.saturating_mul(1000),
            Ordering::Relaxed,
        );
        self.max_connections
            .store(limits.max_connections.max(1), Ordering::Relaxed);
        self.max_unread_bytes
            .store(limits.max_unread_bytes.max(1), Ordering::Relaxed);
    }

    /// How long a new connection has to say hello.
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_ms.load(Ordering::Relaxed))
    }

    /// How many unread bytes cut a client off.
    pub fn max_unread_bytes(&self) -> usize {
        self.max_unread_bytes.load(Ordering::Relaxed)
    }

    /// Counts a new socket connection in, closing the oldest one without a hello if the cap
    /// (and the operator's room past it) is reached.
    pub fn admit(&self, id: ConnId) -> Admission {
        let max = self.max_connections.load(Ordering::Relaxed);
        self.sockets.fetch_add(1, Ordering::Relaxed);
        let Ok(mut live) = self.live.lock() else {
            return Admission::Refused { open: 0, max };
        };
        while live.pending.len() + live.open.len() >= max + OPERATOR_ROOM {
            match live.pending.pop_first() {
                Some((_, evict)) => evict.notify_one(),
                None => {
                    return Admission::Refused {
                        open: live.open.len(),
                        max,
                    };
                }
            }
        }
        let evicted = Arc::new(Notify::new());
        live.pending.insert(id, evicted.clone());
        Admission::Admitted { evicted }
    }

    /// Closes the oldest connection without a hello (out of file descriptors); whether there
    /// was one.
    pub fn evict_oldest_pending(&self) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        match live.pending.pop_first() {
            Some((_, evict)) => {
                evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// An in-memory connection of an in-process agent: it counts against no socket limit
    /// (the roster's `max_teammates` bounds those), and is never evicted.
    pub fn admit_in_process(&self) -> Admission {
        Admission::Admitted {
            evicted: Arc::new(Notify::new()),
        }
    }

    /// The connection said hello, as the operator or as an agent: it is no longer the first
    /// to go, and it takes a seat in its pool. An agent's socket connection past the cap is
    /// refused ([`Full`]); the operator's pool is as large again, apart from the agents'.
    pub fn seat(&self, id: ConnId, operator: bool) -> Result<(), Full> {
        let max = self.max_connections.load(Ordering::Relaxed);
        let Ok(mut live) = self.live.lock() else {
            return Ok(());
        };
        if live.pending.remove(&id).is_none() {
            // Not counted in: an in-process agent's.
            return Ok(());
        }
        let pool = if operator {
            &mut live.operators
        } else {
            &mut live.open
        };
        if pool.len() >= max {
            return Err(Full {
                open: pool.len(),
                max,
            });
        }
        pool.insert(id);
        Ok(())
    }

    /// Whether so many accepted connections are still winding down that the accept loop should
    /// let them end before it takes more (bounds the memory a flood can take).
    pub fn backed_up(&self) -> bool {
        self.sockets.load(Ordering::Relaxed) > 2 * self.max_connections.load(Ordering::Relaxed) + 64
    }

    /// The connection closed.
    pub fn closed(&self, id: ConnId) {
        if let Ok(mut live) = self.live.lock() {
            live.pending.remove(&id);
            live.open.remove(&id);
            live.operators.remove(&id);
        }
    }

    /// (connections with a hello, connections without one yet).
    pub fn counts(&self) -> (usize, usize) {
        self.live
            .lock()
            .map(|l| (l.open.len() + l.operators.len(), l.pending.len()))
            .unwrap_or_default()
    }

    /// Logs an accept failure at most once a second, saying how many were not logged; whether
    /// this one was.
    pub fn accept_failed(&self, e: &std::io::Error) -> bool {
        self.accept_failed_at(e, Instant::now())
    }

    fn accept_failed_at(&self, e: &std::io::Error, now: Instant) -> bool {
        let Ok(mut log) = self.accept_log.lock() else {
            return false;
        };
        match log.0 {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
                log.1 += 1;
                false
            }
            _ => {
                let (open, pending) = self.counts();
                tracing::warn!(
                    suppressed = log.1,
                    open,
                    pending,
                    "accepting a connection failed: {e}"
                );
                *log = (Some(now), 0);
                true
            }
        }
    }
}

/// Takes a connection out of the count when it ends, however it ends.
#[derive(Debug)]
pub struct Counted {
    gate: Arc<Gate>,
    id: ConnId,
    /// A socket's (counted in [`Gate::admit`]), not an in-process agent's.
    socket: bool,
}

impl Counted {
    /// Counts the socket connection `id` out of `gate` on drop.
    pub fn new(gate: Arc<Gate>, id: ConnId) -> Self {
        Counted {
            gate,
            id,
            socket: true,
        }
    }

    /// The same for an in-process agent's connection, which [`Gate::admit_in_process`]
    /// counted nowhere.
    pub fn in_process(gate: Arc<Gate>, id: ConnId) -> Self {
        Counted {
            gate,
            id,
            socket: false,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.socket {
            let _ = self
                .gate
                .sockets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        self.gate.closed(self.id);
    }
}

/// Lets the daemon hold as many descriptors as the hard limit allows (the soft limit is often
/// 1024, which a busy team's clients can reach).
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("cannot raise the descriptor limit from {soft} to {hard}: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn gate(max: usize) -> Arc<Gate> {
        Gate::new(&Limits {
            max_connections: max,
            ..Limits::default()
        })
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_without_a_hello_makes_room() {
        let g = gate(3);
        // Fill the room past the cap with connections that never say hello.
        let room: Vec<ConnId> = (100..100 + OPERATOR_ROOM as ConnId).collect();
        let Admission::Admitted { evicted: first } = g.admit(1) else {
            panic!()
        };
        assert!(matches!(g.admit(2), Admission::Admitted { .. }));
        g.seat(2, false).unwrap();
        assert!(matches!(g.admit(3), Admission::Admitted { .. }));
        for id in &room {
            assert!(matches!(g.admit(*id), Admission::Admitted { .. }));
        }
        // Full: 4 pushes out 1 (the oldest without a hello), not 2 (which said hello).
        assert!(matches!(g.admit(4), Admission::Admitted { .. }));
        tokio::time::timeout(Duration::from_secs(1), first.notified())
            .await
            .unwrap();
        g.closed(1);
        assert_eq!(g.counts(), (1, 2 + OPERATOR_ROOM));
    }

    #[test]
    fn accept_failures_are_logged_at_most_once_a_second() {
        let g = gate(8);
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let t0 = Instant::now();
        let logged: Vec<bool> = (0..2000u64)
            .map(|ms| g.accept_failed_at(&e, t0 + Duration::from_millis(ms)))
            .collect();
        assert_eq!(
            logged.iter().filter(|l| **l).count(),
            2,
            "at 0 s and at 1 s"
        );
        assert!(logged[0] && logged[1000]);
    }

    #[test]
    fn when_every_agent_seat_is_taken_a_new_agent_is_refused_until_one_leaves() {
        let g = gate(2);
        for id in [1, 2] {
            assert!(matches!(g.admit(id), Admission::Admitted { .. }));
            g.seat(id, false).unwrap();
        }
        // Past the cap it may say hello (it could be the operator), but an agent gets no seat.
        assert!(matches!(g.admit(3), Admission::Admitted { .. }));
        assert_eq!(g.seat(3, false), Err(Full { open: 2, max: 2 }));
        g.closed(3);
        drop(Counted::new(g.clone(), 1));
        assert!(matches!(g.admit(4), Admission::Admitted { .. }));
        assert_eq!(g.seat(4, false), Ok(()));
    }

    #[test]
    fn the_operator_gets_in_however_many_agents_hold_a_seat() {
        let g = gate(2);
        for id in [1, 2] {
            assert!(matches!(g.admit(id), Admission::Admitted { .. }));
            g.seat(id, false).unwrap();
        }
        // Even with the room past the cap full of connections that never say hello, the
        // operator's newest one evicts the oldest of them and is seated.
        for id in 10..10 + OPERATOR_ROOM as ConnId {
            assert!(matches!(g.admit(id), Admission::Admitted { .. }));
        }
        assert!(matches!(g.admit(50), Admission::Admitted { .. }));
        assert_eq!(g.seat(50, true), Ok(()));
        assert!(matches!(g.admit(51), Admission::Admitted { .. }));
        assert_eq!(g.seat(51, true), Ok(()));
        assert_eq!(g.counts().0, 4);
        // The operator's pool is as large as the cap, apart from the agents'.
        assert!(matches!(g.admit(52), Admission::Admitted { .. }));
        assert_eq!(g.seat(52, true), Err(Full { open: 2, max: 2 }));
    }

    #[test]
    fn in_process_agents_take_no_socket_seat() {
        let g = gate(1);
        for id in 1..=50 {
            assert!(matches!(g.admit_in_process(), Admission::Admitted { .. }));
            assert_eq!(g.seat(id, false), Ok(()));
            drop(Counted::in_process(g.clone(), id));
        }
        assert_eq!(g.counts(), (0, 0));
        assert!(matches!(g.admit(99), Admission::Admitted { .. }));
        assert_eq!(g.seat(99, false), Ok(()));
    }
}
