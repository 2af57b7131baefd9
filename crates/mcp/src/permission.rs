//! Permission escalation for external CLIs: a CLI's `PreToolUse` hook
//! (`agent-team-bridge hook pre-tool-use`) hands each call of one of its own tools to the
//! agent's team server, which
//! judges it by the role's policy as our workers do and, where the policy says `ask`, raises
//! one of the team's permission requests and waits for `agent-team approve` / `deny` (or the
//! leader). The CLI's own permission prompt is never what decides.
//!
//! [`our_call`] (a CLI's tool call as ours) and [`hook_request`] (the request to the server, see
//! [`crate::wire`]) are pure. The hook's answer to the CLI is in the CLI's own shape, which its
//! adapter knows (`agent_team_worker::external::CliAdapter::pre_tool_answer`).

use crate::wire::HookRequest;
use serde_json::{Value, json};

/// The longest request line the hook socket reads (a shell command is judged whole; a
/// longer one is refused rather than cut).
pub const PERMISSION_LINE_MAX: u64 = 64 * 1024;

/// The most files or directories one call may name to be judged ([`hook_requests`]).
pub const TARGETS_MAX: usize = 32;

/// A CLI's tool call as the tool of ours it stands for, with the arguments our policy judges
/// (the text a write would put is left out: only where it goes matters). `None` for a tool
/// with no counterpart of ours. The names are every CLI's, from their tables in
/// [`agent_team_tools::cli_names`].
pub fn our_call(tool: &str, input: &Value) -> Option<(&'static str, Value)> {
    let s = |k: &str| input.get(k).and_then(Value::as_str).unwrap_or_default();
    let path = || {
        ["file_path", "absolute_path", "path"]
            .iter()
            .map(|k| s(k))
            .find(|p| !p.is_empty())
            .unwrap_or_default()
            .to_string()
    };
    let ours = agent_team_tools::cli_names::ours(tool)?;
    let args = match ours {
        "bash" => json!({"command": s("command")}),
        "write_file" => json!({"path": path(), "content": ""}),
        "edit_file" => json!({"path": path(), "old_string": "", "new_string": ""}),
        "read_file" => json!({"path": path()}),
        "glob" => json!({"pattern": s("pattern")}),
        "grep" => json!({"pattern": s("pattern"), "path": input.get("path")}),
        "list_files" => json!({"path": input.get("path")}),
        "web_fetch" => json!({"url": s("url")}),
        "web_search" => json!({"query": s("query")}),
        "todo_write" => json!({"items": []}),
        _ => return None,
    };
    Some((ours, args))
}

/// The tool a CLI's hook input is about: its `tool_name` (Claude Code, Qwen Code, Gemini CLI,
/// Codex) or `toolName` (Copilot).
pub fn hook_tool(input: &Value) -> Option<&str> {
    input
        .get("tool_name")
        .or_else(|| input.get("toolName"))
        .and_then(Value::as_str)
}

/// The arguments of the call in a CLI's hook input: `tool_input`, or Copilot's `toolArgs`
/// (`preToolUse`) / `toolInput` (`permissionRequest`). A freeform tool's (Copilot's
/// `apply_patch`) are a string.
fn hook_tool_input(input: &Value) -> Value {
    ["tool_input", "toolArgs", "toolInput"]
        .iter()
        .find_map(|k| input.get(*k))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The request the hook sends the MCP server for the CLI's hook input `input` (its
/// `tool_name` and `tool_input`, or Copilot's names for them), or why none can be made; a call
/// naming several files or directories ([`hook_requests`]) is refused here. Its line is
/// bounded when it is made ([`crate::wire::request_line`]).
pub fn hook_request(input: &Value) -> Result<HookRequest, String> {
    let mut all = hook_requests(input)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(format!("the call names {n} targets, each to be judged")),
    }
}

/// The requests the hook sends the MCP server for the CLI's hook input `input`: one per file
/// or directory the call names (a patch's files, Copilot's `paths`), each judged on its own,
/// so the call goes ahead only if every one is allowed. Or why none can be made.
pub fn hook_requests(input: &Value) -> Result<Vec<HookRequest>, String> {
    let name = hook_tool(input).ok_or("the hook input has no tool_name")?;
    let tool_input = hook_tool_input(input);
    let targets = targets(name, &tool_input)?;
    // Each target may become a request a person answers: a call naming more is refused whole
    // rather than queueing that many questions.
    if targets.len() > TARGETS_MAX {
        return Err(format!(
            "the {name} call names {} files; at most {TARGETS_MAX} are judged in one call",
            targets.len()
        ));
    }
    targets
        .iter()
        .map(|one| {
            let (tool, args) = our_call(name, one)
                .ok_or_else(|| format!("{name} is not a tool this team's policy knows"))?;
            Ok(HookRequest::Permission {
                tool: tool.to_string(),
                args,
            })
        })
        .collect()
}

