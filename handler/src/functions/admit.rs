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
//! # Keys, priority and delay
//!
//! Service Bus has no priority and cannot take a custom handler's scheduled message (see
//! `outbox`), so the trigger decides, from the store every instance shares, whether a
//! delivered task may start now ([`admit`]), in this order:
//!
//! 1. not due yet (`not_before_ms` in the future): left `Pending`; the timer sends it when due;
//! 2. the global cap reached (above);
//! 3. its concurrency key at the key's cap (`--key-cap`, `--key-caps`): the key's active tasks
//!    are counted in the store ([`TaskStore::active_with_key`](crate::store::TaskStore::active_with_key));
//! 4. higher-priority tasks that are due, `Pending`, and whose keys have room would need every
//!    free slot: a freed slot goes to the higher priority, so this one waits.
//!
//! A task that waits for room is held ([`Event::Hold`]: `Pending`, due now, the reason shown)
//! and its message completed; the `ReconcileTimer` sends the held tasks, highest priority
//! first, keys round-robin, never more than the room under the global cap and each key's cap
//! ([`super::outbox::Resender`]). The key's cap is also claimed-then-checked, as the global cap
//! is ([`GlobalCap`]).
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
use model::{Envelope, Event, Task, TaskId, TaskState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Whether a delivery may start a container now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (room under the caps, or the message starts nothing new).
    Go,
    /// Not due before `at_ms` (`not_before`): the task is stored `Pending`, the message can be
    /// completed, and the timer sends it when it is due.
    NotYet {
        /// When it is due (ms since the epoch).
        at_ms: i64,
    },
    /// No room for it now (module docs): the task is held `Pending`, the message can be
    /// completed, and the timer sends it when there is room.
    Wait {
        /// Why, e.g. "4 container groups active, the global cap is 4".
        reason: String,
    },
}

/// What decides a delivery's admission: the stored task's fields when it is stored (an API
/// task, or a redelivery), else its envelope's (a producer's message seen for the first time).
struct Shape {
    id: TaskId,
    priority: i32,
    not_before_ms: Option<i64>,
    key: Option<String>,
}

impl Shape {
    fn of(stored: Option<&Task>, env: Envelope) -> Shape {
        match stored {
            Some(t) => Shape {
                id: t.id.clone(),
                priority: t.priority,
                not_before_ms: t.not_before_ms,
                key: t.key.clone(),
            },
            None => Shape {
                id: env.id,
                priority: env.priority,
                not_before_ms: env.not_before_ms,
                key: env.key,
            },
        }
    }
}

/// Decides whether `d` may start a container now (module docs).
pub async fn admit(app: &Arc<App>, d: &Delivery) -> Result<Admission, SpawnError> {
    let Ok(env) = spawn::envelope(d) else {
        return Ok(Admission::Go); // invalid: the spawn path says why
    };
    let stored = app.tasks().get(&env.id).await?;
    if stored
        .as_ref()
        .is_some_and(|t| t.state != TaskState::Pending)
    {
        return Ok(Admission::Go); // a redelivery, or finished: nothing new starts
    }
    let shape = Shape::of(stored.as_ref(), env);
    let now = now_ms();
    if let Some(at_ms) = shape.not_before_ms.filter(|at| *at > now) {
        // Stored, so the timer knows it (a plain message from another producer is new here).
        spawn::ensure_task(app, d).await?;
        return Ok(Admission::NotYet { at_ms });
    }
    let Some(reason) = why_wait(app, &shape, stored.is_some(), now).await? else {
        return Ok(Admission::Go);
    };
    let task = spawn::ensure_task(app, d).await?;
    hold(app, &task, now, &reason).await;
    Ok(Admission::Wait { reason })
}

/// Why a due task may not start now, if it may not (module docs, rules 2 to 4).
async fn why_wait(
    app: &Arc<App>,
    shape: &Shape,
    stored: bool,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let counts = counts(app).await?;
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    let active = n(TaskState::Provisioning) + n(TaskState::InProgress);
    let cap = app.settings().concurrency;
    if active >= cap as u64 {
        return Ok(Some(format!(
            "{active} container groups active, the global cap is {cap}"
        )));
    }
    if let Some((key, kcap)) = shape
        .key
        .as_deref()
        .and_then(|k| Some((k, key_cap(app, k)?)))
    {
        let running = app.tasks().active_with_key(key).await?.len();
        if running >= kcap {
            return Ok(Some(format!(
                "{running} tasks of key {key} hold container groups, the key's cap is {kcap}"
            )));
        }
    }
    let room = cap as u64 - active;
    // Only when the other waiting tasks could fill the room can any of them be ahead; reading
    // them is skipped otherwise (the common case).
    let others = n(TaskState::Pending).saturating_sub(u64::from(stored));
    if others < room {
        return Ok(None);
    }
    let unfinished = app.tasks().unfinished().await?;
    let ahead = ahead_of(app, shape, &unfinished, now);
    Ok((ahead >= room).then(|| {
        format!("{ahead} tasks of higher priority wait for the {room} free container groups")
    }))
}

