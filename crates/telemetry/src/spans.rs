//! Facts into spans and metrics. The tree: a run (or, outside one, the team's session) →
//! each agent's turns (from `running` to `idle` or down) → the turn's model calls and tool
//! calls → a tool call's permission request. Times are the events' (milliseconds).

use crate::Fact;
use agent_team_protocol::{
    AgentStatus, DeliveryState, Event, PermRequest, PermStatus, Task, TaskStatus, Timestamp,
};
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Messages remembered for their latency at most (the oldest are forgotten past it).
const MAX_MESSAGES: usize = 65_536;

fn time(ts: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ts.0)
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    to.0.saturating_sub(from.0) as f64 / 1000.0
}

/// An open span and the context its children start in.
struct Open {
    span: Span,
    cx: Context,
}

impl Open {
    fn new(span: Span) -> Open {
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        Open { span, cx }
    }

    fn end(mut self, at: Timestamp) {
        self.span.end_with_timestamp(time(at));
    }
}

/// An agent's open turn.
struct Turn {
    open: Open,
    /// Where the next model call starts: the turn's start, the last model call's or tool
    /// call's end.
    anchor: Timestamp,
    /// The model call whose finish reason is known only from what the agent does next.
    model: Option<(Span, Timestamp)>,
    model_calls: u64,
    tool_calls: u64,
}

impl Turn {
    /// Ends the pending model call with `reason`.
    fn settle(&mut self, reason: &'static str) {
        if let Some((mut span, end)) = self.model.take() {
            span.set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec![StringValue::from(reason)])),
            ));
            span.end_with_timestamp(time(end));
        }
    }

    fn end(mut self, at: Timestamp, failed: Option<&str>) {
        self.settle("stop");
        let span = &mut self.open.span;
        span.set_attribute(KeyValue::new(
            "agent_team.turn.model_calls",
            self.model_calls as i64,
        ));
        span.set_attribute(KeyValue::new(
            "agent_team.turn.tool_calls",
            self.tool_calls as i64,
        ));
        if let Some(why) = failed {
            span.set_status(Status::error(why.to_string()));
        }
        self.open.end(at);
    }
}

/// The metrics' instruments.
struct Instruments {
    tokens: Counter<u64>,
    token_usage: Histogram<u64>,
    cost: Counter<f64>,
    model_duration: Histogram<f64>,
    tool_calls: Counter<u64>,
    permission_wait: Histogram<f64>,
    claim_latency: Histogram<f64>,
    message_latency: Histogram<f64>,
    tasks_pending: Gauge<u64>,
    messages_unread: Gauge<u64>,
    permissions_pending: Gauge<u64>,
}

impl Instruments {
    fn new(m: &Meter) -> Instruments {
        Instruments {
            tokens: m
                .u64_counter("agent_team.tokens")
                .with_unit("{token}")
                .with_description("Model tokens, by gen_ai.token.type (input, output, cached)")
                .build(),
            token_usage: m
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Tokens of one model call (GenAI semantic conventions)")
                .build(),
            cost: m
                .f64_counter("agent_team.cost")
                .with_unit("USD")
                .with_description("Spend at the team's prices")
                .build(),
            model_duration: m
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("A model call's time, as the daemon saw it")
                .build(),
            tool_calls: m
                .u64_counter("agent_team.tool_calls")
                .with_unit("{call}")
                .build(),
            permission_wait: m
                .f64_histogram("agent_team.permission.wait")
                .with_unit("s")
                .with_description("From a permission request to its decision")
                .build(),
            claim_latency: m
                .f64_histogram("agent_team.task.claim_latency")
                .with_unit("s")
                .with_description("From a task's becoming pending to its claim")
                .build(),
            message_latency: m
                .f64_histogram("agent_team.message.latency")
                .with_unit("s")
                .with_description(
                    "From a message's send to its delivery (state delivered) or reading (read)",
                )
                .build(),
            tasks_pending: m
                .u64_gauge("agent_team.tasks.pending")
                .with_unit("{task}")
                .with_description("Tasks waiting on the board")
                .build(),
            messages_unread: m
                .u64_gauge("agent_team.messages.unread")
                .with_unit("{message}")
                .with_description("Message copies sent and not yet read")
                .build(),
            permissions_pending: m
                .u64_gauge("agent_team.permissions.pending")
                .with_unit("{request}")
                .with_description("Permission requests waiting for a decision")
                .build(),
        }
    }
}

