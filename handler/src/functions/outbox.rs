//! How work reaches Service Bus in Azure: through the invoking function's output binding.
//!
//! A custom handler cannot send to Service Bus itself without a connection string or an SDK;
//! the Functions host sends whatever the handler puts in `Outputs.<binding>`. So each
//! invocation makes an [`Outbox`] and gives it to its own [`ServiceBusIntake`] (the app the
//! invocation runs with, `App::with_intake`); the intake writes the store and puts the
//! envelopes in that outbox, and the adapter puts them in the invocation's answer. The app
//! functions mode starts with has no outbox at all ([`Unbound`]): work is queued only inside an
//! invocation, which is the only place the host would send it from.
//!
//! A custom handler's Service Bus output binding cannot schedule a message for later: the host
//! hands each item of `Outputs.<binding>` to the extension as a string (or a JSON object), and
//! the Service Bus extension makes a message of it with the item as the body and nothing else
//! (azure-sdk-for-net `sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Bindings/StringToMessageConverter.cs`
//! and `UserTypeToMessageConverter.cs`). The one converter that reads message properties such
//! as `ScheduledEnqueueTime` from the item (`ServiceBusMessageConverter`) is used only when the
//! binding's `ServiceBusAttribute.IncludeMetadata` is set, and that property is `internal`
//! (`src/ServiceBusAttribute.cs`: "Internal properties cannot be set on attributes outside of
//! the constructor"); the host builds the attribute from function.json through public
//! constructors and public settable properties only (azure-webjobs-sdk
//! `src/Microsoft.Azure.WebJobs.Host/Bindings/AttributeCloner.cs`, `CreateDirect`), so no
//! function.json setting reaches it. The feature request for out-of-process languages
//! (Azure/azure-sdk-for-net#21884) was closed in 2024-11 as not actionable ("injecting your own
//! `ServiceBusSender` is the recommended approach", which needs the SDK and a connection this
//! handler does not hold).
//!
//! So nothing is sent before it may start. A retry whose backoff is not over, a task whose
//! `not_before` is in the future (the intake leaves it out of the outbox), and a task held
//! `Pending` because there is no room (the global cap, its key's cap, higher priorities
//! waiting, or the container runtime unavailable: `functions::admit`) are sent by the
//! `ReconcileTimer` when they are due and there is room ([`Resender`]): highest priority first,
//! keys taking turns ([`super::turns`]), never more than the room under the global cap and each
//! key's cap.
//!
//! # Nothing lost between the store write and Service Bus
//!
//! `POST /api/work` writes the store, then the host sends `Outputs.message`. If the host fails
//! to send (it crashed, Service Bus refused), the tasks are stored `Pending` with no message.
//! The `ReconcileTimer` closes that gap ([`Resender`]): a task still `Pending` with no retry
//! scheduled, older than a grace period, gets its envelope sent again through the timer's own
//! output binding. That is safe because the spawn path is idempotent per task id: a
//! second message for a task whose container exists finds it and only completes. Local mode
//! needs none of this: its intake writes the task and its queue message in one SQLite
//! transaction.

use super::turns::Turns;
use crate::app::{Intake, IntakeError};
use crate::clock::now_ms;
use crate::tasks::Tasks;
use async_trait::async_trait;
use model::shape::QueueCaps;
use model::TaskId;
use model::{Envelope, Task, TaskState};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The envelopes one invocation queued, for its Service Bus output binding. Cheap to clone: the
/// invocation keeps one handle and gives another to its intake.
#[derive(Clone, Default)]
pub struct Outbox {
    /// Envelopes (JSON) in the order queued, each once. Touched by the invocation's own calls
    /// only; the lock is for `Send`.
    queued: Arc<Mutex<Vec<String>>>,
}

impl Outbox {
    /// Queues `task`'s envelope (once: a retry queued by the sweep and found due by the timer in
    /// the same invocation is sent once).
    pub fn push(&self, task: &Task) -> Result<(), IntakeError> {
        let json = serde_json::to_string(&Envelope::of(task))
            .map_err(|e| IntakeError::Queue(e.to_string()))?;
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        if !q.contains(&json) {
            q.push(json);
        }
        Ok(())
    }

