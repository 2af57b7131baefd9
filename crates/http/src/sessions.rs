//! The session teams of `POST /team/stream`: every new `(user_id, session_id)` makes a team
//! whose daemon would otherwise stay up, idle, after its run. The server notes when each
//! session team was last streamed and stops the daemon of one whose run has ended and that
//! nobody has streamed for [`crate::Settings::session_idle`]. Its state is kept: the session's
//! next message starts it again, and a resume reads its stored log.

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
}

impl Sessions {
    /// Notes a stream opening on `team`.
    pub(crate) fn open(self: &Arc<Self>, team: &str) -> Open {
        if let Ok(mut m) = self.0.lock() {
            let u = m.entry(team.to_string()).or_insert(Use {
                open: 0,
                since: Instant::now(),
            });
            u.open += 1;
            u.since = Instant::now();
        }
        Open {
            sessions: self.clone(),
            team: team.to_string(),
        }
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

/// Stops the daemons of the session teams that are quiet at `now`: nobody streams them, they
/// were last used `idle` ago or more, and their run is not running. Returns the teams stopped.
pub(crate) fn reap(app: &App, now: Instant, idle: Duration) -> Vec<String> {
    let mut stopped = Vec::new();
    for team in app.sessions.quiet(now, idle) {
        match app.teams.read(&team, Request::TeamInfo) {
            Ok(Reply::Team { team: info }) if info.run == RunState::Running => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(team, "cannot read a session team: {}", e.message);
                app.sessions.forget(&team);
                continue;
            }
        }
        match app.teams.down(&team) {
            Ok(was_running) => {
                if was_running {
                    tracing::info!(team, "stopped an idle session team (its state is kept)");
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
