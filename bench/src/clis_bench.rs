//! Agent CLIs as teammates (issues 16, 29): for Claude Code, Codex, Qwen Code and Gemini CLI
//! against the mock
//! model on 127.0.0.1, the CLI's own start to its first model request (alone, with a private
//! home like the teammate's but without our MCP server and hook) beside the same as a teammate
//! (the supervisor's spawn to the first request); what our supervision (the worker,
//! which serves the team's tools, and the `agent-team-bridge` the CLI starts as its MCP server
//! and hooks) adds in time and memory; the latency from
//! `agent-team send` to the CLI's next model request carrying the message, idle and busy; and
//! whether `down` leaves any process behind.
//!
//! The CLIs are the pinned ones the end-to-end tests use, from `<target>/clis` (installed there
//! with npm when missing). The alone launch is the worker's own
//! [`agent_team_worker::external::plan`] with the team server and the hook taken out.

use crate::daemon_bench::bin_dir;
use crate::model_bench::{pss_kb, rollup_kb, rss_kb, tree};
use crate::report::*;
use agent_team_client::Client;
use agent_team_mockmodel::{Gate, MockModel, Step, Wire};
use agent_team_paths::Paths;
use agent_team_protocol::*;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::cell::RefCell;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the mock holds the first answer: the CLI (and our processes) are sampled for
/// memory meanwhile, after the start was timed, so sampling does not slow the start.
const HOLD: Duration = Duration::from_millis(500);
/// How long a CLI may take to its first model request before the run counts as failed.
const FIRST_REQUEST_LIMIT: Duration = Duration::from_secs(60);
/// Idle deliveries measured per CLI.
const IDLE_SAMPLES: usize = 3;
/// Busy deliveries measured per CLI with a turn-end hook.
const BUSY_SAMPLES: usize = 3;

/// The Claude Code the bench drives (the end-to-end tests' pin).
pub(crate) const CLAUDE_CODE_VERSION: &str = agent_team_worker::external::tested::CLAUDE_CODE;

/// One pinned agent CLI and how it is set up against the mock.
struct Cli {
    /// Its name in the figures.
    label: &'static str,
    /// The provider of its role.
    provider: &'static str,
    /// Its npm package, version and command.
    package: &'static str,
    version: &'static str,
    bin: &'static str,
    /// The model its role names.
    model: &'static str,
    /// The API it speaks to the mock (Codex: the Responses API on the OpenAI base URL).
    wire: Wire,
    /// The variable its role reads the key from, and the key.
    key_var: &'static str,
    key: &'static str,
    /// The teammate's name (the mock tells the CLIs apart by it).
    name: &'static str,
    /// Whether it has the `Stop` hook that hands queued messages back at a turn's end.
    hook: bool,
    /// Qwen Code offers MCP tools through its `tool_search` first.
    selects_tools: bool,
    /// How its model names a team tool (`mcp__team__T`, Gemini CLI's `mcp_team_T`).
    team_prefix: &'static str,
    /// It needs Node 22 (the npm `node@22` package's, put first on its `PATH`).
    node22: bool,
    /// Side requests it makes of its own (a session title), answered aside: (needle, answer).
    asides: &'static [(&'static str, &'static str)],
}

const CLIS: [Cli; 6] = [
    Cli {
        label: "Claude Code",
        provider: "claude-code",
        package: "@anthropic-ai/claude-code",
        version: CLAUDE_CODE_VERSION,
        bin: "claude",
        model: "claude-sonnet-4-5",
        wire: Wire::Anthropic,
        key_var: "AT_BENCH_ANTHROPIC_KEY",
        key: "sk-ant-test-0123456789abcdefghij",
        name: "cc",
        hook: true,
        selects_tools: false,
        team_prefix: "mcp__team__",
        node22: false,
        asides: &[],
    },
    Cli {
        label: "Codex",
        provider: "codex",
        package: "@openai/codex",
        version: agent_team_worker::external::tested::CODEX,
        bin: "codex",
        model: "gpt-5-codex",
        wire: Wire::OpenAi,
        key_var: "AT_BENCH_OPENAI_KEY",
        key: "sk-test-openai",
        name: "cx",
        hook: true,
        selects_tools: false,
        team_prefix: "mcp__team__",
        node22: false,
        asides: &[],
    },
    Cli {
        label: "Qwen Code",
        provider: "qwen-code",
        package: "@qwen-code/qwen-code",
        version: agent_team_worker::external::tested::QWEN_CODE,
        bin: "qwen",
        model: "qwen3-coder",
        wire: Wire::OpenAi,
        key_var: "AT_BENCH_OPENAI_KEY",
        key: "sk-test-openai",
        name: "qw",
        hook: true,
        selects_tools: true,
        team_prefix: "mcp__team__",
        node22: true,
        asides: &[],
    },
    Cli {
        label: "Gemini CLI",
        provider: "gemini-cli",
        package: "@google/gemini-cli",
        version: agent_team_worker::external::tested::GEMINI_CLI,
        bin: "gemini",
        model: "gemini-2.5-pro",
        wire: Wire::Gemini,
        key_var: "AT_BENCH_GEMINI_KEY",
        key: "gm-test-key-0123456789",
        name: "gm",
        hook: true,
        selects_tools: false,
        team_prefix: "mcp_team_",
        node22: false,
        asides: &[],
    },
    Cli {
        label: "Copilot CLI",
        provider: "copilot",
        package: "@github/copilot",
        version: agent_team_worker::external::tested::COPILOT,
        bin: "copilot",
        model: "gpt-4.1",
        wire: Wire::OpenAi,
        key_var: "AT_BENCH_OPENAI_KEY",
        key: "sk-test-openai",
        name: "cp",
        hook: true,
        selects_tools: false,
        team_prefix: "team-",
        node22: false,
        asides: &[],
    },
    Cli {
        label: "opencode",
        provider: "opencode",
        package: "opencode-ai",
        version: agent_team_worker::external::tested::OPENCODE,
        bin: "opencode",
        model: "gpt-4.1",
        wire: Wire::OpenAi,
        key_var: "AT_BENCH_OPENAI_KEY",
        key: "sk-test-openai",
        name: "oc",
        // Headless (`opencode run`) it ends at its first turn's end: no hand-back there.
        hook: false,
        selects_tools: false,
        team_prefix: "team_",
        node22: false,
        asides: &[("You are a title generator", "Team work")],
    },
];

