//! One agent joined to its team, and the one way its tool calls run. A [`Session`] holds the
//! agent's link to the daemon, its one [`Inbox`], its role (with the member's own overrides)
//! and the context its tools run in. The model loop, the exec teammate and a CLI's MCP server
//! all call tools through it: [`Session::resolve`] (other systems' names translated, the tool
//! known and offered now) then [`Session::run`] (events, arguments parsed, the role's policy,
//! a permission request when it asks, the tool run); [`Session::judge`] is the same check for a
//! CLI's own tools, which the CLI runs itself.

use crate::inbox::{Decided, Inbox};
use crate::link::{Inbound, Link};
use crate::output::Output;
use crate::tools::{self, ToolCtx, ToolOutcome};
use crate::{AgentError, CommandGroups};
use agent_team_config::{PermAction, Role, TeamConfig};
use agent_team_protocol::*;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// One agent joined to its team (see the module's doc).
pub struct Session {
    link: Arc<Link>,
    inbox: Arc<Inbox>,
    config: TeamConfig,
    role: Role,
    ctx: ToolCtx,
    out: Output,
}

/// The tools an agent is offered: what it may call now, all it may call once its plan is
/// approved, and the names it was offered them under.
#[derive(Clone, Copy)]
pub struct Offer<'a> {
    /// The tools it has now.
    pub now: &'a [&'a str],
    /// Its whole set (a tool here and not in `now` is held back until its plan is approved).
    pub full: &'a [&'a str],
    /// The names its tools were offered under (our own, or another system's).
    pub naming: &'static agent_team_tools::Naming,
}

/// A call resolved to one of the agent's tools ([`Session::resolve`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Our tool.
    pub name: String,
    /// Its arguments, in our fields.
    pub args: Value,
    /// Text put before the tool's result (what another system's tool did that ours need not).
    pub note: Option<String>,
}

impl Session {
    /// A session over an established link; `loop_events`: an agent loop reads the events other
    /// than messages ([`Inbox::poll`]), a CLI's MCP server does not. Must be called within a
    /// tokio runtime (the inbox's sorting task starts here).
    pub fn new(
        link: Arc<Link>,
        inbound: mpsc::UnboundedReceiver<Inbound>,
        config: TeamConfig,
        role: Role,
        out: Output,
        groups: CommandGroups,
        loop_events: bool,
    ) -> Session {
        let inbox = Inbox::start(inbound, loop_events);
        let root = config
            .workspace
            .canonicalize()
            .unwrap_or_else(|_| config.workspace.clone());
        let ctx = ToolCtx {
            link: link.clone(),
            root,
            groups,
            team_file: tools::team_file(&config),
            runs_later: tools::runs_later(&config),
            turns: Arc::new(std::sync::atomic::AtomicU32::new(0)),
            search: config.search.clone(),
        };
        Session {
            link,
            inbox,
            config,
            role,
            ctx,
            out,
        }
    }

    /// The agent's link to its daemon.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// The agent's one inbox.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// The team's configuration as this agent works with it (its own workspace).
    pub fn config(&self) -> &TeamConfig {
        &self.config
    }

    /// The agent's role, with the member's own overrides.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// What the agent's tools run with.
    pub fn ctx(&self) -> &ToolCtx {
        &self.ctx
    }

    /// Where the agent's words go (its pane and log).
    pub fn out(&self) -> &Output {
        &self.out
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        self.link.name()
    }

    /// Whether the agent is the team's leader.
    pub fn is_leader(&self) -> bool {
        self.link.name() == names::LEADER
    }

    /// Who calls, for other systems' names whose meaning depends on it; `said` is the text of
    /// the turn the call is in.
    pub fn caller<'a>(&'a self, said: &'a str) -> agent_team_tools::Caller<'a> {
        agent_team_tools::Caller {
            name: self.link.name(),
            is_leader: self.is_leader(),
            said,
        }
    }

