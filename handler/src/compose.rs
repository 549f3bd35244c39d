//! The one composition root: builds the application context ([`App`]) and its backends from
//! resolved configuration ([`Settings`], [`Backends`]), for both modes. `local` and
//! `functions` only add what is theirs (the SQLite queue and the worker listener; the
//! invocation server), so "which store, which runtime" is decided here and nowhere else:
//!
//! | | local mode | functions mode |
//! |---|---|---|
//! | store | SQLite (`--data-dir`; it also holds the queue) | `--store mongo` (default; connects in the background, `functions::lazy`) or `sqlite` |
//! | runtime | `--runtime auto` (default), `docker`, `process` | `--runtime aci` (default), `docker`, `process`, `auto` |
//! | intake | the SQLite queue | each invocation's Service Bus output binding (`functions::outbox`) |
//!
//! Docker tasks are contained as `Backends::containment` says (local mode: its own network;
//! functions mode on a laptop: the host network, to reach the Functions host's URL).

use crate::app::{App, Intake};
use crate::config::{find_worker, Backends, RuntimeChoice, Settings, StoreTarget, TaskNetwork};
use crate::events::Events;
use crate::functions::lazy::{self, LazyStore};
use crate::functions::Gate;
use crate::runtime::aci::AciRuntime;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::image;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::ContainerRuntime;
use crate::store::mongo::MongoStore;
use crate::store::sqlite::{Db, SqliteStore};
use crate::store::TaskStore;
use crate::tasks::{Rates, Tasks};
use crate::webhooks::mongo::MongoOutbox;
use crate::webhooks::outbox::{MemoryOutbox, Outbox};
use crate::webhooks::sqlite::SqliteOutbox;
use crate::webhooks::Webhooks;
use anyhow::Context;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The task service over `store`, billing at the configured rates.
pub fn tasks(settings: &Settings, store: Arc<dyn TaskStore>, events: Events) -> Tasks {
    let rates = Rates {
        cpu_second: settings.rates.0,
        gb_second: settings.rates.1,
    };
    Tasks::new(store, events, rates)
}

/// The application context around the task service, a runtime and an intake: the only place an
/// [`App`] is made.
pub fn app(
    settings: Settings,
    tasks: Tasks,
    runtime: Arc<dyn ContainerRuntime>,
    intake: Arc<dyn Intake>,
) -> Arc<App> {
    Arc::new(App::new(settings, tasks, runtime, intake))
}

/// The runtime chosen, and where tasks call back from its network, if it has one of its own.
pub struct Chosen {
    /// The runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The task network's gateway: where a worker listener must listen (local mode).
    pub gateway: Option<IpAddr>,
}

/// The runtime `backends` name. Docker builds the worker image when missing and prepares the
/// task network; `auto` falls back to child processes (with a warning) when no Docker answers,
/// `docker` never does; `aci` needs the Azure settings and a managed identity.
pub async fn runtime(b: &Backends, image: &str) -> anyhow::Result<Chosen> {
    match b.runtime {
        RuntimeChoice::Aci => {
            let azure = b
                .azure
                .as_deref()
                .context("--runtime aci needs the Azure settings")?;
            let aci = AciRuntime::from_args(azure).context("setting up the ACI runtime")?;
            return Ok(Chosen {
                runtime: Arc::new(aci),
                gateway: None,
            });
        }
        RuntimeChoice::Process => return process(b),
        RuntimeChoice::Docker | RuntimeChoice::Auto => {}
    }
    match DockerRuntime::connect().await {
        Ok(docker) => {
            worker_image(&docker, image, b).await?;
            let docker = docker.contained(b.containment.clone());
            let prepared = docker
                .prepare()
                .await
                .context("preparing the task network (see --task-network)")?;
            announce(docker.containment());
            Ok(Chosen {
                runtime: Arc::new(docker),
                gateway: prepared.gateway,
            })
        }
        Err(e) if b.runtime == RuntimeChoice::Docker => Err(e).context(
            "--runtime docker: no Docker Engine answers (start dockerd, or use --runtime auto / process)",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "--runtime auto: no Docker Engine answers; falling back to the process runtime");
            process(b)
        }
    }
}

