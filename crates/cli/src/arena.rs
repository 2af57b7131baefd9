//! One malloc arena for the daemon. glibc gives a thread that allocates while another holds
//! the main arena an arena of its own (up to eight per CPU), each keeping ~136 KiB resident
//! for the little the daemon's side threads (the store's jobs, notifications, the blocking
//! pool) allocate. The daemon's work is on its one core thread, so they share the main arena.

/// Makes the threads this process starts from now on allocate from the main arena.
pub(crate) fn one() {
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` has no preconditions; it only sets a limit glibc reads when a thread
    // first needs an arena.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
