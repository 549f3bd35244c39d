//! The HTTP API (docs/API.md documents every route). Thin: each route parses and checks its
//! input, delegates to the task service, the intake, the runtime or the reconciler, and maps
//! errors to statuses in one place ([`ApiError`]). Internal errors are logged, never shown.

use crate::app::App;
use crate::clock::now_ms;
use crate::reconcile;
use crate::store::ListFilter;
use crate::token;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures::StreamExt;
use model::{
    limits, Event, ListQuery, Mark, Phase, ReportedState, StateReport, SubmitResponse, Task,
    TaskId, WorkItem,
};
use std::sync::Arc;
use std::time::Duration;

mod bulk;
mod error;
mod input;
mod webhooks;
pub use error::ApiError;
use input::read_json;
pub use input::{new_id, new_tasks, parse_states};

type Data = web::Data<Arc<App>>;
type Result<T> = std::result::Result<T, ApiError>;

/// Registers every `/api` route, and `GET /metrics` (Prometheus; also `GET /api/metrics`, the
/// path Functions mode's `HttpApi` reaches), both behind the API key like the rest. The app
/// context must be in `web::Data<Arc<App>>`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .wrap(from_fn(require_api_key))
            .route(web::get().to(prometheus)),
    );
    let query = web::QueryConfig::default()
        .error_handler(|e, _| ApiError::bad("invalid_query", e.to_string()).into());
    let path = web::PathConfig::default()
        .error_handler(|e, _| ApiError::bad("invalid_path", e.to_string()).into());
    cfg.service(
        web::scope("/api")
            .app_data(query)
            .app_data(path)
            .wrap(from_fn(require_api_key))
            .route("/health", web::get().to(health))
            .route("/work", web::post().to(submit))
            .route("/tasks", web::get().to(list))
            .route("/tasks", web::delete().to(clear))
            .route("/tasks/bulk", web::post().to(bulk::bulk))
            .route("/tasks/{id}", web::get().to(get))
            .route("/tasks/{id}/logs", web::get().to(logs))
            .route("/tasks/{id}/metrics", web::get().to(metrics))
            .route("/tasks/{id}/webhooks", web::get().to(webhooks::deliveries))
            .route("/tasks/{id}/cancel", web::post().to(cancel))
            .route("/tasks/{id}/retry", web::post().to(retry))
            .route("/tasks/{id}/state", web::post().to(report))
            .route("/events", web::get().to(events))
            .route("/pool", web::get().to(crate::pool::routes::list))
            .route(
                "/pool/{slot}/assignment",
                web::get().to(crate::pool::routes::assignment),
            )
            .route("/metrics", web::get().to(prometheus))
            .route("/summary", web::get().to(summary))
            .default_service(web::to(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such API route")
                    .error_response()
            })),
    );
}

/// The routes of the worker listener (local mode, bound to the task network's gateway): the
/// worker's report and a warm container's assignment (`crate::pool`), nothing else. A task that finds this listener can only report the state
/// of a task whose token it holds (its own); listing, logs, enqueue, cancel, clear, events and
/// the dashboard answer 404 here, whatever key or token is sent.
pub fn worker_routes(cfg: &mut web::ServiceConfig) {
    let path = web::PathConfig::default()
        .error_handler(|e, _| ApiError::bad("invalid_path", e.to_string()).into());
    cfg.service(
        web::scope("/api")
            .app_data(path)
            .route("/tasks/{id}/state", web::post().to(report))
            .route(
                "/pool/{slot}/assignment",
                web::get().to(crate::pool::routes::assignment),
            ),
    )
    .default_service(web::to(|| async {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "worker_listener",
            "this listener serves only the worker's report (POST /api/tasks/{id}/state) and warm containers' assignments",
        )
        .error_response()
    }));
}

