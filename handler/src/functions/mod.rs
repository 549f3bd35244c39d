//! The Azure Functions custom-handler adapter: invocation payloads in, the same domain calls as
//! local mode, invocation responses out. Thin: the logic is in [`crate::spawn`],
//! [`crate::reconcile`] and [`crate::api`].
//!
//! The Functions host starts `handler functions` and POSTs each invocation to
//! `http://127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT/{FunctionName}`:
//!
//! - `ServiceBusTrigger`: the message and its `MessageId`/`DeliveryCount` become a
//!   [`Delivery`] for [`spawn::handle_checked`], within the global cap ([`admit`]). Success
//!   completes the message; a permanent error answers 500 so the host fails the invocation
//!   (`EnsureSuccessStatusCode` in azure-functions-host's `DefaultHttpWorkerService`) and
//!   Service Bus redelivers. At the last allowed delivery the task is marked `DeadLettered`
//!   ([`spawn::dead_letter`]) before the 500 sends the message to the dead-letter queue. A
//!   transient error (runtime unavailable, throttled) is not poison: [`admit::defer`] leaves the
//!   task for the timer and the message is completed.
//! - `HttpApi` (`api/{*path}`, not forwarded because it has a Service Bus output binding): the
//!   `req` data is replayed through the very same actix routes as local mode ([`api::routes`]),
//!   in-process; the answer becomes `Outputs.res`, and the envelopes the API queued become
//!   `Outputs.message` ([`outbox`]).
//! - `ReconcileTimer`: one [`reconcile::sweep`], the waiting tasks that are due
//!   ([`outbox::Resender`]: retries, deferred spawns, lost first deliveries; never more than the
//!   room under the global cap) sent through `Outputs.message`, and one Azure Monitor sample
//!   per running container.
//! - `Dashboard` (`{*path}`, HTTP only): forwarded by the host as the original request
//!   (`enableForwardingHttpRequest`), so the static files, binary WASM included, are served as
//!   they are by [`dashboard::configure`].
//!
//! The server listens before the store is connected ([`lazy`]): until it is, every invocation
//! answers a clear "not reachable yet" error.

pub mod admit;
pub mod lazy;
pub mod outbox;
pub mod payload;

use crate::app::App;
use crate::clock::now_ms;
use crate::config::{FunctionsArgs, Settings};
use crate::runtime::aci::AciRuntime;
use crate::runtime::ContainerRuntime;
use crate::spawn::{self, Delivery, Outcome, Slots, SpawnError};
use crate::store::mongo::MongoStore;
use crate::store::TaskStore;
use crate::tasks::{Rates, Tasks};
use crate::{api, dashboard, events::Events, reconcile};
use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use actix_web::{web, HttpResponse};
use anyhow::Context;
use futures::future::LocalBoxFuture;
use model::Task;
use payload::{HttpResult, InvocationRequest, InvocationResponse};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The trigger binding of `ServiceBusTrigger/function.json`.
pub const MESSAGE_BINDING: &str = "message";
/// The Service Bus output binding of `ServiceBusTrigger/function.json`.
pub const SPAWN_OUTBOX_BINDING: &str = "outbox";
/// The Service Bus output binding of `HttpApi` and `ReconcileTimer`.
pub const QUEUE_BINDING: &str = "message";
/// The HTTP trigger binding of `HttpApi`.
pub const REQUEST_BINDING: &str = "req";
/// The HTTP output binding of `HttpApi`.
pub const RESPONSE_BINDING: &str = "res";
/// Spawn attempts within one invocation when the runtime is unreachable (each failed
/// invocation costs a Service Bus delivery, so a short outage is waited out here first).
const TRANSIENT_TRIES: u32 = 3;
/// How long a Service Bus invocation waits for the store to connect before it fails (the
/// message is redelivered; a short start-up costs no delivery).
const STORE_WAIT: Duration = Duration::from_secs(20);

type Data = web::Data<Arc<App>>;

