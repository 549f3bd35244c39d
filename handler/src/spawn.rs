//! THE one code path from a queue message to a running container, used by local mode's queue
//! consumer and by the Service Bus trigger alike, and the slot cap on running containers.
//!
//! Idempotency: a message delivered twice (the handler died between creating the container and
//! completing the message) finds its task already `Provisioning` with a container of the
//! deterministic name, and stops there: one container per task attempt.

use crate::app::App;
use crate::clock::now_ms;
use crate::runtime::{ContainerSpec, Created, Phase, RuntimeError};
use crate::store::StoreError;
use crate::token;
use model::naming::container_name;
use model::{limits, Envelope, Event, Phase as PhaseMark, Task, TaskId, TaskState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A message as delivered by a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The queue's id of the message; a plain-text message's task id is derived from it.
    pub message_id: String,
    /// The message: an [`Envelope`] (JSON) from our API, or any text from another producer.
    pub body: String,
    /// 1 on the first delivery.
    pub delivery_count: u32,
    /// When the message was first put on the queue (ms since the epoch), when the queue says:
    /// the local queue's `enqueued_at_ms` column, Service Bus's `EnqueuedTimeUtc`. The run sees
    /// it as `ENQUEUED_AT`.
    pub enqueued_at_ms: Option<i64>,
}

/// What [`handle`] did; every variant means "complete the message".
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A container was created for the task (it holds a slot until it ends).
    Started(TaskId),
    /// The task's container already exists (redelivery): nothing was created.
    AlreadyRunning(TaskId),
    /// The task is finished or cancelled: nothing to do.
    Finished(TaskId),
}

/// Why a message could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The message can never become a task (empty, too large, NUL bytes).
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime refused or could not be reached.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A [`ClaimCheck`] gave the claimed attempt back (Functions mode's global cap): the task is
    /// `Pending` again and nothing was created. Not a failure of the message.
    #[error("no room: {0}")]
    NoRoom(String),
}

/// A check between recording an attempt and creating its container. Functions mode counts
/// container groups across instances in the store (`functions::admit`); a check that finds no
/// room puts the task back and answers [`SpawnError::NoRoom`].
#[async_trait::async_trait]
pub trait ClaimCheck: Send + Sync {
    /// Called with the task as recorded (`Provisioning`, the new attempt).
    async fn after_claim(&self, app: &Arc<App>, task: &Task) -> Result<(), SpawnError>;
}

/// No check (local mode: its slots are taken before a message is received).
struct NoCheck;

#[async_trait::async_trait]
impl ClaimCheck for NoCheck {
    async fn after_claim(&self, _: &Arc<App>, _: &Task) -> Result<(), SpawnError> {
        Ok(())
    }
}

impl SpawnError {
    /// True when waiting may fix it (runtime down): the delivery should not count.
    pub fn is_transient(&self) -> bool {
        matches!(self, SpawnError::Runtime(e) if e.is_transient())
    }
}

/// Spawns the task a message names: creates the task if this is the first time it is seen,
/// then starts its next attempt's container unless one exists.
pub async fn handle(app: &Arc<App>, d: &Delivery) -> Result<Outcome, SpawnError> {
    handle_checked(app, d, &NoCheck).await
}

