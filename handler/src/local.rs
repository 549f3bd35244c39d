//! Local mode: the SQLite store and queue, a container runtime (Docker if the engine answers,
//! else child processes; both built by [`crate::compose`]), the queue consumer, the reconciler,
//! the sampler and the HTTP server, run until shutdown.
//!
//! With Docker, task containers are contained (`runtime::containment`): they run on a network of
//! their own and reach the handler only through a second listener, the worker listener, bound to
//! that network's gateway and serving the worker's report route alone (`api::worker_routes`).
//! The API and dashboard stay on `--bind` (loopback by default), out of the tasks' reach.
//!
//! Shutdown, one rule for every runtime: the first Ctrl-C or SIGTERM stops taking messages, lets
//! spawns in flight finish and stops the server; it never waits for running work (it may take
//! hours) and never leaves it unaccounted. A second signal exits at once. What happens to the
//! running work is what its runtime can vouch for after the handler is gone:
//! - Docker: containers keep running; the next start adopts them by name, and their reports or
//!   exit codes finish their tasks.
//! - process runtime: workers are the handler's children and end with it, on a stop as on a
//!   crash (see `runtime::process`); the next start finds them gone, truthfully, and retries
//!   their attempts (each retry uses one attempt of the task's budget).
//! - warm pool (`--warm N`, Docker only, `crate::pool`): unclaimed warm containers are removed;
//!   claimed ones are task containers and are treated as above.

use crate::app::App;
use crate::config::LocalArgs;
use crate::events::Events;
use crate::pool::Pool;
use crate::queue::{self, LocalQueue};
use crate::runtime::ContainerRuntime;
use crate::store::sqlite::Db;
use crate::{api, compose, dashboard, reconcile, sampler};
use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// A running local mode.
pub struct Running {
    /// Where the API and dashboard listen (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Where the worker listener listens (the task network's gateway), if one runs.
    pub worker_addr: Option<SocketAddr>,
    /// The shared context (tests use it to reach the store and runtime directly).
    pub app: Arc<App>,
    /// The local queue (tests drop raw messages on it as another producer would).
    pub queue: Arc<LocalQueue>,
    /// The HTTP servers (API, and the worker listener if any), to stop them.
    servers: Vec<actix_web::dev::ServerHandle>,
    /// The consumer, reconciler, sampler and spawns in flight.
    tracker: TaskTracker,
}

impl Running {
    /// The base URL, e.g. `http://127.0.0.1:7071`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stage one: stop taking work, finish what is in flight, stop the server.
    pub async fn stop(self) {
        self.app.shutdown().cancel();
        self.tracker.close();
        self.tracker.wait().await;
        for server in self.servers {
            server.stop(true).await;
        }
    }
}

/// Binds the worker listener on the task network's gateway. Its port is `--task-port`, or the
/// API's: stable across restarts (containers still running call the same URL), and free, as
/// the API holds that port on another address only.
fn worker_listener(
    args: &LocalArgs,
    gateway: IpAddr,
    api: SocketAddr,
) -> anyhow::Result<std::net::TcpListener> {
    let addr = SocketAddr::new(gateway, args.containment.task_port.unwrap_or(api.port()));
    std::net::TcpListener::bind(addr).with_context(|| {
        format!("binding the worker listener on {addr}, the task network's gateway (--task-port picks another port)")
    })
}

