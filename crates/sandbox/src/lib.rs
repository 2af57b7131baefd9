//! The one boundary around everything an agent can influence: task commands, our agents' `bash`
//! tool, agent CLI teammates with their whole process tree, `[hooks]` and `[notify]` commands
//! (docs/SECURITY.md). Whatever a model or a teammate can write, choose or run starts through
//! [`command`], wherever it executes.
//!
//! The rule ([`Boundary::for_work`]) is stated once: the team's control plane (the runtime dir
//! with its sockets, locks and credentials, the state dirs, the tmux servers' sockets) is not
//! there at all; reads are allowed everywhere else; writes only in the work dir (a worktree
//! teammate: its own worktree and its git metadata), temp and the package-manager caches; and
//! what runs code later (`.git/hooks`, `.git/config`, `.agent-team/`, `.claude/`, the team file,
//! the files a hook names, shell start-up files) is read-only even inside a writable dir.
//!
//! Two mechanisms carry it out:
//! - **a mount and PID namespace** through bubblewrap (`bwrap`) where it is installed and works:
//!   it can say "everything but these dirs", `/tmp` stays fully writable, and the sandbox sees
//!   no process outside it (so no `/proc/PID/environ` of the daemon or a worker, even as root,
//!   and no signal to them); when its first process ends, everything it started ends too;
//! - **Landlock** as the fallback (Linux 5.13+), which can only allow: the hidden dirs are left
//!   out of what it grants, the read-only paths inside writable dirs are not enforced, and before
//!   ABI 9 it does not restrict `connect()` (docs/SECURITY.md says what that leaves open).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[cfg(target_os = "linux")]
mod landlock_rules;
pub mod network;
pub use network::NetworkWiring;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod seccomp;
pub mod view;

/// The package-manager caches under the home dir that sandboxed commands may write (created
/// when missing for the first two, bound when they exist for the others), so `npm install`,
/// `cargo build`, `pip download`, `go build`, Maven, Gradle, pnpm and yarn work.
pub const CACHE_DIRS: &[&str] = &[
    ".npm",
    ".cache",
    ".cargo",
    "go/pkg/mod",
    ".m2/repository",
    ".gradle/caches",
    ".gradle/wrapper",
    ".local/share/pnpm",
    ".pnpm-store",
    ".yarn/berry",
    ".bun/install/cache",
];

/// Files and dirs under the home dir that run code later or hold the user's keys: read-only in
/// the sandbox even where a writable dir (a cache, a workspace that is the home dir) contains
/// them.
pub const HOME_PROTECTED: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".config/fish",
    ".ssh",
    ".gitconfig",
    ".config/git",
    ".local/bin",
    ".npmrc",
    ".cargo/bin",
    ".cargo/config",
    ".cargo/config.toml",
    ".cargo/env",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".config/agent-team",
];

/// Paths inside a workspace that run code later or configure the team: read-only in the
/// sandbox, `.git` as one unit (a read-only file inside a writable `.git` was moved away with
/// its dir once). A worktree teammate writes git's objects and its own branch only.
pub const WORKSPACE_PROTECTED: &[&str] = &[
    "agent-team.toml",
    ".git",
    ".agent-team",
    ".claude",
    ".nyzhi",
    ".codex",
    ".qwen",
    ".gemini",
    ".vscode",
    ".idea",
    ".cargo",
    ".npmrc",
    ".mcp.json",
    ".envrc",
];

/// The protected workspace paths that are kept from being made where they are missing (an
/// empty read-only dir stands in their place while a namespace sandbox runs: what an agent
/// made there would run later as the operator). `.git` is left out: an agent may start a
/// repository in a workspace that has none.
fn blocked_when_missing(name: &str) -> bool {
    name != ".git"
}

