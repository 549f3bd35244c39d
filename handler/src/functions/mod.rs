//! The Azure Functions custom-handler adapter: invocation payloads in, the same domain calls as
//! local mode, invocation responses out. Thin: the logic is in [`crate::spawn`],
//! [`crate::reconcile`] and [`crate::api`].
//!
//! The Functions host starts `handler functions` and POSTs each invocation to
//! `http://127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT/{FunctionName}`:
//!
//! - `ServiceBusTrigger`: the message and its `MessageId`/`DeliveryCount`/`EnqueuedTimeUtc`
//!   become a [`Delivery`] for [`spawn::handle_checked`], when it is due and there is room under
//!   the global cap and its key's cap, and no higher priority waits for it ([`admit`]); the delivery
//!   policy ([`crate::policy`], the same as local mode's) says what the answer is ([`deliver`]):
//!   complete, redeliver (500), dead-letter, or, for a transient runtime error, defer the task
//!   to the timer and complete the message.
//! - `HttpApi` (`api/{*path}`, not forwarded because it has a Service Bus output binding): the
//!   `req` data is answered by the very same actix routes as local mode, in-process
//!   ([`http`]); the answer becomes `Outputs.res`, and the envelopes the API queued become
//!   `Outputs.message` ([`outbox`]).
//! - `ReconcileTimer`: one [`reconcile::sweep`], retention ([`crate::retention::purge`]), the
//!   waiting tasks that are due ([`outbox::Resender`]: retries, delayed and held tasks, deferred
//!   spawns, lost first deliveries; highest priority first, keys in turn, never more than the room
//!   under the global cap and each key's cap) sent through `Outputs.message`, one Azure Monitor
//!   sample per running container, and a pass over the webhook outbox.
//! - `Dashboard` (`{*path}`, HTTP only): forwarded by the host as the original request
//!   (`enableForwardingHttpRequest`), so the static files, binary WASM included, are served as
//!   they are by [`dashboard::configure`].
//!
//! Every invocation runs with its own [`outbox::Outbox`]: the app it calls into queues through
//! that outbox's intake ([`invocation`]), and the adapter puts what was queued in the answer.
//!
//! The app is built by [`crate::compose`]: MongoDB and ACI in Azure, or SQLite and Docker /
//! processes on a laptop (`--store`, `--runtime`). A MongoDB store connects after the server
//! listens ([`lazy`]): until it is, every invocation answers a clear "not reachable yet" error.

pub mod admit;
pub mod http;
pub mod lazy;
pub mod outbox;
pub mod payload;
pub mod turns;

use crate::app::App;
use crate::clock::now_ms;
use crate::compose;
use crate::config::{FunctionsArgs, Settings};
use crate::events::Events;
use crate::policy::{self, Verdict};
use crate::runtime::ContainerRuntime;
use crate::sampler::Sampler;
use crate::spawn::{self, Delivery, SpawnError};
use crate::store::TaskStore;
use crate::{dashboard, reconcile};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use anyhow::Context;
use outbox::{Outbox, ServiceBusIntake};
use payload::{InvocationRequest, InvocationResponse};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
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
        self.app.shutdown().cancel();
        self.server.stop(true).await;
    }
}

/// The app context around a store and a runtime (tests pass SQLite and a stand-in runtime);
/// work is queued only through an invocation's output binding ([`invocation`]).
pub fn assemble(
    settings: Settings,
    store: Arc<dyn TaskStore>,
    runtime: Arc<dyn ContainerRuntime>,
) -> Arc<App> {
    let tasks = compose::tasks(&settings, store, Events::default());
    compose::app(settings, tasks, runtime, Arc::new(outbox::Unbound))
}

