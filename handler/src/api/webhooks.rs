//! `GET /api/tasks/{id}/webhooks`: the task's webhook deliveries and every attempt of each
//! (docs/API.md, "Webhooks"). Empty when no webhook URL is configured.

use super::{load, task_id, Data, Result};
use actix_web::{web, HttpResponse};
use model::webhook::Deliveries;

/// The deliveries of one task, oldest first; 404 for an unknown task.
pub async fn deliveries(app: Data, id: web::Path<String>) -> Result<HttpResponse> {
    let task = load(&app, &task_id(&id)?).await?;
    let deliveries = match app.tasks().webhooks() {
        Some(w) => w.deliveries(&task.id).await?,
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(Deliveries { deliveries }))
}