/// The `Pending` tasks that are due, of higher priority than `shape`, and whose key has room:
/// the ones that would take a freed slot before it.
fn ahead_of(app: &App, shape: &Shape, unfinished: &[Task], now: i64) -> u64 {
    let running = running_per_key(unfinished);
    let has_room = |t: &Task| match t.key.as_deref() {
        None => true,
        Some(k) => key_cap(app, k).is_none_or(|c| running.get(k).copied().unwrap_or(0) < c),
    };
    unfinished
        .iter()
        .filter(|t| t.state == TaskState::Pending && t.id != shape.id)
        .filter(|t| t.priority > shape.priority && is_due(t, now) && has_room(t))
        .count() as u64
}

/// Whether a `Pending` task may be sent now: its start time and its retry backoff are past.
pub fn is_due(t: &Task, now: i64) -> bool {
    t.not_before_ms.is_none_or(|at| at <= now) && t.retry_at_ms.is_none_or(|at| at <= now)
}

/// The active tasks of each concurrency key among `tasks`.
pub fn running_per_key(tasks: &[Task]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.state.is_active()) {
        if let Some(k) = t.key.as_deref() {
            *m.entry(k).or_default() += 1;
        }
    }
    m
}

/// The cap on running containers of key `key` (`--key-cap`, `--key-caps`), if it has one.
pub fn key_cap(app: &App, key: &str) -> Option<usize> {
    app.settings()
        .shape
        .key_caps
        .cap(key)
        .map(|c| usize::try_from(c).unwrap_or(usize::MAX))
}

/// Holds `task` ([`Event::Hold`]): `Pending`, due now, with why it waits. Best effort: should
/// the write fail, the task is still `Pending` and the timer's grace period sends it later.
async fn hold(app: &Arc<App>, task: &Task, now: i64, why: &str) {
    let event = Event::Hold {
        attempt: task.attempt,
        retry_at_ms: now,
        reason: format!("waiting for room: {why}; the ReconcileTimer sends it when there is room"),
    };
    if let Err(e) = app.tasks().apply(&task.id, event).await {
        tracing::debug!(task = %task.id, error = %e, "could not record the hold");
    }
}

/// The counts per state over the whole board (kept by the store: one cheap read).
async fn counts(app: &Arc<App>) -> Result<BTreeMap<TaskState, u64>, StoreError> {
    let filter = ListFilter {
        states: vec![TaskState::Provisioning],
        limit: 1,
        cursor: None,
        offset: 0,
        active_since_ms: None,
        search: Default::default(),
    };
    Ok(app.tasks().list(&filter).await?.counts)
}

/// Tasks that hold a container group (or are about to), across all instances.
pub async fn active(app: &Arc<App>) -> Result<u64, StoreError> {
    let counts = counts(app).await?;
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    Ok(n(TaskState::Provisioning) + n(TaskState::InProgress))
}

/// When `t` claimed its current attempt (its last `Provisioning` entry), or when it was made.
fn claimed_at(t: &Task) -> i64 {
    t.transitions
        .iter()
        .rev()
        .find(|tr| tr.state == TaskState::Provisioning && tr.attempt == t.attempt)
        .map_or(t.created_at_ms, |tr| tr.at_ms)
}

/// The claim-then-check half of the cap (module docs).
pub struct GlobalCap;

#[async_trait::async_trait]
impl spawn::ClaimCheck for GlobalCap {
    async fn after_claim(&self, app: &Arc<App>, task: &Task) -> Result<(), SpawnError> {
        let cap = app.settings().concurrency;
        if active(app).await? > cap as u64 {
            let unfinished = app.tasks().unfinished().await?;
            let claims = unfinished.iter().filter(|t| t.state.is_active());
            let ahead = ahead_in(claims, task);
            if ahead >= cap {
                let why =
                    format!("{ahead} container groups were claimed first; the global cap is {cap}");
                return refuse(app, task, why).await;
            }
        }
        let Some((key, kcap)) = task
            .key
            .as_deref()
            .and_then(|k| Some((k, key_cap(app, k)?)))
        else {
            return Ok(());
        };
        let running = app.tasks().active_with_key(key).await?;
        if running.len() <= kcap {
            return Ok(());
        }
        let ahead = ahead_in(running.iter(), task);
        if ahead < kcap {
            return Ok(());
        }
        let why = format!("{ahead} tasks of key {key} were claimed first; the key's cap is {kcap}");
        refuse(app, task, why).await
    }
}

/// How many of `claims` (active tasks) other than `task` claimed at the same millisecond or
/// earlier. A tie counts as ahead for both: both may give way, never both go on.
fn ahead_in<'a>(claims: impl Iterator<Item = &'a Task>, task: &Task) -> usize {
    let ours = claimed_at(task);
    claims
        .filter(|t| t.id != task.id && claimed_at(t) <= ours)
        .count()
}

/// Gives the claimed attempt of `task` back (due at once: the timer sends it when there is
/// room) and answers [`SpawnError::NoRoom`].
async fn refuse(app: &Arc<App>, task: &Task, why: String) -> Result<(), SpawnError> {
    let reason = format!("waiting for room ({why})");
    give_back(app, task, now_ms(), &reason).await?;
    Err(SpawnError::NoRoom(why))
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
