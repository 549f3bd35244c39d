//! Helpers for the container runtime conformance suite (`tests/tests/runtime_conformance.rs`):
//! the static worker binary, the Docker test image, one [`Harness`] per backend, and polling.

use handler::runtime::docker::DockerRuntime;
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

/// One backend under test.
pub struct Harness {
    /// The runtime, as the app holds it.
    pub rt: Arc<dyn ContainerRuntime>,
    /// The image to put in specs (ignored by the process runtime).
    pub image: String,
    /// Whether memory limits are enforced (always for Docker; the process runtime only where
    /// cgroups are writable).
    pub limits: bool,
    /// A runtime whose "image" cannot be had, for the `ImageMissing` check, with that image.
    pub broken: (Arc<dyn ContainerRuntime>, String),
    /// Log directory of the process runtime, removed on drop.
    logs_dir: Option<PathBuf>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(dir) = &self.logs_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Harness {
    /// The process runtime running the musl worker, logging to a fresh temporary directory.
    pub async fn process() -> Harness {
        let worker = tokio::task::spawn_blocking(musl_worker).await.unwrap();
        let logs_dir = std::env::temp_dir().join(format!("eda-conformance-{}", unique("logs")));
        let rt = ProcessRuntime::new(worker.to_path_buf(), logs_dir.clone());
        let limits = rt.enforces_memory_limit();
        let broken = ProcessRuntime::new(logs_dir.join("no-such-worker"), logs_dir.clone());
        Harness {
            rt: Arc::new(rt),
            image: "unused".into(),
            limits,
            broken: (Arc::new(broken), "unused".into()),
            logs_dir: Some(logs_dir),
        }
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
            image,
            limits: true,
            logs_dir: None,
        })
    }

    /// A spec for `name` running the worker with `args`, 0.5 CPU and 128 MiB.
    pub fn spec(&self, name: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: name.to_string(),
            image: self.image.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
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
