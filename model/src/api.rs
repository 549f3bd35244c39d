//! Bodies of the HTTP API (docs/API.md documents each route), the queue envelope, and the events
//! streamed to the dashboard.

use crate::state::TaskState;
use crate::task::{Task, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One item of work as a client submits it (`POST /api/work`). The shaping fields (priority,
/// schedule, key, image, size, labels) are checked by the handler before anything is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    /// The message: any non-blank UTF-8 text up to [`crate::limits::MAX_WORK_BYTES`].
    pub work: String,
    /// Create this many identical tasks (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Attempts allowed (default from the handler's config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Timeout in seconds (default from the handler's config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// Higher runs first (0 when absent); see [`crate::limits::MIN_PRIORITY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Start no earlier than this time (RFC 3339, e.g. `2026-01-02T03:04:05Z`). Not with
    /// `delay_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Start no earlier than this many seconds after acceptance. Not with `not_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<u64>,
    /// Concurrency key: at most the key's cap of its tasks run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Image to run instead of the worker image (only from the handler's allow-list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU cores of each container (within the handler's bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory of each container in MiB (within the handler's bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// A few name=value pairs kept with the task and passed to the run as `LABEL_<NAME>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Body of `POST /api/work`: one item or an array of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubmitRequest {
    /// `{"work": "..."}`
    One(WorkItem),
    /// `[{"work": "..."}, ...]`
    Many(Vec<WorkItem>),
}

impl SubmitRequest {
    /// The items, whichever shape was sent.
    pub fn into_items(self) -> Vec<WorkItem> {
        match self {
            SubmitRequest::One(item) => vec![item],
            SubmitRequest::Many(items) => items,
        }
    }
}

/// Answer of `POST /api/work` (202 Accepted): the tasks created, all `Pending`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The new tasks, in the order submitted.
    pub tasks: Vec<Task>,
}

/// The queue message: what the spawner needs to start a task. Messages sent by the API are this
/// JSON; any other text on the queue is treated as the work itself (see the handler's `spawn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The task's id, assigned at enqueue.
    pub id: TaskId,
    /// The message text.
    pub work: String,
    /// Attempts allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// Image to run instead of the handler's worker image (a producer's own image that wraps
    /// the worker); only from the handler's allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Higher runs first; see [`Task::priority`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Start no earlier than this (ms since the epoch); see [`Task::not_before_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// Concurrency key; see [`Task::key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Labels; see [`Task::labels`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// CPU cores of each container (the handler's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory of each container in MiB (the handler's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Envelope {
    /// The message that (re)queues `task`: the one shape the local queue and Service Bus carry.
    pub fn of(task: &Task) -> Envelope {
        Envelope {
            id: task.id.clone(),
            work: task.work.clone(),
            max_attempts: Some(task.max_attempts),
            timeout_secs: Some(task.timeout_secs),
            image: task.image.clone(),
            priority: task.priority,
            not_before_ms: task.not_before_ms,
            key: task.key.clone(),
            labels: task.labels.clone(),
            cpu: Some(task.resources.cpu),
            memory_mb: Some(task.resources.memory_mb),
        }
    }
}

/// What a worker may report about its own task (`POST /api/tasks/{id}/state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportedState {
    /// The worker started.
    InProgress,
    /// The work finished with exit code 0.
    Done,
    /// The work failed; `exit_code` says how.
    Failed,
}

impl From<ReportedState> for TaskState {
    fn from(s: ReportedState) -> TaskState {
        match s {
            ReportedState::InProgress => TaskState::InProgress,
            ReportedState::Done => TaskState::Done,
            ReportedState::Failed => TaskState::Failed,
        }
    }
}

