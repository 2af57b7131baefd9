//! Team memory's shape rules, shared by the daemon (which enforces them), the CLI (which checks
//! before it starts or reaches a daemon) and the tools: how long a key and a value may be, what
//! a key may contain, and how big the whole store may grow.

use crate::{ErrorBody, ErrorCode};
use serde_json::json;

/// The largest value accepted, counted as its compact JSON (64 KiB, like a message body).
pub const MAX_MEMORY_VALUE_LEN: usize = 64 * 1024;

/// The longest key accepted, in bytes.
pub const MAX_MEMORY_KEY_LEN: usize = 256;

/// The most keys a team's memory holds; a new key beyond it gets `limit_exceeded`.
pub const MAX_MEMORY_KEYS: usize = 10_000;

/// The most bytes (keys plus values as compact JSON) a team's memory holds, so the daemon,
/// which keeps all of it in memory, stays small; a write beyond it gets `limit_exceeded`.
pub const MAX_MEMORY_BYTES: usize = 32 << 20;

/// A `MEMORY_UPDATED` event carries the new value only when its JSON is at most this long;
/// larger values are read with `memory_get`, so the event log does not grow by 64 KiB a write.
pub const MEMORY_EVENT_VALUE_LEN: usize = 1024;

/// Why `key` is not a memory key, if it is not one: keys are 1–256 bytes of printable text
/// (no control characters, no invisible format characters such as bidi overrides), and may be
/// paths (`outputs/builder`) of non-empty segments none of which is `.` or `..`.
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("a memory key must not be empty".into());
    }
    if key.len() > MAX_MEMORY_KEY_LEN {
        return Some(format!(
            "a memory key has at most {MAX_MEMORY_KEY_LEN} bytes; this one has {}",
            key.len()
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control() || is_invisible(*c)) {
        return Some(format!(
            "a memory key must be printable; it contains {}",
            c.escape_unicode()
        ));
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some(format!(
            "memory key {key:?} has an empty, `.` or `..` segment; use keys like `outputs/builder`"
        ));
    }
    None
}

/// Format characters that change how text is shown without showing themselves (zero-width
/// spaces and joiners, bidi marks and overrides, the byte-order mark).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Checks a key, as `bad_request` with `field: "key"` and the reason.
pub fn check_key(key: &str) -> Result<(), ErrorBody> {
    match key_problem(key) {
        None => Ok(()),
        Some(why) => Err(ErrorBody::with_details(
            ErrorCode::BadRequest,
            why,
            json!({"field": "key", "limit": MAX_MEMORY_KEY_LEN, "size": key.len()}),
        )),
    }
}

/// The length of `v` as compact JSON, counted without building the text.
pub fn value_len(v: &serde_json::Value) -> usize {
    json_len(v)
}

/// The exact length of `v` serialised as compact JSON, counted without keeping the text.
pub fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail; a failure would count as what was written.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Checks a value's size, as `bad_request` with `field: "value"`, `limit` and `size`: the same
/// shape as every other size limit (`Request::check_sizes`).
pub fn check_value(v: &serde_json::Value) -> Result<usize, ErrorBody> {
    let size = value_len(v);
    if size > MAX_MEMORY_VALUE_LEN {
        return Err(ErrorBody::with_details(
            ErrorCode::BadRequest,
            format!("the value has {size} bytes as JSON; the limit is {MAX_MEMORY_VALUE_LEN}"),
            json!({"field": "value", "limit": MAX_MEMORY_VALUE_LEN, "size": size}),
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "a",
            "outputs/builder",
            "notes about the api",
            "é/ü/😀",
            "a.b/..c/d..",
            &"k".repeat(MAX_MEMORY_KEY_LEN),
        ] {
            assert_eq!(key_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "..",
            "a/../b",
            "./a",
            "a/.",
            "a\nb",
            "a\tb",
            "a\u{7f}",
            "a\u{9b}",
            "a\u{202e}b",
            "a\u{200b}",
            &"k".repeat(MAX_MEMORY_KEY_LEN + 1),
        ] {
            assert!(key_problem(bad).is_some(), "{bad:?}");
        }
        let e = check_key("a/../b").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.details["field"], "key");
    }

    #[test]
    fn value_sizes_are_the_compact_json() {
        assert_eq!(value_len(&json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#.len());
        let at_limit = json!("x".repeat(MAX_MEMORY_VALUE_LEN - 2));
        assert_eq!(check_value(&at_limit).unwrap(), MAX_MEMORY_VALUE_LEN);
        let over = json!("x".repeat(MAX_MEMORY_VALUE_LEN - 1));
        let e = check_value(&over).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            (e.details["field"].as_str(), e.details["size"].as_u64()),
            (Some("value"), Some(MAX_MEMORY_VALUE_LEN as u64 + 1))
        );
    }
}
