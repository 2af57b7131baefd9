//! The hook wire: what `agent-team-bridge hook …` (run by the CLI at the end of a turn, or before a
//! call of one of its own tools) and the agent's MCP server say to each other on the hook
//! socket. One connection carries one request line and one reply line:
//!
//! - request: `KEY {…}\n`, this launch's hook key (the authentication, from the 0600 file
//!   beside the socket), one space, then a [`HookRequest`] as JSON, e.g.
//!   `KEY {"hook":"stop"}` or `KEY {"hook":"permission","tool":"bash","args":{"command":"ls"}}`;
//!   at most [`PERMISSION_LINE_MAX`] bytes with its newline;
//! - reply: a [`HookReply`] as JSON on one line, e.g. `{"reply":"messages","messages":[…]}`,
//!   `{"reply":"verdict","allow":false,"reason":"…"}` or `{"reply":"error","error":"…"}`.
//!
//! A CLI's hook itself (`agent-team-bridge hook …`, or `agent-team hook …`) sends
//! [`HookRequest::Cli`]: its input follows the line until the caller half-closes (at most
//! [`HOOK_INPUT_MAX`] bytes), and the reply is not JSON but the hook's exit code on a line, then
//! the text the hook prints (to stdout on 0, else to stderr), so the bridge needs no JSON
//! parser. The server does the rest: which calls it judges, one verdict per file, the answer in
//! the CLI's own shape.
//!
//! Both ends use these types and nothing else. A reply the hook cannot read, or one that is not
//! the answer to its question, never lets a call through ([`verdict_of`]).

use crate::permission::PERMISSION_LINE_MAX;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a hook asks the agent's MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "hook", rename_all = "snake_case", deny_unknown_fields)]
pub enum HookRequest {
    /// The CLI's turn ended: what is queued for the agent?
    Stop,
    /// The CLI is about to call one of its own tools, given
    /// as our tool `tool` with the `args` our policy judges: may it?
    Permission {
        /// Our tool the CLI's stands for ([`crate::permission::our_call`]).
        tool: String,
        /// The arguments our policy judges.
        args: Value,
    },
    /// A CLI's hook, its input following the line: the server answers as that hook prints.
    Cli {
        /// Which hook.
        event: CliHook,
        /// The CLI (a provider name, e.g. `codex`), for the shape of a pre-tool answer;
        /// Claude Code's when none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cli: Option<String>,
    },
}

/// The hooks a CLI runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CliHook {
    /// At its turn's end.
    Stop,
    /// Before a call of one of its own tools.
    PreToolUse,
}

/// The most of a CLI hook's input the server reads.
pub const HOOK_INPUT_MAX: u64 = PERMISSION_LINE_MAX * 4;

/// The reply to a [`HookRequest::Cli`]: the hook's exit code on a line, then its text.
pub fn cli_reply(code: u8, text: &str) -> Vec<u8> {
    format!("{code}\n{text}").into_bytes()
}

/// What the agent's MCP server answers a hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum HookReply {
    /// To `stop`: the messages queued for the agent, as the CLI is given them, in the order to
    /// act on them; none lets the turn end (the agent is idle).
    Messages {
        /// One rendered message each.
        messages: Vec<String>,
    },
    /// To `stop`: the team asked the agent to shut down (the request is answered and read);
    /// the CLI is to stop, told `reason`.
    Shutdown {
        /// What the CLI is told.
        reason: String,
    },
    /// To `permission`: the decision on the call.
    Verdict {
        /// Whether the call may go ahead.
        allow: bool,
        /// Why not (empty when allowed).
        reason: String,
    },
    /// The request was refused or not understood: not this launch's key, not a process of the
    /// agent's CLI, a malformed or cut request.
    Error {
        /// Why.
        error: String,
    },
}

/// Why a hook line could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The request line would be longer than the server reads ([`PERMISSION_LINE_MAX`]).
    #[error("the request is too long to be judged ({0} bytes, at most {PERMISSION_LINE_MAX})")]
    TooLong(usize),
    /// The line does not start with this launch's hook key (or the key is not one word).
    #[error("not this launch's hook key")]
    BadKey,
    /// The line has no newline: cut at the length bound, or the peer stopped sending.
    #[error("the request is not one whole line")]
    Unterminated,
    /// The request after the key is not a [`HookRequest`].
    #[error("a bad hook request: {0}")]
    BadRequest(String),
    /// The reply is not a [`HookReply`].
    #[error("a bad answer from the team server: {0}")]
    BadReply(String),
    /// The reply is a [`HookReply`], but not an answer to this hook's question.
    #[error("the team server answered {0} to this hook")]
    Unexpected(&'static str),
}

/// The request line for `request` under the hook key `key`: `KEY {json}\n`, refused when the
/// server would not read it whole.
pub fn request_line(key: &str, request: &HookRequest) -> Result<String, WireError> {
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(WireError::BadKey);
    }
    let json = serde_json::to_string(request).map_err(|e| WireError::BadRequest(e.to_string()))?;
    let line = format!("{key} {json}\n");
    if line.len() as u64 > PERMISSION_LINE_MAX {
        return Err(WireError::TooLong(line.len()));
    }
    Ok(line)
}

