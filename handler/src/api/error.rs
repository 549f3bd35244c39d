//! [`ApiError`]: the one place errors become statuses. Internal errors are logged, never shown.

use crate::app::IntakeError;
use crate::reconcile;
use crate::runtime::RuntimeError;
use crate::store::{StorageProblem, StoreError};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use model::LifecycleError;

/// The `Retry-After` of a refusal by backpressure: the waiting tasks drain at the pace of the
/// running ones, so a client polls a few seconds later rather than at once.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Every error the API answers with: a status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (e.g. `work_too_large`).
    pub code: &'static str,
    /// What went wrong; for a limit, which limit.
    pub message: String,
    /// Seconds to wait before trying again, sent as `Retry-After` (backpressure's 429).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// A 4xx/5xx with a code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the handler's log",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            answer.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        answer.json(model::ApiError {
            code: self.code.into(),
            message: self.message.clone(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("task {id} not found"),
            ),
            StoreError::Refused { source, .. } => {
                let code = match source {
                    LifecycleError::Illegal { .. } => "illegal_transition",
                    LifecycleError::Stale { .. } => "stale_attempt",
                };
                ApiError::new(StatusCode::CONFLICT, code, source.to_string())
            }
            StoreError::BadCursor => {
                ApiError::bad("bad_cursor", "the cursor is not one this API returned")
            }
            e @ StoreError::Storage { .. } => ApiError::storage(&e),
            e @ StoreError::OverCap { .. } => ApiError {
                retry_after_secs: Some(RETRY_AFTER_SECS),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    match &e {
                        StoreError::OverCap { key: Some(_), .. } => "key_queue_full",
                        _ => "queue_full",
                    },
                    format!("{e}; nothing of the request was stored (retry later)"),
                )
            },
            e @ (StoreError::Sqlite(_)
            | StoreError::Mongo(_)
            | StoreError::Incompatible { .. }
            | StoreError::Codec(_)
            | StoreError::Contended { .. }
            | StoreError::Unavailable(_)) => ApiError::internal(e),
        }
    }
}

impl ApiError {
    /// The data directory cannot take writes: 507 Insufficient Storage when it is full (RFC
    /// 4918 section 11.5: "unable to store the representation needed to complete the
    /// request"), 503 otherwise; the message says where and what. The cause goes to the log.
    fn storage(e: &StoreError) -> ApiError {
        let StoreError::Storage { dir, problem, .. } = e else {
            return ApiError::internal(e);
        };
        let cause = std::error::Error::source(e).map(|c| c.to_string());
        tracing::error!(dir = %dir.display(), %problem, cause, "the store cannot write");
        let (status, code) = match problem {
            StorageProblem::Full => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            StorageProblem::ReadOnly => (StatusCode::SERVICE_UNAVAILABLE, "storage_read_only"),
            StorageProblem::Gone => (StatusCode::SERVICE_UNAVAILABLE, "storage_gone"),
            StorageProblem::Failing => (StatusCode::SERVICE_UNAVAILABLE, "storage_failing"),
        };
        ApiError::new(
            status,
            code,
            format!("{e}; the request was not acknowledged (retry once the cause is fixed)"),
        )
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> ApiError {
        match e {
            IntakeError::Store(e) => e.into(),
            e => ApiError::internal(e),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "runtime", e.to_string())
    }
}

impl From<reconcile::ReconcileError> for ApiError {
    fn from(e: reconcile::ReconcileError) -> ApiError {
        match e {
            reconcile::ReconcileError::Store(e) => e.into(),
            e => ApiError::internal(e),
        }
    }
}
