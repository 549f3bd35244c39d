//! Unit tests of [`Task::apply`]: every event from every state, stale attempts, billing, the
//! timeline and the times.

use super::*;
use crate::limits::MAX_REASON_BYTES;
use crate::task::{Resources, TaskId};
use TaskState::*;

const RATES: Rates = Rates {
    cpu_second: 1.0,
    gb_second: 2.0,
};

/// 0.5 vCPU and 1 GiB: 2.5 per second at [`RATES`].
fn new_task(max_attempts: u32) -> Task {
    let r = Resources {
        cpu: 0.5,
        memory_mb: 1024,
    };
    Task::new(
        TaskId::parse("t1").unwrap(),
        "w".into(),
        r,
        max_attempts,
        60,
        1_000,
    )
}

fn provision(attempt: u32) -> Event {
    Event::Provision {
        attempt,
        container: format!("eda-t1-{attempt}"),
        token_hash: format!("hash-{attempt}"),
    }
}

fn failed(attempt: u32, code: Option<i64>) -> Event {
    Event::AttemptFailed {
        attempt,
        exit_code: code,
        reason: "boom".into(),
        retry_after: Duration::from_millis(1_500),
        result: None,
    }
}

fn ok(t: &Task, e: &Event, at: i64) -> Task {
    t.apply(e, at, &RATES)
        .unwrap_or_else(|err| panic!("{} from {}: {err}", e.name(), t.state))
}

/// A task in `state` at attempt 1 (the attempt budget is 1 for `Failed`, else 3).
fn in_state(state: TaskState) -> Task {
    let budget = if state == Failed { 1 } else { 3 };
    let p = ok(&new_task(budget), &provision(1), 2_000);
    let reason = || "why".to_string();
    match state {
        Pending => ok(&p, &failed(1, Some(3)), 3_000),
        Provisioning => p,
        InProgress => ok(&p, &Event::Started { attempt: 1 }, 3_000),
        Done => ok(&p, &succeeded(1), 3_000),
        Failed => ok(&p, &failed(1, Some(3)), 3_000),
        Cancelled => ok(&p, &Event::Cancel { reason: reason() }, 3_000),
        TimedOut => ok(
            &p,
            &Event::TimedOut {
                attempt: 1,
                reason: reason(),
            },
            3_000,
        ),
        DeadLettered => ok(&p, &Event::DeadLetter { reason: reason() }, 3_000),
    }
}

fn succeeded(attempt: u32) -> Event {
    Event::Succeeded {
        attempt,
        exit_code: 0,
        reason: None,
        result: None,
    }
}

/// One of every event, for a task at attempt `a`, with the states it is legal from (written
/// out here, independently of `Event::allowed_from`).
fn every_event(a: u32) -> Vec<(Event, &'static [TaskState])> {
    let reason = || "why".to_string();
    vec![
        (provision(a + 1), &[Pending]),
        (
            Event::Reprovision {
                attempt: a,
                container: "c".into(),
                token_hash: "h".into(),
            },
            &[Provisioning],
        ),
        (
            Event::Note {
                attempt: a,
                reason: reason(),
            },
            &[Provisioning],
        ),
        (
            Event::GiveBack {
                attempt: a,
                retry_at_ms: 9_000,
                reason: reason(),
            },
            &[Provisioning],
        ),
        (
            Event::Hold {
                attempt: a,
                retry_at_ms: 9_000,
                reason: reason(),
            },
            &[Pending],
        ),
        (Event::Started { attempt: a }, &[Provisioning]),
        (succeeded(a), &[Provisioning, InProgress]),
        (failed(a, Some(1)), &[Provisioning, InProgress]),
        (
            Event::TimedOut {
                attempt: a,
                reason: reason(),
            },
            &[Provisioning, InProgress],
        ),
        (
            Event::Cancel { reason: reason() },
            &[Pending, Provisioning, InProgress],
        ),
        (
            Event::Retry { attempt: a },
            &[Failed, Cancelled, TimedOut, DeadLettered],
        ),
        (
            Event::DeadLetter { reason: reason() },
            &[Pending, Provisioning],
        ),
        (mark(a, Phase::Removed, 4_500), &TaskState::ALL),
    ]
}

