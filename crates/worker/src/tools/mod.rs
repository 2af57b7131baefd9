//! Every tool an agent can have, defined once: the definition gives the model's JSON schema,
//! the documentation (`agent-team tools`), and the code that runs it.
//!
//! Team tools are requests to the daemon (which still enforces leader-only operations). Workspace
//! tools act on files under the agent's workspace only: a path that escapes it is refused.

use crate::link::{CallError, Link};
use agent_team_config::{DECIDE_PERMISSION, LEADER_TOOLS, Role, TEAMMATE_TOOLS};
use agent_team_model::ToolSpec;
use agent_team_protocol::*;
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One tool: its name, what the model is told, and its argument schema.
#[derive(Debug, Clone, Copy)]
pub struct ToolDef {
    /// The name the model calls.
    pub name: &'static str,
    /// What it does, for the model and the docs.
    pub description: &'static str,
    /// The JSON schema of its arguments.
    pub schema: fn() -> Value,
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// The catalogue.
pub const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "spawn_teammate",
        description: "Start a new teammate from a role. Returns its name once it is connected.",
        schema: || {
            obj(
                json!({"role": {"type": "string", "description": "a role of the team (e.g. worker, explorer, reviewer)"}, "name": {"type": "string", "description": "its name; lower-case letters, digits and '-'"}}),
                &["role"],
            )
        },
    },
    ToolDef {
        name: "create_task",
        description: "Put a task on the shared board. Teammates claim it once its blockers are completed.",
        schema: || {
            obj(
                json!({
                    "title": {"type": "string"},
                    "description": {"type": "string", "description": "what exactly to do and how to tell it is done"},
                    "blocked_by": {"type": "array", "items": {"type": "integer"}, "description": "ids of tasks that must complete first"},
                    "assign": {"type": "string", "description": "give it to this teammate at once"}
                }),
                &["title"],
            )
        },
    },
    ToolDef {
        name: "assign_task",
        description: "Give a pending task to a teammate.",
        schema: || {
            obj(
                json!({"id": {"type": "integer"}, "to": {"type": "string"}}),
                &["id", "to"],
            )
        },
    },
    ToolDef {
        name: "send_message",
        description: "Send a message to one teammate (or the leader). It arrives when they are between steps.",
        schema: || {
            obj(
                json!({"to": {"type": "string"}, "text": {"type": "string"}, "summary": {"type": "string", "description": "one line"}}),
                &["to", "text"],
            )
        },
    },
    ToolDef {
        name: "broadcast",
        description: "Send a message to every other member of the team.",
        schema: || obj(json!({"text": {"type": "string"}}), &["text"]),
    },
    ToolDef {
        name: "list_teammates",
        description: "The team's members with their role, status and current task.",
        schema: || obj(json!({}), &[]),
    },
    ToolDef {
        name: "list_tasks",
        description: "The task board: id, status, owner, blockers, title.",
        schema: || {
            obj(
                json!({"status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed", "cancelled"]}}),
                &[],
            )
        },
    },
    ToolDef {
        name: "finish_team",
        description: "End the team's run with your final answer for the user. Refused while tasks are pending or in progress unless force is true.",
        schema: || {
            obj(
                json!({"answer": {"type": "string"}, "force": {"type": "boolean"}}),
                &["answer"],
            )
        },
    },
    ToolDef {
        name: "decide_permission",
        description: "Allow or deny a teammate's pending permission request (you are the approver). `always` makes the allowance a team rule for exactly this input, or, with `pattern`, for every input matching it (`*` matches any run of characters, e.g. `cargo test*`).",
        schema: || {
            obj(
                json!({"id": {"type": "integer"}, "allow": {"type": "boolean"}, "always": {"type": "boolean"}, "pattern": {"type": "string"}, "reason": {"type": "string"}}),
                &["id", "allow"],
            )
        },
    },
    ToolDef {
        name: "claim_task",
        description: "Take a pending task whose blockers are completed. You can hold one task at a time.",
        schema: || obj(json!({"id": {"type": "integer"}}), &["id"]),
    },
    ToolDef {
        name: "update_task_status",
        description: "Finish the task you hold: completed or failed, with a short result.",
        schema: || {
            obj(
                json!({"id": {"type": "integer"}, "status": {"type": "string", "enum": ["completed", "failed"]}, "result": {"type": "string"}}),
                &["id", "status"],
            )
        },
    },
    ToolDef {
        name: "release_task",
        description: "Give back a task you hold so someone else can take it.",
        schema: || obj(json!({"id": {"type": "integer"}}), &["id"]),
    },
    ToolDef {
        name: "read_file",
        description: "Read a text file of the workspace (up to 64 KiB from `offset`).",
        schema: || {
            obj(
                json!({"path": {"type": "string"}, "offset": {"type": "integer"}}),
                &["path"],
            )
        },
    },
    ToolDef {
        name: "write_file",
        description: "Create or replace a file of the workspace.",
        schema: || {
            obj(
                json!({"path": {"type": "string"}, "content": {"type": "string"}}),
                &["path", "content"],
            )
        },
    },
    ToolDef {
        name: "edit_file",
        description: "Replace exactly one occurrence of old_string with new_string in a file (all of them with replace_all).",
        schema: || {
            obj(
                json!({"path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}, "replace_all": {"type": "boolean"}}),
                &["path", "old_string", "new_string"],
            )
        },
    },
    ToolDef {
        name: "list_files",
        description: "List files under a directory of the workspace (recursive, .git skipped), optionally only names containing `contains`.",
        schema: || {
            obj(
                json!({"path": {"type": "string"}, "contains": {"type": "string"}}),
                &[],
            )
        },
    },
    ToolDef {
        name: "grep",
        description: "Search the workspace's files for a regular expression; returns file:line: text.",
        schema: || {
            obj(
                json!({"pattern": {"type": "string"}, "path": {"type": "string"}}),
                &["pattern"],
            )
        },
    },
    ToolDef {
        name: "bash",
        description: "Run a shell command in the workspace (sh -c). Output is capped at 16 KiB; default timeout 60 s.",
        schema: || {
            obj(
                json!({"command": {"type": "string"}, "timeout_secs": {"type": "integer"}}),
                &["command"],
            )
        },
    },
];

/// A tool by name.
pub fn def(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The tools an agent gets: its team tools (leader or teammate), its role's workspace tools, and
/// `decide_permission` for a leader that approves.
pub fn tool_names(role: &Role, is_leader: bool, leader_approves: bool) -> Vec<&'static str> {
    let team: &[&str] = if is_leader {
        LEADER_TOOLS
    } else {
        TEAMMATE_TOOLS
    };
    let mut names: Vec<&'static str> = TOOLS
        .iter()
        .map(|t| t.name)
        .filter(|n| team.contains(n) || role.tools.iter().any(|r| r == n))
        .collect();
    if is_leader && leader_approves && !names.contains(&DECIDE_PERMISSION) {
        names.push(DECIDE_PERMISSION);
    }
    names
}

/// The model's view of those tools.
pub fn specs(names: &[&str]) -> Vec<ToolSpec> {
    names
        .iter()
        .filter_map(|n| def(n))
        .map(|t| ToolSpec {
            name: t.name.to_string(),
            description: t.description.to_string(),
            parameters: (t.schema)(),
        })
        .collect()
}

/// The catalogue as markdown (for `agent-team tools` and the docs).
pub fn markdown() -> String {
    let mut s = String::from("| tool | leader | teammate | what it does |\n|---|---|---|---|\n");
    for t in TOOLS {
        let l = if LEADER_TOOLS.contains(&t.name) || t.name == DECIDE_PERMISSION {
            "yes"
        } else {
            "role"
        };
        let m = if TEAMMATE_TOOLS.contains(&t.name) {
            "yes"
        } else if LEADER_TOOLS.contains(&t.name) || t.name == DECIDE_PERMISSION {
            "no"
        } else {
            "role"
        };
        s.push_str(&format!(
            "| `{}` | {l} | {m} | {} |\n",
            t.name, t.description
        ));
    }
    s
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The text the model gets back.
    pub content: String,
    /// Whether it failed.
    pub is_error: bool,
    /// The answer, when `finish_team` succeeded.
    pub finished: Option<String>,
}

impl ToolOutcome {
    fn ok(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: false,
            finished: None,
        }
    }
    /// A failure the model is told about.
    pub fn err(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: true,
            finished: None,
        }
    }
}

