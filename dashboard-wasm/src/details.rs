//! The details panel of the selected task: charts, output, its result and webhook deliveries
//! (`crate::outcome`), the attempt's phases (a waterfall), timeline, cost, cancel and retry.
//!
//! While the task is not finished, its record, logs and metrics are fetched again every
//! [`REFRESH`]; once it is finished they are fetched one last time and then left alone.

use crate::api;
use crate::board::Board;
use crate::chart::Chart;
use crate::format::{bytes, clock, duration_ms};
use crate::outcome::{ResultView, WebhooksView};
use crate::shape::ShapeFacts;
use crate::ui::Errors;
use crate::waterfall::Waterfall;
use leptos::prelude::*;
use model::webhook::Deliveries;
use model::{Logs, Metrics, Task, TaskId, TaskState};
use std::time::Duration;

/// How often a running task's details are refreshed.
const REFRESH: Duration = Duration::from_secs(1);
/// How long after a task finished its details keep being refreshed (logs and the last metrics
/// are captured by the reconciler just after the container exits).
const SETTLE_MS: i64 = 10_000;

/// What the panel last loaded, and for which state of the task.
#[derive(Clone, Default)]
struct Loaded {
    /// The full task (with transitions).
    task: Option<Task>,
    /// Tail of the output.
    logs: Option<Logs>,
    /// CPU and memory samples.
    metrics: Option<Metrics>,
    /// Webhook deliveries and their attempts.
    webhooks: Option<Deliveries>,
    /// `(id, state)` the data was loaded for: a finished task is not reloaded for the same state.
    for_state: Option<(TaskId, TaskState)>,
}

/// The panel; renders nothing while no tile is selected.
#[component]
pub fn Details(
    /// The board, for the selected task's live state.
    board: Board,
    /// The selected tile; the panel closes by setting it to `None`.
    selected: RwSignal<Option<TaskId>>,
    /// Where failed loads and actions are shown.
    errors: Errors,
) -> impl IntoView {
    let loaded = RwSignal::new(Loaded::default());
    let busy = StoredValue::new(false);
    let refresh = move || {
        let Some(id) = selected.get_untracked() else {
            return;
        };
        let state = board.get(&id).map(|s| s.get_untracked().state);
        let stale = loaded
            .with_untracked(|l| l.for_state.as_ref() != state.map(|s| (id.clone(), s)).as_ref());
        // Logs and final metrics are captured just after a task finishes: keep refreshing a
        // little while after the end.
        let settling = board.get(&id).is_some_and(|s| {
            s.with_untracked(|t| {
                t.finished_at_ms
                    .is_none_or(|f| js_sys::Date::now() < (f + SETTLE_MS) as f64)
            })
        });
        let running = state.is_some_and(|s| !s.is_terminal()) || settling;
        if busy.get_value() || !(stale || running) {
            return;
        }
        busy.set_value(true);
        leptos::task::spawn_local(async move {
            let got = load(&id).await;
            busy.set_value(false);
            if selected.get_untracked().as_ref() != Some(&id) {
                return;
            }
            match got {
                Ok((task, logs, metrics, webhooks)) => loaded.set(Loaded {
                    for_state: Some((id, task.state)),
                    task: Some(task),
                    logs: Some(logs),
                    metrics: Some(metrics),
                    webhooks: Some(webhooks),
                }),
                Err(e) => errors.push(e),
            }
        });
    };
    Effect::new(move |_| {
        if selected.get().is_some() {
            loaded.set(Loaded::default());
            refresh();
        }
    });
    set_interval(refresh, REFRESH);
    // The selected task's signal; re-checked when tiles arrive (after a reload with `#task=`).
    let current = Memo::new(move |_| {
        board.window.track();
        selected.get().and_then(|id| board.get(&id))
    });
    move || {
        current
            .get()
            .map(|sig| view! { <Panel board sig loaded selected errors /> })
    }
}

async fn load(id: &TaskId) -> Result<(Task, Logs, Metrics, Deliveries), api::ApiError> {
    let base = format!("/api/tasks/{id}");
    let task = api::get::<Task>(&base).await?;
    let logs = api::get::<Logs>(&format!("{base}/logs")).await?;
    let metrics = api::get::<Metrics>(&format!("{base}/metrics")).await?;
    let webhooks = api::get::<Deliveries>(&format!("{base}/webhooks")).await?;
    Ok((task, logs, metrics, webhooks))
}