/// The call's input once per file or directory it names: a patch's files (`apply_patch`,
/// whose input is the patch text), each of Copilot's `paths`, else the input as it is.
fn targets(name: &str, input: &Value) -> Result<Vec<Value>, String> {
    if name == "apply_patch" {
        let text = match input {
            Value::String(s) => s.clone(),
            other => ["input", "patch"]
                .iter()
                .find_map(|k| other.get(*k).and_then(Value::as_str))
                .unwrap_or_default()
                .to_string(),
        };
        // A patch given as a JSON string (as an OpenAI-compatible server may send it).
        let text = serde_json::from_str::<String>(&text).unwrap_or(text);
        let paths = patch_paths(&text);
        if paths.is_empty() {
            return Err("the patch names no file".into());
        }
        return Ok(paths.into_iter().map(|p| json!({ "path": p })).collect());
    }
    let with_path = |p: &Value| {
        let mut one = input.clone();
        one["path"] = p.clone();
        one
    };
    Ok(match input.get("paths") {
        Some(Value::Array(paths)) if !paths.is_empty() => paths.iter().map(with_path).collect(),
        Some(p @ Value::String(_)) => vec![with_path(p)],
        _ => vec![input.clone()],
    })
}

/// The files a patch in the `*** Begin Patch` format adds, updates, deletes or moves to.
fn patch_paths(patch: &str) -> Vec<String> {
    const HEADS: [&str; 4] = [
        "*** Add File: ",
        "*** Update File: ",
        "*** Delete File: ",
        "*** Move to: ",
    ];
    patch
        .lines()
        .filter_map(|l| HEADS.iter().find_map(|h| l.strip_prefix(h)))
        .map(|p| p.trim().to_string())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn claude_and_qwen_calls_map_to_ours_with_what_the_policy_judges() {
        let bash = our_call("Bash", &json!({"command": "rm -rf build", "timeout": 5})).unwrap();
        assert_eq!(bash, ("bash", json!({"command": "rm -rf build"})));
        let q = our_call("run_shell_command", &json!({"command": "ls"})).unwrap();
        assert_eq!(q.0, "bash");
        let w = our_call(
            "Write",
            &json!({"file_path": "/w/a.txt", "content": "a huge text"}),
        )
        .unwrap();
        assert_eq!(
            w,
            ("write_file", json!({"path": "/w/a.txt", "content": ""}))
        );
        assert_eq!(
            our_call("write_file", &json!({"file_path": "b"}))
                .unwrap()
                .1["path"],
            "b"
        );
        assert_eq!(
            our_call("MultiEdit", &json!({"file_path": "c", "edits": []}))
                .unwrap()
                .0,
            "edit_file"
        );
        assert_eq!(
            our_call("WebFetch", &json!({"url": "http://x", "prompt": "p"})).unwrap(),
            ("web_fetch", json!({"url": "http://x"}))
        );
        // Claude Code's WebSearch (with its domain filters) and Qwen Code's web_search are our
        // web_search, judged on the query.
        for (tool, input) in [
            (
                "WebSearch",
                json!({"query": "rust 2024", "allowed_domains": ["docs.rs"]}),
            ),
            (
                "web_search",
                json!({"query": "rust 2024", "provider": "tavily"}),
            ),
        ] {
            assert_eq!(
                our_call(tool, &input).unwrap(),
                ("web_search", json!({"query": "rust 2024"}))
            );
        }
        assert!(our_call("NotebookEdit", &json!({})).is_none());
    }

    #[test]
    fn every_mapped_call_parses_as_our_tool() {
        for (tool, input) in [
            ("Bash", json!({"command": "ls"})),
            ("Write", json!({"file_path": "a", "content": "x"})),
            (
                "Edit",
                json!({"file_path": "a", "old_string": "x", "new_string": "y"}),
            ),
            ("Read", json!({"file_path": "a"})),
            ("Glob", json!({"pattern": "*.rs"})),
            ("Grep", json!({"pattern": "x"})),
            ("LS", json!({"path": "."})),
            ("WebFetch", json!({"url": "http://x"})),
            ("WebSearch", json!({"query": "x"})),
            ("TodoWrite", json!({"todos": []})),
        ] {
            let (ours, args) = our_call(tool, &input).unwrap();
            agent_team_tools::ToolCall::parse(ours, &args)
                .unwrap_or_else(|e| panic!("{tool} → {ours} {args}: {e}"));
        }
        // Every name in every CLI's table maps, to a call of ours that parses.
        for table in agent_team_tools::cli_names::ALL {
            for (name, ours) in table.names() {
                let input = json!({"command": "ls", "file_path": "a", "pattern": "x",
                    "url": "http://x", "query": "q"});
                let (mapped, args) = our_call(name, &input).unwrap_or_else(|| panic!("{name}"));
                assert_eq!(mapped, ours, "{}: {name}", table.cli);
                agent_team_tools::ToolCall::parse(mapped, &args)
                    .unwrap_or_else(|e| panic!("{name} → {mapped} {args}: {e}"));
            }
        }
        // A call naming more files than are judged in one call is refused whole.
        let many: Vec<String> = (0..=TARGETS_MAX).map(|i| format!("f{i}")).collect();
        let err =
            hook_requests(&json!({"toolName": "view", "toolArgs": {"paths": many}})).unwrap_err();
        assert!(err.contains("at most 32"), "{err}");
        let few: Vec<String> = (0..TARGETS_MAX).map(|i| format!("f{i}")).collect();
        assert_eq!(
            hook_requests(&json!({"toolName": "view", "toolArgs": {"paths": few}}))
                .unwrap()
                .len(),
            TARGETS_MAX
        );
        // A second team's tools have no counterpart: the hook refuses them.
        for own in ["invoke_agent", "TaskCreate", "agent"] {
            assert!(our_call(own, &json!({})).is_none(), "{own}");
        }
    }

    #[test]
    fn the_request_is_our_call_and_its_line_is_one_bounded_line_and_the_answer_is_the_hook_shape() {
        let req = hook_request(&json!({"tool_name": "Bash", "tool_input": {"command": "ls\nls"}}))
            .unwrap();
        assert_eq!(
            req,
            HookRequest::Permission {
                tool: "bash".into(),
                args: json!({"command": "ls\nls"})
            }
        );
        let line = crate::wire::request_line("k", &req).unwrap();
        assert!(line.starts_with("k {\"hook\":\"permission\"") && line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let huge = "x".repeat(PERMISSION_LINE_MAX as usize);
        let req =
            hook_request(&json!({"tool_name": "Bash", "tool_input": {"command": huge}})).unwrap();
        assert!(
            crate::wire::request_line("k", &req)
                .unwrap_err()
                .to_string()
                .contains("too long")
        );
        assert!(hook_request(&json!({"tool_name": "Task"})).is_err());
        assert!(hook_request(&json!({"tool_input": {}})).is_err());
    }

    #[test]
    fn copilots_hook_input_is_read_with_its_own_names_and_each_file_is_judged() {
        // preToolUse: camelCase `toolName` and `toolArgs`.
        let pre = json!({"sessionId": "s", "cwd": "/w", "toolName": "bash",
            "toolArgs": {"command": "ls", "description": "list"}});
        assert_eq!(hook_tool(&pre), Some("bash"));
        assert_eq!(
            hook_request(&pre).unwrap(),
            HookRequest::Permission {
                tool: "bash".into(),
                args: json!({"command": "ls"})
            }
        );
        // permissionRequest: `toolInput`.
        let perm = json!({"hookName": "permissionRequest", "toolName": "create",
            "toolInput": {"path": "/w/a.txt", "file_text": "x"}});
        assert_eq!(
            hook_request(&perm).unwrap(),
            HookRequest::Permission {
                tool: "write_file".into(),
                args: json!({"path": "/w/a.txt", "content": ""})
            }
        );
        let view = json!({"toolName": "view", "toolArgs": {"path": "/w/b.rs"}});
        assert_eq!(
            hook_request(&view).unwrap(),
            HookRequest::Permission {
                tool: "read_file".into(),
                args: json!({"path": "/w/b.rs"})
            }
        );
        // Its `paths` (one, or several, each judged).
        let one = json!({"toolName": "grep", "toolArgs": {"pattern": "x", "paths": "/w/src"}});
        assert_eq!(
            hook_request(&one).unwrap(),
            HookRequest::Permission {
                tool: "grep".into(),
                args: json!({"pattern": "x", "path": "/w/src"})
            }
        );
        let two =
            json!({"toolName": "rg", "toolArgs": {"pattern": "x", "paths": ["/w/a", "/etc"]}});
        let all = hook_requests(&two).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1],
            HookRequest::Permission {
                tool: "grep".into(),
                args: json!({"pattern": "x", "path": "/etc"})
            }
        );
        assert!(hook_request(&two).is_err());
        // A patch (freeform text, or a JSON string of it) is judged file by file.
        let patch = "*** Begin Patch\n*** Add File: /w/new.txt\n+hi\n\
                     *** Update File: /w/old.txt\n*** Move to: /w/moved.txt\n@@\n-a\n+b\n\
                     *** Delete File: /w/gone.txt\n*** End Patch\n";
        for args in [json!(patch), json!(json!(patch).to_string())] {
            let all = hook_requests(&json!({"toolName": "apply_patch", "toolArgs": args})).unwrap();
            let paths: Vec<_> = all
                .iter()
                .map(|r| match r {
                    HookRequest::Permission { tool, args } => {
                        assert_eq!(tool, "edit_file");
                        args["path"].as_str().unwrap().to_string()
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                paths,
                ["/w/new.txt", "/w/old.txt", "/w/moved.txt", "/w/gone.txt"]
            );
        }
        assert!(
            hook_requests(&json!({"toolName": "apply_patch", "toolArgs": "no patch"})).is_err()
        );
        // Its subagents and any tool with no counterpart of ours are refused.
        for own in [
            "task",
            "write_agent",
            "read_agent",
            "list_agents",
            "write_bash",
        ] {
            assert!(
                hook_requests(&json!({"toolName": own, "toolArgs": {}})).is_err(),
                "{own}"
            );
        }
    }
}
