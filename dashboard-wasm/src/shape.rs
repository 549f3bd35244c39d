//! The shape of the selected task in the details panel: priority, concurrency key, labels,
//! not-before time, image and size (what `POST /api/work` let the client choose).

use leptos::prelude::*;
use model::Task;

/// The rows shown, as (term, value); a task that chose nothing shows the defaults.
pub fn facts(t: &Task) -> Vec<(&'static str, String)> {
    let labels = if t.labels.is_empty() {
        "-".to_string()
    } else {
        t.labels
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        ("Priority", t.priority.to_string()),
        ("Key", t.key.clone().unwrap_or_else(|| "-".into())),
        ("Labels", labels),
        (
            "Not before",
            t.not_before_ms
                .map_or("-".into(), model::shape::format_rfc3339_ms),
        ),
        (
            "Image",
            t.image.clone().unwrap_or_else(|| "worker image".into()),
        ),
        (
            "Size",
            format!("{} CPU, {} MiB", t.resources.cpu, t.resources.memory_mb),
        ),
    ]
}

/// The shape rows, following the task live.
#[component]
pub fn ShapeFacts(
    /// The selected task.
    sig: RwSignal<Task>,
) -> impl IntoView {
    view! {
        <dl class="facts shape">
            {move || sig.with(facts).into_iter().map(|(term, value)| view! {
                <dt>{term}</dt><dd data-shape=term>{value}</dd>
            }).collect::<Vec<_>>()}
        </dl>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Resources, TaskId};

    fn task() -> Task {
        let r = Resources {
            cpu: 0.5,
            memory_mb: 256,
        };
        Task::new(TaskId::parse("t1").unwrap(), "w".into(), r, 1, 60, 0)
    }

    #[test]
    fn a_plain_task_shows_the_defaults() {
        let f = facts(&task());
        assert_eq!(f[0], ("Priority", "0".to_string()));
        assert_eq!(f[1].1, "-");
        assert_eq!(f[4].1, "worker image");
        assert_eq!(f[5].1, "0.5 CPU, 256 MiB");
    }

    #[test]
    fn a_shaped_task_shows_its_choices() {
        let mut t = task();
        t.priority = 5;
        t.key = Some("tenant-a".into());
        t.labels.insert("team".into(), "blue".into());
        t.not_before_ms = Some(1_796_291_116_500);
        t.image = Some("mine:1".into());
        let f = facts(&t);
        assert_eq!(f[2].1, "team=blue");
        assert_eq!(f[3].1, "2026-12-03T09:45:16.500Z");
        assert_eq!(f[4].1, "mine:1");
    }
}
