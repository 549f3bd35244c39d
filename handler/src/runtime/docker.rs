//! The Docker Engine backend (bollard): local mode's default runtime.
//!
//! Each task attempt is one container named by the caller, labelled `eda.managed=true` and
//! `eda.task=<id>` so [`ContainerRuntime::list`] and the `die` event filter find only ours. Its
//! network and hardening come from a [`Containment`] (`containment` explains them; local mode
//! uses the hardened defaults, [`DockerRuntime::connect`] alone keeps the host network). They are
//! never auto-removed: the reconciler reads the exit code and logs first, then calls
//! [`ContainerRuntime::remove`].
//!
//! Engine quirks this file works around (see MACHINE-NOTES): the engine here speaks API 1.41, so
//! the client negotiates down at connect; `stats` with `one_shot` has no CPU delta, so the
//! previous CPU totals are kept per container and the delta is computed here.

use super::containment::{self, Containment, Prepared};
use super::{ContainerRuntime, ContainerSpec, ContainerStatus, Created, RuntimeError};
use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerState, ContainerStateStatusEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StatsOptionsBuilder,
};
use bollard::Docker;
use futures::stream::{BoxStream, StreamExt};
use model::output::Tail;
use model::{Logs, MetricSample};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

mod events;
mod state;
use events::exit_events;
use state::{cpu_between, memory_in_use, parse_rfc3339_ns, to_status, CpuMark};

/// Label on every container this system creates; the filter of `list` and of the exit events.
pub const MANAGED_LABEL: &str = "eda.managed";
/// Label carrying the task id (the container name's middle part), for people using `docker ps`.
pub const TASK_LABEL: &str = "eda.task";

