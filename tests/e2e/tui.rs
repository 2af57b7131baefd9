//! `agent-team board` in a real terminal (a pane of the team's private tmux server, driven
//! with send-keys and read with capture-pane), and the CLI's completions in a real bash.

use agent_team_e2e::*;
use agent_team_protocol::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn capture(sb: &Sandbox, sock: &std::path::Path, target: &str) -> String {
    sb.tmux(sock, &["capture-pane", "-p", "-t", target])
        .unwrap_or_default()
}

#[test]
fn the_board_shows_a_running_team_and_approving_from_it_lets_the_teammate_go_on() {
    let sb = Sandbox::new();
    let done = sb.path("published.txt");
    sb.write_team_file(&format!(
        "name = \"tb\"\nbackend = \"tmux\"\n[defaults]\nprovider = \"exec\"\n\
         [roles.worker]\npermissions = {{ bash = \"ask\" }}\n\
         [[teammates]]\nname = \"b1\"\nrole = \"worker\"\n\
         [[tasks]]\ntitle = \"publish it\"\nrun = \"echo yes > {}\"\n",
        done.display()
    ));
    sb.ok(&["up", "--detach"]);
    let sock = sb.tmux_socket("tb");
    // `up` opened the board beside the leader.
    let mut board_pane = String::new();
    wait_for("the board pane", T, || {
        let out = sb
            .tmux(
                &sock,
                &["list-panes", "-a", "-F", "#{pane_id} #{pane_title}"],
            )
            .unwrap_or_default();
        match out.lines().find(|l| l.ends_with(" board")) {
            Some(l) => {
                board_pane = l.split(' ').next().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    wait_for("the request to wait", T, || {
        sb.operator("tb").all_perms(false).unwrap().len() == 1
    });
    wait_for("the side board to show the team", T, || {
        let s = capture(&sb, &sock, &board_pane);
        s.contains("agent-team board") && s.contains("b1") && s.contains("#1")
    });

    // A board of its own at 80×24, driven with keys.
    sb.tmux(
        &sock,
        &[
            "new-window",
            "-d",
            "-n",
            "kb",
            &format!("{} --team tb board", bin("agent-team").display()),
        ],
    )
    .unwrap();
    sb.tmux(
        &sock,
        &["resize-window", "-t", "tb:kb", "-x", "80", "-y", "24"],
    )
    .unwrap();
    wait_for("the board at 80x24", T, || {
        let s = capture(&sb, &sock, "tb:kb");
        s.contains("leader")
            && s.contains("b1")
            && s.contains("#1 b1 bash: echo yes")
            && s.contains("publish it")
            && s.contains("q quit")
    });
    let screen = capture(&sb, &sock, "tb:kb");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    assert!(!done.exists());
    // Tab to the approvals, `a` allows the selected request.
    sb.tmux(&sock, &["send-keys", "-t", "tb:kb", "Tab"])
        .unwrap();
    sb.tmux(&sock, &["send-keys", "-t", "tb:kb", "a"]).unwrap();
    wait_for("the teammate to go on", T, || done.exists());
    wait_for("the board to say so", T, || {
        let s = capture(&sb, &sock, "tb:kb");
        s.contains("allowed #1") && s.contains("nothing waiting")
    });
    assert!(matches!(
        sb.operator("tb").all_perms(true).unwrap()[0].status,
        PermStatus::Allowed
    ));
    // A resize redraws the board to the new size.
    sb.tmux(
        &sock,
        &["resize-window", "-t", "tb:kb", "-x", "120", "-y", "30"],
    )
    .unwrap();
    wait_for("the board redrawn at 120x30", T, || {
        capture(&sb, &sock, "tb:kb")
            .lines()
            .any(|l| l.chars().count() > 100 && l.contains('┐'))
    });
    // `q` quits: the pane's process is gone.
    sb.tmux(&sock, &["send-keys", "-t", "tb:kb", "q"]).unwrap();
    wait_for("the board to quit", T, || {
        sb.tmux(&sock, &["display", "-p", "-t", "tb:kb", "#{pane_dead}"])
            .map(|s| s == "1")
            .unwrap_or(true)
    });
    sb.ok(&["--team", "tb", "down"]);
    assert!(
        sb.tmux(&sock, &["ls"]).is_err(),
        "down leaves no tmux server"
    );
}

#[test]
fn bash_completes_re_to_restart() {
    let sb = Sandbox::new();
    let script = sb.ok(&["completions", "bash"]);
    let file = sb.path("agent-team.bash");
    std::fs::write(&file, script).unwrap();
    // Load the script in a real bash and ask it what `agent-team re<TAB>` completes to.
    let probe = format!(
        "source {}\nCOMP_WORDS=(agent-team re)\nCOMP_CWORD=1\nCOMP_LINE='agent-team re'\nCOMP_POINT=${{#COMP_LINE}}\nfn=$(complete -p agent-team | sed -E 's/.*-F ([^ ]+) .*/\\1/')\n\"$fn\" agent-team re agent-team\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(probe)
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        words.split_whitespace().collect::<Vec<_>>(),
        ["restart"],
        "{words}"
    );
    // And the man page comes from the same definition.
    let man = sb.ok(&["man"]);
    assert!(
        man.contains(".TH agent-team") && man.contains("restart"),
        "{man}"
    );
}

#[test]
fn completions_piped_into_head_end_quietly() {
    // `agent-team completions bash | head`: the reader goes after a few lines while the
    // script (over 64 KiB, more than a pipe holds) is still being written.
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let mut child = sb
            .cmd("agent-team")
            .args(["completions", shell])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 64];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{shell}: {}: {err}", out.status);
        assert!(err.is_empty(), "{shell}: {err}");
    }
}
