//! The model gateway's cost (issue 65, docs/GATEWAY.md): the latency it adds to a streamed
//! Anthropic Messages call against a direct connection to the same mock, in one run and
//! interleaved (gateway, direct, gateway, …), and the process's memory with 6 clients
//! streaming at once through it beside the same 6 streaming directly.
//!
//! The client is a plain HTTP client speaking the Messages API with `stream: true`, the
//! per-agent token in `x-api-key`, as a CLI does; the gateway runs in this process on its own
//! thread and runtime, as in the daemon.

use crate::daemon_bench::rss;
use crate::report::{Report, dur, pct};
use agent_team_gateway::{Ask, Call, Gateway, Limits, Meter, Route, Verdict, VerdictFuture};
use agent_team_mockmodel::{MockModel, Step, Wire};
use anyhow::{Context as _, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A meter that never stops a call and counts the calls told.
#[derive(Default)]
struct CountingMeter {
    calls: AtomicU64,
}

impl Meter for CountingMeter {
    fn check(&self, _agent: &str, _ask: Ask) -> VerdictFuture {
        Box::pin(async { Verdict::Go })
    }
    fn done(&self, _call: Call) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    fn budget_spent(&self, _agent: &str, _why: &str) {}
}

const KEY: &str = "sk-bench-real-key";

/// A streamed Messages request for `agent`.
fn body(agent: &str) -> serde_json::Value {
    serde_json::json!({"model": "claude-bench", "max_tokens": 1000, "stream": true,
        "system": format!("Your name is {agent}."),
        "messages": [{"role": "user", "content": "hello"}]})
}

/// One streamed call to `base` with `key`: (time to the first body byte, time to the end).
async fn one(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &serde_json::Value,
) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut resp = http
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .context("streamed call")?;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    let mut first = None;
    let mut bytes = 0usize;
    while let Some(c) = resp.chunk().await? {
        if first.is_none() && !c.is_empty() {
            first = Some(t0.elapsed().as_secs_f64());
        }
        bytes += c.len();
    }
    let whole = t0.elapsed().as_secs_f64();
    anyhow::ensure!(bytes > 0, "an empty stream");
    Ok((first.unwrap_or(whole), whole))
}

