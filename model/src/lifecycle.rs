//! How a task changes: every change is an [`Event`], applied by the one pure function
//! [`Task::apply`], which decides whether it is legal, stamps the times and the timeline, and
//! bills the container time. Stores only load, compare-and-set and query; they never decide.
//!
//! Events that come from one attempt (a worker's report, the reconciler's view of a container,
//! the spawner's notes) carry its number, so a late report of an old attempt is refused
//! ([`LifecycleError::Stale`]) instead of moving the current one.

use crate::limits::MAX_REASON_BYTES;
use crate::phases::{self, Mark, Phase};
use crate::result::TaskResult;
use crate::state::TaskState;
use crate::task::{Task, Transition};
use std::time::Duration;

/// Per-second prices of container resources.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Price of one vCPU-second.
    pub cpu_second: f64,
    /// Price of one GB-second of memory.
    pub gb_second: f64,
}

impl Rates {
    /// Price of one second of `t`'s container.
    pub fn per_second(&self, t: &Task) -> f64 {
        let gb = f64::from(t.resources.memory_mb) / 1024.0;
        t.resources.cpu * self.cpu_second + gb * self.gb_second
    }
}

/// Something that happened to a task. Every write of a task is one of these.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The next attempt's container is asked for (`Pending -> Provisioning`); `attempt` is the
    /// task's current attempt + 1. The store keeps `token_hash` for the worker's reports.
    Provision {
        /// The new attempt's number.
        attempt: u32,
        /// Its container's name.
        container: String,
        /// SHA-256 (hex) of its worker token.
        token_hash: String,
    },
    /// The current attempt's container is asked for again (a redelivery found none), with a
    /// new token; it stays `Provisioning` and keeps when it was first asked for.
    Reprovision {
        /// The current attempt.
        attempt: u32,
        /// Its container's name.
        container: String,
        /// SHA-256 (hex) of the new worker token.
        token_hash: String,
    },
    /// Why a `Provisioning` attempt waits (the runtime refused or is away); nothing else moves.
    Note {
        /// The current attempt.
        attempt: u32,
        /// What to show.
        reason: String,
    },
    /// A claimed attempt that got no container is given back: `Pending`, its attempt number
    /// restored, due again at `retry_at_ms`, nothing billed (Functions mode's cap and transient
    /// runtime errors).
    GiveBack {
        /// The attempt being given back (the current one).
        attempt: u32,
        /// When the task is due again.
        retry_at_ms: i64,
        /// Why.
        reason: String,
    },
    /// A `Pending` task whose message arrived but may not start now (Functions mode: its
    /// concurrency key is at its cap, the global cap is reached, or a higher-priority task
    /// waits for the room) stays `Pending`, due again at `retry_at_ms`, with the reason shown;
    /// the `ReconcileTimer` sends it when there is room (`functions::admit`).
    Hold {
        /// The task's current attempt (a hold decided on a stale read is refused).
        attempt: u32,
        /// When the task may be sent again.
        retry_at_ms: i64,
        /// Why it waits.
        reason: String,
    },
    /// The worker reported that it started.
    Started {
        /// The reporting attempt.
        attempt: u32,
    },
    /// The work succeeded: the worker reported `Done`, or its container exited 0.
    Succeeded {
        /// The attempt that ran it.
        attempt: u32,
        /// Its exit code (0 unless the worker said otherwise).
        exit_code: i64,
        /// Something to add (e.g. it exited without reporting); `None` leaves the reason.
        reason: Option<String>,
        /// What the work wrote to `RESULT_PATH` (the worker's report); becomes `Task::result`.
        result: Option<TaskResult>,
    },
    /// The attempt failed: `Pending` again after `retry_after` if attempts are left, else
    /// `Failed`.
    AttemptFailed {
        /// The attempt that failed.
        attempt: u32,
        /// Its exit code, when it has one.
        exit_code: Option<i64>,
        /// What went wrong.
        reason: String,
        /// The backoff before the next attempt (if there is one).
        retry_after: Duration,
        /// What the work wrote to `RESULT_PATH` before it failed; becomes `Task::result`.
        result: Option<TaskResult>,
    },
    /// The attempt ran longer than the task's timeout; its container is being killed.
    TimedOut {
        /// The attempt.
        attempt: u32,
        /// What to show.
        reason: String,
    },
    /// A person cancelled the task (any attempt; the current one is stopped).
    Cancel {
        /// What to show.
        reason: String,
    },
    /// A person asked for one more attempt of a retryable task (raising its attempt budget).
    Retry {
        /// The attempt the person saw (the current one).
        attempt: u32,
    },
    /// The message could not be spawned after the maximum deliveries.
    DeadLetter {
        /// Why.
        reason: String,
    },
    /// Phases of an attempt that are not state changes (taken from the queue, container
    /// started, first output, exit, logs captured, removed), at the times the caller saw them.
    /// Legal in every state (logs are captured after the end), for the current attempt only;
    /// nothing but the attempt's clock changes.
    Mark {
        /// The attempt (the current one; never 0).
        attempt: u32,
        /// The phases and their times; a phase the attempt already has keeps its first time.
        marks: Vec<Mark>,
    },
}