/// The mock for `cli`, its side requests answered aside.
fn mock_for(cli: &Cli) -> Result<MockModel> {
    let mock = MockModel::start_background(cli.wire)?;
    for (needle, answer) in cli.asides {
        mock.answer_aside(needle, answer);
    }
    Ok(mock)
}

/// The cargo target dir the bench was built in (the CLI cache lives under it).
fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        if t.is_relative() {
            return std::env::current_dir().map(|d| d.join(&t)).unwrap_or(t);
        }
        return t;
    }
    bin_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The installed CLI's command, installing it with npm (into a staging directory renamed into
/// place, as the end-to-end tests do) when it is missing; the reason when that fails. A CLI
/// that needs Node 22 is run through a wrapper putting the npm `node@22` package's binary first
/// on its `PATH`.
fn installed(cli: &Cli) -> Result<PathBuf, String> {
    let exe = install(cli.package, cli.version, cli.bin)?;
    if !cli.node22 {
        return Ok(exe);
    }
    let node = install("node", "22", "node")?;
    let node_bin = node
        .canonicalize()
        .ok()
        .and_then(|n| n.parent().map(Path::to_path_buf))
        .ok_or("the node@22 package has no binary")?;
    // In the cache's own dir, by paths without `..`: the sandbox starts from nothing and binds
    // the dir of a CLI's program (here the whole cache: the CLI and Node 22 both).
    let exe = exe
        .parent()
        .and_then(|d| d.canonicalize().ok())
        .map(|d| d.join(cli.bin))
        .ok_or("the CLI's command is not in an npm install")?;
    let dir = exe
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .ok_or("the CLI's command is not in an npm install")?;
    let wrapper = dir.join(format!("{}-node22", cli.bin));
    let script = format!(
        "#!/bin/sh\nPATH='{}':\"$PATH\" exec '{}' \"$@\"\n",
        node_bin.display(),
        exe.display()
    );
    if std::fs::read_to_string(&wrapper).ok().as_deref() != Some(script.as_str()) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = dir.join(format!(".{}.{}", cli.bin, std::process::id()));
        std::fs::write(&tmp, &script)
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&tmp, &wrapper))
            .map_err(|e| format!("{}: {e}", wrapper.display()))?;
    }
    Ok(wrapper)
}

/// `package@version` installed under `<target>/clis`: the path of its command `bin`.
fn install(package: &str, version: &str, bin: &str) -> Result<PathBuf, String> {
    let name = format!("{}@{}", package.replace('/', "+"), version);
    let clis = target_dir().join("clis");
    let dir = clis.join(&name);
    let exe = dir.join("node_modules/.bin").join(bin);
    if exe.exists() {
        return Ok(exe);
    }
    println!(
        "  installing {}@{} into {}",
        package,
        version,
        clis.display()
    );
    let staging = clis.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&staging)
        .arg(format!("{}@{}", package, version))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("npm is needed to install {}: {e}", package))?;
    if !out.status.success() || !staging.join("node_modules/.bin").join(bin).exists() {
        let _ = std::fs::remove_dir_all(&staging);
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "npm install {}@{} failed: {}",
            package,
            version,
            err.lines().last().unwrap_or_default()
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(exe)
}

/// Private state and runtime dirs for every team of this section, and the teams started, so
/// that everything is stopped at the end even when a run fails.
struct Sandbox {
    root: PathBuf,
    paths: Paths,
    /// Workspaces of the teams started (`down` runs there).
    teams: RefCell<Vec<PathBuf>>,
}

impl Sandbox {
    fn new(root: &Path) -> Result<Self> {
        let root = root.canonicalize()?;
        let paths = Paths::new(root.join("home"), root.join("run"));
        Ok(Sandbox {
            root,
            paths,
            teams: RefCell::new(Vec::new()),
        })
    }

