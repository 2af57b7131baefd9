//! Network by asking (issue 62): the daemon serves one egress proxy per agent, on a socket in a
//! dir of its own (`agent_team_paths::net_dir`), which the agent's sandboxes bind in. A
//! destination off the team's list is, in mode `ask`, a permission request of that agent (tool
//! `network`, input `host:port`) decided like any other: the proxy waits for the decision.
//! An agent of our own loop asks for its proxy before its first sandboxed process
//! (`serve_egress`); one whose sandbox is made as it starts (an agent CLI, a container) has it
//! served as it says hello. An agent that runs no command costs no socket (issue 67: a
//! thousand of them made and removed a thousand dirs at `up` and `down`).

use crate::core::{Core, CoreMsg, CoreTx};
use agent_team_config::{NetworkMode, Role, SandboxMode, TeamConfig};
use agent_team_egress::{Answer, AnswerFuture, Ask, Destination, Limits, Mode, Pattern, Policy};
use agent_team_protocol::{PermRequest, PermStatus};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The tool name of a network permission request.
pub const NETWORK_TOOL: &str = "network";

/// The proxies the daemon serves and the proxies' questions waiting for a decision.
#[derive(Default)]
pub(crate) struct Net {
    /// Each agent's proxy, by agent name.
    proxies: HashMap<String, (Arc<agent_team_egress::Proxy>, tokio::task::JoinHandle<()>)>,
    /// The proxies waiting on each pending request, by request id.
    waiters: HashMap<u64, Vec<oneshot::Sender<Answer>>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("proxies", &self.proxies.keys().collect::<Vec<_>>())
            .field("waiters", &self.waiters.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, (_, task)) in self.proxies.drain() {
            task.abort();
        }
    }
}

/// The proxy policy of an agent of `role` in `cfg`; none when its network is not confined
/// (`sandbox = "off"`, `mode = "open"`, the team's or the role's). The list is the team file's,
/// the role's own (`[roles.X.sandbox.network]`) and the role's model endpoint.
pub fn policy(cfg: &TeamConfig, role: Option<&Role>) -> Option<Policy> {
    if cfg.sandbox == SandboxMode::Off {
        return None;
    }
    let net = &cfg.network_for(role);
    let mode = match net.mode {
        NetworkMode::Open => return None,
        NetworkMode::List => Mode::List,
        NetworkMode::Ask => Mode::Ask,
    };
    let mut allow: Vec<Pattern> = net
        .allow
        .iter()
        .filter_map(|a| match Pattern::parse(a) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("[sandbox.network] allow: {e}");
                None
            }
        })
        .collect();
    allow.extend(role.and_then(upstream));
    Some(Policy { mode, allow })
}

/// The role's model endpoint (`base_url`) as an egress pattern.
fn upstream(role: &Role) -> Option<Pattern> {
    let (host, port) = role
        .base_url
        .as_deref()
        .and_then(agent_team_config::endpoint)?;
    let text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Pattern::parse(&text).ok()
}

/// An agent's proxy policy ([`policy`]) once the team's model gateway runs at `gateway`: the
/// gateway is allowed, and an agent CLI that reaches its model through it is not allowed its
/// role's upstream as well (its model traffic goes to the gateway and nowhere else).
pub fn agent_policy(
    cfg: &TeamConfig,
    role: Option<&Role>,
    gateway: Option<std::net::SocketAddr>,
) -> Option<Policy> {
    let mut policy = policy(cfg, role)?;
    let Some(addr) = gateway else {
        return Some(policy);
    };
    if let Some(r) = role
        && crate::gateway::goes_through(r.provider)
        && let Some(up) = upstream(r)
    {
        let up = up.to_string();
        policy.allow.retain(|p| p.to_string() != up);
    }
    policy.allow.extend(Pattern::parse(&addr.to_string()).ok());
    Some(policy)
}

