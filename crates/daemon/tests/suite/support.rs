//! A daemon on a thread in a temp dir, and clients for the operator and for agents.

use agent_team_client::{Client, ReplyExt};
use agent_team_daemon::{DaemonOptions, DaemonThread};
use agent_team_paths::{Paths, TeamPaths};
use agent_team_protocol::*;
use std::collections::HashMap;

pub struct TestTeam {
    pub _dir: tempfile::TempDir,
    pub opts: DaemonOptions,
    daemon: Option<DaemonThread>,
    secrets: HashMap<String, String>,
}

impl TestTeam {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(f: impl FnOnce(&mut DaemonOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().join("home"), dir.path().join("run"));
        let mut opts = DaemonOptions::new(paths, "t");
        f(&mut opts);
        let daemon = DaemonThread::start(opts.clone()).unwrap();
        TestTeam {
            _dir: dir,
            opts,
            daemon: Some(daemon),
            secrets: HashMap::new(),
        }
    }

    pub fn tp(&self) -> TeamPaths {
        self.opts.paths.team(&self.opts.team).unwrap()
    }

    pub fn operator(&self) -> Client {
        Client::operator(&self.tp()).unwrap()
    }

    /// Registers agents (the first named `leader` gets the leader role).
    pub fn with_agents(mut self, names: &[&str]) -> Self {
        let mut op = self.operator();
        for n in names {
            let role = if *n == "leader" { "leader" } else { "worker" };
            match op
                .call(Request::Register {
                    name: n.to_string(),
                    role: role.into(),
                })
                .unwrap()
            {
                Reply::Registered { secret, .. } => {
                    self.secrets.insert(n.to_string(), secret);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        self
    }

    pub fn agent(&self, name: &str) -> Client {
        let hello = agent_team_client::agent_hello("t", name, &self.secrets[name], 0);
        Client::connect(&self.tp().socket, &hello).unwrap()
    }

    pub fn secret(&self, name: &str) -> String {
        self.secrets[name].clone()
    }

    pub fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.daemon = Some(DaemonThread::start(self.opts.clone()).unwrap());
    }
}

pub fn add_task(c: &mut Client, title: &str, blocked_by: &[u64]) -> Task {
    c.call(Request::TaskAdd {
        title: title.into(),
        description: String::new(),
        run: None,
        blocked_by: blocked_by.to_vec(),
        assign: None,
        key: None,
    })
    .task()
    .unwrap()
}

pub fn send(c: &mut Client, to: &str, body: &str) -> Result<Reply, agent_team_client::ClientError> {
    c.call(Request::Send {
        to: to.into(),
        body: body.into(),
        kind: MessageKind::Text,
        summary: None,
        dedup: None,
    })
}

pub fn err_code(
    r: Result<Reply, agent_team_client::ClientError>,
) -> (ErrorCode, serde_json::Value) {
    match r {
        Err(agent_team_client::ClientError::Server(e)) => (e.code, e.details),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Collects `n` message pushes, failing after a generous deadline.
pub fn pushed_messages(c: &mut Client, n: usize) -> Vec<Message> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Push::Message { message, .. } = c
            .next_push(Some(std::time::Duration::from_secs(10)))
            .unwrap()
        {
            out.push(message);
        }
    }
    out
}

/// A raw connection to the team's socket, for speaking the wire format by hand.
pub fn raw(t: &TestTeam) -> std::os::unix::net::UnixStream {
    let s = std::os::unix::net::UnixStream::connect(t.tp().socket).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s
}

/// `v` as one frame: a 4-byte big-endian length, then the JSON.
pub fn frame(v: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// Reads one frame, or None if the daemon closed the connection.
pub fn read_frame(s: &mut std::os::unix::net::UnixStream) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut header = [0u8; 4];
    s.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// The operator's hello as JSON.
pub fn operator_hello(t: &TestTeam) -> serde_json::Value {
    let secret = std::fs::read_to_string(t.tp().operator_secret).unwrap();
    serde_json::json!({"type":"hello","protocol":PROTOCOL_VERSION,"team":"t","auth":{"kind":"operator","secret":secret.trim()}})
}