/// Builds the app as the flags say ([`compose`]): the runtime first (ACI needs no network, so a
/// missing managed identity is reported at once), then the store; a MongoDB store connects in
/// the background (module docs), SQLite is opened here.
pub async fn build_app(args: &FunctionsArgs) -> anyhow::Result<(Arc<App>, Gate)> {
    let settings = args.settings()?;
    let backends = args.backends()?;
    let chosen = compose::runtime(&backends, &settings.image).await?;
    let stop = CancellationToken::new();
    let (store, gate, db) = compose::functions_store(&backends, stop.clone())?;
    let webhooks = compose::webhooks(&settings, compose::functions_outbox(&backends, db).await?)?;
    let tasks = compose::tasks(&settings, store, Events::default()).with_webhooks(webhooks.clone());
    let app = compose::app(settings, tasks, chosen.runtime, Arc::new(outbox::Unbound));
    tokio::spawn(webhooks.run(app.shutdown().clone()));
    let shutdown = app.shutdown().clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
    Ok((app, gate))
}

/// The app one invocation runs with: `app`, queueing through a fresh outbox, which is returned
/// too, for the answer's output binding.
pub fn invocation(app: &Arc<App>) -> (Arc<App>, Outbox) {
    let outbox = Outbox::default();
    let caps = app.settings().shape.queue_caps;
    let intake = ServiceBusIntake::new(app.tasks().clone(), outbox.clone(), caps);
    (app.with_intake(Arc::new(intake)), outbox)
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
    let sampler = web::Data::new(Sampler::default());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(gate.clone())
            .app_data(resender.clone())
            .app_data(sampler.clone())
            // Built per worker thread: the API routes' service is not `Send` (`http`).
            .app_data(http::ApiService::default())
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
    let (app, gate) = build_app(&args).await?;
    let bind = SocketAddr::from(([127, 0, 0, 1], args.port));
    let resend = Duration::from_secs(args.azure.pending_resend_secs);
    let running = start_gated(app, gate, bind, args.azure.dashboard_dir.clone(), resend)?;
    tracing::info!(
        addr = %running.addr,
        queue = %args.azure.queue_name,
        store = ?args.store,
        runtime = running.app.runtime().kind(),
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

/// `ServiceBusTrigger`: spawn the message's task, within the global cap, and answer as the
/// delivery policy says ([`deliver`]).
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
    let (app, outbox) = invocation(&app);
    let (status, line) = deliver(&app, &d).await;
    let r = InvocationResponse::log(line);
    let r = if status.is_success() {
        r.with_messages(SPAWN_OUTBOX_BINDING, outbox.take())
    } else {
        r
    };
    answer(status, &r)
}

/// One delivery through the admission ([`admit`]: not due yet, or held for room under the
/// global cap, its key's cap or higher priorities: 200, the task stays `Pending` for the
/// timer), the spawn and the delivery policy ([`policy::decide`]); the answer's status tells
/// the host what to do with the message:
///
/// - [`Verdict::Complete`]: 200, the host completes the message.
/// - [`Verdict::RetryAfter`] not counted (a transient runtime error): the task is put back to
///   `Pending`, due after the policy's delay ([`admit::defer`]), and the message is completed
///   (200): Service Bus cannot delay a redelivery, and an abandon would spend a delivery, so
///   the `ReconcileTimer` sends the task again when it is due. Never a dead letter.
/// - [`Verdict::RetryAfter`] counted: 500, so the host fails the invocation
///   (`EnsureSuccessStatusCode` in azure-functions-host's `DefaultHttpWorkerService`) and
///   abandons the message; Service Bus redelivers it.
/// - [`Verdict::DeadLetter`]: the task is marked `DeadLettered`, then 500: the broker moves
///   the message to its dead-letter queue at its own `MaxDeliveryCount`. A message refused by
///   a rule or a cap on waiting tasks ([`SpawnError::Refused`]) stores nothing and answers 500
///   with the reason on every delivery until then (a custom handler cannot dead-letter itself).
async fn deliver(app: &Arc<App>, d: &Delivery) -> (StatusCode, String) {
    let id = &d.message_id;
    let result = match admit::admit(app, d).await {
        Ok(admit::Admission::Wait { reason }) => {
            return (
                StatusCode::OK,
                format!(
                    "message {id}: {reason}; the task stays Pending and the ReconcileTimer \
                     sends it again when there is room"
                ),
            )
        }
        Ok(admit::Admission::NotYet { at_ms }) => {
            let secs = (at_ms - now_ms()).max(0) / 1000;
            return (
                StatusCode::OK,
                format!(
                    "message {id}: not due for {secs} s (not_before {at_ms} ms); the task stays \
                     Pending and the ReconcileTimer sends it when it is due"
                ),
            );
        }
        Ok(admit::Admission::Go) => spawn::handle_checked(app, d, &admit::GlobalCap).await,
        Err(e) => Err(e),
    };
    let limits = policy::Limits::of(app.settings());
    let verdict = policy::decide(result.as_ref(), d.delivery_count, &limits);
    let error = match (result, verdict) {
        (Ok(outcome), _) => return (StatusCode::OK, format!("message {id}: {outcome:?}")),
        (Err(SpawnError::NoRoom(why)), _) => return (StatusCode::OK, format!(
            "message {id}: {why}; the task stays Pending and the ReconcileTimer sends it again when there is room"
        )),
        // Scheduled later (the spawn path's own check, should a delivery race past `admit`):
        // the task stays `Pending` and the timer sends it when it is due; no delivery spent.
        (Err(SpawnError::NotYet(wait)), _) => return (StatusCode::OK, format!(
            "message {id}: not due for {} s; the task stays Pending and the ReconcileTimer sends it when it is due",
            wait.as_secs()
        )),
        // A rule or a cap on waiting tasks refuses it (`--max-queued`, `--max-queued-per-key`,
        // the shape's bounds): nothing is stored. A custom handler cannot dead-letter a message
        // itself, so the invocation fails with the reason on every delivery and Service Bus
        // moves the message to the dead-letter queue at its `MaxDeliveryCount`.
        (Err(e @ SpawnError::Refused(_)), Verdict::DeadLetter { .. }) => {
            tracing::warn!(message = %id, delivery = d.delivery_count, error = %e, "message refused; dead-lettered by Service Bus at its MaxDeliveryCount");
            let line = format!(
                "message {id} delivery {}: {e}; dead-letter it (the queue's MaxDeliveryCount)",
                d.delivery_count
            );
            return (StatusCode::INTERNAL_SERVER_ERROR, line);
        }

        (Err(e), Verdict::RetryAfter { delay, counts: false }) => {
            return deferred(app, d, &e, delay).await
        }
        (Err(e), Verdict::DeadLetter { reason }) => {
            spawn::dead_letter(app, d, &reason).await;
            e
        }
        (Err(e), _) => e,
    };
    let last = d.delivery_count >= app.settings().max_deliveries;
    tracing::warn!(message = %id, delivery = d.delivery_count, last, error = %error, "spawn failed");
    let line = format!(
        "message {id} delivery {}: spawn failed: {error}",
        d.delivery_count
    );
    (StatusCode::INTERNAL_SERVER_ERROR, line)
}

/// A transient runtime error: the task waits `Pending` for `delay` (at least a second: the
/// timer's resolution) and the message is completed ([`deliver`]).
async fn deferred(
    app: &Arc<App>,
    d: &Delivery,
    e: &SpawnError,
    delay: Duration,
) -> (StatusCode, String) {
    let id = &d.message_id;
    let delay = delay.max(Duration::from_secs(1));
    match admit::defer(app, d, e, delay).await {
        Ok(true) => {
            tracing::warn!(message = %id, error = %e, "runtime unavailable; spawn deferred");
            let line = format!(
                "message {id}: {e}; deferred {} s (not a failed delivery)",
                delay.as_secs()
            );
            (StatusCode::OK, line)
        }
        // The task is not waiting for a container (it runs, or is finished): the reconciler
        // owns it, and the message has nothing left to do.
        Ok(false) => (
            StatusCode::OK,
            format!("message {id}: {e}; its task is not waiting for a container"),
        ),
        Err(store) => {
            tracing::warn!(message = %id, error = %store, "could not defer the spawn");
            let line = format!("message {id}: {e}; deferring failed: {store}");
            (StatusCode::INTERNAL_SERVER_ERROR, line)
        }
    }
}

/// `HttpApi`: the request through the API routes ([`http`]), as an app queueing through this
/// invocation's outbox.
async fn http_api(
    req: actix_web::HttpRequest,
    app: Data,
    gate: web::Data<Gate>,
    body: web::Bytes,
) -> HttpResponse {
    let inv = match parse(&body) {
        Ok(i) => i,
        Err(e) => return unreadable(e),
    };
    if let Some(why) = gate.blocked(Duration::ZERO).await {
        let mut r = InvocationResponse::log(why.clone());
        let res = serde_json::to_value(http::not_ready(&why)).unwrap_or_default();
        r.outputs.insert(RESPONSE_BINDING.to_string(), res);
        return answer(StatusCode::OK, &r);
    }
    let call = match payload::http_call(&inv, REQUEST_BINDING) {
        Ok(c) => c,
        Err(e) => return unreadable(e),
    };
    let (app, outbox) = invocation(&app);
    let res = if call.path_and_query.split('?').next() == Some("/api/events") {
        http::events_hint()
    } else {
        let Some(api) = req.app_data::<http::ApiService>() else {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &InvocationResponse::log(
                    "the API service is not set up on this server".to_string(),
                ),
            );
        };
        match api.replay(app, call).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "API request failed");
                let line = format!("API request failed: {e}");
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &InvocationResponse::log(line),
                );
            }
        }
    };
    let mut r = InvocationResponse::default().with_messages(QUEUE_BINDING, outbox.take());
    let res = serde_json::to_value(res).unwrap_or_default();
    r.outputs.insert(RESPONSE_BINDING.to_string(), res);
    answer(StatusCode::OK, &r)
}

