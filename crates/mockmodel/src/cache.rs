//! Prompt-cache accounting as each provider bills it, for [`crate::MockModel::account_caching`].
//!
//! The mock keeps one cache for the whole server, as a provider keeps one per organisation:
//! agents that send the same prefix share it (which is what staggered spawns count on). An
//! entry a request writes is readable only once that request has been answered (Anthropic:
//! "the cache entry is available once the first response begins"), so agents sending the
//! same prefix at the same moment all miss and all write.
//!
//! **Tokens** are an approximation: the prompt is cut into parts (each tool, the system
//! prompt or each system block, each message or message content block, each Responses input
//! item), each part serialized as compact JSON (the same bytes always give the same text), and
//! a prefix of `n` bytes of their concatenation counts `ceil(n / 4)` tokens, about four bytes a
//! token, as `agent_team_model::estimate_tokens` estimates. What matters for the accounting is
//! that identical prefixes count identically.
//!
//! **Anthropic** (messages API), after the prompt-caching guide
//! (<https://platform.claude.com/docs/en/docs/build-with-claude/prompt-caching>):
//! - only explicit breakpoints cache: a block carrying `cache_control: {"type": "ephemeral"}`
//!   (a tool, a system block, a message content block), or the top-level `cache_control`
//!   ("automatic caching"), which puts the breakpoint on the last block; at most 4 per request,
//!   more is a 400 `invalid_request_error`;
//! - the prompt is ordered tools → system → messages; the cache entry of a breakpoint is the
//!   whole prefix up to and including its block, for the request's model;
//! - a later request reads the longest entry that is still alive and whose prefix it repeats
//!   exactly, looked for at its breakpoints and at the block boundaries up to 20 blocks before
//!   each ("automatic prefix checking" looks back about 20 blocks);
//! - an entry lives 5 minutes, refreshed each time it is read (`ttl: "1h"` is not modelled);
//! - a prefix shorter than the model's minimum cacheable size is neither written nor read:
//!   4096 tokens for Claude Opus 4.5 / 4.6 and Haiku 4.5, 2048 for the older Haikus, 1024 for
//!   the others (Sonnet, Opus 4 / 4.1), as the client's `min_cacheable_tokens` has it (the
//!   guide's table, as LiteLLM's prompt-caching page and nano-gpt's repeat it; newer models
//!   such as Opus 4.7 or Opus 5 are listed there with other minimums and fall to 1024 here);
//! - usage: `cache_read_input_tokens` is the prefix read, `cache_creation_input_tokens` the
//!   tokens from there to the last breakpoint that could be written, `input_tokens` the rest
//!   (after the last breakpoint).
//!
//! **OpenAI** (chat completions and Responses), after the prompt-caching guide
//! (<https://developers.openai.com/api/docs/guides/prompt-caching>) and the cookbook's
//! "Prompt Caching 201" (`openai/openai-cookbook`, examples/Prompt_Caching_201.ipynb: caching
//! "works automatically for prompts containing 1024 tokens or more, with cache hits occurring
//! in increments of 128 tokens"; written for models before GPT-5.6):
//! - a hit is the longest prefix a recent request (of the same model and the same
//!   `prompt_cache_key`, when the request names one) already had, counted in whole steps of
//!   128 tokens from 1024 (1024, 1152, 1280, …); below 1024 tokens nothing is cached;
//! - the prompt is the tools, then the system prompt / `instructions`, then the messages /
//!   input items;
//! - entries live 5 minutes unused (the guide speaks of 5 to 10 minutes of inactivity; the
//!   mock takes the shorter), refreshed on use;
//! - usage: `prompt_tokens` (Responses: `input_tokens`) counts every prompt token and
//!   `prompt_tokens_details.cached_tokens` (`input_tokens_details.cached_tokens`) the read
//!   ones; writes cost nothing and are not reported.
//!
//! **Gemini** (`generateContent` / `streamGenerateContent`), after the context-caching page's
//! implicit caching (<https://ai.google.dev/gemini-api/docs/caching>: "enabled by default for
//! all Gemini 2.5 and newer models", a hit when a request "shares a common prefix" with a
//! recent one, a minimum input per model, the hit reported in
//! `usageMetadata.cachedContentTokenCount`). The page promises no hit, states no lifetime and
//! no granularity, so this is a simple rule chosen for the mock, an upper bound of what the
//! API may give:
//! - the prompt is the tools (each function declaration), the `systemInstruction`, then each
//!   part of each content (tagged with its role) — the order is the mock's choice, the page
//!   does not say;
//! - a hit is the longest prefix, ending at a part boundary, that a recent request of the same
//!   model already had, if at least the model's minimum: 2048 tokens for Gemini 2.5 models,
//!   4096 for every other model (the page's table, as updated in 2026, lists 4096 for every
//!   Gemini 3.x model; older versions of the page said 1024 for 2.5 Flash and 4096 for 2.5 Pro);
//! - entries live 5 minutes unused, as the others here ("send requests with similar prefix in a
//!   short amount of time" is all the page says), refreshed on use;
//! - usage: `promptTokenCount` counts every prompt token and `cachedContentTokenCount` the read
//!   ones; implicit caching writes cost nothing and are not reported. Explicit caches
//!   (`cachedContents`) are not served.

