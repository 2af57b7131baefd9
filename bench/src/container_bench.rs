//! Issue 66: a container teammate's start (spawn → connected, which is when `spawn` is
//! answered) and memory beside a process teammate's, alternating in one run on one team; and a
//! request's round trip over the TLS join link beside the daemon's Unix socket.

use crate::heal_bench::cli;
use crate::model_bench::{pss_kb, tree};
use crate::report::*;
use agent_team_client::Client;
use agent_team_paths::{Paths, TeamPaths};
use agent_team_protocol::{Auth, ContainerSpec, Hello, PROTOCOL_VERSION, Reply, Request};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TEAM: &str = "cb";

fn paths(root: &Path) -> Result<TeamPaths> {
    Ok(Paths::new(root.join("home"), root.join("run")).team(TEAM)?)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A `podman inspect` field of container `name`.
fn inspect(name: &str, field: &str) -> Option<u32> {
    let out = Command::new("podman")
        .args([
            "inspect",
            "--format",
            &format!("{{{{.State.{field}}}}}"),
            name,
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The PSS (KiB) of every process of a teammate: its own process tree, and for one in a
/// container, the runtime's monitor (conmon) and everything in the container.
fn teammate_pss(pid: u32, container: Option<&str>) -> u64 {
    let mut pids: HashSet<u32> = tree(pid);
    if let Some(name) = container
        && let Some(conmon) = inspect(name, "ConmonPid")
    {
        pids.extend(tree(conmon));
    }
    pids.into_iter().map(pss_kb).sum()
}

/// Runs the section in `dir`.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    println!("== teammates in containers, and workers that dial in (issue 66) ==");
    let Some(image) = agent_team_e2e::container::image() else {
        println!("(skipped: no container runtime here)");
        return Ok(());
    };
    let root = dir.join("team");
    std::fs::create_dir_all(&root)?;
    // The held task keeps the run (and so the team) going while teammates come and go.
    std::fs::write(
        root.join("agent-team.toml"),
        format!(
            "name = \"{TEAM}\"\nboard = false\n\n[roles.free]\nprovider = \"exec\"\n\n\
             [[teammates]]\nname = \"hold\"\nrole = \"free\"\n\n\
             [[tasks]]\ntitle = \"hold\"\nassign = \"hold\"\nrun = \"sleep 3600\"\n"
        ),
    )?;
    let out = cli(
        &root,
        &[
            "up",
            "--backend",
            "process",
            "--detach",
            "--join-listen",
            "127.0.0.1:0",
        ],
    )
    .output()?;
    if !out.status.success() {
        bail!("up failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let tp = paths(&root)?;
    let result = measure(r, &root, &tp, &image, quick);
    let _ = cli(&root, &["down"]).output();
    agent_team_pane::container::remove_all(
        "podman",
        &agent_team_pane::container::instance_of(&tp.socket),
    );
    result
}

fn measure(r: &mut Report, root: &Path, tp: &TeamPaths, image: &str, quick: bool) -> Result<()> {
    let rounds = if quick { 3 } else { 7 };
    let mut op = Client::operator(tp)?;
    let (mut boxed_start, mut free_start) = (Vec::new(), Vec::new());
    let (mut boxed_mem, mut free_mem) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for boxed in [round % 2 == 0, round % 2 != 0] {
            let name = format!("{}{round}", if boxed { "c" } else { "p" });
            let t = Instant::now();
            let reply = op.call(Request::Spawn {
                role: "free".into(),
                name: Some(name.clone()),
                instructions: None,
                model: None,
                message: None,
                host: None,
                workspace: None,
                container: boxed.then(|| ContainerSpec {
                    image: image.to_string(),
                    ..ContainerSpec::default()
                }),
            })?;
            let took = t.elapsed().as_secs_f64();
            let info = match reply {
                Reply::Agent { agent } => agent,
                other => bail!("spawn {name}: {other:?}"),
            };
            let pid = info.pid.context("no pid")?;
            // Settled: what an idle teammate holds, not its start's peak.
            std::thread::sleep(Duration::from_millis(300));
            let container = boxed.then(|| {
                agent_team_pane::container::container_name(
                    &agent_team_pane::container::instance_of(&tp.socket),
                    &name,
                )
            });
            let kb = teammate_pss(pid, container.as_deref()) as f64;
            if boxed {
                boxed_start.push(took);
                boxed_mem.push(kb);
            } else {
                free_start.push(took);
                free_mem.push(kb);
            }
            op.call(Request::Kill {
                name: name.clone(),
                reason: None,
            })?;
        }
    }
    let (c, p) = (median(&mut boxed_start), median(&mut free_start));
    r.add(
        &format!("teammate start, spawn → connected, in a container (median of {rounds})"),
        dur(c),
        dur(p),
        format!("+{}", dur(c - p)),
        "(a process teammate, alternating in the same run)",
        true,
    );
    let (cm, pm) = (median(&mut boxed_mem), median(&mut free_mem));
    r.add(
        "teammate memory (PSS: its processes, with podman's client and conmon)",
        format!("{:.1} MiB", cm / 1024.0),
        format!("{:.1} MiB", pm / 1024.0),
        format!("{:.2}×", cm / pm.max(1.0)),
        "(a process teammate)",
        true,
    );

    // The join link: a request's round trip over TLS beside the Unix socket.
    let out = cli(root, &["join", "j1", "--json"])
        .stdout(std::process::Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!("join failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let url = agent_team_client::join::JoinUrl::parse(v["url"].as_str().unwrap_or_default())?;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let n = if quick { 300 } else { 2000 };
    let stand_in = root.join("j1.sock");
    agent_team_client::join::route(&stand_in, &url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut tls, mut unix): (Vec<f64>, Vec<f64>) = rt.block_on(async {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            team: url.team.clone(),
            auth: Auth::Join {
                name: url.name.clone(),
                token,
            },
            client: Some("agent-team-bench".into()),
            start: false,
        };
        // The join swaps the token for the agent's secret; its link then says hello as it.
        let (joined, _pushes) = agent_team_client::AsyncClient::connect(&stand_in, &hello)
            .await
            .map_err(|e| anyhow::anyhow!("join: {e}"))?;
        let w = joined.welcome().clone();
        let hello = Hello {
            auth: Auth::Agent {
                name: w.identity.clone(),
                secret: w
                    .secret
                    .clone()
                    .context("no secret in the join's welcome")?,
                incarnation: w.incarnation,
            },
            ..hello
        };
        drop(joined);
        // The same agent, the same client: over the TLS link, then over the Unix socket,
        // alternating rounds.
        let (mut tls, mut unix) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for round in 0..4 {
            let over_tls = round % 2 == 0;
            let via = if over_tls { &stand_in } else { &tp.socket };
            let (client, _pushes) = agent_team_client::AsyncClient::connect(via, &hello)
                .await
                .map_err(|e| anyhow::anyhow!("hello as the joined agent: {e}"))?;
            for _ in 0..n / 2 {
                let t = Instant::now();
                client
                    .call(Request::Ping)
                    .await
                    .map_err(|e| anyhow::anyhow!("ping: {e}"))?;
                let took = t.elapsed().as_secs_f64();
                if over_tls {
                    tls.push(took);
                } else {
                    unix.push(took);
                }
            }
        }
        anyhow::Ok((tls, unix))
    })?;
    let (j, u) = (pct(&mut tls, 50.0), pct(&mut unix, 50.0));
    r.add(
        &format!("request round trip over the TLS join link, p50 (n={n})"),
        dur(j),
        dur(u),
        format!("{:.1}×", j / u.max(1e-9)),
        "≤ 1 ms on loopback (the same agent's Unix socket beside it)",
        j <= 1e-3,
    );
    let (j99, u99) = (pct(&mut tls, 99.0), pct(&mut unix, 99.0));
    r.add(
        "request round trip over the TLS join link, p99",
        dur(j99),
        dur(u99),
        format!("{:.1}×", j99 / u99.max(1e-9)),
        "(the Unix socket)",
        true,
    );
    Ok(())
}
