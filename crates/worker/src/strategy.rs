//! The leader of a `coordinator` or `collaborate` run. It lives in the leader's own process,
//! like the tool-calling leader, and talks to the daemon only with ordinary requests: a
//! worker's part is a task assigned to it on the board (so `task list` and the board show it),
//! its output is that task's result, and the leader records the run's own events
//! (`COORDINATOR_DECISION`, `WORKER_STARTED`, `WORKER_FINISHED`, `FINAL_ANSWER`), writes each
//! output to team memory (`outputs/<worker>`), and ends the run with `finish` carrying the
//! strategy, the rounds and the outputs (kept with the run's record).
//!
//! - **coordinator**: each round the leader's model is asked, with the team's
//!   `coordinator_prompt` filled (`{{worker_descriptions}}`, `{{task}}`, `{{prior_outputs}}`),
//!   for one line `ROUTE: <worker>` (further lines are the worker's instructions) or
//!   `DONE: <answer>`. An unknown worker or an answer that is neither is told back once in the
//!   same round; a second bad answer spends the round. After `max_rounds` without `DONE` the
//!   run ends with every worker's output as its answer (each worker's latest, as lauren-ai
//!   gives them) and `success: false`.
//! - **collaborate**: every worker gets the goal as a task, all at once (`parallel`) or one
//!   after another with the outputs so far (`sequential`); then the leader's model writes the
//!   final answer from the goal and every output (the synthesis call).

use crate::AgentError;
use crate::idle::{self, Taken, Woken};
use crate::inbox::Inbox;
use crate::link::{CallError, Inbound, Link};
use crate::output::Output;
use crate::prompt::Approvals;
use crate::session::Session;
use agent_team_backoff::Backoff;
use agent_team_config::{CollaborateOrder, Role, TeamConfig, TeamStrategy};
use agent_team_model::{ChatMessage, Model, TurnRequest};
use agent_team_protocol::names::LEADER;
use agent_team_protocol::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The most bytes of an output written to team memory (its values are limited to 64 KiB as
/// JSON, and escaping can make a string longer).
const MEMORY_OUTPUT_LEN: usize = 48 * 1024;

/// The longest task title the leader writes (the goal's or the instructions' first line).
const TITLE_LEN: usize = 100;

/// What the coordinator answered, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Give the next round to `worker` with these instructions (possibly empty).
    Route {
        /// The worker's name as written.
        worker: String,
        /// The lines after the `ROUTE:` line.
        instructions: String,
    },
    /// The work is done: the final answer.
    Done(String),
}

/// Reads a coordinator's answer: its first non-empty line is `ROUTE: <name>` (the lines after
/// it are the worker's instructions) or `DONE: <answer>` (the answer goes on over the following
/// lines). The keywords may be in any case and wrapped in `*` or `` ` `` (markdown); the name
/// may be wrapped in `<>`, quotes or backticks. The error says what was wrong, in words the
/// coordinator is told.
pub fn parse_decision(text: &str) -> Result<Decision, String> {
    let text = text.trim();
    let (first, rest) = match text.split_once('\n') {
        Some((f, r)) => (f.trim(), r),
        None => (text, ""),
    };
    let first = first.trim_matches(|c| c == '*' || c == '`' || c == '#' || c == ' ');
    let Some((keyword, value)) = first.split_once(':') else {
        return Err(if text.is_empty() {
            "the answer was empty".into()
        } else {
            "the first line is neither `ROUTE: <worker>` nor `DONE: <answer>`".into()
        });
    };
    let value = value.trim().trim_start_matches(['*', '`']).trim();
    match keyword
        .trim_matches(|c| c == '*' || c == '`')
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "ROUTE" => {
            let worker = value
                .trim_end_matches(['*', '`', '.'])
                .trim_matches(|c| matches!(c, '<' | '>' | '"' | '\'' | '`'))
                .trim()
                .to_string();
            if worker.is_empty() {
                return Err("`ROUTE:` names no worker".into());
            }
            Ok(Decision::Route {
                worker,
                instructions: rest.trim().to_string(),
            })
        }
        "DONE" => {
            let answer = format!("{value}\n{rest}").trim().to_string();
            if answer.is_empty() {
                return Err("`DONE:` gives no answer".into());
            }
            Ok(Decision::Done(answer))
        }
        _ => Err("the first line is neither `ROUTE: <worker>` nor `DONE: <answer>`".into()),
    }
}

