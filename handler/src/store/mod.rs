//! Where tasks live: the [`TaskStore`] trait and its backends.
//!
//! - [`sqlite`]: the local mode's embedded store (and, in the same file, the local queue's tables).
//! - [`sqlite_db`]: the SQLite file under both: group-committing writer, readers, durability;
//!   [`sqlite_storage`]: what is wrong when it cannot be written.
//! - [`sqlite_board`]: the SQLite store's board order, pages and incrementally kept counts;
//!   [`sqlite_search`]: its search indexes (FTS5 trigram, key, labels, created time).
//! - [`mongo`]: Cosmos DB for MongoDB in Azure ([`mongo_wire`]: connection, throttling, errors;
//!   [`mongo_counts`]: the board's counts; [`mongo_search`]: search filters and counts).
//! - [`memory`]: in memory, for fast unit tests of the code above the store.
//!
//! Every backend stores a task as one document keyed by id. Stores only load, compare-and-set
//! and query: a change is an [`Event`] that [`TaskStore::update`] loads the task for, passes
//! through the one pure function `model::Task::apply` (legality, times, timeline, bill) and
//! writes back only if nobody wrote in between, so the lifecycle rules hold whatever the
//! backend. [`StoreError`] keeps each backend's own error as its source.

pub mod memory;
pub mod mongo;
pub mod mongo_counts;
pub mod mongo_search;
pub mod mongo_wire;
pub mod sqlite;
pub mod sqlite_board;
pub mod sqlite_db;
pub mod sqlite_search;
pub mod sqlite_shape;
pub mod sqlite_storage;

use async_trait::async_trait;
use model::shape::QueueCaps;
use model::{Event, LifecycleError, Logs, MetricSample, Rates, Task, TaskId, TaskPage, TaskState};
use std::path::PathBuf;
use std::sync::Arc;

/// Errors of any store. Each keeps its cause as `source` (shared behind an `Arc`, so one failed
/// group commit can answer every caller with the same cause); the API logs the chain and shows
/// clients only what they can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No task has this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// The lifecycle refused the event: illegal from the task's state, or about an attempt
    /// that is no longer the current one ([`LifecycleError`]).
    #[error("task {id}: {source}")]
    Refused {
        /// The task.
        id: TaskId,
        /// What the lifecycle said.
        #[source]
        source: LifecycleError,
    },
    /// The list cursor could not be read.
    #[error("invalid cursor")]
    BadCursor,
    /// The data directory cannot take the write: full, read-only, gone or failing. The write
    /// was not kept (it was one transaction), and the client is told where and what, so they
    /// can act; the cause (e.g. SQLite's "database or disk is full") stays in `source`, for
    /// the log only.
    #[error("the data directory {} {problem}", dir.display())]
    Storage {
        /// The directory holding the database.
        dir: PathBuf,
        /// What is wrong with it.
        problem: StorageProblem,
        /// The error that showed it (a SQLite or I/O error), shared by every caller of a group
        /// commit that failed together.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// SQLite failed for a reason that is not the storage (a constraint, a busy database).
    #[error("SQLite: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The MongoDB driver failed (network, server, throttled past the retries).
    #[error("MongoDB: {0}")]
    Mongo(#[source] Arc<mongodb::error::Error>),
    /// The MongoDB server cannot be used by this driver (too old); says which version and why.
    #[error("{message}")]
    Incompatible {
        /// The server's version, the driver's minimum and the fix.
        message: String,
        /// The driver's own error.
        #[source]
        source: Arc<mongodb::error::Error>,
    },
    /// A stored document could not be encoded or decoded.
    #[error("a stored document could not be encoded or decoded: {0}")]
    Codec(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// Other writers kept winning the compare-and-set of this task.
    #[error("task {id}: {attempts} concurrent updates in a row")]
    Contended {
        /// The task.
        id: TaskId,
        /// How many times the write was tried.
        attempts: u32,
    },
    /// The store cannot serve now (not connected yet, its writer thread is gone); says why.
    #[error("the task store is unavailable: {0}")]
    Unavailable(String),
    /// Storing the batch would put more tasks in waiting than a cap allows (backpressure,
    /// [`TaskStore::insert_capped`]): nothing of it was stored.
    #[error("{queued} tasks are waiting{}; the cap is {limit} ({cap})", .key.as_ref().map(|k| format!(" with key {k}")).unwrap_or_default())]
    OverCap {
        /// Which cap: `max_queued` or `max_queued_per_key`.
        cap: &'static str,
        /// Its value.
        limit: u64,
        /// How many were waiting already.
        queued: u64,
        /// The key, for the per-key cap.
        key: Option<String>,
    },
}

impl StoreError {
    /// A copy for another caller of the same failed group commit (the cause is shared).
    pub fn share(&self) -> StoreError {
        self.clone()
    }

    /// An encoding or decoding error of a stored document.
    pub fn codec(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Codec(Arc::new(e))
    }

    /// True for the errors a lost race shows (another writer got there first), which the
    /// reconciler and the spawner may ignore.
    pub fn is_lost_race(&self) -> bool {
        matches!(self, StoreError::Refused { .. } | StoreError::NotFound(_))
    }
}

/// What is wrong with the data directory when a write fails there. Decides the HTTP status
/// (see `api.rs`): `Full` is 507 Insufficient Storage, the others 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// Its file system has no space left (SQLite "database or disk is full", ENOSPC, quota).
    Full,
    /// It does not take writes: a read-only mount or missing permissions.
    ReadOnly,
    /// It, or the database file in it, was removed or replaced while the handler ran: writes
    /// would go to a file nobody will find again, so none is acknowledged.
    Gone,
    /// Another I/O error (EIO, a failed fsync).
    Failing,
}

impl std::fmt::Display for StorageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageProblem::Full => "is full: its file system has no space left for the database",
            StorageProblem::ReadOnly => "is read-only: the database cannot be written",
            StorageProblem::Gone => {
                "is gone: the database file was removed or replaced while the handler ran"
            }
            StorageProblem::Failing => "fails to write: the disk reported an I/O error",
        })
    }
}

