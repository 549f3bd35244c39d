//! The MongoDB backend of [`TaskStore`]: Cosmos DB for MongoDB in Azure, or any MongoDB server.
//!
//! # Documents
//!
//! - `<tasks>`: one document per task: the `model::Task` fields, plus `_id` (the task id, so
//!   ids are unique without another index), `seq` (insertion order for "newest first"), `rev`
//!   (compare-and-set counter) and `token_hash` (the worker token's SHA-256; never returned by
//!   [`TaskStore::get`] or [`TaskStore::list`]: they project it away).
//! - `<tasks>_logs`: `{_id: task id, text, truncated}`, at most `MAX_LOG_BYTES` of text.
//! - `<tasks>_metrics`: `{_id: task id, samples: [...]}`, capped with `$push`/`$slice`.
//! - `<tasks>_meta`: `{_id: "seq", n}`, the sequence counter (one `findAndModify` per batch),
//!   and `{_id: "counts", <state>: n, ...}`, the whole-board counts ([`super::mongo_counts`]).
//!   A batch takes its numbers in reverse, so "newest first" shows it in submission order.
//!
//! Every change is read, passed through `model::Task::apply`, and written back with a filter on the `rev`
//! it was read at; a concurrent writer makes the filter miss and the change is re-applied to the
//! fresh document. So no change is ever lost and no multi-document transaction is needed.
//!
//! # Cosmos DB quirks handled
//!
//! - Cosmos does not support retryable writes: [`normalize_uri`] adds `retryWrites=false` when
//!   the connection string does not say. Our writes are idempotent CAS writes anyway.
//! - Cosmos only sorts on indexed fields and indexes only `_id` by default: the indexes
//!   `{seq: -1}` and `{state: 1, seq: -1}` are created at start ([`MongoStore::connect`]).
//! - Request-unit throttling answers error 16500 (`TooManyRequests`): every operation is retried
//!   with exponential backoff ([`with_retry`]), honouring the `RetryAfterMs` Cosmos puts in the
//!   message.
//! - Documents are limited to 16 MB (2 MB on some Cosmos tiers): logs are cut to
//!   `MAX_LOG_BYTES`, metrics to `MAX_METRIC_SAMPLES`, reasons to `MAX_REASON_BYTES`.
//! - Cosmos answers `hello` with the wire version of the account's `serverVersion`. The
//!   `mongodb` crate 3.x refuses servers below wire version 9, MongoDB 4.4
//!   (`DRIVER_MIN_WIRE_VERSION` in its `src/sdam/description/server.rs`), so a 4.2 account
//!   (wire 8) cannot be used at all. The driver's own error names only wire versions;
//!   [`MongoStore::connect`] turns it into one that names the server version and the fix
//!   ([`explain_incompatible`]). `infra/main.bicep` sets `serverVersion: '6.0'` (wire 17).

use super::mongo_wire::{backend, codec, codes, connect_error, malformed};
use super::{refused, ListFilter, StoreError, TaskStore};

