//! The outbox in local mode's SQLite file (the same [`Db`] as the tasks and the queue): one
//! table, `webhook_deliveries`, the delivery as a JSON document beside the columns the
//! dispatcher filters on.

use super::outbox::{Outbox, Row};
use crate::store::sqlite::{backend, Db};
use crate::store::StoreError;
use async_trait::async_trait;
use model::webhook::{Delivery, DeliveryStatus};
use model::TaskId;
use rusqlite::params;

/// The table; created at start-up (`IF NOT EXISTS`), so older files gain it.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL,
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    next_at_ms INTEGER,
    doc TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_task ON webhook_deliveries(task_id, seq);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending ON webhook_deliveries(status, seq);
";

/// The outbox table of one SQLite file.
#[derive(Clone)]
pub struct SqliteOutbox {
    /// The database shared with the store and the queue.
    db: Db,
}

impl SqliteOutbox {
    /// The outbox of `db`, its table created when missing.
    pub async fn open(db: Db) -> Result<SqliteOutbox, StoreError> {
        db.write(|tx| tx.execute_batch(SCHEMA).map_err(backend))
            .await?;
        Ok(SqliteOutbox { db })
    }
}

fn doc(d: &Delivery) -> Result<String, StoreError> {
    serde_json::to_string(d).map_err(StoreError::codec)
}

fn parse(s: &str) -> Result<Delivery, StoreError> {
    serde_json::from_str(s).map_err(StoreError::codec)
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn record(&self, rows: &[Row]) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.db
            .write(move |tx| {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO webhook_deliveries (id, task_id, url, status, next_at_ms, doc, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
                    )
                    .map_err(backend)?;
                for r in &rows {
                    let d = &r.delivery;
                    ins.execute(params![
                        d.id,
                        d.task_id.as_str(),
                        d.url,
                        d.status.as_str(),
                        d.next_at_ms,
                        doc(d)?,
                        r.body
                    ])
                    .map_err(backend)?;
                }
                Ok(())
            })
            .await
    }

    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Row>, StoreError> {
        let pending = DeliveryStatus::Pending.as_str();
        self.db
            .read(move |conn| {
                // The oldest pending delivery of each task and URL, if it is due.
                let mut q = conn
                    .prepare_cached(
                        "SELECT d.doc, d.body FROM webhook_deliveries d
                         WHERE d.status = ?1 AND COALESCE(d.next_at_ms, 0) <= ?2
                           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                               WHERE e.status = ?1 AND e.task_id = d.task_id AND e.url = d.url
                                 AND e.seq < d.seq)
                         ORDER BY d.seq LIMIT ?3",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![pending, now_ms, limit as i64], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(backend)?;
                let mut out = Vec::new();
                for row in rows {
                    let (d, body) = row.map_err(backend)?;
                    out.push(Row {
                        delivery: parse(&d)?,
                        body,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn save(&self, d: &Delivery) -> Result<(), StoreError> {
        let d = d.clone();
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE webhook_deliveries SET status = ?2, next_at_ms = ?3, doc = ?4 WHERE id = ?1",
                )
                .map_err(backend)?
                .execute(params![d.id, d.status.as_str(), d.next_at_ms, doc(&d)?])
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn for_task(&self, id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        let id = id.as_str().to_string();
        self.db
            .read(move |conn| {
                let mut q = conn
                    .prepare_cached(
                        "SELECT doc FROM webhook_deliveries WHERE task_id = ?1 ORDER BY seq",
                    )
                    .map_err(backend)?;
                let docs = q
                    .query_map([id], |r| r.get::<_, String>(0))
                    .map_err(backend)?;
                let mut out = Vec::new();
                for d in docs {
                    out.push(parse(&d.map_err(backend)?)?);
                }
                Ok(out)
            })
            .await
    }

    async fn remove(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_string()).collect();
        self.db
            .write(move |tx| {
                let mut del = tx
                    .prepare_cached("DELETE FROM webhook_deliveries WHERE task_id = ?1")
                    .map_err(backend)?;
                for id in &ids {
                    del.execute([id]).map_err(backend)?;
                }
                Ok(())
            })
            .await
    }
}
