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
