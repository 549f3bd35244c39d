//! The application context every entry point shares: settings, the task service, the container
//! runtime and the intake (how work gets on the queue). Built once at start-up by
//! [`crate::compose`], then shared behind an `Arc`.

use crate::config::Settings;
use crate::runtime::ContainerRuntime;
use crate::spawn::Slots;
use crate::tasks::Tasks;
use async_trait::async_trait;
use model::Task;
use std::sync::{Arc, OnceLock};
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

/// Everything a request, a spawn or a sweep needs. Built by [`crate::compose`]; its parts are
/// read through the methods below and never replaced (an invocation that queues elsewhere gets a
/// new `App` sharing them: [`App::with_intake`]).
pub struct App {
    /// Resolved settings.
    settings: Settings,
    /// The task service (store + events + prices).
    tasks: Tasks,
    /// Where containers run.
    runtime: Arc<dyn ContainerRuntime>,
    /// Where new work and retries are queued.
    intake: Arc<dyn Intake>,
    /// The cap on running containers: a slot is held from spawn until the attempt ends.
    slots: Arc<Slots>,
    /// Wakes the reconciler early (a report arrived, a task was cancelled).
    wake: Arc<Notify>,
    /// Cancelled on shutdown: loops stop taking new work.
    shutdown: CancellationToken,
    /// The warm pool (local mode with `--warm N`), set once at start-up by `local`; empty
    /// everywhere else, and then every message starts a cold container.
    pool: OnceLock<Arc<crate::pool::Pool>>,
}

impl App {
    /// An app of these parts, with `settings.concurrency` slots, nothing woken, not shut down.
    pub fn new(
        settings: Settings,
        tasks: Tasks,
        runtime: Arc<dyn ContainerRuntime>,
        intake: Arc<dyn Intake>,
    ) -> App {
        App {
            slots: Arc::new(Slots::new(settings.concurrency)),
            settings,
            tasks,
            runtime,
            intake,
            wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            pool: OnceLock::new(),
        }
    }

    /// The warm pool, if one runs.
    pub fn pool(&self) -> Option<&Arc<crate::pool::Pool>> {
        self.pool.get()
    }

    /// Installs the warm pool (once, at start-up, before the first message is taken).
    pub fn set_pool(&self, pool: Arc<crate::pool::Pool>) {
        if self.pool.set(pool).is_err() {
            tracing::warn!("a second warm pool was ignored");
        }
    }

    /// Resolved settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The task service: every read and write of task state.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Where containers run.
    pub fn runtime(&self) -> &dyn ContainerRuntime {
        self.runtime.as_ref()
    }

    /// The runtime, shared (for work in the background, e.g. pulling an image ahead).
    pub fn runtime_shared(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    /// Where new work and retries are queued.
    pub fn intake(&self) -> &dyn Intake {
        self.intake.as_ref()
    }

    /// The cap on running containers (local mode).
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Wakes the reconciler early (`notify_one`), or waits for that (`notified`).
    pub fn wake(&self) -> &Notify {
        &self.wake
    }

    /// The Prometheus series (owned by the task service's event bus).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.tasks.events.metrics()
    }

    /// Cancelled on shutdown.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

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
            pool: self.pool.clone(),
        })
    }
}
