//! The shell scripts run on a host: pure text built from paths and names, no ssh call here.

use crate::{ENV_HOST, RemoteSettings, dir_word};
use agent_team_pane::{ExitInfo, LaunchSpec, Liveness, env, shell_quote};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The probe: makes the team's directories under `[ssh] dir` and prints where they are, the
/// system, the worker and tmux found there, as `key=value` lines.
pub(crate) fn probe(settings: &RemoteSettings) -> String {
    let team = shell_quote(&settings.team);
    let worker = settings
        .worker
        .as_deref()
        .map(shell_quote)
        .unwrap_or_default();
    format!(
        "set -e\numask 077\nR={dir}\nmkdir -p \"$R/run/\"{team} \"$R/home\" \"$R/bin\" \"$R/work\"\n\
         chmod 700 \"$R/run\" \"$R/run/\"{team}\nR=$(cd \"$R\" && pwd -P)\necho \"root=$R\"\n\
         echo \"uname=$(uname -sm)\"\nW={worker}\n\
         if [ -n \"$W\" ]; then if [ -x \"$W\" ]; then echo \"worker=$W\"; fi\n\
         else echo \"worker=$(command -v agent-team-worker || true)\"; fi\n\
         echo \"tmux=$(command -v tmux || true)\"\n",
        dir = dir_word(settings.dir.as_deref()),
    )
}

/// The line writing its standard input to `path` through a temporary name (so a half-written
/// binary is never run).
pub(crate) fn install_file(path: &str) -> String {
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
    let tmp = format!("{path}.part");
    format!(
        "set -e; umask 077; mkdir -p {d}; cat > {t}; chmod 700 {t}; mv -f {t} {p}",
        d = shell_quote(dir),
        t = shell_quote(&tmp),
        p = shell_quote(path),
    )
}

/// The line that waits for the link's forwarded socket `sock_name` in the team's `dir`, points
/// the stable name `daemon.sock` at it and drops older generations' sockets; then writes the
/// team's secrets file `secrets` from standard input (`with_secrets`) or removes it.
pub(crate) fn link_socket(dir: &str, sock_name: &str, secrets: &str, with_secrets: bool) -> String {
    let mut command = format!(
        "set -e; umask 077; D={d}; cd \"$D\"; n=0; while [ ! -S {s} ]; do n=$((n+1)); \
         if [ $n -gt 400 ]; then echo 'the forwarded socket did not appear' >&2; exit 3; fi; \
         sleep 0.025; done; ln -sfn {s} .daemon.sock.new; mv -f .daemon.sock.new daemon.sock; \
         for f in link-*.sock; do [ \"$f\" = {s} ] || rm -f \"$f\"; done; ",
        d = shell_quote(dir),
        s = shell_quote(sock_name),
    );
    let secrets = shell_quote(secrets);
    if with_secrets {
        command.push_str(&format!(
            "cat > {secrets}.part; mv -f {secrets}.part {secrets}"
        ));
    } else {
        command.push_str(&format!("rm -f {secrets}"));
    }
    command
}

/// Where an agent's files go on its host.
struct AgentPaths {
    /// The team's run directory there.
    dir: String,
    /// The agents' `AGENT_TEAM_HOME` there.
    home: String,
    /// The agent's log.
    log: String,
    /// Its working directory.
    cwd: String,
    /// `cwd` is its default workspace (made by the launch).
    default_ws: bool,
    /// The file its secret is written to.
    secret_file: String,
}

impl AgentPaths {
    fn new(team: &str, root: &str, spec: &LaunchSpec) -> Self {
        let dir = format!("{root}/run/{team}");
        let home = format!("{root}/home");
        let log = format!("{home}/teams/{team}/logs/{}.log", spec.name);
        let given = spec.cwd.as_os_str().to_string_lossy().into_owned();
        let default_ws = given.is_empty();
        let cwd = if default_ws {
            format!("{root}/work/{team}/{}", spec.name)
        } else {
            given
        };
        let secret_file = format!("{dir}/.{}.secret", spec.name);
        AgentPaths {
            dir,
            home,
            log,
            cwd,
            default_ws,
            secret_file,
        }
    }
}

