//! The catalogue's own checks: the schemas' shape, unique names, the lists, parsing errors, and
//! docs/TOOLS.md being current.

use super::*;
use serde_json::json;

/// Every schema keyword used anywhere inside schema `v` (property names are not keywords).
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                match (k.as_str(), x) {
                    ("properties", Value::Object(props)) => {
                        props.values().for_each(|p| keys(p, out))
                    }
                    _ => keys(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn every_schema_is_a_flat_object_schema_the_model_apis_take() {
    for t in CATALOGUE {
        let s = t.schema();
        let m = s.as_object().unwrap();
        assert_eq!(s["type"], "object", "{}", t.name);
        assert_eq!(s["additionalProperties"], false, "{}", t.name);
        let props = s["properties"].as_object().unwrap();
        let required = s["required"].as_array().unwrap();
        for r in required {
            assert!(
                props.contains_key(r.as_str().unwrap()),
                "{}: required {r} is not a property",
                t.name
            );
        }
        let mut top: Vec<&str> = m.keys().map(String::as_str).collect();
        top.sort_unstable();
        assert_eq!(
            top,
            ["additionalProperties", "properties", "required", "type"],
            "{}",
            t.name
        );
        let mut all = Vec::new();
        keys(&s, &mut all);
        for banned in [
            "$ref",
            "$defs",
            "$schema",
            "definitions",
            "title",
            "format",
            "anyOf",
            "oneOf",
        ] {
            assert!(
                !all.iter().any(|k| k == banned),
                "{}: {banned} left in {s}",
                t.name
            );
        }
        for (name, p) in props {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{}.{name} has no description",
                t.name
            );
            // `memory_set.value` takes any JSON value: its schema names no type (every model
            // API takes that); every other field has exactly one.
            if (t.name, name.as_str()) == ("memory_set", "value") {
                assert!(p.get("type").is_none(), "{p}");
                continue;
            }
            assert!(
                p["type"].is_string(),
                "{}.{name} has no single type: {p}",
                t.name
            );
        }
        assert!(!t.description.is_empty(), "{}", t.name);
    }
}

#[test]
fn integer_fields_stay_integers() {
    for (tool, field) in [
        ("assign_task", "id"),
        ("claim_task", "id"),
        ("release_task", "id"),
        ("update_task_status", "id"),
        ("decide_permission", "id"),
        ("read_file", "offset"),
        ("bash", "timeout_secs"),
        ("web_search", "count"),
    ] {
        let s = lookup(tool).unwrap().schema();
        assert_eq!(s["properties"][field]["type"], "integer", "{tool}.{field}");
    }
    let s = lookup("create_task").unwrap().schema();
    assert_eq!(s["properties"]["blocked_by"]["type"], "array");
    assert_eq!(s["properties"]["blocked_by"]["items"]["type"], "integer");
}

#[test]
fn names_are_unique_and_known() {
    for (i, t) in CATALOGUE.iter().enumerate() {
        assert!(
            CATALOGUE[i + 1..].iter().all(|u| u.name != t.name),
            "{} twice",
            t.name
        );
        assert!(is_known_tool(t.name));
        assert_eq!(lookup(t.name).map(|d| d.name), Some(t.name));
    }
    assert_eq!(CATALOGUE.len(), 36);
    assert!(!is_known_tool("teleport"));
    assert!(!is_known_tool("Bash"));
}

/// The lists as they were written by hand before the catalogue existed, with the memory tools
/// since (everyone reads; the leader writes, teammates when their role lists `memory_set`).
#[test]
fn the_audience_lists_are_the_ones_agents_always_had() {
    assert_eq!(
        WORKSPACE_TOOLS,
        [
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "grep",
            "glob",
            "web_fetch",
            "web_search",
            "bash"
        ]
    );
    assert_eq!(
        READ_ONLY_TOOLS,
        [
            "read_file",
            "list_files",
            "grep",
            "glob",
            "web_fetch",
            "web_search"
        ]
    );
    assert_eq!(
        LEADER_TOOLS,
        [
            "spawn_teammate",
            "spawn_team",
            "wait_for",
            "close_teammate",
            "dissolve_team",
            "set_config",
            "resume_teammate",
            "diff_teammate",
            "finish_teammate_work",
            "create_task",
            "assign_task",
            "send_message",
            "broadcast",
            "read_inbox",
            "list_teammates",
            "list_tasks",
            "finish_team",
            "decide_plan",
            "memory_set",
            "memory_get",
            "memory_list",
            "todo_write",
        ]
    );
    assert_eq!(
        TEAMMATE_TOOLS,
        [
            "send_message",
            "broadcast",
            "read_inbox",
            "list_teammates",
            "list_tasks",
            "claim_task",
            "update_task_status",
            "release_task",
            "memory_get",
            "memory_list",
            "todo_write",
        ]
    );
    assert_eq!(DECIDE_PERMISSION, "decide_permission");
    // Every tool is in some list: none is unreachable.
    for t in CATALOGUE {
        assert!(
            WORKSPACE_TOOLS.contains(&t.name)
                || LEADER_TOOLS.contains(&t.name)
                || TEAMMATE_TOOLS.contains(&t.name)
                || t.name == DECIDE_PERMISSION
                || t.name == SUBMIT_PLAN,
            "{}",
            t.name
        );
    }
}

/// A value of the schema's type, for calls with only the required fields.
fn sample(p: &Value) -> Value {
    if let Some(w) = p["enum"].as_array() {
        return w[0].clone();
    }
    let Some(ty) = p["type"].as_str() else {
        // Any JSON value.
        return json!({"any": ["json"]});
    };
    match ty {
        "string" => json!("x"),
        "integer" => json!(1),
        "boolean" => json!(true),
        "array" => json!([sample(&p["items"])]),
        "object" => {
            let mut m = serde_json::Map::new();
            for r in p["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                m.insert(r.to_string(), sample(&p["properties"][r]));
            }
            Value::Object(m)
        }
        other => panic!("no sample for {other}"),
    }
}

#[test]
fn every_tool_parses_its_required_fields_into_its_call() {
    for t in CATALOGUE {
        let s = t.schema();
        let mut args = serde_json::Map::new();
        for r in s["required"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            args.insert(r.into(), sample(&s["properties"][r]));
        }
        let call = ToolCall::parse(t.name, &Value::Object(args.clone()))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert_eq!(call.name(), t.name);
        // And with every optional field too, some of them as null ("not given").
        for (i, (k, p)) in s["properties"].as_object().unwrap().iter().enumerate() {
            if !args.contains_key(k) {
                let v = if i % 2 == 0 { sample(p) } else { Value::Null };
                args.insert(k.clone(), v);
            }
        }
        let call = ToolCall::parse(t.name, &Value::Object(args))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert_eq!(call.name(), t.name);
    }
}

#[test]
fn typed_parse_gives_the_arguments() {
    let b: Bash = parse("bash", &json!({"command": "ls", "timeout_secs": 5})).unwrap();
    assert_eq!(
        b,
        Bash {
            command: "ls".into(),
            timeout_secs: Some(5)
        }
    );
    let c: CreateTask = parse(
        "create_task",
        &json!({"title": "t", "blocked_by": [1, 2], "assign": null}),
    )
    .unwrap();
    assert_eq!(c.blocked_by, Some(vec![1, 2]));
    assert_eq!(c.assign, None);
    let u = ToolCall::parse(
        "update_task_status",
        &json!({"id": 3, "status": "failed", "result": "no"}),
    )
    .unwrap();
    assert_eq!(
        u,
        ToolCall::UpdateTaskStatus(UpdateTaskStatus {
            id: 3,
            status: StatusUpdate::Failed,
            result: Some("no".into())
        })
    );
    let l: ListTasks = parse("list_tasks", &json!({"status": "in_progress"})).unwrap();
    assert_eq!(l.status, Some(BoardStatus::InProgress));
    let _: ListTeammates = parse("list_teammates", &json!({})).unwrap();
    let m: MemorySet = parse(
        "memory_set",
        &json!({"key": "outputs/b1", "value": {"files": ["a.rs"], "ok": true}}),
    )
    .unwrap();
    assert_eq!(
        (m.key.as_str(), m.value),
        ("outputs/b1", json!({"files": ["a.rs"], "ok": true}))
    );
    for value in [json!("text"), json!(3.5), json!([1, 2]), json!(false)] {
        let m: MemorySet = parse("memory_set", &json!({"key": "k", "value": value})).unwrap();
        assert_eq!(m.value, value);
    }
    let e = ToolCall::parse("memory_set", &json!({"key": "k"})).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("value"));
    assert!(
        e.to_string()
            .contains("missing required field `value` (any JSON value)"),
        "{e}"
    );
    let l: MemoryList = parse("memory_list", &json!({"prefix": null})).unwrap();
    assert_eq!(l.prefix, None);
}

