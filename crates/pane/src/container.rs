//! Teammates in containers (issue 66): [`Contained`] puts any backend's agent whose
//! [`LaunchSpec::container`] is set inside `podman run` (or `docker run`) and removes its
//! container when it stops, so `kill`, `restart` and `down` leave no container behind.
//!
//! The container starts from nothing the host holds: no network (`--network none`; the
//! agent's egress proxy, bound in as a socket, is its only way out), every capability dropped,
//! no new privileges, a read-only root with a writable `/tmp`, the memory, CPU and process caps
//! the team file gives, and only the paths [`ContainerRun::binds`] names (the workspace, the
//! worker and bridge binaries read-only, the agent's own dir with its proxy and daemon sockets).
//! The agent's secret never travels in the container's environment (which the runtime keeps and
//! shows in `inspect`): it is a 0600 file in the agent's own dir, bound in, read once.

use crate::{
    ExitNotify, LaunchSpec, Launched, Liveness, PaneBackend, PaneError, env, procs::run_bounded,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The label every container of one team carries, valued with [`ContainerRun::instance`].
pub const LABEL_INSTANCE: &str = "agent-team.instance";
/// The label naming the agent a container runs.
pub const LABEL_AGENT: &str = "agent-team.agent";
/// Where the agent's own dir ([`ContainerRun::agent_dir`]) is inside.
pub const AGENT_DIR_INSIDE: &str = "/run/agent-team-net/proxy";
/// The daemon's socket, linked into the agent's own dir.
pub const DAEMON_SOCKET: &str = "daemon.sock";
/// The agent's secret, written into its own dir.
pub const SECRET_FILE: &str = "secret";
/// How long a runtime command (`rm`, `ps`) may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(30);

/// One path of the host bound into the container at the same place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    /// The path, outside and inside.
    pub path: PathBuf,
    /// Read-only inside.
    pub read_only: bool,
    /// Made (a private dir) before the container starts when missing (an agent CLI's home).
    pub create: bool,
}

/// How one agent's container is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRun {
    /// `podman` or `docker`.
    pub program: String,
    /// The image.
    pub image: String,
    /// The container's name (unique per team and agent: [`container_name`]).
    pub name: String,
    /// The team's instance label ([`instance_of`]).
    pub instance: String,
    /// Memory cap as the runtime reads it (`2G`); swap is not added to it.
    pub memory: Option<String>,
    /// CPU cap (`1.5`).
    pub cpus: Option<String>,
    /// Process cap.
    pub pids: Option<u32>,
    /// The OCI runtime (`runsc`); none: the runtime's default.
    pub runtime_class: Option<String>,
    /// Paths bound in at the same place.
    pub binds: Vec<Bind>,
    /// The agent's own dir outside (its proxy socket, the daemon's socket linked in, its
    /// secret), bound read-only at [`AGENT_DIR_INSIDE`].
    pub agent_dir: PathBuf,
    /// The daemon's socket, linked into the agent's own dir at each launch.
    pub daemon_socket: PathBuf,
    /// No network at all (`--network none`); false: the runtime's default network (the team
    /// file opened the network: `mode = "open"` or `sandbox = "off"`).
    pub no_network: bool,
    /// The user and group it runs as (the operator's own, so what it writes in the workspace
    /// is theirs and bubblewrap can make its namespace inside); none: the image's (root), for
    /// an operator who is root.
    pub user: Option<(u32, u32)>,
}

/// A short, stable id of one team of one machine's runtime dir (its daemon socket's path), so
/// two teams (or two test homes) never remove each other's containers.
pub fn instance_of(daemon_socket: &Path) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in daemon_socket.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// The container name of `agent` in the team `instance`.
pub fn container_name(instance: &str, agent: &str) -> String {
    format!("agent-team-{instance}-{agent}")
}

/// The `--ulimit` flags podman's runc can set here: the process's own soft limits, never more
/// (a runtime asked for more than its caller holds refuses to start the container); every
/// container we start takes them (`doctor`'s trial run too).
pub fn ulimits() -> Vec<String> {
    use nix::sys::resource::{Resource, getrlimit};
    let mut v = Vec::new();
    // RLIMIT_NPROC counts every process of the user on the host, not the container's: the
    // container's own cap is `pids`.
    for (name, res, most) in [
        ("nofile", Resource::RLIMIT_NOFILE, 1 << 20),
        ("nproc", Resource::RLIMIT_NPROC, 32_768),
    ] {
        if let Ok((soft, _)) = getrlimit(res) {
            let n = soft.min(most);
            v.push("--ulimit".to_string());
            v.push(format!("{name}={n}:{n}"));
        }
    }
    v
}

