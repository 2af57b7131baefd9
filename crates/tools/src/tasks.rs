//! The team tools of the task board: the leader creates and assigns tasks, teammates claim,
//! finish and release them, everyone lists them.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `create_task`: a new task on the board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// a short title
    pub title: String,
    /// what exactly to do and how to tell it is done
    pub description: Option<String>,
    /// ids of tasks that must complete first
    pub blocked_by: Option<Vec<u64>>,
    /// give it to this teammate at once
    pub assign: Option<String>,
}

impl Tool for CreateTask {
    const NAME: &'static str = "create_task";
    const DESCRIPTION: &'static str =
        "Put a task on the shared board. Teammates claim it once its blockers are completed.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// Arguments of `assign_task`: the leader hands a pending task to a teammate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTask {
    /// the task's id
    pub id: u64,
    /// the teammate's name
    pub to: String,
}

impl Tool for AssignTask {
    const NAME: &'static str = "assign_task";
    const DESCRIPTION: &'static str = "Give a pending task to a teammate.";
    const AUDIENCE: Audience = Audience::LEADER;
}

/// A task status to list, as the board names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BoardStatus {
    /// Waiting to be claimed (or for its blockers).
    Pending,
    /// Held by a teammate.
    InProgress,
    /// Done.
    Completed,
    /// Given up.
    Failed,
    /// Withdrawn.
    Cancelled,
}

/// Arguments of `list_tasks`: the board, whole or one status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasks {
    /// only tasks with this status
    pub status: Option<BoardStatus>,
}

impl Tool for ListTasks {
    const NAME: &'static str = "list_tasks";
    const DESCRIPTION: &'static str = "The task board: id, status, owner, blockers, title.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}

/// Arguments of `claim_task`: a teammate takes a task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimTask {
    /// the task's id
    pub id: u64,
}

impl Tool for ClaimTask {
    const NAME: &'static str = "claim_task";
    const DESCRIPTION: &'static str =
        "Take a pending task whose blockers are completed. You can hold one task at a time.";
    const AUDIENCE: Audience = Audience::TEAMMATE;
}

/// What `update_task_status` makes of a task: a claim (Qwen Code's way of taking one), or how
/// the held task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusUpdate {
    /// Take it (a pending, unowned task whose blockers are completed), as `claim_task` does.
    InProgress,
    /// It is done.
    Completed,
    /// It could not be done.
    Failed,
}

/// Arguments of `update_task_status`: a teammate finishes the task it holds (or claims one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskStatus {
    /// the task's id
    pub id: u64,
    /// completed or failed (the task you hold), or in_progress to claim a pending one
    pub status: StatusUpdate,
    /// a short result
    pub result: Option<String>,
}

impl Tool for UpdateTaskStatus {
    const NAME: &'static str = "update_task_status";
    const DESCRIPTION: &'static str = "Finish the task you hold: completed or failed, with a short result. in_progress claims a pending task, as claim_task does.";
    const AUDIENCE: Audience = Audience::TEAMMATE;
}

/// Arguments of `release_task`: a teammate gives a task back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTask {
    /// the task's id
    pub id: u64,
}

impl Tool for ReleaseTask {
    const NAME: &'static str = "release_task";
    const DESCRIPTION: &'static str = "Give back a task you hold so someone else can take it.";
    const AUDIENCE: Audience = Audience::TEAMMATE;
}