/// [`handle`] with `check` run after an attempt is recorded and before its container is created.
pub async fn handle_checked(
    app: &Arc<App>,
    d: &Delivery,
    check: &dyn ClaimCheck,
) -> Result<Outcome, SpawnError> {
    // Taken from the queue (local consumer) or the invocation received (Service Bus trigger).
    let received = now_ms();
    let task = ensure_task(app, d).await?;
    match task.state {
        s if s.is_terminal() => Ok(Outcome::Finished(task.id)),
        TaskState::Pending => start_attempt(app, &task, task.attempt + 1, check, received).await,
        _ => {
            let name = container_name(&task.id, task.attempt);
            match app.runtime().status(&name).await? {
                // Created but never started: the handler died between create and start. The
                // runtime's create adopts an existing name (starting it if it never ran) and
                // uses nothing of the spec, so the token inside stays the one recorded.
                Some(st) if st.phase == Phase::Starting => {
                    let spec = container_spec(app, &task, name, String::new());
                    app.runtime().create(&spec).await?;
                    app.metrics().redelivery_found_container();
                    Ok(Outcome::AlreadyRunning(task.id))
                }
                Some(_) => {
                    app.metrics().redelivery_found_container();
                    Ok(Outcome::AlreadyRunning(task.id))
                }
                None => start_attempt(app, &task, task.attempt, check, received).await,
            }
        }
    }
}

/// Marks the message's task `DeadLettered` with `reason` (creating it for a plain message).
pub async fn dead_letter(app: &Arc<App>, d: &Delivery, reason: &str) {
    let result = match ensure_task(app, d).await {
        Ok(t) if !t.state.is_terminal() => {
            let event = Event::DeadLetter {
                reason: reason.to_string(),
            };
            app.tasks()
                .apply(&t.id, event)
                .await
                .map(drop)
                .map_err(SpawnError::from)
        }
        Ok(_) => Ok(()),
        Err(SpawnError::Invalid(why)) => {
            // It can never be a task, so there is no task to mark; the queue keeps the message.
            tracing::warn!(message = %d.message_id, reason = %why, "dead-lettered a message that is not a task");
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(message = %d.message_id, error = %e, "could not record the dead letter");
    }
}

/// The envelope of a message: ours (JSON), or plain text whose id comes from the message id.
pub fn envelope(d: &Delivery) -> Result<Envelope, SpawnError> {
    if let Ok(env) = serde_json::from_str::<Envelope>(&d.body) {
        // Another producer may write envelopes too: the same limits as the API apply.
        check_work(&env.work).map_err(SpawnError::Invalid)?;
        if let Some(image) = &env.image {
            check_image(image).map_err(SpawnError::Invalid)?;
        }
        return Ok(env);
    }
    let work = d.body.clone();
    check_work(&work).map_err(SpawnError::Invalid)?;
    Ok(Envelope {
        id: derived_id(&d.message_id),
        work,
        max_attempts: None,
        timeout_secs: None,
        image: None,
        priority: 0,
        not_before_ms: None,
        key: None,
        labels: Default::default(),
        cpu: None,
        memory_mb: None,
    })
}

/// Checks an envelope's image reference: 1..=255 printable ASCII characters without spaces.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() || image.len() > 255 || !image.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("image must be 1..=255 printable ASCII characters without spaces".into());
    }
    Ok(())
}

/// The task id of a plain-text message: stable per queue message id, so a redelivery maps to
/// the same task.
pub fn derived_id(message_id: &str) -> TaskId {
    let digest = hex::encode(Sha256::digest(message_id.as_bytes()));
    TaskId::parse(&format!("m{}", &digest[..23])).expect("hex digits make a valid id")
}

/// Checks a message text against the limits; the error names the limit.
pub fn check_work(work: &str) -> Result<(), String> {
    if work.trim().is_empty() {
        return Err("work is empty or only whitespace".into());
    }
    if work.len() > limits::MAX_WORK_BYTES {
        return Err(format!(
            "work is {} bytes; the limit is {} bytes (MAX_WORK_BYTES)",
            work.len(),
            limits::MAX_WORK_BYTES
        ));
    }
    if work.contains('\0') {
        return Err("work contains a NUL character, which cannot be passed to a container".into());
    }
    Ok(())
}

