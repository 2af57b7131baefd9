//! `cargo xtask invariants`: the ARCHITECTURE.md invariants a grep can check, each printed with
//! what it checks and, on failure, every offending file:line. `cargo xtask ci` runs them first.
//!
//! Production code is a crate's `src/` without its test files (`tests.rs`, `*_tests.rs`) and
//! without the items under a column-0 `#[cfg(test)]`; comment lines are not code.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every package of the workspace by its short name (`agent-team-` dropped), its layer, and
/// the agent-team crates its Cargo.toml may name (dependencies of every kind). A crate depends
/// only on crates of lower layers: layer 0 knows no crate of ours, the tools (7, 8) sit on top.
/// A new arrow is a decision: add it here and to ARCHITECTURE.md's code map.
pub(crate) const LAYERS: &[(&str, u8, &[&str])] = &[
    ("perms", 0, &[]),
    ("backoff", 0, &[]),
    ("egress", 0, &[]),
    ("pane", 1, &["perms"]),
    ("sandbox", 0, &[]),
    ("tools", 0, &[]),
    ("protocol", 1, &["perms"]),
    ("model", 1, &["backoff"]),
    ("paths", 2, &["protocol"]),
    ("http", 2, &["protocol"]),
    ("worktree", 2, &["protocol"]),
    ("state", 2, &["protocol", "perms"]),
    ("config", 2, &["protocol", "perms", "tools"]),
    ("mockmodel", 2, &["model"]),
    ("telemetry", 2, &["protocol"]),
    ("store", 3, &["protocol", "state"]),
    ("client", 3, &["protocol", "paths", "backoff"]),
    ("remote", 3, &["pane", "worktree"]),
    ("gateway", 3, &["mockmodel"]),
    (
        "worker",
        4,
        &[
            "protocol",
            "client",
            "config",
            "pane",
            "model",
            "tools",
            "backoff",
            "paths",
            "sandbox",
            "mockmodel",
        ],
    ),
    (
        "daemon",
        4,
        &[
            "protocol",
            "paths",
            "state",
            "store",
            "backoff",
            "config",
            "pane",
            "sandbox",
            "worktree",
            "remote",
            "client",
            "egress",
            "telemetry",
            "gateway",
        ],
    ),
    (
        "mcp",
        5,
        &["protocol", "config", "tools", "worker", "paths", "pane"],
    ),
    (
        "cli",
        6,
        &[
            "protocol", "paths", "sandbox", "worktree", "remote", "client", "backoff", "daemon",
            "store", "state", "config", "pane", "worker", "http", "mcp",
        ],
    ),
    (
        "e2e",
        7,
        &[
            "protocol",
            "paths",
            "config",
            "client",
            "store",
            "mockmodel",
            "pane",
            "remote",
            "egress",
            "worker",
            "telemetry",
        ],
    ),
    ("xtask", 7, &["mockmodel", "protocol"]),
    (
        "bench",
        8,
        &[
            "protocol",
            "paths",
            "client",
            "state",
            "store",
            "config",
            "pane",
            "mockmodel",
            "worker",
            "sandbox",
            "worktree",
            "egress",
            "e2e",
            "telemetry",
            "gateway",
        ],
    ),
];

/// Outside libraries that are one crate's edge to the world, and the crates that may name them.
const OWNERS: &[(&str, &[&str])] = &[
    ("rusqlite", &["store"]),
    ("tmux_interface", &["pane"]),
    ("landlock", &["sandbox"]),
    ("rmcp", &["mcp"]),
    ("hyper", &["http"]),
    ("hyper-util", &["http"]),
    ("ratatui", &["cli"]),
    (
        "reqwest",
        &["model", "worker", "daemon", "e2e", "bench", "gateway"],
    ),
];

/// Crates with no I/O and no clock, and what their production code may not name.
const PURE: &[(&str, &[&str])] = &[
    ("state", PURE_BANNED),
    ("perms", PURE_BANNED),
    ("tools", PURE_BANNED),
    // The protocol's async framing is tokio's, behind a feature; it still reads no clock.
    (
        "protocol",
        &[
            "std::fs",
            "std::net",
            "std::process",
            "SystemTime::now",
            "Instant::now",
        ],
    ),
];

const PURE_BANNED: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "tokio",
    "SystemTime::now",
    "Instant::now",
];

