//! One [`App`] over a [`FakeRuntime`] and the in-memory store ([`MemoryStore`], which passes
//! the same store conformance suite as SQLite and MongoDB), with an intake that records what it
//! is asked to queue. Built by the composition root, as the real modes are.

use crate::app::{App, Intake, IntakeError};
use crate::compose;
use crate::config::{Settings, TaskArgs};
use crate::events::Events;
use crate::runtime::fake::FakeRuntime;
use crate::spawn::Delivery;
use crate::store::memory::MemoryStore;
use crate::tasks::Tasks;
use async_trait::async_trait;
use model::{Task, TaskId};
use std::sync::{Arc, Mutex};

/// The task flags as a user would give them (clap's defaults for the rest).
#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    task: TaskArgs,
}

/// An intake that only remembers: submitted tasks are stored, requeues are recorded.
#[derive(Default)]
pub struct Recorder {
    /// `(task, at_ms)` of every requeue, in order.
    pub requeued: Mutex<Vec<(TaskId, i64)>>,
    /// The task service, to store submitted tasks.
    tasks: Mutex<Option<Tasks>>,
}

#[async_trait]
impl Intake for Recorder {
    async fn submit(&self, tasks: Vec<Task>) -> Result<Vec<Task>, IntakeError> {
        let service = self
            .tasks
            .lock()
            .unwrap()
            .clone()
            .expect("set by the fixture");
        Ok(service.insert(&tasks).await?)
    }

    async fn requeue(&self, task: &Task, at_ms: i64) -> Result<(), IntakeError> {
        self.requeued.lock().unwrap().push((task.id.clone(), at_ms));
        Ok(())
    }
}

/// The app, its fake runtime and its recording intake.
pub struct Fixture {
    /// The app as spawn and reconcile see it.
    pub app: Arc<App>,
    /// Its runtime, to script and inspect.
    pub runtime: FakeRuntime,
    /// Its intake, to inspect.
    pub intake: Arc<Recorder>,
}

impl Fixture {
    /// An app with the task flags `flags` (e.g. `["--max-attempts", "1"]`).
    pub fn new(flags: &[&str]) -> Fixture {
        let argv = std::iter::once("test").chain(flags.iter().copied());
        let task = <Flags as clap::Parser>::try_parse_from(argv)
            .expect("valid flags")
            .task;
        let settings = Settings::resolve(&task, "http://127.0.0.1:9".into(), None).unwrap();
        let tasks = compose::tasks(&settings, Arc::new(MemoryStore::new()), Events::default());
        let intake = Arc::new(Recorder::default());
        *intake.tasks.lock().unwrap() = Some(tasks.clone());
        let runtime = FakeRuntime::new();
        let app = compose::app(settings, tasks, Arc::new(runtime.clone()), intake.clone());
        Fixture {
            app,
            runtime,
            intake,
        }
    }

    /// The task `id` as stored.
    pub async fn task(&self, id: &TaskId) -> Task {
        self.app
            .tasks()
            .get(id)
            .await
            .unwrap()
            .expect("the task exists")
    }

    /// The logs stored for task `id`.
    pub async fn logs(&self, id: &TaskId) -> Option<model::Logs> {
        self.app.tasks().logs(id).await.unwrap()
    }
}

/// A plain-text delivery of `body` with queue message id `message_id`.
pub fn delivery(message_id: &str, body: &str, count: u32) -> Delivery {
    Delivery {
        message_id: message_id.into(),
        body: body.into(),
        delivery_count: count,
        enqueued_at_ms: None,
    }
}