use crate::Api;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// How long an entry lives without being read.
pub(crate) const LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How many block boundaries before a breakpoint Anthropic looks back for a hit.
const LOOKBACK: usize = 20;

/// The most breakpoints an Anthropic request may carry.
const MAX_BREAKPOINTS: usize = 4;

/// OpenAI's smallest cached prefix.
const OPENAI_MIN: u64 = 1024;

/// OpenAI's step above the minimum.
const OPENAI_STEP: u64 = 128;

/// Bytes a token, in the approximation.
const BYTES_PER_TOKEN: u64 = 4;

/// What one request's prompt costs: every prompt token, those read from the cache and those
/// written to it (both part of `input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Accounting {
    /// Every prompt token.
    pub input: u64,
    /// Read from the cache.
    pub cached: u64,
    /// Written to the cache (Anthropic only).
    pub cache_write: u64,
}

/// The tokens of `bytes` bytes of prompt.
fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_TOKEN)
}

/// The cache: when each entry (a hash of the provider, the model, the key and the prefix)
/// expires.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    /// Expiry per entry.
    entries: HashMap<u64, Instant>,
    /// Entries written by requests not answered yet, by writer: a provider's cache entry can
    /// be read only once the request that wrote it has been answered, so requests sent at
    /// the same moment all miss (and all write).
    pending: HashMap<u64, Vec<(u64, Instant)>>,
    /// The writer [`PromptCache::account`] files new entries under (`None`: ready at once).
    writer: Option<u64>,
}

impl PromptCache {
    /// Accounts one request of `api` for `model` (the body's, or the path's for Gemini)
    /// arriving at `now`, writing and refreshing entries (a request [`check`] refuses is not
    /// asked about).
    pub(crate) fn account(
        &mut self,
        api: Api,
        req: &Value,
        model: &str,
        now: Instant,
    ) -> Accounting {
        self.entries.retain(|_, expires| *expires > now);
        match api {
            Api::Anthropic => self.anthropic(req, model, now),
            Api::OpenAi | Api::Responses => self.openai(api, req, model, now),
            Api::Gemini => self.gemini(req, model, now),
        }
    }

    /// [`PromptCache::account`] for a request that is answered later: the entries it writes
    /// are read by others only after [`PromptCache::answered`] with the same `writer`.
    pub(crate) fn account_pending(
        &mut self,
        writer: u64,
        api: Api,
        req: &Value,
        model: &str,
        now: Instant,
    ) -> Accounting {
        self.writer = Some(writer);
        let a = self.account(api, req, model, now);
        self.writer = None;
        a
    }

