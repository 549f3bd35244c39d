//! The search box: the board and its counts show only the tasks a query matches (the same
//! language as `GET /api/tasks?q=`: words of the work, `id:`, `key:`, `label:name=value`,
//! `state:`). The server parses it; a query it refuses shows its message in the error banner
//! and leaves the board as it was.

use crate::api;
use crate::board::Board;
use crate::pager::Pager;
use crate::ui::Errors;
use leptos::ev;
use leptos::prelude::*;

/// The search form above the board.
#[component]
pub fn SearchBox(
    /// The board: its search, filter, selection and counts.
    board: Board,
    /// Fetches the window again after a change.
    pager: Pager,
    /// Where refused queries and failed actions are shown.
    errors: Errors,
) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let apply = move |q: String| {
        leptos::task::spawn_local(async move {
            // Asked once with limit=1 first, so a query the server refuses is told, not shown
            // as an empty board.
            let probe = format!("/api/tasks?limit=1&q={}", api::encode(q.trim()));
            match api::get::<model::TaskPage>(&probe).await {
                Ok(_) => {
                    board.selection.set(Default::default());
                    board.all_matching.set(false);
                    board.query.set(q.trim().to_string());
                    crate::ui::scroll_board_to_top();
                    pager.refresh_now();
                }
                Err(e) => errors.push(format!("Search: {e}")),
            }
        });
    };
    let submit = move |e: ev::SubmitEvent| {
        e.prevent_default();
        apply(text.get_untracked());
    };
    let clear = move |_| {
        text.set(String::new());
        apply(String::new());
    };
    view! {
        <form class="search" role="search" on:submit=submit>
            <label for="search" class="sr-only">"Search tasks"</label>
            <input id="search" type="search" autocomplete="off"
                placeholder="Search: words of the work, id:abc, key:k, label:env=prod, state:failed"
                prop:value=move || text.get()
                on:input=move |e| text.set(event_target_value(&e)) />
            <button id="search-go" type="submit">"Search"</button>
            <button id="search-clear" type="button" on:click=clear
                hidden=move || board.query.with(|q| q.is_empty())>"Show all"</button>
            <span class="search-now" hidden=move || board.query.with(|q| q.is_empty())>
                "Showing tasks matching " <code>{move || board.query.get()}</code>
            </span>
        </form>
    }
}
