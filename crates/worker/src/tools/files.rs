//! The workspace tools on files. Every path goes through [`confine`]: one that escapes the
//! workspace, lexically or through a symlink, is refused.

use super::{ToolCtx, ToolOutcome};
use agent_team_tools::{EditFile, Glob, Grep, ListFiles, ReadFile, WriteFile};
use std::path::{Component, Path, PathBuf};

pub(super) async fn read_file(ctx: &ToolCtx, a: &ReadFile) -> Result<ToolOutcome, String> {
    let path = confine(&ctx.root, &a.path)?;
    let offset = a.offset.unwrap_or(0);
    let cap = 64 * 1024;
    // Only the window asked for is read: a huge file costs no more than a small one.
    let (bytes, len) = read_window(&path, offset, cap)
        .await
        .map_err(|e| format!("cannot read {}: {e}", display(&ctx.root, &path)))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let end = offset.min(len) + bytes.len() as u64;
    Ok(if end < len {
        ToolOutcome::ok(format!(
            "{text}\n[... {} more bytes; read on with offset {end}]",
            len - end
        ))
    } else {
        ToolOutcome::ok(text)
    })
}

pub(super) async fn write_file(ctx: &ToolCtx, a: &WriteFile) -> Result<ToolOutcome, String> {
    let path = confine(&ctx.root, &a.path)?;
    let content = &a.content;
    if let Some(dir) = path.parent().filter(|d| !d.is_dir()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", display(&ctx.root, dir)))?;
    }
    write_no_follow(&path, content.as_bytes())
        .await
        .map_err(|e| format!("cannot write {}: {e}", display(&ctx.root, &path)))?;
    Ok(ToolOutcome::ok(format!(
        "wrote {} bytes to {}",
        content.len(),
        display(&ctx.root, &path)
    )))
}

pub(super) async fn edit_file(ctx: &ToolCtx, a: &EditFile) -> Result<ToolOutcome, String> {
    let path = confine(&ctx.root, &a.path)?;
    let (old, new) = (a.old_string.as_str(), a.new_string.as_str());
    let all = a.replace_all.unwrap_or(false);
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", display(&ctx.root, &path)))?;
    let n = text.matches(old).count();
    if old.is_empty() || n == 0 {
        return Err(format!(
            "old_string was not found in {}",
            display(&ctx.root, &path)
        ));
    }
    if n > 1 && !all {
        return Err(format!(
            "old_string occurs {n} times in {}; give more context or set replace_all",
            display(&ctx.root, &path)
        ));
    }
    let out = if all {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    };
    write_no_follow(&path, out.as_bytes())
        .await
        .map_err(|e| format!("cannot write {}: {e}", display(&ctx.root, &path)))?;
    Ok(ToolOutcome::ok(format!(
        "replaced {} occurrence(s) in {}",
        if all { n } else { 1 },
        display(&ctx.root, &path)
    )))
}

pub(super) async fn list_files(ctx: &ToolCtx, a: &ListFiles) -> Result<ToolOutcome, String> {
    let dir = confine(&ctx.root, a.path.as_deref().unwrap_or("."))?;
    let contains = a.contains.clone();
    let root = ctx.root.clone();
    let list = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
            .flatten()
        {
            if e.file_type().is_file() {
                let rel = display(&root, e.path());
                if contains.as_ref().is_none_or(|c| rel.contains(c.as_str())) {
                    out.push(rel);
                }
            }
            if out.len() >= 500 {
                out.push("[... more files not shown]".into());
                break;
            }
        }
        out
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(ToolOutcome::ok(if list.is_empty() {
        "no files".to_string()
    } else {
        list.join("\n")
    }))
}

pub(super) async fn grep(ctx: &ToolCtx, a: &Grep) -> Result<ToolOutcome, String> {
    let re =
        regex::Regex::new(&a.pattern).map_err(|e| format!("invalid regular expression: {e}"))?;
    let dir = confine(&ctx.root, a.path.as_deref().unwrap_or("."))?;
    let root = ctx.root.clone();
    let hits = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
            .flatten()
        {
            // Huge files (logs, data) are skipped rather than read into memory whole.
            if !e.file_type().is_file() || e.metadata().map_or(true, |m| m.len() > 8 << 20) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            for (i, line) in text.lines().enumerate() {
                if re.is_match(line) {
                    out.push(format!(
                        "{}:{}: {}",
                        display(&root, e.path()),
                        i + 1,
                        line.chars().take(300).collect::<String>()
                    ));
                    if out.len() >= 200 {
                        out.push("[... more matches not shown]".into());
                        return out;
                    }
                }
            }
        }
        out
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(ToolOutcome::ok(if hits.is_empty() {
        "no matches".to_string()
    } else {
        hits.join("\n")
    }))
}

