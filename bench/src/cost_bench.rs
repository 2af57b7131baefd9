//! What a team costs (issue 30, item 3): a scripted multi-turn team run against the mock model
//! in its caching mode (`MockModel::account_caching`), which bills prompt caching as Anthropic
//! and OpenAI do, once over each wire. Each figure is printed beside the floor computed from
//! the same requests: each turn's new tokens at the full input price plus every repeated prefix
//! as a cache read.
//!
//! The team: our real leader and 3 real `worker` teammates (the process backend, our worker
//! binary, so the system prompts and tool lists are exactly what the worker sends), about 20
//! turns each; every working turn reads a file of ~1.5 KB (`read_file`, or `bash` `cat` for
//! the teammates), so each turn adds 1–2 KB of tool output to the conversation.

use crate::daemon_bench::bin_dir;
use crate::report::*;
use agent_team_config::{PICO_PER_USD, Price, price_for};
use agent_team_mockmodel::{Billed, MockModel, Step, Wire};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// How long the mock takes to answer a teammate's first request.
const FIRST_ANSWER: std::time::Duration = std::time::Duration::from_millis(400);

/// The teammates.
const MATES: [&str; 3] = ["t1", "t2", "t3"];

/// Working turns (one file read each) of every agent, between its first turns and its last.
const WORK_TURNS: usize = 17;

/// The goals of the issue.
const SHARE_GOAL: f64 = 0.85;
const FLOOR_GOAL: f64 = 1.2;

/// A file of about 1.5 KB, different for each `n`.
fn file_text(n: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 1500 {
        s.push_str(&format!(
            "{n:02}.{i:02} fn handler_{n}_{i}(req: &Request) -> Result<Response> {{ route(req, {}) }}\n",
            n * 97 + i * 13
        ));
        i += 1;
    }
    s
}

/// The file an agent reads on its `k`-th working turn (each agent its own, so no two turns
/// share tool output by accident).
fn file_for(agent: usize, k: usize) -> String {
    format!("src/f{agent}_{k:02}.rs")
}

fn script(mock: &MockModel) {
    let mut leader = vec![
        Step::tools(
            &MATES
                .iter()
                .map(|m| {
                    (
                        "create_task",
                        json!({"title": format!("review module {m}")}),
                    )
                })
                .collect::<Vec<_>>(),
        ),
        // The three together, as one `spawn_team`: they start staggered (the first at once,
        // the others once its first request is answered) unless `spawn_stagger_ms = 0`.
        Step::tools(&[(
            "spawn_team",
            json!({"members": MATES
                .iter()
                .map(|m| json!({"role": "worker", "name": m}))
                .collect::<Vec<_>>()}),
        )]),
    ];
    for k in 0..WORK_TURNS {
        leader.push(Step::tools(&[(
            "read_file",
            json!({"path": file_for(0, k)}),
        )]));
    }
    leader.push(Step::Text("Waiting for the team.".into()));
    leader.push(Step::until(
        &["t1 done", "t2 done", "t3 done"],
        Step::tools(&[("finish_team", json!({"answer": "all modules reviewed"}))]),
        "Still waiting.",
    ));
    mock.script("leader", leader);
    for (i, me) in MATES.iter().enumerate() {
        let id = i + 1;
        // A first answer takes a model a moment (the time to its first token): teammates
        // started at once all send their first request before any is answered.
        let mut steps = vec![Step::Delay(
            FIRST_ANSWER,
            Box::new(Step::tools(&[("claim_task", json!({"id": id}))])),
        )];
        for k in 0..WORK_TURNS {
            let path = file_for(id, k);
            steps.push(if k % 2 == 0 {
                Step::tools(&[("bash", json!({"command": format!("cat {path}")}))])
            } else {
                Step::tools(&[("read_file", json!({"path": path}))])
            });
        }
        steps.push(Step::tools(&[
            (
                "update_task_status",
                json!({"id": id, "status": "completed", "result": format!("module {me} reviewed")}),
            ),
            (
                "send_message",
                json!({"to": "leader", "text": format!("{me} done")}),
            ),
        ]));
        steps.push(Step::Text("Nothing left.".into()));
        mock.script(me, steps);
    }
}