/// The proxy policy of the team's hooks and notify commands: mode `list` with the team file's
/// list only (no agent can be asked for them, and no model endpoint is theirs); none when
/// their network is not confined (`sandbox = "off"`, the team's `mode = "open"`).
pub fn hooks_policy(cfg: &TeamConfig) -> Option<Policy> {
    let mut p = policy(cfg, None)?;
    p.mode = Mode::List;
    Some(p)
}

/// The name the hooks' proxy is served under (`<team>.net/daemon`): a reserved name, never
/// an agent's.
const HOOKS: &str = agent_team_protocol::names::DAEMON;

/// Asks the core: a permission request of `agent`, answered when decided.
struct Asker {
    agent: String,
    core: CoreTx,
}

impl Ask for Asker {
    fn ask(&self, dest: &Destination) -> AnswerFuture {
        let (tx, rx) = oneshot::channel();
        let sent = self.core.send(CoreMsg::NetAsk {
            agent: self.agent.clone(),
            dest: dest.to_string(),
            reply: tx,
        });
        Box::pin(async move {
            if sent.is_err() {
                return Answer::Deny("agent-team: the team's daemon is stopping".into());
            }
            rx.await
                .unwrap_or_else(|_| Answer::Deny("agent-team: no decision was made".into()))
        })
    }
}

/// What the proxy says for a decided request.
fn answer_of(req: &PermRequest) -> Answer {
    if req.status == PermStatus::Allowed {
        return Answer::Allow;
    }
    let why = req
        .decision
        .as_ref()
        .and_then(|d| d.reason.clone())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let host = Destination::parse(&req.input, None).map_or(req.input.clone(), |d| d.host);
    Answer::Deny(format!(
        "agent-team: network access to {} was denied by request {}{why}; \
         `[sandbox.network] allow = [\"{host}\"]` in the team file lets it through",
        req.input, req.id
    ))
}

/// Serves a proxy for `policy` on `dir/proxy.sock` (the dir made 0700, a stale socket
/// replaced).
fn serve(
    dir: &Path,
    policy: Policy,
    ask: Option<Arc<dyn Ask>>,
) -> std::io::Result<(Arc<agent_team_egress::Proxy>, tokio::task::JoinHandle<()>)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let sock = dir.join(agent_team_sandbox::network::PROXY_SOCKET);
    match std::fs::remove_file(&sock) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(&sock)?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let proxy = agent_team_egress::Proxy::new(policy, ask, Limits::default());
    let task = tokio::spawn({
        let p = proxy.clone();
        async move {
            if let Err(e) = p.serve(listener).await {
                tracing::warn!("egress proxy stopped: {e}");
            }
        }
    });
    Ok((proxy, task))
}

impl Core {
    /// An agent said hello: a proxy already served has its policy brought up to date (a team
    /// file changed since); one is served now for an agent whose sandbox is made as it starts
    /// (an agent CLI's, a container's, whatever loop runs inside), before it can start
    /// anything. Our own loop asks for it when it first needs it ([`Core::serve_egress`]); an
    /// agent on another host has none (its sandbox there cannot reach this machine's sockets).
    pub(crate) fn net_hello(&mut self, agent: &str) {
        let at_start = self.state.agent(agent).is_some_and(|rec| {
            rec.info.host.is_none()
                && (rec.info.container.is_some()
                    || self.sup.provider_of(rec).is_some_and(|p| p.is_external()))
        });
        if at_start || self.net.proxies.contains_key(agent) {
            self.serve_egress(agent);
        }
    }

