//! Fetching the board's window: the tiles around the visible rows, by `offset` and `limit`.
//!
//! One request at a time. A change seen on the event stream asks for a refresh
//! ([`Pager::refresh_soon`]); refreshes are at most one per [`REFRESH_MS`], so a burst of
//! 1,000 changes a second costs a few small requests a second, not one per change, and every
//! change reaches its tile within about `REFRESH_MS` plus one request.

use crate::api;
use crate::board::Board;
use crate::ui::Errors;
use leptos::prelude::*;
use model::TaskPage;
use std::ops::Range;
use std::time::Duration;

/// Shortest time between two refreshes caused by events.
pub const REFRESH_MS: f64 = 250.0;

/// The fetcher's private state.
#[derive(Default)]
struct Inner {
    /// Board positions the view wants loaded.
    want: Range<usize>,
    /// A request is under way.
    in_flight: bool,
    /// Something changed while it was: fetch again when it lands.
    again: bool,
    /// When the last request started (ms since epoch).
    last_ms: f64,
    /// A delayed refresh is booked.
    booked: bool,
    /// Refreshes asked for so far: the timeline refetches when this moved.
    generation: u64,
}

/// Handle on the fetcher. `Copy`, so every closure can hold it.
#[derive(Clone, Copy)]
pub struct Pager {
    board: Board,
    errors: Errors,
    inner: StoredValue<Inner>,
}

impl Pager {
    /// A fetcher for `board`, showing failures in `errors`.
    pub fn new(board: Board, errors: Errors) -> Pager {
        Pager {
            board,
            errors,
            inner: StoredValue::new(Inner::default()),
        }
    }

    /// The view scrolled or resized: fetch now unless the window already holds `range`.
    pub fn want(&self, range: Range<usize>) {
        let moved = self
            .inner
            .try_update_value(|i| std::mem::replace(&mut i.want, range.clone()) != range);
        let total = self.board.total_untracked() as usize;
        let covered = self.board.window.with_untracked(|w| {
            w.start <= range.start && w.start + w.ids.len() >= range.end.min(total)
        });
        if moved == Some(true) && !covered {
            self.refresh_now();
        }
    }

    /// How many refreshes were asked for so far (something changed when this moved).
    pub fn generation(&self) -> u64 {
        self.inner.with_value(|i| i.generation)
    }

    /// Fetch again now (a reconnect, a `resync`, a new filter, a person's action).
    pub fn refresh_now(&self) {
        let start = self.inner.try_update_value(|i| {
            i.generation += 1;
            if i.in_flight {
                i.again = true;
                return false;
            }
            i.in_flight = true;
            i.last_ms = js_sys::Date::now();
            true
        });
        if start == Some(true) {
            let this = *self;
            leptos::task::spawn_local(async move { this.fetch().await });
        }
    }

    /// Fetch again soon: at most once per [`REFRESH_MS`].
    pub fn refresh_soon(&self) {
        let wait = self.inner.try_update_value(|i| {
            i.generation += 1;
            if i.in_flight {
                i.again = true;
                return None;
            }
            if i.booked {
                return None;
            }
            let wait = i.last_ms + REFRESH_MS - js_sys::Date::now();
            i.booked = wait > 0.0;
            Some(wait)
        });
        match wait.flatten() {
            None => {}
            Some(w) if w <= 0.0 => self.refresh_now(),
            Some(w) => {
                let this = *self;
                set_timeout(
                    move || {
                        this.inner.update_value(|i| i.booked = false);
                        this.refresh_now();
                    },
                    Duration::from_millis(w as u64),
                );
            }
        }
    }

    async fn fetch(&self) {
        let want = self.inner.with_value(|i| i.want.clone());
        let limit = (want.end - want.start).clamp(1, model::limits::MAX_PAGE);
        let filter = self.board.filter.get_untracked();
        let query = self.board.query.get_untracked();
        let state = filter.map_or(String::new(), |s| format!("&state={}", s.as_str()));
        let q = match query.trim() {
            "" => String::new(),
            q => format!("&q={}", api::encode(q)),
        };
        let path = format!("/api/tasks?offset={}&limit={limit}{state}{q}", want.start);
        let page = api::get::<TaskPage>(&path).await;
        let again = self
            .inner
            .try_update_value(|i| {
                i.in_flight = false;
                std::mem::take(&mut i.again) || i.want != want
            })
            .unwrap_or(false);
        match page {
            // A page for a filter or search the person has since left is dropped (the next one
            // is due).
            Ok(_) if self.board.filter.get_untracked() != filter => {}
            Ok(_) if self.board.query.get_untracked() != query => {}
            Ok(p) => self.board.show(want.start, p.tasks, p.counts),
            Err(e) => self.errors.push(e),
        }
        if again {
            self.refresh_soon();
        }
    }
}
