//! The local mode's embedded store: one SQLite file ([`Db`], in [`super::sqlite_db`]) holds
//! tasks, logs, metrics and (see [`crate::queue`]) the durable queue, so that "record Pending +
//! enqueue" is one transaction ([`SqliteStore::with_outbox`]).
//!
//! An update is load, `model::Task::apply`, write inside one job of the writer thread's
//! transaction: nobody writes in between, so that is the compare-and-set. No SQL here spells a
//! state's name: lists of states are bound from `TaskState` ([`states_where`]).

use super::{refused, ListFilter, StoreError, TaskStore};
use async_trait::async_trait;
use model::{Event, Logs, MetricSample, Rates, Task, TaskId, TaskPage, TaskState};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub use super::sqlite_db::{Db, SyncHook};
pub(crate) use super::sqlite_storage::backend;

/// Writes, in the insert's own transaction, whatever must exist whenever a new task does (the
/// local queue's message: a transactional outbox), given the tasks just inserted and the time.
pub type Outbox = fn(&rusqlite::Transaction<'_>, &[Task], i64) -> Result<(), StoreError>;

/// The [`TaskStore`] on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    /// Shared with the local queue.
    pub db: Db,
    /// Run with every insert of new tasks, in the same transaction (see [`Outbox`]); set by
    /// local mode so a task is never stored without its queue message.
    outbox: Option<Outbox>,
}

impl SqliteStore {
    /// Opens the store in `path` (a file; created if needed).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            db: Db::open(path)?,
            outbox: None,
        })
    }

    /// This store, writing `outbox` in the transaction of every insert of new tasks.
    pub fn with_outbox(self, outbox: Outbox) -> SqliteStore {
        SqliteStore {
            outbox: Some(outbox),
            ..self
        }
    }
}

/// `IN (?, ?, ...)` for the states where `pred` holds, with their names to bind: the SQL never
/// spells a state, so the list follows `TaskState` by itself.
pub(crate) fn states_where(pred: impl Fn(TaskState) -> bool) -> (String, Vec<&'static str>) {
    let names: Vec<_> = TaskState::matching(pred).map(TaskState::as_str).collect();
    (format!("IN ({})", vec!["?"; names.len()].join(",")), names)
}

fn to_json(t: &Task) -> Result<String, StoreError> {
    serde_json::to_string(t).map_err(StoreError::codec)
}

pub(crate) fn from_json(s: &str) -> Result<Task, StoreError> {
    serde_json::from_str(s).map_err(StoreError::codec)
}

/// Every task in a state `pred` accepts, oldest first (through the `tasks_by_state` index),
/// each decoded on its own: what the reconciler's and the key caps' reads share.
fn in_states(
    c: &rusqlite::Connection,
    pred: impl Fn(TaskState) -> bool,
) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
    let (states, names) = states_where(pred);
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT doc FROM tasks WHERE state {states} ORDER BY seq"
        ))
        .map_err(backend)?;
    let docs = stmt
        .query_map(rusqlite::params_from_iter(names), |r| r.get::<_, String>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(docs.iter().map(|d| from_json(d)).collect())
}

/// Inserts `tasks` whose ids are new inside `tx`, writing `outbox` for those; returns every
/// task as stored.
fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    tasks: &[Task],
    outbox: Option<Outbox>,
) -> Result<Vec<Task>, StoreError> {
    let mut out = Vec::with_capacity(tasks.len());
    let mut new = Vec::new();
    let seqs = super::sqlite_board::batch_seqs(tx, tasks.len())?;
    let mut ins = tx
        .prepare_cached(
            "INSERT INTO tasks (seq, id, state, doc) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO NOTHING",
        )
        .map_err(backend)?;
    for (t, seq) in tasks.iter().zip(seqs) {
        if ins
            .execute(params![seq, t.id.as_str(), t.state.as_str(), to_json(t)?])
            .map_err(backend)?
            == 1
        {
            out.push(t.clone());
            new.push(t.clone());
        } else {
            out.push(get_in(tx, &t.id)?.ok_or_else(|| StoreError::NotFound(t.id.clone()))?);
        }
    }
    if let Some(outbox) = outbox.filter(|_| !new.is_empty()) {
        outbox(tx, &new, crate::clock::now_ms())?;
    }
    Ok(out)
}

