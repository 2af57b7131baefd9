//! `cargo xtask order`: writes crates/cli/link-order/BIN.txt, the order in which the linker
//! lays out each of our binaries' functions (hash-free names, resolved against each build by
//! `cargo xtask dist`: xtask/src/link_order.rs): those a team run calls, together, so that a
//! process maps the few megabytes of code it runs instead of the pages around every function
//! it calls, spread over the whole binary (the kernel maps up to 64 KiB around each page a
//! process faults in; docs/BENCHMARKS.md, "Functions in the order they run").
//!
//! How: the binaries are built once more with LLVM's function-entry coverage
//! (`-Cprofile-generate`, one byte per function, cleared when it first runs), the bench's peer
//! and clis sections run with them, and every process writes which functions it entered (a
//! `.profraw` file, read here). Each binary's file names its release symbols of those
//! functions (`Layout`). Then the fault passes (xtask/src/order_faults.rs) add what the
//! profile missed, and the call pass what they still miss (xtask/src/order_calls.rs).
//! The passes work on real symbols in target/order/link-order/ (BIN.faults.txt, BIN.txt); at the
//! end they are written hash-free to crates/cli/link-order/BIN.txt (`link_order::publish`).

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// The bench sections whose processes are profiled, with their settings: a team of model
/// agents in one process and in one each (peer), and workers beside every agent CLI we adapt
/// (clis: each adapter runs code of its own).
pub(crate) const RUNS: [&[(&str, &str)]; 2] = [
    &[("BENCH_SECTION", "peer"), ("BENCH_PEER_OURS_ONLY", "1")],
    &[("BENCH_SECTION", "clis")],
];

/// Builds, profiles and writes the order files; with `--from-profiles`, only writes them from
/// the last profiles; with `--profiles`, profiles anew and writes them, keeping the fault
/// passes' files; with `--faults`, only runs the fault passes on the files as they are; with
/// `--calls`, only the call pass (xtask/src/order_calls.rs).
pub fn order(root: &Path, args: &[String]) -> Result<()> {
    passes(root, args)?;
    crate::link_order::publish(root)
}

/// The passes `args` asks for, on the working files (target/order/link-order/).
fn passes(root: &Path, args: &[String]) -> Result<()> {
    let target = crate::target_dir(root);
    let instrumented_dir = target.join("order");
    let profiles = instrumented_dir.join("profiles");
    let release = target.join("release");
    match args.first().map(String::as_str) {
        None => {}
        // Only the lists written again from the working files.
        Some("--publish") => return Ok(()),
        Some("--from-profiles") => return write_layouts(root, &profiles, &release),
        Some("--faults") => {
            return crate::order_faults::fault_passes(
                root,
                &release,
                &instrumented_dir,
                FAULT_PASSES,
            );
        }
        Some("--calls") => return crate::order_calls::call_pass(root, &release, &instrumented_dir),
        Some("--profiles") => return profile_pass(root, &profiles, &release, &instrumented_dir),
        Some(other) => {
            bail!(
                "cargo xtask order: unknown argument {other} (--from-profiles, --profiles, --faults, --calls, --publish)"
            )
        }
    }
    profile_pass(root, &profiles, &release, &instrumented_dir)?;
    // The fault passes start from the profile's files alone.
    for layout in &LAYOUTS {
        let faults = crate::link_order::work_dir(root).join(format!("{}.faults.txt", layout.bin));
        let _ = std::fs::remove_file(faults);
    }
    crate::order_faults::fault_passes(root, &release, &instrumented_dir, FAULT_PASSES)?;
    crate::order_calls::call_pass(root, &release, &instrumented_dir)
}

