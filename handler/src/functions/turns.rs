//! Which waiting tasks the `ReconcileTimer` sends first when there is room (Functions mode;
//! local mode's queue decides the same in its `receive`).
//!
//! Service Bus delivers in arrival order and knows nothing of priorities or keys, so the
//! order is made here, on the tasks the trigger left waiting ([`super::admit`]): the highest
//! priority first; within one priority, concurrency keys take turns (the key served least
//! recently goes first, so one busy key cannot starve the others), each key's tasks in the
//! order they became due; tasks without a key are one more lane. Never more than the room
//! under the global cap, nor more of a key than the room under its cap.

use model::Task;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// When each lane (a key, or `None` for tasks without one) was last served. Kept by the
/// timer's resender across ticks, so the turns go on where they stopped; lost on a restart,
/// which only restarts the rotation.
#[derive(Debug, Default)]
pub struct Turns {
    /// The serving clock's value when each lane was last served.
    last: HashMap<Option<String>, u64>,
    /// A counter that ticks once per task served.
    clock: u64,
}

impl Turns {
    /// Picks at most `room` tasks of `due` (in the order they became due) as the module docs
    /// say; `key_room(k)` is how many more tasks of key `k` may start (`None`: no cap).
    pub fn pick<'a>(
        &mut self,
        due: &[&'a Task],
        room: usize,
        key_room: impl Fn(&str) -> Option<usize>,
    ) -> Vec<&'a Task> {
        let mut left: HashMap<String, Option<usize>> = HashMap::new();
        let mut by_priority: BTreeMap<std::cmp::Reverse<i32>, Vec<&'a Task>> = BTreeMap::new();
        for t in due {
            by_priority
                .entry(std::cmp::Reverse(t.priority))
                .or_default()
                .push(t);
        }
        let mut picked = Vec::new();
        for tasks in by_priority.into_values() {
            if picked.len() >= room {
                break;
            }
            self.serve_level(tasks, room, &mut left, &key_room, &mut picked);
        }
        picked
    }

    /// Serves one priority level round-robin over its lanes into `picked`.
    fn serve_level<'a>(
        &mut self,
        tasks: Vec<&'a Task>,
        room: usize,
        left: &mut HashMap<String, Option<usize>>,
        key_room: &impl Fn(&str) -> Option<usize>,
        picked: &mut Vec<&'a Task>,
    ) {
        let mut lanes: BTreeMap<Option<String>, VecDeque<&'a Task>> = BTreeMap::new();
        for t in tasks {
            lanes.entry(t.key.clone()).or_default().push_back(t);
        }
        let mut order: Vec<Option<String>> = lanes.keys().cloned().collect();
        order.sort_by_key(|lane| (self.last.get(lane).copied().unwrap_or(0), lane.clone()));
        while picked.len() < room && !order.is_empty() {
            order.retain(|lane| {
                if picked.len() >= room {
                    return true;
                }
                let key_left = lane
                    .as_ref()
                    .and_then(|k| *left.entry(k.clone()).or_insert_with(|| key_room(k)));
                if key_left == Some(0) {
                    return false; // the key is at its cap
                }
                let Some(t) = lanes.get_mut(lane).and_then(VecDeque::pop_front) else {
                    return false;
                };
                if let Some(Some(n)) = lane.as_ref().and_then(|k| left.get_mut(k)) {
                    *n -= 1;
                }
                self.clock += 1;
                self.last.insert(lane.clone(), self.clock);
                picked.push(t);
                true
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Resources, TaskId};

    fn task(id: &str, key: Option<&str>, priority: i32) -> Task {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 256,
        };
        let mut t = Task::new(TaskId::parse(id).unwrap(), "w".into(), r, 3, 60, 1);
        t.key = key.map(String::from);
        t.priority = priority;
        t
    }

    fn ids(v: &[&Task]) -> Vec<String> {
        v.iter().map(|t| t.id.to_string()).collect()
    }

    #[test]
    fn higher_priority_goes_first_and_keys_take_turns_within_a_priority() {
        let all = [
            task("a1", Some("a"), 0),
            task("a2", Some("a"), 0),
            task("a3", Some("a"), 0),
            task("b1", Some("b"), 0),
            task("n1", None, 0),
            task("hi", Some("a"), 5),
        ];
        let due: Vec<&Task> = all.iter().collect();
        let mut turns = Turns::default();
        let got = turns.pick(&due, 4, |_| None);
        assert_eq!(
            ids(&got),
            ["hi", "n1", "b1", "a1"],
            "a was just served by hi"
        );
        // The next tick goes on where the turns stopped: not `a` again before the others.
        let rest: Vec<&Task> = [&all[1], &all[2], &all[3], &all[4]].to_vec();
        assert_eq!(ids(&turns.pick(&rest, 2, |_| None)), ["n1", "b1"]);
    }

    #[test]
    fn a_key_never_gets_more_than_its_room_and_the_room_is_never_exceeded() {
        let all = [
            task("a1", Some("a"), 0),
            task("a2", Some("a"), 0),
            task("a3", Some("a"), 9),
            task("b1", Some("b"), 0),
            task("b2", Some("b"), 0),
        ];
        let due: Vec<&Task> = all.iter().collect();
        let room = |k: &str| Some(if k == "a" { 1 } else { 5 });
        let got = Turns::default().pick(&due, 10, room);
        assert_eq!(
            ids(&got),
            ["a3", "b1", "b2"],
            "one slot for a, taken by its highest"
        );
        assert_eq!(Turns::default().pick(&due, 2, room).len(), 2);
        assert!(Turns::default().pick(&due, 0, room).is_empty());
        let full = |k: &str| Some(if k == "b" { 0 } else { 5 });
        assert_eq!(
            ids(&Turns::default().pick(&due, 10, full)),
            ["a3", "a1", "a2"]
        );
    }
}
