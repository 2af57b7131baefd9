//! The tmux backend on a private tmux server per test (TMUX unset, temp dirs): layout, titles,
//! attach, kill/restart in place, deaths noticed, and nothing left after `down`.

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn team_file(team: &str, tasks: &str) -> String {
    let mut s = format!("name = \"{team}\"\nbackend = \"tmux\"\n");
    for n in ["builder-1", "builder-2", "builder-3"] {
        s.push_str(&format!(
            "[[teammates]]\nname = \"{n}\"\nrole = \"worker\"\n"
        ));
    }
    s.push_str(tasks);
    s
}

fn panes(sb: &Sandbox, team: &str) -> Vec<(String, u32, String, bool)> {
    let out = sb
        .tmux(
            &sb.tmux_socket(team),
            &[
                "list-panes",
                "-a",
                "-F",
                "#{pane_id}\t#{pane_pid}\t#{pane_dead}\t#{pane_title}",
            ],
        )
        .unwrap();
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[3].to_string(),
                f[2] == "1",
            )
        })
        .collect()
}

fn all_connected(sb: &Sandbox, team: &str, n: usize) -> bool {
    let a = sb.agents(team);
    a.len() == n && a.iter().all(|x| x.connected && x.pid.is_some())
}

#[test]
fn up_detach_opens_one_pane_per_agent_with_titles_and_work() {
    let sb = Sandbox::new();
    let marker = sb.path("work");
    // A second, long task keeps the team from finishing while the test looks at it.
    sb.write_team_file(&team_file(
        "panes",
        &format!(
            "[[tasks]]\ntitle = \"hello\"\nrun = \"echo hello-from-the-task > {}; echo visible-output\"\n[[tasks]]\ntitle = \"hold\"\nrun = \"sleep 60\"\n",
            marker.display()
        ),
    ));
    sb.ok(&["up", "--detach"]);
    wait_for("4 connected agents", T, || all_connected(&sb, "panes", 4));
    wait_for("the task to complete", T, || {
        sb.task_is("panes", 1, TaskStatus::Completed)
    });
    let agents = sb.agents("panes");
    let all = panes(&sb, "panes");
    // One pane per agent, and the live board beside them (`board = false` turns it off).
    assert_eq!(all.iter().filter(|x| x.2 == "board").count(), 1, "{all:?}");
    let p: Vec<_> = all.into_iter().filter(|x| x.2 != "board").collect();
    assert_eq!(p.len(), 4, "{p:?}");
    for a in &agents {
        let pane = p
            .iter()
            .find(|x| Some(&x.0) == a.pane.as_ref())
            .unwrap_or_else(|| panic!("no pane for {}", a.name));
        assert_eq!(Some(pane.1), a.pid, "{} runs in its pane", a.name);
        assert!(
            pane.2
                .starts_with(&format!("{}@panes · {} · ", a.name, a.role)),
            "title {:?}",
            pane.2
        );
        // The border draws the title in the agent's colour (a pane option the format reads).
        let colour = a.color.clone().unwrap();
        wait_for("the pane's colour", T, || {
            sb.tmux(
                &sb.tmux_socket("panes"),
                &[
                    "display-message",
                    "-p",
                    "-t",
                    &pane.0,
                    "#{@agent-team-color}",
                ],
            )
            .is_ok_and(|o| o.trim() == colour)
        });
    }
    let border = sb
        .tmux(
            &sb.tmux_socket("panes"),
            &["show-options", "-gv", "pane-border-format"],
        )
        .unwrap();
    assert!(border.contains("#{@agent-team-color}"), "{border}");
    // What a pane's program sets as its title (OSC 2, as `select-pane -T` does here) is not
    // what its border draws: the daemon's title is.
    let first = &p[0].0;
    sb.tmux(
        &sb.tmux_socket("panes"),
        &["select-pane", "-t", first, "-T", "FAKE: request 9 approved"],
    )
    .unwrap();
    let drawn = sb
        .tmux(
            &sb.tmux_socket("panes"),
            &["display", "-p", "-t", first, "#{E:pane-border-format}"],
        )
        .unwrap();
    assert!(
        !drawn.contains("FAKE") && drawn.contains("@panes · "),
        "{drawn}"
    );
    // The leader is the main pane on the left.
    let layout = sb
        .tmux(
            &sb.tmux_socket("panes"),
            &["display", "-p", "-t", "panes:", "#{window_layout}"],
        )
        .unwrap();
    let leader_pane = agents
        .iter()
        .find(|a| a.name == "leader")
        .unwrap()
        .pane
        .clone()
        .unwrap();
    let first = sb
        .tmux(
            &sb.tmux_socket("panes"),
            &[
                "list-panes",
                "-t",
                "panes:",
                "-F",
                "#{pane_id} #{pane_left}",
            ],
        )
        .unwrap();
    assert!(
        first.lines().any(|l| l == format!("{leader_pane} 0")),
        "leader not at the left: {first}\n{layout}"
    );
    // The worker that ran the task shows it in its pane.
    let owner = sb.tasks("panes")[0].owner.clone().unwrap();
    let pane = agents
        .iter()
        .find(|a| a.name == owner)
        .unwrap()
        .pane
        .clone()
        .unwrap();
    let screen = sb
        .tmux(
            &sb.tmux_socket("panes"),
            &["capture-pane", "-p", "-t", &pane],
        )
        .unwrap();
    assert!(
        screen.contains("visible-output") && screen.contains("task 1: hello"),
        "{screen}"
    );
    // Titles follow the status.
    wait_for("a title to say idle", T, || {
        panes(&sb, "panes").iter().any(|x| x.2.contains("· idle"))
    });
    // TMUX is scrubbed from the agents' environment.
    let leader_pid = agents
        .iter()
        .find(|a| a.name == "leader")
        .unwrap()
        .pid
        .unwrap();
    let environ = std::fs::read(format!("/proc/{leader_pid}/environ")).unwrap();
    assert!(
        !environ
            .split(|b| *b == 0)
            .any(|v| v.starts_with(b"TMUX=") || v.starts_with(b"TMUX_PANE="))
    );
    sb.ok(&["--team", "panes", "down"]);
}

