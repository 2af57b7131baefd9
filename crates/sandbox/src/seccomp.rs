//! Where no namespace can be made, a seccomp filter refuses what Landlock before ABI 9 lets
//! through: creating a Unix socket (`socket(AF_UNIX, …)`), so a command cannot `connect()` to
//! the team's tmux server or daemon socket whatever their path. BPF sees only a call's
//! numbers, never the path it points to, so the allow-list is empty: pipes and `socketpair`
//! still work (a program's own child processes), named Unix sockets do not.

use std::os::unix::process::CommandExt;

/// The architecture the filter is built for (a call made through another ABI is refused).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Offsets in `struct seccomp_data`: the call's number, its architecture, its first argument
/// (low 32 bits, little-endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0: u32 = 16;

fn stmt(code: u32, k: u32) -> nix::libc::sock_filter {
    nix::libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> nix::libc::sock_filter {
    nix::libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The program: another ABI → EPERM; `socket` with domain `AF_UNIX` → EPERM; else allow.
pub(crate) fn program() -> Vec<nix::libc::sock_filter> {
    use nix::libc::*;
    let deny = SECCOMP_RET_ERRNO | (EPERM as u32);
    let mut p = this_abi_only(deny);
    p.extend([
        jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket as u32, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX as u32, 0, 1),
        stmt(BPF_RET | BPF_K, deny),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ]);
    p
}

/// The start of every program: a call through another ABI gets `deny`; then the call's
/// number is loaded.
fn this_abi_only(deny: u32) -> Vec<nix::libc::sock_filter> {
    use nix::libc::*;
    vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, deny),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
    ]
}

/// Offset of a call's second argument (low 32 bits, little-endian): an `ioctl`'s request,
/// which the kernel takes as an `unsigned int`, so its high bits never matter.
const OFF_ARG1: u32 = 24;

/// The first call number of the x32 ABI on x86_64 (the same audit arch, another numbering):
/// refused whole, so no call is made past the checks by its x32 number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The program every sandboxed process runs under: another ABI (and x32) → EPERM; `ioctl`
/// with `TIOCSTI` (type into a terminal) or `TIOCLINUX` (paste a console's selection) →
/// EPERM; else allow. An interactive CLI keeps its terminal to draw in and get resizes from,
/// but can type into none, its own included.
pub(crate) fn no_terminal_input() -> Vec<nix::libc::sock_filter> {
    use nix::libc::*;
    let deny = SECCOMP_RET_ERRNO | (EPERM as u32);
    let mut p = this_abi_only(deny);
    p.extend([
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 5, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl as u32, 0, 5),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG1),
        jump(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI as u32, 2, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX as u32, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        stmt(BPF_RET | BPF_K, deny),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ]);
    p
}

/// Installs the filter in `c`'s child just before exec (after `PR_SET_NO_NEW_PRIVS`, which it
/// sets itself). The program is built before the fork; the child only makes two `prctl`s.
pub(crate) fn deny_unix_sockets(c: &mut std::process::Command) {
    install(c, program());
}

/// Installs [`no_terminal_input`] in `c`'s child (bubblewrap, or the command itself without a
/// namespace): everything it starts inherits it.
pub(crate) fn deny_terminal_input(c: &mut std::process::Command) {
    install(c, no_terminal_input());
}

/// Installs `filter` in `c`'s child just before exec, after `PR_SET_NO_NEW_PRIVS`.
fn install(c: &mut std::process::Command, filter: Vec<nix::libc::sock_filter>) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl with a
    // program allocated before the fork (it allocates nothing).
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            let prog = nix::libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut nix::libc::sock_filter,
            };
            if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if nix::libc::prctl(
                nix::libc::PR_SET_SECCOMP,
                nix::libc::SECCOMP_MODE_FILTER as nix::libc::c_ulong,
                &prog as *const nix::libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
