//! The daemon's own blocking work, counted: a supervisor job, a git commit of a task's work,
//! the core's close. A daemon whose process ends next waits for exactly that and leaves the
//! runtime's tasks to the process's end (`end_then_let_go`), instead of dropping them one by
//! one (a thousand agents' kept-alive model connections and links: ~60 ms of `down`).

use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// How much of the daemon's blocking work has started and not ended; each copy counts the same.
#[derive(Clone, Default, Debug)]
pub(crate) struct Blocking(Arc<(Mutex<usize>, Condvar)>);

/// One piece of counted work: counted out when it ends, panics, or is dropped unrun.
struct Running(Blocking);

impl Blocking {
    /// Runs `f` on the runtime's blocking threads, counted until it returns.
    pub(crate) fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let running = self.enter();
        drop(tokio::task::spawn_blocking(move || {
            let _running = running;
            f()
        }));
    }

    /// Counts one more piece of work in.
    fn enter(&self) -> Running {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Running(self.clone())
    }

    /// Blocks until no counted work runs.
    pub(crate) fn wait_idle(&self) {
        let (count, ended) = &*self.0;
        let mut n = count.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = ended.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (count, ended) = &*(self.0).0;
        let mut n = count.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            ended.notify_all();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The wait ends when the last piece of work does, whether it returned or panicked.
    #[test]
    fn the_wait_ends_once_every_piece_of_work_has() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _in = rt.enter();
        let blocking = Blocking::default();
        let (release, released) = std::sync::mpsc::channel::<()>();
        blocking.spawn(move || {
            let _ = released.recv();
        });
        blocking.spawn(|| panic!("a job that panics is counted out too"));
        let (done_tx, done) = std::sync::mpsc::channel();
        let waiter = blocking.clone();
        let waiting = std::thread::spawn(move || {
            waiter.wait_idle();
            let _ = done_tx.send(());
        });
        assert!(
            done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the wait ended while a job still ran"
        );
        release.send(()).unwrap();
        done.recv_timeout(Duration::from_secs(30)).unwrap();
        waiting.join().unwrap();
    }
}
