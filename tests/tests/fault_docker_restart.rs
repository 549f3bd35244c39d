//! The Docker daemon stops mid-run and comes back: tasks wait with a visible reason, then
//! complete. Runs against a private daemon of its own (`PrivateDockerd`: own socket, data root,
//! containerd and default bridge), so stopping it disturbs no other test or user of the
//! machine's daemon; the test checks that the host daemon's `docker0` is still there afterwards
//! (an earlier version of the private daemon deleted it). Alone in its test binary because it
//! points `DOCKER_HOST` of the whole process at that daemon.

use e2e::faults::{docker_flags, PrivateDockerd};
use e2e::{eventually, need, start_local, Api, TempDir};
use model::{TaskPage, TaskState};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_wait_for_a_stopped_docker_daemon_and_then_complete() {
    if !need(
        "root and dockerd (a private Docker daemon)",
        PrivateDockerd::possible(),
    ) {
        return;
    }
    let docker0_before = docker0_exists();
    let mut daemon = PrivateDockerd::start();
    // Everything in this process (bollard in the handler, the docker CLI) now talks to it.
    std::env::set_var("DOCKER_HOST", daemon.host());
    let image = e2e::test_image().await;
    let dir = TempDir::new("dockerd-restart");
    let mut flags = docker_flags(&image);
    flags.extend(["--concurrency".into(), "8".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let running = start_local(&dir.0, &flags).await;
    let api = Api::new(&running);
    let page = || async {
        let p: TaskPage = serde_json::from_value(api.get("/api/tasks?limit=100").await).unwrap();
        p
    };
    let count = |p: &TaskPage, s: TaskState| p.counts.get(&s).copied().unwrap_or(0);
    // Two long tasks run across the outage; four short ones finish before it.
    api.submit(serde_json::json!({"work": "sleep 3; echo long", "count": 2}))
        .await;
    api.submit(serde_json::json!({"work": "echo short", "count": 4}))
        .await;
    eventually(
        Duration::from_secs(120),
        "4 tasks done and 2 running",
        || async {
            let p = page().await;
            (count(&p, TaskState::Done) >= 4 && count(&p, TaskState::InProgress) == 2).then_some(())
        },
    )
    .await;
    daemon.stop();
    // Work that arrives while Docker is down waits, and says why.
    api.submit(serde_json::json!({"work": "echo after", "count": 10}))
        .await;
    let waiting = eventually(
        Duration::from_secs(60),
        "a task to show it waits for the runtime",
        || async {
            page().await.tasks.into_iter().find(|t| {
                !t.state.is_terminal()
                    && t.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("container runtime"))
            })
        },
    )
    .await;
    assert!(!waiting.state.is_terminal(), "{waiting:#?}");
    const N: u64 = 16;
    daemon.resume();
    let done = eventually(
        Duration::from_secs(300),
        "every task to finish after the restart",
        || async {
            let p = page().await;
            let finished: u64 = p
                .counts
                .iter()
                .filter(|(s, _)| s.is_terminal())
                .map(|(_, n)| n)
                .sum();
            (finished == N).then_some(p)
        },
    )
    .await;
    assert_eq!(
        done.counts.get(&TaskState::Done).copied(),
        Some(N),
        "every task should complete once Docker is back: {:#?}",
        done.tasks
    );
    running.stop().await;
    drop(daemon);
    assert_eq!(
        docker0_exists(),
        docker0_before,
        "the private daemon must leave the host daemon's docker0 bridge alone"
    );
}

/// Whether the host daemon's default bridge exists (`ip link show docker0`).
fn docker0_exists() -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", "docker0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
