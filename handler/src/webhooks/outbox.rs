//! The durable outbox of webhook deliveries: one row per event and URL, written when the task
//! changes (cheap, no network), read and updated by the dispatcher. Backends: the local SQLite
//! file ([`super::sqlite`]), a MongoDB collection ([`super::mongo`]) and memory (tests, and a
//! store that keeps nothing across restarts anyway).

use crate::store::StoreError;
use async_trait::async_trait;
use model::webhook::{Delivery, DeliveryStatus};
use model::TaskId;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

/// A delivery and the exact body it sends (the same bytes on every retry, so the signature and
/// the CloudEvent `id` stay the same).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Where it stands and what was tried.
    pub delivery: Delivery,
    /// The CloudEvent JSON.
    pub body: String,
}

/// Storage of deliveries. Object-safe, chosen at start-up beside the task store.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Records new deliveries (an id already recorded is left alone), in the order given.
    async fn record(&self, rows: &[Row]) -> Result<(), StoreError>;
    /// Up to `limit` pending deliveries due at `now_ms`, oldest first, each the oldest pending
    /// one of its task and URL (so one task's events reach a URL in order).
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Row>, StoreError>;
    /// Writes a delivery's status, attempts and next time.
    async fn save(&self, d: &Delivery) -> Result<(), StoreError>;
    /// A task's deliveries, oldest first.
    async fn for_task(&self, id: &TaskId) -> Result<Vec<Delivery>, StoreError>;
    /// Forgets every delivery of these tasks (they were removed from the board).
    async fn remove(&self, ids: &[TaskId]) -> Result<(), StoreError>;
}

/// The in-memory outbox: gone with the process.
#[derive(Default)]
pub struct MemoryOutbox {
    /// Rows by insertion number.
    rows: Mutex<BTreeMap<u64, Row>>,
}

impl MemoryOutbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Row>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The rows of `rows` (oldest first) that are due: pending, due by `now_ms`, and the first
/// pending one of their task and URL. Shared by the backends that filter in memory.
pub fn due_in<'a>(rows: impl Iterator<Item = &'a Row>, now_ms: i64, limit: usize) -> Vec<Row> {
    let mut seen = HashSet::new();
    rows.filter(|r| r.delivery.status == DeliveryStatus::Pending)
        .filter(|r| seen.insert((r.delivery.task_id.clone(), r.delivery.url.clone())))
        .filter(|r| r.delivery.next_at_ms.is_none_or(|t| t <= now_ms))
        .take(limit)
        .cloned()
        .collect()
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn record(&self, rows: &[Row]) -> Result<(), StoreError> {
        let mut m = self.lock();
        let known: HashSet<String> = m.values().map(|r| r.delivery.id.clone()).collect();
        let first = m.keys().next_back().map_or(0, |k| k + 1);
        let new = rows.iter().filter(|r| !known.contains(&r.delivery.id));
        for (n, r) in (first..).zip(new) {
            m.insert(n, r.clone());
        }
        Ok(())
    }

    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Row>, StoreError> {
        Ok(due_in(self.lock().values(), now_ms, limit))
    }

    async fn save(&self, d: &Delivery) -> Result<(), StoreError> {
        if let Some(r) = self.lock().values_mut().find(|r| r.delivery.id == d.id) {
            r.delivery = d.clone();
        }
        Ok(())
    }

    async fn for_task(&self, id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        Ok(self
            .lock()
            .values()
            .filter(|r| &r.delivery.task_id == id)
            .map(|r| r.delivery.clone())
            .collect())
    }

    async fn remove(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        let gone: HashSet<&TaskId> = ids.iter().collect();
        self.lock()
            .retain(|_, r| !gone.contains(&r.delivery.task_id));
        Ok(())
    }
}
