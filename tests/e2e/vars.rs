//! `run --stream` and `run --json`, variables (`[variables]`, `--var`) and secrets
//! (`[secrets]`, `--secret`) through the real binaries, with exec teams (no network).

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// An exec team of two teammates and three tasks; the `run` commands and the goal use
/// variables, one of them only given with `--var`.
const TEAM: &str = r#"name = "vars"
goal = "greet {{who}} on {{date}}"

[variables]
who = "file"

[[teammates]]
name = "b1"
role = "worker"
[[teammates]]
name = "b2"
role = "worker"

[[tasks]]
key = "hello"
title = "Say hello to {{who}}"
run = "mkdir -p out && echo hello-{{who}}-{{team}}-{{extra}} > out/hello-{{who}}.txt"

[[tasks]]
key = "one"
title = "One"
run = "echo one"

[[tasks]]
key = "two"
title = "Two"
run = "echo two"
after = ["hello", "one"]
"#;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_stream_prints_every_tagged_event_then_the_result() {
    let sb = Sandbox::new();
    sb.write_team_file(TEAM);
    let out = sb.run(&[
        "run",
        "--backend",
        "process",
        "--timeout",
        "60",
        "--stream",
        "--var",
        "who=cli",
        "--var",
        "extra=x1",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5, "{text}");
    let (last, events) = lines.split_last().unwrap();
    let mut prev = 0;
    let mut finished = None;
    let mut goal = None;
    for line in events {
        let env: Envelope =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not an envelope ({e}): {line}"));
        assert!(env.seq > prev, "seq not increasing: {prev} then {line}");
        prev = env.seq;
        assert_eq!(env.team_id, "vars", "{line}");
        assert!(
            !env.agent_id.is_empty() && !env.role_name.is_empty(),
            "{line}"
        );
        match env.event {
            Event::RunFinished { answer, success } => finished = Some((answer, success)),
            Event::RunStarted { goal: g } => goal = g,
            _ => {}
        }
    }
    // The goal from the file, filled with `--var` over `[variables]`.
    let today = agent_team_config::local_date();
    assert_eq!(
        goal.as_deref(),
        Some(format!("greet cli on {today}").as_str())
    );
    // The last line is the result, with the leader's answer.
    let (answer, success) = finished.expect("no run_finished event in the stream");
    assert!(
        success && answer.contains("3 task(s): 3 completed"),
        "{answer}"
    );
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["type"], "complete", "{last}");
    assert_eq!(v["result"], answer.as_str());
    assert_eq!(v["answer"], answer.as_str());
    assert_eq!(v["success"], true);
    assert_eq!(v["team"], "vars");
    assert!(v["seconds"].as_f64().unwrap() > 0.0, "{last}");
    // Each line is exactly the envelope as `agent-team events` prints it.
    let logged = sb.ok(&["--team", "vars", "events"]);
    let logged: Vec<&str> = logged.lines().collect();
    for line in events {
        assert!(logged.contains(line), "not in the event log: {line}");
    }
    // Progress went to stderr, not into the NDJSON.
    assert!(stderr(&out).contains("completed"), "{}", stderr(&out));
    // `--var` filled the task's command (and its title).
    assert_eq!(
        std::fs::read_to_string(sb.path("out/hello-cli.txt")).unwrap(),
        "hello-cli-vars-x1\n"
    );
    let tasks = sb.ok(&["--team", "vars", "task", "list", "--json"]);
    assert!(tasks.contains("Say hello to cli"), "{tasks}");
}

