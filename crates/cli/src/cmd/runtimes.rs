//! `agent-team doctor`'s `containers` check (issue 66): the container runtimes found here
//! (podman, docker), their versions, and whether each can run a container: `RUNTIME run --rm
//! --pull=never --network none IMAGE true` with an image of the team's that is already in the
//! runtime's store, else only `RUNTIME info`. Nothing is ever pulled, and every call is bounded
//! by a timeout. The runtime is behind [`Runner`] so the check is tested with a fake.

use std::time::Duration;

/// The runtimes looked for, in order.
pub const RUNTIMES: [&str; 2] = ["podman", "docker"];
/// How long one runtime call may take (a first `podman run` sets up its storage).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a program with a deadline: (it exited 0, what it printed on stdout and stderr);
/// `None` when it could not be started (not installed) or ran past the deadline.
pub trait Runner {
    /// `program args…`, bounded by `timeout`.
    fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Option<(bool, String)>;
}

/// The real runner: `agent_team_pane::procs::run_bounded_io` (its own process group, killed
/// whole past the deadline).
pub struct Real;

impl Runner for Real {
    fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Option<(bool, String)> {
        let mut c = std::process::Command::new(program);
        c.args(args);
        let out = agent_team_pane::procs::run_bounded_io(
            c,
            agent_team_pane::procs::BoundedIo {
                input: None,
                stdout: true,
                keep_stderr: 4096,
            },
            timeout,
        )
        .ok()?;
        if out.timed_out {
            return None;
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some((out.status.is_some_and(|s| s.success()), text))
    }
}

/// One runtime as found here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `podman` or `docker`.
    pub program: &'static str,
    /// Its version line (`podman version 4.3.1`); none: not installed (or silent).
    pub version: Option<String>,
    /// Whether it can run a container here (or, with no image to try, answers `info`).
    pub works: bool,
    /// What was tried and what came of it.
    pub detail: String,
}

/// The last non-empty line of `text` (a runtime's error), at most 200 characters.
fn last_line(text: &str) -> String {
    let l = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    l.chars().take(200).collect()
}

