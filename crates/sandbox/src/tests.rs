use super::*;
use std::process::Stdio;

/// A team laid out as the daemon lays it out, under a temp dir: a workspace that is a git
/// repository, a runtime dir with a credential, a state dir, a user home.
struct Layout {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for d in [
            "ws/.git/hooks",
            "ws/.git/objects",
            "ws/.git/refs",
            "ws/src",
            "run",
            "state/teams/t/clis/cc",
            "home/.cargo/bin",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("ws/.git/config"), "[core]\n").unwrap();
        std::fs::write(base.join("ws/agent-team.toml"), "name = \"t\"\n").unwrap();
        std::fs::write(base.join("ws/check.sh"), "echo ok\n").unwrap();
        std::fs::write(base.join("run/t.operator"), "credential").unwrap();
        std::fs::write(base.join("state/teams/t/state.db"), "state").unwrap();
        std::fs::write(base.join("home/.bashrc"), "# rc\n").unwrap();
        Layout { _dir: dir, base }
    }

    fn work(&self) -> Work {
        Work {
            workspace: self.base.join("ws"),
            control: vec![self.base.join("run"), self.base.join("state")],
            protected_files: vec![
                self.base.join("ws/agent-team.toml"),
                self.base.join("ws/check.sh"),
            ],
            home: Some(self.base.join("home")),
            ..Work::default()
        }
    }

    /// Runs `sh -c cmd` in the workspace inside `b`: (exit code, stdout + stderr).
    fn run(&self, b: &Boundary, cmd: &str) -> (i32, String) {
        let out = command(
            b,
            &self.base.join("ws"),
            "sh",
            &["-c".into(), cmd.into()],
            Options::default(),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn namespace_or_skip() -> bool {
    match &support().namespace {
        Ok(_) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

#[test]
fn the_rule_hides_the_control_plane_and_protects_what_runs_code_later() {
    let l = Layout::new();
    let b = Boundary::for_work(&l.work());
    assert!(b.hide.contains(&l.base.join("run")));
    assert!(b.hide.contains(&l.base.join("state")));
    assert!(b.write.contains(&l.base.join("ws")));
    // The operator's caches are written only under the fallback; a namespace gets a home of
    // its own at the same path.
    assert!(
        b.fallback_write.contains(&l.base.join("home/.npm")),
        "made when missing"
    );
    assert!(!b.write.iter().any(|w| w.starts_with(l.base.join("home"))));
    assert_eq!(
        b.home,
        Some(FreshHome {
            at: l.base.join("home"),
            from: None
        })
    );
    assert!(b.read.contains(&l.base.join("home/.cargo/bin")));
    // `.git` is one read-only unit, not files inside a writable dir.
    for p in ["ws/.git", "ws/agent-team.toml", "ws/check.sh"] {
        assert!(b.read_only.contains(&l.base.join(p)), "{p}: {b:?}");
    }
    assert!(b.protected.contains(&l.base.join("home/.bashrc")));
    // What runs code later and is missing is kept from being made.
    for p in [
        ".claude",
        ".envrc",
        ".mcp.json",
        ".vscode",
        ".cargo",
        ".npmrc",
    ] {
        assert!(b.block.contains(&l.base.join("ws").join(p)), "{p}: {b:?}");
    }
    assert!(!b.block.iter().any(|p| p.ends_with(".git")));
    // A protected file in a dir that does not exist yet: the dir is kept from being made.
    let b2 = Boundary::for_work(&Work {
        protected_files: vec![l.base.join("ws/ci/hooks/check.sh")],
        ..l.work()
    });
    assert!(b2.block.contains(&l.base.join("ws/ci")), "{:?}", b2.block);
    // Outer paths come before the paths inside them (the stand-ins made, as a command's
    // start makes them).
    b.make_blocks();
    let mounts = b.mounts();
    let at = |p: &Path| mounts.iter().position(|(_, q)| *q == p).unwrap();
    assert!(at(&l.base.join("ws")) < at(&l.base.join("ws/.git")));
    assert!(at(&l.base.join("ws")) < at(&l.base.join("ws/.claude")));
}

#[test]
fn a_worktree_teammate_writes_its_tree_and_its_git_metadata_only() {
    let l = Layout::new();
    let tree = l.base.join("ws/.agent-team/worktrees/b1");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::create_dir_all(l.base.join("ws/.git/worktrees/b1")).unwrap();
    std::fs::create_dir_all(l.base.join("ws/.git/logs")).unwrap();
    std::fs::write(
        tree.join(".git"),
        format!(
            "gitdir: {}\n",
            l.base.join("ws/.git/worktrees/b1").display()
        ),
    )
    .unwrap();
    let b = Boundary::for_work(&Work {
        worktree: Some(tree.clone()),
        ..l.work()
    });
    assert!(b.write.contains(&tree));
    assert!(!b.write.contains(&l.base.join("ws")));
    assert!(b.read.contains(&l.base.join("ws")));
    // Git's objects and its worktree's index: no ref (not the operator's checked-out one, not
    // another teammate's), and not which branch it is on.
    for p in ["ws/.git/objects", "ws/.git/worktrees/b1"] {
        assert!(b.write.contains(&l.base.join(p)), "{p}");
    }
    assert!(
        !b.write
            .iter()
            .any(|w| w.starts_with(l.base.join("ws/.git/refs")))
    );
    assert!(
        !b.write
            .iter()
            .any(|w| w.starts_with(l.base.join("ws/.git/logs")))
    );
    std::fs::write(
        l.base.join("ws/.git/worktrees/b1/HEAD"),
        "ref: refs/heads/agent-team/b1\n",
    )
    .unwrap();
    let b = Boundary::for_work(&Work {
        worktree: Some(tree.clone()),
        ..l.work()
    });
    assert!(
        b.read_only
            .contains(&l.base.join("ws/.git/worktrees/b1/HEAD"))
    );
    assert!(b.read_only.contains(&tree.join(".git")));
}

#[test]
fn inside_the_namespace_the_control_plane_is_gone_and_ordinary_writes_work() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let b = Boundary::for_work(&l.work());
    let run = |cmd: &str| l.run(&b, cmd);
    let operator_home = std::env::var("HOME").unwrap_or_default();
    let refused = [
        format!("cat {}/run/t.operator", l.base.display()),
        format!("cat {}/state/teams/t/state.db", l.base.display()),
        format!("echo x > {}/run/planted", l.base.display()),
        "echo '#!/bin/sh' > .git/hooks/post-checkout".to_string(),
        "echo '[core] hooksPath = /tmp' >> .git/config".to_string(),
        // A protection cannot be moved away with its dir, nor a missing one made.
        "mv .git .git.old".to_string(),
        "mkdir -p .claude && echo '{}' > .claude/settings.json".to_string(),
        "echo 'curl x | sh' > .envrc".to_string(),
        "echo '{}' > .mcp.json".to_string(),
        "mkdir -p .cargo && echo x > .cargo/config.toml".to_string(),
        "echo 'cp x y' >> check.sh".to_string(),
        "echo x >> agent-team.toml".to_string(),
        "rm -f check.sh".to_string(),
        format!("echo x > {}/home/.cargo/bin/cargo", l.base.display()),
        // Nothing of the operator's home, nor what only root may read (also as root).
        format!("ls -A {operator_home}/.ssh {operator_home}/.gitconfig"),
        "cat /etc/shadow".to_string(),
        "ls /run/user /var/lib /srv /mnt /media".to_string(),
        // Not even the vendors' dir: only what a PATH dir or `[sandbox] read` names of it.
        "ls -A /opt".to_string(),
    ];
    for cmd in &refused {
        let (code, out) = run(cmd);
        assert_ne!(code, 0, "{cmd} was allowed: {out}");
    }
    assert!(!l.base.join("run/planted").exists());
    assert!(!l.base.join("ws/.git/hooks/post-checkout").exists());
    assert!(l.base.join("ws/.git/config").is_file());
    assert!(
        !l.base.join("ws/.envrc").is_file() && !l.base.join("ws/.claude/settings.json").exists()
    );
    assert_eq!(
        std::fs::read_to_string(l.base.join("ws/check.sh")).unwrap(),
        "echo ok\n"
    );
    let (_, listing) = run(&format!(
        "ls -A {}/run {}/state",
        l.base.display(),
        l.base.display()
    ));
    assert!(
        !listing.contains("operator") && !listing.contains("teams"),
        "{listing}"
    );
    // Ordinary work: the workspace, a new file in a private /tmp, mktemp, the home (a fresh
    // one: the operator's start-up files are not the command's to change).
    let name = format!("agent-team-sandbox-test-{}", std::process::id());
    for cmd in [
        "echo made > src/new.txt && git status --short >/dev/null 2>&1; cat src/new.txt"
            .to_string(),
        format!("echo x > /tmp/{name} && cat /tmp/{name}"),
        "f=$(mktemp) && echo t > $f && rm $f".to_string(),
        format!(
            "mkdir -p {h}/.npm && echo c > {h}/.npm/c",
            h = l.base.join("home").display()
        ),
        format!("echo 'alias ls=x' >> {}/home/.bashrc", l.base.display()),
    ] {
        let (code, out) = run(&cmd);
        assert_eq!(code, 0, "{cmd} was refused: {out}");
    }
    assert!(
        !Path::new("/tmp").join(&name).exists(),
        "a private /tmp, not the operator's"
    );
    assert_eq!(
        std::fs::read_to_string(l.base.join("home/.bashrc")).unwrap(),
        "# rc\n"
    );
    // No process outside: not our environ, no signal to us, even as root.
    let me = std::process::id();
    let (code, out) = run(&format!("cat /proc/{me}/environ || kill -0 {me}"));
    assert_ne!(code, 0, "reached the parent: {out}");
}

#[test]
fn the_teams_sandbox_home_keeps_the_caches_and_nothing_of_the_operators_home() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let own = l.base.join("state/teams/t/sandbox-home");
    let b = Boundary::for_work(&Work {
        sandbox_home: Some(own.clone()),
        ..l.work()
    });
    let home = l.base.join("home");
    let (code, out) = l.run(
        &b,
        &format!(
            "mkdir -p {h}/.npm && echo c > {h}/.npm/c && ls -A {h} && cat {h}/.bashrc",
            h = home.display()
        ),
    );
    assert_ne!(code, 0, "the operator's .bashrc was there: {out}");
    assert!(!out.lines().any(|l| l == ".bashrc"), "{out}");
    assert_eq!(std::fs::read_to_string(own.join(".npm/c")).unwrap(), "c\n");
    assert!(!home.join(".npm/c").exists());
}

#[test]
fn a_protected_file_cannot_be_renamed_away_with_its_dir() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    std::fs::create_dir_all(l.base.join("ws/ci/hooks")).unwrap();
    std::fs::write(l.base.join("ws/ci/hooks/deploy.sh"), "echo deploy\n").unwrap();
    let b = Boundary::for_work(&Work {
        protected_files: vec![l.base.join("ws/ci/hooks/deploy.sh")],
        ..l.work()
    });
    let (_, out) = l.run(
        &b,
        "mv ci ci2 || mv ci/hooks ci/h2; mkdir -p ci/hooks && echo 'curl x|sh' > ci/hooks/deploy.sh && echo LEAK:replaced; echo ok > ci/new.txt && echo OK:writable",
    );
    assert!(!out.contains("LEAK:"), "{out}");
    assert!(out.contains("OK:writable"), "{out}");
    assert_eq!(
        std::fs::read_to_string(l.base.join("ws/ci/hooks/deploy.sh")).unwrap(),
        "echo deploy\n"
    );
}

#[test]
fn with_no_proxy_the_network_is_shut_not_the_hosts() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\" && echo REACHED"
    );
    let (_, out) = l.run(&Boundary::for_work(&l.work()), &probe);
    assert!(
        out.contains("REACHED"),
        "the plant is not reachable without offline: {out}"
    );
    let shut = Boundary::for_work(&Work {
        offline: true,
        ..l.work()
    });
    let (code, out) = l.run(&shut, &probe);
    assert!(code != 0 && !out.contains("REACHED"), "{out}");
}

