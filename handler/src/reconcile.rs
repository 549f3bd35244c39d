//! The reconciler: makes every task's state tell the truth about its container.
//!
//! It runs on container exits pushed by the runtime (Docker events, child exits), on a wake-up
//! from the API (a report or a cancel arrived), and on a periodic sweep as the safety net. For
//! each active task it asks the runtime: a container that exited without reporting is finished
//! from its exit code; one that ran past its timeout is killed (`TimedOut`); one that vanished is
//! failed. A failed attempt with attempts left goes back to `Pending` and is queued again after
//! a backoff. Finished containers have their logs captured, then are removed, freeing their slot.
//! CPU and memory samples are taken by [`crate::sampler`].

use crate::app::App;
use crate::clock::now_ms;
use crate::runtime::{ContainerStatus, Phase, RuntimeError};
use crate::store::StoreError;
use futures::StreamExt;
use model::naming::parse_container_name;
use model::{limits, Event, Task, TaskState};
use std::sync::Arc;

/// Errors of one reconcile pass.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Queueing a retry failed.
    #[error(transparent)]
    Intake(#[from] crate::app::IntakeError),
}

/// Runs until shutdown: a sweep at start, then on every exit event, wake-up or tick.
pub async fn run(app: Arc<App>) {
    let mut exits = app.runtime().exits();
    let mut tick = tokio::time::interval(app.settings().sweep);
    loop {
        let exited = tokio::select! {
            _ = app.shutdown().cancelled() => return,
            _ = tick.tick() => None,
            _ = app.wake().notified() => None,
            Some(name) = next_exit(&mut exits) => Some(name),
        };
        let result = match exited {
            Some(name) => on_exit(&app, &name).await,
            None => sweep(&app).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "reconcile pass failed; the next sweep retries");
        }
    }
}

