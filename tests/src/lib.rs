//! Helpers shared by every integration test of the workspace, in `tests/tests/` (one crate, one
//! set of helpers: the handler's own `tests/` folder moved here).
//!
//! # Layout
//!
//! - this file: [`need`] (the skip rules), [`free_port`], [`TempDir`], local mode in-process
//!   ([`start_local`], [`Api`]) and polling ([`eventually`]);
//! - [`runtimes`]: the static worker, the Docker test image, one harness per container runtime;
//!   [`runtime_conformance`]: the one suite every `ContainerRuntime` runs;
//! - [`store_conformance`]: the one suite every `TaskStore` runs;
//! - [`arm`]: the stand-in for ARM, Azure Monitor and the managed-identity endpoint;
//!   [`aci_containers`]: runs the real worker as each of its container groups;
//! - [`mongo`]: a MongoDB server (`EDA_TEST_MONGO_URI` or the wire-protocol stand-in);
//! - [`host`]: a harness that plays the Azure Functions host;
//! - [`faults`]: the handler as a child process that can be killed and restarted;
//! - [`browser`]: headless Chromium through WebDriver.
//!
//! # Needing things
//!
//! A test that needs something these machines can have (Docker, Chromium, the MongoDB stand-in,
//! the static worker) calls [`need`]: outside CI it prints why it is skipped and returns
//! `false`; in CI (`CI=true`) it panics, so a missing piece fails the run instead of passing
//! silently. What these machines can never have (Azure itself) is played by stand-ins, so no
//! test skips for it.

/// Returns whether `what` is available; skips loudly outside CI, fails in CI.
pub fn need(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if handler::config::in_ci() {
        panic!("{what} is required in CI (CI=true) but is not available");
    }
    eprintln!("SKIPPED: {what} is not available on this machine (mandatory when CI=true)");
    false
}

/// True when a Docker Engine answers on the default socket.
pub fn docker_available() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub mod aci_containers;
pub mod arm;
pub mod arm_standby;
pub mod browser;
pub mod faults;
pub mod host;
pub mod mongo;
pub mod runtime_conformance;
pub mod runtimes;
pub mod store_conformance;

use handler::local::Running;
use model::{Task, TaskId, TaskState};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A free loopback port (bound, then released for a server to take): for servers that must be
/// told their port up front, or restarted on the same one. Servers that can bind port 0
/// themselves should.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The static worker binary (see [`runtimes::musl_worker`]).
pub fn worker_bin() -> PathBuf {
    runtimes::musl_worker().to_path_buf()
}

/// The Docker test image (worker + busybox, so tasks can run shell commands).
pub async fn test_image() -> String {
    let docker = handler::runtime::docker::DockerRuntime::connect()
        .await
        .expect("docker answers");
    runtimes::docker_test_image(&docker).await.to_string()
}

/// A fresh temporary folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 6];
        getrandom_fill(&mut r);
        let p = std::env::temp_dir().join(format!("eda-{tag}-{}", hex(&r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn getrandom_fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random source is available");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Worker arguments that run each task's message as a shell command (`sh -c "$MESSAGE"`):
/// the tests' way to make a task print, fail, hang or crash on purpose.
pub fn shell_worker_args() -> Vec<String> {
    ["--", "/bin/sh", "-c", "eval \"$MESSAGE\""]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Starts local mode in-process on 127.0.0.1:0 with `data` as its data dir and extra flags.
pub async fn start_local(data: &Path, flags: &[&str]) -> Running {
    let mut argv: Vec<String> = vec!["handler".into(), "local".into()];
    // Defaults for tests, unless the caller gives the flag itself.
    for (flag, value) in [
        ("--bind", "127.0.0.1:0"),
        ("--sweep-ms", "200"),
        ("--retry-backoff-ms", "100"),
    ] {
        if !flags.contains(&flag) {
            argv.push(flag.into());
            argv.push(value.into());
        }
    }
    argv.push("--data-dir".into());
    argv.push(data.display().to_string());
    argv.push("--worker-bin".into());
    argv.push(worker_bin().display().to_string());
    argv.extend(flags.iter().map(|s| s.to_string()));
    let args = handler::config::local_args(&argv).expect("valid local flags");
    handler::local::start(args)
        .await
        .expect("local mode starts")
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    runtimes::wait_for(what, limit, f).await
}

/// Waits until the runtime of `running` no longer knows the container `name` (the reconciler
/// captured its logs and removed it), or panics after `limit`.
pub async fn until_removed(running: &Running, name: &str, limit: Duration) {
    eventually(
        limit,
        &format!("container {name} to be removed"),
        || async {
            running
                .app
                .runtime()
                .status(name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

/// An HTTP client of a running handler.
#[derive(Clone)]
pub struct Api {
    /// Base URL.
    pub base: String,
    /// The client.
    pub http: reqwest::Client,
}

impl Api {
    /// A client of `running`.
    pub fn new(running: &Running) -> Api {
        Api {
            base: running.url(),
            http: reqwest::Client::new(),
        }
    }

    /// `POST /api/work` with a JSON body; returns status and body.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// Submits one piece of work with options; returns the new task.
    pub async fn submit(&self, body: serde_json::Value) -> Task {
        let (status, v) = self.post_raw("/api/work", body.to_string()).await;
        assert_eq!(status, 202, "{v}");
        serde_json::from_value(v["tasks"][0].clone()).unwrap()
    }

    /// `GET` a path as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One task.
    pub async fn task(&self, id: &TaskId) -> Task {
        serde_json::from_value(self.get(&format!("/api/tasks/{id}")).await).unwrap()
    }

    /// Waits until task `id` is in `state` (or any terminal state other than it: then panics
    /// with the task, so a wrong ending fails fast and readably).
    pub async fn wait_state(&self, id: &TaskId, state: TaskState, limit: Duration) -> Task {
        eventually(limit, &format!("task {id} to be {state}"), || async {
            let t = self.task(id).await;
            if t.state == state {
                return Some(t);
            }
            assert!(
                !t.state.is_terminal(),
                "task ended {} instead of {state}: {t:#?}",
                t.state
            );
            None
        })
        .await
    }
}

/// Delivers one plain-text message (`body`, under a fresh queue message id made from `prefix`)
/// twice to `running`'s spawn path, as Service Bus does after a crash between the container's
/// create and the message's complete. Returns the task id the message derives and both outcomes.
pub async fn deliver_twice(
    running: &Running,
    prefix: &str,
    body: &str,
) -> (TaskId, handler::spawn::Outcome, handler::spawn::Outcome) {
    use handler::spawn::{self, Delivery};
    let message_id = format!("external-{}", runtimes::unique(prefix));
    let d = Delivery {
        message_id: message_id.clone(),
        body: body.into(),
        delivery_count: 1,
        enqueued_at_ms: None,
    };
    let first = spawn::handle(&running.app, &d)
        .await
        .unwrap_or_else(|e| panic!("the first delivery failed: {e}"));
    let again = Delivery {
        delivery_count: 2,
        ..d
    };
    let second = spawn::handle(&running.app, &again)
        .await
        .unwrap_or_else(|e| panic!("the second delivery failed: {e}"));
    (spawn::derived_id(&message_id), first, second)
}

/// Names of the containers (any state) matching a `docker ps` filter.
pub fn docker_list(filter: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter", filter])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