/// What a remote launch needs of its host beside the spec: the host's name, its `[ssh] dir`,
/// its worker and its tmux (when agents run in tmux there).
pub(crate) struct LaunchOn<'a> {
    /// The ssh destination.
    pub host: &'a str,
    /// The absolute `[ssh] dir` there.
    pub root: &'a str,
    /// The worker there.
    pub worker: &'a str,
    /// tmux there, when the agent runs in a session of the team's private server.
    pub tmux: Option<&'a str>,
}

/// The script that starts `spec` on its host and prints the new process group's id.
pub(crate) fn launch(settings: &RemoteSettings, spec: &LaunchSpec, on: &LaunchOn) -> String {
    let team = &settings.team;
    let p = AgentPaths::new(team, on.root, spec);
    let line = agent_command(settings, spec, on, &p);
    let d = shell_quote(&p.dir);
    let pid = shell_quote(&format!("{}/{}.pid", p.dir, spec.name));
    let run = shell_quote(&format!("{}/{}.run", p.dir, spec.name));
    let eof = format!("AGENT_TEAM_{}", random_hex());
    let mut s = String::new();
    s.push_str("set -e\numask 077\n");
    s.push_str(&format!(
        "mkdir -p {d} {logs}\n",
        logs = shell_quote(&format!("{}/teams/{team}/logs", p.home))
    ));
    if p.default_ws {
        s.push_str(&format!("mkdir -p {}\n", shell_quote(&p.cwd)));
    }
    s.push_str(&format!(
        "if ! [ -d {c} ]; then echo \"no directory {c} there (the member's workspace)\" >&2; exit 3; fi\n",
        c = shell_quote(&p.cwd)
    ));
    let env_file = shell_quote(&format!("{}/.{}.env", p.dir, spec.name));
    s.push_str(&secret_files(spec, &p, &env_file, &eof));
    // In a tmux pane on the host its terminal is the pane (it writes its log itself);
    // headless, its output goes to the log.
    let io = match on.tmux {
        Some(_) => String::new(),
        None => format!(" </dev/null >>{} 2>&1", shell_quote(&p.log)),
    };
    s.push_str(&format!(
        "cat > {run} <<'{eof}'\necho $$ > {pid}.part && mv -f {pid}.part {pid}\n\
         if [ -f {env_file} ]; then . {env_file}; rm -f {env_file}; fi\ncd {c} || exit 1\n\
         {line}{io}\necho $? > {d}/$$.status\n{eof}\n",
        c = shell_quote(&p.cwd),
    ));
    let start = match on.tmux {
        // Its own session of the team's private server there: it outlives a dropped link
        // and the pane here attaches to it. tmux gives a pane's process its own group.
        Some(tm) => {
            let tm = tmux(tm, &p.dir);
            let session = shell_quote(&format!("={}", spec.name));
            format!(
                "{tm} kill-session -t {session} 2>/dev/null || true\n\
                 {tm} new-session -d -s {name} -x 200 -y 50 \"sh {run}\" </dev/null >/dev/null 2>&1\n",
                name = shell_quote(&spec.name),
            )
        }
        None => format!("setsid sh {run} </dev/null >/dev/null 2>&1 &\n"),
    };
    s.push_str(&format!(
        "rm -f {pid}\n{start}n=0\n\
         while [ ! -s {pid} ]; do n=$((n+1)); if [ $n -gt 400 ]; then echo 'the agent did not start' >&2; exit 4; fi; sleep 0.025; done\n\
         cat {pid}\n"
    ));
    s
}