/// Which tasks `GET /api/tasks` wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only these states; empty means all.
    pub states: Vec<TaskState>,
    /// Page size, already clamped to the limits.
    pub limit: usize,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Tasks to skip (after the cursor, if any): how a virtualised board jumps to a position.
    pub offset: usize,
    /// Only tasks still unfinished or finished at or after this time (ms since the epoch):
    /// the ones a timeline of the last minutes draws, however many older ones are stored.
    pub active_since_ms: Option<i64>,
    /// The operator's search (`q`, `from`, `to`); with one, the page's counts are of the
    /// matching tasks, not of the whole board.
    pub search: model::Search,
}

/// Storage of tasks, their worker-token hashes, logs and metric samples.
///
/// Object-safe so the app holds an `Arc<dyn TaskStore>` chosen at start-up. Every method is
/// atomic on its own; [`TaskStore::update`] is a compare-and-set around `model::Task::apply`.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Which backend this is, for logs and the health route.
    fn kind(&self) -> &'static str;
    /// Inserts tasks whose ids are new. Tasks already stored are left alone and returned as
    /// stored, so a redelivered message never resets a task.
    async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError>;
    /// One task, with its timeline.
    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;
    /// A page of tasks, newest first, without timelines, and the counts per state.
    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError>;
    /// In one atomic step: loads the task, applies `event` at `now_ms` (billing at `rates`),
    /// and writes the result only if the task was not changed in between (compare-and-set;
    /// retried on a lost race), with the event's token hash if it carries one. Returns the task
    /// as it now is.
    async fn update(
        &self,
        id: &TaskId,
        event: &Event,
        now_ms: i64,
        rates: &Rates,
    ) -> Result<Task, StoreError>;
    /// The SHA-256 (hex) of the current attempt's worker token.
    async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError>;
    /// Every task that is not terminal (what the reconciler watches).
    async fn unfinished(&self) -> Result<Vec<Task>, StoreError>;
    /// The tasks with concurrency key `key` that hold a container or are about to (`Provisioning`
    /// or `InProgress`: `TaskState::is_active`), in no particular order. Functions mode counts a key's
    /// running tasks with it in the store every instance shares (`functions::admit`); there are
    /// at most the key's cap of them, plus claims racing for the last slot.
    async fn active_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError>;
    /// Stores the captured output of a task (replacing what was there), keeping at most
    /// `MAX_LOG_BYTES` of its tail ([`model::Logs::capped`]).
    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError>;
    /// The captured output of a task, if any was captured.
    async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError>;
    /// Appends metric samples, keeping at most `model::limits::MAX_METRIC_SAMPLES` per task.
    async fn add_metrics(&self, id: &TaskId, samples: &[MetricSample]) -> Result<(), StoreError>;
    /// The samples of a task, oldest first.
    async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError>;
    /// Removes every terminal task with its logs and metrics; returns the removed tasks.
    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError>;
    /// Tasks waiting (`Pending`): in all when `key` is `None`, else those of that concurrency
    /// key. Read from an index or a kept count, never by loading the tasks.
    async fn pending(&self, key: Option<&str>) -> Result<u64, StoreError>;
    /// [`TaskStore::insert`], refusing the whole batch with [`StoreError::OverCap`] when it
    /// would put more tasks in waiting than `caps` allow, in all or for one key. This default
    /// counts, then inserts: two steps, so concurrent batches may overshoot a cap by one
    /// batch (the MongoDB store: no multi-document transaction). SQLite overrides it with the
    /// count inside the insert's transaction.
    async fn insert_capped(
        &self,
        tasks: &[Task],
        caps: QueueCaps,
    ) -> Result<Vec<Task>, StoreError> {
        // The counts the caps ask for, read first (the rule itself is `check_caps`).
        let mut counts = std::collections::BTreeMap::<Option<&str>, u64>::new();
        if caps.max_queued > 0 {
            counts.insert(None, self.pending(None).await?);
        }
        if caps.max_queued_per_key > 0 {
            for k in tasks.iter().filter_map(|t| t.key.as_deref()) {
                if let std::collections::btree_map::Entry::Vacant(e) = counts.entry(Some(k)) {
                    e.insert(self.pending(Some(k)).await?);
                }
            }
        }
        let new: Vec<&Task> = tasks.iter().collect();
        check_caps(caps, &new, |k| Ok(counts.get(&k).copied().unwrap_or(0)))?;
        self.insert(tasks).await
    }
    /// Retention: removes at most `max` terminal tasks that finished before `before_ms` (ms since
    /// the epoch), oldest first, with their logs and metrics; returns them. Bounded so one call
    /// never holds the store (SQLite's one writer) for long: callers repeat until fewer than
    /// `max` come back.
    async fn remove_finished_before(
        &self,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// Whether writes are accepted now (for `GET /api/health`). A backend that saw its storage
    /// fail re-checks it here, so readiness returns by itself once the cause is gone.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The rule of the queue caps, the same for every backend: refuses `new` (tasks not stored
/// yet) when storing them would put more tasks in waiting than `caps` allow, in all or for one
/// key. `queued(None)` counts every waiting task, `queued(Some(key))` a key's; it is asked only
/// for the caps that are set.
pub fn check_caps(
    caps: QueueCaps,
    new: &[&Task],
    mut queued: impl FnMut(Option<&str>) -> Result<u64, StoreError>,
) -> Result<(), StoreError> {
    if caps.max_queued > 0 {
        let waiting = queued(None)?;
        if waiting + new.len() as u64 > caps.max_queued {
            return Err(StoreError::OverCap {
                cap: "max_queued",
                limit: caps.max_queued,
                queued: waiting,
                key: None,
            });
        }
    }
    if caps.max_queued_per_key > 0 {
        let mut per_key = std::collections::BTreeMap::<&str, u64>::new();
        for k in new.iter().filter_map(|t| t.key.as_deref()) {
            *per_key.entry(k).or_default() += 1;
        }
        for (key, n) in per_key {
            let waiting = queued(Some(key))?;
            if waiting + n > caps.max_queued_per_key {
                return Err(StoreError::OverCap {
                    cap: "max_queued_per_key",
                    limit: caps.max_queued_per_key,
                    queued: waiting,
                    key: Some(key.to_string()),
                });
            }
        }
    }
    Ok(())
}

/// Why `event` cannot be applied to task `id`.
pub fn refused(id: &TaskId, source: LifecycleError) -> StoreError {
    StoreError::Refused {
        id: id.clone(),
        source,
    }
}