    /// The first step of a call: another system's name or field spelling for one of ours
    /// (Qwen Code's `task_update`, `subject`, `blockedBy`, ...) rewritten before anything is
    /// checked (`agent_team_tools::aliases`), then the tool known and offered now. A refusal is
    /// the outcome to give back, already reported ([`Session::refused`]).
    pub fn resolve(
        &self,
        id: &str,
        called: &str,
        args: Value,
        who: agent_team_tools::Caller<'_>,
        offer: Offer<'_>,
    ) -> Result<Resolved, ToolOutcome> {
        let (name, args, note) = match agent_team_tools::translate(called, &args, who) {
            Err(msg) => return Err(self.refused(id, called, &args, msg)),
            Ok(None) => (called.to_string(), args, None),
            Ok(Some(t)) => (t.name.to_string(), t.args, t.note),
        };
        if offer.now.contains(&name.as_str()) {
            return Ok(Resolved { name, args, note });
        }
        let held_back = offer
            .full
            .contains(&name.as_str())
            .then(|| tools::refused_while_planning(&name))
            .flatten();
        let why = if let Some(why) = held_back {
            why
        } else if agent_team_tools::SPAWN_TOOLS.contains(&name.as_str()) {
            // The team is one level deep: only the leader starts teammates.
            format!(
                "{name} refused: teammates cannot spawn teammates (max_depth 1); ask the leader \
                 with send_message if the team needs more hands"
            )
        } else {
            // Named as it was called, with its tools as it was offered them.
            let offered = tools::offered_names(offer.now, offer.naming);
            let called = if called == name {
                format!("{called:?}")
            } else {
                format!("{called:?} ({name} here)")
            };
            format!(
                "unknown tool {called}; your tools are: {}",
                offered.join(", ")
            )
        };
        Err(self.refused(id, &name, &args, why))
    }

    /// The second step of a call: reported as it starts, its arguments parsed (a call that
    /// could not run asks nothing), the role's policy (denied, allowed, or asked of the team
    /// and waited for), run, and reported with its result.
    pub async fn run(&self, id: &str, call: Resolved) -> Result<ToolOutcome, AgentError> {
        let Resolved { name, args, note } = call;
        self.link.fire(Request::Emit {
            event: Event::ToolCallStart {
                tool_call_id: id.to_string(),
                tool_name: name.clone(),
                args: args.clone(),
            },
        });
        self.out
            .say(&format!("⚙ {name} {}", short(&args.to_string(), 200)));
        let outcome = match tools::ToolCall::parse(&name, &args) {
            Err(e) => ToolOutcome::err(e.to_string()),
            Ok(parsed) => {
                let tools::Checked {
                    input,
                    action,
                    reason,
                } = tools::check(&self.ctx, &self.role.permissions, &parsed, &args);
                match action {
                    PermAction::Deny => ToolOutcome::err(format!(
                        "the role's policy denies {name} `{}`",
                        short(&input, 200)
                    )),
                    PermAction::Ask => match self.ask(&name, &input, &reason).await? {
                        (true, _) => tools::run(&self.ctx, &parsed).await,
                        (false, why) => ToolOutcome::err(format!("permission denied: {why}")),
                    },
                    PermAction::Allow => tools::run(&self.ctx, &parsed).await,
                }
            }
        };
        let outcome = match note {
            Some(note) if !outcome.is_error => ToolOutcome {
                content: format!("{note}{}", outcome.content),
                ..outcome
            },
            _ => outcome,
        };
        self.link.fire(Request::Emit {
            event: Event::ToolCallResult {
                tool_call_id: id.to_string(),
                content: short(&outcome.content, 2000),
                is_error: outcome.is_error,
            },
        });
        self.out.say(&format!(
            "  {} {}",
            if outcome.is_error { "✗" } else { "→" },
            short(&outcome.content, 300)
        ));
        Ok(outcome)
    }

    /// A whole call: [`Session::resolve`] then [`Session::run`].
    pub async fn call(
        &self,
        id: &str,
        called: &str,
        args: Value,
        who: agent_team_tools::Caller<'_>,
        offer: Offer<'_>,
    ) -> Result<ToolOutcome, AgentError> {
        match self.resolve(id, called, args, who, offer) {
            Ok(call) => self.run(id, call).await,
            Err(refused) => Ok(refused),
        }
    }

    /// Whether a call may go out beside its neighbours in a turn: one of the agent's tools
    /// now, in our own name and fields (no note), that is one request to the daemon whose
    /// answer the next call does not need ([`tools::one_request`]) and that the policy allows
    /// without asking (a question would hold the calls after it back while the ones beside it
    /// went out).
    pub fn goes_at_once(
        &self,
        called: &str,
        args: &Value,
        who: agent_team_tools::Caller<'_>,
        now: &[&str],
    ) -> bool {
        let (name, args) = match agent_team_tools::translate(called, args, who) {
            Ok(Some(t)) if t.note.is_none() => (t.name, t.args),
            Ok(None) => (called, args.clone()),
            _ => return false,
        };
        if !now.contains(&name) {
            return false;
        }
        match tools::ToolCall::parse(name, &args) {
            Ok(parsed) if tools::one_request(&parsed) => {
                tools::check(&self.ctx, &self.role.permissions, &parsed, &args).action
                    == PermAction::Allow
            }
            _ => false,
        }
    }

