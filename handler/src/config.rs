//! The only place the handler reads its command line and environment.
//!
//! Raw flags ([`Cli`]) are turned into resolved [`Settings`] in one step ([`Settings::resolve`]),
//! so the rest of the code never looks at `std::env`. Every default is stated on its flag.

mod azure;
mod backends;
mod containment;
mod shape;
mod webhooks;

pub use azure::AzureArgs;
pub use containment::{ContainmentArgs, TaskNetns, TaskNetwork};
pub use shape::{KeyCaps, ShapeArgs, ShapeSettings};
pub use webhooks::{WebhookArgs, WebhookEvents, WebhookSettings};

pub use crate::runtime::containment::{Containment, Hardening};
pub use backends::{
    find_worker, worker_candidates, Backends, MongoTarget, StoreChoice, StoreTarget,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use model::Resources;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The worker image local mode builds (and refreshes) itself.
pub const DEFAULT_IMAGE: &str = "eda-worker:latest";

/// Event-Driven ACI: one container per queue message, with a live dashboard.
#[derive(Debug, Parser)]
#[command(name = "handler", version, about)]
pub struct Cli {
    /// What to do; `local` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The handler's modes and client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine: API, dashboard, SQLite queue and store, Docker or processes.
    Local(LocalArgs),
    /// Run as an Azure Functions custom handler (the Functions host starts this).
    Functions(FunctionsArgs),
    /// Put work on the queue of a running handler.
    Submit(SubmitArgs),
    /// List the tasks of a running handler.
    Tasks(TasksArgs),
    /// Show the warm pool of a running handler (`--warm`).
    Pool(PoolArgs),
    /// With the Function App's settings and identity, check every Azure dependency and say what
    /// to fix (nothing billable is created). Run it in the Function App's console (Kudu/SSH).
    Check(CheckArgs),
}

/// `handler check`: the same Azure settings as `handler functions`, plus what only the check
/// needs.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Worker image the container groups run.
    #[arg(long, env = "EDA_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Service Bus namespace of the trigger and output bindings (the app setting the bindings'
    /// identity-based connection uses).
    #[arg(long, env = "ServiceBusConnection__fullyQualifiedNamespace")]
    pub service_bus_namespace: Option<String>,
    /// Base URL to reach Service Bus at (default `https://<namespace>`; tests: a stand-in).
    #[arg(long, env = "EDA_SERVICE_BUS_ENDPOINT")]
    pub service_bus_endpoint: Option<String>,
    /// Base URL of the image registry (default `https://<registry server>`; tests: a stand-in).
    #[arg(long, env = "EDA_REGISTRY_ENDPOINT")]
    pub registry_endpoint: Option<String>,
    /// Azure resources and endpoints, as `handler functions` reads them.
    #[command(flatten)]
    pub azure: Box<AzureArgs>,
}

/// Where tasks run (`--runtime`, both modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeChoice {
    /// Docker when the engine answers, else child processes.
    Auto,
    /// Docker Engine only (fail at start when it does not answer).
    Docker,
    /// Child processes of the handler.
    Process,
    /// Azure Container Instances over ARM (functions mode; needs the Azure settings and a
    /// managed identity).
    Aci,
}

