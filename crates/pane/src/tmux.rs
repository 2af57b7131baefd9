//! The tmux backend: one pane per agent in a session named after the team, by default on a
//! private tmux server whose socket lives in the runtime dir (`AGENT_TEAM_TMUX_SOCKET` overrides
//! it), or in a new window of the user's own session (`up --here`).
//!
//! Agents are launched by their command line (never `send-keys`), pane ids come back with
//! `-P -F`, `remain-on-exit` keeps a dead pane with its exit status, and `respawn-pane -k`
//! restarts in place with the same pane id. Commands are built with `tmux_interface` and run with
//! a timeout: a query that times out is "unknown", never "dead".

use crate::procs::stop_group;
use crate::{ExitInfo, LaunchSpec, Launched, Liveness, PaneBackend, PaneError, exec_line};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
/// How long a pasted line is left to settle in an interactive program, after it read the
/// paste, before its Enter.
const PASTE_SETTLE: Duration = Duration::from_millis(300);
/// How long a paste waits for the pane's program to read keys, and its Enter for the program
/// to have read the paste (a program that never does gets them anyway, after this).
const PASTE_READY_WAIT: Duration = Duration::from_secs(10);
/// How long the Enter waits to see the paste in the program's input queue first: tmux writes
/// it to the terminal on its own loop, a moment after its command returned. A quick program
/// may have read it between two looks, so it is not waited for longer.
const PASTE_ARRIVE_WAIT: Duration = Duration::from_millis(200);

/// A pane's terminal, opened to look at, never to read from or to own: whether its program
/// reads keys one by one yet, and whether it has read what was typed.
struct PaneTty(std::fs::File);

impl PaneTty {
    /// Opens `path` without making it anyone's controlling terminal.
    fn open(path: &Path) -> Option<PaneTty> {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
            .open(path)
            .ok()
            .map(PaneTty)
    }

    /// Whether the terminal is out of line mode (its program reads each key as it comes).
    fn reads_keys(&self) -> bool {
        rustix::termios::tcgetattr(&self.0)
            .is_ok_and(|t| !t.local_modes.contains(rustix::termios::LocalModes::ICANON))
    }

    /// Bytes typed that its program has not read yet (none when that cannot be told).
    fn unread(&self) -> u64 {
        rustix::io::ioctl_fionread(&self.0).unwrap_or(0)
    }

    /// Polls `cond` until it holds or `limit` has passed.
    fn wait_until(&self, limit: Duration, cond: impl Fn(&PaneTty) -> bool) {
        let deadline = std::time::Instant::now() + limit;
        while !cond(self) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

use tmux_interface::{
    DisplayMessage, KillPane, KillServer, KillWindow, ListPanes, NewSession, NewWindow,
    PasteBuffer, RespawnPane, SelectLayout, SelectPane, SendKeys, SetBuffer, SetOption,
    SplitWindow, Tmux, TmuxCommands,
};

/// The pane option naming the agent a pane belongs to.
const OWNER_OPTION: &str = "@agent-team-agent";
/// A pane's owner mark not yet written: (pane, agent, title, colour).
type Mark = (String, String, String, Option<String>);
/// The pane option holding the agent's colour, which the border format draws its title in.
const COLOR_OPTION: &str = "@agent-team-color";
/// The pane option holding the title the daemon gave a pane. The border draws it, not
/// `pane_title`: the program in a pane can set that one itself (OSC 0/2, which tmux 3.3 cannot
/// refuse), and an agent CLI once drew `FAKE: request 9 approved` there.
const TITLE_OPTION: &str = "@agent-team-title";
/// The pane border: the title the daemon gave the pane, in the agent's colour when it has one.
const BORDER_FORMAT: &str =
    " #{?@agent-team-color,#[fg=#{@agent-team-color}],}#{@agent-team-title}#[default] ";

/// The commands that title `pane` `title`: tmux's own title (what `list-panes` and a terminal
/// show) and the option the border draws.
fn title_cmds<'a>(pane: &'a str, title: &'a str) -> [tmux_interface::TmuxCommand<'a>; 2] {
    [
        SelectPane::new().target_pane(pane).title(title).build(),
        SetOption::new()
            .pane()
            .target_pane(pane)
            .option(TITLE_OPTION)
            .value(title)
            .build(),
    ]
}

/// What the `--here` window runs until the first agent replaces it.
const PLACEHOLDER: &str = "sleep 86400";

/// The oldest tmux this backend works with.
pub const MIN_VERSION: (u32, u32) = (3, 2);
/// How long one tmux command may take before its answer counts as unknown.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The size given to detached sessions (tmux would otherwise use 80x24).
pub const DETACHED_SIZE: (usize, usize) = (240, 64);

/// How the panes are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmuxLayout {
    /// The first pane (the leader) on the left, the others stacked on the right.
    MainVertical,
    /// An even grid.
    Tiled,
    /// The leader on top, the others side by side below (tmux's `main-horizontal`).
    MainHorizontal,
    /// Every pane side by side (tmux's `even-horizontal`).
    EvenHorizontal,
    /// Every pane stacked (tmux's `even-vertical`).
    EvenVertical,
    /// One window per agent.
    Windows,
}

/// Where the team's panes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The tmux server's socket.
    pub socket: PathBuf,
    /// The session.
    pub session: String,
    /// With `--here`: the window in the user's session; the server is not ours.
    pub window: Option<String>,
    /// Whether the server is ours (private): `shutdown` kills it.
    pub private_server: bool,
}

/// Why a tmux command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmuxFailure {
    /// It did not answer within the timeout.
    Timeout,
    /// No server runs on the socket.
    NoServer,
    /// tmux said something else.
    Failed(String),
}

impl std::fmt::Display for TmuxFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TmuxFailure::Timeout => write!(f, "tmux did not answer within {} s", TIMEOUT.as_secs()),
            TmuxFailure::NoServer => write!(f, "no tmux server is running"),
            TmuxFailure::Failed(m) => write!(f, "tmux: {m}"),
        }
    }
}

