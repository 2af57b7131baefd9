//! The caps of the container a worker runs in (issue 66): whether a command that died was
//! killed for going past the memory cap or failed at the process cap, read from the
//! container's own cgroup (v2 `memory.events`/`pids.events`, v1 `memory.oom_control`/
//! `pids.events`), so a task says `out of memory (limit 2G)` instead of `exit 137`.

use std::path::Path;

use agent_team_pane::env::{MEMORY_LIMIT as ENV_MEMORY, PIDS_LIMIT as ENV_PIDS};

/// The cgroup's counters of limits hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hits {
    /// Processes the kernel killed at the memory cap.
    pub oom_kills: u64,
    /// Forks refused at the process cap.
    pub pids_max: u64,
}

/// The value of `key` in a `key value` lines file.
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key))
            .then(|| w.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// The first of `files` under `root` that holds `key`.
fn read_counter(root: &Path, files: &[&str], key: &str) -> u64 {
    files
        .iter()
        .find_map(|f| {
            std::fs::read_to_string(root.join(f))
                .ok()
                .and_then(|t| counter(&t, key))
        })
        .unwrap_or(0)
}

/// The counters now, under the cgroup file system mounted at `root` (`/sys/fs/cgroup`).
pub fn hits_at(root: &Path) -> Hits {
    Hits {
        oom_kills: read_counter(
            root,
            &["memory.events", "memory/memory.oom_control"],
            "oom_kill",
        ),
        pids_max: read_counter(root, &["pids.events", "pids/pids.events"], "max"),
    }
}

/// The caps this worker runs under, when its daemon said it has any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    memory: Option<String>,
    pids: Option<String>,
}

impl Caps {
    /// Read from the environment the daemon gave this worker.
    pub fn from_env() -> Caps {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Caps {
            memory: get(ENV_MEMORY),
            pids: get(ENV_PIDS),
        }
    }

    /// Whether there is any cap to watch.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some()
    }

    /// Why a command that ran between `before` and `after` failed, if a cap explains it.
    pub fn reason(&self, before: Hits, after: Hits) -> Option<String> {
        if let Some(m) = &self.memory
            && after.oom_kills > before.oom_kills
        {
            return Some(format!("out of memory (limit {m})"));
        }
        if let Some(p) = &self.pids
            && after.pids_max > before.pids_max
        {
            return Some(format!("process limit reached (pids {p})"));
        }
        None
    }
}

/// Where the container's cgroup is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_at_a_cap_is_named_and_nothing_else_is() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::create_dir_all(d.path().join("pids")).unwrap();
        let oom = d.path().join("memory/memory.oom_control");
        let pids = d.path().join("pids/pids.events");
        std::fs::write(&oom, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        std::fs::write(&pids, "max 0\n").unwrap();
        let caps = Caps {
            memory: Some("64M".into()),
            pids: Some("32".into()),
        };
        let before = hits_at(d.path());
        assert_eq!(before.oom_kills, 2);
        assert_eq!(caps.reason(before, hits_at(d.path())), None);
        std::fs::write(&oom, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(
            caps.reason(before, hits_at(d.path())).unwrap(),
            "out of memory (limit 64M)"
        );
        std::fs::write(&oom, "oom_kill 2\n").unwrap();
        std::fs::write(&pids, "max 5\n").unwrap();
        assert_eq!(
            caps.reason(before, hits_at(d.path())).unwrap(),
            "process limit reached (pids 32)"
        );
        // cgroup v2 names.
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(
            v2.path().join("memory.events"),
            "low 0\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(hits_at(v2.path()).oom_kills, 1);
    }
}
