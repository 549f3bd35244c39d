//! [`RuntimeError`]: what went wrong in a container runtime, sorted by what the caller should do
//! about it, with the error it came from (bollard's, reqwest's through [`AciError`], an
//! `io::Error`) kept as its [`std::error::Error::source`].
//!
//! The variants are the decisions the spawner and the delivery policy make: wait and retry
//! without spending a delivery ([`RuntimeError::is_transient`]), wait at least this long
//! ([`RuntimeError::retry_after`]), or give up on the message. The cause is never flattened to a
//! string: a caller can downcast it (`source()?.downcast_ref::<bollard::errors::Error>()`) and
//! an error reporter can walk the chain. The `Display` text repeats the cause's words after
//! ours, because task reasons and log lines show only the top error.

use super::aci::AciError;
use std::time::Duration;

/// The error a [`RuntimeError`] came from, when it came from a library or the OS.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of any runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime cannot be reached right now (daemon down, network). Transient: the spawner
    /// waits and retries without spending one of the message's deliveries.
    #[error("container runtime unavailable: {message}{}", cause_text(.source))]
    Unavailable {
        /// What could not be reached, in our words.
        message: String,
        /// The client's error, when there was one.
        #[source]
        source: Option<Cause>,
    },
    /// The image does not exist and cannot be had. Permanent for this message.
    #[error("image not found: {message}{}", cause_text(.source))]
    ImageMissing {
        /// Which image, in the runtime's words.
        message: String,
        /// The client's error, when there was one.
        #[source]
        source: Option<Cause>,
    },
    /// The runtime refused the container (bad spec, no permission). Permanent for this message.
    #[error("container rejected: {message}{}", cause_text(.source))]
    Rejected {
        /// Why, in the runtime's words.
        message: String,
        /// The client's error, when there was one.
        #[source]
        source: Option<Cause>,
    },
    /// The runtime asked us to slow down: ARM throttling (429 with `Retry-After`) or a regional
    /// container-group quota reached. Transient and never the message's fault: the spawn and
    /// delivery policy waits at least `retry_after` (when given) and tries again, without
    /// treating the message as poison.
    #[error("container runtime throttled: {message}{}", cause_text(.source))]
    Throttled {
        /// What Azure said (code and message).
        message: String,
        /// How long Azure asked us to wait, when it said.
        retry_after: Option<Duration>,
        /// Azure's answer.
        #[source]
        source: Option<Cause>,
    },
    /// The deployment is missing something only an operator can add, e.g. the subscription is
    /// not registered for the `Microsoft.ContainerInstance` resource provider (ARM 409
    /// `MissingSubscriptionRegistration`). Every spawn fails the same way until it is fixed, so
    /// it is transient for the message (not poison) and the text says what to run.
    #[error("container runtime not set up: {message}{}", cause_text(.source))]
    NotSetUp {
        /// What to do, for the operator.
        message: String,
        /// Azure's answer.
        #[source]
        source: Option<Cause>,
    },
    /// No container has that name (for a call that needs one, such as reading its logs).
    #[error("no container {0}")]
    NoSuchContainer(String),
    /// The Docker Engine answered an error none of the variants above covers.
    #[error("docker: {0}")]
    Docker(#[source] bollard::errors::Error),
    /// Azure (ARM, Azure Monitor, the managed identity) answered something none of the variants
    /// above covers: a misconfigured identity, a body without the documented shape.
    #[error("azure: {0}")]
    Azure(#[source] AciError),
    /// A file or a process of the process runtime, or a build step of an image.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`cannot create <log file>`).
        what: String,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
}

/// `": <cause>"`, or nothing.
fn cause_text(source: &Option<Cause>) -> String {
    source.as_ref().map_or(String::new(), |s| format!(": {s}"))
}

impl RuntimeError {
    /// [`RuntimeError::Unavailable`] with our words only.
    pub fn unavailable(message: impl Into<String>) -> RuntimeError {
        RuntimeError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`RuntimeError::Unavailable`] caused by a client's error.
    pub fn unavailable_by(message: impl Into<String>, source: impl Into<Cause>) -> RuntimeError {
        RuntimeError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// [`RuntimeError::ImageMissing`] with the runtime's words only.
    pub fn image_missing(message: impl Into<String>) -> RuntimeError {
        RuntimeError::ImageMissing {
            message: message.into(),
            source: None,
        }
    }

    /// [`RuntimeError::Rejected`] with the runtime's words only.
    pub fn rejected(message: impl Into<String>) -> RuntimeError {
        RuntimeError::Rejected {
            message: message.into(),
            source: None,
        }
    }

    /// [`RuntimeError::NotSetUp`] with the operator's instructions only.
    pub fn not_set_up(message: impl Into<String>) -> RuntimeError {
        RuntimeError::NotSetUp {
            message: message.into(),
            source: None,
        }
    }

    /// [`RuntimeError::Io`]: `what` failed with `source`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            what: what.into(),
            source,
        }
    }

    /// True when retrying later may work without anything changing in the message: the
    /// runtime is down, throttling us, or waiting for an operator ([`RuntimeError::NotSetUp`]).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unavailable { .. }
                | RuntimeError::Throttled { .. }
                | RuntimeError::NotSetUp { .. }
        )
    }

    /// The least time to wait before trying again, when the runtime said (`Retry-After`), or a
    /// minute for an operator's fix ([`RuntimeError::NotSetUp`]): retrying sooner only spends
    /// ARM's request budget.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RuntimeError::Throttled { retry_after, .. } => *retry_after,
            RuntimeError::NotSetUp { .. } => Some(Duration::from_secs(60)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn the_cause_is_kept_and_shown_once_after_our_words() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = RuntimeError::unavailable_by("Docker Engine at /var/run/docker.sock", io);
        assert_eq!(
            e.to_string(),
            "container runtime unavailable: Docker Engine at /var/run/docker.sock: refused"
        );
        let cause = e.source().expect("a source");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("still an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(e.is_transient());
        let plain = RuntimeError::rejected("bad spec");
        assert_eq!(plain.to_string(), "container rejected: bad spec");
        assert!(plain.source().is_none() && !plain.is_transient());
    }

    #[test]
    fn waits_are_what_the_runtime_asked_for() {
        let throttled = RuntimeError::Throttled {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(7)),
            source: None,
        };
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
        assert!(throttled.is_transient());
        let setup = RuntimeError::not_set_up("register");
        assert_eq!(setup.retry_after(), Some(Duration::from_secs(60)));
        assert_eq!(RuntimeError::unavailable("x").retry_after(), None);
        let io = RuntimeError::io("cannot create x.log", std::io::ErrorKind::NotFound.into());
        assert!(!io.is_transient());
        assert!(io.source().is_some());
    }
}
