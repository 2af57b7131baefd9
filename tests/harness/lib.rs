//! Test support for the end-to-end suite: a private sandbox (temp `AGENT_TEAM_HOME` and
//! `AGENT_TEAM_RUNTIME_DIR`, no `TMUX`), the real binaries, and cleanup that kills whatever the
//! test started even when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod container;
pub mod sshd;
pub mod web;

use agent_team_client::Client;
use agent_team_paths::{Paths, TeamPaths};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the built binaries (`AGENT_TEAM_BIN_DIR`, else next to this test).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AGENT_TEAM_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash> → target/<profile>
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The path of one of our binaries; panics with a hint if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --bins` first (or use `cargo xtask ci`)",
        p.display()
    );
    p
}

/// The backends a test of something every backend does runs on: process and in-process
/// always, tmux when a usable one (3.2 or newer) is installed.
pub fn backends() -> Vec<&'static str> {
    let mut v = vec!["process", "in-process"];
    if agent_team_pane::tmux::version().is_ok() {
        v.push("tmux");
    } else {
        eprintln!("tmux >= 3.2 not found: the tmux case is skipped");
    }
    v
}

/// git in `dir` (as a test user), its trimmed output; panics with its stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=t@t", "-c", "user.name=tester"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `cond` holds, polling, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// [`wait_for`] that, timed out, panics with `explain()` too (what the test saw: a screen, a
/// log), so a failure in CI says why.
pub fn wait_for_or(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; saw:\n{}",
                explain()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A private world for one test.
pub struct Sandbox {
    /// The temp dir everything lives in.
    pub dir: tempfile::TempDir,
    /// State and runtime roots inside it.
    pub paths: Paths,
    /// Background commands and the log each writes to.
    children: Vec<(Child, PathBuf)>,
    /// Names the next background command's log (never reused, so no log is overwritten).
    next_log: usize,
    /// Extra environment for every command (e.g. a mock model's API key variable).
    pub env: Vec<(String, String)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh sandbox.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("at-").tempdir().unwrap();
        let paths = Paths::new(dir.path().join("home"), dir.path().join("run"));
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        Sandbox {
            dir,
            paths,
            children: Vec::new(),
            next_log: 0,
            env: Vec::new(),
        }
    }

    /// The files of `team`.
    pub fn team(&self, team: &str) -> TeamPaths {
        self.paths.team(team).unwrap()
    }

    /// A command for one of our binaries with the sandbox's environment.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        // Nothing of the environment the tests run in may leak in: no agent-team setting (a
        // tmux socket, a team, a timeout) and no tmux the test did not start.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
                c.env_remove(k);
            }
        }
        // Temp files go in the sandbox, so they go with it: the agent CLIs' Bun runtimes
        // unpack a native library into `$TMPDIR` at every start and never remove it (5–14 MB a
        // start; the suite left gigabytes in the machine's `/tmp`).
        c.env("AGENT_TEAM_HOME", &self.paths.home)
            .env("AGENT_TEAM_RUNTIME_DIR", &self.paths.runtime)
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .current_dir(self.dir.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `agent-team ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd("agent-team")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Whether `agent-team doctor`'s check `name` (`namespace`, `sandbox`) holds here, else
    /// what it says: the one way a test asks what this machine's sandbox can do.
    pub fn doctor_check(&self, name: &str) -> Result<(), String> {
        let doctor: serde_json::Value =
            serde_json::from_str(&self.ok(&["doctor", "--json"])).unwrap_or_default();
        let check = doctor["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["check"] == name))
            .cloned()
            .unwrap_or_default();
        if check["ok"] == true {
            Ok(())
        } else {
            Err(check["detail"]
                .as_str()
                .unwrap_or("doctor says nothing of it")
                .to_string())
        }
    }

    /// Runs `agent-team ARGS` and returns stdout, panicking with stderr if it failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "agent-team {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `agent-team daemon --foreground --team TEAM` as a child this test can SIGKILL.
    pub fn spawn_daemon(&mut self, team: &str) -> u32 {
        let pid = self.start(&["daemon", "--foreground", "--team", team], "daemon");
        let tp = self.team(team);
        wait_for("the daemon to answer", Duration::from_secs(20), || {
            Client::operator(&tp).is_ok()
        });
        pid
    }

    /// Waits for a daemon started by [`Sandbox::spawn_daemon`] to exit by itself.
    pub fn wait_daemon(&mut self, pid: u32, timeout: Duration) -> (std::process::ExitStatus, ()) {
        let pos = self
            .children
            .iter()
            .position(|c| c.0.id() == pid)
            .expect("no such daemon");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.children[pos].0.try_wait().unwrap() {
                let _ = self.children.remove(pos).0.wait();
                return (st, ());
            }
            assert!(
                Instant::now() < deadline,
                "daemon {pid} did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs a child started by [`Sandbox::spawn_daemon`] and reaps it.
    pub fn kill9(&mut self, pid: u32) {
        if let Some(pos) = self.children.iter().position(|c| c.0.id() == pid) {
            let (mut c, _) = self.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An operator client for `team`.
    pub fn operator(&self, team: &str) -> Client {
        Client::operator(&self.team(team)).unwrap()
    }

    /// Writes `agent-team.toml` into the sandbox's directory (the commands' working directory).
    pub fn write_team_file(&self, text: &str) {
        std::fs::write(self.dir.path().join("agent-team.toml"), text).unwrap();
    }

    /// A path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts `agent-team ARGS` in the background; it is killed at the end of the test.
    pub fn spawn(&mut self, args: &[&str]) -> u32 {
        self.start(args, "cmd")
    }

    /// Starts `agent-team ARGS` with its output in a log of its own; returns its pid.
    fn start(&mut self, args: &[&str], what: &str) -> u32 {
        let path = self
            .dir
            .path()
            .join(format!("{what}-{}.log", self.next_log));
        self.next_log += 1;
        let log = std::fs::File::create(&path).unwrap();
        let child = self
            .cmd("agent-team")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push((child, path));
        pid
    }

    /// The log a background command started with [`Sandbox::spawn`] writes its output to.
    pub fn log_of(&self, pid: u32) -> PathBuf {
        self.children
            .iter()
            .find(|c| c.0.id() == pid)
            .map(|c| c.1.clone())
            .expect("no such child")
    }

    /// Waits for a background command started with [`Sandbox::spawn`] and returns its status
    /// and combined output.
    pub fn wait_child(
        &mut self,
        pid: u32,
        timeout: Duration,
    ) -> (std::process::ExitStatus, String) {
        let pos = self
            .children
            .iter()
            .position(|c| c.0.id() == pid)
            .expect("no such child");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.children[pos].0.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "command {pid} did not finish within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut child, log) = self.children.remove(pos);
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        // Already reaped by try_wait above; wait() returns the same status at once.
        let _ = child.wait();
        (status, out)
    }

    /// The roster of `team`.
    pub fn agents(&self, team: &str) -> Vec<agent_team_protocol::AgentInfo> {
        match self
            .operator(team)
            .call(agent_team_protocol::Request::Agents)
            .unwrap()
        {
            agent_team_protocol::Reply::Agents { agents } => agents,
            other => panic!("{other:?}"),
        }
    }

    /// One agent of `team`.
    pub fn agent(&self, team: &str, name: &str) -> agent_team_protocol::AgentInfo {
        self.agents(team)
            .into_iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name}"))
    }

    /// Runs `tmux -S SOCKET ARGS` on a server this test owns and returns stdout (trimmed).
    pub fn tmux(&self, socket: &Path, args: &[&str]) -> Result<String, String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(socket)
            .args(args)
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The socket of `team`'s private tmux server in this sandbox.
    pub fn tmux_socket(&self, team: &str) -> PathBuf {
        // Not `TeamPaths::tmux_socket`: that honours AGENT_TEAM_TMUX_SOCKET of the test's own
        // environment, which the commands never see (`Sandbox::cmd`).
        self.paths.runtime.join(format!("{team}.tmux"))
    }

    /// `team`'s whole event log, read from its store (also once its daemon is gone).
    pub fn events_of(&self, team: &str) -> Vec<agent_team_protocol::Envelope> {
        let store = agent_team_store::Store::open_read_only(&self.team(team).db, team).unwrap();
        store.events_since(0, 100_000).unwrap()
    }

    /// `agent`'s pending permission request in `team`, if it has one (none while the daemon
    /// cannot be reached).
    pub fn pending_from(
        &self,
        team: &str,
        agent: &str,
    ) -> Option<agent_team_protocol::PermRequest> {
        let mut c = agent_team_client::Client::operator(&self.team(team)).ok()?;
        c.all_perms(false)
            .ok()?
            .into_iter()
            .find(|p| p.agent == agent)
    }

    /// The board of `team`.
    pub fn tasks(&self, team: &str) -> Vec<agent_team_protocol::Task> {
        self.operator(team).all_tasks(None).unwrap()
    }

    /// Whether task `id` of `team` exists and has `status`; the leader may not have created it yet.
    pub fn task_is(&self, team: &str, id: u64, status: agent_team_protocol::TaskStatus) -> bool {
        self.tasks(team)
            .iter()
            .any(|t| t.id == id && t.status == status)
    }
}

/// (start, end) nanosecond timestamps per key from lines `start KEY NS` / `end KEY NS`.
pub fn intervals(log: &str) -> std::collections::HashMap<String, Vec<(u128, Option<u128>)>> {
    let mut m: std::collections::HashMap<String, Vec<(u128, Option<u128>)>> = Default::default();
    for line in log.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != 3 {
            continue;
        }
        let ts: u128 = parts[2].parse().unwrap();
        match parts[0] {
            "start" => m.entry(parts[1].to_string()).or_default().push((ts, None)),
            "end" => {
                if let Some(last) = m.get_mut(parts[1]).and_then(|v| v.last_mut()) {
                    last.1 = Some(ts);
                }
            }
            _ => {}
        }
    }
    m
}

/// A task command that records when it starts and ends in `log`, sleeping `secs` between.
pub fn recorded(key: &str, log: &Path, secs: f64) -> String {
    format!(
        "echo start {key} $(date +%s%N) >> {l}; sleep {secs}; echo end {key} $(date +%s%N) >> {l}",
        l = log.display()
    )
}

/// Whether process group `pgid` has a member that still runs (a zombie has exited and only
/// waits to be collected by its parent, e.g. init).
pub fn group_alive(pgid: u32) -> bool {
    if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), None).is_err() {
        return false;
    }
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten().any(|e| {
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    return false;
                };
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
                    && f.first() != Some(&"Z")
            })
        })
        .unwrap_or(true)
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // On failure, show what the daemons and agents said: CI has nothing else to go on.
        if std::thread::panicking()
            && let Ok(rd) = std::fs::read_dir(self.paths.teams_dir())
        {
            {
                for team in rd.flatten() {
                    let mut logs = vec![team.path().join("daemon.log")];
                    if let Ok(agents) = std::fs::read_dir(team.path().join("logs")) {
                        logs.extend(agents.flatten().map(|e| e.path()));
                    }
                    for log in logs {
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(40).collect();
                        eprintln!("----- {} (last {} lines)", log.display(), tail.len());
                        for l in tail.iter().rev() {
                            eprintln!("{l}");
                        }
                    }
                }
            }
        }
        // Stop every daemon that has a lock file here, then anything we spawned directly.
        if let Ok(rd) = std::fs::read_dir(&self.paths.runtime) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(team) = name.strip_suffix(".lock") {
                    let _ = self
                        .cmd("agent-team")
                        .args(["--team", team, "down"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    if let Some(pid) = std::fs::read_to_string(e.path())
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        for (c, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever still names this sandbox (a daemon whose runtime dir is elsewhere, a
        // guardian that would bring a killed daemon back, a session team of `serve`): the
        // guardians first, so nothing comes back, then the rest. Never a process of anyone else.
        // Again until none is left: a worker killed a moment after its daemon may have
        // brought the daemon back (it heals a crashed daemon) in between.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mine = procs_naming(self.dir.path());
            if mine.is_empty() || Instant::now() >= deadline {
                break;
            }
            let (guards, rest): (Vec<_>, Vec<_>) = mine
                .into_iter()
                .partition(|(_, c)| c.contains("daemon --guard"));
            for (pid, _) in guards.into_iter().chain(rest) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Any tmux server whose socket lives in this sandbox is ours: kill it, and wait until it
        // is gone (kill-server returns before the server exits), before the dir is removed.
        for dir in [self.paths.runtime.clone(), self.dir.path().to_path_buf()] {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "tmux") {
                    let _ = Command::new("tmux")
                        .arg("-S")
                        .arg(&p)
                        .arg("kill-server")
                        .env_remove("TMUX")
                        .output();
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline
                        && Command::new("tmux")
                            .arg("-S")
                            .arg(&p)
                            .arg("ls")
                            .env_remove("TMUX")
                            .output()
                            .is_ok_and(|o| o.status.success())
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

/// Live processes (not zombies) whose command line is exactly `argv` (NUL-separated, as in
/// `/proc/PID/cmdline`): how a test finds what a sandboxed command started, whose own `$$` is a
/// pid inside its namespace.
pub fn procs_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want)
                        && !agent_team_pane::procs::is_zombie(*pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes (not zombies, not this test) whose command line or environment names `dir`.
pub fn procs_naming(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || agent_team_pane::procs::is_zombie(pid) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_bytes());
        if has(&cmd) || has(&env) {
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// The guardian of `team`'s daemon in this sandbox (`agent-team daemon --guard --team T`).
pub fn guardians(sb: &Sandbox, team: &str) -> Vec<u32> {
    procs_naming(sb.dir.path())
        .into_iter()
        .filter(|(_, c)| c.contains("daemon --guard --team") && c.trim_end().ends_with(team))
        .map(|(p, _)| p)
        .collect()
}