/// Longest the `ReconcileTimer` waits for the webhook deliveries it starts (they go on in the
/// background after that).
const WEBHOOK_PASS: Duration = Duration::from_secs(5);

/// `ReconcileTimer`: one sweep, the waiting tasks that are due (within the room under the cap),
/// one metrics sample per running container.
async fn timer(
    app: Data,
    gate: web::Data<Gate>,
    resender: web::Data<outbox::Resender>,
    sampler: web::Data<Sampler>,
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
    let (app, outbox) = invocation(&app);
    match reconcile_once(&app, &resender, &sampler, &outbox).await {
        Ok(line) => answer(
            StatusCode::OK,
            &InvocationResponse::log(line).with_messages(QUEUE_BINDING, outbox.take()),
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

async fn reconcile_once(
    app: &Arc<App>,
    resender: &outbox::Resender,
    sampler: &Sampler,
    outbox: &Outbox,
) -> anyhow::Result<String> {
    reconcile::sweep(app).await?;
    // Deliveries progress even if background work is frozen between invocations.
    let sent = match app.tasks().webhooks() {
        Some(w) => w.drive(WEBHOOK_PASS).await,
        None => 0,
    };
    let unfinished = app.tasks().unfinished().await?;
    let active = unfinished.iter().filter(|t| t.state.is_active()).count();
    let room = app.settings().concurrency.saturating_sub(active);
    let due = resender.due(&unfinished, now_ms(), room, |k| admit::key_cap(app, k));
    outbox.send(&due)?;
    let sampled = sampler.sample(app, &unfinished).await;
    let purged = crate::retention::purge(app).await?;
    Ok(format!(
        "reconciled {} unfinished tasks; {active} active, room for {room}; {} waiting tasks sent; {sampled} sampled; {sent} webhook deliveries tried; {purged} old finished tasks removed",
        unfinished.len(),
        due.len(),
    ))
}