/// What the policy looks at for a call: the command for `bash`; for the file tools (`grep`
/// too) the path as the file system sees it, relative to the workspace root (`./a`, `a//b`,
/// `x/../a`, an absolute path inside the workspace and a symlink inside it all give the same
/// `a`), so a rule on `.github/*` cannot be sidestepped by spelling; the arguments otherwise.
pub fn policy_input(root: &Path, name: &str, args: &Value) -> String {
    let field = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
    match name {
        "bash" => field("command"),
        "read_file" | "write_file" | "edit_file" | "list_files" | "grep" => {
            let path = field("path").unwrap_or_else(|| ".".into());
            Some(workspace_path(root, &path).unwrap_or(path))
        }
        _ => None,
    }
    .unwrap_or_else(|| args.to_string())
}

/// `path` relative to `root` with `.`/`..` and symlinks resolved, or `None` when it is outside
/// (the tool then refuses it anyway).
fn workspace_path(root: &Path, path: &str) -> Option<String> {
    let clean = confine(root, path).ok()?;
    // Resolve the part that exists (links included); what does not exist yet is appended.
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    let real = loop {
        if let Ok(r) = existing.canonicalize() {
            break r;
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    };
    let mut full = real;
    full.extend(rest.iter().rev());
    let rel = full.strip_prefix(root).ok()?;
    Some(if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    })
}