/// `cargo xtask order --profiles` (and a full order's first step): the bench's runs with
/// instrumented binaries, their profiles read into the BIN.txt files (the fault passes'
/// BIN.faults.txt kept, under the names the binaries have now).
fn profile_pass(
    root: &Path,
    profiles: &Path,
    release: &Path,
    instrumented_dir: &Path,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(profiles);
    std::fs::create_dir_all(profiles)
        .with_context(|| format!("cannot create {}", profiles.display()))?;
    // `agent_team_instrumented`: `run` starts its daemon anew rather than forking it (the
    // profiler names a process's file by the pid it began with, so a forked daemon would
    // write into `run`'s).
    let flags = format!(
        "-Cprofile-generate={} -Cllvm-args=-pgo-function-entry-coverage --cfg agent_team_instrumented",
        profiles.display()
    );
    let instrumented_target = instrumented_dir.display().to_string();
    // No `--target`: with it cargo gives each crate other metadata, so other symbol hashes
    // than the release build's. So the build scripts are instrumented too: what they wrote
    // while building is dropped.
    crate::cargo(
        root,
        &["build", "--release", "--bins", "-p", "agent-team"],
        &[
            ("RUSTFLAGS", &flags),
            ("CARGO_TARGET_DIR", &instrumented_target),
        ],
    )?;
    crate::build_release(root)?;
    let instrumented = instrumented_dir.join("release");
    std::fs::remove_dir_all(profiles)
        .and_then(|()| std::fs::create_dir_all(profiles))
        .with_context(|| format!("cannot empty {}", profiles.display()))?;
    let pattern = profiles.join("%p.profraw");
    for run in RUNS {
        eprintln!("xtask: profiling the bench with {run:?}");
        let status = Command::new(release.join("agent-team-bench"))
            .current_dir(root)
            .env("AGENT_TEAM_BIN_DIR", &instrumented)
            .env("LLVM_PROFILE_FILE", &pattern)
            .envs(run.iter().copied())
            .status()
            .context("cannot run the bench")?;
        if !status.success() {
            bail!("the bench failed ({status}) with {run:?}");
        }
    }
    write_layouts(root, profiles, release)
}

/// How many times the fault pass runs at most (each finds the next function of each folio).
const FAULT_PASSES: usize = 3;

/// `cargo xtask order --from-profiles`: the BIN.txt files written anew from the profiles of
/// the last `cargo xtask order` and the release binaries as they are (no build, no bench); the
/// fault passes' BIN.faults.txt keep their functions, under the names the binaries give them
/// now (a change of code renames ThinLTO's locals: [`renamed`]).
pub fn write_layouts(root: &Path, profiles: &Path, release: &Path) -> Result<()> {
    let ran = functions_run(profiles)?;
    let dir = crate::link_order::work_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (layout, kinds) in LAYOUTS.iter().zip(&ran.by_layout) {
        let symbols = symbols_of(&release.join(layout.bin))?;
        let faults = dir.join(format!("{}.faults.txt", layout.bin));
        if let Ok(old) = std::fs::read_to_string(&faults) {
            let new = renamed(&old, &symbols);
            std::fs::write(&faults, &new)
                .with_context(|| format!("cannot write {}", faults.display()))?;
            eprintln!(
                "xtask: {}: {} of {} names as the binary has them now",
                faults.display(),
                new.lines().count(),
                old.lines().count()
            );
        }
        let text = layout_file(layout.stretches, kinds, &symbols);
        let out = dir.join(format!("{}.txt", layout.bin));
        std::fs::write(&out, &text).with_context(|| format!("cannot write {}", out.display()))?;
        let processes: Vec<String> = layout
            .kinds
            .iter()
            .zip(&kinds.processes)
            .map(|(k, n)| format!("{n} {}", k.name))
            .collect();
        eprintln!(
            "xtask: wrote {} ({} symbols; processes: {})",
            out.display(),
            text.lines().count(),
            processes.join(", ")
        );
    }
    if ran.skipped > 0 {
        eprintln!("xtask: {} profiles could not be read", ran.skipped);
    }
    Ok(())
}

/// How one binary's functions are laid out. Its processes are of a few kinds, each told apart
/// by functions only it enters; the functions are laid out in stretches by which kinds ran
/// them, in the order `stretches` gives, so that the code of each kind (and of the processes
/// that run together, as a team's daemon and its `run`) lies in one stretch.
struct Layout {
    bin: &'static str,
    /// The prefix of the binary's `main` symbol: which binary a profile is of.
    main: &'static str,
    /// The kinds of its processes: a process is of the first kind whose marks (parts of symbol
    /// names) it entered all; the last kind, with no marks, is every other process.
    kinds: &'static [Kind],
    /// The stretches, in order, each the set of kinds (bit `i` for `kinds[i]`) that ran its
    /// functions. A function that no listed set matches comes after them all.
    stretches: &'static [u8],
}

/// One kind of a binary's processes.
struct Kind {
    /// What it is (for the message).
    name: &'static str,
    /// Parts of symbol names a process of this kind enters all of.
    marks: &'static [&'static str],
}

