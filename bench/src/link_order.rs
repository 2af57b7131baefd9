//! How much of crates/cli/link-order/ the measured binaries have. Each list names functions
//! hash-free (xtask/src/names.rs); `cargo xtask dist` links them in that order, resolved against
//! the build. A function renamed or added since `cargo xtask order` wrote the list is laid out
//! where the linker puts unlisted code, so the memory figures drift back toward those of an
//! unordered build as a list ages. A plain `cargo build --release` has no order at all.

use crate::report::Report;
use std::path::Path;
use std::process::Command;

#[path = "../../xtask/src/names.rs"]
#[allow(dead_code)]
mod names;

/// Notes, per binary in `bin_dir`, how many of its list's names it defines (`nm`).
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
        let text = String::from_utf8_lossy(&out.stdout);
        let symbols = text.lines().filter_map(|l| l.split_whitespace().nth(2));
        let (_, found) = names::resolve(&listed, symbols);
        let n = listed.lines().filter(|l| !l.is_empty()).count();
        parts.push(format!(
            "{bin} has {found} of its {n} ({:.0} %)",
            100.0 * found as f64 / n.max(1) as f64
        ));
    }
    r.note(format!(
        "link order (names listed in crates/cli/link-order/; linked in that order only by `cargo xtask dist`): {}",
        parts.join("; ")
    ));
}
