//! The task service: every write of task state goes through [`Tasks`], which hands the event to
//! the store's atomic update (load, `model::Task::apply`, compare-and-set) and publishes the
//! result on the event bus. The store is private, so nothing else writes to it and the
//! dashboard sees every change exactly once; reads go through the small methods below.

use crate::clock::now_ms;
use crate::events::Events;
use crate::store::{ListFilter, StoreError, TaskStore};
use model::{Event, Logs, MetricSample, Task, TaskId, TaskPage};
use std::sync::Arc;

pub use model::Rates;

/// Cheap to clone; shared by the API, the spawner, the reconciler and the queues.
#[derive(Clone)]
pub struct Tasks {
    /// The backend chosen at start-up. Private: [`Tasks`] is its only writer.
    store: Arc<dyn TaskStore>,
    /// Where changes are announced.
    pub events: Events,
    /// How container time is priced (passed to every update, which bills in `Task::apply`).
    rates: Rates,
}

impl Tasks {
    /// The service over `store`, announcing on `events`, billing at `rates`.
    pub fn new(store: Arc<dyn TaskStore>, events: Events, rates: Rates) -> Tasks {
        Tasks {
            store,
            events,
            rates,
        }
    }

    /// Inserts new tasks (existing ids are returned as stored) and announces them.
    pub async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        let stored = self.store.insert(tasks).await?;
        for t in &stored {
            self.events.task(t);
        }
        Ok(stored)
    }

    /// Applies `event` to task `id` now (atomically, in the store) and announces the result.
    /// A refused event ([`StoreError::Refused`]) changes nothing.
    pub async fn apply(&self, id: &TaskId, event: Event) -> Result<Task, StoreError> {
        let task = self.store.update(id, &event, now_ms(), &self.rates).await?;
        self.events.task(&task);
        Ok(task)
    }

    /// One task, with its timeline.
    pub async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        self.store.get(id).await
    }

    /// One task, or [`StoreError::NotFound`].
    pub async fn load(&self, id: &TaskId) -> Result<Task, StoreError> {
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    /// A page of the board with the counts per state.
    pub async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        self.store.list(filter).await
    }

    /// Every task that is not terminal (what the reconciler watches).
    pub async fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        self.store.unfinished().await
    }

    /// The SHA-256 (hex) of the current attempt's worker token.
    pub async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError> {
        self.store.token_hash(id).await
    }

    /// Keeps the captured output of a task (its tail, see `model::Logs::capped`).
    pub async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError> {
        self.store.put_logs(id, logs).await
    }

    /// The captured output of a task, if any was captured.
    pub async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError> {
        self.store.logs(id).await
    }

    /// Appends metric samples of a task.
    pub async fn add_metrics(
        &self,
        id: &TaskId,
        samples: &[MetricSample],
    ) -> Result<(), StoreError> {
        self.store.add_metrics(id, samples).await
    }

    /// The samples of a task, oldest first.
    pub async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError> {
        self.store.metrics(id).await
    }

    /// Removes every finished task with its logs and metrics, and announces it.
    pub async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        let removed = self.store.remove_finished().await?;
        self.events.cleared(&removed);
        Ok(removed)
    }

    /// Which backend holds the tasks (for logs and the health route).
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Whether the store accepts writes now (the health route).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ready().await
    }
}