/// Our binaries' layouts.
const LAYOUTS: [Layout; 3] = [
    Layout {
        bin: "agent-team",
        main: "_ZN10agent_team4main17h",
        kinds: &[
            Kind {
                name: "daemon with in-process agents",
                marks: &[
                    "agent_team_daemon4conn5serve",
                    "agent_team_worker9run_agent",
                ],
            },
            Kind {
                name: "daemon",
                marks: &["agent_team_daemon4conn5serve"],
            },
            Kind {
                name: "run",
                // `run_goal`, not the loop it calls: the profiler's early inliner took
                // `follow_until_finished` into it, so no profile named that.
                marks: &["agent_team3cmd2up8run_goal"],
            },
            Kind {
                name: "other",
                marks: &[],
            },
        ],
        // An in-process team's tree (its daemon, `run`) maps the first five stretches, a
        // team of worker processes (a daemon, `run`) the second to the seventh; every other
        // command's own code comes last.
        stretches: &[0b001, 0b011, 0b111, 0b101, 0b100, 0b110, 0b010],
    },
    Layout {
        bin: "agent-team-worker",
        main: "_ZN17agent_team_worker4main17h",
        kinds: &[
            Kind {
                name: "agent CLI's worker",
                marks: &["CliAdapter"],
            },
            Kind {
                name: "other",
                marks: &[],
            },
        ],
        stretches: &[0b01, 0b11, 0b10],
    },
    Layout {
        bin: "agent-team-bridge",
        main: "_ZN17agent_team_bridge4main17h",
        kinds: &[Kind {
            name: "bridge",
            marks: &[],
        }],
        stretches: &[0b1],
    },
];

impl Layout {
    /// Which of [`Layout::kinds`] a process that entered `names` is.
    fn kind_of(&self, names: &HashSet<String>) -> usize {
        self.kinds
            .iter()
            .position(|k| k.marks.iter().all(|m| names.iter().any(|n| n.contains(m))))
            .unwrap_or(self.kinds.len().saturating_sub(1))
    }
}

/// The functions each kind of a binary's processes entered (by symbol name without a ThinLTO
/// suffix), and how many processes of each kind there were.
#[derive(Default)]
struct Kinds {
    ran: Vec<HashSet<String>>,
    processes: Vec<usize>,
}

impl Kinds {
    /// Nothing yet, for `n` kinds.
    fn new(n: usize) -> Self {
        Kinds {
            ran: vec![HashSet::new(); n],
            processes: vec![0; n],
        }
    }
}

/// What the profiles say, per layout of `LAYOUTS`.
struct Ran {
    by_layout: Vec<Kinds>,
    /// Profiles that could not be read.
    skipped: usize,
}

/// Reads every `.profraw` file in `dir`.
fn functions_run(dir: &Path) -> Result<Ran> {
    let mut ran = Ran {
        by_layout: LAYOUTS.iter().map(|l| Kinds::new(l.kinds.len())).collect(),
        skipped: 0,
    };
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "profraw") {
            continue;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        // A process killed while it wrote its profile leaves it cut short.
        let names = match entered(&bytes) {
            Ok(names) => names,
            Err(e) => {
                eprintln!("xtask: {} skipped: {e:#}", path.display());
                ran.skipped += 1;
                continue;
            }
        };
        let names: HashSet<String> = names.iter().map(|n| unsuffixed(n).to_string()).collect();
        let Some(at) = LAYOUTS
            .iter()
            .position(|l| names.iter().any(|n| n.starts_with(l.main)))
        else {
            continue;
        };
        let kind = LAYOUTS[at].kind_of(&names);
        let kinds = &mut ran.by_layout[at];
        kinds.processes[kind] += 1;
        kinds.ran[kind].extend(names);
    }
    if ran
        .by_layout
        .iter()
        .all(|k| k.processes.iter().all(|&n| n == 0))
    {
        bail!("no profile of our binaries was found in {}", dir.display());
    }
    unfound_kinds(&ran)?;
    Ok(ran)
}

