//! The workspace tools that reach the web: `web_fetch` (one HTTP(S) GET, its text) and
//! `web_search` (a query to the search service of the team file's `[search]`). They change
//! nothing in the workspace, but every role is asked before each call unless its policy allows
//! the tool.

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

/// Arguments of `web_search`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSearch {
    /// what to search the web for
    pub query: String,
    /// how many results (default 5, at most 20)
    pub count: Option<u32>,
}

impl Tool for WebSearch {
    const NAME: &'static str = "web_search";
    const DESCRIPTION: &'static str = "Search the web and return a numbered list of results: title, address and a short snippet each (default 5, at most 20). Uses the search service of the team file's [search] (SearXNG, Brave or Tavily); read a result with web_fetch. Asks for permission unless the role's policy allows web_search.";
    const AUDIENCE: Audience = Audience::READ_ONLY;
}
