//! The names and fields other team systems (the seeds: Qwen Code, NexAU, pydantic-deep, Nyzhi)
//! give our team tools, in one table: a call by one of their names, or with one of their field
//! spellings, is translated into a call of ours before its arguments are checked, so a leader
//! prompt written for one of them works here as written. A role with `tool_names = "qwen"` is
//! also *offered* the tools under Qwen Code's names and schemas ([`offered`]).
//!
//! Pure data and argument rewriting: no I/O. The worker calls [`translate`] on every call; the
//! configuration calls [`alias_of`] to accept an alias in a role's `tools` list.

use serde_json::{Map, Value, json};

/// How a field of theirs becomes one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// The value as given.
    Same,
    /// A task id: a number, or a string of one (`"3"`, `"#3"`), as Qwen Code's ids are strings.
    Id,
    /// Task ids: one id or a list of them, each as [`Conv::Id`].
    Ids,
    /// A label with no effect here (Qwen Code's `activeForm`, `metadata`): left out.
    Drop,
}

/// One field spelling of theirs and our field it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Their field's name.
    pub theirs: &'static str,
    /// Ours (unused for [`Conv::Drop`]).
    pub ours: &'static str,
    /// How the value is carried over.
    pub conv: Conv,
}

const fn same(theirs: &'static str, ours: &'static str) -> Field {
    Field {
        theirs,
        ours,
        conv: Conv::Same,
    }
}

const fn id(theirs: &'static str, ours: &'static str) -> Field {
    Field {
        theirs,
        ours,
        conv: Conv::Id,
    }
}

const fn ids(theirs: &'static str, ours: &'static str) -> Field {
    Field {
        theirs,
        ours,
        conv: Conv::Ids,
    }
}

const fn drop(theirs: &'static str) -> Field {
    Field {
        theirs,
        ours: "",
        conv: Conv::Drop,
    }
}

/// What a call needs beyond renamed fields: the cases where their tool does more than one of
/// ours, or where a value picks the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Renamed fields only.
    Rename,
    /// `team_create`: the team already runs (it is the one the caller is in), so creating it
    /// is a harmless success that shows its members (`list_teammates`).
    TeamCreate,
    /// `team_delete`: ends the team as `finish_team` does (forced, like Qwen Code's delete),
    /// with the caller's text of that turn as the answer unless it gives `answer`.
    TeamDelete,
    /// `task_update`: `status` and `owner` pick the tool (claim, finish, release, assign).
    TaskUpdate,
    /// A message: `to: "*"` is `broadcast`, `type: "shutdown_request"` is `close_teammate`.
    Message,
    /// pydantic's `assign_task(member, description)` without an id creates the task for them.
    Assign,
    /// Starting a teammate: Qwen Code's built-in `general-purpose` agent type is the team's
    /// default role.
    Spawn,
}

/// One row of the table: a tool name (theirs, or ours with their field spellings) and how a
/// call by it becomes a call of ours.
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    /// The name called.
    pub name: &'static str,
    /// The systems that use it ("ours" for one of our own names).
    pub seeds: &'static [&'static str],
    /// Our tool it stands for (the one whose permissions and audience apply; [`Rule`]s may
    /// pick a sibling by the arguments).
    pub ours: &'static str,
    /// Their field spellings.
    pub fields: &'static [Field],
    /// What else the call needs.
    pub rule: Rule,
    /// What differs from their tool, for the docs.
    pub note: &'static str,
}

/// A task's fields as Qwen Code, Nyzhi and pydantic-deep spell them, for `create_task`.
const CREATE_FIELDS: &[Field] = &[
    same("subject", "title"),
    same("content", "title"),
    ids("blockedBy", "blocked_by"),
    ids("addBlockedBy", "blocked_by"),
    same("assigned_to", "assign"),
    same("owner", "assign"),
    drop("activeForm"),
    drop("metadata"),
];

/// A task id as Qwen Code (`taskId`) and Nyzhi (`task_id`) spell it.
const TASK_ID: &[Field] = &[id("taskId", "id"), id("task_id", "id")];

/// A message's fields as Qwen Code, Nyzhi (`message`), pydantic-deep (`member`, `content`) and
/// NexAU spell them.
const MESSAGE_FIELDS: &[Field] = &[
    same("message", "text"),
    same("content", "text"),
    same("member", "to"),
    same("recipient", "to"),
];

/// Starting a teammate as Qwen Code's Agent tool and Nyzhi's `spawn_agent` spell it.
const SPAWN_FIELDS: &[Field] = &[
    same("subagent_type", "role"),
    same("agent_type", "role"),
    same("prompt", "message"),
    drop("description"),
    drop("run_in_background"),
];

/// Naming one agent as Nyzhi's agent tools do.
const AGENT_FIELDS: &[Field] = &[same("id", "name"), same("agent", "name")];

const QWEN: &str = "Qwen Code";
const NYZHI: &str = "Nyzhi";
const PYDANTIC: &str = "pydantic-deep";
const NEXAU: &str = "NexAU";
const OURS: &str = "ours";