    /// The request `writer` was answered: the entries it wrote can be read now.
    pub(crate) fn answered(&mut self, writer: u64) {
        for (key, expires) in self.pending.remove(&writer).unwrap_or_default() {
            let e = self.entries.entry(key).or_insert(expires);
            *e = (*e).max(expires);
        }
    }

    /// Whether an entry is alive.
    fn alive(&self, key: u64, now: Instant) -> bool {
        self.entries.get(&key).is_some_and(|e| *e > now)
    }

    /// Writes or refreshes an entry: one alive is refreshed; a new one is readable at once, or
    /// once its writer is answered ([`PromptCache::account_pending`]).
    fn put(&mut self, key: u64, expires: Instant) {
        match (self.entries.get_mut(&key), self.writer) {
            (Some(e), _) => *e = expires,
            (None, None) => {
                self.entries.insert(key, expires);
            }
            (None, Some(w)) => self.pending.entry(w).or_default().push((key, expires)),
        }
    }

    /// Anthropic: explicit breakpoints (see the module docs).
    fn anthropic(&mut self, req: &Value, model: &str, now: Instant) -> Accounting {
        let parts = anthropic_parts(req);
        let marks: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.mark)
            .map(|(i, _)| i)
            .collect();
        let min = anthropic_min_tokens(model);
        // The hash and the size of each prefix (up to and including part i).
        let mut hasher = DefaultHasher::new();
        ("anthropic", model).hash(&mut hasher);
        let mut bytes = 0;
        let mut prefixes = Vec::with_capacity(parts.len());
        for p in &parts {
            p.text.hash(&mut hasher);
            bytes += p.text.len();
            prefixes.push((hasher.finish(), tokens(bytes)));
        }
        let input = tokens(bytes);
        // The longest live prefix at a breakpoint or within the look-back before one.
        let hit = marks
            .iter()
            .flat_map(|&m| m.saturating_sub(LOOKBACK - 1)..=m)
            .filter(|&i| prefixes[i].1 >= min && self.alive(prefixes[i].0, now))
            .max();
        let cached = hit.map_or(0, |i| prefixes[i].1);
        if let Some(i) = hit {
            self.put(prefixes[i].0, now + LIFETIME);
        }
        let mut written_to = cached;
        for &m in &marks {
            let (key, size) = prefixes[m];
            if size >= min {
                self.put(key, now + LIFETIME);
                written_to = written_to.max(size);
            }
        }
        Accounting {
            input,
            cached,
            cache_write: written_to - cached,
        }
    }

    /// OpenAI: automatic, in 128-token steps from 1024 (see the module docs).
    fn openai(&mut self, api: Api, req: &Value, model: &str, now: Instant) -> Accounting {
        let prompt: String = openai_parts(api, req).concat();
        let bytes = prompt.as_bytes();
        let input = tokens(bytes.len());
        let mut hasher = DefaultHasher::new();
        let key = req.get("prompt_cache_key").and_then(Value::as_str);
        ("openai", api == Api::Responses, model, key).hash(&mut hasher);
        // The hash of each whole 128-token step from 1024 tokens on.
        let step_bytes = (OPENAI_STEP * BYTES_PER_TOKEN) as usize;
        let mut steps = Vec::new();
        let mut at = 0;
        while at + step_bytes <= bytes.len() {
            hasher.write(&bytes[at..at + step_bytes]);
            at += step_bytes;
            let size = tokens(at);
            if size >= OPENAI_MIN {
                steps.push((hasher.finish(), size));
            }
        }
        let cached = steps
            .iter()
            .rev()
            .find(|(k, _)| self.alive(*k, now))
            .map_or(0, |(_, size)| *size);
        // The whole prompt is now cached, the part read refreshed.
        for (k, _) in steps {
            self.put(k, now + LIFETIME);
        }
        Accounting {
            input,
            cached,
            cache_write: 0,
        }
    }

    /// Gemini: implicit, at part boundaries from the model's minimum (see the module docs).
    fn gemini(&mut self, req: &Value, model: &str, now: Instant) -> Accounting {
        let min = gemini_min_tokens(model);
        let mut hasher = DefaultHasher::new();
        ("gemini", model).hash(&mut hasher);
        let mut bytes = 0;
        let mut prefixes = Vec::new();
        for part in gemini_parts(req) {
            part.hash(&mut hasher);
            bytes += part.len();
            let size = tokens(bytes);
            if size >= min {
                prefixes.push((hasher.finish(), size));
            }
        }
        let cached = prefixes
            .iter()
            .rev()
            .find(|(k, _)| self.alive(*k, now))
            .map_or(0, |(_, size)| *size);
        for (k, _) in prefixes {
            self.put(k, now + LIFETIME);
        }
        Accounting {
            input: tokens(bytes),
            cached,
            cache_write: 0,
        }
    }
}