/// The agent's command line on its host: `env` with its environment (the host's paths in
/// place of this machine's) and its argv, this build's worker replaced by the host's; in its
/// container there when it has one ([`container_line`]).
fn agent_command(
    settings: &RemoteSettings,
    spec: &LaunchSpec,
    on: &LaunchOn,
    p: &AgentPaths,
) -> String {
    let boxed = spec.container.is_some();
    let mut words = vec!["env".to_string()];
    let mut names: Vec<String> = Vec::new();
    for k in &spec.env_remove {
        words.push("-u".into());
        words.push(shell_quote(k));
    }
    let replaced = [
        env::SECRET,
        env::SOCKET,
        env::LOG_FILE,
        env::WORKSPACE,
        "AGENT_TEAM_HOME",
        "AGENT_TEAM_RUNTIME_DIR",
        ENV_HOST,
    ];
    for (k, v) in &spec.env {
        if !replaced.contains(&k.as_str()) {
            words.push(shell_quote(&format!("{k}={v}")));
            names.push(k.clone());
        }
    }
    let sock = format!("{}/daemon.sock", p.dir);
    let runtime = format!("{}/run", on.root);
    for (k, v) in [
        (env::SECRET_FILE, p.secret_file.as_str()),
        (env::SOCKET, &sock),
        (env::LOG_FILE, &p.log),
        (env::WORKSPACE, &p.cwd),
        ("AGENT_TEAM_HOME", &p.home),
        ("AGENT_TEAM_RUNTIME_DIR", &runtime),
        (ENV_HOST, on.host),
    ] {
        // In a container only what is bound in: not the host's state dir and logs.
        if boxed && [env::LOG_FILE, "AGENT_TEAM_HOME", "AGENT_TEAM_RUNTIME_DIR"].contains(&k) {
            continue;
        }
        words.push(shell_quote(&format!("{k}={v}")));
        names.push(k.to_string());
    }
    // The credentials the run script reads into its environment.
    names.extend(
        spec.secret_env
            .iter()
            .filter(|(k, _)| is_env_name(k))
            .map(|(k, _)| k.clone()),
    );
    let mut argv = Vec::new();
    for (i, a) in spec.argv.iter().enumerate() {
        let local_worker = settings
            .local_worker
            .as_ref()
            .is_some_and(|w| w.as_os_str() == a.as_str());
        if i == 0 && local_worker {
            argv.push(shell_quote(on.worker));
        } else {
            argv.push(shell_quote(a));
        }
    }
    match &spec.container {
        Some(run) => container_line(run, spec, on, p, &words, &names, &argv),
        None => {
            words.extend(argv);
            words.join(" ")
        }
    }
}

/// The runtime's command line on the host that runs `argv` in the agent's container, its
/// variables set by `env_words` on the runtime and passed in by `names`: nothing of the host
/// but its workspace, the host's worker (read-only) and the team's run dir there (read-only:
/// the forwarded daemon socket and the agent's secret file); no network (an agent on a host
/// has no egress proxy); no capability; a read-only root; the caps; the host's own soft
/// ulimits (runc refuses more); the user's own uid when not root.
fn container_line(
    run: &agent_team_pane::container::ContainerRun,
    spec: &LaunchSpec,
    on: &LaunchOn,
    p: &AgentPaths,
    env_words: &[String],
    names: &[String],
    argv: &[String],
) -> String {
    let q = |w: &str| shell_quote(w);
    let mut v: Vec<String> = env_words.to_vec();
    let program = q(&run.program);
    v.extend([program.clone(), "run".into()]);
    v.extend(
        agent_team_pane::container::confined(run, &spec.name)
            .iter()
            .map(|w| q(w)),
    );
    // The host's own limits and user, read when the run script runs (below).
    v.extend([
        "--ulimit".into(),
        "\"nofile=$nf:$nf\"".into(),
        "--ulimit".into(),
        "\"nproc=$np:$np\"".into(),
        "$ua".into(),
    ]);
    for (path, ro) in [
        (p.cwd.as_str(), false),
        (on.worker, true),
        (p.dir.as_str(), true),
    ] {
        v.push("--volume".into());
        v.push(q(&format!("{path}:{path}{}", if ro { ":ro" } else { "" })));
    }
    for k in names {
        v.extend(["--env".into(), q(k)]);
    }
    v.extend(["--workdir".into(), q(&p.cwd), q(&run.image)]);
    v.extend(argv.iter().cloned());
    // Computed on the host when the run script runs.
    format!(
        "nf=$(ulimit -Sn); np=$(ulimit -Su 2>/dev/null || ulimit -Sp 2>/dev/null); \
         case $np in unlimited|'') np=32768;; esac; \
         if [ \"$np\" -gt 32768 ]; then np=32768; fi; ua=; if [ \"$(id -u)\" != 0 ]; then \
         ua=\"--user $(id -u):$(id -g) --security-opt unmask=/proc/*\"; fi; \
         {program} rm --force --time 0 {name} >/dev/null 2>&1 || true; {line}",
        name = q(&run.name),
        line = v.join(" ")
    )
}

