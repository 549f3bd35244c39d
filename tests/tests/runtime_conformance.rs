//! One conformance suite for every [`ContainerRuntime`] backend this machine has: each check is
//! written once, taking the runtime as `Arc<dyn ContainerRuntime>`, and run against the process
//! runtime (always) and the Docker runtime (needs a Docker Engine: skipped outside CI, mandatory
//! in CI). Nothing is mocked: real children, real containers, the real static worker.

use e2e::runtimes::{unique, wait_for, Harness};
use futures::StreamExt;
use handler::runtime::{ContainerRuntime, ContainerStatus, Created, Phase, RuntimeError};
use std::sync::Arc;
use std::time::Duration;

/// Long enough for a container to start and exit on a busy 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

async fn status(rt: &Arc<dyn ContainerRuntime>, name: &str) -> Option<ContainerStatus> {
    rt.status(name).await.expect("status")
}

/// Waits until `name` has exited and returns its status.
async fn exited(rt: &Arc<dyn ContainerRuntime>, name: &str) -> ContainerStatus {
    wait_for(&format!("{name} to exit"), WAIT, || async {
        status(rt, name).await.filter(|s| s.phase == Phase::Exited)
    })
    .await
}

/// Waits until `name` runs.
async fn running(rt: &Arc<dyn ContainerRuntime>, name: &str) {
    wait_for(&format!("{name} to run"), WAIT, || async {
        let s = status(rt, name).await;
        assert_ne!(s.as_ref().map(|s| s.phase), Some(Phase::Exited), "{s:?}");
        s.filter(|s| s.phase == Phase::Running)
    })
    .await;
}

/// The demo work runs, exits 0, its output is in the logs and its name comes out of `exits()`.
async fn demo_exits_zero_with_logs_and_exit_event(h: &Harness) {
    let rt = &h.rt;
    let name = unique("zero");
    let mut exits = rt.exits().expect("both local runtimes push exits");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        while let Some(n) = exits.next().await {
            let _ = tx.send(n);
        }
    });
    let created = rt
        .create(&h.spec(&name, &["--seconds", "2"]))
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    running(rt, &name).await;
    let s = exited(rt, &name).await;
    assert_eq!(s.exit_code, Some(0), "{s:?}");
    assert!(!s.oom_killed);
    let logs = rt.logs(&name, 64 * 1024).await.unwrap();
    assert!(logs.text.contains("sha256 "), "{logs:?}");
    assert!(!logs.truncated);
    let tail = rt.logs(&name, 16).await.unwrap();
    assert!(tail.truncated && tail.text.len() <= 16, "{tail:?}");
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(n) = rx.recv().await {
            if n == name {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "exits() never yielded {name}");
    watcher.abort();
    rt.remove(&name).await.unwrap();
}

/// The user command's exit code is the container's.
async fn command_exit_code_passes_through(h: &Harness) {
    let name = unique("three");
    let spec = h.spec(
        &name,
        &["--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3"],
    );
    h.rt.create(&spec).await.unwrap();
    let s = exited(&h.rt, &name).await;
    assert_eq!(s.exit_code, Some(3), "{s:?}");
    let logs = h.rt.logs(&name, 4096).await.unwrap();
    assert!(
        logs.text.contains("to-out") && logs.text.contains("to-err"),
        "{logs:?}"
    );
    h.rt.remove(&name).await.unwrap();
}

/// A killed container exits 137 and says it was killed by signal 9; killing it again, or a
/// container that does not exist, is fine.
async fn kill_is_137(h: &Harness) {
    let name = unique("kill");
    h.rt.create(&h.spec(&name, &["--seconds", "60"]))
        .await
        .unwrap();
    running(&h.rt, &name).await;
    h.rt.kill(&name).await.unwrap();
    let s = exited(&h.rt, &name).await;
    assert_eq!(s.exit_code, Some(137), "{s:?}");
    assert!(
        s.detail.as_deref().unwrap_or("").contains("signal 9"),
        "{s:?}"
    );
    h.rt.kill(&name).await.unwrap();
    h.rt.kill(&unique("never")).await.unwrap();
    h.rt.remove(&name).await.unwrap();
}

