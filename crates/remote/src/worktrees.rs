//! Members' worktrees on a host: the team's repository pushed there, a worktree per member
//! on its branch, their work fetched back into the team's repository here.

use crate::link::{checked, last_line};
use crate::ssh::Ssh;
use crate::{RemoteError, RemoteSettings, scripts};
use agent_team_pane::shell_quote;
use std::path::Path;

/// The team's repository as one host sees it, reached through the link on `control`.
pub(crate) struct HostRepo<'a> {
    /// The team's repository here.
    repo: &'a Path,
    team: &'a str,
    /// `[ssh]`'s argv prefix (git's ssh command).
    ssh_command: &'a [String],
    ssh: &'a dyn Ssh,
    host: &'a str,
    control: &'a Path,
    /// The host's `[ssh] dir`.
    root: &'a str,
}

impl<'a> HostRepo<'a> {
    /// The team's repository on `host`, whose `[ssh] dir` is `root`; none when the team's
    /// workspace is no git repository.
    pub fn new(
        settings: &'a RemoteSettings,
        ssh: &'a dyn Ssh,
        host: &'a str,
        control: &'a Path,
        root: &'a str,
    ) -> Option<Self> {
        Some(HostRepo {
            repo: settings.repo.as_deref()?,
            team: &settings.team,
            ssh_command: &settings.ssh,
            ssh,
            host,
            control,
            root,
        })
    }

    /// `name`'s worktree on the host (the team's repository pushed there at its current
    /// commit, then a worktree on `agent-team/NAME`, kept across restarts).
    pub fn ensure(&self, name: &str) -> Result<String, RemoteError> {
        let bare = format!("{}/repos/{}.git", self.root, self.team);
        let wt = self.worktree(name);
        let branch = agent_team_worktree::branch(name);
        self.run(&scripts::init_bare(&bare))?;
        self.git(&[
            "push",
            "-q",
            "--force",
            &self.url(),
            "HEAD:refs/agent-team/base",
        ])?;
        agent_team_worktree::record_base(self.repo, name)
            .map_err(|e| RemoteError::Io(format!("cannot record {name}'s base: {e}")))?;
        self.run(&scripts::add_worktree(&bare, &wt, &branch))?;
        Ok(wt)
    }

    /// Brings `name`'s work home from its worktree on the host: what it holds uncommitted is
    /// committed there as `NAME@TEAM` with `message`, then its branch is fetched into the
    /// team's repository, where `diff` and `finish` see it as a local worktree's. False when
    /// it has no worktree there.
    pub fn collect(&self, name: &str, message: &str) -> Result<bool, RemoteError> {
        let who = format!("{name}@{}", self.team);
        let there = self.run(&scripts::commit_work(&self.worktree(name), &who, message))?;
        if there.trim() != "yes" {
            return Ok(false);
        }
        let branch = agent_team_worktree::branch(name);
        self.git(&[
            "fetch",
            "-q",
            "--force",
            &self.url(),
            &format!("+refs/heads/{branch}:refs/heads/{branch}"),
        ])?;
        Ok(true)
    }

    /// The names of the team's worktrees on the host.
    pub fn names(&self) -> Vec<String> {
        let dir = format!("{}/work/{}", self.root, self.team);
        self.run(&scripts::list_worktrees(&dir))
            .map(|o| o.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `name`'s worktree's path on the host.
    fn worktree(&self, name: &str) -> String {
        format!("{}/work/{}/{name}", self.root, self.team)
    }

    fn run(&self, script: &str) -> Result<String, RemoteError> {
        checked(self.ssh, self.host, Some(self.control), script)
    }

    /// The team's repository on the host as a git URL.
    fn url(&self) -> String {
        let path = format!("{}/repos/{}.git", self.root, self.team);
        match self.host.strip_prefix("ssh://") {
            Some(h) => format!("ssh://{h}{path}"),
            None => format!("ssh://{}{path}", self.host),
        }
    }

    /// The ssh command git uses to reach the host through its link (`GIT_SSH_COMMAND`).
    fn git_ssh(&self) -> String {
        let mut v: Vec<String> = self.ssh_command.to_vec();
        if v.is_empty() {
            v.push("ssh".into());
        }
        v.extend(
            ["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-S"]
                .iter()
                .map(|s| s.to_string()),
        );
        v.push(self.control.display().to_string());
        v.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// git in the team's repository, reaching the host through its link.
    fn git(&self, args: &[&str]) -> Result<(), RemoteError> {
        let out = agent_team_worktree::git(self.repo)
            .env("GIT_SSH_COMMAND", self.git_ssh())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| RemoteError::Io(format!("cannot run git: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RemoteError::Io(format!(
                "git {}: {}",
                args.first().copied().unwrap_or_default(),
                last_line(&String::from_utf8_lossy(&out.stderr))
            )))
        }
    }
}
