//! The daemon's integration suite: every rule of SPEC §5.2 and §5.3 through the real socket,
//! restart, bad input and the hand-built frames of docs/PROTOCOL.md.

mod suite;
