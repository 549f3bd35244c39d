//! Fault tests: the handler killed mid-burst, workers that misbehave, hostile input, a poison
//! message. Real Docker (mandatory in CI), real processes, real HTTP.
//!
//! What a user should see in each case (and what is asserted):
//! - handler killed with SIGKILL and restarted: every task ends, each attempt made exactly one
//!   container (Docker's own `create` events), no work ran twice.
//! - worker OOM-killed: `Failed`, exit code 137, reason naming the OOM killer.
//! - worker that never reports and runs past its timeout: `TimedOut`, container killed.
//! - worker whose container exits 0 without ever reporting: `Done` with a reason saying so.
//! - worker that reports `Done` and then exits 1: stays `Done` (the work's own report is the
//!   truth about the work; the worker's exit code after that is about the worker).
//! - hostile input: 4xx naming the problem, the handler still answers, memory bounded, nothing stored.

use e2e::faults::{docker_flags, rss_kib, CreateEvents, HandlerProcess};
use e2e::free_port;
use e2e::{eventually, need, start_local, Api, TempDir};
use model::{Task, TaskPage, TaskState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

async fn page(http: &reqwest::Client, base: &str, query: &str) -> TaskPage {
    http.get(format!("{base}/api/tasks?{query}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn terminal(p: &TaskPage) -> u64 {
    p.counts
        .iter()
        .filter(|(s, _)| s.is_terminal())
        .map(|(_, n)| n)
        .sum()
}

/// Every task of a handler, with transitions.
async fn all_tasks(http: &reqwest::Client, base: &str) -> Vec<Task> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=1000&cursor={c}"),
            None => "limit=1000".into(),
        };
        let p = page(http, base, &q).await;
        for t in p.tasks {
            let full: Task = http
                .get(format!("{base}/api/tasks/{}", t.id))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.push(full);
        }
        match p.next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_nothing_and_runs_nothing_twice() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    const N: u64 = 200;
    let image = e2e::test_image().await;
    let dir = TempDir::new("kill9");
    let data = dir.0.join("data");
    let mut flags = docker_flags(&image);
    flags.extend(["--concurrency".into(), "8".into(), "--worker-bin".into()]);
    flags.push(e2e::worker_bin().display().to_string());
    let creates = CreateEvents::start();
    let mut h = HandlerProcess::start(&data, free_port(), &flags);
    let (http, base) = (reqwest::Client::new(), h.url());
    let r = http
        .post(format!("{base}/api/work"))
        .json(&serde_json::json!({"work": "echo ran $TASK_ID attempt $ATTEMPT", "count": N}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // Kill it while some tasks are finished and others are in flight.
    eventually(LONG, "a quarter of the burst to finish", || async {
        (terminal(&page(&http, &base, "limit=1").await) >= N / 4).then_some(())
    })
    .await;
    let before_kill = page(&http, &base, "limit=1").await;
    h.kill9();
    assert!(
        terminal(&before_kill) < N,
        "the burst ended before the kill: {:?}",
        before_kill.counts
    );
    h.restart();
    eventually(
        Duration::from_secs(600),
        "every task to end after the restart",
        || async { (terminal(&page(&http, &base, "limit=1").await) == N).then_some(()) },
    )
    .await;
    let tasks = all_tasks(&http, &base).await;
    assert_eq!(tasks.len() as u64, N, "no task may be lost or invented");
    let mut expected = BTreeSet::new();
    for t in &tasks {
        assert_eq!((t.state, t.attempt), (TaskState::Done, 1), "{t:#?}");
        for attempt in 1..=t.attempt {
            expected.insert(format!("eda-{}-{attempt}", t.id));
        }
        // No attempt reported InProgress twice (a message run twice would).
        let mut started = BTreeMap::new();
        for tr in t
            .transitions
            .iter()
            .filter(|tr| tr.state == TaskState::InProgress)
        {
            *started.entry(tr.attempt).or_insert(0) += 1;
        }
        assert!(started.values().all(|&n| n == 1), "{t:#?}");
    }
    // Docker's own record: each attempt's container was created exactly once.
    let ours: Vec<String> = eventually(LONG, "every create event", || async {
        let names: Vec<String> = creates
            .names()
            .into_iter()
            .filter(|n| {
                tasks
                    .iter()
                    .any(|t| n.starts_with(&format!("eda-{}-", t.id)))
            })
            .collect();
        (names.len() >= expected.len()).then_some(names)
    })
    .await;
    let unique: BTreeSet<String> = ours.iter().cloned().collect();
    assert_eq!(unique.len(), ours.len(), "a container was created twice");
    assert_eq!(
        unique, expected,
        "containers created differ from task attempts"
    );
    // And every one of them is cleaned up.
    eventually(LONG, "every container to be removed", || async {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                "label=eda.managed",
                "--format",
                "{{.Names}}",
            ])
            .output()
            .unwrap();
        let left = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| expected.contains(*n))
            .count();
        (left == 0).then_some(())
    })
    .await;
}