    /// Judges a call of a CLI's own tool, given as our tool `tool` with `args`, by the agent's
    /// role, as [`Session::run`] judges ours: a tool the role lacks or its policy denies is
    /// refused; one it allows goes ahead; one it asks about becomes a permission request of
    /// the team, waited for. Returns (allowed, why not).
    pub async fn judge(&self, tool: &str, args: Value) -> (bool, String) {
        if !self.role.tools.iter().any(|t| t == tool) {
            return (false, format!("the role {} has no {tool}", self.role.name));
        }
        let call = match tools::ToolCall::parse(tool, &args) {
            Ok(c) => c,
            Err(e) => return (false, e.to_string()),
        };
        let checked = tools::check(&self.ctx, &self.role.permissions, &call, &args);
        match checked.action {
            PermAction::Allow => (true, String::new()),
            PermAction::Deny => (
                false,
                format!("the role's policy denies {tool} `{}`", checked.input),
            ),
            PermAction::Ask => self
                .ask(tool, &checked.input, &checked.reason)
                .await
                .unwrap_or_else(|e| (false, format!("the team could not be asked: {e}"))),
        }
    }

    /// Asks the team for permission to run `tool` with `input` and waits for the decision;
    /// returns (allowed, why not). Messages that arrive meanwhile wait in the inbox.
    pub async fn ask(
        &self,
        tool: &str,
        input: &str,
        reason: &str,
    ) -> Result<(bool, String), AgentError> {
        // Listening before asking: a decision made at once is not missed.
        let mut decided = self.inbox.decisions();
        let req = raise(&self.link, tool, input, reason)
            .await
            .map_err(AgentError::Daemon)?;
        if let Some(v) = verdict(&req) {
            return Ok(v);
        }
        self.out.say(&format!(
            "⏸ waiting for approval of request {}: {tool} `{input}` (agent-team approve {} / deny {})",
            req.id, req.id, req.id
        ));
        loop {
            match decided.recv().await {
                Ok(Decided::One(r)) if r.id == req.id => {
                    if let Some(v) = verdict(&r) {
                        return Ok(v);
                    }
                }
                Ok(Decided::One(_)) => {}
                // Away, or too slow to hear everything: the decision may have been missed.
                Ok(Decided::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(v) = decided_meanwhile(&self.link, req.id).await {
                        return Ok(v);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(AgentError::Daemon(
                        "the connection to the team is gone".into(),
                    ));
                }
            }
        }
    }

    /// A call refused before it ran, reported as one that ran and failed (its events and a
    /// line in the log), and the outcome to give back.
    pub fn refused(&self, id: &str, name: &str, args: &Value, why: String) -> ToolOutcome {
        let o = ToolOutcome::err(why);
        self.link.fire(Request::Emit {
            event: Event::ToolCallStart {
                tool_call_id: id.to_string(),
                tool_name: name.to_string(),
                args: args.clone(),
            },
        });
        self.link.fire(Request::Emit {
            event: Event::ToolCallResult {
                tool_call_id: id.to_string(),
                content: o.content.clone(),
                is_error: true,
            },
        });
        self.out.say(&format!("✗ {name}: {}", o.content));
        o
    }
}

/// Raises a permission request for `tool` with `input`: the request as the daemon holds it
/// (already decided when a team rule covers it), or why it could not be raised.
async fn raise(link: &Link, tool: &str, input: &str, reason: &str) -> Result<PermRequest, String> {
    match link
        .call_retry(Request::PermRequest {
            tool: tool.into(),
            input: input.into(),
            reason: reason.into(),
        })
        .await
    {
        Ok(Reply::Perm { request }) => Ok(request),
        Ok(_) => Err("unexpected reply to perm_request".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The verdict on request `id` if it was decided while its push could have been missed (a
/// reconnect, a lagging listener).
async fn decided_meanwhile(link: &Link, id: u64) -> Option<(bool, String)> {
    match link
        .call_retry(Request::PermList {
            all: true,
            after: Some(id.saturating_sub(1)),
        })
        .await
    {
        Ok(Reply::Perms { requests }) => requests.iter().find(|r| r.id == id).and_then(verdict),
        _ => None,
    }
}

/// A decided request as (allowed, why it was denied); `None` while it is pending.
fn verdict(r: &PermRequest) -> Option<(bool, String)> {
    match r.status {
        PermStatus::Pending => None,
        PermStatus::Allowed => Some((true, String::new())),
        // Only a request of an incarnation that is over is void: not this one's answer.
        PermStatus::Void => Some((false, "void: its requester is gone".into())),
        PermStatus::Denied => Some((
            false,
            r.decision
                .as_ref()
                .and_then(|d| d.reason.clone().map(|x| format!("{x} (by {})", d.by)))
                .unwrap_or_else(|| "denied".into()),
        )),
    }
}

/// `s` cut to `n` characters, marked when cut.
pub(crate) fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