/// Fails when a kind of process with marks was found in no profile: its marks are gone (a
/// function renamed, or inlined before the profiler counted it), and its code would be laid
/// out as every other command's, far from the stretch its tree maps.
fn unfound_kinds(ran: &Ran) -> Result<()> {
    let unfound: Vec<String> = LAYOUTS
        .iter()
        .zip(&ran.by_layout)
        .filter(|(_, kinds)| kinds.processes.iter().any(|&n| n > 0))
        .flat_map(|(layout, kinds)| {
            layout
                .kinds
                .iter()
                .zip(&kinds.processes)
                .filter(|(k, n)| !k.marks.is_empty() && **n == 0)
                .map(move |(k, _)| format!("{} ({}: {})", k.name, layout.bin, k.marks.join(", ")))
        })
        .collect();
    if !unfound.is_empty() {
        bail!(
            "no profiled process was of these kinds: {}; are their marks still entered (xtask/src/order.rs, LAYOUTS)?",
            unfound.join("; ")
        );
    }
    Ok(())
}

/// The names of the functions a raw profile (LLVM's `.profraw`, version 10, as rustc's LLVM
/// writes it with function-entry byte coverage) records as entered. A local function's name is
/// given as `file;symbol`: the symbol is kept.
fn entered(b: &[u8]) -> Result<Vec<String>> {
    const MAGIC: u64 = 0xff6c_7072_6f66_7281;
    const BYTE_COVERAGE: u64 = 1 << 60;
    const HEADER_WORDS: usize = 16;
    const RECORD: usize = 64;
    let word = |i: usize| -> Result<u64> {
        b.get(i * 8..i * 8 + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .context("the profile ends inside its header")
    };
    if word(0)? != MAGIC {
        bail!("not a raw LLVM profile");
    }
    let version = word(1)?;
    if version & 0xffff_ffff != 10 || version & BYTE_COVERAGE == 0 {
        bail!("a raw profile of version {version:#x}: expected 10 with byte coverage");
    }
    let [
        ids,
        data,
        pad_before,
        counters,
        pad_after,
        bitmap,
        pad_bitmap,
        names_size,
        delta,
    ] = [2, 3, 4, 5, 6, 7, 8, 9, 10].map(|i| word(i).map(|w| w as usize));
    let (ids, data, counters, names_size) = (ids?, data?, counters?, names_size?);
    let counters_delta = delta? as u64 as i64;
    let data_at = HEADER_WORDS * 8 + ids;
    let counters_at = data_at + data * RECORD + pad_before?;
    let names_at = counters_at + counters + pad_after? + bitmap? + pad_bitmap?;
    let names = b
        .get(names_at..names_at + names_size)
        .context("the profile ends inside its names")?;
    let by_hash = names_by_hash(names)?;
    let mut out = Vec::new();
    for k in 0..data {
        let at = data_at + k * RECORD;
        let field = |o: usize| -> Result<u64> {
            b.get(at + o..at + o + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .context("the profile ends inside a record")
        };
        let name_ref = field(0)?;
        let counter_ptr = field(16)? as i64;
        let count = u32::from_le_bytes(
            b.get(at + 48..at + 52)
                .and_then(|s| s.try_into().ok())
                .context("the profile ends inside a record")?,
        ) as usize;
        // Relative to the record, as LLVM's reader computes it.
        let offset = counter_ptr - (counters_delta - (k * RECORD) as i64);
        let start = usize::try_from(offset).context("a counter before the counters")?;
        let bytes = b
            .get(counters_at + start..counters_at + start + count)
            .context("a counter past the counters")?;
        // Byte coverage: a counter starts as 0xff and is cleared when its block runs.
        if bytes.contains(&0)
            && let Some(name) = by_hash.get(&name_ref)
        {
            let symbol = name.rsplit_once(';').map_or(name.as_str(), |(_, s)| s);
            out.push(symbol.to_string());
        }
    }
    Ok(out)
}

/// The profile's names (zlib-compressed chunks of names separated by 0x01), by the low 64 bits
/// of their MD5, as the records refer to them.
fn names_by_hash(mut b: &[u8]) -> Result<HashMap<u64, String>> {
    use md5::Digest;
    let mut out = HashMap::new();
    while !b.is_empty() {
        let (plain, rest) = uleb128(b)?;
        let (packed, rest) = uleb128(rest)?;
        if plain == 0 && packed == 0 {
            break;
        }
        let (chunk, rest) = if packed == 0 {
            let chunk = rest.get(..plain).context("a names chunk past the end")?;
            (chunk.to_vec(), &rest[plain..])
        } else {
            let packed_bytes = rest.get(..packed).context("a names chunk past the end")?;
            let mut chunk = Vec::with_capacity(plain);
            flate2::read::ZlibDecoder::new(packed_bytes)
                .read_to_end(&mut chunk)
                .context("a names chunk that does not inflate")?;
            (chunk, &rest[packed..])
        };
        for name in chunk.split(|&c| c == 1) {
            let digest = md5::Md5::digest(name);
            let mut low = [0u8; 8];
            low.copy_from_slice(&digest[..8]);
            out.insert(
                u64::from_le_bytes(low),
                String::from_utf8_lossy(name).into_owned(),
            );
        }
        b = rest;
    }
    Ok(out)
}

/// An unsigned LEB128 number and what follows it.
fn uleb128(b: &[u8]) -> Result<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &c) in b.iter().enumerate().take(10) {
        value |= ((c & 0x7f) as usize) << (7 * i);
        if c & 0x80 == 0 {
            return Ok((value, &b[i + 1..]));
        }
    }
    bail!("a number that does not end")
}

