//! The pool's rows in the local SQLite file: one per warm container, so a restart knows which
//! containers were ours and which task had claimed one before its worker got the task.
//!
//! A claim is one `UPDATE ... WHERE task_id IS NULL`, so a container is claimed at most once;
//! it is written before the container is renamed and the task handed over, and the row is
//! deleted once the worker holds its task (from then on it is a task container like any other).

use crate::store::sqlite::{backend, Db};
use crate::store::StoreError;
use rusqlite::params;

/// The table; created at start-up (`CREATE ... IF NOT EXISTS`), so older files gain it.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pool (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    task_id TEXT,
    attempt INTEGER,
    container TEXT,
    claimed_at_ms INTEGER
)";

/// One warm container as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its name while it waits (`edapool-<run>-<n>`), also the slot in its assignment URL.
    pub name: String,
    /// SHA-256 of its pool token.
    pub token_hash: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// The claim, once a task took it: task id, attempt and the task's container name.
    pub claim: Option<(String, u32, String)>,
}

/// The pool table of one SQLite file.
#[derive(Clone)]
pub struct Rows {
    /// The database shared with the store and the queue.
    db: Db,
}

impl Rows {
    /// The pool table of `db`, created when missing.
    pub async fn open(db: Db) -> Result<Rows, StoreError> {
        db.write(|tx| tx.execute(SCHEMA, []).map(drop).map_err(backend))
            .await?;
        Ok(Rows { db })
    }

    /// Records a new warm container before it is created (so a crash in between leaves a row
    /// that names what to clean up).
    pub async fn insert(&self, name: &str, token_hash: &str, at_ms: i64) -> Result<(), StoreError> {
        let (name, hash) = (name.to_string(), token_hash.to_string());
        self.db
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO pool (name, token_hash, created_at_ms) VALUES (?1, ?2, ?3)",
                    params![name, hash, at_ms],
                )
                .map(drop)
                .map_err(backend)
            })
            .await
    }

    /// Claims `name` for a task attempt; false when it is gone or already claimed.
    pub async fn claim(
        &self,
        name: &str,
        task: &str,
        attempt: u32,
        container: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let (name, task, container) = (name.to_string(), task.to_string(), container.to_string());
        self.db
            .write(move |tx| {
                tx.execute(
                    "UPDATE pool SET task_id = ?2, attempt = ?3, container = ?4, claimed_at_ms = ?5
                     WHERE name = ?1 AND task_id IS NULL",
                    params![name, task, attempt, container, at_ms],
                )
                .map(|n| n == 1)
                .map_err(backend)
            })
            .await
    }

    /// Forgets `name` (removed, or handed over to its task).
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.db
            .write(move |tx| {
                tx.execute("DELETE FROM pool WHERE name = ?1", [name])
                    .map(drop)
                    .map_err(backend)
            })
            .await
    }

    /// Every row (at start-up: what a previous run left).
    pub async fn all(&self) -> Result<Vec<Row>, StoreError> {
        self.db
            .read(|c| {
                let mut q = c
                    .prepare(
                        "SELECT name, token_hash, created_at_ms, task_id, attempt, container
                         FROM pool ORDER BY name",
                    )
                    .map_err(backend)?;
                let rows = q.query_map([], row_of).map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }
}

/// One `SELECT name, token_hash, created_at_ms, task_id, attempt, container` row.
fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let task: Option<String> = r.get(3)?;
    let attempt: Option<u32> = r.get(4)?;
    let container: Option<String> = r.get(5)?;
    Ok(Row {
        name: r.get(0)?,
        token_hash: r.get(1)?,
        created_at_ms: r.get(2)?,
        claim: task
            .zip(attempt)
            .zip(container)
            .map(|((t, a), c)| (t, a, c)),
    })
}
