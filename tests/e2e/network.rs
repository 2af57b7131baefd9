//! Network by asking (issue 62): a sandboxed process has a network of its own whose only way
//! out is the team's egress proxy. Here the forwarder (`agent-team-bridge net`) in a real
//! network namespace, in front of the real proxy (`agent-team-egress`), with `curl` inside and
//! listeners on the host's 127.0.0.1; and then a team's task command doing the same through
//! its daemon, where an unlisted destination is a permission request.

use agent_team_e2e::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// A plain HTTP server on the host's 127.0.0.1 that answers `hello from PORT` and keeps the
/// request lines it saw.
pub(crate) struct Listener {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    pub fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(&c);
                    let mut first = String::new();
                    let _ = r.read_line(&mut first);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    s.lock().unwrap().push(first.trim_end().to_string());
                    let body = format!("hello from {port}\n");
                    let _ = (&c).write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                });
            }
        });
        Listener { port, seen }
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Whether bubblewrap can make a network namespace here (else why not).
pub(crate) fn netns() -> Result<(), String> {
    let out = Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--unshare-net", "--", "true"])
        .output()
        .map_err(|e| format!("bwrap: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The real proxy on `dir/proxy.sock`, for `policy`, served on a thread of its own.
fn proxy(dir: &Path, policy: agent_team_egress::Policy) -> PathBuf {
    let sock = dir.join("proxy.sock");
    let (tx, rx) = std::sync::mpsc::channel();
    let s = sock.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::UnixListener::bind(&s).unwrap();
            tx.send(()).unwrap();
            let p =
                agent_team_egress::Proxy::new(policy, None, agent_team_egress::Limits::default());
            let _ = p.serve(l).await;
        });
    });
    rx.recv().unwrap();
    sock
}

/// `sh -c script` as the forwarder's program, in a network namespace of its own, with `dir`
/// (holding the proxy's socket) bound in.
fn in_netns(dir: &Path, forward: &[u16], script: &str) -> Output {
    let mut c = Command::new("bwrap");
    c.args(["--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev"])
        .args(["--proc", "/proc", "--unshare-pid", "--unshare-net"])
        .arg("--bind")
        .arg(dir)
        .arg(dir)
        .arg("--")
        .arg(bin("agent-team-bridge"))
        .arg("net")
        .arg("--socket")
        .arg(dir.join("proxy.sock"));
    for p in forward {
        c.arg("--forward").arg(p.to_string());
    }
    c.args(["--", "sh", "-c", script]).output().unwrap()
}