/// The team window's panes as tmux sizes them: (pane id, width, height, title, window id).
fn window_panes(sb: &Sandbox, team: &str) -> Vec<(String, u32, u32, String, String)> {
    let out = sb
        .tmux(
            &sb.tmux_socket(team),
            &[
                "list-panes",
                "-s",
                "-t",
                team,
                "-F",
                "#{pane_id}\t#{pane_width}\t#{pane_height}\t#{pane_title}\t#{window_id}",
            ],
        )
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.to_string(),
                f.get(4)?.to_string(),
            ))
        })
        .collect()
}

/// Whether the team window shows `agents` agent panes of at least `min_w`×`min_h`, the
/// leader's the largest, unzoomed, and the board readable beside them (40 columns) or in a
/// window of its own.
fn laid_out(sb: &Sandbox, team: &str, agents: usize, min_w: u32, min_h: u32) -> bool {
    let all = window_panes(sb, team);
    let Some(leader) = all.iter().find(|p| p.3.starts_with("leader@")) else {
        return false;
    };
    let window = leader.4.clone();
    let zoomed = sb
        .tmux(
            &sb.tmux_socket(team),
            &["display", "-p", "-t", &window, "#{window_zoomed_flag}"],
        )
        .is_ok_and(|z| z == "0");
    let here: Vec<_> = all
        .iter()
        .filter(|p| p.4 == window && p.3 != "board")
        .collect();
    let board_ok = all
        .iter()
        .find(|p| p.3 == "board")
        .is_some_and(|b| b.4 != window || b.1 >= 40);
    zoomed
        && board_ok
        && here.len() == agents
        && here.iter().all(|p| p.1 >= min_w && p.2 >= min_h)
        && here.iter().all(|p| leader.1 * leader.2 >= p.1 * p.2)
}

