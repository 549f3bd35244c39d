//! The one conformance suite every [`TaskStore`] backend must pass: SQLite
//! (`tests/store_sqlite.rs`), MongoDB (`tests/mongo_store.rs`, against a server or the stand-in)
//! and the in-memory store (`tests/store_memory.rs`). Each check starts from tasks with fresh
//! ids, so backends may be shared.

use handler::store::{ListFilter, StoreError, TaskStore};
use model::{Event, LifecycleError, Logs, MetricSample, Rates, Resources, Task, TaskId, TaskState};
use std::sync::Arc;

/// 1 per vCPU-second, 0 per GB-second: a task of 1 vCPU costs its billed seconds.
const RATES: Rates = Rates {
    cpu_second: 1.0,
    gb_second: 0.0,
};

fn id(prefix: &str, n: usize) -> TaskId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    TaskId::parse(&format!("{prefix}-{:x}-{n}", nanos % 0xffff_ffff_ffff)).unwrap()
}

fn task(prefix: &str, n: usize) -> Task {
    let r = Resources {
        cpu: 1.0,
        memory_mb: 256,
    };
    Task::new(
        id(prefix, n),
        format!("work {n}"),
        r,
        3,
        60,
        1_000 + n as i64,
    )
}

fn provision(attempt: u32) -> Event {
    Event::Provision {
        attempt,
        container: format!("c-{attempt}"),
        token_hash: format!("hash-{attempt}"),
    }
}

fn reprovision(attempt: u32) -> Event {
    Event::Reprovision {
        attempt,
        container: format!("c-{attempt}"),
        token_hash: format!("hash-{attempt}-again"),
    }
}

fn cancel() -> Event {
    Event::Cancel {
        reason: "cancelled".into(),
    }
}

/// Applies `event` at `at` through the store.
async fn up(s: &dyn TaskStore, id: &TaskId, event: Event, at: i64) -> Result<Task, StoreError> {
    s.update(id, &event, at, &RATES).await
}

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn TaskStore>) {
    insert_is_idempotent(&*store).await;
    lifecycle_and_timeline(&*store).await;
    illegal_and_stale_changes_leave_the_task_alone(&*store).await;
    listing_pages_filters_and_counts(&*store).await;
    logs_and_metrics(&*store).await;
    concurrent_updates_lose_nothing(store.clone()).await;
    concurrent_events_are_compared_and_set(store.clone()).await;
    logs_are_capped_to_their_tail(&*store).await;
    remove_finished_keeps_the_rest(&*store).await;
    batches_show_in_submission_order_and_offsets_jump(&*store).await;
    counts_stay_exact_through_every_change(&*store).await;
    a_time_window_lists_the_unfinished_and_the_recently_finished(&*store).await;
    a_keys_active_tasks_are_listed_and_only_those(&*store).await;
    waiting_tasks_are_counted_and_capped(&*store).await;
}

/// `active_with_key`: the tasks of one concurrency key in `Provisioning` or `InProgress`; not
/// its pending or finished ones, not another key's, not unkeyed ones.
async fn a_keys_active_tasks_are_listed_and_only_those(s: &dyn TaskStore) {
    let key = id("key", 0).to_string();
    let other = format!("{key}-other");
    let mut tasks: Vec<Task> = (0..6).map(|n| task("keyed", n)).collect();
    for (n, t) in tasks.iter_mut().enumerate() {
        t.key = match n {
            4 => Some(other.clone()),
            5 => None,
            _ => Some(key.clone()),
        };
    }
    s.insert(&tasks).await.unwrap();
    assert!(
        s.active_with_key(&key).await.unwrap().is_empty(),
        "all pending"
    );
    // 0: provisioning, 1: in progress, 2: finished, 3: still pending, 4 and 5 running.
    for n in [0, 1, 2, 4, 5] {
        up(s, &tasks[n].id, provision(1), 2_000).await.unwrap();
    }
    up(s, &tasks[1].id, Event::Started { attempt: 1 }, 2_100)
        .await
        .unwrap();
    up(s, &tasks[2].id, cancel(), 2_200).await.unwrap();
    let ids = |v: Vec<Task>| {
        let mut ids: Vec<TaskId> = v.into_iter().map(|t| t.id).collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    };
    assert_eq!(
        ids(s.active_with_key(&key).await.unwrap()),
        ids(vec![tasks[0].clone(), tasks[1].clone()])
    );
    assert_eq!(
        ids(s.active_with_key(&other).await.unwrap()),
        vec![tasks[4].id.clone()]
    );
    assert!(s.active_with_key("no-such-key").await.unwrap().is_empty());
}