/// `program` as found here, tried with the first of `images` already in its store.
pub fn probe(run: &dyn Runner, program: &'static str, images: &[String]) -> Found {
    let version = match run.run(program, &["--version"], TIMEOUT) {
        Some((true, v)) => v.lines().next().map(|l| l.trim().to_string()),
        _ => None,
    };
    let Some(version) = version else {
        return Found {
            program,
            version: None,
            works: false,
            detail: format!("{program} is not installed"),
        };
    };
    let local = images.iter().find(|i| {
        let args: &[&str] = if program == "docker" {
            &["image", "inspect", i.as_str()]
        } else {
            &["image", "exists", i.as_str()]
        };
        matches!(run.run(program, args, TIMEOUT), Some((true, _)))
    });
    let (works, detail) = match local {
        Some(image) => {
            let mut args: Vec<String> = [
                "run",
                "--rm",
                "--pull=never",
                "--network",
                "none",
                "--cap-drop",
                "all",
            ]
            .map(String::from)
            .to_vec();
            args.extend(agent_team_pane::container::ulimits());
            args.extend([image.clone(), "true".into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match run.run(program, &args, TIMEOUT) {
                Some((true, _)) => (
                    true,
                    format!("runs containers here (`{image} true`, no network)"),
                ),
                Some((false, out)) => (
                    false,
                    format!(
                        "cannot run a container of {image} here: {}",
                        last_line(&out)
                    ),
                ),
                None => (
                    false,
                    format!(
                        "`{program} run {image} true` did not finish within {} s",
                        TIMEOUT.as_secs()
                    ),
                ),
            }
        }
        None => match run.run(program, &["info"], TIMEOUT) {
            Some((true, _)) => (
                true,
                if images.is_empty() {
                    format!(
                        "`{program} info` answers; the team names no image to try a container \
                         with"
                    )
                } else {
                    format!(
                        "`{program} info` answers; none of the team's images ({}) is in its \
                         store to try (nothing is pulled)",
                        images.join(", ")
                    )
                },
            ),
            Some((false, out)) => (
                false,
                format!("`{program} info` fails: {}", last_line(&out)),
            ),
            None => (
                false,
                format!(
                    "`{program} info` did not answer within {} s",
                    TIMEOUT.as_secs()
                ),
            ),
        },
    };
    Found {
        program,
        version: Some(version),
        works,
        detail,
    }
}

/// The `containers` check: ok when a runtime works here; the detail names each runtime.
pub fn check(run: &dyn Runner, images: &[String]) -> (bool, String, Vec<Found>) {
    let found: Vec<Found> = RUNTIMES.iter().map(|p| probe(run, p, images)).collect();
    let ok = found.iter().any(|f| f.works);
    let detail = found
        .iter()
        .map(|f| match &f.version {
            Some(v) => format!("{v}: {}", f.detail),
            None => f.detail.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    (ok, detail, found)
}

/// The images the team here names (its roles' and teammates' `container.image`), in order,
/// once each; none when there is no team file to read.
pub fn team_images(team: Option<String>, file: Option<std::path::PathBuf>) -> Vec<String> {
    let Ok(ctx) = crate::ctx::Ctx::resolve(team, file) else {
        return Vec::new();
    };
    let Some(cfg) = ctx
        .file
        .as_ref()
        .and_then(|f| agent_team_config::load(f).ok())
    else {
        return Vec::new();
    };
    let mut v: Vec<String> = Vec::new();
    let named = cfg
        .roles
        .values()
        .filter_map(|r| r.container.as_ref())
        .chain(cfg.teammates.iter().filter_map(|t| t.container.as_ref()));
    for c in named {
        if !v.contains(&c.image) {
            v.push(c.image.clone());
        }
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A machine with podman (and `images` in its store, `run_ok` for `run`), without docker.
    struct Fake {
        images: Vec<&'static str>,
        run_ok: bool,
        calls: RefCell<Vec<String>>,
    }

    impl Runner for Fake {
        fn run(&self, program: &str, args: &[&str], _: Duration) -> Option<(bool, String)> {
            self.calls
                .borrow_mut()
                .push(format!("{program} {}", args.join(" ")));
            if program != "podman" {
                return None;
            }
            match args {
                ["--version"] => Some((true, "podman version 4.3.1\n".into())),
                ["image", "exists", i] => Some((self.images.contains(i), String::new())),
                ["info"] => Some((true, "host: …".into())),
                ["run", ..] => Some(if self.run_ok {
                    (true, String::new())
                } else {
                    (false, "Error: runc: cannot set rlimit\n".into())
                }),
                _ => Some((false, String::new())),
            }
        }
    }

    fn fake(images: Vec<&'static str>, run_ok: bool) -> Fake {
        Fake {
            images,
            run_ok,
            calls: RefCell::new(Vec::new()),
        }
    }

    #[test]
    fn a_local_image_is_run_without_network_or_pull_and_docker_is_reported_missing() {
        let f = fake(vec!["localhost/team:1"], true);
        let (ok, detail, found) = check(&f, &["localhost/team:1".into()]);
        assert!(ok, "{detail}");
        assert!(
            detail.starts_with("podman version 4.3.1: runs containers here"),
            "{detail}"
        );
        assert!(detail.contains("docker is not installed"), "{detail}");
        assert_eq!(found[1].version, None);
        let calls = f.calls.borrow();
        let run = calls.iter().find(|c| c.starts_with("podman run")).unwrap();
        for want in [
            "--pull=never",
            "--network none",
            "--ulimit nofile=",
            "localhost/team:1 true",
        ] {
            assert!(run.contains(want), "{want} not in {run}");
        }
    }

    #[test]
    fn without_a_local_image_only_info_is_asked_and_a_failing_run_says_why() {
        let f = fake(vec![], true);
        let (ok, detail, _) = check(&f, &["docker.io/library/debian:12".into()]);
        assert!(ok, "{detail}");
        assert!(detail.contains("nothing is pulled"), "{detail}");
        assert!(!f.calls.borrow().iter().any(|c| c.contains(" run ")));

        let f = fake(vec!["localhost/team:1"], false);
        let (ok, detail, _) = check(&f, &["localhost/team:1".into()]);
        assert!(!ok);
        assert!(detail.contains("cannot set rlimit"), "{detail}");
    }
}