    /// `agent-team` in `ws` with this sandbox's environment only (no agent-team setting of the
    /// bench's own environment), the keys the roles name, no tmux.
    fn cmd(&self, ws: &Path) -> Command {
        let mut c = Command::new(bin_dir().join("agent-team"));
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
                c.env_remove(k);
            }
        }
        c.env("AGENT_TEAM_HOME", &self.paths.home)
            .env("AGENT_TEAM_RUNTIME_DIR", &self.paths.runtime)
            .env("AGENT_TEAM_LOG", "warn")
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .current_dir(ws)
            .stdin(Stdio::null());
        for cli in &CLIS {
            c.env(cli.key_var, cli.key);
        }
        c
    }

    /// Runs `agent-team ARGS` in `ws`; an error with its stderr when it fails.
    fn ok(&self, ws: &Path, args: &[&str]) -> Result<Output> {
        let out = self
            .cmd(ws)
            .args(args)
            .output()
            .with_context(|| format!("cannot run agent-team {args:?}"))?;
        if !out.status.success() {
            bail!(
                "agent-team {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Pids of the processes this sandbox started that are still there: their environment
    /// or working directory mentions its root (the CLIs' private homes, the teams' state).
    fn left(&self) -> Vec<u32> {
        let needle = self.root.display().to_string();
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
                String::from_utf8_lossy(&env).contains(&needle) || cwd.starts_with(&self.root)
            })
            .collect()
    }

    /// `down` in `ws`, then how many of this sandbox's processes are left as it returns, and
    /// how many are still there 5 s later.
    fn down(&self, ws: &Path) -> Result<(usize, usize)> {
        self.ok(ws, &["down"])?;
        self.teams.borrow_mut().retain(|t| t != ws);
        let left = self.left();
        let now = left.len();
        if std::env::var_os("BENCH_SHOW_LEFT").is_some() {
            for pid in &left {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                println!(
                    "  left after down: {pid} {:?} stat {}",
                    cmdline(*pid),
                    stat.trim()
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut later = now;
        while later > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            later = self.left().len();
        }
        Ok((now, later))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for ws in self.teams.borrow().iter() {
            let _ = self.cmd(ws).arg("down").output();
        }
        // Whatever is still there was started by this section: a CLI run alone, or anything
        // a failed `down` left.
        for pid in self.left() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The `[roles.r]` section of `cli` against `mock`, run from the installed `exe`.
fn role(cli: &Cli, mock: &MockModel, exe: &Path) -> String {
    format!(
        "[roles.r]\ndescription = \"{label}\"\nprovider = \"{provider}\"\nmodel = \"{model}\"\n\
         base_url = \"{base}\"\napi_key_env = \"{key}\"\ncommand = [\"{exe}\"]\nrestart = \"never\"\n",
        label = cli.label,
        provider = cli.provider,
        model = cli.model,
        base = mock.base_url(),
        key = cli.key_var,
        exe = exe.display(),
    )
}

/// A team file of one teammate running `cli`, in a new workspace (a team name ending in
/// `-nobox` runs without the sandbox); the workspace.
fn team_file(sb: &Sandbox, team: &str, cli: &Cli, mock: &MockModel, exe: &Path) -> Result<PathBuf> {
    let ws = sb.root.join(team);
    std::fs::create_dir_all(&ws)?;
    std::fs::write(
        ws.join("agent-team.toml"),
        format!(
            "name = \"{team}\"\nboard = false\n{}\n{}\n[[teammates]]\nname = \"{}\"\nrole = \"r\"\n",
            if team.ends_with("-nobox") {
                "sandbox = \"off\"\n"
            } else {
                ""
            },
            role(cli, mock, exe),
            cli.name
        ),
    )?;
    Ok(ws)
}

/// Peak memory of a process tree, split into our processes (binaries from the bench's bin dir,
/// and the shell a CLI runs our hook in) and the CLI's own.
#[derive(Debug, Default, Clone)]
struct Mem {
    ours_pss_kb: u64,
    /// Of that, what is not our binaries' code (`Pss_Anon`: heap, stacks, relocated data).
    ours_anon_kb: u64,
    ours_rss_kb: u64,
    cli_pss_kb: u64,
    cli_rss_kb: u64,
    /// What of ours was seen (`agent-team-worker`, `agent-team-bridge`, ...), each with its
    /// peak PSS in KiB.
    ours_seen: std::collections::BTreeMap<String, u64>,
}

impl Mem {
    fn max(&mut self, o: &Mem) {
        self.ours_pss_kb = self.ours_pss_kb.max(o.ours_pss_kb);
        self.ours_anon_kb = self.ours_anon_kb.max(o.ours_anon_kb);
        self.ours_rss_kb = self.ours_rss_kb.max(o.ours_rss_kb);
        self.cli_pss_kb = self.cli_pss_kb.max(o.cli_pss_kb);
        self.cli_rss_kb = self.cli_rss_kb.max(o.cli_rss_kb);
        for (name, kb) in &o.ours_seen {
            let peak = self.ours_seen.entry(name.clone()).or_default();
            *peak = (*peak).max(*kb);
        }
    }
}

/// `pid`'s command line, words.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// The name of one of our processes (`agent-team-bridge`), or `None` for the CLI's.
fn ours(pid: u32, bins: &Path) -> Option<String> {
    let words = cmdline(pid);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if exe.starts_with(bins) {
        let sub = words.get(1).filter(|w| !w.starts_with('-')).cloned();
        return Some(match sub {
            Some(s) if name(&exe) == "agent-team" => format!("agent-team {s}"),
            _ => name(&exe),
        });
    }
    // The shell a CLI runs `agent-team-bridge hook stop` in.
    let ours_in_words = words
        .iter()
        .any(|w| w.contains(&bins.join("agent-team").display().to_string()));
    ours_in_words.then(|| format!("{} (hook shell)", name(&exe)))
}

/// Samples the tree under `root` every 30 ms until `done` says so or `limit` passes.
fn sample(root: u32, bins: &Path, limit: Duration, mut done: impl FnMut() -> bool) -> Mem {
    let mut peak = Mem::default();
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        let mut now = Mem::default();
        for pid in tree(root) {
            let (p, r) = (pss_kb(pid), rss_kb(pid));
            if r == 0 {
                continue;
            }
            match ours(pid, bins) {
                Some(n) => {
                    now.ours_pss_kb += p;
                    now.ours_anon_kb += rollup_kb(pid, "Pss_Anon:");
                    now.ours_rss_kb += r;
                    *now.ours_seen.entry(n).or_default() += p;
                }
                None => {
                    now.cli_pss_kb += p;
                    now.cli_rss_kb += r;
                }
            }
        }
        peak.max(&now);
        std::thread::sleep(Duration::from_millis(30));
    }
    peak
}

/// User + system CPU ticks of the tree under `root`.
fn cpu_ticks(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .map(|(_, rest)| {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    n(11) + n(12)
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until the tree under `root` has used no CPU for `quiet` (at most `limit`): the CLI
/// has made its tool call and waits. Whether it got there.
fn quiescent(root: u32, quiet: Duration, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut last = cpu_ticks(root);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        let now = cpu_ticks(root);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return true;
        }
    }
    false
}

/// Waits until the mock has seen more than `n` requests from `name`, or `limit`, or `gone`
/// says the CLI ended; the arrival of request `n` (0-based).
fn request_after(
    mock: &MockModel,
    name: &str,
    n: usize,
    limit: Duration,
    mut gone: impl FnMut() -> bool,
) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = mock.request_times(name).get(n) {
            return Some(*t);
        }
        if Instant::now() > deadline || gone() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry but no longer runs anything.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The last lines of a log, for an error.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The launch of `cli` alone: the worker's plan for a teammate, without the team's MCP server
/// and `Stop` hook, with the key the teammate's worker would read from its environment.
fn alone_launch(
    cli: &Cli,
    ws: &Path,
    home: &Path,
    config: &agent_team_config::TeamConfig,
) -> Result<agent_team_worker::external::Launch> {
    let role = config
        .role("r")
        .cloned()
        .context("the team file has no role r")?;
    let agent = agent_team_worker::AgentEnv {
        socket: ws.join("no-daemon.sock"),
        team: config.name.clone(),
        name: cli.name.to_string(),
        secret: "unused".into(),
        incarnation: 1,
        log_file: None,
        workspace: None,
        member: Default::default(),
        external: true,
        healer: None,
    };
    let bridge = bin_dir().join("agent-team-bridge");
    let mut launch =
        agent_team_worker::external::plan(&agent, config, &role, home, &bridge, true, None)
            .map_err(|e| anyhow!("{e}"))?;
    for (path, contents) in &mut launch.files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match (cli.provider, file.as_str()) {
            // Every provider's plan writes it; Claude Code reads it (`--mcp-config`).
            (_, "mcp.json") => *contents = json!({"mcpServers": {}}).to_string(),
            ("claude-code", "settings.json") => *contents = "{}".into(),
            ("claude-code", ".claude.json") => {
                // The key's tail the worker approves (it read an unset variable here).
                let mut v: serde_json::Value = serde_json::from_str(contents)?;
                let tail: String = cli
                    .key
                    .chars()
                    .skip(cli.key.len().saturating_sub(20))
                    .collect();
                v["customApiKeyResponses"]["approved"] = json!([tail]);
                *contents = v.to_string();
            }
            ("codex", "config.toml") => {
                let start = contents.find("[mcp_servers.team]");
                let end = contents.find("[analytics]");
                if let (Some(s), Some(e)) = (start, end) {
                    contents.replace_range(s..e, "");
                }
            }
            ("copilot", "copilot-mcp.json") => *contents = json!({"mcpServers": {}}).to_string(),
            ("copilot", "team.json") => *contents = json!({"version": 1, "hooks": {}}).to_string(),
            ("opencode", "agent-team-plugin.js") => *contents = String::new(),
            ("opencode", "opencode.json") => {
                let mut v: serde_json::Value = serde_json::from_str(contents)?;
                if let Some(m) = v.as_object_mut() {
                    m.remove("mcp");
                    m.remove("plugin");
                }
                *contents = v.to_string();
            }
            ("qwen-code" | "gemini-cli", "settings.json") => {
                let mut v: serde_json::Value = serde_json::from_str(contents)?;
                if let Some(m) = v.as_object_mut() {
                    m.remove("mcpServers");
                    m.remove("hooks");
                }
                *contents = v.to_string();
            }
            _ => {}
        }
    }
    // If the plan's shape changed, measuring it would time our server as the CLI's own.
    let ours = bridge.display().to_string();
    if let Some((p, _)) = launch.files.iter().find(|(_, c)| c.contains(&ours)) {
        bail!(
            "{} would still start agent-team-bridge in {}: the alone launch needs updating",
            cli.label,
            p.display()
        );
    }
    let key_var = match cli.provider {
        "claude-code" => "ANTHROPIC_API_KEY",
        "gemini-cli" => "GEMINI_API_KEY",
        "copilot" => "COPILOT_PROVIDER_API_KEY",
        "codex" | "opencode" => cli.key_var,
        _ => "OPENAI_API_KEY",
    };
    launch.env.push((key_var.into(), cli.key.into()));
    Ok(launch)
}

/// Claude Code's pinned command and its launch alone in `ws` against `mock` (its private home
/// seeded by our adapter, without our MCP server or hooks; the key the mock expects), for the
/// figures of Claude Code's own teams (`peer_bench`, `cost_bench`).
pub(crate) fn claude_code_alone(
    ws: &Path,
    mock: &MockModel,
) -> Result<(PathBuf, agent_team_worker::external::Launch)> {
    let cli = CLIS
        .iter()
        .find(|c| c.provider == "claude-code")
        .context("no Claude Code in the bench's CLIs")?;
    let exe = installed(cli).map_err(|why| anyhow!("Claude Code is not installed: {why}"))?;
    std::fs::create_dir_all(ws)?;
    let team = ws
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the workspace has no name")?;
    std::fs::write(
        ws.join("agent-team.toml"),
        format!(
            "name = \"{team}\"\nboard = false\nsandbox = \"off\"\n{}\n[[teammates]]\nname = \"{}\"\nrole = \"r\"\n",
            role(cli, mock, &exe),
            cli.name
        ),
    )?;
    let config = agent_team_config::load(&ws.join("agent-team.toml"))?;
    let launch = alone_launch(cli, ws, &ws.join("cli-home"), &config)?;
    agent_team_worker::external::write_files(&launch).map_err(|e| anyhow!("{e}"))?;
    Ok((exe, launch))
}

/// One run of `cli` alone: spawn of its headless command → its first model request, and the
/// peak memory of its tree while the mock holds the answer.
fn alone_run(sb: &Sandbox, cli: &Cli, exe: &Path, i: usize) -> Result<(f64, Mem)> {
    let mock = mock_for(cli)?;
    mock.script(
        cli.name,
        vec![Step::Delay(HOLD, Box::new(Step::Text("Done.".into())))],
    );
    let team = format!("alone-{}{i}", cli.name);
    let ws = team_file(sb, &team, cli, &mock, exe)?;
    let config = agent_team_config::load(&ws.join("agent-team.toml"))?;
    let home = ws.join("cli-home");
    let launch = alone_launch(cli, &ws, &home, &config)?;
    agent_team_worker::external::write_files(&launch).map_err(|e| anyhow!("{e}"))?;
    let log = ws.join("cli.log");
    let out = std::fs::File::create(&log)?;
    let stdin = match &launch.stdin {
        Some(f) => Stdio::from(std::fs::File::open(f)?),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(exe);
    cmd.args(&launch.args)
        .current_dir(&launch.cwd)
        .stdin(stdin)
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
            cmd.env_remove(k);
        }
    }
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = child.id();
    let first = request_after(&mock, cli.name, 0, FIRST_REQUEST_LIMIT, || !pid_alive(pid));
    let Some(first) = first else {
        stop_group(&mut child);
        bail!("{} alone made no model request: {}", cli.label, tail(&log));
    };
    let mut exited = false;
    let mem = sample(pid, &bin_dir(), Duration::from_secs(20), || {
        exited = exited || matches!(child.try_wait(), Ok(Some(_)));
        exited
    });
    stop_group(&mut child);
    Ok(((first - t0).as_secs_f64(), mem))
}

/// Ends a child's process group (if it is still there) and reaps the child.
fn stop_group(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
}

/// A team of one CLI teammate brought up with `agent-team up` on the process backend.
struct Up {
    ws: PathBuf,
    team: String,
    /// When `up` was started, and the wall-clock time then (to place the daemon's events).
    started: Instant,
    started_wall_us: u128,
    /// The teammate's worker.
    worker: u32,
}

impl Up {
    fn start(sb: &Sandbox, cli: &Cli, exe: &Path, mock: &MockModel, team: &str) -> Result<Up> {
        let ws = team_file(sb, team, cli, mock, exe)?;
        sb.teams.borrow_mut().push(ws.clone());
        let started_wall_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
        let started = Instant::now();
        sb.ok(&ws, &["up", "--backend", "process", "--detach"])?;
        let tp = sb.paths.team(team)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let worker = loop {
            let mut c = Client::operator(&tp)?;
            if let Reply::Agents { agents } = c.call(Request::Agents)?
                && let Some(pid) = agents
                    .iter()
                    .find(|a| a.name == cli.name)
                    .and_then(|a| a.pid)
            {
                break pid;
            }
            if Instant::now() > deadline {
                bail!("{}'s worker did not start within 20 s", cli.name);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Ok(Up {
            ws,
            team: team.to_string(),
            started,
            started_wall_us,
            worker,
        })
    }

    /// When the supervisor launched the teammate: its `starting` event, placed on this
    /// process's clock (the event's wall-clock time has millisecond precision).
    fn spawned(&self, sb: &Sandbox, name: &str) -> Result<Instant> {
        let mut c = Client::operator(&sb.paths.team(&self.team)?)?;
        let Reply::Events { events } = c.call(Request::Events {
            since: 0,
            limit: None,
        })?
        else {
            bail!("no events");
        };
        let ms = events
            .iter()
            .find(|e| {
                e.agent_id == name
                    && matches!(
                        e.event,
                        Event::AgentStatus {
                            status: AgentStatus::Starting,
                            ..
                        }
                    )
            })
            .map(|e| e.ts.millis())
            .context("no starting event for the teammate")?;
        let at_us = ms as i128 * 1000 - self.started_wall_us as i128;
        Ok(if at_us >= 0 {
            self.started + Duration::from_micros(at_us as u64)
        } else {
            self.started - Duration::from_micros((-at_us) as u64)
        })
    }

    /// The teammate's status changes after its spawn, in ms from it (`running +812`): when
    /// its MCP server joined, when its turn ended.
    fn statuses(&self, sb: &Sandbox, name: &str) -> Result<String> {
        let mut c = Client::operator(&sb.paths.team(&self.team)?)?;
        let Reply::Events { events } = c.call(Request::Events {
            since: 0,
            limit: None,
        })?
        else {
            bail!("no events");
        };
        let mut start = None;
        let mut out = Vec::new();
        for e in events.iter().filter(|e| e.agent_id == name) {
            if let Event::AgentStatus { status, .. } = &e.event {
                let t = *start.get_or_insert(e.ts.millis());
                out.push(format!("{status} +{}", e.ts.millis().saturating_sub(t)));
            }
        }
        Ok(out.join(", "))
    }

    fn log(&self, sb: &Sandbox, name: &str) -> String {
        sb.paths
            .team(&self.team)
            .map(|tp| tail(&tp.logs.join(format!("{name}.log"))))
            .unwrap_or_default()
    }
}

/// One run as a teammate: (spawn → first request, `up` → first request, memory, processes
/// left as `down` returned, 5 s later).
struct TeamRun {
    /// The teammate's status changes and its first request, in ms from its spawn.
    statuses: String,
    spawn: f64,
    up: f64,
    mem: Mem,
    left: (usize, usize),
}

/// One run of `cli` as a teammate (`boxed`: in the team's sandbox, as by default).
fn team_run(sb: &Sandbox, cli: &Cli, exe: &Path, i: usize, boxed: bool) -> Result<TeamRun> {
    let mock = mock_for(cli)?;
    mock.script(
        cli.name,
        vec![Step::Delay(HOLD, Box::new(Step::Text("Done.".into())))],
    );
    let suffix = if boxed { "" } else { "-nobox" };
    let up = Up::start(
        sb,
        cli,
        exe,
        &mock,
        &format!("team-{}{i}{suffix}", cli.name),
    )?;
    let worker = up.worker;
    let first = request_after(&mock, cli.name, 0, FIRST_REQUEST_LIMIT, || {
        !pid_alive(worker)
    })
    .ok_or_else(|| {
        anyhow!(
            "{} as a teammate made no model request: {}",
            cli.label,
            up.log(sb, cli.name)
        )
    })?;
    let spawned = up.spawned(sb, cli.name)?;
    let first_ms = (first - spawned).as_millis();
    // Until its turn ended (the hook ran) and the worker exited.
    let mem = sample(worker, &bin_dir(), Duration::from_secs(20), || {
        !pid_alive(worker)
    });
    let statuses = format!(
        "{}; first model request +{first_ms}",
        up.statuses(sb, cli.name)?
    );
    let left = sb.down(&up.ws)?;
    Ok(TeamRun {
        statuses,
        spawn: (first - spawned).as_secs_f64(),
        up: (first - up.started).as_secs_f64(),
        mem,
        left,
    })
}

/// Delivery latencies of one CLI teammate.
struct Latency {
    /// The CLI's own round trip of a tool call that returns at once.
    round_trip: f64,
    /// `send` → next request, the CLI waiting in `wait_for_messages`.
    idle: Vec<f64>,
    /// (`send` → next request, the turn's end → next request), sent mid-turn.
    busy: Vec<(f64, f64)>,
    /// Why busy was not measured or stopped.
    busy_na: Option<String>,
    left: (usize, usize),
}

fn call(tool: &str, args: serde_json::Value) -> Step {
    Step::Tools(vec![(tool.to_string(), args)])
}

fn latency_run(sb: &Sandbox, cli: &Cli, exe: &Path) -> Result<Latency> {
    let mock = mock_for(cli)?;
    let wait = format!("{}wait_for_messages", cli.team_prefix);
    let wait = wait.as_str();
    let mut steps = Vec::new();
    if cli.selects_tools {
        steps.push(call(
            "tool_search",
            json!({"query": format!("select:{wait}")}),
        ));
    }
    let base = steps.len() + 1;
    // The floor: a wait that returns at once ("no messages"), the CLI's own tool round trip.
    steps.push(call(wait, json!({"timeout_s": 0})));
    for _ in 0..IDLE_SAMPLES {
        steps.push(call(wait, json!({"timeout_s": 30})));
    }
    let gates: Vec<Gate> = (0..if cli.hook { BUSY_SAMPLES } else { 0 })
        .map(|_| Gate::new())
        .collect();
    for g in &gates {
        steps.push(Step::Gate(
            g.clone(),
            Box::new(Step::Text("Working on it.".into())),
        ));
    }
    steps.push(Step::Text("Done.".into()));
    mock.script(cli.name, steps);
    let result = measure_latency(sb, cli, exe, &mock, base, &gates);
    for g in &gates {
        g.open();
    }
    result
}

fn measure_latency(
    sb: &Sandbox,
    cli: &Cli,
    exe: &Path,
    mock: &MockModel,
    base: usize,
    gates: &[Gate],
) -> Result<Latency> {
    let up = Up::start(sb, cli, exe, mock, &format!("lat-{}", cli.name))?;
    let worker = up.worker;
    let gone = || !pid_alive(worker);
    let limit = Duration::from_secs(40);
    let err = |what: &str| anyhow!("{}: {what}: {}", cli.label, up.log(sb, cli.name));
    let t_floor0 = request_after(mock, cli.name, base - 1, FIRST_REQUEST_LIMIT, gone)
        .ok_or_else(|| err("no first wait_for_messages request"))?;
    let t_floor1 = request_after(mock, cli.name, base, limit, gone)
        .ok_or_else(|| err("no request after the quick wait"))?;
    let round_trip = (t_floor1 - t_floor0).as_secs_f64();
    let mut idle = Vec::new();
    for k in 0..IDLE_SAMPLES {
        let waiting = base + k;
        request_after(mock, cli.name, waiting, limit, gone)
            .ok_or_else(|| err("no request answered with a wait"))?;
        quiescent(worker, Duration::from_millis(150), Duration::from_secs(3));
        let body = format!("note idle-{k} for you");
        let t0 = Instant::now();
        sb.ok(&up.ws, &["send", cli.name, &body])?;
        let t1 = request_after(mock, cli.name, waiting + 1, limit, gone)
            .ok_or_else(|| err("the idle message never reached the model"))?;
        let carried = mock
            .requests(cli.name)
            .get(waiting + 1)
            .is_some_and(|r| r.to_string().contains(&body));
        if !carried {
            bail!(
                "{}: the request after the wait did not carry {body:?}",
                cli.label
            );
        }
        idle.push((t1 - t0).as_secs_f64());
    }
    let mut busy = Vec::new();
    let mut busy_na = (!cli.hook).then(|| {
        "no turn-end hook: a message sent mid-turn waits until its model calls wait_for_messages"
            .to_string()
    });
    for (j, gate) in gates.iter().enumerate() {
        let held = base + IDLE_SAMPLES + j;
        if request_after(mock, cli.name, held, limit, gone).is_none() {
            busy_na = Some(format!(
                "no request {held} to hold: {}",
                up.log(sb, cli.name)
            ));
            break;
        }
        let body = format!("note busy-{j} for you");
        let t_send = Instant::now();
        sb.ok(&up.ws, &["send", cli.name, &body])?;
        // The message reaches the CLI's MCP server before the turn ends. It stays `queued`
        // there until the CLI has it (nothing to watch), so give the push a moment: the
        // idle figure above, end to end, is tens of milliseconds.
        std::thread::sleep(Duration::from_millis(200));
        let t_open = Instant::now();
        gate.open();
        let Some(t1) = request_after(mock, cli.name, held + 1, Duration::from_secs(20), gone)
        else {
            busy_na = Some(format!(
                "after its turn ended the message did not reach the model within 20 s{}",
                if gone() {
                    " (the CLI ended its run)"
                } else {
                    ""
                }
            ));
            break;
        };
        let carried = mock
            .requests(cli.name)
            .get(held + 1)
            .is_some_and(|r| r.to_string().contains(&body));
        if !carried {
            busy_na = Some(format!("the request after the turn did not carry {body:?}"));
            break;
        }
        busy.push(((t1 - t_send).as_secs_f64(), (t1 - t_open).as_secs_f64()));
    }
    for g in gates {
        g.open();
    }
    // The script's last answer ends the turn; with nothing queued the CLI ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_alive(worker) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = sb.down(&up.ws)?;
    Ok(Latency {
        round_trip,
        idle,
        busy,
        busy_na,
        left,
    })
}

/// Runs the section.
pub fn run(r: &mut Report, dir: &Path, _quick: bool) -> Result<()> {
    println!("== agent CLIs as teammates (issue 16) ==");
    crate::link_order::note(r, &crate::daemon_bench::bin_dir());
    let sb = Sandbox::new(dir)?;
    // Each run costs a CLI's start (0.5–3 s); the starts spread ±40 % on a loaded machine.
    let rounds = 5;
    let mut left_total = (0usize, 0usize);
    let mut downs = 0;
    // `BENCH_CLIS=claude-code,codex`: only these (by provider name).
    let only = std::env::var("BENCH_CLIS").ok();
    let picked = |c: &Cli| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p.trim() == c.provider))
    };
    for cli in CLIS.iter().filter(|c| picked(c)) {
        let started = Instant::now();
        let exe = match installed(cli) {
            Ok(exe) => exe,
            Err(why) => {
                r.add(
                    &format!("{}: start → first model request", cli.label),
                    "not installed".into(),
                    "-".into(),
                    "-".into(),
                    "installed",
                    false,
                );
                r.note(format!("{} was not measured: {why}", cli.label));
                continue;
            }
        };
        let (mut alone, mut team, mut up) = (Vec::new(), Vec::new(), Vec::new());
        let mut unboxed = Vec::new();
        let (mut alone_mem, mut team_mem) = (Mem::default(), Mem::default());
        // Alternated, so a change of the machine's load moves both alike.
        for i in 0..rounds {
            let (a, m) = alone_run(&sb, cli, &exe, i)?;
            alone.push(a);
            alone_mem.max(&m);
            // The same without the sandbox: what of the difference is the boundary's.
            let nb = team_run(&sb, cli, &exe, i, false)?;
            unboxed.push(nb.spawn);
            left_total.0 += nb.left.0;
            left_total.1 += nb.left.1;
            downs += 1;
            let t = team_run(&sb, cli, &exe, i, true)?;
            team.push(t.spawn);
            up.push(t.up);
            team_mem.max(&t.mem);
            left_total.0 += t.left.0;
            left_total.1 += t.left.1;
            downs += 1;
            if i == 0 {
                r.note(format!(
                    "{} as a teammate, first run, ms from the spawn: {}",
                    cli.label, t.statuses
                ));
            }
        }
        let (a, b, u) = (
            pct(&mut alone, 50.0),
            pct(&mut team, 50.0),
            pct(&mut up, 50.0),
        );
        let over = b - a;
        r.add(
            &format!(
                "{}: spawn → first model request as a teammate (median of {rounds})",
                cli.label
            ),
            dur(b),
            format!("{} alone", dur(a)),
            format!("{:+.0} ms, {:+.1} %", over * 1e3, over / a * 100.0),
            "≤ +5 % of the CLI's own start",
            over <= 0.05 * a,
        );
        let nb = pct(&mut unboxed, 50.0);
        r.note(format!(
            "{}: as a teammate without the sandbox (`sandbox = \"off\"`), median of {rounds}: {} \
             ({:+.0} ms, {:+.1} % of alone): the rest of the difference above is the boundary's",
            cli.label,
            dur(nb),
            (nb - a) * 1e3,
            (nb - a) / a * 100.0
        ));
        let mib = |kb: u64| kb as f64 / 1024.0;
        let ours = mib(team_mem.ours_pss_kb);
        r.add(
            &format!(
                "  our processes beside {} (worker, MCP server, hook), peak PSS",
                cli.label
            ),
            format!("{ours:.1} MiB"),
            format!("{:.1} MiB the CLI's own", mib(team_mem.cli_pss_kb)),
            format!(
                "{:.1} %",
                ours / mib(team_mem.cli_pss_kb).max(0.001) * 100.0
            ),
            "≤ 5 MiB",
            ours <= 5.0,
        );
        r.note(format!(
            "{}: of our processes' peak PSS, {:.1} MiB is private memory (Pss_Anon) and the \
             rest clean pages of our binaries' code (shared with every process running them)",
            cli.label,
            mib(team_mem.ours_anon_kb)
        ));
        r.note(format!(
            "{}: our processes' peak PSS each: {}",
            cli.label,
            team_mem
                .ours_seen
                .iter()
                .map(|(n, kb)| format!("{n} {:.1} MiB", mib(*kb)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        r.note(format!(
            "{}: `up` → first model request {} (median); peak RSS ours {:.1} MiB, the CLI's {:.1} MiB as a teammate, {:.1} MiB (PSS {:.1} MiB) alone",
            cli.label,
            dur(u),
            mib(team_mem.ours_rss_kb),
            mib(team_mem.cli_rss_kb),
            mib(alone_mem.cli_rss_kb),
            mib(alone_mem.cli_pss_kb),
        ));
        let lat = latency_run(&sb, cli, &exe)?;
        left_total.0 += lat.left.0;
        left_total.1 += lat.left.1;
        downs += 1;
        let mut idle = lat.idle.clone();
        let idle50 = pct(&mut idle, 50.0);
        r.add(
            &format!(
                "  `send` → {}'s next model request, idle in wait_for_messages (median of {})",
                cli.label,
                lat.idle.len()
            ),
            dur(idle50),
            format!("{} its tool round trip", dur(lat.round_trip)),
            format!("{:.2}×", idle50 / lat.round_trip),
            "-",
            true,
        );
        if lat.busy.is_empty() {
            r.add(
                &format!(
                    "  `send` → {}'s next model request, busy (mid-turn)",
                    cli.label
                ),
                "n/a".into(),
                "-".into(),
                "-".into(),
                "-",
                true,
            );
        } else {
            let mut from_end: Vec<f64> = lat.busy.iter().map(|b| b.1).collect();
            let mut from_send: Vec<f64> = lat.busy.iter().map(|b| b.0).collect();
            let end50 = pct(&mut from_end, 50.0);
            r.add(
                &format!(
                    "  `send` → {}'s next model request, busy: from its turn's end (Stop hook; median of {})",
                    cli.label,
                    lat.busy.len()
                ),
                dur(end50),
                format!("{} its tool round trip", dur(lat.round_trip)),
                format!("{:.2}×", end50 / lat.round_trip),
                "-",
                true,
            );
            r.note(format!(
                "{}: busy, from `send` (the mock held the turn until the message was at the MCP server) to the request carrying it: {} (median)",
                cli.label,
                dur(pct(&mut from_send, 50.0))
            ));
        }
        if let Some(why) = &lat.busy_na {
            r.note(format!("{} busy delivery: {why}", cli.label));
        }
        println!(
            "  ({} took {:.1} s)",
            cli.label,
            started.elapsed().as_secs_f64()
        );
    }
    r.add(
        &format!("processes of the CLIs (and ours) left after `down` ({downs} teams)"),
        format!("{}", left_total.0),
        "-".into(),
        "-".into(),
        "0",
        left_total.0 == 0,
    );
    if left_total.0 > 0 {
        r.note(format!(
            "{} processes were still there as `down` returned, {} of them 5 s later",
            left_total.0, left_total.1
        ));
    }
    Ok(())
}
