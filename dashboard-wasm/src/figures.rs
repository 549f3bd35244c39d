//! The board header's figures: p50/p95 of "accepted -> InProgress" and of run time over the
//! recent tasks, throughput and cost. Computed by the server (`GET /api/summary`, exact over
//! the newest [`RECENT`] tasks) and fetched every [`REFRESH`]; the page only formats them.

use crate::api;
use crate::format::duration_ms;
use leptos::prelude::*;
use model::{Percentiles, Summary};
use std::time::Duration;

/// How many of the newest tasks the figures cover.
pub const RECENT: usize = 500;
/// How often the figures are fetched again.
const REFRESH: Duration = Duration::from_secs(2);

/// `p50 / p95` of some durations, or `-` with none.
fn pair(p: &Percentiles) -> String {
    match (p.p50_ms, p.p95_ms) {
        (Some(a), Some(b)) => format!("{} / {}", duration_ms(a), duration_ms(b)),
        _ => "-".into(),
    }
}

/// The raw value behind figure `name`: `p50/p95` in ms (`-` for none), a count, or the cost.
fn raw(name: &str, s: &Summary) -> String {
    let ms = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let pair = |p: &Percentiles| format!("{}/{}", ms(p.p50_ms), ms(p.p95_ms));
    match name {
        "to-in-progress" => pair(&s.to_in_progress),
        "run" => pair(&s.run),
        "throughput" => s.finished_per_minute.to_string(),
        _ => s.cost.to_string(),
    }
}

/// The figures, in the header; empty until the first answer.
#[component]
pub fn Figures() -> impl IntoView {
    let summary = RwSignal::new(None::<Summary>);
    let busy = StoredValue::new(false);
    let load = move || {
        if busy.get_value() {
            return;
        }
        busy.set_value(true);
        leptos::task::spawn_local(async move {
            let got = api::get::<Summary>(&format!("/api/summary?recent={RECENT}")).await;
            busy.set_value(false);
            // A failed load keeps the last figures; the board's own loads report errors.
            if let Ok(s) = got {
                summary.set(Some(s));
            }
        });
    };
    load();
    set_interval(load, REFRESH);
    // Each figure carries its raw value too (`data-value`: ms, a count or the cost), so tests
    // compare the page with the API without parsing the formatted text.
    let figure = move |name: &'static str, text: fn(&Summary) -> String| {
        let raw = move || summary.with(|s| s.as_ref().map(|s| raw(name, s)));
        view! {
            <span class="figure" data-figure=name data-value=raw>
                {move || summary.with(|s| s.as_ref().map(text).unwrap_or_else(|| "…".into()))}
            </span>
        }
    };
    view! {
        <div class="figures" aria-label="Figures over the recent tasks"
            data-tasks=move || summary.with(|s| s.as_ref().map_or(0, |s| s.tasks))>
            "to InProgress p50/p95 " {figure("to-in-progress", |s| pair(&s.to_in_progress))}
            " · run p50/p95 " {figure("run", |s| pair(&s.run))}
            " · " {figure("throughput", |s| format!("{}/min", s.finished_per_minute))}
            " · cost " {figure("cost", |s| format!("{:.6}", s.cost))}
        </div>
    }
}
