//! The event a webhook POSTs: a CloudEvents 1.0 event in the structured JSON mode, and its
//! HMAC-SHA256 signature.
//!
//! Sources (github.com/cloudevents/spec, v1.0.2):
//! - `cloudevents/spec.md`, "Context Attributes": REQUIRED `id` (unique per producer; the same
//!   for a retried event: "consumers MAY assume that Events with identical source and id are
//!   duplicates"), `source` (a URI-reference, absolute RECOMMENDED), `specversion` ("1.0"),
//!   `type` (reverse-DNS prefixed, RECOMMENDED); OPTIONAL `subject`, `time` (RFC 3339),
//!   `datacontenttype` (RFC 2046).
//! - `cloudevents/formats/json-format.md`, section 3 "Envelope": attributes are top-level
//!   members; with a JSON `datacontenttype` the data goes in `data` as JSON itself (3.1.1).
//! - `cloudevents/bindings/http-protocol-binding.md`, 3.2 "Structured Content Mode": the body
//!   is the event, `Content-Type: application/cloudevents+json`.
//! - `cloudevents/extensions/sequence.md`: the `sequence` extension attribute (a string that
//!   orders events of one source), here the task's transition number.

use crate::config::WebhookEvents;
use hmac::{Hmac, KeyInit, Mac};
use model::{Task, TaskState};
use sha2_v011::Sha256;

/// `Content-Type` of a structured-mode CloudEvent (http-protocol-binding.md, 3.2).
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The header that carries the signature: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-EDA-Signature";
/// Prefix of every event type (spec.md, `type`: "SHOULD be prefixed with a reverse-DNS name").
pub const TYPE_PREFIX: &str = "com.event-driven-aci.task.";

/// The event type of a task that entered `state`, if `events` wants it: a terminal state's own
/// (`.done`, `.failed`, `.timed_out`, `.cancelled`, `.dead_lettered`), any other `.changed`
/// (with `all` only).
pub fn event_type(state: TaskState, events: WebhookEvents) -> Option<String> {
    let end = match state {
        TaskState::Done => "done",
        TaskState::Failed => "failed",
        TaskState::TimedOut => "timed_out",
        TaskState::Cancelled => "cancelled",
        TaskState::DeadLettered => "dead_lettered",
        _ if events == WebhookEvents::All => "changed",
        _ => return None,
    };
    Some(format!("{TYPE_PREFIX}{end}"))
}

/// The event's JSON body for `task` as it is now: `data` is the task without its timeline
/// (with its result), `subject` its id, `time` when it entered its state, `sequence` its
/// transition number (so a receiver can order the events of one task).
pub fn body(id: &str, kind: &str, source: &str, task: &Task) -> String {
    let sequence = task.transitions.len();
    let at = task
        .transitions
        .last()
        .map_or(task.created_at_ms, |t| t.at_ms);
    let mut data = serde_json::to_value(task).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.remove("transitions");
    }
    let event = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": kind,
        "subject": task.id.as_str(),
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "sequence": sequence.to_string(),
        "data": data,
    });
    event.to_string()
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length (RFC 2104, section 2), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds, e.g. `2026-12-03T09:44:31.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, "chrono-Compatible Low-Level Date Algorithms").
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Resources, TaskId};

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_291_071_000), "2026-12-03T09:44:31.000Z");
    }

    #[test]
    fn types_follow_the_setting() {
        let t = |s, e| event_type(s, e);
        assert_eq!(
            t(TaskState::Done, WebhookEvents::Terminal).as_deref(),
            Some("com.event-driven-aci.task.done")
        );
        assert_eq!(t(TaskState::InProgress, WebhookEvents::Terminal), None);
        assert_eq!(
            t(TaskState::InProgress, WebhookEvents::All).as_deref(),
            Some("com.event-driven-aci.task.changed")
        );
        assert_eq!(
            t(TaskState::DeadLettered, WebhookEvents::All).as_deref(),
            Some("com.event-driven-aci.task.dead_lettered")
        );
    }

    #[test]
    fn the_body_is_a_structured_cloudevent_without_the_timeline() {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 64,
        };
        let task = Task::new(TaskId::parse("ce1").unwrap(), "w".into(), r, 1, 60, 1000);
        let body = body(
            "ev-1",
            "com.event-driven-aci.task.changed",
            "http://h/api/tasks",
            &task,
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["subject"], "ce1");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["sequence"], "1");
        assert_eq!(v["data"]["id"], "ce1");
        assert!(v["data"].get("transitions").is_none(), "{v}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_hex() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
