//! `cargo xtask order`: writes crates/cli/link-order/BIN.txt, the order in which the linker
//! lays out each of our binaries' functions: those a team run calls, together, so that a
//! process maps the few megabytes of code it runs instead of the pages around every function
//! it calls, spread over the whole binary (the kernel maps up to 64 KiB around each page a
//! process faults in; docs/BENCHMARKS.md, "Functions in the order they run").
//!
//! How: the binaries are built once more with LLVM's function-entry coverage
//! (`-Cprofile-generate`, one byte per function, cleared when it first runs), the bench's peer
//! and clis sections run with them, and every process writes which functions it entered (a
//! `.profraw` file, read here). Each binary's file names its release symbols of those
//! functions (`Layout`). Then the fault passes (xtask/src/order_faults.rs) add what the
//! profile missed. `crates/cli/build.rs` hands the files to the linker.

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
/// the last profiles; with `--faults`, only runs the fault passes on the files as they are.
pub fn order(root: &Path, args: &[String]) -> Result<()> {
    let target = crate::target_dir(root);
    let instrumented_dir = target.join("order");
    let profiles = instrumented_dir.join("profiles");
    let release = target.join("release");
    match args.first().map(String::as_str) {
        None => {}
        Some("--from-profiles") => return write_layouts(root, &profiles, &release),
        Some("--faults") => {
            return crate::order_faults::fault_passes(
                root,
                &release,
                &instrumented_dir,
                FAULT_PASSES,
            );
        }
        Some(other) => {
            bail!("cargo xtask order: unknown argument {other} (--from-profiles, --faults)")
        }
    }
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles)
        .with_context(|| format!("cannot create {}", profiles.display()))?;
    let flags = format!(
        "-Cprofile-generate={} -Cllvm-args=-pgo-function-entry-coverage",
        profiles.display()
    );
    let instrumented_target = instrumented_dir.display().to_string();
    // No `--target`: with it cargo gives each crate other metadata, so other symbol hashes
    // than the release build's. So the build scripts are instrumented too: what they wrote
    // while building is dropped.
    crate::cargo(
        root,
        &["build", "--release", "--bins", "-p", "agent-team-cli"],
        &[
            ("RUSTFLAGS", &flags),
            ("CARGO_TARGET_DIR", &instrumented_target),
        ],
    )?;
    crate::build_release(root)?;
    let instrumented = instrumented_dir.join("release");
    std::fs::remove_dir_all(&profiles)
        .and_then(|()| std::fs::create_dir_all(&profiles))
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
    write_layouts(root, &profiles, &release)?;
    // The fault passes start from the profile's files alone.
    for layout in &LAYOUTS {
        let faults = root
            .join("crates")
            .join("cli")
            .join("link-order")
            .join(format!("{}.faults.txt", layout.bin));
        let _ = std::fs::remove_file(faults);
    }
    crate::order_faults::fault_passes(root, &release, &instrumented_dir, FAULT_PASSES)
}

/// How many times the fault pass runs at most (each finds the next function of each folio).
const FAULT_PASSES: usize = 3;

/// `cargo xtask order --from-profiles`: the BIN.txt files written anew from the profiles of
/// the last `cargo xtask order` and the release binaries as they are (no build, no bench); the
/// fault passes' BIN.faults.txt keep their functions, under the names the binaries give them
/// now (a change of code renames ThinLTO's locals: [`renamed`]).
pub fn write_layouts(root: &Path, profiles: &Path, release: &Path) -> Result<()> {
    let ran = functions_run(profiles)?;
    let dir = root.join("crates").join("cli").join("link-order");
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
        let text = layout_file(kinds, &symbols);
        let out = dir.join(format!("{}.txt", layout.bin));
        std::fs::write(&out, &text).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "xtask: wrote {} ({} symbols; processes: {} {}, {} other)",
            out.display(),
            text.lines().count(),
            kinds.processes[0],
            layout.first_kind,
            kinds.processes[1]
        );
    }
    if ran.skipped > 0 {
        eprintln!("xtask: {} profiles could not be read", ran.skipped);
    }
    Ok(())
}

/// How one binary's functions are laid out. Its processes are of two kinds, told apart by a
/// function only the first kind enters: the functions only the first kind ran come first, then
/// those both ran, then those only the second ran, so that each kind's lie in one stretch.
struct Layout {
    bin: &'static str,
    /// The prefix of the binary's `main` symbol: which binary a profile is of.
    main: &'static str,
    /// A part of a symbol name only the first kind of process enters.
    first: &'static str,
    /// What the first kind is (for the message).
    first_kind: &'static str,
}

/// Our binaries' layouts.
const LAYOUTS: [Layout; 3] = [
    Layout {
        bin: "agent-team",
        main: "_ZN10agent_team4main17h",
        first: "agent_team_daemon4conn5serve",
        first_kind: "daemon",
    },
    Layout {
        bin: "agent-team-worker",
        main: "_ZN17agent_team_worker4main17h",
        first: "CliAdapter",
        first_kind: "agent CLI's worker",
    },
    Layout {
        bin: "agent-team-bridge",
        main: "_ZN17agent_team_bridge4main17h",
        first: "",
        first_kind: "bridge",
    },
];

/// The functions each kind of a binary's processes entered (by symbol name without a ThinLTO
/// suffix), and how many processes of each kind there were.
#[derive(Default)]
struct Kinds {
    ran: [HashSet<String>; 2],
    processes: [usize; 2],
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
        by_layout: LAYOUTS.iter().map(|_| Kinds::default()).collect(),
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
        let kind = usize::from(!names.iter().any(|n| n.contains(LAYOUTS[at].first)));
        let kinds = &mut ran.by_layout[at];
        kinds.processes[kind] += 1;
        kinds.ran[kind].extend(names);
    }
    if ran.by_layout.iter().all(|k| k.processes == [0, 0]) {
        bail!("no profile of our binaries was found in {}", dir.display());
    }
    Ok(ran)
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

/// A binary's order file: its symbols of the functions only the first kind of its processes
/// ran, then of those both ran, then of those only the second ran; each group by name (stable
/// from one generation to the next).
fn layout_file(kinds: &Kinds, symbols: &Symbols) -> String {
    let [first, second] = &kinds.ran;
    let groups = [
        first.difference(second).collect::<Vec<_>>(),
        first.intersection(second).collect(),
        second.difference(first).collect(),
    ];
    let mut text = String::new();
    for group in groups {
        let mut names: Vec<&str> = group
            .iter()
            .flat_map(|n| symbols.for_name(n))
            .map(String::as_str)
            .collect();
        names.sort_unstable();
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
    fn each_kind_of_process_finds_the_functions_it_ran_in_one_stretch() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        let kinds = Kinds {
            ran: [set(&["both", "first", "gone"]), set(&["both", "second"])],
            processes: [1, 1],
        };
        let symbols = Symbols::from_names(["first", "both.llvm.1", "both", "second", "unrun"]);
        assert_eq!(
            layout_file(&kinds, &symbols),
            "first\nboth\nboth.llvm.1\nsecond\n"
        );
    }
}