/// The functions-mode server, running.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The shared context (tests look into its store).
    pub app: Arc<App>,
    /// Stops the HTTP server.
    server: actix_web::dev::ServerHandle,
}

/// The store's connection state, when it connects lazily ([`lazy::LazyStore`]); `None`: the
/// store was connected before the server started (tests).
#[derive(Clone, Default)]
pub struct Gate(pub Option<Arc<lazy::LazyStore>>);

impl Gate {
    /// `None` when the store is usable, else why not; waits up to `limit` for it first.
    async fn blocked(&self, limit: Duration) -> Option<String> {
        let store = self.0.as_ref()?;
        if store.ready(limit).await {
            return None;
        }
        Some(store.not_ready())
    }
}

impl Running {
    /// Stops taking invocations and waits for the ones in flight.
    pub async fn stop(self) {
        self.app.shutdown.cancel();
        self.server.stop(true).await;
    }
}

/// Assembles the app context around a store and a runtime (Mongo + ACI in Azure; tests pass
/// SQLite and a stand-in runtime). Work is queued through the invocation's output binding.
pub fn assemble(
    settings: Settings,
    store: Arc<dyn TaskStore>,
    runtime: Arc<dyn ContainerRuntime>,
) -> Arc<App> {
    let rates = Rates {
        cpu_second: settings.rates.0,
        gb_second: settings.rates.1,
    };
    let tasks = Tasks::new(store, Events::default(), rates);
    Arc::new(App {
        slots: Arc::new(Slots::new(settings.concurrency)),
        settings,
        intake: Arc::new(outbox::ServiceBusIntake {
            tasks: tasks.clone(),
        }),
        tasks,
        runtime,
        wake: Arc::new(Notify::new()),
        shutdown: CancellationToken::new(),
    })
}

/// Sets up the ACI runtime and a store that connects to Cosmos DB in the background, as the
/// flags say. The runtime needs no network, so a missing managed identity is reported at once;
/// the store is not waited for (module docs).
pub fn build_app(args: &FunctionsArgs) -> anyhow::Result<(Arc<App>, Gate)> {
    let settings = args.settings()?;
    let a = &args.azure;
    let runtime = AciRuntime::from_args(a).context("setting up the ACI runtime")?;
    let (uri, db, coll) = (
        a.mongo_uri.clone(),
        a.mongo_db.clone(),
        a.mongo_collection.clone(),
    );
    let connect: lazy::Connect = Box::new(move || {
        let (uri, db, coll) = (uri.clone(), db.clone(), coll.clone());
        Box::pin(async move {
            let store = MongoStore::connect(&uri, &db, &coll)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let store: Arc<dyn TaskStore> = Arc::new(store);
            Ok(store)
        })
    });
    let stop = CancellationToken::new();
    let store = lazy::LazyStore::spawn(connect, stop.clone());
    let app = assemble(settings, store.clone(), Arc::new(runtime));
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
    Ok((app, Gate(Some(store))))
}

/// Starts the custom-handler server on `bind`; returns once it listens. `pending_resend` is how
/// long a new task may stay `Pending` before the timer sends it again (zero: never).
pub fn start(
    app: Arc<App>,
    bind: SocketAddr,
    dashboard_dir: Option<PathBuf>,
    pending_resend: Duration,
) -> anyhow::Result<Running> {
    start_gated(app, Gate::default(), bind, dashboard_dir, pending_resend)
}

/// [`start`] with a store that may not be connected yet (`gate`).
pub fn start_gated(
    app: Arc<App>,
    gate: Gate,
    bind: SocketAddr,
    dashboard_dir: Option<PathBuf>,
    pending_resend: Duration,
) -> anyhow::Result<Running> {
    let data = web::Data::new(app.clone());
    let gate = web::Data::new(gate);
    let resender = web::Data::new(outbox::Resender::new(pending_resend));
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(gate.clone())
            .app_data(resender.clone())
            .app_data(web::PayloadConfig::new(2 * model::limits::MAX_BODY_BYTES))
            .route("/ServiceBusTrigger", web::post().to(service_bus))
            .route("/HttpApi", web::post().to(http_api))
            .route("/ReconcileTimer", web::post().to(timer))
            .configure(|cfg| dashboard::configure(cfg, dashboard_dir.clone()))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(30)
    .bind(bind)
    .with_context(|| format!("binding {bind}"))?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(Running {
        addr,
        app,
        server: handle,
    })
}

