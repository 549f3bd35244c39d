//! The page: header with counts and filters, the add-work form, the error banner, the grid of
//! tiles and the details panel.

use crate::api;
use crate::board::Board;
use crate::details::Details;
use crate::format::state_class;
use crate::live::{Link, Live};
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
    let live = Live::start(board, errors);
    let selected = RwSignal::new(selected_from_hash());
    let filter = RwSignal::new(None::<TaskState>);
    Effect::new(move |_| write_hash(selected.get().as_ref()));
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
        </header>
        <AskKey need_key live=live.clone() />
        <AddWork board errors />
        <ErrorBanner errors />
        <Counts board filter live=live.clone() errors />
        <main class="layout">
            <Grid board selected filter />
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

#[component]
fn AddWork(board: Board, errors: Errors) -> impl IntoView {
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
            max_attempts: None,
            timeout_secs: None,
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
fn Counts(
    board: Board,
    filter: RwSignal<Option<TaskState>>,
    live: Live,
    errors: Errors,
) -> impl IntoView {
    let total = move || board.counts.with(|c| c.values().sum::<u64>());
    let chip = move |state: Option<TaskState>| {
        let label = state.map_or("All".to_string(), |s| s.to_string());
        let class = state.map_or("chip", |s| state_class(s));
        let n = move || match state {
            Some(s) => board.counts.with(|c| c.get(&s).copied().unwrap_or(0)),
            None => total(),
        };
        view! {
            <button class=format!("chip {class}") aria-pressed=move || (filter.get() == state).to_string()
                data-state=state.map(|s| s.as_str())
                on:click=move |_| filter.set(state)>
                {label} " " <b class="n">{n}</b>
            </button>
        }
    };
    let clear = move |_| {
        let live = live.clone();
        leptos::task::spawn_local(async move {
            match api::send::<(), model::Cleared>("DELETE", "/api/tasks?state=finished", None).await
            {
                Ok(_) => live.reload(),
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

#[component]
fn Grid(
    board: Board,
    selected: RwSignal<Option<TaskId>>,
    filter: RwSignal<Option<TaskState>>,
) -> impl IntoView {
    view! {
        <section class="grid" aria-label="Tasks, newest first"
            data-filter=move || filter.get().map(state_class)>
            <For each=move || board.order.get() key=|k| k.id.clone() let:key>
                {board.get(&key.id).map(|sig| view! { <Tile sig selected /> })}
            </For>
            <p class="empty">{move || board.order.with(|o| o.is_empty()).then_some("No tasks yet: add some work above.")}</p>
        </section>
    }
}

#[component]
fn Tile(sig: RwSignal<Task>, selected: RwSignal<Option<TaskId>>) -> impl IntoView {
    let id = sig.with_untracked(|t| t.id.clone());
    let is_selected = {
        let id = id.clone();
        move || selected.with(|s| s.as_ref() == Some(&id))
    };
    let pick = {
        let id = id.clone();
        move |_| selected.set(Some(id.clone()))
    };
    view! {
        <button class=move || sig.with(|t| format!("tile {}", state_class(t.state)))
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
