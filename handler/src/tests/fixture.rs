//! One [`App`] over a [`FakeRuntime`] and a SQLite store in a temporary folder, with an intake
//! that records what it is asked to queue.
//!
//! The store is `SqliteStore` on a temp file until the in-memory store
//! (`store::memory::MemoryStore`) lands; then [`Fixture::new`] should use it and the folder
//! goes away.

use crate::app::{App, Intake, IntakeError};
use crate::config::{Settings, TaskArgs};
use crate::events::Events;
use crate::runtime::fake::FakeRuntime;
use crate::spawn::{Delivery, Slots};
use crate::store::sqlite::SqliteStore;
use crate::tasks::{Rates, Tasks};
use async_trait::async_trait;
use model::{Task, TaskId};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

/// The app, its fake runtime and its recording intake; the store's folder is removed on drop.
pub struct Fixture {
    /// The app as spawn and reconcile see it.
    pub app: Arc<App>,
    /// Its runtime, to script and inspect.
    pub runtime: FakeRuntime,
    /// Its intake, to inspect.
    pub intake: Arc<Recorder>,
    /// The store's folder.
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// An app with the task flags `flags` (e.g. `["--max-attempts", "1"]`).
    pub fn new(flags: &[&str]) -> Fixture {
        let argv = std::iter::once("test").chain(flags.iter().copied());
        let task = <Flags as clap::Parser>::try_parse_from(argv)
            .expect("valid flags")
            .task;
        let settings = Settings::resolve(&task, "http://127.0.0.1:9".into(), None).unwrap();
        let dir = temp_dir();
        let store = Arc::new(SqliteStore::open(&dir.join("eda.db")).expect("open the store"));
        let tasks = Tasks {
            store,
            events: Events::default(),
            rates: Rates {
                cpu_second: settings.rates.0,
                gb_second: settings.rates.1,
            },
        };
        let intake = Arc::new(Recorder::default());
        *intake.tasks.lock().unwrap() = Some(tasks.clone());
        let runtime = FakeRuntime::new();
        let app = Arc::new(App {
            slots: Arc::new(Slots::new(settings.concurrency)),
            settings,
            tasks,
            runtime: Arc::new(runtime.clone()),
            intake: intake.clone(),
            wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
        });
        Fixture {
            app,
            runtime,
            intake,
            dir,
        }
    }

    /// The task `id` as stored.
    pub async fn task(&self, id: &TaskId) -> Task {
        self.app
            .tasks
            .store
            .get(id)
            .await
            .unwrap()
            .expect("the task exists")
    }

    /// The logs stored for task `id`.
    pub async fn logs(&self, id: &TaskId) -> Option<model::Logs> {
        self.app.tasks.store.logs(id).await.unwrap()
    }
}

/// A plain-text delivery of `body` with queue message id `message_id`.
pub fn delivery(message_id: &str, body: &str, count: u32) -> Delivery {
    Delivery {
        message_id: message_id.into(),
        body: body.into(),
        delivery_count: count,
    }
}

/// A fresh folder under the system temp dir.
fn temp_dir() -> PathBuf {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).expect("the OS random source");
    let p = std::env::temp_dir().join(format!("eda-unit-{}", hex::encode(r)));
    std::fs::create_dir_all(&p).unwrap();
    p
}