/// `tmux -V`, parsed, or an error saying what is missing or too old.
pub fn version() -> Result<(u32, u32, String), PaneError> {
    let out = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .map_err(|e| {
            PaneError::Tool(format!(
                "tmux is not installed ({e}); install it (apt-get install tmux, brew install tmux)"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let v = parse_version(&text)
        .ok_or_else(|| PaneError::Tool(format!("cannot understand `tmux -V`: {text:?}")))?;
    if (v.0, v.1) < MIN_VERSION {
        return Err(PaneError::Tool(format!(
            "{text} is too old: agent-team needs tmux {}.{} or newer",
            MIN_VERSION.0, MIN_VERSION.1
        )));
    }
    Ok((v.0, v.1, text))
}

/// Parses `tmux 3.3a` / `tmux next-3.4` / `tmux master` into (major, minor).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().nth(1)?;
    if v == "master" {
        return Some((99, 0));
    }
    let v = v.trim_start_matches("next-");
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor_txt: String = it
        .next()
        .unwrap_or("0")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor_txt.parse().unwrap_or(0)))
}

/// Opens a pane in the team's window that runs `command` (the live board) and is titled
/// `title`; it is no agent's, and goes with the window when the team is stopped. Returns its
/// pane id.
pub fn open_side_pane(
    place: &Placement,
    cwd: &Path,
    command: &str,
    title: &str,
) -> Result<String, PaneError> {
    let target = match &place.window {
        Some(w) => w.clone(),
        None => format!("{}:", place.session),
    };
    let mut cmds = TmuxCommands::new();
    cmds.push(
        SplitWindow::new()
            .detached()
            .horizontal()
            .print()
            .format("#{pane_id}")
            .target_pane(target)
            .start_directory(cwd.display().to_string())
            .shell_command(command),
    );
    let out = run(&place.socket, None, cmds).map_err(|e| PaneError::Tool(e.to_string()))?;
    let pane = out.trim().to_string();
    if !pane.starts_with('%') {
        return Err(PaneError::Tool(format!(
            "tmux printed {out:?}, not a pane id"
        )));
    }
    let mut cmds = TmuxCommands::new();
    for c in title_cmds(pane.as_str(), title) {
        cmds.push(c);
    }
    cmds.push(
        DisplayMessage::new()
            .print()
            .target_pane(pane.as_str())
            .message("#{window_id}"),
    );
    let window = run(&place.socket, None, cmds).map_err(|e| PaneError::Tool(e.to_string()))?;
    // Marked as the board of its window, and the window laid out again with it (the split's
    // own hook ran before the mark).
    let mut cmds = TmuxCommands::new();
    cmds.push(raw(
        "set-option",
        &["-p", "-t", &pane, BOARD_OPTION, window.trim()],
    ));
    cmds.push(raw("set-hook", &["-R", "-w", "-t", &pane, LAYOUT_HOOKS[0]]));
    run(&place.socket, None, cmds).map_err(|e| PaneError::Tool(e.to_string()))?;
    Ok(pane)
}

/// Runs tmux commands on a server, with `TMUX`/`TMUX_PANE` removed and a timeout.
pub fn run(
    socket: &Path,
    config: Option<&Path>,
    commands: TmuxCommands<'_>,
) -> Result<String, TmuxFailure> {
    let mut tmux = Tmux::new().socket_path(socket.display().to_string());
    if let Some(c) = config {
        tmux = tmux.file(c.display().to_string());
    }
    let mut cmd = tmux.commands(commands).into_command();
    cmd.env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| TmuxFailure::Failed(format!("cannot run tmux: {e}")))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(TmuxFailure::Failed(e.to_string())),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(TmuxFailure::Timeout);
        }
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if err.contains("no server running")
        || err.contains("error connecting")
        || err.contains("No such file")
    {
        Err(TmuxFailure::NoServer)
    } else {
        Err(TmuxFailure::Failed(err))
    }
}

/// What `list-panes` says of each pane: id, pid, dead, and how a dead one ended. The exit
/// fields are tagged because tmux prints them empty while unknown.
const PANE_STATE_FORMAT: &str =
    "#{pane_id} #{pane_pid} #{pane_dead} s#{pane_dead_status} g#{pane_dead_signal}";

/// One pane as [`PANE_STATE_FORMAT`] printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PaneState {
    pid: u32,
    dead: bool,
    exit: ExitInfo,
}

/// Parses one line of [`PANE_STATE_FORMAT`] into the pane id and its state.
fn parse_pane_state(line: &str) -> Option<(String, PaneState)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let tagged = |tag: char| {
        f.iter()
            .skip(3)
            .find_map(|x| x.strip_prefix(tag))
            .and_then(|v| v.parse().ok())
    };
    let state = PaneState {
        pid: f.get(1)?.parse().ok()?,
        dead: *f.get(2)? == "1",
        exit: ExitInfo {
            code: tagged('s'),
            signal: tagged('g'),
        },
    };
    Some((f.first()?.to_string(), state))
}

/// Whether the process launched as `pid` in a pane is still there, given what tmux says of the
/// pane and how the process ended if it is a zombie (`zombie`). tmux shows a pane dead once its
/// output ends, and its exit status only once it has reaped the process, which it has been
/// seen not to do for a minute under load: then the zombie's own status says how it ended, and
/// without either the answer is unknown (looked at again), never "gone".
fn pane_liveness(pane: Option<&PaneState>, pid: u32, zombie: Option<ExitInfo>) -> Liveness {
    match pane {
        None => Liveness::Exited(ExitInfo::default()),
        Some(p) if p.dead && p.exit == ExitInfo::default() => {
            zombie.map_or(Liveness::Unknown, Liveness::Exited)
        }
        Some(p) if !p.dead && p.pid == pid && zombie.is_some() => {
            zombie.map_or(Liveness::Unknown, Liveness::Exited)
        }
        Some(p) if p.dead => Liveness::Exited(p.exit),
        // A respawned pane has a new pid: the old incarnation is over.
        Some(p) if p.pid != pid => Liveness::Exited(ExitInfo::default()),
        Some(_) => Liveness::Alive,
    }
}

/// The agents' panes on one tmux server.
pub struct TmuxBackend {
    place: Placement,
    layout: TmuxLayout,
    config: PathBuf,
    secret_dir: PathBuf,
    /// Last title set per pane, so unchanged titles cost no tmux call.
    titles: Mutex<HashMap<String, String>>,
    /// Held while a pane is being created.
    spawning: Mutex<()>,
    /// Panes marked as an agent's on the current server (cleared when a new server starts).
    owned: Mutex<HashMap<String, String>>,
    /// Marks (pane, agent, title, colour) not yet written to tmux.
    unmarked: Mutex<Vec<Mark>>,
    /// This program, which the window's hooks run to lay the window out again (none: tmux's
    /// own layout after each split, and nothing on a resize).
    layout_exe: Option<PathBuf>,
    /// Whether the current server's team window has its hooks.
    hooked: Mutex<bool>,
}

impl TmuxBackend {
    /// A backend for `place`; `runtime` holds its server config and the agents' secret files.
    pub fn new(place: Placement, layout: TmuxLayout, runtime: &Path) -> Result<Self, PaneError> {
        version()?;
        let config = runtime.join(format!("{}.tmux.conf", place.session));
        let conf = format!(
            "\
# Written by agent-team for its private tmux server.
set -g remain-on-exit on
set -g pane-border-status top
set -g pane-border-format '{BORDER_FORMAT}'
set -g allow-rename off
set -g history-limit 20000
set -g mouse on
"
        );
        std::fs::write(&config, conf).map_err(|source| PaneError::Io {
            what: format!("cannot write {}", config.display()),
            source,
        })?;
        Ok(TmuxBackend {
            place,
            layout,
            config,
            secret_dir: runtime.to_path_buf(),
            titles: Mutex::new(HashMap::new()),
            spawning: Mutex::new(()),
            owned: Mutex::new(HashMap::new()),
            unmarked: Mutex::new(Vec::new()),
            layout_exe: None,
            hooked: Mutex::new(false),
        })
    }

