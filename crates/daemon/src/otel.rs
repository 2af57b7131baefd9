//! OpenTelemetry export (docs/TELEMETRY.md): the core hands each committed batch's changes to
//! `agent_team_telemetry`'s exporter, whose calls only copy a few fields into a bounded channel;
//! its own thread makes the spans and metrics and exports them. Off unless the team file's
//! `[telemetry] otlp_endpoint` or the daemon's `OTEL_EXPORTER_OTLP_*` variables name an endpoint.

use agent_team_config::TeamConfig;
use agent_team_paths::TeamPaths;
use agent_team_state::Change;
use agent_team_telemetry::{Exporter, Observer, Settings};
use std::time::Duration;

/// The status file the exporter keeps its counts in, in the team's state dir (`doctor` reads it).
pub const STATUS_FILE: &str = "telemetry.json";

/// How long the daemon's end waits for the last export.
const LAST_EXPORT: Duration = Duration::from_secs(5);

/// The exporter, started once an endpoint is known and again when the team file changes it.
pub(crate) struct Otel {
    /// The daemon's environment's settings, read once.
    env: Settings,
    /// The team file's endpoint the exporter was started for (`Some(None)`: for none).
    started_for: Option<Option<String>>,
    observer: Option<Box<dyn Observer>>,
}

impl Otel {
    /// Settings from the daemon's environment; nothing starts until the first batch.
    pub(crate) fn from_env() -> Otel {
        Otel {
            env: Settings::from_env(),
            started_for: None,
            observer: None,
        }
    }

    /// Hands a committed batch's changes to the exporter (started or restarted first when
    /// the team file's endpoint is new). Without an endpoint: one comparison.
    pub(crate) fn observe(
        &mut self,
        cfg: Option<&TeamConfig>,
        paths: &TeamPaths,
        changes: &[Change],
    ) {
        let wanted = cfg.and_then(|c| c.telemetry.otlp_endpoint.as_deref());
        if self.started_for.as_ref().map(Option::as_deref) != Some(wanted) {
            self.start(wanted, paths);
        }
        let Some(obs) = &self.observer else { return };
        for change in changes {
            match change {
                Change::Event(env) => obs.event(env),
                Change::MessageNew(m) => obs.message(m.id, Some(m.ts), m.state),
                Change::MessageState { id, state } => obs.message(*id, None, *state),
                _ => {}
            }
        }
    }

    fn start(&mut self, endpoint: Option<&str>, paths: &TeamPaths) {
        self.started_for = Some(endpoint.map(str::to_string));
        // The old exporter finishes on its own thread (its last export is not waited for).
        if let Some(old) = self.observer.take() {
            std::thread::spawn(move || old.close(LAST_EXPORT));
        }
        let settings = self.env.clone().with_endpoint(endpoint);
        let status = paths.dir.join(STATUS_FILE);
        match Exporter::start(&settings, &paths.team, Some(status.clone())) {
            Ok(Some(e)) => {
                tracing::info!(
                    traces = settings.traces_url().unwrap_or_default(),
                    metrics = settings.metrics_url().unwrap_or_default(),
                    "telemetry: exporting over OTLP/HTTP"
                );
                self.observer = Some(Box::new(e));
            }
            Ok(None) => {
                let _ = std::fs::remove_file(status);
            }
            Err(e) => tracing::warn!("telemetry: not exporting: {e}"),
        }
    }

    /// The daemon's end: open spans ended, the last export waited for (bounded).
    pub(crate) fn close(&mut self) {
        if let Some(obs) = self.observer.take() {
            let c = obs.close(LAST_EXPORT);
            tracing::info!(
                spans_exported = c.spans_exported,
                spans_dropped = c.spans_dropped,
                facts_dropped = c.facts_dropped,
                "telemetry: stopped"
            );
        }
    }
}
