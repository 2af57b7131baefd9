//! The frames exchanged on a connection: the handshake, requests, responses and pushes.

use crate::error::ErrorBody;
use crate::model::{Envelope, Message, PermRequest, Task};
use crate::request::{Reply, Request};
use serde::{Deserialize, Serialize};

/// How a connection proves who it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// The CLI or a script of the socket's owner, with the team's operator credential.
    Operator {
        /// The credential from the runtime dir.
        secret: String,
    },
    /// An agent process, with the secret the daemon gave it at spawn.
    Agent {
        /// The agent's name.
        name: String,
        /// The agent's secret.
        secret: String,
        /// The incarnation it was started as (from `AGENT_TEAM_INCARNATION`).
        #[serde(default)]
        incarnation: u64,
    },
    /// A worker dialing in over the team's TLS endpoint (`agent-team-worker --join`) with a
    /// one-use join token; the welcome carries the agent's own secret, which every later
    /// hello uses. Refused on the Unix socket.
    Join {
        /// The name the token was made for; `None` takes the token's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The join token `agent-team join` printed.
        token: String,
    },
}

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub protocol: u32,
    /// The team the client expects to reach.
    pub team: String,
    /// The identity.
    pub auth: Auth,
    /// Free-form client name for logs, e.g. `agent-team-cli/0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// An agent starting its loop: the welcome carries what it reads first ([`StartReads`])
    /// and the connection's task watch is on, saving it a round of requests.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start: bool,
}

/// The daemon's answer to a good hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version in use.
    pub protocol: u32,
    /// The team.
    pub team: String,
    /// Who this connection acts as: `operator` or the agent's name.
    pub identity: String,
    /// The agent's role (`operator` for the operator).
    pub role: String,
    /// The agent's current incarnation (0 for the operator).
    pub incarnation: u64,
    /// The daemon's process id.
    pub daemon_pid: u32,
    /// For an agent's hello that asked (`start`): what it reads as it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Box<StartReads>>,
    /// For a join hello ([`Auth::Join`]): the agent's own secret, for every later hello; the
    /// connection ends after this welcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// What an agent reads as it starts, each the reply its request would get (`get_config`,
/// `agents`, `team_info` for the leader, `task_list` of the tasks in progress), answered with
/// the welcome after `watch_tasks`. Each is taken once; a later read asks the daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartReads {
    /// `get_config`'s reply.
    pub config: Option<Reply>,
    /// `agents`' reply; when `members` is set, only the agent itself and the members its
    /// prompt names ([`crate::prompt_members`]), not the whole roster.
    pub agents: Option<Reply>,
    /// The roster's size when `agents` holds only part of it (a large team: each starting
    /// agent read and kept every member before).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub members: u32,
    /// `team_info`'s reply (the leader's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Reply>,
    /// `task_list`'s reply for the tasks in progress (its first page).
    pub tasks: Option<Reply>,
    /// `budget_check`'s grant for the agent's first model request, given only to an agent on
    /// the model loop that no budget limits (its first request then asks nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Reply>,
    /// How many of the agent's unread messages the daemon pushes right behind the welcome: the
    /// agent takes them in before its first turn, as it would have during its own reads.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unread: u32,
}

/// Whether a count is zero (left out of the wire).
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A frame from a client. Unknown fields are refused, as docs/PROTOCOL.md says.
// A request is nearly every frame (a hello is one per connection), decoded and moved on once:
// boxing it would cost an allocation per request to shrink the rare variant's size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// The handshake; must be the first frame.
    Hello(Hello),
    /// A request; the response carries the same id.
    Request {
        /// Chosen by the client, echoed in the response.
        id: u64,
        /// The operation.
        body: Request,
        /// A client-chosen id that names this operation across retries and connections: a
        /// mutating request repeated with the same `rid` by the same identity is answered with
        /// the original reply instead of being applied again (exactly once across reconnects).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// The sender waits for no answer (progress events, statuses): the daemon sends none,
        /// and may hold what it changes for its next commit instead of syncing it alone.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_reply: bool,
    },
}

/// The longest request id (`rid`) the daemon accepts.
pub const MAX_RID_LEN: usize = 128;

/// Something the daemon pushes without being asked. The larger payloads are boxed (the wire
/// is the same): every client's channel of pushes holds them 32 slots at a time, each the
/// size of the largest variant (368 bytes before, 12 KB a connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "push", rename_all = "snake_case")]
pub enum Push {
    /// A message for the connected agent; acknowledge it with `ack`.
    Message {
        /// The message.
        message: Message,
        /// A budget lease granted for the agent's next model request, which the message may
        /// start: the agent runs our model loop and no budget limits it (its `budget_check`
        /// would be granted anyway). Saves the turn a round trip to the daemon. The agent keeps
        /// the last push's word (absent: ask as usual, and drop a grant an earlier push gave).
        #[serde(default, skip_serializing_if = "crate::request::is_false")]
        lease: bool,
    },
    /// An event for a subscriber.
    Event {
        /// The event.
        envelope: Box<Envelope>,
    },
    /// A task changed (only to connections that asked with `watch_tasks`).
    Task {
        /// The task after the change.
        task: Box<Task>,
    },
    /// One of the connected agent's permission requests was decided.
    PermissionDecided {
        /// The request with its decision.
        request: Box<PermRequest>,
    },
}

