//! The workspace tools on files: read, write, edit, list, search. Paths are relative to the
//! workspace (or absolute inside it); the worker refuses any that escapes.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `read_file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    /// the file, relative to the workspace
    pub path: String,
    /// where to start, in bytes (default 0)
    pub offset: Option<u64>,
}

impl Tool for ReadFile {
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str =
        "Read a text file of the workspace (up to 64 KiB from `offset`).";
    const AUDIENCE: Audience = Audience::READ_ONLY;
}

/// Arguments of `write_file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    /// the file, relative to the workspace
    pub path: String,
    /// its whole new content
    pub content: String,
}

impl Tool for WriteFile {
    const NAME: &'static str = "write_file";
    const DESCRIPTION: &'static str = "Create or replace a file of the workspace.";
    const AUDIENCE: Audience = Audience::WRITES;
}

/// Arguments of `edit_file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditFile {
    /// the file, relative to the workspace
    pub path: String,
    /// the exact text to replace
    pub old_string: String,
    /// what replaces it
    pub new_string: String,
    /// replace every occurrence instead of exactly one
    pub replace_all: Option<bool>,
}

impl Tool for EditFile {
    const NAME: &'static str = "edit_file";
    const DESCRIPTION: &'static str = "Replace exactly one occurrence of old_string with new_string in a file (all of them with replace_all).";
    const AUDIENCE: Audience = Audience::WRITES;
}

/// Arguments of `list_files`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFiles {
    /// the directory, relative to the workspace (default: the workspace)
    pub path: Option<String>,
    /// only files whose path contains this
    pub contains: Option<String>,
}

impl Tool for ListFiles {
    const NAME: &'static str = "list_files";
    const DESCRIPTION: &'static str = "List files under a directory of the workspace (recursive, .git skipped), optionally only names containing `contains`.";
    const AUDIENCE: Audience = Audience::READ_ONLY;
}

/// Arguments of `grep`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grep {
    /// a regular expression
    pub pattern: String,
    /// the file or directory to search, relative to the workspace (default: the workspace)
    pub path: Option<String>,
}

impl Tool for Grep {
    const NAME: &'static str = "grep";
    const DESCRIPTION: &'static str =
        "Search the workspace's files for a regular expression; returns file:line: text.";
    const AUDIENCE: Audience = Audience::READ_ONLY;
}

/// Arguments of `glob`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Glob {
    /// a pattern relative to the workspace: `*` and `?` within a name, `**` across directories,
    /// `{a,b}` alternatives, `[abc]` classes; e.g. src/**/*.rs
    pub pattern: String,
}

impl Tool for Glob {
    const NAME: &'static str = "glob";
    const DESCRIPTION: &'static str = "Find the workspace's files whose path matches a glob pattern (e.g. src/**/*.rs), sorted, at most 1000 (.git skipped).";
    const AUDIENCE: Audience = Audience::READ_ONLY;
}
