//! The Prometheus series behind `GET /metrics` (docs/METRICS.md says what each one means).
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client, OpenMetrics text format).
//! Three kinds of source, each read where it is true:
//! - what happened to tasks is observed from every applied lifecycle event ([`Metrics::observe`],
//!   called by the task service for each write, the same place the event bus is fed): phase
//!   durations from the attempt's clock, dead letters;
//! - what is now (tasks by state, queue depth, slots in use, warm pool size) is read at scrape
//!   time ([`render`]), from the store's counts, the local queue, the slot cap and the pool, so
//!   it cannot drift;
//! - what only one place sees is counted there: a redelivery that found its container
//!   ([`Metrics::redelivery_found_container`], from `spawn`).

use crate::app::App;
use crate::store::{ListFilter, StoreError};
use async_trait::async_trait;
use model::{Event, Phase, Task, TaskState};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};

/// The content type of the OpenMetrics text format that [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Errors of one scrape.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The store could not be read (tasks by state, queue depth).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The exposition could not be written (never expected: it writes to a `String`).
    #[error("encoding the metrics failed")]
    Encode(#[from] std::fmt::Error),
}

/// One label, `name="value"`.
type Label = [(&'static str, &'static str); 1];
/// A histogram family keyed by one label, with the phase buckets.
type Histograms = Family<Label, Histogram, fn() -> Histogram>;

/// Where the local queue's depth is read at scrape time (local mode only; Service Bus has its
/// own metrics in Azure Monitor).
#[async_trait]
pub trait QueueDepth: Send + Sync {
    /// Messages waiting or leased.
    async fn depth(&self) -> Result<u64, StoreError>;
}

#[async_trait]
impl QueueDepth for crate::queue::LocalQueue {
    async fn depth(&self) -> Result<u64, StoreError> {
        crate::queue::LocalQueue::depth(self).await
    }
}

/// The handler's series. One per task service (the event bus owns it), so tests that build
/// their own app get their own registry.
pub struct Metrics {
    /// Every series below, for encoding.
    registry: Registry,
    /// Seconds from an attempt's previous phase to each phase (`phase` label).
    phases: Histograms,
    /// Tasks per state, set from the store's counts at each scrape.
    tasks: Family<[(&'static str, &'static str); 1], Gauge>,
    /// Local queue depth, set at each scrape.
    queue_depth: Gauge,
    /// Slots held by running containers, set at each scrape.
    slots_in_use: Gauge,
    /// Warm containers waiting in the pool; set by the pool.
    pool_size: Gauge,
    /// Deliveries that found their attempt's container already there (no second container).
    redeliveries: Counter,
    /// Tasks dead-lettered.
    dead_letters: Counter,
    /// The local queue, once local mode has one.
    queue: OnceLock<Arc<dyn QueueDepth>>,
}

/// Phase buckets: 1 ms doubling to ~131 s (18 buckets), from a process start to a slow ACI pull.
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("eda");
        let phases: Histograms = Family::new_with_constructor(phase_histogram);
        registry.register(
            "phase_duration_seconds",
            "Time from an attempt's previous phase to this phase",
            phases.clone(),
        );
        let tasks = Family::default();
        registry.register("tasks", "Tasks on the board by state", tasks.clone());
        let m = Metrics {
            registry,
            phases,
            tasks,
            queue_depth: Gauge::default(),
            slots_in_use: Gauge::default(),
            pool_size: Gauge::default(),
            redeliveries: Counter::default(),
            dead_letters: Counter::default(),
            queue: OnceLock::new(),
        };
        m.register_rest()
    }
}

impl Metrics {
    fn register_rest(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "queue_depth",
            "Messages on the local queue (waiting or leased)",
            self.queue_depth.clone(),
        );
        r.register(
            "slots_in_use",
            "Concurrency slots held by task containers",
            self.slots_in_use.clone(),
        );
        r.register(
            "pool_size",
            "Warm containers waiting in the pool",
            self.pool_size.clone(),
        );
        r.register(
            "redeliveries_found_container",
            "Deliveries that found their attempt's container already there (a duplicate avoided)",
            self.redeliveries.clone(),
        );
        r.register(
            "dead_letters",
            "Tasks dead-lettered after the maximum deliveries",
            self.dead_letters.clone(),
        );
        self
    }

    /// Reads the local queue's depth at each scrape from now on (local mode calls this once).
    pub fn watch_queue(&self, queue: Arc<dyn QueueDepth>) {
        let _ = self.queue.set(queue);
    }

    /// Sets the warm pool's size (the pool calls this when it grows or shrinks).
    pub fn set_pool_size(&self, n: u64) {
        self.pool_size.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A delivery found its attempt's container already there.
    pub fn redelivery_found_container(&self) {
        self.redeliveries.inc();
    }

    /// Observes `event`, just applied at `now_ms`, which left the task as `task`: the phases it
    /// recorded (their time since the attempt's previous phase) and dead letters.
    pub fn observe(&self, event: &Event, task: &Task, now_ms: i64) {
        if matches!(event, Event::DeadLetter { .. }) {
            self.dead_letters.inc();
        }
        for (attempt, phase) in fresh(event, task, now_ms) {
            let took = task.clock(attempt).and_then(|c| c.duration_ms(phase));
            if let Some(ms) = took {
                self.phases
                    .get_or_create(&[("phase", phase.as_str())])
                    .observe(ms as f64 / 1000.0);
            }
        }
    }
}