#[test]
fn the_forwarder_carries_a_network_namespace_to_the_proxy_and_nothing_else() {
    if let Err(why) = netns() {
        eprintln!("no network namespace here, skipped: {why}");
        return;
    }
    let (listed, unlisted, model) = (Listener::start(), Listener::start(), Listener::start());
    let dir = tempfile::tempdir().unwrap();
    let policy = agent_team_egress::Policy {
        mode: agent_team_egress::Mode::List,
        allow: [listed.port, model.port]
            .iter()
            .map(|p| agent_team_egress::Pattern::parse(&format!("127.0.0.1:{p}")).unwrap())
            .collect(),
    };
    proxy(dir.path(), policy);
    let script = format!(
        "echo \"proxy=$HTTP_PROXY $https_proxy $ALL_PROXY no=$NO_PROXY\"
         curl -s --max-time 5 http://127.0.0.1:{l}/direct; echo \"direct=$?\"
         curl -s --max-time 20 --noproxy '' http://127.0.0.1:{l}/listed
         curl -s --max-time 20 --noproxy '' http://127.0.0.1:{u}/unlisted
         curl -s --max-time 20 http://127.0.0.1:{m}/model
         exit 7",
        l = listed.port,
        u = unlisted.port,
        m = model.port,
    );
    let out = in_netns(dir.path(), &[model.port], &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    // The program's own exit status.
    assert_eq!(out.status.code(), Some(7), "{all}");
    let proxy = "http://127.0.0.1:3128";
    assert!(
        stdout.contains(&format!(
            "proxy={proxy} {proxy} {proxy} no=localhost,127.0.0.1,::1"
        )),
        "{all}"
    );
    // The host's loopback is not the sandbox's: connection refused (curl's 7).
    assert!(stdout.contains("direct=7"), "{all}");
    // Through the proxy: the listed destination answers, the unlisted one is refused with how
    // to allow it, and the forwarded model port works with no proxy setting at all.
    assert!(
        stdout.contains(&format!("hello from {}", listed.port)),
        "{all}"
    );
    assert!(
        stdout.contains(&format!(
            "127.0.0.1:{} is not on the team's list",
            unlisted.port
        )),
        "{all}"
    );
    assert!(
        stdout.contains(&format!("hello from {}", model.port)),
        "{all}"
    );
    assert_eq!(listed.requests(), ["GET /listed HTTP/1.1"]);
    assert_eq!(model.requests(), ["GET /model HTTP/1.1"]);
    assert!(unlisted.requests().is_empty());
}

#[test]
fn the_forwarders_program_keeps_its_signals_and_exit_status() {
    if let Err(why) = netns() {
        eprintln!("no network namespace here, skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    proxy(dir.path(), agent_team_egress::Policy::default());
    // Killed by a signal: 128 + its number, as a shell reports it.
    let out = in_netns(dir.path(), &[], "kill -TERM $$");
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    // A program that cannot run: 127 and why.
    let out = in_netns(dir.path(), &[], "exec /nonexistent/program");
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    // Without its program, or with a bad port, it says how it is used.
    for args in [
        &["--socket", "s"][..],
        &["--socket", "s", "--forward", "x", "--", "true"],
    ] {
        let out = Command::new(bin("agent-team-bridge"))
            .arg("net")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
    }
}

const T: std::time::Duration = std::time::Duration::from_secs(60);

/// A team of one exec teammate (`n1`, its commands allowed; `keep` holds a long task so the
/// run does not end between tests' tasks) with `network` as its `[sandbox.network]` table, up
/// on the process backend.
fn net_team(sb: &Sandbox, team: &str, network: &str) {
    crate::sandbox::up_in_ws(
        sb,
        "process",
        &format!(
            "name = \"{team}\"\n[sandbox.network]\n{network}\n[roles.worker]\n\
             permissions = {{ bash = \"allow\" }}\n[[teammates]]\nname = \"n1\"\nrole = \"worker\"\n\
             [[teammates]]\nname = \"keep\"\nrole = \"worker\"\n\
             [[tasks]]\nkey = \"keep\"\ntitle = \"keep the team up\"\nrun = \"sleep 600\"\nassign = \"keep\"\n"
        ),
    );
}

/// Adds a task with command `run` for n1 and returns its id.
fn add_task(sb: &Sandbox, team: &str, run: &str) -> u64 {
    let out = sb.ok(&[
        "--team", team, "task", "add", "net", "--run", run, "--assign", "n1", "--json",
    ]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_u64()
        .unwrap()
}

/// The task's result once it ended, and whether it completed.
fn ended(sb: &Sandbox, team: &str, id: u64) -> (bool, String) {
    use agent_team_protocol::TaskStatus;
    wait_for(&format!("task {id} to end"), T, || {
        sb.tasks(team)
            .iter()
            .any(|t| t.id == id && matches!(t.status, TaskStatus::Completed | TaskStatus::Failed))
    });
    let t = sb.tasks(team).into_iter().find(|t| t.id == id).unwrap();
    (
        t.status == TaskStatus::Completed,
        t.result.unwrap_or_default(),
    )
}

/// The pending network request of n1, once there is one.
fn network_request(sb: &Sandbox, team: &str) -> agent_team_protocol::PermRequest {
    let mut found = None;
    wait_for("a network permission request", T, || {
        found = sb.pending_from(team, "n1").filter(|p| p.tool == "network");
        found.is_some()
    });
    found.unwrap()
}

/// Whether task commands run in a namespace here (else why not).
fn namespaced(sb: &Sandbox) -> Result<(), String> {
    netns()?;
    sb.doctor_check("namespace")
}

#[test]
fn a_task_commands_network_is_asked_for_and_decided_like_any_permission() {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no network namespace for task commands here, skipped: {why}");
        return;
    }
    let team = "netask";
    let l = Listener::start();
    net_team(&sb, team, "mode = \"ask\"");
    let url = format!("http://127.0.0.1:{}", l.port);
    // (a) The host's loopback is not the sandbox's: refused at once, nothing asked.
    let id = add_task(
        &sb,
        team,
        &format!("curl -s --max-time 10 {url}/direct; echo direct=$?"),
    );
    let (_, out) = ended(&sb, team, id);
    assert!(out.contains("direct=7"), "{out}");
    assert!(sb.pending_from(team, "n1").is_none());
    // (b) Through the proxy: a pending `network 127.0.0.1:PORT` request the command waits on;
    // approved, the listener sees the request and the command its answer.
    let id = add_task(
        &sb,
        team,
        &format!("curl -sS --fail-with-body --noproxy '' {url}/asked"),
    );
    let req = network_request(&sb, team);
    assert_eq!(req.input, format!("127.0.0.1:{}", l.port));
    assert!(req.reason.contains(&format!("task {id}")), "{req:?}");
    assert!(l.requests().is_empty(), "it went out before the decision");
    sb.ok(&["--team", team, "approve", &req.id.to_string()]);
    let (ok, out) = ended(&sb, team, id);
    assert!(
        ok && out.contains(&format!("hello from {}", l.port)),
        "{out}"
    );
    assert_eq!(l.requests(), ["GET /asked HTTP/1.1"]);
    // (c) Denied: the command fails with the proxy's reason, and nothing went out.
    let id = add_task(
        &sb,
        team,
        &format!("curl -sS --fail-with-body --noproxy '' {url}/denied"),
    );
    let req = network_request(&sb, team);
    sb.ok(&["--team", team, "deny", &req.id.to_string()]);
    let (ok, out) = ended(&sb, team, id);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "network access to 127.0.0.1:{} was denied",
            l.port
        )),
        "{out}"
    );
    assert_eq!(l.requests().len(), 1);
    sb.ok(&["--team", team, "down"]);
}