/// With an API key configured, every route but the worker's report (which has its task token)
/// and health needs it, as `Authorization: Bearer <key>` or `x-api-key: <key>`.
async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = req
        .app_data::<Data>()
        .and_then(|a| a.settings().api_key.clone());
    // The worker's report and a warm container's assignment carry their own tokens.
    let open = req.path().ends_with("/state")
        || req.path().ends_with("/assignment")
        || req.path() == "/api/health";
    if let (Some(key), false) = (key, open) {
        let given = bearer(req.request()).or_else(|| header_str(req.request(), "x-api-key"));
        if given.is_none_or(|g| token::hash(&g) != token::hash(&key)) {
            let e = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs its key (Authorization: Bearer or x-api-key)",
            );
            return Ok(req.into_response(e.error_response()));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn header_str(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get(name)?.to_str().ok().map(str::to_string)
}

fn bearer(req: &HttpRequest) -> Option<String> {
    header_str(req, header::AUTHORIZATION.as_str())?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

fn task_id(raw: &str) -> Result<TaskId> {
    TaskId::parse(raw).map_err(|e| ApiError::bad("invalid_id", e.to_string()))
}

async fn load(app: &App, id: &TaskId) -> Result<Task> {
    Ok(app.tasks().load(id).await?)
}

/// `GET /api/health`: 200 when the handler can take work; 507/503 with the store's error
/// (as any route answers it) while its data directory cannot take writes.
async fn health(app: Data) -> HttpResponse {
    let (runtime, store) = (app.runtime().kind(), app.tasks().store_kind());
    match app.tasks().ready().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({
            "ok": true, "ready": true, "runtime": runtime, "store": store,
        })),
        Err(e) => {
            let e = ApiError::from(e);
            HttpResponse::build(e.status).json(serde_json::json!({
                "ok": false, "ready": false, "runtime": runtime, "store": store,
                "code": e.code, "message": e.message,
            }))
        }
    }
}

/// `POST /api/work`: one item or an array; every item is checked before anything is stored.
async fn submit(app: Data, payload: web::Payload) -> Result<HttpResponse> {
    let value: serde_json::Value = read_json(payload, limits::MAX_BODY_BYTES).await?;
    let items: Vec<WorkItem> = match value {
        serde_json::Value::Array(_) => serde_json::from_value(value),
        _ => serde_json::from_value(value).map(|i| vec![i]),
    }
    .map_err(|e| {
        ApiError::bad(
            "invalid_body",
            format!("{e} (expected {{\"work\": \"...\"}} or an array of them)"),
        )
    })?;
    let tasks = new_tasks(&app, items)?;
    let tasks = app.intake().submit(tasks).await?;
    prefetch_images(&app, &tasks);
    Ok(HttpResponse::Accepted().json(SubmitResponse { tasks }))
}

/// Pulls, in the background, the images of accepted tasks that asked for their own
/// (`ContainerRuntime::prefetch`); a failure is logged, and the spawn says it again.
fn prefetch_images(app: &Data, tasks: &[model::Task]) {
    let images: std::collections::BTreeSet<String> =
        tasks.iter().filter_map(|t| t.image.clone()).collect();
    for image in images {
        let runtime = app.runtime_shared();
        tokio::spawn(async move {
            match runtime.prefetch(&image).await {
                Ok(()) => tracing::debug!(%image, "image present"),
                Err(e) => {
                    tracing::warn!(%image, error = %e, "could not pull the image ahead; its tasks will fail to start until it is present")
                }
            }
        });
    }
}