/// First pause before reconnecting the event stream; doubles up to [`EVENTS_MAX_BACKOFF`].
const EVENTS_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long a taken name may stay uninspectable (a concurrent create registering it).
const ADOPT_WAIT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for it.
const ADOPT_POLL: Duration = Duration::from_millis(20);
/// The least wall time a container's first CPU sample averages over ([`DockerRuntime::cpu_percent`]).
const FIRST_SAMPLE_MIN_WALL: Duration = Duration::from_secs(1);
/// Longest pause between two reconnects of the event stream (the daemon restarting).
const EVENTS_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// [`ContainerRuntime`] over the Docker Engine API.
pub struct DockerRuntime {
    /// The client; cheap to clone (the event stream takes its own copy).
    docker: Docker,
    /// The CPU counter seen by the previous [`ContainerRuntime::sample`] of each container, so a
    /// sample is the average since the previous one. Entries are dropped on `remove`.
    cpu_marks: Mutex<HashMap<String, CpuMark>>,
    /// Network and hardening of task containers; fixed at start-up.
    containment: Containment,
    /// `NetworkMode` of task containers, set by [`DockerRuntime::prepare`] (the network's id
    /// or the sandbox); read by every create.
    network_mode: Mutex<String>,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket), negotiates the API
    /// version and pings it, so a missing daemon is reported at start-up, not at the first task.
    pub async fn connect() -> Result<DockerRuntime, RuntimeError> {
        let unreachable = |e| RuntimeError::unavailable_by("the Docker Engine", e);
        let docker = Docker::connect_with_local_defaults()
            .map_err(unreachable)?
            .negotiate_version()
            .await
            .map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(DockerRuntime::with_client(docker))
    }

    /// Wraps an already connected client; containers get the host network and no hardening
    /// until [`DockerRuntime::contained`] says otherwise.
    pub fn with_client(docker: Docker) -> DockerRuntime {
        DockerRuntime {
            docker,
            cpu_marks: Mutex::new(HashMap::new()),
            containment: Containment::legacy(),
            network_mode: Mutex::new("host".into()),
        }
    }

    /// The same runtime, containing its task containers as `c` says. Call
    /// [`DockerRuntime::prepare`] before the first task.
    pub fn contained(mut self, c: Containment) -> DockerRuntime {
        self.containment = c;
        self
    }

    /// How task containers are contained.
    pub fn containment(&self) -> &Containment {
        &self.containment
    }

    /// Creates what task containers need (network, sandbox) when missing; returns the gateway
    /// the worker listener must listen on, if any.
    pub async fn prepare(&self) -> Result<Prepared, RuntimeError> {
        let prepared = containment::prepare(&self.docker, &self.containment).await?;
        *self.network_mode.lock().expect("network mode lock") = prepared.network_mode.clone();
        Ok(prepared)
    }

    /// Creates and starts, or adopts, the container of `spec`.
    async fn create_once(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let mode = self.network_mode.lock().expect("network mode lock").clone();
        match self
            .docker
            .create_container(Some(options), create_body(spec, &self.containment, &mode))
            .await
        {
            Ok(_) => {
                self.start(&spec.name).await?;
                Ok(Created::New)
            }
            Err(e) if status_of(&e) == Some(409) => self.adopt(&spec.name).await,
            Err(e) => Err(map_err(e)),
        }
    }

    /// The client, for callers that need more of the API (building the worker image).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Starts an existing container; "already started" (304) is success.
    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    /// A container that exists (409 on create): started if it never was, otherwise untouched.
    async fn adopt(&self, name: &str) -> Result<Created, RuntimeError> {
        let state = self.inspect_existing(name).await?;
        let never_started = state.as_ref().is_some_and(|s| {
            s.status == Some(ContainerStateStatusEnum::CREATED)
                && s.error.as_deref().unwrap_or("").is_empty()
        });
        if never_started {
            self.start(name).await?;
        }
        Ok(Created::AlreadyExisted)
    }

    /// The state of a container whose name is taken. While a concurrent create is still
    /// registering it, the name is reserved but inspect answers 404 for a moment: poll briefly.
    async fn inspect_existing(&self, name: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let deadline = tokio::time::Instant::now() + ADOPT_WAIT;
        loop {
            match self.docker.inspect_container(name, None).await {
                Ok(info) => return Ok(info.state),
                Err(e) if status_of(&e) == Some(404) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(RuntimeError::unavailable_by(
                            format!("container {name} is taken but cannot be inspected"),
                            e,
                        ));
                    }
                    tokio::time::sleep(ADOPT_POLL).await;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    /// The CPU percentage since the previous mark of `name` (or since the container started).
    ///
    /// Since the start, the wall time counts as at least [`FIRST_SAMPLE_MIN_WALL`]: the
    /// container's CPU counter runs from before Docker's `StartedAt` (its cgroup is charged
    /// while runc sets it up), so a sample a few milliseconds after the start read as several
    /// hundred percent under load (seen in the conformance suite at 0.5 CPU). The first second
    /// is under-reported instead, never over-reported.
    fn cpu_percent(&self, name: &str, now: CpuMark, started_ns: Option<i128>) -> f64 {
        let mut marks = self.cpu_marks.lock().expect("cpu marks lock");
        if let Some(prev) = marks.insert(name.to_string(), now) {
            return cpu_between(prev, now);
        }
        let min_wall = FIRST_SAMPLE_MIN_WALL.as_nanos() as i128;
        started_ns.map_or(0.0, |at_ns| {
            let start = CpuMark {
                used_ns: 0,
                at_ns: at_ns.min(now.at_ns - min_wall),
            };
            cpu_between(start, now)
        })
    }
}

/// The HTTP status the daemon answered, if it answered.
pub(crate) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps a client error to the trait's error, keeping it as the source: transport failures are
/// transient, 404 on create is a missing image, other 4xx are refusals, the rest is
/// [`RuntimeError::Docker`].
pub(crate) fn map_err(e: DockerError) -> RuntimeError {
    let message = String::from("Docker Engine");
    match &e {
        DockerError::DockerResponseServerError {
            status_code,
            message: said,
        } => match status_code {
            404 if said.to_ascii_lowercase().contains("image") => RuntimeError::ImageMissing {
                message,
                source: Some(e.into()),
            },
            400..=499 => RuntimeError::Rejected {
                message,
                source: Some(e.into()),
            },
            502..=504 => RuntimeError::unavailable_by(message, e),
            _ => RuntimeError::Docker(e),
        },
        DockerError::HyperLegacyError { .. }
        | DockerError::HyperResponseError { .. }
        | DockerError::IOError { .. }
        | DockerError::SocketNotFoundError(_)
        | DockerError::RequestTimeoutError => RuntimeError::unavailable_by(message, e),
        _ => RuntimeError::Docker(e),
    }
}

/// Ok(None) for "no such container", so idempotent calls can ignore it.
fn absent_is_none<T>(r: Result<T, DockerError>) -> Result<Option<T>, RuntimeError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if status_of(&e) == Some(404) => Ok(None),
        Err(e) => Err(map_err(e)),
    }
}