/// Every name and field spelling of another system that a call may use, one row per name.
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "team_create",
        seeds: &[QWEN, NYZHI],
        ours: "list_teammates",
        fields: &[drop("team_name"), drop("description")],
        rule: Rule::TeamCreate,
        note: "the team already runs and the caller is in it: a success that lists its members",
    },
    Alias {
        name: "team_delete",
        seeds: &[QWEN],
        ours: "finish_team",
        fields: &[drop("reason")],
        rule: Rule::TeamDelete,
        note: "ends the run like finish_team with force (every teammate stops); the answer is \
               `answer` if given, else the text the leader wrote in that turn",
    },
    Alias {
        name: "task_create",
        seeds: &[QWEN, NYZHI],
        ours: "create_task",
        fields: CREATE_FIELDS,
        rule: Rule::Rename,
        note: "subject or title is the title; blockedBy (ids) sets the blockers, which are set \
               when a task is created",
    },
    Alias {
        name: "task_update",
        seeds: &[QWEN, NYZHI],
        ours: "update_task_status",
        fields: &[
            id("taskId", "id"),
            id("task_id", "id"),
            id("id", "id"),
            drop("activeForm"),
            drop("metadata"),
        ],
        rule: Rule::TaskUpdate,
        note: "status in_progress claims (the leader: with owner, assigns), completed or failed \
               finishes, pending releases; owner alone assigns; editing subject, description \
               or blockers and `deleted` are refused",
    },
    Alias {
        name: "task_list",
        seeds: &[QWEN, NYZHI],
        ours: "list_tasks",
        fields: &[drop("owner"), drop("blockedBy")],
        rule: Rule::Rename,
        note: "the owner and blockedBy filters are ignored: the whole board (or one status) is \
               listed",
    },
    Alias {
        name: "agent",
        seeds: &[QWEN],
        ours: "spawn_teammate",
        fields: SPAWN_FIELDS,
        rule: Rule::Spawn,
        note: "starts a teammate: subagent_type is its role (general-purpose: the team's \
               default), name its name, prompt its first message",
    },
    Alias {
        name: "spawn_agent",
        seeds: &[NYZHI],
        ours: "spawn_teammate",
        fields: SPAWN_FIELDS,
        rule: Rule::Spawn,
        note: "agent_type is the role, message the first message",
    },
    Alias {
        name: "send_team_message",
        seeds: &[NYZHI],
        ours: "send_message",
        fields: MESSAGE_FIELDS,
        rule: Rule::Message,
        note: "to \"*\" broadcasts",
    },
    Alias {
        name: "send_input",
        seeds: &[NYZHI],
        ours: "send_message",
        fields: &[
            same("message", "text"),
            same("id", "to"),
            same("agent", "to"),
            same("name", "to"),
        ],
        rule: Rule::Message,
        note: "the agent is named by id, agent, name or to",
    },
    Alias {
        name: "message",
        seeds: &[NEXAU],
        ours: "send_message",
        fields: MESSAGE_FIELDS,
        rule: Rule::Message,
        note: "to \"*\" broadcasts",
    },
    Alias {
        name: "message_teammate",
        seeds: &[PYDANTIC],
        ours: "send_message",
        fields: MESSAGE_FIELDS,
        rule: Rule::Message,
        note: "member is the recipient",
    },
    Alias {
        name: "check_teammates",
        seeds: &[PYDANTIC],
        ours: "list_teammates",
        fields: &[],
        rule: Rule::Rename,
        note: "the roster with each one's status and task; the board is list_tasks",
    },
    Alias {
        name: "wait",
        seeds: &[NYZHI],
        ours: "wait_for",
        fields: &[
            same("ids", "teammates"),
            same("agents", "teammates"),
            same("names", "teammates"),
            same("timeout", "timeout_s"),
        ],
        rule: Rule::Rename,
        note: "ids, agents or names are the teammates waited for",
    },
    Alias {
        name: "close_agent",
        seeds: &[NYZHI],
        ours: "close_teammate",
        fields: AGENT_FIELDS,
        rule: Rule::Rename,
        note: "the agent is named by id, agent or name",
    },
    Alias {
        name: "resume_agent",
        seeds: &[NYZHI],
        ours: "resume_teammate",
        fields: AGENT_FIELDS,
        rule: Rule::Rename,
        note: "the agent is named by id, agent or name",
    },
    // Our own names, with the field spellings the seeds use for them.
    Alias {
        name: "send_message",
        seeds: &[OURS, QWEN],
        ours: "send_message",
        fields: MESSAGE_FIELDS,
        rule: Rule::Message,
        note: "message or content is the text; to \"*\" broadcasts; Qwen Code's type \
               shutdown_request closes the teammate",
    },
    Alias {
        name: "broadcast",
        seeds: &[OURS, NEXAU],
        ours: "broadcast",
        fields: &[same("message", "text"), same("content", "text")],
        rule: Rule::Rename,
        note: "message or content is the text",
    },
    Alias {
        name: "create_task",
        seeds: &[OURS, PYDANTIC],
        ours: "create_task",
        fields: CREATE_FIELDS,
        rule: Rule::Rename,
        note: "subject or content is the title, blockedBy the blockers, assigned_to or owner \
               the assignee",
    },
    Alias {
        name: "assign_task",
        seeds: &[OURS, PYDANTIC],
        ours: "assign_task",
        fields: &[
            id("taskId", "id"),
            id("task_id", "id"),
            same("member", "to"),
            same("owner", "to"),
            same("assigned_to", "to"),
        ],
        rule: Rule::Assign,
        note: "pydantic-deep's assign_task(member, description) without an id creates the task \
               and assigns it",
    },
    Alias {
        name: "update_task_status",
        seeds: &[OURS],
        ours: "update_task_status",
        fields: TASK_ID,
        rule: Rule::Rename,
        note: "taskId or task_id is the id",
    },
    Alias {
        name: "claim_task",
        seeds: &[OURS],
        ours: "claim_task",
        fields: TASK_ID,
        rule: Rule::Rename,
        note: "taskId or task_id is the id",
    },
    Alias {
        name: "release_task",
        seeds: &[OURS],
        ours: "release_task",
        fields: TASK_ID,
        rule: Rule::Rename,
        note: "taskId or task_id is the id",
    },
    Alias {
        name: "spawn_teammate",
        seeds: &[OURS],
        ours: "spawn_teammate",
        fields: SPAWN_FIELDS,
        rule: Rule::Spawn,
        note: "subagent_type or agent_type is the role, prompt the first message",
    },
];

