//! The memory tools: the team's shared key-value store, kept by the daemon. Answers are short
//! lines or JSON the model can read; a value is shown whole by `memory_get` only.

use super::{ToolCtx, ToolOutcome, daemon, to_json};
use agent_team_protocol::*;
use agent_team_tools::{MemoryGet, MemoryList, MemorySet};
use serde_json::{Value, json};

/// The most keys `memory_list` shows the model; past it, the model is told to narrow the prefix.
const LIST_SHOWN: usize = 200;

/// The most bytes of values `memory_list {values: true}` shows; later values are left out (and
/// the model told so), so one call cannot flood its context.
const VALUES_SHOWN: usize = 64 * 1024;

pub(super) async fn memory_set(ctx: &ToolCtx, a: &MemorySet) -> Result<ToolOutcome, String> {
    let req = Request::MemorySet {
        key: a.key.clone(),
        value: a.value.clone(),
    };
    Ok(match daemon(ctx, req).await? {
        Reply::MemoryWritten { key, version, .. } => {
            ToolOutcome::ok(format!("stored {key} (version {version})"))
        }
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn memory_get(ctx: &ToolCtx, a: &MemoryGet) -> Result<ToolOutcome, String> {
    let req = Request::MemoryGet { key: a.key.clone() };
    Ok(match daemon(ctx, req).await? {
        Reply::Memory { entry } => ToolOutcome::ok(to_json(&entry)),
        other => ToolOutcome::ok(to_json(&other)),
    })
}

pub(super) async fn memory_list(ctx: &ToolCtx, a: &MemoryList) -> Result<ToolOutcome, String> {
    let mut rows: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    let mut more = false;
    let with_values = a.values.unwrap_or(false);
    let mut value_bytes = 0;
    let mut values_left_out = 0;
    loop {
        let req = Request::MemoryList {
            prefix: a.prefix.clone(),
            after: after.clone(),
        };
        let entries = match daemon(ctx, req).await? {
            Reply::MemoryEntries { entries } => entries,
            other => return Ok(ToolOutcome::ok(to_json(&other))),
        };
        let Some(last) = entries.last() else {
            break;
        };
        after = Some(last.key.clone());
        for e in &entries {
            if rows.len() == LIST_SHOWN {
                more = true;
                break;
            }
            let bytes = memory::value_len(&e.value);
            let mut row = json!({
                "key": e.key,
                "version": e.version,
                "updated_by": e.updated_by,
                "updated_at": e.updated_at,
                "bytes": bytes,
            });
            if with_values {
                if value_bytes + bytes <= VALUES_SHOWN {
                    value_bytes += bytes;
                    row["value"] = e.value.clone();
                } else {
                    values_left_out += 1;
                }
            }
            rows.push(row);
        }
        if more {
            break;
        }
    }
    if rows.is_empty() {
        return Ok(ToolOutcome::ok(match &a.prefix {
            Some(p) => format!("the team's memory has no key starting with {p:?}"),
            None => "the team's memory is empty".to_string(),
        }));
    }
    let mut text = to_json(&rows);
    if values_left_out > 0 {
        text.push_str(&format!(
            "\n({values_left_out} values are left out past {} KiB; read them with memory_get)",
            VALUES_SHOWN / 1024
        ));
    }
    if more {
        text.push_str(&format!(
            "\n(only the first {LIST_SHOWN} keys are shown; give a longer prefix to see others)"
        ));
    }
    Ok(ToolOutcome::ok(text))
}
