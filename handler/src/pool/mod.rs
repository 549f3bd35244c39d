//! The warm pool of local mode (`handler local --warm N`): N containers of the worker image and
//! the default resource shape, created and started ahead of time, each worker waiting for a task.
//! A message claims one instead of starting a cold container, so it reaches `InProgress` in an
//! HTTP round trip and a few store writes instead of a Docker create + start.
//!
//! # A claim, step by step ([`Pool::claim`], called by `spawn` after the attempt is recorded)
//! 1. A waiting container whose worker has already asked for work is taken in memory.
//! 2. The claim is written to the store (`rows`: task, attempt, the task's container name).
//! 3. The container is renamed to the task's deterministic name (`model::naming`), so the
//!    reconciler, cancel, logs, metrics, billing and a redelivered message find it exactly as
//!    they find a cold container: one message still gives one container.
//! 4. The worker's held `GET /api/pool/{slot}/assignment` (authenticated by the container's own
//!    pool token, which can fetch nothing else) is answered with the task's environment and
//!    token; the row is deleted: from now on it is an ordinary task container.
//!
//! A crash between 2 and 4 is recovered at the next start ([`Pool::recover`]): a claimed
//! container still waiting for its task gets it handed over again, with a fresh task token
//! (`Reprovision`), as a cold container that never started is started on redelivery; any other
//! row's container is removed. A crash between the attempt's record and 2 leaves the task
//! without a container, which the redelivery (or the reconciler's grace period) handles as for a
//! cold create that never happened.
//!
//! Warm containers are named `edapool-<run>-<n>`: not `eda-`, so the reconciler (which owns
//! every `eda-*` container) never mistakes one for a task's. They are not billed (no task holds
//! them until the claim, whose `Provision` starts the bill), hold no concurrency slot, are
//! removed on shutdown, and the keeper ([`Pool::keep`]) replaces dead or old ones and refills
//! after claims in the background.
//!
//! Docker only: local mode refuses `--warm` on the process runtime (no renames of children).

pub mod routes;
mod rows;

use crate::app::App;
use crate::clock::now_ms;
use crate::config::{PoolSettings, Settings};
use crate::runtime::{ContainerRuntime, ContainerSpec, Phase, RuntimeError};
use crate::store::sqlite::Db;
use crate::store::StoreError;
use crate::token;
use model::pool::{assignment_path, Assignment};
use model::{Event, Resources, Task, TaskId, TaskState};
use rows::{Row, Rows};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Prefix of warm containers' names (not `model::naming::PREFIX`: see the module doc).
pub const PREFIX: &str = "edapool-";
/// How long an assignment request is held open while its worker has nothing to do.
pub const HOLD: Duration = Duration::from_secs(20);
/// How often the keeper looks for dead or old warm containers when nothing wakes it earlier.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Errors of the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No warm container of that name: never was, removed, or already handed over.
    #[error("no warm container named {0}")]
    NoSuchSlot(String),
    /// The token is not that warm container's own pool token.
    #[error("the token is not the pool token of {0}")]
    Unauthorized(String),
    /// The claim found its row gone or already claimed (retired meanwhile).
    #[error("warm container {0} was retired during the claim")]
    Lost(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime failed (the rename).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Where a warm container is in its life.
#[derive(Debug, Clone, PartialEq)]
enum SlotPhase {
    /// Being created and started.
    Creating,
    /// Started; claimable once its worker has asked for work.
    Waiting,
    /// Taken by a task attempt; `assignment` is set once it is renamed, until handed over.
    Claimed {
        /// The task.
        task: TaskId,
        /// The task's container name (the container's name after the rename).
        container: String,
        /// What its worker gets.
        assignment: Option<Assignment>,
    },
}

/// One warm container, in memory.
struct Slot {
    /// SHA-256 of its pool token (the only credential its worker has before the hand-over).
    token_hash: String,
    /// When it was created (for `--warm-max-age-secs`).
    created_at_ms: i64,
    /// Its worker asked for work at least once, so it runs and reaches us: only those are
    /// claimed, and a claim is then handed over within one round trip.
    polled: bool,
    /// Where it is.
    phase: SlotPhase,
    /// Wakes its worker's held assignment request.
    ready: Arc<Notify>,
}

/// A warm container as `GET /api/pool` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolEntry {
    /// Its name (while it waits) and slot.
    pub name: String,
    /// `creating`, `waiting`, `ready` (its worker asked for work) or `claimed`.
    pub state: &'static str,
    /// Seconds since it was created.
    pub age_secs: f64,
    /// The task that claimed it, until its worker has the task.
    pub task: Option<String>,
}