pub use super::mongo_wire::{
    explain_incompatible, is_throttled, normalize_uri, server_version_of_wire, with_retry,
    DRIVER_MIN_SERVER_VERSION, DRIVER_MIN_WIRE_VERSION,
};
use async_trait::async_trait;
use futures::TryStreamExt;
use model::{Event, Logs, MetricSample, Rates, Task, TaskId, TaskPage, TaskState};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::{FindOneAndUpdateOptions, IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use std::collections::{BTreeMap, HashMap};

/// MongoDB's duplicate-key error code.
const DUPLICATE: i32 = 11000;
/// Attempts of one compare-and-set while other writers keep winning.
const CAS_ATTEMPTS: u32 = 100;

/// The MongoDB store. Cheap to share: the driver's `Client` is a connection pool.
pub struct MongoStore {
    /// Task documents.
    tasks: Collection<Document>,
    /// Captured output, one document per task.
    logs: Collection<Document>,
    /// Metric samples, one document per task.
    metrics: Collection<Document>,
    /// The insertion-order counter.
    meta: Collection<Document>,
}

/// The task document: the task's fields plus `_id`, `seq`, `rev` and `token_hash`.
pub fn to_doc(
    task: &Task,
    seq: i64,
    rev: i64,
    token_hash: Option<&str>,
) -> Result<Document, StoreError> {
    let mut d = bson::to_document(task).map_err(codec)?;
    d.insert("_id", task.id.as_str());
    d.insert("seq", seq);
    d.insert("rev", rev);
    d.insert(
        "token_hash",
        token_hash.map_or(Bson::Null, |h| Bson::String(h.to_string())),
    );
    Ok(d)
}

/// The task in a document (extra fields such as `token_hash` are ignored).
pub fn from_doc(d: Document) -> Result<Task, StoreError> {
    bson::from_document(d).map_err(codec)
}

/// The `(seq, rev, token_hash)` bookkeeping of a document.
fn meta_of(d: &Document) -> (i64, i64, Option<String>) {
    let num = |k: &str| match d.get(k) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Double(n)) => *n as i64,
        _ => 0,
    };
    let hash = d.get_str("token_hash").ok().map(str::to_string);
    (num("seq"), num("rev"), hash)
}

/// State names for a `$in` filter.
fn state_names(states: impl IntoIterator<Item = TaskState>) -> Vec<Bson> {
    states
        .into_iter()
        .map(|s| Bson::String(s.as_str().to_string()))
        .collect()
}

impl MongoStore {
    /// Connects to `uri` (normalised by [`normalize_uri`]) and creates the indexes.
    pub async fn connect(uri: &str, db: &str, collection: &str) -> Result<MongoStore, StoreError> {
        let client = mongodb::Client::with_uri_str(normalize_uri(uri))
            .await
            .map_err(backend)?;
        let db = client.database(db);
        let store = MongoStore {
            tasks: db.collection(collection),
            logs: db.collection(&format!("{collection}_logs")),
            metrics: db.collection(&format!("{collection}_metrics")),
            meta: db.collection(&format!("{collection}_meta")),
        };
        store.create_indexes().await?;
        super::mongo_counts::ensure(&store.meta, &store.tasks).await?;
        Ok(store)
    }

    /// The server's `maxWireVersion` from `hello` (for `handler check`). The driver refuses an
    /// incompatible server before any command; that error comes back explained
    /// ([`explain_incompatible`]: it names the server's version and the driver's minimum).
    pub async fn wire_version(uri: &str) -> Result<i32, StoreError> {
        let client = mongodb::Client::with_uri_str(normalize_uri(uri))
            .await
            .map_err(backend)?;
        let store_result = client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await;
        match store_result {
            Ok(reply) => reply
                .get("maxWireVersion")
                .and_then(|v| match v {
                    Bson::Int32(n) => Some(*n),
                    Bson::Int64(n) => i32::try_from(*n).ok(),
                    Bson::Double(n) => Some(*n as i32),
                    _ => None,
                })
                .ok_or_else(|| malformed("hello answered without maxWireVersion")),
            Err(e) => Err(connect_error(e)),
        }
    }

    /// Drops database `db` (tests clean up the fresh database they made).
    pub async fn drop_database(uri: &str, db: &str) -> Result<(), StoreError> {
        let client = mongodb::Client::with_uri_str(normalize_uri(uri))
            .await
            .map_err(backend)?;
        client.database(db).drop().await.map_err(backend)
    }