async fn next_exit(
    exits: &mut Option<futures::stream::BoxStream<'static, String>>,
) -> Option<String> {
    match exits {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// One pass over every unfinished task and every container of ours.
pub async fn sweep(app: &Arc<App>) -> Result<(), ReconcileError> {
    for task in app.tasks().unfinished().await? {
        if task.state.is_active() {
            check(app, &task).await?;
        }
    }
    collect(app).await
}

/// A container stopped: settle its task and clean it up right away.
async fn on_exit(app: &Arc<App>, name: &str) -> Result<(), ReconcileError> {
    let Some((id, _)) = parse_container_name(name) else {
        return Ok(());
    };
    if let Some(task) = app.tasks().get(&id).await? {
        if task.state.is_active() {
            check(app, &task).await?;
        }
    }
    match app.tasks().get(&id).await? {
        Some(task) => cleanup(app, name, Some(&task)).await,
        None => Ok(()),
    }
}

/// Compares one active task with its container.
async fn check(app: &Arc<App>, task: &Task) -> Result<(), ReconcileError> {
    let Some(name) = task.container.clone() else {
        return Ok(());
    };
    let status = match app.runtime().status(&name).await {
        Ok(s) => s,
        Err(e) if e.is_transient() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match status {
        None => vanished(app, task).await,
        Some(st) if st.phase == Phase::Exited => exited(app, task, &st).await,
        Some(_) if overdue(task) => timed_out(app, task, &name).await,
        Some(_) => Ok(()),
    }
}

/// Since when the current attempt's container was asked for.
fn attempt_start(task: &Task) -> i64 {
    task.transitions
        .iter()
        .rev()
        .find(|t| t.state == TaskState::Provisioning && t.attempt == task.attempt)
        .map_or(task.created_at_ms, |t| t.at_ms)
}

fn overdue(task: &Task) -> bool {
    now_ms() - attempt_start(task) > i64::from(task.timeout_secs) * 1000
}

/// No container: fine for a moment after it was asked for (a spawn may be in flight), a
/// failure after the grace period.
async fn vanished(app: &Arc<App>, task: &Task) -> Result<(), ReconcileError> {
    let grace = app.settings().provision_grace.as_millis() as i64;
    if task.state == TaskState::Provisioning && now_ms() - attempt_start(task) < grace {
        return Ok(());
    }
    attempt_failed(
        app,
        task,
        None,
        "the container disappeared without reporting",
    )
    .await
}

async fn timed_out(app: &Arc<App>, task: &Task, name: &str) -> Result<(), ReconcileError> {
    let reason = format!(
        "ran longer than its timeout of {} s; container killed",
        task.timeout_secs
    );
    let event = Event::TimedOut {
        attempt: task.attempt,
        reason,
    };
    settle(app.tasks().apply(&task.id, event).await)?;
    app.runtime().kill(name).await?;
    Ok(())
}

/// The container ended while the task was still active: the worker never reported the end.
async fn exited(app: &Arc<App>, task: &Task, st: &ContainerStatus) -> Result<(), ReconcileError> {
    let code = st.exit_code.unwrap_or(-1);
    if code == 0 {
        let event = Event::Succeeded {
            attempt: task.attempt,
            exit_code: 0,
            reason: Some("container exited 0 without reporting Done".into()),
            result: None,
        };
        return settle(app.tasks().apply(&task.id, event).await);
    }
    attempt_failed(app, task, Some(code), &describe_exit(code, st)).await
}

/// A human reason for a non-zero exit (the words are `model::output::describe_exit`'s).
pub fn describe_exit(code: i64, st: &ContainerStatus) -> String {
    model::output::describe_exit(code, st.oom_killed, st.detail.as_deref())
}

/// The current attempt failed: `Task::apply` retries it after a backoff if attempts are left,
/// else it is `Failed`. Also used when the worker itself reports `Failed`.
pub async fn attempt_failed(
    app: &Arc<App>,
    task: &Task,
    exit_code: Option<i64>,
    reason: &str,
) -> Result<(), ReconcileError> {
    attempt_failed_with(app, task, exit_code, reason, None).await
}

/// [`attempt_failed`] with what the work wrote to `RESULT_PATH` (the worker's `Failed`
/// report carries it).
pub async fn attempt_failed_with(
    app: &Arc<App>,
    task: &Task,
    exit_code: Option<i64>,
    reason: &str,
    result: Option<model::TaskResult>,
) -> Result<(), ReconcileError> {
    let event = Event::AttemptFailed {
        attempt: task.attempt,
        exit_code,
        reason: reason.to_string(),
        retry_after: crate::policy::backoff(task.attempt, app.settings().retry_backoff),
        result,
    };
    let Some(updated) = settle_task(app.tasks().apply(&task.id, event).await)? else {
        return Ok(());
    };
    if let Some(at) = updated
        .retry_at_ms
        .filter(|_| updated.state == TaskState::Pending)
    {
        app.intake().requeue(&updated, at).await?;
    }
    Ok(())
}

/// A lost race (another pass or a report got there first) is not an error.
fn settle(r: Result<Task, StoreError>) -> Result<(), ReconcileError> {
    settle_task(r).map(drop)
}

fn settle_task(r: Result<Task, StoreError>) -> Result<Option<Task>, ReconcileError> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_lost_race() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Cleans up every container of ours whose attempt is over, and frees slots of tasks whose
/// containers are gone.
async fn collect(app: &Arc<App>) -> Result<(), ReconcileError> {
    let names = app.runtime().list().await?;
    for name in &names {
        let Some((id, _)) = parse_container_name(name) else {
            continue;
        };
        // A container whose task this store does not know belongs to another handler (another
        // data dir on the same engine): not ours to remove.
        if let Some(task) = app.tasks().get(&id).await? {
            cleanup(app, name, Some(&task)).await?;
        }
    }
    for id in app.slots().holders() {
        let task = app.tasks().get(&id).await?;
        if task.as_ref().is_some_and(|t| t.state.is_active()) {
            continue;
        }
        // Ask again rather than trust `names`: the container may have been created after the
        // list was taken, and a slot must not be freed while its container exists.
        let container = task.and_then(|t| t.container);
        let exists = match &container {
            Some(c) => app.runtime().status(c).await?.is_some(),
            None => false,
        };
        if !exists {
            app.slots().release(&id);
        }
    }
    Ok(())
}

/// Removes `name` if its attempt is over (after capturing its logs and a last sample), killing
/// it first if its task was cancelled or timed out.
async fn cleanup(app: &Arc<App>, name: &str, task: Option<&Task>) -> Result<(), ReconcileError> {
    let current = task.is_some_and(|t| t.container.as_deref() == Some(name));
    let active = current && task.is_some_and(|t| t.state.is_active());
    if active {
        return Ok(());
    }
    let Some(st) = app.runtime().status(name).await? else {
        return Ok(());
    };
    if st.phase != Phase::Exited {
        app.runtime().kill(name).await?;
        return Ok(()); // its exit event (or the next sweep) comes back here
    }
    let mut marks = Vec::new();
    if let (true, Some(t)) = (current, task) {
        let logs = app.runtime().logs(name, limits::MAX_LOG_BYTES).await?;
        app.tasks().put_logs(&t.id, &logs).await?;
        marks.push((model::Phase::LogsCaptured, now_ms()));
    }
    app.runtime().remove(name).await?;
    let attempt = parse_container_name(name).map(|(_, a)| a);
    if let Some(t) = task.filter(|t| Some(t.attempt) == attempt) {
        marks.push((model::Phase::Removed, now_ms()));
        crate::spawn::mark(app, t, &marks).await;
    }
    if let Some(t) = task.filter(|t| !t.state.is_active()) {
        app.slots().release(&t.id);
    }
    tracing::debug!(container = name, "container removed");
    Ok(())
}