#[test]
fn a_listed_destination_passes_unasked_and_the_sandboxs_own_loopback_works() {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no network namespace for task commands here, skipped: {why}");
        return;
    }
    let team = "netlist";
    let l = Listener::start();
    net_team(
        &sb,
        team,
        &format!("mode = \"list\"\nallow = [\"127.0.0.1:{}\"]", l.port),
    );
    // (d) Listed: through with no request.
    let id = add_task(
        &sb,
        team,
        &format!(
            "curl -sS --fail-with-body --noproxy '' http://127.0.0.1:{}/listed",
            l.port
        ),
    );
    let (ok, out) = ended(&sb, team, id);
    assert!(
        ok && out.contains(&format!("hello from {}", l.port)),
        "{out}"
    );
    assert_eq!(l.requests(), ["GET /listed HTTP/1.1"]);
    // Unlisted in mode list: refused with how to allow it, no request.
    let id = add_task(
        &sb,
        team,
        "curl -sS --fail-with-body --noproxy '' http://127.0.0.1:9/x",
    );
    let (ok, out) = ended(&sb, team, id);
    assert!(!ok && out.contains("is not on the team's list"), "{out}");
    // (e) A dev server the command starts on its own loopback answers it (no proxy: NO_PROXY).
    let id = add_task(
        &sb,
        team,
        "/usr/bin/python3 -c \"import http.server as h, threading, urllib.request as u; \
         s = h.HTTPServer(('127.0.0.1', 0), h.SimpleHTTPRequestHandler); \
         threading.Thread(target=s.serve_forever, daemon=True).start(); \
         print('served', u.urlopen('http://127.0.0.1:%d/' % s.server_port).status)\"",
    );
    let (ok, out) = ended(&sb, team, id);
    assert!(ok && out.contains("served 200"), "{out}");
    let perms = agent_team_client::Client::operator(&sb.team(team))
        .unwrap()
        .all_perms(true)
        .unwrap();
    assert!(perms.is_empty(), "{perms:?}");
    sb.ok(&["--team", team, "down"]);
}

