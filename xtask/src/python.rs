//! `cargo xtask ci`'s Python step (python/): the package's wheel, built by maturin from the
//! debug binaries the test phase just built, installed into the test venv and into a fresh one,
//! and the pytest suite, whose quick starts also run from the fresh venv with no `agent-team` on
//! `PATH` (python/tests/test_quickstarts.py).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The pytest the Python package's tests run with.
const PYTEST: &str = "pytest==9.2.0";

/// maturin's cargo arguments for CI's wheel: the dev profile and no stripping, so cargo finds
/// the debug binaries of `cargo build --workspace --bins` fresh and builds nothing (a release
/// wheel, `pip wheel ./python`, is a fat-LTO build of several minutes).
const CI_WHEEL_ARGS: &str = "--profile dev --strip false";

/// The `maturin==X.Y.Z` python/pyproject.toml's `[build-system]` requires: the one the CI venv
/// installs, so CI builds with what `pip install ./python` gets.
fn maturin_pin(root: &Path) -> Result<String> {
    let file = root.join("python").join("pyproject.toml");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    text.lines()
        .filter(|l| l.trim_start().starts_with("requires"))
        .find_map(|l| {
            let start = l.find("\"maturin==")? + 1;
            let len = l[start..].find('"')?;
            Some(l[start..start + len].to_string())
        })
        .with_context(|| format!("no \"maturin==X.Y.Z\" in {}'s requires", file.display()))
}

/// Runs `cmd` from the workspace, failing with `what` unless it succeeds.
fn run(root: &Path, cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd
        .current_dir(root)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// A venv at `dir` (emptied first when `fresh`); its interpreter.
fn venv(root: &Path, dir: &Path, fresh: bool) -> Result<PathBuf> {
    let py = dir.join("bin").join("python");
    if fresh || !py.exists() {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv", "--clear"]).arg(dir);
        run(
            root,
            &mut cmd,
            &format!(
                "python3 -m venv {} (Debian: apt-get install python3-venv)",
                dir.display()
            ),
        )?;
    }
    Ok(py)
}

/// The one wheel in `dir`.
fn the_wheel(dir: &Path) -> Result<PathBuf> {
    let mut wheels = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "whl") {
            wheels.push(path);
        }
    }
    match <[PathBuf; 1]>::try_from(wheels) {
        Ok([wheel]) => Ok(wheel),
        Err(w) => bail!("{} holds {} wheels, not one: {w:?}", dir.display(), w.len()),
    }
}

/// The Python step: the wheel, the test venv (target/pyvenv, pytest and maturin at pinned
/// versions from the package index once), a fresh venv with only the wheel
/// (target/pyvenv-wheel), and pytest.
pub fn python(root: &Path) -> Result<()> {
    let target = crate::target_dir(root);
    let venv_dir = target.join("pyvenv");
    let py = venv(root, &venv_dir, false)?;
    let maturin = maturin_pin(root)?;
    let version = maturin.trim_start_matches("maturin==");
    let ready = Command::new(&py)
        .args([
            "-c",
            &format!(
                "import sys, pytest, importlib.metadata as m; sys.exit(m.version('maturin') != '{version}')"
            ),
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        run(
            root,
            Command::new(&py).args(["-m", "pip", "install", "-q", PYTEST, &maturin]),
            &format!("pip install {PYTEST} {maturin}"),
        )?;
    }

    // The wheel, through the PEP 517 hooks as `pip install ./python` builds it (maturin's
    // Python shim runs the `maturin` of PATH: the venv's).
    let out = target.join("pywheel");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot empty {}", out.display()))?;
    }
    let path = std::env::join_paths(std::iter::once(venv_dir.join("bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .context("cannot put the venv on PATH")?;
    let started = Instant::now();
    run(
        root,
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-build-isolation",
                "--no-deps",
                "-w",
            ])
            .arg(&out)
            .arg("./python")
            .env("PATH", &path)
            .env("MATURIN_PEP517_ARGS", CI_WHEEL_ARGS),
        &format!("pip wheel ./python (MATURIN_PEP517_ARGS=\"{CI_WHEEL_ARGS}\")"),
    )?;
    let wheel = the_wheel(&out)?;
    eprintln!(
        "xtask: built {} in {:.0} s",
        wheel.display(),
        started.elapsed().as_secs_f64()
    );

    // The test venv gets the wheel (its package and the binaries).
    run(
        root,
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
        "pip install the wheel into target/pyvenv",
    )?;
    // A fresh venv with nothing but the wheel: what a user's `pip install` gives.
    let fresh_dir = target.join("pyvenv-wheel");
    let fresh = venv(root, &fresh_dir, true)?;
    run(
        root,
        Command::new(&fresh)
            .args(["-m", "pip", "install", "-q", "--no-index"])
            .arg(&wheel),
        "pip install the wheel into a fresh target/pyvenv-wheel",
    )?;
    run(
        root,
        Command::new(&py)
            .args(["-m", "pytest", "-p", "no:cacheprovider", "python/tests"])
            .env("AGENT_TEAM_BIN", target.join("debug").join("agent-team"))
            .env("AGENT_TEAM_WHEEL", &wheel)
            .env("AGENT_TEAM_WHEEL_PYTHON", &fresh),
        "pytest python/tests",
    )
}
