//! Local mode's durable queue, in the same SQLite file as the tasks, and its consumer loop.
//!
//! It behaves like a Service Bus queue with peek-lock: [`LocalQueue::receive`] leases the next
//! visible message (see "Order" below) and counts a delivery; [`LocalQueue::complete`] deletes it; an abandoned
//! message becomes visible again after a delay; after too many deliveries it is dead-lettered.
//! A handler killed mid-spawn leaves its leases behind; [`LocalQueue::recover`] releases them at
//! the next start, so the message is delivered again and the spawn path's idempotency (one
//! container per name) keeps it to one container.
//!
//! # Order
//!
//! A message carries its task's priority and concurrency key in columns of its own, and a
//! delayed task's message becomes visible at its `not_before_ms`. A receive takes, among the
//! visible messages whose key is under its cap (the keys at their cap are passed in, counted
//! by `spawn::Slots`), the highest priority; within it the key served least recently (the
//! `key_turns` table, so one busy key cannot starve the others); within the key the oldest.

use crate::app::{App, Intake, IntakeError};
use crate::clock::now_ms;
use crate::policy::{self, Verdict};
use crate::spawn::{self, Delivery, Outcome};
use crate::store::sqlite::{backend, Db};
use crate::store::StoreError;
use crate::tasks::Tasks;
use async_trait::async_trait;
use model::shape::QueueCaps;
use model::{Envelope, Task};
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::task::TaskTracker;

/// How long a received message stays invisible to other receivers while it is being spawned.
const LEASE: Duration = Duration::from_secs(60);

/// Adds a message; a message id already queued is kept (so a re-send is harmless).
const SEND: &str =
    "INSERT INTO queue (message_id, body, visible_at_ms, priority, key, enqueued_at_ms, task_id)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(message_id) DO NOTHING";

/// Queues a new task's own message, unless a message about the task is already queued: a task
/// stored because another producer's message arrived (its message id is not the task's id) is
/// served by that message, and a second one would start a second attempt beside the first.
const SEND_NEW: &str =
    "INSERT INTO queue (message_id, body, visible_at_ms, priority, key, enqueued_at_ms, task_id)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?1 WHERE NOT EXISTS (SELECT 1 FROM queue WHERE task_id = ?1)
     ON CONFLICT(message_id) DO NOTHING";

/// The next message to serve (module docs, "Order"): ?1 now, ?2 a JSON array of the keys at
/// their cap. For each key with waiting messages (`key_turns`) and not at its cap: its highest
/// visible priority, then its oldest message of that priority, both read from the
/// `queue_by_key` index; the highest priority wins, then the key served least recently, then
/// the oldest head (keys never served go in arrival order).
const PICK: &str = "
WITH heads AS (
    SELECT t.key, t.served,
           (SELECT q.priority FROM queue q
            WHERE q.leased = 0 AND q.key = t.key AND q.visible_at_ms <= ?1
            ORDER BY q.priority DESC LIMIT 1) AS top
    FROM key_turns t
    WHERE t.waiting > 0 AND t.key NOT IN (SELECT value FROM json_each(?2))
), picks AS (
    SELECT h.key, h.served, h.top,
           (SELECT q.seq FROM queue q
            WHERE q.leased = 0 AND q.key = h.key AND q.priority = h.top AND q.visible_at_ms <= ?1
            ORDER BY q.seq LIMIT 1) AS seq
    FROM heads h WHERE h.top IS NOT NULL
)
SELECT seq, key FROM picks ORDER BY top DESC, served, seq LIMIT 1";

/// Marks key ?1 (`''`: no key) as the one served last.
const TURN: &str = "
UPDATE key_turns SET served = (SELECT MAX(served) FROM key_turns) + 1 WHERE key = ?1";

/// A message taken off the queue, leased to one consumer.
#[derive(Debug, Clone)]
pub struct Leased {
    /// Row id, for complete / abandon.
    pub seq: i64,
    /// The message's concurrency key (its task's), counted against the key's cap while spawned.
    pub key: Option<String>,
    /// What the spawner sees.
    pub delivery: Delivery,
}

