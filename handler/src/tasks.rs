//! The task service: every write of task state goes through [`Tasks`], which hands the event to
//! the store's atomic update (load, `model::Task::apply`, compare-and-set) and publishes the
//! result on the event bus. The store is private, so nothing else writes to it and the
//! dashboard sees every change exactly once; reads go through the small methods below.

use crate::clock::now_ms;
use crate::events::Events;
use crate::store::{ListFilter, StoreError, TaskStore};
use crate::webhooks::Webhooks;
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
    /// Completion webhooks, told of every applied change (they only record it in their
    /// outbox; the POSTs happen in the background). `None`: no webhooks configured.
    webhooks: Option<Arc<Webhooks>>,
}

impl Tasks {
    /// The service over `store`, announcing on `events`, billing at `rates`.
    pub fn new(store: Arc<dyn TaskStore>, events: Events, rates: Rates) -> Tasks {
        Tasks {
            store,
            events,
            rates,
            webhooks: None,
        }
    }

    /// This service, recording webhook deliveries for the changes `webhooks` wants.
    pub fn with_webhooks(self, webhooks: Arc<Webhooks>) -> Tasks {
        Tasks {
            webhooks: webhooks.enabled().then_some(webhooks),
            ..self
        }
    }

    /// The webhooks, if any are configured.
    pub fn webhooks(&self) -> Option<&Arc<Webhooks>> {
        self.webhooks.as_ref()
    }

    /// Inserts new tasks (existing ids are returned as stored) and announces them.
    pub async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        let stored = self.store.insert(tasks).await?;
        for t in &stored {
            self.events.task(t);
        }
        Ok(stored)
    }

    /// [`Tasks::insert`] within the caps on waiting tasks (backpressure): the whole batch or,
    /// with [`StoreError::OverCap`], nothing.
    pub async fn insert_capped(
        &self,
        tasks: &[Task],
        caps: model::shape::QueueCaps,
    ) -> Result<Vec<Task>, StoreError> {
        let stored = self.store.insert_capped(tasks, caps).await?;
        for t in &stored {
            self.events.task(t);
        }
        Ok(stored)
    }

    /// Tasks waiting in all (`key` = None) or of one concurrency key.
    pub async fn pending(&self, key: Option<&str>) -> Result<u64, StoreError> {
        self.store.pending(key).await
    }

    /// Applies `event` to task `id` now (atomically, in the store) and announces the result.
    /// A refused event ([`StoreError::Refused`]) changes nothing.
    pub async fn apply(&self, id: &TaskId, event: Event) -> Result<Task, StoreError> {
        let now = now_ms();
        let task = self.store.update(id, &event, now, &self.rates).await?;
        self.events.applied(&event, &task, now);
        if let Some(w) = &self.webhooks {
            w.applied(&event, &task, now).await;
        }
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

    /// The tasks of concurrency key `key` holding a container (or about to) (Functions mode's
    /// per-key cap, `functions::admit`).
    pub async fn active_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        self.store.active_with_key(key).await
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

    /// Removes every finished task with its logs, metrics and webhook deliveries, and
    /// announces it.
    pub async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        let removed = self.store.remove_finished().await?;
        self.after_removal(&removed).await;
        Ok(removed)
    }

    /// Retention: removes at most `max` tasks that finished before `before_ms`, with their logs,
    /// metrics and webhook deliveries, and announces them (SSE `cleared`).
    pub async fn remove_finished_before(
        &self,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let removed = self.store.remove_finished_before(before_ms, max).await?;
        self.after_removal(&removed).await;
        Ok(removed)
    }

    /// What follows every removal of tasks: the SSE `cleared` event, and their webhook
    /// deliveries forgotten (the store removed their logs and metrics itself).
    async fn after_removal(&self, removed: &[Task]) {
        if removed.is_empty() {
            return;
        }
        self.events.cleared(removed);
        if let Some(w) = &self.webhooks {
            let ids: Vec<TaskId> = removed.iter().map(|t| t.id.clone()).collect();
            w.forget(&ids).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use model::{LifecycleError, Resources, TaskState};

    fn tasks() -> Tasks {
        let rates = Rates {
            cpu_second: 1.0,
            gb_second: 0.0,
        };
        Tasks::new(Arc::new(MemoryStore::new()), Events::default(), rates)
    }

    fn task(id: &str) -> Task {
        let r = Resources {
            cpu: 2.0,
            memory_mb: 256,
        };
        Task::new(TaskId::parse(id).unwrap(), "w".into(), r, 1, 60, now_ms())
    }

    /// Every applied event is announced once; a refused one changes and announces nothing.
    #[tokio::test]
    async fn applied_events_are_announced_once_and_refused_ones_not_at_all() {
        let tasks = tasks();
        let mut rx = tasks.events.subscribe();
        let t = task("announce");
        tasks.insert(std::slice::from_ref(&t)).await.unwrap();
        assert!(rx.try_recv().unwrap().contains("\"Pending\""));
        let provision = Event::Provision {
            attempt: 1,
            container: "eda-announce-1".into(),
            token_hash: "h".into(),
        };
        let p = tasks.apply(&t.id, provision).await.unwrap();
        assert_eq!(p.state, TaskState::Provisioning);
        assert!(rx.try_recv().unwrap().contains("\"Provisioning\""));
        assert_eq!(tasks.token_hash(&t.id).await.unwrap().as_deref(), Some("h"));
        let stale = tasks.apply(&t.id, Event::Started { attempt: 2 }).await;
        assert!(matches!(
            stale,
            Err(StoreError::Refused {
                source: LifecycleError::Stale { .. },
                ..
            })
        ));
        assert!(
            rx.try_recv().is_err(),
            "nothing announced for a refused event"
        );
        assert_eq!(tasks.load(&t.id).await.unwrap(), p, "nothing changed");
        let failed = Event::AttemptFailed {
            attempt: 1,
            exit_code: Some(1),
            reason: "boom".into(),
            retry_after: std::time::Duration::from_secs(1),
            result: None,
        };
        let end = tasks.apply(&t.id, failed).await.unwrap();
        assert_eq!(end.state, TaskState::Failed, "one attempt allowed");
        assert_eq!(
            end.cost,
            2.0 * end.billed_seconds as f64,
            "billed at the service's rates"
        );
        assert!(rx.try_recv().unwrap().contains("\"Failed\""));
        let removed = tasks.remove_finished().await.unwrap();
        assert_eq!(removed.len(), 1);
        assert!(rx.try_recv().unwrap().starts_with("event: cleared"));
        assert!(matches!(
            tasks.load(&t.id).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