/// Settings that every mode that runs tasks shares.
#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Most containers running at once (the spawner waits for a free slot before taking the
    /// next message).
    #[arg(long, env = "EDA_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Attempts per task before it stays Failed.
    #[arg(long, env = "EDA_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Deliveries of one queue message before it is dead-lettered (spawn errors).
    #[arg(long, env = "EDA_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u32,
    /// Seconds a task may run before its container is killed (TimedOut).
    #[arg(long, env = "EDA_TIMEOUT_SECS", default_value_t = 600)]
    pub timeout_secs: u32,
    /// First retry backoff in milliseconds; doubles each attempt.
    #[arg(long, env = "EDA_RETRY_BACKOFF_MS", default_value_t = 1000)]
    pub retry_backoff_ms: u64,
    /// CPU cores per container (ACI accepts fractions).
    #[arg(long, env = "EDA_CPU", default_value_t = 1.0)]
    pub cpu: f64,
    /// Memory per container in MiB (a hard limit on Docker and the process runtime).
    #[arg(long, env = "EDA_MEMORY_MB", default_value_t = 1536)]
    pub memory_mb: u32,
    /// Price of one vCPU-second (default: ACI Linux pay-as-you-go, USD).
    #[arg(long, env = "EDA_RATE_CPU_SECOND", default_value_t = 0.0000135)]
    pub rate_cpu_second: f64,
    /// Price of one GB-second of memory (default: ACI Linux pay-as-you-go, USD).
    #[arg(long, env = "EDA_RATE_GB_SECOND", default_value_t = 0.0000015)]
    pub rate_gb_second: f64,
    /// Worker image.
    #[arg(long, env = "EDA_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// One argument for the worker in each container; repeat it (e.g. `--worker-arg=--seconds
    /// --worker-arg=5`, or `--worker-arg=-- --worker-arg=my-cmd` to wrap a command).
    #[arg(long = "worker-arg", allow_hyphen_values = true)]
    pub worker_args: Vec<String>,
    /// Milliseconds between the reconciler's sweeps (exits are also pushed by Docker events).
    #[arg(long, env = "EDA_SWEEP_MS", default_value_t = 2000)]
    pub sweep_ms: u64,
    /// Seconds a container may stay missing after it was asked for before the attempt fails.
    #[arg(long, env = "EDA_PROVISION_GRACE_SECS", default_value_t = 60)]
    pub provision_grace_secs: u64,
    /// Images, sizes, per-key caps and backpressure ([`ShapeArgs`]).
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Completion webhooks (`crate::webhooks`).
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Seconds a finished task is kept (with its logs and metrics) before retention removes
    /// it; 0 keeps finished tasks forever. Default 7 days.
    #[arg(long, env = "EDA_RETENTION_SECS", default_value_t = 7 * 86_400)]
    pub retention_secs: u64,
}

/// `handler local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Address to listen on. Anything but loopback needs --api-key.
    #[arg(long, env = "EDA_BIND", default_value = "127.0.0.1:7071")]
    pub bind: SocketAddr,
    /// Folder for the SQLite database and captured logs.
    #[arg(long, env = "EDA_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Container runtime.
    #[arg(long, env = "EDA_RUNTIME", value_enum, default_value_t = RuntimeChoice::Auto)]
    pub runtime: RuntimeChoice,
    /// Worker binary: run by the process runtime, and copied into the image when the Docker
    /// runtime builds a missing worker image (not needed when the image exists). Default:
    /// looked for under target/x86_64-unknown-linux-musl/release/ (`cargo xtask worker`), then
    /// next to this executable.
    #[arg(long, env = "EDA_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// URL workers call back. Default: the worker listener on the task network's gateway
    /// (Docker, `bridge`/`isolated`), else `http://<bind>`. Given, no worker listener starts.
    #[arg(long, env = "EDA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// API key required on /api routes (as `Authorization: Bearer` or `x-api-key`).
    #[arg(long, env = "EDA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Folder of the built dashboard to serve instead of the embedded one.
    #[arg(long, env = "EDA_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Origins allowed to call the API from a browser (CORS), e.g. the dashboard hosted as a
    /// static site elsewhere; repeat or comma-separate. None by default: same origin only.
    #[arg(long = "cors-origin", env = "EDA_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Warm pool: containers of the worker image and default resource shape kept created and
    /// started, their worker waiting for a task, so a message claims one instead of starting
    /// a cold container (`crate::pool`). 0 (the default): every message starts cold. Docker
    /// runtime only.
    #[arg(long, env = "EDA_WARM", default_value_t = 0)]
    pub warm: usize,
    /// Seconds a warm container may wait unclaimed before it is replaced by a fresh one.
    #[arg(long, env = "EDA_WARM_MAX_AGE_SECS", default_value_t = 600)]
    pub warm_max_age_secs: u64,
    /// Task settings.
    #[command(flatten)]
    pub task: TaskArgs,
    /// Containment of task containers (Docker runtime; boxed: it would make `Command` large).
    #[command(flatten)]
    pub containment: Box<ContainmentArgs>,
}

