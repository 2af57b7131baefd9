//! Roles and the new workspace tools end to end (issue 15, items 3 and 4): `roles --json`
//! lists the 15 built-ins and the role files with their sources; Nyzhi's plain-Markdown role
//! file and a `.claude/agents` file naming `WebFetch` and `TodoWrite` both start (a name with
//! no counterpart is a warning); a model teammate calls `glob`, `todo_write` (then `ps --json`
//! shows its checklist) and `web_fetch` against a local server once the operator approves it.

use agent_team_e2e::*;
use agent_team_mockmodel::{MockModel, Step, Wire};
use agent_team_protocol::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The seed's own example (Nyzhi's docs): `.nyzhi/agents/frontend-specialist.md`.
const FRONTEND: &str = "# Frontend Specialist\n\nYou are a frontend development expert. Focus on:\n- Component architecture\n- Accessibility (WCAG 2.1 AA)\n- Performance optimization\n- Responsive design\n";

/// A Claude Code subagent file naming tools we map and one we do not have.
const RESEARCHER: &str = "---\nname: researcher\ndescription: Looks things up\ntools: Read, Grep, WebFetch, TodoWrite, NotebookEdit\n---\nYou research questions and report sources.\n";

fn role_files(sb: &Sandbox) {
    for (dir, file, text) in [
        (".nyzhi/agents", "frontend-specialist.md", FRONTEND),
        (".claude/agents", "researcher.md", RESEARCHER),
    ] {
        std::fs::create_dir_all(sb.path(dir)).unwrap();
        std::fs::write(sb.path(dir).join(file), text).unwrap();
    }
}

/// The names of the tools offered in a chat-completions request.
fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn roles_json_lists_the_builtins_and_the_role_files_with_their_sources() {
    let sb = Sandbox::new();
    role_files(&sb);
    sb.write_team_file(
        "name = \"rt\"\n[roles.auditor]\ndescription = \"Audits\"\ntools = [\"read_file\"]\n",
    );
    let out = sb.run(&["roles", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles = v["roles"].as_array().unwrap();
    let source = |name: &str| {
        roles
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no role {name}: {v}"))
    };
    let builtins: Vec<&str> = roles
        .iter()
        .filter(|r| r["source"] == "built-in")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtins.len(), 15, "{builtins:?}");
    for name in [
        "leader",
        "default",
        "explorer",
        "worker",
        "reviewer",
        "planner",
        "architect",
        "debugger",
        "security-reviewer",
        "quality-reviewer",
        "test-engineer",
        "build-fixer",
        "deep-executor",
        "document-specialist",
        "code-simplifier",
    ] {
        assert!(builtins.contains(&name), "{name} missing: {builtins:?}");
        assert!(!source(name)["description"].as_str().unwrap().is_empty());
    }
    assert_eq!(roles[0]["name"], "leader", "the leader comes first");
    let explorer = source("explorer");
    assert_eq!(
        explorer["tools"],
        json!(["read_file", "list_files", "grep", "glob"])
    );
    let fe = source("frontend-specialist");
    assert_eq!(fe["source"], ".nyzhi/agents/frontend-specialist.md");
    assert_eq!(fe["description"], "Frontend Specialist");
    let rs = source("researcher");
    assert_eq!(rs["source"], ".claude/agents/researcher.md");
    assert_eq!(
        rs["tools"],
        json!(["read_file", "grep", "web_fetch", "todo_write"])
    );
    assert_eq!(source("auditor")["source"], "team file");
    assert_eq!(roles.len(), 18);
    // The tool with no counterpart is a warning naming the file and the tool.
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("researcher.md") && w.contains("NotebookEdit"),
        "{w}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("NotebookEdit"),
        "{stderr}"
    );
    // The table says the same.
    let table = sb.ok(&["roles"]);
    assert!(table.contains("security-reviewer") && table.contains(".nyzhi/agents/"));
}

/// A tiny HTTP server on 127.0.0.1: every request gets `page` as text/html. Returns its URL.
fn serve_html(page: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/docs", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            // Read the request head, then answer.
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    url
}

