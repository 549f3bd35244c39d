//! The local mode's embedded store: one SQLite file holds tasks, logs, metrics and (see
//! [`crate::queue`]) the durable queue, so that "record Pending + enqueue" is one transaction.
//!
//! WAL mode with `synchronous=NORMAL`: a commit survives the handler being killed (kill -9);
//! only a power loss may drop the last few commits. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers; every call runs on tokio's blocking pool.

use super::{apply, Change, ListFilter, StoreError, TaskStore};
use async_trait::async_trait;
use model::{Logs, MetricSample, Task, TaskId, TaskPage};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How many read connections are kept.
const READERS: usize = 4;
/// How often the checkpointer copies the WAL into the database file. Checkpoints fsync; done
/// by the writer at commit (SQLite's default, every 1000 pages) they held the write lock for
/// ~10-50 ms on this machine's disk and capped enqueue at ~4,000/s with 250 ms stalls.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// The WAL file is truncated back to this size after a checkpoint (it grows during bursts).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

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
    /// Write jobs for the writer thread, which runs all that are waiting in one transaction
    /// (group commit; see [`Db::write`]).
    jobs: std::sync::mpsc::Sender<Job>,
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

/// One caller's write, run by the writer thread inside the batch's transaction. It returns
/// what to do once the batch's commit succeeded (`true`) or failed (`false`): answer the caller.
type Job = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> Box<dyn FnOnce(bool) + Send> + Send>;

/// Most jobs committed together.
const MAX_BATCH: usize = 128;

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]), runs each in its own
/// savepoint of one transaction, commits once, then answers each caller. Ends when every `Db`
/// clone (every sender) is gone.
fn writer_loop(writer: Arc<Mutex<Connection>>, jobs: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(tx) = conn.transaction() else {
            continue; // dropping the jobs answers their callers with an error
        };
        let answers: Vec<_> = batch.into_iter().map(|job| job(&tx)).collect();
        let committed = tx.commit().is_ok();
        drop(conn);
        for answer in answers {
            answer(committed);
        }
    }
}

/// Checkpoints the WAL in the background (PASSIVE: never waits for, nor blocks, the writer)
/// until the database is dropped, so commits never pay for a checkpoint's fsync. A WAL grown
/// past [`WAL_SIZE_LIMIT`] (writes never paused long enough) gets a RESTART checkpoint, which
/// briefly holds writers back so the file can start over.
fn checkpointer(
    conn: Connection,
    wal: std::path::PathBuf,
    writer: std::sync::Weak<Mutex<Connection>>,
) {
    let run = move || {
        while writer.strong_count() > 0 {
            std::thread::sleep(CHECKPOINT_EVERY);
            let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_SIZE_LIMIT as u64);
            let mode = if big { "RESTART" } else { "PASSIVE" };
            let sql = format!("PRAGMA wal_checkpoint({mode})");
            if let Err(e) = conn.query_row(&sql, [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "no checkpoint thread; the WAL is checkpointed on close only");
    }
}

/// Runs `f` inside a savepoint of `tx`: kept if Ok, rolled back on an error or a panic (which
/// is turned into an error, so one bad write cannot take the writer thread down).
fn in_savepoint<T, F>(tx: &rusqlite::Transaction<'_>, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
{
    tx.execute_batch("SAVEPOINT job").map_err(backend)?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a write panicked".into())));
    let end = match out {
        Ok(_) => "RELEASE job",
        Err(_) => "ROLLBACK TO job; RELEASE job",
    };
    tx.execute_batch(end).map_err(backend)?;
    out
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Db {
    /// Opens (creating if needed) the database file and its schema.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let mut writer = open_conn(path).map_err(backend)?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        super::sqlite_board::migrate(&mut writer)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|_| writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .map_err(backend)?;
        let readers = (0..READERS)
            .map(|_| open_conn(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let writer = Arc::new(Mutex::new(writer));
        let wal = path.with_file_name(format!(
            "{}-wal",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        checkpointer(
            open_conn(path).map_err(backend)?,
            wal,
            Arc::downgrade(&writer),
        );
        let (jobs, queued) = std::sync::mpsc::channel();
        let w = writer.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(w, queued))
            .map_err(backend)?;
        Ok(Db {
            writer,
            jobs,
            readers: Arc::new(Mutex::new(readers)),
        })
    }

    /// Runs `f` as one atomic write: all of it is committed if it returns Ok, none of it if it
    /// returns an error (or panics). Answers once the data is committed.
    ///
    /// Group commit: writes waiting at the same moment share one transaction on the writer
    /// thread, each in its own savepoint, so one commit (one set of WAL pages) serves many
    /// callers. One transaction per call wrote ~8 pages (32 KB) of WAL per enqueued task and
    /// capped `POST /api/work` near 4,000/s; see BENCHMARKS.md.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let out = in_savepoint(tx, f);
            Box::new(move |committed| {
                let out = match out {
                    Ok(_) if !committed => Err(StoreError::Backend("commit failed".into())),
                    out => out,
                };
                let _ = answer.send(out);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("the writer thread is gone".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Backend("the write was not run (transaction failed)".into()))?
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

pub(crate) fn from_json(s: &str) -> Result<Task, StoreError> {
    serde_json::from_str(s).map_err(backend)
}

/// Inserts `tasks` whose ids are new inside `tx`; returns every task as stored.
pub fn insert_in(tx: &rusqlite::Transaction<'_>, tasks: &[Task]) -> Result<Vec<Task>, StoreError> {
    let mut out = Vec::with_capacity(tasks.len());
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
        self.db
            .read(move |c| super::sqlite_board::list_in(c, &filter))
            .await
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
