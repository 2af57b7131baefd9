//! What `serve` runs beside its HTTP API (issue 69): the schedules (`schedule.rs`, on a
//! thread of their own) and the webhooks of the served team file ([`FileHooks`], the
//! `agent_team_http::Hooks` of `POST /v1/teams/{team}/hooks/{name}`).

use crate::cmd::runs::{RunSpec, RunStore, Trigger};
use crate::ctx::Ctx;
use agent_team_http::{HookDef, Hooks};
use agent_team_paths::Paths;
use agent_team_protocol::{ErrorBody, ErrorCode};
use chrono::Utc;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The webhooks of one team file, served for its team.
pub(crate) struct FileHooks {
    paths: Paths,
    team: String,
    file: PathBuf,
    /// `serve --secret`: a hook's secret is looked up here first, then in the environment
    /// variable its `[secrets]` entry names; also handed to every run.
    secrets: BTreeMap<String, String>,
    store: RunStore,
}

fn internal(e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, e.to_string())
}

impl FileHooks {
    /// Where the delivery ids of one hook are remembered: a file per delivery.
    fn deliveries(&self, name: &str) -> PathBuf {
        self.paths.home.join("hooks").join(&self.team).join(name)
    }

    /// The file remembering `delivery` (its name is a hash of the id, so no id escapes).
    fn delivery_file(&self, name: &str, delivery: &str) -> PathBuf {
        use sha2_hex::hex_sha256;
        self.deliveries(name).join(hex_sha256(delivery.as_bytes()))
    }

    /// The value of the secret `key`: `serve --secret KEY=…`, else the variable its
    /// `[secrets]` entry names.
    fn secret(&self, cfg: &agent_team_config::TeamConfig, key: &str) -> Option<String> {
        if let Some(v) = self.secrets.get(key) {
            return Some(v.clone());
        }
        let var = cfg.secrets.get(key)?.env.clone()?;
        std::env::var(var).ok().filter(|v| !v.is_empty())
    }
}

impl Hooks for FileHooks {
    fn hook(&self, team: &str, name: &str) -> Result<Option<HookDef>, ErrorBody> {
        if team != self.team {
            return Ok(None);
        }
        let triggers = agent_team_config::triggers::load(&self.file)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        let Some(w) = triggers.webhooks.into_iter().find(|w| w.name == name) else {
            return Ok(None);
        };
        let cfg = agent_team_config::load(&self.file)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        let Some(secret) = self.secret(&cfg, &w.secret) else {
            // Never accept an unsigned delivery: a hook without its secret is refused.
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                format!(
                    "webhook {name:?}: its secret {} has no value here (give serve --secret {} or set the variable [secrets] names)",
                    w.secret, w.secret
                ),
            ));
        };
        Ok(Some(HookDef {
            secret: secret.into_bytes(),
            goal: w.goal,
            vars: w.vars,
            per_minute: w.per_minute,
        }))
    }

    fn remember(&self, _team: &str, name: &str, delivery: &str) -> Result<bool, ErrorBody> {
        let dir = self.deliveries(name);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let file = self.delivery_file(name, delivery);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
        {
            Ok(f) => {
                // Durable before the answer: the file and its directory entry.
                f.sync_all().map_err(internal)?;
                if let Ok(d) = std::fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(internal(e)),
        }
    }

    fn forget(&self, _team: &str, name: &str, delivery: &str) {
        let _ = std::fs::remove_file(self.delivery_file(name, delivery));
    }

    fn start(
        &self,
        team: &str,
        name: &str,
        goal: Option<String>,
        vars: BTreeMap<String, String>,
    ) -> Result<String, ErrorBody> {
        let spec = RunSpec {
            trigger: Trigger::Webhook(name.to_string()),
            team: team.to_string(),
            file: self.file.clone(),
            goal,
            vars,
            secrets: self.secrets.clone(),
            fire_time: None,
        };
        self.store
            .start(&spec, Utc::now())
            .map(|s| s.id)
            .map_err(|e| internal(format!("{e:#}")))
    }
}

/// The scheduler's thread: stopped when this is dropped.
pub(crate) struct SchedulerThread(Arc<AtomicBool>);

impl Drop for SchedulerThread {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// For `serve`: the served team file's webhooks, and its schedules (with those `schedule add`
/// kept) on a thread that runs until the returned handle is dropped.
pub(crate) fn start(
    ctx: &Ctx,
    secrets: &BTreeMap<String, String>,
) -> (Option<Arc<dyn Hooks>>, SchedulerThread) {
    let file = ctx
        .file
        .as_ref()
        .and_then(|f| std::fs::canonicalize(f).ok());
    let hooks = file.clone().map(|file| {
        Arc::new(FileHooks {
            paths: ctx.paths.clone(),
            team: ctx.team.clone(),
            file,
            secrets: secrets.clone(),
            store: RunStore::new(&ctx.paths),
        }) as Arc<dyn Hooks>
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (paths, flag, served, secrets) = (
        ctx.paths.clone(),
        stop.clone(),
        file.map(|f| (ctx.team.clone(), f)),
        secrets.clone(),
    );
    if let Err(e) = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || crate::cmd::schedule::run_loop(&paths, served, secrets, &flag))
    {
        eprintln!("agent-team: cannot start the scheduler: {e}");
    }
    (hooks, SchedulerThread(stop))
}

/// SHA-256 in hex, for file names.
mod sha2_hex {
    /// `bytes`' SHA-256 as 64 hex digits.
    pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
