//! Connections to model servers shared by the agents that run on one runtime (the daemon's
//! in-process agents): one HTTP client, so one pool of kept-alive connections, for each kind of
//! client instead of one each. Inside an [`HttpPool::scope`], [`crate::connect`] takes its
//! client from the pool; elsewhere (a worker process, tests) it builds its own, as before.
//! A client's connections belong to the runtime that made them, so a pool serves one runtime.

use crate::ModelError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What tells two clients apart: a loopback server (no proxy), plain http (no certificate
/// store), the connect timeout. Everything else a request sets for itself.
pub(crate) type ClientKey = (bool, bool, Duration);

tokio::task_local! {
    static POOL: HttpPool;
}

/// The HTTP clients of the agents of one runtime, one for each kind of client (a loopback
/// server, plain http, the connect timeout).
#[derive(Debug, Clone, Default)]
pub struct HttpPool(Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>);

impl HttpPool {
    /// Runs `fut` (an agent) with this pool: its models share the pool's clients. Not an
    /// `async fn`: that one's state kept `fut` twice (its argument and the scope's copy), and
    /// an in-process agent's task was 35 KB instead of 18.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        POOL.scope(self, fut)
    }
}

/// The client for `key`: the scope's pool's (made with `build` the first time), else a new one.
pub(crate) fn client(
    key: ClientKey,
    build: impl FnOnce() -> Result<reqwest::Client, ModelError>,
) -> Result<reqwest::Client, ModelError> {
    let Ok(pool) = POOL.try_with(HttpPool::clone) else {
        return build();
    };
    let mut clients = match pool.0.lock() {
        Ok(c) => c,
        Err(_) => return build(),
    };
    if let Some(c) = clients.get(&key) {
        return Ok(c.clone());
    }
    let c = build()?;
    clients.insert(key, c.clone());
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClientKey {
        (true, true, Duration::from_secs(5))
    }

    fn built(n: &std::sync::atomic::AtomicU32) -> Result<reqwest::Client, ModelError> {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(reqwest::Client::new())
    }

    #[tokio::test]
    async fn agents_in_one_pool_share_a_client_and_others_build_their_own() {
        let n = std::sync::atomic::AtomicU32::new(0);
        let pool = HttpPool::default();
        pool.clone()
            .scope(async {
                client(key(), || built(&n)).unwrap();
                client(key(), || built(&n)).unwrap();
            })
            .await;
        pool.scope(async { client(key(), || built(&n)).unwrap() })
            .await;
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1, "one client");
        // Another kind of client, and any outside a pool, are built.
        HttpPool::default()
            .scope(async { client((false, false, Duration::from_secs(5)), || built(&n)).unwrap() })
            .await;
        client(key(), || built(&n)).unwrap();
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_scope_holds_its_future_once() {
        let agent = async {
            let state = [0u8; 4096];
            tokio::task::yield_now().await;
            state.len()
        };
        let alone = std::mem::size_of_val(&agent);
        let scoped = HttpPool::default().scope(agent);
        // The scope's own fields (the pool, its slot) on top of the future, not a second copy.
        assert!(
            std::mem::size_of_val(&scoped) < alone + 256,
            "{} bytes scoped against {alone} alone",
            std::mem::size_of_val(&scoped)
        );
    }
}
