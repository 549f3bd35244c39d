//! Where tasks live: the [`TaskStore`] trait and its backends.
//!
//! - [`sqlite`]: the local mode's embedded store (and, in the same file, the local queue's tables).
//! - [`sqlite_board`]: the SQLite store's board order, pages and incrementally kept counts.
//! - [`mongo`]: Cosmos DB for MongoDB in Azure.
//!
//! Every backend stores a task as one document keyed by id, and applies changes through the one
//! pure function [`apply`], so the lifecycle rules of `model::state` hold whatever the backend.

pub mod mongo;
pub mod mongo_counts;
pub mod sqlite;
pub mod sqlite_board;

use async_trait::async_trait;
use model::{Logs, MetricSample, Task, TaskId, TaskPage, TaskState, Transition, TransitionError};
use std::path::PathBuf;
use std::sync::Arc;

/// Errors of any store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No task has this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// The change is not legal from the task's current state (or a stale attempt reported).
    #[error(transparent)]
    Illegal(#[from] TransitionError),
    /// The change was for an attempt that is no longer the task's current one.
    #[error("stale report for attempt {got} of task {id}; current attempt is {current}")]
    StaleAttempt {
        /// The task.
        id: TaskId,
        /// The attempt named by the change.
        got: u32,
        /// The task's current attempt.
        current: u32,
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
    /// The backend failed (I/O, driver, corrupt document). Logged, never shown to clients.
    #[error("store backend: {0}")]
    Backend(String),
}

impl StoreError {
    /// A copy for another caller of the same failed group commit (the error types inside are
    /// not `Clone`; a storage cause is shared, anything else is kept as its text).
    pub fn share(&self) -> StoreError {
        match self {
            StoreError::Storage {
                dir,
                problem,
                source,
            } => StoreError::Storage {
                dir: dir.clone(),
                problem: *problem,
                source: source.clone(),
            },
            other => StoreError::Backend(other.to_string()),
        }
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
}

/// One change to a task, applied atomically by [`TaskStore::update`] through [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The state to enter.
    pub to: TaskState,
    /// When (ms since epoch).
    pub at_ms: i64,
    /// Starting a new attempt: the only way back to `Pending`, and how `Provisioning` moves to
    /// the next attempt number.
    pub new_attempt: bool,
    /// Only apply if the task's current attempt is this one (reports from old containers).
    pub expect_attempt: Option<u32>,
    /// Set the attempt number.
    pub attempt: Option<u32>,
    /// Set the container name.
    pub container: Option<String>,
    /// Set the SHA-256 (hex) of the attempt's worker token.
    pub token_hash: Option<String>,
    /// Set the exit code.
    pub exit_code: Option<i64>,
    /// Set the reason (None leaves it; `Some("")` clears it).
    pub reason: Option<String>,
    /// Set the earliest time of the next attempt.
    pub retry_at_ms: Option<i64>,
    /// Container seconds to add to the bill, with their cost.
    pub billed: Option<(u64, f64)>,
    /// Prices to bill the current attempt with when this change ends it (leaves `Provisioning`
    /// or `InProgress`); computed in [`apply`] from the task as stored, so no extra read.
    pub rates: Option<crate::tasks::Rates>,
    /// Raise the attempt budget to at least this (a person's retry).
    pub max_attempts: Option<u32>,
}

impl Change {
    /// A change to `to` at `at_ms` and nothing else.
    pub fn to(to: TaskState, at_ms: i64) -> Change {
        Change {
            to,
            at_ms,
            new_attempt: false,
            expect_attempt: None,
            attempt: None,
            container: None,
            token_hash: None,
            exit_code: None,
            reason: None,
            retry_at_ms: None,
            billed: None,
            rates: None,
            max_attempts: None,
        }
    }
}

/// Applies `change` to `task`: the one place every backend's writes go through.
///
/// Returns the new task and whether the state actually changed (an idempotent re-entry of
/// `Provisioning` only refreshes fields).
pub fn apply(task: &Task, change: &Change) -> Result<Task, StoreError> {
    if let Some(want) = change.expect_attempt {
        if want != task.attempt {
            return Err(StoreError::StaleAttempt {
                id: task.id.clone(),
                got: want,
                current: task.attempt,
            });
        }
    }
    task.state.transition(change.to, change.new_attempt)?;
    let mut t = task.clone();
    t.state = change.to;
    set_if(&mut t.attempt, change.attempt);
    if change.container.is_some() {
        t.container = change.container.clone();
    }
    if change.exit_code.is_some() {
        t.exit_code = change.exit_code;
    }
    if let Some(reason) = &change.reason {
        t.reason = (!reason.is_empty()).then(|| truncate(reason, model::limits::MAX_REASON_BYTES));
    }
    let billed = change.billed.or_else(|| {
        let ends = change.to.is_terminal() || change.to == TaskState::Pending;
        change
            .rates
            .filter(|_| ends)
            .and_then(|r| bill(task, change.at_ms, r))
    });
    if let Some((secs, cost)) = billed {
        t.billed_seconds += secs;
        t.cost += cost;
    }
    let budget = change.max_attempts.map(|m| m.max(t.max_attempts));
    set_if(&mut t.max_attempts, budget);
    t.retry_at_ms = change.retry_at_ms;
    match change.to {
        TaskState::Pending => t.provisioned_at_ms = None,
        // Re-entering Provisioning (a redelivered message) keeps when it was first asked for.
        TaskState::Provisioning if t.provisioned_at_ms.is_none() => {
            t.provisioned_at_ms = Some(change.at_ms)
        }
        _ => {}
    }
    stamp(&mut t, change);
    Ok(t)
}

/// Seconds and cost of `t`'s current attempt if it is active: from the moment its container was
/// asked for to `end_ms`, rounded up to whole seconds (per-second billing).
fn bill(t: &Task, end_ms: i64, rates: crate::tasks::Rates) -> Option<(u64, f64)> {
    if !t.state.is_active() {
        return None;
    }
    let start = t
        .transitions
        .iter()
        .rev()
        .find(|tr| tr.state == TaskState::Provisioning && tr.attempt == t.attempt)?
        .at_ms;
    let secs = ((end_ms - start).max(0) as u64).div_ceil(1000).max(1);
    Some((secs, secs as f64 * rates.per_second(t)))
}

fn set_if<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Records times and the timeline entry of a change.
fn stamp(t: &mut Task, change: &Change) {
    match change.to {
        TaskState::InProgress => t.started_at_ms = Some(change.at_ms),
        TaskState::Pending | TaskState::Provisioning => {
            t.started_at_ms = None;
            t.finished_at_ms = None;
            if change.new_attempt {
                t.exit_code = change.exit_code;
            }
        }
        s if s.is_terminal() => t.finished_at_ms = Some(change.at_ms),
        _ => {}
    }
    t.transitions.push(Transition {
        state: change.to,
        at_ms: change.at_ms,
        attempt: t.attempt,
        reason: t.reason.clone().filter(|_| change.reason.is_some()),
    });
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Storage of tasks, their worker-token hashes, logs and metric samples.
///
/// Object-safe so the app holds an `Arc<dyn TaskStore>` chosen at start-up. Every method is
/// atomic on its own; [`TaskStore::update`] is a compare-and-set through [`apply`].
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
    /// Applies a change atomically and returns the task as it now is.
    async fn update(&self, id: &TaskId, change: &Change) -> Result<Task, StoreError>;
    /// The SHA-256 (hex) of the current attempt's worker token.
    async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError>;
    /// Every task that is not terminal (what the reconciler watches).
    async fn unfinished(&self) -> Result<Vec<Task>, StoreError>;
    /// Stores the captured output of a task (replacing what was there).
    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError>;
    /// The captured output of a task, if any was captured.
    async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError>;
    /// Appends metric samples, keeping at most `model::limits::MAX_METRIC_SAMPLES` per task.
    async fn add_metrics(&self, id: &TaskId, samples: &[MetricSample]) -> Result<(), StoreError>;
    /// The samples of a task, oldest first.
    async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError>;
    /// Removes every terminal task with its logs and metrics; returns the removed tasks.
    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError>;
    /// Whether writes are accepted now (for `GET /api/health`). A backend that saw its storage
    /// fail re-checks it here, so readiness returns by itself once the cause is gone.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Resources;

    fn task() -> Task {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 512,
        };
        Task::new(TaskId::parse("t1").unwrap(), "w".into(), r, 3, 60, 1)
    }

    #[test]
    fn apply_records_the_timeline_and_refuses_stale_attempts() {
        let mut c = Change::to(TaskState::Provisioning, 2);
        c.attempt = Some(1);
        c.container = Some("eda-t1-1".into());
        let t = apply(&task(), &c).unwrap();
        assert_eq!(
            (t.state, t.attempt, t.transitions.len()),
            (TaskState::Provisioning, 1, 2)
        );
        assert_eq!(t.provisioned_at_ms, Some(2));
        let again = apply(&t, &Change::to(TaskState::Provisioning, 9)).unwrap();
        assert_eq!(
            again.provisioned_at_ms,
            Some(2),
            "a re-entry keeps the first time"
        );
        let mut stale = Change::to(TaskState::InProgress, 3);
        stale.expect_attempt = Some(0);
        assert!(matches!(
            apply(&t, &stale),
            Err(StoreError::StaleAttempt { .. })
        ));
        let done = apply(&t, &Change::to(TaskState::Done, 4)).unwrap();
        assert_eq!(done.finished_at_ms, Some(4));
        assert!(apply(&done, &Change::to(TaskState::InProgress, 5)).is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