/// The row for `name`, if any.
pub fn row(name: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| a.name == name)
}

/// Our tool's name for another system's tool name; none for our own names and unknown ones.
/// The configuration accepts these in a role's `tools` list.
pub fn alias_of(name: &str) -> Option<&'static str> {
    row(name).filter(|a| a.name != a.ours).map(|a| a.ours)
}

/// Who is calling, for the rules that depend on it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The agent's name.
    pub name: &'a str,
    /// Whether it is the leader.
    pub is_leader: bool,
    /// The text it wrote in the turn of the call (`team_delete`'s answer).
    pub said: &'a str,
}

/// A call rewritten as one of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// Our tool.
    pub name: &'static str,
    /// Its arguments.
    pub args: Value,
    /// Text put before the tool's result (what `team_create` did).
    pub note: Option<String>,
}

/// Rewrites a call of `name` with `args` (an object) as a call of one of our tools: `Ok(None)`
/// when no row names it (our own name with nothing to rewrite, or an unknown tool), an error
/// for a call the board cannot do, in words the model can act on.
pub fn translate(name: &str, args: &Value, who: Caller<'_>) -> Result<Option<Translated>, String> {
    let Some(row) = row(name) else {
        return Ok(None);
    };
    let Value::Object(given) = args else {
        return Ok(None);
    };
    let mut a = rename(name, row.fields, given)?;
    let mut note = None;
    let tool: &'static str = match row.rule {
        Rule::Rename => row.ours,
        Rule::TeamCreate => {
            let team = given
                .get("team_name")
                .and_then(Value::as_str)
                .map(|t| format!(" {t:?}"))
                .unwrap_or_default();
            note = Some(format!(
                "The team{team} needs no creating: it is already running and you are in it \
                 (it is the current team). Its members:\n"
            ));
            a.clear();
            "list_teammates"
        }
        Rule::TeamDelete => {
            let answer = match a.remove("answer") {
                Some(Value::String(s)) if !s.trim().is_empty() => s,
                _ if !who.said.trim().is_empty() => who.said.trim().to_string(),
                _ => "The leader ended the team (team_delete).".to_string(),
            };
            a.clear();
            a.insert("answer".into(), answer.into());
            a.insert("force".into(), true.into());
            "finish_team"
        }
        Rule::TaskUpdate => task_update(name, &mut a, who)?,
        Rule::Message => message(name, &mut a)?,
        Rule::Assign => {
            if a.contains_key("id") {
                "assign_task"
            } else {
                let title = ["description", "task", "title"]
                    .iter()
                    .find_map(|k| a.remove(*k));
                let Some(title) = title else {
                    return Err(format!(
                        "{name}: give the task's id (and `to`), or a description to create the \
                         task and assign it"
                    ));
                };
                let to = a.remove("to");
                a.clear();
                a.insert("title".into(), title);
                if let Some(to) = to {
                    a.insert("assign".into(), to);
                }
                "create_task"
            }
        }
        Rule::Spawn => {
            if a.get("role").and_then(Value::as_str) == Some("general-purpose") {
                a.remove("role");
            }
            "spawn_teammate"
        }
    };
    Ok(Some(Translated {
        name: tool,
        args: Value::Object(a),
        note,
    }))
}

/// The arguments with their fields renamed and converted; two spellings of one field given
/// together are an error.
fn rename(
    tool: &str,
    fields: &[Field],
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut from: Map<String, Value> = Map::new();
    for (k, v) in given {
        let field = fields.iter().find(|f| f.theirs == k);
        let (ours, v) = match field {
            Some(f) if f.conv == Conv::Drop => continue,
            Some(f) => (f.ours, convert(tool, k, f.conv, v)?),
            None => (k.as_str(), v.clone()),
        };
        // An optional field given as null means "not given".
        if v.is_null() {
            continue;
        }
        if let Some(Value::String(first)) = from.get(ours) {
            return Err(format!(
                "{tool}: `{first}` and `{k}` are the same field; give one of them"
            ));
        }
        from.insert(ours.to_string(), Value::String(k.clone()));
        out.insert(ours.to_string(), v);
    }
    Ok(out)
}