/// Every network request of the team (decided ones included).
fn network_requests(sb: &Sandbox, team: &str) -> Vec<agent_team_protocol::PermRequest> {
    agent_team_client::Client::operator(&sb.team(team))
        .unwrap()
        .all_perms(true)
        .unwrap()
        .into_iter()
        .filter(|p| p.tool == "network")
        .collect()
}

#[test]
fn allow_always_lets_the_same_destination_through_with_no_new_request() {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no network namespace for task commands here, skipped: {why}");
        return;
    }
    let team = "netalways";
    let (l, other, third) = (Listener::start(), Listener::start(), Listener::start());
    net_team(&sb, team, "mode = \"ask\"");
    let curl = |port: u16, path: &str| {
        format!("curl -sS --fail-with-body --noproxy '' http://127.0.0.1:{port}/{path}")
    };
    // Asked once, allowed always.
    let id = add_task(&sb, team, &curl(l.port, "first"));
    let req = network_request(&sb, team);
    sb.ok(&["--team", team, "approve", "--always", &req.id.to_string()]);
    let (ok, out) = ended(&sb, team, id);
    assert!(
        ok && out.contains(&format!("hello from {}", l.port)),
        "{out}"
    );
    // The same destination again: through, and no new request at all.
    let id = add_task(&sb, team, &curl(l.port, "second"));
    let (ok, out) = ended(&sb, team, id);
    assert!(
        ok && out.contains(&format!("hello from {}", l.port)),
        "{out}"
    );
    assert_eq!(
        l.requests(),
        ["GET /first HTTP/1.1", "GET /second HTTP/1.1"]
    );
    let asked: Vec<u64> = network_requests(&sb, team).iter().map(|r| r.id).collect();
    assert_eq!(asked, [req.id]);
    // The rule is that host on that port: another port of it is asked again. Allowed always
    // with a pattern the person chose (`127.0.0.1:*`), every port of it passes from then on.
    let id = add_task(&sb, team, &curl(other.port, "other"));
    let req2 = network_request(&sb, team);
    assert_eq!(req2.input, format!("127.0.0.1:{}", other.port));
    sb.ok(&[
        "--team",
        team,
        "approve",
        "--always",
        "--pattern",
        "127.0.0.1:*",
        &req2.id.to_string(),
    ]);
    let (ok, out) = ended(&sb, team, id);
    assert!(ok, "{out}");
    let id = add_task(&sb, team, &curl(third.port, "third"));
    let (ok, out) = ended(&sb, team, id);
    assert!(
        ok && out.contains(&format!("hello from {}", third.port)),
        "{out}"
    );
    assert_eq!(network_requests(&sb, team).len(), 2);
    sb.ok(&["--team", team, "down"]);
}

