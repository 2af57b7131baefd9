//! A full disk (a small tmpfs as the state dir): writes are refused with `storage_full`, reads
//! go on, the team recovers by itself when space returns, and a start on the full disk says why
//! and exits with its documented code. Needs the right to mount a tmpfs; skips (saying so)
//! without it.

use agent_team_e2e::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with one file, up to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    path
}

/// Adds tasks `{prefix}0`, `{prefix}1`, … with description `desc` to team `full` until one is
/// refused (at most `tries`): that refusal's exit code and stderr, `None` if none was.
fn add_until_refused(
    sb: &Sandbox,
    prefix: &str,
    desc: &str,
    tries: usize,
) -> Option<(Option<i32>, String)> {
    for i in 0..tries {
        let title = format!("{prefix}{i}");
        let out = sb.run(&["--team", "full", "task", "add", &title, "--desc", desc]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{err}");
        if !out.status.success() {
            return Some((out.status.code(), err));
        }
    }
    None
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_recovers_and_a_start_says_why() {
    let sb = Sandbox::new();
    // Down before unmount (fields drop in order: the team is stopped first).
    let Some(_fs) = Tmpfs::mount(&sb.paths.home, "3m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    struct Down<'a>(&'a Sandbox);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0.paths.home.join("filler"));
            let _ = self.0.run(&["--team", "full", "down"]);
        }
    }
    let _down = Down(&sb);
    sb.ok(&["--team", "full", "task", "add", "first"]);
    let filler = fill(&sb.paths.home);
    let desc = "d".repeat(30_000);
    let (_, err) = add_until_refused(&sb, "t", &desc, 200).expect("the disk never filled up");
    assert!(err.contains("is full") && err.contains("state.db"), "{err}");
    // Reads go on, and the daemon is still there.
    let list = sb.ok(&["--team", "full", "task", "list"]);
    assert!(list.contains("first"), "{list}");
    assert!(agent_team_client::daemon_running(&sb.team("full")));
    // Space returns: writes work again without anyone restarting anything.
    std::fs::remove_file(&filler).unwrap();
    sb.ok(&["--team", "full", "task", "add", "after"]);
    let tasks = sb.tasks("full");
    let titles: Vec<&str> = tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(
        titles.iter().filter(|t| **t == "after").count(),
        1,
        "{titles:?}"
    );
    let mut ids: Vec<u64> = tasks.iter().map(|t| t.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), tasks.len(), "ids are never reused");

    // A start on a full disk. A team with a store starts (opening it needs no room), serves
    // reads and refuses a write once there is no room for it, saying why. Writes that fit in
    // the space its WAL already has (the store keeps some written ahead) go through until then.
    sb.ok(&["--team", "full", "down"]);
    let filler = fill(&sb.paths.home);
    let (code, err) = add_until_refused(&sb, "x", &desc, 40)
        .expect("a write went through on a full disk forty times");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is full") && err.contains("nothing was changed"),
        "{err}"
    );
    let list = sb.ok(&["--team", "full", "task", "list"]);
    assert!(list.contains("after"), "{list}");
    // A new team cannot start: its store cannot be made. The daemon's own reason, through the
    // start pipe (issue 26).
    let out = sb.run(&["--team", "fresh", "task", "add", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the daemon could not start") && err.contains("is full"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_file(&filler).unwrap();
}

/// Reads persist nothing: `ps`, `task list` and `inbox` keep working on a full disk.
#[test]
fn reads_work_on_a_full_disk() {
    let sb = Sandbox::new();
    let Some(_fs) = Tmpfs::mount(&sb.paths.home, "3m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    struct Down<'a>(&'a Sandbox);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0.paths.home.join("filler"));
            let _ = self.0.run(&["--team", "rd", "down"]);
        }
    }
    let _down = Down(&sb);
    sb.write_team_file("name = \"rd\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n");
    sb.ok(&["up", "--detach"]);
    sb.ok(&["--team", "rd", "task", "add", "first"]);
    sb.ok(&["--team", "rd", "send", "leader", "hello leader"]);
    // The leader's acknowledgement of the message is a write: once the disk is full, a read
    // answered in the same batch as that refused write would be refused with it. Reads are
    // what this test is about, so the team is quiet first.
    wait_for(
        "the leader to have read its message",
        std::time::Duration::from_secs(30),
        || {
            let out = sb.run(&["--team", "rd", "inbox", "leader", "--json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|m| {
                    m.iter().any(|m| {
                        m.get("body").and_then(|b| b.as_str()) == Some("hello leader")
                            && m.get("state").and_then(|s| s.as_str()) == Some("read")
                    })
                })
        },
    );
    let filler = fill(&sb.paths.home);
    // The disk is full: a write is refused ...
    let desc = "d".repeat(30_000);
    let mut refused = false;
    for i in 0..200 {
        let out = sb.run(&[
            "--team",
            "rd",
            "task",
            "add",
            &format!("t{i}"),
            "--desc",
            &desc,
        ]);
        if !out.status.success() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk never filled up");
    // ... and every read still answers, many times over.
    for _ in 0..20 {
        let ps = sb.run(&["--team", "rd", "ps"]);
        assert!(
            ps.status.success(),
            "{}",
            String::from_utf8_lossy(&ps.stderr)
        );
        let list = sb.run(&["--team", "rd", "task", "list"]);
        let text = String::from_utf8_lossy(&list.stdout);
        assert!(
            list.status.success() && text.contains("first"),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let inbox = sb.run(&["--team", "rd", "inbox", "leader"]);
        let text = String::from_utf8_lossy(&inbox.stdout);
        assert!(
            inbox.status.success() && text.contains("hello leader"),
            "{}",
            String::from_utf8_lossy(&inbox.stderr)
        );
    }
    assert!(agent_team_client::daemon_running(&sb.team("rd")));
    std::fs::remove_file(&filler).unwrap();
}