fn mark(attempt: u32, phase: Phase, at_ms: i64) -> Event {
    Event::Mark {
        attempt,
        marks: vec![phases::Mark { phase, at_ms }],
    }
}

/// The phases of `attempt` in `t`, in order, with their times.
fn marks(t: &Task, attempt: u32) -> Vec<(Phase, i64)> {
    t.clock(attempt)
        .map(|c| c.marks.iter().map(|m| (m.phase, m.at_ms)).collect())
        .unwrap_or_default()
}

#[test]
fn every_event_from_every_state_is_decided_by_the_table() {
    let mut decided = 0;
    for from in TaskState::ALL {
        let task = in_state(from);
        assert_eq!((task.state, task.attempt), (from, 1));
        for (event, legal) in every_event(task.attempt) {
            let got = task.apply(&event, 5_000, &RATES);
            match (legal.contains(&from), got) {
                (true, Ok(next)) if matches!(event, Event::Mark { .. }) => {
                    assert_eq!((next.state, &next.transitions), (from, &task.transitions));
                    assert_eq!(next.clock(1).unwrap().at(Phase::Removed), Some(4_500));
                }
                (true, Ok(next)) => {
                    let last = next.transitions.last().unwrap();
                    assert_eq!(
                        (last.state, last.at_ms),
                        (next.state, 5_000),
                        "{}",
                        event.name()
                    );
                    assert_eq!(next.transitions.len(), task.transitions.len() + 1);
                }
                (false, Err(LifecycleError::Illegal { from: f, event: e })) => {
                    assert_eq!((f, e), (from, event.name()));
                }
                (want, got) => panic!("{} from {from}: legal={want}, got {got:?}", event.name()),
            }
            decided += 1;
        }
    }
    assert_eq!(decided, TaskState::ALL.len() * 13);
}

#[test]
fn events_of_another_attempt_are_stale_from_every_state() {
    for from in TaskState::ALL {
        let task = in_state(from);
        for (event, _) in every_event(task.attempt + 1)
            .into_iter()
            .chain(every_event(0))
        {
            let got = task.apply(&event, 5_000, &RATES);
            match event {
                Event::Cancel { .. } | Event::DeadLetter { .. } => {} // name no attempt
                _ => assert!(
                    matches!(got, Err(LifecycleError::Stale { current: 1, .. })),
                    "{} from {from}: {got:?}",
                    event.name()
                ),
            }
        }
    }
}