/// The create body: the worker image with the spec's args, env, labels and limits, contained
/// as `c` says on `network_mode`.
fn create_body(spec: &ContainerSpec, c: &Containment, network_mode: &str) -> ContainerCreateBody {
    let env = spec
        .env
        .iter()
        .chain(&spec.secret_env)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let task = model::naming::parse_container_name(&spec.name)
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    let labels = HashMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (TASK_LABEL.to_string(), task),
    ]);
    let memory = i64::from(spec.resources.memory_mb) * 1024 * 1024;
    let mut body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.args.clone()),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(HostConfig {
            memory: (memory > 0).then_some(memory),
            // No swap: the memory asked for is a hard limit, as in ACI.
            memory_swap: (memory > 0).then_some(memory),
            nano_cpus: (spec.resources.cpu > 0.0).then_some((spec.resources.cpu * 1e9) as i64),
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.apply(&mut body, network_mode);
    body
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        let first = self.create_once(spec).await;
        let retry = self.containment.shares_netns()
            && matches!(
                first,
                Err(RuntimeError::Rejected { .. } | RuntimeError::Docker(_))
            );
        if !retry {
            return first;
        }
        // The sandbox holding the shared namespace may be gone (removed by hand, or not yet
        // restarted after the daemon was): bring it back, drop the half-made container (never
        // started, so nothing ran), and try once more.
        if let Err(e) = &first {
            tracing::warn!(container = %spec.name, error = %e, "start failed; checking the network sandbox and retrying once");
        }
        self.prepare().await?;
        self.remove(&spec.name).await?;
        self.create_once(spec).await
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        let info = absent_is_none(self.docker.inspect_container(name, None).await)?;
        Ok(info.map(|i| to_status(i.state.unwrap_or_default())))
    }

    async fn kill(&self, name: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.docker.kill_container(name, Some(options)).await {
            // 404: gone; 409: not running. Both mean "it is not running", which is the goal.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            r => r.map_err(map_err),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.cpu_marks.lock().expect("cpu marks lock").remove(name);
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            // 409: a removal is already in progress.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            r => r.map_err(map_err),
        }
    }

    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("all")
            .build();
        let mut stream = self.docker.logs(name, Some(options));
        let mut tail = Tail::new(max_bytes);
        while let Some(item) = stream.next().await {
            match item {
                Ok(out) => tail.push(out.as_ref()),
                Err(e) if status_of(&e) == Some(404) => {
                    return Err(RuntimeError::NoSuchContainer(name.to_string()))
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(tail.into_logs())
    }

    async fn sample(&self, name: &str) -> Result<Option<MetricSample>, RuntimeError> {
        let Some(info) = absent_is_none(self.docker.inspect_container(name, None).await)? else {
            return Ok(None);
        };
        let state = info.state.unwrap_or_default();
        if state.status != Some(ContainerStateStatusEnum::RUNNING) {
            return Ok(None);
        }
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let stats = match self.docker.stats(name, Some(options)).next().await {
            Some(Ok(s)) => s,
            Some(Err(e)) if status_of(&e) == Some(404) => return Ok(None),
            Some(Err(e)) => return Err(map_err(e)),
            None => return Ok(None),
        };
        let at_ns = stats.read.as_deref().and_then(parse_rfc3339_ns);
        let used_ns = stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage);
        let (Some(at_ns), Some(used_ns)) = (at_ns, used_ns) else {
            // Stopped between inspect and stats: the daemon sends an empty sample.
            return Ok(None);
        };
        let started = state.started_at.as_deref().and_then(parse_rfc3339_ns);
        let cpu_percent = self.cpu_percent(name, CpuMark { used_ns, at_ns }, started);
        let memory_bytes = stats.memory_stats.as_ref().map_or(0, memory_in_use);
        Ok(Some(MetricSample {
            at_ms: (at_ns / 1_000_000) as i64,
            cpu_percent,
            memory_bytes,
        }))
    }

    /// Pulls `image` unless it is present (an allowed image a task asked for).
    async fn prefetch(&self, image: &str) -> Result<(), RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(map_err(e)),
        }
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut pull = Box::pin(self.docker.create_image(Some(options), None, None));
        while let Some(step) = pull.next().await {
            step.map_err(map_err)?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{MANAGED_LABEL}=true")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(map_err)?;
        Ok(containers
            .into_iter()
            .filter_map(|c| c.names?.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| n.starts_with(model::naming::PREFIX))
            .collect())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        let options = RenameContainerOptionsBuilder::new().name(to).build();
        match self.docker.rename_container(from, options).await {
            Err(e) if status_of(&e) == Some(404) => {
                Err(RuntimeError::NoSuchContainer(from.to_string()))
            }
            r => r.map_err(map_err),
        }
    }

    fn exits(&self) -> Option<BoxStream<'static, String>> {
        Some(exit_events(self.docker.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Resources;

    #[test]
    fn the_first_sample_averages_since_start() {
        let rt = DockerRuntime::with_client(Docker::connect_with_local_defaults().unwrap());
        let now = CpuMark {
            used_ns: 2_000_000_000,
            at_ns: 4_000_000_000,
        };
        assert_eq!(rt.cpu_percent("c", now, Some(0)), 50.0);
        let later = CpuMark {
            used_ns: 3_000_000_000,
            at_ns: 5_000_000_000,
        };
        assert_eq!(rt.cpu_percent("c", later, Some(0)), 100.0);
        // 20 ms of CPU 5 ms after the start is not 400 %: the first wall is at least 1 s.
        let early = CpuMark {
            used_ns: 20_000_000,
            at_ns: 5_000_000,
        };
        assert_eq!(rt.cpu_percent("d", early, Some(0)), 2.0);
    }

    #[test]
    fn create_body_has_limits_labels_and_the_given_network() {
        let spec = ContainerSpec {
            name: "eda-abc-1".into(),
            image: "img".into(),
            args: vec!["--seconds".into(), "1".into()],
            env: vec![("MESSAGE".into(), "m".into())],
            secret_env: vec![("TASK_TOKEN".into(), "t".into())],
            resources: Resources {
                cpu: 0.5,
                memory_mb: 64,
            },
        };
        let body = create_body(&spec, &Containment::legacy(), "host");
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(body.env.unwrap(), ["MESSAGE=m", "TASK_TOKEN=t"]);
        assert_eq!(body.labels.unwrap()[TASK_LABEL], "abc");
    }
}