/// What every container of ours is, here or on an ssh host (the words after `run`): its name
/// and labels, no capability, no new privileges, a read-only root with a writable `/tmp`, no
/// network when `no_network`, and its caps (memory with no swap added, CPUs, processes, the OCI
/// runtime). The user, the ulimits, the binds and the environment are the caller's.
pub fn confined(run: &ContainerRun, agent: &str) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--name".into(),
        run.name.clone(),
        "--label".into(),
        format!("{LABEL_INSTANCE}={}", run.instance),
        "--label".into(),
        format!("{LABEL_AGENT}={agent}"),
        "--cap-drop".into(),
        "all".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        "--read-only".into(),
        "--tmpfs".into(),
        "/tmp:rw,exec,mode=1777".into(),
        "--interactive=false".into(),
    ];
    if run.no_network {
        v.extend(["--network".into(), "none".into()]);
    }
    if let Some(m) = &run.memory {
        v.extend(["--memory".into(), m.clone()]);
        v.extend(["--memory-swap".into(), m.clone()]);
    }
    if let Some(c) = &run.cpus {
        v.extend(["--cpus".into(), c.clone()]);
    }
    if let Some(p) = run.pids {
        v.extend(["--pids-limit".into(), p.to_string()]);
    }
    if let Some(r) = &run.runtime_class {
        v.extend(["--runtime".into(), r.clone()]);
    }
    v
}

/// The runtime's command line that runs `spec` (already holding the agent's environment) in
/// its container, and the environment the runtime process itself is given.
pub fn run_argv(run: &ContainerRun, spec: &LaunchSpec) -> Vec<String> {
    let mut v: Vec<String> = vec![run.program.clone(), "run".into()];
    v.extend(confined(run, &spec.name));
    if let Some((uid, gid)) = run.user {
        // A user without capabilities inside, who may still make the sandbox's own user and
        // PID namespace there: a new `/proc` can be mounted only where none of it is hidden.
        v.extend([
            "--user".into(),
            format!("{uid}:{gid}"),
            "--security-opt".into(),
            "unmask=/proc/*".into(),
        ]);
    }
    v.extend(ulimits());
    for b in &run.binds {
        let p = b.path.display();
        v.push("--volume".into());
        v.push(if b.read_only {
            format!("{p}:{p}:ro")
        } else {
            format!("{p}:{p}")
        });
    }
    v.push("--volume".into());
    v.push(format!("{}:{AGENT_DIR_INSIDE}:ro", run.agent_dir.display()));
    // Each variable by name only: its value comes from the runtime's own environment, so no
    // command line shows it. The secret is a file instead (see `Contained::spawn`).
    for (k, _) in &spec.env {
        if k != env::SECRET {
            v.extend(["--env".into(), k.clone()]);
        }
    }
    v.extend([
        "--env".into(),
        format!("{}={AGENT_DIR_INSIDE}/{SECRET_FILE}", env::SECRET_FILE),
        "--env".into(),
        format!("{}={AGENT_DIR_INSIDE}/{DAEMON_SOCKET}", env::SOCKET),
        "--workdir".into(),
        spec.cwd.display().to_string(),
        run.image.clone(),
    ]);
    v.extend(spec.argv.iter().cloned());
    v
}

