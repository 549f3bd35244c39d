//! The board: the window of tasks the page has loaded, one signal per task.
//!
//! The page never holds the whole board: at 100,000 tasks that took seconds to load and 10,000
//! tile elements to show. It holds the tiles around the visible rows (the *window*, fetched by
//! [`crate::pager`] with `offset` and `limit`), the whole-board counts the server sent with it,
//! and the selected task. So memory and element count stay bounded whatever the board's size.
//!
//! One `RwSignal<Task>` per loaded task means an event touches exactly one tile; the window's
//! list of ids changes only when a page lands, and the keyed `<For>` then moves DOM nodes
//! instead of rebuilding them.

use leptos::prelude::*;
use model::{Task, TaskId, TaskState};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The loaded slice of the board, in board order (newest first, a batch in submission order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Board position of the first id.
    pub start: usize,
    /// The tasks at `start..start + ids.len()`.
    pub ids: Vec<TaskId>,
}

/// The page's copy of the board. `Copy`, so every closure can hold it.
#[derive(Clone, Copy)]
pub struct Board {
    /// The loaded window. Written only when a page lands.
    pub window: RwSignal<Window>,
    /// One signal per loaded task (the window's, and the selected one's); not itself reactive:
    /// membership changes go through `window`.
    tasks: StoredValue<HashMap<TaskId, RwSignal<Task>>>,
    /// Tasks per state on the whole board, as the server last counted them.
    pub counts: RwSignal<BTreeMap<TaskState, u64>>,
    /// The state the board is filtered on, if any (the server filters).
    pub filter: RwSignal<Option<TaskState>>,
    /// The search the board shows (`q` of `GET /api/tasks`, see [`crate::search`]); empty: all.
    /// With one, the counts are of the matching tasks.
    pub query: RwSignal<String>,
    /// Tiles picked for a bulk action (ctrl/cmd-click, shift-click; see [`crate::select`]).
    pub selection: RwSignal<BTreeSet<TaskId>>,
    /// "Select all matching": the bulk bar acts on every task the search and filter match,
    /// loaded or not, instead of `selection`.
    pub all_matching: RwSignal<bool>,
    /// The tile toggled last: where a shift-click's run starts.
    pub anchor: StoredValue<Option<TaskId>>,
    /// The task kept loaded even when it is outside the window (the details panel's).
    pub pinned: RwSignal<Option<TaskId>>,
    /// The latest change, for the aria-live region (screen readers).
    pub announcement: RwSignal<String>,
    /// Bumped whenever a change means the window and counts need fetching again (see
    /// [`Board::upsert`]), whoever applied it: the event stream or an API answer.
    pub stale: RwSignal<u64>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            window: RwSignal::new(Window::default()),
            tasks: StoredValue::new(HashMap::new()),
            counts: RwSignal::new(BTreeMap::new()),
            filter: RwSignal::new(None),
            query: RwSignal::new(String::new()),
            selection: RwSignal::new(BTreeSet::new()),
            all_matching: RwSignal::new(false),
            anchor: StoredValue::new(None),
            pinned: RwSignal::new(None),
            announcement: RwSignal::new(String::new()),
            stale: RwSignal::new(0),
        }
    }
}

impl Board {
    /// The signal of one task, if the board has it loaded.
    pub fn get(&self, id: &TaskId) -> Option<RwSignal<Task>> {
        self.tasks.with_value(|m| m.get(id).copied())
    }

    /// How many tasks the board shows under the current filter (from the server's counts).
    pub fn total(&self) -> u64 {
        let filter = self.filter.get();
        self.counts.with(|c| count(c, filter))
    }

    /// [`Board::total`], without subscribing.
    pub fn total_untracked(&self) -> u64 {
        let filter = self.filter.get_untracked();
        self.counts.with_untracked(|c| count(c, filter))
    }

    /// Applies new versions of tasks from the event stream (in order, so always newest) to
    /// the tiles that are loaded, in one render. Returns true when the window must be fetched
    /// again: a task it does not hold changed (it may be new, or move the others), or a state
    /// changed (so did the counts, and maybe the filter's membership).
    pub fn upsert(&self, tasks: Vec<Task>) -> bool {
        self.apply(tasks, false)
    }

    /// Applies tasks from an API answer (a submit, cancel or retry answer). An answer may arrive
    /// after events that are newer than it (the spawn can report `Provisioning` before the
    /// `202` of the submit is read), so a version that is [`behind`] the tile's is ignored.
    /// Returns true as [`Board::upsert`] does.
    pub fn merge_answer(&self, tasks: Vec<Task>) -> bool {
        self.apply(tasks, true)
    }

