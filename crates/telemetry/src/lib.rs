//! OpenTelemetry export for agent-team (docs/TELEMETRY.md): what a team's daemon already
//! records (its committed events, its messages' delivery) turned into OTLP/HTTP traces and
//! metrics for any OpenTelemetry backend (Jaeger, Tempo, Honeycomb, Datadog, a collector).
//!
//! The daemon's core only hands facts over: [`Observer::event`] and [`Observer::message`]
//! copy a few fields into a bounded queue (a short lock and a push: no wait, no system call,
//! the thread is not woken) and return. One thread of this crate's own takes the queue every
//! [`POLL`] and turns the facts into spans (a run, each agent's turns, each model call with
//! the GenAI semantic conventions' attributes, each tool call and permission request) and
//! metrics, batches the spans and exports them; the metrics go out on the SDK's periodic
//! reader. A collector that is down or slow costs the daemon nothing: what the queue cannot
//! take and what an export fails to deliver is dropped and counted ([`Counts`]), and the counts
//! are written to a small status file that `agent-team doctor` reads.
//!
//! Settings: [`Settings::from_env`] reads the standard `OTEL_*` variables; the team file's
//! `[telemetry] otlp_endpoint` is laid over them with [`Settings::with_endpoint`].

mod export;
mod spans;

#[cfg(any(test, feature = "sink"))]
pub mod sink;

use agent_team_protocol::{DeliveryState, Envelope, Event, Timestamp};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use export::Counts;

/// How many facts wait for the telemetry thread before more are dropped (and counted).
pub const CHANNEL_CAPACITY: usize = 8192;

/// How often the telemetry thread takes the facts waiting for it. The core never wakes it: a
/// fact costs the core a short uncontended lock and a push, no system call.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The service name when `OTEL_SERVICE_NAME` gives none.
pub const DEFAULT_SERVICE_NAME: &str = "agent-team";

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an `http://` or `https://` address.
    #[error("the OTLP endpoint {0:?} is not an http:// or https:// address")]
    BadEndpoint(String),
    /// The telemetry thread could not be started.
    #[error("cannot start the telemetry thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Where and as whom to export; off when no endpoint is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The OTLP/HTTP base address (`http://host:4318`); `/v1/traces` and `/v1/metrics` are
    /// added to it.
    pub endpoint: Option<String>,
    /// The full address of the traces (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), over `endpoint`.
    pub traces_endpoint: Option<String>,
    /// The full address of the metrics (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), over `endpoint`.
    pub metrics_endpoint: Option<String>,
    /// `service.name` of every span and metric.
    pub service_name: String,
    /// `OTEL_SDK_DISABLED=true`: nothing is exported, whatever the team file says.
    pub disabled: bool,
}

impl Settings {
    /// The standard variables of this process's environment.
    pub fn from_env() -> Settings {
        Settings::from_vars(|k| std::env::var(k).ok())
    }

    /// The standard variables as `var` gives them (tests hand in a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let get = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Settings {
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            traces_endpoint: get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            metrics_endpoint: get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            service_name: get("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string()),
            disabled: get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// These settings with the team file's endpoint (`[telemetry] otlp_endpoint`), which
    /// wins over `OTEL_EXPORTER_OTLP_ENDPOINT` and the per-signal variables.
    pub fn with_endpoint(mut self, endpoint: Option<&str>) -> Settings {
        if let Some(e) = endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            self.endpoint = Some(e.to_string());
            self.traces_endpoint = None;
            self.metrics_endpoint = None;
        }
        self
    }

    /// The traces' address, when export is on.
    pub fn traces_url(&self) -> Option<String> {
        if self.disabled {
            return None;
        }
        self.traces_endpoint
            .clone()
            .or_else(|| signal_url(self.endpoint.as_deref()?, "traces"))
    }

    /// The metrics' address, when export is on.
    pub fn metrics_url(&self) -> Option<String> {
        if self.disabled {
            return None;
        }
        self.metrics_endpoint
            .clone()
            .or_else(|| signal_url(self.endpoint.as_deref()?, "metrics"))
    }

    /// Whether anything is exported.
    pub fn is_on(&self) -> bool {
        self.traces_url().is_some() || self.metrics_url().is_some()
    }
}

/// `base` + `/v1/SIGNAL`, as OTLP/HTTP's base address is read.
fn signal_url(base: &str, signal: &str) -> Option<String> {
    Some(format!("{}/v1/{signal}", base.trim_end_matches('/')))
}

/// What the daemon's core tells the exporter: cheap calls that never wait.
pub trait Observer: Send {
    /// A committed event of the team's log.
    fn event(&self, env: &Envelope);
    /// A message copy: queued (a new one, with its time) or moved forward.
    fn message(&self, id: u64, sent: Option<Timestamp>, state: DeliveryState);
    /// What was exported and dropped so far.
    fn counts(&self) -> Counts;
    /// Ends every open span, exports what is left and stops, waiting at most `within`;
    /// the counts at the end (as far as they got).
    fn close(self: Box<Self>, within: Duration) -> Counts;
}

