//! The SQLite store's search ([`model::Search`]): the indexes that keep it fast at 100,000
//! tasks and the SQL conditions a search adds to a page.
//!
//! # Indexes (all kept by SQLite itself, in the transaction of the write that changes a task)
//!
//! - `task_text`: an FTS5 table with the trigram tokenizer over the work, keyed by the task's
//!   `seq`, filled and emptied by triggers on `tasks`. Contentless (`content=''`,
//!   `contentless_delete=1`): it holds only the index, not a second copy of the work. A term of 3
//!   or more characters is a trigram phrase query, which matches exactly the works that hold it
//!   as a substring, case-folded (FTS5 docs, "The Trigram Tokenizer",
//!   <https://sqlite.org/fts5.html#the_trigram_tokenizer>). A shorter term has no trigram: it is
//!   checked with `instr` on the candidates the other parts left (a scan if it is alone; ASCII
//!   case-folding only, SQLite's `lower`).
//! - `created_at_ms` and `task_key`: virtual generated columns read from the document, indexed.
//! - `task_labels (name, value, seq)`: one row per label, filled and emptied by triggers.
//!
//! [`migrate`] creates all of it on a database that lacks it and indexes the tasks already stored.

use super::sqlite::backend;
use super::StoreError;
use model::Search;
use rusqlite::OptionalExtension;

pub use rusqlite::types::Value;

/// `args` as statement parameters (for callers outside the store, such as the benchmark).
pub fn params(args: &[Value]) -> rusqlite::ParamsFromIter<std::slice::Iter<'_, Value>> {
    rusqlite::params_from_iter(args.iter())
}

/// The search indexes and the triggers that keep them (see the module docs).
const SEARCH: &str = "
CREATE VIRTUAL TABLE task_text USING fts5(work, tokenize = 'trigram', content = '', contentless_delete = 1);
CREATE TRIGGER task_text_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_text (rowid, work) VALUES (new.seq, json_extract(new.doc, '$.work'));
END;
CREATE TRIGGER task_text_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM task_text WHERE rowid = old.seq;
END;
ALTER TABLE tasks ADD COLUMN created_at_ms INTEGER
    GENERATED ALWAYS AS (json_extract(doc, '$.created_at_ms')) VIRTUAL;
CREATE INDEX tasks_by_created ON tasks(created_at_ms);
ALTER TABLE tasks ADD COLUMN task_key TEXT
    GENERATED ALWAYS AS (json_extract(doc, '$.key')) VIRTUAL;
CREATE INDEX tasks_by_key ON tasks(task_key, seq);
CREATE TABLE task_labels (
    name TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (name, value, seq)
) WITHOUT ROWID;
CREATE INDEX task_labels_by_seq ON task_labels(seq);
CREATE TRIGGER task_labels_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_labels (name, value, seq)
        SELECT key, value, new.seq FROM json_each(new.doc, '$.labels');
END;
CREATE TRIGGER task_labels_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM task_labels WHERE seq = old.seq;
END;
INSERT INTO task_text (rowid, work) SELECT seq, json_extract(doc, '$.work') FROM tasks;
INSERT INTO task_labels (name, value, seq)
    SELECT j.key, j.value, t.seq FROM tasks t, json_each(t.doc, '$.labels') j;
";

/// Adds the search indexes to a database that lacks them (new, or made by an older handler),
/// in the caller's transaction.
pub fn migrate(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_text'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(backend)?
        .is_some();
    if !exists {
        tx.execute_batch(SEARCH).map_err(backend)?;
    }
    Ok(())
}

/// Shortest term the trigram index can find (one trigram).
const TRIGRAM: usize = 3;