/// The same work scripted in Claude Code's own tools, for its own team (`peer_bench`): the
/// leader keeps the 3 tasks (`TaskCreate`), spawns the 3 teammates in one message (`Agent`,
/// named, in the background: Claude Code starts them at once), reads its 17 files (`Read`),
/// and once all three reported marks the tasks done (`TaskUpdate`) and answers; each teammate
/// reads its 17 files (`Bash` `cat` and `Read` in turn) and tells the main conversation
/// (`SendMessage`). Claude Code's teammates have no task tools (2.1.330), so they claim
/// nothing: one request fewer each than ours. The leader's last steps answer the notices
/// Claude Code sends it as each teammate ends.
fn claude_script(mock: &MockModel, ws: &Path) {
    let mut leader = vec![
        Step::tools(
            &MATES
                .iter()
                .map(|m| {
                    (
                        "TaskCreate",
                        json!({"subject": format!("review module {m}"), "description": format!("review module {m}")}),
                    )
                })
                .collect::<Vec<_>>(),
        ),
        // The prompts must not hold the reports' words ("t1 done"): the leader's requests
        // carry its own calls, and its script waits for those words.
        Step::tools(
            &MATES
                .iter()
                .map(|m| {
                    (
                        "Agent",
                        json!({"name": m, "description": format!("review module {m}"), "run_in_background": true,
                               "prompt": format!("Your name is {m}. Review module {m}, then report to the leader.")}),
                    )
                })
                .collect::<Vec<_>>(),
        ),
    ];
    for k in 0..WORK_TURNS {
        leader.push(Step::tools(&[(
            "Read",
            json!({"file_path": ws.join(file_for(0, k))}),
        )]));
    }
    leader.push(Step::Text("Waiting for the team.".into()));
    leader.push(Step::until(
        &["t1 done", "t2 done", "t3 done"],
        Step::tools(
            &(1..=MATES.len())
                .map(|id| {
                    (
                        "TaskUpdate",
                        json!({"taskId": id.to_string(), "status": "completed"}),
                    )
                })
                .collect::<Vec<_>>(),
        ),
        "Still waiting.",
    ));
    leader.push(Step::Text("all modules reviewed".into()));
    leader.extend((0..8).map(|_| Step::Text("Noted.".into())));
    mock.script("leader", leader);
    for (i, me) in MATES.iter().enumerate() {
        let id = i + 1;
        let mut steps = Vec::new();
        for k in 0..WORK_TURNS {
            let path = ws.join(file_for(id, k));
            let step = if k % 2 == 0 {
                Step::tools(&[(
                    "Bash",
                    json!({"command": format!("cat {}", path.display())}),
                )])
            } else {
                Step::tools(&[("Read", json!({"file_path": path}))])
            };
            steps.push(if k == 0 {
                Step::Delay(FIRST_ANSWER, Box::new(step))
            } else {
                step
            });
        }
        steps.push(Step::tools(&[(
            "SendMessage",
            json!({"to": "main", "message": format!("{me} done"), "summary": format!("module {me} reviewed")}),
        )]));
        steps.push(Step::Text("Nothing left.".into()));
        mock.script(me, steps);
    }
}

/// The prompt of one request cut into its parts as the mock's cache accounting cuts it
/// (crates/mockmodel/src/cache.rs `anthropic_parts` / `openai_parts`: the same canonical
/// JSON, `cache_control` left out), concatenated; and how many bytes of it are the tools and
/// the system prompt.
fn prompt_text(wire: Wire, req: &Value) -> (String, usize) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("cache_control");
        }
        v
    };
    let list = |key: &str| {
        req.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut s = String::new();
    match wire {
        Wire::Anthropic => {
            for t in list("tools") {
                s.push_str(&json!({"tool": strip(&t)}).to_string());
            }
            match req.get("system") {
                Some(Value::String(t)) if !t.is_empty() => {
                    s.push_str(&json!({"system": t}).to_string())
                }
                Some(Value::Array(blocks)) => {
                    for b in blocks {
                        s.push_str(&json!({"system": strip(b)}).to_string());
                    }
                }
                _ => {}
            }
            let head = s.len();
            for m in list("messages") {
                let role = m.get("role").cloned().unwrap_or(Value::Null);
                let blocks = match m.get("content") {
                    Some(Value::String(t)) => vec![json!({"type": "text", "text": t})],
                    Some(Value::Array(b)) => b.clone(),
                    _ => vec![],
                };
                for (i, b) in blocks.iter().enumerate() {
                    s.push_str(
                        &json!({"role": role, "first": i == 0, "block": strip(b)}).to_string(),
                    );
                }
            }
            (s, head)
        }
        Wire::OpenAi => {
            for t in list("tools") {
                s.push_str(&t.to_string());
            }
            let mut head = s.len();
            for m in list("messages") {
                s.push_str(&m.to_string());
                if m.get("role").and_then(Value::as_str) == Some("system") {
                    head = s.len();
                }
            }
            (s, head)
        }
        // No Gemini team runs in this section ([`one_run`] refuses it).
        Wire::Gemini => (s, 0),
    }
}