    /// Queues the envelopes of `tasks`.
    pub fn send(&self, tasks: &[&Task]) -> Result<(), IntakeError> {
        tasks.iter().try_for_each(|t| self.push(t))
    }

    /// The envelopes queued so far, emptying the outbox.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The Azure [`Intake`] of one invocation: store first (refusing a batch over the caps on
/// waiting tasks: the API's 429), then its [`Outbox`].
pub struct ServiceBusIntake {
    /// The task service (store + events).
    tasks: Tasks,
    /// Where this invocation's envelopes go.
    outbox: Outbox,
    /// The caps on waiting tasks (`--max-queued`, `--max-queued-per-key`). Checked before the
    /// insert, not with it: a Cosmos store has no transaction across documents, so concurrent
    /// batches may overshoot a cap by one batch (`TaskStore::insert_capped`).
    caps: QueueCaps,
}

impl ServiceBusIntake {
    /// The intake of the invocation that owns `outbox`, refusing batches over `caps`.
    pub fn new(tasks: Tasks, outbox: Outbox, caps: QueueCaps) -> ServiceBusIntake {
        ServiceBusIntake {
            tasks,
            outbox,
            caps,
        }
    }
}

#[async_trait]
impl Intake for ServiceBusIntake {
    /// Sends the new tasks that are due now; a task with a later `not_before` is sent by the
    /// timer when it is due (module docs).
    async fn submit(&self, tasks: Vec<Task>) -> Result<Vec<Task>, IntakeError> {
        let stored = self.tasks.insert_capped(&tasks, self.caps).await?;
        let now = now_ms();
        let due = |t: &&Task| t.not_before_ms.is_none_or(|at| at <= now);
        for t in stored
            .iter()
            .filter(|t| t.state == TaskState::Pending)
            .filter(due)
        {
            self.outbox.push(t)?;
        }
        Ok(stored)
    }

    async fn requeue(&self, task: &Task, at_ms: i64) -> Result<(), IntakeError> {
        let at = task.not_before_ms.map_or(at_ms, |nb| nb.max(at_ms));
        if at <= now_ms() {
            self.outbox.push(task)?;
        }
        Ok(())
    }
}

/// The intake of functions mode's app outside any invocation: there is no output binding to
/// queue through, so it refuses, saying so. Every invocation runs with its own
/// [`ServiceBusIntake`] instead (`functions::invocation`).
pub struct Unbound;

#[async_trait]
impl Intake for Unbound {
    async fn submit(&self, _: Vec<Task>) -> Result<Vec<Task>, IntakeError> {
        Err(unbound())
    }

    async fn requeue(&self, _: &Task, _: i64) -> Result<(), IntakeError> {
        Err(unbound())
    }
}

fn unbound() -> IntakeError {
    IntakeError::Queue(
        "functions mode queues work only through an invocation's Service Bus output binding".into(),
    )
}

/// Decides which `Pending` tasks the `ReconcileTimer` sends, and remembers what it sent, so each
/// is sent once, not on every tick (a backlog would otherwise flood the queue):
///
/// - a task with `retry_at_ms` (a retry after its backoff, a task held for room, or a spawn
///   deferred by the cap or an unavailable runtime) is due at that time, and never before its
///   `not_before_ms`;
/// - a task with a `not_before_ms` later than its creation (never sent: the intake left it
///   out) is due at that time;
/// - a task without (a first delivery) is due once it is older than the grace period: its
///   message may have been lost between the store write and Service Bus (module docs);
/// - a task sent by this resender is not sent again until the grace period has passed since,
///   and only if it is still `Pending` then (its message was deferred by the cap, or lost),
///   unless it was rescheduled after the send (a new `retry_at_ms`: a deferred spawn);
/// - at most `room` tasks per tick (the free capacity under the global cap), and of each key at
///   most the room under its cap, in the order [`Turns`] makes (priority, then keys in turn,
///   then oldest due first).
pub struct Resender {
    /// The grace period; `None` turns off re-sending first deliveries and sending anything twice.
    grace_ms: Option<i64>,
    /// When this process last sent each still-pending task. Only the timer touches it (the
    /// Functions host runs one timer invocation at a time, on one instance: timer triggers are
    /// singletons); the lock is for `Sync`. Lost on a restart or when the timer moves to
    /// another instance, which costs at most one extra message per task (the spawn path is
    /// idempotent per task id).
    sent: Mutex<HashMap<TaskId, i64>>,
    /// The keys' turns, kept across ticks (only the timer touches it; the lock is for `Sync`).
    turns: Mutex<Turns>,
}

impl Resender {
    /// A resender with `grace` (zero turns re-sending off: due retries are still sent, once).
    pub fn new(grace: Duration) -> Resender {
        let ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        Resender {
            grace_ms: (ms > 0).then_some(ms),
            sent: Mutex::new(HashMap::new()),
            turns: Mutex::new(Turns::default()),
        }
    }

