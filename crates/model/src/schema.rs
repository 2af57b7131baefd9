//! Each tool schema's JSON text, written once per process. An agent sends its whole tool list
//! with every model request, and the schemas are most of its bytes; they never change, and
//! every agent of a process shares each tool's one copy ([`crate::ToolSpec::parameters`]), so
//! the text written from the first is kept for the rest, keyed by that copy.

use serde_json::Value;
use std::sync::{Arc, Mutex};

/// How many schemas are kept (a process offers a few dozen tools; one that makes schemas
/// without end gets each written anew past this, as before the memo).
const KEPT: usize = 256;

/// The schemas written so far, each beside its text. The kept `Arc` holds the schema alive,
/// so no other schema can take its address while it is listed.
static WRITTEN: Mutex<Vec<(Arc<Value>, Arc<str>)>> = Mutex::new(Vec::new());

/// `schema` as compact JSON text (what `serde_json` writes for it), written at its first use
/// in this process.
pub(crate) fn json(schema: &Arc<Value>) -> Arc<str> {
    let Ok(mut written) = WRITTEN.lock() else {
        return schema.to_string().into();
    };
    if let Some((_, text)) = written.iter().find(|(s, _)| Arc::ptr_eq(s, schema)) {
        return text.clone();
    }
    let text: Arc<str> = schema.to_string().into();
    if written.len() < KEPT {
        written.push((schema.clone(), text.clone()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_is_written_once_and_read_back_as_serde_json_writes_it() {
        let schema = Arc::new(serde_json::json!({
            "type": "object",
            "properties": {"path": {"type": "string", "description": "a \"quoted\"\nline"}},
            "required": ["path"],
        }));
        let first = json(&schema);
        assert_eq!(&*first, schema.to_string());
        let again = json(&schema.clone());
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second use reads the kept text"
        );
        // Another schema with equal contents is its own entry, written the same.
        let twin = Arc::new((*schema).clone());
        assert_eq!(json(&twin), first);
    }
}