/// What one sandboxed process may see and write. Every path is absolute and canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boundary {
    /// Not there at all (an empty, read-only dir in its place): the runtime and state dirs, the
    /// tmux sockets' dirs, `[sandbox] read_deny`.
    pub hide: Vec<PathBuf>,
    /// Writable: the work dir, temp, the caches, `[sandbox] write`.
    pub write: Vec<PathBuf>,
    /// Read-only even inside a writable dir: what runs code later.
    pub read_only: Vec<PathBuf>,
    /// Put back, writable, inside a hidden dir: a CLI teammate's own private home.
    pub expose: Vec<PathBuf>,
    /// Every protected path, mounted or not (outside writable dirs the read-only root covers
    /// them), to explain a refused write.
    pub protected: Vec<PathBuf>,
    /// How the network is reached: through the team's egress proxy in a network namespace of
    /// its own ([`Boundary::proxy`]: once it is served), or (none) the host's network unless
    /// `offline`.
    pub network: Option<NetworkWiring>,
    /// With no proxy served: a network namespace of its own all the same (only its own
    /// loopback), where no proxy serves this agent (not yet, or a teammate on another host)
    /// and the network is not open by the team file: shut, not opened.
    pub offline: bool,
    /// Read-only in a namespace, beside the system's base ([`view::base`]): the toolchains
    /// under the home dir, the dirs on `PATH`, the programs the caller runs, `[sandbox] read`.
    pub read: Vec<PathBuf>,
    /// The home dir in a namespace: the team's own sandbox home (or an empty one) at the
    /// operator's home path; nothing of the operator's is in it but the toolchains.
    pub home: Option<FreshHome>,
    /// Private, empty and writable in a namespace: the temp dirs.
    pub temp: Vec<PathBuf>,
    /// Protected paths that do not exist: kept from being made in a namespace.
    pub block: Vec<PathBuf>,
    /// Files of the control plane (a socket) where a bind would show them: `/dev/null` over
    /// each in a namespace.
    pub hide_files: Vec<PathBuf>,
    /// Writable copies of the team's own bound over a read-only toolchain's dir that its tools
    /// write as they work (pyenv's shims, remade after each `pip install`): `(copy, at)`.
    pub shims: Vec<(PathBuf, PathBuf)>,
    /// Writable only where no namespace gives a private copy (Landlock): the temp dirs and the
    /// operator's package caches.
    pub fallback_write: Vec<PathBuf>,
}

/// The home dir a namespace sandbox gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshHome {
    /// Where it is (the operator's `$HOME`, so tools find their toolchains where they are).
    pub at: PathBuf,
    /// The dir bound there, writable (the team's sandbox home); none: an empty tmpfs.
    pub from: Option<PathBuf>,
}

/// What [`Boundary::for_work`] builds the rule from: where the team keeps its control plane
/// and where an agent works.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// The team's workspace (the team file's dir).
    pub workspace: PathBuf,
    /// A worktree teammate's own worktree (inside the workspace's `.agent-team/worktrees`):
    /// then only it and its git metadata are writable, not the workspace.
    pub worktree: Option<PathBuf>,
    /// The dirs of the control plane: the runtime dir, the state root and the team's state dir.
    pub control: Vec<PathBuf>,
    /// The team file and every file a `[hooks]`/`[notify]` command names.
    pub protected_files: Vec<PathBuf>,
    /// `[sandbox] write`: more writable dirs.
    pub extra_write: Vec<PathBuf>,
    /// `[sandbox] read_deny`: more hidden dirs.
    pub read_deny: Vec<PathBuf>,
    /// A CLI teammate's private home, put back inside the hidden state dir.
    pub expose: Vec<PathBuf>,
    /// The user's home dir (the caches and the protected start-up files are under it).
    pub home: Option<PathBuf>,
    /// The team's egress proxy for this agent (none: the host's network, unless `offline`).
    pub network: Option<NetworkWiring>,
    /// No proxy and a network not open: a network namespace with only its own loopback.
    pub offline: bool,
    /// More read-only paths in a namespace: `[sandbox] read`, the programs the caller runs
    /// (an agent CLI's install dir).
    pub read: Vec<PathBuf>,
    /// The team's sandbox home, bound writable at `$HOME` in a namespace (made when missing;
    /// none: an empty one that ends with the command).
    pub sandbox_home: Option<PathBuf>,
}

