//! The team's model gateway in the daemon (issue 65): started on the first launch of an agent
//! CLI that goes through it, on a thread of its own (`agent_team_gateway`). Each launch of
//! such an agent registers it with a new token and the real key of its role, read here from
//! the operator's environment; the worker hands its CLI the gateway's address and the token,
//! never the key. The core is the gateway's meter: a call's budget lease is a `budget_check`
//! of that agent, its usage a `report_usage` (so `usage`, `ps` and `run --json` show it like
//! our own agents' spend), every call a `MODEL_CALL` event, and a spent budget stops the
//! agent as `failed: budget` with the leader told, as when our own agent's budget stops it.

use crate::core::{Core, CoreMsg, CoreTx};
use agent_team_config::{Provider, Role};
use agent_team_gateway::{Ask, Call, Gateway, Limits, Meter, Route, Verdict, VerdictFuture};
use agent_team_protocol::{CallTrace, Event, Reply};
use agent_team_state::Actor;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// What the gateway asks of the core.
#[derive(Debug)]
pub enum GatewayMsg {
    /// A budget lease for `agent`'s next model call.
    Check {
        /// The agent.
        agent: String,
        /// The call.
        ask: Ask,
        /// The verdict.
        reply: oneshot::Sender<Verdict>,
    },
    /// A call ended (its usage settles the lease).
    Done(Call),
    /// A call was refused for a spent budget: the agent is to stop, `failed: budget`, whether
    /// its CLI ends on the error by itself or is stopped ([`GatewayMsg::StopForBudget`]).
    BudgetSpent {
        /// The agent.
        agent: String,
    },
    /// Its CLI had its time to show the error: the agent is stopped if it still runs.
    StopForBudget {
        /// The agent.
        agent: String,
    },
}

/// How long after its refusal an agent whose budget is spent is stopped: its CLI shows the
/// error first.
const STOP_AFTER: Duration = Duration::from_secs(1);

/// The core as the gateway's meter.
struct CoreMeter {
    tx: CoreTx,
}

impl Meter for CoreMeter {
    fn check(&self, agent: &str, ask: Ask) -> VerdictFuture {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(CoreMsg::Gateway(GatewayMsg::Check {
            agent: agent.to_string(),
            ask,
            reply,
        }));
        Box::pin(async move {
            if sent.is_err() {
                return Verdict::Stop("the team's daemon is stopping".into());
            }
            rx.await
                .unwrap_or_else(|_| Verdict::Stop("the team's daemon is stopping".into()))
        })
    }

    fn done(&self, call: Call) {
        let _ = self.tx.send(CoreMsg::Gateway(GatewayMsg::Done(call)));
    }

    fn budget_spent(&self, agent: &str, _why: &str) {
        let (tx, agent) = (self.tx.clone(), agent.to_string());
        let _ = tx.send(CoreMsg::Gateway(GatewayMsg::BudgetSpent {
            agent: agent.clone(),
        }));
        std::thread::spawn(move || {
            std::thread::sleep(STOP_AFTER);
            let _ = tx.send(CoreMsg::Gateway(GatewayMsg::StopForBudget { agent }));
        });
    }
}

/// The team's gateway, started on first use.
pub struct Gateways {
    tx: CoreTx,
    started: OnceLock<Option<Arc<Gateway>>>,
}

impl std::fmt::Debug for Gateways {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateways")
            .field("started", &self.started.get())
            .finish()
    }
}

impl Gateways {
    /// A gateway for the core at `tx`, not started yet.
    pub fn new(tx: CoreTx) -> Gateways {
        Gateways {
            tx,
            started: OnceLock::new(),
        }
    }

