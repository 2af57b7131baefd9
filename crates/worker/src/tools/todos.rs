//! `todo_write`: the agent's own checklist, kept by the daemon with the agent's record.

use super::{ToolCtx, ToolOutcome, daemon, to_json};
use agent_team_protocol::{Reply, Request, TodoItem, TodoStatus};
use agent_team_tools::TodoWrite;

/// The protocol's checklist from the tool's arguments.
pub(super) fn items(a: &TodoWrite) -> Vec<TodoItem> {
    a.items
        .iter()
        .map(|i| TodoItem {
            content: i.content.trim().to_string(),
            status: match i.status {
                agent_team_tools::TodoStatus::Pending => TodoStatus::Pending,
                agent_team_tools::TodoStatus::InProgress => TodoStatus::InProgress,
                agent_team_tools::TodoStatus::Completed => TodoStatus::Completed,
            },
        })
        .collect()
}

/// The checklist as the model reads it back: one line per item with a box.
pub(super) fn render(items: &[TodoItem]) -> String {
    if items.is_empty() {
        return "your checklist is empty".into();
    }
    let done = items
        .iter()
        .filter(|i| i.status == TodoStatus::Completed)
        .count();
    let mut s = format!("your checklist ({done}/{} done):", items.len());
    for i in items {
        let mark = match i.status {
            TodoStatus::Pending => "[ ]",
            TodoStatus::InProgress => "[~]",
            TodoStatus::Completed => "[x]",
        };
        s.push_str(&format!("\n{mark} {}", i.content));
    }
    s
}

pub(super) async fn todo_write(ctx: &ToolCtx, a: &TodoWrite) -> Result<ToolOutcome, String> {
    if let Some(n) = a.items.iter().position(|i| i.content.trim().is_empty()) {
        return Err(format!("item {} has no content", n + 1));
    }
    let req = Request::SetTodos { items: items(a) };
    Ok(match daemon(ctx, req).await? {
        Reply::Agent { agent } => ToolOutcome::ok(render(&agent.todos)),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_team_tools::ToolCall;
    use serde_json::json;

    #[test]
    fn the_tool_arguments_become_the_protocol_checklist() {
        let call = ToolCall::parse(
            "todo_write",
            &json!({"items": [
                {"content": "  read  ", "status": "completed"},
                {"content": "fix", "status": "in_progress"},
                {"content": "test", "status": "pending"}
            ]}),
        )
        .unwrap();
        let ToolCall::TodoWrite(a) = call else {
            panic!("{call:?}")
        };
        let list = items(&a);
        assert_eq!(
            list,
            vec![
                TodoItem {
                    content: "read".into(),
                    status: TodoStatus::Completed
                },
                TodoItem {
                    content: "fix".into(),
                    status: TodoStatus::InProgress
                },
                TodoItem {
                    content: "test".into(),
                    status: TodoStatus::Pending
                },
            ]
        );
        assert_eq!(
            render(&list),
            "your checklist (1/3 done):\n[x] read\n[~] fix\n[ ] test"
        );
        // On the wire the statuses are snake_case words.
        assert_eq!(
            serde_json::to_value(&list[1]).unwrap(),
            json!({"content": "fix", "status": "in_progress"})
        );
    }
}