/// `pending` counts waiting tasks in all and per key; `insert_capped` refuses a whole batch over
/// a cap (nothing of it stored) and takes one within; the shape fields round-trip.
async fn waiting_tasks_are_counted_and_capped(s: &dyn TaskStore) {
    use model::shape::QueueCaps;
    let key = id("key", 0).to_string();
    let keyed = |n: usize| {
        let mut t = task("capped", n);
        t.key = Some(key.clone());
        t.priority = 7;
        t.not_before_ms = Some(5_000);
        t.labels.insert("team".into(), "blue".into());
        t
    };
    let all_before = s.pending(None).await.unwrap();
    let first: Vec<Task> = (0..3).map(keyed).chain([task("plain", 0)]).collect();
    let stored = s.insert(&first).await.unwrap();
    assert_eq!(stored, first, "the shape fields round-trip");
    assert_eq!(s.get(&first[0].id).await.unwrap().unwrap(), first[0]);
    assert_eq!(s.pending(Some(&key)).await.unwrap(), 3);
    assert_eq!(s.pending(None).await.unwrap(), all_before + 4);
    up(s, &first[0].id, provision(1), 2_000).await.unwrap();
    assert_eq!(
        s.pending(Some(&key)).await.unwrap(),
        2,
        "a started task no longer waits"
    );

    let per_key = QueueCaps {
        max_queued: 0,
        max_queued_per_key: 3,
    };
    let over: Vec<Task> = (10..12).map(keyed).collect();
    match s.insert_capped(&over, per_key).await {
        Err(StoreError::OverCap {
            cap: "max_queued_per_key",
            limit: 3,
            queued: 2,
            key: Some(k),
        }) => assert_eq!(k, key),
        other => panic!("two more of the key are over its cap of 3: {other:?}"),
    }
    for t in &over {
        assert_eq!(
            s.get(&t.id).await.unwrap(),
            None,
            "nothing of a refused batch"
        );
    }
    let within = vec![keyed(20)];
    assert_eq!(s.insert_capped(&within, per_key).await.unwrap(), within);
    assert_eq!(s.pending(Some(&key)).await.unwrap(), 3);

    let waiting = s.pending(None).await.unwrap();
    let in_all = QueueCaps {
        max_queued: waiting + 1,
        max_queued_per_key: 0,
    };
    let two = vec![task("all", 1), task("all", 2)];
    assert!(
        matches!(
            s.insert_capped(&two, in_all).await,
            Err(StoreError::OverCap {
                cap: "max_queued",
                ..
            })
        ),
        "two more are over the cap in all"
    );
    assert_eq!(s.get(&two[0].id).await.unwrap(), None);
    let one = vec![task("all", 3)];
    assert_eq!(s.insert_capped(&one, in_all).await.unwrap(), one);
    assert_eq!(s.pending(None).await.unwrap(), waiting + 1);
}

/// `active_since_ms` (a timeline's window): unfinished tasks, and finished ones that ended at
/// or after the time, newest first; tasks that ended earlier are left out.
async fn a_time_window_lists_the_unfinished_and_the_recently_finished(s: &dyn TaskStore) {
    let tasks: Vec<Task> = (0..4).map(|n| task("win", n)).collect();
    s.insert(&tasks).await.unwrap();
    up(s, &tasks[1].id, cancel(), 1_000_000_000).await.unwrap();
    up(s, &tasks[2].id, cancel(), 2_000_000_000).await.unwrap();
    up(s, &tasks[3].id, provision(1), 2_000_000_000)
        .await
        .unwrap();
    let since = 1_500_000_000;
    let page = s
        .list(&ListFilter {
            states: vec![],
            limit: 1000,
            cursor: None,
            offset: 0,
            active_since_ms: Some(since),
        })
        .await
        .unwrap();
    for t in &page.tasks {
        assert!(
            !t.state.is_terminal() || t.finished_at_ms.is_some_and(|at| at >= since),
            "outside the window: {t:?}"
        );
    }
    let ids: Vec<&TaskId> = page.tasks.iter().map(|t| &t.id).collect();
    for (n, want) in [(0, true), (1, false), (2, true), (3, true)] {
        assert_eq!(
            ids.contains(&&tasks[n].id),
            want,
            "task {n} of the window test"
        );
    }
    let pos = |n: usize| ids.iter().position(|i| **i == tasks[n].id).unwrap();
    assert!(
        pos(0) < pos(2) && pos(2) < pos(3),
        "newest first, a batch in submission order"
    );
}