/// `AND ...` conditions on `tasks` for `s`, and their arguments in order. Empty for an empty
/// search.
pub fn conditions(s: &Search) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut args: Vec<Value> = Vec::new();
    let (long, short): (Vec<&String>, Vec<&String>) =
        s.text.iter().partition(|t| t.chars().count() >= TRIGRAM);
    // The text and label parts are sets of `seq`, intersected in ONE `seq IN (...)`: two
    // separate `seq IN` lists made SQLite probe their cross product (text x label x state:
    // billions of probes at 100,000 tasks, seen in the search benchmark).
    let mut sets: Vec<&str> = Vec::new();
    if !long.is_empty() {
        // Each term a phrase (quotes doubled inside), all of them required.
        let phrase = |t: &&String| format!("\"{}\"", t.replace('"', "\"\""));
        let query = long.iter().map(phrase).collect::<Vec<_>>().join(" AND ");
        sets.push("SELECT rowid FROM task_text WHERE task_text MATCH ?");
        args.push(query.into());
    }
    for (name, value) in &s.labels {
        args.push(name.clone().into());
        match value {
            Some(v) => {
                sets.push("SELECT seq FROM task_labels WHERE name = ? AND value = ?");
                args.push(v.clone().into());
            }
            None => sets.push("SELECT seq FROM task_labels WHERE name = ?"),
        }
    }
    if !sets.is_empty() {
        sql.push_str(&format!(" AND seq IN ({})", sets.join(" INTERSECT ")));
    }
    for t in short {
        sql.push_str(" AND instr(lower(json_extract(doc, '$.work')), ?) > 0");
        args.push(t.clone().into());
    }
    if let Some(p) = &s.id_prefix {
        // Ids are [a-z0-9-], all below U+007F: the prefix's range on the unique index.
        sql.push_str(" AND id >= ? AND id < ?");
        args.push(p.clone().into());
        args.push(format!("{p}\u{7f}").into());
    }
    if let Some(k) = &s.key {
        sql.push_str(" AND task_key = ?");
        args.push(k.clone().into());
    }
    if !s.states.is_empty() {
        let marks = vec!["?"; s.states.len()].join(",");
        sql.push_str(&format!(" AND state IN ({marks})"));
        args.extend(
            s.states
                .iter()
                .map(|st| Value::from(st.as_str().to_string())),
        );
    }
    if let Some(from) = s.from_ms {
        sql.push_str(" AND created_at_ms >= ?");
        args.push(from.into());
    }
    if let Some(to) = s.to_ms {
        sql.push_str(" AND created_at_ms < ?");
        args.push(to.into());
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                                 state TEXT NOT NULL, doc TEXT NOT NULL, token_hash TEXT);
             CREATE INDEX tasks_by_state ON tasks(state, seq);
             INSERT INTO tasks (id, state, doc) VALUES
               ('old-1', 'Done', '{\"work\":\"Render frame 1\",\"created_at_ms\":5,\"labels\":{\"env\":\"prod\"}}');",
        )
        .unwrap();
        super::super::sqlite_board::migrate(&mut conn).unwrap();
        super::super::sqlite_board::migrate(&mut conn).unwrap(); // once only
        conn
    }

    fn plan(conn: &Connection, s: &Search) -> String {
        let (cond, args) = conditions(s);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT seq, doc FROM tasks WHERE seq < 9999 {cond} ORDER BY seq DESC LIMIT 100"
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.join("\n")
    }

    fn ids(conn: &Connection, s: &Search) -> Vec<String> {
        let (cond, args) = conditions(s);
        let sql = format!("SELECT id FROM tasks WHERE 1 {cond} ORDER BY seq");
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn q(text: &str) -> Search {
        Search::parse(text, None, None).unwrap()
    }

    /// Each qualifier is read through its index, never by walking every task.
    #[test]
    fn every_qualifier_is_an_index_search() {
        let conn = db();
        for (query, index) in [
            ("frame", "task_text"),
            ("label:env=prod", "task_labels"),
            ("label:env", "task_labels"),
            ("id:old", "sqlite_autoindex_tasks_1"),
        ] {
            let p = plan(&conn, &q(query));
            assert!(p.contains(index), "{query}: {p}");
            assert!(!p.contains("SCAN tasks"), "{query}: {p}");
        }
        let key = Search {
            key: Some("k".into()),
            ..Search::default()
        };
        let p = plan(&conn, &key);
        assert!(
            p.contains("tasks_by_key") && !p.contains("SCAN tasks"),
            "{p}"
        );
        // Text and labels together are one list of `seq`, never a cross product of two.
        let p = plan(&conn, &q("frame label:env=prod label:gpu state:failed"));
        assert_eq!(p.matches("LIST SUBQUERY").count(), 1, "{p}");
        let range = Search::parse("", Some("1"), Some("2")).unwrap();
        let p = plan(&conn, &range);
        assert!(
            p.contains("tasks_by_created") && !p.contains("SCAN tasks"),
            "{p}"
        );
    }

    /// Tasks stored before the migration are indexed; new ones and deleted ones through the
    /// triggers; a term matches as a case-insensitive substring, a short one too.
    #[test]
    fn the_indexes_follow_every_write() {
        let conn = db();
        conn.execute_batch(
            "INSERT INTO tasks (id, state, doc) VALUES
               ('new-2', 'Pending', '{\"work\":\"encode VIDEO 2\",\"created_at_ms\":10,\"key\":\"t1\",\"labels\":{\"env\":\"dev\"}}');",
        )
        .unwrap();
        assert_eq!(ids(&conn, &q("FRAME")), ["old-1"]);
        assert_eq!(ids(&conn, &q("deo")), ["new-2"]);
        assert_eq!(ids(&conn, &q("2")), ["new-2"]);
        assert_eq!(ids(&conn, &q("ra zz")), Vec::<String>::new());
        assert_eq!(ids(&conn, &q("\"der fr\"")), ["old-1"]);
        assert_eq!(ids(&conn, &q("label:env")), ["old-1", "new-2"]);
        assert_eq!(ids(&conn, &q("label:env=dev")), ["new-2"]);
        assert_eq!(ids(&conn, &q("id:new")), ["new-2"]);
        assert_eq!(ids(&conn, &q("state:finished")), ["old-1"]);
        let key = Search {
            key: Some("t1".into()),
            ..Search::default()
        };
        assert_eq!(ids(&conn, &key), ["new-2"]);
        assert_eq!(
            ids(&conn, &Search::parse("", Some("6"), None).unwrap()),
            ["new-2"]
        );
        conn.execute_batch("DELETE FROM tasks WHERE id = 'new-2'")
            .unwrap();
        assert!(ids(&conn, &q("video")).is_empty());
        assert!(ids(&conn, &q("label:env=dev")).is_empty());
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM task_labels", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
    }
}
