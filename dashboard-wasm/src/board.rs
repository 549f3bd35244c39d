//! The board: every task the page knows, kept in one signal per task.
//!
//! One `RwSignal<Task>` per task means an event touches exactly one tile; the ordered list of
//! keys (newest first) changes only when tasks arrive or leave, and the keyed `<For>` then
//! moves DOM nodes instead of rebuilding them. That is what keeps 1,000 tiles responsive.

use leptos::prelude::*;
use model::{Task, TaskId, TaskState};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Sort key of a tile: newest first, ties broken by id so the order is total and stable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `Task::created_at_ms`.
    pub created_at_ms: i64,
    /// The task's id (also the `<For>` key).
    pub id: TaskId,
}

impl Key {
    fn of(task: &Task) -> Key {
        Key {
            created_at_ms: task.created_at_ms,
            id: task.id.clone(),
        }
    }
}

/// The page's copy of the board. `Copy`, so every closure can hold it.
#[derive(Clone, Copy)]
pub struct Board {
    /// Tile order, newest first. Written only when tasks arrive or leave.
    pub order: RwSignal<Vec<Key>>,
    /// One signal per task; not itself reactive, since membership changes go through `order`.
    tasks: StoredValue<HashMap<TaskId, RwSignal<Task>>>,
    /// Tasks per state on the whole board: from `TaskPage.counts`, then kept up by events.
    pub counts: RwSignal<BTreeMap<TaskState, u64>>,
    /// The latest change, for the aria-live region (screen readers).
    pub announcement: RwSignal<String>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            order: RwSignal::new(Vec::new()),
            tasks: StoredValue::new(HashMap::new()),
            counts: RwSignal::new(BTreeMap::new()),
            announcement: RwSignal::new(String::new()),
        }
    }
}

impl Board {
    /// The signal of one task, if the board has it.
    pub fn get(&self, id: &TaskId) -> Option<RwSignal<Task>> {
        self.tasks.with_value(|m| m.get(id).copied())
    }

    /// Applies new versions of tasks from the event stream (in order, so always newest), in
    /// one render.
    pub fn upsert(&self, tasks: Vec<Task>) {
        self.apply(tasks, false);
    }

    /// Applies tasks from an API answer (a submit, cancel or retry answer, a listing). An answer
    /// may arrive after events that are newer than it (the spawn can report `Provisioning`
    /// before the `202` of the submit is read), so a version that is [`behind`] the tile's is
    /// ignored.
    pub fn merge_answer(&self, tasks: Vec<Task>) {
        self.apply(tasks, true);
    }

    fn apply(&self, tasks: Vec<Task>, guard: bool) {
        let mut added = Vec::new();
        let mut changes: Vec<(TaskState, Option<TaskState>)> = Vec::new();
        let mut said = Vec::new();
        for task in tasks {
            match self.get(&task.id) {
                Some(sig) if guard && sig.with_untracked(|cur| behind(&task, cur)) => {}
                Some(sig) => {
                    let old = sig.with_untracked(|t| t.state);
                    if old != task.state {
                        changes.push((task.state, Some(old)));
                        said.push(format!("Task {} is {}", short_id(&task.id), task.state));
                    }
                    sig.set(task);
                }
                None => {
                    changes.push((task.state, None));
                    added.push(Key::of(&task));
                    let id = task.id.clone();
                    let sig = RwSignal::new(task);
                    self.tasks.update_value(|m| {
                        m.insert(id, sig);
                    });
                }
            }
        }
        if !changes.is_empty() {
            self.counts.update(|c| {
                for (new, old) in changes {
                    if let Some(old) = old {
                        decrement(c, old);
                    }
                    *c.entry(new).or_default() += 1;
                }
            });
        }
        if !added.is_empty() {
            said.push(format!("{} new task(s)", added.len()));
            self.order.update(|order| merge(order, added));
        }
        self.announce(said);
    }

    /// Removes tasks (a `cleared` event or "clear finished").
    pub fn remove(&self, ids: &[TaskId]) {
        let gone: HashSet<&TaskId> = ids.iter().collect();
        let mut states = Vec::new();
        self.tasks.update_value(|m| {
            for id in ids {
                if let Some(sig) = m.remove(id) {
                    states.push(sig.get_untracked().state);
                }
            }
        });
        if states.is_empty() {
            return;
        }
        self.counts
            .update(|c| states.into_iter().for_each(|s| decrement(c, s)));
        self.order.update(|o| o.retain(|k| !gone.contains(&k.id)));
        self.announce(vec![format!("{} task(s) cleared", ids.len())]);
    }

    /// Replaces the board with a fresh listing. `complete` says the listing holds every task,
    /// so tasks missing from it were removed while the page was not listening.
    pub fn reset(&self, tasks: Vec<Task>, counts: BTreeMap<TaskState, u64>, complete: bool) {
        if complete {
            let keep: HashSet<TaskId> = tasks.iter().map(|t| t.id.clone()).collect();
            let stale: Vec<TaskId> = self
                .tasks
                .with_value(|m| m.keys().filter(|id| !keep.contains(*id)).cloned().collect());
            self.remove(&stale);
        }
        self.merge_answer(tasks);
        self.counts.set(counts);
    }

    fn announce(&self, said: Vec<String>) {
        match said.len() {
            0 => {}
            1 => self
                .announcement
                .set(said.into_iter().next().unwrap_or_default()),
            n => self
                .announcement
                .set(format!("{n} changes: {}", said.join("; "))),
        }
    }
}

/// True when `new` is an older version of the task than `cur`: an earlier attempt, or an
/// earlier step of the same attempt (within an attempt a task only moves forward).
pub fn behind(new: &Task, cur: &Task) -> bool {
    fn step(s: TaskState) -> u8 {
        match s {
            TaskState::Pending => 0,
            TaskState::Provisioning => 1,
            TaskState::InProgress => 2,
            _ => 3,
        }
    }
    new.attempt < cur.attempt || (new.attempt == cur.attempt && step(new.state) < step(cur.state))
}

fn decrement(counts: &mut BTreeMap<TaskState, u64>, state: TaskState) {
    if let Some(n) = counts.get_mut(&state) {
        *n = n.saturating_sub(1);
    }
}

/// Inserts `added` into `order` (sorted newest first), keeping it sorted.
fn merge(order: &mut Vec<Key>, mut added: Vec<Key>) {
    added.sort_unstable_by(|a, b| b.cmp(a));
    if order
        .last()
        .is_none_or(|last| added.first().is_some_and(|a| a < last))
    {
        order.extend(added);
        return;
    }
    if order
        .first()
        .is_some_and(|first| added.last().is_some_and(|a| a > first))
    {
        added.append(order);
        *order = added;
        return;
    }
    order.extend(added);
    order.sort_unstable_by(|a, b| b.cmp(a));
}

/// The first part of an id, enough to tell tiles apart when read aloud.
pub fn short_id(id: &TaskId) -> &str {
    let s = id.as_str();
    &s[..s.len().min(8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(at: i64, id: &str) -> Key {
        Key {
            created_at_ms: at,
            id: TaskId::parse(id).unwrap(),
        }
    }

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

    #[test]
    fn merge_keeps_newest_first() {
        let mut order = vec![key(5, "e"), key(3, "c")];
        merge(&mut order, vec![key(6, "f"), key(7, "g")]);
        merge(&mut order, vec![key(1, "a")]);
        merge(&mut order, vec![key(4, "d"), key(2, "b")]);
        let ids: Vec<&str> = order.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["g", "f", "e", "d", "c", "b", "a"]);
    }
}