async fn list(app: Data, q: web::Query<ListQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(limits::DEFAULT_PAGE);
    if limit == 0 || limit > limits::MAX_PAGE {
        return Err(ApiError::bad(
            "invalid_limit",
            format!("limit must be 1..={} (MAX_PAGE)", limits::MAX_PAGE),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > limits::MAX_OFFSET {
        return Err(ApiError::bad(
            "invalid_offset",
            format!("offset must be 0..={} (MAX_OFFSET)", limits::MAX_OFFSET),
        ));
    }
    let states = q
        .state
        .as_deref()
        .map(parse_states)
        .transpose()?
        .unwrap_or_default();
    let search = parse_search(q.q.as_deref(), q.from.as_deref(), q.to.as_deref())?;
    let mut page = app
        .tasks()
        .list(&ListFilter {
            states,
            limit,
            cursor: q.cursor,
            offset,
            active_since_ms: q.active_since,
            search,
        })
        .await?;
    // Rows are slim, like their timelines: the phase clock and the result (up to
    // MAX_RESULT_BYTES each, a page could carry 64 MB) are on `GET /api/tasks/{id}`.
    for t in &mut page.tasks {
        t.phases.clear();
        t.result = None;
    }
    Ok(HttpResponse::Ok().json(page))
}

async fn get(app: Data, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(load(&app, &task_id(&id)?).await?))
}

/// Live output while the container exists, else what was captured when it ended.
async fn logs(app: Data, id: web::Path<String>) -> Result<HttpResponse> {
    let task = load(&app, &task_id(&id)?).await?;
    if let Some(name) = task.container.as_deref().filter(|_| task.state.is_active()) {
        if let Ok(logs) = app.runtime().logs(name, limits::MAX_LOG_BYTES).await {
            return Ok(HttpResponse::Ok().json(logs));
        }
    }
    let logs = app.tasks().logs(&task.id).await?.unwrap_or(model::Logs {
        text: String::new(),
        truncated: false,
    });
    Ok(HttpResponse::Ok().json(logs))
}

async fn metrics(app: Data, id: web::Path<String>) -> Result<HttpResponse> {
    let task = load(&app, &task_id(&id)?).await?;
    let samples = app.tasks().metrics(&task.id).await?;
    Ok(HttpResponse::Ok().json(model::Metrics { samples }))
}

/// `POST /api/tasks/{id}/cancel`: records `Cancelled` first (so a late report cannot revive
/// it), then kills the container; the reconciler removes it.
async fn cancel(app: Data, id: web::Path<String>) -> Result<HttpResponse> {
    let task = load(&app, &task_id(&id)?).await?;
    if task.state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("task is already {}", task.state),
        ));
    }
    Ok(HttpResponse::Ok().json(cancel_task(&app, &task.id).await?))
}

/// Cancels task `id` (refused by the lifecycle if it finished meanwhile) and kills its
/// container: the one path of the cancel route and the bulk action.
pub(crate) async fn cancel_task(
    app: &App,
    id: &TaskId,
) -> std::result::Result<Task, crate::store::StoreError> {
    let cancel = Event::Cancel {
        reason: "cancelled by request".into(),
    };
    let task = app.tasks().apply(id, cancel).await?;
    if let Some(name) = &task.container {
        if let Err(e) = app.runtime().kill(name).await {
            tracing::warn!(container = %name, error = %e, "kill after cancel failed; the reconciler retries");
        }
    }
    app.wake().notify_one();
    Ok(task)
}

/// `POST /api/tasks/{id}/retry`: a finished, unsuccessful task gets one more attempt.
async fn retry(app: Data, id: web::Path<String>) -> Result<HttpResponse> {
    let task = load(&app, &task_id(&id)?).await?;
    if !task.state.is_retryable() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_retryable",
            format!(
                "only failed or cancelled tasks can be retried; this one is {}",
                task.state
            ),
        ));
    }
    Ok(HttpResponse::Ok().json(retry_task(&app, &task).await?))
}

/// Gives `task` (as loaded) one more attempt and re-queues it through the intake: the one path
/// of the retry route and the bulk actions `retry` and `redrive`.
pub(crate) async fn retry_task(app: &App, task: &Task) -> Result<Task> {
    let retry = Event::Retry {
        attempt: task.attempt,
    };
    let task = app.tasks().apply(&task.id, retry).await?;
    app.intake().requeue(&task, now_ms()).await?;
    Ok(task)
}