#[test]
fn up_attached_shows_the_whole_team_laid_out_for_the_terminal_and_follows_it() {
    let sb = Sandbox::new();
    sb.write_team_file(&team_file("look", ""));
    // A terminal of the test's own: a tmux server whose only pane runs `agent-team up`, as a
    // person's terminal would (160x45, no status line of its own).
    let outer = sb.path("outer.tmux");
    let cmd = format!(
        "cd {} && env -u TMUX AGENT_TEAM_HOME={} AGENT_TEAM_RUNTIME_DIR={} {} up; sleep 600",
        sb.dir.path().display(),
        sb.paths.home.display(),
        sb.paths.runtime.display(),
        bin("agent-team").display()
    );
    sb.tmux(
        &outer,
        &[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "outer",
            "-x",
            "160",
            "-y",
            "45",
            &cmd,
        ],
    )
    .unwrap();
    let _ = sb.tmux(&outer, &["set", "-g", "status", "off"]);
    let team_sock = sb.tmux_socket("look");
    let outer_guard = KillServer(&sb, outer.clone());
    wait_for("a client on the team's server", T, || {
        sb.tmux(&team_sock, &["list-clients"])
            .is_ok_and(|c| !c.is_empty())
    });
    wait_for_or(
        "the team laid out at 160x45",
        T,
        || laid_out(&sb, "look", 4, 30, 5),
        || format!("{:?}", window_panes(&sb, "look")),
    );
    // The board is beside the team at this size.
    let all = window_panes(&sb, "look");
    let leader_window = all
        .iter()
        .find(|p| p.3.starts_with("leader@"))
        .unwrap()
        .4
        .clone();
    assert!(
        all.iter().any(|p| p.3 == "board" && p.4 == leader_window),
        "{all:?}"
    );

    // The terminal shrinks: the window follows it.
    sb.tmux(
        &outer,
        &["resize-window", "-t", "outer", "-x", "100", "-y", "30"],
    )
    .unwrap();
    wait_for_or(
        "the team laid out at 100x30",
        T,
        || laid_out(&sb, "look", 4, 15, 3),
        || format!("{:?}", window_panes(&sb, "look")),
    );

    // A teammate spawned while attached gets its place too.
    sb.ok(&["--team", "look", "spawn", "worker", "--name", "builder-4"]);
    wait_for_or(
        "five agents laid out at 100x30",
        T,
        || laid_out(&sb, "look", 5, 15, 3),
        || format!("{:?}", window_panes(&sb, "look")),
    );

    // Too narrow for a readable board beside the team: it goes to a window of its own, and
    // comes back when there is room again.
    sb.tmux(
        &outer,
        &["resize-window", "-t", "outer", "-x", "70", "-y", "24"],
    )
    .unwrap();
    // Whether the board is in the leader's window (`beside`) or a window of its own, with
    // the team laid out around it.
    let board_at = |beside: bool, min_w: u32, min_h: u32| {
        let all = window_panes(&sb, "look");
        let lw = all
            .iter()
            .find(|p| p.3.starts_with("leader@"))
            .map(|p| p.4.clone());
        all.iter()
            .any(|p| p.3 == "board" && (Some(&p.4) == lw.as_ref()) == beside)
            && laid_out(&sb, "look", 5, min_w, min_h)
    };
    wait_for_or(
        "the board in its own window",
        T,
        || board_at(false, 10, 3),
        || format!("{:?}", window_panes(&sb, "look")),
    );
    sb.tmux(
        &outer,
        &["resize-window", "-t", "outer", "-x", "160", "-y", "45"],
    )
    .unwrap();
    wait_for_or(
        "the board back beside the team",
        T,
        || board_at(true, 30, 5),
        || format!("{:?}", window_panes(&sb, "look")),
    );
    sb.ok(&["--team", "look", "down"]);
    drop(outer_guard);
}

/// Kills a tmux server this test started when the test ends, passed or not.
struct KillServer<'a>(&'a Sandbox, std::path::PathBuf);

impl Drop for KillServer<'_> {
    fn drop(&mut self) {
        let _ = self.0.tmux(&self.1, &["kill-server"]);
    }
}