    /// Lays the team window out by `exe tmux-layout` whenever the window changes size or panes
    /// (tmux hooks on the window), so the attached terminal always shows every agent.
    pub fn with_layout_hooks(mut self, exe: PathBuf) -> Self {
        self.layout_exe = Some(exe);
        self
    }

    /// The placement.
    pub fn placement(&self) -> &Placement {
        &self.place
    }

    /// tmux built with libutempter (Debian's) can miss a pane's SIGCHLD: it swaps in
    /// utempter's own handler while it records the pane's terminal closing, and a pane process
    /// that exits just then stays a zombie, its pane not dead, until tmux hears of another exit
    /// (tmux/tmux#311 and #4559; seen here when a CLI saved and ended before its worker). A
    /// stopped pane's process left a zombie of the team's own server gets that server a
    /// SIGCHLD, the remedy tmux's author gives; a server the user started is left alone.
    fn nudge_reap(&self, pid: u32) {
        if !self.place.private_server || !crate::procs::is_zombie(pid) {
            return;
        }
        let mut cmds = TmuxCommands::new();
        cmds.push(DisplayMessage::new().print().message("#{pid}"));
        let server: Option<u32> = self.tmux(cmds).ok().and_then(|o| o.trim().parse().ok());
        if let Some(server) = server
            && crate::procs::parent_of(pid) == Some(server)
            && let Ok(server) = i32::try_from(server)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(server),
                nix::sys::signal::Signal::SIGCHLD,
            );
        }
    }

    fn tmux(&self, commands: TmuxCommands<'_>) -> Result<String, TmuxFailure> {
        run(&self.place.socket, Some(&self.config), commands)
    }

    /// The terminal device of `pane` (`/dev/pts/N`), as tmux names it.
    fn pane_tty(&self, pane: &str) -> Option<PathBuf> {
        let mut cmds = TmuxCommands::new();
        cmds.push(
            DisplayMessage::new()
                .print()
                .target_pane(pane)
                .message("#{pane_tty}"),
        );
        let tty = self.tmux(cmds).ok()?;
        let tty = tty.trim();
        tty.starts_with("/dev/").then(|| PathBuf::from(tty))
    }

    fn window_target(&self) -> String {
        match &self.place.window {
            Some(w) => w.clone(),
            None => format!("{}:", self.place.session),
        }
    }

    fn parse_launch(out: &str) -> Result<Launched, PaneError> {
        let mut it = out.split_whitespace();
        let pane = it
            .next()
            .filter(|p| p.starts_with('%'))
            .ok_or_else(|| PaneError::Tool(format!("tmux printed {out:?}, not a pane id")))?;
        let pid: u32 = it
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| PaneError::Tool(format!("tmux printed {out:?}, not a pid")))?;
        // tmux starts each pane's process in a session of its own: its group is its pid.
        Ok(Launched {
            container: None,
            pid,
            pgid: Some(pid),
            pane: Some(pane.to_string()),
            host: None,
        })
    }

    /// Marks a pane as this agent's, so a later respawn never takes a pane that is not (pane
    /// ids restart from %0 on a new server).
    /// Marks a pane as this agent's (so a respawn after a daemon restart never takes a pane
    /// that is not: pane ids restart from %0 on a new server). The tmux option is written with
    /// the next title update, off the launch path.
    fn mark(&self, launched: &Launched, spec: &LaunchSpec) {
        let Some(p) = &launched.pane else { return };
        if let Ok(mut o) = self.owned.lock() {
            o.insert(p.clone(), spec.name.clone());
        }
        if let Ok(mut u) = self.unmarked.lock() {
            u.push((
                p.clone(),
                spec.name.clone(),
                spec.title.clone(),
                spec.color.clone(),
            ));
        }
    }

    /// Whether `pane` is marked as `name`'s.
    fn owns(&self, pane: &str, name: &str) -> bool {
        // Panes this process marked on the current server need no question.
        if self
            .owned
            .lock()
            .is_ok_and(|o| o.get(pane).is_some_and(|n| n == name))
        {
            return true;
        }
        let mut cmds = TmuxCommands::new();
        cmds.push(
            DisplayMessage::new()
                .print()
                .target_pane(pane)
                .message(format!("#{{{OWNER_OPTION}}}")),
        );
        self.tmux(cmds).is_ok_and(|o| o.trim() == name)
    }

    /// A new session may be on a new server whose pane ids start again at %0: forget what we
    /// knew about panes.
    fn forget_server(&self) {
        if let Ok(mut o) = self.owned.lock() {
            o.clear();
        }
        if let Ok(mut h) = self.hooked.lock() {
            *h = false;
        }
        if let Ok(mut t) = self.titles.lock() {
            t.clear();
        }
    }

    /// The `--here` window's placeholder pane, while it is still there.
    fn placeholder_pane(&self, window: &str) -> Option<String> {
        let mut cmds = TmuxCommands::new();
        cmds.push(
            ListPanes::new()
                .target(window)
                .format("#{pane_id} #{pane_start_command}"),
        );
        let out = self.tmux(cmds).ok()?;
        out.lines()
            .find(|l| l.contains(PLACEHOLDER))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)
    }

    /// The tmux commands that make the panes of `specs` (running `lines`): a new session first
    /// when `with_session`, then windows or splits each followed by the layout.
    fn creation_commands(
        &self,
        specs: &[LaunchSpec],
        lines: &[String],
        with_session: bool,
    ) -> TmuxCommands<'static> {
        let fmt = "#{pane_id} #{pane_pid}";
        let mut cmds = TmuxCommands::new();
        for (i, (spec, line)) in specs.iter().zip(lines).enumerate() {
            let cwd = spec.cwd.display().to_string();
            if i == 0 && with_session {
                let (w, h) = DETACHED_SIZE;
                cmds.push(
                    NewSession::new()
                        .detached()
                        .session_name(self.place.session.clone())
                        .window_name(spec.name.clone())
                        .width(w)
                        .height(h)
                        .print()
                        .format(fmt)
                        .start_directory(cwd)
                        .shell_command(line.clone()),
                );
            } else if self.layout == TmuxLayout::Windows {
                cmds.push(
                    NewWindow::new()
                        .detached()
                        .print()
                        .format(fmt)
                        .window_name(spec.name.clone())
                        .target_window(format!("{}:", self.place.session))
                        .start_directory(cwd)
                        .shell_command(line.clone()),
                );
            } else {
                cmds.push(
                    SplitWindow::new()
                        .detached()
                        .print()
                        .format(fmt)
                        .target_pane(self.window_target())
                        .start_directory(cwd)
                        .shell_command(line.clone()),
                );
                if let Some(layout) = self.layout_name() {
                    cmds.push(
                        SelectLayout::new()
                            .target_pane(self.window_target())
                            .layout_name(layout),
                    );
                }
            }
        }
        cmds
    }

    /// Creates the panes of `specs` with one tmux command: splits (or windows) of the team's
    /// session, or a new session first when there is none (first start, or the server was
    /// killed). One creation at a time, each split followed by the layout: concurrent splits of
    /// the same pane would run out of room ("no space for new pane").
    fn create_panes(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        let fail_all = |e: String| {
            specs
                .iter()
                .map(|_| Err(PaneError::Tool(e.clone())))
                .collect()
        };
        let lines: Vec<String> = match specs
            .iter()
            .map(|s| exec_line(s, &self.secret_dir))
            .collect()
        {
            Ok(l) => l,
            Err(e) => return fail_all(e.to_string()),
        };
        let _one_at_a_time = self.spawning.lock();
        let build = |with_session: bool| self.creation_commands(specs, &lines, with_session);
        let out = match self.tmux(build(false)) {
            Ok(out) => Ok(out),
            Err(e) => {
                let missing = match &e {
                    TmuxFailure::NoServer => true,
                    TmuxFailure::Failed(m) => m.contains("can't find") || m.contains("no such"),
                    TmuxFailure::Timeout => false,
                };
                match (missing, self.place.window.is_some()) {
                    // `--here`: the user's window is gone; do not make a session of our own there.
                    (true, true) => {
                        return fail_all(format!("the team's tmux window is gone ({e})"));
                    }
                    (true, false) => {
                        self.forget_server();
                        self.tmux(build(true))
                    }
                    (false, _) => Err(e),
                }
            }
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => return fail_all(e.to_string()),
        };
        let mut launched: Vec<Result<Launched, PaneError>> =
            out.lines().map(Self::parse_launch).collect();
        launched.resize_with(specs.len(), || {
            Err(PaneError::Tool("tmux did not report the pane".into()))
        });
        for (l, spec) in launched.iter().zip(specs) {
            if let Ok(l) = l {
                self.mark(l, spec);
            }
        }
        if let Some(Ok(Launched { pane: Some(p), .. })) = launched.first()
            && self
                .hooked
                .lock()
                .is_ok_and(|mut h| !std::mem::replace(&mut *h, true))
        {
            self.hook_window(p);
        }
        launched
    }

    fn layout_name(&self) -> Option<&'static str> {
        self.layout.tmux_name()
    }

    /// Sets the team window's hooks so tmux lays it out again whenever the window is resized
    /// (a client attached or its terminal resized) or split, by running this program's
    /// `tmux-layout` (the daemon lays it out itself after its own changes). `pane` is any pane
    /// of the window.
    fn hook_window(&self, pane: &str) {
        let Some(exe) = &self.layout_exe else { return };
        if self.layout == TmuxLayout::Windows {
            return;
        }
        let line = layout_hook_line(exe, &self.place.socket, &self.lock_path(), self.layout);
        let mut cmds = TmuxCommands::new();
        for hook in LAYOUT_HOOKS {
            cmds.push(raw("set-hook", &["-w", "-t", pane, hook, &line]));
        }
        // The panes made before the hooks were there are laid out now.
        cmds.push(raw("set-hook", &["-R", "-w", "-t", pane, LAYOUT_HOOKS[0]]));
        let _ = self.tmux(cmds);
    }

    /// The file `tmux-layout` runs hold a lock on, so two never interleave their moves.
    fn lock_path(&self) -> PathBuf {
        self.secret_dir
            .join(format!("{}.layout.lock", self.place.session))
    }
}

