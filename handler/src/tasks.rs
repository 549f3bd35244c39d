//! The task service: every read and write of task state goes through [`Tasks`], which applies
//! it to the store, prices the container time and publishes the change on the event bus.
//! Nothing else writes to the store, so the dashboard sees every change exactly once.

use crate::clock::now_ms;
use crate::events::Events;
use crate::store::{Change, StoreError, TaskStore};
use model::{Task, TaskId, TaskState};
use std::sync::Arc;

/// Per-second prices of container resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Price of one vCPU-second.
    pub cpu_second: f64,
    /// Price of one GB-second of memory.
    pub gb_second: f64,
}

/// Cheap to clone; shared by the API, the spawner and the reconciler.
#[derive(Clone)]
pub struct Tasks {
    /// The backend chosen at start-up.
    pub store: Arc<dyn TaskStore>,
    /// Where changes are announced.
    pub events: Events,
    /// How container time is priced.
    pub rates: Rates,
}

impl Tasks {
    /// Inserts new tasks (existing ids are returned as stored) and announces the new ones.
    pub async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        let stored = self.store.insert(tasks).await?;
        for t in &stored {
            self.events.task(t);
        }
        Ok(stored)
    }

    /// Applies a change; one that ends an attempt bills it at these rates (in the store's
    /// atomic update, from the task as stored).
    pub async fn change(&self, id: &TaskId, mut change: Change) -> Result<Task, StoreError> {
        change.rates = Some(self.rates);
        let task = self.store.update(id, &change).await?;
        self.events.task(&task);
        Ok(task)
    }

    /// Shortcut: move to `to` now with a reason.
    pub async fn finish(
        &self,
        id: &TaskId,
        to: TaskState,
        reason: &str,
    ) -> Result<Task, StoreError> {
        let mut c = Change::to(to, now_ms());
        c.reason = Some(reason.to_string());
        self.change(id, c).await
    }
}

impl Rates {
    /// Price of one second of `t`'s container.
    pub fn per_second(&self, t: &Task) -> f64 {
        let gb = f64::from(t.resources.memory_mb) / 1024.0;
        t.resources.cpu * self.cpu_second + gb * self.gb_second
    }
}