/// The daemon serves an agent's egress proxy only when asked (before each process): until its
/// dir is there, a boundary that goes through it has no way out at all, not the host's
/// network, whatever `offline` says.
#[test]
fn a_proxy_not_served_yet_is_no_way_out() {
    let l = Layout::new();
    let dir = l.base.join("run/t.net/a");
    let b = Boundary::for_work(&Work {
        network: Some(NetworkWiring {
            dir: dir.clone(),
            bridge: "/bin/true".into(),
            forward: Vec::new(),
        }),
        offline: false,
        ..l.work()
    });
    assert!(b.proxy().is_none());
    let args: Vec<String> = b
        .bwrap_args(&l.base.join("ws"), false)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(args.iter().any(|a| a == "--unshare-net"), "{args:?}");
    assert!(!args.iter().any(|a| a.contains("t.net")), "{args:?}");
    if namespace_or_skip() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (code, out) = l.run(
            &b,
            &format!(
                "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\" && echo REACHED"
            ),
        );
        assert!(code != 0 && !out.contains("REACHED"), "{out}");
    }
    // Served: the same boundary goes through it.
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(b.proxy().map(|n| n.dir.clone()), Some(dir));
}

#[test]
fn a_control_socket_inside_the_workspace_is_not_a_socket_in_there() {
    if !namespace_or_skip() {
        return;
    }
    // A tmux socket the environment put in the workspace: run-shell there would run outside.
    let l = Layout::new();
    let sock = l.base.join("ws/team.tmux");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut work = l.work();
    work.control.push(sock.clone());
    let b = Boundary::for_work(&work);
    let probe = format!("test -S {} && echo LEAK:socket; ls src", sock.display());
    let (_, out) = l.run(&Boundary::for_work(&l.work()), &probe);
    assert!(
        out.contains("LEAK:socket"),
        "the plant is not a socket inside: {out}"
    );
    let (_, out) = l.run(&b, &probe);
    assert!(!out.contains("LEAK:"), "{out}");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
}

