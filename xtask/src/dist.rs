//! `cargo xtask dist [--profile release|dev] [--check]`: the release archives.
//!
//! For the host's target triple it writes, in target/dist/ (target/dist/dev/ for `--profile dev`):
//! - `agent-team-VERSION-TRIPLE.tar.gz`: one dir laid out as an install prefix ([`contents`]):
//!   the three binaries stripped (`bin/`), the man page and a completion script for every shell
//!   (`share/`, where each shell looks under a prefix), README and licenses
//!   (`share/doc/agent-team/`). `tar -xzf A --strip-components=1 -C ~/.local` installs it.
//! - `agent-team-VERSION-TRIPLE-debug.tar.gz`: the same dir holding only `bin/BIN.debug`, each
//!   binary's debug info (`objcopy --only-keep-debug`), which each stripped binary names in its
//!   `.gnu_debuglink`. A separate archive, so the one `cargo binstall` and people download stays
//!   small; unpacked into the same prefix it puts each `.debug` file beside its binary, where
//!   gdb and Rust's backtraces look for it.
//! - `SHA256SUMS`: every archive of this version in the dir (`sha256sum -c` reads it).
//!
//! The release profile first builds through `cargo xtask dist`'s link order
//! ([`crate::link_order::dist`]); `--profile dev` packs the debug binaries CI has already built
//! (seconds, no release build). `--check` then installs the archives into an empty prefix and
//! runs what a new user would: `--version`, `completions bash`, `run --demo` offline, with only
//! that prefix's bin/ and /usr/bin:/bin on PATH. `cargo xtask ci` runs `dist --profile dev --check`.

use anyhow::{Context, Result, bail};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binaries an archive holds (the CLI package's, as `cargo xtask dist` links them).
const BINS: [&str; 3] = crate::link_order::BINS;

/// Every shell `agent-team completions` writes a script for.
const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "elvish", "powershell"];

/// The files of the repository copied into the archive as they are.
const DOCS: [&str; 3] = ["README.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// How long the installed demo may take before the check gives up on it.
const DEMO_DEADLINE: Duration = Duration::from_secs(180);

/// Which build an archive is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// The release build, linked in the committed link order (what is published).
    Release,
    /// The debug build `cargo xtask ci` already has: the archive-and-install check in seconds.
    Dev,
}

/// One file of an archive, by what it is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// A binary, stripped, naming its debug file in `.gnu_debuglink`.
    Binary(&'static str),
    /// A binary's debug info (the debug archive).
    Debug(&'static str),
    /// `agent-team completions SHELL`.
    Completion(&'static str),
    /// `agent-team man`.
    Man,
    /// A file of the repository, as it is.
    Doc(&'static str),
}

/// Where a shell's completion script goes under an install prefix.
fn completion_path(shell: &str) -> String {
    match shell {
        "bash" => "share/bash-completion/completions/agent-team".into(),
        "zsh" => "share/zsh/site-functions/_agent-team".into(),
        "fish" => "share/fish/vendor_completions.d/agent-team.fish".into(),
        "elvish" => "share/elvish/lib/agent-team.elv".into(),
        other => format!("share/{other}/agent-team.ps1"),
    }
}

/// The main archive's files, relative to its top dir, each with what it is made from.
pub(crate) fn contents() -> Vec<(String, Part)> {
    let mut files: Vec<(String, Part)> = BINS
        .iter()
        .map(|b| (format!("bin/{b}"), Part::Binary(b)))
        .collect();
    files.extend(
        SHELLS
            .iter()
            .map(|s| (completion_path(s), Part::Completion(s))),
    );
    files.push(("share/man/man1/agent-team.1".into(), Part::Man));
    files.extend(
        DOCS.iter()
            .map(|d| (format!("share/doc/agent-team/{d}"), Part::Doc(d))),
    );
    files
}

/// The debug archive's files, relative to the same top dir: each binary's debug file beside it.
pub(crate) fn debug_contents() -> Vec<(String, Part)> {
    BINS.iter()
        .map(|b| (format!("bin/{b}.debug"), Part::Debug(b)))
        .collect()
}

/// The archives' top dir (and, with `.tar.gz`, the main archive's name); binstall's pkg-url and
/// bin-dir in crates/cli/Cargo.toml spell the same.
pub(crate) fn archive_dir(version: &str, triple: &str) -> String {
    format!("agent-team-{version}-{triple}")
}

/// The CLI package as `cargo metadata` describes it (it may be renamed; its binaries are not).
pub(crate) struct CliPackage {
    /// Its version, the archive's.
    pub(crate) version: String,
    /// Its repository URL (binstall's `{ repo }`).
    pub(crate) repository: String,
    /// `[package.metadata.binstall]`, as JSON.
    pub(crate) binstall: serde_json::Value,
}

/// The workspace package that builds the `agent-team` binary.
pub(crate) fn cli_package(root: &Path) -> Result<CliPackage> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let empty = Vec::new();
    let packages = meta["packages"].as_array().unwrap_or(&empty);
    let cli = packages
        .iter()
        .find(|p| {
            p["targets"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    t["name"] == "agent-team"
                        && t["kind"]
                            .as_array()
                            .is_some_and(|k| k.iter().any(|k| k == "bin"))
                })
            })
        })
        .context("no workspace package builds the agent-team binary")?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Ok(CliPackage {
        version: text(&cli["version"]),
        repository: text(&cli["repository"]),
        binstall: cli["metadata"]["binstall"].clone(),
    })
}