/// The pool as `GET /api/pool` and `handler pool` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolView {
    /// Warm containers kept (`--warm`); 0: no pool.
    pub size: usize,
    /// The image and resources a task must have to be given a warm container.
    pub image: Option<String>,
    /// CPU cores of each warm container.
    pub cpu: Option<f64>,
    /// Memory of each warm container, MiB.
    pub memory_mb: Option<u32>,
    /// Seconds an unclaimed warm container lives before it is replaced.
    pub max_age_secs: Option<u64>,
    /// The warm containers.
    pub containers: Vec<PoolEntry>,
}

impl PoolView {
    /// What is shown when no pool runs.
    pub fn none() -> PoolView {
        PoolView {
            size: 0,
            image: None,
            cpu: None,
            memory_mb: None,
            max_age_secs: None,
            containers: Vec::new(),
        }
    }
}

/// What a task container must be to be served from the pool: the pool containers' own shape.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    /// Worker image.
    image: String,
    /// Worker arguments.
    args: Vec<String>,
    /// CPU and memory.
    resources: Resources,
}

/// The warm pool. Shared behind an `Arc` by the spawner (claims), the API (hand-overs, the
/// view) and the keeper (fills, checks, drains).
pub struct Pool {
    /// Size and maximum age.
    settings: PoolSettings,
    /// The shape of every warm container.
    shape: Shape,
    /// Base URL workers call (the worker listener), for the containers' `POOL_URL`.
    public_url: String,
    /// Where warm containers run (Docker).
    runtime: Arc<dyn ContainerRuntime>,
    /// The rows in the store.
    rows: Rows,
    /// Random part of this process's container names, so two handlers on one engine never
    /// collide and a restart never reuses a name.
    run: String,
    /// Counter for the last part of the names.
    next: AtomicU64,
    /// Every warm container this process knows, by name. Locked briefly, never across an await.
    slots: Mutex<HashMap<String, Slot>>,
    /// Wakes the keeper (a claim to refill after).
    changed: Notify,
}

