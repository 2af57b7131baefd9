//! The team tool of an agent's own checklist: the daemon keeps it with the agent, `ps --json`
//! and the web board show it.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Where one item of the checklist stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    /// Not started.
    Pending,
    /// Being worked on now.
    InProgress,
    /// Done.
    Completed,
}

/// One item of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TodoItem {
    /// what is to be done, in a short sentence
    pub content: String,
    /// pending, in_progress or completed
    pub status: TodoStatus,
}

/// Arguments of `todo_write`: the whole list, replacing the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TodoWrite {
    /// the whole checklist, in order (an empty list clears it)
    pub items: Vec<TodoItem>,
}

impl Tool for TodoWrite {
    const NAME: &'static str = "todo_write";
    const DESCRIPTION: &'static str = "Replace your own checklist with `items` (each with content and status pending, in_progress or completed). The team sees it in ps and on the board; keep one item in_progress at a time.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}