/// The reason a person's retry records.
pub const RETRY_REASON: &str = "retry requested";

impl Event {
    /// The event's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Provision { .. } => "Provision",
            Event::Reprovision { .. } => "Reprovision",
            Event::Note { .. } => "Note",
            Event::GiveBack { .. } => "GiveBack",
            Event::Hold { .. } => "Hold",
            Event::Started { .. } => "Started",
            Event::Succeeded { .. } => "Succeeded",
            Event::AttemptFailed { .. } => "AttemptFailed",
            Event::TimedOut { .. } => "TimedOut",
            Event::Cancel { .. } => "Cancel",
            Event::Retry { .. } => "Retry",
            Event::DeadLetter { .. } => "DeadLetter",
            Event::Mark { .. } => "Mark",
        }
    }

    /// The worker-token hash to store with the change, if the event starts a container.
    pub fn token_hash(&self) -> Option<&str> {
        match self {
            Event::Provision { token_hash, .. } | Event::Reprovision { token_hash, .. } => {
                Some(token_hash)
            }
            _ => None,
        }
    }

    /// The attempt the task must be at for this event to apply, if the event names one.
    fn expected_attempt(&self) -> Option<u32> {
        match self {
            Event::Provision { attempt, .. } => Some(attempt.saturating_sub(1)),
            Event::Reprovision { attempt, .. }
            | Event::Note { attempt, .. }
            | Event::GiveBack { attempt, .. }
            | Event::Hold { attempt, .. }
            | Event::Started { attempt }
            | Event::Succeeded { attempt, .. }
            | Event::AttemptFailed { attempt, .. }
            | Event::TimedOut { attempt, .. }
            | Event::Retry { attempt }
            | Event::Mark { attempt, .. } => Some(*attempt),
            Event::Cancel { .. } | Event::DeadLetter { .. } => None,
        }
    }

    /// Whether the event may happen to a task in `state`.
    fn allowed_from(&self, state: TaskState) -> bool {
        use TaskState::*;
        match self {
            Event::Provision { .. } | Event::Hold { .. } => state == Pending,
            Event::Reprovision { .. } | Event::Note { .. } | Event::GiveBack { .. } => {
                state == Provisioning
            }
            Event::Started { .. } => state == Provisioning,
            Event::Succeeded { .. } | Event::AttemptFailed { .. } | Event::TimedOut { .. } => {
                state.is_active()
            }
            Event::Cancel { .. } => !state.is_terminal(),
            Event::Retry { .. } => state.is_retryable(),
            Event::DeadLetter { .. } => matches!(state, Pending | Provisioning),
            Event::Mark { .. } => true,
        }
    }
}

/// Why [`Task::apply`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The event cannot happen in the task's current state.
    #[error("illegal task transition: {event} while {from}")]
    Illegal {
        /// The state the task is in.
        from: TaskState,
        /// The event's name ([`Event::name`]).
        event: &'static str,
    },
    /// The event is about an attempt that is no longer the task's current one.
    #[error("stale report for attempt {got}; current attempt is {current}")]
    Stale {
        /// The attempt the event expected the task at (a provision: the one it follows).
        got: u32,
        /// The task's current attempt.
        current: u32,
    },
}

/// What an event does to the stored fields, worked out before any is touched.
struct Step {
    /// The state entered.
    to: TaskState,
    /// What happens to the reason.
    reason: Reason,
    /// Whether the event ends a billed attempt.
    bill: bool,
}

