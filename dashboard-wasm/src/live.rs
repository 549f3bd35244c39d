//! Keeping the board live: the `/api/events` stream, reconnection, and polling while it is down.
//!
//! The stream is opened by hand (not left to `EventSource`'s own retry) so the page knows when
//! it is down: then it polls `GET /api/tasks` every [`POLL`] and tries the stream again with a
//! growing delay. Every (re)connection reloads the list, so nothing missed while away is lost.
//!
//! Events are buffered and applied together on the next animation frame, so a burst of 1,000
//! events costs one render, not 1,000.

use crate::api;
use crate::board::Board;
use crate::ui::Errors;
use leptos::prelude::*;
use model::{ClearedEvent, Task, TaskEvent, TaskPage};
use std::cell::RefCell;
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
/// Most tasks loaded into the page (pages of `MAX_PAGE`).
const MAX_TILES: usize = 10_000;

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
    Cleared(ClearedEvent),
}

/// The connection's private state, shared by its callbacks (single-threaded: `Rc<RefCell>`).
#[derive(Default)]
struct Inner {
    /// Changes waiting for the next animation frame.
    buffer: Vec<Change>,
    /// An animation frame is already booked to flush `buffer`.
    flush_booked: bool,
    /// A reload is under way; changes seen meanwhile are replayed after it lands.
    reloading: bool,
    /// Tasks seen while `reloading` (newer than the listing may be).
    seen_during_reload: Vec<Task>,
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
    errors: Errors,
    /// Shown in the header.
    pub link: RwSignal<Link>,
    inner: Rc<RefCell<Inner>>,
}

impl Live {
    /// Loads the board, opens the stream and starts the polling fallback.
    pub fn start(board: Board, errors: Errors) -> Live {
        let live = Live {
            board,
            errors,
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

    /// Reloads the whole list (after a reconnect, a `resync`, or while polling).
    pub fn reload(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.reloading {
                return;
            }
            inner.reloading = true;
            inner.seen_during_reload.clear();
        }
        let this = self.clone();
        leptos::task::spawn_local(async move {
            let result = load_all().await;
            let replay = {
                let mut inner = this.inner.borrow_mut();
                inner.reloading = false;
                std::mem::take(&mut inner.seen_during_reload)
            };
            match result {
                Ok((tasks, counts, complete)) => {
                    this.board.reset(tasks, counts, complete);
                    this.board.upsert(replay);
                }
                Err(e) if this.link.get_untracked() != Link::Down => this.errors.push(e),
                Err(_) => {}
            }
        });
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
        self.listen(&source, "cleared", |this, data| {
            if let Ok(e) = serde_json::from_str::<ClearedEvent>(&data) {
                this.queue(Change::Cleared(e));
            }
        });
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
            if let (true, Change::Task(t)) = (inner.reloading, &change) {
                inner.seen_during_reload.push(Task::clone(t));
            }
            inner.buffer.push(change);
            !std::mem::replace(&mut inner.flush_booked, true)
        };
        if book {
            let this = self.clone();
            request_animation_frame(move || this.flush());
        }
    }

    fn flush(&self) {
        let changes = {
            let mut inner = self.inner.borrow_mut();
            inner.flush_booked = false;
            std::mem::take(&mut inner.buffer)
        };
        let mut tasks = Vec::new();
        for change in changes {
            match change {
                Change::Task(t) => tasks.push(*t),
                Change::Cleared(c) => {
                    self.board.upsert(std::mem::take(&mut tasks));
                    self.board.remove(&c.ids);
                }
            }
        }
        self.board.upsert(tasks);
    }
}

/// Loads every page of `GET /api/tasks` (up to [`MAX_TILES`]).
async fn load_all() -> Result<
    (
        Vec<Task>,
        std::collections::BTreeMap<model::TaskState, u64>,
        bool,
    ),
    api::ApiError,
> {
    let page_size = model::limits::MAX_PAGE;
    let mut page: TaskPage = api::get(&format!("/api/tasks?limit={page_size}")).await?;
    let counts = std::mem::take(&mut page.counts);
    let mut tasks = std::mem::take(&mut page.tasks);
    while let Some(cursor) = page.next.take() {
        if tasks.len() >= MAX_TILES {
            return Ok((tasks, counts, false));
        }
        let path = format!(
            "/api/tasks?limit={page_size}&cursor={}",
            api::encode(&cursor)
        );
        page = api::get(&path).await?;
        tasks.append(&mut page.tasks);
    }
    Ok((tasks, counts, true))
}