/// Where a tool runs.
pub struct ToolCtx {
    /// The agent's link to its daemon.
    pub link: Arc<Link>,
    /// The workspace root (canonical).
    pub root: PathBuf,
    /// Where `bash` commands are placed, so stopping the agent stops them too.
    pub groups: crate::CommandGroups,
}

/// Runs one tool call with already-parsed arguments.
pub async fn run(ctx: &ToolCtx, name: &str, args: &Value) -> ToolOutcome {
    match run_inner(ctx, name, args).await {
        Ok(o) => o,
        Err(e) => ToolOutcome::err(e),
    }
}

fn arg_str<'a>(args: &'a Value, k: &str) -> Result<&'a str, String> {
    args.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string argument `{k}`"))
}

fn arg_u64(args: &Value, k: &str) -> Result<u64, String> {
    args.get(k)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("missing integer argument `{k}`"))
}

async fn daemon(ctx: &ToolCtx, req: Request) -> Result<Reply, String> {
    match ctx.link.call_retry(req).await {
        Ok(r) => Ok(r),
        Err(CallError::Server(e)) => {
            let details = if e.details.is_null() {
                String::new()
            } else {
                format!(" {}", e.details)
            };
            Err(format!("{}: {}{details}", e.code, e.message))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

async fn run_inner(ctx: &ToolCtx, name: &str, args: &Value) -> Result<ToolOutcome, String> {
    Ok(match name {
        "spawn_teammate" => {
            let req = Request::Spawn {
                role: arg_str(args, "role")?.to_string(),
                name: args.get("name").and_then(Value::as_str).map(str::to_string),
            };
            match daemon(ctx, req).await? {
                Reply::Agent { agent } => ToolOutcome::ok(format!(
                    "{} ({}) is {}",
                    agent.name, agent.role, agent.status
                )),
                other => ToolOutcome::ok(to_json(&other)),
            }
        }
        "create_task" => {
            let blocked_by = args
                .get("blocked_by")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let req = Request::TaskAdd {
                title: arg_str(args, "title")?.to_string(),
                description: args
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                run: None,
                blocked_by,
                assign: args
                    .get("assign")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                key: None,
            };
            match daemon(ctx, req).await? {
                Reply::Task { task } => ToolOutcome::ok(format!(
                    "created task {} ({}), {}",
                    task.id, task.title, task.status
                )),
                other => ToolOutcome::ok(to_json(&other)),
            }
        }
        "assign_task" => task_reply(
            daemon(
                ctx,
                Request::TaskAssign {
                    id: arg_u64(args, "id")?,
                    to: arg_str(args, "to")?.to_string(),
                },
            )
            .await?,
        ),
        "claim_task" => task_reply(
            daemon(
                ctx,
                Request::TaskClaim {
                    id: arg_u64(args, "id")?,
                },
            )
            .await?,
        ),
        "release_task" => task_reply(
            daemon(
                ctx,
                Request::TaskRelease {
                    id: arg_u64(args, "id")?,
                },
            )
            .await?,
        ),
        "update_task_status" => {
            let status = match arg_str(args, "status")? {
                "completed" => TaskStatus::Completed,
                "failed" => TaskStatus::Failed,
                other => return Err(format!("status must be completed or failed, not {other:?}")),
            };
            let result = args
                .get("result")
                .and_then(Value::as_str)
                .map(str::to_string);
            task_reply(
                daemon(
                    ctx,
                    Request::TaskFinish {
                        id: arg_u64(args, "id")?,
                        status,
                        result,
                    },
                )
                .await?,
            )
        }
        "send_message" | "broadcast" => {
            let to = if name == "broadcast" {
                "*".to_string()
            } else {
                arg_str(args, "to")?.to_string()
            };
            let req = Request::Send {
                to,
                body: arg_str(args, "text")?.to_string(),
                kind: MessageKind::Text,
                summary: args
                    .get("summary")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                dedup: None,
            };
            match daemon(ctx, req).await? {
                Reply::Sent { recipients, .. } => {
                    ToolOutcome::ok(format!("sent to {}", recipients.join(", ")))
                }
                other => ToolOutcome::ok(to_json(&other)),
            }
        }
        "list_teammates" => match daemon(ctx, Request::Agents).await? {
            Reply::Agents { agents } => {
                let rows: Vec<Value> = agents
                    .iter()
                    .map(|a| json!({"name": a.name, "role": a.role, "status": a.status, "current_task": a.current_task}))
                    .collect();
                ToolOutcome::ok(to_json(&rows))
            }
            other => ToolOutcome::ok(to_json(&other)),
        },
        "list_tasks" => {
            let status = match args.get("status").and_then(Value::as_str) {
                Some(s) => {
                    Some(TaskStatus::parse(s).ok_or_else(|| format!("unknown status {s:?}"))?)
                }
                None => None,
            };
            match daemon(
                ctx,
                Request::TaskList {
                    status,
                    after: None,
                },
            )
            .await?
            {
                Reply::Tasks { tasks } => {
                    let rows: Vec<Value> = tasks
                        .iter()
                        .map(|t| json!({"id": t.id, "title": t.title, "status": t.status, "owner": t.owner, "blocked_by": t.blocked_by, "description": t.description, "result": t.result}))
                        .collect();
                    ToolOutcome::ok(to_json(&rows))
                }
                other => ToolOutcome::ok(to_json(&other)),
            }
        }
        "finish_team" => {
            let answer = arg_str(args, "answer")?.to_string();
            let force = args.get("force").and_then(Value::as_bool).unwrap_or(false);
            daemon(
                ctx,
                Request::Finish {
                    answer: answer.clone(),
                    force,
                    success: true,
                },
            )
            .await?;
            ToolOutcome {
                content: "the team is finished".into(),
                is_error: false,
                finished: Some(answer),
            }
        }
        "decide_permission" => {
            let req = Request::PermDecide {
                id: arg_u64(args, "id")?,
                allow: args
                    .get("allow")
                    .and_then(Value::as_bool)
                    .ok_or("missing boolean argument `allow`")?,
                always: args.get("always").and_then(Value::as_bool).unwrap_or(false),
                pattern: args
                    .get("pattern")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                reason: args
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            match daemon(ctx, req).await? {
                Reply::Perm { request } => ToolOutcome::ok(
                    format!("request {} is {:?}", request.id, request.status).to_lowercase(),
                ),
                other => ToolOutcome::ok(to_json(&other)),
            }
        }
        "read_file" => {
            let path = confine(&ctx.root, arg_str(args, "path")?)?;
            let offset = args.get("offset").and_then(Value::as_u64).unwrap_or(0);
            let cap = 64 * 1024;
            // Only the window asked for is read: a huge file costs no more than a small one.
            let (bytes, len) = read_window(&path, offset, cap)
                .await
                .map_err(|e| format!("cannot read {}: {e}", display(&ctx.root, &path)))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let end = offset.min(len) + bytes.len() as u64;
            if end < len {
                ToolOutcome::ok(format!(
                    "{text}\n[... {} more bytes; read on with offset {end}]",
                    len - end
                ))
            } else {
                ToolOutcome::ok(text)
            }
        }
        "write_file" => {
            let path = confine(&ctx.root, arg_str(args, "path")?)?;
            let content = arg_str(args, "content")?;
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", display(&ctx.root, dir)))?;
            }
            write_no_follow(&path, content.as_bytes())
                .await
                .map_err(|e| format!("cannot write {}: {e}", display(&ctx.root, &path)))?;
            ToolOutcome::ok(format!(
                "wrote {} bytes to {}",
                content.len(),
                display(&ctx.root, &path)
            ))
        }
        "edit_file" => {
            let path = confine(&ctx.root, arg_str(args, "path")?)?;
            let (old, new) = (arg_str(args, "old_string")?, arg_str(args, "new_string")?);
            let all = args
                .get("replace_all")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", display(&ctx.root, &path)))?;
            let n = text.matches(old).count();
            if old.is_empty() || n == 0 {
                return Err(format!(
                    "old_string was not found in {}",
                    display(&ctx.root, &path)
                ));
            }
            if n > 1 && !all {
                return Err(format!(
                    "old_string occurs {n} times in {}; give more context or set replace_all",
                    display(&ctx.root, &path)
                ));
            }
            let out = if all {
                text.replace(old, new)
            } else {
                text.replacen(old, new, 1)
            };
            write_no_follow(&path, out.as_bytes())
                .await
                .map_err(|e| format!("cannot write {}: {e}", display(&ctx.root, &path)))?;
            ToolOutcome::ok(format!(
                "replaced {} occurrence(s) in {}",
                if all { n } else { 1 },
                display(&ctx.root, &path)
            ))
        }
        "list_files" => {
            let dir = confine(
                &ctx.root,
                args.get("path").and_then(Value::as_str).unwrap_or("."),
            )?;
            let contains = args
                .get("contains")
                .and_then(Value::as_str)
                .map(str::to_string);
            let root = ctx.root.clone();
            let list = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for e in walkdir::WalkDir::new(&dir)
                    .into_iter()
                    .filter_entry(|e| e.file_name() != ".git")
                    .flatten()
                {
                    if e.file_type().is_file() {
                        let rel = display(&root, e.path());
                        if contains.as_ref().is_none_or(|c| rel.contains(c.as_str())) {
                            out.push(rel);
                        }
                    }
                    if out.len() >= 500 {
                        out.push("[... more files not shown]".into());
                        break;
                    }
                }
                out
            })
            .await
            .map_err(|e| e.to_string())?;
            ToolOutcome::ok(if list.is_empty() {
                "no files".to_string()
            } else {
                list.join("\n")
            })
        }
        "grep" => {
            let re = regex::Regex::new(arg_str(args, "pattern")?)
                .map_err(|e| format!("invalid regular expression: {e}"))?;
            let dir = confine(
                &ctx.root,
                args.get("path").and_then(Value::as_str).unwrap_or("."),
            )?;
            let root = ctx.root.clone();
            let hits = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for e in walkdir::WalkDir::new(&dir)
                    .into_iter()
                    .filter_entry(|e| e.file_name() != ".git")
                    .flatten()
                {
                    // Huge files (logs, data) are skipped rather than read into memory whole.
                    if !e.file_type().is_file() || e.metadata().map_or(true, |m| m.len() > 8 << 20)
                    {
                        continue;
                    }
                    let Ok(text) = std::fs::read_to_string(e.path()) else {
                        continue;
                    };
                    for (i, line) in text.lines().enumerate() {
                        if re.is_match(line) {
                            out.push(format!(
                                "{}:{}: {}",
                                display(&root, e.path()),
                                i + 1,
                                line.chars().take(300).collect::<String>()
                            ));
                            if out.len() >= 200 {
                                out.push("[... more matches not shown]".into());
                                return out;
                            }
                        }
                    }
                }
                out
            })
            .await
            .map_err(|e| e.to_string())?;
            ToolOutcome::ok(if hits.is_empty() {
                "no matches".to_string()
            } else {
                hits.join("\n")
            })
        }
        "bash" => {
            let cmd = arg_str(args, "command")?;
            let secs = args
                .get("timeout_secs")
                .and_then(Value::as_u64)
                .unwrap_or(60)
                .clamp(1, 600);
            bash(&ctx.root, cmd, Duration::from_secs(secs), &ctx.groups).await
        }
        other => return Err(format!("unknown tool {other:?}")),
    })
}

