//! Whole-board counts for the MongoDB store, kept incrementally in one document.
//!
//! `<tasks>_meta` holds `{_id: "counts", Pending: n, InProgress: n, ...}`. Every write that
//! adds, removes or moves a task between states `$inc`s it right after the write succeeded, so
//! a page's counts cost one `find` by `_id` instead of an aggregation over every task (which
//! grows with the board, and costs request units on Cosmos DB in proportion).
//!
//! Not transactional: Cosmos DB for MongoDB offers multi-document transactions only within one
//! unsharded collection and needs a session per write, so the `$inc` is a second write. If the
//! handler dies between a task write and its `$inc`, the counts are off by that one change
//! until [`recount`] runs: at start when the document is missing (deleting the document and
//! restarting the handler recounts).

use super::mongo_wire::{backend, with_retry};
use super::StoreError;
use model::TaskState;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use std::collections::BTreeMap;

/// `_id` of the counts document in the meta collection.
const ID: &str = "counts";

/// Creates the counts document from the stored tasks if it is missing (first start).
pub async fn ensure(
    meta: &Collection<Document>,
    tasks: &Collection<Document>,
) -> Result<(), StoreError> {
    let found = with_retry(|| meta.find_one(doc! { "_id": ID }))
        .await
        .map_err(backend)?;
    if found.is_none() {
        recount(meta, tasks).await?;
    }
    Ok(())
}

/// Counts every task by state (one aggregation) and replaces the counts document.
pub async fn recount(
    meta: &Collection<Document>,
    tasks: &Collection<Document>,
) -> Result<(), StoreError> {
    use futures::TryStreamExt;
    let pipeline = vec![doc! { "$group": { "_id": "$state", "n": { "$sum": 1 } } }];
    let groups: Vec<Document> =
        with_retry(|| async { tasks.aggregate(pipeline.clone()).await?.try_collect().await })
            .await
            .map_err(backend)?;
    let mut d = doc! { "_id": ID };
    for s in TaskState::ALL {
        d.insert(s.as_str(), 0_i64);
    }
    for g in groups {
        if let (Ok(state), Some(n)) = (
            g.get_str("_id").unwrap_or_default().parse::<TaskState>(),
            number(g.get("n")),
        ) {
            d.insert(state.as_str(), n);
        }
    }
    with_retry(|| meta.replace_one(doc! { "_id": ID }, d.clone()).upsert(true))
        .await
        .map_err(backend)?;
    Ok(())
}

/// Adds `deltas` (state, change) to the counts.
pub async fn bump(
    meta: &Collection<Document>,
    deltas: &[(TaskState, i64)],
) -> Result<(), StoreError> {
    let mut inc = Document::new();
    for (s, n) in deltas.iter().filter(|(_, n)| *n != 0) {
        let old = number(inc.get(s.as_str())).unwrap_or(0);
        inc.insert(s.as_str(), old + n);
    }
    if inc.is_empty() {
        return Ok(());
    }
    let update = doc! { "$inc": inc };
    with_retry(|| {
        meta.update_one(doc! { "_id": ID }, update.clone())
            .upsert(true)
    })
    .await
    .map_err(backend)?;
    Ok(())
}

/// The counts (states with none left out).
pub async fn read(meta: &Collection<Document>) -> Result<BTreeMap<TaskState, u64>, StoreError> {
    let d = with_retry(|| meta.find_one(doc! { "_id": ID }))
        .await
        .map_err(backend)?
        .unwrap_or_default();
    Ok(TaskState::ALL
        .into_iter()
        .filter_map(|s| Some((s, number(d.get(s.as_str()))?)))
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s, n as u64))
        .collect())
}

fn number(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}
