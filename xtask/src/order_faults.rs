//! The second half of `cargo xtask order`: the functions the profile misses. The profiled
//! build inlines differently and our precompiled standard library is not instrumented, so the
//! ordered release binaries still run a few dozen functions from outside their listed stretch,
//! and each maps a whole folio of cold code (128 KiB here) around itself. This pass runs the
//! bench's sections under `perf record -e page-faults` with the ordered release binaries,
//! names the function at each fault beyond the listed stretch and adds it to
//! target/order/link-order/BIN.faults.txt, which the passes link with before BIN.txt. A fault
//! names only the first function of a folio to run, so the pass repeats.

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

/// The binaries the pass looks at (the bridge's few functions all lie in its listed stretch).
const BINS: [&str; 2] = ["agent-team", "agent-team-worker"];

/// Runs `passes` passes (a relink, the bench's sections under `perf`, the files extended).
/// Nothing when `perf` cannot record page faults system-wide here (it needs root or
/// CAP_PERFMON): the profile's files alone still order most of the code.
pub fn fault_passes(root: &Path, release: &Path, data_dir: &Path, passes: usize) -> Result<()> {
    let probe = Command::new("perf")
        .args([
            "record",
            "-a",
            "-e",
            "page-faults",
            "-o",
            "/dev/null",
            "--",
            "true",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "xtask: `perf record -a -e page-faults` does not run here: no fault pass (the profile's order stands)"
        );
        return Ok(());
    }
    let dir = crate::link_order::work_dir(root);
    for pass in 1..=passes {
        crate::link_order::build_working(root)?;
        let mut added = 0;
        // What the binaries were linked with: their listed stretch ends after the last of
        // these (what this pass adds lies in the cold code until the next link).
        let mut linked = HashMap::new();
        for bin in BINS {
            linked.insert(bin, listed(&dir, bin));
        }
        for (k, run) in crate::order::RUNS.iter().enumerate() {
            let data = data_dir.join(format!("faults-{k}.data"));
            eprintln!("xtask: fault pass {pass}: the bench with {run:?} under perf");
            let status = Command::new("perf")
                .args([
                    "record",
                    "-q",
                    "-a",
                    "-e",
                    "page-faults",
                    "-c",
                    "1",
                    "-d",
                    "-o",
                ])
                .arg(&data)
                .arg("--")
                .arg(release.join("agent-team-bench"))
                .current_dir(root)
                .env("AGENT_TEAM_BIN_DIR", release)
                .envs(run.iter().copied())
                .stdout(std::process::Stdio::null())
                .status()
                .context("cannot run perf record")?;
            if !status.success() {
                bail!("perf record of the bench failed ({status}) with {run:?}");
            }
            let script = Command::new("perf")
                .args(["script", "-i"])
                .arg(&data)
                .args(["--show-mmap-events", "-F", "pid,addr"])
                .output()
                .context("cannot run perf script")?;
            let text = String::from_utf8_lossy(&script.stdout);
            for bin in BINS {
                let path = release.join(bin);
                let faults = faults_of(&text, &path.display().to_string());
                let file = dir.join(format!("{bin}.faults.txt"));
                let now = listed(&dir, bin);
                let symbols = text_symbols(&path)?;
                let new = additions(&faults, &symbols, &linked[bin], &now);
                if new.is_empty() {
                    continue;
                }
                added += new.len();
                let mut kept = std::fs::read_to_string(&file).unwrap_or_default();
                for n in new {
                    kept.push_str(&n);
                    kept.push('\n');
                }
                std::fs::write(&file, kept)
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
        }
        eprintln!("xtask: fault pass {pass}: {added} functions added");
        if added == 0 {
            break;
        }
    }
    Ok(())
}

/// The symbols the binary's files list (BIN.faults.txt, then BIN.txt; a missing file lists none).
pub(crate) fn listed(dir: &Path, bin: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for name in [format!("{bin}.faults.txt"), format!("{bin}.txt")] {
        let path = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
    }
    out
}

/// A function of the binary's text: its address, size and name.
pub(crate) type Symbol = (u64, u64, String);

/// The binary's function symbols by address (`nm -S -n`).
pub(crate) fn text_symbols(path: &Path) -> Result<Vec<Symbol>> {
    let out = Command::new("nm")
        .args(["-S", "-n", "--defined-only"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot run nm on {}", path.display()))?;
    if !out.status.success() {
        bail!("nm {} failed ({})", path.display(), out.status);
    }
    let mut symbols = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [addr, size, kind, name] = f[..]
            && matches!(kind, "t" | "T" | "W" | "w")
            && let (Ok(addr), Ok(size)) =
                (u64::from_str_radix(addr, 16), u64::from_str_radix(size, 16))
        {
            symbols.push((addr, size, name.to_string()));
        }
    }
    Ok(symbols)
}

/// The addresses in the binary (`exe`, as mapped) of the page faults `perf script
/// --show-mmap-events -F pid,addr` printed, for every process that mapped it: each fault's
/// address less the process's load address (the mapping of the binary at file offset 0).
fn faults_of(script: &str, exe: &str) -> Vec<u64> {
    let mut base: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::new();
    for line in script.lines() {
        if let Some((head, rest)) = line.split_once("PERF_RECORD_MMAP2 ") {
            // `PID/TID: [0xSTART(0xLEN) @ PGOFF ...]: PROT PATH`
            let pid = head.split_whitespace().next_back().unwrap_or_default();
            let Some((_, map)) = rest.split_once('[') else {
                continue;
            };
            let start = map.split('(').next().unwrap_or_default();
            let offset = map
                .split_once(" @ ")
                .map(|(_, o)| o.split(' ').next().unwrap_or_default());
            if line.ends_with(exe)
                && matches!(offset, Some("0" | "0x0"))
                && let Ok(start) = u64::from_str_radix(start.trim_start_matches("0x"), 16)
            {
                base.insert(pid, start);
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [pid, addr] = f[..]
            && let Some(b) = base.get(pid)
            && let Ok(addr) = u64::from_str_radix(addr, 16)
            && let Some(v) = addr.checked_sub(*b)
        {
            out.push(v);
        }
    }
    out
}

/// The functions (by name, each once, in the order first seen) holding a fault address past
/// the last listed function, that no file lists yet.
fn cold_functions(faults: &[u64], symbols: &[Symbol], listed: &HashSet<String>) -> Vec<String> {
    let hot_end = symbols
        .iter()
        .filter(|(_, _, n)| listed.contains(n))
        .map(|(a, s, _)| a + s)
        .max()
        .unwrap_or(0);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &v in faults {
        if v < hot_end {
            continue;
        }
        let at = symbols.partition_point(|(a, _, _)| *a <= v);
        let Some((a, s, name)) = at.checked_sub(1).map(|i| &symbols[i]) else {
            continue;
        };
        if v < a + s.max(&1) && !listed.contains(name) && seen.insert(name.clone()) {
            out.push(name.clone());
        }
    }
    out
}

/// What a run of a pass adds: the functions faulted in past the stretch the binary was linked
/// with (`linked`), not yet listed (`now`: with what earlier runs of the pass added, which lie
/// in the cold code until the next link and so must not move the stretch's end).
fn additions(
    faults: &[u64],
    symbols: &[Symbol],
    linked: &HashSet<String>,
    now: &HashSet<String>,
) -> Vec<String> {
    cold_functions(faults, symbols, linked)
        .into_iter()
        .filter(|n| !now.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_placed_in_its_process_by_the_binary_s_load_address() {
        let script = "\
 1 PERF_RECORD_MMAP2 1/1: [0x5000(0x9000) @ 0 fe:00 7 8]: r--p /bin/ours
 2 PERF_RECORD_MMAP2 2/2: [0x9000(0x9000) @ 0 fe:00 7 8]: r--p /bin/ours
 3 PERF_RECORD_MMAP2 3/3: [0x1000(0x9000) @ 0 fe:00 7 8]: r--p /bin/other
 2 PERF_RECORD_MMAP2 2/2: [0x20000(0x1000) @ 0x4000 fe:00 7 8]: r-xp /bin/ours
     1 5100
     2 9200
     3 1300
     4 1400
";
        assert_eq!(faults_of(script, "/bin/ours"), vec![0x100, 0x200]);
    }

    #[test]
    fn only_faults_past_the_listed_stretch_name_new_functions_once() {
        let symbols: Vec<Symbol> = vec![
            (0x100, 0x10, "hot".into()),
            (0x110, 0x10, "also_hot_unlisted".into()),
            (0x200, 0x20, "cold".into()),
            (0x300, 0x20, "listed_later".into()),
        ];
        let listed = HashSet::from(["hot".to_string(), "listed_later".to_string()]);
        let faults = [0x105, 0x115, 0x205, 0x210, 0x305, 0x250];
        // The stretch ends after the last listed function: nothing before it is new.
        assert!(cold_functions(&faults, &symbols, &listed).is_empty());
        let listed = HashSet::from(["hot".to_string()]);
        assert_eq!(
            cold_functions(&faults, &symbols, &listed),
            vec![
                "also_hot_unlisted".to_string(),
                "cold".to_string(),
                "listed_later".to_string()
            ]
        );
    }

    #[test]
    fn what_an_earlier_run_of_the_pass_added_does_not_hide_later_faults() {
        let symbols: Vec<Symbol> = vec![
            (0x100, 0x10, "hot".into()),
            (0x200, 0x10, "cold".into()),
            (0x900, 0x10, "added_by_the_first_run".into()),
        ];
        let linked = HashSet::from(["hot".to_string()]);
        let now = HashSet::from(["hot".to_string(), "added_by_the_first_run".to_string()]);
        // The second run faults in `cold` (and again in what the first run added).
        let faults = [0x205, 0x905];
        assert_eq!(
            additions(&faults, &symbols, &linked, &now),
            vec!["cold".to_string()]
        );
    }
}
