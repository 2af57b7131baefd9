//! `agent-team kube manifest [ROLE|NAME]` (issue 66, docs/KUBERNETES.md): the Kubernetes
//! objects that run one teammate joining its team over TLS (docs/JOIN.md). The member is
//! admitted by the code of `agent-team join` (`super::join::admit`): on the roster, with a
//! fresh one-use token, and the token travels only in a `Secret`.
//!
//! Two shapes: a plain `Pod` (with its `Secret` and a default-deny `NetworkPolicy` that lets
//! the Pod reach the team's join endpoint and nothing else), and with `--sandbox` the
//! kubernetes-sigs/agent-sandbox one (`SandboxTemplate` per role, `SandboxClaim` per spawn,
//! `extensions.agents.x-k8s.io/v1alpha1`). The objects are built by pure functions
//! (`pod_objects`, `sandbox_objects`) from a [`Member`] and [`Shape`], tested without a team.

use crate::ctx::Ctx;
use crate::output;
use agent_team_protocol::ContainerSpec;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The agent-sandbox extensions' API version the `--sandbox` objects are written for.
pub const SANDBOX_API: &str = "extensions.agents.x-k8s.io/v1alpha1";
/// The label naming the team.
pub const LABEL_TEAM: &str = "agent-team.team";
/// The label naming the member.
pub const LABEL_AGENT: &str = "agent-team.agent";
/// The label naming the role.
pub const LABEL_ROLE: &str = "agent-team.role";
/// Where the worker binary is inside the container (the image's, or `--worker-path` bound in).
pub const WORKER_INSIDE: &str = "/usr/local/bin/agent-team-worker";
/// The member's working directory inside (an `emptyDir`).
pub const WORKSPACE_INSIDE: &str = "/workspace";
/// Where the `--sandbox` variant mounts its role's token Secret.
pub const TOKENS_INSIDE: &str = "/var/run/agent-team/join";
/// The user the worker runs as (`nobody`): never root, whatever the image says.
const RUN_AS: u32 = 65534;

/// The member a manifest is for.
#[derive(Debug, Clone)]
pub struct Member {
    /// The team.
    pub team: String,
    /// The member's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The join URL its worker dials (`agent-teams://HOST:PORT/TEAM/NAME#sha256=…`).
    pub url: String,
    /// The endpoint's host as the Pod reaches it.
    pub host: String,
    /// The endpoint's port.
    pub port: u16,
    /// The one-use join token (only ever written into the Secret).
    pub token: String,
}

/// What the Pod runs and how it is held.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// The image.
    pub image: String,
    /// The role's (or the teammate's) `container` limits, when it has one.
    pub container: Option<ContainerSpec>,
    /// The worker binary on the node, bound in read-only (a `hostPath`, for local trials);
    /// none: the image holds it at [`WORKER_INSIDE`].
    pub worker_path: Option<PathBuf>,
}

/// A Kubernetes name of `parts`: lowercase letters, digits and `-`, at most 63 characters.
pub fn k8s_name(parts: &[&str]) -> String {
    let mut s: String = parts
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(63);
    s.trim_matches('-').to_string()
}

/// A label value of `s`: letters, digits, `-`, `_`, `.`, at most 63, alphanumeric at the ends.
fn label(s: &str) -> String {
    let mut v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    v.truncate(63);
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The labels of the member's objects.
fn labels(m: &Member) -> Value {
    json!({
        LABEL_TEAM: label(&m.team),
        LABEL_AGENT: label(&m.name),
        LABEL_ROLE: label(&m.role),
    })
}

/// `resources.limits` from a `container` table: memory in bytes (`Mi` when whole), CPUs in
/// millicores. Kubernetes has no per-container process cap (a node's kubelet sets
/// `podPidsLimit`), so `pids` goes into an annotation for the cluster's operator.
fn limits(c: Option<&ContainerSpec>) -> Result<Value, String> {
    let mut l = serde_json::Map::new();
    let Some(c) = c else {
        return Ok(Value::Object(l));
    };
    if let Some(m) = &c.memory {
        let b = agent_team_config::memory_bytes(m)?;
        let q = if b % (1 << 20) == 0 {
            format!("{}Mi", b >> 20)
        } else {
            b.to_string()
        };
        l.insert("memory".into(), json!(q));
    }
    if let Some(cpus) = &c.cpus {
        let n: f64 = cpus
            .trim()
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n > 0.0)
            .ok_or_else(|| format!("cpus = {cpus:?} is not a number of CPUs"))?;
        l.insert("cpu".into(), json!(format!("{}m", (n * 1000.0).round())));
    }
    Ok(Value::Object(l))
}

