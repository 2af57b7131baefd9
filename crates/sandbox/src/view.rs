//! What a namespace sandbox starts from: nothing, then the machine's public programs and
//! configuration read-only. The root is an empty tmpfs; into it go the system's program dirs
//! (`/usr`, `/bin`, `/lib*` and `/sbin`, whose links stay links), of `/etc` only what
//! every user of the machine may read (never `/etc/shadow`, a host key or a dir of private
//! keys, also when the operator is root), the toolchains under the home dir (read-only) and the
//! dirs on `PATH`. Nothing else of the operator's home, `/run`, `/var`, `/tmp`, `/opt`, `/media`,
//! `/mnt` or `/srv` is there. `/etc` is one mount of a snapshot of its public part: a few hundred
//! binds cost ~120 ms in a user namespace, one costs what any bind does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One piece of the read-only base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A dir or file bound read-only at its own path.
    Bind(PathBuf),
    /// A dir bound read-only at another path (`/etc` from its snapshot).
    BindAt {
        /// The dir outside.
        from: PathBuf,
        /// Where it is inside.
        at: PathBuf,
    },
    /// A symbolic link made at `link` pointing at `target` (as it reads on the host).
    Symlink {
        /// What the link says.
        target: PathBuf,
        /// Where the link is.
        link: PathBuf,
    },
}

/// The system's program dirs, each bound when it is a dir and remade when it is a link. Not
/// `/opt`: what a vendor put there is not every agent's to read (a dir of it on `PATH` is
/// bound as a program's; `[sandbox] read` adds more).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Toolchains under the home dir that tools on `PATH` need at their usual place (read-only:
/// the sandbox's home is the team's own, and a toolchain is not its to change).
pub const HOME_TOOLCHAINS: &[&str] = &[
    ".rustup",
    ".cargo/bin",
    ".pyenv",
    ".nvm",
    ".volta",
    ".bun/bin",
    ".deno/bin",
    "go/bin",
    ".local/bin",
    ".sdkman/candidates",
];

/// The most entries of `/etc` looked at (a bound on the walk).
const ETC_MAX: usize = 20_000;

/// The read-only base of every namespace sandbox on this machine, computed once per process.
pub fn base() -> &'static [Entry] {
    static BASE: OnceLock<Vec<Entry>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut v = Vec::new();
        for d in SYSTEM_DIRS {
            let p = Path::new(d);
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(p) {
                        v.push(Entry::Symlink {
                            target,
                            link: p.to_path_buf(),
                        });
                    }
                }
                Ok(m) if m.is_dir() => v.push(Entry::Bind(p.to_path_buf())),
                _ => {}
            }
        }
        let mut budget = ETC_MAX;
        let mut etc = Vec::new();
        public(Path::new("/etc"), &mut etc, &mut budget);
        // One mount for all of it where a snapshot can be kept (each mount costs ~0.7 ms in
        // a user namespace; /etc is a few hundred), else each piece on its own.
        match snapshot_root().and_then(|root| snapshot(&etc, &root)) {
            Some(from) => v.push(Entry::BindAt {
                from,
                at: PathBuf::from("/etc"),
            }),
            None => v.extend(etc),
        }
        v
    })
}

/// Where snapshots of the public part of `/etc` are kept: in the state root (`$AGENT_TEAM_HOME`,
/// else `$XDG_STATE_HOME` or `~/.local/state`, then `agent-team`), under `sandbox-etc`, which no
/// sandbox sees.
fn snapshot_root() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let root = var("AGENT_TEAM_HOME").or_else(|| {
        var("XDG_STATE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".local/state")))
            .map(|s| s.join("agent-team"))
    })?;
    root.is_absolute().then(|| root.join("sandbox-etc"))
}

/// The snapshot of `entries` (the public part of `/etc`) under `root`, made when missing: a
/// dir named by what the entries are now (paths, sizes, times, modes), so a changed `/etc`
/// gets a new one. Made aside and renamed into place, so a half-made one is never used.
fn snapshot(entries: &[Entry], root: &Path) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut budget = ETC_MAX;
    for e in entries {
        match e {
            Entry::Bind(p) => fingerprint(p, &mut h, &mut budget)?,
            Entry::Symlink { target, link } => (target, link).hash(&mut h),
            Entry::BindAt { .. } => return None,
        }
    }
    let dir = root.join(format!("etc-{:016x}", h.finish()));
    if dir.is_dir() {
        return Some(dir);
    }
    std::fs::create_dir_all(root).ok()?;
    // Older snapshots go after a day (a sandbox started before `/etc` changed may still
    // have one mounted).
    let day = std::time::Duration::from_secs(24 * 3600);
    for old in std::fs::read_dir(root).ok()?.flatten() {
        let stale = old
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if stale {
            let _ = std::fs::remove_dir_all(old.path());
        }
    }
    let tmp = root.join(format!(".etc-{}-{:016x}", std::process::id(), h.finish()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).ok()?;
    let made = entries.iter().all(|e| copy_entry(e, &tmp));
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755));
    if made && (std::fs::rename(&tmp, &dir).is_ok() || dir.is_dir()) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    None
}

/// Feeds what `p` is now (recursively for a dir) into `h`; none past the walk's budget.
fn fingerprint(p: &Path, h: &mut impl std::hash::Hasher, budget: &mut usize) -> Option<()> {
    use std::hash::Hash;
    use std::os::unix::fs::MetadataExt;
    *budget = budget.checked_sub(1)?;
    let m = std::fs::metadata(p).ok()?;
    (p, m.len(), m.mtime(), m.mtime_nsec(), m.mode()).hash(h);
    if m.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(p)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for n in names {
            match std::fs::symlink_metadata(&n) {
                Ok(l) if l.file_type().is_symlink() => {
                    (&n, std::fs::read_link(&n).ok()).hash(h);
                }
                _ => fingerprint(&n, h, budget)?,
            }
        }
    }
    Some(())
}