#[test]
fn a_hooks_network_is_the_team_files_list_and_nothing_is_asked() {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no network namespace for hooks here, skipped: {why}");
        return;
    }
    let team = "nethook";
    let (listed, unlisted) = (Listener::start(), Listener::start());
    // Mode `ask` for the agents; a hook is never asked for: what is unlisted is refused.
    let hook = format!(
        "{{ curl -s --max-time 20 --noproxy '' http://127.0.0.1:{u}/hook-unlisted; \
         curl -s --max-time 20 --noproxy '' http://127.0.0.1:{l}/hook-listed; \
         curl -s --max-time 5 --proxy '' http://127.0.0.1:{l}/direct; echo \"direct=$?\"; \
         echo hook-done; }} >> hook-out 2>&1",
        u = unlisted.port,
        l = listed.port,
    );
    net_team(
        &sb,
        team,
        &format!(
            "mode = \"ask\"\nallow = [\"127.0.0.1:{}\"]\n[hooks]\ntask_created = '''{hook}'''",
            listed.port
        ),
    );
    let out_file = sb.path("ws/hook-out");
    wait_for("the hook to run", T, || {
        std::fs::read_to_string(&out_file).is_ok_and(|s| s.contains("hook-done"))
    });
    let out = std::fs::read_to_string(&out_file).unwrap();
    // Listed: through the daemon's own proxy. Unlisted: refused, with how to allow it.
    assert!(
        out.contains(&format!("hello from {}", listed.port)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "127.0.0.1:{} is not on the team's list",
            unlisted.port
        )),
        "{out}"
    );
    // The host's loopback is not the hook's.
    assert!(out.contains("direct=7"), "{out}");
    assert!(unlisted.requests().is_empty(), "{:?}", unlisted.requests());
    assert!(
        listed
            .requests()
            .contains(&"GET /hook-listed HTTP/1.1".to_string())
    );
    assert!(network_requests(&sb, team).is_empty());
    sb.ok(&["--team", team, "down"]);
}