/// `handler functions`.
#[derive(Debug, Clone, Args)]
pub struct FunctionsArgs {
    /// Port the Functions host forwards invocations to.
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 7072)]
    pub port: u16,
    /// Where task state lives: `mongo` (Cosmos DB in Azure) or `sqlite` (a file in
    /// --data-dir: the Functions path on a laptop).
    #[arg(long, env = "EDA_STORE", value_enum, default_value_t = StoreChoice::Mongo)]
    pub store: StoreChoice,
    /// Where tasks run: `aci` (Azure), or `docker` / `process` / `auto` on a laptop. Docker
    /// tasks use the host network here, so they reach the Functions host's URL.
    #[arg(long, env = "EDA_RUNTIME", value_enum, default_value_t = RuntimeChoice::Aci)]
    pub runtime: RuntimeChoice,
    /// Folder for the SQLite store and the process runtime's logs.
    #[arg(long, env = "EDA_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Worker binary (process runtime; Docker builds the worker image from it when missing).
    /// Default: looked for under target/x86_64-unknown-linux-musl/release/, then next to
    /// this executable.
    #[arg(long, env = "EDA_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Task settings.
    #[command(flatten)]
    pub task: TaskArgs,
    /// Azure resources and endpoints (boxed: they would make every `Command` as large).
    #[command(flatten)]
    pub azure: Box<AzureArgs>,
}

/// `handler submit`.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// The work: one task per argument.
    #[arg(required = true)]
    pub work: Vec<String>,
    /// Copies of each.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Priority (higher runs first; -1000..=1000).
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Start no earlier than this many seconds from now.
    #[arg(long, conflicts_with = "not_before")]
    pub delay: Option<u64>,
    /// Start no earlier than this time (RFC 3339, e.g. 2026-01-02T03:04:05Z).
    #[arg(long)]
    pub not_before: Option<String>,
    /// Concurrency key (its tasks run at most the key's cap at once).
    #[arg(long)]
    pub key: Option<String>,
    /// Image to run (one of the handler's --allowed-image, or the worker image).
    #[arg(long)]
    pub image: Option<String>,
    /// CPU cores of each container.
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory of each container in MiB.
    #[arg(long)]
    pub memory_mb: Option<u32>,
    /// A label `name=value`; repeat for more.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// API of the running handler.
    #[arg(long, env = "EDA_API", default_value = "http://127.0.0.1:7071")]
    pub api: String,
    /// API key, if the handler needs one.
    #[arg(long, env = "EDA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A `name=value` label of `handler submit --label` (the handler checks the rules).
fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: use name=value"))
}

/// `handler tasks`.
#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// Only these states (comma-separated, or active / finished / failed).
    #[arg(long)]
    pub state: Option<String>,
    /// Most tasks shown.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// API of the running handler.
    #[arg(long, env = "EDA_API", default_value = "http://127.0.0.1:7071")]
    pub api: String,
    /// API key, if the handler needs one.
    #[arg(long, env = "EDA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `handler pool`.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// API of the running handler.
    #[arg(long, env = "EDA_API", default_value = "http://127.0.0.1:7071")]
    pub api: String,
    /// API key, if the handler needs one.
    #[arg(long, env = "EDA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Errors in the configuration, found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A non-loopback bind without an API key would expose the API.
    #[error("binding {0} (not loopback) requires --api-key / EDA_API_KEY")]
    OpenBindWithoutKey(SocketAddr),
    /// A value is out of its range.
    #[error("{0}")]
    OutOfRange(String),
    /// A setting the chosen backend needs is missing.
    #[error("{0}")]
    Missing(String),
    /// No worker binary where it was looked for.
    #[error("no worker binary: looked at {}; build it with `cargo xtask worker`, or give --worker-bin / EDA_WORKER_BIN", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoWorker(Vec<PathBuf>),
}

/// Resolved settings of the task pipeline, shared by both modes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most containers at once.
    pub concurrency: usize,
    /// Default attempts per task.
    pub max_attempts: u32,
    /// Deliveries of one message before dead-lettering.
    pub max_deliveries: u32,
    /// Default timeout per task.
    pub timeout_secs: u32,
    /// First retry backoff; doubles per attempt.
    pub retry_backoff: Duration,
    /// Resources of each container.
    pub resources: Resources,
    /// Price per vCPU-second and per GB-second.
    pub rates: (f64, f64),
    /// Worker image.
    pub image: String,
    /// Worker arguments.
    pub worker_args: Vec<String>,
    /// Reconciler sweep period.
    pub sweep: Duration,
    /// How long a container may stay missing after it was asked for.
    pub provision_grace: Duration,
    /// Base URL of the API as workers see it (no trailing slash).
    pub public_url: String,
    /// API key for /api routes, if any.
    pub api_key: Option<String>,
    /// What a task may ask for, per-key caps and backpressure.
    pub shape: ShapeSettings,
    /// Completion webhooks (none when no URL is configured).
    pub webhooks: WebhookSettings,
    /// How long finished tasks are kept; `None` keeps them forever (`--retention-secs 0`).
    pub retention: Option<Duration>,
}

