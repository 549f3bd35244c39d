//! The application context every entry point shares: settings, the task service, the container
//! runtime and the intake (how work gets on the queue). Built once at start-up by
//! [`crate::compose`], then shared behind an `Arc`.

use crate::config::Settings;
use crate::runtime::ContainerRuntime;
use crate::spawn::Slots;
use crate::tasks::Tasks;
use async_trait::async_trait;
use model::Task;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Errors of an [`Intake`].
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The queue failed.
    #[error("queue: {0}")]
    Queue(String),
}

/// How work gets onto the queue: the local SQLite queue, or Azure Service Bus.
#[async_trait]
pub trait Intake: Send + Sync {
    /// Records the tasks as `Pending` and queues one message for each, atomically where the
    /// backend can (local mode: one SQLite transaction). Returns the tasks as stored.
    async fn submit(&self, tasks: Vec<Task>) -> Result<Vec<Task>, IntakeError>;
    /// Queues the next attempt of a task that is `Pending` again, to be taken at `at_ms`.
    async fn requeue(&self, task: &Task, at_ms: i64) -> Result<(), IntakeError>;
}

/// Everything a request, a spawn or a sweep needs.
pub struct App {
    /// Resolved settings.
    pub settings: Settings,
    /// The task service (store + events + prices).
    pub tasks: Tasks,
    /// Where containers run.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Where new work and retries are queued.
    pub intake: Arc<dyn Intake>,
    /// The cap on running containers: a slot is held from spawn until the attempt ends.
    pub slots: Arc<Slots>,
    /// Wakes the reconciler early (a report arrived, a task was cancelled).
    pub wake: Arc<Notify>,
    /// Cancelled on shutdown: loops stop taking new work.
    pub shutdown: CancellationToken,
}

impl App {
    /// The same app, queueing through `intake`. Functions mode runs each invocation with the
    /// intake of that invocation's Service Bus output binding (`functions::outbox`); everything
    /// else (store, runtime, slots, shutdown) is shared.
    pub fn with_intake(&self, intake: Arc<dyn Intake>) -> Arc<App> {
        Arc::new(App {
            settings: self.settings.clone(),
            tasks: self.tasks.clone(),
            runtime: self.runtime.clone(),
            intake,
            slots: self.slots.clone(),
            wake: self.wake.clone(),
            shutdown: self.shutdown.clone(),
        })
    }
}