/// The error's field and the text the model reads.
fn error(tool: &str, args: Value) -> (Option<String>, String) {
    let e = ToolCall::parse(tool, &args).unwrap_err();
    assert_eq!(e.tool, tool);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("invalid arguments for {tool}: ")),
        "{text}"
    );
    (e.field, text)
}

#[test]
fn bad_arguments_are_refused_naming_the_tool_and_the_field() {
    let (field, text) = error("bash", json!({"command": "ls", "cmd": "ls"}));
    assert_eq!(field.as_deref(), Some("cmd"));
    assert!(
        text.contains("unknown field `cmd`; the fields are `command`, `timeout_secs`"),
        "{text}"
    );

    let (field, text) = error("list_teammates", json!({"all": true}));
    assert_eq!(field.as_deref(), Some("all"));
    assert!(text.contains("this tool takes no arguments"), "{text}");

    let (field, text) = error("claim_task", json!({"id": "3"}));
    assert_eq!(field.as_deref(), Some("id"));
    assert!(
        text.contains("field `id` must be an integer, not string \"3\""),
        "{text}"
    );

    let (field, text) = error("claim_task", json!({"id": 1.5}));
    assert_eq!(field.as_deref(), Some("id"));
    assert!(
        text.contains("must be an integer, not number 1.5"),
        "{text}"
    );

    let (field, text) = error("claim_task", json!({"id": -1}));
    assert_eq!(field.as_deref(), Some("id"));
    assert!(text.contains("field `id` must be at least 0"), "{text}");

    let (field, text) = error("write_file", json!({"path": "a"}));
    assert_eq!(field.as_deref(), Some("content"));
    assert!(
        text.contains("missing required field `content` (a string)"),
        "{text}"
    );

    let (field, text) = error("write_file", json!({"path": "a", "content": null}));
    assert_eq!(field.as_deref(), Some("content"));
    assert!(text.contains("missing required field `content`"), "{text}");

    let (field, text) = error("finish_team", json!({"answer": "a", "force": "yes"}));
    assert_eq!(field.as_deref(), Some("force"));
    assert!(
        text.contains("field `force` must be a boolean (true or false), not string \"yes\""),
        "{text}"
    );

    let (field, text) = error("update_task_status", json!({"id": 1, "status": "done"}));
    assert_eq!(field.as_deref(), Some("status"));
    assert!(
        text.contains("field `status` must be one of `in_progress`, `completed`, `failed`, not string \"done\""),
        "{text}"
    );

    let (field, text) = error("create_task", json!({"title": "t", "blocked_by": [1, "2"]}));
    assert_eq!(field.as_deref(), Some("blocked_by[1]"));
    assert!(
        text.contains("field `blocked_by[1]` must be an integer, not string \"2\""),
        "{text}"
    );

    let (field, text) = error("create_task", json!({"title": "t", "blocked_by": 2}));
    assert_eq!(field.as_deref(), Some("blocked_by"));
    assert!(
        text.contains("must be an array of integers, not number 2"),
        "{text}"
    );

    let (field, text) = error("read_file", json!(["a"]));
    assert_eq!(field, None);
    assert!(text.contains("must be a JSON object, not array"), "{text}");

    let e = ToolCall::parse("teleport", &json!({})).unwrap_err();
    assert!(e.to_string().contains("no tool named \"teleport\""), "{e}");
}