/// Tokens of `bytes` bytes of prompt, as the mock counts them (about four bytes a token).
fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The floor of one agent's requests: (new tokens, repeated-prefix tokens), and the requests
/// whose previous prompt is not a prefix of theirs (where the prefix changed, with the byte
/// offset of the first difference and the previous prompt's length).
struct Floor {
    new: u64,
    read: u64,
    requests: usize,
    head_tokens: u64,
    rewritten: Vec<(usize, usize, usize)>,
}

fn floor_of(wire: Wire, requests: &[Value]) -> Floor {
    let mut f = Floor {
        new: 0,
        read: 0,
        requests: requests.len(),
        head_tokens: 0,
        rewritten: Vec::new(),
    };
    let mut prev = String::new();
    for (i, req) in requests.iter().enumerate() {
        let (text, head) = prompt_text(wire, req);
        if i == 0 {
            f.head_tokens = tokens(head);
        }
        let common = prev
            .bytes()
            .zip(text.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        if i > 0 && common < prev.len() {
            f.rewritten.push((i, common, prev.len()));
        }
        let all = tokens(text.len());
        let read = (common as u64 / 4).min(all);
        f.read += read;
        f.new += all - read;
        prev = text;
    }
    f
}

/// Dollars of `b` at `p`.
fn dollars(p: &Price, b: &Billed) -> f64 {
    p.cost_pico_with_writes(b.prompt(), b.output, b.cache_read, b.cache_write) as f64 / PICO_PER_USD
}

/// What one run over one wire measured.
struct Run {
    wire: String,
    model: &'static str,
    wall: f64,
    agents: Vec<(String, Billed, Floor)>,
    unmatched: usize,
}

/// The files every agent reads, in `ws`.
fn write_files(ws: &Path) -> Result<()> {
    for agent in 0..=MATES.len() {
        for k in 0..WORK_TURNS {
            let path = ws.join(file_for(agent, k));
            std::fs::create_dir_all(path.parent().context("a file has a folder")?)?;
            std::fs::write(path, file_text(agent * 100 + k))?;
        }
    }
    Ok(())
}

/// The same work done by Claude Code's own team (Anthropic wire, its model
/// `claude-sonnet-4-5`), billed by the same caching mock.
fn claude_run(dir: &Path) -> Result<Run> {
    let mock = MockModel::start_background(Wire::Anthropic)?;
    mock.account_caching(true);
    let ws = dir.join("cost-claude-code");
    write_files(&ws)?;
    let ws = ws.canonicalize()?;
    claude_script(&mock, &ws);
    let run = crate::peer_bench::claude_team(
        &ws,
        &mock,
        "Review the three modules with a teammate each, read the shared sources yourself, and answer when all are reviewed.",
        false,
    )?;
    if !run.stdout.contains("all modules reviewed") {
        bail!("Claude Code's team did not answer: {}", run.stdout.trim());
    }
    let agents = std::iter::once("leader")
        .chain(MATES)
        .map(|a| {
            (
                a.to_string(),
                mock.billed(a),
                floor_of(Wire::Anthropic, &mock.requests(a)),
            )
        })
        .collect();
    Ok(Run {
        wire: "Claude Code's team".into(),
        model: "claude-sonnet-4-5",
        wall: run.wall.as_secs_f64(),
        agents,
        unmatched: mock.unmatched().len(),
    })
}

fn one_run(dir: &Path, wire: Wire, stagger: bool) -> Result<Run> {
    let (name, provider, model) = match wire {
        Wire::Anthropic => ("anthropic", "anthropic", "claude-sonnet-4-5"),
        Wire::OpenAi => ("openai", "openai", "gpt-4.1"),
        Wire::Gemini => anyhow::bail!("the cost section runs no Gemini team"),
    };
    let mock = MockModel::start_background(wire)?;
    mock.account_caching(true);
    script(&mock);
    let name = if stagger {
        name.to_string()
    } else {
        format!("{name}-unstaggered")
    };
    let ws = dir.join(format!("cost-{name}"));
    write_files(&ws)?;
    std::fs::write(
        ws.join("agent-team.toml"),
        format!(
            "name = \"cost-{name}\"\nsandbox = \"off\"\n{}[defaults]\nprovider = \"{provider}\"\nmodel = \"{model}\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_KEY\"\n",
            if stagger {
                ""
            } else {
                "spawn_stagger_ms = 0\n"
            },
            mock.base_url()
        ),
    )?;
    let t0 = Instant::now();
    let out = Command::new(bin_dir().join("agent-team"))
        .args(["run", "--backend", "process", "--quiet", "--timeout", "120"])
        .current_dir(&ws)
        .env("AGENT_TEAM_HOME", dir.join(format!("home-{name}")))
        .env("AGENT_TEAM_RUNTIME_DIR", dir.join(format!("run-{name}")))
        .env("MOCK_KEY", "k")
        .env_remove("TMUX")
        .stdin(Stdio::null())
        .output()?;
    let wall = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "the {name} team run failed ({}): {}\n{}\nunmatched requests: {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            mock.unmatched()
        );
    }
    let agents = std::iter::once("leader")
        .chain(MATES)
        .map(|a| {
            (
                a.to_string(),
                mock.billed(a),
                floor_of(wire, &mock.requests(a)),
            )
        })
        .collect();
    Ok(Run {
        wire: name,
        model,
        wall,
        agents,
        unmatched: mock.unmatched().len(),
    })
}

