//! Typed parsing of a call's arguments, with errors a model can act on: they name the tool and
//! the field, and say what was expected and what came.

use crate::lookup;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// Arguments a tool cannot take. Its text is what the model reads back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ToolArgError {
    /// The tool called.
    pub tool: String,
    /// The field at fault (`blocked_by[1]` inside an array), when one is.
    pub field: Option<String>,
    /// What is wrong, in full.
    pub problem: String,
}

impl fmt::Display for ToolArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid arguments for {}: {}", self.tool, self.problem)
    }
}

impl ToolArgError {
    fn new(tool: &str, field: Option<&str>, problem: String) -> Self {
        ToolArgError {
            tool: tool.to_string(),
            field: field.map(str::to_string),
            problem,
        }
    }

    /// A call of a tool the catalogue does not have.
    pub(crate) fn unknown_tool(tool: &str) -> Self {
        ToolArgError::new(tool, None, format!("there is no tool named {tool:?}"))
    }
}

/// Parses the arguments of a call of tool `name` into its argument type. The arguments are
/// first checked against the tool's schema, so an error names the field and what it must be
/// (`field \`id\` must be an integer, not string "3"`); what the schema cannot tell is left to
/// the type, whose message is passed on.
pub fn parse<T: DeserializeOwned>(name: &str, args: &Value) -> Result<T, ToolArgError> {
    if let Some(def) = lookup(name) {
        check_object(&def.schema_shared(), args)
            .map_err(|(field, problem)| ToolArgError::new(name, field.as_deref(), problem))?;
    }
    serde_json::from_value(args.clone()).map_err(|e| {
        let problem = e.to_string();
        let field = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| problem.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        ToolArgError {
            tool: name.to_string(),
            field,
            problem,
        }
    })
}

/// A problem: the field at fault (if any) and the message.
type Problem = (Option<String>, String);

/// Checks `args` against a tool's object schema.
fn check_object(schema: &Value, args: &Value) -> Result<(), Problem> {
    let Value::Object(given) = args else {
        return Err((
            None,
            format!(
                "the arguments must be a JSON object, not {}",
                describe(args)
            ),
        ));
    };
    let empty = serde_json::Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for k in given.keys() {
        if !props.contains_key(k) {
            let known = if props.is_empty() {
                "this tool takes no arguments".to_string()
            } else {
                let names: Vec<String> = props.keys().map(|p| format!("`{p}`")).collect();
                format!("the fields are {}", names.join(", "))
            };
            return Err((Some(k.clone()), format!("unknown field `{k}`; {known}")));
        }
    }
    for r in &required {
        if given.get(*r).is_none_or(Value::is_null) {
            let what = props.get(*r).map(expected).unwrap_or_default();
            return Err((
                Some(r.to_string()),
                format!("missing required field `{r}` ({what})"),
            ));
        }
    }
    for (k, v) in given {
        // An optional field given as null means "not given".
        if v.is_null() && !required.contains(&k.as_str()) {
            continue;
        }
        if let Some(s) = props.get(k) {
            check_value(s, v, k).map_err(|(at, msg)| (Some(at), msg))?;
        }
    }
    Ok(())
}

/// Checks one value against a property's schema (the subset the catalogue's schemas use:
/// `type`, `enum`, `minimum`, `items`). `at` names it in the message.
fn check_value(schema: &Value, v: &Value, at: &str) -> Result<(), (String, String)> {
    let fits = match schema.get("type").and_then(Value::as_str) {
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        _ => true,
    };
    if !fits {
        return Err((
            at.to_string(),
            format!(
                "field `{at}` must be {}, not {}",
                expected(schema),
                describe(v)
            ),
        ));
    }
    if let Some(Value::Array(words)) = schema.get("enum")
        && !words.contains(v)
    {
        return Err((
            at.to_string(),
            format!(
                "field `{at}` must be {}, not {}",
                expected(schema),
                describe(v)
            ),
        ));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        return Err((
            at.to_string(),
            format!("field `{at}` must be at least {min}, not {v}"),
        ));
    }
    // An object inside the arguments (a `spawn_team` member): its fields are checked the same
    // way, named by their place (`members[1].role`).
    if schema.get("properties").is_some() && v.is_object() {
        check_object(schema, v).map_err(|(field, msg)| {
            let inner = field.unwrap_or_default();
            let place = format!("{at}.{inner}");
            let msg = msg
                .replace(&format!("field `{inner}`"), &format!("field `{place}`"))
                .replace(&format!("`{inner}` ("), &format!("`{place}` ("));
            (place, msg)
        })?;
    }
    if let (Some(items), Value::Array(list)) = (schema.get("items"), v) {
        for (i, x) in list.iter().enumerate() {
            check_value(items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// What a schema asks for, in words: "an integer", "one of `a`, `b`", "an array of integers".
fn expected(schema: &Value) -> String {
    if let Some(Value::Array(words)) = schema.get("enum") {
        let words: Vec<String> = words.iter().map(|w| format!("`{}`", plain(w))).collect();
        return format!("one of {}", words.join(", "));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "a string".into(),
        Some("integer") => "an integer".into(),
        Some("number") => "a number".into(),
        Some("boolean") => "a boolean (true or false)".into(),
        Some("object") => "an object".into(),
        Some("array") => match schema.get("items") {
            Some(items) => {
                let each = expected(items);
                let each = each
                    .strip_prefix("an ")
                    .or_else(|| each.strip_prefix("a "))
                    .unwrap_or(&each)
                    .to_string();
                format!("an array of {each}s")
            }
            None => "an array".into(),
        },
        _ => "any JSON value".into(),
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A value as the model sent it, kind first: `string "3"`, `number 1.5`, `null`.
fn describe(v: &Value) -> String {
    let mut text = v.to_string();
    if text.len() > 60 {
        let cut = (0..=57)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str("...");
    }
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => format!("boolean {text}"),
        Value::Number(_) => format!("number {text}"),
        Value::String(_) => format!("string {text}"),
        Value::Array(_) => format!("array {text}"),
        Value::Object(_) => format!("object {text}"),
    }
}
