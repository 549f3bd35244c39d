//! The one delivery policy: what to do with a queue message once its spawn was tried. Both
//! modes ask it: local mode's queue consumer (`queue::deliver`) and the Functions
//! `ServiceBusTrigger` adapter (`functions::deliver`); they differ only in how they carry a
//! [`Verdict`] out (a SQLite row updated, or an invocation answer the Functions host acts on).
//!
//! The rules, in order:
//! 1. A spawn that worked, or found its task's container already there, or its task finished,
//!    or was told "no room" by the global cap (the task stays `Pending` for the timer):
//!    [`Verdict::Complete`].
//! 2. A transient runtime error (unreachable, `Throttled`, `NotSetUp`: see
//!    `RuntimeError::is_transient`) says nothing about the message: try again later without
//!    counting the delivery, never dead-letter. The delay is the backoff for this delivery, or
//!    what the runtime asked for (`RuntimeError::retry_after`, e.g. ARM's `Retry-After`) when
//!    that is longer.
//! 3. A task scheduled later (`SpawnError::NotYet`: its `not_before_ms` is ahead): try again
//!    when it is due, without counting the delivery.
//! 4. A message that breaks a rule of the task's shape or a cap on waiting tasks
//!    (`SpawnError::Refused`) will never pass: dead-letter it at once with the reason.
//! 5. Any other error (invalid message, image missing, container rejected, store failure) is
//!    the message's own delivery: retried after a backoff while deliveries are left, and
//!    dead-lettered with the reason at the last one (`Settings::max_deliveries`).
//!
//! A message delivered more often than allowed before it could even be tried (a handler that
//! died in the middle of spawning it, every time) is dead-lettered unspawned ([`exhausted`]);
//! only local mode needs this, as Service Bus dead-letters at its own `MaxDeliveryCount`.
//!
//! Pure functions: no I/O, no clock; `tests` below is the whole table.

use crate::config::Settings;
use crate::spawn::{Outcome, SpawnError};
use std::time::Duration;

/// Longest wait between two tries of a message or a task (backoff cap).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the policy needs to know of the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deliveries of one message before it is dead-lettered (`--max-deliveries`).
    pub max_deliveries: u32,
    /// First retry delay; doubles per delivery up to [`MAX_BACKOFF`] (`--retry-backoff-ms`).
    pub backoff: Duration,
}

impl Limits {
    /// The limits `settings` give.
    pub fn of(settings: &Settings) -> Limits {
        Limits {
            max_deliveries: settings.max_deliveries,
            backoff: settings.retry_backoff,
        }
    }
}

/// What to do with a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done with it: remove it from the queue.
    Complete,
    /// Deliver it again after `delay`. `counts` is false when the failure was not the message's
    /// (a transient runtime error): the delivery is given back and never leads to a dead letter.
    RetryAfter {
        /// How long to wait first.
        delay: Duration,
        /// Whether this delivery counts towards `max_deliveries`.
        counts: bool,
    },
    /// Give up on it: dead-letter it and mark its task `DeadLettered` with `reason`.
    DeadLetter {
        /// Why, for the task and the dead-letter queue.
        reason: String,
    },
}

