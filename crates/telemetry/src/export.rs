//! The telemetry thread: facts in, spans batched and exported over OTLP/HTTP, metrics on the
//! SDK's periodic reader, the counts written to the status file.

use crate::Shared;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Spans sent in one export request at most.
const MAX_BATCH: usize = 512;
/// Finished spans waiting for an export at most; more are dropped (and counted).
const MAX_QUEUE: usize = 8192;
/// How often the finished spans are exported (sooner when a batch is full or a run ends).
const INTERVAL: Duration = Duration::from_secs(2);

/// What was exported and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spans an export delivered.
    pub spans_exported: u64,
    /// Spans never delivered: an export failed (the collector down, refusing, too slow), or
    /// too many waited for one.
    pub spans_dropped: u64,
    /// Facts (events, message changes) the telemetry thread was too far behind to take.
    pub facts_dropped: u64,
}

/// What the thread exports, where, and as whom.
pub(crate) struct Plan {
    pub traces: Option<String>,
    pub metrics: Option<String>,
    pub service_name: String,
    pub team: String,
    pub status: Option<PathBuf>,
}

/// The span processor: finished spans wait in a bounded queue for the thread's next export.
#[derive(Debug, Clone)]
struct Batcher {
    queue: Arc<Mutex<Vec<SpanData>>>,
    shared: Arc<Shared>,
}

impl SpanProcessor for Batcher {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= MAX_QUEUE {
            self.shared.spans_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The spans' way out and what has come of it.
struct Out<'a> {
    exporter: Option<opentelemetry_otlp::SpanExporter>,
    queue: Arc<Mutex<Vec<SpanData>>>,
    shared: &'a Shared,
    status: Option<PathBuf>,
    traces: Option<String>,
    metrics: Option<String>,
    last_error: Option<String>,
    written: Option<crate::Counts>,
}

impl Out<'_> {
    fn queued(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Exports every finished span, a batch at a time; a failed batch is dropped and counted.
    fn export(&mut self) {
        let spans = std::mem::take(
            &mut *self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if let Some(exporter) = &self.exporter {
            let mut spans = spans;
            while !spans.is_empty() {
                let rest = spans.split_off(spans.len().min(MAX_BATCH));
                let n = spans.len() as u64;
                match futures_executor::block_on(exporter.export(spans)) {
                    Ok(()) => {
                        self.shared.spans_exported.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if self.last_error.is_none() {
                            tracing::warn!(
                                "telemetry: cannot export spans (dropped and counted from now on): {e}"
                            );
                        }
                        self.last_error = Some(e.to_string());
                        self.shared.spans_dropped.fetch_add(n, Ordering::Relaxed);
                    }
                }
                spans = rest;
            }
        }
        self.write_status();
    }

    /// Writes the counts to the status file when they changed (a new file renamed over it).
    fn write_status(&mut self) {
        let counts = self.shared.counts();
        let Some(path) = &self.status else { return };
        if self.written == Some(counts) {
            return;
        }
        let body = serde_json::json!({
            "traces_endpoint": self.traces,
            "metrics_endpoint": self.metrics,
            "spans_exported": counts.spans_exported,
            "spans_dropped": counts.spans_dropped,
            "facts_dropped": counts.facts_dropped,
            "last_error": self.last_error,
        });
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, body.to_string()).is_ok() && std::fs::rename(&tmp, path).is_ok() {
            self.written = Some(counts);
        }
    }
}

/// The thread's life: until every sender is gone, then the open spans ended, the last export
/// and the metrics' last push.
pub(crate) fn run(plan: Plan, shared: &Arc<Shared>) -> Counts {
    let resource = Resource::builder()
        .with_service_name(plan.service_name.clone())
        .with_attribute(KeyValue::new("agent_team.team", plan.team.clone()))
        .build();
    let mut exporter = plan.traces.as_deref().and_then(|url| {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| tracing::warn!("telemetry: no trace export to {url}: {e}"))
            .ok()
    });
    if let Some(e) = &mut exporter {
        e.set_resource(&resource);
    }
    let queue: Arc<Mutex<Vec<SpanData>>> = Default::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Batcher {
            queue: queue.clone(),
            shared: shared.clone(),
        })
        .with_resource(resource.clone())
        .build();
    let mut meters = SdkMeterProvider::builder().with_resource(resource);
    if let Some(url) = plan.metrics.as_deref() {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
        {
            Ok(e) => meters = meters.with_reader(PeriodicReader::builder(e).build()),
            Err(e) => tracing::warn!("telemetry: no metrics export to {url}: {e}"),
        }
    }
    let meters = meters.build();
    let mut model = crate::spans::Model::new(
        provider.tracer("agent-team"),
        &opentelemetry::metrics::MeterProvider::meter(&meters, "agent-team"),
        &plan.team,
    );
    let mut out = Out {
        exporter,
        queue,
        shared,
        status: plan.status,
        traces: plan.traces,
        metrics: plan.metrics,
        last_error: None,
        written: None,
    };
    out.write_status();
    let mut next = Instant::now() + INTERVAL;
    loop {
        // Read before the facts are taken: none is left behind once it is seen.
        let stop = shared.stop.load(Ordering::SeqCst);
        let facts = std::mem::take(
            &mut *shared
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut now_please = false;
        for fact in facts {
            now_please |= model.apply(fact);
        }
        if stop {
            break;
        }
        if now_please || Instant::now() >= next || out.queued() >= MAX_BATCH {
            out.export();
            next = Instant::now() + INTERVAL;
        }
        std::thread::park_timeout(crate::POLL);
    }
    model.end_all(std::time::SystemTime::now());
    out.export();
    let _ = meters.shutdown();
    let _ = provider.shutdown();
    out.write_status();
    shared.counts()
}
