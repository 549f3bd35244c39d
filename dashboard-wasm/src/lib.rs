//! The live dashboard of Event-Driven ACI: a Leptos client-side app compiled to WebAssembly.
//!
//! `cargo xtask dashboard` builds it (wasm32 + wasm-bindgen + wasm-opt) into a folder of static
//! files that the handler embeds and serves at `/`; the same folder can be hosted anywhere,
//! pointing at the API through `<meta name="eda-api">` in `index.html`.
//!
//! # Layout
//!
//! - [`ui`]: the page: add-work form, counts and filters, error banner, virtualised grid.
//! - [`timeline`]: one bar per task over the last minutes, on a canvas.
//! - [`details`]: the selected task's panel: charts, output, timeline, cost, cancel, retry.
//! - [`outcome`]: the details panel's result (`RESULT_PATH`) and webhook deliveries.
//! - [`chart`]: line charts drawn as inline SVG; [`waterfall`]: an attempt's phases as SVG bars.
//! - [`figures`]: the header's p50/p95, throughput and cost (from `GET /api/summary`).
//! - [`board`]: the loaded window of the board, one signal per task, and the counts.
//! - [`pager`]: fetching the window (by offset) and refreshing it, throttled.
//! - [`search`]: the search box (the board and counts show the matching tasks).
//! - [`select`]: picking tiles (ctrl/shift-click, all matching) and the bulk bar.
//! - [`live`]: the `/api/events` stream, per-frame coalescing, reconnection, polling fallback.
//! - [`api`]: `fetch` calls to the handler's API.
//! - [`format`]: text formatting (times, durations, sizes, state colours).
//!
//! Task data is only ever rendered as text nodes and attribute values (never `inner_html`), so
//! a message such as `<img src=x onerror=alert(1)>` shows literally.

pub mod api;
pub mod board;
pub mod chart;
pub mod details;
pub mod figures;
pub mod format;
pub mod live;
pub mod outcome;
pub mod pager;
pub mod search;
pub mod select;
pub mod shape;
pub mod timeline;
pub mod ui;
pub mod waterfall;

use wasm_bindgen::prelude::*;

/// Entry point, run by wasm-bindgen's `init()` once the module is loaded: mounts the page.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(ui::App);
}