    /// When `t` is due to be sent, if it is waiting at all.
    fn due_at(&self, t: &Task) -> Option<i64> {
        if t.state != TaskState::Pending {
            return None;
        }
        let start = t.not_before_ms.unwrap_or(i64::MIN);
        match t.retry_at_ms {
            Some(at) => Some(at.max(start)),
            None if start > t.created_at_ms => Some(start),
            None => self.grace_ms.map(|g| t.created_at_ms.saturating_add(g)),
        }
    }

    /// The tasks among `unfinished` to send now (struct docs), at most `room`, and of a key at
    /// most its cap (`key_cap`) less its active tasks; they are recorded as sent at `now_ms`.
    pub fn due<'a>(
        &self,
        unfinished: &'a [Task],
        now_ms: i64,
        room: usize,
        key_cap: impl Fn(&str) -> Option<usize>,
    ) -> Vec<&'a Task> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let waiting: HashSet<&TaskId> = unfinished
            .iter()
            .filter(|t| t.state == TaskState::Pending)
            .map(|t| &t.id)
            .collect();
        sent.retain(|id, _| waiting.contains(id));
        let again = |at: &i64| self.grace_ms.is_some_and(|g| now_ms - at >= g);
        let mut due: Vec<(i64, &Task)> = unfinished
            .iter()
            .filter_map(|t| Some((self.due_at(t)?, t)))
            .filter(|(at, t)| *at <= now_ms && sent.get(&t.id).is_none_or(|s| *s < *at || again(s)))
            .collect();
        due.sort_by_key(|(at, t)| (*at, t.id.to_string()));
        let due: Vec<&Task> = due.into_iter().map(|(_, t)| t).collect();
        let running = super::admit::running_per_key(unfinished);
        let key_room =
            |k: &str| key_cap(k).map(|c| c.saturating_sub(running.get(k).copied().unwrap_or(0)));
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        let picked = turns.pick(&due, room, key_room);
        for t in &picked {
            sent.insert(t.id.clone(), now_ms);
        }
        picked
    }
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
    async fn an_outbox_keeps_each_envelope_once_and_the_unbound_intake_refuses() {
        let (a, b) = (task("a"), task("b"));
        let outbox = Outbox::default();
        outbox.send(&[&a, &b, &a]).unwrap();
        let queued = outbox.take();
        assert_eq!(queued.len(), 2, "{queued:?}");
        let env: Envelope = serde_json::from_str(&queued[0]).unwrap();
        assert_eq!((env.id.as_str(), env.work.as_str()), ("a", "w"));
        assert!(outbox.take().is_empty(), "taken");
        let err = Unbound.requeue(&a, 0).await.unwrap_err().to_string();
        assert!(err.contains("output binding"), "{err}");
    }

    #[test]
    fn first_deliveries_are_resent_after_the_grace_and_once_per_grace_period() {
        let mut old = task("old");
        old.created_at_ms = 0;
        let mut fresh = task("fresh");
        fresh.created_at_ms = 100_000;
        let mut scheduled = task("scheduled");
        scheduled.created_at_ms = 0;
        scheduled.retry_at_ms = Some(500_000);
        let all = [old, fresh, scheduled];
        let r = Resender::new(Duration::from_secs(60));
        let ids = |v: Vec<&Task>| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(r.due(&all, 120_000, 10, |_| None)), vec!["old"]);
        assert!(
            r.due(&all, 150_000, 10, |_| None).is_empty(),
            "sent within the grace"
        );
        assert_eq!(
            ids(r.due(&all, 180_000, 10, |_| None)),
            vec!["old", "fresh"]
        );
        assert!(Resender::new(Duration::ZERO)
            .due(&all, 400_000, 10, |_| None)
            .is_empty());
    }

    #[test]
    fn due_retries_are_sent_once_oldest_first_and_never_more_than_the_room() {
        let retry = |id: &str, at: i64| {
            let mut t = task(id);
            t.attempt = 1;
            t.retry_at_ms = Some(at);
            t
        };
        let mut running = retry("running", 0);
        running.state = TaskState::InProgress;
        let all = [
            retry("b", 300),
            retry("a", 100),
            retry("later", 10_000),
            retry("c", 200),
            running,
        ];
        let r = Resender::new(Duration::from_secs(60));
        let ids = |v: Vec<&Task>| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(r.due(&all, 5_000, 2, |_| None)),
            vec!["a", "c"],
            "room for two"
        );
        assert_eq!(
            ids(r.due(&all, 6_000, 10, |_| None)),
            vec!["b"],
            "a and c were sent"
        );
        assert!(
            r.due(&all, 7_000, 10, |_| None).is_empty(),
            "each is sent once"
        );
        assert_eq!(
            ids(r.due(&all, 70_000, 10, |_| None)),
            vec!["a", "c", "b", "later"],
            "still Pending after the grace: the message was deferred or lost, so again"
        );
        let off = Resender::new(Duration::ZERO);
        assert_eq!(off.due(&all, 5_000, 10, |_| None).len(), 3);
        assert!(
            off.due(&all, 900_000, 10, |_| None).len() == 1,
            "only `later`, once"
        );
    }

    #[test]
    fn a_delayed_task_is_sent_when_due_once_and_never_before() {
        let mut delayed = task("delayed");
        delayed.created_at_ms = 1_000;
        delayed.not_before_ms = Some(50_000);
        let mut due_at_once = task("due-at-once");
        due_at_once.created_at_ms = 1_000;
        due_at_once.not_before_ms = Some(500); // already due when accepted: sent by the intake
        let all = [delayed, due_at_once];
        for grace in [Duration::ZERO, Duration::from_secs(600)] {
            let r = Resender::new(grace);
            let ids = |v: Vec<&Task>| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
            assert!(
                r.due(&all, 49_999, 10, |_| None).is_empty(),
                "not before its time"
            );
            assert_eq!(ids(r.due(&all, 50_000, 10, |_| None)), vec!["delayed"]);
            assert!(r.due(&all, 51_000, 10, |_| None).is_empty(), "once");
        }
        // A retry of a delayed task is not sent before its start either.
        let mut retried = task("retried");
        retried.not_before_ms = Some(90_000);
        retried.retry_at_ms = Some(10_000);
        let r = Resender::new(Duration::ZERO);
        assert!(r
            .due(std::slice::from_ref(&retried), 60_000, 10, |_| None)
            .is_empty());
        assert_eq!(
            r.due(std::slice::from_ref(&retried), 90_000, 10, |_| None)
                .len(),
            1
        );
    }

    #[test]
    fn held_tasks_go_highest_priority_first_within_each_keys_room() {
        let held = |id: &str, key: &str, priority: i32| {
            let mut t = task(id);
            t.key = Some(key.into());
            t.priority = priority;
            t.retry_at_ms = Some(1_000);
            t
        };
        let mut running = held("running", "k", 0);
        running.state = TaskState::InProgress;
        let all = [
            held("low", "other", 0),
            held("k-high", "k", 5),
            held("k-next", "k", 5),
            held("top", "other", 9),
            running,
        ];
        let r = Resender::new(Duration::ZERO);
        let ids = |v: Vec<&Task>| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        // Key k's cap is 2 and one of its tasks runs: one more of k; room for three in all.
        let cap = |k: &str| (k == "k").then_some(2);
        assert_eq!(
            ids(r.due(&all, 2_000, 3, cap)),
            vec!["top", "k-high", "low"]
        );
    }
}
