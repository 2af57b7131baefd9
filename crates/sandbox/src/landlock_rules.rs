//! The fallback: a Landlock ruleset built before the fork (opening every path it names), and
//! two system calls in the child before exec (`prctl(PR_SET_NO_NEW_PRIVS)` and
//! `landlock_restrict_self`).
//!
//! Landlock only allows, so "everything but the hidden dirs" is granted as the entries beside
//! each hidden dir on the path from `/` down to it, as they exist when the process starts: a
//! top-level entry created later (in `/`, or in `/tmp` when a hidden dir is below it) is out of
//! reach of processes already running. Read-only paths inside writable dirs cannot be
//! expressed and are not enforced here.

use crate::Boundary;
use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The newest ABI whose rights the policy names; older kernels get what they support.
const ABI_USED: ABI = ABI::V9;

/// The kernel's Landlock ABI (asked without restricting anything), or why there is none.
pub(crate) fn abi() -> Result<i32, String> {
    // SAFETY: the version query of landlock_create_ruleset reads no memory (null attr,
    // size 0) and creates nothing.
    #[allow(unsafe_code)]
    let v = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v > 0 {
        return Ok(v as i32);
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(nix::libc::EOPNOTSUPP) => {
            "this kernel has Landlock but it is not enabled (add landlock to the lsm= boot parameter)"
                .to_string()
        }
        Some(nix::libc::ENOSYS) => {
            "this kernel has no Landlock (Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK)"
                .to_string()
        }
        _ => format!("Landlock cannot be used here: {err}"),
    })
}

/// Paths that together cover `root` minus `deny` as it stands now: `root` itself when no
/// denied dir is inside it, else its entries one by one (symlinks left out: what they point to
/// is reached, and checked, under its own path).
pub(crate) fn cover(root: &Path, deny: &[PathBuf], out: &mut Vec<PathBuf>) {
    if deny.iter().any(|d| root.starts_with(d)) {
        return;
    }
    if !deny.iter().any(|d| d.starts_with(root)) {
        out.push(root.to_path_buf());
        return;
    }
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        cover(&e.path(), deny, out);
    }
}

/// A private temp dir when a hidden dir is inside the temp dir (no new entry could be made
/// there): `<temp>/agent-team-tmp-<uid>`, 0700 and ours.
fn private_tmp(deny: &[PathBuf]) -> Option<PathBuf> {
    let tmp = std::fs::canonicalize(std::env::temp_dir()).ok()?;
    if !deny.iter().any(|d| d.starts_with(&tmp)) {
        return None;
    }
    let dir = tmp.join(format!("agent-team-tmp-{}", nix::unistd::getuid().as_raw()));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            tracing::warn!("no private temp dir for sandboxed commands: {e}");
            return None;
        }
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() {
        tracing::warn!("{} is not our private dir", dir.display());
        return None;
    }
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    Some(dir)
}

/// The rights on a path: read (and connect to sockets, and use devices opened) everywhere it
/// may read; everything where it may write.
fn rights(write: bool) -> BitFlags<AccessFs> {
    if write {
        AccessFs::from_all(ABI_USED)
    } else {
        AccessFs::from_read(ABI_USED) | AccessFs::ResolveUnix | AccessFs::IoctlDev
    }
}

/// Opens `path` for a rule without following a symlink in its last part (one put there since
/// [`cover`] looked must not widen the rule), with the rights a file can take.
fn rule(path: &Path, access: BitFlags<AccessFs>) -> Option<PathBeneath<OwnedFd>> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let st = nix::sys::stat::fstat(&fd).ok()?;
    let kind = st.st_mode & nix::libc::S_IFMT;
    if kind == nix::libc::S_IFLNK {
        return None;
    }
    let access = if kind == nix::libc::S_IFDIR {
        access
    } else {
        access
            & (AccessFs::ReadFile
                | AccessFs::WriteFile
                | AccessFs::Execute
                | AccessFs::Truncate
                | AccessFs::IoctlDev
                | AccessFs::ResolveUnix)
    };
    Some(PathBeneath::new(fd, access))
}

/// The ruleset for a process in `cwd`, created (not yet applied): `None` when the kernel has
/// no Landlock.
pub(crate) fn ruleset(cwd: &Path, b: &Boundary) -> Result<Option<OwnedFd>, String> {
    let deny = &b.hide;
    let mut read = Vec::new();
    cover(Path::new("/"), deny, &mut read);
    let mut write = Vec::new();
    cover(Path::new("/dev"), deny, &mut write);
    for w in b.writable().chain(std::iter::once(cwd)) {
        if let Ok(w) = std::fs::canonicalize(w) {
            // A writable dir kept inside a hidden one (the demo's workspace in its team's
            // state dir, a CLI teammate's home) is put back; what is hidden inside it is not.
            let inside: Vec<PathBuf> = deny.iter().filter(|d| !w.starts_with(d)).cloned().collect();
            cover(&w, &inside, &mut write);
        }
    }
    let rules = read
        .iter()
        .filter_map(|p| rule(p, rights(false)))
        .chain(write.iter().filter_map(|p| rule(p, rights(true))));
    let created = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_USED))
        .and_then(|r| r.scope(Scope::Signal))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(rules.map(Ok::<_, landlock::RulesetError>)))
        .map_err(|e| e.to_string())?;
    Ok(created.into())
}

/// Applies [`ruleset`] to `c` in the child before exec; if it cannot be built the process does
/// not start (fail closed) and the log says why.
pub(crate) fn confine(c: &mut std::process::Command, cwd: &Path, b: &Boundary) {
    if let Some(tmp) = private_tmp(&b.hide) {
        c.env("TMPDIR", tmp);
    }
    let fd = match ruleset(cwd, b) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            tracing::warn!(
                "cannot build the Landlock ruleset of a sandboxed command, not starting it: {e}"
            );
            Err(nix::libc::EPERM)
        }
    };
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, landlock_restrict_self) on a descriptor opened before the fork; it
    // allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            let fd = match &fd {
                Ok(Some(fd)) => fd.as_raw_fd(),
                // No Landlock in this kernel: `up` warned about it.
                Ok(None) => return Ok(()),
                Err(errno) => return Err(std::io::Error::from_raw_os_error(*errno)),
            };
            if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if nix::libc::syscall(nix::libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
