//! `agent-team memory`: the team's shared memory. Reads (`list`, `get`) go through the reader,
//! so they never start a daemon or create a team; writes (`set`, `delete`) are operator
//! requests, applied exactly once.

use crate::cli::MemoryCmd;
use crate::ctx::Ctx;
use crate::output::{self, ago, short};
use agent_team_protocol::*;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `agent-team memory …`
pub fn memory(ctx: &Ctx, cmd: MemoryCmd) -> Result<ExitCode> {
    match cmd {
        MemoryCmd::List {
            prefix,
            json,
            values,
        } => {
            let entries = ctx.reader()?.memory(prefix.as_deref())?;
            if json && values {
                let all: serde_json::Map<String, Value> =
                    entries.into_iter().map(|e| (e.key, e.value)).collect();
                output::json(&all);
            } else if json {
                output::json(&entries);
            } else if entries.is_empty() {
                eprintln!(
                    "agent-team: the memory of team {} has no keys{}",
                    ctx.team,
                    prefix
                        .map(|p| format!(" starting with {p:?}"))
                        .unwrap_or_default()
                );
            } else if values {
                for e in &entries {
                    output::line(&format!("{}:", text::printable(&e.key)));
                    output::line(&plain(&e.value));
                }
            } else {
                print_entries(&entries);
            }
        }
        MemoryCmd::Get { key, json } => {
            let entry = ctx.reader()?.memory_get(&key)?;
            if json {
                output::json(&entry);
            } else {
                output::line(&plain(&entry.value));
            }
        }
        MemoryCmd::Set {
            key,
            value,
            string,
            json,
        } => {
            let value = parse_value(value, string);
            let reply = ctx.call(Request::MemorySet { key, value })?;
            written(reply, json)?;
        }
        MemoryCmd::Delete { key, json } => {
            let reply = ctx.call(Request::MemoryDelete { key })?;
            written(reply, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// VALUE as JSON when it parses as JSON (and `--string` was not given), else as a string.
fn parse_value(text: String, string: bool) -> Value {
    if string {
        return Value::String(text);
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// A value for people: a string as it is (lines and tabs kept, other control characters such
/// as escape sequences written visibly: an agent wrote it), anything else as pretty JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s
            .split_inclusive(['\n', '\t'])
            .map(|part| {
                let end = part.strip_suffix(['\n', '\t']).unwrap_or(part);
                let sep = &part[end.len()..];
                format!("{}{sep}", text::printable(end))
            })
            .collect(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// Prints the answer to `set` or `delete`.
fn written(reply: Reply, json: bool) -> Result<()> {
    let Reply::MemoryWritten {
        key,
        version,
        deleted,
    } = reply
    else {
        bail!("unexpected reply {reply:?}");
    };
    if json {
        output::json(&json!({"key": key, "version": version, "deleted": deleted}));
    } else if deleted {
        output::line(&format!("deleted {}", text::printable(&key)));
    } else {
        output::line(&format!(
            "stored {} (version {version})",
            text::printable(&key)
        ));
    }
    Ok(())
}

fn print_entries(entries: &[MemoryEntry]) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                text::printable(&e.key),
                e.version.to_string(),
                e.updated_by.clone(),
                ago(e.updated_at),
                short(&e.value.to_string(), 60),
            ]
        })
        .collect();
    output::table(&["KEY", "VERSION", "BY", "UPDATED", "VALUE"], &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(parse_value("42".into(), false), json!(42));
        assert_eq!(parse_value("true".into(), false), json!(true));
        assert_eq!(parse_value(r#"{"a":[1]}"#.into(), false), json!({"a": [1]}));
        assert_eq!(parse_value(r#""quoted""#.into(), false), json!("quoted"));
        assert_eq!(
            parse_value("hello world".into(), false),
            json!("hello world")
        );
        assert_eq!(parse_value("{oops".into(), false), json!("{oops"));
        assert_eq!(parse_value("42".into(), true), json!("42"));
        assert_eq!(plain(&json!("two\nlines\tok")), "two\nlines\tok");
        assert_eq!(plain(&json!("red\u{1b}[31m\n")), "red\\u{1b}[31m\n");
        assert_eq!(plain(&json!({"a": 1})), "{\n  \"a\": 1\n}");
    }
}
