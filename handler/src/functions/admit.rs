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
//! ([`super::outbox::Resender`] never sends more than the free room).
//!
//! That first look ([`admit`]) is cheap but not atomic: invocations on several instances may
//! all see the last free slot. So the spawn claims first and checks again ([`GlobalCap`], a
//! [`spawn::ClaimCheck`]): the attempt is recorded (`Provisioning`), then the active tasks are
//! counted; while the count is within the cap nothing more is read. Past it, a claim goes on
//! only if fewer than `cap` other active tasks were claimed at the same millisecond or earlier;
//! otherwise it puts its task back to `Pending` before any container exists and completes its
//! message, and the timer sends it when there is room. Every claimant reads after it wrote, so
//! of two racing claims the later reader sees both, and it gives way (a tie counts as ahead for
//! both: both may give way, never both go on). The cap holds, unless the instances' clocks
//! disagree by more than the time between two claims.
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
use crate::store::{ListFilter, StoreError};
use model::{Event, Task, TaskState};
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
    let task = app.tasks().get(&env.id).await?;
    if task.is_some_and(|t| t.state != TaskState::Pending) {
        return Ok(Admission::Go); // a redelivery, or finished: nothing new starts
    }
    let active = active(app).await?;
    let cap = app.settings().concurrency;
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
        offset: 0,
        active_since_ms: None,
        search: Default::default(),
    };
    let counts = app.tasks().list(&filter).await?.counts;
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    Ok(n(TaskState::Provisioning) + n(TaskState::InProgress))
}

/// The claim-then-check half of the cap (module docs).
pub struct GlobalCap;

#[async_trait::async_trait]
impl spawn::ClaimCheck for GlobalCap {
    async fn after_claim(&self, app: &Arc<App>, task: &Task) -> Result<(), SpawnError> {
        let cap = app.settings().concurrency;
        let active = active(app).await?;
        if active <= cap as u64 {
            return Ok(());
        }
        let claimed_at = |t: &Task| {
            t.transitions
                .iter()
                .rev()
                .find(|tr| tr.state == TaskState::Provisioning && tr.attempt == t.attempt)
                .map_or(t.created_at_ms, |tr| tr.at_ms)
        };
        let ours = claimed_at(task);
        // A claim in the same millisecond counts as ahead for both: both may give way, never
        // both go on.
        let ahead = app
            .tasks()
            .unfinished()
            .await?
            .iter()
            .filter(|t| t.state.is_active() && t.id != task.id && claimed_at(t) <= ours)
            .count();
        if ahead < cap {
            return Ok(());
        }
        let why = format!("{ahead} container groups were claimed first; the global cap is {cap}");
        let reason = format!("waiting for room under the global cap ({why})");
        give_back(app, task, now_ms(), &reason).await?;
        Err(SpawnError::NoRoom(why))
    }
}

/// Puts `task` (just claimed, no container) back to `Pending`: its attempt number restored, due
/// again at `retry_at_ms`, nothing billed.
async fn give_back(
    app: &Arc<App>,
    task: &Task,
    retry_at_ms: i64,
    reason: &str,
) -> Result<(), StoreError> {
    let event = Event::GiveBack {
        attempt: task.attempt,
        retry_at_ms,
        reason: reason.to_string(),
    };
    app.tasks().apply(&task.id, event).await.map(drop)
}

/// Puts the task of `d` back to `Pending` after a transient spawn error (module docs): the
/// attempt number is restored (the attempt got no container), the next try is due after
/// `delay` (the delivery policy's, `crate::policy`), the bill is unchanged. Returns false when
/// the task was not waiting for its container any more (nothing to defer).
pub async fn defer(
    app: &Arc<App>,
    d: &Delivery,
    error: &SpawnError,
    delay: Duration,
) -> Result<bool, SpawnError> {
    let env = spawn::envelope(d)?;
    let Some(task) = app.tasks().get(&env.id).await? else {
        return Ok(false);
    };
    if task.state != TaskState::Provisioning || task.attempt == 0 {
        return Ok(false);
    }
    let at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let reason = format!(
        "waiting for the container runtime: {error}; trying again in {} s (not counted as an attempt)",
        delay.as_secs()
    );
    give_back(app, &task, at, &reason).await?;
    // Best effort: should the create have gone through after all, the next try must not adopt
    // a container that holds the old token.
    if let Some(name) = &task.container {
        if let Err(e) = app.runtime().remove(name).await {
            tracing::debug!(container = %name, error = %e, "could not remove after a failed create");
        }
    }
    Ok(true)
}