/// The message's task as stored, inserted `Pending` if this is the first time it is seen (also
/// used by Functions mode to store a task it leaves waiting at the global cap).
pub async fn ensure_task(app: &Arc<App>, d: &Delivery) -> Result<Task, SpawnError> {
    let env = envelope(d)?;
    if let Some(t) = app.tasks().get(&env.id).await? {
        return Ok(t);
    }
    let s = app.settings();
    let resources = model::Resources {
        cpu: env.cpu.unwrap_or(s.resources.cpu),
        memory_mb: env.memory_mb.unwrap_or(s.resources.memory_mb),
    };
    let mut task = Task::new(
        env.id,
        env.work,
        resources,
        env.max_attempts.unwrap_or(s.max_attempts),
        env.timeout_secs.unwrap_or(s.timeout_secs),
        now_ms(),
    );
    task.image = env.image;
    task.priority = env.priority;
    task.not_before_ms = env.not_before_ms;
    task.key = env.key;
    task.labels = env.labels;
    Ok(app.tasks().insert(&[task]).await?.remove(0))
}

/// Records the attempt (`Provisioning`, container name, token hash), then creates its
/// container. The record comes first so that a crash in between is seen on redelivery.
async fn start_attempt(
    app: &Arc<App>,
    task: &Task,
    attempt: u32,
    check: &dyn ClaimCheck,
    received_ms: i64,
) -> Result<Outcome, SpawnError> {
    let name = container_name(&task.id, attempt);
    let secret = token::new_token();
    let (container, token_hash) = (name.clone(), token::hash(&secret));
    let event = if attempt == task.attempt {
        Event::Reprovision {
            attempt,
            container,
            token_hash,
        }
    } else {
        Event::Provision {
            attempt,
            container,
            token_hash,
        }
    };
    let task = app.tasks().apply(&task.id, event).await?;
    check.after_claim(app, &task).await?;
    let spec = container_spec(app, &task, name, secret);
    if warm(app, &task, &spec).await {
        let marks = [
            (PhaseMark::Dequeued, received_ms),
            (PhaseMark::Claimed, now_ms()),
        ];
        mark(app, &task, &marks).await;
        return Ok(Outcome::Started(task.id));
    }
    match app.runtime().create(&spec).await {
        Err(e) => {
            note(app, &task, &e).await;
            return Err(e.into());
        }
        Ok(Created::AlreadyExisted) => app.metrics().redelivery_found_container(),
        Ok(Created::New) => {
            let marks = [
                (PhaseMark::Dequeued, received_ms),
                (PhaseMark::Started, now_ms()),
            ];
            mark(app, &task, &marks).await;
        }
    }
    tracing::info!(task = %task.id, container = %spec.name, "container started");
    Ok(Outcome::Started(task.id))
}

/// Serves the attempt from the warm pool, if one runs and has a fitting container waiting
/// (`crate::pool`); false: start it cold.
async fn warm(app: &Arc<App>, task: &Task, spec: &ContainerSpec) -> bool {
    let Some(pool) = app.pool() else {
        return false;
    };
    match pool.claim(task, spec).await {
        Ok(claimed) => {
            if claimed {
                tracing::info!(task = %task.id, container = %spec.name, "claimed a warm container");
            }
            claimed
        }
        Err(e) => {
            tracing::warn!(task = %task.id, error = %e, "warm container claim failed; starting cold");
            false
        }
    }
}

/// Records phases of the task's current attempt on its clock. A refused mark (the attempt is
/// already over and replaced) or a store error only costs the clock a mark: it is logged.
pub async fn mark(app: &App, task: &Task, marks: &[(PhaseMark, i64)]) {
    let event = Event::Mark {
        attempt: task.attempt,
        marks: marks
            .iter()
            .map(|&(phase, at_ms)| model::Mark { phase, at_ms })
            .collect(),
    };
    if let Err(e) = app.tasks().apply(&task.id, event).await {
        tracing::debug!(task = %task.id, error = %e, "phase mark not recorded");
    }
}