    /// `{seq: -1}` for the board, `{state: 1, seq: -1}` for filtered pages and the reconciler,
    /// `{finished_at_ms: 1}` for a timeline's window and retention, `{key: 1, state: 1}` for the
    /// per-key count of waiting tasks (backpressure) and a key's running ones
    /// (`active_with_key`), `{key: 1, seq: -1}` and `{created_at_ms: 1}`
    /// for searches ([`super::mongo_search`]).
    async fn create_indexes(&self) -> Result<(), StoreError> {
        // The first command: an incompatible server fails here, with words from connect_error.
        let named = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        let models = vec![
            named(doc! { "seq": -1 }, "seq_desc"),
            named(doc! { "state": 1, "seq": -1 }, "state_seq"),
            named(doc! { "finished_at_ms": 1 }, "finished"),
            named(doc! { "key": 1, "state": 1 }, "key_state"),
            named(doc! { "key": 1, "seq": -1 }, "key_seq"),
            named(doc! { "created_at_ms": 1 }, "created"),
        ];
        with_retry(|| self.tasks.create_indexes(models.clone()))
            .await
            .map_err(connect_error)?;
        Ok(())
    }

    /// Reserves `n` sequence numbers; returns the last one.
    async fn reserve_seq(&self, n: usize) -> Result<i64, StoreError> {
        let opts = FindOneAndUpdateOptions::builder()
            .upsert(true)
            .return_document(ReturnDocument::After)
            .build();
        let d = with_retry(|| {
            self.meta
                .find_one_and_update(doc! { "_id": "seq" }, doc! { "$inc": { "n": n as i64 } })
                .with_options(opts.clone())
        })
        .await
        .map_err(backend)?
        .ok_or_else(|| malformed("sequence counter missing after upsert"))?;
        Ok(meta_of(&doc! { "seq": d.get("n").cloned().unwrap_or(Bson::Null) }).0)
    }

    /// The raw document of a task.
    async fn raw(&self, id: &TaskId) -> Result<Option<Document>, StoreError> {
        with_retry(|| self.tasks.find_one(doc! { "_id": id.as_str() }))
            .await
            .map_err(backend)
    }

    /// Tasks matching `filter`, without token hashes, in `sort` order.
    async fn find_tasks(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
        timelines: bool,
    ) -> Result<Vec<(i64, Task)>, StoreError> {
        let mut projection = doc! { "token_hash": 0 };
        if !timelines {
            projection.insert("transitions", 0);
        }
        let docs: Vec<Document> = with_retry(|| async {
            let mut find = self
                .tasks
                .find(filter.clone())
                .sort(sort.clone())
                .projection(projection.clone());
            if let Some(l) = limit {
                find = find.limit(l);
            }
            find.await?.try_collect().await
        })
        .await
        .map_err(backend)?;
        docs.into_iter()
            .map(|d| Ok((meta_of(&d).0, from_doc(d)?)))
            .collect()
    }

    /// Counts per state over the whole board, kept incrementally ([`super::mongo_counts`]).
    async fn counts(&self) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        super::mongo_counts::read(&self.meta).await
    }
}

