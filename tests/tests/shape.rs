//! Shaping the work in local mode, with real processes (the process runtime) and, for the run's
//! context, real Docker containers (mandatory in CI): per-key caps under a burst, keys served
//! round-robin, priorities under contention, delayed tasks that never start early,
//! backpressure (429 with Retry-After, nothing half-stored), and the context env of a run.
//!
//! Each test runs its own handler on port 0 with its own data dir; task messages are shell
//! commands (`sh -c "$MESSAGE"` in the worker).

use e2e::{eventually, need, start_local, Api, TempDir};
use handler::local::Running;
use model::{Task, TaskId, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(240);

/// Local mode on the process runtime with the shell worker and `extra` flags.
async fn process_local(dir: &TempDir, extra: &[&str]) -> Running {
    let mut flags = vec!["--runtime", "process", "--memory-mb", "128"];
    let args: Vec<String> = e2e::shell_worker_args()
        .iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    flags.extend(args.iter().map(String::as_str));
    flags.extend_from_slice(extra);
    start_local(&dir.0, &flags).await
}

/// Submits a batch; returns status, body and the `Retry-After` header.
async fn post(api: &Api, batch: &serde_json::Value) -> (u16, serde_json::Value, Option<String>) {
    let r = api
        .http
        .post(format!("{}/api/work", api.base))
        .json(batch)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap(), retry)
}

fn ids_of(v: &serde_json::Value) -> Vec<TaskId> {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| TaskId::parse(t["id"].as_str().unwrap()).unwrap())
        .collect()
}

/// Every stored task (the board, page by page).
async fn all_tasks(api: &Api) -> Vec<Task> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/tasks?limit=1000&cursor={c}"),
            None => "/api/tasks?limit=1000".to_string(),
        };
        let page: model::TaskPage = serde_json::from_value(api.get(&path).await).unwrap();
        out.extend(page.tasks);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

/// Waits until every task in `ids` is Done (failing fast on another ending).
async fn all_done(api: &Api, ids: &[TaskId]) -> Vec<Task> {
    let mut done = Vec::new();
    for id in ids {
        done.push(api.wait_state(id, TaskState::Done, LONG).await);
    }
    done
}

