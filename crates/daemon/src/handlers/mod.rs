//! Request handlers: [`dispatch`] matches every request kind once and calls the function that
//! applies it (one module per area: tasks, messages, permissions, events, agents, memory,
//! usage, upkeep), given only the parts of the core it needs, as pueue's message handlers are.
//! The core owns the loop, the sessions, exactly-once replay and the commit.

mod agents;
mod events;
mod memory;
mod messages;
mod perms;
mod tasks;
mod upkeep;
pub(crate) mod usage;

use crate::core::Core;
use crate::hooks::Hooks;
use crate::outbox::ConnId;
use crate::work::WorkFinishArgs;
use agent_team_protocol::{ErrorBody, ErrorCode, Reply, Request, SpawnMember, TaskStatus};
use agent_team_state::Actor;
use agent_team_state::tasks::NewTask;

/// The most items in one page of a listing.
pub(crate) const PAGE_ITEMS: usize = 5000;
/// The most bytes of items in one page, leaving room for the frame around them.
const PAGE_BYTES: usize = 900 * 1024;

/// Takes items while they fit in one reply frame; the client asks for the rest with `after`.
pub(crate) fn page<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<T> {
    page_more(items).0
}

/// [`page`], and whether items were left for the next page (a reply's `more`, which spares
/// the client the request that would find the next page empty).
pub(crate) fn page_more<T: serde::Serialize>(items: impl Iterator<Item = T>) -> (Vec<T>, bool) {
    let mut used = 0;
    let mut out = Vec::new();
    for item in items {
        used += serde_json::to_vec(&item).map(|v| v.len() + 1).unwrap_or(0);
        if out.len() == PAGE_ITEMS || (used > PAGE_BYTES && !out.is_empty()) {
            return (out, true);
        }
        out.push(item);
    }
    (out, false)
}

/// What a starting agent reads first, answered with its welcome: the task watch put on
/// first (as the worker's own `watch_tasks` is queued first), then each read as [`dispatch`]
/// answers it, `unread` the count of its messages the hello pushes behind the welcome, and the
/// lease for its first model request when it runs our model loop and no budget limits it (it
/// would be granted anyway: the agent's own `budget_check` through [`dispatch`]). `None` when
/// any read fails: the agent then asks for each itself.
pub(crate) fn start_reads(
    core: &mut Core,
    conn: ConnId,
    actor: &Actor,
    unread: u32,
) -> Option<Box<agent_team_protocol::StartReads>> {
    let read = |core: &mut Core, req: Request| match dispatch(core, conn, 0, actor, req, None) {
        Some(Ok(reply)) => Some(reply),
        _ => None,
    };
    read(core, Request::WatchTasks)?;
    let leader = actor.name() == agent_team_protocol::names::LEADER;
    let config = read(core, Request::GetConfig)?;
    // The members its prompt names and the roster's size, not the whole roster: at a
    // thousand teammates each would read and keep a thousand members.
    let (agents, members) = match actor.agent().and_then(|n| core.state.agent(n)) {
        Some(rec) => {
            let (agents, members) = core.state.prompt_agents(&rec.info.name, &rec.info.role);
            (
                Reply::Agents { agents },
                u32::try_from(members).unwrap_or(u32::MAX),
            )
        }
        None => (read(core, Request::Agents)?, 0),
    };
    let team = match leader {
        true => Some(read(core, Request::TeamInfo)?),
        false => None,
    };
    let tasks = read(
        core,
        Request::TaskList {
            status: Some(TaskStatus::InProgress),
            after: None,
        },
    )?;
    let lease = first_lease(core, actor).and_then(|ask| read(core, ask));
    Some(Box::new(agent_team_protocol::StartReads {
        config: Some(config),
        agents: Some(agents),
        members,
        team,
        tasks: Some(tasks),
        unread,
        lease: lease.filter(|r| {
            matches!(
                r,
                Reply::Budget {
                    stop: None,
                    wait: None
                }
            )
        }),
    }))
}

/// The `budget_check` a starting agent's first model request would make, when the daemon may
/// make it for the agent: it runs our model loop (an exec agent or an agent CLI takes no lease
/// and so would never settle one) and no budget limits it (a grant is then certain). Its prompt
/// is not known yet: the lease counts the most output only.
fn first_lease(core: &Core, actor: &Actor) -> Option<Request> {
    let name = actor.agent()?;
    if !core.lease_needs_no_check(name, &core.sup.budgets()) {
        return None;
    }
    let model = core.sup.model_of(core.state.agent(name)?);
    Some(Request::BudgetCheck {
        model,
        input_tokens: None,
        output_tokens: None,
    })
}

