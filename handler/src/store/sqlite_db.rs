//! The SQLite database under the local store and the local queue: one writer thread with group
//! commit, a pool of readers, and the durability and storage-failure handling.
//!
//! Durability: a write is answered only after its commit reached the disk. WAL mode with
//! `synchronous=NORMAL` keeps the database consistent across a power loss but may drop the last
//! commits; so after each group commit the writer thread fsyncs the WAL itself (one
//! `fdatasync` for every write of the batch) and only then answers. That is what
//! `synchronous=FULL` does at each commit, done once per batch where we can see it (and a test
//! can step in, see [`Db::set_sync_hook`]). The data directory is fsynced once at open, so the
//! files themselves survive too.
//!
//! A write that cannot reach the disk (full, read-only, removed data directory, I/O error) is
//! [`StoreError::Storage`], naming the directory and what is wrong, with the SQLite or I/O error
//! kept as its source for the log; [`Db::ready`] re-checks with a small probe write.
//!
//! One writer connection (SQLite allows one writer at a time anyway) and a small pool of
//! readers; reads run on tokio's blocking pool, writes on the writer thread.

use super::sqlite_storage::{backend, backend_io, diagnose_dir, Place};
use super::StoreError;
use rusqlite::Connection;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    message_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
";

/// Called by the writer thread after each group commit's fsync and before any caller of the
/// batch is answered, with the data directory. Fault injection for tests (see
/// [`Db::set_sync_hook`]); an `Err` is handled like a failed fsync.
pub type SyncHook = Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

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
    /// Where the database lives, to name it in errors and to tell a removed file.
    place: Arc<Place>,
    /// Set when a write failed for a storage reason, cleared by the next batch that reached
    /// the disk: [`TaskStore::ready`] probes only while it is set.
    degraded: Arc<AtomicBool>,
    /// The test hook of [`Db::set_sync_hook`], read by the writer thread once per batch.
    sync_hook: Arc<Mutex<Option<SyncHook>>>,
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    Ok(conn)
}

/// How a batch ended: committed and on disk, or why not.
type Outcome<'a> = Result<(), &'a StoreError>;

/// One caller's write, run by the writer thread inside the batch's transaction. It returns
/// what to do once the batch's commit and fsync are done, or failed: answer the caller.
type Job =
    Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> Box<dyn FnOnce(Outcome<'_>) + Send> + Send>;

/// Most jobs committed together.
const MAX_BATCH: usize = 128;

/// What the writer thread needs to make a commit durable.
struct Durability {
    /// The WAL file, fsynced after each commit (any descriptor of a file flushes the file).
    wal: std::fs::File,
    /// Where, to tell a removed database and name it in errors.
    place: Arc<Place>,
    /// Cleared when a batch reached the disk.
    degraded: Arc<AtomicBool>,
    /// The test hook, if any.
    hook: Arc<Mutex<Option<SyncHook>>>,
}

impl Durability {
    /// Makes the batch just committed durable: the database file is still the one opened, the
    /// WAL is fsynced, then the test hook runs.
    fn sync(&self) -> Result<(), StoreError> {
        if !self.place.unmoved() {
            let gone = std::io::Error::other("the database file was removed or replaced");
            return Err(self.place.io_error(gone));
        }
        self.wal.sync_data().map_err(|e| self.place.io_error(e))?;
        let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(&self.place.dir).map_err(|e| self.place.io_error(e))?;
        }
        self.degraded.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]), runs each in its own
/// savepoint of one transaction, commits once, fsyncs once, then answers each caller. Nobody
/// is answered before the fsync returned. Ends when every `Db` clone (every sender) is gone.
fn writer_loop(
    writer: Arc<Mutex<Connection>>,
    jobs: std::sync::mpsc::Receiver<Job>,
    durability: Durability,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
        // IMMEDIATE takes the write lock up front, so a checkpoint running at the same time makes
        // this wait (busy_timeout) instead of failing the whole batch as "database is locked",
        // which a DEFERRED transaction's lock upgrade does (seen under sustained bulk writes).
        let Ok(tx) = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        else {
            continue; // dropping the jobs answers their callers with an error
        };
        let answers: Vec<_> = batch.into_iter().map(|job| job(&tx)).collect();
        let outcome = tx
            .commit()
            .map_err(|e| durability.place.locate(backend(e)))
            .and_then(|()| durability.sync());
        drop(conn);
        if let Err(e) = &outcome {
            durability.degraded.store(true, Ordering::SeqCst);
            log_failed_commit(e, answers.len());
        }
        for answer in answers {
            answer(outcome.as_ref().map(|_| ()));
        }
    }
}