/// Reads a request line (as received, newline included) under the hook key `key`. The key is
/// checked first ([`WireError::BadKey`]), so a caller can tell a stranger from a garbled line.
pub fn read_request(line: &str, key: &str) -> Result<HookRequest, WireError> {
    let rest = line
        .strip_prefix(key)
        .and_then(|l| l.strip_prefix(' '))
        .filter(|_| !key.is_empty())
        .ok_or(WireError::BadKey)?;
    let json = rest.strip_suffix('\n').ok_or(WireError::Unterminated)?;
    serde_json::from_str(json).map_err(|e| WireError::BadRequest(e.to_string()))
}

/// The reply line for `reply` (JSON, then a newline).
pub fn reply_line(reply: &HookReply) -> Vec<u8> {
    let mut out = serde_json::to_vec(reply)
        // Strings and a bool always encode; this is never sent, but is a refusal if it were.
        .unwrap_or_else(|_| {
            br#"{"reply":"error","error":"the answer could not be encoded"}"#.to_vec()
        });
    out.push(b'\n');
    out
}

/// Reads a reply line.
pub fn read_reply(line: &str) -> Result<HookReply, WireError> {
    serde_json::from_str(line.trim_end()).map_err(|e| WireError::BadReply(e.to_string()))
}

/// What the permission hook makes of the server's reply line: (allowed, why not). Only a
/// verdict allows; an error, a reply to another hook, or a line that is not a reply refuses.
pub fn verdict_of(line: &str) -> (bool, String) {
    match read_reply(line) {
        Ok(HookReply::Verdict { allow, reason }) => (allow, reason),
        Ok(HookReply::Error { error }) => (false, error),
        Ok(other) => (false, WireError::Unexpected(other.kind()).to_string()),
        Err(e) => (false, e.to_string()),
    }
}

impl HookReply {
    /// The reply's name on the wire, for messages.
    fn kind(&self) -> &'static str {
        match self {
            HookReply::Messages { .. } => "messages",
            HookReply::Shutdown { .. } => "shutdown",
            HookReply::Verdict { .. } => "verdict",
            HookReply::Error { .. } => "error",
        }
    }
}

/// What a `Stop` hook prints for Claude Code and Qwen Code.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum StopOutput {
    /// The turn goes on with `reason` as the next instruction.
    Block {
        decision: &'static str,
        reason: String,
    },
    /// The CLI stops, with nothing more to do.
    Stop {
        #[serde(rename = "continue")]
        go_on: bool,
        #[serde(rename = "stopReason")]
        stop_reason: String,
    },
}

/// What the turn-end hook prints for the server's reply line: the queued messages handed back
/// as the next instruction (`{"decision":"block","reason":…}`), the CLI told to stop
/// (`{"continue":false,"stopReason":…}`) when the agent is shutting down, or nothing (`None`:
/// the turn ends). An error or an unreadable reply is an error: the hook fails, the turn ends.
pub fn stop_output(line: &str) -> Result<Option<String>, WireError> {
    stop_output_of(read_reply(line)?)
}