/// A plain HTTP file server on the host's 127.0.0.1 serving `root` (a dir's `index.html` for a
/// path ending in `/`; JSON for names without an extension, as registries answer), keeping the
/// paths it was asked for.
struct FileServer {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    fn start(root: PathBuf) -> FileServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let (s, root) = (s.clone(), root.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(&c);
                    let mut first = String::new();
                    let _ = r.read_line(&mut first);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                    let path = path.split(['?', '#']).next().unwrap_or("/").to_string();
                    s.lock().unwrap().push(path.clone());
                    let mut file = root.join(path.trim_start_matches('/'));
                    if path.ends_with('/') {
                        file = file.join("index.html");
                    }
                    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
                    let kind = match ext {
                        "html" => "text/html",
                        "" | "json" => "application/json",
                        _ => "application/octet-stream",
                    };
                    let head = |status: &str, len: usize| {
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\n\
                             Connection: close\r\n\r\n"
                        )
                    };
                    let mut w = &c;
                    match std::fs::read(&file) {
                        Ok(body) if !path.contains("..") => {
                            let _ = w.write_all(head("200 OK", body.len()).as_bytes());
                            let _ = w.write_all(&body);
                        }
                        _ => {
                            let _ = w.write_all(head("404 Not Found", 0).as_bytes());
                        }
                    }
                });
            }
        });
        FileServer { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Writes, under `root`, three tiny registries served at `http://127.0.0.1:PORT/`: npm's
/// (`/npm/tinynpm` metadata, its `.tgz`), a PEP 503 simple index (`/simple/tinypy/`, a wheel)
/// and a cargo sparse registry (`/cargo/`: config.json, the index file, the `.crate`).
const REGISTRIES: &str = r#"
import base64, hashlib, io, json, os, sys, tarfile, zipfile
root, port = sys.argv[1], sys.argv[2]
base = "http://127.0.0.1:%s" % port
def put(rel, data):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
def targz(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz") as t:
        for name, text in files:
            data = text.encode()
            i = tarfile.TarInfo(name); i.size = len(data); i.mode = 0o644; i.mtime = 1
            t.addfile(i, io.BytesIO(data))
    return b.getvalue()
# npm
tgz = targz([("package/package.json", json.dumps({"name": "tinynpm", "version": "1.0.0", "main": "index.js"})),
             ("package/index.js", "module.exports = 'tinynpm works';\n")])
put("npm/files/tinynpm-1.0.0.tgz", tgz)
integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
version = {"name": "tinynpm", "version": "1.0.0", "main": "index.js",
           "dist": {"tarball": base + "/npm/files/tinynpm-1.0.0.tgz",
                    "shasum": hashlib.sha1(tgz).hexdigest(), "integrity": integrity}}
put("npm/tinynpm", json.dumps({"name": "tinynpm", "dist-tags": {"latest": "1.0.0"},
                               "versions": {"1.0.0": version}}))
# PEP 503
files = {"tinypy/__init__.py": "VALUE = 'tinypy works'\n",
         "tinypy-0.1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypy\nVersion: 0.1.0\n",
         "tinypy-0.1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
record = ""
for name, text in files.items():
    d = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record += "%s,sha256=%s,%d\n" % (name, d, len(text.encode()))
record += "tinypy-0.1.0.dist-info/RECORD,,\n"
files["tinypy-0.1.0.dist-info/RECORD"] = record
b = io.BytesIO()
with zipfile.ZipFile(b, "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
whl = b.getvalue()
put("files/tinypy-0.1.0-py3-none-any.whl", whl)
put("simple/index.html", '<html><body><a href="tinypy/">tinypy</a></body></html>\n')
put("simple/tinypy/index.html", '<html><body><a href="../../files/tinypy-0.1.0-py3-none-any.whl#sha256=%s">tinypy-0.1.0-py3-none-any.whl</a></body></html>\n' % hashlib.sha256(whl).hexdigest())
# cargo sparse registry
crate = targz([("tinycrate-0.1.0/Cargo.toml", '[package]\nname = "tinycrate"\nversion = "0.1.0"\nedition = "2021"\n'),
               ("tinycrate-0.1.0/src/lib.rs", 'pub fn value() -> &\'static str { "tinycrate works" }\n')])
put("cargo/dl/tinycrate-0.1.0.crate", crate)
put("cargo/config.json", json.dumps({"dl": base + "/cargo/dl/{crate}-{version}.crate"}))
put("cargo/ti/ny/tinycrate", json.dumps({"name": "tinycrate", "vers": "0.1.0", "deps": [],
    "cksum": hashlib.sha256(crate).hexdigest(), "features": {}, "yanked": False}) + "\n")
"#;

/// The programs of `names` not installed here (each test of one is skipped with a message).
fn missing(names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        .filter(|n| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {n}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect()
}

/// The task's result once it ended (within `within`), and whether it completed.
fn ended_within(sb: &Sandbox, team: &str, id: u64, within: std::time::Duration) -> (bool, String) {
    use agent_team_protocol::TaskStatus;
    wait_for(&format!("task {id} to end"), within, || {
        sb.tasks(team)
            .iter()
            .any(|t| t.id == id && matches!(t.status, TaskStatus::Completed | TaskStatus::Failed))
    });
    ended(sb, team, id)
}

/// Ordinary work in the default sandbox, through the proxy: `npm install`, `pip install` and
/// `cargo build` from registries on a listed destination (served here on the host's loopback,
/// so the commands drop the sandbox's `NO_PROXY`, which keeps the sandbox's own loopback off the
/// proxy), and `git status`/`diff`/`log` in the workspace. Whichever of npm, pip, cargo is not
/// installed is skipped with a message.
#[test]
fn npm_pip_cargo_and_git_work_through_the_proxy() {
    let sb = Sandbox::new();
    if let Err(why) = namespaced(&sb) {
        eprintln!("no network namespace for task commands here, skipped: {why}");
        return;
    }
    if !missing(&["python3"]).is_empty() {
        eprintln!("no python3 to build the registries: skipped");
        return;
    }
    let team = "network";
    let root = sb.path("registries");
    std::fs::create_dir_all(&root).unwrap();
    let server = FileServer::start(root.clone());
    let mut py = Command::new("python3")
        .arg("-")
        .arg(&root)
        .arg(server.port.to_string())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin
        .take()
        .unwrap()
        .write_all(REGISTRIES.as_bytes())
        .unwrap();
    assert!(py.wait().unwrap().success());
    // The workspace: a git repository with one commit, a Rust crate depending on the registry's.
    let ws = sb.path("ws");
    std::fs::create_dir_all(ws.join("rustapp/src")).unwrap();
    std::fs::write(
        ws.join("rustapp/Cargo.toml"),
        "[package]\nname = \"rustapp\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\ntinycrate = { version = \"0.1\", registry = \"local\" }\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("rustapp/src/main.rs"),
        "fn main() { println!(\"{}\", tinycrate::value()); }\n",
    )
    .unwrap();
    std::fs::write(ws.join("notes.txt"), "first\n").unwrap();
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "notes.txt"]);
    git(
        &ws,
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "-m",
            "the first commit",
        ],
    );
    std::fs::write(ws.join("notes.txt"), "first\nsecond\n").unwrap();
    net_team(
        &sb,
        team,
        &format!("mode = \"list\"\nallow = [\"127.0.0.1:{}\"]", server.port),
    );
    let url = format!("http://127.0.0.1:{}", server.port);
    let long = std::time::Duration::from_secs(300);
    let run = |cmd: String| {
        let id = add_task(&sb, team, &format!("unset NO_PROXY no_proxy; {cmd}"));
        ended_within(&sb, team, id, long)
    };
    let skipped = missing(&["npm", "node", "cargo"]);
    if skipped.iter().any(|n| *n == "npm" || *n == "node") {
        eprintln!("no npm/node here: npm install skipped");
    } else {
        let (ok, out) = run(format!(
            "mkdir -p npmapp && cd npmapp && npm install tinynpm --registry {url}/npm/ \
             --no-audit --no-fund --no-update-notifier 2>&1 && node -e \"console.log(require('tinynpm'))\""
        ));
        assert!(ok && out.contains("tinynpm works"), "npm: {out}");
    }
    // pip in a virtual environment, as a project would (a pyenv shim's own pip wants to
    // rehash pyenv's shims after an install, which the sandbox keeps read-only).
    let pip = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip {
        eprintln!("no python3 venv/ensurepip here: pip install skipped");
    } else {
        let (ok, out) = run(format!(
            "python3 -m venv .venv && .venv/bin/pip install --no-cache-dir \
             --disable-pip-version-check --index-url {url}/simple/ tinypy 2>&1 && \
             .venv/bin/python -c 'import tinypy; print(tinypy.VALUE)'"
        ));
        assert!(ok && out.contains("tinypy works"), "pip: {out}");
    }
    if skipped.contains(&"cargo") {
        eprintln!("no cargo here: cargo build skipped");
    } else {
        let (ok, out) = run(format!(
            "cd rustapp && unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR && \
             CARGO_REGISTRIES_LOCAL_INDEX=sparse+{url}/cargo/ cargo build -q 2>&1 && ./target/debug/rustapp"
        ));
        assert!(ok && out.contains("tinycrate works"), "cargo: {out}");
    }
    // git reads the workspace's repository (its .git read-only) as it always did.
    let (ok, out) =
        run("git status --short && git diff --stat && git log --oneline --format=%s".into());
    assert!(ok, "git: {out}");
    assert!(out.contains("M notes.txt"), "git status: {out}");
    assert!(out.contains("notes.txt | 1 +"), "git diff: {out}");
    assert!(out.contains("the first commit"), "git log: {out}");
    // It all went through the proxy to the listed registry, and nothing was asked.
    let seen = server.requests();
    for (tool, path) in [
        ("npm", "/npm/files/tinynpm-1.0.0.tgz"),
        ("cargo", "/cargo/dl/tinycrate-0.1.0.crate"),
    ] {
        if !skipped.contains(&tool) {
            assert!(
                seen.iter().any(|p| p == path),
                "{path} not fetched: {seen:?}"
            );
        }
    }
    if pip {
        assert!(
            seen.iter().any(|p| p.ends_with(".whl")),
            "no wheel fetched: {seen:?}"
        );
    }
    assert!(network_requests(&sb, team).is_empty());
    sb.ok(&["--team", team, "down"]);
}
