//! The dispatcher: POSTs due deliveries in the background and records each attempt.
//!
//! Retries: a timeout, a connection error, a 5xx, 408 or 429 is tried again after the
//! backoff (`--webhook-backoff-ms`, doubling per attempt, at most [`MAX_DELAY`], plus up to
//! half of it again as jitter so many failed deliveries do not return at once), or after the
//! receiver's `Retry-After` (seconds or an HTTP date; RFC 9110, 10.2.3) when it sends one; any
//! other answer that is not 2xx is final. After `--webhook-max-attempts` the delivery is
//! `failed`.

use super::cloudevent::{self, CONTENT_TYPE, SIGNATURE_HEADER};
use super::outbox::Row;
use super::Webhooks;
use crate::clock::now_ms;
use model::webhook::{Delivery, DeliveryAttempt, DeliveryStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest pause between two attempts of a delivery.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// How often the dispatcher looks for due retries when nothing wakes it.
const POLL: Duration = Duration::from_millis(250);
/// Most deliveries one pass reads.
const BATCH: usize = 256;

/// What one attempt's outcome means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// Worth another try, after this long if the receiver said (`Retry-After`).
    Retry(Option<Duration>),
    /// Will not get better: give up now.
    Final,
}

/// The verdict on an answer with `status` (`None`: no answer: timeout or connection error).
pub fn verdict(status: Option<u16>, retry_after: Option<Duration>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        None | Some(408 | 429 | 500..=599) => Verdict::Retry(retry_after),
        Some(_) => Verdict::Final,
    }
}

/// The pause before attempt `done + 1` (after `done` attempts): `first * 2^(done-1)` capped at
/// [`MAX_DELAY`], plus a random share of up to half of it.
pub fn backoff(first: Duration, done: u32) -> Duration {
    let base = first
        .saturating_mul(1u32 << done.saturating_sub(1).min(20))
        .min(MAX_DELAY);
    let jitter = getrandom::u64().unwrap_or(0) % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter)
}

/// `Retry-After` as a duration from now: delay-seconds or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

impl Webhooks {
    /// The dispatcher: a pass whenever a row is recorded or a delivery ends, and every
    /// [`POLL`] for due retries, until `shutdown`. Undelivered rows of a previous run are due
    /// at once, so the first pass resumes them.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.enabled() {
            return;
        }
        loop {
            self.pass().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass: starts every due delivery that is not in flight and whose URL has room;
    /// returns their handles (they run on their own).
    pub async fn pass(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        // Held until every start below: see `Webhooks::in_flight`.
        let mut in_flight = self.in_flight.lock().await;
        let due = match self.outbox.due(now_ms(), BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox unreadable; the next pass retries");
                return Vec::new();
            }
        };
        let mut started = Vec::new();
        for row in due {
            let Some(sem) = self.per_url.get(&row.delivery.url) else {
                // A URL no longer configured: its rows stay as they are.
                continue;
            };
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                continue;
            };
            if !in_flight.insert(row.delivery.id.clone()) {
                continue;
            }
            let me = self.clone();
            started.push(tokio::spawn(async move {
                let id = row.delivery.id.clone();
                me.deliver(row).await;
                drop(permit);
                me.in_flight.lock().await.remove(&id);
                me.wake.notify_one();
            }));
        }
        started
    }

    /// One pass, waiting up to `budget` for the deliveries it started (Functions mode's
    /// `ReconcileTimer`: background work may be frozen between invocations). Returns how many
    /// were started.
    pub async fn drive(self: &Arc<Self>, budget: Duration) -> usize {
        if !self.enabled() {
            return 0;
        }
        let started = self.pass().await;
        let n = started.len();
        let _ = tokio::time::timeout(budget, futures::future::join_all(started)).await;
        n
    }

    /// One attempt of `row`, recorded with its verdict.
    async fn deliver(&self, row: Row) {
        let started_ms = now_ms();
        let clock = Instant::now();
        let (status, error, wait) = self.post(&row).await;
        let attempt = DeliveryAttempt {
            at_ms: started_ms,
            duration_ms: clock.elapsed().as_millis() as u64,
            status,
            error,
        };
        let d = self.judged(row.delivery, attempt, wait);
        if let Err(e) = self.outbox.save(&d).await {
            tracing::warn!(delivery = %d.id, error = %e, "webhook attempt not recorded; it will be tried again");
        }
    }

    /// POSTs the body: the status (if answered), the error (if any) and `Retry-After`.
    async fn post(&self, row: &Row) -> (Option<u16>, Option<String>, Option<Duration>) {
        let mut req = self
            .client
            .post(&row.delivery.url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(row.body.clone());
        if let Some(secret) = &self.settings.secret {
            req = req.header(
                SIGNATURE_HEADER,
                cloudevent::signature(secret, row.body.as_bytes()),
            );
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry_after);
                let error = (!status.is_success()).then(|| format!("HTTP {status}"));
                (Some(status.as_u16()), error, wait)
            }
            Err(e) if e.is_timeout() => (
                None,
                Some(format!(
                    "timed out after {} s",
                    self.settings.timeout.as_secs()
                )),
                None,
            ),
            Err(e) => (None, Some(describe(&e)), None),
        }
    }

    /// `d` after `attempt`: delivered, retried later, or failed.
    fn judged(
        &self,
        mut d: Delivery,
        attempt: DeliveryAttempt,
        wait: Option<Duration>,
    ) -> Delivery {
        let verdict = verdict(attempt.status, wait);
        let at = attempt.at_ms;
        d.attempts.push(attempt);
        let tries = d.attempts.len() as u32;
        (d.status, d.next_at_ms) = match verdict {
            Verdict::Delivered => (DeliveryStatus::Delivered, None),
            Verdict::Retry(_) if tries >= self.settings.max_attempts => {
                (DeliveryStatus::Failed, None)
            }
            Verdict::Retry(wait) => {
                let pause = wait
                    .map(|w| w.min(MAX_DELAY))
                    .unwrap_or_else(|| backoff(self.settings.backoff, tries));
                let next = now_ms().max(at) + pause.as_millis() as i64;
                (DeliveryStatus::Pending, Some(next))
            }
            Verdict::Final => (DeliveryStatus::Failed, None),
        };
        d
    }
}

/// A transport error with its causes (reqwest's own text says little: "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(Some(204), None), Verdict::Delivered);
        assert_eq!(verdict(None, None), Verdict::Retry(None));
        assert_eq!(verdict(Some(503), None), Verdict::Retry(None));
        let wait = Some(Duration::from_secs(3));
        assert_eq!(verdict(Some(429), wait), Verdict::Retry(wait));
        assert_eq!(verdict(Some(408), None), Verdict::Retry(None));
        assert_eq!(verdict(Some(400), None), Verdict::Final);
        assert_eq!(verdict(Some(404), None), Verdict::Final);
        assert_eq!(verdict(Some(301), None), Verdict::Final);
    }

    #[test]
    fn backoff_doubles_with_at_most_half_again_of_jitter_and_a_cap() {
        let first = Duration::from_millis(100);
        for (done, base) in [(1u32, 100u64), (2, 200), (3, 400)] {
            let d = backoff(first, done).as_millis() as u64;
            assert!((base..=base + base / 2).contains(&d), "{done}: {d}");
        }
        assert!(backoff(first, 40) <= MAX_DELAY + MAX_DELAY / 2);
        assert!(backoff(first, 40) >= MAX_DELAY);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a past date: now"
        );
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let d = retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(retry_after("soon"), None);
    }
}