impl TmuxLayout {
    /// tmux's own name of the layout (`None` for one window per agent).
    pub fn tmux_name(self) -> Option<&'static str> {
        match self {
            TmuxLayout::MainVertical => Some("main-vertical"),
            TmuxLayout::Tiled => Some("tiled"),
            TmuxLayout::MainHorizontal => Some("main-horizontal"),
            TmuxLayout::EvenHorizontal => Some("even-horizontal"),
            TmuxLayout::EvenVertical => Some("even-vertical"),
            TmuxLayout::Windows => None,
        }
    }

    /// The layout tmux calls `name`.
    pub fn from_tmux_name(name: &str) -> Option<TmuxLayout> {
        [
            TmuxLayout::MainVertical,
            TmuxLayout::Tiled,
            TmuxLayout::MainHorizontal,
            TmuxLayout::EvenHorizontal,
            TmuxLayout::EvenVertical,
        ]
        .into_iter()
        .find(|l| l.tmux_name() == Some(name))
        .or((name == "windows").then_some(TmuxLayout::Windows))
    }
}

/// The window hooks after which the team window is laid out again.
const LAYOUT_HOOKS: [&str; 3] = ["window-resized", "after-split-window", "after-kill-pane"];

/// The pane option marking the board's pane; its value is the team window's id.
const BOARD_OPTION: &str = "@agent-team-board";

/// A tmux command that `tmux_interface` has no builder for, with its arguments as they are.
fn raw<'a>(name: &'a str, args: &[&str]) -> tmux_interface::TmuxCommand<'a> {
    let mut c = tmux_interface::TmuxCommand::with_name(name);
    for a in args {
        c.push_param(a.to_string());
    }
    c
}

/// The hook's tmux command: `run-shell -b` of `exe tmux-layout …` for the hook's window, its
/// output dropped and its failure too (run-shell would show either in the pane, in a mode that
/// takes the keys a person types there). The shell line is quoted for the
/// shell, then for run-shell's formats (`#` doubled, `#{window_id}` left to expand), then for
/// tmux's parser (a double-quoted string).
pub fn layout_hook_line(exe: &Path, socket: &Path, lock: &Path, layout: TmuxLayout) -> String {
    let q = |p: &Path| crate::shell_quote(&p.display().to_string()).replace('#', "##");
    let shell = format!(
        "{} tmux-layout --socket {} --lock {} --layout {} --window '#{{window_id}}' >/dev/null 2>&1 || true",
        q(exe),
        q(socket),
        q(lock),
        layout.tmux_name().unwrap_or("main-vertical"),
    );
    let quoted = shell
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$");
    format!("run-shell -b \"{quoted}\"")
}

/// One pane of the team's session as [`relayout`] sees it.
#[derive(Debug, Clone)]
struct SessionPane {
    window: String,
    id: String,
    owner: String,
    board_of: String,
    size: (usize, usize),
    /// The window is zoomed, on this pane.
    zoomed_active: bool,
}