impl Settings {
    /// Resolves and checks the task settings; `public_url` and `api_key` come from the mode.
    pub fn resolve(
        t: &TaskArgs,
        public_url: String,
        api_key: Option<String>,
    ) -> Result<Settings, ConfigError> {
        let range = |ok: bool, what: &str| {
            ok.then_some(())
                .ok_or_else(|| ConfigError::OutOfRange(what.to_string()))
        };
        range(
            t.concurrency >= 1 && t.concurrency <= 10_000,
            "--concurrency must be 1..=10000",
        )?;
        range(
            t.max_attempts >= 1 && t.max_attempts <= model::limits::MAX_ATTEMPTS,
            "--max-attempts must be 1..=10",
        )?;
        range(t.max_deliveries >= 1, "--max-deliveries must be at least 1")?;
        range(
            t.timeout_secs >= 1 && t.timeout_secs <= model::limits::MAX_TIMEOUT_SECS,
            "--timeout-secs must be 1..=86400",
        )?;
        range(
            t.cpu > 0.0 && t.memory_mb >= 16,
            "--cpu must be > 0 and --memory-mb >= 16",
        )?;
        let resources = Resources {
            cpu: t.cpu,
            memory_mb: t.memory_mb,
        };
        let shape = t.shape.resolve(&t.image, resources)?;
        Ok(Settings {
            shape,
            concurrency: t.concurrency,
            max_attempts: t.max_attempts,
            max_deliveries: t.max_deliveries,
            timeout_secs: t.timeout_secs,
            retry_backoff: Duration::from_millis(t.retry_backoff_ms),
            resources: Resources {
                cpu: t.cpu,
                memory_mb: t.memory_mb,
            },
            rates: (t.rate_cpu_second, t.rate_gb_second),
            image: t.image.clone(),
            worker_args: t
                .worker_args
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            sweep: Duration::from_millis(t.sweep_ms.max(50)),
            provision_grace: Duration::from_secs(t.provision_grace_secs),
            public_url: public_url.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            webhooks: t.webhooks.resolve()?,
            retention: (t.retention_secs > 0).then(|| Duration::from_secs(t.retention_secs)),
        })
    }
}

impl LocalArgs {
    /// Resolves local mode's settings; refuses an open bind without an API key.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if !self.bind.ip().is_loopback() && self.api_key.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::OpenBindWithoutKey(self.bind));
        }
        let url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind));
        Settings::resolve(&self.task, url, self.api_key.clone())
    }
}

/// Resolved settings of the warm pool (`handler local --warm`).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    /// Warm containers kept waiting (0: no pool).
    pub size: usize,
    /// Age at which an unclaimed warm container is replaced.
    pub max_age: Duration,
}

/// Most warm containers (each holds the memory of a task container while it waits).
pub const MAX_WARM: usize = 256;

impl LocalArgs {
    /// Resolves the warm pool's settings; the size is capped at [`MAX_WARM`].
    pub fn pool(&self) -> Result<PoolSettings, ConfigError> {
        if self.warm > MAX_WARM {
            return Err(ConfigError::OutOfRange(format!(
                "--warm must be 0..={MAX_WARM} (each warm container holds a task container's memory)"
            )));
        }
        if self.warm_max_age_secs < 5 {
            return Err(ConfigError::OutOfRange(
                "--warm-max-age-secs must be at least 5".into(),
            ));
        }
        Ok(PoolSettings {
            size: self.warm,
            max_age: Duration::from_secs(self.warm_max_age_secs),
        })
    }
}