/// Exponential backoff from `base` for the `n`th try (1 = the first), capped at [`MAX_BACKOFF`].
pub fn backoff(n: u32, base: Duration) -> Duration {
    base.saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// The verdict on delivery number `delivery` (1 on the first) whose spawn gave `result`.
pub fn decide(result: Result<&Outcome, &SpawnError>, delivery: u32, limits: &Limits) -> Verdict {
    let e = match result {
        Ok(_) | Err(SpawnError::NoRoom(_)) => return Verdict::Complete,
        Err(e) => e,
    };
    match e {
        SpawnError::NotYet(due) => {
            return Verdict::RetryAfter {
                delay: *due,
                counts: false,
            }
        }
        SpawnError::Refused(why) => {
            return Verdict::DeadLetter {
                reason: format!("refused: {why}"),
            }
        }
        _ => {}
    }
    let wait = backoff(delivery, limits.backoff);
    if let SpawnError::Runtime(r) = e {
        if r.is_transient() {
            let delay = r.retry_after().map_or(wait, |asked| asked.max(wait));
            return Verdict::RetryAfter {
                delay,
                counts: false,
            };
        }
    }
    if delivery < limits.max_deliveries {
        return Verdict::RetryAfter {
            delay: wait,
            counts: true,
        };
    }
    Verdict::DeadLetter {
        reason: format!("dead-lettered after {delivery} deliveries: {e}"),
    }
}

/// Dead-letters delivery number `delivery` unspawned when it is past the limit (module docs).
pub fn exhausted(delivery: u32, limits: &Limits) -> Option<Verdict> {
    (delivery > limits.max_deliveries).then(|| Verdict::DeadLetter {
        reason: format!("dead-lettered after {delivery} deliveries: too many deliveries"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeError;
    use crate::store::StoreError;
    use model::TaskId;

    const BASE: Duration = Duration::from_millis(1000);
    const LIMITS: Limits = Limits {
        max_deliveries: 3,
        backoff: BASE,
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn retry(delay: Duration, counts: bool) -> Verdict {
        Verdict::RetryAfter { delay, counts }
    }

    fn dead(text: &str) -> Verdict {
        Verdict::DeadLetter {
            reason: text.to_string(),
        }
    }

    fn throttled(after: Option<u64>) -> SpawnError {
        SpawnError::Runtime(RuntimeError::Throttled {
            message: "429 TooManyRequests".into(),
            retry_after: after.map(secs),
            source: None,
        })
    }

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let table = [
            (0, 1_000),
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (5, 16_000),
            (6, 30_000),
            (40, 30_000),
            (u32::MAX, 30_000),
        ];
        for (n, ms) in table {
            assert_eq!(backoff(n, BASE), Duration::from_millis(ms), "n = {n}");
        }
        assert_eq!(backoff(7, Duration::ZERO), Duration::ZERO);
        assert_eq!(backoff(3, Duration::MAX), MAX_BACKOFF, "no overflow");
    }

    #[test]
    fn every_spawn_result_at_every_delivery_gets_its_verdict() {
        let id = TaskId::parse("t1").unwrap();
        let ok = [
            Outcome::Started(id.clone()),
            Outcome::AlreadyRunning(id.clone()),
            Outcome::Finished(id),
        ];
        for o in &ok {
            for n in [1, 3, 9] {
                assert_eq!(decide(Ok(o), n, &LIMITS), Verdict::Complete, "{o:?} #{n}");
            }
        }
        let rt = |e| SpawnError::Runtime(e);
        // (error, delivery, verdict): the whole table of failures.
        let table: Vec<(SpawnError, u32, Verdict)> = vec![
            (SpawnError::NoRoom("cap 1".into()), 1, Verdict::Complete),
            (SpawnError::NoRoom("cap 1".into()), 3, Verdict::Complete),
            // Transient: never counted, never dead-lettered, even past the limit.
            (
                rt(RuntimeError::unavailable("down")),
                1,
                retry(secs(1), false),
            ),
            (
                rt(RuntimeError::unavailable("down")),
                3,
                retry(secs(4), false),
            ),
            (
                rt(RuntimeError::unavailable("down")),
                7,
                retry(secs(30), false),
            ),
            (throttled(None), 2, retry(secs(2), false)),
            (throttled(Some(20)), 1, retry(secs(20), false)),
            (throttled(Some(20)), 3, retry(secs(20), false)),
            (throttled(Some(1)), 4, retry(secs(8), false)),
            (
                rt(RuntimeError::not_set_up("register")),
                1,
                retry(secs(60), false),
            ),
            (
                rt(RuntimeError::not_set_up("register")),
                9,
                retry(secs(60), false),
            ),
            // Scheduled later: not counted, retried when due, whatever the delivery.
            (SpawnError::NotYet(secs(7)), 1, retry(secs(7), false)),
            (SpawnError::NotYet(secs(7)), 9, retry(secs(7), false)),
            // Refused by a rule or a cap: dead-lettered at once, with the reason.
            (
                SpawnError::Refused("image_not_allowed: x".into()),
                1,
                dead("refused: image_not_allowed: x"),
            ),
            // Permanent: counted, retried while deliveries are left, dead-lettered at the last.
            (SpawnError::Invalid("empty".into()), 1, retry(secs(1), true)),
            (SpawnError::Invalid("empty".into()), 2, retry(secs(2), true)),
            (
                SpawnError::Invalid("empty".into()),
                3,
                dead("dead-lettered after 3 deliveries: invalid message: empty"),
            ),
            (rt(RuntimeError::rejected("quota")), 2, retry(secs(2), true)),
            (
                rt(RuntimeError::rejected("quota")),
                3,
                dead("dead-lettered after 3 deliveries: container rejected: quota"),
            ),
            (
                rt(RuntimeError::image_missing("x:1")),
                4,
                dead("dead-lettered after 4 deliveries: image not found: x:1"),
            ),
            (
                rt(RuntimeError::io("boom", std::io::Error::other("disk"))),
                1,
                retry(secs(1), true),
            ),
            (
                SpawnError::Store(StoreError::Unavailable("disk".into())),
                1,
                retry(secs(1), true),
            ),
            (
                SpawnError::Store(StoreError::Unavailable("disk".into())),
                3,
                dead("dead-lettered after 3 deliveries: the task store is unavailable: disk"),
            ),
        ];
        for (e, n, want) in table {
            assert_eq!(decide(Err(&e), n, &LIMITS), want, "{e} at delivery {n}");
        }
    }

    #[test]
    fn one_delivery_allowed_dead_letters_a_permanent_error_at_once() {
        let one = Limits {
            max_deliveries: 1,
            backoff: Duration::ZERO,
        };
        let e = SpawnError::Invalid("x".into());
        assert!(matches!(
            decide(Err(&e), 1, &one),
            Verdict::DeadLetter { .. }
        ));
        let down = SpawnError::Runtime(RuntimeError::unavailable("down"));
        assert_eq!(decide(Err(&down), 1, &one), retry(Duration::ZERO, false));
    }

    #[test]
    fn only_deliveries_past_the_limit_are_exhausted() {
        assert_eq!(exhausted(1, &LIMITS), None);
        assert_eq!(exhausted(3, &LIMITS), None, "the last allowed one is tried");
        assert_eq!(
            exhausted(4, &LIMITS),
            Some(dead(
                "dead-lettered after 4 deliveries: too many deliveries"
            ))
        );
    }
}