/// A backend that runs agents with a [`LaunchSpec::container`] in their containers (and every
/// other agent as `inner` does).
pub struct Contained {
    inner: Arc<dyn PaneBackend>,
    /// The team's instance label, for `shutdown`.
    instance: String,
    /// The runtimes containers were started with (for `shutdown`).
    programs: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Contained {
    /// `inner` with containers for the team whose daemon socket is `daemon_socket`.
    pub fn new(inner: Arc<dyn PaneBackend>, daemon_socket: &Path) -> Self {
        Contained {
            inner,
            instance: instance_of(daemon_socket),
            programs: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// The spec the inner backend starts: the runtime running the agent, its secret moved to
    /// a file, the daemon's socket linked where the container sees it.
    fn wrap(&self, spec: &LaunchSpec) -> Result<LaunchSpec, PaneError> {
        // One on another host is the remote backend's to run there.
        let Some(run) = spec.container.as_ref().filter(|_| spec.host.is_none()) else {
            return Ok(spec.clone());
        };
        let io = |what: String| move |source| PaneError::Io { what, source };
        if let Ok(mut p) = self.programs.lock() {
            p.insert(run.program.clone());
        }
        // A container of the same name left by a crash or an earlier incarnation.
        remove(&run.program, &run.name);
        std::fs::create_dir_all(&run.agent_dir)
            .map_err(io(format!("cannot create {}", run.agent_dir.display())))?;
        for b in run.binds.iter().filter(|b| b.create && !b.path.exists()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&b.path)
                .map_err(io(format!("cannot create {}", b.path.display())))?;
        }
        // The container's user reads its own dir (its secret) and no one else does.
        if let Some((uid, gid)) = run.user {
            let _ = std::os::unix::fs::chown(&run.agent_dir, Some(uid), Some(gid));
        }
        let link = run.agent_dir.join(DAEMON_SOCKET);
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&run.daemon_socket, &link).map_err(io(format!(
            "cannot link the daemon's socket into {}",
            run.agent_dir.display()
        )))?;
        if let Some((_, secret)) = spec.env.iter().find(|(k, _)| k == env::SECRET) {
            let file = run.agent_dir.join(SECRET_FILE);
            crate::write_private(&file, secret)
                .map_err(io(format!("cannot write {}", file.display())))?;
        }
        let mut out = spec.clone();
        out.argv = run_argv(run, spec);
        out.env.retain(|(k, _)| k != env::SECRET);
        Ok(out)
    }

    /// Removes the container of `target` here, if it has one (one on another host is
    /// removed there by the remote backend's stop).
    fn remove_of(&self, target: &Launched) {
        if let Some(c) = target.container.as_ref().filter(|_| target.host.is_none()) {
            remove(&c.program, &c.name);
        }
    }
}

/// Points every container agent's link to the daemon's socket (`daemon.sock` in each agent
/// dir under `net_root`) at `socket` again: a daemon that starts anew binds a new socket, and a
/// container that ran across the restart reaches only what is in its bound dir. How many.
pub fn relink_daemon_socket(socket: &Path, net_root: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(net_root) else {
        return 0;
    };
    let mut n = 0;
    for d in dirs.flatten() {
        let link = d.path().join(DAEMON_SOCKET);
        if std::fs::symlink_metadata(&link).is_err() {
            continue;
        }
        let fresh = d.path().join(format!(".{DAEMON_SOCKET}.new"));
        let _ = std::fs::remove_file(&fresh);
        if std::fs::hard_link(socket, &fresh).is_ok() && std::fs::rename(&fresh, &link).is_ok() {
            n += 1;
        }
    }
    n
}

/// The container an agent runs in, as [`Launched`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerRef {
    /// `podman` or `docker`.
    pub program: String,
    /// Its name.
    pub name: String,
}

/// `program rm -f NAME`: the container is killed and gone (nothing if there is none).
pub fn remove(program: &str, name: &str) {
    let mut c = Command::new(program);
    c.args(["rm", "--force", "--time", "0", name]);
    if let Err(e) = run_bounded(c, None, RUNTIME_TIMEOUT, 0) {
        // Nothing to remove, or no runtime: nothing of ours is left either way.
        let _ = e;
    }
}

/// Removes every container labelled with `instance` (what `down` leaves: nothing); how many
/// there were.
pub fn remove_all(program: &str, instance: &str) -> usize {
    let names = list(program, instance);
    for n in &names {
        remove(program, n);
    }
    names.len()
}