/// What the turn-end hook prints for `reply` (see [`stop_output`]).
pub fn stop_output_of(reply: HookReply) -> Result<Option<String>, WireError> {
    let out = match reply {
        HookReply::Messages { messages } if messages.is_empty() => return Ok(None),
        HookReply::Messages { messages } => StopOutput::Block {
            decision: "block",
            reason: format!(
                "New messages from your team; act on them now:\n{}",
                messages.join("\n")
            ),
        },
        HookReply::Shutdown { reason } => StopOutput::Stop {
            go_on: false,
            stop_reason: reason,
        },
        HookReply::Error { error } => return Err(WireError::BadReply(error)),
        other => return Err(WireError::Unexpected(other.kind())),
    };
    serde_json::to_string(&out)
        .map(Some)
        .map_err(|e| WireError::BadReply(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn permission() -> HookRequest {
        HookRequest::Permission {
            tool: "bash".into(),
            args: json!({"command": "ls\nrm -rf /"}),
        }
    }

    #[test]
    fn every_request_and_reply_goes_round_trip() {
        for r in [HookRequest::Stop, permission()] {
            let line = request_line("k3y", &r).unwrap();
            assert_eq!(read_request(&line, "k3y").unwrap(), r);
        }
        for r in [
            HookReply::Messages {
                messages: vec!["[message 1 from leader] hi\nthere".into()],
            },
            HookReply::Messages { messages: vec![] },
            HookReply::Shutdown {
                reason: "bye".into(),
            },
            HookReply::Verdict {
                allow: true,
                reason: String::new(),
            },
            HookReply::Error { error: "no".into() },
        ] {
            let line = reply_line(&r);
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            assert!(line.ends_with(b"\n"));
            assert_eq!(read_reply(std::str::from_utf8(&line).unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn the_lines_are_exactly_these() {
        assert_eq!(
            request_line("k3y", &HookRequest::Stop).unwrap(),
            "k3y {\"hook\":\"stop\"}\n"
        );
        assert_eq!(
            request_line("k3y", &permission()).unwrap(),
            "k3y {\"hook\":\"permission\",\"tool\":\"bash\",\"args\":{\"command\":\"ls\\nrm -rf /\"}}\n"
        );
        let line = |r: HookReply| String::from_utf8(reply_line(&r)).unwrap();
        assert_eq!(
            line(HookReply::Messages {
                messages: vec!["a".into()]
            }),
            "{\"reply\":\"messages\",\"messages\":[\"a\"]}\n"
        );
        assert_eq!(
            line(HookReply::Shutdown { reason: "r".into() }),
            "{\"reply\":\"shutdown\",\"reason\":\"r\"}\n"
        );
        assert_eq!(
            line(HookReply::Verdict {
                allow: false,
                reason: "r".into()
            }),
            "{\"reply\":\"verdict\",\"allow\":false,\"reason\":\"r\"}\n"
        );
        assert_eq!(
            line(HookReply::Error { error: "e".into() }),
            "{\"reply\":\"error\",\"error\":\"e\"}\n"
        );
    }

    #[test]
    fn a_request_needs_the_key_one_whole_line_and_a_known_hook() {
        let stop = request_line("k3y", &HookRequest::Stop).unwrap();
        assert_eq!(read_request(&stop, "other"), Err(WireError::BadKey));
        assert_eq!(read_request(&stop, ""), Err(WireError::BadKey));
        assert_eq!(read_request(&stop[4..], "k3y"), Err(WireError::BadKey));
        assert_eq!(
            read_request(stop.trim_end(), "k3y"),
            Err(WireError::Unterminated)
        );
        // The old textual requests, unknown hooks and extra fields are not requests.
        for bad in [
            "k3y stop\n",
            "k3y permission {\"tool\":\"bash\",\"args\":{}}\n",
            "k3y {\"hook\":\"shutdown\"}\n",
            "k3y {\"hook\":\"permission\",\"tool\":\"bash\"}\n",
            "k3y {\"hook\":\"permission\",\"tool\":\"bash\",\"args\":{},\"allow\":true}\n",
        ] {
            assert!(
                matches!(read_request(bad, "k3y"), Err(WireError::BadRequest(_))),
                "{bad}"
            );
        }
        assert_eq!(
            request_line("a key", &HookRequest::Stop),
            Err(WireError::BadKey)
        );
        let huge = HookRequest::Permission {
            tool: "bash".into(),
            args: json!({"command": "x".repeat(PERMISSION_LINE_MAX as usize)}),
        };
        assert!(matches!(
            request_line("k3y", &huge),
            Err(WireError::TooLong(_))
        ));
    }

    #[test]
    fn only_a_verdict_allows_and_anything_malformed_or_unknown_denies() {
        assert_eq!(
            verdict_of("{\"reply\":\"verdict\",\"allow\":true,\"reason\":\"\"}\n"),
            (true, String::new())
        );
        assert_eq!(
            verdict_of("{\"reply\":\"error\",\"error\":\"not this launch's hook key\"}"),
            (false, "not this launch's hook key".into())
        );
        for bad in [
            "",
            "\n",
            "garbage",
            "{\"allow\":true,\"reason\":\"\"}",
            "{\"reply\":\"verdict\",\"allow\":\"yes\",\"reason\":\"\"}",
            "{\"reply\":\"verdict\",\"allow\":true}",
            "{\"reply\":\"allow\"}",
            "{\"reply\":\"verdict\",\"allow\":true,\"reason\":\"\",\"more\":1}",
            "{\"reply\":\"messages\",\"messages\":[]}",
            "{\"reply\":\"shutdown\",\"reason\":\"bye\"}",
        ] {
            let (allow, why) = verdict_of(bad);
            assert!(!allow, "{bad:?} let a call through");
            assert!(!why.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn the_stop_hook_prints_messages_as_a_block_a_shutdown_as_a_stop_and_nothing_when_idle() {
        let out = |r: HookReply| {
            stop_output(std::str::from_utf8(&reply_line(&r)).unwrap())
                .map(|o| o.map(|s| serde_json::from_str::<Value>(&s).unwrap()))
        };
        assert_eq!(out(HookReply::Messages { messages: vec![] }), Ok(None));
        assert_eq!(
            out(HookReply::Messages {
                messages: vec!["m1".into(), "m2".into()]
            }),
            Ok(Some(json!({
                "decision": "block",
                "reason": "New messages from your team; act on them now:\nm1\nm2",
            })))
        );
        assert_eq!(
            out(HookReply::Shutdown {
                reason: "bye".into()
            }),
            Ok(Some(json!({"continue": false, "stopReason": "bye"})))
        );
        assert!(out(HookReply::Error { error: "e".into() }).is_err());
        assert!(
            out(HookReply::Verdict {
                allow: true,
                reason: String::new()
            })
            .is_err()
        );
        assert!(stop_output("{\"messages\":[\"old shape\"]}").is_err());
        assert!(stop_output("").is_err());
    }
}
