//! The timeline: one bar per task over the last minutes, drawn by the app on a `<canvas>`.
//!
//! Each bar is the task's life: queued (pale yellow, from acceptance until its container was
//! asked for), starting (yellow, until the worker reported), running (blue), and then the
//! outcome's colour for the time it ran (green done, red failed or timed out, grey cancelled).
//! A task that ended without running gets a mark in its outcome's colour where it ended. So
//! a person sees at a glance how many ran at once, how long they waited, which straggle and
//! which failed. Hovering a bar names the task; clicking it opens its details.
//!
//! One canvas element whatever the number of tasks: the tasks of the window (still running or
//! waiting, or ended within the last [`SPAN_MS`]; the newest [`TASKS`] of them, in the order
//! they were submitted), asked of the server by time (`GET /api/tasks?active_since=`), so the
//! window is the same at 10 tasks or 100,000; refetched at most every [`EVERY`] while
//! something changed.

use crate::api;
use crate::format::duration_ms;
use crate::pager::Pager;
use leptos::prelude::*;
use model::{Task, TaskId, TaskPage, TaskState};
use std::time::Duration;
use wasm_bindgen::JsCast;

/// At most this many tasks of the window are drawn, the newest (at 240 px of bars, half a pixel
/// per row: more would paint over each other).
pub const TASKS: usize = 500;
/// How often the timeline refetches while the board changes, and moves "now".
const EVERY: Duration = Duration::from_secs(1);
/// Longest span drawn: the last five minutes.
const SPAN_MS: f64 = 5.0 * 60_000.0;
/// Shortest span drawn (a short run is stretched to show its shape).
const MIN_SPAN_MS: f64 = 10_000.0;
/// Width of the hover text, in CSS pixels.
const TIP_W: f64 = 320.0;
/// Height of the axis strip under the bars, in CSS pixels.
const AXIS_H: f64 = 16.0;

/// Colours of the phases (the same as the tiles' in style.css).
const QUEUED: &str = "#fbe38a";
const STARTING: &str = "#f5c518";
const RUNNING: &str = "#1f6feb";
const DONE: &str = "#1a7f37";
const FAILED: &str = "#cf222e";
const CANCELLED: &str = "#8c959f";

/// What was drawn, for hit-testing the pointer.
#[derive(Default)]
struct Drawn {
    /// The tasks, top row first.
    rows: Vec<Task>,
    /// Height of one row in CSS pixels.
    row_h: f64,
}

/// The timeline panel, open by default; closing it stops its fetching.
#[component]
pub fn Timeline(
    /// Says when the board changed (then the timeline refetches).
    pager: Pager,
    /// Set to the task whose bar is clicked (the details panel opens).
    selected: RwSignal<Option<TaskId>>,
) -> impl IntoView {
    let open = RwSignal::new(true);
    let tasks = RwSignal::new(Vec::<Task>::new());
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let drawn = StoredValue::new(Drawn::default());
    let tip = RwSignal::new(None::<(f64, f64, String)>);
    let tick = RwSignal::new(0u32);
    let seen = StoredValue::new(u64::MAX);
    let busy = StoredValue::new(false);
    let poll = move || {
        if !open.get_untracked() {
            return;
        }
        let active = tasks.with_untracked(|t| t.iter().any(|t| !t.state.is_terminal()));
        // The box changed width (the details panel opened or closed): draw it sharp again.
        let resized = canvas.get_untracked().is_some_and(|c| {
            let want = f64::from(c.client_width()) * window().device_pixel_ratio().max(1.0);
            (want as u32).abs_diff(c.width()) > 1
        });
        if active || resized {
            tick.update(|n| *n = n.wrapping_add(1));
        }
        let generation = pager.generation();
        if busy.get_value() || seen.get_value() == generation {
            return;
        }
        busy.set_value(true);
        seen.set_value(generation);
        leptos::task::spawn_local(async move {
            let since = (js_sys::Date::now() - SPAN_MS) as i64;
            let url = format!("/api/tasks?limit={TASKS}&active_since={since}");
            if let Ok(page) = api::get::<TaskPage>(&url).await {
                tasks.set(page.tasks);
            }
            busy.set_value(false);
        });
    };
    poll();
    set_interval(poll, EVERY);
    Effect::new(move |_| {
        tick.track();
        let Some(c) = canvas.get() else { return };
        let rows = tasks.with(|t| in_order(t));
        let row_h = draw(&c, &rows, js_sys::Date::now());
        drawn.set_value(Drawn { rows, row_h });
    });
    let hit = move |e: &web_sys::MouseEvent| -> Option<(Task, f64, f64)> {
        let c = canvas.get_untracked()?;
        let r = c.get_bounding_client_rect();
        let (x, y) = (
            f64::from(e.client_x()) - r.left(),
            f64::from(e.client_y()) - r.top(),
        );
        drawn.with_value(|d| {
            let row = (y / d.row_h.max(f64::MIN_POSITIVE)).floor();
            (row >= 0.0)
                .then(|| d.rows.get(row as usize).cloned())
                .flatten()
                .map(|t| (t, x, y))
        })
    };
    let on_move = move |e: web_sys::MouseEvent| {
        let width = canvas
            .get_untracked()
            .map_or(0.0, |c| f64::from(c.client_width()));
        tip.set(hit(&e).map(|(t, x, y)| {
            // Kept inside the canvas's width: left of the pointer on the right half.
            let left = if x > width / 2.0 {
                x - TIP_W - 12.0
            } else {
                x + 12.0
            };
            (left.max(0.0), y + 12.0, describe(&t, js_sys::Date::now()))
        }));
    };
    let on_click = move |e: web_sys::MouseEvent| {
        if let Some((t, ..)) = hit(&e) {
            tip.set(None); // the details open and the layout moves under the pointer
            selected.set(Some(t.id));
        }
    };
    let toggle = move |_| {
        open.update(|o| *o = !*o);
        seen.set_value(u64::MAX);
        poll();
    };
    view! {
        <section class="timeline-box" aria-label="Timeline of the last minutes">
            <button class="timeline-toggle" aria-expanded=move || open.get().to_string() on:click=toggle>
                {move || if open.get() { "Hide timeline" } else { "Show timeline" }}
            </button>
            <Show when=move || open.get()>
                <div class="timeline-wrap">
                    <canvas class="board-timeline" node_ref=canvas
                        data-rows=move || tasks.with(|t| t.len().to_string())
                        on:mousemove=on_move on:mouseleave=move |_| tip.set(None) on:click=on_click></canvas>
                    <div class="timeline-tip" role="tooltip" hidden=move || tip.with(Option::is_none)
                        style:width=format!("{TIP_W}px")
                        style:left=move || tip.with(|t| t.as_ref().map(|t| format!("{}px", t.0)))
                        style:top=move || tip.with(|t| t.as_ref().map(|t| format!("{}px", t.1)))>
                        {move || tip.with(|t| t.as_ref().map(|t| t.2.clone()))}
                    </div>
                    <p class="legend">
                        <i style:background=QUEUED></i>"queued " <i style:background=STARTING></i>"starting "
                        <i style:background=RUNNING></i>"running " <i style:background=DONE></i>"done "
                        <i style:background=FAILED></i>"failed " <i style:background=CANCELLED></i>"cancelled"
                    </p>
                </div>
            </Show>
        </section>
    }
}

