//! The session teams of `POST /team/stream`: every new `(user_id, session_id)` makes a team
//! whose daemon would otherwise stay up for good. The server counts them (at most
//! [`crate::Settings::max_sessions`] at once), notes when each was last streamed, and stops
//! the daemon of one that nobody has streamed for [`crate::Settings::session_idle`], whether
//! its run ended or still runs. Its state is kept: the session's next message starts it again,
//! and a resume reads its stored log.

use crate::App;
use agent_team_protocol::{Reply, Request, RunState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How one session team was used.
#[derive(Debug, Clone, Copy)]
struct Use {
    /// Streams open on it now.
    open: usize,
    /// When the last one closed (or the first opened).
    since: Instant,
}

/// The session teams this server has streamed, by team name.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Use>>);

/// Held while a session stream is open; marks the session used when dropped.
pub(crate) struct Open {
    sessions: Arc<Sessions>,
    team: String,
    /// The session was not known before this stream.
    fresh: bool,
}

impl Open {
    /// The stream never started and neither did the team (its start failed): a session that
    /// was new is forgotten at once rather than counted until it is found idle.
    pub(crate) fn abandon(self) {
        if self.fresh {
            let mut m = self.sessions.0.lock().unwrap_or_else(|e| e.into_inner());
            if m.get(&self.team).is_some_and(|u| u.open == 1) {
                m.remove(&self.team);
            }
        }
    }
}

impl Sessions {
    /// Notes a stream opening on `team`, unless `team` is a new session and `max` sessions
    /// are known already (`Err` with their number).
    pub(crate) fn try_open(self: &Arc<Self>, team: &str, max: usize) -> Result<Open, usize> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = !m.contains_key(team);
        if fresh && m.len() >= max {
            return Err(m.len());
        }
        let u = m.entry(team.to_string()).or_insert(Use {
            open: 0,
            since: Instant::now(),
        });
        u.open += 1;
        u.since = Instant::now();
        Ok(Open {
            sessions: self.clone(),
            team: team.to_string(),
            fresh,
        })
    }

    /// Forgets the sessions nobody streams whose team is not among `running` (stopped by
    /// someone else, e.g. `POST /v1/teams/TEAM/down`), so they no longer count.
    pub(crate) fn prune(&self, running: &std::collections::HashSet<String>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|team, u| u.open > 0 || running.contains(team));
    }

    /// The session teams nobody streams that were last used at least `idle` before `now`.
    fn quiet(&self, now: Instant, idle: Duration) -> Vec<String> {
        self.0
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, u)| u.open == 0 && now.saturating_duration_since(u.since) >= idle)
                    .map(|(t, _)| t.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets `team` unless a stream opened on it meanwhile.
    fn forget(&self, team: &str) {
        if let Ok(mut m) = self.0.lock()
            && m.get(team).is_some_and(|u| u.open == 0)
        {
            m.remove(team);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut m) = self.sessions.0.lock()
            && let Some(u) = m.get_mut(&self.team)
        {
            u.open = u.open.saturating_sub(1);
            u.since = Instant::now();
        }
    }
}

/// Stops the daemons of the session teams that are quiet at `now`: nobody streams them and
/// they were last used `idle` ago or more, whether their run ended or still runs (nobody is
/// there to see it). Returns the teams stopped.
pub(crate) fn reap(app: &App, now: Instant, idle: Duration) -> Vec<String> {
    let mut stopped = Vec::new();
    for team in app.sessions.quiet(now, idle) {
        let running = match app.teams.read(&team, Request::TeamInfo) {
            Ok(Reply::Team { team: info }) => info.run == RunState::Running,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(team, "cannot read a session team: {}", e.message);
                app.sessions.forget(&team);
                continue;
            }
        };
        match app.teams.down(&team) {
            Ok(was_running) => {
                if was_running {
                    tracing::info!(
                        team,
                        run_was_running = running,
                        "stopped an idle session team (its state is kept)"
                    );
                    stopped.push(team.clone());
                }
                app.sessions.forget(&team);
            }
            Err(e) => tracing::warn!(team, "cannot stop an idle session team: {}", e.message),
        }
    }
    stopped
}

/// Checks for quiet session teams every `idle / 4` (at most a minute) for as long as the
/// server's state lives.
pub(crate) fn start_reaper(app: Weak<App>, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
    let spawned = std::thread::Builder::new()
        .name("session-reaper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(app) = app.upgrade() else { return };
                reap(&app, Instant::now(), idle);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the session reaper: {e}; idle session teams stay up");
    }
}
