//! How work reaches Service Bus in Azure: through the invoking function's output binding.
//!
//! A custom handler cannot send to Service Bus itself without a connection string or an SDK;
//! the Functions host sends whatever the handler puts in `Outputs.<binding>`. So the
//! [`ServiceBusIntake`] writes the store and collects the envelopes in a per-invocation outbox
//! (a tokio task-local set by [`collect`] around the invocation), and the adapter puts them in
//! the response. Outside an invocation there is no outbox and queueing fails loudly.
//!
//! Service Bus output bindings cannot schedule a message for later, so a retry whose backoff is
//! not over yet is not sent now: the `ReconcileTimer` sends it once it is due ([`due_retries`]).
//!
//! # Nothing lost between the store write and Service Bus
//!
//! `POST /api/work` writes the store, then the host sends `Outputs.message`. If the host fails
//! to send (it crashed, Service Bus refused), the tasks are stored `Pending` with no message.
//! The `ReconcileTimer` closes that gap ([`Resender`]): a task still `Pending` at attempt 0 with
//! no retry scheduled, older than a grace period, gets its envelope sent again through the
//! timer's own output binding. That is safe because the spawn path is idempotent per task id: a
//! second message for a task whose container exists finds it and only completes. Local mode
//! needs none of this: its intake writes the task and its queue message in one SQLite
//! transaction.

use crate::app::{Intake, IntakeError};
use crate::clock::now_ms;
use crate::tasks::Tasks;
use async_trait::async_trait;
use model::TaskId;
use model::{Envelope, Task, TaskState};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

tokio::task_local! {
    /// The envelopes queued during the current invocation. Only the invocation's own task
    /// touches it (task-local), so a `RefCell` is enough.
    static OUTBOX: RefCell<Vec<String>>;
}

/// Runs `fut` with a fresh outbox and returns its output with the messages it queued.
pub async fn collect<F: Future>(fut: F) -> (F::Output, Vec<String>) {
    OUTBOX
        .scope(RefCell::new(Vec::new()), async {
            let out = fut.await;
            let queued = OUTBOX.with(|o| o.take());
            (out, queued)
        })
        .await
}

/// Queues `task`'s envelope in the current invocation's outbox (once: a retry queued by the
/// sweep and found due by the timer in the same invocation is sent once).
fn push(task: &Task) -> Result<(), IntakeError> {
    let json = serde_json::to_string(&Envelope::of(task))
        .map_err(|e| IntakeError::Queue(e.to_string()))?;
    OUTBOX
        .try_with(|o| {
            let mut o = o.borrow_mut();
            if !o.contains(&json) {
                o.push(json);
            }
        })
        .map_err(|_| IntakeError::Queue("no Service Bus output binding in this invocation".into()))
}

/// The Azure [`Intake`]: store first, then the invocation's Service Bus output binding.
pub struct ServiceBusIntake {
    /// The task service (store + events).
    pub tasks: Tasks,
}

#[async_trait]
impl Intake for ServiceBusIntake {
    async fn submit(&self, tasks: Vec<Task>) -> Result<Vec<Task>, IntakeError> {
        let stored = self.tasks.insert(&tasks).await?;
        for t in stored.iter().filter(|t| t.state == TaskState::Pending) {
            push(t)?;
        }
        Ok(stored)
    }

    async fn requeue(&self, task: &Task, at_ms: i64) -> Result<(), IntakeError> {
        if at_ms <= now_ms() {
            push(task)?;
        }
        Ok(())
    }
}

/// Tasks waiting for a retry whose backoff is over: the timer sends their envelopes. A retry
/// sent twice is harmless (the spawn path finds the attempt already started).
pub fn due_retries(unfinished: &[Task], now_ms: i64) -> Vec<&Task> {
    unfinished
        .iter()
        .filter(|t| t.state == TaskState::Pending && t.attempt >= 1)
        .filter(|t| t.retry_at_ms.unwrap_or(0) <= now_ms)
        .collect()
}

