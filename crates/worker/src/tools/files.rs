//! The workspace tools on files. Every path goes through [`confine`]: one that escapes the
//! workspace, lexically or through a symlink, is refused.

use super::{ToolCtx, ToolOutcome};
use agent_team_tools::{EditFile, Grep, ListFiles, ReadFile, WriteFile};
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
    if let Some(dir) = path.parent() {
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

/// Up to `cap` bytes of `path` from `offset`, and the file's length.
async fn read_window(path: &Path, offset: u64, cap: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    f.seek(std::io::SeekFrom::Start(offset.min(len))).await?;
    let mut buf = Vec::with_capacity(cap.min(len as usize));
    f.take(cap as u64).read_to_end(&mut buf).await?;
    Ok((buf, len))
}

/// Writes `bytes` to `path`, refusing to follow a symlink in its last component, so a link
/// swapped in after [`confine`] looked cannot redirect the write.
async fn write_no_follow(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .await?;
    f.write_all(bytes).await?;
    f.flush().await
}

fn display(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
