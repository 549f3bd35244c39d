//! Keeping the board live: the `/api/events` stream, reconnection, and polling while it is down.
//!
//! The stream is opened by hand (not left to `EventSource`'s own retry) so the page knows when
//! it is down: then it polls the window every [`POLL`] and tries the stream again with a
//! growing delay. Every (re)connection, and every `resync` the server sends when this page fell
//! behind, fetches the window again, so nothing missed while away is lost.
//!
//! Events are buffered and applied together on the next animation frame, so a burst of 1,000
//! events costs one render, not 1,000: the loaded tiles change in place, and anything else
//! (a new task, a task outside the window, a state change that moves the counts) books one
//! refresh of the window through the [`Pager`], at most every `pager::REFRESH_MS`.

use crate::api;
use crate::board::Board;
use crate::pager::Pager;
use leptos::prelude::*;
use model::{Task, TaskEvent, TaskId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{EventSource, MessageEvent};

/// How often the list is polled while the stream is down.
const POLL: Duration = Duration::from_secs(2);
/// Largest wait between two attempts to reopen the stream.
const MAX_BACKOFF_MS: u64 = 5_000;
/// A stream open at least this long was healthy; its end restarts the back-off.
const LONG_LIVED_MS: f64 = 10_000.0;

/// Whether the stream is open, shown in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Opening the stream.
    Connecting,
    /// Events are arriving.
    Live,
    /// The stream is down; polling and retrying.
    Down,
}

/// One buffered change.
enum Change {
    Task(Box<Task>),
    /// Tasks were removed: the window and counts need fetching.
    Cleared,
}

/// The connection's private state, shared by its callbacks (single-threaded: `Rc<RefCell>`).
#[derive(Default)]
struct Inner {
    /// Changes waiting for the next animation frame.
    buffer: Vec<Change>,
    /// An animation frame is already booked to flush `buffer`.
    flush_booked: bool,
    /// Short-lived connections in a row, for the back-off. A stream that closes soon after it
    /// opened counts too (Azure's `/api/events` answers one `resync` and closes), so such a
    /// server is asked at most every [`MAX_BACKOFF_MS`], not in a tight loop.
    failures: u32,
    /// When the current stream opened (ms since epoch), to tell a long-lived one from a blip.
    opened_at: Option<f64>,
    /// The open stream, so it can be closed before reopening.
    source: Option<EventSource>,
}

/// Handle on the live connection.
#[derive(Clone)]
pub struct Live {
    board: Board,
    /// Fetches the window (and the timeline's tasks).
    pub pager: Pager,
    /// Shown in the header.
    pub link: RwSignal<Link>,
    inner: Rc<RefCell<Inner>>,
}

impl Live {
    /// Loads the board, opens the stream and starts the polling fallback.
    pub fn start(board: Board, pager: Pager) -> Live {
        let live = Live {
            board,
            pager,
            link: RwSignal::new(Link::Connecting),
            inner: Rc::default(),
        };
        live.connect();
        let poller = live.clone();
        set_interval(
            move || {
                if poller.link.get_untracked() == Link::Down {
                    poller.reload();
                }
            },
            POLL,
        );
        live
    }

    /// Fetches the window again (after a reconnect, a `resync`, or while polling).
    pub fn reload(&self) {
        self.pager.refresh_now();
    }

    fn connect(&self) {
        let Ok(source) = EventSource::new(&api::url("/api/events")) else {
            self.link.set(Link::Down);
            return;
        };
        let this = self.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            this.inner.borrow_mut().opened_at = Some(js_sys::Date::now());
            this.link.set(Link::Live);
            this.reload();
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        on_open.forget();
        self.listen(&source, "task", |this, data| {
            if let Ok(e) = serde_json::from_str::<TaskEvent>(&data) {
                this.queue(Change::Task(Box::new(e.task)));
            }
        });
        self.listen(&source, "cleared", |this, _| this.queue(Change::Cleared));
        self.listen(&source, "resync", |this, _| this.reload());
        let this = self.clone();
        let on_error = Closure::<dyn FnMut()>::new(move || this.down());
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        self.inner.borrow_mut().source = Some(source);
    }

    fn listen(&self, source: &EventSource, name: &str, f: fn(&Live, String)) {
        let this = self.clone();
        let cb = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            f(&this, e.data().as_string().unwrap_or_default());
        });
        let _ = source.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        cb.forget();
    }

    /// The stream broke: close it, poll, and try again after a back-off.
    fn down(&self) {
        let failures = {
            let mut inner = self.inner.borrow_mut();
            if let Some(s) = inner.source.take() {
                s.close();
            }
            let lived = inner.opened_at.take().map(|t| js_sys::Date::now() - t);
            inner.failures = match lived {
                Some(ms) if ms > LONG_LIVED_MS => 1,
                _ => inner.failures + 1,
            };
            inner.failures
        };
        self.link.set(Link::Down);
        let wait = (250u64 << failures.min(5)).min(MAX_BACKOFF_MS);
        let this = self.clone();
        set_timeout(move || this.connect(), Duration::from_millis(wait));
    }

    fn queue(&self, change: Change) {
        let book = {
            let mut inner = self.inner.borrow_mut();
            inner.buffer.push(change);
            !std::mem::replace(&mut inner.flush_booked, true)
        };
        if book {
            let this = self.clone();
            request_animation_frame(move || this.flush());
        }
    }

    /// Applies the frame's changes: the last version of each task, in one render.
    fn flush(&self) {
        let changes = {
            let mut inner = self.inner.borrow_mut();
            inner.flush_booked = false;
            std::mem::take(&mut inner.buffer)
        };
        let mut latest: HashMap<TaskId, Task> = HashMap::new();
        let mut stale = false;
        for change in changes {
            match change {
                Change::Task(t) => {
                    latest.insert(t.id.clone(), *t);
                }
                Change::Cleared => stale = true,
            }
        }
        stale |= self.board.upsert(latest.into_values().collect());
        if stale {
            self.pager.refresh_soon();
        }
    }
}
