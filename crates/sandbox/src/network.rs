//! The sandbox's network: a network namespace of its own whose only way out is the team's
//! egress proxy, reached through a Unix socket bound in (issue 62, "network by asking").

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Where a sandboxed process's network goes: the dir holding this agent's proxy socket
/// (bound in whole, so a socket made again after a daemon restart is still the one inside), and
/// the forwarder that runs first inside and carries the sandbox's loopback to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkWiring {
    /// The dir, outside, holding the agent's proxy socket.
    pub dir: PathBuf,
    /// The forwarder program (`agent-team-bridge`), outside.
    pub bridge: PathBuf,
    /// Loopback ports forwarded as they are (a model endpoint on the host's loopback).
    pub forward: Vec<u16>,
}

/// bubblewrap's arguments for `net` (not yet wired: the host's network).
pub(crate) fn bwrap_args(net: &NetworkWiring) -> Vec<OsString> {
    let _ = net;
    Vec::new()
}

/// The program and arguments bubblewrap runs for `program args` under `net` (not yet wired:
/// the program itself).
pub(crate) fn wrap(net: &NetworkWiring, program: &OsStr, args: &[OsString]) -> Vec<OsString> {
    let _ = net;
    std::iter::once(program.to_os_string())
        .chain(args.iter().cloned())
        .collect()
}