/// Programs only one crate starts (in production code; tests and the bench aside).
const PROGRAMS: &[(&str, &str)] = &[
    ("Command::new(\"tmux\")", "pane"),
    ("Command::new(\"osascript\")", "pane"),
    ("Command::new(\"git\")", "worktree"),
];

/// One failed line: where, and what was found there.
struct Finding {
    at: String,
    what: String,
}

/// Runs every check, prints each with its outcome, and fails if any found something.
pub(crate) fn invariants(root: &Path) -> Result<()> {
    let sources = Sources::read(root)?;
    let manifests = manifests(root)?;
    let checks: Vec<(&str, Vec<Finding>)> = vec![
        (
            "no crate depends upwards: each Cargo.toml names only the agent-team crates of its row in xtask/src/invariants.rs LAYERS, all of lower layers",
            layering(&manifests),
        ),
        (
            "each outside edge has its owners (rusqlite: store, tmux_interface: pane, landlock: sandbox, rmcp: mcp, hyper: http, ratatui: cli, reqwest: model, worker, daemon, e2e, bench, gateway)",
            owners(&manifests),
        ),
        (
            "rmcp is used only in crates/mcp (no `rmcp::` elsewhere)",
            sources.find(
                |f| !f.starts_with("crates/mcp/"),
                &["rmcp::"],
                Scope::AllCode,
            ),
        ),
        (
            "no static tool host (`TOOL_HOST`, `set_tool_host`): the tool host is an argument",
            sources.find(
                |f| f.starts_with("crates/"),
                &["TOOL_HOST", "set_tool_host"],
                Scope::Production,
            ),
        ),
        (
            "no `exec::` path outside crates/worker/src/exec.rs but the worker's dispatch of the exec teammate (`exec::run(&session)` in lib.rs): its helpers are not the pipeline",
            sources
                .find(
                    |f| f.starts_with("crates/") && f != "crates/worker/src/exec.rs",
                    &["exec::"],
                    Scope::Production,
                )
                .into_iter()
                .filter(|hit| {
                    !(hit.at.starts_with("crates/worker/src/lib.rs:")
                        && hit.what.contains("exec::run(&session)"))
                })
                .collect(),
        ),
        (
            "only the daemon opens the store for writing (`Store::open(` in production code only in crates/daemon; others open it read-only)",
            sources.find(
                |f| {
                    f.starts_with("crates/")
                        && !f.starts_with("crates/daemon/")
                        && !f.starts_with("crates/store/")
                },
                &["Store::open("],
                Scope::Production,
            ),
        ),
        (
            "state, perms and tools do no I/O and read no clock; protocol reads no clock and touches no file, socket or process",
            pure(&sources),
        ),
        (
            "only crates/pane starts tmux and osascript, only crates/worktree starts git (production code)",
            programs(&sources),
        ),
        (
            "the bridge (crates/cli/src/bin/bridge.rs) links nothing of ours",
            sources.find(
                |f| f == "crates/cli/src/bin/bridge.rs",
                &["agent_team_"],
                Scope::AllCode,
            ),
        ),
        (
            "every package takes the workspace's lints ([lints] workspace = true)",
            lints(&manifests),
        ),
        (
            "no build output is committed (no tracked file git ignores; the link order is a hash-free list, no symbol in it names a rustc hash)",
            committed_output(root)?,
        ),
        (
            "the agent CLIs' tested versions are said once (crates/worker/src/external/mod.rs `tested`) and the README's \"tested version\" row says the same",
            tested_versions(root)?,
        ),
    ];
    let mut failed = 0;
    for (what, findings) in &checks {
        if findings.is_empty() {
            eprintln!("invariants: ok      {what}");
        } else {
            failed += 1;
            eprintln!("invariants: FAILED  {what}");
            for f in findings {
                eprintln!("    {}: {}", f.at, f.what);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} invariants do not hold", checks.len());
    }
    eprintln!("invariants: all {} hold", checks.len());
    Ok(())
}

/// The README's table row `| tested version | … |` against the versions in the worker's
/// `pub mod tested` (the adapters, the end-to-end tests and the bench take theirs from it):
/// each cell, in order, starts with its CLI's version.
fn tested_versions(root: &Path) -> Result<Vec<Finding>> {
    let source_file = "crates/worker/src/external/mod.rs";
    let source = std::fs::read_to_string(root.join(source_file))
        .map_err(|e| anyhow::anyhow!("cannot read {source_file}: {e}"))?;
    let versions: Vec<(String, String)> = source
        .lines()
        .skip_while(|l| !l.starts_with("pub mod tested"))
        .take_while(|l| *l != "}")
        .filter_map(|l| {
            let (name, rest) = l
                .trim()
                .strip_prefix("pub const ")?
                .split_once(": &str = \"")?;
            Some((name.to_string(), rest.strip_suffix("\";")?.to_string()))
        })
        .collect();
    let readme = std::fs::read_to_string(root.join("README.md"))
        .map_err(|e| anyhow::anyhow!("cannot read README.md: {e}"))?;
    let Some((line, row)) = readme
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("| tested version |"))
    else {
        return Ok(vec![Finding {
            at: "README.md".into(),
            what: "no `| tested version |` row".into(),
        }]);
    };
    let cells: Vec<&str> = row.split('|').map(str::trim).skip(2).collect();
    let mut out = Vec::new();
    if versions.is_empty() {
        out.push(Finding {
            at: source_file.into(),
            what: "no `pub const NAME: &str = \"VERSION\";` in `pub mod tested`".into(),
        });
    }
    for (i, (name, version)) in versions.iter().enumerate() {
        let cell = cells.get(i).copied().unwrap_or_default();
        if cell.split_whitespace().next() != Some(version.as_str()) {
            out.push(Finding {
                at: format!("README.md:{}", line + 1),
                what: format!(
                    "column {} says `{cell}`; tested::{name} is {version}",
                    i + 1
                ),
            });
        }
    }
    Ok(out)
}