/// One value carried over by `conv`.
fn convert(tool: &str, field: &str, conv: Conv, v: &Value) -> Result<Value, String> {
    match conv {
        Conv::Same | Conv::Drop => Ok(v.clone()),
        Conv::Id => task_id(v)
            .map(Value::from)
            .ok_or_else(|| bad_id(tool, field, v)),
        Conv::Ids => {
            let list = match v {
                Value::Array(list) => list.clone(),
                Value::Null => return Ok(Value::Null),
                one => vec![one.clone()],
            };
            list.iter()
                .map(|x| {
                    task_id(x)
                        .map(Value::from)
                        .ok_or_else(|| bad_id(tool, field, x))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
    }
}

fn bad_id(tool: &str, field: &str, v: &Value) -> String {
    format!("{tool}: field `{field}`: a task id is a number like 3 (or \"3\"), not {v}")
}

/// A task id given as a number or as a string of one (`"3"`, `"#3"`).
fn task_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().trim_start_matches('#').parse().ok(),
        _ => None,
    }
}

/// Qwen Code's and Nyzhi's `task_update` as one of our board tools.
fn task_update(
    tool: &str,
    a: &mut Map<String, Value>,
    who: Caller<'_>,
) -> Result<&'static str, String> {
    let Some(id) = a.get("id").cloned() else {
        return Err(format!(
            "{tool}: missing required field `taskId` (the task's id)"
        ));
    };
    for k in ["addBlocks", "addBlockedBy"] {
        if a.get(k)
            .is_some_and(|v| v.as_array().is_none_or(|l| !l.is_empty()))
        {
            return Err(format!(
                "{tool}: a task's blockers are set when it is created (task_create with \
                 blockedBy); they cannot be changed afterwards"
            ));
        }
    }
    for k in ["subject", "description"] {
        if a.contains_key(k) {
            return Err(format!(
                "{tool}: a task's {k} is set when it is created and cannot be changed; create \
                 a new task instead"
            ));
        }
    }
    let status = a.get("status").and_then(Value::as_str).map(str::to_string);
    let owner = match a.get("owner") {
        Some(Value::String(o)) if o.is_empty() => {
            return Err(format!(
                "{tool}: to give a task back, its holder sets status pending"
            ));
        }
        Some(Value::String(o)) => Some(o.clone()),
        _ => None,
    };
    let result = a.get("result").cloned();
    a.clear();
    a.insert("id".into(), id.clone());
    let claim = |a: &mut Map<String, Value>| {
        a.insert("status".into(), "in_progress".into());
        "update_task_status"
    };
    match (status.as_deref(), owner) {
        (Some("deleted"), _) => Err(format!(
            "{tool}: tasks are not deleted from this board; leave it pending, or tell the \
             leader it is not needed"
        )),
        (Some("in_progress") | None, Some(o)) if who.is_leader => {
            a.insert("to".into(), o.into());
            Ok("assign_task")
        }
        (Some("in_progress") | None, Some(o)) if o != who.name => Err(format!(
            "{tool}: you can take a task only for yourself ({}); the leader assigns tasks to \
             others",
            who.name
        )),
        (Some("in_progress"), _) if who.is_leader => Err(format!(
            "{tool}: Cannot move task #{id} to in_progress without an owner. Specify the \
             \"owner\" parameter."
        )),
        (Some("in_progress"), _) | (None, Some(_)) => Ok(claim(a)),
        (Some(s @ ("completed" | "failed")), _) => {
            a.insert("status".into(), s.into());
            if let Some(r) = result {
                a.insert("result".into(), r);
            }
            Ok("update_task_status")
        }
        (Some("pending"), _) => Ok("release_task"),
        (Some(other), _) => Err(format!(
            "{tool}: field `status` must be one of `pending`, `in_progress`, `completed`, \
             `failed`, not {other:?}"
        )),
        (None, None) => Err(format!("{tool}: give a status or an owner")),
    }
}

/// A message as our `send_message`, `broadcast` (to `*`) or `close_teammate` (Qwen Code's
/// `shutdown_request`).
fn message(tool: &str, a: &mut Map<String, Value>) -> Result<&'static str, String> {
    if a.contains_key("task_id") {
        return Err(format!(
            "{tool}: task_id is for background tasks, which this team does not have; name a \
             teammate in `to`"
        ));
    }
    let to = a.get("to").and_then(Value::as_str).map(str::to_string);
    match a.remove("type") {
        None => {}
        Some(Value::String(t)) if t == "shutdown_request" => {
            let Some(to) = to.filter(|t| t != "*") else {
                return Err(format!(
                    "{tool}: a shutdown_request names one teammate in `to`"
                ));
            };
            a.clear();
            a.insert("name".into(), to.into());
            return Ok("close_teammate");
        }
        Some(t) => {
            return Err(format!(
                "{tool}: field `type` can only be `shutdown_request`, not {t}"
            ));
        }
    }
    if to.as_deref() == Some("*") {
        a.remove("to");
        a.remove("summary");
        return Ok("broadcast");
    }
    Ok("send_message")
}

/// A way of naming the team tools a role can ask for with `tool_names`.
#[derive(Debug, Clone, Copy)]
pub struct Naming {
    /// Its value of `tool_names`.
    pub key: &'static str,
    /// The system whose names these are.
    pub seed: &'static str,
    /// How the leader is told to work, with these names.
    pub leader_brief: &'static str,
    /// How a teammate is told to work, with these names.
    pub teammate_brief: &'static str,
}

/// Our own names (the default).
pub const AGENT_TEAM: Naming = Naming {
    key: "agent-team",
    seed: OURS,
    leader_brief: "You are the team's leader: break the goal into tasks with create_task, start \
        the teammates you need with spawn_teammate, assign tasks or let teammates claim them, \
        answer their messages, and when every task is done call finish_team with the final \
        answer.\n",
    teammate_brief: "The team's leader is `leader`. Look at the board with list_tasks, claim one \
        task at a time with claim_task, do it with your tools, then call update_task_status \
        with completed or failed and a short result, and tell the leader with send_message. \
        When nothing is left, say so in one sentence and stop; you will be woken when there is \
        more.\n",
};