/// The part of a launch writing the agent's secret to its file and the credentials it would
/// inherit here (its model's API key) to `env_file`: a 0600 file the run script reads into
/// the agent's environment and removes, never a command line.
fn secret_files(spec: &LaunchSpec, p: &AgentPaths, env_file: &str, eof: &str) -> String {
    let secret = spec
        .env
        .iter()
        .find(|(k, _)| k == env::SECRET)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut s = format!(
        "rm -f {f}\ncat > {f} <<'{eof}'\n{secret}\n{eof}\n",
        f = shell_quote(&p.secret_file)
    );
    let exports: String = spec
        .secret_env
        .iter()
        .filter(|(k, _)| is_env_name(k))
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect();
    s.push_str(&format!("rm -f {env_file}\n"));
    if !exports.is_empty() {
        s.push_str(&format!("cat > {env_file} <<'{eof}'\n{exports}{eof}\n"));
    }
    s
}

/// One launch of several run together: in a subshell of its own, answering `ok PID` or
/// `err REASON` on one line.
pub(crate) fn one_of_many(launch: &str) -> String {
    format!(
        "if out=$( ( {launch} ) 2>&1 ); then echo \"ok $(printf '%s\\n' \"$out\" | tail -n 1)\"; \
         else echo \"err $(printf '%s\\n' \"$out\" | tail -n 1)\"; fi\n"
    )
}

/// The answer of a launch that could not be made, in the place of its [`one_of_many`].
pub(crate) fn failed_launch(reason: &str) -> String {
    format!("echo {}\n", shell_quote(&format!("err {reason}")))
}

/// Stops the process group `pgid` (TERM, then KILL after `grace`), removes its container
/// (`program`, `name`) when it has one, and says `gone` or `alive`.
pub(crate) fn stop(
    team: &str,
    root: &str,
    pgid: u32,
    grace: Duration,
    container: Option<(&str, &str)>,
) -> String {
    let d = shell_quote(&format!("{root}/run/{team}"));
    let ticks = (grace.as_millis() / 50).max(1);
    let rm = container
        .map(|(program, name)| {
            format!(
                "{} rm --force --time 0 {} >/dev/null 2>&1 || true\n",
                shell_quote(program),
                shell_quote(name)
            )
        })
        .unwrap_or_default();
    format!(
        "p={pgid}\nkill -s TERM -- -$p 2>/dev/null || true\n\
         n=0; while kill -s 0 -- -$p 2>/dev/null && [ $n -lt {ticks} ]; do sleep 0.05; n=$((n+1)); done\n\
         kill -s KILL -- -$p 2>/dev/null || true\n\
         n=0; while kill -s 0 -- -$p 2>/dev/null && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done\n\
         {rm}rm -f {d}/$p.status\nif kill -s 0 -- -$p 2>/dev/null; then echo alive; else echo gone; fi\n"
    )
}

/// Says of each of `pids` whether it is alive, exited (with the status its run script
/// recorded in the team's `dir`) or gone; read back by [`poll_answers`].
pub(crate) fn poll(dir: &str, pids: &[String]) -> String {
    let d = shell_quote(dir);
    format!(
        "for p in {}; do if kill -s 0 \"$p\" 2>/dev/null; then echo \"$p alive\"; \
         elif [ -f {d}/\"$p\".status ]; then echo \"$p exit $(cat {d}/\"$p\".status)\"; \
         else echo \"$p gone\"; fi; done\n",
        pids.join(" ")
    )
}