/// One package's manifest: its short name, its path, and its lines.
struct Manifest {
    name: String,
    path: String,
    text: String,
}

/// The manifests of every workspace package: crates/*, tests, xtask, bench.
fn manifests(root: &Path) -> Result<Vec<Manifest>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))? {
        let p = entry?.path().join("Cargo.toml");
        if p.is_file() {
            paths.push(p);
        }
    }
    for dir in ["tests", "xtask", "bench"] {
        paths.push(root.join(dir).join("Cargo.toml"));
    }
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_default();
        // The CLI's package carries the product's name (`cargo install agent-team`).
        let name = match name {
            "agent-team" => "cli",
            _ => name.strip_prefix("agent-team-").unwrap_or(name),
        }
        .to_string();
        out.push(Manifest {
            name,
            path: rel(root, &p),
            text,
        });
    }
    Ok(out)
}

/// The dependencies a manifest names (any kind, any target), with their line numbers.
fn dependencies(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']');
            // `[dependencies]`, `[dev-dependencies]`, `[target.'cfg(..)'.build-dependencies]`,
            // or one dependency's own table, `[dependencies.NAME]`.
            let last = header.rsplit('.').next().unwrap_or_default();
            in_deps = last.ends_with("dependencies");
            if !in_deps && let Some((_, name)) = header.split_once("dependencies.") {
                out.push((i + 1, name.to_string()));
            }
            continue;
        }
        if in_deps
            && !line.starts_with('#')
            && let Some((key, _)) = line.split_once('=')
        {
            out.push((i + 1, key.trim().trim_matches('"').to_string()));
        }
    }
    out
}

fn layering(manifests: &[Manifest]) -> Vec<Finding> {
    let mut out = table_is_layered();
    for m in manifests {
        let Some((_, _, allowed)) = LAYERS.iter().find(|(n, _, _)| *n == m.name) else {
            out.push(Finding {
                at: m.path.clone(),
                what: format!(
                    "package `{}` is not in LAYERS: give it a layer and its allowed crates",
                    m.name
                ),
            });
            continue;
        };
        for (line, dep) in dependencies(&m.text) {
            let Some(short) = dep.strip_prefix("agent-team-") else {
                continue;
            };
            if !allowed.contains(&short) {
                out.push(Finding {
                    at: format!("{}:{line}", m.path),
                    what: format!(
                        "`{}` depends on `{short}`, which its LAYERS row does not allow",
                        m.name
                    ),
                });
            }
        }
    }
    out
}

/// Each row's allowed crates are in the table and of a lower layer.
fn table_is_layered() -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, layer, allowed) in LAYERS {
        for dep in *allowed {
            match LAYERS.iter().find(|(n, _, _)| n == dep) {
                Some((_, l, _)) if l < layer => {}
                Some((_, l, _)) => out.push(Finding {
                    at: "xtask/src/invariants.rs".into(),
                    what: format!("LAYERS: `{name}` (layer {layer}) allows `{dep}` (layer {l})"),
                }),
                None => out.push(Finding {
                    at: "xtask/src/invariants.rs".into(),
                    what: format!("LAYERS: `{name}` allows `{dep}`, which has no row"),
                }),
            }
        }
    }
    out
}

