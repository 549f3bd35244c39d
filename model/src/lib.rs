//! Types shared by every part of Event-Driven ACI.
//!
//! # Layout
//!
//! - [`state`]: the states of a task ([`TaskState`]), listed once, with every per-state fact
//!   (terminal, retryable, board rank, CSS class) in one exhaustive table.
//! - [`lifecycle`]: how a task changes: an [`Event`] applied by the pure [`Task::apply`], which
//!   decides legality, stamps times and the timeline, and bills ([`Rates`]).
//! - [`task`]: a task as stored and as served by the API ([`Task`], [`TaskId`], [`Transition`]).
//! - [`api`]: request and response bodies of the HTTP API, the worker's state report, the queue
//!   envelope and the events streamed to the dashboard.
//! - [`bulk`]: bodies of the bulk actions (`POST /api/tasks/bulk`).
//! - [`summary`]: the board header's figures over the recent tasks (`GET /api/summary`).
//! - [`search`]: the operator's search query (`q=`, `from`, `to`), parsed by one pure function.
//! - [`limits`]: every input limit, in one place, so the API, the CLI and the docs agree.
//! - [`naming`]: the deterministic container name of a task attempt.
//! - [`phases`]: the phase clock of each attempt (queued, taken, asked for, started, first
//!   report, first output, exit, final report, logs, removed), set through the lifecycle.
//! - [`output`]: the tail of a container's output and how its exit reads ("killed by signal 9").
//! - [`result`]: what a task's work hands back through `RESULT_PATH` ([`TaskResult`]), bounded.
//! - [`webhook`]: completion webhook deliveries and their attempts, as the API shows them.
//! - [`pool`]: what a warm pool container's worker receives when a task claims it.
//! - [`shape`]: the checks of a task's priority, schedule, key, image, size and labels, shared
//!   by the API and the queue envelope path.
//! - [`standby`]: the hand-over of a task to a container started before it (ACI standby pools).
//!
//! This crate has no I/O and builds for `wasm32-unknown-unknown`, because the dashboard shares it.

pub mod api;
pub mod bulk;
pub mod lifecycle;
pub mod limits;
pub mod naming;
pub mod output;
pub mod phases;
pub mod pool;
pub mod result;
pub mod search;
pub mod shape;
pub mod standby;
pub mod state;
pub mod summary;
pub mod task;
pub mod webhook;

pub use api::*;
pub use bulk::{BulkAction, BulkOutcome, BulkRequest, BulkResponse, BulkSkip, Matching};
pub use lifecycle::{Event, LifecycleError, Rates};
pub use phases::{AttemptClock, Mark, Phase};
pub use result::TaskResult;
pub use search::{Search, SearchError};
pub use state::{StateFacts, TaskState};
pub use summary::{Percentiles, Summary};
pub use task::{Resources, Task, TaskId, TaskIdError, Transition};