    /// `agent`'s egress proxy served (or its policy brought up to date): asked by the agent
    /// before each sandboxed process (so a daemon started again since serves it again), and
    /// at hello for those that need it from the start. Nothing when its network is not
    /// confined, or for an agent on another host.
    pub(crate) fn serve_egress(&mut self, agent: &str) {
        let Some(cfg) = self.sup.config.as_ref() else {
            return;
        };
        let Some(rec) = self.state.agent(agent) else {
            return;
        };
        if rec.info.host.is_some() {
            return;
        }
        let role = cfg.role(&rec.info.role);
        // The team's model gateway is where an agent CLI's model calls go (issue 65).
        let gateway = self
            .sup
            .gateways
            .as_deref()
            .and_then(|g| g.running())
            .map(|gw| gw.addr());
        let Some(policy) = agent_policy(cfg, role, gateway) else {
            return;
        };
        if let Some((proxy, task)) = self.net.proxies.get(agent)
            && !task.is_finished()
        {
            proxy.set_policy(policy);
            return;
        }
        let Some(runtime) = self.cfg.paths.socket.parent() else {
            return;
        };
        let dir = agent_team_paths::net_dir(runtime, &self.cfg.team, agent);
        let ask: Option<Arc<dyn Ask>> = Some(Arc::new(Asker {
            agent: agent.to_string(),
            core: self.self_tx.clone(),
        }));
        match serve(&dir, policy, ask) {
            Ok(p) => {
                self.net.proxies.insert(agent.to_string(), p);
            }
            Err(e) => tracing::warn!(
                agent,
                "cannot serve the egress proxy in {}: {e}",
                dir.display()
            ),
        }
    }

    /// Where the team's hooks and notify commands reach the network: a proxy of the daemon's
    /// own, served on first use (its policy brought up to date on every later one), in mode
    /// `list` ([`hooks_policy`]). None: the host's network (`mode = "open"`, `sandbox =
    /// "off"`), or the forwarder missing beside this program (said in the log).
    pub(crate) fn hooks_network(&mut self) -> Option<agent_team_sandbox::NetworkWiring> {
        let policy = hooks_policy(self.sup.config.as_ref()?)?;
        let runtime = self.cfg.paths.socket.parent()?;
        let dir = agent_team_paths::net_dir(runtime, &self.cfg.team, HOOKS);
        let bridge = std::env::current_exe()
            .ok()?
            .with_file_name("agent-team-bridge");
        if !bridge.is_file() {
            tracing::warn!(
                "hooks have no network (no forwarder at {}): their sandbox's network is shut",
                bridge.display()
            );
            return None;
        }
        match self.net.proxies.get(HOOKS) {
            Some((proxy, task)) if !task.is_finished() => proxy.set_policy(policy),
            _ => match serve(&dir, policy, None) {
                Ok(p) => {
                    self.net.proxies.insert(HOOKS.to_string(), p);
                }
                Err(e) => {
                    // Without its proxy a hook has no way out at all: refused, not opened.
                    tracing::warn!("cannot serve the hooks' proxy in {}: {e}", dir.display());
                }
            },
        }
        Some(agent_team_sandbox::NetworkWiring {
            dir,
            bridge,
            forward: Vec::new(),
        })
    }

    /// A proxy asks about `dest` for `agent`: a permission request like any other, answered at
    /// once when a rule decides it, else when someone does.
    pub(crate) fn net_ask(&mut self, agent: String, dest: String, reply: oneshot::Sender<Answer>) {
        // Allowed always before (`approve --always`, with or without `--pattern`): through,
        // with no new request (a build's hundred connections are not a hundred records).
        if self
            .state
            .rules()
            .iter()
            .any(|r| r.allows(NETWORK_TOOL, &dest))
        {
            let _ = reply.send(Answer::Allow);
            return;
        }
        let reason = self
            .state
            .agent(&agent)
            .and_then(|a| a.info.current_task)
            .and_then(|id| self.state.task(id).ok().map(|t| (id, t.title.clone())))
            .map(|(id, title)| format!("task {id}: {title}"))
            .unwrap_or_default();
        match crate::handlers::ask_permission(self, &agent, NETWORK_TOOL, dest, reason) {
            Ok(req) if req.status == PermStatus::Pending => {
                self.net.waiters.entry(req.id).or_default().push(reply);
            }
            Ok(req) => {
                let _ = reply.send(answer_of(&req));
            }
            Err(e) => {
                let _ = reply.send(Answer::Deny(format!("agent-team: {}", e.message)));
            }
        }
    }

