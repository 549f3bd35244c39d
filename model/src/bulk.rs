//! Bulk actions (`POST /api/tasks/bulk`): one action on many tasks, named by id or by a search
//! (`all_matching`), answered with a count per outcome and the tasks it could not act on.

use crate::state::TaskState;
use crate::task::TaskId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to do to each task; each applies only to some states ([`BulkAction::applies_to`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Stop an unfinished task (as `POST /api/tasks/{id}/cancel`).
    Cancel,
    /// One more attempt for a Failed, TimedOut or Cancelled task (as `POST /api/tasks/{id}/retry`).
    Retry,
    /// Re-queue a dead-lettered task as a fresh attempt (the retry path, for DeadLettered only).
    Redrive,
}

impl BulkAction {
    /// Whether the action applies to a task in `state`.
    pub fn applies_to(self, state: TaskState) -> bool {
        match self {
            BulkAction::Cancel => !state.is_terminal(),
            BulkAction::Retry => state.is_retryable() && state != TaskState::DeadLettered,
            BulkAction::Redrive => state == TaskState::DeadLettered,
        }
    }

    /// Which states the action applies to, in words (for the reason a task was skipped).
    pub fn applies_to_words(self) -> &'static str {
        match self {
            BulkAction::Cancel => "unfinished tasks",
            BulkAction::Retry => "Failed, TimedOut or Cancelled tasks",
            BulkAction::Redrive => "DeadLettered tasks",
        }
    }

    /// The action's name as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
            BulkAction::Redrive => "redrive",
        }
    }
}

/// A search as `GET /api/tasks` takes it (`q`, `state`, `from`, `to`; see [`crate::search`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matching {
    /// The search query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// State names or groups, as the `state` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Created at or after (ms since the epoch or RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Created before (ms since the epoch or RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Body of `POST /api/tasks/bulk`: the action and either `ids` or `all_matching`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// What to do.
    pub action: BulkAction,
    /// These tasks (at most [`crate::limits::MAX_BULK_IDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<TaskId>>,
    /// Every task this search matches that the action applies to (at most
    /// [`crate::limits::MAX_BULK_MATCHING`] per call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_matching: Option<Matching>,
}

/// How one task came out of a bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkOutcome {
    /// The action was applied.
    Done,
    /// The task is not in a state the action applies to (also when it changed meanwhile).
    NotApplicable,
    /// No task has this id.
    NotFound,
    /// The store failed for this task (the reason says how).
    Failed,
}

/// A task the action was not applied to, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkSkip {
    /// The task.
    pub id: TaskId,
    /// Which outcome.
    pub outcome: BulkOutcome,
    /// Why, in words.
    pub reason: String,
}

/// Answer of `POST /api/tasks/bulk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkResponse {
    /// The action taken.
    pub action: BulkAction,
    /// How many tasks were named or matched (after removing repeated ids).
    pub matched: u64,
    /// How many tasks ended in each outcome.
    pub outcomes: BTreeMap<BulkOutcome, u64>,
    /// The tasks not acted on, and why (at most [`crate::limits::MAX_BULK_IDS`] listed).
    pub skipped: Vec<BulkSkip>,
    /// With `all_matching`: more tasks matched than one call acts on; call again.
    pub more: bool,
}
