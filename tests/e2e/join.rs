//! Workers that dial in (issue 66, docs/JOIN.md): a team listening over TLS, `agent-team join`,
//! `agent-team-worker --join URL` with the token in its environment; the daemon killed mid-task;
//! every refusal; a flood of idle TCP connections.

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A worker started by hand, killed when the test ends.
struct Worker {
    child: Child,
    log: std::path::PathBuf,
}

impl Worker {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `agent-team-worker --join URL` in `cwd` with `token` in its environment (none: no
/// token at all); its output goes to `log`.
fn worker(sb: &Sandbox, url: &str, token: Option<&str>, cwd: &Path, log: &str) -> Worker {
    let log = sb.path(log);
    let f = std::fs::File::create(&log).unwrap();
    let mut c = Command::new(bin("agent-team-worker"));
    // Nothing of the team's machine: no home, runtime dir or socket of ours.
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AGENT_TEAM_")) {
            c.env_remove(k);
        }
    }
    c.env("TMPDIR", sb.path("tmp"))
        .args(["--join", url])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
    if let Some(t) = token {
        c.env("AGENT_TEAM_JOIN_TOKEN", t);
    }
    Worker {
        child: c.spawn().unwrap(),
        log,
    }
}

/// Waits for a worker that must be refused: its exit code and output.
fn refused(mut w: Worker) -> (i32, String) {
    let mut status = None;
    wait_for("the worker to exit", T, || {
        status = w.child.try_wait().unwrap();
        status.is_some()
    });
    (status.unwrap().code().unwrap_or(-1), w.output())
}

/// `agent-team join NAME ARGS --json`: (url, token).
fn join(sb: &Sandbox, team: &str, name: &str, args: &[&str]) -> (String, String) {
    let mut a = vec!["--team", team, "join", name, "--json"];
    a.extend_from_slice(args);
    let v: serde_json::Value = serde_json::from_str(&sb.ok(&a)).unwrap();
    (
        v["url"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

/// An exec team (no model) with `tasks`, up on the process backend, listening for workers on
/// the loopback.
fn up(sb: &Sandbox, team: &str, tasks: &str) {
    sb.write_team_file(&format!("name = \"{team}\"\n{tasks}"));
    sb.ok(&[
        "up",
        "--backend",
        "process",
        "--detach",
        "--join-listen",
        "127.0.0.1:0",
    ]);
}

fn daemon_pid(sb: &Sandbox, team: &str) -> Option<u32> {
    agent_team_client::Client::operator(&sb.team(team))
        .ok()
        .map(|c| c.welcome().daemon_pid)
}

/// The files of a task held until released, in the dir its worker runs in.
struct Held {
    remote: std::path::PathBuf,
    marker: std::path::PathBuf,
    release: std::path::PathBuf,
    done: std::path::PathBuf,
}

/// [`up`] with one task whose command runs where the worker runs (`where`; the only place it
/// may write), marks its start and holds until released.
fn up_with_a_held_task(sb: &Sandbox, team: &str) -> Held {
    let remote = sb.path("remote");
    std::fs::create_dir(&remote).unwrap();
    let h = Held {
        marker: remote.join("started"),
        release: remote.join("release"),
        done: remote.join("done"),
        remote,
    };
    let cmd = format!(
        "echo run >> {m}; while [ ! -e {r} ]; do sleep 0.05; done; pwd > where; echo done >> {d}",
        m = h.marker.display(),
        r = h.release.display(),
        d = h.done.display()
    );
    up(
        sb,
        team,
        &format!("[[tasks]]\nkey = \"a\"\ntitle = \"remote task\"\nrun = \"{cmd}\"\n"),
    );
    h
}

#[test]
fn a_joined_worker_does_its_task_once_across_a_daemon_kill() {
    let sb = Sandbox::new();
    let team = "jn";
    let Held {
        remote,
        marker,
        release,
        done,
    } = up_with_a_held_task(&sb, team);
    let (url, token) = join(&sb, team, "w1", &[]);
    assert!(url.starts_with("agent-teams://127.0.0.1:"), "{url}");
    assert!(url.contains("#sha256="), "{url}");
    // On the roster before it joins, as a member run by someone else.
    let w1 = sb.agent(team, "w1");
    assert_eq!(w1.backend, "external");
    assert!(!w1.connected);
    let w = worker(&sb, &url, Some(&token), &remote, "w1.log");
    wait_for_or(
        "the joined worker to start its task",
        T,
        || marker.exists(),
        || format!("{}\n{:?}", w.output(), sb.tasks(team)),
    );
    assert!(sb.agent(team, "w1").connected, "{}", w.output());

    // The daemon dies mid-task and comes back on the same port.
    let pid = daemon_pid(&sb, team).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the daemon to be gone", T, || {
        daemon_pid(&sb, team) != Some(pid)
    });
    // `ps` brings it back (or the guardian did already).
    let _ = sb.run(&["--team", team, "ps"]);
    wait_for("the daemon to be back", T, || {
        daemon_pid(&sb, team).is_some_and(|p| p != pid)
    });
    wait_for("the worker to reconnect over TLS", T, || {
        sb.agent(team, "w1").connected
    });
    std::fs::write(&release, "").unwrap();
    wait_for("the task to complete", T, || {
        sb.task_is(team, 1, TaskStatus::Completed)
    });
    let task = &sb.tasks(team)[0];
    assert_eq!(
        (task.owner.as_deref(), task.attempts),
        (Some("w1"), 1),
        "claimed once"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    assert_eq!(std::fs::read_to_string(&done).unwrap().lines().count(), 1);
    let at = std::fs::read_to_string(remote.join("where")).unwrap();
    assert_eq!(
        Path::new(at.trim()).canonicalize().unwrap(),
        remote.canonicalize().unwrap(),
        "the command ran where the worker runs"
    );
    sb.ok(&["--team", team, "down"]);
    drop(w);
    drop(sb);
}

/// One frame sent over a TLS connection to the endpoint: the first frame back.
fn tls_hello(url: &str, hello: &Hello) -> ServerFrame {
    let url = agent_team_client::join::JoinUrl::parse(url).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = agent_team_client::join::connect_tls(&url).await.unwrap();
        s.write_all(&frame::encode(&ClientFrame::Hello(hello.clone())).unwrap())
            .await
            .unwrap();
        s.flush().await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    })
}