/// The fewest tokens Gemini's implicit cache reads for `model` (see the module docs).
pub(crate) fn gemini_min_tokens(model: &str) -> u64 {
    if model.to_ascii_lowercase().contains("gemini-2.5") {
        2048
    } else {
        4096
    }
}

/// The parts of a Gemini prompt in order: each function declaration, the system instruction,
/// then each part of each content with its role, each as compact JSON.
fn gemini_parts(req: &Value) -> Vec<String> {
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut parts: Vec<String> = list(req.get("tools"))
        .iter()
        .flat_map(|t| match t.get("functionDeclarations") {
            Some(Value::Array(decls)) => decls.iter().map(Value::to_string).collect(),
            _ => vec![t.to_string()],
        })
        .collect();
    if let Some(system) = req.get("systemInstruction") {
        parts.push(json!({"system": system}).to_string());
    }
    for content in list(req.get("contents")) {
        let role = content.get("role").cloned().unwrap_or(Value::Null);
        for part in list(content.get("parts")) {
            parts.push(json!({"role": role, "part": part}).to_string());
        }
    }
    parts
}

/// Refuses a request the provider would refuse for its caching: an Anthropic request with
/// more than 4 breakpoints (the API's 400 and message).
pub(crate) fn check(api: Api, req: &Value) -> Result<(), String> {
    if api != Api::Anthropic {
        return Ok(());
    }
    let marks = anthropic_parts(req).iter().filter(|p| p.mark).count();
    if marks > MAX_BREAKPOINTS {
        return Err(format!(
            "A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {marks}."
        ));
    }
    Ok(())
}

/// The fewest tokens an Anthropic breakpoint caches for `model` (see the module docs).
pub(crate) fn anthropic_min_tokens(model: &str) -> u64 {
    let m = model.to_ascii_lowercase();
    if ["opus-4-5", "opus-4-6", "haiku-4-5"]
        .iter()
        .any(|k| m.contains(k))
    {
        4096
    } else if m.contains("haiku") {
        2048
    } else {
        1024
    }
}

/// One block of an Anthropic prompt: its canonical text and whether it is a breakpoint.
#[derive(Debug)]
struct Part {
    /// Compact JSON without `cache_control` (moving a breakpoint changes no prefix).
    text: String,
    /// It carries `cache_control`.
    mark: bool,
}

/// A block without its `cache_control`, and whether it had one.
fn unmarked(block: &Value) -> (Value, bool) {
    let mut b = block.clone();
    let mark = b
        .as_object_mut()
        .and_then(|o| o.remove("cache_control"))
        .is_some();
    (b, mark)
}