fn get_in(conn: &Connection, id: &TaskId) -> Result<Option<Task>, StoreError> {
    conn.prepare_cached("SELECT doc FROM tasks WHERE id = ?1")
        .map_err(backend)?
        .query_row([id.as_str()], |r| r.get::<_, String>(0))
        .optional()
        .map_err(backend)?
        .map(|d| from_json(&d))
        .transpose()
}

/// Load, apply, write for task `id` inside `tx`: the writer's transaction is the
/// compare-and-set (nobody else writes between the load and the write).
fn update_in(
    tx: &rusqlite::Transaction<'_>,
    id: &TaskId,
    event: &Event,
    now_ms: i64,
    rates: &Rates,
) -> Result<Task, StoreError> {
    let current = get_in(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
    let next = current
        .apply(event, now_ms, rates)
        .map_err(|e| refused(id, e))?;
    tx.prepare_cached("UPDATE tasks SET state = ?2, doc = ?3, token_hash = COALESCE(?4, token_hash) WHERE id = ?1")
        .map_err(backend)?
        .execute(params![id.as_str(), next.state.as_str(), to_json(&next)?, event.token_hash()])
        .map_err(backend)?;
    Ok(next)
}

#[async_trait]
impl TaskStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        let (tasks, outbox) = (tasks.to_vec(), self.outbox);
        self.db.write(move |tx| insert_in(tx, &tasks, outbox)).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let id = id.clone();
        self.db.read(move |c| get_in(c, &id)).await
    }

    async fn pending(&self, key: Option<&str>) -> Result<u64, StoreError> {
        let key = key.map(str::to_string);
        self.db
            .read(move |c| super::sqlite_shape::pending(c, key.as_deref()))
            .await
    }

    /// The count and the insert in one transaction: a cap is never overshot.
    async fn insert_capped(
        &self,
        tasks: &[Task],
        caps: model::shape::QueueCaps,
    ) -> Result<Vec<Task>, StoreError> {
        let (tasks, outbox) = (tasks.to_vec(), self.outbox);
        self.db
            .write(move |tx| {
                super::sqlite_shape::check_caps(tx, &tasks, caps)?;
                insert_in(tx, &tasks, outbox)
            })
            .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        let filter = filter.clone();
        self.db
            .read(move |c| super::sqlite_board::list_in(c, &filter))
            .await
    }

    async fn update(
        &self,
        id: &TaskId,
        event: &Event,
        now_ms: i64,
        rates: &Rates,
    ) -> Result<Task, StoreError> {
        let (id, event, rates) = (id.clone(), event.clone(), *rates);
        self.db
            .write(move |tx| update_in(tx, &id, &event, now_ms, &rates))
            .await
    }

    async fn token_hash(&self, id: &TaskId) -> Result<Option<String>, StoreError> {
        let id = id.clone();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT token_hash FROM tasks WHERE id = ?1")
                    .map_err(backend)?
                    .query_row([id.as_str()], |r| r.get::<_, Option<String>>(0))
                    .optional()
                    .map(Option::flatten)
                    .map_err(backend)
            })
            .await
    }

    async fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        self.db
            .read(|c| in_states(c, |s| !s.is_terminal())?.into_iter().collect())
            .await
    }

    /// Through the `tasks_by_state` index: the active tasks are few (at most the global cap,
    /// plus racing claims), so reading them and keeping the key's is cheaper than another
    /// column and index kept on every write.
    async fn active_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        let key = key.to_string();
        self.db
            .read(move |c| {
                let tasks = in_states(c, TaskState::is_active)?.into_iter();
                let mine = |t: &Result<Task, StoreError>| {
                    t.as_ref()
                        .map_or(true, |t| t.key.as_deref() == Some(key.as_str()))
                };
                tasks.filter(mine).collect()
            })
            .await
    }

    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError> {
        let (id, logs) = (id.clone(), logs.clone().capped());
        self.db
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO logs (id, text, truncated) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET text = excluded.text, truncated = excluded.truncated",
                    params![id.as_str(), logs.text, logs.truncated],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn logs(&self, id: &TaskId) -> Result<Option<Logs>, StoreError> {
        let id = id.clone();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT text, truncated FROM logs WHERE id = ?1",
                    [id.as_str()],
                    |r| {
                        Ok(Logs {
                            text: r.get(0)?,
                            truncated: r.get(1)?,
                        })
                    },
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn add_metrics(&self, id: &TaskId, samples: &[MetricSample]) -> Result<(), StoreError> {
        let (id, samples) = (id.clone(), samples.to_vec());
        self.db
            .write(move |tx| {
                let mut ins = tx
                    .prepare_cached("INSERT INTO metrics (id, at_ms, cpu, mem) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(backend)?;
                for s in &samples {
                    ins.execute(params![id.as_str(), s.at_ms, s.cpu_percent, s.memory_bytes as i64])
                        .map_err(backend)?;
                }
                tx.execute(
                    "DELETE FROM metrics WHERE id = ?1 AND at_ms < (SELECT at_ms FROM metrics WHERE id = ?1 ORDER BY at_ms DESC LIMIT 1 OFFSET ?2)",
                    params![id.as_str(), model::limits::MAX_METRIC_SAMPLES as i64 - 1],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn metrics(&self, id: &TaskId) -> Result<Vec<MetricSample>, StoreError> {
        let id = id.clone();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT at_ms, cpu, mem FROM metrics WHERE id = ?1 ORDER BY at_ms",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map([id.as_str()], |r| {
                        Ok(MetricSample {
                            at_ms: r.get(0)?,
                            cpu_percent: r.get(1)?,
                            memory_bytes: r.get::<_, i64>(2)? as u64,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.db.ready().await
    }

    async fn remove_finished_before(
        &self,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .write(move |tx| {
                let (terminal, names) = states_where(TaskState::is_terminal);
                // The oldest first, through `tasks_by_finish`; a bounded batch per write.
                let sql = format!(
                    "SELECT seq, id, doc FROM tasks WHERE finished_at_ms < ? AND state {terminal} \
                     ORDER BY finished_at_ms LIMIT ?"
                );
                let mut args: Vec<rusqlite::types::Value> = vec![before_ms.into()];
                args.extend(names.iter().map(|n| n.to_string().into()));
                args.push(max.into());
                let rows = tx
                    .prepare_cached(&sql)
                    .map_err(backend)?
                    .query_map(rusqlite::params_from_iter(args), |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                for (seq, id, _) in &rows {
                    for sql in [
                        "DELETE FROM logs WHERE id = ?1",
                        "DELETE FROM metrics WHERE id = ?1",
                    ] {
                        tx.prepare_cached(sql)
                            .map_err(backend)?
                            .execute([id])
                            .map_err(backend)?;
                    }
                    tx.prepare_cached("DELETE FROM tasks WHERE seq = ?1")
                        .map_err(backend)?
                        .execute([seq])
                        .map_err(backend)?;
                }
                rows.iter().map(|(_, _, d)| from_json(d)).collect()
            })
            .await
    }

    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        self.db
            .write(|tx| {
                let (terminal, names) = states_where(TaskState::is_terminal);
                let bind = || rusqlite::params_from_iter(names.iter());
                let docs = tx
                    .prepare(&format!("SELECT doc FROM tasks WHERE state {terminal}"))
                    .map_err(backend)?
                    .query_map(bind(), |r| r.get::<_, String>(0))
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                for table in ["logs", "metrics"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE id IN (SELECT id FROM tasks WHERE state {terminal})"),
                        bind(),
                    )
                    .map_err(backend)?;
                }
                tx.execute(&format!("DELETE FROM tasks WHERE state {terminal}"), bind())
                    .map_err(backend)?;
                docs.iter().map(|d| from_json(d)).collect()
            })
            .await
    }
}