#[test]
fn without_a_catalogue_schema_the_type_still_names_the_field() {
    // The whole u64 range is accepted.
    let c = parse::<ClaimTask>("claim_task", &json!({"id": u64::MAX})).unwrap();
    assert_eq!(c.id, u64::MAX);
    // Parsing as a type whose tool is not in the catalogue falls back to serde's message, which
    // still names the field.
    let e = parse::<ClaimTask>("no_such_tool", &json!({"id": 1, "x": 2})).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("x"));
    assert!(e.to_string().contains("unknown field `x`"), "{e}");
    let e = parse::<ClaimTask>("no_such_tool", &json!({})).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("id"));
}

#[test]
fn markdown_says_who_gets_each_tool() {
    let md = markdown();
    assert_eq!(md.lines().count(), 2 + CATALOGUE.len());
    assert!(md.contains("| `spawn_teammate` | yes | no |"));
    assert!(md.contains("| `send_message` | yes | yes |"));
    assert!(md.contains("| `claim_task` | role | yes |"));
    assert!(md.contains("| `decide_permission` | yes | no |"));
    assert!(md.contains("| `bash` | role | role |"));
    assert!(md.contains("| `memory_set` | yes | role |"));
    assert!(md.contains("| `memory_get` | yes | yes |"));
}

