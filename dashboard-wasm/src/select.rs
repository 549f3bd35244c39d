//! Picking tiles for a bulk action, and the bulk bar that acts on them.
//!
//! Ctrl-click (cmd-click on a Mac) toggles a tile, shift-click picks the run of loaded tiles
//! from the last one toggled; a plain click still opens the details panel. "Select all
//! matching" switches the bar to act on every task the current search and filter match on the
//! server (`all_matching`), loaded or not. The bar sends `POST /api/tasks/bulk` and shows the
//! answer's counts per outcome.

use crate::api;
use crate::board::Board;
use crate::pager::Pager;
use crate::ui::Errors;
use leptos::prelude::*;
use model::{BulkAction, BulkOutcome, BulkRequest, BulkResponse, Matching, TaskId};

/// Handles a click on tile `id` with modifier keys; true when it was a selection click (the
/// tile must not open the details panel then).
pub fn tile_click(board: Board, id: &TaskId, e: &leptos::ev::MouseEvent) -> bool {
    if e.shift_key() {
        let anchor = board.anchor.get_value();
        let ids = board.window.with_untracked(|w| w.ids.clone());
        let at = |x: &TaskId| ids.iter().position(|i| i == x);
        match anchor.as_ref().and_then(at).zip(at(id)) {
            Some((a, b)) => {
                let run = ids[a.min(b)..=a.max(b)].to_vec();
                board.selection.update(|s| s.extend(run));
            }
            None => toggle(board, id),
        }
        board.all_matching.set(false);
        return true;
    }
    if e.ctrl_key() || e.meta_key() {
        toggle(board, id);
        board.all_matching.set(false);
        return true;
    }
    false
}

fn toggle(board: Board, id: &TaskId) {
    board.selection.update(|s| {
        if !s.remove(id) {
            s.insert(id.clone());
        }
    });
    board.anchor.set_value(Some(id.clone()));
}

/// The request for `action` on what is picked: the ids, or the search and filter.
fn request(board: Board, action: BulkAction) -> BulkRequest {
    if board.all_matching.get_untracked() {
        let q = board.query.get_untracked();
        let matching = Matching {
            q: (!q.is_empty()).then_some(q),
            state: board.filter.get_untracked().map(|s| s.as_str().to_string()),
            from: None,
            to: None,
        };
        return BulkRequest {
            action,
            ids: None,
            all_matching: Some(matching),
        };
    }
    BulkRequest {
        action,
        ids: Some(board.selection.get_untracked().into_iter().collect()),
        all_matching: None,
    }
}

/// One line about a bulk answer, e.g. "cancel: 5 done, 2 not applicable".
pub fn summary(r: &BulkResponse) -> String {
    let words = |o: BulkOutcome| match o {
        BulkOutcome::Done => "done",
        BulkOutcome::NotApplicable => "not applicable",
        BulkOutcome::NotFound => "not found",
        BulkOutcome::Failed => "failed",
    };
    let parts: Vec<String> = r
        .outcomes
        .iter()
        .map(|(o, n)| format!("{n} {}", words(*o)))
        .collect();
    let parts = if parts.is_empty() {
        "nothing matched".to_string()
    } else {
        parts.join(", ")
    };
    let more = if r.more {
        " (more matched: run it again)"
    } else {
        ""
    };
    format!("{}: {parts}{more}", r.action.as_str())
}

/// The bulk bar: what is picked, "select all matching", the actions and the last result.
#[component]
pub fn BulkBar(
    /// The board: its search, filter, selection and counts.
    board: Board,
    /// Fetches the window again after a change.
    pager: Pager,
    /// Where refused queries and failed actions are shown.
    errors: Errors,
) -> impl IntoView {
    let result = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let picked = move || board.selection.with(|s| s.len());
    let shown = move || picked() > 0 || board.all_matching.get() || !board.query.get().is_empty();
    let act = move |action: BulkAction| {
        let body = request(board, action);
        if body.ids.as_ref().is_some_and(|ids| ids.is_empty()) {
            errors.push("Pick some tiles first (ctrl-click, shift-click) or select all matching.");
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::send::<_, BulkResponse>("POST", "/api/tasks/bulk", Some(&body)).await {
                Ok(r) => {
                    result.set(summary(&r));
                    board.selection.set(Default::default());
                    board.all_matching.set(false);
                    pager.refresh_now();
                }
                Err(e) => errors.push(format!("Bulk {}: {e}", action.as_str())),
            }
            busy.set(false);
        });
    };
    let what = move || {
        if board.all_matching.get() {
            format!("All {} matching tasks", board.total())
        } else {
            format!("{} selected", picked())
        }
    };
    view! {
        <div class="bulk" role="toolbar" aria-label="Act on many tasks" hidden=move || !shown()>
            <span id="bulk-picked">{what}</span>
            <button id="bulk-all" aria-pressed=move || board.all_matching.get().to_string()
                on:click=move |_| board.all_matching.update(|a| *a = !*a)>
                {move || format!("Select all matching ({})", board.total())}
            </button>
            <button id="bulk-cancel" disabled=move || busy.get()
                on:click=move |_| act(BulkAction::Cancel)>"Cancel"</button>
            <button id="bulk-retry" disabled=move || busy.get()
                on:click=move |_| act(BulkAction::Retry)>"Retry"</button>
            <button id="bulk-redrive" disabled=move || busy.get()
                on:click=move |_| act(BulkAction::Redrive)>"Re-drive dead letters"</button>
            <button id="bulk-none" on:click=move |_| {
                board.selection.set(Default::default());
                board.all_matching.set(false);
            }>"Clear selection"</button>
            <span id="bulk-result" role="status">{move || result.get()}</span>
        </div>
    }
}
