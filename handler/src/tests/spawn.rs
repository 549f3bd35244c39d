//! Spawn's idempotency: one container per task attempt, whatever is delivered twice, whatever
//! failed in between (`spawn.rs` module docs).

use super::fixture::{delivery, Fixture};
use crate::runtime::fake::{Fault, Script};
use crate::runtime::{ContainerRuntime, Phase};
use crate::spawn::{derived_id, handle, Outcome, SpawnError};
use model::naming::container_name;
use model::TaskState;

#[tokio::test]
async fn a_redelivered_message_makes_one_container() {
    let fx = Fixture::new(&[]);
    let id = derived_id("m-1");
    let first = handle(&fx.app, &delivery("m-1", "work", 1)).await.unwrap();
    assert_eq!(first, Outcome::Started(id.clone()));
    let again = handle(&fx.app, &delivery("m-1", "work", 2)).await.unwrap();
    assert_eq!(again, Outcome::AlreadyRunning(id.clone()));
    assert_eq!((fx.runtime.creates(), fx.runtime.create_calls()), (1, 1));
    let t = fx.task(&id).await;
    let name = container_name(&id, 1);
    assert_eq!(t.state, TaskState::Provisioning);
    assert_eq!(
        (t.attempt, t.container.as_deref()),
        (1, Some(name.as_str()))
    );
    let spec = fx.runtime.spec(&name).expect("the container's spec");
    assert!(spec.env.contains(&("MESSAGE".into(), "work".into())));
    assert_eq!(spec.secret_env[0].0, "TASK_TOKEN");
}

#[tokio::test]
async fn a_container_created_but_never_started_is_started_on_redelivery() {
    let fx = Fixture::new(&[]);
    let id = derived_id("m-2");
    let name = container_name(&id, 1);
    fx.runtime.script(
        &name,
        Script {
            never_started: true,
            ..Script::default()
        },
    );
    handle(&fx.app, &delivery("m-2", "work", 1)).await.unwrap();
    let st = fx.runtime.status(&name).await.unwrap().unwrap();
    assert_eq!(st.phase, Phase::Starting);
    let again = handle(&fx.app, &delivery("m-2", "work", 2)).await.unwrap();
    assert_eq!(again, Outcome::AlreadyRunning(id.clone()));
    let st = fx.runtime.status(&name).await.unwrap().unwrap();
    assert_eq!(st.phase, Phase::Running, "adopted and started");
    assert_eq!(fx.runtime.creates(), 1);
    assert_eq!(fx.task(&id).await.attempt, 1);
}

#[tokio::test]
async fn a_transient_failure_keeps_the_attempt_and_the_redelivery_makes_its_container() {
    let fx = Fixture::new(&[]);
    let id = derived_id("m-3");
    fx.runtime.fail_next_create(Fault::Unavailable);
    let err = handle(&fx.app, &delivery("m-3", "work", 1))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let t = fx.task(&id).await;
    assert_eq!((t.state, t.attempt), (TaskState::Provisioning, 1));
    let reason = t.reason.unwrap_or_default();
    assert!(
        reason.starts_with("waiting for the container runtime"),
        "{reason}"
    );
    let again = handle(&fx.app, &delivery("m-3", "work", 2)).await.unwrap();
    assert_eq!(again, Outcome::Started(id.clone()));
    assert_eq!((fx.runtime.creates(), fx.runtime.create_calls()), (1, 2));
    assert_eq!(
        fx.task(&id).await.attempt,
        1,
        "the same attempt, not a new one"
    );
}

#[tokio::test]
async fn a_refused_container_is_a_permanent_error_said_on_the_task() {
    let fx = Fixture::new(&[]);
    let id = derived_id("m-4");
    fx.runtime.fail_every_create(Some(Fault::Rejected));
    let err = handle(&fx.app, &delivery("m-4", "work", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SpawnError::Runtime(_)) && !err.is_transient(),
        "{err}"
    );
    let reason = fx.task(&id).await.reason.unwrap_or_default();
    assert!(
        reason.starts_with("spawn failed: container rejected"),
        "{reason}"
    );
    assert_eq!(fx.runtime.creates(), 0);
}

#[tokio::test]
async fn a_finished_task_is_never_spawned_again() {
    let fx = Fixture::new(&[]);
    let id = derived_id("m-5");
    handle(&fx.app, &delivery("m-5", "work", 1)).await.unwrap();
    fx.runtime.exit(&container_name(&id, 1), 0);
    crate::reconcile::sweep(&fx.app).await.unwrap();
    assert_eq!(fx.task(&id).await.state, TaskState::Done);
    let late = handle(&fx.app, &delivery("m-5", "work", 2)).await.unwrap();
    assert_eq!(late, Outcome::Finished(id));
    assert_eq!(fx.runtime.create_calls(), 1);
}

#[tokio::test]
async fn a_message_that_cannot_be_a_task_creates_nothing() {
    let fx = Fixture::new(&[]);
    let err = handle(&fx.app, &delivery("m-6", "   ", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnError::Invalid(_)), "{err}");
    assert_eq!(fx.runtime.create_calls(), 0);
}