#[test]
fn attach_from_inside_another_tmux_selects_and_zooms_the_pane() {
    let sb = Sandbox::new();
    sb.write_team_file(&team_file("att", ""));
    sb.ok(&["up", "--detach"]);
    wait_for("4 connected agents", T, || all_connected(&sb, "att", 4));
    let target = sb.agent("att", "builder-1").pane.unwrap();
    // A separate tmux server, owned by this test, whose pane runs `agent-team attach`.
    let outer = sb.path("outer.tmux");
    let cmd = format!(
        "env -u TMUX AGENT_TEAM_HOME={} AGENT_TEAM_RUNTIME_DIR={} {} --team att attach builder-1",
        sb.paths.home.display(),
        sb.paths.runtime.display(),
        bin("agent-team").display()
    );
    sb.tmux(
        &outer,
        &[
            "new-session",
            "-d",
            "-s",
            "outer",
            "-x",
            "200",
            "-y",
            "50",
            &cmd,
        ],
    )
    .unwrap();
    let team_sock = sb.tmux_socket("att");
    // Whether builder-1's pane is the active one and the window zoomed ("1 1").
    let zoom_state = |sb: &Sandbox| {
        sb.tmux(
            &team_sock,
            &[
                "display",
                "-p",
                "-t",
                &target,
                "#{pane_active} #{window_zoomed_flag}",
            ],
        )
        .unwrap()
    };
    wait_for("a client on the team's server", T, || {
        sb.tmux(&team_sock, &["list-clients"])
            .is_ok_and(|c| !c.is_empty())
    });
    let state = zoom_state(&sb);
    assert_eq!(state, "1 1", "builder-1's pane is active and zoomed");
    // The terminal shrinks: the team window is laid out again for it (the board goes to a
    // window of its own at this size, which only our layout does), and the pane the person
    // zoomed stays zoomed.
    sb.tmux(
        &outer,
        &["resize-window", "-t", "outer", "-x", "70", "-y", "24"],
    )
    .unwrap();
    wait_for_or(
        "the board in a window of its own",
        T,
        || {
            let all = window_panes(&sb, "att");
            let leader = all.iter().find(|p| p.3.starts_with("leader@"));
            all.iter()
                .any(|p| p.3 == "board" && leader.is_some_and(|l| l.4 != p.4))
        },
        || format!("{:?}", window_panes(&sb, "att")),
    );
    let state = zoom_state(&sb);
    assert_eq!(
        state, "1 1",
        "builder-1 is still zoomed after the new layout"
    );
    sb.ok(&["--team", "att", "down"]);
}

#[test]
fn kill_restart_keep_the_pane_and_deaths_are_noticed() {
    let sb = Sandbox::new();
    sb.write_team_file(&team_file("life", ""));
    sb.ok(&["up", "--detach"]);
    wait_for("4 connected agents", T, || all_connected(&sb, "life", 4));
    let sock = sb.tmux_socket("life");
    let b1 = sb.agent("life", "builder-1");
    let pane = b1.pane.clone().unwrap();

    // kill: stopped, not restarted, the pane stays and shows the exit.
    sb.ok(&["--team", "life", "kill", "builder-1"]);
    assert_eq!(sb.agent("life", "builder-1").status, AgentStatus::Stopped);
    // tmux marks the pane dead once it has collected the process, which may be just after.
    wait_for("the pane to stay, dead", T, || {
        sb.tmux(&sock, &["display", "-p", "-t", &pane, "#{pane_dead}"])
            .is_ok_and(|d| d == "1")
    });
    // restart: same pane id, new incarnation, connected.
    let out = sb.ok(&["--team", "life", "restart", "builder-1", "--json"]);
    let again: AgentInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (again.pane.as_deref(), again.incarnation),
        (Some(pane.as_str()), b1.incarnation + 1)
    );
    assert!(again.connected);

    // SIGKILL of the pane's process: restarted in the same pane (on-failure).
    let b2 = sb.agent("life", "builder-2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b2.pid.unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("builder-2 back", T, || {
        let a = sb.agent("life", "builder-2");
        a.incarnation == b2.incarnation + 1 && a.connected
    });
    assert_eq!(
        sb.agent("life", "builder-2").pane,
        b2.pane,
        "respawned in place"
    );

    // A pane closed by hand: noticed and restarted (in a new pane).
    let b3 = sb.agent("life", "builder-3");
    sb.tmux(&sock, &["kill-pane", "-t", b3.pane.as_deref().unwrap()])
        .unwrap();
    wait_for("builder-3 back", T, || {
        let a = sb.agent("life", "builder-3");
        a.incarnation == b3.incarnation + 1 && a.connected
    });

    // The tmux server killed: every agent is noticed dead and restarted on a new server.
    let before = sb.agents("life");
    sb.tmux(&sock, &["kill-server"]).unwrap();
    wait_for("all agents restarted", T, || {
        let now = sb.agents("life");
        now.iter().all(|a| {
            let old = before.iter().find(|b| b.name == a.name).unwrap();
            a.incarnation > old.incarnation && a.connected
        })
    });
    assert_eq!(panes(&sb, "life").len(), 4, "the layout was rebuilt");
    sb.ok(&["--team", "life", "down"]);
}

