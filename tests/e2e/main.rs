//! End-to-end tests: the real `agent-team` and `agent-team-worker` binaries in a sandbox.

mod cli;
mod crash;