/// The most intervals `[start, end]` that overlap at one instant.
fn max_overlap(spans: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for &(s, e) in spans {
        edges.push((s, 1));
        edges.push((e, -1));
    }
    // At equal times an end comes before a start: touching spans do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn overlap_counts_concurrent_spans_only() {
    assert_eq!(max_overlap(&[(0, 10), (10, 20), (20, 30)]), 1);
    assert_eq!(max_overlap(&[(0, 10), (5, 20), (6, 7)]), 3);
    assert_eq!(max_overlap(&[]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_cap_holds_under_a_burst_and_keys_take_turns() {
    let dir = TempDir::new("keycap");
    // 5 keys; k0 capped at 1, the others at 2: 9 at most together, under 8 slots.
    let running = process_local(
        &dir,
        &["--concurrency", "8", "--key-cap", "2", "--key-caps", "k0=1"],
    )
    .await;
    let api = Api::new(&running);
    // The worst order for a plain FIFO: every task of k0, then every task of k1, ...
    let batch: Vec<_> = (0..5)
        .flat_map(|k| {
            (0..100).map(move |_| serde_json::json!({"work": "sleep 0.05", "key": format!("k{k}")}))
        })
        .collect();
    let (status, v, _) = post(&api, &serde_json::Value::Array(batch)).await;
    assert_eq!(status, 202, "{v}");
    let ids = ids_of(&v);
    assert_eq!(ids.len(), 500);
    let tasks = all_done(&api, &ids).await;
    let mut per_key: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for t in &tasks {
        let span = (
            t.provisioned_at_ms.expect("provisioned"),
            t.finished_at_ms.expect("finished"),
        );
        per_key
            .entry(t.key.clone().expect("every task has a key"))
            .or_default()
            .push(span);
    }
    for (key, spans) in &per_key {
        let cap = if key == "k0" { 1 } else { 2 };
        let most = max_overlap(spans);
        println!(
            "key {key}: {} tasks, at most {most} at once (cap {cap})",
            spans.len()
        );
        assert!(
            most <= cap,
            "key {key}: {most} ran at once, the cap is {cap}"
        );
    }
    // Round-robin: the first 25 tasks to start include every key (a FIFO would start 25 of k0).
    let mut starts: Vec<(i64, String)> = tasks
        .iter()
        .map(|t| (t.provisioned_at_ms.unwrap(), t.key.clone().unwrap()))
        .collect();
    starts.sort();
    let early: std::collections::BTreeSet<&str> =
        starts[..25].iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        early.len(),
        5,
        "keys served in the first 25 starts: {early:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_are_honoured_under_contention() {
    let dir = TempDir::new("prio");
    let running = process_local(&dir, &["--concurrency", "1"]).await;
    let api = Api::new(&running);
    let gate = dir.0.join("gate");
    let blocker = api
        .submit(serde_json::json!({
            "work": format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display())
        }))
        .await;
    api.wait_state(&blocker.id, TaskState::InProgress, LONG)
        .await;
    // The one slot is held: lows then highs wait together.
    let lows: Vec<_> = (0..5)
        .map(|_| serde_json::json!({"work": "true", "priority": -1}))
        .collect();
    let highs: Vec<_> = (0..5)
        .map(|_| serde_json::json!({"work": "true", "priority": 10}))
        .collect();
    let (_, lv, _) = post(&api, &serde_json::Value::Array(lows)).await;
    let (_, hv, _) = post(&api, &serde_json::Value::Array(highs)).await;
    std::fs::write(&gate, b"go").unwrap();
    let lows = all_done(&api, &ids_of(&lv)).await;
    let highs = all_done(&api, &ids_of(&hv)).await;
    let last_high = highs.iter().map(|t| t.provisioned_at_ms.unwrap()).max();
    let first_low = lows.iter().map(|t| t.provisioned_at_ms.unwrap()).min();
    assert!(
        last_high < first_low,
        "every high starts before any low: last high {last_high:?}, first low {first_low:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_never_starts_early_but_does_start() {
    let dir = TempDir::new("delay");
    let running = process_local(&dir, &[]).await;
    let api = Api::new(&running);
    let delayed = api
        .submit(serde_json::json!({"work": "true", "delay_secs": 2}))
        .await;
    let due = delayed.not_before_ms.expect("a delay sets not_before_ms");
    assert!(due >= delayed.created_at_ms + 2000);
    // Delivered early by hand (as a stray redelivery would be): refused, nothing started.
    let early = handler::spawn::Delivery {
        message_id: format!("{}#early", delayed.id),
        body: serde_json::to_string(&model::Envelope::of(&delayed)).unwrap(),
        delivery_count: 1,
        enqueued_at_ms: None,
    };
    match handler::spawn::handle(&running.app, &early).await {
        Err(handler::spawn::SpawnError::NotYet(wait)) => {
            assert!(wait > Duration::ZERO && wait <= Duration::from_secs(2))
        }
        other => panic!("an early delivery must not start the task: {other:?}"),
    }
    assert_eq!(api.task(&delayed.id).await.state, TaskState::Pending);
    // An absolute time works the same way.
    let at = model::shape::format_rfc3339_ms(handler::clock::now_ms() + 1500);
    let absolute = api
        .submit(serde_json::json!({"work": "true", "not_before": at}))
        .await;
    for t in [delayed, absolute] {
        let done = api.wait_state(&t.id, TaskState::Done, LONG).await;
        let not_before = done.not_before_ms.unwrap();
        let asked = done.provisioned_at_ms.unwrap();
        let started = done.started_at_ms.unwrap();
        println!(
            "task {}: due {not_before}, asked for at +{} ms",
            t.id,
            asked - not_before
        );
        assert!(
            asked >= not_before,
            "container asked for {} ms early",
            not_before - asked
        );
        assert!(started >= not_before);
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_answers_429_and_loses_nothing_accepted() {
    let dir = TempDir::new("bp");
    let running = process_local(
        &dir,
        &[
            "--concurrency",
            "1",
            "--max-queued",
            "5",
            "--max-queued-per-key",
            "2",
        ],
    )
    .await;
    let api = Api::new(&running);
    let gate = dir.0.join("gate");
    let blocker = api
        .submit(serde_json::json!({
            "work": format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display())
        }))
        .await;
    api.wait_state(&blocker.id, TaskState::InProgress, LONG)
        .await;
    let work = |n: usize, key: Option<&str>| {
        serde_json::Value::Array(
            (0..n)
                .map(|_| match key {
                    Some(k) => serde_json::json!({"work": "true", "key": k}),
                    None => serde_json::json!({"work": "true"}),
                })
                .collect(),
        )
    };
    let mut accepted = vec![blocker.id.clone()];
    let (s, v, _) = post(&api, &work(2, Some("a"))).await;
    assert_eq!(s, 202, "{v}");
    accepted.extend(ids_of(&v));
    // A third waiting task of key a is over the per-key cap.
    let (s, v, retry) = post(&api, &work(1, Some("a"))).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (429, Some("key_queue_full")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("max_queued_per_key"),
        "{v}"
    );
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    // 2 waiting + 4 is over the cap of 5 in all: the whole batch is refused.
    let (s, v, retry) = post(&api, &work(4, None)).await;
    assert_eq!((s, v["code"].as_str()), (429, Some("queue_full")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("max_queued"), "{v}");
    assert!(retry.is_some());
    let stored = all_tasks(&api).await;
    assert_eq!(stored.len(), 3, "nothing of a refused batch is stored");
    // Up to the cap is fine.
    let (s, v, _) = post(&api, &work(3, None)).await;
    assert_eq!(s, 202, "{v}");
    accepted.extend(ids_of(&v));
    // Another producer's message over the cap is refused by the spawn path (and so
    // dead-lettered at once by the delivery policy), not stored.
    let foreign = handler::spawn::Delivery {
        message_id: "foreign-over-cap".into(),
        body: "echo from elsewhere".into(),
        delivery_count: 1,
        enqueued_at_ms: None,
    };
    let refused = handler::spawn::handle(&running.app, &foreign).await;
    let Err(e @ handler::spawn::SpawnError::Refused(_)) = &refused else {
        panic!("over the cap, a foreign message is refused: {refused:?}");
    };
    assert!(e.to_string().contains("max_queued"), "{e}");
    let limits = handler::policy::Limits::of(running.app.settings());
    let verdict = handler::policy::decide(Err(e), 1, &limits);
    assert!(
        matches!(&verdict, handler::policy::Verdict::DeadLetter { reason } if reason.contains("max_queued")),
        "{verdict:?}"
    );
    std::fs::write(&gate, b"go").unwrap();
    all_done(&api, &accepted).await;
    let stored = all_tasks(&api).await;
    assert_eq!(
        stored.len(),
        accepted.len(),
        "only what was accepted is stored"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_envelope_breaking_a_rule_is_dead_lettered() {
    let dir = TempDir::new("foreign");
    let running = process_local(&dir, &["--allowed-image", "mine:1"]).await;
    let api = Api::new(&running);
    let body = serde_json::json!({"id": "f-1", "work": "true", "image": "other:2"}).to_string();
    running.queue.send_raw("f-1-msg", &body).await.unwrap();
    let ok =
        serde_json::json!({"id": "f-2", "work": "true", "key": "k", "priority": 3}).to_string();
    running.queue.send_raw("f-2-msg", &ok).await.unwrap();
    let f2 = TaskId::parse("f-2").unwrap();
    eventually(LONG, "the valid envelope's task to be stored", || async {
        running.app.tasks().get(&f2).await.unwrap().map(drop)
    })
    .await;
    let done = api.wait_state(&f2, TaskState::Done, LONG).await;
    assert_eq!((done.key.as_deref(), done.priority), (Some("k"), 3));
    eventually(LONG, "the refused message to leave the queue", || async {
        (running.queue.depth().await.unwrap() == 0).then_some(())
    })
    .await;
    let refused = running
        .app
        .tasks()
        .get(&TaskId::parse("f-1").unwrap())
        .await
        .unwrap();
    assert!(
        refused.is_none(),
        "a refused envelope stores no task: {refused:?}"
    );
    running.stop().await;
}

/// The run's context, as `env` prints it inside the run.
async fn context_seen(api: &Api, running: &Running) {
    let t = api
        .submit(serde_json::json!({
            "work": "env",
            "key": "tenant-7",
            "priority": 4,
            "labels": {"team": "blue", "run_no": "42"}
        }))
        .await;
    let done = api.wait_state(&t.id, TaskState::Done, LONG).await;
    let text = eventually(LONG, "the run's logs", || async {
        let logs = api.get(&format!("/api/tasks/{}/logs", t.id)).await;
        logs["text"]
            .as_str()
            .filter(|s| s.contains("TASK_ID="))
            .map(str::to_string)
    })
    .await;
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(env["TASK_ID"], t.id.as_str());
    assert_eq!(env["ATTEMPT"], "1");
    assert_eq!(env["MAX_ATTEMPTS"], done.max_attempts.to_string());
    assert_eq!(
        env["MESSAGE_ID"],
        t.id.as_str(),
        "the API's message carries the task id"
    );
    assert_eq!(env["DELIVERY_COUNT"], "1");
    assert_eq!(env["KEY"], "tenant-7");
    assert_eq!(env["PRIORITY"], "4");
    assert_eq!(env["LABEL_TEAM"], "blue");
    assert_eq!(env["LABEL_RUN_NO"], "42");
    let enqueued = model::shape::parse_rfc3339_ms(env["ENQUEUED_AT"]).expect("RFC 3339");
    assert!(
        (enqueued - t.created_at_ms).abs() < 5_000,
        "{}",
        env["ENQUEUED_AT"]
    );
    assert!(
        !text.contains("TASK_TOKEN="),
        "the token is not shown to the work"
    );
    let _ = running;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_sees_its_context_on_the_process_runtime() {
    let dir = TempDir::new("ctx-proc");
    let running = process_local(&dir, &[]).await;
    let api = Api::new(&running);
    context_seen(&api, &running).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_sees_its_context_on_docker() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("ctx-docker");
    let image = e2e::test_image().await;
    let mut flags = vec![
        "--runtime",
        "docker",
        "--image",
        image.as_str(),
        "--memory-mb",
        "128",
    ];
    let args: Vec<String> = e2e::shell_worker_args()
        .iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    flags.extend(args.iter().map(String::as_str));
    let running = start_local(&dir.0, &flags).await;
    let api = Api::new(&running);
    context_seen(&api, &running).await;
    // Every container is gone before the handler stops (the test leaves nothing behind).
    for t in all_tasks(&api).await {
        e2e::until_removed(&running, &format!("eda-{}-1", t.id), LONG).await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_allowed_image_is_pulled_ahead_and_its_spawn_says_why() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("pull");
    let image = e2e::test_image().await;
    let missing = format!("eda-shape-missing:{}", e2e::runtimes::unique("never"));
    let flags = [
        "--runtime",
        "docker",
        "--image",
        image.as_str(),
        "--memory-mb",
        "128",
        "--max-deliveries",
        "1",
        "--allowed-image",
        missing.as_str(),
    ];
    let running = start_local(&dir.0, &flags).await;
    // The pull ahead is tried (and fails here: no registry can be reached) ...
    let pulled = running.app.runtime().prefetch(&missing).await;
    assert!(pulled.is_err(), "no registry answers here: {pulled:?}");
    // ... and the task's spawn then fails with the runtime's reason, naming the image.
    let api = Api::new(&running);
    let t = api
        .submit(serde_json::json!({"work": "true", "image": missing}))
        .await;
    assert_eq!(t.image.as_deref(), Some(missing.as_str()));
    let dead = api.wait_state(&t.id, TaskState::DeadLettered, LONG).await;
    let reason = dead.reason.unwrap_or_default();
    assert!(
        reason.contains(&missing) && reason.contains("not found"),
        "{reason}"
    );
    running.stop().await;
}

/// The receive order on a real SQLite file: priority, then keys in turn, then arrival; keys at
/// their cap skipped; a delayed message invisible until due; the enqueue time read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_serves_priority_then_keys_in_turn_then_arrival() {
    use handler::queue::LocalQueue;
    use handler::store::sqlite::SqliteStore;
    let dir = TempDir::new("order");
    let store = SqliteStore::open(&dir.0.join("eda.db")).unwrap();
    let rates = model::Rates {
        cpu_second: 0.0,
        gb_second: 0.0,
    };
    let tasks = handler::tasks::Tasks::new(
        std::sync::Arc::new(store.clone()),
        handler::events::Events::default(),
        rates,
    );
    let queue = LocalQueue::new(store.db.clone(), tasks);
    let send = |id: &'static str, key: Option<&'static str>, priority: i32, due: Option<i64>| {
        let queue = &queue;
        async move {
            let mut env = serde_json::json!({"id": id, "work": "w", "priority": priority});
            if let Some(k) = key {
                env["key"] = k.into();
            }
            if let Some(at) = due {
                env["not_before_ms"] = at.into();
            }
            queue.send_raw(id, &env.to_string()).await.unwrap();
        }
    };
    let later = handler::clock::now_ms() + 60_000;
    send("a1", Some("a"), 0, None).await;
    send("a2", Some("a"), 0, None).await;
    send("a3", Some("a"), 0, None).await;
    send("b1", Some("b"), 0, None).await;
    send("n1", None, 0, None).await;
    send("b2", Some("b"), 0, None).await;
    send("hi", Some("a"), 5, None).await;
    send("soon", None, 9, Some(later)).await;
    let mut order = Vec::new();
    while let Some(m) = queue.receive(&[]).await.unwrap() {
        assert!(
            m.delivery.enqueued_at_ms.is_some(),
            "the enqueue time is kept"
        );
        order.push(m.delivery.message_id.clone());
        if order.len() == 1 {
            // With key a at its cap, the others are served and a waits.
            let mut others = Vec::new();
            while let Some(o) = queue.receive(&["a".to_string()]).await.unwrap() {
                others.push(o.delivery.message_id);
            }
            assert_eq!(
                others,
                ["b1", "n1", "b2"],
                "key a skipped, b and no key in turn"
            );
            order.extend(others);
        }
    }
    assert_eq!(
        order,
        ["hi", "b1", "n1", "b2", "a1", "a2", "a3"],
        "priority first; the delayed message is not visible yet"
    );
    assert_eq!(queue.next_visible_at(&[]).await.unwrap(), Some(later));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_running_containers_count_against_their_keys_cap() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("keycap-restart");
    let image = e2e::test_image().await;
    // The same address again, so the running container's worker reaches the new handler.
    let addr = format!("127.0.0.1:{}", e2e::free_port());
    let mut flags = vec![
        "--runtime",
        "docker",
        "--image",
        image.as_str(),
        "--memory-mb",
        "128",
        "--key-cap",
        "1",
        "--bind",
        addr.as_str(),
    ];
    let args: Vec<String> = e2e::shell_worker_args()
        .iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    flags.extend(args.iter().map(String::as_str));
    let running = start_local(&dir.0, &flags).await;
    let api = Api::new(&running);
    let first = api
        .submit(serde_json::json!({"work": "sleep 3", "key": "r"}))
        .await;
    api.wait_state(&first.id, TaskState::InProgress, LONG).await;
    running.stop().await;
    // The container keeps running; the new handler adopts it, counted for key r.
    let running = start_local(&dir.0, &flags).await;
    let api = Api::new(&running);
    let second = api
        .submit(serde_json::json!({"work": "true", "key": "r"}))
        .await;
    let second = api.wait_state(&second.id, TaskState::Done, LONG).await;
    let first = api.wait_state(&first.id, TaskState::Done, LONG).await;
    assert!(
        second.provisioned_at_ms.unwrap() >= first.finished_at_ms.unwrap(),
        "the second task of key r (cap 1) waited for the adopted first: {:?} < {:?}",
        second.provisioned_at_ms,
        first.finished_at_ms
    );
    for t in [&first, &second] {
        e2e::until_removed(&running, &format!("eda-{}-1", t.id), LONG).await;
    }
    running.stop().await;
}

/// A task stored because another producer's message arrived (message id `m-1`, envelope id
/// `t-1`) is served by that message: storing it queues no second message (which used to start a
/// second attempt beside the first and leave the task in `Provisioning`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_arrived_by_a_foreign_message_is_not_queued_twice() {
    use handler::queue::{self, LocalQueue};
    use handler::store::sqlite::SqliteStore;
    let dir = TempDir::new("once");
    let store = SqliteStore::open(&dir.0.join("eda.db"))
        .unwrap()
        .with_outbox(queue::enqueue_new);
    let rates = model::Rates {
        cpu_second: 0.0,
        gb_second: 0.0,
    };
    let tasks = handler::tasks::Tasks::new(
        std::sync::Arc::new(store.clone()),
        handler::events::Events::default(),
        rates,
    );
    let queue = LocalQueue::new(store.db.clone(), tasks.clone());
    let body = serde_json::json!({"id": "t-1", "work": "w"}).to_string();
    queue.send_raw("m-1", &body).await.unwrap();
    let leased = queue.receive(&[]).await.unwrap().expect("the message");
    assert_eq!(leased.delivery.message_id, "m-1");
    let task = model::Task::new(
        TaskId::parse("t-1").unwrap(),
        "w".into(),
        model::Resources {
            cpu: 1.0,
            memory_mb: 128,
        },
        1,
        60,
        1,
    );
    tasks.insert(&[task]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1, "only the foreign message");
    // A task the API accepts still gets its own message.
    let own = model::Task::new(
        TaskId::parse("t-2").unwrap(),
        "w".into(),
        model::Resources {
            cpu: 1.0,
            memory_mb: 128,
        },
        1,
        60,
        1,
    );
    tasks.insert(&[own]).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
}
