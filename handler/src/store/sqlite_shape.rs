//! The SQLite side of task shaping: the queue's priority, key and enqueue-time columns, the
//! round-robin turns of keys, and the counts of waiting tasks behind backpressure.
//!
//! Migration ([`migrate`]) adds what a database made by an older handler lacks: columns with
//! `ALTER TABLE ADD COLUMN` (messages already queued get priority 0, no key, no enqueue time),
//! the `key_turns` table, and the indexes of the receive query and the per-key count.

use super::sqlite_storage::backend;
use super::StoreError;
use model::shape::QueueCaps;
use model::{Task, TaskState};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// Columns of the queue added after it was first made: (name, definition).
const QUEUE_COLUMNS: [(&str, &str); 3] = [
    ("priority", "INTEGER NOT NULL DEFAULT 0"),
    ("key", "TEXT"),
    ("enqueued_at_ms", "INTEGER"),
];

/// Tables and indexes that `CREATE ... IF NOT EXISTS` can add at any time.
///
/// `key_turns`: when each concurrency key (`''` for messages without one) was last served, as
/// a counter that grows by one per receive; the receive query serves the key with the smallest
/// first, so keys take turns within a priority.
const TURNS: &str = "
CREATE TABLE IF NOT EXISTS key_turns (key TEXT PRIMARY KEY, served INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_by_priority ON queue(leased, priority, seq);
";

/// The task's concurrency key, read from its document by SQLite itself (a virtual generated
/// column, as `tasks.finished_at_ms`), indexed with the state so the per-key count of waiting
/// tasks reads only that key's entries.
const TASK_KEY: &str = "
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT
    GENERATED ALWAYS AS (json_extract(doc, '$.key')) VIRTUAL;
CREATE INDEX tasks_by_key ON tasks(concurrency_key, state);
";

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT 1 FROM pragma_table_xinfo(?1) WHERE name = ?2",
        params![table, column],
        |_| Ok(()),
    )
    .optional()
    .map_err(backend)
    .map(|r| r.is_some())
}

/// Adds the shaping columns, tables and indexes a database lacks, atomically.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(backend)?;
    for (name, def) in QUEUE_COLUMNS {
        if !has_column(&tx, "queue", name)? {
            tx.execute_batch(&format!("ALTER TABLE queue ADD COLUMN {name} {def};"))
                .map_err(backend)?;
        }
    }
    tx.execute_batch(TURNS).map_err(backend)?;
    if !has_column(&tx, "tasks", "concurrency_key")? {
        tx.execute_batch(TASK_KEY).map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// Tasks waiting (`Pending`) in all, from the board's counts table (kept by triggers).
fn pending_in(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COALESCE((SELECT n FROM task_counts WHERE state = ?1), 0)")
        .map_err(backend)?
        .query_row([TaskState::Pending.as_str()], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .map_err(backend)
}

/// Tasks waiting (`Pending`) with concurrency key `key` (the `tasks_by_key` index).
fn pending_of_key_in(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COUNT(*) FROM tasks WHERE concurrency_key = ?1 AND state = ?2")
        .map_err(backend)?
        .query_row(params![key, TaskState::Pending.as_str()], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(backend)
}

/// Tasks waiting in all (`key` = None) or of one key.
pub fn pending(conn: &Connection, key: Option<&str>) -> Result<u64, StoreError> {
    match key {
        None => pending_in(conn),
        Some(k) => pending_of_key_in(conn, k),
    }
}

/// Refuses `new` when storing it would put more tasks in waiting than `caps` allow, in all or
/// for one key. Run inside the insert's transaction, so the count and the insert are one step.
/// Ids already stored are not counted as new (a re-sent batch is not refused for itself).
pub fn check_caps(conn: &Connection, new: &[Task], caps: QueueCaps) -> Result<(), StoreError> {
    if caps.max_queued == 0 && caps.max_queued_per_key == 0 {
        return Ok(());
    }
    let mut fresh = Vec::with_capacity(new.len());
    let mut known = conn
        .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")
        .map_err(backend)?;
    for t in new {
        if !known.exists([t.id.as_str()]).map_err(backend)? {
            fresh.push(t);
        }
    }
    if caps.max_queued > 0 {
        let queued = pending_in(conn)?;
        if queued + fresh.len() as u64 > caps.max_queued {
            return Err(StoreError::OverCap {
                cap: "max_queued",
                limit: caps.max_queued,
                queued,
                key: None,
            });
        }
    }
    if caps.max_queued_per_key > 0 {
        let mut per_key: BTreeMap<&str, u64> = BTreeMap::new();
        for k in fresh.iter().filter_map(|t| t.key.as_deref()) {
            *per_key.entry(k).or_default() += 1;
        }
        for (key, n) in per_key {
            let queued = pending_of_key_in(conn, key)?;
            if queued + n > caps.max_queued_per_key {
                return Err(StoreError::OverCap {
                    cap: "max_queued_per_key",
                    limit: caps.max_queued_per_key,
                    queued,
                    key: Some(key.to_string()),
                });
            }
        }
    }
    Ok(())
}
