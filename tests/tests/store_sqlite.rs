//! The store conformance suite on SQLite, and durability across reopening the file.

use e2e::{store_conformance, TempDir};
use handler::store::sqlite::SqliteStore;
use handler::store::{Change, TaskStore};
use model::{Resources, Task, TaskId, TaskState};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = TempDir::new("store");
    let store = SqliteStore::open(&dir.0.join("eda.db")).unwrap();
    store_conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening_the_file() {
    let dir = TempDir::new("reopen");
    let path = dir.0.join("eda.db");
    let id = TaskId::parse("persist-1").unwrap();
    {
        let s = SqliteStore::open(&path).unwrap();
        let t = Task::new(
            id.clone(),
            "w".into(),
            Resources {
                cpu: 0.5,
                memory_mb: 128,
            },
            1,
            5,
            1,
        );
        s.insert(&[t]).await.unwrap();
        s.update(&id, &Change::to(TaskState::Provisioning, 2))
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let t = s.get(&id).await.unwrap().unwrap();
    assert_eq!((t.state, t.transitions.len()), (TaskState::Provisioning, 2));
    assert_eq!(s.unfinished().await.unwrap().len(), 1);
}
