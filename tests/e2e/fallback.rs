//! The fallback does not pretend (issue 62, point 5): without a namespace (bubblewrap turned off
//! with `AGENT_TEAM_BWRAP=none`) `doctor` names the protections that do not hold, `up` and `run`
//! say so in one block, and an agent CLI teammate starts only when the team file accepts the
//! weaker sandbox with `sandbox = "weak"`.

use crate::sandbox::{TEAM, run_task, team_file, up_in_ws};
use agent_team_e2e::*;
use agent_team_protocol::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The block's first line (`up` and `run` print it once).
const BLOCK: &str = "these protections do not hold";

/// A sandbox whose commands find no namespace.
fn without_namespace() -> Sandbox {
    let mut sb = Sandbox::new();
    sb.env.push(("AGENT_TEAM_BWRAP".into(), "none".into()));
    sb
}

/// What each missing protection's line says, whichever fallback this kernel has.
const GAPS: &[&str] = &[
    "control plane",
    "not built from nothing",
    "read-only paths inside writable dirs",
    "can be created",
    "the network is open",
    "no PID namespace",
    "root capabilities",
];

#[test]
fn doctor_names_every_protection_the_fallback_does_not_hold() {
    let sb = without_namespace();
    let text = sb.ok(&["doctor"]);
    let tail = text
        .split("not enforced here:")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of what does not hold:\n{text}"));
    for gap in GAPS {
        assert!(tail.contains(gap), "{gap:?} missing from\n{text}");
    }
    assert!(
        text.contains("sandbox = \"weak\""),
        "the setting CLI teammates need: {text}"
    );
    // The sandbox's view, as `agent-team sandbox` gives it: what is hidden, writable,
    // protected, and how the network is reached.
    let json: serde_json::Value = serde_json::from_str(&sb.ok(&["doctor", "--json"])).unwrap();
    let view = &json["view"];
    assert_eq!(view["role"], "worker", "{json}");
    for key in ["hidden", "writable", "read_only", "not_enforced"] {
        assert!(
            view[key].as_array().is_some_and(|a| !a.is_empty()),
            "{key}: {view}"
        );
    }
    assert!(
        view["network"]
            .as_str()
            .is_some_and(|n| n.contains("host's network")),
        "{view}"
    );
    assert_eq!(
        view["not_enforced"].as_array().unwrap().len(),
        serde_json::from_str::<serde_json::Value>(&sb.ok(&["sandbox", "--json"])).unwrap()
            ["not_enforced"]
            .as_array()
            .unwrap()
            .len(),
        "doctor and `agent-team sandbox` print one view"
    );
    let ws = std::fs::canonicalize(sb.dir.path()).unwrap();
    assert!(
        view["writable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&ws.display().to_string())),
        "the workspace is writable: {view}"
    );
    // With the namespace (where this machine has one) nothing is listed as missing.
    let with = Sandbox::new();
    let json: serde_json::Value = serde_json::from_str(&with.ok(&["doctor", "--json"])).unwrap();
    let namespace = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["check"] == "namespace" && c["ok"] == true);
    assert_eq!(
        view["readable"],
        serde_json::json!(["everything but the hidden dirs"]),
        "the fallback reads all but the hidden dirs: {view}"
    );
    if namespace {
        let view = &json["view"];
        assert_eq!(view["not_enforced"], serde_json::json!([]), "{json}");
        assert!(!with.ok(&["doctor"]).contains("not enforced here"));
        // Built from nothing: the system's programs are what is readable, temp is private.
        assert!(
            view["readable"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/usr"),
            "{view}"
        );
        assert!(
            view["private"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/tmp"),
            "{view}"
        );
    }
}

#[test]
fn up_and_run_say_once_what_the_fallback_does_not_hold() {
    let sb = without_namespace();
    let err = up_in_ws(&sb, "process", &team_file(""));
    assert_eq!(err.matches(BLOCK).count(), 1, "{err}");
    for gap in GAPS {
        assert!(err.contains(gap), "{gap:?} missing from\n{err}");
    }
    // The block replaces the one-line warning it says in full.
    assert!(!err.contains("files that run later"), "{err}");
    // Other commands do not repeat it.
    let ps = sb.run(&["--team", TEAM, "ps"]);
    assert!(
        !String::from_utf8_lossy(&ps.stderr).contains(BLOCK),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    sb.ok(&["--team", TEAM, "down"]);

    let sb = without_namespace();
    sb.write_team_file(
        "name = \"fb\"\nboard = false\n[[teammates]]\nname = \"w1\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"t1\"\nrun = \"true\"\n",
    );
    let out = sb.run(&["run", "--backend", "in-process", "--timeout", "60"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches(BLOCK).count(), 1, "{err}");
    // `sandbox = "off"` asked for no sandbox: nothing to warn about.
    let off = without_namespace();
    let err = up_in_ws(&off, "process", &team_file("sandbox = \"off\""));
    assert!(!err.contains(BLOCK), "{err}");
    off.ok(&["--team", TEAM, "down"]);
}

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/fixtures/fake-cli.js")
        .display()
        .to_string()
}

/// A team of one `cli`-provider teammate `cc` (the scripted MCP client of tests/e2e/clis.rs)
/// with one task, and `extra` at the top.
fn cli_team(out: &Path, extra: &str) -> String {
    format!(
        "name = \"weakcli\"\nboard = false\n{extra}\n\n[roles.fake]\ndescription = \"a fake CLI\"\n\
         provider = \"cli\"\nmodel = \"none\"\ncommand = [\"node\", \"{fixture}\", \"{out}\"]\n\
         restart = \"never\"\n\n[[teammates]]\nname = \"cc\"\nrole = \"fake\"\n\n\
         [[tasks]]\nkey = \"one\"\ntitle = \"Write work.txt\"\n",
        fixture = fixture(),
        out = out.display(),
    )
}

#[test]
fn a_cli_teammate_needs_sandbox_weak_to_start_without_a_namespace() {
    if which("node").is_none() {
        eprintln!("skipped: node is not installed");
        return;
    }
    // Refused: the teammate fails (not restarted), `ps` and its log say why and what to write,
    // and `up` said so first.
    let sb = without_namespace();
    let out = sb.path("out");
    sb.write_team_file(&cli_team(&out, ""));
    let up = sb.run(&["up", "--backend", "process", "--detach"]);
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{err}");
    assert!(
        err.contains("agent CLI teammates (cc) will not start")
            && err.contains("sandbox = \"weak\""),
        "{err}"
    );
    wait_for("cc to fail", T, || {
        sb.agent("weakcli", "cc").status == AgentStatus::Failed
    });
    let cc = sb.agent("weakcli", "cc");
    assert_eq!(cc.restarts, 0, "{cc:?}");
    assert!(
        cc.error
            .as_deref()
            .is_some_and(|e| e.contains("sandbox = \"weak\"") && e.contains("namespace")),
        "{cc:?}"
    );
    let ps = sb.ok(&["ps"]);
    assert!(ps.contains("sandbox = \"weak\""), "{ps}");
    let log = std::fs::read_to_string(sb.team("weakcli").logs.join("cc.log")).unwrap_or_default();
    assert!(log.contains("sandbox = \"weak\""), "{log}");
    assert!(!out.join("ready").exists(), "the CLI ran");
    sb.ok(&["down"]);

    // Accepted: the same team with `sandbox = "weak"` works under the fallback.
    let sb = without_namespace();
    let out = sb.path("out");
    // Made before: under Landlock nothing new can be made beside the hidden dirs in the
    // test's temp dir.
    std::fs::create_dir_all(&out).unwrap();
    sb.write_team_file(&cli_team(&out, "sandbox = \"weak\""));
    let up = sb.run(&["up", "--backend", "process", "--detach"]);
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{err}");
    assert!(
        err.contains("agent CLI teammates (cc) run under it too"),
        "{err}"
    );
    wait_for("the CLI to finish its script", T, || {
        out.join("ready").exists() || out.join("error.txt").exists()
    });
    assert_eq!(
        std::fs::read_to_string(out.join("error.txt")).unwrap_or_default(),
        "",
        "the fake CLI failed"
    );
    wait_for("task 1 to complete", T, || {
        sb.task_is("weakcli", 1, TaskStatus::Completed)
    });
    assert_ne!(sb.agent("weakcli", "cc").status, AgentStatus::Failed);
    sb.ok(&["down"]);
}

/// `sandbox = "weak"` confines agents' commands as `on` does: an exec teammate's command
/// cannot read the runtime dir, with the namespace or under the fallback.
#[test]
fn sandbox_weak_confines_task_commands_as_on_does() {
    for sb in [Sandbox::new(), without_namespace()] {
        let doctor: serde_json::Value =
            serde_json::from_str(&sb.ok(&["doctor", "--json"])).unwrap();
        if doctor["view"]["mechanism"]
            .as_str()
            .is_some_and(|m| m.starts_with("none"))
        {
            eprintln!("skipped: no sandbox here: {}", doctor["view"]["mechanism"]);
            continue;
        }
        up_in_ws(&sb, "process", &team_file("sandbox = \"weak\""));
        let result = run_task(
            &sb,
            TEAM,
            "b2",
            &format!(
                "cat {} && echo LEAK:credential; echo FINISHED",
                sb.team(TEAM).operator_secret.display()
            ),
        );
        assert!(
            result.contains("FINISHED") && !result.contains("LEAK:"),
            "{result}"
        );
        sb.ok(&["--team", TEAM, "down"]);
    }
}

/// `name` on `PATH`.
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