#[test]
fn a_run_records_times_timeline_and_bill() {
    let t = new_task(3);
    let p = ok(&t, &provision(1), 2_000);
    assert_eq!(
        (p.attempt, p.container.as_deref(), p.provisioned_at_ms),
        (1, Some("eda-t1-1"), Some(2_000))
    );
    let noted = ok(
        &p,
        &Event::Note {
            attempt: 1,
            reason: "waiting".into(),
        },
        2_100,
    );
    assert_eq!(noted.reason.as_deref(), Some("waiting"));
    let re = ok(
        &noted,
        &Event::Reprovision {
            attempt: 1,
            container: "eda-t1-1".into(),
            token_hash: "h2".into(),
        },
        2_500,
    );
    assert_eq!(
        re.provisioned_at_ms,
        Some(2_000),
        "a re-entry keeps the first time"
    );
    assert_eq!(re.reason, None, "a new container clears the note");
    let run = ok(&re, &Event::Started { attempt: 1 }, 3_000);
    assert_eq!((run.started_at_ms, run.billed_seconds), (Some(3_000), 0));
    let done = ok(&run, &succeeded(1), 5_001);
    // Billed from the last Provisioning entry (2.5 s) to 5.001 s: 2.501 s, rounded up to 3.
    assert_eq!((done.billed_seconds, done.cost), (3, 7.5));
    assert_eq!(
        (done.exit_code, done.finished_at_ms),
        (Some(0), Some(5_001))
    );
    let steps: Vec<_> = done
        .transitions
        .iter()
        .map(|tr| (tr.state, tr.at_ms, tr.attempt, tr.reason.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [
            (Pending, 1_000, 0, None),
            (Provisioning, 2_000, 1, None),
            (Provisioning, 2_100, 1, Some("waiting")),
            (Provisioning, 2_500, 1, None),
            (InProgress, 3_000, 1, None),
            (Done, 5_001, 1, None),
        ]
    );
}

#[test]
fn a_failed_attempt_is_retried_while_attempts_are_left_and_bills_each_attempt() {
    let a1 = ok(&new_task(2), &provision(1), 2_000);
    let back = ok(&a1, &failed(1, Some(3)), 2_000);
    assert_eq!(
        (back.state, back.attempt, back.exit_code),
        (Pending, 1, Some(3))
    );
    assert_eq!(back.retry_at_ms, Some(3_500));
    assert_eq!(
        back.reason.as_deref(),
        Some("attempt 1/2 failed: boom; retrying in 1.5 s")
    );
    assert_eq!(
        (back.billed_seconds, back.provisioned_at_ms),
        (1, None),
        "at least one second"
    );
    let a2 = ok(&back, &provision(2), 4_000);
    assert_eq!((a2.retry_at_ms, a2.reason.as_deref()), (None, None));
    let end = ok(&a2, &failed(2, None), 6_000);
    assert_eq!((end.state, end.reason.as_deref()), (Failed, Some("boom")));
    assert_eq!(end.exit_code, Some(3), "no code leaves the last one");
    assert_eq!((end.billed_seconds, end.cost), (3, 7.5));
    assert_eq!(end.finished_at_ms, Some(6_000));
}

#[test]
fn a_person_retries_with_a_raised_budget() {
    let failed_task = in_state(Failed);
    assert_eq!(failed_task.max_attempts, 1);
    let again = ok(&failed_task, &Event::Retry { attempt: 1 }, 7_000);
    assert_eq!((again.state, again.max_attempts), (Pending, 2));
    assert_eq!(
        (again.exit_code, again.finished_at_ms, again.retry_at_ms),
        (None, None, None)
    );
    assert_eq!(again.reason.as_deref(), Some(RETRY_REASON));
    assert_eq!(
        again.billed_seconds, failed_task.billed_seconds,
        "nothing ran"
    );
    let next = ok(&again, &provision(2), 8_000);
    assert_eq!(next.attempt, 2);
}

#[test]
fn a_given_back_attempt_is_restored_and_not_billed() {
    let p = ok(&new_task(3), &provision(1), 2_000);
    let e = Event::GiveBack {
        attempt: 1,
        retry_at_ms: 9_000,
        reason: "no room".into(),
    };
    let back = ok(&p, &e, 60_000);
    assert_eq!(
        (back.state, back.attempt, back.retry_at_ms),
        (Pending, 0, Some(9_000))
    );
    assert_eq!((back.billed_seconds, back.cost), (0, 0.0));
    assert_eq!(back.provisioned_at_ms, None);
    assert_eq!(back.transitions.last().unwrap().attempt, 0);
    assert_eq!(ok(&back, &provision(1), 61_000).attempt, 1);
}

#[test]
fn cancel_and_dead_letter_bill_only_an_active_attempt() {
    let pending = new_task(3);
    let c = ok(&pending, &Event::Cancel { reason: "x".into() }, 5_000);
    assert_eq!(
        (c.state, c.billed_seconds, c.finished_at_ms),
        (Cancelled, 0, Some(5_000))
    );
    let running = in_state(InProgress);
    let c = ok(&running, &Event::Cancel { reason: "x".into() }, 4_000);
    assert_eq!((c.billed_seconds, c.cost), (2, 5.0));
    let dl = ok(
        &in_state(Provisioning),
        &Event::DeadLetter { reason: "x".into() },
        2_000,
    );
    assert_eq!((dl.state, dl.billed_seconds), (DeadLettered, 1));
    let t = ok(
        &running,
        &Event::TimedOut {
            attempt: 1,
            reason: "slow".into(),
        },
        62_000,
    );
    assert_eq!((t.state, t.billed_seconds), (TimedOut, 60));
}

#[test]
fn reasons_are_cut_and_kept_when_not_given() {
    let long = "é".repeat(MAX_REASON_BYTES);
    let t = ok(
        &in_state(Provisioning),
        &Event::Cancel { reason: long },
        3_000,
    );
    let r = t.reason.unwrap();
    assert!(
        r.len() <= MAX_REASON_BYTES && r.len() > MAX_REASON_BYTES - 2,
        "{}",
        r.len()
    );
    let noted = ok(
        &in_state(Provisioning),
        &Event::Started { attempt: 1 },
        3_000,
    )
    .reason;
    assert_eq!(noted, None);
    let done = Event::Succeeded {
        attempt: 1,
        exit_code: 0,
        reason: Some("exited 0 without reporting".into()),
        result: None,
    };
    let d = ok(&in_state(Provisioning), &done, 3_000);
    assert_eq!(
        d.transitions.last().unwrap().reason.as_deref(),
        d.reason.as_deref()
    );
    assert_eq!(cut("héllo", 2), "h");
    assert_eq!(cut("abc", 10), "abc");
}

#[test]
fn only_provisions_carry_a_token() {
    for (e, _) in every_event(1) {
        let has = matches!(e, Event::Provision { .. } | Event::Reprovision { .. });
        assert_eq!(e.token_hash().is_some(), has, "{}", e.name());
    }
}

#[test]
fn a_mark_needs_an_attempt() {
    let fresh = new_task(1);
    let got = fresh.apply(&mark(0, Phase::Dequeued, 1_500), 1_500, &RATES);
    assert_eq!(
        got,
        Err(LifecycleError::Illegal {
            from: Pending,
            event: "Mark"
        })
    );
}

#[test]
fn state_changes_stamp_their_phases_and_marks_add_the_rest() {
    use Phase::*;
    let t = new_task(2);
    assert_eq!(marks(&t, 1), [(Queued, 1_000)], "accepted = queued");
    let t = ok(&t, &provision(1), 2_000);
    let t = ok(&t, &mark(1, Dequeued, 1_900), 2_100);
    let t = ok(&t, &mark(1, Started, 2_200), 2_200);
    let t = ok(&t, &Event::Started { attempt: 1 }, 2_500);
    let t = ok(&t, &failed(1, Some(1)), 3_000);
    assert_eq!(
        marks(&t, 1),
        [
            (Queued, 1_000),
            (Dequeued, 1_900),
            (Asked, 2_000),
            (Started, 2_200),
            (FirstReport, 2_500),
            (Finished, 3_000)
        ]
    );
    assert_eq!(marks(&t, 2), [(Queued, 3_000)], "the retry is queued");
    // The old attempt's container is cleaned up while the task waits for its retry.
    let t = ok(&t, &mark(1, Removed, 3_100), 3_100);
    assert_eq!(t.clock(1).unwrap().at(Removed), Some(3_100));
    let t = ok(&t, &provision(2), 4_000);
    let t = ok(&t, &succeeded(2), 5_000);
    assert_eq!(
        marks(&t, 2),
        [(Queued, 3_000), (Asked, 4_000), (Finished, 5_000)]
    );
    let stale = t.apply(&mark(1, LogsCaptured, 5_100), 5_100, &RATES);
    assert!(matches!(stale, Err(LifecycleError::Stale { .. })));
    let t = ok(&t, &mark(2, LogsCaptured, 5_100), 5_100);
    assert_eq!(t.state, Done, "a mark after the end changes no state");
}

#[test]
fn a_redelivery_keeps_the_first_ask_and_a_give_back_restarts_the_clock() {
    use Phase::*;
    let t = ok(&new_task(1), &provision(1), 2_000);
    let again = Event::Reprovision {
        attempt: 1,
        container: "c".into(),
        token_hash: "h".into(),
    };
    let t = ok(&t, &again, 2_500);
    assert_eq!(marks(&t, 1), [(Queued, 1_000), (Asked, 2_000)]);
    let back = Event::GiveBack {
        attempt: 1,
        retry_at_ms: 9_000,
        reason: "no room".into(),
    };
    let t = ok(&t, &back, 3_000);
    assert_eq!(
        marks(&t, 1),
        [(Queued, 1_000)],
        "still queued since acceptance"
    );
    let t = ok(&t, &provision(1), 4_000);
    assert_eq!(marks(&t, 1), [(Queued, 1_000), (Asked, 4_000)]);
}

#[test]
fn ends_stamp_finished_only_for_an_active_attempt() {
    use Phase::*;
    let cancel = Event::Cancel { reason: "x".into() };
    let t = ok(&new_task(1), &cancel, 1_500);
    assert_eq!(marks(&t, 1), [(Queued, 1_000)], "nothing ran");
    let p = ok(&new_task(1), &provision(1), 2_000);
    let t = ok(&p, &cancel, 2_500);
    assert_eq!(t.clock(1).unwrap().at(Finished), Some(2_500));
    let dead = Event::DeadLetter { reason: "x".into() };
    assert_eq!(
        ok(&p, &dead, 2_600).clock(1).unwrap().at(Finished),
        Some(2_600)
    );
    let timed = Event::TimedOut {
        attempt: 1,
        reason: "x".into(),
    };
    let t = ok(&p, &timed, 2_700);
    assert_eq!(t.clock(1).unwrap().at(Finished), Some(2_700));
    let t = ok(&t, &Event::Retry { attempt: 1 }, 2_800);
    assert_eq!(
        marks(&t, 2),
        [(Queued, 2_800)],
        "a person's retry is queued"
    );
}

#[test]
fn stored_tasks_without_a_clock_still_load() {
    let mut json = serde_json::to_value(new_task(1)).unwrap();
    json.as_object_mut().unwrap().remove("phases");
    let t: Task = serde_json::from_value(json).unwrap();
    assert!(t.phases.is_empty());
    let t = ok(&t, &provision(1), 2_000);
    assert_eq!(marks(&t, 1), [(Phase::Asked, 2_000)]);
}

#[test]
fn a_hold_keeps_a_pending_task_pending_due_later_with_its_reason() {
    let pending = in_state(Pending);
    let held = ok(
        &pending,
        &Event::Hold {
            attempt: 1,
            retry_at_ms: 7_000,
            reason: "key k is at its cap".into(),
        },
        6_000,
    );
    assert_eq!(
        (held.state, held.attempt, held.retry_at_ms),
        (Pending, 1, Some(7_000))
    );
    assert_eq!(held.reason.as_deref(), Some("key k is at its cap"));
    assert_eq!(
        (held.billed_seconds, held.cost),
        (pending.billed_seconds, pending.cost),
        "a hold bills nothing"
    );
    // The next provision clears the schedule as it does after a retry.
    let next = ok(&held, &provision(2), 8_000);
    assert_eq!((next.state, next.retry_at_ms), (Provisioning, None));
}

#[test]
fn the_result_of_the_attempt_that_ended_last_is_kept() {
    let result = |text: &str| {
        Some(crate::TaskResult {
            text: text.into(),
            truncated: false,
            bytes: text.len() as u64,
        })
    };
    let mut t = in_state(InProgress);
    t.max_attempts = 2;
    let failed = Event::AttemptFailed {
        attempt: 1,
        exit_code: Some(3),
        reason: "boom".into(),
        retry_after: Duration::from_millis(10),
        result: result("partial"),
    };
    let retried = ok(&t, &failed, 2_000);
    assert_eq!(retried.state, Pending);
    assert_eq!(
        retried.result,
        result("partial"),
        "kept while the next waits"
    );
    let mut second = ok(
        &retried,
        &Event::Provision {
            attempt: 2,
            container: "c".into(),
            token_hash: "h".into(),
        },
        3_000,
    );
    second = ok(&second, &Event::Started { attempt: 2 }, 3_100);
    let done = Event::Succeeded {
        attempt: 2,
        exit_code: 0,
        reason: None,
        result: result("42"),
    };
    let d = ok(&second, &done, 4_000);
    assert_eq!(d.state, Done);
    assert_eq!(d.result, result("42"));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["result"]["text"], "42");
    let none = Event::Succeeded {
        attempt: 2,
        exit_code: 0,
        reason: None,
        result: None,
    };
    let plain = ok(&second, &none, 4_000);
    assert!(
        serde_json::to_value(&plain)
            .unwrap()
            .get("result")
            .is_none(),
        "no result, no field"
    );
}