/// The queue. Cheap to share behind an `Arc`.
pub struct LocalQueue {
    /// The database shared with the store (the queue's own tables).
    db: Db,
    /// Where tasks are inserted (the store's outbox, [`enqueue_new`], queues their messages).
    tasks: Tasks,
    /// Wakes the consumer when a message is added.
    added: Notify,
    /// Backpressure: the caps on waiting tasks a submission must stay within.
    caps: QueueCaps,
}

fn envelope_of(task: &Task) -> Result<String, StoreError> {
    serde_json::to_string(&Envelope::of(task)).map_err(StoreError::codec)
}

/// The SQLite store's outbox in local mode (`SqliteStore::with_outbox`): queues one message per
/// new task in the transaction that inserts them, so a task is never stored without its message.
pub fn enqueue_new(
    tx: &rusqlite::Transaction<'_>,
    new: &[Task],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut send = tx.prepare_cached(SEND_NEW).map_err(backend)?;
    for t in new {
        // A delayed task's message stays invisible until its time.
        let visible = now_ms.max(t.not_before_ms.unwrap_or(now_ms));
        let body = envelope_of(t)?;
        send.execute(params![
            t.id.as_str(),
            body,
            visible,
            t.priority,
            t.key.as_deref().unwrap_or_default(),
            now_ms
        ])
        .map_err(backend)?;
    }
    Ok(())
}

impl LocalQueue {
    /// A queue on `db`, taking new work through `tasks`, whose store must be the SQLite store
    /// of `db` with [`enqueue_new`] as its outbox.
    pub fn new(db: Db, tasks: Tasks) -> LocalQueue {
        LocalQueue {
            db,
            tasks,
            added: Notify::new(),
            caps: QueueCaps::default(),
        }
    }

    /// This queue, refusing submissions over `caps` ([`crate::store::TaskStore::insert_capped`]).
    pub fn with_caps(self, caps: QueueCaps) -> LocalQueue {
        LocalQueue { caps, ..self }
    }

    /// Releases the leases a previous process held (it is gone; nobody else consumes this file).
    pub async fn recover(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        self.db
            .write(move |tx| {
                tx.execute(
                    "UPDATE queue SET leased = 0, visible_at_ms = ?1 WHERE leased = 1",
                    [now],
                )
                .map(|n| n as u64)
                .map_err(backend)
            })
            .await
    }

    /// Puts a raw message on the queue, as another producer would (plain text or an envelope).
    pub async fn send_raw(&self, message_id: &str, body: &str) -> Result<(), StoreError> {
        self.send_at(message_id.to_string(), body.to_string(), now_ms())
            .await
    }

    /// Adds a message that becomes visible at `at_ms` (or its envelope's `not_before_ms`, if
    /// later), with its envelope's priority and key; a message id already queued is kept.
    async fn send_at(&self, id: String, body: String, at_ms: i64) -> Result<(), StoreError> {
        let env = serde_json::from_str::<Envelope>(&body).ok();
        let (priority, key) = env.as_ref().map_or((0, String::new()), |e| {
            (e.priority, e.key.clone().unwrap_or_default())
        });
        // The task the message is about, as the spawner will see it (`spawn::envelope`).
        let task_id = env
            .as_ref()
            .map_or_else(|| crate::spawn::derived_id(&id), |e| e.id.clone())
            .to_string();
        let visible = at_ms.max(env.and_then(|e| e.not_before_ms).unwrap_or(at_ms));
        let now = now_ms();
        self.db
            .write(move |tx| {
                tx.prepare_cached(SEND)
                    .and_then(|mut s| {
                        s.execute(params![id, body, visible, priority, key, now, task_id])
                    })
                    .map_err(backend)
            })
            .await?;
        self.added.notify_one();
        Ok(())
    }