/// The annotations of the Pod: the caps Kubernetes cannot set per container.
fn annotations(c: Option<&ContainerSpec>) -> Value {
    let mut a = serde_json::Map::new();
    if let Some(p) = c.and_then(|c| c.pids) {
        a.insert(
            "agent-team.pids".into(),
            json!(format!(
                "{p} (set the node's podPidsLimit: Kubernetes has no per-container cap)"
            )),
        );
    }
    Value::Object(a)
}

/// The Pod spec that runs the worker with `args`, `env` and the extra `volumes`/`mounts`.
fn pod_spec(
    shape: &Shape,
    args: Vec<String>,
    env: Value,
    extra: &[(Value, Value)],
) -> Result<Value, String> {
    let mut mounts = vec![
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "workspace", "mountPath": WORKSPACE_INSIDE}),
    ];
    let mut volumes = vec![
        json!({"name": "tmp", "emptyDir": {}}),
        json!({"name": "workspace", "emptyDir": {}}),
    ];
    if let Some(p) = &shape.worker_path {
        mounts.push(json!({"name": "worker", "mountPath": WORKER_INSIDE, "readOnly": true}));
        volumes.push(json!({"name": "worker", "hostPath": {"path": p, "type": "File"}}));
    }
    for (v, m) in extra {
        volumes.push(v.clone());
        mounts.push(m.clone());
    }
    let mut container = json!({
        "name": "worker",
        "image": shape.image,
        "command": [WORKER_INSIDE],
        "args": args,
        "workingDir": WORKSPACE_INSIDE,
        "securityContext": {
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    });
    if env.as_array().is_some_and(|e| !e.is_empty()) {
        container["env"] = env;
    }
    let l = limits(shape.container.as_ref())?;
    if l.as_object().is_some_and(|o| !o.is_empty()) {
        container["resources"] = json!({ "limits": l });
    }
    let mut spec = json!({
        // A spent token cannot join again: a restarted container would be refused; a new
        // manifest (a fresh token) starts the member again.
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    });
    if let Some(rc) = shape
        .container
        .as_ref()
        .and_then(|c| c.runtime_class.as_ref())
    {
        spec["runtimeClassName"] = json!(rc);
    }
    Ok(spec)
}

/// The egress rules that reach the team's join endpoint and nothing else (and DNS, when the
/// endpoint is a name to look up).
fn egress(m: &Member) -> Value {
    let port = json!([{"protocol": "TCP", "port": m.port}]);
    match m.host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let cidr = if ip.is_ipv4() {
                format!("{ip}/32")
            } else {
                format!("{ip}/128")
            };
            json!([{"to": [{"ipBlock": {"cidr": cidr}}], "ports": port}])
        }
        Err(_) => json!([
            {"ports": port},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        ]),
    }
}

/// The plain shape: the member's token `Secret`, its `Pod`, and a `NetworkPolicy` that denies
/// everything in and out but the way to the join endpoint.
pub fn pod_objects(m: &Member, shape: &Shape) -> Result<Vec<Value>, String> {
    let name = k8s_name(&["agent-team", &m.team, &m.name]);
    let secret = k8s_name(&["agent-team", &m.team, &m.name, "join"]);
    let env = json!([{
        "name": agent_team_worker::join::ENV_JOIN_TOKEN,
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}},
    }]);
    let args = vec![
        "--join".to_string(),
        m.url.clone(),
        "--workspace".into(),
        WORKSPACE_INSIDE.into(),
    ];
    let mut meta = json!({"name": name, "labels": labels(m)});
    let a = annotations(shape.container.as_ref());
    if a.as_object().is_some_and(|o| !o.is_empty()) {
        meta["annotations"] = a;
    }
    Ok(vec![
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "labels": labels(m)},
            "type": "Opaque",
            "stringData": {"token": m.token},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": pod_spec(shape, args, env, &[])?,
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "labels": labels(m)},
            "spec": {
                "podSelector": {"matchLabels": {
                    LABEL_TEAM: label(&m.team),
                    LABEL_AGENT: label(&m.name),
                }},
                "policyTypes": ["Ingress", "Egress"],
                "egress": egress(m),
            },
        }),
    ])
}

