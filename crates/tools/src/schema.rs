//! The argument schemas as the model APIs take them: one flat object schema per tool.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// The JSON schema of `T` in the shape OpenAI and Anthropic both accept: `type: object`,
/// `properties`, `required`, `additionalProperties: false`, every subschema inlined (no
/// `$schema`, `title`, `$defs` or `$ref`), an optional field given as its plain type rather
/// than "type or null", integers kept `integer` (without Rust's `format` names), and a choice of
/// words given as `enum`.
pub fn model_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut v = generator.into_root_schema_for::<T>().to_value();
    if let Value::Object(root) = &mut v {
        for k in ["$schema", "title", "description", "$defs", "definitions"] {
            root.remove(k);
        }
        root.insert("type".into(), "object".into());
        root.entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        root.entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        root.insert("additionalProperties".into(), false.into());
        if let Some(Value::Object(props)) = root.get_mut("properties") {
            for p in props.values_mut() {
                tidy(p);
            }
        }
    }
    v
}

/// Simplifies a property's schema (and those inside it) to what every model API takes.
fn tidy(v: &mut Value) {
    let Value::Object(m) = v else {
        return;
    };
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = m.remove(key) else {
            continue;
        };
        // `Option<T>` is "T or null": a missing or a null field both mean "not given".
        let alts: Vec<Value> = alts
            .into_iter()
            .filter(|a| a.get("type").is_none_or(|t| t != "null"))
            .filter(|a| a.get("const") != Some(&Value::Null))
            .collect();
        let consts: Option<Vec<Value>> = alts.iter().map(|a| a.get("const").cloned()).collect();
        match consts {
            // A choice of words (a unit enum whose variants have docs).
            Some(words) if !words.is_empty() && words.iter().all(Value::is_string) => {
                m.insert("type".into(), "string".into());
                m.insert("enum".into(), Value::Array(words));
            }
            // A single alternative left: merged in (the field's own description wins).
            _ if alts.len() == 1 => {
                if let Some(Value::Object(inner)) = alts.into_iter().next() {
                    for (k, x) in inner {
                        m.entry(k).or_insert(x);
                    }
                }
            }
            _ => {
                m.insert(key.into(), Value::Array(alts));
            }
        }
    }
    m.remove("format");
    m.remove("title");
    if m.get("default").is_some_and(Value::is_null) {
        m.remove("default");
    }
    if let Some(Value::Array(types)) = m.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let t = types.remove(0);
            m.insert("type".into(), t);
        }
    }
    if let Some(Value::Array(values)) = m.get_mut("enum") {
        values.retain(|x| !x.is_null());
    }
    if let Some(items) = m.get_mut("items") {
        tidy(items);
    }
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        for p in props.values_mut() {
            tidy(p);
        }
    }
}
