//! The operator always gets in: with more in-process teammates than the connection cap allows
//! sockets, every agent joins (in-process agents count against no socket limit) and the
//! operator's `ps` and `down` still answer. (The same with 1 100 teammates against the default
//! cap of 1 024 takes minutes in a debug build: the cap is lowered instead.)

use agent_team_e2e::*;
use std::time::Duration;

/// In-process teammates started: more than [`CAP`].
const MEMBERS: usize = 150;

/// The team's `limits.max_connections`.
const CAP: usize = 32;

#[test]
fn more_in_process_agents_than_the_connection_cap_all_join_and_ps_and_down_answer() {
    let sb = Sandbox::new();
    let mut team = format!(
        "name = \"big\"\nboard = false\nmax_teammates = {MEMBERS}\n\
         [limits]\nmax_connections = {CAP}\n\
         [roles.idle]\ndescription = \"does nothing\"\nprovider = \"exec\"\nmodel = \"none\"\n"
    );
    for i in 0..MEMBERS {
        team.push_str(&format!(
            "[[teammates]]\nname = \"w{i}\"\nrole = \"idle\"\n"
        ));
    }
    sb.write_team_file(&team);
    let up = sb.run(&["up", "--backend", "in-process", "--detach"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // Every one of them joins: none refused by a socket cap, none failed.
    wait_for("every teammate to join", Duration::from_secs(240), || {
        let agents = sb.agents("big");
        agents.len() > MEMBERS
            && agents
                .iter()
                .filter(|a| a.name != "leader")
                .all(|a| matches!(a.status, agent_team_protocol::AgentStatus::Idle))
    });
    let failed: Vec<_> = sb
        .agents("big")
        .into_iter()
        .filter(|a| a.status == agent_team_protocol::AgentStatus::Failed)
        .map(|a| a.name)
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
    // The operator's commands answer at this size.
    let ps = sb.run(&["ps", "--json"]);
    assert!(
        ps.status.success(),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(listed.len(), MEMBERS + 1);
    let down = sb.run(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}
