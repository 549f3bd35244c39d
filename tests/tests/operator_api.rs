//! The operator's API (issue 12, item 6) through real HTTP on port 0, local mode with the process
//! runtime running each task's message as a shell command: search (`q`, `from`, `to`), bulk
//! actions (`POST /api/tasks/bulk`) and retention (`--retention-secs`).

use e2e::{eventually, start_local, Api, TempDir};
use futures::StreamExt;
use model::TaskState::{Cancelled, DeadLettered, Done, Failed, InProgress, Pending};
use model::{limits, Event, MetricSample, Task, TaskId};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Local mode, process runtime, each message run by `sh -c`, with `extra` flags.
async fn local(dir: &TempDir, extra: &[&str]) -> handler::local::Running {
    let args: Vec<String> = e2e::shell_worker_args()
        .iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    let mut flags = vec!["--runtime", "process"];
    flags.extend(args.iter().map(String::as_str));
    flags.extend_from_slice(extra);
    start_local(&dir.0, &flags).await
}

/// A word no other test's work holds.
fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{:x}", nanos % 0xffff_ffff_ffff)
}

/// `GET /api/tasks` with these query parameters (encoded); status and body.
async fn search(api: &Api, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let r = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .query(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The ids of a search's page, in order.
fn ids(page: &serde_json::Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Submits `works` as one batch; the new tasks in order.
async fn submit_all(api: &Api, works: &[serde_json::Value]) -> Vec<Task> {
    let (status, v) = api
        .post_raw(
            "/api/work",
            serde_json::Value::from(works.to_vec()).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    serde_json::from_value(v["tasks"].clone()).unwrap()
}

async fn bulk(api: &Api, body: serde_json::Value) -> (u16, serde_json::Value) {
    api.post_raw("/api/tasks/bulk", body.to_string()).await
}

async fn wait_terminal(api: &Api, id: &TaskId) -> Task {
    eventually(LONG, &format!("task {id} to finish"), || async {
        let t = api.task(id).await;
        t.state.is_terminal().then_some(t)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_narrows_by_text_id_state_and_time_and_refuses_bad_queries() {
    let dir = TempDir::new("search-api");
    let running = local(&dir, &[]).await;
    let api = Api::new(&running);
    let m = marker("srch");
    let tasks = submit_all(
        &api,
        &[
            serde_json::json!({"work": format!("echo {m} Alpha")}),
            serde_json::json!({"work": format!("echo {m} beta")}),
            serde_json::json!({"work": format!("exit 3 # {m} gamma"), "max_attempts": 1}),
            serde_json::json!({"work": "echo unrelated"}),
        ],
    )
    .await;
    for (t, want) in tasks.iter().zip([Done, Done, Failed, Done]) {
        assert_eq!(wait_terminal(&api, &t.id).await.state, want);
    }
    let id = |n: usize| tasks[n].id.to_string();

    let (status, page) = search(&api, &[("q", &m)]).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [id(0), id(1), id(2)]);
    assert_eq!(page["counts"], serde_json::json!({"Done": 2, "Failed": 1}));
    let q = format!("{m} ALPHA");
    assert_eq!(ids(&search(&api, &[("q", &q)]).await.1), [id(0)]);
    let q = format!("\"{m} be\"");
    assert_eq!(ids(&search(&api, &[("q", &q)]).await.1), [id(1)]);
    let q = format!("{m} state:failed");
    assert_eq!(ids(&search(&api, &[("q", &q)]).await.1), [id(2)]);
    let q = format!("id:{}", id(3));
    assert_eq!(ids(&search(&api, &[("q", &q)]).await.1), [id(3)]);
    // The page's state filter narrows the page; the counts stay the search's.
    let (_, page) = search(
        &api,
        &[("q", &m), ("state", "finished,Done"), ("limit", "1")],
    )
    .await;
    assert_eq!(ids(&page), [id(0)]);
    assert_eq!(page["counts"], serde_json::json!({"Done": 2, "Failed": 1}));
    let next = page["next"].as_str().unwrap().to_string();
    let (_, page) = search(&api, &[("q", &m), ("limit", "1"), ("cursor", &next)]).await;
    assert_eq!(ids(&page), [id(1)], "the cursor pages through the matches");
    // Time: RFC 3339 and ms since the epoch.
    let created = tasks[0].created_at_ms;
    let (_, page) = search(&api, &[("q", &m), ("from", "2000-01-01T00:00:00Z")]).await;
    assert_eq!(ids(&page).len(), 3);
    let later = (created + 3_600_000).to_string();
    let (_, page) = search(&api, &[("q", &m), ("from", &later)]).await;
    assert!(ids(&page).is_empty());
    assert!(page["counts"].as_object().unwrap().is_empty());
    let (_, page) = search(&api, &[("q", &m), ("to", &created.to_string())]).await;
    assert!(ids(&page).is_empty(), "to is exclusive");

    let long = "x".repeat(limits::MAX_QUERY_BYTES + 1);
    for (params, needle) in [
        (vec![("q", "colour:red")], "unknown qualifier"),
        (vec![("q", "id:ABC")], "a-z, 0-9"),
        (vec![("q", "state:Running")], "Running"),
        (vec![("q", "\"open")], "unclosed"),
        (vec![("q", long.as_str())], "MAX_QUERY_BYTES"),
        (vec![("from", "yesterday")], "from="),
        (vec![("from", "20"), ("to", "10")], "before"),
    ] {
        let (status, body) = search(&api, &params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert_eq!(body["code"], "invalid_search", "{params:?}");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{params:?}: {msg}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_act_on_the_named_or_matching_tasks_only() {
    let dir = TempDir::new("bulk-api");
    let running = local(&dir, &["--concurrency", "1"]).await;
    let api = Api::new(&running);
    let m = marker("bulk");
    let blocker = api
        .submit(serde_json::json!({"work": format!("sleep 60 # {m} blocker")}))
        .await;
    api.wait_state(&blocker.id, InProgress, LONG).await;
    let wave = submit_all(
        &api,
        &vec![serde_json::json!({"work": format!("sleep 60 # {m} wave")}); 6],
    )
    .await;
    let other = api
        .submit(serde_json::json!({"work": format!("sleep 60 # {m} other")}))
        .await;
    let w = |n: usize| wave[n].id.to_string();

    // By id: repeated ids count once; an unknown id is reported, not an error.
    let (status, r) = bulk(
        &api,
        serde_json::json!({"action": "cancel", "ids": [w(0), w(1), "no-such-task", w(0)]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["matched"], 3);
    assert_eq!(
        r["outcomes"],
        serde_json::json!({"done": 2, "not_found": 1})
    );
    assert_eq!(r["skipped"][0]["id"], "no-such-task");
    for n in [0, 1] {
        assert_eq!(api.task(&wave[n].id).await.state, Cancelled);
    }
    // An action that does not apply is skipped with the reason.
    let (_, r) = bulk(
        &api,
        serde_json::json!({"action": "retry", "ids": [w(0), w(1), w(2)]}),
    )
    .await;
    assert_eq!(
        r["outcomes"],
        serde_json::json!({"done": 2, "not_applicable": 1})
    );
    let reason = r["skipped"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("Pending") && reason.contains("retry"),
        "{reason}"
    );
    for n in [0, 1] {
        assert_eq!(api.task(&wave[n].id).await.state, Pending, "retried");
    }

    // All matching: only the wave (not the blocker, not the other task) is cancelled.
    let all = serde_json::json!({"action": "cancel", "all_matching": {"q": format!("{m} wave")}});
    let (status, r) = bulk(&api, all.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["matched"].clone(), r["more"].clone()),
        (6.into(), false.into())
    );
    assert_eq!(r["outcomes"], serde_json::json!({"done": 6}));
    for t in &wave {
        assert_eq!(api.task(&t.id).await.state, Cancelled);
    }
    assert_eq!(api.task(&blocker.id).await.state, InProgress);
    assert_eq!(api.task(&other.id).await.state, Pending);
    let (_, r) = bulk(&api, all).await;
    assert_eq!(
        r["matched"], 0,
        "cancelled tasks no longer match a cancel: {r}"
    );

    // Re-drive: a dead-lettered task gets a fresh attempt; retry does not apply to it.
    let dead = Event::DeadLetter {
        reason: "could not be spawned (test)".into(),
    };
    running.app.tasks().apply(&other.id, dead).await.unwrap();
    let (_, r) = bulk(
        &api,
        serde_json::json!({"action": "retry", "ids": [other.id]}),
    )
    .await;
    assert_eq!(r["outcomes"], serde_json::json!({"not_applicable": 1}));
    let redrive =
        serde_json::json!({"action": "redrive", "all_matching": {"q": m, "state": "finished"}});
    let (_, r) = bulk(&api, redrive).await;
    assert_eq!(r["matched"], 1, "only the dead letter: {r}");
    assert_eq!(r["outcomes"], serde_json::json!({"done": 1}));
    let t = api.task(&other.id).await;
    assert!(t.state == Pending || t.state.is_active(), "{:?}", t.state);
    assert_ne!(t.state, DeadLettered);

    // Bad requests name the problem; nothing is done.
    let many: Vec<String> = (0..=limits::MAX_BULK_IDS)
        .map(|n| format!("t-{n}"))
        .collect();
    for (body, code, needle) in [
        (
            serde_json::json!({"action": "cancel"}),
            "invalid_body",
            "either ids or all_matching",
        ),
        (
            serde_json::json!({"action": "cancel", "ids": [w(2)], "all_matching": {}}),
            "invalid_body",
            "either ids or all_matching",
        ),
        (
            serde_json::json!({"action": "cancel", "ids": []}),
            "invalid_ids",
            "MAX_BULK_IDS",
        ),
        (
            serde_json::json!({"action": "cancel", "ids": many}),
            "invalid_ids",
            "MAX_BULK_IDS",
        ),
        (
            serde_json::json!({"action": "explode", "ids": [w(2)]}),
            "invalid_json",
            "explode",
        ),
        (
            serde_json::json!({"action": "cancel", "all_matching": {"q": "colour:red"}}),
            "invalid_search",
            "unknown qualifier",
        ),
    ] {
        let (status, r) = bulk(&api, body.clone()).await;
        assert_eq!(status, 400, "{body}: {r}");
        assert_eq!(r["code"], code, "{body}: {r}");
        assert!(
            r["message"].as_str().unwrap().contains(needle),
            "{body}: {r}"
        );
    }

    let (_, r) = bulk(
        &api,
        serde_json::json!({"action": "cancel", "all_matching": {"q": m}}),
    )
    .await;
    assert_eq!(
        r["outcomes"]["done"], 2,
        "the blocker and the re-driven task: {r}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_finished_tasks_with_their_logs_and_metrics() {
    let dir = TempDir::new("retention-api");
    // 3 s: the checks below run well before the purge (every second) can take the task.
    let running = local(&dir, &["--retention-secs", "3"]).await;
    let api = Api::new(&running);
    let mut events = api
        .http
        .get(format!("{}/api/events", api.base))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let m = marker("ret");
    let done = api
        .submit(serde_json::json!({"work": format!("echo {m} old")}))
        .await;
    let waiting = api
        .submit(serde_json::json!({"work": format!("sleep 60 # {m} running")}))
        .await;
    let finished = wait_terminal(&api, &done.id).await;
    assert_eq!(finished.state, Done);
    let store = running.app.tasks();
    eventually(LONG, "the logs to be kept", || async {
        let logs = store.logs(&done.id).await.unwrap();
        logs.is_some_and(|l| l.text.contains(&m)).then_some(())
    })
    .await;
    // A sample, so there is something of the task in the metrics too (a short task may end
    // before the sampler's first tick).
    let sample = MetricSample {
        at_ms: finished.finished_at_ms.unwrap(),
        cpu_percent: 1.0,
        memory_bytes: 1,
    };
    store.add_metrics(&done.id, &[sample]).await.unwrap();
    assert_eq!(store.metrics(&done.id).await.unwrap().len(), 1);
    // The SSE stream announces the removal.
    let mut seen = String::new();
    tokio::time::timeout(LONG, async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: cleared") && seen.contains(done.id.as_str()) {
                return;
            }
        }
    })
    .await
    .expect("a cleared event naming the old task");
    let r = api
        .http
        .get(format!("{}/api/tasks/{}", api.base, done.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(store.logs(&done.id).await.unwrap().is_none(), "logs purged");
    assert!(
        store.metrics(&done.id).await.unwrap().is_empty(),
        "metrics purged"
    );
    let t = api.task(&waiting.id).await;
    assert!(
        !t.state.is_terminal(),
        "an unfinished task stays: {:?}",
        t.state
    );
    let (_, page) = search(&api, &[("q", &m)]).await;
    assert_eq!(ids(&page), [waiting.id.to_string()]);
    api.post_raw(&format!("/api/tasks/{}/cancel", waiting.id), "")
        .await;
    running.stop().await;
}
