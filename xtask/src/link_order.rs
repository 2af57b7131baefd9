//! The link order, made against the build it orders. crates/cli/link-order/BIN.txt (committed)
//! lists each binary's functions in the order a team run calls them, by HASH-FREE name: a
//! legacy-mangled symbol without its `17h<16 hex>E` hash, a v0 one without its crates'
//! disambiguators, either without a ThinLTO `.llvm.N` suffix ([`crate::names::key`]). Those hashes change
//! with the toolchain and every dependency, so a list of real symbols went stale without a
//! word; a hash-free name stays as long as the function keeps its path.
//!
//! `cargo xtask dist` builds the release binaries, maps each listed name to the symbols the
//! built binary has under it (`nm`), writes them to target/link-order/BIN.order and links again
//! with `AGENT_TEAM_LINK_ORDER` naming that dir (crates/cli/build.rs hands the files to LLD).
//! A plain `cargo build --release` links in the linker's default order.
//! `cargo xtask order` writes the lists (xtask/src/order.rs), working on real symbols under
//! target/order/link-order/ and publishing them hash-free at its end ([`publish`]).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binaries linked in an order.
pub(crate) const BINS: [&str; 3] = ["agent-team", "agent-team-worker", "agent-team-bridge"];

/// What build.rs reads: a dir holding `BIN.order`, one real symbol a line, for the release build.
pub(crate) const ENV: &str = "AGENT_TEAM_LINK_ORDER";

/// The committed hash-free lists.
pub(crate) fn list_dir(root: &Path) -> PathBuf {
    root.join("crates").join("cli").join("link-order")
}

use crate::names::{hash_free, resolve};

/// `cargo xtask order`'s working files (real symbols: BIN.faults.txt, then BIN.txt).
pub(crate) fn work_dir(root: &Path) -> PathBuf {
    crate::target_dir(root).join("order").join("link-order")
}

/// The function symbols (`t`, `T`, `W`, `w`) a binary defines (`nm`).
pub(crate) fn function_symbols(path: &Path) -> Result<Vec<String>> {
    let out = Command::new("nm")
        .args(["--defined-only", "--no-sort"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot run nm on {}", path.display()))?;
    if !out.status.success() {
        anyhow::bail!("nm {} failed ({})", path.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            match (f.next(), f.next(), f.next()) {
                (Some(_), Some("t" | "T" | "W" | "w"), Some(name)) => Some(name.to_string()),
                _ => None,
            }
        })
        .collect())
}

/// The release build linked with the order files in `dir` (`dir/BIN.order`).
pub(crate) fn build_ordered(root: &Path, dir: &Path) -> Result<()> {
    let dir = dir.display().to_string();
    crate::cargo(
        root,
        &[
            "build",
            "--release",
            "--bins",
            "-p",
            "agent-team",
            "-p",
            "agent-team-bench",
        ],
        &[(ENV, &dir)],
    )
}

/// `cargo xtask order`'s release build: its working files (BIN.faults.txt, then BIN.txt) joined
/// into the BIN.order files build.rs reads, and the binaries linked with them.
pub(crate) fn build_working(root: &Path) -> Result<()> {
    let dir = work_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for bin in BINS {
        let mut order = String::new();
        for part in [format!("{bin}.faults.txt"), format!("{bin}.txt")] {
            order.push_str(&std::fs::read_to_string(dir.join(part)).unwrap_or_default());
        }
        let file = dir.join(format!("{bin}.order"));
        std::fs::write(&file, order).with_context(|| format!("cannot write {}", file.display()))?;
    }
    build_ordered(root, &dir)
}

/// Writes the committed lists from `cargo xtask order`'s working files, hash-free.
pub(crate) fn publish(root: &Path) -> Result<()> {
    let (work, lists) = (work_dir(root), list_dir(root));
    std::fs::create_dir_all(&lists)
        .with_context(|| format!("cannot create {}", lists.display()))?;
    for bin in BINS {
        let parts: Vec<String> = [format!("{bin}.faults.txt"), format!("{bin}.txt")]
            .iter()
            .map(|p| std::fs::read_to_string(work.join(p)).unwrap_or_default())
            .collect();
        let list = hash_free(parts.iter().map(String::as_str));
        if list.is_empty() {
            continue;
        }
        let file = lists.join(format!("{bin}.txt"));
        std::fs::write(&file, &list).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!(
            "xtask: wrote {} ({} names)",
            file.display(),
            list.lines().count()
        );
    }
    Ok(())
}

/// `cargo xtask dist`: the release binaries linked in the committed lists' order, resolved
/// against this very build's symbols (target/link-order/BIN.order), so no toolchain or
/// dependency change can make the order stale.
pub(crate) fn dist(root: &Path) -> Result<()> {
    crate::build_release(root)?;
    let release = crate::target_dir(root).join("release");
    let out = crate::target_dir(root).join("link-order");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for bin in BINS {
        let list_file = list_dir(root).join(format!("{bin}.txt"));
        let list = std::fs::read_to_string(&list_file).unwrap_or_default();
        let symbols = function_symbols(&release.join(bin))?;
        let (order, found) = resolve(&list, symbols.iter().map(String::as_str));
        let file = out.join(format!("{bin}.order"));
        std::fs::write(&file, &order)
            .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!(
            "xtask: {bin}: {found} of the {} names in {} found, {} symbols ordered",
            list.lines().count(),
            list_file.display(),
            order.lines().count()
        );
    }
    build_ordered(root, &out)?;
    eprintln!(
        "xtask: the release binaries in {} are linked in order",
        release.display()
    );
    Ok(())
}
