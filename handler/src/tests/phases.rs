//! The phase clock as spawn and the reconciler mark it, and the series `/metrics` shows for
//! it, on the in-memory runtime.

use super::fixture::{delivery, Fixture};
use crate::metrics::render;
use crate::reconcile::sweep;
use crate::spawn::{derived_id, handle, Outcome};
use model::naming::container_name;
use model::Phase::*;

fn phases(t: &model::Task) -> Vec<model::Phase> {
    t.clock(t.attempt)
        .map(|c| c.marks.iter().map(|m| m.phase).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_spawn_and_its_cleanup_mark_every_phase_they_see_once() {
    let fx = Fixture::new(&[]);
    let id = derived_id("ph-1");
    handle(&fx.app, &delivery("ph-1", "work", 1)).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!(phases(&t), [Queued, Dequeued, Asked, Started]);
    let c = t.clock(1).unwrap();
    assert!(c.at(Dequeued) <= c.at(Asked) && c.at(Asked) <= c.at(Started));

    // A redelivery finds the container: counted, and the clock keeps its first times.
    let again = handle(&fx.app, &delivery("ph-1", "work", 2)).await.unwrap();
    assert_eq!(again, Outcome::AlreadyRunning(id.clone()));
    assert_eq!(fx.task(&id).await.phases, t.phases);

    fx.runtime.exit(&container_name(&id, 1), 0);
    sweep(&fx.app).await.unwrap();
    let t = fx.task(&id).await;
    assert_eq!(
        phases(&t),
        [
            Queued,
            Dequeued,
            Asked,
            Started,
            Finished,
            LogsCaptured,
            Removed
        ]
    );

    let text = render(&fx.app).await.unwrap();
    for line in [
        "eda_redeliveries_found_container_total 1\n",
        "eda_tasks{state=\"Done\"} 1\n",
        "eda_tasks{state=\"Pending\"} 0\n",
        "eda_phase_duration_seconds_count{phase=\"dequeued\"} 1\n",
        "eda_phase_duration_seconds_count{phase=\"started\"} 1\n",
        "eda_phase_duration_seconds_count{phase=\"removed\"} 1\n",
        "eda_dead_letters_total 0\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}