fn owners(manifests: &[Manifest]) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in manifests {
        for (line, dep) in dependencies(&m.text) {
            if let Some((_, owners)) = OWNERS.iter().find(|(d, _)| *d == dep)
                && !owners.contains(&m.name.as_str())
            {
                out.push(Finding {
                    at: format!("{}:{line}", m.path),
                    what: format!("`{}` names `{dep}`, whose owners are {owners:?}", m.name),
                });
            }
        }
    }
    out
}

fn lints(manifests: &[Manifest]) -> Vec<Finding> {
    manifests
        .iter()
        .filter(|m| {
            let mut lines = m.text.lines().map(str::trim);
            !(lines.any(|l| l == "[lints]") && lines.next() == Some("workspace = true"))
        })
        .map(|m| Finding {
            at: m.path.clone(),
            what: "no `[lints]` / `workspace = true`".into(),
        })
        .collect()
}

fn pure(sources: &Sources) -> Vec<Finding> {
    let mut out = Vec::new();
    for (krate, banned) in PURE {
        let prefix = format!("crates/{krate}/src/");
        out.extend(sources.find(|f| f.starts_with(&prefix), banned, Scope::Production));
    }
    out
}

fn programs(sources: &Sources) -> Vec<Finding> {
    let mut out = Vec::new();
    for (call, owner) in PROGRAMS {
        let own = format!("crates/{owner}/");
        out.extend(sources.find(
            |f| f.starts_with("crates/") && !f.starts_with(&own),
            &[call],
            Scope::Production,
        ));
    }
    out
}

fn committed_output(root: &Path) -> Result<Vec<Finding>> {
    let git = |args: &[&str]| -> Result<String> {
        let out = Command::new("git").current_dir(root).args(args).output()?;
        if !out.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut out: Vec<Finding> = git(&["ls-files", "-ci", "--exclude-standard"])?
        .lines()
        .map(|f| Finding {
            at: f.to_string(),
            what: "tracked, yet .gitignore says it is build output".into(),
        })
        .collect();
    // The committed link order is a source list: `cargo xtask dist` resolves it against the
    // very build it links. A name with a rustc hash in it is a build's output.
    for f in git(&["ls-files"])?
        .lines()
        .filter(|f| f.split('/').any(|c| c == "link-order"))
    {
        let text = std::fs::read_to_string(root.join(f)).unwrap_or_default();
        if let Some((n, line)) = text
            .lines()
            .enumerate()
            .find(|(_, l)| crate::names::key(l) != *l)
        {
            out.push(Finding {
                at: format!("{f}:{}", n + 1),
                what: format!("a symbol with a rustc hash (a build's output): {line}"),
            });
        }
    }
    Ok(out)
}

/// Which lines of a file a check reads.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Production code only: no test file, no `#[cfg(test)]` item, no comment.
    Production,
    /// Every line of code, tests too; comments aside.
    AllCode,
}

/// The workspace's Rust files (crates/, tests/, bench/, xtask/), each path relative to the root.
struct Sources {
    files: Vec<(String, String)>,
}

impl Sources {
    fn read(root: &Path) -> Result<Sources> {
        let mut files = Vec::new();
        for dir in ["crates", "tests", "bench", "xtask"] {
            walk(root, &root.join(dir), &mut files)?;
        }
        // This file names every needle it looks for.
        files.retain(|(path, _)| path != "xtask/src/invariants.rs");
        files.sort();
        Ok(Sources { files })
    }

    /// Every line (of `scope`) in the files `which` selects that contains one of `needles`.
    fn find(&self, which: impl Fn(&str) -> bool, needles: &[&str], scope: Scope) -> Vec<Finding> {
        let mut out = Vec::new();
        for (path, text) in &self.files {
            if !which(path) || (scope == Scope::Production && is_test_file(path)) {
                continue;
            }
            for (line, code) in code_lines(text, scope) {
                for needle in needles {
                    if contains_path(code, needle) {
                        out.push(Finding {
                            at: format!("{path}:{line}"),
                            what: code.trim().to_string(),
                        });
                        break;
                    }
                }
            }
        }
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && name != "fixtures" && !name.starts_with('.') {
                walk(root, &path, out)?;
            }
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            out.push((rel(root, &path), text));
        }
    }
    Ok(())
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// A test file: under a `tests/` dir, or named `tests.rs` or `*_tests.rs`.
fn is_test_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    path.split('/').any(|c| c == "tests" || c == "benches")
        || name == "tests.rs"
        || name.ends_with("_tests.rs")
}