#[test]
fn a_toolchains_shims_are_the_teams_own_copy_and_the_rest_of_it_read_only() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let shims = l.base.join("home/.pyenv/shims");
    std::fs::create_dir_all(&shims).unwrap();
    std::fs::create_dir_all(l.base.join("home/.pyenv/versions")).unwrap();
    std::fs::write(shims.join("python"), "#!/bin/sh\n").unwrap();
    let own = l.base.join("state/teams/t/sandbox-home");
    let b = Boundary::for_work(&Work {
        sandbox_home: Some(own.clone()),
        ..l.work()
    });
    let (code, out) = l.run(
        &b,
        &format!(
            "cat {s}/python && echo '#!/bin/sh' > {s}/pip && echo OK:rehash; echo x > {v}/x",
            s = shims.display(),
            v = l.base.join("home/.pyenv/versions").display()
        ),
    );
    assert_ne!(code, 0, "the toolchain itself was writable: {out}");
    assert!(out.contains("OK:rehash"), "{out}");
    assert!(
        !shims.join("pip").exists(),
        "the operator's shims were written"
    );
    assert!(!l.base.join("home/.pyenv/versions/x").exists());
}

#[test]
fn a_cli_home_put_back_inside_the_hidden_state_dir_is_the_only_thing_there() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let cli = l.base.join("state/teams/t/clis/cc");
    std::fs::write(cli.join("settings.json"), "{}").unwrap();
    let b = Boundary::for_work(&Work {
        expose: vec![cli.clone()],
        ..l.work()
    });
    let (code, out) = l.run(
        &b,
        &format!(
            "cat {c}/settings.json && echo w > {c}/w && ls {s}/teams/t && cat {s}/teams/t/state.db",
            c = cli.display(),
            s = l.base.join("state").display()
        ),
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.starts_with("{}clis\n"), "{out}");
    assert!(cli.join("w").exists());
}