/// Runs as the custom handler until the host stops the process (SIGTERM or Ctrl-C).
pub async fn run(args: FunctionsArgs) -> anyhow::Result<()> {
    let (app, gate) = build_app(&args)?;
    let bind = SocketAddr::from(([127, 0, 0, 1], args.port));
    let resend = Duration::from_secs(args.azure.pending_resend_secs);
    let running = start_gated(app, gate, bind, args.azure.dashboard_dir.clone(), resend)?;
    tracing::info!(
        addr = %running.addr,
        queue = %args.azure.queue_name,
        resource_group = %args.azure.resource_group,
        "custom handler listening"
    );
    stopped().await;
    running.stop().await;
    Ok(())
}

/// Resolves on SIGTERM (how the host stops us) or Ctrl-C.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A JSON invocation answer with `status`.
fn answer(status: StatusCode, body: &InvocationResponse) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

fn parse(body: &[u8]) -> Result<InvocationRequest, payload::PayloadError> {
    serde_json::from_slice(body).map_err(|e| payload::PayloadError::Body(e.to_string()))
}

/// The 400 answer to an invocation the handler cannot read.
fn unreadable(e: payload::PayloadError) -> HttpResponse {
    answer(
        StatusCode::BAD_REQUEST,
        &InvocationResponse::log(e.to_string()),
    )
}

/// `ServiceBusTrigger`: spawn the message's task, within the global cap.
async fn service_bus(app: Data, gate: web::Data<Gate>, body: web::Bytes) -> HttpResponse {
    if let Some(why) = gate.blocked(STORE_WAIT).await {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &InvocationResponse::log(why),
        );
    }
    let inv = match parse(&body) {
        Ok(i) => i,
        Err(e) => return unreadable(e),
    };
    let d = match payload::delivery(&inv, MESSAGE_BINDING) {
        Ok(d) => d,
        Err(e) => return unreadable(e),
    };
    let (result, queued) = outbox::collect(admitted_spawn(&app, &d)).await;
    match result {
        Ok(line) => {
            let r = InvocationResponse::log(line).with_messages(SPAWN_OUTBOX_BINDING, queued);
            answer(StatusCode::OK, &r)
        }
        Err(e) => {
            let last = d.delivery_count >= app.settings.max_deliveries;
            if last {
                let reason = format!("dead-lettered after {} deliveries: {e}", d.delivery_count);
                spawn::dead_letter(&app, &d, &reason).await;
            }
            tracing::warn!(message = %d.message_id, delivery = d.delivery_count, last, error = %e, "spawn failed");
            let line = format!(
                "message {} delivery {}: spawn failed: {e}",
                d.message_id, d.delivery_count
            );
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &InvocationResponse::log(line),
            )
        }
    }
}