impl Boundary {
    /// The boundary of agent-influenced code doing `work` (the one rule; see the module docs).
    pub fn for_work(work: &Work) -> Boundary {
        let mut b = Boundary::default();
        b.hide.extend(work.control.iter().cloned());
        b.hide.extend(tmux_dirs());
        b.hide.extend(work.read_deny.iter().cloned());
        let mut roots = vec![work.workspace.clone()];
        match &work.worktree {
            Some(tree) => {
                b.add_worktree(&work.workspace, tree);
                roots.push(tree.clone());
            }
            None => b.write.push(work.workspace.clone()),
        }
        for root in &roots {
            for p in WORKSPACE_PROTECTED {
                let path = root.join(p);
                if !path.exists() && blocked_when_missing(p) {
                    b.block.push(path.clone());
                }
                b.read_only.push(path);
            }
        }
        // A protected file of the workspace is protected in a worktree teammate's tree too.
        let mut files = work.protected_files.clone();
        if let Some(tree) = &work.worktree {
            files.extend(
                work.protected_files
                    .iter()
                    .filter_map(|f| f.strip_prefix(&work.workspace).ok())
                    .filter(|rel| !rel.starts_with(".agent-team"))
                    .map(|rel| tree.join(rel)),
            );
        }
        for f in &files {
            if let Some(root) = roots.iter().find(|r| f.starts_with(r))
                && !f.exists()
            {
                // The outermost missing dir on the way: nothing can be made under it.
                let top = f
                    .ancestors()
                    .take_while(|a| *a != root.as_path())
                    .filter(|a| !a.exists())
                    .last()
                    .unwrap_or(f);
                b.block.push(top.to_path_buf());
            }
        }
        b.read_only.extend(files);
        b.temp.extend(temp_dirs());
        b.fallback_write.extend(temp_dirs());
        if let Some(home) = &work.home {
            b.add_home(home, work.sandbox_home.as_deref());
        }
        b.read
            .extend(view::path_dirs(std::env::var_os("PATH").as_deref()));
        // This program's own dir: the bridge an agent CLI runs as its MCP server is there.
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            b.read.push(view::program_root(&dir));
        }
        b.read.extend(work.read.iter().cloned());
        b.write.extend(work.extra_write.iter().cloned());
        b.expose.extend(work.expose.iter().cloned());
        b.network = work.network.clone();
        b.offline = work.offline;
        b.normalise()
    }

    /// A worktree teammate's `tree`: writable, with git's objects and its own index; the team's
    /// `workspace` read-only, and the worktree's git metadata too.
    fn add_worktree(&mut self, workspace: &Path, tree: &Path) {
        // Not the team's workspace (read-only even where a writable dir holds it).
        self.read_only.push(workspace.to_path_buf());
        self.read.push(workspace.to_path_buf());
        self.write.push(tree.to_path_buf());
        self.read_only.push(tree.join(".git"));
        if let Some(common) = git_common_dir(tree) {
            // Git's objects (`git add`, `stash`) and the worktree's own index; no ref
            // (the operator's checked-out branch once moved under a worktree teammate)
            // and not which branch the worktree is on: its commits are the daemon's,
            // made on its own branch when a task of it completes.
            self.write.push(common.join("objects"));
            if let Some(name) = tree.file_name() {
                let meta = common.join("worktrees").join(name);
                self.write.push(meta.clone());
                // Where git finds the repository from this worktree, and its branch.
                for f in ["commondir", "gitdir", "HEAD"] {
                    self.read_only.push(meta.join(f));
                }
            }
        }
    }

    /// The agent's `home`: its package caches writable outside a namespace, its credentials
    /// protected, its toolchains readable, shims copied into the sandbox home, a fresh `$HOME`.
    fn add_home(&mut self, home: &Path, sandbox_home: Option<&Path>) {
        for (i, c) in CACHE_DIRS.iter().enumerate() {
            let dir = home.join(c);
            // The two every package manager family shares are made when missing.
            if i < 2 && !dir.exists() {
                let _ = std::fs::create_dir_all(&dir);
            }
            self.fallback_write.push(dir);
        }
        for p in HOME_PROTECTED {
            self.protected.push(home.join(p));
        }
        for t in view::HOME_TOOLCHAINS {
            self.read.push(home.join(t));
        }
        if let Some(from) = sandbox_home {
            let _ = std::fs::create_dir_all(from);
            for dir in SHIM_DIRS {
                let at = home.join(dir);
                let copy = from.join(".agent-team-shims").join(dir.replace('/', "-"));
                if at.is_dir() && copy_dir_once(&at, &copy) {
                    self.shims.push((copy, at));
                }
            }
        }
        self.home = Some(FreshHome {
            at: home.to_path_buf(),
            from: sandbox_home.map(Path::to_path_buf),
        });
    }

    /// Every path canonical and existing, each once; read-only paths only where something
    /// writable contains them (elsewhere the read-only root already covers them); hidden dirs
    /// only where something bound would show them.
    fn normalise(mut self) -> Boundary {
        let canon = |v: Vec<PathBuf>| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = v
                .into_iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        self.hide = canon(self.hide);
        // A file of the control plane where something bound would show it (a tmux socket the
        // environment put in the workspace): `/dev/null` in its place.
        self.hide_files = self.hide.iter().filter(|p| !p.is_dir()).cloned().collect();
        self.hide.retain(|p| p.is_dir());
        self.write = canon(self.write);
        self.expose = canon(self.expose);
        self.read = canon(self.read);
        self.fallback_write = canon(self.fallback_write);
        // Outer first: `$TMPDIR` inside `/tmp` is a tmpfs of its own inside the private `/tmp`.
        self.temp = canon(self.temp);
        self.temp.sort_by_key(|p| p.components().count());
        self.block.sort();
        self.block.dedup();
        let mut protected = std::mem::take(&mut self.protected);
        protected.extend(self.read_only.iter().cloned());
        protected.extend(canon(self.read_only.clone()));
        protected.sort();
        protected.dedup();
        self.protected = protected;
        self.read_only = canon(self.read_only);
        let writable = |p: &Path| {
            self.write
                .iter()
                .chain(self.expose.iter())
                .any(|w| p.starts_with(w))
                || self.home.as_ref().is_some_and(|h| p.starts_with(&h.at))
        };
        let ro: Vec<PathBuf> = self
            .read_only
            .iter()
            .filter(|p| writable(p))
            .cloned()
            .collect();
        self.read_only = ro;
        self
    }

    /// The mount operations in the order bubblewrap must apply them: outer paths before the
    /// paths inside them, so a hidden dir inside the workspace stays hidden and a read-only
    /// file inside it stays read-only.
    fn mounts(&self) -> Vec<(Mount, &Path)> {
        let mut ops: Vec<(Mount, &Path)> = Vec::new();
        ops.extend(self.read.iter().map(|p| (Mount::Read, p.as_path())));
        ops.extend(self.write.iter().map(|p| (Mount::Write, p.as_path())));
        // Hidden where something bound would show it; elsewhere it is not there at all.
        ops.extend(
            self.hide
                .iter()
                .filter(|p| self.shown(p))
                .map(|p| (Mount::Hide, p.as_path())),
        );
        ops.extend(
            self.read_only
                .iter()
                .map(|p| (Mount::ReadOnly, p.as_path())),
        );
        // (A stand-in that could not be made is not there to bind.)
        ops.extend(
            self.block
                .iter()
                .filter(|p| p.exists())
                .map(|p| (Mount::ReadOnly, p.as_path())),
        );
        ops.extend(self.expose.iter().map(|p| (Mount::Write, p.as_path())));
        // Each dir between a writable root and a protected path in it is a mount point of its
        // own, so it cannot be renamed away with the protection inside (`mv ci ci2` and a new
        // `ci/deploy.sh`); what it holds stays writable.
        let pins: Vec<(Mount, &Path)> = ops
            .iter()
            .filter(|(m, _)| *m == Mount::ReadOnly)
            .flat_map(|(_, p)| {
                let root = self
                    .write
                    .iter()
                    .chain(&self.expose)
                    .filter(|w| p.starts_with(w) && *w != p)
                    .max_by_key(|w| w.components().count());
                p.ancestors()
                    .skip(1)
                    .take_while(move |a| {
                        root.is_some_and(|r| *a != r.as_path() && a.starts_with(r))
                    })
                    .filter(|a| a.is_dir())
                    .map(|a| (Mount::Pin, a))
            })
            .collect();
        ops.extend(pins);
        // A mount inside another of its kind with nothing between them adds nothing.
        let covered = |op: &(Mount, &Path)| {
            matches!(op.0, Mount::Write | Mount::Read)
                && ops.iter().any(|(m, q)| {
                    *m == op.0
                        && *q != op.1
                        && op.1.starts_with(q)
                        && !ops
                            .iter()
                            .any(|(k, h)| *k != op.0 && h.starts_with(q) && op.1.starts_with(h))
                })
        };
        let keep: Vec<bool> = ops.iter().map(|op| !covered(op)).collect();
        let mut ops: Vec<(Mount, &Path)> = ops
            .into_iter()
            .zip(keep)
            .filter_map(|(op, k)| k.then_some(op))
            .collect();
        ops.sort_by_key(|(m, p)| (p.components().count(), *m));
        ops.dedup();
        ops
    }

    /// The egress proxy a process started now goes through: the wiring when its dir is there
    /// (the daemon makes it when it serves the proxy, which the agent asks for before each
    /// process). None: no way out but the host's network where nothing confines it, else
    /// none at all ([`Boundary::offline`]).
    pub fn proxy(&self) -> Option<&NetworkWiring> {
        self.network.as_ref().filter(|n| n.dir.is_dir())
    }

    /// bubblewrap's arguments (before `--` and the program) for a process in `cwd`: an empty
    /// root, the system's public part read-only ([`view::base`]), a minimal `/dev`, a private
    /// `/proc`, `/tmp` and home, then the work; in a user namespace with no capability.
    pub fn bwrap_args(&self, cwd: &Path, interactive: bool) -> Vec<OsString> {
        self.bwrap_args_through(cwd, interactive, self.proxy())
    }

    /// [`Boundary::bwrap_args`] with the proxy `net` (looked at once for the whole command).
    fn bwrap_args_through(
        &self,
        cwd: &Path,
        interactive: bool,
        net: Option<&NetworkWiring>,
    ) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&OsStr]| a.extend(parts.iter().map(|s| s.to_os_string()));
        push(&[
            "--die-with-parent".as_ref(),
            // A user namespace, also for root, with no capability inside: root in here once
            // unmounted the tmpfs over the runtime dir and read the operator credential.
            "--unshare-user".as_ref(),
            "--cap-drop".as_ref(),
            "ALL".as_ref(),
            "--unshare-pid".as_ref(),
            "--unshare-ipc".as_ref(),
            "--unshare-uts".as_ref(),
            "--unshare-cgroup-try".as_ref(),
        ]);
        for e in view::base() {
            match e {
                view::Entry::Bind(p) => push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]),
                view::Entry::Symlink { target, link } => {
                    push(&["--symlink".as_ref(), target.as_os_str(), link.as_os_str()])
                }
                view::Entry::BindAt { from, at } => {
                    push(&["--ro-bind".as_ref(), from.as_os_str(), at.as_os_str()])
                }
            }
        }
        push(&[
            // A minimal /dev (null, zero, random, urandom, tty, shm and a pts instance of its
            // own): no other terminal to write a fake screen into, no disk. A program keeps the
            // terminal it was started on (inherited, not opened by path).
            "--dev".as_ref(),
            "/dev".as_ref(),
            "--proc".as_ref(),
            "/proc".as_ref(),
        ]);
        for t in &self.temp {
            push(&["--tmpfs".as_ref(), t.as_os_str()]);
        }
        if let Some(h) = &self.home {
            match &h.from {
                Some(from) => push(&["--bind".as_ref(), from.as_os_str(), h.at.as_os_str()]),
                None => push(&["--tmpfs".as_ref(), h.at.as_os_str()]),
            }
        }
        if !interactive {
            // No controlling terminal: nothing can be typed into the pane it runs in.
            push(&["--new-session".as_ref()]);
        }
        for (m, p) in self.mounts() {
            let p = p.as_os_str();
            match m {
                Mount::Write | Mount::Pin => push(&["--bind".as_ref(), p, p]),
                Mount::Hide => push(&["--perms".as_ref(), "0500".as_ref(), "--tmpfs".as_ref(), p]),
                Mount::ReadOnly | Mount::Read => push(&["--ro-bind".as_ref(), p, p]),
            }
        }
        for (copy, at) in &self.shims {
            push(&["--bind".as_ref(), copy.as_os_str(), at.as_os_str()]);
        }
        for f in self.hide_files.iter().filter(|f| self.shown(f)) {
            push(&["--ro-bind".as_ref(), "/dev/null".as_ref(), f.as_os_str()]);
        }
        // Read-only once whatever is put back inside them is mounted.
        for p in self.hide.iter().filter(|p| self.shown(p)) {
            push(&["--remount-ro".as_ref(), p.as_os_str()]);
        }
        push(&["--chdir".as_ref(), cwd.as_os_str()]);
        if let Some(net) = net {
            a.extend(network::bwrap_args(net));
        } else if self.offline || self.network.is_some() {
            // A proxy not served is no way out: shut, not the host's.
            a.push("--unshare-net".into());
        }
        a
    }

    /// Whether a namespace would show `p` without a hide: it is inside something bound from
    /// the host (the work, a read-only path, the system's base).
    fn shown(&self, p: &Path) -> bool {
        self.write
            .iter()
            .chain(&self.read)
            .chain(&self.expose)
            .chain(&self.read_only)
            .any(|b| p.starts_with(b))
            || view::base().iter().any(|e| match e {
                view::Entry::Bind(b) => p.starts_with(b),
                view::Entry::BindAt { at, .. } => p.starts_with(at),
                view::Entry::Symlink { .. } => false,
            })
    }

    /// Makes the stand-ins for the missing protected paths (empty dirs, bound read-only), so
    /// the namespace can keep them from being made; one that cannot be made stays missing.
    fn make_blocks(&self) {
        for p in &self.block {
            if std::fs::symlink_metadata(p).is_err() {
                let _ = std::fs::create_dir(p);
            }
        }
    }

    /// The writable dirs (Landlock's grants, and what a refused write is explained against).
    pub fn writable(&self) -> impl Iterator<Item = &Path> {
        self.write
            .iter()
            .chain(self.expose.iter())
            .chain(self.fallback_write.iter())
            .map(PathBuf::as_path)
    }
}