/// One fact for the telemetry thread: the few fields of an event or a message it needs.
#[derive(Debug)]
pub(crate) enum Fact {
    /// A committed event (only the kinds that make spans or metrics).
    Event {
        ts: Timestamp,
        agent: String,
        role: String,
        event: Box<Event>,
    },
    /// A message copy queued (`sent`) or moved forward, seen at `at`.
    Message {
        id: u64,
        sent: Option<Timestamp>,
        state: DeliveryState,
        at: Timestamp,
    },
}

/// Whether an event makes a span or a metric (the others are not sent to the thread).
fn wanted(event: &Event) -> bool {
    matches!(
        event,
        Event::RunStarted { .. }
            | Event::RunFinished { .. }
            | Event::ToolCallStart { .. }
            | Event::ToolCallResult { .. }
            | Event::AgentStatus { .. }
            | Event::TaskUpdated { .. }
            | Event::PermissionRequested { .. }
            | Event::PermissionDecided { .. }
            | Event::UsageUpdated { .. }
    )
}

/// The part of an event the thread needs: a tool call's arguments and result text stay behind.
fn slim(event: &Event) -> Event {
    match event {
        Event::ToolCallStart {
            tool_call_id,
            tool_name,
            ..
        } => Event::ToolCallStart {
            tool_call_id: tool_call_id.clone(),
            tool_name: tool_name.clone(),
            args: serde_json::Value::Null,
        },
        Event::ToolCallResult {
            tool_call_id,
            is_error,
            ..
        } => Event::ToolCallResult {
            tool_call_id: tool_call_id.clone(),
            content: String::new(),
            is_error: *is_error,
        },
        Event::RunFinished { success, .. } => Event::RunFinished {
            answer: String::new(),
            success: *success,
        },
        other => other.clone(),
    }
}

/// The exporter: a handle on the telemetry thread.
pub struct Exporter {
    shared: Arc<Shared>,
    thread: std::thread::Thread,
    done: std::sync::mpsc::Receiver<Counts>,
}

/// What the core's side and the thread share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Facts the full channel could not take.
    pub facts_dropped: AtomicU64,
    /// Spans an export delivered.
    pub spans_exported: AtomicU64,
    /// Spans that were never delivered (an export failed, the batch was full).
    pub spans_dropped: AtomicU64,
    /// The facts waiting for the thread (at most [`CHANNEL_CAPACITY`]).
    pub queue: std::sync::Mutex<Vec<Fact>>,
    /// The exporter was closed: the thread takes what is left and ends.
    pub stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn counts(&self) -> Counts {
        Counts {
            spans_exported: self.spans_exported.load(Ordering::Relaxed),
            spans_dropped: self.spans_dropped.load(Ordering::Relaxed),
            facts_dropped: self.facts_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Exporter {
    /// Starts the telemetry thread exporting team `team`'s spans and metrics as `settings`
    /// say; `status` is the file its counts are written to after each export. `None` when
    /// the settings export nothing.
    pub fn start(
        settings: &Settings,
        team: &str,
        status: Option<PathBuf>,
    ) -> Result<Option<Exporter>, TelemetryError> {
        let (traces, metrics) = (settings.traces_url(), settings.metrics_url());
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        for url in traces.iter().chain(metrics.iter()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(TelemetryError::BadEndpoint(url.clone()));
            }
        }
        let (done_tx, done) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::default());
        let plan = export::Plan {
            traces,
            metrics,
            service_name: settings.service_name.clone(),
            team: team.to_string(),
            status,
        };
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || {
                let counts = export::run(plan, &thread_shared);
                let _ = done_tx.send(counts);
            })?;
        Ok(Some(Exporter {
            shared,
            thread: handle.thread().clone(),
            done,
        }))
    }

    fn send(&self, fact: Fact) {
        let mut q = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= CHANNEL_CAPACITY {
            drop(q);
            self.shared.facts_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push(fact);
        }
    }
}

impl Observer for Exporter {
    fn event(&self, env: &Envelope) {
        if !wanted(&env.event) {
            return;
        }
        self.send(Fact::Event {
            ts: env.ts,
            agent: env.agent_id.clone(),
            role: env.role_name.clone(),
            event: Box::new(slim(&env.event)),
        });
    }

    fn message(&self, id: u64, sent: Option<Timestamp>, state: DeliveryState) {
        self.send(Fact::Message {
            id,
            sent,
            state,
            at: Timestamp::from(std::time::SystemTime::now()),
        });
    }

    fn counts(&self) -> Counts {
        self.shared.counts()
    }

    fn close(self: Box<Self>, within: Duration) -> Counts {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
        self.done
            .recv_timeout(within)
            .unwrap_or_else(|_| self.shared.counts())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
