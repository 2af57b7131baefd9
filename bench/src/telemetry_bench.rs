//! OpenTelemetry's cost to the daemon (docs/TELEMETRY.md): the durable message latency of a
//! daemon exporting to a local OTLP/HTTP sink beside one with telemetry off, in one run, two
//! pairs in alternating order so drift of the machine falls on both.

use crate::daemon_bench::{BenchTeam, message_latency};
use crate::report::{Report, dur, pct};
use agent_team_telemetry::sink::Sink;
use anyhow::Result;
use std::path::Path;

/// Runs the section: `BENCH_SECTION=telemetry`.
pub fn run(r: &mut Report, dir: &Path, quick: bool) -> Result<()> {
    let n = if quick { 400 } else { 2000 };
    let sink = Sink::start(false)?;
    let on_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), sink.endpoint()),
        // Metrics pushed every second, so the exporter works while the messages flow.
        (
            "OTEL_METRIC_EXPORT_INTERVAL".to_string(),
            "1000".to_string(),
        ),
    ];
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut exported = serde_json::Value::Null;
    for (round, on_first) in [(0, false), (1, true)] {
        for telemetry in [on_first, !on_first] {
            let name = format!("otel{round}{}", if telemetry { "on" } else { "off" });
            let env = if telemetry {
                on_env.clone()
            } else {
                Vec::new()
            };
            let mut team = BenchTeam::start_with_env(&dir.join(&name), &name, env)?;
            let lat = message_latency(&mut team, n)?;
            let status = team.tp.dir.join("telemetry.json");
            team.stop()?;
            if telemetry {
                on.extend(lat);
                exported = std::fs::read(&status)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
            } else {
                off.extend(lat);
            }
        }
    }
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