/// Takes the layout lock `lock` (created if missing), held until the guard is dropped: the
/// layout hook's runs and `attach` take turns under it.
fn layout_lock(lock: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, PaneError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)
        .map_err(|source| PaneError::Io {
            what: format!("cannot open {}", lock.display()),
            source,
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| PaneError::Tool(format!("cannot lock {}: {e}", lock.display())))
}

/// [`relayout`] while holding `lock`, so runs started by several hooks at once take turns.
pub fn relayout_locked(
    socket: &Path,
    window: &str,
    layout: TmuxLayout,
    lock: &Path,
) -> Result<(), PaneError> {
    let _held = layout_lock(lock)?;
    relayout(socket, window, layout)
}

/// Lays out the team window `window` (`@N`) for its size now: the leader's pane first and
/// largest, every other agent's pane visible, and the board beside them when it can be
/// readable there (else in a window of its own: [`crate::layout`]). Any other layout is
/// tmux's own, with the board in the window.
pub fn relayout(socket: &Path, window: &str, layout: TmuxLayout) -> Result<(), PaneError> {
    // A pane made or killed between reading the window and laying it out makes tmux refuse
    // the layout (`have 5 panes but need 4`): read it again, a few times.
    let mut tries = 0;
    loop {
        match relayout_once(socket, window, layout) {
            Err(PaneError::Tool(e)) if e.contains("panes but need") && tries < 5 => tries += 1,
            done => return done,
        }
    }
}

/// The panes of the session holding `window`: their window, owner, board mark, size and
/// whether one is zoomed.
fn session_panes(socket: &Path, window: &str) -> Result<Vec<SessionPane>, PaneError> {
    let mut cmds = TmuxCommands::new();
    cmds.push(ListPanes::new().session().target(window).format(format!(
        "#{{window_id}}\t#{{pane_id}}\t#{{{OWNER_OPTION}}}\t#{{{BOARD_OPTION}}}\t#{{window_width}}\t#{{window_height}}\t#{{window_zoomed_flag}}#{{pane_active}}"
    )));
    let out = run(socket, None, cmds).map_err(|e| PaneError::Tool(e.to_string()))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some(SessionPane {
                window: f.first()?.to_string(),
                id: f.get(1)?.to_string(),
                owner: f.get(2)?.to_string(),
                board_of: f.get(3)?.to_string(),
                size: (f.get(4)?.parse().ok()?, f.get(5)?.parse().ok()?),
                zoomed_active: f.get(6).is_some_and(|z| *z == "11"),
            })
        })
        .collect())
}

/// One reading of the window and one layout for it ([`relayout`]).
fn relayout_once(socket: &Path, window: &str, layout: TmuxLayout) -> Result<(), PaneError> {
    let tool = |e: TmuxFailure| PaneError::Tool(e.to_string());
    if layout == TmuxLayout::Windows {
        return Ok(());
    }
    let panes = session_panes(socket, window)?;
    let board = panes.iter().find(|p| p.board_of == window);
    let here: Vec<&SessionPane> = panes
        .iter()
        .filter(|p| p.window == window && p.board_of != window)
        .collect();
    let Some(first) = here.first() else {
        return Ok(());
    };
    let size = first.size;
    let leader = here
        .iter()
        .find(|p| p.owner == "leader")
        .copied()
        .unwrap_or(first);
    let number = |id: &str| id.trim_start_matches('%').parse::<u32>().ok();
    // In the order they were made (the roster's), whatever order the splits left them in.
    let mut agents: Vec<&SessionPane> =
        here.iter().copied().filter(|p| p.id != leader.id).collect();
    agents.sort_by_key(|p| number(&p.id));
    let plan = if layout == TmuxLayout::MainVertical {
        let ids = crate::layout::Panes {
            leader: number(&leader.id).unwrap_or(0),
            agents: agents.iter().filter_map(|p| number(&p.id)).collect(),
            board: board.and_then(|b| number(&b.id)),
        };
        crate::layout::main_vertical(size.0, size.1, &ids)
    } else {
        None
    };
    let board_inside = plan.as_ref().is_none_or(|p| p.board_inside);
    let mut cmds = TmuxCommands::new();
    // The order the window's panes must have: tmux gives a layout's cells to the panes in
    // the window's order, whatever numbers the layout names.
    let mut want: Vec<&str> = std::iter::once(leader.id.as_str())
        .chain(agents.iter().map(|p| p.id.as_str()))
        .collect();
    let mut order: Vec<&str> = here.iter().map(|p| p.id.as_str()).collect();
    if let Some(b) = board {
        if board_inside {
            want.push(b.id.as_str());
            if b.window == window {
                order.push(b.id.as_str());
            } else {
                // Back beside the team, after the last agent.
                let last = order.last().copied().unwrap_or(leader.id.as_str());
                cmds.push(raw("join-pane", &["-d", "-s", &b.id, "-t", last]));
                order.push(b.id.as_str());
            }
        } else if b.window == window {
            cmds.push(raw("break-pane", &["-d", "-s", &b.id, "-n", "board"]));
        }
    }
    // With the board in the window, `here` lacked it: it sits wherever it was split.
    if board_inside
        && let Some(b) = board
        && b.window == window
    {
        order = panes
            .iter()
            .filter(|p| p.window == window)
            .map(|p| p.id.as_str())
            .collect();
    }
    for i in 0..want.len() {
        if order.get(i) != Some(&want[i])
            && let Some(j) = order.iter().position(|p| *p == want[i])
        {
            cmds.push(raw("swap-pane", &["-d", "-s", want[i], "-t", order[i]]));
            order.swap(i, j);
        }
    }
    match &plan {
        Some(p) => cmds.push(raw("select-layout", &["-t", window, &p.layout])),
        None => cmds.push(raw(
            "select-layout",
            &["-t", window, layout.tmux_name().unwrap_or("tiled")],
        )),
    }
    // A layout unzooms the window: a pane someone zoomed (`attach NAME`) is zoomed again,
    // over the new layout, so unzooming it later shows the team laid out for this size.
    if let Some(z) = here.iter().find(|p| p.zoomed_active) {
        cmds.push(raw("resize-pane", &["-Z", "-t", &z.id]));
    }
    run(socket, None, cmds).map(|_| ()).map_err(tool)
}

