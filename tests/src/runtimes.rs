//! The backends of the container runtime conformance suite ([`crate::runtime_conformance`]):
//! the static worker binary, the Docker test image, one [`Harness`] per backend ([`process`],
//! [`docker`], [`aci`], [`fake`]), unique container names and polling.

use crate::aci_containers::Driver;
use crate::runtime_conformance::{Gap, Harness, Work};
use handler::runtime::docker::DockerRuntime;
use handler::runtime::fake::{FakeRuntime, Script};
use handler::runtime::process::ProcessRuntime;
use handler::runtime::{ContainerRuntime, ContainerSpec};
use model::Resources;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Tag of the image the tests build: the worker plus a static busybox (for `sh -c ...`).
pub const TEST_IMAGE: &str = "eda-worker-test:latest";
/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// Musl target of the worker: a static binary runs in a `FROM scratch` image.
const MUSL: &str = "x86_64-unknown-linux-musl";

/// The static (musl) worker binary: `EDA_WORKER_MUSL` if set, else built once per test binary
/// with `cargo build -p worker --release --target x86_64-unknown-linux-musl` into its own
/// target dir (the outer `cargo test` holds the lock of the usual one).
pub fn musl_worker() -> &'static Path {
    static WORKER: OnceLock<PathBuf> = OnceLock::new();
    WORKER.get_or_init(|| {
        if let Some(path) = handler::config::env("EDA_WORKER_MUSL") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target_dir = handler::config::env("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"))
            .join("worker-musl");
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let status = std::process::Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "-p", "worker", "--release", "--target", MUSL])
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("run cargo to build the musl worker");
        assert!(status.success(), "building the musl worker failed");
        target_dir.join(MUSL).join("release").join("worker")
    })
}

/// Builds (if needed) [`TEST_IMAGE`] around [`musl_worker`] and busybox; once per test binary.
pub async fn docker_test_image(rt: &DockerRuntime) -> &'static str {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            assert!(
                Path::new(BUSYBOX).exists(),
                "{BUSYBOX} is missing: apt-get install -y busybox-static"
            );
            let worker = tokio::task::spawn_blocking(musl_worker).await.unwrap();
            handler::runtime::image::ensure_worker_image(
                rt.client(),
                TEST_IMAGE,
                worker,
                Some(Path::new(BUSYBOX)),
            )
            .await
            .expect("build the worker test image");
        })
        .await;
    TEST_IMAGE
}

/// Worker arguments for `work` (the process runtime, Docker and ACI all run the worker).
pub fn worker_args(work: &Work) -> Vec<String> {
    let sh = |script: String| vec!["--".into(), "sh".into(), "-c".into(), script];
    match work {
        Work::Demo { seconds } => vec!["--seconds".into(), seconds.to_string()],
        Work::Print { out, err, code } => sh(format!("echo {out}; echo {err} >&2; exit {code}")),
        // Doubles a shell string up to 512 MiB (bounded, in case no limit applies).
        Work::Hog => {
            sh("x=a; while [ ${#x} -lt 500000000 ]; do x=$x$x; done; echo no-limit".to_string())
        }
    }
}

/// The spec of `work` as container `name` of `image`: 0.5 CPU and 128 MiB.
pub fn worker_spec(name: &str, image: &str, work: &Work) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        args: worker_args(work),
        env: vec![
            ("MESSAGE".into(), "conformance".into()),
            ("CONTAINER_NAME".into(), name.to_string()),
        ],
        secret_env: vec![("TASK_TOKEN".into(), "not-a-real-token".into())],
        resources: Resources {
            cpu: 0.5,
            memory_mb: 128,
        },
    }
}

/// A folder removed on drop, kept by a harness.
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The process runtime running the musl worker, logging to a fresh temporary directory.
pub async fn process() -> Option<Harness> {
    let worker = tokio::task::spawn_blocking(musl_worker).await.unwrap();
    let logs_dir = std::env::temp_dir().join(format!("eda-conformance-{}", unique("logs")));
    let rt = ProcessRuntime::new(worker.to_path_buf(), logs_dir.clone());
    let mut gaps = Vec::new();
    if !rt.enforces_memory_limit() {
        gaps.push((Gap::MemoryLimit, "memory cgroups are not writable here"));
    }
    let broken = ProcessRuntime::new(logs_dir.join("no-such-worker"), logs_dir.clone());
    Some(Harness {
        rt: Arc::new(rt),
        spec: Box::new(|name, work| worker_spec(name, "unused", work)),
        broken: (Arc::new(broken), "unused".into()),
        gaps,
        keep: vec![Box::new(Folder(logs_dir))],
    })
}