/// The most paths `glob` returns.
pub const GLOB_CAP: usize = 1000;

pub(super) async fn glob(ctx: &ToolCtx, a: &Glob) -> Result<ToolOutcome, String> {
    let (base, re) = glob_regex(&a.pattern)?;
    // The walk starts at the pattern's literal directory, confined like every path.
    let dir = confine(&ctx.root, if base.is_empty() { "." } else { &base })?;
    let root = ctx.root.clone();
    let (list, more) = tokio::task::spawn_blocking(move || glob_walk(&root, &dir, &re, GLOB_CAP))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ToolOutcome::ok(if list.is_empty() {
        format!("no files match {}", a.pattern)
    } else if more > 0 {
        format!(
            "{}\n[... {more} more paths not shown; narrow the pattern]",
            list.join("\n")
        )
    } else {
        list.join("\n")
    }))
}

/// The files under `dir` (`.git` skipped, links not followed out) whose path relative to
/// `root` matches `re`: the first `cap` in sorted order, and how many more there are.
pub(crate) fn glob_walk(
    root: &Path,
    dir: &Path,
    re: &regex::Regex,
    cap: usize,
) -> (Vec<String>, usize) {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .flatten()
        .filter(|e| e.file_type().is_file() || e.path_is_symlink())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_str()?.to_string();
            re.is_match(&rel).then_some(rel)
        })
        .collect();
    out.sort();
    let more = out.len().saturating_sub(cap);
    out.truncate(cap);
    (out, more)
}

/// A glob pattern as a regular expression on paths relative to the workspace, with the
/// pattern's leading directories that hold no wildcard (where the walk can start). `*` and `?`
/// stay within a name, `**` crosses directories, `{a,b}` and `[abc]`/`[!abc]` as in shells.
/// An absolute pattern or one with a `..` component is refused: a glob never leaves the
/// workspace.
pub(crate) fn glob_regex(pattern: &str) -> Result<(String, regex::Regex), String> {
    let p = pattern.trim().trim_start_matches("./");
    if p.is_empty() {
        return Err("the pattern is empty; e.g. **/*.rs".into());
    }
    if p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(format!(
            "{pattern:?} leaves the workspace; a pattern is relative to the workspace, without .."
        ));
    }
    let parts: Vec<&str> = p.split('/').collect();
    let literal = |c: &str| !c.contains(['*', '?', '[', '{']);
    let n = parts[..parts.len() - 1]
        .iter()
        .take_while(|c| literal(c))
        .count();
    let base = parts[..n].join("/");
    let mut re = String::from("^");
    let chars: Vec<char> = p.chars().collect();
    let (mut i, mut depth) = (0, 0usize);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_start = i == 0 || chars[i - 1] == '/';
                if at_start && chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:[^/]+/)*");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&x| x == ']')
                    .map(|n| i + 1 + n)
                    .ok_or_else(|| format!("{pattern:?}: `[` is not closed with `]`"))?;
                let mut class: String = chars[i + 1..close].iter().collect();
                if let Some(r) = class.strip_prefix('!') {
                    class = format!("^{r}");
                }
                re.push('[');
                re.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                re.push(']');
                i = close + 1;
                continue;
            }
            '{' => {
                depth += 1;
                re.push_str("(?:");
            }
            '}' if depth > 0 => {
                depth -= 1;
                re.push(')');
            }
            ',' if depth > 0 => re.push('|'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if depth > 0 {
        return Err(format!("{pattern:?}: `{{` is not closed with `}}`"));
    }
    re.push('$');
    let re = regex::Regex::new(&re).map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
    Ok((base, re))
}