/// `ps --json`'s entry for `name`.
fn ps_agent(sb: &Sandbox, name: &str) -> Value {
    let out = sb.ok(&["--team", "rt", "ps", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[test]
fn role_files_start_and_a_teammate_globs_keeps_a_checklist_and_fetches_a_page() {
    const PAGE: &str = "<!DOCTYPE html><html><head><title>Local docs</title><style>p{color:red}</style><script>var leak = 'hidden-script';</script></head><body><h1>Widgets</h1><p>The answer is <b>42</b> &amp; counting.</p></body></html>";
    let url = serve_html(PAGE);
    let mock = MockModel::start_background(Wire::OpenAi).unwrap();
    mock.script(
        "leader",
        vec![Step::Until {
            needles: vec!["fe done".into(), "rs done".into()],
            then: Box::new(Step::tools(&[(
                "finish_team",
                json!({"answer": "the role files worked", "force": true}),
            )])),
            meanwhile: Box::new(Step::Text("Waiting.".into())),
        }],
    );
    let checklist = json!({"items": [
        {"content": "find the sources", "status": "completed"},
        {"content": "read the docs page", "status": "in_progress"},
        {"content": "report", "status": "pending"}
    ]});
    mock.script(
        "fe",
        vec![
            Step::tools(&[("glob", json!({"pattern": "src/**/*.tsx"}))]),
            Step::tools(&[("glob", json!({"pattern": "../*"}))]),
            Step::tools(&[("todo_write", checklist)]),
            Step::tools(&[("web_fetch", json!({"url": url}))]),
            Step::tools(&[("send_message", json!({"to": "leader", "text": "fe done"}))]),
            Step::Text("Finished.".into()),
        ],
    );
    mock.script(
        "rs",
        vec![
            Step::tools(&[("send_message", json!({"to": "leader", "text": "rs done"}))]),
            Step::Text("Finished.".into()),
        ],
    );
    let mut sb = Sandbox::new();
    sb.env.push(("MOCK_API_KEY".into(), "test-key".into()));
    role_files(&sb);
    for f in ["src/app/App.tsx", "src/app/Nav.tsx", "src/index.ts"] {
        let p = sb.path(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "export {}\n").unwrap();
    }
    sb.write_team_file(&format!(
        "name = \"rt\"\n[defaults]\nprovider = \"openai\"\nmodel = \"mock-1\"\nbase_url = \"{}\"\napi_key_env = \"MOCK_API_KEY\"\n\n[[teammates]]\nname = \"fe\"\nrole = \"frontend-specialist\"\n\n[[teammates]]\nname = \"rs\"\nrole = \"researcher\"\n",
        mock.base_url()
    ));
    let run = sb.spawn(&["run", "--backend", "process", "--timeout", "60", "--quiet"]);

    // web_fetch is asked by default; by then fe's checklist is on its record.
    wait_for("fe's web_fetch request", T, || {
        sb.pending_from("rt", "fe").is_some()
    });
    let req = sb.pending_from("rt", "fe").unwrap();
    assert_eq!(
        (req.tool.as_str(), req.input.as_str()),
        ("web_fetch", url.as_str())
    );
    let fe = ps_agent(&sb, "fe");
    assert_eq!(
        fe["todos"],
        json!([
            {"content": "find the sources", "status": "completed"},
            {"content": "read the docs page", "status": "in_progress"},
            {"content": "report", "status": "pending"}
        ]),
        "{fe}"
    );
    assert!(
        ps_agent(&sb, "rs").get("todos").is_none(),
        "no list, no field"
    );
    sb.ok(&["--team", "rt", "approve", &req.id.to_string()]);

    let (status, out) = sb.wait_child(run, T);
    assert!(status.success(), "{out}");
    assert!(out.contains("the role files worked"), "{out}");
    // The unmapped Claude tool was a warning naming the file and the tool.
    assert!(
        out.contains("warning:") && out.contains("researcher.md") && out.contains("NotebookEdit"),
        "{out}"
    );

    let fe_reqs = mock.requests("fe");
    let all = |reqs: &[Value]| reqs.iter().map(Value::to_string).collect::<String>();
    let fe_text = all(&fe_reqs);
    // The plain-Markdown file is the prompt; every workspace tool is offered.
    assert!(fe_text.contains("frontend development expert"), "{fe_text}");
    let fe_tools = offered(&fe_reqs[0]);
    for t in ["glob", "web_fetch", "todo_write", "write_file", "bash"] {
        assert!(
            fe_tools.iter().any(|x| x == t),
            "{t} not offered: {fe_tools:?}"
        );
    }
    // glob found the two files, sorted, and refused to leave the workspace.
    assert!(
        fe_text.contains("src/app/App.tsx\\nsrc/app/Nav.tsx"),
        "{fe_text}"
    );
    assert!(!fe_text.contains("src/index.ts\\n"), "{fe_text}");
    assert!(fe_text.contains("leaves the workspace"), "{fe_text}");
    assert!(fe_text.contains("your checklist (1/3 done)"), "{fe_text}");
    // The page's text came back without its script or style.
    assert!(
        fe_text.contains("The answer is 42 & counting."),
        "{fe_text}"
    );
    assert!(fe_text.contains("Widgets"), "{fe_text}");
    assert!(!fe_text.contains("hidden-script"), "{fe_text}");
    assert!(!fe_text.contains("color:red"), "{fe_text}");

    // The Claude file's mapped tools are offered; the ones it did not list are not.
    let rs_tools = offered(&mock.requests("rs")[0]);
    for t in ["read_file", "grep", "web_fetch", "todo_write"] {
        assert!(
            rs_tools.iter().any(|x| x == t),
            "{t} not offered: {rs_tools:?}"
        );
    }
    for t in ["write_file", "edit_file", "bash", "glob"] {
        assert!(
            !rs_tools.iter().any(|x| x == t),
            "{t} offered: {rs_tools:?}"
        );
    }
    assert!(all(&mock.requests("rs")).contains("You research questions"));

    // The checklist is durable: the stored record still has it after the run.
    let snap = agent_team_store::Store::open_read_only(&sb.team("rt").db, "rt")
        .unwrap()
        .load()
        .unwrap();
    let fe = snap
        .agents
        .into_iter()
        .map(|a| a.info)
        .find(|a| a.name == "fe")
        .unwrap();
    assert_eq!(fe.todos.len(), 3);
    assert_eq!(fe.todos[1].status, TodoStatus::InProgress);
    assert!(mock.unmatched().is_empty(), "{:?}", mock.unmatched());
}
