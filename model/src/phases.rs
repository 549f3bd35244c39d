//! The phase clock: when each phase of each attempt happened, so a user (the details panel's
//! waterfall) and an operator (`/metrics`' histograms) can see where the time of a start went.
//!
//! Marks are set only through the lifecycle (`Task::apply`): state changes stamp their own phase
//! (asked for, first report, finished), and `Event::Mark` carries the phases that are not state
//! changes (taken from the queue, container started, first output, exit, logs, removed), so the
//! stores stay dumb.

use serde::{Deserialize, Serialize};

/// At most this many attempts keep their clock (the newest ones): a task retried many times
/// keeps a bounded document.
pub const MAX_CLOCKS: usize = 5;

/// How far from the handler's clock a time the worker reports (first output, exit) may be: a
/// day covers any clock skew between machines; anything further is a broken or lying clock.
pub const MAX_REPORTED_SKEW_MS: i64 = 24 * 3600 * 1000;

/// One phase of an attempt, in the order they normally happen. The order is stable (the wire
/// names are snake_case and never renamed): the waterfall draws in it and a phase's duration
/// is measured from the nearest earlier phase that the attempt has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The attempt's message was put on the queue (accepted by the API, or requeued for a retry).
    Queued,
    /// The message was taken from the queue (local consumer) or its invocation was received
    /// (Service Bus trigger).
    Dequeued,
    /// The attempt was recorded and its container asked for (`Provisioning`).
    Asked,
    /// The runtime created the container (for runtimes that report creation on its own; the
    /// local runtimes create and start in one call and mark [`Phase::Started`]).
    Created,
    /// A ready container was claimed from a warm pool instead of being created.
    Claimed,
    /// The runtime's create-and-start call returned: the container runs.
    Started,
    /// The worker's first report (`InProgress`) arrived.
    FirstReport,
    /// The work first wrote output (the worker's clock, sent in its final report).
    FirstOutput,
    /// The work's process exited (the worker's clock, sent in its final report).
    Exited,
    /// The attempt's end was recorded: the worker's final report, or the reconciler found the
    /// container exited, timed out or cancelled.
    Finished,
    /// The container's output was captured into the store.
    LogsCaptured,
    /// The container was removed.
    Removed,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 12] = [
        Phase::Queued,
        Phase::Dequeued,
        Phase::Asked,
        Phase::Created,
        Phase::Claimed,
        Phase::Started,
        Phase::FirstReport,
        Phase::FirstOutput,
        Phase::Exited,
        Phase::Finished,
        Phase::LogsCaptured,
        Phase::Removed,
    ];

    /// The wire name (`queued`, `first_report`, ...), also the Prometheus label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Dequeued => "dequeued",
            Phase::Asked => "asked",
            Phase::Created => "created",
            Phase::Claimed => "claimed",
            Phase::Started => "started",
            Phase::FirstReport => "first_report",
            Phase::FirstOutput => "first_output",
            Phase::Exited => "exited",
            Phase::Finished => "finished",
            Phase::LogsCaptured => "logs_captured",
            Phase::Removed => "removed",
        }
    }

    /// What the phase means, for people (the waterfall's labels).
    pub fn label(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Dequeued => "taken from queue",
            Phase::Asked => "container asked for",
            Phase::Created => "created",
            Phase::Claimed => "claimed from pool",
            Phase::Started => "started",
            Phase::FirstReport => "worker's first report",
            Phase::FirstOutput => "first output",
            Phase::Exited => "exit",
            Phase::Finished => "final report",
            Phase::LogsCaptured => "logs captured",
            Phase::Removed => "removed",
        }
    }
}

/// One phase of an attempt and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The phase.
    pub phase: Phase,
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
}

/// The phases of one attempt, kept in [`Phase`] order, each at most once (the first time it
/// happened: a redelivery that asks for the container again keeps the first "asked").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptClock {
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// Its marks, in phase order.
    pub marks: Vec<Mark>,
}

impl AttemptClock {
    /// When `phase` happened, if it did.
    pub fn at(&self, phase: Phase) -> Option<i64> {
        self.marks
            .iter()
            .find(|m| m.phase == phase)
            .map(|m| m.at_ms)
    }

    /// Records `phase` at `at_ms` unless it is already there; true if it was recorded.
    fn mark(&mut self, phase: Phase, at_ms: i64) -> bool {
        match self.marks.binary_search_by_key(&phase, |m| m.phase) {
            Ok(_) => false,
            Err(i) => {
                self.marks.insert(i, Mark { phase, at_ms });
                true
            }
        }
    }

