//! The page: header with counts and filters, the add-work form, the error banner, the timeline,
//! the virtualised grid of tiles and the details panel.
//!
//! The grid renders only the rows on screen (plus a few above and below) inside a spacer as
//! tall as the whole board, so the element count stays bounded at any board size; scrolling
//! asks the [`Pager`] for the tiles at the new position (`offset`/`limit`).

use crate::api;
use crate::board::Board;
use crate::details::Details;
use crate::figures::Figures;
use crate::live::{Link, Live};
use crate::pager::Pager;
use crate::timeline::Timeline;
use leptos::ev;
use leptos::prelude::*;
use model::{SubmitRequest, SubmitResponse, Task, TaskId, TaskState, WorkItem};
use std::fmt::Display;

/// Errors shown to the person (the banner at the top), newest last.
#[derive(Clone, Copy)]
pub struct Errors {
    /// `(id, message)`; the id lets one message be dismissed.
    list: RwSignal<Vec<(u64, String)>>,
    /// Next id to hand out.
    next: StoredValue<u64>,
}

/// How many errors stay on screen at once.
const MAX_ERRORS: usize = 3;

impl Errors {
    fn new() -> Errors {
        Errors {
            list: RwSignal::new(Vec::new()),
            next: StoredValue::new(0),
        }
    }

    /// Shows an error to the person.
    pub fn push(&self, e: impl Display) {
        let id = self.next.get_value();
        self.next.set_value(id + 1);
        self.list.update(|l| {
            l.push((id, e.to_string()));
            let excess = l.len().saturating_sub(MAX_ERRORS);
            l.drain(..excess);
        });
    }
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let board = Board::default();
    let errors = Errors::new();
    let pager = Pager::new(board, errors);
    let live = Live::start(board, pager);
    let selected = RwSignal::new(selected_from_hash());
    Effect::new(move |_| write_hash(selected.get().as_ref()));
    Effect::new(move |_| pin_selected(board, selected.get(), errors));
    // A change the window does not reflect yet (an event, or a cancel/retry answer that got
    // there first): refresh the window and the counts, throttled.
    Effect::new(move |_| {
        board.stale.track();
        pager.refresh_soon();
    });
    let handle = window_event_listener(ev::keydown, move |e| {
        if e.key() == "Escape" {
            if let Some(id) = selected.get_untracked() {
                selected.set(None);
                focus_tile(&id);
            }
        }
    });
    on_cleanup(move || handle.remove());
    let link = live.link;
    let need_key = RwSignal::new(false);
    api::on_unauthorized(move || need_key.set(true));
    view! {
        <header class="top">
            <h1>"Event-Driven ACI"</h1>
            <span class=move || format!("link link-{:?}", link.get()).to_lowercase()>
                {move || match link.get() {
                    Link::Connecting => "connecting…",
                    Link::Live => "live",
                    Link::Down => "reconnecting… (polling)",
                }}
            </span>
            <Figures />
        </header>
        <AskKey need_key live=live.clone() />
        <AddWork board pager errors />
        <ErrorBanner errors />
        <crate::search::SearchBox board pager errors />
        <Counts board pager errors />
        <crate::select::BulkBar board pager errors />
        <main class="layout">
            <div class="boards">
                <Timeline pager selected />
                <Grid board pager selected />
            </div>
            <Details board selected errors />
        </main>
        <div class="sr-only" aria-live="polite" aria-atomic="true">
            {move || board.announcement.get()}
        </div>
    }
}

/// Asks for the API key after a 401; hidden otherwise.
#[component]
fn AskKey(need_key: RwSignal<bool>, live: Live) -> impl IntoView {
    let key = RwSignal::new(String::new());
    let submit = move |e: ev::SubmitEvent| {
        e.prevent_default();
        api::set_key(&key.get_untracked());
        need_key.set(false);
        live.reload();
    };
    view! {
        <form class="key" on:submit=submit hidden=move || !need_key.get()>
            <label for="api-key">"This API needs its key: "</label>
            <input id="api-key" type="password" autocomplete="off"
                on:input=move |e| key.set(event_target_value(&e)) />
            <button type="submit">"Use key"</button>
        </form>
    }
}