#[test]
fn run_json_prints_exactly_one_result_object() {
    let sb = Sandbox::new();
    sb.write_team_file(TEAM);
    let out = sb.run(&[
        "run",
        "--backend",
        "in-process",
        "--timeout",
        "60",
        "--json",
        "--var",
        "extra=y",
        "say hi to {{who}}",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // One JSON value and nothing else (a second object would be trailing characters).
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let result: RunOutcome = serde_json::from_value(v.clone()).unwrap();
    let RunOutcome::Complete(r) = result else {
        panic!("not complete: {v}")
    };
    assert!(
        r.success && r.result.contains("3 task(s): 3 completed"),
        "{v}"
    );
    assert_eq!(r.answer, r.result);
    assert_eq!(r.team, "vars");
    // The command-line goal was filled from `[variables]`.
    let info = sb.ok(&["teams", "show", "vars", "--json"]);
    assert!(info.contains("say hi to file"), "{info}");
    assert_eq!(
        std::fs::read_to_string(sb.path("out/hello-file.txt")).unwrap(),
        "hello-file-vars-y\n"
    );
    // --json and --stream do not go together.
    let both = sb.run(&["run", "--json", "--stream"]);
    assert!(!both.status.success());
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

#[test]
fn an_unknown_placeholder_fails_at_start_naming_file_line_and_field() {
    let sb = Sandbox::new();
    // Without `--var extra=…` the `hello` task's command (line 17) names an unknown variable.
    sb.write_team_file(TEAM);
    let out = sb.run(&["run", "--backend", "process", "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let file = sb.path("agent-team.toml");
    let file = std::fs::canonicalize(&file).unwrap_or(file);
    let want = format!(
        "{}:17: tasks.hello.run: unknown variable {{{{extra}}}} (known: date, team, workspace, who;",
        file.display()
    );
    assert!(
        err.contains(&want)
            || err.contains(&want.replace(&file.display().to_string(), "agent-team.toml")),
        "{err}"
    );
    // Refused before any daemon started: the team has no state.
    assert!(!sb.team("vars").db.exists(), "a team was created");
    // With --stream the reason is also the last (and only) line on stdout.
    let out = sb.run(&["run", "--stream", "--var", "extra=1", "--var", "bad-key=1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = sb.run(&["run", "--stream", "--var", "extra=1", "do {{nope}}"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("goal: unknown variable {{nope}}"),
        "{v}"
    );
    // A goal given without a team file names `goal`.
    let bare = Sandbox::new();
    let out = bare.run(&["run", "--var", "a=1", "{{a}} and {{b}}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("error: goal: unknown variable {{b}} (known: date, team, workspace, a;"),
        "{}",
        stderr(&out)
    );
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files_under(&p));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

/// Panics if any of `files` holds any of `needles`.
fn assert_no_trace(files: &[PathBuf], needles: &[&str]) {
    for f in files {
        let bytes = std::fs::read(f).unwrap_or_default();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} holds the secret {n:?}",
                f.display()
            );
        }
    }
}

#[test]
fn secrets_reach_task_commands_and_nothing_else_even_after_a_daemon_sigkill() {
    const FROM_ENV: &str = "sekrit-env-7f3a9c41";
    const GIVEN: &str = "sekrit-cli-42b1e07d";
    let mut sb = Sandbox::new();
    sb.env.push(("E2E_TOKEN_SOURCE".into(), FROM_ENV.into()));
    sb.write_team_file(
        r#"name = "sec"
[secrets]
TOKEN = { env = "E2E_TOKEN_SOURCE" }

[[teammates]]
name = "b1"
role = "worker"
[[teammates]]
name = "b2"
role = "worker"

[[tasks]]
key = "use"
title = "Use the secrets"
run = "mkdir -p out && printf %s \"$TOKEN\" > out/token.txt && printf %s \"$API\" > out/api.txt && echo token is $TOKEN"

# Keeps the run going (the team is finished once every task is done).
[[tasks]]
key = "hold"
title = "Hold"
run = "while [ ! -f release ]; do sleep 0.1; done"
"#,
    );
    // A secret in text is refused.
    let out = sb.run(&[
        "up",
        "--backend",
        "in-process",
        "--detach",
        "--secret",
        "API=x",
        "use {{API}}",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("{{API}} names a secret"),
        "{}",
        stderr(&out)
    );
    // A missing environment variable is named.
    let bare = Sandbox::new();
    bare.write_team_file("name = \"sec\"\n[secrets]\nTOKEN = { env = \"E2E_NOT_SET\" }\n");
    let out = bare.run(&["up", "--backend", "in-process", "--detach"]);
    assert!(
        stderr(&out).contains("secrets.TOKEN: the environment variable E2E_NOT_SET is not set"),
        "{}",
        stderr(&out)
    );

    sb.ok(&[
        "up",
        "--backend",
        "in-process",
        "--detach",
        "--secret",
        &format!("API={GIVEN}"),
    ]);
    wait_for("the task to complete", T, || {
        sb.task_is("sec", 1, TaskStatus::Completed)
    });
    assert_eq!(
        std::fs::read_to_string(sb.path("out/token.txt")).unwrap(),
        FROM_ENV
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("out/api.txt")).unwrap(),
        GIVEN
    );
    // What the agent read back from the command has the value masked.
    let result = sb.tasks("sec")[0].result.clone().unwrap_or_default();
    assert!(result.contains("token is [secret TOKEN]"), "{result}");
    let tp = sb.team("sec");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&tp.secrets).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The daemon dies; the next command brings it back, and the agent restarted inside it
    // still gives its commands the secrets.
    let daemon: u32 = std::fs::read_to_string(&tp.lock)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Its lock goes with its last thread (its socket too).
    wait_for("the daemon to die", T, || {
        !agent_team_paths::lock_held(&tp.lock)
    });
    sb.ok(&[
        "--team",
        "sec",
        "task",
        "add",
        "after the crash",
        "--run",
        "printf %s \"$API\" > out/after.txt",
    ]);
    wait_for("the task after the crash", T, || {
        std::fs::read_to_string(sb.path("out/after.txt")).is_ok_and(|s| s == GIVEN)
    });
    std::fs::write(sb.path("release"), "").unwrap();
    wait_for("the run to finish", T, || {
        sb.tasks("sec")
            .iter()
            .all(|t| t.status == TaskStatus::Completed)
    });

    // No trace anywhere else: state dir (database, WAL, daemon log, agent logs), runtime dir
    // but the secrets file itself, the event log, the stored configuration.
    let needles = [FROM_ENV, GIVEN];
    let mut files = files_under(&tp.dir);
    assert!(files.iter().any(|f| f.ends_with("state.db")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("daemon.log")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("b2.log")), "{files:?}");
    files.extend(
        files_under(&sb.paths.runtime)
            .into_iter()
            .filter(|f| *f != tp.secrets),
    );
    assert_no_trace(&files, &needles);
    let events = sb.ok(&["--team", "sec", "events"]);
    assert!(
        events.contains("token is [secret TOKEN]"),
        "the command ran"
    );
    for n in needles {
        assert!(!events.contains(n), "the event log holds {n}");
    }
    let config = match sb.operator("sec").call(Request::GetConfig).unwrap() {
        Reply::Config { config } => config.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(config.contains("E2E_TOKEN_SOURCE"), "{config}");
    for n in needles {
        assert!(!config.contains(n), "the stored configuration holds {n}");
    }
    // `down` takes the secrets away with the agents.
    sb.ok(&["--team", "sec", "down"]);
    assert!(!tp.secrets.exists(), "the secrets file outlived the team");
    let mut files = files_under(&tp.dir);
    files.extend(files_under(&sb.paths.runtime));
    assert_no_trace(&files, &needles);
}

#[test]
fn tasks_added_at_run_time_are_filled_and_checked() {
    let sb = Sandbox::new();
    sb.write_team_file(
        "name = \"rt\"\n[variables]\nword = \"plum\"\n[[teammates]]\nname = \"b1\"\n",
    );
    sb.ok(&["up", "--backend", "process", "--detach", "--var", "n=7"]);
    let out = sb.ok(&[
        "--team",
        "rt",
        "task",
        "add",
        "eat {{word}} {{ n }}",
        "--run",
        "echo {{word}}-{{n}}-{{{{x}} > rt.txt",
        "--json",
    ]);
    let task: Task = serde_json::from_str(&out).unwrap();
    assert_eq!(task.title, "eat plum 7");
    assert_eq!(task.run.as_deref(), Some("echo plum-7-{{x}} > rt.txt"));
    wait_for("the task to run", T, || {
        std::fs::read_to_string(sb.path("rt.txt")).is_ok_and(|s| s == "plum-7-{{x}}\n")
    });
    let bad = sb.run(&["--team", "rt", "task", "add", "x", "--desc", "see {{nope}}"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains(
            "description: unknown variable {{nope}} (known: date, team, workspace, n, word;"
        ),
        "{}",
        stderr(&bad)
    );
    // The stored configuration keeps the values: a second `up` reuses it.
    let config = match sb.operator("rt").call(Request::GetConfig).unwrap() {
        Reply::Config { config } => config,
        other => panic!("{other:?}"),
    };
    assert_eq!(config["variables"]["n"], "7", "{config}");
    assert_eq!(config["variables"]["word"], "plum", "{config}");
    sb.ok(&["--team", "rt", "down"]);
}

#[test]
fn a_model_team_streams_its_events_fills_its_prompt_per_agent_and_never_shows_the_model_a_secret() {
    use agent_team_mockmodel::{MockModel, Step, Wire};
    use serde_json::json;
    const SECRET: &str = "sekrit-model-5d2c9e";
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    let call = |name: &str, args: serde_json::Value| Step::Tools(vec![(name.to_string(), args)]);
    mock.script(
        "leader",
        vec![
            call("create_task", json!({"title": "check the {{fruit}}"})),
            call(
                "bash",
                json!({"command": "printf %s \"$API\" > m.txt && echo api=$API"}),
            ),
            call(
                "finish_team",
                json!({"answer": "the {{fruit}} is fine", "force": true}),
            ),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    sb.write_team_file(&format!(
        r#"name = "mv"
[defaults]
provider = "openai"
model = "mock-1"
base_url = "{}"
api_key_env = "MOCK_API_KEY"

[variables]
fruit = "apple"

[roles.leader]
tools = ["bash"]
permissions = {{ bash = "allow" }}
system_prompt = "I am {{{{agent}}}} ({{{{role}}}}); the fruit is {{{{fruit}}}}."
"#,
        mock.base_url()
    ));
    let out = sb.run(&[
        "run",
        "--backend",
        "process",
        "--timeout",
        "60",
        "--stream",
        "--var",
        "fruit=pear",
        "--secret",
        &format!("API={SECRET}"),
        "judge the {{fruit}}",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    let (last, events) = lines.split_last().unwrap();
    let mut prev = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for line in events {
        let env: Envelope = serde_json::from_str(line).unwrap();
        assert!(env.seq > prev && env.team_id == "mv" && !env.role_name.is_empty());
        prev = env.seq;
        let v = serde_json::to_value(&env.event).unwrap();
        kinds.insert(v["type"].as_str().unwrap_or_default().to_string());
    }
    // The agents' own events are in the stream, not only the board's.
    assert!(kinds.contains("TOOL_CALL_START"), "{kinds:?}");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["type"], "complete", "{last}");
    // The answer is the model's own text: only tasks and goals are filled.
    assert_eq!(v["result"], "the {{fruit}} is fine");
    // The leader's prompt was filled for it, and the goal.
    let requests = mock.requests("leader");
    let first = requests[0].to_string();
    assert!(
        first.contains("I am leader (leader); the fruit is pear."),
        "{first}"
    );
    assert!(first.contains("judge the pear"), "{first}");
    // create_task's title was filled by the daemon.
    let tasks = sb.ok(&["--team", "mv", "task", "list", "--json"]);
    assert!(tasks.contains("check the pear"), "{tasks}");
    // The command got the secret; the model saw it masked, never the value.
    assert_eq!(std::fs::read_to_string(sb.path("m.txt")).unwrap(), SECRET);
    let all = requests
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("api=[secret API]"), "{all}");
    assert!(!all.contains(SECRET), "the model saw the secret");
    assert!(!text.contains(SECRET), "the stream holds the secret");
}