async fn insert_is_idempotent(s: &dyn TaskStore) {
    let t = task("ins", 0);
    assert_eq!(
        s.insert(std::slice::from_ref(&t)).await.unwrap(),
        vec![t.clone()]
    );
    up(s, &t.id, provision(1), 2_000).await.unwrap();
    let again = s.insert(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(
        again[0].state,
        TaskState::Provisioning,
        "a second insert must not reset the task"
    );
    assert!(s.get(&id("absent", 0)).await.unwrap().is_none());
}

async fn lifecycle_and_timeline(s: &dyn TaskStore) {
    let t = task("life", 0);
    s.insert(std::slice::from_ref(&t)).await.unwrap();
    up(s, &t.id, provision(1), 2_000).await.unwrap();
    assert_eq!(
        s.token_hash(&t.id).await.unwrap().as_deref(),
        Some("hash-1")
    );
    up(s, &t.id, Event::Started { attempt: 1 }, 3_000)
        .await
        .unwrap();
    assert_eq!(
        s.token_hash(&t.id).await.unwrap().as_deref(),
        Some("hash-1"),
        "an event without a token keeps the stored one"
    );
    let done = Event::Succeeded {
        attempt: 1,
        exit_code: 0,
        reason: None,
    };
    let got = up(s, &t.id, done, 4_000).await.unwrap();
    assert_eq!(
        got,
        s.get(&t.id).await.unwrap().unwrap(),
        "update returns what is stored"
    );
    let states: Vec<_> = got.transitions.iter().map(|t| (t.state, t.at_ms)).collect();
    assert_eq!(
        states,
        [
            (TaskState::Pending, 1_000),
            (TaskState::Provisioning, 2_000),
            (TaskState::InProgress, 3_000),
            (TaskState::Done, 4_000)
        ]
    );
    assert_eq!(
        (
            got.exit_code,
            got.billed_seconds,
            got.started_at_ms,
            got.finished_at_ms
        ),
        (Some(0), 2, Some(3_000), Some(4_000))
    );
    assert_eq!(
        got.cost, 2.0,
        "billed by apply at the rates given to the store"
    );
    assert!(!s.unfinished().await.unwrap().iter().any(|u| u.id == t.id));
}

async fn illegal_and_stale_changes_leave_the_task_alone(s: &dyn TaskStore) {
    let t = task("bad", 0);
    s.insert(std::slice::from_ref(&t)).await.unwrap();
    let err = up(s, &t.id, Event::Started { attempt: 0 }, 2_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                source: LifecycleError::Illegal { .. },
                ..
            }
        ),
        "{err}"
    );
    up(s, &t.id, provision(1), 2_000).await.unwrap();
    assert!(matches!(
        up(s, &t.id, Event::Started { attempt: 7 }, 3_000).await,
        Err(StoreError::Refused {
            source: LifecycleError::Stale { .. },
            ..
        })
    ));
    let now = s.get(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (now.state, now.transitions.len()),
        (TaskState::Provisioning, 2)
    );
    let missing = up(s, &id("nope", 0), cancel(), 1).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
    assert!(s.unfinished().await.unwrap().iter().any(|u| u.id == t.id));
}