fn refusal(f: ServerFrame) -> ErrorBody {
    match f {
        ServerFrame::Error { error } => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn join_refuses_replays_expiry_other_names_the_operator_plain_tcp_and_a_wrong_pin() {
    let sb = Sandbox::new();
    let team = "jr";
    up(&sb, team, "");
    let here = sb.path("remote");
    std::fs::create_dir(&here).unwrap();

    // A token used once works; used again it is refused.
    let (url, token) = join(&sb, team, "w1", &[]);
    let w = worker(&sb, &url, Some(&token), &here, "w1.log");
    wait_for("w1 to join", T, || sb.agent(team, "w1").connected);
    let (code, out) = refused(worker(&sb, &url, Some(&token), &here, "replay.log"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown or already used join token"), "{out}");
    drop(w);

    // No token: said so, nothing sent.
    let (code, out) = refused(worker(&sb, &url, None, &here, "none.log"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("AGENT_TEAM_JOIN_TOKEN"), "{out}");

    // Another name's URL with w2's token.
    let (url2, token2) = join(&sb, team, "w2", &[]);
    let other = url2.replace("/jr/w2#", "/jr/w1#");
    let (code, out) = refused(worker(&sb, &other, Some(&token2), &here, "other.log"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("made for another name"), "{out}");

    // A wrong pin: the worker refuses the team's certificate.
    let pin = url2.split("#sha256=").nth(1).unwrap();
    let flipped: String = pin
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' { '1' } else { '0' }
            } else {
                c
            }
        })
        .collect();
    let wrong = url2.replace(pin, &flipped);
    let (code, out) = refused(worker(&sb, &wrong, Some(&token2), &here, "pin.log"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not match the pin"), "{out}");

    // Expired: a token of one second, used once its second is over.
    let (url3, token3) = join(&sb, team, "w3", &["--ttl", "1s"]);
    let until = std::time::SystemTime::now() + Duration::from_secs(2);
    wait_for("the token's time to be over", T, || {
        std::time::SystemTime::now() >= until
    });
    let (code, out) = refused(worker(&sb, &url3, Some(&token3), &here, "expired.log"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("expired"), "{out}");

    // The operator's credential over TCP.
    let tp = sb.team(team);
    let op = agent_team_client::operator_hello(&tp).unwrap();
    let e = refusal(tls_hello(&url2, &op));
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("not accepted over the network"), "{e:?}");

    // A join hello on the Unix socket.
    let (_, token4) = join(&sb, team, "w4", &[]);
    let join_hello = Hello {
        auth: Auth::Join {
            name: Some("w4".into()),
            token: token4.clone(),
        },
        ..op.clone()
    };
    match agent_team_client::Client::connect(&tp.socket, &join_hello) {
        Err(agent_team_client::ClientError::Refused(e)) => {
            assert_eq!(e.code, ErrorCode::Unauthorized);
            assert!(
                e.message.contains("only on the team's TLS endpoint"),
                "{e:?}"
            );
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("a join hello was welcomed on the Unix socket"),
    }
    // The token is still good over TLS: the welcome carries w4's secret.
    match tls_hello(&url2, &join_hello) {
        ServerFrame::Welcome(w) => {
            assert_eq!(w.identity, "w4");
            assert!(w.secret.is_some_and(|s| s.len() == 64));
        }
        other => panic!("expected a welcome, got {other:?}"),
    }

    // Plain TCP: no TLS, no welcome (the handshake fails and the connection closes).
    let addr = url2
        .trim_start_matches("agent-teams://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    use std::io::{Read, Write};
    plain
        .write_all(&frame::encode(&ClientFrame::Hello(op.clone())).unwrap())
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("welcome") && !text.contains("daemon_pid"),
        "plain TCP got {text}"
    );
    sb.ok(&["--team", team, "down"]);
}

#[test]
fn a_flood_of_idle_tcp_connections_does_not_lock_the_operator_out() {
    let sb = Sandbox::new();
    let team = "jf";
    up(&sb, team, "");
    let (url, _) = join(&sb, team, "w1", &[]);
    let addr = url
        .trim_start_matches("agent-teams://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // Bounded: 300 connections that never say a word, held open.
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = std::net::TcpStream::connect(&addr) {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 100, "only {} connections", idle.len());
    let out = sb.ok(&["--team", team, "ps", "--json"]);
    assert!(out.contains("leader"), "{out}");
    // A worker still joins past the idle ones (they are the first to make room).
    let (url, token) = join(&sb, team, "w2", &[]);
    let here = sb.path("remote");
    std::fs::create_dir(&here).unwrap();
    let w = worker(&sb, &url, Some(&token), &here, "w2.log");
    wait_for("w2 to join past the flood", T, || {
        sb.agent(team, "w2").connected
    });
    drop(idle);
    drop(w);
    sb.ok(&["--team", team, "down"]);
}

/// A TCP forwarder on the loopback standing for the network between a joined worker and its
/// team: every connection it carries can be cut at once.
struct Cutter {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Cutter {
    /// Forwards connections on a new loopback port to `to`.
    fn start(to: std::net::SocketAddr) -> Cutter {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (acc, op) = (accepted.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                {
                    let mut o = op.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                acc.fetch_add(1, Ordering::SeqCst);
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Cutter {
            port,
            accepted,
            open,
        }
    }

    /// Connections carried so far.
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cuts every connection it carries.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_joined_worker_whose_tcp_link_is_cut_mid_task_reconnects_and_does_its_task_once() {
    let sb = Sandbox::new();
    let team = "jcut";
    let Held {
        remote,
        marker,
        release,
        done,
    } = up_with_a_held_task(&sb, team);
    let (url, token) = join(&sb, team, "w1", &[]);
    // The worker dials the team through the cutter: the same URL (and pin) on its port.
    let parsed = agent_team_client::join::JoinUrl::parse(&url).unwrap();
    let endpoint: std::net::SocketAddr =
        format!("{}:{}", parsed.host, parsed.port).parse().unwrap();
    let cutter = Cutter::start(endpoint);
    let via = agent_team_client::join::JoinUrl {
        port: cutter.port,
        ..parsed
    }
    .to_string();
    let w = worker(&sb, &via, Some(&token), &remote, "w1.log");
    wait_for_or(
        "the joined worker to start its task",
        T,
        || marker.exists(),
        || format!("{}\n{:?}", w.output(), sb.tasks(team)),
    );
    assert!(sb.agent(team, "w1").connected, "{}", w.output());

    // The link is cut mid-task: the worker dials again (with its secret now) and carries on.
    let before = cutter.accepted();
    cutter.cut();
    wait_for_or(
        "the worker to reconnect over a new TCP connection",
        T,
        || cutter.accepted() > before && sb.agent(team, "w1").connected,
        || w.output(),
    );
    std::fs::write(&release, "").unwrap();
    wait_for_or(
        "the task to complete",
        T,
        || sb.task_is(team, 1, TaskStatus::Completed),
        || format!("{}\n{:?}", w.output(), sb.tasks(team)),
    );
    let task = &sb.tasks(team)[0];
    assert_eq!(
        (task.owner.as_deref(), task.attempts),
        (Some("w1"), 1),
        "claimed once"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    assert_eq!(std::fs::read_to_string(&done).unwrap().lines().count(), 1);
    sb.ok(&["--team", team, "down"]);
    drop(w);
}