/// Removes the empty stand-ins a namespace left for missing protected paths in `workspace`
/// and its worktrees (the team is over: nothing keeps them from being made any more, and
/// nothing of ours should stay in the operator's tree). A dir with anything in it stays.
pub fn remove_blocks(workspace: &Path) {
    let mut roots = vec![workspace.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(workspace.join(".agent-team/worktrees")) {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    for root in roots {
        for p in WORKSPACE_PROTECTED {
            if blocked_when_missing(p) && *p != ".agent-team" {
                // Only an empty dir: `remove_dir` refuses anything else.
                let _ = std::fs::remove_dir(root.join(p));
            }
        }
    }
    let _ = std::fs::remove_dir(workspace.join(".agent-team/worktrees"));
    let _ = std::fs::remove_dir(workspace.join(".agent-team"));
}

/// Dirs of toolchains under the home dir that their own tools rewrite as they work (`pip
/// install` through a pyenv shim runs `pyenv rehash`, which fails, and with it the install, where
/// the shims are read-only): the sandbox gets a copy of the team's own there.
const SHIM_DIRS: &[&str] = &[".pyenv/shims", ".rbenv/shims"];

/// Makes `copy` a copy of `dir` unless it exists (made aside and renamed into place); whether
/// it is there.
fn copy_dir_once(dir: &Path, copy: &Path) -> bool {
    if copy.is_dir() {
        return true;
    }
    let Some(parent) = copy.parent() else {
        return false;
    };
    let tmp = parent.join(format!(
        ".{}.{}",
        copy.file_name().and_then(|n| n.to_str()).unwrap_or("copy"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let done = view::copy_tree(dir, &tmp) && (std::fs::rename(&tmp, copy).is_ok() || copy.is_dir());
    let _ = std::fs::remove_dir_all(&tmp);
    done
}

/// The kinds of mount, in the order they apply at one depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mount {
    Read,
    Write,
    /// A dir bound onto itself, writable as before: a mount point cannot be renamed.
    Pin,
    Hide,
    ReadOnly,
}

/// The temp dirs (`$TMPDIR`, `/tmp`, `/var/tmp`) and the shared memory dir.
fn temp_dirs() -> Vec<PathBuf> {
    vec![
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
    ]
}

/// Where tmux servers of this uid keep their sockets (`$TMUX_TMPDIR` or `/tmp`, then
/// `tmux-UID`): the user's own server and any team server started without our runtime dir.
fn tmux_dirs() -> Vec<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let mut v = vec![PathBuf::from(format!("/tmp/tmux-{uid}"))];
    if let Some(d) = std::env::var_os("TMUX_TMPDIR").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(d).join(format!("tmux-{uid}")));
    }
    v
}

/// The common git dir of the worktree at `tree` (from its `.git` file's `gitdir:` line, two
/// levels up from `.git/worktrees/NAME`).
fn git_common_dir(tree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(tree.join(".git")).ok()?;
    let gitdir = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
    let gitdir = tree.join(gitdir);
    let common = gitdir.parent()?.parent()?;
    Some(common.to_path_buf())
}

/// Which layers this machine offers, asked once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// bubblewrap that starts a namespace here, or why not.
    pub namespace: Result<PathBuf, String>,
    /// The kernel's Landlock ABI, or why there is none.
    pub landlock: Result<i32, String>,
}