/// The agent-sandbox shape: the role's token `Secret` (one key per member, mounted as files),
/// its `SandboxTemplate` (the Pod of any member of the role, the network policy the
/// controller applies), and this member's `SandboxClaim` (its URL and name, which are not
/// secret, as the claim's environment).
pub fn sandbox_objects(m: &Member, shape: &Shape) -> Result<Vec<Value>, String> {
    let template = k8s_name(&["agent-team", &m.team, &m.role]);
    let secret = k8s_name(&["agent-team", &m.team, &m.role, "join"]);
    let args = vec![
        "--join".to_string(),
        "$(AGENT_TEAM_KUBE_URL)".into(),
        "--join-token-file".into(),
        format!("{TOKENS_INSIDE}/$(AGENT_TEAM_KUBE_MEMBER)"),
        "--workspace".into(),
        WORKSPACE_INSIDE.into(),
    ];
    let tokens = (
        json!({"name": "join", "secret": {"secretName": secret, "defaultMode": 0o440}}),
        json!({"name": "join", "mountPath": TOKENS_INSIDE, "readOnly": true}),
    );
    let role_labels = json!({LABEL_TEAM: label(&m.team), LABEL_ROLE: label(&m.role)});
    let mut pod_meta = json!({"labels": role_labels});
    let a = annotations(shape.container.as_ref());
    if a.as_object().is_some_and(|o| !o.is_empty()) {
        pod_meta["annotations"] = a;
    }
    Ok(vec![
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "labels": role_labels},
            "type": "Opaque",
            "stringData": {m.name.clone(): m.token},
        }),
        json!({
            "apiVersion": SANDBOX_API,
            "kind": "SandboxTemplate",
            "metadata": {"name": template, "labels": role_labels},
            "spec": {
                "podTemplate": {
                    "metadata": pod_meta,
                    "spec": pod_spec(shape, args, json!([]), &[tokens])?,
                },
                "networkPolicyManagement": "Managed",
                "networkPolicy": {"egress": egress(m)},
                "envVarsInjectionPolicy": "Allowed",
            },
        }),
        json!({
            "apiVersion": SANDBOX_API,
            "kind": "SandboxClaim",
            "metadata": {"name": k8s_name(&["agent-team", &m.team, &m.name]), "labels": labels(m)},
            "spec": {
                "sandboxTemplateRef": {"name": template},
                // A claim with its own environment starts cold: no warm Pod knows its member.
                "warmpool": "none",
                "env": [
                    {"name": "AGENT_TEAM_KUBE_URL", "value": m.url},
                    {"name": "AGENT_TEAM_KUBE_MEMBER", "value": m.name},
                ],
                "additionalPodMetadata": {"labels": labels(m)},
            },
        }),
    ])
}

/// The objects as multi-document YAML.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(o).context("cannot write YAML")?);
    }
    Ok(out)
}

