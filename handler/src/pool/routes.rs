//! The pool's HTTP routes (registered by `api`; docs/API.md): the view of the pool, and the
//! assignment a warm container's worker waits for, on the worker listener too.

use super::{PoolError, PoolView};
use crate::api::ApiError;
use crate::app::App;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::Arc;

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> ApiError {
        match e {
            PoolError::NoSuchSlot(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_slot", e.to_string())
            }
            PoolError::Unauthorized(_) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a warm container's assignment needs that container's own pool token",
            ),
            e => {
                tracing::error!(error = %e, "warm pool error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the handler's log",
                )
            }
        }
    }
}

/// `GET /api/pool`: the warm containers (an empty pool of size 0 when none runs).
pub async fn list(app: web::Data<Arc<App>>) -> HttpResponse {
    let view = app.pool().map_or_else(PoolView::none, |p| p.view());
    HttpResponse::Ok().json(view)
}

/// `GET /api/pool/{slot}/assignment` with `Authorization: Bearer <pool token>`: 200 and the
/// task once the container is claimed, 204 after [`super::HOLD`] without a claim (ask again),
/// 401 for any other token, 404 for a container not (or no longer) in the pool.
pub async fn assignment(
    app: web::Data<Arc<App>>,
    slot: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a warm container's assignment needs its pool token (Authorization: Bearer)",
            )
        })?;
    let pool = app.pool().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_pool",
            "no warm pool runs (--warm 0)",
        )
    })?;
    match pool.assignment(&slot, token, app.shutdown()).await? {
        Some(a) => Ok(HttpResponse::Ok().json(a)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}
