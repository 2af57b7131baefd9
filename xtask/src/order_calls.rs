//! The last pass of `cargo xtask order`: every function a team run executes, by its name in the
//! release binary. The profile (instrumented build) misses what it inlines differently, our
//! precompiled standard library and the C code we link (SQLite), and a fault pass names only
//! the first function of each folio. This pass runs the bench's `peer` section (our teams only)
//! with the ordered release binaries under `valgrind --tool=callgrind`, which names every
//! function that ran in each process, and adds those no file lists yet to
//! target/order/link-order/BIN.faults.txt. Measured: ~520 functions (~250 KiB, SQLite's for the
//! most part) left ~20 folios of cold code mapped in an in-process team (1.4 MiB of its 6.4 MiB
//! of code; docs/BENCHMARKS.md).

use anyhow::{Context, Result, bail};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The binaries whose functions the pass lists.
const BINS: [&str; 2] = ["agent-team", "agent-team-worker"];

/// Programs an agent or a test runs that are not ours: not followed under valgrind.
const NOT_OURS: &str = "/usr/*,/bin/*,/sbin/*,*/node,*/node_modules/*,*/git";

/// Runs the pass: a release build, the `peer` section under callgrind, the files extended.
/// Nothing when valgrind is not installed (the profile and the fault passes still order most
/// of the code).
pub fn call_pass(root: &Path, release: &Path, data_dir: &Path) -> Result<()> {
    if !Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("xtask: valgrind is not installed here: no call pass");
        return Ok(());
    }
    crate::link_order::build_working(root)?;
    let out = data_dir.join("calls");
    let _ = std::fs::remove_dir_all(&out);
    let wrappers = out.join("bin");
    std::fs::create_dir_all(&wrappers)
        .with_context(|| format!("cannot create {}", wrappers.display()))?;
    // The bench starts our binaries from AGENT_TEAM_BIN_DIR: each there is valgrind running
    // the release binary, and valgrind follows what it starts (the daemon, the workers).
    for bin in ["agent-team", "agent-team-worker", "agent-team-bridge"] {
        let script = format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --trace-children=yes \
             --trace-children-skip='{NOT_OURS}' --demangle=no --dump-instr=no -q \
             --callgrind-out-file='{}/%p.cg' '{}' \"$@\"\n",
            out.display(),
            release.join(bin).display()
        );
        let path = wrappers.join(bin);
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    eprintln!("xtask: call pass: the bench's peer section under callgrind");
    let status = Command::new(release.join("agent-team-bench"))
        .arg("--quick")
        .current_dir(root)
        .env("AGENT_TEAM_BIN_DIR", &wrappers)
        .envs(crate::order::RUNS[0].iter().copied())
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run the bench")?;
    if !status.success() {
        bail!("the bench under callgrind failed ({status})");
    }
    let mut ran: HashMap<&str, HashSet<String>> = HashMap::new();
    for entry in
        std::fs::read_dir(&out).with_context(|| format!("cannot read {}", out.display()))?
    {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "cg") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (object, names) in functions_by_object(&text) {
            let file = Path::new(&object).file_name().and_then(|f| f.to_str());
            if let Some(bin) = BINS.iter().find(|b| Some(**b) == file) {
                ran.entry(bin).or_default().extend(names);
            }
        }
    }
    let dir = crate::link_order::work_dir(root);
    for bin in BINS {
        let Some(names) = ran.get(bin) else {
            eprintln!("xtask: call pass: no process of {bin} was seen");
            continue;
        };
        let symbols: HashSet<String> = crate::order_faults::text_symbols(&release.join(bin))?
            .into_iter()
            .map(|(_, _, n)| n)
            .collect();
        let listed = crate::order_faults::listed(&dir, bin);
        let new = unlisted(names, &symbols, &listed);
        let file = dir.join(format!("{bin}.faults.txt"));
        let mut kept = std::fs::read_to_string(&file).unwrap_or_default();
        for n in &new {
            kept.push_str(n);
            kept.push('\n');
        }
        std::fs::write(&file, kept).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!(
            "xtask: call pass: {bin}: {} functions ran, {} of them added to {}",
            names.len(),
            new.len(),
            file.display()
        );
    }
    Ok(())
}