/// The file's lines of `scope` with their 1-based numbers.
fn code_lines(text: &str, scope: Scope) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if scope == Scope::Production && line.trim_end() == "#[cfg(test)]" {
            // Skip the attributes after it and the item they mark: to its closing `}` at
            // column 0 when the item opens a block on its first line.
            for (_, next) in lines.by_ref() {
                if next.starts_with("#[") {
                    continue;
                }
                if next.trim_end().ends_with('{') {
                    for (_, inner) in lines.by_ref() {
                        if inner.trim_end() == "}" {
                            break;
                        }
                    }
                }
                break;
            }
            continue;
        }
        if line.trim_start().starts_with("//") {
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// `needle` in `code` where it starts a path or a name: not preceded by an identifier's
/// character (`exec::` matches `crate::exec::run` and `exec::run`, not `myexec::`).
fn contains_path(code: &str, needle: &str) -> bool {
    let first_is_ident = needle
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_');
    code.match_indices(needle).any(|(at, _)| {
        !first_is_ident
            || !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_table_only_points_down() {
        let bad: Vec<String> = table_is_layered().into_iter().map(|f| f.what).collect();
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn an_upward_or_unlisted_arrow_is_reported() {
        let m = |name: &str, text: &str| Manifest {
            name: name.into(),
            path: format!("crates/{name}/Cargo.toml"),
            text: text.into(),
        };
        let found = layering(&[
            m(
                "protocol",
                "[dependencies]\nagent-team-perms = 1\nagent-team-worker = 1\n",
            ),
            m("newcrate", "[dependencies]\n"),
        ]);
        let at: Vec<&str> = found.iter().map(|f| f.at.as_str()).collect();
        assert_eq!(
            at,
            ["crates/protocol/Cargo.toml:3", "crates/newcrate/Cargo.toml"]
        );
        let found = owners(&[m("daemon", "[dependencies]\nrusqlite = 1\n")]);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn test_items_and_comments_are_not_production_code() {
        let text = "use a;\n// exec::x\n#[cfg(test)]\n#[allow(x)]\nmod tests {\n    exec::y\n}\nfn f() { exec::z }\n";
        let lines: Vec<usize> = code_lines(text, Scope::Production)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(lines, vec![1, 8]);
        assert_eq!(code_lines(text, Scope::AllCode).len(), 7);
    }

    #[test]
    fn a_path_matches_only_at_a_name_start() {
        assert!(contains_path("use crate::exec::run;", "exec::"));
        assert!(contains_path("exec::run()", "exec::"));
        assert!(!contains_path("myexec::run()", "exec::"));
        assert!(contains_path(
            "let c = Command::new(\"git\");",
            "Command::new(\"git\")"
        ));
    }

    #[test]
    fn dependencies_of_every_kind_and_target_are_read() {
        let text = "[package]\nname = \"x\"\n[dependencies]\na = 1\n# b = 1\n[dev-dependencies]\n\"c\" = { path = \"..\" }\n[target.'cfg(unix)'.build-dependencies]\nd = 1\n[dependencies.e]\nversion = \"1\"\n[lints]\nworkspace = true\n";
        let names: Vec<String> = dependencies(text).into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["a", "c", "d", "e"]);
    }

    #[test]
    fn a_readme_version_other_than_the_tested_one_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("crates/worker/src/external");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("mod.rs"),
            "pub mod tested {\n    /// A.\n    pub const A: &str = \"1.2.3\";\n    pub const B: &str = \"0.1.0\";\n}\n",
        )
        .unwrap();
        let readme = |row: &str| {
            std::fs::write(
                root.path().join("README.md"),
                format!("# x\n\n| | A | B |\n{row}\n"),
            )
            .unwrap();
            tested_versions(root.path()).unwrap()
        };
        assert!(readme("| tested version | 1.2.3 | 0.1.0 (Node 22) |").is_empty());
        let found = readme("| tested version | 1.2.3 | 0.1.1 |");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].at, "README.md:4");
        assert!(
            found[0].what.contains("tested::B is 0.1.0"),
            "{}",
            found[0].what
        );
    }
}