/// A frame from the daemon. Made to be encoded or read at once, never queued: its size is
/// a reply's, on the stack for a moment.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The handshake succeeded.
    Welcome(Welcome),
    /// The answer to request `id`: exactly one of `ok` and `error` is present.
    Response {
        /// The request's id.
        id: u64,
        /// The reply on success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Reply>,
        /// The error on failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    /// A push.
    Push(Push),
    /// A connection-level error (bad handshake, unreadable frame); the daemon may close after it.
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
}

impl ServerFrame {
    /// A response from a request's outcome.
    pub fn response(id: u64, outcome: Result<Reply, ErrorBody>) -> Self {
        match outcome {
            Ok(reply) => ServerFrame::Response {
                id,
                ok: Some(reply),
                error: None,
            },
            Err(e) => ServerFrame::Response {
                id,
                ok: None,
                error: Some(e),
            },
        }
    }

    /// The outcome a response frame carries (`None` for other frames, or a response with
    /// neither a reply nor an error), the inverse of [`ServerFrame::response`].
    pub fn into_outcome(self) -> Option<Result<Reply, ErrorBody>> {
        match self {
            ServerFrame::Response { ok: Some(r), .. } => Some(Ok(r)),
            ServerFrame::Response { error: Some(e), .. } => Some(Err(e)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, MessageKind};
    use serde_json::json;

    /// Every client keeps a channel of pushes, which holds 32 of them at a time: a push is
    /// the size of a message, its larger payloads boxed (it was 368 bytes, an event's).
    #[test]
    fn a_push_is_no_larger_than_a_message_push() {
        assert!(
            std::mem::size_of::<Push>() <= std::mem::size_of::<Message>() + 8,
            "{} bytes",
            std::mem::size_of::<Push>()
        );
        // Boxed or not, the wire is the same.
        let wire = json!({"push": "task", "task": {
            "id": 7, "title": "t", "description": "", "status": "pending", "owner": null,
            "blocked_by": [], "created_by": "lead", "result": null, "attempts": 0,
            "created_at": "2026-11-29T08:00:00Z", "updated_at": "2026-11-29T08:00:01Z"}});
        let push: Push = serde_json::from_value(wire.clone()).unwrap();
        assert!(matches!(&push, Push::Task { task } if task.id == 7 && task.title == "t"));
        let again = serde_json::to_value(&push).unwrap();
        assert_eq!(again["task"]["id"], 7);
        assert_eq!(serde_json::from_value::<Push>(again).unwrap(), push);
    }

    #[test]
    fn unknown_fields_of_a_frame_are_refused() {
        let ok = json!({"type":"request","id":1,"body":{"op":"ping"}});
        assert!(serde_json::from_value::<ClientFrame>(ok).is_ok());
        let extra = json!({"type":"request","id":1,"body":{"op":"ping"},"sudo":true});
        let e = serde_json::from_value::<ClientFrame>(extra).unwrap_err();
        assert!(e.to_string().contains("sudo"), "{e}");
        let hello = json!({"type":"hello","protocol":1,"team":"t","auth":{"kind":"operator","secret":"s"},"x":1});
        assert!(serde_json::from_value::<ClientFrame>(hello).is_err());
    }

    #[test]
    fn request_shape_is_stable() {
        let f = ClientFrame::Request {
            id: 7,
            body: Request::Send {
                to: "bob".into(),
                body: "hi".into(),
                kind: MessageKind::Text,
                summary: None,
                dedup: None,
            },
            rid: None,
            no_reply: false,
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"type":"request","id":7,"body":{"op":"send","to":"bob","body":"hi","kind":"text"}})
        );
        let back: ClientFrame = serde_json::from_value(
            json!({"type":"request","id":7,"body":{"op":"send","to":"bob","body":"hi"}}),
        )
        .unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn unit_requests_need_only_op() {
        let f: ClientFrame =
            serde_json::from_value(json!({"type":"request","id":1,"body":{"op":"ping"}})).unwrap();
        assert_eq!(
            f,
            ClientFrame::Request {
                id: 1,
                body: Request::Ping,
                rid: None,
                no_reply: false,
            }
        );
    }

    #[test]
    fn rid_travels_only_when_set() {
        let f = ClientFrame::Request {
            id: 2,
            body: Request::TaskClaimNext,
            rid: Some("ab12".into()),
            no_reply: false,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            json!({"type":"request","id":2,"body":{"op":"task_claim_next"},"rid":"ab12"})
        );
        assert_eq!(serde_json::from_value::<ClientFrame>(v).unwrap(), f);
    }

    #[test]
    fn no_reply_travels_only_when_set() {
        let f = ClientFrame::Request {
            id: 3,
            body: Request::Ping,
            rid: None,
            no_reply: true,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            json!({"type":"request","id":3,"body":{"op":"ping"},"no_reply":true})
        );
        assert_eq!(serde_json::from_value::<ClientFrame>(v).unwrap(), f);
    }

    #[test]
    fn unknown_fields_and_ops_are_refused() {
        assert!(
            serde_json::from_value::<ClientFrame>(
                json!({"type":"request","id":1,"body":{"op":"nope"}})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<ClientFrame>(
                json!({"type":"request","id":1,"body":{"op":"task_show","id":1,"extra":2}})
            )
            .is_err()
        );
    }

    #[test]
    fn error_response_shape() {
        let f = ServerFrame::response(
            3,
            Err(ErrorBody::with_details(
                ErrorCode::Busy,
                "x",
                json!({"task": 4}),
            )),
        );
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"type":"response","id":3,"error":{"code":"busy","message":"x","details":{"task":4}}})
        );
    }
}
