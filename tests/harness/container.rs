//! The image the container tests run teammates in (issue 66): made offline with `mmdebstrap`
//! from Debian's packages of this machine's own release (the essential ones and Node.js) (so our binaries, bound in, find the
//! same C library), cached under `target/container/`, imported into podman once. Tests that
//! need it call [`image`]: without podman or mmdebstrap they are skipped with a note, except in
//! CI (`CI` set), where `.ci/run` installs both and a missing one fails the test.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The image's name in podman's store.
pub const IMAGE: &str = "localhost/agent-team-e2e:2";

/// Debian packages the image holds beyond the essential ones: Node.js, for the scripted agent
/// CLI of the CLI-in-a-container test.
const PACKAGES: &str = "nodejs";

/// Whether `program` runs here.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The dir the image's root file system is cached in.
fn cache_dir() -> PathBuf {
    crate::bin_dir()
        .parent()
        .map(|t| t.join("container"))
        .unwrap_or_else(|| std::env::temp_dir().join("agent-team-container"))
}

/// This machine's Debian release (`bookworm`).
fn codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "bookworm".into())
}

/// The test image, built and imported when missing; `None` (with a note) where this machine
/// cannot run containers and this is not CI.
pub fn image() -> Option<String> {
    match build() {
        Ok(i) => Some(i),
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("containers cannot run here ({why}): the container case is skipped");
            None
        }
        Err(why) => panic!("containers cannot run here in CI: {why}"),
    }
}

fn build() -> Result<String, String> {
    if !runs("podman", &["--version"]) {
        return Err("podman is not installed".into());
    }
    if runs("podman", &["image", "exists", IMAGE]) {
        return Ok(IMAGE.into());
    }
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // One builder at a time across test processes.
    let lock = std::fs::File::create(dir.join(".lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if runs("podman", &["image", "exists", IMAGE]) {
        return Ok(IMAGE.into());
    }
    let tar = dir.join(format!("{}-2.tar", codename()));
    if !tar.is_file() {
        if !runs("mmdebstrap", &["--version"]) {
            return Err("mmdebstrap is not installed".into());
        }
        let part = dir.join("rootfs.tar.part");
        let out = Command::new("mmdebstrap")
            .args(["--variant=essential", "--quiet", "--format=tar"])
            .arg(format!("--include={PACKAGES}"))
            .arg(codename())
            .arg(&part)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("mmdebstrap: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mmdebstrap failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&part, &tar).map_err(|e| e.to_string())?;
    }
    let out = Command::new("podman")
        .arg("import")
        .arg(&tar)
        .arg(IMAGE)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("podman import: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "podman import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(IMAGE.into())
}

/// Removes every container of a team when dropped, so a failing test leaves none behind.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        agent_team_pane::container::remove_all(
            "podman",
            &agent_team_pane::container::instance_of(&self.0),
        );
    }
}

/// The names of the containers (running or not) of the team whose socket is `socket`.
pub fn containers_of(socket: &std::path::Path) -> Vec<String> {
    agent_team_pane::container::list("podman", &agent_team_pane::container::instance_of(socket))
}