/// Body of `POST /api/tasks/{id}/state`, sent by the worker with `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateReport {
    /// The state reached.
    pub state: ReportedState,
    /// The container's name, as the worker knows it (shown on the blue tile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Exit code of the work, with `Done` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Why it failed, with `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the work first wrote output (ms since the epoch, the worker's clock), with `Done`
    /// or `Failed`; absent from older workers and from work that wrote nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_output_at_ms: Option<i64>,
    /// When the work's process exited (ms since the epoch, the worker's clock), with `Done`
    /// or `Failed`; absent from older workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_at_ms: Option<i64>,
    /// What the work wrote to `RESULT_PATH`, with `Done` or `Failed`; absent when it wrote no
    /// file (and from older workers). The handler caps it ([`crate::TaskResult::capped`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::result::TaskResult>,
}

/// Query of `GET /api/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only tasks in these states: a comma-separated list of state names, or `active`,
    /// `finished` (all terminal states) or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Page size (default [`crate::limits::DEFAULT_PAGE`], at most [`crate::limits::MAX_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Opaque cursor from a previous page's `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Tasks to skip after the cursor (at most [`crate::limits::MAX_OFFSET`]): a virtualised
    /// board asks for the tiles at any scroll position with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Only tasks still unfinished or finished at or after this time (ms since the epoch): what a
    /// timeline of the last minutes draws.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<i64>,
    /// Search query ([`crate::search`]): text, `id:`, `key:`, `label:`, `state:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only tasks created at or after this (ms since the epoch or RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only tasks created before this (ms since the epoch or RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Answer of `GET /api/tasks`: newest first; a batch in the order it was submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPage {
    /// This page's tasks, newest first, without their transitions (see `GET /api/tasks/{id}`).
    pub tasks: Vec<Task>,
    /// Cursor of the next page, when there is one.
    #[serde(default)]
    pub next: Option<String>,
    /// How many tasks are in each state (the whole board, not just this page).
    pub counts: BTreeMap<TaskState, u64>,
}

/// Answer of `GET /api/tasks/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    /// The tail of the container's stdout and stderr, at most [`crate::limits::MAX_LOG_BYTES`].
    pub text: String,
    /// True when earlier output was cut.
    pub truncated: bool,
}

impl Logs {
    /// These logs as every store keeps them: at most [`crate::limits::MAX_LOG_BYTES`] of the
    /// tail (cut on a character boundary), marked truncated when anything was cut. The one cap
    /// of stored logs, so no backend keeps more than another.
    pub fn capped(self) -> Logs {
        self.last(crate::limits::MAX_LOG_BYTES)
    }
}

/// One CPU and memory sample of a running container.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// When, in ms since the epoch.
    pub at_ms: i64,
    /// CPU use in percent of one core (may exceed 100 with several cores).
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub memory_bytes: u64,
}

/// Answer of `GET /api/tasks/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Samples, oldest first, about one per second while the task ran.
    pub samples: Vec<MetricSample>,
}

/// Answer of `DELETE /api/tasks?state=finished`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cleared {
    /// How many tasks were removed.
    pub removed: u64,
}

/// One Server-Sent Event on `GET /api/events` (event name `task`): a task changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// The task as it is now (without transitions, to keep events small).
    pub task: Task,
}

/// One Server-Sent Event on `GET /api/events` (event name `cleared`): tasks were removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClearedEvent {
    /// The ids removed.
    pub ids: Vec<TaskId>,
}

/// Every error body of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable, machine-readable code, e.g. `work_too_large`.
    pub code: String,
    /// What went wrong and, for a limit, which limit.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::Logs;
    use crate::limits::MAX_LOG_BYTES;

    #[test]
    fn logs_keep_their_tail_on_a_character_boundary() {
        let small = Logs {
            text: "hi".into(),
            truncated: false,
        };
        assert_eq!(small.clone().capped(), small);
        let text = format!("x{}", "é".repeat(MAX_LOG_BYTES / 2));
        let capped = Logs {
            text: text.clone(),
            truncated: false,
        }
        .capped();
        assert!(capped.truncated);
        assert!(capped.text.len() <= MAX_LOG_BYTES);
        assert!(text.ends_with(&capped.text));
        assert_eq!(capped.text.len(), MAX_LOG_BYTES); // 'x' dropped, every 'é' kept
    }
}
