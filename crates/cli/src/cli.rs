//! The command-line grammar (SPEC §3), defined once with clap: help text comes from here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// How long a permission request waits before it is denied, unless the daemon is told otherwise.
pub const PERMISSION_TIMEOUT_SECS: u64 = 300;

/// Run a team of AI agents as supervised processes, one per tmux pane.
#[derive(Debug, Parser)]
#[command(name = "agent-team", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The options every subcommand takes.
    #[command(flatten)]
    pub globals: Globals,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every subcommand takes (a struct of their own, so a command holding one
/// subcommand can be built with them: [`Cli::parse_args`]).
#[derive(Debug, Args)]
pub struct Globals {
    /// The team to act on [default: the team of ./agent-team.toml, else the only running team, else the team `up`/`run` last started from this directory, else `default`].
    #[arg(long, global = true, env = "AGENT_TEAM_TEAM", value_name = "NAME")]
    pub team: Option<String>,

    /// The team file.
    #[arg(short = 'f', long = "file", global = true, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

impl Cli {
    /// Parses this process's command line. clap builds every subcommand's arguments before it
    /// parses (~0.4 ms of a process's start, most of it spent on the ~40 subcommands it does
    /// not run), so the subcommands that start a team (`run`, `up`) are first tried against a
    /// command that holds only them; help, version, errors and every other subcommand go
    /// through the whole command, exactly as before.
    pub fn parse_args() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Self::parse_starting(&args).unwrap_or_else(|| Cli::parse_from(args))
    }

    /// `args` parsed against `run` and `up` alone, when they name one of them and parse there
    /// without help, version or an error (which the whole command then says as it always did).
    fn parse_starting(args: &[std::ffi::OsString]) -> Option<Cli> {
        use clap::FromArgMatches;
        if !args.iter().skip(1).any(|a| a == "run" || a == "up") {
            return None;
        }
        let cmd = Globals::augment_args(clap::Command::new("agent-team"))
            .subcommand(RunArgs::augment_args(clap::Command::new("run")))
            .subcommand(UpArgs::augment_args(clap::Command::new("up")))
            .subcommand_required(true)
            .disable_help_subcommand(true);
        let matches = cmd.try_get_matches_from(args).ok()?;
        Cli::from_arg_matches(&matches).ok()
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the team (daemon, leader, teammates), open its layout and attach to the leader.
    Up(UpArgs),
    /// Start the team, wait until the leader finishes it, print the answer, shut it down.
    Run(RunArgs),
    /// Put this terminal on the team's window (tmux: attach or switch): with no NAME the whole
    /// team, unzoomed and laid out for this terminal; with NAME that agent's pane, zoomed.
    Attach {
        /// The agent (none: the whole team, the leader's pane selected).
        name: Option<String>,
    },
    /// Put NAME on the roster as a member whose worker dials in from another machine, and print
    /// the team's join URL and a one-use token for it (the team must listen: `up
    /// --join-listen ADDR`). Run `AGENT_TEAM_JOIN_TOKEN=TOKEN agent-team-worker --join URL`
    /// there (docs/JOIN.md).
    Join {
        /// The member's name.
        name: String,
        /// Its role (a new member) [default: worker].
        #[arg(long)]
        role: Option<String>,
        /// How long the token may be used: 90s, 10m, 2h, 1d.
        #[arg(long, default_value = crate::cmd::join::DEFAULT_TTL, value_parser = crate::cmd::join::parse_ttl)]
        ttl: u64,
        /// Print JSON: `{"name", "role", "url", "token", "ttl_secs", "listen", "sha256"}`.
        #[arg(long)]
        json: bool,
    },
    /// Kubernetes objects for teammates that join the team over TLS (docs/KUBERNETES.md).
    #[command(subcommand)]
    Kube(KubeCmd),
    /// Stop one agent; it is not restarted and its task goes back to pending.
    Kill {
        /// The agent.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop every teammate at once (the leader and the run go on): the tasks they hold go back
    /// to pending, their slots are free. The leader's `dissolve_team` does the same.
    Dissolve {
        /// Why (recorded with each teammate's status and in the TEAM_DISSOLVED event).
        #[arg(long)]
        reason: Option<String>,
        /// Cancel every pending task too, instead of leaving them on the board.
        #[arg(long)]
        cancel_tasks: bool,
        /// Print JSON: `{"stopped": [...], "cancelled": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Restart one agent in place (same pane, identity, inbox; keeps its task); clears `failed`.
    Restart {
        /// The agent.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a worktree teammate's changes against the commit it started from, committed and
    /// uncommitted: what `finish` would land.
    Diff {
        /// The teammate.
        name: String,
        /// Only the files and their added/removed line counts, not the patch.
        #[arg(long)]
        stat: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Land a worktree teammate's work: commit what is uncommitted (as NAME@TEAM), then merge
    /// it into the branch the team started from, push it for a pull request, or discard it.
    /// After a merge or discard its worktree and branch are removed. Without an action it
    /// shows the work and asks (on a terminal), else exits 2 naming the actions.
    #[command(group(clap::ArgGroup::new("action").args(["merge", "pr", "discard"])))]
    Finish {
        /// The teammate (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every worktree teammate whose tasks are done.
        #[arg(long)]
        all: bool,
        /// Merge into the base branch (fast-forward when possible); a conflict changes nothing.
        #[arg(long)]
        merge: bool,
        /// Push the branch to the remote the base branch tracks and open a pull request
        /// (with `gh` when it is on PATH, else print how).
        #[arg(long)]
        pr: bool,
        /// Remove the worktree and the branch without landing anything.
        #[arg(long)]
        discard: bool,
        /// Merge into (or open the pull request against) this branch instead.
        #[arg(long, value_name = "BRANCH")]
        into: Option<String>,
        /// Keep the branch after a merge or discard.
        #[arg(long)]
        keep: bool,
        /// Do not ask before discarding.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Merge even when the branch changes the team's control plane (the team file, hook
        /// and notify scripts, .agent-team/, .claude/ and other agent CLIs' settings,
        /// .github/workflows/, .git* files, ...): look at them first (`agent-team diff NAME`).
        #[arg(long)]
        accept_control_changes: bool,
    },
    /// Add a teammate from a role.
    Spawn {
        /// The role (see `agent-team roles`: the built-ins, the team file, role files)
        /// [default: the team file's `default_role`, else worker].
        role: Option<String>,
        /// Its name [default: ROLE-N].
        #[arg(long)]
        name: Option<String>,
        /// Run it on another machine: an ssh destination as `ssh` resolves it (a `Host` of
        /// ~/.ssh/config); the team file's `[ssh]` says how ssh is run [default: the role's
        /// `host`, else this machine].
        #[arg(long)]
        host: Option<String>,
        /// Its working directory on that host, used as is [default: a directory of its own
        /// under the host's `[ssh] dir`].
        #[arg(long, requires = "host")]
        workspace: Option<String>,
        /// Run it in a container of this image (podman, else `--runtime docker`), with no
        /// network but the team's proxy, no capabilities and a read-only root [default: the
        /// role's `container`, else none].
        #[arg(long)]
        image: Option<String>,
        /// The container's memory cap (`2G`, `512M`); a task past it is killed and fails with
        /// `out of memory`.
        #[arg(long, requires = "image")]
        memory: Option<String>,
        /// The container's CPU cap, in CPUs (`1.5`).
        #[arg(long, requires = "image")]
        cpus: Option<String>,
        /// The most processes the container may hold.
        #[arg(long, requires = "image")]
        pids: Option<u32>,
        /// The container runtime: `podman` or `docker` [default: podman].
        #[arg(long, requires = "image")]
        runtime: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an agent's output.
    Logs {
        /// The agent.
        name: String,
        /// Keep printing new output (`-f` is the team file, so no short form).
        #[arg(long)]
        follow: bool,
        /// Print the log's bytes as they are (escape codes and all), for scripts; without it,
        /// control, bidi and zero-width characters are shown as codes.
        #[arg(long)]
        raw: bool,
    },
    /// Show the agents: status, backend, pid, pane, incarnation, restarts, task, last activity,
    /// tokens (input + output) and cost.
    Ps(JsonFlag),
    /// Follow the team live in the terminal: agents (a worktree teammate's changes in WORK:
    /// `+added -removed N files`), tasks, pending approvals, events; allow (`a`, `A` always)
    /// or deny (`d`) the selected request, restart (`r`) or kill (`k`) the selected agent,
    /// merge (`m`) or discard (`x`, then `y`) its work, Enter jumps to its pane, `q` quits.
    Board,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `source <(agent-team completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); `cargo xtask man` writes it to docs/man/.
    #[command(hide = true)]
    Man,
    /// Lay a team's tmux window out again for its size (run by the window's own tmux hooks on
    /// a resize or a split; not for use by hand).
    #[command(hide = true)]
    TmuxLayout {
        /// The tmux server's socket.
        #[arg(long, value_name = "PATH")]
        socket: std::path::PathBuf,
        /// The team window (`@N`).
        #[arg(long, value_name = "WINDOW")]
        window: String,
        /// tmux's name of the layout (`main-vertical` is the team's own arrangement).
        #[arg(long, default_value = "main-vertical")]
        layout: String,
        /// The file held locked while the window is laid out.
        #[arg(long, value_name = "PATH")]
        lock: std::path::PathBuf,
    },
    /// Show the model usage: tokens, requests and cost per agent, per role and in total, and
    /// the budgets.
    Usage(JsonFlag),
    /// Budgets of tokens or dollars, per role or for the whole team.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// The shared task board.
    #[command(subcommand)]
    Task(TaskCmd),
    /// The team's shared memory: JSON values by key that every agent can read.
    #[command(subcommand)]
    Memory(MemoryCmd),
    /// Settings changed while the team runs (Nyzhi's /teams-config): a role's model or
    /// max_steps, a member's model or role, the default model, max_teammates. Kept with the
    /// team over the team file's values until reset; each applies at the next start of the
    /// agents it concerns (max_teammates: at the next spawn).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Plans of plan-required teammates (`plan_required`): they work read-only until their
    /// plan is approved; list, show, approve or reject them.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Send a message to an agent (`*` for everyone) as the operator.
    Send {
        /// The recipient's name, or `*` for every agent.
        to: String,
        /// The message text.
        text: String,
        /// A one-line summary.
        #[arg(long)]
        summary: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an agent's messages with their delivery state (queued, delivered, read).
    Inbox {
        /// The agent.
        name: String,
        /// Only messages not yet read.
        #[arg(long)]
        unread: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List permission requests waiting for a decision.
    Perms {
        /// Include decided requests.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow a pending permission request.
    Approve {
        /// The request id (see `agent-team perms`).
        id: u64,
        /// Allow this tool and input for every teammate from now on.
        #[arg(long)]
        always: bool,
        /// With --always: allow every input matching this pattern instead of exactly this
        /// input (`*` matches any run of characters, e.g. 'cargo test*'; it must match this
        /// request's input).
        #[arg(long, value_name = "GLOB", requires = "always")]
        pattern: Option<String>,
    },
    /// Deny a pending permission request.
    Deny {
        /// The request id (see `agent-team perms`).
        id: u64,
        /// Why; the agent sees it.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print the event log as NDJSON envelopes.
    Events {
        /// Keep printing new events as they happen.
        #[arg(long)]
        follow: bool,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        since: u64,
        /// The same NDJSON (events are always printed as JSON; taken so scripts may pass
        /// `--json` to every command).
        #[arg(long)]
        json: bool,
    },
    /// Teams on this machine.
    #[command(subcommand)]
    Teams(TeamsCmd),
    /// List the roles the team can use: the built-ins, the team file's `[roles.NAME]` and the
    /// role files in `.agent-team/agents`, `.claude/agents` and `.nyzhi/agents`, each with its
    /// description, tools and source; role files' warnings go to stderr.
    Roles(JsonFlag),
    /// Check what this machine offers a team: the sandbox's layers (bubblewrap, Landlock) and
    /// view (what agents read, write and reach, what does not hold here), tmux, iTerm2, the
    /// container runtimes (podman, docker) and whether each runs a container here.
    Doctor(JsonFlag),
    /// Run a command in the sandbox a role's agents get (their task commands, `bash` tool and
    /// CLI), to try your tools there: `agent-team sandbox -- npm install`. With no command, print
    /// what that sandbox hides, lets write and protects.
    Sandbox {
        /// The role whose sandbox (its `[sandbox]` paths over the team's).
        #[arg(long, default_value = "worker")]
        role: String,
        /// Print the sandbox's view as JSON (with no command).
        #[arg(long)]
        json: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Compact the team's state now: remove read messages, finished tasks nothing waits on
    /// and events older than --older-than, and give the space back (the daemon also does this
    /// every few hours for what is older than `limits.retention_days`).
    Gc {
        /// Age in days of what is removed; 0 removes everything done.
        #[arg(long, default_value_t = 0, value_name = "DAYS")]
        older_than: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shut the team down: agents stopped, panes closed, daemon stopped; state kept on disk.
    Down {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the teams over HTTP: REST, live event streams (SSE), NexAU's `POST /team/stream`
    /// and a web board at `/`. Every request needs `Authorization: Bearer TOKEN`
    /// (`AGENT_TEAM_API_TOKEN`, else a token kept in the runtime dir in `serve.token`, whose
    /// path is printed at start; the token never is). Ctrl-C stops the server, not the teams.
    Serve(ServeArgs),
    /// The runs that schedules and webhooks started: each has an id and a record in
    /// AGENT_TEAM_HOME/runs/ID (what started it, the team file, goal and variables, start and
    /// end, outcome and exit code, the run's JSON result and its log).
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Schedules: start a run of a team at each time of a cron expression. A team file's
    /// `[[schedule]]` (name, cron, goal, vars, missed = "run_once" | "skip") runs under
    /// `agent-team serve -f FILE` or `agent-team scheduler -f FILE`; `schedule add` keeps more
    /// in AGENT_TEAM_HOME/schedules, which every `serve` and `scheduler` on this machine runs.
    /// Never two runs of one schedule at once (a time that comes while one runs is recorded
    /// as skipped); a time missed while no scheduler ran is run once after it starts again
    /// (or recorded as skipped with missed = "skip").
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Run the schedules (`agent-team schedule list`) without the HTTP service, until Ctrl-C or
    /// SIGTERM: for a systemd unit (docs/AUTOMATION.md). With -f FILE (or ./agent-team.toml)
    /// its `[[schedule]]`s too. Stopped, it starts no more runs and exits once those going on have
    /// ended (each record gets its end).
    Scheduler,
    /// The hooks of an external agent CLI (Claude Code's and Qwen Code's), written into the
    /// CLI's private settings by the worker; not for use by hand. `stop` (the turn's end)
    /// hands the messages queued for the agent back as its next instruction
    /// (`{"decision":"block","reason":…}` on stdout), or lets the turn end. `pre-tool-use`
    /// has a call of the CLI's own tool judged by the role's policy, asking the team
    /// (`agent-team approve`) where the policy says `ask`; with no decision it exits 2, which
    /// refuses the call.
    #[command(hide = true)]
    Hook {
        /// The hook: `stop` or `pre-tool-use`.
        #[arg(value_parser = ["stop", "pre-tool-use"])]
        event: String,
        /// `pre-tool-use`: the CLI asking (its provider name, e.g. `codex`), for the shape of
        /// the answer it reads; Claude Code's by default.
        #[arg(long, value_name = "PROVIDER")]
        cli: Option<String>,
        /// The agent's MCP server's hook socket.
        #[arg(long, value_name = "PATH", env = agent_team_pane::env::HOOK_SOCKET)]
        socket: std::path::PathBuf,
    },
    /// Run the team's supervisor daemon (normally started on demand).
    Daemon {
        /// Stay in the foreground instead of detaching.
        #[arg(long)]
        foreground: bool,
        /// Be a daemon's guardian (started by the daemon itself): wait for the daemon to end
        /// and bring it back unless the team was stopped on purpose.
        #[arg(long, hide = true)]
        guard: bool,
        /// Seconds a permission request waits before it is denied.
        #[arg(
            long,
            default_value_t = PERMISSION_TIMEOUT_SECS,
            value_name = "SECS",
            env = "AGENT_TEAM_PERMISSION_TIMEOUT"
        )]
        permission_timeout: u64,
    },
}

/// `agent-team kube …`
#[derive(Debug, Subcommand)]
pub enum KubeCmd {
    /// Print the Kubernetes objects that run one teammate joining this team over TLS: a
    /// `Secret` with a fresh one-use join token (as `agent-team join` makes), a `Pod` running
    /// `agent-team-worker --join URL` (the token from the Secret, the role's `container`
    /// memory and CPU caps as limits, non-root, read-only root, no capability, an emptyDir
    /// /tmp and /workspace) and a default-deny `NetworkPolicy` that lets it reach the team's
    /// join endpoint only. With --sandbox: kubernetes-sigs/agent-sandbox's `SandboxTemplate`
    /// (per role) and `SandboxClaim` (per member) instead of the Pod. The team must listen
    /// (`up --join-listen ADDR`). Try it locally with `podman kube play --network host FILE`
    /// (docs/KUBERNETES.md).
    Manifest {
        /// A teammate of the team file or a member on the roster (its name and role kept), a
        /// role (a fresh member ROLE-N of it), or a new member's name (role worker)
        /// [default: worker].
        #[arg(value_name = "ROLE|NAME")]
        target: Option<String>,
        /// The image [default: the role's `container.image`]; it must hold
        /// /usr/local/bin/agent-team-worker unless --worker-path binds it in.
        #[arg(long, value_name = "IMG")]
        image: Option<String>,
        /// The join endpoint as the Pod reaches it (`agent-teams://HOST:PORT` or
        /// `HOST:PORT`) [default: the address the team listens on].
        #[arg(long, value_name = "URL")]
        join_url: Option<String>,
        /// Bind this worker binary of the node in read-only (a hostPath volume, for trials on
        /// one machine), instead of the image's.
        #[arg(long, value_name = "PATH")]
        worker_path: Option<PathBuf>,
        /// The agent-sandbox variant: a SandboxTemplate per role and a SandboxClaim per
        /// member (extensions.agents.x-k8s.io/v1alpha1).
        #[arg(long)]
        sandbox: bool,
        /// How long the token may wait to be used: 90s, 10m, 2h, 1d.
        #[arg(long, default_value = crate::cmd::join::DEFAULT_TTL, value_parser = crate::cmd::join::parse_ttl)]
        ttl: u64,
        /// Write the manifest to FILE (mode 0600: it holds the token) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the objects as one JSON `List` (kubectl applies it too).
        #[arg(long)]
        json: bool,
    },
}

/// `agent-team runs …`
#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// The runs, oldest first: id, trigger, team, outcome (running, succeeded, failed,
    /// skipped, lost), start, seconds, goal.
    List {
        /// Only the last N.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// Print JSON: `{"runs": [RECORD, ...]}`.
        #[arg(long)]
        json: bool,
    },
    /// One run's record and the leader's answer.
    Show {
        /// The run's id (`agent-team runs list`).
        id: String,
        /// Print JSON: the record with the run's JSON result as `output`.
        #[arg(long)]
        json: bool,
    },
}

/// How `schedule add --missed` is given.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MissedArg {
    /// Run once for the times missed while no scheduler ran.
    RunOnce,
    /// Record them as skipped.
    Skip,
}

/// `agent-team schedule …`
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Keep a schedule for the team of -f FILE: with NAME and --cron, a schedule of its own;
    /// with neither, the file's `[[schedule]]`s (so a `serve` or `scheduler` of another
    /// file runs them too).
    Add {
        /// The schedule's name (letters, digits, `-`, `_`).
        name: Option<String>,
        /// A cron expression in local time: 5 fields (minute hour day month weekday, e.g.
        /// "0 3 * * *"), 6 with seconds first ("*/10 * * * * *"), 7 with a year last.
        #[arg(long, value_name = "EXPR", requires = "name")]
        cron: Option<String>,
        /// The run's goal [default: the team file's].
        #[arg(long, value_name = "TEXT", requires = "cron")]
        goal: Option<String>,
        /// Fill `{{KEY}}` with VALUE (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var, requires = "cron")]
        vars: Vec<(String, String)>,
        /// A time missed while no scheduler ran: run it once, or skip it.
        #[arg(long, value_enum, default_value = "run-once", requires = "cron")]
        missed: MissedArg,
    },
    /// Remove a kept schedule (NAME), or the registration of the team's file (no NAME); a
    /// `[[schedule]]` in a team file is removed by editing the file.
    Rm {
        /// The schedule.
        name: Option<String>,
    },
    /// The schedules this machine's schedulers run (and those of -f FILE): next and last time.
    List {
        /// Print JSON: `{"schedules": [...]}`.
        #[arg(long)]
        json: bool,
    },
}

/// `agent-team budget …`
#[derive(Debug, Subcommand)]
pub enum BudgetCmd {
    /// Set (or raise) a budget at run time, over the team file's; stored with the team. An
    /// agent stopped by a spent budget goes on after `agent-team restart NAME`. Without
    /// `--role` it is the whole team's budget (`--team` names the team, as everywhere).
    Set {
        /// The role whose budget to set [default: the whole team's].
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// The most input + output tokens (0 removes the limit).
        #[arg(long, value_name = "N", required_unless_present = "usd")]
        tokens: Option<u64>,
        /// The most US dollars (0 removes the limit).
        #[arg(long, value_name = "X")]
        usd: Option<f64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT (port 0 picks a free one) or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub listen: String,
    /// Allow a non-loopback address (put TLS in front: the token travels in every request).
    #[arg(long)]
    pub allow_remote: bool,
    /// Also answer requests whose Host header names NAME (a host name or address, no port),
    /// besides the listen address, localhost, 127.0.0.1 and `[::1]`; any other Host gets 403,
    /// so a web page that rebinds its DNS name to this machine gets nothing. Repeatable.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Stop the daemon of a `POST /team/stream` session team once nobody has streamed it for
    /// this many seconds, whether its run ended or still runs (its state is kept; the
    /// session's next message starts it again). 0: never.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub session_idle: u64,
    /// At most N session teams of `POST /team/stream` up at once (those this server started or
    /// streamed and has not stopped); a new session past it gets HTTP 429.
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions: u64,
    /// At most N HTTP connections at once; at the cap, the oldest connection that has not made
    /// a request with the right token is closed to make room.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Close a connection that has not sent a whole request head this many seconds after the
    /// server began waiting for one (a new connection, or a kept-alive one between requests).
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Close a connection on which no byte moved either way for this many seconds (a stalled
    /// request body, a client that stopped reading); event streams send a keep-alive every
    /// 15 s, so keep it above that.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// `--var` and `--secret` for every run this server starts (a request's `variables` go
    /// over them).
    #[command(flatten)]
    pub vars: VarArgs,
}

/// Arguments of `up`.
#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    /// The goal for the leader [default: the team file's `goal`].
    pub goal: Option<String>,
    /// Where agents run: auto, tmux, iterm2, process, in-process [default: the team file's, else auto].
    #[arg(long, value_name = "B")]
    pub backend: Option<String>,
    /// Do not attach to the leader's pane.
    #[arg(long)]
    pub detach: bool,
    /// Run the built-in offline demo team (a leader, 3 teammates, 8 shell tasks, one approval).
    #[arg(long)]
    pub demo: bool,
    /// Inside tmux: put the team in a new window of your session instead of a private server
    /// (your current pane is never split).
    #[arg(long)]
    pub here: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// How the team works: leader, coordinator or collaborate [default: the team file's
    /// `strategy`, else leader].
    #[arg(long, value_name = "S", value_parser = parse_strategy)]
    pub strategy: Option<agent_team_protocol::TeamStrategy>,
    /// Add N teammates of the default role (`worker`) named worker-1..N (names the team file
    /// already uses are skipped), besides the team file's own.
    #[arg(short = 'n', long = "workers", value_name = "N")]
    pub workers: Option<usize>,
    /// `--var` and `--secret`.
    #[command(flatten)]
    pub vars: VarArgs,
    /// Also listen for workers that dial in from other machines, over TLS 1.3 on ADDR (e.g.
    /// `0.0.0.0:7443`; port 0 picks one, kept across restarts); `agent-team join NAME` then
    /// prints a URL and a one-use token (docs/JOIN.md). Over the team file's `[join] listen`.
    #[arg(long, value_name = "ADDR")]
    pub join_listen: Option<String>,
}

fn parse_strategy(s: &str) -> Result<agent_team_protocol::TeamStrategy, String> {
    agent_team_protocol::TeamStrategy::parse(s)
        .ok_or_else(|| format!("unknown strategy {s:?}; use leader, coordinator or collaborate"))
}

/// `--var` and `--secret` of `up` and `run`.
#[derive(Debug, Args, Clone, Default)]
pub struct VarArgs {
    /// Fill `{{KEY}}` with VALUE in the goal, the system prompts and the tasks (repeatable;
    /// over the team file's `[variables]`).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Put KEY=VALUE into the environment of the agents' commands and nowhere else: never a
    /// prompt, the store or a log (repeatable; `--secret KEY` takes the value of $KEY here,
    /// which keeps it off this command line).
    #[arg(long = "secret", value_name = "KEY[=VALUE]", value_parser = parse_secret)]
    pub secrets: Vec<(String, String)>,
    /// Put KEY=VALUE into the environment of the agents' commands, shown as it is (NexAU's
    /// `sandbox_env`: environment, not a secret, so never masked; never a prompt or the
    /// store). `--env KEY` takes the value of $KEY here (repeatable).
    #[arg(long = "env", value_name = "KEY[=VALUE]", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
}

impl VarArgs {
    /// Moves `--env` into `secrets` under [`agent_team_config::PLAIN_ENV_PREFIX`], the form
    /// `resolve_secrets` takes plain environment in (it then reaches the commands unmasked).
    pub fn fold_env(&mut self) {
        let env = std::mem::take(&mut self.env);
        self.secrets.extend(
            env.into_iter()
                .map(|(k, v)| (format!("{}{k}", agent_team_config::PLAIN_ENV_PREFIX), v)),
        );
    }
}

fn parse_env(arg: &str) -> Result<(String, String), String> {
    assignment_or_env(arg, "--env")
}

/// `KEY=VALUE`, or `KEY` alone for the value of the environment variable KEY (named in the
/// error as given with `flag`).
fn assignment_or_env(arg: &str, flag: &str) -> Result<(String, String), String> {
    if arg.contains('=') {
        return agent_team_config::parse_assignment(arg);
    }
    agent_team_config::check_key(arg)?;
    match std::env::var(arg) {
        Ok(v) => Ok((arg.to_string(), v)),
        Err(_) => Err(format!(
            "the environment variable {arg} is not set (give {flag} {arg}=VALUE, or export it)"
        )),
    }
}

fn parse_var(arg: &str) -> Result<(String, String), String> {
    agent_team_config::parse_var_assignment(arg)
}

fn parse_secret(arg: &str) -> Result<(String, String), String> {
    assignment_or_env(arg, "--secret")
}

/// Arguments of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The goal for the leader [default: the team file's `goal`].
    pub goal: Option<String>,
    /// Where agents run: auto, tmux, iterm2, process, in-process [default: the team file's, else auto].
    #[arg(long, value_name = "B")]
    pub backend: Option<String>,
    /// Run the built-in offline demo team.
    #[arg(long)]
    pub demo: bool,
    /// Give up (and shut the team down) after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Do not print progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Allow every permission request without asking (scripts, CI). Without it, `run` asks at
    /// the terminal when it has one, else requests wait for `agent-team approve`.
    #[arg(long)]
    pub approve_all: bool,
    /// Print only the result, as one JSON object (`{"type":"complete","result":…}`, or
    /// `{"type":"error",…}` when the run stops without an answer).
    #[arg(long)]
    pub json: bool,
    /// Print every event of the run as it happens, one JSON envelope a line (as `agent-team
    /// events` does), then the result object of --json as the last line.
    #[arg(long, conflicts_with = "json")]
    pub stream: bool,
    /// How the team works: leader, coordinator or collaborate [default: the team file's
    /// `strategy`, else leader].
    #[arg(long, value_name = "S", value_parser = parse_strategy)]
    pub strategy: Option<agent_team_protocol::TeamStrategy>,
    /// Add N teammates of the default role (`worker`) named worker-1..N (names the team file
    /// already uses are skipped), besides the team file's own.
    #[arg(short = 'n', long = "workers", value_name = "N")]
    pub workers: Option<usize>,
    /// With `finish = "merge"`: merge a teammate's branch even when it changes the team's
    /// control plane (the team file, hook scripts, agent CLIs' settings, workflows, ...).
    #[arg(long)]
    pub accept_control_changes: bool,
    /// `--var` and `--secret`.
    #[command(flatten)]
    pub vars: VarArgs,
}

/// Just `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agent-team task …`
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Add a task.
    Add {
        /// Short title.
        title: String,
        /// Longer description.
        #[arg(long = "desc", value_name = "TEXT")]
        desc: Option<String>,
        /// Shell command the offline `exec` provider runs.
        #[arg(long, value_name = "CMD")]
        run: Option<String>,
        /// A task that must complete first (repeatable).
        #[arg(long = "blocked-by", value_name = "ID")]
        blocked_by: Vec<u64>,
        /// Give it to this agent at once.
        #[arg(long, value_name = "NAME")]
        assign: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tasks.
    List {
        /// Only tasks in this status (pending, in_progress, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one task.
    Show {
        /// The task id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print the agents' text as it is (escape codes and all), for scripts; without it,
        /// control, bidi and zero-width characters are shown as codes.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
    /// Give a pending task to an agent.
    Assign {
        /// The task id.
        id: u64,
        /// The agent.
        name: String,
    },
    /// Put an in-progress task back to pending.
    Release {
        /// The task id.
        id: u64,
    },
    /// Cancel a pending task.
    Cancel {
        /// The task id.
        id: u64,
    },
    /// Put a failed task back to pending.
    Retry {
        /// The task id.
        id: u64,
    },
}

/// `agent-team config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Every setting with its value now, marked `set` when changed at run time.
    Show {
        /// Print JSON: `{"settings": [{key, value, set, applies}], "overrides": {key: value}}`.
        #[arg(long)]
        json: bool,
    },
    /// Change one setting: defaults.model, max_teammates, role.NAME.model,
    /// role.NAME.max_steps, member.NAME.model, member.NAME.role.
    Set {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back to the team file's value: one setting, or every one without KEY.
    Reset {
        /// The setting [default: all].
        key: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `agent-team memory …`
#[derive(Debug, Subcommand)]
pub enum MemoryCmd {
    /// List the keys with their version, writer and value (in key order).
    List {
        /// Only keys starting with this text (e.g. `outputs/`).
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// Print JSON: every entry with its whole value.
        #[arg(long)]
        json: bool,
        /// Every key with its whole value (lauren-ai's `get_all()`); with `--json`, one object
        /// of key → value.
        #[arg(long)]
        values: bool,
    },
    /// Print one key's value (a string as it is, anything else as JSON).
    Get {
        /// The key.
        key: String,
        /// Print the whole entry as JSON: key, value, version, updated_by, updated_at.
        #[arg(long)]
        json: bool,
    },
    /// Write a key. VALUE is taken as JSON when it parses as JSON (`42`, `true`, `{"a":1}`,
    /// `"quoted"`), else stored as a string.
    Set {
        /// The key (e.g. `outputs/builder`; `/` separates parts).
        key: String,
        /// The value.
        value: String,
        /// Store VALUE as a string even when it parses as JSON.
        #[arg(long)]
        string: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `agent-team plan …`
#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// List the teammates whose plan is required, with where their plan stands (planning,
    /// submitted, approved).
    List(JsonFlag),
    /// Print a teammate's plan and the last decision on it.
    Show {
        /// The teammate.
        name: String,
        /// Print JSON: the plan state, the plan, when it was submitted, the last feedback.
        #[arg(long)]
        json: bool,
    },
    /// Approve a teammate's submitted plan: it gets its full tool set (and is told so).
    Approve {
        /// The teammate.
        name: String,
        /// A note for the teammate.
        #[arg(long, value_name = "TEXT")]
        feedback: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject a teammate's submitted plan: it stays read-only and gets the feedback to
    /// revise the plan.
    Reject {
        /// The teammate.
        name: String,
        /// What must change; the teammate's model reads it.
        #[arg(long, value_name = "TEXT")]
        feedback: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `agent-team teams …`
#[derive(Debug, Subcommand)]
pub enum TeamsCmd {
    /// List teams with their state on this machine.
    List(JsonFlag),
    /// Show one team.
    Show {
        /// The team.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a team's stored state (it must not be running).
    Delete {
        /// The team.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Catches clashing flags (like two `-f`) at test time instead of at the user's first run.
    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    /// `run` and `up` parsed alone come out as the whole command makes them; what they do not
    /// parse alone (help, version, errors, other subcommands) is left to the whole command.
    #[test]
    fn run_and_up_parse_alone_as_in_the_whole_command() {
        for line in [
            "agent-team run",
            "agent-team run --backend in-process --quiet --timeout 60",
            "agent-team --team t run -n 3 --json --strategy coordinator the-goal",
            "agent-team run --stream --approve-all --demo --team t -f x.toml",
            "agent-team -f x.toml up",
            "agent-team up --detach --here --backend process -n 2 --json goal",
        ] {
            let args = words(line);
            let alone = Cli::parse_starting(&args).unwrap_or_else(|| panic!("{line}: not alone"));
            let whole = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{alone:?}"), format!("{whole:?}"), "{line}");
        }
        for line in [
            "agent-team run --help",
            "agent-team run -h",
            "agent-team --version run",
            "agent-team run --no-such-flag",
            "agent-team run --json --stream",
            "agent-team up -n many",
            "agent-team help run",
            "agent-team send b1 run",
            "agent-team ps",
        ] {
            assert!(Cli::parse_starting(&words(line)).is_none(), "{line}");
        }
    }
}