    /// Leases the next visible message whose key is not in `at_cap` (module docs, "Order"),
    /// counting one delivery and the key's turn.
    pub async fn receive(&self, at_cap: &[String]) -> Result<Option<Leased>, StoreError> {
        let now = now_ms();
        let until = now + LEASE.as_millis() as i64;
        let blocked = serde_json::to_string(at_cap).map_err(StoreError::codec)?;
        self.db
            .write(move |tx| {
                let picked = tx
                    .prepare_cached(PICK)
                    .and_then(|mut s| {
                        s.query_row(params![now, blocked], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                        })
                        .optional()
                    })
                    .map_err(backend)?;
                let Some((seq, key)) = picked else {
                    return Ok(None);
                };
                tx.prepare_cached(TURN)
                    .and_then(|mut s| s.execute([key]))
                    .map_err(backend)?;
                tx.query_row(
                    "UPDATE queue SET deliveries = deliveries + 1, leased = 1, visible_at_ms = ?2
                     WHERE seq = ?1
                     RETURNING seq, message_id, body, deliveries, key, enqueued_at_ms",
                    params![seq, until],
                    |r| {
                        Ok(Leased {
                            seq: r.get(0)?,
                            key: Some(r.get::<_, String>(4)?).filter(|k| !k.is_empty()),
                            delivery: Delivery {
                                message_id: r.get(1)?,
                                body: r.get(2)?,
                                delivery_count: r.get(3)?,
                                enqueued_at_ms: r.get(5)?,
                            },
                        })
                    },
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    /// When the next message whose key is not in `at_cap` becomes visible, if any is waiting.
    pub async fn next_visible_at(&self, at_cap: &[String]) -> Result<Option<i64>, StoreError> {
        let blocked = serde_json::to_string(at_cap).map_err(StoreError::codec)?;
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT MIN(visible_at_ms) FROM queue WHERE leased = 0
                     AND key NOT IN (SELECT value FROM json_each(?1))",
                    [blocked],
                    |r| r.get(0),
                )
                .map_err(backend)
            })
            .await
    }

    /// Deletes a message that was handled.
    pub async fn complete(&self, seq: i64) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                tx.execute("DELETE FROM queue WHERE seq = ?1", [seq])
                    .map(drop)
                    .map_err(backend)
            })
            .await
    }

    /// Makes a message visible again after `delay`. `counted = false` gives back the delivery it
    /// used (the runtime was unavailable: not the message's fault).
    pub async fn abandon(
        &self,
        seq: i64,
        delay: Duration,
        error: &str,
        counted: bool,
    ) -> Result<(), StoreError> {
        let (at, error) = (now_ms() + delay.as_millis() as i64, error.to_string());
        let give_back = i64::from(!counted);
        self.db
            .write(move |tx| {
                tx.execute(
                    "UPDATE queue SET leased = 0, visible_at_ms = ?2, last_error = ?3, deliveries = deliveries - ?4 WHERE seq = ?1",
                    params![seq, at, error, give_back],
                )
                .map(drop)
                .map_err(backend)
            })
            .await?;
        self.added.notify_one();
        Ok(())
    }

    /// Moves a message to the dead-letter table.
    pub async fn dead_letter(&self, seq: i64, reason: &str) -> Result<(), StoreError> {
        let (reason, now) = (reason.to_string(), now_ms());
        self.db
            .write(move |tx| {
                tx.execute(
                    "INSERT OR REPLACE INTO dead_letters (message_id, body, deliveries, reason, at_ms)
                     SELECT message_id, body, deliveries, ?2, ?3 FROM queue WHERE seq = ?1",
                    params![seq, reason, now],
                )
                .map_err(backend)?;
                tx.execute("DELETE FROM queue WHERE seq = ?1", [seq]).map(drop).map_err(backend)
            })
            .await
    }

    /// Messages waiting or leased (for health and tests).
    pub async fn depth(&self) -> Result<u64, StoreError> {
        self.db
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(backend)
            })
            .await
    }

    /// Waits until a message may be visible: something was added, or the earliest delayed
    /// message's time came (at most `cap` from now, so a clock jump cannot strand it). Keys in
    /// `at_cap` are not waited for (a freed slot wakes the consumer instead).
    async fn wait_for_work(&self, cap: Duration, at_cap: &[String]) {
        let now = now_ms();
        let wait = match self.next_visible_at(at_cap).await {
            Ok(Some(at)) => {
                Duration::from_millis((at - now).clamp(0, cap.as_millis() as i64) as u64)
            }
            _ => cap,
        };
        if wait.is_zero() {
            return;
        }
        let _ = tokio::time::timeout(wait, self.added.notified()).await;
    }
}

