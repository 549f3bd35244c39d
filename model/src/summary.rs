//! The board header's figures over the recent tasks (`GET /api/summary`), computed on the
//! server from the same records the API serves, so the page shows exact numbers without
//! loading every task.

use crate::task::Task;
use serde::{Deserialize, Serialize};

/// The window over which finished tasks are counted for the throughput.
pub const THROUGHPUT_WINDOW_MS: i64 = 60_000;

/// The median and 95th percentile of some durations (nearest rank), and how many there were.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many durations were measured.
    pub n: usize,
    /// The median, in ms (`None` with no durations).
    pub p50_ms: Option<i64>,
    /// The 95th percentile, in ms (`None` with no durations).
    pub p95_ms: Option<i64>,
}

impl Percentiles {
    /// The percentiles of `values` (any order).
    pub fn of(mut values: Vec<i64>) -> Percentiles {
        values.sort_unstable();
        let rank = |p: f64| {
            let n = values.len();
            (n > 0).then(|| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Percentiles {
            n: values.len(),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
        }
    }
}

/// Body of `GET /api/summary`: figures over the newest `tasks` tasks on the board.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// How many tasks the figures cover (the newest ones, at most the `recent` asked for).
    pub tasks: usize,
    /// Accepted -> `InProgress` (the current attempt's first report), over the tasks that got
    /// there.
    pub to_in_progress: Percentiles,
    /// Run time (`InProgress` -> finished), over the finished tasks that ran.
    pub run: Percentiles,
    /// Tasks that finished in the last minute ([`THROUGHPUT_WINDOW_MS`]) before `at_ms`.
    pub finished_per_minute: u64,
    /// Container seconds billed to these tasks.
    pub billed_seconds: u64,
    /// What they cost, in the rates' currency.
    pub cost: f64,
    /// When the figures were taken (ms since the epoch).
    pub at_ms: i64,
}

impl Summary {
    /// The figures over `tasks` at `now_ms`.
    pub fn of(tasks: &[Task], now_ms: i64) -> Summary {
        let waits = tasks
            .iter()
            .filter_map(|t| Some(t.started_at_ms? - t.created_at_ms))
            .collect();
        let runs = tasks
            .iter()
            .filter_map(|t| Some(t.finished_at_ms? - t.started_at_ms?))
            .collect();
        let recent = |t: &&Task| {
            t.finished_at_ms
                .is_some_and(|f| f <= now_ms && now_ms - f < THROUGHPUT_WINDOW_MS)
        };
        Summary {
            tasks: tasks.len(),
            to_in_progress: Percentiles::of(waits),
            run: Percentiles::of(runs),
            finished_per_minute: tasks.iter().filter(recent).count() as u64,
            billed_seconds: tasks.iter().map(|t| t.billed_seconds).sum(),
            cost: tasks.iter().map(|t| t.cost).sum(),
            at_ms: now_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Resources, TaskId};

    fn task(n: u32, started: Option<i64>, finished: Option<i64>) -> Task {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 128,
        };
        let id = TaskId::parse(&format!("t{n}")).unwrap();
        let mut t = Task::new(id, "w".into(), r, 1, 60, 1_000);
        t.started_at_ms = started;
        t.finished_at_ms = finished;
        t.billed_seconds = 2;
        t.cost = 0.5;
        t
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        let p = Percentiles::of((1..=20).rev().collect());
        assert_eq!((p.n, p.p50_ms, p.p95_ms), (20, Some(10), Some(19)));
        let one = Percentiles::of(vec![7]);
        assert_eq!((one.p50_ms, one.p95_ms), (Some(7), Some(7)));
    }

    #[test]
    fn figures_over_the_tasks() {
        let tasks = [
            task(1, Some(1_100), Some(1_900)),
            task(2, Some(1_300), Some(61_300)),
            task(3, Some(1_200), None),
            task(4, None, None),
        ];
        let s = Summary::of(&tasks, 62_000);
        assert_eq!(s.tasks, 4);
        assert_eq!(s.to_in_progress.n, 3);
        assert_eq!(s.to_in_progress.p50_ms, Some(200));
        assert_eq!(s.run.n, 2);
        assert_eq!((s.run.p50_ms, s.run.p95_ms), (Some(800), Some(60_000)));
        assert_eq!(
            s.finished_per_minute, 1,
            "only task 2 ended in the last minute"
        );
        assert_eq!((s.billed_seconds, s.cost), (8, 2.0));
    }
}
