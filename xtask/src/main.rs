//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: everything CI checks (the invariants first, format, lints, packaging,
//!   build, tests, the release archive's layout installed and run (dist --profile dev --check),
//!   the Python package's wheel and tests in venvs under target/
//!   (xtask/src/python.rs), a 30 s soak, docs).
//! - `cargo xtask invariants`: the ARCHITECTURE.md invariants a grep can check, each with the
//!   file:line that breaks it (xtask/src/invariants.rs); seconds, no build.
//! - `cargo xtask package`: every publishable crate packaged as `cargo publish` would upload
//!   it, and checked to compile from its package alone (xtask/src/package.rs); run by `ci`.
//! - `cargo xtask bench [--save]`: the performance figures of SPEC §6, each beside its floor
//!   measured in the same run; `--save` writes them to docs/BENCHMARKS.md.
//! - `cargo xtask man`: writes the man page, generated from the CLI's one clap definition, to
//!   docs/man/agent-team.1.
//! - `cargo xtask dist [--profile release|dev] [--check]`: the release binaries linked in the
//!   order of crates/cli/link-order/ (hash-free names, resolved against this very build:
//!   xtask/src/link_order.rs), packed into target/dist/'s tar.gz archives with SHA256SUMS;
//!   `--check` installs them into an empty prefix and runs the demo (xtask/src/dist.rs).
//! - `cargo xtask order [--from-profiles|--faults|--calls|--publish]`: profiles a team run and writes
//!   crates/cli/link-order/BIN.txt, the hash-free order `dist` links our functions in
//!   (xtask/src/order.rs).
//! - `cargo xtask soak [--seconds N] [--backend B] [--seed S]`: the real binaries under load
//!   while the daemon, agents and panes are SIGKILLed; checks nothing is lost, duplicated or
//!   left behind (docs/RELIABILITY.md).

mod dist;
mod invariants;
mod link_order;
mod names;
mod order;
mod order_calls;
mod order_faults;
mod package;
mod python;
mod soak;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("invariants") => invariants::invariants(&root),
        Some("package") => package::package(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("soak") => soak::soak(&root, &args[1..]),
        Some("man") => man(&root),
        Some("dist") => dist::dist(&root, &args[1..]),
        Some("order") => order::order(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|invariants|package|bench [--save] [--quick]|dist [--profile release|dev] [--check]|man|order [--from-profiles|--faults|--calls|--publish]|soak [--seconds N] [--backend B] [--seed S]>"
            );
            eprintln!(
                "  ci      invariants, format check, clippy -D warnings, packaging, build, the whole test suite, the archive installed and run, a 30 s soak, docs"
            );
            eprintln!("  invariants  the ARCHITECTURE.md invariants a grep can check (no build)");
            eprintln!("  package every publishable crate packaged and checked from its package");
            eprintln!("  bench   SPEC §6 figures beside their same-run floors (release build)");
            eprintln!(
                "  dist    release build linked in crates/cli/link-order/'s order, packed in target/dist/*.tar.gz; --check installs and runs it"
            );
            eprintln!("  man     write docs/man/agent-team.1 from the CLI's clap definition");
            eprintln!(
                "  order   profile a team run, write crates/cli/link-order/ (functions in the order they run, hash-free)"
            );
            eprintln!(
                "  soak    kill the daemon, agents and panes under load; check nothing is lost"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

/// Where cargo builds: CARGO_TARGET_DIR when set (relative to the workspace), else target/.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"))
}

fn cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn ci(root: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    // Seconds and no build: a broken architecture rule is reported before the long part.
    invariants::invariants(root)?;
    cargo(root, &["fmt", "--all", "--check"], &[])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // The docs before the long part: a broken doc link once failed a run after 30 minutes of
    // passing tests.
    cargo(
        root,
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // Right after clippy, whose checked dependencies it reuses: what crates.io would get.
    package::package(root)?;
    // The end-to-end suite drives the real binaries, so they must exist first.
    cargo(root, &["build", "--workspace", "--bins"], &[])?;
    cargo(root, &["test", "--workspace", "--no-fail-fast"], &[])?;
    // The release archive's layout, installed into an empty prefix and run, made of the debug
    // binaries just built (seconds; `cargo xtask dist` makes the real one).
    dist::run(root, dist::Profile::Dev, true)?;
    python::python(root)?;
    // A short soak (kills under load); `cargo xtask soak --seconds 600` is the long one.
    soak::soak(root, &["--seconds".to_string(), "30".to_string()])?;
    eprintln!(
        "xtask: ci passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the CLI and writes its man page (the hidden `agent-team man`) to docs/man/.
fn man(root: &Path) -> Result<()> {
    cargo(
        root,
        &["build", "--bin", "agent-team", "-p", "agent-team"],
        &[],
    )?;
    let out = Command::new(root.join("target").join("debug").join("agent-team"))
        .arg("man")
        .output()
        .context("cannot run agent-team man")?;
    if !out.status.success() {
        bail!("agent-team man failed ({})", out.status);
    }
    let dir = root.join("docs").join("man");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("agent-team.1");
    std::fs::write(&file, &out.stdout)
        .with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!(
        "xtask: wrote {} (read it with `man {}`)",
        file.display(),
        file.display()
    );
    Ok(())
}

/// The release build of our binaries and the bench, as the bench and `order` measure them.
fn build_release(root: &Path) -> Result<()> {
    cargo(
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
        &[],
    )
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    // The binaries as `cargo xtask dist` makes them: linked in the link order.
    link_order::dist(root)?;
    let target = target_dir(root);
    let bin_dir = target.join("release");
    let mut cmd = Command::new(bin_dir.join("agent-team-bench"));
    cmd.current_dir(root)
        .env("AGENT_TEAM_BIN_DIR", &bin_dir)
        .args(args);
    let status = cmd.status().context("cannot run the bench")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    Ok(())
}