/// Keeps the selected task loaded (and fetches it when the window does not hold it: a page
/// opened with `#task=`, or a bar picked on the timeline).
fn pin_selected(board: Board, selected: Option<TaskId>, errors: Errors) {
    board.pinned.set(selected.clone());
    let Some(id) = selected.filter(|id| board.get(id).is_none()) else {
        return;
    };
    leptos::task::spawn_local(async move {
        match api::get::<Task>(&format!("/api/tasks/{id}")).await {
            Ok(task) => board.pin(slim(task)),
            Err(e) => errors.push(e),
        }
    });
}

#[component]
fn AddWork(board: Board, pager: Pager, errors: Errors) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let multi = RwSignal::new(false);
    let count = RwSignal::new("1".to_string());
    let busy = RwSignal::new(false);
    let submit = move || {
        let Some(items) = items(
            &text.get_untracked(),
            multi.get_untracked(),
            &count.get_untracked(),
        ) else {
            errors.push("Enter some work first (one task per line in multi-line mode), and a count from 1 to 1000.");
            return;
        };
        busy.set(true);
        leptos::task::spawn_local(async move {
            let body = SubmitRequest::Many(items);
            match api::send::<_, SubmitResponse>("POST", "/api/work", Some(&body)).await {
                Ok(r) => {
                    board.merge_answer(r.tasks.into_iter().map(slim).collect());
                    pager.refresh_now();
                    text.set(String::new());
                }
                Err(e) => errors.push(e),
            }
            busy.set(false);
        });
    };
    view! {
        <form class="add" on:submit=move |e: ev::SubmitEvent| { e.prevent_default(); submit(); }>
            <label for="work" class="sr-only">"Work"</label>
            {move || if multi.get() {
                view! {
                    <textarea id="work" rows="4" placeholder="One task per line (Ctrl+Enter adds)"
                        prop:value=move || text.get()
                        on:input=move |e| text.set(event_target_value(&e))
                        on:keydown=move |e: ev::KeyboardEvent| {
                            if e.key() == "Enter" && (e.ctrl_key() || e.meta_key()) {
                                e.prevent_default();
                                submit();
                            }
                        }></textarea>
                }.into_any()
            } else {
                view! {
                    <input id="work" type="text" autocomplete="off" placeholder="Work for one container, e.g. sleep 2"
                        prop:value=move || text.get()
                        on:input=move |e| text.set(event_target_value(&e)) />
                }.into_any()
            }}
            <label class="count">"×"
                <input id="count" type="number" min="1" max="1000" aria-label="Copies of each task"
                    prop:value=move || count.get()
                    on:input=move |e| count.set(event_target_value(&e)) />
            </label>
            <label class="multi">
                <input id="multi" type="checkbox" prop:checked=move || multi.get()
                    on:change=move |e| multi.set(event_target_checked(&e)) />
                "one per line"
            </label>
            <button id="add" type="submit" disabled=move || busy.get()>"Add work"</button>
        </form>
    }
}

/// The items to submit, or `None` when there is nothing valid to send.
fn items(text: &str, multi: bool, count: &str) -> Option<Vec<WorkItem>> {
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=1000).contains(n))?;
    let works: Vec<&str> = if multi {
        text.lines().filter(|l| !l.trim().is_empty()).collect()
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        vec![text]
    };
    let items: Vec<WorkItem> = works
        .into_iter()
        .map(|w| WorkItem {
            work: w.to_string(),
            count: (count > 1).then_some(count),
            ..WorkItem::default()
        })
        .collect();
    (!items.is_empty()).then_some(items)
}

/// A task as the board keeps it: without its timeline (the details panel loads that).
fn slim(task: Task) -> Task {
    Task {
        transitions: Vec::new(),
        ..task
    }
}

#[component]
fn ErrorBanner(errors: Errors) -> impl IntoView {
    view! {
        <div class="errors" role="alert">
            <For each=move || errors.list.get() key=|(id, _)| *id let:((id, message))>
                <p class="error">
                    <span>{message}</span>
                    <button aria-label="Dismiss" on:click=move |_| {
                        errors.list.update(|l| l.retain(|(i, _)| *i != id))
                    }>"×"</button>
                </p>
            </For>
        </div>
    }
}