/// Finds first deliveries that may have been lost (module docs) and remembers when it re-sent
/// each, so that a task that is only waiting behind a long queue is sent again at most once per
/// grace period, not on every timer tick.
pub struct Resender {
    /// How long a new task may stay `Pending` before it is re-sent; `None`: never.
    grace_ms: Option<i64>,
    /// When this process last re-sent each still-pending task. Only the timer touches it (the
    /// Functions host runs one timer invocation at a time); the lock is for `Sync`. Lost on a
    /// restart, which costs at most one extra message per task.
    sent: Mutex<HashMap<TaskId, i64>>,
}

impl Resender {
    /// A resender with `grace` (zero turns it off).
    pub fn new(grace: Duration) -> Resender {
        let ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        Resender {
            grace_ms: (ms > 0).then_some(ms),
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// The tasks among `unfinished` to send again now: `Pending`, attempt 0, no `retry_at_ms`,
    /// created at least the grace period ago, and not re-sent within the grace period. They are
    /// recorded as sent at `now_ms`.
    pub fn stalled<'a>(&self, unfinished: &'a [Task], now_ms: i64) -> Vec<&'a Task> {
        let Some(grace) = self.grace_ms else {
            return Vec::new();
        };
        let waiting: Vec<&Task> = unfinished
            .iter()
            .filter(|t| t.state == TaskState::Pending && t.attempt == 0)
            .filter(|t| t.retry_at_ms.is_none())
            .collect();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let ids: HashSet<&TaskId> = waiting.iter().map(|t| &t.id).collect();
        sent.retain(|id, _| ids.contains(id));
        let due: Vec<&Task> = waiting
            .into_iter()
            .filter(|t| now_ms - t.created_at_ms >= grace)
            .filter(|t| sent.get(&t.id).is_none_or(|at| now_ms - at >= grace))
            .collect();
        for t in &due {
            sent.insert(t.id.clone(), now_ms);
        }
        due
    }
}

/// Sends the envelopes of `tasks` through the current invocation's outbox.
pub fn send(tasks: &[&Task]) -> Result<(), IntakeError> {
    tasks.iter().try_for_each(|t| push(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Resources, TaskId};

    fn task(id: &str) -> Task {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 256,
        };
        Task::new(TaskId::parse(id).unwrap(), "w".into(), r, 3, 60, 1)
    }

    #[tokio::test]
    async fn the_outbox_exists_only_inside_an_invocation() {
        let t = task("a");
        assert!(push(&t).is_err());
        let (r, queued) = collect(async { push(&t) }).await;
        assert!(r.is_ok());
        let env: Envelope = serde_json::from_str(&queued[0]).unwrap();
        assert_eq!((env.id.as_str(), env.work.as_str()), ("a", "w"));
    }

    #[test]
    fn only_old_first_deliveries_are_resent_and_once_per_grace_period() {
        let mut old = task("old");
        old.created_at_ms = 0;
        let mut fresh = task("fresh");
        fresh.created_at_ms = 100_000;
        let mut scheduled = task("scheduled");
        scheduled.created_at_ms = 0;
        scheduled.retry_at_ms = Some(500_000);
        let mut retried = task("retried");
        retried.created_at_ms = 0;
        retried.attempt = 1;
        let all = [old, fresh, scheduled, retried];
        let r = Resender::new(Duration::from_secs(60));
        let ids = |v: Vec<&Task>| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(r.stalled(&all, 120_000)), vec!["old"]);
        assert!(r.stalled(&all, 150_000).is_empty(), "sent within the grace");
        assert_eq!(ids(r.stalled(&all, 180_000)), vec!["old", "fresh"]);
        assert!(Resender::new(Duration::ZERO)
            .stalled(&all, i64::MAX)
            .is_empty());
    }

    #[test]
    fn only_due_retries_are_resent() {
        let fresh = task("fresh");
        let mut due = task("due");
        due.attempt = 1;
        due.retry_at_ms = Some(100);
        let mut later = task("later");
        later.attempt = 1;
        later.retry_at_ms = Some(10_000);
        let all = [fresh, due, later];
        let ids: Vec<&str> = due_retries(&all, 5_000)
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, vec!["due"]);
    }
}