/// Qwen Code's names (its agent team's tools, `tool_names = "qwen"`).
pub const QWEN_NAMING: Naming = Naming {
    key: "qwen",
    seed: QWEN,
    leader_brief: "You are the team's leader, and the team already exists (team_create just \
        confirms it). Break the goal into tasks with task_create, start teammates with the \
        agent tool (name, subagent_type = one of the team's roles, prompt = its first \
        instructions), give tasks with task_update (owner) or let teammates claim them, answer \
        their messages (send_message), and when every task is done call team_delete: the text \
        you write in that turn is the final answer for the user.\n",
    teammate_brief: "The team's leader is `leader`. Look at the board with task_list, claim one \
        task at a time with task_update (status in_progress), do it with your tools, then call \
        task_update with status completed (or failed) and a short result, and tell the leader \
        with send_message. When nothing is left, say so in one sentence and stop; you will be \
        woken when there is more.\n",
};

/// Every naming a role can ask for.
pub const NAMINGS: &[Naming] = &[AGENT_TEAM, QWEN_NAMING];

/// The naming `key` asks for (none: ours).
pub fn naming(key: Option<&str>) -> Option<&'static Naming> {
    match key {
        None => Some(&NAMINGS[0]),
        Some(k) => NAMINGS.iter().find(|n| n.key == k),
    }
}

/// A tool offered under another system's name and schema, in place of ours.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// The naming it belongs to.
    pub naming: &'static str,
    /// Its name (a row of [`ALIASES`]).
    pub name: &'static str,
    /// What the model is told.
    pub description: &'static str,
    /// Our tools it stands in for: they are not offered beside it.
    pub instead_of: &'static [&'static str],
    /// It is offered when the agent has one of these.
    pub when_any: &'static [&'static str],
    schema: fn() -> Value,
}

impl Offer {
    /// Its argument schema as the model sees it.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }
}

/// The tools offered under Qwen Code's names: its schemas, less what the board cannot do
/// (editing a task, deleting one, dependency edits after creation, background tasks), plus
/// `blockedBy` on `task_create` and `result` on `task_update`, both optional.
pub const OFFERS: &[Offer] = &[
    Offer {
        naming: "qwen",
        name: "team_create",
        description: "Create the team. The team already exists here (it started with you), so \
            this succeeds at once and lists its members.",
        instead_of: &[],
        when_any: &["spawn_teammate"],
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "team_name": {"type": "string", "description": "Name for the team (alphanumeric and hyphens)."},
                    "description": {"type": "string", "description": "Optional description of the team."}
                },
                "required": ["team_name"],
                "additionalProperties": false
            })
        },
    },
    Offer {
        naming: "qwen",
        name: "team_delete",
        description: "Delete the team when the work is done: every teammate stops and the run \
            ends. The text you write in the same turn is the final answer for the user.",
        instead_of: &["finish_team"],
        when_any: &["finish_team"],
        schema: || json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
    },
    Offer {
        naming: "qwen",
        name: "task_create",
        description: "Create a new task in the team task list. Teammates claim it once its \
            blockers are completed.",
        instead_of: &["create_task"],
        when_any: &["create_task"],
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "description": "Short title for the task."},
                    "description": {"type": "string", "description": "Detailed description of the task."},
                    "activeForm": {"type": "string", "description": "Present tense label for UI (e.g., \"Running tests\")."},
                    "metadata": {"type": "object", "description": "Optional arbitrary metadata."},
                    "blockedBy": {"type": "array", "items": {"type": "string"}, "description": "IDs of tasks that must complete first."}
                },
                "required": ["subject", "description"],
                "additionalProperties": false
            })
        },
    },
    Offer {
        naming: "qwen",
        name: "task_update",
        description: "Update a task. Setting status to \"in_progress\" claims it (you become \
            its owner; the leader gives it to `owner`), \"completed\" or \"failed\" finishes the \
            task you hold (with a short `result`), \"pending\" gives it back. `owner` alone \
            assigns it (leader).",
        instead_of: &[
            "claim_task",
            "update_task_status",
            "release_task",
            "assign_task",
        ],
        when_any: &[
            "claim_task",
            "update_task_status",
            "release_task",
            "assign_task",
        ],
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "taskId": {"type": "string", "description": "ID of the task to update."},
                    "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed"], "description": "New task status."},
                    "owner": {"type": "string", "description": "New owner agent name."},
                    "result": {"type": "string", "description": "A short result, with completed or failed."},
                    "activeForm": {"type": "string", "description": "Present tense label for UI."},
                    "metadata": {"type": "object", "description": "Metadata (not kept)."}
                },
                "required": ["taskId"],
                "additionalProperties": false
            })
        },
    },
    Offer {
        naming: "qwen",
        name: "task_list",
        description: "List tasks in the team task list: id, status, owner, blockers, title.",
        instead_of: &["list_tasks"],
        when_any: &["list_tasks"],
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed", "cancelled"], "description": "Filter by task status."}
                },
                "required": [],
                "additionalProperties": false
            })
        },
    },
    Offer {
        naming: "qwen",
        name: "agent",
        description: "Spawn a named teammate that joins the team and works in parallel: \
            subagent_type is one of the team's roles (general-purpose: the team's default \
            role), name its name, prompt the first instructions it reads. Returns once it is \
            connected.",
        instead_of: &["spawn_teammate"],
        when_any: &["spawn_teammate"],
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "description": {"type": "string", "description": "A short (3-5 word) description of the task."},
                    "prompt": {"type": "string", "description": "The task for the agent to perform."},
                    "subagent_type": {"type": "string", "description": "The type of specialized agent to use (a role of the team)."},
                    "name": {"type": "string", "description": "The teammate's name; lower-case letters, digits and '-'."}
                },
                "required": ["description", "prompt"],
                "additionalProperties": false
            })
        },
    },
    Offer {
        naming: "qwen",
        name: "send_message",
        description: "Send a message to a teammate (use \"to\"), or \"*\" to broadcast. Your \
            text output is NOT visible to other agents: use this tool to communicate.",
        instead_of: &["send_message"],
        when_any: &["send_message"],
        schema: || {
            json!({
                "type": "object",
                "properties": {
                    "to": {"type": "string", "description": "Recipient teammate name, or \"*\" for broadcast."},
                    "message": {"type": "string", "description": "Message text to send."},
                    "summary": {"type": "string", "description": "Optional 5-10 word summary for UI display."},
                    "type": {"type": "string", "enum": ["shutdown_request"], "description": "shutdown_request stops the teammate (leader)."}
                },
                "required": ["to", "message"],
                "additionalProperties": false
            })
        },
    },
];