fn task_reply(r: Reply) -> ToolOutcome {
    match r {
        Reply::Task { task } => ToolOutcome::ok(format!(
            "task {} ({}) is {}{}",
            task.id,
            task.title,
            task.status,
            task.owner
                .map(|o| format!(", owner {o}"))
                .unwrap_or_default()
        )),
        other => ToolOutcome::ok(to_json(&other)),
    }
}

/// Runs a command with a timeout; output (stdout then stderr) capped to its last 16 KiB.
/// Runs a command with a timeout; output (stdout then stderr) capped to its last 16 KiB.
///
/// An agent that is a process of its own keeps the command in its process group, so stopping
/// the agent (the daemon kills that group) stops the command and anything it left running; on a
/// timeout the command's process tree is killed. An agent inside the daemon gives the command a
/// group of its own, recorded in `groups` for the daemon to kill.
async fn bash(
    root: &Path,
    cmd: &str,
    timeout: Duration,
    groups: &crate::CommandGroups,
) -> ToolOutcome {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(root)
        // The agent's credential is not the command's to use.
        .env_remove(agent_team_pane::env::SECRET)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if groups.own_group.is_some() {
        c.process_group(0);
    }
    let child = match c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(ch) => ch,
        Err(e) => return ToolOutcome::err(format!("cannot run sh: {e}")),
    };
    let own = groups.own_group.as_ref();
    if let (Some(slot), Some(pid)) = (own, child.id())
        && let Ok(mut s) = slot.lock()
    {
        *s = Some(pid);
    }
    let outcome = run_bash(child, timeout, own.is_some()).await;
    if let Some(slot) = own
        && let Ok(mut s) = slot.lock()
    {
        *s = None;
    }
    outcome
}

