//! CPU and memory samples of running containers, one rule for both modes: every active task
//! with a container is asked for one sample, all at once, and a point is stored only when it is
//! newer than the task's last stored point. Docker and the process runtime measure "now", so
//! every point is new; Azure Monitor's points are a minute apart while the `ReconcileTimer` runs
//! more often, so most of its answers repeat the last point and are skipped.
//!
//! Local mode samples the tasks holding slots about once a second ([`run`]); Functions mode
//! samples the active tasks on each `ReconcileTimer` tick ([`Sampler::sample`]).

use crate::app::App;
use crate::reconcile::ReconcileError;
use model::{Task, TaskId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Remembers the last point stored per task, so the store is read once per task and process,
/// not on every tick.
#[derive(Default)]
pub struct Sampler {
    /// Task -> `at_ms` of its last stored point. Touched by whoever calls [`Sampler::sample`]
    /// (one loop, or one timer invocation at a time); the lock is for `Sync`. Entries of tasks
    /// no longer active are dropped on each pass.
    last: Mutex<HashMap<TaskId, i64>>,
}

impl Sampler {
    /// Samples every active task of `tasks` that has a container, concurrently (one stats call
    /// can take a second on Docker 20.10, so one after another would space each task's points
    /// by the number of running containers). Returns how many points were stored.
    pub async fn sample(&self, app: &Arc<App>, tasks: &[Task]) -> usize {
        let active: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.state.is_active() && t.container.is_some())
            .collect();
        self.lock()
            .retain(|id, _| active.iter().any(|t| &t.id == id));
        let results = futures::future::join_all(active.iter().map(|t| self.one(app, t))).await;
        let mut stored = 0;
        for (t, r) in active.iter().zip(results) {
            match r {
                Ok(true) => stored += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(task = %t.id, error = %e, "sample failed"),
            }
        }
        stored
    }

    /// One task: true when a new point was stored.
    async fn one(&self, app: &Arc<App>, t: &Task) -> Result<bool, ReconcileError> {
        let Some(name) = t.container.as_deref() else {
            return Ok(false);
        };
        let Some(s) = app.runtime().sample(name).await? else {
            return Ok(false);
        };
        let known = self.lock().get(&t.id).copied();
        let last = match known {
            Some(at) => Some(at),
            None => app.tasks().metrics(&t.id).await?.last().map(|m| m.at_ms),
        };
        if last.is_some_and(|at| at >= s.at_ms) {
            self.lock().insert(t.id.clone(), last.unwrap_or(s.at_ms));
            return Ok(false);
        }
        app.tasks().add_metrics(&t.id, &[s]).await?;
        self.lock().insert(t.id.clone(), s.at_ms);
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, i64>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Local mode: samples the tasks holding slots about once a second, until shutdown.
pub async fn run(app: Arc<App>) {
    let sampler = Sampler::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = app.shutdown().cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut tasks = Vec::new();
        for id in app.slots().holders() {
            match app.tasks().get(&id).await {
                Ok(Some(t)) => tasks.push(t),
                Ok(None) => {}
                Err(e) => tracing::debug!(task = %id, error = %e, "sample: task not read"),
            }
        }
        sampler.sample(&app, &tasks).await;
    }
}