/// The search of `q`, `from` and `to` (400 `invalid_search` naming the problem).
pub(crate) fn parse_search(
    q: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<model::Search> {
    model::Search::parse(q.unwrap_or(""), from, to)
        .map_err(|e| ApiError::bad("invalid_search", e.to_string()))
}

/// `POST /api/tasks/{id}/state`: the worker's report, authorised by its own task token only.
async fn report(
    app: Data,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let id = task_id(&id)?;
    let Some(given) = bearer(&req) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no_token",
            "the worker's task token is required (Authorization: Bearer)",
        ));
    };
    let stored = app.tasks().token_hash(&id).await?;
    if !stored.is_some_and(|h| token::verify(&given, &h)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_token",
            "this token is not valid for this task",
        ));
    }
    let r: StateReport = read_json(payload, limits::MAX_REPORT_BYTES).await?;
    let marks = worker_marks(&r, now_ms())?;
    // No stored result is larger than MAX_RESULT_BYTES, whichever worker sent it.
    let result = r.result.map(model::TaskResult::capped);
    let task = load(&app, &id).await?;
    if !marks.is_empty() && task.attempt > 0 {
        // The worker's own times (first output, exit) go on before the end it reports.
        let mark = Event::Mark {
            attempt: task.attempt,
            marks,
        };
        app.tasks().apply(&id, mark).await?;
    }
    match r.state {
        ReportedState::Failed => {
            let code = r.exit_code.unwrap_or(1);
            let reason = r
                .reason
                .unwrap_or_else(|| format!("work failed with exit code {code}"));
            reconcile::attempt_failed_with(&app, &task, Some(code), &reason, result).await?;
        }
        ReportedState::InProgress => {
            let started = Event::Started {
                attempt: task.attempt,
            };
            app.tasks().apply(&id, started).await?;
        }
        ReportedState::Done => {
            let done = Event::Succeeded {
                attempt: task.attempt,
                exit_code: r.exit_code.unwrap_or(0),
                reason: None,
                result,
            };
            app.tasks().apply(&id, done).await?;
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    recent: Option<usize>,
}

/// `GET /api/summary?recent=N`: the board header's figures over the newest N tasks (default
/// `DEFAULT_PAGE`, at most `MAX_PAGE`), computed here from the stored records.
async fn summary(app: Data, q: web::Query<SummaryQuery>) -> Result<HttpResponse> {
    let recent = q.recent.unwrap_or(limits::DEFAULT_PAGE);
    if recent == 0 || recent > limits::MAX_PAGE {
        return Err(ApiError::bad(
            "invalid_recent",
            format!("recent must be 1..={} (MAX_PAGE)", limits::MAX_PAGE),
        ));
    }
    let page = app
        .tasks()
        .list(&ListFilter {
            states: Vec::new(),
            limit: recent,
            cursor: None,
            offset: 0,
            active_since_ms: None,
            search: Default::default(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(model::Summary::of(&page.tasks, now_ms())))
}

/// `GET /metrics`: the Prometheus series (docs/METRICS.md), OpenMetrics text.
async fn prometheus(app: Data) -> Result<HttpResponse> {
    let text = crate::metrics::render(&app).await.map_err(|e| match e {
        crate::metrics::MetricsError::Store(e) => ApiError::from(e),
        e => ApiError::internal(e),
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE))
        .body(text))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearQuery {
    state: String,
}

/// `DELETE /api/tasks?state=finished`: removes finished tasks and any containers left of them.
async fn clear(app: Data, q: web::Query<ClearQuery>) -> Result<HttpResponse> {
    if q.state != "finished" {
        return Err(ApiError::bad(
            "invalid_state",
            "only state=finished can be cleared",
        ));
    }
    let removed = app.tasks().remove_finished().await?;
    for name in removed.iter().filter_map(|t| t.container.as_deref()) {
        let _ = app.runtime().remove(name).await;
    }
    Ok(HttpResponse::Ok().json(model::Cleared {
        removed: removed.len() as u64,
    }))
}

/// `GET /api/events`: Server-Sent Events of every change; a comment every 15 s keeps proxies
/// from closing it; a subscriber that lags gets `resync`.
async fn events(app: Data) -> HttpResponse {
    let rx = app.tasks().events.subscribe();
    let shutdown = app.shutdown().clone();
    let first = futures::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from("retry: 1000\n: connected\n\n"))
    });
    let rest = futures::stream::unfold((rx, shutdown), |(mut rx, shutdown)| async move {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = tokio::time::timeout(Duration::from_secs(15), rx.recv()) => match r {
                Err(_) => web::Bytes::from(": keep-alive\n\n"),
                Ok(Ok(f)) => web::Bytes::copy_from_slice(f.as_bytes()),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => web::Bytes::from(crate::events::frame("resync", "{}")),
                Ok(Err(_)) => return None,
            },
        };
        Some((Ok::<_, actix_web::Error>(frame), (rx, shutdown)))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(first.chain(rest))
}

/// The phases the worker timed itself (its clock), from its report; a time further than
/// `MAX_REPORTED_SKEW_MS` from `now_ms` is refused (400 `invalid_time`).
fn worker_marks(r: &StateReport, now_ms: i64) -> Result<Vec<Mark>> {
    let skew = model::phases::MAX_REPORTED_SKEW_MS;
    [
        (Phase::FirstOutput, r.first_output_at_ms),
        (Phase::Exited, r.exited_at_ms),
    ]
    .into_iter()
    .filter_map(|(phase, at)| Some(Mark { phase, at_ms: at? }))
    .map(|m| match m.at_ms.abs_diff(now_ms) <= skew.unsigned_abs() {
        true => Ok(m),
        false => Err(ApiError::bad(
            "invalid_time",
            format!(
                "{} is {} ms from the handler's clock; the limit is {skew} ms (MAX_REPORTED_SKEW_MS)",
                m.phase.as_str(),
                m.at_ms.saturating_sub(now_ms)
            ),
        )),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::input::json_depth;
    use super::*;
    use model::TaskState;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(r#"{"a":"[[[[{{{"}"#), 1);
        assert_eq!(json_depth("[[[]]]"), 3);
        assert_eq!(json_depth(r#"["\"[", [1]]"#), 2);
    }

    #[test]
    fn reported_times_are_marked_within_the_skew_limit() {
        let report = |out, exit| StateReport {
            state: ReportedState::Done,
            container: None,
            exit_code: Some(0),
            reason: None,
            first_output_at_ms: out,
            exited_at_ms: exit,
            result: None,
        };
        let now = 1_000_000_000;
        assert!(worker_marks(&report(None, None), now).unwrap().is_empty());
        let marks = worker_marks(&report(Some(now - 5), Some(now)), now).unwrap();
        assert_eq!(
            marks,
            [
                Mark {
                    phase: Phase::FirstOutput,
                    at_ms: now - 5
                },
                Mark {
                    phase: Phase::Exited,
                    at_ms: now
                }
            ]
        );
        let far = now + model::phases::MAX_REPORTED_SKEW_MS + 1;
        let e = worker_marks(&report(None, Some(far)), now).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "invalid_time")
        );
        assert!(e.message.contains("MAX_REPORTED_SKEW_MS"), "{}", e.message);
        assert!(worker_marks(&report(Some(i64::MIN), None), now).is_err());
    }

    #[test]
    fn state_filters() {
        assert_eq!(
            parse_states("Done,Failed").unwrap(),
            vec![TaskState::Done, TaskState::Failed]
        );
        assert_eq!(parse_states("active").unwrap().len(), 3);
        assert!(parse_states("Running").is_err());
    }
}