fn pc(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn k(t: u64) -> String {
    format!("{:.1} k", t as f64 / 1e3)
}

fn report(r: &mut Report, run: &Run) -> Result<()> {
    let price = price_for(&BTreeMap::new(), run.model)
        .with_context(|| format!("{} has no list price", run.model))?;
    let w = &run.wire;
    let total = run
        .agents
        .iter()
        .fold(Billed::default(), |s, (_, b, _)| s + *b);
    let (new, read) = run
        .agents
        .iter()
        .fold((0, 0), |(n, c), (_, _, f)| (n + f.new, c + f.read));
    let floor = Billed {
        input: new,
        cache_write: 0,
        cache_read: read,
        output: total.output,
    };
    let requests: usize = run.agents.iter().map(|(_, _, f)| f.requests).sum();
    println!(
        "-- {w}, model {} (list ${}/M input, ${}/M cache read, {} cache write, ${}/M output): {requests} requests in {}, {} unmatched",
        run.model,
        price.input,
        price.cached_input.unwrap_or(price.input),
        price
            .cache_write
            .map_or("no".to_string(), |c| format!("${c}/M")),
        price.output,
        dur(run.wall),
        run.unmatched
    );
    for (a, b, f) in &run.agents {
        println!(
            "   {a:<7} {:>3} requests  tools+system {:>5} tok  prompt {:>8}  uncached {:>7}  write {:>7}  read {:>8}  output {:>5}  cached {:>6} (floor {:>6})  ${:.4} (floor ${:.4})",
            f.requests,
            f.head_tokens,
            b.prompt(),
            b.input,
            b.cache_write,
            b.cache_read,
            b.output,
            pc(b.cached_share()),
            pc(f.read as f64 / (f.new + f.read).max(1) as f64),
            dollars(&price, b),
            dollars(
                &price,
                &Billed {
                    input: f.new,
                    cache_write: 0,
                    cache_read: f.read,
                    output: b.output
                }
            ),
        );
        for (i, at, of) in &f.rewritten {
            println!(
                "     request {i}: the previous prompt is not its prefix (first difference at byte {at} of {of})"
            );
        }
    }
    let prompt_ratio = total.prompt() as f64 / floor.prompt().max(1) as f64;
    r.add(
        &format!("{w}: prompt tokens billed (uncached + write + read)"),
        format!(
            "{} = {} + {} + {}",
            k(total.prompt()),
            k(total.input),
            k(total.cache_write),
            k(total.cache_read)
        ),
        format!("{} = {} new + {} read", k(floor.prompt()), k(new), k(read)),
        format!("{prompt_ratio:.2}×"),
        "—",
        true,
    );
    let share = total.cached_share();
    let floor_share = floor.cached_share();
    r.add(
        &format!("{w}: cached share of prompt tokens (all 4 agents)"),
        pc(share),
        pc(floor_share),
        format!("{:.2}×", share / floor_share.max(f64::MIN_POSITIVE)),
        "≥ 85 %",
        share >= SHARE_GOAL,
    );
    for (a, b, _) in &run.agents {
        r.add(
            &format!("  {w}: cached share, {a}"),
            pc(b.cached_share()),
            "—".into(),
            "—".into(),
            "≥ 85 %",
            b.cached_share() >= SHARE_GOAL,
        );
    }
    r.add(
        &format!("{w}: output tokens"),
        k(total.output),
        k(floor.output),
        "1.00×".into(),
        "—",
        true,
    );
    let (ours, least) = (dollars(&price, &total), dollars(&price, &floor));
    r.add(
        &format!("{w}: dollars per run at list prices ({})", run.model),
        format!("${ours:.4}"),
        format!("${least:.4}"),
        format!("{:.2}×", ours / least),
        "≤ 1.2× floor",
        ours <= FLOOR_GOAL * least,
    );
    let no_cache = Billed {
        input: total.prompt(),
        cache_write: 0,
        cache_read: 0,
        output: total.output,
    };
    r.note(format!(
        "{w}: the same tokens with no caching at all would cost ${:.4} ({:.1}× as much)",
        dollars(&price, &no_cache),
        dollars(&price, &no_cache) / ours
    ));
    Ok(())
}

/// Runs the figures.
pub fn run(r: &mut Report, dir: &Path, _quick: bool) -> Result<()> {
    println!("== what a team costs: prompt caching against the caching mock (issue 30) ==");
    let staggered = one_run(dir, Wire::Anthropic, true)?;
    report(r, &staggered)?;
    report(r, &one_run(dir, Wire::OpenAi, true)?)?;
    // The same Anthropic team with its teammates started all at once: what staggering saves.
    let plain = one_run(dir, Wire::Anthropic, false)?;
    let price = price_for(&BTreeMap::new(), plain.model)
        .with_context(|| format!("{} has no list price", plain.model))?;
    let mates = |run: &Run| {
        run.agents
            .iter()
            .filter(|(a, ..)| a != "leader")
            .fold(Billed::default(), |s, (_, b, _)| s + *b)
    };
    let (on, off) = (mates(&staggered), mates(&plain));
    r.add(
        "anthropic: the 3 teammates' dollars, started staggered (spawn_team)",
        format!("${:.4}", dollars(&price, &on)),
        format!("${:.4} all at once", dollars(&price, &off)),
        format!(
            "{:.3}×",
            dollars(&price, &on) / dollars(&price, &off).max(f64::MIN_POSITIVE)
        ),
        "≤ 1×",
        dollars(&price, &on) <= dollars(&price, &off),
    );
    r.note(format!(
        "anthropic, the 3 teammates: cache writes {} staggered vs {} all at once, reads {} vs {}; \
         wall {} vs {} (the later teammates wait for the first one's first answer)",
        k(on.cache_write),
        k(off.cache_write),
        k(on.cache_read),
        k(off.cache_read),
        dur(staggered.wall),
        dur(plain.wall)
    ));
    // Claude Code's own team on the same work, through the same caching mock.
    let cc = claude_run(dir)?;
    report(r, &cc)?;
    let total = |run: &Run| {
        run.agents
            .iter()
            .fold(Billed::default(), |s, (_, b, _)| s + *b)
    };
    let (ours, theirs) = (total(&staggered), total(&cc));
    let (ours_usd, theirs_usd) = (dollars(&price, &ours), dollars(&price, &theirs));
    r.add(
        "anthropic: dollars per run, ours beside Claude Code's team",
        format!("${ours_usd:.4}"),
        format!("${theirs_usd:.4} Claude Code"),
        format!("{:.2}×", ours_usd / theirs_usd.max(f64::MIN_POSITIVE)),
        "≤ 1×",
        ours_usd <= theirs_usd,
    );
    r.add(
        "anthropic: cached share, ours beside Claude Code's team",
        pc(ours.cached_share()),
        format!("{} Claude Code", pc(theirs.cached_share())),
        format!(
            "{:.2}×",
            ours.cached_share() / theirs.cached_share().max(f64::MIN_POSITIVE)
        ),
        "—",
        true,
    );
    r.note(format!(
        "Claude Code {} (its own team: `-p`, `--teammate-mode in-process`): prompt tokens {} (ours {}), \
         output {} (ours {}), {} requests (ours {}), wall {} (ours {})",
        crate::clis_bench::CLAUDE_CODE_VERSION,
        k(theirs.prompt()),
        k(ours.prompt()),
        k(theirs.output),
        k(ours.output),
        cc.agents.iter().map(|(_, _, f)| f.requests).sum::<usize>(),
        staggered.agents.iter().map(|(_, _, f)| f.requests).sum::<usize>(),
        dur(cc.wall),
        dur(staggered.wall),
    ));
    Ok(())
}
