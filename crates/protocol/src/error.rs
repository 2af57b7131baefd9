//! Error codes and the structured error body every failed request gets back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The closed set of error codes a request can fail with (SPEC, issue "Core").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The named task, agent, message or request does not exist.
    NotFound,
    /// Someone else got there first (the task is owned or in progress, the name is taken).
    Conflict,
    /// The task has blockers that are not completed yet.
    Blocked,
    /// The agent already holds another in-progress task.
    Busy,
    /// The transition is not allowed from the current state.
    InvalidState,
    /// The caller's identity may not perform this operation.
    PermissionDenied,
    /// The recipient has too many unread messages.
    InboxFull,
    /// The request was malformed: bad JSON, unknown type, bad field, oversized body.
    BadRequest,
    /// The connection did not authenticate (wrong secret, wrong uid, no hello).
    Unauthorized,
    /// The client speaks a protocol version this daemon does not.
    UnsupportedVersion,
    /// Something failed inside the daemon (storage, process spawn); the request had no effect.
    Internal,
    /// A limit of the team file's `[limits]` was reached (connections, hello deadline, unread
    /// bytes, sizes); `details.limit` names it.
    LimitExceeded,
    /// The disk holding the team's state is full; nothing was changed. Reads still work.
    StorageFull,
}

impl ErrorCode {
    /// The snake_case name used on the wire and in CLI messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Blocked => "blocked",
            ErrorCode::Busy => "busy",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::InboxFull => "inbox_full",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Internal => "internal",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::StorageFull => "storage_full",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request: a code to branch on, a sentence for humans, and machine-readable details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[error("{code}: {message}")]
pub struct ErrorBody {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// A lower-case sentence saying what failed.
    pub message: String,
    /// Details such as the blockers, the held task or the valid recipient names.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ErrorBody {
    /// An error without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    /// An error with machine-readable details.
    pub fn with_details(
        code: ErrorCode,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            details,
        }
    }
}
