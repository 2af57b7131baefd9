//! The workspace tool that reads the web: one HTTP(S) GET, its text. It changes nothing in the
//! workspace, but every role is asked before it runs unless its policy allows `web_fetch`.

use crate::{Audience, Tool};
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `web_fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebFetch {
    /// the http:// or https:// address to read
    pub url: String,
}

impl Tool for WebFetch {
    const NAME: &'static str = "web_fetch";
    const DESCRIPTION: &'static str = "Fetch a web page with an HTTP(S) GET and return its text (HTML reduced to text; the first 1 MiB of the body, at most 64 KiB of text; 30 s timeout). A redirect to another site is not followed: its address comes back for a web_fetch of its own. Asks for permission unless the role's policy allows web_fetch.";
    const AUDIENCE: Audience = Audience::READ_ONLY;
}
