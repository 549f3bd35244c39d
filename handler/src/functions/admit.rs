//! Functions mode's delivery policy: a global cap on running container groups, and transient
//! runtime errors as "later", never as poison.
//!
//! # The cap is global
//!
//! Local mode caps containers with a semaphore in its one process ([`crate::spawn::Slots`]).
//! In Azure the scale controller runs any number of instances, each taking up to
//! `maxConcurrentCalls` messages at once (host.json), while ACI limits container groups per
//! region and creations per hour. So the cap (`EDA_CONCURRENCY`) is counted in the store that
//! every instance shares: the number of tasks in `Provisioning` or `InProgress`. A message whose
//! task would start a new container while that count is at the cap leaves the task `Pending`
//! and is completed; the `ReconcileTimer` sends it again when there is room
//! ([`super::outbox::Resender`] never sends more than the free room). The check and the spawn
//! are not one transaction: concurrent invocations that all see one free slot may all take it,
//! so the count can pass the cap by at most (instances x `maxConcurrentCalls`) - 1 for a
//! moment; keep `maxConcurrentCalls` small (docs/AZURE.md).
//!
//! # Transient errors are not poison
//!
//! An unavailable runtime (transport errors, ARM 429 throttling and 5xx, ACI quota errors when
//! the runtime classifies them as transient) says nothing about the message. Failing the
//! invocation would spend one of the message's Service Bus deliveries each time and
//! dead-letter good work after `MaxDeliveryCount` tries. Instead [`defer`] puts the task back
//! to `Pending` with a backoff (the attempt that got no container is not counted) and the
//! message is completed; the timer sends it again when the backoff is over.

use crate::app::App;
use crate::clock::now_ms;
use crate::spawn::{self, Delivery, SpawnError};
use crate::store::{Change, ListFilter, StoreError};
use model::TaskState;
use std::sync::Arc;
use std::time::Duration;

/// Whether a delivery may start a container now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (room under the cap, or the message starts nothing new).
    Go,
    /// At the cap: the task is stored `Pending` and the message can be completed.
    Full {
        /// Tasks in `Provisioning` or `InProgress`, across all instances.
        active: u64,
        /// The cap (`EDA_CONCURRENCY`).
        cap: usize,
    },
}

/// Decides whether `d` may start a container now (module docs).
pub async fn admit(app: &Arc<App>, d: &Delivery) -> Result<Admission, SpawnError> {
    let Ok(env) = spawn::envelope(d) else {
        return Ok(Admission::Go); // invalid: the spawn path says why
    };
    let task = app.tasks.store.get(&env.id).await?;
    if task.is_some_and(|t| t.state != TaskState::Pending) {
        return Ok(Admission::Go); // a redelivery, or finished: nothing new starts
    }
    let active = active(app).await?;
    let cap = app.settings.concurrency;
    if active < cap as u64 {
        return Ok(Admission::Go);
    }
    // Stored, so the timer knows it (a plain message from another producer is new here).
    spawn::ensure_task(app, d).await?;
    Ok(Admission::Full { active, cap })
}

/// Tasks that hold a container group (or are about to), across all instances.
pub async fn active(app: &Arc<App>) -> Result<u64, StoreError> {
    let filter = ListFilter {
        states: vec![TaskState::Provisioning],
        limit: 1,
        cursor: None,
    };
    let counts = app.tasks.store.list(&filter).await?.counts;
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    Ok(n(TaskState::Provisioning) + n(TaskState::InProgress))
}

/// Puts the task of `d` back to `Pending` after a transient spawn error (module docs): the
/// attempt number is restored (the attempt got no container), the next try is due after a
/// backoff, the bill is unchanged. Returns the delay, or `None` when the task was not waiting
/// for its container any more (then the error is the caller's to report).
pub async fn defer(
    app: &Arc<App>,
    d: &Delivery,
    error: &SpawnError,
) -> Result<Option<Duration>, SpawnError> {
    let env = spawn::envelope(d)?;
    let Some(task) = app.tasks.store.get(&env.id).await? else {
        return Ok(None);
    };
    if task.state != TaskState::Provisioning || task.attempt == 0 {
        return Ok(None);
    }
    let delay =
        crate::queue::backoff(task.attempt, app.settings.retry_backoff).max(Duration::from_secs(1));
    let now = now_ms();
    let mut c = Change::to(TaskState::Pending, now);
    c.new_attempt = true;
    c.expect_attempt = Some(task.attempt);
    c.attempt = Some(task.attempt - 1);
    c.retry_at_ms = Some(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    c.billed = Some((0, 0.0));
    c.reason = Some(format!(
        "waiting for the container runtime: {error}; trying again in {} s (not counted as an attempt)",
        delay.as_secs()
    ));
    app.tasks.change(&task.id, c).await?;
    // Best effort: should the create have gone through after all, the next try must not adopt
    // a container that holds the old token.
    if let Some(name) = &task.container {
        if let Err(e) = app.runtime.remove(name).await {
            tracing::debug!(container = %name, error = %e, "could not remove after a failed create");
        }
    }
    Ok(Some(delay))
}