/// The tasks top row first: oldest first, a batch in the order it was submitted (the list is
/// newest first with batches in submission order; a stable sort by acceptance time keeps that).
fn in_order(newest_first: &[Task]) -> Vec<Task> {
    let mut rows = newest_first.to_vec();
    rows.sort_by_key(|t| t.created_at_ms);
    rows
}

/// The colour of a finished run.
fn outcome(state: TaskState) -> &'static str {
    match state {
        TaskState::Done => DONE,
        TaskState::Cancelled => CANCELLED,
        s if s.is_failure() => FAILED,
        _ => RUNNING,
    }
}

/// The phases of a task as `(from, to, colour)`, times in ms; `now` ends what has not ended.
pub fn phases(t: &Task, now: f64) -> Vec<(f64, f64, &'static str)> {
    let at = |v: Option<i64>| v.map(|v| v as f64);
    let end = at(t.finished_at_ms).unwrap_or(now);
    let (provisioned, started) = (at(t.provisioned_at_ms), at(t.started_at_ms));
    let mut out = Vec::new();
    let queued_end = provisioned.or(started).unwrap_or(end);
    out.push((t.created_at_ms as f64, queued_end, QUEUED));
    if let Some(p) = provisioned {
        out.push((p, started.unwrap_or(end), STARTING));
    }
    match started {
        Some(s) => out.push((s, end, outcome(t.state))),
        None if t.state.is_terminal() => out.push((end - 1.0, end, outcome(t.state))),
        None => {}
    }
    out
}

/// Draws `rows` on the canvas (sized to its box and the screen's pixel ratio); returns the row
/// height in CSS pixels.
fn draw(canvas: &web_sys::HtmlCanvasElement, rows: &[Task], now: f64) -> f64 {
    let Some(ctx) = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
    else {
        return 0.0;
    };
    let css_w = f64::from(canvas.client_width()).max(1.0);
    let bars_h = (rows.len() as f64 * 3.0).clamp(48.0, 240.0);
    let css_h = bars_h + AXIS_H;
    let _ = canvas.set_attribute("style", &format!("height: {css_h}px"));
    let ratio = window().device_pixel_ratio().max(1.0);
    canvas.set_width((css_w * ratio) as u32);
    canvas.set_height((css_h * ratio) as u32);
    let _ = ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    ctx.clear_rect(0.0, 0.0, css_w, css_h);
    let first = rows
        .iter()
        .map(|t| t.created_at_ms as f64)
        .fold(now, f64::min);
    let span = (now - first).clamp(MIN_SPAN_MS, SPAN_MS);
    let x = |ms: f64| ((ms - (now - span)) / span * css_w).clamp(0.0, css_w);
    let row_h = bars_h / rows.len().max(1) as f64;
    for (i, t) in rows.iter().enumerate() {
        let y = i as f64 * row_h;
        for (from, to, colour) in phases(t, now) {
            ctx.set_fill_style_str(colour);
            let (x0, x1) = (x(from), x(to));
            ctx.fill_rect(x0, y, (x1 - x0).max(2.0), (row_h - 0.5).max(1.0));
        }
    }
    ctx.set_fill_style_str("#57606a");
    ctx.set_font("11px system-ui, sans-serif");
    let _ = ctx.fill_text(&format!("-{}", duration_ms(span as i64)), 2.0, css_h - 4.0);
    let _ = ctx.fill_text("now", css_w - 24.0, css_h - 4.0);
    row_h
}

/// The hover text of a bar.
fn describe(t: &Task, now: f64) -> String {
    let ms = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => duration_ms(b - a),
        (Some(a), None) => duration_ms(now as i64 - a),
        _ => "-".into(),
    };
    let waited = ms(Some(t.created_at_ms), t.started_at_ms.or(t.finished_at_ms));
    let ran = match t.started_at_ms {
        Some(s) => ms(Some(s), t.finished_at_ms),
        None => "-".into(),
    };
    let work: String = t.work.chars().take(60).collect();
    format!(
        "{} · {} · waited {waited} · ran {ran} · {work}",
        t.id, t.state
    )
}
