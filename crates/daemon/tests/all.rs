//! The daemon's integration suite: every rule of SPEC §5.2 and §5.3 through the real socket,

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! restart, bad input and the hand-built frames of docs/PROTOCOL.md.

mod suite;
