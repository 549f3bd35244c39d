//! Completion webhooks as the API shows them (`GET /api/tasks/{id}/webhooks`): one
//! [`Delivery`] per event and URL, with every [`DeliveryAttempt`].

use crate::task::TaskId;
use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: waiting for its first attempt or its next retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: a final 4xx, or every attempt failed.
    Failed,
}

impl DeliveryStatus {
    /// The wire and database name (`pending`, `delivered`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status of its database name.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One POST of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When it started (ms since the epoch).
    pub at_ms: i64,
    /// How long it took, in ms (until the answer, the error or the timeout).
    pub duration_ms: u64,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong (timeout, connection error, the status's meaning), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One event to one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// This delivery's id (the event's id and the URL's position).
    pub id: String,
    /// The CloudEvent's `id`: the same for every URL and every retry of the event.
    pub event_id: String,
    /// The CloudEvent's `type`, e.g. `com.event-driven-aci.task.done`.
    pub event_type: String,
    /// The task.
    pub task_id: TaskId,
    /// Where it is POSTed.
    pub url: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When it was recorded (ms since the epoch).
    pub created_at_ms: i64,
    /// When the next attempt is due (pending deliveries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at_ms: Option<i64>,
}

impl Delivery {
    /// The newest attempt's error, if it failed.
    pub fn last_error(&self) -> Option<&str> {
        self.attempts.last()?.error.as_deref()
    }
}

/// Answer of `GET /api/tasks/{id}/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliveries {
    /// The task's deliveries, oldest first.
    pub deliveries: Vec<Delivery>,
}
