//! The warm pool of local mode (`--warm N`) against a real Docker Engine (mandatory in CI): a
//! message claims a started container instead of creating one, the pool refills, redelivery
//! finds the claimed container, a task of another image starts cold, shutdown removes the warm
//! containers, a dead one is replaced, and a pool token opens nothing but its own assignment.
//!
//! The image is this crate's own tag of the worker test image ([`POOL_IMAGE`]): the shared
//! `eda-worker-test:latest` is rebuilt by whichever worktree runs its tests last, and a worker
//! without pool mode would not wait for its task.

use e2e::{eventually, need, start_local, Api, TempDir};
use handler::local::Running;
use handler::runtime::docker::DockerRuntime;
use handler::spawn::Outcome;
use model::TaskState::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
/// The worker (with pool mode) and busybox, tagged for these tests only.
const POOL_IMAGE: &str = "eda-worker-pool-test:latest";

/// Builds [`POOL_IMAGE`] around the musl worker when it holds another worker.
async fn pool_image() -> &'static str {
    let docker = DockerRuntime::connect().await.expect("docker answers");
    let worker = tokio::task::spawn_blocking(e2e::runtimes::musl_worker)
        .await
        .unwrap();
    handler::runtime::image::ensure_worker_image(
        docker.client(),
        POOL_IMAGE,
        worker,
        Some(Path::new(e2e::runtimes::BUSYBOX)),
    )
    .await
    .expect("build the pool test image");
    POOL_IMAGE
}

/// Local mode on Docker with `--warm <warm>` and the shell worker, or None outside CI when no
/// engine answers.
async fn warm_local(dir: &TempDir, warm: &str, extra: &[&str]) -> Option<Running> {
    if !need("docker", e2e::docker_available()) {
        return None;
    }
    let image = pool_image().await;
    let mut flags = vec![
        "--runtime",
        "docker",
        "--image",
        image,
        "--memory-mb",
        "128",
        "--warm",
        warm,
    ];
    let args: Vec<String> = e2e::shell_worker_args()
        .iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    flags.extend(args.iter().map(String::as_str));
    flags.extend_from_slice(extra);
    Some(start_local(&dir.0, &flags).await)
}

/// The environment of container `name`, one `K=V` per line.
fn docker_env(name: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            name,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn env_value(env: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    env.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

/// What a test made on the engine, removed when the test ends, a failed assertion included
/// (then `Running::stop` never runs): every container of the pools it saw (by the pool's name
/// prefix, so refills it never saw go too), the task containers it named, the tags it made.
struct Leftovers {
    /// The handler's shutdown: cancelled first, so its pool stops refilling.
    stop: tokio_util::sync::CancellationToken,
    /// `edapool-<run>-` prefixes.
    pools: Mutex<BTreeSet<String>>,
    /// Task container names.
    containers: Mutex<BTreeSet<String>>,
    /// Image tags.
    tags: Mutex<Vec<String>>,
}

impl Leftovers {
    fn new(running: &Running) -> Leftovers {
        Leftovers {
            stop: running.app.shutdown().clone(),
            pools: Mutex::default(),
            containers: Mutex::default(),
            tags: Mutex::default(),
        }
    }

    fn pool_container(&self, name: &str) {
        if let Some((prefix, _)) = name.rsplit_once('-') {
            self.pools.lock().unwrap().insert(format!("{prefix}-"));
        }
    }

    fn container(&self, name: &str) {
        self.containers.lock().unwrap().insert(name.to_string());
    }

    fn tag(&self, tag: &str) {
        self.tags.lock().unwrap().push(tag.to_string());
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.stop.cancel();
        let docker = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
        };
        let mut names: Vec<String> = self.containers.lock().unwrap().iter().cloned().collect();
        for prefix in self.pools.lock().unwrap().iter() {
            names.extend(e2e::docker_list(&format!("name=^/{prefix}")));
        }
        for name in &names {
            let _ = docker(&["rm", "-f", name]);
        }
        for tag in self.tags.lock().unwrap().iter() {
            let _ = docker(&["rmi", tag]);
        }
    }
}

/// Waits until the pool shows `n` warm containers whose workers asked for work; their names.
async fn ready(api: &Api, left: &Leftovers, n: usize) -> BTreeSet<String> {
    let names = eventually(LONG, &format!("{n} ready warm containers"), || async {
        let view = api.get("/api/pool").await;
        let names: BTreeSet<String> = view["containers"]
            .as_array()?
            .iter()
            .filter(|c| c["state"] == "ready")
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        (names.len() == n).then_some(names)
    })
    .await;
    names.iter().for_each(|n| left.pool_container(n));
    names
}

/// A task id no earlier run used (the container name derives from it).
fn fresh_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{:x}{nanos:x}", std::process::id())
}