/// The liveness of each process [`poll`] answered about, by pid.
pub(crate) fn poll_answers(out: &str) -> HashMap<u32, Liveness> {
    let mut answers: HashMap<u32, Liveness> = HashMap::new();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        let (Some(pid), Some(what)) = (w.next(), w.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let live = match what {
            "alive" => Liveness::Alive,
            "exit" => Liveness::Exited(exit_info(w.next())),
            _ => Liveness::Exited(ExitInfo::default()),
        };
        answers.insert(pid, live);
    }
    answers
}

/// How a remote agent ended, from the exit status its run script recorded (over 128: the
/// signal that killed it, as a shell reports it).
fn exit_info(status: Option<&str>) -> ExitInfo {
    match status.and_then(|s| s.parse::<i32>().ok()) {
        Some(c) if c > 128 && c < 160 => ExitInfo {
            code: None,
            signal: Some(c - 128),
        },
        Some(c) => ExitInfo {
            code: Some(c),
            signal: None,
        },
        None => ExitInfo::default(),
    }
}

/// The team's private tmux server on the host (`tm`, its socket in the team's `dir`).
pub(crate) fn tmux(tm: &str, dir: &str) -> String {
    format!(
        "{} -S {}",
        shell_quote(tm),
        shell_quote(&format!("{dir}/tmux.sock"))
    )
}

/// Types `text` into tmux session `name` of the server `tm` ([`tmux`]) as one bracketed
/// paste, then Enter.
pub(crate) fn paste(tm: &str, name: &str, text: &str) -> String {
    // Its session's (only) pane.
    let session = shell_quote(&format!("={name}:"));
    let eof = format!("AGENT_TEAM_{}", random_hex());
    format!(
        "set -e\n{tm} load-buffer -b agent-team - <<'{eof}'\n{text}\n{eof}\n\
         {tm} paste-buffer -p -d -b agent-team -t {session}\nsleep 0.3\n\
         {tm} send-keys -t {session} Enter\n"
    )
}

/// Removes the team's run directory `dir` from the host (its sockets, secrets and run
/// scripts), ending its private tmux server `tmux` first when there is one.
pub(crate) fn clean_up(dir: &str, tmux: Option<&str>, containers: &[(String, String)]) -> String {
    let tmux = match tmux {
        Some(tm) => format!("{} kill-server 2>/dev/null; ", self::tmux(tm, dir)),
        None => String::new(),
    };
    // Every container of the team there, by its instance label (`program`, `instance`).
    let boxes: String = containers
        .iter()
        .map(|(program, instance)| {
            let p = shell_quote(program);
            format!(
                "for c in $({p} ps --all --quiet --filter {f} 2>/dev/null); do \
                 {p} rm --force --time 0 \"$c\" >/dev/null 2>&1; done; ",
                f = shell_quote(&format!(
                    "label={}={instance}",
                    agent_team_pane::container::LABEL_INSTANCE
                ))
            )
        })
        .collect();
    format!("{tmux}{boxes}rm -rf {}", shell_quote(dir))
}

/// What a remote agent's local viewer shows.
pub(crate) struct Viewer<'a> {
    /// The agent on the host.
    pub name: &'a str,
    /// Its process there.
    pub pid: u32,
    /// The host's `[ssh] dir`.
    pub root: &'a str,
    /// The team.
    pub team: &'a str,
    /// tmux on the host, when the agent runs in a session there.
    pub tmux: Option<&'a str>,
    /// The link's control socket (here).
    pub control: &'a Path,
}