impl FunctionsArgs {
    /// Resolves functions mode's settings: workers call back on the Function App's own host name.
    /// The HTTP functions are anonymous (the worker's report carries its task token, not a
    /// function key), so the API key is required here.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if self.azure.api_key.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::OutOfRange(
                "functions mode requires --api-key / EDA_API_KEY: the HTTP functions are anonymous"
                    .into(),
            ));
        }
        let url = self
            .azure
            .public_url
            .clone()
            .or_else(|| {
                let host = self.azure.website_hostname.as_deref()?;
                Some(format!("https://{host}"))
            })
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", self.port));
        Settings::resolve(&self.task, url, self.azure.api_key.clone())
    }
}

/// Parses `handler local ...` arguments (tests start local mode in-process with real flags).
pub fn local_args(argv: &[String]) -> Result<LocalArgs, clap::Error> {
    match Cli::try_parse_from(argv)?.command {
        Some(Command::Local(args)) => Ok(args),
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidSubcommand,
            "expected `local`",
        )),
    }
}

/// Reads the environment variable `name` (for callers outside this module that need one raw
/// value, such as tests' mandatory-in-CI switches).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// True when running in CI (`CI=true`): tests that need Docker or Chromium must fail, not skip.
pub fn in_ci() -> bool {
    env("CI").is_some_and(|v| v == "true" || v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containment(flags: &[&str]) -> Result<Containment, ConfigError> {
        let argv: Vec<String> = ["handler", "local"]
            .iter()
            .chain(flags)
            .map(|s| s.to_string())
            .collect();
        local_args(&argv)
            .expect("flags parse")
            .containment
            .resolve()
    }

    #[test]
    fn the_defaults_are_the_hardened_bridge() {
        let c = containment(&[]).unwrap();
        assert_eq!(c.network, TaskNetwork::Bridge);
        assert_eq!(c.network_name, "eda-tasks");
        let h = c.hardening;
        assert_eq!(h.user.as_deref(), Some("65534:65534"));
        assert!(h.read_only && h.drop_all_caps && h.no_new_privileges);
        assert_eq!((h.tmpfs_mb, h.pids_limit), (64, 256));
        assert!(h.cap_add.is_empty());
    }

    #[test]
    fn a_worker_that_needs_more_says_so() {
        let c = containment(&[
            "--task-network=isolated",
            "--task-user=image",
            "--task-read-only=false",
            "--task-cap-add=cap_net_bind_service,SYS_PTRACE",
            "--task-pids-limit=0",
        ])
        .unwrap();
        assert_eq!(c.network_name, "eda-tasks-isolated");
        assert_eq!(c.hardening.user, None);
        assert!(!c.hardening.read_only);
        assert_eq!(c.hardening.cap_add, ["NET_BIND_SERVICE", "SYS_PTRACE"]);
        assert_eq!(c.hardening.pids_limit, 0);
    }

    #[test]
    fn the_warm_pool_is_off_by_default_and_bounded() {
        let args = |flags: &[&str]| {
            let argv: Vec<String> = ["handler", "local"]
                .iter()
                .chain(flags)
                .map(|s| s.to_string())
                .collect();
            local_args(&argv).expect("flags parse").pool()
        };
        let off = args(&[]).unwrap();
        assert_eq!((off.size, off.max_age), (0, Duration::from_secs(600)));
        let on = args(&["--warm", "4", "--warm-max-age-secs", "30"]).unwrap();
        assert_eq!((on.size, on.max_age), (4, Duration::from_secs(30)));
        let e = args(&["--warm", "100000"]).unwrap_err().to_string();
        assert!(e.contains("--warm must be"), "{e}");
        let e = args(&["--warm-max-age-secs", "1"]).unwrap_err().to_string();
        assert!(e.contains("--warm-max-age-secs"), "{e}");
    }

    #[test]
    fn bad_containment_flags_are_refused_by_name() {
        for (flag, named) in [
            ("--task-cap-add=ALL", "--task-cap-add"),
            ("--task-cap-add=net-admin", "--task-cap-add"),
            ("--task-user=a b", "--task-user"),
            ("--task-pids-limit=-1", "--task-pids-limit"),
            ("--task-network-name=-x", "--task-network-name"),
            ("--task-tmpfs-mb=100000", "--task-tmpfs-mb"),
        ] {
            let e = containment(&[flag]).unwrap_err().to_string();
            assert!(e.contains(named), "{flag}: {e}");
        }
    }
}