async fn listing_pages_filters_and_counts(s: &dyn TaskStore) {
    let tasks: Vec<Task> = (0..25).map(|n| task("list", n)).collect();
    s.insert(&tasks).await.unwrap();
    for t in tasks.iter().take(5) {
        up(s, &t.id, cancel(), 5_000).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list(&ListFilter {
                states: vec![],
                limit: 7,
                cursor: cursor.clone(),
                offset: 0,
                active_since_ms: None,
            })
            .await
            .unwrap();
        assert!(page.tasks.len() <= 7);
        assert!(
            page.tasks.iter().all(|t| t.transitions.is_empty()),
            "pages carry no timelines"
        );
        seen.extend(page.tasks.iter().map(|t| t.id.clone()));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let ours: Vec<_> = seen
        .iter()
        .filter(|i| i.as_str().starts_with("list-"))
        .cloned()
        .collect();
    let expected: Vec<_> = tasks.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ours, expected, "one batch, in submission order, each once");
    let cancelled = s
        .list(&ListFilter {
            states: vec![TaskState::Cancelled],
            limit: 100,
            cursor: None,
            offset: 0,
            active_since_ms: None,
        })
        .await
        .unwrap();
    assert!(cancelled
        .tasks
        .iter()
        .all(|t| t.state == TaskState::Cancelled));
    assert!(cancelled.tasks.len() >= 5);
    assert!(
        cancelled.counts[&TaskState::Cancelled] >= 5 && cancelled.counts[&TaskState::Pending] >= 20
    );
    let bad = s
        .list(&ListFilter {
            states: vec![],
            limit: 5,
            cursor: Some("not-a-cursor".into()),
            offset: 0,
            active_since_ms: None,
        })
        .await;
    assert!(matches!(bad, Err(StoreError::BadCursor)));
}

async fn logs_and_metrics(s: &dyn TaskStore) {
    let t = task("obs", 0);
    s.insert(std::slice::from_ref(&t)).await.unwrap();
    assert!(s.logs(&t.id).await.unwrap().is_none());
    let logs = Logs {
        text: "line 1\nline <b>2</b>\n".into(),
        truncated: true,
    };
    s.put_logs(&t.id, &logs).await.unwrap();
    s.put_logs(&t.id, &logs).await.unwrap();
    assert_eq!(s.logs(&t.id).await.unwrap(), Some(logs));
    let samples: Vec<_> = (0..5)
        .map(|i| MetricSample {
            at_ms: 10 + i,
            cpu_percent: i as f64 * 1.5,
            memory_bytes: 1 << 20,
        })
        .collect();
    s.add_metrics(&t.id, &samples[..3]).await.unwrap();
    s.add_metrics(&t.id, &samples[3..]).await.unwrap();
    assert_eq!(s.metrics(&t.id).await.unwrap(), samples);
}

async fn concurrent_updates_lose_nothing(s: Arc<dyn TaskStore>) {
    let tasks: Vec<Task> = (0..20).map(|n| task("conc", n)).collect();
    s.insert(&tasks).await.unwrap();
    let mut handles = Vec::new();
    for t in &tasks {
        for event in [provision(1), cancel()] {
            let (s, id) = (s.clone(), t.id.clone());
            handles.push(tokio::spawn(async move {
                let ok = up(&*s, &id, event, 9_000).await.is_ok();
                (id, ok)
            }));
        }
    }
    let mut applied = std::collections::HashMap::new();
    for h in handles {
        let (id, ok) = h.await.unwrap();
        *applied.entry(id).or_insert(0usize) += usize::from(ok);
    }
    for t in &tasks {
        let got = s.get(&t.id).await.unwrap().unwrap();
        // Every update that reported success must be in the timeline: none may be lost.
        assert_eq!(got.transitions.len() - 1, applied[&t.id], "{got:?}");
        assert!(applied[&t.id] >= 1);
        assert_eq!(got.transitions.last().unwrap().state, got.state);
    }
}

async fn remove_finished_keeps_the_rest(s: &dyn TaskStore) {
    let (keep, gone) = (task("keep", 0), task("gone", 0));
    s.insert(&[keep.clone(), gone.clone()]).await.unwrap();
    up(s, &gone.id, cancel(), 2_000).await.unwrap();
    s.put_logs(
        &gone.id,
        &Logs {
            text: "x".into(),
            truncated: false,
        },
    )
    .await
    .unwrap();
    let removed = s.remove_finished().await.unwrap();
    assert!(removed.iter().any(|t| t.id == gone.id));
    assert!(!removed.iter().any(|t| !t.state.is_terminal()));
    assert!(s.get(&gone.id).await.unwrap().is_none());
    assert!(s.logs(&gone.id).await.unwrap().is_none());
    assert!(s.get(&keep.id).await.unwrap().is_some());
}