#[async_trait]
impl Intake for LocalQueue {
    async fn submit(&self, tasks: Vec<Task>) -> Result<Vec<Task>, IntakeError> {
        let stored = self.tasks.insert_capped(&tasks, self.caps).await?;
        self.added.notify_one();
        Ok(stored)
    }

    async fn requeue(&self, task: &Task, at_ms: i64) -> Result<(), IntakeError> {
        let id = format!("{}#{}", task.id, task.attempt + 1);
        Ok(self.send_at(id, envelope_of(task)?, at_ms).await?)
    }
}

/// The consumer: takes a slot first (so a full system leaves messages on the queue), then the
/// next message, then spawns it on its own task. Stops taking messages when `app.shutdown()` fires;
/// spawns in flight finish on `tracker`.
pub async fn consume(app: Arc<App>, queue: Arc<LocalQueue>, tracker: TaskTracker) {
    loop {
        let permit = tokio::select! {
            _ = app.shutdown().cancelled() => return,
            p = app.slots().acquire() => p,
        };
        let leased = tokio::select! {
            _ = app.shutdown().cancelled() => return,
            l = next_message(&app, &queue) => l,
        };
        // Counted against its key's cap from now on, so the next receive sees it.
        if let Some(key) = &leased.key {
            app.slots().reserve(key);
        }
        tracker.spawn(deliver(app.clone(), queue.clone(), leased, permit));
    }
}

async fn next_message(app: &App, queue: &LocalQueue) -> Leased {
    loop {
        let at_cap = app.slots().at_cap(&app.settings().shape.key_caps);
        match queue.receive(&at_cap).await {
            Ok(Some(l)) => return l,
            Ok(None) => {
                tokio::select! {
                    _ = queue.wait_for_work(Duration::from_secs(5), &at_cap) => {}
                    _ = app.slots().freed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Handles one leased message: spawn, then complete, abandon or dead-letter it, as the delivery
/// policy says ([`policy`]).
async fn deliver(
    app: Arc<App>,
    queue: Arc<LocalQueue>,
    leased: Leased,
    permit: OwnedSemaphorePermit,
) {
    let d = &leased.delivery;
    let limits = policy::Limits::of(app.settings());
    let (verdict, error) = match policy::exhausted(d.delivery_count, &limits) {
        Some(v) => (v, None),
        None => match spawn::handle(&app, d).await {
            Ok(outcome) => {
                if let Outcome::Started(id) | Outcome::AlreadyRunning(id) = &outcome {
                    app.slots()
                        .hold_keyed(id.clone(), leased.key.clone(), permit);
                }
                (
                    policy::decide(Ok(&outcome), d.delivery_count, &limits),
                    None,
                )
            }
            Err(e) => (policy::decide(Err(&e), d.delivery_count, &limits), Some(e)),
        },
    };
    if let Some(key) = &leased.key {
        app.slots().unreserve(key);
    }
    let why = error.map(|e| e.to_string()).unwrap_or_default();
    let done = match verdict {
        Verdict::Complete => queue.complete(leased.seq).await,
        Verdict::RetryAfter { delay, counts } => {
            if counts {
                tracing::warn!(message = %d.message_id, error = %why, delivery = d.delivery_count, "spawn failed; will redeliver");
            } else {
                tracing::warn!(message = %d.message_id, error = %why, "runtime unavailable; will retry");
            }
            queue.abandon(leased.seq, delay, &why, counts).await
        }
        Verdict::DeadLetter { reason } => {
            spawn::dead_letter(&app, d, &reason).await;
            queue.dead_letter(leased.seq, &reason).await
        }
    };
    if let Err(e) = done {
        tracing::error!(message = %d.message_id, error = %e, "queue update failed; the message will be redelivered");
    }
}