/// A symbol name without the suffix ThinLTO gives a local it exports (`….llvm.123`): the
/// suffix hashes the module's code, which the instrumentation changes; the rest of the name
/// is the same in both builds (the symbol hash comes from the crate's metadata, which
/// `RUSTFLAGS` do not change, and from the instance).
fn unsuffixed(symbol: &str) -> &str {
    match symbol.split_once(".llvm.") {
        Some((name, n)) if n.bytes().all(|c| c.is_ascii_digit()) => name,
        _ => symbol,
    }
}

/// A legacy-mangled name without its hash (`…17h0123456789abcdefE` → `…`); other names as
/// they are. The hash covers more than the path (a change of the crate's code can change it),
/// so a function of a changed crate is found again by its path.
fn hashless(symbol: &str) -> &str {
    let n = symbol.len();
    let hashed = symbol.starts_with("_ZN")
        && n > 20
        && symbol.ends_with('E')
        && symbol.get(n - 20..n - 17) == Some("17h")
        && symbol
            .get(n - 17..n - 1)
            .is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
    if hashed { &symbol[..n - 20] } else { symbol }
}

/// How many symbols of one path a name without its hash may stand for: more means a generic
/// function's instances, of which a profile ran only some.
const SAME_PATH_MAX: usize = 4;

/// A binary's function symbols, found by a name from a profile or an older order file.
#[derive(Default)]
struct Symbols {
    /// By name without a ThinLTO suffix.
    by_name: HashMap<String, Vec<String>>,
    /// By name without a ThinLTO suffix and without its hash.
    by_path: HashMap<String, Vec<String>>,
}

impl Symbols {
    /// From the binary's symbol names.
    fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Symbols::default();
        for name in names {
            let same = out.by_name.entry(unsuffixed(name).to_string()).or_default();
            if same.iter().any(|n| n == name) {
                continue;
            }
            same.push(name.to_string());
            out.by_path
                .entry(hashless(unsuffixed(name)).to_string())
                .or_default()
                .push(name.to_string());
        }
        out
    }

    /// The binary's symbols for `name`: those of the same name (its ThinLTO suffix aside),
    /// else those of the same path when they are few (see [`hashless`]).
    fn for_name(&self, name: &str) -> &[String] {
        let name = unsuffixed(name);
        if let Some(same) = self.by_name.get(name) {
            return same;
        }
        match self.by_path.get(hashless(name)) {
            Some(same) if same.len() <= SAME_PATH_MAX => same,
            _ => &[],
        }
    }
}

/// The function symbols of the binary at `path` (`nm`).
fn symbols_of(path: &Path) -> Result<Symbols> {
    let listed = Command::new("nm")
        .args(["--defined-only", "--no-sort"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot run nm on {}", path.display()))?;
    if !listed.status.success() {
        bail!("nm {} failed ({})", path.display(), listed.status);
    }
    let text = String::from_utf8_lossy(&listed.stdout);
    Ok(Symbols::from_names(text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(_), Some("t" | "T" | "W" | "w"), Some(name)) => Some(name),
            _ => None,
        }
    })))
}