impl Pool {
    /// A pool of `settings.size` containers of `app`'s image, arguments and resources, its rows
    /// in `db`. Nothing is created until [`Pool::keep`] runs.
    pub async fn new(
        settings: PoolSettings,
        app: &Settings,
        runtime: Arc<dyn ContainerRuntime>,
        db: Db,
    ) -> Result<Pool, PoolError> {
        let mut run = [0u8; 4];
        getrandom::fill(&mut run).expect("the OS random source is available");
        Ok(Pool {
            settings,
            shape: Shape {
                image: app.image.clone(),
                args: app.worker_args.clone(),
                resources: app.resources,
            },
            public_url: app.public_url.clone(),
            runtime,
            rows: Rows::open(db).await?,
            run: hex::encode(run),
            next: AtomicU64::new(1),
            slots: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves the task container of `spec` (already recorded as `task`'s attempt) from the
    /// pool: true when a warm container now carries it, false when none fits or waits (start
    /// it cold). An error means a warm container failed during the claim; it is retired, and
    /// the caller starts the task cold.
    pub async fn claim(&self, task: &Task, spec: &ContainerSpec) -> Result<bool, PoolError> {
        if !self.fits(spec) {
            return Ok(false);
        }
        let Some(name) = self.take_waiting(&task.id, &spec.name) else {
            return Ok(false);
        };
        let result = self.hand_over(&name, task, spec).await;
        self.changed.notify_one();
        if result.is_err() {
            self.retire(&name).await;
        }
        result.map(|()| true)
    }

    /// Whether a task container of `spec` can be served by a warm container.
    fn fits(&self, spec: &ContainerSpec) -> bool {
        spec.image == self.shape.image
            && spec.args == self.shape.args
            && spec.resources == self.shape.resources
    }

    /// Takes the oldest waiting container whose worker has asked for work.
    fn take_waiting(&self, task: &TaskId, container: &str) -> Option<String> {
        let mut slots = self.slots();
        let (name, slot) = slots
            .iter_mut()
            .filter(|(_, s)| s.polled && s.phase == SlotPhase::Waiting)
            .min_by_key(|(_, s)| s.created_at_ms)?;
        slot.phase = SlotPhase::Claimed {
            task: task.clone(),
            container: container.to_string(),
            assignment: None,
        };
        Some(name.clone())
    }

    /// Records the claim, renames the container to the task's name and wakes its worker.
    async fn hand_over(
        &self,
        name: &str,
        task: &Task,
        spec: &ContainerSpec,
    ) -> Result<(), PoolError> {
        let (id, attempt) = (task.id.as_str(), task.attempt);
        if !self
            .rows
            .claim(name, id, attempt, &spec.name, now_ms())
            .await?
        {
            return Err(PoolError::Lost(name.to_string()));
        }
        self.runtime.rename(name, &spec.name).await?;
        let mut slots = self.slots();
        let slot = slots
            .get_mut(name)
            .ok_or_else(|| PoolError::Lost(name.to_string()))?;
        if let SlotPhase::Claimed { assignment, .. } = &mut slot.phase {
            *assignment = Some(assignment_of(spec));
        }
        slot.ready.notify_one();
        Ok(())
    }

    /// The assignment of warm container `slot`, for its worker (who proves it with `token`):
    /// waits up to [`HOLD`] for a claim, `None` when none came (the worker asks again). Once
    /// answered with a task, the container leaves the pool.
    pub async fn assignment(
        &self,
        slot: &str,
        token: &str,
        stop: &CancellationToken,
    ) -> Result<Option<Assignment>, PoolError> {
        let deadline = tokio::time::Instant::now() + HOLD;
        loop {
            let ready = match self.poll(slot, token)? {
                Ok(assignment) => {
                    if let Err(e) = self.rows.delete(slot).await {
                        // The next start finds the row and hands the task over again.
                        tracing::warn!(container = slot, error = %e, "could not forget a handed-over warm container");
                    }
                    return Ok(Some(assignment));
                }
                Err(ready) => ready,
            };
            tokio::select! {
                _ = ready.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
                _ = stop.cancelled() => return Ok(None),
            }
        }
    }

    /// One look at `slot` for its worker: its assignment (the slot leaves the pool), or what to
    /// wait on.
    fn poll(&self, slot: &str, token: &str) -> Result<Result<Assignment, Arc<Notify>>, PoolError> {
        let mut slots = self.slots();
        let s = slots
            .get_mut(slot)
            .ok_or_else(|| PoolError::NoSuchSlot(slot.to_string()))?;
        if !token::verify(token, &s.token_hash) {
            return Err(PoolError::Unauthorized(slot.to_string()));
        }
        s.polled = true;
        if let SlotPhase::Claimed {
            assignment: Some(a),
            ..
        } = &s.phase
        {
            let a = a.clone();
            slots.remove(slot);
            return Ok(Ok(a));
        }
        Ok(Err(s.ready.clone()))
    }

    /// Runs until `stop`: keeps `size` warm containers (creating the missing ones, replacing the
    /// dead and the old), then removes the unclaimed ones.
    ///
    /// Checks (one inspect per container) run on the tick only; a claim wakes the keeper to
    /// refill at once, so a burst of claims costs creates, not inspects.
    pub async fn keep(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.check().await,
                _ = self.changed.notified() => {}
            }
            self.fill().await;
        }
        self.drain().await;
    }

    /// Creates warm containers until `size` are creating or waiting (all at once).
    async fn fill(&self) {
        let missing = self.settings.size.saturating_sub(self.size_now());
        futures::future::join_all((0..missing).map(|_| self.add())).await;
    }

    /// Warm containers creating or waiting (not claimed): what the pool-size gauge shows.
    pub fn size_now(&self) -> usize {
        self.slots()
            .values()
            .filter(|s| !matches!(s.phase, SlotPhase::Claimed { .. }))
            .count()
    }

    /// Creates one warm container (its row first, so a crash leaves a trace to clean up).
    async fn add(&self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}", self.run);
        let secret = token::new_token();
        let now = now_ms();
        if let Err(e) = self.rows.insert(&name, &token::hash(&secret), now).await {
            tracing::warn!(error = %e, "could not record a warm container; retrying later");
            return;
        }
        self.slots().insert(
            name.clone(),
            Slot {
                token_hash: token::hash(&secret),
                created_at_ms: now,
                polled: false,
                phase: SlotPhase::Creating,
                ready: Arc::new(Notify::new()),
            },
        );
        match self.runtime.create(&self.spec(&name, secret)).await {
            Ok(_) => {
                if let Some(s) = self.slots().get_mut(&name) {
                    s.phase = SlotPhase::Waiting;
                }
                tracing::debug!(container = %name, "warm container started");
            }
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "could not start a warm container; retrying later");
                self.retire(&name).await;
            }
        }
    }

    /// The container spec of warm container `name`: the pool's shape, and only what its worker
    /// needs to ask for its task.
    fn spec(&self, name: &str, secret: String) -> ContainerSpec {
        let url = format!("{}{}", self.public_url, assignment_path(name));
        ContainerSpec {
            name: name.to_string(),
            image: self.shape.image.clone(),
            args: self.shape.args.clone(),
            env: vec![
                ("POOL_URL".to_string(), url),
                ("POOL_SLOT".to_string(), name.to_string()),
            ],
            secret_env: vec![("POOL_TOKEN".to_string(), secret)],
            resources: self.shape.resources,
        }
    }

    /// Retires waiting containers that died or grew older than `--warm-max-age-secs`, and
    /// forgets claimed ones whose worker died before taking its task (the container carries
    /// the task's name: the reconciler settles the attempt from its exit).
    async fn check(&self) {
        self.check_waiting().await;
        self.check_claimed().await;
    }

    async fn check_claimed(&self) {
        let claimed: Vec<(String, String)> = self
            .slots()
            .iter()
            .filter_map(|(n, s)| match &s.phase {
                SlotPhase::Claimed {
                    container,
                    assignment: Some(_),
                    ..
                } => Some((n.clone(), container.clone())),
                _ => None,
            })
            .collect();
        for (name, container) in claimed {
            let ended = match self.runtime.status(&container).await {
                Ok(st) => st.is_none_or(|st| st.phase == Phase::Exited),
                Err(_) => false,
            };
            if ended {
                tracing::info!(
                    container,
                    "a claimed warm container ended before taking its task"
                );
                self.slots().remove(&name);
                if let Err(e) = self.rows.delete(&name).await {
                    tracing::warn!(container = %name, error = %e, "could not forget a warm container");
                }
            }
        }
    }

    async fn check_waiting(&self) {
        let max_age = self.settings.max_age.as_millis() as i64;
        let now = now_ms();
        let waiting: Vec<(String, bool)> = self
            .slots()
            .iter()
            .filter(|(_, s)| s.phase == SlotPhase::Waiting)
            .map(|(n, s)| (n.clone(), now - s.created_at_ms > max_age))
            .collect();
        for (name, old) in waiting {
            let dead = !old
                && match self.runtime.status(&name).await {
                    Ok(st) => st.is_none_or(|st| st.phase == Phase::Exited),
                    Err(_) => false,
                };
            if !(old || dead) {
                continue;
            }
            // A claim may have taken it meanwhile: only a still-waiting one is retired.
            let still = {
                let mut slots = self.slots();
                let waiting = slots
                    .get(&name)
                    .is_some_and(|s| s.phase == SlotPhase::Waiting);
                waiting && slots.remove(&name).is_some()
            };
            if still {
                tracing::info!(container = %name, reason = if old { "too old" } else { "died" }, "replacing a warm container");
                self.retire(&name).await;
            }
        }
    }

    /// Forgets warm container `name` and removes it.
    async fn retire(&self, name: &str) {
        self.slots().remove(name);
        if let Err(e) = self.runtime.remove(name).await {
            tracing::warn!(container = name, error = %e, "could not remove a warm container");
        }
        if let Err(e) = self.rows.delete(name).await {
            tracing::warn!(container = name, error = %e, "could not forget a warm container");
        }
    }

    /// Shutdown: removes every unclaimed warm container. Claimed ones are task containers now
    /// (their rows stay for [`Pool::recover`] if the hand-over did not happen yet).
    async fn drain(&self) {
        let names: Vec<String> = self
            .slots()
            .iter()
            .filter(|(_, s)| !matches!(s.phase, SlotPhase::Claimed { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        futures::future::join_all(names.iter().map(|n| self.retire(n))).await;
        tracing::info!(removed = names.len(), "warm pool drained");
    }

    /// At start-up, before any message is taken: what a previous run left. A claimed container
    /// whose worker never got its task is handed it again (a fresh task token); every other
    /// row's container is removed. Returns (handed again, removed).
    pub async fn recover(&self, app: &App) -> Result<(usize, usize), PoolError> {
        let (mut again, mut removed) = (0, 0);
        for row in self.rows.all().await? {
            if self.reissue(app, &row).await {
                again += 1;
                continue;
            }
            // Renamed already: the pool name is free and this is a no-op; the task container
            // is the reconciler's.
            self.runtime.remove(&row.name).await?;
            self.rows.delete(&row.name).await?;
            removed += 1;
        }
        Ok((again, removed))
    }

    /// Hands a claimed row's task to its container again if the task still waits for it.
    async fn reissue(&self, app: &App, row: &Row) -> bool {
        let Some((id, attempt, container)) = &row.claim else {
            return false;
        };
        match self.try_reissue(app, row, id, *attempt, container).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(container, error = %e, "could not hand a claimed warm container its task again");
                false
            }
        }
    }

    async fn try_reissue(
        &self,
        app: &App,
        row: &Row,
        id: &str,
        attempt: u32,
        container: &str,
    ) -> Result<bool, PoolError> {
        let Ok(id) = TaskId::parse(id) else {
            return Ok(false);
        };
        let Some(task) = app.tasks().get(&id).await? else {
            return Ok(false);
        };
        let waits = task.state == TaskState::Provisioning
            && task.attempt == attempt
            && task.container.as_deref() == Some(container);
        let runs = self
            .runtime
            .status(container)
            .await?
            .is_some_and(|s| s.phase != Phase::Exited);
        if !(waits && runs) {
            return Ok(false);
        }
        let secret = token::new_token();
        let event = Event::Reprovision {
            attempt,
            container: container.to_string(),
            token_hash: token::hash(&secret),
        };
        let task = app.tasks().apply(&id, event).await?;
        let spec = crate::spawn::container_spec(app, &task, container.to_string(), secret);
        self.slots().insert(
            row.name.clone(),
            Slot {
                token_hash: row.token_hash.clone(),
                created_at_ms: row.created_at_ms,
                polled: true,
                phase: SlotPhase::Claimed {
                    task: id,
                    container: container.to_string(),
                    assignment: Some(assignment_of(&spec)),
                },
                ready: Arc::new(Notify::new()),
            },
        );
        tracing::info!(
            container,
            "a claimed warm container gets its task again after a restart"
        );
        Ok(true)
    }

    /// The pool as the API shows it.
    pub fn view(&self) -> PoolView {
        let now = now_ms();
        let mut containers: Vec<PoolEntry> = self
            .slots()
            .iter()
            .map(|(name, s)| PoolEntry {
                name: name.clone(),
                state: match (&s.phase, s.polled) {
                    (SlotPhase::Creating, _) => "creating",
                    (SlotPhase::Waiting, false) => "waiting",
                    (SlotPhase::Waiting, true) => "ready",
                    (SlotPhase::Claimed { .. }, _) => "claimed",
                },
                age_secs: (now - s.created_at_ms).max(0) as f64 / 1000.0,
                task: match &s.phase {
                    SlotPhase::Claimed { task, .. } => Some(task.to_string()),
                    _ => None,
                },
            })
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        PoolView {
            size: self.settings.size,
            image: Some(self.shape.image.clone()),
            cpu: Some(self.shape.resources.cpu),
            memory_mb: Some(self.shape.resources.memory_mb),
            max_age_secs: Some(self.settings.max_age.as_secs()),
            containers,
        }
    }
}

/// What the worker of a claimed container gets: the task container's environment and token.
fn assignment_of(spec: &ContainerSpec) -> Assignment {
    let token = spec
        .secret_env
        .iter()
        .find(|(k, _)| k == "TASK_TOKEN")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Assignment {
        env: spec.env.iter().cloned().collect(),
        token,
    }
}