/// The open spans and what the metrics need to remember.
pub(crate) struct Model {
    tracer: SdkTracer,
    team: String,
    metrics: Instruments,
    /// The run (or the session), and whether it is a run.
    root: Option<(Open, bool)>,
    turns: HashMap<String, Turn>,
    /// Open tool calls by agent and call id, with the tool's name.
    tools: HashMap<(String, String), (Open, String)>,
    /// Open permission requests by id.
    perms: HashMap<u64, Span>,
    /// Pending tasks: since when.
    pending: HashMap<u64, Timestamp>,
    /// Unread message copies: when each was sent, and whether its delivery was counted.
    unread: HashMap<u64, (Timestamp, bool)>,
}

impl Model {
    pub(crate) fn new(tracer: SdkTracer, meter: &Meter, team: &str) -> Model {
        Model {
            tracer,
            team: team.to_string(),
            metrics: Instruments::new(meter),
            root: None,
            turns: HashMap::new(),
            tools: HashMap::new(),
            perms: HashMap::new(),
            pending: HashMap::new(),
            unread: HashMap::new(),
        }
    }

    fn start(
        &self,
        name: String,
        at: Timestamp,
        kind: SpanKind,
        parent: &Context,
        attrs: Vec<KeyValue>,
    ) -> Span {
        self.tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(time(at))
            .with_attributes(attrs)
            .start_with_context(&self.tracer, parent)
    }

    /// The context a turn starts in: the run's, or the session's (started now when none is open).
    fn root_cx(&mut self, at: Timestamp) -> Context {
        if self.root.is_none() {
            let span = self.start(
                format!("session {}", self.team),
                at,
                SpanKind::Internal,
                &Context::new(),
                vec![KeyValue::new("agent_team.team", self.team.clone())],
            );
            self.root = Some((Open::new(span), false));
        }
        self.root
            .as_ref()
            .map(|(o, _)| o.cx.clone())
            .unwrap_or_default()
    }

    /// `agent`'s open turn, started at `at` when none is.
    fn turn(&mut self, agent: &str, role: &str, at: Timestamp) -> &mut Turn {
        if !self.turns.contains_key(agent) {
            let parent = self.root_cx(at);
            let span = self.start(
                format!("invoke_agent {agent}"),
                at,
                SpanKind::Internal,
                &parent,
                vec![
                    KeyValue::new("gen_ai.operation.name", "invoke_agent"),
                    KeyValue::new("gen_ai.agent.name", agent.to_string()),
                    KeyValue::new("agent_team.role", role.to_string()),
                    KeyValue::new("agent_team.team", self.team.clone()),
                ],
            );
            self.turns.insert(
                agent.to_string(),
                Turn {
                    open: Open::new(span),
                    anchor: at,
                    model: None,
                    model_calls: 0,
                    tool_calls: 0,
                },
            );
        }
        // Inserted above when missing.
        #[allow(clippy::unwrap_used)]
        self.turns.get_mut(agent).unwrap()
    }

    fn end_turn(&mut self, agent: &str, at: Timestamp, failed: Option<&str>) {
        let open: Vec<(String, String)> = self
            .tools
            .keys()
            .filter(|(a, _)| a == agent)
            .cloned()
            .collect();
        for key in open {
            if let Some((o, _)) = self.tools.remove(&key) {
                o.end(at);
            }
        }
        if let Some(t) = self.turns.remove(agent) {
            t.end(at, failed);
        }
    }

    /// Takes one fact; `true` when what it ended should be exported now (a run's end).
    pub(crate) fn apply(&mut self, fact: Fact) -> bool {
        match fact {
            Fact::Event {
                ts,
                agent,
                role,
                event,
            } => self.event(ts, &agent, &role, *event),
            Fact::Message {
                id,
                sent,
                state,
                at,
            } => {
                self.message(id, sent, state, at);
                false
            }
        }
    }

