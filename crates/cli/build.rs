//! Link settings for this package's binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    // Relative relocations packed (DT_RELR): the `agent-team` binary's ~42 000 of them are
    // ~1 MB as RELA entries, which every one of our processes reads at its start and keeps
    // mapped; packed they are ~12 KB (docs/BENCHMARKS.md). Only where a program linked so
    // runs here: glibc 2.36 or later, and a linker that knows the flag.
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && native
        && packed_relocations_run(Path::new(&var("OUT_DIR")))
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether a position-independent program with a relative relocation, linked with
/// `-z pack-relative-relocs` by the C compiler rustc links with, runs on this machine (an
/// older glibc refuses it: it lacks `GLIBC_ABI_DT_RELR`).
fn packed_relocations_run(out: &Path) -> bool {
    let src = out.join("relr-probe.c");
    let exe: PathBuf = out.join("relr-probe");
    let program = "static int x = 7;\nint *p = &x;\nint main(void) { return *p == 7 ? 0 : 1; }\n";
    if std::fs::write(&src, program).is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&exe)
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    linked
        && Command::new(&exe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}