/// An order file's names as the binary has them now ([`Symbols::for_name`]): a name it still
/// has stays, one whose ThinLTO suffix or hash changed becomes the binary's names for it, and
/// one it no longer has goes; in the file's order, each name once.
fn renamed(file: &str, symbols: &Symbols) -> String {
    let mut seen = HashSet::new();
    let mut text = String::new();
    for line in file.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let now = symbols.for_name(line);
        let names: Vec<&String> = match now.iter().find(|n| *n == line) {
            Some(same) => vec![same],
            None => now.iter().collect(),
        };
        for n in names {
            if seen.insert(n.clone()) {
                text.push_str(n);
                text.push('\n');
            }
        }
    }
    text
}

/// A binary's order file: its symbols of the functions each kind of its processes ran, in
/// `stretches` (sets of kinds, as [`Layout::stretches`]), then those of the functions no listed
/// set matches; each stretch by name (stable from one generation to the next).
fn layout_file(stretches: &[u8], kinds: &Kinds, symbols: &Symbols) -> String {
    let mut by_stretch: Vec<Vec<&str>> = vec![Vec::new(); stretches.len() + 1];
    let all: HashSet<&String> = kinds.ran.iter().flatten().collect();
    for name in all {
        let ran_by = kinds
            .ran
            .iter()
            .enumerate()
            .filter(|(_, ran)| ran.contains(name))
            .fold(0u8, |set, (i, _)| set | 1 << i);
        let at = stretches
            .iter()
            .position(|&s| s == ran_by & stretches.iter().fold(0, |all, s| all | s))
            .unwrap_or(stretches.len());
        by_stretch[at].extend(symbols.for_name(name).iter().map(String::as_str));
    }
    let mut text = String::new();
    for mut names in by_stretch {
        names.sort_unstable();
        names.dedup();
        for n in names {
            text.push_str(n);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile rustc's LLVM wrote (xtask/tests/fixtures/entry-coverage.rs.txt: `foo` and
    /// `main` ran, `bar` did not).
    const PROFILE: &[u8] = include_bytes!("../tests/fixtures/entry-coverage.profraw");

    #[test]
    fn a_profile_names_the_functions_that_ran_and_not_those_that_did_not() {
        let ran = entered(PROFILE).unwrap();
        let has = |path: &str| ran.iter().any(|n| n.starts_with(path));
        assert!(has("_ZN1a3foo17h"), "{ran:?}");
        assert!(has("_ZN1a4main17h"), "{ran:?}");
        assert!(ran.iter().any(|n| n == "main"), "{ran:?}");
        assert!(!has("_ZN1a3bar17h"), "{ran:?}");
        // Local functions are named `file;symbol` in the profile: only the symbol is kept.
        assert!(ran.iter().all(|n| !n.contains(';')), "{ran:?}");
    }

    #[test]
    fn a_file_that_is_no_profile_is_an_error_not_a_panic() {
        assert!(entered(b"").is_err());
        assert!(entered(&[0u8; 200]).is_err());
        assert!(entered(&PROFILE[..150]).is_err());
        let mut wrong_version = PROFILE.to_vec();
        wrong_version[8] = 9;
        assert!(entered(&wrong_version).is_err());
    }

    #[test]
    fn a_fault_file_follows_a_function_whose_thinlto_suffix_changed() {
        let symbols =
            Symbols::from_names(["kept", "moved.llvm.22", "twice.llvm.3", "twice.llvm.4"]);
        let file = "moved.llvm.11\ngone.llvm.5\nkept\ntwice.llvm.3\nmoved.llvm.11\n";
        assert_eq!(
            renamed(file, &symbols),
            "moved.llvm.22\nkept\ntwice.llvm.3\n"
        );
    }

    #[test]
    fn a_function_whose_hash_changed_is_found_by_its_path_unless_it_has_many_instances() {
        let h = |n: u8| format!("_ZN1a3foo17h{:016x}E", n);
        let g = |n: u8| format!("_ZN1a3map17h{:016x}E", n);
        let names: Vec<String> = [h(2)].into_iter().chain((10..20).map(g)).collect();
        let symbols = Symbols::from_names(names.iter().map(String::as_str));
        assert_eq!(symbols.for_name(&h(1)), [h(2)]);
        assert_eq!(symbols.for_name(&format!("{}.llvm.7", h(1))), [h(2)]);
        // One instance of a generic function that ran is not every instance of it.
        assert!(symbols.for_name(&g(1)).is_empty());
        assert_eq!(symbols.for_name(&g(12)), [g(12)]);
        assert_eq!(hashless("_ZN1a3foo17hxyz"), "_ZN1a3foo17hxyz");
        assert_eq!(hashless("sqlite3_step"), "sqlite3_step");
    }

    #[test]
    fn only_a_thinlto_suffix_is_cut_from_a_name() {
        assert_eq!(
            unsuffixed("_ZN1a3foo17h0123456789abcdefE.llvm.8094397058065389549"),
            "_ZN1a3foo17h0123456789abcdefE"
        );
        assert_eq!(
            unsuffixed("_ZN1a3foo17h0123456789abcdefE"),
            "_ZN1a3foo17h0123456789abcdefE"
        );
        assert_eq!(unsuffixed("sqlite3.llvm.x"), "sqlite3.llvm.x");
    }

    #[test]
    fn an_in_process_team_and_a_team_of_workers_each_find_their_code_in_one_stretch() {
        let layout = &LAYOUTS[0];
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<HashSet<_>>();
        // What each kind of process ran: an in-process daemon, a daemon of workers, `run`,
        // another command (`agent-team mcp`).
        let kinds = Kinds {
            ran: vec![
                set(&["agents", "serve", "both_daemons", "everyone"]),
                set(&["serve", "both_daemons", "spawn", "everyone", "daemon_run"]),
                set(&["follow", "everyone", "daemon_run"]),
                set(&["mcp", "everyone"]),
            ],
            processes: vec![1; 4],
        };
        let names = [
            "agents",
            "serve",
            "both_daemons",
            "spawn",
            "everyone",
            "daemon_run",
            "follow",
            "mcp",
        ];
        let file = layout_file(layout.stretches, &kinds, &Symbols::from_names(names));
        let at: Vec<&str> = file.lines().collect();
        let stretch = |of: &[&str]| {
            let mut i: Vec<usize> = of
                .iter()
                .map(|n| at.iter().position(|a| a == n).unwrap())
                .collect();
            i.sort_unstable();
            i.windows(2).all(|w| w[1] == w[0] + 1)
        };
        // Each tree runs every function but the other tree's own one and the MCP server's.
        let but = |no: &str| -> Vec<&str> {
            names
                .iter()
                .copied()
                .filter(|n| *n != no && *n != "mcp")
                .collect()
        };
        let (in_process, workers) = (but("spawn"), but("agents"));
        assert!(stretch(&in_process), "{at:?}");
        assert!(stretch(&workers), "{at:?}");
        assert_eq!(at.last(), Some(&"mcp"), "{at:?}");
        // Which kind a process is, by the functions it entered.
        let entered = |names: &[&str]| {
            layout.kind_of(&names.iter().map(|n| format!("_ZN{n}17h0E")).collect())
        };
        assert_eq!(
            entered(&[
                "17agent_team_daemon4conn5serve",
                "17agent_team_worker9run_agent"
            ]),
            0
        );
        assert_eq!(entered(&["17agent_team_daemon4conn5serve"]), 1);
        assert_eq!(entered(&["10agent_team3cmd2up8run_goal"]), 2);
        assert_eq!(entered(&["10agent_team3cmd3mcp"]), 3);
    }

    #[test]
    fn a_kind_of_process_no_profile_was_of_fails_the_pass() {
        let ran = |agent_team: Vec<usize>| Ran {
            by_layout: LAYOUTS
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let mut kinds = Kinds::new(l.kinds.len());
                    match i {
                        0 => kinds.processes = agent_team.clone(),
                        _ => kinds.processes.fill(1),
                    }
                    kinds
                })
                .collect(),
            skipped: 0,
        };
        assert!(unfound_kinds(&ran(vec![1, 1, 1, 0])).is_ok());
        let err = unfound_kinds(&ran(vec![1, 1, 0, 3]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("run (agent-team: agent_team3cmd2up8run_goal)"),
            "{err}"
        );
        assert!(!err.contains("daemon"), "{err}");
    }

    #[test]
    fn each_kind_of_process_finds_the_functions_it_ran_in_one_stretch() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        let kinds = Kinds {
            ran: vec![set(&["both", "first", "gone"]), set(&["both", "second"])],
            processes: vec![1, 1],
        };
        let symbols = Symbols::from_names(["first", "both.llvm.1", "both", "second", "unrun"]);
        assert_eq!(
            layout_file(&[0b01, 0b11, 0b10], &kinds, &symbols),
            "first\nboth\nboth.llvm.1\nsecond\n"
        );
    }
}