    fn event(&mut self, ts: Timestamp, agent: &str, role: &str, event: Event) -> bool {
        match event {
            Event::RunStarted { goal } => {
                if let Some((o, _)) = self.root.take() {
                    o.end(ts);
                }
                let mut attrs = vec![KeyValue::new("agent_team.team", self.team.clone())];
                if let Some(g) = goal {
                    attrs.push(KeyValue::new("agent_team.run.goal", cut(&g, 512)));
                }
                let span = self.start(
                    format!("run {}", self.team),
                    ts,
                    SpanKind::Internal,
                    &Context::new(),
                    attrs,
                );
                self.root = Some((Open::new(span), true));
            }
            Event::RunFinished { success, .. } => {
                if let Some((o, true)) = &mut self.root {
                    o.span
                        .set_attribute(KeyValue::new("agent_team.run.success", success));
                    if !success {
                        o.span.set_status(Status::error("the run failed"));
                    }
                }
                self.end_all(time(ts));
                return true;
            }
            Event::AgentStatus { status, detail, .. } => match status {
                AgentStatus::Running | AgentStatus::Waiting => {
                    self.turn(agent, role, ts);
                }
                AgentStatus::Starting => {}
                AgentStatus::Idle | AgentStatus::Exited | AgentStatus::Stopped => {
                    self.end_turn(agent, ts, None)
                }
                AgentStatus::Backoff | AgentStatus::Failed | AgentStatus::Unreachable => {
                    let why = detail.unwrap_or_else(|| status.as_str().to_string());
                    self.end_turn(agent, ts, Some(&why))
                }
            },
            Event::UsageUpdated { model, usage, .. } => {
                let team = self.team.clone();
                let tracer = self.tracer.clone();
                let turn = self.turn(agent, role, ts);
                turn.settle("stop");
                let start = turn.anchor;
                let parent = turn.open.cx.clone();
                turn.anchor = ts;
                turn.model_calls += 1;
                let span = tracer
                    .span_builder(format!("chat {model}"))
                    .with_kind(SpanKind::Client)
                    .with_start_time(time(start))
                    .with_attributes(vec![
                        KeyValue::new("gen_ai.operation.name", "chat"),
                        KeyValue::new("gen_ai.request.model", model.clone()),
                        KeyValue::new("gen_ai.response.model", model.clone()),
                        KeyValue::new("gen_ai.agent.name", agent.to_string()),
                        KeyValue::new("gen_ai.usage.input_tokens", usage.input_tokens as i64),
                        KeyValue::new("gen_ai.usage.output_tokens", usage.output_tokens as i64),
                        KeyValue::new(
                            "gen_ai.usage.cache_read.input_tokens",
                            usage.cached_tokens as i64,
                        ),
                        KeyValue::new("agent_team.team", team),
                    ])
                    .start_with_context(&tracer, &parent);
                let mut span = span;
                if let Some(usd) = usage.cost_usd {
                    span.set_attribute(KeyValue::new("agent_team.cost_usd", usd));
                }
                turn.model = Some((span, ts));
                let m = &self.metrics;
                let attrs = |kind: &'static str| {
                    [
                        KeyValue::new("gen_ai.token.type", kind),
                        KeyValue::new("gen_ai.request.model", model.clone()),
                        KeyValue::new("gen_ai.agent.name", agent.to_string()),
                    ]
                };
                m.tokens.add(usage.input_tokens, &attrs("input"));
                m.tokens.add(usage.output_tokens, &attrs("output"));
                m.tokens.add(usage.cached_tokens, &attrs("cached"));
                m.token_usage
                    .record(usage.input_tokens, &attrs("input")[..2]);
                m.token_usage
                    .record(usage.output_tokens, &attrs("output")[..2]);
                m.model_duration.record(
                    secs(start, ts),
                    &[KeyValue::new("gen_ai.request.model", model.clone())],
                );
                if let Some(usd) = usage.cost_usd {
                    m.cost.add(
                        usd,
                        &[
                            KeyValue::new("gen_ai.request.model", model),
                            KeyValue::new("gen_ai.agent.name", agent.to_string()),
                        ],
                    );
                }
            }
            Event::ToolCallStart {
                tool_call_id,
                tool_name,
                ..
            } => {
                let turn = self.turn(agent, role, ts);
                turn.settle("tool_calls");
                turn.tool_calls += 1;
                let parent = turn.open.cx.clone();
                let span = self.start(
                    format!("execute_tool {tool_name}"),
                    ts,
                    SpanKind::Internal,
                    &parent,
                    vec![
                        KeyValue::new("gen_ai.operation.name", "execute_tool"),
                        KeyValue::new("gen_ai.tool.name", tool_name.clone()),
                        KeyValue::new("gen_ai.tool.call.id", tool_call_id.clone()),
                        KeyValue::new("gen_ai.agent.name", agent.to_string()),
                    ],
                );
                self.tools.insert(
                    (agent.to_string(), tool_call_id),
                    (Open::new(span), tool_name),
                );
            }
            Event::ToolCallResult {
                tool_call_id,
                is_error,
                ..
            } => {
                if let Some((mut o, tool)) = self.tools.remove(&(agent.to_string(), tool_call_id)) {
                    if is_error {
                        o.span.set_status(Status::error("the tool failed"));
                    }
                    o.end(ts);
                    self.metrics.tool_calls.add(
                        1,
                        &[
                            KeyValue::new("gen_ai.tool.name", tool),
                            KeyValue::new("error", is_error),
                        ],
                    );
                }
                if let Some(t) = self.turns.get_mut(agent) {
                    t.anchor = ts;
                }
            }
            Event::PermissionRequested { request } => self.perm_requested(&request),
            Event::PermissionDecided { request } => self.perm_decided(&request, ts),
            Event::TaskUpdated { task } => self.task(&task, ts),
            _ => {}
        }
        false
    }

    /// A permission request: under the asking agent's latest open tool call (the one it
    /// asks for), else its turn.
    fn perm_requested(&mut self, r: &PermRequest) {
        if self.perms.contains_key(&r.id) {
            return;
        }
        let parent = self
            .tools
            .iter()
            .filter(|((a, _), (_, tool))| *a == r.agent && *tool == r.tool)
            .map(|(_, (o, _))| o.cx.clone())
            .next()
            .or_else(|| self.turns.get(&r.agent).map(|t| t.open.cx.clone()));
        let parent = match parent {
            Some(cx) => cx,
            None => self.root_cx(r.ts),
        };
        let span = self.start(
            format!("permission {}", r.tool),
            r.ts,
            SpanKind::Internal,
            &parent,
            vec![
                KeyValue::new("agent_team.permission.id", r.id as i64),
                KeyValue::new("agent_team.permission.tool", r.tool.clone()),
                KeyValue::new("gen_ai.agent.name", r.agent.clone()),
            ],
        );
        self.perms.insert(r.id, span);
        self.metrics
            .permissions_pending
            .record(self.perms.len() as u64, &[]);
    }

    fn perm_decided(&mut self, r: &PermRequest, ts: Timestamp) {
        let Some(mut span) = self.perms.remove(&r.id) else {
            return;
        };
        let decision = match r.status {
            PermStatus::Pending => "pending",
            PermStatus::Allowed => "allowed",
            PermStatus::Denied => "denied",
            PermStatus::Void => "void",
        };
        let wait = ts.0.saturating_sub(r.ts.0);
        span.set_attribute(KeyValue::new("agent_team.permission.decision", decision));
        span.set_attribute(KeyValue::new("agent_team.permission.wait_ms", wait as i64));
        span.end_with_timestamp(time(ts));
        self.metrics.permission_wait.record(
            wait as f64 / 1000.0,
            &[KeyValue::new("agent_team.permission.decision", decision)],
        );
        self.metrics
            .permissions_pending
            .record(self.perms.len() as u64, &[]);
    }

    fn task(&mut self, task: &Task, ts: Timestamp) {
        match task.status {
            TaskStatus::Pending => {
                self.pending.entry(task.id).or_insert(ts);
            }
            TaskStatus::InProgress => {
                if let Some(since) = self.pending.remove(&task.id) {
                    let at = task.started_at.unwrap_or(ts);
                    self.metrics.claim_latency.record(secs(since, at), &[]);
                }
            }
            _ => {
                self.pending.remove(&task.id);
            }
        }
        self.metrics
            .tasks_pending
            .record(self.pending.len() as u64, &[]);
    }

    fn message(&mut self, id: u64, sent: Option<Timestamp>, state: DeliveryState, at: Timestamp) {
        match (state, sent) {
            (DeliveryState::Queued, Some(sent)) => {
                if self.unread.len() >= MAX_MESSAGES
                    && let Some(oldest) = self.unread.keys().min().copied()
                {
                    self.unread.remove(&oldest);
                }
                self.unread.insert(id, (sent, false));
            }
            (DeliveryState::Delivered, _) => {
                if let Some((sent, counted)) = self.unread.get_mut(&id)
                    && !*counted
                {
                    *counted = true;
                    self.metrics.message_latency.record(
                        secs(*sent, at),
                        &[KeyValue::new("agent_team.message.state", "delivered")],
                    );
                }
            }
            (DeliveryState::Read, _) => {
                if let Some((sent, counted)) = self.unread.remove(&id) {
                    if !counted {
                        self.metrics.message_latency.record(
                            secs(sent, at),
                            &[KeyValue::new("agent_team.message.state", "delivered")],
                        );
                    }
                    self.metrics.message_latency.record(
                        secs(sent, at),
                        &[KeyValue::new("agent_team.message.state", "read")],
                    );
                }
            }
            _ => {}
        }
        self.metrics
            .messages_unread
            .record(self.unread.len() as u64, &[]);
    }

    /// Ends every open span at `at` (a run's end, the exporter's).
    pub(crate) fn end_all(&mut self, at: SystemTime) {
        let at = Timestamp::from(at);
        for (_, mut span) in self.perms.drain() {
            span.end_with_timestamp(time(at));
        }
        let agents: Vec<String> = self.turns.keys().cloned().collect();
        for a in agents {
            self.end_turn(&a, at, None);
        }
        for (_, (o, _)) in self.tools.drain() {
            o.end(at);
        }
        if let Some((o, _)) = self.root.take() {
            o.end(at);
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
