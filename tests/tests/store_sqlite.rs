//! The store conformance suite on SQLite, and durability across reopening the file.

use e2e::{store_conformance, TempDir};
use handler::store::sqlite::SqliteStore;
use handler::store::TaskStore;
use model::{Event, Rates, Resources, Task, TaskId, TaskState};
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
        let provision = Event::Provision {
            attempt: 1,
            container: "c-1".into(),
            token_hash: "h".into(),
        };
        s.update(&id, &provision, 2, &Rates::default())
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let t = s.get(&id).await.unwrap().unwrap();
    assert_eq!((t.state, t.transitions.len()), (TaskState::Provisioning, 2));
    assert_eq!(s.unfinished().await.unwrap().len(), 1);
    assert_eq!(s.token_hash(&id).await.unwrap().as_deref(), Some("h"));
}
