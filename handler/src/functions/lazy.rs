//! A [`TaskStore`] that connects in the background, so `handler functions` listens first.
//!
//! The Functions host starts the custom handler and polls its port until anything answers,
//! for `HttpWorkerOptions.InitializationTimeout` (30 s, azure-functions-host
//! `src/WebJobs.Script/Workers/Http/Configuration/HttpWorkerOptions.cs`, polled every 25 ms by
//! `DefaultHttpWorkerService.IsWorkerReady`). Connecting to Cosmos DB first (DNS, TLS, the
//! driver's server selection) can take longer than that, and a store that is down at start-up
//! would make the host restart the handler in a loop. So the server listens at once, this store
//! connects behind it with a backoff, and until it has connected every call fails with
//! [`StoreError::Unavailable`] naming the last connection error, which the adapters turn into a
//! clear "not ready" answer ([`LazyStore::not_ready`]).

use crate::store::{ListFilter, StoreError, TaskStore};
use async_trait::async_trait;
use model::{Event, Logs, MetricSample, Rates, Task, TaskId, TaskPage};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One connection attempt.
pub type Connect = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn TaskStore>, String>> + Send>>
        + Send
        + Sync,
>;

/// The store, once connected.
pub struct LazyStore {
    /// Set once by the connect loop; read by every call.
    inner: OnceLock<Arc<dyn TaskStore>>,
    /// The last connection error, for the "not ready" answers. Written by the connect loop.
    last_error: Mutex<String>,
    /// Woken when `inner` is set (callers waiting with [`LazyStore::ready`]).
    connected: Notify,
}

impl LazyStore {
    /// Starts connecting with `connect` until it succeeds or `stop` is cancelled; the first
    /// retry waits 500 ms, doubling to at most 10 s.
    pub fn spawn(connect: Connect, stop: CancellationToken) -> Arc<LazyStore> {
        let store = Arc::new(LazyStore {
            inner: OnceLock::new(),
            last_error: Mutex::new("connecting (first attempt in progress)".into()),
            connected: Notify::new(),
        });
        let s = store.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                match connect().await {
                    Ok(inner) => {
                        let _ = s.inner.set(inner);
                        s.connected.notify_waiters();
                        tracing::info!("task store connected");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?delay, "task store not reachable");
                        *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        });
        store
    }

    /// Whether the store has connected.
    pub fn is_ready(&self) -> bool {
        self.inner.get().is_some()
    }

    /// Waits up to `limit` for the connection; true when connected.
    pub async fn ready(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.connected.notified();
                if self.is_ready() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// What the handler answers while the store is not connected: which store and why.
    pub fn not_ready(&self) -> String {
        let e = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        format!("the task store (MongoDB / Cosmos DB) is not reachable yet: {e}")
    }

    fn get(&self) -> Result<&Arc<dyn TaskStore>, StoreError> {
        self.inner
            .get()
            .ok_or_else(|| StoreError::Unavailable(self.not_ready()))
    }
}

#[async_trait]
impl TaskStore for LazyStore {
    fn kind(&self) -> &'static str {
        self.inner.get().map_or("mongo (connecting)", |s| s.kind())
    }
    async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        self.get()?.insert(tasks).await
    }
    async fn pending(&self, key: Option<&str>) -> Result<u64, StoreError> {
        self.get()?.pending(key).await
    }
    async fn insert_capped(
        &self,
        tasks: &[Task],
        caps: model::shape::QueueCaps,
    ) -> Result<Vec<Task>, StoreError> {
        self.get()?.insert_capped(tasks, caps).await
    }
    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        LazyStore::get(self)?.get(id).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        self.get()?.list(filter).await
    }
    async fn update(
        &self,
        id: &TaskId,
        event: &Event,
        now_ms: i64,
        rates: &Rates,
    ) -> Result<Task, StoreError> {
        self.get()?.update(id, event, now_ms, rates).await
    }
    async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError> {
        self.get()?.token_hash(id).await
    }
    async fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        self.get()?.unfinished().await
    }
    async fn active_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        self.get()?.active_with_key(key).await
    }
    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError> {
        self.get()?.put_logs(id, logs).await
    }
    async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError> {
        self.get()?.logs(id).await
    }
    async fn add_metrics(&self, id: &TaskId, samples: &[MetricSample]) -> Result<(), StoreError> {
        self.get()?.add_metrics(id, samples).await
    }
    async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError> {
        self.get()?.metrics(id).await
    }
    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        self.get()?.remove_finished().await
    }
    async fn remove_finished_before(
        &self,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.get()?.remove_finished_before(before_ms, max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn calls_fail_with_the_connection_error_until_the_store_connects() {
        let dir = std::env::temp_dir().join(format!(
            "eda-lazy-{}-{}",
            std::process::id(),
            crate::clock::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("eda.db");
        let tries = Arc::new(AtomicU32::new(0));
        let t = tries.clone();
        let connect: Connect = Box::new(move || {
            let n = t.fetch_add(1, Ordering::SeqCst);
            let db = db.clone();
            Box::pin(async move {
                if n == 0 {
                    return Err("server version 4.2 is below the driver's minimum".into());
                }
                let s: Arc<dyn TaskStore> = Arc::new(SqliteStore::open(&db).unwrap());
                Ok(s)
            })
        });
        let store = LazyStore::spawn(connect, CancellationToken::new());
        // The first attempt fails; until the second one (500 ms later) calls say why.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.last_error.lock().unwrap().starts_with("connecting") {
            assert!(std::time::Instant::now() < deadline, "no first attempt");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !store.is_ready() {
            let err = store.unfinished().await.unwrap_err().to_string();
            assert!(
                err.contains("not reachable yet") && err.contains("4.2"),
                "{err}"
            );
        }
        assert!(
            store.ready(Duration::from_secs(10)).await,
            "connects on the retry"
        );
        assert!(store.unfinished().await.unwrap().is_empty());
        assert_eq!(tries.load(Ordering::SeqCst), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
