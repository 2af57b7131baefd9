//! End-to-end tests: the real `agent-team` and `agent-team-worker` binaries in a sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod boards_finish;
mod boundary;
mod canaries;
mod chat;
mod cli;
mod clis;
mod containers;
mod copilot;
mod crash;
mod disk;
mod end;
mod fallback;
mod finish;
mod gateway;
mod heal;
mod hooks;
mod inert;
mod join;
mod kube;
mod lifecycle;
mod memory;
mod models;
mod network;
mod opencode;
mod panes;
mod perms;
mod plans;
mod remote;
mod reruns;
mod roles;
mod sandbox;
mod scale;
mod search;
mod seeds;
mod service;
mod strategies;
mod telemetry;
mod triggers;
mod tui;
mod upgrade;
mod usage;
mod vanish;
mod vars;
mod workers;
