//! The operator CLI against a real daemon it starts on demand.

use agent_team_e2e::*;

#[test]
fn cli_starts_the_daemon_and_speaks_json_and_clear_errors() {
    let sb = Sandbox::new();
    let out = sb.run(&[
        "--team", "web", "task", "add", "lint", "--run", "true", "--json",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("started the daemon for team web"));
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (task["id"].as_u64(), task["status"].as_str()),
        (Some(1), Some("pending"))
    );

    sb.ok(&["--team", "web", "task", "add", "test", "--blocked-by", "1"]);
    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--team", "web", "task", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["blocked_by"], serde_json::json!([1]));

    // An unknown recipient: one line on stderr with the hint, exit 1.
    let out = sb.run(&["--team", "web", "send", "ghost", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("agent-team: error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Usage errors exit 2.
    assert_eq!(
        sb.run(&["--team", "web", "task", "frob"]).status.code(),
        Some(2)
    );

    // The only running team is picked without --team.
    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["task", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let teams: serde_json::Value =
        serde_json::from_str(&sb.ok(&["teams", "list", "--json"])).unwrap();
    assert_eq!(teams[0]["name"], "web");
    assert_eq!(teams[0]["running"], true);

    let events = sb.ok(&["--team", "web", "events", "--since", "1"]);
    let lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["seq"], 2);
    assert_eq!(lines[0]["event"]["type"], "TASK_UPDATED");

    // Down stops the daemon and keeps the state; teams show reads it from disk.
    sb.ok(&["--team", "web", "down"]);
    let tp = sb.team("web");
    assert!(!agent_team_client::daemon_running(&tp));
    let show: serde_json::Value =
        serde_json::from_str(&sb.ok(&["teams", "show", "web", "--json"])).unwrap();
    assert_eq!(show["daemon_pid"], 0);
    assert_eq!(show["tasks"], serde_json::json!([["pending", 2]]));
    // Deleting a stopped team removes its state.
    sb.ok(&["teams", "delete", "web"]);
    assert!(!tp.dir.exists());
}
