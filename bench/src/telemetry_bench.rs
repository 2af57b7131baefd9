//! OpenTelemetry's cost to the daemon (docs/TELEMETRY.md): the durable message latency of a
//! daemon exporting to a local OTLP/HTTP sink beside one with telemetry off, in one run: the
//! two daemons up together, each message through one followed by one through the other (the
//! order swapped every message), so whatever else the machine does falls on both alike.

use crate::daemon_bench::{BenchTeam, one_message, receiver};
use crate::report::{Report, dur, pct};
use agent_team_telemetry::sink::Sink;
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs the section: `BENCH_SECTION=telemetry`.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    let n = if quick { 1000 } else { 4000 };
    let sink = Sink::start(false)?;
    let on_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), sink.endpoint()),
        // Metrics pushed every second, so the exporter works while the messages flow.
        (
            "OTEL_METRIC_EXPORT_INTERVAL".to_string(),
            "1000".to_string(),
        ),
    ];
    let mut off_team = BenchTeam::start_with_env(&dir.join("off"), "oteloff", Vec::new())?;
    let mut on_team = BenchTeam::start_with_env(&dir.join("on"), "otelon", on_env)?;
    let (mut off, mut on) = paired_latency(&mut off_team, &mut on_team, n)?;
    let status = on_team.tp.dir.join("telemetry.json");
    off_team.stop()?;
    on_team.stop()?;
    let exported: serde_json::Value = std::fs::read(&status)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (off50, on50) = (pct(&mut off, 50.0), pct(&mut on, 50.0));
    let (off99, on99) = (pct(&mut off, 99.0), pct(&mut on, 99.0));
    let ratio = on50 / off50;
    r.add(
        "durable message latency p50, telemetry on (local sink)",
        dur(on50),
        format!("{} (off)", dur(off50)),
        format!("{ratio:.3}×"),
        "≤ 1.05× off",
        ratio <= 1.05,
    );
    r.note(format!(
        "telemetry on vs off, {} samples each: p99 {} vs {}; the sink took {} requests; the last on-daemon's status: {exported}",
        off.len(),
        dur(on99),
        dur(off99),
        sink.received().len()
    ));
    Ok(())
}

/// Durable A→daemon→B latency samples of `off` and `on`, one message through each in turn.
fn paired_latency(
    off: &mut BenchTeam,
    on: &mut BenchTeam,
    n: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut pairs = Vec::new();
    for team in [&mut *off, &mut *on] {
        team.register(&["lat-a".into(), "lat-b".into()])?;
        let a = team.agent("lat-a")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let rh = receiver(team.agent("lat-b")?, stop.clone(), Some(tx));
        pairs.push((a, rx, rh));
    }
    let body = "x".repeat(100);
    let (mut off_lat, mut on_lat) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + 200 {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let (a, rx, _) = &mut pairs[k];
            let lat = one_message(a, rx, &body)?;
            if i >= 200 {
                let side = if k == 0 { &mut off_lat } else { &mut on_lat };
                side.push(lat);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for (_, _, rh) in pairs {
        let _ = rh.join();
    }
    Ok((off_lat, on_lat))
}
