//! The mock model as a process, for tests outside Rust (the Python package's): prints `{"base_url": …}` on its first stdout line, then
//! reads one JSON command a line on stdin and answers one JSON line each. It serves every API;
//! `--wire openai|anthropic|gemini` (default `openai`) picks which one `base_url` is for
//! (`http://127.0.0.1:PORT/v1`, or without `/v1` for the other two).
//!
//!
//! - `{"op":"script","agent":NAME,"steps":[STEP…]}` → `{"ok":true}` (appends to the script)
//! - `{"op":"requests","agent":NAME}` → `{"requests":[BODY…]}`
//! - `{"op":"unmatched"}` → `{"unmatched":[BODY…]}`
//! - `{"op":"keys","agent":NAME}` → `{"keys":[KEY or null…]}` (the credential of each request)
//! - `{"op":"aside","needle":S,"text":S}` → `{"ok":true}` (see `MockModel::answer_aside`)
//! - `{"op":"aside_requests"}` → `{"aside_requests":[BODY…]}`
//! - `{"op":"account_caching","on":BOOL}` → `{"ok":true}` (see `MockModel::account_caching`)
//! - `{"op":"advance_clock","secs":N}` → `{"ok":true}` (the prompt cache's clock)
//! - `{"op":"billed","agent":NAME}` → `{"input":N,"cache_write":N,"cache_read":N,"output":N}`
//!
//! A STEP is `{"text":S}`, `{"tools":[[NAME,ARGS]…]}`, `{"text_and_tools":[S,[[NAME,ARGS]…]]}`,
//! `{"status":[CODE,MESSAGE]}`, `{"delay_ms":N,"then":STEP}` or
//! `{"until":[NEEDLE…],"then":STEP,"meanwhile":STEP}`. It exits when stdin closes, so it
//! never outlives the test process that started it.

use agent_team_mockmodel::{MockModel, Step, Wire};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::time::Duration;

/// `[[NAME, ARGS]…]` as a step's tool calls.
fn calls(v: &Value) -> Result<Vec<(String, Value)>, String> {
    v.as_array()
        .ok_or("tool calls must be a list")?
        .iter()
        .map(|c| match c.as_array().map(Vec::as_slice) {
            Some([Value::String(name), args]) => Ok((name.clone(), args.clone())),
            _ => Err(format!("a tool call is [name, args], not {c}")),
        })
        .collect()
}

/// One step of a script, from its JSON form (see the module docs).
fn step(v: &Value) -> Result<Step, String> {
    let inner = |key: &str| -> Result<Box<Step>, String> {
        Ok(Box::new(step(
            v.get(key).ok_or(format!("{key} missing in {v}"))?,
        )?))
    };
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return Ok(Step::Text(t.to_string()));
    }
    if let Some(c) = v.get("tools") {
        return Ok(Step::Tools(calls(c)?));
    }
    if let Some(Value::Array(pair)) = v.get("text_and_tools")
        && let [Value::String(t), c] = pair.as_slice()
    {
        return Ok(Step::TextAndTools(t.clone(), calls(c)?));
    }
    if let Some(Value::Array(pair)) = v.get("status")
        && let [code, Value::String(m)] = pair.as_slice()
    {
        let code = code.as_u64().and_then(|c| u16::try_from(c).ok());
        return Ok(Step::Status(code.ok_or("a bad status code")?, m.clone()));
    }
    if let Some(ms) = v.get("delay_ms").and_then(Value::as_u64) {
        return Ok(Step::Delay(Duration::from_millis(ms), inner("then")?));
    }
    if let Some(Value::Array(needles)) = v.get("until") {
        let needles = needles
            .iter()
            .map(|n| n.as_str().map(str::to_string).ok_or("a needle is a string"))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Step::Until {
            needles,
            then: inner("then")?,
            meanwhile: inner("meanwhile")?,
        });
    }
    Err(format!("not a step: {v}"))
}

/// The answer to one command line.
fn answer(mock: &MockModel, line: &str) -> Value {
    let cmd: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"error": format!("not JSON: {e}")}),
    };
    let agent = cmd["agent"].as_str().unwrap_or_default();
    match cmd["op"].as_str() {
        Some("script") => {
            let steps = cmd["steps"]
                .as_array()
                .map(|s| s.iter().map(step).collect::<Result<Vec<_>, _>>())
                .unwrap_or_else(|| Err("steps must be a list".into()));
            match steps {
                Ok(steps) => {
                    mock.script(agent, steps);
                    json!({"ok": true})
                }
                Err(e) => json!({"error": e}),
            }
        }
        Some("requests") => json!({"requests": mock.requests(agent)}),
        Some("unmatched") => json!({"unmatched": mock.unmatched()}),
        Some("keys") => json!({"keys": mock.keys(agent)}),
        Some("aside") => match (cmd["needle"].as_str(), cmd["text"].as_str()) {
            (Some(needle), Some(text)) => {
                mock.answer_aside(needle, text);
                json!({"ok": true})
            }
            _ => json!({"error": "aside needs a needle and a text"}),
        },
        Some("aside_requests") => json!({"aside_requests": mock.aside_requests()}),
        Some("account_caching") => {
            mock.account_caching(cmd["on"].as_bool().unwrap_or(true));
            json!({"ok": true})
        }
        Some("advance_clock") => {
            mock.advance_clock(Duration::from_secs_f64(
                cmd["secs"].as_f64().unwrap_or(0.0).max(0.0),
            ));
            json!({"ok": true})
        }
        Some("billed") => {
            let b = mock.billed(agent);
            json!({"input": b.input, "cache_write": b.cache_write, "cache_read": b.cache_read, "output": b.output})
        }
        _ => json!({"error": format!("unknown op in {cmd}")}),
    }
}

/// The wire `--wire NAME` asks for, `openai` when not given.
fn wire() -> std::io::Result<Wire> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = match args.as_slice() {
        [] => "openai",
        [flag, name] if flag == "--wire" => name.as_str(),
        _ => "",
    };
    match name {
        "openai" => Ok(Wire::OpenAi),
        "anthropic" => Ok(Wire::Anthropic),
        "gemini" => Ok(Wire::Gemini),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("usage: agent-team-mockmodel [--wire openai|anthropic|gemini], not {args:?}"),
        )),
    }
}

fn main() -> std::io::Result<()> {
    let mock = MockModel::start_background(wire()?)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({"base_url": mock.base_url()}))?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", answer(&mock, &line))?;
        out.flush()?;
    }
    Ok(())
}
