//! Completion webhooks: a task that ends (or, with `--webhook-events all`, any state change)
//! becomes a CloudEvents 1.0 event ([`cloudevent`]) POSTed to every `--webhook-url`, signed
//! with HMAC-SHA256, retried with backoff, every attempt recorded.
//!
//! Two halves, so a slow or failing receiver never slows task processing:
//! - [`Webhooks::applied`], called by [`crate::tasks::Tasks::apply`] after each change is
//!   stored, only writes one row per URL to a durable outbox ([`outbox::Outbox`]: the SQLite
//!   file, a MongoDB collection, or memory). No network on this path.
//! - The dispatcher ([`dispatch`]) reads due rows and POSTs them in the background, with a cap
//!   on requests in flight per URL and a timeout on each. Rows left undelivered by a stop are
//!   picked up when the handler starts again; Functions mode also runs one pass from each
//!   `ReconcileTimer` invocation ([`Webhooks::drive`]).
//!
//! Delivery is at least once: a receiver that answered just before a crash may get the event
//! again, with the same CloudEvent `id` (receivers deduplicate on it). The outbox row is
//! written after the task's own write, so a crash between the two loses that one event.

pub mod cloudevent;
pub mod dispatch;
pub mod mongo;
pub mod outbox;
pub mod sqlite;

use crate::config::WebhookSettings;
use crate::store::StoreError;
use model::webhook::{Delivery, DeliveryStatus};
use model::{Event, Task, TaskId};
use outbox::{Outbox, Row};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

/// Requests in flight to one URL at most: a hanging receiver holds this many, never more.
pub const PER_URL: usize = 4;

/// Errors of the webhooks' own work (never of the task path, which only logs them).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The outbox could not be read or written.
    #[error("webhook outbox: {0}")]
    Outbox(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The webhooks of one handler: settings, outbox, and the dispatcher's state.
pub struct Webhooks {
    /// What to send where; with no URL, nothing is recorded or sent.
    settings: WebhookSettings,
    /// The CloudEvent `source` of every event (the API's tasks URL).
    source: String,
    /// Where deliveries are kept.
    outbox: Arc<dyn Outbox>,
    /// Wakes the dispatcher (a row was recorded, or a delivery finished).
    wake: Notify,
    /// The client of every POST (timeout per attempt, no redirects).
    client: reqwest::Client,
    /// Deliveries being POSTed now, so no pass starts one twice. Touched by the dispatcher
    /// only (`dispatch`). An async lock a pass holds from its outbox read to its last start:
    /// a delivery that ends meanwhile leaves the set only after the pass, so a pass never
    /// starts again a row it read as pending just before that row was delivered.
    in_flight: tokio::sync::Mutex<HashSet<String>>,
    /// The cap of requests in flight per URL ([`PER_URL`]).
    per_url: HashMap<String, Arc<Semaphore>>,
}

impl Webhooks {
    /// Webhooks per `settings`, keeping deliveries in `outbox`, naming `source` in each event.
    pub fn new(
        settings: WebhookSettings,
        source: String,
        outbox: Arc<dyn Outbox>,
    ) -> Result<Arc<Webhooks>, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        let per_url = settings
            .urls
            .iter()
            .map(|u| (u.clone(), Arc::new(Semaphore::new(PER_URL))))
            .collect();
        Ok(Arc::new(Webhooks {
            settings,
            source,
            outbox,
            wake: Notify::new(),
            client,
            in_flight: tokio::sync::Mutex::new(HashSet::new()),
            per_url,
        }))
    }

    /// True when at least one URL is configured.
    pub fn enabled(&self) -> bool {
        !self.settings.urls.is_empty()
    }

    /// Records the deliveries `event` calls for, now that it left `task` as it is: one per URL
    /// if the task entered a state the settings want. Never fails the caller: an outbox error
    /// is logged (the task's own change is already stored).
    pub async fn applied(&self, event: &Event, task: &Task, now_ms: i64) {
        if !self.enabled() {
            return;
        }
        let Some(kind) = self.wanted(event, task) else {
            return;
        };
        let rows = self.rows(&kind, task, now_ms);
        match self.outbox.record(&rows).await {
            Ok(()) => self.wake.notify_one(),
            Err(e) => {
                tracing::error!(task = %task.id, error = %e, "webhook deliveries could not be recorded; this event is not sent")
            }
        }
    }

    /// The event type `event` calls for, if any: a state change the settings want.
    fn wanted(&self, event: &Event, task: &Task) -> Option<String> {
        if matches!(event, Event::Mark { .. }) {
            return None;
        }
        // A note or a redelivery re-enters the same state: no change to announce.
        let n = task.transitions.len();
        let changed = n < 2 || task.transitions[n - 2].state != task.transitions[n - 1].state;
        changed.then(|| cloudevent::event_type(task.state, self.settings.events))?
    }

    /// One row per URL for one event (the same id and body for every URL).
    fn rows(&self, kind: &str, task: &Task, now_ms: i64) -> Vec<Row> {
        let event_id = format!(
            "{}-{}-{}",
            task.id,
            task.transitions.len(),
            crate::token::new_token().get(..12).unwrap_or_default()
        );
        let body = cloudevent::body(&event_id, kind, &self.source, task);
        self.settings
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| Row {
                delivery: Delivery {
                    id: format!("{event_id}-{i}"),
                    event_id: event_id.clone(),
                    event_type: kind.to_string(),
                    task_id: task.id.clone(),
                    url: url.clone(),
                    status: DeliveryStatus::Pending,
                    attempts: Vec::new(),
                    created_at_ms: now_ms,
                    next_at_ms: Some(now_ms),
                },
                body: body.clone(),
            })
            .collect()
    }

    /// Forgets the deliveries of removed tasks (also undelivered ones: the tasks are gone).
    /// Never fails the caller: an error is logged.
    pub async fn forget(&self, ids: &[TaskId]) {
        if let Err(e) = self.outbox.remove(ids).await {
            tracing::warn!(error = %e, "webhook deliveries of removed tasks could not be removed");
        }
    }

    /// A task's deliveries and their attempts, oldest first.
    pub async fn deliveries(&self, id: &TaskId) -> Result<Vec<Delivery>, StoreError> {
        self.outbox.for_task(id).await
    }
}