#[component]
fn Counts(board: Board, pager: Pager, errors: Errors) -> impl IntoView {
    let filter = board.filter;
    let total = move || board.counts.with(|c| c.values().sum::<u64>());
    let chip = move |state: Option<TaskState>| {
        let label = state.map_or("All".to_string(), |s| s.to_string());
        let class = state.map_or("chip", TaskState::css_class);
        let n = move || match state {
            Some(s) => board.counts.with(|c| c.get(&s).copied().unwrap_or(0)),
            None => total(),
        };
        view! {
            <button class=format!("chip {class}") aria-pressed=move || (filter.get() == state).to_string()
                data-state=state.map(|s| s.as_str())
                on:click=move |_| {
                    filter.set(state);
                    scroll_board_to_top();
                    pager.refresh_now();
                }>
                {label} " " <b class="n">{n}</b>
            </button>
        }
    };
    let clear = move |_| {
        leptos::task::spawn_local(async move {
            match api::send::<(), model::Cleared>("DELETE", "/api/tasks?state=finished", None).await
            {
                Ok(_) => pager.refresh_now(),
                Err(e) => errors.push(e),
            }
        });
    };
    view! {
        <nav class="counts" aria-label="Tasks per state; choose one to filter">
            {chip(None)}
            {TaskState::ALL.into_iter().map(|s| chip(Some(s))).collect::<Vec<_>>()}
            <button id="clear" class="clear" on:click=clear>"Clear finished"</button>
        </nav>
    }
}

/// Height of a tile in CSS pixels (style.css gives `.tile` the same).
const TILE_H: f64 = 76.0;
/// Gap between tiles in CSS pixels.
const GAP: f64 = 8.0;
/// Narrowest tile in CSS pixels (the grid fits as many columns as this allows).
const MIN_TILE_W: f64 = 150.0;
/// Rows loaded and rendered above and below the visible ones, so a short scroll shows tiles
/// at once.
const OVERSCAN_ROWS: usize = 3;

/// Where the grid's scroller is and how big it is, in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Viewport {
    top: f64,
    height: f64,
    width: f64,
}

/// Columns that fit in `width`.
fn columns(width: f64) -> usize {
    (((width + GAP) / (MIN_TILE_W + GAP)).floor() as usize).max(1)
}

/// Board positions to load for the viewport: the visible rows and [`OVERSCAN_ROWS`] around.
fn wanted(v: Viewport, cols: usize) -> std::ops::Range<usize> {
    let row = TILE_H + GAP;
    let first = (v.top / row).floor().max(0.0) as usize;
    let rows = (v.height / row).ceil() as usize + 1;
    let start = first.saturating_sub(OVERSCAN_ROWS) * cols;
    start..(first + rows + OVERSCAN_ROWS) * cols
}

/// Scrolls the grid back to its first row (a new filter or search).
pub fn scroll_board_to_top() {
    if let Some(el) = document().query_selector(".scroller").ok().flatten() {
        el.set_scroll_top(0);
    }
}

#[component]
fn Grid(board: Board, pager: Pager, selected: RwSignal<Option<TaskId>>) -> impl IntoView {
    let scroller = NodeRef::<leptos::html::Section>::new();
    let view = RwSignal::new(Viewport {
        top: 0.0,
        height: 800.0,
        width: 1000.0,
    });
    let measure = move || {
        if let Some(el) = scroller.get_untracked() {
            let v = Viewport {
                top: f64::from(el.scroll_top()),
                height: f64::from(el.client_height()),
                width: f64::from(el.client_width()),
            };
            if view.get_untracked() != v {
                view.set(v);
            }
        }
    };
    // Scroll and resize events are coalesced to one measure per animation frame.
    let booked = StoredValue::new(false);
    let on_scroll = move || {
        if !booked.get_value() {
            booked.set_value(true);
            request_animation_frame(move || {
                booked.set_value(false);
                measure();
            });
        }
    };
    let resize = window_event_listener(ev::resize, move |_| on_scroll());
    on_cleanup(move || resize.remove());
    Effect::new(move |_| {
        if scroller.get().is_some() {
            measure();
        }
    });
    let cols = Memo::new(move |_| view.with(|v| columns(v.width)));
    Effect::new(move |_| {
        board.filter.track();
        pager.want(wanted(view.get(), cols.get()));
    });
    let total = move || board.total();
    let height = move || {
        let rows = (total() as usize).div_ceil(cols.get());
        format!("{}px", (rows as f64 * (TILE_H + GAP) - GAP).max(0.0))
    };
    let top = move || {
        let row = board.window.with(|w| w.start) / cols.get();
        format!("{}px", row as f64 * (TILE_H + GAP))
    };
    // A window fetched for another column count starts mid-row: pad it to its column.
    let lead = move || board.window.with(|w| w.start) % cols.get();
    view! {
        <section class="scroller" node_ref=scroller on:scroll=move |_| on_scroll()
            aria-label="Tasks, newest first; a batch in the order it was submitted"
            data-total=move || total().to_string()>
            <div class="spacer" style:height=height>
                <div class="grid" style:top=top
                    style:grid-template-columns=move || format!("repeat({}, minmax(0, 1fr))", cols.get())
                    style:grid-auto-rows=format!("{TILE_H}px") style:gap=format!("{GAP}px")
                    data-start=move || board.window.with(|w| w.start.to_string())>
                    {move || (lead() > 0).then(|| view! { <div class="pad" style:grid-column=format!("span {}", lead())></div> })}
                    <For each=move || board.window.get().ids key=|id| id.clone() let:id>
                        {board.get(&id).map(|sig| view! { <Tile sig selected board /> })}
                    </For>
                </div>
            </div>
            <p class="empty">{move || (total() == 0).then_some("No tasks yet: add some work above.")}</p>
        </section>
    }
}