impl Support {
    /// The mechanism commands run under: the namespace where it works, else Landlock, else
    /// none (with why).
    pub fn mechanism(&self) -> Mechanism {
        match (&self.namespace, &self.landlock) {
            (Ok(p), _) => Mechanism::Namespace(p.clone()),
            (Err(_), Ok(abi)) => Mechanism::Landlock(*abi),
            (Err(n), Err(l)) => Mechanism::None(format!("{n}; {l}")),
        }
    }
}

/// How a sandboxed process is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// A mount and PID namespace through bubblewrap at this path.
    Namespace(PathBuf),
    /// A Landlock ruleset of this ABI (the fallback).
    Landlock(i32),
    /// Nothing: the environment is scrubbed only. Why, in words.
    None(String),
}

/// The variable that picks the bubblewrap binary (`none` turns the namespace layer off, for
/// tests of the fallback); read by whoever starts a sandboxed process.
pub const ENV_BWRAP: &str = "AGENT_TEAM_BWRAP";

/// What this machine offers (asked once: a trial run of bubblewrap, Landlock's version).
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| Support {
        namespace: probe_bwrap(),
        landlock: landlock_abi(),
    })
}

/// bubblewrap, found and tried: `bwrap` on `PATH` (or [`ENV_BWRAP`]) running `true` in a
/// namespace like the ones we make.
fn probe_bwrap() -> Result<PathBuf, String> {
    let exe = match std::env::var_os(ENV_BWRAP).filter(|v| !v.is_empty()) {
        Some(v) if v == "none" => return Err(format!("{ENV_BWRAP}=none")),
        Some(v) => PathBuf::from(v),
        None => find_on_path("bwrap").ok_or_else(|| {
            "bubblewrap is not installed (apt-get install bubblewrap)".to_string()
        })?,
    };
    let mut probe = std::process::Command::new(&exe);
    probe
        .args([
            "--die-with-parent",
            "--unshare-user",
            "--cap-drop",
            "ALL",
            "--unshare-pid",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--",
            "true",
        ])
        .stdin(std::process::Stdio::null());
    // With the filter every sandbox gets: a bubblewrap that cannot start under it (a setuid
    // one, with no new privileges) is no namespace here.
    no_terminal_input(&mut probe);
    let out = probe
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if out.status.success() {
        Ok(exe)
    } else {
        Err(format!(
            "{} cannot make a namespace here: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `name` in a dir of `PATH`, if it is there.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(target_os = "linux")]
fn landlock_abi() -> Result<i32, String> {
    landlock_rules::abi()
}

#[cfg(not(target_os = "linux"))]
fn landlock_abi() -> Result<i32, String> {
    Err("Landlock is Linux only".to_string())
}

/// How [`command`] starts a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep the controlling terminal (an agent CLI working in its pane); otherwise the process
    /// gets a session of its own.
    pub interactive: bool,
    /// May make Unix sockets where no namespace hides the team's (an agent CLI: its MCP server
    /// and hooks talk over sockets in its private home). Ignored in a namespace.
    pub unix_sockets: bool,
    /// A variable set (to `1`) for bubblewrap alone and unset for the program inside: the
    /// sandbox's first process shows it in `/proc/PID/environ`, where whoever stops the sandbox
    /// reads it (`agent_team_pane::procs::STOP_INSIDE_FIRST`), and the program never sees it.
    /// Ignored without a namespace.
    pub outer_marker: Option<&'static str>,
}

/// `program args` in `cwd`, inside `boundary` by the best mechanism this machine has
/// ([`support`]). The caller sets the environment (scrubbed), stdio and groups on the result.
/// With Landlock the ruleset is built now and applied in the child before exec; if it cannot
/// be built the process does not start (fail closed).
pub fn command(
    boundary: &Boundary,
    cwd: &Path,
    program: impl AsRef<OsStr>,
    args: &[OsString],
    opts: Options,
) -> std::process::Command {
    command_with(&support().mechanism(), boundary, cwd, program, args, opts)
}

/// [`command`] by a given mechanism (the bench compares them; everything else uses the best).
pub fn command_with(
    mechanism: &Mechanism,
    boundary: &Boundary,
    cwd: &Path,
    program: impl AsRef<OsStr>,
    args: &[OsString],
    opts: Options,
) -> std::process::Command {
    match mechanism {
        Mechanism::Namespace(bwrap) => {
            boundary.make_blocks();
            let net = boundary.proxy();
            let mut c = std::process::Command::new(bwrap);
            c.args(boundary.bwrap_args_through(cwd, opts.interactive, net));
            if let Some(var) = opts.outer_marker {
                c.env(var, "1").args(["--unsetenv", var]);
            }
            c.arg("--");
            match net {
                // The proxy's forwarder starts first, inside, and runs the program.
                Some(net) => c.args(network::wrap(net, program.as_ref(), args)),
                None => c.arg(program).args(args),
            };
            c.current_dir(cwd);
            no_terminal_input(&mut c);
            c
        }
        #[cfg(target_os = "linux")]
        Mechanism::Landlock(_) => {
            let mut c = std::process::Command::new(program);
            c.args(args).current_dir(cwd);
            landlock_rules::confine(&mut c, cwd, boundary);
            if !opts.unix_sockets {
                fallback_seccomp(&mut c);
            }
            no_terminal_input(&mut c);
            c
        }
        _ => {
            let mut c = std::process::Command::new(program);
            c.args(args).current_dir(cwd);
            if !opts.unix_sockets {
                fallback_seccomp(&mut c);
            }
            no_terminal_input(&mut c);
            c
        }
    }
}

/// No process inside types into a terminal (`TIOCSTI`, `TIOCLINUX`), its own included: see
/// the `seccomp` module.
fn no_terminal_input(c: &mut std::process::Command) {
    with_seccomp(c, Filter::TerminalInput);
}

/// Without a namespace, no Unix socket can be made (Landlock before ABI 9 does not restrict
/// `connect()`): see the `seccomp` module.
fn fallback_seccomp(c: &mut std::process::Command) {
    with_seccomp(c, Filter::UnixSockets);
}

/// The seccomp filters a sandboxed command may get.
#[derive(Debug, Clone, Copy)]
enum Filter {
    /// `seccomp::deny_terminal_input`.
    TerminalInput,
    /// `seccomp::deny_unix_sockets`.
    UnixSockets,
}

/// Installs `filter` in `c`'s child; a no-op where the `seccomp` module is not built.
fn with_seccomp(c: &mut std::process::Command, filter: Filter) {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    match filter {
        Filter::TerminalInput => seccomp::deny_terminal_input(c),
        Filter::UnixSockets => seccomp::deny_unix_sockets(c),
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    let _ = (c, filter);
}

/// The note added to a failed command's result when its output shows a write the sandbox
/// refused: the path when it can be read from the output (relative ones taken from `cwd`), and
/// the setting that would allow it.
pub fn explain_refusal(output: &str, boundary: &Boundary, cwd: &Path) -> Option<String> {
    let refused = ["Read-only file system", "Permission denied"];
    let (line, phrase) = output
        .lines()
        .find_map(|l| refused.iter().find(|r| l.contains(**r)).map(|r| (l, *r)))?;
    let before = line.split(phrase).next().unwrap_or_default();
    let unquote = |w: &str| {
        w.trim_end_matches(':')
            .trim_matches(|c| c == '\'' || c == '"' || c == '`' || c == '‘' || c == '’')
            .to_string()
    };
    // `sh: 1: cannot create X: …`, `touch: cannot touch 'X': …`, `X: …`: the word before the
    // phrase; else any absolute path on the line.
    let named = before
        .trim_end()
        .trim_end_matches(':')
        .split_whitespace()
        .last()
        .map(unquote)
        .filter(|w| {
            !w.is_empty() && !["sh", "bash"].contains(&w.as_str()) && w.parse::<u32>().is_err()
        })
        .or_else(|| {
            line.split_whitespace()
                .map(unquote)
                .find(|w| w.starts_with('/'))
        });
    let path = named.map(|w| {
        if Path::new(&w).is_absolute() {
            PathBuf::from(w)
        } else {
            cwd.join(w)
        }
    });
    let under = |p: &Path, list: &[PathBuf]| list.iter().any(|r| p.starts_with(r));
    let writable: Vec<PathBuf> = boundary.writable().map(Path::to_path_buf).collect();
    let in_git = |p: &Path| p.components().any(|c| c.as_os_str() == ".git");
    Some(match path {
        Some(p) if in_git(&p) && under(&p, &boundary.protected) => format!(
            "agent-team sandbox: {} is in the workspace's git repository, read-only for agents' \
             commands (`git status`, `diff`, `log` and, in a worktree, `add` work); a worktree \
             teammate's work is committed by the daemon on its own branch as each task completes",
            p.display()
        ),
        Some(p) if under(&p, &boundary.hide) => format!(
            "agent-team sandbox: {} is the team's control plane, hidden from agents' commands",
            p.display()
        ),
        Some(p) if under(&p, &boundary.protected) => format!(
            "agent-team sandbox: {} is read-only for agents' commands (it runs code later or \
             configures the team); a person must change it",
            p.display()
        ),
        Some(p) if !under(&p, &writable) => format!(
            "agent-team sandbox: writing {p} was refused; commands may write only in the \
             workspace, temp and the package caches (`[sandbox] write = [\"{p}\"]` in the team \
             file allows it)",
            p = p.display()
        ),
        Some(_) => return None,
        None => "agent-team sandbox: a write may have been refused; commands may write only in \
                 the workspace, temp and the package caches (`[sandbox] write = [\"DIR\"]` in the \
                 team file allows more)"
            .to_string(),
    })
}

#[cfg(test)]
mod tests;
