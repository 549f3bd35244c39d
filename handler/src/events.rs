//! The broadcast bus behind `GET /api/events` (Server-Sent Events).
//!
//! Every change the [`crate::tasks::Tasks`] service writes is published here once, already
//! serialised as an SSE frame, so a thousand dashboards cost one serialisation per change.
//! A subscriber that falls behind gets a `resync` frame and reloads the list, instead of
//! holding the bus back.
//!
//! The bus also owns the handler's Prometheus series ([`Metrics`]): every applied event passes
//! here once ([`Events::applied`]), so the series see exactly what the dashboard sees.

use crate::metrics::Metrics;
use model::{ClearedEvent, Event, Task, TaskEvent};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many frames a slow subscriber may fall behind before it is told to resync.
const BACKLOG: usize = 4096;

/// A cloneable handle on the bus.
#[derive(Clone)]
pub struct Events {
    /// The sending half; receivers are made per subscriber by [`Events::subscribe`].
    tx: broadcast::Sender<Arc<str>>,
    /// The Prometheus series, fed by [`Events::applied`] and read by `GET /metrics`.
    metrics: Arc<Metrics>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
            metrics: Arc::default(),
        }
    }
}

impl Events {
    /// Announces `task`, as `event` applied at `now_ms` left it, and observes it in the series.
    pub fn applied(&self, event: &Event, task: &Task, now_ms: i64) {
        self.metrics.observe(event, task, now_ms);
        self.task(task);
    }

    /// The Prometheus series.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Publishes a task's new state (without its timeline, phase clock and result, to keep
    /// frames small; `GET /api/tasks/{id}` has them).
    pub fn task(&self, task: &Task) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut slim = task.clone();
        slim.transitions.clear();
        slim.phases.clear();
        slim.result = None;
        self.send("task", &TaskEvent { task: slim });
    }

    /// Publishes that tasks were removed.
    pub fn cleared(&self, tasks: &[Task]) {
        let ids = tasks.iter().map(|t| t.id.clone()).collect();
        self.send("cleared", &ClearedEvent { ids });
    }

    fn send<T: serde::Serialize>(&self, name: &str, body: &T) {
        let json = serde_json::to_string(body).unwrap_or_default();
        let _ = self.tx.send(frame(name, &json).into());
    }

    /// A new subscription, receiving frames published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// One SSE frame: `event: <name>` and one `data:` line (JSON never contains a raw newline).
pub fn frame(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}