/// Shows why a spawn is waiting on the task itself, so the dashboard tells the truth.
async fn note(app: &Arc<App>, task: &Task, e: &RuntimeError) {
    let reason = if e.is_transient() {
        format!("waiting for the container runtime: {e}")
    } else {
        format!("spawn failed: {e}")
    };
    let event = Event::Note {
        attempt: task.attempt,
        reason,
    };
    let _ = app.tasks().apply(&task.id, event).await;
}

/// The container of one task attempt (also what a claimed warm container's worker is handed).
pub(crate) fn container_spec(
    app: &App,
    task: &Task,
    name: String,
    secret: String,
) -> ContainerSpec {
    let s = app.settings();
    let env = vec![
        ("MESSAGE".to_string(), task.work.clone()),
        ("TASK_ID".to_string(), task.id.to_string()),
        (
            "CALLBACK_URL".to_string(),
            format!("{}/api/tasks/{}/state", s.public_url, task.id),
        ),
        ("CONTAINER_NAME".to_string(), name.clone()),
        ("ATTEMPT".to_string(), task.attempt.to_string()),
    ];
    ContainerSpec {
        name,
        image: task.image.clone().unwrap_or_else(|| s.image.clone()),
        args: s.worker_args.clone(),
        env,
        secret_env: vec![("TASK_TOKEN".to_string(), secret)],
        resources: task.resources,
    }
}

/// The cap on running containers. A slot is taken before a message is received and held by
/// the task's id from spawn until its container is gone, so at most `n` containers exist.
pub struct Slots {
    /// The permits; `available_permits` is the free capacity.
    sem: Arc<Semaphore>,
    /// Which task holds which permit. Touched by the consumer (hold) and the reconciler (release).
    held: Mutex<HashMap<TaskId, OwnedSemaphorePermit>>,
}

impl Slots {
    /// `n` slots.
    pub fn new(n: usize) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(n)),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Gives the slot to task `id` (a second permit for the same task is returned at once).
    pub fn hold(&self, id: TaskId, permit: OwnedSemaphorePermit) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(permit);
    }

    /// Takes a slot for a task found running at start-up, if one is free.
    pub fn adopt(&self, id: TaskId) {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            self.hold(id, p);
        }
    }

    /// Frees the slot of task `id`, if it holds one.
    pub fn release(&self, id: &TaskId) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Ids of the tasks holding slots.
    pub fn holders(&self) -> Vec<TaskId> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_get_a_stable_valid_id() {
        let a = derived_id("msg-1");
        assert_eq!(a, derived_id("msg-1"));
        assert_ne!(a, derived_id("msg-2"));
        assert!(container_name(&a, 10).len() <= model::naming::MAX_NAME);
    }

    #[test]
    fn envelopes_and_plain_text_are_both_accepted() {
        let d = |body: &str| Delivery {
            message_id: "q1".into(),
            body: body.into(),
            delivery_count: 1,
            enqueued_at_ms: None,
        };
        let env = envelope(&d(r#"{"id":"abc","work":"x"}"#)).unwrap();
        assert_eq!(env.id.as_str(), "abc");
        let plain = envelope(&d("hello")).unwrap();
        assert_eq!((plain.id, plain.work.as_str()), (derived_id("q1"), "hello"));
        assert!(envelope(&d("  ")).is_err());
        assert!(envelope(&d("a\0b")).is_err());
        let big = "x".repeat(limits::MAX_WORK_BYTES + 1);
        let over = serde_json::json!({"id": "abc", "work": big}).to_string();
        assert!(
            envelope(&d(&over)).is_err(),
            "envelopes obey the limits too"
        );
        assert!(envelope(&d(r#"{"id":"abc","work":"a\u0000b"}"#)).is_err());
        assert!(envelope(&d(r#"{"id":"abc","work":"x","image":"a b"}"#)).is_err());
        let own = envelope(&d(r#"{"id":"abc","work":"x","image":"mine:1"}"#)).unwrap();
        assert_eq!(own.image.as_deref(), Some("mine:1"));
    }
}
