//! How much of crates/cli/link-order/ the measured binaries still have. Each file names the
//! symbols of the build `cargo xtask order` wrote it from; a function renamed or added since
//! is laid out where the linker puts unlisted code, so the memory figures drift back toward
//! those of an unordered build as the files age.

use crate::report::Report;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

/// Notes, per binary in `bin_dir`, how many of its file's functions it defines (`nm`).
pub(crate) fn note(r: &mut Report, bin_dir: &Path) {
    let mut parts = Vec::new();
    for bin in ["agent-team", "agent-team-worker"] {
        let file = Path::new("crates/cli/link-order").join(format!("{bin}.txt"));
        let Ok(listed) = std::fs::read_to_string(&file) else {
            parts.push(format!("{bin}: no {}", file.display()));
            continue;
        };
        let Ok(out) = Command::new("nm")
            .args(["--defined-only", "--no-sort"])
            .arg(bin_dir.join(bin))
            .output()
        else {
            parts.push(format!("{bin}: nm did not run"));
            continue;
        };
        let defined: HashSet<&str> = std::str::from_utf8(&out.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        let names: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
        let found = names.iter().filter(|n| defined.contains(**n)).count();
        parts.push(format!(
            "{bin} has {found} of its {} ({:.0} %)",
            names.len(),
            100.0 * found as f64 / names.len().max(1) as f64
        ));
    }
    r.note(format!(
        "link order (functions listed in crates/cli/link-order/, `cargo xtask order` writes them anew): {}",
        parts.join("; ")
    ));
}
