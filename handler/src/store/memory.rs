//! An in-memory [`TaskStore`] for fast unit tests of the code above the store (spawn,
//! reconcile, policy): no file, no server, the same behaviour. It passes the same conformance
//! suite as SQLite and MongoDB (`tests/src/store_conformance.rs`, run by
//! `tests/tests/store_memory.rs`).
//!
//! One mutex around everything: every method is one critical section, so an update's load,
//! `model::Task::apply` and write are atomic by construction (the compare-and-set cannot lose).

use super::{refused, ListFilter, StoreError, TaskStore};
use async_trait::async_trait;
use model::{Event, Logs, MetricSample, Rates, Task, TaskId, TaskPage, TaskState};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The store. Holds nothing but memory; dropped, it is gone.
#[derive(Default)]
pub struct MemoryStore {
    /// Everything, behind one lock (see the module docs).
    inner: Mutex<Inner>,
}

/// The tables.
#[derive(Default)]
struct Inner {
    /// Tasks by board position (`seq`), newest highest, as the SQLite store numbers them.
    board: BTreeMap<i64, Task>,
    /// Where each task is on the board, and its token hash.
    index: HashMap<TaskId, (i64, Option<String>)>,
    /// The last board position handed out (never reused, like SQLite's AUTOINCREMENT).
    last_seq: i64,
    /// Captured output per task.
    logs: HashMap<TaskId, Logs>,
    /// Metric samples per task, oldest first.
    metrics: HashMap<TaskId, Vec<MetricSample>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn task(&self, id: &TaskId) -> Option<&Task> {
        self.index.get(id).and_then(|(seq, _)| self.board.get(seq))
    }

    /// Tasks per state among those matching `search` (the whole board for an empty one).
    fn counts(&self, search: &model::Search) -> BTreeMap<TaskState, u64> {
        let mut counts = BTreeMap::new();
        for t in self.board.values().filter(|t| search.matches(t)) {
            *counts.entry(t.state).or_insert(0) += 1;
        }
        counts
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        let mut m = self.lock();
        // A batch takes its numbers in reverse: newest first shows it in submission order.
        let top = m.last_seq + tasks.len() as i64;
        m.last_seq = top;
        let mut out = Vec::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            if let Some(stored) = m.task(&t.id) {
                out.push(stored.clone());
                continue;
            }
            let seq = top - i as i64;
            m.board.insert(seq, t.clone());
            m.index.insert(t.id.clone(), (seq, None));
            out.push(t.clone());
        }
        Ok(out)
    }

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.lock().task(id).cloned())
    }

    async fn pending(&self, key: Option<&str>) -> Result<u64, StoreError> {
        let m = self.lock();
        let n = m
            .board
            .values()
            .filter(|t| t.state == TaskState::Pending)
            .filter(|t| key.is_none() || t.key.as_deref() == key)
            .count();
        Ok(n as u64)
    }

    async fn list(&self, f: &ListFilter) -> Result<TaskPage, StoreError> {
        let before = match &f.cursor {
            Some(c) => c.parse::<i64>().map_err(|_| StoreError::BadCursor)?,
            None => i64::MAX,
        };
        let m = self.lock();
        let mut rows = m
            .board
            .range(..before)
            .rev()
            .filter(|(_, t)| f.states.is_empty() || f.states.contains(&t.state))
            .filter(|(_, t)| f.search.matches(t))
            .filter(|(_, t)| {
                f.active_since_ms.is_none_or(|since| {
                    !t.state.is_terminal() || t.finished_at_ms.is_some_and(|at| at >= since)
                })
            })
            .skip(f.offset);
        let mut tasks = Vec::new();
        let mut last = None;
        for (seq, t) in rows.by_ref().take(f.limit) {
            let mut t = t.clone();
            t.transitions.clear();
            tasks.push(t);
            last = Some(*seq);
        }
        let more = rows.next().is_some();
        Ok(TaskPage {
            tasks,
            next: last.filter(|_| more).map(|s| s.to_string()),
            counts: m.counts(&f.search),
        })
    }

    async fn update(
        &self,
        id: &TaskId,
        event: &Event,
        now_ms: i64,
        rates: &Rates,
    ) -> Result<Task, StoreError> {
        let mut m = self.lock();
        let (seq, _) = m
            .index
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let current = m
            .board
            .get(&seq)
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let next = current
            .apply(event, now_ms, rates)
            .map_err(|e| refused(id, e))?;
        m.board.insert(seq, next.clone());
        if let Some(hash) = event.token_hash() {
            m.index.insert(id.clone(), (seq, Some(hash.to_string())));
        }
        Ok(next)
    }

    async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError> {
        Ok(self.lock().index.get(id).and_then(|(_, h)| h.clone()))
    }

    async fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        let m = self.lock();
        // Oldest first, as the other stores answer.
        Ok(m.board
            .values()
            .filter(|t| !t.state.is_terminal())
            .cloned()
            .collect())
    }

    async fn active_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        let m = self.lock();
        Ok(m.board
            .values()
            .filter(|t| t.state.is_active() && t.key.as_deref() == Some(key))
            .cloned()
            .collect())
    }

    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError> {
        self.lock().logs.insert(id.clone(), logs.clone().capped());
        Ok(())
    }

    async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError> {
        Ok(self.lock().logs.get(id).cloned())
    }

    async fn add_metrics(&self, id: &TaskId, samples: &[MetricSample]) -> Result<(), StoreError> {
        let mut m = self.lock();
        let kept = m.metrics.entry(id.clone()).or_default();
        kept.extend_from_slice(samples);
        let extra = kept.len().saturating_sub(model::limits::MAX_METRIC_SAMPLES);
        kept.drain(..extra);
        Ok(())
    }

    async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError> {
        Ok(self.lock().metrics.get(id).cloned().unwrap_or_default())
    }

    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        Ok(self.lock().remove(|_| true, usize::MAX))
    }

    async fn remove_finished_before(
        &self,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let old = |t: &Task| t.finished_at_ms.is_some_and(|at| at < before_ms);
        Ok(self.lock().remove(old, max))
    }
}

impl Inner {
    /// Removes at most `max` terminal tasks for which `pick` holds (the oldest finished first),
    /// with their logs and metrics.
    fn remove(&mut self, pick: impl Fn(&Task) -> bool, max: usize) -> Vec<Task> {
        let m = self;
        let mut done: Vec<(i64, i64)> = m
            .board
            .iter()
            .filter(|(_, t)| t.state.is_terminal() && pick(t))
            .map(|(seq, t)| (t.finished_at_ms.unwrap_or(0), *seq))
            .collect();
        done.sort_unstable();
        let done: Vec<i64> = done.into_iter().take(max).map(|(_, seq)| seq).collect();
        let mut removed = Vec::with_capacity(done.len());
        for seq in done {
            if let Some(t) = m.board.remove(&seq) {
                m.index.remove(&t.id);
                m.logs.remove(&t.id);
                m.metrics.remove(&t.id);
                removed.push(t);
            }
        }
        removed
    }
}