    fn apply(&self, tasks: Vec<Task>, guard: bool) -> bool {
        let mut stale = false;
        let mut said = Vec::new();
        for task in tasks {
            match self.get(&task.id) {
                Some(sig) if guard && sig.with_untracked(|cur| behind(&task, cur)) => {}
                Some(sig) => {
                    if sig.with_untracked(|t| t.state) != task.state {
                        stale = true;
                        said.push(format!("Task {} is {}", short_id(&task.id), task.state));
                    }
                    sig.set(task);
                }
                None => stale = true,
            }
        }
        self.announce(said);
        if stale {
            self.stale.update(|n| *n = n.wrapping_add(1));
        }
        stale
    }

    /// Shows a freshly fetched window and the counts that came with it. Tiles that stay keep
    /// their signal (and DOM node); a version older than the one shown is ignored.
    pub fn show(&self, start: usize, tasks: Vec<Task>, counts: BTreeMap<TaskState, u64>) {
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id.clone()).collect();
        let pinned = self.pinned.get_untracked();
        // A fetched window can bring a change before its event does (the event then changes
        // nothing): screen readers hear it from whichever comes first.
        let mut said = Vec::new();
        self.tasks.update_value(|m| {
            let mut next = HashMap::with_capacity(tasks.len() + 1);
            for task in tasks {
                let sig = match m.remove(&task.id) {
                    Some(sig) => {
                        if !sig.with_untracked(|cur| behind(&task, cur)) {
                            if sig.with_untracked(|t| t.state) != task.state {
                                said.push(format!("Task {} is {}", short_id(&task.id), task.state));
                            }
                            sig.set(task);
                        }
                        sig
                    }
                    None => RwSignal::new(task),
                };
                next.insert(sig.with_untracked(|t| t.id.clone()), sig);
            }
            if let Some((id, sig)) = pinned.and_then(|p| m.remove_entry(&p)) {
                next.entry(id).or_insert(sig);
            }
            *m = next;
        });
        self.announce(said);
        if self.counts.with_untracked(|c| *c != counts) {
            self.counts.set(counts);
        }
        let window = Window { start, ids };
        if self.window.with_untracked(|w| *w != window) {
            self.window.set(window);
        }
    }

    /// Loads one task outside the window (the selected one, after a reload with `#task=`).
    pub fn pin(&self, task: Task) {
        match self.get(&task.id) {
            Some(sig) => {
                if sig.with_untracked(|t| t.state) != task.state {
                    self.announce(vec![format!(
                        "Task {} is {}",
                        short_id(&task.id),
                        task.state
                    )]);
                }
                sig.set(task)
            }
            None => {
                let id = task.id.clone();
                self.tasks.update_value(|m| {
                    m.insert(id, RwSignal::new(task));
                });
                self.window.update(|_| {}); // membership changed: let the panel look again
            }
        }
    }

    /// How many task signals the page holds (the window plus the pinned one): bounded.
    pub fn loaded(&self) -> usize {
        self.tasks.with_value(|m| m.len())
    }

    fn announce(&self, said: Vec<String>) {
        match said.len() {
            0 => {}
            1 => self
                .announcement
                .set(said.into_iter().next().unwrap_or_default()),
            n => self
                .announcement
                .set(format!("{n} changes: {}", said[..n.min(3)].join("; "))),
        }
    }
}

/// True when `new` is an older version of the task than `cur`: an earlier attempt, or an
/// earlier step of the same attempt (within an attempt a task only moves forward).
pub fn behind(new: &Task, cur: &Task) -> bool {
    new.attempt < cur.attempt || (new.attempt == cur.attempt && new.state.rank() < cur.state.rank())
}

fn count(counts: &BTreeMap<TaskState, u64>, filter: Option<TaskState>) -> u64 {
    match filter {
        Some(s) => counts.get(&s).copied().unwrap_or(0),
        None => counts.values().sum(),
    }
}

/// The first part of an id, enough to tell tiles apart when read aloud.
pub fn short_id(id: &TaskId) -> &str {
    let s = id.as_str();
    &s[..s.len().min(8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_are_behind() {
        let id = TaskId::parse("a").unwrap();
        let res = model::Resources {
            cpu: 1.0,
            memory_mb: 64,
        };
        let pending = Task::new(id, "w".into(), res, 3, 60, 0);
        let provisioning = Task {
            state: TaskState::Provisioning,
            attempt: 1,
            ..pending.clone()
        };
        let running = Task {
            state: TaskState::InProgress,
            ..provisioning.clone()
        };
        assert!(behind(&pending, &provisioning));
        assert!(behind(&provisioning, &running));
        assert!(!behind(&running, &provisioning));
        let next_attempt = Task {
            state: TaskState::Provisioning,
            attempt: 2,
            ..running.clone()
        };
        assert!(!behind(&next_attempt, &running));
    }
}
