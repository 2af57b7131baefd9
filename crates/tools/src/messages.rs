//! The team tools that send messages to teammates.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `send_message`: one message to one member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// the teammate's name, or leader
    pub to: String,
    /// the message
    pub text: String,
    /// one line
    pub summary: Option<String>,
}

impl Tool for SendMessage {
    const NAME: &'static str = "send_message";
    const DESCRIPTION: &'static str =
        "Send a message to one teammate (or the leader). It arrives when they are between steps.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}

/// Arguments of `broadcast`: one message to every other member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    /// the message
    pub text: String,
}

impl Tool for Broadcast {
    const NAME: &'static str = "broadcast";
    const DESCRIPTION: &'static str = "Send a message to every other member of the team.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}

/// Arguments of `read_inbox`: an agent that polls (Qwen Code's, pydantic's and Nyzhi's
/// leaders do) looks at its messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadInbox {
    /// only messages not yet read (default true)
    pub unread_only: Option<bool>,
}

impl Tool for ReadInbox {
    const NAME: &'static str = "read_inbox";
    const DESCRIPTION: &'static str = "Your messages, oldest first, without waiting: by default \
        the ones not yet read. (Messages also reach you by themselves between your steps.)";
    const AUDIENCE: Audience = Audience::EVERYONE;
}

/// Arguments of `wait_for_messages`: the long poll an external agent CLI uses over MCP to get
/// its messages (our own workers get them pushed, so it is not in their catalogue).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForMessages {
    /// how long to wait for a first message, in seconds (0 to 30; default 30)
    pub timeout_s: Option<u64>,
}

impl WaitForMessages {
    /// The longest wait one call may ask for.
    pub const MAX_TIMEOUT_S: u64 = 30;

    /// The wait this call asks for, capped at [`Self::MAX_TIMEOUT_S`].
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.timeout_s
                .unwrap_or(Self::MAX_TIMEOUT_S)
                .min(Self::MAX_TIMEOUT_S),
        )
    }
}

impl Tool for WaitForMessages {
    const NAME: &'static str = "wait_for_messages";
    const DESCRIPTION: &'static str = "Wait until messages from the team arrive (at most \
        timeout_s seconds, 30 at most) and return them, oldest first. Returns at once with \
        what is already queued.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}