/// Every task on the board, in board order (pages of 1,000 by cursor), and the counts that
/// the first page reported.
async fn whole_board(
    s: &dyn TaskStore,
    states: &[TaskState],
) -> (Vec<Task>, std::collections::BTreeMap<TaskState, u64>) {
    let mut all = Vec::new();
    let (mut cursor, mut counts) = (None, None);
    loop {
        let page = s
            .list(&ListFilter {
                states: states.to_vec(),
                limit: 1000,
                cursor,
                offset: 0,
                active_since_ms: None,
            })
            .await
            .unwrap();
        counts.get_or_insert(page.counts);
        all.extend(page.tasks);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return (all, counts.unwrap_or_default()),
        }
    }
}

/// The counts a page carries equal a count of every stored task, state by state.
async fn assert_counts_exact(s: &dyn TaskStore, after: &str) {
    let (all, counts) = whole_board(s, &[]).await;
    let mut real = std::collections::BTreeMap::new();
    for t in &all {
        *real.entry(t.state).or_insert(0u64) += 1;
    }
    assert_eq!(counts, real, "counts after {after}");
}

async fn batches_show_in_submission_order_and_offsets_jump(s: &dyn TaskStore) {
    let first: Vec<Task> = (0..4).map(|n| task("ordera", n)).collect();
    let second: Vec<Task> = (0..4).map(|n| task("orderb", n)).collect();
    s.insert(&first).await.unwrap();
    s.insert(&second).await.unwrap();
    let (all, _) = whole_board(s, &[]).await;
    let ours: Vec<TaskId> = all
        .iter()
        .filter(|t| t.id.as_str().starts_with("order"))
        .map(|t| t.id.clone())
        .collect();
    let want: Vec<TaskId> = second.iter().chain(&first).map(|t| t.id.clone()).collect();
    assert_eq!(
        ours, want,
        "the newer batch first, each batch in submission order"
    );
    for (offset, limit) in [
        (0, 3),
        (2, 4),
        (5, 10),
        (all.len() - 1, 5),
        (all.len() + 3, 5),
    ] {
        let page = s
            .list(&ListFilter {
                states: vec![],
                limit,
                cursor: None,
                offset,
                active_since_ms: None,
            })
            .await
            .unwrap();
        let got: Vec<&TaskId> = page.tasks.iter().map(|t| &t.id).collect();
        let want: Vec<&TaskId> = all.iter().skip(offset).take(limit).map(|t| &t.id).collect();
        assert_eq!(got, want, "offset {offset}, limit {limit}");
        assert_eq!(page.next.is_some(), offset + limit < all.len());
    }
    up(s, &first[1].id, cancel(), 9_000).await.unwrap();
    let (cancelled, _) = whole_board(s, &[TaskState::Cancelled]).await;
    let page = s
        .list(&ListFilter {
            states: vec![TaskState::Cancelled],
            limit: 2,
            cursor: None,
            offset: 1,
            active_since_ms: None,
        })
        .await
        .unwrap();
    let got: Vec<&TaskId> = page.tasks.iter().map(|t| &t.id).collect();
    let want: Vec<&TaskId> = cancelled.iter().skip(1).take(2).map(|t| &t.id).collect();
    assert_eq!(got, want, "offset within a filter");
}