/// How much of a command's output the model sees: the last 16 KiB.
const BASH_OUTPUT_CAP: usize = 16 * 1024;

async fn run_bash(
    mut child: tokio::process::Child,
    timeout: Duration,
    own_group: bool,
) -> ToolOutcome {
    let pid = child.id();
    let (so, se) = (child.stdout.take(), child.stderr.take());
    // The pipes are read as the command writes, keeping only the last bytes: a command that
    // prints gigabytes costs no memory.
    let work = async {
        tokio::join!(
            last_bytes(so, BASH_OUTPUT_CAP),
            last_bytes(se, BASH_OUTPUT_CAP),
            child.wait()
        )
    };
    let ((out, out_total), (err, err_total), status) =
        match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                // The command and everything it started go together (the child is still ours,
                // so its descendants can still be found).
                if let Some(pid) = pid {
                    if own_group {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    } else {
                        kill_tree(pid);
                    }
                }
                return ToolOutcome::err(format!(
                    "the command did not finish within {} s and was killed",
                    timeout.as_secs()
                ));
            }
        };
    let status = match status {
        Ok(s) => s,
        Err(e) => return ToolOutcome::err(format!("the command failed to run: {e}")),
    };
    let mut bytes = out;
    bytes.extend_from_slice(&err);
    let mut dropped = out_total + err_total - bytes.len();
    if bytes.len() > BASH_OUTPUT_CAP {
        dropped += bytes.len() - BASH_OUTPUT_CAP;
        bytes.drain(..bytes.len() - BASH_OUTPUT_CAP);
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // A cut inside a character leaves a replacement character at the start; drop it.
    if dropped > 0 {
        text = format!(
            "[... {dropped} bytes cut]\n{}",
            text.trim_start_matches('\u{fffd}')
        );
    }
    let code = status.code().unwrap_or(-1);
    let body = format!("exit {code}\n{text}");
    if status.success() {
        ToolOutcome::ok(body)
    } else {
        ToolOutcome::err(body)
    }
}