/// `HOST` and `PORT` of `--join-url` (`agent-teams://HOST:PORT[/…]` or `HOST:PORT`; an IPv6
/// host in brackets).
pub fn parse_authority(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("agent-teams://").unwrap_or(url);
    let auth = rest.split(['/', '#']).next().unwrap_or_default();
    let bad = || format!("{url:?} is not agent-teams://HOST:PORT (or HOST:PORT)");
    let (host, port) = auth.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// What `agent-team kube manifest` was asked.
#[derive(Debug, Clone, Default)]
pub struct ManifestArgs {
    /// A member (of the team file or the roster) or a role.
    pub target: Option<String>,
    /// The image, over the role's `container.image`.
    pub image: Option<String>,
    /// The endpoint as the cluster reaches it.
    pub join_url: Option<String>,
    /// The worker binary to bind in from the node.
    pub worker_path: Option<PathBuf>,
    /// The agent-sandbox shape.
    pub sandbox: bool,
    /// How long the token may wait to be used.
    pub ttl_secs: u64,
    /// Where to write the manifest (mode 0600: it holds the token).
    pub out: Option<PathBuf>,
    /// Print the objects as a JSON `List`.
    pub json: bool,
}

/// The member `target` names, its role and the container it runs in: a teammate of the team
/// file or a member on the roster keeps its name and role; a role gets a fresh member
/// `ROLE-N`; any other word is a new member of role `worker`.
fn resolve(
    ctx: &Ctx,
    cfg: &agent_team_config::TeamConfig,
    target: &str,
) -> Result<(String, Option<String>, Option<ContainerSpec>)> {
    let container_of = |role: &str| cfg.role(role).and_then(|r| r.container.clone());
    if let Some(t) = cfg.teammates.iter().find(|t| t.name == target) {
        let c = t.container.clone().or_else(|| container_of(&t.role));
        return Ok((t.name.clone(), Some(t.role.clone()), c));
    }
    let agents = match ctx.call(agent_team_protocol::Request::Agents)? {
        agent_team_protocol::Reply::Agents { agents } => agents,
        other => bail!("unexpected reply {other:?}"),
    };
    if let Some(a) = agents.iter().find(|a| a.name == target) {
        return Ok((a.name.clone(), Some(a.role.clone()), container_of(&a.role)));
    }
    if cfg.role(target).is_some() {
        let name = (1..)
            .map(|n| format!("{target}-{n}"))
            .find(|n| !agents.iter().any(|a| &a.name == n))
            .context("no free member name")?;
        return Ok((name, Some(target.to_string()), container_of(target)));
    }
    Ok((target.to_string(), None, container_of("worker")))
}

/// `agent-team kube manifest [ROLE|NAME] …`: admits the member, prints (or writes) its objects.
pub fn manifest(ctx: &Ctx, a: ManifestArgs) -> Result<ExitCode> {
    let mut cfg = match &ctx.file {
        Some(f) => agent_team_config::load(f)?,
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            agent_team_config::empty_team(&ctx.team, &cwd)
        }
    };
    cfg.name = ctx.team.clone();
    let target = a.target.as_deref().unwrap_or("worker");
    let (name, role, container) = resolve(ctx, &cfg, target)?;
    let Some(image) = a
        .image
        .clone()
        .or_else(|| container.as_ref().map(|c| c.image.clone()))
    else {
        bail!(crate::Hinted::new(
            format!("{name} has no image: its role has no `container = {{ image = … }}`"),
            "give one with --image IMG (an image holding agent-team-worker, or with \
             --worker-path PATH to bind it in)"
        ));
    };
    if let Some(p) = &a.worker_path
        && !p.is_absolute()
    {
        bail!(
            "--worker-path {} must be an absolute path on the node",
            p.display()
        );
    }
    // Everything that can be refused is, before the member is admitted and a token made.
    let endpoint = match &a.join_url {
        Some(j) => Some(parse_authority(j).map_err(anyhow::Error::msg)?),
        None => None,
    };
    limits(container.as_ref()).map_err(anyhow::Error::msg)?;
    let adm = super::join::admit(ctx, &name, role, a.ttl_secs)?;
    let mut url = adm.url.clone();
    if let Some((host, port)) = endpoint {
        url.host = host;
        url.port = port;
    }
    let member = Member {
        team: ctx.team.clone(),
        name: name.clone(),
        role: adm.role.clone(),
        url: url.to_string(),
        host: url.host.clone(),
        port: url.port,
        token: adm.token,
    };
    let shape = Shape {
        image,
        container,
        worker_path: a.worker_path.clone(),
    };
    let objects = if a.sandbox {
        sandbox_objects(&member, &shape)
    } else {
        pod_objects(&member, &shape)
    }
    .map_err(anyhow::Error::msg)?;
    let text = if a.json {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        serde_json::to_string_pretty(&list).context("cannot write JSON")? + "\n"
    } else {
        to_yaml(&objects)?
    };
    match &a.out {
        Some(path) => {
            write_private(path, &text)?;
            eprintln!(
                "agent-team: wrote {} for {name} ({}) of team {}: it holds a one-use join \
                 token, good for {} s",
                path.display(),
                member.role,
                ctx.team,
                a.ttl_secs
            );
        }
        None => output::line(text.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`, readable by its owner only (it holds a token).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member() -> Member {
        Member {
            team: "kt".into(),
            name: "w1".into(),
            role: "boxed".into(),
            url: "agent-teams://10.0.0.5:7443/kt/w1#sha256=ab".into(),
            host: "10.0.0.5".into(),
            port: 7443,
            token: "tok-s3cret".into(),
        }
    }

    fn shape() -> Shape {
        Shape {
            image: "localhost/team:1".into(),
            container: Some(ContainerSpec {
                image: "localhost/team:1".into(),
                runtime: None,
                memory: Some("64M".into()),
                cpus: Some("1.5".into()),
                pids: Some(64),
                runtime_class: Some("gvisor".into()),
            }),
            worker_path: Some("/opt/at/agent-team-worker".into()),
        }
    }

    fn kind<'a>(objs: &'a [Value], k: &str) -> &'a Value {
        objs.iter().find(|o| o["kind"] == k).unwrap()
    }

    #[test]
    fn the_pod_holds_the_token_only_in_its_secret_and_caps_and_confines_the_worker() {
        let objs = pod_objects(&member(), &shape()).unwrap();
        assert_eq!(objs.len(), 3);
        let secret = kind(&objs, "Secret");
        assert_eq!(secret["stringData"]["token"], "tok-s3cret");
        for o in objs.iter().filter(|o| o["kind"] != "Secret") {
            assert!(!o.to_string().contains("tok-s3cret"), "{o}");
        }
        let pod = kind(&objs, "Pod");
        assert_eq!(pod["metadata"]["labels"][LABEL_TEAM], "kt");
        assert_eq!(pod["metadata"]["labels"][LABEL_AGENT], "w1");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "localhost/team:1");
        assert_eq!(
            c["args"],
            json!(["--join", member().url, "--workspace", WORKSPACE_INSIDE])
        );
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"],
            json!({"name": secret["metadata"]["name"], "key": "token"})
        );
        assert_eq!(c["env"][0]["name"], "AGENT_TEAM_JOIN_TOKEN");
        assert_eq!(
            c["resources"]["limits"],
            json!({"memory": "64Mi", "cpu": "1500m"})
        );
        assert!(
            pod["metadata"]["annotations"]["agent-team.pids"]
                .as_str()
                .unwrap()
                .starts_with("64 ")
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["spec"]["runtimeClassName"], "gvisor");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        let vols = pod["spec"]["volumes"].as_array().unwrap();
        assert!(vols.contains(&json!({"name": "tmp", "emptyDir": {}})));
        assert!(vols.contains(&json!({"name": "worker", "hostPath": {
            "path": "/opt/at/agent-team-worker", "type": "File"}})));
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .contains(&json!({"name": "worker", "mountPath": WORKER_INSIDE, "readOnly": true}))
        );
    }

    #[test]
    fn the_network_policy_denies_all_but_the_join_endpoint() {
        let objs = pod_objects(&member(), &shape()).unwrap();
        let np = kind(&objs, "NetworkPolicy");
        let spec = &np["spec"];
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        assert!(
            spec.get("ingress").is_none(),
            "no ingress rule: none allowed"
        );
        assert_eq!(
            spec["egress"],
            json!([{"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}],
                    "ports": [{"protocol": "TCP", "port": 7443}]}])
        );
        assert_eq!(
            spec["podSelector"]["matchLabels"],
            json!({LABEL_TEAM: "kt", LABEL_AGENT: "w1"})
        );
        // A host name: the port alone, and DNS to find it.
        let mut m = member();
        m.host = "team.example".into();
        let objs = pod_objects(&m, &shape()).unwrap();
        let eg = &kind(&objs, "NetworkPolicy")["spec"]["egress"];
        assert_eq!(eg[0], json!({"ports": [{"protocol": "TCP", "port": 7443}]}));
        assert_eq!(eg[1]["ports"][0]["port"], 53);
    }

    #[test]
    fn the_sandbox_shape_is_a_template_per_role_and_a_claim_per_member() {
        let objs = sandbox_objects(&member(), &shape()).unwrap();
        let t = kind(&objs, "SandboxTemplate");
        let claim = kind(&objs, "SandboxClaim");
        assert_eq!(t["apiVersion"], SANDBOX_API);
        assert_eq!(claim["apiVersion"], SANDBOX_API);
        assert_eq!(t["metadata"]["name"], "agent-team-kt-boxed");
        assert_eq!(
            claim["spec"]["sandboxTemplateRef"]["name"],
            "agent-team-kt-boxed"
        );
        assert_eq!(claim["spec"]["env"][1]["value"], "w1");
        let pod = &t["spec"]["podTemplate"]["spec"];
        assert_eq!(
            pod["containers"][0]["resources"]["limits"]["memory"],
            "64Mi"
        );
        assert_eq!(
            t["spec"]["networkPolicy"]["egress"][0]["ports"][0]["port"],
            7443
        );
        // The token: in the role's Secret, under the member's name, and nowhere else.
        let secret = kind(&objs, "Secret");
        assert_eq!(secret["stringData"]["w1"], "tok-s3cret");
        for o in objs.iter().filter(|o| o["kind"] != "Secret") {
            assert!(!o.to_string().contains("tok-s3cret"), "{o}");
        }
    }

    #[test]
    fn yaml_is_one_document_per_object_and_names_fit_kubernetes() {
        let objs = pod_objects(&member(), &shape()).unwrap();
        let y = to_yaml(&objs).unwrap();
        assert_eq!(y.matches("---\n").count(), 3);
        assert!(y.contains("kind: NetworkPolicy"), "{y}");
        assert_eq!(
            k8s_name(&["agent-team", "My_Team", "w1"]),
            "agent-team-my-team-w1"
        );
        assert!(k8s_name(&["x"; 40]).len() <= 63);
        assert_eq!(
            parse_authority("agent-teams://team.example:7443/kt/w1#sha256=ab").unwrap(),
            ("team.example".to_string(), 7443)
        );
        assert_eq!(
            parse_authority("[::1]:7443").unwrap(),
            ("::1".to_string(), 7443)
        );
        assert!(parse_authority("team.example").is_err());
    }
}