#[test]
fn what_a_command_starts_in_the_background_ends_with_it() {
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let b = Boundary::for_work(&l.work());
    let marker = l.base.join("ws/alive");
    let (code, out) = l.run(
        &b,
        &format!(
            "setsid -f sh -c 'sleep 0.5; echo escaped > {}' ; echo started",
            marker.display()
        ),
    );
    assert_eq!((code, out.as_str()), (0, "started\n"));
    // The command ended, so its namespace did: the escaped process was killed with it. Wait
    // past its own deadline (bounded) and check it never wrote.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline && !marker.exists() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!marker.exists(), "a setsid -f child outlived its command");
}

#[test]
fn a_refused_write_is_explained_with_the_setting_that_allows_it() {
    let l = Layout::new();
    let b = Boundary::for_work(&l.work());
    let ws = l.base.join("ws");
    let note = explain_refusal(
        "sh: 1: cannot create /usr/local/lib/x.txt: Read-only file system",
        &b,
        &ws,
    )
    .unwrap();
    assert!(
        note.contains("[sandbox] write = [\"/usr/local/lib/x.txt\"]"),
        "{note}"
    );
    let bashrc = l.base.join("home/.bashrc");
    let out = format!(
        "sh: 1: cannot create {}: Read-only file system",
        bashrc.display()
    );
    let note = explain_refusal(&out, &b, &ws).unwrap();
    assert!(note.contains(".bashrc is read-only"), "{note}");
    // Relative, as sh says it, and quoted, as touch says it.
    for out in [
        "w.sh: 1: cannot create .git/hooks/pre-commit: Read-only file system",
        "touch: cannot touch '.git/hooks/pre-commit': Read-only file system",
    ] {
        let note = explain_refusal(out, &b, &ws).unwrap();
        assert!(
            note.contains(".git/hooks/pre-commit is in the workspace's git repository"),
            "{out}: {note}"
        );
    }
    // A file whose name ends like a shell's is still the file.
    let note = explain_refusal(
        "w.sh: 1: cannot create check.sh: Read-only file system",
        &b,
        &ws,
    );
    assert!(note.unwrap().contains("check.sh is read-only for agents"));
    assert_eq!(explain_refusal("all good", &b, &ws), None);
}