/// The functions a callgrind profile (`--demangle=no`, name compression on, as callgrind writes
/// it) saw run, by the object (the executable or library's path) they are in. A function is
/// named by its symbol; callgrind's mark of a recursion depth (`'2`) is cut.
fn functions_by_object(text: &str) -> HashMap<String, HashSet<String>> {
    let mut objects: HashMap<String, String> = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut object = String::new();
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for line in text.lines() {
        // `ob=(N) path` names object N (then `ob=(N)` alone); `cob=` and `cfn=` name the callee
        // of a call, which is also seen with its own `fn=` when it ran.
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let (id, given) = match rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, given)) => (id.to_string(), given.trim()),
            None => continue,
        };
        match key {
            "ob" | "cob" => {
                if !given.is_empty() {
                    objects.insert(id.clone(), given.to_string());
                }
                if key == "ob" {
                    object = objects.get(&id).cloned().unwrap_or_default();
                }
            }
            "fn" | "cfn" => {
                if !given.is_empty() {
                    names.insert(id.clone(), given.to_string());
                }
                if key == "fn"
                    && let Some(name) = names.get(&id)
                {
                    let name = match name.rsplit_once('\'') {
                        Some((n, depth)) if depth.bytes().all(|c| c.is_ascii_digit()) => n,
                        _ => name,
                    };
                    out.entry(object.clone())
                        .or_default()
                        .insert(name.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// The functions that ran which the binary has (`symbols`) and no file lists yet, by name.
fn unlisted(
    ran: &HashSet<String>,
    symbols: &HashSet<String>,
    listed: &HashSet<String>,
) -> BTreeSet<String> {
    ran.iter()
        .filter(|n| symbols.contains(*n) && !listed.contains(*n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A callgrind profile as valgrind 3.x writes it with name compression: objects and
    /// functions named once, then referred to by number.
    const PROFILE: &str = "\
version: 1
creator: callgrind-3.19.0
cmd:  /target/release/agent-team run
events: Ir
ob=(1) /target/release/agent-team
fl=(1) ???
fn=(1) sqlite3_step
0 40
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfn=(2) memcpy
calls=1 0
0 10
fn=(3) _ZN1a3foo17h0123456789abcdefE'2
0 3
ob=(2)
fn=(2)
0 10
ob=(1)
fn=(4) never_called_only_named
cfn=(5) _ZN1a3bar17h0123456789abcdefE
calls=1 0
0 1
";

    #[test]
    fn a_profile_names_each_function_that_ran_in_its_object() {
        let by = functions_by_object(PROFILE);
        let ours = &by["/target/release/agent-team"];
        assert!(ours.contains("sqlite3_step"), "{ours:?}");
        // The recursion mark is cut.
        assert!(ours.contains("_ZN1a3foo17h0123456789abcdefE"), "{ours:?}");
        // A callee named only in a call is not counted as run here.
        assert!(!ours.contains("_ZN1a3bar17h0123456789abcdefE"), "{ours:?}");
        assert!(!ours.contains("memcpy"), "{ours:?}");
        assert!(by["/usr/lib/x86_64-linux-gnu/libc.so.6"].contains("memcpy"));
    }

    #[test]
    fn only_functions_the_binary_has_and_no_file_lists_are_added() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<HashSet<_>>();
        let ran = set(&[
            "listed",
            "new_b",
            "new_a",
            "0x00000000000af6a0",
            "(below main)",
        ]);
        let symbols = set(&["listed", "new_a", "new_b", "unrun"]);
        let listed = set(&["listed"]);
        assert_eq!(
            unlisted(&ran, &symbols, &listed)
                .into_iter()
                .collect::<Vec<_>>(),
            ["new_a", "new_b"]
        );
    }
}
