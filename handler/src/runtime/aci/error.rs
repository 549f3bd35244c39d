//! [`AciError`]: what went wrong talking to Azure (ARM, Azure Monitor, the managed identity),
//! and the one place it is sorted into a [`RuntimeError`] by what the caller should do about
//! it (module docs of `aci`, "Errors"), keeping it as the source.

use crate::runtime::RuntimeError;
use reqwest::StatusCode;
use std::time::Duration;

/// Errors talking to Azure, before they are mapped to [`RuntimeError`] in one place.
#[derive(Debug, thiserror::Error)]
pub enum AciError {
    /// No managed identity is configured (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER` missing or
    /// not a URL).
    #[error("no managed identity: {what}{}", .source.as_ref().map_or(String::new(), |e| format!(": {e}")))]
    NoIdentity {
        /// What is missing.
        what: String,
        /// `azure_identity`'s error, when it refused the configuration.
        #[source]
        source: Option<azure_core::Error>,
    },
    /// The identity endpoint refused or answered something unreadable.
    #[error("managed identity token: {0}")]
    Identity(#[source] azure_core::Error),
    /// The identity endpoint did not answer, or answered 429/5xx: worth trying again.
    #[error("managed identity endpoint unavailable: {0}")]
    IdentityUnavailable(#[source] azure_core::Error),
    /// Azure answered an error status with its `{"error": {code, message}}` body.
    #[error("{status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// ARM error code, e.g. `InaccessibleImage`.
        code: String,
        /// ARM error message.
        message: String,
        /// The answer's `Retry-After`, if it had one (ARM sends it with 429).
        retry_after: Option<Duration>,
    },
    /// The long-running create operation ended `Failed` or `Canceled`.
    #[error("container group creation {status}: {code}: {message}")]
    OperationFailed {
        /// Final status of the operation.
        status: String,
        /// Error code of the operation.
        code: String,
        /// Error message of the operation.
        message: String,
    },
    /// The request did not get an answer (connection refused, timeout).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// A body did not have the documented shape.
    #[error("unexpected response: {0}")]
    Decode(#[from] serde_json::Error),
    /// The group went away while `create` waited for it (deleted by someone else).
    #[error("container group {0} vanished while being created")]
    Vanished(String),
    /// The standby pool's container group profile cannot be used (`standby`).
    #[error("standby pool: {0}")]
    Standby(String),
}

/// ARM's code when the subscription is not registered for a resource provider:
/// https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-register-resource-provider
pub const NOT_REGISTERED: &str = "MissingSubscriptionRegistration";

/// What an operator runs when [`NOT_REGISTERED`] comes back.
pub const REGISTER_HINT: &str = "the subscription is not registered for the Microsoft.ContainerInstance resource provider; \
an administrator must run `az provider register --namespace Microsoft.ContainerInstance` once (the Function App's role cannot)";

/// How long to wait on a quota error that came without `Retry-After`: the regional quota frees
/// up as our own finished groups are deleted, which the reconciler does every timer tick.
const QUOTA_WAIT: Duration = Duration::from_secs(30);

/// ARM error codes (or words in the message) that mean a container-group quota is reached.
/// Quotas: https://learn.microsoft.com/azure/container-instances/container-instances-resource-and-quota-limits;
/// the message seen when it is reached ("container group quota 'ContainerGroups' exceeded in
/// region", code `ServiceUnavailable`): MicrosoftDocs/SupportArticles-docs
/// `support/azure/azure-container-instances/configuration-setup/service-unavailable-container-group-quota-exceeded.md`.
fn is_quota_error(code: &str, message: &str) -> bool {
    let codes = [
        "ContainerGroupQuotaReached",
        "QuotaExceeded",
        "RegionalQuotaExceeded",
    ];
    codes.iter().any(|c| code.eq_ignore_ascii_case(c))
        || message.to_ascii_lowercase().contains("quota")
}

/// What a [`RuntimeError`] made from an [`AciError`] is, before the error moves into it.
enum Class {
    Unavailable,
    NotSetUp,
    Throttled(Option<Duration>),
    ImageMissing,
    Rejected,
    Other,
}

/// Sorts an Azure error by what the caller should do about it.
fn classify(e: &AciError) -> Class {
    match e {
        AciError::Transport(_) | AciError::IdentityUnavailable(_) => Class::Unavailable,
        AciError::Status { code, .. } if code == NOT_REGISTERED => Class::NotSetUp,
        AciError::Status {
            status,
            retry_after,
            ..
        } if *status == StatusCode::TOO_MANY_REQUESTS => Class::Throttled(*retry_after),
        AciError::Status {
            code,
            message,
            retry_after,
            ..
        } if is_quota_error(code, message) => Class::Throttled(retry_after.or(Some(QUOTA_WAIT))),
        AciError::OperationFailed { code, message, .. } if is_quota_error(code, message) => {
            Class::Throttled(Some(QUOTA_WAIT))
        }
        AciError::Status { status, .. }
            if *status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() =>
        {
            Class::Unavailable
        }
        AciError::Status { code, .. } | AciError::OperationFailed { code, .. }
            if is_image_error(code) =>
        {
            Class::ImageMissing
        }
        AciError::Status { status, .. } if status.is_client_error() => Class::Rejected,
        AciError::OperationFailed { .. } => Class::Rejected,
        AciError::NoIdentity { .. }
        | AciError::Identity(_)
        | AciError::Status { .. }
        | AciError::Decode(_)
        | AciError::Vanished(_)
        | AciError::Standby(_) => Class::Other,
    }
}

impl AciError {
    /// Whether the [`RuntimeError`] this becomes is transient (`RuntimeError::is_transient`).
    pub fn is_transient(&self) -> bool {
        matches!(
            classify(self),
            Class::Unavailable | Class::NotSetUp | Class::Throttled(_)
        )
    }
}

impl From<AciError> for RuntimeError {
    /// Sorts `e` ([`classify`]) and keeps it as the source.
    fn from(e: AciError) -> RuntimeError {
        let class = classify(&e);
        let message = String::from("Azure");
        match class {
            Class::Unavailable => RuntimeError::unavailable_by(message, e),
            Class::NotSetUp => RuntimeError::NotSetUp {
                message: REGISTER_HINT.into(),
                source: Some(e.into()),
            },
            Class::Throttled(retry_after) => RuntimeError::Throttled {
                message,
                retry_after,
                source: Some(e.into()),
            },
            Class::ImageMissing => RuntimeError::ImageMissing {
                message,
                source: Some(e.into()),
            },
            Class::Rejected => RuntimeError::Rejected {
                message,
                source: Some(e.into()),
            },
            Class::Other => RuntimeError::Azure(e),
        }
    }
}

/// Sorts a credential error: no answer, throttling and server errors are transient.
pub(super) fn identity_error(e: azure_core::Error) -> AciError {
    let transient = match e.kind() {
        azure_core::error::ErrorKind::Io => true,
        azure_core::error::ErrorKind::HttpResponse { status, .. } => {
            status.is_server_error() || *status == azure_core::StatusCode::TooManyRequests
        }
        _ => false,
    };
    match transient {
        true => AciError::IdentityUnavailable(e),
        false => AciError::Identity(e),
    }
}

/// ARM error codes that mean the image cannot be had (wrong name, no pull permission).
fn is_image_error(code: &str) -> bool {
    [
        "InaccessibleImage",
        "ImageNotFound",
        "RegistryErrorResponse",
    ]
    .iter()
    .any(|c| code.eq_ignore_ascii_case(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_errors_without_an_answer_or_with_5xx_are_transient() {
        use azure_core::error::ErrorKind;
        let kind = |k: ErrorKind| RuntimeError::from(identity_error(k.into_error()));
        let status = |s| ErrorKind::http_response(s, None);
        assert!(kind(ErrorKind::Io).is_transient());
        assert!(kind(status(azure_core::StatusCode::ServiceUnavailable)).is_transient());
        assert!(kind(status(azure_core::StatusCode::TooManyRequests)).is_transient());
        assert!(!kind(status(azure_core::StatusCode::Forbidden)).is_transient());
        assert!(!kind(ErrorKind::Credential).is_transient());
    }

    #[test]
    fn errors_map_to_runtime_errors() {
        let status = |status: StatusCode, code: &str| AciError::Status {
            status,
            code: code.into(),
            message: "m".into(),
            retry_after: None,
        };
        let e = |x: AciError| RuntimeError::from(x);
        assert!(e(status(StatusCode::TOO_MANY_REQUESTS, "x")).is_transient());
        assert!(e(status(StatusCode::BAD_GATEWAY, "x")).is_transient());
        assert!(matches!(
            e(status(StatusCode::BAD_REQUEST, "InaccessibleImage")),
            RuntimeError::ImageMissing { .. }
        ));
        assert!(matches!(
            e(status(StatusCode::FORBIDDEN, "AuthorizationFailed")),
            RuntimeError::Rejected { .. }
        ));
        let throttled = e(AciError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "TooManyRequests".into(),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(7)),
        });
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
        assert!(throttled.is_transient());
        let quota = e(status(StatusCode::CONFLICT, "ContainerGroupQuotaReached"));
        assert!(matches!(quota, RuntimeError::Throttled { .. }) && quota.is_transient());
        let not_registered = e(status(StatusCode::CONFLICT, NOT_REGISTERED));
        assert!(matches!(not_registered, RuntimeError::NotSetUp { .. }));
        let source = std::error::Error::source(&not_registered).expect("Azure's answer");
        assert!(matches!(
            source.downcast_ref::<AciError>(),
            Some(AciError::Status { status, .. }) if *status == StatusCode::CONFLICT
        ));
        assert!(not_registered.to_string().contains("az provider register"));
        assert!(not_registered.is_transient());
    }
}
