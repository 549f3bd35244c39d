//! Where containers run: the [`ContainerRuntime`] trait and its backends.
//!
//! - [`docker`]: Docker Engine API (bollard), the local default.
//! - [`containment`]: the network, sandbox and hardening of Docker task containers.
//! - [`image`]: builds the `FROM scratch` worker image for Docker from the static worker binary.
//! - [`process`]: plain child processes of the handler, where no Docker Engine answers.
//! - [`aci`]: Azure Container Instances over ARM, in Azure (its `logs` captures their logs
//!   while they run; `error` sorts Azure's errors, `view` reads group states and
//!   metrics; `standby` claims warm groups from a standby pool).
//! - [`fake`]: an in-memory runtime for fast tests of spawn and reconcile, scripted by the test.
//!
//! Errors: one [`RuntimeError`] for every backend, keeping the client's error as its source.
//! Helpers every backend shares: [`exit`] (how an exit code reads: "killed by signal 9") and
//! `model::output` (the tail of a container's output).
//!
//! A "container" is named by the caller (`model::naming`), so every backend can answer "does this
//! task attempt's container exist?" after a restart without any bookkeeping of its own.

pub mod aci;
pub mod containment;
pub mod docker;
mod error;
pub mod fake;
pub mod image;
pub mod process;

pub use error::{Cause, RuntimeError};

use async_trait::async_trait;
use futures::stream::BoxStream;
use model::{Logs, MetricSample, Resources};

/// Everything a runtime needs to start one task attempt's container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Deterministic name from `model::naming::container_name`.
    pub name: String,
    /// Image to run (the worker image, or a user's image that wraps the worker).
    pub image: String,
    /// Arguments given to the image's entrypoint (the worker), e.g. `["--seconds", "5"]`.
    pub args: Vec<String>,
    /// Plain environment: `MESSAGE`, `TASK_ID`, `CALLBACK_URL`, `CONTAINER_NAME`.
    pub env: Vec<(String, String)>,
    /// Secret environment (`TASK_TOKEN`): ACI `secureValue`, never logged.
    pub secret_env: Vec<(String, String)>,
    /// CPU and memory asked for; the memory is also a hard limit where the runtime can enforce it.
    pub resources: Resources,
}

/// What [`ContainerRuntime::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new container was created and started.
    New,
    /// A container of that name already existed; it was left exactly as it was.
    AlreadyExisted,
}

/// Where a container is in its life, as the runtime sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, image pulling or starting.
    Starting,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

/// One look at a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    /// Where it is.
    pub phase: Phase,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// The kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// The runtime's own words about how it ended (signal, error), if any.
    pub detail: Option<String>,
}

/// Starts, watches and removes the containers of task attempts.
///
/// Object-safe so the app holds an `Arc<dyn ContainerRuntime>` chosen at start-up. Every method
/// takes the container's name; all of them are idempotent.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Which backend this is (`docker`, `process`, `aci`), for logs and the health route.
    fn kind(&self) -> &'static str;
    /// Creates and starts the container, unless one of that name exists: then it is left alone
    /// and [`Created::AlreadyExisted`] is returned. Two calls never make two containers.
    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError>;
    /// The container's status, or `None` when no container has that name.
    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, RuntimeError>;
    /// Stops the container now (SIGKILL); fine if it already stopped or does not exist.
    async fn kill(&self, name: &str) -> Result<(), RuntimeError>;
    /// Removes the container; fine if it does not exist.
    async fn remove(&self, name: &str) -> Result<(), RuntimeError>;
    /// The tail of its stdout and stderr, at most `max_bytes`.
    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError>;
    /// One CPU and memory sample, or `None` when it is not running. CPU is the average since
    /// the previous call for the same container.
    async fn sample(&self, name: &str) -> Result<Option<MetricSample>, RuntimeError>;
    /// Names of every container this system made (prefix `eda-`) that still exists.
    async fn list(&self) -> Result<Vec<String>, RuntimeError>;
    /// Renames an existing container (the warm pool gives a claimed container its task's
    /// deterministic name, `crate::pool`). Fails with [`RuntimeError::NoSuchContainer`] when
    /// `from` does not exist; a runtime without renames refuses (the pool is then refused at
    /// start-up, so this default is never reached in practice).
    async fn rename(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        let _ = to;
        Err(RuntimeError::NoSuchContainer(format!(
            "{from} ({} runtime cannot rename containers)",
            self.kind()
        )))
    }
    /// Makes `image` present ahead of its first task where the runtime can (Docker pulls a
    /// missing image); the default does nothing (the process runtime runs the worker binary,
    /// ACI pulls the image itself when it creates the container group). Called in the
    /// background when a task asking for its own image is accepted; a failure is only logged:
    /// the spawn then fails with the runtime's own reason (image not found).
    async fn prefetch(&self, image: &str) -> Result<(), RuntimeError> {
        let _ = image;
        Ok(())
    }
    /// A stream of names of containers that just stopped, when the runtime can push them
    /// (Docker events, child exits). `None`: the reconciler's periodic sweep is all there is.
    fn exits(&self) -> Option<BoxStream<'static, String>> {
        None
    }
}