/// What happens to the task's reason.
enum Reason {
    /// Leave it as it is.
    Keep,
    /// No reason any more (a new container was asked for).
    Clear,
    /// This one, cut to `MAX_REASON_BYTES`.
    Set(String),
}

impl Task {
    /// The task after `event` at `now_ms`, or why the event is refused. Pure: the stores call it
    /// between their load and their compare-and-set write.
    ///
    /// An event that ends an attempt (to a terminal state or back to `Pending`) bills the
    /// attempt's container time at `rates`: from its last `Provisioning` entry to `now_ms`,
    /// rounded up to whole seconds, at least one (ACI's per-second billing). A given-back
    /// attempt had no container and is not billed.
    pub fn apply(&self, event: &Event, now_ms: i64, rates: &Rates) -> Result<Task, LifecycleError> {
        if let Some(want) = event.expected_attempt() {
            if want != self.attempt {
                return Err(LifecycleError::Stale {
                    got: want,
                    current: self.attempt,
                });
            }
        }
        // A mark for attempt 0 (no attempt yet) has no clock to go on.
        let unattempted = matches!(event, Event::Mark { attempt: 0, .. });
        if !event.allowed_from(self.state) || unattempted {
            return Err(LifecycleError::Illegal {
                from: self.state,
                event: event.name(),
            });
        }
        if let Event::Mark { attempt, marks } = event {
            let mut t = self.clone();
            for m in marks {
                phases::record(&mut t.phases, *attempt, m.phase, m.at_ms);
            }
            return Ok(t);
        }
        let step = self.step(event);
        let mut t = self.clone();
        if step.bill {
            if let Some(secs) = self.attempt_seconds(now_ms) {
                t.billed_seconds += secs;
                t.cost += secs as f64 * rates.per_second(self);
            }
        }
        t.fill(event, now_ms);
        t.stamp_phases(event, self.state, step.to, now_ms);
        t.enter(step, now_ms);
        Ok(t)
    }

    /// Where `event` takes the task, and what it does to the reason and the bill.
    fn step(&self, event: &Event) -> Step {
        use TaskState::*;
        let (to, reason) = match event {
            Event::Provision { .. } | Event::Reprovision { .. } => (Provisioning, Reason::Clear),
            Event::Note { reason, .. } => (Provisioning, Reason::Set(reason.clone())),
            Event::GiveBack { reason, .. } | Event::Hold { reason, .. } => {
                (Pending, Reason::Set(reason.clone()))
            }
            Event::Started { .. } => (InProgress, Reason::Keep),
            Event::Succeeded { reason, .. } => {
                (Done, reason.clone().map_or(Reason::Keep, Reason::Set))
            }
            Event::AttemptFailed {
                reason,
                retry_after,
                ..
            } => self.after_failure(reason, *retry_after),
            Event::TimedOut { reason, .. } => (TimedOut, Reason::Set(reason.clone())),
            Event::Cancel { reason } => (Cancelled, Reason::Set(reason.clone())),
            Event::Retry { .. } => (Pending, Reason::Set(RETRY_REASON.into())),
            Event::DeadLetter { reason } => (DeadLettered, Reason::Set(reason.clone())),
            // Never reached: `apply` records a mark's phases and returns before stepping.
            Event::Mark { .. } => (self.state, Reason::Keep),
        };
        let ends = to.is_terminal() || to == Pending;
        Step {
            to,
            reason,
            bill: ends && self.state.is_active() && !matches!(event, Event::GiveBack { .. }),
        }
    }

    /// A failed attempt: retried after the backoff while attempts are left, else `Failed`.
    fn after_failure(&self, reason: &str, retry_after: Duration) -> (TaskState, Reason) {
        if self.attempt >= self.max_attempts {
            return (TaskState::Failed, Reason::Set(reason.to_string()));
        }
        let text = format!(
            "attempt {}/{} failed: {reason}; retrying in {:.1} s",
            self.attempt,
            self.max_attempts,
            retry_after.as_secs_f64()
        );
        (TaskState::Pending, Reason::Set(text))
    }