    /// The gateway, started now if it was not (none: it cannot start, said in the log).
    pub fn get(&self) -> Option<&Arc<Gateway>> {
        self.started
            .get_or_init(|| {
                let meter = Arc::new(CoreMeter {
                    tx: self.tx.clone(),
                });
                match Gateway::start(meter, Limits::default()) {
                    Ok(g) => {
                        tracing::info!(addr = %g.addr(), "model gateway started");
                        Some(Arc::new(g))
                    }
                    Err(e) => {
                        tracing::warn!("{e}; agent CLIs are given their keys");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The gateway if it runs (not started by asking).
    pub fn running(&self) -> Option<&Arc<Gateway>> {
        self.started.get().and_then(Option::as_ref)
    }

    /// Forgets `agent`, down (stopped, exited, restarting, removed): its token is refused from
    /// now on; a relaunch registers it with a new one.
    pub fn forget(&self, agent: &str) {
        if let Some(gw) = self.running() {
            gw.forget(agent);
        }
    }
}

/// The upstream an agent CLI on `provider` calls when its role names no `base_url` (its
/// adapter's own default); none for a CLI that does not go through the gateway (the `cli`
/// template configures its model its own way; Qwen Code has no usual URL to assume).
fn default_upstream(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::ClaudeCode => Some("https://api.anthropic.com"),
        // Copilot CLI's BYOK provider and opencode's `@ai-sdk/openai-compatible` one speak
        // OpenAI chat completions to it.
        Provider::Codex | Provider::Copilot | Provider::Opencode => {
            Some("https://api.openai.com/v1")
        }
        Provider::GeminiCli => Some("https://generativelanguage.googleapis.com"),
        _ => None,
    }
}

/// Whether an agent CLI on `provider` is pointed at the gateway.
pub fn goes_through(provider: Provider) -> bool {
    matches!(
        provider,
        Provider::ClaudeCode
            | Provider::Codex
            | Provider::GeminiCli
            | Provider::QwenCode
            | Provider::Copilot
            | Provider::Opencode
    )
}

/// Registers `agent` (on `provider`, of `role`) for its launch: the variables its worker hands
/// the CLI (the gateway's base URL for the role's upstream, and the agent's new token). None:
/// this CLI does not go through the gateway, or it cannot start.
pub fn register(
    gateways: &Gateways,
    agent: &str,
    role: &Role,
    provider: Provider,
) -> Option<Vec<(String, String)>> {
    if !goes_through(provider) {
        return None;
    }
    let upstream = role
        .base_url
        .clone()
        .or_else(|| default_upstream(provider).map(String::from))?;
    let gw = gateways.get()?;
    let key = provider
        .key_env(role.api_key_env.as_deref())
        .and_then(|v| std::env::var(v).ok())
        .filter(|k| !k.is_empty());
    let base = gw.client_base(&upstream);
    match gw.register(agent, Route { upstream, key }) {
        Ok(token) => Some(vec![
            (agent_team_pane::env::GATEWAY_URL.to_string(), base),
            (agent_team_pane::env::GATEWAY_TOKEN.to_string(), token),
        ]),
        Err(e) => {
            tracing::warn!(agent, "{e}");
            None
        }
    }
}

impl Core {
    /// What the gateway asks, answered.
    pub(crate) fn gateway_msg(&mut self, msg: GatewayMsg) {
        match msg {
            GatewayMsg::Check { agent, ask, reply } => {
                let actor = Actor::Agent(agent);
                let verdict = match crate::handlers::usage::check(
                    self,
                    &actor,
                    Some(ask.model),
                    Some(ask.input_tokens),
                    ask.output_tokens,
                ) {
                    Reply::Budget {
                        stop: Some(why), ..
                    } => Verdict::Stop(why),
                    Reply::Budget {
                        wait: Some(why), ..
                    } => Verdict::Wait(why),
                    _ => Verdict::Go,
                };
                let _ = reply.send(verdict);
            }
            GatewayMsg::Done(call) => self.gateway_done(call),
            GatewayMsg::BudgetSpent { agent } => {
                self.supervise(|s| s.budget_spent(&agent));
            }
            GatewayMsg::StopForBudget { agent } => {
                let running = self
                    .state
                    .agent(&agent)
                    .is_some_and(|a| !a.info.status.is_down());
                if running {
                    self.supervise(|s| s.stop_for_budget(&agent));
                }
            }
        }
    }

    /// A call ended: its usage counted as the agent's (settling its lease), or the lease
    /// dropped; and its trace recorded.
    fn gateway_done(&mut self, call: Call) {
        let now = self.clock.wall();
        let actor = Actor::Agent(call.agent.clone());
        match call.usage {
            Some(u) => {
                let tokens = crate::handlers::usage::Tokens {
                    input: u.input,
                    output: u.output,
                    cached: u.cached,
                    cache_write: u.cache_write,
                };
                if let Err(e) =
                    crate::handlers::usage::report(self, &actor, call.model.clone(), tokens, now)
                {
                    tracing::warn!(agent = %call.agent, "a gateway call's usage: {}", e.message);
                }
            }
            None => self.state.drop_lease(&call.agent),
        }
        let u = call.usage.unwrap_or_default();
        let tokens = crate::handlers::usage::Tokens {
            input: u.input,
            output: u.output,
            cached: u.cached,
            cache_write: u.cache_write,
        };
        let trace = CallTrace {
            api: call.dialect.as_str().to_string(),
            streamed: call.streamed,
            status: call.status,
            latency_ms: millis(call.latency),
            first_byte_ms: call.first_byte.map(millis),
        };
        let event = model_call(call.model, &tokens, trace, call.error);
        self.state.record(&call.agent, event, now);
    }
}

/// A duration in whole ms.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One model call's `MODEL_CALL` event: the one home of its shape, for an agent CLI's call
/// through the gateway and for our own agents' (from their `report_usage`).
pub(crate) fn model_call(
    model: String,
    tokens: &crate::handlers::usage::Tokens,
    trace: CallTrace,
    error: Option<String>,
) -> Event {
    Event::ModelCall {
        model,
        api: trace.api,
        streamed: trace.streamed,
        status: trace.status,
        input_tokens: tokens.input,
        output_tokens: tokens.output,
        cached_tokens: tokens.cached,
        cache_write_tokens: tokens.cache_write,
        latency_ms: trace.latency_ms,
        first_byte_ms: trace.first_byte_ms,
        error,
    }
}

impl crate::supervisor::Step<'_> {
    /// The gateway refused `name`'s call for a spent budget: once down (its CLI ends on the
    /// error, or is stopped), it is `failed: budget` with the leader told, as when our own
    /// agent stops for its budget.
    pub(crate) fn budget_spent(&mut self, name: &str) {
        self.sup.mark_budget_stop(name);
    }

    /// Stops `name` for its spent budget, if the gateway's refusal did not end it already.
    pub(crate) fn stop_for_budget(&mut self, name: &str) {
        if self.sup.marked_budget_stop(name) {
            self.begin_stop(name, crate::supervisor::StopReason::Budget);
        }
    }
}