/// What an agent with our tools `names` is offered under `naming`: each entry is our tool's
/// name, or the name of an [`Offer`] standing in for one or more of them, in our order, each
/// once.
pub fn offered(names: &[&str], naming: &Naming) -> Vec<Offered> {
    let offers: Vec<&Offer> = OFFERS
        .iter()
        .filter(|o| o.naming == naming.key && o.when_any.iter().any(|w| names.contains(w)))
        .collect();
    let mut out: Vec<Offered> = Vec::new();
    // An offer standing in for none of ours goes first (team_create).
    for o in offers.iter().filter(|o| o.instead_of.is_empty()) {
        out.push(Offered::Theirs(o));
    }
    for n in names {
        match offers.iter().find(|o| o.instead_of.contains(n)) {
            Some(o) => {
                if !out.iter().any(|x| x.name() == o.name) {
                    out.push(Offered::Theirs(o));
                }
            }
            None => out.push(Offered::Ours(lookup_static(n))),
        }
    }
    out
}

fn lookup_static(n: &str) -> &'static str {
    crate::lookup(n).map_or("", |d| d.name)
}

/// One tool as offered: ours, or another system's in place of ours.
#[derive(Debug, Clone, Copy)]
pub enum Offered {
    /// Our tool, by name.
    Ours(&'static str),
    /// Theirs.
    Theirs(&'static Offer),
}

impl Offered {
    /// The name the model calls.
    pub fn name(&self) -> &'static str {
        match self {
            Offered::Ours(n) => n,
            Offered::Theirs(o) => o.name,
        }
    }
}

/// The section of `docs/TOOLS.md` on other systems' names: the one table of them.
pub fn markdown() -> String {
    let mut s = String::from(
        "\n## Other systems' names\n\nA call may use another team system's name for one of our \
         tools, or its spelling of a field; it is rewritten as a call of ours before its \
         arguments are checked (and its permissions are ours). A role with `tool_names = \
         \"qwen\"` (team file `[roles.X]` or role file front matter) is also *offered* the \
         tools marked \"offered\" under Qwen Code's names and schemas instead of ours, and \
         told to work with them, so a Qwen Code leader prompt runs as written. lauren-ai has \
         no tool names to map (its coordinator answers `ROUTE:`/`DONE:` in text; its \
         `TeamMemory` is `memory_set`/`memory_get`/`memory_list`).\n\n\
         | name | used by | our tool | fields | what differs |\n|---|---|---|---|---|\n",
    );
    for a in ALIASES {
        let offered = OFFERS.iter().any(|o| o.name == a.name);
        let fields: Vec<String> = a
            .fields
            .iter()
            .map(|f| match f.conv {
                Conv::Drop => format!("`{}` ignored", f.theirs),
                _ => format!("`{}` → `{}`", f.theirs, f.ours),
            })
            .collect();
        s.push_str(&format!(
            "| `{}`{} | {} | `{}` | {} | {} |\n",
            a.name,
            if offered { " (offered)" } else { "" },
            a.seeds.join(", "),
            a.ours,
            fields.join(", "),
            a.note,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADER: Caller<'static> = Caller {
        name: "leader",
        is_leader: true,
        said: "All done: three files.",
    };
    const MATE: Caller<'static> = Caller {
        name: "w1",
        is_leader: false,
        said: "",
    };

    fn tr(name: &str, args: Value, who: Caller<'_>) -> (String, Value) {
        let t = translate(name, &args, who).unwrap().unwrap();
        (t.name.to_string(), t.args)
    }

    #[test]
    fn every_row_maps_to_one_of_our_tools_and_no_foreign_name_shadows_ours() {
        let mut seen = std::collections::BTreeSet::new();
        for a in ALIASES {
            assert!(seen.insert(a.name), "{} twice", a.name);
            assert!(crate::is_known_tool(a.ours), "{} → {}", a.name, a.ours);
            if a.seeds.contains(&OURS) {
                assert_eq!(a.name, a.ours, "a row of ours keeps its name");
            } else {
                assert!(!crate::is_known_tool(a.name), "{} is ours", a.name);
                assert_eq!(alias_of(a.name), Some(a.ours));
            }
        }
        assert_eq!(alias_of("send_message"), None);
        assert_eq!(alias_of("no_such_tool"), None);
    }

    #[test]
    fn qwen_task_tools_become_ours() {
        assert_eq!(
            tr(
                "task_create",
                json!({"subject": "Write a.txt", "description": "d", "activeForm": "Writing", "blockedBy": ["1", "#2"]}),
                LEADER
            ),
            (
                "create_task".into(),
                json!({"title": "Write a.txt", "description": "d", "blocked_by": [1, 2]})
            )
        );
        // Claiming, as a teammate, with a string id.
        assert_eq!(
            tr(
                "task_update",
                json!({"taskId": "3", "status": "in_progress"}),
                MATE
            ),
            (
                "update_task_status".into(),
                json!({"id": 3, "status": "in_progress"})
            )
        );
        // The leader's in_progress with an owner, or an owner alone, assigns.
        for args in [
            json!({"taskId": "3", "status": "in_progress", "owner": "w1"}),
            json!({"taskId": "3", "owner": "w1"}),
        ] {
            assert_eq!(
                tr("task_update", args, LEADER),
                ("assign_task".into(), json!({"id": 3, "to": "w1"}))
            );
        }
        assert_eq!(
            tr(
                "task_update",
                json!({"taskId": "3", "status": "completed", "result": "ok"}),
                MATE
            ),
            (
                "update_task_status".into(),
                json!({"id": 3, "status": "completed", "result": "ok"})
            )
        );
        assert_eq!(
            tr(
                "task_update",
                json!({"task_id": 3, "status": "pending"}),
                MATE
            ),
            ("release_task".into(), json!({"id": 3}))
        );
        assert_eq!(
            tr(
                "task_list",
                json!({"status": "pending", "owner": "w1"}),
                MATE
            ),
            ("list_tasks".into(), json!({"status": "pending"}))
        );
        // What the board cannot do is refused in words.
        for (args, needle) in [
            (json!({"taskId": "3", "addBlockedBy": ["1"]}), "blockedBy"),
            (json!({"taskId": "3", "status": "deleted"}), "not deleted"),
            (json!({"taskId": "3", "subject": "x"}), "subject"),
            (
                json!({"taskId": "x", "status": "completed"}),
                "a task id is a number",
            ),
            (json!({"taskId": "3", "owner": "w2"}), "only for yourself"),
            (json!({"status": "completed"}), "taskId"),
        ] {
            let e = translate("task_update", &args, MATE).unwrap_err();
            assert!(e.contains(needle), "{args}: {e}");
        }
        let e = translate(
            "task_update",
            &json!({"taskId": "1", "status": "in_progress"}),
            LEADER,
        )
        .unwrap_err();
        assert!(e.contains("without an owner"), "{e}");
    }

    #[test]
    fn qwen_team_and_agent_tools_become_ours() {
        let t = translate("team_create", &json!({"team_name": "web"}), LEADER)
            .unwrap()
            .unwrap();
        assert_eq!((t.name, t.args), ("list_teammates", json!({})));
        assert!(t.note.unwrap().contains("\"web\" needs no creating"));
        assert_eq!(
            tr("team_delete", json!({}), LEADER),
            (
                "finish_team".into(),
                json!({"answer": "All done: three files.", "force": true})
            )
        );
        assert_eq!(
            tr("team_delete", json!({"answer": "Given."}), MATE).1["answer"],
            "Given."
        );
        assert_eq!(
            tr(
                "agent",
                json!({"description": "write a", "prompt": "Write a.txt", "subagent_type": "worker", "name": "w1"}),
                LEADER
            ),
            (
                "spawn_teammate".into(),
                json!({"message": "Write a.txt", "role": "worker", "name": "w1"})
            )
        );
        assert_eq!(
            tr(
                "agent",
                json!({"description": "d", "prompt": "p", "subagent_type": "general-purpose"}),
                LEADER
            )
            .1,
            json!({"message": "p"})
        );
    }

    #[test]
    fn messages_in_every_spelling() {
        assert_eq!(
            tr(
                "send_message",
                json!({"to": "w1", "message": "hi", "summary": "s"}),
                LEADER
            ),
            (
                "send_message".into(),
                json!({"to": "w1", "text": "hi", "summary": "s"})
            )
        );
        assert_eq!(
            tr(
                "send_team_message",
                json!({"to": "*", "message": "all"}),
                LEADER
            ),
            ("broadcast".into(), json!({"text": "all"}))
        );
        assert_eq!(
            tr(
                "send_message",
                json!({"to": "w1", "message": "bye", "type": "shutdown_request"}),
                LEADER
            ),
            ("close_teammate".into(), json!({"name": "w1"}))
        );
        assert_eq!(
            tr(
                "message_teammate",
                json!({"member": "w1", "content": "hi"}),
                LEADER
            ),
            ("send_message".into(), json!({"to": "w1", "text": "hi"}))
        );
        assert_eq!(
            tr("message", json!({"to": "leader", "content": "done"}), MATE),
            (
                "send_message".into(),
                json!({"to": "leader", "text": "done"})
            )
        );
        // Ours, as given, is left alone apart from the renames (none here).
        assert_eq!(
            tr("send_message", json!({"to": "w1", "text": "hi"}), LEADER),
            ("send_message".into(), json!({"to": "w1", "text": "hi"}))
        );
        let e = translate(
            "send_message",
            &json!({"to": "w1", "text": "a", "message": "b"}),
            LEADER,
        )
        .unwrap_err();
        assert!(e.contains("same field"), "{e}");
        assert!(
            translate(
                "send_message",
                &json!({"task_id": "b1", "message": "x"}),
                LEADER
            )
            .is_err()
        );
    }

    #[test]
    fn nyzhi_and_pydantic_names_become_ours() {
        assert_eq!(
            tr(
                "spawn_agent",
                json!({"agent_type": "worker", "message": "Implement auth"}),
                LEADER
            ),
            (
                "spawn_teammate".into(),
                json!({"role": "worker", "message": "Implement auth"})
            )
        );
        assert_eq!(
            tr(
                "task_create",
                json!({"title": "t", "assigned_to": "w1"}),
                LEADER
            ),
            ("create_task".into(), json!({"title": "t", "assign": "w1"}))
        );
        assert_eq!(
            tr(
                "create_task",
                json!({"content": "t", "blockedBy": [1]}),
                LEADER
            ),
            (
                "create_task".into(),
                json!({"title": "t", "blocked_by": [1]})
            )
        );
        assert_eq!(
            tr(
                "assign_task",
                json!({"member": "w1", "description": "Design the API"}),
                LEADER
            ),
            (
                "create_task".into(),
                json!({"title": "Design the API", "assign": "w1"})
            )
        );
        assert_eq!(
            tr(
                "assign_task",
                json!({"task_id": "2", "member": "w1"}),
                LEADER
            ),
            ("assign_task".into(), json!({"id": 2, "to": "w1"}))
        );
        assert_eq!(tr("check_teammates", json!({}), LEADER).0, "list_teammates");
        assert_eq!(
            tr("wait", json!({"ids": ["w1"]}), LEADER),
            ("wait_for".into(), json!({"teammates": ["w1"]}))
        );
        assert_eq!(
            tr("close_agent", json!({"id": "w1"}), LEADER),
            ("close_teammate".into(), json!({"name": "w1"}))
        );
        assert_eq!(
            tr("send_input", json!({"id": "w1", "message": "go"}), LEADER),
            ("send_message".into(), json!({"to": "w1", "text": "go"}))
        );
    }

    #[test]
    fn every_translation_parses_as_our_tool() {
        let calls = [
            (
                "task_create",
                json!({"subject": "s", "description": "d", "blockedBy": ["1"]}),
            ),
            (
                "task_update",
                json!({"taskId": "1", "status": "completed", "result": "r"}),
            ),
            ("task_list", json!({})),
            (
                "agent",
                json!({"description": "d", "prompt": "p", "name": "w1"}),
            ),
            ("team_create", json!({"team_name": "x"})),
            ("team_delete", json!({})),
            ("send_message", json!({"to": "*", "message": "m"})),
        ];
        for (name, args) in calls {
            let t = translate(name, &args, LEADER).unwrap().unwrap();
            crate::ToolCall::parse(t.name, &t.args)
                .unwrap_or_else(|e| panic!("{name} {args} → {} {}: {e}", t.name, t.args));
        }
    }

    #[test]
    fn qwen_naming_offers_qwen_tools_in_place_of_ours() {
        let q = naming(Some("qwen")).unwrap();
        let leader = offered(crate::LEADER_TOOLS, q);
        let names: Vec<&str> = leader.iter().map(Offered::name).collect();
        for n in [
            "team_create",
            "team_delete",
            "task_create",
            "task_update",
            "task_list",
            "agent",
            "send_message",
        ] {
            assert_eq!(
                names.iter().filter(|x| **x == n).count(),
                1,
                "{n} in {names:?}"
            );
        }
        for gone in [
            "create_task",
            "assign_task",
            "list_tasks",
            "spawn_teammate",
            "finish_team",
        ] {
            assert!(!names.contains(&gone), "{gone} in {names:?}");
        }
        // Tools with no Qwen counterpart keep our names.
        assert!(
            names.contains(&"wait_for") && names.contains(&"broadcast"),
            "{names:?}"
        );
        let mate: Vec<&str> = offered(crate::TEAMMATE_TOOLS, q)
            .iter()
            .map(Offered::name)
            .collect();
        assert!(
            !mate.contains(&"team_create") && !mate.contains(&"team_delete"),
            "{mate:?}"
        );
        assert!(
            mate.contains(&"task_update") && !mate.contains(&"claim_task"),
            "{mate:?}"
        );
        // Every offered field is one the translation takes, and every offered name a row.
        for o in OFFERS {
            assert!(row(o.name).is_some(), "{}", o.name);
            let s = o.schema();
            assert_eq!(s["type"], "object");
            assert_eq!(s["additionalProperties"], false);
        }
        // Ours is ours.
        let ours: Vec<&str> = offered(crate::LEADER_TOOLS, naming(None).unwrap())
            .iter()
            .map(Offered::name)
            .collect();
        assert_eq!(ours, crate::LEADER_TOOLS);
        assert!(naming(Some("klingon")).is_none());
    }
}
