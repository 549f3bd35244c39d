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

    /// Applies a change, adding the bill of the attempt when it leaves an active state.
    pub async fn change(&self, id: &TaskId, mut change: Change) -> Result<Task, StoreError> {
        if change.billed.is_none() && (change.to.is_terminal() || change.to == TaskState::Pending) {
            if let Some(current) = self.store.get(id).await? {
                change.billed = self.bill(&current, change.at_ms);
            }
        }
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

    /// Seconds and cost of the current attempt if it is active: from the moment its container
    /// was asked for to `end_ms`, rounded up to whole seconds (per-second billing).
    fn bill(&self, t: &Task, end_ms: i64) -> Option<(u64, f64)> {
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
        Some((secs, secs as f64 * self.per_second(t)))
    }

    /// Price of one second of this task's container.
    pub fn per_second(&self, t: &Task) -> f64 {
        let gb = f64::from(t.resources.memory_mb) / 1024.0;
        t.resources.cpu * self.rates.cpu_second + gb * self.rates.gb_second
    }
}