#[async_trait]
impl TaskStore for MongoStore {
    fn kind(&self) -> &'static str {
        "mongo"
    }

    async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let last = self.reserve_seq(tasks.len()).await?;
        // The first item submitted gets the highest number: a batch shows in submission order.
        let docs = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| to_doc(t, last - i as i64, 0, None))
            .collect::<Result<Vec<_>, _>>()?;
        let inserted = with_retry(|| self.tasks.insert_many(docs.clone()).ordered(false)).await;
        self.count_inserted(tasks, inserted.as_ref().err()).await?;
        if let Err(e) = inserted {
            // Ids already stored are left alone (a redelivered message never resets a task).
            if codes(&e).iter().any(|c| *c != DUPLICATE) || codes(&e).is_empty() {
                return Err(backend(e));
            }
        }
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        let stored = self
            .find_tasks(doc! { "_id": { "$in": &ids } }, doc! {}, None, true)
            .await?;
        let mut by_id: HashMap<TaskId, Task> =
            stored.into_iter().map(|(_, t)| (t.id.clone(), t)).collect();
        tasks
            .iter()
            .map(|t| {
                by_id
                    .remove(&t.id)
                    .ok_or_else(|| StoreError::NotFound(t.id.clone()))
            })
            .collect()
    }

    /// In all: the kept counts; per key: a count on the `key_state` index. Not atomic with
    /// the insert (no multi-document transaction): see [`TaskStore::insert_capped`].
    async fn pending(&self, key: Option<&str>) -> Result<u64, StoreError> {
        let Some(key) = key else {
            let counts = self.counts().await?;
            return Ok(counts.get(&TaskState::Pending).copied().unwrap_or(0));
        };
        let filter = doc! { "key": key, "state": TaskState::Pending.as_str() };
        with_retry(|| self.tasks.count_documents(filter.clone()))
            .await
            .map_err(backend)
    }

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let found = self
            .find_tasks(doc! { "_id": id.as_str() }, doc! {}, Some(1), true)
            .await?;
        Ok(found.into_iter().next().map(|(_, t)| t))
    }

    async fn list(&self, f: &ListFilter) -> Result<TaskPage, StoreError> {
        let mut filter = Document::new();
        if !f.states.is_empty() {
            filter.insert(
                "state",
                doc! { "$in": state_names(f.states.iter().copied()) },
            );
        }
        if let Some(c) = &f.cursor {
            let before: i64 = c.parse().map_err(|_| StoreError::BadCursor)?;
            filter.insert("seq", doc! { "$lt": before });
        }
        if let Some(since) = f.active_since_ms {
            let unfinished = state_names(TaskState::matching(|s| !s.is_terminal()));
            filter.insert(
                "$or",
                vec![
                    doc! { "state": { "$in": unfinished } },
                    doc! { "finished_at_ms": { "$gte": since } },
                ],
            );
        }
        let search = super::mongo_search::conditions(&f.search);
        if !search.is_empty() {
            filter.insert("$and", search);
        }
        let limit = f.limit.max(1);
        let mut rows = self
            .find_page(filter, limit as i64 + 1, f.offset as u64)
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more
            .then(|| rows.last().map(|(seq, _)| seq.to_string()))
            .flatten();
        Ok(TaskPage {
            tasks: rows.into_iter().map(|(_, t)| t).collect(),
            next,
            counts: match f.search.is_empty() {
                true => self.counts().await?,
                false => super::mongo_search::counts(&self.tasks, &f.search).await?,
            },
        })
    }

    async fn update(
        &self,
        id: &TaskId,
        event: &Event,
        now_ms: i64,
        rates: &Rates,
    ) -> Result<Task, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .raw(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            let (seq, rev, hash) = meta_of(&current);
            let before = from_doc(current)?;
            let next = before
                .apply(event, now_ms, rates)
                .map_err(|e| refused(id, e))?;
            let hash = event.token_hash().map(str::to_string).or(hash);
            let doc = to_doc(&next, seq, rev + 1, hash.as_deref())?;
            let filter = doc! { "_id": id.as_str(), "rev": rev };
            let res = with_retry(|| self.tasks.replace_one(filter.clone(), doc.clone()))
                .await
                .map_err(backend)?;
            if res.matched_count == 1 {
                if before.state != next.state {
                    let moved = [(before.state, -1), (next.state, 1)];
                    super::mongo_counts::bump(&self.meta, &moved).await?;
                }
                return Ok(next);
            }
            tokio::task::yield_now().await;
        }
        Err(StoreError::Contended {
            id: id.clone(),
            attempts: CAS_ATTEMPTS,
        })
    }

    async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError> {
        Ok(self.raw(id).await?.and_then(|d| meta_of(&d).2))
    }

    async fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        let active = TaskState::ALL.into_iter().filter(|s| !s.is_terminal());
        let filter = doc! { "state": { "$in": state_names(active) } };
        let rows = self
            .find_tasks(filter, doc! { "seq": 1 }, None, true)
            .await?;
        Ok(rows.into_iter().map(|(_, t)| t).collect())
    }

    /// Through the `key_state` index (created at start).
    async fn active_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        let active = TaskState::matching(TaskState::is_active);
        let filter = doc! { "key": key, "state": { "$in": state_names(active) } };
        let rows = self
            .find_tasks(filter, doc! { "seq": 1 }, None, true)
            .await?;
        Ok(rows.into_iter().map(|(_, t)| t).collect())
    }

    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError> {
        let logs = logs.clone().capped();
        let d = doc! {
            "_id": id.as_str(),
            "text": &logs.text,
            "truncated": logs.truncated,
        };
        with_retry(|| {
            self.logs
                .replace_one(doc! { "_id": id.as_str() }, d.clone())
                .upsert(true)
        })
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError> {
        let d = with_retry(|| self.logs.find_one(doc! { "_id": id.as_str() }))
            .await
            .map_err(backend)?;
        Ok(d.map(|d| Logs {
            text: d.get_str("text").unwrap_or_default().to_string(),
            truncated: d.get_bool("truncated").unwrap_or(false),
        }))
    }

    async fn add_metrics(&self, id: &TaskId, samples: &[MetricSample]) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let each = samples
            .iter()
            .map(|s| bson::to_bson(s).map_err(codec))
            .collect::<Result<Vec<_>, _>>()?;
        let cap = -(model::limits::MAX_METRIC_SAMPLES as i64);
        let update = doc! { "$push": { "samples": { "$each": each, "$slice": cap } } };
        with_retry(|| {
            self.metrics
                .update_one(doc! { "_id": id.as_str() }, update.clone())
                .upsert(true)
        })
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError> {
        let d = with_retry(|| self.metrics.find_one(doc! { "_id": id.as_str() }))
            .await
            .map_err(backend)?;
        let Some(Ok(samples)) = d.map(|d| d.get_array("samples").cloned()) else {
            return Ok(Vec::new());
        };
        samples
            .into_iter()
            .map(|s| bson::from_bson(s).map_err(codec))
            .collect()
    }

    async fn remove_finished_before(
        &self,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let done = TaskState::ALL.into_iter().filter(|s| s.is_terminal());
        let filter = doc! {
            "finished_at_ms": { "$lt": before_ms },
            "state": { "$in": state_names(done) },
        };
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let docs = self
            .terminal_docs(filter, doc! { "finished_at_ms": 1 }, Some(limit))
            .await?;
        let mut removed = Vec::new();
        for chunk in docs.chunks(200) {
            removed.extend(self.remove_chunk(chunk).await?);
        }
        Ok(removed)
    }

    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        let done = TaskState::ALL.into_iter().filter(|s| s.is_terminal());
        let filter = doc! { "state": { "$in": state_names(done) } };
        let docs = self.terminal_docs(filter, doc! {}, None).await?;
        let mut removed = Vec::new();
        for chunk in docs.chunks(200) {
            removed.extend(self.remove_chunk(chunk).await?);
        }
        Ok(removed)
    }
}

