//! Kubernetes, as far as this machine goes (issue 66, docs/KUBERNETES.md): the Pod that
//! `agent-team kube manifest` writes, played by `podman kube play` against a team listening on
//! the loopback, joins the team over TLS and does its task; `podman kube down` then leaves no
//! pod, container or secret. The image is the container tests' (`agent_team_e2e::container`).
//!
//! Three things of this podman (4.3, Debian's) are met here, not in the manifest:
//! - the pod's infra ("pause") container: podman builds its own from `catatonit`, which is not
//!   installed; `infra_image` is an image made from the test image that sleeps;
//! - runc refuses ulimits above the caller's: `default_ulimits` at the caller's own
//!   (as `ulimits()` in crates/pane/src/container.rs does for `podman run`);
//! - a `Secret` document is stored by `kube play` in a form its own `secretKeyRef` cannot read
//!   (`secret … is not valid JSON`): the test makes that podman secret itself, in the form
//!   podman reads (a JSON map of base64 values), from the manifest's Secret, and plays the rest.
//!
//! Both settings go through `CONTAINERS_CONF`, for the test's podman calls only.

use agent_team_e2e::container::image;
use agent_team_e2e::*;
use agent_team_protocol::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(90);
/// The infra image made from the test image.
const PAUSE: &str = "localhost/agent-team-e2e-pause:1";

/// `podman ARGS` with the test's containers.conf: (success, stdout + stderr).
fn podman(conf: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The infra image: `image` sleeping forever (made once, offline, from the local image).
fn pause_image(conf: &Path, image: &str, dir: &Path) -> String {
    if podman(conf, &["image", "exists", PAUSE]).0 {
        return PAUSE.into();
    }
    let ctx = dir.join("pause");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {image}\nENTRYPOINT [\"/bin/sleep\", \"infinity\"]\n"),
    )
    .unwrap();
    let (ok, out) = podman(
        conf,
        &[
            "build",
            "--pull=never",
            "-q",
            "-t",
            PAUSE,
            ctx.to_str().unwrap(),
        ],
    );
    assert!(ok, "podman build of the infra image: {out}");
    PAUSE.into()
}

