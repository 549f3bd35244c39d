//! The states of a task, and every fact about a state, each decided in one place.
//!
//! ```text
//! Pending -> Provisioning -> InProgress -> Done | Failed | Cancelled | TimedOut
//!    |            |              |
//!    |            +--------------+--> Pending (automatic retry, next attempt)
//!    +-----------+--> DeadLettered (the message could not be spawned after N deliveries)
//! Failed | TimedOut | Cancelled | DeadLettered --> Pending (retry asked for by a person)
//! ```
//!
//! Which moves are legal is decided by the events that cause them ([`crate::lifecycle`]). This
//! module only names the states: the list is written once (the [`task_states!`] invocation
//! below, which derives [`TaskState::ALL`] and the wire names), and every per-state fact (terminal,
//! failure, retryable, board rank, CSS class) is read from one exhaustive `match` in
//! [`TaskState::facts`], so adding a state fails to compile until its facts are written.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Declares [`TaskState`], [`TaskState::ALL`] and [`TaskState::as_str`] from one list, so the
/// three cannot disagree.
macro_rules! task_states {
    ($( $(#[$doc:meta])* $name:ident ),+ $(,)?) => {
        /// Where a task is in its life. The names `Pending`, `InProgress` and `Done` are the
        /// seed's; the variant name is the name on the wire and in the database.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum TaskState {
            $( $(#[$doc])* $name, )+
        }

        impl TaskState {
            /// Every state, in lifecycle order (counts, filters, SQL `IN` lists derive from it).
            pub const ALL: [TaskState; [$(stringify!($name)),+].len()] = [$(TaskState::$name),+];

            /// The seed-compatible name used on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( TaskState::$name => stringify!($name), )+
                }
            }
        }
    };
}

task_states! {
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

/// Everything the code needs to know about one state, written once per state in
/// [`TaskState::facts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFacts {
    /// Nothing more happens to the task unless a person retries it.
    pub terminal: bool,
    /// A terminal state that means "it did not work" (red on the dashboard).
    pub failure: bool,
    /// A person may retry the task from here (`POST /api/tasks/{id}/retry`).
    pub retryable: bool,
    /// A container may exist for the task.
    pub active: bool,
    /// Order of the state within one attempt (a task only moves forward within an attempt):
    /// how the dashboard tells an older copy of a task from a newer one.
    pub rank: u8,
    /// The dashboard's CSS class (its colour on tiles, chips and the timeline).
    pub class: &'static str,
}

impl TaskState {
    /// The one exhaustive table of per-state facts; every predicate below reads it.
    pub const fn facts(self) -> StateFacts {
        const fn f(
            terminal: bool,
            failure: bool,
            retryable: bool,
            rank: u8,
            class: &'static str,
        ) -> StateFacts {
            StateFacts {
                terminal,
                failure,
                retryable,
                active: !terminal && rank > 0,
                rank,
                class,
            }
        }
        match self {
            TaskState::Pending => f(false, false, false, 0, "st-pending"),
            TaskState::Provisioning => f(false, false, false, 1, "st-provisioning"),
            TaskState::InProgress => f(false, false, false, 2, "st-inprogress"),
            TaskState::Done => f(true, false, false, 3, "st-done"),
            TaskState::Failed => f(true, true, true, 3, "st-failed"),
            TaskState::Cancelled => f(true, false, true, 3, "st-cancelled"),
            TaskState::TimedOut => f(true, true, true, 3, "st-timedout"),
            TaskState::DeadLettered => f(true, true, true, 3, "st-deadlettered"),
        }
    }

    /// True once nothing more will happen to the task unless a person retries it.
    pub fn is_terminal(self) -> bool {
        self.facts().terminal
    }

    /// True for the terminal states that mean "it did not work" (red on the dashboard).
    pub fn is_failure(self) -> bool {
        self.facts().failure
    }

    /// True while a container may exist for the task.
    pub fn is_active(self) -> bool {
        self.facts().active
    }

    /// True when a person may retry the task (the API's retry route and the dashboard's button).
    pub fn is_retryable(self) -> bool {
        self.facts().retryable
    }

    /// Order within one attempt (see [`StateFacts::rank`]).
    pub fn rank(self) -> u8 {
        self.facts().rank
    }

    /// The dashboard's CSS class of the state.
    pub fn css_class(self) -> &'static str {
        self.facts().class
    }

    /// The states for which `pred` holds, in lifecycle order.
    pub fn matching(pred: impl Fn(TaskState) -> bool) -> impl Iterator<Item = TaskState> {
        TaskState::ALL.into_iter().filter(move |s| pred(*s))
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
        assert_eq!(TaskState::ALL.len(), 8);
    }

    #[test]
    fn facts_are_consistent() {
        let terminal: Vec<_> = TaskState::matching(TaskState::is_terminal).collect();
        assert_eq!(terminal, [Done, Failed, Cancelled, TimedOut, DeadLettered]);
        let active: Vec<_> = TaskState::matching(TaskState::is_active).collect();
        assert_eq!(active, [Provisioning, InProgress]);
        let retryable: Vec<_> = TaskState::matching(TaskState::is_retryable).collect();
        assert_eq!(retryable, [Failed, Cancelled, TimedOut, DeadLettered]);
        for s in TaskState::ALL {
            assert!(
                !s.is_failure() || s.is_terminal(),
                "{s}: a failure is terminal"
            );
            assert!(
                !s.is_retryable() || s.is_terminal(),
                "{s}: only an end is retried"
            );
            assert_eq!(s.is_retryable(), s.is_terminal() && s != Done, "{s}");
            assert_eq!(s.css_class(), format!("st-{}", s.as_str().to_lowercase()));
            assert_eq!(s.rank() == 3, s.is_terminal(), "{s}");
        }
        let ranks: Vec<_> = [Pending, Provisioning, InProgress]
            .map(TaskState::rank)
            .into();
        assert_eq!(ranks, [0, 1, 2]);
    }
}