impl PaneBackend for TmuxBackend {
    fn kind(&self) -> &'static str {
        "tmux"
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        // `--here`: the first agent takes the window's placeholder pane.
        if let Some(w) = &self.place.window
            && let Some(pane) = self.placeholder_pane(w)
        {
            return self.respawn(
                spec,
                &Launched {
                    container: None,
                    pid: 0,
                    pgid: None,
                    pane: Some(pane),
                    host: None,
                },
            );
        }
        self.create_panes(std::slice::from_ref(spec))
            .pop()
            .unwrap_or_else(|| Err(PaneError::Tool("tmux did not report the pane".into())))
    }

    fn spawn_many(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        if self.place.window.is_some() {
            return specs.iter().map(|s| self.spawn(s)).collect();
        }
        self.create_panes(specs)
    }

    fn respawn(&self, spec: &LaunchSpec, previous: &Launched) -> Result<Launched, PaneError> {
        let Some(pane) = previous.pane.clone() else {
            return self.spawn(spec);
        };
        // After a server restart the id may name another agent's pane: only reuse our own
        // (the `--here` placeholder is unmarked and ours to take).
        if previous.pid != 0 && !self.owns(&pane, &spec.name) {
            return self.spawn(spec);
        }
        let line = exec_line(spec, &self.secret_dir)?;
        let mut cmds = TmuxCommands::new();
        cmds.push(
            RespawnPane::new()
                .kill()
                .target_pane(pane.as_str())
                .start_directory(spec.cwd.display().to_string())
                .shell_command(line.as_str()),
        );
        cmds.push(
            DisplayMessage::new()
                .print()
                .target_pane(pane.as_str())
                .message("#{pane_id} #{pane_pid}"),
        );
        match self.tmux(cmds) {
            Ok(out) => {
                let l = Self::parse_launch(&out)?;
                if !self
                    .owned
                    .lock()
                    .is_ok_and(|o| o.get(&pane).is_some_and(|n| n == &spec.name))
                {
                    self.mark(&l, spec);
                }
                Ok(l)
            }
            // The pane was closed by hand or the server was killed: a new pane then.
            Err(TmuxFailure::NoServer) | Err(TmuxFailure::Failed(_)) => self.spawn(spec),
            Err(e) => Err(PaneError::Tool(e.to_string())),
        }
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        // The pane stays (remain-on-exit) and shows the exit status.
        let stopped = stop_group(target.pgid.unwrap_or(target.pid), grace, || {});
        self.nudge_reap(target.pid);
        stopped
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        self.poll(std::slice::from_ref(target))
            .pop()
            .unwrap_or(Liveness::Unknown)
    }

    fn poll(&self, targets: &[Launched]) -> Vec<Liveness> {
        let mut cmds = TmuxCommands::new();
        cmds.push(ListPanes::new().all().format(PANE_STATE_FORMAT));
        let panes: HashMap<String, PaneState> = match self.tmux(cmds) {
            Ok(out) => out.lines().filter_map(parse_pane_state).collect(),
            // The server is gone, so is every pane on it.
            Err(TmuxFailure::NoServer) => HashMap::new(),
            Err(_) => return targets.iter().map(|_| Liveness::Unknown).collect(),
        };
        targets
            .iter()
            .map(|t| match &t.pane {
                None => Liveness::Unknown,
                Some(pane) => {
                    pane_liveness(panes.get(pane), t.pid, crate::procs::zombie_exit(t.pid))
                }
            })
            .collect()
    }

    fn set_title(&self, target: &Launched, title: &str) {
        let Some(pane) = &target.pane else { return };
        if let Ok(t) = self.titles.lock()
            && t.get(pane).is_some_and(|old| old == title)
        {
            return;
        }
        let mut cmds = TmuxCommands::new();
        for c in title_cmds(pane.as_str(), title) {
            cmds.push(c);
        }
        if self.tmux(cmds).is_ok()
            && let Ok(mut t) = self.titles.lock()
        {
            t.insert(pane.clone(), title.to_string());
        }
    }

    fn paste(&self, target: &Launched, text: &str) -> Result<(), PaneError> {
        let Some(pane) = &target.pane else {
            return Err(PaneError::Tool("the agent has no pane".into()));
        };
        // Typed only once the program reads keys one by one: a terminal still in line mode
        // echoes the paste, and a program switching then may flush it.
        let tty = self.pane_tty(pane).and_then(|p| PaneTty::open(&p));
        if let Some(t) = &tty {
            t.wait_until(PASTE_READY_WAIT, PaneTty::reads_keys);
        }
        // One buffer per pane, pasted bracketed (the program sees a paste, not keystrokes that
        // could be key bindings) and deleted.
        let buffer = format!("agent-team-input-{}", pane.trim_start_matches('%'));
        let mut cmds = TmuxCommands::new();
        cmds.push(SetBuffer::new().buffer_name(buffer.as_str()).data(text));
        cmds.push(
            PasteBuffer::new()
                .bracket_codes()
                .delete()
                .buffer_name(buffer.as_str())
                .target_pane(pane.as_str()),
        );
        self.tmux(cmds)
            .map_err(|e| PaneError::Tool(e.to_string()))?;
        // Then Enter on its own, a moment after the program has read the paste: a TUI takes an
        // Enter read with the paste, or soon after it, as a newline in the paste (Gemini CLI
        // within 30 ms, seen in 0.61.0), so the line would wait unsent. A busy program reads
        // late: its terminal's input queue says when it has.
        if let Some(t) = &tty {
            // Seen arrive first: an empty queue before the paste is in it said nothing, and a
            // busy program then read the paste and its Enter in one read (seen in CI).
            t.wait_until(PASTE_ARRIVE_WAIT, |t| t.unread() > 0);
            t.wait_until(PASTE_READY_WAIT, |t| t.unread() == 0);
        }
        std::thread::sleep(PASTE_SETTLE);
        let mut enter = TmuxCommands::new();
        enter.push(SendKeys::new().target_pane(pane.as_str()).key("Enter"));
        self.tmux(enter)
            .map(|_| ())
            .map_err(|e| PaneError::Tool(e.to_string()))
    }

    fn bell(&self, target: &Launched, message: &str) {
        let Some(pane) = &target.pane else { return };
        // A BEL written to the pane's terminal is output of that pane: tmux rings the bell of
        // the terminals attached to it (and flags the window) as its `bell-action` says.
        if let Some(tty) = self.pane_tty(pane) {
            use std::os::unix::fs::OpenOptionsExt as _;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NOCTTY)
                .open(tty)
            {
                use std::io::Write as _;
                let _ = f.write_all(b"\x07");
            }
        }
        let mut cmds = TmuxCommands::new();
        // `#` would start a format: the message is shown as written.
        cmds.push(
            DisplayMessage::new()
                .target_pane(pane.as_str())
                .message(message.replace('#', "##")),
        );
        let _ = self.tmux(cmds);
    }

    fn set_titles(&self, titles: &[(Launched, String)]) {
        let marks: Vec<Mark> = self
            .unmarked
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default();
        let mut fresh: Vec<(String, String)> = {
            let known = self.titles.lock().map(|t| t.clone()).unwrap_or_default();
            titles
                .iter()
                .filter_map(|(l, t)| l.pane.clone().map(|p| (p, t.clone())))
                .filter(|(p, t)| known.get(p) != Some(t))
                .collect()
        };
        for (p, _, title, _) in &marks {
            if !fresh.iter().any(|(q, _)| q == p) {
                fresh.push((p.clone(), title.clone()));
            }
        }
        if fresh.is_empty() && marks.is_empty() {
            return;
        }
        let mut cmds = TmuxCommands::new();
        for (p, name, _, color) in &marks {
            cmds.push(
                SetOption::new()
                    .pane()
                    .target_pane(p.as_str())
                    .option(OWNER_OPTION)
                    .value(name.as_str()),
            );
            if let Some(c) = color {
                cmds.push(
                    SetOption::new()
                        .pane()
                        .target_pane(p.as_str())
                        .option(COLOR_OPTION)
                        .value(c.as_str()),
                );
            }
        }
        for (p, t) in &fresh {
            for c in title_cmds(p.as_str(), t.as_str()) {
                cmds.push(c);
            }
        }
        if self.tmux(cmds).is_ok()
            && let Ok(mut known) = self.titles.lock()
        {
            known.extend(fresh);
        }
    }

    fn forget(&self, target: &Launched) {
        if let Some(p) = &target.pane {
            let mut cmds = TmuxCommands::new();
            cmds.push(KillPane::new().target_pane(p.as_str()));
            let _ = self.tmux(cmds);
        }
    }

    fn shutdown(&self) {
        let mut cmds = TmuxCommands::new();
        if self.place.private_server {
            let mut pid_cmd = TmuxCommands::new();
            pid_cmd.push(DisplayMessage::new().print().message("#{pid}"));
            let server_pid: Option<u32> =
                self.tmux(pid_cmd).ok().and_then(|o| o.trim().parse().ok());
            let servers = match server_pid {
                Some(pid) => {
                    cmds.push(KillServer::new());
                    let _ = self.tmux(cmds);
                    vec![pid]
                }
                // Its socket was deleted (the team's runtime dir with it): the server can no
                // longer be told anything, so it is found by the socket its command line names
                // and ended with SIGTERM (its panes' processes get SIGHUP).
                None => {
                    let found = servers_named(&self.place.socket);
                    for pid in &found {
                        if let Ok(pid) = i32::try_from(*pid) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGTERM,
                            );
                        }
                    }
                    found
                }
            };
            // kill-server returns before the server has exited: wait until the process is gone.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            for pid in servers {
                while crate::procs::pid_alive(pid)
                    && !crate::procs::is_zombie(pid)
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let _ = std::fs::remove_file(&self.place.socket);
        } else if let Some(w) = &self.place.window {
            cmds.push(KillWindow::new().target_window(w.as_str()));
            let _ = self.tmux(cmds);
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The tmux servers (and clients) of this user whose command line names `socket` after `-S`
/// (how every server of a team is started): a server whose socket file was deleted still
/// runs, and only this finds it.
pub fn servers_named(socket: &Path) -> Vec<u32> {
    let mut want = b"\0-S\0".to_vec();
    want.extend_from_slice(socket.as_os_str().as_encoded_bytes());
    want.push(0);
    let me = nix::unistd::getuid().as_raw();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            use std::os::unix::fs::MetadataExt as _;
            let dir = format!("/proc/{pid}");
            let mine = std::fs::metadata(&dir).is_ok_and(|m| m.uid() == me);
            let comm = std::fs::read_to_string(format!("{dir}/comm")).unwrap_or_default();
            let cmd = std::fs::read(format!("{dir}/cmdline")).unwrap_or_default();
            mine && comm.starts_with("tmux")
                && cmd.windows(want.len()).any(|w| w == want.as_slice())
        })
        .collect()
}