/// Creating one name twice, even at the same time, makes one container.
async fn create_twice_makes_one(h: &Harness) {
    let name = unique("twice");
    let spec = h.spec(&name, &["--seconds", "30"]);
    let (a, b) = tokio::join!(h.rt.create(&spec), h.rt.create(&spec));
    let mut both = [a.unwrap(), b.unwrap()];
    both.sort_by_key(|c| *c == Created::AlreadyExisted);
    assert_eq!(both, [Created::New, Created::AlreadyExisted]);
    assert_eq!(h.rt.create(&spec).await.unwrap(), Created::AlreadyExisted);
    let listed = h.rt.list().await.unwrap();
    assert_eq!(
        listed.iter().filter(|n| **n == name).count(),
        1,
        "{listed:?}"
    );
    h.rt.remove(&name).await.unwrap();
}

/// A running container has CPU and memory samples; the demo burns CPU.
async fn sample_while_running(h: &Harness) {
    let name = unique("sample");
    h.rt.create(&h.spec(&name, &["--seconds", "60"]))
        .await
        .unwrap();
    running(&h.rt, &name).await;
    let sample = wait_for("a busy sample", WAIT, || async {
        let s = h.rt.sample(&name).await.unwrap();
        s.filter(|s| s.cpu_percent > 5.0 && s.memory_bytes > 0)
    })
    .await;
    assert!(sample.cpu_percent < 400.0, "{sample:?}");
    assert!(sample.at_ms > 0);
    h.rt.kill(&name).await.unwrap();
    exited(&h.rt, &name).await;
    assert_eq!(h.rt.sample(&name).await.unwrap(), None);
    assert_eq!(h.rt.sample(&unique("never")).await.unwrap(), None);
    h.rt.remove(&name).await.unwrap();
}

/// After remove, the name is unknown: no status, not listed; removing again is fine.
async fn remove_forgets(h: &Harness) {
    let name = unique("remove");
    h.rt.create(&h.spec(&name, &["--seconds", "0"]))
        .await
        .unwrap();
    exited(&h.rt, &name).await;
    assert!(h.rt.list().await.unwrap().contains(&name));
    h.rt.remove(&name).await.unwrap();
    assert_eq!(status(&h.rt, &name).await, None);
    assert!(!h.rt.list().await.unwrap().contains(&name));
    h.rt.remove(&name).await.unwrap();
    // A running one can be removed too (force), and the name is free again.
    h.rt.create(&h.spec(&name, &["--seconds", "60"]))
        .await
        .unwrap();
    h.rt.remove(&name).await.unwrap();
    assert_eq!(status(&h.rt, &name).await, None);
    assert_eq!(
        h.rt.create(&h.spec(&name, &["--seconds", "0"]))
            .await
            .unwrap(),
        Created::New
    );
    exited(&h.rt, &name).await;
    h.rt.remove(&name).await.unwrap();
}

/// An image (for the process runtime: a worker binary) that cannot be had is `ImageMissing`,
/// a permanent error, and leaves nothing behind.
async fn missing_image_is_image_missing(h: &Harness) {
    let (rt, image) = &h.broken;
    let name = unique("noimage");
    let mut spec = h.spec(&name, &[]);
    spec.image = image.clone();
    let err = rt.create(&spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing(_)), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(rt.status(&name).await.unwrap(), None);
}

/// Allocating beyond the memory limit gets the work OOM-killed.
async fn memory_limit_is_enforced(h: &Harness) {
    if !h.limits {
        eprintln!(
            "SKIPPED: {} runtime: memory cgroups are not writable here, no limit to check",
            h.rt.kind()
        );
        return;
    }
    let name = unique("oom");
    // Doubles a shell string up to 512 MiB (bounded, in case no limit applies) under 32 MiB.
    let hog = "x=a; while [ ${#x} -lt 500000000 ]; do x=$x$x; done; echo no-limit";
    let mut spec = h.spec(&name, &["--", "sh", "-c", hog]);
    spec.resources.memory_mb = 32;
    h.rt.create(&spec).await.unwrap();
    let s = exited(&h.rt, &name).await;
    let logs = h.rt.logs(&name, 4096).await.unwrap();
    assert!(s.oom_killed, "{s:?} {logs:?}");
    assert_ne!(s.exit_code, Some(0), "{s:?}");
    assert!(!logs.text.contains("no-limit"), "{logs:?}");
    h.rt.remove(&name).await.unwrap();
}

/// Declares one test per check and backend: `process::<check>` and `docker::<check>`.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(&e2e::runtimes::Harness::process().await).await;
                }
            )*
        }
        mod docker {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Some(h) = e2e::runtimes::Harness::docker().await {
                        super::$check(&h).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    demo_exits_zero_with_logs_and_exit_event,
    command_exit_code_passes_through,
    kill_is_137,
    create_twice_makes_one,
    sample_while_running,
    remove_forgets,
    missing_image_is_image_missing,
    memory_limit_is_enforced,
);