async fn counts_stay_exact_through_every_change(s: &dyn TaskStore) {
    assert_counts_exact(s, "the other checks").await;
    let tasks: Vec<Task> = (0..6).map(|n| task("count", n)).collect();
    s.insert(&tasks).await.unwrap();
    assert_counts_exact(s, "a batch insert").await;
    s.insert(&tasks[..2]).await.unwrap();
    assert_counts_exact(s, "inserting ids already stored").await;
    for (n, t) in tasks.iter().enumerate() {
        up(s, &t.id, provision(1), 2_000).await.unwrap();
        up(s, &t.id, reprovision(1), 2_001).await.unwrap();
        assert_counts_exact(s, "Provisioning, twice").await;
        if n == 5 {
            continue;
        }
        up(s, &t.id, Event::Started { attempt: 1 }, 3_000)
            .await
            .unwrap();
        assert_counts_exact(s, "InProgress").await;
        let reason = || "why".to_string();
        let end = [
            Event::Succeeded {
                attempt: 1,
                exit_code: 0,
                reason: None,
            },
            Event::TimedOut {
                attempt: 1,
                reason: reason(),
            },
            Event::AttemptFailed {
                attempt: 1,
                exit_code: Some(2),
                reason: reason(),
                retry_after: std::time::Duration::from_secs(1),
            },
            cancel(),
            Event::Succeeded {
                attempt: 1,
                exit_code: 0,
                reason: Some("exited 0".into()),
            },
        ][n]
            .clone();
        let name = end.name();
        up(s, &t.id, end, 4_000).await.unwrap();
        assert_counts_exact(s, name).await;
    }
    let illegal = up(s, &tasks[0].id, Event::Started { attempt: 1 }, 5_000).await;
    assert!(illegal.is_err());
    assert_counts_exact(s, "an illegal change").await;
    up(s, &tasks[1].id, Event::Retry { attempt: 1 }, 5_000)
        .await
        .unwrap();
    assert_counts_exact(s, "a retry back to Pending").await;
    s.remove_finished().await.unwrap();
    assert_counts_exact(s, "clearing finished tasks").await;
    let (left, counts) = whole_board(s, &[]).await;
    assert!(left.iter().all(|t| !t.state.is_terminal()));
    assert!(counts.keys().all(|st| !st.is_terminal()), "{counts:?}");
}

/// Many events on one task at once: each applied exactly once or refused, never two applied
/// to the same loaded version (the store's update is a compare-and-set around `Task::apply`).
async fn concurrent_events_are_compared_and_set(s: Arc<dyn TaskStore>) {
    let t = task("cas", 0);
    s.insert(std::slice::from_ref(&t)).await.unwrap();
    up(&*s, &t.id, provision(1), 2_000).await.unwrap();
    // Ten reports of the same start race: exactly one can apply (InProgress -> InProgress
    // is illegal), whatever the interleaving.
    let starts: Vec<_> = (0..10)
        .map(|_| {
            let (s, id) = (s.clone(), t.id.clone());
            tokio::spawn(async move { up(&*s, &id, Event::Started { attempt: 1 }, 3_000).await })
        })
        .collect();
    let mut won = 0;
    for h in starts {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert!(matches!(e, StoreError::Refused { .. }), "{e}"),
        }
    }
    assert_eq!(
        won, 1,
        "one start applies, the others see it and are refused"
    );
    // Repeated starts and a cancel race on the running task: only the cancel is legal.
    let racers: Vec<_> = (0..10)
        .map(|n| {
            let (s, id) = (s.clone(), t.id.clone());
            let event = if n == 5 {
                cancel()
            } else {
                Event::Started { attempt: 1 }
            };
            tokio::spawn(async move { up(&*s, &id, event, 4_000 + n).await.is_ok() })
        })
        .collect();
    let mut applied = 0;
    for h in racers {
        applied += usize::from(h.await.unwrap());
    }
    let got = s.get(&t.id).await.unwrap().unwrap();
    assert_eq!(applied, 1, "only the cancel applies to a running task");
    assert_eq!(got.state, TaskState::Cancelled);
    assert_eq!(
        got.transitions.len(),
        4,
        "Pending, Provisioning, InProgress, Cancelled"
    );
}

/// Every store keeps the same tail of over-long logs (`model::Logs::capped`).
async fn logs_are_capped_to_their_tail(s: &dyn TaskStore) {
    let t = task("caplog", 0);
    s.insert(std::slice::from_ref(&t)).await.unwrap();
    let max = model::limits::MAX_LOG_BYTES;
    let text = format!("{}{}", "a".repeat(1000), "é".repeat(max / 2));
    let logs = Logs {
        text: text.clone(),
        truncated: false,
    };
    s.put_logs(&t.id, &logs).await.unwrap();
    let kept = s.logs(&t.id).await.unwrap().unwrap();
    assert_eq!(kept, logs.clone().capped());
    assert!(kept.truncated && kept.text.len() <= max && text.ends_with(&kept.text));
    assert_eq!(
        kept.text.len(),
        max,
        "the whole tail, cut on a character boundary"
    );
}