/// The names of the containers (running or not) labelled with `instance`.
pub fn list(program: &str, instance: &str) -> Vec<String> {
    let out = Command::new(program)
        .args([
            "ps",
            "--all",
            "--filter",
            &format!("label={LABEL_INSTANCE}={instance}"),
            "--format",
            "{{.Names}}",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

impl PaneBackend for Contained {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn spawns_at_once(&self, spec: &LaunchSpec) -> bool {
        spec.container.is_none() && self.inner.spawns_at_once(spec)
    }

    fn spawn(&self, spec: &LaunchSpec) -> Result<Launched, PaneError> {
        let wrapped = self.wrap(spec)?;
        let mut l = self.inner.spawn(&wrapped)?;
        l.container = spec.container.as_ref().map(|c| ContainerRef {
            program: c.program.clone(),
            name: c.name.clone(),
        });
        Ok(l)
    }

    fn spawn_many(&self, specs: &[LaunchSpec]) -> Vec<Result<Launched, PaneError>> {
        let mut wrapped = Vec::with_capacity(specs.len());
        let mut failed: Vec<Option<PaneError>> = Vec::with_capacity(specs.len());
        for s in specs {
            match self.wrap(s) {
                Ok(w) => {
                    wrapped.push(w);
                    failed.push(None);
                }
                Err(e) => failed.push(Some(e)),
            }
        }
        let mut started = self.inner.spawn_many(&wrapped).into_iter();
        specs
            .iter()
            .zip(failed)
            .map(|(s, f)| match f {
                Some(e) => Err(e),
                None => {
                    let mut l = started
                        .next()
                        .unwrap_or_else(|| Err(PaneError::Tool("not launched".into())))?;
                    l.container = s.container.as_ref().map(|c| ContainerRef {
                        program: c.program.clone(),
                        name: c.name.clone(),
                    });
                    Ok(l)
                }
            })
            .collect()
    }

    fn respawn(&self, spec: &LaunchSpec, previous: &Launched) -> Result<Launched, PaneError> {
        self.remove_of(previous);
        let wrapped = self.wrap(spec)?;
        let mut l = self.inner.respawn(&wrapped, previous)?;
        l.container = spec.container.as_ref().map(|c| ContainerRef {
            program: c.program.clone(),
            name: c.name.clone(),
        });
        Ok(l)
    }

    fn stop(&self, target: &Launched, grace: Duration) -> Result<(), PaneError> {
        let stopped = self.inner.stop(target, grace);
        self.remove_of(target);
        stopped
    }

    fn liveness(&self, target: &Launched) -> Liveness {
        self.inner.liveness(target)
    }

    fn poll(&self, targets: &[Launched]) -> Vec<Liveness> {
        self.inner.poll(targets)
    }

    fn forget(&self, target: &Launched) {
        self.remove_of(target);
        self.inner.forget(target)
    }

    fn set_title(&self, target: &Launched, title: &str) {
        self.inner.set_title(target, title)
    }

    fn set_titles(&self, titles: &[(Launched, String)]) {
        self.inner.set_titles(titles)
    }

    fn bell(&self, target: &Launched, message: &str) {
        self.inner.bell(target, message)
    }

    fn paste(&self, target: &Launched, text: &str) -> Result<(), PaneError> {
        self.inner.paste(target, text)
    }

    fn collect_work(&self, host: &str, name: &str, message: &str) -> Result<bool, PaneError> {
        self.inner.collect_work(host, name, message)
    }

    fn shutdown(&self) {
        self.inner.shutdown();
        let programs: Vec<String> = self
            .programs
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        for p in programs {
            remove_all(&p, &self.instance);
        }
    }

    fn watch_exits(&self, notify: ExitNotify) {
        self.inner.watch_exits(notify)
    }

    fn agents_are_children(&self) -> bool {
        self.inner.agents_are_children()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            name: "w1".into(),
            role: "worker".into(),
            argv: vec!["/opt/at/agent-team-worker".into()],
            env: vec![
                (env::SECRET.into(), "s3cret".into()),
                (env::NAME.into(), "w1".into()),
            ],
            cwd: "/work/ws".into(),
            ..LaunchSpec::default()
        }
    }

    fn run() -> ContainerRun {
        ContainerRun {
            program: "podman".into(),
            image: "localhost/team:1".into(),
            name: container_name("abc", "w1"),
            instance: "abc".into(),
            memory: Some("64M".into()),
            cpus: Some("1.5".into()),
            pids: Some(64),
            runtime_class: None,
            binds: vec![Bind {
                path: "/work/ws".into(),
                ..Bind::default()
            }],
            agent_dir: "/run/x/t.net/w1".into(),
            daemon_socket: "/run/x/t.sock".into(),
            no_network: true,
            user: Some((1000, 1000)),
        }
    }

    #[test]
    fn the_command_line_caps_isolates_and_never_shows_the_secret() {
        let argv = run_argv(&run(), &spec());
        let line = argv.join(" ");
        for want in [
            "--network none",
            "--cap-drop all",
            "--read-only",
            "--memory 64M",
            "--user 1000:1000 --security-opt unmask=/proc/*",
            "--memory-swap 64M",
            "--pids-limit 64",
            "--cpus 1.5",
            "--volume /work/ws:/work/ws ",
            "--env AGENT_TEAM_NAME ",
            "--workdir /work/ws localhost/team:1 /opt/at/agent-team-worker",
        ] {
            assert!(line.contains(want), "{want:?} not in {line}");
        }
        assert!(!line.contains("s3cret"), "{line}");
        assert!(!argv.iter().any(|a| a == env::SECRET), "{line}");
        assert_eq!(argv.last().unwrap(), "/opt/at/agent-team-worker");
    }

    #[test]
    fn instances_differ_by_socket_and_stay_the_same_for_one() {
        let a = instance_of(Path::new("/run/a/t.sock"));
        assert_eq!(a, instance_of(Path::new("/run/a/t.sock")));
        assert_ne!(a, instance_of(Path::new("/run/b/t.sock")));
        assert_eq!(a.len(), 12);
    }
}