/// `GET /api/pool/{slot}/assignment` with `token`: the status.
async fn ask(api: &Api, slot: &str, token: &str) -> u16 {
    api.http
        .get(format!("{}/api/pool/{slot}/assignment", api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_claims_a_warm_container_and_the_pool_refills() {
    let dir = TempDir::new("warm-claim");
    let Some(running) = warm_local(&dir, "2", &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let left = Leftovers::new(&running);
    let before = ready(&api, &left, 2).await;
    let t = api
        .submit(serde_json::json!({"work": "echo hi from $CONTAINER_NAME; sleep 1; echo warm > \"$RESULT_PATH\"; echo bye"}))
        .await;
    let name = format!("eda-{}-1", t.id);
    left.container(&name);
    api.wait_state(&t.id, InProgress, LONG).await;
    // The task's container is one of the warm ones, renamed: it was started with the pool's
    // environment, and the task token never was in its environment.
    let env = docker_env(&name);
    let slot = env_value(&env, "POOL_SLOT").expect("a warm container carries the task");
    assert!(
        before.contains(&slot),
        "{slot} was not in the pool {before:?}"
    );
    assert!(env_value(&env, "TASK_TOKEN").is_none(), "{env}");
    assert!(
        e2e::docker_list(&format!("name=^/{slot}$")).is_empty(),
        "renamed"
    );
    let done = api.wait_state(&t.id, Done, LONG).await;
    let states: Vec<_> = done.transitions.iter().map(|t| t.state).collect();
    assert_eq!(states, [Pending, Provisioning, InProgress, Done]);
    assert_eq!(done.container.as_deref(), Some(name.as_str()));
    assert!(done.billed_seconds >= 1 && done.cost > 0.0, "{done:?}");
    // A warm container's worker runs the same work path: RESULT_PATH comes back too.
    assert_eq!(done.result.map(|r| r.text).as_deref(), Some("warm\n"));
    let logs = eventually(LONG, "captured logs", || async {
        let l = api.get(&format!("/api/tasks/{}/logs", t.id)).await;
        let text = l["text"].as_str().unwrap_or_default().to_string();
        text.contains("bye").then_some(text)
    })
    .await;
    assert!(logs.contains(&format!("hi from {name}")), "{logs}");
    // The pool refilled: two ready containers again, one of them new.
    let after = eventually(LONG, "the pool to refill", || async {
        let now = ready(&api, &left, 2).await;
        (now != before).then_some(now)
    })
    .await;
    assert!(!after.contains(&slot));
    e2e::until_removed(&running, &name, LONG).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_of_a_claimed_message_makes_no_second_container() {
    let dir = TempDir::new("warm-dup");
    let Some(running) = warm_local(&dir, "1", &["--concurrency", "2"]).await else {
        return;
    };
    let api = Api::new(&running);
    let left = Leftovers::new(&running);
    let pool = ready(&api, &left, 1).await;
    let (id, first, second) = e2e::deliver_twice(&running, "warmdup", "sleep 2").await;
    left.container(&format!("eda-{id}-1"));
    assert_eq!(first, Outcome::Started(id.clone()));
    assert_eq!(second, Outcome::AlreadyRunning(id.clone()));
    let name = format!("eda-{id}-1");
    assert_eq!(
        e2e::docker_list(&format!("name=eda-{id}-")),
        vec![name.clone()]
    );
    let slot = env_value(&docker_env(&name), "POOL_SLOT");
    assert!(slot.is_some_and(|s| pool.contains(&s)), "served warm");
    api.wait_state(&id, Done, LONG).await;
    e2e::until_removed(&running, &name, LONG).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_image_starts_cold_and_pool_tokens_open_only_their_own_assignment() {
    let dir = TempDir::new("warm-cold");
    // The same worker under another tag: another image, so it does not fit the pool (allowed:
    // a task may only ask for an image on the allow-list).
    let other = format!(
        "{}:{}",
        "eda-worker-pool-test",
        e2e::runtimes::unique("cold")
    );
    let Some(running) = warm_local(&dir, "2", &["--allowed-image", &other]).await else {
        return;
    };
    let api = Api::new(&running);
    let left = Leftovers::new(&running);
    let pool = ready(&api, &left, 2).await;
    let tagged = std::process::Command::new("docker")
        .args(["tag", POOL_IMAGE, &other])
        .status()
        .unwrap();
    assert!(tagged.success());
    left.tag(&other);
    let id = fresh_id("cold");
    let body =
        serde_json::json!({"id": id, "work": "sleep 300", "image": other, "max_attempts": 1});
    // Queued under the task's own id, as the API queues it (a message under another id would
    // be a second message for the same task once the consumer stores the task).
    running
        .queue
        .send_raw(&id, &body.to_string())
        .await
        .unwrap();
    let id = model::TaskId::parse(&id).unwrap();
    let name = format!("eda-{id}-1");
    left.container(&name);
    // The task exists once the consumer took the message.
    eventually(LONG, "the task of the message", || async {
        let t = api.get(&format!("/api/tasks/{id}")).await;
        (t["state"] == "InProgress").then_some(())
    })
    .await;
    let env = docker_env(&name);
    assert!(
        env_value(&env, "POOL_SLOT").is_none(),
        "started cold: {env}"
    );
    let task_token = env_value(&env, "TASK_TOKEN").expect("a cold container has its token");
    assert_eq!(
        ready(&api, &left, 2).await,
        pool,
        "the pool was not touched"
    );

    let names: Vec<&String> = pool.iter().collect();
    let (a, b) = (names[0], names[1]);
    let token_a = env_value(&docker_env(a), "POOL_TOKEN").expect("a pool token");
    // Another warm container's token, a task token, none, or garbage: refused.
    assert_eq!(ask(&api, b, &token_a).await, 401);
    assert_eq!(ask(&api, a, &task_token).await, 401);
    assert_eq!(ask(&api, a, "not-a-token").await, 401);
    let bare = api
        .http
        .get(format!("{}/api/pool/{a}/assignment", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(ask(&api, "edapool-nosuch-1", &token_a).await, 404);
    // A pool token cannot report for a task either.
    let report = api
        .http
        .post(format!("{}/api/tasks/{id}/state", api.base))
        .bearer_auth(&token_a)
        .json(&serde_json::json!({"state": "Done", "exit_code": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status().as_u16(), 403);
    assert_eq!(api.task(&id).await.state, InProgress);
    // The worker listener (what containers reach) answers the same way.
    if let Some(w) = running.worker_addr {
        let via_worker = Api {
            base: format!("http://{w}"),
            http: api.http.clone(),
        };
        assert_eq!(ask(&via_worker, b, &token_a).await, 401);
    }

    let cancel = api
        .http
        .post(format!("{}/api/tasks/{id}/cancel", api.base))
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success());
    e2e::until_removed(&running, &name, LONG).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_shown_a_dead_container_replaced_and_shutdown_removes_them_all() {
    let dir = TempDir::new("warm-dead");
    let Some(running) = warm_local(&dir, "2", &[]).await else {
        return;
    };
    let api = Api::new(&running);
    let left = Leftovers::new(&running);
    let before = ready(&api, &left, 2).await;
    // `handler pool` shows them (the CLI against this handler's API).
    let out = std::process::Command::new(e2e::faults::handler_bin())
        .args(["pool", "--api", &api.base])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("warm pool: 2 x eda-worker-pool-test:latest"),
        "{shown}"
    );
    for name in &before {
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with(name.as_str()) && l.contains("ready")),
            "{shown}"
        );
    }
    let victim = before.iter().next().unwrap().clone();
    let killed = std::process::Command::new("docker")
        .args(["kill", "-s", "KILL", &victim])
        .status()
        .unwrap();
    assert!(killed.success());
    let after = eventually(LONG, "the dead warm container to be replaced", || async {
        let now = ready(&api, &left, 2).await;
        (!now.contains(&victim)).then_some(now)
    })
    .await;
    eventually(LONG, "the dead warm container to be removed", || async {
        e2e::docker_list(&format!("name=^/{victim}$"))
            .is_empty()
            .then_some(())
    })
    .await;
    running.stop().await;
    for name in before.iter().chain(&after) {
        assert!(
            e2e::docker_list(&format!("name=^/{name}$")).is_empty(),
            "{name} outlived the shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_runtime_refuses_a_pool() {
    let dir = TempDir::new("warm-proc");
    let argv: Vec<String> = [
        "handler",
        "local",
        "--bind",
        "127.0.0.1:0",
        "--runtime",
        "process",
        "--warm",
        "2",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        dir.0.display().to_string(),
        "--worker-bin".into(),
        e2e::worker_bin().display().to_string(),
    ])
    .collect();
    let args = handler::config::local_args(&argv).unwrap();
    let e = match handler::local::start(args).await {
        Ok(_) => panic!("--warm on the process runtime must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("--warm 2 needs the Docker runtime"), "{e}");
}
