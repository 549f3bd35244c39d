//! The local mode's embedded store: one SQLite file holds tasks, logs, metrics and (see
//! [`crate::queue`]) the durable queue, so that "record Pending + enqueue" is one transaction.
//!
//! WAL mode with `synchronous=NORMAL`: a commit survives the handler being killed (kill -9);
//! only a power loss may drop the last few commits. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers; every call runs on tokio's blocking pool.

use super::{apply, Change, ListFilter, StoreError, TaskStore};
use async_trait::async_trait;
use model::{Logs, MetricSample, Task, TaskId, TaskPage, TaskState};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How many read connections are kept.
const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    token_hash TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, seq);
CREATE TABLE IF NOT EXISTS logs (id TEXT PRIMARY KEY, text TEXT NOT NULL, truncated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (id TEXT NOT NULL, at_ms INTEGER NOT NULL, cpu REAL NOT NULL, mem INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_by_task ON metrics(id, at_ms);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    visible_at_ms INTEGER NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_by_visibility ON queue(visible_at_ms, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    message_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
";

/// The database handle: cheap to clone, shared by the store and the queue.
#[derive(Clone)]
pub struct Db {
    /// The one connection that writes. Held only for the length of one transaction.
    writer: Arc<Mutex<Connection>>,
    /// Read connections, taken and put back per call (WAL lets them read while one writes).
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    Ok(conn)
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Db {
    /// Opens (creating if needed) the database file and its schema.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let writer = open_conn(path).map_err(backend)?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        let readers = (0..READERS)
            .map(|_| open_conn(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(Db {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(readers)),
        })
    }

    /// Runs `f` in one write transaction on the blocking pool; commits if it returns Ok.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction().map_err(backend)?;
            let out = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(backend)?
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match conn {
                Some(conn) => {
                    let out = f(&conn);
                    readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
                    out
                }
                // All readers busy: share the writer rather than wait.
                None => f(&writer.lock().unwrap_or_else(|p| p.into_inner())),
            }
        })
        .await
        .map_err(backend)?
    }
}

/// The [`TaskStore`] on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    /// Shared with the local queue.
    pub db: Db,
}

impl SqliteStore {
    /// Opens the store in `path` (a file; created if needed).
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore {
            db: Db::open(path)?,
        })
    }
}

fn to_json(t: &Task) -> Result<String, StoreError> {
    serde_json::to_string(t).map_err(backend)
}

fn from_json(s: &str) -> Result<Task, StoreError> {
    serde_json::from_str(s).map_err(backend)
}

/// Inserts `tasks` whose ids are new inside `tx`; returns every task as stored.
pub fn insert_in(tx: &rusqlite::Transaction<'_>, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
    let mut out = Vec::with_capacity(tasks.len());
    let mut ins = tx
        .prepare_cached(
            "INSERT INTO tasks (id, state, doc) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO NOTHING",
        )
        .map_err(backend)?;
    for t in tasks {
        if ins
            .execute(params![t.id.as_str(), t.state.as_str(), to_json(t)?])
            .map_err(backend)?
            == 1
        {
            out.push(t.clone());
        } else {
            out.push(get_in(tx, &t.id)?.ok_or_else(|| StoreError::NotFound(t.id.clone()))?);
        }
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

/// Applies `change` to task `id` inside `tx` (load, [`apply`], write).
pub fn update_in(
    tx: &rusqlite::Transaction<'_>,
    id: &TaskId,
    change: &Change,
) -> Result<Task, StoreError> {
    let current = get_in(tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
    let next = apply(&current, change)?;
    tx.prepare_cached("UPDATE tasks SET state = ?2, doc = ?3, token_hash = COALESCE(?4, token_hash) WHERE id = ?1")
        .map_err(backend)?
        .execute(params![id.as_str(), next.state.as_str(), to_json(&next)?, change.token_hash])
        .map_err(backend)?;
    Ok(next)
}

fn list_in(conn: &Connection, f: &ListFilter) -> Result<TaskPage, StoreError> {
    let before: i64 = match &f.cursor {
        Some(c) => c.parse().map_err(|_| StoreError::BadCursor)?,
        None => i64::MAX,
    };
    let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
    let filter = if states.is_empty() {
        String::new()
    } else {
        let marks = vec!["?"; states.len()].join(",");
        format!("AND state IN ({marks})")
    };
    let sql =
        format!("SELECT seq, doc FROM tasks WHERE seq < ? {filter} ORDER BY seq DESC LIMIT ?");
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let mut args: Vec<rusqlite::types::Value> = vec![before.into()];
    args.extend(
        states
            .iter()
            .map(|s| rusqlite::types::Value::from(s.to_string())),
    );
    args.push((f.limit as i64 + 1).into());
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let more = rows.len() > f.limit;
    let mut tasks = Vec::with_capacity(rows.len().min(f.limit));
    let mut last = None;
    for (seq, doc) in rows.into_iter().take(f.limit) {
        let mut t = from_json(&doc)?;
        t.transitions.clear();
        tasks.push(t);
        last = Some(seq);
    }
    let next = if more {
        last.map(|s| s.to_string())
    } else {
        None
    };
    Ok(TaskPage {
        tasks,
        next,
        counts: counts_in(conn)?,
    })
}

fn counts_in(conn: &Connection) -> Result<BTreeMap<TaskState, u64>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(backend)?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let (state, n) = row.map_err(backend)?;
        if let Ok(s) = state.parse() {
            counts.insert(s, n as u64);
        }
    }
    Ok(counts)
}

#[async_trait]
impl TaskStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
        let tasks = tasks.to_vec();
        self.db.write(move |tx| insert_in(tx, &tasks)).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let id = id.clone();
        self.db.read(move |c| get_in(c, &id)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, StoreError> {
        let filter = filter.clone();
        self.db.read(move |c| list_in(c, &filter)).await
    }

    async fn update(&self, id: &TaskId, change: &Change) -> Result<Task, StoreError> {
        let (id, change) = (id.clone(), change.clone());
        self.db.write(move |tx| update_in(tx, &id, &change)).await
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
            .read(|c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM tasks WHERE state IN ('Pending','Provisioning','InProgress') ORDER BY seq",
                    )
                    .map_err(backend)?;
                let docs = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                docs.iter().map(|d| from_json(d)).collect()
            })
            .await
    }

    async fn put_logs(&self, id: &TaskId, logs: &Logs) -> Result<(), StoreError> {
        let (id, logs) = (id.clone(), logs.clone());
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

    async fn remove_finished(&self) -> Result<Vec<Task>, StoreError> {
        self.db
            .write(|tx| {
                let terminal = "('Done','Failed','Cancelled','TimedOut','DeadLettered')";
                let docs = tx
                    .prepare(&format!("SELECT doc FROM tasks WHERE state IN {terminal}"))
                    .map_err(backend)?
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                for table in ["logs", "metrics"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE id IN (SELECT id FROM tasks WHERE state IN {terminal})"),
                        [],
                    )
                    .map_err(backend)?;
                }
                tx.execute(&format!("DELETE FROM tasks WHERE state IN {terminal}"), [])
                    .map_err(backend)?;
                docs.iter().map(|d| from_json(d)).collect()
            })
            .await
    }
}