/// A containers.conf whose ulimits are this process's own (never more than runc may set)
/// and whose infra image is `pause`.
fn containers_conf(path: &Path, pause: Option<&str>) {
    use nix::sys::resource::{Resource, getrlimit};
    let (nofile, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let (nproc, _) = getrlimit(Resource::RLIMIT_NPROC).unwrap();
    let (nofile, nproc) = (nofile.min(1 << 20), nproc.min(32_768));
    let mut text = format!(
        "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n"
    );
    if let Some(p) = pause {
        text.push_str(&format!("[engine]\ninfra_image = \"{p}\"\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// The documents of a multi-document YAML file.
fn documents(yaml: &str) -> Vec<String> {
    yaml.split("---\n")
        .map(str::to_string)
        .filter(|d| !d.trim().is_empty())
        .collect()
}

/// The value of `key: VALUE` in a YAML document (unquoted).
fn field(doc: &str, key: &str) -> Option<String> {
    doc.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{key}: "))
            .map(|v| v.trim_matches(['\'', '"']).to_string())
    })
}

/// Standard base64 with padding (how podman's JSON holds a secret's bytes).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Removes the pod and the secret when dropped, so a failing test leaves neither behind.
struct Gone {
    conf: std::path::PathBuf,
    pod: String,
    secret: String,
}

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = podman(
            &self.conf,
            &["pod", "rm", "--force", "--time", "0", &self.pod],
        );
        let _ = podman(&self.conf, &["secret", "rm", &self.secret]);
    }
}

#[test]
fn the_generated_pod_played_by_podman_joins_the_team_and_does_its_task() {
    let Some(image) = image() else { return };
    let sb = Sandbox::new();
    let team = "kb";
    let conf = sb.path("containers.conf");
    containers_conf(&conf, None);
    let pause = pause_image(&conf, &image, &sb.path(""));
    containers_conf(&conf, Some(&pause));

    // The role's container: the image and the caps the Pod is given.
    sb.write_team_file(&format!(
        "name = \"{team}\"\n\n[roles.worker]\nprovider = \"exec\"\n\
         container = {{ image = \"{image}\", memory = \"64M\", cpus = 1 }}\n\n[[tasks]]\nkey = \"a\"\ntitle = \"in the pod\"\n\
         run = \"id -u; pwd; grep -q libpod /proc/self/cgroup && echo in-podman; echo done\"\n"
    ));
    sb.ok(&[
        "up",
        "--backend",
        "process",
        "--detach",
        "--join-listen",
        "127.0.0.1:0",
    ]);
    let file = sb.path("w1.yaml");
    let worker = bin("agent-team-worker");
    sb.ok(&[
        "--team",
        team,
        "kube",
        "manifest",
        "w1",
        "--worker-path",
        worker.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let yaml = std::fs::read_to_string(&file).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "it holds a token"
    );
    // On the roster, waiting for its worker.
    let w1 = sb.agent(team, "w1");
    assert_eq!(w1.backend, "external");
    assert!(!w1.connected);

    let docs = documents(&yaml);
    let kinds: Vec<String> = docs.iter().filter_map(|d| field(d, "kind")).collect();
    assert_eq!(kinds, ["Secret", "Pod", "NetworkPolicy"], "{yaml}");
    let secret_doc = &docs[0];
    let token = field(secret_doc, "token").unwrap();
    assert_eq!(token.len(), 64, "{secret_doc}");
    assert_eq!(
        yaml.matches(&token).count(),
        1,
        "the token only in the Secret"
    );
    let secret = field(secret_doc, "name").unwrap();
    let pod = "agent-team-kb-w1";
    let _gone = Gone {
        conf: conf.clone(),
        pod: pod.into(),
        secret: secret.clone(),
    };

    // The secret as this podman reads it (see the module's note), then the rest played with
    // the host's network: the team listens on 127.0.0.1, which a pod on podman's bridge
    // cannot reach.
    let map = serde_json::json!({ "token": base64(token.as_bytes()) });
    let secret_file = sb.path("secret.json");
    std::fs::write(&secret_file, map.to_string()).unwrap();
    let (ok, out) = podman(
        &conf,
        &["secret", "create", &secret, secret_file.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    std::fs::remove_file(&secret_file).unwrap();
    let rest = sb.path("w1-pod.yaml");
    std::fs::write(&rest, format!("---\n{}", docs[1..].join("---\n"))).unwrap();
    let (ok, out) = podman(
        &conf,
        &["kube", "play", "--network", "host", rest.to_str().unwrap()],
    );
    assert!(ok, "podman kube play: {out}");

    let logs = || {
        let (_, l) = podman(&conf, &["logs", &format!("{pod}-worker")]);
        format!("{l}\n{:?}", sb.tasks(team))
    };
    wait_for_or(
        "the pod's worker to do its task",
        T,
        || sb.tasks(team)[0].status.is_terminal(),
        logs,
    );
    let task = &sb.tasks(team)[0];
    assert_eq!(task.status, TaskStatus::Completed, "{}", logs());
    assert_eq!(task.owner.as_deref(), Some("w1"));
    let result = task.result.clone().unwrap_or_default();
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(
        lines,
        ["exit 0", "65534", "/workspace", "in-podman", "done"],
        "as nobody, in the pod's workspace, in podman's cgroup: {result}"
    );

    // The role's caps, as podman set them.
    let (ok, caps) = podman(
        &conf,
        &[
            "inspect",
            &format!("{pod}-worker"),
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.ReadonlyRootfs}}",
        ],
    );
    assert!(ok, "{caps}");
    assert_eq!(caps.trim(), "67108864 1000000000 true");

    // Down: no pod, container or secret of ours.
    let (ok, out) = podman(&conf, &["kube", "down", rest.to_str().unwrap()]);
    assert!(ok, "podman kube down: {out}");
    let (ok, out) = podman(&conf, &["secret", "rm", &secret]);
    assert!(ok, "{out}");
    assert!(!podman(&conf, &["pod", "exists", pod]).0);
    let (_, left) = podman(
        &conf,
        &[
            "ps",
            "--all",
            "--filter",
            "label=agent-team.team=kb",
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(left.trim(), "", "containers left");
    assert!(!podman(&conf, &["secret", "inspect", &secret]).0);
    sb.ok(&["--team", team, "down"]);
}

#[test]
fn doctor_reports_podman_and_runs_a_container_of_the_teams_image() {
    let Some(image) = image() else { return };
    let sb = Sandbox::new();
    sb.write_team_file(&format!(
        "name = \"dr\"\n\n[roles.boxed]\nprovider = \"exec\"\n\
         container = {{ image = \"{image}\", memory = \"64M\" }}\n"
    ));
    let v: serde_json::Value = serde_json::from_str(&sb.ok(&["doctor", "--json"])).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "containers")
        .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    let podman = v["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["program"] == "podman")
        .unwrap();
    assert!(
        podman["version"]
            .as_str()
            .unwrap()
            .starts_with("podman version "),
        "{podman}"
    );
    assert_eq!(podman["works"], true, "{podman}");
    assert!(
        podman["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("`{image} true`")),
        "{podman}"
    );
    assert!(
        v["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["program"] == "docker"),
        "docker is reported too, found or not"
    );
}