#[component]
fn Panel(
    board: Board,
    sig: RwSignal<Task>,
    loaded: RwSignal<Loaded>,
    selected: RwSignal<Option<TaskId>>,
    errors: Errors,
) -> impl IntoView {
    let t = move |f: fn(&Task) -> String| move || sig.with(f);
    let series = move |f: fn(&model::MetricSample) -> f64| {
        Signal::derive(move || {
            loaded.with(|l| {
                l.metrics
                    .as_ref()
                    .map(|m| m.samples.iter().map(|s| (s.at_ms as f64, f(s))).collect())
                    .unwrap_or_default()
            })
        })
    };
    let act = move |verb: &'static str| {
        let id = sig.with_untracked(|t| t.id.clone());
        leptos::task::spawn_local(async move {
            let path = format!("/api/tasks/{id}/{verb}");
            match api::send::<(), Task>("POST", &path, None).await {
                Ok(task) => {
                    board.merge_answer(vec![Task {
                        transitions: Vec::new(),
                        ..task
                    }]);
                }
                Err(e) => errors.push(e),
            }
        });
    };
    let close = move |_| selected.set(None);
    let can_cancel = move || sig.with(|t| !t.state.is_terminal());
    let can_retry = move || sig.with(|t| t.state.is_retryable());
    view! {
        <aside class="details" aria-labelledby="details-title">
            <header class=move || format!("details-head {}", sig.with(|t| t.state.css_class()))>
                <h2 id="details-title">"Task " <code>{t(|t| t.id.to_string())}</code></h2>
                <button class="close" on:click=close aria-label="Close details (Esc)">"×"</button>
            </header>
            <p class="work-full">{t(|t| t.work.clone())}</p>
            <dl class="facts">
                <dt>"State"</dt><dd class="state-now">{t(|t| t.state.to_string())}</dd>
                <dt>"Container"</dt><dd>{t(|t| t.container.clone().unwrap_or_else(|| "-".into()))}</dd>
                <dt>"Exit code"</dt><dd class="exit-code">{t(|t| t.exit_code.map_or("-".into(), |c| c.to_string()))}</dd>
                <dt>"Attempts"</dt><dd>{t(|t| format!("{} of {}", t.attempt, t.max_attempts))}</dd>
                <dt>"Billed"</dt><dd>{t(|t| format!("{} s", t.billed_seconds))}</dd>
                <dt>"Cost"</dt><dd>{t(|t| format!("{:.6}", t.cost))}</dd>
                <dt>"Resources"</dt><dd>{t(|t| format!("{} CPU, {} MiB", t.resources.cpu, t.resources.memory_mb))}</dd>
                <dt>"Reason"</dt><dd class="reason">{t(|t| t.reason.clone().unwrap_or_else(|| "-".into()))}</dd>
            </dl>
            <ShapeFacts sig />
            <div class="actions">
                <button on:click=move |_| act("cancel") disabled=move || !can_cancel()>"Cancel"</button>
                <button on:click=move |_| act("retry") disabled=move || !can_retry()>"Retry"</button>
            </div>
            <div class="charts">
                <Chart title="CPU %" series=series(|s| s.cpu_percent) floor=100.0
                    label=|v| format!("{v:.0}%") />
                <Chart title="Memory" series=series(|s| s.memory_bytes as f64) floor=1_048_576.0
                    label=bytes />
            </div>
            <h3>"Output"</h3>
            <pre class="logs" tabindex="0">{move || loaded.with(|l| match &l.logs {
                None => "loading…".to_string(),
                Some(l) if l.text.is_empty() => "(no output yet)".to_string(),
                Some(l) if l.truncated => format!("…\n{}", l.text),
                Some(l) => l.text.clone(),
            })}</pre>
            <h3>"Result"</h3>
            <ResultView result=Signal::derive(move || loaded.with(|l| l.task.as_ref()?.result.clone())) />
            <h3>"Webhooks"</h3>
            <WebhooksView deliveries=Signal::derive(move || loaded.with(|l| l.webhooks.clone())) />
            <h3>"Phases"</h3>
            {move || loaded.with(|l| {
                let t = l.task.as_ref()?;
                t.clock(t.attempt).or(t.phases.last()).cloned()
            }).map(|clock| view! { <Waterfall clock /> })}
            <h3>"Timeline"</h3>
            <ol class="timeline">{move || timeline(loaded)}</ol>
        </aside>
    }
}

fn timeline(loaded: RwSignal<Loaded>) -> Vec<impl IntoView> {
    loaded.with(|l| {
        let Some(task) = &l.task else {
            return Vec::new();
        };
        let tr = &task.transitions;
        tr.iter()
            .enumerate()
            .map(|(i, t)| {
                let took = tr
                    .get(i + 1)
                    .map(|n| duration_ms(n.at_ms - t.at_ms))
                    .unwrap_or_default();
                let reason = t
                    .reason
                    .clone()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default();
                view! {
                    <li class=t.state.css_class()>
                        <time>{clock(t.at_ms)}</time> " " <b>{t.state.to_string()}</b>
                        " (attempt " {t.attempt} ") " <span class="took">{took}</span> {reason}
                    </li>
                }
            })
            .collect()
    })
}
