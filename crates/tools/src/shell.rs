//! The workspace tool that runs shell commands.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `bash`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bash {
    /// the shell command line
    pub command: String,
    /// seconds before the command is killed (default 60, at most 600)
    pub timeout_secs: Option<u64>,
}

impl Tool for Bash {
    const NAME: &'static str = "bash";
    const DESCRIPTION: &'static str = "Run a shell command in the workspace (sh -c). Output is capped at 16 KiB; default timeout 60 s.";
    const AUDIENCE: Audience = Audience::WRITES;
}