/// The cap check, the spawn, and the transient-error policy ([`admit`]); `Ok` is a log line and
/// means "complete the message".
async fn admitted_spawn(app: &Arc<App>, d: &Delivery) -> Result<String, SpawnError> {
    let id = &d.message_id;
    if let admit::Admission::Full { active, cap } = admit::admit(app, d).await? {
        return Ok(format!(
            "message {id}: {active} container groups active, the global cap is {cap}; \
             the task stays Pending and the ReconcileTimer sends it again when there is room"
        ));
    }
    match spawn_patiently(app, d).await {
        Ok(outcome) => Ok(format!("message {id}: {outcome:?}")),
        Err(SpawnError::NoRoom(why)) => Ok(format!(
            "message {id}: {why}; the task stays Pending and the ReconcileTimer sends it again when there is room"
        )),
        Err(e) if e.is_transient() => match admit::defer(app, d, &e).await? {
            Some(delay) => {
                tracing::warn!(message = %id, error = %e, "runtime unavailable; spawn deferred");
                Ok(format!(
                    "message {id}: {e}; deferred {} s (not a failed delivery)",
                    delay.as_secs()
                ))
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// [`spawn::handle`], waiting out a short runtime outage before giving the delivery back.
async fn spawn_patiently(app: &Arc<App>, d: &Delivery) -> Result<Outcome, SpawnError> {
    let mut delay = Duration::from_millis(500);
    for _ in 1..TRANSIENT_TRIES {
        match spawn::handle_checked(app, d, &admit::GlobalCap).await {
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "runtime unavailable; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    spawn::handle_checked(app, d, &admit::GlobalCap).await
}

/// `HttpApi`: replay the request through the API routes.
async fn http_api(app: Data, gate: web::Data<Gate>, body: web::Bytes) -> HttpResponse {
    let inv = match parse(&body) {
        Ok(i) => i,
        Err(e) => return unreadable(e),
    };
    if let Some(why) = gate.blocked(Duration::ZERO).await {
        let mut r = InvocationResponse::log(why.clone());
        let res = serde_json::to_value(not_ready(&why)).unwrap_or_default();
        r.outputs.insert(RESPONSE_BINDING.to_string(), res);
        return answer(StatusCode::OK, &r);
    }
    let call = match payload::http_call(&inv, REQUEST_BINDING) {
        Ok(c) => c,
        Err(e) => return unreadable(e),
    };
    let (res, queued) = if call.path_and_query.split('?').next() == Some("/api/events") {
        (events_hint(), Vec::new())
    } else {
        let inner = inner_service(&app).await;
        let (res, queued) = outbox::collect(replay(&inner, call)).await;
        match res {
            Ok(r) => (r, queued),
            Err(e) => {
                tracing::error!(error = %e, "API replay failed");
                let line = format!("API replay failed: {e}");
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &InvocationResponse::log(line),
                );
            }
        }
    };
    let mut r = InvocationResponse::default().with_messages(QUEUE_BINDING, queued);
    let res = serde_json::to_value(res).unwrap_or_default();
    r.outputs.insert(RESPONSE_BINDING.to_string(), res);
    answer(StatusCode::OK, &r)
}

/// The API's answer while the store is not connected: 503 with `Retry-After`, in the API's
/// error shape.
fn not_ready(why: &str) -> HttpResult {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Content-Type".into(), "application/json".into());
    headers.insert("Retry-After".into(), "5".into());
    let body = model::ApiError {
        code: "store_unavailable".into(),
        message: why.to_string(),
    };
    HttpResult {
        status_code: 503,
        headers,
        body: serde_json::to_string(&body).unwrap_or_default(),
    }
}

/// The live event stream cannot pass through a buffered invocation, so `/api/events` answers
/// one `resync` frame and asks the browser's `EventSource` to reconnect in 5 s: the dashboard
/// reloads its list each time, which turns the stream into polling in Azure.
fn events_hint() -> HttpResult {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Content-Type".into(), "text/event-stream".into());
    headers.insert("Cache-Control".into(), "no-cache".into());
    HttpResult {
        status_code: 200,
        headers,
        body: format!("retry: 5000\n{}", crate::events::frame("resync", "{}")),
    }
}

/// One request through the in-process API service.
async fn replay(inner: &Inner, call: payload::HttpCall) -> Result<HttpResult, actix_web::Error> {
    let method = actix_web::http::Method::from_bytes(call.method.as_bytes())
        .map_err(actix_web::error::ErrorBadRequest)?;
    let mut req = TestRequest::default()
        .method(method)
        .uri(&call.path_and_query);
    for (k, v) in call.headers {
        req = req.insert_header((k, v));
    }
    let resp = (inner.call)(req.set_payload(call.body)).await?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let bytes = actix_web::body::to_bytes(resp.into_body())
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("reading the API answer"))?;
    Ok(HttpResult {
        status_code: status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

type CallFn = dyn Fn(
    TestRequest,
)
    -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>;

/// The API routes as an in-process service, built once per worker thread (actix services are
/// not `Send`) and per app.
#[derive(Clone)]
struct Inner {
    /// Which app it was built for (tests run several apps in one process).
    app: usize,
    /// Calls the service.
    call: Rc<CallFn>,
}

thread_local! {
    /// This worker thread's API service.
    static INNER: RefCell<Option<Inner>> = const { RefCell::new(None) };
}

async fn inner_service(app: &Data) -> Inner {
    let key = Arc::as_ptr(app.get_ref()) as usize;
    if let Some(i) = INNER.with(|c| c.borrow().clone()).filter(|i| i.app == key) {
        return i;
    }
    let svc = actix_web::test::init_service(
        actix_web::App::new()
            .app_data(app.clone())
            .configure(api::routes),
    )
    .await;
    let svc = Rc::new(svc);
    let call: Rc<CallFn> = Rc::new(move |req: TestRequest| {
        let svc = svc.clone();
        Box::pin(async move {
            let resp = svc.call(req.to_request()).await?;
            Ok(resp.map_into_boxed_body())
        })
    });
    let inner = Inner { app: key, call };
    INNER.with(|c| *c.borrow_mut() = Some(inner.clone()));
    inner
}

/// `ReconcileTimer`: one sweep, the waiting tasks that are due (within the room under the cap),
/// one metrics sample per running container.
async fn timer(
    app: Data,
    gate: web::Data<Gate>,
    resender: web::Data<outbox::Resender>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(e) = parse(&body) {
        return unreadable(e);
    }
    if let Some(why) = gate.blocked(Duration::ZERO).await {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &InvocationResponse::log(why),
        );
    }
    let (result, queued) = outbox::collect(reconcile_once(&app, &resender)).await;
    match result {
        Ok(line) => answer(
            StatusCode::OK,
            &InvocationResponse::log(line).with_messages(QUEUE_BINDING, queued),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reconcile pass failed");
            let line = format!("reconcile pass failed: {e}");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &InvocationResponse::log(line),
            )
        }
    }
}

async fn reconcile_once(app: &Arc<App>, resender: &outbox::Resender) -> anyhow::Result<String> {
    reconcile::sweep(app).await?;
    let unfinished = app.tasks.unfinished().await?;
    let active = unfinished.iter().filter(|t| t.state.is_active()).count();
    let room = app.settings.concurrency.saturating_sub(active);
    let due = resender.due(&unfinished, now_ms(), room);
    outbox::send(&due)?;
    let sampled = sample(app, &unfinished).await;
    Ok(format!(
        "reconciled {} unfinished tasks; {active} active, room for {room}; {} waiting tasks sent; {sampled} sampled",
        unfinished.len(),
        due.len(),
    ))
}

/// Stores one Azure Monitor sample per running container, skipping points already stored
/// (Azure Monitor's points are a minute apart; the timer runs more often).
async fn sample(app: &Arc<App>, tasks: &[Task]) -> usize {
    let mut n = 0;
    for t in tasks.iter().filter(|t| t.state.is_active()) {
        let Some(name) = t.container.as_deref() else {
            continue;
        };
        let Ok(Some(s)) = app.runtime.sample(name).await else {
            continue;
        };
        let store = &app.tasks;
        let last = store
            .metrics(&t.id)
            .await
            .ok()
            .and_then(|m| m.last().copied());
        if last.is_some_and(|l| l.at_ms >= s.at_ms) {
            continue;
        }
        if store.add_metrics(&t.id, &[s]).await.is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_hint_is_one_resync_frame_with_a_retry() {
        let h = events_hint();
        assert!(h.body.starts_with("retry: 5000\n"));
        assert!(h.body.contains("event: resync"));
        assert_eq!(h.headers["Content-Type"], "text/event-stream");
    }
}