/// The Docker runtime with the test image, or `None` (skipped) without a Docker Engine.
pub async fn docker() -> Option<Harness> {
    if !crate::need("docker", crate::docker_available()) {
        return None;
    }
    let rt = DockerRuntime::connect().await.expect("connect to Docker");
    let image = docker_test_image(&rt).await.to_string();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(rt);
    Some(Harness {
        broken: (rt.clone(), "eda-no-such-image:never".into()),
        rt,
        spec: Box::new(move |name, work| worker_spec(name, &image, work)),
        gaps: Vec::new(),
        keep: Vec::new(),
    })
}

/// The ACI runtime against the ARM stand-in ([`crate::arm`]), whose container groups run the
/// real worker ([`crate::aci_containers`]); `broken` is a second stand-in whose create
/// operations fail with `InaccessibleImage` ([SPEC] error codes, `aci::is_image_error`).
pub async fn aci() -> Option<Harness> {
    let worker = tokio::task::spawn_blocking(musl_worker).await.unwrap();
    let arm = crate::arm::stand_in(3600).await;
    let containers = Driver::start(arm.world.clone(), worker.to_path_buf());
    let broken = crate::arm::stand_in(3600).await;
    broken.world.lock().unwrap().fail_op = Some("InaccessibleImage".into());
    let image = "myacr.azurecr.io/eda-worker:1".to_string();
    Some(Harness {
        rt: Arc::new(crate::arm::runtime(&arm)),
        broken: (Arc::new(crate::arm::runtime(&broken)), image.clone()),
        spec: Box::new(move |name, work| worker_spec(name, &image, work)),
        gaps: vec![
            (Gap::ExitEvents, "ACI has no exit events; the ReconcileTimer sweep finds exits"),
            (Gap::KillExitCode, "a stopped group may have no container view left to carry an exit code (aci::status_of)"),
            (Gap::ConcurrentCreateNew, "PUT is idempotent by name: two concurrent creates both PUT and both answer New; one group exists"),
            (Gap::SampleUntilRemoved, "Azure Monitor keeps answering a stopped group's per-minute averages"),
            (Gap::FailedCreateLeavesGroup, "ARM keeps a group whose provisioning failed until it is deleted"),
            (Gap::MemoryLimit, "the stand-in runs the worker as a plain process: no limit to enforce"),
        ],
        keep: vec![Box::new(containers), Box::new(arm), Box::new(broken)],
    })
}

/// The in-memory [`FakeRuntime`]: each container is scripted to do what its work would (the
/// demo's output and exit after its seconds, the printed lines and exit code), so the suite
/// checks the fake's bookkeeping: names, phases, exit codes, kill, logs, samples, exits.
pub async fn fake() -> Option<Harness> {
    let rt = FakeRuntime::new();
    let missing = "eda-no-such-image:never";
    rt.missing_image(missing);
    let scripted = rt.clone();
    let spec = move |name: &str, work: &Work| {
        scripted.script(name, fake_script(work));
        worker_spec(name, "fake", work)
    };
    let rt: Arc<dyn ContainerRuntime> = Arc::new(rt);
    Some(Harness {
        broken: (rt.clone(), missing.into()),
        rt,
        spec: Box::new(spec),
        gaps: vec![(
            Gap::MemoryLimit,
            "the fake runs no process, so there is no memory to limit",
        )],
        keep: Vec::new(),
    })
}

/// What `work` would do, as a [`Script`] for the fake.
fn fake_script(work: &Work) -> Script {
    match work {
        Work::Demo { seconds } => Script {
            output: Some(format!(
                "working on 11 bytes for {seconds}s\ndone: 1 rounds, sha256 {}\n",
                "0".repeat(64)
            )),
            exit: Some((Duration::from_secs(u64::from(*seconds)), 0)),
            ..Script::default()
        },
        Work::Print { out, err, code } => Script {
            output: Some(format!("{out}\n{err}\n")),
            exit: Some((Duration::ZERO, i64::from(*code))),
            ..Script::default()
        },
        Work::Hog => Script::default(),
    }
}

/// A container name no other test (or earlier run) uses: `eda-<tag><pid><n>-1`.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("eda-{tag}{}x{n}x{nanos:x}-1", std::process::id())
}

/// Polls `check` every 50 ms until it yields `Some`, or panics after `within` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