/// The blocks of an Anthropic prompt in the API's order: tools, system, messages (each
/// content block tagged with its message's role and whether it opens the message).
fn anthropic_parts(req: &Value) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut push = |v: Value, mark: bool| {
        parts.push(Part {
            text: v.to_string(),
            mark,
        })
    };
    for tool in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (t, mark) = unmarked(tool);
        push(json!({"tool": t}), mark);
    }
    match req.get("system") {
        Some(Value::String(s)) if !s.is_empty() => push(json!({"system": s}), false),
        Some(Value::Array(blocks)) => {
            for b in blocks {
                let (b, mark) = unmarked(b);
                push(json!({"system": b}), mark);
            }
        }
        _ => {}
    }
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").cloned().unwrap_or(Value::Null);
        let blocks = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(b)) => b.clone(),
            _ => vec![],
        };
        for (i, b) in blocks.iter().enumerate() {
            let (b, mark) = unmarked(b);
            push(json!({"role": role, "first": i == 0, "block": b}), mark);
        }
    }
    // Automatic caching: the top-level `cache_control` marks the last block.
    if req.get("cache_control").is_some()
        && let Some(last) = parts.last_mut()
    {
        last.mark = true;
    }
    parts
}

/// The parts of an OpenAI prompt in order: tools, then the messages (chat completions) or the
/// instructions and input items (Responses), each as compact JSON.
fn openai_parts(api: Api, req: &Value) -> Vec<String> {
    let mut parts: Vec<String> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    if api == Api::Responses {
        if let Some(i) = req.get("instructions").filter(|i| !i.is_null()) {
            parts.push(json!({"instructions": i}).to_string());
        }
        match req.get("input") {
            Some(Value::Array(items)) => parts.extend(items.iter().map(Value::to_string)),
            Some(other) => parts.push(other.to_string()),
            None => {}
        }
    } else {
        parts.extend(
            req.get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Value::to_string),
        );
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model a request body names, as the server passes it.
    fn model_of(req: &Value) -> &str {
        req["model"].as_str().unwrap_or_default()
    }

    /// Text of about `tokens` tokens.
    fn text(tokens: usize, fill: char) -> String {
        std::iter::repeat_n(fill, tokens * 4).collect()
    }

    #[test]
    fn anthropic_reads_back_through_the_lookback() {
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let eph = json!({"type": "ephemeral"});
        let system = json!([{"type": "text", "text": text(2000, 's'), "cache_control": eph}]);
        let first = json!({"model": "claude-sonnet-4-5", "system": system, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "go", "cache_control": eph}]}]});
        let a = cache.account(Api::Anthropic, &first, model_of(&first), now);
        assert_eq!(a.cached, 0);
        assert_eq!(
            a.cache_write, a.input,
            "all of it up to the last breakpoint"
        );
        // The next request has moved the breakpoint on to its newest block only; the old
        // position is found by looking back.
        let mut blocks = vec![json!({"role": "user", "content": [{"type": "text", "text": "go"}]})];
        for i in 0..5 {
            blocks.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("a{i}")}]}));
            blocks.push(
                json!({"role": "user", "content": [{"type": "text", "text": format!("u{i}")}]}),
            );
        }
        blocks.last_mut().unwrap()["content"][0]["cache_control"] = eph.clone();
        let second = json!({"model": "claude-sonnet-4-5", "system": system, "messages": blocks});
        let b = cache.account(Api::Anthropic, &second, model_of(&second), now);
        assert_eq!(b.cached, a.input, "the whole first prompt is read");
        assert_eq!(b.cached + b.cache_write, b.input, "the rest is written");
        // Another model has its own cache.
        let mut other = second.clone();
        other["model"] = json!("claude-opus-4-1");
        assert_eq!(
            cache
                .account(Api::Anthropic, &other, model_of(&other), now)
                .cached,
            0
        );
    }

    #[test]
    fn anthropic_more_than_four_breakpoints_is_an_error() {
        let eph = json!({"type": "ephemeral"});
        let blocks: Vec<Value> = (0..5)
            .map(|i| json!({"type": "text", "text": format!("b{i}"), "cache_control": eph}))
            .collect();
        let req = json!({"model": "claude-sonnet-4-5", "system": blocks, "messages": []});
        let err = check(Api::Anthropic, &req).unwrap_err();
        assert!(err.contains("maximum of 4"), "{err}");
    }

    #[test]
    fn anthropic_automatic_caching_marks_the_last_block() {
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let req = json!({"model": "claude-sonnet-4-5", "cache_control": {"type": "ephemeral"},
            "system": text(1500, 's'), "messages": [{"role": "user", "content": "hi"}]});
        let a = cache.account(Api::Anthropic, &req, model_of(&req), now);
        assert_eq!((a.cached, a.cache_write), (0, a.input));
        let b = cache.account(Api::Anthropic, &req, model_of(&req), now);
        assert_eq!((b.cached, b.cache_write), (a.input, 0));
    }

    #[test]
    fn gemini_reads_the_repeated_prefix_from_the_minimum() {
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let tools = json!([{"functionDeclarations": [{"name": "write_file", "description": "w"}]}]);
        let turn = |n: usize| {
            let mut contents = vec![json!({"role": "user", "parts": [{"text": "go"}]})];
            for i in 0..n {
                contents.push(json!({"role": "model", "parts": [{"text": format!("m{i}")}]}));
                contents.push(json!({"role": "user", "parts": [{"text": format!("u{i}")}]}));
            }
            json!({"tools": tools, "systemInstruction": {"parts": [{"text": text(5000, 's')}]},
                "contents": contents})
        };
        let a = cache.account(Api::Gemini, &turn(0), "mock-model", now);
        assert_eq!((a.cached, a.cache_write), (0, 0));
        // The next turn repeats the whole first prompt, part for part.
        let b = cache.account(Api::Gemini, &turn(1), "mock-model", now);
        assert_eq!(b.cached, a.input);
        assert!(b.input > a.input);
        // Another model has its own cache; below the minimum nothing is read.
        assert_eq!(
            cache
                .account(Api::Gemini, &turn(1), "gemini-3-flash", now)
                .cached,
            0
        );
        let small = json!({"contents": [{"role": "user", "parts": [{"text": text(3000, 'x')}]}]});
        cache.account(Api::Gemini, &small, "mock-model", now);
        assert_eq!(
            cache.account(Api::Gemini, &small, "mock-model", now).cached,
            0
        );
        cache.account(Api::Gemini, &small, "gemini-2.5-flash", now);
        let hit = cache.account(Api::Gemini, &small, "gemini-2.5-flash", now);
        assert_eq!(hit.cached, hit.input, "2.5 models cache from 2048 tokens");
        // Five minutes unused and it is gone.
        let later = now + LIFETIME + Duration::from_secs(1);
        assert_eq!(
            cache
                .account(Api::Gemini, &turn(1), "mock-model", later)
                .cached,
            0
        );
    }

    #[test]
    fn minimum_sizes_follow_the_model() {
        assert_eq!(anthropic_min_tokens("claude-sonnet-4-5-20250929"), 1024);
        assert_eq!(anthropic_min_tokens("claude-opus-4-1"), 1024);
        assert_eq!(anthropic_min_tokens("claude-3-5-haiku-20241022"), 2048);
        assert_eq!(anthropic_min_tokens("claude-haiku-4-5"), 4096);
        assert_eq!(anthropic_min_tokens("claude-opus-4-6"), 4096);
    }

    #[test]
    fn openai_counts_whole_steps_and_the_responses_prompt() {
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let req = json!({"model": "gpt", "instructions": text(1300, 'i'),
            "input": [{"type": "message", "role": "user", "content": "hi"}]});
        let a = cache.account(Api::Responses, &req, model_of(&req), now);
        assert_eq!(a.cached, 0);
        let b = cache.account(Api::Responses, &req, model_of(&req), now);
        assert_eq!(b.input, a.input);
        assert_eq!(b.cached, 1024 + 128 * ((b.input - 1024) / 128));
        // Chat completions of the same text do not share the Responses API's entries.
        let chat =
            json!({"model": "gpt", "messages": [{"role": "system", "content": text(1300, 'i')}]});
        assert_eq!(
            cache
                .account(Api::OpenAi, &chat, model_of(&chat), now)
                .cached,
            0
        );
    }
}