/// Fails unless `[package.metadata.binstall]` names the archive `pack` makes for `version`
/// and `target` (at the release tagged `vVERSION`) and each binary's path in it.
pub(crate) fn check_binstall(cli: &CliPackage, version: &str, target: &str) -> Result<()> {
    let meta = &cli.binstall;
    let field = |k: &str| {
        meta[k]
            .as_str()
            .with_context(|| format!("the CLI's [package.metadata.binstall] has no {k}"))
    };
    let fill = |template: &str, bin: &str| {
        template
            .replace("{ repo }", &cli.repository)
            .replace("{ version }", version)
            .replace("{ target }", target)
            .replace("{ bin }", bin)
            .replace("{ binary-ext }", "")
    };
    if field("pkg-fmt")? != "tgz" {
        bail!("the CLI's [package.metadata.binstall] pkg-fmt is not tgz");
    }
    let top = archive_dir(version, target);
    let (url, want) = (
        fill(field("pkg-url")?, ""),
        format!(
            "{}/releases/download/v{version}/{top}.tar.gz",
            cli.repository
        ),
    );
    if url != want {
        bail!("binstall's pkg-url gives {url}, not the archive {want}");
    }
    for (rel, part) in contents() {
        if let Part::Binary(bin) = part {
            let (dir, want) = (fill(field("bin-dir")?, bin), format!("{top}/{rel}"));
            if dir != want {
                bail!("binstall's bin-dir gives {dir}, not the binary's {want}");
            }
        }
    }
    Ok(())
}

/// The host's target triple (`rustc -vV`), the one cargo builds for here.
fn host_triple() -> Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// `cargo xtask dist [--profile release|dev] [--check]`.
pub(crate) fn dist(root: &Path, args: &[String]) -> Result<()> {
    let mut profile = Profile::Release;
    let mut check = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--profile" => {
                profile = match args.next().map(String::as_str) {
                    Some("release") => Profile::Release,
                    Some("dev") => Profile::Dev,
                    other => bail!("--profile takes release or dev, not {other:?}"),
                }
            }
            other => bail!(
                "unknown argument {other:?}: cargo xtask dist [--profile release|dev] [--check]"
            ),
        }
    }
    if profile == Profile::Dev {
        // The very build `cargo xtask ci` makes before its tests (the same packages, so the
        // same features); `ci` itself calls [`run`] after it.
        crate::cargo(root, &["build", "--workspace", "--bins"], &[])?;
    }
    run(root, profile, check)
}