#[component]
fn Tile(sig: RwSignal<Task>, selected: RwSignal<Option<TaskId>>, board: Board) -> impl IntoView {
    let id = sig.with_untracked(|t| t.id.clone());
    let is_selected = {
        let id = id.clone();
        move || selected.with(|s| s.as_ref() == Some(&id))
    };
    let picked = {
        let id = id.clone();
        move || board.selection.with(|s| s.contains(&id))
    };
    // Ctrl/cmd- and shift-clicks pick tiles for the bulk bar; a plain click opens the details.
    let pick = {
        let id = id.clone();
        move |e: ev::MouseEvent| {
            if !crate::select::tile_click(board, &id, &e) {
                selected.set(Some(id.clone()));
            }
        }
    };
    view! {
        <button class=move || sig.with(|t| format!("tile {}", t.state.css_class()))
            class:picked=picked.clone()
            data-picked=move || picked().to_string()
            data-id=id.to_string()
            data-state=move || sig.with(|t| t.state.as_str())
            title=move || sig.with(|t| t.reason.clone())
            aria-pressed=move || is_selected().to_string()
            on:click=pick>
            <span class="tile-state">{move || sig.with(|t| t.state.to_string())}</span>
            <span class="tile-work">{move || sig.with(|t| t.work.chars().take(120).collect::<String>())}</span>
            <span class="tile-note">{move || sig.with(note)}</span>
        </button>
    }
}

/// The small line under a tile's work: what a person wants to know at a glance.
fn note(t: &Task) -> String {
    match t.state {
        TaskState::Pending if t.attempt > 0 => {
            format!("waiting to retry (attempt {})", t.attempt + 1)
        }
        TaskState::Pending => "queued".into(),
        TaskState::Provisioning => "starting…".into(),
        TaskState::InProgress => t.container.clone().unwrap_or_else(|| "running".into()),
        TaskState::Done | TaskState::Failed => match t.exit_code {
            Some(code) => format!("exit {code}"),
            None => t.state.to_string(),
        },
        TaskState::TimedOut => "timed out".into(),
        TaskState::DeadLettered => "could not start".into(),
        TaskState::Cancelled => "cancelled".into(),
    }
}

fn selected_from_hash() -> Option<TaskId> {
    let hash = window().location().hash().ok()?;
    TaskId::parse(hash.strip_prefix("#task=")?).ok()
}

fn write_hash(id: Option<&TaskId>) {
    let url = id.map_or_else(|| " ".to_string(), |id| format!("#task={id}"));
    let url = if url == " " {
        let loc = window().location();
        format!(
            "{}{}",
            loc.pathname().unwrap_or_default(),
            loc.search().unwrap_or_default()
        )
    } else {
        url
    };
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

fn focus_tile(id: &TaskId) {
    use wasm_bindgen::JsCast;
    let tile = document()
        .query_selector(&format!("button.tile[data-id='{id}']"))
        .ok()
        .flatten();
    if let Some(el) = tile.and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok()) {
        let _ = el.focus();
    }
}