    /// A request was decided (committed): the proxies waiting on it go on or refuse.
    pub(crate) fn net_decided(&mut self, req: &PermRequest) {
        if let Some(waiting) = self.net.waiters.remove(&req.id) {
            let answer = answer_of(req);
            for w in waiting {
                let _ = w.send(answer.clone());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_lists_the_team_file_and_the_roles_endpoint_and_open_is_none() {
        let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/w"));
        cfg.sandbox_network.allow = vec!["registry.npmjs.org".into(), "bad host".into()];
        let mut role = cfg.roles.values().next().unwrap().clone();
        role.base_url = Some("http://127.0.0.1:4567/v1".into());
        let p = policy(&cfg, Some(&role)).unwrap();
        assert_eq!(p.mode, Mode::Ask);
        let shown: Vec<String> = p.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["registry.npmjs.org", "127.0.0.1:4567"]);
        // The role's own list after the team's; its own mode over the team's.
        role.sandbox.network.allow = vec!["crates.io:443".into()];
        let p = policy(&cfg, Some(&role)).unwrap();
        let shown: Vec<String> = p.allow.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["registry.npmjs.org", "crates.io:443", "127.0.0.1:4567"]
        );
        role.sandbox.network.mode = Some(NetworkMode::Open);
        assert_eq!(policy(&cfg, Some(&role)), None);
        // The hooks: the team's list only, never asked.
        let h = hooks_policy(&cfg).unwrap();
        assert_eq!(h.mode, Mode::List);
        let shown: Vec<String> = h.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["registry.npmjs.org"]);
        cfg.sandbox_network.mode = NetworkMode::Open;
        assert_eq!(hooks_policy(&cfg), None);
        role.sandbox.network.mode = Some(NetworkMode::List);
        assert_eq!(policy(&cfg, Some(&role)).unwrap().mode, Mode::List);
        role.sandbox.network.mode = None;
        assert_eq!(policy(&cfg, Some(&role)), None);
        cfg.sandbox_network.mode = NetworkMode::List;
        cfg.sandbox = SandboxMode::Off;
        assert_eq!(policy(&cfg, None), None);
        assert_eq!(hooks_policy(&cfg), None);
    }

    #[test]
    fn a_cli_through_the_gateway_reaches_the_gateway_and_not_its_upstream() {
        let cfg = agent_team_config::empty_team("t", std::path::Path::new("/w"));
        let mut role = cfg.roles.values().next().unwrap().clone();
        role.base_url = Some("http://127.0.0.1:4567".into());
        role.provider = agent_team_config::Provider::ClaudeCode;
        let gw: std::net::SocketAddr = "127.0.0.1:9911".parse().unwrap();
        let shown = |p: Policy| p.allow.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(agent_policy(&cfg, Some(&role), Some(gw)).unwrap()),
            ["127.0.0.1:9911"]
        );
        // No gateway running: the CLI was given its upstream, which it may reach.
        assert_eq!(
            shown(agent_policy(&cfg, Some(&role), None).unwrap()),
            ["127.0.0.1:4567"]
        );
        // Copilot CLI and opencode go through it too.
        for p in [
            agent_team_config::Provider::Copilot,
            agent_team_config::Provider::Opencode,
        ] {
            role.provider = p;
            assert_eq!(
                shown(agent_policy(&cfg, Some(&role), Some(gw)).unwrap()),
                ["127.0.0.1:9911"]
            );
        }
        // A CLI the gateway does not serve (the `cli` template) keeps its upstream beside the
        // gateway.
        role.provider = agent_team_config::Provider::Cli;
        assert_eq!(
            shown(agent_policy(&cfg, Some(&role), Some(gw)).unwrap()),
            ["127.0.0.1:4567", "127.0.0.1:9911"]
        );
    }
}