/// Runs the section: `BENCH_SECTION=gateway`.
pub fn run(r: &mut Report, _dir: &Path, quick: bool) -> Result<()> {
    println!("== the model gateway (issue 65) ==");
    let n = if quick { 100 } else { 400 };
    let warm = 50;
    // A reply of some length, streamed by the mock in a few text deltas.
    let text = "All done: the tests pass and the change is committed. ".repeat(8);
    let mock = MockModel::start_background(Wire::Anthropic)?;
    let meter = Arc::new(CountingMeter::default());
    let gw = Gateway::start(meter.clone(), Limits::default())?;
    let token = gw.register(
        "w1",
        Route {
            upstream: mock.base_url(),
            key: Some(KEY.into()),
        },
    )?;
    mock.script("w1", vec![Step::Text(text.clone()); 2 * (n + warm)]);
    let gw_base = format!("http://{}", gw.addr());
    let direct_base = mock.base_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let b = body("w1");
    let (mut g_first, mut g_whole, mut d_first, mut d_whole) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for i in 0..n + warm {
            // The order swapped every round, so neither side always goes first.
            let order = if i % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for via_gw in order {
                let (base, key) = if via_gw {
                    (&gw_base, token.as_str())
                } else {
                    (&direct_base, KEY)
                };
                let (f, w) = one(&http, base, key, &b).await?;
                if i >= warm {
                    if via_gw {
                        g_first.push(f);
                        g_whole.push(w);
                    } else {
                        d_first.push(f);
                        d_whole.push(w);
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    let (g50, d50) = (pct(&mut g_first, 50.0), pct(&mut d_first, 50.0));
    let (g99, d99) = (pct(&mut g_first, 99.0), pct(&mut d_first, 99.0));
    let (gw50, dw50) = (pct(&mut g_whole, 50.0), pct(&mut d_whole, 50.0));
    let (gw99, dw99) = (pct(&mut g_whole, 99.0), pct(&mut d_whole, 99.0));
    r.add(
        "gateway: first byte of a streamed Messages call, p50",
        dur(g50),
        format!("{} direct", dur(d50)),
        format!("+{}", dur(g50 - d50)),
        "≤ 1 ms added to first byte at p50",
        g50 - d50 <= 0.001,
    );
    r.add(
        "gateway: first byte of a streamed Messages call, p99",
        dur(g99),
        format!("{} direct", dur(d99)),
        format!("+{}", dur(g99 - d99)),
        "-",
        true,
    );
    r.add(
        "gateway: whole streamed Messages response, p50",
        dur(gw50),
        format!("{} direct", dur(dw50)),
        format!("+{}", dur(gw50 - dw50)),
        "-",
        true,
    );
    r.add(
        "gateway: whole streamed Messages response, p99",
        dur(gw99),
        format!("{} direct", dur(dw99)),
        format!("+{}", dur(gw99 - dw99)),
        "-",
        true,
    );
    r.note(format!(
        "gateway vs direct, {n} streamed calls each after {warm} warm-up pairs, interleaved; \
         one keep-alive client, the gateway on its own thread in the bench process; \
         {} calls told to the meter",
        meter.calls.load(Ordering::Relaxed)
    ));
    memory(r, &mock, &gw, &rt, quick)
}

/// The bench process's RSS with 6 clients streaming at once directly, then through the
/// gateway: the difference of the peaks is the gateway's share.
fn memory(
    r: &mut Report,
    mock: &MockModel,
    gw: &Gateway,
    rt: &tokio::runtime::Runtime,
    quick: bool,
) -> Result<()> {
    let per = if quick { 20 } else { 60 };
    // A long reply (about 24 KB), so the streams overlap.
    let text = "The quick brown fox jumps over the lazy dog, again and again. ".repeat(400);
    let mut agents = Vec::new();
    for c in 0..6 {
        let name = format!("c{c}");
        let token = gw.register(
            &name,
            Route {
                upstream: mock.base_url(),
                key: Some(KEY.into()),
            },
        )?;
        mock.script(&name, vec![Step::Text(text.clone()); 2 * per]);
        agents.push((name, token));
    }
    let pid = std::process::id();
    let gw_base = format!("http://{}", gw.addr());
    let direct_base = mock.base_url();
    let mut peaks = Vec::new();
    let mut times = Vec::new();
    for via_gw in [false, true] {
        let (rss0, _) = rss(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss0));
        let sampler = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(pid).0, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let t0 = Instant::now();
        let res: Result<()> = rt.block_on(async {
            let mut tasks = Vec::new();
            for (name, token) in &agents {
                let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
                let (base, key) = if via_gw {
                    (gw_base.clone(), token.clone())
                } else {
                    (direct_base.clone(), KEY.to_string())
                };
                let b = body(name);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per {
                        one(&http, &base, &key, &b).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok(())
        });
        times.push(t0.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        res?;
        peaks.push((rss0, peak.load(Ordering::Relaxed)));
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    let (d0, dpeak) = peaks[0];
    let (g0, gpeak) = peaks[1];
    let added = gpeak.saturating_sub(dpeak.max(g0));
    r.add(
        "gateway: bench process RSS peak, 6 clients streaming through it",
        format!("{:.1} MiB", mib(gpeak)),
        format!("{:.1} MiB direct", mib(dpeak)),
        format!("+{:.1} MiB", mib(added)),
        "-",
        true,
    );
    r.note(format!(
        "6 clients × {per} streamed calls of ~24 KB each, all at once: direct {:.2} s (RSS {:.1} → peak {:.1} MiB), \
         through the gateway {:.2} s (RSS {:.1} → peak {:.1} MiB); the gateway's share is the growth over the direct peak",
        times[0],
        mib(d0),
        mib(dpeak),
        times[1],
        mib(g0),
        mib(gpeak)
    ));
    Ok(())
}
