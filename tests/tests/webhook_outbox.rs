//! The webhook outbox (`handler::webhooks::outbox::Outbox`) through one conformance check on
//! every backend: memory, a real SQLite file, and MongoDB (`EDA_TEST_MONGO_URI`: the
//! wire-protocol stand-in in CI; skipped loudly without it, failing when `CI=true`).
//!
//! What every backend must do: record idempotently by delivery id; `due` gives pending rows that
//! are due, oldest first, only the oldest pending one per task and URL (so one task's events
//! reach a URL in order); `save` changes status, attempts and next time; `for_task` lists a
//! task's deliveries oldest first; `remove` forgets the deliveries of removed tasks.

use handler::webhooks::mongo::MongoOutbox;
use handler::webhooks::outbox::{MemoryOutbox, Outbox, Row};
use handler::webhooks::sqlite::SqliteOutbox;
use model::webhook::{Delivery, DeliveryAttempt, DeliveryStatus};
use model::TaskId;
use std::sync::Arc;

const NOW: i64 = 1_800_000_000_000;

fn row(task: &str, event: &str, url: &str) -> Row {
    Row {
        delivery: Delivery {
            id: format!("{task}-{event}-{url}"),
            event_id: format!("{task}-{event}"),
            event_type: "com.event-driven-aci.task.changed".into(),
            task_id: TaskId::parse(task).unwrap(),
            url: format!("http://127.0.0.1:9/{url}"),
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            created_at_ms: NOW,
            next_at_ms: Some(NOW),
        },
        body: format!("{{\"id\":\"{task}-{event}\"}}"),
    }
}

fn ids(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|r| r.delivery.id.clone()).collect()
}

async fn conformance(o: Arc<dyn Outbox>) {
    let (a1u, a1v, a2u, b1u) = (
        row("a", "1", "u"),
        row("a", "1", "v"),
        row("a", "2", "u"),
        row("b", "1", "u"),
    );
    o.record(&[a1u.clone(), a1v.clone()]).await.unwrap();
    o.record(&[a2u.clone(), b1u.clone()]).await.unwrap();
    o.record(std::slice::from_ref(&a1u)).await.unwrap();
    let a = TaskId::parse("a").unwrap();
    assert_eq!(o.for_task(&a).await.unwrap().len(), 3, "recorded once");

    let due = o.due(NOW, 10).await.unwrap();
    assert_eq!(
        ids(&due),
        ["a-1-u", "a-1-v", "b-1-u"],
        "oldest first; a-2-u waits behind a-1-u"
    );
    assert_eq!(due[0].body, a1u.body, "the body as recorded");
    assert_eq!(ids(&o.due(NOW, 1).await.unwrap()), ["a-1-u"], "limit");

    let mut done = a1u.delivery.clone();
    done.status = DeliveryStatus::Delivered;
    done.next_at_ms = None;
    done.attempts.push(DeliveryAttempt {
        at_ms: NOW,
        duration_ms: 12,
        status: Some(204),
        error: None,
    });
    o.save(&done).await.unwrap();
    let mut later = b1u.delivery.clone();
    later.next_at_ms = Some(NOW + 5_000);
    later.attempts.push(DeliveryAttempt {
        at_ms: NOW,
        duration_ms: 1000,
        status: None,
        error: Some("timed out after 1 s".into()),
    });
    o.save(&later).await.unwrap();
    assert_eq!(
        ids(&o.due(NOW, 10).await.unwrap()),
        ["a-1-v", "a-2-u"],
        "delivered rows leave; a retry waits for its time"
    );
    assert_eq!(
        ids(&o.due(NOW + 5_000, 10).await.unwrap()),
        ["a-1-v", "a-2-u", "b-1-u"]
    );
    let listed = o.for_task(&a).await.unwrap();
    let order: Vec<_> = listed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(order, ["a-1-u", "a-1-v", "a-2-u"]);
    assert_eq!(listed[0], done, "saved as written");
    let b = TaskId::parse("b").unwrap();
    assert_eq!(o.for_task(&b).await.unwrap(), [later]);

    o.remove(std::slice::from_ref(&a)).await.unwrap();
    assert!(o.for_task(&a).await.unwrap().is_empty(), "a's rows removed");
    assert_eq!(o.for_task(&b).await.unwrap().len(), 1, "b's kept");
    assert_eq!(ids(&o.due(NOW + 5_000, 10).await.unwrap()), ["b-1-u"]);
}

#[tokio::test]
async fn memory_outbox() {
    conformance(Arc::new(MemoryOutbox::default())).await;
}

#[tokio::test]
async fn sqlite_outbox() {
    let dir = e2e::TempDir::new("outbox");
    let db = handler::store::sqlite::Db::open(&dir.0.join("eda.db")).unwrap();
    conformance(Arc::new(SqliteOutbox::open(db).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outbox() {
    let what = "a MongoDB server in EDA_TEST_MONGO_URI (`bash tests/mongo-standin/start.sh`)";
    let Some(uri) = handler::config::env("EDA_TEST_MONGO_URI") else {
        e2e::need(what, false);
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db = format!("eda_outbox_{nanos}");
    conformance(Arc::new(MongoOutbox::new(&uri, &db, "tasks"))).await;
    handler::store::mongo::MongoStore::drop_database(&uri, &db)
        .await
        .expect("dropping the test database");
}
