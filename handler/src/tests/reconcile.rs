//! The reconciler's exit handling: a container that ended without its worker reporting is
//! finished from its exit code, retried while attempts are left, killed when overdue, failed
//! when it vanished; finished containers have their logs captured and are removed.

use super::fixture::{delivery, Fixture};
use crate::reconcile::sweep;
use crate::runtime::{ContainerRuntime, Phase};
use crate::spawn::{derived_id, handle};
use model::naming::container_name;
use model::{TaskId, TaskState};

/// A fixture with one task spawned from message `mid`; returns the task's id and container.
async fn spawned(fx: &Fixture, mid: &str) -> (TaskId, String) {
    handle(&fx.app, &delivery(mid, "work", 1)).await.unwrap();
    let id = derived_id(mid);
    let name = container_name(&id, 1);
    (id, name)
}

#[tokio::test]
async fn exit_zero_without_a_report_is_done_with_logs_and_the_container_removed() {
    let fx = Fixture::new(&[]);
    let (id, name) = spawned(&fx, "r-1").await;
    sweep(&fx.app).await.unwrap();
    assert_eq!(
        fx.task(&id).await.state,
        TaskState::Provisioning,
        "still running"
    );
    fx.runtime.exit(&name, 0);
    sweep(&fx.app).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!((t.state, t.exit_code), (TaskState::Done, Some(0)));
    assert_eq!(
        t.reason.as_deref(),
        Some("container exited 0 without reporting Done")
    );
    let logs = fx.logs(&id).await.expect("logs captured");
    assert_eq!(logs.text, format!("output of {name}\n"));
    assert_eq!(fx.runtime.status(&name).await.unwrap(), None, "removed");
    assert!(fx.intake.requeued.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_attempt_with_attempts_left_is_requeued_after_a_backoff() {
    let fx = Fixture::new(&["--max-attempts", "2", "--retry-backoff-ms", "1000"]);
    let (id, name) = spawned(&fx, "r-2").await;
    fx.runtime.exit(&name, 3);
    let before = crate::clock::now_ms();
    sweep(&fx.app).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!((t.state, t.exit_code), (TaskState::Pending, Some(3)));
    let reason = t.reason.unwrap_or_default();
    assert!(
        reason.starts_with("attempt 1/2 failed: exited with code 3 without reporting"),
        "{reason}"
    );
    let requeued = fx.intake.requeued.lock().unwrap().clone();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].0, id);
    assert!(
        requeued[0].1 >= before + 1000,
        "{requeued:?} after {before}"
    );
    assert_eq!(fx.runtime.status(&name).await.unwrap(), None, "removed");
    // The retry is a new attempt with a new container.
    handle(&fx.app, &delivery("r-2", "work", 1)).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!((t.state, t.attempt), (TaskState::Provisioning, 2));
    assert!(fx.runtime.spec(&container_name(&id, 2)).is_some());
}

#[tokio::test]
async fn the_last_attempt_failing_fails_the_task_with_the_exit_in_words() {
    let fx = Fixture::new(&["--max-attempts", "1"]);
    let (id, name) = spawned(&fx, "r-3").await;
    fx.runtime.exit(&name, 143);
    sweep(&fx.app).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!((t.state, t.exit_code), (TaskState::Failed, Some(143)));
    assert_eq!(
        t.reason.as_deref(),
        Some("killed by signal 15, exit code 143 (killed by signal 15)")
    );
    assert!(fx.intake.requeued.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_oom_kill_says_so() {
    let fx = Fixture::new(&["--max-attempts", "1"]);
    let (id, name) = spawned(&fx, "r-4").await;
    fx.runtime.oom(&name);
    sweep(&fx.app).await.unwrap();
    let reason = fx.task(&id).await.reason.unwrap_or_default();
    assert!(
        reason.starts_with("killed by the kernel's OOM killer"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_vanished_container_fails_the_attempt_after_the_grace_period() {
    let fx = Fixture::new(&["--max-attempts", "1", "--provision-grace-secs", "0"]);
    let (id, name) = spawned(&fx, "r-5").await;
    fx.runtime.vanish(&name);
    sweep(&fx.app).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(
        t.reason.as_deref(),
        Some("the container disappeared without reporting")
    );
}

#[tokio::test]
async fn a_vanished_container_is_waited_for_during_the_grace_period() {
    let fx = Fixture::new(&["--provision-grace-secs", "60"]);
    let (id, name) = spawned(&fx, "r-6").await;
    fx.runtime.vanish(&name);
    sweep(&fx.app).await.unwrap();
    assert_eq!(fx.task(&id).await.state, TaskState::Provisioning);
}

#[tokio::test]
async fn an_overdue_container_is_timed_out_killed_and_then_removed() {
    let fx = Fixture::new(&[]);
    handle(
        &fx.app,
        &delivery("r-7", r#"{"id":"late","work":"w","timeout_secs":1}"#, 1),
    )
    .await
    .unwrap();
    let id = TaskId::parse("late").unwrap();
    let name = container_name(&id, 1);
    wait_past_timeout(&fx, &id).await;
    sweep(&fx.app).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!(t.state, TaskState::TimedOut);
    let st = fx.runtime.status(&name).await.unwrap();
    assert!(
        st.is_none() || st.as_ref().is_some_and(|s| s.phase == Phase::Exited),
        "killed: {st:?}"
    );
    sweep(&fx.app).await.unwrap();
    assert_eq!(fx.runtime.status(&name).await.unwrap(), None, "removed");
}

/// Waits (on the real clock: the store stamps real times) until task `id` is past its
/// one-second timeout.
async fn wait_past_timeout(fx: &Fixture, id: &TaskId) {
    let t = fx.task(id).await;
    let started = t.provisioned_at_ms.unwrap_or(t.created_at_ms);
    let due = started + i64::from(t.timeout_secs) * 1000 + 1;
    while crate::clock::now_ms() <= due {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
