//! The task lifecycle.
//!
//! ```text
//! Pending -> Provisioning -> InProgress -> Done | Failed | Cancelled | TimedOut
//!    |            |              |
//!    |            +--------------+--> Pending (automatic retry, next attempt)
//!    +-----------+--> DeadLettered (the message could not be spawned after N deliveries)
//! Failed | TimedOut | Cancelled | DeadLettered --> Pending (retry asked for by a person)
//! ```
//!
//! Moves never go backwards within an attempt. The only way back to `Pending` is a new attempt,
//! which the caller must say it is starting (see [`TaskState::transition`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a task is in its life. The names `Pending`, `InProgress` and `Done` are the seed's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskState {
    /// Accepted and queued; no container yet.
    Pending,
    /// A container was asked for; the worker has not reported yet.
    Provisioning,
    /// The worker reported that it started.
    InProgress,
    /// The work finished with exit code 0.
    Done,
    /// The work failed (non-zero exit, crash, OOM) and no attempts are left.
    Failed,
    /// A person cancelled the task; its container was stopped.
    Cancelled,
    /// The task ran longer than its timeout; its container was killed.
    TimedOut,
    /// The message could not be turned into a container after the maximum deliveries.
    DeadLettered,
}

/// Why a move between two states was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal task transition {from} -> {to}")]
pub struct TransitionError {
    /// The state the task was in.
    pub from: TaskState,
    /// The state somebody asked for.
    pub to: TaskState,
}

impl TaskState {
    /// Every state, in lifecycle order (handy for counts and filters).
    pub const ALL: [TaskState; 8] = [
        TaskState::Pending,
        TaskState::Provisioning,
        TaskState::InProgress,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::TimedOut,
        TaskState::DeadLettered,
    ];

    /// True once nothing more will happen to the task unless a person retries it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Done
                | TaskState::Failed
                | TaskState::Cancelled
                | TaskState::TimedOut
                | TaskState::DeadLettered
        )
    }

    /// True for the terminal states that mean "it did not work" (red on the dashboard).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            TaskState::Failed | TaskState::TimedOut | TaskState::DeadLettered
        )
    }

    /// True while a container may exist for the task.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Provisioning | TaskState::InProgress)
    }

    /// The one place that decides whether `self -> to` is legal.
    ///
    /// `new_attempt` says the caller is starting another attempt (automatic retry or a person's
    /// retry); only then may a task go back to `Pending`. Re-entering the same active state is
    /// allowed so that a redelivered message can refresh a `Provisioning` record idempotently.
    pub fn transition(
        self,
        to: TaskState,
        new_attempt: bool,
    ) -> Result<TaskState, TransitionError> {
        use TaskState::*;
        let ok = match (self, to) {
            (Pending, Provisioning | Cancelled | DeadLettered | Failed) => true,
            (Provisioning, Provisioning) => !new_attempt,
            (Provisioning, InProgress | DeadLettered) => true,
            (Provisioning | InProgress, Done | Failed | Cancelled | TimedOut) => true,
            (Provisioning | InProgress, Pending) => new_attempt,
            (Failed | TimedOut | Cancelled | DeadLettered, Pending) => new_attempt,
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    /// The seed-compatible name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "Pending",
            TaskState::Provisioning => "Provisioning",
            TaskState::InProgress => "InProgress",
            TaskState::Done => "Done",
            TaskState::Failed => "Failed",
            TaskState::Cancelled => "Cancelled",
            TaskState::TimedOut => "TimedOut",
            TaskState::DeadLettered => "DeadLettered",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a state name that is not one of [`TaskState::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::{self, *};

    /// Every (from, to, new_attempt) that must be accepted; everything else must be refused.
    const LEGAL: &[(TaskState, TaskState, bool)] = &[
        (Pending, Provisioning, false),
        (Pending, Provisioning, true),
        (Pending, Cancelled, false),
        (Pending, Cancelled, true),
        (Pending, DeadLettered, false),
        (Pending, DeadLettered, true),
        (Pending, Failed, false),
        (Pending, Failed, true),
        (Provisioning, Provisioning, false),
        (Provisioning, InProgress, false),
        (Provisioning, InProgress, true),
        (Provisioning, DeadLettered, false),
        (Provisioning, DeadLettered, true),
        (Provisioning, Pending, true),
        (InProgress, Pending, true),
        (Failed, Pending, true),
        (TimedOut, Pending, true),
        (Cancelled, Pending, true),
        (DeadLettered, Pending, true),
    ];

    fn legal(from: TaskState, to: TaskState, retry: bool) -> bool {
        let finish = matches!(from, Provisioning | InProgress)
            && matches!(to, Done | Failed | Cancelled | TimedOut);
        finish || LEGAL.contains(&(from, to, retry))
    }

    #[test]
    fn every_move_is_decided_by_the_table() {
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                for retry in [false, true] {
                    let got = from.transition(to, retry);
                    assert_eq!(
                        got.is_ok(),
                        legal(from, to, retry),
                        "{from} -> {to} retry={retry}"
                    );
                }
            }
        }
    }

    #[test]
    fn terminal_states_only_leave_by_retry() {
        for from in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert!(from.transition(to, false).is_err(), "{from} -> {to}");
            }
        }
        assert!(
            Done.transition(Pending, true).is_err(),
            "a done task is not retried"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("Running".parse::<TaskState>().is_err());
    }
}