    /// Sets the fields the event itself carries.
    fn fill(&mut self, event: &Event, now_ms: i64) {
        self.retry_at_ms = None;
        match event {
            Event::Provision {
                attempt, container, ..
            }
            | Event::Reprovision {
                attempt, container, ..
            } => {
                self.attempt = *attempt;
                self.container = Some(container.clone());
            }
            Event::GiveBack {
                attempt,
                retry_at_ms,
                ..
            } => {
                self.attempt = attempt.saturating_sub(1);
                self.retry_at_ms = Some(*retry_at_ms);
                self.exit_code = None;
            }
            Event::Hold { retry_at_ms, .. } => self.retry_at_ms = Some(*retry_at_ms),
            Event::Succeeded {
                exit_code, result, ..
            } => {
                self.exit_code = Some(*exit_code);
                self.result = result.clone();
            }
            Event::AttemptFailed {
                exit_code,
                retry_after,
                result,
                ..
            } => {
                // The result of the attempt that ended last, whichever way it ended.
                self.result = result.clone();
                if self.attempt < self.max_attempts {
                    let delay = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
                    self.retry_at_ms = Some(now_ms.saturating_add(delay));
                    self.exit_code = *exit_code;
                } else if exit_code.is_some() {
                    self.exit_code = *exit_code;
                }
            }
            Event::Retry { attempt } => {
                self.max_attempts = self.max_attempts.max(attempt + 1);
                self.exit_code = None;
            }
            Event::Note { .. }
            | Event::Started { .. }
            | Event::TimedOut { .. }
            | Event::Cancel { .. }
            | Event::DeadLetter { .. }
            | Event::Mark { .. } => {}
        }
    }

    /// Stamps the phases a state change is (after [`Task::fill`], so `self.attempt` is the
    /// attempt the event leaves current): the container asked for, the worker's first report,
    /// an active attempt's end, and the queueing of the next attempt when the task is `Pending`
    /// again.
    fn stamp_phases(&mut self, event: &Event, from: TaskState, to: TaskState, now_ms: i64) {
        let a = self.attempt;
        let phase = match event {
            Event::Provision { .. } | Event::Reprovision { .. } => Some(Phase::Asked),
            Event::Started { .. } => Some(Phase::FirstReport),
            Event::GiveBack { attempt, .. } => {
                // No container was made: the attempt starts over, still queued since then.
                phases::restart(&mut self.phases, *attempt);
                None
            }
            _ if from.is_active() && (to.is_terminal() || to == TaskState::Pending) => {
                Some(Phase::Finished)
            }
            _ => None,
        };
        if let Some(p) = phase {
            phases::record(&mut self.phases, a, p, now_ms);
        }
        let requeued = matches!(event, Event::AttemptFailed { .. } | Event::Retry { .. });
        if requeued && to == TaskState::Pending {
            phases::record(&mut self.phases, a + 1, Phase::Queued, now_ms);
        }
    }

    /// Enters the step's state: its reason, times and timeline entry.
    fn enter(&mut self, step: Step, now_ms: i64) {
        let noted = match step.reason {
            Reason::Keep => false,
            Reason::Clear => {
                self.reason = None;
                true
            }
            Reason::Set(r) => {
                self.reason = Some(cut(&r, MAX_REASON_BYTES));
                true
            }
        };
        match step.to {
            TaskState::Pending => {
                self.provisioned_at_ms = None;
                self.started_at_ms = None;
                self.finished_at_ms = None;
            }
            // Re-entering Provisioning (a redelivered message) keeps when it was first asked for.
            TaskState::Provisioning => {
                self.provisioned_at_ms.get_or_insert(now_ms);
                self.started_at_ms = None;
                self.finished_at_ms = None;
            }
            TaskState::InProgress => self.started_at_ms = Some(now_ms),
            // Terminal.
            _ => self.finished_at_ms = Some(now_ms),
        }
        self.state = step.to;
        self.transitions.push(Transition {
            state: step.to,
            at_ms: now_ms,
            attempt: self.attempt,
            reason: self.reason.clone().filter(|_| noted),
        });
    }

    /// Whole seconds of the current attempt's container up to `end_ms`, if one was asked for:
    /// from its last `Provisioning` entry, rounded up, at least one.
    fn attempt_seconds(&self, end_ms: i64) -> Option<u64> {
        let start = self
            .transitions
            .iter()
            .rev()
            .find(|tr| tr.state == TaskState::Provisioning && tr.attempt == self.attempt)?
            .at_ms;
        Some(((end_ms - start).max(0) as u64).div_ceil(1000).max(1))
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
