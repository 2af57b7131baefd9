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
    // Each binary's functions in the order a team run calls them, so what a process runs lies
    // together and it maps those pages instead of the folio around each function it calls
    // (docs/BENCHMARKS.md). Only when AGENT_TEAM_LINK_ORDER names a dir of `BIN.order` files
    // (real symbols, one a line): `cargo xtask dist` writes them, resolving the committed
    // hash-free lists in link-order/ against the very build it links (xtask/src/link_order.rs).
    // A plain `cargo build --release` links in the linker's default order. Release builds only,
    // and only with a linker that takes such a file (LLD, rustc's default here).
    println!("cargo:rerun-if-env-changed=AGENT_TEAM_LINK_ORDER");
    let order_dir = var("AGENT_TEAM_LINK_ORDER");
    let out = PathBuf::from(var("OUT_DIR"));
    if !order_dir.is_empty() && var("PROFILE") == "release" && ordering_links(&out) {
        for bin in ["agent-team", "agent-team-worker", "agent-team-bridge"] {
            let file = Path::new(&order_dir).join(format!("{bin}.order"));
            if !std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) {
                continue;
            }
            println!("cargo:rerun-if-changed={}", file.display());
            println!(
                "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={}",
                file.display()
            );
            // The file names this build's symbols; what LLD cannot place (a symbol folded into
            // another) is skipped without a word.
            println!("cargo:rustc-link-arg-bin={bin}=-Wl,--no-warn-symbol-ordering");
        }
    }
}

/// Whether rustc, with this build's target and flags, links a program given a symbol ordering
/// file (GNU ld does not know the option; LLD does).
fn ordering_links(out: &Path) -> bool {
    let src = out.join("order-probe.rs");
    let order = out.join("order-probe.txt");
    if std::fs::write(&src, "fn main() {}\n").is_err() || std::fs::write(&order, "main\n").is_err()
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    cmd.arg("--target")
        .arg(std::env::var("TARGET").unwrap_or_default())
        .arg(format!(
            "-Clink-arg=-Wl,--symbol-ordering-file={}",
            order.display()
        ))
        .arg("-Clink-arg=-Wl,--no-warn-symbol-ordering")
        .arg("-o")
        .arg(out.join("order-probe"))
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