    /// How long `phase` took: from the nearest earlier phase this attempt has to `phase`
    /// (never negative: clocks of two machines may disagree), if both are there.
    pub fn duration_ms(&self, phase: Phase) -> Option<i64> {
        let i = self.marks.iter().position(|m| m.phase == phase)?;
        let prev = self.marks[..i].last()?;
        Some((self.marks[i].at_ms - prev.at_ms).max(0))
    }

    /// Milliseconds from `from` to `to`, if both happened.
    pub fn between(&self, from: Phase, to: Phase) -> Option<i64> {
        Some(self.at(to)? - self.at(from)?)
    }
}

/// Records `phase` at `at_ms` on `attempt`'s clock in `clocks` (making the clock if it is new,
/// dropping the oldest past [`MAX_CLOCKS`]); true if it was not there yet.
pub fn record(clocks: &mut Vec<AttemptClock>, attempt: u32, phase: Phase, at_ms: i64) -> bool {
    let i = match clocks.iter().position(|c| c.attempt == attempt) {
        Some(i) => i,
        None => {
            let at = clocks.partition_point(|c| c.attempt < attempt);
            clocks.insert(
                at,
                AttemptClock {
                    attempt,
                    marks: Vec::new(),
                },
            );
            at
        }
    };
    let fresh = clocks[i].mark(phase, at_ms);
    let excess = clocks.len().saturating_sub(MAX_CLOCKS);
    clocks.drain(..excess);
    fresh
}

/// Starts `attempt`'s clock over from its queueing (an attempt given back before it got a
/// container is queued again: it keeps when it was first queued, nothing else).
pub fn restart(clocks: &mut [AttemptClock], attempt: u32) {
    for c in clocks.iter_mut().filter(|c| c.attempt == attempt) {
        c.marks.retain(|m| m.phase == Phase::Queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_listed_in_order_with_unique_names() {
        let mut sorted = Phase::ALL;
        sorted.sort();
        assert_eq!(sorted, Phase::ALL);
        for p in Phase::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), p);
        }
    }

    #[test]
    fn marks_keep_phase_order_and_the_first_time() {
        let mut clocks = Vec::new();
        assert!(record(&mut clocks, 1, Phase::FirstReport, 300));
        assert!(record(&mut clocks, 1, Phase::Queued, 100));
        assert!(record(&mut clocks, 1, Phase::Asked, 150));
        assert!(!record(&mut clocks, 1, Phase::Asked, 999), "first one wins");
        let c = &clocks[0];
        let order: Vec<Phase> = c.marks.iter().map(|m| m.phase).collect();
        assert_eq!(order, [Phase::Queued, Phase::Asked, Phase::FirstReport]);
        assert_eq!(c.at(Phase::Asked), Some(150));
        assert_eq!(c.duration_ms(Phase::Queued), None, "nothing before it");
        assert_eq!(c.duration_ms(Phase::Asked), Some(50));
        assert_eq!(c.duration_ms(Phase::FirstReport), Some(150), "from asked");
        assert_eq!(c.between(Phase::Queued, Phase::FirstReport), Some(200));
        assert_eq!(c.duration_ms(Phase::Removed), None);
    }

    #[test]
    fn durations_are_never_negative() {
        let mut clocks = Vec::new();
        record(&mut clocks, 1, Phase::Exited, 500);
        record(&mut clocks, 1, Phase::Finished, 400);
        assert_eq!(clocks[0].duration_ms(Phase::Finished), Some(0));
    }

    #[test]
    fn only_the_newest_attempts_are_kept() {
        let mut clocks = Vec::new();
        for a in 1..=(MAX_CLOCKS as u32 + 3) {
            record(&mut clocks, a, Phase::Queued, i64::from(a));
        }
        let kept: Vec<u32> = clocks.iter().map(|c| c.attempt).collect();
        let want: Vec<u32> = (4..=MAX_CLOCKS as u32 + 3).collect();
        assert_eq!(kept, want);
        record(&mut clocks, 5, Phase::Asked, 9);
        restart(&mut clocks, 5);
        let five = clocks.iter().find(|c| c.attempt == 5).unwrap();
        assert_eq!(
            five.marks,
            [Mark {
                phase: Phase::Queued,
                at_ms: 5
            }]
        );
    }
}