impl MongoStore {
    /// The raw documents matching `filter` (without token hashes), in `sort` order.
    async fn terminal_docs(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> Result<Vec<Document>, StoreError> {
        with_retry(|| async {
            let mut find = self
                .tasks
                .find(filter.clone())
                .sort(sort.clone())
                .projection(doc! { "token_hash": 0 });
            if let Some(l) = limit {
                find = find.limit(l);
            }
            find.await?.try_collect().await
        })
        .await
        .map_err(backend)
    }

    /// Deletes the tasks of `chunk` that are unchanged since they were read (a task retried in
    /// between stays), with their logs and metrics; returns the deleted ones.
    async fn remove_chunk(&self, chunk: &[Document]) -> Result<Vec<Task>, StoreError> {
        let pairs: Vec<Document> = chunk
            .iter()
            .map(|d| doc! { "_id": d.get("_id").cloned().unwrap_or(Bson::Null), "rev": meta_of(d).1 })
            .collect();
        let ids: Vec<Bson> = chunk.iter().filter_map(|d| d.get("_id").cloned()).collect();
        with_retry(|| self.tasks.delete_many(doc! { "$or": pairs.clone() }))
            .await
            .map_err(backend)?;
        let left: Vec<Document> = with_retry(|| async {
            self.tasks
                .find(doc! { "_id": { "$in": ids.clone() } })
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(backend)?;
        let left: Vec<&Bson> = left.iter().filter_map(|d| d.get("_id")).collect();
        let gone: Vec<Bson> = ids.into_iter().filter(|i| !left.contains(&i)).collect();
        for c in [&self.logs, &self.metrics] {
            with_retry(|| c.delete_many(doc! { "_id": { "$in": gone.clone() } }))
                .await
                .map_err(backend)?;
        }
        let removed: Vec<Task> = chunk
            .iter()
            .filter(|d| d.get("_id").is_some_and(|i| gone.contains(i)))
            .map(|d| from_doc(d.clone()))
            .collect::<Result<_, _>>()?;
        let deltas: Vec<_> = removed.iter().map(|t| (t.state, -1)).collect();
        super::mongo_counts::bump(&self.meta, &deltas).await?;
        Ok(removed)
    }

    /// Counts the tasks of a batch that `insert_many` stored: all of them unless it failed,
    /// then those without a write error (duplicates were stored before, and counted then).
    async fn count_inserted(
        &self,
        tasks: &[Task],
        err: Option<&mongodb::error::Error>,
    ) -> Result<(), StoreError> {
        use mongodb::error::ErrorKind;
        let failed: Vec<usize> = match err.map(|e| e.kind.as_ref()) {
            None => Vec::new(),
            Some(ErrorKind::InsertMany(m)) => {
                m.write_errors.iter().flatten().map(|w| w.index).collect()
            }
            Some(_) => return Ok(()), // nothing is known to be stored; a retry inserts again
        };
        let deltas: Vec<_> = (0..tasks.len())
            .filter(|i| !failed.contains(i))
            .map(|i| (tasks[i].state, 1))
            .collect();
        super::mongo_counts::bump(&self.meta, &deltas).await
    }

    /// One page of tasks without timelines, newest first, `skip` matches skipped.
    async fn find_page(
        &self,
        filter: Document,
        limit: i64,
        skip: u64,
    ) -> Result<Vec<(i64, Task)>, StoreError> {
        let projection = doc! { "token_hash": 0, "transitions": 0 };
        let docs: Vec<Document> = with_retry(|| async {
            self.tasks
                .find(filter.clone())
                .sort(doc! { "seq": -1 })
                .skip(skip)
                .limit(limit)
                .projection(projection.clone())
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(backend)?;
        docs.into_iter()
            .map(|d| Ok((meta_of(&d).0, from_doc(d)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Resources;

    #[test]
    fn tasks_round_trip_through_documents_with_bookkeeping() {
        let r = Resources {
            cpu: 0.5,
            memory_mb: 1536,
        };
        let mut t = Task::new(TaskId::parse("t-1").unwrap(), "héllo".into(), r, 3, 60, 7);
        t.billed_seconds = 12;
        t.cost = 0.25;
        t.exit_code = Some(-1);
        let d = to_doc(&t, 42, 3, Some("abc")).unwrap();
        assert_eq!(d.get_str("_id").unwrap(), "t-1");
        assert_eq!(d.get_str("state").unwrap(), "Pending");
        assert_eq!(d.get_str("token_hash").unwrap(), "abc");
        assert_eq!(meta_of(&d), (42, 3, Some("abc".to_string())));
        assert_eq!(from_doc(d).unwrap(), t);
        let none = to_doc(&t, 1, 0, None).unwrap();
        assert_eq!(meta_of(&none).2, None);
    }
}