/// An answer now, or `None` when it comes later (the supervisor's, a hook's, git work's).
type Outcome = Option<Result<Reply, ErrorBody>>;

/// The one dispatch: every request kind, matched once, to the function that applies it, given
/// only the parts of the core it needs. `id` is the request's frame id, for the answers that
/// come later; `rid` its request id, which a held completion keeps for its retries.
/// A permission request raised by the daemon for `agent` (its egress proxy asking about a
/// destination): the same path as an agent's own `perm_request`.
pub(crate) fn ask_permission(
    core: &mut Core,
    agent: &str,
    tool: &str,
    input: String,
    reason: String,
) -> Result<agent_team_protocol::PermRequest, ErrorBody> {
    let now = core.clock.wall();
    let actor = Actor::Agent(agent.to_string());
    match perms::ask(core, &actor, tool.to_string(), input, reason, now)? {
        Reply::Perm { request } => Ok(request),
        _ => Err(ErrorBody::new(
            ErrorCode::Internal,
            "a permission request answered no request",
        )),
    }
}

pub(crate) fn dispatch(
    core: &mut Core,
    conn: ConnId,
    id: u64,
    actor: &Actor,
    req: Request,
    rid: Option<&String>,
) -> Outcome {
    let now = core.clock.wall();
    let answer = match req {
        // The task board.
        Request::TaskAdd {
            title,
            description,
            run,
            blocked_by,
            assign,
            key,
        } => {
            let new = NewTask {
                title,
                description,
                run,
                blocked_by,
                assign,
                key,
            };
            tasks::add(core, actor, new, now)
        }
        Request::TaskList { status, after } => Ok(tasks::list(&core.state, status, after)),
        Request::TaskShow { id } => core.state.task_view(id).map(task_reply),
        Request::TaskClaim { id } => tasks::claim(&core.sup, &mut core.state, actor, id, now),
        Request::TaskClaimNext => {
            let r = tasks::claim_next(&core.sup, &mut core.state, actor, now);
            if let (Actor::Agent(n), Ok(Reply::MaybeTask { task })) = (actor, &r) {
                core.claim_next_answered(n, task.is_some());
            }
            r
        }
        Request::TaskAssign { id, to } => {
            tasks::assign(&core.sup, &mut core.state, actor, id, &to, now)
        }
        Request::TaskRelease { id } => core.state.task_release(actor, id, now).map(task_reply),
        // A completion with `task_completed` hooks waits for them.
        Request::TaskFinish {
            id: task,
            status: TaskStatus::Completed,
            result,
        } if Hooks::completion_is_hooked(&core.state, core.sup.config.as_ref(), task) => {
            let (hooks, cx) = core.hooks_with();
            return hooks.hold_completion(cx, actor, conn, id, task, result, rid.cloned());
        }
        Request::TaskFinish { id, status, result } => core
            .state
            .task_finish(actor, id, status, result, now)
            .map(task_reply),
        Request::TaskCancel { id } => core.state.task_cancel(actor, id, now).map(task_reply),
        Request::TaskRetry { id } => core.state.task_retry(actor, id, now).map(task_reply),
        Request::WatchTasks => {
            core.watch_tasks(conn);
            Ok(Reply::Done)
        }
        // The mailboxes.
        Request::Send {
            to,
            body,
            kind,
            summary,
            dedup,
        } => messages::send(&mut core.state, actor, to, body, kind, summary, dedup, now),
        Request::Inbox {
            agent,
            unread_only,
            after,
        } => messages::inbox(core, actor, agent, unread_only, after.unwrap_or(0)),
        Request::Ack { ids, state } => core.state.ack(actor, &ids, state, now).map(|_| Reply::Done),
        // Permission requests.
        Request::PermRequest {
            tool,
            input,
            reason,
        } => perms::ask(core, actor, tool, input, reason, now),
        Request::PermList { all, after } => Ok(perms::list(&core.state, all, after)),
        Request::PermDecide {
            id,
            allow,
            always,
            pattern,
            reason,
        } => perms::decide(core, actor, id, allow, always, pattern, reason, now),
        // The event log.
        Request::Events { since, limit } => events::read(core, since, limit),
        Request::Subscribe { since, types } => events::subscribe(core, conn, since, types),
        Request::Emit { event } => core.state.emit(actor, event, now).map(|_| Reply::Done),
        // The roster and the run.
        Request::Ping => Ok(Reply::Pong {
            daemon_pid: core.daemon_pid,
        }),
        Request::TeamInfo => Ok(Reply::Team {
            team: agents::team_info(core),
        }),
        Request::Agents => Ok(Reply::Agents {
            agents: core.state.agents(),
        }),
        Request::Register { name, role } => {
            agents::register(&mut core.state, actor, name, role, now)
        }
        Request::SetStatus { status, error } => core
            .state
            .report_status(actor, status, error, now)
            .map(agent_reply),
        Request::SetTodos { items } => core.state.set_todos(actor, items, now).map(agent_reply),
        Request::PaneInput { text } => agents::pane_input(core, actor, text),
        Request::ServeEgress => agents::serve_egress(core, actor),
        Request::PlanSubmit { plan } => core.state.submit_plan(actor, plan, now).map(agent_reply),
        Request::PlanDecide {
            agent,
            approve,
            feedback,
        } => core
            .state
            .decide_plan(actor, &agent, approve, feedback, now)
            .map(agent_reply),
        Request::StartRun { goal, config } => match config {
            Some(config) => agents::configure(core, actor, config)
                .and_then(|_| core.supervise(|s| s.start_run(actor, goal))),
            None => core.supervise(|s| s.start_run(actor, goal)),
        },
        Request::Configure { config } => agents::configure(core, actor, config),
        Request::GetConfig => Ok(agents::config(core, actor)),
        Request::Finish {
            answer,
            force,
            success,
            details,
            auto,
        } => agents::finish(core, actor, answer, force, success, details, auto, now),
        Request::Shutdown => agents::shutdown(core, actor),
        Request::ConfigSet { key, value } => {
            core.supervise(|s| s.config_change(actor, Some(key), Some(value)))
        }
        Request::ConfigReset { key } => core.supervise(|s| s.config_change(actor, key, None)),
        Request::SpawnTeam { members } => core.supervise(|s| s.spawn_team_request(actor, members)),
        Request::Dissolve {
            reason,
            cancel_tasks,
        } => core.supervise(|s| s.dissolve_request(actor, reason, cancel_tasks)),
        // Answered by the supervisor once the agent gets somewhere.
        Request::Spawn {
            role,
            name,
            instructions,
            model,
            message,
            host,
            workspace,
            container,
        } => {
            let m = SpawnMember {
                name: name.unwrap_or_default(),
                role,
                instructions,
                model,
                message,
                host,
                workspace,
                container,
                ..Default::default()
            };
            return core
                .supervise(|s| s.spawn_request(actor, conn, id, m))
                .transpose();
        }
        Request::Kill { name, reason } => {
            return core
                .supervise(|s| s.kill_request(actor, conn, id, &name, reason))
                .transpose();
        }
        Request::Resume { name, message } => {
            return core
                .supervise(|s| s.resume_request(actor, conn, id, &name, message))
                .transpose();
        }
        Request::WaitFor {
            agents,
            tasks,
            timeout_ms,
            any,
        } => {
            return core
                .supervise(|s| s.wait_request(conn, id, agents, tasks, timeout_ms, any))
                .transpose();
        }
        Request::Restart { name } => {
            return core
                .supervise(|s| s.restart_request(actor, conn, id, &name))
                .transpose();
        }
        // A teammate's worktree: answered once git is done.
        Request::WorkDiff { agent, patch } => return core.work_diff(actor, conn, id, agent, patch),
        Request::WorkFinish {
            agent,
            action,
            into,
            keep,
            accept_control_changes,
        } => {
            let finish = WorkFinishArgs {
                agent,
                action,
                into,
                keep,
                accept_control_changes,
            };
            return core.work_finish(actor, conn, id, finish);
        }
        // The team's memory.
        Request::MemorySet { key, value } => memory::set(core, actor, key, value, now),
        Request::MemoryDelete { key } => memory::delete(core, actor, key, now),
        Request::MemoryGet { key } => core
            .state
            .memory_get(&key)
            .cloned()
            .map(|entry| Reply::Memory { entry }),
        Request::MemoryList { prefix, after } => Ok(Reply::MemoryEntries {
            entries: page(
                core.state
                    .memory_list(prefix.as_deref(), after.as_deref())
                    .cloned(),
            ),
        }),
        // Usage and budgets.
        Request::ReportUsage {
            model,
            input_tokens,
            output_tokens,
            cached_tokens,
            cache_write_tokens,
            call,
        } => {
            let tokens = usage::Tokens {
                input: input_tokens,
                output: output_tokens,
                cached: cached_tokens,
                cache_write: cache_write_tokens,
            };
            // Our own agent's call traced like the gateway's (issue 65).
            let event = call.map(|t| crate::gateway::model_call(model.clone(), &tokens, t, None));
            let reply = usage::report(core, actor, model, tokens, now);
            if reply.is_ok()
                && let (Some(event), Some(agent)) = (event, actor.agent())
            {
                core.state.record(agent, event, now);
            }
            reply
        }
        Request::BudgetCheck {
            model,
            input_tokens,
            output_tokens,
        } => Ok(usage::check(
            core,
            actor,
            model,
            input_tokens,
            output_tokens,
        )),
        Request::Usage => Ok(Reply::Usage {
            report: core.state.usage_report(&core.sup.budgets()),
        }),
        Request::BudgetSet { role, tokens, usd } => usage::set(core, actor, role, tokens, usd),
        // Upkeep.
        Request::Gc { older_than_secs } => upkeep::gc(core, actor, older_than_secs, now),
    };
    Some(answer)
}

