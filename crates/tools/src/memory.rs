//! The team tools of the team's shared memory: a key-value store of JSON values kept by the
//! daemon. Everyone reads; the leader writes, and a teammate writes when its role lists
//! `memory_set` (the daemon checks the same).

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `memory_set`: write one key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySet {
    /// the key, e.g. outputs/builder-1 or notes/api; '/' separates parts, at most 256 bytes
    pub key: String,
    /// any JSON value: an object, array, string, number or boolean (at most 64 KiB)
    pub value: serde_json::Value,
}

impl Tool for MemorySet {
    const NAME: &'static str = "memory_set";
    const DESCRIPTION: &'static str = "Store a JSON value under a key in the team's shared memory, replacing what was there. Every member can read it with memory_get; it survives restarts.";
    const AUDIENCE: Audience = Audience::LeaderAndRole;
}

/// Arguments of `memory_get`: read one key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryGet {
    /// the key
    pub key: String,
}

impl Tool for MemoryGet {
    const NAME: &'static str = "memory_get";
    const DESCRIPTION: &'static str =
        "Read one key of the team's shared memory: its value, its version, and who wrote it when.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}

/// Arguments of `memory_list`: the keys, all or under a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryList {
    /// only keys starting with this, e.g. outputs/
    pub prefix: Option<String>,
    /// with each key's value (lauren-ai's get_all); values past 64 KiB in all are left out
    pub values: Option<bool>,
}

impl Tool for MemoryList {
    const NAME: &'static str = "memory_list";
    const DESCRIPTION: &'static str = "The keys of the team's shared memory (optionally only those starting with a prefix) with their version, writer and size, and with values: true their values too. Read one value with memory_get.";
    const AUDIENCE: Audience = Audience::EVERYONE;
}