/// `path` relative to `root` with `.`/`..` and symlinks resolved, or `None` when it is outside
/// (the tool then refuses it anyway).
pub(super) fn workspace_path(root: &Path, path: &str) -> Option<String> {
    let clean = confine(root, path).ok()?;
    // Resolve the part that exists (links included); what does not exist yet is appended.
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    let real = loop {
        if let Ok(r) = existing.canonicalize() {
            break r;
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    };
    let mut full = real;
    full.extend(rest.iter().rev());
    let rel = full.strip_prefix(root).ok()?;
    Some(if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    })
}

/// Where a write to `path` lands: relative to `dir` (or absolute), with the longest part that
/// exists resolved as the kernel would (symlinks and the `..` after them) and the rest, which
/// does not exist yet, appended with `.` and `..` taken lexically. Unlike [`confine`] it
/// refuses nothing: it says where a shell command's write would go, inside the workspace or not.
pub fn landing(dir: &Path, path: &Path) -> PathBuf {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    let comps: Vec<Component> = full.components().collect();
    // The longest leading part that exists, as the kernel resolves it (a `..` after a link
    // goes up from the link's target).
    let (mut out, rest) = (0..=comps.len())
        .rev()
        .find_map(|n| {
            let prefix: PathBuf = comps[..n].iter().collect();
            prefix.canonicalize().ok().map(|real| (real, &comps[n..]))
        })
        .unwrap_or_else(|| (PathBuf::new(), &comps[..]));
    for c in rest {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// `path` (relative to `root`, or absolute inside it) resolved to a path inside `root`;
/// anything that escapes, lexically or through a symlink, is refused.
pub fn confine(root: &Path, path: &str) -> Result<PathBuf, String> {
    let refuse = || {
        format!(
            "{path:?} is outside the workspace; use a path inside {}",
            root.display()
        )
    };
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !clean.pop() {
                    return Err(refuse());
                }
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let Ok(rel) = clean.strip_prefix(root) else {
        return Err(refuse());
    };
    // Every symlink on the way must resolve inside the root. A dangling one is refused too:
    // writing through it would create its target wherever it points.
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            // Nothing below a missing component exists, so nothing below can be a link.
            Err(_) => break,
            Ok(m) if m.file_type().is_symlink() => match cur.canonicalize() {
                Ok(real) if real.starts_with(root) => {}
                _ => return Err(refuse()),
            },
            Ok(_) => {}
        }
    }
    Ok(clean)
}

/// Up to `cap` bytes of `path` from `offset`, and the file's length: read on a blocking
/// thread in one go (one hop there and back, where each `tokio::fs` call is one).
async fn read_window(path: &Path, offset: u64, cap: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let path = path.to_path_buf();
    blocking(move || {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        f.seek(std::io::SeekFrom::Start(offset.min(len)))?;
        let mut buf = Vec::with_capacity(cap.min(len as usize));
        f.take(cap as u64).read_to_end(&mut buf)?;
        Ok((buf, len))
    })
    .await
}

/// Writes `bytes` to `path`, refusing to follow a symlink in its last component, so a link
/// swapped in after [`confine`] looked cannot redirect the write. Done on a blocking thread
/// in one go.
async fn write_no_follow(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
    blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)?;
        f.write_all(&bytes)?;
        f.flush()
    })
    .await
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

