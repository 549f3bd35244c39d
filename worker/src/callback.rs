//! Reporting the task's state to the handler (`POST /api/tasks/{id}/state`), with retries.
//!
//! The handler may be briefly away (restarting, a cold Functions host), so connect errors and
//! 5xx answers are retried with exponential backoff; a 4xx answer will not change on retry (bad
//! token, illegal transition) and is only printed. The token goes in the `Authorization` header
//! and nowhere else: every message this module prints is scrubbed of it first.

use model::StateReport;
use std::time::Duration;

/// First pause before a retry.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Total time spent pausing before the worker gives up on one report.
pub const BUDGET: Duration = Duration::from_secs(60);
/// Longest one request may take (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The pauses between tries: `first`, doubling up to `max`, until their sum would pass `budget`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    left: Duration,
}

impl Backoff {
    /// A schedule starting at `first`, capped at `max`, summing to at most `budget`.
    pub fn new(first: Duration, max: Duration, budget: Duration) -> Backoff {
        Backoff {
            next: first,
            max,
            left: budget,
        }
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(FIRST_DELAY, MAX_DELAY, BUDGET)
    }
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.left.is_zero() {
            return None;
        }
        let delay = self.next.min(self.max).min(self.left);
        self.left -= delay;
        self.next = (self.next * 2).min(self.max);
        Some(delay)
    }
}

/// Now, in ms since the Unix epoch (the unit of the phase clock the reports carry).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How one report ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler took it (2xx).
    Accepted,
    /// The handler refused it with this 4xx status; retrying would not help.
    Rejected(u16),
    /// Every try failed (connect errors, 5xx) until the backoff budget ran out.
    GaveUp(String),
    /// No `CALLBACK_URL`: running standalone.
    Skipped,
}

/// Sends state reports for one task.
pub struct Reporter {
    /// Shared HTTP client (keeps the connection between the two reports).
    agent: ureq::Agent,
    /// Where to send; `None` when running standalone.
    url: Option<String>,
    /// The bearer token; only ever put in the header.
    token: Option<String>,
    /// The retry schedule each report starts from.
    backoff: Backoff,
}

impl Reporter {
    /// A reporter for `url` with `token`, retrying on the `backoff` schedule.
    pub fn new(url: Option<String>, token: Option<String>, backoff: Backoff) -> Reporter {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            // The handler is called directly; no proxy is set up inside task containers.
            .proxy(None)
            .build()
            .into();
        Reporter {
            agent,
            url,
            token,
            backoff,
        }
    }

    /// Sends `report`, retrying transient failures; prints what happened to stderr.
    pub fn send(&self, report: &StateReport) -> Outcome {
        let Some(url) = self.url.as_deref() else {
            return Outcome::Skipped;
        };
        let body = serde_json::to_string(report).expect("a StateReport always serialises");
        let mut delays = self.backoff.clone();
        loop {
            let why = match self.try_once(url, &body) {
                Ok(status) if (200..300).contains(&status) => return Outcome::Accepted,
                Ok(status) if (400..500).contains(&status) => {
                    eprintln!("worker: {:?} report refused: HTTP {status}", report.state);
                    return Outcome::Rejected(status);
                }
                Ok(status) => format!("HTTP {status}"),
                Err(e) => self.scrub(&e.to_string()),
            };
            match delays.next() {
                Some(d) => {
                    eprintln!(
                        "worker: {:?} report failed ({why}); retrying in {d:?}",
                        report.state
                    );
                    std::thread::sleep(d);
                }
                None => {
                    eprintln!(
                        "worker: {:?} report failed ({why}); giving up",
                        report.state
                    );
                    return Outcome::GaveUp(why);
                }
            }
        }
    }

    /// One POST; the HTTP status, or the transport error.
    fn try_once(&self, url: &str, body: &str) -> Result<u16, ureq::Error> {
        let mut req = self.agent.post(url).content_type("application/json");
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let resp = req.send(body)?;
        Ok(resp.status().as_u16())
    }

    /// `text` with the token replaced, so no error message can leak it.
    fn scrub(&self, text: &str) -> String {
        match self.token.as_deref() {
            Some(t) if !t.is_empty() => text.replace(t, "<redacted>"),
            _ => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let d: Vec<_> = Backoff::default().take(8).collect();
        let ms: Vec<u128> = d.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn backoff_stops_at_the_budget() {
        let total: Duration = Backoff::default().sum();
        assert_eq!(total, BUDGET);
        let last = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(350),
        );
        let ms: Vec<u128> = last.map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 50]);
    }

    #[test]
    fn zero_budget_means_one_try() {
        assert_eq!(
            Backoff::new(FIRST_DELAY, MAX_DELAY, Duration::ZERO).next(),
            None
        );
    }

    #[test]
    fn standalone_reports_nothing() {
        let r = Reporter::new(None, Some("t".into()), Backoff::default());
        let report = StateReport {
            state: model::ReportedState::InProgress,
            container: None,
            exit_code: None,
            reason: None,
            first_output_at_ms: None,
            exited_at_ms: None,
            result: None,
        };
        assert_eq!(r.send(&report), Outcome::Skipped);
    }

    #[test]
    fn scrub_hides_the_token() {
        let r = Reporter::new(None, Some("abc123".into()), Backoff::default());
        assert_eq!(r.scrub("bad header abc123!"), "bad header <redacted>!");
    }

    #[test]
    fn connection_refused_is_retried_then_given_up() {
        // A port that was just free: nothing listens, so every try is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let budget = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_millis(5),
        );
        let r = Reporter::new(
            Some(format!("http://127.0.0.1:{port}/api/tasks/x/state")),
            None,
            budget,
        );
        let report = StateReport {
            state: model::ReportedState::Done,
            container: None,
            exit_code: Some(0),
            reason: None,
            first_output_at_ms: Some(1),
            exited_at_ms: Some(2),
            result: None,
        };
        assert!(matches!(r.send(&report), Outcome::GaveUp(_)));
    }
}
