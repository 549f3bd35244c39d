//! Local mode end to end against a real Docker Engine (mandatory in CI): a message in, one
//! real container out, its whole life recorded. Each test runs its own handler on port 0 with
//! its own data dir; task messages are shell commands (`sh -c "$MESSAGE"` in the worker).

use e2e::{eventually, need, start_local, Api, TempDir};
use handler::local::Running;
use handler::spawn::Outcome;
use model::TaskState::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Starts local mode on Docker with the test image (worker + busybox), or None outside CI
/// when no engine answers.
async fn docker_local(dir: &TempDir, extra: &[&str]) -> Option<Running> {
    if !need("docker", e2e::docker_available()) {
        return None;
    }
    let image = e2e::test_image().await;
    let mut flags = vec![
        "--runtime",
        "docker",
        "--image",
        image.as_str(),
        "--memory-mb",
        "128",
    ];
    let args = e2e::shell_worker_args();
    let args: Vec<String> = args.iter().map(|a| format!("--worker-arg={a}")).collect();
    flags.extend(args.iter().map(String::as_str));
    flags.extend_from_slice(extra);
    Some(start_local(&dir.0, &flags).await)
}

/// Names of the containers (any state) of one task.
fn docker_names(task: &str) -> Vec<String> {
    e2e::docker_list(&format!("name=eda-{task}-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_from_post_to_done_with_output_metrics_and_events() {
    let dir = TempDir::new("happy");
    let Some(running) = docker_local(&dir, &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let mut events = api
        .http
        .get(format!("{}/api/events", api.base))
        .send()
        .await
        .unwrap();
    let t = api
        .submit(serde_json::json!({"work": "echo hello from $CONTAINER_NAME; sleep 2; echo bye"}))
        .await;
    assert_eq!(t.state, Pending);
    let done = api.wait_state(&t.id, Done, LONG).await;
    let states: Vec<_> = done.transitions.iter().map(|t| t.state).collect();
    assert_eq!(states, [Pending, Provisioning, InProgress, Done]);
    let name = format!("eda-{}-1", t.id);
    assert_eq!(done.container.as_deref(), Some(name.as_str()));
    assert_eq!((done.exit_code, done.attempt), (Some(0), 1));
    assert!(done.billed_seconds >= 2 && done.cost > 0.0, "{done:?}");
    let logs = eventually(LONG, "captured logs", || async {
        let l = api.get(&format!("/api/tasks/{}/logs", t.id)).await;
        let text = l["text"].as_str().unwrap_or_default().to_string();
        text.contains("bye").then_some(text)
    })
    .await;
    assert!(logs.contains(&format!("hello from {name}")), "{logs}");
    let m = api.get(&format!("/api/tasks/{}/metrics", t.id)).await;
    assert!(
        !m["samples"].as_array().unwrap().is_empty(),
        "samples while it ran: {m}"
    );
    eventually(LONG, "the container to be removed", || async {
        docker_names(t.id.as_str()).is_empty().then_some(())
    })
    .await;
    let mut seen = String::new();
    while !seen.contains("\"Done\"") {
        let chunk = tokio::time::timeout(LONG, events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    for s in [
        "\"Pending\"",
        "\"Provisioning\"",
        "\"InProgress\"",
        "event: task",
    ] {
        assert!(seen.contains(s), "SSE stream should carry {s}: {seen}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_in_the_state_that_tells_the_truth() {
    let dir = TempDir::new("fail");
    let Some(running) = docker_local(&dir, &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let exit3 = api
        .submit(serde_json::json!({"work": "echo failing; exit 3", "max_attempts": 1}))
        .await;
    let hang = api
        .submit(serde_json::json!({"work": "sleep 300", "max_attempts": 1}))
        .await;
    let slow = api
        .submit(serde_json::json!({"work": "sleep 300", "max_attempts": 1, "timeout_secs": 2}))
        .await;

    let failed = api.wait_state(&exit3.id, Failed, LONG).await;
    assert_eq!(failed.exit_code, Some(3));
    assert!(
        failed.reason.as_deref().unwrap().contains('3'),
        "{failed:?}"
    );

    api.wait_state(&hang.id, InProgress, LONG).await;
    let name = format!("eda-{}-1", hang.id);
    let killed = std::process::Command::new("docker")
        .args(["kill", "-s", "KILL", &name])
        .status()
        .unwrap();
    assert!(killed.success());
    let killed = api.wait_state(&hang.id, Failed, LONG).await;
    assert_eq!(killed.exit_code, Some(137));
    assert!(
        killed.reason.as_deref().unwrap().contains("SIGKILL"),
        "{killed:?}"
    );

    let timed = api.wait_state(&slow.id, TimedOut, LONG).await;
    assert!(
        timed.reason.as_deref().unwrap().contains("timeout of 2 s"),
        "{timed:?}"
    );
    for id in [&exit3.id, &hang.id, &slow.id] {
        eventually(LONG, "containers removed", || async {
            docker_names(id.as_str()).is_empty().then_some(())
        })
        .await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_retried_then_succeeds() {
    let dir = TempDir::new("retry");
    let Some(running) = docker_local(&dir, &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let t = api
        .submit(serde_json::json!({"work": "echo attempt $ATTEMPT; test \"$ATTEMPT\" -ge 2 || exit 5", "max_attempts": 3}))
        .await;
    let done = api.wait_state(&t.id, Done, LONG).await;
    assert_eq!(done.attempt, 2);
    assert_eq!(
        done.container.as_deref(),
        Some(format!("eda-{}-2", t.id).as_str())
    );
    let retry = done
        .transitions
        .iter()
        .find(|tr| tr.state == Pending && tr.attempt == 1)
        .expect("a retry entry");
    assert!(
        retry
            .reason
            .as_deref()
            .unwrap()
            .contains("attempt 1/3 failed"),
        "{retry:?}"
    );
    // Both attempts' containers are gone before the handler stops (the test leaves nothing).
    for n in 1..=2 {
        e2e::until_removed(&running, &format!("eda-{}-{n}", t.id), LONG).await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_makes_one_container() {
    let dir = TempDir::new("dup");
    let Some(running) = docker_local(&dir, &["--concurrency", "1"]).await else {
        return;
    };
    // Deliver the same plain-text message twice, as Service Bus does after a crash between
    // container create and message complete.
    // A fresh queue message id per run: the task id (and so the container name) derives from it.
    let (id, first, second) = e2e::deliver_twice(&running, "dup", "sleep 2").await;
    assert_eq!(first, Outcome::Started(id.clone()));
    assert_eq!(second, Outcome::AlreadyRunning(id.clone()));
    assert_eq!(docker_names(id.as_str()), vec![format!("eda-{id}-1")]);
    let api = Api::new(&running);
    api.wait_state(&id, Done, LONG).await;
    // Its container is gone before the handler stops (the test leaves nothing behind).
    e2e::until_removed(&running, &format!("eda-{id}-1"), LONG).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_only_works_for_its_own_task() {
    let dir = TempDir::new("iso");
    let Some(running) = docker_local(&dir, &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let a = api
        .submit(serde_json::json!({"work": "sleep 300", "max_attempts": 1}))
        .await;
    let b = api
        .submit(serde_json::json!({"work": "sleep 300", "max_attempts": 1}))
        .await;
    api.wait_state(&a.id, InProgress, LONG).await;
    api.wait_state(&b.id, InProgress, LONG).await;
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            &format!("eda-{}-1", a.id),
        ])
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    let token_a = env
        .lines()
        .find_map(|l| l.strip_prefix("TASK_TOKEN="))
        .expect("the container has its token")
        .to_string();
    assert!(
        !env.contains("DATABASE") && !env.contains("eda.db"),
        "no database credentials in containers"
    );
    let report = |id: &model::TaskId| format!("{}/api/tasks/{id}/state", api.base);
    let cross = api
        .http
        .post(report(&b.id))
        .bearer_auth(&token_a)
        .body(r#"{"state":"Done"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403, "A's token must not touch B");
    assert_eq!(api.task(&b.id).await.state, InProgress);
    let own = api
        .http
        .post(report(&a.id))
        .bearer_auth(&token_a)
        .body(r#"{"state":"Done"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 204);
    assert_eq!(api.task(&a.id).await.state, Done);
    let cancel = api
        .http
        .post(format!("{}/api/tasks/{}/cancel", api.base, b.id))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 200);
    let b_now = api.task(&b.id).await;
    assert_eq!(b_now.state, Cancelled);
    for id in [&a.id, &b.id] {
        eventually(LONG, "containers removed", || async {
            docker_names(id.as_str()).is_empty().then_some(())
        })
        .await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_flight_loses_nothing() {
    let dir = TempDir::new("restart");
    let Some(running) = docker_local(&dir, &["--concurrency", "2"]).await else {
        return;
    };
    let api = Api::new(&running);
    let first = api
        .submit(serde_json::json!({"work": "sleep 3; echo survived"}))
        .await;
    let queued: Vec<_> = (0..4)
        .map(|n| serde_json::json!({"work": format!("echo queued {n}")}))
        .collect();
    let (status, v) = api
        .post_raw("/api/work", serde_json::to_vec(&queued).unwrap())
        .await;
    assert_eq!(status, 202, "{v}");
    api.wait_state(&first.id, InProgress, LONG).await;
    let addr = running.addr.to_string();
    running.stop().await;

    // Same port: the running worker's callbacks reach the new process.
    let running = docker_local(&dir, &["--concurrency", "2", "--bind", &addr])
        .await
        .unwrap();
    let api = Api::new(&running);
    let done = api.wait_state(&first.id, Done, LONG).await;
    assert_eq!(
        done.attempt, 1,
        "the running container was adopted, not restarted"
    );
    for t in v["tasks"].as_array().unwrap() {
        let id = model::TaskId::parse(t["id"].as_str().unwrap()).unwrap();
        api.wait_state(&id, Done, LONG).await;
    }
    let cleared = api
        .http
        .delete(format!("{}/api/tasks?state=finished", api.base))
        .send()
        .await
        .unwrap();
    let cleared: serde_json::Value = cleared.json().await.unwrap();
    assert_eq!(cleared["removed"], 5);
    assert_eq!(
        api.get("/api/tasks").await["tasks"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_is_a_real_cap_on_containers() {
    let dir = TempDir::new("cap");
    let Some(running) = docker_local(&dir, &["--concurrency", "2"]).await else {
        return;
    };
    let api = Api::new(&running);
    let batch: Vec<_> = (0..6)
        .map(|_| serde_json::json!({"work": "sleep 1"}))
        .collect();
    let (_, v) = api
        .post_raw("/api/work", serde_json::to_vec(&batch).unwrap())
        .await;
    let ids: Vec<model::TaskId> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| model::TaskId::parse(t["id"].as_str().unwrap()).unwrap())
        .collect();
    let mut most = 0;
    loop {
        // One listing, so the count is a snapshot (per-id listings would add up containers
        // that never existed at the same time).
        let all = e2e::docker_list("name=eda-");
        let live = all
            .iter()
            .filter(|n| ids.iter().any(|id| n.contains(id.as_str())))
            .count();
        let mut finished = 0;
        for id in &ids {
            finished += usize::from(api.task(id).await.state == Done);
        }
        most = most.max(live);
        assert!(live <= 2, "{live} containers exist with a cap of 2");
        if finished == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most, 2, "the cap should be used fully while work waits");
    // Every container is gone before the handler stops (the test leaves nothing behind).
    for id in &ids {
        e2e::until_removed(&running, &format!("eda-{id}-1"), LONG).await;
    }
    running.stop().await;
}