/// Local mode in-process on Docker with the test image, the shell worker, 128 MiB per container
/// and `extra` flags.
async fn docker_local(dir: &TempDir, extra: &[&str]) -> Option<handler::local::Running> {
    docker_local_mem(dir, 128, extra).await
}

/// [`docker_local`] with `memory_mb` per container.
async fn docker_local_mem(
    dir: &TempDir,
    memory_mb: u32,
    extra: &[&str],
) -> Option<handler::local::Running> {
    if !need("docker", e2e::docker_available()) {
        return None;
    }
    let image = e2e::test_image().await;
    let mut flags = docker_flags(&image);
    // Below the default lower bound of a task's memory: lower the bound with it.
    flags.extend(["--memory-mb".to_string(), memory_mb.to_string()]);
    flags.extend(["--min-memory-mb".to_string(), memory_mb.to_string()]);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(start_local(&dir.0, &flags).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_killed_work_fails_with_137_and_says_out_of_memory() {
    let dir = TempDir::new("oom");
    let Some(running) = docker_local_mem(&dir, 32, &[]).await else {
        return;
    };
    let api = Api::new(&running);
    // 200 MB into a shell variable in a 32 MiB container.
    let t = api
        .submit(serde_json::json!({
            "work": "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
            "max_attempts": 1
        }))
        .await;
    let t = api.wait_state(&t.id, TaskState::Failed, LONG).await;
    assert_eq!(t.exit_code, Some(137), "{t:#?}");
    // The kernel kills the biggest process (here the work's shell, not the worker); the worker
    // sees the new OOM kill in its memory cgroup's counter and says so.
    let reason = t.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("OOM killer"),
        "the reason should name the OOM killer: {t:#?}"
    );
    // Its container is gone before the handler stops (the test leaves nothing behind).
    e2e::until_removed(&running, &format!("eda-{}-1", t.id), LONG).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_past_its_timeout_is_timed_out_and_its_container_killed() {
    let dir = TempDir::new("timeout");
    let Some(running) = docker_local(&dir, &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let t = api
        .submit(serde_json::json!({"work": "echo started; sleep 300", "timeout_secs": 2, "max_attempts": 1}))
        .await;
    let t = api.wait_state(&t.id, TaskState::TimedOut, LONG).await;
    assert!(
        t.reason.as_deref().unwrap_or("").contains("timeout of 2 s"),
        "{t:#?}"
    );
    let name = t.container.clone().unwrap();
    e2e::until_removed(&running, &name, LONG).await;
    let logs = api.get(&format!("/api/tasks/{}/logs", t.id)).await;
    assert!(logs["text"].as_str().unwrap().contains("started"), "{logs}");
    running.stop().await;
}

/// A "worker" that reports InProgress and Done itself, then exits 1: what a worker that
/// crashes right after its last report looks like from outside.
const LIAR: &str = r#"#!/bin/sh
report() {
  /bin/busybox wget -q -O /dev/null --header "Authorization: Bearer $TASK_TOKEN" \
    --header "Content-Type: application/json" --post-data "$1" "$CALLBACK_URL"
}
report '{"state":"InProgress"}'
report '{"state":"Done","exit_code":0}'
echo reported done, exiting 1
exit 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_that_reports_done_then_exits_1_stays_done() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("liar");
    let script = dir.0.join("liar-worker");
    std::fs::write(&script, LIAR).unwrap();
    let image = "eda-liar-worker:test";
    let rt = handler::runtime::docker::DockerRuntime::connect()
        .await
        .unwrap();
    handler::runtime::image::ensure_worker_image(
        rt.client(),
        image,
        &script,
        Some(std::path::Path::new(e2e::runtimes::BUSYBOX)),
    )
    .await
    .unwrap();
    let data = dir.0.join("data");
    let argv: Vec<String> = [
        "handler",
        "local",
        "--bind",
        "127.0.0.1:0",
        "--runtime",
        "docker",
        "--image",
        image,
        "--sweep-ms",
        "200",
        "--memory-mb",
        "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--data-dir".into(), data.display().to_string()])
    .chain(["--worker-bin".into(), script.display().to_string()])
    .collect();
    let running = handler::local::start(handler::config::local_args(&argv).unwrap())
        .await
        .unwrap();
    let api = Api::new(&running);
    let t = api
        .submit(serde_json::json!({"work": "anything", "max_attempts": 1}))
        .await;
    let t = api.wait_state(&t.id, TaskState::Done, LONG).await;
    let name = t.container.clone().unwrap();
    // The container really exited 1 and was cleaned up; the task stays Done with exit code 0.
    e2e::until_removed(&running, &name, LONG).await;
    let t = api.task(&t.id).await;
    assert_eq!(
        (t.state, t.exit_code, t.attempt),
        (TaskState::Done, Some(0), 1),
        "{t:#?}"
    );
    let logs = api.get(&format!("/api/tasks/{}/logs", t.id)).await;
    assert!(
        logs["text"].as_str().unwrap().contains("exiting 1"),
        "{logs}"
    );
    running.stop().await;
}

/// How many tasks a handler holds, from the counts of `GET /api/tasks`.
async fn stored(http: &reqwest::Client, base: &str) -> u64 {
    page(http, base, "limit=1").await.counts.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_is_refused_clearly_with_bounded_memory_and_nothing_stored() {
    let dir = TempDir::new("hostile-http");
    let flags: Vec<String> = ["--runtime", "process", "--concurrency", "1", "--worker-bin"]
        .iter()
        .map(|s| s.to_string())
        .chain([e2e::worker_bin().display().to_string()])
        .collect();
    let h = HandlerProcess::start(&dir.0.join("data"), free_port(), &flags);
    let api = e2e::Api {
        base: h.url(),
        http: reqwest::Client::new(),
    };
    let (http, base) = (api.http.clone(), api.base.clone());
    let post = |body: Vec<u8>| {
        let api = api.clone();
        async move { api.post_raw("/api/work", body).await }
    };
    // Warm up, then take the resting memory.
    for _ in 0..200 {
        assert_eq!(post(b"[]".to_vec()).await.0, 400);
    }
    let before = rss_kib(h.pid());
    // A million levels of nesting (2 MB, under the body limit): refused, no stack overflow.
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let (s, v) = post(deep.into_bytes()).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("too_deep")), "{v}");
    // Invalid UTF-8 and NUL bytes in work, raw and escaped.
    for body in [
        b"{\"work\": \"\xc3\x28\"}".to_vec(),
        b"{\"work\": \"a\x00b\"}".to_vec(),
        br#"{"work": "a\u0000b"}"#.to_vec(),
    ] {
        let (s, v) = post(body).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["message"].as_str().unwrap().len() > 10, "{v}");
    }
    // Garbage in the path and query.
    for path in [
        "/api/tasks/%FF%FE",
        "/api/tasks/a%00b",
        "/api/tasks?limit=%FF",
        "/api/tasks?state=%00",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
    }
    assert_eq!(
        stored(&http, &base).await,
        0,
        "nothing may be stored from bad input"
    );
    // 10,000 worker reports with bad tokens (none, wrong, huge, not even a Bearer), 32 at a time.
    let id = "0123456789abcdef";
    let url = format!("{base}/api/tasks/{id}/state");
    let huge = "t".repeat(8 * 1024);
    let mut statuses = BTreeMap::new();
    for chunk in (0..10_000).collect::<Vec<u32>>().chunks(32) {
        let batch = chunk.iter().map(|i| {
            let mut req = http.post(&url).body(r#"{"state":"Done","exit_code":0}"#);
            req = match i % 4 {
                0 => req,
                1 => req.bearer_auth(format!("{i:064x}")),
                2 => req.bearer_auth(&huge),
                _ => req.header("authorization", "Basic Zm9vOmJhcg=="),
            };
            req.send()
        });
        for r in futures::future::join_all(batch).await {
            *statuses.entry(r.unwrap().status().as_u16()).or_insert(0u32) += 1;
        }
    }
    assert!(
        statuses.keys().all(|s| [401, 403, 404].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(statuses.values().sum::<u32>(), 10_000);
    let after = rss_kib(h.pid());
    assert!(
        after < before + 30 * 1024,
        "memory grew from {before} KiB to {after} KiB over 10,000 refused requests"
    );
    assert_eq!(stored(&http, &base).await, 0);
    // Exactly at the limits is accepted.
    let at_limit = "x".repeat(model::limits::MAX_WORK_BYTES);
    let (s, v) = post(
        serde_json::json!({"work": at_limit})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = post(
        serde_json::json!({"work": "w", "count": model::limits::MAX_BATCH})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        stored(&http, &base).await,
        1 + model::limits::MAX_BATCH as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_command_lines_fail_cleanly() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("hostile-cli");
    let running = start_local(&dir.0, &["--runtime", "process", "--concurrency", "1"]).await;
    let api = running.url();
    let bin = e2e::faults::handler_bin();
    let run = |args: Vec<std::ffi::OsString>| {
        std::process::Command::new(&bin)
            .args(args)
            .output()
            .unwrap()
    };
    let over = "x".repeat(model::limits::MAX_WORK_BYTES + 1);
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                "submit".into(),
                "--api".into(),
                api.clone().into(),
                over.into(),
            ],
            "65536",
        ),
        (
            vec![
                "submit".into(),
                "--api".into(),
                api.clone().into(),
                std::ffi::OsStr::from_bytes(b"\xff\xfe").into(),
            ],
            "UTF-8",
        ),
        (
            vec![
                "submit".into(),
                "--api".into(),
                api.clone().into(),
                "--count".into(),
                "100000".into(),
                "w".into(),
            ],
            "1000",
        ),
        (
            vec![
                "tasks".into(),
                "--api".into(),
                api.clone().into(),
                "--state".into(),
                "Bogus".into(),
            ],
            "Bogus",
        ),
    ];
    for (args, words) in cases {
        let out = run(args.clone());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    assert_eq!(stored(&reqwest::Client::new(), &api).await, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queue_messages_are_dead_lettered_without_tasks() {
    let dir = TempDir::new("hostile-queue");
    let running = start_local(
        &dir.0,
        &[
            "--runtime",
            "process",
            "--max-deliveries",
            "2",
            "--concurrency",
            "2",
        ],
    )
    .await;
    let big = "x".repeat(model::limits::MAX_WORK_BYTES + 1);
    let big_envelope = serde_json::json!({"id": "bigenvelope", "work": big}).to_string();
    let nul_envelope = serde_json::json!({"id": "nulenvelope", "work": "a\u{0}b"}).to_string();
    for (id, body) in [
        ("nul", "a\0b".to_string()),
        ("big", big.clone()),
        ("blank", " \n\t ".to_string()),
        ("bigenv", big_envelope),
        ("nulenv", nul_envelope),
    ] {
        running.queue.send_raw(id, &body).await.unwrap();
    }
    eventually(LONG, "the queue to drain", || async {
        (running.queue.depth().await.unwrap() == 0).then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let tasks = all_tasks(&http, &running.url()).await;
    assert!(
        tasks
            .iter()
            .all(|t| t.work.len() <= model::limits::MAX_WORK_BYTES && !t.work.contains('\0')),
        "a message over the limits became a task: {:?}",
        tasks
            .iter()
            .map(|t| (&t.id, t.work.len(), t.state))
            .collect::<Vec<_>>()
    );
    assert!(tasks.is_empty(), "{tasks:#?}");
    // The handler still works.
    let t = Api::new(&running)
        .submit(serde_json::json!({"work": "fine"}))
        .await;
    assert_eq!(t.state, TaskState::Pending);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_while_100_healthy_tasks_complete() {
    let dir = TempDir::new("poison");
    // The image is allowed (a task may only ask for one on the allow-list) but does not exist.
    let flags = [
        "--max-deliveries",
        "3",
        "--concurrency",
        "8",
        "--allowed-image",
        "eda-no-such-image:never",
    ];
    let Some(running) = docker_local(&dir, &flags).await else {
        return;
    };
    let api = Api::new(&running);
    let healthy = api
        .submit(serde_json::json!({"work": "echo healthy", "count": 50}))
        .await;
    // The poison: an envelope naming an image that does not exist (a producer's mistake).
    let poison = serde_json::json!({"id": "poison0001", "work": "echo never", "image": "eda-no-such-image:never"});
    running
        .queue
        .send_raw("poison-1", &poison.to_string())
        .await
        .unwrap();
    let more = api
        .submit(serde_json::json!({"work": "echo healthy", "count": 50}))
        .await;
    let id = model::TaskId::parse("poison0001").unwrap();
    // The task exists only once the spawner has seen the message: wait through the 404s.
    let dead: Task = eventually(LONG, "the poison message to be dead-lettered", || async {
        let v = api.get(&format!("/api/tasks/{id}")).await;
        let t: Task = serde_json::from_value(v).ok()?;
        (t.state == TaskState::DeadLettered).then_some(t)
    })
    .await;
    let reason = dead.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("3 deliveries") && reason.contains("eda-no-such-image"),
        "{dead:#?}"
    );
    assert_eq!(
        dead.attempt, 1,
        "a message that never spawned used one attempt: {dead:#?}"
    );
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(300),
        "the 100 healthy tasks to finish",
        || async {
            let p = page(&http, &running.url(), "limit=1").await;
            (p.counts.get(&TaskState::Done).copied().unwrap_or(0) == 100).then_some(())
        },
    )
    .await;
    for t in [healthy, more] {
        assert_eq!(api.task(&t.id).await.state, TaskState::Done);
    }
    // Stop only once the reconciler removed every container (stopping as the last task ended
    // left its container behind).
    for t in all_tasks(&http, &running.url()).await {
        if let Some(name) = &t.container {
            e2e::until_removed(&running, name, LONG).await;
        }
    }
    running.stop().await;
}