/// `- name: what its role is for`, one line per worker: the coordinator's
/// `{{worker_descriptions}}`.
pub fn worker_descriptions(config: &TeamConfig) -> String {
    config
        .teammates
        .iter()
        .map(|t| {
            let what = config
                .role(&t.role)
                .map(|r| r.description.trim())
                .filter(|d| !d.is_empty())
                .unwrap_or(t.role.as_str());
            format!("- {}: {what}", t.name)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The outputs of the rounds so far, oldest first: the coordinator's `{{prior_outputs}}`.
pub fn prior_outputs(history: &[(u32, String, String)]) -> String {
    if history.is_empty() {
        return "(none yet)".into();
    }
    history
        .iter()
        .map(|(round, worker, output)| format!("Round {round}, {worker}:\n{}", output.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Outputs as `### name` sections, in the order given (a sequential worker's task, the
/// synthesis prompt).
pub fn output_sections(outputs: &[(String, String)]) -> String {
    outputs
        .iter()
        .map(|(w, o)| format!("### {w}\n{}", o.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The synthesis call's request: the goal and every worker's output.
pub fn synthesis_prompt(goal: &str, outputs: &[(String, String)]) -> String {
    format!(
        "Goal:\n{goal}\n\nThe workers' outputs:\n\n{}\n\nWrite the team's final answer to the \
         goal from these outputs. Answer with the final answer only.",
        output_sections(outputs)
    )
}

/// A sequential collaborator's task description: the goal, and the outputs so far.
pub fn collaborate_description(goal: &str, so_far: &[(String, String)]) -> String {
    if so_far.is_empty() {
        return goal.to_string();
    }
    format!(
        "{goal}\n\nThe other workers' outputs so far:\n\n{}\n\nBuild on them.",
        output_sections(so_far)
    )
}

fn short(s: &str, n: usize) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() <= n {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(n).collect::<String>())
    }
}

/// Why the loop stopped early.
enum Halt {
    /// A shutdown request was answered: end without error.
    Shutdown,
    /// The agent cannot go on.
    Error(AgentError),
}

impl From<AgentError> for Halt {
    fn from(e: AgentError) -> Self {
        Halt::Error(e)
    }
}

fn daemon_err(what: &str, e: CallError) -> Halt {
    Halt::Error(AgentError::Daemon(format!("{what}: {e}")))
}

/// How the run came out: (answer, success, details).
type Outcome = (String, bool, RunDetails);

/// The leader's state while it drives a strategy run.
struct Leader<'a> {
    link: &'a Arc<Link>,
    inbox: &'a Inbox,
    approvals: Approvals,
    config: &'a TeamConfig,
    role: &'a Role,
    out: &'a Output,
    model: Arc<dyn Model>,
    goal: String,
    /// Each worker's last output.
    outputs: BTreeMap<String, String>,
    /// Events other than messages taken at an idle point, for [`Leader::wait_for`].
    backlog: Vec<Inbound>,
}

/// Runs the leader of a `coordinator` or `collaborate` team until the run is finished.
pub async fn run(session: &Session) -> Result<(), AgentError> {
    let (link, config, role, out) = (
        session.link(),
        session.config(),
        session.role(),
        session.out(),
    );
    let model = crate::agent::model_for(role, crate::agent::cache_key(config, link.name()))?;
    out.say(&format!(
        "strategy {} · model {}",
        config.strategy,
        model.describe()
    ));
    crate::leader::bootstrap(link, config, out).await?;
    let goal = match link.call_retry(Request::TeamInfo).await {
        Ok(Reply::Team { team }) => team.goal,
        _ => None,
    }
    .unwrap_or_else(|| "(no goal was given)".into());
    link.set_status(AgentStatus::Running).await;
    let mut leader = Leader {
        link,
        inbox: session.inbox(),
        approvals: Approvals::new(config.approver == agent_team_config::Approver::Human),
        config,
        role,
        out,
        model,
        goal,
        outputs: BTreeMap::new(),
        backlog: Vec::new(),
    };
    let outcome = match config.strategy {
        TeamStrategy::Coordinator => leader.coordinate().await,
        TeamStrategy::Collaborate => leader.collaborate().await,
        TeamStrategy::Leader => Err(Halt::Error(AgentError::Config(
            "the strategy leader has no strategy loop".into(),
        ))),
    };
    match outcome {
        Ok((answer, success, details)) => leader.finish(answer, success, details).await,
        Err(Halt::Shutdown) => Ok(()),
        Err(Halt::Error(e)) => Err(e),
    }
}

impl Leader<'_> {
    /// The coordinator loop (see the module docs).
    async fn coordinate(&mut self) -> Result<Outcome, Halt> {
        let workers: Vec<String> = self
            .config
            .teammates
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let descriptions = worker_descriptions(self.config);
        let mut history: Vec<(u32, String, String)> = Vec::new();
        let max = self.config.max_rounds.max(1);
        for round in 1..=max {
            let prompt = agent_team_config::fill_coordinator_prompt(
                self.config,
                &descriptions,
                &self.goal,
                &prior_outputs(&history),
            );
            let mut messages = vec![
                ChatMessage::system(self.system_prompt(
                    "You are the team's coordinator: each round you give the work to one \
                     worker, or end it with the final answer.",
                )),
                ChatMessage::user(prompt),
            ];
            let mut told_back = false;
            loop {
                let text = self.ask(&messages).await?;
                let decision = parse_decision(&text).and_then(|d| match d {
                    Decision::Route { worker, .. } if !workers.contains(&worker) => Err(format!(
                        "there is no worker {worker:?}; the workers are: {}",
                        workers.join(", ")
                    )),
                    d => Ok(d),
                });
                match decision {
                    Ok(Decision::Done(answer)) => {
                        self.decision("done", None, round, &text).await?;
                        return Ok((answer, true, self.details(TeamStrategy::Coordinator, round)));
                    }
                    Ok(Decision::Route {
                        worker,
                        instructions,
                    }) => {
                        self.decision("route", Some(&worker), round, &text).await?;
                        let what = if instructions.is_empty() {
                            self.goal.clone()
                        } else {
                            instructions
                        };
                        let description =
                            format!("{what}\n\n(The team's goal: {})", self.goal.trim());
                        let title = format!("Round {round}: {}", short(&what, TITLE_LEN));
                        let id = self
                            .start_worker(&worker, round, &title, &description)
                            .await?;
                        let task = self.wait_for(&[id]).await?;
                        let output = self.worker_done(&worker, round, &task).await?;
                        history.push((round, worker, output));
                        break;
                    }
                    Err(why) => {
                        self.decision("invalid", None, round, &text).await?;
                        self.out
                            .say(&format!("round {round}: unusable answer: {why}"));
                        if told_back {
                            break; // told once already: the round is spent
                        }
                        told_back = true;
                        messages.push(ChatMessage::assistant(text, vec![]));
                        messages.push(ChatMessage::user(format!(
                            "Your answer could not be used: {why}. Answer again: the first line \
                             must be `ROUTE: <worker>` (one of: {}), with the instructions on \
                             the next lines, or `DONE: <final answer>`.",
                            workers.join(", ")
                        )));
                    }
                }
            }
        }
        let answer = if history.is_empty() {
            format!("no worker produced an output in {max} round(s)")
        } else {
            every_output(&history)
        };
        self.out
            .say(&format!("max_rounds = {max} reached without DONE"));
        Ok((answer, false, self.details(TeamStrategy::Coordinator, max)))
    }

    /// The collaborate loop (see the module docs).
    async fn collaborate(&mut self) -> Result<Outcome, Halt> {
        let workers: Vec<String> = self
            .config
            .teammates
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let title = short(&self.goal, TITLE_LEN);
        let mut in_order: Vec<(String, String)> = Vec::new();
        let mut all_completed = true;
        let rounds = match self.config.collaborate_order {
            CollaborateOrder::Parallel => {
                let mut ids: HashMap<u64, String> = HashMap::new();
                for w in &workers {
                    let goal = self.goal.clone();
                    let id = self.start_worker(w, 1, &title, &goal).await?;
                    ids.insert(id, w.clone());
                }
                let mut done: HashMap<String, String> = HashMap::new();
                while done.len() < workers.len() {
                    let open: Vec<u64> = ids
                        .iter()
                        .filter(|(_, w)| !done.contains_key(*w))
                        .map(|(id, _)| *id)
                        .collect();
                    let task = self.wait_for(&open).await?;
                    let Some(w) = ids.get(&task.id).cloned() else {
                        continue;
                    };
                    all_completed &= task.status == TaskStatus::Completed;
                    let output = self.worker_done(&w, 1, &task).await?;
                    done.insert(w, output);
                }
                // The synthesis sees the outputs in the order of [[teammates]].
                for w in &workers {
                    if let Some(o) = done.remove(w) {
                        in_order.push((w.clone(), o));
                    }
                }
                1
            }
            CollaborateOrder::Sequential => {
                for (i, w) in workers.iter().enumerate() {
                    let round = i as u32 + 1;
                    let description = collaborate_description(&self.goal, &in_order);
                    let id = self.start_worker(w, round, &title, &description).await?;
                    let task = self.wait_for(&[id]).await?;
                    all_completed &= task.status == TaskStatus::Completed;
                    let output = self.worker_done(w, round, &task).await?;
                    in_order.push((w.clone(), output));
                }
                workers.len() as u32
            }
        };
        let messages = vec![
            ChatMessage::system(self.system_prompt(
                "You write the team's final answer from the outputs of its workers.",
            )),
            ChatMessage::user(synthesis_prompt(&self.goal, &in_order)),
        ];
        let answer = self.ask(&messages).await?;
        Ok((
            answer.trim().to_string(),
            all_completed,
            self.details(TeamStrategy::Collaborate, rounds),
        ))
    }

    fn details(&self, strategy: TeamStrategy, rounds: u32) -> RunDetails {
        RunDetails {
            strategy,
            rounds,
            worker_outputs: self.outputs.clone(),
        }
    }

    /// The system prompt of the leader's own calls: the role's prompt, then who it is.
    fn system_prompt(&self, job: &str) -> String {
        let mut s = String::new();
        if !self.role.system_prompt.is_empty() {
            s.push_str(&agent_team_config::fill_prompt(
                self.config,
                self.role,
                LEADER,
                &self.config.workspace,
            ));
            s.push_str("\n\n");
        }
        s.push_str(&format!(
            "You are part of a team of AI agents working together. Your name is {LEADER}. {job}"
        ));
        s
    }

    /// One call of the leader's model (no tools): its text, streamed to the pane and the
    /// event log. A failed call is tried again twice, 2 s and 4 s later.
    async fn ask(&mut self, messages: &[ChatMessage]) -> Result<String, Halt> {
        let mut retry = Backoff::new(Duration::from_secs(2), Duration::from_secs(4)).max_retries(2);
        loop {
            self.idle_point().await?;
            let req = TurnRequest {
                messages: messages.to_vec(),
                tools: vec![],
            };
            // The leader's own calls count against the budgets like anyone's.
            crate::agent::budget_lease(self.link, self.role, &req, self.out).await?;
            let streamed = crate::agent::StreamedText::new(self.link, self.out);
            let mut on_event = streamed.on_event();
            let (turn, trace) =
                crate::agent::timed_turn(self.model.as_ref(), self.role, &req, &mut on_event).await;
            // What streamed goes out before anything the turn does next.
            streamed.flush();
            match turn {
                Ok(turn) => {
                    let call = Some(trace);
                    crate::agent::report_usage(self.link, self.role, &req, &turn, call, self.out)
                        .await;
                    if !self.role.stream && !turn.text.is_empty() {
                        self.out.write(&turn.text);
                        self.link.fire(Request::Emit {
                            event: Event::TextMessageContent {
                                delta: turn.text.clone(),
                            },
                        });
                    }
                    self.out.say("");
                    return Ok(turn.text);
                }
                Err(e) if e.is_config() => return Err(AgentError::Fatal(e.to_string()).into()),
                Err(e) => {
                    self.out.say(&format!("\nmodel error: {e}"));
                    let _ = self
                        .link
                        .call(Request::Emit {
                            event: Event::Error {
                                message: e.to_string(),
                            },
                        })
                        .await;
                    let Some(wait) = retry.next() else {
                        return Err(
                            AgentError::Daemon(format!("the model kept failing: {e}")).into()
                        );
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Records an event of the run, in order (each waits for the one before).
    async fn emit(&self, event: Event) -> Result<(), Halt> {
        self.link
            .call_retry(Request::Emit { event })
            .await
            .map(|_| ())
            .map_err(|e| daemon_err("cannot record an event", e))
    }

    async fn decision(
        &self,
        decision: &str,
        worker: Option<&str>,
        round: u32,
        text: &str,
    ) -> Result<(), Halt> {
        self.emit(Event::CoordinatorDecision {
            decision: decision.into(),
            worker: worker.map(str::to_string),
            round,
            text: text.trim().to_string(),
        })
        .await
    }

    /// Puts `worker`'s part on the board as a task assigned to it; returns the task's id.
    async fn start_worker(
        &self,
        worker: &str,
        round: u32,
        title: &str,
        description: &str,
    ) -> Result<u64, Halt> {
        use agent_team_config::escape_placeholders as esc;
        let req = Request::TaskAdd {
            title: esc(title),
            description: esc(description),
            run: None,
            blocked_by: vec![],
            assign: Some(worker.to_string()),
            key: None,
        };
        let id = match self.link.call_retry(req).await {
            Ok(Reply::Task { task }) => task.id,
            Ok(other) => {
                return Err(AgentError::Daemon(format!(
                    "unexpected answer to task_add: {other:?}"
                ))
                .into());
            }
            Err(e) => return Err(daemon_err(&format!("cannot give {worker} its task"), e)),
        };
        self.out
            .say(&format!("round {round}: task {id} for {worker}: {title}"));
        self.emit(Event::WorkerStarted {
            worker: worker.to_string(),
            round,
            task: description.to_string(),
        })
        .await?;
        Ok(id)
    }

    /// A worker's task ended: its output recorded (event, team memory, the run's outputs).
    async fn worker_done(&mut self, worker: &str, round: u32, task: &Task) -> Result<String, Halt> {
        let result = task.result.clone().unwrap_or_default();
        let output = if task.status == TaskStatus::Completed {
            result
        } else {
            format!("(task {} {}) {result}", task.id, task.status)
                .trim()
                .to_string()
        };
        self.out.say(&format!(
            "round {round}: {worker} → {}",
            short(&output, 200)
        ));
        self.emit(Event::WorkerFinished {
            worker: worker.to_string(),
            round,
            output: output.clone(),
        })
        .await?;
        let mut stored = output.clone();
        if stored.len() > MEMORY_OUTPUT_LEN {
            let mut cut = MEMORY_OUTPUT_LEN;
            while !stored.is_char_boundary(cut) {
                cut -= 1;
            }
            stored.truncate(cut);
        }
        if let Err(e) = self
            .link
            .call_retry(Request::MemorySet {
                key: format!("outputs/{worker}"),
                value: serde_json::Value::String(stored),
            })
            .await
        {
            self.out.say(&format!(
                "cannot write outputs/{worker} to team memory: {e}"
            ));
        }
        self.outputs.insert(worker.to_string(), output.clone());
        Ok(output)
    }

    /// Messages that arrived, taken in priority order: a shutdown request ends the run's loop.
    async fn idle_point(&mut self) -> Result<(), Halt> {
        let events = self.inbox.poll()?;
        self.backlog.extend(events);
        self.approvals.answer_pending(self.link, self.out).await;
        let name = self.link.name().to_string();
        let approvals = &mut self.approvals;
        let out = self.out;
        let taken = self
            .inbox
            .take(self.link.as_ref(), out, |m| {
                if m.kind == MessageKind::Permission && approvals.active() {
                    approvals.ask(m, out);
                } else {
                    idle::show(&name, m, out);
                    approvals.offer_plan(m, out);
                }
            })
            .await;
        match taken {
            Taken::Shutdown => Err(Halt::Shutdown),
            Taken::Work(acted) => {
                acted.ack(self.link.as_ref()).await;
                Ok(())
            }
        }
    }

    /// Waits until one of the tasks `ids` is completed, failed or cancelled, and returns it.
    async fn wait_for(&mut self, ids: &[u64]) -> Result<Task, Halt> {
        if let Some(t) = self.finished_among(ids).await? {
            return Ok(t);
        }
        self.link.set_status(AgentStatus::Idle).await;
        loop {
            self.idle_point().await?;
            for ev in std::mem::take(&mut self.backlog) {
                if let Some(t) = self.finished_by(ev, ids).await? {
                    self.link.set_status(AgentStatus::Running).await;
                    return Ok(t);
                }
            }
            match self.inbox.wait(Some(&mut self.approvals)).await? {
                Woken::Event(ev) => self.backlog.push(ev),
                Woken::Line(line) => self.approvals.take_line(line, self.link, self.out).await,
                Woken::Message => {}
            }
        }
    }

    /// The task of `ids` an event says is finished, if it does.
    async fn finished_by(&self, ev: Inbound, ids: &[u64]) -> Result<Option<Task>, Halt> {
        match ev {
            Inbound::Task(t) if ids.contains(&t.id) && t.status.is_terminal() => Ok(Some(*t)),
            // Changes may have been missed while away: look at the board again.
            Inbound::Reconnected => self.finished_among(ids).await,
            _ => Ok(None),
        }
    }

    /// The first of `ids` that is already finished, looked up on the board.
    async fn finished_among(&self, ids: &[u64]) -> Result<Option<Task>, Halt> {
        for id in ids {
            match self.link.call_retry(Request::TaskShow { id: *id }).await {
                Ok(Reply::Task { task }) if task.status.is_terminal() => return Ok(Some(task)),
                Ok(_) => {}
                Err(e) => return Err(daemon_err(&format!("cannot read task {id}"), e)),
            }
        }
        Ok(None)
    }

    /// Records the final answer and ends the run with the strategy's details.
    async fn finish(
        &self,
        answer: String,
        success: bool,
        details: RunDetails,
    ) -> Result<(), AgentError> {
        if let Err(Halt::Error(e)) = self
            .emit(Event::FinalAnswer {
                answer: answer.clone(),
                rounds: details.rounds,
            })
            .await
        {
            return Err(e);
        }
        self.out.say(&format!(
            "finishing the team ({} round(s), {}):\n{answer}",
            details.rounds,
            if success { "success" } else { "no success" }
        ));
        match self
            .link
            .call_retry(Request::Finish {
                answer,
                force: true,
                success,
                details: Some(details),
                auto: false,
            })
            .await
        {
            Ok(_) => Ok(()),
            // Already finished before a restart.
            Err(CallError::Server(e))
                if e.code == ErrorCode::InvalidState && e.details.get("run").is_some() =>
            {
                Ok(())
            }
            Err(e) => Err(AgentError::Daemon(format!("cannot finish: {e}"))),
        }
    }
}

/// The answer of a coordinator run that reached `max_rounds`: each worker's latest output, in
/// the order they first worked, as `NAME: OUTPUT` paragraphs (lauren-ai answers with every
/// worker's output there, not only the last).
fn every_output(history: &[(u32, String, String)]) -> String {
    let mut latest: Vec<(&str, &str)> = Vec::new();
    for (_, worker, output) in history {
        match latest.iter_mut().find(|(w, _)| *w == worker.as_str()) {
            Some(slot) => slot.1 = output,
            None => latest.push((worker, output)),
        }
    }
    latest
        .iter()
        .map(|(w, o)| format!("{w}: {}", o.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route(worker: &str, instructions: &str) -> Result<Decision, String> {
        Ok(Decision::Route {
            worker: worker.into(),
            instructions: instructions.into(),
        })
    }

    #[test]
    fn route_and_done_are_read_from_the_first_line() {
        assert_eq!(parse_decision("ROUTE: b1"), route("b1", ""));
        assert_eq!(
            parse_decision("ROUTE: researcher\nFind the sources.\nTwo at least."),
            route("researcher", "Find the sources.\nTwo at least.")
        );
        assert_eq!(
            parse_decision("\n  route:   <b2>  \n\n do it \n"),
            route("b2", "do it")
        );
        assert_eq!(parse_decision("**ROUTE:** `b1`"), route("b1", ""));
        assert_eq!(parse_decision("ROUTE: \"b1\"."), route("b1", ""));
        assert_eq!(parse_decision("DONE: 42"), Ok(Decision::Done("42".into())));
        assert_eq!(
            parse_decision("Done: the answer\nspans two lines"),
            Ok(Decision::Done("the answer\nspans two lines".into()))
        );
        assert_eq!(
            parse_decision("DONE:\non the next line"),
            Ok(Decision::Done("on the next line".into()))
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for bad in [
            "",
            "   ",
            "I think b1 should do it.",
            "ROUTE b1",
            "NEXT: b1",
            "Sure! ROUTE: b1",
        ] {
            let e = parse_decision(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
        assert_eq!(
            parse_decision("ROUTE:  "),
            Err("`ROUTE:` names no worker".into())
        );
        assert_eq!(
            parse_decision("DONE:"),
            Err("`DONE:` gives no answer".into())
        );
        assert_eq!(parse_decision(""), Err("the answer was empty".into()));
    }

    fn team() -> TeamConfig {
        let mut cfg = agent_team_config::empty_team("t", std::path::Path::new("/w"));
        cfg.teammates = vec![
            agent_team_config::Teammate {
                name: "b1".into(),
                role: "worker".into(),
                ..Default::default()
            },
            agent_team_config::Teammate {
                name: "r1".into(),
                role: "reviewer".into(),
                ..Default::default()
            },
        ];
        cfg
    }

    #[test]
    fn the_coordinator_prompt_names_workers_task_prior_outputs_and_variables() {
        let mut cfg = team();
        let d = worker_descriptions(&cfg);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 2, "{d}");
        assert!(
            lines[0].starts_with("- b1: ") && lines[1].starts_with("- r1: "),
            "{d}"
        );
        assert_eq!(prior_outputs(&[]), "(none yet)");
        let prior = prior_outputs(&[
            (1, "b1".into(), "first\n".into()),
            (2, "r1".into(), "second".into()),
        ]);
        assert_eq!(prior, "Round 1, b1:\nfirst\n\nRound 2, r1:\nsecond");
        // The built-in prompt has every placeholder filled.
        let p = agent_team_config::fill_coordinator_prompt(&cfg, &d, "Write a haiku", &prior);
        assert!(p.contains("- b1: ") && p.contains("Write a haiku") && p.contains("Round 2, r1"));
        assert!(
            p.contains("ROUTE: <worker name>") && !p.contains("{{"),
            "{p}"
        );
        // A team's own prompt, with one of its variables.
        cfg.variables.insert("tone".into(), "dry".into());
        cfg.coordinator_prompt =
            "[{{worker_descriptions}}] {{task}} / {{prior_outputs}} ({{tone}}, {{team}})".into();
        let p = agent_team_config::fill_coordinator_prompt(&cfg, "W", "T", "P");
        assert_eq!(p, "[W] T / P (dry, t)");
    }

    #[test]
    fn collaborate_prompts_carry_the_goal_and_the_outputs_in_order() {
        let outs = vec![
            ("b1".to_string(), "alpha".to_string()),
            ("b2".into(), "beta".into()),
        ];
        assert_eq!(collaborate_description("goal", &[]), "goal");
        let d = collaborate_description("goal", &outs[..1]);
        assert!(
            d.starts_with("goal\n\n") && d.contains("### b1\nalpha"),
            "{d}"
        );
        let s = synthesis_prompt("the goal", &outs);
        assert!(s.starts_with("Goal:\nthe goal"), "{s}");
        let (a, b) = (
            s.find("### b1\nalpha").unwrap(),
            s.find("### b2\nbeta").unwrap(),
        );
        assert!(a < b, "{s}");
    }

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(short("\n  first line\nsecond", 100), "first line");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