/// Packs the archives (release: built first, in the link order; dev: of the debug binaries as
/// they are) and, with `check`, installs and tries them.
pub(crate) fn run(root: &Path, profile: Profile, check: bool) -> Result<()> {
    let started = Instant::now();
    let target = crate::target_dir(root);
    let bins = match profile {
        Profile::Release => {
            crate::link_order::dist(root)?;
            target.join("release")
        }
        Profile::Dev => target.join("debug"),
    };
    let out = match profile {
        Profile::Release => target.join("dist"),
        Profile::Dev => target.join("dist").join("dev"),
    };
    let cli = cli_package(root)?;
    let triple = host_triple()?;
    check_binstall(&cli, &cli.version, &triple)?;
    // What is published packs tightest; the dev archives exist to be checked: the fastest level
    // packs the debug build's ~230 MB in 5 s, not 19 s (the default level, 2026-11-28).
    let level = match profile {
        Profile::Release => flate2::Compression::best(),
        Profile::Dev => flate2::Compression::fast(),
    };
    let archives = pack(root, &bins, &out, &cli.version, &triple, level)?;
    let mib = |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    eprintln!(
        "xtask: dist: {} ({:.1} MiB) and {} ({:.1} MiB) in {:.1} s",
        archives.main.display(),
        mib(&archives.main),
        archives.debug.display(),
        mib(&archives.debug),
        started.elapsed().as_secs_f64()
    );
    if check {
        let started = Instant::now();
        check_install(&out, &archives, &cli.version)?;
        eprintln!(
            "xtask: dist --check: installed into an empty prefix, ran --version, completions and the demo in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The two archives of one target.
pub(crate) struct Archives {
    /// The binaries, completions, man page and docs.
    main: PathBuf,
    /// The debug files.
    debug: PathBuf,
}

/// Stages both archives' dirs from the binaries in `bins`, packs them into `out` and writes
/// `out/SHA256SUMS`.
fn pack(
    root: &Path,
    bins: &Path,
    out: &Path,
    version: &str,
    triple: &str,
    level: flate2::Compression,
) -> Result<Archives> {
    let top = archive_dir(version, triple);
    let stage = out.join("stage");
    let (main_dir, debug_dir) = (stage.join("main"), stage.join("debug"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    // Debug files first: each stripped binary's debuglink carries its debug file's CRC.
    for (rel, part) in debug_contents().into_iter().chain(contents()) {
        let base = if matches!(part, Part::Debug(_)) {
            &debug_dir
        } else {
            &main_dir
        };
        let dest = base.join(&top).join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        make(root, bins, &debug_dir.join(&top), &part, &dest)
            .with_context(|| format!("cannot make {rel} of the archive"))?;
    }
    let archives = Archives {
        main: out.join(format!("{top}.tar.gz")),
        debug: out.join(format!("{top}-debug.tar.gz")),
    };
    let epoch = source_date_epoch(root);
    tar_gz(&main_dir, &top, &archives.main, epoch, level)?;
    tar_gz(&debug_dir, &top, &archives.debug, epoch, level)?;
    std::fs::remove_dir_all(&stage)
        .with_context(|| format!("cannot remove {}", stage.display()))?;
    write_sums(out, &format!("agent-team-{version}-"))?;
    Ok(archives)
}

/// Writes one file of an archive at `dest`.
fn make(root: &Path, bins: &Path, debug_top: &Path, part: &Part, dest: &Path) -> Result<()> {
    let agent_team = bins.join("agent-team");
    match part {
        Part::Debug(bin) => {
            objcopy(&["--only-keep-debug"], &bins.join(bin), dest)?;
            set_mode(dest, 0o644)
        }
        Part::Binary(bin) => {
            let link = debug_top.join("bin").join(format!("{bin}.debug"));
            let link = format!("--add-gnu-debuglink={}", link.display());
            objcopy(&["--strip-all", &link], &bins.join(bin), dest)?;
            set_mode(dest, 0o755)
        }
        Part::Completion(shell) => write_output(&agent_team, &["completions", shell], dest),
        Part::Man => write_output(&agent_team, &["man"], dest),
        Part::Doc(file) => std::fs::copy(root.join(file), dest)
            .map(drop)
            .with_context(|| format!("cannot copy {file}")),
    }
}

/// `objcopy FLAGS SRC DEST`.
fn objcopy(flags: &[&str], src: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("objcopy")
        .args(flags)
        .arg(src)
        .arg(dest)
        .status()
        .context("cannot run objcopy (binutils)")?;
    if !status.success() {
        bail!(
            "objcopy {} {} failed ({status})",
            flags.join(" "),
            src.display()
        );
    }
    Ok(())
}

/// A file's permission bits.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// What `exe ARGS` prints, written to `dest`.
fn write_output(exe: &Path, args: &[&str], dest: &Path) -> Result<()> {
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {} {}", exe.display(), args.join(" ")))?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "{} {} failed ({}) or printed nothing",
            exe.display(),
            args.join(" "),
            out.status
        );
    }
    std::fs::write(dest, &out.stdout).with_context(|| format!("cannot write {}", dest.display()))
}

/// The time every archived file is dated: `SOURCE_DATE_EPOCH`, else the last commit's, so
/// the same commit packs the same bytes.
fn source_date_epoch(root: &Path) -> u64 {
    if let Some(s) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    Command::new("git")
        .current_dir(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// `dir/top` as a gzipped tar at `archive`: names sorted, owner root, one date, so the bytes
/// depend on the files alone.
fn tar_gz(
    dir: &Path,
    top: &str,
    archive: &Path,
    epoch: u64,
    level: flate2::Compression,
) -> Result<()> {
    let mut child = Command::new("tar")
        .current_dir(dir)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
            &format!("--mtime=@{epoch}"),
            "-cf",
            "-",
            top,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let file = std::fs::File::create(archive)
        .with_context(|| format!("cannot create {}", archive.display()))?;
    let mut gz = flate2::GzBuilder::new().write(file, level);
    let copied = match child.stdout.take() {
        Some(mut stdout) => std::io::copy(&mut stdout, &mut gz).map(drop),
        None => Ok(()),
    };
    let status = child.wait().context("cannot wait for tar")?;
    copied.with_context(|| format!("cannot write {}", archive.display()))?;
    if !status.success() {
        bail!("tar of {} failed ({status})", dir.join(top).display());
    }
    gz.finish()
        .and_then(|mut f| f.flush())
        .with_context(|| format!("cannot write {}", archive.display()))
}

/// A file's SHA-256, in hex.
fn sha256_hex(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `out/SHA256SUMS`: a `sha256sum` line for every `PREFIX*.tar.gz` in `out`, by name.
fn write_sums(out: &Path, prefix: &str) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".tar.gz"))
        .collect();
    names.sort();
    let mut sums = String::new();
    for name in names {
        sums.push_str(&format!("{}  {name}\n", sha256_hex(&out.join(&name))?));
    }
    let file = out.join("SHA256SUMS");
    std::fs::write(&file, sums).with_context(|| format!("cannot write {}", file.display()))
}

/// Installs both archives into an empty prefix and runs what a new user would, with nothing
/// of this environment but /usr/bin:/bin: the sums hold, the prefix holds exactly the listed
/// files, the binaries are stripped and name their debug files, `--version`, `completions
/// bash` and the offline demo work.
fn check_install(out: &Path, archives: &Archives, version: &str) -> Result<()> {
    let status = Command::new("sha256sum")
        .current_dir(out)
        .args(["--check", "--quiet", "--ignore-missing", "SHA256SUMS"])
        .status()
        .context("cannot run sha256sum")?;
    if !status.success() {
        bail!("{}/SHA256SUMS does not match the archives", out.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix("at-dist-")
        .tempdir()
        .context("cannot make a temp dir")?;
    let prefix = tmp.path().join("prefix");
    std::fs::create_dir(&prefix).context("cannot make the prefix")?;
    for archive in [&archives.main, &archives.debug] {
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .args(["--strip-components=1", "-C"])
            .arg(&prefix)
            .status()
            .context("cannot run tar")?;
        if !status.success() {
            bail!("cannot unpack {} ({status})", archive.display());
        }
    }
    check_files(&prefix)?;
    for bin in BINS {
        check_stripped(&prefix.join("bin").join(bin))?;
    }
    let user = NewUser::new(tmp.path(), &prefix)?;
    let v = user.ok(&["--version"])?;
    if !v.contains(version) {
        bail!("agent-team --version says {v:?}, not version {version}");
    }
    let bash = user.ok(&["completions", "bash"])?;
    eprintln!("xtask: dist --check: agent-team completions bash | head -3:");
    for line in bash.lines().take(3) {
        eprintln!("    {line}");
    }
    if !bash.contains("agent-team") {
        bail!("agent-team completions bash printed no completion for agent-team");
    }
    user.demo()
}

/// Fails unless `prefix` holds exactly the files of both archives.
fn check_files(prefix: &Path) -> Result<()> {
    let mut want: Vec<String> = contents()
        .into_iter()
        .chain(debug_contents())
        .map(|(rel, _)| rel)
        .collect();
    want.sort();
    let mut have = Vec::new();
    let mut dirs = vec![prefix.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(prefix) {
                have.push(rel.display().to_string());
            }
        }
    }
    have.sort();
    if have != want {
        bail!("the installed prefix holds {have:?}, not {want:?}");
    }
    Ok(())
}

/// Fails unless `bin` has no symbol table and no debug info (`.debug_gdb_scripts`, loaded at
/// run time, stays), and names `BIN.debug` beside it.
fn check_stripped(bin: &Path) -> Result<()> {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(bin)
        .output()
        .context("cannot run readelf")?;
    let sections = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = sections.lines().find(|l| {
        [" .symtab ", " .debug_info ", " .debug_line "]
            .iter()
            .any(|s| l.contains(s))
    }) {
        bail!("{} is not stripped: {}", bin.display(), line.trim());
    }
    let link = Command::new("readelf")
        .args(["-p", ".gnu_debuglink"])
        .arg(bin)
        .output()
        .context("cannot run readelf")?;
    let name = format!(
        "{}.debug",
        bin.file_name().unwrap_or_default().to_string_lossy()
    );
    if !String::from_utf8_lossy(&link.stdout).contains(&name) {
        bail!("{} does not name {name} in .gnu_debuglink", bin.display());
    }
    if !bin.with_file_name(&name).is_file() {
        bail!("{name} is not beside {}", bin.display());
    }
    Ok(())
}

/// A user with a fresh home whose PATH is the prefix's bin/ and /usr/bin:/bin.
struct NewUser {
    /// The prefix's bin/.
    bin: PathBuf,
    /// HOME, XDG_RUNTIME_DIR, TMPDIR and the working dir, under the temp dir.
    home: PathBuf,
    runtime: PathBuf,
    tmp: PathBuf,
    work: PathBuf,
}

impl NewUser {
    /// Makes the user's dirs under `dir`.
    fn new(dir: &Path, prefix: &Path) -> Result<Self> {
        let user = NewUser {
            bin: prefix.join("bin"),
            home: dir.join("home"),
            runtime: dir.join("run"),
            tmp: dir.join("tmp"),
            work: dir.join("work"),
        };
        for d in [&user.home, &user.runtime, &user.tmp, &user.work] {
            std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        set_mode(&user.runtime, 0o700)?;
        Ok(user)
    }

    /// `agent-team ARGS` in the user's environment and nothing else.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("agent-team"));
        c.env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("TMPDIR", &self.tmp)
            .current_dir(&self.work)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// What `agent-team ARGS` prints; fails if it fails.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(args)
            .output()
            .with_context(|| format!("cannot run the installed agent-team {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "the installed agent-team {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `agent-team run --demo` (no tmux, every approval given, no terminal), within
    /// [`DEMO_DEADLINE`]: it succeeds and its report is where it says.
    fn demo(&self) -> Result<()> {
        let args = ["run", "--demo", "--backend", "process", "--approve-all"];
        let log = self.tmp.join("demo.log");
        let file = std::fs::File::create(&log).context("cannot create the demo's log")?;
        let mut child = self
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("cannot run the installed agent-team run --demo")?;
        let deadline = Instant::now() + DEMO_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().context("cannot wait for the demo")? {
                break status;
            }
            if Instant::now() > deadline {
                // Ours, by its own handle.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the installed demo did not finish in {DEMO_DEADLINE:?}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            bail!("the installed agent-team run --demo failed ({status}): {err}");
        }
        let report = err
            .lines()
            .find_map(|l| l.split("the demo's report is ").nth(1))
            .map(|p| PathBuf::from(p.trim()))
            .with_context(|| format!("the demo did not say where its report is: {err}"))?;
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        if !report.starts_with(&self.home) || !text.starts_with("# Word report") {
            bail!(
                "the demo's report {} is not a word report in the new home: {err}",
                report.display()
            );
        }
        eprintln!(
            "xtask: dist --check: the installed demo finished; its report is {}",
            report.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_an_install_prefix_of_stripped_binaries_completions_man_and_docs() {
        let files: Vec<String> = contents().into_iter().map(|(rel, _)| rel).collect();
        assert_eq!(
            files,
            [
                "bin/agent-team",
                "bin/agent-team-worker",
                "bin/agent-team-bridge",
                "share/bash-completion/completions/agent-team",
                "share/zsh/site-functions/_agent-team",
                "share/fish/vendor_completions.d/agent-team.fish",
                "share/elvish/lib/agent-team.elv",
                "share/powershell/agent-team.ps1",
                "share/man/man1/agent-team.1",
                "share/doc/agent-team/README.md",
                "share/doc/agent-team/LICENSE-MIT",
                "share/doc/agent-team/LICENSE-APACHE",
            ]
        );
        let debug: Vec<String> = debug_contents().into_iter().map(|(rel, _)| rel).collect();
        assert_eq!(
            debug,
            [
                "bin/agent-team.debug",
                "bin/agent-team-worker.debug",
                "bin/agent-team-bridge.debug",
            ]
        );
        // Every binary is stripped into the main archive and its debug info goes to the other.
        for bin in BINS {
            assert!(contents().contains(&(format!("bin/{bin}"), Part::Binary(bin))));
            assert!(!contents().iter().any(|(_, p)| *p == Part::Debug(bin)));
        }
        // The repository files it copies exist.
        for doc in DOCS {
            assert!(crate::root().join(doc).is_file(), "{doc}");
        }
    }

    #[test]
    fn binstall_metadata_names_the_archive_and_its_binaries() {
        let mut cli = cli_package(&crate::root()).unwrap();
        check_binstall(&cli, "1.2.3", "x86_64-unknown-linux-gnu").unwrap();
        // A layout binstall would not find is refused.
        cli.binstall["bin-dir"] = "agent-team-{ version }-{ target }/{ bin }{ binary-ext }".into();
        let err = check_binstall(&cli, "1.2.3", "x86_64-unknown-linux-gnu").unwrap_err();
        assert!(err.to_string().contains("bin/agent-team"), "{err}");
    }

    #[test]
    fn sums_are_sha256sum_lines_of_this_versions_archives() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent-team-1.0.0-t.tar.gz"), "abc").unwrap();
        std::fs::write(dir.path().join("agent-team-0.9.0-t.tar.gz"), "old").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        write_sums(dir.path(), "agent-team-1.0.0-").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  agent-team-1.0.0-t.tar.gz\n"
        );
    }
}