/// Reads `r` to its end, keeping only its last `cap` bytes; returns them and the total read.
async fn last_bytes(r: Option<impl tokio::io::AsyncRead + Unpin>, cap: usize) -> (Vec<u8>, usize) {
    use tokio::io::AsyncReadExt;
    let Some(mut r) = r else {
        return (Vec::new(), 0);
    };
    let (mut keep, mut total) = (Vec::new(), 0usize);
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 2 * cap {
                    keep.drain(..keep.len() - cap);
                }
            }
        }
    }
    if keep.len() > cap {
        keep.drain(..keep.len() - cap);
    }
    (keep, total)
}

/// `path` (relative to `root`, or absolute inside it) resolved to a path inside `root`;
/// anything that escapes, lexically or through a symlink, is refused.
pub fn confine(root: &Path, path: &str) -> Result<PathBuf, String> {
    let refuse = || {
        format!(
            "{path:?} is outside the workspace; use a path inside {}",
            root.display()
        )
    };
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !clean.pop() {
                    return Err(refuse());
                }
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let Ok(rel) = clean.strip_prefix(root) else {
        return Err(refuse());
    };
    // Every symlink on the way must resolve inside the root. A dangling one is refused too:
    // writing through it would create its target wherever it points.
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            // Nothing below a missing component exists, so nothing below can be a link.
            Err(_) => break,
            Ok(m) if m.file_type().is_symlink() => match cur.canonicalize() {
                Ok(real) if real.starts_with(root) => {}
                _ => return Err(refuse()),
            },
            Ok(_) => {}
        }
    }
    Ok(clean)
}

