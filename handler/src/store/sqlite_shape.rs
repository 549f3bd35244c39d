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

/// Columns of the queue added after it was first made: (name, definition). `key` is `''` for
/// a message without a concurrency key (so one index serves both).
/// `task_id` is the id of the task the message is about (its envelope's, or the one derived
/// from a plain message's id), so a task that arrived by another producer's message is not
/// queued a second time when it is stored (`queue::enqueue_new`).
const QUEUE_COLUMNS: [(&str, &str); 4] = [
    ("priority", "INTEGER NOT NULL DEFAULT 0"),
    ("key", "TEXT NOT NULL DEFAULT ''"),
    ("enqueued_at_ms", "INTEGER"),
    ("task_id", "TEXT"),
];

/// `key_turns`: one row per concurrency key with messages (`''`: those without a key):
/// `waiting`, how many messages of the key are queued (kept by triggers on `queue`, in the
/// same transaction), and `served`, when it was last served, as a counter that grows by one per
/// receive. A receive looks only at keys with waiting messages, in `served` order, and takes
/// each one's head from the `queue_by_key` index: its cost follows the number of keys, not of
/// messages. A key's row goes when its last message does (so the table holds the keys with
/// work, and a key that comes back takes its turn first). Made once, filled from the messages
/// already queued.
const TURNS: &str = "
CREATE TABLE key_turns (key TEXT PRIMARY KEY, served INTEGER NOT NULL, waiting INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO key_turns (key, served, waiting) SELECT key, 0, COUNT(*) FROM queue GROUP BY key;
CREATE INDEX key_turns_by_turn ON key_turns(served) WHERE waiting > 0;
CREATE TRIGGER key_turns_in AFTER INSERT ON queue BEGIN
    INSERT OR IGNORE INTO key_turns (key, served, waiting) VALUES (new.key, 0, 0);
    UPDATE key_turns SET waiting = waiting + 1 WHERE key = new.key;
END;
CREATE TRIGGER key_turns_out AFTER DELETE ON queue BEGIN
    UPDATE key_turns SET waiting = waiting - 1 WHERE key = old.key;
    DELETE FROM key_turns WHERE key = old.key AND waiting <= 0;
END;
CREATE INDEX queue_by_key ON queue(leased, key, priority, seq);
";

/// The task's concurrency key (the virtual generated column `tasks.task_key` that
/// `sqlite_search::migrate` adds, which runs first) indexed with the state, so the per-key count
/// of waiting tasks reads only that key's waiting entries.
const TASK_KEY: &str = "CREATE INDEX IF NOT EXISTS tasks_by_key_state ON tasks(task_key, state);";

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
    let has_turns = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_turns'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if !has_turns {
        tx.execute_batch(TURNS).map_err(backend)?;
    }
    tx.execute_batch(TASK_KEY).map_err(backend)?;
    tx.execute_batch("CREATE INDEX IF NOT EXISTS queue_by_task ON queue(task_id);")
        .map_err(backend)?;
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

/// Tasks waiting (`Pending`) with concurrency key `key` (the `tasks_by_key_state` index).
fn pending_of_key_in(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COUNT(*) FROM tasks WHERE task_key = ?1 AND state = ?2")
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
    super::check_caps(caps, &fresh, |key| match key {
        None => pending_in(conn),
        Some(key) => pending_of_key_in(conn, key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database as a handler before these columns made it: the queue and tasks tables only.
    fn old_database() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 state TEXT NOT NULL, doc TEXT NOT NULL, token_hash TEXT);
             CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,
                 body TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 0,
                 visible_at_ms INTEGER NOT NULL, leased INTEGER NOT NULL DEFAULT 0, last_error TEXT);
             INSERT INTO queue (message_id, body, visible_at_ms) VALUES ('a', 'x', 1), ('b', 'y', 2);
             INSERT INTO tasks (id, state, doc) VALUES ('t1', 'Pending', '{\"key\": \"k\"}');",
        )
        .unwrap();
        c
    }

    #[test]
    fn an_old_database_is_migrated_with_its_queued_messages_counted() {
        let mut c = old_database();
        // The order `Db::open` runs them in: the board's (and search's) columns first.
        super::super::sqlite_board::migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap(); // idempotent
        for col in ["priority", "key", "enqueued_at_ms"] {
            assert!(has_column(&c, "queue", col).unwrap(), "{col}");
        }
        let (p, k): (i64, String) = c
            .query_row(
                "SELECT priority, key FROM queue WHERE message_id = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((p, k.as_str()), (0, ""), "old messages: priority 0, no key");
        let waiting: i64 = c
            .query_row("SELECT waiting FROM key_turns WHERE key = ''", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(waiting, 2, "the queued messages are counted");
        // The triggers keep the count, and a key's row goes with its last message.
        c.execute_batch(
            "INSERT INTO queue (message_id, body, visible_at_ms, key) VALUES ('c', 'z', 3, 'k');
             DELETE FROM queue WHERE message_id IN ('a', 'c');",
        )
        .unwrap();
        let rows: Vec<(String, i64)> = c
            .prepare("SELECT key, waiting FROM key_turns ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(String::new(), 1)]);
        // The task's key is read from its document, for the per-key count.
        assert_eq!(pending_of_key_in(&c, "k").unwrap(), 1);
    }
}
