//! A task as stored and served.

use crate::phases::{self, AttemptClock, Phase};
use crate::state::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest task id. Keeps `eda-{id}-{attempt}` within ACI's 63 characters.
pub const MAX_ID_LEN: usize = 40;

/// A task's id: lowercase letters, digits and '-', 1 to 40 characters, starting with a letter
/// or digit. Assigned once: by the API for its own messages, or derived from the queue message
/// id for plain strings dropped on the queue by other producers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

/// Why a string is not a [`TaskId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid task id: use 1 to {MAX_ID_LEN} characters from a-z, 0-9 and '-', not starting or ending with '-'")]
pub struct TaskIdError;

impl TaskId {
    /// Checks and wraps an id.
    pub fn parse(s: &str) -> Result<TaskId, TaskIdError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ID_LEN
            && !s.starts_with('-')
            && !s.ends_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(TaskId(s.to_string()))
        } else {
            Err(TaskIdError)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = TaskIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TaskId::parse(&s)
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a task's container asks for. Billing is per second of these.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores (ACI accepts fractions such as 0.5).
    pub cpu: f64,
    /// Memory in MiB.
    pub memory_mb: u32,
}

/// One move of a task's state, with its time. The list of these is the task's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The state entered.
    pub state: TaskState,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The attempt this move belongs to (0 before the first spawn).
    pub attempt: u32,
    /// Why, when there is more to say than the state's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A task, with everything the dashboard shows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Assigned once; see [`TaskId`].
    pub id: TaskId,
    /// The message text, exactly as received.
    pub work: String,
    /// Current state.
    pub state: TaskState,
    /// Current attempt number; 0 until the first container is asked for.
    pub attempt: u32,
    /// Attempts allowed before the task stays `Failed`.
    pub max_attempts: u32,
    /// Seconds the work may run before its container is killed (`TimedOut`).
    pub timeout_secs: u32,
    /// Name of the current attempt's container, once there is one.
    #[serde(default)]
    pub container: Option<String>,
    /// Exit code of the last finished attempt.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why the task is in its state (failure reason, retry note, dead-letter reason).
    #[serde(default)]
    pub reason: Option<String>,
    /// When the task was accepted (ms since epoch).
    pub created_at_ms: i64,
    /// When the current attempt's container was asked for (it entered `Provisioning`): the end
    /// of its queue wait and the start of its start-up, as the dashboard's timeline draws them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_at_ms: Option<i64>,
    /// When the current attempt's worker reported `InProgress`.
    #[serde(default)]
    pub started_at_ms: Option<i64>,
    /// When the task reached a terminal state.
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    /// Earliest time the next attempt may start (automatic retry backoff).
    #[serde(default)]
    pub retry_at_ms: Option<i64>,
    /// Container seconds billed over all attempts (per-second billing, rounded up).
    #[serde(default)]
    pub billed_seconds: u64,
    /// Cost of the billed seconds at the configured rates, in the rates' currency.
    #[serde(default)]
    pub cost: f64,
    /// What each container asks for.
    pub resources: Resources,
    /// Image of its containers when not the handler's worker image (see `Envelope::image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Higher runs first; equal priority in arrival order. 0 when not given.
    #[serde(default)]
    pub priority: i32,
    /// The task's containers start no earlier than this (ms since the epoch): `not_before` or `delay_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// Concurrency key: at most the key's cap of this key's tasks run at once; keys are served round-robin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A few name=value pairs, searchable (names: [a-z0-9_], values: short printable text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Every state entered, oldest first.
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// When each phase of the newest attempts happened (at most `phases::MAX_CLOCKS`), oldest
    /// attempt first; set only by `Task::apply`. Absent in tasks stored before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<AttemptClock>,
}

impl Task {
    /// A new `Pending` task.
    pub fn new(
        id: TaskId,
        work: String,
        resources: Resources,
        max_attempts: u32,
        timeout_secs: u32,
        now_ms: i64,
    ) -> Task {
        Task {
            id,
            work,
            state: TaskState::Pending,
            attempt: 0,
            max_attempts,
            timeout_secs,
            container: None,
            exit_code: None,
            reason: None,
            created_at_ms: now_ms,
            provisioned_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            retry_at_ms: None,
            billed_seconds: 0,
            cost: 0.0,
            resources,
            image: None,
            priority: 0,
            not_before_ms: None,
            key: None,
            labels: BTreeMap::new(),
            transitions: vec![Transition {
                state: TaskState::Pending,
                at_ms: now_ms,
                attempt: 0,
                reason: None,
            }],
            phases: {
                // The first attempt is queued as the task is accepted.
                let mut clocks = Vec::new();
                phases::record(&mut clocks, 1, Phase::Queued, now_ms);
                clocks
            },
        }
    }

    /// The clock of attempt `attempt`, if it is kept.
    pub fn clock(&self, attempt: u32) -> Option<&AttemptClock> {
        self.phases.iter().find(|c| c.attempt == attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for good in ["a", "0", "abc-123", &"z".repeat(MAX_ID_LEN)] {
            assert!(TaskId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a b",
            &"z".repeat(MAX_ID_LEN + 1),
            "é",
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<TaskId>("\"Bad\"").is_err());
    }
}