#[test]
fn down_leaves_no_tmux_server_session_or_process() {
    let sb = Sandbox::new();
    sb.write_team_file(&team_file(
        "gone",
        "[[tasks]]\ntitle = \"long\"\nrun = \"sleep 30\"\n",
    ));
    sb.ok(&["up", "--detach"]);
    wait_for("4 connected agents", T, || all_connected(&sb, "gone", 4));
    wait_for("the task to run", T, || {
        sb.task_is("gone", 1, TaskStatus::InProgress)
    });
    let groups: Vec<u32> = sb.agents("gone").iter().filter_map(|a| a.pgid).collect();
    let sock = sb.tmux_socket("gone");
    let server_pid: i32 = sb
        .tmux(&sock, &["display", "-p", "#{pid}"])
        .unwrap()
        .parse()
        .unwrap();
    sb.ok(&["--team", "gone", "down"]);
    assert!(sb.tmux(&sock, &["ls"]).is_err(), "the tmux server is gone");
    assert!(!sock.exists(), "its socket is gone");
    let server_gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server_pid), None).is_err()
        || std::fs::read_to_string(format!("/proc/{server_pid}/stat"))
            .is_ok_and(|s| s.contains(") Z"));
    assert!(server_gone, "the tmux server process is gone");
    for g in groups {
        assert!(!group_alive(g), "process group {g} survived down");
    }
}

#[test]
fn run_completes_a_dependency_graph_on_tmux() {
    let sb = Sandbox::new();
    let log = sb.path("runs.log");
    let mut tasks = String::new();
    // b and c wait (up to 10 s) for each other before they record: when the team runs them in
    // parallel they overlap however slowly the machine starts them; when it runs them one after
    // the other they cannot.
    let meet = |me: &str, other: &str| {
        format!(
            "touch {d}/{me}.up; i=0; while [ ! -f {d}/{other}.up ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; ",
            d = sb.dir.path().display()
        )
    };
    for (k, after, first) in [
        ("a", "", String::new()),
        ("b", "\"a\"", meet("b", "c")),
        ("c", "\"a\"", meet("c", "b")),
        ("d", "\"b\", \"c\"", String::new()),
    ] {
        tasks.push_str(&format!(
            "[[tasks]]\nkey = \"{k}\"\ntitle = \"{k}\"\nrun = \"{first}{}\"\nafter = [{after}]\n",
            recorded(k, &log, 0.3)
        ));
    }
    sb.write_team_file(&team_file("tgraph", &tasks));
    let out = sb.run(&["run", "--timeout", "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 task(s): 4 completed"));
    let runs = intervals(&std::fs::read_to_string(&log).unwrap());
    let iv = |k: &str| (runs[k][0].0, runs[k][0].1.unwrap());
    assert!(runs.values().all(|v| v.len() == 1));
    assert!(iv("d").0 >= iv("b").1 && iv("d").0 >= iv("c").1 && iv("b").0 >= iv("a").1);
    assert!(
        iv("b").0 < iv("c").1 && iv("c").0 < iv("b").1,
        "b and c ran in parallel"
    );
    assert!(
        sb.tmux(&sb.tmux_socket("tgraph"), &["ls"]).is_err(),
        "run leaves no tmux server"
    );
}

#[test]
fn the_leader_pane_prompts_and_its_answer_decides() {
    let sb = Sandbox::new();
    let mut s = team_file(
        "ask",
        "[[tasks]]\ntitle = \"guarded\"\nrun = \"echo guarded-ran\"\n",
    );
    s.push_str("[roles.worker]\npermissions = { bash = \"ask\" }\n");
    sb.write_team_file(&s);
    sb.ok(&["up", "--detach"]);
    wait_for("a permission request", T, || {
        let mut c = sb.operator("ask");
        !c.all_perms(false).unwrap().is_empty()
    });
    let leader_pane = sb.agent("ask", "leader").pane.unwrap();
    let sock = sb.tmux_socket("ask");
    wait_for("the prompt in the leader's pane", T, || {
        sb.tmux(&sock, &["capture-pane", "-p", "-t", &leader_pane])
            .is_ok_and(|t| t.contains("allow? [y 1] once"))
    });
    // A blind `y` approves nothing (issue 25: anything that reaches the tmux server could type
    // it); the prompt asks for the id.
    sb.tmux(&sock, &["send-keys", "-t", &leader_pane, "y", "Enter"])
        .unwrap();
    wait_for("the prompt to ask for the id", T, || {
        sb.tmux(&sock, &["capture-pane", "-p", "-t", &leader_pane])
            .is_ok_and(|t| t.contains("allowing needs the request's id"))
    });
    assert!(!sb.task_is("ask", 1, TaskStatus::Completed));
    assert_eq!(sb.operator("ask").all_perms(false).unwrap().len(), 1);
    // A person answers in the pane with the id (the test types for them).
    sb.tmux(&sock, &["send-keys", "-t", &leader_pane, "y 1", "Enter"])
        .unwrap();
    wait_for("the task to complete", T, || {
        sb.task_is("ask", 1, TaskStatus::Completed)
    });
    let mut c = sb.operator("ask");
    let req = c.all_perms(true).unwrap().remove(0);
    assert_eq!(req.status, PermStatus::Allowed);
    assert_eq!(
        req.decision.unwrap().by,
        "leader",
        "decided in the leader's pane"
    );
    sb.ok(&["--team", "ask", "down"]);
}