/// Copies one entry of `/etc` into the snapshot at `into` (as `/etc/x` is `into/x`).
fn copy_entry(e: &Entry, into: &Path) -> bool {
    let dest = |p: &Path| p.strip_prefix("/etc").ok().map(|r| into.join(r));
    match e {
        Entry::Bind(p) => match dest(p) {
            Some(d) => copy_tree(p, &d),
            None => false,
        },
        Entry::Symlink { target, link } => match dest(link) {
            Some(d) => {
                d.parent()
                    .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
                    && std::os::unix::fs::symlink(target, &d).is_ok()
            }
            None => false,
        },
        Entry::BindAt { .. } => false,
    }
}

/// Copies `from` (a file, what a link names, or a dir whose links stay links) to `to`.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> bool {
    let Some(parent) = to.parent() else {
        return false;
    };
    if std::fs::create_dir_all(parent).is_err() {
        return false;
    }
    let Ok(m) = std::fs::metadata(from) else {
        return false;
    };
    if !m.is_dir() {
        return std::fs::copy(from, to).is_ok();
    }
    if std::fs::create_dir(to).is_err() && !to.is_dir() {
        return false;
    }
    let _ = std::fs::set_permissions(to, m.permissions());
    let Ok(rd) = std::fs::read_dir(from) else {
        return false;
    };
    rd.flatten().all(|e| {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        match std::fs::symlink_metadata(&src) {
            Ok(l) if l.file_type().is_symlink() => {
                std::fs::read_link(&src).is_ok_and(|t| std::os::unix::fs::symlink(t, &dst).is_ok())
            }
            Ok(_) => copy_tree(&src, &dst),
            Err(_) => false,
        }
    })
}

/// Whether every user of the machine may read `m` (and enter it, for a dir).
fn world_readable(m: &std::fs::Metadata) -> bool {
    let mode = m.permissions().mode();
    mode & 0o004 != 0 && (!m.is_dir() || mode & 0o001 != 0)
}

/// What of `dir` every user may read: `dir` whole when all of it is, else each public entry
/// (a public subdir holding something private is walked the same way). A link is remade as
/// a link when it points into the system's dirs, and bound as what it points at when that is
/// public and elsewhere (`/etc/resolv.conf` into `/run`).
fn public(dir: &Path, out: &mut Vec<Entry>, budget: &mut usize) {
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !world_readable(&m) {
        return;
    }
    let mut inside = Vec::new();
    if all_public(dir, budget) {
        out.push(Entry::Bind(dir.to_path_buf()));
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.file_type().is_symlink() {
            let Ok(target) = std::fs::read_link(&p) else {
                continue;
            };
            let resolved = std::fs::canonicalize(&p).ok();
            // Into what the sandbox has of its own (`/etc/mtab` is `/proc/self/mounts`): a link.
            let in_system = resolved.as_deref().is_some_and(|r| {
                SYSTEM_DIRS.iter().any(|d| r.starts_with(d))
                    || ["/etc", "/proc", "/dev"].iter().any(|d| r.starts_with(d))
            });
            match resolved {
                _ if in_system => inside.push(Entry::Symlink { target, link: p }),
                Some(r)
                    if std::fs::metadata(&r).is_ok_and(|m| m.is_file() && world_readable(&m)) =>
                {
                    inside.push(Entry::Bind(p))
                }
                // A dangling link, or into something private.
                _ => {}
            }
        } else if m.is_dir() {
            public(&p, &mut inside, budget);
        } else if m.is_file() && world_readable(&m) {
            inside.push(Entry::Bind(p));
        }
    }
    out.extend(inside);
}

/// Whether everything under `dir` is public. A link is (what it names is looked up inside the
/// sandbox, where only what is bound exists). Gives up (false) past the walk's budget.
fn all_public(dir: &Path, budget: &mut usize) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in rd.flatten() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let Ok(m) = std::fs::symlink_metadata(e.path()) else {
            return false;
        };
        if m.file_type().is_symlink() {
            continue;
        }
        if !world_readable(&m) {
            return false;
        }
        if m.is_dir() && !all_public(&e.path(), budget) {
            return false;
        }
        // Sockets, fifos and devices have no place in /etc.
        if !m.is_dir() && !m.is_file() {
            return false;
        }
    }
    true
}

/// The dirs of `path` (a `PATH` value) that are neither in the base nor under `home`'s hidden
/// part: each bound read-only, a `node_modules/.bin` as its whole package tree (its programs
/// are links into it).
pub fn path_dirs(path: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
    let Some(path) = path else {
        return Vec::new();
    };
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .map(|d| program_root(&d))
        .filter(|d| !SYSTEM_DIRS.iter().any(|s| d.starts_with(s)))
        .collect()
}

/// Version managers whose programs on `PATH` (shims, a version's `bin`) need the manager's
/// whole tree.
const MANAGERS: &[&str] = &[
    ".pyenv", ".nvm", ".rustup", ".volta", ".sdkman", ".bun", ".deno",
];

/// The tree a program at `dir` needs: a version manager's whole tree when `dir` is in one,
/// the prefix holding a `node_modules` it is in (npm's `.bin` links, a CLI's own package and
/// the `node` package beside it), else `dir`.
pub fn program_root(dir: &Path) -> PathBuf {
    if let Some(m) = dir.ancestors().find(|a| {
        a.file_name()
            .is_some_and(|n| MANAGERS.iter().any(|m| n == *m))
    }) {
        return m.to_path_buf();
    }
    dir.ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .last()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf())
}