/// docs/TOOLS.md is generated from the catalogue; `UPDATE_DOCS=1 cargo test -p
/// agent-team-tools tools_doc` rewrites it.
#[test]
fn tools_doc_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/TOOLS.md");
    let want = tools_doc();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/TOOLS.md differs from the tool catalogue; regenerate it with \
         `UPDATE_DOCS=1 cargo test -p agent-team-tools tools_doc`"
    );
}

#[test]
fn memory_set_takes_any_json_value() {
    let s = lookup("memory_set").unwrap().schema();
    assert_eq!(s["required"], json!(["key", "value"]));
    let v = s["properties"]["value"].as_object().unwrap();
    assert_eq!(
        v.keys().map(String::as_str).collect::<Vec<_>>(),
        ["description"],
        "{s}"
    );
}

/// `todo_write` takes the whole list; a status outside the three, or an item without content,
/// is refused naming the field.
#[test]
fn todo_write_parses_the_list_and_refuses_bad_items() {
    let call = ToolCall::parse(
        "todo_write",
        &json!({"items": [
            {"content": "read the code", "status": "completed"},
            {"content": "write the fix", "status": "in_progress"},
            {"content": "run the tests", "status": "pending"}
        ]}),
    )
    .unwrap();
    let ToolCall::TodoWrite(w) = call else {
        panic!("not todo_write: {call:?}")
    };
    assert_eq!(w.items.len(), 3);
    assert_eq!(w.items[1].content, "write the fix");
    assert_eq!(
        w.items.iter().map(|i| i.status).collect::<Vec<_>>(),
        [
            TodoStatus::Completed,
            TodoStatus::InProgress,
            TodoStatus::Pending
        ]
    );
    let e = ToolCall::parse(
        "todo_write",
        &json!({"items": [{"content": "x", "status": "done"}]}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("\"done\"") && e.to_string().contains("status"),
        "{e}"
    );
    let e = ToolCall::parse("todo_write", &json!({"items": [{"status": "pending"}]})).unwrap_err();
    assert!(e.to_string().contains("content"), "{e}");
    // The model sees the three words.
    let schema = lookup("todo_write").unwrap().schema();
    assert_eq!(
        schema["properties"]["items"]["items"]["properties"]["status"]["enum"],
        json!(["pending", "in_progress", "completed"])
    );
}

/// Issue 15: the leader's lifecycle tools take their arguments as documented.
#[test]
fn lifecycle_tools_parse_their_arguments() {
    let t: SpawnTeam = parse(
        "spawn_team",
        &json!({"members": [
            {"name": "a1", "role": "worker"},
            {"name": "a2", "role": "reviewer", "instructions": "be strict", "model": "m-2"},
        ]}),
    )
    .unwrap();
    assert_eq!(t.members.len(), 2);
    assert_eq!(
        t.members[1],
        TeamMember {
            name: "a2".into(),
            role: Some("reviewer".into()),
            instructions: Some("be strict".into()),
            model: Some("m-2".into()),
            host: None,
        }
    );
    // A member without its role gets the team's default one (the daemon fills it in).
    let t: SpawnTeam = parse(
        "spawn_team",
        &json!({"members": [{"name": "a1", "role": "worker"}, {"name": "a2"}]}),
    )
    .unwrap();
    assert_eq!(t.members[1].role, None);
    // A member without its name is refused, naming the member's place and the field.
    let (field, text) = error(
        "spawn_team",
        json!({"members": [{"name": "a1", "role": "worker"}, {"role": "worker"}]}),
    );
    assert_eq!(field.as_deref(), Some("members[1].name"), "{text}");
    assert!(text.contains("`members[1].name`"), "{text}");
    let (field, _) = error(
        "spawn_team",
        json!({"members": [{"name": "a1", "role": "worker", "colour": "red"}]}),
    );
    assert_eq!(field.as_deref(), Some("members[0].colour"));
    let (field, _) = error("spawn_team", json!({"members": [{"name": 3, "role": "w"}]}));
    assert_eq!(field.as_deref(), Some("members[0].name"));

    let s: SpawnTeammate = parse(
        "spawn_teammate",
        &json!({"role": "worker", "name": "b1", "instructions": "i", "model": "m", "message": "go"}),
    )
    .unwrap();
    assert_eq!(
        (
            s.instructions.as_deref(),
            s.model.as_deref(),
            s.message.as_deref()
        ),
        (Some("i"), Some("m"), Some("go"))
    );

    let w: WaitFor = parse("wait_for", &json!({"teammates": ["a1"], "tasks": [3]})).unwrap();
    assert_eq!(w.teammates, Some(vec!["a1".to_string()]));
    assert_eq!(w.tasks, Some(vec![3]));
    assert_eq!(w.timeout_ms(), 60_000, "60 s when not given");
    let w: WaitFor = parse("wait_for", &json!({"timeout_s": 5000})).unwrap();
    assert_eq!(w.timeout_ms(), 600_000, "at most 600 s");
    let (field, _) = error("wait_for", json!({"tasks": ["3"]}));
    assert_eq!(field.as_deref(), Some("tasks[0]"));

    let c: CloseTeammate =
        parse("close_teammate", &json!({"name": "a1", "reason": "done"})).unwrap();
    assert_eq!((c.name.as_str(), c.reason.as_deref()), ("a1", Some("done")));
    let (field, _) = error("close_teammate", json!({"reason": "x"}));
    assert_eq!(field.as_deref(), Some("name"));
    let r: ResumeTeammate =
        parse("resume_teammate", &json!({"name": "a1", "message": "back"})).unwrap();
    assert_eq!(r.message.as_deref(), Some("back"));
    assert!(SPAWN_TOOLS.contains(&"spawn_team") && SPAWN_TOOLS.contains(&"spawn_teammate"));
    // The leader gets them all; teammates none.
    for n in [
        "spawn_team",
        "wait_for",
        "close_teammate",
        "resume_teammate",
    ] {
        assert!(
            LEADER_TOOLS.contains(&n) && !TEAMMATE_TOOLS.contains(&n),
            "{n}"
        );
    }
}
