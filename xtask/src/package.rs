//! `cargo xtask package`: what `cargo publish` would upload, checked without uploading. Every
//! publishable crate is packaged (`cargo package --no-verify`: the manifest crates.io needs,
//! the files the package holds), then the packages are unpacked side by side into a throwaway
//! workspace whose `[patch.crates-io]` points each of our crates at its unpacked package, and
//! `cargo check --workspace` there proves each compiles from its package alone (a file left
//! out, a path outside the package, a dependency without a version all fail here). So
//! `cargo install agent-team` would build once the crates are published, in this order
//! (a dependency first), which `cargo publish --workspace` also follows:
//!
//! perms, backoff, protocol, paths, client, tools, config, egress, pane, worktree, remote,
//! sandbox, state, store, daemon, http, model, worker, mcp, mockmodel, agent-team (the CLI).
//!
//! Checked, not built: `cargo package`'s own verification builds each package in turn, which
//! took over 13 minutes for half of them on 2 shared cores. The check shares the workspace's
//! target dir and profiles (the throwaway workspace copies them), so the dependencies the
//! earlier clippy step checked are reused and only our 21 crates are checked again (~30 s of
//! CPU).

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// Packages every publishable crate and checks the packages compile on their own.
pub fn package(root: &Path) -> Result<()> {
    let crates = publishable(root)?;
    if crates.is_empty() {
        bail!("no publishable crate in the workspace");
    }
    let mut args = vec!["package", "--no-verify", "--allow-dirty"];
    for (name, _) in &crates {
        args.extend(["-p", name.as_str()]);
    }
    super::cargo(root, &args, &[])?;
    let target = super::target_dir(root);
    let check = target.join("package-check");
    if check.exists() {
        std::fs::remove_dir_all(&check)
            .with_context(|| format!("cannot remove {}", check.display()))?;
    }
    std::fs::create_dir_all(&check)
        .with_context(|| format!("cannot create {}", check.display()))?;
    let mut members = String::new();
    let mut patches = String::new();
    for (name, version) in &crates {
        let dir = format!("{name}-{version}");
        let file = target.join("package").join(format!("{dir}.crate"));
        // `-m`: the files get the time of unpacking, not the package's (cargo packs them with
        // one old time): else a crate changed since an earlier check kept the earlier check's
        // build, and its dependents did not compile against the new code.
        let status = Command::new("tar")
            .arg("xzmf")
            .arg(&file)
            .arg("-C")
            .arg(&check)
            .status()
            .with_context(|| format!("cannot run tar to unpack {}", file.display()))?;
        if !status.success() {
            bail!("cannot unpack {} ({status})", file.display());
        }
        members.push_str(&format!("    \"{dir}\",\n"));
        patches.push_str(&format!("{name} = {{ path = \"{dir}\" }}\n"));
    }
    let root_manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .context("cannot read the workspace's Cargo.toml")?;
    let manifest = format!(
        "# Written by `cargo xtask package`: the packaged crates, each built from its package.\n\
         [workspace]\nresolver = \"3\"\nmembers = [\n{members}]\n\n\
         [patch.crates-io]\n{patches}\n{}",
        profiles(&root_manifest)
    );
    std::fs::write(check.join("Cargo.toml"), manifest)
        .context("cannot write the packages' workspace")?;
    // The workspace's lock: the same dependency versions as the build, so what it checked is
    // reused.
    std::fs::copy(root.join("Cargo.lock"), check.join("Cargo.lock"))
        .context("cannot copy Cargo.lock")?;
    let target_arg = target.display().to_string();
    let manifest_arg = check.join("Cargo.toml").display().to_string();
    super::cargo(
        root,
        &[
            "check",
            "--workspace",
            "--manifest-path",
            &manifest_arg,
            "--target-dir",
            &target_arg,
        ],
        &[],
    )?;
    std::fs::remove_dir_all(&check)
        .with_context(|| format!("cannot remove {}", check.display()))?;
    eprintln!(
        "xtask: {} crates packaged and checked from their packages",
        crates.len()
    );
    Ok(())
}

/// The workspace's publishable packages (no `publish = false`), by name and version.
fn publishable(root: &Path) -> Result<Vec<(String, String)>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let mut crates: Vec<(String, String)> = meta["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        // `publish`: null when any registry may have it, a list of registries otherwise
        // (empty for `publish = false`).
        .filter(|p| p["publish"].as_array().is_none_or(|r| !r.is_empty()))
        .filter_map(|p| Some((p["name"].as_str()?.into(), p["version"].as_str()?.into())))
        .collect();
    crates.sort();
    Ok(crates)
}

/// The `[profile.*]` tables of a manifest, as written: the check then compiles with the
/// workspace's settings and finds what the workspace's build already checked.
fn profiles(manifest: &str) -> String {
    let mut out = String::new();
    let mut in_profile = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_profile = line.starts_with("[profile");
        }
        if in_profile && !line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_profile_tables_are_copied() {
        let m = "[workspace]\nmembers = []\n\n[profile.dev]\n# why\ndebug = 1\n\n\
                 [workspace.lints.rust]\nx = 1\n[profile.release]\nlto = true\n";
        assert_eq!(
            profiles(m),
            "[profile.dev]\ndebug = 1\n\n[profile.release]\nlto = true\n"
        );
    }
}