fn display(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `root/path` with content `x`, its directories made.
    fn touch(root: &Path, path: &str) {
        let f = root.join(path);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "x").unwrap();
    }

    fn matches(pattern: &str, path: &str) -> bool {
        glob_regex(pattern).unwrap().1.is_match(path)
    }

    #[test]
    fn glob_patterns_match_like_a_shell() {
        assert!(matches("*.rs", "main.rs"));
        assert!(!matches("*.rs", "src/main.rs"), "* stays in a name");
        assert!(matches("**/*.rs", "main.rs"));
        assert!(matches("**/*.rs", "src/a/b/main.rs"));
        assert!(matches("src/**", "src/a/b.txt"));
        assert!(matches("src/*.{rs,toml}", "src/lib.toml"));
        assert!(!matches("src/*.{rs,toml}", "src/lib.md"));
        assert!(matches("file?.txt", "file1.txt"));
        assert!(!matches("file?.txt", "file10.txt"));
        assert!(matches("[ab].txt", "b.txt"));
        assert!(!matches("[!ab].txt", "b.txt"));
        assert!(
            matches("a+b (1).txt", "a+b (1).txt"),
            "regex characters are literal"
        );
        assert!(!matches("a.txt", "abtxt"));
        assert_eq!(glob_regex("src/deep/**/*.rs").unwrap().0, "src/deep");
        assert_eq!(glob_regex("./*.md").unwrap().0, "");
        assert!(glob_regex("[oops").is_err());
        assert!(glob_regex("{a,b").is_err());
    }

    #[test]
    fn a_glob_never_leaves_the_workspace() {
        for bad in ["../*", "/etc/*", "src/../../x/*", "a/../*", "..", ""] {
            assert!(glob_regex(bad).is_err(), "{bad:?} was accepted");
        }
        // A link inside the workspace pointing out is not walked into.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "secret.txt");
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        touch(&root, "in.txt");
        let (_, re) = glob_regex("**/*.txt").unwrap();
        let (list, more) = glob_walk(&root, &root, &re, GLOB_CAP);
        assert_eq!((list, more), (vec!["in.txt".to_string()], 0));
        assert!(confine(&root, "out").is_err(), "the base is confined too");
    }

    #[test]
    fn glob_results_are_sorted_capped_and_skip_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for i in (0..25).rev() {
            touch(&root, &format!("src/m{i:02}.rs"));
        }
        touch(&root, "src/notes.md");
        touch(&root, ".git/x.rs");
        let (_, re) = glob_regex("**/*.rs").unwrap();
        let (list, more) = glob_walk(&root, &root, &re, 10);
        assert_eq!(list.len(), 10);
        assert_eq!(more, 15);
        assert_eq!(list[0], "src/m00.rs");
        assert_eq!(list[9], "src/m09.rs");
        assert!(list.iter().all(|p| !p.starts_with(".git")));
        let (all, more) = glob_walk(&root, &root.join("src"), &re, GLOB_CAP);
        assert_eq!((all.len(), more), (25, 0));
    }

    #[test]
    fn paths_are_confined() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(confine(&root, "a/b.txt").unwrap(), root.join("a/b.txt"));
        assert_eq!(confine(&root, "a/../c").unwrap(), root.join("c"));
        assert!(confine(&root, "../x").is_err());
        assert!(confine(&root, "a/../../x").is_err());
        assert!(confine(&root, "/etc/passwd").is_err());
        assert!(confine(&root, &root.join("ok").display().to_string()).is_ok());
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(
            confine(&root, "link/passwd").is_err(),
            "a symlink out of the workspace is refused"
        );
        // A dangling link is refused: writing through it would create its target outside.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("authorized_keys");
        std::os::unix::fs::symlink(&target, root.join("ak")).unwrap();
        assert!(confine(&root, "ak").is_err());
        // A link that stays inside is fine, as is a path below it.
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        assert_eq!(confine(&root, "alias/f").unwrap(), root.join("alias/f"));
    }

    #[test]
    fn a_landing_follows_links_and_dot_dots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(root.join(".git"), root.join("g")).unwrap();
        std::os::unix::fs::symlink(root.join(".git/hooks"), root.join("sub/h")).unwrap();
        let at = |p: &str| landing(&root, Path::new(p));
        assert_eq!(at("g/config"), root.join(".git/config"));
        assert_eq!(at("sub/../.git/config"), root.join(".git/config"));
        // `h/..` is the link's parent as the kernel sees it: `.git`, not `sub`.
        assert_eq!(at("sub/h/../config"), root.join(".git/config"));
        assert_eq!(at("new/dir/../x"), root.join("new/x"));
        assert_eq!(at("src/a.rs"), root.join("src/a.rs"));
        assert_eq!(at("/dev/null"), PathBuf::from("/dev/null"));
    }

    #[tokio::test]
    async fn reads_are_windowed_and_writes_do_not_follow_a_last_link() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_window(&f, 0, 4).await.unwrap(), (b"0123".to_vec(), 10));
        assert_eq!(read_window(&f, 8, 4).await.unwrap(), (b"89".to_vec(), 10));
        assert_eq!(read_window(&f, 99, 4).await.unwrap(), (vec![], 10));
        let outside = dir.path().join("outside");
        std::os::unix::fs::symlink(&outside, dir.path().join("link")).unwrap();
        assert!(
            write_no_follow(&dir.path().join("link"), b"x")
                .await
                .is_err()
        );
        assert!(!outside.exists(), "nothing was written through the link");
        write_no_follow(&f, b"new").await.unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }
}