#[cfg(target_os = "linux")]
#[test]
fn landlock_keeps_a_command_out_of_the_hidden_dirs_and_writing_only_where_it_works() {
    let abi = match landlock_abi() {
        Ok(abi) => abi,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let l = Layout::new();
    std::fs::create_dir_all(l.base.join("other")).unwrap();
    std::fs::write(l.base.join("other/kept.txt"), "kept").unwrap();
    let b = Boundary {
        hide: vec![l.base.join("run"), l.base.join("state")],
        write: vec![l.base.join("ws"), std::env::temp_dir()],
        ..Boundary::default()
    };
    let run = |cmd: &str| {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", cmd]).current_dir(l.base.join("ws"));
        landlock_rules::confine(&mut c, &l.base.join("ws"), &b);
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for cmd in [
        "cat ../run/t.operator",
        "ls ../run",
        "cat ../state/teams/t/state.db",
        "echo x > ../run/planted",
        "echo x > ../escape",
    ] {
        let (code, err) = run(cmd);
        assert_ne!(code, 0, "{cmd} was allowed");
        assert!(err.contains("Permission denied"), "{cmd}: {err}");
    }
    for cmd in [
        "cat ../other/kept.txt",
        "echo made > inside.txt",
        "f=$(mktemp) && echo t > $f && rm $f",
    ] {
        let (code, err) = run(cmd);
        assert_eq!(code, 0, "{cmd} was refused: {err}");
    }
    if abi >= 6 {
        let (code, _) = run("kill -0 $PPID");
        assert_ne!(code, 0, "signalled its parent");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_landlock_cover_leaves_out_exactly_the_hidden_dirs() {
    let l = Layout::new();
    let base = &l.base;
    for d in ["a/deny", "a/keep", "b"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(base.join("a/file"), "").unwrap();
    std::os::unix::fs::symlink(base.join("a/deny"), base.join("a/link")).unwrap();
    let mut out = Vec::new();
    landlock_rules::cover(&base.join("a"), &[base.join("a/deny")], &mut out);
    out.sort();
    let want: Vec<PathBuf> = ["a/file", "a/keep"].iter().map(|p| base.join(p)).collect();
    assert_eq!(out, want, "symlinks and the denied dir left out");
}

/// Without a namespace (the Landlock fallback, or nothing), a command cannot make a Unix
/// socket, so it cannot connect to the team's tmux server or daemon socket; pipes still work.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn the_fallback_refuses_unix_sockets_and_keeps_pipes() {
    let l = Layout::new();
    let sock = l.base.join("run/t.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let b = Boundary::default();
    for m in [Mechanism::None("test".into()), Mechanism::Landlock(1)] {
        if matches!(m, Mechanism::Landlock(_)) && landlock_abi().is_err() {
            continue;
        }
        let probe = format!(
            "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('{}')\nprint('connected')",
            sock.display()
        );
        let out = command_with(
            &m,
            &b,
            &l.base,
            "python3",
            &["-c".into(), probe.into()],
            Options::default(),
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{m:?}: connected");
        assert!(err.contains("Operation not permitted"), "{m:?}: {err}");
        let out = command_with(
            &m,
            &b,
            &l.base,
            "sh",
            &["-c".into(), "echo piped | cat".into()],
            Options::default(),
        )
        .output()
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n", "{m:?}");
    }
}

#[test]
fn a_workspace_kept_inside_the_state_dir_is_writable_and_the_state_beside_it_hidden() {
    // The demo's workspace is <home>/teams/demo/workspace: inside the hidden state dirs. Under
    // each mechanism this machine has (CI installs bubblewrap; Landlock is the kernel's).
    let mut mechanisms = Vec::new();
    if let Ok(bwrap) = &support().namespace {
        mechanisms.push(Mechanism::Namespace(bwrap.clone()));
    }
    if let Ok(abi) = landlock_abi() {
        mechanisms.push(Mechanism::Landlock(abi));
    }
    assert!(!mechanisms.is_empty(), "no sandbox on this machine");
    for m in mechanisms {
        let l = Layout::new();
        let ws = l.base.join("state/teams/t/workspace");
        std::fs::create_dir_all(&ws).unwrap();
        let mut work = l.work();
        work.workspace = ws.clone();
        work.control.push(l.base.join("state/teams/t"));
        let b = Boundary::for_work(&work);
        let out = command_with(
            &m,
            &b,
            &ws,
            "sh",
            &[
                "-c".into(),
                "mkdir -p src && echo hi > src/x && cat src/x && cat ../state.db".into(),
            ],
            Options::default(),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The state db's content ("state") is never printed: only the file written here.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hi\n",
            "{m:?}: {text}"
        );
        assert!(!out.status.success(), "{m:?}: {text}");
        assert_eq!(std::fs::read_to_string(ws.join("src/x")).unwrap(), "hi\n");
    }
}

#[test]
fn root_inside_keeps_no_capability_and_cannot_unmount_what_hides_the_control_plane() {
    // Started by root, a command once kept CapEff=000001fffeffffff: it `umount -l`ed the tmpfs
    // over the runtime dir and read the operator credential.
    if !namespace_or_skip() {
        return;
    }
    let l = Layout::new();
    let b = Boundary::for_work(&l.work());
    let run = l.base.join("run");
    let (_, out) = l.run(
        &b,
        &format!(
            "grep CapEff /proc/self/status; umount -l {run} 2>/dev/null; \
             cat {run}/t.operator 2>/dev/null; echo end",
            run = run.display()
        ),
    );
    assert_eq!(out, "CapEff:\t0000000000000000\nend\n", "{out}");
}

#[test]
fn a_command_sees_a_minimal_dev_and_no_other_terminal() {
    // With /dev bound whole, a command wrote a fake "APPROVED" screen into the leader's pty.
    if !namespace_or_skip() {
        return;
    }
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = nix::unistd::ttyname(&pty.slave).unwrap();
    let l = Layout::new();
    let b = Boundary::for_work(&l.work());
    let (_, out) = l.run(
        &b,
        &format!(
            "printf APPROVED > {} 2>/dev/null && echo wrote; ls /dev | tr '\\n' ' '; echo",
            slave.display()
        ),
    );
    assert!(!out.contains("wrote"), "{out}");
    // Only what a program needs: no disks, no other terminals, no kernel memory.
    for gone in ["sda", "vda", "kmsg", "mem", "tty0", "console"] {
        assert!(
            !out.split_whitespace().any(|d| d == gone),
            "/dev/{gone}: {out}"
        );
    }
    for there in [
        "null", "zero", "random", "urandom", "pts", "ptmx", "shm", "tty",
    ] {
        assert!(
            out.split_whitespace().any(|d| d == there),
            "/dev/{there}: {out}"
        );
    }
    let mut buf = [0u8; 64];
    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let got = nix::unistd::read(&pty.master, &mut buf).unwrap_or(0);
    assert_eq!(got, 0, "the pty got {:?}", &buf[..got]);
}

#[test]
fn nothing_inside_types_into_a_terminal_not_even_its_own() {
    // An interactive CLI keeps its pane's terminal; with TIOCSTI it could type `y 1` into
    // whatever reads that terminal. Run under each mechanism, on a pty that is the command's
    // controlling terminal (as a pane's is).
    let mut mechanisms = Vec::new();
    if let Ok(bwrap) = &support().namespace {
        mechanisms.push(Mechanism::Namespace(bwrap.clone()));
    }
    if let Ok(abi) = landlock_abi() {
        mechanisms.push(Mechanism::Landlock(abi));
    }
    mechanisms.push(Mechanism::None("test".into()));
    let probe = "import fcntl, termios\n\
                 for req in (termios.TIOCSTI, 0x541C):\n\
                 \x20   try:\n\
                 \x20       fcntl.ioctl(0, req, b'x')\n\
                 \x20       print('typed')\n\
                 \x20   except OSError as e:\n\
                 \x20       print('refused', e.errno)\n";
    for m in mechanisms {
        let l = Layout::new();
        let b = Boundary::for_work(&l.work());
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = pty.slave.try_clone().unwrap();
        let mut c = command_with(
            &m,
            &b,
            &l.base.join("ws"),
            "python3",
            &["-c".into(), probe.into()],
            Options {
                interactive: true,
                ..Options::default()
            },
        );
        c.stdin(std::process::Stdio::from(slave))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A session of its own whose controlling terminal is the pty, as a pane's process has.
        // SAFETY: setsid and ioctl only, between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            use std::os::unix::process::CommandExt as _;
            c.pre_exec(|| {
                if nix::libc::setsid() < 0 || nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text,
            format!("refused {0}\nrefused {0}\n", nix::libc::EPERM),
            "{m:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