#[test]
fn up_here_opens_a_window_in_the_users_session_and_down_closes_only_it() {
    let mut sb = Sandbox::new();
    // The "user's" tmux server, owned by this test: one session, one pane.
    let user = sb.path("user.tmux");
    sb.tmux(
        &user,
        &[
            "new-session",
            "-d",
            "-s",
            "work",
            "-x",
            "200",
            "-y",
            "50",
            "sleep 600",
        ],
    )
    .unwrap();
    let info = sb
        .tmux(
            &user,
            &[
                "display",
                "-p",
                "-t",
                "work",
                "#{pid} #{pane_id} #{pane_pid}",
            ],
        )
        .unwrap();
    let f: Vec<&str> = info.split(' ').collect();
    let (server_pid, user_pane, user_pid) = (f[0].to_string(), f[1].to_string(), f[2].to_string());
    // `up` runs "inside" that pane, as it would from the user's shell.
    sb.env
        .push(("TMUX".into(), format!("{},{server_pid},0", user.display())));
    sb.env.push(("TMUX_PANE".into(), user_pane.clone()));
    sb.write_team_file(&team_file("here", ""));
    sb.ok(&["up", "--here", "--detach"]);
    wait_for("4 connected agents", T, || all_connected(&sb, "here", 4));

    let list = |args: &[&str]| sb.tmux(&user, args).unwrap();
    let windows = list(&[
        "list-windows",
        "-t",
        "work",
        "-F",
        "#{window_id} #{window_name}",
    ]);
    assert_eq!(windows.lines().count(), 2, "{windows}");
    let team_window = windows
        .lines()
        .find(|l| l.ends_with(" here"))
        .unwrap_or_else(|| panic!("no window named after the team: {windows}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let team_panes = list(&[
        "list-panes",
        "-t",
        &team_window,
        "-F",
        "#{pane_id} #{pane_title}",
    ]);
    // The board has a pane of its own in the team's window too.
    assert_eq!(
        team_panes.lines().filter(|l| l.ends_with(" board")).count(),
        1,
        "{team_panes}"
    );
    let mut ids: Vec<&str> = team_panes
        .lines()
        .filter(|l| !l.ends_with(" board"))
        .filter_map(|l| l.split(' ').next())
        .collect();
    ids.sort();
    let mut agents: Vec<String> = sb
        .agents("here")
        .into_iter()
        .map(|a| a.pane.unwrap())
        .collect();
    agents.sort();
    assert_eq!(ids, agents, "every agent has a pane in the team's window");
    // The user's own pane was not split or replaced.
    let mine = list(&[
        "list-panes",
        "-t",
        &user_pane,
        "-F",
        "#{pane_id} #{pane_pid}",
    ]);
    assert_eq!(mine, format!("{user_pane} {user_pid}"));
    // Nothing of ours on a private server.
    assert!(sb.tmux(&sb.tmux_socket("here"), &["ls"]).is_err());

    let groups: Vec<u32> = sb.agents("here").iter().filter_map(|a| a.pgid).collect();
    sb.ok(&["--team", "here", "down"]);
    let windows = list(&["list-windows", "-t", "work", "-F", "#{window_id}"]);
    assert!(
        !windows.contains(&team_window),
        "the team's window is closed: {windows}"
    );
    assert_eq!(
        list(&[
            "display",
            "-p",
            "-t",
            &user_pane,
            "#{pane_pid} #{pane_dead}"
        ]),
        format!("{user_pid} 0"),
        "the user's pane and server live on"
    );
    for g in groups {
        assert!(!group_alive(g), "process group {g} survived down");
    }
}