/// A task in a reply.
fn task_reply(task: agent_team_protocol::Task) -> Reply {
    Reply::Task { task }
}

/// An agent in a reply.
fn agent_reply(agent: agent_team_protocol::AgentInfo) -> Reply {
    Reply::Agent { agent }
}

/// Refuses what only the operator may do (`what`: "shut the daemon down").
fn operator_only(actor: &Actor, what: &str) -> Result<(), ErrorBody> {
    if *actor == Actor::Operator {
        return Ok(());
    }
    Err(ErrorBody::new(
        ErrorCode::PermissionDenied,
        format!("only the operator may {what}"),
    ))
}

/// A storage failure while serving a read.
fn store_error(e: agent_team_store::StoreError) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("storage failed: {e}"))
}

/// An internal error with a message.
fn internal(msg: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, msg)
}

#[cfg(test)]
impl Core {
    /// Applies one request that is answered at once (the unit tests' shortcut through
    /// [`dispatch`]).
    pub(crate) fn request(
        &mut self,
        conn: ConnId,
        actor: &Actor,
        req: Request,
    ) -> Result<Reply, ErrorBody> {
        dispatch(self, conn, 0, actor, req, None)
            .unwrap_or_else(|| Err(internal("answered later, not at once")))
    }
}

impl Core {
    /// Commits what this batch changed so far, so a read from the store sees it.
    fn flush_for_read(&mut self) -> Result<(), ErrorBody> {
        if self.state.has_changes() {
            let mut changes = self.state.take_changes();
            let (hooks, cx) = self.hooks_with();
            hooks.plan(cx, &changes);
            changes.extend(self.state.take_changes());
            match self.store.commit(&changes) {
                // Responses wait for the batch's end; pushes of these changes go out now.
                Ok(()) => self.route(&changes),
                // The batch so far is refused and the state is what is stored: the read goes on.
                Err(e) if self.disk_is_full(&e) => {
                    self.refuse_batch_for_full_disk().map_err(store_error)?
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_at_the_byte_budget_but_never_come_back_empty() {
        let big = "x".repeat(PAGE_BYTES);
        assert_eq!(page([big.clone(), big.clone()].into_iter()).len(), 1);
        assert_eq!(
            page(std::iter::repeat_n(1u8, PAGE_ITEMS + 5)).len(),
            PAGE_ITEMS
        );
    }

    #[test]
    fn a_page_says_whether_more_come_after_it() {
        let big = "x".repeat(PAGE_BYTES);
        assert!(page_more([big.clone(), big.clone()].into_iter()).1);
        assert_eq!(page_more([big.clone()].into_iter()), (vec![big], false));
        let (items, more) = page_more(std::iter::repeat_n(1u8, PAGE_ITEMS + 1));
        assert_eq!((items.len(), more), (PAGE_ITEMS, true));
        let (items, more) = page_more(std::iter::repeat_n(1u8, PAGE_ITEMS));
        assert_eq!((items.len(), more), (PAGE_ITEMS, false));
        assert_eq!(page_more(std::iter::empty::<u8>()), (vec![], false));
    }
}