/// The phases `event` recorded on `task` (a phase an attempt already had keeps its first time,
/// so a mark whose time is not the event's was there before and is not counted twice).
fn fresh(event: &Event, task: &Task, now_ms: i64) -> Vec<(u32, Phase)> {
    let has = |attempt: u32, phase: Phase, at: i64| {
        task.clock(attempt).and_then(|c| c.at(phase)) == Some(at)
    };
    match event {
        Event::Mark { attempt, marks } => marks
            .iter()
            .filter(|m| has(*attempt, m.phase, m.at_ms))
            .map(|m| (*attempt, m.phase))
            .collect(),
        _ => [Phase::Asked, Phase::FirstReport, Phase::Finished]
            .into_iter()
            .filter(|p| has(task.attempt, *p, now_ms))
            .map(|p| (task.attempt, p))
            .collect(),
    }
}

/// The exposition of `app`'s series, with the scrape-time gauges read now.
pub async fn render(app: &App) -> Result<String, MetricsError> {
    let m = app.metrics();
    let page = app
        .tasks()
        .list(&ListFilter {
            states: Vec::new(),
            limit: 1,
            cursor: None,
            offset: 0,
            active_since_ms: None,
            search: Default::default(),
        })
        .await?;
    for state in TaskState::ALL {
        let n = page.counts.get(&state).copied().unwrap_or(0);
        m.tasks
            .get_or_create(&[("state", state.as_str())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Some(q) = m.queue.get() {
        m.queue_depth
            .set(i64::try_from(q.depth().await?).unwrap_or(i64::MAX));
    }
    m.slots_in_use.set(app.slots().holders().len() as i64);
    if let Some(pool) = app.pool() {
        m.set_pool_size(pool.size_now() as u64);
    }
    let mut out = String::new();
    encode(&mut out, &m.registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Mark, Resources, TaskId};

    fn task() -> Task {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 128,
        };
        Task::new(TaskId::parse("m1").unwrap(), "w".into(), r, 1, 60, 1_000)
    }

    fn encoded(m: &Metrics) -> String {
        let mut out = String::new();
        encode(&mut out, &m.registry).unwrap();
        out
    }

    fn apply(m: &Metrics, t: &Task, e: Event, now: i64) -> Task {
        let next = t.apply(&e, now, &model::Rates::default()).unwrap();
        m.observe(&e, &next, now);
        next
    }

    /// Each phase is observed once, with its time since the previous one; a mark that was
    /// already there (a redelivery's) is not counted again.
    #[test]
    fn phases_are_observed_once_each() {
        let m = Metrics::default();
        let provision = Event::Provision {
            attempt: 1,
            container: "c".into(),
            token_hash: "h".into(),
        };
        let t = apply(&m, &task(), provision, 1_250);
        let mark = |phase, at_ms| Event::Mark {
            attempt: 1,
            marks: vec![Mark { phase, at_ms }],
        };
        let t = apply(&m, &t, mark(Phase::Started, 1_500), 1_500);
        let t = apply(&m, &t, mark(Phase::Started, 1_700), 1_700);
        apply(&m, &t, Event::Started { attempt: 1 }, 2_000);
        let text = encoded(&m);
        for (phase, sum) in [
            ("asked", "0.25"),
            ("started", "0.25"),
            ("first_report", "0.5"),
        ] {
            let count = format!("eda_phase_duration_seconds_count{{phase=\"{phase}\"}} 1\n");
            let total = format!("eda_phase_duration_seconds_sum{{phase=\"{phase}\"}} {sum}\n");
            assert!(text.contains(&count), "{count} in {text}");
            assert!(text.contains(&total), "{total} in {text}");
        }
    }

    #[test]
    fn counters_and_gauges_are_exposed() {
        let m = Metrics::default();
        m.redelivery_found_container();
        m.set_pool_size(3);
        apply(&m, &task(), Event::DeadLetter { reason: "x".into() }, 2_000);
        let text = encoded(&m);
        assert!(
            text.contains("eda_redeliveries_found_container_total 1\n"),
            "{text}"
        );
        assert!(text.contains("eda_dead_letters_total 1\n"), "{text}");
        assert!(text.contains("eda_pool_size 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