/// The viewer's shell line: the agent's log on the host followed (or its tmux session
/// attached) through `remote` (a command on the host as a local command line), copied into
/// the local log when it runs in a pane, followed again a second after the link drops; it
/// ends when the agent has ended on the host or the link's control socket is gone.
pub(crate) fn viewer(v: &Viewer, remote: &dyn Fn(String) -> String) -> String {
    let log = format!("{}/home/teams/{}/logs/{}.log", v.root, v.team, v.name);
    let pid = v.pid;
    // In tmux there, the pane here is that session, attached; else the log followed (no
    // carriage returns from the host's terminal: the copy is a plain log).
    let follow = |n: &str| match v.tmux {
        Some(tm) => remote(format!(
            // UTF-8 whatever the host's locale says (`-u`): the local terminal is.
            "exec {} -u -S {} attach -t {}",
            shell_quote(tm),
            shell_quote(&format!("{}/run/{}/tmux.sock", v.root, v.team)),
            shell_quote(&format!("={}", v.name)),
        )),
        None => remote(format!(
            "stty -onlcr 2>/dev/null; exec tail -n {n} -F --pid={pid} {}",
            shell_quote(&log)
        )),
    };
    // Copied into the local log only as a log: an attached session is a terminal.
    let show = if v.tmux.is_some() {
        "view $n".to_string()
    } else {
        "if [ -t 1 ]; then view $n | tee -a \"$AGENT_TEAM_LOG_FILE\"; else view $n; fi".to_string()
    };
    format!(
        "view() {{ if [ \"$1\" = first ]; then {first}; else {again}; fi; }}\n\
         n=first\n\
         while :; do\n\
           {show}\n\
           n=again\n\
           sleep 1\n\
           {alive} >/dev/null 2>&1; [ $? = 1 ] && break\n\
           [ -S {ctl} ] || break\n\
         done\n",
        first = follow("+1"),
        again = follow("0"),
        alive = remote(format!("kill -0 {pid}")),
        ctl = shell_quote(&v.control.display().to_string()),
    )
}

/// Makes the bare repository `bare` on the host unless it is there.
pub(crate) fn init_bare(bare: &str) -> String {
    let b = shell_quote(bare);
    format!("set -e; umask 077; [ -d {b} ] || git init -q --bare {b}")
}

/// Adds the worktree `wt` of `bare` on `branch` (made from `refs/agent-team/base` when it
/// is new) unless it is there.
pub(crate) fn add_worktree(bare: &str, wt: &str, branch: &str) -> String {
    let (b, w, br) = (shell_quote(bare), shell_quote(wt), shell_quote(branch));
    let g = agent_team_worktree::shell_git();
    format!(
        "set -e\n[ -e {w}/.git ] && exit 0\nmkdir -p \"$(dirname {w})\"\n\
         if {g} -C {b} rev-parse -q --verify refs/heads/{br} >/dev/null; then \
         {g} -C {b} worktree add -q {w} {br}; \
         else {g} -C {b} worktree add -q -b {br} {w} refs/agent-team/base; fi\n"
    )
}

/// Commits what the worktree `wt` holds uncommitted as `who` with `message`; prints `yes`
/// when there is a worktree there.
pub(crate) fn commit_work(wt: &str, who: &str, message: &str) -> String {
    let eof = format!("AGENT_TEAM_{}", random_hex());
    let g = agent_team_worktree::shell_git();
    format!(
        "set -e\nW={w}\n[ -e \"$W/.git\" ] || exit 0\n{g} -C \"$W\" add -A\n\
         if ! {g} -C \"$W\" diff --cached --quiet; then \
         GIT_AUTHOR_NAME={who} GIT_AUTHOR_EMAIL={who} GIT_COMMITTER_NAME={who} GIT_COMMITTER_EMAIL={who} \
         {g} -C \"$W\" commit -q --no-verify -F - <<'{eof}'\n{message}\n{eof}\nfi\necho yes\n",
        w = shell_quote(wt),
        who = shell_quote(who),
    )
}

/// Prints the names of the worktrees under `dir`.
pub(crate) fn list_worktrees(dir: &str) -> String {
    let dir = shell_quote(dir);
    format!("for d in {dir}/*; do [ -e \"$d/.git\" ] && basename \"$d\"; done; true")
}

/// Random hex for a here-document's delimiter (so no value can end it early).
fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `name` can be exported by a POSIX shell.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