/// The process runtime, with its logs under the data dir.
fn process(b: &Backends) -> anyhow::Result<Chosen> {
    tracing::warn!(
        "process runtime: tasks are NOT contained; they run as child processes with this handler's user, files and network, and can reach its API on loopback (use Docker to contain them)"
    );
    let worker = find_worker(b.worker_bin.as_deref())?;
    let logs = b.data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    Ok(Chosen {
        runtime: Arc::new(ProcessRuntime::new(worker, logs)),
        gateway: None,
    })
}

/// One line on what tasks can reach; a loud one for the host network.
fn announce(c: &crate::config::Containment) {
    if c.network == TaskNetwork::Host {
        tracing::warn!("{}", c.describe());
    } else {
        tracing::info!("{}", c.describe());
    }
}

/// Builds the worker image when it is missing, or refreshes it when it is our default image and
/// a worker binary is found. A user's own image (bring your own container) is never touched, and
/// an image that exists needs no worker binary at all.
async fn worker_image(docker: &DockerRuntime, tag: &str, b: &Backends) -> anyhow::Result<()> {
    let exists = docker.client().inspect_image(tag).await.is_ok();
    if exists && tag != crate::config::DEFAULT_IMAGE {
        return Ok(());
    }
    let worker = match find_worker(b.worker_bin.as_deref()) {
        Ok(w) => w,
        Err(e) if exists => {
            tracing::info!(image = tag, "using the worker image as it is ({e})");
            return Ok(());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("the worker image {tag} is missing"));
        }
    };
    let built = image::ensure_worker_image(docker.client(), tag, &worker, None)
        .await
        .with_context(|| format!("building the worker image {tag} from {}", worker.display()))?;
    if built {
        tracing::info!(image = tag, "built the worker image");
    }
    Ok(())
}

/// The SQLite store at `path`, its folder created.
pub fn sqlite(path: &Path) -> anyhow::Result<SqliteStore> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    SqliteStore::open(path).with_context(|| format!("opening {}", path.display()))
}

/// The webhooks of `settings` (none when no URL is configured), keeping their deliveries in
/// `outbox`; every event names the API's tasks URL as its CloudEvent `source`.
pub fn webhooks(settings: &Settings, outbox: Arc<dyn Outbox>) -> anyhow::Result<Arc<Webhooks>> {
    let source = format!("{}/api/tasks", settings.public_url);
    Webhooks::new(settings.webhooks.clone(), source, outbox).context("setting up the webhooks")
}

/// The webhook outbox of functions mode, beside its task store: a table in the same SQLite
/// file (`db`, the store's), or the collection `<tasks>_webhooks` beside the task collection.
pub async fn functions_outbox(b: &Backends, db: Option<Db>) -> anyhow::Result<Arc<dyn Outbox>> {
    Ok(match (&b.store, db) {
        (StoreTarget::Mongo(m), _) => Arc::new(MongoOutbox::new(&m.uri, &m.db, &m.collection)),
        (StoreTarget::Sqlite(_), Some(db)) => Arc::new(SqliteOutbox::open(db).await?),
        (StoreTarget::Sqlite(_), None) => Arc::new(MemoryOutbox::default()),
    })
}

/// The store of functions mode, and its connection state ([`Gate`]) when it connects in the background
/// (MongoDB: the handler must listen within the host's 30 s, `functions::lazy`). Connecting
/// stops when `stop` is cancelled. A SQLite store's database comes back too, for the tables
/// that live beside the tasks (the webhook outbox).
pub fn functions_store(
    b: &Backends,
    stop: CancellationToken,
) -> anyhow::Result<(Arc<dyn TaskStore>, Gate, Option<Db>)> {
    match &b.store {
        StoreTarget::Sqlite(path) => {
            let store = sqlite(path)?;
            let db = store.db.clone();
            Ok((Arc::new(store), Gate::default(), Some(db)))
        }
        StoreTarget::Mongo(m) => {
            let m = m.clone();
            let connect: lazy::Connect = Box::new(move || {
                let m = m.clone();
                Box::pin(async move {
                    let store = MongoStore::connect(&m.uri, &m.db, &m.collection)
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    let store: Arc<dyn TaskStore> = Arc::new(store);
                    Ok(store)
                })
            });
            let store = LazyStore::spawn(connect, stop);
            Ok((store.clone(), Gate(Some(store)), None))
        }
    }
}
