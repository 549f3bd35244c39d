//! The outbox in MongoDB (Cosmos DB for MongoDB in Azure): the collection `<tasks>_webhooks`
//! beside the task collection, one document per delivery:
//! `{_id: delivery id, seq, task_id, url, status, doc: <the delivery as JSON>, body}`.
//!
//! It connects on first use (Functions mode must listen before MongoDB answers, like the task
//! store, `functions::lazy`). Every operation goes through the store's throttling retry
//! ([`with_retry`]); `seq` and `_id` are the only sort and key (Cosmos indexes `_id` only by
//! default, so an index on `seq` is created).

use super::outbox::{due_in, Outbox, Row};
use crate::store::mongo::{normalize_uri, with_retry};
use crate::store::StoreError;
use async_trait::async_trait;
use futures::TryStreamExt;
use model::webhook::{Delivery, DeliveryStatus};
use model::TaskId;
use mongodb::bson::{doc, Document};
use mongodb::{Collection, IndexModel};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Most pending deliveries one `due` reads (they are filtered in memory).
const SCAN: i64 = 1024;

/// The MongoDB outbox.
pub struct MongoOutbox {
    /// Connection string, database and collection name.
    target: (String, String, String),
    /// The collection, once connected.
    coll: OnceCell<Collection<Document>>,
    /// The next `seq`: microseconds since the epoch at start, then +1 per row, so rows sort
    /// in the order they were recorded, across restarts too.
    seq: AtomicI64,
}

fn backend(e: mongodb::error::Error) -> StoreError {
    StoreError::Mongo(Arc::new(e))
}

impl MongoOutbox {
    /// The outbox in `<collection>_webhooks` of database `db` at `uri` (not connected yet).
    pub fn new(uri: &str, db: &str, collection: &str) -> MongoOutbox {
        MongoOutbox {
            target: (uri.into(), db.into(), format!("{collection}_webhooks")),
            coll: OnceCell::new(),
            seq: AtomicI64::new(crate::clock::now_ms().saturating_mul(1000)),
        }
    }

    async fn coll(&self) -> Result<&Collection<Document>, StoreError> {
        self.coll
            .get_or_try_init(|| async {
                let (uri, db, name) = &self.target;
                let client = mongodb::Client::with_uri_str(normalize_uri(uri))
                    .await
                    .map_err(backend)?;
                let coll: Collection<Document> = client.database(db).collection(name);
                let index = IndexModel::builder().keys(doc! {"seq": 1}).build();
                with_retry(|| coll.create_index(index.clone()))
                    .await
                    .map_err(backend)?;
                Ok(coll)
            })
            .await
    }
}

/// The fields of a new row (its `_id` comes from the upsert's filter).
fn to_doc(seq: i64, r: &Row) -> Result<Document, StoreError> {
    let d = &r.delivery;
    Ok(doc! {
        "seq": seq,
        "task_id": d.task_id.as_str(),
        "url": &d.url,
        "status": d.status.as_str(),
        "doc": serde_json::to_string(d).map_err(StoreError::codec)?,
        "body": &r.body,
    })
}

fn delivery(d: &Document) -> Result<Delivery, StoreError> {
    let text = d.get_str("doc").map_err(StoreError::codec)?;
    serde_json::from_str(text).map_err(StoreError::codec)
}

#[async_trait]
impl Outbox for MongoOutbox {
    async fn record(&self, rows: &[Row]) -> Result<(), StoreError> {
        let coll = self.coll().await?;
        for r in rows {
            let doc = to_doc(self.seq.fetch_add(1, Ordering::SeqCst), r)?;
            // An upsert that never overwrites: a row already recorded is left alone.
            let filter = doc! {"_id": &r.delivery.id};
            let update = doc! {"$setOnInsert": doc};
            with_retry(|| coll.update_one(filter.clone(), update.clone()).upsert(true))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Row>, StoreError> {
        let coll = self.coll().await?;
        let filter = doc! {"status": DeliveryStatus::Pending.as_str()};
        let docs: Vec<Document> = with_retry(|| async {
            coll.find(filter.clone())
                .sort(doc! {"seq": 1})
                .limit(SCAN)
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(backend)?;
        let mut rows = Vec::with_capacity(docs.len());
        for d in &docs {
            let body = d.get_str("body").map_err(StoreError::codec)?.to_string();
            rows.push(Row {
                delivery: delivery(d)?,
                body,
            });
        }
        Ok(due_in(rows.iter(), now_ms, limit))
    }

    async fn save(&self, d: &Delivery) -> Result<(), StoreError> {
        let coll = self.coll().await?;
        let json = serde_json::to_string(d).map_err(StoreError::codec)?;
        let update = doc! {"$set": {"status": d.status.as_str(), "doc": json}};
        with_retry(|| coll.update_one(doc! {"_id": &d.id}, update.clone()))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn for_task(&self, id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        let coll = self.coll().await?;
        let filter = doc! {"task_id": id.as_str()};
        let docs: Vec<Document> = with_retry(|| async {
            coll.find(filter.clone())
                .sort(doc! {"seq": 1})
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(backend)?;
        docs.iter().map(delivery).collect()
    }

    async fn remove(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let coll = self.coll().await?;
        let ids: Vec<&str> = ids.iter().map(TaskId::as_str).collect();
        let filter = doc! {"task_id": {"$in": ids}};
        with_retry(|| coll.delete_many(filter.clone()))
            .await
            .map_err(backend)?;
        Ok(())
    }
}