/// How [`attach_command`] shows the pane it puts the terminal on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachView {
    /// The pane alone, zoomed to the whole window (`attach NAME`).
    Zoomed,
    /// The whole team window, unzoomed, with the pane selected (`up`, `attach` with no name).
    Team,
}

/// The command that puts this terminal on `pane`: attach from outside tmux, or switch the
/// client when already inside the same server. The pane is selected, and zoomed or the window
/// unzoomed as `view` says.
pub fn attach_command(
    socket: &Path,
    session: &str,
    pane: &str,
    inside_same_server: bool,
    view: AttachView,
) -> std::process::Command {
    let mut c = std::process::Command::new("tmux");
    c.arg("-S").arg(socket);
    c.args(select_args(pane, view));
    if inside_same_server {
        c.args([";", "switch-client", "-t", pane]);
    } else {
        c.env_remove("TMUX").env_remove("TMUX_PANE");
        c.args([";", "attach-session", "-t", session]);
    }
    c
}

/// Selects `pane` and zooms or unzooms its window as `view` says, holding `lock` (the one the
/// layout hook's runs take), before a client attaches: a layout that read the window before the
/// zoom would undo it; one after it keeps it.
pub fn select_locked(
    socket: &Path,
    pane: &str,
    view: AttachView,
    lock: &Path,
) -> Result<(), PaneError> {
    let _held = layout_lock(lock)?;
    let out = std::process::Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(select_args(pane, view))
        .env_remove("TMUX")
        .output()
        .map_err(|source| PaneError::Io {
            what: "cannot run tmux".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PaneError::Tool(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// tmux's arguments that select `pane` (its window first) and zoom or unzoom as `view` says.
fn select_args(pane: &str, view: AttachView) -> Vec<String> {
    let zoom = match view {
        AttachView::Zoomed => {
            format!("if-shell -F -t {pane} '#{{window_zoomed_flag}}' '' 'resize-pane -Z -t {pane}'")
        }
        AttachView::Team => {
            format!("if-shell -F -t {pane} '#{{window_zoomed_flag}}' 'resize-pane -Z -t {pane}' ''")
        }
    };
    let mut args: Vec<String> = [
        "select-window",
        "-t",
        pane,
        ";",
        "select-pane",
        "-t",
        pane,
        ";",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(zoom_args(&zoom));
    args
}

fn zoom_args(zoom: &str) -> Vec<String> {
    // `if-shell -F -t PANE COND '' 'resize-pane -Z -t PANE'` as separate arguments.
    let mut parts: Vec<String> = Vec::new();
    let mut rest = zoom;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(stripped) = rest.strip_prefix('\'') {
            let end = stripped.find('\'').unwrap_or(stripped.len());
            parts.push(stripped[..end].to_string());
            rest = stripped.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            parts.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    parts
}

/// Whether the tmux session of a placement exists.
pub fn session_exists(place: &Placement) -> bool {
    let mut cmds = TmuxCommands::new();
    cmds.push(
        DisplayMessage::new()
            .print()
            .target_pane(format!("{}:", place.session))
            .message("#{session_name}"),
    );
    run(&place.socket, None, cmds).is_ok()
}

/// The socket of the tmux server this process runs in (from `$TMUX`), if any.
pub fn current_server() -> Option<PathBuf> {
    let v = std::env::var("TMUX").ok()?;
    v.split(',')
        .next()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// `--here`: a new window in the user's current session for the team; returns its id (`@N`).
pub fn new_window_here(socket: &Path, name: &str) -> Result<(String, String), PaneError> {
    let mut cmds = TmuxCommands::new();
    // A placeholder process holds the window until the first agent's launch replaces it.
    cmds.push(
        NewWindow::new()
            .detached()
            .print()
            .format("#{window_id} #{session_name}")
            .window_name(name)
            .shell_command(PLACEHOLDER),
    );
    let out = run(socket, None, cmds).map_err(|e| PaneError::Tool(e.to_string()))?;
    let mut it = out.split_whitespace();
    let (w, s) = match (it.next(), it.next()) {
        (Some(w), Some(s)) => (w.to_string(), s.to_string()),
        _ => {
            return Err(PaneError::Tool(format!(
                "tmux printed {out:?}, not a window id"
            )));
        }
    };
    // Our options, on our window only: the user's other windows keep theirs.
    let mut opts = TmuxCommands::new();
    for (k, v) in [
        ("remain-on-exit", "on"),
        ("pane-border-status", "top"),
        ("pane-border-format", BORDER_FORMAT),
    ] {
        opts.push(
            SetOption::new()
                .window()
                .target_pane(w.as_str())
                .option(k)
                .value(v),
        );
    }
    run(socket, None, opts).map_err(|e| PaneError::Tool(e.to_string()))?;
    Ok((w, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pane_reports_its_exit_code_or_signal_or_its_zombies_and_waits_while_it_has_none() {
        let line = |s: &str| parse_pane_state(s).map(|(_, p)| p);
        let exited = line("%1 42 1 s0 g").unwrap();
        assert_eq!(
            pane_liveness(Some(&exited), 42, None),
            Liveness::Exited(ExitInfo {
                code: Some(0),
                signal: None
            })
        );
        let killed = line("%1 42 1 s g15").unwrap();
        assert_eq!(
            pane_liveness(Some(&killed), 42, None),
            Liveness::Exited(ExitInfo {
                code: None,
                signal: Some(15)
            })
        );
        // Dead (its output ended) but not reaped yet: not "gone", look again.
        let unreaped = line("%1 42 1 s g").unwrap();
        assert_eq!(pane_liveness(Some(&unreaped), 42, None), Liveness::Unknown);
        // ... unless the process is a zombie tmux has not reaped: its own status says.
        let z = ExitInfo {
            code: Some(0),
            signal: None,
        };
        assert_eq!(
            pane_liveness(Some(&unreaped), 42, Some(z)),
            Liveness::Exited(z)
        );
        let alive = line("%1 42 0 s g").unwrap();
        assert_eq!(pane_liveness(Some(&alive), 42, None), Liveness::Alive);
        // Shown alive (something still holds its terminal) but the process is a zombie.
        assert_eq!(
            pane_liveness(Some(&alive), 42, Some(z)),
            Liveness::Exited(z)
        );
        assert_eq!(
            pane_liveness(Some(&alive), 7, None),
            Liveness::Exited(ExitInfo::default())
        );
        assert_eq!(
            pane_liveness(None, 42, None),
            Liveness::Exited(ExitInfo::default())
        );
        assert_eq!(parse_pane_state("%1 x 1 s g"), None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("tmux 3.3a"), Some((3, 3)));
        assert_eq!(parse_version("tmux 3.2"), Some((3, 2)));
        assert_eq!(parse_version("tmux next-3.4"), Some((3, 4)));
        assert_eq!(parse_version("tmux master"), Some((99, 0)));
        assert_eq!(parse_version("tmux 2.9a"), Some((2, 9)));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn attach_selects_zooms_and_attaches() {
        let c = attach_command(Path::new("/r/t.tmux"), "t", "%3", false, AttachView::Zoomed);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-S",
                "/r/t.tmux",
                "select-window",
                "-t",
                "%3",
                ";",
                "select-pane",
                "-t",
                "%3",
                ";",
                "if-shell",
                "-F",
                "-t",
                "%3",
                "#{window_zoomed_flag}",
                "",
                "resize-pane -Z -t %3",
                ";",
                "attach-session",
                "-t",
                "t"
            ]
        );
        let c = attach_command(Path::new("/r/t.tmux"), "t", "%3", true, AttachView::Zoomed);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[args.len() - 4..], [";", "switch-client", "-t", "%3"]);
        // The team view unzooms a zoomed window instead.
        let c = attach_command(Path::new("/r/t.tmux"), "t", "%3", false, AttachView::Team);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[15..17], ["resize-pane -Z -t %3", ""]);
    }

    #[test]
    fn the_layout_hook_runs_its_program_with_quotes_dollars_and_hashes_in_paths() {
        // A real tmux server of this test's own, and a stand-in program under an awkward path
        // that writes down the arguments the hook gave it.
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("o p").join("a$b").join("#x");
        std::fs::create_dir_all(&odd).unwrap();
        let seen = dir.path().join("seen");
        let exe = odd.join("agent-team");
        std::fs::write(
            &exe,
            // It fails, as a layout can when a pane comes or goes meanwhile.
            format!(
                "#!/bin/sh\nprintf '%s|' \"$@\" > '{}.tmp'\necho $$ > '{}.pid'\nmv '{0}.tmp' '{0}'\nexit 1\n",
                seen.display(),
                seen.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("it's.tmux");
        let lock = dir.path().join("l.lock");
        let tmux = |args: &[&str]| {
            std::process::Command::new("tmux")
                .arg("-S")
                .arg(&socket)
                .args(["-f", "/dev/null"])
                .args(args)
                .env_remove("TMUX")
                .output()
                .unwrap()
        };
        assert!(
            tmux(&["new-session", "-d", "-x", "80", "-y", "24", "sleep 60"])
                .status
                .success()
        );
        let line = layout_hook_line(&exe, &socket, &lock, TmuxLayout::Tiled);
        let set = tmux(&["set-hook", "-w", "-t", "%0", "window-resized", &line]);
        assert!(set.status.success(), "{set:?}");
        assert!(
            tmux(&["set-hook", "-R", "-w", "-t", "%0", "window-resized"])
                .status
                .success()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !seen.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Once tmux has reaped the program, its failure would have put the pane in a mode.
        let pid = std::fs::read_to_string(seen.with_extension("pid")).unwrap_or_default();
        let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
        while proc.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mode = tmux(&["display", "-p", "-t", "%0", "#{pane_in_mode}"]);
        let _ = tmux(&["kill-server"]);
        assert_eq!(
            String::from_utf8_lossy(&mode.stdout).trim(),
            "0",
            "a failed layout leaves the pane taking keys"
        );
        let args = std::fs::read_to_string(&seen).unwrap_or_default();
        assert_eq!(
            args,
            format!(
                "tmux-layout|--socket|{}|--lock|{}|--layout|tiled|--window|@0|",
                socket.display(),
                lock.display()
            )
        );
    }
}