/// Logs a failed group commit once, with its cause (callers log only what they answer).
fn log_failed_commit(e: &StoreError, writes: usize) {
    let cause = std::error::Error::source(e).map(|c| c.to_string());
    tracing::error!(error = %e, cause, writes, "commit failed; nothing of it was acknowledged");
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
        .unwrap_or_else(|_| Err(StoreError::Unavailable("a write panicked".into())));
    let end = match out {
        Ok(_) => "RELEASE job",
        Err(_) => "ROLLBACK TO job; RELEASE job",
    };
    tx.execute_batch(end).map_err(backend)?;
    out
}

impl Db {
    /// Opens (creating if needed) the database file and its schema, and fsyncs its directory
    /// so the files themselves are durable.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let opened = |e: StoreError| match e {
            StoreError::Storage {
                problem, source, ..
            } => StoreError::Storage {
                dir: dir.clone(),
                problem: diagnose_dir(&dir, problem),
                source,
            },
            e => e,
        };
        let mut writer = open_conn(path).map_err(backend).map_err(opened)?;
        writer
            .execute_batch(SCHEMA)
            .map_err(backend)
            .map_err(opened)?;
        super::sqlite_board::migrate(&mut writer).map_err(opened)?;
        super::sqlite_shape::migrate(&mut writer).map_err(opened)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|_| writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .map_err(backend)?;
        let readers = (0..READERS)
            .map(|_| open_conn(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let writer = Arc::new(Mutex::new(writer));
        let wal_path = path.with_file_name(format!(
            "{}-wal",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let io = |e: std::io::Error| opened(backend_io(e));
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .map_err(io)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        let meta = std::fs::metadata(path).map_err(io)?;
        let place = Arc::new(Place {
            dir: dir.clone(),
            file: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        });
        checkpointer(
            open_conn(path).map_err(backend)?,
            wal_path,
            Arc::downgrade(&writer),
        );
        let degraded = Arc::new(AtomicBool::new(false));
        let sync_hook = Arc::new(Mutex::new(None));
        let durability = Durability {
            wal,
            place: place.clone(),
            degraded: degraded.clone(),
            hook: sync_hook.clone(),
        };
        let (jobs, queued) = std::sync::mpsc::channel();
        let w = writer.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(w, queued, durability))
            .map_err(backend_io)?;
        Ok(Db {
            writer,
            jobs,
            readers: Arc::new(Mutex::new(readers)),
            place,
            degraded,
            sync_hook,
        })
    }

    /// Runs `f` as one atomic write: all of it is committed if it returns Ok, none of it if it
    /// returns an error (or panics). Answers once the data is committed *and on disk* (the
    /// batch's fsync returned).
    ///
    /// Group commit: writes waiting at the same moment share one transaction on the writer
    /// thread, each in its own savepoint, so one commit (one set of WAL pages) and one fsync
    /// serve many callers. One transaction per call wrote ~8 pages (32 KB) of WAL per enqueued
    /// task and capped `POST /api/work` near 4,000/s; see BENCHMARKS.md.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let out = in_savepoint(tx, f);
            Box::new(move |outcome: Outcome<'_>| {
                let out = match (out, outcome) {
                    (Ok(_), Err(e)) => Err(e.share()),
                    (out, _) => out,
                };
                let _ = answer.send(out);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the writer thread is gone".into()))?;
        let out = answered.await.map_err(|_| {
            StoreError::Unavailable("the write was not run (its transaction did not start)".into())
        })?;
        out.map_err(|e| {
            let e = self.place.locate(e);
            if matches!(e, StoreError::Storage { .. }) {
                self.degraded.store(true, Ordering::SeqCst);
            }
            e
        })
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
        .map_err(|e| StoreError::Unavailable(format!("a read did not finish: {e}")))?
        .map_err(|e| self.place.locate(e))
    }

    /// Whether writes reach the disk now. Cheap while the last batch did (one `stat`, to see a
    /// removed database file); after a storage failure it makes one small probe write (through
    /// the writer, so fsync included), which clears the failure once the cause is gone.
    pub async fn ready(&self) -> Result<(), StoreError> {
        if !self.degraded.load(Ordering::SeqCst) && self.place.unmoved() {
            return Ok(());
        }
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO probe (id, at_ms) VALUES (1, ?1)",
                [crate::clock::now_ms()],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Installs (or, with `None`, removes) a hook the writer thread calls after each group
    /// commit's fsync and before answering anyone of that batch: fault injection for tests
    /// (fail it, delay it, or copy the files as a power cut at that instant would leave them).
    pub fn set_sync_hook(&self, hook: Option<SyncHook>) {
        *self.sync_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// The data directory (where the database file is).
    pub fn dir(&self) -> &Path {
        &self.place.dir
    }
}