/// Starts local mode and returns once it listens.
pub async fn start(args: LocalArgs) -> anyhow::Result<Running> {
    // Bind first: with port 0 the real port is only known now, and workers must call it back.
    let listener =
        std::net::TcpListener::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let mut settings = args.settings()?;
    if args.public_url.is_none() {
        settings.public_url = format!("http://{addr}");
    }
    let backends = args.backends()?;
    let store = compose::sqlite(&args.data_dir.join("eda.db"))?.with_outbox(queue::enqueue_new);
    let outbox = crate::webhooks::sqlite::SqliteOutbox::open(store.db.clone()).await?;
    let webhooks = compose::webhooks(&settings, Arc::new(outbox))?;
    let tasks = compose::tasks(&settings, Arc::new(store.clone()), Events::default())
        .with_webhooks(webhooks.clone());
    let queue = Arc::new(
        LocalQueue::new(store.db.clone(), tasks.clone()).with_caps(settings.shape.queue_caps),
    );
    let recovered = queue.recover().await?;
    let chosen = compose::runtime(&backends, &settings.image).await?;
    let workers = match chosen.gateway.filter(|_| args.public_url.is_none()) {
        Some(gateway) => Some(worker_listener(&args, gateway, addr)?),
        None => None,
    };
    let worker_addr = workers.as_ref().map(|l| l.local_addr()).transpose()?;
    if let Some(w) = worker_addr {
        settings.public_url = format!("http://{w}");
    }
    let runtime = chosen.runtime.clone();
    let app = compose::app(settings, tasks, chosen.runtime, queue.clone());
    app.metrics().watch_queue(queue.clone());
    let pool = warm_pool(&args, &app, runtime, store.db.clone()).await?;
    for t in app
        .tasks()
        .unfinished()
        .await?
        .into_iter()
        .filter(|t| t.state.is_active())
    {
        app.slots().adopt(t.id, t.key);
    }
    let mut servers = vec![serve(listener, &args, app.clone())?];
    if let Some(workers) = workers {
        servers.push(serve_workers(workers, app.clone())?);
    }
    let tracker = TaskTracker::new();
    tracker.spawn(queue::consume(app.clone(), queue.clone(), tracker.clone()));
    tracker.spawn(reconcile::run(app.clone()));
    tracker.spawn(sampler::run(app.clone()));
    tracker.spawn(webhooks.run(app.shutdown().clone()));
    tracker.spawn(crate::retention::run(app.clone()));
    if let Some(pool) = pool {
        tracker.spawn(pool.keep(app.shutdown().clone()));
    }
    tracing::info!(%addr, ?worker_addr, runtime = app.runtime().kind(), recovered, "local mode listening");
    Ok(Running {
        addr,
        worker_addr,
        app,
        queue,
        servers,
        tracker,
    })
}

/// The warm pool (`--warm N`, Docker only), after handing over or removing what a previous run
/// left; `None` with `--warm 0` (leftovers are still cleaned up).
async fn warm_pool(
    args: &LocalArgs,
    app: &Arc<App>,
    runtime: Arc<dyn ContainerRuntime>,
    db: Db,
) -> anyhow::Result<Option<Arc<Pool>>> {
    let settings = args.pool()?;
    if app.runtime().kind() != "docker" {
        anyhow::ensure!(
            settings.size == 0,
            "--warm {} needs the Docker runtime (this one is `{}`): the process runtime starts every worker cold",
            settings.size,
            app.runtime().kind()
        );
        return Ok(None);
    }
    let size = settings.size;
    let pool = Pool::new(settings, app.settings(), runtime, db).await?;
    let (again, removed) = pool.recover(app).await?;
    if again + removed > 0 {
        tracing::info!(
            again,
            removed,
            "warm containers of the previous run: tasks handed over again, others removed"
        );
    }
    if size == 0 {
        return Ok(None);
    }
    let pool = Arc::new(pool);
    app.set_pool(pool.clone());
    Ok(Some(pool))
}

fn serve(
    listener: std::net::TcpListener,
    args: &LocalArgs,
    app: Arc<App>,
) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let data = actix_web::web::Data::new(app);
    let (dir, origins) = (args.dashboard_dir.clone(), args.cors_origins.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(cors(&origins))
            .app_data(data.clone())
            .configure(api::routes)
            .configure(|cfg| dashboard::configure(cfg, dir.clone()))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?;
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

/// The worker listener: the worker's report route only, no dashboard, no CORS.
fn serve_workers(
    listener: std::net::TcpListener,
    app: Arc<App>,
) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let data = actix_web::web::Data::new(app);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .configure(api::worker_routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

/// CORS for the listed origins only (the dashboard hosted as a static site); with none, the
/// browser's same-origin rule stands.
fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::{header, Method};
    origins
        .iter()
        .filter(|o| !o.is_empty())
        .fold(actix_cors::Cors::default(), |c, o| c.allowed_origin(o))
        .allowed_methods([Method::GET, Method::POST, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
        ])
        .max_age(3600)
}

/// Runs local mode until Ctrl-C or SIGTERM (graceful), or a second one (immediate).
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let running = start(args).await?;
    println!(
        "Event-Driven ACI local mode: dashboard and API on {}",
        running.url()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    stop_signal(&mut term).await?;
    tracing::info!("stop signal (Ctrl-C or SIGTERM): graceful stop, a second signal exits at once");
    let outlives = running.app.runtime().kind() != "process";
    println!(
        "stopping: finishing spawns in flight (Ctrl-C again to exit now); {}",
        if outlives {
            "running containers keep running and are adopted on the next start"
        } else {
            "running process workers end with the handler and are retried on the next start"
        }
    );
    tokio::select! {
        _ = running.stop() => Ok(()),
        _ = stop_signal(&mut term) => std::process::exit(130),
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM: both ask for the same graceful stop.
async fn stop_signal(term: &mut tokio::signal::unix::Signal) -> anyhow::Result<()> {
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
