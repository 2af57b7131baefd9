//! Runs that start on their own (issue 69): a schedule every second under `agent-team
//! scheduler`, and a signed GitHub-style webhook delivery to `agent-team serve`, with exec
//! teams (no network, no model); what they started is read back with `agent-team runs`.

use agent_team_e2e::web::*;
use agent_team_e2e::*;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// An exec team of one teammate and one short task, and `extra` (schedules, webhooks).
fn exec_team(sb: &Sandbox, extra: &str) {
    sb.write_team_file(&format!(
        "name = \"trg\"\nbackend = \"process\"\n[defaults]\nprovider = \"exec\"\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\nkey = \"a\"\ntitle = \"task a\"\nrun = \"echo alpha\"\n{extra}"
    ));
}

/// `runs list --json`'s runs.
fn runs(sb: &Sandbox) -> Vec<Value> {
    let out = sb.ok(&["runs", "list", "--json", "--limit", "1000"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["runs"].as_array().cloned().unwrap_or_default()
}

fn time(v: &Value) -> chrono_free::Secs {
    chrono_free::parse(v.as_str().unwrap())
}

/// RFC 3339 times compared without a date library: the records are all UTC (`Z`), so their
/// text sorts as their time.
mod chrono_free {
    pub type Secs = String;
    pub fn parse(s: &str) -> Secs {
        assert!(s.ends_with('Z') || s.ends_with("+00:00"), "{s}");
        // Fixed width: pad the fraction so text order is time order.
        let s = s.trim_end_matches('Z').trim_end_matches("+00:00");
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        format!("{whole}.{frac:0<9}")
    }
}

#[test]
fn a_schedule_every_second_starts_runs_that_never_overlap_and_are_listed() {
    let mut sb = Sandbox::new();
    exec_team(
        &sb,
        "[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\ngoal = \"tick {{n}}\"\nvars = { n = \"7\" }\n",
    );
    assert!(sb.ok(&["schedule", "list"]).contains("tick"));
    let pid = sb.spawn(&["-f", "agent-team.toml", "scheduler"]);
    wait_for("two scheduled runs to succeed", T, || {
        runs(&sb)
            .iter()
            .filter(|r| r["outcome"] == "succeeded")
            .count()
            >= 2
    });
    // SIGTERM: no new runs; the one going on ends and is recorded before it exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, log) = sb.wait_child(pid, T);
    assert!(status.success(), "{log}");
    let all = runs(&sb);
    let mut started: Vec<&Value> = Vec::new();
    for r in &all {
        assert_eq!(
            r["trigger"],
            json!({"kind": "schedule", "name": "tick"}),
            "{r}"
        );
        assert_eq!(r["team"], "trg");
        assert_ne!(r["outcome"], "running", "{r}");
        assert_ne!(r["outcome"], "lost", "{r}");
        if r["outcome"] == "skipped" {
            assert!(
                r["reason"].as_str().unwrap().contains("still running"),
                "{r}"
            );
        } else {
            assert_eq!(r["outcome"], "succeeded", "{r}");
            assert_eq!(r["goal"], "tick 7");
            assert_eq!(r["exit"], 0);
            started.push(r);
        }
    }
    // Never two at once: each run started after the one before it ended.
    started.sort_by_key(|r| time(&r["started"]));
    for w in started.windows(2) {
        assert!(
            time(&w[1]["started"]) >= time(&w[0]["ended"]),
            "overlap: {} and {}",
            w[0],
            w[1]
        );
    }
    // One run's record, with its JSON result.
    let id = started[0]["id"].as_str().unwrap();
    let shown: Value = serde_json::from_str(&sb.ok(&["runs", "show", id, "--json"])).unwrap();
    assert_eq!(shown["output"]["type"], "complete", "{shown}");
    assert_eq!(shown["output"]["success"], true);
    let text = sb.ok(&["runs", "show", id]);
    assert!(
        text.contains("schedule tick") && text.contains("succeeded"),
        "{text}"
    );
}

const SECRET: &str = "hook-secret-0123456789";

fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[test]
fn a_signed_github_delivery_starts_a_run_with_the_mapped_title_and_bad_ones_are_refused() {
    let mut sb = Sandbox::new();
    exec_team(
        &sb,
        "[secrets]\nGH_HOOK_SECRET = { env = \"GH_HOOK_SECRET\" }\n\
         [[webhooks]]\nname = \"github\"\nsecret = \"GH_HOOK_SECRET\"\ngoal = \"Triage: {{issue}}\"\n\
         vars = { issue = \"$.issue.title\" }\nper_minute = 2\n",
    );
    sb.env.push(("GH_HOOK_SECRET".into(), SECRET.into()));
    let srv = Server::start(&mut sb);
    let url = format!("{}/v1/teams/trg/hooks/github", srv.base);
    let payload = serde_json::to_vec(&json!({
        "action": "opened",
        "issue": {"number": 7, "title": "Crash when the \"config\" is empty"},
        "repository": {"full_name": "o/r"},
    }))
    .unwrap();
    let post = |body: &[u8], sig: Option<String>, delivery: &str| {
        let mut r = srv
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        if let Some(s) = sig {
            r = r.header("x-hub-signature-256", s);
        }
        r.send().unwrap()
    };
    // A wrong signature and none: 401, nothing started.
    for sig in [Some(sign(&payload, "wrong-secret")), None] {
        let resp = post(&payload, sig, "d-0");
        assert_eq!(resp.status().as_u16(), 401);
    }
    assert!(runs(&sb).is_empty());
    // Signed: 202 at once with the run's id.
    let resp = post(&payload, Some(sign(&payload, SECRET)), "d-1");
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    // The same delivery again: 409.
    let resp = post(&payload, Some(sign(&payload, SECRET)), "d-1");
    assert_eq!(resp.status().as_u16(), 409);
    // A flood of new, signed deliveries past the hook's rate (2 a minute, both taken): 429
    // with Retry-After, no run started.
    for i in 0..10 {
        let resp = post(&payload, Some(sign(&payload, SECRET)), &format!("f-{i}"));
        assert_eq!(resp.status().as_u16(), 429);
        assert!(resp.headers().get("retry-after").is_some());
    }
    let mut shown = Value::Null;
    wait_for("the webhook's run to end", T, || {
        shown = serde_json::from_str(&sb.ok(&["runs", "show", &id, "--json"])).unwrap();
        shown["outcome"] != "running"
    });
    assert_eq!(shown["outcome"], "succeeded", "{shown}");
    assert_eq!(
        shown["trigger"],
        json!({"kind": "webhook", "name": "github"})
    );
    assert_eq!(shown["goal"], "Triage: Crash when the \"config\" is empty");
    assert_eq!(shown["vars"]["issue"], "Crash when the \"config\" is empty");
    assert_eq!(shown["output"]["type"], "complete");
    // Exactly one run was started by all of it.
    assert_eq!(runs(&sb).len(), 1);
}