/// SIGKILLs `pid` and every process descended from it.
fn kill_tree(pid: u32) {
    for p in std::iter::once(pid).chain(agent_team_pane::procs::descendants(pid)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Up to `cap` bytes of `path` from `offset`, and the file's length.
async fn read_window(path: &Path, offset: u64, cap: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    f.seek(std::io::SeekFrom::Start(offset.min(len))).await?;
    let mut buf = Vec::with_capacity(cap.min(len as usize));
    f.take(cap as u64).read_to_end(&mut buf).await?;
    Ok((buf, len))
}

/// Writes `bytes` to `path`, refusing to follow a symlink in its last component, so a link
/// swapped in after [`confine`] looked cannot redirect the write.
async fn write_no_follow(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .await?;
    f.write_all(bytes).await?;
    f.flush().await
}

fn display(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(confine(&root, "a/b.txt").unwrap(), root.join("a/b.txt"));
        assert_eq!(confine(&root, "a/../c").unwrap(), root.join("c"));
        assert!(confine(&root, "../x").is_err());
        assert!(confine(&root, "a/../../x").is_err());
        assert!(confine(&root, "/etc/passwd").is_err());
        assert!(confine(&root, &root.join("ok").display().to_string()).is_ok());
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(
            confine(&root, "link/passwd").is_err(),
            "a symlink out of the workspace is refused"
        );
        // A dangling link is refused: writing through it would create its target outside.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("authorized_keys");
        std::os::unix::fs::symlink(&target, root.join("ak")).unwrap();
        assert!(confine(&root, "ak").is_err());
        // A link that stays inside is fine, as is a path below it.
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        assert_eq!(confine(&root, "alias/f").unwrap(), root.join("alias/f"));
    }

    #[test]
    fn file_rules_see_the_path_however_it_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".github/workflows")).unwrap();
        std::os::unix::fs::symlink(root.join(".github/workflows"), root.join("ci")).unwrap();
        let abs = root.join(".github/workflows/ci.yml").display().to_string();
        for spelling in [
            ".github/workflows/ci.yml",
            "./.github/workflows/ci.yml",
            ".github//workflows/ci.yml",
            "src/../.github/workflows/ci.yml",
            abs.as_str(),
            "ci/ci.yml",
        ] {
            let args = serde_json::json!({"path": spelling, "content": "x"});
            assert_eq!(
                policy_input(&root, "write_file", &args),
                ".github/workflows/ci.yml",
                "{spelling}"
            );
        }
        assert_eq!(
            policy_input(&root, "grep", &serde_json::json!({"pattern": "x"})),
            "."
        );
        assert_eq!(
            policy_input(&root, "bash", &serde_json::json!({"command": "ls"})),
            "ls"
        );
    }

    #[tokio::test]
    async fn bash_commands_go_where_stopping_the_agent_reaches_them() {
        let dir = tempfile::tempdir().unwrap();
        // A process-backed agent: the command is in the agent's own group, which the daemon
        // kills when it stops the agent.
        let groups = crate::CommandGroups::default();
        let o = bash(
            dir.path(),
            "ps -o pgid= -p $$",
            Duration::from_secs(10),
            &groups,
        )
        .await;
        let ours = nix::unistd::getpgrp().as_raw().to_string();
        assert_eq!(
            o.content.lines().nth(1).map(str::trim),
            Some(ours.as_str()),
            "{o:?}"
        );
        // A timeout kills what the command started in the background too.
        let pidfile = dir.path().join("bg.pid");
        let o = bash(
            dir.path(),
            &format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display()),
            Duration::from_millis(500),
            &groups,
        )
        .await;
        assert!(o.content.contains("did not finish"), "{o:?}");
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the background sleep survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // An agent inside the daemon: the command has a group of its own, recorded while it runs.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let groups = crate::CommandGroups {
            own_group: Some(slot.clone()),
            ..Default::default()
        };
        let o = bash(
            dir.path(),
            "ps -o pgid= -p $$; echo $$",
            Duration::from_secs(10),
            &groups,
        )
        .await;
        let lines: Vec<&str> = o.content.lines().map(str::trim).collect();
        assert_eq!(lines[1], lines[2], "its own group: {o:?}");
        assert_eq!(*slot.lock().unwrap(), None, "forgotten once it ended");
    }

    #[tokio::test]
    async fn reads_are_windowed_and_writes_do_not_follow_a_last_link() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_window(&f, 0, 4).await.unwrap(), (b"0123".to_vec(), 10));
        assert_eq!(read_window(&f, 8, 4).await.unwrap(), (b"89".to_vec(), 10));
        assert_eq!(read_window(&f, 99, 4).await.unwrap(), (vec![], 10));
        let outside = dir.path().join("outside");
        std::os::unix::fs::symlink(&outside, dir.path().join("link")).unwrap();
        assert!(
            write_no_follow(&dir.path().join("link"), b"x")
                .await
                .is_err()
        );
        assert!(!outside.exists(), "nothing was written through the link");
        write_no_follow(&f, b"new").await.unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }

    #[test]
    fn every_configured_tool_has_a_definition_and_an_object_schema() {
        for n in agent_team_config::LEADER_TOOLS
            .iter()
            .chain(agent_team_config::TEAMMATE_TOOLS)
            .chain(agent_team_config::WORKSPACE_TOOLS)
        {
            let d = def(n).unwrap_or_else(|| panic!("no definition for {n}"));
            assert_eq!((d.schema)()["type"], "object");
        }
        assert!(markdown().contains("`bash`"));
    }

    #[test]
    fn role_limits_workspace_tools_not_team_tools() {
        let cfg = agent_team_config::builtin_roles();
        let explorer = &cfg["explorer"];
        let names = tool_names(explorer, false, false);
        assert!(names.contains(&"claim_task") && names.contains(&"read_file"));
        assert!(!names.contains(&"bash") && !names.contains(&"write_file"));
        let leader = tool_names(&cfg["leader"], true, true);
        assert!(leader.contains(&"spawn_teammate") && leader.contains(&"decide_permission"));
        assert!(!leader.contains(&"claim_task"));
    }

    /// docs/TOOLS.md is generated from the definitions; `UPDATE_DOCS=1 cargo test` rewrites it.
    #[test]
    fn tools_doc_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/TOOLS.md");
        let want = format!(
            "# Agent tools\n\nGenerated from `crates/worker/src/tools.rs`: the same definitions give the models their schemas.\nRegenerate with `UPDATE_DOCS=1 cargo test -p agent-team-worker tools_doc`. \"role\" means the role's `tools` list decides.\n\n{}",
            markdown()
        );
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            want,
            "docs/TOOLS.md is stale: run UPDATE_DOCS=1 cargo test -p agent-team-worker tools_doc"
        );
    }

    #[tokio::test]
    async fn bash_times_out_and_caps_output() {
        let dir = tempfile::tempdir().unwrap();
        let groups = crate::CommandGroups::default();
        let o = bash(dir.path(), "sleep 5", Duration::from_millis(200), &groups).await;
        assert!(o.is_error && o.content.contains("did not finish"), "{o:?}");
        let o = bash(
            dir.path(),
            "head -c 40000 /dev/zero | tr '\\0' x; exit 3",
            Duration::from_secs(10),
            &groups,
        )
        .await;
        assert!(
            o.is_error && o.content.starts_with("exit 3") && o.content.len() < 17 * 1024,
            "{}",
            o.content.len()
        );
        assert!(o.content.contains("[... 23616 bytes cut]\nxxx"));
        assert!(o.content.ends_with(&"x".repeat(16 * 1024)));
    }
}
