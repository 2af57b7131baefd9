//! The agent-team wire protocol: frames, handshake, requests, replies, pushes and the data model.
//!
//! Everything that crosses the daemon's socket is defined here once, so the daemon, the worker,
//! the CLI and third-party clients agree on it. `docs/PROTOCOL.md` describes the same format in
//! prose for clients written in other languages.

pub mod error;
pub mod frame;
pub mod memory;
pub mod model;
pub mod names;
pub mod request;
pub mod text;
pub mod usage;
pub mod wire;
pub mod work;

pub use error::{ErrorBody, ErrorCode};
pub use frame::{FrameError, MAX_FRAME_LEN, MAX_HELLO_LEN};
pub use model::*;
pub use request::{
    DEFAULT_LEASE_TOKENS, DEFAULT_WAIT_MS, MAX_WAIT_MS, Reply, Request, SpawnMember,
};
pub use usage::{
    BudgetLevel, BudgetLimit, BudgetStatus, CallTrace, UsageFigures, UsageLine, UsageReport,
};
pub use wire::{Auth, ClientFrame, Hello, MAX_RID_LEN, Push, ServerFrame, StartReads, Welcome};
pub use work::{FileChange, FinishAction, FinishOutcome, FinishPolicy, WorkDiff, WorkResult};

/// The protocol version this build speaks; a hello with another version gets `unsupported_version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message body the daemon accepts (64 KiB), per SPEC §5.7.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// The longest task title accepted.
pub const MAX_TITLE_LEN: usize = 1024;

/// The most items of an agent's checklist (`set_todos`).
pub const MAX_TODOS: usize = 100;

/// The default bound on an agent's unread messages before `inbox_full` (SPEC §5.3).
pub const DEFAULT_INBOX_LIMIT: usize = 1000;

/// The colours agents get when the team file gives none, in roster order (the leader first):
/// names every terminal, tmux, ratatui and CSS know.
pub const PALETTE: &[&str] = &["cyan", "green", "yellow", "magenta", "blue", "red"];

/// The colour of the `index`-th agent of the roster (0 is the leader) when none is given.
pub fn palette_color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}
