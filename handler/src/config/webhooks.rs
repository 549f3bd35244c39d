//! Completion webhooks' flags (`crate::webhooks`): where to POST, the signing secret, which
//! changes, and how patiently. Resolved once into [`WebhookSettings`].

use super::ConfigError;
use clap::{Args, ValueEnum};
use std::time::Duration;

/// Most webhook URLs.
pub const MAX_URLS: usize = 16;
/// Most delivery attempts of one event to one URL.
pub const MAX_ATTEMPTS: u32 = 50;
/// Longest timeout of one attempt, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// Which task changes are POSTed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookEvents {
    /// Only a task reaching a terminal state (done, failed, timed out, cancelled, dead-lettered).
    Terminal,
    /// Every state change (each entry of the task's timeline).
    All,
}

/// The webhook flags, shared by local and functions mode.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// URL to POST a CloudEvent to when a task ends (http or https); repeat for several.
    /// None by default: no webhooks.
    #[arg(long = "webhook-url", env = "EDA_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook_urls: Vec<String>,
    /// Secret of the HMAC-SHA256 signature of each body (`X-EDA-Signature: sha256=<hex>`).
    /// Without it events are sent unsigned. Never logged or printed.
    #[arg(long, env = "EDA_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Which changes are sent: `terminal` (default) or `all` state changes.
    #[arg(long, env = "EDA_WEBHOOK_EVENTS", value_enum, default_value_t = WebhookEvents::Terminal)]
    pub webhook_events: WebhookEvents,
    /// Seconds one delivery attempt may take (connect, send, answer).
    #[arg(long, env = "EDA_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
    /// Attempts of one event to one URL before the delivery is marked failed.
    #[arg(long, env = "EDA_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt (with jitter), at most 5 minutes.
    #[arg(long, env = "EDA_WEBHOOK_BACKOFF_MS", default_value_t = 1000)]
    pub webhook_backoff_ms: u64,
}

/// Resolved webhook settings.
#[derive(Clone, PartialEq)]
pub struct WebhookSettings {
    /// Where events go; empty: no webhooks.
    pub urls: Vec<String>,
    /// The HMAC key, if events are signed.
    pub secret: Option<String>,
    /// Which changes are sent.
    pub events: WebhookEvents,
    /// Longest one attempt may take.
    pub timeout: Duration,
    /// Attempts per delivery.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    /// Hand-written so the secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "set"))
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl WebhookArgs {
    /// Checks the flags: http(s) URLs with a host, within the limits.
    pub fn resolve(&self) -> Result<WebhookSettings, ConfigError> {
        let bad = |m: String| Err(ConfigError::OutOfRange(m));
        let urls: Vec<String> = self
            .webhook_urls
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.len() > MAX_URLS {
            return bad(format!("--webhook-url: at most {MAX_URLS} URLs"));
        }
        for u in &urls {
            check_url(u)?;
        }
        if self.webhook_timeout_secs == 0 || self.webhook_timeout_secs > MAX_TIMEOUT_SECS {
            return bad(format!(
                "--webhook-timeout-secs must be 1..={MAX_TIMEOUT_SECS}"
            ));
        }
        if self.webhook_max_attempts == 0 || self.webhook_max_attempts > MAX_ATTEMPTS {
            return bad(format!("--webhook-max-attempts must be 1..={MAX_ATTEMPTS}"));
        }
        Ok(WebhookSettings {
            urls,
            secret: self.webhook_secret.clone().filter(|s| !s.is_empty()),
            events: self.webhook_events,
            timeout: Duration::from_secs(self.webhook_timeout_secs),
            max_attempts: self.webhook_max_attempts,
            backoff: Duration::from_millis(self.webhook_backoff_ms.clamp(10, 300_000)),
        })
    }
}

/// An absolute http or https URL with a host (loopback allowed: a local receiver is common).
fn check_url(u: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(u)
        .map_err(|e| ConfigError::OutOfRange(format!("--webhook-url {u}: {e}")))?;
    let ok = matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some();
    if !ok {
        return Err(ConfigError::OutOfRange(format!(
            "--webhook-url {u}: only http:// and https:// URLs with a host"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(urls: &[&str]) -> WebhookArgs {
        WebhookArgs {
            webhook_urls: urls.iter().map(|s| s.to_string()).collect(),
            webhook_secret: Some("s3cret".into()),
            webhook_events: WebhookEvents::Terminal,
            webhook_timeout_secs: 10,
            webhook_max_attempts: 8,
            webhook_backoff_ms: 1000,
        }
    }

    #[test]
    fn urls_are_checked_and_the_secret_never_printed() {
        let ok = args(&["http://127.0.0.1:9/hook", "https://example.com/x"])
            .resolve()
            .unwrap();
        assert_eq!(ok.urls.len(), 2);
        assert!(!format!("{ok:?}").contains("s3cret"));
        for bad in ["ftp://x/y", "not a url", "file:///etc/passwd"] {
            let e = args(&[bad]).resolve().unwrap_err().to_string();
            assert!(e.contains("--webhook-url"), "{e}");
        }
        let mut a = args(&[]);
        a.webhook_max_attempts = 0;
        assert!(a
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("--webhook-max-attempts"));
    }
}
